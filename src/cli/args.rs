//! The command line: clap's definitions, and what each command does with them. `main.rs` only
//! parses and reports; `RunArgs::config` turns `roster run`'s flags into a typed
//! `runtime::Config`, refusing combinations that do not fit.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::Error;
use crate::api::ProjectRole;
use crate::api::contract::Request as Ask;
use crate::cli::review;
use crate::controller::Settings;
use crate::runtime::{self, AuthnConfig, IdentityConfig, SmtpConfig, WebhookConfig};
use crate::subjects::Subjects;
use crate::webhook::Endpoint;

/// roster: organizations, projects and memberships as Kubernetes resources.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        /// With --authn-url at an address (a Service's ClusterIP): the name of roster's
        /// certificate the API server verifies instead (tls-server-name), e.g.
        /// roster-authn.roster-system.svc.
        #[arg(long, requires = "authn_url")]
        authn_server_name: Option<String>,
        /// Also write the CA's private key (ca.key, mode 0600): put ca.crt and ca.key in the
        /// Helm chart's serving Secret, and roster issues its certificates from this CA, which
        /// the API server already trusts.
        #[arg(long)]
        keep_ca_key: bool,
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
        #[arg(long, conflicts_with = "ca_data")]
        ca_file: Option<PathBuf>,
        /// The same, base64-encoded (a kubeconfig downloaded from the account page carries it).
        #[arg(long, env = "ROSTER_CA_DATA")]
        ca_data: Option<String>,
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
    /// Check manifests offline, as the cluster would (schema, CEL rules, the webhook's rules),
    /// and print who would hold which role in which project, and who is cut off and why.
    /// Exit status: 0 clean, 1 a violation (each named by file, document and line).
    Plan {
        /// Files, directories (recursively) or - for standard input.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// The state before the change (files): changed objects are judged as updates, removed
        /// ones as deletions, against it.
        #[arg(long)]
        base: Vec<PathBuf>,
        /// Namespace of objects that name none (as kubectl apply -n).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Judge the change as this person applying it: an e-mail (that member, in each
        /// organization) or a Kubernetes user name. Default: a platform admin.
        #[arg(long = "as")]
        as_user: Option<String>,
        /// Groups of --as.
        #[arg(long = "as-group", requires = "as_user")]
        as_groups: Vec<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: crate::review::render::Format,
        /// Judge at this time instead of now (RFC 3339): expiries and MFA deadlines.
        #[arg(long)]
        now: Option<String>,
    },
    /// Who gains and who loses access between two trees (or the cluster and a tree): per
    /// person, owner changes, and whom an MFA or grace-period change cuts off, and when.
    /// Exit status: 0, 1 a violation in the head, 2 more removals than --max-removals.
    Diff {
        /// The state before: files or directories.
        #[arg(long, required_unless_present = "live", conflicts_with = "live")]
        base: Vec<PathBuf>,
        /// The state before is the cluster's (KUBECONFIG).
        #[arg(long)]
        live: bool,
        /// The state after: files, directories or -.
        #[arg(long, required = true)]
        head: Vec<PathBuf>,
        #[arg(short, long)]
        namespace: Option<String>,
        /// Fail (exit 2) when more than this many access grants would be removed.
        #[arg(long)]
        max_removals: Option<usize>,
        #[arg(long = "as")]
        as_user: Option<String>,
        #[arg(long = "as-group", requires = "as_user")]
        as_groups: Vec<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: crate::review::render::Format,
        #[arg(long)]
        now: Option<String>,
    },
    /// What a person can reach, and why or why not (live: the organizations you can read,
    /// judged by the controller's own functions).
    Access {
        /// The person's e-mail.
        who: String,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only this organization (its namespace): what an organization's Admin may list.
        #[arg(short, long)]
        namespace: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Who you are to roster: organization, role, projects, MFA, and when your token ends (the
    /// current kubeconfig context's `kubectl roster login`).
    Whoami {
        /// Another kubeconfig context than the current one.
        #[arg(long)]
        context: Option<String>,
        #[arg(long)]
        json: bool,
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
pub enum InviteAction {
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
pub struct RunArgs {
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
    /// Run as one of several replicas: elect a leader on this Lease in roster's namespace
    /// (--namespace); only the leader reconciles, every replica serves the webhook and identity.
    #[arg(long, env = "ROSTER_LEADER_ELECTION_LEASE")]
    leader_election_lease: Option<String>,
    /// This replica's name (its lease identity, and in its User-Agent). Default: POD_NAME, else
    /// the host name and the process id. Must differ between replicas.
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
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
    /// What roster writes of the ValidatingWebhookConfiguration `roster.dev`: `whole` (a
    /// development setup), or `ca-bundle` only (the Helm chart owns the rest).
    #[arg(long, value_enum, default_value = "whole")]
    webhook_configuration: WebhookConfiguration,
    /// Keep one serving certificate (CA and leaf) for every replica in this Secret of
    /// roster's namespace, renewed before it expires; the webhook serves it, and so does the
    /// identity server when it has no --identity-cert.
    #[arg(long)]
    serving_cert_secret: Option<String>,
    /// DNS names for the shared serving certificate besides the webhook Service's (the
    /// identity Service's, say).
    #[arg(long = "serving-name", value_delimiter = ',')]
    serving_names: Vec<String>,
    /// Lifetime of a shared serving certificate; it is renewed in its last third.
    #[arg(long, default_value = "2160h", value_parser = parse_duration)]
    serving_cert_lifetime: Duration,
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
    /// /64, and four times it per /48); 0 turns the limit off.
    #[arg(long, default_value_t = 60)]
    login_rate_per_source: u32,
    /// Login attempts per minute for one member (whether or not the address exists); 0 turns
    /// the limit off.
    #[arg(long, default_value_t = 10)]
    login_rate_per_member: u32,
    /// A failed login (wrong organization, address, password or code, not yet accepted,
    /// disabled) answers no sooner than this after it arrived, so that the time to answer
    /// tells none of them apart (a wrong password also writes the failure count; an unknown
    /// address has nothing to write). Keep it above a password check plus one API write;
    /// when failures take longer, the floor rises above them for a while, for everyone.
    #[arg(long, default_value = crate::identity::limit::DEFAULT_FAILURE_FLOOR, value_parser = parse_duration)]
    login_failure_floor: Duration,
    /// The URL members reach the identity server at (goes into invitation links).
    #[arg(long)]
    identity_url: Option<String>,
    /// The API server's URL as members reach it: the account page then offers a ready
    /// kubeconfig (this address, --cluster-ca-file, `kubectl roster login` for the member).
    #[arg(long, requires = "identity_addr")]
    cluster_server: Option<String>,
    /// PEM CA of the API server's serving certificate, for that kubeconfig.
    #[arg(long, requires = "cluster_server")]
    cluster_ca_file: Option<PathBuf>,
    /// PEM CA of the identity server's certificate, put in that kubeconfig when members'
    /// systems do not trust it.
    #[arg(long, requires = "cluster_server")]
    identity_ca_file: Option<PathBuf>,
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
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WebhookConfiguration {
    Whole,
    CaBundle,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SubjectMode {
    Roster,
    External,
    Both,
}

fn subjects(mode: SubjectMode, prefix: &str) -> Subjects {
    match mode {
        SubjectMode::Roster => Subjects::roster_only(),
        SubjectMode::External => Subjects::external(prefix),
        SubjectMode::Both => Subjects::both(prefix),
    }
}

fn parse_duration(s: &str) -> std::result::Result<Duration, crate::api::BadDuration> {
    crate::api::parse_duration("a duration flag", s)
}

impl RunArgs {
    /// The typed configuration of `roster run`.
    pub fn config(self) -> Result<runtime::Config, Error> {
        let usage = |m: &str| Error::Usage(m.to_string());
        let webhook = match self.webhook_addr {
            Some(addr) => Some(WebhookConfig {
                addr,
                endpoint: webhook_endpoint(&self.webhook_url, &self.webhook_service, addr)?,
                client_ca: self.webhook_client_ca.clone(),
                register_whole: self.webhook_configuration == WebhookConfiguration::Whole,
            }),
            None => None,
        };
        if webhook.is_some() && self.webhook_client_ca.is_none() {
            eprintln!(
                "roster: warning: the admission webhook takes requests from any client (no --webhook-client-ca): keep its port reachable by the API server only"
            );
        }
        let identity = match self.identity_addr {
            Some(addr) => {
                if self.namespace.is_none() {
                    return Err(usage(
                        "--identity-addr needs --namespace (or POD_NAMESPACE): credentials and keys live in roster's own namespace",
                    ));
                }
                let credentials = match (
                    std::env::var("ROSTER_SMTP_USERNAME"),
                    std::env::var("ROSTER_SMTP_PASSWORD"),
                ) {
                    (Ok(u), Ok(p)) => Some((u, p)),
                    _ => None,
                };
                Some(IdentityConfig {
                    addr,
                    public_url: self
                        .identity_url
                        .clone()
                        .unwrap_or_else(|| format!("https://{addr}"))
                        .trim_end_matches('/')
                        .to_string(),
                    cert: self.identity_cert.clone().zip(self.identity_key.clone()),
                    authn: self
                        .authn_addr
                        .zip(self.authn_client_ca.clone())
                        .map(|(addr, client_ca)| AuthnConfig { addr, client_ca }),
                    audiences: self.token_audiences.clone(),
                    smtp: self.smtp_url.clone().map(|url| SmtpConfig {
                        url,
                        from: self.smtp_from.clone(),
                        credentials,
                        allow_plaintext: self.smtp_allow_plaintext,
                    }),
                    argon2_memory_kib: self.argon2_memory_kib,
                    argon2_iterations: self.argon2_iterations,
                    max_concurrent_hashes: self.max_concurrent_hashes.unwrap_or_else(|| {
                        std::thread::available_parallelism().map_or(2, |n| n.get())
                    }),
                    rate_per_source: self.login_rate_per_source,
                    rate_per_member: self.login_rate_per_member,
                    login_failure_floor: self.login_failure_floor,
                    cluster: self.cluster_server.clone().map(|server| {
                        runtime::ClusterAccessConfig {
                            server: server.trim_end_matches('/').to_string(),
                            ca_file: self.cluster_ca_file.clone(),
                            identity_ca_file: self.identity_ca_file.clone(),
                        }
                    }),
                })
            }
            None => None,
        };
        if self.leader_election_lease.is_some() && self.namespace.is_none() {
            return Err(usage(
                "--leader-election-lease needs --namespace (or POD_NAMESPACE): the Lease lives in roster's own namespace",
            ));
        }
        // The lease's holder identity: two processes with one name would both count as its
        // holder, so outside a pod (no POD_NAME) the process id makes it unique on the host.
        let instance = self.instance.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "roster".into());
            format!("{host}-{}", std::process::id())
        });
        if self.serving_cert_lifetime < Duration::from_secs(3600) {
            return Err(usage(
                "--serving-cert-lifetime must be at least 1h (the certificate is renewed in its last third)",
            ));
        }
        if self.serving_cert_secret.is_some() && self.namespace.is_none() {
            return Err(usage(
                "--serving-cert-secret needs --namespace (or POD_NAMESPACE): the Secret lives in roster's own namespace",
            ));
        }
        Ok(runtime::Config {
            serving_secret: self.serving_cert_secret.clone(),
            serving_names: self.serving_names.clone(),
            serving_lifetime: self.serving_cert_lifetime,
            lease: self.leader_election_lease.clone(),
            instance,
            log_format: match self.log_format {
                LogFormat::Text => runtime::LogFormat::Text,
                LogFormat::Json => runtime::LogFormat::Json,
            },
            lifeline: self.lifeline,
            namespace: self.namespace,
            controller: !self.no_controller,
            resync: self.resync,
            settings: Settings {
                subjects: subjects(self.member_subjects, &self.subject_prefix),
                project_cluster_roles: [
                    (ProjectRole::Admin, self.project_admin_role),
                    (ProjectRole::Developer, self.project_developer_role),
                    (ProjectRole::Viewer, self.project_viewer_role),
                ]
                .into(),
                identity: false,
                // Made when the controller starts (runtime::run).
                hold_key: Default::default(),
            },
            trusted_users: self.trusted_users,
            trusted_groups: self.trusted_groups,
            metrics_addr: self.metrics_addr,
            webhook,
            identity,
        })
    }
}

fn webhook_endpoint(
    url: &Option<String>,
    service: &Option<String>,
    addr: SocketAddr,
) -> Result<Endpoint, Error> {
    if let Some(url) = url {
        return Ok(Endpoint::Url(url.clone()));
    }
    if let Some(svc) = service {
        let bad = || {
            Error::Usage(format!(
                "--webhook-service {svc:?}: expected NAMESPACE/NAME:PORT"
            ))
        };
        let (ns, rest) = svc.split_once('/').ok_or_else(bad)?;
        let (name, port) = rest.split_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        return Ok(Endpoint::Service {
            namespace: ns.into(),
            name: name.into(),
            port,
        });
    }
    if addr.ip().is_unspecified() {
        return Err(Error::Usage(
            "--webhook-addr listens on every address: say where the API server reaches it with --webhook-url or --webhook-service".into(),
        ));
    }
    Ok(Endpoint::Url(format!("https://{addr}/validate")))
}

/// Runs one command to its end.
pub fn dispatch(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Crds { write, out } => crds(write, out),
        Command::Run(args) => Ok(runtime::run(args.config()?)?),
        Command::Certificate {
            names,
            out_dir,
            authn_url,
            webhook_host,
            authn_server_name,
            keep_ca_key,
        } => Ok(super::certificate(
            &names,
            &out_dir,
            &super::certificate::Options {
                authn_url: authn_url.as_deref(),
                authn_server_name: authn_server_name.as_deref(),
                webhook_host: webhook_host.as_deref(),
                keep_ca_key,
            },
        )?),
        Command::Login {
            server,
            organization,
            email,
            ca_file,
            ca_data,
            cache_dir,
        } => block_on(super::login(&super::Login {
            server,
            organization,
            email,
            ca_file,
            ca_data,
            cache_dir,
        })),
        Command::Invite {
            action: InviteAction::Link { member, namespace },
        } => block_on(super::invite_link(&member, namespace)),
        Command::Invite {
            action: InviteAction::Resend { member, namespace },
        } => block_on(super::request(Ask::ResendInvitation, &member, namespace)),
        Command::Unlock { member, namespace } => {
            block_on(super::request(Ask::Unlock, &member, namespace))
        }
        Command::ResetMfa { member, namespace } => {
            block_on(super::request(Ask::ResetMfa, &member, namespace))
        }
        Command::TransferOwnership {
            server,
            organization,
            email,
            to,
            ca_file,
        } => block_on(super::transfer_ownership(
            &server,
            ca_file.as_deref(),
            &organization,
            &email,
            &to,
        )),
        Command::SecurityLog {
            organization,
            namespace,
            json,
        } => block_on(super::security_log(&organization, &namespace, json)),
        Command::Access {
            who,
            project,
            namespace,
            json,
        } => verdict(review::access(
            &who,
            project.as_deref(),
            namespace.as_deref(),
            json,
        )?),
        Command::Whoami { context, json } => block_on(super::whoami(context.as_deref(), json)),
        Command::Plan {
            files,
            base,
            namespace,
            as_user,
            as_groups,
            output,
            now,
        } => {
            let who = review::Who { as_user, as_groups };
            let opts = review::options(namespace, &who, now.as_deref())?;
            verdict(review::plan(&files, &base, &opts, output)?)
        }
        Command::Diff {
            base,
            live,
            head,
            namespace,
            max_removals,
            as_user,
            as_groups,
            output,
            now,
        } => {
            let who = review::Who { as_user, as_groups };
            let opts = review::options(namespace, &who, now.as_deref())?;
            let base = if live {
                review::Base::Live
            } else {
                review::Base::Files(base)
            };
            verdict(review::diff(base, &head, &opts, max_removals, output)?)
        }
    }
}

/// Prints a review's report; a non-zero outcome ends the process with its code.
fn verdict(o: review::Outcome) -> Result<(), Error> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not the review's failure.
    let _ = out.write_all(o.output.as_bytes());
    let _ = out.flush();
    match o.code {
        0 => Ok(()),
        code => Err(Error::Verdict {
            code,
            summary: o.summary.unwrap_or_default(),
        }),
    }
}

fn block_on(f: impl Future<Output = super::Result<()>>) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(runtime::Error::Runtime)?;
    Ok(rt.block_on(f)?)
}

fn crds(write: bool, out: Vec<PathBuf>) -> Result<(), Error> {
    if write {
        return Ok(crate::crdgen::write_committed(std::path::Path::new("."))?);
    }
    if !out.is_empty() {
        return Ok(crate::crdgen::write_to(&out)?);
    }
    print!("{}", crate::crdgen::render()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn run_args(args: &[&str]) -> Result<runtime::Config, Error> {
        let mut all = vec!["roster", "run"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).expect("parses").command {
            Command::Run(a) => a.config(),
            _ => panic!("not run"),
        }
    }

    #[test]
    fn run_flags_become_a_typed_configuration_or_a_clear_refusal() {
        let c = run_args(&[
            "--webhook-addr",
            "127.0.0.1:8443",
            "--member-subjects",
            "both",
            "--subject-prefix",
            "oidc:",
        ])
        .expect("config");
        let w = c.webhook.expect("webhook");
        assert!(matches!(&w.endpoint, Endpoint::Url(u) if u == "https://127.0.0.1:8443/validate"));
        assert_eq!(c.settings.subjects, Subjects::both("oidc:"));
        assert!(c.controller && c.identity.is_none());

        let e = run_args(&["--webhook-addr", "0.0.0.0:8443"]).expect_err("unspecified");
        assert!(
            e.to_string().contains("--webhook-url or --webhook-service"),
            "{e}"
        );
        let e = run_args(&[
            "--webhook-addr",
            "127.0.0.1:1",
            "--webhook-service",
            "ns/name",
        ])
        .expect_err("no port");
        assert!(e.to_string().contains("NAMESPACE/NAME:PORT"), "{e}");
        let e = run_args(&["--identity-addr", "127.0.0.1:8444"]).expect_err("no namespace");
        assert!(e.to_string().contains("--namespace"), "{e}");

        let c = run_args(&[
            "--webhook-addr",
            "0.0.0.0:8443",
            "--webhook-service",
            "roster-system/roster:443",
            "--identity-addr",
            "0.0.0.0:8444",
            "--namespace",
            "roster-system",
            "--identity-url",
            "https://id.acme.example/",
            "--token-audience",
            "https://kubernetes.default.svc",
        ])
        .expect("config");
        let id = c.identity.expect("identity");
        assert_eq!(id.public_url, "https://id.acme.example");
        assert_eq!(
            id.audiences,
            vec!["https://kubernetes.default.svc".to_string()]
        );
        assert!(matches!(
            c.webhook.expect("webhook").endpoint,
            Endpoint::Service { port: 443, .. }
        ));
    }
}
