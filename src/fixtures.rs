//! Builders for the unit tests of the controller's plan and the webhook: one organization
//! "acme" in namespace acme, its projects and members, created at a fixed time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{
    Membership, MembershipSpec, OrgRole, Organization, OrganizationSpec, OrganizationStatus,
    Project, ProjectGrant, ProjectRole, ProjectSpec,
};

pub const NS: &str = "acme";

/// A client whose API server is `answer`: each request's method, path and JSON body (Null when
/// there is none) in, a status and a JSON body out. The tier between pure functions and the
/// real API server (as kube-rs's controller-rs tests do).
pub fn scripted_client(
    answer: impl Fn(&http::Method, &str, serde_json::Value) -> (http::StatusCode, serde_json::Value)
    + Clone
    + Send
    + Sync
    + 'static,
    default_namespace: &str,
) -> kube::Client {
    use kube::client::Body;
    let svc = tower::service_fn(move |req: http::Request<Body>| {
        let answer = answer.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            let (status, json) = answer(&parts.method, parts.uri.path(), body);
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(json.to_string().into_bytes()))
                    .expect("response"),
            )
        }
    });
    kube::Client::new(svc, default_namespace)
}
pub const CREATED: &str = "2026-01-01T00:00:00Z";

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

pub fn org(owner_email: &str) -> Organization {
    let mut o = Organization::new(
        NS,
        OrganizationSpec {
            display_name: None,
            owner: owner_email.into(),
            default_role: OrgRole::Member,
            admins_see_all_projects: false,
            security: Default::default(),
            max_access_removals: None,
        },
    );
    o.metadata.namespace = Some(NS.into());
    o.metadata.uid = Some("org-uid".into());
    o.metadata.generation = Some(1);
    o.metadata.creation_timestamp = Some(Time(ts(CREATED)));
    o
}

/// An Organization status saying MFA has been required since `since` (what the controller
/// writes when the policy turns it on).
pub fn mfa_required_since(since: Timestamp) -> OrganizationStatus {
    OrganizationStatus {
        conditions: vec![crate::condition::make(
            &[],
            "MfaRequired",
            true,
            "Required",
            "",
            Some(1),
            since,
        )],
        ..Default::default()
    }
}

pub fn project(name: &str) -> Project {
    let spec = ProjectSpec {
        display_name: None,
        namespace: None,
        namespace_deletion: Default::default(),
        adopt_existing_namespace: false,
    };
    let mut p = Project::new(name, spec);
    p.metadata.namespace = Some(NS.into());
    p.metadata.generation = Some(1);
    p
}

/// Membership `name` with e-mail `<name>@acme.example`.
pub fn member(name: &str, role: Option<OrgRole>, projects: &[(&str, ProjectRole)]) -> Membership {
    let mut m = Membership::new(
        name,
        MembershipSpec {
            email: format!("{name}@acme.example"),
            display_name: None,
            role,
            projects: projects
                .iter()
                .map(|(p, r)| ProjectGrant {
                    name: p.to_string(),
                    role: *r,
                })
                .collect(),
            disabled: false,
            mfa: None,
            expires_at: None,
        },
    );
    m.metadata.namespace = Some(NS.into());
    m.metadata.generation = Some(1);
    m.metadata.creation_timestamp = Some(Time(ts(CREATED)));
    m
}

/// A small seeded generator for the property tests (xorshift64*): reproducible from the seed
/// they print, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// How many cases a property test runs (`ROSTER_FUZZ_CASES`, else `default`) and from which
/// seed (`ROSTER_FUZZ_SEED`, else one from the clock, printed so a failure can be replayed).
pub fn fuzz_budget(default: u64) -> (u64, u64) {
    let cases = std::env::var("ROSTER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let seed = std::env::var("ROSTER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    (cases, seed)
}

/// Credential records of members of acme (by name) who accepted their invitation and hold a
/// password, as a `World`'s `credentials` keeps them (by e-mail).
pub fn accepted<'a>(
    members: &'a [&'a str],
) -> impl Iterator<Item = (String, crate::api::credential::Record)> + 'a {
    members.iter().map(|m| {
        let email = format!("{m}@acme.example");
        let record = crate::api::credential::Record {
            email: email.clone(),
            accepted_at: Some(1),
            ..Default::default()
        };
        (email, record)
    })
}
