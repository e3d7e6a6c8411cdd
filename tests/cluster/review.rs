//! `roster plan` predicts the controller: the access table computed offline from a tree of
//! files is what the controller converges the cluster to (the same subjects in the same
//! RoleBindings, the same members cut off for the same reasons) — for the acme example and for a
//! generated tree of 20 organizations × 10 projects × 100 members. And the blast-radius guard:
//! a change removing more grants than `spec.maxAccessRemovals` waits, Stalled, for a person.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use roster::api::{Membership, MfaState};
use roster::controller::Settings;
use roster::grants::Grants;
use roster::review::report::Report;
use roster::review::{self, Options};

use crate::harness::{Cluster, cluster, examples_as_of_now, exclusive, root, shared, wait_for};

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// examples/acme (dates shifted to today) moved to namespace `ns`.
fn acme_in(ns: &str) -> PathBuf {
    let src = examples_as_of_now("acme");
    let out = root().join(format!("target/review-test/{}-{ns}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("dir");
    for entry in std::fs::read_dir(&src).expect("examples") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path)
            .expect("read")
            .replace("namespace: acme\n", &format!("namespace: {ns}\n"))
            .replace("namespace: acme-", &format!("namespace: {ns}-"))
            .replace("  name: acme\n", &format!("  name: {ns}\n"))
            .replace("  name: acme ", &format!("  name: {ns} "));
        std::fs::write(out.join(path.file_name().expect("name")), text).expect("write");
    }
    out
}

fn offline(paths: &[PathBuf], now: Timestamp) -> Report {
    let opts = Options::new(now);
    let schemas = review::schema::Schemas::new();
    let (tree, read) = review::read(paths, &opts, &schemas).expect("read");
    let (report, violations) = review::plan(&tree, None, read, &opts);
    assert!(violations.is_empty(), "the tree is valid: {violations:#?}");
    report
}

/// The grants roster's RoleBindings give in organizations `orgs`, read from the cluster.
async fn live_grants(client: &kube::Client, orgs: &[String]) -> Grants {
    let all: Vec<RoleBinding> = Api::<RoleBinding>::all(client.clone())
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=roster"))
        .await
        .expect("list RoleBindings")
        .items;
    let mut g = Grants::default();
    for org in orgs {
        let mine: Vec<RoleBinding> = all
            .iter()
            .filter(|rb| rb.labels().get("roster.dev/organization") == Some(org))
            .cloned()
            .collect();
        let projects = Api::<roster::api::Project>::namespaced(client.clone(), org)
            .list(&ListParams::default())
            .await
            .expect("list Projects")
            .items;
        let namespaces = roster::controller::guard::project_namespaces_of(org, &projects);
        g.0.extend(
            roster::controller::guard::grants_of(&mine, org, &namespaces, &Settings::default()).0,
        );
    }
    g
}

/// Memberships of `orgs` once every one has a status for its generation.
async fn converged_memberships(
    client: &kube::Client,
    orgs: &[String],
    count: usize,
    within: Duration,
) -> Vec<Membership> {
    let start = Instant::now();
    loop {
        let mut all = Vec::new();
        for org in orgs {
            let list = Api::<Membership>::namespaced(client.clone(), org)
                .list(&ListParams::default().labels("!roster.dev/bootstrap"))
                .await
                .expect("list Memberships");
            all.extend(list.items);
        }
        let done = all.len() == count
            && all.iter().all(|m| {
                m.status.as_ref().and_then(|s| s.observed_generation) == m.metadata.generation
            });
        if done {
            return all;
        }
        assert!(
            start.elapsed() < within,
            "{} of {count} Memberships converged after {within:?}",
            all.iter()
                .filter(|m| m.status.as_ref().and_then(|s| s.observed_generation)
                    == m.metadata.generation)
                .count()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The controller's verdicts, compared with the offline report: who is cut off and why, MFA.
fn same_cut_offs(
    report: &Report,
    live: &[Membership],
    planned_at: Timestamp,
    converged_at: Timestamp,
) {
    for m in live {
        let org = m.namespace().unwrap_or_default();
        let p = report
            .person(&org, &m.spec.email)
            .unwrap_or_else(|| panic!("{org}/{} is not in the plan", m.spec.email));
        let s = m.status.as_ref().expect("status");
        let entitled = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Entitled")
            .expect("Entitled");
        let live_cut = (entitled.status == "False").then(|| entitled.reason.clone());
        assert_eq!(
            live_cut,
            p.cut_off.as_ref().map(|c| c.reason.clone()),
            "{org}/{}: cut off (controller) vs plan",
            m.spec.email
        );
        let live_mfa = s.mfa.as_ref().map_or(MfaState::NotRequired, |x| x.state);
        assert_eq!(live_mfa, p.mfa, "{org}/{}: MFA state", m.spec.email);
        // The grace period runs from creation: between planning and convergence.
        if let (Some(live), Some(planned)) = (
            s.mfa.as_ref().and_then(|x| x.deadline.as_ref()),
            p.mfa_deadline,
        ) {
            let lag = converged_at.duration_since(planned_at);
            let d = live.0.duration_since(planned);
            assert!(
                d >= k8s_openapi::jiff::SignedDuration::ZERO && d <= lag,
                "{org}/{}: deadline {} vs planned {planned}",
                m.spec.email,
                live.0
            );
        }
    }
}

// The guard orders this test against the API server restart test; each test has a runtime of
// its own, so holding it across an await blocks nothing else.
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn plan_agrees_with_what_the_controller_converges_for_the_acme_example() {
    let _api = shared();
    let c = cluster();
    let client = c.client().await;
    let ns = unique("plan-acme-");
    let dir = acme_in(&ns);
    let planned_at = Timestamp::from_second(Timestamp::now().as_second()).expect("now");
    let report = offline(std::slice::from_ref(&dir), planned_at);

    c.kubectl_ok(&["apply", "-f", dir.to_str().expect("utf-8")]);
    let orgs = vec![ns.clone()];
    let live = converged_memberships(&client, &orgs, 13, Duration::from_secs(60)).await;
    let converged_at = Timestamp::now();
    let start = Instant::now();
    while live_grants(&client, &orgs).await != report.grants() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the bindings differ from the plan: {:#?}",
            roster::grants::diff(&report.grants(), &live_grants(&client, &orgs).await)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    same_cut_offs(&report, &live, planned_at, converged_at);
    assert!(
        report.organizations[0]
            .people
            .iter()
            .any(|p| p.cut_off.is_some()),
        "the example has someone cut off (ivan)"
    );

    // Against the cluster as it now is, the head predicts nothing new: `roster diff --live`
    // with the same files is empty, MFA deadlines included.
    let mut base = review::live(&client).await.expect("live");
    base.restrict(std::slice::from_ref(&ns));
    let opts = Options::new(Timestamp::now());
    let schemas = review::schema::Schemas::new();
    let (mut head, _) = review::read(&[dir], &opts, &schemas).expect("read");
    review::inherit(&mut head, &base);
    let before = review::report::report(&base, &opts.settings, opts.now);
    let (after, violations) = review::plan(&head, Some(&base), vec![], &opts);
    assert!(violations.is_empty(), "{violations:#?}");
    let d = review::diff::diff(&before, &after);
    let mine = |org: &str| org == ns;
    assert!(
        d.changes.iter().all(|x| !mine(&x.person.organization)),
        "{:#?}",
        d.changes
    );
    assert!(
        d.cut_offs.iter().all(|x| !mine(&x.organization)),
        "{:#?}",
        d.cut_offs
    );
    let live_people = &after
        .organizations
        .iter()
        .find(|o| o.name == ns)
        .expect("org")
        .people;
    let planned_people = &report.organizations[0].people;
    assert_eq!(live_people.len(), planned_people.len());
}

/// Creates every object of a multi-document YAML stream with the admin's client, 16 at a time
/// (kubectl would take minutes for thousands), namespaces and Organizations first.
async fn create_all(client: &kube::Client, yaml: &str) {
    let docs: Vec<serde_json::Value> = yaml
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).expect("yaml"))
        .collect();
    let rank = |d: &serde_json::Value| match d["kind"].as_str() {
        Some("Namespace") => 0,
        Some("Organization") => 1,
        _ => 2,
    };
    for stage in 0..3 {
        let batch: Vec<&serde_json::Value> = docs.iter().filter(|d| rank(d) == stage).collect();
        futures::stream::iter(batch)
            .map(|d| {
                let client = client.clone();
                async move {
                    let kind = d["kind"].as_str().unwrap_or_default();
                    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
                    let pp = PostParams::default();
                    let r = match kind {
                        "Namespace" => Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
                            .create(&pp, &serde_json::from_value(d.clone()).expect("ns"))
                            .await
                            .map(drop),
                        "Organization" => Api::<roster::api::Organization>::namespaced(client, ns)
                            .create(&pp, &serde_json::from_value(d.clone()).expect("org"))
                            .await
                            .map(drop),
                        "Project" => Api::<roster::api::Project>::namespaced(client, ns)
                            .create(&pp, &serde_json::from_value(d.clone()).expect("project"))
                            .await
                            .map(drop),
                        _ => Api::<Membership>::namespaced(client, ns)
                            .create(&pp, &serde_json::from_value(d.clone()).expect("membership"))
                            .await
                            .map(drop),
                    };
                    r.map_err(|e| format!("{kind} {ns}/{}: {e}", d["metadata"]["name"]))
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .expect("create");
    }
}

#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn plan_agrees_with_the_controller_on_twenty_organizations_of_a_hundred() {
    // 2,000 Memberships keep the shared roster busy for half a minute: alone, not beside tests
    // that wait 30 s for their own organization's first reconcile (in CI on a new machine,
    // one waited 33 s behind this tree, and failed).
    let _api = exclusive();
    let c = cluster();
    let client = c.client().await;
    let prefix = unique("gen") + "-";
    let planned_at = Timestamp::from_second(Timestamp::now().as_second()).expect("now");
    let yaml = roster::review::sample::tree_yaml(&prefix, 20, 10, 100, planned_at);
    let file = root().join(format!(
        "target/review-test/{}-{prefix}tree.yaml",
        std::process::id()
    ));
    std::fs::create_dir_all(file.parent().expect("dir")).expect("dir");
    std::fs::write(&file, &yaml).expect("write");
    let report = offline(std::slice::from_ref(&file), planned_at);
    assert_eq!(report.organizations.len(), 20);

    create_all(&client, &yaml).await;
    let orgs: Vec<String> = report
        .organizations
        .iter()
        .map(|o| o.name.clone())
        .collect();
    let live = converged_memberships(&client, &orgs, 2000, Duration::from_secs(300)).await;
    let converged_at = Timestamp::now();
    let want = report.grants();
    let start = Instant::now();
    loop {
        let got = live_grants(&client, &orgs).await;
        if got == want {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the bindings differ from the plan: {} grants live, {} planned; first difference: {:?}",
            got.len(),
            want.len(),
            roster::grants::diff(&want, &got).first()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    same_cut_offs(&report, &live, planned_at, converged_at);
    let cut = live
        .iter()
        .filter(|m| {
            m.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Entitled" && c.status == "False")
            })
        })
        .count();
    assert_eq!(
        cut,
        20 * 7,
        "disabled and expired members in every organization"
    );
    let _ = Path::new(&file);
}

fn condition(c: &Cluster, ns: &str, t: &str) -> String {
    c.kubectl_ok(&[
        "get",
        "organization",
        ns,
        "-n",
        ns,
        "-o",
        &format!(r#"jsonpath={{.status.conditions[?(@.type=="{t}")].status}}/{{.status.conditions[?(@.type=="{t}")].reason}}"#),
    ])
}

fn bound(c: &Cluster, ns: &str, rb: &str) -> String {
    c.kubectl_try(&[
        "get",
        "rolebinding",
        rb,
        "-n",
        ns,
        "-o",
        "jsonpath={.subjects[*].name}",
    ])
    .unwrap_or_default()
}

#[test]
fn a_large_removal_waits_stalled_until_a_person_acknowledges_it() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("guard");
    let org = |limit: &str, annotation: &str| {
        format!(
            "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata:\n  name: {ns}\n  namespace: {ns}\n  annotations: {{{annotation}}}\nspec:\n  owner: alice@acme.example\n  {limit}\n"
        )
    };
    let project = format!(
        "apiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata: {{name: web, namespace: {ns}}}\nspec: {{}}\n"
    );
    let member = |name: &str, extra: &str| {
        format!(
            "apiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  email: {name}@acme.example\n  role: Member\n  projects: [{{name: web, role: Developer}}]\n{extra}"
        )
    };
    let apply = |docs: &[String]| {
        let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(&docs.join("---\n")));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    apply(&[
        org("maxAccessRemovals: 0", ""),
        project.clone(),
        member("bob", ""),
        member("carl", ""),
        member("dave", ""),
    ]);
    let web = format!("{ns}-web");
    wait_for("the first convergence", Duration::from_secs(30), || {
        (bound(c, &web, "roster-developer")
            .split_whitespace()
            .count()
            == 3)
            .then_some(())
    });
    // The status is written after the bindings, in the same reconcile.
    wait_for(
        "the status of the convergence",
        Duration::from_secs(30),
        || (condition(c, &ns, "Ready") == "True/Converged").then_some(()),
    );
    assert_eq!(condition(c, &ns, "Stalled"), "False/Converged");

    // The change reviewed first, as a CI job would: bob and carl leave project web, dave is
    // disabled. Four grants go (over --max-removals 2: exit 2); dave's are a cut-off and never
    // held, so the fingerprint to acknowledge is that of bob's and carl's two — the one roster
    // will show.
    let member_without_web = |name: &str| {
        format!(
            "apiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  email: {name}@acme.example\n  role: Member\n"
        )
    };
    let head = c.dir.join(format!("guard-head-{ns}"));
    std::fs::create_dir_all(&head).expect("dir");
    std::fs::write(
        head.join("org.yaml"),
        [
            org("maxAccessRemovals: 0", ""),
            project.clone(),
            member_without_web("bob"),
            member_without_web("carl"),
            member("dave", "  disabled: true\n"),
        ]
        .join("---\n"),
    )
    .expect("write");
    let out = c.roster(
        &[
            "diff",
            "--live",
            "--head",
            head.to_str().expect("utf-8"),
            "--max-removals",
            "2",
        ],
        &[],
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.starts_with("4 grant(s) removed"), "{said}");
    let reviewed = said
        .split("removals fingerprint: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("a fingerprint")
        .to_string();

    // bob and carl leave project web: two grants.
    apply(&[member_without_web("bob"), member_without_web("carl")]);
    // kubectl applies one document after the other: wait for the hold of both.
    wait_for(
        "Stalled=True for bob and carl",
        Duration::from_secs(30),
        || {
            let m = c.kubectl_try(&[
                "get",
                "organization",
                &ns,
                "-n",
                &ns,
                "-o",
                r#"jsonpath={.status.conditions[?(@.type=="Stalled")].message}"#,
            ])?;
            (condition(c, &ns, "Stalled") == "True/AccessRemovalsHeld" && m.contains("removes 2 "))
                .then_some(())
        },
    );
    let message = c.kubectl_ok(&[
        "get",
        "organization",
        &ns,
        "-n",
        &ns,
        "-o",
        r#"jsonpath={.status.conditions[?(@.type=="Stalled")].message}"#,
    ]);
    assert!(
        message.contains("removes 2 access grants, more than spec.maxAccessRemovals (0)"),
        "{message}"
    );
    assert_eq!(condition(c, &ns, "Ready"), "False/AccessRemovalsHeld");
    // kstatus readers see it as a failure at once: kubectl wait on the condition returns.
    c.kubectl_ok(&[
        "wait",
        "--for=condition=Stalled",
        "--timeout=5s",
        "organization",
        &ns,
        "-n",
        &ns,
    ]);
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        &format!("involvedObject.name={ns},type=Warning"),
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("AccessRemovalsHeld"), "{events}");
    // Nothing of the change was applied: bob and carl still hold web.
    std::thread::sleep(crate::harness::RESYNC * 2);
    assert_eq!(
        bound(c, &web, "roster-developer")
            .split_whitespace()
            .count(),
        3
    );

    // A cut-off is not held back: disabling dave removes him at once, the held change waits.
    apply(&[member("dave", "  disabled: true\n")]);
    wait_for(
        "dave cut off while the change is held",
        Duration::from_secs(30),
        || {
            let b = bound(c, &web, "roster-developer");
            (!b.contains("dave@") && b.contains("bob@") && b.contains("carl@")).then_some(())
        },
    );

    // Acknowledged by its fingerprint — the one the review printed, and the Event's (the
    // condition, which Members read, does not give it) — the change goes through. The Event
    // of the held change of two removals: kubectl applied bob's first (one).
    let fingerprint = wait_for(
        "the Event of the held change",
        Duration::from_secs(30),
        || {
            let notes = c.kubectl_try(&[
                "get",
                "events",
                "-n",
                &ns,
                "--field-selector",
                &format!("involvedObject.name={ns},reason=AccessRemovalsHeld"),
                "-o",
                "jsonpath={.items[*].message}",
            ])?;
            notes
                .split("this change removes ")
                .find(|e| e.starts_with("2 access grants"))
                .and_then(|e| e.split("accept-removals=").nth(1))
                .and_then(|s| s.split_whitespace().next())
                .map(str::to_string)
        },
    );
    assert!(!message.contains(&fingerprint), "{message}");
    assert_eq!(
        fingerprint, reviewed,
        "roster diff and the controller name the same change"
    );
    c.kubectl_ok(&[
        "annotate",
        "organization",
        &ns,
        "-n",
        &ns,
        &format!("roster.dev/accept-removals={fingerprint}"),
    ]);
    wait_for("the change applied", Duration::from_secs(30), || {
        bound(c, &web, "roster-developer").is_empty().then_some(())
    });
    wait_for("Ready again", Duration::from_secs(30), || {
        (condition(c, &ns, "Ready") == "True/Converged"
            && condition(c, &ns, "Stalled") == "False/Converged")
            .then_some(())
    });
}

/// The account page's kubeconfig, used as downloaded: kubectl logs in through `kubectl roster
/// login` and gets exactly the member's RBAC; `kubectl roster whoami` tells the member who they
/// are; `kubectl roster access` tells an admin what the member reaches and why, and why not once
/// the member is disabled.
#[allow(clippy::await_holding_lock)]
#[tokio::test]
async fn a_downloaded_kubeconfig_works_and_whoami_and_access_explain_it() {
    use base64::Engine;
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("kubeconfig");
    let carl = "  projects: [{name: one, role: Developer}, {name: two, role: Viewer}]";
    let out = c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&crate::harness::small_org(&ns, "alice", carl)),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::harness::accept(c, &ns, "carl").await;
    let form = crate::harness::form(&[
        ("organization", &ns),
        ("email", "carl@acme.example"),
        ("password", crate::harness::PASSWORD),
        ("code", ""),
    ]);
    let (status, page) = crate::harness::identity_request(
        c,
        "POST",
        "/login",
        "application/x-www-form-urlencoded",
        &form,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let data = page
        .split("href=\"data:application/yaml;base64,")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no kubeconfig on the account page: {page}"));
    let text = base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64");
    let dir = c.dir.join(format!("download-{ns}"));
    std::fs::create_dir_all(dir.join("bin")).expect("dir");
    let kubeconfig = dir.join(format!("{ns}.kubeconfig"));
    std::fs::write(&kubeconfig, &text).expect("write the download");
    // kubectl finds roster as its plugin `kubectl-roster` on the PATH, as the README installs it.
    let plugin = dir.join("bin/kubectl-roster");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_roster"), &plugin).expect("symlink");
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cache = dir.join("cache");
    let env = [
        ("PATH", path.as_str()),
        ("ROSTER_PASSWORD", crate::harness::PASSWORD),
        ("ROSTER_CODE", ""),
        ("XDG_CACHE_HOME", cache.to_str().expect("utf-8")),
    ];
    let kubectl = |args: &[&str]| c.kubectl_as(&kubeconfig, args, &env);
    let allowed = kubectl(&["get", "configmaps", "-n", &format!("{ns}-one")]);
    assert!(
        allowed.status.success(),
        "Developer of one: {}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let refused = kubectl(&["create", "configmap", "x", "-n", &format!("{ns}-two")]);
    assert!(!refused.status.success(), "Viewer of two may not write");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("forbidden"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let home = kubectl(&["get", "configmaps", "-n", &ns]);
    assert!(
        !home.status.success(),
        "a Member reads no ConfigMaps in the organization's namespace"
    );

    let who = kubectl(&["roster", "whoami"]);
    let said = String::from_utf8_lossy(&who.stdout);
    assert!(
        who.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&who.stderr)
    );
    assert!(
        said.contains(&format!(
            "carl@acme.example in organization {ns} (Membership carl)"
        )),
        "{said}"
    );
    assert!(
        said.contains("role:      Member") && said.contains("token:     valid until"),
        "{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.trim_start().starts_with("one") && l.ends_with("Developer")),
        "{said}"
    );

    // The admin asks why.
    let access = c.roster(&["access", "carl@acme.example", "-n", &ns], &[]);
    let said = String::from_utf8_lossy(&access.stdout);
    assert!(
        access.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&access.stderr)
    );
    assert!(
        said.contains(&format!(
            "one ({ns}-one): Developer: declared in Membership carl"
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "two ({ns}-two): Viewer: declared in Membership carl"
        )),
        "{said}"
    );
    let owner = c.roster(
        &[
            "access",
            "alice@acme.example",
            "--project",
            "two",
            "-n",
            &ns,
        ],
        &[],
    );
    let said = String::from_utf8_lossy(&owner.stdout);
    assert!(
        said.contains("Admin: the owner is Admin of every project") && !said.contains("one ("),
        "{said}"
    );
    let nobody = c.roster(&["access", "mallory@evil.example", "-n", &ns], &[]);
    assert_eq!(
        nobody.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&nobody.stderr)
    );

    c.kubectl_ok(&[
        "patch",
        "membership",
        "carl",
        "-n",
        &ns,
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"disabled":true}}"#,
    ]);
    wait_for(
        "access to say carl is cut off",
        Duration::from_secs(30),
        || {
            let out = c.roster(
                &["access", "carl@acme.example", "--project", "one", "-n", &ns],
                &[],
            );
            let said = String::from_utf8_lossy(&out.stdout).into_owned();
            (said.contains("cut off from everything: membership is disabled")
                && said.contains("one (")
                && said.contains("no access"))
            .then_some(())
        },
    );
    let who = kubectl(&["roster", "whoami"]);
    assert!(
        !who.status.success(),
        "a disabled member's token is refused"
    );
    assert!(
        !kubectl(&["get", "configmaps", "-n", &format!("{ns}-one")])
            .status
            .success()
    );
}
