"""Any replica serves any request: a second Envoy behind the same control
plane shares the listener (SO_REUSEPORT, the kernel spreads connections), and
the requests of one session, each on a new connection, land on both and all
succeed. Nothing is shared between the Envoys but the session key that the
control plane gives both."""

from pathlib import Path

import httpx
import yaml

from conftest import HEADERS, RawSession, envoy_bootstrap, free_port, jsonrpc, wait_until


def test_two_envoys_serve_one_session(gateway):
    envoy = gateway.procs["envoy"].popen.args[0]
    second_admin = free_port()
    boot = yaml.safe_load(envoy_bootstrap(gateway.workdir, gateway.ports).read_text())
    boot["node"]["id"] = "gateway-2"
    boot["admin"]["address"]["socket_address"]["port_value"] = second_admin
    path = Path(gateway.workdir) / "envoy-2.yaml"
    path.write_text(yaml.safe_dump(boot))
    gateway.start("envoy-2", [envoy, "-c", str(path), "--concurrency", "1", "--disable-hot-restart", "--log-level", "info"])
    admins = {"gateway-1": gateway.envoy_admin, "gateway-2": f"http://127.0.0.1:{second_admin}"}

    def served(admin: str) -> int:
        text = httpx.get(f"{admin}/stats", params={"filter": "^http.mcp_gateway.downstream_rq_total$"}, timeout=5).text
        return int(text.split(": ")[1]) if ": " in text else 0

    try:
        wait_until("the second Envoy serving", lambda: httpx.get(f"{admins['gateway-2']}/ready", timeout=2).text.strip() == "LIVE", timeout=30)
        s = RawSession(gateway.url)
        s.initialize()
        before = {node: served(a) for node, a in admins.items()}
        for i in range(24):
            # A new connection each time, so the kernel picks an Envoy each time.
            body = jsonrpc("tools/call", {"name": "everything__echo", "arguments": {"message": f"m{i}"}}, id=i + 10)
            r = httpx.post(gateway.url, content=body, headers={**HEADERS, "mcp-session-id": s.session_id, "connection": "close"})
            assert r.status_code == 200, r.text
            assert f"Echo: m{i}" in r.text
        after = {node: served(a) for node, a in admins.items()}
        counts = {node: after[node] - before[node] for node in admins}
        print(f"\nrequests of one session served per Envoy: {counts}")
        assert all(n > 0 for n in counts.values()), counts
    finally:
        gateway.stop("envoy-2")
