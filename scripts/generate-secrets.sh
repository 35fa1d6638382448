#!/usr/bin/env bash
# make generate-secrets: the secrets docker-compose.yml needs, written into
# the env file `docker compose` reads (.env beside it; ENV_FILE= to choose).
# An existing file is never overwritten: a key it already has keeps its
# value (rotating one is a deliberate edit), a key it lacks is added.
# Secrets are 64 hex characters (32 random bytes) from the kernel's CSPRNG.
set -euo pipefail
ENV_FILE=${ENV_FILE:-.env}
KEYS=(MCP_GATEWAY_SESSION_KEY MCP_GATEWAY_API_KEY GRAFANA_ADMIN_PASSWORD)

secret() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

umask 077
added=()
kept=()
[ -e "$ENV_FILE" ] || : > "$ENV_FILE"
for key in "${KEYS[@]}"; do
    if grep -qE "^${key}=." "$ENV_FILE"; then
        kept+=("$key")
    else
        printf '%s=%s\n' "$key" "$(secret)" >> "$ENV_FILE"
        added+=("$key")
    fi
done
chmod 600 "$ENV_FILE"
[ ${#added[@]} -eq 0 ] || echo "generate-secrets: wrote ${added[*]} into $ENV_FILE (mode 600)"
[ ${#kept[@]} -eq 0 ] || echo "generate-secrets: kept ${kept[*]} as $ENV_FILE has them (edit the file to rotate one)"
