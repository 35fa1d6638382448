"""Servers the gateway runs (stdio) or connects to (legacy HTTP+SSE), with
real third-party servers from the registries: mcp-server-time (PyPI),
@modelcontextprotocol/server-memory and server-everything (npm) over stdio,
and server-everything's legacy SSE transport. Supervision: a killed server
restarts and the next call works; one that keeps dying is left failed and its
tools leave the list; the admin API stops and starts them."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time

import httpx
import pytest
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

import modes
from conftest import BASE_SERVERS, EVERYTHING, GATEWAY_SECRETS, ROOT, TARGET, free_port, wait_until

TIME = ROOT / ".tools" / "servers-venv" / "bin" / "mcp-server-time"
MEMORY = ROOT / "servers" / "node_modules" / "@modelcontextprotocol" / "server-memory" / "dist" / "index.js"


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def stdio_servers(workdir) -> list[dict]:
    for path in (TIME, MEMORY):
        assert path.exists(), f"{path} is missing: run `make setup` (installs the example catalog's servers)"
    node = shutil.which("node")
    assert node, "node is not on PATH: install Node.js 20 or newer"
    return [
        {"name": "time", "runtime": "stdio", "command": str(TIME), "args": ["--local-timezone", "UTC"]},
        {"name": "memory", "runtime": "stdio", "command": node, "args": [str(MEMORY)], "env": {"MEMORY_FILE_PATH": str(workdir / "memory.jsonl")}},
        {"name": "evstdio", "runtime": "stdio", "command": node, "args": [str(EVERYTHING), "stdio"], "env": {"GIVEN_TO_CHILD": "yes"}},
    ]


@pytest.fixture(scope="module")
def runtimes(gateway):
    """The base catalog plus three stdio servers and a legacy SSE server."""
    node = shutil.which("node")
    sse_port = free_port()
    gateway.start("legacy-sse", [node, "--require", str(ROOT / "tests" / "loopback-only.cjs"), str(EVERYTHING), "sse"], env={"PORT": str(sse_port)})
    wait_until("server-everything (SSE)", lambda: socket.create_connection(("127.0.0.1", sse_port), timeout=1).close() or True)
    servers = BASE_SERVERS(gateway.ports) + stdio_servers(gateway.workdir) + [{"name": "legacy", "runtime": "sse", "url": f"http://127.0.0.1:{sse_port}/sse"}]
    gateway.write_catalog(servers)
    wait_until("every server ready", lambda: gateway.servers_ready({s["name"] for s in servers}), timeout=60)
    yield servers
    gateway.write_catalog(BASE_SERVERS(gateway.ports))
    wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}), timeout=30)
    gateway.stop("legacy-sse")


def process(gateway, name: str) -> dict:
    return next(s for s in gateway.admin("/servers")["servers"] if s["name"] == name)


def test_stdio_and_legacy_sse_servers_serve_through_the_gateway(gateway, runtimes):
    async def session():
        async with Client(gateway.url, mode="legacy") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            now = text_of(await c.call_tool("time__get_current_time", {"timezone": "Europe/Paris"}))
            await c.call_tool("memory__create_entities", {"entities": [{"name": "gateway", "entityType": "software", "observations": ["runs stdio servers"]}]})
            graph = text_of(await c.call_tool("memory__read_graph", {}))
            summed = text_of(await c.call_tool("legacy__get-sum", {"a": 2, "b": 3}))
            progress = []

            async def on_progress(p, total, message):
                progress.append(p)

            long = text_of(await c.call_tool("legacy__trigger-long-running-operation", {"duration": 1, "steps": 2}, progress_callback=on_progress))
            return names, now, graph, summed, progress, long

    names, now, graph, summed, progress, long = asyncio.run(session())
    assert {"time__get_current_time", "memory__read_graph", "evstdio__get-env", "legacy__get-sum"} <= names
    assert '"timezone": "Europe/Paris"' in now
    assert "runs stdio servers" in graph
    assert summed == "The sum of 2 and 3 is 5."
    assert progress == [1, 2] and "completed" in long
    status = {s["name"]: s for s in gateway.admin("/servers")["servers"]}
    for name in ("time", "memory", "evstdio"):
        p = status[name]["process"]
        assert status[name]["runtime"] == "stdio" and p["state"] == "running" and p["pid"] > 0, status[name]
    assert status["legacy"]["runtime"] == "sse" and status["legacy"]["process"]["state"] == "running"


def test_every_runtime_answers_in_every_client_mode(gateway, runtimes):
    """stdio, legacy SSE and HTTP servers, each called from every client mode
    (modes.py): 2026-07-28 clients reach the piped ones through the era
    bridge, which must reach the control plane's own pipe as the filter does."""
    calls = {
        "time": ("time__get_current_time", {"timezone": "Asia/Tokyo"}),
        "memory": ("memory__read_graph", {}),
        "evstdio": ("evstdio__get-sum", {"a": 1, "b": 2}),
        "legacy": ("legacy__get-sum", {"a": 2, "b": 2}),
        "echo": ("echo__add", {"a": 1, "b": 1}),
        "everything": ("everything__get-sum", {"a": 3, "b": 3}),
    }
    expect = {
        "time": '"timezone": "Asia/Tokyo"',
        "memory": '"entities"',
        "evstdio": "The sum of 1 and 2 is 3.",
        "legacy": "The sum of 2 and 2 is 4.",
        "echo": "2",
        "everything": "The sum of 3 and 3 is 6.",
    }
    assert set(calls) == {s["name"] for s in runtimes}, "a server of the fixture without a call"
    bad = modes.failures(modes.probe(gateway.url, calls), expect)
    assert not bad, "servers that did not answer:\n" + "\n".join(bad)


def test_no_gateway_secret_reaches_a_stdio_server(gateway, runtimes):
    async def env_of_child():
        async with Client(gateway.url, mode="legacy") as c:
            return text_of(await c.call_tool("evstdio__get-env", {}))

    env = asyncio.run(env_of_child())
    for name, secret in GATEWAY_SECRETS.items():
        assert secret not in env and name not in env, f"{name} reached the child"
    assert '"GIVEN_TO_CHILD": "yes"' in env
    import json

    keys = set(json.loads(env))
    assert keys <= {"PATH", "HOME", "LANG", "TMPDIR", "GIVEN_TO_CHILD"}, keys


def test_a_killed_server_fails_its_call_then_restarts(gateway, runtimes):
    before = process(gateway, "evstdio")["process"]

    async def scenario():
        async with Client(gateway.url, mode="legacy") as c:
            call = asyncio.create_task(c.call_tool("evstdio__trigger-long-running-operation", {"duration": 5, "steps": 5}))
            await asyncio.sleep(1)
            os.kill(before["pid"], signal.SIGKILL)
            with pytest.raises(MCPError) as failed:
                await call
            # The next call waits for the restart, then works.
            again = await c.call_tool("evstdio__get-sum", {"a": 1, "b": 1})
            return failed.value.error, again

    error, again = asyncio.run(scenario())
    assert error.code == -32603 and error.message.startswith('server "evstdio" exited'), error
    assert text_of(again) == "The sum of 1 and 1 is 2."
    after = process(gateway, "evstdio")["process"]
    assert after["restarts"] == before["restarts"] + 1 and after["pid"] != before["pid"], after
    assert "SIGKILL" in (after["last_error"] or ""), after


def test_the_admin_api_stops_and_starts_a_server(gateway, runtimes):
    def tools() -> set[str]:
        async def names():
            async with Client(gateway.url, mode="legacy") as c:
                return {t.name for t in (await c.list_tools()).tools}

        return asyncio.run(names())

    r = httpx.post(f"{gateway.cp_admin}/servers/time/stop", timeout=10)
    assert r.status_code == 202, r.text
    wait_until("time stopped and its tools gone", lambda: process(gateway, "time")["process"]["state"] == "stopped" and "time__get_current_time" not in tools(), timeout=30)
    assert httpx.post(f"{gateway.cp_admin}/servers/time/start", timeout=10).status_code == 202
    wait_until("time back with its tools", lambda: process(gateway, "time")["process"]["state"] == "running" and "time__get_current_time" in tools(), timeout=30)
    pid = process(gateway, "time")["process"]["pid"]
    assert httpx.post(f"{gateway.cp_admin}/servers/time/restart", timeout=10).status_code == 202
    wait_until("time restarted", lambda: process(gateway, "time")["process"]["pid"] not in (None, pid), timeout=30)
    assert httpx.post(f"{gateway.cp_admin}/servers/echo/stop", timeout=10).status_code == 404, "an http server is not run by the gateway"


def test_the_seeds_operator_commands_work_on_the_gateway_port_for_admins(gateway, runtimes):
    """`curl -X POST http://localhost:4444/admin/reload` and `POST /servers/{name}/restart`
    as the seeds type them: on the gateway port, through Envoy to the control plane. A
    gateway on loopback without authentication takes them as its admin port does; with
    gateway.auth, only an admin key does (401 without a key, 403 for another)."""
    reload = httpx.post(f"{gateway.base}/admin/reload", timeout=30)
    assert reload.status_code == 200 and reload.json()["version"] == gateway.admin("/health")["version"], reload.text
    pid = process(gateway, "time")["process"]["pid"]
    r = httpx.post(f"{gateway.base}/servers/time/restart", timeout=10)
    assert r.status_code == 202 and r.json() == {"status": "ok", "server": "time", "action": "restart"}, r.text
    wait_until("time restarted through the gateway port", lambda: process(gateway, "time")["process"]["pid"] not in (None, pid), timeout=30)
    assert httpx.post(f"{gateway.base}/servers/echo/stop", timeout=10).status_code == 404, "an http server is not run by the gateway"

    admin, dev = GATEWAY_SECRETS["MCP_GATEWAY_API_KEY"], GATEWAY_SECRETS["VAULT_TOKEN"]
    auth = {"api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "ops", "groups": ["admin"]},
                         {"key": "${VAULT_TOKEN}", "principal": "dev", "groups": ["dev"]}]}
    gateway.write_catalog_and_wait(runtimes, "a catalog with an admin key", auth=auth)
    try:
        def status(headers: dict) -> int:
            return httpx.post(f"{gateway.base}/servers/time/restart", headers=headers, timeout=10).status_code

        wait_until("Envoy refusing operator actions without a key", lambda: status({}) == 401, timeout=30)
        refused = httpx.post(f"{gateway.base}/admin/reload", headers={"authorization": f"Bearer {dev}"}, timeout=10)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == -32003, refused.text
        assert "admin" in refused.json()["error"]["message"]
        pid = process(gateway, "time")["process"]["pid"]
        assert status({"authorization": f"Bearer {admin}"}) == 202
        wait_until("time restarted by an admin", lambda: process(gateway, "time")["process"]["pid"] not in (None, pid), timeout=30)
        assert httpx.post(f"{gateway.base}/admin/reload", headers={"x-api-key": admin}, timeout=30).status_code == 200
    finally:
        gateway.write_catalog_and_wait(runtimes, "the runtimes catalog back")


def test_a_server_that_keeps_dying_is_left_failed(gateway, runtimes):
    crashy = {"name": "crashy", "runtime": "stdio", "command": "/bin/sh", "args": ["-c", "echo dying >&2; exit 3"]}
    try:
        gateway.write_catalog(runtimes + [crashy])
        wait_until("crashy failed", lambda: (process(gateway, "crashy").get("process") or {}).get("state") == "failed", timeout=60)
        # Its failure makes the control plane ask it again, which finds it down.
        wait_until("crashy unreachable", lambda: process(gateway, "crashy")["state"] == "unreachable", timeout=30)
        s = process(gateway, "crashy")
        assert s["tools"] == 0
        assert s["process"]["restarts"] >= 5 and "exit status: 3" in s["process"]["last_error"], s
    finally:
        gateway.write_catalog(runtimes)
        wait_until("crashy gone", lambda: all(x["name"] != "crashy" for x in gateway.admin("/servers")["servers"]), timeout=30)


def test_an_on_demand_server_sleeps_when_idle_and_wakes_on_a_call(gateway, runtimes):
    node = shutil.which("node")
    lazy = {"name": "lazy", "runtime": "stdio", "command": node, "args": [str(MEMORY)], "env": {"MEMORY_FILE_PATH": str(gateway.workdir / "lazy.jsonl")},
            "start": "on-demand", "idle_timeout_seconds": 2}

    def state() -> str | None:
        return (process(gateway, "lazy").get("process") or {}).get("state")

    try:
        gateway.write_catalog(runtimes + [lazy])
        # Discovery is its first use; then it idles and stops.
        wait_until("lazy discovered", lambda: process(gateway, "lazy")["state"] == "ready", timeout=60)
        wait_until("lazy asleep", lambda: state() == "idle", timeout=30)

        async def call():
            async with Client(gateway.url, mode="legacy") as c:
                names = {t.name for t in (await c.list_tools()).tools}
                return names, text_of(await c.call_tool("lazy__read_graph", {}))

        names, graph = asyncio.run(call())
        assert "lazy__read_graph" in names, "asleep, its tools stay listed"
        assert '"entities": []' in graph
        assert process(gateway, "lazy")["process"]["restarts"] == 0, "sleeping is not dying"
    finally:
        gateway.write_catalog(runtimes)
        wait_until("lazy gone", lambda: all(x["name"] != "lazy" for x in gateway.admin("/servers")["servers"]), timeout=30)


def test_shutdown_stops_every_child(gateway, tmp_path):
    """A control plane of its own, so that the session's keeps running."""
    catalog = tmp_path / "catalog.yaml"
    import yaml

    listen, xds, admin = free_port(), free_port(), free_port()
    catalog.write_text(yaml.safe_dump({"gateway": {"listen": f"127.0.0.1:{listen}"}, "servers": stdio_servers(tmp_path)}))
    log = (tmp_path / "cp.log").open("wb")
    cp = subprocess.Popen(
        [str(TARGET / "mcp-gateway"), "--catalog", str(catalog), "--wasm", str(ROOT / "target" / "mcp_filter.wasm"), "--xds-listen", f"127.0.0.1:{xds}", "--admin-listen", f"127.0.0.1:{admin}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        def pids() -> list[int]:
            status = httpx.get(f"http://127.0.0.1:{admin}/servers", timeout=5).json()["servers"]
            return [s["process"]["pid"] for s in status if (s.get("process") or {}).get("state") == "running"]

        wait_until("three children running", lambda: len(pids()) == 3, timeout=60)
        children = pids()
        # Every process in the children's groups (npx-style launchers start more).
        groups = {os.getpgid(p) for p in children}
        cp.send_signal(signal.SIGTERM)
        assert cp.wait(timeout=30) == 0
        survivors = [p for p in all_pids() if pgid_of(p) in groups]
        assert not survivors, f"orphans left: {survivors}"
    finally:
        if cp.poll() is None:
            os.killpg(cp.pid, signal.SIGKILL)


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None
