//! What `/authorize` reads of a SubjectAccessReview: who asks, and the extras roster's own
//! TokenReview gave them. The rest is checked for its shape (objects are objects, groups a
//! list of strings) and not copied: the request's attributes are RBAC's to judge, and the
//! full k8s-openapi type copied each of them on every request of every member (with cold
//! caches, as served, its parse took 4.3 µs of the handler's 14). What lies inside the
//! attributes is not checked here.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};

pub const API_VERSION: &str = "authorization.k8s.io/v1";
pub const KIND: &str = "SubjectAccessReview";

/// Longest error message sent back: the caller's own strings are in it.
const MESSAGE: usize = 240;

#[derive(Deserialize)]
pub struct AccessReview<'a> {
    #[serde(rename = "apiVersion", borrow)]
    pub api_version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    pub spec: Object<Spec>,
    // Read for their shape only, as the last three fields of `Spec`.
    #[serde(default, rename = "metadata")]
    _metadata: Option<Object<IgnoredAny>>,
    #[serde(default, rename = "status")]
    _status: Option<Object<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default, deserialize_with = "extra")]
    pub extra: Option<BTreeMap<String, Vec<String>>>,
    #[serde(default, rename = "groups")]
    _groups: Option<Vec<String>>,
    #[serde(default, rename = "resourceAttributes")]
    _resource_attributes: Option<Object<IgnoredAny>>,
    #[serde(default, rename = "nonResourceAttributes")]
    _non_resource_attributes: Option<Object<IgnoredAny>>,
}

/// Go writes an extra whose value is a nil list as `null`: an empty one (red team 46).
fn extra<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, Vec<String>>>, D::Error> {
    let extra = Option::<BTreeMap<String, Option<Vec<String>>>>::deserialize(d)?;
    Ok(extra.map(|e| {
        e.into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }))
}

impl<'a> AccessReview<'a> {
    /// The review in `body`, or what is wrong with it.
    pub fn parse(body: &'a [u8]) -> Result<AccessReview<'a>, String> {
        let cut = |m: String| match m.char_indices().nth(MESSAGE) {
            Some((end, _)) => format!("{}…", &m[..end]),
            None => m,
        };
        let Object(r) = serde_json::from_slice::<Object<AccessReview>>(body)
            .map_err(|e| cut(format!("not a SubjectAccessReview: {e}")))?;
        if r.api_version != API_VERSION || r.kind != KIND {
            return Err(cut(format!(
                "not a SubjectAccessReview: {}/{} where {API_VERSION}/{KIND} was expected",
                r.api_version, r.kind
            )));
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
