"""Connection tuning: a server given max_connections: 1 holds one call in
flight and one waiting; the next gets a JSON-RPC overload error at once,
while the slow calls are still running, and calls to the other servers go on
as before. No timing is measured: "at once" is shown by order (the refusal
and the other server's answer come back while both slow calls are pending)."""

from concurrent.futures import ThreadPoolExecutor

import httpx

from conftest import BASE_SERVERS, HEADERS, RawSession, jsonrpc, wait_until


def test_past_its_connection_limit_a_server_refuses_at_once_and_the_others_are_untouched(gateway):
    base = BASE_SERVERS(gateway.ports)
    limited = [{**base[0], "max_connections": 1}, base[1]]
    gateway.write_catalog_and_wait(limited, "echo limited to one connection")
    try:
        s = RawSession(gateway.url)
        s.initialize()
        headers = {**HEADERS, "mcp-session-id": s.session_id}

        def call(name: str, arguments: dict, id: int) -> httpx.Response:
            body = jsonrpc("tools/call", {"name": name, "arguments": arguments}, id=id)
            return httpx.post(gateway.url, content=body, headers=headers, timeout=60)

        def stat(name: str) -> int:
            return gateway.envoy_stat(f"cluster.mcp_echo.{name}")

        overflows = stat("upstream_rq_pending_overflow")
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(call, "echo__sleep", {"ms": 6000}, 1)
            wait_until("the first slow call in flight", lambda: stat("upstream_rq_active") == 1, timeout=30)
            second = pool.submit(call, "echo__sleep", {"ms": 6000}, 2)
            wait_until("the second one waiting for the connection", lambda: stat("upstream_rq_pending_active") == 1, timeout=30)

            refused = call("echo__sleep", {"ms": 10}, 3)
            other = call("everything__echo", {"message": "unaffected"}, 4)
            assert not first.done() and not second.done(), "the slow calls must still be running: the refusal came at once"

            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"] == "application/json"
            answer = refused.json()
            assert answer["id"] == 3
            assert answer["error"]["code"] == -32000
            assert "Server 'echo' is overloaded" in answer["error"]["message"], answer
            assert other.status_code == 200
            assert "Echo: unaffected" in other.text

            for slow in (first, second):
                r = slow.result(timeout=60)
                assert r.status_code == 200 and "slept" in r.text, r.text
        assert stat("upstream_rq_pending_overflow") - overflows == 1
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")
