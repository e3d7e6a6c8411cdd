#!/usr/bin/env bash
# Builds Capsule's manager (github.com/projectcapsule/capsule, cmd/controller) for the peer
# benchmark (benches/peer.rs) and prints the directory holding it: `capsule-manager` and `crds/` (the
# chart's CRDs, as shipped in the module). Like the control plane, the source comes through the Go
# module proxy configured for `go` and the binary is cached outside git, so a second run costs a
# stat.
#
#   CAPSULE_VERSION  module version (default v0.14.0: Kubernetes 0.36 libraries, as the control plane)
#   CAPSULE_SRC      a Capsule source tree to build instead of the module (always rebuilt)
#   ROSTER_CAPSULE_CACHE  cache root (default: $XDG_CACHE_HOME/roster/capsule or ~/.cache/...)
#
# Exit 3: no Go toolchain. Exit 4: the module proxy did not serve Capsule or one of its
# dependencies (the message says which); bench.sh then reports the comparison as not run.
set -euo pipefail

version=${CAPSULE_VERSION:-v0.14.0}
cache_root=${ROSTER_CAPSULE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roster/capsule}

if ! command -v go >/dev/null 2>&1; then
    echo "capsule.sh: no Go toolchain on PATH; Capsule is compiled from its Go module" >&2
    exit 3
fi
export CGO_ENABLED=0 GOTOOLCHAIN=local

# go's messages name the proxy's URL; what bench.sh copies into BENCHMARKS.md names none.
proxy_anonymous() {
    sed -E 's#[a-z]+://[^ /"]+#<module proxy>#g'
}

if [ -n "${CAPSULE_SRC:-}" ]; then
    src=$(cd "$CAPSULE_SRC" && pwd)
    out="$cache_root/local"
else
    out="$cache_root/$version"
    if [ -x "$out/capsule-manager" ] && [ -d "$out/crds" ]; then
        echo "$out"
        exit 0
    fi
    if ! json=$(cd / && GOFLAGS=-mod=mod go mod download -json "github.com/projectcapsule/capsule@$version" 2>&1); then
        echo "capsule.sh: the Go module proxy did not serve github.com/projectcapsule/capsule@$version:" >&2
        { echo "$json" | grep -E '"Error"|error|40[0-9]|50[0-9]' || echo "$json"; } | proxy_anonymous >&2
        exit 4
    fi
    src=$(echo "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    if [ -z "$src" ] || [ ! -d "$src" ]; then
        echo "capsule.sh: go mod download gave no source directory for capsule@$version" >&2
        exit 4
    fi
fi

mkdir -p "$cache_root"
tmp=$(mktemp -d "$cache_root/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Capsule's own dependencies, as its go.sum pins them (no replace directives in v0.14.0).
if ! dl=$(cd "$src" && GOFLAGS=-mod=readonly go mod download 2>&1); then
    echo "capsule.sh: the Go module proxy did not serve a dependency of Capsule ($src):" >&2
    echo "$dl" | tail -n 5 | proxy_anonymous >&2
    exit 4
fi

# Named capsule-manager: client-go's user agent is the binary's name, which is how the benchmark
# tells Capsule's writes apart in the API server's audit log.
echo "capsule.sh: building Capsule's manager from $src into $out (cold: a few minutes on 2 cores)" >&2
start=$(date +%s)
(cd "$src" && GOFLAGS=-mod=readonly go build -trimpath \
    -ldflags "-s -w -X github.com/projectcapsule/capsule/internal/version.GitTag=$version" \
    -o "$tmp/capsule-manager" ./cmd/controller) >&2
# The chart's CRDs (v1beta2 Tenants and the rest); the *.patch files beside them add the
# conversion webhook, which the benchmark does not register.
crds="$src/charts/capsule/crds"
[ -d "$crds" ] || { echo "capsule.sh: no charts/capsule/crds in $src" >&2; exit 1; }
mkdir -p "$tmp/crds"
cp "$crds"/*.yaml "$tmp/crds/"
chmod -R u+w "$tmp"
rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$tmp" "$out"
trap - EXIT
echo "capsule.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$out"
