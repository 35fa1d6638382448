"""An upstream's text/event-stream answer reaches the client event by event:
the progress notifications of a long tool call arrive while it runs, before
its result, not all at once at the end."""

import asyncio
import time

import anyio
import pytest
from mcp.client.client import Client


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_progress_streams_through_before_the_result(gateway, mode):
    """In the handshake era the filter relays the upstream's stream; in
    2026-07-28 (auto) the era bridge does, since server-everything needs a
    session."""
    arrivals: list[tuple[float, float]] = []

    async def session():
        async with Client(gateway.url, mode=mode) as c:
            start = time.monotonic()

            async def on_progress(progress, total, message):
                arrivals.append((time.monotonic() - start, progress))

            result = await c.call_tool(
                "everything__trigger-long-running-operation", {"duration": 2, "steps": 4}, progress_callback=on_progress
            )
            return time.monotonic() - start, result

    finished, result = asyncio.run(session())
    print(f"\nprogress arrivals (s, step): {[(round(t, 2), p) for t, p in arrivals]}; result at {finished:.2f} s")
    assert [p for _, p in arrivals] == [1, 2, 3, 4]
    assert "Long running operation completed" in result.content[0].text
    # Buffered whole, all four would land together with the result. Streamed,
    # the first lands about one step (0.5 s) in, long before the end (2 s).
    # The comparison is within this one run, so machine speed does not matter.
    assert arrivals[0][0] < finished / 2, "the first progress event arrived only with the result: the answer was buffered"


def test_an_answer_cut_mid_stream_resumes_from_the_last_event(gateway):
    """The route timeout (2 s for server-everything here) cuts a 2.2 s call's
    answer after its first progress events. The Python SDK reconnects (1 s
    later) with a GET carrying the last event id it saw, tagged with the
    server by the filter; the control plane asks server-everything to replay
    from there, and the last progress event and the result arrive.

    The call ends before the client reconnects on purpose: server-everything's
    example event store returns an event id where the SDK expects a stream id,
    and the SDK maps the resumed stream by what the store returns: a resumed
    stream of a call still running never gets the rest (server-everything's
    bug, not the gateway's). A replay of a finished answer it does right."""
    from conftest import BASE_SERVERS

    base = BASE_SERVERS(gateway.ports)
    short = [dict(s, request_timeout_seconds=2) if s["name"] == "everything" else s for s in base]
    progress: list[float] = []

    async def session():
        async with Client(gateway.url, mode="legacy") as c:
            async def on_progress(p, total, message):
                progress.append(p)

            # Without resumption the client would wait for the answer forever.
            with anyio.fail_after(60):
                return await c.call_tool("everything__trigger-long-running-operation", {"duration": 2.2, "steps": 4}, progress_callback=on_progress)

    try:
        gateway.write_catalog_and_wait(short, "server-everything with a 2 s route timeout")
        cuts_before = gateway.envoy_stat("cluster.mcp_everything.upstream_rq_timeout")
        result = asyncio.run(session())
        cuts = gateway.envoy_stat("cluster.mcp_everything.upstream_rq_timeout") - cuts_before
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")
    assert "Long running operation completed" in result.content[0].text
    assert progress == [1, 2, 3, 4], progress
    assert cuts == 1, "the answer was not cut by the route timeout: the test proves nothing"
