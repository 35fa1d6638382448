"""Global rate limits: two Envoys behind one control plane share a bucket
kept in a real Redis, through Envoy's ratelimit filter and the control
plane's rate limit service (envoy.service.ratelimit.v3). Together they let
through what one limit allows, within 5%, and each refusal is a JSON-RPC
error naming the limit."""

import shutil
import socket

import pytest

from conftest import BASE_SERVERS, GATEWAY_SECRETS, free_port, jsonrpc, saturate, wait_until

KEY = GATEWAY_SECRETS["MCP_GATEWAY_API_KEY"]
PER_MINUTE, BURST = 600, 10


@pytest.fixture(scope="module")
def global_limit(gateway):
    redis = shutil.which("redis-server") or pytest.fail("redis-server is not on PATH: run `make setup` (apt-get install redis-server)", pytrace=False)
    port = free_port()
    gateway.start("redis", [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
    wait_until("redis", lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True)
    settings = {
        "auth": {"api_keys": [{"key": "${MCP_GATEWAY_API_KEY}", "principal": "alice"}]},
        "global_rate_limits": {"redis_url": f"redis://127.0.0.1:{port}"},
        "rate_limits": [
            {"name": "shared", "per": ["principal"], "tools": ["echo__whoami"], "requests_per_minute": PER_MINUTE, "burst": BURST, "global": True}
        ],
    }
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "a global rate limit", **settings)
    yield
    gateway.write_catalog_and_wait(BASE_SERVERS(gateway.ports), "the base catalog back")
    gateway.stop("redis")


def ratelimit_stats(gateway, admin: str) -> dict[str, int]:
    import httpx

    text = httpx.get(f"{admin}/stats", params={"filter": r"^cluster\.mcp_echo\.ratelimit\.(ok|over_limit)$"}, timeout=5).text
    return {k: int(v) for k, _, v in (line.partition(": ") for line in text.splitlines()) if v}


def test_two_envoys_share_one_limit(gateway, global_limit):
    with gateway.second_envoy() as admins:
        body = jsonrpc("tools/call", {"name": "echo__whoami", "arguments": {}}, id=7)
        before = {node: ratelimit_stats(gateway, admin) for node, admin in admins.items()}
        seen = saturate(gateway.url, {"authorization": f"Bearer {KEY}"}, body, seconds=10.0, clients=4, new_connections=True)
        after = {node: ratelimit_stats(gateway, admin) for node, admin in admins.items()}
    expected = seen.expected(PER_MINUTE, BURST)
    print(f"global limit: let through {seen.allowed} in {seen.elapsed:.2f} s, expected {expected:.1f}; refused {seen.refused}; {after}")
    for node in admins:
        asked = {k: after[node].get(k, 0) - before[node].get(k, 0) for k in after[node]}
        assert asked.get("cluster.mcp_echo.ratelimit.ok", 0) > 0 and asked.get("cluster.mcp_echo.ratelimit.over_limit", 0) > 0, (
            f"{node} did not enforce the shared limit: {asked}"
        )
    assert seen.refused > seen.allowed, "the clients did not push past the limit; the test proves nothing"
    assert abs(seen.allowed - expected) <= 0.05 * expected, f"let through {seen.allowed}, expected {expected:.1f}"
    assert seen.sample["id"] == 7
    assert seen.sample["error"]["code"] == -32029 and seen.sample["error"]["data"]["limit"] == "shared"
    assert int(seen.sample["retry-after"]) >= 1
