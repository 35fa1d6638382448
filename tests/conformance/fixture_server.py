#!/usr/bin/env python3
"""MCP conformance fixture server (Streamable HTTP at /mcp).

A server that exposes the fixture interface the official MCP conformance suite
(`@modelcontextprotocol/conformance`, `server` command) probes: the `test_*`
tools, the `test://` resources, the `test_*` prompts, completion, logging and
ping.  It is written against the official Python SDK (`mcp` 2.x, low-level
`Server` API) and serves both protocol eras from one endpoint:

* dated revisions up to 2025-11-25: stateful sessions (`initialize` handshake,
  `Mcp-Session-Id`, standalone GET SSE stream, DELETE termination);
* 2026-07-28: the SDK's stateless per-request
  `_meta` envelope path, selected by the `MCP-Protocol-Version` header.

Server-to-client requests
-------------------------
`test_sampling`, `test_elicitation`, `test_elicitation_sep1034_defaults` and
`test_elicitation_sep1330_enums` send `sampling/createMessage` /
`elicitation/create` to the client.  By default (`--server-requests
standalone`) these requests are sent *unrelated* to the tools/call request, so
on a stateful session they travel on the session's standalone GET SSE stream
and the client's answer comes back as a separate POST.  This is the path the
suite's reference server used up to its July 2026 change (conformance PR #414),
and it is the harder one for an intermediary (gateway) to get right.  Before
sending, the fixture waits (bounded by `--get-stream-wait`) until the session
has a GET stream open, so the request is never dropped because the client's
GET raced the tool call.  `--server-requests related` sends them on the
tools/call POST SSE stream instead (what the current reference server does).

DNS-rebinding protection
------------------------
Requests whose Host (or Origin, when present) is not a loopback name are
refused with 421 / 403, as the `dns-rebinding-protection` scenario requires.
Loopback names are accepted with or without a port.  `--allowed-host` adds
names (e.g. an upstream cluster name a gateway rewrites Host to);
`--no-dns-rebinding-protection` switches the check off.

Usage:
    python fixture_server.py --port 3001 [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import struct
import sys
import time
import warnings
import zlib
from itertools import count
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

# The 2025-era features this fixture must exercise (logging, sampling, ...) are
# deprecated as of 2026-07-28; the warnings are noise here.
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

log = logging.getLogger("conformance-fixture")

SERVER_NAME = "mcp-conformance-fixture"
SERVER_VERSION = "1.0.0"
INVALID_PARAMS = -32602
MISSING_REQUIRED_CLIENT_CAPABILITY = -32021


# ---------------------------------------------------------------------------
# Binary payloads, generated rather than embedded.
# ---------------------------------------------------------------------------


def _png_1x1(rgba: tuple[int, int, int, int] = (255, 0, 0, 255)) -> bytes:
    """A valid 1x1 RGBA PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1, 8-bit, RGBA
    scanline = b"\x00" + bytes(rgba)  # filter byte + one pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanline)) + chunk(b"IEND", b"")


def _wav_silence(samples: int = 800, rate: int = 8000) -> bytes:
    """A valid mono 16-bit PCM WAV file of silence (0.1 s at 8 kHz)."""
    data = b"\x00\x00" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    riff_body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(riff_body)) + riff_body


PNG_B64 = base64.b64encode(_png_1x1()).decode("ascii")
WAV_B64 = base64.b64encode(_wav_silence()).decode("ascii")


# ---------------------------------------------------------------------------
# Fixture catalogue
# ---------------------------------------------------------------------------

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}

# JSON Schema 2020-12 keywords that must survive tools/list unchanged (SEP-1613/2106).
JSON_SCHEMA_2020_12_INPUT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

TOOLS: list[dict[str, Any]] = [
    {"name": "test_simple_text", "description": "Returns a fixed text block", "inputSchema": NO_ARGS},
    {"name": "test_image_content", "description": "Returns a 1x1 PNG image block", "inputSchema": NO_ARGS},
    {"name": "test_audio_content", "description": "Returns a short WAV audio block", "inputSchema": NO_ARGS},
    {"name": "test_embedded_resource", "description": "Returns an embedded text resource", "inputSchema": NO_ARGS},
    {
        "name": "test_multiple_content_types",
        "description": "Returns text, image and embedded resource blocks",
        "inputSchema": NO_ARGS,
    },
    {
        "name": "test_tool_with_logging",
        "description": "Emits three info log notifications while running",
        "inputSchema": NO_ARGS,
    },
    {
        "name": "test_tool_with_progress",
        "description": "Reports progress 0, 50, 100 of 100 while running",
        "inputSchema": NO_ARGS,
    },
    {"name": "test_error_handling", "description": "Always fails with isError", "inputSchema": NO_ARGS},
    {
        "name": "test_sampling",
        "description": "Asks the client for an LLM completion (sampling/createMessage)",
        "inputSchema": {
            "type": "object",
            "properties": {"prompt": {"type": "string", "description": "Prompt forwarded to the client"}},
            "required": ["prompt"],
        },
    },
    {
        "name": "test_elicitation",
        "description": "Asks the client for user input (elicitation/create)",
        "inputSchema": {
            "type": "object",
            "properties": {"message": {"type": "string", "description": "Message shown to the user"}},
            "required": ["message"],
        },
    },
    {
        "name": "test_elicitation_sep1034_defaults",
        "description": "Elicitation whose schema carries defaults for every primitive type (SEP-1034)",
        "inputSchema": NO_ARGS,
    },
    {
        "name": "test_elicitation_sep1330_enums",
        "description": "Elicitation whose schema uses all five enum shapes (SEP-1330)",
        "inputSchema": NO_ARGS,
    },
    {
        "name": "json_schema_2020_12_tool",
        "description": "Tool whose input schema uses JSON Schema 2020-12 keywords",
        "inputSchema": JSON_SCHEMA_2020_12_INPUT,
    },
]
TOOL_NAMES = {t["name"] for t in TOOLS}

STATIC_TEXT = "This is the content of the static text resource."
RESOURCES: list[dict[str, Any]] = [
    {
        "uri": "test://static-text",
        "name": "static-text",
        "description": "Static text resource",
        "mimeType": "text/plain",
    },
    {
        "uri": "test://static-binary",
        "name": "static-binary",
        "description": "Static binary resource (1x1 PNG)",
        "mimeType": "image/png",
    },
    {
        "uri": "test://watched-resource",
        "name": "watched-resource",
        "description": "Resource clients may subscribe to",
        "mimeType": "text/plain",
    },
]
RESOURCE_TEMPLATES: list[dict[str, Any]] = [
    {
        "uriTemplate": "test://template/{id}/data",
        "name": "template-data",
        "description": "Per-id JSON document",
        "mimeType": "application/json",
    }
]
TEMPLATE_PREFIX, TEMPLATE_SUFFIX = "test://template/", "/data"

PROMPTS: list[dict[str, Any]] = [
    {"name": "test_simple_prompt", "description": "A prompt without arguments"},
    {
        "name": "test_prompt_with_arguments",
        "description": "A prompt that substitutes two arguments",
        "arguments": [
            {"name": "arg1", "description": "First test argument", "required": True},
            {"name": "arg2", "description": "Second test argument", "required": True},
        ],
    },
    {
        "name": "test_prompt_with_embedded_resource",
        "description": "A prompt that embeds a resource",
        "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": True}],
    },
    {"name": "test_prompt_with_image", "description": "A prompt that carries an image"},
]
PROMPT_NAMES = {p["name"] for p in PROMPTS}

COMPLETION_CANDIDATES = ["paris", "park", "party", "test", "testing", "tested"]


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image() -> dict[str, Any]:
    return {"type": "image", "data": PNG_B64, "mimeType": "image/png"}


# ---------------------------------------------------------------------------
# Event store (resumability: SSE event ids, priming events, Last-Event-ID)
# ---------------------------------------------------------------------------


class MemoryEventStore(EventStore):
    """Unbounded-enough in-memory event log, one per process (test use only)."""

    def __init__(self, max_events: int = 10_000) -> None:
        self._events: list[tuple[str, str, types.JSONRPCMessage | None]] = []
        self._ids = count(1)
        self._max = max_events

    async def store_event(self, stream_id: str, message: types.JSONRPCMessage | None) -> str:
        event_id = f"{next(self._ids)}"
        self._events.append((event_id, stream_id, message))
        if len(self._events) > self._max:
            del self._events[: len(self._events) - self._max]
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback) -> str | None:  # type: ignore[override]
        position = next((i for i, (eid, _, _) in enumerate(self._events) if eid == last_event_id), None)
        if position is None:
            return None
        stream_id = self._events[position][1]
        for event_id, sid, message in self._events[position + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


def _typed(result_type, handler):
    """Wrap a handler that returns a wire-shaped dict so it returns the SDK result model.

    The SDK fills era-specific required fields from the model's defaults
    (`resultType`, `ttlMs`, `cacheScope` on 2026-07-28) and strips them again on
    the 2025 wire, so one handler serves both eras.
    """

    async def wrapped(ctx, params):
        data = await handler(ctx, params)
        if isinstance(data, dict) and data.get("resultType") == "input_required":
            return types.InputRequiredResult.model_validate(data)
        return result_type.model_validate(data)

    return wrapped


class Fixture:
    def __init__(self, server_requests: str, get_stream_wait: float, request_timeout: float) -> None:
        self.server_requests = server_requests
        self.get_stream_wait = get_stream_wait
        self.request_timeout = request_timeout
        self.subscriptions: dict[str, set[str]] = {}
        self.server = Server(
            SERVER_NAME,
            version=SERVER_VERSION,
            instructions="Fixture server for the MCP conformance suite.",
            get_tool_input_schema=_tool_input_schema,
            on_list_tools=_typed(types.ListToolsResult, self.list_tools),
            on_call_tool=_typed(types.CallToolResult, self.call_tool),
            on_list_resources=_typed(types.ListResourcesResult, self.list_resources),
            on_list_resource_templates=_typed(types.ListResourceTemplatesResult, self.list_resource_templates),
            on_read_resource=_typed(types.ReadResourceResult, self.read_resource),
            on_subscribe_resource=_typed(types.EmptyResult, self.subscribe),
            on_unsubscribe_resource=_typed(types.EmptyResult, self.unsubscribe),
            on_list_prompts=_typed(types.ListPromptsResult, self.list_prompts),
            on_get_prompt=_typed(types.GetPromptResult, self.get_prompt),
            on_completion=_typed(types.CompleteResult, self.complete),
            on_set_logging_level=_typed(types.EmptyResult, self.set_logging_level),
        )
        # 2026-07-28 multi-round-trip: seal requestState on the way out and reject
        # tampered/foreign state (-32602) on the way in; handlers see plaintext.
        self.server.middleware.append(RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=SERVER_NAME))

    # -- tools -------------------------------------------------------------

    async def list_tools(self, ctx, params) -> dict[str, Any]:
        return {"tools": TOOLS + (MODERN_TOOLS if _is_modern(ctx) else [])}

    async def call_tool(self, ctx, params: types.CallToolRequestParams) -> dict[str, Any]:
        name, args = params.name, params.arguments or {}
        if name in MODERN_TOOL_NAMES:
            if not _is_modern(ctx):
                return _tool_error(f"{name} is only served on protocol version 2026-07-28")
            return await self._modern_tool(ctx, name, params)
        if name not in TOOL_NAMES:
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {name}")
        if name == "test_simple_text":
            return {"content": [_text("This is a simple text response for testing.")]}
        if name == "test_image_content":
            return {"content": [_image()]}
        if name == "test_audio_content":
            return {"content": [{"type": "audio", "data": WAV_B64, "mimeType": "audio/wav"}]}
        if name == "test_embedded_resource":
            return {
                "content": [
                    {
                        "type": "resource",
                        "resource": {
                            "uri": "test://embedded-resource",
                            "mimeType": "text/plain",
                            "text": "This is an embedded resource content.",
                        },
                    }
                ]
            }
        if name == "test_multiple_content_types":
            return {
                "content": [
                    _text("Multiple content types test:"),
                    _image(),
                    {
                        "type": "resource",
                        "resource": {
                            "uri": "test://mixed-content-resource",
                            "mimeType": "application/json",
                            "text": json.dumps({"test": "data", "value": 123}, separators=(",", ":")),
                        },
                    },
                ]
            }
        if name == "test_tool_with_logging":
            return await self._tool_logging(ctx)
        if name == "test_tool_with_progress":
            return await self._tool_progress(ctx)
        if name == "test_error_handling":
            return {"isError": True, "content": [_text("This tool intentionally returns an error for testing")]}
        if name == "test_sampling":
            return await self._tool_sampling(ctx, str(args.get("prompt", "")))
        if name == "test_elicitation":
            return await self._tool_elicitation(ctx, str(args.get("message", "")))
        if name == "test_elicitation_sep1034_defaults":
            return await self._tool_elicit_schema(ctx, "Please review these values (defaults provided)", DEFAULTS_SCHEMA)
        if name == "test_elicitation_sep1330_enums":
            return await self._tool_elicit_schema(ctx, "Please choose from each kind of enum", ENUMS_SCHEMA)
        if name == "json_schema_2020_12_tool":
            return {"content": [_text(f"Received: {json.dumps(args, sort_keys=True)}")]}
        raise MCPError(INVALID_PARAMS, f"Unknown tool: {name}")  # pragma: no cover

    async def _tool_logging(self, ctx) -> dict[str, Any]:
        steps = ["Tool execution started", "Tool processing data", "Tool execution completed"]
        for i, message in enumerate(steps):
            if i:
                await anyio.sleep(0.05)
            # related_request_id: the notification rides the tools/call POST SSE stream.
            await ctx.session.send_log_message("info", message, logger="conformance-fixture", related_request_id=ctx.request_id)
        return {"content": [_text("Tool with logging executed successfully")]}

    async def _tool_progress(self, ctx) -> dict[str, Any]:
        for i, value in enumerate((0, 50, 100)):
            if i:
                await anyio.sleep(0.05)
            # No-op when the request carried no _meta.progressToken.
            await ctx.session.report_progress(value, 100, f"Completed step {i + 1} of 3")
        return {"content": [_text("Tool with progress executed successfully")]}

    async def _tool_sampling(self, ctx, prompt: str) -> dict[str, Any]:
        caps = ctx.session.client_capabilities
        if caps is None or caps.sampling is None:
            return _tool_error("Client does not support sampling (no sampling capability declared)")
        params = {
            "messages": [{"role": "user", "content": _text(prompt)}],
            "maxTokens": 100,
        }
        try:
            result = await self._server_request(ctx, types.CreateMessageRequest(params=params), types.CreateMessageResult)
        except Exception as exc:  # noqa: BLE001 - surfaced to the caller as a tool error
            return _tool_error(f"Sampling failed: {exc}")
        content = result.content
        reply = getattr(content, "text", None) if not isinstance(content, list) else None
        if reply is None:
            reply = json.dumps(result.model_dump(by_alias=True, mode="json", exclude_none=True)["content"])
        return {"content": [_text(f"LLM response: {reply}")]}

    async def _tool_elicitation(self, ctx, message: str) -> dict[str, Any]:
        schema = {
            "type": "object",
            "properties": {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            "required": ["username", "email"],
        }
        return await self._tool_elicit_schema(ctx, message, schema, prefix="User response")

    async def _tool_elicit_schema(
        self, ctx, message: str, schema: dict[str, Any], prefix: str = "Elicitation completed"
    ) -> dict[str, Any]:
        caps = ctx.session.client_capabilities
        if caps is None or caps.elicitation is None:
            return _tool_error("Client does not support elicitation (no elicitation capability declared)")
        request = types.ElicitRequest(params=types.ElicitRequestFormParams(message=message, requested_schema=schema))
        try:
            result = await self._server_request(ctx, request, types.ElicitResult)
        except Exception as exc:  # noqa: BLE001
            return _tool_error(f"Elicitation failed: {exc}")
        content = json.dumps(result.content, sort_keys=True) if result.content is not None else "null"
        return {"content": [_text(f"{prefix}: action={result.action}, content={content}")]}

    async def _server_request(self, ctx, request, result_type):
        """Send a server-to-client request on the configured stream and wait for the answer."""
        if self.server_requests == "related":
            metadata = ServerMessageMetadata(related_request_id=ctx.request_id)
        else:
            # No related request id: the SDK routes the request to the session's
            # standalone channel, i.e. the GET SSE stream on Streamable HTTP.
            metadata = None
            await self._wait_for_get_stream(ctx)
        return await ctx.session.send_request(
            request, result_type, request_read_timeout_seconds=self.request_timeout, metadata=metadata
        )

    async def _wait_for_get_stream(self, ctx) -> None:
        """Block (bounded) until the session has a standalone GET SSE stream open.

        Without an open GET stream the transport parks the request in the event
        store and nothing reaches the client, so the call would only time out.
        Relies on SDK internals (`_server_instances`, `_request_streams`); if
        those move, it degrades to sending immediately.
        """
        http_request = ctx.request
        session_id = http_request.headers.get("mcp-session-id") if http_request is not None else None
        if session_id is None:
            return
        try:
            transports = self.server.session_manager._server_instances  # noqa: SLF001
            from mcp.server.streamable_http import GET_STREAM_KEY
        except Exception:  # noqa: BLE001
            return
        deadline = time.monotonic() + self.get_stream_wait
        while True:
            transport = transports.get(session_id)
            streams = getattr(transport, "_request_streams", None)
            if streams is None or GET_STREAM_KEY in streams:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"no standalone GET SSE stream open on session {session_id} after {self.get_stream_wait}s"
                )
            await anyio.sleep(0.02)

    # -- 2026-07-28 tools (multi-round-trip InputRequiredResult, SEP-2322/2575) --

    async def _modern_tool(self, ctx, name: str, params: types.CallToolRequestParams) -> dict[str, Any]:
        caps = ctx.session.client_capabilities or types.ClientCapabilities()
        state = params.request_state
        if name == "test_missing_capability":
            if caps.sampling is None:
                raise _missing_capability("sampling")
            answer = _input(params, "capital_question", types.CreateMessageResult)
            if answer is None:
                return _input_required({"capital_question": SAMPLE_CAPITAL})
            return {"content": [_text(f"Sampling response: {_sampled_text(answer)}")]}
        if name == "test_streaming_elicitation":
            if caps.elicitation is None:
                raise _missing_capability("elicitation")
            await ctx.session.report_progress(0, 1, "asking the user")
            answer = _input(params, "user_name", types.ElicitResult)
            if answer is None:
                return _input_required({"user_name": ELICIT_NAME})
            return {"content": [_text(f"Hello, {_elicited(answer, 'name')}!")]}
        if name == "test_custom_header":
            return {"content": [_text(f"region={(params.arguments or {}).get('region', '')}")]}
        if name == "test_logging_tool":
            # Delivered only when the request opted in via _meta logLevel (the SDK filters).
            await ctx.session.send_log_message("info", "test_logging_tool ran", logger="conformance-fixture")
            return {"content": [_text("Logging tool executed")]}
        if name == "test_input_required_result_elicitation":
            answer = _input(params, "user_name", types.ElicitResult)
            if answer is None:
                return _input_required({"user_name": ELICIT_NAME})
            return {"content": [_text(f"Hello, {_elicited(answer, 'name')}!")]}
        if name == "test_input_required_result_sampling":
            answer = _input(params, "capital_question", types.CreateMessageResult)
            if answer is None:
                return _input_required({"capital_question": SAMPLE_CAPITAL})
            return {"content": [_text(f"Sampling response: {_sampled_text(answer)}")]}
        if name == "test_input_required_result_list_roots":
            answer = _input(params, "client_roots", types.ListRootsResult)
            if answer is None:
                return _input_required({"client_roots": LIST_ROOTS})
            return {"content": [_text(f"Client roots: {_roots(answer)}")]}
        if name == "test_input_required_result_request_state":
            minted = "request-state:confirm:v1"
            answer = _input(params, "confirm", types.ElicitResult)
            if answer is None or state is None:
                return _input_required({"confirm": ELICIT_CONFIRM}, minted)
            if state != minted:
                raise MCPError(INVALID_PARAMS, "Invalid requestState")
            return {"content": [_text(f"state-ok: confirmed={_elicited(answer, 'ok')}")]}
        if name == "test_input_required_result_multiple_inputs":
            minted = "multiple-inputs:v1"
            wanted = {"user_name": ELICIT_NAME, "greeting": SAMPLE_GREETING, "client_roots": LIST_ROOTS}
            kinds = {"user_name": types.ElicitResult, "greeting": types.CreateMessageResult, "client_roots": types.ListRootsResult}
            got = {key: _input(params, key, kinds[key]) for key in wanted}
            missing = {key: req for key, req in wanted.items() if got[key] is None}
            if missing:
                return _input_required(missing, minted)
            text = (
                f"All inputs received: name={_elicited(got['user_name'], 'name')}, "
                f"greeting={_sampled_text(got['greeting'])}, roots={_roots(got['client_roots'])}"
            )
            return {"content": [_text(text)]}
        if name == "test_input_required_result_multi_round":
            if state is not None and state.startswith("multi-round:2:"):
                answer = _input(params, "step2", types.ElicitResult)
                if answer is None:
                    return _input_required({"step2": ELICIT_COLOR}, state)
                who = state[len("multi-round:2:") :]
                return {"content": [_text(f"Multi-round complete: name={who}, color={_elicited(answer, 'color')}")]}
            answer = _input(params, "step1", types.ElicitResult) if state == "multi-round:1" else None
            if answer is None:
                return _input_required({"step1": ELICIT_STEP1}, "multi-round:1")
            return _input_required({"step2": ELICIT_COLOR}, f"multi-round:2:{_elicited(answer, 'name')}")
        if name == "test_input_required_result_tampered_state":
            minted = "tamper-check:v1"
            answer = _input(params, "confirm", types.ElicitResult)
            if state is None or answer is None:
                return _input_required({"confirm": ELICIT_CONFIRM}, minted)
            if state != minted:  # the RequestStateBoundary already rejects forged envelopes
                raise MCPError(INVALID_PARAMS, "Invalid requestState")
            return {"content": [_text("requestState verified")]}
        if name == "test_input_required_result_capabilities":
            wanted: dict[str, Any] = {}
            if caps.elicitation is not None:
                wanted["user_name"] = ELICIT_NAME
            if caps.sampling is not None:
                wanted["capital_question"] = SAMPLE_CAPITAL
            if caps.roots is not None:
                wanted["client_roots"] = LIST_ROOTS
            responses = params.input_responses or {}
            missing = {key: req for key, req in wanted.items() if key not in responses}
            if missing:
                return _input_required(missing)
            return {"content": [_text(f"Inputs received for: {', '.join(sorted(wanted)) or 'nothing'}")]}
        raise MCPError(INVALID_PARAMS, f"Unknown tool: {name}")  # pragma: no cover

    # -- resources ----------------------------------------------------------

    async def list_resources(self, ctx, params) -> dict[str, Any]:
        return {"resources": RESOURCES}

    async def list_resource_templates(self, ctx, params) -> dict[str, Any]:
        return {"resourceTemplates": RESOURCE_TEMPLATES}

    async def read_resource(self, ctx, params: types.ReadResourceRequestParams) -> dict[str, Any]:
        uri = str(params.uri)
        if uri == "test://static-text":
            return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": STATIC_TEXT}]}
        if uri == "test://static-binary":
            return {"contents": [{"uri": uri, "mimeType": "image/png", "blob": PNG_B64}]}
        if uri == "test://watched-resource":
            return {"contents": [{"uri": uri, "mimeType": "text/plain", "text": "Watched resource content."}]}
        if uri.startswith(TEMPLATE_PREFIX) and uri.endswith(TEMPLATE_SUFFIX):
            ident = uri[len(TEMPLATE_PREFIX) : -len(TEMPLATE_SUFFIX)]
            if ident and "/" not in ident:
                body = {"id": ident, "templateTest": True, "data": f"Data for ID: {ident}"}
                return {
                    "contents": [
                        {"uri": uri, "mimeType": "application/json", "text": json.dumps(body, separators=(",", ":"))}
                    ]
                }
        # SEP-2164: unknown resources are an Invalid Params error carrying the uri.
        raise MCPError(INVALID_PARAMS, "Resource not found", {"uri": uri})

    def _session_key(self, ctx) -> str:
        http_request = ctx.request
        return (http_request.headers.get("mcp-session-id") if http_request is not None else None) or "-"

    async def subscribe(self, ctx, params: types.SubscribeRequestParams) -> dict[str, Any]:
        self.subscriptions.setdefault(self._session_key(ctx), set()).add(str(params.uri))
        return {}

    async def unsubscribe(self, ctx, params: types.UnsubscribeRequestParams) -> dict[str, Any]:
        self.subscriptions.get(self._session_key(ctx), set()).discard(str(params.uri))
        return {}

    # -- prompts ------------------------------------------------------------

    async def list_prompts(self, ctx, params) -> dict[str, Any]:
        return {"prompts": PROMPTS + (MODERN_PROMPTS if _is_modern(ctx) else [])}

    async def get_prompt(self, ctx, params: types.GetPromptRequestParams) -> dict[str, Any]:
        name, args = params.name, params.arguments or {}
        if name == "test_simple_prompt":
            return {"messages": [{"role": "user", "content": _text("This is a simple prompt for testing.")}]}
        if name == "test_prompt_with_arguments":
            missing = [a for a in ("arg1", "arg2") if a not in args]
            if missing:
                raise MCPError(INVALID_PARAMS, f"Missing required arguments: {', '.join(missing)}")
            text = f"Prompt with arguments: arg1='{args['arg1']}', arg2='{args['arg2']}'"
            return {"messages": [{"role": "user", "content": _text(text)}]}
        if name == "test_prompt_with_embedded_resource":
            uri = args.get("resourceUri")
            if not uri:
                raise MCPError(INVALID_PARAMS, "Missing required argument: resourceUri")
            return {
                "messages": [
                    {
                        "role": "user",
                        "content": {
                            "type": "resource",
                            "resource": {
                                "uri": uri,
                                "mimeType": "text/plain",
                                "text": "Embedded resource content for testing.",
                            },
                        },
                    },
                    {"role": "user", "content": _text("Please process the embedded resource above.")},
                ]
            }
        if name == "test_input_required_result_prompt" and _is_modern(ctx):
            answer = _input(params, "user_context", types.ElicitResult)
            if answer is None:
                return _input_required({"user_context": ELICIT_CONTEXT})
            context = (answer.content or {}).get("context", "") if answer.action == "accept" else ""
            return {"messages": [{"role": "user", "content": _text(f"Prompt generated with context: {context}")}]}
        if name == "test_prompt_with_image":
            return {
                "messages": [
                    {"role": "user", "content": _image()},
                    {"role": "user", "content": _text("Please analyze the image above.")},
                ]
            }
        raise MCPError(INVALID_PARAMS, f"Unknown prompt: {name}")

    # -- utilities ----------------------------------------------------------

    async def complete(self, ctx, params: types.CompleteRequestParams) -> dict[str, Any]:
        prefix = params.argument.value or ""
        values = [v for v in COMPLETION_CANDIDATES if v.startswith(prefix)]
        return {"completion": {"values": values, "total": len(values), "hasMore": False}}

    async def set_logging_level(self, ctx, params: types.SetLevelRequestParams) -> dict[str, Any]:
        return {}


def _tool_error(message: str) -> dict[str, Any]:
    return {"isError": True, "content": [_text(message)]}


def _tool_input_schema(name: str) -> dict[str, Any] | None:
    """Input schema by tool name, used by the SDK to validate Mcp-Param-* headers (2026-07-28)."""
    for tool in TOOLS + MODERN_TOOLS:
        if tool["name"] == name:
            return tool["inputSchema"]
    return None


def _is_modern(ctx) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def _missing_capability(capability: str) -> MCPError:
    return MCPError(
        MISSING_REQUIRED_CLIENT_CAPABILITY,
        f"Missing required client capability: {capability}",
        {"requiredCapabilities": {capability: {}}},
    )


def _input_required(requests: dict[str, Any], state: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"resultType": "input_required", "inputRequests": requests}
    if state is not None:
        result["requestState"] = state
    return result


def _input(params, key: str, kind: type):
    """The client's answer to input request `key`, when present and of the expected type."""
    answer = (params.input_responses or {}).get(key)
    return answer if isinstance(answer, kind) else None


def _elicited(answer: types.ElicitResult, field: str) -> str:
    if answer.action != "accept":
        return f"<{answer.action}>"
    return str((answer.content or {}).get(field, ""))


def _sampled_text(answer: types.CreateMessageResult) -> str:
    return str(getattr(answer.content, "text", "") or "")


def _roots(answer: types.ListRootsResult) -> str:
    return ", ".join(str(root.uri) for root in answer.roots) or "<none>"


def _elicit(message: str, field: str, field_type: str = "string") -> dict[str, Any]:
    return {
        "method": "elicitation/create",
        "params": {
            "message": message,
            "requestedSchema": {"type": "object", "properties": {field: {"type": field_type}}, "required": [field]},
        },
    }


def _sample(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "method": "sampling/createMessage",
        "params": {"messages": [{"role": "user", "content": _text(prompt)}], "maxTokens": max_tokens},
    }


ELICIT_NAME = _elicit("What is your name?", "name")
ELICIT_CONFIRM = _elicit("Please confirm", "ok", "boolean")
ELICIT_STEP1 = _elicit("Step 1: What is your name?", "name")
ELICIT_COLOR = _elicit("Step 2: What is your favorite color?", "color")
ELICIT_CONTEXT = _elicit("What context should the prompt use?", "context")
SAMPLE_CAPITAL = _sample("What is the capital of France?", 100)
SAMPLE_GREETING = _sample("Generate a greeting", 50)
LIST_ROOTS: dict[str, Any] = {"method": "roots/list", "params": {}}

# Tools and prompts listed only on 2026-07-28 requests.
MODERN_TOOLS: list[dict[str, Any]] = [
    {"name": name, "description": description, "inputSchema": NO_ARGS}
    for name, description in (
        ("test_missing_capability", "Needs the sampling capability; -32021 when it is not declared"),
        ("test_streaming_elicitation", "Needs elicitation; answers with an InputRequiredResult"),
        ("test_logging_tool", "Logs one info message (delivered only with a _meta logLevel opt-in)"),
        ("test_input_required_result_elicitation", "InputRequiredResult: one elicitation"),
        ("test_input_required_result_sampling", "InputRequiredResult: one sampling request"),
        ("test_input_required_result_list_roots", "InputRequiredResult: one roots/list request"),
        ("test_input_required_result_request_state", "InputRequiredResult with requestState round-trip"),
        ("test_input_required_result_multiple_inputs", "InputRequiredResult: elicitation + sampling + roots"),
        ("test_input_required_result_multi_round", "Two InputRequiredResult rounds with evolving requestState"),
        ("test_input_required_result_tampered_state", "Rejects a tampered requestState"),
        ("test_input_required_result_capabilities", "Asks only for inputs the client declared capabilities for"),
    )
] + [
    {
        # SEP-2243: `region` must also travel as the `Mcp-Param-Region` HTTP header.
        "name": "test_custom_header",
        "description": "Echoes a parameter that is mirrored into the Mcp-Param-Region header",
        "inputSchema": {
            "type": "object",
            "properties": {"region": {"type": "string", "description": "Region name", "x-mcp-header": "Region"}},
            "required": ["region"],
        },
    }
]
MODERN_TOOL_NAMES = {t["name"] for t in MODERN_TOOLS}
MODERN_PROMPTS: list[dict[str, Any]] = [
    {"name": "test_input_required_result_prompt", "description": "Prompt that first asks the user for context"}
]


DEFAULTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
    "required": [],
}

ENUMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        # 1. untitled single-select
        "untitledSingle": {"type": "string", "description": "Untitled single choice", "enum": ["option1", "option2", "option3"]},
        # 2. titled single-select
        "titledSingle": {
            "type": "string",
            "description": "Titled single choice",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        # 3. legacy titled single-select (enumNames, deprecated)
        "legacyEnum": {
            "type": "string",
            "description": "Legacy titled choice",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        # 4. untitled multi-select
        "untitledMulti": {
            "type": "array",
            "description": "Untitled multiple choice",
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        # 5. titled multi-select
        "titledMulti": {
            "type": "array",
            "description": "Titled multiple choice",
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"]


def security_settings(protect: bool, extra_hosts: list[str]) -> TransportSecuritySettings:
    if not protect:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    names = LOOPBACK_NAMES + extra_hosts
    hosts = names + [f"{n}:*" for n in names]
    origins = [f"{scheme}://{n}" for scheme in ("http", "https") for n in names]
    origins += [f"{o}:*" for o in origins]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def handshake_only(app):
    """The app as a server of the handshake era alone answers: a request
    naming a 2026-07-28 revision in its MCP-Protocol-Version header gets 400
    (unsupported version), so clients and gateways fall back to initialize."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            version = dict(scope.get("headers") or []).get(b"mcp-protocol-version", b"").decode("latin-1")
            if version in MODERN_PROTOCOL_VERSIONS:
                body = json.dumps({
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": -32600, "message": f"Bad Request: unsupported protocol version {version}"},
                }).encode()
                await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return wrapped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3001, help="listen port (default 3001)")
    parser.add_argument(
        "--server-requests",
        choices=("standalone", "related"),
        default="standalone",
        help="stream for sampling/elicitation requests: the session's GET stream (default) or the tools/call POST stream",
    )
    parser.add_argument("--get-stream-wait", type=float, default=10.0, help="max seconds to wait for a GET stream")
    parser.add_argument("--request-timeout", type=float, default=25.0, help="max seconds to wait for the client's answer")
    parser.add_argument("--retry-interval", type=int, default=1000, help="SSE retry hint in ms sent in priming events")
    parser.add_argument("--allowed-host", action="append", default=[], help="extra accepted Host/Origin name (repeatable)")
    parser.add_argument("--no-dns-rebinding-protection", action="store_true", help="accept any Host/Origin")
    parser.add_argument("--no-event-store", action="store_true", help="disable resumability (no SSE ids/priming events)")
    parser.add_argument(
        "--handshake-only",
        action="store_true",
        help="serve the handshake era only, as servers built before 2026-07-28 do: requests of that revision get 400",
    )
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    fixture = Fixture(args.server_requests, args.get_stream_wait, args.request_timeout)
    app = fixture.server.streamable_http_app(
        streamable_http_path="/mcp",
        event_store=None if args.no_event_store else MemoryEventStore(),
        retry_interval=None if args.no_event_store else args.retry_interval,
        transport_security=security_settings(not args.no_dns_rebinding_protection, args.allowed_host),
        host=args.host,
        session_idle_timeout=600.0,
    )

    if args.handshake_only:
        app = handshake_only(app)

    import uvicorn

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.log_level == "debug")
    print(f"conformance fixture listening on http://{args.host}:{args.port}/mcp", file=sys.stderr, flush=True)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
