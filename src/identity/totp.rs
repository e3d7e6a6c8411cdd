//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, ±1 step) with a 160-bit seed, and the rule the
//! library leaves to its caller: a code is accepted once. `verify` returns the matched time
//! step; the caller stores it and passes it back as `last_step`, and a code from that step or an
//! earlier one is refused as a replay.

use totp_rs::{Algorithm, Builder, Totp};

use super::random;

/// A TOTP seed. Its `Debug` is redacted (totp-rs types derive `Debug` and would print it).
#[derive(Clone, PartialEq, Eq)]
pub struct Seed([u8; 20]);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(<redacted>)")
    }
}

#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("a code is 6 digits")]
    Malformed,
    #[error("the code is not valid now")]
    Wrong,
    #[error("this code was already used; wait for the next one")]
    Replayed,
    #[error("the stored TOTP seed is unusable")]
    BadSeed,
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Malformed => "TotpMalformed",
            Error::Wrong => "TotpWrong",
            Error::Replayed => "TotpReplayed",
            Error::BadSeed => "TotpBadSeed",
        }
    }
}

pub const STEP_SECONDS: u64 = 30;

impl Seed {
    pub fn generate() -> Seed {
        Seed(random::<20>())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Seed, Error> {
        <[u8; 20]>::try_from(bytes)
            .map(Seed)
            .map_err(|_| Error::BadSeed)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn totp(&self) -> Result<Totp, Error> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(STEP_SECONDS)
            .with_secret(self.0.to_vec())
            .build()
            .map_err(|_| Error::BadSeed)
    }

    /// The secret as base32 text (RFC 4648, no padding), for typing into an authenticator app.
    pub fn base32(&self) -> String {
        base32::encode(base32::Alphabet::Rfc4648 { padding: false }, &self.0)
    }

    /// The Key Uri Format authenticator apps read from a QR code:
    /// `otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30`.
    /// (Written here rather than with totp-rs's `otpauth` feature, which pulls a URL parser and
    /// the whole Unicode IDNA stack in for this one string.)
    pub fn otpauth_url(&self, issuer: &str, account: &str) -> String {
        let (i, a) = (percent_encode(issuer), percent_encode(account));
        format!(
            "otpauth://totp/{i}:{a}?secret={}&issuer={i}&algorithm=SHA1&digits=6&period={STEP_SECONDS}",
            self.base32()
        )
    }

    /// Checks `code` at unix time `now`; returns the matched step to store as the new
    /// `last_step`. Anything but exactly six ASCII digits is `Malformed` (and never compared).
    pub fn verify(&self, code: &str, now: u64, last_step: Option<u64>) -> Result<u64, Error> {
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Malformed);
        }
        let step = self.totp()?.check(code, now).ok_or(Error::Wrong)?;
        if last_step.is_some_and(|last| step <= last) {
            return Err(Error::Replayed);
        }
        Ok(step)
    }

    #[cfg(test)]
    pub(crate) fn code_at(&self, t: u64) -> String {
        self.totp()
            .map(|t2| t2.generate(t).to_string())
            .unwrap_or_default()
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 seed "12345678901234567890", last 6 of the 8-digit values.
    #[test]
    fn rfc6238_vectors() {
        let seed = Seed::from_bytes(b"12345678901234567890").expect("seed");
        for (t, code) in [
            (59u64, "287082"),
            (1_111_111_109, "081804"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
        ] {
            assert_eq!(seed.code_at(t), code, "t={t}");
            assert_eq!(seed.verify(code, t, None), Ok(t / 30));
        }
    }

    #[test]
    fn window_replay_and_garbage() {
        let seed = Seed::from_bytes(b"12345678901234567890").expect("seed");
        let t = 1_234_567_890;
        let code = seed.code_at(t);
        assert_eq!(
            seed.verify(&code, t + 30, None),
            Ok(t / 30),
            "one step late is accepted"
        );
        assert_eq!(
            seed.verify(&code, t - 30, None),
            Ok(t / 30),
            "one step early is accepted"
        );
        assert_eq!(
            seed.verify(&code, t + 60, None),
            Err(Error::Wrong),
            "two steps late is not"
        );
        assert_eq!(seed.verify(&code, t, Some(t / 30)), Err(Error::Replayed));
        assert_eq!(
            seed.verify(&seed.code_at(t - 30), t, Some(t / 30)),
            Err(Error::Replayed),
            "an older code after a newer one"
        );
        assert_eq!(
            seed.verify(&seed.code_at(t + 30), t, Some(t / 30)),
            Ok(t / 30 + 1),
            "the next step is fine"
        );
        for bad in [
            "",
            "12345",
            "1234567",
            "123456789",
            "12a456",
            "١٢٣٤٥٦",
            " 12345",
            "123 456",
        ] {
            assert_eq!(seed.verify(bad, t, None), Err(Error::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn seeds_are_160_bits_random_and_never_printed() {
        let a = Seed::generate();
        assert_eq!(a.as_bytes().len(), 20);
        assert_ne!(a, Seed::generate());
        assert_eq!(format!("{a:?}"), "Seed(<redacted>)");
        assert_eq!(a.base32().len(), 32);
        let known = Seed::from_bytes(b"12345678901234567890").expect("seed");
        assert_eq!(known.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            known.otpauth_url("roster acme", "alice@acme.example"),
            "otpauth://totp/roster%20acme:alice%40acme.example?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=roster%20acme&algorithm=SHA1&digits=6&period=30"
        );
    }
}
