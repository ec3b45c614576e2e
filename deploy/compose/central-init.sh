#!/bin/sh
# deploy/compose.yaml, central-init: central's migrations first, then, on the first start only, two API keys in
# $SMOOTH_EDGE_KEYS_DIR: sync.key (the edge replicates with it) and admin.key (for you and the seed).
# Both users are admins (an admin's first key holds every scope, sync included); in production give an edge a key
# with the sync scope only (ApiKeyService.CreateApiKey, scopes ["sync"]), docs/operations.md.
set -eu
config="${SMOOTH_EDGE_CONFIG:-/etc/smooth-edge/central.toml}"
keys="${SMOOTH_EDGE_KEYS_DIR:-/var/lib/smooth-edge}"

# `user create` takes the database itself: as `migrate --config` finds it (the environment over the file).
db="${SMOOTH_EDGE_DATABASE__URL:-$(python -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["database"]["url"])' "$config")}"

smooth-edge migrate --config "$config"

new_key() {  # $1 the key file, $2 the user's e-mail; a key already made is kept
    if [ -s "$keys/$1" ]; then
        echo "central-init: $keys/$1 exists, kept"
        return 0
    fi
    created="$(smooth-edge user create --db "$db" --email "$2" --admin)"
    printf '%s\n' "$created" | tail -n 1 > "$keys/$1.partial"
    mv "$keys/$1.partial" "$keys/$1"
    echo "central-init: $2's key written to $keys/$1"
}

umask 077
new_key sync.key edge-1@compose.smooth.local
new_key admin.key admin@compose.smooth.local
