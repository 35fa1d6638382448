"""`mcp-gateway --validate FILE`, as operators use it before a reload."""

import subprocess

from conftest import ROOT, TARGET


def validate(tmp_path, text: str, env: dict | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    return subprocess.run([str(TARGET / "mcp-gateway"), "--validate", str(path)], capture_output=True, text=True, env=env or {}, timeout=30)


def test_the_example_catalog_is_valid():
    done = subprocess.run([str(TARGET / "mcp-gateway"), "--validate", str(ROOT / "catalog.yaml")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "valid (4 servers)" in done.stdout
    assert "authentication: OFF" in done.stdout, "make run must say loudly that anyone can call the tools"


def test_the_readmes_catalog_reference_is_valid_as_written(tmp_path):
    """The README's annotated catalog (every field a user may copy), with
    the secrets it names set as an operator would set them."""
    import re

    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S) if "servers:" in b]
    assert len(blocks) == 1, f"README.md should hold one catalog reference block, found {len(blocks)}"
    secrets = {"MCP_GATEWAY_SESSION_KEY": "ab" * 32, "MCP_GATEWAY_API_KEY": "readme-api-key-0123456789", "JWT_SECRET": "j" * 40}
    # Secrets it reads from files, relative to the catalog, as a mounted Secret would hold them.
    for path in re.findall(r"\$\{file:([^}:]+)\}", blocks[0]):
        assert not path.startswith("/"), f"the README's example should name a file relative to the catalog, not {path}"
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("readme-file-secret\n")
    done = validate(tmp_path, blocks[0], secrets)
    assert done.returncode == 0 and "valid" in done.stdout, done.stdout + done.stderr


def test_invalid_catalogs_exit_non_zero_naming_server_and_field(tmp_path):
    done = validate(tmp_path, "servers:\n  - name: ok\n    url: http://127.0.0.1:1/mcp\n  - name: ok\n    url: ftp://x/\n  - name: Bad!\n    url: http://a/\n")
    assert done.returncode == 1
    assert 'server "ok": name is used by another server' in done.stderr
    assert 'server "ok": url "ftp://x/" scheme "ftp" is not http or https' in done.stderr
    assert 'server "Bad!": name must be' in done.stderr

    done = validate(tmp_path, "servers:\n  - name: a\n    url: ${UPSTREAM_URL}\n")
    assert done.returncode == 1 and "UPSTREAM_URL" in done.stderr
    assert validate(tmp_path, "servers:\n  - name: a\n    url: ${UPSTREAM_URL}\n", {"UPSTREAM_URL": "http://10.1.2.3/mcp"}).returncode == 0

    done = validate(tmp_path, "servers: [{name: a, url: http://a/, colour: blue}]\n")
    assert done.returncode == 1 and "unknown field `colour`" in done.stderr


def test_the_open_guides_flags_and_config_keys(tmp_path):
    """`mcp-gateway --config config.yaml --validate`, as the Open guide types
    it; a config.yaml in that guide's format is told where each key lives."""
    catalog = tmp_path / "config.yaml"
    catalog.write_text("servers:\n  - name: a\n    url: http://127.0.0.1:1/mcp\n")
    done = subprocess.run([str(TARGET / "mcp-gateway"), "--config", str(catalog), "--validate"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "valid (1 servers)" in done.stdout, done.stdout + done.stderr

    catalog.write_text('listen_addr: "0.0.0.0:4444"\napi_key: "${MCP_API_KEY}"\nlog_level: warn\nmax_connections_per_server: 10\n'
                       "request_timeout_seconds: 30\nidle_timeout_seconds: 300\nservers: []\n")
    done = subprocess.run([str(TARGET / "mcp-gateway"), "--config", str(catalog), "--validate"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    for key, instead in [("listen_addr", "gateway.listen"), ("api_key", "gateway.auth.api_keys"), ("log_level", "gateway.log_level"),
                         ("max_connections_per_server", "gateway.max_connections_per_server"),
                         ("request_timeout_seconds", "gateway.request_timeout_seconds"), ("idle_timeout_seconds", "gateway.idle_timeout_seconds")]:
        assert f"{key}: a key of the Open guide's config.yaml; in the catalog it is {instead}" in done.stderr, done.stderr
