#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use roster::api::ProjectRole;
use roster::controller::{self, Settings};

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
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as multi-document YAML.
    Crds {
        /// Write them to the repository's committed copies (crds/ and the Helm chart) instead.
        #[arg(long, conflicts_with = "out")]
        write: bool,
        /// Write them to these files instead of standard output.
        #[arg(long)]
        out: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Prefix of the Kubernetes user name of a member (the user name is prefix + e-mail), to
    /// match an OIDC provider's username prefix.
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
    /// Exit when standard input closes (for test harnesses that must never leave it running).
    #[arg(long, hide = true)]
    lifeline: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    roster::api::parse_duration("--resync", s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { write, out } => crds(write, out).map_err(|e| e.to_string()),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roster: {e}");
            ExitCode::FAILURE
        }
    }
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
        let settings = Settings {
            subject_prefix: args.subject_prefix,
            project_cluster_roles: [
                (ProjectRole::Admin, args.project_admin_role),
                (ProjectRole::Developer, args.project_developer_role),
                (ProjectRole::Viewer, args.project_viewer_role),
            ]
            .into(),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let lifeline = args.lifeline;
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
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "roster controller starting");
        let config = controller::Config { settings, resync: args.resync };
        let run = controller::run(client, config, stopped(stop_rx.clone()));
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

async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending::<()>().await,
    }
}
