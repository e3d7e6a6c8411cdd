//! The security log's Events on Memberships (events.k8s.io/v1): one per Membership, type,
//! reason and note, its series counting every attempt.
//!
//! kube's `Recorder` tells Events apart by object, type, reason and action, not by note: for
//! six minutes every later Event of a member with the same reason went into the series of the
//! first, under the first one's note. A login from a new address, or a wrong code after a
//! wrong password, showed in `kubectl describe` as one more of the older note (red team 37).
//! Here a new Event is written at once; the counts of repeated ones every `COUNTS_EVERY`.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// How long a published Event is counted into rather than published anew (the figure of
/// client-go's and kube's recorders).
const TTL: Duration = Duration::from_secs(6 * 60);
/// Events remembered at most. Past it a new Event is published but not remembered: its
/// repeats are Events of their own (more objects, nothing hidden).
const REMEMBERED: usize = 10_000;
/// How often the counts of repeated Events are written at most: a script logging members in
/// a loop made one write per member a second, writes that took the API server's CPU from the
/// logins' own hashing on the same cores (8% of the login throughput in benches/login.rs).
pub const COUNTS_EVERY: Duration = Duration::from_secs(10);
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
}

impl Key {
    pub fn of(regarding: &ObjectReference, warning: bool, reason: &str, note: String) -> Key {
        Key {
            namespace: regarding.namespace.clone().unwrap_or_default(),
            name: regarding.name.clone().unwrap_or_default(),
            uid: regarding.uid.clone().unwrap_or_default(),
            warning,
            reason: reason.to_string(),
            note,
        }
    }
}

struct Published {
    name: String,
    regarding: ObjectReference,
    /// Attempts the Event's series says.
    count: i32,
    /// Attempts since, not yet written.
    unwritten: i32,
    last_seen: Timestamp,
    written: Timestamp,
}

pub struct SecurityEvents {
    client: Client,
    published: HashMap<Key, Published>,
}

impl SecurityEvents {
    pub fn new(client: Client) -> SecurityEvents {
        SecurityEvents {
            client,
            published: HashMap::new(),
        }
    }

    /// `count` attempts of the Event `key` about `regarding`. An Event not seen within `TTL` is
    /// written at once (what is new is never late); repeats of one are counted here and
    /// written by `write_counts`.
    pub async fn publish(
        &mut self,
        key: Key,
        regarding: &ObjectReference,
        count: i32,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        if let Some(p) = self
            .published
            .get_mut(&key)
            .filter(|p| within(p.last_seen, now, TTL))
        {
            p.unwritten = p.unwritten.saturating_add(count);
            p.last_seen = now;
            return Ok(());
        }
        let name = self.create(&key, regarding, count, now).await?;
        if self.published.len() < REMEMBERED {
            self.published.insert(
                key,
                Published {
                    name,
                    regarding: regarding.clone(),
                    count,
                    unwritten: 0,
                    last_seen: now,
                    written: now,
                },
            );
        }
        Ok(())
    }

    /// Writes the counts of repeated Events last written `COUNTS_EVERY` ago or more (all of
    /// them when `all`), then forgets Events not seen within `TTL` whose counts are written.
    pub async fn write_counts(&mut self, all: bool) {
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
                    self.create(&key, &regarding, unwritten, now)
                        .await
                        .map(|name| (name, unwritten))
                }
                Err(e) => Err(e),
            };
            match (written, self.published.get_mut(&key)) {
                (Ok((name, count)), Some(p)) => {
                    (p.name, p.count, p.unwritten, p.written) = (name, count, 0, now);
                }
                // Counted here still: the next round tries again.
                (Err(e), _) => {
                    tracing::debug!(error = %e, "security Event count not written");
                }
                (Ok(_), None) => {}
            }
        }
        self.published
            .retain(|_, p| p.unwritten > 0 || within(p.last_seen, now, TTL));
    }

    async fn create(
        &self,
        key: &Key,
        regarding: &ObjectReference,
        count: i32,
        now: Timestamp,
    ) -> Result<String, kube::Error> {
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

/// Whether `then` is less than `span` before `now`.
fn within(then: Timestamp, now: Timestamp, span: Duration) -> bool {
    now.duration_since(then)
        .try_into()
        .is_ok_and(|d: Duration| d < span)
}
