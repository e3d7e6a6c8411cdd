use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DURATION_MESSAGE, DURATION_RULE, EMAIL_MESSAGE, EMAIL_RULE, OrgRole};

/// An organization: its single owner, the role given to members declared without one, and the
/// security policy every member is held to. Its namespace is its home: Projects and Memberships
/// live beside it, and its name equals that namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "roster.dev",
    version = "v1alpha1",
    kind = "Organization",
    namespaced,
    status = "OrganizationStatus",
    shortname = "org",
    category = "roster",
    derive = "PartialEq",
    doc = "An organization: its single owner, default member role and security policy.",
    printcolumn(name = "Owner", type_ = "string", json_path = ".spec.owner"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.members"),
    printcolumn(name = "Projects", type_ = "integer", json_path = ".status.projects"),
    printcolumn(
        name = "MFA",
        type_ = "string",
        json_path = ".status.mfaCompliant",
        description = "members compliant with the MFA policy / members"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationSpec {
    /// Human-readable name shown on the identity pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub display_name: Option<String>,

    /// The organization's one owner, by e-mail. One field, so there can never be two owners;
    /// it moves only by a confirmed ownership transfer.
    #[schemars(length(min = 3, max = 254))]
    #[x_kube(validation = kube::core::Rule::new(EMAIL_RULE).message(EMAIL_MESSAGE))]
    pub owner: String,

    /// Org role of a Membership that does not declare one.
    #[serde(default = "default_role")]
    pub default_role: OrgRole,

    /// When true, org Admins are project Admin in every project, not only in those they are
    /// listed in.
    #[serde(default)]
    pub admins_see_all_projects: bool,

    #[serde(default)]
    pub security: SecurityPolicy,

    /// The most access grants (a member's org role, or role in a project) one change may take
    /// away. Above it roster applies nothing for the organization and reports `Stalled` with the
    /// count and a fingerprint; annotate the Organization `roster.dev/accept-removals` with that
    /// fingerprint (or raise this limit) to proceed. Cut-offs of disabled, expired and
    /// MFA-overdue members are never held back. Unset: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100000))]
    pub max_access_removals: Option<u32>,
}

fn default_role() -> OrgRole {
    OrgRole::Admin
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPolicy {
    #[serde(default)]
    pub mfa: MfaPolicy,
    #[serde(default)]
    pub lockout: LockoutPolicy,
    /// How long an invitation link stays valid.
    #[serde(default = "default_invitation_ttl", rename = "invitationTTL")]
    #[x_kube(validation = kube::core::Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    pub invitation_ttl: String,
    /// Lifetime of a login token (kubectl access before logging in again).
    #[serde(default = "default_session_ttl", rename = "sessionTTL")]
    #[x_kube(validation = kube::core::Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    pub session_ttl: String,
    /// Shortest password a member may set (8 to 128).
    #[serde(default = "default_password_min_length")]
    #[schemars(range(min = 8, max = 128))]
    pub password_min_length: u32,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        SecurityPolicy {
            mfa: MfaPolicy::default(),
            lockout: LockoutPolicy::default(),
            invitation_ttl: default_invitation_ttl(),
            session_ttl: default_session_ttl(),
            password_min_length: default_password_min_length(),
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MfaPolicy {
    /// Every member must enrol TOTP (unless exempted by the owner).
    #[serde(default)]
    pub required: bool,
    /// How long a member keeps access without MFA after it becomes required of them.
    #[serde(default = "default_grace_period")]
    #[x_kube(validation = kube::core::Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    pub grace_period: String,
}

impl Default for MfaPolicy {
    fn default() -> Self {
        MfaPolicy {
            required: false,
            grace_period: default_grace_period(),
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LockoutPolicy {
    /// Failed logins in a row that lock the account; 0 never locks.
    #[serde(default = "default_max_failed_attempts")]
    #[schemars(range(max = 1000))]
    pub max_failed_attempts: u32,
    /// How long a locked account stays locked; 0s means until an admin unlocks it.
    #[serde(default = "default_lock_duration")]
    #[x_kube(validation = kube::core::Rule::new(DURATION_RULE).message(DURATION_MESSAGE))]
    pub lock_duration: String,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        LockoutPolicy {
            max_failed_attempts: default_max_failed_attempts(),
            lock_duration: default_lock_duration(),
        }
    }
}

/// A spec duration, parsed; one the CRD's rule let through but that does not parse (or is
/// negative) counts as the default, so no code path invents a value of its own.
fn duration_or(field: &'static str, value: &str, default: fn() -> String) -> std::time::Duration {
    super::parse_duration(field, value)
        .or_else(|_| super::parse_duration(field, &default()))
        .unwrap_or_default()
}

impl SecurityPolicy {
    pub fn invitation_ttl(&self) -> std::time::Duration {
        duration_or(
            "spec.security.invitationTTL",
            &self.invitation_ttl,
            default_invitation_ttl,
        )
    }

    pub fn session_ttl(&self) -> std::time::Duration {
        duration_or(
            "spec.security.sessionTTL",
            &self.session_ttl,
            default_session_ttl,
        )
    }
}

impl MfaPolicy {
    pub fn grace_period(&self) -> std::time::Duration {
        duration_or(
            "spec.security.mfa.gracePeriod",
            &self.grace_period,
            default_grace_period,
        )
    }
}

impl LockoutPolicy {
    /// Zero: locked until an admin unlocks.
    pub fn lock_duration(&self) -> std::time::Duration {
        duration_or(
            "spec.security.lockout.lockDuration",
            &self.lock_duration,
            default_lock_duration,
        )
    }
}

// Durations are kept as the strings users wrote (Go syntax, checked by CEL) so that what a
// GitOps tool applied is what it reads back; `parse_duration` turns them into values.
fn default_invitation_ttl() -> String {
    "168h".into()
}
fn default_session_ttl() -> String {
    "8h".into()
}
fn default_grace_period() -> String {
    "72h".into()
}
fn default_lock_duration() -> String {
    "15m".into()
}
fn default_max_failed_attempts() -> u32 {
    10
}
fn default_password_min_length() -> u32 {
    12
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The owner as roster last converged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<u32>,
    /// Members compliant with the MFA policy, as "compliant/total".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa_compliant: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
