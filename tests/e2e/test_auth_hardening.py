"""The smaller holes of issue 18, each attacked through the real Envoy:
a JWT without `exp` (refused unless the catalog says otherwise), a JWKS URL
over plain http (refused by validation unless on loopback), the bearer
scheme in any case (the filter and Envoy's jwt_authn agree), `Mcp-Method` and
`Mcp-Name` that disagree with a notification or a completion, and a
client-sent discovery mark (which the control plane's runtimes read)."""

import subprocess
import time

import httpx
import jwt
import pytest

from conftest import BASE_SERVERS, GATEWAY_SECRETS, HEADERS, TARGET, RawSession, free_port, jsonrpc

ISSUER = "https://idp.hardening.example"
AUDIENCE = "mcp-gateway-hardening"
KEY = "e2e-hardening-key-3c9d0e7a"
JWT_SETTINGS = {"issuer": ISSUER, "audiences": [AUDIENCE], "hs256_secret": "${JWT_SECRET}"}


def token(claims: dict | None = None, expires: bool = True) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "carol", "iat": now, **({"exp": now + 300} if expires else {}), **(claims or {})}
    return jwt.encode(body, GATEWAY_SECRETS["JWT_SECRET"], algorithm="HS256")


@pytest.fixture(scope="module")
def hardened(gateway):
    """The base servers and `shows`, an echo server that tells which headers
    reached it; API keys and HS256 JWTs; a rule that lets JWT callers of
    group `dev` (and the key's principal) see only echo's `add`."""
    port = free_port()
    gateway.echo_server("shows", port, "/mcp", "--show-auth")
    servers = BASE_SERVERS(gateway.ports) + [{"name": "shows", "url": f"http://127.0.0.1:{port}/mcp"}]
    settings = {
        "auth": {"api_keys": [{"key": KEY, "principal": "dave", "groups": ["dev"]}], "jwt": JWT_SETTINGS},
        "authorization": {"rules": [{"name": "devs", "groups": ["dev"], "allow": {"tools": ["echo__add", "shows__header"]}}]},
    }
    gateway.write_catalog_and_wait(servers, "the hardening catalog", **settings)
    yield {"servers": servers, "settings": settings}
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")
    gateway.stop("shows")


def init(gateway, headers: dict) -> httpx.Response:
    body = jsonrpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}})
    return httpx.post(gateway.url, content=body, headers={**HEADERS, **headers}, timeout=10)


class Caller(RawSession):
    def __init__(self, url: str, headers: dict):
        super().__init__(url)
        self.http.headers.update(headers)


def test_a_jwt_without_exp_is_refused(gateway, hardened):
    good = init(gateway, {"authorization": f"Bearer {token({'groups': ['dev']})}"})
    assert good.status_code == 200, good.text
    forever = init(gateway, {"authorization": f"Bearer {token({'groups': ['dev']}, expires=False)}"})
    assert forever.status_code == 401, forever.text
    error = forever.json()["error"]
    assert error["code"] == -32001 and "the bearer token was refused" in error["message"], error
    assert forever.headers["www-authenticate"].startswith("Bearer")


def test_a_catalog_may_accept_tokens_without_exp(gateway, hardened):
    settings = {**hardened["settings"], "auth": {**hardened["settings"]["auth"], "jwt": {**JWT_SETTINGS, "require_expiration": False}}}
    gateway.write_catalog_and_wait(hardened["servers"], "tokens without exp accepted", **settings)
    try:
        forever = init(gateway, {"authorization": f"Bearer {token({'groups': ['dev']}, expires=False)}"})
        assert forever.status_code == 200, forever.text
    finally:
        gateway.write_catalog_and_wait(hardened["servers"], "the hardening catalog back", **hardened["settings"])


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_read_in_any_case_by_both_checks(gateway, hardened, scheme):
    # A JWT, verified by Envoy's jwt_authn, names its caller, whose rule shows one tool...
    jwt_caller = Caller(gateway.url, {"authorization": f"{scheme} {token({'groups': ['dev']})}"})
    jwt_caller.initialize()
    assert jwt_caller.tool_names() == {"echo__add", "shows__header"}
    assert jwt_caller.request("tools/call", {"name": "echo__add", "arguments": {"a": 1, "b": 2}})["result"]["content"][0]["text"] == "3"
    # ...and so does an API key, read by the filter.
    key_caller = Caller(gateway.url, {"authorization": f"{scheme} {KEY}"})
    key_caller.initialize()
    assert key_caller.tool_names() == {"echo__add", "shows__header"}
    # A token that fails is refused with Envoy's reason, whatever the case
    # (past Envoy's 60 s of clock skew).
    expired = token({"groups": ["dev"], "exp": int(time.time()) - 600})
    r = init(gateway, {"authorization": f"{scheme} {expired}"})
    assert r.status_code == 401 and "Jwt is expired" in r.json()["error"]["message"], r.text


def test_a_valid_jwt_under_another_scheme_names_no_one(gateway, hardened):
    good = token({"groups": ["dev"]})
    for headers in ({"authorization": f"Basic {good}"}, {"authorization": f"DPoP {good}", "x-api-key": "not-a-key-000000000"}):
        r = init(gateway, headers)
        assert (r.status_code, r.json()["error"]["code"]) == (401, -32001), (headers, r.text)


def test_mcp_headers_must_agree_with_notifications_and_completions(gateway, hardened):
    s = Caller(gateway.url, {"x-api-key": KEY})
    s.initialize()
    cancelled = jsonrpc("notifications/cancelled", {"requestId": 1}, id=None)
    r = s.post(cancelled, {"mcp-method": "tools/call"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, -32020), r.text
    assert s.post(cancelled, {"mcp-method": "notifications/cancelled"}).status_code == 202
    completion = jsonrpc(
        "completion/complete",
        {"ref": {"type": "ref/resource", "uri": "demo://resource/dynamic/text/{resourceId}"}, "argument": {"name": "resourceId", "value": "1"}},
        id=5,
    )
    for headers in ({"mcp-method": "tools/call"}, {"mcp-name": "demo://resource/dynamic/blob/{resourceId}"}):
        r = s.post(completion, headers)
        assert (r.status_code, r.json()["error"]["code"]) == (400, -32020), (headers, r.text)


def test_a_client_cannot_send_the_discovery_mark_or_its_own_mcp_headers_upstream(gateway, hardened):
    s = Caller(gateway.url, {"x-api-key": KEY})
    s.initialize()

    def seen(header: str, extra: dict) -> str:
        body = jsonrpc("tools/call", {"name": "shows__header", "arguments": {"name": header}}, id=7)
        answer = s.post(body, extra).json()
        return answer["result"]["content"][0]["text"]

    assert seen("x-mcp-gateway-discovery", {"x-mcp-gateway-discovery": "1"}) == "none"
    # Mcp-Name is checked against the body and rewritten to the server's own name.
    assert seen("mcp-name", {"mcp-name": "shows__header", "mcp-method": "tools/call"}) == "header"
    assert seen("mcp-method", {"mcp-method": "tools/call"}) == "tools/call"


def test_a_jwks_url_over_plain_http_fails_validation_unless_on_loopback(tmp_path):
    def validate(uri: str) -> subprocess.CompletedProcess:
        path = tmp_path / "catalog.yaml"
        path.write_text(f"gateway:\n  auth:\n    jwt: {{issuer: {ISSUER}, jwks_uri: '{uri}'}}\nservers: []\n")
        return subprocess.run([str(TARGET / "mcp-gateway"), "--validate", str(path)], capture_output=True, text=True, timeout=30)

    plain = validate("http://idp.example/.well-known/jwks.json")
    assert plain.returncode != 0
    assert "is plain http, so anyone on the path could swap the keys and forge tokens: use https://" in plain.stdout + plain.stderr
    for uri in ("https://idp.example/.well-known/jwks.json", "http://127.0.0.1:8080/jwks.json", "http://localhost/jwks.json"):
        done = validate(uri)
        assert done.returncode == 0, (uri, done.stdout, done.stderr)
