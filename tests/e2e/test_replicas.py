"""Any replica serves any request: a second Envoy behind the same control
plane shares the listener (SO_REUSEPORT, the kernel spreads connections), and
the requests of one session, each on a new connection, land on both and all
succeed. Nothing is shared between the Envoys but the session key that the
control plane gives both."""

import httpx

from conftest import HEADERS, RawSession, jsonrpc


def served(admin: str) -> int:
    """Requests an Envoy's MCP listener has taken."""
    text = httpx.get(f"{admin}/stats", params={"filter": "^http.mcp_gateway.downstream_rq_total$"}, timeout=5).text
    return int(text.split(": ")[1]) if ": " in text else 0


def test_two_envoys_serve_one_session(gateway):
    with gateway.second_envoy() as admins:
        s = RawSession(gateway.url)
        s.initialize()
        before = {node: served(a) for node, a in admins.items()}
        for i in range(24):
            # A new connection each time, so the kernel picks an Envoy each time.
            body = jsonrpc("tools/call", {"name": "everything__echo", "arguments": {"message": f"m{i}"}}, id=i + 10)
            r = httpx.post(gateway.url, content=body, headers={**HEADERS, "mcp-session-id": s.session_id, "connection": "close"})
            assert r.status_code == 200, r.text
            assert f"Echo: m{i}" in r.text
        after = {node: served(a) for node, a in admins.items()}
        counts = {node: after[node] - before[node] for node in admins}
        print(f"\nrequests of one session served per Envoy: {counts}")
        assert all(n > 0 for n in counts.values()), counts


def test_a_deleted_session_is_gone_behind_every_envoy(gateway):
    """Ended sessions are recorded per Envoy (docs/design/sessions.md); what
    a client sees on the other Envoy: its calls to a stateful server fail
    too, since the DELETE ended the upstream session for everyone. The
    Envoy that recorded the DELETE answers 404; the other forwards the call,
    and server-everything refuses the session it no longer has (400)."""
    with gateway.second_envoy() as admins:
        s = RawSession(gateway.url)
        s.initialize()
        ended = httpx.delete(gateway.url, headers={"mcp-session-id": s.session_id, "connection": "close"})
        assert ended.status_code == 204, ended.text
        before = {node: served(a) for node, a in admins.items()}
        statuses = []
        for i in range(24):
            body = jsonrpc("tools/call", {"name": "everything__echo", "arguments": {"message": f"m{i}"}}, id=i + 10)
            r = httpx.post(gateway.url, content=body, headers={**HEADERS, "mcp-session-id": s.session_id, "connection": "close"})
            statuses.append(r.status_code)
        counts = {node: served(a) - before[node] for node, a in admins.items()}
        print(f"\ncalls after DELETE, per Envoy: {counts}; statuses {sorted(set(statuses))}")
        assert all(n > 0 for n in counts.values()), f"one Envoy took every call, nothing shown: {counts}"
        assert 200 not in statuses, f"a call went through in a deleted session: {statuses}"
        assert set(statuses) <= {404, 400} and 404 in statuses, statuses
