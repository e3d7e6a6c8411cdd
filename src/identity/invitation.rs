//! Invitation tokens: 256 random bits, shown once (in the link), stored only as a SHA-256 hash
//! with an expiry. Resending makes a new token, so the old link stops working.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::digest::{SHA256, digest};

use super::{Secret, random};

/// What is stored: the token's hash and when it expires (unix seconds). Debug by hand: the
/// hash stays out of logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Stored {
    pub hash: String,
    pub expires_at: u64,
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("hash", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("this invitation link is not valid; ask an admin to send a new one")]
    Unknown,
    #[error("this invitation has expired; ask an admin to resend it")]
    Expired,
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Unknown => "InvitationUnknown",
            Error::Expired => "InvitationExpired",
        }
    }
}

/// A new token (for the link) and what to store for it.
pub fn issue(now: u64, ttl_seconds: u64) -> (Secret, Stored) {
    let token = B64.encode(random::<32>());
    let stored = Stored {
        hash: hash(&token),
        expires_at: now.saturating_add(ttl_seconds),
    };
    (Secret::new(token), stored)
}

fn hash(token: &str) -> String {
    B64.encode(digest(&SHA256, token.as_bytes()).as_ref())
}

/// Whether `token` is the one `stored` was issued for, and still valid at `now`.
pub fn check(token: &str, stored: &Stored, now: u64) -> Result<(), Error> {
    // Hashes are compared, not tokens: timing can at most reveal a prefix of a SHA-256 of a
    // 256-bit random value, which helps no one forge the token. Over-long input is cut before
    // hashing (a real token is 43 characters).
    if hash(token.get(..64).unwrap_or(token)) != stored.hash {
        return Err(Error::Unknown);
    }
    if now >= stored.expires_at {
        return Err(Error::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_check_expire_and_rotate() {
        let (token, stored) = issue(1_000, 168 * 3600);
        assert_eq!(token.expose().len(), 43, "256 bits in base64url");
        assert!(
            !stored.hash.contains(token.expose()),
            "only the hash is stored"
        );
        assert_eq!(check(token.expose(), &stored, 1_000), Ok(()));
        assert_eq!(
            check(token.expose(), &stored, 1_000 + 168 * 3600),
            Err(Error::Expired)
        );
        let (resent, stored2) = issue(2_000, 3600);
        assert_eq!(
            check(token.expose(), &stored2, 2_000),
            Err(Error::Unknown),
            "resending retires the old link"
        );
        assert_eq!(check(resent.expose(), &stored2, 2_000), Ok(()));
        for garbage in ["", "x", &"A".repeat(1 << 20)] {
            assert_eq!(check(garbage, &stored, 1_000), Err(Error::Unknown));
        }
    }
}
