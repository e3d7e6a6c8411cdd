#!/usr/bin/env bash
# Builds the helm CLI from the module pinned in go.mod/go.sum and prints the path of the binary.
# Cached outside git, keyed by a hash of go.mod, go.sum, the recipe version and the Go version,
# so a second run costs a hash and a stat (like tests/control-plane/build.sh).
#
#   ROSTER_HELM_CACHE   cache root (default: $XDG_CACHE_HOME/roster/helm or ~/.cache/...)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: no Go toolchain on PATH; helm is compiled from Go modules" >&2
    exit 3
fi

version=$(GOFLAGS=-mod=mod go list -m -f "{{.Version}}" helm.sh/helm/v4)
recipe=1
key=$( { cat go.mod go.sum; echo "$recipe"; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-16)
cache_root=${ROSTER_HELM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roster/helm}
out="$cache_root/$version-$key"

if [ -x "$out/helm" ]; then
    echo "$out/helm"
    exit 0
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
mkdir -p "$cache_root"
tmp=$(mktemp -d "$cache_root/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build.sh: building helm $version into $out (cold: a few minutes on 2 cores)" >&2
start=$(date +%s)
# helm reports its version from these; without them `helm version` says v4.0.0+unknown.
go build -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$version" \
    -o "$tmp/helm" helm.sh/helm/v4/cmd/helm >&2
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "$out/helm"
