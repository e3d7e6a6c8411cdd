//! The identity part of `plan()`: which invitations to send, which request annotations
//! (resend, unlock, reset MFA) to act on, which credential records to forget, and what the
//! records mean for a Membership's status (phase Active/Locked, invitation, failed logins).
//! Pure, like the rest of the plan.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::plan::{Plan, PlannedEvent, Settings, Target, World, binding, role_ref};
use crate::access::{Evaluation, MemberAccess, invitation_scope};
use crate::api::contract::{MEMBERSHIP_LABEL, Request};
use crate::api::{
    EffectiveRole, InvitationState, InvitationStatus, Membership, Organization, Phase, ProjectRole,
};
use crate::identity::store::Record;

/// The member's credential record, if it was made for this very Membership. A record left by a
/// deleted Membership of the same e-mail (not yet forgotten) is nobody's: its password, TOTP
/// seed and acceptance never carry over to a new Membership.
pub fn record_of<'a>(w: &'a World, m: &Membership) -> Option<&'a Record> {
    w.credentials.get(&m.spec.email).filter(|r| r.belongs_to(m))
}

/// Who may read a pending invitation link (a bearer credential: whoever holds it sets the
/// member's password): exactly those who could create that Membership as it stands now —
/// - never anyone for the owner's own link (trusted identities read it with their own RBAC, or
///   SMTP delivers it);
/// - the owner, for any other link;
/// - an Admin, for a Member whose projects all lie among those the Admin administers (all of
///   them when `adminsSeeAllProjects`), never for an Admin's link.
///
/// Readers must be entitled now.
struct LinkReaders<'a> {
    owner: Option<&'a str>,
    /// Entitled Admins and the projects each administers.
    admins: Vec<(&'a str, BTreeSet<&'a str>)>,
    all_projects: bool,
}

impl<'a> LinkReaders<'a> {
    fn new(w: &'a World, org: &'a Organization, eval: &'a Evaluation) -> LinkReaders<'a> {
        let owner = org.spec.owner.as_str();
        let owner_entitled = eval.owner_without_membership.is_some()
            || eval
                .members
                .iter()
                .any(|a| a.email == owner && a.entitled());
        // By name: a scan per Admin costs in proportion to Admins × members.
        let mut by_name: HashMap<String, &Membership> = HashMap::new();
        for m in &w.memberships {
            by_name.entry(m.name_any()).or_insert(m);
        }
        let admins = eval
            .members
            .iter()
            .filter(|a| a.effective_role == EffectiveRole::Admin && a.entitled())
            .filter_map(|a| {
                let m = by_name.get(&a.membership)?;
                let administers = m
                    .spec
                    .projects
                    .iter()
                    .filter(|g| g.role == ProjectRole::Admin)
                    .map(|g| g.name.as_str())
                    .collect();
                Some((a.email.as_str(), administers))
            })
            .collect();
        LinkReaders {
            owner: owner_entitled.then_some(owner),
            admins,
            all_projects: org.spec.admins_see_all_projects,
        }
    }

    /// The e-mails that may read `m`'s link (`a`: its evaluation).
    fn of(&self, m: &Membership, a: &MemberAccess, owner: &str) -> BTreeSet<String> {
        let mut readers = BTreeSet::new();
        if m.spec.email == owner {
            return readers;
        }
        readers.extend(self.owner.map(str::to_string));
        if a.effective_role == EffectiveRole::Member {
            for (admin, administers) in &self.admins {
                let all_mine = self.all_projects
                    || m.spec
                        .projects
                        .iter()
                        .all(|g| administers.contains(g.name.as_str()));
                if all_mine && *admin != m.spec.email {
                    readers.insert(admin.to_string());
                }
            }
        }
        readers
    }
}

/// Members that may be invited now (not being deleted, in conflict, disabled or expired), with
/// their evaluation.
fn invitable<'a>(
    w: &'a World,
    eval: &'a Evaluation,
) -> impl Iterator<Item = (&'a Membership, &'a MemberAccess)> {
    kept_up(w, eval).filter(|(_, a)| !suspended(a))
}

/// Members whose credentials roster keeps up (not being deleted, not in conflict).
fn kept_up<'a>(
    w: &'a World,
    eval: &'a Evaluation,
) -> impl Iterator<Item = (&'a Membership, &'a MemberAccess)> {
    // By name: a scan of the evaluation per member was quadratic in the organization's size
    // (half a million comparisons, each copying a name, per reconcile of 1,000 members).
    let mut by_name: HashMap<&str, &MemberAccess> = HashMap::new();
    for a in &eval.members {
        by_name.entry(a.membership.as_str()).or_insert(a);
    }
    w.memberships.iter().filter_map(move |m| {
        let a = *by_name.get(m.name_any().as_str())?;
        let out = m.metadata.deletion_timestamp.is_some() || a.phase == Phase::Conflict;
        (!out).then_some((m.as_ref(), a))
    })
}

/// Disabled or expired: no invitation, resend or request is acted on, but a pending link is
/// still replaced when its rights or readers change (it would open again on re-enabling).
fn suspended(a: &MemberAccess) -> bool {
    matches!(a.phase, Phase::Disabled | Phase::Expired)
}

/// One RoleBinding per pending Secret-delivered link, to the link's own Role (get on that one
/// Secret, which identity writes with the Secret), for exactly its readers: those who may read
/// it now *and* were its readers when it was issued, which the record keeps and the acceptance
/// carries to the webhook's ownership rule. Each link has names of its own, and a link's
/// readers never change (other readers get another link), so a binding never names anyone
/// its link's record does not, however stale the cache it was planned from. A reader who may read it only since (the owner
/// widened `adminsSeeAllProjects`, an Admin got the member's projects or enrolled MFA) reads
/// the link issued in its place, never this one (red team 20: bound first and rotated after,
/// an Admin accepted the old link and was no reader on the record).
pub(super) fn invitation_readers(
    w: &World,
    org: &Organization,
    eval: &Evaluation,
    s: &Settings,
) -> Vec<RoleBinding> {
    let ns = w.namespace.as_str();
    let readers = LinkReaders::new(w, org, eval);
    let mut out = Vec::new();
    for (m, a) in invitable(w, eval) {
        let Some((name, issued_to)) = record_of(w, m).and_then(|r| {
            let i = r.invitation.as_ref().filter(|_| r.accepted_at.is_none())?;
            Some((i.secret_name(&m.name_any())?, &i.readers))
        }) else {
            continue;
        };
        let mut who = readers.of(m, a, &org.spec.owner);
        who.retain(|r| issued_to.contains(r));
        if who.is_empty() {
            continue;
        }
        let users: BTreeSet<&str> = who.iter().map(String::as_str).collect();
        let mut rb = binding(
            ns,
            ns,
            &name,
            role_ref("Role", &name),
            &users,
            s,
            None,
            m.controller_owner_ref(&()),
        );
        if let Some(l) = rb.metadata.labels.as_mut() {
            l.insert(MEMBERSHIP_LABEL.to_string(), m.name_any());
        }
        out.push(rb);
    }
    out
}

/// Something only the identity service can do (it involves tokens, keys or mail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityAction {
    /// A new invitation: for a new member, for a resend request (`nonce`), or in place of a
    /// pending link whose scope or readers changed (`rotated`). `scope` and `readers` are
    /// stored with it: a link is good only for the member's role and projects, and the people,
    /// it was issued for.
    Invite {
        membership: String,
        nonce: Option<String>,
        rotated: bool,
        scope: String,
        readers: Vec<String>,
    },
    Unlock {
        membership: String,
        email: String,
        nonce: String,
    },
    ResetMfa {
        membership: String,
        email: String,
        nonce: String,
    },
    /// Credentials of an e-mail no Membership holds any more: deleted, or with `keep_joined`
    /// (MFA required) cut down to a tombstone saying when the address first joined.
    Forget {
        email: String,
        keep_joined: Option<u64>,
    },
}

/// Most tombstones (`Record::tombstone`) an organization keeps. They live in roster's
/// namespace, and an Admin who invites and deletes members in a loop would otherwise grow it
/// without bound, for every organization's cost (red team 35). The earliest joined are kept:
/// newer departures cannot push an address out; past the bound, a new departure's record is
/// deleted, that address would get a new grace period if declared again, and a Warning Event
/// on the Organization says so.
pub const MAX_TOMBSTONES: usize = 10_000;

pub(super) fn plan_identity(
    w: &World,
    org: Option<&Organization>,
    eval: &Evaluation,
    plan: &mut Plan,
) {
    let held: BTreeMap<&str, &Membership> = w
        .memberships
        .iter()
        .map(|m| (m.spec.email.as_str(), m.as_ref()))
        .collect();
    // Credentials of an address no Membership holds any more go; while MFA is required, all
    // but when the address first joined: declared again, it gets no new grace period to enrol
    // (red teams 33 and 34). At most MAX_TOMBSTONES, the earliest joined.
    let mfa_required = org.is_some_and(|o| o.spec.security.mfa.required);
    let mut departed: Vec<(u64, &String, &Record)> = Vec::new();
    for (email, r) in &w.credentials {
        if held.contains_key(email.as_str()) {
            continue;
        }
        match r.grace_from().filter(|_| mfa_required) {
            Some(joined) => departed.push((joined, email, r)),
            None => plan.identity.push(IdentityAction::Forget {
                email: email.clone(),
                keep_joined: None,
            }),
        }
    }
    departed.sort_by_key(|(joined, email, _)| (*joined, *email));
    // Past the bound the protection is gone for the addresses dropped: the owner is told, not
    // left to find out (red team 36: 10,000 throwaway Memberships made and deleted fill it).
    let past = departed.len().saturating_sub(MAX_TOMBSTONES);
    if let Some(o) = org.filter(|_| past > 0) {
        plan.events.push(PlannedEvent {
            target: Target::Organization(o.name_any()),
            warning: true,
            reason: "MfaJoinTimesForgotten",
            note: format!(
                "{past} addresses no Membership holds lose the record of when they first joined (roster keeps {MAX_TOMBSTONES}, the earliest): declared again, they would get a new MFA grace period"
            ),
        });
    }
    for (i, (joined, email, r)) in departed.into_iter().enumerate() {
        let keep_joined = (i < MAX_TOMBSTONES).then_some(joined);
        if keep_joined.is_none() || !r.is_tombstone() {
            plan.identity.push(IdentityAction::Forget {
                email: email.clone(),
                keep_joined,
            });
        }
    }
    let Some(org) = org else {
        return;
    };
    let link_readers = LinkReaders::new(w, org, eval);
    for (m, a) in kept_up(w, eval) {
        // A stale record (left by a deleted namesake) counts as none: a fresh invitation
        // replaces it.
        let record = record_of(w, m);
        let request = |r: Request| {
            let nonce = m.annotations().get(r.annotation())?;
            let handled = record.and_then(|rec| rec.handled.get(r.kind()));
            (handled != Some(nonce) && !nonce.is_empty()).then(|| nonce.clone())
        };
        let accepted = record.is_some_and(|r| r.accepted_at.is_some());
        let resend = request(Request::ResendInvitation).filter(|_| !accepted);
        let never_invited = record.is_none_or(|r| !accepted && r.invitation.is_none());
        // After a link that could not be delivered, the next waits its turn (an explicit
        // resend does not: each nonce is acted on once).
        let now = u64::try_from(w.now.as_second()).unwrap_or(0);
        let retry_at = record
            .and_then(|r| r.undelivered)
            .and_then(|u| u.retry_at_from(now));
        let waiting = retry_at.filter(|_| never_invited && resend.is_none());
        if let Some(at) = waiting
            .and_then(|at| i64::try_from(at).ok())
            .and_then(|at| Timestamp::from_second(at).ok())
        {
            plan.requeue_at = Some(plan.requeue_at.map_or(at, |r| r.min(at)));
        }
        let scope = invitation_scope(org, m);
        let readers: Vec<String> = link_readers.of(m, a, &org.spec.owner).into_iter().collect();
        // A pending link whose member was given other rights, or that someone may no longer
        // read, is replaced: nobody keeps a link they could not read now, and no link
        // carries rights it was not issued for. So is one from before links had Secrets of
        // their own (`link_id`): a former reader may have read it through a binding of the
        // one name all of a member's links had (red team 24). Also while the member is
        // disabled or expired: re-enabled, the link would open again for whoever read it.
        let rotated = !accepted
            && record.and_then(|r| r.invitation.as_ref()).is_some_and(|i| {
                i.scope.as_deref() != Some(scope.as_str())
                    || (i.delivery == "Secret" && (i.readers != readers || i.link_id.is_none()))
            });
        if suspended(a) {
            if rotated && waiting.is_none() {
                plan.identity.push(IdentityAction::Invite {
                    membership: m.name_any(),
                    nonce: None,
                    rotated: true,
                    scope,
                    readers,
                });
            }
            continue;
        }
        if waiting.is_none() && (resend.is_some() || never_invited || rotated) {
            plan.identity.push(IdentityAction::Invite {
                membership: m.name_any(),
                nonce: resend,
                rotated: rotated && !never_invited,
                scope,
                readers,
            });
        }
        let Some(_) = record else { continue };
        if let Some(nonce) = request(Request::Unlock) {
            plan.identity.push(IdentityAction::Unlock {
                membership: m.name_any(),
                email: m.spec.email.clone(),
                nonce,
            });
        }
        if let Some(nonce) = request(Request::ResetMfa) {
            plan.identity.push(IdentityAction::ResetMfa {
                membership: m.name_any(),
                email: m.spec.email.clone(),
                nonce,
            });
        }
    }
}

/// What a credential record adds to a Membership's status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IdentityStatus {
    pub phase: Option<Phase>,
    pub invitation: Option<InvitationStatus>,
    pub failed_logins: Option<u32>,
    pub locked_until: Option<Time>,
    pub last_login: Option<Time>,
    /// When the status changes next by itself (a lock or an invitation expiring).
    pub next_change: Option<Timestamp>,
}

fn time(unix: u64) -> Option<Time> {
    i64::try_from(unix)
        .ok()
        .and_then(|s| Timestamp::from_second(s).ok())
        .map(Time)
}

/// `phase` is the access evaluation's (Invited unless disabled, expired or conflicting);
/// `membership` is the Membership's name (it names the link's Secret).
pub fn identity_status(
    record: Option<&Record>,
    membership: &str,
    phase: Phase,
    now: Timestamp,
) -> IdentityStatus {
    let Some(r) = record else {
        return IdentityStatus {
            phase: Some(phase),
            ..Default::default()
        };
    };
    let now_s = u64::try_from(now.as_second()).unwrap_or(0);
    let locked = r.locked_until.filter(|u| *u > now_s);
    let mut next_change = None;
    let phase = match phase {
        Phase::Invited | Phase::Active | Phase::Locked => {
            if let Some(u) = locked {
                next_change = time(u).map(|t| t.0);
                Phase::Locked
            } else if r.accepted_at.is_some() {
                Phase::Active
            } else {
                Phase::Invited
            }
        }
        other => other,
    };
    let invitation = match (&r.invitation, r.accepted_at) {
        (_, Some(at)) => Some(InvitationStatus {
            state: Some(InvitationState::Accepted),
            accepted_at: time(at),
            ..Default::default()
        }),
        (Some(inv), None) => {
            let expired = inv.expires_at <= now_s;
            if !expired {
                next_change = next_change.or(time(inv.expires_at).map(|t| t.0));
            }
            Some(InvitationStatus {
                state: Some(if expired {
                    InvitationState::Expired
                } else {
                    InvitationState::Pending
                }),
                sent_at: time(inv.sent_at),
                expires_at: time(inv.expires_at),
                accepted_at: None,
                delivery: Some(inv.delivery.clone()),
                secret_name: inv.secret_name(membership).filter(|_| !expired),
            })
        }
        (None, None) => None,
    };
    IdentityStatus {
        phase: Some(phase),
        invitation,
        failed_logins: (r.failed > 0).then_some(r.failed),
        locked_until: locked.and_then(|u| if u == u64::MAX { None } else { time(u) }),
        last_login: r.last_login.and_then(time),
        next_change,
    }
}

/// The Event for an identity action that was carried out (so `kubectl describe` shows it);
/// apply publishes it only after the action succeeded.
pub(super) fn event(action: &IdentityAction) -> Option<PlannedEvent> {
    let (membership, reason, note) = match action {
        IdentityAction::Invite {
            membership,
            rotated: true,
            nonce: None,
            ..
        } => (
            membership,
            "InvitationRotated",
            "the invitation link was replaced: the member's rights, or who may read the link, changed (or it was issued before each link had a Secret of its own)".to_string(),
        ),
        IdentityAction::Invite {
            membership,
            nonce: None,
            ..
        } => (membership, "Invited", "invitation issued".to_string()),
        IdentityAction::Invite {
            membership,
            nonce: Some(_),
            ..
        } => (
            membership,
            "InvitationResent",
            "invitation resent; the previous link no longer works".to_string(),
        ),
        IdentityAction::Unlock { membership, .. } => {
            (membership, "Unlocked", "account unlocked".to_string())
        }
        IdentityAction::ResetMfa { membership, .. } => (
            membership,
            "MfaReset",
            "MFA reset: TOTP enrolment at next login; existing tokens revoked".to_string(),
        ),
        IdentityAction::Forget { .. } => return None,
    };
    Some(PlannedEvent {
        target: Target::Membership(membership.clone()),
        warning: false,
        reason,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::store::Invitation;

    const NOW: u64 = 1_800_000_000;

    fn now() -> Timestamp {
        Timestamp::from_second(NOW as i64).expect("ts")
    }

    #[test]
    fn status_from_records() {
        let pending = Record {
            invitation: Some(Box::new(Invitation {
                hash: "h".into(),
                sent_at: NOW - 10,
                expires_at: NOW + 100,
                delivery: "Secret".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let s = identity_status(Some(&pending), "dave", Phase::Invited, now());
        assert_eq!(s.phase, Some(Phase::Invited));
        assert_eq!(
            s.invitation.as_ref().and_then(|i| i.state),
            Some(InvitationState::Pending)
        );
        assert_eq!(s.next_change, time(NOW + 100).map(|t| t.0));

        let mut expired = pending.clone();
        if let Some(i) = expired.invitation.as_mut() {
            i.expires_at = NOW;
        }
        let s = identity_status(Some(&expired), "dave", Phase::Invited, now());
        assert_eq!(
            s.invitation.and_then(|i| i.state),
            Some(InvitationState::Expired)
        );
        assert_eq!(s.next_change, None);

        let active = Record {
            accepted_at: Some(NOW - 50),
            failed: 2,
            last_login: Some(NOW - 5),
            ..Default::default()
        };
        let s = identity_status(Some(&active), "dave", Phase::Invited, now());
        assert_eq!(s.phase, Some(Phase::Active));
        assert_eq!(s.failed_logins, Some(2));
        assert!(s.last_login.is_some());

        let locked = Record {
            locked_until: Some(NOW + 900),
            failed: 10,
            ..active.clone()
        };
        let s = identity_status(Some(&locked), "dave", Phase::Invited, now());
        assert_eq!(s.phase, Some(Phase::Locked));
        assert_eq!(s.locked_until, time(NOW + 900));
        assert_eq!(
            s.next_change,
            time(NOW + 900).map(|t| t.0),
            "re-planned when the lock ends"
        );

        let lock_over = Record {
            locked_until: Some(NOW),
            ..locked.clone()
        };
        assert_eq!(
            identity_status(Some(&lock_over), "dave", Phase::Invited, now()).phase,
            Some(Phase::Active)
        );
        assert_eq!(
            identity_status(Some(&locked), "dave", Phase::Disabled, now()).phase,
            Some(Phase::Disabled),
            "disabled wins over locked"
        );
        assert_eq!(
            identity_status(None, "dave", Phase::Invited, now()).phase,
            Some(Phase::Invited)
        );
    }
}
