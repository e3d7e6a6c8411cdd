//! What a change does to people: grants gained and lost, owners changed, and who a policy
//! change cuts off and when — computed from two access reports.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::report::{PersonReport, Report};
use crate::api::MfaState;
use crate::grants::{self, Change};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    pub changes: Vec<Change>,
    pub owners: Vec<OwnerChange>,
    pub cut_offs: Vec<CutOffChange>,
    /// Grants lost or lowered.
    pub removals: usize,
    /// What the Organization's `roster.dev/accept-removals` annotation must say for the
    /// controller to apply these removals past its limit (`spec.maxAccessRemovals`): the
    /// fingerprint of the removals it would hold (cut-offs and a former owner's rights go
    /// through at once and are not in it).
    pub fingerprint: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerChange {
    pub organization: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CutOffChange {
    pub organization: String,
    pub email: String,
    /// When access ends: now, or an MFA deadline.
    pub at: Timestamp,
    pub why: String,
}

pub fn diff(base: &Report, head: &Report) -> Diff {
    let changes = grants::diff(&base.grants(), &head.grants());
    let mut owners = Vec::new();
    let mut cut_offs = Vec::new();
    for o in &head.organizations {
        let before = base.organizations.iter().find(|b| b.name == o.name);
        let before_owner = before.and_then(|b| b.owner.clone());
        if before.is_some() && before_owner != o.owner {
            owners.push(OwnerChange {
                organization: o.name.clone(),
                before: before_owner,
                after: o.owner.clone(),
            });
        }
        for p in &o.people {
            let was = base.person(&o.name, &p.email);
            if let Some(c) = new_cut_off(was, p, head.now) {
                cut_offs.push(CutOffChange {
                    organization: o.name.clone(),
                    email: p.email.clone(),
                    at: c.0,
                    why: c.1,
                });
            }
        }
    }
    for b in &base.organizations {
        if !head.organizations.iter().any(|o| o.name == b.name) {
            owners.push(OwnerChange {
                organization: b.name.clone(),
                before: b.owner.clone(),
                after: None,
            });
        }
    }
    cut_offs
        .sort_by(|a, b| (a.at, &a.organization, &a.email).cmp(&(b.at, &b.organization, &b.email)));
    // What the controller's guard would hold, and so acknowledge: not the cut-offs (disabled,
    // expired, MFA overdue, Membership removed), not a former owner's rights (all go through
    // at once) — the same fingerprint it shows.
    let held: Vec<Change> = changes
        .iter()
        .filter(|c| c.kind.removes())
        .filter(|c| {
            let now = head.person(&c.person.organization, &c.person.email);
            let cut = now.and_then(|p| p.cut_off.as_ref()).is_some_and(|x| {
                matches!(x.reason.as_str(), "Disabled" | "Expired" | "MfaOverdue")
            });
            let owner_now = head
                .organizations
                .iter()
                .find(|o| o.name == c.person.organization)
                .and_then(|o| o.owner.as_deref());
            let was_owner = base
                .person(&c.person.organization, &c.person.email)
                .is_some_and(|p| p.role == crate::api::EffectiveRole::Owner);
            let former_owner = was_owner && owner_now != Some(c.person.email.as_str());
            // A Membership removed is a cut-off too.
            let gone = now.is_none();
            !(cut || former_owner || gone)
        })
        .cloned()
        .collect();
    Diff {
        removals: grants::removals(&changes),
        fingerprint: grants::fingerprint(&held),
        changes,
        owners,
        cut_offs,
    }
}

/// A cut-off the change introduces: one in effect now that was not before, or an MFA deadline
/// that is new or earlier than before.
fn new_cut_off(
    was: Option<&PersonReport>,
    now_: &PersonReport,
    now: Timestamp,
) -> Option<(Timestamp, String)> {
    let was_cut = was.and_then(|w| w.cut_off.as_ref());
    if let Some(c) = &now_.cut_off
        && was.is_some()
        && was_cut.is_none_or(|w| w.reason != c.reason)
    {
        return Some((now, format!("{} ({})", c.message, c.reason)));
    }
    if now_.cut_off.is_none()
        && was.is_some()
        && now_.mfa == MfaState::Pending
        && let Some(deadline) = now_.mfa_deadline
    {
        let before = was
            .filter(|w| w.mfa == MfaState::Pending)
            .and_then(|w| w.mfa_deadline);
        if before.is_none_or(|b| deadline < b) {
            return Some((
                deadline,
                "MFA required: loses all access then unless enrolled in TOTP".to_string(),
            ));
        }
    }
    None
}
