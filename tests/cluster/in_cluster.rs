//! The Helm chart installed for real — `helm install`, `helm upgrade`, `helm uninstall` by the
//! helm CLI built from Go modules — against a control plane of its own: the chart installs
//! cluster-wide objects (the webhook configuration, ClusterRoles, a controller that reconciles
//! every organization) that would collide with the shared cluster's roster.
//!
//! The chart's pods run as processes (pods.rs) with the chart's arguments and ServiceAccount;
//! a proxy per Service stands in for kube-proxy. The API server reaches the webhook, the token
//! webhook and the authorization webhook through those proxies, so every replica answers.

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Cluster, PASSWORD, apiserver_client, helm, mtls_request, wait_for};
use crate::members::{apply, code, wait_field, wait_step};
use crate::pods::{self, Pod, Service};

const NS: &str = "roster-system";
const RELEASE: &str = "roster";
const LEASE: &str = "roster-leader";
const SERVING_SECRET: &str = "roster-serving";

struct ChartCluster {
    c: Cluster,
    webhook: Service,
    identity: Service,
    authn: Service,
}

static CHART_CLUSTER: OnceLock<ChartCluster> = OnceLock::new();
/// One release at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn chart_cluster() -> &'static ChartCluster {
    CHART_CLUSTER.get_or_init(|| {
        let c = Cluster::start("-chart", &[]);
        // The API server was started trusting the CA `roster certificate --keep-ca-key` made;
        // roster issues its serving certificates from it (README: "Install on a cluster").
        c.serving_secret(NS, SERVING_SECRET);
        ChartCluster {
            webhook: Service::listen(&c.webhook_addr),
            identity: Service::listen(&c.identity_addr),
            authn: Service::listen(&c.authn_addr),
            c,
        }
    })
}

/// What every install here sets: where the API server reaches roster (the proxies), the CA it
/// trusts, short resyncs. Identity on unless `identity` is false.
fn values(cc: &ChartCluster, identity: bool) -> Vec<String> {
    let c = &cc.c;
    let mut v = vec![
        format!("webhook.url=https://{}/validate", c.webhook_addr),
        format!("certificates.secretName={SERVING_SECRET}"),
        format!("certificates.extraNames={{{}}}", c.host),
        "resync=2s".to_string(),
        "logLevel=info\\,roster=debug".to_string(),
        "image.tag=test".to_string(),
    ];
    if identity {
        v.extend([
            "identity.enabled=true".to_string(),
            format!("identity.publicUrl=https://{}", c.identity_addr),
            // Cheap hashes, no per-address limit (every request comes from 127.0.0.1).
            "identity.argon2.memoryKiB=1024".to_string(),
            "identity.argon2.iterations=1".to_string(),
            "identity.rateLimit.perSource=0".to_string(),
        ]);
    }
    v
}

fn helm_in(cc: &ChartCluster, args: &[&str], values: &[String]) -> String {
    let kubeconfig = cc.c.kubeconfig.display().to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--namespace", NS, "--kubeconfig", &kubeconfig]);
    let client_ca = format!(
        "apiServerClientCA={}",
        cc.c.identity_certs.join("client-ca.crt").display()
    );
    // The webhooks answer the API server only (mTLS), identity or not.
    all.extend(["--set-file", &client_ca]);
    for v in values {
        all.extend(["--set", v]);
    }
    helm(&all)
}

/// The release's pods, and the Services' endpoints pointing at them.
struct Release<'a> {
    cc: &'a ChartCluster,
    pods: Vec<Pod>,
    next: usize,
    /// Pods whose readiness probe fails (frozen ones): not in the endpoints.
    unready: Vec<String>,
}

impl<'a> Release<'a> {
    /// `helm install` (after removing what an earlier test left), then the Deployment's pods.
    fn install(cc: &'a ChartCluster, values: &[String]) -> Release<'a> {
        uninstall(cc);
        helm_in(cc, &["install", RELEASE, "charts/roster"], values);
        cc.c.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/organizations.roster.dev",
            "crd/projects.roster.dev",
            "crd/memberships.roster.dev",
        ]);
        let mut release = Release {
            cc,
            pods: Vec::new(),
            next: 0,
            unready: Vec::new(),
        };
        let deployment = pods::deployment(&cc.c, NS, RELEASE);
        let replicas = deployment["spec"]["replicas"].as_u64().expect("replicas");
        for _ in 0..replicas {
            release.start_pod(&deployment);
        }
        release.wait_for_webhook();
        release
    }

    fn start_pod(&mut self, deployment: &Value) -> &Pod {
        let name = format!("{RELEASE}-{}", self.next);
        self.next += 1;
        let mut pod = pods::run(&self.cc.c, NS, deployment, &name);
        wait_for(
            &format!("pod {name} to be ready"),
            Duration::from_secs(60),
            || pod.ready().then_some(()),
        );
        self.pods.push(pod);
        self.route();
        self.pods.last().expect("the pod")
    }

    /// The Services' endpoints: every ready pod.
    fn route(&self) {
        let of = |port: &str| -> Vec<String> {
            self.pods
                .iter()
                .filter(|p| !self.unready.contains(&p.name))
                .filter_map(|p| p.ports.get(port).cloned())
                .collect()
        };
        self.cc.webhook.set(of("webhook"));
        self.cc.identity.set(of("identity"));
        self.cc.authn.set(of("authn"));
    }

    /// A frozen pod: out of the endpoints, and — a partition — its open connections cut.
    fn set_ready(&mut self, name: &str, ready: bool) {
        self.unready.retain(|n| n != name);
        if !ready {
            self.unready.push(name.to_string());
            let pod = self.pod(name);
            for (service, port) in [
                (&self.cc.webhook, "webhook"),
                (&self.cc.identity, "identity"),
                (&self.cc.authn, "authn"),
            ] {
                if let Some(addr) = pod.ports.get(port) {
                    service.cut(addr);
                }
            }
        }
        self.route();
    }

    fn take(&mut self, name: &str) -> Pod {
        let i = self
            .pods
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"));
        let pod = self.pods.remove(i);
        self.route();
        pod
    }

    fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name}"))
    }

    /// Until the API server calls the webhook (it picks up the caBundle asynchronously).
    fn wait_for_webhook(&self) {
        wait_for("the webhook to answer", Duration::from_secs(60), || {
            webhook_answers(&self.cc.c).then_some(())
        });
    }

    /// Stops every pod at once (as a Deployment's deletion does).
    fn stop_all(&mut self) {
        let stopping: Vec<_> = self
            .pods
            .drain(..)
            .map(|pod| std::thread::spawn(move || pod.stop()))
            .collect();
        for s in stopping {
            let _ = s.join();
        }
        self.route();
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// An object only the webhook refuses (the organization must be named after its namespace),
/// sent as a server-side dry run: true when the refusal is the webhook's.
pub(crate) fn webhook_answers(c: &Cluster) -> bool {
    let probe = "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata: {name: probe, namespace: default}\nspec: {owner: a@b.example}\n";
    let out = c.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(probe));
    String::from_utf8_lossy(&out.stderr).contains("named after its namespace")
}

fn uninstall(cc: &ChartCluster) {
    let kubeconfig = cc.c.kubeconfig.display().to_string();
    helm(&[
        "uninstall",
        RELEASE,
        "--namespace",
        NS,
        "--kubeconfig",
        &kubeconfig,
        "--ignore-not-found",
    ]);
}

pub(crate) fn lease_holder(c: &Cluster) -> String {
    c.kubectl_try(&[
        "get",
        "lease",
        LEASE,
        "-n",
        NS,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
    .unwrap_or_default()
}

fn org(ns: &str, projects: &[&str]) -> String {
    let mut yaml = format!(
        "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {ns}, namespace: {ns}}}\nspec: {{owner: owner@{ns}.example}}\n---\napiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: ann, namespace: {ns}}}\nspec: {{email: ann@{ns}.example, role: Member}}\n"
    );
    for p in projects {
        yaml.push_str(&format!(
            "---\napiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata: {{name: {p}, namespace: {ns}}}\n"
        ));
    }
    yaml
}

/// Until roster has made project `p`'s namespace with its RoleBinding for the owner.
pub(crate) fn wait_converged(c: &Cluster, ns: &str, p: &str, within: Duration) {
    wait_for(&format!("project {p} of {ns} to converge"), within, || {
        c.kubectl_try(&[
            "get",
            "rolebinding",
            "roster-admin",
            "-n",
            &format!("{ns}-{p}"),
            "-o",
            "jsonpath={.subjects[*].name}",
        ])
        .filter(|s| !s.is_empty())
    });
}

/// Writes of reconciled objects by roster replicas, in the order the API server received them:
/// (instance, verb, resource, name). Identity's writes (credentials, security logs) are any
/// replica's by design and not counted.
fn reconcile_writes(c: &Cluster, from_line: usize) -> Vec<(String, String, String, String)> {
    let log = std::fs::read_to_string(&c.audit_log).unwrap_or_default();
    let mut writes: Vec<(String, String, String, String, String)> = log
        .lines()
        .skip(from_line)
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| {
            let agent = e["userAgent"].as_str()?;
            let instance = agent
                .strip_prefix("roster/")?
                .split_once(" (")?
                .1
                .strip_suffix(')')?
                .to_string();
            let resource = e["objectRef"]["resource"].as_str()?.to_string();
            let reconciled = [
                "namespaces",
                "rolebindings",
                "organizations",
                "projects",
                "memberships",
            ];
            if !reconciled.contains(&resource.as_str()) || e["stage"] != "ResponseComplete" {
                return None;
            }
            Some((
                e["requestReceivedTimestamp"].as_str()?.to_string(),
                instance,
                e["verb"].as_str()?.to_string(),
                resource,
                e["objectRef"]["name"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect();
    writes.sort();
    writes
        .into_iter()
        .map(|(_, i, v, r, n)| (i, v, r, n))
        .collect()
}

/// The replicas that wrote, in turn: one entry per uninterrupted run of one replica's writes.
fn turns(writes: &[(String, String, String, String)]) -> Vec<String> {
    let mut turns: Vec<String> = Vec::new();
    for (instance, ..) in writes {
        if turns.last() != Some(instance) {
            turns.push(instance.clone());
        }
    }
    turns
}

fn audit_lines(c: &Cluster) -> usize {
    std::fs::read_to_string(&c.audit_log)
        .unwrap_or_default()
        .lines()
        .count()
}

fn ca_bundle(c: &Cluster) -> String {
    let b64 = c.kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        "roster.dev",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ]);
    use base64::Engine;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// helm install → one leader, every replica serving → kill the leader: the other leads within
/// 15 s and converges a change → freeze a leader (SIGSTOP) past its lease: it writes nothing
/// when it wakes → the audit log shows one writer at a time → helm upgrade rolls out without a
/// webhook request lost, caBundle kept → helm uninstall removes what it installed, and leaves
/// the CRDs, the organizations and what roster made for them.
#[test]
fn the_chart_installs_fails_over_upgrades_and_uninstalls() {
    let _serial = serial();
    let cc = chart_cluster();
    let c = &cc.c;
    let audit_from = audit_lines(c);
    let mut release = Release::install(cc, &values(cc, true));

    // The CA every replica serves from is the one the API server trusts, and the webhook
    // configuration's bundle is that CA: written by whichever replica, the same bytes.
    let ca = std::fs::read_to_string(c.identity_certs.join("ca.crt")).expect("CA");
    assert_eq!(ca_bundle(c), ca);
    let holder = wait_for("a leader", Duration::from_secs(30), || {
        Some(lease_holder(c)).filter(|h| !h.is_empty())
    });
    assert!(
        release.pods.iter().any(|p| p.name == holder),
        "the holder {holder} is one of the pods"
    );
    // And each replica says on /metrics whether it leads.
    for pod in &release.pods {
        let want = format!("roster_leader {}", u8::from(pod.name == holder));
        wait_for(
            &format!("{} to report {want}", pod.name),
            Duration::from_secs(10),
            || pods::get(pod.addr("metrics"), "/metrics").filter(|m| m.lines().any(|l| l == want)),
        );
    }

    let ns = "failover";
    c.kubectl_ok(&["create", "namespace", ns]);
    apply(c, &org(ns, &["one"]));
    wait_converged(c, ns, "one", Duration::from_secs(60));

    // A crash of the leader (SIGKILL: the lease is not given up).
    let killed = release.take(&holder);
    let start = Instant::now();
    killed.crash();
    let next = wait_for(
        "the other replica to hold the lease",
        Duration::from_secs(15),
        || Some(lease_holder(c)).filter(|h| !h.is_empty() && *h != holder),
    );
    let takeover = start.elapsed();
    eprintln!("failover after SIGKILL: {next} leads {takeover:?} after {holder} died");
    apply(c, &org(ns, &["one", "two"]));
    wait_converged(c, ns, "two", Duration::from_secs(30));
    let deployment = pods::deployment(c, NS, RELEASE);
    release.start_pod(&deployment);

    // A leader frozen past its lease (a partition, a stalled node), then woken: by its own
    // clock it is no longer the leader, and not one write of it reaches the API server.
    let frozen = next.clone();
    release.pod(&frozen).signal("STOP");
    // Its readiness probe fails from now on: out of the Services' endpoints.
    release.set_ready(&frozen, false);
    let after_freeze = wait_for(
        "another replica to take the lease from the frozen one",
        Duration::from_secs(15),
        || Some(lease_holder(c)).filter(|h| !h.is_empty() && *h != frozen),
    );
    apply(c, &org(ns, &["one", "two", "three"]));
    release.pod(&frozen).signal("CONT");
    release.set_ready(&frozen, true);
    wait_converged(c, ns, "three", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        release.pod(&frozen).log().contains("lost the lease"),
        "the woken replica knows it lost the lease"
    );

    // One writer at a time: the first leader, the one that took over from it, the one that
    // took over from the frozen one — each in one uninterrupted turn.
    let writes = reconcile_writes(c, audit_from);
    let turns = turns(&writes);
    assert_eq!(
        turns,
        vec![holder.clone(), next.clone(), after_freeze.clone()],
        "replicas' reconcile writes, in turn: {writes:?}"
    );

    // helm upgrade with a changed value: the Deployment changes, its pods are replaced one at a
    // time (new one ready first), and the API server's webhook calls never fail meanwhile.
    let before = pods::deployment(c, NS, RELEASE);
    let mut upgraded = values(cc, true);
    upgraded.retain(|v| !v.starts_with("resync="));
    upgraded.push("resync=3s".into());
    helm_in(cc, &["upgrade", RELEASE, "charts/roster"], &upgraded);
    let after = pods::deployment(c, NS, RELEASE);
    assert_ne!(
        before["spec"]["template"], after["spec"]["template"],
        "a changed value changes the pod template (a rollout)"
    );
    assert!(
        after["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|a| a == "--resync=3s")
    );
    assert_eq!(
        ca_bundle(c),
        ca,
        "helm upgrade keeps the caBundle roster wrote"
    );
    let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let prober = {
        let probing = probing.clone();
        let c: &'static Cluster = &chart_cluster().c;
        std::thread::spawn(move || {
            let (mut answered, mut failed) = (0, 0);
            while probing.load(std::sync::atomic::Ordering::SeqCst) {
                if webhook_answers(c) {
                    answered += 1;
                } else {
                    failed += 1;
                }
            }
            (answered, failed)
        })
    };
    let old: Vec<String> = release.pods.iter().map(|p| p.name.clone()).collect();
    for name in old {
        release.start_pod(&after);
        let leading = lease_holder(c) == name;
        release.take(&name).stop();
        if leading {
            // A leader stopped with SIGTERM gives its lease up: another replica takes over at
            // its next look (every 2 s), not after the lease's 10 s run out.
            let stopped = Instant::now();
            wait_for("a handover after SIGTERM", Duration::from_secs(5), || {
                Some(lease_holder(c)).filter(|h| !h.is_empty() && *h != name)
            });
            eprintln!("handover after SIGTERM: {:?}", stopped.elapsed());
        }
    }
    probing.store(false, std::sync::atomic::Ordering::SeqCst);
    let (answered, failed) = prober.join().expect("prober");
    assert!(answered > 0);
    assert_eq!(
        failed, 0,
        "webhook calls failed during the rollout ({answered} answered)"
    );
    apply(c, &org(ns, &["one", "two", "three", "four"]));
    wait_converged(c, ns, "four", Duration::from_secs(30));

    // helm uninstall: what the chart installed goes; the CRDs (Helm never deletes them), the
    // organizations and what roster made for them stay.
    release.stop_all();
    uninstall(cc);
    uninstalled_as_documented(c, ns, "four");
}

/// After `helm uninstall`: what the chart installed is gone; the CRDs (Helm never deletes them),
/// organization `ns`, project `project`'s namespace and binding, and what roster made in its own
/// namespace at run time stay.
pub(crate) fn uninstalled_as_documented(c: &Cluster, ns: &str, project: &str) {
    for (kind, name) in [
        ("validatingwebhookconfiguration", "roster.dev"),
        ("clusterrole", "roster"),
        ("clusterrole", "roster-org-owner"),
        ("clusterrolebinding", "roster"),
    ] {
        assert!(
            c.kubectl_try(&["get", kind, name]).is_none(),
            "{kind} {name} is gone"
        );
    }
    for (kind, name) in [
        ("deployment", "roster"),
        ("service", "roster-webhook"),
        ("service", "roster-identity"),
        ("serviceaccount", "roster"),
        ("role", "roster"),
        ("configmap", "roster-apiserver-client-ca"),
        ("poddisruptionbudget", "roster"),
    ] {
        assert!(
            c.kubectl_try(&["get", kind, name, "-n", NS]).is_none(),
            "{kind} {name} is gone"
        );
    }
    for crd in [
        "organizations.roster.dev",
        "projects.roster.dev",
        "memberships.roster.dev",
    ] {
        assert!(c.kubectl_try(&["get", "crd", crd]).is_some(), "{crd} stays");
    }
    assert!(
        c.kubectl_try(&["get", "organization", ns, "-n", ns])
            .is_some()
    );
    assert!(
        c.kubectl_try(&["get", "namespace", &format!("{ns}-{project}")])
            .is_some()
    );
    assert!(
        c.kubectl_try(&[
            "get",
            "rolebinding",
            "roster-admin",
            "-n",
            &format!("{ns}-{project}")
        ])
        .is_some()
    );
    // Not the chart's: made by roster at run time (keys, the serving certificate, the lease).
    for (kind, name) in [
        ("secret", SERVING_SECRET),
        ("secret", "roster-identity-keys"),
        ("lease", LEASE),
    ] {
        assert!(
            c.kubectl_try(&["get", kind, name, "-n", NS]).is_some(),
            "{kind} {name} stays"
        );
    }
}

async fn login_at(
    c: &Cluster,
    addr: &str,
    org: &str,
    email: &str,
    password: &str,
    code: Option<&str>,
) -> (u16, Value) {
    let body = serde_json::json!({"organization": org, "email": email, "password": password, "code": code});
    let (status, text) = crate::harness::identity_request_at(
        c,
        addr,
        "POST",
        "/api/v1/login",
        "application/json",
        &body.to_string(),
    )
    .await;
    (status, serde_json::from_str(&text).unwrap_or_default())
}

/// What one replica's token webhook says of `token`: the user name, or None.
async fn review_at(c: &Cluster, authn: &str, token: &str) -> Option<String> {
    let review = serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
        "spec": {"token": token}});
    let ca = std::fs::read(c.identity_certs.join("ca.crt")).expect("CA");
    let (cert, key) = apiserver_client(c);
    let (status, text) = mtls_request(
        authn,
        &ca,
        "/authenticate",
        &review.to_string(),
        Some((&cert, &key)),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("TokenReview JSON");
    (v["status"]["authenticated"] == true).then(|| {
        v["status"]["user"]["username"]
            .as_str()
            .unwrap_or("")
            .to_string()
    })
}

/// Two replicas answer logins for the same member: a TOTP code spent at one is refused at the
/// other; wrong passwords sent to both at once count exactly to the lockout limit; an unlock
/// holds on both; a token either one issued is good at both, until the member is disabled. A
/// replica stopped with SIGTERM writes the security-log entries it holds before it exits.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_decide_logins_exactly() {
    let _serial = serial();
    let cc = chart_cluster();
    let c = &cc.c;
    let mut values = values(cc, true);
    // Only the lockout counts here (the per-member rate limit is per replica).
    values.push("identity.rateLimit.perMember=0".into());
    let mut release = Release::install(cc, &values);
    let (a, b) = (&release.pods[0], &release.pods[1]);
    let (ia, ib) = (
        a.addr("identity").to_string(),
        b.addr("identity").to_string(),
    );
    let b_name = b.name.clone();

    let ns = "exact";
    c.kubectl_ok(&["create", "namespace", ns]);
    apply(c, &crate::members::org_yaml(ns, "bob", ""));
    let page = crate::harness::accept(c, ns, "carl").await;
    let (seed, enrolled_at) = crate::members::enrol_on_page(c, ns, "carl", &page).await;
    let carl = "carl@acme.example";

    // A code spent at one replica is spent at the other.
    let step = enrolled_at + 1;
    wait_step(step);
    let spend = code(&seed, step);
    let (status, body) = login_at(c, &ia, ns, carl, PASSWORD, Some(&spend)).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().expect("token").to_string();
    let (status, body) = login_at(c, &ib, ns, carl, PASSWORD, Some(&spend)).await;
    assert_eq!(status, 401, "replayed at the other replica: {body}");

    // The token one replica issued is good at both.
    let user = format!("roster:{ns}:{carl}");
    for authn in [a.addr("authn"), b.addr("authn")] {
        assert_eq!(
            review_at(c, authn, &token).await.as_deref(),
            Some(user.as_str())
        );
    }

    // Wrong passwords at both replicas at once: exactly maxFailedAttempts (3) count — the
    // replayed code above was the first failure, so two of these eight are counted, the rest
    // refused as locked.
    let attempts = (0..8).map(|i| {
        let addr = if i % 2 == 0 { ia.clone() } else { ib.clone() };
        async move { login_at(c, &addr, ns, carl, "wrong password", None).await.0 }
    });
    let mut statuses = futures::future::join_all(attempts).await;
    statuses.sort();
    assert_eq!(statuses, vec![401, 401, 423, 423, 423, 423, 423, 423]);
    let step = step + 1;
    wait_step(step);
    for addr in [&ia, &ib] {
        let (status, body) = login_at(c, addr, ns, carl, PASSWORD, Some(&code(&seed, step))).await;
        assert_eq!(
            status, 423,
            "locked at both, even with the right password: {body}"
        );
    }
    wait_field(c, ns, "carl", ".status.failedLogins", "3");

    // An unlock (handled by the leader) holds at both replicas.
    let out = c.roster(&["unlock", "carl", "-n", ns], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_field(c, ns, "carl", ".status.phase", "Active");
    let step = step + 1;
    wait_step(step);
    let (status, body) = login_at(c, &ib, ns, carl, PASSWORD, Some(&code(&seed, step))).await;
    assert_eq!(status, 200, "unlocked at the other replica: {body}");

    // Disabled: neither replica accepts the token any more.
    c.kubectl_ok(&[
        "patch",
        "membership",
        "carl",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"disabled":true}}"#,
    ]);
    let start = Instant::now();
    for authn in [a.addr("authn").to_string(), b.addr("authn").to_string()] {
        let mut refused = false;
        while !refused && start.elapsed() < Duration::from_secs(10) {
            refused = review_at(c, &authn, &token).await.is_none();
            if !refused {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(refused, "{authn} still accepts a disabled member's token");
    }
    eprintln!(
        "a disabled member's token was refused by both replicas {:?} after the change",
        start.elapsed()
    );

    // A replica stopped with SIGTERM writes what its security log holds before it exits. Just
    // after a write, the organization's next entry waits up to WRITE_EVERY for its own; a
    // replica stopped meanwhile writes it all the same, not only to its standard output.
    let carls = |log: &str| log.lines().filter(|l| l.contains(carl)).count();
    let before = carls(&c.settled_security_log(ns));
    // The first entry's write comes after this: the second's is due no sooner than WRITE_EVERY
    // after it.
    let first_sent = Instant::now();
    let (status, body) = login_at(c, &ib, ns, carl, PASSWORD, None).await;
    assert_eq!(status, 401, "a disabled member: {body}");
    wait_for(
        "the first refused login in the log",
        roster::identity::log_pacing::WRITE_EVERY,
        || (carls(&c.security_log(ns)) == before + 1).then_some(()),
    );
    let (status, body) = login_at(c, &ib, ns, carl, PASSWORD, None).await;
    assert_eq!(status, 401, "a disabled member: {body}");
    let mut b = release.take(&b_name);
    b.signal("TERM");
    let exit = b
        .exited(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{} still runs 30 s after SIGTERM", b.name));
    assert!(exit.success(), "after SIGTERM: {exit}");
    // Had the replica lived until the second entry's periodic write, this would prove nothing.
    let lived = first_sent.elapsed();
    eprintln!("SIGTERM'd replica exited {lived:?} after the first refused login");
    assert!(
        lived < roster::identity::log_pacing::WRITE_EVERY,
        "the replica exited {lived:?} after the first login: its periodic write may have come first"
    );
    assert_eq!(
        carls(&c.security_log(ns)),
        before + 2,
        "the refused login still waiting at SIGTERM is in the security log"
    );
}

/// Without roster's identity server (a managed cluster: members come from the cluster's OIDC
/// provider), `helm install` still gives a working controller and webhook.
#[test]
fn without_identity_the_chart_gives_a_controller_and_a_webhook() {
    let _serial = serial();
    let cc = chart_cluster();
    let c = &cc.c;
    let mut values = values(cc, false);
    values.push("members.subjectPrefix=oidc:".into());
    let release = Release::install(cc, &values);
    let args =
        pods::deployment(c, NS, RELEASE)["spec"]["template"]["spec"]["containers"][0]["args"]
            .clone();
    let args: Vec<&str> = args
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(args.contains(&"--member-subjects=external"), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--identity-addr")),
        "{args:?}"
    );
    assert!(
        c.kubectl_try(&["get", "service", "roster-identity", "-n", NS])
            .is_none()
    );

    let ns = "oidc";
    c.kubectl_ok(&["create", "namespace", ns]);
    apply(c, &org(ns, &["one"]));
    wait_converged(c, ns, "one", Duration::from_secs(60));
    let subjects = c.kubectl_ok(&[
        "get",
        "rolebinding",
        "roster-admin",
        "-n",
        &format!("{ns}-one"),
        "-o",
        "jsonpath={.subjects[*].name}",
    ]);
    assert!(
        subjects.contains(&format!("oidc:owner@{ns}.example")),
        "{subjects}"
    );
    assert!(webhook_answers(c));
    drop(release);
}
