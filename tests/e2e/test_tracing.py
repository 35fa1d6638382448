"""Traces: with gateway.tracing, Envoy exports a span per request over
OTLP/HTTP, named `<method> <tool>` (OpenTelemetry's MCP conventions) with the MCP method, server and tool
as attributes, and continues the trace of a client's `traceparent` header.
The collector here is a small OTLP/HTTP receiver decoding with the official
opentelemetry-proto package."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

from conftest import BASE_SERVERS, RawSession, free_port, wait_until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Collector:
    """Spans received at /v1/traces, as protobuf messages."""

    def __init__(self):
        self.spans = []
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.read_body()
                request = ExportTraceServiceRequest.FromString(body)
                with collector.lock:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.spans.extend((resource.resource, span) for span in scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def read_body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length", 0)))

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def named(self, name: str) -> list:
        with self.lock:
            return [(r, s) for r, s in self.spans if s.name == name]


@pytest.fixture
def collector(gateway):
    c = Collector()
    base = BASE_SERVERS(gateway.ports)
    tracing = {"otlp_endpoint": f"http://127.0.0.1:{c.port}", "service_name": "mcp-gateway-e2e", "sampling_percent": 100}
    gateway.write_catalog_and_wait(base, "a catalog with tracing", tracing=tracing)
    # Envoy acknowledges a listener before its new filter chains serve (the
    # filter's VM starts first, slowly on a loaded machine), and a connection
    # keeps the chain it was accepted on. Wait until a new connection is
    # traced, so that the test's own connections are.
    def traced() -> bool:
        httpx.get(f"{gateway.base}/ready", timeout=5)
        # Envoy sends its batch of spans about every 5 s.
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline and not c.named("GET /ready"):
            time.sleep(0.2)
        return bool(c.named("GET /ready"))

    wait_until("a new connection traced", traced, timeout=120, interval=0)
    yield c
    gateway.write_catalog_and_wait(base, "the base catalog back")
    c.server.shutdown()


def test_a_call_is_a_span_in_the_clients_trace(gateway, collector):
    s = RawSession(gateway.url)
    s.initialize()
    traceparent = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    r = s.post('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo__add","arguments":{"a":1,"b":2}}}', headers=traceparent)
    assert r.status_code == 200 and '"3"' in r.text, r.text
    # Envoy batches spans and sends them about every 5 s.
    try:
        wait_until("the call's span at the collector", lambda: collector.named("tools/call echo__add"), timeout=60)
    except pytest.fail.Exception as e:
        seen = sorted({s.name for _, s in collector.spans})
        stats = httpx.get(f"{gateway.envoy_admin}/stats", params={"filter": "tracing|otlp|overload|opentelemetry|listener_manager"}, timeout=5).text
        raise AssertionError(f"{e}\nspans received: {seen}\nEnvoy's stats:\n{stats}") from None
    resource, span = collector.named("tools/call echo__add")[0]
    assert span.trace_id.hex() == TRACE_ID, "the client's trace is continued"
    assert span.parent_span_id.hex() == PARENT_ID
    attributes = {a.key: a.value.string_value for a in span.attributes}
    assert (attributes["mcp.method"], attributes["mcp.server"], attributes["mcp.tool"]) == ("tools/call", "echo", "echo__add")
    service = {a.key: a.value.string_value for a in resource.attributes}["service.name"]
    assert service == "mcp-gateway-e2e"
    # A request without a traceparent starts a trace of its own.
    s.request("tools/list")
    listed = lambda: [sp for _, sp in collector.named("tools/list") if sp.trace_id.hex() != TRACE_ID]
    wait_until("the list's span, in a trace of its own", listed, timeout=60)
    # A traceparent in `_meta` reaches the server as it was sent, and the
    # gateway's span carries it, to join the server's trace to the gateway's.
    meta = f"00-{TRACE_ID[::-1]}-{PARENT_ID}-01"
    r = s.post('{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo__echo","arguments":{"message":"m"},"_meta":{"traceparent":"%s"}}}' % meta)
    assert r.status_code == 200, r.text
    wait_until("the _meta call's span", lambda: collector.named("tools/call echo__echo"), timeout=60)
    _, span = collector.named("tools/call echo__echo")[0]
    assert {a.key: a.value.string_value for a in span.attributes}["mcp.meta_traceparent"] == meta
    # What is not MCP is named by its HTTP method and path, without the query.
    assert httpx.get(f"{gateway.base}/health?probe=1", timeout=5).status_code == 200
    wait_until("the health check's span", lambda: collector.named("GET /health"), timeout=60)
