//! The validating admission webhook: a thin HTTPS handler around the pure `validate()`.
//!
//! parse → `validate()` against the in-memory index (the controller's caches; no API call per
//! request) → allow/deny. A body that is not an AdmissionReview, an object that does not parse,
//! anything unexpected: a denial with a reason, never a panic or a hang.

mod index;
pub mod validate;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use kube::api::{Patch, PatchParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::{Api, Client};
use serde_json::json;

pub use index::StoreIndex;
use validate::{Decision, Object, Policy, Request};

use crate::api::contract::{FIELD_MANAGER, MANAGED_BY, MANAGER};
use crate::api::{GROUP, Membership, Organization, Project, VERSION};

/// Name of the ValidatingWebhookConfiguration roster writes.
pub const CONFIGURATION_NAME: &str = crate::api::GROUP;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write ValidatingWebhookConfiguration {CONFIGURATION_NAME}: {0}")]
    Register(#[source] kube::Error),
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Register(_) => "RegistrationFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct AppState<I> {
    pub index: I,
    pub policy: Policy,
    /// Until the caches have listed, every request is denied: deciding on a half-filled index
    /// could let a second owner or a duplicate e-mail through.
    pub ready: Box<dyn Fn() -> bool + Send + Sync>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Where allowed changes that cut a member off are noted for TokenReview (identity).
    pub revocations: Option<crate::identity::revocation::Revocations>,
}

pub fn router<I: validate::Index + Send + Sync + 'static>(state: Arc<AppState<I>>) -> Router {
    Router::new()
        .route("/validate", post(admit::<I>))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn admit<I: validate::Index + Send + Sync + 'static>(
    State(state): State<Arc<AppState<I>>>,
    body: Bytes,
) -> impl IntoResponse {
    answer_typed(&body, &state).unwrap_or_else(|| answer_general(&body, &state))
}

/// roster's own kinds, read straight into their types. kube's AdmissionReview flattens its type
/// fields, which makes serde buffer the whole body first, and a DynamicObject is read once more
/// into the type: two thirds of what the webhook's handler cost in the admission benchmark
/// (perf). None for anything else, and for any body the general path would refuse, which then
/// names what is wrong: the answer is the general path's whenever this one gives one.
fn answer_typed<I: validate::Index>(
    body: &[u8],
    state: &AppState<I>,
) -> Option<(StatusCode, Json<serde_json::Value>)> {
    match peek_kind(body)?.as_str() {
        "Organization" => read_typed(body, Object::Organization)
            .map(|(request, objects)| answer(&request, Ok(objects), state)),
        "Project" => read_typed(body, Object::Project)
            .map(|(request, objects)| answer(&request, Ok(objects), state)),
        "Membership" => read_typed(body, Object::Membership)
            .map(|(request, objects)| answer(&request, Ok(objects), state)),
        _ => None,
    }
}

/// Any body: read as kube's AdmissionReview of a DynamicObject, then the object as its kind.
fn answer_general<I: validate::Index>(
    body: &[u8],
    state: &AppState<I>,
) -> (StatusCode, Json<serde_json::Value>) {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::OK,
                Json(denied_review(&format!(
                    "the request is not an AdmissionReview: {e}"
                ))),
            );
        }
    };
    // roster registers for admission.k8s.io/v1 only; anything else is not the API server.
    if review.types.api_version != kube::core::admission::META_API_VERSION_V1
        || review.types.kind != kube::core::admission::META_KIND
    {
        return (
            StatusCode::OK,
            Json(denied_review(
                "the request is not an admission.k8s.io/v1 AdmissionReview",
            )),
        );
    }
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::OK,
                Json(denied_review(&format!(
                    "the AdmissionReview carries no request: {e}"
                ))),
            );
        }
    };
    let parse = |o: &Option<DynamicObject>| -> std::result::Result<Option<Object>, String> {
        let Some(o) = o else { return Ok(None) };
        let parsed = match request.kind.kind.as_str() {
            "Organization" => o
                .clone()
                .try_parse::<Organization>()
                .map(Object::Organization),
            "Project" => o.clone().try_parse::<Project>().map(Object::Project),
            "Membership" => o.clone().try_parse::<Membership>().map(Object::Membership),
            other => return Err(format!("roster does not validate kind {other}")),
        };
        parsed
            .map(Some)
            .map_err(|e| format!("the {} does not parse: {e}", request.kind.kind))
    };
    let objects = parse(&request.object).and_then(|o| Ok((o, parse(&request.old_object)?)));
    answer(&request, objects, state)
}

/// The envelope of an AdmissionReview, its type fields read as plain fields; `response` read as
/// kube's type reads it (a body whose `response` is not one is no AdmissionReview).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<R> {
    api_version: String,
    kind: String,
    request: R,
    #[serde(default, rename = "response")]
    _response: Option<AdmissionResponse>,
}

/// What the typed read needs to know first, and what the general read insists on that a typed
/// one would let pass: objects that are JSON objects (a derived type also reads an array).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peek {
    kind: kube::core::GroupVersionKind,
    #[serde(default, rename = "object")]
    _object: Option<strict::Object>,
    #[serde(default, rename = "oldObject")]
    _old_object: Option<strict::Object>,
}

/// The kind of the object under review, when the body is an admission.k8s.io/v1
/// AdmissionReview that names one and is valid JSON throughout (the typed read skips fields it
/// does not know without looking inside them; the general read would refuse a body with
/// invalid UTF-8, a number out of range or nesting past serde_json's limit anywhere).
fn peek_kind(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<strict::Object>(body).ok()?;
    let e: Envelope<Peek> = serde_json::from_slice(body).ok()?;
    (e.api_version == kube::core::admission::META_API_VERSION_V1
        && e.kind == kube::core::admission::META_KIND)
        .then_some(e.request.kind.kind)
}

/// The request with its objects read as `K` and taken out of it; None when the body does not
/// read that way (the general path then says why).
fn read_typed<K: kube::Resource + serde::de::DeserializeOwned>(
    body: &[u8],
    wrap: fn(K) -> Object,
) -> Option<(AdmissionRequest<K>, Objects)> {
    let e: Envelope<AdmissionRequest<K>> = serde_json::from_slice(body).ok()?;
    let mut request = e.request;
    // As kube's TryInto does: the response names the review's version and kind.
    request.types = kube::core::TypeMeta {
        api_version: e.api_version,
        kind: e.kind,
    };
    let objects = (
        request.object.take().map(wrap),
        request.old_object.take().map(wrap),
    );
    Some((request, objects))
}

/// JSON read as strictly as serde_json builds a `Value` from it, keeping nothing.
mod strict {
    use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

    /// Any JSON value, every part of it read.
    pub struct Any;
    /// A JSON object (serde_json's `deserialize_map` refuses anything else), every part read.
    pub struct Object;

    struct Reads;

    impl<'de> Visitor<'de> for Reads {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<Any>()?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<Any, Any>()?.is_some() {}
            Ok(())
        }
    }

    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Reads).map(|()| Any)
        }
    }

    impl<'de> Deserialize<'de> for Object {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(Reads).map(|()| Object)
        }
    }
}

/// The object under review and the one stored before it.
type Objects = (Option<Object>, Option<Object>);

fn membership(o: &Option<Object>) -> Option<&Membership> {
    match o {
        Some(Object::Membership(m)) => Some(m),
        _ => None,
    }
}

/// Decides on a request whose objects are read (or could not be), counts and notes the
/// decision, and answers the API server.
fn answer<K: kube::Resource, I: validate::Index>(
    request: &AdmissionRequest<K>,
    objects: std::result::Result<Objects, String>,
    state: &AppState<I>,
) -> (StatusCode, Json<serde_json::Value>) {
    let started = std::time::Instant::now();
    let decision = match objects {
        _ if !(state.ready)() => Decision::Deny { reason: "NotReady", message: "roster is starting and has not loaded the organizations yet; retry in a few seconds".into() },
        Ok((object, old_object)) => {
            let decision = decide(request, object.as_ref(), old_object.as_ref(), state);
            if matches!(decision, Decision::Allow)
                && let Some(r) = &state.revocations
                && !request.dry_run
            {
                note_revocation(
                    request.namespace.as_deref(),
                    membership(&object),
                    membership(&old_object),
                    r,
                    &state.index,
                );
            }
            decision
        }
        Err(message) => Decision::Deny {
            reason: "Unparseable",
            message,
        },
    };
    match &decision {
        Decision::Allow => state.metrics.admitted(true, "Allowed", started.elapsed()),
        Decision::Deny { reason, .. } => state.metrics.admitted(false, reason, started.elapsed()),
    }
    let response = match decision {
        Decision::Allow => AdmissionResponse::from(request),
        Decision::Deny { reason, message } => {
            tracing::info!(
                reason,
                user = %request.user_info.username.as_deref().unwrap_or(""),
                kind = %request.kind.kind,
                namespace = %request.namespace.as_deref().unwrap_or(""),
                name = %request.name,
                dry_run = request.dry_run,
                "denied"
            );
            AdmissionResponse::from(request).deny(message)
        }
    };
    (
        StatusCode::OK,
        Json(
            serde_json::to_value(response.into_review())
                .unwrap_or_else(|_| denied_review("internal error")),
        ),
    )
}

fn decide<K: kube::Resource, I: validate::Index>(
    request: &AdmissionRequest<K>,
    object: Option<&Object>,
    old_object: Option<&Object>,
    state: &AppState<I>,
) -> Decision {
    let groups = request.user_info.groups.clone().unwrap_or_default();
    validate::validate(
        &Request {
            operation: (&request.operation).into(),
            namespace: request.namespace.as_deref().unwrap_or(""),
            name: &request.name,
            object,
            old_object,
            username: request.user_info.username.as_deref().unwrap_or(""),
            groups: &groups,
            now: k8s_openapi::jiff::Timestamp::now(),
        },
        &state.index,
        &state.policy,
    )
}

/// An allowed change that takes a member's access away (disabled, expired, deleted) is noted
/// before it is stored, so that their tokens stop working with no watch delay.
fn note_revocation<I: validate::Index>(
    namespace: Option<&str>,
    new: Option<&Membership>,
    old: Option<&Membership>,
    revocations: &crate::identity::revocation::Revocations,
    index: &I,
) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let cut_off = |m: &Membership| crate::access::cut_off(m, now).is_some();
    let Some(ns) = namespace else {
        return;
    };
    // Only a Membership that exists (same name and UID in the caches) can be noted: a review
    // about an invented one — forged, or of an object that was never stored — revokes nobody.
    let known = |m: &Membership| {
        index
            .memberships_with_email(ns, &m.spec.email)
            .iter()
            .any(|k| k.metadata.name == m.metadata.name && k.metadata.uid == m.metadata.uid)
    };
    // Deleting one of two Memberships of an address (a superseded bootstrap, a duplicate)
    // leaves the member in place.
    let last_of_address = |m: &Membership| {
        index
            .memberships_with_email(ns, &m.spec.email)
            .iter()
            .all(|other| other.metadata.name == m.metadata.name)
    };
    let revoked = match (new, old) {
        (None, Some(old)) if known(old) && last_of_address(old) => Some(old),
        (Some(new), _) if known(new) && cut_off(new) => Some(new),
        _ => None,
    };
    match (revoked, new) {
        (Some(m), _) => {
            tracing::info!(namespace = ns, membership = ?m.metadata.name, "member cut off: tokens refused from now");
            revocations.note(m.metadata.uid.as_deref().unwrap_or_default())
        }
        // Lifted only by a real re-enable: the object the change was admitted against was cut
        // off and this one is not. Any other edit admitted against a stale, still-enabled copy
        // (racing the disable) would otherwise lift a revocation made a moment before.
        (None, Some(m)) if known(m) && old.is_some_and(cut_off) => {
            revocations.clear(m.metadata.uid.as_deref().unwrap_or_default())
        }
        (None, Some(_)) => {}
        (None, None) => {}
    }
}

/// A denial for a body we could not even read a request uid from.
fn denied_review(message: &str) -> serde_json::Value {
    serde_json::to_value(AdmissionResponse::invalid(message).into_review())
        .unwrap_or_else(|_| json!({}))
}

/// Where the API server reaches the webhook.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Url(String),
    Service {
        namespace: String,
        name: String,
        port: i32,
    },
}

/// The webhook's name in the ValidatingWebhookConfiguration.
pub fn webhook_name() -> String {
    format!("validate.{GROUP}")
}

/// Sets only the caBundle of the ValidatingWebhookConfiguration that someone else (the Helm
/// chart) owns: server-side apply of that one field, by roster's field manager, so that the
/// chart's fields stay the chart's and `helm uninstall` still removes the whole object.
pub async fn register_ca_bundle(client: &Client, ca_pem: &str) -> Result<()> {
    use base64::Engine;
    let patch = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME},
        "webhooks": [{
            "name": webhook_name(),
            "clientConfig": {"caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem)},
        }],
    });
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    api.patch(
        CONFIGURATION_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Register)?;
    Ok(())
}

/// Writes the ValidatingWebhookConfiguration: roster's three kinds only, failurePolicy Fail,
/// 5 s timeout, no side effects (dry runs are answered like real requests), roster's own
/// namespace excluded so that roster can always be repaired.
pub async fn register(
    client: &Client,
    endpoint: &Endpoint,
    ca_pem: &str,
    own_namespace: Option<&str>,
) -> Result<()> {
    let ca_bundle = Some(ByteString(ca_pem.as_bytes().to_vec()));
    let client_config = match endpoint {
        Endpoint::Url(url) => WebhookClientConfig {
            url: Some(url.clone()),
            ca_bundle,
            service: None,
        },
        Endpoint::Service {
            namespace,
            name,
            port,
        } => WebhookClientConfig {
            service: Some(ServiceReference {
                namespace: namespace.clone(),
                name: name.clone(),
                path: Some("/validate".into()),
                port: Some(*port),
            }),
            ca_bundle,
            url: None,
        },
    };
    let vwc = ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(CONFIGURATION_NAME.into()),
            labels: Some([(MANAGED_BY.to_string(), MANAGER.to_string())].into()),
            ..Default::default()
        },
        webhooks: Some(vec![ValidatingWebhook {
            name: webhook_name(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            failure_policy: Some("Fail".into()),
            match_policy: Some("Equivalent".into()),
            timeout_seconds: Some(5),
            client_config,
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![GROUP.into()]),
                api_versions: Some(vec![VERSION.into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into(), "DELETE".into()]),
                resources: Some(vec![
                    "organizations".into(),
                    "projects".into(),
                    "memberships".into(),
                ]),
                scope: Some("Namespaced".into()),
            }]),
            namespace_selector: own_namespace.map(|ns| LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".into(),
                    operator: "NotIn".into(),
                    values: Some(vec![ns.to_string()]),
                }]),
                match_labels: None,
            }),
            ..Default::default()
        }]),
    };
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    api.patch(
        CONFIGURATION_NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&vwc),
    )
    .await
    .map_err(Error::Register)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod fuzz;
#[cfg(test)]
mod tests;
