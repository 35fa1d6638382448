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
