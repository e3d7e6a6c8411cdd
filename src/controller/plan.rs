//! `plan()`: from what was observed in one organization's namespace to the writes that converge
//! it. Pure: no I/O, the clock is an input, and an unchanged world plans no writes at all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use crate::access::{self, Evaluation, Inputs, ProjectView};
use crate::api::rbac;
use crate::api::{
    EffectiveRole, Membership, MembershipSpec, MembershipStatus, NamespaceDeletion, OrgRole,
    Organization, OrganizationStatus, Project, ProjectRole, ProjectStatus,
};
use crate::condition;
use crate::subjects::Subjects;

pub use super::credentials::IdentityAction;
use super::labels::{self, FINALIZER};
use crate::identity::store::Record;

/// How roster maps roles to Kubernetes RBAC.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The user names that stand for a member in RoleBindings.
    pub subjects: Subjects,
    /// ClusterRole bound in a project namespace for each project role.
    pub project_cluster_roles: BTreeMap<ProjectRole, String>,
    /// Identity runs: invitations are issued and request annotations acted on.
    pub identity: bool,
    /// Keys the mark a held change is announced under (`guard::Held::mark`).
    pub hold_key: super::guard::HoldKey,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            subjects: Subjects::default(),
            project_cluster_roles: [
                (ProjectRole::Admin, "admin".to_string()),
                (ProjectRole::Developer, "edit".to_string()),
                (ProjectRole::Viewer, "view".to_string()),
            ]
            .into(),
            identity: false,
            hold_key: super::guard::HoldKey::default(),
        }
    }
}

/// ClusterRoles (generated from `api::rbac`, shipped in the chart and config/) bound in the
/// organization's namespace.
pub const ORG_BINDINGS: [(&str, &str, EffectiveRole); 3] = [
    (
        "roster-owner",
        rbac::cluster_role(EffectiveRole::Owner),
        EffectiveRole::Owner,
    ),
    (
        "roster-admins",
        rbac::cluster_role(EffectiveRole::Admin),
        EffectiveRole::Admin,
    ),
    (
        "roster-members",
        rbac::cluster_role(EffectiveRole::Member),
        EffectiveRole::Member,
    ),
];

/// What was observed in (and about) one organization's namespace.
#[derive(Clone, Debug)]
pub struct World {
    pub namespace: String,
    /// The home namespace is being deleted: only clean-up can be planned (nothing can be
    /// created in a terminating namespace), so the organization counts as deleted.
    pub home_terminating: bool,
    pub org: Option<Organization>,
    /// Organizations in this namespace not named after it (one organization per namespace),
    /// or all of them when the namespace is another organization's project namespace.
    pub stray_orgs: Vec<Organization>,
    /// The organization whose project namespace this is, when it is one (its labels say so):
    /// no organization can live here.
    pub home_is_project_of: Option<String>,
    pub projects: Vec<Project>,
    /// The cache's own objects (shared, not copied: a reconcile of a large organization would
    /// otherwise copy every Membership it holds).
    pub memberships: Vec<Arc<Membership>>,
    /// Observed namespaces that the projects name (absent ones are simply missing).
    pub namespaces: BTreeMap<String, Namespace>,
    /// Observed RoleBindings labelled as roster's for this organization.
    pub rolebindings: Vec<RoleBinding>,
    /// Members' credential records, by e-mail (empty when identity does not run).
    pub credentials: BTreeMap<String, Record>,
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Organization(String),
    Project(String),
    Membership(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedEvent {
    pub target: Target,
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub add_finalizer: Vec<Target>,
    /// Project namespaces to create. Created, never applied: a namespace that exists by the
    /// time the write arrives (made by someone else meanwhile) is not taken over.
    pub create_namespaces: Vec<Namespace>,
    /// Namespaces handed over (`roster.dev/adopt`): roster's labels are applied to them.
    pub adopt_namespaces: Vec<Namespace>,
    pub rolebindings: Vec<RoleBinding>,
    pub delete_rolebindings: Vec<(String, String)>,
    /// Namespaces roster created whose Project (namespaceDeletion: Delete) is gone.
    pub delete_namespaces: Vec<String>,
    /// Handed-over namespaces whose Project is gone: roster's labels are taken off again.
    pub release_namespaces: Vec<String>,
    pub create_memberships: Vec<Membership>,
    /// Bootstrap placeholders superseded by a declared Membership of the same e-mail.
    pub delete_memberships: Vec<String>,
    pub org_status: Option<OrganizationStatus>,
    pub stray_org_status: Vec<(String, OrganizationStatus)>,
    pub project_status: Vec<(String, ProjectStatus)>,
    pub membership_status: Vec<(String, MembershipStatus)>,
    pub remove_finalizer: Vec<Target>,
    pub events: Vec<PlannedEvent>,
    /// Invitations, unlocks, MFA resets, forgotten credentials.
    pub identity: Vec<IdentityAction>,
    pub requeue_at: Option<Timestamp>,
}

impl Plan {
    /// Number of API writes this plan makes (events aside).
    pub fn writes(&self) -> usize {
        self.add_finalizer.len()
            + self.create_namespaces.len()
            + self.adopt_namespaces.len()
            + self.rolebindings.len()
            + self.delete_rolebindings.len()
            + self.delete_namespaces.len()
            + self.release_namespaces.len()
            + self.create_memberships.len()
            + self.delete_memberships.len()
            + usize::from(self.org_status.is_some())
            + self.stray_org_status.len()
            + self.project_status.len()
            + self.membership_status.len()
            + self.remove_finalizer.len()
            + self.identity.len()
    }
}

/// The project's workload namespace: `spec.namespace`, else `<organization>-<project>`.
pub fn project_namespace(org_ns: &str, p: &Project) -> String {
    p.spec
        .namespace
        .clone()
        .unwrap_or_else(|| format!("{org_ns}-{}", p.name_any()))
}

pub fn plan(w: &World, s: &Settings) -> Plan {
    let mut plan = Plan::default();
    let org = w
        .org
        .as_ref()
        .filter(|o| o.metadata.deletion_timestamp.is_none() && !w.home_terminating);
    let ns = w.namespace.as_str();

    // Projects and their namespaces.
    let mut views = Vec::new();
    let mut namespace_reasons = BTreeMap::new();
    for p in &w.projects {
        let name = p.name_any();
        let target_ns = project_namespace(ns, p);
        let terminating = p.metadata.deletion_timestamp.is_some();
        let observed = w.namespaces.get(&target_ns);
        let ours =
            observed.is_some_and(|n| labels::owned_by(n.metadata.labels.as_ref(), ns, &name));
        // Both sides must want it: the namespace's owner (the annotation) and a platform admin
        // (the Project's flag, which only trusted identities may set).
        let adoptable = p.spec.adopt_existing_namespace
            && observed.is_some_and(|n| labels::adoption_requested(n, ns, &name));
        let unavailable = if terminating {
            Some(format!("project {name} is being deleted"))
        } else if org.is_none() {
            Some("no Organization in this namespace".to_string())
        } else if target_ns.len() > 63 {
            Some(format!(
                "namespace name {target_ns} is longer than 63 characters; set spec.namespace"
            ))
        } else if observed.is_some_and(|n| n.metadata.deletion_timestamp.is_some()) {
            Some(format!("namespace {target_ns} is terminating"))
        } else if observed.is_some() && !ours && !adoptable {
            Some(format!(
                "namespace {target_ns} exists and was not created by roster; to hand it over, annotate it {}={ns}/{name} and have a platform admin set spec.adoptExistingNamespace: true",
                labels::ADOPT
            ))
        } else {
            None
        };
        if unavailable.is_none() {
            match observed {
                None => plan.create_namespaces.push(labels::namespace(
                    &target_ns,
                    ns,
                    &name,
                    labels::ORIGIN_CREATED,
                )),
                Some(_) if !ours => plan.adopt_namespaces.push(labels::namespace(
                    &target_ns,
                    ns,
                    &name,
                    labels::ORIGIN_ADOPTED,
                )),
                Some(_) => {}
            }
        }
        if terminating && ours {
            let created = observed.is_some_and(labels::created_by_roster);
            if !created {
                plan.release_namespaces.push(target_ns.clone());
            } else if p.spec.namespace_deletion == NamespaceDeletion::Delete {
                plan.delete_namespaces.push(target_ns.clone());
            }
        }
        namespace_reasons.insert(name.clone(), unavailable.clone());
        views.push(ProjectView {
            name,
            namespace: target_ns,
            unavailable,
        });
    }

    let prev_org_conditions: &[Condition] = w
        .org
        .as_ref()
        .and_then(|o| o.status.as_ref())
        .map(|s| s.conditions.as_slice())
        .unwrap_or(&[]);
    let mfa_required = org.is_some_and(|o| o.spec.security.mfa.required);
    let mfa_required_since = if mfa_required {
        Some(condition::true_since(prev_org_conditions, "MfaRequired").unwrap_or(w.now))
    } else {
        None
    };
    // A record counts only for the Membership it was made for (not a deleted namesake's).
    let enrolled: BTreeSet<String> = w
        .memberships
        .iter()
        .filter(|m| {
            super::credentials::record_of(w, m)
                .is_some_and(crate::identity::store::Record::enrolled)
        })
        .map(|m| m.spec.email.clone())
        .collect();
    // Any record of the address counts here, a deleted namesake's or a tombstone: when the
    // address first joined is what a grace period runs from (access::mfa_grace_end).
    let first_joined: BTreeMap<String, Timestamp> = if mfa_required {
        w.credentials
            .iter()
            .filter_map(|(email, r)| {
                let t = Timestamp::from_second(i64::try_from(r.grace_from()?).ok()?).ok()?;
                Some((email.clone(), t))
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let eval = access::evaluate(&Inputs {
        org,
        mfa_required_since,
        projects: &views,
        memberships: &w.memberships,
        enrolled: &enrolled,
        first_joined: &first_joined,
        now: w.now,
    });
    plan.requeue_at = eval.next_change;

    // RoleBindings: desired set, then only the differences.
    let mut desired: Vec<RoleBinding> = Vec::new();
    if let Some(org) = org {
        for (rb_name, cluster_role, role) in ORG_BINDINGS {
            let mut users: BTreeSet<&str> = eval
                .members
                .iter()
                .filter(|m| m.entitled() && m.effective_role == role)
                .map(|m| m.email.as_str())
                .collect();
            if role == EffectiveRole::Owner
                && let Some(owner) = &eval.owner_without_membership
            {
                users.insert(owner);
            }
            desired.push(binding(
                ns,
                ns,
                rb_name,
                role_ref("ClusterRole", cluster_role),
                &users,
                s,
                None,
                Some(owner_ref(org)),
            ));
        }
        for view in views.iter().filter(|v| v.unavailable.is_none()) {
            let mut by_role: BTreeMap<ProjectRole, BTreeSet<&str>> = BTreeMap::new();
            for m in &eval.members {
                if let Some(role) = m.grants.get(&view.name) {
                    by_role.entry(*role).or_default().insert(&m.email);
                }
            }
            if let Some(owner) = &eval.owner_without_membership {
                by_role.entry(ProjectRole::Admin).or_default().insert(owner);
            }
            for role in ProjectRole::ALL {
                let users = by_role.remove(&role).unwrap_or_default();
                let cluster_role = s
                    .project_cluster_roles
                    .get(&role)
                    .map(String::as_str)
                    .unwrap_or("view");
                let rb_name = format!("roster-{}", role.as_str().to_lowercase());
                desired.push(binding(
                    ns,
                    &view.namespace,
                    &rb_name,
                    role_ref("ClusterRole", cluster_role),
                    &users,
                    s,
                    Some(&view.name),
                    None,
                ));
            }
        }
    }
    if let Some(org) = org
        && s.identity
    {
        desired.extend(super::credentials::invitation_readers(w, org, &eval, s));
    }
    if let Some(org) = org {
        use super::guard;
        let observed = guard::grants_of(&w.rolebindings, ns, &guard::project_namespaces(w), s);
        let mut before = guard::intended(&observed, &guard::recorded(w));
        // The owner holds the organization with or without a Membership (roster makes one):
        // their bindings are intended whatever the statuses say.
        before.0.extend(
            observed
                .0
                .iter()
                .filter(|((p, _), _)| p.email == org.spec.owner)
                .map(|(k, r)| (k.clone(), *r)),
        );
        // Cut off at once, held change or not: disabled, expired, MFA-overdue, gone, and a
        // former owner's rights (while a change is held that leaves them nothing until it is
        // applied: the safe side).
        let mut cut = guard::cut_off(&eval);
        cut.extend(guard::gone(w, org, &observed));
        cut.extend(
            observed
                .0
                .keys()
                .map(|(p, _)| p.email.clone())
                .filter(|e| guard::former_owner(&observed, org, e)),
        );
        if let Some(held) = guard::check(w, org, &before, &observed, &desired, &cut, s) {
            // A Project's namespace goes (deleted or handed back) with the Project's grants,
            // not before: deleted, it took every binding and workload in it while the change
            // was held, and the next reconcile no longer counted those grants (red team 27).
            plan.delete_namespaces.clear();
            plan.release_namespaces.clear();
            diff_rolebindings(w, guard::hold(w, &before, &cut, &desired, s), &mut plan);
            // Only access waits: requests (unlock, MFA reset), invitations and the clocks of
            // the organization's policy go on.
            if s.identity {
                super::credentials::plan_identity(w, Some(org), &eval, &mut plan);
            }
            super::status::held(w, org, &held, mfa_required, s, &mut plan);
            return plan;
        }
    }
    diff_rolebindings(w, desired, &mut plan);

    bootstrap_owner(w, org, &eval, &mut plan);
    if s.identity {
        super::credentials::plan_identity(w, org, &eval, &mut plan);
    }
    finalizers(w, org, &mut plan);
    super::status::statuses(
        w,
        org,
        &eval,
        &views,
        &namespace_reasons,
        mfa_required,
        &mut plan,
    );
    plan
}

pub(super) fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.to_string(),
    }
}

/// A RoleBinding of roster's for organization `org_ns`: the members with `users` e-mails,
/// under every user name the settings bind for them.
#[allow(clippy::too_many_arguments)]
pub(super) fn binding(
    org_ns: &str,
    ns: &str,
    name: &str,
    role_ref: RoleRef,
    users: &BTreeSet<&str>,
    s: &Settings,
    project: Option<&str>,
    owner: Option<OwnerReference>,
) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            labels: Some(labels::managed(org_ns, project)),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        role_ref,
        subjects: Some(
            users
                .iter()
                .flat_map(|email| s.subjects.names(org_ns, email))
                .map(|name| Subject {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "User".into(),
                    name,
                    namespace: None,
                })
                .collect(),
        ),
    }
}

fn owner_ref(org: &Organization) -> OwnerReference {
    OwnerReference {
        api_version: Organization::api_version(&()).into_owned(),
        kind: Organization::kind(&()).into_owned(),
        name: org.name_any(),
        uid: org.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// Keeps only the RoleBindings that differ from what is observed, and deletes roster's
/// bindings of this organization that are no longer desired.
fn diff_rolebindings(w: &World, desired: Vec<RoleBinding>, plan: &mut Plan) {
    let key = |rb: &RoleBinding| {
        (
            rb.metadata.namespace.clone().unwrap_or_default(),
            rb.name_any(),
        )
    };
    let observed: BTreeMap<_, _> = w.rolebindings.iter().map(|rb| (key(rb), rb)).collect();
    let wanted: BTreeSet<_> = desired.iter().map(key).collect();
    for rb in desired {
        match observed.get(&key(&rb)) {
            Some(have) if same_binding(have, &rb) => {}
            // roleRef is immutable: a binding to another role is replaced, not patched.
            Some(have) if have.role_ref != rb.role_ref => {
                plan.delete_rolebindings.push(key(&rb));
                plan.rolebindings.push(rb);
            }
            _ => plan.rolebindings.push(rb),
        }
    }
    for k in observed.keys() {
        if !wanted.contains(k) {
            plan.delete_rolebindings.push(k.clone());
        }
    }
}

fn same_binding(have: &RoleBinding, want: &RoleBinding) -> bool {
    let labels_ok = want
        .metadata
        .labels
        .iter()
        .flatten()
        .all(|(k, v)| have.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    let owners_ok = want.metadata.owner_references.iter().flatten().all(|o| {
        have.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|h| h.uid == o.uid && h.controller == o.controller)
    });
    // Compared in place: a binding of a large organization lists thousands of subjects.
    fn subjects(rb: &RoleBinding) -> &[k8s_openapi::api::rbac::v1::Subject] {
        rb.subjects.as_deref().unwrap_or_default()
    }
    labels_ok && owners_ok && have.role_ref == want.role_ref && subjects(have) == subjects(want)
}

/// The owner is invited like everyone else: without a Membership naming them, create one.
fn bootstrap_owner(w: &World, org: Option<&Organization>, eval: &Evaluation, plan: &mut Plan) {
    plan.delete_memberships = access::superseded_bootstraps(&w.memberships);
    let (Some(org), Some(email)) = (org, &eval.owner_without_membership) else {
        return;
    };
    let taken: BTreeSet<String> = w.memberships.iter().map(|m| m.name_any()).collect();
    let name = labels::membership_name_for(email, &taken);
    let mut m = Membership::new(
        &name,
        MembershipSpec {
            email: email.clone(),
            display_name: None,
            role: Some(OrgRole::Admin),
            projects: vec![],
            disabled: false,
            mfa: None,
            expires_at: None,
        },
    );
    m.metadata.namespace = Some(w.namespace.clone());
    m.metadata.labels = Some([(labels::BOOTSTRAP.to_string(), "owner".to_string())].into());
    plan.create_memberships.push(m);
    plan.events.push(PlannedEvent {
        target: Target::Organization(org.name_any()),
        warning: false,
        reason: "OwnerMembershipCreated",
        note: format!("created Membership {name} for owner {email}"),
    });
}

fn finalizers(w: &World, org: Option<&Organization>, plan: &mut Plan) {
    let has = |meta: &ObjectMeta| meta.finalizers.iter().flatten().any(|f| f == FINALIZER);
    if let Some(o) = &w.org {
        let t = Target::Organization(o.name_any());
        match (org.is_some(), has(&o.metadata)) {
            (true, false) => plan.add_finalizer.push(t),
            (false, true) => plan.remove_finalizer.push(t),
            _ => {}
        }
    }
    for p in &w.projects {
        let t = Target::Project(p.name_any());
        match (p.metadata.deletion_timestamp.is_none(), has(&p.metadata)) {
            (true, false) => plan.add_finalizer.push(t),
            (false, true) => plan.remove_finalizer.push(t),
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
