//! Tier 1: `validate()` for every row of the permission matrix and every single-owner rule.
//! Tier 2: the router over HTTP (AdmissionReview JSON in, AdmissionReview out), malformed bodies.

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::Request as HttpRequest;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::validate::{Acceptance, Decision, Index, Object, Op, Policy, Request, validate};
use super::{AppState, router};
use crate::api::{Membership, Organization, Project};
use crate::api::{MfaExemption, OrgRole, ProjectGrant, ProjectRole};
use crate::fixtures::{NS, member, org, project};

#[derive(Default)]
struct Mem {
    orgs: Vec<Organization>,
    projects: Vec<Project>,
    memberships: Vec<Membership>,
}

impl Index for Mem {
    fn organizations_prefixing(&self, ns: &str) -> Vec<String> {
        self.orgs
            .iter()
            .map(|o| o.name_any())
            .filter(|o| ns.starts_with(&format!("{o}-")))
            .collect()
    }
    fn organization(&self, ns: &str) -> Option<Arc<Organization>> {
        self.orgs
            .iter()
            .find(|o| o.name_any() == ns && o.namespace().as_deref() == Some(ns))
            .cloned()
            .map(Arc::new)
    }
    fn memberships_with_email(&self, ns: &str, email: &str) -> Vec<Arc<Membership>> {
        self.memberships
            .iter()
            .filter(|m| m.namespace().as_deref() == Some(ns) && m.spec.email == email)
            // As the cache gives them: rebuilt from their compact form.
            .map(|m| Arc::new(crate::cache::CachedMembership::from(m.clone()).full()))
            .collect()
    }
    fn projects(&self, ns: &str) -> Vec<Arc<Project>> {
        self.projects
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns))
            .cloned()
            .map(Arc::new)
            .collect()
    }
    fn projects_using_namespace(&self, target: &str) -> Vec<Arc<Project>> {
        self.projects
            .iter()
            .filter(|p| {
                crate::controller::plan::project_namespace(&p.namespace().unwrap_or_default(), p)
                    == target
            })
            .cloned()
            .map(Arc::new)
            .collect()
    }
}

/// alice owns acme; bob is Admin and project Admin of payments (Viewer in web); dave is a Member.
fn acme() -> Mem {
    Mem {
        orgs: vec![org("alice@acme.example")],
        projects: vec![project("payments"), project("web")],
        memberships: vec![
            member("alice", Some(OrgRole::Admin), &[]),
            member(
                "bob",
                Some(OrgRole::Admin),
                &[
                    ("payments", ProjectRole::Admin),
                    ("web", ProjectRole::Viewer),
                ],
            ),
            member(
                "dave",
                Some(OrgRole::Member),
                &[("payments", ProjectRole::Developer)],
            ),
        ],
    }
}

fn who(name: &str) -> String {
    match name {
        "root" => "kubernetes-admin".into(),
        "roster" => "system:serviceaccount:roster-system:roster".into(),
        n => format!("roster:acme:{n}@acme.example"),
    }
}

/// The time of every request in these tests.
fn now() -> k8s_openapi::jiff::Timestamp {
    crate::fixtures::ts("2026-01-10T00:00:00Z")
}

fn policy() -> Policy {
    Policy {
        controllers: vec![who("roster")],
        ..Policy::default()
    }
}

fn check(index: &Mem, as_user: &str, op: Op, new: Option<Object>, old: Option<Object>) -> Decision {
    let groups: Vec<String> = if as_user == "root" {
        vec!["system:masters".into()]
    } else {
        vec!["system:authenticated".into()]
    };
    let username = who(as_user);
    let name = new.as_ref().or(old.as_ref()).map(|o| match o {
        Object::Organization(o) => o.name_any(),
        Object::Project(p) => p.name_any(),
        Object::Membership(m) => m.name_any(),
    });
    validate(
        &Request {
            operation: op,
            namespace: NS,
            name: name.as_deref().unwrap_or(""),
            object: new.as_ref(),
            old_object: old.as_ref(),
            username: &username,
            groups: &groups,
            now: now(),
        },
        index,
        &policy(),
    )
}

fn reason(d: &Decision) -> &'static str {
    match d {
        Decision::Allow => "Allow",
        Decision::Deny { reason, .. } => reason,
    }
}

/// An admission request in brief: operation, new object, old object.
type Change = (Op, Option<Object>, Option<Object>);
type Build = fn(&Mem) -> Change;

/// One row of DESIGN.md §3: the change, and the expected outcome for owner, admin, member.
struct Row {
    action: &'static str,
    build: Build,
    owner: &'static str,
    admin: &'static str,
    member: &'static str,
}

fn m_of(i: &Mem, name: &str) -> Membership {
    i.memberships
        .iter()
        .find(|m| m.name_any() == name)
        .cloned()
        .expect("membership")
}

fn matrix_rows() -> Vec<Row> {
    vec![
        Row {
            action: "change org settings",
            build: |i| {
                let old = i.orgs[0].clone();
                let mut new = old.clone();
                new.spec.security.mfa.required = true;
                (
                    Op::Update,
                    Some(Object::Organization(new)),
                    Some(Object::Organization(old)),
                )
            },
            owner: "Allow",
            admin: "OwnerOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "transfer ownership with kubectl",
            build: |i| {
                let old = i.orgs[0].clone();
                let mut new = old.clone();
                new.spec.owner = "bob@acme.example".into();
                (
                    Op::Update,
                    Some(Object::Organization(new)),
                    Some(Object::Organization(old)),
                )
            },
            owner: "TransferNeedsConfirmation",
            admin: "OwnerOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "delete the organization",
            build: |i| {
                (
                    Op::Delete,
                    None,
                    Some(Object::Organization(i.orgs[0].clone())),
                )
            },
            owner: "Allow",
            admin: "OwnerOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "create a Project",
            build: |_| (Op::Create, Some(Object::Project(project("mobile"))), None),
            owner: "Allow",
            admin: "Allow",
            member: "MemberReadOnly",
        },
        Row {
            action: "change a Project the admin administers",
            build: |_| {
                let old = project("payments");
                let mut new = old.clone();
                new.spec.display_name = Some("Payments".into());
                (
                    Op::Update,
                    Some(Object::Project(new)),
                    Some(Object::Project(old)),
                )
            },
            owner: "Allow",
            admin: "Allow",
            member: "MemberReadOnly",
        },
        Row {
            action: "delete a Project the admin does not administer",
            build: |_| (Op::Delete, None, Some(Object::Project(project("web")))),
            owner: "Allow",
            admin: "NotProjectAdmin",
            member: "MemberReadOnly",
        },
        Row {
            action: "invite a Member into the admin's project",
            build: |_| {
                (
                    Op::Create,
                    Some(Object::Membership(member(
                        "erin",
                        Some(OrgRole::Member),
                        &[("payments", ProjectRole::Viewer)],
                    ))),
                    None,
                )
            },
            owner: "Allow",
            admin: "Allow",
            member: "MemberReadOnly",
        },
        Row {
            action: "invite an Admin",
            build: |_| {
                (
                    Op::Create,
                    Some(Object::Membership(member(
                        "erin",
                        Some(OrgRole::Admin),
                        &[],
                    ))),
                    None,
                )
            },
            owner: "Allow",
            admin: "AdminInvitesMembersOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "invite a Member into another project",
            build: |_| {
                (
                    Op::Create,
                    Some(Object::Membership(member(
                        "erin",
                        Some(OrgRole::Member),
                        &[("web", ProjectRole::Developer)],
                    ))),
                    None,
                )
            },
            owner: "Allow",
            admin: "NotProjectAdmin",
            member: "MemberReadOnly",
        },
        Row {
            action: "cancel a Member's invitation (delete) in the admin's project",
            build: |i| (Op::Delete, None, Some(Object::Membership(m_of(i, "dave")))),
            owner: "Allow",
            admin: "Allow",
            member: "MemberReadOnly",
        },
        Row {
            action: "change a member's org role",
            build: |i| {
                let old = m_of(i, "dave");
                let mut new = old.clone();
                new.spec.role = Some(OrgRole::Admin);
                (
                    Op::Update,
                    Some(Object::Membership(new)),
                    Some(Object::Membership(old)),
                )
            },
            owner: "Allow",
            admin: "OwnerOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "disable a member",
            build: |i| {
                let old = m_of(i, "dave");
                let mut new = old.clone();
                new.spec.disabled = true;
                (
                    Op::Update,
                    Some(Object::Membership(new)),
                    Some(Object::Membership(old)),
                )
            },
            owner: "Allow",
            admin: "OwnerOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "change a member's role in the admin's project",
            build: |i| {
                let old = m_of(i, "dave");
                let mut new = old.clone();
                new.spec.projects[0].role = ProjectRole::Admin;
                (
                    Op::Update,
                    Some(Object::Membership(new)),
                    Some(Object::Membership(old)),
                )
            },
            owner: "Allow",
            admin: "Allow",
            member: "MemberReadOnly",
        },
        Row {
            action: "give a member a role in another project",
            build: |i| {
                let old = m_of(i, "dave");
                let mut new = old.clone();
                new.spec.projects.push(ProjectGrant {
                    name: "web".into(),
                    role: ProjectRole::Viewer,
                });
                (
                    Op::Update,
                    Some(Object::Membership(new)),
                    Some(Object::Membership(old)),
                )
            },
            owner: "Allow",
            admin: "NotProjectAdmin",
            member: "MemberReadOnly",
        },
        Row {
            action: "set a member's expiry",
            build: |i| {
                let old = m_of(i, "dave");
                let mut new = old.clone();
                new.spec.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    crate::fixtures::ts("2026-06-30T00:00:00Z"),
                ));
                (
                    Op::Update,
                    Some(Object::Membership(new)),
                    Some(Object::Membership(old)),
                )
            },
            owner: "Allow",
            admin: "OwnerOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "delete another Admin's Membership",
            build: |_| {
                (
                    Op::Delete,
                    None,
                    Some(Object::Membership(member(
                        "carol",
                        Some(OrgRole::Admin),
                        &[("payments", ProjectRole::Viewer)],
                    ))),
                )
            },
            owner: "Allow",
            admin: "AdminInvitesMembersOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "change a Project the admin does not administer",
            build: |_| {
                let old = project("web");
                let mut new = old.clone();
                new.spec.display_name = Some("Web".into());
                (
                    Op::Update,
                    Some(Object::Project(new)),
                    Some(Object::Project(old)),
                )
            },
            owner: "Allow",
            admin: "NotProjectAdmin",
            member: "MemberReadOnly",
        },
        Row {
            action: "exempt a member from MFA",
            build: |i| {
                let old = m_of(i, "dave");
                let mut new = old.clone();
                new.spec.mfa = Some(MfaExemption {
                    exempt: true,
                    exempt_until: None,
                    reason: Some("token lost".into()),
                });
                (
                    Op::Update,
                    Some(Object::Membership(new)),
                    Some(Object::Membership(old)),
                )
            },
            owner: "Allow",
            admin: "OwnerOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "invite a Member exempt from MFA",
            build: |_| {
                let mut m = member(
                    "erin",
                    Some(OrgRole::Member),
                    &[("payments", ProjectRole::Viewer)],
                );
                m.spec.mfa = Some(MfaExemption {
                    exempt: true,
                    exempt_until: None,
                    reason: Some("no phone".into()),
                });
                (Op::Create, Some(Object::Membership(m)), None)
            },
            owner: "Allow",
            admin: "OwnerOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "change the owner's Membership",
            build: |i| {
                let old = m_of(i, "alice");
                let mut new = old.clone();
                new.spec.role = Some(OrgRole::Member);
                (
                    Op::Update,
                    Some(Object::Membership(new)),
                    Some(Object::Membership(old)),
                )
            },
            owner: "Allow",
            admin: "OwnerMembershipOwnerOnly",
            member: "MemberReadOnly",
        },
        Row {
            action: "create a Project in a namespace outside the organization's prefix",
            build: |_| {
                let mut p = project("grab");
                p.spec.namespace = Some("kube-public".into());
                (Op::Create, Some(Object::Project(p)), None)
            },
            owner: "ProjectNamespaceOutsideOrganization",
            admin: "ProjectNamespaceOutsideOrganization",
            member: "MemberReadOnly",
        },
        Row {
            action: "create a Project in a namespace of the organization's prefix",
            build: |_| {
                let mut p = project("legacy");
                p.spec.namespace = Some("acme-legacy-apps".into());
                (Op::Create, Some(Object::Project(p)), None)
            },
            owner: "Allow",
            admin: "Allow",
            member: "MemberReadOnly",
        },
    ]
}

/// (user, expected reason) for each role, for one row.
fn expectations(row: &Row) -> [(&'static str, &'static str); 5] {
    [
        ("alice", row.owner),
        ("bob", row.admin),
        ("dave", row.member),
        ("root", "Allow"),
        ("mallory", "NotAMember"),
    ]
}

#[test]
fn permission_matrix() {
    let index = acme();
    let mut failures = Vec::new();
    for row in &matrix_rows() {
        for (user, want) in expectations(row) {
            let (op, new, old) = (row.build)(&index);
            let got = check(&index, user, op, new, old);
            if reason(&got) != want {
                failures.push(format!(
                    "{}: as {user} want {want}, got {got:?}",
                    row.action
                ));
            }
        }
    }
    // Trusted identities (root) pass every row, ownership moves included: through GitOps the
    // reviewed commit is the confirmation.
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// (what, as whom, the change, the expected rule) for the single-owner invariants.
fn owner_cases() -> Vec<(&'static str, &'static str, Change, &'static str)> {
    let index = acme();
    let transfer_to = |email: &str| {
        let old = index.orgs[0].clone();
        let mut new = old.clone();
        new.spec.owner = email.into();
        (
            Op::Update,
            Some(Object::Organization(new)),
            Some(Object::Organization(old)),
        )
    };
    let labelled = |mut m: Membership| {
        m.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("roster.dev/bootstrap".into(), "owner".into());
        m
    };
    vec![
        (
            "trusted labels a Membership as roster's bootstrap",
            "root",
            {
                let old = m_of(&index, "dave");
                (
                    Op::Update,
                    Some(Object::Membership(labelled(old.clone()))),
                    Some(Object::Membership(old)),
                )
            },
            "BootstrapLabelReserved",
        ),
        (
            "trusted creates a Membership labelled as roster's bootstrap",
            "root",
            (
                Op::Create,
                Some(Object::Membership(labelled(member("zoe", None, &[])))),
                None,
            ),
            "BootstrapLabelReserved",
        ),
        (
            "roster creates its bootstrap Membership",
            "roster",
            (
                Op::Create,
                Some(Object::Membership(labelled(member("zoe", None, &[])))),
                None,
            ),
            "Allow",
        ),
        (
            "a Project whose namespace name would be too long",
            "root",
            (
                Op::Create,
                Some(Object::Project(project(&"p".repeat(60)))),
                None,
            ),
            "ProjectNamespaceInvalid",
        ),
        (
            "trusted transfer to an enabled member",
            "root",
            transfer_to("bob@acme.example"),
            "Allow",
        ),
        (
            "trusted transfer to a non-member",
            "root",
            transfer_to("zoe@acme.example"),
            "NewOwnerNotMember",
        ),
        (
            "delete the owner's Membership",
            "root",
            (
                Op::Delete,
                None,
                Some(Object::Membership(m_of(&index, "alice"))),
            ),
            "OwnerMembershipProtected",
        ),
        (
            "disable the owner's Membership",
            "root",
            {
                let old = m_of(&index, "alice");
                let mut new = old.clone();
                new.spec.disabled = true;
                (
                    Op::Update,
                    Some(Object::Membership(new)),
                    Some(Object::Membership(old)),
                )
            },
            "OwnerMembershipProtected",
        ),
        (
            "give the owner's Membership an expiry",
            "alice",
            {
                let old = m_of(&index, "alice");
                let mut new = old.clone();
                new.spec.expires_at = Some(Time("2030-01-01T00:00:00Z".parse().expect("ts")));
                (
                    Op::Update,
                    Some(Object::Membership(new)),
                    Some(Object::Membership(old)),
                )
            },
            "OwnerMembershipProtected",
        ),
        (
            "an Organization not named after its namespace",
            "root",
            {
                let mut o = org("alice@acme.example");
                o.metadata.name = Some("other".into());
                (Op::Create, Some(Object::Organization(o)), None)
            },
            "OrganizationNameNotNamespace",
        ),
        (
            "a second Membership for an e-mail",
            "alice",
            {
                let mut m = member("bobby", Some(OrgRole::Member), &[]);
                m.spec.email = "bob@acme.example".into();
                (Op::Create, Some(Object::Membership(m)), None)
            },
            "EmailNotUnique",
        ),
        (
            "a Project claiming another project's namespace",
            "alice",
            {
                let mut p = project("pay2");
                p.spec.namespace = Some("acme-payments".into());
                (Op::Create, Some(Object::Project(p)), None)
            },
            "ProjectNamespaceTaken",
        ),
        (
            "a Project claiming an organization's home",
            "alice",
            {
                let mut p = project("home");
                p.spec.namespace = Some("acme".into());
                (Op::Create, Some(Object::Project(p)), None)
            },
            "ProjectNamespaceTaken",
        ),
    ]
}

#[test]
fn single_owner_rules_hold_for_everyone() {
    let index = acme();
    for (what, user, (op, new, old), want) in owner_cases() {
        let got = check(&index, user, op, new, old);
        assert_eq!(reason(&got), want, "{what}: {got:?}");
    }

    // The owner's Membership may go once another one holds the owner's e-mail (roster removing
    // its superseded bootstrap placeholder).
    let mut index = acme();
    let mut boot = member("owner-alice", Some(OrgRole::Admin), &[]);
    boot.spec.email = "alice@acme.example".into();
    boot.metadata.labels =
        Some([(crate::api::BOOTSTRAP_LABEL.to_string(), "owner".to_string())].into());
    index.memberships.push(boot.clone());
    assert_eq!(
        reason(&check(
            &index,
            "root",
            Op::Delete,
            None,
            Some(Object::Membership(boot))
        )),
        "Allow"
    );

    // A transfer to a disabled member is refused.
    let mut index = acme();
    index.memberships[1].spec.disabled = true;
    let old = index.orgs[0].clone();
    let mut new = old.clone();
    new.spec.owner = "bob@acme.example".into();
    let got = check(
        &index,
        "root",
        Op::Update,
        Some(Object::Organization(new)),
        Some(Object::Organization(old)),
    );
    assert_eq!(reason(&got), "NewOwnerNotActive");
}

/// Unlock, MFA reset and resend are requests on the Membership: Admins may make them for
/// Members only (not for Admins, nor for the owner), the owner for anyone.
#[test]
fn identity_requests_follow_the_matrix() {
    let index = acme();
    let annotate = |name: &str, key: &str| {
        let old = m_of(&index, name);
        let mut new = old.clone();
        new.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(format!("roster.dev/{key}"), "n1".into());
        (new, old)
    };
    for key in ["unlock", "reset-mfa", "resend-invitation"] {
        for (who, target, want) in [
            ("bob", "dave", "Allow"),
            ("bob", "alice", "OwnerMembershipOwnerOnly"),
            ("alice", "bob", "Allow"),
            ("root", "bob", "Allow"),
        ] {
            let (new, old) = annotate(target, key);
            let got = check(
                &index,
                who,
                Op::Update,
                Some(Object::Membership(new)),
                Some(Object::Membership(old)),
            );
            assert_eq!(reason(&got), want, "{who} sets {key} on {target}");
        }
    }
}

/// The owner has only roster's bootstrap Membership: a declared one for the owner's address
/// supersedes it, so it may not be created disabled or expiring (by anyone), and an Admin may
/// not create one at all.
#[test]
fn a_declared_owner_membership_that_would_supersede_the_bootstrap_is_protected() {
    let mut index = acme();
    let alice = index
        .memberships
        .iter_mut()
        .find(|m| m.name_any() == "alice")
        .expect("alice");
    alice.metadata.name = Some("owner-alice".into());
    alice
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("roster.dev/bootstrap".into(), "owner".into());
    let declared = |disabled: bool| {
        let mut m = member("alice", Some(OrgRole::Member), &[]);
        m.spec.disabled = disabled;
        Some(Object::Membership(m))
    };
    assert_eq!(
        reason(&check(&index, "root", Op::Create, declared(true), None)),
        "OwnerMembershipProtected"
    );
    assert_eq!(
        reason(&check(&index, "root", Op::Create, declared(false), None)),
        "Allow"
    );
    assert_eq!(
        reason(&check(&index, "bob", Op::Create, declared(false), None)),
        "OwnerMembershipOwnerOnly"
    );
    assert_eq!(
        reason(&check(&index, "alice", Op::Create, declared(false), None)),
        "Allow"
    );
}

/// A resend is a new link the Admin may read: only for Members all of whose projects the
/// Admin administers (DESIGN.md §3). Unlock and MFA reset: any Member.
#[test]
fn an_admin_resends_only_within_their_projects() {
    let mut index = acme();
    index.memberships.push(member(
        "erin",
        Some(OrgRole::Member),
        &[("web", ProjectRole::Viewer)],
    ));
    let ask = |key: &str| {
        let old = m_of(&index, "erin");
        let mut new = old.clone();
        new.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(format!("roster.dev/{key}"), "n1".into());
        check(
            &index,
            "bob",
            Op::Update,
            Some(Object::Membership(new)),
            Some(Object::Membership(old)),
        )
    };
    assert_eq!(reason(&ask("resend-invitation")), "NotProjectAdmin");
    assert_eq!(reason(&ask("unlock")), "Allow");
    assert_eq!(reason(&ask("reset-mfa")), "Allow");
}

/// An index whose identity answers every address's acceptance the same way.
struct WithIdentity(Mem, Acceptance);

impl Index for WithIdentity {
    fn organization(&self, ns: &str) -> Option<Arc<Organization>> {
        self.0.organization(ns)
    }
    fn organizations_prefixing(&self, ns: &str) -> Vec<String> {
        self.0.organizations_prefixing(ns)
    }
    fn memberships_with_email(&self, ns: &str, email: &str) -> Vec<Arc<Membership>> {
        self.0.memberships_with_email(ns, email)
    }
    fn projects(&self, ns: &str) -> Vec<Arc<Project>> {
        self.0.projects(ns)
    }
    fn projects_using_namespace(&self, ns: &str) -> Vec<Arc<Project>> {
        self.0.projects_using_namespace(ns)
    }
    fn invitation_accepted(&self, _: &str, _: &str) -> Option<Acceptance> {
        Some(self.1.clone())
    }
}

/// An Organization created again (a GitOps replace: deleted, then created) meets the rule
/// too, with nobody handing over: an owner whose link anyone could read is refused; one who
/// has accepted nothing yet (every new organization's owner), or whose link went by e-mail, is
/// not. (Red team 20: the rule ran on updates only.)
#[test]
fn an_organization_created_again_names_no_owner_whose_link_others_could_read() {
    let read_by = |who: &[&str]| Acceptance::Accepted {
        link_readers: Some(who.iter().map(|w| w.to_string()).collect()),
    };
    for (acceptance, want) in [
        (read_by(&["carl@acme.example"]), "NewOwnerLinkReadByOthers"),
        (read_by(&["alice@acme.example"]), "NewOwnerLinkReadByOthers"),
        (read_by(&[]), "Allow"),
        (Acceptance::Pending, "Allow"),
        (Acceptance::Accepted { link_readers: None }, "Allow"),
    ] {
        let index = WithIdentity(acme(), acceptance.clone());
        let mut new = index.0.orgs[0].clone();
        new.spec.owner = "bob@acme.example".into();
        let groups = vec!["system:masters".to_string()];
        let got = validate(
            &Request {
                operation: Op::Create,
                namespace: NS,
                name: NS,
                object: Some(&Object::Organization(new)),
                old_object: None,
                username: "kubernetes-admin",
                groups: &groups,
                now: now(),
            },
            &index,
            &policy(),
        );
        assert_eq!(reason(&got), want, "{acceptance:?}: {got:?}");
    }
}

/// With identity running, a new owner must also have accepted their invitation (whoever
/// makes the change: the invitation is what proves the address is theirs), through a link
/// nobody but the owner handing over could read: an Admin who read a Member's link may hold
/// that Member's password (red team 19b).
#[test]
fn a_new_owner_must_have_accepted_their_invitation_through_a_link_only_the_owner_could_read() {
    let read_by = |who: &[&str]| Acceptance::Accepted {
        link_readers: Some(who.iter().map(|w| w.to_string()).collect()),
    };
    let cases = [
        (Acceptance::Pending, "NewOwnerNotAccepted"),
        (
            Acceptance::Accepted { link_readers: None },
            "NewOwnerLinkUnrecorded",
        ),
        // An Admin of this organization could read it.
        (
            read_by(&["alice@acme.example", "carl@acme.example"]),
            "NewOwnerLinkReadByOthers",
        ),
        // A former owner (now an Admin), or anyone not the owner now, is someone else too.
        (read_by(&["olga@acme.example"]), "NewOwnerLinkReadByOthers"),
        // By e-mail: nobody could read it.
        (read_by(&[]), "Allow"),
        // Only the owner handing over could read it.
        (read_by(&["alice@acme.example"]), "Allow"),
    ];
    for (acceptance, want) in cases {
        for (username, groups) in [
            // GitOps (a trusted identity) and roster itself (the identity server's transfer,
            // after the owner's password) meet the same rule.
            ("kubernetes-admin", vec!["system:masters".to_string()]),
            ("system:serviceaccount:roster-system:roster", vec![]),
        ] {
            let index = WithIdentity(acme(), acceptance.clone());
            let old = index.0.orgs[0].clone();
            assert_eq!(old.spec.owner, "alice@acme.example");
            let mut new = old.clone();
            new.spec.owner = "bob@acme.example".into();
            let got = validate(
                &Request {
                    operation: Op::Update,
                    namespace: NS,
                    name: NS,
                    object: Some(&Object::Organization(new)),
                    old_object: Some(&Object::Organization(old)),
                    username,
                    groups: &groups,
                    now: now(),
                },
                &index,
                &policy(),
            );
            assert_eq!(reason(&got), want, "{acceptance:?} by {username}: {got:?}");
            if want == "NewOwnerLinkReadByOthers" {
                assert!(
                    format!("{got:?}")
                        .contains("delete Membership bob and declare it again with role Admin"),
                    "the denial says the way forward: {got:?}"
                );
            }
        }
    }
}

#[test]
fn denials_name_the_rule_and_the_way_forward() {
    let index = acme();
    let old = index.orgs[0].clone();
    let mut new = old.clone();
    new.spec.owner = "bob@acme.example".into();
    let Decision::Deny { message, .. } = check(
        &index,
        "alice",
        Op::Update,
        Some(Object::Organization(new)),
        Some(Object::Organization(old)),
    ) else {
        panic!("allowed")
    };
    assert_eq!(
        message,
        "organization acme already has owner alice@acme.example; ownership moves with \"kubectl roster transfer-ownership\" (which asks for the owner's password), or by a trusted identity through GitOps"
    );
}

// ---- tier 2: the router over HTTP ----

/// Every row of the matrix again, as AdmissionReview JSON through the HTTP router: what the API
/// server sends is what is decided — allowed exactly when the matrix says so, denied with the
/// matrix's reason (read back from the router's own metrics, the label Events and dashboards
/// use) and with the message tier 1 checks word for word.
#[tokio::test]
async fn permission_matrix_over_http() {
    let mut failures = Vec::new();
    for row in &matrix_rows() {
        for (user, want) in expectations(row) {
            let index = acme();
            let (op, new, old) = (row.build)(&index);
            let expected_message = match check(&index, user, op, new.clone(), old.clone()) {
                Decision::Allow => None,
                Decision::Deny { message, .. } => Some(message),
            };
            let body = review_as(user, op, &new, &old);
            let metrics = crate::metrics::Metrics::new();
            let app = router(Arc::new(AppState {
                index,
                policy: policy(),
                ready: Box::new(|| true),
                metrics: metrics.clone(),
                revocations: None,
            }));
            let out = post(app, body.to_string()).await;
            let Some(allowed) = out["response"]["allowed"].as_bool() else {
                failures.push(format!("{}: as {user}: no answer: {out}", row.action));
                continue;
            };
            let message = out["response"]["status"]["message"].as_str();
            let decided = if allowed { "allow" } else { "deny" };
            let reason = if allowed { "Allowed" } else { want };
            let counted = metrics.encode().contains(&format!(
                "roster_admissions_total{{result=\"{decided}\",reason=\"{reason}\"}} 1"
            ));
            let ok = match want {
                "Allow" => allowed && message.is_none() && counted,
                _ => !allowed && message == expected_message.as_deref() && counted,
            };
            if !ok {
                failures.push(format!(
                    "{}: as {user} want {want}, got allowed={allowed} {message:?} (reason counted: {counted})",
                    row.action
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn app(index: Mem, ready: bool) -> axum::Router {
    router(Arc::new(AppState {
        index,
        policy: policy(),
        ready: Box::new(move || ready),
        metrics: crate::metrics::Metrics::new(),
        revocations: None,
    }))
}

fn object_json(o: &Option<Object>) -> Value {
    match o {
        Some(Object::Organization(o)) => serde_json::to_value(o).expect("json"),
        Some(Object::Project(p)) => serde_json::to_value(p).expect("json"),
        Some(Object::Membership(m)) => serde_json::to_value(m).expect("json"),
        None => Value::Null,
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Create => "CREATE",
        Op::Update => "UPDATE",
        Op::Delete => "DELETE",
        Op::Connect => "CONNECT",
    }
}

fn review(op: &str, user: &str, object: Value, old: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "roster.dev", "version": "v1alpha1", "kind": object.get("kind").or(old.get("kind")).cloned().unwrap_or(json!("Membership"))},
            "resource": {"group": "roster.dev", "version": "v1alpha1", "resource": "memberships"},
            "name": "x", "namespace": NS, "operation": op,
            "userInfo": {"username": user, "groups": ["system:authenticated"]},
            "object": object, "oldObject": old, "dryRun": false
        }
    })
}

/// The review the API server sends when `user` (of the fixtures; root is in system:masters)
/// does `op`.
fn review_as(user: &str, op: Op, new: &Option<Object>, old: &Option<Object>) -> Value {
    let mut body = review(op_name(op), &who(user), object_json(new), object_json(old));
    if user == "root" {
        body["request"]["userInfo"]["groups"] = json!(["system:masters"]);
    }
    body
}

async fn post(app: axum::Router, body: impl Into<Body>) -> Value {
    let response = app
        .oneshot(
            HttpRequest::post("/validate")
                .header("content-type", "application/json")
                .body(body.into())
                .expect("request"),
        )
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&to_bytes(response.into_body(), 1 << 20).await.expect("body"))
        .expect("json")
}

#[tokio::test]
async fn single_owner_rules_over_http() {
    for (what, user, (op, new, old), want) in owner_cases() {
        let body = review_as(user, op, &new, &old);
        let out = post(app(acme(), true), body.to_string()).await;
        assert_eq!(out["response"]["allowed"], want == "Allow", "{what}: {out}");
    }
}

#[tokio::test]
async fn router_allows_and_denies_with_the_request_uid() {
    let erin = serde_json::to_value(member(
        "erin",
        Some(OrgRole::Member),
        &[("payments", ProjectRole::Viewer)],
    ))
    .expect("json");
    let out = post(
        app(acme(), true),
        review("CREATE", &who("bob"), erin.clone(), Value::Null).to_string(),
    )
    .await;
    assert_eq!(
        out["response"]["uid"],
        "705ab4f5-6393-11e8-b7cc-42010a800002"
    );
    assert_eq!(out["response"]["allowed"], true);

    let out = post(
        app(acme(), true),
        review("CREATE", &who("dave"), erin, Value::Null).to_string(),
    )
    .await;
    assert_eq!(out["response"]["allowed"], false);
    let msg = out["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        msg.contains("Members cannot change roster objects"),
        "{msg}"
    );
}

#[tokio::test]
async fn router_denies_garbage_without_crashing() {
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"{}".to_vec(),
        b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}".to_vec(),
        vec![0xff, 0xfe, 0x00],
        serde_json::to_vec(&review(
            "CREATE",
            "bob@acme.example",
            json!({"kind": "Membership", "spec": 42}),
            Value::Null,
        ))
        .expect("json"),
        serde_json::to_vec(&review(
            "CREATE",
            "bob@acme.example",
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"}}),
            Value::Null,
        ))
        .expect("json"),
    ];
    for body in bodies {
        let out = post(app(acme(), true), body.clone()).await;
        assert_eq!(
            out["response"]["allowed"],
            false,
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            out["response"]["status"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
}

#[tokio::test]
async fn router_denies_until_the_caches_are_loaded() {
    let erin = serde_json::to_value(member("erin", Some(OrgRole::Member), &[])).expect("json");
    let out = post(
        app(acme(), false),
        review("CREATE", &who("alice"), erin, Value::Null).to_string(),
    )
    .await;
    assert_eq!(out["response"]["allowed"], false);
    assert!(
        out["response"]["status"]["message"]
            .as_str()
            .expect("message")
            .contains("starting")
    );
}

// ---- Attacks a tester found (second round), as unit tests of the rules that stop them. ----

/// Organization homes and project namespaces share one name space: no organization may live
/// in another's project namespace, and no project may take a namespace in another
/// organization's (more specific) name space.
#[test]
fn organization_homes_and_project_namespaces_never_overlap() {
    let mut index = acme();
    index.projects.push(project("corp")); // acme's project corp: namespace acme-corp
    let mut corp = org("olga@corp.example");
    corp.metadata.name = Some("acme-corp".into());
    corp.metadata.namespace = Some("acme-corp".into());
    let got = validate(
        &Request {
            operation: Op::Create,
            namespace: "acme-corp",
            name: "acme-corp",
            object: Some(&Object::Organization(corp.clone())),
            old_object: None,
            username: "kubernetes-admin",
            groups: &["system:masters".to_string()],
            now: now(),
        },
        &index,
        &policy(),
    );
    assert_eq!(reason(&got), "OrganizationHomeTaken");
    // With organization acme-corp there, acme's Admin cannot claim acme-corp-web.
    let mut index = acme();
    index.orgs.push(corp);
    let got = check(
        &index,
        "bob",
        Op::Create,
        Some(Object::Project(project("corp-web"))),
        None,
    );
    assert_eq!(reason(&got), "ProjectNamespaceTaken");
    let got = check(
        &index,
        "bob",
        Op::Create,
        Some(Object::Project(project("mobile"))),
        None,
    );
    assert_eq!(reason(&got), "Allow", "the twin");
}

/// After a transfer the former owner keeps roster's bootstrap Membership (role Admin): an
/// Admin may not declare that address again (it would supersede hers).
#[test]
fn an_admin_cannot_declare_an_address_that_has_a_bootstrap_membership() {
    let mut index = acme();
    let mut former = member("owner-zoe", Some(OrgRole::Admin), &[]);
    former.spec.email = "zoe@acme.example".into();
    former
        .metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("roster.dev/bootstrap".into(), "owner".into());
    index.memberships.push(former);
    let mut again = member("zoe-again", Some(OrgRole::Member), &[]);
    again.spec.email = "zoe@acme.example".into();
    let got = check(
        &index,
        "bob",
        Op::Create,
        Some(Object::Membership(again.clone())),
        None,
    );
    assert_eq!(reason(&got), "EmailNotUnique");
    assert_eq!(
        reason(&check(
            &index,
            "root",
            Op::Create,
            Some(Object::Membership(again)),
            None
        )),
        "Allow",
        "a platform admin may (GitOps declaring a bootstrap member)"
    );
}

/// Ownership never moves to a Membership with an expiry: the owner would be cut off on a
/// timer.
#[test]
fn ownership_never_moves_to_an_expiring_membership() {
    let mut index = acme();
    if let Some(bob) = index.memberships.iter_mut().find(|m| m.name_any() == "bob") {
        bob.spec.expires_at = Some(Time(crate::fixtures::ts("2026-02-01T00:00:00Z")));
    }
    let old = index.orgs[0].clone();
    let mut new = old.clone();
    new.spec.owner = "bob@acme.example".into();
    let got = check(
        &index,
        "root",
        Op::Update,
        Some(Object::Organization(new)),
        Some(Object::Organization(old)),
    );
    assert_eq!(reason(&got), "NewOwnerExpires");
}

/// A review about a Membership the caches do not have (an invented name, or another UID)
/// revokes nobody, even when allowed.
#[tokio::test]
async fn a_review_of_an_invented_membership_revokes_nobody() {
    let revocations = crate::identity::revocation::Revocations::default();
    let mut index = acme();
    for m in &mut index.memberships {
        m.metadata.uid = Some(format!("{}-uid", m.name_any()));
    }
    let app = router(Arc::new(AppState {
        index,
        policy: policy(),
        ready: Box::new(|| true),
        metrics: crate::metrics::Metrics::new(),
        revocations: Some(revocations.clone()),
    }));
    let mut ghost = member("ghost", Some(OrgRole::Admin), &[]);
    ghost.spec.email = "alice@acme.example".into();
    ghost.metadata.uid = Some("alice-uid".into());
    let old = serde_json::to_value(&ghost).expect("json");
    ghost.spec.disabled = true;
    let mut body = review(
        "UPDATE",
        "kubernetes-admin",
        serde_json::to_value(&ghost).expect("json"),
        old,
    );
    body["request"]["userInfo"]["groups"] = json!(["system:masters"]);
    post(app.clone(), body.to_string()).await;
    assert!(
        !revocations.revoked("alice-uid"),
        "the owner revoked by a review of a Membership that does not exist"
    );
    // The twin: the real one, disabled, is noted at once.
    let mut dave = m_of(&acme(), "dave");
    dave.metadata.uid = Some("dave-uid".into());
    let old = serde_json::to_value(&dave).expect("json");
    dave.spec.disabled = true;
    let mut body = review(
        "UPDATE",
        "kubernetes-admin",
        serde_json::to_value(&dave).expect("json"),
        old,
    );
    body["request"]["userInfo"]["groups"] = json!(["system:masters"]);
    post(app, body.to_string()).await;
    assert!(revocations.revoked("dave-uid"));
}

/// acme's Memberships, each with a UID (revocations are noted by UID).
fn with_uids(mut index: Mem) -> Mem {
    for m in &mut index.memberships {
        m.metadata.uid = Some(format!("{}-uid", m.name_any()));
    }
    index
}

/// One review through the webhook noting into `noted`; whether it was allowed.
async fn send(index: Mem, noted: &crate::identity::revocation::Revocations, body: Value) -> bool {
    let app = router(Arc::new(AppState {
        index,
        policy: policy(),
        ready: Box::new(|| true),
        metrics: crate::metrics::Metrics::new(),
        revocations: Some(noted.clone()),
    }));
    post(app, body.to_string()).await["response"]["allowed"]
        .as_bool()
        .expect("an answer")
}

/// The admission webhook notes a cut-off for TokenReview only when the change is allowed, real
/// (not a dry run) and leaves the member without a Membership of their address; an allowed
/// re-enable lifts it. Each row starts from a fresh note book.
#[tokio::test]
async fn revocations_are_noted_only_for_allowed_real_cut_offs() {
    let by = |user: &str, op: &str, new: Value, old: Value, dry_run: bool| {
        let mut body = review(op, &who(user), new, old);
        if user == "root" {
            body["request"]["userInfo"]["groups"] = json!(["system:masters"]);
        }
        body["request"]["dryRun"] = json!(dry_run);
        body
    };
    let dave = m_of(&with_uids(acme()), "dave");
    let json_of = |m: &Membership| serde_json::to_value(m).expect("json");
    let mut disabled = dave.clone();
    disabled.spec.disabled = true;
    let mut expired = dave.clone();
    expired.spec.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(60),
    ));
    // A second Membership of dave's address (a superseded bootstrap, say).
    let mut twice = with_uids(acme());
    let mut other = dave.clone();
    other.metadata.name = Some("dave-bootstrap".into());
    other.metadata.uid = Some("dave-bootstrap-uid".into());
    twice.memberships.push(other);

    // (what, index, review, allowed, dave noted afterwards)
    let rows: Vec<(&str, Mem, Value, bool, bool)> = vec![
        (
            "a real disable by the platform admin",
            with_uids(acme()),
            by("root", "UPDATE", json_of(&disabled), json_of(&dave), false),
            true,
            true,
        ),
        (
            "the same disable as a dry run",
            with_uids(acme()),
            by("root", "UPDATE", json_of(&disabled), json_of(&dave), true),
            true,
            false,
        ),
        (
            "a disable the webhook refuses (a Member disabling himself)",
            with_uids(acme()),
            by("dave", "UPDATE", json_of(&disabled), json_of(&dave), false),
            false,
            false,
        ),
        (
            "an expiry moved into the past",
            with_uids(acme()),
            by("root", "UPDATE", json_of(&expired), json_of(&dave), false),
            true,
            true,
        ),
        (
            "deleting dave's only Membership",
            with_uids(acme()),
            by("root", "DELETE", Value::Null, json_of(&dave), false),
            true,
            true,
        ),
        (
            "deleting one of two Memberships of dave's address",
            twice,
            by("root", "DELETE", Value::Null, json_of(&dave), false),
            true,
            false,
        ),
        (
            "deleting dave's only Membership as a dry run",
            with_uids(acme()),
            by("root", "DELETE", Value::Null, json_of(&dave), true),
            true,
            false,
        ),
    ];
    for (what, index, body, allowed, noted) in rows {
        let book = crate::identity::revocation::Revocations::default();
        assert_eq!(send(index, &book, body).await, allowed, "{what}: allowed");
        assert_eq!(book.revoked("dave-uid"), noted, "{what}: dave noted");
        assert!(!book.revoked("alice-uid"), "{what}: the owner noted");
    }

    // Re-enabled by an allowed change: the note is lifted.
    let book = crate::identity::revocation::Revocations::default();
    let off = by("root", "UPDATE", json_of(&disabled), json_of(&dave), false);
    assert!(send(with_uids(acme()), &book, off).await);
    assert!(book.revoked("dave-uid"));
    let mut index = with_uids(acme());
    index.memberships.retain(|m| m.name_any() != "dave");
    index.memberships.push(disabled.clone());
    let on = by("root", "UPDATE", json_of(&dave), json_of(&disabled), false);
    assert!(send(index, &book, on).await);
    assert!(!book.revoked("dave-uid"), "re-enabled, still refused");
}

/// An Admin is an Admin only while their Membership stands: disabled or expired, they are
/// nobody in the organization (the twin: the same request while enabled is allowed).
#[test]
fn a_disabled_or_expired_admin_is_not_a_member() {
    let invite = |i: &Mem| {
        check(
            i,
            "bob",
            Op::Create,
            Some(Object::Membership(member(
                "erin",
                Some(OrgRole::Member),
                &[("payments", ProjectRole::Viewer)],
            ))),
            None,
        )
    };
    assert_eq!(reason(&invite(&acme())), "Allow");
    let with_bob = |change: fn(&mut Membership)| {
        let mut i = acme();
        for m in &mut i.memberships {
            if m.name_any() == "bob" {
                change(m);
            }
        }
        i
    };
    let disabled = with_bob(|m| m.spec.disabled = true);
    assert_eq!(reason(&invite(&disabled)), "NotAMember");
    let expired = with_bob(|m| {
        m.spec.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            crate::fixtures::ts("2026-01-09T00:00:00Z"),
        ))
    });
    assert_eq!(reason(&invite(&expired)), "NotAMember");
    // Expiring tomorrow: still an Admin today.
    let expiring = with_bob(|m| {
        m.spec.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            crate::fixtures::ts("2026-01-11T00:00:00Z"),
        ))
    });
    assert_eq!(reason(&invite(&expiring)), "Allow");
}

/// `adminsSeeAllProjects: true` makes every Admin a project Admin everywhere for the webhook
/// (as it does for RoleBindings); without it, only their own projects.
#[test]
fn admins_see_all_projects_widens_an_admins_reach_in_the_webhook() {
    let invite_into_web = |i: &Mem| {
        check(
            i,
            "bob",
            Op::Create,
            Some(Object::Membership(member(
                "erin",
                Some(OrgRole::Member),
                &[("web", ProjectRole::Developer)],
            ))),
            None,
        )
    };
    assert_eq!(reason(&invite_into_web(&acme())), "NotProjectAdmin");
    let mut all = acme();
    all.orgs[0].spec.admins_see_all_projects = true;
    assert_eq!(reason(&invite_into_web(&all)), "Allow");
    // Still Members only.
    let admin = check(
        &all,
        "bob",
        Op::Create,
        Some(Object::Membership(member(
            "erin",
            Some(OrgRole::Admin),
            &[],
        ))),
        None,
    );
    assert_eq!(reason(&admin), "AdminInvitesMembersOnly");
}

/// With an external authenticator (`--member-subjects external --subject-prefix oidc:`), a
/// member is `oidc:<email>`; roster's own names then stand for nobody, and an unprefixed
/// e-mail neither.
#[test]
fn members_are_known_by_the_configured_subject_prefix() {
    let index = acme();
    let project_change = |user: &str, subjects: crate::subjects::Subjects| {
        let groups = vec!["system:authenticated".to_string()];
        let old = project("payments");
        let mut new = old.clone();
        new.spec.display_name = Some("Payments".into());
        let (new, old) = (Object::Project(new), Object::Project(old));
        reason(&validate(
            &Request {
                operation: Op::Update,
                namespace: NS,
                name: "payments",
                object: Some(&new),
                old_object: Some(&old),
                username: user,
                groups: &groups,
                now: now(),
            },
            &index,
            &Policy {
                subjects,
                ..policy()
            },
        ))
    };
    use crate::subjects::Subjects;
    let external = || Subjects::external("oidc:");
    assert_eq!(project_change("oidc:bob@acme.example", external()), "Allow");
    assert_eq!(
        project_change("roster:acme:bob@acme.example", external()),
        "NotAMember"
    );
    assert_eq!(project_change("bob@acme.example", external()), "NotAMember");
    assert_eq!(
        project_change("oidc:dave@acme.example", external()),
        "MemberReadOnly"
    );
    // Both: either name is bob.
    let both = || Subjects::both("oidc:");
    assert_eq!(project_change("oidc:bob@acme.example", both()), "Allow");
    assert_eq!(
        project_change("roster:acme:bob@acme.example", both()),
        "Allow"
    );
}

/// A pending revocation may be lifted only by a real re-enable. Here
/// the platform admin disables dave (noted: his tokens are refused before the caches see it);
/// then an Admin's ordinary edit of dave (payments: Developer -> Viewer) is admitted against
/// the object as it was before the disable — a write racing the disable, or one the API server
/// admits against its watch cache before the disable reached it, whose storage then fails and
/// is never admitted again (a replace carrying the old resourceVersion). Nothing in that edit
/// enables dave, yet the note is cleared: his token is accepted again until roster's own watch
/// delivers the disable — the gap the 30 s hold exists to cover.
#[tokio::test]
async fn an_edit_admitted_against_the_pre_disable_object_keeps_the_revocation() {
    let by = |user: &str, new: &Membership, old: &Membership| {
        let mut body = review(
            "UPDATE",
            &who(user),
            serde_json::to_value(new).expect("json"),
            serde_json::to_value(old).expect("json"),
        );
        if user == "root" {
            body["request"]["userInfo"]["groups"] = json!(["system:masters"]);
        }
        body
    };
    let dave = m_of(&with_uids(acme()), "dave");
    let mut disabled = dave.clone();
    disabled.spec.disabled = true;
    let mut viewer = dave.clone();
    viewer.spec.projects = vec![ProjectGrant {
        name: "payments".into(),
        role: ProjectRole::Viewer,
    }];

    let book = crate::identity::revocation::Revocations::default();
    assert!(send(with_uids(acme()), &book, by("root", &disabled, &dave)).await);
    assert!(book.revoked("dave-uid"), "the disable is noted");
    // bob (Admin of payments) changes dave's role there, admitted against the old object.
    assert!(
        send(with_uids(acme()), &book, by("bob", &viewer, &dave)).await,
        "a project Admin may change a Member's role in their project"
    );
    assert!(
        book.revoked("dave-uid"),
        "an edit that enables nobody lifted the revocation of a member just disabled"
    );
}

/// roster's own kinds are read straight into their types (`answer_typed`); the general read
/// (kube's AdmissionReview of a DynamicObject, then the type) must give the same answer to
/// every body the typed read answers: every row of the matrix as every user, and reviews with
/// fields roster does not model (managedFields, unknown ones).
#[test]
fn the_typed_read_answers_as_the_general_read_does() {
    let answer = |got: (axum::http::StatusCode, axum::Json<Value>)| (got.0, got.1.0);
    let mut bodies = Vec::new();
    for row in &matrix_rows() {
        for (user, _) in expectations(row) {
            let (op, new, old) = (row.build)(&acme());
            let mut body = review_as(user, op, &new, &old);
            body["request"]["dryRun"] = json!(row.action.len() % 2 == 0);
            bodies.push(body);
        }
    }
    let mut erin = serde_json::to_value(member("erin", Some(OrgRole::Member), &[])).expect("json");
    erin["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Apply",
        "apiVersion": "roster.dev/v1alpha1", "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:email": {}}}}]);
    erin["metadata"]["uid"] = json!("8f0c");
    erin["status"] = json!({"phase": "Invited", "unknownToRoster": [1, 2.5, null, {"a": "é"}]});
    let mut disabled = erin.clone();
    disabled["spec"]["disabled"] = json!(true);
    bodies.push(review("UPDATE", &who("bob"), disabled, erin.clone()));
    bodies.push(review("DELETE", &who("bob"), Value::Null, erin));
    let mut unknown = review(
        "CREATE",
        &who("alice"),
        serde_json::to_value(project("web")).expect("json"),
        Value::Null,
    );
    unknown["request"]["options"] =
        json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"});
    unknown["request"]["somethingNew"] = json!({"deep": [[["fine"]]]});
    bodies.push(unknown);
    // Another organization's Admin on the same cluster, row by row: refused wherever acme's
    // Admin is allowed, the same way on both paths.
    let mut two = acme();
    let mut globex = org("olga@globex.example");
    globex.metadata.name = Some("globex".into());
    globex.metadata.namespace = Some("globex".into());
    two.orgs.push(globex);
    let mut olga = member("olga", Some(OrgRole::Admin), &[]);
    olga.metadata.namespace = Some("globex".into());
    olga.spec.email = "olga@globex.example".into();
    two.memberships.push(olga);
    let two = state(two);
    for row in matrix_rows().iter().filter(|r| r.admin == "Allow") {
        let (op, new, old) = (row.build)(&acme());
        let mut body = review_as("bob", op, &new, &old);
        let bytes = serde_json::to_vec(&body).expect("json");
        let allowed = super::answer_typed(&bytes, &two).map(answer);
        assert_eq!(
            allowed.map(|a| a.1["response"]["allowed"].clone()),
            Some(json!(true)),
            "{}: acme's Admin",
            row.action
        );
        body["request"]["userInfo"]["username"] = json!("roster:globex:olga@globex.example");
        let bytes = serde_json::to_vec(&body).expect("json");
        let refused = super::answer_typed(&bytes, &two).map(answer);
        assert_eq!(
            refused.as_ref().map(|a| a.1["response"]["allowed"].clone()),
            Some(json!(false)),
            "{}: globex's Admin",
            row.action
        );
        assert_eq!(
            refused,
            Some(answer(super::answer_general(&bytes, &two))),
            "{}",
            row.action
        );
    }
    let state = state(acme());
    for body in bodies {
        let bytes = serde_json::to_vec(&body).expect("json");
        let typed = super::answer_typed(&bytes, &state).map(answer);
        assert!(typed.is_some(), "read straight into the type: {body}");
        assert_eq!(
            typed,
            Some(answer(super::answer_general(&bytes, &state))),
            "{body}"
        );
    }
}

/// Bodies the general read refuses, which a derived type would read (it also takes an array
/// for an object, and skips fields it does not know without looking inside): the typed read
/// must leave them to the general one, which names what is wrong (red team 42).
#[tokio::test]
async fn bodies_the_general_read_refuses_are_not_read_the_typed_way() {
    let erin = serde_json::to_value(member("erin", Some(OrgRole::Member), &[])).expect("json");
    let good = review("CREATE", &who("alice"), erin.clone(), Value::Null).to_string();
    let with = |path: &[&str], value: Value| {
        let mut body = review("CREATE", &who("alice"), erin.clone(), Value::Null);
        let mut at = &mut body;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        body.to_string()
    };
    let as_array = |o: &Value| {
        Value::Array(
            ["metadata", "spec", "status"]
                .iter()
                .map(|k| o[*k].clone())
                .collect(),
        )
    };
    let mut deep = String::from("\"x\":");
    deep.push_str(&"[".repeat(200));
    deep.push_str(&"]".repeat(200));
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a response that is not one",
            with(&["response"], json!(42)).into_bytes(),
        ),
        (
            "the object as an array",
            with(&["request", "object"], as_array(&erin)).into_bytes(),
        ),
        ("an old object as an array", {
            let mut b = review("UPDATE", &who("alice"), erin.clone(), as_array(&erin));
            b["request"]["operation"] = json!("UPDATE");
            b.to_string().into_bytes()
        }),
        ("the review as an array", {
            let b: Value = serde_json::from_str(&good).expect("json");
            json!([b["apiVersion"], b["kind"], b["request"]])
                .to_string()
                .into_bytes()
        }),
        (
            "admission.k8s.io/v1beta1",
            with(&["apiVersion"], json!("admission.k8s.io/v1beta1")).into_bytes(),
        ),
        (
            "a review of another kind",
            with(&["kind"], json!("TokenReview")).into_bytes(),
        ),
        (
            "nesting past serde_json's limit",
            good.replacen('{', &format!("{{{deep},"), 1).into_bytes(),
        ),
        (
            "a number out of range",
            good.replacen('{', "{\"x\":1e999,", 1).into_bytes(),
        ),
        (
            "a lone surrogate",
            good.replacen('{', "{\"x\":\"\\ud800\",", 1).into_bytes(),
        ),
        (
            "a duplicate field",
            good.replacen("\"request\"", "\"request\":{},\"request\"", 1)
                .into_bytes(),
        ),
    ];
    let mut invalid_utf8 = b"{\"x\":\"\xff\",".to_vec();
    invalid_utf8.extend_from_slice(&good.as_bytes()[1..]);
    cases.push(("invalid UTF-8", invalid_utf8));
    let state = state(acme());
    let typed: Vec<&str> = cases
        .iter()
        .filter(|(_, body)| super::answer_typed(body, &state).is_some())
        .map(|(what, _)| *what)
        .collect();
    assert!(typed.is_empty(), "read the typed way: {typed:?}");
    for (what, body) in cases {
        let general = super::answer_general(&body, &state).1.0;
        assert_eq!(general["response"]["allowed"], false, "{what}: {general}");
        assert_eq!(
            post(app(acme(), true), body.clone()).await,
            general,
            "{what}"
        );
    }
    // The body they were made from is read the typed way.
    assert!(super::answer_typed(good.as_bytes(), &state).is_some());
}

fn state(index: Mem) -> AppState<Mem> {
    AppState {
        index,
        policy: policy(),
        ready: Box::new(|| true),
        metrics: crate::metrics::Metrics::new(),
        revocations: None,
    }
}
