"""End-to-end harness: the real Envoy, the control plane and real MCP servers.

One gateway is started per test session (starting Envoy is the slow part):
the repo's rmcp echo server, the MCP reference server-everything in
Streamable HTTP mode, `mcp-gateway` with a catalog written for the test, and
Envoy with `envoy/gateway.yaml`, its ports moved so that a `make run` on the
same machine does not collide. Nothing is mocked. A missing dependency fails
the run with the command that installs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "target" / "debug"
# Which build of the filter the suite runs against: E2E_FILTER=wasm (the
# default, the proxy-wasm module) or native (the dynamic module
# libmcp_filter_native.so, `make native`; `make test-native` runs the suite
# so). Every catalog the tests write says it (`gateway.filter`), and Envoy
# is told where the module is.
FILTER = os.environ.get("E2E_FILTER", "wasm")
NATIVE_DIR = Path(os.environ.get("E2E_NATIVE_DIR", ROOT / "target" / "native-release"))
if FILTER not in ("wasm", "native"):
    raise SystemExit(f"E2E_FILTER must be wasm or native, not {FILTER!r}")


def filter_settings() -> dict:
    """The catalog's `gateway:` keys that choose the filter under test."""
    return {"filter": FILTER} if FILTER == "native" else {}


def envoy_env() -> dict[str, str]:
    """What Envoy's environment needs for the filter under test: where the
    native module is (Envoy looks for lib<name>.so there)."""
    return {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(NATIVE_DIR)} if FILTER == "native" else {}
EVERYTHING = ROOT / "tests" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


def require(path: Path, how: str) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float = 60.0, interval: float = 0.1):
    """Polls `check` until it returns a truthy value; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # the thing polled may not be up yet
            last_error = e
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error!r})", pytrace=False)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Gateway:
    """A running gateway and what the tests need to reach it."""

    workdir: Path
    catalog_path: Path
    url: str
    base: str
    envoy_admin: str
    cp_admin: str
    ports: dict[str, int]
    procs: dict[str, Proc] = field(default_factory=dict)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        proc = Proc(name, popen, log)
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.popen.poll() is not None:
            return
        os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait()

    def write_catalog(self, servers: list[dict], endpoints: list[dict] | None = None, **settings) -> None:
        """Writes the catalog; `settings` go into its `gateway:` block,
        `endpoints` (virtual servers) beside its servers."""
        catalog = {
            "gateway": {"listen": f"127.0.0.1:{self.ports['listen']}", "max_body_bytes": 65536, **filter_settings(), **settings},
            "servers": servers,
        }
        if endpoints:
            catalog["endpoints"] = endpoints
        # Write then rename, as editors and config tools do.
        tmp = self.catalog_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(catalog, sort_keys=False))
        tmp.replace(self.catalog_path)

    def admin(self, path: str) -> dict:
        return httpx.get(f"{self.cp_admin}{path}", timeout=5).json()

    def envoy_stat(self, name: str) -> int:
        text = httpx.get(f"{self.envoy_admin}/stats", params={"filter": f"^{name}$"}, timeout=5).text
        for line in text.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        # envoy/gateway.yaml defers a cluster's traffic counters to its first
        # request: a cluster Envoy has that never served counts 0.
        cluster = name.split(".")[1] if name.startswith("cluster.") else None
        if cluster and f"cluster.{cluster}.membership_total" in httpx.get(f"{self.envoy_admin}/stats", params={"filter": f"^cluster\\.{cluster}\\.membership_total$"}, timeout=5).text:
            return 0
        raise AssertionError(f"Envoy has no stat named {name!r}")

    def echo_server(self, name: str, port: int, path: str = "/mcp", *flags: str) -> Proc:
        proc = self.start(name, [str(TARGET / "mcp-echo-server"), "--port", str(port), "--name", name, "--path", path, *flags])
        wait_until(f"{name} on port {port}", lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True)
        return proc

    def write_catalog_and_wait(self, servers: list[dict], what: str, endpoints: list[dict] | None = None, **settings) -> None:
        """Writes the catalog and waits until every connected Envoy has
        acknowledged the configuration it produced."""
        old = self.admin("/health")["version"]
        self.write_catalog(servers, endpoints, **settings)

        def applied():
            h = self.admin("/health")
            live = [e for e in h["envoys"] if e["connected"]]
            return h["version"] != old and live and all(t["current"] for e in live for t in e["types"])

        wait_until(what, applied, timeout=30)

    @contextlib.contextmanager
    def second_envoy(self):
        """A second Envoy behind the same control plane, on the same listener
        port (SO_REUSEPORT: the kernel spreads new connections between the
        two). Yields both admin URLs by node id."""
        envoy = self.procs["envoy"].popen.args[0]
        second_admin = free_port()
        boot = yaml.safe_load(envoy_bootstrap(self.workdir, self.ports).read_text())
        boot["node"]["id"] = "gateway-2"
        boot["admin"]["address"]["socket_address"]["port_value"] = second_admin
        path = Path(self.workdir) / "envoy-2.yaml"
        path.write_text(yaml.safe_dump(boot))
        self.start("envoy-2", [envoy, "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "--log-level", "info"], env=envoy_env())
        admins = {"gateway-1": self.envoy_admin, "gateway-2": f"http://127.0.0.1:{second_admin}"}
        try:
            wait_until("the second Envoy serving", lambda: httpx.get(f"{admins['gateway-2']}/ready", timeout=2).text.strip() == "LIVE", timeout=30)
            # LIVE comes with the listener; the filter comes a moment later: its
            # first configuration names a module this Envoy fetches meanwhile
            # (docs/design/module-delivery.md).
            wait_until("the second Envoy running the filter", lambda: self.runs_version_served("gateway-2"), timeout=30)
            yield admins
        finally:
            self.stop("envoy-2")

    def runs_version_served(self, node: str) -> bool:
        """Whether the Envoy `node` is connected and runs every type of the version served."""
        h = self.admin("/health")
        envoy = next((e for e in h["envoys"] if e["node_id"] == node and e["connected"]), None)
        return bool(envoy and envoy["types"] and all(t["current"] for t in envoy["types"]))

    def servers_ready(self, names: set[str]) -> bool:
        status = self.admin("/servers")
        ready = {s["name"] for s in status["servers"] if s["state"] == "ready"}
        return ready == names


def envoy_bootstrap(workdir: Path, ports: dict[str, int]) -> Path:
    """envoy/gateway.yaml with the test's ports: the real file, moved."""
    boot = yaml.safe_load((ROOT / "envoy" / "gateway.yaml").read_text())
    boot["admin"]["address"]["socket_address"]["port_value"] = ports["envoy_admin"]
    # The xDS cluster, and the one the filter reads Envoy's stats through.
    moved = {"xds": ports["xds"], "envoy_admin": ports["envoy_admin"]}
    for cluster in boot["static_resources"]["clusters"]:
        if cluster["name"] in moved:
            endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            endpoint["address"]["socket_address"]["port_value"] = moved[cluster["name"]]
    path = workdir / "envoy.yaml"
    path.write_text(yaml.safe_dump(boot))
    return path


def pytest_sessionstart(session):
    """A run stopped from outside (SIGTERM, as CI timeouts send) unwinds like
    ctrl-c, so the fixtures' teardown stops the servers they started (each
    in its own session, out of reach of the signal) instead of leaving them."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


GATEWAY_SECRETS = {
    "MCP_GATEWAY_API_KEY": "e2e-api-key-9f3b2c",
    "JWT_SECRET": "e2e-jwt-secret-71d0aa-0123456789abcdef",
    "VAULT_TOKEN": "e2e-vault-token-4c2e19",
}


@pytest.fixture(scope="session")
def gateway():
    envoy_path_file = require(ROOT / ".tools" / "envoy-path", "run `make setup` (installs Envoy 1.40 into .venv)")
    envoy = require(Path(envoy_path_file.read_text().strip()), "run `make setup`")
    for binary in ("mcp-gateway", "mcp-echo-server", "mcp-probe"):
        require(TARGET / binary, "run `make build` (cargo build --workspace)")
    # E2E_WASM runs the suite against another build of the filter (the
    # Debian-toolchain fallback test uses it).
    wasm = require(Path(os.environ.get("E2E_WASM", ROOT / "target" / "mcp_filter.wasm")), "run `make wasm`")
    if FILTER == "native":
        require(NATIVE_DIR / "libmcp_filter_native.so", "run `make native`")
    require(EVERYTHING, "run `make setup` (npm ci --prefix tests)")
    node = shutil.which("node") or pytest.fail("node is not on PATH: install Node.js 20 or newer", pytrace=False)

    # The catalog's gateway.log_level decides the control plane's level
    # (test_access_log.py checks it); RUST_LOG would override it.
    os.environ.pop("RUST_LOG", None)
    workdir = Path(tempfile.mkdtemp(prefix="mcp-gateway-e2e-"))
    ports = {k: free_port() for k in ("listen", "xds", "admin", "envoy_admin", "echo", "everything", "third")}
    gw = Gateway(
        workdir=workdir,
        catalog_path=workdir / "catalog.yaml",
        url=f"http://127.0.0.1:{ports['listen']}/mcp",
        base=f"http://127.0.0.1:{ports['listen']}",
        envoy_admin=f"http://127.0.0.1:{ports['envoy_admin']}",
        cp_admin=f"http://127.0.0.1:{ports['admin']}",
        ports=ports,
    )
    try:
        gw.echo_server("echo", ports["echo"])
        gw.start("everything", [node, "--require", str(ROOT / "tests" / "loopback-only.cjs"), str(EVERYTHING), "streamableHttp"], env={"PORT": str(ports["everything"])})
        wait_until("server-everything", lambda: socket.create_connection(("127.0.0.1", ports["everything"]), timeout=1).close() or True)
        gw.write_catalog(BASE_SERVERS(ports))
        gw.start(
            "control-plane",
            [
                str(TARGET / "mcp-gateway"),
                "--catalog", str(gw.catalog_path),
                "--wasm", str(wasm),
                "--xds-listen", f"127.0.0.1:{ports['xds']}",
                "--admin-listen", f"127.0.0.1:{ports['admin']}",
                "--rediscover-seconds", "3600",
                # Health checks often enough for test_health.py to see a
                # server go and come back in seconds.
                "--health-check-seconds", "2",
                "--unhealthy-threshold", "2",
            ],
            # Secrets of the gateway's own, as operators set them: no server
            # the gateway runs may see them (test_runtimes.py checks).
            env=GATEWAY_SECRETS,
        )
        wait_until("both servers discovered", lambda: gw.servers_ready({"echo", "everything"}))
        gw.start(
            "envoy",
            [str(envoy), "-c", str(envoy_bootstrap(workdir, ports)), "--concurrency", "2", "--disable-hot-restart", "--log-level", "info"],
            env=envoy_env(),
        )
        wait_until("Envoy serving /servers on the gateway port", lambda: httpx.get(f"{gw.base}/servers", timeout=2).status_code == 200)
        yield gw
    finally:
        for name in list(gw.procs):
            gw.stop(name)
        if os.environ.get("E2E_KEEP_LOGS"):
            print(f"e2e logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def BASE_SERVERS(ports: dict[str, int]) -> list[dict]:
    return [
        {"name": "echo", "url": f"http://127.0.0.1:{ports['echo']}/mcp"},
        {"name": "everything", "url": f"http://127.0.0.1:{ports['everything']}/mcp"},
    ]


def pytest_terminal_summary(terminalreporter):
    """What the conformance suite itself counted, and the tool router's
    recall, when they ran."""
    summaries = getattr(sys.modules.get("test_conformance"), "SUMMARIES", [])
    if summaries:
        terminalreporter.section("MCP conformance suite")
        for line in summaries:
            terminalreporter.write_line(line)
    router = getattr(sys.modules.get("test_quickstart"), "ROUTER_SUMMARY", [])
    if router:
        terminalreporter.section("Tool router recall (tests/router/tasks.yaml)")
        for line in router:
            terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of every process's log to the report."""
    outcome = yield
    report = outcome.get_result()
    gw = item.funcargs.get("gateway") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(gw, Gateway):
        for proc in gw.procs.values():
            report.sections.append((f"{proc.name} log (tail)", proc.tail()))


def jsonrpc(method: str, params: dict | None = None, id: int | str | None = 1) -> str:
    msg: dict = {"jsonrpc": "2.0", "method": method}
    if id is not None:
        msg["id"] = id
    if params is not None:
        msg["params"] = params
    return json.dumps(msg)


HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def parse_answer(response: httpx.Response) -> dict:
    """The JSON-RPC message of a POST's answer, whether JSON or an SSE stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                msg = json.loads(line[5:])
                if "result" in msg or "error" in msg:
                    return msg
        raise AssertionError(f"no JSON-RPC answer in stream: {response.text!r}")
    return response.json()


class RawSession:
    """A handshake-era session spoken in plain HTTP, for checks the SDKs hide."""

    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(timeout=30)
        self.session_id: str | None = None
        self.next_id = 1

    def post(self, body: str | bytes, headers: dict | None = None, session: bool = True) -> httpx.Response:
        h = dict(HEADERS)
        if session and self.session_id:
            h["mcp-session-id"] = self.session_id
        h.update(headers or {})
        return self.http.post(self.url, content=body, headers=h)

    def initialize(self) -> dict:
        r = self.post(jsonrpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "0"}}), session=False)
        assert r.status_code == 200, r.text
        self.session_id = r.headers["mcp-session-id"]
        assert self.post(jsonrpc("notifications/initialized", id=None)).status_code == 202
        return r.json()["result"]

    def request(self, method: str, params: dict | None = None) -> dict:
        self.next_id += 1
        r = self.post(jsonrpc(method, params, id=self.next_id))
        return parse_answer(r)

    def tool_names(self) -> set[str]:
        return {t["name"] for t in self.request("tools/list")["result"]["tools"]}


@dataclass
class Saturation:
    """What `saturate` saw: requests let through and refused (429), over how
    long, and one refusal's answer (body, plus its Retry-After)."""

    allowed: int
    refused: int
    elapsed: float
    sample: dict | None

    def expected(self, per_minute: int, burst: int) -> float:
        """What a token bucket lets through over that time."""
        return burst + per_minute / 60 * self.elapsed


def saturate(url: str, headers: dict, body: str, seconds: float, clients: int, new_connections: bool = False) -> Saturation:
    """`clients` threads, each with its own session, POST `body` as fast as
    they can for `seconds`. With `new_connections`, every request opens a
    connection of its own, so the kernel spreads them over every Envoy
    sharing the port."""
    from concurrent.futures import ThreadPoolExecutor

    def one() -> tuple[int, int, float, float, dict | None]:
        s = RawSession(url)
        s.http.headers.update(headers)
        s.initialize()
        if new_connections:
            s.http.headers["connection"] = "close"
        ok = limited = 0
        sample = None
        first = last = time.monotonic()
        while time.monotonic() - first < seconds:
            last = time.monotonic()
            r = s.post(body)
            if r.status_code == 200:
                ok += 1
            elif r.status_code == 429:
                limited += 1
                sample = {"retry-after": r.headers.get("retry-after"), **r.json()}
            else:
                raise AssertionError(f"HTTP {r.status_code}: {r.text}")
        return ok, limited, first, last, sample

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda _: one(), range(clients)))
    return Saturation(
        allowed=sum(r[0] for r in results),
        refused=sum(r[1] for r in results),
        elapsed=max(r[3] for r in results) - min(r[2] for r in results),
        sample=next((r[4] for r in results if r[4]), None),
    )

