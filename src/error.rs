//! The one error type at the binary's edge: what `roster <command>` can fail with.

use crate::Reason;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Cli(#[from] crate::cli::Error),
    #[error(transparent)]
    Run(#[from] crate::runtime::Error),
    #[error(transparent)]
    Crds(#[from] crate::crdgen::Error),
    /// Arguments that parse but do not fit together.
    #[error("{0}")]
    Usage(String),
    /// The command ran and its report is printed; it ends with `code` (a review that found
    /// violations, or more removals than allowed).
    #[error("{summary}")]
    Verdict { code: u8, summary: String },
}

impl Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Cli(e) => e.reason(),
            Error::Run(e) => e.reason(),
            Error::Crds(e) => e.reason(),
            Error::Usage(_) => "Usage",
            Error::Verdict { .. } => "Verdict",
        }
    }
}
