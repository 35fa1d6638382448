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

    # The id cannot be used again: the upstream session it carried is gone.
    # server-everything answers an unknown session with 400 (the spec says
    # 404); the gateway relays the upstream's answer as it is.
    r = s.post('{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"x"}}}')
    assert r.status_code in (400, 404), r.text


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
