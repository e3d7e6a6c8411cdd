use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{EMAIL_MESSAGE, EMAIL_RULE, OrgRole, ProjectRole};

/// A person's membership of the organization in this namespace: their org role, their project
/// roles, and whether they may use them now.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "Membership",
    namespaced,
    status = "MembershipStatus",
    shortname = "mbr",
    category = "roster",
    derive = "PartialEq",
    selectable = ".spec.email",
    doc = "A member of the organization: org role, project roles, and whether they may use them now.",
    // The name labels the member's invitation objects (a label value: at most 63 characters).
    validation = kube::core::Rule::new("self.metadata.name.size() <= 63")
        .message("a Membership's name must be at most 63 characters: it becomes a label value"),
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Role", type_ = "string", json_path = ".status.effectiveRole"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "MFA", type_ = "string", json_path = ".status.mfa.state"),
    printcolumn(
        name = "Access",
        type_ = "string",
        json_path = ".status.accessSummary",
        description = "projects the member can reach now, with the role held"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MembershipSpec {
    /// The member's e-mail: their login name and, with the configured prefix, their Kubernetes
    /// user name. Unique within the organization; immutable (a new address is a new member).
    #[schemars(length(min = 3, max = 254))]
    #[x_kube(validation = kube::core::Rule::new(EMAIL_RULE).message(EMAIL_MESSAGE))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("spec.email is immutable: delete this Membership and create one for the new address"))]
    pub email: String,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// Org role; the Organization's `defaultRole` when absent. Owner is not a role one can
    /// declare: it comes only from `Organization.spec.owner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<OrgRole>,

    /// Project roles, at most one per project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub projects: Vec<ProjectGrant>,

    /// A disabled member keeps their Membership but has no access and cannot log in.
    #[serde(default)]
    pub disabled: bool,

    /// Exemption from the organization's MFA requirement (only the owner may grant it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaExemption>,

    /// The membership ends at this time (contractors); the record stays, access goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectGrant {
    /// Name of a Project in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    pub role: ProjectRole,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.exemptUntil) || self.exempt")
    .message("mfa.exemptUntil only makes sense with mfa.exempt: true"))]
#[x_kube(validation = kube::core::Rule::new("!self.exempt || (has(self.reason) && self.reason.size() > 0)")
    .message("an MFA exemption needs a reason (mfa.reason), so that it can be reviewed"))]
pub struct MfaExemption {
    #[serde(default)]
    pub exempt: bool,
    /// The exemption ends at this time; MFA is then required like for everyone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exempt_until: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub reason: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Declared, invitation not accepted yet.
    Invited,
    Active,
    /// Too many failed logins.
    Locked,
    Disabled,
    /// `spec.expiresAt` has passed.
    Expired,
    /// Another Membership of the organization claimed this e-mail first.
    Conflict,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectiveRole {
    Owner,
    Admin,
    Member,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MfaState {
    Enrolled,
    /// Required, not enrolled yet; access continues until `deadline`.
    Pending,
    Exempt,
    NotRequired,
    /// Required, not enrolled, grace period over: no access until enrolled.
    Overdue,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MfaStatus {
    pub state: MfaState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InvitationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<InvitationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<Time>,
    /// `Email` or `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// The Secret in this namespace that holds the pending link (delivery `Secret`), readable
    /// by the owner and the Admins who manage this member: `roster invite link NAME`. Each
    /// link has a Secret of its own; a replaced link's is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationState {
    /// Sent, not accepted, link still valid.
    Pending,
    /// The link expired unused; `kubectl annotate membership NAME roster.dev/resend-invitation=<nonce>`.
    Expired,
    Accepted,
}

/// What the member can reach in one project right now, or why not.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessEntry {
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The role held now; absent when there is no access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ProjectRole>,
    /// Why the member has no access (or a narrower one than declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// JsonSchema, not KubeSchema: no CEL rules here, and KubeSchema's copy of the struct would
// carry `cached`, which nothing reads there.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MembershipStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_role: Option<EffectiveRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<InvitationStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_logins: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessEntry>,
    /// `access` in one line for `kubectl get`: "payments=Developer,web=Viewer".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Never sent or stored: set only on the copies in roster's cache, which keep of a status
    /// what decisions read (see `compact`).
    #[serde(skip)]
    #[schemars(skip)]
    pub cached: Option<Box<CachedStatus>>,
}

/// What roster's cache keeps of a stored status besides the fields decisions read: a digest
/// of the whole (to tell whether a planned status differs) and, per condition, its status and
/// since when (the transition times a new status keeps). The messages, the condition reasons
/// and the summary line are half of a cached Membership's size and no decision reads them.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedStatus {
    digest: u64,
    /// Equal for members converged in the same second: shared through a pool (`share`).
    conditions: std::sync::Arc<[CachedCondition]>,
}

impl CachedStatus {
    /// Its conditions as `pool` holds them, if it holds equal ones.
    pub fn share(&mut self, pool: &mut crate::pool::Pool<[CachedCondition]>) {
        self.conditions = pool.share(self.conditions.clone());
    }
}

/// 24 bytes, where a `Time` and an `Option<i64>` would take 40: five per member, 20,000
/// members.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CachedCondition {
    /// `lastTransitionTime`, as a Timestamp's seconds and nanoseconds.
    since_second: i64,
    since_nanosecond: i32,
    /// `observedGeneration`, when `has_generation`.
    generation: i64,
    has_generation: bool,
    /// Index into `CONDITION_TYPES`.
    type_: u8,
    ok: bool,
}

const _: () = assert!(std::mem::size_of::<CachedCondition>() == 24);

/// Holds no names: its own bytes.
impl crate::pool::Weigh for CachedCondition {
    fn weight(&self) -> usize {
        std::mem::size_of::<CachedCondition>()
    }
}

impl CachedCondition {
    fn since(&self) -> Time {
        // Taken apart from a valid Timestamp: always one again.
        Time(
            k8s_openapi::jiff::Timestamp::new(self.since_second, self.since_nanosecond)
                .unwrap_or_default(),
        )
    }
}

/// The condition types roster writes on a Membership.
const CONDITION_TYPES: [&str; 5] = ["Ready", "Reconciling", "Stalled", "Entitled", "Compliant"];

impl MembershipStatus {
    /// Reduces a stored status to its cached form; what a decision reads stays as it was.
    pub fn compact(&mut self) {
        if self.cached.is_some() {
            return;
        }
        let digest = self.digest();
        // Collected from a borrowed iterator into an exact allocation: collecting from
        // `into_iter()` would reuse the conditions' own buffer (grown by deserializing to
        // twice their number, 128 bytes each) for 24-byte entries.
        let conditions: std::sync::Arc<[CachedCondition]> = self
            .conditions
            .iter()
            .filter_map(|c| {
                let since = c.last_transition_time.0;
                Some(CachedCondition {
                    since_second: since.as_second(),
                    since_nanosecond: since.subsec_nanosecond(),
                    generation: c.observed_generation.unwrap_or_default(),
                    has_generation: c.observed_generation.is_some(),
                    type_: u8::try_from(CONDITION_TYPES.iter().position(|t| *t == c.type_)?)
                        .ok()?,
                    ok: c.status == "True",
                })
            })
            .collect();
        self.conditions = Vec::new();
        self.access.shrink_to_fit();
        self.access_summary = None;
        if let Some(i) = self.invitation.as_mut() {
            i.delivery = None;
        }
        self.cached = Some(Box::new(CachedStatus { digest, conditions }));
    }

    /// Whether this (planned) status is the one `stored` is, whole or in its cached form.
    pub fn is_stored_as(&self, stored: &MembershipStatus) -> bool {
        match &stored.cached {
            Some(c) => self.cached.is_none() && self.digest() == c.digest,
            None => self == stored,
        }
    }

    /// The conditions, of a cached status as far as decisions read them (type, status, since
    /// when, observed generation; no reason or message).
    pub fn decision_conditions(&self) -> std::borrow::Cow<'_, [Condition]> {
        match &self.cached {
            None => std::borrow::Cow::Borrowed(&self.conditions),
            Some(c) => c
                .conditions
                .iter()
                .map(|c| Condition {
                    type_: CONDITION_TYPES[usize::from(c.type_)].to_string(),
                    status: if c.ok { "True" } else { "False" }.to_string(),
                    last_transition_time: c.since(),
                    observed_generation: c.has_generation.then_some(c.generation),
                    reason: String::new(),
                    message: String::new(),
                })
                .collect(),
        }
    }

    /// `access` in one line, as `accessSummary` shows it (also for a cached status, which
    /// drops the line).
    pub fn summary(&self) -> String {
        if let Some(s) = &self.access_summary {
            return s.clone();
        }
        let mut held: Vec<(&str, ProjectRole)> = self
            .access
            .iter()
            .filter_map(|e| Some((e.project.as_str(), e.role?)))
            .collect();
        if held.is_empty() {
            return "-".into();
        }
        held.sort_unstable();
        held.iter()
            .map(|(p, r)| format!("{p}={}", r.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A hash of the status as it serializes (what the API server stores): equal statuses
    /// hash alike. Streamed into the hasher, nothing allocated.
    fn digest(&self) -> u64 {
        use std::hash::Hasher;
        struct Sink(std::collections::hash_map::DefaultHasher);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.write(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut sink = Sink(std::collections::hash_map::DefaultHasher::new());
        // Serializing plain data into a sink that cannot fail does not fail; were it to, the
        // digest differs and the status is written once more, nothing worse.
        let _ = serde_json::to_writer(&mut sink, self);
        sink.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> MembershipStatus {
        let t = |s: &str| Time(s.parse().expect("time"));
        let cond = |type_: &str, status: &str, at: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "Converged".into(),
            message: "access: payments=Developer,web=Viewer".into(),
            last_transition_time: t(at),
            observed_generation: Some(2),
        };
        MembershipStatus {
            observed_generation: Some(2),
            phase: Some(Phase::Active),
            effective_role: Some(EffectiveRole::Member),
            invitation: Some(InvitationStatus {
                state: Some(InvitationState::Accepted),
                delivery: Some("Email".into()),
                ..Default::default()
            }),
            access: vec![
                AccessEntry {
                    project: "web".into(),
                    namespace: Some("acme-web".into()),
                    role: Some(ProjectRole::Viewer),
                    reason: None,
                },
                AccessEntry {
                    project: "ops".into(),
                    namespace: Some("acme-ops".into()),
                    role: None,
                    reason: Some("project ops is being deleted".into()),
                },
                AccessEntry {
                    project: "payments".into(),
                    namespace: Some("acme-payments".into()),
                    role: Some(ProjectRole::Developer),
                    reason: None,
                },
            ],
            access_summary: Some("payments=Developer,web=Viewer".into()),
            conditions: vec![
                cond("Ready", "True", "2026-01-01T00:00:00Z"),
                cond("Stalled", "False", "2026-01-02T00:00:00Z"),
                cond("SomethingElse", "True", "2026-01-03T00:00:00Z"),
            ],
            ..Default::default()
        }
    }

    /// Members converged in the same second share one copy of their conditions; another
    /// time or generation is a copy of its own, and each reads as it was stored.
    #[test]
    fn equal_conditions_are_shared_and_each_reads_as_stored() {
        let mut pool = crate::pool::Pool::default();
        let mut shared = |mut s: MembershipStatus| {
            s.compact();
            if let Some(c) = s.cached.as_mut() {
                c.share(&mut pool);
            }
            s
        };
        let a = shared(stored());
        let b = shared(stored());
        let mut later = stored();
        later.conditions[0].last_transition_time =
            Time("2026-01-01T00:00:01Z".parse().expect("time"));
        let later = shared(later);
        let mut newer = stored();
        newer.conditions[1].observed_generation = Some(3);
        let newer = shared(newer);
        let conditions =
            |s: &MembershipStatus| s.cached.as_ref().expect("cached").conditions.clone();
        assert!(std::sync::Arc::ptr_eq(&conditions(&a), &conditions(&b)));
        assert!(!std::sync::Arc::ptr_eq(
            &conditions(&a),
            &conditions(&later)
        ));
        assert!(!std::sync::Arc::ptr_eq(
            &conditions(&a),
            &conditions(&newer)
        ));
        let at = |s: &MembershipStatus, i: usize| s.decision_conditions()[i].clone();
        assert_eq!(
            at(&later, 0).last_transition_time,
            Time("2026-01-01T00:00:01Z".parse().expect("time"))
        );
        assert_eq!(
            at(&a, 0).last_transition_time,
            Time("2026-01-01T00:00:00Z".parse().expect("time"))
        );
        assert_eq!(
            (
                at(&newer, 1).observed_generation,
                at(&a, 1).observed_generation
            ),
            (Some(3), Some(2))
        );
    }

    #[test]
    fn a_compact_status_keeps_what_decisions_read() {
        let mut whole = stored();
        // Kept exactly, whatever wrote them: no generation, a time finer than a second.
        whole.conditions[1].observed_generation = None;
        whole.conditions[1].last_transition_time =
            Time("2026-01-02T00:00:00.123456789Z".parse().expect("time"));
        let mut c = whole.clone();
        c.compact();
        assert!(c.conditions.is_empty() && c.access_summary.is_none());
        assert_eq!(
            (c.phase, c.effective_role),
            (whole.phase, whole.effective_role)
        );
        assert_eq!(c.access, whole.access);
        assert_eq!(c.summary(), "payments=Developer,web=Viewer");
        assert_eq!(c.summary(), whole.summary());
        // Only roster's own condition types, without reason or message.
        let kept: Vec<(String, String, Time, Option<i64>)> = c
            .decision_conditions()
            .iter()
            .map(|k| {
                assert!(k.reason.is_empty() && k.message.is_empty());
                (
                    k.type_.clone(),
                    k.status.clone(),
                    k.last_transition_time.clone(),
                    k.observed_generation,
                )
            })
            .collect();
        let expected: Vec<_> = whole.conditions[..2]
            .iter()
            .map(|k| {
                (
                    k.type_.clone(),
                    k.status.clone(),
                    k.last_transition_time.clone(),
                    k.observed_generation,
                )
            })
            .collect();
        assert_eq!(kept, expected);
        let before = c.clone();
        c.compact();
        assert_eq!(c, before, "compacting twice changes nothing");
        let empty = MembershipStatus::default();
        assert_eq!(empty.summary(), "-");
    }

    #[test]
    fn a_planned_status_is_compared_with_the_whole_stored_one() {
        let whole = stored();
        let mut c = whole.clone();
        c.compact();
        assert!(whole.is_stored_as(&c) && whole.is_stored_as(&whole));
        // Any difference, even in the parts the cache drops, is a difference.
        type Change = fn(&mut MembershipStatus);
        let changes: [(&str, Change); 5] = [
            ("a message", |s| s.conditions[0].message.push('!')),
            ("a reason", |s| s.conditions[1].reason = "Other".into()),
            ("the summary", |s| s.access_summary = None),
            ("an access reason", |s| s.access[1].reason = None),
            ("a transition time", |s| {
                s.conditions[0].last_transition_time =
                    Time("2026-01-05T00:00:00Z".parse().expect("time"))
            }),
        ];
        for (what, change) in changes {
            let mut planned = whole.clone();
            change(&mut planned);
            assert!(!planned.is_stored_as(&c), "{what} differs from the cache");
            assert!(
                !planned.is_stored_as(&whole),
                "{what} differs from the whole"
            );
        }
        // Not a planned status: a compact one is never taken for the stored one it came from.
        assert!(!c.is_stored_as(&c));
    }
}
