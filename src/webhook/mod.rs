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
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(&body) {
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
    let started = std::time::Instant::now();
    let decision = if (state.ready)() {
        decide(&request, &state)
    } else {
        Decision::Deny { reason: "NotReady", message: "roster is starting and has not loaded the organizations yet; retry in a few seconds".into() }
    };
    match &decision {
        Decision::Allow => state.metrics.admitted(true, "Allowed", started.elapsed()),
        Decision::Deny { reason, .. } => state.metrics.admitted(false, reason, started.elapsed()),
    }
    if matches!(decision, Decision::Allow)
        && let Some(r) = &state.revocations
    {
        note_revocation(&request, r, &state.index);
    }
    let response = match decision {
        Decision::Allow => AdmissionResponse::from(&request),
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
            AdmissionResponse::from(&request).deny(message)
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

fn decide<I: validate::Index>(
    request: &AdmissionRequest<DynamicObject>,
    state: &AppState<I>,
) -> Decision {
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
    let (object, old_object) = match (parse(&request.object), parse(&request.old_object)) {
        (Ok(o), Ok(old)) => (o, old),
        (Err(e), _) | (_, Err(e)) => {
            return Decision::Deny {
                reason: "Unparseable",
                message: e,
            };
        }
    };
    let groups = request.user_info.groups.clone().unwrap_or_default();
    validate::validate(
        &Request {
            operation: (&request.operation).into(),
            namespace: request.namespace.as_deref().unwrap_or(""),
            name: &request.name,
            object: object.as_ref(),
            old_object: old_object.as_ref(),
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
    request: &AdmissionRequest<DynamicObject>,
    revocations: &crate::identity::revocation::Revocations,
    index: &I,
) {
    if request.dry_run || request.kind.kind != "Membership" {
        return;
    }
    let parse =
        |o: &Option<DynamicObject>| o.clone().and_then(|o| o.try_parse::<Membership>().ok());
    let (new, old) = (parse(&request.object), parse(&request.old_object));
    let now = k8s_openapi::jiff::Timestamp::now();
    let cut_off = |m: &Membership| crate::access::cut_off(m, now).is_some();
    let Some(ns) = request.namespace.as_deref() else {
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
    let revoked = match (&new, &old) {
        (None, Some(old)) if known(old) && last_of_address(old) => Some(old),
        (Some(new), _) if known(new) && cut_off(new) => Some(new),
        _ => None,
    };
    match (revoked, &new) {
        (Some(m), _) => {
            tracing::info!(namespace = ns, membership = ?m.metadata.name, "member cut off: tokens refused from now");
            revocations.note(m.metadata.uid.as_deref().unwrap_or_default())
        }
        // Lifted only by a real re-enable: the object the change was admitted against was cut
        // off and this one is not. Any other edit admitted against a stale, still-enabled copy
        // (racing the disable) would otherwise lift a revocation made a moment before.
        (None, Some(m)) if known(m) && old.as_ref().is_some_and(cut_off) => {
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
