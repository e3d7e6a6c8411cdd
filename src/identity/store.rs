//! Members' credentials: one Secret per organization member in roster's own namespace (never a
//! tenant's), holding a JSON record — password hash, sealed TOTP seed, lockout counters,
//! generation, invitation. Every change is a compare-and-swap on the Secret's resourceVersion,
//! so concurrent logins serialise: 50 parallel wrong passwords against a limit of 10 count
//! exactly 10 and lock, and the other 40 are refused as locked without being counted.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use ring::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};

use super::Secret;
use super::lockout::{self, Policy, Verdict};
use super::password::Hasher;

const KEY: &str = "record";

/// Everything roster knows about one member's credentials. No secret in clear: the password is
/// an argon2id hash, the TOTP seed is sealed.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub failed: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<u64>,
    /// Bumped by password and MFA resets; tokens of older generations stop working.
    #[serde(default)]
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_last_step: Option<u64>,
}

// A password hash can be attacked offline and a sealed seed is still key material: neither
// belongs in a log line, so Debug shows only whether they are set.
impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("failed", &self.failed)
            .field("locked_until", &self.locked_until)
            .field("generation", &self.generation)
            .field(
                "totp_sealed",
                &self.totp_sealed.as_ref().map(|_| "<redacted>"),
            )
            .field("totp_last_step", &self.totp_last_step)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no credentials for this member")]
    NotFound,
    #[error("the credential record is unreadable: {0}")]
    Corrupt(String),
    #[error("the API server rejected a credential update: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Password(#[from] super::password::Error),
    #[error("gave up after {0} concurrent updates")]
    Contention(u32),
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NotFound => "CredentialsNotFound",
            Error::Corrupt(_) => "CredentialsCorrupt",
            Error::Api(_) => "CredentialsApiError",
            Error::Password(e) => e.reason(),
            Error::Contention(_) => "CredentialsContention",
        }
    }
}

/// The result of one password attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Accepted,
    /// Wrong password, counted.
    Wrong {
        failed: u32,
        locked: bool,
    },
    /// Refused without checking or counting: the account is locked until then.
    Locked {
        until: u64,
    },
}

pub struct Store {
    api: Api<KubeSecret>,
}

impl Store {
    /// Credentials live in `namespace`, roster's own.
    pub fn new(client: Client, namespace: &str) -> Store {
        Store {
            api: Api::namespaced(client, namespace),
        }
    }

    /// The Secret's name: the organization and a hash of the e-mail (e-mails are not valid
    /// object names, and need not be readable to anyone listing Secrets).
    pub fn secret_name(org: &str, email: &str) -> String {
        let h = digest(&SHA256, email.as_bytes());
        let hex: String = h.as_ref()[..10]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("roster-cred-{org}-{hex}")
    }

    async fn read(&self, org: &str, email: &str) -> Result<(Record, KubeSecret), Error> {
        let s = self
            .api
            .get_opt(&Store::secret_name(org, email))
            .await?
            .ok_or(Error::NotFound)?;
        let raw = s
            .data
            .as_ref()
            .and_then(|d| d.get(KEY))
            .ok_or_else(|| Error::Corrupt("no record".into()))?;
        let record = serde_json::from_slice(&raw.0).map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok((record, s))
    }

    /// Creates the member's record (the invitation step); an existing one is left alone.
    pub async fn create(&self, org: &str, email: &str, record: &Record) -> Result<(), Error> {
        let secret = KubeSecret {
            metadata: ObjectMeta {
                name: Some(Store::secret_name(org, email)),
                labels: Some(BTreeMap::from([
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "roster".to_string(),
                    ),
                    ("roster.dev/organization".to_string(), org.to_string()),
                ])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                KEY.to_string(),
                ByteString(serde_json::to_vec(record).unwrap_or_default()),
            )])),
            type_: Some("roster.dev/credentials".into()),
            ..Default::default()
        };
        match self.api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, org: &str, email: &str) -> Result<Record, Error> {
        Ok(self.read(org, email).await?.0)
    }

    /// Applies `change` to the latest record with compare-and-swap, retrying on conflicts.
    /// `change` returns None to leave the record as it is.
    async fn update<T>(
        &self,
        org: &str,
        email: &str,
        mut change: impl FnMut(&Record) -> (Option<Record>, T),
    ) -> Result<T, Error> {
        const ATTEMPTS: u32 = 200;
        for _ in 0..ATTEMPTS {
            let (record, mut secret) = self.read(org, email).await?;
            let (next, out) = change(&record);
            let Some(next) = next else { return Ok(out) };
            secret.data = Some(BTreeMap::from([(
                KEY.to_string(),
                ByteString(serde_json::to_vec(&next).unwrap_or_default()),
            )]));
            // `replace` sends the resourceVersion we read: a concurrent writer makes it 409.
            match self
                .api
                .replace(
                    &Store::secret_name(org, email),
                    &PostParams::default(),
                    &secret,
                )
                .await
            {
                Ok(_) => return Ok(out),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contention(ATTEMPTS))
    }

    /// One password attempt: refused while locked (not counted); otherwise the password is
    /// checked once and the outcome recorded on the latest record.
    pub async fn attempt_password(
        &self,
        org: &str,
        email: &str,
        password: &Secret,
        hasher: &Hasher,
        policy: &Policy,
        now: u64,
    ) -> Result<Attempt, Error> {
        let (record, _) = self.read(org, email).await?;
        if let Verdict::Locked { until } = lockout::gate(&lockout_record(&record), now) {
            return Ok(Attempt::Locked { until });
        }
        let ok = match &record.password_hash {
            Some(phc) => hasher.verify(password, phc).await?,
            None => false,
        };
        self.update(org, email, |latest| {
            // Another attempt may have locked the account while this password was hashed.
            if let Verdict::Locked { until } = lockout::gate(&lockout_record(latest), now) {
                return (None, Attempt::Locked { until });
            }
            let after = lockout::record(&lockout_record(latest), policy, now, ok);
            let next = Record {
                failed: after.failed,
                locked_until: after.locked_until,
                ..latest.clone()
            };
            let outcome = if ok {
                Attempt::Accepted
            } else {
                Attempt::Wrong {
                    failed: after.failed,
                    locked: after.locked_until.is_some(),
                }
            };
            (Some(next), outcome)
        })
        .await
    }

    /// Sets a new password hash (invitation accepted, password reset).
    pub async fn set_password(&self, org: &str, email: &str, phc: String) -> Result<(), Error> {
        self.update(org, email, |latest| {
            (
                Some(Record {
                    password_hash: Some(phc.clone()),
                    ..latest.clone()
                }),
                (),
            )
        })
        .await
    }

    /// An admin's unlock: the count starts again.
    pub async fn unlock(&self, org: &str, email: &str) -> Result<(), Error> {
        self.update(org, email, |latest| {
            let u = lockout::unlock();
            (
                Some(Record {
                    failed: u.failed,
                    locked_until: u.locked_until,
                    ..latest.clone()
                }),
                (),
            )
        })
        .await
    }
}

fn lockout_record(r: &Record) -> lockout::Record {
    lockout::Record {
        failed: r.failed,
        locked_until: r.locked_until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_stable_valid_and_do_not_show_the_address() {
        let n = Store::secret_name("acme", "alice@acme.example");
        assert_eq!(n, Store::secret_name("acme", "alice@acme.example"));
        assert_ne!(n, Store::secret_name("acme", "bob@acme.example"));
        assert!(
            n.starts_with("roster-cred-acme-") && n.len() == "roster-cred-acme-".len() + 20,
            "{n}"
        );
        assert!(!n.contains("alice"));
    }

    #[test]
    fn records_round_trip_and_carry_no_clear_secret() {
        let r = Record {
            password_hash: Some("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA".into()),
            failed: 2,
            ..Default::default()
        };
        let json = serde_json::to_string(&r).expect("json");
        assert_eq!(serde_json::from_str::<Record>(&json).expect("parse"), r);
        assert_eq!(
            serde_json::from_str::<Record>("{}").expect("parse"),
            Record::default(),
            "fields default"
        );
    }
}
