//! The blast-radius guard: one change may take away at most `spec.maxAccessRemovals` access
//! grants. Above that, nothing of the change is applied until a person acknowledges exactly that
//! set of removals (`roster.dev/accept-removals: <fingerprint>`) or raises the limit — except
//! cut-offs (disabled, expired, MFA overdue), which are never held back. Pure, like `plan()`.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::labels;
use super::plan::{ORG_BINDINGS, Settings, World};
use crate::access::Evaluation;
use crate::api::contract::ACCEPT_REMOVALS_ANNOTATION;
use crate::api::{MfaState, Organization, Phase, ProjectRole};
use crate::grants::{self, Change, Grants, Role, Scope};

/// A change held back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub removals: Vec<Change>,
    pub limit: u32,
    pub fingerprint: String,
}

impl Held {
    pub fn message(&self, org: &str) -> String {
        let shown: Vec<String> = self
            .removals
            .iter()
            .take(5)
            .map(|c| c.to_string())
            .collect();
        let more = self.removals.len().saturating_sub(shown.len());
        format!(
            "this change removes {} access grants, more than spec.maxAccessRemovals ({}): {}{}; nothing of it was applied. To apply it, annotate the Organization {ACCEPT_REMOVALS_ANNOTATION}={} (kubectl annotate organization {org} -n {org} {ACCEPT_REMOVALS_ANNOTATION}={} --overwrite), or raise spec.maxAccessRemovals; `roster diff --live --head …` shows the whole change",
            self.removals.len(),
            self.limit,
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            },
            self.fingerprint,
            self.fingerprint,
        )
    }
}

/// The grants roster's RoleBindings of organization `ns` give (invitation-link readers aside).
pub fn grants_of(bindings: &[RoleBinding], ns: &str, s: &Settings) -> Grants {
    let mut g = Grants::default();
    for rb in bindings {
        let name = rb.name_any();
        let role: Option<(Scope, Role)> = if rb.namespace().as_deref() == Some(ns)
            && let Some((_, _, r)) = ORG_BINDINGS.iter().find(|(n, _, _)| *n == name)
        {
            Some((Scope::Organization, Role::from(*r)))
        } else {
            let project = rb.labels().get(labels::PROJECT).cloned();
            let role = ProjectRole::ALL
                .into_iter()
                .find(|r| name == format!("roster-{}", r.as_str().to_lowercase()));
            project
                .zip(role)
                .map(|(p, r)| (Scope::Project(p), Role::from(r)))
        };
        let Some((scope, role)) = role else { continue };
        for subject in rb.subjects.iter().flatten() {
            if let Some(email) = s.subjects.member_email(ns, &subject.name) {
                g.insert(ns, email, scope.clone(), role);
            }
        }
    }
    g
}

/// E-mails of members cut off now (disabled, expired, MFA overdue): their removals are
/// security, not a change to review, and always go through.
pub fn cut_off(eval: &Evaluation) -> BTreeSet<String> {
    eval.members
        .iter()
        .filter(|m| {
            m.blocked.is_some()
                && (matches!(m.phase, Phase::Disabled | Phase::Expired)
                    || m.mfa.state == MfaState::Overdue)
        })
        .map(|m| m.email.clone())
        .collect()
}

/// Whether the change from the observed bindings to `desired` must be held back.
pub fn check(
    w: &World,
    org: &Organization,
    desired: &[RoleBinding],
    cut: &BTreeSet<String>,
    s: &Settings,
) -> Option<Held> {
    let limit = org.spec.max_access_removals?;
    let ns = w.namespace.as_str();
    let before = grants_of(&w.rolebindings, ns, s);
    let after = grants_of(desired, ns, s);
    let removals: Vec<Change> = grants::diff(&before, &after)
        .into_iter()
        .filter(|c| {
            c.kind.removes()
                && !cut.contains(&c.person.email)
                && !former_owner(&before, org, &c.person.email)
        })
        .collect();
    if removals.len() <= limit as usize {
        return None;
    }
    let fingerprint = grants::fingerprint(&removals);
    let acknowledged = org
        .annotations()
        .get(ACCEPT_REMOVALS_ANNOTATION)
        .is_some_and(|a| a.trim() == fingerprint);
    (!acknowledged).then_some(Held {
        removals,
        limit,
        fingerprint,
    })
}

/// Someone who holds the owner's role in the bindings but is no longer `spec.owner`: an
/// ownership transfer (confirmed by the owner's password and code, or made by a platform admin)
/// takes the former owner's rights away at once, never after a review.
pub fn former_owner(before: &Grants, org: &Organization, email: &str) -> bool {
    email != org.spec.owner
        && before.0.iter().any(|((p, scope), role)| {
            p.email == email && *scope == Scope::Organization && *role == Role::Owner
        })
}

/// While a change is held: the observed bindings as they are, minus the members cut off.
pub fn hold(w: &World, cut: &BTreeSet<String>, s: &Settings) -> Vec<RoleBinding> {
    let ns = w.namespace.as_str();
    w.rolebindings
        .iter()
        .map(|have| RoleBinding {
            metadata: ObjectMeta {
                name: have.metadata.name.clone(),
                namespace: have.metadata.namespace.clone(),
                labels: have.metadata.labels.clone(),
                owner_references: have.metadata.owner_references.clone(),
                ..Default::default()
            },
            role_ref: have.role_ref.clone(),
            subjects: Some(
                have.subjects
                    .iter()
                    .flatten()
                    .filter(|sub| {
                        s.subjects
                            .member_email(ns, &sub.name)
                            .is_none_or(|e| !cut.contains(e))
                    })
                    .cloned()
                    .collect(),
            ),
        })
        .collect()
}
