"""`make bench`: the same MCP workloads, in one run on one machine, against
each target that can stand where the gateway stands, and a results file.

Targets (see docs/design/benchmarks.md for why these):
  direct   the upstream itself (bench/server): the physical limit
  envoy    Envoy 1.40 as a plain proxy (router only): the ceiling of any Envoy-based gateway
  gateway  this gateway: Envoy + the wasm filter + the control plane

Every target is first checked to answer correct JSON-RPC; during the load,
non-2xx answers and socket errors are counted. The load generator is wrk
(Debian). Envoy runs one worker for every Envoy target, and wrk one thread,
so that on a 2-core machine they do not fight over cores differently.

    .venv/bin/python bench/run.py [--seconds 10] [--repeat 3] [--smoke]

Writes bench/results/<date>.md and bench/results/<date>.svg, and prints the table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target" / "release"
ACCEPT = "application/json, text/event-stream"
CONCURRENCY = 16
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "tool_0", "arguments": {"text": "hello"}}}
LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
BIG = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "big", "arguments": {}}}
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
MODERN = "2026-07-28"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # not up yet
            last = e
        time.sleep(0.1)
    raise SystemExit(f"bench: timed out waiting for {what} (last error: {last!r})")


class Procs:
    """Processes started for one target, stopped together."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})})
        self.procs[name] = p
        return p

    def stop_all(self):
        for p in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.procs.clear()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(url: str, body: dict, headers: dict[str, str], seconds: float, script: Path) -> Run:
    env = {**os.environ, "BENCH_BODY": json.dumps(body), "BENCH_HEADERS": ";".join(f"{k}={v}" for k, v in headers.items())}
    argv = ["wrk", "-t1", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 60).stdout

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"bench: no {pct}% latency in wrk's output:\n{out}")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Run(rps=rps, p50_ms=latency("50"), p99_ms=latency("99"), errors=non2xx + socket_errors)


def check(url: str, body: dict, headers: dict[str, str], want) -> None:
    """One request, and its answer must be the right JSON-RPC result."""
    r = httpx.post(url, json=body, headers={"accept": ACCEPT, **headers}, timeout=30)
    if r.status_code != 200:
        raise SystemExit(f"bench: {url} answered HTTP {r.status_code}: {r.text[:300]}")
    answer = r.json()
    if not want(answer.get("result")):
        raise SystemExit(f"bench: {url} gave a wrong answer to {body['method']}: {json.dumps(answer)[:300]}")


class Target:
    """Something that can stand where the gateway stands."""

    name = ""
    prefix = ""  # how it names upstream tools

    def url(self) -> str:
        raise NotImplementedError

    def headers(self, era: str) -> dict[str, str]:
        return {"mcp-protocol-version": MODERN} if era == "stateless" else {}


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


class PlainEnvoy(Target):
    name = "envoy"

    def __init__(self, procs: Procs, ports: list[int], envoy: str):
        self.listen, admin = free_port(), free_port()
        boot = {
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {
                "listeners": [{
                    "name": "plain",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": self.listen}},
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "plain",
                            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}]},
                            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                        },
                    }]}],
                }],
                "clusters": [{
                    "name": "upstream",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ports[0]}}}}]}]},
                }],
            },
        }
        path = procs.workdir / "plain-envoy.yaml"
        path.write_text(yaml.safe_dump(boot))
        self.proc = procs.start("plain-envoy", [envoy, "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"])
        wait_for("plain Envoy", lambda: httpx.get(f"http://127.0.0.1:{admin}/ready", timeout=2).text.strip() == "LIVE")

    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen}/mcp"


class Gateway(Target):
    name = "gateway"

    def __init__(self, procs: Procs, ports: list[int], envoy: str):
        self.listen, xds, admin, envoy_admin = free_port(), free_port(), free_port(), free_port()
        catalog = {
            "gateway": {"listen": f"127.0.0.1:{self.listen}"},
            "servers": [{"name": f"b{i}", "url": f"http://127.0.0.1:{p}/mcp"} for i, p in enumerate(ports)],
        }
        catalog_path = procs.workdir / "catalog.yaml"
        catalog_path.write_text(yaml.safe_dump(catalog))
        procs.start("control-plane", [
            str(TARGET / "mcp-gateway"), "--catalog", str(catalog_path), "--wasm", str(ROOT / "target" / "mcp_filter.wasm"),
            "--xds-listen", f"127.0.0.1:{xds}", "--admin-listen", f"127.0.0.1:{admin}",
        ], env={"RUST_LOG": "warn"})
        boot = yaml.safe_load((ROOT / "envoy" / "gateway.yaml").read_text())
        boot["admin"]["address"]["socket_address"]["port_value"] = envoy_admin
        for cluster in boot["static_resources"]["clusters"]:
            if cluster["name"] == "xds":
                cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = xds
        path = procs.workdir / "gateway-envoy.yaml"
        path.write_text(yaml.safe_dump(boot))
        self.proc = procs.start("gateway-envoy", [envoy, "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"])
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

    def headers(self, era: str) -> dict[str, str]:
        if era == "stateless":
            return {"mcp-protocol-version": MODERN}
        return {} if era == "new session" else {"mcp-session-id": self.session}


TARGETS = [Direct, PlainEnvoy, Gateway]


def named(body: dict, prefix: str) -> dict:
    if body.get("method") != "tools/call" or not prefix:
        return body
    return {**body, "params": {**body["params"], "name": prefix + body["params"]["name"]}}


def workloads(servers: int) -> list[tuple[str, dict, object, str]]:
    """(name, body, check of the result, era: which headers the target adds)."""
    echoed = lambda r: r and r["content"][0]["text"] == "hello"
    return [
        ("tools/call", CALL, echoed, "handshake"),
        (f"tools/list ({servers}x20)", LIST, lambda r: r and len(r["tools"]) >= 20 * servers, "handshake"),
        ("tools/call 1 MB", BIG, lambda r: r and len(r["content"][0]["text"]) == 1 << 20, "handshake"),
        ("initialize (new session)", INIT, lambda r: r and r.get("protocolVersion"), "new session"),
        ("tools/call, 2026-07-28", MODERN_CALL, echoed, "stateless"),
    ]


def measure(envoy: str, seconds: float, repeat: int, fleet: list[int], targets: list) -> list[dict]:
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-"))
    script = workdir / "bench.lua"
    script.write_text(WRK_SCRIPT)
    for servers in fleet:
        ports = []
        while len(ports) < servers:
            base = free_port()
            if all(_free(base + i) for i in range(servers)):
                ports = list(range(base, base + servers))
        for cls in targets:
            if cls is not Gateway and servers > 1:
                continue  # a plain proxy or a server alone has no fleet to merge
            procs = Procs(workdir)
            try:
                bench_server(procs, ports, 20)
                target = cls(procs, ports, envoy)
                for name, body, want, era in workloads(servers):
                    if servers > 1 and not name.startswith("tools/list"):
                        continue
                    body = named(body, target.prefix)
                    headers = target.headers(era)
                    check(target.url(), body, headers, want)
                    runs = [wrk(target.url(), body, headers, seconds, script) for _ in range(repeat)]
                    rss = rss_mb(target.proc.pid) if hasattr(target, "proc") else None
                    rows.append({
                        "target": target.name, "workload": name,
                        "rps": statistics.median(r.rps for r in runs),
                        "p50_ms": statistics.median(r.p50_ms for r in runs),
                        "p99_ms": statistics.median(r.p99_ms for r in runs),
                        "errors": sum(r.errors for r in runs),
                        "envoy_rss_mb": rss,
                    })
                    print(f"bench: {target.name:8} {name:22} {rows[-1]['rps']:10.0f} req/s  p50 {rows[-1]['p50_ms']:.3f} ms  p99 {rows[-1]['p99_ms']:.3f} ms  errors {rows[-1]['errors']}", flush=True)
            finally:
                procs.stop_all()
    shutil.rmtree(workdir, ignore_errors=True)
    return rows


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def table(rows: list[dict]) -> str:
    base = {(r["workload"], r["target"]): r for r in rows}
    lines = [
        "| workload | target | req/s | p50 ms | p99 ms | errors | Envoy RSS MB | vs direct | vs plain Envoy |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        direct = base.get((r["workload"], "direct"))
        plain = base.get((r["workload"], "envoy"))
        ratio = lambda other: f"{r['rps'] / other['rps']:.2f}" if other else "–"
        rss = f"{r['envoy_rss_mb']:.0f}" if r["envoy_rss_mb"] else "–"
        lines.append(f"| {r['workload']} | {r['target']} | {r['rps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['errors']} | {rss} | {ratio(direct)} | {ratio(plain)} |")
    return "\n".join(lines)


def targets(rows: list[dict]) -> str:
    """Issue 6's targets, met or not, from this run's rows."""
    at = {(r["workload"], r["target"]): r for r in rows}
    gw, plain = at.get(("tools/call", "gateway")), at.get(("tools/call", "envoy"))
    lines = ["| target | this run | met? |", "|---|---|---|"]
    if gw and plain:
        ratio = gw["rps"] / plain["rps"]
        lines.append(f"| tools/call >= 90% of plain Envoy's throughput | {ratio:.0%} | {'yes' if ratio >= 0.9 else 'no'} |")
        added = gw["p99_ms"] - plain["p99_ms"]
        lines.append(f"| added p99 over plain Envoy <= 0.3 ms at concurrency {CONCURRENCY} | {added:+.2f} ms | {'yes' if added <= 0.3 else 'no'} |")
        if gw["envoy_rss_mb"] and plain["envoy_rss_mb"]:
            extra = gw["envoy_rss_mb"] - plain["envoy_rss_mb"]
            lines.append(f"| Envoy memory with the filter <= plain + 20 MB per worker (1 worker) | {extra:+.0f} MB | {'yes' if extra <= 20 else 'no'} |")
    for what in ("tools/call >= Envoy's C++ MCP router", "tools/list (10 servers) >= 5x Envoy's C++ MCP router",
                 ">= 20x ContextForge on tools/call", "1,000-server catalog compiled and pushed in < 1 s"):
        lines.append(f"| {what} | not measured yet | – |")
    return "\n".join(lines)


def svg(rows: list[dict]) -> str:
    """Requests per second, a bar per (workload, target)."""
    width, bar, gap = 760, 18, 6
    top = max(r["rps"] for r in rows) or 1
    colors = {"direct": "#999999", "envoy": "#4c78a8", "gateway": "#f58518"}
    parts, y = [], 30
    for r in rows:
        w = (width - 260) * r["rps"] / top
        parts.append(f'<text x="4" y="{y + 13}" font-size="12">{r["workload"]} / {r["target"]}</text>')
        parts.append(f'<rect x="220" y="{y}" width="{w:.0f}" height="{bar}" fill="{colors.get(r["target"], "#54a24b")}"/>')
        parts.append(f'<text x="{224 + w:.0f}" y="{y + 13}" font-size="12">{r["rps"]:.0f}</text>')
        y += bar + gap
    head = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 10}" font-family="sans-serif">'
    title = '<text x="4" y="18" font-size="14" font-weight="bold">Requests per second (median of repetitions; higher is better)</text>'
    return "\n".join([head, title, *parts, "</svg>"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="seconds, not minutes: one short run of each, results not written")
    ap.add_argument("--targets", default="", help="some of direct,envoy,gateway (default all); results not written unless all")
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is not installed: run `scripts/setup.sh bench` (apt-get install wrk)")
    envoy = (ROOT / ".tools" / "envoy-path").read_text().strip()
    seconds, repeat, fleet = (1, 1, [1, 2]) if args.smoke else (args.seconds, args.repeat, [1, 10, 50])
    chosen = [t for t in TARGETS if not args.targets or t.name in args.targets.split(",")]
    rows = measure(envoy, seconds, repeat, fleet, chosen)
    text = table(rows)
    print(text)
    if args.smoke or len(chosen) < len(TARGETS):
        return 0
    cost = subprocess.run(["bash", str(ROOT / "bench" / "core-cost.sh")], capture_output=True, text=True).stdout
    day = datetime.date.today().isoformat()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{day}.svg").write_text(svg(rows))
    (out / f"{day}.md").write_text(
        f"# Benchmarks, {day}\n\n"
        f"One run on one machine ({os.cpu_count()} cores): wrk with 1 thread and {CONCURRENCY} connections, "
        f"{seconds:g} s per run, median of {repeat} runs; every Envoy with one worker.\n\n"
        f"{text}\n\n![requests per second]({day}.svg)\n\n"
        f"## Targets\n\n{targets(rows)}\n\n"
        "Why the gap, with the measurements behind it: docs/design/benchmarks.md.\n\n"
        f"## The filter core's cost per request (callgrind)\n\n{cost}\n"
    )
    print(f"bench: wrote {out / (day + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
