#!/usr/bin/env bash
# make demo-in-cluster: the local control plane with one real node (containerd + kubelet; needs
# root), roster's image from `make image` installed with the Helm chart — two replicas in pods,
# reached through their Services — examples/ applied, and roster's pods next to what they
# converged. Running it again imports the image just built and rolls it out. `make down` stops
# it and puts the host back (bridge, iptables rules, sysctls, mounts).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
state=.roster-dev-node
ns=roster-system
authn_ip=10.0.0.53
identity_ip=10.0.0.54
mkdir -p "$state"

bin=$(tests/control-plane/build.sh)
helm_bin=$(tests/helm/build.sh | tail -n1)
export HELM_CACHE_HOME="$PWD/target/helm/cache" HELM_CONFIG_HOME="$PWD/target/helm/config" HELM_DATA_HOME="$PWD/target/helm/data"
running=no
if "$bin/devcluster" status --dir "$state" >/dev/null 2>&1; then
    running=yes
elif ! why=$("$bin/devcluster" preflight --bin "$bin" 2>&1); then
    echo "$why" >&2
    echo "make demo-in-cluster runs a real node and needs the above; make demo runs roster as a process instead." >&2
    exit 1
fi

echo "==> building the image (make image)"
make --no-print-directory image >/dev/null
version=$(awk -F'"' '/^version/ {print $2; exit}' Cargo.toml)
image="$PWD/target/image/roster-$version.tar"
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
roster="$target_dir/release/roster"

if [ "$running" = yes ]; then
    echo "==> control plane and node already running ($state): importing the new image"
    ctr --address "$state/containerd/containerd.sock" -n k8s.io images import "$image" >/dev/null
else
    # The API server's side of roster's webhooks, pointing at the chart's Services: its client
    # certificate (only it may call them), the token and authorization webhooks at the authn
    # Service's fixed address, the admission webhook by Service name.
    "$roster" certificate --name "roster-identity.$ns.svc" --out-dir "$state/identity" --keep-ca-key \
        --authn-url "https://$authn_ip" --authn-server-name "roster-authn.$ns.svc" \
        --webhook-host "roster-webhook.$ns.svc:443"
    echo "==> starting the control plane and a node (containerd $(containerd --version | awk '{print $3}'), kubelet $("$bin/kubelet" --version | cut -d' ' -f2))"
    "$bin/devcluster" up --detach --dir "$state" --bin "$bin" --node --image "$image" -- \
        --authentication-token-webhook-config-file="$PWD/$state/identity/authenticate-webhook.kubeconfig" \
        --authentication-token-webhook-version=v1 \
        --authentication-token-webhook-cache-ttl=10s \
        --authorization-config="$PWD/$state/identity/authorization.yaml" \
        --admission-control-config-file="$PWD/$state/identity/admission.yaml" >/dev/null
fi
export KUBECONFIG="$PWD/$state/kubeconfig"
k() { "$bin/kubectl" "$@"; }
h() { "$helm_bin" --namespace "$ns" "$@"; }

k create namespace "$ns" --dry-run=client -o yaml | k apply -f - >/dev/null
# The serving CA the API server already trusts: every replica issues its certificate from it.
k create secret generic roster-serving -n "$ns" --from-file=ca.crt="$state/identity/ca.crt" \
    --from-file=ca.key="$state/identity/ca.key" --dry-run=client -o yaml | k apply -f - >/dev/null
values=(--set certificates.secretName=roster-serving --set identity.enabled=true
    --set "identity.authnClusterIP=$authn_ip" --set-file "apiServerClientCA=$state/identity/client-ca.crt")
# The identity server as you reach it from this machine: its Service, at a fixed address that
# is in the invitation links and (the chart adds publicUrl's host) in its certificate.
identity_url="https://$identity_ip"
installed=no
h status roster >/dev/null 2>&1 && installed=yes
echo "==> helm upgrade --install roster charts/roster (image localhost/roster:$version)"
h upgrade --install roster charts/roster "${values[@]}" --set "identity.publicUrl=$identity_url" \
    --set "identity.service.clusterIP=$identity_ip" >/dev/null
if [ "$installed" = yes ]; then
    # The image's tag did not change, its contents may have: new pods run the one just imported.
    k rollout restart deployment/roster -n "$ns" >/dev/null
fi
k rollout status deployment/roster -n "$ns" --timeout=180s >/dev/null
# Replaced pods finish their preStop pause and go: show only the ones that serve.
for _ in $(seq 60); do
    [ "$(k get pods -n "$ns" -l app.kubernetes.io/name=roster --no-headers 2>/dev/null | wc -l)" -le 2 ] && break
    sleep 0.5
done

if ! webhook_answers; then
    echo "roster's webhook did not answer through its Service within 60s: kubectl logs -n $ns deployment/roster" >&2
    exit 1
fi

echo "==> applying examples/acme"
k apply -f examples/acme >/dev/null
k wait -n acme --for=condition=Ready --timeout=60s organization/acme >/dev/null
k wait -n acme --for=condition=Ready --timeout=60s projects --all >/dev/null

echo
echo "roster, in pods on the node:"
k get pods -n "$ns" -o wide
echo
k get organizations,projects,memberships -n acme
echo
echo "Leader: $(k get lease roster-leader -n "$ns" -o jsonpath='{.spec.holderIdentity}')"
link=""
for _ in $(seq 60); do
    # Each link has a Secret of its own; the Membership's status names it.
    secret=$(k get membership bob -n acme -o jsonpath='{.status.invitation.secretName}' 2>/dev/null || true)
    [ -n "$secret" ] && link=$(k get secret "$secret" -n acme -o jsonpath='{.data.link}' 2>/dev/null | base64 -d || true)
    [ -n "$link" ] && break
    sleep 0.5
done
cat <<TEXT

Identity server: $identity_url (the roster-identity Service, reachable from this machine; its
certificate is from $state/identity/ca.crt, so the browser asks you to accept it once)
bob@acme.example's invitation: ${link:-"(not issued yet: kubectl describe membership bob -n acme)"}

Try it:
  export KUBECONFIG=$KUBECONFIG
  alias kubectl=$bin/kubectl
  kubectl delete pod -n $ns \$(kubectl get lease roster-leader -n $ns -o jsonpath='{.spec.holderIdentity}')
  kubectl get lease roster-leader -n $ns -w          # the other replica takes over
  kubectl logs -n $ns deployment/roster
make down stops everything and puts the host back.
TEXT
