"""Catalog edits reach the running Envoy: no restart, sessions survive, and
a bad edit keeps the last good configuration."""

import os
import subprocess
import time

import httpx

from conftest import BASE_SERVERS, TARGET, RawSession, free_port, wait_until


def new_session_tools(gateway) -> set[str]:
    s = RawSession(gateway.url)
    s.initialize()
    return s.tool_names()


def test_catalog_edits_apply_without_restarting_envoy(gateway):
    envoy = gateway.procs["envoy"].popen
    before = RawSession(gateway.url)
    before.initialize()
    base = BASE_SERVERS(gateway.ports)
    try:
        # Add a third server.
        gateway.echo_server("third", gateway.ports["third"])
        third = {"name": "third", "url": f"http://127.0.0.1:{gateway.ports['third']}/mcp"}
        written = time.monotonic()
        gateway.write_catalog(base + [third])
        wait_until("third server's tools through the gateway", lambda: "third__whoami" in new_session_tools(gateway), timeout=30, interval=0.05)
        print(f"\ncatalog write -> new server's tools visible through Envoy: {(time.monotonic() - written) * 1000:.0f} ms")
        answer = before.request("tools/call", {"name": "third__whoami"})
        assert answer["result"]["content"][0]["text"] == "third", "a session opened before the edit reaches the new server"

        # Remove one.
        written = time.monotonic()
        gateway.write_catalog([base[0], third])
        wait_until("everything's tools gone", lambda: not any(n.startswith("everything__") for n in new_session_tools(gateway)), timeout=30, interval=0.05)
        print(f"catalog write -> removed server's tools gone: {(time.monotonic() - written) * 1000:.0f} ms")
        gone = before.request("tools/call", {"name": "everything__echo", "arguments": {"message": "x"}})
        assert gone["error"]["code"] == -32602

        # A bad edit is reported, and the last good configuration stays.
        good_version = gateway.admin("/servers")["version"]
        gateway.catalog_path.write_text("servers:\n  - name: Not Valid\n    url: nowhere\n")
        status = wait_until("the bad edit reported", lambda: (s := gateway.admin("/servers"))["last_error"] and s, timeout=30)
        assert "Not Valid" in status["last_error"] and status["version"] == good_version
        assert new_session_tools(gateway) >= {"echo__echo", "third__whoami"}

        assert envoy.poll() is None, "Envoy kept running throughout"
        assert gateway.envoy_stat("server.hot_restart_epoch") == 0
        assert before.request("tools/call", {"name": "echo__echo", "arguments": {"text": "same session"}})["result"]["content"][0]["text"] == "same session"
    finally:
        gateway.write_catalog(base)
        wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}) and "everything__echo" in new_session_tools(gateway), timeout=30)
        gateway.stop("third")


def test_a_server_that_starts_late_appears_and_one_that_dies_is_reported(gateway):
    """Also: an upstream path that starts like an admin path (/servers/...)
    still reaches the upstream, and a secret in its URL's query is never
    shown by /servers."""
    base = BASE_SERVERS(gateway.ports)
    late = {"name": "late", "url": f"http://127.0.0.1:{gateway.ports['third']}/servers/mcp?token=s3cr3t"}
    try:
        gateway.write_catalog(base + [late])
        status = wait_until(
            "the late server reported unreachable",
            lambda: next((s for s in gateway.admin("/servers")["servers"] if s["name"] == "late" and s["last_error"]), None),
            timeout=30,
        )
        assert status["state"] == "unreachable" and "cannot reach" in status["last_error"]
        assert status["url"] == f"http://127.0.0.1:{gateway.ports['third']}/servers/mcp"
        assert "s3cr3t" not in httpx.get(f"{gateway.base}/servers").text
        assert not any(n.startswith("late__") for n in new_session_tools(gateway)), "an unreachable server lists no tools"
        assert "echo__echo" in new_session_tools(gateway), "the others are unaffected"

        gateway.echo_server("late", gateway.ports["third"], path="/servers/mcp")
        wait_until("the late server's tools", lambda: "late__whoami" in new_session_tools(gateway), timeout=30)
        s = RawSession(gateway.url)
        s.initialize()
        assert s.request("tools/call", {"name": "late__whoami"})["result"]["content"][0]["text"] == "late"
    finally:
        gateway.stop("late")
        gateway.write_catalog(base)
        wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}) and not any(n.startswith("late__") for n in new_session_tools(gateway)), timeout=30)


def test_a_kubernetes_configmap_update_is_picked_up(tmp_path):
    """A mounted ConfigMap is `catalog.yaml -> ..data/catalog.yaml` with
    `..data -> ..<timestamp>`; the kubelet updates it by swapping `..data`
    (rename of a new symlink over it), never touching `catalog.yaml`."""
    def generation(name: str, body_limit: int) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "catalog.yaml").write_text(f"gateway:\n  max_body_bytes: {body_limit}\nservers: []\n")

    generation("..2026_12_02_v1", 65536)
    os.symlink("..2026_12_02_v1", tmp_path / "..data")
    os.symlink("..data/catalog.yaml", tmp_path / "catalog.yaml")
    admin = free_port()
    argv = [str(TARGET / "mcp-gateway"), "--catalog", str(tmp_path / "catalog.yaml"), "--wasm", str(TARGET.parent / "mcp_filter.wasm"),
            "--xds-listen", f"127.0.0.1:{free_port()}", "--admin-listen", f"127.0.0.1:{admin}"]
    with (tmp_path / "cp.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = lambda: httpx.get(f"http://127.0.0.1:{admin}/health", timeout=2).json()
        first = wait_until("the control plane's first version", lambda: health().get("version"))
        generation("..2026_12_02_v2", 131072)
        os.symlink("..2026_12_02_v2", tmp_path / "..data_tmp")
        os.rename(tmp_path / "..data_tmp", tmp_path / "..data")
        wait_until("the swapped ConfigMap applied", lambda: health()["version"] != first, timeout=30)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
