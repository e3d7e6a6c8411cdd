//! Revocations the caches have not seen yet. The admission webhook (same process) learns that
//! a member is being disabled, expired or deleted *before* the API server stores the change;
//! TokenReview, SubjectAccessReview, login and acceptance consult this list as well as the
//! caches, so the member's very next request is refused, with no window for the watch to
//! deliver the change.
//!
//! Keyed by the Membership's UID: a Membership deleted and created again with the same e-mail
//! is another member, untouched by its predecessor's revocation. An entry holds for `HOLD`: by
//! then the cache shows the change (and keeps refusing), or the write never happened (a later
//! admission step refused it) and access is as declared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub const HOLD: Duration = Duration::from_secs(30);

#[derive(Clone, Default)]
pub struct Revocations(Arc<Mutex<HashMap<String, Instant>>>);

impl Revocations {
    /// Every operation leaves the map whole (one insert, retain or remove), so a panic
    /// elsewhere while it was held leaves nothing half done: the map is used as it is. Treating
    /// a poisoned map as empty would accept a disabled member's token again.
    fn map(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn note(&self, uid: &str) {
        let mut m = self.map();
        let now = Instant::now();
        m.retain(|_, at| now.duration_since(*at) < HOLD);
        m.insert(uid.to_string(), now);
    }

    /// The member was re-enabled (an allowed change): the cache is the truth again.
    pub fn clear(&self, uid: &str) {
        self.map().remove(uid);
    }

    pub fn revoked(&self, uid: &str) -> bool {
        self.map().get(uid).is_some_and(|at| at.elapsed() < HOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noted_memberships_are_revoked_and_only_they() {
        let r = Revocations::default();
        assert!(!r.revoked("uid-1"));
        r.note("uid-1");
        assert!(r.revoked("uid-1"));
        assert!(
            !r.revoked("uid-2"),
            "a namesake created again is another member"
        );
        r.clear("uid-1");
        assert!(!r.revoked("uid-1"));
    }

    /// A panic elsewhere while the map was held must not turn every revocation off: a disabled
    /// member's token would be accepted again until the cache caught up.
    #[test]
    fn a_poisoned_map_still_revokes() {
        let r = Revocations::default();
        r.note("uid-1");
        let held = r.clone();
        let _ = std::thread::spawn(move || {
            let _m = held.0.lock();
            panic!("poisoning the map on purpose");
        })
        .join();
        assert!(r.revoked("uid-1"));
        r.note("uid-2");
        assert!(r.revoked("uid-2"));
    }
}
