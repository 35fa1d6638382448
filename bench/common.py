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


class Target:
    """Something that can stand where the gateway stands."""

    name = ""
    prefix = ""  # how it names upstream tools: "b0__" for the server b0's tool
    proc = None  # the Envoy process whose memory the results report, if any
    fleet = False  # whether it merges several servers into one (else it runs with one server only)
    # A peer we compare against rather than our own stack: a workload it cannot
    # serve correctly is reported as such in the results instead of stopping the run.
    peer = False

    def url(self) -> str:
        raise NotImplementedError

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
