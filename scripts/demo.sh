#!/usr/bin/env bash
# make demo: a real local control plane, roster running against it, examples/ applied, and what
# roster converged them to. Running it again reuses the control plane and restarts roster.
set -euo pipefail
cd "$(dirname "$0")/.."
state=.roster-dev
mkdir -p "$state"

bin=$(tests/control-plane/build.sh)
echo "==> building roster"
cargo build --locked --quiet --bin roster
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
roster="$target_dir/debug/roster"

if "$bin/devcluster" status --dir "$state" >/dev/null 2>&1; then
    echo "==> control plane already running ($state)"
else
    echo "==> starting the control plane (etcd + kube-apiserver $("$bin/kube-apiserver" --version | cut -d' ' -f2))"
    "$bin/devcluster" up --detach --dir "$state" --bin "$bin" >/dev/null
fi
export KUBECONFIG="$PWD/$state/kubeconfig"
k() { "$bin/kubectl" "$@"; }

echo "==> installing CRDs and ClusterRoles"
k apply --server-side --force-conflicts -f crds/roster.dev.yaml -f config/clusterroles.yaml >/dev/null
k wait --for=condition=Established --timeout=60s \
    crd/organizations.roster.dev crd/projects.roster.dev crd/memberships.roster.dev >/dev/null

# Restart roster so that the demo always runs the binary just built.
if pid=$(cat "$state/roster.pid" 2>/dev/null) && grep -q "roster" "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "==> starting roster: controller + admission webhook on 127.0.0.1:$port (log: $state/roster.log)"
setsid nohup "$roster" run --webhook-addr "127.0.0.1:$port" >"$state/roster.log" 2>&1 </dev/null &
echo $! >"$state/roster.pid"
# The API server picks up the webhook configuration asynchronously: wait until the webhook
# refuses something only it refuses.
probe='{"apiVersion":"roster.dev/v1alpha1","kind":"Organization","metadata":{"name":"probe","namespace":"default"},"spec":{"owner":"a@b.example"}}'
webhook_ready=no
for _ in $(seq 120); do
    # kubectl fails when the webhook denies: that failure is what we wait for (pipefail is on).
    out=$(echo "$probe" | k apply --dry-run=server -f - 2>&1 || true)
    if grep -q "named after its namespace" <<<"$out"; then webhook_ready=yes; break; fi
    sleep 0.5
done
if [ "$webhook_ready" != yes ]; then
    echo "roster's webhook did not answer within 60s; see $state/roster.log" >&2
    exit 1
fi

echo "==> applying examples/acme"
k apply -f examples/acme
k wait -n acme --for=condition=Ready --timeout=60s organization/acme >/dev/null
k wait -n acme --for=condition=Ready --timeout=60s projects --all >/dev/null

echo
k get organizations,projects,memberships -n acme
echo
echo "Who has which role in each project namespace (RoleBindings roster manages):"
for ns in $(k get projects -n acme -o jsonpath='{.items[*].status.namespace}'); do
    echo "  $ns"
    k get rolebindings -n "$ns" -l app.kubernetes.io/managed-by=roster \
        -o custom-columns='BINDING:.metadata.name,CLUSTERROLE:.roleRef.name,MEMBERS:.subjects[*].name' | sed 's/^/    /'
done
cat <<TEXT

The control plane keeps running. Try it:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$bin/kubectl
  kubectl patch membership dave -n acme --type merge -p '{"spec":{"disabled":true}}'
  kubectl get rolebinding roster-developer -n acme-payments -o wide
  kubectl describe membership dave -n acme      # Events: AccessRevoked
  kubectl auth can-i create deployments -n acme-web --as frank@acme.example
  kubectl delete membership alice -n acme                   # the webhook: alice is the owner
  kubectl patch membership dave -n acme --as bob@acme.example --type merge -p '{"spec":{"role":"Admin"}}'
make down stops everything.
TEXT
