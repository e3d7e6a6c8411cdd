use std::time::Duration;

/// Why a reconcile did not complete. `reason()` is stable: it names Events, condition reasons and
/// log fields.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the API server rejected {action}: {source}")]
    Api {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the controller's caches are not ready: {0}")]
    CacheNotReady(#[from] crate::cache::NotReady),
    #[error("namespace {0} was created by someone else meanwhile; it is not roster's")]
    NamespaceTaken(String),
    #[error("{count} writes failed; the first: {first}")]
    Several { count: usize, first: Box<Error> },
    #[error("{action} for {membership}: {source}")]
    Identity {
        action: &'static str,
        membership: String,
        #[source]
        source: crate::identity::service::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Api {
                source: kube::Error::Api(s),
                ..
            } if s.code == 409 => "Conflict",
            Error::Api {
                source: kube::Error::Api(s),
                ..
            } if s.code == 403 => "Forbidden",
            Error::Api {
                source: kube::Error::Api(s),
                ..
            } if s.code == 422 => "Invalid",
            Error::Api {
                source: kube::Error::Api(s),
                ..
            } if s.code >= 500 => "ApiServerError",
            Error::Api { .. } => "ApiUnavailable",
            Error::Encode { .. } => "EncodeFailed",
            Error::CacheNotReady(_) => "CacheNotReady",
            Error::NamespaceTaken(_) => "NamespaceTaken",
            Error::Several { first, .. } => first.reason(),
            Error::Identity { source, .. } => source.reason(),
        }
    }
}

impl Error {
    /// Whether retrying cannot help: the API server refused for a reason only a person can
    /// change (permissions, an invalid object, a namespace taken by someone else).
    pub fn needs_a_person(&self) -> bool {
        use crate::Reason;
        matches!(self.reason(), "Forbidden" | "Invalid" | "NamespaceTaken")
    }

    pub fn api(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Api { action, source }
    }
}

/// Exponential backoff for a key that failed `failures` times in a row: 1 s doubling to 60 s.
/// The cap bounds how long an organization stays stale after its cause is fixed (a quota
/// lifted, a permission granted): nothing else triggers the retry.
pub fn backoff(failures: u32) -> Duration {
    let secs = 1u64
        .checked_shl(failures.min(16))
        .unwrap_or(u64::MAX)
        .min(60);
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    #[test]
    fn backoff_doubles_and_caps() {
        let got: Vec<u64> = [0, 1, 2, 3, 8, 9, 40]
            .iter()
            .map(|f| backoff(*f).as_secs())
            .collect();
        assert_eq!(got, vec![1, 2, 4, 8, 60, 60, 60]);
    }

    #[test]
    fn reasons_are_stable_pascal_case() {
        let conflict = Error::Api {
            action: "x".into(),
            source: kube::Error::Api(Box::new(
                kube::core::Status::failure("conflict", "Conflict").with_code(409),
            )),
        };
        assert_eq!(conflict.reason(), "Conflict");
        assert_eq!(
            Error::CacheNotReady(crate::cache::NotReady("x")).reason(),
            "CacheNotReady"
        );
    }
}
