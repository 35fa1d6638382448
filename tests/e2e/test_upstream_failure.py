"""An upstream that is down gets the client a JSON-RPC error naming it, not
Envoy's plain-text 503, and the other servers keep answering."""

from conftest import RawSession


def test_upstream_down_is_a_jsonrpc_error_naming_the_server(gateway):
    s = RawSession(gateway.url)
    s.initialize()
    gateway.stop("echo")
    try:
        r = s.post('{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"name":"echo__echo","arguments":{"text":"x"}}}')
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/json"
        answer = r.json()
        assert answer["id"] == "call-7"
        assert answer["error"]["code"] == -32603
        assert "Upstream server 'echo' did not answer" in answer["error"]["message"], answer
        assert s.request("tools/call", {"name": "everything__echo", "arguments": {"message": "fine"}})["result"]["content"][0]["text"] == "Echo: fine"
    finally:
        gateway.echo_server("echo", gateway.ports["echo"])
    assert s.request("tools/call", {"name": "echo__echo", "arguments": {"text": "back"}})["result"]["content"][0]["text"] == "back"


def test_a_slow_server_times_out_on_its_own_limit(gateway):
    """A server's request_timeout_seconds bounds calls to it; the client gets
    a JSON-RPC error naming it, cannot lift the limit with Envoy's header,
    and the other servers are unaffected. (Answers already streaming as SSE
    when the limit strikes are cut instead: see issue 7's idle timeouts.)"""
    from conftest import BASE_SERVERS

    base = BASE_SERVERS(gateway.ports)
    slow = '{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo__sleep","arguments":{"ms":3000}}}'
    try:
        gateway.write_catalog_and_wait([{**base[0], "request_timeout_seconds": 1}, base[1]], "the new timeout acknowledged by Envoy")
        s = RawSession(gateway.url)
        s.initialize()
        for headers in ({}, {"x-envoy-upstream-rq-timeout-ms": "60000"}):
            r = s.post(slow, headers=headers)
            assert r.status_code == 504, r.text
            error = r.json()["error"]
            assert error["code"] == -32603 and "'echo'" in error["message"] and "timeout" in error["message"], error
        fast = s.request("tools/call", {"name": "echo__sleep", "arguments": {"ms": 10}})
        assert fast["result"]["content"][0]["text"] == "slept"
        assert s.request("tools/call", {"name": "everything__echo", "arguments": {"message": "unaffected"}})["result"]["content"][0]["text"] == "Echo: unaffected"
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog acknowledged")
