#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use roster::api::ProjectRole;
use roster::api::contract::Request as Ask;
use roster::controller::{self, Settings};
use roster::webhook;

/// roster: organizations, projects and memberships as Kubernetes resources.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (uses KUBECONFIG or the in-cluster service account).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as multi-document YAML.
    Crds {
        /// Write them to the repository's committed copies (crds/ and the Helm chart) instead.
        #[arg(long, conflicts_with = "out")]
        write: bool,
        /// Write them to these files instead of standard output.
        #[arg(long)]
        out: Vec<PathBuf>,
    },
    /// Write a CA and a serving certificate (ca.crt, tls.crt, tls.key) for the identity
    /// server, and with --authn-url the API server's side: its client certificate and the
    /// webhook configuration files, so that the API server can trust roster before it runs.
    Certificate {
        /// DNS names or IP addresses the certificate is for.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        #[arg(long)]
        out_dir: PathBuf,
        /// Where the API server reaches roster's --authn-addr, e.g. https://10.0.0.5:8445:
        /// also writes apiserver-client.{crt,key}, client-ca.crt,
        /// authenticate-webhook.kubeconfig, authorize-webhook.kubeconfig and authorization.yaml.
        #[arg(long)]
        authn_url: Option<String>,
        /// With --authn-url: the HOST:PORT the API server dials for roster's admission webhook;
        /// also writes admission.yaml (--admission-control-config-file), so that the API server
        /// presents its client certificate there too (roster run --webhook-client-ca).
        #[arg(long, requires = "authn_url")]
        webhook_host: Option<String>,
    },
    /// kubectl exec credential plugin: log in to roster's identity server and print an
    /// ExecCredential (the token is cached until it expires).
    Login {
        /// The identity server, e.g. https://id.acme.example:8444.
        #[arg(long, env = "ROSTER_SERVER")]
        server: String,
        #[arg(long, env = "ROSTER_ORGANIZATION")]
        organization: String,
        #[arg(long, env = "ROSTER_EMAIL")]
        email: String,
        /// PEM CA certificate of the identity server (default: the system's roots).
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Where tokens are cached (default: ~/.cache/roster/tokens).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Invitations: print a member's link (when no SMTP server sends them), or send a new one.
    Invite {
        #[command(subcommand)]
        action: InviteAction,
    },
    /// Unlock a member locked out after failed logins.
    Unlock {
        member: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Reset a member's MFA: they enrol again at their next login; their tokens stop working.
    ResetMfa {
        member: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Move ownership of an organization (asks the owner's password and code).
    TransferOwnership {
        #[arg(long, env = "ROSTER_SERVER")]
        server: String,
        #[arg(long, env = "ROSTER_ORGANIZATION")]
        organization: String,
        /// The current owner.
        #[arg(long, env = "ROSTER_EMAIL")]
        email: String,
        /// The new owner's e-mail (an enabled member who accepted their invitation).
        #[arg(long)]
        to: String,
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Print an organization's security log (logins, lockouts, unlocks, MFA, transfers).
    SecurityLog {
        organization: String,
        /// roster's namespace, where the log is kept.
        #[arg(long, env = "POD_NAMESPACE", default_value = "roster-system")]
        namespace: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum InviteAction {
    /// Print the member's invitation link.
    Link {
        member: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
    /// Send a new invitation; the previous link stops working.
    Resend {
        member: String,
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Which Kubernetes user names stand for a member, in RoleBindings and to the webhook:
    /// `roster` — roster:<org>:<email>, the tokens roster's identity server issues (a name of
    /// one organization alone); `external` — <subject-prefix><email>, an authenticator whose
    /// user name is a verified e-mail (OIDC); `both`.
    #[arg(
        long,
        value_enum,
        env = "ROSTER_MEMBER_SUBJECTS",
        default_value = "roster"
    )]
    member_subjects: SubjectMode,
    /// With --member-subjects external or both: the prefix of the external authenticator's
    /// user names (the user name is prefix + e-mail), e.g. the OIDC provider's username prefix.
    #[arg(long, env = "ROSTER_SUBJECT_PREFIX", default_value = "")]
    subject_prefix: String,
    /// ClusterRole bound for project role Admin.
    #[arg(long, default_value = "admin")]
    project_admin_role: String,
    /// ClusterRole bound for project role Developer.
    #[arg(long, default_value = "edit")]
    project_developer_role: String,
    /// ClusterRole bound for project role Viewer.
    #[arg(long, default_value = "view")]
    project_viewer_role: String,
    /// How often an unchanged organization is checked again, e.g. 10m.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    resync: Duration,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Do not run the controller (webhook only; the caches are still kept).
    #[arg(long)]
    no_controller: bool,
    /// Serve the admission webhook over TLS on this address, e.g. 0.0.0.0:8443.
    #[arg(long)]
    webhook_addr: Option<std::net::SocketAddr>,
    /// URL the API server calls the webhook at (written to the ValidatingWebhookConfiguration),
    /// e.g. https://127.0.0.1:8443/validate. Its host goes into the serving certificate.
    #[arg(long, conflicts_with = "webhook_service")]
    webhook_url: Option<String>,
    /// The in-cluster Service the API server calls the webhook through: NAMESPACE/NAME:PORT.
    #[arg(long)]
    webhook_service: Option<String>,
    /// PEM CA of the API server's client certificate: the admission webhook then completes a
    /// TLS handshake with the API server only (its kube-apiserver needs
    /// --admission-control-config-file, see `roster certificate --webhook-host`). Without it,
    /// keep the webhook port unreachable for anyone but the API server (NetworkPolicy).
    #[arg(long)]
    webhook_client_ca: Option<PathBuf>,
    /// Users that may do anything the organization rules allow (platform admins, GitOps).
    #[arg(
        long = "trusted-user",
        env = "ROSTER_TRUSTED_USERS",
        value_delimiter = ','
    )]
    trusted_users: Vec<String>,
    /// Groups whose members are trusted like --trusted-user.
    #[arg(
        long = "trusted-group",
        env = "ROSTER_TRUSTED_GROUPS",
        value_delimiter = ',',
        default_value = "system:masters"
    )]
    trusted_groups: Vec<String>,
    /// Serve /metrics, /healthz and /readyz over plain HTTP on this address, e.g. 0.0.0.0:8080.
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// roster's own namespace: the webhook never applies there, so roster can always be repaired.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// Exit when standard input closes (for test harnesses that must never leave it running).
    #[arg(long, hide = true)]
    lifeline: bool,
    /// Serve the identity pages and the login API over TLS on this address. Needs
    /// --namespace (credentials and keys live there).
    #[arg(long)]
    identity_addr: Option<std::net::SocketAddr>,
    /// Serve the API server's token (TokenReview) and authorization (SubjectAccessReview)
    /// webhooks over TLS on this address, to clients with a certificate of --authn-client-ca
    /// only (the API server). Needs --identity-addr.
    #[arg(long, requires_all = ["identity_addr", "authn_client_ca"])]
    authn_addr: Option<std::net::SocketAddr>,
    /// PEM CA of the API server's client certificate (`roster certificate` writes
    /// client-ca.crt). Use a CA that signs nothing else.
    #[arg(long)]
    authn_client_ca: Option<PathBuf>,
    /// The API server's audiences (its --api-audiences; by default its service-account
    /// issuer): session tokens are issued for them, and a TokenReview naming other audiences
    /// does not accept them. Default: the issuer the API server publishes.
    #[arg(long = "token-audience")]
    token_audiences: Vec<String>,
    /// Login, accept and enrolment attempts per minute from one source address (IPv6: one
    /// /64); 0 turns the limit off.
    #[arg(long, default_value_t = 60)]
    login_rate_per_source: u32,
    /// Login attempts per minute for one member (whether or not the address exists); 0 turns
    /// the limit off.
    #[arg(long, default_value_t = 10)]
    login_rate_per_member: u32,
    /// The URL members reach the identity server at (goes into invitation links).
    #[arg(long)]
    identity_url: Option<String>,
    /// PEM serving certificate of the identity server (with --identity-key); without them a
    /// certificate is made at start, which only browsers that accept it will trust.
    #[arg(long, requires = "identity_key")]
    identity_cert: Option<PathBuf>,
    #[arg(long, requires = "identity_cert")]
    identity_key: Option<PathBuf>,
    /// Send invitations by SMTP: smtp://HOST:PORT, smtp://HOST:PORT?tls=starttls or
    /// smtps://HOST:PORT (user and password from ROSTER_SMTP_USERNAME / ROSTER_SMTP_PASSWORD).
    /// Without it, invitation links go into a Secret in the organization's namespace.
    #[arg(long)]
    smtp_url: Option<String>,
    #[arg(long, default_value = "roster@localhost")]
    smtp_from: String,
    /// Allow smtp:// without TLS (a relay on this host): invitation links are credentials.
    #[arg(long)]
    smtp_allow_plaintext: bool,
    /// argon2id memory cost in KiB (OWASP: 19456).
    #[arg(long, default_value_t = 19456)]
    argon2_memory_kib: u32,
    /// argon2id iterations (OWASP: 2).
    #[arg(long, default_value_t = 2)]
    argon2_iterations: u32,
    /// Password hashes computed at once; more wait (bounds memory under a login flood).
    /// Default: the number of CPUs.
    #[arg(long)]
    max_concurrent_hashes: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SubjectMode {
    Roster,
    External,
    Both,
}

fn subjects(mode: SubjectMode, prefix: &str) -> roster::subjects::Subjects {
    use roster::subjects::Subjects;
    match mode {
        SubjectMode::Roster => Subjects::roster_only(),
        SubjectMode::External => Subjects::external(prefix),
        SubjectMode::Both => Subjects::both(prefix),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    roster::api::parse_duration("--resync", s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { write, out } => crds(write, out).map_err(|e| e.to_string()),
        Command::Run(args) => run(*args),
        Command::Certificate {
            names,
            out_dir,
            authn_url,
            webhook_host,
        } => roster::cli::certificate(
            &names,
            &out_dir,
            authn_url.as_deref(),
            webhook_host.as_deref(),
        ),
        Command::Login {
            server,
            organization,
            email,
            ca_file,
            cache_dir,
        } => block_on(async move {
            roster::cli::login(&roster::cli::Login {
                server,
                organization,
                email,
                ca_file,
                cache_dir,
            })
            .await
        }),
        Command::Invite {
            action: InviteAction::Link { member, namespace },
        } => block_on(async move { roster::cli::invite_link(&member, namespace).await }),
        Command::Invite {
            action: InviteAction::Resend { member, namespace },
        } => block_on(async move {
            roster::cli::request(Ask::ResendInvitation, &member, namespace).await
        }),
        Command::Unlock { member, namespace } => {
            block_on(async move { roster::cli::request(Ask::Unlock, &member, namespace).await })
        }
        Command::ResetMfa { member, namespace } => {
            block_on(async move { roster::cli::request(Ask::ResetMfa, &member, namespace).await })
        }
        Command::TransferOwnership {
            server,
            organization,
            email,
            to,
            ca_file,
        } => block_on(async move {
            roster::cli::transfer_ownership(&server, ca_file.as_deref(), &organization, &email, &to)
                .await
        }),
        Command::SecurityLog {
            organization,
            namespace,
            json,
        } => block_on(
            async move { roster::cli::security_log(&organization, &namespace, json).await },
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roster: {e}");
            ExitCode::FAILURE
        }
    }
}

fn block_on(f: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?
        .block_on(f)
}

fn crds(write: bool, out: Vec<PathBuf>) -> Result<(), roster::crdgen::Error> {
    if write {
        let paths: Vec<PathBuf> = roster::crdgen::COMMITTED_PATHS
            .iter()
            .map(PathBuf::from)
            .collect();
        return roster::crdgen::write_to(&paths);
    }
    if !out.is_empty() {
        return roster::crdgen::write_to(&out);
    }
    print!("{}", roster::crdgen::render()?);
    Ok(())
}

fn run(args: RunArgs) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async move {
        let mut config = kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration (KUBECONFIG or in-cluster): {e}"))?;
        // Audit logs and API server metrics tell roster's requests apart by this.
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("roster/", env!("CARGO_PKG_VERSION"))),
        ));
        let client = kube::Client::try_from(config)
            .map_err(|e| format!("cannot build a Kubernetes client: {e}"))?;
        client
            .apiserver_version()
            .await
            .map_err(|e| format!("the Kubernetes API server does not answer: {e}"))?;
        crds_installed(&client).await?;
        let member_subjects = subjects(args.member_subjects, &args.subject_prefix);
        let settings = Settings {
            subjects: member_subjects.clone(),
            project_cluster_roles: [
                (ProjectRole::Admin, args.project_admin_role.clone()),
                (ProjectRole::Developer, args.project_developer_role.clone()),
                (ProjectRole::Viewer, args.project_viewer_role.clone()),
            ]
            .into(),
            identity: false,
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let lifeline = args.lifeline;
        let signal_stop = stop_tx.clone();
        tokio::spawn(async move {
            let stdin_closed = async {
                if lifeline {
                    let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
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
            let _ = signal_stop.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "roster starting");
        if args.identity_addr.is_some() && args.namespace.is_none() {
            return Err("--identity-addr needs --namespace (or POD_NAMESPACE): credentials and keys live in roster's own namespace".into());
        }
        let identity_ns = args.identity_addr.and(args.namespace.clone());
        let revocations = roster::identity::revocation::Revocations::default();
        let caches = controller::Caches::new(&client, identity_ns.as_deref());
        let stores = caches.stores();
        let metrics = roster::metrics::Metrics::new();
        if let Some(addr) = args.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
            let ready = {
                let stores = stores.clone();
                Box::new(move || stores.is_ready())
            };
            let app = roster::metrics::router(metrics.clone(), ready);
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                    tracing::error!(error = %e, "metrics server stopped");
                }
            });
            tracing::info!(%addr, "metrics and health endpoints listening");
        }
        if let Some(addr) = args.webhook_addr {
            // roster's own writes (bootstrap memberships, finalizers) pass its webhook: it trusts
            // the identity it runs as, whatever the flags say.
            // roster's own identity: trusted, and the only one that may set the labels roster
            // trusts. Without it, roster could not create its own bootstrap Memberships.
            let me = own_username(&client)
                .await
                .map_err(|e| format!("cannot tell which user roster runs as (SelfSubjectReview): {e}"))?;
            let endpoint = webhook_endpoint(&args.webhook_url, &args.webhook_service, addr)?;
            let certs = webhook::Certificates::generate(&certificate_names(&endpoint))
                .map_err(|e| format!("cannot create the webhook certificate: {e}"))?;
            let state = std::sync::Arc::new(webhook::AppState {
                index: webhook::StoreIndex { orgs: stores.orgs.clone(), projects: stores.projects.clone(), memberships: stores.memberships.clone(), credentials: stores.credentials.clone() },
                policy: webhook::validate::Policy {
                    trusted_users: args.trusted_users.clone(),
                    trusted_groups: args.trusted_groups.clone(),
                    controllers: vec![me],
                    subjects: member_subjects.clone(),
                },
                ready: {
                    let stores = stores.clone();
                    Box::new(move || stores.is_ready())
                },
                metrics: metrics.clone(),
                revocations: identity_ns.as_ref().map(|_| revocations.clone()),
            });
            let router = webhook::router(state);
            let tls = match &args.webhook_client_ca {
                Some(ca) => {
                    let pem = std::fs::read(ca).map_err(|e| {
                        format!("cannot read --webhook-client-ca {}: {e}", ca.display())
                    })?;
                    certs.server_config_requiring_clients(&pem)?
                }
                None => certs.server_config()?,
            };
            let listener = webhook::listen(addr).await.map_err(|e| e.to_string())?;
            let stop = stopped(stop_rx.clone());
            let server = tokio::spawn(async move { webhook::serve_tls(listener, tls, router, stop).await });
            webhook::register(&client, &endpoint, &certs.ca_pem, args.namespace.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(?endpoint, "webhook registered");
            // A registered webhook that no longer serves would block every write to roster's
            // kinds: if the server ends, roster stops too (and is restarted by its Deployment).
            let stop_all = stop_tx.clone();
            tokio::spawn(async move {
                match server.await {
                    Ok(Err(e)) => tracing::error!(reason = e.reason(), error = %e, "webhook server stopped"),
                    Err(e) => tracing::error!(error = %e, "webhook server task failed"),
                    Ok(Ok(())) => return,
                }
                let _ = stop_all.send(true);
            });
        }
        let identity = match (args.identity_addr, &identity_ns) {
            (Some(addr), Some(ns)) => Some(start_identity(&args, addr, ns, &client, &stores, revocations, &stop_tx, stop_rx.clone()).await?),
            _ => None,
        };
        let mut settings = settings;
        settings.identity = identity.is_some();
        let config = controller::Config { settings, resync: args.resync, metrics, identity };
        let run_stop = stop_rx.clone();
        let run = async move {
            if args.no_controller {
                let _stores = caches.drive();
                stopped(run_stop).await;
            } else {
                controller::run(client.clone(), caches, config, stopped(run_stop)).await;
            }
        };
        // In-flight reconciles get a grace period to finish; a hung API call must not keep the
        // process alive after it was asked to stop.
        let deadline = async {
            stopped(stop_rx).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        };
        tokio::select! {
            _ = run => {}
            _ = deadline => tracing::warn!("in-flight work did not finish within 10s of shutdown; exiting"),
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
async fn start_identity(
    args: &RunArgs,
    addr: std::net::SocketAddr,
    namespace: &str,
    client: &kube::Client,
    stores: &controller::Stores,
    revocations: roster::identity::revocation::Revocations,
    stop_tx: &tokio::sync::watch::Sender<bool>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
) -> Result<std::sync::Arc<roster::identity::service::Identity>, String> {
    use roster::identity::{audit, limit, mail, password, server, service};
    let keys = service::Keys::load_or_create(client.clone(), namespace)
        .await
        .map_err(|e| e.to_string())?;
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hasher = password::Hasher::new(
        args.argon2_memory_kib,
        args.argon2_iterations,
        1,
        args.max_concurrent_hashes.unwrap_or(cpus),
    )
    .map_err(|e| format!("argon2 parameters: {e}"))?;
    let mailer = match &args.smtp_url {
        Some(url) => {
            let creds = match (
                std::env::var("ROSTER_SMTP_USERNAME"),
                std::env::var("ROSTER_SMTP_PASSWORD"),
            ) {
                (Ok(u), Ok(p)) => Some((u, p)),
                _ => None,
            };
            Some(
                mail::Mailer::new(url, &args.smtp_from, creds, args.smtp_allow_plaintext)
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let audiences = if args.token_audiences.is_empty() {
        vec![api_server_issuer(client).await?]
    } else {
        args.token_audiences.clone()
    };
    let public_url = args
        .identity_url
        .clone()
        .unwrap_or_else(|| format!("https://{addr}"));
    let log = audit::SecurityLog::start(
        client.clone(),
        namespace,
        stores.orgs.clone(),
        stores.memberships.clone(),
    );
    let Some(credentials) = stores.credentials.clone() else {
        return Err("internal: the credential cache is missing".into());
    };
    let identity = std::sync::Arc::new(
        service::Identity::new(
            client.clone(),
            namespace,
            keys,
            hasher,
            public_url.clone(),
            mailer,
            log,
        )
        .with_credential_cache(credentials),
    );
    let certs = match (&args.identity_cert, &args.identity_key) {
        (Some(cert), Some(key)) => webhook::Certificates::from_pem_files(cert, key, None)?,
        _ => {
            let host = url_host(&public_url).unwrap_or_else(|| "localhost".into());
            tracing::warn!(
                "no --identity-cert: serving a certificate made now, which browsers and the API server will not trust"
            );
            webhook::Certificates::generate(&[host])?
        }
    };
    let state = std::sync::Arc::new(server::AppState {
        identity: identity.clone(),
        orgs: stores.orgs.clone(),
        memberships: stores.memberships.clone(),
        revocations,
        limits: limit::Limits::new(args.login_rate_per_source, args.login_rate_per_member),
        audiences: audiences.clone(),
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let listener = webhook::listen(addr).await.map_err(|e| e.to_string())?;
    let config = certs.server_config()?;
    supervise(
        "identity server",
        webhook::serve_tls(
            listener,
            config,
            server::router(state.clone()),
            stopped(stop_rx.clone()),
        ),
        stop_tx,
    );
    tracing::info!(%addr, url = %public_url, ?audiences, "identity server listening");
    if let (Some(authn), Some(ca)) = (args.authn_addr, &args.authn_client_ca) {
        let ca_pem = std::fs::read(ca)
            .map_err(|e| format!("cannot read --authn-client-ca {}: {e}", ca.display()))?;
        let config = certs.server_config_requiring_clients(&ca_pem)?;
        let listener = webhook::listen(authn).await.map_err(|e| e.to_string())?;
        supervise(
            "token and authorization webhooks",
            webhook::serve_tls(
                listener,
                config,
                server::api_server_router(state),
                stopped(stop_rx),
            ),
            stop_tx,
        );
        tracing::info!(%authn, "token and authorization webhooks listening (API server only)");
    }
    Ok(identity)
}

/// Runs a server the API server or members depend on; if it ends with an error, roster stops
/// (and its Deployment restarts it) rather than run on half deaf.
fn supervise(
    what: &'static str,
    server: impl Future<Output = webhook::Result<()>> + Send + 'static,
    stop_tx: &tokio::sync::watch::Sender<bool>,
) {
    let stop_all = stop_tx.clone();
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(reason = e.reason(), error = %e, "{what} stopped; stopping roster");
            let _ = stop_all.send(true);
        }
    });
}

/// The API server's service-account issuer, as it publishes it: the audience its own requests
/// carry by default (--api-audiences defaults to the issuer).
async fn api_server_issuer(client: &kube::Client) -> Result<String, String> {
    let req = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    let doc: serde_json::Value = client.request(req).await.map_err(|e| {
        format!(
            "cannot learn the API server's token audience from its service-account issuer ({e}); pass --token-audience"
        )
    })?;
    doc.get("issuer")
        .and_then(|i| i.as_str())
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            "the API server publishes no service-account issuer; pass --token-audience".into()
        })
}

/// The host of an https URL (brackets of an IPv6 literal removed).
fn url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
}

/// Without its CRDs roster would watch nothing and (as a webhook) deny everything "not ready":
/// say so at once instead.
async fn crds_installed(client: &kube::Client) -> Result<(), String> {
    let gv = format!("{}/{}", roster::api::GROUP, roster::api::VERSION);
    let missing = |what: String| {
        format!(
            "{what}; install them first: kubectl apply -f crds/ (or `roster crds | kubectl apply -f -`)"
        )
    };
    let resources = client
        .list_api_group_resources(&gv)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.code == 404 => missing(format!(
                "the API server does not serve {gv}: roster's CRDs are not installed"
            )),
            e => format!("cannot discover {gv}: {e}"),
        })?;
    for kind in ["organizations", "projects", "memberships"] {
        if !resources.resources.iter().any(|r| r.name == kind) {
            return Err(missing(format!(
                "{kind}.{} is not installed",
                roster::api::GROUP
            )));
        }
    }
    Ok(())
}

async fn own_username(client: &kube::Client) -> Result<String, kube::Error> {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let api: kube::Api<SelfSubjectReview> = kube::Api::all(client.clone());
    let review = api
        .create(
            &kube::api::PostParams::default(),
            &SelfSubjectReview::default(),
        )
        .await?;
    Ok(review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}

fn webhook_endpoint(
    url: &Option<String>,
    service: &Option<String>,
    addr: std::net::SocketAddr,
) -> Result<webhook::Endpoint, String> {
    if let Some(url) = url {
        return Ok(webhook::Endpoint::Url(url.clone()));
    }
    if let Some(svc) = service {
        let bad = || format!("--webhook-service {svc:?}: expected NAMESPACE/NAME:PORT");
        let (ns, rest) = svc.split_once('/').ok_or_else(bad)?;
        let (name, port) = rest.split_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        return Ok(webhook::Endpoint::Service {
            namespace: ns.into(),
            name: name.into(),
            port,
        });
    }
    if addr.ip().is_unspecified() {
        return Err("--webhook-addr listens on every address: say where the API server reaches it with --webhook-url or --webhook-service".into());
    }
    Ok(webhook::Endpoint::Url(format!("https://{addr}/validate")))
}

/// The names the API server dials: the URL's host, or the Service's DNS names.
fn certificate_names(endpoint: &webhook::Endpoint) -> Vec<String> {
    match endpoint {
        webhook::Endpoint::Url(url) => url_host(url).into_iter().collect(),
        webhook::Endpoint::Service {
            namespace, name, ..
        } => {
            vec![
                format!("{name}.{namespace}.svc"),
                format!("{name}.{namespace}.svc.cluster.local"),
            ]
        }
    }
}

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}
