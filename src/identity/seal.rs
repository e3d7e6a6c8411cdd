//! Secrets at rest (TOTP seeds): AES-256-GCM under a key that lives in roster's own namespace,
//! out of tenants' reach. The associated data binds a sealed value to its owner (organization
//! and e-mail), so a seed copied onto another member's record does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use super::random;

pub struct Key(LessSafeKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the sealing key must be 32 bytes")]
    BadKey,
    #[error("the sealed value is damaged or belongs to someone else")]
    Unseal,
}

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::BadKey => "BadSealingKey",
            Error::Unseal => "UnsealFailed",
        }
    }
}

impl Key {
    pub fn generate() -> (Key, [u8; 32]) {
        let bytes = random::<32>();
        (
            Key::from_bytes(&bytes)
                .unwrap_or_else(|_| unreachable!("32 bytes is the AES-256 key size")),
            bytes,
        )
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Key, Error> {
        UnboundKey::new(&AES_256_GCM, bytes)
            .map(|k| Key(LessSafeKey::new(k)))
            .map_err(|_| Error::BadKey)
    }

    /// base64(nonce ‖ ciphertext ‖ tag), with a fresh random 96-bit nonce.
    pub fn seal(&self, plaintext: &[u8], owner: &str) -> String {
        let nonce_bytes = random::<NONCE_LEN>();
        let mut buf = plaintext.to_vec();
        // Sealing in place with a valid key and a fresh nonce cannot fail for small inputs.
        let _ = self.0.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(owner.as_bytes()),
            &mut buf,
        );
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        B64.encode(out)
    }

    pub fn open(&self, sealed: &str, owner: &str) -> Result<Vec<u8>, Error> {
        let raw = B64.decode(sealed).map_err(|_| Error::Unseal)?;
        if raw.len() < NONCE_LEN {
            return Err(Error::Unseal);
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Error::Unseal)?;
        let mut buf = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(owner.as_bytes()), &mut buf)
            .map_err(|_| Error::Unseal)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_evidence() {
        let (key, _) = Key::generate();
        let sealed = key.seal(b"twenty byte seed!!!!", "acme/alice@acme.example");
        assert_eq!(
            key.open(&sealed, "acme/alice@acme.example").as_deref(),
            Ok(&b"twenty byte seed!!!!"[..])
        );
        assert_ne!(
            sealed,
            key.seal(b"twenty byte seed!!!!", "acme/alice@acme.example"),
            "fresh nonce each time"
        );
        assert_eq!(
            key.open(&sealed, "acme/bob@acme.example"),
            Err(Error::Unseal),
            "bound to its owner"
        );
        let (other, _) = Key::generate();
        assert_eq!(
            other.open(&sealed, "acme/alice@acme.example"),
            Err(Error::Unseal)
        );
        let mut raw = B64.decode(&sealed).expect("b64");
        raw[15] ^= 1;
        assert_eq!(
            key.open(&B64.encode(raw), "acme/alice@acme.example"),
            Err(Error::Unseal)
        );
        for garbage in ["", "AAAA", "!!!"] {
            assert_eq!(key.open(garbage, "x"), Err(Error::Unseal));
        }
        assert_eq!(Key::from_bytes(&[0u8; 16]).err(), Some(Error::BadKey));
        assert_eq!(format!("{key:?}"), "Key(<redacted>)");
    }
}
