//! roster's RoleBindings as the caches hold them. A binding of a large organization lists
//! thousands of subjects, and a `Subject` cached whole is four strings (167 B each: 10 MB for
//! the 60,000 subjects of 20,000 members). Nearly every subject is a user (kind `User` in the
//! RBAC group, no namespace): such a subject is kept as its name alone, any other as it came.
//! A reconcile reads a binding back whole (`rolebinding`), subject for subject as stored, so
//! drift is judged on exactly what the API server holds.

use std::borrow::Cow;

use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use kube::runtime::reflector::Lookup;

use crate::api::contract::ORGANIZATION_LABEL;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The binding as read (slimmed as every cached object is), without its subjects.
    head: RoleBinding,
    /// `None` when the binding has no `subjects` field at all (not the same as an empty list).
    subjects: Option<Box<[Cached]>>,
    /// Of the whole binding: moves with every change of it (see `super::Changes`).
    fingerprint: u64,
}

#[derive(Clone, Debug, PartialEq)]
enum Cached {
    User(Box<str>),
    Other(Box<Subject>),
}

impl Cached {
    fn of(s: Subject) -> Cached {
        match s {
            Subject {
                api_group: Some(g),
                kind,
                name,
                namespace: None,
            } if kind == "User" && g == RBAC_GROUP => Cached::User(name.into_boxed_str()),
            other => Cached::Other(Box::new(other)),
        }
    }

    fn subject(&self) -> Subject {
        match self {
            Cached::User(name) => Subject {
                api_group: Some(RBAC_GROUP.to_string()),
                kind: "User".to_string(),
                name: name.to_string(),
                namespace: None,
            },
            Cached::Other(s) => (**s).clone(),
        }
    }
}

impl Binding {
    pub fn of(mut rb: RoleBinding) -> Binding {
        super::slim(&mut rb);
        let fingerprint = super::trigger_fingerprint(&rb);
        let subjects = rb
            .subjects
            .take()
            .map(|s| s.into_iter().map(Cached::of).collect());
        Binding {
            head: rb,
            subjects,
            fingerprint,
        }
    }

    /// The binding whole, as it was read.
    pub fn rolebinding(&self) -> RoleBinding {
        let mut rb = self.head.clone();
        rb.subjects = self
            .subjects
            .as_ref()
            .map(|s| s.iter().map(Cached::subject).collect());
        rb
    }

    /// The organization label.
    pub fn organization(&self) -> Option<&str> {
        self.head
            .metadata
            .labels
            .as_ref()?
            .get(ORGANIZATION_LABEL)
            .map(String::as_str)
    }
}

impl super::Compact for Binding {
    fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
    fn organization(&self) -> Option<&str> {
        Binding::organization(self)
    }
}

/// Cached by namespace and name, like a RoleBinding; the store's key holds those two only.
impl Lookup for Binding {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        "RoleBinding".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        RBAC_GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "rolebindings".into()
    }
    fn name(&self) -> Option<Cow<'_, str>> {
        self.head.metadata.name.as_deref().map(Cow::Borrowed)
    }
    fn namespace(&self) -> Option<Cow<'_, str>> {
        self.head.metadata.namespace.as_deref().map(Cow::Borrowed)
    }
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }
    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::RoleRef;
    use kube::api::ObjectMeta;

    use super::*;

    fn subject(kind: &str, group: Option<&str>, name: &str, ns: Option<&str>) -> Subject {
        Subject {
            api_group: group.map(str::to_string),
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(str::to_string),
        }
    }

    fn binding(subjects: Option<Vec<Subject>>) -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some("roster-developer".into()),
                namespace: Some("acme-web".into()),
                resource_version: Some("7".into()),
                labels: Some([(ORGANIZATION_LABEL.to_string(), "acme".to_string())].into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some(RBAC_GROUP.into()),
                kind: "ClusterRole".into(),
                name: "edit".into(),
            },
            subjects,
        }
    }

    #[test]
    fn a_cached_binding_reads_back_exactly_as_stored() {
        // Users are kept by name; anything that is not exactly a user of the RBAC group with
        // no namespace must come back as it was, or drift would go unseen.
        let every_kind = vec![
            subject(
                "User",
                Some(RBAC_GROUP),
                "roster:acme:bob@acme.example",
                None,
            ),
            subject("User", Some(""), "empty-group", None),
            subject("User", None, "no-group", None),
            subject("User", Some(RBAC_GROUP), "with-namespace", Some("acme")),
            subject("user", Some(RBAC_GROUP), "lower-case-kind", None),
            subject("Group", Some(RBAC_GROUP), "system:masters", None),
            subject("ServiceAccount", Some(""), "default", Some("acme")),
            subject("User", Some("rbac.authorization.k8s.io.evil"), "x", None),
        ];
        for subjects in [Some(every_kind), Some(vec![]), None] {
            let rb = binding(subjects);
            let cached = Binding::of(rb.clone());
            assert_eq!(cached.rolebinding(), rb);
        }
        let cached = Binding::of(binding(Some(vec![subject(
            "User",
            Some(RBAC_GROUP),
            "bob",
            None,
        )])));
        assert!(matches!(
            cached.subjects.as_deref(),
            Some([Cached::User(n)]) if &**n == "bob"
        ));
        assert_eq!(cached.organization(), Some("acme"));
    }

    #[test]
    fn a_binding_is_keyed_by_namespace_and_name_and_moves_with_its_content() {
        let rb = binding(Some(vec![subject("User", Some(RBAC_GROUP), "bob", None)]));
        let key = Binding::of(rb.clone()).to_object_ref(());
        assert_eq!(
            (key.name.as_str(), key.namespace.as_deref()),
            ("roster-developer", Some("acme-web"))
        );
        assert!(key.extra.resource_version.is_none() && key.extra.uid.is_none());
        let mut more = rb.clone();
        more.subjects
            .get_or_insert_default()
            .push(subject("User", Some(RBAC_GROUP), "eve", None));
        use super::super::Compact;
        assert_ne!(
            Binding::of(rb.clone()).fingerprint(),
            Binding::of(more).fingerprint()
        );
        assert_eq!(
            Binding::of(rb.clone()).fingerprint(),
            Binding::of(rb).fingerprint()
        );
    }
}
