"""Virtual servers (issue 20): named MCP endpoints at `/mcp/<name>`, each
exposing a subset of the gateway's tools, prompts and resources, some under
names and descriptions of their own, to the callers its own rules admit. Run
through the real Envoy in every client mode (the Python SDK's default, the
handshake era, 2026-07-28, the TypeScript SDK), and in both eras by hand."""

from __future__ import annotations

import httpx

import modes
from conftest import BASE_SERVERS, GATEWAY_SECRETS, RawSession, jsonrpc, parse_answer
from test_tool_router import META

SUPPORT = {
    "name": "support",
    "tools": {"include": ["echo__*", "everything__get-sum"], "exclude": ["echo__sleep"]},
    "prompts": {"exclude": ["*"]},
    "resources": {"exclude": ["*"]},
    "rename": {"echo__add": "sum"},
    "describe": {"everything__get-sum": "Add two numbers, for the support team"},
}


def modern_at(url: str, method: str, params: dict | None = None, name: str | None = None, headers: dict | None = None) -> dict:
    """A 2026-07-28 request to `url`: its answer."""
    sent = {"content-type": "application/json", "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28", "mcp-method": method, **(headers or {})}
    if name:
        sent["mcp-name"] = name
    return parse_answer(httpx.post(url, content=jsonrpc(method, {**(params or {}), "_meta": META}), headers=sent, timeout=30))


def test_a_virtual_server_offers_its_subset_under_its_names_in_every_client_mode(gateway):
    base = BASE_SERVERS(gateway.ports)
    url = f"{gateway.base}/mcp/support"
    try:
        finder = {"name": "finder", "tools": {"include": ["echo__*"]}, "in_mcp": "only"}
        gateway.write_catalog_and_wait(base, "a catalog with virtual servers", [SUPPORT, finder], tool_router={"in_mcp": "alongside"})

        calls = {"renamed": ("sum", {"a": 2, "b": 3}), "described": ("everything__get-sum", {"a": 40, "b": 2})}
        found = modes.probe(url, calls)
        bad = modes.failures(found, {"renamed": "5", "described": "42"})
        assert not bad, "modes that could not call the virtual server's tools:\n" + "\n".join(bad)

        session = RawSession(url)
        session.initialize()
        for tools in (session.request("tools/list")["result"]["tools"], modern_at(url, "tools/list")["result"]["tools"]):
            names = {t["name"] for t in tools}
            assert {"sum", "echo__echo", "everything__get-sum", "search_tools"} <= names, names
            assert not {"echo__add", "echo__sleep", "everything__echo"} & names, names
            described = next(t for t in tools if t["name"] == "everything__get-sum")
            assert described["description"] == "Add two numbers, for the support team"
        assert session.request("prompts/list")["result"]["prompts"] == []
        assert session.request("resources/list")["result"]["resources"] == []
        for name in ("echo__add", "echo__sleep", "everything__echo"):
            refused = session.request("tools/call", {"name": name, "arguments": {}})
            assert refused["error"]["code"] == -32602 and name in refused["error"]["message"], refused
        searched = session.request("tools/call", {"name": "search_tools", "arguments": {"task": "add two numbers", "limit": 10}})
        hits = [t["name"] for t in searched["result"]["structuredContent"]["tools"]]
        assert "sum" in hits and not {"echo__add", "everything__echo"} & set(hits), hits

        # An endpoint with its own in_mcp: the search tools only, searching its subset.
        finder_url = f"{gateway.base}/mcp/finder"
        assert [t["name"] for t in modern_at(finder_url, "tools/list")["result"]["tools"]] == ["search_tools", "call_tool"]
        through = modern_at(finder_url, "tools/call", {"name": "call_tool", "arguments": {"name": "echo__add", "arguments": {"a": 1, "b": 1}}}, name="call_tool")
        assert "2" in str(through["result"]["content"]), through
        # The gateway's own endpoint is unchanged.
        whole = RawSession(gateway.url)
        whole.initialize()
        assert {"echo__add", "everything__echo"} <= whole.tool_names()
        assert whole.request("prompts/list")["result"]["prompts"], "the gateway's endpoint keeps its prompts"
        # A path that names no virtual server is not an MCP endpoint.
        nope = httpx.post(f"{gateway.base}/mcp/nope", content=jsonrpc("tools/list"), headers={"content-type": "application/json"}, timeout=10)
        assert nope.status_code == 404, nope.text
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")


def test_a_virtual_servers_own_rules_narrow_what_the_gateways_allow(gateway):
    base = BASE_SERVERS(gateway.ports)
    url = f"{gateway.base}/mcp/sums"
    key = {"authorization": f"Bearer {GATEWAY_SECRETS['MCP_GATEWAY_API_KEY']}"}
    auth = {"api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "alice", "groups": ["dev"]}]}
    sums = {
        "name": "sums",
        "authorization": {"default": "deny", "rules": [{"name": "dev-sums", "groups": ["dev"], "allow": {"tools": ["*sum*", "*add*"]}}]},
    }
    try:
        gateway.write_catalog_and_wait(base, "a catalog with a virtual server of its own rules", [sums], auth=auth)
        anonymous = httpx.post(url, content=jsonrpc("tools/list"), headers={"content-type": "application/json",
                               "accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28"}, timeout=10)
        assert anonymous.status_code == 401, anonymous.text
        names = {t["name"] for t in modern_at(url, "tools/list", headers=key)["result"]["tools"]}
        assert names == {"echo__add", "everything__get-sum"}, names
        echo = modern_at(url, "tools/call", {"name": "everything__echo", "arguments": {"message": "x"}}, name="everything__echo", headers=key)
        assert echo["error"]["code"] == -32602, echo
        summed = modern_at(url, "tools/call", {"name": "echo__add", "arguments": {"a": 1, "b": 2}}, name="echo__add", headers=key)
        assert "3" in str(summed["result"]["content"]), summed
        # On the gateway's endpoint, the gateway's rules alone (none here).
        assert "everything__echo" in {t["name"] for t in modern_at(gateway.url, "tools/list", headers=key)["result"]["tools"]}
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")



def test_a_rate_limit_on_a_virtual_server_holds_there_only(gateway):
    base = BASE_SERVERS(gateway.ports)
    url = f"{gateway.base}/mcp/tight"
    limits = [{"name": "tight-only", "endpoints": ["tight"], "requests_per_minute": 1, "burst": 2}]
    try:
        gateway.write_catalog_and_wait(base, "a rate limit on a virtual server", [{"name": "tight"}], rate_limits=limits)
        answers = [httpx.post(url, content=jsonrpc("tools/list", {"_meta": META}), timeout=10, headers={
            "content-type": "application/json", "accept": "application/json, text/event-stream",
            "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429], [a.text for a in answers]
        assert answers[2].json()["error"]["code"] == -32029 and "tight-only" in answers[2].json()["error"]["message"]
        # The gateway's own endpoint is not limited by it.
        assert all("result" in modern_at(gateway.url, "tools/list") for _ in range(4))
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")


def test_a_virtual_servers_clients_hear_only_of_changes_to_its_lists(gateway):
    """Two clients hold GET streams, one on /mcp, one on a virtual server
    offering only `third__echo`. A catalog edit adds third's other tools
    (outside the subset), then third__echo: the /mcp client hears of both,
    the other only of the second (it would have heard of the first before)."""
    import asyncio

    import anyio
    from mcp.client.client import Client

    from conftest import wait_until

    base = BASE_SERVERS(gateway.ports)
    narrow = [{"name": "narrow", "tools": {"include": ["third__echo"]}}]
    third = {"name": "third", "url": f"http://127.0.0.1:{gateway.ports['third']}/mcp"}
    heard = {"whole": 0, "narrow": 0}

    def handler(who: str):
        async def count(message):
            if "ToolListChanged" in type(getattr(message, "root", message)).__name__:
                heard[who] += 1
        return count

    async def scenario():
        async with Client(gateway.url, mode="legacy", message_handler=handler("whole")) as whole, \
                Client(f"{gateway.base}/mcp/narrow", mode="legacy", message_handler=handler("narrow")) as on_narrow:
            await whole.list_tools()
            assert [t.name for t in (await on_narrow.list_tools()).tools] == []
            streams = lambda: gateway.envoy_stat("cluster.gateway_streams.upstream_rq_active") >= 2
            await anyio.to_thread.run_sync(lambda: wait_until("both GET streams open", streams, timeout=30))
            gateway.write_catalog(base + [{**third, "tools": {"exclude": ["echo"]}}], narrow)
            with anyio.fail_after(30):
                while heard["whole"] < 1:
                    await anyio.sleep(0.05)
            gateway.write_catalog(base + [third], narrow)
            with anyio.fail_after(30):
                while heard["narrow"] < 1 or heard["whole"] < 2:
                    await anyio.sleep(0.05)
            return [t.name for t in (await on_narrow.list_tools()).tools]

    gateway.echo_server("third", gateway.ports["third"])
    try:
        gateway.write_catalog_and_wait(base, "a catalog with a narrow virtual server", narrow)
        names = asyncio.run(scenario())
        assert heard["narrow"] == 1 and heard["whole"] >= 2, heard
        assert names == ["third__echo"], names
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")
        gateway.stop("third")
