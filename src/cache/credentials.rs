//! Members' credential records as the caches hold them. A credential Secret cached whole cost
//! 2.2 KB (its metadata maps, the record as base64-decoded bytes): 45 MB for 20,000 members.
//! What anyone reads of it is its name, its organization, its resourceVersion (for
//! compare-and-swap) and the record. The record is kept as its JSON, checked readable here and
//! parsed where it is read: parsed, it took 422 B where its JSON takes 256 (3 MB at 20,000
//! members), and every reader copied the parsed one anyway.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::Lookup;

use crate::api::contract::ORGANIZATION_LABEL;
use crate::api::credential::{Record, parse, record_bytes};
use crate::pool::Pool;

#[derive(Clone, Debug, PartialEq)]
pub struct Credential {
    pub name: Box<str>,
    /// Shared by every record (`crate::pool`), as is the organization.
    pub namespace: Arc<str>,
    /// Of the Secret as read: the precondition of the next write.
    pub resource_version: Box<str>,
    /// The organization label.
    pub organization: Option<Arc<str>>,
    /// The record as stored, or why it could not be read (kept, not dropped: an unreadable
    /// record is still somebody's, and says so where it is used).
    stored: Result<(Stored, Standing), String>,
}

/// What every TokenReview and SubjectAccessReview reads of a member's record, taken out of it
/// once, when the record is cached: parsing the whole JSON per review (password hash, sealed
/// seed, invitation) was most of what a valid token cost beyond a forged one. 56 bytes and
/// the UID per member.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    /// The UID of the Membership the record was made for (`Record::belongs_to`).
    pub membership_uid: Option<Box<str>>,
    pub generation: u64,
    pub locked_until: Option<u64>,
    /// `Record::enrolled`.
    pub enrolled: bool,
    /// `Record::grace_from`.
    pub grace_from: Option<u64>,
}

impl Standing {
    fn of(r: &Record) -> Standing {
        Standing {
            membership_uid: r.membership_uid.as_deref().map(Into::into),
            generation: r.generation,
            locked_until: r.locked_until,
            enrolled: r.enrolled(),
            grace_from: r.grace_from(),
        }
    }

    /// `Record::belongs_to`.
    pub fn belongs_to(&self, m: &impl crate::access::Member) -> bool {
        self.membership_uid.as_deref() == m.member_uid()
    }
}

/// A record's JSON as stored. Its Debug shows its size only: the JSON holds the password hash
/// and the sealed TOTP seed.
#[derive(Clone, PartialEq)]
struct Stored(Box<[u8]>);

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Record({} bytes)", self.0.len())
    }
}

impl Credential {
    /// The record, or why it cannot be read.
    pub fn record(&self) -> Result<Record, String> {
        match &self.stored {
            Ok((Stored(json), _)) => parse(json),
            Err(e) => Err(e.clone()),
        }
    }

    /// The record's standing (see `Standing`), or why the record cannot be read.
    pub fn standing(&self) -> Result<&Standing, &str> {
        match &self.stored {
            Ok((_, standing)) => Ok(standing),
            Err(e) => Err(e),
        }
    }

    /// The entry for `s`, sharing no names with others.
    pub fn of(s: &Secret) -> Credential {
        Credential::shared(s, &mut Pool::default())
    }

    /// The entry for `s`, its namespace and organization shared through `names`.
    pub fn shared(s: &Secret, names: &mut Pool<str>) -> Credential {
        let meta = &s.metadata;
        let text = |t: &Option<String>| t.as_deref().unwrap_or_default().into();
        Credential {
            name: text(&meta.name),
            namespace: names.get(meta.namespace.as_deref().unwrap_or_default()),
            resource_version: text(&meta.resource_version),
            organization: meta
                .labels
                .as_ref()
                .and_then(|l| l.get(ORGANIZATION_LABEL))
                .map(|o| names.get(o)),
            stored: record_bytes(s).and_then(|json| {
                let standing = Standing::of(&parse(json)?);
                Ok((Stored(json.into()), standing))
            }),
        }
    }

    /// An entry for `record` (tests of what reads the cache).
    #[cfg(test)]
    pub fn of_record(name: String, namespace: &str, organization: &str, record: &Record) -> Self {
        Credential {
            name: name.into(),
            namespace: namespace.into(),
            resource_version: "1".into(),
            organization: Some(organization.into()),
            stored: Ok((
                Stored(serde_json::to_vec(record).unwrap_or_default().into()),
                Standing::of(record),
            )),
        }
    }

    /// The resourceVersion as a number, to tell the newer of two copies (etcd's are integers;
    /// anything else is never taken as newer).
    pub fn version(&self) -> Option<u64> {
        self.resource_version.parse().ok()
    }
}

/// Found by namespace and name, like a Secret (the store compares the entry's own).
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
        Some(Cow::Borrowed(&self.name))
    }
    fn namespace(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(&self.namespace))
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
        let r = ok.record().expect("record");
        assert_eq!((r.email.as_str(), r.failed), ("bob@acme.example", 3));
        let bad = Credential::of(&secret("c2", "43", b"{not json"));
        assert!(bad.record().is_err(), "{bad:?}");
        let mut none = secret("c3", "44", b"");
        none.data = None;
        assert_eq!(Credential::of(&none).record(), Err("no record".into()));
    }

    /// Red team of ec1fff5: why a record is unreadable named the text found there, which
    /// may be a password hash; and an array was taken for an (empty) record.
    #[test]
    fn an_unreadable_record_s_reason_names_no_content_and_only_an_object_is_a_record() {
        let json = br#"{"email":"bob@acme.example","generation":"$argon2id$v=19$m=19456,t=2,p=1$SALTSALT$HASHHASH"}"#;
        let c = Credential::of(&secret("c1", "42", json));
        let why = c.record().expect_err("unreadable");
        let shown = format!(
            "{c:?} | {}",
            crate::identity::store::Error::Corrupt(why.clone())
        );
        assert!(!shown.contains("HASHHASH"), "{shown}");
        assert!(
            why.contains("wrong type") && why.contains("column"),
            "{why}"
        );
        for not_an_object in [&b"[]"[..], b" [1]", b"\"null\"", b"42"] {
            let c = Credential::of(&secret("c2", "43", not_an_object));
            assert!(c.record().is_err(), "{:?}", c.record());
        }
        assert!(
            Credential::of(&secret("c3", "44", b"{not json"))
                .record()
                .is_err_and(|e| e.contains("not valid JSON"))
        );
    }

    #[test]
    fn an_invitation_s_debug_hides_its_token_hash() {
        let inv = crate::api::credential::Invitation {
            hash: "TOKENHASH".into(),
            ..Default::default()
        };
        let stored = crate::identity::invitation::Stored {
            hash: "TOKENHASH".into(),
            expires_at: 1,
        };
        let shown = format!("{inv:?} {stored:?}");
        assert!(!shown.contains("TOKENHASH"), "{shown}");
        assert!(shown.contains("expires_at"), "{shown}");
    }

    /// The cached record is its JSON, which holds the password hash and the sealed TOTP seed:
    /// neither may show in Debug output (logs, panics).
    #[test]
    fn a_cached_credential_s_debug_hides_the_record_s_secrets() {
        let json = br#"{"email":"bob@acme.example","passwordHash":"$argon2id$v=19$m=19456,t=2,p=1$SALTSALT$HASHHASH","totpSealed":"SEALEDSEED","totpPending":"PENDINGSEED"}"#;
        let c = Credential::of(&secret("c1", "42", json));
        let r = c.record().expect("record");
        assert!(r.password_hash.is_some() && r.totp_sealed.is_some() && r.totp_pending.is_some());
        let shown = format!("{c:?}");
        for secret in [
            "HASHHASH",
            "SALTSALT",
            "SEALEDSEED",
            "PENDINGSEED",
            "argon2id",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("bytes"), "{shown}");
    }
}
