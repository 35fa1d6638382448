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


def test_a_failed_reload_changes_nothing(gateway):
    """An edit that fails (here: TLS files that are not there) while it also
    changes the log level, the admin keys, the rate limits and which stdio
    servers run must leave every one of them, and Envoy, as they were."""
    from test_runtimes import TIME, MEMORY

    base = BASE_SERVERS(gateway.ports)
    old_key, new_key = "reload-admin-key-0ld-0123456789", "reload-admin-key-new-0123456789"
    # An argument of its own, so that pgrep finds this process and no other.
    time_server = {"name": "time", "runtime": "stdio", "command": str(TIME), "args": ["--local-timezone", "Etc/GMT-3"]}
    memory_server = {"name": "memory", "runtime": "stdio", "command": "node", "args": [str(MEMORY)], "env": {"MEMORY_FILE_PATH": str(gateway.workdir / "reload-memory.jsonl")}}
    good = {"log_level": "info", "auth": {"api_keys": [{"key": old_key, "principal": "ops", "groups": ["admin"]}]}, "rate_limit_per_minute": 100000}
    bad = {
        "log_level": "debug",
        "auth": {"api_keys": [{"key": new_key, "principal": "ops", "groups": ["admin"]}]},
        "rate_limit_per_minute": 1,
        "tls": {"listen": f"127.0.0.1:{free_port()}", "cert_file": "missing/tls.crt", "key_file": "missing/tls.key"},
    }

    def as_caller(key):
        s = RawSession(gateway.url)
        s.http.headers["authorization"] = f"Bearer {key}"
        return s

    def process(name):
        return next((s.get("process") for s in gateway.admin("/servers")["servers"] if s["name"] == name), None)

    try:
        gateway.write_catalog_and_wait(base + [time_server], "the good catalog with auth and a stdio server", **good)
        wait_until("the stdio server running", lambda: (p := process("time")) and p["state"] == "running" and p["pid"])
        # Started once its catalog was published, then asked what it offers.
        wait_until("the stdio server's tools served", lambda: gateway.servers_ready({"echo", "everything", "time"}))
        before = gateway.admin("/health")
        pid = process("time")["pid"]

        gateway.write_catalog(base + [memory_server], **bad)
        status = wait_until("the failed reload reported", lambda: (s := gateway.admin("/servers"))["last_error"] and s, timeout=30)
        assert "gateway.tls" in status["last_error"] and "missing/tls.crt" in status["last_error"], status["last_error"]
        after = gateway.admin("/health")
        assert after["version"] == before["version"]
        assert after["log_level"] == "info", "the log level of the failed edit was applied"
        assert all(t["current"] for e in after["envoys"] if e["connected"] for t in e["types"])
        # Processes: the removed one still runs, the added one never started.
        assert {s["name"] for s in status["servers"]} == {"echo", "everything", "time"}
        assert process("time")["pid"] == pid and process("time")["state"] == "running"
        assert subprocess.run(["pgrep", "-f", str(MEMORY)], capture_output=True).returncode == 1, "the added stdio server was started"
        # Keys: the admin API admits the old key (the reload it asks for fails
        # again), not the new one; the MCP endpoint likewise.
        assert httpx.post(f"{gateway.cp_admin}/admin/reload", headers={"authorization": f"Bearer {new_key}"}, timeout=30).status_code == 401
        assert httpx.post(f"{gateway.cp_admin}/admin/reload", headers={"authorization": f"Bearer {old_key}"}, timeout=30).status_code == 422
        assert as_caller(new_key).post('{"jsonrpc":"2.0","id":1,"method":"ping"}', session=False).status_code == 401
        # Limits: one request a minute would refuse the second.
        caller = as_caller(old_key)
        caller.initialize()
        assert [caller.post('{"jsonrpc":"2.0","id":2,"method":"tools/list"}').status_code for _ in range(3)] == [200, 200, 200]
    finally:
        gateway.write_catalog(base)
        wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}) and not gateway.admin("/servers")["last_error"], timeout=30)
        wait_until("the stdio server stopped", lambda: subprocess.run(["pgrep", "-f", "Etc/GMT-3"], capture_output=True).returncode == 1, timeout=30)


def test_an_upstream_renaming_a_tool_onto_another_name_loses_only_that_tool(gateway):
    """A server (prefix: false) that starts offering a name another server
    already has: that one tool is left out (reported in /servers, the log and
    a metric), the server that had the name keeps it, and later edits still
    apply."""
    base = BASE_SERVERS(gateway.ports)
    port = gateway.ports["third"]
    grower = {"name": "grower", "url": f"http://127.0.0.1:{port}/mcp", "prefix": False}
    try:
        gateway.echo_server("grower", port, "/mcp", "--dynamic")
        gateway.write_catalog_and_wait(base + [grower], "a catalog with an unprefixed server")
        wait_until("grower discovered", lambda: gateway.servers_ready({"echo", "everything", "grower"}), timeout=30)
        assert {"grow", "echo__whoami"} <= new_session_tools(gateway)

        s = RawSession(gateway.url)
        s.initialize()
        grown = s.request("tools/call", {"name": "grow", "arguments": {"name": "echo__whoami"}})
        assert "result" in grown, grown
        reload = httpx.post(f"{gateway.cp_admin}/admin/reload", timeout=30)
        assert reload.status_code == 200, reload.text

        status = {x["name"]: x for x in gateway.admin("/servers")["servers"]}
        assert status["grower"]["state"] == "ready" and gateway.admin("/servers")["last_error"] is None
        dropped = status["grower"]["dropped"]
        assert [(d["kind"], d["name"]) for d in dropped] == [("tool", "echo__whoami")], dropped
        assert 'server "echo", which had it first' in dropped[0]["reason"]
        assert "dropped" not in status["echo"]
        metrics = httpx.get(f"{gateway.cp_admin}/metrics", timeout=5).text
        assert 'mcp_gateway_server_dropped_items{server="grower"} 1' in metrics
        log = gateway.procs["control-plane"].log.read_text()
        assert "left out of the lists" in log and "echo__whoami" in log

        fresh = RawSession(gateway.url)
        fresh.initialize()
        assert fresh.request("tools/call", {"name": "echo__whoami"})["result"]["content"][0]["text"] == "echo", "the name stays with its first server"
        assert fresh.request("tools/call", {"name": "grow", "arguments": {"name": "later"}})["result"]

        # The catalog is not frozen: the next edit applies.
        gateway.write_catalog_and_wait(base + [grower | {"request_timeout_seconds": 7}], "an edit after the collision")
        assert gateway.admin("/servers")["last_error"] is None
    finally:
        gateway.write_catalog(base)
        wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}), timeout=30)
        gateway.stop("grower")
