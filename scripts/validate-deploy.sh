#!/usr/bin/env bash
# scripts/validate-deploy.sh — check the deployment files without Docker or a
# cluster (`make validate-deploy`, which `make test` runs):
#
#   * YAML style of deploy/, docker-compose.yml (yamllint)
#   * docker-compose.yml against the Compose specification (check-jsonschema)
#   * the Kubernetes manifests, and the small/medium/large sizes rendered,
#     against the Kubernetes 1.37 API's schemas, strictly (kubernetes-validate)
#   * the Prometheus config, the alert rules and their unit tests (promtool)
#   * the Dockerfile (hadolint)
#   * every Envoy bootstrap in the repository (envoy --mode validate)
#   * consistency between all of them, the code and the README
#     (tests/deploy/check_deploy.py)
#
# `--fix` first rewrites deploy/kubernetes/envoy-configmap.yaml from
# envoy/gateway.yaml. The tools come from `bash scripts/setup.sh deploy`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TOOLS=$ROOT/.tools
BIN=$TOOLS/deploy-venv/bin
PROMTOOL=$TOOLS/prometheus/usr/bin/promtool
fix=()
[[ ${1:-} == --fix ]] && fix=(--fix)

for tool in "$BIN/yamllint" "$BIN/check-jsonschema" "$BIN/kubernetes-validate" "$BIN/hadolint" "$PROMTOOL" "$TOOLS/envoy-path"; do
    [[ -e $tool ]] || { echo "validate-deploy: $tool is missing: run \`bash scripts/setup.sh deploy\` (and \`make setup\`)" >&2; exit 1; }
done
ENVOY=$(cat "$TOOLS/envoy-path")
failed=0
step() {  # step NAME COMMAND...: runs it, reports, goes on
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        printf 'validate-deploy: ok    %s\n' "$name"
    else
        printf 'validate-deploy: FAIL  %s\n%s\n' "$name" "$out" >&2
        failed=1
    fi
}

render=$(mktemp -d)
trap 'rm -rf "$render"' EXIT
step "consistency (tests/deploy/check_deploy.py)" "$BIN/python" tests/deploy/check_deploy.py --render "$render" "${fix[@]}"
step "yamllint" "$BIN/yamllint" --strict -c .yamllint.yaml deploy docker-compose.yml .yamllint.yaml .hadolint.yaml
step "docker-compose.yml: Compose specification" "$BIN/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
mapfile -t manifests < <(find deploy/kubernetes -name '*.yaml' ! -name kustomization.yaml ! -path '*/sizes/*' | sort)
step "Kubernetes manifests: ${manifests[*]}" "$BIN/kubernetes-validate" --strict --quiet "${manifests[@]}"
if compgen -G "$render/*.yaml" >/dev/null; then
    step "Kubernetes sizes rendered: $(cd "$render" && echo *.yaml)" "$BIN/kubernetes-validate" --strict --quiet "$render"/*.yaml
fi
# --syntax-only: the scrape's credentials file is a Compose secret, present
# only in the container (the rule files are checked on their own below).
step "Prometheus config" "$PROMTOOL" check config --syntax-only deploy/prometheus/prometheus.yml
step "Prometheus alert rules" "$PROMTOOL" check rules deploy/prometheus/alerts.yml
step "Prometheus alert rules' tests" "$PROMTOOL" test rules deploy/prometheus/alerts.test.yml
step "The Open guide's alert rules" "$PROMTOOL" check rules deploy/prometheus/guide-alerts.yml
step "The Open guide's alert rules' tests" "$PROMTOOL" test rules deploy/prometheus/guide-alerts.test.yml
step "Dockerfile (hadolint)" "$BIN/hadolint" --config .hadolint.yaml Dockerfile
while IFS= read -r bootstrap; do
    step "Envoy --mode validate $bootstrap" "$ENVOY" --mode validate -c "$bootstrap" --log-level error
done < <(git ls-files '*.yaml' '*.yml' '*.json' | xargs grep -l -E '^(static_resources|dynamic_resources):' | sort)

if ((failed)); then
    echo "validate-deploy: some checks failed (above)" >&2
    exit 1
fi
echo "validate-deploy: all deployment files check out"
