#!/usr/bin/env bash
# Checks every unit here with systemd-analyze: `verify` must say nothing
# (it reports unknown keys and bad values on stderr yet exits 0, so any
# output is a failure), and `security --offline` must rate each service 2.0
# or better (1.5 when written). `verify` also needs ExecStart's binary to
# exist: the units are checked in a scratch copy that runs BINARY instead of
# /usr/local/bin/echo-server.
#
#   contrib/systemd/verify.sh [BINARY]    (default: target/debug/echo-server)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
binary="$(realpath "${1:-$here/../../target/debug/echo-server}")"
[ -x "$binary" ] || { echo "error: $binary is not an executable (build it first)" >&2; exit 1; }

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp "$here"/*.service "$here"/*.socket "$scratch"/
sed -i "s#/usr/local/bin/echo-server#$binary#" "$scratch"/*
cd "$scratch"

# Every unit file, and the template once as an instance (%i filled in).
units=(*.socket *.service echo-server@1.service)
status=0
for unit in "${units[@]}"; do
    if ! out="$(systemd-analyze verify "$unit" 2>&1)" || [ -n "$out" ]; then
        printf 'systemd-analyze verify %s:\n%s\n' "$unit" "$out" >&2
        status=1
    fi
done
for unit in echo-server.service echo-server@1.service; do
    rating="$(systemd-analyze security --offline=yes --threshold=20 "$unit" 2>&1)" || {
        printf '%s\n' "$rating" >&2
        status=1
    }
    printf '%s\n' "$rating" | grep 'Overall exposure' || true
done
[ "$status" -eq 0 ] && echo "systemd-analyze verify: ${units[*]}: clean"
exit "$status"
