//! The admission webhook against the real API server: single-owner rules and the permission
//! matrix end to end, with `kubectl --as` impersonating members (RBAC first, then roster).

use std::time::Duration;

use crate::harness::{Cluster, cluster, shared, small_org, wait_for};

const DENIED: &str = "admission webhook \"validate.roster.dev\" denied the request: ";

/// An organization whose RoleBindings are in place (impersonated users need their RBAC).
fn ready_org(c: &Cluster, prefix: &str) -> String {
    let ns = c.namespace(prefix);
    let out = c.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&small_org(
            &ns,
            "alice",
            "  projects: [{name: one, role: Developer}]",
        )),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the organization's bindings",
        Duration::from_secs(30),
        || {
            let s = c.kubectl_try(&[
                "get",
                "rolebinding",
                "roster-admins",
                "-n",
                &ns,
                "-o",
                "jsonpath={.subjects[*].name}",
            ])?;
            (s == format!("roster:{ns}:bob@acme.example")).then_some(())
        },
    );
    ns
}

/// The user name of `name@acme.example`'s roster identity in organization `ns`.
fn member_user(ns: &str, name: &str) -> String {
    format!("roster:{ns}:{name}@acme.example")
}

/// Runs kubectl (as `user`, when given) and returns (succeeded, stderr).
fn run(c: &Cluster, user: Option<&str>, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let as_user = user.map(|u| format!("--as={u}"));
    let mut all: Vec<&str> = args.to_vec();
    if let Some(u) = &as_user {
        all.push(u);
    }
    let out = c.kubectl_stdin(&all, stdin);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

fn denied_with(result: (bool, String), message: &str) {
    let (ok, stderr) = result;
    assert!(!ok, "allowed; expected: {message}");
    assert!(
        stderr.contains(&format!("{DENIED}{message}")),
        "want: {DENIED}{message}\ngot:  {stderr}"
    );
}

#[test]
fn the_owner_cannot_be_removed_disabled_or_replaced_by_hand() {
    let _api = shared();
    let c = cluster();
    let ns = ready_org(c, "owner");

    denied_with(
        run(c, None, &["delete", "membership", "alice", "-n", &ns], None),
        &format!(
            "Membership alice belongs to alice@acme.example, the owner of organization {ns}; transfer ownership first (kubectl roster transfer-ownership), then delete it"
        ),
    );
    denied_with(
        run(
            c,
            None,
            &[
                "patch",
                "membership",
                "alice",
                "-n",
                &ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"disabled":true}}"#,
            ],
            None,
        ),
        &format!(
            "alice@acme.example is the owner of organization {ns}: their Membership cannot be disabled or given an expiry; transfer ownership first (kubectl roster transfer-ownership)"
        ),
    );
    // The owner herself cannot hand the organization over with kubectl...
    denied_with(
        run(
            c,
            Some(&member_user(&ns, "alice")),
            &[
                "patch",
                "organization",
                &ns,
                "-n",
                &ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"owner":"bob@acme.example"}}"#,
            ],
            None,
        ),
        &format!(
            "organization {ns} already has owner alice@acme.example; ownership moves with \"kubectl roster transfer-ownership\" (which asks for the owner's password), or by a trusted identity through GitOps"
        ),
    );
    // ...nor can anyone give it to a non-member.
    denied_with(
        run(
            c,
            None,
            &[
                "patch",
                "organization",
                &ns,
                "-n",
                &ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"owner":"zoe@acme.example"}}"#,
            ],
            None,
        ),
        &format!(
            "zoe@acme.example cannot become owner of organization {ns}: they have no Membership there; create one and let them accept the invitation first"
        ),
    );
    // A second Membership for one e-mail.
    let dup = format!(
        "apiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: bobby, namespace: {ns}}}\nspec: {{email: bob@acme.example}}\n"
    );
    denied_with(
        run(c, None, &["apply", "-f", "-"], Some(&dup)),
        &format!(
            "bob@acme.example is already a member of organization {ns} (Membership bob); change that Membership instead of creating a second one"
        ),
    );
    // dryRun requests are answered like real ones.
    denied_with(
        run(
            c,
            None,
            &[
                "delete",
                "membership",
                "alice",
                "-n",
                &ns,
                "--dry-run=server",
            ],
            None,
        ),
        "Membership alice belongs to alice@acme.example",
    );
    // A trusted identity may move ownership to an enabled member (GitOps) who has accepted
    // their invitation.
    let to_bob = [
        "patch",
        "organization",
        &ns,
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"owner":"bob@acme.example"}}"#,
    ];
    denied_with(
        run(c, None, &to_bob, None),
        &format!(
            "bob@acme.example cannot become owner of organization {ns}: they have not accepted the invitation of Membership bob yet"
        ),
    );
    crate::harness::accept_invitation(c, &ns, "bob");
    let (ok, err) = run(
        c,
        None,
        &[
            "patch",
            "organization",
            &ns,
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"owner":"bob@acme.example"}}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    // Now alice's Membership may go; bob's may not.
    let (ok, err) = run(c, None, &["delete", "membership", "alice", "-n", &ns], None);
    assert!(ok, "{err}");
    denied_with(
        run(c, None, &["delete", "membership", "bob", "-n", &ns], None),
        "Membership bob belongs to bob@acme.example",
    );
}

#[test]
fn members_rights_follow_the_permission_matrix() {
    let _api = shared();
    let c = cluster();
    let ns = ready_org(c, "matrix");
    let member = |name: &str, role: &str, project: &str| {
        format!(
            "apiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{email: {name}@acme.example, role: {role}, projects: [{{name: {project}, role: Viewer}}]}}\n"
        )
    };

    // Owner: settings, projects, members.
    let (ok, err) = run(
        c,
        Some(&member_user(&ns, "alice")),
        &[
            "patch",
            "organization",
            &ns,
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"adminsSeeAllProjects":false,"displayName":"Renamed"}}"#,
        ],
        None,
    );
    assert!(ok, "owner changes settings: {err}");
    let (ok, err) = run(
        c,
        Some(&member_user(&ns, "alice")),
        &["apply", "-f", "-"],
        Some(&member("olga", "Admin", "two")),
    );
    assert!(ok, "owner invites an Admin: {err}");

    // Admin (project Admin of one): invite Members into one; not Admins, not into two.
    let (ok, err) = run(
        c,
        Some(&member_user(&ns, "bob")),
        &["apply", "-f", "-"],
        Some(&member("erin", "Member", "one")),
    );
    assert!(ok, "admin invites a Member into their project: {err}");
    denied_with(
        run(
            c,
            Some(&member_user(&ns, "bob")),
            &["apply", "-f", "-"],
            Some(&member("fred", "Admin", "one")),
        ),
        "bob@acme.example is an Admin: Admins may invite or remove Members only; set spec.role: Member, or ask the owner (alice@acme.example)",
    );
    denied_with(
        run(
            c,
            Some(&member_user(&ns, "bob")),
            &["apply", "-f", "-"],
            Some(&member("gina", "Member", "two")),
        ),
        "bob@acme.example is not Admin of project(s) two: only their project Admins and the owner may give roles there",
    );
    denied_with(
        run(
            c,
            Some(&member_user(&ns, "bob")),
            &[
                "patch",
                "membership",
                "carl",
                "-n",
                &ns,
                "--type=merge",
                "-p",
                r#"{"spec":{"disabled":true}}"#,
            ],
            None,
        ),
        &format!(
            "only the owner of organization {ns} may change a member's org role, enable or disable them, or set their expiry"
        ),
    );
    // RBAC already keeps Admins off the Organization and Members off everything: roster's
    // ClusterRoles grant no such verbs, so the API server refuses before the webhook is asked.
    let (ok, err) = run(
        c,
        Some(&member_user(&ns, "bob")),
        &[
            "patch",
            "organization",
            &ns,
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"displayName":"x"}}"#,
        ],
        None,
    );
    assert!(!ok && err.contains("forbidden"), "{err}");
    let (ok, err) = run(
        c,
        Some(&member_user(&ns, "carl")),
        &["delete", "project", "two", "-n", &ns],
        None,
    );
    assert!(!ok && err.contains("forbidden"), "{err}");
    let (ok, err) = run(
        c,
        Some(&member_user(&ns, "stranger")),
        &["get", "projects", "-n", &ns],
        None,
    );
    assert!(!ok && err.contains("forbidden"), "{err}");

    // Owner disables a member: allowed.
    let (ok, err) = run(
        c,
        Some(&member_user(&ns, "alice")),
        &[
            "patch",
            "membership",
            "carl",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"disabled":true}}"#,
        ],
        None,
    );
    assert!(ok, "owner disables a member: {err}");
}

/// The webhook keeps answering while the controller has a burst of work.
#[test]
fn the_webhook_answers_while_the_controller_is_busy() {
    let _api = shared();
    let c = cluster();
    let ns = ready_org(c, "busy");
    let mut burst = String::new();
    for i in 0..150 {
        burst.push_str(&format!(
            "---\napiVersion: roster.dev/v1alpha1\nkind: Membership\nmetadata: {{name: m{i}, namespace: {ns}}}\nspec: {{email: m{i}@acme.example, role: Member, projects: [{{name: one, role: Viewer}}, {{name: two, role: Viewer}}]}}\n"
        ));
    }
    let (ok, err) = run(c, None, &["apply", "-f", "-"], Some(&burst));
    assert!(ok, "{err}");
    // While roster converges 150 new members, every admission request is still answered.
    for _ in 0..10 {
        denied_with(
            run(
                c,
                None,
                &[
                    "delete",
                    "membership",
                    "alice",
                    "-n",
                    &ns,
                    "--dry-run=server",
                ],
                None,
            ),
            "Membership alice belongs to",
        );
    }
    wait_for("the burst to converge", Duration::from_secs(60), || {
        let s = c.kubectl_try(&[
            "get",
            "rolebinding",
            "roster-viewer",
            "-n",
            &format!("{ns}-two"),
            "-o",
            "jsonpath={.subjects[*].name}",
        ])?;
        (s.split_whitespace().count() == 150).then_some(())
    });
}
