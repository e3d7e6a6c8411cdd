//! The status part of `plan()`: what each Organization, Project and Membership reports, and the
//! Events for changes of access. Pure, like the rest of the plan.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::plan::{Plan, PlannedEvent, Target, World};
use crate::access::{self, Evaluation, MemberAccess, ProjectView};
use crate::api::{
    AccessEntry, Membership, MembershipStatus, MfaState, Organization, OrganizationStatus, Phase,
    ProjectRole, ProjectStatus,
};
use crate::condition::{self, Health, READY};

#[allow(clippy::too_many_arguments)]
pub(super) fn statuses(
    w: &World,
    org: Option<&Organization>,
    eval: &Evaluation,
    views: &[ProjectView],
    namespace_reasons: &BTreeMap<String, Option<String>>,
    mfa_required: bool,
    plan: &mut Plan,
) {
    let now = w.now;
    // Organization.
    if let Some(o) = org {
        let prev = o.status.clone().unwrap_or_default();
        let (ok, counted) = access::mfa_compliance(&eval.members);
        let gen_ = o.metadata.generation;
        let conflicts = eval
            .members
            .iter()
            .filter(|m| m.phase == Phase::Conflict)
            .count();
        let [ready, reconciling, stalled] = condition::kstatus(
            &prev.conditions,
            &Health::ready(
                "Converged",
                format!(
                    "{} members, {} projects converged",
                    eval.members.len() - conflicts,
                    views.len()
                ),
            ),
            gen_,
            now,
        );
        let mfa = mfa_condition(&prev.conditions, mfa_required, gen_, now);
        let status = OrganizationStatus {
            observed_generation: gen_,
            owner: Some(o.spec.owner.clone()),
            members: Some(u32::try_from(eval.members.len() - conflicts).unwrap_or(u32::MAX)),
            projects: Some(u32::try_from(views.len()).unwrap_or(u32::MAX)),
            mfa_compliant: Some(format!("{ok}/{counted}")),
            conditions: vec![ready, reconciling, stalled, mfa],
        };
        if let Some(previous_owner) = prev.owner.as_ref().filter(|p| **p != o.spec.owner) {
            plan.events.push(PlannedEvent {
                target: Target::Organization(o.name_any()),
                warning: false,
                reason: "OwnerChanged",
                note: format!("owner is now {} (was {previous_owner})", o.spec.owner),
            });
        }
        if status != prev {
            plan.org_status = Some(status);
        }
    }

    for o in &w.stray_orgs {
        let prev = o.status.clone().unwrap_or_default();
        let (reason, msg) = match &w.home_is_project_of {
            Some(other) => (
                "HomeIsAProjectNamespace",
                format!(
                    "namespace {} is a project namespace of organization {other}: no organization can live there; move it to a namespace of its own",
                    w.namespace
                ),
            ),
            None => (
                "NameNotNamespace",
                format!(
                    "an Organization must be named after its namespace; rename it to {} or move it to a namespace named {}",
                    w.namespace,
                    o.name_any()
                ),
            ),
        };
        let status = OrganizationStatus {
            observed_generation: o.metadata.generation,
            conditions: condition::kstatus(
                &prev.conditions,
                &Health::stalled(reason, msg),
                o.metadata.generation,
                now,
            )
            .into(),
            ..Default::default()
        };
        if status != prev {
            plan.stray_org_status.push((o.name_any(), status));
        }
    }

    // Projects.
    for (p, view) in w.projects.iter().zip(views) {
        if p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let prev = p.status.clone().unwrap_or_default();
        let members = eval
            .members
            .iter()
            .filter(|m| m.grants.contains_key(&view.name))
            .count()
            + usize::from(eval.owner_without_membership.is_some() && view.unavailable.is_none());
        let reason = namespace_reasons.get(&view.name).cloned().flatten();
        let (ok, why, msg) = match &reason {
            None => (
                true,
                "Converged",
                format!(
                    "namespace {} and its RoleBindings converged",
                    view.namespace
                ),
            ),
            Some(r) if r.contains("not created by roster") => {
                (false, "NamespaceNotOwned", r.clone())
            }
            Some(r) if org.is_none() => (false, "NoOrganization", r.clone()),
            Some(r) => (false, "NamespaceUnavailable", r.clone()),
        };
        // A namespace on its way out resolves itself; the other causes need a person.
        let health = if ok {
            Health::ready(why, msg.clone())
        } else if msg.contains("is terminating") {
            Health::reconciling("NamespaceTerminating", msg.clone())
        } else {
            Health::stalled(why, msg.clone())
        };
        let three = condition::kstatus(&prev.conditions, &health, p.metadata.generation, now);
        let flipped_to_not_owned = why == "NamespaceNotOwned"
            && condition::find(&prev.conditions, READY)
                .is_none_or(|c| c.reason != "NamespaceNotOwned");
        if flipped_to_not_owned {
            plan.events.push(PlannedEvent {
                target: Target::Project(view.name.clone()),
                warning: true,
                reason: "NamespaceNotOwned",
                note: msg,
            });
        }
        let status = ProjectStatus {
            observed_generation: p.metadata.generation,
            namespace: Some(view.namespace.clone()),
            members: Some(u32::try_from(members).unwrap_or(u32::MAX)),
            conditions: three.into(),
        };
        if status != prev {
            plan.project_status.push((view.name.clone(), status));
        }
    }

    // Memberships.
    let mut first_grants: Vec<PlannedEvent> = Vec::new();
    // By name: a scan per member would be quadratic in the organization's size.
    let by_name: std::collections::HashMap<&str, &MemberAccess> = eval
        .members
        .iter()
        .map(|a| (a.membership.as_str(), a))
        .collect();
    for m in &w.memberships {
        let Some(a) = m
            .metadata
            .name
            .as_deref()
            .and_then(|n| by_name.get(n))
            .copied()
        else {
            continue;
        };
        let prev = m.status.clone().unwrap_or_default();
        let id = super::credentials::identity_status(
            super::credentials::record_of(w, m),
            &a.membership,
            a.phase,
            now,
        );
        if let Some(at) = id.next_change {
            plan.requeue_at = Some(plan.requeue_at.map_or(at, |r| r.min(at)));
        }
        let status = membership_status(m, a, &prev, id, now);
        if let Some(e) = access_event(m, &prev.access, a) {
            // A member seen for the first time (no status yet) whose first grants these are.
            if m.status.is_none() && e.reason == "AccessGranted" {
                first_grants.push(e);
            } else {
                plan.events.push(e);
            }
        }
        if !status.is_stored_as(&prev) {
            plan.membership_status.push((a.membership.clone(), status));
        }
    }
    // A bulk import is one change: its new members' first grants are one Event on the
    // Organization (their statuses say the rest); a few new members get one Event each.
    match (first_grants.len() > BULK_MEMBERS, org) {
        (true, Some(o)) => {
            let names: Vec<String> = first_grants
                .iter()
                .filter_map(|e| match &e.target {
                    Target::Membership(n) => Some(n.clone()),
                    _ => None,
                })
                .collect();
            plan.events.push(PlannedEvent {
                target: Target::Organization(o.name_any()),
                warning: false,
                reason: "MembersGranted",
                note: members_note("new members granted access", &names),
            });
        }
        _ => plan.events.extend(first_grants),
    }
}

/// "N <what>: a, b, c", cut to what an Event's note holds (1 kB).
pub(super) fn members_note(what: &str, names: &[String]) -> String {
    let mut note = format!("{} {what}: {}", names.len(), names.join(", "));
    if note.chars().count() > 1000 {
        note = note.chars().take(990).collect::<String>() + " …";
    }
    note
}

/// Whether the organization requires MFA, and since when: the time the grace periods run from
/// (a plan reads it back; without it, it takes now).
fn mfa_condition(
    previous: &[Condition],
    required: bool,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let (reason, message) = if required {
        (
            "Required",
            "members must enrol TOTP within the grace period",
        )
    } else {
        ("NotRequired", "MFA is optional")
    };
    condition::make(
        previous,
        "MfaRequired",
        required,
        reason,
        message,
        generation,
        now,
    )
}

/// Sets the MfaRequired condition in `conditions`, keeping its time unless it flips. Every
/// status the Organization is given records it, a failure's too: while any write of a
/// reconcile failed (a binding an Admin replaced in a project namespace, refused on every
/// retry), the plan's status was never written, each retry took now as the time MFA became
/// required, and no grace period ever ended (red team 32).
pub(super) fn record_mfa_required(
    conditions: &mut Vec<Condition>,
    required: bool,
    generation: Option<i64>,
    now: Timestamp,
) {
    let mfa = mfa_condition(conditions, required, generation, now);
    conditions.retain(|c| c.type_ != "MfaRequired");
    conditions.push(mfa);
}

/// More new members than this in one reconcile is a bulk import (see `statuses`).
pub(super) const BULK_MEMBERS: usize = 10;

/// The Organization's status while a change is held back by the blast-radius guard: Stalled,
/// with the count and the way on; an Event when it starts or the held change is another.
pub(super) fn held(
    w: &World,
    o: &Organization,
    held: &super::guard::Held,
    mfa_required: bool,
    s: &super::plan::Settings,
    plan: &mut Plan,
) {
    let mut status = o.status.clone().unwrap_or_default();
    // The policy's clock runs while a change waits: since when MFA is required is recorded,
    // or no grace period would ever end.
    record_mfa_required(
        &mut status.conditions,
        mfa_required,
        o.metadata.generation,
        w.now,
    );
    let message = held.message(&w.namespace, &s.hold_key);
    let was = condition::find(&status.conditions, condition::STALLED)
        .is_some_and(|c| c.status == "True" && c.message.contains(&held.mark(&s.hold_key)));
    let three = condition::kstatus(
        &status.conditions,
        &Health::stalled("AccessRemovalsHeld", message.clone()),
        o.metadata.generation,
        w.now,
    );
    condition::set_kstatus(&mut status.conditions, three);
    status.observed_generation = o.metadata.generation;
    if !was {
        plan.events.push(PlannedEvent {
            target: Target::Organization(o.name_any()),
            warning: true,
            reason: "AccessRemovalsHeld",
            // An Event's note holds 1 kB.
            note: held.details(&w.namespace).chars().take(1000).collect(),
        });
    }
    if Some(&status) != o.status.as_ref() {
        plan.org_status = Some(status);
    }
}

fn membership_status(
    m: &Membership,
    a: &MemberAccess,
    prev: &MembershipStatus,
    id: super::credentials::IdentityStatus,
    now: Timestamp,
) -> MembershipStatus {
    let gen_ = m.metadata.generation;
    let prev_conditions = prev.decision_conditions();
    // kstatus: Ready means "converged", which a disabled or expired member is too; whether
    // the member may use their roles is the separate Entitled condition (so a GitOps health
    // check does not report a deliberately disabled member as broken). A second Membership of
    // an address, or one without an organization, is stuck until a person acts: Stalled.
    let health = match (a.phase, &a.blocked) {
        (Phase::Conflict, Some(why)) => Health::stalled("EmailConflict", why.clone()),
        (_, Some(why)) if why.starts_with("no Organization") => {
            Health::stalled("NoOrganization", why.clone())
        }
        _ => Health::ready("Converged", format!("access: {}", a.summary())),
    };
    let [ready, reconciling, stalled] = condition::kstatus(&prev_conditions, &health, gen_, now);
    let entitled = match &a.blocked {
        None => condition::make(
            &prev_conditions,
            "Entitled",
            true,
            "Entitled",
            "may use the declared roles",
            gen_,
            now,
        ),
        Some(why) => condition::make(
            &prev_conditions,
            "Entitled",
            false,
            phase_reason(a),
            why.clone(),
            gen_,
            now,
        ),
    };
    let compliant_ok = !matches!(a.mfa.state, MfaState::Overdue);
    let compliant = condition::make(
        &prev_conditions,
        "Compliant",
        compliant_ok,
        match a.mfa.state {
            MfaState::Enrolled => "MfaEnrolled",
            MfaState::Pending => "MfaGracePeriod",
            MfaState::Exempt => "MfaExempt",
            MfaState::NotRequired => "MfaNotRequired",
            MfaState::Overdue => "MfaOverdue",
        },
        match (&a.mfa.state, &a.mfa.deadline) {
            (MfaState::Pending, Some(d)) => format!("enrol TOTP before {}", d.0),
            (MfaState::Overdue, Some(d)) => format!(
                "MFA grace period ended at {}; enrol TOTP to regain access",
                d.0
            ),
            _ => "meets the organization's MFA policy".to_string(),
        },
        gen_,
        now,
    );
    MembershipStatus {
        observed_generation: gen_,
        phase: id.phase.or(Some(a.phase)),
        effective_role: Some(a.effective_role),
        invitation: id.invitation,
        mfa: Some(a.mfa.clone()),
        last_login: id.last_login,
        failed_logins: id.failed_logins,
        locked_until: id.locked_until,
        access: a.entries.clone(),
        access_summary: Some(a.summary()),
        conditions: vec![ready, reconciling, stalled, entitled, compliant],
        cached: None,
    }
}

fn phase_reason(a: &MemberAccess) -> &'static str {
    match a.phase {
        Phase::Conflict => "EmailConflict",
        Phase::Disabled => "Disabled",
        Phase::Expired => "Expired",
        Phase::Locked => "Locked",
        _ if a.blocked.as_deref().is_some_and(|b| b.starts_with("MFA")) => "MfaOverdue",
        _ if a
            .blocked
            .as_deref()
            .is_some_and(|b| b.starts_with("no Organization")) =>
        {
            "NoOrganization"
        }
        _ => "NoAccess",
    }
}

/// One Event per member and change, naming every project whose role changed since the last
/// status: `kubectl describe membership` tells the whole change in one line, and a bulk import
/// makes one Event per member, not one per member and project. (Events of one object with one
/// reason are one series to the API server's recorder, whose note the next one overwrites:
/// per-project Events of a member lost all but the last project.)
fn access_event(m: &Membership, prev: &[AccessEntry], a: &MemberAccess) -> Option<PlannedEvent> {
    let before: BTreeMap<&str, ProjectRole> = prev
        .iter()
        .filter_map(|e| Some((e.project.as_str(), e.role?)))
        .collect();
    let after: BTreeMap<&str, ProjectRole> =
        a.grants.iter().map(|(p, r)| (p.as_str(), *r)).collect();
    let projects: BTreeSet<&str> = before.keys().chain(after.keys()).copied().collect();
    let (mut granted, mut changed, mut revoked) = (false, false, false);
    let mut parts = Vec::new();
    for p in projects {
        let (b, n) = (before.get(p), after.get(p));
        if b == n {
            continue;
        }
        let why = a
            .entries
            .iter()
            .find(|e| e.project == p)
            .and_then(|e| e.reason.clone());
        parts.push(match (b, n) {
            (None, Some(r)) => {
                granted = true;
                format!("{p}: granted {}", r.as_str())
            }
            (Some(r), None) => {
                revoked = true;
                format!(
                    "{p}: revoked {} ({})",
                    r.as_str(),
                    why.as_deref().unwrap_or("no longer declared")
                )
            }
            (Some(o), Some(r)) => {
                changed = true;
                format!("{p}: {} → {}", o.as_str(), r.as_str())
            }
            (None, None) => continue,
        });
    }
    if parts.is_empty() {
        return None;
    }
    let reason = if revoked {
        "AccessRevoked"
    } else if changed {
        "AccessChanged"
    } else {
        debug_assert!(granted);
        "AccessGranted"
    };
    Some(PlannedEvent {
        target: Target::Membership(m.name_any()),
        warning: revoked,
        reason,
        // An Event's note holds 1 kB.
        note: parts.join("; ").chars().take(1000).collect(),
    })
}
