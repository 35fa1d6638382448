"""`make bench`: the same MCP workloads, in one run on one machine, against
each target that can stand where the gateway stands, and a results file.

Targets (see docs/design/benchmarks.md for why these):
  direct           the upstream itself (bench/server): the physical limit
  envoy            Envoy 1.40 as a plain proxy (router only): the ceiling of any Envoy-based gateway
  envoy-buffer     the gateway's own Envoy configuration (listener, connection manager, route,
                   cluster, bootstrap) with Envoy's C++ buffer filter instead of the wasm filter
  envoy-noop-wasm  the same with a no-op wasm filter (bench/noop-filter) instead: the wasm floor
                   (both derived from a running gateway's config dump: bench/baselines.py)
  mcp_router       Envoy 1.40's own C++ MCP router, same binary: what an Envoy user would pick instead
  gateway          this gateway: Envoy + the wasm filter + the control plane
  gateway-native   the same with the native filter (gateway.filter: native, an Envoy dynamic module)
  contextforge     IBM ContextForge 1.0.7 (PyPI) federating the same servers (bench/contextforge.py)
  gateway-b        only when named in --targets: the gateway with the filter BENCH_WASM_B names (and
                   the control plane BENCH_GATEWAY_B names), to compare two builds in one run

Besides the load: Envoy's memory with and without the filter at 1, 2 and 4
workers, and the time a catalog of 1,000 servers, and one of 10,000 (one
round; not in --smoke), takes from file write to Envoy's ACK (bench/push.py).

Every target is first checked to answer correct JSON-RPC; during the load,
non-2xx answers and socket errors are counted. The load generator is wrk
(Debian). Envoy runs one worker for every Envoy target, and wrk one thread.
When the host allows it (at least two CPUs this process may use), every
proxy runs on one CPU and wrk and the upstream on the others (--no-pin:
everything everywhere). All targets run at once and take turns, repetition
by repetition, so that the host's drift over the minutes of a run falls on
each of them alike. Besides req/s, each Envoy's CPU time per request served
(/proc/<pid>/stat before and after each run), which the host's drift moves
much less.

    .venv/bin/python bench/run.py [--seconds 10] [--repeat 3] [--smoke]

Writes bench/results/<date>.md and bench/results/<date>.svg, and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from common import (ACCEPT, MODERN, ROOT, TARGET, Cores, Procs, Target, cores, cpu_seconds, free_port, gateway_bootstrap, pinned, port_range,
                    rss_mb, wait_for)
from contextforge import ContextForge
import baselines
import push as catalog_push

CONCURRENCY = 16
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "tool_0", "arguments": {"text": "hello"}}}
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
# The tool router (issue 20): a task every bench tool shares words with, so
# that every tool's postings are read (the most a search costs), asked of
# POST /tools and of the search_tools tool inside MCP.
TASK = {"task": "echo tool 17", "limit": 5}
SEARCH = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search_tools", "arguments": TASK}}
BIG = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "big", "arguments": {}}}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
# A 2026-07-28 request: no session, the revision and the client in `_meta`.
MODERN_CALL = {**CALL, "params": {**CALL["params"], "_meta": {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}}}
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "application/json, text/event-stream"
for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^=;]+)=([^;]*)") do
  wrk.headers[name] = value
end
"""


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float | None = None  # the proxy's CPU time per request served, if it is an Envoy


def wrk(url: str, body: dict, headers: dict[str, str], seconds: float, script: Path, cpus: frozenset[int] | None = None) -> Run:
    env = {**os.environ, "BENCH_BODY": json.dumps(body), "BENCH_HEADERS": ";".join(f"{k}={v}" for k, v in headers.items())}
    argv = ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds:g}s", "--latency", "-s", str(script), url]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60, preexec_fn=pinned(cpus)).stdout

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"bench: no {pct}% latency in wrk's output:\n{out}")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"^\s*(\d+) requests in ", out, re.M).group(1))
    non2xx = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Run(rps=rps, p50_ms=latency("50"), p99_ms=latency("99"), errors=non2xx + socket_errors, requests=requests)


def load(target: Target, url: str, body: dict, headers: dict[str, str], seconds: float, script: Path, cpus: frozenset[int] | None) -> Run:
    """One wrk run against `target`, and, if it is an Envoy, the CPU time the
    Envoy process spent per request served: read before and after the run, all
    its threads, user and system. Only the target under load is busy
    meanwhile. What else the host runs moves this much less than it moves
    requests per second, but still some: the caches and the core are shared,
    and a proxy slowed down handles fewer requests per wakeup."""
    pid = target.proc.pid if target.proc else None
    before = cpu_seconds(pid) if pid else 0.0
    run = wrk(url, body, headers, seconds, script, cpus)
    if pid and run.requests:
        run.cpu_us = (cpu_seconds(pid) - before) * 1e6 / run.requests
    return run


class Wrong(Exception):
    """A target's answer to the check before a load was not the right JSON-RPC result."""


def check(url: str, body: dict, headers: dict[str, str], want, plain: bool = False) -> None:
    """One request, and its answer must be the right JSON-RPC result (or,
    `plain`, the right JSON)."""
    r = httpx.post(url, json=body, headers={"accept": ACCEPT, **headers}, timeout=30)
    if r.status_code != 200:
        raise Wrong(f"{url} answered HTTP {r.status_code}: {r.text[:200]!r}")
    try:
        answer = r.json()
    except ValueError:
        answer = parse_sse(r.text)
    if not isinstance(answer, dict) or not want(answer if plain else answer.get("result")):
        raise Wrong(f"{url} gave a wrong answer to {body.get('method', 'POST')}: {json.dumps(answer)[:200]}")


def parse_sse(text: str):
    """The JSON-RPC message in a text/event-stream answer (the last `data:` event), or None."""
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    try:
        return json.loads(data[-1]) if data else None
    except ValueError:
        return None


def bench_server(procs: Procs, ports: list[int], tools: int) -> None:
    procs.start("upstream", [str(TARGET / "mcp-bench-server"), "--ports", f"{ports[0]}-{ports[-1]}", "--tools", str(tools)])
    for p in ports:
        wait_for(f"upstream :{p}", lambda p=p: socket.create_connection(("127.0.0.1", p), timeout=1).close() or True)


class Direct(Target):
    name = "direct"

    def __init__(self, procs: Procs, ports: list[int], envoy: str):
        self.port = ports[0]

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def envoy_bootstrap(listen: int, admin: int, filters: list[dict], route: dict, clusters: list[dict]) -> dict:
    """A static Envoy bootstrap: one HTTP listener with `filters`, every path to `route`."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": route}]}]},
                        "http_filters": filters,
                    },
                }]}],
            }],
            "clusters": clusters,
        },
    }


def static_cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]},
    }


def start_envoy(procs: Procs, envoy: str, name: str, boot: dict, workers: int = 1) -> subprocess.Popen:
    """Envoy with `workers` workers on a static bootstrap, once it says it is LIVE."""
    path = procs.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(boot))
    proc = procs.start(name, [envoy, "-c", str(path), "--concurrency", str(workers), "--disable-hot-restart", "--log-level", "warn"])
    admin = boot["admin"]["address"]["socket_address"]["port_value"]
    wait_for(name, lambda: httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=2).text.strip() == "LIVE")
    return proc


ROUTER = {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


class PlainEnvoy(Target):
    name = "envoy"

    def __init__(self, procs: Procs, ports: list[int], envoy: str, workers: int = 1):
        self.listen = free_port()
        boot = envoy_bootstrap(self.listen, free_port(), [ROUTER], {"cluster": "upstream"}, [static_cluster("upstream", ports[0])])
        self.proc = start_envoy(procs, envoy, "plain-envoy", boot, workers)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen}/mcp"


class McpRouter(Target):
    """Envoy 1.40's own C++ MCP router: `envoy.filters.http.mcp` parses, `envoy.filters.http.mcp_router`
    (a terminal filter) routes, and an `envoy.clusters.mcp_multicluster` cluster names the servers.

    It names tools `<server>__<tool>`, but leaves a single server's tools unprefixed. The bench
    servers are stateless, so its `initialize` issues no session id and none is sent afterwards.
    """

    name = "mcp_router"
    fleet = True
    peer = True

    def __init__(self, procs: Procs, ports: list[int], envoy: str):
        self.listen = free_port()
        self.prefix = "b0__" if len(ports) > 1 else ""
        filters = [
            {"name": "envoy.filters.http.mcp", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.mcp.v3.Mcp"}},
            {"name": "envoy.filters.http.mcp_router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.mcp_router.v3.McpRouter"}},
        ]
        aggregate = {
            "name": "mcp_servers",
            "connect_timeout": "1s",
            "lb_policy": "CLUSTER_PROVIDED",
            "cluster_type": {"name": "envoy.clusters.mcp_multicluster", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.mcp_multicluster.v3.ClusterConfig",
                "servers": [{"name": f"b{i}", "mcp_cluster": {"cluster": f"b{i}", "path": "/mcp"}} for i in range(len(ports))],
            }},
        }
        clusters = [aggregate] + [static_cluster(f"b{i}", p) for i, p in enumerate(ports)]
        boot = envoy_bootstrap(self.listen, free_port(), filters, {"cluster": "mcp_servers", "timeout": "0s"}, clusters)
        self.proc = start_envoy(procs, envoy, "mcp-router-envoy", boot)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen}/mcp"


class Gateway(Target):
    name = "gateway"
    fleet = True
    # Envoy's access log (a JSON line per request) is on by default in the
    # product; here it is off unless BENCH_ACCESS_LOG names a file, so that
    # a run does not write gigabytes: its cost is measured apart
    # (docs/design/benchmarks.md).
    access_log = os.environ.get("BENCH_ACCESS_LOG", "off")
    # gateway.filter: the wasm filter, or the native module (GatewayNative).
    filter = "wasm"

    wasm = ROOT / "target" / "mcp_filter.wasm"
    control_plane = TARGET / "mcp-gateway"

    def __init__(self, procs: Procs, ports: list[int], envoy: str, workers: int = 1):
        self.listen, xds, admin, envoy_admin = free_port(), free_port(), free_port(), free_port()
        self.envoy_admin = envoy_admin
        catalog = {
            "gateway": {"listen": f"127.0.0.1:{self.listen}", "access_log": self.access_log, "filter": self.filter,
                        "tool_router": {"in_mcp": "alongside"}},
            "servers": [{"name": f"b{i}", "url": f"http://127.0.0.1:{p}/mcp"} for i, p in enumerate(ports)],
        }
        catalog_path = procs.workdir / f"{self.name}-catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(catalog))
        procs.start(f"{self.name}-control-plane", [
            str(self.control_plane), "--catalog", str(catalog_path), "--wasm", str(self.wasm),
            "--xds-listen", f"127.0.0.1:{xds}", "--admin-listen", f"127.0.0.1:{admin}",
        ], env={"RUST_LOG": "warn"})
        path = gateway_bootstrap(procs.workdir, f"{self.name}-envoy.yaml", envoy_admin, xds)
        # Where Envoy finds the native module (used only with filter: native).
        modules = {"ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(ROOT / "target" / "native-release")}
        self.proc = procs.start(f"{self.name}-envoy", [envoy, "-c", str(path), "--concurrency", str(workers), "--disable-hot-restart", "--log-level", "warn"],
                                env=modules)
        want = len(ports)
        wait_for("the gateway serving every server", lambda: sum(
            s["state"] == "ready" for s in httpx.get(f"http://127.0.0.1:{admin}/servers", timeout=2).json()["servers"]) == want)
        wait_for("Envoy serving the gateway", lambda: httpx.get(f"http://127.0.0.1:{self.listen}/health", timeout=2).status_code == 200)
        # A handshake-era session, as a client would hold.
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
        r = wait_for("initialize", lambda: httpx.post(self.url(), json=init, headers={"accept": ACCEPT}, timeout=10))
        self.session = r.headers["mcp-session-id"]
        self.prefix = "b0__"

    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen}/mcp"

    def router_url(self) -> str | None:
        return f"http://127.0.0.1:{self.listen}/tools"

    def headers(self, era: str) -> dict[str, str]:
        if era == "stateless":
            return {"mcp-protocol-version": MODERN}
        return {} if era == "new session" else {"mcp-session-id": self.session}


class GatewayNative(Gateway):
    """The gateway with the same filter core built as a native Envoy dynamic
    module (`make native`) instead of wasm."""

    name = "gateway-native"
    filter = "native"


class GatewayB(Gateway):
    """The gateway with another build of the filter (BENCH_WASM_B) and, if
    BENCH_GATEWAY_B names one, of the control plane, to compare two builds
    in one run: `--targets gateway,gateway-b`."""

    name = "gateway-b"
    wasm = Path(os.environ.get("BENCH_WASM_B", ROOT / "target" / "mcp_filter.wasm"))
    control_plane = Path(os.environ.get("BENCH_GATEWAY_B", TARGET / "mcp-gateway"))


def gateway_dump(procs: Procs, ports: list[int], envoy: str) -> dict:
    """What the gateway's Envoy runs (its admin's `/config_dump`) for a catalog of
    the servers at `ports`: a gateway started for it, and stopped after."""
    source = Procs(procs.workdir / "gateway", procs.cpus)
    source.workdir.mkdir()
    try:
        gateway = Gateway(source, ports, envoy)
        return httpx.get(f"http://127.0.0.1:{gateway.envoy_admin}/config_dump", timeout=30).json()
    finally:
        source.stop_all()


class EnvoyBuffer(Target):
    """The gateway's Envoy configuration with Envoy's C++ buffer filter in the
    wasm filter's place (bench/baselines.py): what the gateway costs without
    wasm, the body held as the filter holds it."""

    name = "envoy-buffer"

    def __init__(self, procs: Procs, ports: list[int], envoy: str):
        dump = gateway_dump(procs, ports, envoy)
        self.listen = free_port()
        boot = baselines.derive(dump, self.listen, free_port(), self.http_filter(dump))
        self.proc = start_envoy(procs, envoy, self.name, boot)

    def http_filter(self, dump: dict) -> dict:
        return baselines.buffer_filter(dump)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen}/mcp"


class EnvoyNoopWasm(EnvoyBuffer):
    """The gateway's Envoy configuration and wasm settings with a no-op module
    (bench/noop-filter: headers read, request paused, body read): the floor of
    any proxy-wasm filter that routes on the body."""

    name = "envoy-noop-wasm"
    module = ROOT / "target" / "mcp_bench_noop.wasm"

    def http_filter(self, dump: dict) -> dict:
        if not self.module.exists():
            raise SystemExit(f"bench: {self.module} is missing: build it with "
                             "`WASM_PACKAGE=mcp-bench-noop WASM_ARTIFACT=mcp_bench_noop scripts/build-wasm.sh` (make bench does)")
        return baselines.noop_wasm_filter(dump, str(self.module))


TARGETS = [Direct, PlainEnvoy, EnvoyBuffer, EnvoyNoopWasm, McpRouter, Gateway, GatewayNative, ContextForge]
OPTIONAL_TARGETS = [GatewayB]


def named(body: dict, target: Target) -> dict:
    if body.get("method") != "tools/call" or body["params"]["name"] == "search_tools":
        return body
    return {**body, "params": {**body["params"], "name": target.tool(body["params"]["name"])}}


def workloads(servers: int) -> list[tuple[str, dict, object, str]]:
    """(name, body, check of the result, era: which headers the target adds;
    `router` and `search`: the tool router's, on the targets that have one)."""
    echoed = lambda r: r and r["content"][0]["text"] == "hello"
    found = lambda tools: tools and len(tools) == 5 and tools[0]["name"].endswith("tool_17")
    return [
        ("tools/call", CALL, echoed, "handshake"),
        (f"tools/list ({servers}x20)", LIST, lambda r: r and len(r["tools"]) >= 20 * servers, "handshake"),
        (f"POST /tools ({servers}x20)", TASK, lambda r: found(r.get("tools")), "router"),
        (f"search_tools ({servers}x20)", SEARCH, lambda r: r and found(r["structuredContent"]["tools"]), "search"),
        ("tools/call 1 MB", BIG, lambda r: r and len(r["content"][0]["text"]) == 1 << 20, "handshake"),
        ("initialize (new session)", INIT, lambda r: r and r.get("protocolVersion"), "new session"),
        ("tools/call, 2026-07-28", MODERN_CALL, echoed, "stateless"),
    ]


def measure(envoy: str, seconds: float, repeat: int, fleet: list[int], targets: list, only: str = "", where: Cores | None = None) -> list[dict]:
    """Every target runs at once, on one bench server, and the repetitions of a
    workload take turns (target A, B, C, then A, B, C again...): the shared
    host's speed drifts over minutes, and a target measured wholly before
    another would carry that drift into their ratio. Idle targets cost next to
    nothing. The proxies run on `where.proxy`'s CPUs, wrk and the upstream on
    `where.load`'s, when pinned. Rows come out grouped by target, workloads in order."""
    where = where or Cores(None, None, "not pinned")
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    for servers in fleet:
        ports = port_range(servers)
        classes = [cls for cls in targets if cls.fleet or servers == 1]  # a plain proxy or a server alone has no fleet to merge
        upstream = Procs(workdir / f"upstream-{servers}", where.load)
        each = {cls: Procs(workdir / f"{cls.name}-{servers}", where.proxy) for cls in classes}
        try:
            upstream.workdir.mkdir()
            bench_server(upstream, ports, 20)
            started = []
            for cls in classes:
                each[cls].workdir.mkdir()
                started.append(cls(each[cls], ports, envoy))
            found: dict[tuple[str, str], dict] = {}
            for name, body, want, era in workloads(servers):
                if servers > 1 and not name.endswith("x20)") or only not in name:
                    continue
                ready = []
                for target in started:
                    if era in ("router", "search") and not target.router_url():
                        continue
                    sent = named(body, target)
                    headers = target.headers("handshake" if era == "search" else era)
                    url = target.router_url() if era == "router" else target.url()
                    try:
                        check(url, sent, headers, want, plain=era == "router")
                    except Wrong as e:
                        if not target.peer:
                            raise SystemExit(f"bench: {e}")
                        # A peer that cannot serve a workload is a result, not a reason to stop.
                        found[(target.name, name)] = {"target": target.name, "workload": name, "rps": 0.0, "p50_ms": None,
                                                      "p99_ms": None, "errors": None, "envoy_rss_mb": None, "cpu_us": None, "fails": str(e)}
                        print(f"bench: {target.name:15} {name:24} fails: {e}", flush=True)
                        continue
                    ready.append((target, sent, headers, url))
                runs = {target.name: [] for target, *_ in ready}
                for _ in range(repeat):
                    for target, sent, headers, url in ready:
                        runs[target.name].append(load(target, url, sent, headers, seconds, script, where.load))
                for target, *_ in ready:
                    done = runs[target.name]
                    pid = target.proc.pid if target.proc else getattr(target, "rss_pid", None)
                    cpu = [r.cpu_us for r in done if r.cpu_us is not None]
                    row = {
                        "target": target.name, "workload": name,
                        "rps": statistics.median(r.rps for r in done),
                        "p50_ms": statistics.median(r.p50_ms for r in done),
                        "p99_ms": statistics.median(r.p99_ms for r in done),
                        "errors": sum(r.errors for r in done),
                        "envoy_rss_mb": rss_mb(pid) if pid else None,
                        "cpu_us": statistics.median(cpu) if cpu else None,
                    }
                    found[(target.name, name)] = row
                    used = f"  CPU {row['cpu_us']:.1f} us/req" if cpu else ""
                    print(f"bench: {target.name:15} {name:24} {row['rps']:10.0f} req/s  p50 {row['p50_ms']:.3f} ms  p99 {row['p99_ms']:.3f} ms  errors {row['errors']}{used}", flush=True)
            rows.extend(found[(t.name, name)] for t in started for name, *_ in workloads(servers) if (t.name, name) in found)
        finally:
            for procs in [*each.values(), upstream]:
                procs.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)
    return rows


def memory(envoy: str, seconds: float, worker_counts: list[int]) -> list[dict]:
    """Envoy's resident memory, plain and with the filter, at each worker count, after a load that
    reaches every worker (16 connections spread over the workers), so every worker's VM exists."""
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-mem-"))
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    port = free_port()
    for workers in worker_counts:
        row = {"workers": workers}
        for cls in (PlainEnvoy, Gateway):
            procs = Procs(workdir)
            try:
                bench_server(procs, [port], 20)
                target = cls(procs, [port], envoy, workers=workers)
                body = named(CALL, target)
                wrk(target.url(), body, target.headers("handshake"), seconds, script)
                row[cls.name] = rss_mb(target.proc.pid)
            finally:
                procs.stop_all()
        rows.append(row)
        print(f"bench: memory, {workers} worker(s): plain {row['envoy']:.0f} MB, gateway {row['gateway']:.0f} MB", flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    return rows


def memory_table(rows: list[dict]) -> str:
    lines = ["| Envoy workers | plain Envoy RSS MB | gateway RSS MB | added by the filter MB | added per worker MB |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        extra = r["gateway"] - r["envoy"]
        lines.append(f"| {r['workers']} | {r['envoy']:.0f} | {r['gateway']:.0f} | {extra:+.0f} | {extra / r['workers']:+.1f} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    """Throughput ratios (higher is better) and the CPU ratio to plain Envoy
    (the Envoy's CPU time per request over plain Envoy's: lower is better)."""
    base = {(r["workload"], r["target"]): r for r in rows if not r.get("fails")}
    lines = [
        "| workload | target | req/s | p50 ms | p99 ms | errors | proxy RSS MB | Envoy CPU µs/req | vs direct | vs plain Envoy | vs mcp_router | CPU / plain Envoy's |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.get("fails"):
            lines.append(f"| {r['workload']} | {r['target']} | fails: {r['fails'].replace('|', '/')} | | | | | | | | | |")
            continue
        ratio = lambda other: _ratio(r["rps"] / other["rps"]) if other else "–"
        rss = f"{r['envoy_rss_mb']:.0f}" if r["envoy_rss_mb"] else "–"
        others = [ratio(base.get((r["workload"], t))) for t in ("direct", "envoy", "mcp_router")]
        plain = base.get((r["workload"], "envoy"))
        cpu = f"{r['cpu_us']:.1f}" if r.get("cpu_us") else "–"
        cpu_ratio = f"{r['cpu_us'] / plain['cpu_us']:.2f}" if r.get("cpu_us") and plain and plain.get("cpu_us") else "–"
        lines.append(f"| {r['workload']} | {r['target']} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['errors']} | {rss} | {cpu} | "
                     + " | ".join(others) + f" | {cpu_ratio} |")
    return "\n".join(lines)


def _ratio(x: float) -> str:
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def targets(rows: list[dict], mem: list[dict], push: dict | None, push_large: dict | None = None) -> str:
    """Issue 6's targets, met or not, from this run's measurements."""
    at = {(r["workload"], r["target"]): r for r in rows if not r.get("fails")}
    lines = ["| target | this run | met? |", "|---|---|---|"]

    def ratio_row(what: str, workload: str, target: str, other: str, want: float, fmt: str = "{:.2f}x"):
        a, b = at.get((workload, target)), at.get((workload, other))
        if not a or not b:
            lines.append(f"| {what} | not measured | – |")
            return
        r = a["rps"] / b["rps"]
        lines.append(f"| {what} | {fmt.format(r)} | {'yes' if r >= want else 'no'} |")

    ratio_row("tools/call >= 90% of plain Envoy's throughput", "tools/call", "gateway", "envoy", 0.9, "{:.0%}")
    gw, plain = at.get(("tools/call", "gateway")), at.get(("tools/call", "envoy"))
    if gw and plain and gw.get("cpu_us") and plain.get("cpu_us"):
        share = plain["cpu_us"] / gw["cpu_us"]
        lines.append(f"| the same in CPU: plain Envoy's CPU time per tools/call >= 90% of the gateway's | {share:.0%} "
                     f"({plain['cpu_us']:.0f} / {gw['cpu_us']:.0f} µs) | {'yes' if share >= 0.9 else 'no'} |")
    else:
        lines.append("| the same in CPU time per request | not measured | – |")
    if gw and plain:
        added = gw["p99_ms"] - plain["p99_ms"]
        lines.append(f"| added p99 over plain Envoy <= 0.3 ms at concurrency {CONCURRENCY} | {added:+.2f} ms | {'yes' if added <= 0.3 else 'no'} |")
    ratio_row("tools/call >= Envoy's C++ MCP router", "tools/call", "gateway", "mcp_router", 1.0)
    # Issue 19's targets: the native module, and a leaner wasm path.
    native = at.get(("tools/call", "gateway-native"))
    if native and plain and native.get("cpu_us") and plain.get("cpu_us"):
        r = native["cpu_us"] / plain["cpu_us"]
        lines.append(f"| native: tools/call CPU per request <= 1.15x plain Envoy's | {r:.2f}x ({native['cpu_us']:.0f} / {plain['cpu_us']:.0f} µs) | {'yes' if r <= 1.15 else 'no'} |")
    else:
        lines.append("| native: tools/call CPU per request <= 1.15x plain Envoy's | not measured | – |")
    ratio_row("native: tools/call >= 1.3x Envoy's C++ MCP router", "tools/call", "gateway-native", "mcp_router", 1.3)
    ratio_row("wasm: tools/call >= 0.65x plain Envoy's throughput", "tools/call", "gateway", "envoy", 0.65)
    ratio_row("tools/list (10 servers) >= 5x Envoy's C++ MCP router", "tools/list (10x20)", "gateway", "mcp_router", 5.0)
    ratio_row("tools/call >= 20x ContextForge", "tools/call", "gateway", "contextforge", 20.0)
    # Issue 20: the tool router answers at list speed (the same target, its
    # answer to a search over 1,000 tools against its answer to tools/list).
    for target in ("gateway", "gateway-native"):
        for workload in ("POST /tools", "search_tools"):
            a, b = at.get((f"{workload} (50x20)", target)), at.get(("tools/list (50x20)", target))
            what = f"{target}: {workload} over 1,000 tools >= its tools/list throughput (issue 20)"
            if a and b:
                r = a["rps"] / b["rps"]
                lines.append(f"| {what} | {r:.2f}x | {'yes' if r >= 1.0 else 'no'} |")
            else:
                lines.append(f"| {what} | not measured | – |")
    if push:
        took = push["ack_s"]
        lines.append(f"| 1,000-server catalog compiled and pushed (file write to Envoy's ACK) < 0.5 s (issue 19; < 1 s in issue 6) | {took:.2f} s | {'yes' if took < 0.5 else 'no'} |")
    else:
        lines.append("| 1,000-server catalog compiled and pushed < 1 s | not measured | – |")
    if push_large:
        took = push_large["ack_s"]
        lines.append(f"| 10,000-server catalog compiled and pushed < 3 s (issue 19) | {took:.2f} s | {'yes' if took < 3 else 'no'} |")
    for m in mem:
        extra = (m["gateway"] - m["envoy"]) / m["workers"]
        lines.append(f"| Envoy memory with the filter <= plain + 20 MB per worker ({m['workers']} worker(s)) | {extra:+.0f} MB per worker | {'yes' if extra <= 20 else 'no'} |")
    return "\n".join(lines)


def svg(rows: list[dict]) -> str:
    """Requests per second, a bar per (workload, target); below, each Envoy's CPU
    time per request over plain Envoy's for the same workload (a 1 MB call costs
    ten times a small one: the ratio keeps every workload's bars readable)."""
    width, bar, gap = 800, 18, 6
    plain = {r["workload"]: r["cpu_us"] for r in rows if r["target"] == "envoy" and r.get("cpu_us")}
    rows = [{**r, "cpu_ratio": r["cpu_us"] / plain[r["workload"]] if r.get("cpu_us") and r["workload"] in plain else None}
            for r in rows if not r.get("fails")]
    colors = {"direct": "#999999", "envoy": "#4c78a8", "envoy-buffer": "#9ecae9", "envoy-noop-wasm": "#b279a2",
              "mcp_router": "#72b7b2", "gateway": "#f58518", "gateway-native": "#54a24b", "contextforge": "#e45756"}
    parts, y = [], 10

    def chart(title: str, key: str, label):
        nonlocal y
        shown = [r for r in rows if r.get(key)]
        if not shown:
            return
        parts.append(f'<text x="4" y="{y + 8}" font-size="14" font-weight="bold">{title}</text>')
        y += 20
        top = max(r[key] for r in shown)
        for r in shown:
            w = (width - 350) * r[key] / top
            parts.append(f'<text x="4" y="{y + 13}" font-size="12">{r["workload"]} / {r["target"]}</text>')
            parts.append(f'<rect x="250" y="{y}" width="{w:.0f}" height="{bar}" fill="{colors.get(r["target"], "#54a24b")}"/>')
            parts.append(f'<text x="{254 + w:.0f}" y="{y + 13}" font-size="12">{label(r)}</text>')
            y += bar + gap
        y += 16

    chart("Requests per second (median of repetitions; higher is better)", "rps", lambda r: f"{r['rps']:.0f}")
    chart("Envoy CPU time per request over plain Envoy's (median of repetitions; lower is better)", "cpu_ratio",
          lambda r: f"{r['cpu_ratio']:.2f} ({r['cpu_us']:.1f} µs)")
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" font-family="sans-serif">'
    return "\n".join([head, *parts, "</svg>"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="seconds, not minutes: one short run of each, results not written")
    ap.add_argument("--targets", default="", help="some of direct,envoy,envoy-buffer,envoy-noop-wasm,mcp_router,gateway,contextforge (default all), "
                    "or gateway-b: the gateway with the filter BENCH_WASM_B names; results not written unless all")
    ap.add_argument("--fleet", default="", help="the server counts to run, e.g. 1,10 (default 1,10,50); results not written unless the default")
    ap.add_argument("--only", default="", help="run only workloads whose name contains this; results not written")
    ap.add_argument("--no-pin", action="store_true", help="leave every process on every CPU (by default the proxies get one CPU, wrk and the upstream the rest)")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is not installed: run `scripts/setup.sh bench` (apt-get install wrk)")
    envoy = (ROOT / ".tools" / "envoy-path").read_text().strip()
    seconds, repeat, fleet = (1, 1, [1, 2]) if args.smoke else (args.seconds, args.repeat, [1, 10, 50])
    if args.fleet:
        fleet = [int(n) for n in args.fleet.split(",")]
    chosen = [t for t in TARGETS + OPTIONAL_TARGETS if t in TARGETS and not args.targets or t.name in args.targets.split(",")]
    where = Cores(None, None, "not pinned (--no-pin)") if args.no_pin else cores()
    print(f"bench: {where.note}", flush=True)
    rows = measure(envoy, seconds, repeat, fleet, chosen, args.only, where)
    text = table(rows)
    print(text)
    partial = len(chosen) < len(TARGETS) or args.fleet or args.only
    if partial:
        return 0
    mem = memory(envoy, seconds, [1, 2, 4])
    print(memory_table(mem))
    push_dir = Path(tempfile.mkdtemp(prefix="mcp-bench-push-"))
    try:
        push = catalog_push.measure(envoy, push_dir, 50, 1) if args.smoke else catalog_push.measure(envoy, push_dir, 1000, repeat)
    finally:
        shutil.rmtree(push_dir, ignore_errors=True)
    print(catalog_push.markdown(push))
    # 10,000 servers: one round after the warm-up (a minute or two), not in --smoke.
    push_large = None
    if not args.smoke:
        push_dir = Path(tempfile.mkdtemp(prefix="mcp-bench-push-"))
        try:
            push_large = catalog_push.measure(envoy, push_dir, 10000, 1)
        finally:
            shutil.rmtree(push_dir, ignore_errors=True)
        print(catalog_push.markdown(push_large))
    if args.smoke:
        return 0
    cost = subprocess.run(["bash", str(ROOT / "bench" / "core-cost.sh")], capture_output=True, text=True).stdout
    day = datetime.date.today().isoformat()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{day}.svg").write_text(svg(rows))
    (out / f"{day}.md").write_text(
        f"# Benchmarks, {day}\n\n"
        f"One run on one machine ({os.cpu_count()} cores): wrk with 1 thread and {CONCURRENCY} connections, "
        f"{seconds:g} s per run, median of {repeat} runs taken in turns across the targets; every Envoy with one worker; "
        f"{where.note}.\n\n"
        "*Envoy CPU µs/req*: the CPU time of the target's Envoy process (all threads, user and system, from "
        "`/proc/<pid>/stat`) over each run, divided by the requests wrk saw answered; the median of the runs. "
        "*CPU / plain Envoy's*: that over plain Envoy's for the same workload (lower is better). "
        "The rows *envoy-buffer* (Envoy's C++ buffer filter) and *envoy-noop-wasm* (a proxy-wasm filter that only reads "
        "the headers, pauses and reads the body) run the gateway's own listener, connection manager, route and cluster "
        "settings, taken from its live configuration (bench/baselines.py); they proxy every request, "
        "`tools/list` and `initialize` included, which the gateway answers itself (the bench servers are stateless).\n\n"
        f"{text}\n\n![requests per second and CPU per request]({day}.svg)\n\n"
        f"## Memory\n\nEnvoy's resident memory after a load that reaches every worker.\n\n{memory_table(mem)}\n\n"
        f"{catalog_push.markdown(push)}\n\n"
        f"{catalog_push.markdown(push_large)}\n\n"
        f"## Targets\n\n{targets(rows, mem, push, push_large)}\n\n"
        "Why the gap, with the measurements behind it: docs/design/benchmarks.md.\n\n"
        f"## The filter core's cost per request (callgrind)\n\n{cost}\n"
    )
    print(f"bench: wrote {out / (day + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
