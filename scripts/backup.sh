#!/usr/bin/env bash
# make backup / make restore: what the gateway keeps, in one archive.
#   backup  BACKUP=file.tar.gz  the catalog (CATALOG=), its pins file (the
#           approved tool definitions, gateway.pin_file or <catalog>.pins.json
#           beside it) and the env file with the keys (ENV_FILE=, .env), those
#           that exist, with a MANIFEST of where each goes back.
#   restore BACKUP=file.tar.gz  puts them back where they were; a file that
#           exists and differs is kept as <file>.before-restore, and said.
# Envoy and the control plane hold nothing else worth keeping: the rest is
# rebuilt from these (discovery, the compiled configuration).
set -euo pipefail
what=${1:?usage: backup.sh backup|restore}
CATALOG=${CATALOG:-catalog.yaml}
ENV_FILE=${ENV_FILE:-.env}
BACKUP=${BACKUP:-mcp-gateway-backup.tar.gz}

pins_of() {
    # gateway.pin_file, relative to the catalog's directory, else the default name.
    local dir file
    dir=$(dirname "$1")
    file=$(sed -n 's/^[[:space:]]*pin_file:[[:space:]]*"\{0,1\}\([^"#[:space:]]*\)"\{0,1\}.*/\1/p' "$1" 2>/dev/null | head -n1)
    if [ -n "$file" ]; then
        case $file in /*) echo "$file" ;; *) echo "$dir/$file" ;; esac
    else
        local base
        base=$(basename "$1")
        echo "$dir/${base%.*}.pins.json"
    fi
}

case $what in
backup)
    [ -f "$CATALOG" ] || { echo "backup: no catalog at $CATALOG (set CATALOG=)" >&2; exit 1; }
    files=("$CATALOG")
    pins=$(pins_of "$CATALOG")
    [ -f "$pins" ] && files+=("$pins")
    [ -f "$ENV_FILE" ] && files+=("$ENV_FILE")
    # Each file under a number, and MANIFEST saying where it goes back: the
    # names as given here (relative to where make runs, or absolute).
    umask 077
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    i=0
    for f in "${files[@]}"; do
        cp -p "$f" "$tmp/$i"
        printf '%s\t%s\n' "$i" "$f" >> "$tmp/MANIFEST"
        i=$((i + 1))
    done
    tar -czf "$BACKUP" -C "$tmp" .
    echo "backup: ${files[*]} -> $BACKUP (mode 600: it holds the keys)"
    ;;
restore)
    [ -f "$BACKUP" ] || { echo "restore: no archive at $BACKUP (set BACKUP=)" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    tar -xzf "$BACKUP" -C "$tmp"
    [ -f "$tmp/MANIFEST" ] || { echo "restore: $BACKUP is not an archive of make backup (no MANIFEST)" >&2; exit 1; }
    while IFS=$'\t' read -r i dest; do
        if [ -e "$dest" ] && ! cmp -s "$tmp/$i" "$dest"; then
            cp -p "$dest" "$dest.before-restore"
            echo "restore: $dest differed: the current one is kept as $dest.before-restore"
        fi
        mkdir -p "$(dirname "$dest")"
        cp -p "$tmp/$i" "$dest"
        echo "restore: $dest"
    done < "$tmp/MANIFEST"
    echo "restore: done; a running control plane picks the catalog up by itself (the keys need a restart of what reads .env)"
    ;;
*) echo "usage: backup.sh backup|restore" >&2; exit 2 ;;
esac
