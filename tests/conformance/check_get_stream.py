#!/usr/bin/env python3
"""Wire check: on which HTTP stream do the fixture's sampling/elicitation requests travel?

Speaks raw Streamable HTTP (httpx, no MCP SDK) to a server URL -- the fixture
directly, or a gateway in front of it -- and for each of `test_sampling`,
`test_elicitation`, `test_elicitation_sep1034_defaults` and
`test_elicitation_sep1330_enums`:

1. opens a session (initialize + notifications/initialized),
2. opens the standalone GET SSE stream (or, with --late-get, opens it only
   after the tools/call is already in flight),
3. POSTs tools/call and records every SSE event per stream,
4. answers the server's request with a separate POST (expects 202),
5. checks the tools/call result arrives on the POST stream, then DELETEs the session.

It prints one transcript line per message ("GET  <- request elicitation/create
id=0") and exits non-zero if a server request did not arrive on the expected
stream (`--expect standalone`, the default, means the GET stream).

    python check_get_stream.py http://127.0.0.1:3001/mcp [--expect standalone|related] [--late-get]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import httpx

PROTOCOL_VERSION = "2025-11-25"
TOOLS = {
    "test_sampling": {"prompt": "wire check prompt"},
    "test_elicitation": {"message": "wire check message"},
    "test_elicitation_sep1034_defaults": {},
    "test_elicitation_sep1330_enums": {},
}


async def sse_events(response: httpx.Response):
    """Yield (event_id, data) for each SSE event of a streaming response."""
    event_id, data_lines = None, []
    async for line in response.aiter_lines():
        if line == "":
            if data_lines:
                yield event_id, "\n".join(data_lines)
            event_id, data_lines = None, []
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            event_id = value
        elif field == "data":
            data_lines.append(value)


def describe(msg: dict[str, Any]) -> str:
    if "method" in msg:
        kind = "request" if "id" in msg else "notification"
        return f"{kind} {msg['method']}" + (f" id={msg['id']}" if "id" in msg else "")
    return f"response id={msg.get('id')}" + (" (error)" if "error" in msg else "")


def client_answer(msg: dict[str, Any]) -> dict[str, Any]:
    if msg["method"] == "sampling/createMessage":
        result = {"role": "assistant", "content": {"type": "text", "text": "wire check reply"}, "model": "wire-check"}
    else:
        result = {"action": "accept", "content": {"username": "wire", "email": "wire@example.com"}}
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


async def run_tool(client: httpx.AsyncClient, url: str, tool: str, args: dict[str, Any], late_get: bool) -> dict[str, Any]:
    base = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {"sampling": {}, "elicitation": {}},
            "clientInfo": {"name": "wire-check", "version": "1.0.0"},
        },
    }
    async with client.stream("POST", url, headers=base, json=init) as r:
        r.raise_for_status()
        session_id = r.headers["mcp-session-id"]
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            async for _, data in sse_events(r):
                if data and json.loads(data).get("id") == 1:
                    break
        else:
            await r.aread()
    headers = {**base, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": PROTOCOL_VERSION}
    r = await client.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert r.status_code == 202, f"initialized -> {r.status_code}"

    seen: list[tuple[str, dict[str, Any]]] = []
    answered: set[Any] = set()
    tool_result: dict[str, Any] = {}
    get_open = anyio.Event()
    done = anyio.Event()

    async def answer(stream: str, msg: dict[str, Any]) -> None:
        if "method" in msg and "id" in msg and msg["id"] not in answered:
            answered.add(msg["id"])
            reply = await client.post(url, headers=headers, json=client_answer(msg))
            print(f"  POST -> response id={msg['id']} (answer to {msg['method']}): HTTP {reply.status_code}")

    async def read_get() -> None:
        get_headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id, "MCP-Protocol-Version": PROTOCOL_VERSION}
        async with client.stream("GET", url, headers=get_headers) as g:
            print(f"  GET  opened: HTTP {g.status_code} {g.headers.get('content-type')}")
            get_open.set()
            async for event_id, data in sse_events(g):
                if not data:
                    print(f"  GET  <- priming event id={event_id}")
                    continue
                msg = json.loads(data)
                print(f"  GET  <- {describe(msg)} (event id={event_id})")
                seen.append(("GET", msg))
                await answer("GET", msg)

    async def call_tool() -> None:
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": args}}
        async with client.stream("POST", url, headers=headers, json=call) as p:
            print(f"  POST tools/call: HTTP {p.status_code} {p.headers.get('content-type')}")
            async for event_id, data in sse_events(p):
                if not data:
                    print(f"  POST <- priming event id={event_id}")
                    continue
                msg = json.loads(data)
                print(f"  POST <- {describe(msg)} (event id={event_id})")
                seen.append(("POST", msg))
                if msg.get("id") == 2 and "method" not in msg:
                    tool_result.update(msg)
                    break
                await answer("POST", msg)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_get) if not late_get else None
        if not late_get:
            await get_open.wait()
        tg.start_soon(call_tool)
        if late_get:
            await anyio.sleep(1.0)
            tg.start_soon(read_get)
        with anyio.fail_after(40):
            await done.wait()
        tg.cancel_scope.cancel()

    r = await client.delete(url, headers={"Mcp-Session-Id": session_id, "MCP-Protocol-Version": PROTOCOL_VERSION})
    print(f"  DELETE session: HTTP {r.status_code}")
    server_requests = [(stream, m) for stream, m in seen if "method" in m and "id" in m]
    return {"server_requests": server_requests, "result": tool_result}


async def main_async(args: argparse.Namespace) -> int:
    want = "GET" if args.expect == "standalone" else "POST"
    failures = 0
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
        for tool, tool_args in TOOLS.items():
            print(f"{tool}:")
            try:
                outcome = await run_tool(client, args.url, tool, tool_args, args.late_get)
            except Exception as exc:  # noqa: BLE001
                print(f"  FAIL: {type(exc).__name__}: {exc}")
                failures += 1
                continue
            streams = [stream for stream, _ in outcome["server_requests"]]
            text = (outcome["result"].get("result") or {}).get("content", [{}])[0].get("text", "")
            ok = streams == [want] and not (outcome["result"].get("result") or {}).get("isError")
            print(f"  server request stream(s): {streams or 'none'}; tool result: {text!r}")
            print(f"  {'OK' if ok else 'FAIL'}: expected exactly one server request on the {want} stream")
            failures += 0 if ok else 1
    print(f"{len(TOOLS) - failures} passed, {failures} failed")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="MCP endpoint, e.g. http://127.0.0.1:3001/mcp")
    parser.add_argument("--expect", choices=("standalone", "related"), default="standalone")
    parser.add_argument("--late-get", action="store_true", help="open the GET stream 1 s after the tools/call")
    return anyio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
