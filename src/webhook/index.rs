//! The webhook's view of the cluster: the controller's reflector stores. Reading them costs no
//! API call; they are as fresh as the watches.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use super::validate::Index;
use crate::api::{Membership, Organization, Project};
use crate::controller::plan::project_namespace;

#[derive(Clone)]
pub struct StoreIndex {
    pub orgs: Store<Organization>,
    pub projects: Store<Project>,
    pub memberships: Store<Membership>,
    /// The Memberships by organization and e-mail (a lookup, not a scan per request); without
    /// it, the store is scanned.
    pub emails: Option<crate::cache::EmailIndex>,
    /// Credential records (identity), to tell who accepted their invitation, and the namespace
    /// they live in (roster's own).
    pub credentials: Option<(Store<crate::cache::Credential>, String)>,
}

impl Index for StoreIndex {
    fn organization(&self, namespace: &str) -> Option<Arc<Organization>> {
        self.orgs.get(&ObjectRef::new(namespace).within(namespace))
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

    fn invitation_accepted(&self, namespace: &str, email: &str) -> Option<bool> {
        let (creds, own) = self.credentials.as_ref()?;
        let name = crate::identity::store::Store::secret_name(namespace, email);
        let accepted = creds
            .get(&ObjectRef::new(&name).within(own))
            .is_some_and(|c| c.record.as_ref().is_ok_and(|r| r.accepted_at.is_some()));
        Some(accepted)
    }
}
