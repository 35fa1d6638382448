"""Who may call what, and how often: principals from API keys and JWTs
(verified by Envoy's jwt_authn), authorization rules that filter lists and
refuse calls as if the tool did not exist, the audit log, the RFC 9728
metadata and challenges, upstream credentials, Origin checks and rate
limits. Tokens are minted here with PyJWT; the servers are the real echo
server (with its own bearer token) and server-everything."""

import asyncio
import http.server
import json
import threading
import time
from pathlib import Path

import httpx
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import BASE_SERVERS, GATEWAY_SECRETS, HEADERS, RawSession, free_port, jsonrpc, saturate, wait_until

ALICE = GATEWAY_SECRETS["MCP_GATEWAY_API_KEY"]  # group dev
BOB = "e2e-bob-key-0f9a7c31d2"  # group guests
OPS = "e2e-ops-key-77aa0c1d9e"  # group admin
ISSUER = "https://idp.e2e.example"
AUDIENCE = "mcp-gateway-e2e"
WHOAMI_PER_MINUTE, WHOAMI_BURST = 600, 10


def hs256(claims: dict, secret: str = GATEWAY_SECRETS["JWT_SECRET"]) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}, secret, algorithm="HS256")


def transport(url: str, headers: dict):
    return streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)))


def tools_seen(url: str, headers: dict) -> set[str]:
    async def run():
        async with Client(transport(url, headers), mode="legacy") as c:
            return {t.name for t in (await c.list_tools()).tools}

    return asyncio.run(run())


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


class Keyed(RawSession):
    """A raw session whose every request carries the caller's credentials."""

    def __init__(self, url: str, headers: dict):
        super().__init__(url)
        self.http.headers.update(headers)

    def call(self, name: str, arguments: dict | None = None) -> dict:
        return self.request("tools/call", {"name": name, "arguments": arguments or {}})


@pytest.fixture(scope="module")
def secured(gateway):
    """The base servers plus two echo servers: `vault` refuses any request
    without its own bearer token (the catalog gives it, from the
    environment), `relay` is configured to receive the client's own
    Authorization header. Both can show which header reached them."""
    ports = {"vault": free_port(), "relay": free_port()}
    gateway.echo_server("vault", ports["vault"], "/mcp", "--require-bearer", GATEWAY_SECRETS["VAULT_TOKEN"], "--show-auth")
    gateway.echo_server("relay", ports["relay"], "/mcp", "--show-auth")
    servers = BASE_SERVERS(gateway.ports) + [
        {"name": "vault", "url": f"http://127.0.0.1:{ports['vault']}/mcp", "headers": {"Authorization": "Bearer ${VAULT_TOKEN}"}},
        {"name": "relay", "url": f"http://127.0.0.1:{ports['relay']}/mcp", "forward_authorization": True},
    ]
    audit = Path(gateway.workdir) / "audit.log"
    settings = {
        "auth": {
            "api_keys": [
                {"key": "${MCP_GATEWAY_API_KEY}", "principal": "alice", "groups": ["dev"]},
                {"key": BOB, "principal": "bob", "groups": ["guests"]},
                {"key": OPS, "principal": "ops", "groups": ["admin"]},
            ],
            "jwt": {"issuer": ISSUER, "audiences": [AUDIENCE], "hs256_secret": "${JWT_SECRET}", "required_scopes": ["mcp"]},
            "protected_resource": {"resource": gateway.url, "authorization_servers": [ISSUER], "scopes_supported": ["mcp"]},
        },
        "authorization": {
            "rules": [
                {"name": "devs", "groups": ["dev"], "allow": {"servers": ["*"]}, "deny": {"tools": ["everything__get-env"]}},
                {"name": "guests", "groups": ["guests"], "allow": {"tools": ["echo__echo", "echo__add"]}},
            ]
        },
        "rate_limits": [{"name": "whoami", "per": ["principal"], "tools": ["echo__whoami"], "requests_per_minute": WHOAMI_PER_MINUTE, "burst": WHOAMI_BURST}],
        "allowed_origins": ["https://app.example"],
        "audit_log": str(audit),
    }
    gateway.write_catalog_and_wait(servers, "the secured catalog", **settings)
    wait_until("vault and relay discovered", lambda: gateway.servers_ready({"echo", "everything", "vault", "relay"}))
    yield {"servers": servers, "settings": settings, "audit": audit}
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")
    gateway.stop("vault")
    gateway.stop("relay")


def audit_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_each_principal_lists_only_what_it_may_call(gateway, secured):
    alice = tools_seen(gateway.url, bearer(ALICE))
    assert "everything__echo" in alice and "vault__whoami" in alice
    assert "everything__get-env" not in alice, "a tool denied by name is listed"
    assert tools_seen(gateway.url, {"x-api-key": BOB}) == {"echo__echo", "echo__add"}


def test_a_denied_call_looks_unknown_and_the_audit_log_says_why(gateway, secured):
    bob = Keyed(gateway.url, {"x-api-key": BOB})
    bob.initialize()
    denied = bob.call("echo__whoami")
    unknown = bob.call("echo__no_such_tool")
    assert denied["error"]["code"] == unknown["error"]["code"] == -32602
    assert denied["error"]["message"] == "Unknown tool: echo__whoami"
    assert bob.call("echo__add", {"a": 2, "b": 3})["result"]["content"][0]["text"] == "5"

    def logged():
        lines = audit_lines(secured["audit"])
        deny = [l for l in lines if l["principal"] == "bob" and l["target"] == "echo__whoami"]
        allow = [l for l in lines if l["principal"] == "bob" and l["target"] == "echo__add"]
        return deny and allow and (deny[-1], allow[-1])

    deny, allow = wait_until("the audit lines", logged, timeout=10)
    assert (deny["method"], deny["server"], deny["decision"], deny["reason"]) == ("tools/call", "echo", "deny", "no rule allows it")
    assert (allow["decision"], allow["reason"]) == ("allow", 'rule "guests" allows it')
    # Never a credential in the log.
    assert BOB not in secured["audit"].read_text()


def test_jwts_minted_here_name_their_caller(gateway, secured):
    token = hs256({"sub": "carol", "groups": ["guests"], "scope": "mcp"})
    assert tools_seen(gateway.url, bearer(token)) == {"echo__echo", "echo__add"}
    init = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}})

    def refused(token: str) -> httpx.Response:
        return httpx.post(gateway.url, content=init, headers={**HEADERS, **bearer(token)}, timeout=10)

    cases = {
        "expired": (hs256({"sub": "carol", "scope": "mcp", "exp": int(time.time()) - 600}), "expired"),
        "wrong audience": (hs256({"sub": "carol", "scope": "mcp", "aud": "someone-else"}), "audience"),
        "wrong issuer": (hs256({"sub": "carol", "scope": "mcp", "iss": "https://evil.example"}), "issuer"),
        "wrong secret": (hs256({"sub": "carol", "scope": "mcp"}, secret="not-the-secret-at-all-0123456789abcdef"), "verification"),
    }
    for what, (bad, says) in cases.items():
        r = refused(bad)
        assert r.status_code == 401, (what, r.text)
        assert r.json()["error"]["code"] == -32001
        assert says in r.json()["error"]["message"].lower(), (what, r.text)
    # A client cannot hand the filter a payload of its own: Envoy drops the
    # header before jwt_authn, which writes it only for a verified token.
    import base64

    forged = base64.urlsafe_b64encode(json.dumps({"sub": "carol", "groups": ["dev"], "scope": "mcp"}).encode()).decode().rstrip("=")
    r = httpx.post(gateway.url, content=init, headers={**HEADERS, **bearer("not.a.jwt"), "x-mcp-jwt-payload": forged}, timeout=10)
    assert r.status_code == 401, r.text
    # A valid token without the required scope: 403 and the scope challenge.
    r = refused(hs256({"sub": "carol", "scope": "other"}))
    assert r.status_code == 403, r.text
    challenge = r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="mcp"' in challenge


def test_oauth_clients_find_the_protected_resource_metadata(gateway, secured):
    r = httpx.post(gateway.url, content=jsonrpc("ping"), headers=HEADERS, timeout=10)
    assert r.status_code == 401
    metadata_url = r.headers["www-authenticate"].split('resource_metadata="')[1].split('"')[0]
    assert metadata_url == f"{gateway.base}/.well-known/oauth-protected-resource/mcp"
    doc = httpx.get(metadata_url, timeout=10).json()
    assert doc == {"resource": gateway.url, "authorization_servers": [ISSUER], "bearer_methods_supported": ["header"], "scopes_supported": ["mcp"]}


def test_upstreams_get_their_own_credentials_not_the_clients(gateway, secured):
    alice = Keyed(gateway.url, bearer(ALICE))
    alice.initialize()
    vault_token = GATEWAY_SECRETS["VAULT_TOKEN"]
    assert alice.call("vault__authorization")["result"]["content"][0]["text"] == f"Bearer {vault_token}"
    assert alice.call("vault__whoami")["result"]["content"][0]["text"] == "vault"
    # Only the server configured for it sees the client's own header.
    assert alice.call("relay__authorization")["result"]["content"][0]["text"] == f"Bearer {ALICE}"
    # The JWT payload header Envoy adds never leaves the gateway either.
    carol = Keyed(gateway.url, bearer(hs256({"sub": "carol", "groups": ["dev"], "scope": "mcp"})))
    carol.initialize()
    assert carol.call("vault__authorization")["result"]["content"][0]["text"] == f"Bearer {vault_token}"


def test_only_listed_origins_may_call(gateway, secured):
    ping = jsonrpc("ping")
    evil = httpx.post(gateway.url, content=ping, headers={**HEADERS, **bearer(ALICE), "origin": "http://evil.example:4444"}, timeout=10)
    assert evil.status_code == 403
    assert "allowed_origins" in evil.json()["error"]["message"]
    ok = httpx.post(gateway.url, content=ping, headers={**HEADERS, **bearer(ALICE), "origin": "https://app.example"}, timeout=10)
    assert ok.status_code == 200, ok.text


def test_a_loopback_gateway_refuses_foreign_host_names(gateway, secured):
    """DNS rebinding: a page whose name resolves to the gateway's loopback
    address sends its own name as Host, with or without an Origin. The
    gateway listens on 127.0.0.1, so only loopback names may be used, on the
    MCP endpoint and the operator's pages alike; its own origin passes."""
    init = jsonrpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}})
    port = gateway.ports["listen"]
    for host, origin in (("evil.example.com", None), (f"evil.example.com:{port}", f"http://evil.example.com:{port}"), ("10.1.2.3", None)):
        headers = {**HEADERS, "host": host, **({"origin": origin} if origin else {})}
        r = httpx.post(gateway.url, content=init, headers=headers, timeout=10)
        assert r.status_code == 421, (host, r.status_code, r.text)
        assert r.json()["error"]["code"] == -32600 and "DNS rebinding" in r.json()["error"]["message"]
        assert httpx.get(f"{gateway.base}/servers", headers={"host": host}, timeout=10).status_code == 421
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        r = httpx.post(gateway.url, content=init, headers={**HEADERS, **bearer(ALICE), "host": host, "origin": f"http://{host}"}, timeout=10)
        assert r.status_code == 200, (host, r.text)


def test_a_rate_limit_holds_across_envoys_workers(gateway, secured):
    """Four clients on their own connections (Envoy runs two workers) call
    as fast as they can for 10 s; the number let through must be the burst
    plus the rate over the time they called, within 5%."""
    # Wait out anything earlier tests took from the bucket.
    time.sleep(WHOAMI_BURST * 60 / WHOAMI_PER_MINUTE)
    body = jsonrpc("tools/call", {"name": "echo__whoami", "arguments": {}}, id=9)
    seen = saturate(gateway.url, bearer(ALICE), body, seconds=10.0, clients=4)
    expected = seen.expected(WHOAMI_PER_MINUTE, WHOAMI_BURST)
    print(f"rate limit: let through {seen.allowed} in {seen.elapsed:.2f} s, expected {expected:.1f}; refused {seen.refused}")
    assert seen.refused > seen.allowed, "the clients did not push past the limit; the test proves nothing"
    assert abs(seen.allowed - expected) <= 0.05 * expected, f"let through {seen.allowed}, expected {expected:.1f} (refused {seen.refused})"
    assert seen.sample["id"] == 9 and seen.sample["error"]["code"] == -32029
    assert seen.sample["error"]["data"]["limit"] == "whoami"
    assert int(seen.sample["retry-after"]) >= 1


def test_state_changing_admin_endpoints_need_an_admin_key(gateway, secured):
    reload = f"{gateway.cp_admin}/admin/reload"
    for headers in ({}, bearer(ALICE), {"x-api-key": BOB}):
        r = httpx.post(reload, headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.text)
        assert "admin_groups" in r.json()["error"]
    assert httpx.post(f"{gateway.cp_admin}/servers/relay/restart", timeout=10).status_code == 401
    r = httpx.post(reload, headers=bearer(OPS), timeout=30)
    assert r.status_code == 200, r.text
    # Reading stays open to the operator's monitoring.
    assert httpx.get(f"{gateway.cp_admin}/servers", timeout=10).status_code == 200


def test_an_admin_signed_in_with_a_jwt_reads_the_consoles_state_through_the_gateway(gateway, secured):
    """The control plane knows the API keys, not the JWTs: the filter checks
    the admin's token and forwards the read with its internal token."""
    state = f"{gateway.base}/console/state"
    admin = hs256({"sub": "dana", "groups": ["admin"], "scope": "mcp"})
    r = httpx.get(state, headers=bearer(admin), timeout=10)
    assert r.status_code == 200, r.text
    assert {"echo", "vault"} <= {s["name"] for s in r.json()["servers"]}
    guest = hs256({"sub": "carol", "groups": ["guests"], "scope": "mcp"})
    assert httpx.get(state, headers=bearer(guest), timeout=10).status_code == 403
    # On the admin port, the control plane asks for an admin key itself.
    assert httpx.get(f"{gateway.cp_admin}/console/state", timeout=10).status_code == 401
    assert httpx.get(f"{gateway.cp_admin}/console/state", headers=bearer(OPS), timeout=10).status_code == 200


def test_the_control_planes_internal_endpoints_take_only_the_filter(gateway, secured):
    """The era bridge, the runtimes' pipes and the GET streams answer only
    requests that came through the filter (which checked the client): a
    caller on the admin port without the filter's token gets 403."""
    call = jsonrpc("tools/call", {"name": "whoami", "arguments": {}})
    for path in ("/mcp-bridge/echo", "/upstream/echo/mcp"):
        r = httpx.post(f"{gateway.cp_admin}{path}", content=call, headers={**HEADERS, **bearer(ALICE)}, timeout=10)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == -32003
    r = httpx.get(f"{gateway.cp_admin}/mcp-events", headers={"accept": "text/event-stream"}, timeout=10)
    assert r.status_code == 403
    # Through the gateway, the same bridge serves a 2026-07-28 client.
    modern = {**HEADERS, **bearer(ALICE), "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "echo__whoami"}
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}, "io.modelcontextprotocol/clientCapabilities": {}}
    r = httpx.post(gateway.url, content=jsonrpc("tools/call", {"name": "echo__whoami", "arguments": {}, "_meta": meta}), headers=modern, timeout=30)
    assert r.status_code == 200, r.text


@pytest.fixture
def rsa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "e2e-rs", "alg": "RS256", "use": "sig"})
    return key, {"keys": [jwk]}


def rs256(key, claims: dict) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **claims}, key, algorithm="RS256", headers={"kid": "e2e-rs"})


def test_rs256_tokens_from_a_jwks_file_then_a_jwks_url(gateway, secured, rsa_key):
    key, jwks = rsa_key
    jwks_path = Path(gateway.workdir) / "jwks.json"
    jwks_path.write_text(json.dumps(jwks))
    settings = json.loads(json.dumps(secured["settings"]))
    jwt_settings = settings["auth"]["jwt"]
    del jwt_settings["hs256_secret"]
    jwt_settings["jwks_file"] = str(jwks_path)
    gateway.write_catalog_and_wait(secured["servers"], "RS256 keys from a file", **settings)
    token = rs256(key, {"sub": "dave", "groups": ["guests"], "scope": "mcp"})
    assert tools_seen(gateway.url, bearer(token)) == {"echo__echo", "echo__add"}
    # The HS256 secret is no longer a key: its tokens are refused.
    r = httpx.post(gateway.url, content=jsonrpc("ping"), headers={**HEADERS, **bearer(hs256({"sub": "carol", "scope": "mcp"}))}, timeout=10)
    assert r.status_code == 401, r.text

    # The same keys served over HTTP, fetched and cached by Envoy.
    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(jwks).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Jwks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        del jwt_settings["jwks_file"]
        jwt_settings["jwks_uri"] = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        gateway.write_catalog_and_wait(secured["servers"], "RS256 keys from a URL", **settings)
        token = rs256(key, {"sub": "dave", "groups": ["dev"], "scope": "mcp"})
        assert "vault__whoami" in tools_seen(gateway.url, bearer(token))
    finally:
        server.shutdown()
        gateway.write_catalog_and_wait(secured["servers"], "the secured catalog back", **secured["settings"])
