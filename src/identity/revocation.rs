//! Revocations the caches have not seen yet. The admission webhook (same process) learns that
//! a member is being disabled, expired or deleted *before* the API server stores the change;
//! TokenReview consults this list as well as the caches, so the member's very next kubectl
//! call is refused, with no window for the watch to deliver the change.
//!
//! An entry only holds for `HOLD`: by then the cache shows the change (and keeps refusing), or
//! the write never happened (a later admission step refused it) and access is as declared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HOLD: Duration = Duration::from_secs(30);

#[derive(Clone, Default)]
pub struct Revocations(Arc<Mutex<HashMap<(String, String), Instant>>>);

impl Revocations {
    pub fn note(&self, org: &str, email: &str) {
        if let Ok(mut m) = self.0.lock() {
            let now = Instant::now();
            m.retain(|_, at| now.duration_since(*at) < HOLD);
            m.insert((org.to_string(), email.to_ascii_lowercase()), now);
        }
    }

    /// The member was re-enabled (an allowed change): the cache is the truth again.
    pub fn clear(&self, org: &str, email: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(&(org.to_string(), email.to_ascii_lowercase()));
        }
    }

    pub fn revoked(&self, org: &str, email: &str) -> bool {
        self.0.lock().is_ok_and(|m| {
            m.get(&(org.to_string(), email.to_ascii_lowercase()))
                .is_some_and(|at| at.elapsed() < HOLD)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noted_members_are_revoked_case_insensitively_and_only_there() {
        let r = Revocations::default();
        assert!(!r.revoked("acme", "bob@acme.example"));
        r.note("acme", "Bob@Acme.example");
        assert!(r.revoked("acme", "bob@acme.example"));
        assert!(!r.revoked("other", "bob@acme.example"));
        r.clear("acme", "bob@acme.example");
        assert!(!r.revoked("acme", "bob@acme.example"));
    }
}
