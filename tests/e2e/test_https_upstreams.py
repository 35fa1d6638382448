"""Servers behind HTTPS, with a private CA made here (issue 16, part 3).

Real servers over TLS: the repo's rmcp echo server (`--tls-cert`, with
sessions, a GET stream and `grow`; `--tls-client-ca` for mTLS) and a legacy
HTTP+SSE server from the official Python SDK under uvicorn. The control plane
discovers them, Envoy calls them, each verifying the certificate against the
server's `tls.ca_file` (sent to Envoy inline, over SDS) and its names against
the URL's host, and presenting `tls.client_cert_file` to those that ask. The
same servers reached wrongly (no CA, a host the certificate does not name, no
client certificate) are reported in `/servers` with what to do, and stay out
of the lists while the others answer."""

import asyncio
import ipaddress
import shutil
import socket
import sys

import anyio
import pytest
from cryptography import x509
from mcp.client.client import Client

from conftest import BASE_SERVERS, ROOT, RawSession, free_port, wait_until
from pki import issue, write_pem

LEGACY_SERVER = ROOT / "tests" / "e2e" / "legacy_sse_tls_server.py"
READY = {"echo", "everything", "private", "mtls", "legacy"}
UNREACHABLE = {"untrusted", "misnamed", "mtls-anon", "legacy-anon"}


def text_of(result) -> str:
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def server(gateway, name: str) -> dict:
    return next(s for s in gateway.admin("/servers")["servers"] if s["name"] == name)


@pytest.fixture(scope="module")
def https(gateway):
    d = gateway.workdir / "https"
    d.mkdir(exist_ok=True)
    ca = issue("e2e private CA", ca=True)
    write_pem(d / "ca", *ca)
    # `private` has a copy of its own, so that rotating it touches no other server.
    shutil.copy(d / "ca.crt", d / "private-ca.crt")
    write_pem(d / "stranger-ca", *issue("stranger CA", ca=True))
    loopback = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    write_pem(d / "server", *issue("localhost", ca, sans=loopback))
    write_pem(d / "name-only", *issue("localhost", ca, sans=[x509.DNSName("localhost")]))
    write_pem(d / "gateway-client", *issue("mcp-gateway", ca, sans=[x509.DNSName("mcp-gateway")], client=True))

    ports = {k: free_port() for k in ("tls", "mtls", "misnamed", "legacy")}
    cert = ["--tls-cert", str(d / "server.crt"), "--tls-key", str(d / "server.key")]
    gateway.echo_server("echo-tls", ports["tls"], "/mcp", "--stateful", "--dynamic", *cert)
    gateway.echo_server("echo-mtls", ports["mtls"], "/mcp", *cert, "--tls-client-ca", str(d / "ca.crt"))
    gateway.echo_server("echo-misnamed", ports["misnamed"], "/mcp", "--tls-cert", str(d / "name-only.crt"), "--tls-key", str(d / "name-only.key"))
    gateway.start(
        "legacy-tls",
        [sys.executable, str(LEGACY_SERVER), "--port", str(ports["legacy"]), "--cert", str(d / "server.crt"), "--key", str(d / "server.key"), "--client-ca", str(d / "ca.crt")],
    )
    wait_until("the legacy SSE server over TLS", lambda: socket.create_connection(("127.0.0.1", ports["legacy"]), timeout=1).close() or True)

    # Paths relative to the catalog's directory, as operators write them.
    ca_only = {"ca_file": "https/ca.crt"}
    mtls = {"ca_file": "https/ca.crt", "client_cert_file": "https/gateway-client.crt", "client_key_file": "https/gateway-client.key"}
    url = lambda key, path="/mcp": f"https://127.0.0.1:{ports[key]}{path}"  # noqa: E731
    servers = BASE_SERVERS(gateway.ports) + [
        {"name": "private", "url": url("tls"), "tls": {"ca_file": "https/private-ca.crt"}},
        {"name": "untrusted", "url": url("tls")},
        {"name": "misnamed", "url": url("misnamed"), "tls": ca_only},
        {"name": "mtls", "url": url("mtls"), "tls": mtls},
        {"name": "mtls-anon", "url": url("mtls"), "tls": ca_only},
        {"name": "legacy", "runtime": "sse", "url": url("legacy", "/sse"), "tls": mtls},
        {"name": "legacy-anon", "runtime": "sse", "url": url("legacy", "/sse"), "tls": ca_only, "discovery_timeout_seconds": 3},
    ]
    gateway.write_catalog(servers)
    wait_until("the https servers discovered", lambda: gateway.servers_ready(READY), timeout=60)
    yield {"dir": d, "ports": ports, "ca": ca, "servers": servers}
    gateway.write_catalog(BASE_SERVERS(gateway.ports))
    wait_until("the base catalog back", lambda: gateway.servers_ready({"echo", "everything"}), timeout=30)
    for name in ("echo-tls", "echo-mtls", "echo-misnamed", "legacy-tls"):
        gateway.stop(name)


def test_https_servers_are_discovered_listed_and_called_through_envoy(gateway, https):
    async def legacy_client():
        async with Client(gateway.url, mode="legacy") as c:
            names = {t.name for t in (await c.list_tools()).tools}
            answers = {
                "private": text_of(await c.call_tool("private__echo", {"text": "over tls"})),
                "mtls": text_of(await c.call_tool("mtls__whoami", {})),
                "legacy": text_of(await c.call_tool("legacy__add", {"a": 2, "b": 3})),
                "echo": text_of(await c.call_tool("echo__add", {"a": 2, "b": 3})),
                "everything": text_of(await c.call_tool("everything__get-sum", {"a": 2, "b": 3})),
            }
            return names, answers

    async def modern_client():
        # 2026-07-28 by default: `private` keeps sessions, so its calls go
        # through the control plane's era bridge, over TLS.
        async with Client(gateway.url) as c:
            return text_of(await c.call_tool("private__echo", {"text": "bridged"}))

    names, answers = asyncio.run(legacy_client())
    assert {"private__echo", "private__grow", "mtls__whoami", "legacy__add", "legacy__whoami", "echo__echo", "everything__get-sum"} <= names
    assert not {n for n in names if n.split("__")[0] in UNREACHABLE}, "a server that failed TLS lists nothing"
    assert answers == {"private": "over tls", "mtls": "echo-mtls", "legacy": "5", "echo": "5", "everything": "The sum of 2 and 3 is 5."}
    assert asyncio.run(modern_client()) == "bridged"
    # Envoy itself made the TLS connections (the legacy server is reached
    # through the control plane, which holds its connection).
    for cluster in ("mcp_private", "mcp_mtls"):
        assert gateway.envoy_stat(f"cluster.{cluster}.ssl.handshake") > 0, cluster
        assert gateway.envoy_stat(f"cluster.{cluster}.ssl.fail_verify_error") == 0, cluster
    assert server(gateway, "legacy")["process"]["state"] == "running"


def test_tls_failures_are_reported_and_the_other_servers_answer(gateway, https):
    tls, mtls, misnamed, legacy = (https["ports"][k] for k in ("tls", "mtls", "misnamed", "legacy"))
    errors = {name: server(gateway, name)["last_error"] or "" for name in UNREACHABLE}
    assert {name for name in UNREACHABLE if server(gateway, name)["state"] == "unreachable"} == UNREACHABLE
    assert f"TLS: the certificate of https://127.0.0.1:{tls}/mcp is not trusted (unknown issuer): set servers[].tls.ca_file" in errors["untrusted"], errors
    assert f"TLS: the certificate of https://127.0.0.1:{misnamed}/mcp does not match host 127.0.0.1 (it is for localhost)" in errors["misnamed"], errors
    assert f"TLS: https://127.0.0.1:{mtls}/mcp requires a client certificate" in errors["mtls-anon"], errors
    assert "servers[].tls.client_cert_file" in errors["mtls-anon"], errors
    # The legacy link's own error, as its supervisor saw it. (uvicorn closes
    # the connection without sending the alert that would say why.)
    link_error = server(gateway, "legacy-anon")["process"]["last_error"] or ""
    assert link_error.startswith(f"TLS: https://127.0.0.1:{legacy}/sse ") and "servers[].tls.client_cert_file" in link_error, link_error
    log = gateway.procs["control-plane"].log.read_text(errors="replace")
    assert "is not trusted (unknown issuer)" in log and "does not match host 127.0.0.1" in log, "the log says it too"

    # Envoy verifies the same way: a client session opens a session with
    # every server of the catalog, and Envoy refuses the same certificates.
    before = {c: gateway.envoy_stat(f"cluster.mcp_{c}.ssl.{stat}") for c, stat in (("untrusted", "fail_verify_error"), ("misnamed", "fail_verify_san"))}
    s = RawSession(gateway.url)
    s.initialize()
    assert s.request("tools/call", {"name": "echo__add", "arguments": {"a": 1, "b": 2}})["result"]["content"][0]["text"] == "3"
    assert s.request("tools/call", {"name": "private__echo", "arguments": {"text": "still"}})["result"]["content"][0]["text"] == "still"
    assert "untrusted__echo" not in s.tool_names()
    assert gateway.envoy_stat("cluster.mcp_untrusted.ssl.fail_verify_error") > before["untrusted"]
    assert gateway.envoy_stat("cluster.mcp_misnamed.ssl.fail_verify_san") > before["misnamed"]


def test_a_list_change_streams_through_from_an_https_server(gateway, https):
    """`grow` makes the echo server send tools/list_changed on the GET stream
    of each session: the control plane holds that stream over TLS for the
    client, discovers the server again over TLS, and the client hears the
    gateway's own list_changed with the new tool listed."""
    notified: list[str] = []

    async def scenario():
        async def handler(message):
            if "ToolListChanged" in type(getattr(message, "root", message)).__name__:
                notified.append("tools")

        async with Client(gateway.url, mode="legacy", message_handler=handler) as c:
            for grown in range(15):
                # The first may come before the GET streams are open end to end.
                await c.call_tool("private__grow", {"name": f"grown{grown}"})
                with anyio.move_on_after(2):
                    while not notified:
                        await anyio.sleep(0.05)
                if notified:
                    break
            return {t.name for t in (await c.list_tools()).tools}

    names = asyncio.run(scenario())
    assert notified, "no list_changed reached the client's GET stream"
    assert "private__grown0" in names, sorted(names)


def test_a_rotated_ca_file_is_picked_up(gateway, https):
    """The CA file of `private` is replaced (renamed over, as certificate
    managers do) by another CA's: the control plane's poll of the TLS files
    notices, stops trusting the server and gives Envoy the new CA, with no
    catalog edit; the right CA back, the server comes back. Only servers
    that answer are in the catalog meanwhile, so that no retry of an
    unreachable one reloads the files instead of the poll."""
    d = https["dir"]
    ca_file = d / "private-ca.crt"
    answering = [s for s in https["servers"] if s["name"] in {"echo", "everything", "private"}]
    log = gateway.procs["control-plane"].log

    def swap(source):
        tmp = d / "private-ca.crt.new"
        shutil.copy(source, tmp)
        tmp.replace(ca_file)

    def polls_noticed() -> int:
        return log.read_text(errors="replace").count("TLS files changed")

    fail_verify = "cluster.mcp_private.ssl.fail_verify_error"
    gateway.write_catalog_and_wait(answering, "a catalog of servers that answer")
    wait_until("them ready", lambda: gateway.servers_ready({"echo", "everything", "private"}), timeout=30)
    try:
        noticed = polls_noticed()
        swap(d / "stranger-ca.crt")
        wait_until("private distrusted", lambda: "no CA of servers[].tls.ca_file signed it" in (server(gateway, "private")["last_error"] or ""), timeout=30)
        assert polls_noticed() > noticed, "the poll of the TLS files saw the rotation"
        assert gateway.servers_ready({"echo", "everything"}), "private is out, and only it"
        # Envoy runs the rotated CA: a new client session's initialize to
        # `private` fails its verification.
        before = gateway.envoy_stat(fail_verify)
        wait_until("Envoy refusing private's certificate", lambda: RawSession(gateway.url).initialize() and gateway.envoy_stat(fail_verify) > before, timeout=30)
    finally:
        swap(d / "ca.crt")
    wait_until("private trusted again", lambda: server(gateway, "private")["state"] == "ready", timeout=30)
    s = RawSession(gateway.url)
    s.initialize()
    assert s.request("tools/call", {"name": "private__echo", "arguments": {"text": "back"}})["result"]["content"][0]["text"] == "back"
    gateway.write_catalog(https["servers"])
    wait_until("the https catalog back", lambda: gateway.servers_ready(READY), timeout=60)
