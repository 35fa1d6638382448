"""Hostile upstreams and state that clients choose (issue 18): an SSE event
that never ends, an answer too large to hold, an upstream's own 401 with a
challenge naming another authorization server, and rate-limit buckets keyed
by URIs the client makes up. The gateway must bound what it holds, answer
the client with its own JSON-RPC error naming the server, and go on serving
everyone else.

The servers: `hostile` (hostile_upstream.py, which passes discovery as an
ordinary MCP server and then misbehaves), `locked` (the repo's echo server,
configured to refuse calls without its own bearer token, with a challenge
that points elsewhere) and the session's echo server."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import BASE_SERVERS, HEADERS, RawSession, free_port, jsonrpc, wait_until

HERE = Path(__file__).resolve().parent
# Small enough that the tests send a few of them, large enough for any
# ordinary answer of the servers here.
MAX_EVENT = 262144
EVIL_CHALLENGE = 'Bearer resource_metadata="https://evil.example/.well-known/oauth-protected-resource"'
STEADY_BURST = 3


@pytest.fixture(scope="module")
def hostile(gateway):
    ports = {"hostile": free_port(), "locked": free_port()}
    gateway.start("hostile", [sys.executable, str(HERE / "hostile_upstream.py"), str(ports["hostile"])])
    wait_until("the hostile upstream", lambda: socket.create_connection(("127.0.0.1", ports["hostile"]), timeout=1).close() or True)
    # The catalog gives `locked` no token: it lists its tools to anyone,
    # and refuses the gateway's calls with a challenge of its choosing.
    gateway.echo_server(
        "locked", ports["locked"], "/mcp", "--require-bearer", "the-token-the-catalog-lacks", "--bearer-for-calls-only", "--challenge", EVIL_CHALLENGE
    )
    servers = BASE_SERVERS(gateway.ports) + [
        {"name": "hostile", "url": f"http://127.0.0.1:{ports['hostile']}/mcp"},
        {"name": "locked", "url": f"http://127.0.0.1:{ports['locked']}/mcp"},
    ]
    settings = {
        "max_upstream_event_bytes": MAX_EVENT,
        # A bucket per tool or resource URI: the URI is the client's to choose.
        "rate_limits": [{"name": "per-uri", "per": ["tool"], "servers": ["hostile"], "requests_per_minute": 1, "burst": STEADY_BURST}],
    }
    gateway.write_catalog_and_wait(servers, "the hostile catalog", **settings)
    wait_until("hostile and locked discovered", lambda: gateway.servers_ready({"echo", "everything", "hostile", "locked"}))
    yield ports
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")
    gateway.stop("hostile")
    gateway.stop("locked")


def echo_answers(gateway) -> bool:
    """Another client, on its own connection, is served as usual."""
    s = RawSession(gateway.url)
    s.initialize()
    answer = s.request("tools/call", {"name": "echo__echo", "arguments": {"text": "still here"}})
    return answer["result"]["content"][0]["text"] == "still here"


def envoy_alive(gateway) -> bool:
    return gateway.procs["envoy"].popen.poll() is None and httpx.get(f"{gateway.envoy_admin}/ready", timeout=5).text.strip() == "LIVE"


def test_an_upstreams_challenge_is_replaced_by_the_gateways_error(gateway, hostile):
    """The caller's credentials were fine; the gateway's were refused by the
    upstream. The client must not get a 401 (its OAuth flow would start) nor
    the upstream's WWW-Authenticate (which names another authorization
    server): it gets a JSON-RPC error for its request naming the server."""
    s = RawSession(gateway.url)
    s.initialize()
    assert "locked__echo" in s.tool_names()
    r = s.post(jsonrpc("tools/call", {"name": "locked__echo", "arguments": {"text": "hi"}}, id=7))
    assert r.status_code == 200, r.text
    assert "www-authenticate" not in r.headers, r.headers
    assert "evil.example" not in r.text
    answer = r.json()
    assert answer["id"] == 7
    assert answer["error"]["code"] == -32603
    message = answer["error"]["message"]
    assert "'locked' refused the gateway's credentials (HTTP 401)" in message, message
    assert "servers[].headers" in message
    # Through the SDK's client, in both revisions: an error for the call,
    # not an authorization flow.
    from mcp.client.client import Client

    async def sdk_call(mode: str) -> str:
        async with Client(gateway.url, mode=mode) as c:
            try:
                result = await c.call_tool("locked__echo", {"text": "hi"})
            except Exception as e:  # the SDK raises the JSON-RPC error
                return f"{type(e).__name__}: {e}"
            return json.dumps(result.model_dump(mode="json"))

    for mode in ("legacy", "auto"):
        text = asyncio.run(sdk_call(mode))
        assert "'locked' refused the gateway's credentials" in text, f"{mode}: {text}"
    assert echo_answers(gateway)


def read_until_error(stream: httpx.Response, limit_bytes: int) -> tuple[list[dict], dict]:
    """The messages of an SSE answer up to its JSON-RPC error."""
    seen: list[dict] = []
    read = 0
    for line in stream.iter_lines():
        read += len(line)
        assert read < limit_bytes, f"read {read} bytes without an error: the event was relayed unbounded"
        if line.startswith("data:") and line[5:].strip().startswith("{"):
            msg = json.loads(line[5:])
            if "error" in msg or "result" in msg:
                return seen, msg
            seen.append(msg)
    raise AssertionError(f"the stream ended without an answer; saw {seen}")


def test_an_sse_event_that_never_ends_is_cut_with_an_error_naming_the_server(gateway, hostile):
    """`hostile__flood` answers with an event whose data never ends. The
    client gets the event before it, then a JSON-RPC error for its request
    naming the server and the bound; meanwhile and afterwards other clients
    are served by the same Envoy."""
    s = RawSession(gateway.url)
    s.initialize()
    headers = {**HEADERS, "mcp-session-id": s.session_id}
    body = jsonrpc("tools/call", {"name": "hostile__flood", "arguments": {}}, id=9)
    with ThreadPoolExecutor(4) as pool:
        with httpx.stream("POST", gateway.url, content=body, headers=headers, timeout=60) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            # While the upstream floods, other clients are answered.
            assert all(pool.map(lambda _: echo_answers(gateway), range(4)))
            before, error = read_until_error(stream, limit_bytes=16 * MAX_EVENT)
    assert [m.get("params", {}).get("data") for m in before] == ["flooding"]
    assert error["id"] == 9
    assert error["error"]["code"] == -32603
    message = error["error"]["message"]
    assert "'hostile'" in message and f"{MAX_EVENT} bytes" in message and "max_upstream_event_bytes" in message, message
    assert envoy_alive(gateway)
    assert echo_answers(gateway)


def test_an_initialize_answer_too_large_fails_that_upstream_only(gateway, hostile):
    """The filter's own initialize calls come back buffered whole: an answer
    past the bound is an error for that upstream in the session, and the
    client's session opens with the others."""
    s = RawSession(gateway.url)
    init = {"protocolVersion": "2025-06-18", "capabilities": {"experimental": {"huge": {}}}, "clientInfo": {"name": "e2e", "version": "0"}}
    r = s.post(jsonrpc("initialize", init), session=False)
    assert r.status_code == 200, r.text
    s.session_id = r.headers["mcp-session-id"]
    assert s.post(jsonrpc("notifications/initialized", id=None)).status_code == 202
    answer = s.request("tools/call", {"name": "echo__echo", "arguments": {"text": "fine"}})
    assert answer["result"]["content"][0]["text"] == "fine"
    refused = s.request("tools/call", {"name": "hostile__flood", "arguments": {}})
    message = refused["error"]["message"]
    assert "'hostile' is unavailable in this session" in message and "larger than the gateway takes" in message, message
    assert envoy_alive(gateway)


def test_a_get_stream_event_that_never_ends_closes_that_servers_part(gateway, hostile):
    """The control plane relays the client's GET stream: the hostile
    server's endless event ends its part with an error message naming it,
    and the gateway goes on serving."""
    s = RawSession(gateway.url)
    s.initialize()
    headers = {"accept": "text/event-stream", "mcp-session-id": s.session_id}
    with httpx.stream("GET", gateway.url, headers=headers, timeout=60) as stream:
        assert stream.status_code == 200
        read = 0
        for line in stream.iter_lines():
            read += len(line)
            assert read < 16 * MAX_EVENT, "the endless event was relayed unbounded"
            if line.startswith("data:") and "notifications/message" in line:
                message = json.loads(line[5:])["params"]
                break
    assert message["level"] == "error"
    assert "'hostile'" in message["data"] and f"{MAX_EVENT} bytes" in message["data"], message
    assert echo_answers(gateway)


def test_rate_limit_keys_chosen_by_clients_stay_bounded(gateway, hostile):
    """Under `per: [tool]`, a resource read's bucket is keyed by its URI,
    which the client chooses. 1500 reads of distinct 60 KB URIs would have
    left 90 MB of keys in Envoy's shared data, never freed; buckets now live
    in a bounded ring with long keys named by their digest. A steady key is
    still limited."""
    s = RawSession(gateway.url)
    s.initialize()

    def read(uri: str, id: int) -> httpx.Response:
        return s.post(jsonrpc("resources/read", {"uri": uri}, id=id))

    def allocated() -> int:
        return int(httpx.get(f"{gateway.envoy_admin}/memory", timeout=5).json()["allocated"])

    before = allocated()
    count, size = 1500, 60000
    for i in range(count):
        r = read(f"flood://{i}-" + "k" * size, i)
        assert r.status_code == 200, f"read {i}: {r.status_code} {r.text[:200]}"
    grown = allocated() - before
    print(f"Envoy's allocated memory grew by {grown / 1e6:.1f} MB over {count} reads of {size}-byte URIs")
    assert grown < count * size / 3, f"Envoy's memory grew by {grown} bytes: the keys are kept"
    # A steady key keeps its limit: the burst, then 429 and -32029.
    for i in range(STEADY_BURST):
        assert read("flood://steady", 100_000 + i).status_code == 200
    refused = read("flood://steady", 100_100)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == -32029
    assert refused.json()["error"]["data"]["limit"] == "per-uri"
