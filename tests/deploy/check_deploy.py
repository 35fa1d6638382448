"""Consistency of the deployment files with each other and with the code.

The schema checks (Kubernetes API, Compose specification, promtool,
hadolint, Envoy's --mode validate) are in scripts/validate-deploy.sh; this
checks what no schema knows: that the Envoy bootstrap in the Kubernetes
ConfigMap is envoy/gateway.yaml, that probes and ports name the gateway's
real paths and port, that every container runs as non-root on a read-only
root filesystem, that the Envoy images are the version the tests run, that
the catalogs shipped for containers validate, that alerts and dashboard use
metrics the gateway exports, and that the size overlays apply.

    python tests/deploy/check_deploy.py --render DIR   # also writes the sized manifests to DIR
    python tests/deploy/check_deploy.py --fix          # rewrites the Envoy ConfigMap from envoy/gateway.yaml

Exits 1 listing every problem.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
ENVOY_CONFIGMAP = K8S / "envoy-configmap.yaml"
ENVOY_CONFIGMAP_HEAD = """\
# Envoy's bootstrap: envoy/gateway.yaml, byte for byte (scripts/validate-deploy.sh
# checks it; regenerate with scripts/validate-deploy.sh --fix). Everything
# else reaches Envoy over xDS from the control plane in the same pod.
apiVersion: v1
kind: ConfigMap
metadata:
  name: mcp-gateway-envoy
data:
  gateway.yaml: |
"""
MCP_PORT = 4444
# Metrics that are neither the gateway's (documented) nor Envoy's own.
PROMETHEUS_BUILTINS = {"up"}

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def envoy_configmap_text() -> str:
    source = (ROOT / "envoy" / "gateway.yaml").read_text()
    return ENVOY_CONFIGMAP_HEAD + "".join("    " + line if line.strip() else "\n" for line in source.splitlines(keepends=True))


COMPOSE_BOOTSTRAP = ROOT / "deploy" / "compose" / "envoy.yaml"
COMPOSE_BOOTSTRAP_HEAD = """\
# Envoy's bootstrap for docker-compose.yml's gateway service: envoy/gateway.yaml
# but for the way to the control plane, which is another container
# (control-plane:18000, by DNS). Generated: scripts/validate-deploy.sh --fix
# rewrites it, and CI fails when it differs.
"""


def compose_bootstrap_text() -> str:
    source = (ROOT / "envoy" / "gateway.yaml").read_text()
    swaps = [
        ("    - name: xds\n      type: STATIC\n", "    - name: xds\n      type: STRICT_DNS\n      dns_lookup_family: V4_ONLY\n"),
        ("socket_address: { address: 127.0.0.1, port_value: 18000 }", "socket_address: { address: control-plane, port_value: 18000 }"),
    ]
    for old, new in swaps:
        if source.count(old) != 1:
            problem(f"envoy/gateway.yaml: expected one {old.strip()!r} to make deploy/compose/envoy.yaml from")
            return ""
        source = source.replace(old, new)
    return COMPOSE_BOOTSTRAP_HEAD + source


def check_compose_bootstrap(fix: bool) -> None:
    want = compose_bootstrap_text()
    if fix and want:
        COMPOSE_BOOTSTRAP.write_text(want)
    if not COMPOSE_BOOTSTRAP.exists() or COMPOSE_BOOTSTRAP.read_text() != want:
        problem(f"{COMPOSE_BOOTSTRAP.relative_to(ROOT)} is not envoy/gateway.yaml with the control plane at control-plane:18000: run scripts/validate-deploy.sh --fix")


def check_envoy_configmap(fix: bool) -> None:
    want = envoy_configmap_text()
    if fix:
        ENVOY_CONFIGMAP.write_text(want)
    (doc,) = load_all(ENVOY_CONFIGMAP)
    if doc["data"]["gateway.yaml"] != (ROOT / "envoy" / "gateway.yaml").read_text():
        problem(f"{ENVOY_CONFIGMAP.relative_to(ROOT)} is not envoy/gateway.yaml: run scripts/validate-deploy.sh --fix")


# ------------------------------------------------------------ kustomize, small
def strategic_merge(base, patch):
    """The part of Kubernetes' strategic merge patch the size overlays use:
    maps merge, containers merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = strategic_merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in base + patch):
        out = [copy.deepcopy(x) for x in base]
        for item in patch:
            match = next((i for i, x in enumerate(out) if x["name"] == item["name"]), None)
            if match is None:
                problem(f"a size patch names container {item['name']!r}, which the base Deployment has not")
                out.append(copy.deepcopy(item))
            else:
                out[match] = strategic_merge(out[match], item)
        return out
    return copy.deepcopy(patch)


def kustomize(directory: Path) -> list[dict]:
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict] = []
    for resource in k.get("resources", []):
        path = (directory / resource).resolve()
        if path.is_dir():
            docs += kustomize(path)
        elif path.is_file():
            docs += load_all(path)
        else:
            problem(f"{(directory / 'kustomization.yaml').relative_to(ROOT)}: resource {resource} does not exist")
    for p in k.get("patches", []):
        (patch,) = load_all(directory / p["path"])
        targets = [d for d in docs if d["kind"] == patch["kind"] and d["metadata"]["name"] == patch["metadata"]["name"]]
        if len(targets) != 1:
            problem(f"{directory.relative_to(ROOT)}/{p['path']}: patches {patch['kind']}/{patch['metadata']['name']}, found {len(targets)}")
            continue
        docs[docs.index(targets[0])] = strategic_merge(targets[0], patch)
    for image in k.get("images", []):
        for d in docs:
            for c in d.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                if c["image"] == image["name"]:
                    c["image"] = f"{image['newName']}:{image['newTag']}"
    return docs


def check_kubernetes(render: Path | None) -> None:
    base = kustomize(K8S)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in base}
    for want in [("Deployment", "mcp-gateway"), ("Service", "mcp-gateway"), ("ConfigMap", "mcp-gateway-catalog"), ("ConfigMap", "mcp-gateway-envoy")]:
        if want not in kinds:
            problem(f"deploy/kubernetes/kustomization.yaml does not make {want[0]}/{want[1]}")
    (secret,) = load_all(K8S / "secret.example.yaml")
    sizes = sorted(p.name for p in (K8S / "sizes").iterdir())
    if sizes != ["large", "medium", "small"]:
        problem(f"deploy/kubernetes/sizes has {sizes}, not the seeds' small, medium and large")
    for size in sizes:
        docs = kustomize(K8S / "sizes" / size)
        check_deployment(docs, secret, f"sizes/{size}")
        if render:
            (render / f"{size}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    memory = {size: mebibytes(deployment(kustomize(K8S / "sizes" / size))) for size in sizes}
    if not memory.get("small", 0) < memory.get("medium", 0) < memory.get("large", 0):
        problem(f"the sizes' memory limits do not grow from small to large: {memory}")


def deployment(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "Deployment")


def mebibytes(d: dict) -> int:
    units = {"Mi": 1, "Gi": 1024}
    total = 0
    for c in d["spec"]["template"]["spec"]["containers"]:
        m = re.fullmatch(r"(\d+)(Mi|Gi)", c["resources"]["limits"]["memory"])
        total += int(m.group(1)) * units[m.group(2)] if m else 0
    return total


def check_deployment(docs: list[dict], secret: dict, where: str) -> None:
    d = deployment(docs)
    pod = d["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    at = f"deploy/kubernetes ({where})"
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        problem(f"{at}: the pod does not set runAsNonRoot")
    for name, c in containers.items():
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
            problem(f"{at}: container {name} is not read-only without privilege escalation")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problem(f"{at}: container {name} keeps Linux capabilities")
        resources = c.get("resources", {})
        if not (resources.get("requests") and resources.get("limits")):
            problem(f"{at}: container {name} has no resource requests and limits")
    envoy, cp = containers.get("envoy"), containers.get("control-plane")
    if not envoy or not cp:
        problem(f"{at}: the pod needs containers envoy and control-plane, has {sorted(containers)}")
        return
    ports = {p["name"]: p["containerPort"] for c in containers.values() for p in c.get("ports", [])}
    if ports.get("http") != MCP_PORT:
        problem(f"{at}: Envoy's port http is {ports.get('http')}, the catalog listens on {MCP_PORT}")
    if envoy.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/ready":
        problem(f"{at}: Envoy's readiness probe is not GET /ready")
    if cp.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health":
        problem(f"{at}: the control plane's liveness probe is not GET /health")
    admin = next((e["value"] for e in cp.get("env", []) if e["name"] == "MCP_GATEWAY_ADMIN_LISTEN"), "")
    if not admin.endswith(f":{ports.get('admin')}"):
        problem(f"{at}: MCP_GATEWAY_ADMIN_LISTEN {admin!r} is not the admin port {ports.get('admin')}")
    annotations = d["spec"]["template"]["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/port") != str(MCP_PORT) or annotations.get("prometheus.io/path") != "/metrics":
        problem(f"{at}: the scrape annotations are not port {MCP_PORT} path /metrics")
    args = envoy.get("args", [])
    config = args[args.index("-c") + 1] if "-c" in args else None
    mounts = {m["mountPath"]: m["name"] for m in envoy.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    if config is None or mounts.get(str(Path(config).parent)) is None:
        problem(f"{at}: Envoy's -c {config} is not in a mounted volume")
    elif volumes[mounts[str(Path(config).parent)]].get("configMap", {}).get("name") != "mcp-gateway-envoy":
        problem(f"{at}: Envoy's bootstrap is not the mcp-gateway-envoy ConfigMap")
    for e in cp.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and (ref["name"] != secret["metadata"]["name"] or ref["key"] not in secret["stringData"]):
            problem(f"{at}: {e['name']} reads secret {ref['name']}/{ref['key']}, which secret.example.yaml does not have")
    check_envoy_image(envoy["image"], at)
    service = next(x for x in docs if x["kind"] == "Service")
    if not service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items():
        problem(f"{at}: the Service's selector does not select the pods")
    if [p["targetPort"] for p in service["spec"]["ports"]] != ["http"]:
        problem(f"{at}: the Service does not target Envoy's http port")


def check_envoy_image(image: str, where: str) -> None:
    version = re.search(r'^ENVOY_VERSION=(\S+)', (ROOT / "scripts" / "setup.sh").read_text(), re.M)
    want = f"envoyproxy/envoy:v{version.group(1).strip(chr(34))}" if version else None
    if image != want:
        problem(f"{where}: Envoy image {image}, but the tests run Envoy {want}")


# --------------------------------------------------------------- catalogs
def check_catalogs(gateway: Path) -> None:
    k8s = next(d for d in load_all(K8S / "catalog-configmap.yaml"))
    env = {"PATH": os.environ.get("PATH", ""), "MCP_GATEWAY_SESSION_KEY": "ab" * 32, "MCP_GATEWAY_API_KEY": "deploy-check-key-0123456789"}
    for name, text in [("deploy/kubernetes/catalog-configmap.yaml", k8s["data"]["catalog.yaml"]), ("deploy/compose/catalog.yaml", (ROOT / "deploy" / "compose" / "catalog.yaml").read_text())]:
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"deploy-check-{os.getpid()}.yaml"
        path.write_text(text)
        try:
            done = subprocess.run([str(gateway), "--validate", str(path)], capture_output=True, text=True, env=env, timeout=60)
        finally:
            path.unlink()
        if done.returncode != 0:
            problem(f"{name}: mcp-gateway --validate refuses it:\n{done.stderr.strip()}")
        elif "authentication: OFF" in done.stdout:
            problem(f"{name}: a deployment catalog must turn authentication on")
        listen = yaml.safe_load(text)["gateway"]["listen"]
        if listen != f"0.0.0.0:{MCP_PORT}":
            problem(f"{name}: gateway.listen is {listen}, the container port is {MCP_PORT}")


# ---------------------------------------------------------------- compose
def check_compose() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ["control-plane", "gateway", "edge", "echo", "prometheus", "grafana", "redis"]:
        if name not in services:
            problem(f"docker-compose.yml has no service {name}")
    for name, s in services.items():
        if s.get("read_only") is not True:
            problem(f"docker-compose.yml: service {name} is not read_only")
        # Hardened, each: no privilege to gain, limits, a health check, logs that rotate.
        if "no-new-privileges:true" not in s.get("security_opt", []):
            problem(f"docker-compose.yml: service {name} lacks security_opt no-new-privileges:true")
        if s.get("cap_drop") != ["ALL"]:
            problem(f"docker-compose.yml: service {name} does not drop every capability (cap_drop: [ALL])")
        for limit in ("cpus", "mem_limit", "pids_limit"):
            if limit not in s:
                problem(f"docker-compose.yml: service {name} has no {limit}")
        test = s.get("healthcheck", {}).get("test")
        if not (isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL")):
            problem(f"docker-compose.yml: service {name} has no health check command")
        options = s.get("logging", {}).get("options", {})
        if not (options.get("max-size") and options.get("max-file")):
            problem(f"docker-compose.yml: service {name}'s logs do not rotate (logging.options max-size, max-file)")
        if s.get("user") in ("0", "root"):
            problem(f"docker-compose.yml: service {name} runs as root")
        for v in s.get("volumes", []):
            source = v.split(":")[0]
            if source.startswith(".") and not (ROOT / source).exists():
                problem(f"docker-compose.yml: service {name} mounts {source}, which does not exist")
    for envoy in ("gateway", "edge"):
        if services.get(envoy):
            check_envoy_image(services[envoy]["image"], f"docker-compose.yml ({envoy})")
            if services[envoy].get("user") in (None, "0", "root"):
                problem(f"docker-compose.yml: {envoy}'s Envoy runs as root")
    cp = services.get("control-plane", {})
    if cp.get("environment", {}).get("MCP_GATEWAY_CATALOG") != "/etc/mcp-gateway/catalog.yaml" or "./deploy/compose:/etc/mcp-gateway:ro" not in cp.get("volumes", []):
        problem("docker-compose.yml: the control plane does not read deploy/compose/catalog.yaml")
    # --scale gateway=2: the replicas publish nothing and have no fixed name;
    # the edge publishes the one MCP port.
    gateway = services.get("gateway", {})
    if gateway.get("ports") or gateway.get("container_name"):
        problem("docker-compose.yml: the gateway service cannot scale with published ports or a container_name")
    if "./deploy/compose/envoy.yaml:/etc/envoy/gateway.yaml:ro" not in gateway.get("volumes", []):
        problem("docker-compose.yml: the gateway's Envoy does not run deploy/compose/envoy.yaml")
    if [f"{MCP_PORT}:{MCP_PORT}"] != services.get("edge", {}).get("ports"):
        problem(f"docker-compose.yml: the edge does not publish the MCP port {MCP_PORT} (and only it)")
    for name, s in services.items():
        if name not in ("edge", "prometheus", "grafana") and s.get("ports"):
            problem(f"docker-compose.yml: service {name} publishes {s['ports']}: only the edge publishes the gateway")
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    discovered = [(n, sd.get("port")) for job in prometheus["scrape_configs"] for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
    if discovered != [("gateway", MCP_PORT)] or any(job.get("static_configs") for job in prometheus["scrape_configs"]):
        problem(f"deploy/prometheus/prometheus.yml scrapes {discovered}, not every replica of the gateway service on port {MCP_PORT}")
    if [j["job_name"] for j in prometheus["scrape_configs"]] != ["mcp-gateway"]:
        problem("deploy/prometheus/prometheus.yml: the job must be mcp-gateway (the alerts' up{job=...})")
    datasource = yaml.safe_load((ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    if datasource["datasources"][0]["url"] != "http://prometheus:9090":
        problem("Grafana's data source is not the prometheus service")


# ---------------------------------------------------------------- metrics
def documented_metrics() -> set[str]:
    text = (ROOT / "docs" / "design" / "observability.md").read_text()
    return set(re.findall(r"^\| `(mcp_\w+)`", text, re.M)) | set(re.findall(r"` / `(mcp_\w+)`", text))


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b", without_labels))
    return {w for w in words if w.startswith(("mcp_", "envoy_")) or w in PROMETHEUS_BUILTINS}


def exported(name: str, documented: set[str]) -> bool:
    if name.startswith("envoy_") or name in PROMETHEUS_BUILTINS:
        return True  # Envoy's own; tests/e2e/test_monitoring.py runs the queries against a real Envoy
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    return name in documented or base in documented


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "mcp-gateway.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        problem("the dashboard has panels with the same id")
    out = []
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problem(f"dashboard panel {p['title']!r} does not use the datasource variable")
        if not p.get("targets"):
            problem(f"dashboard panel {p['title']!r} has no query")
        out += [(p["title"], t["expr"]) for t in p.get("targets", [])]
    return out


def check_metrics() -> None:
    documented = documented_metrics()
    if len(documented) < 15:
        problem(f"found only {len(documented)} metrics in docs/design/observability.md's tables")
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    exprs = [(f"alert {r['alert']}", r["expr"]) for g in alerts["groups"] for r in g["rules"]] + [(f"panel {t!r}", e) for t, e in dashboard_exprs()]
    for where, expr in exprs:
        for name in metric_names(expr):
            if not exported(name, documented):
                problem(f"{where} uses {name}, which the gateway does not export (docs/design/observability.md)")
    names = {r["alert"] for g in alerts["groups"] for r in g["rules"]}
    for want in ["MCPGatewayDown", "MCPGatewayHighErrorRate", "MCPGatewayConfigNacked", "MCPGatewayUpstreamDown"]:
        if want not in names:
            problem(f"deploy/prometheus/alerts.yml has no {want}")


def check_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for mention in ["deploy/kubernetes", "--profile monitoring", "docs/operations.md"]:
        if mention not in readme:
            problem(f"README.md does not mention {mention}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--render", type=Path, help="write the sized Kubernetes manifests here")
    parser.add_argument("--fix", action="store_true", help="rewrite deploy/kubernetes/envoy-configmap.yaml")
    parser.add_argument("--gateway", type=Path, default=ROOT / "target" / "debug" / "mcp-gateway")
    args = parser.parse_args()
    if not args.gateway.exists():
        print(f"{args.gateway} is missing: run `make build`", file=sys.stderr)
        return 1
    check_envoy_configmap(args.fix)
    check_compose_bootstrap(args.fix)
    check_kubernetes(args.render)
    check_catalogs(args.gateway)
    check_compose()
    check_metrics()
    check_readme()
    for p in problems:
        print(f"deploy: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
