//! The security log's Events on Memberships (events.k8s.io/v1): one per Membership, type,
//! reason and note, its series counting every attempt.
//!
//! kube's `Recorder` tells Events apart by object, type, reason and action, not by note: for
//! six minutes every later Event of a member with the same reason went into the series of the
//! first, under the first one's note. A login from a new address, or a wrong code after a
//! wrong password, showed in `kubectl describe` as one more of the older note (red team 37).
//! Here a new Event is written at once; the counts of repeated ones every `COUNTS_EVERY`.
//!
//! Events are written by a task of their own: a slow or refusing API server delays Events,
//! never the security log's ConfigMap (red team 38).

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::mpsc;

/// How long after its last attempt an Event is counted into rather than written anew (the
/// figure of client-go's and kube's recorders).
const TTL: Duration = Duration::from_secs(6 * 60);
/// How often the counts of repeated Events are written at most: a script logging members in
/// a loop made one write per member a second, writes that took the API server's CPU from the
/// logins' own hashing on the same cores (92% of raw argon2 in benches/login.rs, 96% so).
pub const COUNTS_EVERY: Duration = Duration::from_secs(10);
/// Events remembered at most. Past it a new Event is written but not remembered: its repeats
/// are Events of their own (more objects, nothing hidden).
const REMEMBERED: usize = 10_000;
/// Notes per Membership, type, reason and failure reason within `TTL`; the rest share one
/// Event (`Key::folded`). One per source address let an outsider rotating addresses make an
/// object per guess in the organization's namespace (red team 38). Per failure reason, so that
/// guesses of one kind (say, over the rate limit, which cost nothing) cannot fill the slots of
/// another (a wrong code after a right password: red team 39).
const NOTES_PER_REASON: usize = 5;
/// Tries to write a count before it is given up (it stays in the log and on standard output).
const TRIES: u8 = 3;
/// The most bytes events.k8s.io/v1 takes in a note.
const NOTE_BYTES: usize = 1024;
/// Batches waiting for the Events task at most, of at most `BATCH` Events; past either, the
/// rest reach only the log. What the task holds stays bounded however it falls behind.
const QUEUED: usize = 8;
const BATCH: usize = 1000;
/// `reportingController` of the Events, `From` in `kubectl describe`.
pub const REPORTER: &str = "roster-identity";

/// What tells one Event from another.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
    /// The Membership's: one deleted and declared again under its name is another.
    pub uid: String,
    pub warning: bool,
    pub reason: String,
    pub note: String,
    /// The note of the Event shared past `NOTES_PER_REASON`; it names the failure reason, and
    /// tells the groups of notes apart.
    pub folded: String,
}

impl Key {
    pub fn of(
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
        folded: &str,
    ) -> Key {
        Key {
            namespace: regarding.namespace.clone().unwrap_or_default(),
            name: regarding.name.clone().unwrap_or_default(),
            uid: regarding.uid.clone().unwrap_or_default(),
            warning,
            reason: reason.to_string(),
            note: cut(note),
            folded: cut(folded),
        }
    }

    fn same_group(&self, other: &Key) -> bool {
        (
            &self.namespace,
            &self.name,
            &self.uid,
            self.warning,
            &self.reason,
            &self.folded,
        ) == (
            &other.namespace,
            &other.name,
            &other.uid,
            other.warning,
            &other.reason,
            &other.folded,
        )
    }
}

/// At most `NOTE_BYTES`, cut between characters: a longer note is refused whole.
fn cut(note: &str) -> String {
    let mut end = note.len().min(NOTE_BYTES);
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note[..end].to_string()
}

/// Hands batches of Events (each distinct, with how many attempts) to the Events task.
#[derive(Clone)]
pub struct EventsQueue {
    tx: mpsc::Sender<Vec<(Key, ObjectReference, i32)>>,
}

impl EventsQueue {
    /// Starts the task that writes the Events.
    pub fn start(client: Client) -> EventsQueue {
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(SecurityEvents::new(client).run(rx));
        EventsQueue { tx }
    }

    pub fn send(&self, mut batch: Vec<(Key, ObjectReference, i32)>) {
        if batch.len() > BATCH {
            tracing::warn!(
                events = batch.len() - BATCH,
                "security Events past the batch's bound reached only the security log"
            );
            batch.truncate(BATCH);
        }
        if !batch.is_empty() && self.tx.try_send(batch).is_err() {
            tracing::warn!("security Events behind; a batch reached only the security log");
        }
    }
}

#[derive(Clone)]
struct Published {
    name: String,
    regarding: ObjectReference,
    /// Attempts the Event's series says.
    count: i32,
    /// Attempts since, not yet written.
    unwritten: i32,
    last_seen: Timestamp,
    written: Timestamp,
    failed: u8,
}

struct SecurityEvents {
    client: Client,
    published: HashMap<Key, Published>,
    /// Attempts not shown as Events since the last warning (the map full).
    dropped: i32,
}

impl SecurityEvents {
    fn new(client: Client) -> SecurityEvents {
        SecurityEvents {
            client,
            published: HashMap::new(),
            dropped: 0,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Vec<(Key, ObjectReference, i32)>>) {
        let mut counts = tokio::time::interval(COUNTS_EVERY);
        counts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => {
                        for (key, regarding, count) in batch {
                            self.publish(key, &regarding, count).await;
                        }
                    }
                    None => {
                        self.write_counts(true).await;
                        return;
                    }
                },
                _ = counts.tick() => self.write_counts(false).await,
            }
        }
    }

    /// `count` attempts of the Event `key` about `regarding`. An Event not seen within `TTL` is
    /// written at once (what is new is never late); repeats of one are counted here and
    /// written by `write_counts`.
    async fn publish(&mut self, key: Key, regarding: &ObjectReference, mut count: i32) {
        let now = Timestamp::now();
        let key = fold(&self.published, key, now);
        if let Some(p) = self.published.get_mut(&key) {
            if within(p.last_seen, now, TTL) {
                p.unwritten = p.unwritten.saturating_add(count);
                p.last_seen = now;
                return;
            }
            // Seen too long ago for its Event to count on: a new one, with what was not
            // written yet.
            count = count.saturating_add(p.unwritten);
        }
        if self.published.len() >= REMEMBERED && !self.published.contains_key(&key) {
            self.dropped = self.dropped.saturating_add(count);
            return;
        }
        match self.create(&key, regarding, count).await {
            Ok(name) => {
                if self.published.len() < REMEMBERED || self.published.contains_key(&key) {
                    self.published.insert(
                        key,
                        Published {
                            name,
                            regarding: regarding.clone(),
                            count,
                            unwritten: 0,
                            last_seen: now,
                            written: now,
                            failed: 0,
                        },
                    );
                }
            }
            Err(e) => {
                self.published.remove(&key);
                tracing::warn!(error = %e, reason = %key.reason, attempts = count, "security Event not written (the security log has it)");
            }
        }
    }

    /// Writes the counts of repeated Events last written `COUNTS_EVERY` ago or more (all of
    /// them when `all`), then forgets Events not seen within `TTL` whose counts are written.
    async fn write_counts(&mut self, all: bool) {
        let now = Timestamp::now();
        let due: Vec<Key> = self
            .published
            .iter()
            .filter(|(_, p)| p.unwritten > 0 && (all || !within(p.written, now, COUNTS_EVERY)))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(p) = self.published.get(&key) else {
                continue;
            };
            let total = p.count.saturating_add(p.unwritten);
            let api: Api<Event> = Api::namespaced(self.client.clone(), &key.namespace);
            let series = serde_json::json!({"series": EventSeries {
                count: total,
                last_observed_time: MicroTime(p.last_seen),
            }});
            let written = match api
                .patch(&p.name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => Ok((p.name.clone(), total)),
                // Deleted meanwhile (the API server's own TTL, or by hand): a new Event for
                // the attempts since.
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    let (regarding, unwritten) = (p.regarding.clone(), p.unwritten);
                    self.create(&key, &regarding, unwritten)
                        .await
                        .map(|name| (name, unwritten))
                }
                Err(e) => Err(e),
            };
            let Some(p) = self.published.get_mut(&key) else {
                continue;
            };
            match written {
                Ok((name, count)) => {
                    (p.name, p.count, p.unwritten, p.written) = (name, count, 0, now);
                    p.failed = 0;
                }
                Err(e) => {
                    p.failed += 1;
                    if p.failed >= TRIES {
                        tracing::warn!(error = %e, event = %p.name, attempts = p.unwritten, "security Event count given up (the security log has each attempt)");
                        self.published.remove(&key);
                    }
                }
            }
        }
        self.published
            .retain(|_, p| p.unwritten > 0 || within(p.last_seen, now, TTL));
        if self.dropped > 0 {
            tracing::warn!(
                attempts = self.dropped,
                remembered = REMEMBERED,
                "security Events full; attempts reached only the security log"
            );
            self.dropped = 0;
        }
    }

    async fn create(
        &self,
        key: &Key,
        regarding: &ObjectReference,
        count: i32,
    ) -> Result<String, kube::Error> {
        // Now, not the batch's time: two Events of one Membership written in one go get
        // names of their own.
        let now = Timestamp::now();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &key.namespace);
        let event = Event {
            metadata: ObjectMeta {
                namespace: Some(key.namespace.clone()),
                name: Some(format!("{}.{:x}", key.name, now.as_nanosecond())),
                ..Default::default()
            },
            action: Some("Security".into()),
            reason: Some(key.reason.clone()),
            note: Some(key.note.clone()),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(REPORTER.into()),
            reporting_instance: Some(REPORTER.into()),
            series: (count > 1).then_some(EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }),
            ..Default::default()
        };
        let created = api.create(&PostParams::default(), &event).await?;
        Ok(created.metadata.name.unwrap_or_default())
    }
}

/// `key`, or the Event its notes share once its Membership, type and reason have
/// `NOTES_PER_REASON` others within `TTL`.
fn fold(published: &HashMap<Key, Published>, mut key: Key, now: Timestamp) -> Key {
    if published.contains_key(&key) {
        return key;
    }
    let notes = published
        .iter()
        .filter(|(k, p)| k.same_group(&key) && k.note != k.folded && within(p.last_seen, now, TTL))
        .count();
    // Full, the map would forget each new note at once, and every repeat would be an object
    // of its own (red team 39): the shared Event then.
    if notes >= NOTES_PER_REASON || published.len() >= REMEMBERED {
        key.note = key.folded.clone();
    }
    key
}

/// Whether `then` is less than `span` before `now`.
fn within(then: Timestamp, now: Timestamp, span: Duration) -> bool {
    now.duration_since(then)
        .try_into()
        .is_ok_and(|d: Duration| d < span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_a_few_notes_a_member_s_reason_shares_one_event() {
        let now = Timestamp::now();
        let bob = ObjectReference {
            namespace: Some("acme".into()),
            name: Some("bob".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let carl = ObjectReference {
            name: Some("carl".into()),
            ..bob.clone()
        };
        let guess = |who: &ObjectReference, ip: usize| {
            Key::of(
                who,
                true,
                "LoginFailed",
                &format!("from 10.0.0.{ip}"),
                "from more sources",
            )
        };
        let seen = |ago: u64| Published {
            name: String::new(),
            regarding: bob.clone(),
            count: 1,
            unwritten: 0,
            last_seen: now - Duration::from_secs(ago),
            written: now,
            failed: 0,
        };
        let mut published = HashMap::new();
        for ip in 0..NOTES_PER_REASON {
            let key = fold(&published, guess(&bob, ip), now);
            assert_eq!(
                key.note,
                format!("from 10.0.0.{ip}"),
                "note {ip} is its own"
            );
            published.insert(key, seen(1));
        }
        // One more source: the shared Event; one already written keeps its own.
        assert_eq!(
            fold(&published, guess(&bob, 99), now).note,
            "from more sources"
        );
        assert_eq!(fold(&published, guess(&bob, 0), now).note, "from 10.0.0.0");
        // Another member, another reason, or notes seen too long ago: their own.
        assert_eq!(
            fold(&published, guess(&carl, 99), now).note,
            "from 10.0.0.99"
        );
        // A member of the same name in another organization on the cluster: places of its
        // own, whatever acme's bob has used (an outsider guessing at one cannot fold the
        // other's Events, nor count into them).
        let globex_bob = ObjectReference {
            namespace: Some("globex".into()),
            uid: Some("u9".into()),
            ..bob.clone()
        };
        let theirs = fold(&published, guess(&globex_bob, 99), now);
        assert_eq!(
            (theirs.namespace.as_str(), theirs.note.as_str()),
            ("globex", "from 10.0.0.99")
        );
        let other_reason = Key::of(&bob, false, "LoginSucceeded", "from 10.0.0.99", "x");
        assert_eq!(fold(&published, other_reason, now).note, "from 10.0.0.99");
        // Another failure reason (its own shared note): a wrong code after the slots of
        // requests over the rate limit are full is seen as it is (red team 39).
        let wrong_code = Key::of(
            &bob,
            true,
            "LoginFailed",
            "TotpWrong, from 10.0.0.99",
            "TotpWrong, from more sources",
        );
        assert_eq!(
            fold(&published, wrong_code.clone(), now).note,
            "TotpWrong, from 10.0.0.99"
        );
        // The map full: a new note goes to the shared Event, never to an object of its own
        // that nothing would count into.
        let mut full = published.clone();
        for i in full.len()..REMEMBERED {
            full.insert(guess(&carl, 1000 + i), seen(1));
        }
        assert_eq!(
            fold(&full, wrong_code, now).note,
            "TotpWrong, from more sources"
        );
        for p in published.values_mut() {
            p.last_seen = now - TTL - Duration::from_secs(1);
        }
        assert_eq!(
            fold(&published, guess(&bob, 99), now).note,
            "from 10.0.0.99"
        );
    }

    #[test]
    fn notes_are_cut_between_characters_to_what_the_api_server_takes() {
        let long = "é".repeat(NOTE_BYTES);
        let key = Key::of(&ObjectReference::default(), true, "LoginFailed", &long, "x");
        assert!(key.note.len() <= NOTE_BYTES && key.note.len() >= NOTE_BYTES - 1);
        assert!(key.note.chars().all(|c| c == 'é'));
        assert_eq!(
            Key::of(&Default::default(), true, "R", "short", "x").note,
            "short"
        );
    }
}
