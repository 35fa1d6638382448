"""The Forge guide's operator commands, as typed: `make generate-secrets`
(secrets of 64 hex characters into the env file docker compose reads, a
key already there never overwritten), and `make backup` / `make restore`
of what the gateway keeps (the catalog, its pinned tool definitions, the
keys), tested by a round trip."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import ROOT


def make(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def values(env: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line and not line.startswith("#"))


def test_generate_secrets_writes_long_secrets_and_never_overwrites_one(tmp_path):
    env = tmp_path / ".env"
    done = make("generate-secrets", f"ENV_FILE={env}")
    assert done.returncode == 0, done.stderr
    first = values(env)
    assert set(first) == {"MCP_GATEWAY_SESSION_KEY", "MCP_GATEWAY_API_KEY", "GRAFANA_ADMIN_PASSWORD"}, first
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in first.values()), first
    assert first["MCP_GATEWAY_SESSION_KEY"] != first["MCP_GATEWAY_API_KEY"]
    assert env.stat().st_mode & 0o077 == 0, "the env file is readable by its owner only"

    # Run again: nothing changes. A key removed by hand comes back; the other stays.
    assert make("generate-secrets", f"ENV_FILE={env}").returncode == 0
    assert values(env) == first
    env.write_text(f"# mine\nMCP_GATEWAY_API_KEY=my-own-key-that-stays-as-it-is-0123\n")
    done = make("generate-secrets", f"ENV_FILE={env}")
    assert "kept MCP_GATEWAY_API_KEY" in done.stdout and "wrote MCP_GATEWAY_SESSION_KEY GRAFANA_ADMIN_PASSWORD" in done.stdout, done.stdout
    again = values(env)
    assert again["MCP_GATEWAY_API_KEY"] == "my-own-key-that-stays-as-it-is-0123"
    assert re.fullmatch(r"[0-9a-f]{64}", again["MCP_GATEWAY_SESSION_KEY"])
    assert env.read_text().startswith("# mine\n")

    # .env.example names every key the script writes, and docker-compose.yml
    # reads each (as ${KEY...} or as a secret's environment), and needs no other.
    example = (ROOT / ".env.example").read_text()
    compose = (ROOT / "docker-compose.yml").read_text()
    for key in first:
        assert f"{key}=" in example and (f"${{{key}" in compose or f"environment: {key}" in compose), key
    needed = set(re.findall(r"\$\{(\w+):\?", compose)) | set(re.findall(r"environment: (\w+)", compose))
    assert needed <= set(first), f"docker-compose.yml needs {needed - set(first)}, which make generate-secrets does not write"


def test_backup_and_restore_round_trip_the_catalog_pins_and_keys(tmp_path):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("gateway:\n  pin: hold\nservers:\n  - name: a\n    url: http://127.0.0.1:1/mcp\n")
    pins = tmp_path / "catalog.pins.json"
    pins.write_text('{"version": 1, "servers": {"a": {"add": {"sha256": "00"}}}}\n')
    env = tmp_path / ".env"
    env.write_text("MCP_GATEWAY_API_KEY=" + "k" * 40 + "\n")
    archive = tmp_path / "backup.tar.gz"
    args = (f"CATALOG={catalog}", f"ENV_FILE={env}", f"BACKUP={archive}")
    done = make("backup", *args)
    assert done.returncode == 0 and archive.exists(), done.stdout + done.stderr
    assert archive.stat().st_mode & 0o077 == 0, "the archive holds the keys"
    saved = {p: p.read_bytes() for p in (catalog, pins, env)}

    # Lost and changed: the restore brings all three back, and keeps what it replaced.
    pins.unlink()
    env.unlink()
    catalog.write_text("servers: []\n")
    done = make("restore", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p: p.read_bytes() for p in saved} == saved
    assert (tmp_path / "catalog.yaml.before-restore").read_text() == "servers: []\n"
    assert "catalog.yaml differed" in done.stdout

    # A named pin_file is the one kept.
    catalog.write_text("gateway:\n  pin: warn\n  pin_file: state/approved.json\nservers: []\n")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "approved.json").write_text("{}\n")
    done = make("backup", *args)
    assert done.returncode == 0 and "state/approved.json" in done.stdout, done.stdout

    missing = make("restore", f"BACKUP={tmp_path / 'nope.tar.gz'}")
    assert missing.returncode != 0 and "no archive at" in missing.stderr
