//! One login attempt: password, then (when enrolled) a TOTP code, counted against lockout.
//!
//! The expensive part (argon2) runs once, on the record as first read. Everything that depends
//! on other attempts — the lock, the failure count, the last TOTP step used — is decided by
//! `decide()`, a pure function applied to the *latest* record inside the store's
//! compare-and-swap loop: 50 parallel wrong passwords count exactly to the limit, and one code
//! sent twice in parallel is accepted once.

use super::lockout::{self, Policy, Verdict};
use super::password::Hasher;
use super::store::{self, Record, Store};
use super::totp::{self, Seed};
use super::{Secret, seal};

/// Why an attempt failed. Callers show one generic message for all of them (so a guesser learns
/// nothing); the reason goes to the security log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    Password,
    /// Enrolled, but no code was sent.
    CodeMissing,
    Code(totp::Error),
}

impl crate::Reason for Failure {
    fn reason(&self) -> &'static str {
        match self {
            Failure::Password => "WrongPassword",
            Failure::CodeMissing => "CodeMissing",
            Failure::Code(e) => e.reason(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    Accepted {
        /// The credential generation (tokens name it; resets bump it).
        generation: u64,
        enrolled: bool,
    },
    /// Counted; `locked` when this failure reached the limit.
    Failed {
        why: Failure,
        failed: u32,
        locked: bool,
    },
    /// Refused without checking or counting.
    Locked { until: u64 },
}

/// How often `last_login` is written at most: every successful login would otherwise be a
/// write (and a reconcile), and a minute is all the status needs.
const LAST_LOGIN_PRECISION: u64 = 60;

/// The transition for one attempt on the latest record. `seed` is the member's opened TOTP seed
/// (None when not enrolled); `password_ok` is the result of the hash check.
pub fn decide(
    latest: &Record,
    password_ok: bool,
    code: Option<&str>,
    seed: Option<&Seed>,
    policy: &Policy,
    now: u64,
) -> (Option<Record>, Attempt) {
    let lock = store::lockout_record(latest);
    if let Verdict::Locked { until } = lockout::gate(&lock, now) {
        return (None, Attempt::Locked { until });
    }
    let mut step = None;
    let failure = if !password_ok {
        Some(Failure::Password)
    } else if let Some(seed) = seed {
        match code.filter(|c| !c.is_empty()) {
            None => Some(Failure::CodeMissing),
            Some(c) => match seed.verify(c, now, latest.totp_last_step) {
                Ok(s) => {
                    step = Some(s);
                    None
                }
                Err(e) => Some(Failure::Code(e)),
            },
        }
    } else {
        None
    };
    let after = lockout::record(&lock, policy, now, failure.is_none());
    let mut next = Record {
        failed: after.failed,
        locked_until: after.locked_until,
        ..latest.clone()
    };
    match failure {
        Some(why) => (
            Some(next),
            Attempt::Failed {
                why,
                failed: after.failed,
                locked: after.locked_until.is_some(),
            },
        ),
        None => {
            if step.is_some() {
                next.totp_last_step = step;
            }
            if latest
                .last_login
                .is_none_or(|t| now >= t.saturating_add(LAST_LOGIN_PRECISION))
            {
                next.last_login = Some(now);
            }
            let outcome = Attempt::Accepted {
                generation: latest.generation,
                enrolled: seed.is_some(),
            };
            ((next != *latest).then_some(next), outcome)
        }
    }
}

/// What a login needs besides the store.
pub struct Keys<'a> {
    pub hasher: &'a Hasher,
    pub seal: &'a seal::Key,
}

/// One attempt against the store, counted atomically.
#[allow(clippy::too_many_arguments)]
pub async fn attempt(
    store: &Store,
    org: &str,
    email: &str,
    membership_uid: Option<&str>,
    password: &Secret,
    code: Option<&str>,
    keys: &Keys<'_>,
    policy: &Policy,
    now: u64,
) -> Result<Attempt, store::Error> {
    let ours = |r: &Record| r.membership_uid.as_deref() == membership_uid;
    let seen = match store.get_for_update(org, email).await {
        Ok(r) if ours(&r.0) => r.0,
        // No record, or one left by a deleted Membership of the same e-mail: nothing to
        // check, at the price of a check.
        Ok(_) | Err(store::Error::NotFound) => {
            keys.hasher.verify_nothing(password).await;
            return Err(store::Error::NotFound);
        }
        Err(e) => return Err(e),
    };
    // Invited, not accepted: there is no password to guess, so nothing is counted. Counted,
    // outsiders locked a member before they had accepted, and the lock's answer told them
    // apart from an address that is nobody's (red team 19b).
    if seen.password_hash.is_none() {
        keys.hasher.verify_nothing(password).await;
        return Err(store::Error::NotFound);
    }
    if let Verdict::Locked { until } = lockout::gate(&store::lockout_record(&seen), now) {
        return Ok(Attempt::Locked { until });
    }
    // The password is checked before the member's turn, in the argon2 queue like anyone's:
    // the member's lock covers only reading, deciding and writing the record. Hashing inside
    // it queued one member's guesses behind each other, so that they answered later than
    // guesses for an address that is nobody's — telling the two apart.
    let check = |phc: Option<String>| async move {
        match phc {
            Some(phc) => keys.hasher.verify(password, &phc).await,
            None => {
                keys.hasher.verify_nothing(password).await;
                Ok(false)
            }
        }
    };
    let mut password_ok = check(seen.password_hash.clone()).await?;
    let _one_at_a_time = store.lock_member(org, email).await;
    let read = match store.get_for_update(org, email).await {
        Ok(r) if ours(&r.0) => r,
        Ok(_) | Err(store::Error::NotFound) => return Err(store::Error::NotFound),
        Err(e) => return Err(e),
    };
    let first = read.0.clone();
    if let Verdict::Locked { until } = lockout::gate(&store::lockout_record(&first), now) {
        return Ok(Attempt::Locked { until });
    }
    // Set or reset meanwhile: the answer is about the password the record holds now.
    if first.password_hash != seen.password_hash {
        password_ok = check(first.password_hash.clone()).await?;
    }
    let owner = Store::secret_name(org, email);
    store
        .update_from(org, email, Some(read), |latest| {
            // A seed that cannot be opened (key rotated, record damaged) fails the code check
            // rather than letting the password alone through.
            let seed = latest.totp_sealed.as_ref().map(|s| {
                keys.seal
                    .open(s, &owner)
                    .ok()
                    .and_then(|b| Seed::from_bytes(&b).ok())
            });
            match seed {
                Some(None) => {
                    let lock = store::lockout_record(latest);
                    let after = lockout::record(&lock, policy, now, false);
                    (
                        Some(Record {
                            failed: after.failed,
                            locked_until: after.locked_until,
                            ..latest.clone()
                        }),
                        Attempt::Failed {
                            why: Failure::Code(totp::Error::BadSeed),
                            failed: after.failed,
                            locked: after.locked_until.is_some(),
                        },
                    )
                }
                Some(Some(seed)) => decide(latest, password_ok, code, Some(&seed), policy, now),
                None => decide(latest, password_ok, code, None, policy, now),
            }
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        max_failed: 3,
        lock_seconds: 900,
    };
    const NOW: u64 = 1_700_000_000;

    fn enrolled() -> (Record, Seed) {
        let seed = Seed::from_bytes(b"12345678901234567890").expect("seed");
        (
            Record {
                password_hash: Some("x".into()),
                generation: 4,
                totp_sealed: Some("sealed".into()),
                ..Default::default()
            },
            seed,
        )
    }

    fn code(seed: &Seed, t: u64) -> String {
        totp_rs::Builder::new()
            .with_secret(seed.as_bytes().to_vec())
            .build()
            .expect("totp")
            .generate(t)
            .to_string()
    }

    #[test]
    fn table() {
        let (r, seed) = enrolled();
        let good = code(&seed, NOW);
        struct Case<'a> {
            name: &'a str,
            password_ok: bool,
            code: Option<&'a str>,
            seed: Option<&'a Seed>,
            want: Attempt,
        }
        let failed = |why, failed| Attempt::Failed {
            why,
            failed,
            locked: false,
        };
        let cases = [
            Case {
                name: "not enrolled, right password",
                password_ok: true,
                code: None,
                seed: None,
                want: Attempt::Accepted {
                    generation: 4,
                    enrolled: false,
                },
            },
            Case {
                name: "wrong password is counted whatever the code",
                password_ok: false,
                code: Some(&good),
                seed: Some(&seed),
                want: failed(Failure::Password, 1),
            },
            Case {
                name: "enrolled without a code is a counted failure, not a hint",
                password_ok: true,
                code: None,
                seed: Some(&seed),
                want: failed(Failure::CodeMissing, 1),
            },
            Case {
                name: "empty code is a missing code",
                password_ok: true,
                code: Some(""),
                seed: Some(&seed),
                want: failed(Failure::CodeMissing, 1),
            },
            Case {
                name: "five digits",
                password_ok: true,
                code: Some("12345"),
                seed: Some(&seed),
                want: failed(Failure::Code(totp::Error::Malformed), 1),
            },
            Case {
                name: "nine digits",
                password_ok: true,
                code: Some("123456789"),
                seed: Some(&seed),
                want: failed(Failure::Code(totp::Error::Malformed), 1),
            },
            Case {
                name: "letters",
                password_ok: true,
                code: Some("12a456"),
                seed: Some(&seed),
                want: failed(Failure::Code(totp::Error::Malformed), 1),
            },
            Case {
                name: "right password and code",
                password_ok: true,
                code: Some(&good),
                seed: Some(&seed),
                want: Attempt::Accepted {
                    generation: 4,
                    enrolled: true,
                },
            },
        ];
        for c in cases {
            let (next, got) = decide(&r, c.password_ok, c.code, c.seed, &P, NOW);
            assert_eq!(got, c.want, "{}", c.name);
            let next = next.unwrap_or_else(|| r.clone());
            match got {
                Attempt::Accepted { enrolled, .. } => {
                    assert_eq!(next.failed, 0, "{}", c.name);
                    assert_eq!(next.last_login, Some(NOW), "{}", c.name);
                    assert_eq!(next.totp_last_step.is_some(), enrolled, "{}", c.name);
                }
                _ => assert_eq!(next.failed, 1, "{}", c.name),
            }
        }
    }

    #[test]
    fn a_code_is_accepted_once() {
        let (r, seed) = enrolled();
        let good = code(&seed, NOW);
        let (next, first) = decide(&r, true, Some(&good), Some(&seed), &P, NOW);
        assert!(matches!(first, Attempt::Accepted { .. }));
        let next = next.expect("the step is stored");
        let (_, again) = decide(&next, true, Some(&good), Some(&seed), &P, NOW + 5);
        assert_eq!(
            again,
            Attempt::Failed {
                why: Failure::Code(totp::Error::Replayed),
                failed: 1,
                locked: false
            }
        );
    }

    #[test]
    fn locked_is_refused_uncounted_and_failures_lock() {
        let (mut r, seed) = enrolled();
        for i in 1..=3 {
            let (next, got) = decide(&r, false, None, Some(&seed), &P, NOW);
            assert_eq!(
                got,
                Attempt::Failed {
                    why: Failure::Password,
                    failed: i,
                    locked: i == 3
                }
            );
            r = next.expect("counted");
        }
        let good = code(&seed, NOW);
        let (next, got) = decide(&r, true, Some(&good), Some(&seed), &P, NOW + 1);
        assert_eq!(got, Attempt::Locked { until: NOW + 900 });
        assert!(next.is_none(), "a refused attempt writes nothing");
    }

    #[test]
    fn steady_logins_write_at_most_once_a_minute() {
        let r = Record {
            password_hash: Some("x".into()),
            last_login: Some(NOW),
            ..Default::default()
        };
        let (next, got) = decide(&r, true, None, None, &P, NOW + 30);
        assert!(matches!(got, Attempt::Accepted { .. }));
        assert!(next.is_none(), "nothing changed worth a write");
        let (next, _) = decide(&r, true, None, None, &P, NOW + 60);
        assert_eq!(next.and_then(|n| n.last_login), Some(NOW + 60));
    }
}
