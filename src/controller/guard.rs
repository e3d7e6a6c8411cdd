//! The blast-radius guard: one change may take away at most `spec.maxAccessRemovals` access
//! grants. Above that, nothing of the change is applied until a person acknowledges exactly that
//! set of removals (`roster.dev/accept-removals: <fingerprint>`) or raises the limit — except
//! cut-offs (disabled, expired, MFA overdue), which are never held back. Pure, like `plan()`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::labels;
use super::plan::{ORG_BINDINGS, Settings, World, project_namespace};
use crate::access::Evaluation;
use crate::api::contract::{ACCEPT_REMOVALS_ANNOTATION, MEMBERSHIP_LABEL};
use crate::api::{MfaState, Organization, Phase, Project, ProjectRole};
use crate::grants::{self, Change, Grants, Role, Scope};

/// A change held back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub removals: Vec<Change>,
    pub limit: u32,
    pub fingerprint: String,
}

/// The key of the marks held changes are announced under: random per process, so that a
/// mark tells one held change from another without telling anyone which removals it holds.
#[derive(Clone, Default)]
pub struct HoldKey([u8; 32]);

impl HoldKey {
    pub fn random() -> HoldKey {
        HoldKey(crate::identity::random::<32>())
    }
}

impl std::fmt::Debug for HoldKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HoldKey(<redacted>)")
    }
}

impl Held {
    /// For the Organization's `Stalled` condition, which Members read too: how many grants,
    /// never whose, nor the fingerprint (red teams 26 and 27: the condition named who lost
    /// what, and the fingerprint, an unkeyed hash of the removals, let a Member check guesses
    /// of it). Names and fingerprint are in `details`, for the Event that the owner and Admins
    /// read; the mark tells this held change from another.
    pub fn message(&self, org: &str, key: &HoldKey) -> String {
        format!(
            "this change removes {} access grants, more than spec.maxAccessRemovals ({}); nothing of it was applied. The Warning Event AccessRemovalsHeld (kubectl describe organization {org} -n {org}) says what it removes and the fingerprint that applies it (annotate the Organization {ACCEPT_REMOVALS_ANNOTATION}=<fingerprint>), as `roster diff --live --head …` does; or raise spec.maxAccessRemovals (held change {})",
            self.removals.len(),
            self.limit,
            self.mark(key),
        )
    }

    /// This held change's mark under `key`: an HMAC of its fingerprint.
    pub fn mark(&self, key: &HoldKey) -> String {
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.0),
            self.fingerprint.as_bytes(),
        );
        tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// For the Event (read by the owner and Admins): the fingerprint first (a note is cut at
    /// 1 kB), then the first removals by name.
    pub fn details(&self, org: &str) -> String {
        let shown: Vec<String> = self
            .removals
            .iter()
            .take(5)
            .map(|c| c.to_string())
            .collect();
        let more = self.removals.len().saturating_sub(shown.len());
        format!(
            "this change removes {} access grants, more than spec.maxAccessRemovals ({}); nothing of it was applied. To apply it, annotate the Organization {ACCEPT_REMOVALS_ANNOTATION}={} (kubectl annotate organization {org} -n {org} {ACCEPT_REMOVALS_ANNOTATION}={} --overwrite), or raise spec.maxAccessRemovals. It removes: {}{}; `roster diff --live --head …` shows the whole change",
            self.removals.len(),
            self.limit,
            self.fingerprint,
            self.fingerprint,
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            },
        )
    }
}

/// Where the organization's projects keep their bindings: each Project's namespace, and for
/// a Project gone without roster's clean-up (its finalizer stripped by hand), the namespace
/// roster labelled for it.
#[derive(Default)]
pub struct ProjectNamespaces {
    of_project: BTreeMap<String, String>,
    /// Namespace → the project roster's labels on it name.
    labelled: BTreeMap<String, String>,
}

impl ProjectNamespaces {
    /// Whether roster writes (or wrote) project `project`'s grants in namespace `ns`: the
    /// Project's namespace, or one roster labelled for that project (also when a Project of
    /// that name was declared since with another namespace: red team 27).
    fn holds(&self, project: &str, ns: Option<&str>) -> bool {
        ns.is_some_and(|ns| {
            self.of_project.get(project).map(String::as_str) == Some(ns)
                || self.labelled.get(ns).map(String::as_str) == Some(project)
        })
    }
}

pub fn project_namespaces(w: &World) -> ProjectNamespaces {
    let mut p = project_namespaces_of(&w.namespace, &w.projects);
    p.labelled = w
        .namespaces
        .iter()
        .filter_map(|(name, n)| {
            let l = n.metadata.labels.as_ref()?;
            let project = l.get(labels::PROJECT)?;
            labels::owned_by(Some(l), &w.namespace, project)
                .then(|| (name.clone(), project.clone()))
        })
        .collect();
    p
}

/// `project_namespaces` of organization `ns`'s `projects` (none gone).
pub fn project_namespaces_of(ns: &str, projects: &[Project]) -> ProjectNamespaces {
    ProjectNamespaces {
        of_project: projects
            .iter()
            .map(|p| (p.name_any(), project_namespace(ns, p)))
            .collect(),
        labelled: BTreeMap::new(),
    }
}

/// The grant a RoleBinding of roster's stands for: its scope and role. None for the bindings of
/// invitation-link readers, and for a binding labelled as roster's anywhere but where roster
/// writes that grant (the organization's namespace, the project's): anyone who may write
/// bindings in some namespace can label one, and counted, it changed what the guard held (red
/// team 25).
fn scope_role(rb: &RoleBinding, ns: &str, projects: &ProjectNamespaces) -> Option<(Scope, Role)> {
    let name = rb.name_any();
    if rb.namespace().as_deref() == Some(ns)
        && let Some((_, _, r)) = ORG_BINDINGS.iter().find(|(n, _, _)| *n == name)
    {
        return Some((Scope::Organization, Role::from(*r)));
    }
    let project = rb
        .labels()
        .get(labels::PROJECT)
        .filter(|p| projects.holds(p, rb.metadata.namespace.as_deref()))
        .cloned();
    let role = ProjectRole::ALL
        .into_iter()
        .find(|r| name == format!("roster-{}", r.as_str().to_lowercase()));
    project
        .zip(role)
        .map(|(p, r)| (Scope::Project(p), Role::from(r)))
}

/// Whether `rb` is the binding of an invitation link's readers, as roster writes one: in the
/// organization's namespace, to the link's own Role.
pub(super) fn is_link(rb: &RoleBinding, ns: &str) -> bool {
    let name = rb.name_any();
    rb.namespace().as_deref() == Some(ns)
        && name.starts_with("roster-invitation-")
        && rb.role_ref.kind == "Role"
        && rb.role_ref.name == name
}

/// The grants roster's RoleBindings of organization `ns` give (invitation-link readers aside).
pub fn grants_of(
    bindings: &[RoleBinding],
    ns: &str,
    projects: &ProjectNamespaces,
    s: &Settings,
) -> Grants {
    let mut g = Grants::default();
    for rb in bindings {
        let Some((scope, role)) = scope_role(rb, ns, projects) else {
            continue;
        };
        for subject in rb.subjects.iter().flatten() {
            if let Some(email) = s.subjects.member_email(ns, &subject.name) {
                g.insert(ns, email, scope.clone(), role);
            }
        }
    }
    g
}

/// What roster itself last granted: the access its own statuses of the live Memberships record
/// (an entitled member's org role, each project role held). Only such grants can be held back:
/// a subject someone added to a binding by hand, or one of a Membership that is gone, is
/// removed at once.
pub fn recorded(w: &World) -> Grants {
    let ns = w.namespace.as_str();
    let mut g = Grants::default();
    for m in w
        .memberships
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
    {
        let Some(st) = m.status.as_ref() else {
            continue;
        };
        let entitled = st
            .decision_conditions()
            .iter()
            .any(|c| c.type_ == "Entitled" && c.status == "True");
        if entitled && let Some(r) = st.effective_role {
            g.insert(ns, &m.spec.email, Scope::Organization, Role::from(r));
        }
        for e in &st.access {
            if let Some(r) = e.role {
                g.insert(
                    ns,
                    &m.spec.email,
                    Scope::Project(e.project.clone()),
                    Role::from(r),
                );
            }
        }
    }
    g
}

/// The grants both bound now and recorded by roster: what a change may be held back for.
pub fn intended(observed: &Grants, recorded: &Grants) -> Grants {
    Grants(
        observed
            .0
            .iter()
            .filter(|(k, r)| recorded.0.get(*k) == Some(*r))
            .map(|(k, r)| (k.clone(), *r))
            .collect(),
    )
}

/// People bound now who have no live Membership (deleted, being deleted) and are not the
/// owner: removing a Membership cuts its person off at once, like disabling it — with an
/// external authenticator the RoleBinding is the only gate.
pub fn gone(w: &World, org: &Organization, observed: &Grants) -> BTreeSet<String> {
    let live: BTreeSet<&str> = w
        .memberships
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .map(|m| m.spec.email.as_str())
        .collect();
    observed
        .0
        .keys()
        .map(|(p, _)| p.email.as_str())
        .filter(|e| !live.contains(e) && *e != org.spec.owner)
        .map(str::to_string)
        .collect()
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

/// Whether the change from `before` (the intended grants bound now) to `desired` must be held
/// back.
pub fn check(
    w: &World,
    org: &Organization,
    before: &Grants,
    observed: &Grants,
    desired: &[RoleBinding],
    cut: &BTreeSet<String>,
    s: &Settings,
) -> Option<Held> {
    let limit = org.spec.max_access_removals?;
    let after = grants_of(desired, &w.namespace, &project_namespaces(w), s);
    let removals: Vec<Change> = grants::diff(before, &after)
        .into_iter()
        .filter(|c| {
            c.kind.removes()
                && !cut.contains(&c.person.email)
                && !former_owner(observed, org, &c.person.email)
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

/// While a change is held: the bindings keep the intended grants (`kept`) of people not cut
/// off, and nothing else — no subject added by hand, none of a Membership that is gone. An
/// invitation link's binding is no access to hold either way: it keeps the readers that are
/// both desired now and bound already. Held as it stood, a former reader kept reading the link
/// issued in place of the one they read, which its record says they could not (red team 20).
pub fn hold(
    w: &World,
    kept: &Grants,
    cut: &BTreeSet<String>,
    desired: &[RoleBinding],
    s: &Settings,
) -> Vec<RoleBinding> {
    let ns = w.namespace.as_str();
    let projects = project_namespaces(w);
    let owner = w.org.as_ref().map(|o| o.spec.owner.as_str());
    let link = |rb: &RoleBinding| is_link(rb, ns);
    let same = |a: &RoleBinding, b: &RoleBinding| {
        a.metadata.name == b.metadata.name && a.metadata.namespace == b.metadata.namespace
    };
    let links: Vec<&RoleBinding> = desired.iter().filter(|rb| link(rb)).collect();
    // Grants as they stood; anything else labelled as roster's (planted elsewhere, a binding
    // of a Project that is gone) is left out, so it is deleted.
    let held = w
        .rolebindings
        .iter()
        .filter_map(|have| Some((have, scope_role(have, ns, &projects)?)))
        .map(|(have, (scope, role))| {
            with_subjects(
                have,
                have.subjects
                    .iter()
                    .flatten()
                    .filter(|sub| {
                        let Some(email) = s.subjects.member_email(ns, &sub.name) else {
                            return false;
                        };
                        if cut.contains(email) {
                            return false;
                        }
                        kept.0
                            .iter()
                            .any(|((p, sc), r)| p.email == email && *sc == scope && *r == role)
                    })
                    .cloned()
                    .collect(),
            )
        });
    // Links: as desired and as they stood both (a held change adds no reader either: red
    // team 22), readers cut off aside; a link's binding desired no more is left out, so it
    // is deleted (its Role may be gone with its replaced link, and a binding to a Role that
    // does not exist cannot be written). A link issued during the hold (a resend, a
    // rotation) stood nowhere yet: it is read by who was bound to the member's links before
    // it, as far as its record names them (red team 24: bound to nobody, every link replaced
    // during a hold was unreadable until it ended).
    let member_of = |rb: &RoleBinding| rb.labels().get(MEMBERSHIP_LABEL).cloned();
    let bound = links.iter().filter_map(|d| {
        let stood = w.rolebindings.iter().find(|have| same(d, have));
        let before: Vec<&RoleBinding> = match stood {
            Some(have) => vec![have],
            None => w
                .rolebindings
                .iter()
                .filter(|have| {
                    link(have) && member_of(have).is_some() && member_of(have) == member_of(d)
                })
                .collect(),
        };
        let had = |sub: &Subject| {
            before
                .iter()
                .flat_map(|have| have.subjects.iter().flatten())
                .any(|h| h.name == sub.name)
        };
        // The owner reads any link but their own, held change or not: ownership is never a
        // held grant, and without it a member's first link issued during a hold was readable
        // by nobody (red team 25).
        let subjects: Vec<Subject> = d
            .subjects
            .iter()
            .flatten()
            .filter(|sub| {
                s.subjects
                    .member_email(ns, &sub.name)
                    .is_some_and(|e| !cut.contains(e) && (had(sub) || Some(e) == owner))
            })
            .cloned()
            .collect();
        // A first link bound to nobody is not written yet.
        (stood.is_some() || !subjects.is_empty()).then(|| RoleBinding {
            subjects: Some(subjects),
            ..(*d).clone()
        })
    });
    held.chain(bound).collect()
}

/// `have` as roster applies it, with these subjects: its name, labels and owner, nothing the
/// API server set.
fn with_subjects(have: &RoleBinding, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: have.metadata.name.clone(),
            namespace: have.metadata.namespace.clone(),
            labels: have.metadata.labels.clone(),
            owner_references: have.metadata.owner_references.clone(),
            ..Default::default()
        },
        role_ref: have.role_ref.clone(),
        subjects: Some(subjects),
    }
}
