//! Passwords: the organization's length policy, a strength check (zxcvbn), and argon2id hashing
//! off the async runtime with a cap on concurrent hashes, so a flood of logins queues instead of
//! exhausting memory (each hash takes `m_cost` KiB for its duration).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::Output;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, Version};
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
    memory: Arc<Memory>,
}

/// argon2's working memory (`m_cost` KiB, 19 MiB by default), kept between checks while
/// checking is busy.
///
/// Freed, a hash's memory goes back to the kernel at once (`MIMALLOC_PURGE_DELAY=0`, which keeps
/// roster's RSS in budget), and the next check faulted in some 4,900 fresh zeroed pages: in the
/// login benchmark 40% of a login's CPU time was the kernel's, doing that. A buffer is kept only
/// while other checks are running or waiting, so an idle server holds none, and a busy one at
/// most one per permit, which it held anyway while hashing.
struct Memory {
    blocks: usize,
    kept: usize,
    free: Mutex<Vec<Vec<Block>>>,
    /// Checks asked for and not finished, queued ones included.
    wanted: AtomicUsize,
}

/// One check asked for, from its call to the end of its hashing (which outlives a dropped
/// request: the blocking work cannot be stopped).
struct Wanted(Arc<Memory>);

impl Drop for Wanted {
    fn drop(&mut self) {
        // The last one out frees what the others left (outside the lock).
        if self.0.wanted.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Taken in a statement of its own: the guard ends with it, before the freeing.
            let freed = std::mem::take(&mut *self.0.free());
            drop(freed);
        }
    }
}

impl Memory {
    fn want(self: &Arc<Self>) -> Wanted {
        self.wanted.fetch_add(1, Ordering::SeqCst);
        Wanted(self.clone())
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        // A panic elsewhere while holding the lock leaves only whole buffers behind.
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Vec<Block> {
        // Popped under the lock, made outside it: 19 MiB are not filled while others wait.
        let kept = self.free().pop();
        kept.unwrap_or_else(|| vec![Block::new(); self.blocks])
    }

    /// Before a hash in memory of its own (other parameters, or a new password): one kept
    /// buffer fewer, so that kept and in use stay within one per permit.
    fn make_room(&self) {
        let kept = self.free().pop();
        drop(kept);
    }

    /// By a check that is itself still wanted: kept when another is too.
    fn give_back(&self, blocks: Vec<Block>) {
        if self.wanted.load(Ordering::SeqCst) > 1 {
            let mut free = self.free();
            if free.len() < self.kept {
                free.push(blocks);
            }
        }
    }
}

/// Whether `password` matches the PHC string `phc`, hashing in `memory` when the parameters
/// are the configured ones (a hash made with others, before a change of them, gets its own).
/// The comparison is argon2's constant-time one (`Output`'s equality).
fn check(password: &[u8], phc: &str, memory: &Memory) -> Result<bool, Error> {
    let hash = PasswordHash::new(phc).map_err(|_| Error::CorruptHash)?;
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(Error::CorruptHash);
    };
    let algorithm = Algorithm::try_from(hash.algorithm.as_str()).map_err(|_| Error::CorruptHash)?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).map_err(|_| Error::CorruptHash)?,
        None => Version::default(),
    };
    let params = Params::try_from(&hash).map_err(|_| Error::CorruptHash)?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    let hashed = if params.block_count() == memory.blocks {
        let mut blocks = memory.take();
        let hashed = argon2.hash_password_into_with_memory(password, salt, &mut out, &mut blocks);
        memory.give_back(blocks);
        hashed
    } else {
        memory.make_room();
        argon2.hash_password_into(password, salt, &mut out)
    };
    hashed.map_err(|_| Error::CorruptHash)?;
    Ok(Output::new(&out).map_err(|_| Error::CorruptHash)? == *expected)
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
            memory: Arc::new(Memory {
                blocks: params.block_count(),
                kept: max_concurrent.max(1),
                free: Mutex::default(),
                wanted: AtomicUsize::new(0),
            }),
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
        let wanted = self.memory.want();
        let permit = self.permit().await?;
        let (argon2, password) = (self.argon2(), password.clone());
        tokio::task::spawn_blocking(move || {
            let _held = (permit, &wanted);
            wanted.0.make_room();
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
        let wanted = self.memory.want();
        let permit = self.permit().await?;
        let (password, phc) = (password.clone(), phc.to_string());
        // The permit and the want go with the hashing, not with the request.
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            check(password.expose().as_bytes(), &phc, &wanted.0)
        })
        .await
        .map_err(|e| Error::Hashing(e.to_string()))?
    }

    /// A turn to hash, owned: it goes with the blocking work, which outlives a dropped request.
    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Hashing(e.to_string()))
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

    /// The check in kept memory answers what argon2's own verification answers, for hashes
    /// made with the configured parameters (kept memory, dirty from the check before) and with
    /// others (memory of their own), right and wrong passwords alike.
    #[test]
    fn checks_in_kept_memory_answer_as_argon2_does() {
        use argon2::PasswordVerifier;
        let memory = Arc::new(Memory {
            blocks: Params::new(1024, 1, 1, None).expect("params").block_count(),
            kept: 2,
            free: Mutex::default(),
            wanted: AtomicUsize::new(0),
        });
        // Two checks wanted throughout: every buffer goes back and is used again.
        let (_a, _b) = (memory.want(), memory.want());
        let made = |alg, version, m, t| {
            Argon2::new(alg, version, Params::new(m, t, 1, None).expect("params"))
                .hash_password(b"correct horse battery staple")
                .expect("hash")
                .to_string()
        };
        let hashes = [
            made(Algorithm::Argon2id, Version::V0x13, 1024, 1),
            made(Algorithm::Argon2id, Version::V0x13, 2048, 2),
            made(Algorithm::Argon2i, Version::V0x13, 1024, 1),
            made(Algorithm::Argon2d, Version::V0x10, 1024, 1),
        ];
        for phc in &hashes {
            for password in [
                "correct horse battery staple",
                "correct horse battery stapler",
            ] {
                let argon2s = Argon2::default()
                    .verify_password(password.as_bytes(), phc.as_str())
                    .is_ok();
                assert_eq!(
                    check(password.as_bytes(), phc, &memory),
                    Ok(argon2s),
                    "{password} against {phc}"
                );
            }
        }
        assert_eq!(memory.free().len(), 1, "one buffer, used again and again");
        for bad in [
            "not a phc string",
            "$argon2id$v=19$m=1024,t=1,p=1",
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0",
            "$argon2x$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=7$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert_eq!(check(b"x", bad, &memory), Err(Error::CorruptHash), "{bad}");
        }
    }

    /// A request dropped while its check hashes (the client went away) keeps the check's
    /// permit until the hashing ends: the blocking work cannot be stopped, and a freed permit
    /// let the next check start beside it, past the cap on memory and CPU (red team 40).
    #[tokio::test]
    async fn a_dropped_check_holds_its_permit_until_its_hashing_ends() {
        let h = Hasher::new(8 * 1024, 10, 1, 1).expect("params");
        let phc = h.dummy_phc().to_string();
        let checking = {
            let (h, phc) = (h.clone(), phc.clone());
            tokio::spawn(async move { h.verify(&s("guess"), &phc).await })
        };
        while h.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        checking.abort();
        assert!(checking.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(
            h.permits.available_permits(),
            0,
            "the hashing goes on: so does its permit"
        );
        // And it is given back when the hashing ends.
        assert_eq!(h.verify(&s("guess"), &phc).await, Ok(false));
        assert_eq!(h.permits.available_permits(), 1);
    }

    #[test]
    fn memory_is_kept_only_while_another_check_is_wanted() {
        let memory = Arc::new(Memory {
            blocks: 8,
            kept: 2,
            free: Mutex::default(),
            wanted: AtomicUsize::new(0),
        });
        {
            let _alone = memory.want();
            memory.give_back(memory.take());
            assert_eq!(memory.free().len(), 0, "nobody else wants one: freed");
        }
        let wanted: Vec<_> = (0..4).map(|_| memory.want()).collect();
        let taken: Vec<_> = (0..4).map(|_| memory.take()).collect();
        for blocks in taken {
            memory.give_back(blocks);
        }
        assert_eq!(memory.free().len(), 2, "at most one per permit");
        // A hash in memory of its own (other parameters, a new password) takes a kept
        // buffer's place: kept and in use stay within one per permit (red team 40).
        memory.make_room();
        assert_eq!(memory.free().len(), 1);
        drop(wanted);
        assert_eq!(memory.wanted.load(Ordering::SeqCst), 0);
        assert_eq!(memory.free().len(), 0, "idle: nothing kept");
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
