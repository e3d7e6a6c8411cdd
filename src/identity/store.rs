//! Members' credentials: one Secret per organization member in roster's own namespace (never a
//! tenant's), holding a JSON record — password hash, sealed TOTP seed, lockout counters,
//! generation, invitation. Every change is a compare-and-swap on the Secret's resourceVersion,
//! so concurrent logins serialise: 50 parallel wrong passwords against a limit of 10 count
//! exactly 10 and lock, and the other 40 are refused as locked without being counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use crate::cache::Store as Cache;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use ring::digest::{SHA256, digest};

use super::lockout;

/// The Secret type of credential records: the controller's cache selects on it.
pub use crate::api::contract::CREDENTIALS_SECRET_TYPE as SECRET_TYPE;
use crate::api::contract::{MANAGED_BY, MANAGER, ORGANIZATION_LABEL};
pub use crate::api::credential::{Invitation, KEY, Record, Undelivered};
use crate::cache::Credential;

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

impl crate::Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::NotFound => "CredentialsNotFound",
            Error::Corrupt(_) => "CredentialsCorrupt",
            Error::Api(_) => "CredentialsApiError",
            Error::Password(e) => e.reason(),
            Error::Contention(_) => "CredentialsContention",
        }
    }
}

/// A record as read, with the resourceVersion of the Secret that holds it.
pub struct Read(pub Record, String);

pub struct Store {
    api: Api<KubeSecret>,
    namespace: String,
    /// The controller's watch of credential Secrets, when there is one: reads come from it,
    /// not from the API server.
    cache: Option<Cache<Credential>>,
    /// Records this process wrote that the watch may not have delivered yet (write-through).
    written: Mutex<HashMap<String, Arc<Credential>>>,
    /// One lock per member: this process decides one attempt of a member at a time.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Store {
    /// Credentials live in `namespace`, roster's own.
    pub fn new(client: Client, namespace: &str) -> Store {
        Store {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            cache: None,
            written: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Reads through the controller's watch of credential Secrets (plus this process's own
    /// writes) instead of the API server. Exact for one identity server process (see
    /// `lock_member`); compare-and-swap keeps every write exact across processes.
    pub fn with_cache(mut self, cache: Cache<Credential>) -> Store {
        self.cache = Some(cache);
        self
    }

    /// Serialises this process's attempts for one member: with the watch plus own writes as
    /// the source of reads, a success is then decided on the latest state this process knows
    /// (every earlier attempt's lock or failure included), and parallel guesses after a lock
    /// are refused without hashing.
    pub async fn lock_member(&self, org: &str, email: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let name = Store::secret_name(org, email);
        // Poisoned or not, the table is whole (one entry call at a time): a fresh lock per
        // attempt instead would let parallel guesses past the lockout.
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name)
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// The newest copy this process knows: the watch's, or its own write if the watch has
    /// not caught up (resourceVersions of one object only grow; etcd's are integers).
    fn known(&self, name: &str) -> Option<Arc<Credential>> {
        let cache = self.cache.as_ref()?;
        let watched = cache.get(&self.namespace, name);
        let rv = |c: &Credential| c.version();
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let own = written.get(name).cloned();
        match (watched, own) {
            (Some(w), Some(o)) if rv(&w) >= rv(&o) && rv(&w).is_some() => {
                written.remove(name);
                Some(w)
            }
            (_, Some(o)) => Some(o),
            (Some(w), None) => Some(w),
            (None, None) => None,
        }
    }

    /// The member's record as this process knows it (the watch, or its own newer write),
    /// without an API call: what TokenReview and the enrolment step read. None when there is
    /// none (or no watch to read).
    pub fn known_record(&self, org: &str, email: &str) -> Option<Result<Record, Error>> {
        self.known(&Store::secret_name(org, email))
            .map(|c| Store::record_of(&c))
    }

    /// The member's cached credential as `known_record` finds it, for readers of its
    /// `Standing` only (no JSON parsed).
    pub fn known_credential(&self, org: &str, email: &str) -> Option<Arc<Credential>> {
        self.known(&Store::secret_name(org, email))
    }

    fn record_of(c: &Credential) -> Result<Record, Error> {
        c.record().map_err(Error::Corrupt)
    }

    /// Remembers a Secret this process wrote (as the API server answered it), in its cached
    /// form; and returns that form.
    fn wrote(&self, s: &KubeSecret) -> Credential {
        let c = Credential::of(s);
        if self.cache.is_some() && !c.name.is_empty() {
            let mut w = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            w.insert(c.name.to_string(), Arc::new(c.clone()));
        }
        c
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Secret's name: the organization and a hash of the e-mail (e-mails are not valid
    /// object names, and need not be readable to anyone listing Secrets).
    pub fn secret_name(org: &str, email: &str) -> String {
        use std::fmt::Write as _;
        let h = digest(&SHA256, email.as_bytes());
        // Built in place: every TokenReview and SubjectAccessReview names one.
        let mut name = String::with_capacity(32 + org.len());
        name.push_str("roster-cred-");
        name.push_str(org);
        name.push('-');
        for b in &h.as_ref()[..10] {
            let _ = write!(name, "{b:02x}");
        }
        name
    }

    async fn read(&self, org: &str, email: &str) -> Result<Read, Error> {
        if let Some(c) = self.known(&Store::secret_name(org, email)) {
            return Ok(Read(Store::record_of(&c)?, c.resource_version.to_string()));
        }
        self.read_fresh(org, email, false).await
    }

    /// From the API server (after a conflict: someone wrote what this process has not seen,
    /// which is then remembered as if written here: `remember`).
    async fn read_fresh(&self, org: &str, email: &str, remember: bool) -> Result<Read, Error> {
        let s = self
            .api
            .get_opt(&Store::secret_name(org, email))
            .await?
            .ok_or(Error::NotFound)?;
        let c = if remember {
            self.wrote(&s)
        } else {
            Credential::of(&s)
        };
        Ok(Read(Store::record_of(&c)?, c.resource_version.into()))
    }

    /// The record in a credential Secret.
    pub fn parse(s: &KubeSecret) -> Result<Record, Error> {
        crate::api::credential::record_in(s).map_err(Error::Corrupt)
    }

    /// Removes a member's credentials if they still belong to Membership `membership_uid`
    /// (read fresh, deleted with that read's resourceVersion as precondition): a record made
    /// for a new Membership of the same address since is kept. Absent is fine.
    pub async fn delete_if(
        &self,
        org: &str,
        email: &str,
        membership_uid: Option<&str>,
    ) -> Result<(), Error> {
        let name = Store::secret_name(org, email);
        let current = match self.api.get_opt(&name).await? {
            Some(s) => s,
            None => return Ok(()),
        };
        let record = Store::parse(&current)?;
        if record.membership_uid.as_deref() != membership_uid {
            return Ok(());
        }
        self.written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name);
        let params = kube::api::DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: current.metadata.resource_version.clone(),
                uid: current.metadata.uid.clone(),
            }),
            ..Default::default()
        };
        match self.api.delete(&name, &params).await {
            Ok(_) => Ok(()),
            // Gone, or changed since the read (a new Membership's record): kept.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the member's record (the invitation step); an existing one is left alone.
    /// Whether it was created.
    pub async fn create(&self, org: &str, email: &str, record: &Record) -> Result<bool, Error> {
        let secret = KubeSecret {
            metadata: ObjectMeta {
                name: Some(Store::secret_name(org, email)),
                labels: Some(BTreeMap::from([
                    (MANAGED_BY.to_string(), MANAGER.to_string()),
                    (ORGANIZATION_LABEL.to_string(), org.to_string()),
                ])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                KEY.to_string(),
                ByteString(serde_json::to_vec(record).unwrap_or_default()),
            )])),
            type_: Some(SECRET_TYPE.into()),
            ..Default::default()
        };
        match self.api.create(&PostParams::default(), &secret).await {
            Ok(created) => {
                self.wrote(&created);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, org: &str, email: &str) -> Result<Record, Error> {
        Ok(self.read(org, email).await?.0)
    }

    /// The record and the resourceVersion it was read at, for `update_from`.
    pub async fn get_for_update(&self, org: &str, email: &str) -> Result<Read, Error> {
        self.read(org, email).await
    }

    /// Applies `change` to the latest record with compare-and-swap, retrying on conflicts.
    /// `change` returns None to leave the record as it is.
    pub async fn update<T>(
        &self,
        org: &str,
        email: &str,
        change: impl FnMut(&Record) -> (Option<Record>, T),
    ) -> Result<T, Error> {
        self.update_from(org, email, None, change).await
    }

    /// `update`, starting from a record the caller has just read (saves a read when nothing
    /// wrote in between, the common case).
    pub async fn update_from<T>(
        &self,
        org: &str,
        email: &str,
        mut first: Option<Read>,
        mut change: impl FnMut(&Record) -> (Option<Record>, T),
    ) -> Result<T, Error> {
        const ATTEMPTS: u32 = 200;
        let mut conflicted = false;
        for _ in 0..ATTEMPTS {
            let Read(record, version) = match first.take() {
                Some(r) => r,
                None if conflicted => self.read_fresh(org, email, true).await?,
                None => self.read(org, email).await?,
            };
            let (next, out) = change(&record);
            let Some(next) = next else { return Ok(out) };
            if version.is_empty() {
                // Nothing to make the write conditional on: read it from the API server.
                conflicted = true;
                continue;
            }
            // The resourceVersion read is the patch's precondition: a concurrent writer makes
            // it 409. Only the record is sent, so labels or annotations others keep on the
            // Secret stay (a replace built from the cached form would drop them).
            let patch = serde_json::json!({
                "metadata": { "resourceVersion": version },
                "data": { KEY: ByteString(serde_json::to_vec(&next).unwrap_or_default()) },
            });
            match self
                .api
                .patch(
                    &Store::secret_name(org, email),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(written) => {
                    self.wrote(&written);
                    return Ok(out);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => conflicted = true,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contention(ATTEMPTS))
    }
}

pub(crate) fn lockout_record(r: &Record) -> lockout::Record {
    lockout::Record {
        failed: r.failed,
        locked_until: r.locked_until,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One member's attempts are decided one at a time (lockout counts every failure before
    /// the next try is hashed), also after a panic elsewhere poisoned the table of locks: a
    /// fresh lock per attempt would let parallel guesses past the lockout.
    #[tokio::test]
    async fn attempts_stay_serialised_after_a_panic_poisoned_the_locks() {
        let client = kube::Client::try_from(kube::Config::new(
            "http://127.0.0.1:9".parse().expect("url"),
        ))
        .expect("client");
        let store = Arc::new(Store::new(client, "roster-system"));
        let held = store.clone();
        let _ = std::thread::spawn(move || {
            let _locks = held.locks.lock();
            panic!("poisoning the table on purpose");
        })
        .join();
        let first = store.lock_member("acme", "bob@acme.example").await;
        let second = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            store.lock_member("acme", "bob@acme.example"),
        )
        .await;
        assert!(second.is_err(), "a second attempt ran beside the first");
        drop(first);
        let _third = store.lock_member("acme", "bob@acme.example").await;
    }

    #[test]
    fn secret_names_are_stable_valid_and_do_not_show_the_address() {
        let n = Store::secret_name("acme", "alice@acme.example");
        // The name records already stored under: an upgrade must find them.
        assert_eq!(n, "roster-cred-acme-b29433513db8fe8794d5");
        assert_ne!(n, Store::secret_name("acme", "bob@acme.example"));
        assert!(
            n.starts_with("roster-cred-acme-") && n.len() == "roster-cred-acme-".len() + 20,
            "{n}"
        );
        assert!(!n.contains("alice"));
    }

    #[test]
    fn a_records_debug_hides_its_secrets() {
        let r = Record {
            password_hash: Some("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA".into()),
            totp_sealed: Some("sealed-seed-bytes".into()),
            totp_pending: Some("pending-seed-bytes".into()),
            invitation: Some(Box::new(Invitation {
                hash: "invitation-hash".into(),
                sent_at: 1,
                expires_at: 2,
                delivery: "Secret".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let shown = format!("{r:?}");
        for secret in ["aGFzaA", "sealed-seed", "pending-seed", "invitation-hash"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("<redacted>"));
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
