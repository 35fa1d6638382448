"""The same client script against server-everything directly and through the
gateway: tools and their answers, prompts, resources, templates, reads and
completions must agree, names aside (the gateway prefixes tool and prompt
names with the server's). Through the gateway the Python SDK runs in both
eras, its requests spread over two Envoys; the TypeScript SDK runs too."""

import asyncio
import json
import re

import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from test_replicas import served

PREFIX = "everything__"


async def all_pages(fetch, key: str) -> list[dict]:
    items, cursor = [], None
    while True:
        page = await fetch(cursor=cursor) if cursor else await fetch()
        items += [i.model_dump(mode="json", exclude_none=True, by_alias=True) for i in getattr(page, key)]
        cursor = page.next_cursor
        if not cursor:
            return items


# Tools that ask the client (sampling, elicitation, roots) or run as tasks:
# server-everything offers them only to clients that declare those
# capabilities. test_server_requests.py and test_upstream_streams.py cover them.
ASKS_THE_CLIENT = {"get-roots-list", "trigger-sampling-request", "trigger-elicitation-request", "trigger-url-elicitation",
                   "simulate-research-query", "trigger-sampling-request-async", "trigger-elicitation-request-async"}
DIRECT_TOOLS: list[dict] = []
# Arguments that keep slow tools short.
ARGUMENTS = {"trigger-long-running-operation": {"duration": 1, "steps": 2}}


def normalized(value):
    """A tool's answer without what differs between any two calls: clock
    times and session ids (UUIDs)."""
    text = json.dumps(value)
    text = re.sub(r"\d{1,2}:\d{2}:\d{2}(\s?[AP]M)?", "<time>", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)
    return json.loads(text)


def sample_arguments(schema: dict) -> dict:
    """The smallest valid-looking arguments: each required property's default,
    first enum value, or a plain value of its type."""
    args = {}
    for name in schema.get("required", []):
        prop = schema.get("properties", {}).get(name, {})
        if "default" in prop:
            args[name] = prop["default"]
        elif prop.get("enum"):
            args[name] = prop["enum"][0]
        else:
            args[name] = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(prop.get("type"), "1")
    return args


def fresh_connections(url: str):
    """A transport that opens a new connection for every request, so that
    with two Envoys on the port the kernel picks one each time."""
    client = httpx2.AsyncClient(limits=httpx2.Limits(max_keepalive_connections=0), timeout=httpx2.Timeout(30, read=300))
    return streamable_http_client(url, http_client=client)


async def survey(url: str, prefix: str, mode: str = "legacy", spread: bool = False) -> dict:
    """Everything a client can see and fetch, with prompt names unprefixed."""
    async with Client(fresh_connections(url) if spread else url, mode=mode) as c:
        assert mode == "legacy" or c.protocol_version == "2026-07-28"
        out: dict = {"capabilities": c.server_capabilities.model_dump(mode="json", exclude_none=True, by_alias=True)}
        prompts = await all_pages(c.list_prompts, "prompts")
        out["prompts"] = [{**p, "name": p["name"].removeprefix(prefix)} for p in prompts]
        out["resources"] = await all_pages(c.list_resources, "resources")
        out["templates"] = await all_pages(c.list_resource_templates, "resource_templates")
        tools = await all_pages(c.list_tools, "tools")
        out["tools"] = [{**t, "name": t["name"].removeprefix(prefix)} for t in tools]
        calls = {}
        for t in out["tools"]:
            if t["name"] in ASKS_THE_CLIENT or (prefix and not any(d["name"] == t["name"] for d in DIRECT_TOOLS)):
                continue
            try:
                args = ARGUMENTS.get(t["name"]) or sample_arguments(t["inputSchema"])
                result = await c.call_tool(prefix + t["name"], args)
                calls[t["name"]] = normalized(result.model_dump(mode="json", exclude_none=True, by_alias=True))
            except Exception as e:  # the same error must happen on both sides
                calls[t["name"]] = f"error: {e}"
        out["calls"] = calls
        reads = {}
        for r in out["resources"][:5]:
            read = await c.read_resource(r["uri"])
            reads[r["uri"]] = read.model_dump(mode="json", exclude_none=True, by_alias=True)
        out["reads"] = reads
        got = {}
        for p in prompts:
            args = {a["name"]: "1" for a in p.get("arguments", []) if a.get("required")}
            try:
                result = await c.get_prompt(p["name"], args)
                got[p["name"].removeprefix(prefix)] = result.model_dump(mode="json", exclude_none=True, by_alias=True)
            except Exception as e:  # the same error must happen on both sides
                got[p["name"].removeprefix(prefix)] = f"error: {e}"
        out["prompt_results"] = got
        completable = next((p for p in prompts if p.get("arguments")), None)
        if completable:
            from mcp_types import PromptReference

            arg = completable["arguments"][0]["name"]
            comp = await c.complete(PromptReference(type="ref/prompt", name=completable["name"]), {"name": arg, "value": ""})
            out["completion"] = comp.model_dump(mode="json", exclude_none=True, by_alias=True)
        return out


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_everything_matches_the_server_directly_across_two_envoys(gateway, mode):
    """Through the gateway in either era (auto discovers, and adopts
    2026-07-28), each request on a new connection to one of two Envoys;
    server-everything speaks only the handshake era, so the direct survey
    always uses it."""
    direct = asyncio.run(survey(f"http://127.0.0.1:{gateway.ports['everything']}/mcp", ""))
    DIRECT_TOOLS[:] = direct["tools"]
    with gateway.second_envoy() as admins:
        before = {node: served(a) for node, a in admins.items()}
        through = asyncio.run(survey(gateway.url, PREFIX, mode, spread=True))
        counts = {node: served(a) - before[node] for node, a in admins.items()}
    print(f"\nrequests of the survey served per Envoy: {counts}")
    assert all(n > 0 for n in counts.values()), counts
    assert len(direct["prompts"]) >= 3 and len(direct["resources"]) >= 5
    assert len(direct["calls"]) >= 8, direct["calls"].keys()
    for key in ("prompts", "resources", "templates", "reads", "prompt_results", "completion", "calls"):
        assert through.get(key) == direct.get(key), key
    caps = through["capabilities"]
    assert "prompts" in caps and "resources" in caps and "completions" in caps


def test_typescript_sdk_sees_the_same_through_the_gateway(gateway):
    """The second client implementation: the official TypeScript SDK."""
    import json
    import shutil
    import subprocess

    from conftest import ROOT

    node = shutil.which("node")
    assert node, "node is not on PATH: install Node.js 20 or newer"

    def survey(url: str, prefix: str) -> dict:
        done = subprocess.run([node, str(ROOT / "tests" / "e2e" / "ts_survey.mjs"), url, prefix], capture_output=True, text=True, timeout=120, cwd=ROOT / "tests")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    direct = survey(f"http://127.0.0.1:{gateway.ports['everything']}/mcp", "")
    through = survey(gateway.url, PREFIX)
    through["tools"] = [t for t in through["tools"] if not t["name"].startswith("echo__")]
    assert len(direct["tools"]) > 5 and len(direct["prompts"]) >= 3
    for key in ("tools", "prompts", "resources", "templates", "calls", "reads", "prompt_results"):
        assert through[key] == direct[key], key
