#!/usr/bin/env bash
# make demo: a real local control plane, roster running against it, examples/ applied, and what
# roster converged them to. Running it again reuses the control plane and restarts roster.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
state=.roster-dev
mkdir -p "$state"

bin=$(tests/control-plane/build.sh)
echo "==> building roster"
cargo build --locked --quiet --bin roster
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
roster="$target_dir/debug/roster"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The API server sends members' tokens to roster's identity server (TokenReview), so the
# identity server's address and certificate are fixed before the API server starts.
if "$bin/devcluster" status --dir "$state" >/dev/null 2>&1 && [ ! -f "$state/identity/admission.yaml" ]; then
    echo "==> the running control plane was started without roster's mTLS token and authorization webhooks: restarting it"
    "$bin/devcluster" down --dir "$state" >/dev/null 2>&1 || true
fi
if "$bin/devcluster" status --dir "$state" >/dev/null 2>&1; then
    echo "==> control plane already running ($state)"
else
    identity_port=$(free_port)
    authn_port=$(free_port)
    webhook_port=$(free_port)
    echo "$identity_port" >"$state/identity-port"
    echo "$authn_port" >"$state/authn-port"
    echo "$webhook_port" >"$state/webhook-port"
    # The identity server's certificate and the API server's side: its client certificate
    # (only it may call roster's token and authorization webhooks) and the webhook
    # configuration (roster first for its members' requests, uncached; then RBAC).
    "$roster" certificate --name 127.0.0.1 --out-dir "$state/identity" \
        --authn-url "https://127.0.0.1:$authn_port" --webhook-host "127.0.0.1:$webhook_port"
    echo "==> starting the control plane (etcd + kube-apiserver $("$bin/kube-apiserver" --version | cut -d' ' -f2))"
    "$bin/devcluster" up --detach --dir "$state" --bin "$bin" -- \
        --authentication-token-webhook-config-file="$PWD/$state/identity/authenticate-webhook.kubeconfig" \
        --authentication-token-webhook-version=v1 \
        --authentication-token-webhook-cache-ttl=10s \
        --authorization-config="$PWD/$state/identity/authorization.yaml" \
        --admission-control-config-file="$PWD/$state/identity/admission.yaml" >/dev/null
fi
identity_port=$(cat "$state/identity-port")
authn_port=$(cat "$state/authn-port")
port=$(cat "$state/webhook-port")
identity_url="https://127.0.0.1:$identity_port"
export KUBECONFIG="$PWD/$state/kubeconfig"
k() { "$bin/kubectl" "$@"; }

echo "==> installing CRDs and ClusterRoles"
k apply --server-side --force-conflicts -f crds/roster.dev.yaml -f config/clusterroles.yaml >/dev/null
k wait --for=condition=Established --timeout=60s \
    crd/organizations.roster.dev crd/projects.roster.dev crd/memberships.roster.dev >/dev/null
# roster's own namespace: members' credentials, its keys, the security logs.
k create namespace roster-system --dry-run=client -o yaml | k apply -f - >/dev/null
# roster runs as a ServiceAccount of its own, not as the platform admin you act as: the
# webhook lets only roster set the labels it trusts.
k create serviceaccount roster -n roster-system --dry-run=client -o yaml | k apply -f - >/dev/null
k create clusterrolebinding roster-demo --clusterrole=cluster-admin \
    --serviceaccount=roster-system:roster --dry-run=client -o yaml | k apply -f - >/dev/null
server=$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')
k config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$state/apiserver-ca.crt"
cat >"$state/roster.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: demo
  cluster: {server: "$server", certificate-authority: "$PWD/$state/apiserver-ca.crt"}
users:
- name: roster
  user: {token: "$(k create token roster -n roster-system --duration=24h)"}
contexts:
- name: roster
  context: {cluster: demo, user: roster}
current-context: roster
KUBECONFIG
chmod 600 "$state/roster.kubeconfig"

# Restart roster so that the demo always runs the binary just built.
if pid=$(cat "$state/roster.pid" 2>/dev/null) && grep -q "roster" "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
echo "==> starting roster: controller, admission webhook on 127.0.0.1:$port, identity server at $identity_url"
echo "    (log: $state/roster.log; security events: $state/security.jsonl)"
KUBECONFIG="$PWD/$state/roster.kubeconfig" MIMALLOC_PURGE_DELAY=0 setsid nohup "$roster" run \
    --webhook-addr "127.0.0.1:$port" --webhook-client-ca "$state/identity/client-ca.crt" \
    --namespace roster-system \
    --identity-addr "127.0.0.1:$identity_port" --identity-url "$identity_url" \
    --identity-cert "$state/identity/tls.crt" --identity-key "$state/identity/tls.key" \
    --authn-addr "127.0.0.1:$authn_port" --authn-client-ca "$state/identity/client-ca.crt" \
    >"$state/security.jsonl" 2>"$state/roster.log" </dev/null &
echo $! >"$state/roster.pid"
if ! webhook_answers; then
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
echo "$identity_url" >"$state/identity-url"
link=""
for _ in $(seq 60); do
    # Each link has a Secret of its own; the Membership's status names it.
    secret=$(k get membership bob -n acme -o jsonpath='{.status.invitation.secretName}' 2>/dev/null || true)
    [ -n "$secret" ] && link=$(k get secret "$secret" -n acme -o jsonpath='{.data.link}' 2>/dev/null | base64 -d || true)
    [ -n "$link" ] && break
    sleep 0.5
done
cat <<TEXT

Identity server: $identity_url   (also in $state/identity-url; its certificate is made
locally, so the browser asks you to accept it once)
bob@acme.example's invitation (kubectl roster invite link bob -n acme):
  ${link:-"(not issued yet: kubectl describe membership bob -n acme)"}
Open it: set a password, scan the QR code with any authenticator app, log in.
Then kubectl as bob, through roster's token webhook:
  kubectl config set-credentials bob --exec-api-version=client.authentication.k8s.io/v1 \\
    --exec-command=$roster --exec-arg=login --exec-arg=--server=$identity_url \\
    --exec-arg=--organization=acme --exec-arg=--email=bob@acme.example \\
    --exec-arg=--ca-file=$PWD/$state/identity/ca.crt --exec-interactive-mode=IfAvailable
  kubectl --user bob auth whoami
  $roster security-log acme

The control plane keeps running. Try it:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$bin/kubectl
  kubectl patch membership dave -n acme --type merge -p '{"spec":{"disabled":true}}'
  kubectl get rolebinding roster-developer -n acme-payments -o wide
  kubectl describe membership dave -n acme      # Events: AccessRevoked
  kubectl auth can-i create deployments -n acme-web --as roster:acme:frank@acme.example
  kubectl delete membership alice -n acme                   # the webhook: alice is the owner
  kubectl patch membership dave -n acme --as roster:acme:bob@acme.example --type merge -p '{"spec":{"role":"Admin"}}'
make down stops everything.
TEXT
