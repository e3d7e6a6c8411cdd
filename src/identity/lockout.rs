//! Lockout, as a pure function of a member's login record, the organization's policy, the
//! clock and the outcome of one attempt. The credential store applies the result with a
//! compare-and-swap on the record's resourceVersion, so N parallel wrong passwords count
//! exactly N: each attempt is one transition of this function on the latest record.

/// The part of a member's credential record lockout reads and writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub failed: u32,
    /// Unix seconds until which logins are refused; `Some(u64::MAX)` = until an admin unlocks.
    pub locked_until: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Failed attempts in a row that lock; 0 never locks.
    pub max_failed: u32,
    /// Seconds a lock lasts; 0 = until an admin unlocks.
    pub lock_seconds: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The attempt may be checked (credentials are compared only in this case).
    Proceed,
    /// Locked: refuse without comparing anything (and without counting).
    Locked { until: u64 },
}

/// Before checking credentials: is the account locked at `now`?
pub fn gate(r: &Record, now: u64) -> Verdict {
    match r.locked_until {
        Some(until) if now < until => Verdict::Locked { until },
        _ => Verdict::Proceed,
    }
}

/// After checking credentials: the record to store. A success clears the count (and an expired
/// lock); a failure counts and, at the limit, locks.
pub fn record(r: &Record, p: &Policy, now: u64, success: bool) -> Record {
    if success {
        return Record::default();
    }
    let lock_over = r.locked_until.is_some_and(|u| now >= u);
    let failed = if lock_over {
        1
    } else {
        r.failed.saturating_add(1)
    };
    let locked_until = if p.max_failed > 0 && failed >= p.max_failed {
        Some(if p.lock_seconds == 0 {
            u64::MAX
        } else {
            now.saturating_add(p.lock_seconds)
        })
    } else {
        None
    };
    Record {
        failed,
        locked_until,
    }
}

/// An admin's unlock (the `roster.dev/unlock` nonce).
pub fn unlock() -> Record {
    Record::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        max_failed: 3,
        lock_seconds: 900,
    };

    #[test]
    fn counts_then_locks_then_expires() {
        let mut r = Record::default();
        for (i, want_locked) in [(1, false), (2, false), (3, true)] {
            assert_eq!(gate(&r, 100), Verdict::Proceed);
            r = record(&r, &P, 100, false);
            assert_eq!(
                (r.failed, r.locked_until.is_some()),
                (i, want_locked),
                "attempt {i}"
            );
        }
        assert_eq!(gate(&r, 100), Verdict::Locked { until: 1000 });
        assert_eq!(gate(&r, 999), Verdict::Locked { until: 1000 });
        assert_eq!(gate(&r, 1000), Verdict::Proceed, "the lock ends");
        let after = record(&r, &P, 1000, false);
        assert_eq!(
            after,
            Record {
                failed: 1,
                locked_until: None
            },
            "a new count starts after a lock"
        );
        assert_eq!(
            record(&after, &P, 1001, true),
            Record::default(),
            "success clears"
        );
    }

    #[test]
    fn policy_edges() {
        let never = Policy {
            max_failed: 0,
            lock_seconds: 900,
        };
        let r = (0..50).fold(Record::default(), |r, _| record(&r, &never, 1, false));
        assert_eq!((r.failed, r.locked_until), (50, None), "0 never locks");
        let until_admin = Policy {
            max_failed: 1,
            lock_seconds: 0,
        };
        let r = record(&Record::default(), &until_admin, 1, false);
        assert_eq!(gate(&r, u64::MAX - 1), Verdict::Locked { until: u64::MAX });
        assert_eq!(gate(&unlock(), 5), Verdict::Proceed);
    }

    /// Ten attempts applied one after another (what compare-and-swap serialises parallel
    /// attempts into) with a limit of 10: exactly 10 counted, locked.
    #[test]
    fn serialised_attempts_count_exactly() {
        let p = Policy {
            max_failed: 10,
            lock_seconds: 60,
        };
        let r = (0..10).fold(Record::default(), |r, _| match gate(&r, 5) {
            Verdict::Proceed => record(&r, &p, 5, false),
            Verdict::Locked { .. } => r,
        });
        assert_eq!(r.failed, 10);
        assert_eq!(gate(&r, 5), Verdict::Locked { until: 65 });
    }
}
