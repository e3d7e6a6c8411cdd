//! Who may use what, right now: the entitlement rules of an organization, as pure functions.
//!
//! The controller turns the result into RoleBindings and status; `roster plan` (offline) and the
//! webhook reuse the same evaluation, so the three can never disagree about a member's access.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::api::{
    AccessEntry, EffectiveRole, Membership, MfaExemption, MfaState, MfaStatus, OrgRole,
    Organization, Phase, ProjectRole,
};

/// What the cut-off and MFA rules read of a member: a Membership, or the cache's compact form
/// of one, which TokenReview and SubjectAccessReview judge without rebuilding a Membership on
/// every request of every member (with cold caches, as served, looking it up and rebuilding it
/// took 3.5 µs of a SubjectAccessReview's 14).
pub trait Member {
    /// The Membership is being deleted.
    fn deleting(&self) -> bool;
    fn disabled(&self) -> bool;
    fn expires_at(&self) -> Option<Timestamp>;
    fn mfa_exemption(&self) -> Option<&MfaExemption>;
    fn created(&self) -> Option<Timestamp>;
    /// The Membership's UID, exactly as stored (absent stays absent).
    fn member_uid(&self) -> Option<&str>;
}

impl<T: Member> Member for Arc<T> {
    fn deleting(&self) -> bool {
        T::deleting(self)
    }
    fn disabled(&self) -> bool {
        T::disabled(self)
    }
    fn expires_at(&self) -> Option<Timestamp> {
        T::expires_at(self)
    }
    fn mfa_exemption(&self) -> Option<&MfaExemption> {
        T::mfa_exemption(self)
    }
    fn created(&self) -> Option<Timestamp> {
        T::created(self)
    }
    fn member_uid(&self) -> Option<&str> {
        T::member_uid(self)
    }
}

impl Member for Membership {
    fn deleting(&self) -> bool {
        self.metadata.deletion_timestamp.is_some()
    }
    fn disabled(&self) -> bool {
        self.spec.disabled
    }
    fn expires_at(&self) -> Option<Timestamp> {
        self.spec.expires_at.as_ref().map(|t| t.0)
    }
    fn mfa_exemption(&self) -> Option<&MfaExemption> {
        self.spec.mfa.as_ref()
    }
    fn created(&self) -> Option<Timestamp> {
        self.metadata.creation_timestamp.as_ref().map(|t| t.0)
    }
    fn member_uid(&self) -> Option<&str> {
        self.metadata.uid.as_deref()
    }
}

/// Why a member is cut off from everything right now, judged on the Membership alone: the
/// one rule the controller, the webhook, TokenReview, login and acceptance all apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutOff {
    Disabled,
    Expired,
    /// The Membership is being deleted.
    Deleted,
}

impl CutOff {
    pub fn reason(self) -> &'static str {
        match self {
            CutOff::Disabled => "Disabled",
            CutOff::Expired => "Expired",
            CutOff::Deleted => "Deleted",
        }
    }
}

pub fn cut_off(m: &impl Member, now: Timestamp) -> Option<CutOff> {
    if m.deleting() {
        Some(CutOff::Deleted)
    } else if m.disabled() {
        Some(CutOff::Disabled)
    } else if m.expires_at().is_some_and(|t| t <= now) {
        Some(CutOff::Expired)
    } else {
        None
    }
}

/// The member is exempt from the organization's MFA requirement at `now`.
pub fn mfa_exempt(m: &impl Member, now: Timestamp) -> bool {
    m.mfa_exemption()
        .is_some_and(|e| e.exempt && e.exempt_until.as_ref().is_none_or(|u| u.0 > now))
}

/// MFA is required of this member at `now` (the organization requires it; no exemption).
pub fn mfa_required_of(o: &Organization, m: &impl Member, now: Timestamp) -> bool {
    o.spec.security.mfa.required && !mfa_exempt(m, now)
}

/// What an invitation is issued for: the member's effective role and project grants. A link
/// is good only while this is unchanged — promote a pending member, and whoever read the old
/// link holds nothing.
pub fn invitation_scope(o: &Organization, m: &Membership) -> String {
    let role = if m.spec.email == o.spec.owner {
        EffectiveRole::Owner
    } else {
        m.spec.role.unwrap_or(o.spec.default_role).into()
    };
    let mut grants: Vec<String> = m
        .spec
        .projects
        .iter()
        .map(|g| format!("{}={}", g.name, g.role.as_str()))
        .collect();
    grants.sort();
    format!("{role:?}:{}", grants.join(","))
}

/// A project as the access rules see it: where it lives and whether it can hold access now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectView {
    pub name: String,
    pub namespace: String,
    /// Why no one can have access through this project now (being deleted, namespace not ours).
    pub unavailable: Option<String>,
}

/// Everything the rules decide about one Membership.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberAccess {
    pub membership: String,
    pub email: String,
    pub phase: Phase,
    pub effective_role: EffectiveRole,
    pub mfa: MfaStatus,
    /// Why the member has no access at all (disabled, expired, conflict, MFA overdue).
    pub blocked: Option<String>,
    /// project name → role held now.
    pub grants: BTreeMap<String, ProjectRole>,
    pub entries: Vec<AccessEntry>,
}

impl MemberAccess {
    pub fn entitled(&self) -> bool {
        self.blocked.is_none()
    }

    /// "payments=Developer,web=Viewer", or "-" when nothing is reachable.
    pub fn summary(&self) -> String {
        if self.grants.is_empty() {
            return "-".into();
        }
        self.grants
            .iter()
            .map(|(p, r)| format!("{p}={}", r.as_str()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub members: Vec<MemberAccess>,
    /// The owner has access without a Membership (before bootstrap created one).
    pub owner_without_membership: Option<String>,
    /// The earliest future moment at which an evaluation with the same inputs changes (an
    /// expiry, an MFA deadline, the end of an exemption): the controller requeues for it.
    pub next_change: Option<Timestamp>,
}

pub struct Inputs<'a> {
    pub org: Option<&'a Organization>,
    /// Since when the organization requires MFA (the `MfaRequired` condition's transition time).
    pub mfa_required_since: Option<Timestamp>,
    pub projects: &'a [ProjectView],
    pub memberships: &'a [Arc<Membership>],
    /// E-mails of members enrolled in TOTP (the identity store's answer).
    pub enrolled: &'a BTreeSet<String>,
    /// When each address first joined, as its credential record says (`mfa_grace_end`).
    pub first_joined: &'a BTreeMap<String, Timestamp>,
    pub now: Timestamp,
}

pub fn evaluate(inp: &Inputs<'_>) -> Evaluation {
    let mut next = NextChange(None);
    let winners = email_winners(inp.memberships);
    let owner = inp.org.map(|o| o.spec.owner.as_str());
    let mut members = Vec::new();
    for m in inp.memberships {
        if m.metadata.deletion_timestamp.is_some() {
            continue;
        }
        members.push(evaluate_member(inp, m, &winners, owner, &mut next));
    }
    members.sort_by(|a, b| a.membership.cmp(&b.membership));
    let owner_without_membership = owner
        .filter(|o| {
            !inp.memberships
                .iter()
                .any(|m| m.spec.email == *o && m.metadata.deletion_timestamp.is_none())
        })
        .map(str::to_string);
    Evaluation {
        members,
        owner_without_membership,
        next_change: next.0,
    }
}

/// Grants for the owner when no Membership names them yet: Admin in every available project.
pub fn owner_grants(projects: &[ProjectView]) -> BTreeMap<String, ProjectRole> {
    projects
        .iter()
        .filter(|p| p.unavailable.is_none())
        .map(|p| (p.name.clone(), ProjectRole::Admin))
        .collect()
}

struct NextChange(Option<Timestamp>);

impl NextChange {
    fn at(&mut self, t: Timestamp, now: Timestamp) {
        if t > now && self.0.is_none_or(|n| t < n) {
            self.0 = Some(t);
        }
    }
}

/// For each e-mail, the Membership that holds it: a declared one before roster's bootstrap
/// placeholder, then the oldest, ties broken by name.
fn email_winners(memberships: &[Arc<Membership>]) -> BTreeMap<&str, &str> {
    let rank = |m: &Membership| {
        (
            is_bootstrap(m),
            created(m),
            m.metadata.name.clone().unwrap_or_default(),
        )
    };
    let mut winners: BTreeMap<&str, &Membership> = BTreeMap::new();
    for m in memberships
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
    {
        match winners.get(m.spec.email.as_str()) {
            Some(w) if rank(w) <= rank(m) => {}
            _ => {
                winners.insert(&m.spec.email, m);
            }
        }
    }
    winners
        .into_iter()
        .map(|(e, m)| (e, m.metadata.name.as_deref().unwrap_or("")))
        .collect()
}

pub fn is_bootstrap(m: &Membership) -> bool {
    m.metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(crate::api::BOOTSTRAP_LABEL))
}

/// Bootstrap placeholders that a declared Membership with the same e-mail supersedes.
pub fn superseded_bootstraps(memberships: &[Arc<Membership>]) -> Vec<String> {
    let live = || {
        memberships
            .iter()
            .filter(|m| m.metadata.deletion_timestamp.is_none())
    };
    live()
        .filter(|b| {
            is_bootstrap(b) && live().any(|m| !is_bootstrap(m) && m.spec.email == b.spec.email)
        })
        .filter_map(|b| b.metadata.name.clone())
        .collect()
}

fn created(m: &Membership) -> Timestamp {
    m.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(Timestamp::MAX)
}

fn evaluate_member(
    inp: &Inputs<'_>,
    m: &Membership,
    winners: &BTreeMap<&str, &str>,
    owner: Option<&str>,
    next: &mut NextChange,
) -> MemberAccess {
    let name = m.name_any();
    let now = inp.now;
    let is_owner = owner == Some(m.spec.email.as_str());
    let effective_role = match (is_owner, m.spec.role, inp.org) {
        (true, _, _) => EffectiveRole::Owner,
        (false, Some(r), _) => r.into(),
        (false, None, Some(org)) => org.spec.default_role.into(),
        (false, None, None) => EffectiveRole::Member,
    };
    let mfa = mfa_status(inp, m, next);

    if let Some(at) = m.spec.expires_at.as_ref() {
        next.at(at.0, now);
    }
    let (phase, blocked) = if inp.org.is_none() {
        (
            Phase::Invited,
            Some("no Organization in this namespace".to_string()),
        )
    } else if winners.get(m.spec.email.as_str()) != Some(&name.as_str()) {
        let holder = winners.get(m.spec.email.as_str()).copied().unwrap_or("?");
        (
            Phase::Conflict,
            Some(format!(
                "e-mail {} already belongs to Membership {holder}",
                m.spec.email
            )),
        )
    } else if let Some(why) = cut_off(m, now) {
        match why {
            CutOff::Expired => (Phase::Expired, Some("membership expired".to_string())),
            CutOff::Disabled | CutOff::Deleted => {
                (Phase::Disabled, Some("membership is disabled".to_string()))
            }
        }
    } else if mfa.state == MfaState::Overdue {
        (
            Phase::Invited,
            Some("MFA required and not enrolled; grace period over".to_string()),
        )
    } else {
        (Phase::Invited, None)
    };

    let mut grants = BTreeMap::new();
    let mut entries = Vec::new();
    let sees_all = match effective_role {
        EffectiveRole::Owner => true,
        EffectiveRole::Admin => inp.org.is_some_and(|o| o.spec.admins_see_all_projects),
        EffectiveRole::Member => false,
    };
    let declared: BTreeMap<&str, ProjectRole> = m
        .spec
        .projects
        .iter()
        .map(|g| (g.name.as_str(), g.role))
        .collect();
    let mut names: BTreeSet<&str> = declared.keys().copied().collect();
    if sees_all {
        names.extend(inp.projects.iter().map(|p| p.name.as_str()));
    }
    for project in names {
        let role = if sees_all {
            Some(ProjectRole::Admin)
        } else {
            declared.get(project).copied()
        };
        let view = inp.projects.iter().find(|p| p.name == project);
        let reason = match (view, &blocked) {
            (None, _) => Some(format!("project {project} does not exist")),
            (Some(v), _) if v.unavailable.is_some() => v.unavailable.clone(),
            (Some(_), Some(why)) => Some(why.clone()),
            (Some(_), None) => None,
        };
        if reason.is_none()
            && let Some(r) = role
        {
            grants.insert(project.to_string(), r);
        }
        entries.push(AccessEntry {
            project: project.to_string(),
            namespace: view.map(|v| v.namespace.clone()),
            role: if reason.is_none() { role } else { None },
            reason,
        });
    }
    MemberAccess {
        membership: name,
        email: m.spec.email.clone(),
        phase,
        effective_role,
        mfa,
        blocked,
        grants,
        entries,
    }
}

/// When the member's MFA exemption ends (or ended), if it has an end.
fn exemption_end(m: &impl Member) -> Option<Timestamp> {
    m.mfa_exemption()
        .filter(|e| e.exempt)
        .and_then(|e| e.exempt_until.as_ref())
        .map(|t| t.0)
}

/// When `m`'s grace period to enrol MFA ends, the organization requiring it since `since`
/// (when a plan has not recorded that yet: now). The period runs from the latest of: MFA
/// became required, the member joined, the member's exemption ended. The controller cuts an
/// unenrolled member off then; TokenReview and the authorization webhook refuse their tokens.
///
/// Joined is when the *address* first joined (`first_joined`, from its credential record,
/// which outlives the Membership while MFA is required), if earlier than this Membership's
/// creation: deleting a member before or after their deadline and declaring them again would
/// otherwise start another grace period, an exemption only the owner may grant (red teams
/// 33 and 34).
pub fn mfa_grace_end(
    org: &Organization,
    since: Timestamp,
    m: &impl Member,
    first_joined: Option<Timestamp>,
) -> Timestamp {
    let created = m.created();
    let joined = match (created, first_joined) {
        (Some(c), Some(f)) => Some(c.min(f)),
        (c, f) => c.or(f),
    };
    let start = [Some(since), joined, exemption_end(m)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(since);
    let grace = SignedDuration::try_from(org.spec.security.mfa.grace_period())
        .unwrap_or(SignedDuration::MAX);
    start.checked_add(grace).unwrap_or(Timestamp::MAX)
}

fn mfa_status(inp: &Inputs<'_>, m: &Membership, next: &mut NextChange) -> MfaStatus {
    let now = inp.now;
    let Some(org) = inp.org.filter(|o| o.spec.security.mfa.required) else {
        return MfaStatus {
            state: MfaState::NotRequired,
            deadline: None,
        };
    };
    let exempt_until = exemption_end(m);
    if mfa_exempt(m, now) {
        if let Some(u) = exempt_until {
            next.at(u, now);
        }
        return MfaStatus {
            state: MfaState::Exempt,
            deadline: None,
        };
    }
    if inp.enrolled.contains(&m.spec.email) {
        return MfaStatus {
            state: MfaState::Enrolled,
            deadline: None,
        };
    }
    let deadline = mfa_grace_end(
        org,
        inp.mfa_required_since.unwrap_or(now),
        m,
        inp.first_joined.get(&m.spec.email).copied(),
    );
    next.at(deadline, now);
    let state = if now < deadline {
        MfaState::Pending
    } else {
        MfaState::Overdue
    };
    MfaStatus {
        state,
        deadline: Some(Time(deadline)),
    }
}

impl From<OrgRole> for EffectiveRole {
    fn from(r: OrgRole) -> Self {
        match r {
            OrgRole::Admin => EffectiveRole::Admin,
            OrgRole::Member => EffectiveRole::Member,
        }
    }
}

/// Members whose MFA state satisfies the policy, and members counted (those not disabled,
/// expired or in conflict).
pub fn mfa_compliance(members: &[MemberAccess]) -> (usize, usize) {
    let counted: Vec<_> = members
        .iter()
        .filter(|m| !matches!(m.phase, Phase::Disabled | Phase::Expired | Phase::Conflict))
        .collect();
    let ok = counted
        .iter()
        .filter(|m| {
            matches!(
                m.mfa.state,
                MfaState::Enrolled | MfaState::Exempt | MfaState::NotRequired
            )
        })
        .count();
    (ok, counted.len())
}
