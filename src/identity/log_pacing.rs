//! When an organization's security-log ConfigMap is written: within a second of the first entry
//! of a quiet organization, then at most once every `WRITE_EVERY` while entries keep coming.
//!
//! Each write rewrites the ConfigMap whole (three parts of up to 300 KB). Written every second
//! during a login loop, it cost roster and the API server about half a millisecond of CPU per
//! login (measured in the login benchmark, where logins share two cores with the API server)
//! and etcd up to a megabyte of history a second. The standard-output line of each entry is
//! printed at once regardless: only the ConfigMap copy waits.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::audit::{Entry, KEPT};

/// At most one write of an organization's log per this long.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);

/// Entries waiting for their organization's next write.
#[derive(Default)]
pub struct Pending {
    orgs: BTreeMap<String, Org>,
}

#[derive(Default)]
struct Org {
    entries: Vec<Entry>,
    /// When the oldest waiting entry arrived.
    since: Option<Instant>,
    last_write: Option<Instant>,
}

impl Org {
    fn due(&self) -> Option<Instant> {
        let since = self.since?;
        Some(match self.last_write {
            Some(t) => (t + WRITE_EVERY).max(since),
            None => since,
        })
    }
}

impl Pending {
    /// Entries of `org`, oldest first. What waits is bounded as the log itself is: per part,
    /// the newest `KEPT` entries (older ones would be dropped by the write anyway).
    pub fn add(&mut self, org: &str, entries: Vec<Entry>, now: Instant) {
        if entries.is_empty() {
            return;
        }
        let o = self.orgs.entry(org.to_string()).or_default();
        o.since.get_or_insert(now);
        o.entries.extend(entries);
        trim(&mut o.entries);
    }

    /// Entries whose write failed, back ahead of what came since, for the organization's next
    /// turn (a period after the failed write, which counts as its last).
    pub fn restore(&mut self, org: &str, mut entries: Vec<Entry>, now: Instant) {
        if entries.is_empty() {
            return;
        }
        let o = self.orgs.entry(org.to_string()).or_default();
        o.since.get_or_insert(now);
        entries.append(&mut o.entries);
        o.entries = entries;
        trim(&mut o.entries);
    }

    /// When the next write is due, if anything waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.orgs.values().filter_map(Org::due).min()
    }

    /// The organizations whose write is due at `now` (all that wait when `everything`), with
    /// their entries; they count as written at `now`.
    pub fn take_due(&mut self, now: Instant, everything: bool) -> Vec<(String, Vec<Entry>)> {
        let mut out = Vec::new();
        for (org, o) in &mut self.orgs {
            if o.due().is_some_and(|due| everything || due <= now) {
                out.push((org.clone(), std::mem::take(&mut o.entries)));
                o.since = None;
                o.last_write = Some(now);
            }
        }
        // Organizations quiet for a whole period are forgotten: their next entry is written
        // within the second again, and the map holds only the active ones.
        self.orgs.retain(|_, o| {
            o.since.is_some() || o.last_write.is_some_and(|t| now < t + WRITE_EVERY)
        });
        out
    }
}

/// Per part, the newest `KEPT` entries (older ones would be dropped by the write anyway).
fn trim(entries: &mut Vec<Entry>) {
    let mut per_part: BTreeMap<&'static str, usize> = BTreeMap::new();
    for e in entries.iter() {
        *per_part.entry(e.part()).or_default() += 1;
    }
    if per_part.values().all(|&n| n <= KEPT) {
        return;
    }
    // Newest first: each part keeps its newest KEPT.
    let mut kept: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut keep: Vec<bool> = entries
        .iter()
        .rev()
        .map(|e| {
            let n = kept.entry(e.part()).or_default();
            *n += 1;
            *n <= KEPT
        })
        .collect();
    keep.reverse();
    let mut keep = keep.into_iter();
    entries.retain(|_| keep.next().unwrap_or(false));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(event: &str, n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry::new("acme", None, event).detail(i.to_string()))
            .collect()
    }

    fn details(v: &[Entry]) -> Vec<String> {
        v.iter().filter_map(|e| e.detail.clone()).collect()
    }

    #[test]
    fn a_quiet_organization_is_written_at_once_a_busy_one_every_period() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pending::default();
        assert_eq!(p.next_due(), None);
        p.add("acme", entries("LoginSucceeded", 1), t0);
        assert_eq!(p.next_due(), Some(t0), "quiet: due at once");
        let written = p.take_due(t0, false);
        assert_eq!(written.len(), 1);
        assert_eq!(p.next_due(), None);

        // Busy: the next entries wait for the period to end.
        p.add("acme", entries("LoginSucceeded", 2), t0 + s(1));
        p.add("other", entries("LoginSucceeded", 1), t0 + s(1));
        assert_eq!(
            p.next_due(),
            Some(t0 + s(1)),
            "another organization is quiet"
        );
        let written = p.take_due(t0 + s(1), false);
        assert_eq!(
            written
                .iter()
                .map(|(o, e)| (o.as_str(), e.len()))
                .collect::<Vec<_>>(),
            [("other", 1)]
        );
        assert_eq!(p.next_due(), Some(t0 + WRITE_EVERY));
        assert!(p.take_due(t0 + s(4), false).is_empty(), "not yet");
        p.add("acme", entries("LoginFailed", 1), t0 + s(4));
        let written = p.take_due(t0 + WRITE_EVERY, false);
        assert_eq!(
            written
                .iter()
                .map(|(o, e)| (o.as_str(), e.len()))
                .collect::<Vec<_>>(),
            [("acme", 3)],
            "all that waited, in one write"
        );

        // Everything, whatever is due (when the log stops).
        p.add("acme", entries("LoginSucceeded", 1), t0 + s(6));
        assert_eq!(p.take_due(t0 + s(6), true).len(), 1);

        // Quiet for a whole period: written at once again, and forgotten meanwhile.
        let later = t0 + s(6) + WRITE_EVERY;
        assert!(p.take_due(later, false).is_empty());
        assert!(p.orgs.is_empty(), "nothing kept for quiet organizations");
        p.add("acme", entries("LoginSucceeded", 1), later);
        assert_eq!(p.next_due(), Some(later));
    }

    #[test]
    fn a_failed_write_s_entries_wait_for_the_next_turn_ahead_of_newer_ones() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.add("acme", entries("LoginSucceeded", 2), t0);
        let (org, failed) = p.take_due(t0, false).pop().expect("due");
        p.add(
            "acme",
            entries("LoginFailed", 1),
            t0 + Duration::from_secs(1),
        );
        p.restore(&org, failed, t0 + Duration::from_secs(1));
        assert_eq!(
            p.next_due(),
            Some(t0 + WRITE_EVERY),
            "the failed write was a turn"
        );
        let (_, again) = p.take_due(t0 + WRITE_EVERY, false).pop().expect("due");
        assert_eq!(
            again.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
            ["LoginSucceeded", "LoginSucceeded", "LoginFailed"],
            "oldest first"
        );
    }

    #[test]
    fn what_waits_is_bounded_per_part_as_the_log_is() {
        let t0 = Instant::now();
        let mut p = Pending::default();
        p.add("acme", entries("InvitationAccepted", 3), t0);
        p.add("acme", entries("LoginFailed", KEPT + 7), t0);
        let (_, written) = p.take_due(t0, true).pop().expect("written");
        let (actions, failures): (Vec<Entry>, Vec<Entry>) =
            written.into_iter().partition(|e| !e.failure());
        assert_eq!(
            details(&actions),
            ["0", "1", "2"],
            "a flood of failures drops no action"
        );
        assert_eq!(failures.len(), KEPT);
        assert_eq!(
            details(&failures[..1]),
            ["7"],
            "the oldest failures go first"
        );
    }
}
