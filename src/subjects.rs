//! Which Kubernetes user names stand for a member of an organization — in RoleBindings, and
//! when the admission webhook asks who a request comes from. One rule, used by both, so that
//! what roster binds and whom it recognises can never disagree.
//!
//! - **roster** (the default): the user names of roster's own tokens, `roster:<org>:<email>`.
//!   They belong to one organization: credentials are per organization (its MFA, lockout and
//!   session policy), so an identity of organization B can never be a name that organization
//!   A's bindings trust, whatever B's Admins declare in B.
//! - **external**: `<prefix><email>` as an external authenticator (OIDC with a *verified*
//!   e-mail claim) names people. The IdP proves the mailbox; the name is global, so an Admin
//!   of B who invites A's owner into B gives that person access in B, never in A.
//! - **both**: either.

use crate::api::contract::{IDENTITY_PREFIX, member_username, parse_member_username};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    /// Bind roster's own user names.
    pub roster: bool,
    /// Bind `<prefix><email>` (an external authenticator's names), when set.
    pub external_prefix: Option<String>,
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects::roster_only()
    }
}

impl Subjects {
    pub fn roster_only() -> Subjects {
        Subjects {
            roster: true,
            external_prefix: None,
        }
    }

    pub fn external(prefix: &str) -> Subjects {
        Subjects {
            roster: false,
            external_prefix: Some(prefix.to_string()),
        }
    }

    pub fn both(prefix: &str) -> Subjects {
        Subjects {
            roster: true,
            external_prefix: Some(prefix.to_string()),
        }
    }

    /// The user names bound for `email` in organization `org`.
    pub fn names(&self, org: &str, email: &str) -> Vec<String> {
        let mut out = Vec::with_capacity(2);
        if self.roster {
            out.push(member_username(org, email));
        }
        if let Some(prefix) = &self.external_prefix {
            out.push(format!("{prefix}{email}"));
        }
        out
    }

    /// The e-mail of the member of `org` that a request's user name stands for, if it names one
    /// at all. A roster name of another organization stands for nobody here.
    pub fn member_email<'a>(&self, org: &str, username: &'a str) -> Option<&'a str> {
        if self.roster
            && let Some((o, email)) = parse_member_username(username)
        {
            return (o == org).then_some(email);
        }
        let prefix = self.external_prefix.as_deref()?;
        let email = username.strip_prefix(prefix)?;
        // roster's own names are never external ones, whatever the prefix.
        (!username.starts_with(IDENTITY_PREFIX) && email.contains('@')).then_some(email)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roster_names_belong_to_one_organization() {
        let s = Subjects::roster_only();
        assert_eq!(
            s.names("acme", "bob@acme.example"),
            vec!["roster:acme:bob@acme.example"]
        );
        assert_eq!(
            s.member_email("acme", "roster:acme:bob@acme.example"),
            Some("bob@acme.example")
        );
        assert_eq!(s.member_email("acme", "roster:bee:bob@acme.example"), None);
        assert_eq!(s.member_email("acme", "bob@acme.example"), None);
    }

    #[test]
    fn external_names_are_prefix_and_email_and_never_roster_names() {
        for (s, prefix) in [
            (Subjects::external(""), ""),
            (Subjects::external("oidc:"), "oidc:"),
        ] {
            assert_eq!(
                s.names("acme", "bob@acme.example"),
                vec![format!("{prefix}bob@acme.example")]
            );
            assert_eq!(
                s.member_email("acme", &format!("{prefix}bob@acme.example")),
                Some("bob@acme.example")
            );
            assert_eq!(s.member_email("acme", "roster:acme:bob@acme.example"), None);
            assert_eq!(s.member_email("acme", "system:serviceaccount:acme:x"), None);
        }
        let both = Subjects::both("oidc:");
        assert_eq!(both.names("acme", "b@x.example").len(), 2);
        assert_eq!(
            both.member_email("acme", "roster:acme:b@x.example"),
            Some("b@x.example")
        );
        assert_eq!(
            both.member_email("acme", "oidc:b@x.example"),
            Some("b@x.example")
        );
        assert_eq!(both.member_email("acme", "roster:bee:b@x.example"), None);
    }
}
