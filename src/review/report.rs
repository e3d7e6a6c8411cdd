//! Who can reach what, per organization and project, as the controller's own `plan()` says:
//! each organization of the tree is planned as the controller plans it, and the statuses it
//! would write are read back as the access table.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use super::tree::{Tree, by_home};
use crate::api::{EffectiveRole, Membership, MfaState, Phase, ProjectRole};
use crate::controller::plan::{self, Settings, World};
use crate::grants::{Grants, Role, Scope};
use crate::identity::store::Record;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub now: Timestamp,
    pub organizations: Vec<OrgReport>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgReport {
    /// The organization's namespace (and name).
    pub name: String,
    pub owner: Option<String>,
    pub mfa_required: bool,
    /// Admins are project Admin everywhere (`spec.adminsSeeAllProjects`).
    pub admins_see_all_projects: bool,
    pub projects: Vec<ProjectReport>,
    pub people: Vec<PersonReport>,
    /// What the controller would report as not ready (a stray Organization, a namespace that is
    /// not roster's), in its words.
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectReport {
    pub name: String,
    pub namespace: String,
    /// Why nobody can have access through this project now, if so.
    pub unavailable: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonReport {
    pub email: String,
    /// The Membership; none for an owner roster has not created one for yet.
    pub membership: Option<String>,
    pub role: EffectiveRole,
    pub phase: Phase,
    /// Why the person holds nothing now (the `Entitled` condition's reason and message).
    pub cut_off: Option<CutOff>,
    pub mfa: MfaState,
    /// When MFA becomes overdue (pending) or became so (overdue).
    pub mfa_deadline: Option<Timestamp>,
    /// Project → role held now.
    pub projects: BTreeMap<String, ProjectRole>,
    /// Projects declared for the person that give nothing, and why.
    pub refused: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CutOff {
    pub reason: String,
    pub message: String,
}

impl OrgReport {
    pub fn grants(&self, into: &mut Grants) {
        for p in self.people.iter().filter(|p| p.cut_off.is_none()) {
            into.insert(
                &self.name,
                &p.email,
                Scope::Organization,
                Role::from(p.role),
            );
            for (project, role) in &p.projects {
                into.insert(
                    &self.name,
                    &p.email,
                    Scope::Project(project.clone()),
                    Role::from(*role),
                );
            }
        }
    }
}

impl Report {
    pub fn grants(&self) -> Grants {
        let mut g = Grants::default();
        for o in &self.organizations {
            o.grants(&mut g);
        }
        g
    }

    pub fn person(&self, org: &str, email: &str) -> Option<&PersonReport> {
        self.organizations
            .iter()
            .find(|o| o.name == org)?
            .people
            .iter()
            .find(|p| p.email == email)
    }
}

/// Plans every organization of `tree` at `now`. Objects read from a cluster carry their status:
/// who enrolled in MFA (`status.mfa.state`) and since when MFA is required count as the
/// controller counts them.
pub fn report(tree: &Tree, settings: &Settings, now: Timestamp) -> Report {
    let declared_namespaces: BTreeMap<String, k8s_openapi::api::core::v1::Namespace> = tree
        .namespaces
        .iter()
        .map(|n| (n.object.name_any(), n.object.clone()))
        .collect();
    let mut organizations = Vec::new();
    for (home, (orgs, projects, memberships)) in by_home(tree) {
        let (mut org, stray): (Vec<_>, Vec<_>) =
            orgs.into_iter().partition(|o| o.name_any() == home);
        let credentials: BTreeMap<String, Record> = memberships
            .iter()
            .filter(|m| {
                m.status
                    .as_ref()
                    .and_then(|s| s.mfa.as_ref())
                    .is_some_and(|s| s.state == MfaState::Enrolled)
            })
            .map(|m| {
                (
                    m.spec.email.clone(),
                    Record {
                        email: m.spec.email.clone(),
                        membership_uid: m.metadata.uid.clone(),
                        totp_sealed: Some(String::new()),
                        ..Default::default()
                    },
                )
            })
            .collect();
        // Without their statuses, every status is planned (and so can be read back).
        let memberships: Vec<Membership> = memberships
            .into_iter()
            .map(|mut m| {
                m.status = None;
                m
            })
            .collect();
        let projects: Vec<_> = projects
            .into_iter()
            .map(|mut p| {
                p.status = None;
                p
            })
            .collect();
        let namespaces = projects
            .iter()
            .map(|p| plan::project_namespace(&home, p))
            .filter_map(|n| declared_namespaces.get(&n).map(|o| (n, o.clone())))
            .collect();
        let home_is_project_of = tree
            .projects
            .iter()
            .find(|p| {
                p.object.namespace().as_deref() != Some(home.as_str())
                    && plan::project_namespace(&p.object.namespace().unwrap_or_default(), &p.object)
                        == home
            })
            .and_then(|p| p.object.namespace());
        let world = World {
            namespace: home.clone(),
            home_terminating: false,
            org: if home_is_project_of.is_some() {
                None
            } else {
                org.pop()
            },
            stray_orgs: stray,
            home_is_project_of,
            projects,
            memberships: memberships.into_iter().map(std::sync::Arc::new).collect(),
            namespaces,
            rolebindings: vec![],
            credentials,
            now,
        };
        organizations.push(org_report(&world, settings));
    }
    Report { now, organizations }
}

fn org_report(w: &World, settings: &Settings) -> OrgReport {
    let planned = plan::plan(w, settings);
    let org = w.org.as_ref();
    let mut problems: Vec<String> = planned
        .stray_org_status
        .iter()
        .flat_map(|(name, s)| {
            s.conditions
                .iter()
                .filter(|c| c.status == "False")
                .map(move |c| format!("Organization {name}: {}", c.message))
        })
        .collect();
    if org.is_none() && w.stray_orgs.is_empty() {
        problems.push(format!(
            "no Organization {0} in namespace {0}: its Projects and Memberships give no access",
            w.namespace
        ));
    }
    let projects: Vec<ProjectReport> = planned
        .project_status
        .iter()
        .map(|(name, s)| {
            let ready = crate::condition::find(&s.conditions, crate::condition::READY);
            ProjectReport {
                name: name.clone(),
                namespace: s.namespace.clone().unwrap_or_default(),
                unavailable: ready
                    .filter(|c| c.status == "False")
                    .map(|c| c.message.clone()),
            }
        })
        .collect();
    for p in projects.iter().filter(|p| p.unavailable.is_some()) {
        problems.push(format!(
            "Project {}: {}",
            p.name,
            p.unavailable.clone().unwrap_or_default()
        ));
    }
    let by_name: std::collections::HashMap<&str, &Membership> = w
        .memberships
        .iter()
        .filter_map(|m| Some((m.metadata.name.as_deref()?, m.as_ref())))
        .collect();
    let mut people: Vec<PersonReport> = planned
        .membership_status
        .iter()
        .filter_map(|(name, s)| {
            let m = by_name.get(name.as_str()).copied()?;
            let entitled = crate::condition::find(&s.conditions, "Entitled");
            let cut_off = entitled.filter(|c| c.status == "False").map(|c| CutOff {
                reason: c.reason.clone(),
                message: c.message.clone(),
            });
            Some(PersonReport {
                email: m.spec.email.clone(),
                membership: Some(name.clone()),
                role: s.effective_role.unwrap_or(EffectiveRole::Member),
                phase: s.phase.unwrap_or(Phase::Invited),
                cut_off,
                mfa: s.mfa.as_ref().map_or(MfaState::NotRequired, |x| x.state),
                mfa_deadline: s
                    .mfa
                    .as_ref()
                    .and_then(|x| x.deadline.as_ref())
                    .map(|t| t.0),
                projects: s
                    .access
                    .iter()
                    .filter_map(|e| Some((e.project.clone(), e.role?)))
                    .collect(),
                refused: s
                    .access
                    .iter()
                    .filter_map(|e| Some((e.project.clone(), e.reason.clone()?)))
                    .collect(),
            })
        })
        .collect();
    // An owner without a Membership holds the organization all the same (roster creates one).
    if let Some(o) = org {
        let has = |e: &str| w.memberships.iter().any(|m| m.spec.email == e);
        if !has(&o.spec.owner) {
            let available: BTreeSet<&str> = projects
                .iter()
                .filter(|p| p.unavailable.is_none())
                .map(|p| p.name.as_str())
                .collect();
            people.push(PersonReport {
                email: o.spec.owner.clone(),
                membership: None,
                role: EffectiveRole::Owner,
                phase: Phase::Invited,
                cut_off: None,
                mfa: if o.spec.security.mfa.required {
                    MfaState::Pending
                } else {
                    MfaState::NotRequired
                },
                mfa_deadline: None,
                projects: available
                    .into_iter()
                    .map(|p| (p.to_string(), ProjectRole::Admin))
                    .collect(),
                refused: BTreeMap::new(),
            });
        }
    }
    people.sort_by(|a, b| (role_rank(a.role), &a.email).cmp(&(role_rank(b.role), &b.email)));
    OrgReport {
        name: w.namespace.clone(),
        owner: org.map(|o| o.spec.owner.clone()),
        mfa_required: org.is_some_and(|o| o.spec.security.mfa.required),
        admins_see_all_projects: org.is_some_and(|o| o.spec.admins_see_all_projects),
        projects,
        people,
        problems,
    }
}

fn role_rank(r: EffectiveRole) -> u8 {
    match r {
        EffectiveRole::Owner => 0,
        EffectiveRole::Admin => 1,
        EffectiveRole::Member => 2,
    }
}
