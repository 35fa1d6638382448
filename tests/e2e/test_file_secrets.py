"""Secrets from files: an API key given as ${file:...} is read from the file,
and a rotated file is picked up without restarting anything: the control
plane polls the files the catalog read and reloads when one changed, the
old key is refused and the new one accepted. The file is replaced in the
three ways rotations happen: a new file renamed over it, a write in place,
and Kubernetes' swap of the `..data` symlink of a mounted Secret. A file that
disappears keeps the last good key. The keys appear in no log and no page."""

import asyncio
import os
import secrets
import shutil
import tempfile
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import BASE_SERVERS, HEADERS, jsonrpc, wait_until

INIT = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}})


def new_key(n: int) -> str:
    return f"e2e-file-key-{n}-{secrets.token_hex(8)}"


def status_with(gateway, key: str) -> int:
    return httpx.post(gateway.url, content=INIT, headers={**HEADERS, "authorization": f"Bearer {key}"}, timeout=10).status_code


def only_accepts(gateway, key: str, refused: list[str]) -> bool:
    return status_with(gateway, key) == 200 and all(status_with(gateway, k) == 401 for k in refused)


def processes(gateway) -> dict[str, int]:
    """The pids of the control plane and Envoy, which must stay the same."""
    procs = {name: gateway.procs[name].popen for name in ("control-plane", "envoy")}
    assert all(p.poll() is None for p in procs.values()), "a process of the gateway stopped"
    return {name: p.pid for name, p in procs.items()}


@pytest.fixture
def secret_dir(gateway):
    d = Path(tempfile.mkdtemp(prefix="mcp-gateway-secrets-"))
    yield d
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")
    shutil.rmtree(d, ignore_errors=True)


def use_key_file(gateway, path: Path) -> None:
    auth = {"api_keys": [{"key": f"${{file:{path}}}", "principal": "alice", "groups": ["dev"]}]}
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "a catalog with an API key from a file", auth=auth)


def test_a_key_file_rotated_by_rename_or_in_place_is_picked_up(gateway, secret_dir):
    keys = [new_key(i) for i in range(4)]
    path = secret_dir / "api-key"
    path.write_text(keys[0] + "\n")  # as `echo "$KEY" > file` writes it
    use_key_file(gateway, path)
    before = processes(gateway)

    async def call(key: str) -> str:
        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {key}"}, timeout=httpx2.Timeout(30, read=300))
        async with Client(streamable_http_client(gateway.url, http_client=http), mode="legacy") as c:
            return (await c.call_tool("echo__add", {"a": 1, "b": 2})).content[0].text

    assert asyncio.run(call(keys[0])) == "3", "a client with the file's key (its newline trimmed) is let in"
    assert status_with(gateway, keys[1]) == 401

    # Rotation as Kubernetes and most tools do it: a new file renamed over the old.
    tmp = secret_dir / ".api-key.tmp"
    tmp.write_text(keys[1] + "\n")
    os.replace(tmp, path)
    wait_until("the renamed key accepted and the old one refused", lambda: only_accepts(gateway, keys[1], [keys[0]]), timeout=30)
    assert asyncio.run(call(keys[1])) == "3"

    # A write in place (the same inode).
    path.write_text(keys[2])
    wait_until("the key written in place accepted and the old one refused", lambda: only_accepts(gateway, keys[2], keys[:2]), timeout=30)

    # The file disappears: the reload fails, naming the file, and the last good key stays.
    path.unlink()
    status = wait_until("the failed reload reported", lambda: (s := gateway.admin("/servers"))["last_error"] and s, timeout=30)
    assert str(path) in status["last_error"] and "No such file" in status["last_error"], status["last_error"]
    assert only_accepts(gateway, keys[2], keys[:2]), "the last good key stays"

    # It comes back with a new key.
    path.write_text(keys[3] + "\r\n")
    wait_until("the restored file's key accepted", lambda: only_accepts(gateway, keys[3], keys[:3]), timeout=30)
    wait_until("the failed reload forgotten", lambda: gateway.admin("/servers")["last_error"] is None, timeout=30)

    assert processes(gateway) == before, "nothing was restarted"
    logs = {name: gateway.procs[name].log.read_text(errors="replace") for name in ("control-plane", "envoy")}
    assert "secret files changed; reloading" in logs["control-plane"]
    assert str(path) in logs["control-plane"], "the rotation is logged by the file's path"
    pages = httpx.get(f"{gateway.cp_admin}/servers", timeout=5).text + httpx.get(f"{gateway.cp_admin}/health", timeout=5).text
    for key in keys:
        for name, text in logs.items():
            assert key not in text, f"a key is in the {name} log"
        assert key not in pages, "a key is on the admin pages"


def test_a_mounted_secret_swapped_through_its_data_symlink_is_picked_up(gateway, secret_dir):
    """A Kubernetes Secret volume: `api-key` -> `..data/api-key`, `..data` ->
    a timestamped directory; an update writes a new directory and renames a
    new `..data` symlink over the old one, never touching `api-key`."""
    keys = [new_key(i) for i in range(2)]

    def publish(n: int) -> None:
        version = secret_dir / f"..2026_01_0{n}"
        version.mkdir()
        (version / "api-key").write_text(keys[n] + "\n")
        (secret_dir / "..data_tmp").symlink_to(version.name)
        os.replace(secret_dir / "..data_tmp", secret_dir / "..data")
        if n:
            shutil.rmtree(secret_dir / f"..2026_01_0{n - 1}")

    publish(0)
    (secret_dir / "api-key").symlink_to("..data/api-key")
    use_key_file(gateway, secret_dir / "api-key")
    before = processes(gateway)
    assert only_accepts(gateway, keys[0], [keys[1]])

    publish(1)
    wait_until("the swapped Secret's key accepted and the old one refused", lambda: only_accepts(gateway, keys[1], [keys[0]]), timeout=30)
    assert processes(gateway) == before, "nothing was restarted"
