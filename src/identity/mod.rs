//! Identity: what makes "MFA required", "locked after failed logins" and "confirm with your
//! password" real (DESIGN.md §6): security primitives, each pure and tested on its own
//! (password, totp, seal, token, invitation, lockout, login::decide), the credential store,
//! the service the controller calls (invite, unlock, reset MFA), the security log, and the
//! HTTP server (pages, login API, TokenReview).
//!
//! Every secret value here (passwords, TOTP seeds, keys, tokens) lives in a type whose `Debug`
//! prints a placeholder, so it cannot reach a log, a status or a panic message by accident.

pub mod audit;
#[cfg(test)]
mod audit_writer_tests;
pub mod invitation;
pub mod kubeconfig;
pub mod limit;
pub mod lockout;
pub mod log_pacing;
pub mod login;
pub mod mail;
pub mod password;
pub mod revocation;
pub mod seal;
pub mod security_events;
pub mod server;
pub mod service;
pub mod store;
pub mod token;
pub mod totp;

/// A secret string: usable, never printable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Cryptographically secure random bytes (ring's system RNG, which rustls already uses).
pub fn random<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    // The system RNG failing is not a condition the process can recover from.
    #[allow(clippy::expect_used)]
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the system random number generator failed");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2-correct-horse");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(<redacted>))");
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random::<32>(), random::<32>());
    }
}
