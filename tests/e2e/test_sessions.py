"""Session lifecycle: DELETE ends the client's upstream sessions too."""

import httpx

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
