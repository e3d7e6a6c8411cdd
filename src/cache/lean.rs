//! Objects as the large watches read them: without `metadata.managedFields`. The API server
//! sends them with every object listed and every event, a nested map per field any manager set
//! (a key and a map for each of a Membership's status fields roster applies), and no rule of
//! roster's reads them. `slim` drops them, but only after they are built; here they are
//! skipped while parsing, so the lists and the echo of every status write roster makes never
//! build them.
//!
//! One difference from the kinds' own readers (red team 30): a metadata key given twice is
//! refused here (serde's derive), where k8s-openapi keeps the last. The API server encodes
//! every object it sends and never repeats a key; an event refused would be one the watch
//! reports as failed, the cache keeping the object as it was, never an empty object.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::api::{Membership, MembershipSpec, MembershipStatus};

/// An object of kind `K` read without its managedFields (`Api<Lean<K>>` watches `K`).
#[derive(Clone, Debug)]
pub struct Lean<K>(pub K);

impl<K: Resource> Resource for Lean<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        self.0.meta()
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        self.0.meta_mut()
    }
}

impl<K: Serialize> Serialize for Lean<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// `ObjectMeta` as read here: every field but managedFields, which serde skips unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<Meta> for ObjectMeta {
    /// No `..`: a field added to `ObjectMeta` does not compile until it is read here too (and
    /// one of `Meta`'s left unread is a warning).
    fn from(m: Meta) -> Self {
        ObjectMeta {
            annotations: m.annotations,
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

impl<'de> Deserialize<'de> for Lean<Membership> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A Membership's fields as its own Deserialize reads them (kube's derive: apiVersion
        /// and kind are not checked there either).
        #[derive(Deserialize)]
        struct Wire {
            metadata: Meta,
            spec: MembershipSpec,
            status: Option<MembershipStatus>,
        }
        let Wire {
            metadata,
            spec,
            status,
        } = Wire::deserialize(d)?;
        Ok(Lean(Membership {
            metadata: metadata.into(),
            spec,
            status,
        }))
    }
}

impl<'de> Deserialize<'de> for Lean<Secret> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A Secret's fields, apiVersion and kind checked when present as k8s-openapi's own
        /// reader checks them.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Wire {
            api_version: Option<String>,
            kind: Option<String>,
            data: Option<BTreeMap<String, ByteString>>,
            immutable: Option<bool>,
            metadata: Option<Meta>,
            string_data: Option<BTreeMap<String, String>>,
            #[serde(rename = "type")]
            type_: Option<String>,
        }
        let Wire {
            api_version,
            kind,
            data,
            immutable,
            metadata,
            string_data,
            type_,
        } = Wire::deserialize(d)?;
        for (found, wanted) in [(api_version, "v1"), (kind, "Secret")] {
            if let Some(found) = found.filter(|f| f != wanted) {
                return Err(serde::de::Error::invalid_value(
                    serde::de::Unexpected::Str(&found),
                    &wanted,
                ));
            }
        }
        Ok(Lean(Secret {
            data,
            immutable,
            metadata: metadata.map(Into::into).unwrap_or_default(),
            string_data,
            type_,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed() -> serde_json::Value {
        serde_json::json!([
            {"manager": "kubectl", "operation": "Apply", "apiVersion": "roster.dev/v1alpha1",
             "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
             "fieldsV1": {"f:spec": {"f:email": {}, "f:projects": {}}}},
            {"manager": "roster", "operation": "Apply", "apiVersion": "roster.dev/v1alpha1",
             "time": "2026-01-01T00:00:01Z", "fieldsType": "FieldsV1", "subresource": "status",
             "fieldsV1": {"f:status": {"f:phase": {}, "f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}}}}}}
        ])
    }

    fn membership() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "roster.dev/v1alpha1",
            "kind": "Membership",
            "metadata": {
                "name": "bob", "namespace": "acme", "uid": "7c1d", "resourceVersion": "42",
                "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z",
                "deletionTimestamp": "2026-01-02T00:00:00Z", "deletionGracePeriodSeconds": 0,
                "labels": {"roster.dev/bootstrap": "true"},
                "annotations": {"roster.dev/resend-invitation": "1", "note": "x"},
                "finalizers": ["roster.dev/cleanup"], "generateName": "b-", "selfLink": "/x",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Namespace", "name": "acme",
                                     "uid": "9f"}],
                "managedFields": managed(),
            },
            "spec": {"email": "bob@acme.example", "role": "Admin", "disabled": true,
                     "projects": [{"name": "web", "role": "Developer"}]},
            "status": {"phase": "Active", "observedGeneration": 3,
                       "access": [{"project": "web", "namespace": "acme-web", "role": "Developer"}]}
        })
    }

    /// Everything but managedFields reads as the kind's own Deserialize reads it.
    fn reads_as_the_kind_without_managed_fields<K>(json: serde_json::Value)
    where
        K: Resource + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
        Lean<K>: serde::de::DeserializeOwned,
    {
        let json = serde_json::to_vec(&json).expect("json");
        let lean: Lean<K> = serde_json::from_slice(&json).expect("lean");
        let mut whole: K = serde_json::from_slice(&json).expect("whole");
        assert!(whole.meta().managed_fields.is_some());
        whole.meta_mut().managed_fields = None;
        assert_eq!(lean.0, whole);
    }

    #[test]
    fn a_lean_membership_is_the_membership_without_managed_fields() {
        reads_as_the_kind_without_managed_fields::<Membership>(membership());
    }

    #[test]
    fn a_lean_secret_is_the_secret_without_managed_fields() {
        reads_as_the_kind_without_managed_fields::<Secret>(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "type": "roster.dev/credential",
            "immutable": false,
            "metadata": {"name": "c", "namespace": "roster-system", "resourceVersion": "7",
                         "labels": {"roster.dev/organization": "acme"},
                         "managedFields": managed()},
            "data": {"record": "e30="}, "stringData": {"k": "v"}
        }));
    }

    /// What the kind's own reader refuses, this one refuses too: a watch event it cannot
    /// read is an error, not an empty object.
    #[test]
    fn what_the_kind_refuses_a_lean_read_refuses() {
        let mut no_spec = membership();
        no_spec.as_object_mut().expect("object").remove("spec");
        let mut wrong_type = membership();
        wrong_type["spec"]["disabled"] = serde_json::json!("yes");
        let mut bad_meta = membership();
        bad_meta["metadata"]["generation"] = serde_json::json!("three");
        for bad in [no_spec, wrong_type, bad_meta] {
            let json = serde_json::to_vec(&bad).expect("json");
            assert!(serde_json::from_slice::<Membership>(&json).is_err());
            assert!(serde_json::from_slice::<Lean<Membership>>(&json).is_err());
        }
        // Red team 30: another kind is not taken for a Secret.
        for other in [
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
            r#"{"apiVersion":"v2","kind":"Secret","metadata":{"name":"c"}}"#,
        ] {
            assert!(serde_json::from_str::<Secret>(other).is_err());
            assert!(serde_json::from_str::<Lean<Secret>>(other).is_err());
        }
    }
}
