"""The filter module travels once, by its digest (docs/design/module-delivery.md):
a catalog edit sends Envoy configuration only, and an Envoy started again
fetches the module from the control plane and serves with it. Against the
native filter (E2E_FILTER=native), which Envoy loads from its own disk, no
Envoy fetches the wasm module at all, and the same edits and restart hold."""

import httpx

from conftest import BASE_SERVERS, FILTER, RawSession, envoy_env, wait_until

# Whether the filter under test is the wasm module Envoy fetches.
FETCHED = FILTER == "wasm"

FILTER_TYPE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


def module(gateway) -> dict:
    return gateway.admin("/health")["module"]


def filter_pushes(gateway) -> dict:
    """The filter configuration's record on the session's Envoy (gateway-1)."""
    node = next(e for e in gateway.admin("/health")["envoys"] if e["node_id"] == "gateway-1" and e["connected"])
    return next(t for t in node["types"] if t["type_url"] == FILTER_TYPE)


def echo(gateway, text: str) -> str:
    s = RawSession(gateway.url)
    s.initialize()
    return s.request("tools/call", {"name": "echo__echo", "arguments": {"text": text}})["result"]["content"][0]["text"]


def test_a_catalog_edit_sends_configuration_not_the_module(gateway):
    m = module(gateway)
    if FETCHED:
        assert m["fetches"] >= 1, "the session's Envoy fetched the module when it started"
    else:
        assert m["fetches"] == 0, "an Envoy running the native filter fetched the wasm module"
    assert m["path"] == f"/filter/{m['sha256']}.wasm"
    served = httpx.get(f"{gateway.cp_admin}{m['path']}", timeout=10)
    assert served.status_code == 200 and served.headers["content-type"] == "application/wasm"
    assert len(served.content) == m["bytes"] and served.content[:4] == b"\0asm"
    assert httpx.get(f"{gateway.cp_admin}/filter/{'0' * 64}.wasm", timeout=10).status_code == 404, "only the module served now"
    # Those two requests were the test's own.
    fetches = module(gateway)["fetches"]
    before = filter_pushes(gateway)
    base = BASE_SERVERS(gateway.ports)
    try:
        # A setting the filter reads: a new filter configuration.
        gateway.write_catalog_and_wait(base, "a catalog edit the filter reads", max_body_bytes=70000)
        after = filter_pushes(gateway)
        assert after["sent"] > before["sent"], "the filter configuration was pushed"
        assert after["last_sent_bytes"] < m["bytes"] / 10, f"{after['last_sent_bytes']} bytes pushed: the module went with it"
        assert module(gateway)["fetches"] == fetches, "the edit made Envoy fetch the module again"
        assert echo(gateway, "after the edit") == "after the edit"
        metrics = httpx.get(f"{gateway.cp_admin}/metrics", timeout=5).text
        assert f"mcp_gateway_filter_module_fetches_total {fetches}" in metrics
        assert 'mcp_gateway_xds_pushed_bytes_total{node="gateway-1",type="filter"}' in metrics
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")


def test_an_envoy_started_again_fetches_the_module_and_serves(gateway):
    fetches = module(gateway)["fetches"]
    argv = gateway.procs["envoy"].popen.args
    gateway.stop("envoy")
    gateway.start("envoy", argv, env=envoy_env())
    # Its first filter configuration names a module it does not have: it
    # rejects it while it fetches the module, and takes it when sent again.
    wait_until("the restarted Envoy serving a call", lambda: echo(gateway, "again") == "again", timeout=60)
    if FETCHED:
        assert module(gateway)["fetches"] > fetches, "the new Envoy fetched the module"
    else:
        assert module(gateway)["fetches"] == fetches, "an Envoy running the native filter fetched the wasm module"
    wait_until("the restarted Envoy running the version served", lambda: all(t["current"] for t in envoy_types(gateway)))
    if FETCHED:
        assert "an Envoy fetched the filter module" in gateway.procs["control-plane"].log.read_text()


def envoy_types(gateway) -> list[dict]:
    node = next(e for e in gateway.admin("/health")["envoys"] if e["node_id"] == "gateway-1" and e["connected"])
    return node["types"]
