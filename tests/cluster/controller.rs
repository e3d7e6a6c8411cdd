//! The controller against the real API server: YAML applied with kubectl becomes exactly the
//! declared RoleBindings, changes converge within seconds, and an unchanged world is not written.

use std::time::{Duration, Instant};

use crate::harness::{
    Cluster, RESYNC, ROSTER_NAMESPACE, cluster, examples_as_of_now, exclusive, http_get,
    link_secret, shared, small_org, wait_for,
};

const CONVERGE: Duration = Duration::from_secs(30);
/// One full error backoff (60 s, see controller::error::backoff) plus convergence.
const RECOVERY: Duration = Duration::from_secs(90);

/// Subject names of a RoleBinding, without the e-mail domain, sorted; None if it is absent.
fn subjects(c: &Cluster, ns: &str, rb: &str) -> Option<Vec<String>> {
    let out = c.kubectl(&[
        "get",
        "rolebinding",
        rb,
        "-n",
        ns,
        "-o",
        "jsonpath={.subjects[*].name}",
    ]);
    if !out.status.success() {
        return None;
    }
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|s| {
            let user = s.split('@').next().unwrap_or(s);
            user.rsplit(':').next().unwrap_or(user).to_string()
        })
        .collect();
    names.sort();
    Some(names)
}

fn wait_subjects(c: &Cluster, ns: &str, rb: &str, want: &[&str]) {
    wait_for(
        &format!("{ns}/{rb} to bind exactly {want:?}"),
        CONVERGE,
        || (subjects(c, ns, rb)? == want).then_some(()),
    );
}

fn wait_gone(c: &Cluster, args: &[&str]) {
    wait_for(&format!("{} to be gone", args.join(" ")), CONVERGE, || {
        let out = c.kubectl(&[&["get"], args].concat());
        (!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"))
            .then_some(())
    });
}

fn jsonpath(c: &Cluster, args: &[&str], path: &str) -> String {
    let jp = format!("jsonpath={path}");
    c.kubectl_ok(&[&["get"], args, &["-o", &jp]].concat())
}

fn apply(c: &Cluster, yaml: &str) {
    let out = c.kubectl_stdin(&["apply", "-f", "-"], Some(yaml));
    assert!(
        out.status.success(),
        "kubectl apply failed: {}\n{yaml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const CARL_BOTH: &str = "  projects: [{name: one, role: Developer}, {name: two, role: Viewer}]";

#[test]
fn examples_converge_to_exactly_the_declared_bindings() {
    let _api = shared();
    let c = cluster();
    let acme = examples_as_of_now("acme");
    let acme = acme.to_str().expect("utf-8 path");
    c.kubectl_ok(&["apply", "-f", acme]);
    let expected: &[(&str, &str, &[&str])] = &[
        ("acme", "roster-owner", &["alice"]),
        ("acme", "roster-admins", &["bob", "carol"]),
        (
            "acme",
            "roster-members",
            &[
                "dave", "erin", "frank", "grace", "heidi", "judy", "mallory", "niaj", "oscar",
            ],
        ),
        ("acme-payments", "roster-admin", &["alice", "bob"]),
        ("acme-payments", "roster-developer", &["dave", "erin"]),
        ("acme-payments", "roster-viewer", &["grace", "oscar"]),
        ("acme-web", "roster-admin", &["alice", "carol"]),
        ("acme-web", "roster-developer", &["frank", "mallory"]),
        ("acme-web", "roster-viewer", &["erin", "oscar"]),
        ("acme-data", "roster-admin", &["alice", "heidi"]),
        ("acme-data", "roster-developer", &["grace"]),
        ("acme-data", "roster-viewer", &["carol", "niaj", "oscar"]),
        ("acme-infra", "roster-admin", &["alice", "judy"]),
        ("acme-infra", "roster-developer", &[]),
        ("acme-infra", "roster-viewer", &["niaj", "oscar"]),
    ];
    for (ns, rb, want) in expected {
        wait_subjects(c, ns, rb, want);
    }
    let role = jsonpath(
        c,
        &["rolebinding", "roster-developer", "-n", "acme-payments"],
        "{.roleRef.name}",
    );
    assert_eq!(role, "edit");
    wait_for("the organization's status", CONVERGE, || {
        let s = jsonpath(
            c,
            &["organization", "acme", "-n", "acme"],
            "{.status.mfaCompliant} {.status.members} {.status.projects}",
        );
        (s == "1/12 13 4").then_some(())
    });
    assert_eq!(
        jsonpath(c, &["membership", "ivan", "-n", "acme"], "{.status.phase}"),
        "Disabled"
    );
    assert_eq!(
        jsonpath(
            c,
            &["membership", "judy", "-n", "acme"],
            "{.status.mfa.state}"
        ),
        "Exempt"
    );
    assert_eq!(
        jsonpath(
            c,
            &["membership", "dave", "-n", "acme"],
            "{.status.mfa.state}"
        ),
        "Pending"
    );
    let ns_labels = jsonpath(
        c,
        &["namespace", "acme-web"],
        "{.metadata.labels.roster\\.dev/project}",
    );
    assert_eq!(ns_labels, "web");
    // The bindings are real RBAC: the API server authorizes members exactly as declared.
    let can = |who: &str, verb: &str, what: &str, ns: &str| {
        let out = c.kubectl(&[
            "auth",
            "can-i",
            verb,
            what,
            "-n",
            ns,
            "--as",
            &format!("roster:acme:{who}@acme.example"),
        ]);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    assert!(
        can("frank", "create", "deployments", "acme-web"),
        "frank is Developer in web"
    );
    assert!(
        !can("frank", "create", "deployments", "acme-payments"),
        "frank has no role in payments"
    );
    assert!(
        can("oscar", "get", "pods", "acme-web")
            && !can("oscar", "create", "deployments", "acme-web"),
        "oscar is Viewer"
    );
    assert!(
        can("heidi", "create", "rolebindings", "acme-data"),
        "heidi is project Admin in data"
    );
    assert!(
        !can("ivan", "get", "pods", "acme-infra"),
        "ivan is disabled"
    );
    assert!(
        can("alice", "delete", "deployments", "acme-infra"),
        "the owner is Admin everywhere"
    );
    assert!(
        can("bob", "create", "memberships.roster.dev", "acme")
            && !can("dave", "list", "memberships.roster.dev", "acme")
    );
    // kstatus: Ready with observedGeneration, so `kubectl wait` works.
    c.kubectl_ok(&[
        "wait",
        "-n",
        "acme",
        "--for=condition=Ready",
        "--timeout=30s",
        "organization/acme",
        "project/web",
        "membership/dave",
    ]);
}

#[test]
fn changes_converge_and_deletion_cleans_up_exactly_once() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("life");
    let (one, two) = (format!("{ns}-one"), format!("{ns}-two"));
    apply(c, &small_org(&ns, "alice", CARL_BOTH));
    wait_subjects(c, &ns, "roster-owner", &["alice"]);
    wait_subjects(c, &ns, "roster-admins", &["bob"]);
    wait_subjects(c, &one, "roster-admin", &["alice", "bob"]);
    wait_subjects(c, &one, "roster-developer", &["carl"]);
    wait_subjects(c, &two, "roster-viewer", &["carl"]);
    // The owner's Membership came with the Organization: any bootstrap placeholder roster made in
    // between is superseded and gone.
    wait_for("exactly the declared memberships", CONVERGE, || {
        let names = c.kubectl_ok(&[
            "get",
            "memberships",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        (names == "alice bob carl").then_some(())
    });

    // Disable a member: every binding loses them, and an Event says so.
    c.kubectl_ok(&[
        "patch",
        "membership",
        "carl",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"disabled":true}}"#,
    ]);
    wait_subjects(c, &one, "roster-developer", &[]);
    wait_subjects(c, &two, "roster-viewer", &[]);
    wait_subjects(c, &ns, "roster-members", &[]);
    wait_for("an AccessRevoked event for carl", CONVERGE, || {
        let events = c.kubectl_ok(&[
            "get",
            "events",
            "-n",
            &ns,
            "--field-selector",
            "involvedObject.name=carl",
            "-o",
            "jsonpath={.items[*].reason}",
        ]);
        events.contains("AccessRevoked").then_some(())
    });
    assert_eq!(
        jsonpath(c, &["membership", "carl", "-n", &ns], "{.status.phase}"),
        "Disabled"
    );

    // Enable again, without the role in project two.
    apply(
        c,
        &small_org(&ns, "alice", "  projects: [{name: one, role: Developer}]"),
    );
    wait_subjects(c, &one, "roster-developer", &["carl"]);
    wait_subjects(c, &two, "roster-viewer", &[]);

    // Move the owner: bob is Admin everywhere, alice keeps what her Membership says (nothing).
    // A new owner must have accepted their invitation.
    crate::harness::accept_invitation(c, &ns, "bob");
    apply(
        c,
        &small_org(&ns, "bob", "  projects: [{name: one, role: Developer}]"),
    );
    wait_subjects(c, &ns, "roster-owner", &["bob"]);
    wait_subjects(c, &ns, "roster-admins", &["alice"]);
    wait_subjects(c, &one, "roster-admin", &["bob"]);
    wait_subjects(c, &two, "roster-admin", &["bob"]);

    // Delete project one (namespaceDeletion: Delete): its namespace goes, the Project goes.
    c.kubectl_ok(&["delete", "project", "one", "-n", &ns, "--wait=false"]);
    wait_gone(c, &["project", "one", "-n", &ns]);
    wait_for("namespace one to be deleted", CONVERGE, || {
        let out = c.kubectl(&["get", "namespace", &one, "-o", "jsonpath={.status.phase}"]);
        (!out.status.success() || String::from_utf8_lossy(&out.stdout) == "Terminating")
            .then_some(())
    });

    // Delete project two (Retain): the namespace stays, roster's bindings go.
    c.kubectl_ok(&["delete", "project", "two", "-n", &ns, "--wait=false"]);
    wait_gone(c, &["project", "two", "-n", &ns]);
    assert!(
        c.kubectl(&["get", "namespace", &two]).status.success(),
        "Retain keeps the namespace"
    );
    let left = c.kubectl_ok(&["get", "rolebindings", "-n", &two, "-o", "name"]);
    assert_eq!(
        left.trim(),
        "",
        "roster's bindings are gone from the retained namespace"
    );

    // Delete the organization: its bindings go with it.
    c.kubectl_ok(&["delete", "organization", &ns, "-n", &ns, "--wait=false"]);
    wait_gone(c, &["organization", &ns, "-n", &ns]);
    wait_for("the org namespace bindings to go", CONVERGE, || {
        c.kubectl_ok(&[
            "get",
            "rolebindings",
            "-n",
            &ns,
            "-l",
            "app.kubernetes.io/managed-by=roster",
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
        .then_some(())
    });
}

#[test]
fn a_foreign_namespace_is_not_adopted_until_handed_over() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("foreign");
    let target = format!("{ns}-one");
    c.kubectl_ok(&["create", "namespace", &target]);
    apply(c, &small_org(&ns, "alice", CARL_BOTH));
    wait_for("project one to report NamespaceNotOwned", CONVERGE, || {
        let r = jsonpath(
            c,
            &["project", "one", "-n", &ns],
            r#"{.status.conditions[?(@.type=="Ready")].reason}"#,
        );
        (r == "NamespaceNotOwned").then_some(())
    });
    assert!(
        subjects(c, &target, "roster-admin").is_none(),
        "nothing written into a foreign namespace"
    );
    let events = c.kubectl_ok(&[
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        "involvedObject.name=one",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("NamespaceNotOwned"), "{events}");

    // The namespace's owner hands it over: not enough by itself (whoever can create a
    // namespace could annotate one in advance) ...
    c.kubectl_ok(&[
        "annotate",
        "namespace",
        &target,
        &format!("roster.dev/adopt={ns}/one"),
    ]);
    std::thread::sleep(RESYNC * 2);
    assert!(
        subjects(c, &target, "roster-admin").is_none(),
        "adopted on the namespace's word alone"
    );
    // ... a platform admin takes it on the Project's side too.
    c.kubectl_ok(&[
        "patch",
        "project",
        "one",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"adoptExistingNamespace":true}}"#,
    ]);
    wait_subjects(c, &target, "roster-developer", &["carl"]);
}

/// The steady state: once converged, resyncs (every RESYNC) plan again and write nothing.
/// Proven from the API server's audit log of write requests made by roster.
#[test]
fn a_resync_of_an_unchanged_world_writes_nothing() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("steady");
    apply(c, &small_org(&ns, "alice", CARL_BOTH));
    wait_subjects(c, &format!("{ns}-one"), "roster-developer", &["carl"]);
    wait_for("status to settle", CONVERGE, || {
        let g = jsonpath(
            c,
            &["membership", "carl", "-n", &ns],
            "{.status.observedGeneration}",
        );
        (g == "1").then_some(())
    });

    // Roster is live on this namespace: a binding removed behind its back is restored.
    c.kubectl_ok(&[
        "delete",
        "rolebinding",
        "roster-developer",
        "-n",
        &format!("{ns}-one"),
    ]);
    wait_subjects(c, &format!("{ns}-one"), "roster-developer", &["carl"]);
    std::thread::sleep(Duration::from_secs(1));
    // The invitations' security-log entries may wait up to WRITE_EVERY for their write when
    // another test's entries split them in two batches (red team 41).
    c.settled_security_log(&ns);

    let before = roster_writes(c, &ns);
    let reconciled_before = reconciles_of(c, &ns);
    let quiet = RESYNC * 4;
    let start = Instant::now();
    std::thread::sleep(quiet);
    let after = roster_writes(c, &ns);
    // Quiet because roster looked and found nothing to do, not because it stopped looking.
    let reconciled = reconciles_of(c, &ns) - reconciled_before;
    assert!(
        reconciled >= 2,
        "only {reconciled} reconciles of {ns} in {quiet:?} (resync every {RESYNC:?})"
    );
    assert!(
        after == before,
        "roster wrote {} times in {:?} of an unchanged world (resync every {RESYNC:?}): {:?}",
        after.len() - before.len(),
        start.elapsed(),
        &after[before.len()..]
    );
    assert!(
        !before.is_empty(),
        "the audit log shows roster's writes (sanity check of the counter)"
    );
}

/// How many times roster has reconciled organization `ns` so far (its debug log line).
fn reconciles_of(c: &Cluster, ns: &str) -> usize {
    let log = std::fs::read_to_string(c.dir.join("roster.log")).unwrap_or_default();
    let want = format!("reconciled namespace={ns}");
    log.lines()
        .filter(|l| strip_ansi(l).ends_with(&want))
        .count()
}

/// A log line without its terminal colours.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// Writes by roster (user agent roster/…) touching `ns`, its project namespaces, or what roster
/// keeps for it in its own namespace (credentials, the security log).
fn roster_writes(c: &Cluster, ns: &str) -> Vec<String> {
    let log = std::fs::read_to_string(&c.audit_log).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| {
            e["userAgent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("roster/"))
        })
        .filter(|e| {
            let name = e["objectRef"]["name"].as_str().unwrap_or("");
            let target = e["objectRef"]["namespace"].as_str().unwrap_or(name);
            let ours = target == ns || target.starts_with(&format!("{ns}-"));
            let kept_for_it = target == ROSTER_NAMESPACE
                && (name.starts_with(&format!("roster-cred-{ns}-"))
                    || name == format!("roster-security-{ns}"));
            ours || kept_for_it
        })
        .map(|e| {
            format!(
                "{} {}",
                e["verb"].as_str().unwrap_or(""),
                e["requestURI"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// The API server goes away and comes back; roster's watches reconnect and it converges changes
/// made after the restart.
#[test]
fn roster_converges_after_an_api_server_restart() {
    let _api = exclusive();
    let c = cluster();
    let ns = c.namespace("restart");
    apply(c, &small_org(&ns, "alice", CARL_BOTH));
    wait_subjects(c, &format!("{ns}-one"), "roster-developer", &["carl"]);
    c.restart_apiserver();
    c.kubectl_ok(&[
        "patch",
        "membership",
        "carl",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"disabled":true}}"#,
    ]);
    wait_subjects(c, &format!("{ns}-one"), "roster-developer", &[]);
}

/// When the API server refuses roster's writes, the Organization says so (Ready=False with the
/// reason, a Warning Event), roster retries with backoff, and converges once the cause is gone.
#[test]
fn a_refused_write_is_reported_and_retried_until_it_converges() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("refused");
    // A quota of zero RoleBindings: the API server forbids every binding roster creates here.
    let quota = format!(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: no-bindings, namespace: {ns}}}\nspec: {{hard: {{count/rolebindings.rbac.authorization.k8s.io: \"0\"}}}}\n"
    );
    apply(c, &quota);
    apply(c, &small_org(&ns, "alice", CARL_BOTH));
    wait_for("Ready=False with the refusal's reason", CONVERGE, || {
        let s = c.kubectl_try(&["get", "organization", &ns, "-n", &ns, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}"#])?;
        (s == "False/Forbidden").then_some(())
    });
    let message = jsonpath(
        c,
        &["organization", &ns, "-n", &ns],
        r#"{.status.conditions[?(@.type=="Ready")].message}"#,
    );
    assert!(
        message.contains("RoleBinding") && message.contains("quota"),
        "{message}"
    );
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
    assert!(events.contains("Forbidden"), "{events}");

    c.kubectl_ok(&["delete", "resourcequota", "no-bindings", "-n", &ns]);
    // Nothing watches the quota: the retry comes with the error backoff (at most 60 s).
    wait_for("the bindings after the quota is gone", RECOVERY, || {
        (subjects(c, &ns, "roster-owner")? == ["alice"]).then_some(())
    });
    wait_for("Ready=True again", RECOVERY, || {
        let s = c.kubectl_try(&[
            "get",
            "organization",
            &ns,
            "-n",
            &ns,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#,
        ])?;
        (s == "True").then_some(())
    });
}

/// /metrics counts reconciles and admission decisions with the reasons Events and conditions
/// use. The counters are the process's (other tests move them too): each is read before and
/// after this test's own doing, and must have moved by it.
#[test]
fn metrics_name_the_same_reasons_as_events() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("metrics");
    let read = || {
        let text = http_get(&c.metrics_addr, "/metrics");
        move |prefix: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
                .unwrap_or(0.0)
        }
    };
    let converged = r#"roster_reconciles_total{result="ok",reason="Converged"} "#;
    let protected = r#"roster_admissions_total{result="deny",reason="OwnerMembershipProtected"} "#;
    let writes = "roster_writes_total ";
    let before = read();
    apply(c, &small_org(&ns, "alice", CARL_BOTH));
    wait_subjects(c, &ns, "roster-owner", &["alice"]);
    let out = c.kubectl(&["delete", "membership", "alice", "-n", &ns]);
    assert!(!out.status.success());
    let after = read();
    for (what, at_least) in [(converged, 1.0), (protected, 1.0), (writes, 3.0)] {
        assert!(
            after(what) - before(what) >= at_least,
            "{what}moved by {} (want at least {at_least})",
            after(what) - before(what)
        );
    }
    assert_eq!(http_get(&c.metrics_addr, "/readyz"), "ok");
}

/// MFA by the clock: a member who has not enrolled keeps access for the grace period and loses
/// it at its end; an exemption keeps access until it ends, then the grace period runs from
/// there; an exemption without an end keeps it (the twin). No write starts any of this.
#[test]
fn mfa_overdue_and_the_end_of_an_exemption_cut_access_on_time() {
    let _api = shared();
    let c = cluster();
    let ns = c.namespace("mfaclock");
    let project_ns = format!("{ns}-p");
    let in_secs = |s: i64| {
        (k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(s))
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let exempt_until = in_secs(12);
    let member = |name: &str, mfa: &str| {
        format!(
            "---\napiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{email: {name}@acme.example, role: Member, projects: [{{name: p, role: Developer}}]{mfa}}}\n"
        )
    };
    let mut yaml = format!(
        "apiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {ns}, namespace: {ns}}}\nspec: {{owner: olga@acme.example, security: {{mfa: {{required: true, gracePeriod: 10s}}}}}}\n---\napiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata: {{name: p, namespace: {ns}}}\n"
    );
    yaml.push_str(&member("gus", ""));
    // A second organization requiring MFA from now on, 15 s of grace, nobody in it yet (gus
    // joins it later, once it has required MFA for longer than that).
    let other = c.namespace("mfaclock-b");
    yaml.push_str(&format!(
        "---\napiVersion: roster.dev/v1alpha1\nkind: Organization\nmetadata: {{name: {other}, namespace: {other}}}\nspec: {{owner: olga@acme.example, security: {{mfa: {{required: true, gracePeriod: 15s}}}}}}\n---\napiVersion: roster.dev/v1alpha1\nkind: Project\nmetadata: {{name: p, namespace: {other}}}\n"
    ));
    yaml.push_str(&member(
        "ex",
        &format!(", mfa: {{exempt: true, exemptUntil: \"{exempt_until}\", reason: key on order}}"),
    ));
    yaml.push_str(&member(
        "forever",
        ", mfa: {exempt: true, reason: no phone allowed on site}",
    ));
    apply(c, &yaml);
    let started = Instant::now();
    wait_subjects(
        c,
        &project_ns,
        "roster-developer",
        &["ex", "forever", "gus"],
    );
    // The status comes after the bindings (written last).
    wait_for("gus to be Pending", CONVERGE, || {
        (jsonpath(c, &["membership", "gus", "-n", &ns], "{.status.mfa.state}") == "Pending")
            .then_some(())
    });
    // gus's grace ends 10 s after he joined: out, and Overdue.
    wait_subjects(c, &project_ns, "roster-developer", &["ex", "forever"]);
    assert!(
        started.elapsed() >= Duration::from_secs(8),
        "gus lost access before his grace period ended ({:?})",
        started.elapsed()
    );
    wait_for("gus to be Overdue", CONVERGE, || {
        (jsonpath(c, &["membership", "gus", "-n", &ns], "{.status.mfa.state}") == "Overdue")
            .then_some(())
    });
    // ex's exemption ends at 12 s; the grace period then runs 10 s more.
    wait_for("ex's exemption to end", CONVERGE, || {
        (jsonpath(c, &["membership", "ex", "-n", &ns], "{.status.mfa.state}") == "Pending")
            .then_some(())
    });
    assert_eq!(
        subjects(c, &project_ns, "roster-developer"),
        Some(vec!["ex".to_string(), "forever".to_string()]),
        "in grace after the exemption, ex keeps access"
    );
    wait_subjects(c, &project_ns, "roster-developer", &["forever"]);
    assert!(
        started.elapsed() >= Duration::from_secs(18),
        "ex lost access before the grace after the exemption ended ({:?})",
        started.elapsed()
    );
    assert_eq!(
        jsonpath(
            c,
            &["membership", "forever", "-n", &ns],
            "{.status.mfa.state}"
        ),
        "Exempt"
    );
    // Red team 33: gus, overdue, deleted and declared again as he was (what an Admin may do)
    // gets no new grace period from his new Membership: Overdue at once, no access.
    let mfa_of = |name: &str| {
        wait_for(&format!("{name}'s MFA status"), CONVERGE, || {
            let s = jsonpath(
                c,
                &["membership", name, "-n", &ns],
                "{.status.mfa.state} {.status.mfa.deadline}",
            );
            (s.split_whitespace().count() == 2).then_some(s)
        })
    };
    c.kubectl_ok(&["delete", "membership", "gus", "-n", &ns, "--wait=true"]);
    apply(c, &member("gus", ""));
    let gus = mfa_of("gus");
    assert!(gus.starts_with("Overdue "), "gus declared again: {gus}");
    assert_eq!(
        subjects(c, &project_ns, "roster-developer"),
        Some(vec!["forever".to_string()]),
    );
    // The other organization's gus (the same address) is another member: what this one
    // remembers of when gus first joined reaches no other organization. His grace period runs
    // from his joining there, not from when he first joined here (which would make him overdue
    // at once: that organization has required MFA longer than its grace period).
    let joins = k8s_openapi::jiff::Timestamp::now();
    apply(
        c,
        &member("gus", "").replace(&format!("namespace: {ns}"), &format!("namespace: {other}")),
    );
    let gus_there = wait_for("gus's MFA status there", CONVERGE, || {
        let s = jsonpath(
            c,
            &["membership", "gus", "-n", &other],
            "{.status.mfa.state} {.status.mfa.deadline}",
        );
        (s.split_whitespace().count() == 2).then_some(s)
    });
    let deadline: k8s_openapi::jiff::Timestamp = gus_there
        .split_whitespace()
        .nth(1)
        .and_then(|d| d.parse().ok())
        .expect("a deadline");
    assert!(
        deadline >= joins + k8s_openapi::jiff::SignedDuration::from_secs(14),
        "gus in the other organization: {gus_there}, joined at {joins}"
    );
    // The status is written after the bindings.
    assert_eq!(
        subjects(c, &format!("{other}-p"), "roster-developer"),
        Some(vec!["gus".to_string()]),
    );
    // Overdue, gus accepts his invitation and enrols: that gives him his access back (red
    // team 35: an overdue member's enrolment page "expired").
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let page = crate::harness::accept(c, &ns, "gus").await;
            crate::members::enrol_on_page(c, &ns, "gus", &page).await;
        });
    wait_subjects(c, &project_ns, "roster-developer", &["forever", "gus"]);
    // Red team 34: hop, deleted before his deadline (once invited) and declared again, keeps
    // his first deadline.
    apply(c, &member("hop", ""));
    let first = mfa_of("hop");
    link_secret(c, &ns, "hop");
    c.kubectl_ok(&["delete", "membership", "hop", "-n", &ns, "--wait=true"]);
    apply(c, &member("hop", ""));
    let again = mfa_of("hop");
    assert_eq!(
        again.split_whitespace().nth(1),
        first.split_whitespace().nth(1),
        "hop's deadline, declared again ({again}) and first ({first})"
    );
}
