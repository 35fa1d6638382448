"""Every client mode a user can end up in, calling one tool of every server.

A user of the official Python SDK gets `mode="auto"` by default (discover,
then the stateless 2026-07-28 revision when the gateway offers it), may pick
`legacy` (the initialize handshake) or pin `2026-07-28`; a user of the
TypeScript SDK gets its default transport and version. Each mode reaches the
servers by a different path through the gateway (the filter directly, the era
bridge, the filter's translation), so each server is called in each.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

from mcp.client.client import Client

from conftest import ROOT

PYTHON_MODES = ("auto", "legacy", "2026-07-28")
MODES = (*PYTHON_MODES, "typescript")


def text_of(content: list) -> str:
    return "".join(c.get("text", "") if isinstance(c, dict) else getattr(c, "text", "") or "" for c in content)


async def _python(url: str, mode: str, calls: dict[str, tuple[str, dict]]) -> dict[str, tuple[bool, str]]:
    out = {}
    async with Client(url, mode=mode) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        for server, (tool, args) in calls.items():
            if tool not in names:
                out[server] = (True, f"{tool} is not in tools/list")
                continue
            try:
                r = await c.call_tool(tool, args)
                out[server] = (bool(r.is_error), text_of(r.content))
            except Exception as e:  # a refusal is a finding, not a crash of the probe
                out[server] = (True, f"{type(e).__name__}: {e}")
    return out


def _typescript(url: str, calls: dict[str, tuple[str, dict]]) -> dict[str, tuple[bool, str]]:
    node = shutil.which("node")
    assert node, "node is not on PATH: install Node.js 20 or newer"
    done = subprocess.run(
        [node, str(ROOT / "tests" / "e2e" / "ts_call.mjs"), url, json.dumps(list(calls.values()))],
        capture_output=True, text=True, timeout=120, cwd=ROOT / "tests",
    )
    assert done.returncode == 0, f"the TypeScript SDK client failed:\n{done.stderr[-3000:]}"
    survey = json.loads(done.stdout)
    out = {}
    for server, (tool, _) in calls.items():
        if tool not in survey["tools"]:
            out[server] = (True, f"{tool} is not in tools/list")
            continue
        r = survey["calls"][tool]
        out[server] = (True, r["error"]) if "error" in r else (bool(r.get("isError")), text_of(r.get("content", [])))
    return out


def probe(url: str, calls: dict[str, tuple[str, dict]]) -> dict[str, dict[str, tuple[bool, str]]]:
    """Per mode, per server: (is_error, text) of calling its tool."""
    found = {mode: asyncio.run(_python(url, mode, calls)) for mode in PYTHON_MODES}
    found["typescript"] = _typescript(url, calls)
    return found


def failures(found: dict[str, dict[str, tuple[bool, str]]], expect: dict[str, str]) -> list[str]:
    """What did not answer as `expect` (per server, a text its answer holds)."""
    bad = []
    for mode, answers in found.items():
        for server, (is_error, text) in answers.items():
            if is_error or expect[server] not in text:
                bad.append(f"{mode}: server {server!r}: {'error: ' if is_error else ''}{text[:300]!r}")
    return bad
