"""The shipped monitoring works on a real gateway: a real Prometheus (Debian's
2.x, unpacked by `make setup` into .tools/prometheus) scrapes GET /metrics,
loads deploy/prometheus/alerts.yml and runs every query of the Grafana
dashboard (deploy/grafana/dashboards/mcp-gateway.json). Every query must be
valid, those of the traffic driven here must return it, every alert rule
must evaluate, and a server that is down must make its alert pending."""

import json
import subprocess
import time

import httpx
import pytest
import yaml

from conftest import BASE_SERVERS, ROOT, RawSession, free_port, require, wait_until

PROMETHEUS = ROOT / ".tools" / "prometheus" / "usr" / "bin" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "mcp-gateway.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# Panels that show something only after events this test does not cause.
QUIET_PANELS = {
    "Failing tool calls by tool (top 10)",
    "Authentication failures",
    "Authorization denials",
    "Rate-limited requests",
    "Server restarts (1h)",
    "Calls refused as overloaded",
}


class Prometheus:
    def __init__(self, workdir, target: str):
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [{"job_name": "mcp-gateway", "static_configs": [{"targets": [target]}]}],
        }))
        self.log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until("Prometheus ready", lambda: httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200, timeout=30)

    def query(self, expr: str) -> dict:
        return httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def prometheus(gateway, tmp_path):
    require(PROMETHEUS, "run `make setup` (unpacks Debian's prometheus into .tools/prometheus)")
    p = Prometheus(tmp_path, gateway.base.removeprefix("http://"))
    yield p
    p.stop()


def grafana_expr(expr: str) -> str:
    """A panel's query as Grafana sends it with "All" gateways selected."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


def panels() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in dash["panels"] if p["type"] != "row" for t in p["targets"]]


def test_the_dashboard_and_alerts_work_on_real_metrics(gateway, prometheus):
    # Earlier tests called tools too: the calls here must show as a rate,
    # so Prometheus sees the series before them and again after.
    calls = 'sum(mcp_requests_total{method="tools/call", tool="echo__add"})'

    def counted():
        r = prometheus.query(calls)["data"]["result"]
        return float(r[0]["value"][1]) if r else 0.0

    s = RawSession(gateway.url)
    s.initialize()
    # The series exists (earlier tests may not have made it) and Prometheus
    # has it, before the calls whose rate the panels must show.
    assert s.request("tools/call", {"name": "echo__add", "arguments": {"a": 0, "b": 0}})["result"]
    wait_until("the first call in Prometheus", lambda: counted() >= 1, timeout=30)
    before = counted()
    for i in range(20):
        assert s.request("tools/call", {"name": "echo__add", "arguments": {"a": i, "b": 1}})["result"]
    s.request("tools/list")
    # An unknown tool: a JSON-RPC error the gateway answers itself.
    assert s.request("tools/call", {"name": "echo__nope", "arguments": {}})["error"]["code"] == -32602
    # Two scrapes after the traffic, and a stats flush for the histograms (5 s).
    wait_until("the calls in Prometheus", lambda: counted() >= before + 20, timeout=30)
    wait_until("the latency histogram in Prometheus", lambda: prometheus.query('mcp_request_duration_milliseconds_count{method="tools/call"}')["data"]["result"], timeout=30)
    time.sleep(3)  # a few more scrapes, so that rate() has points on both sides

    empty = []
    for title, expr in panels():
        answer = prometheus.query(grafana_expr(expr))
        assert answer["status"] == "success", f"panel {title!r}: {answer.get('error')}\n{expr}"
        if not answer["data"]["result"] and title not in QUIET_PANELS:
            empty.append(title)
    assert not empty, f"panels without data after traffic: {empty}"
    top = prometheus.query(grafana_expr(next(e for t, e in panels() if t == "Tool calls by tool (top 10)")))["data"]["result"]
    assert any(r["metric"].get("tool") == "echo__add" for r in top), top

    # Every rule evaluates without error, and nothing fires on a healthy gateway.
    def evaluated():
        rules = [r for g in httpx.get(f"{prometheus.url}/api/v1/rules", timeout=5).json()["data"]["groups"] for r in g["rules"]]
        return rules if all(r.get("lastEvaluation", "").startswith("20") and not r["lastEvaluation"].startswith("0001") for r in rules) else None
    rules = wait_until("every alert rule evaluated", evaluated, timeout=30)
    assert len(rules) == len([r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]])
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert [r["name"] for r in rules if r["state"] != "inactive"] == []


def test_a_server_down_makes_its_alert_pending(gateway, prometheus):
    base = BASE_SERVERS(gateway.ports)
    ghost = {"name": "ghost", "url": f"http://127.0.0.1:{free_port()}/mcp"}
    gateway.write_catalog_and_wait(base + [ghost], "a catalog with a server nobody runs")
    try:
        def pending():
            alerts = httpx.get(f"{prometheus.url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            return [a for a in alerts if a["labels"]["alertname"] == "MCPGatewayUpstreamDown"]
        (alert,) = wait_until("MCPGatewayUpstreamDown pending", pending, timeout=60)
        assert alert["labels"]["server"] == "ghost" and alert["state"] == "pending"
        assert alert["annotations"]["summary"] == "MCP server ghost is down"
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")


GUIDE_ALERTS = ROOT / "deploy" / "prometheus" / "guide-alerts.yml"


def test_the_open_guides_scrape_of_stats_and_its_alert_rules_work(gateway, tmp_path):
    """The Open guide's Prometheus setup as written: `metrics_path: /stats`,
    its GatewayDown and HighErrorRate rules. Prometheus asks /stats for the
    text format and gets it (a person's curl still gets JSON), and the
    guide's mcp_errors_total counts the errors answered, so its rule fires."""
    require(PROMETHEUS, "run `make setup` (unpacks Debian's prometheus into .tools/prometheus)")
    assert httpx.get(f"{gateway.base}/stats", timeout=10).headers["content-type"].startswith("application/json")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(GUIDE_ALERTS)],
        "scrape_configs": [{"job_name": "mcp-gateway", "metrics_path": "/stats", "static_configs": [{"targets": [gateway.base.removeprefix("http://")]}]}],
    }))
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen([str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until("Prometheus ready", lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, timeout=30)
        query = lambda expr: httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()["data"]["result"]  # noqa: E731
        wait_until("the gateway scraped through /stats", lambda: (r := query('up{job="mcp-gateway"}')) and r[0]["value"][1] == "1", timeout=30)
        s = RawSession(gateway.url)
        s.initialize()

        def errors() -> float:
            r = query("sum(mcp_errors_total)")
            return float(r[0]["value"][1]) if r else 0.0

        assert s.request("tools/call", {"name": "echo__nope", "arguments": {}})["error"]["code"] == -32602
        wait_until("mcp_errors_total scraped from /stats", lambda: errors() >= 1, timeout=30)
        before = errors()
        for _ in range(30):
            assert s.request("tools/call", {"name": "echo__nope", "arguments": {}})["error"]["code"] == -32602
        wait_until("the errors counted", lambda: errors() >= before + 30, timeout=30)

        def alerts() -> dict:
            return {a["labels"]["alertname"]: a["state"] for a in httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]}

        assert wait_until("HighErrorRate pending", lambda: alerts().get("HighErrorRate") == "pending", timeout=30)
        rules = [r for g in httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"] for r in g["rules"]]
        assert {r["name"]: r["health"] for r in rules} == {"GatewayDown": "ok", "HighErrorRate": "ok"}, rules
        assert "GatewayDown" not in alerts(), "the gateway is up"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
