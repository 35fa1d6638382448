"""The tool router (issue 20) through the real Envoy, against the test
servers (the rmcp echo server and server-everything): `POST /tools` and its
refusals, `/tools/status`, what a caller's rules hide, and inside MCP the
gateway's `search_tools` and `call_tool` in every client mode (the Python
SDK's default, the handshake era, 2026-07-28, the TypeScript SDK).

The recall set against the example catalog runs in test_quickstart.py."""

from __future__ import annotations

import httpx

import modes
from conftest import BASE_SERVERS, GATEWAY_SECRETS, RawSession, jsonrpc, parse_answer


def tools_url(gateway) -> str:
    return f"{gateway.base}/tools"


def test_post_tools_ranks_the_tools_that_fit(gateway):
    r = httpx.post(tools_url(gateway), json={"task": "add two numbers together", "limit": 3}, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json", r.text
    answer = r.json()
    names = [t["name"] for t in answer["tools"]]
    assert names[0] in ("echo__add", "everything__get-sum") and {"echo__add", "everything__get-sum"} <= set(names), names
    first = answer["tools"][0]
    assert first["server"] in ("echo", "everything") and first["inputSchema"]["properties"].keys() >= {"a", "b"}, first
    assert answer["version"] == gateway.admin("/health")["version"]
    scores = [t["score"] for t in answer["tools"]]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 3

    only_echo = httpx.post(tools_url(gateway), json={"task": "add two numbers", "servers": ["echo"]}, timeout=10).json()
    assert [t["server"] for t in only_echo["tools"]] and all(t["server"] == "echo" for t in only_echo["tools"])
    nothing = httpx.post(tools_url(gateway), json={"task": "bake a chocolate cake"}, timeout=10).json()
    assert nothing["tools"] == []

    status = httpx.get(f"{tools_url(gateway)}/status", timeout=10).json()
    listed = modern(gateway, "tools/list")
    assert status["tools"] == len(listed["result"]["tools"]) and status["servers"] == 2, (status, listed)
    assert status["loaded_at"].endswith("Z") and status["in_mcp"] == "off"


META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def modern(gateway, method: str, params: dict | None = None, name: str | None = None) -> dict:
    """A 2026-07-28 request, which needs no session: its answer."""
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2026-07-28", "mcp-method": method}
    if name:
        headers["mcp-name"] = name
    body = jsonrpc(method, {**(params or {}), "_meta": META})
    return parse_answer(httpx.post(gateway.url, content=body, headers=headers, timeout=30))


def test_post_tools_refuses_bad_requests_with_errors_that_say_what_to_change(gateway):
    url = tools_url(gateway)
    cases = [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, -32700, "not JSON"),
        ({"json": {"task": ""}}, 400, -32600, "task is empty"),
        ({"json": {"context": "only"}}, 400, -32600, "missing field `task`"),
        ({"json": {"task": "x", "limit": 500}}, 400, -32600, "ask for 1 to 50 tools"),
        ({"json": {"task": "x", "servers": ["nope"]}}, 400, -32600, "not a server you may use"),
        ({"json": {"task": "x" * 5000}}, 400, -32600, "at most 4096"),
        ({"json": {"task": "x" * 70_000}}, 413, -32600, "too large"),
        ({"content": b"task=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415, -32600, "application/json"),
    ]
    for kwargs, status, code, says in cases:
        r = httpx.post(url, timeout=10, **kwargs)
        assert r.status_code == status, (kwargs, r.status_code, r.text)
        error = r.json()["error"]
        assert error["code"] == code and says in error["message"], (kwargs, error)
    r = httpx.get(url, timeout=10)
    assert r.status_code == 405 and r.headers["allow"] == "POST", r.text
    # Other requests keep flowing.
    assert httpx.post(url, json={"task": "echo a message"}, timeout=10).status_code == 200


def test_a_caller_finds_only_the_tools_its_rules_let_it_see(gateway):
    base = BASE_SERVERS(gateway.ports)
    auth = {"api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "alice", "groups": ["dev"]}]}
    rules = {"rules": [{"name": "no-sums", "groups": ["dev"], "allow": {"servers": ["*"]}, "deny": {"tools": ["*add*", "*sum*"]}}]}
    key = {"authorization": f"Bearer {GATEWAY_SECRETS['MCP_GATEWAY_API_KEY']}"}
    try:
        gateway.write_catalog_and_wait(base, "a catalog with keys and rules", auth=auth, authorization=rules)
        anonymous = httpx.post(tools_url(gateway), json={"task": "add two numbers"}, timeout=10)
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == -32001, anonymous.text
        assert httpx.get(f"{tools_url(gateway)}/status", timeout=10).status_code == 401
        found = httpx.post(tools_url(gateway), json={"task": "add two numbers sum"}, headers=key, timeout=10).json()
        names = [t["name"] for t in found["tools"]]
        assert not [n for n in names if "add" in n or "sum" in n], names
        status = httpx.get(f"{tools_url(gateway)}/status", headers=key, timeout=10).json()
        everything = httpx.post(tools_url(gateway), json={"task": "x"}, headers=key, timeout=10)
        assert everything.status_code == 200
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")
    unfiltered = httpx.get(f"{tools_url(gateway)}/status", timeout=10).json()
    assert status["tools"] == unfiltered["tools"] - 2, (status, unfiltered)


def test_inside_mcp_clients_search_then_call_in_every_mode(gateway):
    """`in_mcp: only`: tools/list offers search_tools and call_tool; each
    client mode finds the sum tool and calls it through call_tool."""
    base = BASE_SERVERS(gateway.ports)
    calls = {
        "search": ("search_tools", {"task": "return the sum of two numbers", "servers": ["echo"], "limit": 1}),
        "call": ("call_tool", {"name": "echo__add", "arguments": {"a": 40, "b": 2}}),
    }
    try:
        gateway.write_catalog_and_wait(base, "a catalog with the search tools only", tool_router={"in_mcp": "only"})
        listed = modern(gateway, "tools/list")
        assert [t["name"] for t in listed["result"]["tools"]] == ["search_tools", "call_tool"], listed
        found = modes.probe(gateway.url, calls)
        bad = modes.failures(found, {"search": '"name":"echo__add"', "call": "42"})
        assert not bad, "modes that could not search and call:\n" + "\n".join(bad)
        # A tool is still called by its name, though the list does not show it.
        direct = modern(gateway, "tools/call", {"name": "everything__echo", "arguments": {"message": "by name"}}, name="everything__echo")
        assert "by name" in str(direct["result"]["content"]), direct
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")
    assert "search_tools" not in str(modern(gateway, "tools/list"))


def test_a_servers_tool_filter_hides_its_tools_everywhere_in_both_eras(gateway):
    """`tools: {include, exclude}` on a server: what it leaves out is not
    listed, not found and not callable, in the handshake era and in
    2026-07-28, and `/servers` names it."""
    base = BASE_SERVERS(gateway.ports)
    filtered = [
        {**base[0], "tools": {"include": ["add", "echo*"]}},
        {**base[1], "tools": {"exclude": ["get-sum", "*-resource*"]}},
    ]
    try:
        gateway.write_catalog_and_wait(filtered, "a catalog with tool filters")
        session = RawSession(gateway.url)
        session.initialize()
        for names in (session.tool_names(), {t["name"] for t in modern(gateway, "tools/list")["result"]["tools"]}):
            echo = {n for n in names if n.startswith("echo__")}
            assert echo and all(n == "echo__add" or n.startswith("echo__echo") for n in echo), names
            assert "everything__get-sum" not in names and "everything__echo" in names, names
            assert not [n for n in names if n.startswith("everything__") and "-resource" in n], names
        hidden_call = session.request("tools/call", {"name": "everything__get-sum", "arguments": {"a": 1, "b": 2}})
        assert hidden_call["error"]["code"] == -32602 and "everything__get-sum" in hidden_call["error"]["message"], hidden_call
        modern_call = modern(gateway, "tools/call", {"name": "everything__get-sum", "arguments": {"a": 1, "b": 2}}, name="everything__get-sum")
        assert modern_call["error"]["code"] == -32602, modern_call
        kept = session.request("tools/call", {"name": "echo__add", "arguments": {"a": 2, "b": 3}})
        assert "5" in str(kept["result"]["content"]), kept
        found = httpx.post(tools_url(gateway), json={"task": "sum of two numbers", "limit": 50}, timeout=10).json()
        assert "everything__get-sum" not in [t["name"] for t in found["tools"]], found
        servers = {s["name"]: s for s in gateway.admin("/servers")["servers"]}
        assert "get-sum" in servers["everything"]["hidden_tools"], servers["everything"]
        assert "add" not in servers["echo"].get("hidden_tools", []) and servers["echo"]["hidden_tools"], servers["echo"]
        assert "dropped" not in servers["everything"], "a filtered tool is not a dropped one"
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")
    assert "everything__get-sum" in str(modern(gateway, "tools/list"))
