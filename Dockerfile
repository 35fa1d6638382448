# The control plane image: mcp-gateway, the filter module it publishes to
# Envoy, the example echo server, and the example catalog's stdio servers
# (Node for the npm ones, a Python virtualenv for the PyPI one), laid out as
# in the repository so that catalog.yaml's relative paths hold. Envoy runs
# from the official image.
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-unknown-unknown
WORKDIR /src
COPY . .
RUN cargo build --locked --release -p mcp-control-plane -p mcp-echo-server \
 && cargo build --locked -p mcp-filter --target wasm32-unknown-unknown --profile wasm-release

FROM node:22-bookworm-slim
# ca-certificates: the system's CAs, which the control plane trusts for
# https:// servers without a tls.ca_file of their own (the slim image has none).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent gateway
WORKDIR /srv/mcp-gateway
COPY servers/ servers/
RUN npm ci --prefix servers --omit=dev --no-audit --no-fund \
 && python3 -m venv .tools/servers-venv \
 && .tools/servers-venv/bin/pip install --no-cache-dir -r servers/requirements.txt
COPY --from=build /src/target/release/mcp-gateway /src/target/release/mcp-echo-server /usr/local/bin/
COPY --from=build /src/target/wasm32-unknown-unknown/wasm-release/mcp_filter.wasm /usr/share/mcp-gateway/mcp_filter.wasm
COPY catalog.yaml /srv/mcp-gateway/catalog.yaml
USER 10001
ENV MCP_GATEWAY_CATALOG=/srv/mcp-gateway/catalog.yaml \
    MCP_GATEWAY_WASM=/usr/share/mcp-gateway/mcp_filter.wasm \
    MCP_MEMORY_FILE=/tmp/mcp-gateway-memory.jsonl
EXPOSE 4444
ENTRYPOINT ["mcp-gateway"]
