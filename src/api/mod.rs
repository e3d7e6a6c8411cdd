//! The roster API: `roster.dev/v1alpha1` Organization, Project and Membership.
//!
//! Every rule that can live in the schema lives here (enums, shapes, immutability, CEL), so the
//! API server enforces it before roster sees the object. Rules that span objects or depend on who
//! is asking belong to the webhook.

// clippy reads the repeated `printcolumn(type_ = ...)` arguments of kube's derive as duplicated
// attributes; they are one column each.
pub mod contract;
pub mod credential;
#[allow(clippy::duplicated_attributes)]
mod membership;
#[allow(clippy::duplicated_attributes)]
mod organization;
#[allow(clippy::duplicated_attributes)]
mod project;
pub mod rbac;

pub use membership::{
    AccessEntry, CachedCondition, CachedStatus, EffectiveRole, InvitationState, InvitationStatus,
    Membership, MembershipSpec, MembershipStatus, MfaExemption, MfaState, MfaStatus, Phase,
    ProjectGrant,
};
pub use organization::{
    LockoutPolicy, MfaPolicy, Organization, OrganizationSpec, OrganizationStatus, SecurityPolicy,
};
pub use project::{NamespaceDeletion, Project, ProjectSpec, ProjectStatus};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use contract::BOOTSTRAP_LABEL;

pub const GROUP: &str = "roster.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "roster.dev/v1alpha1";

/// A member's role in the organization, as declared. `Owner` is deliberately absent: there is
/// exactly one owner and it is named by `Organization.spec.owner`, so no Membership can claim it.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrgRole {
    Admin,
    Member,
}

/// A member's role in one project; each maps to a ClusterRole in the project's namespace.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum ProjectRole {
    Admin,
    Developer,
    Viewer,
}

impl ProjectRole {
    pub const ALL: [ProjectRole; 3] = [
        ProjectRole::Admin,
        ProjectRole::Developer,
        ProjectRole::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProjectRole::Admin => "Admin",
            ProjectRole::Developer => "Developer",
            ProjectRole::Viewer => "Viewer",
        }
    }
}

/// CEL shared by the e-mail fields. Lower-case only, so that uniqueness, RBAC subjects and login
/// never depend on case folding rules.
pub(crate) const EMAIL_RULE: &str = r#"self.matches("^[a-z0-9._%+-]+@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")"#;
pub(crate) const EMAIL_MESSAGE: &str =
    "must be a lower-case e-mail address such as bob@example.com";

/// CEL for Go-style durations (what `kube::core::Duration` parses), without a sign.
pub(crate) const DURATION_RULE: &str = r#"self.matches("^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$")"#;
pub(crate) const DURATION_MESSAGE: &str = "must be a duration such as 90s, 15m, 72h or 1h30m";

/// A spec duration that the CRD's CEL rule let through but that does not parse (or is negative).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {value:?} is not a duration such as 90s, 15m, 72h or 1h30m")]
pub struct BadDuration {
    pub field: &'static str,
    pub value: String,
}

/// Parses a Go-style duration from a spec field (the syntax `metav1.Duration` uses).
pub fn parse_duration(
    field: &'static str,
    value: &str,
) -> Result<std::time::Duration, BadDuration> {
    let bad = || BadDuration {
        field,
        value: value.to_string(),
    };
    if value.is_empty() {
        return Err(bad());
    }
    let d: kube::core::Duration = value.parse().map_err(|_| bad())?;
    if d.is_negative() {
        return Err(bad());
    }
    Ok(d.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse_like_go() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("72h", Some(Duration::from_secs(72 * 3600))),
            ("1h30m", Some(Duration::from_secs(5400))),
            ("0s", Some(Duration::ZERO)),
            ("90s", Some(Duration::from_secs(90))),
            ("1.5h", Some(Duration::from_secs(5400))),
            ("-1h", None),
            ("3d", None),
            ("", None),
            ("h", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration("f", input).ok(), *want, "{input:?}");
        }
    }
}
