//! Property tests of the admission webhook: random organizations, random requesters and random
//! changes through `validate()` and through the HTTP router.
//!
//! - No panic, and every answer a well-formed AdmissionReview.
//! - No request is allowed that the permission matrix forbids. The judge is `matrix_forbids`
//!   below, written from the table in DESIGN.md §3 without `validate()`'s helpers, so the two
//!   can only agree by both being right.
//!
//! `make test` runs a bounded number of cases; `make fuzz` many more (ROSTER_FUZZ_CASES,
//! ROSTER_FUZZ_SEED to replay a failure).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::validate::{Decision, Index, Object, Op, Policy, Request, validate};
use crate::api::{
    Membership, MfaExemption, OrgRole, Organization, Project, ProjectGrant, ProjectRole,
};
use crate::fixtures::{NS, Rng, fuzz_budget, member, org, project, ts};
use crate::subjects::Subjects;

const CONTROLLER: &str = "system:serviceaccount:roster-system:roster";
const PROJECTS: [&str; 3] = ["p1", "p2", "p3"];
const PEOPLE: [&str; 6] = ["ann", "ben", "cat", "dan", "eve", "fox"];
const BOOTSTRAP: &str = "roster.dev/bootstrap";
const REQUESTS: [&str; 3] = [
    "roster.dev/resend-invitation",
    "roster.dev/unlock",
    "roster.dev/reset-mfa",
];

struct World {
    org: Organization,
    projects: Vec<Project>,
    memberships: Vec<Membership>,
}

impl Index for World {
    fn organization(&self, ns: &str) -> Option<Arc<Organization>> {
        (ns == NS).then(|| Arc::new(self.org.clone()))
    }
    fn organizations_prefixing(&self, ns: &str) -> Vec<String> {
        ns.strip_prefix(&format!("{NS}-"))
            .map(|_| NS.to_string())
            .into_iter()
            .collect()
    }
    fn memberships_with_email(&self, ns: &str, email: &str) -> Vec<Arc<Membership>> {
        self.memberships
            .iter()
            .filter(|m| ns == NS && m.spec.email == email)
            // As the cache gives them: rebuilt from their compact form.
            .map(|m| Arc::new(crate::cache::CachedMembership::from(m.clone()).full()))
            .collect()
    }
    fn projects(&self, ns: &str) -> Vec<Arc<Project>> {
        if ns != NS {
            return vec![];
        }
        self.projects.iter().cloned().map(Arc::new).collect()
    }
    fn projects_using_namespace(&self, target: &str) -> Vec<Arc<Project>> {
        self.projects
            .iter()
            .filter(|p| {
                p.spec
                    .namespace
                    .clone()
                    .unwrap_or_else(|| format!("{NS}-{}", p.name_any()))
                    == target
            })
            .cloned()
            .map(Arc::new)
            .collect()
    }
}

fn now() -> k8s_openapi::jiff::Timestamp {
    ts("2026-01-10T00:00:00Z")
}

fn person(rng: &mut Rng) -> &'static str {
    PEOPLE[rng.below(PEOPLE.len())]
}

fn email(person: &str) -> String {
    format!("{person}@acme.example")
}

fn role(rng: &mut Rng) -> Option<OrgRole> {
    *rng.pick(&[Some(OrgRole::Admin), Some(OrgRole::Member), None])
}

fn grants(rng: &mut Rng) -> Vec<(&'static str, ProjectRole)> {
    let mut out = Vec::new();
    for p in PROJECTS {
        if rng.chance(40) {
            out.push((p, *rng.pick(&ProjectRole::ALL)));
        }
    }
    out
}

fn random_member(rng: &mut Rng, person: &str) -> Membership {
    let mut m = member(person, role(rng), &grants(rng));
    m.metadata.uid = Some(format!("{person}-uid"));
    m.spec.disabled = rng.chance(15);
    if rng.chance(10) {
        m.spec.expires_at = Some(Time(ts(if rng.chance(50) {
            "2026-01-05T00:00:00Z"
        } else {
            "2026-06-01T00:00:00Z"
        })));
    }
    if rng.chance(25) {
        m.spec.mfa = Some(MfaExemption {
            exempt: true,
            exempt_until: None,
            reason: Some("r".into()),
        });
    }
    m
}

fn world(rng: &mut Rng) -> World {
    let owner = *rng.pick(&PEOPLE);
    let mut o = org(&email(owner));
    o.spec.default_role = *rng.pick(&[OrgRole::Admin, OrgRole::Member]);
    o.spec.admins_see_all_projects = rng.chance(20);
    let projects = PROJECTS
        .iter()
        .filter(|_| rng.chance(70))
        .map(|p| project(p))
        .collect();
    let mut memberships = Vec::new();
    for person in PEOPLE {
        if rng.chance(75) {
            let mut m = random_member(rng, person);
            if person == owner {
                // The owner is never disabled or expiring (the webhook keeps it so).
                m.spec.disabled = false;
                m.spec.expires_at = None;
                if rng.chance(30) {
                    m.metadata.name = Some(format!("owner-{person}"));
                    m.metadata
                        .labels
                        .get_or_insert_with(Default::default)
                        .insert(BOOTSTRAP.into(), "owner".into());
                }
            }
            memberships.push(m);
        }
    }
    World {
        org: o,
        projects,
        memberships,
    }
}

/// A random change to Membership `m` (a few fields at once).
fn mutate(rng: &mut Rng, m: &Membership) -> Membership {
    let mut n = m.clone();
    for _ in 0..=rng.below(3) {
        match rng.below(9) {
            0 => n.spec.role = role(rng),
            1 => n.spec.disabled = !n.spec.disabled,
            2 => {
                n.spec.expires_at = match n.spec.expires_at {
                    Some(_) => None,
                    None => Some(Time(ts("2026-03-01T00:00:00Z"))),
                }
            }
            3 => {
                n.spec.mfa = match n.spec.mfa {
                    Some(_) => None,
                    None => Some(MfaExemption {
                        exempt: true,
                        exempt_until: None,
                        reason: Some("r".into()),
                    }),
                }
            }
            4 => {
                n.spec.projects = grants(rng)
                    .into_iter()
                    .map(|(p, r)| ProjectGrant {
                        name: p.into(),
                        role: r,
                    })
                    .collect()
            }
            5 => n.spec.display_name = Some(format!("name {}", rng.next())),
            6 | 7 => {
                n.metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(rng.pick(&REQUESTS).to_string(), rng.next().to_string());
            }
            _ => {
                let labels = n.metadata.labels.get_or_insert_with(Default::default);
                if labels.remove(BOOTSTRAP).is_none() {
                    labels.insert(BOOTSTRAP.into(), "owner".into());
                }
            }
        }
    }
    n
}

fn random_change(rng: &mut Rng, w: &World) -> (Op, Option<Object>, Option<Object>) {
    match rng.below(10) {
        0 => {
            let mut new = w.org.clone();
            match rng.below(3) {
                0 => new.spec.owner = email(person(rng)),
                1 => new.spec.security.mfa.required = !new.spec.security.mfa.required,
                _ => new.spec.admins_see_all_projects = !new.spec.admins_see_all_projects,
            }
            let old = w.org.clone();
            match rng.below(3) {
                0 => (
                    Op::Update,
                    Some(Object::Organization(new)),
                    Some(Object::Organization(old)),
                ),
                1 => (Op::Delete, None, Some(Object::Organization(old))),
                _ => (Op::Create, Some(Object::Organization(old)), None),
            }
        }
        1 | 2 => {
            let name = *rng.pick(&["p1", "p2", "p3", "p4"]);
            let mut p = project(name);
            if rng.chance(30) {
                p.spec.namespace = Some(
                    rng.pick(&["acme-apps", "kube-system", "victim", "acme"])
                        .to_string(),
                );
            }
            match rng.below(3) {
                0 => (Op::Create, Some(Object::Project(p)), None),
                1 => {
                    let mut n = p.clone();
                    n.spec.display_name = Some("x".into());
                    (
                        Op::Update,
                        Some(Object::Project(n)),
                        Some(Object::Project(p)),
                    )
                }
                _ => (Op::Delete, None, Some(Object::Project(p))),
            }
        }
        3 | 4 => {
            let person = *rng.pick(&["gus", "hal", "ivy", "ann"]);
            let mut m = random_member(rng, person);
            m.metadata.name = Some(format!("new-{person}"));
            if rng.chance(10) {
                m.metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(BOOTSTRAP.into(), "owner".into());
            }
            (Op::Create, Some(Object::Membership(m)), None)
        }
        _ if w.memberships.is_empty() => (Op::Connect, None, None),
        5 => {
            let m = rng.pick(&w.memberships).clone();
            (Op::Delete, None, Some(Object::Membership(m)))
        }
        _ => {
            let m = rng.pick(&w.memberships).clone();
            let n = mutate(rng, &m);
            (
                Op::Update,
                Some(Object::Membership(n)),
                Some(Object::Membership(m)),
            )
        }
    }
}

/// Who asks, as the API server would say it: (user name, groups).
fn random_requester(rng: &mut Rng) -> (String, Vec<String>) {
    let authenticated = vec!["system:authenticated".to_string()];
    match rng.below(10) {
        0 => ("kubernetes-admin".into(), vec!["system:masters".into()]),
        1 => (CONTROLLER.into(), authenticated),
        2 => (
            format!("roster:bee:{}", email(person(rng))),
            vec!["roster:bee".into()],
        ),
        3 => (email(person(rng)), authenticated),
        4 => ("system:anonymous".into(), vec![]),
        _ => (
            format!("roster:{NS}:{}", email(person(rng))),
            vec![format!("roster:{NS}")],
        ),
    }
}

#[derive(Debug)]
enum Who {
    Platform,
    Controller,
    Owner,
    Admin(BTreeSet<String>),
    Member,
    Nobody,
}

/// The requester's standing, read off the world as DESIGN.md §3 describes it.
fn who(w: &World, user: &str, groups: &[String]) -> Who {
    if groups.iter().any(|g| g == "system:masters") {
        return Who::Platform;
    }
    if user == CONTROLLER {
        return Who::Controller;
    }
    let Some(address) = user.strip_prefix(&format!("roster:{NS}:")) else {
        return Who::Nobody;
    };
    if address == w.org.spec.owner {
        return Who::Owner;
    }
    let mine: Vec<&Membership> = w
        .memberships
        .iter()
        .filter(|m| m.spec.email == address)
        .collect();
    let [m] = mine.as_slice() else {
        return Who::Nobody;
    };
    let expired = m.spec.expires_at.as_ref().is_some_and(|t| t.0 <= now());
    if m.spec.disabled || expired {
        return Who::Nobody;
    }
    match m.spec.role.unwrap_or(w.org.spec.default_role) {
        OrgRole::Member => Who::Member,
        OrgRole::Admin if w.org.spec.admins_see_all_projects => {
            Who::Admin(w.projects.iter().map(|p| p.name_any()).collect())
        }
        OrgRole::Admin => Who::Admin(
            m.spec
                .projects
                .iter()
                .filter(|g| g.role == ProjectRole::Admin)
                .map(|g| g.name.clone())
                .collect(),
        ),
    }
}

fn bootstrap_label(o: Option<&Object>) -> Option<String> {
    match o {
        Some(Object::Membership(m)) => m.labels().get(BOOTSTRAP).cloned(),
        _ => None,
    }
}

fn annotation<'a>(m: &'a Membership, key: &str) -> Option<&'a String> {
    m.metadata.annotations.as_ref()?.get(key)
}

/// Why the permission matrix (DESIGN.md §3, with the rules roster adds to it: only roster sets
/// its labels, Project namespaces carry the organization's prefix) forbids this request, if it
/// does. Written from the table, not from `validate()`.
fn matrix_forbids(
    w: &World,
    who: &Who,
    op: Op,
    new: Option<&Object>,
    old: Option<&Object>,
) -> Option<&'static str> {
    let label_changed = match op {
        Op::Create => bootstrap_label(new).is_some(),
        Op::Update => bootstrap_label(new) != bootstrap_label(old),
        _ => false,
    };
    if label_changed && !matches!(who, Who::Controller) {
        return Some("only roster sets its labels");
    }
    let outside_prefix = matches!((op, new), (Op::Create, Some(Object::Project(p)))
        if p.spec.namespace.as_ref().is_some_and(|n| !n.starts_with(&format!("{NS}-"))));
    let role_of = |m: &Membership| m.spec.role.unwrap_or(w.org.spec.default_role);
    match who {
        Who::Platform | Who::Controller => None,
        Who::Nobody => Some("not a member"),
        Who::Member => Some("Members change nothing"),
        Who::Owner => match (op, new, old) {
            (Op::Create, Some(Object::Organization(_)), _) => {
                Some("organizations are the platform's")
            }
            (Op::Update, Some(Object::Organization(n)), Some(Object::Organization(o)))
                if n.spec.owner != o.spec.owner =>
            {
                Some("ownership moves with the owner's password")
            }
            _ if outside_prefix => Some("namespaces outside the prefix are the platform's"),
            _ => None,
        },
        Who::Admin(mine) => {
            let administers = |p: &str| mine.contains(p);
            let subject = new.or(old)?;
            match subject {
                Object::Organization(_) => Some("org settings are the owner's"),
                Object::Project(p) => match op {
                    Op::Create if outside_prefix => {
                        Some("namespaces outside the prefix are the platform's")
                    }
                    Op::Create => None,
                    _ if administers(&p.name_any()) => None,
                    _ => Some("only a project's Admins change it"),
                },
                Object::Membership(_) => {
                    let (n, o) = match (new, old) {
                        (Some(Object::Membership(n)), Some(Object::Membership(o))) => {
                            (Some(n), Some(o))
                        }
                        (Some(Object::Membership(n)), None) => (Some(n), None),
                        (None, Some(Object::Membership(o))) => (None, Some(o)),
                        _ => (None, None),
                    };
                    let owner = &w.org.spec.owner;
                    if n.into_iter().chain(o).any(|m| &m.spec.email == owner) {
                        return Some("the owner's Membership is the owner's");
                    }
                    let outside =
                        |m: &Membership| m.spec.projects.iter().any(|g| !administers(&g.name));
                    match (op, n, o) {
                        (Op::Create, Some(n), _) => {
                            if role_of(n) == OrgRole::Admin {
                                Some("Admins invite Members only")
                            } else if n
                                .spec
                                .mfa
                                .as_ref()
                                .is_some_and(|x| *x != MfaExemption::default())
                            {
                                Some("MFA exemptions are the owner's")
                            } else if outside(n) {
                                Some("Admins invite into their projects only")
                            } else {
                                None
                            }
                        }
                        (Op::Delete, _, Some(o)) => {
                            if role_of(o) == OrgRole::Admin {
                                Some("Admins remove Members only")
                            } else if outside(o) {
                                Some("Admins remove from their projects only")
                            } else {
                                None
                            }
                        }
                        (Op::Update, Some(n), Some(o)) => {
                            let requests: Vec<bool> = REQUESTS
                                .iter()
                                .map(|k| annotation(n, k) != annotation(o, k))
                                .collect();
                            let granted = |m: &Membership| -> BTreeSet<(String, ProjectRole)> {
                                m.spec
                                    .projects
                                    .iter()
                                    .map(|g| (g.name.clone(), g.role))
                                    .collect()
                            };
                            let (gn, go) = (granted(n), granted(o));
                            let touched_outside =
                                gn.symmetric_difference(&go).any(|(p, _)| !administers(p));
                            if n.spec.role != o.spec.role
                                || n.spec.disabled != o.spec.disabled
                                || n.spec.expires_at != o.spec.expires_at
                                || n.spec.mfa != o.spec.mfa
                            {
                                Some("role, enablement, expiry and MFA are the owner's")
                            } else if role_of(n) == OrgRole::Admin
                                && (gn != go
                                    || n.spec.display_name != o.spec.display_name
                                    || requests.iter().any(|c| *c))
                            {
                                Some("Admins change Members only")
                            } else if touched_outside {
                                Some("Admins give roles in their projects only")
                            } else if requests[0] && outside(n) {
                                Some("Admins resend only within their projects")
                            } else {
                                None
                            }
                        }
                        _ => None,
                    }
                }
            }
        }
    }
}

#[test]
fn no_request_the_matrix_forbids_is_ever_allowed() {
    let (cases, seed) = fuzz_budget(20_000);
    let mut rng = Rng::new(seed);
    let policy = Policy {
        controllers: vec![CONTROLLER.into()],
        subjects: Subjects::roster_only(),
        ..Policy::default()
    };
    let started = std::time::Instant::now();
    let (mut allowed, mut denied, mut admin_allowed) = (0u64, 0u64, 0u64);

    for case in 0..cases {
        let w = world(&mut rng);
        let (op, new, old) = random_change(&mut rng, &w);
        let (user, groups) = random_requester(&mut rng);
        let name = new
            .as_ref()
            .or(old.as_ref())
            .map(|o| match o {
                Object::Organization(x) => x.name_any(),
                Object::Project(x) => x.name_any(),
                Object::Membership(x) => x.name_any(),
            })
            .unwrap_or_default();
        let decision = validate(
            &Request {
                operation: op,
                namespace: NS,
                name: &name,
                object: new.as_ref(),
                old_object: old.as_ref(),
                username: &user,
                groups: &groups,
                now: now(),
            },
            &w,
            &policy,
        );
        let requester = who(&w, &user, &groups);
        match decision {
            Decision::Allow => {
                allowed += 1;
                admin_allowed += u64::from(matches!(requester, Who::Admin(_)));
                if let Some(rule) = matrix_forbids(&w, &requester, op, new.as_ref(), old.as_ref()) {
                    panic!(
                        "case {case} (ROSTER_FUZZ_SEED={seed}): allowed although {rule}: {user} as {requester:?}, {op:?}\nnew: {new:?}\nold: {old:?}"
                    );
                }
            }
            Decision::Deny { ref message, .. } => {
                denied += 1;
                assert!(!message.is_empty(), "a denial without a reason");
            }
        }
    }
    eprintln!(
        "webhook property: {cases} cases (seed {seed}) in {:?}: {allowed} allowed ({admin_allowed} by Admins), {denied} denied",
        started.elapsed()
    );
    // Not vacuous: both outcomes, and Admins allowed things, occur.
    if cases >= 1000 {
        assert!(allowed > cases / 20 && denied > cases / 20 && admin_allowed > 0);
    }
}

/// The router never panics and always answers a well-formed AdmissionReview, whatever the
/// bytes: truncated, mistyped or mangled reviews, and random noise.
#[tokio::test]
async fn the_router_answers_every_body_with_a_well_formed_review() {
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;
    let (cases, seed) = fuzz_budget(2_000);
    let mut rng = Rng::new(seed);
    let started = std::time::Instant::now();
    for case in 0..cases {
        let w = world(&mut rng);
        let (op, new, old) = random_change(&mut rng, &w);
        let (user, groups) = random_requester(&mut rng);
        let json = |o: &Option<Object>| match o {
            Some(Object::Organization(x)) => serde_json::to_value(x).unwrap_or_default(),
            Some(Object::Project(x)) => serde_json::to_value(x).unwrap_or_default(),
            Some(Object::Membership(x)) => serde_json::to_value(x).unwrap_or_default(),
            None => serde_json::Value::Null,
        };
        let kind = match new.as_ref().or(old.as_ref()) {
            Some(Object::Organization(_)) => "Organization",
            Some(Object::Project(_)) => "Project",
            _ => "Membership",
        };
        let mut review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": format!("uid-{case}"),
                "kind": {"group": "roster.dev", "version": "v1alpha1", "kind": kind},
                "resource": {"group": "roster.dev", "version": "v1alpha1", "resource": "x"},
                "name": "x", "namespace": NS,
                "operation": format!("{op:?}").to_uppercase(),
                "userInfo": {"username": user, "groups": groups},
                "object": json(&new), "oldObject": json(&old), "dryRun": rng.chance(10)
            }
        });
        mangle(&mut rng, &mut review, 0);
        let body = if rng.chance(10) {
            (0..rng.below(200))
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>()
        } else {
            let text = review.to_string();
            let cut = if rng.chance(10) {
                rng.below(text.len())
            } else {
                text.len()
            };
            text.as_bytes()[..cut].to_vec()
        };
        let app = super::router(Arc::new(super::AppState {
            index: w,
            policy: Policy::default(),
            ready: Box::new(|| true),
            metrics: crate::metrics::Metrics::new(),
            revocations: Some(crate::identity::revocation::Revocations::default()),
        }));
        let response = app
            .oneshot(
                axum::http::Request::post("/validate")
                    .header("content-type", "application/json")
                    .body(Body::from(body))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), 200, "case {case} seed {seed}");
        let bytes = to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let out: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("case {case} seed {seed}: not JSON ({e})"));
        assert!(
            out["response"]["allowed"].is_boolean() && out["kind"] == "AdmissionReview",
            "case {case} seed {seed}: {out}"
        );
        if out["response"]["allowed"] == false {
            assert!(
                out["response"]["status"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "case {case} seed {seed}: a denial without a reason: {out}"
            );
        }
    }
    eprintln!(
        "webhook router property: {cases} bodies (seed {seed}) in {:?}",
        started.elapsed()
    );
}

/// Random damage to a JSON document: fields removed, retyped or replaced by noise.
pub(crate) fn mangle(rng: &mut Rng, v: &mut serde_json::Value, depth: usize) {
    use serde_json::Value;
    if depth > 6 {
        return;
    }
    match v {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if rng.chance(3) {
                    map.remove(&k);
                } else if let Some(child) = map.get_mut(&k) {
                    if rng.chance(3) {
                        *child = noise(rng);
                    } else {
                        mangle(rng, child, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                mangle(rng, item, depth + 1);
            }
        }
        _ => {}
    }
}

fn noise(rng: &mut Rng) -> serde_json::Value {
    use serde_json::json;
    match rng.below(7) {
        0 => json!(null),
        1 => json!(rng.next()),
        2 => json!(-1.5),
        3 => json!(true),
        4 => json!([1, "x", null]),
        5 => json!({"x": {"y": "z"}}),
        _ => json!("\u{0}\u{1b}[31m<script>".repeat(rng.below(50))),
    }
}
