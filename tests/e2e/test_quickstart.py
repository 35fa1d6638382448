"""What a new user types, as the README tells it: `make run` with the example
catalog and its servers, then the README's own quick-start snippet (read out
of README.md, not copied), then one tool of every server of that catalog in
every client mode a user can end up in (modes.py).

This runs `make run` itself, on the ports the README names (4444, 4443, the
control plane's 18000 and 18001, Envoy's admin 9901, the echo server's 8101):
a `make run` of your own on this machine must be stopped first.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import ROOT, wait_until
import modes

README = ROOT / "README.md"
CATALOG = ROOT / "catalog.yaml"
ENDPOINT = "http://127.0.0.1:4444/mcp"
PORTS = (4444, 4443, 18000, 18001, 9901, 8101)

# One tool per server of the example catalog, and a text its answer holds.
# A server added to catalog.yaml without a line here fails the probe test.
CALLS = {
    "time": ("time__get_current_time", {"timezone": "Europe/Paris"}, '"timezone": "Europe/Paris"'),
    "memory": ("memory__read_graph", {}, '"entities"'),
    "everything": ("everything__get-sum", {"a": 2, "b": 3}, "The sum of 2 and 3 is 5."),
    "echo": ("echo__add", {"a": 40, "b": 2}, "42"),
}


# What the tool router's recall set scored, for the terminal summary.
ROUTER_SUMMARY: list[str] = []


def readme_snippet() -> str:
    """The README's quick-start client: the shell block that runs the
    Python SDK against the gateway."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "from mcp.client.client import Client" in b]
    assert len(found) == 1, f"README.md should hold one quick-start block with the Python SDK, found {len(found)}"
    return found[0]


def in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def make_run():
    busy = [p for p in PORTS if in_use(p)]
    if busy:
        pytest.fail(f"ports {busy} are in use (a `make run` of yours?): this test runs `make run` on the README's ports; stop it first", pytrace=False)
    names = {s["name"] for s in yaml.safe_load(CATALOG.read_text())["servers"]}
    workdir = Path(tempfile.mkdtemp(prefix="mcp-gateway-quickstart-"))
    log = workdir / "make-run.log"
    # The memory server's file, so that the test does not touch the user's.
    env = {**os.environ, "MCP_MEMORY_FILE": str(workdir / "memory.jsonl")}
    env.pop("RUST_LOG", None)
    run = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def ready():
        if run.poll() is not None:
            pytest.fail(f"`make run` exited ({run.returncode}):\n{log.read_text()[-4000:]}", pytrace=False)
        servers = httpx.get("http://127.0.0.1:4444/servers", timeout=2).json()["servers"]
        return {s["name"] for s in servers if s["state"] == "ready"} == names

    try:
        # The build is done by `make test` before; `make run` finds it done.
        wait_until("`make run` serving every server of catalog.yaml", ready, timeout=300)
        yield log
    finally:
        # Ctrl-C, as the user stops it.
        os.killpg(run.pid, signal.SIGINT)
        try:
            run.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        left = [p for p in PORTS if in_use(p)]
        assert not left, f"`make run` left ports {left} open after Ctrl-C"


def test_the_readme_quick_start_snippet_works_against_make_run(make_run):
    snippet = readme_snippet()
    assert ENDPOINT in snippet, "the snippet calls the endpoint `make run` prints"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the README's snippet failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    lines = done.stdout.splitlines()
    assert "time__get_current_time" in lines[0], done.stdout
    assert "Europe/Paris" in done.stdout and "is_error=True" not in done.stdout, done.stdout


def test_every_server_of_the_example_catalog_answers_in_every_client_mode(make_run):
    names = {s["name"] for s in yaml.safe_load(CATALOG.read_text())["servers"]}
    assert set(CALLS) == names, f"modes.py must call a tool of every server of catalog.yaml: add {names - set(CALLS)}"
    found = modes.probe(ENDPOINT, {server: (tool, args) for server, (tool, args, _) in CALLS.items()})
    bad = modes.failures(found, {server: expect for server, (_, _, expect) in CALLS.items()})
    assert not bad, "servers that did not answer:\n" + "\n".join(bad)


def test_the_tls_endpoint_the_readme_names_answers_with_the_development_certificate(make_run):
    """README: "served over TLS on https://localhost:4443/mcp with a
    development certificate that make run makes in .run/tls"; curl with
    --cacert, as it says."""
    readme = README.read_text()
    assert "https://localhost:4443/mcp" in readme and "--cacert .run/tls/ca.crt" in readme
    init = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"0"}}}'
    done = subprocess.run(
        ["curl", "-sS", "--cacert", ".run/tls/ca.crt", "-H", "content-type: application/json", "-H", "accept: application/json, text/event-stream",
         "-d", init, "-w", "\n%{http_code} %{http_version}", "https://localhost:4443/mcp"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    assert status.split()[0] == "200", done.stdout
    assert '"serverInfo"' in body and "mcp-gateway" in body


def test_the_readme_tool_router_commands_work_as_typed(make_run):
    """The README's tool-router block (the Forge guide's own `curl -X POST
    http://localhost:4444/tools ...`, then the status), run as it is."""
    blocks = [b for b in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S) if "localhost:4444/tools" in b]
    assert len(blocks) == 1, f"README.md should hold one block calling the tool router, found {len(blocks)}"
    assert '-d \'{"task": "test query", "context": "testing"}\'' in blocks[0], "the seed's command, as its users type it"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", blocks[0]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"the README's tool-router block failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    answers = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(answers) == 2, done.stdout
    found, status = answers
    assert found["task"] == "test query" and isinstance(found["tools"], list), found
    for tool in found["tools"]:
        assert {"name", "server", "score", "inputSchema"} <= tool.keys(), tool
    names = {s["name"] for s in yaml.safe_load(CATALOG.read_text())["servers"]}
    assert status["status"] == "ready" and status["servers"] == len(names) and status["tools"] > 20, status


def test_the_tool_router_finds_the_tools_a_person_would_pick(make_run):
    """The recall set (tests/router/tasks.yaml) against the example catalog:
    recall at 1 and at 5 are reported; at 5 it must reach 0.8."""
    tasks = yaml.safe_load((ROOT / "tests" / "router" / "tasks.yaml").read_text())["tasks"]
    assert len(tasks) >= 40
    listed = {t["name"] for t in httpx.post("http://127.0.0.1:4444/tools", json={"task": "x"}, timeout=10).json()["tools"]}
    every = set()
    for t in tasks:
        every.update(t["tools"])
    at1 = at5 = 0
    misses = []
    with httpx.Client(timeout=10) as client:
        status = client.get("http://127.0.0.1:4444/tools/status").json()
        for t in tasks:
            r = client.post("http://127.0.0.1:4444/tools", json={"task": t["task"], "limit": 5})
            assert r.status_code == 200, r.text
            names = [x["name"] for x in r.json()["tools"]]
            at1 += bool(names) and names[0] in t["tools"]
            hit = any(n in t["tools"] for n in names)
            at5 += hit
            if not hit:
                misses.append(f"  {t['task']!r}: got {names}, wanted one of {t['tools']}")
    n = len(tasks)
    ROUTER_SUMMARY.append(f"{n} tasks over {status['tools']} tools of the example catalog: recall@1 {at1 / n:.2f}, recall@5 {at5 / n:.2f}")
    ROUTER_SUMMARY.extend(["missed at 5:", *misses] if misses else [])
    assert not listed, "a task of one letter fits nothing"
    assert at5 / n >= 0.8, f"recall@5 {at5 / n:.2f} is under 0.8; missed:\n" + "\n".join(misses)
