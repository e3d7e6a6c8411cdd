#!/usr/bin/env bash
# Sourced by `make test`: decides whether the node tier (tests/cluster/node.rs — roster's image in
# pods on a real kubelet + containerd) runs here, says so plainly, and if it does, builds the
# image (`make image`) and exports ROSTER_NODE_IMAGE for the tests. With ROSTER_REQUIRE_NODE=1
# (CI) a machine where it cannot run is an error, not a skip.
node_bin=$(tests/control-plane/build.sh) || return 1
if node_why=$("$node_bin/devcluster" preflight --bin "$node_bin" 2>&1); then
    echo "node tier: runs here (root, containerd, runc, CNI plugins, iptables); building the image"
    make --no-print-directory image >/dev/null || { echo "node tier: make image failed" >&2; return 1; }
    version=$(awk -F'"' '/^version/ {print $2; exit}' Cargo.toml)
    export ROSTER_NODE_IMAGE="$PWD/target/image/roster-$version.tar"
elif [ "${ROSTER_REQUIRE_NODE:-}" = 1 ]; then
    echo "node tier: REQUIRED (ROSTER_REQUIRE_NODE=1) but it cannot run here:" >&2
    echo "$node_why" >&2
    return 1
else
    echo "node tier: SKIPPED — $node_why"
    unset ROSTER_NODE_IMAGE
fi
