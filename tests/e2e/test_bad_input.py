"""Bad input gets a clear JSON-RPC error, nothing reaches an upstream, and
the gateway keeps serving everyone else. "Nothing reaches an upstream" is
read off Envoy's own per-cluster request counters."""

import json

import httpx
import pytest

from conftest import RawSession, jsonrpc

UPSTREAMS = ("mcp_echo", "mcp_everything")


def upstream_requests(gateway) -> dict[str, int]:
    return {c: gateway.envoy_stat(f"cluster.{c}.upstream_rq_total") for c in UPSTREAMS}


def deep(n: int) -> str:
    return '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo__echo","arguments":{"x":' + "[" * n + "]" * n + "}}}"


# (what, body, extra headers, use the session?, HTTP status, JSON-RPC code, text the message must contain)
CASES = [
    ("malformed JSON", "{bad", {}, True, 400, -32700, "Parse error"),
    ("invalid UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"p\xff"}', {}, True, 400, -32700, "Parse error"),
    ("empty body", "", {}, True, 400, -32700, "empty"),
    ("not JSON-RPC", '{"hello":"world"}', {}, True, 400, -32600, "jsonrpc"),
    ("a JSON array (batch)", "[" + jsonrpc("ping") + "]", {}, True, 400, -32600, "batch"),
    ("null id", '{"jsonrpc":"2.0","id":null,"method":"ping"}', {}, True, 400, -32600, "id"),
    ("unknown method", jsonrpc("tools/frobnicate"), {}, True, 200, -32601, "tools/frobnicate"),
    ("unknown tool", jsonrpc("tools/call", {"name": "echo__nope"}), {}, True, 200, -32602, "echo__nope"),
    ("unprefixed tool name", jsonrpc("tools/call", {"name": "echo"}), {}, True, 200, -32602, "echo"),
    ("tool name not a string", jsonrpc("tools/call", {"name": 7}), {}, True, 200, -32602, "name"),
    ("duplicate name keys", '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo__nope","name":"echo__echo"}}', {}, True, 200, -32602, "name"),
    ("no session", jsonrpc("tools/call", {"name": "echo__echo", "arguments": {"text": "x"}}), {}, False, 400, -32600, "Mcp-Session-Id"),
    ("forged session", jsonrpc("tools/call", {"name": "echo__echo", "arguments": {"text": "x"}}), {"mcp-session-id": "k.forged"}, False, 404, -32001, "Session not found"),
    ("unsupported protocol version", jsonrpc("tools/list"), {"mcp-protocol-version": "1999-01-01"}, True, 400, -32600, "1999-01-01"),
    ("wrong content type", jsonrpc("ping"), {"content-type": "text/plain"}, True, 415, -32600, "Content-Type"),
    ("unacceptable Accept", jsonrpc("ping"), {"accept": "text/html"}, True, 406, -32600, "Accept"),
    ("body over the limit", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo__echo", "arguments": {"text": "x" * 70000}}}), {}, True, 413, -32600, "too large"),
    ("nesting past the depth limit", deep(100), {}, True, 400, -32600, "nested"),
    ("control characters in a tool name", jsonrpc("tools/call", {"name": "echo__echo\u0000\r\n\u001b[31m"}), {}, True, 200, -32602, "Unknown tool"),
    ("a path separator in a tool name", jsonrpc("tools/call", {"name": "../echo__echo"}), {}, True, 200, -32602, "../echo__echo"),
    ("a huge array of arguments to an unknown tool", jsonrpc("tools/call", {"name": "echo__nope", "arguments": {"x": list(range(9000))}}), {}, True, 200, -32602, "echo__nope"),
    ("Mcp-Name naming another tool", jsonrpc("tools/call", {"name": "everything__get-env"}), {"mcp-name": "echo__echo"}, True, 400, -32020, "Mcp-Name"),
    ("Mcp-Method naming another method", jsonrpc("tools/call", {"name": "echo__echo", "arguments": {"text": "x"}}), {"mcp-method": "tools/list"}, True, 400, -32020, "Mcp-Method"),
]


@pytest.fixture(scope="module")
def session(gateway):
    s = RawSession(gateway.url)
    s.initialize()
    return s


@pytest.mark.parametrize("what,body,headers,use_session,status,code,says", CASES, ids=[c[0] for c in CASES])
def test_refused_with_a_clear_error_and_nothing_forwarded(gateway, session, what, body, headers, use_session, status, code, says):
    before = upstream_requests(gateway)
    r = session.post(body, headers=headers, session=use_session)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert error["code"] == code
    assert says.lower() in error["message"].lower(), error["message"]
    assert upstream_requests(gateway) == before, f"{what} reached an upstream"
    # Others keep flowing: the same session still works.
    answer = session.request("tools/call", {"name": "echo__echo", "arguments": {"text": "still here"}})
    assert answer["result"]["content"][0]["text"] == "still here"
    assert upstream_requests(gateway)["mcp_echo"] == before["mcp_echo"] + 1, "the counters do see forwarded calls"


def test_other_http_methods_are_refused(gateway, session):
    # GET opens the notification stream (test_notifications.py), if the client accepts SSE.
    r = httpx.get(gateway.url, headers={"mcp-session-id": session.session_id, "accept": "application/json"})
    assert r.status_code == 406 and r.json()["error"]["code"] == -32600
    for method in ("PUT", "PATCH"):
        r = httpx.request(method, gateway.url, headers={"mcp-session-id": session.session_id, "accept": "application/json, text/event-stream"})
        assert r.status_code == 405, (method, r.text)
        assert r.headers["allow"] == "POST"
        assert r.json()["error"]["code"] == -32600


def test_notifications_are_accepted(gateway, session):
    r = session.post(jsonrpc("notifications/cancelled", {"requestId": 1}, id=None))
    assert (r.status_code, r.text) == (202, "")


def test_client_cannot_choose_the_upstream_cluster(gateway, session):
    """x-mcp-cluster is the filter's to set: a client that sends it on a
    path the filter passes through is not routed anywhere."""
    before = upstream_requests(gateway)
    r = httpx.post(f"{gateway.base}/anything", headers={"x-mcp-cluster": "mcp_echo"}, content=jsonrpc("ping"))
    assert r.status_code == 404
    r = session.post(jsonrpc("ping"), headers={"x-mcp-cluster": "mcp_echo"})
    assert r.json() == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert upstream_requests(gateway) == before


def test_admin_api_through_the_gateway_port(gateway):
    health = httpx.get(f"{gateway.base}/health").json()
    assert health["status"] == "ok"
    envoy = next(e for e in health["envoys"] if e["node_id"] == "gateway-1")
    assert envoy["connected"]
    assert all(t["current"] for t in envoy["types"]), envoy
    servers = {s["name"]: s for s in httpx.get(f"{gateway.base}/servers").json()["servers"]}
    assert servers["echo"]["state"] == "ready" and servers["echo"]["tools"] == 4
    assert servers["everything"]["state"] == "ready" and servers["everything"]["tools"] > 5


def test_a_slow_client_is_cut_off_and_others_keep_flowing(gateway, session):
    """Slowloris: a client that sends its body a little at a time holds a
    connection only for gateway.request_read_timeout_seconds, then gets 408
    as JSON-RPC; meanwhile the gateway serves others."""
    import socket

    from conftest import BASE_SERVERS

    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "a 2 s read timeout", request_read_timeout_seconds=2)
    try:
        with socket.create_connection(("127.0.0.1", gateway.ports["listen"]), timeout=30) as sock:
            body = jsonrpc("ping").encode()
            head = (
                f"POST /mcp HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
                f"accept: application/json, text/event-stream\r\ncontent-length: {len(body) + 50}\r\n\r\n"
            )
            sock.sendall(head.encode() + body[:5])
            # While it dawdles, another client is served.
            answer = session.request("tools/call", {"name": "echo__echo", "arguments": {"text": "meanwhile"}})
            assert answer["result"]["content"][0]["text"] == "meanwhile"
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        status_line, _, rest = reply.partition(b"\r\n")
        assert b" 408 " in status_line, reply
        error = json.loads(rest.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["code"] == -32600 and "request_read_timeout_seconds" in error["message"], error
    finally:
        gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")
