//! Table-driven tests of `plan()`: every entitlement rule, grace-period edges, conflicts,
//! ownership moves, deletion, and the steady state (a converged world plans zero writes).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::*;
use crate::api::{MfaExemption, MfaState, OrgRole, Phase, ProjectGrant, ProjectRole};
use crate::fixtures::{CREATED, NS, member, org, project, ts};

const NOW: &str = "2026-01-10T00:00:00Z";

fn world(org: Option<Organization>, projects: Vec<Project>, memberships: Vec<Membership>) -> World {
    World {
        namespace: NS.into(),
        home_terminating: false,
        org,
        stray_orgs: vec![],
        home_is_project_of: None,
        projects,
        memberships: memberships.into_iter().map(Arc::new).collect(),
        namespaces: BTreeMap::new(),
        rolebindings: vec![],
        credentials: BTreeMap::new(),
        now: ts(NOW),
    }
}

/// The acme fixture: owner alice, admin bob (payments Admin), member dave (payments Developer,
/// web Viewer), projects payments and web.
fn acme() -> World {
    world(
        Some(org("alice@acme.example")),
        vec![project("payments"), project("web")],
        vec![
            member("alice", Some(OrgRole::Admin), &[]),
            member(
                "bob",
                Some(OrgRole::Admin),
                &[("payments", ProjectRole::Admin)],
            ),
            member(
                "dave",
                Some(OrgRole::Member),
                &[
                    ("payments", ProjectRole::Developer),
                    ("web", ProjectRole::Viewer),
                ],
            ),
        ],
    )
}

/// What the API server would hold after `plan` was applied to `w`.
fn converge(mut w: World, plan: &Plan) -> World {
    for n in plan.create_namespaces.iter().chain(&plan.adopt_namespaces) {
        w.namespaces.insert(n.name_any(), n.clone());
    }
    for n in &plan.delete_namespaces {
        w.namespaces.remove(n);
    }
    for n in &plan.release_namespaces {
        if let Some(ns) = w.namespaces.get_mut(n) {
            ns.metadata.labels = None;
            ns.metadata.annotations = None;
        }
    }
    let key = |rb: &RoleBinding| {
        (
            rb.metadata.namespace.clone().unwrap_or_default(),
            rb.name_any(),
        )
    };
    w.rolebindings
        .retain(|rb| !plan.delete_rolebindings.contains(&key(rb)));
    for rb in &plan.rolebindings {
        w.rolebindings.retain(|have| key(have) != key(rb));
        w.rolebindings.push(rb.clone());
    }
    w.memberships
        .retain(|m| !plan.delete_memberships.contains(&m.name_any()));
    for m in &plan.create_memberships {
        let mut m = m.clone();
        m.metadata.creation_timestamp = Some(Time(w.now));
        m.metadata.generation = Some(1);
        w.memberships.push(Arc::new(m));
    }
    if let (Some(o), Some(s)) = (w.org.as_mut(), &plan.org_status) {
        o.status = Some(s.clone());
    }
    for (name, s) in &plan.project_status {
        if let Some(p) = w.projects.iter_mut().find(|p| p.name_any() == *name) {
            p.status = Some(s.clone());
        }
    }
    for (name, s) in &plan.membership_status {
        if let Some(m) = w
            .memberships
            .iter_mut()
            .map(Arc::make_mut)
            .find(|m| m.name_any() == *name)
        {
            m.status = Some(s.clone());
        }
    }
    let set = |meta: &mut kube::core::ObjectMeta, on: bool| {
        let mut f: Vec<String> = meta
            .finalizers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|f| f != FINALIZER)
            .collect();
        if on {
            f.push(FINALIZER.into());
        }
        meta.finalizers = Some(f);
    };
    for (targets, on) in [(&plan.add_finalizer, true), (&plan.remove_finalizer, false)] {
        for t in targets {
            match t {
                Target::Organization(_) => {
                    if let Some(o) = w.org.as_mut() {
                        set(&mut o.metadata, on);
                    }
                }
                Target::Project(n) => {
                    if let Some(p) = w.projects.iter_mut().find(|p| p.name_any() == *n) {
                        set(&mut p.metadata, on);
                    }
                }
                _ => {}
            }
        }
    }
    // Objects whose deletion was waiting only for roster's finalizer are gone now.
    let gone = |meta: &kube::core::ObjectMeta| {
        meta.deletion_timestamp.is_some() && meta.finalizers.iter().flatten().next().is_none()
    };
    w.projects.retain(|p| !gone(&p.metadata));
    if w.org.as_ref().is_some_and(|o| gone(&o.metadata)) {
        w.org = None;
    }
    w
}

/// Plans and applies until nothing is left to write; returns the converged world.
fn settle(w: World) -> World {
    let mut w = w;
    for _ in 0..5 {
        let p = plan(&w, &Settings::default());
        if p.writes() == 0 {
            return w;
        }
        w = converge(w, &p);
    }
    panic!(
        "did not converge in 5 rounds: {:?}",
        plan(&w, &Settings::default())
    );
}

fn subjects(w: &World, ns: &str, rb: &str) -> Vec<String> {
    w.rolebindings
        .iter()
        .find(|b| b.metadata.namespace.as_deref() == Some(ns) && b.name_any() == rb)
        .unwrap_or_else(|| panic!("no RoleBinding {ns}/{rb}"))
        .subjects
        .iter()
        .flatten()
        .map(|s| {
            s.name
                .trim_start_matches("roster:acme:")
                .trim_end_matches("@acme.example")
                .to_string()
        })
        .collect()
}

/// The status `p` plans for `member`.
fn planned<'a>(p: &'a Plan, member: &str) -> &'a crate::api::MembershipStatus {
    &p.membership_status
        .iter()
        .find(|(n, _)| n == member)
        .expect("planned status")
        .1
}

fn status<'a>(w: &'a World, member: &str) -> &'a crate::api::MembershipStatus {
    w.memberships
        .iter()
        .find(|m| m.name_any() == member)
        .and_then(|m| m.status.as_ref())
        .expect("status")
}

#[test]
fn bindings_follow_the_declaration() {
    let w = settle(acme());
    assert_eq!(subjects(&w, "acme", "roster-owner"), ["alice"]);
    assert_eq!(subjects(&w, "acme", "roster-admins"), ["bob"]);
    assert_eq!(subjects(&w, "acme", "roster-members"), ["dave"]);
    assert_eq!(
        subjects(&w, "acme-payments", "roster-admin"),
        ["alice", "bob"]
    );
    assert_eq!(subjects(&w, "acme-payments", "roster-developer"), ["dave"]);
    assert!(subjects(&w, "acme-payments", "roster-viewer").is_empty());
    assert_eq!(
        subjects(&w, "acme-web", "roster-admin"),
        ["alice"],
        "bob is not in web"
    );
    assert_eq!(subjects(&w, "acme-web", "roster-viewer"), ["dave"]);
    assert_eq!(w.rolebindings.len(), 3 + 2 * 3);
    let rb = w
        .rolebindings
        .iter()
        .find(|b| b.name_any() == "roster-developer")
        .expect("rb");
    assert_eq!(rb.role_ref.name, "edit");
    assert_eq!(
        rb.labels().get(labels::ORGANIZATION).map(String::as_str),
        Some("acme")
    );
    assert_eq!(
        status(&w, "dave").access_summary.as_deref(),
        Some("payments=Developer,web=Viewer")
    );
    assert_eq!(
        status(&w, "alice").effective_role,
        Some(EffectiveRole::Owner)
    );
}

#[test]
fn a_converged_world_plans_zero_writes_and_no_events() {
    let w = settle(acme());
    let p = plan(&w, &Settings::default());
    assert_eq!(p.writes(), 0, "{p:?}");
    assert!(p.events.is_empty(), "{:?}", p.events);
    // Later, nothing changed but the clock: still nothing to write.
    let mut later = w;
    later.now = ts("2026-01-10T06:00:00Z");
    assert_eq!(plan(&later, &Settings::default()).writes(), 0);
}

#[test]
fn subject_names_and_role_mapping_are_configurable() {
    let s = Settings {
        subjects: crate::subjects::Subjects::external("oidc:"),
        project_cluster_roles: [
            (ProjectRole::Admin, "acme-admin".to_string()),
            (ProjectRole::Developer, "acme-dev".to_string()),
            (ProjectRole::Viewer, "view".to_string()),
        ]
        .into(),
        identity: false,
        hold_key: Default::default(),
    };
    let p = plan(&acme(), &s);
    let dev = p
        .rolebindings
        .iter()
        .find(|b| b.name_any() == "roster-developer")
        .expect("rb");
    assert_eq!(dev.role_ref.name, "acme-dev");
    assert_eq!(
        dev.subjects.as_ref().expect("subjects")[0].name,
        "oidc:dave@acme.example"
    );

    // Changing the mapping replaces the binding (roleRef is immutable).
    let w = settle(acme());
    let p = plan(&w, &s);
    assert!(
        p.delete_rolebindings
            .contains(&("acme-payments".into(), "roster-developer".into()))
    );
    assert!(
        p.rolebindings
            .iter()
            .any(|b| b.name_any() == "roster-developer" && b.role_ref.name == "acme-dev")
    );
}

#[test]
fn entitlement_rules() {
    struct Case {
        name: &'static str,
        change: fn(&mut Membership),
        phase: Phase,
        access: &'static str,
    }
    let cases = [
        Case {
            name: "enabled",
            change: |_| {},
            phase: Phase::Invited,
            access: "payments=Developer,web=Viewer",
        },
        Case {
            name: "disabled",
            change: |m| m.spec.disabled = true,
            phase: Phase::Disabled,
            access: "-",
        },
        Case {
            name: "expired",
            change: |m| m.spec.expires_at = Some(Time(ts("2026-01-09T00:00:00Z"))),
            phase: Phase::Expired,
            access: "-",
        },
        Case {
            name: "expires exactly now",
            change: |m| m.spec.expires_at = Some(Time(ts(NOW))),
            phase: Phase::Expired,
            access: "-",
        },
        Case {
            name: "expires later",
            change: |m| m.spec.expires_at = Some(Time(ts("2026-02-01T00:00:00Z"))),
            phase: Phase::Invited,
            access: "payments=Developer,web=Viewer",
        },
        Case {
            name: "unknown project",
            change: |m| {
                m.spec.projects.push(ProjectGrant {
                    name: "ghost".into(),
                    role: ProjectRole::Admin,
                })
            },
            phase: Phase::Invited,
            access: "payments=Developer,web=Viewer",
        },
    ];
    for c in cases {
        let mut w = acme();
        (c.change)(Arc::make_mut(&mut w.memberships[2]));
        let w = settle(w);
        let s = status(&w, "dave");
        assert_eq!(s.phase, Some(c.phase), "{}", c.name);
        assert_eq!(s.access_summary.as_deref(), Some(c.access), "{}", c.name);
        let in_dev =
            subjects(&w, "acme-payments", "roster-developer").contains(&"dave".to_string());
        assert_eq!(
            in_dev,
            c.access != "-",
            "{}: RoleBinding subjects follow entitlement",
            c.name
        );
    }
}

#[test]
fn expiry_schedules_a_requeue_and_regaining_restores_access() {
    let mut w = acme();
    Arc::make_mut(&mut w.memberships[2]).spec.expires_at = Some(Time(ts("2026-01-12T00:00:00Z")));
    let p = plan(&w, &Settings::default());
    assert_eq!(p.requeue_at, Some(ts("2026-01-12T00:00:00Z")));

    let mut w = settle(w);
    w.now = ts("2026-01-12T00:00:01Z");
    let mut w = settle(w);
    assert!(subjects(&w, "acme-payments", "roster-developer").is_empty());
    Arc::make_mut(&mut w.memberships[2]).spec.expires_at = None;
    Arc::make_mut(&mut w.memberships[2]).metadata.generation = Some(2);
    let p = plan(&w, &Settings::default());
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "AccessGranted" && e.note.contains("payments: granted")),
        "{:?}",
        p.events
    );
    let w = settle(w);
    assert_eq!(subjects(&w, "acme-payments", "roster-developer"), ["dave"]);
}

#[test]
fn email_conflict_older_membership_wins() {
    let mut w = acme();
    let mut dup = member(
        "dave2",
        Some(OrgRole::Admin),
        &[("web", ProjectRole::Admin)],
    );
    dup.spec.email = "dave@acme.example".into();
    dup.metadata.creation_timestamp = Some(Time(ts("2026-01-05T00:00:00Z")));
    w.memberships.push(Arc::new(dup));
    let w = settle(w);
    assert_eq!(status(&w, "dave2").phase, Some(Phase::Conflict));
    assert_eq!(status(&w, "dave2").access_summary.as_deref(), Some("-"));
    assert_eq!(status(&w, "dave").phase, Some(Phase::Invited));
    assert_eq!(
        subjects(&w, "acme-web", "roster-admin"),
        ["alice"],
        "the newer claim gives nothing"
    );
    let conditions = &status(&w, "dave2").conditions;
    let entitled = conditions
        .iter()
        .find(|c| c.type_ == "Entitled")
        .expect("entitled");
    assert_eq!(
        (entitled.status.as_str(), entitled.reason.as_str()),
        ("False", "EmailConflict")
    );
    assert!(
        entitled.message.contains("Membership dave"),
        "{}",
        entitled.message
    );
    let status_of = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
            .expect("condition")
    };
    // Only a person can resolve a second Membership of one address: GitOps tools must see a
    // failure (kstatus Stalled), not wait for a Ready that never comes.
    assert_eq!(status_of("Ready"), ("False", "EmailConflict"));
    assert_eq!(status_of("Stalled"), ("True", "EmailConflict"));
    assert_eq!(status_of("Reconciling").0, "False");

    // Same creation time: the name breaks the tie, stably.
    let mut w = acme();
    let mut dup = member("aaa", None, &[]);
    dup.spec.email = "dave@acme.example".into();
    w.memberships.push(Arc::new(dup));
    let w = settle(w);
    assert_eq!(status(&w, "dave").phase, Some(Phase::Conflict));
}

#[test]
fn mfa_grace_period_edges() {
    // MFA became required at REQUIRED (the org condition), grace 72h; dave joined at CREATED.
    const REQUIRED: &str = "2026-01-08T00:00:00Z";
    struct Case {
        name: &'static str,
        now: &'static str,
        joined: &'static str,
        enrolled: bool,
        exemption: Option<(Option<&'static str>,)>,
        state: MfaState,
        access: bool,
        deadline: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "inside grace",
            now: "2026-01-10T00:00:00Z",
            joined: CREATED,
            enrolled: false,
            exemption: None,
            state: MfaState::Pending,
            access: true,
            deadline: Some("2026-01-11T00:00:00Z"),
        },
        Case {
            name: "one second before the deadline",
            now: "2026-01-10T23:59:59Z",
            joined: CREATED,
            enrolled: false,
            exemption: None,
            state: MfaState::Pending,
            access: true,
            deadline: Some("2026-01-11T00:00:00Z"),
        },
        Case {
            name: "at the deadline",
            now: "2026-01-11T00:00:00Z",
            joined: CREATED,
            enrolled: false,
            exemption: None,
            state: MfaState::Overdue,
            access: false,
            deadline: Some("2026-01-11T00:00:00Z"),
        },
        Case {
            name: "joined after MFA was required",
            now: "2026-01-12T00:00:00Z",
            joined: "2026-01-10T00:00:00Z",
            enrolled: false,
            exemption: None,
            state: MfaState::Pending,
            access: true,
            deadline: Some("2026-01-13T00:00:00Z"),
        },
        Case {
            name: "enrolled",
            now: "2026-02-01T00:00:00Z",
            joined: CREATED,
            enrolled: true,
            exemption: None,
            state: MfaState::Enrolled,
            access: true,
            deadline: None,
        },
        Case {
            name: "exempt for good",
            now: "2026-02-01T00:00:00Z",
            joined: CREATED,
            enrolled: false,
            exemption: Some((None,)),
            state: MfaState::Exempt,
            access: true,
            deadline: None,
        },
        Case {
            name: "exemption running",
            now: "2026-02-01T00:00:00Z",
            joined: CREATED,
            enrolled: false,
            exemption: Some((Some("2026-03-01T00:00:00Z"),)),
            state: MfaState::Exempt,
            access: true,
            deadline: None,
        },
        Case {
            name: "exemption ended: grace runs from its end",
            now: "2026-03-02T00:00:00Z",
            joined: CREATED,
            enrolled: false,
            exemption: Some((Some("2026-03-01T00:00:00Z"),)),
            state: MfaState::Pending,
            access: true,
            deadline: Some("2026-03-04T00:00:00Z"),
        },
    ];
    for c in cases {
        let mut w = acme();
        let o = w.org.as_mut().expect("org");
        o.spec.security.mfa.required = true;
        o.status = Some(crate::fixtures::mfa_required_since(ts(REQUIRED)));
        w.now = ts(c.now);
        let dave = Arc::make_mut(&mut w.memberships[2]);
        dave.metadata.creation_timestamp = Some(Time(ts(c.joined)));
        if let Some((until,)) = c.exemption {
            dave.spec.mfa = Some(MfaExemption {
                exempt: true,
                exempt_until: until.map(|u| Time(ts(u))),
                reason: Some("r".into()),
            });
        }
        if c.enrolled {
            w.credentials.insert(
                "dave@acme.example".into(),
                crate::identity::store::Record {
                    email: "dave@acme.example".into(),
                    totp_sealed: Some("sealed".into()),
                    ..Default::default()
                },
            );
        }
        let p = plan(&w, &Settings::default());
        let s = planned(&p, "dave");
        let mfa = s.mfa.as_ref().expect("mfa");
        assert_eq!(mfa.state, c.state, "{}", c.name);
        assert_eq!(
            mfa.deadline.as_ref().map(|d| d.0),
            c.deadline.map(ts),
            "{}",
            c.name
        );
        assert_eq!(
            s.access_summary.as_deref() != Some("-"),
            c.access,
            "{}",
            c.name
        );
        if c.state == MfaState::Pending {
            assert!(
                p.requeue_at
                    .is_some_and(|r| r <= ts(c.deadline.expect("deadline"))),
                "{}: requeue before the deadline",
                c.name
            );
        }
    }
}

/// Red teams 33 and 34: an Admin deleted an unenrolled Member, overdue or a minute before
/// their deadline, and declared them again; the new Membership's creation started a new grace
/// period (72 hours of access without MFA, again and again), an exemption only the owner may
/// grant. The grace period runs from when the address first joined, which its credential
/// record keeps: carried to the new Membership's record, and kept as a tombstone while no
/// Membership holds the address.
#[test]
fn a_member_declared_again_gets_no_new_grace_period() {
    const REQUIRED: &str = "2026-01-08T00:00:00Z";
    let unix = |t: &str| u64::try_from(ts(t).as_second()).expect("unix");
    // (case, first joined as the record says, now, dave's state, deadline)
    let cases = [
        (
            "no record of the address: from this Membership's creation",
            None,
            "2026-02-01T00:00:00Z",
            MfaState::Pending,
            Some("2026-02-03T23:00:00Z"),
        ),
        (
            "first joined long ago (deleted overdue): overdue at once",
            Some("2026-01-01T00:00:00Z"),
            "2026-02-01T00:00:00Z",
            MfaState::Overdue,
            Some("2026-01-11T00:00:00Z"),
        ),
        (
            "first joined a day ago (deleted a minute before the deadline): the same deadline",
            Some("2026-01-31T00:00:00Z"),
            "2026-02-01T00:00:00Z",
            MfaState::Pending,
            Some("2026-02-03T00:00:00Z"),
        ),
    ];
    for (case, first_joined, now, state, deadline) in cases {
        let mut w = acme();
        let o = w.org.as_mut().expect("org");
        o.spec.security.mfa.required = true;
        o.status = Some(crate::fixtures::mfa_required_since(ts(REQUIRED)));
        w.now = ts(now);
        // dave declared (again) an hour ago.
        let dave = Arc::make_mut(&mut w.memberships[2]);
        dave.metadata.creation_timestamp = Some(Time(ts("2026-01-31T23:00:00Z")));
        if let Some(t) = first_joined {
            // The deleted Membership's record, cut down to its tombstone.
            w.credentials.insert(
                "dave@acme.example".into(),
                crate::identity::store::Record::tombstone("dave@acme.example", unix(t)),
            );
        }
        let p = plan(&w, &Settings::default());
        let s = planned(&p, "dave");
        let mfa = s.mfa.as_ref().expect("mfa");
        assert_eq!(mfa.state, state, "{case}");
        assert_eq!(
            mfa.deadline.as_ref().map(|d| d.0),
            deadline.map(ts),
            "{case}"
        );
        assert_eq!(
            s.access_summary.as_deref() != Some("-"),
            state != MfaState::Overdue,
            "{case}: {s:?}"
        );
    }
}

/// The record of an address no Membership holds: while MFA is required, cut down to a
/// tombstone (once); otherwise, and a tombstone once MFA is no longer required, deleted.
#[test]
fn a_departed_address_leaves_a_tombstone_while_mfa_is_required() {
    let joined = 1_700_000_000;
    let left = crate::identity::store::Record {
        email: "gone@acme.example".into(),
        membership_uid: Some("gone-uid".into()),
        first_joined: Some(joined),
        accepted_at: Some(joined + 60),
        password_hash: Some("hash".into()),
        ..Default::default()
    };
    let tombstone = crate::identity::store::Record::tombstone("gone@acme.example", joined);
    let settings = identity_settings();
    // (case, MFA required, record, keep_joined of the Forget planned, if one is)
    let cases = [
        ("left, MFA required", true, left.clone(), Some(Some(joined))),
        ("left, MFA not required", false, left, Some(None)),
        ("tombstone, MFA required", true, tombstone.clone(), None),
        (
            "tombstone, MFA no longer required",
            false,
            tombstone,
            Some(None),
        ),
    ];
    for (case, required, record, want) in cases {
        let mut w = acme();
        w.org.as_mut().expect("org").spec.security.mfa.required = required;
        w.credentials.insert(record.email.clone(), record);
        let forgets: Vec<_> = plan(&w, &settings)
            .identity
            .into_iter()
            .filter_map(|a| match a {
                IdentityAction::Forget { email, keep_joined } => Some((email, keep_joined)),
                _ => None,
            })
            .collect();
        let want: Vec<_> = want
            .into_iter()
            .map(|k| ("gone@acme.example".to_string(), k))
            .collect();
        assert_eq!(forgets, want, "{case}");
    }
}

/// Tombstones are bounded per organization: the earliest joined are kept, so departures
/// made later (an Admin inviting and deleting in a loop) cannot push an address out.
#[test]
fn tombstones_are_bounded_and_the_earliest_joined_are_kept() {
    use super::super::credentials::MAX_TOMBSTONES;
    use crate::identity::store::Record;
    let mut w = acme();
    w.org.as_mut().expect("org").spec.security.mfa.required = true;
    for i in 0..MAX_TOMBSTONES {
        let email = format!("t{i:05}@acme.example");
        w.credentials
            .insert(email.clone(), Record::tombstone(&email, 1_000 + i as u64));
    }
    let departed = |email: &str, joined: u64| Record {
        email: email.into(),
        membership_uid: Some(format!("{email}-uid")),
        first_joined: Some(joined),
        ..Default::default()
    };
    let forgets = |w: &World| -> Vec<(String, Option<u64>)> {
        plan(w, &identity_settings())
            .identity
            .into_iter()
            .filter_map(|a| match a {
                IdentityAction::Forget { email, keep_joined } => Some((email, keep_joined)),
                _ => None,
            })
            .collect()
    };
    let warned = |w: &World| {
        plan(w, &identity_settings())
            .events
            .iter()
            .filter(|e| e.warning && e.reason == "MfaJoinTimesForgotten")
            .map(|e| e.note.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(forgets(&w), vec![], "at the bound, nothing moves");
    assert_eq!(warned(&w), Vec::<String>::new());
    // A later departure past the bound is deleted, and the owner told; the tombstones stay.
    let mut late = w.clone();
    late.credentials.insert(
        "late@acme.example".into(),
        departed("late@acme.example", 1_000_000),
    );
    assert_eq!(forgets(&late), vec![("late@acme.example".into(), None)]);
    let notes = warned(&late);
    assert!(
        notes.len() == 1 && notes[0].starts_with("1 addresses"),
        "{notes:?}"
    );
    // An earlier one is kept; the latest-joined tombstone goes.
    let mut early = w;
    early.credentials.insert(
        "early@acme.example".into(),
        departed("early@acme.example", 10),
    );
    let last = format!("t{:05}@acme.example", MAX_TOMBSTONES - 1);
    assert_eq!(
        forgets(&early),
        vec![("early@acme.example".into(), Some(10)), (last, None)]
    );
}

#[test]
fn mfa_required_since_is_recorded_once() {
    let mut w = acme();
    w.org.as_mut().expect("org").spec.security.mfa.required = true;
    let w = settle(w);
    let o = w
        .org
        .as_ref()
        .and_then(|o| o.status.as_ref())
        .expect("org status");
    let since = crate::condition::true_since(&o.conditions, "MfaRequired").expect("condition");
    assert_eq!(since, ts(NOW));
    assert_eq!(o.mfa_compliant.as_deref(), Some("0/3"));
    assert_eq!(
        status(&w, "dave")
            .mfa
            .as_ref()
            .and_then(|m| m.deadline.as_ref())
            .map(|d| d.0),
        Some(ts("2026-01-13T00:00:00Z"))
    );
}

/// Planned from a cache still without its own Organization status write (MFA just
/// required), a reconcile took "MFA required since" as its own now: every member's grace
/// deadline moved and all were written again (one organization of 20 in three of six measured
/// cold starts). The controller shows a plan its own newer write (own_status.rs).
#[test]
fn a_cache_behind_the_org_status_write_moves_no_mfa_deadline() {
    let mut w = settle(acme());
    let o = w.org.as_mut().expect("org");
    o.spec.security.mfa.required = true;
    o.metadata.resource_version = Some("5".into());
    let p = plan(&w, &Settings::default());
    let written = p
        .org_status
        .clone()
        .expect("the MfaRequired condition is written");
    let stale_org = w.org.clone();
    let mut w = converge(w, &p);
    // The members' statuses reached the cache; the Organization's (version 12) did not.
    w.org = stale_org;
    w.now = ts("2026-01-10T00:00:05Z");
    let own =
        super::super::own_status::Written::new(w.org.as_ref().expect("org"), &written, Some("12"))
            .expect("integer version");
    assert!(super::super::own_status::overlay(
        w.org.as_mut().expect("org"),
        &own
    ));
    let p = plan(&w, &Settings::default());
    assert!(
        p.membership_status.is_empty() && p.org_status.is_none(),
        "nothing to write again: members {:?}, organization {:?}",
        p.membership_status
            .iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>(),
        p.org_status.as_ref().map(|s| &s.conditions),
    );
}

#[test]
fn admins_see_all_projects_only_when_the_org_says_so() {
    for (flag, expected_web_admins) in [(false, vec!["alice"]), (true, vec!["alice", "bob"])] {
        let mut w = acme();
        w.org.as_mut().expect("org").spec.admins_see_all_projects = flag;
        let w = settle(w);
        assert_eq!(
            subjects(&w, "acme-web", "roster-admin"),
            expected_web_admins,
            "adminsSeeAllProjects={flag}"
        );
    }
}

#[test]
fn owner_is_admin_everywhere_even_when_listed_lower() {
    let mut w = acme();
    Arc::make_mut(&mut w.memberships[0]).spec.projects = vec![ProjectGrant {
        name: "web".into(),
        role: ProjectRole::Viewer,
    }];
    let w = settle(w);
    assert!(subjects(&w, "acme-web", "roster-admin").contains(&"alice".to_string()));
    assert!(!subjects(&w, "acme-web", "roster-viewer").contains(&"alice".to_string()));
}

#[test]
fn default_role_applies_when_none_declared() {
    let mut w = acme();
    w.memberships.push(Arc::new(member("niaj", None, &[])));
    w.org.as_mut().expect("org").spec.default_role = OrgRole::Admin;
    let w = settle(w);
    assert_eq!(
        status(&w, "niaj").effective_role,
        Some(EffectiveRole::Admin)
    );
    assert_eq!(subjects(&w, "acme", "roster-admins"), ["bob", "niaj"]);
}

#[test]
fn ownership_moves_within_one_plan() {
    let mut w = settle(acme());
    let o = w.org.as_mut().expect("org");
    o.spec.owner = "bob@acme.example".into();
    o.metadata.generation = Some(2);
    let p = plan(&w, &Settings::default());
    assert!(p.events.iter().any(|e| e.reason == "OwnerChanged"));
    let w = converge(w, &p);
    assert_eq!(subjects(&w, "acme", "roster-owner"), ["bob"]);
    assert_eq!(
        subjects(&w, "acme", "roster-admins"),
        ["alice"],
        "the old owner keeps their declared role"
    );
    assert_eq!(
        subjects(&w, "acme-web", "roster-admin"),
        ["bob"],
        "new owner is Admin everywhere; alice listed nowhere"
    );
    assert_eq!(status(&w, "alice").access_summary.as_deref(), Some("-"));
    assert_eq!(
        plan(&w, &Settings::default()).writes(),
        0,
        "one plan was enough"
    );
}

#[test]
fn owner_without_membership_is_bootstrapped_and_keeps_access() {
    let mut w = acme();
    w.memberships.remove(0);
    let p = plan(&w, &Settings::default());
    assert_eq!(p.create_memberships.len(), 1);
    let created = &p.create_memberships[0];
    assert_eq!(created.spec.email, "alice@acme.example");
    assert_eq!(created.spec.role, Some(OrgRole::Admin));
    assert_eq!(created.name_any(), "owner-alice");
    let owner_rb = p
        .rolebindings
        .iter()
        .find(|b| b.name_any() == "roster-owner")
        .expect("owner binding");
    assert_eq!(
        owner_rb.subjects.as_ref().map(Vec::len),
        Some(1),
        "access does not wait for the Membership"
    );
    let w = settle(w);
    assert_eq!(w.memberships.len(), 3);
}

/// An Organization and its owner's Membership applied together must not race the bootstrap:
/// the declared Membership wins even though it is younger, and the placeholder is deleted.
#[test]
fn a_declared_owner_membership_supersedes_the_bootstrap() {
    let mut w = acme();
    let declared = Arc::unwrap_or_clone(w.memberships.remove(0));
    let w = settle(w);
    let boot = w
        .memberships
        .iter()
        .find(|m| m.name_any() == "owner-alice")
        .map(|m| m.as_ref().clone())
        .expect("bootstrap");
    let mut w = w;
    let mut declared = declared;
    declared.metadata.creation_timestamp = Some(Time(ts("2026-01-11T00:00:00Z")));
    w.memberships.push(Arc::new(declared));
    let p = plan(&w, &Settings::default());
    assert_eq!(p.delete_memberships, vec!["owner-alice".to_string()]);
    let s = &p
        .membership_status
        .iter()
        .find(|(n, _)| n == "alice")
        .expect("alice status")
        .1;
    assert_eq!(
        s.phase,
        Some(Phase::Invited),
        "the declared one holds the e-mail"
    );
    assert!(
        p.membership_status
            .iter()
            .any(|(n, s)| n == &boot.name_any() && s.phase == Some(Phase::Conflict))
    );
}

#[test]
fn foreign_namespace_is_not_adopted_silently() {
    let mut w = acme();
    let foreign = Namespace {
        metadata: kube::core::ObjectMeta {
            name: Some("acme-web".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    w.namespaces.insert("acme-web".into(), foreign.clone());
    let p = plan(&w, &Settings::default());
    assert!(
        !p.create_namespaces
            .iter()
            .chain(&p.adopt_namespaces)
            .any(|n| n.name_any() == "acme-web"),
        "no write to a foreign namespace"
    );
    assert!(
        !p.rolebindings
            .iter()
            .any(|b| b.metadata.namespace.as_deref() == Some("acme-web"))
    );
    let (_, web) = p
        .project_status
        .iter()
        .find(|(n, _)| n == "web")
        .expect("web status");
    assert_eq!(web.conditions[0].reason, "NamespaceNotOwned");
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "NamespaceNotOwned" && e.warning)
    );
    let w2 = converge(w.clone(), &p);
    assert!(
        plan(&w2, &Settings::default())
            .events
            .iter()
            .all(|e| e.reason != "NamespaceNotOwned"),
        "one Event, not one per reconcile"
    );

    // The namespace's owner hands it over: not enough alone.
    let mut adopt = foreign;
    adopt.metadata.annotations = Some([(labels::ADOPT.to_string(), "acme/web".to_string())].into());
    w.namespaces.insert("acme-web".into(), adopt);
    let p = plan(&w, &Settings::default());
    assert!(
        p.adopt_namespaces.is_empty(),
        "the annotation alone (anyone who owns a namespace can set it) takes nothing over"
    );
    // ... and a platform admin says so on the Project.
    let web = w
        .projects
        .iter_mut()
        .find(|p| p.name_any() == "web")
        .expect("web");
    web.spec.adopt_existing_namespace = true;
    let p = plan(&w, &Settings::default());
    assert!(p.adopt_namespaces.iter().any(|n| n.name_any() == "acme-web"
        && n.labels().get(labels::PROJECT).map(String::as_str) == Some("web")));
    assert!(
        p.create_namespaces
            .iter()
            .all(|n| n.name_any() != "acme-web"),
        "an existing namespace is never created"
    );
    // Handed over, it is handed back when its Project goes — never deleted, whatever the
    // Project's namespaceDeletion says.
    let mut w = settle(w);
    let web = w
        .projects
        .iter_mut()
        .find(|p| p.name_any() == "web")
        .expect("web");
    web.spec.namespace_deletion = NamespaceDeletion::Delete;
    web.metadata.deletion_timestamp = Some(Time(ts(NOW)));
    let p = plan(&w, &Settings::default());
    assert_eq!(p.release_namespaces, vec!["acme-web".to_string()]);
    assert!(p.delete_namespaces.is_empty());
    let w = settle(converge(w, &p));
    assert!(
        w.namespaces["acme-web"].metadata.labels.is_none(),
        "handed back without roster's labels"
    );
}

#[test]
fn namespaces_roster_did_not_mark_as_created_are_never_deleted() {
    let mut w = acme();
    w.projects[0].spec.namespace_deletion = NamespaceDeletion::Delete;
    let mut w = settle(w);
    // A namespace labelled as roster's but without the mark of creation (made before the mark
    // existed, or labelled by someone else): handed back, not deleted.
    if let Some(n) = w.namespaces.get_mut("acme-payments") {
        n.metadata.annotations = None;
    }
    w.projects[0].metadata.deletion_timestamp = Some(Time(ts(NOW)));
    let p = plan(&w, &Settings::default());
    assert!(p.delete_namespaces.is_empty(), "{p:?}");
    assert_eq!(p.release_namespaces, vec!["acme-payments".to_string()]);
}

#[test]
fn deleting_a_project_removes_what_roster_created_once() {
    for (policy, namespace_deleted) in [
        (NamespaceDeletion::Retain, false),
        (NamespaceDeletion::Delete, true),
    ] {
        let mut w = acme();
        w.projects[0].spec.namespace_deletion = policy;
        let mut w = settle(w);
        w.projects[0].metadata.deletion_timestamp = Some(Time(ts(NOW)));
        let p = plan(&w, &Settings::default());
        let payments_rbs = p
            .delete_rolebindings
            .iter()
            .filter(|(ns, _)| ns == "acme-payments")
            .count();
        assert_eq!(payments_rbs, 3, "{policy:?}");
        assert_eq!(
            p.delete_namespaces.contains(&"acme-payments".to_string()),
            namespace_deleted,
            "{policy:?}"
        );
        assert_eq!(p.remove_finalizer, vec![Target::Project("payments".into())]);
        assert!(
            p.events
                .iter()
                .any(|e| e.reason == "AccessRevoked"
                    && e.target == Target::Membership("dave".into()))
        );
        let w = converge(w, &p);
        assert!(w.projects.iter().all(|p| p.name_any() != "payments"));
        let again = plan(&w, &Settings::default());
        assert!(
            again.delete_rolebindings.is_empty()
                && again.delete_namespaces.is_empty()
                && again.remove_finalizer.is_empty(),
            "{policy:?}: nothing is deleted twice"
        );
        let w = settle(w);
        assert_eq!(
            status(&w, "dave").access_summary.as_deref(),
            Some("web=Viewer")
        );
    }
}

#[test]
fn deleting_the_organization_removes_every_binding() {
    let mut w = settle(acme());
    w.org.as_mut().expect("org").metadata.deletion_timestamp = Some(Time(ts(NOW)));
    let p = plan(&w, &Settings::default());
    assert_eq!(p.delete_rolebindings.len(), 9);
    assert!(p.rolebindings.is_empty());
    assert_eq!(
        p.remove_finalizer,
        vec![Target::Organization("acme".into())]
    );
    assert!(p.create_memberships.is_empty());
    let w = settle(converge(w, &p));
    assert!(w.org.is_none() && w.rolebindings.is_empty());
    let dave = status(&w, "dave");
    let reason_of = |t: &str| {
        dave.conditions
            .iter()
            .find(|c| c.type_ == t && c.status != "Unknown")
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    assert_eq!(
        reason_of("Entitled"),
        Some(("False".into(), "NoOrganization".into()))
    );
    assert_eq!(
        reason_of("Stalled"),
        Some(("True".into(), "NoOrganization".into()))
    );
}

#[test]
fn a_terminating_home_namespace_plans_only_clean_up() {
    let mut w = settle(acme());
    w.home_terminating = true;
    let p = plan(&w, &Settings::default());
    assert!(
        p.rolebindings.is_empty()
            && p.create_namespaces.is_empty()
            && p.adopt_namespaces.is_empty()
            && p.create_memberships.is_empty()
            && p.add_finalizer.is_empty()
    );
    assert_eq!(
        p.remove_finalizer.first(),
        Some(&Target::Organization("acme".into()))
    );
}

#[test]
fn an_organization_not_named_after_its_namespace_is_reported() {
    let mut w = world(None, vec![], vec![]);
    let mut stray = org("alice@acme.example");
    stray.metadata.name = Some("other".into());
    w.stray_orgs.push(stray);
    let p = plan(&w, &Settings::default());
    let (name, s) = &p.stray_org_status[0];
    assert_eq!(name, "other");
    assert_eq!(s.conditions[0].reason, "NameNotNamespace");
    assert!(p.rolebindings.is_empty());
}

#[test]
fn access_changes_of_a_member_make_one_event() {
    let mut w = settle(acme());
    let dave = Arc::make_mut(&mut w.memberships[2]);
    dave.spec.projects = vec![ProjectGrant {
        name: "payments".into(),
        role: ProjectRole::Viewer,
    }];
    dave.metadata.generation = Some(2);
    let p = plan(&w, &Settings::default());
    let notes: Vec<(&str, &str)> = p
        .events
        .iter()
        .map(|e| (e.reason, e.note.as_str()))
        .collect();
    assert_eq!(
        notes,
        vec![(
            "AccessRevoked",
            "payments: Developer → Viewer; web: revoked Viewer (no longer declared)"
        )]
    );
    assert!(p.events[0].warning, "a revocation is a warning");

    // A new member's first grants: one Event for all their projects.
    let mut w = settle(acme());
    w.memberships.push(Arc::new(member(
        "erin",
        Some(OrgRole::Member),
        &[
            ("payments", ProjectRole::Viewer),
            ("web", ProjectRole::Developer),
        ],
    )));
    let p = plan(&w, &Settings::default());
    let erin: Vec<(&str, &str, bool)> = p
        .events
        .iter()
        .filter(|e| e.target == Target::Membership("erin".into()))
        .map(|e| (e.reason, e.note.as_str(), e.warning))
        .collect();
    assert_eq!(
        erin,
        vec![(
            "AccessGranted",
            "payments: granted Viewer; web: granted Developer",
            false
        )]
    );
    // Only a role changed: AccessChanged.
    let mut w = settle(w);
    let dave = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
        .expect("dave");
    dave.spec.projects = vec![
        ProjectGrant {
            name: "payments".into(),
            role: ProjectRole::Admin,
        },
        ProjectGrant {
            name: "web".into(),
            role: ProjectRole::Viewer,
        },
    ];
    dave.metadata.generation = Some(3);
    let p = plan(&w, &Settings::default());
    assert_eq!(
        p.events
            .iter()
            .map(|e| (e.reason, e.note.as_str()))
            .collect::<Vec<_>>(),
        vec![("AccessChanged", "payments: Developer → Admin")]
    );
}

/// The identity part of the plan: who gets an invitation, which request annotations are acted
/// on (once per nonce), which credentials are forgotten.
#[test]
fn identity_actions() {
    use crate::controller::credentials::IdentityAction;
    use crate::identity::store::{Invitation, Record};
    let settings = identity_settings();
    // bob (a Member, no projects) may be read by the owner, alice, alone.
    let readers = vec!["alice@acme.example".to_string()];
    let rec = |email: &str| Record {
        email: email.into(),
        invitation: Some(Box::new(Invitation {
            hash: "h".into(),
            sent_at: 1,
            expires_at: 2,
            delivery: "Secret".into(),
            scope: Some("Member:".into()),
            readers: readers.clone(),
            link_id: Some("1".into()),
        })),
        ..Default::default()
    };
    let accepted = |email: &str| Record {
        invitation: None,
        accepted_at: Some(1),
        ..rec(email)
    };
    let annotated = |mut m: crate::api::Membership, k: &str, v: &str| {
        m.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(format!("roster.dev/{k}"), v.into());
        m
    };
    struct Case {
        name: &'static str,
        member: crate::api::Membership,
        record: Option<Record>,
        want: Vec<IdentityAction>,
    }
    let invite_as = |nonce: Option<&str>, rotated: bool, scope: &str| IdentityAction::Invite {
        membership: "bob".into(),
        nonce: nonce.map(str::to_string),
        rotated,
        scope: scope.into(),
        readers: readers.clone(),
    };
    let invite = |nonce: Option<&str>| invite_as(nonce, false, "Member:");
    let rotate = invite_as(None, true, "Member:");
    let bob = || member("bob", None, &[]);
    let mut handled = accepted("bob@acme.example");
    handled.handled.insert("unlock".into(), "n1".into());
    let cases = vec![
        Case {
            name: "new member: invited",
            member: bob(),
            record: None,
            want: vec![invite(None)],
        },
        Case {
            name: "invitation out: nothing",
            member: bob(),
            record: Some(rec("bob@acme.example")),
            want: vec![],
        },
        Case {
            name: "resend request: a new invitation",
            member: annotated(bob(), "resend-invitation", "r1"),
            record: Some(rec("bob@acme.example")),
            want: vec![invite(Some("r1"))],
        },
        Case {
            name: "resend after acceptance: nothing to resend",
            member: annotated(bob(), "resend-invitation", "r1"),
            record: Some(accepted("bob@acme.example")),
            want: vec![],
        },
        Case {
            name: "unlock request: acted on",
            member: annotated(bob(), "unlock", "n2"),
            record: Some(handled.clone()),
            want: vec![IdentityAction::Unlock {
                membership: "bob".into(),
                email: "bob@acme.example".into(),
                nonce: "n2".into(),
            }],
        },
        Case {
            name: "unlock nonce already handled: nothing",
            member: annotated(bob(), "unlock", "n1"),
            record: Some(handled.clone()),
            want: vec![],
        },
        Case {
            name: "reset MFA request",
            member: annotated(bob(), "reset-mfa", "m1"),
            record: Some(accepted("bob@acme.example")),
            want: vec![IdentityAction::ResetMfa {
                membership: "bob".into(),
                email: "bob@acme.example".into(),
                nonce: "m1".into(),
            }],
        },
        Case {
            name: "a pending link issued for other rights: replaced",
            member: {
                let mut m = bob();
                m.spec.role = Some(OrgRole::Admin);
                m
            },
            record: Some(rec("bob@acme.example")),
            want: vec![invite_as(None, true, "Admin:")],
        },
        Case {
            name: "a pending link someone read who may not now: replaced",
            member: bob(),
            record: Some(Record {
                invitation: Some(Box::new(Invitation {
                    readers: vec!["alice@acme.example".into(), "mallory@acme.example".into()],
                    ..*rec("bob@acme.example").invitation.unwrap_or_default()
                })),
                ..rec("bob@acme.example")
            }),
            want: vec![rotate.clone()],
        },
        Case {
            name: "a record of a deleted namesake: a fresh invitation",
            member: bob(),
            record: Some(Record {
                membership_uid: Some("uid-of-a-deleted-bob".into()),
                ..accepted("bob@acme.example")
            }),
            want: vec![invite(None)],
        },
        Case {
            name: "disabled member: not invited",
            member: {
                let mut m = bob();
                m.spec.disabled = true;
                m
            },
            record: None,
            want: vec![],
        },
    ];
    for c in cases {
        let mut w = world(Some(org("alice@acme.example")), vec![], vec![c.member]);
        // The owner's bootstrap membership is not what this test is about.
        w.memberships.push(Arc::new(member("alice", None, &[])));
        w.credentials
            .insert("alice@acme.example".into(), accepted("alice@acme.example"));
        if let Some(r) = c.record {
            w.credentials.insert(r.email.clone(), r);
        }
        let p = plan(&w, &settings);
        assert_eq!(p.identity, c.want, "{}", c.name);
        assert_eq!(
            plan(&w, &Settings::default()).identity,
            vec![],
            "{}: nothing without identity",
            c.name
        );
    }

    // Credentials of an e-mail no Membership holds are forgotten.
    let mut w = world(Some(org("alice@acme.example")), vec![], vec![]);
    w.memberships.push(Arc::new(member("alice", None, &[])));
    w.credentials
        .insert("alice@acme.example".into(), accepted("alice@acme.example"));
    w.credentials
        .insert("gone@acme.example".into(), accepted("gone@acme.example"));
    assert_eq!(
        plan(&w, &settings).identity,
        vec![IdentityAction::Forget {
            email: "gone@acme.example".into(),
            keep_joined: None,
        }]
    );
}

/// Who may read a pending invitation link: exactly who could create that Membership as it
/// stands (DESIGN.md §3), through one RoleBinding per link.
#[test]
fn invitation_links_are_readable_by_exactly_who_could_invite() {
    use crate::identity::store::{Invitation, Record};
    let settings = identity_settings();
    // Issued to everyone: the binding is then who may read it now (a link is never bound to
    // more than it was issued to: `a_new_reader_is_not_bound_to_a_link_issued_before_they_could_read_it`).
    let everyone = ["alice", "bob", "carl", "dave", "erin", "fay", "gus"];
    let pending = |email: &str| Record {
        email: email.into(),
        invitation: Some(Box::new(Invitation {
            hash: "h".into(),
            sent_at: 1,
            expires_at: 2,
            delivery: "Secret".into(),
            readers: everyone
                .iter()
                .map(|m| format!("{m}@acme.example"))
                .collect(),
            link_id: Some("1".into()),
            ..Default::default()
        })),
        ..Default::default()
    };
    let mut w = world(
        Some(org("alice@acme.example")),
        vec![project("payments"), project("web")],
        vec![
            member("alice", Some(OrgRole::Admin), &[]),
            member(
                "bob",
                Some(OrgRole::Admin),
                &[("payments", ProjectRole::Admin)],
            ),
            member("carl", Some(OrgRole::Admin), &[]),
            member(
                "dave",
                Some(OrgRole::Member),
                &[("payments", ProjectRole::Viewer)],
            ),
            member(
                "erin",
                Some(OrgRole::Member),
                &[("web", ProjectRole::Viewer)],
            ),
            member("fay", Some(OrgRole::Member), &[]),
            {
                let mut m = member("gus", Some(OrgRole::Member), &[]);
                m.spec.disabled = true;
                m
            },
        ],
    );
    for m in everyone {
        let email = format!("{m}@acme.example");
        w.credentials.insert(email.clone(), pending(&email));
    }
    let readers = |w: &World, member: &str| -> Option<Vec<String>> {
        let p = plan(w, &settings);
        p.rolebindings
            .iter()
            .find(|b| b.name_any() == format!("roster-invitation-{member}-1"))
            .map(|b| {
                assert_eq!(b.role_ref.kind, "Role");
                assert_eq!(b.role_ref.name, format!("roster-invitation-{member}-1"));
                b.subjects
                    .iter()
                    .flatten()
                    .map(|s| {
                        s.name
                            .trim_start_matches("roster:acme:")
                            .trim_end_matches("@acme.example")
                            .to_string()
                    })
                    .collect()
            })
    };
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("alice", None),                          // the owner's own link: nobody
        ("carl", Some(&["alice"])),               // an Admin's: the owner only
        ("dave", Some(&["alice", "bob"])),        // a Member in bob's project
        ("erin", Some(&["alice"])),               // a Member outside bob's projects
        ("fay", Some(&["alice", "bob", "carl"])), // a Member with no projects
        ("gus", None),                            // disabled: nobody
    ];
    for (member, want) in cases {
        let got = readers(&w, member);
        assert_eq!(
            got.as_deref()
                .map(|v| v.iter().map(String::as_str).collect::<Vec<_>>()),
            want.map(|w| w.to_vec()),
            "{member}"
        );
    }
    // Accepted: the binding goes.
    let mut accepted = w.clone();
    if let Some(r) = accepted.credentials.get_mut("dave@acme.example") {
        r.invitation = None;
        r.accepted_at = Some(1);
    }
    assert_eq!(readers(&accepted, "dave"), None);
    // adminsSeeAllProjects: every Admin administers every project.
    if let Some(o) = w.org.as_mut() {
        o.spec.admins_see_all_projects = true;
    }
    assert_eq!(
        readers(&w, "erin"),
        Some(vec!["alice".to_string(), "bob".into(), "carl".into()])
    );
    // A disabled Admin reads nothing.
    Arc::make_mut(&mut w.memberships[1]).spec.disabled = true;
    assert_eq!(
        readers(&w, "erin"),
        Some(vec!["alice".to_string(), "carl".into()])
    );
}

#[test]
fn a_fresh_invitation_is_not_rotated_by_the_next_plan() {
    use crate::controller::credentials::IdentityAction;
    use crate::identity::store::{Invitation, Record};
    let settings = identity_settings();
    let mut w = world(
        Some(org("olga@acme.example")),
        vec![],
        vec![member("dave", Some(OrgRole::Member), &[])],
    );
    let p = plan(&w, &settings);
    let (scope, readers) = dave_invitation(&p);
    w = converge(w, &p);
    w.credentials.insert(
        "dave@acme.example".into(),
        Record {
            email: "dave@acme.example".into(),
            invitation: Some(Box::new(Invitation {
                hash: "h".into(),
                delivery: "Secret".into(),
                scope: Some(scope),
                readers,
                link_id: Some("1".into()),
                ..Default::default()
            })),
            ..Default::default()
        },
    );
    let p = plan(&w, &settings);
    assert!(
        !p.identity.iter().any(
            |a| matches!(a, IdentityAction::Invite { membership, .. } if membership == "dave")
        ),
        "{:?}",
        p.identity
    );
}

fn condition_of(o: &OrganizationStatus, t: &str) -> (String, String, String) {
    o.conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
        .unwrap_or_else(|| panic!("no condition {t}"))
}

/// Settings with identity running (invitations and requests planned).
fn identity_settings() -> Settings {
    Settings {
        identity: true,
        ..Settings::default()
    }
}

/// Whether `p` holds a change back (the Organization's status says so).
fn is_held(p: &Plan) -> bool {
    p.org_status
        .as_ref()
        .is_some_and(|s| format!("{s:?}").contains("maxAccessRemovals"))
}

/// A pending link of `member`'s, delivered as Secret `roster-invitation-<member>-<id>`, for
/// their rights as they stand in `w` and issued to `readers` (names at acme.example).
fn pending_link(w: &World, member: &str, id: &str, readers: &[&str]) -> Record {
    let m = w
        .memberships
        .iter()
        .find(|m| m.name_any() == member)
        .expect("member");
    Record {
        email: m.spec.email.clone(),
        membership_uid: m.metadata.uid.clone(),
        invitation: Some(Box::new(crate::identity::store::Invitation {
            hash: format!("h{id}"),
            expires_at: u64::MAX,
            delivery: "Secret".into(),
            scope: Some(crate::access::invitation_scope(
                w.org.as_ref().expect("org"),
                m,
            )),
            readers: readers
                .iter()
                .map(|r| format!("{r}@acme.example"))
                .collect(),
            link_id: Some(id.into()),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn with_limit(mut w: World, limit: Option<u32>) -> World {
    if let Some(o) = w.org.as_mut() {
        o.spec.max_access_removals = limit;
    }
    w
}

#[test]
fn the_blast_radius_guard_holds_a_change_until_a_person_acknowledges_it() {
    // Taking dave's projects away removes two grants: payments Developer, web Viewer.
    let converged = settle(with_limit(acme(), Some(1)));
    let mut w = converged.clone();
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        m.spec.projects.clear();
        m.metadata.generation = Some(2);
    }
    let p = plan(&w, &Settings::default());
    assert!(
        p.rolebindings.is_empty() && p.delete_rolebindings.is_empty(),
        "nothing of a held change is applied: {:?}",
        p.rolebindings
    );
    assert!(p.membership_status.is_empty() && p.project_status.is_empty());
    let status = p.org_status.clone().expect("org status");
    let (stalled, reason, message) = condition_of(&status, "Stalled");
    assert_eq!(
        (stalled.as_str(), reason.as_str()),
        ("True", "AccessRemovalsHeld")
    );
    assert!(
        message.contains("removes 2 access grants, more than spec.maxAccessRemovals (1)"),
        "{message}"
    );
    assert!(!message.contains("dave@"), "Members read it: {message}");
    let note = p
        .events
        .iter()
        .find(|e| e.reason == "AccessRemovalsHeld")
        .map(|e| e.note.clone())
        .unwrap_or_default();
    assert!(
        note.contains("dave@acme.example loses Developer in project payments"),
        "the Event (owner and Admins read it) names them: {note}"
    );
    assert_eq!(condition_of(&status, "Ready").0, "False");
    assert_eq!(condition_of(&status, "Reconciling").0, "False");
    assert_eq!(
        p.events.iter().map(|e| e.reason).collect::<Vec<_>>(),
        ["AccessRemovalsHeld"]
    );
    assert_eq!(
        subjects(&converge(w.clone(), &p), "acme-web", "roster-viewer"),
        ["dave"]
    );

    // Held, it stays held: no writes and no second Event on the next pass.
    let w = converge(w, &p);
    let again = plan(&w, &Settings::default());
    assert_eq!(again.writes(), 0, "{again:?}");
    assert!(again.events.is_empty());

    // Acknowledging another fingerprint changes nothing; this one — in the Event, not in
    // the condition Members read — lets the change through.
    let fingerprint = note
        .split("accept-removals=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("fingerprint")
        .to_string();
    assert!(!message.contains(&fingerprint), "{message}");
    let annotate = |mut w: World, value: &str| {
        if let Some(o) = w.org.as_mut() {
            o.metadata.annotations = Some(
                [(
                    crate::api::contract::ACCEPT_REMOVALS_ANNOTATION.to_string(),
                    value.to_string(),
                )]
                .into(),
            );
        }
        w
    };
    let wrong = annotate(w.clone(), "000000000000");
    assert_eq!(plan(&wrong, &Settings::default()).writes(), 0);
    let w = settle(annotate(w, &fingerprint));
    assert!(subjects(&w, "acme-web", "roster-viewer").is_empty());
    let status = w
        .org
        .as_ref()
        .and_then(|o| o.status.clone())
        .expect("status");
    assert_eq!(condition_of(&status, "Stalled").0, "False");
    assert_eq!(condition_of(&status, "Ready").0, "True");

    // At or under the limit, or with no limit, a change goes through at once.
    for limit in [Some(2), None] {
        let mut w = with_limit(converged.clone(), limit);
        if let Some(m) = w
            .memberships
            .iter_mut()
            .map(Arc::make_mut)
            .find(|m| m.name_any() == "dave")
        {
            m.spec.projects.clear();
            m.metadata.generation = Some(2);
        }
        let w = settle(w);
        assert!(
            subjects(&w, "acme-web", "roster-viewer").is_empty(),
            "{limit:?}"
        );
    }
}

#[test]
fn cut_offs_are_never_held_back_by_the_guard() {
    let converged = settle(with_limit(acme(), Some(0)));
    // Disabling dave (a cut-off) goes through with a limit of 0 …
    let mut w = converged.clone();
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        m.spec.disabled = true;
    }
    let p = plan(&w, &Settings::default());
    assert!(
        p.org_status
            .as_ref()
            .is_none_or(|s| condition_of(s, "Stalled").0 == "False")
    );
    let w = settle(w);
    assert!(subjects(&w, "acme-web", "roster-viewer").is_empty());

    // … and so does it while another change is held: bob's removal waits, dave's cut-off not.
    let mut w = converged;
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "bob")
    {
        m.spec.projects.clear();
        m.metadata.generation = Some(2);
    }
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        m.spec.disabled = true;
    }
    let p = plan(&w, &Settings::default());
    let status = p.org_status.clone().expect("status");
    let (stalled, _, _) = condition_of(&status, "Stalled");
    assert_eq!(stalled, "True");
    let note = p
        .events
        .iter()
        .find(|e| e.reason == "AccessRemovalsHeld")
        .map(|e| e.note.clone())
        .unwrap_or_default();
    assert!(
        note.contains("bob@acme.example") && !note.contains("dave@"),
        "{note}"
    );
    let w = converge(w, &p);
    assert!(
        subjects(&w, "acme-web", "roster-viewer").is_empty(),
        "dave is cut off"
    );
    assert!(
        subjects(&w, "acme-payments", "roster-developer").is_empty(),
        "dave is cut off"
    );
    assert_eq!(
        subjects(&w, "acme-payments", "roster-admin"),
        ["alice", "bob"],
        "bob waits"
    );
}

#[test]
fn an_ownership_transfer_is_never_held_back_by_the_guard() {
    // A transfer is confirmed with the owner's password and code (or made by a platform admin):
    // the former owner must lose the owner's RBAC at once, whatever the limit.
    let mut w = settle(with_limit(acme(), Some(0)));
    if let Some(o) = w.org.as_mut() {
        o.spec.owner = "bob@acme.example".into();
    }
    let p = plan(&w, &Settings::default());
    assert!(
        p.org_status
            .as_ref()
            .is_none_or(|s| condition_of(s, "Stalled").0 == "False"),
        "{:?}",
        p.org_status
    );
    let held = w.clone();
    let w = settle(w);
    assert_eq!(subjects(&w, NS, "roster-owner"), ["bob"]);

    // With another change held back, the former owner still loses the owner's rights at once.
    let mut held = held;
    if let Some(m) = held
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        m.spec.projects.clear();
        m.metadata.generation = Some(2);
    }
    let p = plan(&held, &Settings::default());
    let status = p.org_status.clone().expect("status");
    assert_eq!(condition_of(&status, "Stalled").0, "True");
    let held = converge(held, &p);
    assert!(
        subjects(&held, NS, "roster-owner").is_empty(),
        "alice is no longer owner"
    );
    assert_eq!(
        subjects(&held, "acme-web", "roster-viewer"),
        ["dave"],
        "dave's removal waits"
    );
}

#[test]
fn a_bulk_import_is_one_event_on_the_organization() {
    let mut w = settle(acme());
    for i in 0..15 {
        w.memberships.push(Arc::new(member(
            &format!("new{i:02}"),
            Some(OrgRole::Member),
            &[("web", ProjectRole::Viewer)],
        )));
    }
    // A change to a member already there in the same reconcile keeps its own Event.
    let dave = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
        .expect("dave");
    dave.spec.projects.retain(|g| g.name != "web");
    dave.metadata.generation = Some(2);
    let p = plan(&w, &Settings::default());
    let events: Vec<(&Target, &str)> = p.events.iter().map(|e| (&e.target, e.reason)).collect();
    assert_eq!(
        events,
        vec![
            (&Target::Membership("dave".into()), "AccessRevoked"),
            (&Target::Organization("acme".into()), "MembersGranted"),
        ]
    );
    let note = &p.events[1].note;
    assert!(
        note.starts_with("15 new members granted access: new00, new01"),
        "{note}"
    );
    // Their statuses still say everything.
    assert_eq!(
        p.membership_status
            .iter()
            .filter(|(n, _)| n.starts_with("new"))
            .count(),
        15
    );
}

// ---- red-13: attacks on the blast-radius guard ----

fn settle_with(w: World, s: &Settings) -> World {
    let mut w = w;
    for _ in 0..5 {
        let p = plan(&w, s);
        if p.writes() == 0 {
            return w;
        }
        w = converge(w, &p);
    }
    panic!("did not converge in 5 rounds");
}

/// A project Admin holds Kubernetes' `admin` ClusterRole in the project namespace (the default
/// project role), which lets them edit RoleBindings there, roster's own included. Subjects they
/// add to roster's bindings are drift, not grants anyone approved: the controller must take
/// them out at once. The guard counts the revert as "removals" (it diffs against the observed
/// bindings), so adding more than `spec.maxAccessRemovals` subjects makes the drift stick, and
/// freezes every other change of the organization (the owner's removals included).
#[test]
fn red13_drift_added_by_a_project_admin_is_not_kept_by_the_guard() {
    let converged = settle(with_limit(acme(), Some(2)));
    let mut w = converged.clone();
    let rb = w
        .rolebindings
        .iter_mut()
        .find(|b| {
            b.metadata.namespace.as_deref() == Some("acme-web") && b.name_any() == "roster-admin"
        })
        .expect("acme-web/roster-admin");
    // dave (web Viewer) made project Admin by hand, plus two padding names.
    for who in [
        "dave@acme.example",
        "pad1@evil.example",
        "pad2@evil.example",
    ] {
        rb.subjects
            .get_or_insert_with(Vec::new)
            .push(k8s_openapi::api::rbac::v1::Subject {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "User".into(),
                name: format!("roster:acme:{who}"),
                namespace: None,
            });
    }
    let p = plan(&w, &Settings::default());
    let after = converge(w, &p);
    assert!(
        subjects(&after, "acme-web", "roster-admin") == ["alice"],
        "hand-added subjects must be reverted at once, not held for acknowledgement; roster-admin in acme-web after one pass: {:?}; org status: {:?}",
        subjects(&after, "acme-web", "roster-admin"),
        p.org_status.as_ref().map(|s| s
            .conditions
            .iter()
            .find(|c| c.type_ == "Stalled")
            .map(|c| c.message.clone()))
    );
}

/// Deleting a Membership is the ordinary way to remove a person, and must cut them off like
/// disabling does. With external subjects (`--member-subjects external`, an OIDC prefix), the
/// API server authenticates the person without roster, so the RoleBinding is the only gate:
/// the guard keeps a deleted member's bindings until someone acknowledges the fingerprint.
#[test]
fn red13_a_deleted_membership_is_cut_off_at_once_with_external_subjects() {
    let s = Settings {
        subjects: crate::subjects::Subjects::external("oidc:"),
        ..Settings::default()
    };
    let converged = settle_with(with_limit(acme(), Some(2)), &s);
    let has_dave = |w: &World| {
        w.rolebindings
            .iter()
            .flat_map(|b| {
                b.subjects
                    .iter()
                    .flatten()
                    .map(move |x| (b.name_any(), b.namespace(), x.name.clone()))
            })
            .filter(|(_, _, n)| n.contains("dave@"))
            .collect::<Vec<_>>()
    };
    assert!(!has_dave(&converged).is_empty(), "fixture: dave is bound");
    let mut w = converged.clone();
    w.memberships.retain(|m| m.name_any() != "dave");
    let p = plan(&w, &s);
    let after = converge(w, &p);
    assert!(
        has_dave(&after).is_empty(),
        "dave's Membership was deleted, yet his bindings remain: {:?}",
        has_dave(&after)
    );
    // Disabling instead goes through at once (the inconsistency).
    let mut w = converged;
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        m.spec.disabled = true;
    }
    let after = settle_with(w, &s);
    assert!(has_dave(&after).is_empty());
}

/// While a change is held, `plan()` returns before `statuses()`, so the Organization's
/// `MfaRequired` condition is never recorded: `mfa_required_since` is "now" on every pass and
/// the grace period never ends. An Admin who does not want MFA keeps a hold going (deleting a
/// few Memberships is enough) and is never cut off as MFA-overdue — a cut-off the guard claims
/// never to hold back.
#[test]
fn red13_mfa_deadline_runs_while_a_change_is_held() {
    let converged = settle(with_limit(acme(), Some(1)));
    let mut w = converged;
    // Something held: dave's projects taken away (2 grants > 1). (Deleting a Membership is a
    // cut-off since this round, never held.)
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        m.spec.projects.clear();
        m.metadata.generation = Some(2);
    }
    // The owner now requires MFA (default grace 72 h); bob (Admin, payments Admin) has none.
    w.org.as_mut().expect("org").spec.security.mfa.required = true;
    let p = plan(&w, &Settings::default());
    let mut w = converge(w, &p);
    // Ten days later, the hold still unacknowledged.
    w.now = ts("2026-01-20T00:00:00Z");
    let p = plan(&w, &Settings::default());
    let w = converge(w, &p);
    assert!(
        !subjects(&w, "acme", "roster-admins").contains(&"bob".to_string()),
        "bob never enrolled MFA, required for 10 days (grace 72 h), yet still bound: roster-admins = {:?}, acme-payments/roster-admin = {:?}",
        subjects(&w, "acme", "roster-admins"),
        subjects(&w, "acme-payments", "roster-admin"),
    );
}

/// Control for the test above: with nothing held, bob is cut off once the grace has passed.
#[test]
fn red13_control_mfa_deadline_cuts_off_without_a_hold() {
    let mut w = settle(with_limit(acme(), Some(2)));
    w.org.as_mut().expect("org").spec.security.mfa.required = true;
    let mut w = settle(w);
    w.now = ts("2026-01-20T00:00:00Z");
    let w = settle(w);
    assert!(!subjects(&w, "acme", "roster-admins").contains(&"bob".to_string()));
}

#[test]
fn the_owner_keeps_their_rights_while_a_change_is_held() {
    // The owner's Membership is gone (roster makes a new one once the change is applied) while
    // another change is held: the owner is still the owner.
    let mut w = settle(with_limit(acme(), Some(1)));
    w.memberships.retain(|m| m.name_any() != "alice");
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        m.spec.projects.clear();
        m.metadata.generation = Some(2);
    }
    let p = plan(&w, &Settings::default());
    assert_eq!(
        condition_of(p.org_status.as_ref().expect("status"), "Stalled").0,
        "True"
    );
    let w = converge(w, &p);
    assert_eq!(subjects(&w, NS, "roster-owner"), ["alice"]);
    assert!(subjects(&w, "acme-web", "roster-admin").contains(&"alice".to_string()));
}

/// roster's cache keeps Memberships compact (`cache::CachedMembership`: roster's own labels
/// and annotations only, no finalizers or owner references; statuses without messages,
/// condition reasons or summary line) and reads them rebuilt. Every decision must come out
/// exactly as it does from the whole objects the API server holds: the same writes, the same
/// transition times, the same Events, the same holds, the same requests handled.
#[test]
fn compact_cached_memberships_plan_exactly_as_whole_ones() {
    fn compact(mut w: World) -> World {
        for m in &mut w.memberships {
            *m = Arc::new(crate::cache::CachedMembership::from((**m).clone()).full());
        }
        w
    }
    fn dave(w: &mut World) -> &mut Membership {
        let m = w
            .memberships
            .iter_mut()
            .find(|m| m.name_any() == "dave")
            .expect("dave");
        Arc::make_mut(m)
    }
    type Change = fn(&mut World);
    let cases: [(&str, Change); 12] = [
        ("nothing changed", |_| {}),
        ("the clock moved", |w| w.now = ts("2026-01-10T06:00:00Z")),
        ("a member disabled", |w| dave(w).spec.disabled = true),
        ("a project role raised", |w| {
            dave(w).spec.projects[1].role = ProjectRole::Admin;
        }),
        ("MFA required", |w| {
            if let Some(o) = w.org.as_mut() {
                o.spec.security.mfa.required = true;
            }
        }),
        ("MFA grace period over", |w| {
            w.now = ts("2026-01-14T00:00:00Z")
        }),
        ("a removal held by the guard", |w| {
            if let Some(o) = w.org.as_mut() {
                o.spec.max_access_removals = Some(0);
            }
            dave(w).spec.projects.clear();
        }),
        ("labels, annotations and finalizers not roster's", |w| {
            let meta = &mut dave(w).metadata;
            meta.labels = Some([("app.kubernetes.io/instance".into(), "team".into())].into());
            meta.annotations = Some([("argocd.argoproj.io/tracking-id".into(), "x".into())].into());
            meta.finalizers = Some(vec!["example.com/keep".into()]);
        }),
        ("a request to unlock and reset MFA", |w| {
            dave(w).metadata.annotations = Some(
                [
                    ("roster.dev/unlock".into(), "n1".into()),
                    ("roster.dev/reset-mfa".into(), "n2".into()),
                    ("roster.dev/resend-invitation".into(), "n3".into()),
                ]
                .into(),
            );
        }),
        ("a member being deleted", |w| {
            dave(w).metadata.deletion_timestamp = Some(Time(ts("2026-01-09T00:00:00Z")));
        }),
        ("a bootstrap Membership beside a declared one", |w| {
            let mut boot = member("boot", None, &[]);
            boot.spec.email = "dave@acme.example".into();
            boot.metadata.labels = Some([(crate::api::BOOTSTRAP_LABEL.into(), "x".into())].into());
            w.memberships.push(Arc::new(boot));
        }),
        ("an MFA exemption that ends", |w| {
            dave(w).spec.mfa = Some(crate::api::MfaExemption {
                exempt: true,
                exempt_until: Some(Time(ts("2026-01-12T00:00:00Z"))),
                reason: Some("travel".into()),
            });
        }),
    ];
    let mut mfa = acme();
    if let Some(o) = mfa.org.as_mut() {
        o.spec.security.mfa.required = true;
    }
    for (base_name, base) in [("acme", settle(acme())), ("acme with MFA", settle(mfa))] {
        assert_eq!(
            plan(&compact(base.clone()), &Settings::default()).writes(),
            0,
            "{base_name}: a converged world plans no writes from the cache either"
        );
        for (name, change) in cases {
            let mut whole = base.clone();
            change(&mut whole);
            let cached = compact(whole.clone());
            assert!(
                cached
                    .memberships
                    .iter()
                    .filter_map(|m| m.status.as_ref())
                    .all(|s| s.conditions.is_empty() && s.access_summary.is_none()),
                "fixture: the statuses are compact"
            );
            for settings in [Settings::default(), identity_settings()] {
                let (a, b) = (plan(&whole, &settings), plan(&cached, &settings));
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{base_name}: {name}");
            }
        }
    }
}

/// An organization whose one member, dave, was planned for once (its statuses stored).
fn dave_alone(settings: &Settings) -> World {
    let w = world(
        Some(org("olga@acme.example")),
        vec![],
        vec![member("dave", Some(OrgRole::Member), &[])],
    );
    let p = plan(&w, settings);
    converge(w, &p)
}

/// The scope and readers of the invitation `p` plans for dave.
fn dave_invitation(p: &Plan) -> (String, Vec<String>) {
    use crate::controller::credentials::IdentityAction;
    p.identity
        .iter()
        .find_map(|a| match a {
            IdentityAction::Invite {
                membership,
                scope,
                readers,
                ..
            } if membership == "dave" => Some((scope.clone(), readers.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no invitation for dave: {:?}", p.identity))
}

fn invites_dave(p: &Plan) -> bool {
    use crate::controller::credentials::IdentityAction;
    p.identity
        .iter()
        .any(|a| matches!(a, IdentityAction::Invite { membership, .. } if membership == "dave"))
}

/// After a link that could not be delivered, the next invitation waits its backoff (and the
/// reconcile is requeued for then) instead of being issued by the reconcile the withdrawal
/// itself triggers; once the time has come it is issued, and an explicit resend never waits.
#[test]
fn an_undelivered_invitation_is_retried_after_its_backoff() {
    use crate::identity::store::{Record, Undelivered};
    let settings = identity_settings();
    let w0 = dave_alone(&settings);
    let now = u64::try_from(w0.now.as_second()).expect("now");
    let with = |at: u64, attempts: u32, resend: bool| {
        let mut w = w0.clone();
        w.credentials.insert(
            "dave@acme.example".into(),
            Record {
                email: "dave@acme.example".into(),
                undelivered: Some(Undelivered { at, attempts }),
                ..Default::default()
            },
        );
        if resend {
            let mut m = (*w.memberships[0]).clone();
            m.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert("roster.dev/resend-invitation".into(), "n1".into());
            w.memberships[0] = std::sync::Arc::new(m);
        }
        w
    };
    let invites = |w: &World| {
        let p = plan(w, &settings);
        (invites_dave(&p), p.requeue_at.map(|t| t.as_second()))
    };
    // Failed a second ago, third time in a row: 8 s to wait.
    assert_eq!(
        invites(&with(now - 1, 3, false)),
        (false, Some(now as i64 + 7))
    );
    assert!(invites(&with(now - 8, 3, false)).0, "its time has come");
    assert!(invites(&with(now - 1, 3, true)).0, "a resend does not wait");
    // The backoff doubles from 2 s and stops at 5 minutes.
    let u = |attempts| Undelivered { at: 0, attempts }.retry_at();
    assert_eq!((u(1), u(2), u(8), u(9), u(40)), (2, 4, 256, 300, 300));
}

/// Red team of 3e1cdfe: the wait after an undelivered link is at most the backoff's cap (5
/// minutes) from now, whatever time the record says the last attempt failed at. A withdrawal
/// stamped by a clock that ran ahead (a replica whose clock was a year fast, or a clock stepped
/// back by NTP after the failure) must not hold the member's next invitation — and the
/// organization's requeue — for that whole year: only an explicit resend would get it out.
#[test]
fn an_undelivered_stamp_from_a_clock_ahead_waits_no_longer_than_the_cap() {
    use crate::identity::store::{Record, Undelivered};
    let settings = identity_settings();
    let mut w = dave_alone(&settings);
    let now = u64::try_from(w.now.as_second()).expect("now");
    let year = 365 * 24 * 3600;
    w.credentials.insert(
        "dave@acme.example".into(),
        Record {
            email: "dave@acme.example".into(),
            membership_uid: w.memberships[0].metadata.uid.clone(),
            undelivered: Some(Undelivered {
                at: now + year,
                attempts: 1,
            }),
            ..Default::default()
        },
    );
    let p = plan(&w, &settings);
    let invited = invites_dave(&p);
    let requeue = p.requeue_at.map(|t| t.as_second() - now as i64);
    assert!(
        invited || requeue.is_some_and(|s| s <= 300),
        "dave's invitation waits {requeue:?} s (a record stamped a year ahead)"
    );
}

/// Red team of b0372fa (seen failing): the plan that issues a Secret-delivered link now writes
/// "Pending, delivery Secret" in the member's status, but the RoleBinding that lets the link's
/// readers (here the owner) get it is planned from the stored record only, i.e. by the next
/// reconcile — and not at all while the blast-radius guard holds a change (`guard::hold` keeps
/// only existing bindings). Meanwhile `kubectl roster invite link dave`, run because the status
/// says the link is there, is told "you may not read dave's invitation link". Before b0372fa
/// the status showed the link in the same plan that bound its readers (bindings are written
/// before statuses).
#[test]
fn red_b0372fa_a_status_shows_a_link_only_once_its_readers_may_read_it() {
    use crate::api::contract::invitation_link_name;
    let settings = identity_settings();
    let w = world(
        Some(org("olga@acme.example")),
        vec![],
        vec![member("dave", Some(OrgRole::Member), &[])],
    );
    let p = plan(&w, &settings);
    let shown = p
        .membership_status
        .iter()
        .find(|(n, _)| n == "dave")
        .and_then(|(_, s)| s.invitation.clone())
        .and_then(|i| i.delivery);
    let link = invitation_link_name("dave", None);
    let readable = w
        .rolebindings
        .iter()
        .chain(&p.rolebindings)
        .any(|rb| rb.name_any() == link);
    assert!(
        shown.as_deref() != Some("Secret") || readable,
        "dave's status shows a link by Secret ({shown:?}) that nobody is bound to read (no RoleBinding {link})"
    );
}

/// While a change is held, a link's binding is still exactly its readers: the owner promotes
/// pending yara to Admin (her new link is the owner's alone) while Admin bob holds a change of
/// two removals over a limit of one. (Red team 20: the hold kept bob on the binding of the link
/// issued in place of the one he read; he could set yara's password, and her record would say
/// only the owner could read her link.)
#[test]
fn a_held_change_keeps_no_former_reader_on_a_rotated_link() {
    held_change_and_yara_s_link(true);
}

/// The same hold, yara left a Member of payments: the held change makes carl Admin of payments,
/// and held, it gives him nothing — not yara's link either, although her link is replaced for
/// the readers the held change would make (red team 22).
#[test]
fn a_held_change_binds_no_new_reader_to_a_link() {
    held_change_and_yara_s_link(false);
}

fn held_change_and_yara_s_link(promote_yara: bool) {
    use crate::controller::credentials::IdentityAction;
    use crate::identity::store::{Invitation, Record};
    let settings = identity_settings();
    let mut w = world(
        Some(org("alice@acme.example")),
        vec![project("payments")],
        vec![
            member("alice", Some(OrgRole::Admin), &[]),
            member(
                "bob",
                Some(OrgRole::Admin),
                &[("payments", ProjectRole::Admin)],
            ),
            member(
                "d1",
                Some(OrgRole::Member),
                &[("payments", ProjectRole::Developer)],
            ),
            member(
                "d2",
                Some(OrgRole::Member),
                &[("payments", ProjectRole::Developer)],
            ),
            member(
                "yara",
                Some(OrgRole::Member),
                &[("payments", ProjectRole::Viewer)],
            ),
            member("carl", Some(OrgRole::Admin), &[]),
        ],
    );
    // Every member has accepted but yara, whose link (Secret) is pending.
    w.credentials.extend(crate::fixtures::accepted(&[
        "alice", "bob", "carl", "d1", "d2",
    ]));
    let invitation_of = |p: &Plan| {
        p.identity.iter().find_map(|a| match a {
            IdentityAction::Invite {
                membership,
                scope,
                readers,
                ..
            } if membership == "yara" => Some((scope.clone(), readers.clone())),
            _ => None,
        })
    };
    for _ in 0..5 {
        let p = plan(&w, &settings);
        if let Some((scope, readers)) = invitation_of(&p) {
            w.credentials.insert(
                "yara@acme.example".into(),
                Record {
                    email: "yara@acme.example".into(),
                    invitation: Some(Box::new(Invitation {
                        hash: "h1".into(),
                        delivery: "Secret".into(),
                        scope: Some(scope),
                        readers,
                        link_id: Some("1".into()),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
            );
        }
        if p.writes() == 0 && invitation_of(&p).is_none() {
            break;
        }
        w = converge(w, &p);
    }
    assert_eq!(
        subjects(&w, NS, "roster-invitation-yara-1"),
        vec!["alice", "bob"]
    );
    // A hold: limit 1, and bob takes payments away from d1 and d2 (two removals).
    w = with_limit(w, Some(1));
    for name in ["d1", "d2"] {
        if let Some(m) = w
            .memberships
            .iter_mut()
            .map(Arc::make_mut)
            .find(|m| m.name_any() == name)
        {
            m.spec.projects.clear();
        }
    }
    // The held change also makes carl Admin of payments: held, it gives him nothing, yara's
    // link included.
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "carl")
    {
        m.spec.projects = vec![crate::api::ProjectGrant {
            name: "payments".into(),
            role: ProjectRole::Admin,
        }];
    }
    // Meanwhile the owner promotes yara to Admin: her link is to be the owner's alone.
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "yara")
        .filter(|_| promote_yara)
    {
        m.spec.role = Some(OrgRole::Admin);
    }
    let p = plan(&w, &settings);
    assert!(is_held(&p), "held: {:?}", p.org_status);
    let readers = invitation_of(&p).map(|(_, r)| r).unwrap_or_else(|| {
        w.credentials
            .get("yara@acme.example")
            .and_then(|r| r.invitation.as_ref())
            .map(|i| i.readers.clone())
            .unwrap_or_default()
    });
    let w2 = converge(w, &p);
    let bound = subjects(&w2, NS, "roster-invitation-yara-1");
    assert!(
        bound
            .iter()
            .all(|b| readers.contains(&format!("{b}@acme.example"))),
        "the link's RoleBinding grants {bound:?}, its record says {readers:?}"
    );
    // The next reconcile, still held, with the replaced link on the record.
    let mut w3 = w2;
    if let Some(r) = w3.credentials.get_mut("yara@acme.example")
        && let Some(i) = r.invitation.as_mut()
    {
        i.hash = "h2".into();
        i.link_id = Some("2".into());
        i.readers = readers.clone();
        if let Some((scope, _)) = invitation_of(&p) {
            i.scope = Some(scope);
        }
    }
    let p3 = plan(&w3, &settings);
    let w3 = converge(w3, &p3);
    let bound: Vec<String> = subjects(&w3, NS, "roster-invitation-yara-2");
    assert!(
        !bound.iter().any(|b| b == "carl"),
        "a held change bound carl to yara's link (its record's readers: {readers:?}): {bound:?}"
    );
}

/// A reader who may read a member's link only since it was issued (here the owner turned on
/// adminsSeeAllProjects) is not bound to it: they read the link issued in its place. (Red team
/// 20: `apply` writes bindings before it rotates links, so carl was bound to the old link,
/// whose record did not name him, and could accept it.)
#[test]
fn a_new_reader_is_not_bound_to_a_link_issued_before_they_could_read_it() {
    use crate::identity::store::{Invitation, Record};
    let settings = identity_settings();
    let mut w = world(
        Some(org("alice@acme.example")),
        vec![project("payments"), project("web")],
        vec![
            member("alice", Some(OrgRole::Admin), &[]),
            member("carl", Some(OrgRole::Admin), &[("web", ProjectRole::Admin)]),
            member(
                "yara",
                Some(OrgRole::Member),
                &[("payments", ProjectRole::Viewer)],
            ),
        ],
    );
    w.credentials
        .extend(crate::fixtures::accepted(&["alice", "carl"]));
    let m = w
        .memberships
        .iter()
        .find(|m| m.name_any() == "yara")
        .unwrap()
        .clone();
    let scope = crate::access::invitation_scope(w.org.as_ref().unwrap(), &m);
    w.credentials.insert(
        "yara@acme.example".into(),
        Record {
            email: "yara@acme.example".into(),
            invitation: Some(Box::new(Invitation {
                hash: "h1".into(),
                delivery: "Secret".into(),
                scope: Some(scope),
                readers: vec!["alice@acme.example".into()],
                link_id: Some("1".into()),
                ..Default::default()
            })),
            ..Default::default()
        },
    );
    w = settle_with(w, &settings);
    assert_eq!(subjects(&w, NS, "roster-invitation-yara-1"), vec!["alice"]);
    if let Some(o) = w.org.as_mut() {
        o.spec.admins_see_all_projects = true;
    }
    let p = plan(&w, &settings);
    let bound: Vec<String> = p
        .rolebindings
        .iter()
        .filter(|b| b.name_any() == "roster-invitation-yara-1")
        .flat_map(|b| b.subjects.iter().flatten().map(|s| s.name.clone()))
        .collect();
    assert!(
        !bound.iter().any(|n| n.contains("carl")),
        "bound {bound:?} while the stored link's readers are [alice]: {:?}",
        p.identity
    );
    // The link is issued again, for its readers now.
    assert!(
        p.identity.iter().any(|a| matches!(a,
            crate::controller::credentials::IdentityAction::Invite { membership, readers, .. }
                if membership == "yara" && readers.contains(&"carl@acme.example".to_string()))),
        "{:?}",
        p.identity
    );
}

/// Each link has a binding of its own, named for it (`link_id`): when a link is replaced, the
/// old binding goes and the new one names only the new link's readers. A binding planned from
/// a stale record names the stale link, whose Secret holds a dead link (red teams 22 and 23:
/// with one name per member, a former reader still bound, by a stale cache or by the API
/// server's authorizer, read the replacement).
#[test]
fn a_link_binding_is_named_for_its_link_and_goes_with_it() {
    let settings = identity_settings();
    let mut w = acme();
    w.credentials
        .extend(crate::fixtures::accepted(&["alice", "bob"]));
    if let Some(o) = w.org.as_mut() {
        o.spec.admins_see_all_projects = true;
    }
    let link = |w: &World, id: &str, readers: &[&str]| pending_link(w, "dave", id, readers);
    let old = "roster-invitation-dave-1111111111";
    let new = "roster-invitation-dave-2222222222";
    w.credentials.insert(
        "dave@acme.example".into(),
        link(&w, "1111111111", &["alice", "bob"]),
    );
    w = settle_with(w, &settings);
    assert_eq!(subjects(&w, NS, old), vec!["alice", "bob"]);

    // bob may no longer read dave's link: it is replaced, for alice alone, under new names.
    if let Some(o) = w.org.as_mut() {
        o.spec.admins_see_all_projects = false;
    }
    let p = plan(&w, &settings);
    assert!(
        p.identity.iter().any(|a| matches!(a,
            crate::controller::credentials::IdentityAction::Invite { membership, readers, .. }
                if membership == "dave" && readers == &["alice@acme.example".to_string()])),
        "{:?}",
        p.identity
    );
    w = converge(w, &p);
    w.credentials.insert(
        "dave@acme.example".into(),
        link(&w, "2222222222", &["alice"]),
    );
    w = settle_with(w, &settings);
    assert_eq!(subjects(&w, NS, new), vec!["alice"]);
    assert!(
        !w.rolebindings.iter().any(|b| b.name_any() == old),
        "the replaced link's binding is gone"
    );

    // bob may read again, while a stale cache still shows the first link: he is bound to that
    // one (dead) link only, never to the live one, whose record names alice alone.
    if let Some(o) = w.org.as_mut() {
        o.spec.admins_see_all_projects = true;
    }
    for record in [
        link(&w, "1111111111", &["alice", "bob"]),
        link(&w, "2222222222", &["alice"]),
    ] {
        let mut stale = w.clone();
        stale.credentials.insert("dave@acme.example".into(), record);
        let p = plan(&stale, &settings);
        let bound_to_new = p
            .rolebindings
            .iter()
            .filter(|b| b.name_any() == new)
            .flat_map(|b| b.subjects.iter().flatten())
            .any(|s| s.name.contains("bob"));
        assert!(
            !bound_to_new,
            "bob bound to the live link: {:?}",
            p.rolebindings
        );
    }
}

/// A link replaced while a change is held (a resend, or its readers changed) is read by whom
/// the link it replaces was bound to, as far as its record names them. A held change adds no
/// reader, but a replacement is no new reader: with a name of its own, it was bound to nobody
/// until the hold ended (red team 24: an Admin held a change, then resent every pending link
/// of his projects, and nobody could read any). Statuses wait with the hold, so the
/// Membership's still names the old link: `roster invite link` finds the new one through its
/// binding (cluster `members::a_link_resent_while_a_change_is_held_can_be_read`).
#[test]
fn a_link_replaced_while_a_change_is_held_is_read_by_who_read_the_one_before() {
    let settings = identity_settings();
    let mut w = acme();
    for name in ["e1", "e2"] {
        w.memberships.push(Arc::new(member(
            name,
            Some(OrgRole::Member),
            &[("payments", ProjectRole::Developer)],
        )));
    }
    w.credentials
        .extend(crate::fixtures::accepted(&["alice", "bob", "e1", "e2"]));
    let link = |w: &World, id: &str| pending_link(w, "dave", id, &["alice"]);
    let old = "roster-invitation-dave-1111111111";
    let new = "roster-invitation-dave-2222222222";
    w.credentials
        .insert("dave@acme.example".into(), link(&w, "1111111111"));
    w = settle_with(with_limit(w, Some(1)), &settings);
    assert_eq!(subjects(&w, NS, old), vec!["alice"]);

    // bob takes payments away from e1 and e2: two removals over a limit of one, held.
    for name in ["e1", "e2"] {
        if let Some(m) = w
            .memberships
            .iter_mut()
            .map(Arc::make_mut)
            .find(|m| m.name_any() == name)
        {
            m.spec.projects.clear();
        }
    }
    // Meanwhile dave's link is resent.
    w.credentials
        .insert("dave@acme.example".into(), link(&w, "2222222222"));
    let p = plan(&w, &settings);
    assert!(is_held(&p), "held: {:?}", p.org_status);
    let w2 = converge(w, &p);
    assert_eq!(
        subjects(&w2, NS, new),
        vec!["alice"],
        "the new link is read"
    );
    assert!(
        !w2.rolebindings.iter().any(|b| b.name_any() == old),
        "the old one's binding is gone"
    );
}

/// dave's pending link, read by alice and bob, in a world where bob may read it as long as
/// `bob_reads`; `id`: its link id.
fn dave_with_a_link(bob_reads: bool, id: Option<&str>) -> World {
    let mut w = acme();
    w.credentials
        .extend(crate::fixtures::accepted(&["alice", "bob"]));
    if let Some(o) = w.org.as_mut() {
        o.spec.admins_see_all_projects = bob_reads;
    }
    let mut record = pending_link(&w, "dave", id.unwrap_or_default(), &["alice", "bob"]);
    if let Some(i) = record.invitation.as_mut() {
        i.link_id = id.map(str::to_string);
    }
    w.credentials.insert("dave@acme.example".into(), record);
    w
}

fn dave_s_link_replaced(p: &Plan) -> bool {
    p.identity.iter().any(|a| {
        matches!(a,
            crate::controller::credentials::IdentityAction::Invite { membership, rotated: true, nonce: None, .. }
                if membership == "dave")
    })
}

/// A disabled (or expired) member's pending link is replaced too when a reader loses the
/// right to read it: re-enabled, the member's link opened again for the former reader, who
/// could set their password (red team 24). Nothing else is done for a disabled member.
#[test]
fn a_disabled_member_s_link_is_replaced_when_a_reader_loses_the_right() {
    let settings = identity_settings();
    let disable = |mut w: World| {
        if let Some(m) = w
            .memberships
            .iter_mut()
            .map(Arc::make_mut)
            .find(|m| m.name_any() == "dave")
        {
            m.spec.disabled = true;
        }
        w
    };
    // The twin: bob may still read it, and nothing is issued for a disabled member.
    let p = plan(&disable(dave_with_a_link(true, Some("1"))), &settings);
    assert!(p.identity.is_empty(), "{:?}", p.identity);
    let p = plan(&disable(dave_with_a_link(false, Some("1"))), &settings);
    assert!(dave_s_link_replaced(&p), "{:?}", p.identity);
}

/// A link from before each link had names of its own (no `link_id`) is replaced once: a
/// former reader may have read it through a binding of the one name all of a member's links
/// had (red teams 22, 23, 24). The twin: a link with an id stays.
#[test]
fn a_link_from_before_links_had_names_of_their_own_is_replaced() {
    let settings = identity_settings();
    assert!(!dave_s_link_replaced(&plan(
        &dave_with_a_link(true, Some("1")),
        &settings
    )));
    assert!(dave_s_link_replaced(&plan(
        &dave_with_a_link(true, None),
        &settings
    )));
}

/// A RoleBinding labelled as roster's grant of project web, but planted in another namespace
/// (anyone who may write bindings there can), is no grant of roster's:
/// while a change is held it neither stands for dave's web grant nor is kept. (Red team 25:
/// counted, it made dave's web Viewer grant look changed, so the hold dropped it from
/// acme-web until the hold ended; and the planted binding was applied again, kept.)
#[test]
fn a_binding_planted_outside_its_project_s_namespace_is_no_grant_while_a_change_is_held() {
    let converged = settle(with_limit(acme(), Some(0)));
    assert_eq!(subjects(&converged, "acme-web", "roster-viewer"), ["dave"]);
    let mut w = converged.clone();
    // A held change: dave leaves payments.
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        m.spec.projects.retain(|g| g.name != "payments");
    }
    let mut planted = w
        .rolebindings
        .iter()
        .find(|b| {
            b.metadata.namespace.as_deref() == Some("acme-web") && b.name_any() == "roster-viewer"
        })
        .expect("acme-web/roster-viewer")
        .clone();
    planted.metadata.namespace = Some("elsewhere".into());
    planted.metadata.name = Some("roster-admin".into());
    w.rolebindings.push(planted);
    let p = plan(&w, &Settings::default());
    assert!(is_held(&p), "held: {:?}", p.org_status);
    let after = converge(w, &p);
    assert_eq!(
        subjects(&after, "acme-web", "roster-viewer"),
        ["dave"],
        "dave keeps web"
    );
    assert!(
        !after
            .rolebindings
            .iter()
            .any(|b| { b.metadata.namespace.as_deref() == Some("elsewhere") }),
        "the planted binding is not kept"
    );
}

/// A member's first link issued while a change is held (a Membership created meanwhile) is
/// read by the owner at once: the owner reads every link but their own, and ownership is
/// never a held grant. Admins who may read it wait for the hold to end, as a held change adds
/// no reader. (Red team 25: readable by nobody, nobody could be onboarded during a hold.)
#[test]
fn a_first_link_issued_while_a_change_is_held_is_read_by_the_owner() {
    let settings = identity_settings();
    let mut w = acme();
    w.credentials
        .extend(crate::fixtures::accepted(&["alice", "bob", "dave"]));
    if let Some(o) = w.org.as_mut() {
        o.spec.admins_see_all_projects = true;
    }
    w = settle_with(with_limit(w, Some(0)), &settings);
    // A held change: dave leaves payments.
    if let Some(m) = w
        .memberships
        .iter_mut()
        .map(Arc::make_mut)
        .find(|m| m.name_any() == "dave")
    {
        m.spec.projects.retain(|g| g.name != "payments");
    }
    // erin is created meanwhile, and her first link issued.
    let erin = Arc::new(member(
        "erin",
        Some(OrgRole::Member),
        &[("web", ProjectRole::Viewer)],
    ));
    w.memberships.push(erin);
    let record = pending_link(&w, "erin", "1", &["alice", "bob"]);
    w.credentials.insert("erin@acme.example".into(), record);
    let p = plan(&w, &settings);
    assert!(is_held(&p), "held: {:?}", p.org_status);
    let w = converge(w, &p);
    assert_eq!(subjects(&w, NS, "roster-invitation-erin-1"), vec!["alice"]);
}

/// A Project gone without roster's clean-up (deleted, its finalizer stripped by hand) leaves
/// its bindings behind in the namespace roster made for it: they are still its grants, and
/// their removal is held like any other (red team 26: counted only for Projects still there,
/// the removal went through whatever `maxAccessRemovals` said). The control: a Project
/// being deleted, finalizer on, is held too.
#[test]
fn the_grants_of_a_project_gone_without_clean_up_are_held_like_others() {
    let converged = settle(with_limit(acme(), Some(1)));
    let held = |w: &World| {
        let p = plan(w, &Settings::default());
        let stalled = is_held(&p);
        let web_bindings_deleted = p.delete_rolebindings.iter().any(|(ns, _)| ns == "acme-web");
        (stalled, web_bindings_deleted)
    };
    let mut deleting = converged.clone();
    if let Some(p) = deleting.projects.iter_mut().find(|p| p.name_any() == "web") {
        p.metadata.deletion_timestamp = Some(Time(ts(NOW)));
    }
    assert_eq!(held(&deleting), (true, false), "being deleted");
    let mut gone = converged.clone();
    gone.projects.retain(|p| p.name_any() != "web");
    assert_eq!(held(&gone), (true, false), "gone without clean-up");
}

/// A Project being deleted while the removal of its grants is held keeps its namespace: the
/// namespace is neither deleted (`namespaceDeletion: Delete`) nor handed back until the hold
/// ends (red team 27: the held plan still deleted the namespace, every binding and workload
/// in it, and the next reconcile no longer counted those grants, so the rest went through).
#[test]
fn a_held_change_deletes_and_hands_back_no_namespace() {
    use crate::api::NamespaceDeletion;
    for adopted in [false, true] {
        let mut w = with_limit(acme(), Some(1));
        if let Some(p) = w.projects.iter_mut().find(|p| p.name_any() == "web") {
            p.spec.namespace_deletion = NamespaceDeletion::Delete;
        }
        let mut w = settle(w);
        if adopted && let Some(n) = w.namespaces.get_mut("acme-web") {
            n.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(
                    labels::NAMESPACE_ORIGIN_ANNOTATION.into(),
                    labels::ORIGIN_ADOPTED.into(),
                );
        }
        if let Some(p) = w.projects.iter_mut().find(|p| p.name_any() == "web") {
            p.metadata.deletion_timestamp = Some(Time(ts(NOW)));
        }
        let p = plan(&w, &Settings::default());
        assert!(is_held(&p), "held: {:?}", p.org_status);
        assert!(
            p.delete_namespaces.is_empty() && p.release_namespaces.is_empty(),
            "adopted {adopted}: deleted {:?}, handed back {:?}",
            p.delete_namespaces,
            p.release_namespaces
        );
    }
}
