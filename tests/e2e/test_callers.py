"""Callers kept apart (issue 18): a session is its caller's alone, a DELETE
ends it, a caller's session, notifications and answers reach only the
servers its rules let it use, and every request the filter handles takes
from the rate limits, by what it sends upstream: GET streams, DELETEs,
initialize's fan-out, and refusals for bad credentials (by source address).

Each attack is made with two real API-key callers against the real echo
server and server-everything; "reached" is read off Envoy's per-cluster
request counters and the audit log."""

import json
from pathlib import Path

import httpx
import pytest

from conftest import BASE_SERVERS, GATEWAY_SECRETS, HEADERS, RawSession, jsonrpc, wait_until

ALICE = GATEWAY_SECRETS["MCP_GATEWAY_API_KEY"]  # group dev: every server
BOB = "e2e-bob-key-0f9a7c31d2"  # group guests: echo__echo only
# Callers of the tight limit below, one per test so the buckets do not mix.
TIGHT = {name: f"e2e-{name}-key-5d1e0b77c4" for name in ("rl-delete", "rl-get", "rl-init")}
TIGHT_BURST = 10
EVERYONE_BURST = 40


@pytest.fixture(scope="module")
def callers(gateway):
    audit = Path(gateway.workdir) / "callers-audit.log"
    settings = {
        "auth": {
            "api_keys": [
                {"key": "${MCP_GATEWAY_API_KEY}", "principal": "alice", "groups": ["dev"]},
                {"key": BOB, "principal": "bob", "groups": ["guests"]},
            ]
            + [{"key": key, "principal": name, "groups": ["dev"]} for name, key in TIGHT.items()],
        },
        "authorization": {
            "rules": [
                {"name": "devs", "groups": ["dev"], "allow": {"servers": ["*"]}},
                {"name": "guests", "groups": ["guests"], "allow": {"tools": ["echo__echo"]}},
            ]
        },
        "rate_limits": [
            # One token a minute: what a test spends is not refilled while it runs.
            {"name": "tight", "per": ["principal"], "principals": ["rl-*"], "requests_per_minute": 1, "burst": TIGHT_BURST},
            # Every caller, and every source address refused for its credentials.
            {"name": "everyone", "per": ["principal"], "requests_per_minute": 1, "burst": EVERYONE_BURST},
        ],
        "audit_log": str(audit),
    }
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "two callers and tight limits", **settings)
    wait_until("echo and everything discovered", lambda: gateway.servers_ready({"echo", "everything"}))
    yield {"audit": audit}
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")


class Caller(RawSession):
    def __init__(self, url: str, key: str):
        super().__init__(url)
        self.http.headers.update({"authorization": f"Bearer {key}"})


def upstream_requests(gateway) -> dict[str, int]:
    return {name: gateway.envoy_stat(f"cluster.mcp_{name}.upstream_rq_total") for name in ("echo", "everything")}


def test_another_callers_session_is_unknown_to_it(gateway, callers):
    alice = Caller(gateway.url, ALICE)
    alice.initialize()
    assert "everything__echo" in alice.tool_names()
    bob = Caller(gateway.url, BOB)
    bob.session_id = alice.session_id
    # Bob, with a valid key of his own, presents alice's session id: 404, as
    # a forged id gets, for a list, a call, a GET stream and a DELETE.
    listed = bob.post(jsonrpc("tools/list"))
    forged = bob.post(jsonrpc("tools/list"), headers={"mcp-session-id": alice.session_id[:-4] + "AAAA"})
    assert listed.status_code == 404, listed.text
    assert listed.json()["error"] == forged.json()["error"], "another caller's session must look like a forged one"
    assert bob.post(jsonrpc("tools/call", {"name": "echo__echo", "arguments": {"text": "x"}})).status_code == 404
    stream = bob.http.get(gateway.url, headers={"accept": "text/event-stream", "mcp-session-id": alice.session_id})
    assert stream.status_code == 404, stream.text
    ended = bob.http.delete(gateway.url, headers={"mcp-session-id": alice.session_id})
    assert ended.status_code == 404, ended.text
    # Alice's session is untouched by all that.
    answer = alice.request("tools/call", {"name": "echo__echo", "arguments": {"text": "still mine"}})
    assert "still mine" in json.dumps(answer["result"])


def test_a_deleted_session_is_gone_for_its_own_caller(gateway, callers):
    alice = Caller(gateway.url, ALICE)
    alice.initialize()
    assert alice.request("ping")["result"] == {}
    ended = alice.http.delete(gateway.url, headers={"mcp-session-id": alice.session_id})
    assert ended.status_code == 204, ended.text
    # What the client sees next: 404 with a JSON-RPC error saying why, so
    # that it starts a new session (as the transport specification asks).
    after = alice.post(jsonrpc("tools/call", {"name": "echo__echo", "arguments": {"text": "x"}}, id=9))
    assert after.status_code == 404, after.text
    error = after.json()["error"]
    assert error["code"] == -32001 and "ended by a DELETE" in error["message"], error
    assert alice.http.delete(gateway.url, headers={"mcp-session-id": alice.session_id}).status_code == 404


def test_a_caller_reaches_only_the_servers_it_may_use(gateway, callers):
    before = upstream_requests(gateway)
    bob = Caller(gateway.url, BOB)
    bob.initialize()
    assert bob.tool_names() == {"echo__echo"}
    assert bob.post(jsonrpc("notifications/cancelled", {"requestId": 1, "reason": "test"}, id=None)).status_code == 202
    assert bob.request("logging/setLevel", {"level": "debug"})["result"] == {}
    # An answer to a request everything never sent bob: refused, audited.
    forged = bob.post(json.dumps({"jsonrpc": "2.0", "id": "mcpgw:everything:1", "result": {}}))
    assert forged.status_code == 400, forged.text
    assert "everything" in forged.json()["error"]["message"]
    after = upstream_requests(gateway)
    assert after["everything"] == before["everything"], "bob's session, notifications or answers reached a server he may not use"
    assert after["echo"] > before["echo"], "bob's session never reached echo, which he may use"
    # Alice, who may use everything, does reach it.
    alice = Caller(gateway.url, ALICE)
    alice.initialize()
    assert upstream_requests(gateway)["everything"] > after["everything"]

    def audited():
        lines = [json.loads(line) for line in callers["audit"].read_text().splitlines() if line.strip()]
        return [l for l in lines if l.get("principal") == "bob" and l.get("server") == "everything"]

    lines = wait_until("the refused answer in the audit log", audited, timeout=10)
    assert lines[-1]["decision"] == "deny" and lines[-1]["method"] == "response", lines[-1]


def statuses(send, n: int) -> list[int]:
    return [send().status_code for _ in range(n)]


def accepted_then_refused(codes: list[int], burst: int, first_ok: set[int]) -> None:
    assert codes[0] in first_ok, codes
    assert 429 in codes, f"never limited: {codes}"
    refused_at = codes.index(429)
    assert len([c for c in codes if c != 429]) <= burst, codes
    assert all(c == 429 for c in codes[refused_at:]), f"let through again after a refusal within a minute: {codes}"


def test_deletes_are_rate_limited(gateway, callers):
    c = Caller(gateway.url, TIGHT["rl-delete"])
    c.initialize()
    codes = statuses(lambda: c.http.delete(gateway.url, headers={"mcp-session-id": c.session_id}), TIGHT_BURST + 2)
    # The first ends the session (204), the next find it ended (404), then 429.
    accepted_then_refused(codes, TIGHT_BURST, {204})
    refused = c.http.delete(gateway.url, headers={"mcp-session-id": c.session_id})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == -32029, refused.text
    assert int(refused.headers["retry-after"]) >= 1


def test_get_streams_are_rate_limited(gateway, callers):
    c = Caller(gateway.url, TIGHT["rl-get"])
    c.initialize()

    def open_and_close():
        with c.http.stream("GET", gateway.url, headers={"accept": "text/event-stream", "mcp-session-id": c.session_id}) as r:
            return r

    accepted_then_refused(statuses(open_and_close, TIGHT_BURST + 2), TIGHT_BURST, {200})


def test_initialize_costs_what_it_sends_upstream(gateway, callers):
    # Each initialize opens a session with every server that keeps sessions
    # (everything; echo keeps none): two requests to each (initialize,
    # initialized), so at least two tokens of the burst of ten, not one.
    c = Caller(gateway.url, TIGHT["rl-init"])
    init = jsonrpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "0"}})
    codes = statuses(lambda: c.post(init, session=False), TIGHT_BURST // 2 + 2)
    accepted_then_refused(codes, TIGHT_BURST // 2, {200})


def test_bad_credentials_are_limited_by_source_address(gateway, callers):
    bad = httpx.Client(timeout=30)
    guess = lambda n: bad.post(gateway.url, content=jsonrpc("ping"), headers={**HEADERS, "authorization": f"Bearer guess-{n}"})
    codes = [guess(n).status_code for n in range(EVERYONE_BURST + 5)]
    accepted_then_refused(codes, EVERYONE_BURST, {401})
    last = guess("last")
    assert last.status_code == 429 and last.json()["error"]["data"]["limit"] == "everyone", last.text
    # A caller with a valid key, from the same address, has its own bucket.
    alice = Caller(gateway.url, ALICE)
    alice.initialize()
    assert alice.request("ping")["result"] == {}
