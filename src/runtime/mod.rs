//! `roster run`: one process with the controller, the admission webhook, the identity server
//! and the API server's token and authorization webhooks, all reading the same caches.
//!
//! The runtime owns what they share: logging, the Kubernetes client, the caches, signals and
//! the lifeline, and supervision. Failure policy, endpoint by endpoint — an endpoint something
//! depends on never keeps running half deaf:
//!
//! | task | if it ends with an error |
//! |---|---|
//! | admission webhook server | roster stops (the API server cannot write roster's kinds without it; the Deployment restarts roster) |
//! | identity server (pages, login API) | roster stops (members cannot log in) |
//! | token and authorization webhooks | roster stops (the API server refuses members' tokens meanwhile: failurePolicy Deny) |
//! | controller | roster stops |
//! | metrics and health server | logged; the readiness and liveness probes that use it fail, and the kubelet restarts roster |
//!
//! On SIGTERM, SIGINT or a closed lifeline, everything stops; in-flight reconciles get 10 s.

mod config;
mod identity;
mod kube_api;
mod lease;
mod serving;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use config::{
    AuthnConfig, ClusterAccessConfig, Config, IdentityConfig, LogFormat, SmtpConfig, WebhookConfig,
    url_host,
};
pub use lease::Leadership;
#[cfg(test)]
pub use lease::guarded;

use crate::Reason;
use crate::cache::Caches;
use crate::{controller, tls, webhook};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("no Kubernetes configuration (KUBECONFIG or in-cluster): {0}")]
    Kubeconfig(#[source] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error("the Kubernetes API server does not answer: {0}")]
    ApiServer(#[source] kube::Error),
    #[error(
        "{0}; install them first: kubectl apply -f crds/ (or `roster crds | kubectl apply -f -`)"
    )]
    CrdsMissing(String),
    #[error("cannot tell which user roster runs as (SelfSubjectReview): {0}")]
    WhoAmI(String),
    #[error(
        "cannot learn the API server's token audience from its service-account issuer ({0}); pass --token-audience"
    )]
    Audience(String),
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error(transparent)]
    Webhook(#[from] webhook::Error),
    #[error("identity: {0}")]
    Identity(#[from] crate::identity::service::Error),
    #[error("argon2 parameters: {0}")]
    Argon2(#[from] crate::identity::password::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] crate::identity::mail::Error),
    #[error("the shared serving certificate: {0}")]
    ServingCertificate(String),
    #[error("internal: {0}")]
    Internal(&'static str),
    #[error("{0}")]
    Config(String),
}

impl Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Runtime(_) => "RuntimeFailed",
            Error::Config(_) => "ConfigInvalid",
            Error::Kubeconfig(_) => "NoKubeconfig",
            Error::Client(_) => "ClientFailed",
            Error::ApiServer(_) => "ApiServerUnreachable",
            Error::CrdsMissing(_) => "CrdsMissing",
            Error::WhoAmI(_) => "WhoAmIFailed",
            Error::Audience(_) => "AudienceUnknown",
            Error::Tls(e) => e.reason(),
            Error::Webhook(e) => e.reason(),
            Error::Identity(e) => e.reason(),
            Error::Argon2(e) => e.reason(),
            Error::Smtp(e) => e.reason(),
            Error::ServingCertificate(_) => "ServingCertificateFailed",
            Error::Internal(_) => "Internal",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Asks every task to stop, and lets each wait for that.
#[derive(Clone)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
    rx: watch::Receiver<bool>,
    /// The supervised servers, awaited at the end so that they drain their connections.
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Shutdown {
    fn new() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx,
            rx,
            tasks: Arc::default(),
        }
    }

    /// Awaits `task` at the end too (the lease's release).
    fn track(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(task);
        }
    }

    /// Resolves when every supervised server has ended (after shutdown: drained).
    async fn drained(&self) {
        let tasks = match self.tasks.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => Vec::new(),
        };
        futures::future::join_all(tasks).await;
    }

    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// Resolves once shutdown is asked for.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Runs a server something depends on; if it ends with an error, everything stops.
    fn supervise<E: std::fmt::Display + Reason + Send + 'static>(
        &self,
        what: &'static str,
        task: impl Future<Output = std::result::Result<(), E>> + Send + 'static,
    ) {
        let me = self.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(reason = e.reason(), error = %e, "{what} stopped; stopping roster");
                me.trigger();
            }
        });
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.push(handle);
        }
    }
}

/// Runs roster until a signal, a closed lifeline, or a failed endpoint stops it.
pub fn run(config: Config) -> Result<()> {
    init_logging(config.log_format);
    let rt = tokio::runtime::Runtime::new().map_err(Error::Runtime)?;
    let result = rt.block_on(serve(config));
    // What is left is blocking work nothing waits for: the lifeline's read of standard input
    // never ends while the pipe is open, and dropping the runtime waited for it, so a SIGTERM
    // left `roster run --lifeline` running until its parent closed the pipe or killed it.
    rt.shutdown_background();
    result
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config) -> Result<()> {
    let client = kube_api::client(&config.instance).await?;
    kube_api::crds_installed(&client).await?;
    let shutdown = Shutdown::new();
    watch_signals(shutdown.clone(), config.lifeline);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "roster starting");

    let identity_ns = config.identity.as_ref().and(config.namespace.clone());
    let revocations = crate::identity::revocation::Revocations::default();
    let caches = Caches::new(&client, identity_ns.as_deref());
    let stores = caches.stores();
    let metrics = crate::metrics::Metrics::new();

    if let Some(addr) = config.metrics_addr {
        let listener = tls::listen(addr).await?;
        let ready = {
            let stores = stores.clone();
            Box::new(move || stores.is_ready())
        };
        let app = crate::metrics::router(metrics.clone(), ready);
        let stop = shutdown.wait();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "metrics server stopped");
            }
        });
        tracing::info!(%addr, "metrics and health endpoints listening");
    }

    // One certificate for every replica (and every listener that has no files of its own).
    let shared = match (&config.serving_secret, &config.namespace) {
        (Some(secret), Some(ns)) => {
            let mut names = config.serving_names.clone();
            if let Some(w) = &config.webhook {
                names.extend(certificate_names(&w.endpoint));
            }
            names.sort();
            names.dedup();
            Some(
                serving::start(
                    client.clone(),
                    ns,
                    secret,
                    names,
                    config.serving_lifetime,
                    shutdown.wait(),
                )
                .await?,
            )
        }
        (Some(_), None) => {
            return Err(Error::Internal(
                "a shared certificate needs roster's namespace",
            ));
        }
        (None, _) => None,
    };

    if let Some(w) = &config.webhook {
        // roster's own writes (bootstrap memberships, finalizers) pass its webhook: it trusts
        // the identity it runs as, and only that identity sets the labels roster trusts.
        let me = kube_api::own_username(&client).await?;
        let (serving, mut ca_pem) = match &shared {
            Some(s) => (s.serving.clone(), s.ca_pem.clone()),
            None => {
                let certs = tls::Certificates::generate(&certificate_names(&w.endpoint))?;
                let (_, rx) = watch::channel(certs.ca_pem.clone());
                (Arc::new(tls::Serving::new(&certs)?), rx)
            }
        };
        let state = Arc::new(webhook::AppState {
            index: webhook::StoreIndex {
                orgs: stores.orgs.clone(),
                projects: stores.projects.clone(),
                memberships: stores.memberships.clone(),
                emails: Some(stores.emails.clone()),
                credentials: stores.credentials.clone().zip(config.namespace.clone()),
            },
            policy: webhook::validate::Policy {
                trusted_users: config.trusted_users.clone(),
                trusted_groups: config.trusted_groups.clone(),
                controllers: vec![me],
                subjects: config.settings.subjects.clone(),
            },
            ready: {
                let stores = stores.clone();
                Box::new(move || stores.is_ready())
            },
            metrics: metrics.clone(),
            revocations: identity_ns.as_ref().map(|_| revocations.clone()),
        });
        let tls_config = tls::server_config(serving, w.client_ca.as_deref())?;
        // Bound before the webhook is registered: a port in use is an error at start.
        let listener = tls::listen(w.addr).await?;
        shutdown.supervise(
            "admission webhook server",
            tls::serve(
                listener,
                tls_config,
                webhook::router(state),
                shutdown.wait(),
            ),
        );
        let register = {
            let (client, endpoint, whole) = (client.clone(), w.endpoint.clone(), w.register_whole);
            let namespace = config.namespace.clone();
            move |ca: String| {
                let (client, endpoint, namespace) =
                    (client.clone(), endpoint.clone(), namespace.clone());
                async move {
                    if whole {
                        webhook::register(&client, &endpoint, &ca, namespace.as_deref()).await
                    } else {
                        webhook::register_ca_bundle(&client, &ca).await
                    }
                }
            }
        };
        let first = ca_pem.borrow_and_update().clone();
        register(first).await?;
        tracing::info!(endpoint = ?w.endpoint, "webhook registered");
        // A CA replaced in the shared Secret (a rotation): the caBundle follows.
        let stop = shutdown.wait();
        tokio::spawn(async move {
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    changed = ca_pem.changed() => if changed.is_err() { return },
                }
                let ca = ca_pem.borrow_and_update().clone();
                // Until it is written: the API server trusts nothing else meanwhile.
                loop {
                    match register(ca.clone()).await {
                        Ok(()) => {
                            tracing::info!("webhook caBundle updated to the Secret's new CA");
                            break;
                        }
                        Err(e) => {
                            tracing::error!(reason = e.reason(), error = %e, "cannot update the webhook's caBundle; retrying in 5s");
                            tokio::time::sleep(Duration::from_secs(5)).await;
                        }
                    }
                }
            }
        });
    }

    let identity = match (&config.identity, &identity_ns) {
        (Some(id), Some(ns)) => {
            let serving = shared.as_ref().map(|s| s.serving.clone());
            Some(identity::start(id, ns, &client, &stores, revocations, serving, &shutdown).await?)
        }
        (Some(_), None) => return Err(Error::Internal("identity needs roster's namespace")),
        _ => None,
    };

    let leadership = match (&config.lease, &config.namespace) {
        (Some(lease), Some(ns)) => {
            let (leadership, task) =
                lease::start(client.clone(), ns, lease, &config.instance, shutdown.wait());
            shutdown.track(task);
            leadership
        }
        (Some(_), None) => return Err(Error::Internal("leader election needs roster's namespace")),
        (None, _) => Leadership::always(),
    };
    {
        let (leadership, gauge) = (leadership.clone(), metrics.leader.clone());
        tokio::spawn(async move {
            let mut gained = std::pin::pin!(leadership.gained());
            loop {
                if leadership.is_leader() {
                    gauge.set(1);
                    leadership.lost().await;
                }
                gauge.set(0);
                if futures::StreamExt::next(&mut gained).await.is_none() {
                    return;
                }
            }
        });
    }
    let security_log = identity.as_ref().map(|i| i.security_log());
    let mut settings = config.settings.clone();
    settings.identity = identity.is_some();
    settings.hold_key = crate::controller::guard::HoldKey::random();
    let controller_config = controller::Config {
        settings,
        resync: config.resync,
        metrics,
        identity,
        leadership,
    };
    let run = async {
        if config.controller {
            // Only the leader's writes leave the process (lease::guarded).
            let client = lease::guarded(client.clone(), controller_config.leadership.clone());
            controller::run(client, caches, controller_config, shutdown.wait()).await;
            // The controller ends only when asked to, or when its watches are gone for good.
            shutdown.trigger();
        } else {
            let _stores = caches.drive();
            shutdown.wait().await;
        }
    };
    // In-flight reconciles get a grace period; a hung API call must not keep the process alive.
    let deadline = async {
        shutdown.wait().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    };
    tokio::select! {
        _ = run => {}
        _ = deadline => tracing::warn!("in-flight work did not finish within 10s of shutdown; exiting"),
    }
    // The listeners finish the requests they carry (tls::serve drains for at most 8 s).
    if tokio::time::timeout(Duration::from_secs(10), shutdown.drained())
        .await
        .is_err()
    {
        tracing::warn!("listeners did not drain within 10s of shutdown; exiting");
    }
    // A busy organization's security log waits up to 5 s for its ConfigMap write: what waits,
    // the last requests' entries included, is written now.
    if let Some(log) = security_log
        && tokio::time::timeout(Duration::from_secs(5), log.flush())
            .await
            .is_err()
    {
        tracing::warn!(
            "the security log's last entries were not written within 5s; standard output has them"
        );
    }
    Ok(())
}

fn watch_signals(shutdown: Shutdown, lifeline: bool) {
    tokio::spawn(async move {
        let stdin_closed = async {
            if lifeline {
                let _ = tokio::task::spawn_blocking(|| {
                    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
                })
                .await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate() => {}
            _ = stdin_closed => {}
        }
        tracing::info!("shutting down");
        shutdown.trigger();
    });
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}

/// The names the API server dials: the URL's host, or the Service's DNS names.
fn certificate_names(endpoint: &webhook::Endpoint) -> Vec<String> {
    match endpoint {
        webhook::Endpoint::Url(url) => url_host(url).into_iter().collect(),
        webhook::Endpoint::Service {
            namespace, name, ..
        } => vec![
            format!("{name}.{namespace}.svc"),
            format!("{name}.{namespace}.svc.cluster.local"),
        ],
    }
}
