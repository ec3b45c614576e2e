#!/bin/sh
# deploy/compose.yaml, edge: the edge's migrations first, then serve, replicating to central with the sync key
# from the environment (SMOOTH_EDGE_SYNC_KEY) or, when that is empty, the one central-init made.
set -eu
config="${SMOOTH_EDGE_CONFIG:-/etc/smooth-edge/edge.toml}"
if [ -z "${SMOOTH_EDGE_SYNC_KEY:-}" ]; then
    SMOOTH_EDGE_SYNC_KEY="$(cat "${SMOOTH_EDGE_KEYS_DIR:-/run/smooth-edge-keys}/sync.key")"
fi
export SMOOTH_EDGE_SYNC_KEY

smooth-edge migrate --config "$config"
exec smooth-edge serve --config "$config"
