//! Rate limits on the identity server's doors (login, accept, enrol, ownership transfer): per
//! source address and per member, so that a guesser is slowed long before lockout matters and
//! a flood from one place cannot fill the security log or the argon2 queue.
//!
//! GCRA (the "virtual scheduling" token bucket): one timestamp per key, no timers. The table is
//! bounded: idle keys are dropped when it fills, and if it is still full, the half of the keys
//! closest to being free again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `roster run --login-failure-floor`'s default (see there).
pub const DEFAULT_FAILURE_FLOOR: &str = "250ms";

/// Keys kept at most per limiter.
const MAX_KEYS: usize = 100_000;

pub struct Limiter {
    /// Time between two requests at the sustained rate.
    interval: Duration,
    /// How far ahead of `now` the theoretical arrival time may run (the burst).
    tolerance: Duration,
    tat: Mutex<HashMap<String, Instant>>,
}

impl Limiter {
    /// `per_minute` requests per minute sustained, up to `burst` at once; `per_minute` 0 turns
    /// the limit off.
    pub fn new(per_minute: u32, burst: u32) -> Limiter {
        let interval = if per_minute == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs(60) / per_minute
        };
        Limiter {
            interval,
            tolerance: interval * burst.saturating_sub(1),
            tat: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request for `key` at `now`; `Err(wait)` when over the limit.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        if self.interval.is_zero() {
            return Ok(());
        }
        let Ok(mut table) = self.tat.lock() else {
            return Err(Duration::from_secs(1));
        };
        if table.len() >= MAX_KEYS && !table.contains_key(key) {
            table.retain(|_, tat| *tat > now);
            if table.len() >= MAX_KEYS {
                // Full of live keys: a flood of new ones. Refusing every newcomer shut real
                // members out for as long as it lasted; instead the half closest to being
                // free again goes (each loses at most what is left of its wait, and a key
                // over its limit is among the last to go; lockout still counts every wrong
                // password). One pass per half table of new keys, not one per key.
                let mut tats: Vec<Instant> = table.values().copied().collect();
                let half = tats.len() / 2;
                let (_, cut, _) = tats.select_nth_unstable(half);
                let cut = *cut;
                table.retain(|_, tat| *tat > cut);
            }
        }
        let tat = table.get(key).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        table.insert(key.to_string(), tat + self.interval);
        Ok(())
    }
}

/// The limits of one identity server.
pub struct Limits {
    pub per_source: Limiter,
    /// Per IPv6 /48, on top of `per_source` (see `SITE_SOURCES`).
    pub per_site: Limiter,
    pub per_member: Limiter,
    /// How long a failed login takes to answer at least (see [`FailureFloor`]).
    pub failure_floor: FailureFloor,
}

/// The least time a failed login takes to answer, counted from its arrival. The paths differ
/// in work (a wrong password also writes the failure count; an unknown address has nothing to
/// write), the answer time must not. The configured floor holds while the work fits under
/// it; when it does not (a slow API server, a long argon2 queue), the floor rises to a quarter
/// above the slowest failure seen lately, for everyone, and falls back by half every
/// `HALF_LIFE` — so that a slow member path is not the only slow answer for long.
pub struct FailureFloor {
    configured: Duration,
    /// The slowest recent failure's work, decayed, and when it was last updated.
    seen: Mutex<(Duration, Instant)>,
}

const HALF_LIFE: Duration = Duration::from_secs(30);
/// However slow things get, a failure is answered within this.
const CEILING: Duration = Duration::from_secs(5);

impl FailureFloor {
    pub fn new(configured: Duration) -> FailureFloor {
        FailureFloor {
            configured,
            seen: Mutex::new((Duration::ZERO, Instant::now())),
        }
    }

    fn decayed(seen: (Duration, Instant), now: Instant) -> Duration {
        let halves = now.saturating_duration_since(seen.1).as_secs_f64() / HALF_LIFE.as_secs_f64();
        seen.0.mul_f64(0.5f64.powf(halves))
    }

    /// The floor now.
    pub fn now(&self) -> Duration {
        if self.configured.is_zero() {
            return Duration::ZERO;
        }
        let seen = self
            .seen
            .lock()
            .map(|s| Self::decayed(*s, Instant::now()))
            .unwrap_or(CEILING);
        self.configured.max(seen.mul_f64(1.25)).min(CEILING)
    }

    /// A failure took `work` to decide.
    pub fn observe(&self, work: Duration) {
        if let Ok(mut seen) = self.seen.lock() {
            let now = Instant::now();
            let current = Self::decayed(*seen, now);
            *seen = (current.max(work), now);
        }
    }
}

impl Limits {
    pub fn new(per_source_per_minute: u32, per_member_per_minute: u32) -> Limits {
        let per_site = per_source_per_minute.saturating_mul(SITE_SOURCES);
        Limits {
            per_source: Limiter::new(per_source_per_minute, per_source_per_minute),
            per_site: Limiter::new(per_site, per_site),
            per_member: Limiter::new(per_member_per_minute, per_member_per_minute),
            failure_floor: FailureFloor::new(Duration::ZERO),
        }
    }

    pub fn with_failure_floor(self, floor: Duration) -> Limits {
        Limits {
            failure_floor: FailureFloor::new(floor),
            ..self
        }
    }

    /// No limits (router tests that are not about them).
    pub fn off() -> Limits {
        Limits::new(0, 0)
    }

    /// One request from `source` (None when unknown: not limited by address).
    pub fn source(&self, source: Option<&str>) -> Result<(), Duration> {
        let Some(s) = source else { return Ok(()) };
        let now = Instant::now();
        // The source's own limit first: what it refuses spends nothing of the site's.
        self.per_source.check(&source_key(s), now)?;
        match site_key(s) {
            Some(site) => self.per_site.check(&site, now),
            None => Ok(()),
        }
    }

    /// One attempt for the member `email` of `org` (whether or not such a member exists).
    pub fn member(&self, org: &str, email: &str) -> Result<(), Duration> {
        let key = format!("{org}\n{}", email.to_ascii_lowercase());
        self.per_member.check(&key, Instant::now())
    }
}

/// An IPv6 site (one /48) may send this many times what one source may: a site holds 65,536
/// /64s, and one key per /64 alone let whoever holds a /48 (tunnel brokers hand them out)
/// queue 65,536 times the argon2 work of one address, shutting every member out of logging
/// in (red team 25). Like the people behind one IPv4 address, those of one site share it.
const SITE_SOURCES: u32 = 4;

/// The /48 of an IPv6 source (not of an IPv4-mapped one).
fn site_key(source: &str) -> Option<String> {
    match source.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
        }
        _ => None,
    }
}

/// IPv6 clients get a /64 each from their provider: one key per /64, so that rotating
/// addresses within it buys nothing.
fn source_key(source: &str) -> String {
    match source.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or(source.into(), |v4| v4.to_string()),
        _ => source.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_floor_rises_above_slow_failures_and_stays_within_the_ceiling() {
        let off = FailureFloor::new(Duration::ZERO);
        off.observe(Duration::from_secs(1));
        assert_eq!(off.now(), Duration::ZERO, "no floor configured: none");
        let f = FailureFloor::new(Duration::from_millis(250));
        assert_eq!(f.now(), Duration::from_millis(250));
        f.observe(Duration::from_millis(100));
        assert_eq!(
            f.now(),
            Duration::from_millis(250),
            "fast failures leave it"
        );
        f.observe(Duration::from_millis(400));
        let now = f.now();
        assert!(
            now > Duration::from_millis(490) && now <= Duration::from_millis(500),
            "{now:?}"
        );
        f.observe(Duration::from_secs(60));
        assert_eq!(f.now(), CEILING);
        // Half of it after a half-life.
        let seen = (Duration::from_millis(800), Instant::now() - HALF_LIFE);
        let d = FailureFloor::decayed(seen, Instant::now());
        assert!(
            d > Duration::from_millis(395) && d <= Duration::from_millis(400),
            "{d:?}"
        );
    }

    #[test]
    fn bursts_then_the_sustained_rate() {
        let l = Limiter::new(60, 3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(l.check("a", t0), Ok(()), "burst {i}");
        }
        let wait = l.check("a", t0).expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(l.check("b", t0), Ok(()), "keys are independent");
        assert_eq!(l.check("a", t0 + Duration::from_secs(1)), Ok(()));
        assert!(l.check("a", t0 + Duration::from_secs(1)).is_err());
        assert_eq!(l.check("a", t0 + Duration::from_secs(10)), Ok(()));
    }

    /// A flood of new keys (one IPv6 /48 holds 65,536 /64s; each request may name a new member)
    /// filled the table with live keys, and every newcomer was refused: a real member's first
    /// login in a while got 429, for as long as the flood lasted, and each refusal scanned the
    /// whole table under the lock (red team 19b, F5). Now the half of the table closest to
    /// being free again goes, once per half table of new keys; a key over its limit is among
    /// the last to go, so it stays limited.
    #[test]
    fn a_full_table_makes_room_and_keeps_the_keys_that_are_over_their_limit() {
        let l = Limiter::new(10, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.check("guesser", t0), Ok(()));
        }
        assert!(l.check("guesser", t0).is_err(), "over its burst");
        for i in 0..MAX_KEYS {
            let _ = l.check(&format!("flood-{i}"), t0);
        }
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(l.check("real-member", t1), Ok(()), "a newcomer gets in");
        assert!(
            l.check("guesser", t1).is_err(),
            "the key over its limit is still limited"
        );
        let len = l.tat.lock().map(|t| t.len()).unwrap_or_default();
        assert!(len <= MAX_KEYS / 2 + 2, "room for half a table: {len}");
        for i in 0..1000 {
            assert_eq!(l.check(&format!("later-{i}"), t1), Ok(()), "{i}");
        }
    }

    /// Sources from 200 /64s of one /48 (red team 25: each /64 its own bucket, a /48 queued
    /// 65,536 buckets' worth of argon2 work): the site as a whole gets at most
    /// `SITE_SOURCES` times one source's burst; another site, and IPv4, are untouched.
    #[test]
    fn an_ipv6_site_shares_a_budget_of_a_few_sources() {
        let limits = Limits::new(5, 5);
        let from_site = (0..200)
            .filter(|i| limits.source(Some(&format!("2001:db8:1:{i:x}::1"))).is_ok())
            .count();
        assert_eq!(from_site, (5 * SITE_SOURCES) as usize);
        assert!(limits.source(Some("2001:db8:2::1")).is_ok(), "another site");
        // One /64 over its own limit spends nothing of its site's (red team 26: charged
        // first, one /64 shut its whole /48 out).
        let limits = Limits::new(5, 5);
        for _ in 0..100 {
            let _ = limits.source(Some("2001:db8:3:1::1"));
        }
        assert!(
            limits.source(Some("2001:db8:3:2::1")).is_ok(),
            "a neighbour"
        );
        for _ in 0..5 {
            assert!(limits.source(Some("192.0.2.1")).is_ok());
        }
        assert!(limits.source(Some("192.0.2.1")).is_err(), "IPv4 as before");
    }

    #[test]
    fn zero_is_off_and_ipv6_counts_per_slash_64() {
        let off = Limiter::new(0, 0);
        for _ in 0..1000 {
            assert_eq!(off.check("x", Instant::now()), Ok(()));
        }
        assert_eq!(
            source_key("2001:db8:1:2:aaaa::1"),
            source_key("2001:db8:1:2:bbbb::9")
        );
        assert_ne!(source_key("2001:db8:1:2::1"), source_key("2001:db8:1:3::1"));
        assert_eq!(source_key("::ffff:10.0.0.1"), "10.0.0.1");
        assert_eq!(source_key("10.0.0.1"), "10.0.0.1");
        let limits = Limits::new(1, 1);
        assert!(limits.member("acme", "Bob@x.example").is_ok());
        assert!(
            limits.member("acme", "bob@x.example").is_err(),
            "case folded"
        );
        assert!(limits.member("other", "bob@x.example").is_ok());
    }
}
