//! Login tokens: short-lived, signed (HMAC-SHA256), naming the organization, the Membership and
//! the credential generation. Verifying one checks only the signature and the expiry; the
//! TokenReview endpoint then checks the member's state *now* (enabled, not locked, same
//! generation), so disabling a member cuts access at once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::hmac;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The organization (its namespace).
    pub org: String,
    /// The Membership's name and UID: a Membership deleted and created again under the same
    /// name is another member, and its predecessor's tokens stay dead.
    pub membership: String,
    #[serde(default)]
    pub uid: String,
    pub email: String,
    /// Bumped when the password or MFA is reset: older tokens stop working.
    pub generation: u64,
    /// Issued at / expires at, unix seconds.
    pub iat: u64,
    pub exp: u64,
    /// What the token is for: `session` (kubectl, TokenReview) or `enrol` (the few minutes
    /// between a correct password and a confirmed TOTP enrolment). One never passes for the
    /// other.
    pub purpose: String,
    /// Who the token is for (session tokens: the API server's audiences). A TokenReview that
    /// names other audiences does not accept it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aud: Vec<String>,
}

pub const SESSION: &str = "session";
pub const ENROL: &str = "enrol";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Malformed => "TokenMalformed",
            Error::BadSignature => "TokenBadSignature",
            Error::Expired => "TokenExpired",
        }
    }
}

/// Prefix that tells roster's tokens apart (and makes them easy to spot in a leak scanner).
const PREFIX: &str = "roster.v1.";

pub struct Signer(hmac::Key);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    pub fn sign(&self, claims: &Claims) -> super::Secret {
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let tag = hmac::sign(&self.0, payload.as_bytes());
        super::Secret::new(format!("{PREFIX}{payload}.{}", B64.encode(tag.as_ref())))
    }

    /// The claims of a token this signer issued that has not expired at `now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, Error> {
        let body = token.strip_prefix(PREFIX).ok_or(Error::Malformed)?;
        if body.len() > 4096 {
            return Err(Error::Malformed);
        }
        let (payload, tag) = body.split_once('.').ok_or(Error::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| Error::Malformed)?;
        // Constant-time comparison of the tag, before the payload is even parsed.
        hmac::verify(&self.0, payload.as_bytes(), &tag).map_err(|_| Error::BadSignature)?;
        let claims: Claims =
            serde_json::from_slice(&B64.decode(payload).map_err(|_| Error::Malformed)?)
                .map_err(|_| Error::Malformed)?;
        if claims.exp <= now {
            return Err(Error::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            org: "acme".into(),
            membership: "bob".into(),
            uid: "bob-uid".into(),
            email: "bob@acme.example".into(),
            generation: 3,
            iat: 1_000,
            exp: 1_000 + 8 * 3600,
            purpose: SESSION.into(),
            aud: vec!["https://kubernetes.default.svc".into()],
        }
    }

    #[test]
    fn sign_verify_tamper_expire() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef");
        let token = signer.sign(&claims());
        assert!(token.expose().starts_with("roster.v1."));
        assert_eq!(signer.verify(token.expose(), 2_000), Ok(claims()));
        assert_eq!(
            signer.verify(token.expose(), 1_000 + 8 * 3600),
            Err(Error::Expired)
        );

        // Another organization's roster (another key) does not accept it.
        assert_eq!(
            Signer::new(b"another key, another roster.....").verify(token.expose(), 2_000),
            Err(Error::BadSignature)
        );

        // Claims edited to another member: the signature no longer matches.
        let (payload, tag) = token
            .expose()
            .trim_start_matches(PREFIX)
            .split_once('.')
            .expect("parts");
        let mut forged = claims();
        forged.membership = "alice".into();
        let forged_payload = B64.encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(
            signer.verify(&format!("{PREFIX}{forged_payload}.{tag}"), 2_000),
            Err(Error::BadSignature)
        );
        assert!(!payload.is_empty());

        for garbage in [
            "",
            "roster.v1.",
            "roster.v1.abc",
            "roster.v1.a.b",
            "Bearer xyz",
            &"roster.v1.".repeat(1000),
        ] {
            assert!(signer.verify(garbage, 2_000).is_err(), "{garbage:.40}");
        }
    }
}
