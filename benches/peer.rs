//! A peer side by side (make bench): Capsule (github.com/projectcapsule/capsule, built by
//! scripts/capsule.sh from its Go module) and roster giving the same owners the `admin`
//! ClusterRole in the same namespaces: TENANTS owners, one per tenant/organization, each with
//! NAMESPACES namespaces, on a real kube-apiserver + etcd (devcluster, audit log on).
//!
//! - Capsule: its chart's CRDs, a CapsuleConfiguration of the chart's defaults (TLS reconciler
//!   off, no admission webhooks), its manager as a local process with the control plane's
//!   kubeconfig and a throwaway webhook serving certificate; its webhooks are not registered, so
//!   the bench creates each namespace as Capsule's namespace webhook would leave it: with the
//!   Tenant as owner reference and the `capsule.clastix.io/tenant` label. Run twice, each on a
//!   fresh control plane: the chart's defaults (1 worker, 20 requests/s, burst 30), then 8
//!   workers, 200 requests/s, burst 300.
//! - roster: on a fresh control plane, `roster run --member-subjects external` (RoleBinding
//!   subjects are the same plain user names), an Organization and 10 Projects per tenant; roster
//!   writes the owner's Membership and creates the project namespaces itself.
//!
//! Each kind is first created once as a server-side dry run (the API server's first write of a
//! kind costs seconds here). Time counts from the first create (the peer already running and
//! ready): until every namespace
//! holds a RoleBinding of `admin` for its owner (a watch), and until the peer's last write
//! (Events aside) before 15 s without one. Writes come from the audit log by user agent, counted
//! from the first create to the end; RSS and its peak from /proc once quiet. Prints Markdown
//! tables (lines starting with `|`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ControlPlane, audit_writes, by_kind, kubectl, rss, start_control_plane};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

const TENANTS: usize = 20;
const NAMESPACES: usize = 10;
const IN_FLIGHT: usize = 16;
/// A peer is done when it has not written (Events aside) for this long.
const QUIET: Duration = Duration::from_secs(15);
/// And gives up waiting for that after this long.
const LIMIT: Duration = Duration::from_secs(300);

fn tenant(t: usize) -> String {
    format!("t{t:02}")
}

fn owner(t: &str) -> String {
    format!("owner@{t}.example")
}

/// Every namespace of the scenario with its owner.
fn namespaces() -> BTreeMap<String, String> {
    (0..TENANTS)
        .flat_map(|t| {
            let t = tenant(t);
            (0..NAMESPACES).map(move |n| (format!("{t}-p{n:02}"), owner(&t)))
        })
        .collect()
}

/// Waits, by a watch on every RoleBinding, until each namespace holds a binding of `admin` to
/// its owner; returns when that happened.
async fn admin_bindings(client: Client) -> Instant {
    let want = namespaces();
    let mut have = BTreeSet::new();
    let mut stream = watcher(Api::<RoleBinding>::all(client), watcher::Config::default())
        .applied_objects()
        .boxed();
    while let Some(rb) = stream.try_next().await.expect("watch rolebindings") {
        let ns = rb.namespace().unwrap_or_default();
        let Some(owner) = want.get(&ns) else { continue };
        let binds = rb.role_ref.kind == "ClusterRole"
            && rb.role_ref.name == "admin"
            && rb
                .subjects
                .iter()
                .flatten()
                .any(|s| s.kind == "User" && &s.name == owner);
        if binds {
            have.insert(ns);
            if have.len() == want.len() {
                break;
            }
        }
    }
    Instant::now()
}

/// A server-side dry run of creating `obj` (its namespace: `default`), whatever the answer: the
/// API server's first write of a kind pays for its schema and rules (seconds on 2 cores), which
/// is no peer's time.
async fn warm_up(client: &Client, obj: serde_json::Value) {
    let gvk = GroupVersionKind::try_from(&kube::api::TypeMeta {
        api_version: obj["apiVersion"].as_str().unwrap_or_default().to_string(),
        kind: obj["kind"].as_str().unwrap_or_default().to_string(),
    })
    .expect("gvk");
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .expect("discovery");
    let api: Api<DynamicObject> = match caps.scope {
        kube::discovery::Scope::Namespaced => Api::namespaced_with(client.clone(), "default", &ar),
        kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
    };
    let pp = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let obj: DynamicObject = serde_json::from_value(obj).expect("object");
    let _ = api.create(&pp, &obj).await;
}

/// One peer's run.
struct Run {
    bindings: Duration,
    last_write: Duration,
    writes: BTreeMap<String, usize>,
    rss: f64,
    peak: f64,
}

fn without_events(w: &BTreeMap<String, usize>) -> usize {
    w.iter()
        .filter(|(k, _)| !k.contains(" events"))
        .map(|(_, v)| v)
        .sum()
}

fn events(w: &BTreeMap<String, usize>) -> usize {
    w.iter()
        .filter(|(k, _)| k.contains(" events"))
        .map(|(_, v)| v)
        .sum()
}

/// After every admin binding is there: waits until the peer (user agent `agent`) has not
/// written for QUIET, then counts its writes since `since` and measures its memory.
async fn finish(
    cp: &ControlPlane,
    agent: &str,
    pid: u32,
    since: Timestamp,
    started: Instant,
    done: Instant,
) -> Run {
    let last = loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let last = audit_writes(&cp.audit, agent)
            .into_iter()
            .filter(|w| !w.resource.starts_with("events"))
            .filter_map(|w| w.at)
            .filter(|at| *at >= since)
            .max()
            .unwrap_or(since);
        let idle = last.duration_until(Timestamp::now()).unsigned_abs();
        if idle >= QUIET {
            break last;
        }
        if started.elapsed() > LIMIT {
            eprintln!("peer bench: {agent} still writing after {LIMIT:?}; counting until now");
            break last;
        }
    };
    let writes = by_kind(
        audit_writes(&cp.audit, agent)
            .into_iter()
            .filter(|w| w.at.is_some_and(|at| at >= since)),
    );
    let (rss, peak) = rss(pid);
    Run {
        bindings: done.duration_since(started),
        last_write: since.duration_until(last).unsigned_abs(),
        writes,
        rss,
        peak,
    }
}

/// The chart's CapsuleConfiguration with its default values, less its admission webhooks: the
/// dynamic admission configurations are named but list no webhook, so Capsule registers none (the
/// TLS reconciler is off, as the chart has it by default).
const CAPSULE_CONFIGURATION: &str = r#"apiVersion: capsule.clastix.io/v1beta2
kind: CapsuleConfiguration
metadata:
  name: default
spec:
  cacheInvalidation: 0h30m0s
  rbac:
    administrationClusterRoles: [capsule-namespace-deleter]
    promotionClusterRoles: [capsule-namespace-provisioner, capsule-namespace-deleter]
    deleter: capsule-namespace-deleter
    provisioner: capsule-namespace-provisioner
  impersonation:
    tenantDefaultServiceAccount: default
  administrators: []
  users:
  - kind: Group
    name: projectcapsule.dev
  enableTLSReconciler: false
  forceTenantPrefix: false
  allowServiceAccountPromotion: false
  ignoreUserWithGroups: []
  protectedNamespaceRegex: ""
  admission:
    serviceName: capsule-webhook-service
    validating:
      name: capsule-dynamic-webhook
      client:
        service: {name: capsule-webhook-service, namespace: capsule-system, port: 443}
      webhooks: []
    mutating:
      name: capsule-dynamic-webhook
      client:
        service: {name: capsule-webhook-service, namespace: capsule-system, port: 443}
      webhooks: []
"#;

/// Capsule's manager as a process; killed when dropped.
struct Capsule(Child);

impl Drop for Capsule {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Capsule's CRDs and configuration on `cp`, its manager started with `flags` and ready.
fn start_capsule(cp: &ControlPlane, capsule: &Path, name: &str, flags: &[&str]) -> Capsule {
    let crds = capsule.join("crds");
    kubectl(
        cp,
        &["apply", "--server-side", "-f", crds.to_str().expect("path")],
    );
    kubectl(
        cp,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/tenants.capsule.clastix.io",
            "crd/capsuleconfigurations.capsule.clastix.io",
        ],
    );
    kubectl(cp, &["create", "namespace", "capsule-system"]);
    let dir = cp.audit.parent().expect("dir");
    let config = dir.join("capsule-configuration.yaml");
    std::fs::write(&config, CAPSULE_CONFIGURATION).expect("write the configuration");
    kubectl(
        cp,
        &[
            "apply",
            "--server-side",
            "-f",
            config.to_str().expect("path"),
        ],
    );
    // A throwaway serving certificate where the webhook server reads it.
    let certs = dir.join(format!("{name}-certs"));
    std::fs::create_dir_all(&certs).expect("certs dir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    std::fs::write(certs.join("tls.crt"), cert.cert.pem()).expect("tls.crt");
    std::fs::write(certs.join("tls.key"), cert.signing_key.serialize_pem()).expect("tls.key");
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(capsule.join("capsule-manager"))
        .args([
            "--webhook-port",
            &free_port().to_string(),
            "--webhook-cert-path",
            certs.to_str().expect("path"),
            "--metrics-addr",
            &format!("127.0.0.1:{}", free_port()),
        ])
        .args(flags)
        .env("KUBECONFIG", &cp.kubeconfig)
        .env("NAMESPACE", "capsule-system")
        .env("SERVICE_ACCOUNT", "capsule")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).expect("log"))
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("log"),
        ))
        .spawn()
        .expect("capsule-manager");
    let c = Capsule(child);
    // Ready: its health probe (fixed at :10080) answers and the Tenant controller's workers run.
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let workers = text
            .lines()
            .any(|l| l.contains("Starting workers") && l.contains("capsule/tenants"));
        if workers && common::get("127.0.0.1:10080", "/readyz").starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "Capsule did not become ready: {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

async fn capsule_run(root: &Path, capsule: &Path, name: &str, flags: &[&str]) -> Run {
    let cp = start_control_plane(root, name);
    let mut c = start_capsule(&cp, capsule, name, flags);
    let client = common::client(&cp).await;
    let watch = tokio::spawn(admin_bindings(client.clone()));
    let tenants = Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "capsule.clastix.io",
            "v1beta2",
            "Tenant",
        )),
    );
    warm_up(
        &client,
        json!({"apiVersion": "capsule.clastix.io/v1beta2", "kind": "Tenant",
            "metadata": {"name": "warm-up"},
            "spec": {"owners": [{"kind": "User", "name": "warm-up"}]}}),
    )
    .await;
    let since = Timestamp::now();
    let started = Instant::now();
    let pp = PostParams::default();
    // Tenants first (the namespaces name them as owner, with their uid), then the namespaces.
    let uids: BTreeMap<String, String> = futures::stream::iter(0..TENANTS)
        .map(|t| {
            let (tenants, pp) = (tenants.clone(), pp.clone());
            async move {
                let t = tenant(t);
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "capsule.clastix.io/v1beta2",
                    "kind": "Tenant",
                    "metadata": {"name": t},
                    "spec": {"owners": [{"kind": "User", "name": owner(&t)}]},
                }))
                .expect("tenant");
                let made = tenants.create(&pp, &obj).await?;
                Ok::<_, kube::Error>((t, made.uid().unwrap_or_default()))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await
        .expect("create tenants");
    let ns_api = Api::<Namespace>::all(client.clone());
    futures::stream::iter(namespaces())
        .map(|(ns, _)| {
            let (api, pp) = (ns_api.clone(), pp.clone());
            let t = ns.split('-').next().unwrap_or_default().to_string();
            let uid = uids.get(&t).cloned().unwrap_or_default();
            async move {
                let obj: Namespace = serde_json::from_value(json!({
                    "metadata": {
                        "name": ns,
                        "labels": {"capsule.clastix.io/tenant": t},
                        "ownerReferences": [{
                            "apiVersion": "capsule.clastix.io/v1beta2",
                            "kind": "Tenant",
                            "name": t,
                            "uid": uid,
                        }],
                    },
                }))
                .expect("namespace");
                api.create(&pp, &obj).await.map(drop)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .expect("create namespaces");
    let done = tokio::time::timeout(LIMIT, watch)
        .await
        .unwrap_or_else(|_| panic!("{name}: not every admin RoleBinding after {LIMIT:?}"))
        .expect("watch");
    let pid = c.0.id();
    let run = finish(&cp, "capsule-manager/", pid, since, started, done).await;
    if let Ok(Some(status)) = c.0.try_wait() {
        panic!("Capsule exited early ({status})");
    }
    drop(c);
    run
}

/// roster's equivalent of the scenario: per tenant a home namespace, an Organization owned by
/// the same user and 10 Projects (namespaces `<tenant>-pNN`, as Capsule's). roster writes the
/// owner's Membership itself, as Capsule is given only the owner's name.
fn roster_tree() -> String {
    let mut y = String::new();
    for t in 0..TENANTS {
        let t = tenant(t);
        let o = owner(&t);
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {t}\n---\napiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: {t}\n  namespace: {t}\nspec:\n  owner: {o}\n"
        );
        for p in 0..NAMESPACES {
            let _ = write!(
                y,
                "---\napiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata:\n  name: p{p:02}\n  namespace: {t}\nspec: {{}}\n"
            );
        }
    }
    y
}

async fn roster_run(root: &Path) -> Run {
    let cp = start_control_plane(root, "peer-roster");
    common::install_roster_crds(&cp);
    let logs = cp.audit.parent().expect("dir").to_path_buf();
    let mut r = common::start_roster(
        &cp,
        root,
        &logs.join("roster.log"),
        &["--member-subjects", "external"],
    );
    let client = common::client(&cp).await;
    let watch = tokio::spawn(admin_bindings(client.clone()));
    for kind in [
        json!({"kind": "Organization", "metadata": {"name": "default"},
            "spec": {"owner": "warm-up@example.org"}}),
        json!({"kind": "Project", "metadata": {"name": "warm-up"}, "spec": {}}),
    ] {
        let mut obj = kind;
        obj["apiVersion"] = json!("roster.dev/v1alpha1");
        warm_up(&client, obj).await;
    }
    let since = Timestamp::now();
    let started = Instant::now();
    common::create_all(&client, &common::docs(&roster_tree()), IN_FLIGHT).await;
    let done = tokio::time::timeout(LIMIT, watch)
        .await
        .unwrap_or_else(|_| panic!("roster: not every admin RoleBinding after {LIMIT:?}"))
        .expect("watch");
    let run = finish(&cp, "roster/", r.child.id(), since, started, done).await;
    let _ = r.child.kill();
    let _ = r.child.wait();
    run
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // scripts/capsule.sh: the directory with Capsule's manager and CRDs.
    let capsule = common::built_by(root, "scripts/capsule.sh");
    let version = capsule
        .file_name()
        .map(|v| v.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let tuned_flags = [
            "--workers=8",
            "--client-connection-qps=200",
            "--client-connection-burst=300",
        ];
        let default = capsule_run(root, &capsule, "peer-capsule", &[]).await;
        eprintln!(
            "peer bench: Capsule (defaults) bound all in {:.1} s",
            default.bindings.as_secs_f64()
        );
        let tuned = capsule_run(root, &capsule, "peer-capsule-tuned", &tuned_flags).await;
        eprintln!(
            "peer bench: Capsule (tuned) bound all in {:.1} s",
            tuned.bindings.as_secs_f64()
        );
        let roster = roster_run(root).await;
        eprintln!(
            "peer bench: roster bound all in {:.1} s",
            roster.bindings.as_secs_f64()
        );

        let n = TENANTS * NAMESPACES;
        println!(
            "| {TENANTS} owners × {NAMESPACES} namespaces ({n}) | every admin binding | last write | writes (no Events) | Events | RSS settled | peak RSS |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let row = |label: &str, r: &Run| {
            println!(
                "| {label} | {:.1} s | {:.1} s | {} | {} | {:.0} MiB | {:.0} MiB |",
                r.bindings.as_secs_f64(),
                r.last_write.as_secs_f64(),
                without_events(&r.writes),
                events(&r.writes),
                r.rss,
                r.peak
            );
        };
        let ratio = |label: &str, a: &Run, b: &Run| {
            println!(
                "| {label} | {:.1}× | {:.1}× | {:.2}× | | {:.1}× | {:.1}× |",
                a.bindings.as_secs_f64() / b.bindings.as_secs_f64(),
                a.last_write.as_secs_f64() / b.last_write.as_secs_f64(),
                without_events(&a.writes) as f64 / without_events(&b.writes) as f64,
                a.rss / b.rss,
                a.peak / b.peak
            );
        };
        row(
            &format!("Capsule {version}, the chart's defaults (1 worker, 20 requests/s, burst 30)"),
            &default,
        );
        row(
            &format!("Capsule {version}, {}", tuned_flags.join(" ")),
            &tuned,
        );
        row(
            "roster --member-subjects external (creates the namespaces too)",
            &roster,
        );
        ratio("Capsule defaults / roster", &default, &roster);
        ratio("Capsule tuned / roster", &tuned, &roster);
        println!();
        println!("| writes by kind | Capsule defaults | Capsule tuned | roster |");
        println!("|---|---:|---:|---:|");
        let kinds: BTreeSet<&String> = default
            .writes
            .keys()
            .chain(tuned.writes.keys())
            .chain(roster.writes.keys())
            .collect();
        for k in kinds {
            let get = |r: &Run| r.writes.get(k).copied().unwrap_or(0);
            println!(
                "| {k} | {} | {} | {} |",
                get(&default),
                get(&tuned),
                get(&roster)
            );
        }
    });
}
