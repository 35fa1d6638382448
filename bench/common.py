"""What every benchmark target shares: paths, process handling, waiting, the Target interface.

bench/run.py drives the workloads; the targets that need more than a few lines
(ContextForge, the catalog push) live in modules of their own and import this.
"""

from __future__ import annotations

import contextlib
import random
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "target" / "release"
ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_range(n: int) -> list[int]:
    """n consecutive free ports on loopback, below the ephemeral range (where
    the discovery's and other programs' outgoing connections take theirs)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(10000, max(10001, low - n))
        if all(_free(base + i) for i in range(n)):
            return list(range(base, base + n))
    raise SystemExit(f"bench: found no {n} consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


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
    """Processes started for one target, stopped together; each on the CPUs
    `cpus` names, if any (set before it runs, so that every thread it starts
    inherits them)."""

    def __init__(self, workdir: Path, cpus: frozenset[int] | None = None):
        self.workdir = workdir
        self.cpus = cpus
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})},
                             preexec_fn=pinned(self.cpus))
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


def pinned(cpus: frozenset[int] | None):
    """A `preexec_fn` that puts the child on `cpus` (None: leaves it where it is)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


@dataclass(frozen=True)
class Cores:
    """Where a load run's processes go: every proxy (Envoy, and the control plane
    or ContextForge beside it) on `proxy`, the load generator and the upstream on
    `load`; both None when the host does not allow it. `note` says which, for the
    results."""

    proxy: frozenset[int] | None
    load: frozenset[int] | None
    note: str


def cores() -> Cores:
    """One CPU for the proxies and the rest for wrk and the upstream, if this
    process may use at least two and may move processes between them."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError) as e:
        return Cores(None, None, f"not pinned: the CPUs this process may use are unknown ({e})")
    if len(allowed) < 2:
        return Cores(None, None, f"not pinned: this process may use only CPU {allowed[0]}, so every process shares it")
    proxy, load = frozenset(allowed[-1:]), frozenset(allowed[:-1])
    try:
        os.sched_setaffinity(0, proxy)
    except OSError as e:
        return Cores(None, None, f"not pinned: the host refused to pin a process ({e})")
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, allowed)
    cpu = lambda s: ",".join(map(str, sorted(s)))
    return Cores(proxy, load, f"pinned: every proxy (Envoy, the control plane, ContextForge) on CPU {cpu(proxy)}, "
                              f"wrk and the upstream on CPU {cpu(load)}")


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time the process `pid` has used so far, every thread's, user and
    system (utime + stime of /proc/<pid>/stat), in seconds, to 1/SC_CLK_TCK."""
    # The fields after the command name, which is in parentheses and may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Target:
    """Something that can stand where the gateway stands."""

    name = ""
    prefix = ""  # how it names upstream tools: "b0__" for the server b0's tool
    proc = None  # the Envoy process whose memory and CPU time the results report, if any
    fleet = False  # whether it merges several servers into one (else it runs with one server only)
    # A peer we compare against rather than our own stack: a workload it cannot
    # serve correctly is reported as such in the results instead of stopping the run.
    peer = False

    def url(self) -> str:
        raise NotImplementedError

    def router_url(self) -> str | None:
        """Where it answers which tools fit a task (`POST /tools`), if it does."""
        return None

    def tool(self, name: str) -> str:
        """The name a client calls the first server's tool `name` by, through this target."""
        return self.prefix + name

    def headers(self, era: str) -> dict[str, str]:
        return {"mcp-protocol-version": MODERN} if era == "stateless" else {}


def gateway_bootstrap(workdir: Path, name: str, envoy_admin: int, xds: int) -> Path:
    """envoy/gateway.yaml with its ports moved: Envoy's admin address (and the
    envoy_admin cluster that points at it) and the control plane's xDS port."""
    import yaml

    boot = yaml.safe_load((ROOT / "envoy" / "gateway.yaml").read_text())
    boot["admin"]["address"]["socket_address"]["port_value"] = envoy_admin
    moved = {"xds": xds, "envoy_admin": envoy_admin}
    for cluster in boot["static_resources"]["clusters"]:
        if cluster["name"] in moved:
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]["port_value"] = moved[cluster["name"]]
    path = workdir / name
    path.write_text(yaml.safe_dump(boot))
    return path
