#!/usr/bin/env bash
# make down: stop roster and the local control plane started by make demo; leaves no process.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.roster-dev
if pid=$(cat "$state/roster.pid" 2>/dev/null) && grep -q "roster" "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "roster stopped (pid $pid)"
fi
rm -f "$state/roster.pid"
bin=$(tests/control-plane/build.sh)
"$bin/devcluster" down --dir "$state"
# make demo-in-cluster's control plane and node (the node's teardown puts the host back).
if [ -d .roster-dev-node ]; then
    "$bin/devcluster" down --dir .roster-dev-node
fi
