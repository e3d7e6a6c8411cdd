//! What `/authorize` reads of a SubjectAccessReview: who asks, and the extras roster's own
//! TokenReview gave them. The request's attributes are RBAC's to judge: checked for their
//! shape, never copied (the full k8s-openapi type copied each of them on every request of
//! every member, and that was most of the handler's time).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};

pub const API_VERSION: &str = "authorization.k8s.io/v1";
pub const KIND: &str = "SubjectAccessReview";

#[derive(Deserialize)]
pub struct AccessReview<'a> {
    #[serde(rename = "apiVersion", borrow)]
    pub api_version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub spec: Object<Spec<'a>>,
    // Read for their shape only, as the fields below.
    #[serde(default, rename = "metadata")]
    _metadata: Option<Object<IgnoredAny>>,
    #[serde(default, rename = "status")]
    _status: Option<Object<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec<'a> {
    #[serde(default, borrow)]
    pub user: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub uid: Option<Cow<'a, str>>,
    #[serde(default)]
    pub extra: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, borrow, rename = "groups")]
    _groups: Option<Vec<Cow<'a, str>>>,
    #[serde(default, rename = "resourceAttributes")]
    _resource_attributes: Option<Object<IgnoredAny>>,
    #[serde(default, rename = "nonResourceAttributes")]
    _non_resource_attributes: Option<Object<IgnoredAny>>,
}

impl<'a> AccessReview<'a> {
    /// The review in `body`, or what is wrong with it.
    pub fn parse(body: &'a [u8]) -> Result<AccessReview<'a>, String> {
        let Object(r) = serde_json::from_slice::<Object<AccessReview>>(body)
            .map_err(|e| format!("not a SubjectAccessReview: {e}"))?;
        if r.api_version != API_VERSION || r.kind != KIND {
            // Cut: the caller's own strings, sent back.
            let cut = |s: &str| s.chars().take(64).collect::<String>();
            return Err(format!(
                "not a SubjectAccessReview: {}/{} where {API_VERSION}/{KIND} was expected",
                cut(&r.api_version),
                cut(&r.kind)
            ));
        }
        Ok(r)
    }
}

/// A JSON object and nothing else: a derived struct also takes an array of its fields in
/// order, which no API server sends (red team 45).
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Only<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Only(PhantomData)).map(Object)
    }
}
