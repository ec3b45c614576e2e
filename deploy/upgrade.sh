#!/bin/sh
# Upgrade an agent installed with deploy/smooth-edge.service (docs/operations.md, "Upgrade"): back up the store
# while the agent runs, stop it, install the new version, check the configuration with it, start it (the unit
# migrates first: ExecStartPre) and wait until it serves. On any failure it stops and prints how to roll back:
# the old version and the backup it took (a database migrated by a newer version is refused by an older one).
#   sudo sh deploy/upgrade.sh 'smooth-edge==0.2.0'        (or the path of a wheel)
# Paths and names come from the environment: SMOOTH_EDGE_VENV, SMOOTH_EDGE_CONFIG, SMOOTH_EDGE_DB,
# SMOOTH_EDGE_BACKUPS, SMOOTH_EDGE_UNIT, SMOOTH_EDGE_TARGET, SMOOTH_EDGE_HEALTH_ARGS (e.g. "--ca /etc/.../ca.pem").
set -eu
new="${1:?usage: upgrade.sh PACKAGE (smooth-edge==VERSION or a wheel file)}"
venv="${SMOOTH_EDGE_VENV:-/opt/smooth-edge}"
config="${SMOOTH_EDGE_CONFIG:-/etc/smooth-edge/smooth-edge.toml}"
db="${SMOOTH_EDGE_DB:-/var/lib/smooth-edge/edge.db}"
backups="${SMOOTH_EDGE_BACKUPS:-/var/backups/smooth-edge}"
unit="${SMOOTH_EDGE_UNIT:-smooth-edge}"
target="${SMOOTH_EDGE_TARGET:-127.0.0.1:50051}"
cli="$venv/bin/smooth-edge"
old="$("$venv/bin/pip" show smooth-edge 2>/dev/null | sed -n 's/^Version: //p')"
taken=""

roll_back_hint() {
    status=$?
    [ "$status" -eq 0 ] && return 0
    echo "upgrade.sh: failed (exit $status); the agent may be stopped. To roll back:" >&2
    echo "  systemctl stop $unit" >&2
    echo "  $venv/bin/pip install 'smooth-edge==${old:-<the version before>}'" >&2
    [ -n "$taken" ] && echo "  $cli restore --db $db $taken" >&2
    echo "  systemctl start $unit" >&2
}
trap roll_back_hint EXIT

echo "1/5 back up $db into $backups (the agent keeps running)"
mkdir -p "$backups"
out="$("$cli" backup --db "$db" "$backups")"
echo "    $out"
taken="$(printf '%s\n' "$out" | sed -n 's/^backed up to \(.*\) ([0-9]* bytes.*$/\1/p')"

echo "2/5 stop $unit"
systemctl stop "$unit"

echo "3/5 install $new (installed: ${old:-unknown})"
"$venv/bin/pip" install --quiet --upgrade "$new"

echo "4/5 check $config with the new version"
"$cli" check-config "$config" --role edge

echo "5/5 start $unit: it migrates first (ExecStartPre), then serves"
systemctl start "$unit"
tries=0
# shellcheck disable=SC2086  # SMOOTH_EDGE_HEALTH_ARGS is split into arguments on purpose
until "$cli" health --target "$target" ${SMOOTH_EDGE_HEALTH_ARGS:-} > /dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        "$cli" health --target "$target" ${SMOOTH_EDGE_HEALTH_ARGS:-} || true
        echo "upgrade.sh: $unit does not serve after 60 tries: journalctl -u $unit" >&2
        exit 1
    fi
    sleep 2
done
echo "upgraded to $("$venv/bin/pip" show smooth-edge | sed -n 's/^Version: //p'); the backup before it: $taken"
