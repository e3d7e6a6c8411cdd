//! The identity HTTP server: pages for people (accept an invitation, set a password, enrol
//! TOTP, log in, see one's organizations), a JSON API for tools (`POST /api/v1/login`,
//! `POST /api/v1/ownership-transfer`) and the API server's token webhook
//! (`POST /authenticate`) and authorization webhook (`POST /authorize`). Served over TLS by the same server code as the admission webhook.
//!
//! Handlers are thin: they parse, call `flow` (the decisions shared by pages and API) and
//! render. Every failure a guesser could learn from gets the same text.

mod api;
mod flow;
mod html;
mod pages;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::runtime::reflector::Store as Cache;

use super::service::Identity;
use crate::api::{Membership, Organization};

pub use flow::{LoginError, LoginOk, Request};

/// Bodies larger than this are refused before parsing (a form or login is a few hundred bytes).
pub const MAX_BODY: usize = 16 * 1024;

pub struct AppState {
    pub identity: Arc<Identity>,
    pub orgs: Cache<Organization>,
    pub memberships: Cache<Membership>,
    pub credentials: Cache<KubeSecret>,
    /// Prefix of Kubernetes user names (as the controller binds them).
    pub subject_prefix: String,
    /// Members the admission webhook saw being cut off, before the caches do.
    pub revocations: super::revocation::Revocations,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/accept", get(pages::accept_form).post(pages::accept))
        .route("/enrol", post(pages::enrol))
        .route("/api/v1/login", post(api::login))
        .route("/api/v1/ownership-transfer", post(api::ownership_transfer))
        .route("/authenticate", post(api::authenticate))
        .route("/authorize", post(api::authorize))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
