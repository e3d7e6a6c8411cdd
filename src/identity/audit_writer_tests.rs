//! The security log's writer against a scripted API server, on tokio's paused clock: when an
//! organization's ConfigMap is written (at once when quiet, every `WRITE_EVERY` when busy, at
//! once on shutdown) and that what waits is all written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use kube::Client;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};

use super::audit::{Entry, SecurityLog, configmap_name, parse};
use crate::api::Organization;
use crate::fixtures::{NS, member, org};

const ROSTER_NS: &str = "roster-system";

/// ConfigMaps kept in memory (GET, POST, PUT); every other request is answered with its body.
#[derive(Clone, Default)]
struct ConfigMaps {
    stored: Arc<Mutex<BTreeMap<String, Value>>>,
    writes: Arc<Mutex<usize>>,
    /// How many of the next writes fail with 503.
    unavailable: Arc<Mutex<usize>>,
}

impl ConfigMaps {
    fn client(&self) -> Client {
        let me = self.clone();
        crate::fixtures::scripted_client(
            move |method, path, body| me.answer(method, path, body),
            ROSTER_NS,
        )
    }

    fn answer(&self, method: &Method, path: &str, body: Value) -> (StatusCode, Value) {
        if !path.contains("/configmaps") {
            return (StatusCode::OK, body);
        }
        let name = path.rsplit('/').next().unwrap_or_default().to_string();
        let mut stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        match *method {
            Method::GET => match stored.get(&name) {
                Some(cm) => (StatusCode::OK, cm.clone()),
                None => (
                    StatusCode::NOT_FOUND,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Failure", "reason": "NotFound", "code": 404,
                        "message": format!("configmaps \"{name}\" not found")}),
                ),
            },
            _ => {
                let mut unavailable = self.unavailable.lock().unwrap_or_else(|e| e.into_inner());
                if *unavailable > 0 {
                    *unavailable -= 1;
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "ServiceUnavailable", "code": 503,
                            "message": "etcd is away"}),
                    );
                }
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                *self.writes.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                stored.insert(name, body.clone());
                (StatusCode::OK, body)
            }
        }
    }

    /// The details of the entries in acme's log's activity part, oldest first.
    fn logged(&self) -> Vec<String> {
        let stored = self.stored.lock().unwrap_or_else(|e| e.into_inner());
        let log = stored
            .get(&configmap_name(NS))
            .and_then(|cm| cm["data"]["log.jsonl"].as_str())
            .unwrap_or_default();
        parse(log).into_iter().filter_map(|e| e.detail).collect()
    }

    fn writes(&self) -> usize {
        *self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// acme, with bob, and a log writing to `api`.
fn started(api: &ConfigMaps) -> SecurityLog {
    let mut orgs = crate::cache::Writer::<Organization>::default();
    orgs.apply_watcher_event(&Event::Apply(org("olga@acme.example")));
    let (_memberships, emails, mut members) = crate::cache::members();
    members.apply(Event::Apply(member("bob", None, &[])));
    SecurityLog::start(api.client(), ROSTER_NS, orgs.as_reader(), emails)
}

fn login(detail: &str) -> Entry {
    Entry::new(NS, Some("bob@acme.example"), "LoginSucceeded").detail(detail)
}

async fn wait(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn a_busy_organization_s_log_waits_its_turn_and_is_written_at_once_on_shutdown() {
    let api = ConfigMaps::default();
    let log = started(&api);

    log.record(login("1"));
    wait(1500).await;
    assert_eq!(
        api.logged(),
        ["1"],
        "a quiet organization: within a second or so"
    );

    log.record(login("2"));
    wait(2000).await;
    assert_eq!(api.logged(), ["1"], "a busy one waits for its turn");
    wait(3000).await;
    assert_eq!(
        api.logged(),
        ["1", "2"],
        "and gets it 5 s after its last write"
    );

    // Stopping: what waits is written at once, and so is what comes after.
    log.record(login("3"));
    let asked = tokio::time::Instant::now();
    log.flush().await;
    assert_eq!(api.logged(), ["1", "2", "3"]);
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "{:?}",
        asked.elapsed()
    );
    log.record(login("4"));
    wait(1500).await;
    assert_eq!(
        api.logged(),
        ["1", "2", "3", "4"],
        "after a flush nothing waits"
    );
    assert_eq!(api.writes(), 4, "one write per turn, not per entry");
}

/// A write the API server could not take (unavailable, overloaded, conflicting) loses nothing:
/// its entries wait for the organization's next turn, ahead of newer ones (red team 41).
#[tokio::test(start_paused = true)]
async fn a_write_that_fails_on_the_way_is_tried_again_at_the_next_turn() {
    let api = ConfigMaps::default();
    *api.unavailable.lock().unwrap_or_else(|e| e.into_inner()) = 1;
    let log = started(&api);
    log.record(login("1"));
    wait(1500).await;
    assert!(api.logged().is_empty(), "the first write failed");
    log.record(login("2"));
    wait(5000).await;
    assert_eq!(
        api.logged(),
        ["1", "2"],
        "the next turn writes both, in order"
    );
}
