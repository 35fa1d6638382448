"""A legacy (2024-11-05 HTTP+SSE) MCP server over HTTPS: the official Python
SDK's SSE app under uvicorn, with a certificate and, with --client-ca, client
certificates required (mTLS). test_https_upstreams.py runs it as a
`runtime: sse` upstream; npm's server-everything has an SSE mode but no TLS.

    legacy_sse_tls_server.py --port N --cert server.crt --key server.key [--client-ca ca.crt]

Binds 127.0.0.1 only."""

import argparse
import ssl

import uvicorn
from mcp.server.mcpserver import MCPServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="PEM certificate chain")
    parser.add_argument("--key", required=True, help="its PEM private key")
    parser.add_argument("--client-ca", help="require client certificates signed by these PEM CAs")
    args = parser.parse_args()

    server = MCPServer("legacy-tls")

    @server.tool()
    def add(a: int, b: int) -> str:
        """The sum of a and b."""
        return str(a + b)

    @server.tool()
    def whoami() -> str:
        """This server's name."""
        return "legacy-tls"

    uvicorn.run(
        server.sse_app(host="127.0.0.1"),
        host="127.0.0.1",
        port=args.port,
        ssl_certfile=args.cert,
        ssl_keyfile=args.key,
        ssl_ca_certs=args.client_ca,
        ssl_cert_reqs=ssl.CERT_REQUIRED if args.client_ca else ssl.CERT_NONE,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
