"""Connection tuning: a server given max_connections: 1 holds one call in
flight; the next gets a JSON-RPC overload error at once, while the slow call
is still running, and calls to the other servers go on as before. No timing
is measured: "at once" is shown by order (the refusal and the other server's
answer come back while the slow call is pending)."""

from concurrent.futures import ThreadPoolExecutor

import httpx

from conftest import BASE_SERVERS, HEADERS, RawSession, jsonrpc, wait_until


def test_past_its_connection_limit_a_server_refuses_at_once_and_the_others_are_untouched(gateway):
    # A server of its own, started for this test: no connection to it is
    # left over from other tests in any Envoy worker's pool.
    base = BASE_SERVERS(gateway.ports)
    limited = {"name": "third", "url": f"http://127.0.0.1:{gateway.ports['third']}/mcp", "max_connections": 1}
    gateway.echo_server("third", gateway.ports["third"])
    try:
        gateway.write_catalog_and_wait(base + [limited], "a third server limited to one call at a time")
        wait_until("third discovered", lambda: gateway.servers_ready({"echo", "everything", "third"}), timeout=30)
        s = RawSession(gateway.url)
        s.initialize()
        headers = {**HEADERS, "mcp-session-id": s.session_id}

        def call(name: str, arguments: dict, id: int) -> httpx.Response:
            body = jsonrpc("tools/call", {"name": name, "arguments": arguments}, id=id)
            return httpx.post(gateway.url, content=body, headers=headers, timeout=60)

        def stat(name: str) -> int:
            return gateway.envoy_stat(f"cluster.mcp_third.{name}")

        overflows = stat("upstream_rq_active_overflow")
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(call, "third__sleep", {"ms": 6000}, 1)
            wait_until("the slow call in flight", lambda: stat("upstream_rq_active") == 1, timeout=30)

            refused = call("third__sleep", {"ms": 10}, 2)
            other = call("echo__add", {"a": 2, "b": 2}, 3)
            assert not slow.done(), "the slow call must still be running: the refusal came at once"

            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"] == "application/json"
            answer = refused.json()
            assert answer["id"] == 2
            assert answer["error"]["code"] == -32000
            assert "Server 'third' is overloaded" in answer["error"]["message"], answer
            assert other.status_code == 200 and '"4"' in other.text, other.text

            r = slow.result(timeout=60)
            assert r.status_code == 200 and "slept" in r.text, r.text
        assert stat("upstream_rq_active_overflow") - overflows == 1
        # With the slow call done, the server takes calls again.
        assert "slept" in call("third__sleep", {"ms": 10}, 4).text
    finally:
        gateway.stop("third")
        gateway.write_catalog_and_wait(base, "the base catalog back")
