//! Members' credential records as the caches hold them. A credential Secret cached whole cost
//! 2.2 KB (its metadata maps, the record as base64-decoded bytes): 45 MB for 20,000 members.
//! What anyone reads of it is its name, its organization, its resourceVersion (for
//! compare-and-swap) and the record, parsed once here instead of on every read.

use std::borrow::Cow;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Lookup;

use crate::api::contract::ORGANIZATION_LABEL;
use crate::api::credential::{Record, record_in};

#[derive(Clone, Debug, PartialEq)]
pub struct Credential {
    pub name: String,
    pub namespace: String,
    /// Of the Secret as read: the precondition of the next write.
    pub resource_version: String,
    /// The organization label.
    pub organization: Option<String>,
    /// The record, or why it could not be read (kept, not dropped: an unreadable record is
    /// still somebody's, and says so where it is used).
    pub record: Result<Record, String>,
}

impl Credential {
    pub fn of(s: &Secret) -> Credential {
        let meta = &s.metadata;
        Credential {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            organization: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(ORGANIZATION_LABEL))
                .cloned(),
            record: record_in(s),
        }
    }

    /// The resourceVersion as a number, to tell the newer of two copies (etcd's are integers;
    /// anything else is never taken as newer).
    pub fn version(&self) -> Option<u64> {
        self.resource_version.parse().ok()
    }
}

/// Cached by namespace and name, like a Secret. The store's key then holds those two only: the
/// resourceVersion and UID kube would copy into every key are read from the entry instead.
impl Lookup for Credential {
    type DynamicType = ();

    fn kind(_: &()) -> Cow<'_, str> {
        "Secret".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "secrets".into()
    }
    fn name(&self) -> Option<Cow<'_, str>> {
        Some(self.name.as_str().into())
    }
    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(self.namespace.as_str().into())
    }
    fn resource_version(&self) -> Option<Cow<'_, str>> {
        None
    }
    fn uid(&self) -> Option<Cow<'_, str>> {
        None
    }
}

impl super::Compact for Credential {
    /// Every write moves a record's resourceVersion.
    fn fingerprint(&self) -> u64 {
        super::hash_of(&self.resource_version)
    }
    fn organization(&self) -> Option<&str> {
        self.organization.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;

    use super::*;

    fn secret(name: &str, rv: &str, record: &[u8]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("roster-system".into()),
                resource_version: Some(rv.into()),
                labels: Some(BTreeMap::from([(
                    ORGANIZATION_LABEL.to_string(),
                    "acme".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "record".to_string(),
                ByteString(record.to_vec()),
            )])),
            ..Default::default()
        }
    }

    #[test]
    fn a_cached_credential_keeps_what_is_read_and_says_why_a_record_is_unreadable() {
        let ok = Credential::of(&secret(
            "c1",
            "42",
            br#"{"email":"bob@acme.example","failed":3}"#,
        ));
        assert_eq!(ok.organization.as_deref(), Some("acme"));
        assert_eq!(ok.version(), Some(42));
        let r = ok.record.expect("record");
        assert_eq!((r.email.as_str(), r.failed), ("bob@acme.example", 3));
        let bad = Credential::of(&secret("c2", "43", b"{not json"));
        assert!(bad.record.is_err(), "{bad:?}");
        let mut none = secret("c3", "44", b"");
        none.data = None;
        assert_eq!(Credential::of(&none).record, Err("no record".into()));
        // Keys of the store hold namespace and name only.
        let key = ok_key(&Credential::of(&secret("c1", "42", b"{}")));
        assert_eq!(
            (key.name.as_str(), key.namespace.as_deref()),
            ("c1", Some("roster-system"))
        );
        assert!(key.extra.resource_version.is_none() && key.extra.uid.is_none());
    }

    fn ok_key(c: &Credential) -> kube::runtime::reflector::ObjectRef<Credential> {
        c.to_object_ref(())
    }
}
