//! The JSON endpoints: login, ownership transfer, and the API server's TokenReview webhook.

use crate::Reason;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewStatus, UserInfo};
use kube::ResourceExt;
use serde::Deserialize;
use serde_json::json;

use super::access_review::AccessReview;
use super::pages::client;
use super::{AppState, LoginError, LoginOk, flow};
use crate::api::contract::{
    EXTRA_GENERATION, EXTRA_MEMBERSHIP, member_username, organization_group,
};
use crate::identity::Secret;
use crate::identity::audit::Entry;
use crate::tls::ClientAddr;

fn problem(status: StatusCode, reason: &str, message: &str) -> Response {
    (status, Json(json!({"error": message, "reason": reason}))).into_response()
}

fn bad_json(e: &JsonRejection) -> Response {
    let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    problem(
        status,
        "Malformed",
        &format!("the request body is not valid: {}", e.body_text()),
    )
}

pub(super) fn login_status(e: &LoginError) -> StatusCode {
    match e {
        LoginError::Invalid => StatusCode::UNAUTHORIZED,
        LoginError::Locked(_) => StatusCode::LOCKED,
        LoginError::Malformed(_) => StatusCode::BAD_REQUEST,
        LoginError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// `Retry-After` for a rate-limited answer.
pub(super) fn retry_header(e: &LoginError) -> Option<(axum::http::HeaderName, String)> {
    match e {
        LoginError::RateLimited(secs) => Some((axum::http::header::RETRY_AFTER, secs.to_string())),
        _ => None,
    }
}

fn login_error(e: &LoginError) -> Response {
    let mut r = problem(login_status(e), e.reason(), &e.to_string());
    if let Some((k, v)) = retry_header(e)
        && let Ok(v) = axum::http::HeaderValue::from_str(&v)
    {
        r.headers_mut().insert(k, v);
    }
    r
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    organization: String,
    email: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Result<Json<LoginBody>, JsonRejection>,
) -> Response {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(&e),
    };
    let (source_ip, user_agent) = client(addr.as_deref(), &headers);
    let req = flow::Request {
        organization: b.organization,
        email: b.email,
        password: Secret::new(b.password),
        code: b.code,
        source_ip,
        user_agent,
    };
    match flow::login(&state, &req).await {
        Ok(LoginOk::Session {
            token, expires_at, ..
        }) => Json(json!({
            "token": token.expose(),
            "expiresAt": crate::identity::service::rfc3339(expires_at),
        }))
        .into_response(),
        Ok(LoginOk::MustEnrol { .. }) => problem(
            StatusCode::FORBIDDEN,
            "MfaEnrolmentRequired",
            &format!(
                "your organization requires two-factor authentication: log in once at {}/login to set it up",
                state.identity.public_url()
            ),
        ),
        Err(e) => login_error(&e),
    }
}

/// `GET /api/v1/whoami` with a session token (`Authorization: Bearer …`): the member as the
/// controller sees them now — organization, role, phase, MFA, what they can reach and why not —
/// and when the token ends. For `kubectl roster whoami`: a Member may not read Memberships
/// through the API server, but may read their own standing here.
pub async fn whoami(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default();
    if token.is_empty() {
        return problem(
            StatusCode::UNAUTHORIZED,
            "Unauthenticated",
            "send a session token: Authorization: Bearer <token> (kubectl roster login prints one)",
        );
    }
    match flow::review(&state, token, &state.audiences, super::now()) {
        Ok((c, m, _)) => {
            let m = m.full();
            let s = m.status.clone().unwrap_or_default();
            Json(json!({
                "organization": c.org,
                "email": m.spec.email,
                "membership": m.name_any(),
                "role": s.effective_role,
                "phase": s.phase,
                "mfa": s.mfa,
                "access": s.access,
                "tokenExpiresAt": crate::identity::service::rfc3339(c.exp),
            }))
            .into_response()
        }
        Err(reason) => problem(
            StatusCode::UNAUTHORIZED,
            reason,
            "this token is not valid now: log in again (kubectl roster login)",
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TransferBody {
    organization: String,
    /// The current owner, re-authenticating.
    email: String,
    password: String,
    #[serde(default)]
    code: Option<String>,
    new_owner: String,
}

/// Ownership moves only with the owner's password (and code): roster re-authenticates them,
/// then writes `spec.owner` itself. The admission webhook still checks the new owner (an
/// enabled member who accepted their invitation); the old owner keeps their Membership's role.
pub async fn ownership_transfer(
    State(state): State<Arc<AppState>>,
    addr: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Result<Json<TransferBody>, JsonRejection>,
) -> Response {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return bad_json(&e),
    };
    let (source_ip, user_agent) = client(addr.as_deref(), &headers);
    let req = flow::Request {
        organization: b.organization.clone(),
        email: b.email.clone(),
        password: Secret::new(b.password),
        code: b.code,
        source_ip: source_ip.clone(),
        user_agent: user_agent.clone(),
    };
    let now = super::now();
    let (o, m, _, enrolled) =
        match flow::authenticate(&state, &req, "OwnershipTransferFailed", now).await {
            Ok(x) => x,
            Err(e) => return login_error(&e),
        };
    let log = |event: &str, reason: Option<&str>, detail: String| {
        let mut e = Entry::new(&b.organization, Some(&m.spec.email), event)
            .client(source_ip.clone(), user_agent.as_deref())
            .detail(detail);
        if let Some(r) = reason {
            e = e.reason(r);
        }
        state.identity.log(e);
    };
    if !o.spec.owner.eq_ignore_ascii_case(&m.spec.email) {
        log(
            "OwnershipTransferFailed",
            Some("NotOwner"),
            format!("to {}", b.new_owner),
        );
        return problem(
            StatusCode::FORBIDDEN,
            "NotOwner",
            "only the organization's owner can transfer ownership",
        );
    }
    if !enrolled && flow::mfa_required(&o, &m, now) {
        log(
            "OwnershipTransferFailed",
            Some("MfaNotEnrolled"),
            format!("to {}", b.new_owner),
        );
        return problem(
            StatusCode::FORBIDDEN,
            "MfaNotEnrolled",
            "set up two-factor authentication before transferring ownership",
        );
    }
    let Some(version) = o.metadata.resource_version.as_deref() else {
        log(
            "OwnershipTransferFailed",
            Some("ApiError"),
            "the cached Organization has no resourceVersion".into(),
        );
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            "the API server did not take the change; try again",
        );
    };
    match state
        .identity
        .transfer_ownership(&o.name_any(), &b.new_owner, version)
        .await
    {
        Ok(()) => {
            log(
                "OwnershipTransferred",
                None,
                format!("from {} to {}", m.spec.email, b.new_owner),
            );
            Json(json!({"owner": b.new_owner})).into_response()
        }
        // Changed since its owner was checked here (who owns it may have changed too):
        // nothing was written.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            log(
                "OwnershipTransferFailed",
                Some("Changed"),
                s.message.clone(),
            );
            problem(
                StatusCode::CONFLICT,
                "OrganizationChanged",
                "the organization changed while ownership was being moved, and nothing was transferred; try again",
            )
        }
        // The webhook's denial says why (not a member, not accepted, disabled...).
        Err(kube::Error::Api(s)) if s.code == 400 || s.code == 403 || s.code == 422 => {
            log("OwnershipTransferFailed", Some("Denied"), s.message.clone());
            problem(StatusCode::CONFLICT, "TransferDenied", &s.message)
        }
        Err(e) => {
            log("OwnershipTransferFailed", Some("ApiError"), e.to_string());
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "the API server did not take the change; try again",
            )
        }
    }
}

/// The API server's token webhook (`--authentication-token-webhook-config-file`): answers a
/// TokenReview with the member's Kubernetes identity — `roster:<org>:<email>`, a name of that
/// organization alone — checked against their state now and the audiences asked for.
pub async fn authenticate(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let review: TokenReview = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Malformed",
                &format!("not a TokenReview: {e}"),
            );
        }
    };
    let token = review.spec.token;
    let asked = review.spec.audiences.unwrap_or_default();
    let status = match flow::review(&state, &token, &asked, super::now()) {
        Ok((c, m, audiences)) => {
            tracing::debug!(organization = %c.org, membership = %c.membership, "token accepted");
            TokenReviewStatus {
                authenticated: Some(true),
                // Empty when none were asked: the API server's own, as the API documents.
                audiences: (!audiences.is_empty()).then_some(audiences),
                user: Some(UserInfo {
                    username: Some(member_username(&c.org, m.email())),
                    uid: m.uid().map(str::to_string),
                    groups: Some(vec![organization_group(&c.org)]),
                    // Handed back in SubjectAccessReviews (`/authorize`) to find the member by
                    // name and check the token's generation.
                    extra: Some(
                        [
                            (EXTRA_MEMBERSHIP.to_string(), vec![c.membership.clone()]),
                            (EXTRA_GENERATION.to_string(), vec![c.generation.to_string()]),
                        ]
                        .into(),
                    ),
                }),
                error: None,
            }
        }
        Err(reason) => {
            // Only roster's own tokens are worth a log line; anything else is another
            // authenticator's business.
            if token.starts_with("roster.v1.") {
                tracing::info!(reason, "token rejected");
            }
            TokenReviewStatus {
                authenticated: Some(false),
                error: Some(format!("roster: {reason}")),
                ..Default::default()
            }
        }
    };
    // Serialized straight to the body (apiVersion and kind included): every kubectl call of a
    // member pays for this answer.
    Json(TokenReview {
        metadata: Default::default(),
        spec: Default::default(),
        status: Some(status),
    })
    .into_response()
}

/// The API server's authorization webhook (structured authorization configuration, asked only
/// for requests by roster's members, before RBAC): denies a member who is no longer in good
/// standing, else has no opinion.
pub async fn authorize(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let review = match AccessReview::parse(&body) {
        Ok(r) => r.spec.0,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "Malformed", &e),
    };
    let user = review.user.as_deref().unwrap_or_default();
    match flow::authorize(
        &state,
        user,
        review.uid.as_deref(),
        review.extra.as_ref().unwrap_or(&Default::default()),
        super::now(),
    ) {
        // Every request of every member asks this: the answer is the same bytes each time.
        Ok(()) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            NO_OPINION,
        )
            .into_response(),
        Err(reason) => {
            tracing::info!(reason, %user, "request denied: member no longer in good standing");
            Json(json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "status": {"allowed": false, "denied": true, "reason": format!("roster: {reason}")},
            }))
            .into_response()
        }
    }
}

/// A SubjectAccessReview's answer with no opinion: neither allowed nor denied, RBAC decides.
const NO_OPINION: &str = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","status":{"allowed":false}}"#;
