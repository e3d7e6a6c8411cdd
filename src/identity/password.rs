//! Passwords: the organization's length policy, a strength check (zxcvbn), and argon2id hashing
//! off the async runtime with a cap on concurrent hashes, so a flood of logins queues instead of
//! exhausting memory (each hash takes `m_cost` KiB for its duration).

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use super::Secret;

/// Longest password accepted, in characters; checked before any hashing.
pub const MAX_LENGTH: usize = 128;
/// No organization may allow shorter passwords than this.
pub const MIN_LENGTH_FLOOR: usize = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the password must be at least {min} characters long")]
    TooShort { min: usize },
    #[error("the password must be at most {MAX_LENGTH} characters long")]
    TooLong,
    #[error("the password is too easy to guess{hint}")]
    TooWeak { hint: String },
    #[error("the stored password hash is unreadable")]
    CorruptHash,
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::TooShort { .. } => "PasswordTooShort",
            Error::TooLong => "PasswordTooLong",
            Error::TooWeak { .. } => "PasswordTooWeak",
            Error::CorruptHash => "CorruptPasswordHash",
            Error::Hashing(_) => "HashingFailed",
        }
    }
}

/// Checks a new password against the organization's minimum length (never below 8), the
/// maximum of 128, and zxcvbn (score 3 of 4 at least; the member's e-mail and the organization's
/// name count as known words).
pub fn check_new(password: &Secret, min_length: u32, user_inputs: &[&str]) -> Result<(), Error> {
    let min = (min_length as usize).max(MIN_LENGTH_FLOOR);
    let len = password.expose().chars().count();
    if len > MAX_LENGTH {
        return Err(Error::TooLong);
    }
    if len < min {
        return Err(Error::TooShort { min });
    }
    let entropy = zxcvbn::zxcvbn(password.expose(), user_inputs);
    if (entropy.score() as u8) < 3 {
        let hint = entropy
            .feedback()
            .and_then(|f| {
                f.warning()
                    .map(|w| format!(": {w}"))
                    .or_else(|| f.suggestions().first().map(|s| format!(": {s}")))
            })
            .unwrap_or_default();
        return Err(Error::TooWeak { hint });
    }
    Ok(())
}

/// argon2id with OWASP's parameters by default (m = 19 MiB, t = 2, p = 1).
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password nobody knows, made with these very parameters: checked
    /// when there is no real hash to check (unknown organization or e-mail, no password yet),
    /// so that such a guess costs exactly what a wrong password costs.
    dummy: Arc<String>,
}

impl Hasher {
    /// `max_concurrent` hashes run at once; the rest wait their turn.
    pub fn new(
        m_cost_kib: u32,
        t_cost: u32,
        p_cost: u32,
        max_concurrent: usize,
    ) -> Result<Hasher, Error> {
        let params = Params::new(m_cost_kib, t_cost, p_cost, None)
            .map_err(|e| Error::Hashing(e.to_string()))?;
        let nobodys = super::random::<32>();
        let dummy = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password(&nobodys)
            .map_err(|e| Error::Hashing(e.to_string()))?
            .to_string();
        Ok(Hasher {
            params,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            dummy: Arc::new(dummy),
        })
    }

    pub fn owasp(max_concurrent: usize) -> Result<Hasher, Error> {
        Hasher::new(
            Params::DEFAULT_M_COST,
            Params::DEFAULT_T_COST,
            Params::DEFAULT_P_COST,
            max_concurrent,
        )
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string (`$argon2id$v=19$m=...`), salt included.
    pub async fn hash(&self, password: &Secret) -> Result<String, Error> {
        if password.expose().chars().count() > MAX_LENGTH {
            return Err(Error::TooLong);
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::Hashing(e.to_string()))?;
        let (argon2, password) = (self.argon2(), password.clone());
        tokio::task::spawn_blocking(move || {
            argon2
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| Error::Hashing(e.to_string()))
        })
        .await
        .map_err(|e| Error::Hashing(e.to_string()))?
    }

    /// Whether `password` matches `phc`. Over-long input is refused without hashing, so a
    /// 1 MiB "password" costs nothing.
    pub async fn verify(&self, password: &Secret, phc: &str) -> Result<bool, Error> {
        if password.expose().chars().count() > MAX_LENGTH {
            return Ok(false);
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::Hashing(e.to_string()))?;
        let (argon2, password, phc) = (self.argon2(), password.clone(), phc.to_string());
        tokio::task::spawn_blocking(move || {
            match argon2.verify_password(password.expose().as_bytes(), phc.as_str()) {
                Ok(()) => Ok(true),
                Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
                Err(_) => Err(Error::CorruptHash),
            }
        })
        .await
        .map_err(|e| Error::Hashing(e.to_string()))?
    }

    /// The work of one `verify` with the configured parameters, against a hash nobody's
    /// password matches; the result is always "wrong".
    pub async fn verify_nothing(&self, password: &Secret) {
        let dummy = self.dummy.clone();
        let _ = self.verify(password, &dummy).await;
    }

    /// The PHC string `verify_nothing` checks against (its parameters are the configured ones).
    pub fn dummy_phc(&self) -> &str {
        &self.dummy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    fn s(p: &str) -> Secret {
        Secret::new(p)
    }

    #[test]
    fn policy() {
        let cases: &[(&str, u32, Result<(), &str>)] = &[
            ("correct horse battery staple", 12, Ok(())),
            ("short", 12, Err("PasswordTooShort")),
            ("Tr0ub4dor&3xyz", 20, Err("PasswordTooShort")),
            ("password1234", 8, Err("PasswordTooWeak")),
            ("aaaaaaaaaaaaaaaa", 8, Err("PasswordTooWeak")),
            ("alice@acme.example!", 8, Err("PasswordTooWeak")),
            ("7 quirky Zebras jog past 3 ferns", 4, Ok(())),
        ];
        for (pw, min, want) in cases {
            let got =
                check_new(&s(pw), *min, &["alice@acme.example", "acme"]).map_err(|e| e.reason());
            assert_eq!(got, *want, "{pw:?} with minimum {min}");
        }
        let huge = "x".repeat(1 << 20);
        assert_eq!(check_new(&s(&huge), 12, &[]), Err(Error::TooLong));
        assert_eq!(
            check_new(&s("seven77"), 4, &[]).map_err(|e| e.reason()),
            Err("PasswordTooShort"),
            "floor of 8"
        );
    }

    #[tokio::test]
    async fn hash_and_verify() {
        // Small parameters keep the unit test fast; the defaults are checked below.
        let h = Hasher::new(1024, 1, 1, 2).expect("params");
        let phc = h
            .hash(&s("correct horse battery staple"))
            .await
            .expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
        assert!(
            h.verify(&s("correct horse battery staple"), &phc)
                .await
                .expect("verify")
        );
        assert!(
            !h.verify(&s("correct horse battery stapler"), &phc)
                .await
                .expect("verify")
        );
        assert!(
            !h.verify(&s(&"x".repeat(1 << 20)), &phc)
                .await
                .expect("verify"),
            "over-long input is simply wrong"
        );
        assert_eq!(
            h.verify(&s("x"), "not a phc string").await,
            Err(Error::CorruptHash)
        );
        let again = h
            .hash(&s("correct horse battery staple"))
            .await
            .expect("hash");
        assert_ne!(phc, again, "a fresh salt each time");
    }

    #[test]
    fn the_dummy_hash_costs_what_the_configured_parameters_cost() {
        for (m, t) in [(1024, 1), (19456, 2), (8192, 3)] {
            let h = Hasher::new(m, t, 1, 1).expect("params");
            assert!(
                h.dummy_phc()
                    .starts_with(&format!("$argon2id$v=19$m={m},t={t},p=1$")),
                "{}",
                h.dummy_phc()
            );
        }
    }

    #[test]
    fn owasp_parameters_by_default() {
        let h = Hasher::owasp(4).expect("params");
        assert_eq!(
            (h.params.m_cost(), h.params.t_cost(), h.params.p_cost()),
            (19 * 1024, 2, 1)
        );
    }
}
