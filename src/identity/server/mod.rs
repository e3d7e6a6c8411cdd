//! The identity HTTP servers. For people and tools (`router`): pages (accept an invitation,
//! set a password, enrol TOTP, log in, see one's organization) and a JSON API
//! (`POST /api/v1/login`, `POST /api/v1/ownership-transfer`). For the API server alone
//! (`api_server_router`, on a listener of its own that requires the API server's client
//! certificate): the token webhook (`POST /authenticate`) and the authorization webhook
//! (`POST /authorize`), which answer questions about members nobody else may ask.
//!
//! Handlers are thin: they parse, call `flow` (the decisions shared by pages and API) and
//! render. Every failure a guesser could learn from gets the same text.

mod access_review;
#[cfg(test)]
mod account_tests;
mod api;
mod flow;
mod html;
#[cfg(test)]
mod outsider_tests;
mod pages;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::cache::Store as Cache;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::service::Identity;
use crate::api::Organization;

pub use flow::{LoginError, LoginOk, Request};

/// Bodies larger than this are refused before parsing (a form or login is a few hundred bytes).
pub const MAX_BODY: usize = 16 * 1024;

/// The API server's reviews: a SubjectAccessReview carries the member's own label and field
/// selectors, which kubectl does not keep under 16 KiB, and a refused review denies the
/// request (red team 46). Only the API server can send them (client certificate).
pub const MAX_REVIEW: usize = 1024 * 1024;

pub struct AppState {
    pub identity: Arc<Identity>,
    pub orgs: Cache<Organization>,
    pub memberships: crate::cache::Members,
    /// The same Memberships by organization and e-mail; without it, the cache is scanned.
    pub emails: Option<crate::cache::EmailIndex>,
    /// Members the admission webhook saw being cut off, before the caches do.
    pub revocations: super::revocation::Revocations,
    /// Rate limits per source address and per member.
    pub limits: super::limit::Limits,
    /// The API server's audiences: session tokens are issued for them, and a TokenReview that
    /// names other audiences does not accept them.
    pub audiences: Vec<String>,
    /// The API server members reach, for the kubeconfig on the account page; none: the page
    /// shows the `kubectl roster login` command line instead.
    pub cluster: Option<super::kubeconfig::ClusterAccess>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/accept", get(pages::accept_form).post(pages::accept))
        .route("/enrol", post(pages::enrol))
        .route("/api/v1/login", post(api::login))
        .route("/api/v1/ownership-transfer", post(api::ownership_transfer))
        .route("/api/v1/whoami", get(api::whoami))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The API server's side: TokenReview and SubjectAccessReview. Serve it only behind client
/// certificate verification (`tls::Certificates::server_config_requiring_clients`).
pub fn api_server_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/authenticate", post(api::authenticate))
        .route("/authorize", post(api::authorize))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_REVIEW))
        .with_state(state)
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
