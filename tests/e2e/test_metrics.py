"""GET /metrics on the gateway's port: Envoy's stats, the filter's MCP metrics
and the control plane's, in one Prometheus exposition that the reference
parser (prometheus_client) reads. Known traffic goes through the gateway with
the official Python SDK, and the counters and histogram counts must move by
exactly that much (docs/design/observability.md names every metric)."""

import asyncio
import os
import signal
import time

import httpx
import pytest
from mcp.client.client import Client
from prometheus_client.parser import text_string_to_metric_families

from conftest import BASE_SERVERS, GATEWAY_SECRETS, HEADERS, RawSession, jsonrpc, parse_answer, wait_until


# An admin key for the catalogs with authentication: the operator's pages
# need one there (test_operator_surface.py).
ADMIN_KEY = "e2e-metrics-admin-key-3c9e"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
_last_page = [0.0]


def next_second() -> None:
    """Waits until the wall clock is past the second of the last scrape: each
    Envoy worker assembles a page at most once a second and serves it again
    within that second, so a scrape meant to see new traffic must come in a
    later one."""
    time.sleep(max(0.0, int(_last_page[0]) + 1 - time.time()))


def scraped(r: httpx.Response) -> httpx.Response:
    """Notes when a page was last answered (an assembly is kept under the
    second it ended in)."""
    _last_page[0] = time.time()
    return r


def scrape(gateway) -> dict[tuple[str, tuple], float]:
    """Every sample of the gateway port's /metrics: {(name, sorted labels): value}."""
    next_second()
    r = scraped(httpx.get(f"{gateway.base}/metrics", headers=ADMIN, timeout=10))
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


CALL = dict(method="tools/call", server="echo", tool="echo__add", outcome="ok")


def calls(gateway, n: int) -> list[str]:
    async def run():
        async with Client(gateway.url, mode="legacy") as c:
            out = [(await c.call_tool("echo__add", {"a": i, "b": 1})).content[0].text for i in range(n)]
            # A tool no server offers: refused by the gateway itself.
            with pytest.raises(Exception, match="Unknown tool"):
                await c.call_tool("echo__nope", {})
            return out

    return asyncio.run(run())


def test_one_scrape_carries_envoy_the_filter_and_the_control_plane(gateway):
    samples = scrape(gateway)
    names = {name for name, _ in samples}
    assert any(n.startswith("envoy_cluster_") for n in names), "Envoy's own stats are missing"
    health = gateway.admin("/health")
    assert value(samples, "mcp_gateway_control_plane_up") == 1
    assert value(samples, "mcp_gateway_catalog_info", version=health["version"]) == 1
    assert value(samples, "mcp_gateway_xds_connected_envoys") == 1
    assert value(samples, "mcp_gateway_envoy_acked_current", node="gateway-1") == 1
    assert value(samples, "mcp_gateway_catalog_last_reload_success") == 1
    for server in ("echo", "everything"):
        assert value(samples, "mcp_gateway_upstream_up", server=server) == 1
    listed = {s["name"]: s["tools"] for s in gateway.admin("/servers")["servers"]}
    assert value(samples, "mcp_gateway_server_tools", server="echo") == listed["echo"] > 0
    assert value(samples, "mcp_gateway_xds_nacks_total", node="gateway-1", type="clusters") == 0
    assert value(samples, "mcp_gateway_xds_acks_total", node="gateway-1", type="clusters") >= 1


def flushed(samples, method: str, server: str) -> bool:
    """Whether the histograms hold every request the counters do: each
    request that ends adds one to both, but histograms reach the exposition
    only at Envoy's next stats flush (every 5 s)."""
    counted = sum(v for (name, labels), v in samples.items()
                  if name == "mcp_requests_total" and {("method", method), ("server", server)} <= set(labels))
    return value(samples, "mcp_request_duration_milliseconds_count", method=method, server=server) == counted


def test_known_traffic_moves_the_counters_by_exactly_that_much(gateway):
    def settled_scrape():
        samples = scrape(gateway)
        return samples if flushed(samples, "tools/call", "echo") else None

    # Start once the calls of earlier tests are in the histogram too.
    before = wait_until("the earlier calls in the histogram", settled_scrape, timeout=30)
    assert calls(gateway, 3) == ["1", "2", "3"]
    after = scrape(gateway)
    assert delta(before, after, "mcp_requests_total", **CALL) == 3
    # The unknown tool names no tool or server: a client cannot add series.
    assert delta(before, after, "mcp_requests_total", method="tools/call", server="", tool="", outcome="error") == 1
    assert delta(before, after, "mcp_jsonrpc_errors_total", method="tools/call", code="-32602") == 1
    assert delta(before, after, "mcp_sessions_opened_total") == 1
    assert delta(before, after, "mcp_requests_total", method="initialize", server="", tool="", outcome="ok") == 1
    assert not any(name.startswith("mcp_") and dict(labels).get("tool") == "echo__nope" for name, labels in after)
    # Histograms reach the exposition at Envoy's next stats flush (5 s):
    # wait for the three calls, then they must be exactly three.
    hist = dict(method="tools/call", server="echo")
    wait_until(
        "the calls' durations in the histogram",
        lambda: delta(before, scrape(gateway), "mcp_request_duration_milliseconds_count", **hist) >= 3,
        timeout=30,
    )
    time.sleep(1)
    settled = scrape(gateway)
    assert delta(before, settled, "mcp_request_duration_milliseconds_count", **hist) == 3
    assert delta(before, settled, "mcp_request_duration_milliseconds_bucket", le="+Inf", **hist) == 3
    # And per tool.
    per_tool = dict(server="echo", tool="echo__add")
    assert delta(before, settled, "mcp_tool_duration_milliseconds_count", **per_tool) == 3
    # Both with the bootstrap's buckets (ms), not Envoy's defaults.
    for name, labels in (("mcp_request_duration_milliseconds_bucket", hist), ("mcp_tool_duration_milliseconds_bucket", per_tool)):
        assert (name, tuple(sorted({**labels, "le": "2.5"}.items()))) in settled, f"{name} lacks the bootstrap's 2.5 ms bucket"
    # Envoy's own count of what reached the upstream agrees.
    assert delta(before, after, "envoy_cluster_upstream_rq_total", envoy_cluster_name="mcp_echo") >= 3


def test_the_scrape_says_when_the_control_plane_is_down(gateway):
    """Envoy keeps serving its part; the control plane's shows as down."""
    cp = gateway.procs["control-plane"]
    os.kill(cp.popen.pid, signal.SIGSTOP)
    try:
        next_second()
        r = scraped(httpx.get(f"{gateway.base}/metrics", timeout=30))
    finally:
        os.kill(cp.popen.pid, signal.SIGCONT)
    assert r.status_code == 200, r.text[:300]
    assert "mcp_gateway_control_plane_up 0" in r.text
    assert "envoy_cluster_upstream_rq_total" in r.text
    assert "mcp_gateway_catalog_info" not in r.text


@pytest.fixture
def guarded(gateway):
    """API keys and a per-minute limit of two calls of echo__add."""
    base = BASE_SERVERS(gateway.ports)
    settings = {
        "auth": {"api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "alice", "groups": ["dev"]},
                              {"key": ADMIN_KEY, "principal": "ops", "groups": ["admin"]}]},
        "rate_limits": [{"name": "adds", "per": ["principal"], "tools": ["echo__add"], "requests_per_minute": 2, "burst": 2}],
    }
    gateway.write_catalog_and_wait(base, "a catalog with keys and a limit", **settings)
    yield
    gateway.write_catalog_and_wait(base, "the base catalog back")


def test_refusals_are_counted_by_reason(gateway, guarded):
    key = {"authorization": f"Bearer {GATEWAY_SECRETS['MCP_GATEWAY_API_KEY']}"}
    before = scrape(gateway)
    init = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}})
    assert httpx.post(gateway.url, content=init, headers=HEADERS, timeout=10).status_code == 401
    for _ in range(2):
        assert httpx.post(gateway.url, content=init, headers={**HEADERS, "x-api-key": "wrong-0000"}, timeout=10).status_code == 401
    # Stateless calls (2026-07-28): two pass, the third is over the limit.
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    call = jsonrpc("tools/call", {"name": "echo__add", "arguments": {"a": 1, "b": 1}, "_meta": meta})
    modern = {**HEADERS, **key, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo__add"}
    answers = [httpx.post(gateway.url, content=call, headers=modern, timeout=10) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429], [r.text[:300] for r in answers]
    after = scrape(gateway)
    assert delta(before, after, "mcp_auth_failures_total", reason="missing") == 1
    assert delta(before, after, "mcp_auth_failures_total", reason="invalid") == 2
    assert delta(before, after, "mcp_requests_total", method="unknown", server="", tool="", outcome="unauthenticated") == 3
    assert delta(before, after, "mcp_rate_limited_total", limit="adds") == 1
    assert delta(before, after, "mcp_requests_total", **{**CALL, "outcome": "rate_limited"}) == 1
    assert delta(before, after, "mcp_requests_total", **CALL) == 2
    assert delta(before, after, "mcp_jsonrpc_errors_total", method="tools/call", code="-32029") == 1


def test_the_seeds_stats_summary_counts_per_server(gateway):
    """GET /stats: the seeds' JSON, per server: state and tools from the
    control plane, requests, errors and tools/call latency from this Envoy."""
    def stats() -> dict:
        next_second()
        r = scraped(httpx.get(f"{gateway.base}/stats", timeout=10))
        assert r.status_code == 200, r.text[:300]
        return r.json()

    before = stats()
    assert calls(gateway, 3) == ["1", "2", "3"]
    after = stats()
    echo = after["servers"]["echo"]
    assert echo["requests"] - before["servers"].get("echo", {}).get("requests", 0) == 3
    assert echo["errors"] == before["servers"].get("echo", {}).get("errors", 0)
    assert after["requests"] - before["requests"] >= 5, "3 calls, the unknown tool, initialize and its notification"
    assert after["errors"] - before["errors"] == 1, "the unknown tool"
    listed = {s["name"]: s for s in gateway.admin("/servers")["servers"]}
    assert (echo["state"], echo["tools"]) == ("ready", listed["echo"]["tools"])
    assert after["version"] == gateway.admin("/health")["version"] and after["control_plane"] == "up"
    wait_until("echo's latency after a stats flush", lambda: stats()["servers"]["echo"]["latency_ms"] is not None, timeout=30)
    latency = stats()["servers"]["echo"]["latency_ms"]
    assert 0 <= latency["p50"] <= latency["p95"] <= latency["p99"], latency


def test_an_upstream_error_in_a_streamed_answer_counts_as_an_error(gateway):
    """server-everything answers as SSE streams; reading a resource its
    template matches but whose id it refuses is a JSON-RPC error inside the
    stream, which the gateway passes on and counts by its code."""
    s = RawSession(gateway.url)
    s.initialize()
    templates = s.request("resources/templates/list")["result"]["resourceTemplates"]
    template = next(t["uriTemplate"] for t in templates if "dynamic/text" in t["uriTemplate"])
    uri = template.replace("{resourceId}", "0")
    before = scrape(gateway)
    r = s.post(jsonrpc("resources/read", {"uri": uri}, id=41))
    assert r.headers["content-type"].startswith("text/event-stream"), r.headers
    answer = parse_answer(r)
    code = answer["error"]["code"]
    after = scrape(gateway)
    assert delta(before, after, "mcp_requests_total", method="resources/read", server="everything", tool="", outcome="error") == 1
    assert delta(before, after, "mcp_jsonrpc_errors_total", method="resources/read", code=str(code)) == 1
