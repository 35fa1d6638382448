"""A 1,000-server catalog compiled and pushed: the time from the catalog file's
write to Envoy's ACK of the new configuration (issue 6's target: < 1 s; issue
19's: < 0.5 s, and < 3 s for 10,000 servers, `--servers 10000`).

One bench server serves N MCP servers (one per port); the gateway (control
plane + Envoy with one worker) starts on a catalog of one of them. Then, per
repetition, the catalog file is replaced (written aside, then renamed over
it, as an operator's tool would) three times:

  1 -> N     N new servers (`a0`..): N clusters added
  N -> N'    the same ports under other names (`b0`..): N clusters replaced
  N' -> 1    back to one server (not a headline number)

so every write is a real change; one such round runs first, unmeasured (the
first pushes after a start are slower), its samples kept apart. For each write:

  ack       from the rename to the last ACK, by the Envoy, of the new version
            of every type it subscribed to (clusters, filter config, listener,
            routes). The ACK times are the control plane's own record
            (`last_acked_at` per type in `GET /health`), so they do not depend
            on how often this script polls.
  ready     from the rename to `GET /servers` listing every server of the new
            catalog as ready (discovered), polled every POLL seconds. The
            control plane discovers every server *before* it compiles and
            publishes, so this comes before the ACK.
  served    from the rename to the first `tools/call` of the new catalog's
            last server answered through Envoy (a 2026-07-28 request: no
            session), polled from the moment the ACK is seen: an upper bound
            on when the new configuration runs on the worker.

and, from the control plane's log (its JSON lines carry timestamps): when it
saw the change (at once for a rename; 100 ms later for a write in place,
controller.rs), when it published the compiled snapshot (after reading,
discovering the new servers and compiling), and when it sent each type. `compile()` alone is timed in process
by control-plane/examples/compile_cost.rs on the same catalog shape.

    .venv/bin/python bench/push.py [--servers 1000] [--repeat 3]

bench/run.py calls `measure` and `markdown`.
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
import time
from pathlib import Path

import httpx
import yaml

from common import ACCEPT, MODERN, ROOT, TARGET, Procs, free_port, gateway_bootstrap, port_range, wait_for

# How often the script asks the control plane and Envoy while it waits.
POLL = 0.02
# The types the control plane pushes, by short name.
TYPES = {
    "type.googleapis.com/envoy.config.cluster.v3.Cluster": "clusters",
    "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig": "filter",
    "type.googleapis.com/envoy.config.listener.v3.Listener": "listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": "routes",
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret": "secrets",
}
NODE = "gateway-1"  # envoy/gateway.yaml's node id
TOOLS = 20  # per bench server (it lists one more, `big`)


class PushGateway:
    """The control plane and an Envoy with one worker, on a catalog this class rewrites."""

    def __init__(self, procs: Procs, envoy: str, ports: list[int], per_port: int = 1):
        self.procs, self.ports, self.per_port = procs, ports, per_port
        self.listen, xds, self.admin_port, envoy_admin = free_port(), free_port(), free_port(), free_port()
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        # A directory of its own: the control plane watches the catalog's
        # directory, and the logs are written next to the workdir's files.
        catalog_dir = procs.workdir / "push-catalog"
        catalog_dir.mkdir(exist_ok=True)
        self.catalog = catalog_dir / "catalog.yaml"
        self.write("s", 1)
        self.control_plane = procs.start("push-control-plane", [
            str(TARGET / "mcp-gateway"), "--catalog", str(self.catalog), "--wasm", str(ROOT / "target" / "mcp_filter.wasm"),
            "--xds-listen", f"127.0.0.1:{xds}", "--admin-listen", f"127.0.0.1:{self.admin_port}",
            # No periodic rediscovery during the measurement.
            "--rediscover-seconds", "3600",
        ], env={"RUST_LOG": "info,mcp_control_plane::ads=debug"})
        self.log = procs.workdir / "push-control-plane.log"
        path = gateway_bootstrap(procs.workdir, "push-envoy.yaml", envoy_admin, xds)
        self.proc = procs.start("push-envoy", [envoy, "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"])
        self.http = httpx.Client(timeout=10)
        alive = lambda: _alive(self.control_plane, "the control plane") and _alive(self.proc, "Envoy")
        wait_for("the gateway's first configuration ACKed", lambda: alive() and self.acked(None))
        wait_for("Envoy serving the gateway", lambda: self.http.get(f"http://127.0.0.1:{self.listen}/health").status_code == 200)

    def names(self, prefix: str, n: int) -> list[str]:
        return [f"{prefix}{i}" for i in range(n)]

    def write(self, prefix: str, n: int) -> tuple[float, float]:
        """Replaces the catalog with n servers named prefix0.. (write aside, fsync, rename).
        Returns (wall clock, monotonic clock) when the rename returned."""
        catalog = {
            "gateway": {"listen": f"127.0.0.1:{self.listen}"},
            "servers": [{"name": name, "url": self.url(i)} for i, name in enumerate(self.names(prefix, n))],
        }
        tmp = self.catalog.with_name(".catalog.yaml.tmp")
        with open(tmp, "w") as f:
            f.write(yaml.safe_dump(catalog))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.catalog)
        return time.time(), time.monotonic()

    def url(self, i: int) -> str:
        """Where the bench server serves server i."""
        if self.per_port == 1:
            return f"http://127.0.0.1:{self.ports[i]}/mcp"
        return f"http://127.0.0.1:{self.ports[i // self.per_port]}/{i % self.per_port}/mcp"

    def acked(self, old: str | None) -> dict | None:
        """If the Envoy has ACKed, for every type it subscribed to, the version
        being served and it is not `old`: {version, acked_at per type (wall clock)}."""
        h = self.http.get(f"{self.admin}/health").json()
        version = h.get("version")
        node = next((e for e in h.get("envoys", []) if e["node_id"] == NODE and e["connected"]), None)
        if not version or version == old or not node or not node["types"]:
            return None
        if not all(t["last_acked_version"] == version for t in node["types"]):
            return None
        return {"version": version, "acked_at": {TYPES.get(t["type_url"], t["type_url"]): _wall(t["last_acked_at"]) for t in node["types"]}}

    def all_ready(self, names: list[str]) -> bool:
        s = self.http.get(f"{self.admin}/servers").json()["servers"]
        return len(s) == len(names) and {x["name"] for x in s} == set(names) and all(x["state"] == "ready" for x in s)

    def serves(self, tool: str) -> bool:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "hello"}, "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }}}
        r = self.http.post(f"http://127.0.0.1:{self.listen}/mcp", json=body, headers={"accept": ACCEPT, "mcp-protocol-version": MODERN})
        if r.status_code != 200:
            return False
        try:
            result = r.json().get("result") or {}
            return result.get("content", [{}])[0].get("text") == "hello"
        except ValueError:
            return False

    def push(self, prefix: str, n: int, timeout: float = 120.0) -> dict:
        """Writes a catalog of n servers and measures until Envoy ACKs it,
        every server is ready, and a call to the last one is served."""
        old = self.acked(None)
        old_version = old["version"] if old else None
        log_from = self.log.stat().st_size
        names = self.names(prefix, n)
        wall, mono = self.write(prefix, n)
        deadline = mono + timeout
        acked = None
        ready_at = None
        while time.monotonic() < deadline and (acked is None or ready_at is None):
            if ready_at is None and self.all_ready(names):
                ready_at = time.monotonic() - mono
            if acked is None:
                acked = self.acked(old_version)
            if acked is None or ready_at is None:
                time.sleep(POLL)
        if acked is None or ready_at is None:
            raise SystemExit(f"bench: push of {n} servers not ACKed and ready within {timeout:g} s (see {self.log})")
        tool = f"{names[-1]}__tool_0"
        while not self.serves(tool):
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {tool} not served within {timeout:g} s of the write")
            time.sleep(POLL)
        served = time.monotonic() - mono
        ack = {t: at - wall for t, at in acked["acked_at"].items()}
        sample = {"servers": n, "version": acked["version"], "ack_s": max(ack.values()), "ack_by_type_s": ack,
                  "ready_s": ready_at, "served_s": served}
        sample.update(self.phases(log_from, wall, acked["version"]))
        return sample

    def phases(self, offset: int, wall: float, version: str) -> dict:
        """From the control plane's log since `offset`: when it saw the change,
        published `version`, and sent each type of it, in seconds after `wall`."""
        out: dict = {"sent_by_type_s": {}}
        with open(self.log, "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            fields, at = e.get("fields", {}), _log_time(e.get("timestamp", ""))
            if at is None:
                continue
            message = fields.get("message")
            if message == "catalog changed; reloading" and "seen_s" not in out:
                out["seen_s"] = at - wall
            elif message == "publishing configuration" and fields.get("version") == version:
                out["published_s"] = at - wall
                for stage in ("read", "discover", "compile"):
                    if f"{stage}_ms" in fields:
                        out[f"{stage}_s"] = fields[f"{stage}_ms"] / 1000
            elif message == "sending" and fields.get("version") == version and fields.get("node") == NODE:
                out["sent_by_type_s"].setdefault(TYPES.get(fields.get("type_url"), fields.get("type_url")), at - wall)
        return out


def _raise_nofile(want: int) -> None:
    """Raises this process's open-file limit (inherited by what it starts) to `want`, as far as
    it may (a hard limit above the current one needs root); says so when it cannot."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(f"bench: open files limited to {hard}, {want} wanted: the last servers may not answer", file=sys.stderr)


def _alive(proc, what: str) -> bool:
    if proc.poll() is not None:
        raise SystemExit(f"bench: {what} exited with status {proc.returncode} (its log is in the workdir)")
    return True


def _wall(t: dict | None) -> float:
    """A serialised `SystemTime` as seconds since the epoch."""
    if not t:
        raise SystemExit("bench: the control plane reports no last_acked_at: rebuild it (cargo build --release -p mcp-control-plane)")
    return t["secs_since_epoch"] + t["nanos_since_epoch"] / 1e9


def _log_time(stamp: str) -> float | None:
    """tracing-subscriber's RFC 3339 UTC timestamp as seconds since the epoch."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", stamp)
    if not m:
        return None
    whole = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc).timestamp()
    return whole + float(f"0.{m.group(2) or 0}")


def compile_cost(servers: int, iterations: int = 9) -> dict:
    """compile() (and catalog::load) alone, in process: control-plane/examples/compile_cost.rs.
    None (and a word on stderr) if it cannot be built or run: the push's numbers stand without it."""
    try:
        subprocess.run(["cargo", "build", "-q", "--release", "-p", "mcp-control-plane", "--example", "compile_cost"], cwd=ROOT, check=True)
        out = subprocess.run([str(TARGET / "examples" / "compile_cost"), str(servers), str(iterations)], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"bench: compile_cost not measured: {e}", file=sys.stderr)
        return None
    value = lambda key: float(re.search(rf"^{key}=([\d.]+)$", out, re.M).group(1))
    ecds = re.search(r"^resources TypedExtensionConfig: \d+ \((\d+) bytes\)$", out, re.M)
    return {"iterations": iterations, "load_s": value("load_median_ms") / 1000, "compile_s": value("compile_median_ms") / 1000,
            "filter_config_json_s": value("filter_config_json_median_ms") / 1000,
            "filter_config_bytes": int(ecds.group(1)) if ecds else None}


# The phases of one push, from its sample: (name, start, end), seconds after the write.
PHASES = [
    ("settle", lambda s: 0.0, lambda s: s["seen_s"]),
    ("reload", lambda s: s["seen_s"], lambda s: s["published_s"]),
    ("to ADS", lambda s: s["published_s"], lambda s: s["sent_by_type_s"]["clusters"]),
    ("clusters", lambda s: s["sent_by_type_s"]["clusters"], lambda s: s["ack_by_type_s"]["clusters"]),
    ("the rest", lambda s: s["ack_by_type_s"]["clusters"], lambda s: s["ack_s"]),
]
KINDS = ("new", "replaced")


def measure(envoy: str, workdir: Path, servers: int = 1000, repeat: int = 3) -> dict:
    """Medians (and every sample) in seconds of a catalog of `servers` servers pushed.

    One round (1 -> N -> N' -> 1) runs first unmeasured, as warm-up: its
    samples are kept under `warmup`, apart."""
    procs = Procs(workdir)
    samples: dict[str, list[dict]] = {"new": [], "replaced": [], "back": [], "warmup": []}
    try:
        # Up to 1,000 servers, one port each; beyond, 1,000 ports with several
        # servers each (a listener and a pooled connection per port, not per
        # server: 10,000 of each would pass the machine's open-file limit).
        per_port = max(1, -(-servers // 1000))
        ports = port_range(-(-servers // per_port))
        _raise_nofile(4 * len(ports) + 1024)
        upstream = procs.start("push-upstream", [str(TARGET / "mcp-bench-server"), "--ports", f"{ports[0]}-{ports[-1]}", "--tools", str(TOOLS),
                                                 "--per-port", str(per_port)])
        for p in ports:
            wait_for(f"upstream :{p}", lambda p=p: _alive(upstream, "the bench server") and socket.create_connection(("127.0.0.1", p), timeout=1).close() or True)
        gw = PushGateway(procs, envoy, ports, per_port)
        for i in range(repeat + 1):
            for kind, prefix, n in (("new", "a", servers), ("replaced", "b", servers), ("back", "s", 1)):
                s = gw.push(prefix, n)
                s["kind"] = kind
                samples[kind if i else "warmup"].append(s)
                print(f"bench: push {'warm-up' if not i else f'{i}/{repeat}'} {kind:8} ({n:4} servers): ACK {s['ack_s']:.3f} s, "
                      f"ready {s['ready_s']:.3f} s, served {s['served_s']:.3f} s "
                      f"(seen {s.get('seen_s', float('nan')):.3f} s, published {s.get('published_s', float('nan')):.3f} s: "
                      f"read {s.get('read_s', float('nan')):.3f}, discover {s.get('discover_s', float('nan')):.3f}, "
                      f"compile {s.get('compile_s', float('nan')):.3f}; clusters ACKed {s['ack_by_type_s'].get('clusters', float('nan')):.3f}, "
                      f"filter {s['ack_by_type_s'].get('filter', float('nan')):.3f})", flush=True)
    finally:
        procs.stop_all()
    cost = compile_cost(servers)
    result = {"servers": servers, "repeat": repeat, "poll_s": POLL, "compile": cost, "samples": samples}
    for kind in KINDS:
        got = samples[kind]
        result[kind] = {key: statistics.median(s[key] for s in got) for key in ("ack_s", "ready_s", "served_s", "seen_s", "published_s")}
        result[kind]["phases_s"] = {name: statistics.median(end(s) - begin(s) for s in got) for name, begin, end in PHASES}
    # The headline (bench/run.py's targets table): every write of a catalog of `servers` servers.
    big = [s for kind in KINDS for s in samples[kind]]
    result["ack_s"] = statistics.median(s["ack_s"] for s in big)
    result["ready_s"] = statistics.median(s["ready_s"] for s in big)
    return result


def markdown(result: dict) -> str:
    n, c = result["servers"], result["compile"]
    what = {"new": f"1 -> {n:,} servers (all clusters new)", "replaced": f"{n:,} -> {n:,} others (all clusters replaced)"}
    lines = [
        f"## A catalog of {n:,} servers pushed",
        "",
        f"The catalog file replaced (written aside, then renamed) under a running gateway (Envoy with one worker), "
        f"{n:,} bench servers with {TOOLS + 1} tools each; seconds from the rename, median of {result['repeat']} writes of each kind "
        "after one unmeasured round. *ACK*: Envoy has ACKed the new version of every type (the control plane's record of "
        f"each ACK's time); *ready*: `GET /servers` lists every server ready (polled every {result['poll_s'] * 1000:.0f} ms); "
        "*served*: a call to the last server's tool answered through Envoy (polled from the ACK on).",
        "",
        "| change | ready | ACK | served |",
        "|---|---:|---:|---:|",
    ]
    for kind in KINDS:
        m = result[kind]
        lines.append(f"| {what[kind]} | {m['ready_s']:.3f} | **{m['ack_s']:.3f}** | {m['served_s']:.3f} |")
    lines += [
        "",
        "Where the time goes (medians, seconds): *settle*, until the control plane starts reloading (a rename is taken "
        "at once; a write in place would wait 100 ms for more writes); *reload*, reading the catalog, discovering the new "
        "servers and compiling; "
        "*to ADS*, until the clusters are sent; *clusters*, until Envoy ACKs them (it applies them first); "
        "*the rest*, until it ACKs the filter configuration (ECDS), the listener and the routes. Envoy applies the types "
        "one after another on its main thread and writes ACKs when it gets to it, so the last two columns split its work "
        "only roughly (with few servers, all four ACKs arrive together).",
        "",
        "| change | " + " | ".join(name for name, _, _ in PHASES) + " |",
        "|---|" + "---:|" * len(PHASES),
    ]
    for kind in KINDS:
        lines.append(f"| {what[kind]} | " + " | ".join(f"{result[kind]['phases_s'][name]:.3f}" for name, _, _ in PHASES) + " |")
    every = lambda kind: ", ".join(f"{s['ack_s']:.3f}" for s in result["samples"][kind])
    lines += [
        "",
        f"Every write-to-ACK sample, s: {every('new')} (1 -> {n:,}); {every('replaced')} ({n:,} -> {n:,}); "
        f"warm-up round: {every('warmup')}.",
    ]
    if not c:
        lines[-1] += " `compile()` alone: not measured (control-plane/examples/compile_cost.rs did not build or run)."
        return "\n".join(lines)
    lines[-1] += (
        f" `compile()` alone on {n:,} servers, in process (median of {c['iterations']}): {c['compile_s'] * 1000:.0f} ms, "
        f"of which {c['filter_config_json_s'] * 1000:.0f} ms per serialisation of the filter configuration to JSON (once per compile); "
        f"parsing the catalog: {c['load_s'] * 1000:.0f} ms. The filter configuration Envoy receives is "
        f"{(c['filter_config_bytes'] or 0) / 1e6:.1f} MB (every tool's definition; the module is named by its digest, fetched once). "
        f"Discovery's share of *reload* is about {max(0.0, result['new']['phases_s']['reload'] - c['compile_s'] - c['load_s']):.2f} s "
        f"(reload minus compile and parse)."
    )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the whole result as JSON too")
    args = ap.parse_args()
    envoy = (ROOT / ".tools" / "envoy-path").read_text().strip()
    workdir = Path(tempfile.mkdtemp(prefix="mcp-bench-push-"))
    try:
        result = measure(envoy, workdir, args.servers, args.repeat)
    except BaseException:
        print(f"bench: logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
