"""The gateway's own Envoy configuration, without the gateway's filter: the
static bootstraps of the `envoy-buffer` and `envoy-noop-wasm` targets.

Plain Envoy (`envoy` in bench/run.py) is a router and nothing else. The gateway
adds more than its wasm filter: its listener's buffer limit, its connection
manager's settings (path normalisation, timeouts, the local-reply mappers, the
remote address), its route's timeouts and its cluster's circuit breakers and
protocol options, and the bootstrap's stats settings and overload manager.
These baselines run all of that, taken from a running gateway: the control
plane compiles its configuration (control-plane/src/compile/), Envoy reports
what it runs (`GET /config_dump` on its admin port), and `derive` turns that
dump into a static bootstrap with one change in the filter chain, so that what
separates a baseline from the gateway is the filter alone:

  * the listener, as the gateway's, on another port; its connection manager as
    the gateway's, but with the route table inline instead of over RDS and the
    filter that came over ECDS (the wasm filter) replaced by `http_filter`;
  * the route table as the gateway's, but its MCP route sends every path to
    the first server's cluster instead of to the cluster the filter names in
    `x-mcp-cluster` (so the route matches once, where the gateway's filter
    makes Envoy match it again), and without the routes to the control plane;
  * that server's cluster, as the gateway's;
  * the gateway's bootstrap (stats tags, deferred stats, overload manager),
    without its way to the control plane (ADS) and with another admin port.

    envoy-buffer     `envoy.filters.http.buffer` (C++) holds each request until
                     its body is in, up to the gateway's max_body_bytes
    envoy-noop-wasm  the gateway's own wasm settings (runtime, VM id, failure
                     policy, pausing on headers) with bench/noop-filter's module
                     and no configuration: it reads the headers, holds the
                     request until the body is in and reads the body

bench/run.py starts the gateway, takes the dump, stops it and starts the
baseline's Envoy on what `derive` returns.
"""

from __future__ import annotations

import copy
import json

HCM = "envoy.filters.network.http_connection_manager"
MCP_ROUTE = "mcp_upstream"  # control-plane/src/compile/listeners.rs, route_table


def _configs(dump: dict) -> dict[str, dict]:
    """The dump's parts by type: `BootstrapConfigDump` -> its content."""
    return {c["@type"].rsplit(".", 1)[-1]: c for c in dump["configs"]}


def _bare(message: dict) -> dict:
    """A dumped resource without the `@type` the dump gives it (a static one has none)."""
    return {k: v for k, v in copy.deepcopy(message).items() if k != "@type"}


def wasm_filter(dump: dict) -> dict:
    """The gateway's wasm filter, as Envoy received it over ECDS."""
    filters = _configs(dump)["EcdsConfigDump"].get("ecds_filters", [])
    if len(filters) != 1:
        raise SystemExit(f"bench: the gateway's config dump has {len(filters)} ECDS filters, not one")
    return filters[0]["ecds_filter"]


def filter_settings(dump: dict) -> dict:
    """The gateway filter's own configuration (what the control plane compiled for it)."""
    return json.loads(wasm_filter(dump)["typed_config"]["config"]["configuration"]["value"])


def buffer_filter(dump: dict) -> dict:
    """Envoy's C++ buffer filter, limited as the gateway limits a body."""
    return {"name": "envoy.filters.http.buffer", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": filter_settings(dump)["max_body_bytes"],
    }}


def noop_wasm_filter(dump: dict, module: str) -> dict:
    """The gateway's wasm filter with the module at `module` and no configuration."""
    ecds = wasm_filter(dump)
    config = copy.deepcopy(ecds["typed_config"])
    config["config"]["vm_config"]["code"] = {"local": {"filename": module}}
    config["config"].pop("configuration", None)
    return {"name": ecds["name"], "typed_config": config}


def derive(dump: dict, listen: int, admin: int, http_filter: dict) -> dict:
    """A static bootstrap running the gateway's configuration in `dump`, with
    `http_filter` in the wasm filter's place, listening on `listen`, its admin
    on `admin`. Only the first server's cluster is kept: every request goes to it."""
    parts = _configs(dump)
    cluster = filter_settings(dump)["servers"][0]["cluster"]

    listeners = parts["ListenersConfigDump"].get("dynamic_listeners", [])
    if len(listeners) != 1:
        raise SystemExit(f"bench: the gateway runs {len(listeners)} listeners, not one (TLS is not benchmarked)")
    listener = _bare(listeners[0]["active_state"]["listener"])
    listener["address"]["socket_address"]["port_value"] = listen

    routes = parts["RoutesConfigDump"]["dynamic_route_configs"]
    table = _bare(routes[0]["route_config"])
    for host in table["virtual_hosts"]:
        mcp = [r for r in host["routes"] if r.get("name") == MCP_ROUTE]
        if len(mcp) != 1:
            raise SystemExit(f"bench: the gateway's routes have no single {MCP_ROUTE!r} route: {host['routes']}")
        route = mcp[0]
        route["match"].pop("headers", None)
        del route["route"]["cluster_header"]
        route["route"]["cluster"] = cluster
        host["routes"] = [route]

    replaced = 0
    for chain in listener["filter_chains"]:
        for network_filter in chain["filters"]:
            if network_filter["name"] != HCM:
                continue
            hcm = network_filter["typed_config"]
            del hcm["rds"]
            hcm["route_config"] = table
            replaced += sum("config_discovery" in f for f in hcm["http_filters"])
            hcm["http_filters"] = [copy.deepcopy(http_filter) if "config_discovery" in f else f for f in hcm["http_filters"]]
    if replaced != 1:
        raise SystemExit(f"bench: expected one filter over ECDS in the gateway's listener, found {replaced}")

    clusters = [_bare(c["cluster"]) for c in parts["ClustersConfigDump"]["dynamic_active_clusters"] if c["cluster"]["name"] == cluster]
    if len(clusters) != 1:
        raise SystemExit(f"bench: the gateway's config dump has no cluster {cluster!r}")

    boot = copy.deepcopy(parts["BootstrapConfigDump"]["bootstrap"])
    boot.pop("dynamic_resources", None)
    # The stats push to the control plane's metrics service (the console's
    # figures) needs the xds cluster, which a baseline has no use for.
    boot.pop("stats_sinks", None)
    boot["admin"]["address"]["socket_address"]["port_value"] = admin
    boot["static_resources"] = {"listeners": [listener], "clusters": clusters}
    return boot
