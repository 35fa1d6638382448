"""A catalog of 1,000 stateful servers: the session id stays bounded.

A session id seals the client's upstream sessions; one per stateful server
would take about 90 bytes each, and past a few hundred servers every call
would get 431 (or a client would refuse the answer to `initialize`). The id
holds the sessions it has room for (`gateway.session_id_max_bytes`, 4096 by
default); the others are opened on the client's first call to their server,
kept by the Envoy that opened them, and treated like the first ones: the
same session on the next call, the client's notifications and answers,
its GET stream, and its DELETE.

The servers are one stateful echo server (rmcp, with session ids) listed
1,000 times, then server-everything, which comes last and so is always
opened on first use."""

import asyncio

import httpx
import pytest
from mcp.client.client import Client

from conftest import BASE_SERVERS, RawSession, free_port, wait_until
from test_upstream_streams import ROOTS, eventually, roots, text_of

COUNT = 1000
ROOM = 4096


@pytest.fixture(scope="module")
def thousand(gateway):
    port = free_port()
    gateway.echo_server("stateful", port, "/mcp", "--stateful", "--show-auth")
    echo, everything = BASE_SERVERS(gateway.ports)
    many = [{"name": f"s{i:04d}", "url": f"http://127.0.0.1:{port}/mcp"} for i in range(COUNT)]
    old = gateway.admin("/health")["version"]
    gateway.write_catalog([echo, *many, everything])

    def applied():
        h = gateway.admin("/health")
        live = [e for e in h["envoys"] if e["connected"]]
        return h["version"] != old and live and all(t["current"] for e in live for t in e["types"])

    # 1,002 servers discovered, compiled and pushed to Envoy.
    wait_until("the catalog of 1,000 stateful servers applied", applied, timeout=180)
    s = RawSession(gateway.url)
    s.initialize()
    assert {"s0000__echo", "s0999__echo", "everything__echo"} <= s.tool_names()
    yield f"http://127.0.0.1:{port}/mcp"
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")
    gateway.stop("stateful")


def upstream_session(s: RawSession, server: str) -> str:
    """The upstream session id the call to `server` arrived in, as the echo server saw it."""
    answer = s.request("tools/call", {"name": f"{server}__header", "arguments": {"name": "mcp-session-id"}})
    assert "result" in answer and not answer["result"].get("isError"), answer
    return answer["result"]["content"][0]["text"]


def test_the_session_id_stays_bounded_and_every_server_answers(gateway, thousand):
    s = RawSession(gateway.url)
    s.initialize()
    assert len(s.session_id) <= ROOM, len(s.session_id)
    first, last = upstream_session(s, "s0000"), upstream_session(s, "s0999")
    assert first != "none" and last != "none", "each call runs in an upstream session"
    assert first != last
    # The session opened on first use is the one the next calls run in.
    assert upstream_session(s, "s0999") == last
    assert upstream_session(s, "s0500") not in (first, last)
    # Another client gets sessions of its own.
    other = RawSession(gateway.url)
    other.initialize()
    assert upstream_session(other, "s0999") != last

    # DELETE ends the upstream sessions, those opened on first use included:
    # the echo server no longer knows them.
    direct = lambda sid: httpx.post(  # noqa: E731
        thousand,
        headers={"mcp-session-id": sid, "content-type": "application/json", "accept": "application/json, text/event-stream"},
        content='{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
        timeout=10,
    )
    assert direct(last).status_code == 200, "alive before the DELETE"
    assert httpx.delete(gateway.url, headers={"mcp-session-id": s.session_id}, timeout=30).status_code == 204
    for sid in (first, last):
        assert direct(sid).status_code == 404, f"upstream session {sid} outlived the client's DELETE"
    assert direct(upstream_session(other, "s0999")).status_code == 200, "another client's session is untouched"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_the_python_sdk_calls_the_last_server(gateway, thousand, mode):
    async def scenario():
        async with Client(gateway.url, mode=mode) as c:
            names = {t.name for t in (await c.list_tools()).tools}
            assert {"s0000__echo", "s0999__echo", "everything__echo"} <= names
            assert text_of(await c.call_tool("s0999__echo", {"text": "far"})) == "far"
            assert text_of(await c.call_tool("s0000__echo", {"text": "near"})) == "near"

    asyncio.run(scenario())


def test_a_server_opened_on_first_use_streams_and_hears_the_client(gateway, thousand):
    """server-everything, opened on the first call: the client's roots
    notification reaches it, its roots/list request (on its GET stream,
    which the control plane joins to the client's once told) reaches the
    client, and the client's answer reaches it back."""

    async def scenario():
        logs: list[str] = []

        async def on_log(params):
            logs.append(str(params.data))

        async with Client(gateway.url, mode="legacy", list_roots_callback=roots, logging_callback=on_log) as c:
            # The first call opens the session with server-everything.
            assert text_of(await c.call_tool("everything__echo", {"message": "hello"})) == "Echo: hello"
            await eventually("the server received the client's roots", lambda: any("Roots updated: 1 root(s)" in m for m in logs), c.send_roots_list_changed)
            return text_of(await c.call_tool("everything__get-roots-list", {}))

    assert str(ROOTS[0].uri) in asyncio.run(scenario())
