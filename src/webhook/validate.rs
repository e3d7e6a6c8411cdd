//! `validate()`: the organization rules that span objects or depend on who is asking (DESIGN.md
//! §3 and §5), as a pure function of the request and an in-memory view of the organization.
//! Everything that fits the CRD schema is checked there instead; `roster plan` reuses this.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::access::{cut_off, is_bootstrap};
use crate::api::contract::{ADOPT_ANNOTATION, BOOTSTRAP_LABEL, Request as Ask};
use crate::api::{Membership, MfaExemption, OrgRole, Organization, Project, ProjectRole};
use crate::controller::plan::project_namespace;
use crate::subjects::Subjects;

/// What the webhook reads: an index of the cluster's roster objects (the controller's caches).
pub trait Index {
    fn organization(&self, namespace: &str) -> Option<Arc<Organization>>;
    /// Memberships of the organization in `namespace` with this e-mail (usually one). Every
    /// rule needs the members of one address only, so the index is never copied whole.
    fn memberships_with_email(&self, namespace: &str, email: &str) -> Vec<Arc<Membership>>;
    fn projects(&self, namespace: &str) -> Vec<Arc<Project>>;
    /// Projects of any organization whose workload namespace is `namespace`.
    fn projects_using_namespace(&self, namespace: &str) -> Vec<Arc<Project>>;
    /// Names of the organizations `O` for which `namespace` starts with `O-`.
    fn organizations_prefixing(&self, namespace: &str) -> Vec<String>;
    /// Whether the member of `email` in `namespace` has accepted their invitation, and through
    /// a link whom; None when identity does not run here (invitations are then someone else's
    /// business).
    fn invitation_accepted(&self, _namespace: &str, _email: &str) -> Option<Acceptance> {
        None
    }
}

/// Where the holder of an address stands with their invitation, as identity recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acceptance {
    /// Not accepted (or the record is a deleted namesake's, or unreadable).
    Pending,
    /// Accepted through a link these could read; `None` when that was not recorded.
    Accepted { link_readers: Option<Vec<String>> },
}

/// Who may do anything the organization rules allow (platform admins, the GitOps controller,
/// roster itself), and which user names stand for members.
#[derive(Clone, Debug)]
pub struct Policy {
    pub trusted_users: Vec<String>,
    pub trusted_groups: Vec<String>,
    /// The user names roster itself runs as: the only ones that may set or remove the labels
    /// roster trusts (`roster.dev/bootstrap`).
    pub controllers: Vec<String>,
    /// Which user names stand for a member (the same rule the controller binds by).
    pub subjects: Subjects,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            trusted_users: vec![],
            trusted_groups: vec!["system:masters".into()],
            controllers: vec![],
            subjects: Subjects::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum Object {
    Organization(Organization),
    Project(Project),
    Membership(Membership),
}

/// The admission operation (kube's type is not `Copy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    Connect,
}

impl From<&kube::core::admission::Operation> for Op {
    fn from(o: &kube::core::admission::Operation) -> Op {
        use kube::core::admission::Operation as O;
        match o {
            O::Create => Op::Create,
            O::Update => Op::Update,
            O::Delete => Op::Delete,
            O::Connect => Op::Connect,
        }
    }
}

pub struct Request<'a> {
    pub operation: Op,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a Object>,
    pub old_object: Option<&'a Object>,
    pub username: &'a str,
    pub groups: &'a [String],
    /// The time of the request (expiries are judged against it; `validate` reads no clock).
    pub now: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// `reason` is a stable PascalCase name of the rule (metrics, tests); `message` is the one
    /// sentence the user sees.
    Deny {
        reason: &'static str,
        message: String,
    },
}

fn deny(reason: &'static str, message: impl Into<String>) -> Decision {
    Decision::Deny {
        reason,
        message: message.into(),
    }
}

macro_rules! check {
    ($d:expr) => {
        if let d @ Decision::Deny { .. } = $d {
            return d;
        }
    };
}

pub fn validate(req: &Request<'_>, index: &impl Index, policy: &Policy) -> Decision {
    // The subject of the request: the new object, or the old one for DELETE.
    let Some(subject) = req.object.or(req.old_object) else {
        return deny(
            "MissingObject",
            "the admission request carries no object to check",
        );
    };
    check!(roster_labels(req, policy));
    check!(invariants(req, subject, index));
    if !trusted(req, policy) {
        check!(permitted(req, subject, index, policy));
    }
    // Checked last so that someone who may not move ownership at all is told that first.
    new_owner_accepted(req, index)
}

/// With identity running, a new owner must have accepted their invitation, whoever makes the
/// change: the accepted invitation is what proves the address belongs to the person. It proves
/// that only if nobody else could have opened the link: an Admin reads the links of the Members
/// they administer (every Admin those of a Member without projects), so an Admin could set such
/// a Member's password and wait for ownership to be handed to that address (red team 19b). The
/// owner handing ownership over may have read the link; nobody else may have.
///
/// An Organization created (again: a GitOps replace deletes and creates it) has nobody handing
/// over, so any reader refuses; an owner who has not accepted anything yet is how every new
/// organization starts, and one accepted before readers were kept is let through there (red
/// team 20).
fn new_owner_accepted(req: &Request<'_>, index: &impl Index) -> Decision {
    let ns = req.namespace;
    let Some(Object::Organization(o)) = req.object else {
        return Decision::Allow;
    };
    let handing_over = match req.old_object {
        Some(Object::Organization(old)) if old.spec.owner == o.spec.owner => {
            return Decision::Allow;
        }
        Some(Object::Organization(old)) => Some(old.spec.owner.as_str()),
        _ => None,
    };
    let Some(acceptance) = index.invitation_accepted(ns, &o.spec.owner) else {
        return Decision::Allow;
    };
    let created = handing_over.is_none();
    if created
        && !matches!(
            acceptance,
            Acceptance::Accepted {
                link_readers: Some(_)
            }
        )
    {
        return Decision::Allow;
    }
    let new = &o.spec.owner;
    let members = index.memberships_with_email(ns, new);
    let name = email_holder(&members, new)
        .map(|m| m.name_any())
        .unwrap_or_default();
    let again = format!(
        "for them to own it, delete Membership {name} and declare it again with role Admin (only the owner can read an Admin's link) or with invitations sent by e-mail (roster run --smtp-url), and let them accept the new link"
    );
    match acceptance {
        Acceptance::Pending => deny(
            "NewOwnerNotAccepted",
            format!(
                "{new} cannot become owner of organization {ns}: they have not accepted the invitation of Membership {name} yet"
            ),
        ),
        Acceptance::Accepted { link_readers: None } => deny(
            "NewOwnerLinkUnrecorded",
            format!(
                "{new} cannot become owner of organization {ns}: they accepted the invitation of Membership {name} before roster kept which link they used and who could read it, so someone else may have set their password; {again}"
            ),
        ),
        Acceptance::Accepted {
            link_readers: Some(readers),
        } => {
            let others: Vec<&str> = readers
                .iter()
                .map(String::as_str)
                .filter(|r| handing_over.is_none_or(|h| !r.eq_ignore_ascii_case(h)))
                .collect();
            if others.is_empty() {
                return Decision::Allow;
            }
            deny(
                "NewOwnerLinkReadByOthers",
                format!(
                    "{new} cannot become owner of organization {ns}: the invitation link of Membership {name} could be read by {}, any of whom may have set their password; {again}",
                    others.join(", ")
                ),
            )
        }
    }
}

fn trusted(req: &Request<'_>, policy: &Policy) -> bool {
    policy.trusted_users.iter().any(|u| u == req.username)
        || policy.controllers.iter().any(|u| u == req.username)
        || req.groups.iter().any(|g| policy.trusted_groups.contains(g))
}

/// The labels roster trusts on its objects are roster's alone to set or remove: a Membership
/// marked bootstrap is superseded — and deleted — by a declared one of the same e-mail, so the
/// mark in anyone else's hands would let them replace the owner's Membership.
fn roster_labels(req: &Request<'_>, policy: &Policy) -> Decision {
    if policy.controllers.iter().any(|u| u == req.username) {
        return Decision::Allow;
    }
    let label = |o: Option<&Object>| match o {
        Some(Object::Membership(m)) => m
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(BOOTSTRAP_LABEL))
            .cloned(),
        _ => None,
    };
    let (new, old) = (label(req.object), label(req.old_object));
    let changed = match req.operation {
        Op::Create => new.is_some(),
        Op::Update => new != old,
        _ => false,
    };
    if changed {
        return deny(
            "BootstrapLabelReserved",
            format!(
                "the label {BOOTSTRAP_LABEL} is set and removed by roster alone (it marks the Membership roster creates for an owner who has none); remove it from your change"
            ),
        );
    }
    Decision::Allow
}

/// Rules that hold whoever asks, trusted identities included.
fn invariants(req: &Request<'_>, subject: &Object, index: &impl Index) -> Decision {
    let ns = req.namespace;
    match (subject, req.operation) {
        (Object::Organization(o), Op::Create | Op::Update) => {
            // Organization homes and project namespaces share one name space
            // (`<org>` and `<org>-<project>`): a home that is another organization's project
            // namespace would put its invitation links where that project's Admins hold
            // `admin`.
            if let Some(p) = index
                .projects_using_namespace(ns)
                .into_iter()
                .find(|p| p.namespace().as_deref() != Some(ns))
            {
                return deny(
                    "OrganizationHomeTaken",
                    format!(
                        "namespace {ns} is the workload namespace of Project {}/{}: an organization cannot live there; choose another namespace",
                        p.namespace().unwrap_or_default(),
                        p.name_any()
                    ),
                );
            }
            if o.name_any() != ns {
                return deny(
                    "OrganizationNameNotNamespace",
                    format!(
                        "an Organization must be named after its namespace (one organization per namespace): name it {ns}, or create it in a namespace named {}",
                        o.name_any()
                    ),
                );
            }
            if let Some(Object::Organization(old)) = req.old_object
                && old.spec.owner != o.spec.owner
            {
                let members = index.memberships_with_email(ns, &o.spec.owner);
                let holder = email_holder(&members, &o.spec.owner);
                match holder {
                    None => {
                        return deny(
                            "NewOwnerNotMember",
                            format!(
                                "{} cannot become owner of organization {ns}: they have no Membership there; create one and let them accept the invitation first",
                                o.spec.owner
                            ),
                        );
                    }
                    Some(m) if cut_off(m, req.now).is_some() => {
                        return deny(
                            "NewOwnerNotActive",
                            format!(
                                "{} cannot become owner of organization {ns}: their Membership {} is disabled or expired; enable it first",
                                o.spec.owner,
                                m.name_any()
                            ),
                        );
                    }
                    // The owner's Membership never expires: an owner on a timer would leave
                    // the organization without one.
                    Some(m) if m.spec.expires_at.is_some() => {
                        return deny(
                            "NewOwnerExpires",
                            format!(
                                "{} cannot become owner of organization {ns}: their Membership {} has an expiry (spec.expiresAt); remove it first",
                                o.spec.owner,
                                m.name_any()
                            ),
                        );
                    }
                    Some(_) => {}
                }
            }
            Decision::Allow
        }
        (Object::Membership(m), op) => {
            let Some(org) = index.organization(ns) else {
                return Decision::Allow;
            };
            let owner = org.spec.owner.as_str();
            let members = index.memberships_with_email(ns, &m.spec.email);
            let holds_owner_email = m.spec.email == owner
                && email_holder(&members, owner).is_some_and(|h| h.name_any() == m.name_any());
            match op {
                Op::Delete if holds_owner_email => deny(
                    "OwnerMembershipProtected",
                    format!(
                        "Membership {} belongs to {owner}, the owner of organization {ns}; transfer ownership first (kubectl roster transfer-ownership), then delete it",
                        m.name_any()
                    ),
                ),
                Op::Create | Op::Update => {
                    if m.spec.email == owner
                        && will_hold(&members, m)
                        && (m.spec.disabled || m.spec.expires_at.is_some())
                    {
                        return deny(
                            "OwnerMembershipProtected",
                            format!(
                                "{owner} is the owner of organization {ns}: their Membership cannot be disabled or given an expiry; transfer ownership first (kubectl roster transfer-ownership)"
                            ),
                        );
                    }
                    if op == Op::Create
                        && !is_bootstrap(m)
                        && let Some(other) = members.iter().find(|o| {
                            o.spec.email == m.spec.email
                                && !is_bootstrap(o)
                                && o.name_any() != m.name_any()
                        })
                    {
                        return deny(
                            "EmailNotUnique",
                            format!(
                                "{} is already a member of organization {ns} (Membership {}); change that Membership instead of creating a second one",
                                m.spec.email,
                                other.name_any()
                            ),
                        );
                    }
                    Decision::Allow
                }
                _ => Decision::Allow,
            }
        }
        (Object::Project(p), Op::Create) => {
            let target = project_namespace(ns, p);
            if target.len() > 63 {
                return deny(
                    "ProjectNamespaceInvalid",
                    format!(
                        "the namespace of Project {} would be {target}, longer than the 63 characters a namespace name may have; choose a shorter name or set spec.namespace",
                        p.name_any()
                    ),
                );
            }
            if let Some(other) = index
                .projects_using_namespace(&target)
                .into_iter()
                .find(|o| !(o.namespace().as_deref() == Some(ns) && o.name_any() == p.name_any()))
            {
                return deny(
                    "ProjectNamespaceTaken",
                    format!(
                        "namespace {target} already belongs to Project {}/{}; choose another spec.namespace",
                        other.namespace().unwrap_or_default(),
                        other.name_any()
                    ),
                );
            }
            if index.organization(&target).is_some() {
                return deny(
                    "ProjectNamespaceTaken",
                    format!(
                        "namespace {target} is the home of organization {target}; choose another spec.namespace"
                    ),
                );
            }
            // `<other>-…` where organization `<other>` is more specific than this one
            // (acme-corp-web is acme-corp's, not acme's): another organization's name space.
            if let Some(other) = index
                .organizations_prefixing(&target)
                .into_iter()
                .find(|o| o != ns && o.len() > ns.len())
            {
                return deny(
                    "ProjectNamespaceTaken",
                    format!(
                        "namespace {target} lies in organization {other}'s name space ({other}-…); choose another name or spec.namespace"
                    ),
                );
            }
            Decision::Allow
        }
        _ => Decision::Allow,
    }
}

/// The Membership that holds `email` in an organization (declared before bootstrap, oldest first).
pub(super) fn email_holder<'a>(
    members: &'a [Arc<Membership>],
    email: &str,
) -> Option<&'a Membership> {
    members
        .iter()
        .filter(|m| m.spec.email == email && m.metadata.deletion_timestamp.is_none())
        .min_by_key(|m| {
            (
                is_bootstrap(m),
                m.metadata.creation_timestamp.as_ref().map(|t| t.0),
                m.name_any(),
            )
        })
        .map(|m| m.as_ref())
}

/// True when `m`, once stored, holds its e-mail: no other live Membership of the address ranks
/// before it (a declared one before a bootstrap one, then the oldest). A Membership being
/// created that would supersede a bootstrap one counts as the holder already.
fn will_hold(members: &[Arc<Membership>], m: &Membership) -> bool {
    let rank = |x: &Membership| {
        (
            is_bootstrap(x),
            x.metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::MAX, |t| t.0),
            x.name_any(),
        )
    };
    members
        .iter()
        .filter(|o| {
            o.spec.email == m.spec.email
                && o.name_any() != m.name_any()
                && o.metadata.deletion_timestamp.is_none()
        })
        .all(|o| rank(o) > rank(m))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Owner,
    Admin,
    Member,
}

fn request_annotation(m: &Membership, r: Ask) -> Option<&String> {
    m.metadata.annotations.as_ref()?.get(r.annotation())
}

/// The permission matrix (DESIGN.md §3) for requests by members of the organization.
fn permitted(req: &Request<'_>, subject: &Object, index: &impl Index, policy: &Policy) -> Decision {
    let ns = req.namespace;
    let Some(org) = index.organization(ns) else {
        return deny(
            "NotAMember",
            format!(
                "{} may not manage roster objects in {ns}: there is no organization there and they are not a trusted identity",
                req.username
            ),
        );
    };
    let Some(email) = policy.subjects.member_email(ns, req.username) else {
        return not_member(req.username, ns);
    };
    let members = index.memberships_with_email(ns, email);
    let me = email_holder(&members, email).filter(|m| cut_off(*m, req.now).is_none());
    let role = if email == org.spec.owner {
        Role::Owner
    } else {
        match me.map(|m| m.spec.role.unwrap_or(org.spec.default_role)) {
            Some(OrgRole::Admin) => Role::Admin,
            Some(OrgRole::Member) => Role::Member,
            None => return not_member(req.username, ns),
        }
    };
    if role == Role::Member {
        return deny(
            "MemberReadOnly",
            format!(
                "{email} is a Member of organization {ns}: Members cannot change roster objects; ask an Admin or the owner"
            ),
        );
    }
    check!(namespace_within_organization(req, subject));
    if role == Role::Owner {
        return owner_rules(req, subject, ns);
    }
    // Admin.
    let my_projects: Vec<String> = if org.spec.admins_see_all_projects {
        index.projects(ns).iter().map(|p| p.name_any()).collect()
    } else {
        me.map(|m| {
            m.spec
                .projects
                .iter()
                .filter(|g| g.role == ProjectRole::Admin)
                .map(|g| g.name.clone())
                .collect()
        })
        .unwrap_or_default()
    };
    // An address that has a Membership — roster's bootstrap one too (a former owner's, after
    // a transfer) — is not an Admin's to declare again: the new one would supersede it.
    if let (Object::Membership(m), Op::Create) = (subject, req.operation)
        && m.spec.email != org.spec.owner
        && let Some(other) = index
            .memberships_with_email(ns, &m.spec.email)
            .into_iter()
            .find(|o| o.name_any() != m.name_any())
    {
        return deny(
            "EmailNotUnique",
            format!(
                "{} is already a member of organization {ns} (Membership {}); change that Membership instead of creating a second one",
                m.spec.email,
                other.name_any()
            ),
        );
    }
    admin_rules(req, subject, &org, email, &my_projects)
}

/// A Project's workload namespace carries the organization's prefix; any other (an existing
/// namespace handed over) is a platform admin's decision, never an organization's — and so is
/// taking over a namespace roster did not create.
fn namespace_within_organization(req: &Request<'_>, subject: &Object) -> Decision {
    let ns = req.namespace;
    let adopting = |o: Option<&Object>| matches!(o, Some(Object::Project(p)) if p.spec.adopt_existing_namespace);
    if adopting(req.object) && !adopting(req.old_object) {
        return deny(
            "AdoptionIsThePlatforms",
            "only a platform admin (a trusted identity) may set spec.adoptExistingNamespace: taking over an existing namespace is their decision",
        );
    }
    if let (Object::Project(p), Op::Create) = (subject, req.operation)
        && let Some(target) = &p.spec.namespace
        && !target.starts_with(&format!("{ns}-"))
    {
        return deny(
            "ProjectNamespaceOutsideOrganization",
            format!(
                "a Project of organization {ns} lives in a namespace named {ns}-…; {target} can only be handed over by a platform admin (a trusted identity creates the Project, and the namespace is annotated {ADOPT_ANNOTATION}={ns}/{})",
                p.name_any()
            ),
        );
    }
    Decision::Allow
}

fn not_member(user: &str, ns: &str) -> Decision {
    deny(
        "NotAMember",
        format!(
            "{user} is not a member of organization {ns}; only its members and trusted identities may change it"
        ),
    )
}

fn owner_rules(req: &Request<'_>, subject: &Object, ns: &str) -> Decision {
    if let (Object::Organization(new), Some(Object::Organization(old))) = (subject, req.old_object)
        && new.spec.owner != old.spec.owner
    {
        return deny(
            "TransferNeedsConfirmation",
            format!(
                "organization {ns} already has owner {}; ownership moves with \"kubectl roster transfer-ownership\" (which asks for the owner's password), or by a trusted identity through GitOps",
                old.spec.owner
            ),
        );
    }
    if matches!(subject, Object::Organization(_)) && req.operation == Op::Create {
        return deny(
            "OrganizationCreateTrusted",
            "organizations are created by trusted identities (platform admins or the GitOps controller)",
        );
    }
    Decision::Allow
}

fn admin_rules(
    req: &Request<'_>,
    subject: &Object,
    org: &Organization,
    me: &str,
    my_projects: &[String],
) -> Decision {
    let ns = req.namespace;
    let in_mine = |p: &str| my_projects.iter().any(|m| m == p);
    match subject {
        Object::Organization(_) => deny(
            "OwnerOnly",
            format!(
                "only the owner of organization {ns} ({}) may change its settings or delete it",
                org.spec.owner
            ),
        ),
        Object::Project(p) => match req.operation {
            Op::Create => Decision::Allow,
            _ if in_mine(&p.name_any()) => Decision::Allow,
            _ => deny(
                "NotProjectAdmin",
                format!(
                    "{me} is not Admin of project {}: only its project Admins and the owner may change or delete it",
                    p.name_any()
                ),
            ),
        },
        Object::Membership(m) => {
            let old = match req.old_object {
                Some(Object::Membership(old)) => Some(old),
                _ => None,
            };
            // The owner's Membership (any Membership of the owner's address) is the owner's
            // and the platform's to write: no Admin disables, demotes, deletes, duplicates or
            // supersedes it.
            if m.spec.email == org.spec.owner || old.is_some_and(|o| o.spec.email == org.spec.owner)
            {
                return deny(
                    "OwnerMembershipOwnerOnly",
                    format!(
                        "{} is the owner of organization {ns}: only they (or a platform admin) may create, change or delete a Membership of that address",
                        org.spec.owner
                    ),
                );
            }
            if req.operation == Op::Create
                && m.spec
                    .mfa
                    .as_ref()
                    .is_some_and(|x| *x != MfaExemption::default())
            {
                return deny(
                    "OwnerOnly",
                    format!("only the owner of organization {ns} may exempt a member from MFA"),
                );
            }
            let target_role = m.spec.role.unwrap_or(org.spec.default_role);
            let foreign: Vec<&str> = match (req.operation, req.old_object) {
                (Op::Update, Some(Object::Membership(old))) => changed_projects(old, m),
                _ => m.spec.projects.iter().map(|g| g.name.as_str()).collect(),
            }
            .into_iter()
            .filter(|p| !in_mine(p))
            .collect();
            match req.operation {
                Op::Create | Op::Delete if target_role == OrgRole::Admin => deny(
                    "AdminInvitesMembersOnly",
                    format!(
                        "{me} is an Admin: Admins may invite or remove Members only; set spec.role: Member, or ask the owner ({})",
                        org.spec.owner
                    ),
                ),
                Op::Create | Op::Delete if !foreign.is_empty() => deny(
                    "NotProjectAdmin",
                    format!(
                        "{me} is not Admin of project(s) {}: only their project Admins and the owner may give roles there",
                        foreign.join(", ")
                    ),
                ),
                Op::Create | Op::Delete => Decision::Allow,
                Op::Update => {
                    let Some(Object::Membership(old)) = req.old_object else {
                        return Decision::Allow;
                    };
                    if old.spec.role != m.spec.role
                        || old.spec.disabled != m.spec.disabled
                        || old.spec.expires_at != m.spec.expires_at
                    {
                        return deny(
                            "OwnerOnly",
                            format!(
                                "only the owner of organization {ns} may change a member's org role, enable or disable them, or set their expiry"
                            ),
                        );
                    }
                    // Requests to identity (DESIGN.md §2): Admins may make them for Members; a
                    // resend (a new link, which they may read) only for Members they could
                    // invite, all of whose projects they administer.
                    let changed = |r: Ask| request_annotation(old, r) != request_annotation(m, r);
                    let requests_changed = Ask::ALL.into_iter().any(changed);
                    if requests_changed && target_role == OrgRole::Admin {
                        return deny(
                            "AdminChangesMembersOnly",
                            format!(
                                "{me} is an Admin: Admins may resend invitations, unlock or reset MFA of Members only; ask the owner ({})",
                                org.spec.owner
                            ),
                        );
                    }
                    let outside: Vec<&str> = m
                        .spec
                        .projects
                        .iter()
                        .map(|g| g.name.as_str())
                        .filter(|p| !in_mine(p))
                        .collect();
                    if changed(Ask::ResendInvitation) && !outside.is_empty() {
                        return deny(
                            "NotProjectAdmin",
                            format!(
                                "{me} is not Admin of project(s) {}: only their project Admins and the owner may resend this invitation",
                                outside.join(", ")
                            ),
                        );
                    }
                    if old.spec.mfa != m.spec.mfa {
                        return deny(
                            "OwnerOnly",
                            format!(
                                "only the owner of organization {ns} may exempt a member from MFA"
                            ),
                        );
                    }
                    if target_role == OrgRole::Admin
                        && (old.spec.projects != m.spec.projects
                            || old.spec.display_name != m.spec.display_name)
                    {
                        return deny(
                            "AdminChangesMembersOnly",
                            format!(
                                "{me} is an Admin: Admins may change Members only; ask the owner"
                            ),
                        );
                    }
                    if !foreign.is_empty() {
                        return deny(
                            "NotProjectAdmin",
                            format!(
                                "{me} is not Admin of project(s) {}: only their project Admins and the owner may change roles there",
                                foreign.join(", ")
                            ),
                        );
                    }
                    Decision::Allow
                }
                _ => Decision::Allow,
            }
        }
    }
}

/// Projects whose grant was added, removed or changed between two versions of a Membership.
fn changed_projects<'a>(old: &'a Membership, new: &'a Membership) -> Vec<&'a str> {
    let mut changed = Vec::new();
    for g in &new.spec.projects {
        if !old.spec.projects.contains(g) {
            changed.push(g.name.as_str());
        }
    }
    for g in &old.spec.projects {
        if !new.spec.projects.iter().any(|n| n.name == g.name) {
            changed.push(g.name.as_str());
        }
    }
    changed.sort_unstable();
    changed.dedup();
    changed
}
