//! Memberships as the cache holds them. A `Membership` is 832 bytes before any of its strings
//! (most of them `Option<String>`s and maps of metadata no rule reads); 20,000 of them took a
//! third of roster's memory. The cache keeps what decisions read, in a form about a quarter of
//! that size (one copy of the names, grants, access lists and condition times members share:
//! `Pools`), and gives each reader a `Membership` rebuilt from it (`full`): rules, tests and
//! the offline `roster plan` keep reading the one type, and nothing that decides differs
//! between a whole object and a cached one
//! (`tests::a_cached_membership_keeps_what_decisions_read`,
//! `plan_tests::compact_cached_memberships_plan_exactly_as_whole_ones`).
//!
//! A rebuilt Membership is a view for decisions, never an object to write back: it lacks the
//! labels, annotations, finalizers and owner references no decision reads, which a write of it
//! would strip. Nothing writes a cached Membership (plan creates its own; statuses are
//! applied alone), and this type has no `Serialize`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;
use kube::runtime::reflector::Lookup;
use kube::runtime::watcher;

use super::Store;
use super::store::Writer;
use crate::api::contract::{BOOTSTRAP_LABEL, Request};
use crate::api::{
    AccessEntry, CachedCondition, CachedStatus, EffectiveRole, Membership, MembershipSpec,
    MembershipStatus, MfaExemption, MfaStatus, OrgRole, Phase, ProjectGrant, ProjectRole,
};
use crate::pool::{Pool, Weigh};

/// One cached Membership.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedMembership {
    name: Box<str>,
    /// Names every member of an organization, or of a project, carries are shared (`Pools`),
    /// as are equal grants, access lists and conditions.
    namespace: Arc<str>,
    /// Kept exactly (an absent one stays absent): credential records, revocations, tokens and
    /// owner references are matched by it.
    uid: Option<Box<str>>,
    resource_version: Option<Box<str>>,
    generation: Option<i64>,
    /// Ranks holders of one address and starts the MFA grace period: never defaulted.
    created: Option<Time>,
    /// Its presence cuts the member off; kept as the time it is.
    deleted: Option<Time>,
    /// The labels and annotations decisions read (the bootstrap label; the requests to resend,
    /// unlock or reset MFA), nearly always none. Only those: any other `roster.dev/` one an
    /// Admin adds, of any size, would be copied on every read (red team 29).
    marks: Option<Box<Marks>>,
    email: Box<str>,
    display_name: Option<Box<str>>,
    role: Option<OrgRole>,
    disabled: bool,
    projects: Arc<[Grant]>,
    mfa: Option<Box<MfaExemption>>,
    expires_at: Option<Time>,
    status: Option<Box<Status>>,
}

/// Keeps the entry at a 256-byte allocation (with the Arc's counts) instead of 896.
const _: () = assert!(std::mem::size_of::<CachedMembership>() <= 240);

#[derive(Clone, Debug, Default, PartialEq)]
struct Marks {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

/// What decisions read of a stored status: the rest (invitation, last login, the messages) is
/// the identity records' or is only shown, and read from the API server where it is.
#[derive(Clone, Debug, PartialEq)]
struct Status {
    phase: Option<Phase>,
    effective_role: Option<EffectiveRole>,
    mfa: Option<MfaStatus>,
    access: Arc<[Access]>,
    /// The digest and the decision conditions (`MembershipStatus::compact`).
    cached: Option<Box<CachedStatus>>,
}

/// What one Membership cache's entries share (`crate::pool`).
#[derive(Debug, Default)]
pub struct Pools {
    names: Pool<str>,
    grants: Pool<[Grant]>,
    access: Pool<[Access]>,
    conditions: Pool<[CachedCondition]>,
}

/// A `ProjectGrant`, its project's name shared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Grant {
    name: Arc<str>,
    role: ProjectRole,
}

/// An `AccessEntry`, its names (and the reason, one of a few) shared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Access {
    project: Arc<str>,
    namespace: Option<Arc<str>>,
    role: Option<ProjectRole>,
    reason: Option<Arc<str>>,
}

impl Weigh for Grant {
    fn weight(&self) -> usize {
        std::mem::size_of::<Grant>() + self.name.len()
    }
}

impl Weigh for Access {
    fn weight(&self) -> usize {
        let text = |t: &Option<Arc<str>>| t.as_deref().map_or(0, str::len);
        std::mem::size_of::<Access>()
            + self.project.len()
            + text(&self.namespace)
            + text(&self.reason)
    }
}

impl Grant {
    fn of(g: ProjectGrant, names: &mut Pool<str>) -> Grant {
        let ProjectGrant { name, role } = g;
        Grant {
            name: names.get(&name),
            role,
        }
    }

    fn full(&self) -> ProjectGrant {
        ProjectGrant {
            name: self.name.to_string(),
            role: self.role,
        }
    }
}

impl Access {
    fn of(a: AccessEntry, names: &mut Pool<str>) -> Access {
        let AccessEntry {
            project,
            namespace,
            role,
            reason,
        } = a;
        Access {
            project: names.get(&project),
            namespace: namespace.map(|n| names.get(&n)),
            role,
            reason: reason.map(|r| names.get(&r)),
        }
    }

    fn full(&self) -> AccessEntry {
        AccessEntry {
            project: self.project.to_string(),
            namespace: self.namespace.as_deref().map(str::to_string),
            role: self.role,
            reason: self.reason.as_deref().map(str::to_string),
        }
    }
}

fn read(m: Option<BTreeMap<String, String>>, keys: &[&str]) -> BTreeMap<String, String> {
    m.into_iter()
        .flatten()
        .filter(|(k, _)| keys.contains(&k.as_str()))
        .collect()
}

impl From<Membership> for CachedMembership {
    /// An entry sharing no names with others (tests, and readers of one object).
    fn from(m: Membership) -> Self {
        CachedMembership::new(m, &mut Pools::default())
    }
}

impl CachedMembership {
    /// The entry for `m`, what it shares with others from `pools`. Every field is named: a field added
    /// to the type (or to Kubernetes' metadata) does not compile until someone decides whether
    /// decisions read it.
    pub fn new(m: Membership, pools: &mut Pools) -> Self {
        let Membership {
            metadata:
                ObjectMeta {
                    annotations,
                    creation_timestamp,
                    deletion_grace_period_seconds: _,
                    deletion_timestamp,
                    finalizers: _,
                    generate_name: _,
                    generation,
                    labels,
                    managed_fields: _,
                    name,
                    namespace,
                    owner_references: _,
                    resource_version,
                    self_link: _,
                    uid,
                },
            spec:
                MembershipSpec {
                    email,
                    display_name,
                    role,
                    projects,
                    disabled,
                    mfa,
                    expires_at,
                },
            status,
        } = m;
        let marks = Marks {
            labels: read(labels, &[BOOTSTRAP_LABEL]),
            annotations: read(annotations, &Request::ALL.map(Request::annotation)),
        };
        CachedMembership {
            name: name.unwrap_or_default().into(),
            namespace: pools.names.get(namespace.as_deref().unwrap_or_default()),
            uid: uid.map(Into::into),
            resource_version: resource_version.map(Into::into),
            generation,
            created: creation_timestamp,
            deleted: deletion_timestamp,
            marks: (marks != Marks::default()).then(|| Box::new(marks)),
            email: email.into(),
            display_name: display_name.map(Into::into),
            role,
            disabled,
            projects: {
                let grants: Vec<Grant> = projects
                    .into_iter()
                    .map(|g| Grant::of(g, &mut pools.names))
                    .collect();
                pools.grants.get(&grants)
            },
            mfa: mfa.map(Box::new),
            expires_at,
            status: status.map(|s| Box::new(Status::of(s, pools))),
        }
    }
}

impl Status {
    fn of(mut s: MembershipStatus, pools: &mut Pools) -> Status {
        s.compact();
        let MembershipStatus {
            observed_generation: _,
            phase,
            effective_role,
            invitation: _,
            mfa,
            last_login: _,
            failed_logins: _,
            locked_until: _,
            access,
            access_summary: _,
            conditions: _,
            cached,
        } = s;
        Status {
            phase,
            effective_role,
            mfa,
            access: {
                let access: Vec<Access> = access
                    .into_iter()
                    .map(|a| Access::of(a, &mut pools.names))
                    .collect();
                pools.access.get(&access)
            },
            cached: cached.map(|mut c| {
                c.share(&mut pools.conditions);
                c
            }),
        }
    }

    fn full(&self) -> MembershipStatus {
        MembershipStatus {
            phase: self.phase,
            effective_role: self.effective_role,
            mfa: self.mfa.clone(),
            access: self.access.iter().map(Access::full).collect(),
            cached: self.cached.clone(),
            ..MembershipStatus::default()
        }
    }
}

impl CachedMembership {
    /// The Membership as decisions read it. Not for writing back (see the module's comment).
    pub fn full(&self) -> Membership {
        let marks = self.marks.as_deref();
        let map = |m: Option<&BTreeMap<String, String>>| m.filter(|m| !m.is_empty()).cloned();
        Membership {
            metadata: ObjectMeta {
                name: Some(self.name.to_string()),
                namespace: Some(self.namespace.to_string()),
                uid: self.uid.as_deref().map(str::to_string),
                resource_version: self.resource_version.as_deref().map(str::to_string),
                generation: self.generation,
                creation_timestamp: self.created.clone(),
                deletion_timestamp: self.deleted.clone(),
                labels: map(marks.map(|m| &m.labels)),
                annotations: map(marks.map(|m| &m.annotations)),
                ..ObjectMeta::default()
            },
            spec: MembershipSpec {
                email: self.email.to_string(),
                display_name: self.display_name.as_deref().map(str::to_string),
                role: self.role,
                projects: self.projects.iter().map(Grant::full).collect(),
                disabled: self.disabled,
                mfa: self.mfa.as_deref().cloned(),
                expires_at: self.expires_at.clone(),
            },
            status: self.status.as_deref().map(Status::full),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn email(&self) -> &str {
        &self.email
    }

    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }
}

/// The rules judge the cached form as they would the Membership it was made from
/// (`tests::the_cached_form_is_judged_as_the_membership`).
impl crate::access::Member for CachedMembership {
    fn deleting(&self) -> bool {
        self.deleted.is_some()
    }
    fn disabled(&self) -> bool {
        self.disabled
    }
    fn expires_at(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        self.expires_at.as_ref().map(|t| t.0)
    }
    fn mfa_exemption(&self) -> Option<&crate::api::MfaExemption> {
        self.mfa.as_deref()
    }
    fn created(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        self.created.as_ref().map(|t| t.0)
    }
    fn member_uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }
}

/// Found by namespace and name, like a Membership (the store compares the entry's own).
impl Lookup for CachedMembership {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        "Membership".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "roster.dev".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "memberships".into()
    }
    fn name(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.name))
    }
    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.namespace))
    }
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        self.resource_version.as_deref().map(Cow::Borrowed)
    }
    fn uid(&self) -> Option<Cow<'_, str>> {
        self.uid.as_deref().map(Cow::Borrowed)
    }
}

/// The Membership cache: read as Memberships, each rebuilt from its cached form when read.
/// Cheap to clone; every clone reads the same objects.
#[derive(Clone)]
pub struct Members {
    store: Store<CachedMembership>,
}

impl Members {
    pub(super) fn new(store: Store<CachedMembership>) -> Members {
        Members { store }
    }

    /// The Membership named `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Membership>> {
        self.store.get(namespace, name).map(|m| Arc::new(m.full()))
    }

    /// Its resourceVersion (`None` if it is not cached), without rebuilding it.
    pub fn resource_version(&self, namespace: &str, name: &str) -> Option<Option<String>> {
        self.store
            .get(namespace, name)
            .map(|m| m.resource_version().map(str::to_string))
    }

    /// The organization's Memberships (only those are rebuilt).
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<Membership>> {
        self.store
            .state_filter(|m| m.namespace() == namespace)
            .iter()
            .map(|m| Arc::new(m.full()))
            .collect()
    }

    /// The cached form of the Membership named `name` in `namespace` if it passes `keep`, not
    /// rebuilt: for the per-request paths that read only what `access::Member` gives.
    pub fn cached_if(
        &self,
        namespace: &str,
        name: &str,
        keep: impl FnOnce(&CachedMembership) -> bool,
    ) -> Option<Arc<CachedMembership>> {
        self.store.get(namespace, name).filter(|m| keep(m))
    }

    /// Every Membership `keep` accepts (each rebuilt first: for tests and fallbacks, not for
    /// paths that run per request).
    pub fn state_filter(&self, keep: impl Fn(&Membership) -> bool) -> Vec<Arc<Membership>> {
        self.store
            .state()
            .iter()
            .map(|m| m.full())
            .filter(|m| keep(m))
            .map(Arc::new)
            .collect()
    }

    pub async fn wait_until_ready(&self) -> Result<(), super::WriterDropped> {
        self.store.wait_until_ready().await
    }

    pub(super) fn cached(&self) -> &Store<CachedMembership> {
        &self.store
    }
}

/// A watch event as the Membership cache passes it on: its objects cached and shared by the
/// store and the index.
pub fn cached(e: watcher::Event<Membership>) -> watcher::Event<Arc<CachedMembership>> {
    super::map_event(e, |m| Arc::new(CachedMembership::from(m)))
}

/// A Membership cache and an e-mail index beside it, filled by hand (tests and benchmarks; the
/// caches fill theirs from the watch).
pub struct MembersWriter {
    writer: Writer<CachedMembership>,
    index: super::EmailIndex,
}

/// An empty Membership cache, its e-mail index, and their writer.
pub fn members() -> (Members, super::EmailIndex, MembersWriter) {
    let (store, writer) = super::store();
    let members = Members::new(store);
    let index = super::EmailIndex::new(members.clone());
    (members, index.clone(), MembersWriter { writer, index })
}

impl MembersWriter {
    /// Takes one watch event, into the store and then the index; ready once a list is in.
    pub fn apply(&mut self, event: watcher::Event<Membership>) {
        let listed = matches!(event, watcher::Event::InitDone);
        let e = cached(event);
        self.writer.apply_shared(&e);
        self.index.apply(&e);
        if listed {
            self.writer.mark_ready();
        }
    }

    /// Takes one watch event, its objects copied.
    pub fn apply_watcher_event(&mut self, event: &watcher::Event<Membership>) {
        self.apply(event.clone());
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    use super::*;
    use crate::api::{InvitationState, InvitationStatus, MfaState, ProjectRole};
    use crate::fixtures::{member, ts};

    fn whole() -> Membership {
        let mut m = member("dave", Some(OrgRole::Admin), &[("web", ProjectRole::Admin)]);
        let meta = &mut m.metadata;
        meta.namespace = Some("acme".into());
        meta.uid = Some("0b5e6f1c-1111-4222-8333-944455556666".into());
        meta.resource_version = Some("4711".into());
        meta.generation = Some(3);
        meta.deletion_timestamp = Some(Time(ts("2026-01-09T00:00:00Z")));
        meta.labels = Some(
            [
                (crate::api::BOOTSTRAP_LABEL.into(), String::new()),
                ("app.kubernetes.io/instance".into(), "team".into()),
            ]
            .into(),
        );
        meta.annotations = Some(
            [
                ("roster.dev/unlock".into(), String::new()),
                ("argocd.argoproj.io/tracking-id".into(), "x".into()),
                // roster's prefix, but read by no decision: an Admin could make it any size.
                ("roster.dev/pad".into(), "x".repeat(4096)),
            ]
            .into(),
        );
        meta.finalizers = Some(vec!["example.com/keep".into()]);
        m.spec.display_name = Some("Dave".into());
        m.spec.disabled = true;
        m.spec.expires_at = Some(Time(ts("2026-02-01T00:00:00Z")));
        m.spec.mfa = Some(MfaExemption {
            exempt: true,
            exempt_until: Some(Time(ts("2026-01-12T00:00:00Z"))),
            reason: Some("travel".into()),
        });
        m.status = Some(MembershipStatus {
            observed_generation: Some(3),
            phase: Some(Phase::Active),
            effective_role: Some(EffectiveRole::Admin),
            invitation: Some(InvitationStatus {
                state: Some(InvitationState::Accepted),
                ..Default::default()
            }),
            mfa: Some(MfaStatus {
                state: MfaState::Pending,
                deadline: Some(Time(ts("2026-01-10T00:00:00Z"))),
            }),
            access: vec![
                AccessEntry {
                    project: "web".into(),
                    namespace: Some("acme-web".into()),
                    role: Some(ProjectRole::Admin),
                    reason: None,
                },
                AccessEntry {
                    project: "api".into(),
                    namespace: None,
                    role: None,
                    reason: Some("no Project named api".into()),
                },
            ],
            access_summary: Some("web=Admin".into()),
            conditions: vec![Condition {
                type_: "Entitled".into(),
                status: "True".into(),
                reason: "Granted".into(),
                message: "web=Admin".into(),
                last_transition_time: Time(ts("2026-01-02T00:00:00Z")),
                observed_generation: Some(3),
            }],
            ..Default::default()
        });
        m
    }

    /// One cache's entries share each organization's and project's name, and each entry
    /// still reads as its own (two organizations in one cache).
    #[test]
    fn entries_share_names_and_read_as_their_own() {
        let mut pools = Pools::default();
        let dave = CachedMembership::new(whole(), &mut pools);
        let mut erin = whole();
        erin.metadata.name = Some("erin".into());
        let erin = CachedMembership::new(erin, &mut pools);
        let access = |m: &CachedMembership| m.status.as_ref().expect("status").access.clone();
        assert!(Arc::ptr_eq(&dave.namespace, &erin.namespace));
        assert!(Arc::ptr_eq(&dave.projects, &erin.projects));
        assert!(Arc::ptr_eq(&access(&dave), &access(&erin)));
        assert_eq!(erin.full().metadata.name.as_deref(), Some("erin"));
        // Another grant: a list of its own, its project's name still shared.
        let mut fay = whole();
        fay.spec.projects[0].role = ProjectRole::Viewer;
        let fay = CachedMembership::new(fay, &mut pools);
        assert!(!Arc::ptr_eq(&dave.projects, &fay.projects));
        assert!(Arc::ptr_eq(&dave.projects[0].name, &fay.projects[0].name));
        assert_eq!(fay.full().spec.projects[0].role, ProjectRole::Viewer);
        // Another organization in the same cache: its own names throughout.
        let mut beta = whole();
        beta.metadata.namespace = Some("beta".into());
        let status = beta.status.as_mut().expect("status");
        status.access[0].namespace = Some("beta-web".into());
        let beta = CachedMembership::new(beta, &mut pools);
        assert!(!Arc::ptr_eq(&access(&dave), &access(&beta)));
        assert!(Arc::ptr_eq(
            &access(&dave)[1].reason.clone().expect("reason"),
            &access(&beta)[1].reason.clone().expect("reason")
        ));
        let beta = beta.full();
        assert_eq!(beta.metadata.namespace.as_deref(), Some("beta"));
        let entry = &beta.status.as_ref().expect("status").access[0];
        assert_eq!(entry.namespace.as_deref(), Some("beta-web"));
        let dave = dave.full();
        assert_eq!(dave.metadata.namespace.as_deref(), Some("acme"));
        let entry = &dave.status.as_ref().expect("status").access[0];
        assert_eq!(entry.namespace.as_deref(), Some("acme-web"));
    }

    /// Red team 30: one Membership rewritten again and again with 256 long project names
    /// (each version's grants and access entries new) kept hundreds of times its own size in
    /// the pools, while 500 small members kept the pools' count of values from doubling.
    #[test]
    fn old_versions_of_a_member_are_not_kept_by_the_pools() {
        let mut pools = Pools::default();
        let live: Vec<CachedMembership> = (0..500)
            .map(|i| {
                let p = format!("p{i}");
                let m = member(&format!("m{i}"), None, &[(p.as_str(), ProjectRole::Viewer)]);
                CachedMembership::new(m, &mut pools)
            })
            .collect();
        let version = |round: usize| {
            let names: Vec<String> = (0..256)
                .map(|j| {
                    let head = format!("r{round}-g{j}-");
                    format!("{head}{}", "x".repeat(253 - head.len()))
                })
                .collect();
            let grants: Vec<(&str, ProjectRole)> = names
                .iter()
                .map(|n| (n.as_str(), ProjectRole::Viewer))
                .collect();
            let mut m = member("mallory", None, &grants);
            m.status = Some(MembershipStatus {
                access: names
                    .iter()
                    .map(|n| AccessEntry {
                        project: n.clone(),
                        namespace: None,
                        role: None,
                        reason: Some(format!("project {n} does not exist")),
                    })
                    .collect(),
                ..Default::default()
            });
            m
        };
        let held = |p: &Pools| p.names.bytes() + p.grants.bytes() + p.access.bytes();
        let mut current = CachedMembership::new(version(0), &mut pools);
        let one = held(&pools);
        for round in 1..200 {
            current = CachedMembership::new(version(round), &mut pools);
            assert!(
                held(&pools) < 4 * one,
                "round {round}: the pools hold {}× what one version and the live members take",
                held(&pools) / one
            );
        }
        drop((live, current));
    }

    /// What decisions read comes back exactly; the bootstrap label and the request annotations
    /// stay (with empty values), the rest of the metadata and the shown-only status fields go.
    #[test]
    fn a_cached_membership_keeps_what_decisions_read() {
        let m = whole();
        let back = CachedMembership::from(m.clone()).full();
        let (a, b) = (&m.metadata, &back.metadata);
        assert_eq!(
            (
                &a.name,
                &a.namespace,
                &a.uid,
                &a.resource_version,
                a.generation
            ),
            (
                &b.name,
                &b.namespace,
                &b.uid,
                &b.resource_version,
                b.generation
            )
        );
        assert_eq!(a.creation_timestamp, b.creation_timestamp);
        assert_eq!(a.deletion_timestamp, b.deletion_timestamp);
        assert_eq!(
            b.labels,
            Some([(crate::api::BOOTSTRAP_LABEL.into(), String::new())].into())
        );
        assert_eq!(
            b.annotations,
            Some([("roster.dev/unlock".into(), String::new())].into())
        );
        assert_eq!((&b.finalizers, &b.owner_references), (&None, &None));
        assert_eq!(back.spec, m.spec);
        let (s, t) = (
            m.status.as_ref().expect("status"),
            back.status.as_ref().expect("status"),
        );
        assert_eq!(
            (s.phase, s.effective_role, &s.mfa, &s.access),
            (t.phase, t.effective_role, &t.mfa, &t.access)
        );
        let decided = |s: &MembershipStatus| {
            s.decision_conditions()
                .iter()
                .map(|c| {
                    let (at, generation) = (c.last_transition_time.clone(), c.observed_generation);
                    (c.type_.clone(), c.status.clone(), at, generation)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(decided(s), decided(t));
        assert!(
            s.is_stored_as(t),
            "the stored status is known for what it is"
        );
        assert_eq!(t.summary(), "web=Admin");
        assert_eq!((&t.invitation, &t.last_login), (&None, &None));
    }

    /// TokenReview and SubjectAccessReview judge the cached form (`access::Member`), the
    /// other paths the Membership: both must answer alike, field by field and rule by rule.
    #[test]
    fn the_cached_form_is_judged_as_the_membership() {
        use crate::access::{Member, cut_off, mfa_exempt, mfa_grace_end};
        let variants = [
            |_: &mut Membership| {},
            |m: &mut Membership| m.metadata.deletion_timestamp = None,
            |m: &mut Membership| {
                m.metadata.deletion_timestamp = None;
                m.spec.disabled = false;
            },
            |m: &mut Membership| {
                m.metadata.deletion_timestamp = None;
                m.spec.disabled = false;
                m.spec.expires_at = None;
                m.metadata.uid = None;
            },
            |m: &mut Membership| {
                if let Some(e) = m.spec.mfa.as_mut() {
                    e.exempt_until = None;
                }
                m.metadata.creation_timestamp = Some(Time(ts("2026-01-05T00:00:00Z")));
            },
            |m: &mut Membership| {
                if let Some(e) = m.spec.mfa.as_mut() {
                    e.exempt = false;
                }
            },
            |m: &mut Membership| m.spec.mfa = None,
            |m: &mut Membership| m.metadata.creation_timestamp = None,
            |m: &mut Membership| {
                m.metadata.creation_timestamp = Some(Time(ts("2026-01-25T00:00:00Z")));
                if let Some(e) = m.spec.mfa.as_mut() {
                    e.exempt = false;
                }
            },
        ];
        let o = crate::fixtures::org("alice@acme.example");
        for (i, change) in variants.iter().enumerate() {
            let mut m = whole();
            change(&mut m);
            let c = CachedMembership::from(m.clone());
            assert_eq!(c.deleting(), m.deleting(), "{i}");
            assert_eq!(c.disabled(), m.disabled(), "{i}");
            assert_eq!(c.expires_at(), m.expires_at(), "{i}");
            assert_eq!(c.mfa_exemption(), m.mfa_exemption(), "{i}");
            assert_eq!(c.created(), m.created(), "{i}");
            assert_eq!(c.member_uid(), m.member_uid(), "{i}");
            for now in [
                "2026-01-01T00:00:00Z",
                "2026-01-20T00:00:00Z",
                "2026-03-01T00:00:00Z",
            ] {
                let now = ts(now);
                assert_eq!(cut_off(&c, now), cut_off(&m, now), "{i} at {now}");
                assert_eq!(mfa_exempt(&c, now), mfa_exempt(&m, now), "{i} at {now}");
                let joined = Some(ts("2026-01-03T00:00:00Z"));
                assert_eq!(
                    mfa_grace_end(&o, now, &c, joined),
                    mfa_grace_end(&o, now, &m, joined),
                    "{i} at {now}"
                );
            }
        }
    }

    /// Absent stays absent: a Membership without a uid or creation time must not come back with
    /// a default one (records are matched by uid; the oldest holder of an address wins).
    #[test]
    fn absent_metadata_stays_absent() {
        let mut m = whole();
        m.metadata.uid = None;
        m.metadata.creation_timestamp = None;
        m.metadata.deletion_timestamp = None;
        m.metadata.labels = Some([("team".into(), "a".into())].into());
        m.metadata.annotations = None;
        m.status = None;
        let back = CachedMembership::from(m).full();
        assert_eq!(back.metadata.uid, None);
        assert_eq!(back.metadata.creation_timestamp, None);
        assert_eq!(back.metadata.deletion_timestamp, None);
        assert_eq!(back.metadata.labels, None);
        assert_eq!(back.metadata.annotations, None);
        assert_eq!(back.status, None);
    }

    /// Read through the cache: by name, by organization, by resourceVersion.
    #[test]
    fn the_cache_answers_as_memberships() {
        let (cache, index, mut writer) = members();
        let mut other = whole();
        other.metadata.namespace = Some("beta".into());
        writer.apply(watcher::Event::Apply(whole()));
        writer.apply(watcher::Event::Apply(other));
        let got = cache.get("acme", "dave").expect("cached");
        assert_eq!(got.spec, whole().spec);
        assert_eq!(cache.in_namespace("acme").len(), 1);
        assert_eq!(cache.state_filter(|_| true).len(), 2);
        assert_eq!(
            cache.resource_version("acme", "dave"),
            Some(Some("4711".into()))
        );
        assert_eq!(cache.resource_version("acme", "nobody"), None);
        assert_eq!(index.get("beta", "DAVE@acme.example").len(), 1);
    }
}
