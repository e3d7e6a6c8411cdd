//! What `roster run` is asked to do, typed: built from the command line by `main.rs` (argument
//! parsing only), validated there, and handed whole to `runtime::run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::controller::Settings;
use crate::webhook::Endpoint;

#[derive(Clone, Debug)]
pub struct Config {
    pub log_format: LogFormat,
    /// Exit when standard input closes (test harnesses that must never leave roster running).
    pub lifeline: bool,
    /// roster's own namespace (credentials, keys, security logs; the webhook never applies
    /// there, so roster can always be repaired).
    pub namespace: Option<String>,
    /// Run the controller; without it the caches are still kept for the webhook and identity.
    pub controller: bool,
    /// Elect a leader on this Lease (in roster's namespace): only the leader reconciles.
    pub lease: Option<String>,
    /// This replica's name (the pod's): its lease identity and User-Agent.
    pub instance: String,
    pub resync: Duration,
    /// How roles map to RBAC and which user names stand for members.
    pub settings: Settings,
    /// Who may do anything the organization rules allow.
    pub trusted_users: Vec<String>,
    pub trusted_groups: Vec<String>,
    pub metrics_addr: Option<SocketAddr>,
    /// Keep one serving certificate for every replica in this Secret of roster's namespace.
    pub serving_secret: Option<String>,
    /// DNS names of that certificate (besides the webhook Service's).
    pub serving_names: Vec<String>,
    /// How long a serving certificate is valid; renewed in its last third.
    pub serving_lifetime: Duration,
    pub webhook: Option<WebhookConfig>,
    pub identity: Option<IdentityConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub addr: SocketAddr,
    /// Where the API server reaches it (goes into the ValidatingWebhookConfiguration and the
    /// serving certificate).
    pub endpoint: Endpoint,
    /// Only clients with a certificate of this CA (the API server) get a TLS session.
    pub client_ca: Option<PathBuf>,
    /// Write the whole ValidatingWebhookConfiguration (a development setup), or only its
    /// caBundle (the Helm chart owns the rest, so that `helm uninstall` removes it).
    pub register_whole: bool,
}

#[derive(Clone, Debug)]
pub struct IdentityConfig {
    pub addr: SocketAddr,
    /// Where members reach the pages (goes into invitation links).
    pub public_url: String,
    /// Serving certificate and key files; without them one is made at start.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// The API server's token and authorization webhooks, on a listener of their own.
    pub authn: Option<AuthnConfig>,
    /// The API server's audiences; empty: learn the issuer it publishes.
    pub audiences: Vec<String>,
    pub smtp: Option<SmtpConfig>,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub max_concurrent_hashes: usize,
    pub rate_per_source: u32,
    pub rate_per_member: u32,
    /// The least time a failed login takes to answer.
    pub login_failure_floor: std::time::Duration,
    /// What members' kubeconfigs point at (the account page offers one).
    pub cluster: Option<ClusterAccessConfig>,
}

/// `--cluster-server`, `--cluster-ca-file`, `--identity-ca-file`: read at start.
#[derive(Clone, Debug)]
pub struct ClusterAccessConfig {
    pub server: String,
    pub ca_file: Option<PathBuf>,
    pub identity_ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct AuthnConfig {
    pub addr: SocketAddr,
    pub client_ca: PathBuf,
}

#[derive(Clone)]
pub struct SmtpConfig {
    pub url: String,
    pub from: String,
    pub credentials: Option<(String, String)>,
    pub allow_plaintext: bool,
}

// The SMTP password must never reach a log.
impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("url", &self.url)
            .field("from", &self.from)
            .field("credentials", &self.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

/// The host of a URL (brackets of an IPv6 literal removed).
pub fn url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            url_host("https://id.acme.example:8444/x").as_deref(),
            Some("id.acme.example")
        );
        assert_eq!(
            url_host("https://[::1]:8443/validate").as_deref(),
            Some("::1")
        );
        assert_eq!(url_host("https://127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("not a url"), None);
    }

    #[test]
    fn smtp_passwords_do_not_print() {
        let c = SmtpConfig {
            url: "smtps://mail.example:465".into(),
            from: "roster@acme.example".into(),
            credentials: Some(("roster".into(), "hunter2".into())),
            allow_plaintext: false,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
