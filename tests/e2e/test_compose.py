"""docker-compose.yml, run as plain processes: no Docker engine runs here,
so each container of the default profile becomes a network namespace of its
own (its services' names in its /etc/hosts, one bridge between them), in
which the service's own entrypoint and command run with its environment
(interpolated from the env file `make generate-secrets` writes, as compose
does) and the Dockerfile's, with its volumes and the image's paths
(/srv/mcp-gateway, /usr/share/mcp-gateway, /usr/local/bin) bound where the
container has them. The gateway service runs twice (`--scale gateway=2`)
on the same ports, behind the edge's one port.

So a wrong path, variable, port, host name or flag in the compose file, its
catalog or its bootstraps fails here. Not emulated: the user, the read-only
root and tmpfs, the limits, the images' own contents (Envoy's image is
assumed to have bash, which its health check uses) and the monitoring and
redis profiles (checked statically by scripts/validate-deploy.sh).

Needs root (network namespaces, bind mounts) and iproute2, as CI has.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from conftest import ROOT, TARGET, RawSession, require, wait_until

COMPOSE = ROOT / "docker-compose.yml"
MCP_PORT = 4444
# The image's paths (Dockerfile), bound to what the build puts there.
IMAGE_ROOT = "/srv/mcp-gateway"
IMAGE_SHARE = "/usr/share/mcp-gateway"


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR:?error}."""

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        got = env.get(name, "")
        if op == ":?" and not got:
            pytest.fail(f"docker-compose.yml needs {name}: {arg}", pytrace=False)
        if op == ":-" and not got:
            return arg
        return got

    pattern = r"\$\$|\$\{(?P<braced>\w+)(?:(?P<op>:[?-])(?P<arg>[^}]*))?\}|\$(?P<plain>[A-Za-z_]\w*)"
    return re.sub(pattern, one, value)


def dockerfile() -> tuple[dict[str, str], str]:
    """The final stage's ENV and WORKDIR."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM "):]
    env: dict[str, str] = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in shlex.split(line[4:])))
    workdir = re.findall(r"^WORKDIR (\S+)", final, flags=re.M)[-1]
    return env, workdir


@dataclass
class Container:
    name: str
    service: str
    ns: str
    ip: str
    log: Path
    popen: subprocess.Popen | None = None


@dataclass
class Stack:
    tag: str
    subnet: str
    workdir: Path
    env: dict[str, str]
    containers: dict[str, Container] = field(default_factory=dict)
    host_ip: str = ""

    def ns_run(self, container: Container, argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", container.ns, *argv], capture_output=True, text=True, timeout=timeout)


def sh(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"


@pytest.fixture(scope="module")
def stack():
    if os.geteuid() != 0:
        pytest.fail("test_compose.py needs root (network namespaces and bind mounts), as CI has", pytrace=False)
    if not shutil.which("ip"):
        pytest.fail("iproute2's `ip` is missing: apt-get install iproute2", pytrace=False)
    envoy = require(Path(require(ROOT / ".tools" / "envoy-path", "run `make setup`").read_text().strip()), "run `make setup`")
    wasm = require(ROOT / "target" / "mcp_filter.wasm", "run `make wasm`")
    for binary in ("mcp-gateway", "mcp-echo-server"):
        require(TARGET / binary, "run `make build`")
    require(ROOT / ".tools" / "servers-venv" / "bin" / "mcp-server-time", "run `make setup` (the example catalog's servers)")

    compose = yaml.safe_load(COMPOSE.read_text())
    image_env, image_workdir = dockerfile()
    tag = f"mc{os.getpid() % 10000}"
    third = 20 + os.getpid() % 200
    workdir = Path(tempfile.mkdtemp(prefix="mcp-gateway-compose-", dir=ROOT / "target"))
    # The env file, as the README's first step makes it.
    env_file = workdir / ".env"
    done = subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), "generate-secrets", f"ENV_FILE={env_file}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and not line.startswith("#"))
    s = Stack(tag=tag, subnet=f"10.239.{third}", workdir=workdir, env=env)

    # The image's /usr/local/bin: the binaries the Dockerfile copies there,
    # and Envoy's image's envoy.
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    for binary in ("mcp-gateway", "mcp-echo-server"):
        (bin_dir / binary).symlink_to(TARGET / binary)
    (bin_dir / "envoy").symlink_to(envoy)
    share = workdir / "share"
    share.mkdir()
    shutil.copy(wasm, share / "mcp_filter.wasm")
    mountpoints = [Path(IMAGE_ROOT), Path(IMAGE_SHARE), Path("/etc/mcp-gateway"), Path("/etc/envoy")]
    made = [p for p in mountpoints if not p.exists()]
    for p in made:
        p.mkdir(parents=True)

    # One bridge in a namespace of its own; the host on it too, as the port
    # the edge publishes is reached from here.
    services = ["control-plane", "gateway", "gateway", "echo", "edge"]
    names = ["control-plane", "gateway-1", "gateway-2", "echo", "edge"]
    switch = f"{tag}-sw"
    created_ns: list[str] = []
    procs: list[Container] = []
    try:
        sh("ip", "netns", "add", switch)
        created_ns.append(switch)
        sh("ip", "netns", "exec", switch, "ip", "link", "add", "br0", "type", "bridge")
        sh("ip", "netns", "exec", switch, "ip", "link", "set", "br0", "up")
        hosts = ["127.0.0.1 localhost"]
        for i, (service, name) in enumerate(zip(services, names)):
            c = Container(name=name, service=service, ns=f"{tag}-{name}", ip=f"{s.subnet}.{10 + i}", log=workdir / f"{name}.log")
            s.containers[name] = c
            hosts.append(f"{c.ip} {service} {name}")
        s.host_ip = f"{s.subnet}.1"
        sh("ip", "link", "add", f"{tag}-h", "type", "veth", "peer", "name", f"{tag}-hp")
        sh("ip", "link", "set", f"{tag}-hp", "netns", switch)
        sh("ip", "netns", "exec", switch, "ip", "link", "set", f"{tag}-hp", "master", "br0", "up")
        sh("ip", "addr", "add", f"{s.host_ip}/24", "dev", f"{tag}-h")
        sh("ip", "link", "set", f"{tag}-h", "up")
        for j, c in enumerate(s.containers.values()):
            sh("ip", "netns", "add", c.ns)
            created_ns.append(c.ns)
            etc = Path("/etc/netns") / c.ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text("\n".join(hosts) + "\n")
            (etc / "hostname").write_text(c.name + "\n")
            inside, outside = f"{tag}v{j}", f"{tag}p{j}"
            sh("ip", "link", "add", inside, "type", "veth", "peer", "name", outside)
            sh("ip", "link", "set", inside, "netns", c.ns)
            sh("ip", "link", "set", outside, "netns", switch)
            sh("ip", "netns", "exec", switch, "ip", "link", "set", outside, "master", "br0", "up")
            sh("ip", "netns", "exec", c.ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", c.ns, "ip", "link", "set", inside, "name", "eth0")
            sh("ip", "netns", "exec", c.ns, "ip", "addr", "add", f"{c.ip}/24", "dev", "eth0")
            sh("ip", "netns", "exec", c.ns, "ip", "link", "set", "eth0", "up")

        def start(c: Container) -> None:
            svc = compose["services"][c.service]
            own_image = svc.get("image") == "mcp-gateway:local"
            environment = {k: interpolate(str(v), env) for k, v in (svc.get("environment") or {}).items()}
            full_env = {
                "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOSTNAME": c.name,
                "HOME": "/nonexistent",
                **(image_env if own_image else {}),
                **environment,
            }
            entrypoint = svc.get("entrypoint") or (["mcp-gateway"] if own_image else [])
            argv = [interpolate(a, env) for a in [*entrypoint, *(svc.get("command") or [])]]
            # (source, target, read-only)
            binds: list[tuple[Path, str, bool]] = []
            if own_image:
                binds += [(ROOT, IMAGE_ROOT, False), (share, IMAGE_SHARE, True)]
            placeholders = workdir / f"etc-{c.name}"
            placeholders.mkdir()
            for volume in svc.get("volumes") or []:
                source, target, *mode = volume.split(":")
                if not source.startswith("."):
                    continue  # a named volume: nothing of the repository's
                src = (ROOT / source).resolve()
                assert src.exists(), f"docker-compose.yml: {c.service} mounts {source}, which does not exist"
                if src.is_file():
                    # A file into a directory the image has: a directory of
                    # placeholders bound there first, then the file on it.
                    parent = placeholders / Path(target).parent.name
                    if not parent.exists():
                        parent.mkdir()
                        binds.append((parent, str(Path(target).parent), False))
                    (parent / Path(target).name).touch()
                binds.append((src, target, mode == ["ro"]))
            script = ["set -e"]
            for a, b, ro in binds:
                script.append(f"mount --bind {shlex.quote(str(a))} {shlex.quote(b)}")
                if ro:
                    script.append(f"mount -o remount,bind,ro {shlex.quote(b)}")
            script.append(f"cd {shlex.quote(image_workdir if own_image else '/')}")
            script.append("exec env -i " + " ".join(shlex.quote(f"{k}={v}") for k, v in full_env.items()) + " " + " ".join(shlex.quote(a) for a in argv))
            c.popen = subprocess.Popen(
                ["ip", "netns", "exec", c.ns, "unshare", "--mount", "--propagation", "private", "bash", "-c", "\n".join(script)],
                stdout=c.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            procs.append(c)

        def healthy(c: Container) -> bool:
            if c.popen and c.popen.poll() is not None:
                pytest.fail(f"{c.name} exited ({c.popen.returncode}):\n{c.log.read_text()[-3000:]}", pytrace=False)
            return health(s, compose, c).returncode == 0

        c = s.containers
        start(c["control-plane"])
        wait_until("the control plane's health check", lambda: healthy(c["control-plane"]), timeout=120)
        start(c["echo"])
        for name in ("gateway-1", "gateway-2"):
            start(c[name])
        start(c["edge"])
        for name in ("echo", "gateway-1", "gateway-2", "edge"):
            wait_until(f"{name}'s health check", lambda: healthy(c[name]), timeout=120)
        yield s
    finally:
        for c in procs:
            if c.popen and c.popen.poll() is None:
                os.killpg(c.popen.pid, signal.SIGTERM)
        for c in procs:
            if c.popen:
                try:
                    c.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(c.popen.pid, signal.SIGKILL)
                    c.popen.wait()
        subprocess.run(["ip", "link", "del", f"{tag}-h"], capture_output=True)
        for ns in created_ns:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        for p in reversed(made):
            try:
                p.rmdir()
            except OSError:
                pass
        if os.environ.get("E2E_KEEP_LOGS"):
            print(f"compose logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def health(s: Stack, compose: dict, c: Container) -> subprocess.CompletedProcess:
    """The service's own health check, run in its namespace as Docker runs it."""
    test = compose["services"][c.service]["healthcheck"]["test"]
    argv = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
    return s.ns_run(c, [interpolate(a, s.env) for a in argv], timeout=10)


def edge_url(s: Stack) -> str:
    return f"http://{s.containers['edge'].ip}:{MCP_PORT}"


def test_every_service_of_the_compose_file_runs_and_passes_its_health_check(stack):
    compose = yaml.safe_load(COMPOSE.read_text())
    for c in stack.containers.values():
        done = health(stack, compose, c)
        assert done.returncode == 0, f"{c.name}'s health check failed: {done.stdout}{done.stderr}"
    # Both replicas are Envoys of the one control plane, each under its own name.
    status = httpx.get(f"{edge_url(stack)}/health", timeout=10)
    assert status.status_code == 200, status.text


def test_the_edge_balances_the_two_replicas_and_a_session_crosses_them(stack):
    s = RawSession(f"{edge_url(stack)}/mcp")
    s.http.headers["authorization"] = f"Bearer {stack.env['MCP_GATEWAY_API_KEY']}"
    s.initialize()
    names = s.tool_names()
    assert {"time__get_current_time", "memory__read_graph", "echo__add"} <= names, names

    def served(name: str) -> int:
        """How many requests this replica sent to echo: only calls routed
        there do (not the edge's health checks, nor discovery). A cluster's
        traffic counters appear with its first request (deferred stats)."""
        request = "GET /stats?filter=mcp_echo.upstream_rq_total HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n"
        done = stack.ns_run(stack.containers[name], ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/9901 && printf '{request}' >&3 && cat <&3"])
        assert done.returncode == 0 and done.stdout.startswith("HTTP/1.1 200"), done.stdout + done.stderr
        m = re.search(r"^cluster\.mcp_echo\.upstream_rq_total: (\d+)", done.stdout, re.M)
        return int(m.group(1)) if m else 0

    replicas = ("gateway-1", "gateway-2")
    before = {name: served(name) for name in replicas}
    # Each request on a new connection: the edge spreads them, and the
    # session opens on whichever replica gets it (the shared session key).
    for i in range(8):
        s.http.close()
        s.http = httpx.Client(timeout=30, headers={"authorization": f"Bearer {stack.env['MCP_GATEWAY_API_KEY']}"})
        answer = s.request("tools/call", {"name": "echo__add", "arguments": {"a": i, "b": 1}})
        assert answer["result"]["content"][0]["text"] == str(i + 1), answer
    time_answer = s.request("tools/call", {"name": "time__get_current_time", "arguments": {"timezone": "UTC"}})
    assert "result" in time_answer, time_answer

    calls = {name: served(name) - before[name] for name in replicas}
    assert sum(calls.values()) >= 8, calls
    assert all(n > 0 for n in calls.values()), f"the edge sent every call to one replica: {calls}"
    # The control plane sees both Envoys, each having taken the configuration.
    key = {"authorization": f"Bearer {stack.env['MCP_GATEWAY_API_KEY']}"}
    envoys = httpx.get(f"{edge_url(stack)}/health", headers=key, timeout=10).json()["envoys"]
    live = {e["node_id"] for e in envoys if e["connected"] and all(t["current"] for t in e["types"])}
    assert live == {"gateway-1", "gateway-2"}, envoys


def test_the_console_and_the_admin_key_work_through_the_edge(stack):
    base = edge_url(stack)
    assert httpx.get(f"{base}/console", timeout=10).status_code == 200
    assert httpx.get(f"{base}/console/state", timeout=10).status_code == 401, "the compose catalog turns authentication on"
    key = {"authorization": f"Bearer {stack.env['MCP_GATEWAY_API_KEY']}"}
    state = httpx.get(f"{base}/console/state", headers=key, timeout=10).json()
    assert {x["name"] for x in state["servers"]} == {"time", "memory", "echo"}
    assert all(x["state"] == "ready" for x in state["servers"]), state["servers"]
    # The restart of a stdio server, through the edge, on whichever replica.
    pid = next(x for x in state["servers"] if x["name"] == "time")["process"]["pid"]
    assert httpx.post(f"{base}/servers/time/restart", headers=key, timeout=10).status_code == 202

    def new_pid():
        servers = httpx.get(f"{base}/console/state", headers=key, timeout=10).json()["servers"]
        return next(x for x in servers if x["name"] == "time")["process"]["pid"] not in (None, pid)

    wait_until("time restarted through the edge", new_pid, timeout=30)
