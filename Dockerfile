# The control plane image: mcp-gateway, the filter module it publishes to
# Envoy, and the example echo server. Envoy runs from the official image.
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-unknown-unknown
WORKDIR /src
COPY . .
RUN cargo build --locked --release -p mcp-control-plane -p mcp-echo-server \
 && cargo build --locked -p mcp-filter --target wasm32-unknown-unknown --profile wasm-release

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /nonexistent gateway
COPY --from=build /src/target/release/mcp-gateway /src/target/release/mcp-echo-server /usr/local/bin/
COPY --from=build /src/target/wasm32-unknown-unknown/wasm-release/mcp_filter.wasm /usr/share/mcp-gateway/mcp_filter.wasm
COPY catalog.yaml /etc/mcp-gateway/catalog.yaml
USER 10001
ENV MCP_GATEWAY_CATALOG=/etc/mcp-gateway/catalog.yaml \
    MCP_GATEWAY_WASM=/usr/share/mcp-gateway/mcp_filter.wasm
EXPOSE 4444
ENTRYPOINT ["mcp-gateway"]
