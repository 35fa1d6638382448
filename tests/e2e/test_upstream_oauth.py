"""The gateway's own OAuth tokens for upstream servers (issue 21).

A real token endpoint (tests/e2e/oauth_server.py: client credentials,
expiry, refusal) and an upstream that accepts only tokens it issued for its
audience (the rmcp echo server with --require-jwt-audience, which records
every Authorization header it receives). The catalog gives a server
`oauth:`; the control plane gets the token and keeps it fresh, Envoy adds it
to every request to that server over SDS, and the caller's own JWT never
reaches the server. A refused client shows in /servers and the metrics, and
calls to that server get a JSON-RPC error naming it while the others work.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import BASE_SERVERS, GATEWAY_SECRETS, HEADERS, free_port, jsonrpc, parse_answer, wait_until

SIGNING = "e2e-oauth-signing-secret-0123456789abcdef"
CLIENT_SECRET = "e2e-client-secret-for-the-gateway"
AUDIENCE = "crm"


class AuthServer:
    """The test's authorization server, and its test-control endpoints."""

    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.token_url = f"{self.url}/token"

    def admin(self, path: str, body: dict | None = None):
        if body is None:
            return httpx.get(f"{self.url}/admin/{path}", timeout=10).json()
        r = httpx.post(f"{self.url}/admin/{path}", json=body, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def issued(self, client: str = "gateway") -> list[dict]:
        return [t for t in self.admin("issued") if t.get("client_id") == client and t.get("outcome") == "issued"]

    def user_token(self, sub: str) -> str:
        return self.admin("mint", {"sub": sub, "aud": "mcp-gateway", "ttl": 600})["token"]


@pytest.fixture(scope="module")
def oauth(gateway):
    """The authorization server, and the upstream that trusts it."""
    as_port, crm_port = free_port(), free_port()
    gateway.start("oauth-server", [sys.executable, str(Path(__file__).parent / "oauth_server.py"),
                                   "--port", str(as_port), "--signing-secret", SIGNING, "--client", f"gateway:{CLIENT_SECRET}"])
    wait_until("the authorization server", lambda: httpx.get(f"http://127.0.0.1:{as_port}/.well-known/oauth-authorization-server", timeout=1).status_code == 200)
    server = AuthServer(as_port)
    record = gateway.workdir / "crm-auth.log"
    gateway.echo_server("crm", crm_port, "/mcp", "--show-auth", "--require-jwt-audience", AUDIENCE, "--jwt-hs256-secret", SIGNING,
                        "--jwt-issuer", server.url, "--record-auth", str(record))
    yield server, crm_port, record
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")
    gateway.stop("crm")
    gateway.stop("oauth-server")


def crm_server(port: int, server: AuthServer, **oauth) -> dict:
    settings = {"token_url": server.token_url, "client_id": "gateway", "client_secret": CLIENT_SECRET, "audience": AUDIENCE, "scopes": ["crm.read"], **oauth}
    return {"name": "crm", "url": f"http://127.0.0.1:{port}/mcp", "oauth": settings}


def jwt_auth(server: AuthServer) -> dict:
    """Callers authenticate with JWTs from the same issuer."""
    return {"jwt": {"issuer": server.url, "audiences": ["mcp-gateway"], "hs256_secret": SIGNING}}


def credential(gateway) -> dict:
    crm = next(s for s in gateway.admin("/servers")["servers"] if s["name"] == "crm")
    return crm.get("credential", {}) | {"server_state": crm["state"]}


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def call(gateway, caller: str, tool: str, arguments: dict) -> dict:
    """One 2026-07-28 tools/call as `caller`: its answer."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "0"},
            "io.modelcontextprotocol/clientCapabilities": {}}
    headers = {**HEADERS, "authorization": f"Bearer {caller}", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": tool}
    body = jsonrpc("tools/call", {"name": tool, "arguments": arguments, "_meta": meta})
    return parse_answer(httpx.post(gateway.url, content=body, headers=headers, timeout=30))


def sdk_call(gateway, caller: str, tool: str, arguments: dict) -> str:
    """The same through the official Python SDK in its default (handshake) mode."""

    async def session():
        transport = streamable_http_client(gateway.url, http_client=httpx2.AsyncClient(headers={"authorization": f"Bearer {caller}"}, timeout=30))
        async with Client(transport, mode="legacy") as c:
            return (await c.call_tool(tool, arguments)).content[0].text

    return asyncio.run(session())


def ready_with_token(gateway) -> bool:
    c = credential(gateway)
    return c.get("state") == "valid" and c["server_state"] == "ready"


def test_the_upstream_gets_the_gateways_token_never_the_callers(gateway, oauth):
    server, port, record = oauth
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports) + [crm_server(port, server)], "a server with oauth", auth=jwt_auth(server))
    wait_until("the gateway holding a token and the server discovered with it", lambda: ready_with_token(gateway), timeout=60)
    c = credential(gateway)
    assert c["grant"] == "client_credentials" and c["token_url"] == server.token_url and c["refreshes"] >= 1, c
    wait_until("Envoy serving crm's tools", lambda: "result" in call(gateway, server.user_token("alice"), "crm__echo", {"text": "hi"}), timeout=30)

    alice = server.user_token("alice")
    for answer in (call(gateway, alice, "crm__token_claims", {}), {"result": {"content": [{"text": sdk_call(gateway, alice, "crm__token_claims", {})}]}}):
        got = json.loads(answer["result"]["content"][0]["text"])
        assert got["aud"] == AUDIENCE and got["sub"] == "gateway" and got["client_id"] == "gateway", got
        assert got["scope"] == "crm.read", got
    shown = call(gateway, alice, "crm__authorization", {})["result"]["content"][0]["text"]
    assert shown.startswith("Bearer ") and claims(shown.removeprefix("Bearer "))["aud"] == AUDIENCE, shown

    # What reached the upstream: the gateway's tokens only (before the first
    # token, discovery's unauthenticated tries), never a caller's JWT.
    received = record.read_text().splitlines()
    assert received, "the upstream recorded nothing"
    assert not any(alice in line for line in received), "the caller's token reached the upstream"
    assert all(line == "-" or claims(line.removeprefix("Bearer "))["iss"] == server.url and claims(line.removeprefix("Bearer "))["sub"] == "gateway" for line in received), received
    # The token is not in Envoy's view of the filter's configuration, and the
    # client secret is nowhere Envoy can show.
    dump = httpx.get(f"{gateway.envoy_admin}/config_dump", timeout=10).text
    token = shown.removeprefix("Bearer ")
    assert token not in dump and CLIENT_SECRET not in dump
    assert CLIENT_SECRET not in json.dumps(gateway.admin("/servers"))


def test_a_token_about_to_expire_is_replaced_and_calls_keep_working(gateway, oauth):
    server, port, _ = oauth
    server.admin("ttl", {"seconds": 6})
    try:
        # A changed registration (another scope) gets a token at once, with the short life.
        gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports) + [crm_server(port, server, scopes=["crm.read", "crm.write"])], "a short-lived token", auth=jwt_auth(server))
        wait_until("a token for the new scopes", lambda: ready_with_token(gateway) and any(t.get("scope") == "crm.read crm.write" for t in server.issued()), timeout=60)
        alice = server.user_token("alice")
        seen: set[str] = set()
        failed: list[dict] = []

        def refreshed() -> bool:
            answer = call(gateway, alice, "crm__token_claims", {})
            if "result" not in answer:
                failed.append(answer)  # wait_until retries on exceptions: record, then assert after
                return False
            got = json.loads(answer["result"]["content"][0]["text"])
            if got["scope"] == "crm.read crm.write":  # not the last token of the registration before
                seen.add(got["jti"])
            return len(seen) >= 3

        wait_until("calls carrying three successive tokens", refreshed, timeout=90, interval=0.5)
        assert not failed, f"calls failed while the token was renewed: {failed[:3]}"
        assert credential(gateway)["refreshes"] >= 3
    finally:
        server.admin("ttl", {"seconds": 3600})


def test_a_refused_client_shows_in_servers_and_its_calls_say_so(gateway, oauth):
    server, port, _ = oauth
    server.admin("ttl", {"seconds": 4})
    try:
        gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports) + [crm_server(port, server, scopes=["crm.admin"])], "a short-lived token", auth=jwt_auth(server))
        wait_until("a token", lambda: ready_with_token(gateway) and any(t.get("scope") == "crm.admin" for t in server.issued()), timeout=60)
        server.admin("revoke", {"client_id": "gateway"})
        wait_until("the refusal in /servers once the token expired", lambda: credential(gateway).get("state") == "failed", timeout=60)
        c = credential(gateway)
        assert "invalid_client" in c["last_error"] and server.token_url in c["last_error"], c
        assert CLIENT_SECRET not in json.dumps(c)

        alice = server.user_token("alice")

        def refused() -> dict | None:
            # Until the configuration without a token arrives, crm itself refuses
            # the expired token, and the error says that instead.
            answer = call(gateway, alice, "crm__echo", {"text": "x"})
            return answer if "invalid_client" in answer.get("error", {}).get("message", "") else None

        answer = wait_until("Envoy refusing calls to crm", refused, timeout=30)
        error = answer["error"]
        assert error["code"] == -32603 and "'crm'" in error["message"] and "invalid_client" in error["message"], error
        assert "servers[].oauth" in error["message"], error
        # The other servers keep working.
        assert call(gateway, alice, "echo__add", {"a": 2, "b": 3})["result"]["content"][0]["text"] == "5"

        metrics = httpx.get(f"{gateway.cp_admin}/metrics", timeout=10).text
        assert 'mcp_gateway_upstream_credential_valid{server="crm"} 0' in metrics, metrics
        errors = next(line for line in metrics.splitlines() if line.startswith('mcp_gateway_upstream_credential_refreshes_total{server="crm",result="error"}'))
        assert int(errors.rsplit(" ", 1)[1]) >= 1
        log = gateway.procs["control-plane"].log.read_text()
        assert "could not get an OAuth token for the server" in log and CLIENT_SECRET not in log

        # The client is let in again: the gateway recovers by itself.
        server.admin("clients", {"client_id": "gateway", "client_secret": CLIENT_SECRET})
        wait_until("a token again", lambda: ready_with_token(gateway), timeout=90)
        wait_until("calls to crm served again", lambda: "result" in call(gateway, alice, "crm__echo", {"text": "back"}), timeout=30)
    finally:
        server.admin("clients", {"client_id": "gateway", "client_secret": CLIENT_SECRET})
        server.admin("ttl", {"seconds": 3600})


def test_the_token_endpoint_is_found_from_the_servers_own_metadata(gateway, oauth):
    """RFC 9728 then RFC 8414: the catalog gives only the client's registration."""
    server, _, _ = oauth
    port = free_port()
    resource = f"http://127.0.0.1:{port}/mcp"
    gateway.echo_server("billing", port, "/mcp", "--require-jwt-audience", resource, "--jwt-hs256-secret", SIGNING,
                        "--jwt-issuer", server.url, "--resource-metadata-as", server.url)
    try:
        # A pinned issuer the server does not name: refused before any secret is sent.
        pinned = {"client_id": "gateway", "client_secret": CLIENT_SECRET, "client_auth": "post", "issuer": "https://as.elsewhere.example"}
        gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports) + [{"name": "billing", "url": resource, "oauth": pinned}], "a wrong issuer pin", auth=jwt_auth(server))

        def refused_pin() -> bool:
            s = next(s for s in gateway.admin("/servers")["servers"] if s["name"] == "billing")
            return "not oauth.issuer https://as.elsewhere.example" in (s.get("credential", {}).get("last_error") or "")

        wait_until("the wrong issuer refused", refused_pin, timeout=30)
        assert not [t for t in server.admin("issued") if t.get("aud") == resource], "a token was asked for with a wrong issuer"

        billing = {"name": "billing", "url": resource, "oauth": {**pinned, "issuer": server.url}}
        gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports) + [billing], "a server whose token endpoint is discovered", auth=jwt_auth(server))

        def found() -> dict | None:
            s = next(s for s in gateway.admin("/servers")["servers"] if s["name"] == "billing")
            return s if s.get("credential", {}).get("state") == "valid" and s["state"] == "ready" else None

        status = wait_until("billing discovered, with a token for it", found, timeout=60)
        assert status["credential"]["token_url"] == server.token_url, status
        # The token names the server's resource identifier as its audience (RFC 8707).
        assert any(t.get("aud") == resource for t in server.issued()), server.issued()
        alice = server.user_token("alice")
        answer = wait_until("a call through Envoy", lambda: "result" in (a := call(gateway, alice, "billing__token_claims", {})) and a, timeout=30)
        assert json.loads(answer["result"]["content"][0]["text"])["aud"] == resource
    finally:
        gateway.stop("billing")


def test_a_rotated_client_secret_file_is_used_without_a_restart(gateway, oauth):
    """The client secret as `${file:...}` (a Kubernetes Secret, a Vault agent's file):
    the authorization server rotates it, the file follows, the gateway follows the file."""
    server, port, _ = oauth
    secret_file = gateway.workdir / "crm-client-secret"
    secret_file.write_text(CLIENT_SECRET + "\n")
    rotated = "e2e-rotated-client-secret-0002"
    try:
        gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports) + [crm_server(port, server, client_secret=f"${{file:{secret_file}}}", scopes=["crm.files"])],
                                       "a client secret from a file", auth=jwt_auth(server))
        wait_until("a token got with the secret from the file", lambda: ready_with_token(gateway) and any(t.get("scope") == "crm.files" for t in server.issued()), timeout=60)
        before = len(server.issued())

        server.admin("clients", {"client_id": "gateway", "client_secret": rotated})
        tmp = secret_file.with_suffix(".tmp")
        tmp.write_text(rotated + "\n")
        tmp.replace(secret_file)
        wait_until("a token got with the rotated secret", lambda: len(server.issued()) > before and ready_with_token(gateway), timeout=60)
        alice = server.user_token("alice")
        assert "result" in call(gateway, alice, "crm__echo", {"text": "rotated"})
        assert rotated not in json.dumps(gateway.admin("/servers")) and rotated not in gateway.procs["control-plane"].log.read_text()
    finally:
        server.admin("clients", {"client_id": "gateway", "client_secret": CLIENT_SECRET})


EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


def test_each_caller_reaches_the_server_as_themselves_through_token_exchange(gateway, oauth):
    """RFC 8693: the caller's JWT is exchanged for a token of the server's; the
    server sees the caller (sub) with the gateway as actor (act), never the JWT."""
    server, port, record = oauth
    auth = {**jwt_auth(server), "api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "robot", "groups": ["dev"]}]}
    crm = crm_server(port, server, grant="token_exchange", scopes=["crm.user"])
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports) + [crm], "a server taking each caller's own token", auth=auth)
    wait_until("crm discovered with the gateway's own token", lambda: credential(gateway)["server_state"] == "ready" and credential(gateway).get("grant") == "token_exchange", timeout=60)
    key = GATEWAY_SECRETS["MCP_GATEWAY_API_KEY"]
    # Only this catalog refuses an API key at crm: Envoy runs it.
    wait_until("Envoy serving the token-exchange catalog", lambda: "no verified JWT" in call(gateway, key, "crm__echo", {"text": "x"}).get("error", {}).get("message", ""), timeout=30)
    alice, bob = server.user_token("alice"), server.user_token("bob")
    record.write_text("")

    def claims_as(token: str) -> dict:
        answer = wait_until("a call through Envoy", lambda: "result" in (a := call(gateway, token, "crm__token_claims", {})) and a, timeout=30)
        return json.loads(answer["result"]["content"][0]["text"])

    got_alice, got_bob = claims_as(alice), claims_as(bob)
    assert (got_alice["sub"], got_alice["aud"], got_alice["act"]) == ("alice", AUDIENCE, {"sub": "gateway"}), got_alice
    assert got_bob["sub"] == "bob" and got_bob["jti"] != got_alice["jti"], got_bob
    # The official SDK's default handshake: its session opens crm on first use, as alice.
    assert json.loads(sdk_call(gateway, alice, "crm__token_claims", {}))["sub"] == "alice"
    for _ in range(4):
        assert claims_as(alice)["sub"] == "alice"

    # One exchange per caller token, however many calls and workers.
    exchanges = [t for t in server.issued() if t["grant"] == EXCHANGE]
    assert sorted(t["sub"] for t in exchanges) == ["alice", "bob"], exchanges
    assert credential(gateway)["exchanges"]["ok"] == 2, credential(gateway)
    metrics = httpx.get(f"{gateway.cp_admin}/metrics", timeout=10).text
    assert 'mcp_gateway_upstream_token_exchanges_total{server="crm",result="ok"} 2' in metrics
    received = record.read_text().splitlines()
    assert received and not any(alice in line or bob in line for line in received), "a caller's own token reached the upstream"
    subjects = {claims(line.removeprefix("Bearer "))["sub"] for line in received if line != "-"}
    assert {"alice", "bob"} <= subjects, subjects

    # An API key names nobody the authorization server knows: refused, naming the server.
    refused = call(gateway, key, "crm__echo", {"text": "x"})["error"]
    assert refused["code"] == -32603 and "'crm'" in refused["message"] and "no verified JWT" in refused["message"], refused
    assert call(gateway, key, "echo__add", {"a": 1, "b": 1})["result"]["content"][0]["text"] == "2"

    # An exchange the authorization server refuses says so; cached callers go on.
    server.admin("revoke", {"client_id": "gateway"})
    try:
        carol = server.user_token("carol")
        error = call(gateway, carol, "crm__echo", {"text": "x"})["error"]
        assert error["code"] == -32603 and "'crm'" in error["message"] and "invalid_client" in error["message"], error
        assert CLIENT_SECRET not in error["message"] and carol not in error["message"]
        assert claims_as(alice)["sub"] == "alice"
    finally:
        server.admin("clients", {"client_id": "gateway", "client_secret": CLIENT_SECRET})
