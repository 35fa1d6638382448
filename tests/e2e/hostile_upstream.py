"""A hostile upstream for test_hostile_upstreams.py: it passes the gateway's
discovery as an ordinary stateful MCP server, then misbehaves as an attacker
(or a broken server) would. It plays the attacker, not a stand-in for a real
MCP peer, which is why it is written here rather than taken from a project.

- `tools/call flood`: an SSE answer whose second event never ends (`data: xxx…`
  without a line end, for as long as the gateway reads);
- `initialize` from a client whose capabilities carry `experimental.huge`:
  an answer of 8 MB (the filter's own call, buffered whole by Envoy);
- `resources/read` of any `flood://` URI: a small answer (for the rate-limit
  keys test, whose URIs the client chooses);
- GET with a session: an event stream whose first event never ends.

Run: python hostile_upstream.py PORT
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SESSIONS = itertools.count(1)
CHUNK = b"x" * 65536


def answer(id, result) -> dict:
    return {"jsonrpc": "2.0", "id": id, "result": result}


async def endless(first: bytes):
    yield first
    yield b"data: "
    while True:
        yield CHUNK
        # Let the server notice a client that went away.
        await asyncio.sleep(0)


async def mcp(request: Request) -> Response:
    if request.method == "GET":
        if not request.headers.get("mcp-session-id"):
            return Response(status_code=405)
        return StreamingResponse(endless(b": hostile GET stream\n\n"), media_type="text/event-stream")
    if request.method == "DELETE":
        return Response(status_code=200)
    message = json.loads(await request.body())
    method, id, params = message.get("method"), message.get("id"), message.get("params") or {}
    if id is None:
        return Response(status_code=202)
    if method == "initialize":
        result = {
            "protocolVersion": "2025-06-18",
            "capabilities": {"tools": {}, "resources": {}},
            "serverInfo": {"name": "hostile", "version": "0"},
        }
        if "huge" in (params.get("capabilities", {}).get("experimental") or {}):
            result["instructions"] = "y" * (8 * 1024 * 1024)
        return JSONResponse(answer(id, result), headers={"mcp-session-id": f"hostile-{next(SESSIONS)}"})
    if method == "tools/list":
        tools = [{"name": "flood", "description": "answers with an event that never ends", "inputSchema": {"type": "object"}}]
        return JSONResponse(answer(id, {"tools": tools}))
    if method == "resources/list":
        return JSONResponse(answer(id, {"resources": []}))
    if method == "resources/templates/list":
        return JSONResponse(answer(id, {"resourceTemplates": [{"uriTemplate": "flood://{key}", "name": "any key"}]}))
    if method == "resources/read":
        return JSONResponse(answer(id, {"contents": [{"uri": "flood://read", "text": "read"}]}))
    if method == "ping":
        return JSONResponse(answer(id, {}))
    if method == "tools/call" and params.get("name") == "flood":
        progress = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "flooding"}}
        first = f"event: message\ndata: {json.dumps(progress)}\n\n".encode()
        return StreamingResponse(endless(first), media_type="text/event-stream")
    return JSONResponse({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": f"no {method}"}})


app = Starlette(routes=[Route("/mcp", mcp, methods=["GET", "POST", "DELETE"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
