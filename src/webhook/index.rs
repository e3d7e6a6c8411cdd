//! The webhook's view of the cluster: the controller's cache stores. Reading them costs no
//! API call; they are as fresh as the watches.

use std::sync::Arc;

use crate::cache::Store;
use kube::ResourceExt;

use super::validate::{Acceptance, Index};
use crate::api::{Membership, Organization, Project};
use crate::controller::plan::project_namespace;

#[derive(Clone)]
pub struct StoreIndex {
    pub orgs: Store<Organization>,
    pub projects: Store<Project>,
    pub memberships: crate::cache::Members,
    /// The Memberships by organization and e-mail (a lookup, not a scan per request); without
    /// it, the store is scanned.
    pub emails: Option<crate::cache::EmailIndex>,
    /// Credential records (identity), to tell who accepted their invitation, and the namespace
    /// they live in (roster's own).
    pub credentials: Option<(Store<crate::cache::Credential>, String)>,
}

impl Index for StoreIndex {
    fn organization(&self, namespace: &str) -> Option<Arc<Organization>> {
        self.orgs.get(namespace, namespace)
    }

    fn memberships_with_email(&self, namespace: &str, email: &str) -> Vec<Arc<Membership>> {
        match &self.emails {
            // The index files addresses without case; the rules compare them exactly.
            Some(ix) => ix
                .get(namespace, email)
                .into_iter()
                .filter(|m| m.spec.email == email)
                .collect(),
            None => self.memberships.state_filter(|m| {
                m.spec.email == email && m.metadata.namespace.as_deref() == Some(namespace)
            }),
        }
    }

    fn projects(&self, namespace: &str) -> Vec<Arc<Project>> {
        self.projects
            .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
    }

    fn projects_using_namespace(&self, namespace: &str) -> Vec<Arc<Project>> {
        self.projects
            .state_filter(|p| project_namespace(&p.namespace().unwrap_or_default(), p) == namespace)
    }

    fn organizations_prefixing(&self, namespace: &str) -> Vec<String> {
        self.orgs
            .state()
            .iter()
            .map(|o| o.name_any())
            .filter(|o| namespace.starts_with(&format!("{o}-")))
            .collect()
    }

    fn invitation_accepted(&self, namespace: &str, email: &str) -> Option<Acceptance> {
        let (creds, own) = self.credentials.as_ref()?;
        let name = crate::identity::store::Store::secret_name(namespace, email);
        let accepted = creds.get(own, &name).and_then(|c| {
            // Accepted by the Membership that holds the address now: a record left by a
            // deleted namesake (not yet forgotten) proves nothing about the new one.
            let r = c.record().ok()?;
            let members = self.memberships_with_email(namespace, email);
            let holds =
                super::validate::email_holder(&members, email).is_some_and(|m| r.belongs_to(m));
            (r.accepted_at.is_some() && holds).then_some(Acceptance::Accepted {
                // Readers kept for a link whose names were its own only (`accepted_link`).
                link_readers: r.link_readers.filter(|_| r.accepted_link.is_some()),
            })
        });
        Some(accepted.unwrap_or(Acceptance::Pending))
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;

    use super::*;
    use crate::api::credential::Record;
    use crate::cache::Credential;
    use crate::fixtures::{NS, member};

    /// A new owner's acceptance is the acceptance of the Membership holding the address now:
    /// the record of a deleted Membership of the same address (accepted, not yet forgotten)
    /// does not count for its successor (red team of 8cd83cb).
    #[test]
    fn only_the_current_membership_s_acceptance_counts() {
        let mut bob = member("bob", None, &[]);
        bob.metadata.uid = Some("uid-now".into());
        let accepted_by = |uid: &str| {
            index(&[bob.clone()], accepted(&bob.spec.email, uid))
                .invitation_accepted(NS, "bob@acme.example")
        };
        assert_eq!(
            accepted_by("uid-now"),
            Some(Acceptance::Accepted {
                link_readers: Some(vec!["alice@acme.example".into()])
            })
        );
        assert_eq!(
            accepted_by("uid-of-the-deleted-one"),
            Some(Acceptance::Pending)
        );
    }

    /// Who could read the link an acceptance went through comes from the record as identity
    /// kept it, unknown for a record from before it was kept (red team 19b).
    #[test]
    fn an_acceptance_carries_who_could_read_its_link() {
        let mut bob = member("bob", None, &[]);
        bob.metadata.uid = Some("uid-now".into());
        let mut record = accepted(&bob.spec.email, "uid-now");
        record.link_readers = Some(vec!["carl@acme.example".into()]);
        assert_eq!(
            index(&[bob.clone()], record.clone()).invitation_accepted(NS, "bob@acme.example"),
            Some(Acceptance::Accepted {
                link_readers: Some(vec!["carl@acme.example".into()])
            })
        );
        record.link_readers = None;
        assert_eq!(
            index(&[bob.clone()], record.clone()).invitation_accepted(NS, "bob@acme.example"),
            Some(Acceptance::Accepted { link_readers: None })
        );
        // Readers kept, but not the link: accepted through a link that shared its Secret's
        // name with the one before it (red team 25).
        record.link_readers = Some(vec!["alice@acme.example".into()]);
        record.accepted_link = None;
        assert_eq!(
            index(&[bob], record).invitation_accepted(NS, "bob@acme.example"),
            Some(Acceptance::Accepted { link_readers: None })
        );
    }

    fn accepted(email: &str, membership_uid: &str) -> Record {
        Record {
            email: email.into(),
            membership_uid: Some(membership_uid.into()),
            accepted_at: Some(1),
            link_readers: Some(vec!["alice@acme.example".into()]),
            accepted_link: Some("1".into()),
            ..Default::default()
        }
    }

    /// An index of `members` and one credential record, as the caches hold them.
    fn index(members: &[crate::api::Membership], record: Record) -> StoreIndex {
        let (memberships, _, mut mw) = crate::cache::members();
        for m in members {
            mw.apply(Event::Apply(m.clone()));
        }
        let (creds, mut cw) = crate::cache::store();
        cw.apply_watcher_event(&Event::Apply(Credential::of_record(
            crate::identity::store::Store::secret_name(NS, &record.email),
            "roster-system",
            NS,
            &record,
        )));
        StoreIndex {
            orgs: crate::cache::store().0,
            projects: crate::cache::store().0,
            memberships,
            emails: None,
            credentials: Some((creds, "roster-system".into())),
        }
    }

    /// Red team of 3e1cdfe: the acceptance that counts is the holder's (the Membership
    /// `email_holder` names, which the rest of the transfer rules judge), not that of any
    /// Membership carrying the address. A former owner's bootstrap Membership (accepted) and a
    /// declared one of the same address that supersedes it coexist until roster deletes the
    /// bootstrap one: meanwhile the declared one, never accepted, passes as accepted.
    #[test]
    fn a_superseded_namesake_s_acceptance_does_not_count_for_the_holder() {
        let mut bootstrap = member("bob", None, &[]);
        bootstrap.metadata.name = Some("bob-bootstrap".into());
        bootstrap.metadata.uid = Some("uid-bootstrap".into());
        bootstrap.metadata.labels =
            Some([(crate::api::BOOTSTRAP_LABEL.to_string(), "true".to_string())].into());
        let mut declared = member("bob", None, &[]);
        declared.metadata.uid = Some("uid-declared".into());
        let index = index(
            &[bootstrap, declared.clone()],
            accepted(&declared.spec.email, "uid-bootstrap"),
        );
        assert_eq!(
            index.invitation_accepted(NS, "bob@acme.example"),
            Some(Acceptance::Pending),
            "the holder (declared, uid-declared) never accepted; the record is the bootstrap one's"
        );
    }
}
