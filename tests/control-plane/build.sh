#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, etcd and kubectl from the Go modules pinned in
# go.mod/go.sum — and for the test node kubelet, kube-proxy, kube-scheduler and the sandbox
# (pause) image — and the devcluster launcher beside them, and prints the directory holding them. The binaries are cached
# outside git, keyed by a hash of go.mod, go.sum, the recipe version below and the Go version, so
# a second run costs a hash and a stat.
#
#   ROSTER_CP_CACHE   cache root (default: $XDG_CACHE_HOME/roster/control-plane or ~/.cache/...)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: no Go toolchain on PATH; the local control plane is compiled from Go modules" >&2
    echo "build.sh: install Go >= $(awk '/^go /{print $2}' go.mod), put it on PATH and retry" >&2
    exit 3
fi
need=$(awk '/^go /{print $2}' go.mod)
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    echo "build.sh: go.mod needs Go >= $need, the toolchain on PATH is $have" >&2
    exit 3
fi

k8s_version=$(go list -m -f "{{.Version}}" k8s.io/kubernetes)
# Bump when the build commands below change in a way that changes the binaries.
recipe=3
key=$( { cat go.mod go.sum; echo "$recipe"; go env GOVERSION GOOS GOARCH; } | sha256sum | cut -c1-16)
cache_root=${ROSTER_CP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roster/control-plane}
out="$cache_root/$k8s_version-$key"

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

# The launcher is small and changes more often than the pinned versions: keyed on its own source.
build_devcluster() {
    local want
    want=$(cat devcluster/*.go | sha256sum | cut -c1-16)
    if [ "$(cat "$out/devcluster.key" 2>/dev/null)" != "$want" ] || [ ! -x "$out/devcluster" ]; then
        go build -trimpath -o "$out/devcluster.tmp" ./devcluster >&2
        mv "$out/devcluster.tmp" "$out/devcluster"
        echo "$want" > "$out/devcluster.key"
    fi
}

complete=yes
for b in kube-apiserver kube-controller-manager etcd kubectl kubelet kube-proxy kube-scheduler pause.tar; do
    [ -e "$out/$b" ] || complete=no
done
if [ "$complete" = yes ]; then
    build_devcluster
    echo "$out"
    exit 0
fi

mkdir -p "$cache_root"
tmp=$(mktemp -d "$cache_root/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Reproducible, small binaries; /version reports the real release instead of v0.0.0-master.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$k8s_version \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s_version" | cut -d. -f2) \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$(echo "$k8s_version" | cut -d. -f2)"
echo "build.sh: building Kubernetes $k8s_version control plane into $out (cold: ~10-20 min on 2 cores)" >&2
start=$(date +%s)
go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager >&2
go build -trimpath -ldflags "$ldflags" -o "$tmp/kubectl" k8s.io/kubernetes/cmd/kubectl >&2
go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2
# The test node (devcluster up --node).
for cmd in kubelet kube-proxy kube-scheduler; do
    go build -trimpath -ldflags "$ldflags" -o "$tmp/$cmd" "k8s.io/kubernetes/cmd/$cmd" >&2
done
# The sandbox image: a static pause packed as an OCI archive, imported into the node's
# containerd (no registry is reachable). `localhost/` keeps containerd from qualifying the name.
mkdir -p "$tmp/pause-root"
go build -trimpath -ldflags "-s -w" -o "$tmp/pause-root/pause" ./pause >&2
pause_ref="localhost/roster-pause:$key"
python3 "$here/../../scripts/oci-archive.py" "$tmp/pause-root" "$tmp/pause.tar" "$pause_ref" \
    --entrypoint /pause --user 65535:65535 --title pause --description "the test node's sandbox" >&2
echo "$pause_ref" > "$tmp/pause.ref"
rm -rf "$tmp/pause-root"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2

# Publish atomically: a concurrent or interrupted build never leaves a half-filled cache entry.
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
build_devcluster
echo "$out"
