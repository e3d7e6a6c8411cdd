//! Builders for the unit tests of the controller's plan and the webhook: one organization
//! "acme" in namespace acme, its projects and members, created at a fixed time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::api::{
    Membership, MembershipSpec, OrgRole, Organization, OrganizationSpec, Project, ProjectGrant,
    ProjectRole, ProjectSpec,
};

pub const NS: &str = "acme";
pub const CREATED: &str = "2026-01-01T00:00:00Z";

pub fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

pub fn org(owner_email: &str) -> Organization {
    let mut o = Organization::new(
        NS,
        OrganizationSpec {
            display_name: None,
            owner: owner_email.into(),
            default_role: OrgRole::Member,
            admins_see_all_projects: false,
            security: Default::default(),
        },
    );
    o.metadata.namespace = Some(NS.into());
    o.metadata.uid = Some("org-uid".into());
    o.metadata.generation = Some(1);
    o.metadata.creation_timestamp = Some(Time(ts(CREATED)));
    o
}

pub fn project(name: &str) -> Project {
    let spec = ProjectSpec {
        display_name: None,
        namespace: None,
        namespace_deletion: Default::default(),
    };
    let mut p = Project::new(name, spec);
    p.metadata.namespace = Some(NS.into());
    p.metadata.generation = Some(1);
    p
}

/// Membership `name` with e-mail `<name>@acme.example`.
pub fn member(name: &str, role: Option<OrgRole>, projects: &[(&str, ProjectRole)]) -> Membership {
    let mut m = Membership::new(
        name,
        MembershipSpec {
            email: format!("{name}@acme.example"),
            display_name: None,
            role,
            projects: projects
                .iter()
                .map(|(p, r)| ProjectGrant {
                    name: p.to_string(),
                    role: *r,
                })
                .collect(),
            disabled: false,
            mfa: None,
            expires_at: None,
        },
    );
    m.metadata.namespace = Some(NS.into());
    m.metadata.generation = Some(1);
    m.metadata.creation_timestamp = Some(Time(ts(CREATED)));
    m
}
