use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{EMAIL_MESSAGE, EMAIL_RULE, OrgRole, ProjectRole};

/// A person's membership of the organization in this namespace: their org role, their project
/// roles, and whether they may use them now.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "Membership",
    namespaced,
    status = "MembershipStatus",
    shortname = "mbr",
    category = "roster",
    derive = "PartialEq",
    selectable = ".spec.email",
    doc = "A member of the organization: org role, project roles, and whether they may use them now.",
    // The name labels the member's invitation objects (a label value: at most 63 characters).
    validation = kube::core::Rule::new("self.metadata.name.size() <= 63")
        .message("a Membership's name must be at most 63 characters: it becomes a label value"),
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Role", type_ = "string", json_path = ".status.effectiveRole"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "MFA", type_ = "string", json_path = ".status.mfa.state"),
    printcolumn(
        name = "Access",
        type_ = "string",
        json_path = ".status.accessSummary",
        description = "projects the member can reach now, with the role held"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MembershipSpec {
    /// The member's e-mail: their login name and, with the configured prefix, their Kubernetes
    /// user name. Unique within the organization; immutable (a new address is a new member).
    #[schemars(length(min = 3, max = 254))]
    #[x_kube(validation = kube::core::Rule::new(EMAIL_RULE).message(EMAIL_MESSAGE))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("spec.email is immutable: delete this Membership and create one for the new address"))]
    pub email: String,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// Org role; the Organization's `defaultRole` when absent. Owner is not a role one can
    /// declare: it comes only from `Organization.spec.owner`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<OrgRole>,

    /// Project roles, at most one per project.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub projects: Vec<ProjectGrant>,

    /// A disabled member keeps their Membership but has no access and cannot log in.
    #[serde(default)]
    pub disabled: bool,

    /// Exemption from the organization's MFA requirement (only the owner may grant it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaExemption>,

    /// The membership ends at this time (contractors); the record stays, access goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProjectGrant {
    /// Name of a Project in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    pub role: ProjectRole,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.exemptUntil) || self.exempt")
    .message("mfa.exemptUntil only makes sense with mfa.exempt: true"))]
#[x_kube(validation = kube::core::Rule::new("!self.exempt || (has(self.reason) && self.reason.size() > 0)")
    .message("an MFA exemption needs a reason (mfa.reason), so that it can be reviewed"))]
pub struct MfaExemption {
    #[serde(default)]
    pub exempt: bool,
    /// The exemption ends at this time; MFA is then required like for everyone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exempt_until: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub reason: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Declared, invitation not accepted yet.
    Invited,
    Active,
    /// Too many failed logins.
    Locked,
    Disabled,
    /// `spec.expiresAt` has passed.
    Expired,
    /// Another Membership of the organization claimed this e-mail first.
    Conflict,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EffectiveRole {
    Owner,
    Admin,
    Member,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MfaState {
    Enrolled,
    /// Required, not enrolled yet; access continues until `deadline`.
    Pending,
    Exempt,
    NotRequired,
    /// Required, not enrolled, grace period over: no access until enrolled.
    Overdue,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MfaStatus {
    pub state: MfaState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InvitationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<InvitationState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<Time>,
    /// `Email` or `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationState {
    /// Sent, not accepted, link still valid.
    Pending,
    /// The link expired unused; `kubectl annotate membership NAME roster.dev/resend-invitation=<nonce>`.
    Expired,
    Accepted,
}

/// What the member can reach in one project right now, or why not.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessEntry {
    pub project: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The role held now; absent when there is no access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<ProjectRole>,
    /// Why the member has no access (or a narrower one than declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MembershipStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_role: Option<EffectiveRole>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation: Option<InvitationStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_logins: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessEntry>,
    /// `access` in one line for `kubectl get`: "payments=Developer,web=Viewer".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_summary: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
