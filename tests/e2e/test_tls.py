"""TLS in Envoy: an HTTPS listener whose certificate comes over SDS from the
files the catalog names, HTTP/2 and HTTP/1.1 by ALPN, client certificates
(mTLS) naming the caller, and a rotation of the certificate without
restarting Envoy. Certificates are made here with `cryptography`; the
clients are curl and the Python SDK."""

import asyncio
import ipaddress
import json
import socket
import ssl
import subprocess
from pathlib import Path

import httpx2
import pytest
from cryptography import x509
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import BASE_SERVERS, GATEWAY_SECRETS, free_port, jsonrpc, wait_until
from pki import issue, replace_pem, write_pem

KEY = GATEWAY_SECRETS["MCP_GATEWAY_API_KEY"]
AGENT = "spiffe://e2e.example/agent"


@pytest.fixture(scope="module")
def tls(gateway):
    d = Path(gateway.workdir) / "tls"
    d.mkdir(exist_ok=True)
    ca = issue("e2e CA", ca=True)
    write_pem(d / "ca", *ca)
    server_sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    write_pem(d / "gateway", *issue("localhost", ca, sans=server_sans))
    write_pem(d / "agent", *issue("agent", ca, sans=[x509.UniformResourceIdentifier(AGENT)], client=True))
    port = free_port()
    settings = {
        "tls": {"listen": f"127.0.0.1:{port}", "cert_file": str(d / "gateway.crt"), "key_file": str(d / "gateway.key"), "client_ca_file": str(d / "ca.crt")},
        "auth": {"api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "alice", "groups": ["dev"]}], "client_certificates": True},
        "authorization": {"rules": [
            {"name": "devs", "groups": ["dev"], "allow": {"servers": ["*"]}},
            {"name": "agents", "principals": ["spiffe://e2e.example/*"], "allow": {"tools": ["echo__*"]}},
        ]},
    }
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "an HTTPS listener", **settings)
    url = f"https://127.0.0.1:{port}/mcp"
    wait_until("the HTTPS listener", lambda: served_serial(port, d / "ca.crt"))
    yield {"dir": d, "port": port, "url": url, "ca": ca, "sans": server_sans}
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")


def served_serial(port: int, ca: Path) -> int:
    """The serial number of the certificate the listener presents now."""
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        return x509.load_der_x509_certificate(s.getpeercert(binary_form=True)).serial_number


def curl(tls, *args: str) -> subprocess.CompletedProcess:
    init = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl", "version": "0"}})
    argv = [
        "curl", "-sS", "--cacert", str(tls["dir"] / "ca.crt"), "-o", "-", "-w", "\n%{http_version} %{http_code}",
        "-H", "content-type: application/json", "-H", "accept: application/json, text/event-stream", "--data", init, *args, tls["url"],
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_curl_speaks_http2_and_http1_over_tls(gateway, tls):
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        done = curl(tls, flag, "-H", f"authorization: Bearer {KEY}")
        assert done.returncode == 0, done.stderr
        body, status = done.stdout.rsplit("\n", 1)
        assert status == f"{version} 200", done.stdout
        assert json.loads(body)["result"]["serverInfo"]["name"]


def test_the_python_sdk_over_https(gateway, tls):
    ctx = ssl.create_default_context(cafile=str(tls["dir"] / "ca.crt"))

    async def run():
        http = httpx2.AsyncClient(headers={"authorization": f"Bearer {KEY}"}, verify=ctx, timeout=httpx2.Timeout(30, read=300))
        async with Client(streamable_http_client(tls["url"], http_client=http), mode="legacy") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            echoed = (await c.call_tool("echo__echo", {"text": "over tls"})).content[0].text
            return names, echoed

    names, echoed = asyncio.run(run())
    assert "everything__echo" in names and echoed == "over tls"


def test_a_client_certificate_names_the_caller(gateway, tls):
    d = tls["dir"]
    done = curl(tls, "--cert", str(d / "agent.crt"), "--key", str(d / "agent.key"), "-D", "-")
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(" 200"), done.stdout
    session = next(l.split(":", 1)[1].strip() for l in done.stdout.splitlines() if l.lower().startswith("mcp-session-id:"))
    listed = subprocess.run(
        ["curl", "-sS", "--cacert", str(d / "ca.crt"), "--cert", str(d / "agent.crt"), "--key", str(d / "agent.key"),
         "-H", "content-type: application/json", "-H", "accept: application/json, text/event-stream", "-H", f"mcp-session-id: {session}",
         "--data", jsonrpc("tools/list", id=2), tls["url"]],
        capture_output=True, text=True, timeout=30,
    )
    names = {t["name"] for t in json.loads(listed.stdout)["result"]["tools"]}
    assert names and all(n.startswith("echo__") for n in names), names
    # Without a certificate or a key: 401.
    bare = curl(tls)
    assert bare.stdout.rstrip().endswith(" 401"), bare.stdout
    # A certificate from another CA does not even complete the handshake.
    stranger_ca = issue("stranger CA", ca=True)
    write_pem(d / "stranger", *issue("stranger", stranger_ca, sans=[x509.UniformResourceIdentifier(AGENT)], client=True))
    forged = curl(tls, "--cert", str(d / "stranger.crt"), "--key", str(d / "stranger.key"))
    assert forged.returncode != 0 or forged.stdout.rstrip().endswith(" 401"), forged.stdout


def test_a_rotated_certificate_is_served_without_restarting_envoy(gateway, tls):
    envoy = gateway.procs["envoy"].popen
    before = served_serial(tls["port"], tls["dir"] / "ca.crt")
    key, cert = issue("localhost", tls["ca"], sans=tls["sans"])
    replace_pem(tls["dir"] / "gateway", key, cert)
    wait_until("the new certificate served", lambda: served_serial(tls["port"], tls["dir"] / "ca.crt") == cert.serial_number, timeout=30)
    assert before != cert.serial_number
    assert envoy.poll() is None and gateway.procs["envoy"].popen.pid == envoy.pid, "Envoy was restarted"
    done = curl(tls, "-H", f"authorization: Bearer {KEY}")
    assert done.stdout.rstrip().endswith(" 200"), done.stdout
