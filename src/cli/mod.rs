//! Commands besides `run`: `certificate` (files for the identity server and the API server's
//! side), `login` (the kubectl exec credential plugin) and `transfer-ownership`, and the admin
//! requests `invite link|resend`, `unlock`, `reset-mfa`, `security-log`. Installed as
//! `kubectl-roster` on the PATH, the binary is also the kubectl plugin: `kubectl roster login`.

mod admin;
pub mod args;
pub mod certificate;
mod login;
pub mod review;

use std::path::{Path, PathBuf};

pub use admin::{invite_link, request, security_log};
pub use certificate::certificate;
pub use login::{Login, login, login_of_context, transfer_ownership, whoami};

/// Why a command failed; the message is what the user reads.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] crate::tls::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no Kubernetes configuration (KUBECONFIG or in-cluster): {0}")]
    NoKubeconfig(#[source] kube::Error),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// The API server or the identity server said no; the message says why.
    #[error("{0}")]
    Refused(String),
    #[error("the identity server at {server}: {detail}")]
    Identity { server: String, detail: String },
    #[error(
        "cannot read from the terminal ({source}); set {env} or run where a terminal is available"
    )]
    Terminal {
        env: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Tls(e) => e.reason(),
            Error::Write { .. } => "WriteFailed",
            Error::NoKubeconfig(_) => "NoKubeconfig",
            Error::Api { .. } => "ApiError",
            Error::Refused(_) => "Refused",
            Error::Identity { .. } => "IdentityUnreachable",
            Error::Terminal { .. } => "TerminalUnavailable",
            Error::Invalid(_) => "InvalidArgument",
            Error::NotFound(_) => "NotFound",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes a file; a private one is created with mode 0600 (never readable by others, not even
/// for an instant) and tightened to 0600 if it existed.
pub fn write_file(path: &Path, content: &str, private: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if private {
        options.mode(0o600);
    }
    let failed = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = options.open(path).map_err(failed)?;
    if private {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(failed)?;
    }
    f.write_all(content.as_bytes()).map_err(failed)
}

/// A client with the caller's own credentials (KUBECONFIG or in-cluster), and the namespace to
/// act in (the given one, else the context's).
async fn kube_client(namespace: Option<String>) -> Result<(kube::Client, String)> {
    let client = kube::Client::try_default()
        .await
        .map_err(Error::NoKubeconfig)?;
    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, ns))
}

/// Runs `f` with a client of the caller's own credentials on a runtime of its own (the review
/// commands are otherwise synchronous).
fn block_on_live<T, F>(f: impl FnOnce(kube::Client) -> F) -> Result<T>
where
    F: Future<Output = crate::review::Result<T>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Invalid(format!("cannot start a runtime: {e}")))?;
    rt.block_on(async {
        let client = kube::Client::try_default()
            .await
            .map_err(Error::NoKubeconfig)?;
        f(client).await.map_err(|e| Error::Refused(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_from_the_start_and_on_every_write() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("roster-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token.json");
        // A file someone left readable by everyone is tightened on the next write.
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_file(&path, "secret", true).expect("write");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "secret");
        let fresh = dir.join("tls.key");
        write_file(&fresh, "key", true).expect("write");
        let mode = std::fs::metadata(&fresh)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
