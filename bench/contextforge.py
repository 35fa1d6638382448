"""IBM ContextForge 1.0.7 (PyPI `mcp-contextforge-gateway`) as a benchmark target.

It federates the same bench servers as the gateway: each is registered with
`POST /gateways` over Streamable HTTP as `b<i>`, and ContextForge names its tools
`b0-tool-0` (`<gateway>-<tool>`, underscores becoming hyphens). Clients call
`/mcp`, which serves every registered tool.

How it runs, and why:
  * installed by `scripts/setup.sh bench` into .tools/contextforge (a venv of its own);
  * one uvicorn worker (`mcpgateway --workers 1`: one Python process), on a fresh
    sqlite database in the run's workdir, no Redis: the single-node setup its docs
    describe. More workers on sqlite would only add lock contention;
  * on the proxies' CPU, like every other proxy, when bench/run.py pins them (the
    Envoy targets run one worker). Under load it uses exactly one core (its GIL);
    before the proxies were pinned, pinning it alone with `taskset` changed nothing
    measurable here;
  * the settings a benchmark needs: its rate limiter off (`RATE_LIMITING_ENABLED=false`;
    by default 100 MCP requests a minute), loopback upstreams allowed
    (`SSRF_ALLOW_LOCALHOST=true`), strong random secrets (it refuses to start with
    weak ones), no auth on /mcp (`AUTH_REQUIRED=false`, `MCP_REQUIRE_AUTH=false`;
    registering still takes a token, minted with its own tool), no UI or admin API,
    logging at ERROR and no uvicorn access log;
  * stateless, its default (`USE_STATEFUL_SESSIONS=false`): `initialize` issues no
    session, so the handshake-era workloads run without one, and every tools/call
    opens a fresh upstream session (4 upstream requests). With stateful sessions a
    held session would reuse one upstream session, but concurrent requests in one
    session that share a JSON-RPC id (as the load generator's do: every request is
    the same body) are answered once and the rest hang forever, which wrk does not
    count as errors: the numbers would be wrong.

`proc` stays None: the results' memory column is Envoy's. The ContextForge server's
pid is `rss_pid`.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import httpx

from common import ACCEPT, MODERN, ROOT, Procs, Target, free_port, wait_for

VERSION = "1.0.7"
VENV = ROOT / ".tools" / "contextforge"
ADMIN = "admin@example.com"
INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
LIST = {"jsonrpc": "2.0", "id": 0, "method": "tools/list"}
# Its settings (environment variables) beyond the port, the database and the secrets.
SETTINGS = {
    "AUTH_REQUIRED": "false",
    "MCP_REQUIRE_AUTH": "false",
    "MCPGATEWAY_UI_ENABLED": "false",
    "MCPGATEWAY_ADMIN_API_ENABLED": "false",
    "SSRF_ALLOW_LOCALHOST": "true",
    "RATE_LIMITING_ENABLED": "false",
    "USE_STATEFUL_SESSIONS": "false",  # its default; see the module's docstring
    "LOG_LEVEL": "ERROR",
}


def _answer(r: httpx.Response):
    """The JSON-RPC message of an answer, JSON or text/event-stream."""
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1]) if data else None
    return r.json()


class ContextForge(Target):
    name = "contextforge"
    peer = True
    fleet = True
    proc = None

    def __init__(self, procs: Procs, ports: list[int], envoy: str):
        mcpgateway, python = VENV / "bin" / "mcpgateway", VENV / "bin" / "python"
        if not mcpgateway.exists():
            raise SystemExit(f"bench: ContextForge {VERSION} is not installed in {VENV}: run `scripts/setup.sh bench`")
        self.port = free_port()
        home = procs.workdir / f"contextforge-{self.port}"
        home.mkdir()
        env = {
            **SETTINGS,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "APP_DOMAIN": f"http://127.0.0.1:{self.port}",
            "DATABASE_URL": f"sqlite:///{home / 'mcp.db'}",
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "AUTH_ENCRYPTION_SECRET": secrets.token_urlsafe(48),
            "PLATFORM_ADMIN_EMAIL": ADMIN,
            "PLATFORM_ADMIN_PASSWORD": secrets.token_urlsafe(24),
            "BASIC_AUTH_PASSWORD": secrets.token_urlsafe(24),
        }
        # `env -C`: it reads a `.env` from, and writes logs under, its working directory.
        self.server = procs.start("contextforge", [
            "env", "-C", str(home), str(mcpgateway), "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1", "--no-access-log", "--log-level", "warning",
        ], env=env)
        self.rss_pid = self.server.pid
        self.log = procs.workdir / "contextforge.log"
        base = f"http://127.0.0.1:{self.port}"
        minted = subprocess.run(
            [str(python), "-m", "mcpgateway.utils.create_jwt_token", "--username", ADMIN, "--exp", "60",
             f"--secret={env['JWT_SECRET_KEY']}"],  # (a secret may start with "-")
            cwd=home, env={**os.environ, **env}, capture_output=True, text=True,
        )
        if minted.returncode != 0 or not minted.stdout.strip():
            raise SystemExit(f"bench: ContextForge's create_jwt_token failed: {minted.stderr[-500:]}")
        auth = {"authorization": f"Bearer {minted.stdout.strip().splitlines()[-1]}"}
        wait_for("ContextForge's /health", lambda: self._alive() and httpx.get(f"{base}/health", timeout=2).status_code == 200, timeout=120)
        for i, p in enumerate(ports):
            r = httpx.post(f"{base}/gateways", headers=auth, timeout=60,
                           json={"name": f"b{i}", "url": f"http://127.0.0.1:{p}/mcp", "transport": "STREAMABLEHTTP"})
            if r.status_code not in (200, 201):
                raise SystemExit(f"bench: ContextForge refused to register b{i}: HTTP {r.status_code} {r.text[:300]!r}")
        # The handshake, as a client would do it. Stateless, it issues no session id.
        def initialize():
            answer = httpx.post(self.url(), json=INIT, headers={"accept": ACCEPT}, timeout=10)
            return self._alive() and answer.status_code == 200 and answer

        self.session = wait_for("ContextForge's initialize", initialize).headers.get("mcp-session-id")
        want = 21 * len(ports)
        wait_for(f"ContextForge listing {want} tools", lambda: self._alive() and len(_answer(httpx.post(
            self.url(), json=LIST, headers={"accept": ACCEPT, **self.headers("handshake")}, timeout=30))["result"]["tools"]) >= want)

    def _alive(self) -> bool:
        if self.server.poll() is not None:
            raise SystemExit(f"bench: ContextForge exited ({self.server.returncode}); its log, {self.log}, ends:\n"
                             + self.log.read_text()[-1500:])
        return True

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def tool(self, name: str) -> str:
        return "b0-" + name.replace("_", "-")

    def headers(self, era: str) -> dict[str, str]:
        if era == "stateless":
            return {"mcp-protocol-version": MODERN}
        if era == "new session" or not self.session:
            return {}
        return {"mcp-session-id": self.session}
