//! The Kubernetes contract in one place: every name roster writes or trusts on objects —
//! field manager, labels, annotations, finalizer, Secret types, the user and group names of
//! roster's own identities. Nothing outside `api` spells a `roster.dev/` string.

use std::collections::BTreeMap;

/// The prefix of every label and annotation key roster defines.
pub const PREFIX: &str = "roster.dev/";

/// The one field manager roster writes with (server-side apply and plain writes alike).
pub const FIELD_MANAGER: &str = "roster";

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "roster";

/// On everything roster manages for an organization: its name.
pub const ORGANIZATION_LABEL: &str = "roster.dev/organization";
/// On a project's namespace and RoleBindings: the Project's name.
pub const PROJECT_LABEL: &str = "roster.dev/project";
/// On objects that belong to one Membership (its invitation link and who may read it).
pub const MEMBERSHIP_LABEL: &str = "roster.dev/membership";
/// On a Membership that roster created for an owner who had none. Only roster sets or removes
/// it (the admission webhook refuses anyone else), because a bootstrap Membership is superseded
/// — and deleted — by a declared one of the same e-mail.
pub const BOOTSTRAP_LABEL: &str = "roster.dev/bootstrap";

/// On a namespace that existed before its Project: `<organization>/<project>` hands it over.
/// Set by a platform admin; tenants cannot write namespaces.
pub const ADOPT_ANNOTATION: &str = "roster.dev/adopt";
/// On a project namespace: how roster came to manage it. Only a namespace roster `Created`
/// is ever deleted with its Project; an `Adopted` one is handed back.
pub const NAMESPACE_ORIGIN_ANNOTATION: &str = "roster.dev/namespace-origin";
pub const ORIGIN_CREATED: &str = "Created";
pub const ORIGIN_ADOPTED: &str = "Adopted";

/// On Organizations and Projects: their objects outside their own namespace are cleaned up first.
/// On an Organization: the fingerprint of a set of access removals (shown in its `Stalled`
/// condition and by `roster diff`) that may go through past `spec.maxAccessRemovals`.
pub const ACCEPT_REMOVALS_ANNOTATION: &str = "roster.dev/accept-removals";

pub const FINALIZER: &str = "roster.dev/cleanup";

/// Secret type of a member's credential record (roster's namespace).
pub const CREDENTIALS_SECRET_TYPE: &str = "roster.dev/credentials";
/// Secret type of a pending invitation link (the organization's namespace).
pub const INVITATION_SECRET_TYPE: &str = "roster.dev/invitation";

/// Request annotations on a Membership (DESIGN.md §2), acted on once per new value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Request {
    ResendInvitation,
    Unlock,
    ResetMfa,
}

impl Request {
    pub const ALL: [Request; 3] = [
        Request::ResendInvitation,
        Request::Unlock,
        Request::ResetMfa,
    ];

    /// The short name: the key in the record of handled requests and the CLI's word.
    pub fn kind(self) -> &'static str {
        match self {
            Request::ResendInvitation => "resend-invitation",
            Request::Unlock => "unlock",
            Request::ResetMfa => "reset-mfa",
        }
    }

    pub fn annotation(self) -> &'static str {
        match self {
            Request::ResendInvitation => "roster.dev/resend-invitation",
            Request::Unlock => "roster.dev/unlock",
            Request::ResetMfa => "roster.dev/reset-mfa",
        }
    }
}

/// Keys of the user `extra` that roster's TokenReview answers carry and SubjectAccessReviews
/// hand back.
pub const EXTRA_MEMBERSHIP: &str = "roster.dev/membership";
pub const EXTRA_GENERATION: &str = "roster.dev/generation";

/// The prefix of every user and group name roster's own tokens authenticate as. No other
/// authenticator of the cluster may issue names that start with it.
pub const IDENTITY_PREFIX: &str = "roster:";

/// The Kubernetes user name of a token roster issued for `email` in organization `org`:
/// `roster:<org>:<email>`. It belongs to that organization alone: a person in two
/// organizations has two user names, each under its own organization's policy.
pub fn member_username(org: &str, email: &str) -> String {
    format!("{IDENTITY_PREFIX}{org}:{email}")
}

/// The organization and e-mail of a user name made by `member_username`.
pub fn parse_member_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(IDENTITY_PREFIX)?;
    let (org, email) = rest.split_once(':')?;
    (!org.is_empty() && email.contains('@')).then_some((org, email))
}

/// The group every token of organization `org` carries.
pub fn organization_group(org: &str) -> String {
    format!("{IDENTITY_PREFIX}{org}")
}

/// Labels of what roster manages for an organization (and one of its projects).
pub fn managed_labels(org: &str, project: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (ORGANIZATION_LABEL.to_string(), org.to_string()),
    ]);
    if let Some(p) = project {
        l.insert(PROJECT_LABEL.to_string(), p.to_string());
    }
    l
}

/// The label selector of everything roster manages.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGER}")
}

/// The Secret holding one pending invitation link of a member (when no SMTP server sends
/// it), and the Role and RoleBinding that say who may read it. Each link has names of its own
/// (`link_id`, random, kept in the record): a replaced link is written under new names, so a
/// binding that still names a former reader — one the API server's authorizer has not caught
/// up with, or one the controller could not narrow — opens only the dead link it was written
/// for (red teams 22 and 23). `None`: a link issued before links had ids.
pub fn invitation_link_name(membership: &str, link_id: Option<&str>) -> String {
    match link_id {
        Some(id) => format!("roster-invitation-{membership}-{id}"),
        None => format!("roster-invitation-{membership}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_user_names_round_trip_and_belong_to_one_organization() {
        let u = member_username("acme", "bob@acme.example");
        assert_eq!(u, "roster:acme:bob@acme.example");
        assert_eq!(
            parse_member_username(&u),
            Some(("acme", "bob@acme.example"))
        );
        for not_ours in [
            "bob@acme.example",
            "roster:acme",
            "roster::bob@acme.example",
            "roster:acme:bob",
            "system:serviceaccount:acme:bob",
        ] {
            assert_eq!(parse_member_username(not_ours), None, "{not_ours}");
        }
        for r in Request::ALL {
            assert_eq!(r.annotation(), format!("roster.dev/{}", r.kind()));
        }
    }
}
