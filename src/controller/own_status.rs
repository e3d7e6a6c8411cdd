//! The Organization status this process last wrote, shown to the next plan until the cache
//! shows it. A plan reads when MFA became required from the MfaRequired condition, and takes
//! now when there is none: planned from a cache a few seconds behind its own status write, a
//! reconcile moved that time, every member's grace deadline with it, and wrote them all again.
//! `apply` waits for the cache, but at most 2 s (a stuck watch must not stall the
//! organization); this closes the case for a cache any amount behind.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::api::{Organization, OrganizationStatus};

/// One Organization's status as written, and the resourceVersion the server answered with.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Written {
    pub uid: Option<String>,
    pub version: u64,
    pub status: OrganizationStatus,
}

impl Written {
    /// None when the server's version is not an integer (etcd's are): a copy is never taken
    /// as older than one it cannot be compared with.
    pub fn new(
        org: &Organization,
        status: &OrganizationStatus,
        resource_version: Option<&str>,
    ) -> Option<Written> {
        Some(Written {
            uid: org.metadata.uid.clone(),
            version: resource_version?.parse().ok()?,
            status: status.clone(),
        })
    }
}

/// Puts `written`'s status on `org` (as the cache holds it) when the cache is behind the write;
/// false when it is not, and the entry has served.
pub(super) fn overlay(org: &mut Organization, written: &Written) -> bool {
    let cached: Option<u64> = org
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok());
    match cached {
        Some(v) if v < written.version && org.metadata.uid == written.uid => {
            org.status = Some(written.status.clone());
            true
        }
        _ => false,
    }
}

/// Per organization (its namespace), the last status written and not yet seen in the cache.
#[derive(Default)]
pub(super) struct OwnStatus(Mutex<HashMap<String, Written>>);

impl OwnStatus {
    pub fn wrote(&self, namespace: &str, written: Written) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.to_string(), written);
    }

    /// The organization of `namespace` as the next plan sees it: the cache's, with this
    /// process's own newer status. Forgets the entry once the cache has caught up, or the
    /// organization is gone.
    pub fn show(&self, namespace: &str, org: Option<&mut Organization>) {
        let mut table = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(written) = table.get(namespace) else {
            return;
        };
        if !org.is_some_and(|o| overlay(o, written)) {
            table.remove(namespace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{org, ts};

    fn cached(rv: &str, uid: &str) -> Organization {
        let mut o = org("alice@acme.example");
        o.metadata.resource_version = Some(rv.into());
        o.metadata.uid = Some(uid.into());
        o
    }

    fn mfa_since(t: &str) -> OrganizationStatus {
        crate::fixtures::mfa_required_since(ts(t))
    }

    #[test]
    fn a_cache_behind_the_write_is_shown_the_written_status_until_it_catches_up() {
        let status = mfa_since("2026-01-10T00:00:00Z");
        let written = Written::new(&cached("5", "u1"), &status, Some("12")).expect("integer");
        let cases = [
            ("5", "u1", true, "behind the write: the written status"),
            ("11", "u1", true, "moved, still behind the write"),
            ("12", "u1", false, "caught up: the cache's own"),
            ("13", "u1", false, "past it: the cache's own"),
            ("5", "u2", false, "another organization of that name"),
            ("x5", "u1", false, "a version that does not compare"),
        ];
        for (rv, uid, shown, why) in cases {
            let mut o = cached(rv, uid);
            assert_eq!(overlay(&mut o, &written), shown, "{why}");
            let expected = if shown { Some(&status) } else { None };
            assert_eq!(o.status.as_ref(), expected, "{why}");
        }
        assert_eq!(
            Written::new(&cached("5", "u1"), &status, Some("abc")),
            None,
            "a server version that is not an integer is not kept"
        );
    }

    #[test]
    fn an_entry_is_forgotten_once_the_cache_caught_up_or_the_organization_went() {
        let own = OwnStatus::default();
        let status = mfa_since("2026-01-10T00:00:00Z");
        let entry = || Written::new(&cached("5", "u1"), &status, Some("12")).expect("integer");
        own.wrote("acme", entry());
        let mut behind = cached("5", "u1");
        own.show("acme", Some(&mut behind));
        assert_eq!(behind.status.as_ref(), Some(&status));
        let mut other = cached("5", "u1");
        own.show("globex", Some(&mut other));
        assert_eq!(other.status, None, "kept per organization");
        let mut caught_up = cached("12", "u1");
        own.show("acme", Some(&mut caught_up));
        let mut behind_again = cached("5", "u1");
        own.show("acme", Some(&mut behind_again));
        assert_eq!(
            behind_again.status, None,
            "forgotten after the cache caught up"
        );
        own.wrote("acme", entry());
        own.show("acme", None);
        let mut behind = cached("5", "u1");
        own.show("acme", Some(&mut behind));
        assert_eq!(
            behind.status, None,
            "forgotten once the organization is gone"
        );
    }
}
