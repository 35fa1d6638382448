"""Session lifecycle: DELETE ends the client's upstream sessions too."""

import httpx
import pytest

from conftest import RawSession


def closed_upstream_sessions(gateway) -> int:
    return gateway.procs["everything"].log.read_text().count("removing from transports map")


def test_delete_ends_the_upstream_sessions(gateway):
    s = RawSession(gateway.url)
    s.initialize()
    assert s.request("tools/call", {"name": "everything__echo", "arguments": {"message": "hi"}})["result"]
    closed_before = closed_upstream_sessions(gateway)

    r = httpx.delete(gateway.url, headers={"mcp-session-id": s.session_id})
    assert (r.status_code, r.text) == (204, "")
    assert closed_upstream_sessions(gateway) == closed_before + 1, "server-everything saw its session end"

    # The id cannot be used again: every request naming it gets 404, as an
    # ended session's must, whether the gateway would answer it itself
    # (tools/list), route it (tools/call) or hand it to the control plane
    # (the GET stream); and nothing reaches a server.
    upstream = lambda: sum(gateway.envoy_stat(f"cluster.{c}.upstream_rq_total") for c in ("mcp_echo", "mcp_everything", "gateway_admin"))  # noqa: E731
    before = upstream()
    for body in ('{"jsonrpc":"2.0","id":9,"method":"tools/list"}',
                 '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"x"}}}'):
        r = s.post(body)
        assert r.status_code == 404 and r.json()["error"]["code"] == -32001, r.text
        assert "ended by a DELETE" in r.json()["error"]["message"]
    stream = httpx.get(gateway.url, headers={"mcp-session-id": s.session_id, "accept": "text/event-stream"}, timeout=10)
    assert stream.status_code == 404, stream.text
    assert httpx.delete(gateway.url, headers={"mcp-session-id": s.session_id}).status_code == 404
    assert upstream() == before
    # Another session is not concerned.
    other = RawSession(gateway.url)
    other.initialize()
    assert other.request("tools/call", {"name": "echo__echo", "arguments": {"text": "still here"}})["result"]["content"][0]["text"] == "still here"


def test_delete_needs_a_valid_session(gateway):
    assert httpx.delete(gateway.url).status_code == 400
    r = httpx.delete(gateway.url, headers={"mcp-session-id": "k.forged"})
    assert r.status_code == 404 and r.json()["error"]["code"] == -32001


def test_python_sdk_closes_its_session_cleanly(gateway):
    import asyncio

    from mcp.client.client import Client

    before = closed_upstream_sessions(gateway)

    async def session():
        async with Client(gateway.url, mode="legacy") as c:
            await c.call_tool("everything__echo", {"message": "bye"})

    asyncio.run(session())
    assert closed_upstream_sessions(gateway) == before + 1


# logging/setLevel is deprecated by the 2026-07-28 revision, not by the
# handshake-era revisions this test speaks.
@pytest.mark.filterwarnings("ignore:The logging capability is deprecated")
def test_log_level_and_cancellation_reach_the_upstreams(gateway):
    import asyncio

    from mcp.client.client import Client

    async def session():
        async with Client(gateway.url, mode="legacy") as c:
            assert "logging" in c.server_capabilities.model_dump(exclude_none=True)
            await c.set_logging_level("debug")

    asyncio.run(session())

    s = RawSession(gateway.url)
    s.initialize()
    counts = lambda: [gateway.envoy_stat(f"cluster.{c}.upstream_rq_total") for c in ("mcp_echo", "mcp_everything")]  # noqa: E731
    before = counts()
    r = s.post('{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":42,"reason":"user"}}')
    assert (r.status_code, r.text) == (202, "")
    assert counts() == [before[0] + 1, before[1] + 1], "the cancellation went to every server of the session"


def test_only_stateful_servers_are_initialized_per_client_session(gateway):
    """The echo server issues no session ids (rmcp's stateless mode), so a
    client session costs it nothing; server-everything gets initialize and
    notifications/initialized."""
    def counts():
        return {c: gateway.envoy_stat(f"cluster.{c}.upstream_rq_total") for c in ("mcp_echo", "mcp_everything")}

    before = counts()
    s = RawSession(gateway.url)
    s.initialize()
    after = counts()
    assert after["mcp_echo"] == before["mcp_echo"]
    assert after["mcp_everything"] == before["mcp_everything"] + 2
    assert s.request("tools/call", {"name": "echo__echo", "arguments": {"text": "no session needed"}})["result"]["content"][0]["text"] == "no session needed"
