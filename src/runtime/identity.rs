//! Starting identity: keys, hasher, mailer, security log, the identity service, and its two
//! listeners — the members' (pages, login API) and the API server's (token and authorization
//! webhooks, mTLS).

use std::sync::Arc;

use super::{Error, IdentityConfig, Result, Shutdown, kube_api, url_host};
use crate::cache::Stores;
use crate::identity::{audit, limit, mail, password, revocation, server, service};
use crate::tls;

pub async fn start(
    config: &IdentityConfig,
    namespace: &str,
    client: &kube::Client,
    stores: &Stores,
    revocations: revocation::Revocations,
    shared: Option<Arc<tls::Serving>>,
    shutdown: &Shutdown,
) -> Result<Arc<service::Identity>> {
    let keys = service::Keys::load_or_create(client.clone(), namespace).await?;
    let hasher = password::Hasher::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        1,
        config.max_concurrent_hashes,
    )?;
    let mailer = match &config.smtp {
        Some(smtp) => Some(mail::Mailer::new(
            &smtp.url,
            &smtp.from,
            smtp.credentials.clone(),
            smtp.allow_plaintext,
        )?),
        None => None,
    };
    let audiences = if config.audiences.is_empty() {
        vec![kube_api::api_server_issuer(client).await?]
    } else {
        config.audiences.clone()
    };
    let log = audit::SecurityLog::start(
        client.clone(),
        namespace,
        stores.orgs.clone(),
        stores.emails.clone(),
    );
    let credentials = stores
        .credentials
        .clone()
        .ok_or(Error::Internal("the credential cache is missing"))?;
    let identity = Arc::new(
        service::Identity::new(
            client.clone(),
            namespace,
            keys,
            hasher,
            config.public_url.clone(),
            mailer,
            log,
        )
        .with_credential_cache(credentials),
    );
    let serving = match (&config.cert, shared) {
        (Some((cert, key)), _) => Arc::new(tls::Serving::new(&tls::Certificates::from_pem_files(
            cert, key, None,
        )?)?),
        (None, Some(shared)) => shared,
        (None, None) => {
            tracing::warn!(
                "no --identity-cert: serving a certificate made now, which browsers and the API server will not trust"
            );
            let host = url_host(&config.public_url).unwrap_or_else(|| "localhost".into());
            Arc::new(tls::Serving::new(&tls::Certificates::generate(&[host])?)?)
        }
    };
    let state = Arc::new(server::AppState {
        identity: identity.clone(),
        orgs: stores.orgs.clone(),
        memberships: stores.memberships.clone(),
        revocations,
        limits: limit::Limits::new(config.rate_per_source, config.rate_per_member)
            .with_failure_floor(config.login_failure_floor),
        audiences: audiences.clone(),
        cluster: cluster_access(config.cluster.as_ref())?,
        emails: Some(stores.emails.clone()),
    });
    let listener = tls::listen(config.addr).await?;
    shutdown.supervise(
        "identity server",
        tls::serve(
            listener,
            tls::server_config(serving.clone(), None)?,
            server::router(state.clone()),
            shutdown.wait(),
        ),
    );
    tracing::info!(addr = %config.addr, url = %config.public_url, ?audiences, "identity server listening");
    if let Some(authn) = &config.authn {
        let tls_config = tls::server_config(serving, Some(&authn.client_ca))?;
        let listener = tls::listen(authn.addr).await?;
        shutdown.supervise(
            "token and authorization webhooks",
            tls::serve(
                listener,
                tls_config,
                server::api_server_router(state),
                shutdown.wait(),
            ),
        );
        tracing::info!(addr = %authn.addr, "token and authorization webhooks listening (API server only)");
    }
    Ok(identity)
}

/// The kubeconfig settings, their files read once at start (a missing file is a start-up
/// error, not a broken page later).
fn cluster_access(
    c: Option<&super::config::ClusterAccessConfig>,
) -> Result<Option<crate::identity::kubeconfig::ClusterAccess>> {
    let Some(c) = c else { return Ok(None) };
    let read = |p: &Option<std::path::PathBuf>| -> Result<Option<String>> {
        p.as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))
            })
            .transpose()
    };
    Ok(Some(crate::identity::kubeconfig::ClusterAccess {
        server: c.server.clone(),
        ca_pem: read(&c.ca_file)?,
        identity_ca_pem: read(&c.identity_ca_file)?,
    }))
}
