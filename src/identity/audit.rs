//! The security log: every login attempt, lockout, unlock, MFA enrolment and reset, invitation
//! acceptance and ownership transfer goes three ways —
//! - one JSON line on standard output (for the cluster's log pipeline),
//! - a Kubernetes Event on the member's Membership (for `kubectl describe`) — except for what
//!   the controller does itself (invitations, unlocks, MFA resets), whose own Event says it;
//!   one per member, reason and note, its count the number of attempts (`security_events`),
//! - a bounded per-organization log in a ConfigMap in roster's namespace, which outlives Event
//!   TTL and restarts (`roster security-log ORG`).
//!
//! Only the standard-output line is written for anything a stranger can cause at will: an
//! organization that does not exist (no ConfigMap is ever made for it) or an address that is no
//! member of it (no Event, no entry). The persisted log has three parts, each bounded on its
//! own: `failures` (what anyone can cause by guessing: failed attempts and the lockouts they
//! trigger), `actions` (unlocks, MFA enrolments and resets, accepted invitations, ownership
//! transfers) and `activity` (successful logins, invitations sent). A flood of failures —
//! already slowed by the rate limits — pushes out only older failures, never an action.
//!
//! Recording never waits on the API server: entries go through a channel to one task that
//! sends their Events once a second and appends them to the ConfigMap in batches (one
//! compare-and-swap write per organization): within a second for a quiet organization, at most
//! every `log_pacing::WRITE_EVERY` (5 s) for a busy one, so a login flood costs one write per
//! organization every few seconds, not one per login.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cache::Store as Cache;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, Resource};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::log_pacing::Pending;
use super::security_events::{EventsQueue, Key};
use crate::api::contract::{MANAGED_BY, MANAGER, ORGANIZATION_LABEL};
use crate::api::{Membership, Organization};

/// Entries kept per organization and part (the oldest go first).
pub const KEPT: usize = 1000;
/// Bytes kept per part at most (a ConfigMap holds 1 MiB in all, for three parts).
pub const KEPT_BYTES: usize = 300 * 1024;
const ACTIVITY_KEY: &str = "log.jsonl";
const ACTIONS_KEY: &str = "actions.jsonl";
const FAILURES_KEY: &str = "failures.jsonl";
/// User agents and other client-supplied text are cut to this many characters.
const MAX_FIELD: usize = 256;

/// One security event. Everything in it is safe to show to the organization's admins: no
/// password, code, token or seed ever reaches it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// RFC 3339.
    pub time: String,
    pub organization: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// What happened: LoginSucceeded, LoginFailed, LoginRefused, Locked, Unlocked, MfaEnrolled,
    /// MfaReset, InvitationSent, InvitationAccepted, OwnershipTransferred, …
    pub event: String,
    /// Why, as a stable reason (WrongPassword, TotpReplayed, Disabled, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Free text for humans (e.g. "new owner bob@acme.example").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Entry {
    pub fn new(organization: &str, email: Option<&str>, event: &str) -> Entry {
        Entry {
            time: Timestamp::now()
                .round(k8s_openapi::jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            organization: clip(organization),
            email: email.map(clip),
            event: event.to_string(),
            reason: None,
            source_ip: None,
            user_agent: None,
            detail: None,
        }
    }

    pub fn reason(mut self, reason: &str) -> Entry {
        self.reason = Some(reason.to_string());
        self
    }

    pub fn client(mut self, ip: Option<String>, user_agent: Option<&str>) -> Entry {
        self.source_ip = ip;
        self.user_agent = user_agent.map(clip);
        self
    }

    pub fn detail(mut self, detail: impl AsRef<str>) -> Entry {
        self.detail = Some(clip(detail.as_ref()));
        self
    }

    fn warning(&self) -> bool {
        matches!(
            self.event.as_str(),
            "LoginFailed" | "LoginRefused" | "Locked" | "TokenRejected"
        )
    }

    /// The part of the persisted log this entry goes to (see the module's documentation).
    pub(super) fn part(&self) -> &'static str {
        match self.event.as_str() {
            "LoginFailed"
            | "LoginRefused"
            | "OwnershipTransferFailed"
            | "TokenRejected"
            | "Locked" => FAILURES_KEY,
            "Unlocked"
            | "MfaReset"
            | "MfaEnrolled"
            | "InvitationAccepted"
            | "OwnershipTransferred" => ACTIONS_KEY,
            _ => ACTIVITY_KEY,
        }
    }

    /// A failed attempt, or what failed attempts cause: anyone can add these.
    pub fn failure(&self) -> bool {
        self.part() == FAILURES_KEY
    }
}

/// Client-supplied text is cut (by characters, never inside one) and control characters are
/// replaced, so an entry is one line however it is printed.
fn clip(s: &str) -> String {
    s.chars()
        .take(MAX_FIELD)
        .map(|c| match c {
            c if c.is_control() => '\u{FFFD}',
            // What JSON escapes would double in size: a field's bytes stay its characters'.
            '\\' => '/',
            '"' => '\'',
            c => c,
        })
        .collect()
}

/// The handle the identity server and the controller record through. Cheap to clone.
#[derive(Clone)]
pub struct SecurityLog {
    tx: mpsc::Sender<Message>,
}

enum Message {
    Entry(Entry),
    /// Write what waits now, and every batch from now on at once (roster is stopping);
    /// answered when written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl SecurityLog {
    /// Starts the writer task. `namespace` is roster's own; the caches tell real organizations
    /// and members from made-up ones.
    pub fn start(
        client: Client,
        namespace: &str,
        orgs: Cache<Organization>,
        memberships: crate::cache::EmailIndex,
    ) -> SecurityLog {
        let (tx, rx) = mpsc::channel(10_000);
        let writer = Writer {
            api: Api::namespaced(client.clone(), namespace),
            events: EventsQueue::start(client),
            orgs,
            memberships,
        };
        tokio::spawn(writer.run(rx));
        SecurityLog { tx }
    }

    /// A log that only prints (tests of the HTTP layer, which have no API server).
    pub fn print_only() -> SecurityLog {
        let (tx, mut rx) = mpsc::channel::<Message>(1024);
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if let Message::Flush(done) = m {
                    let _ = done.send(());
                }
            }
        });
        SecurityLog { tx }
    }

    pub fn record(&self, entry: Entry) {
        // The JSON line first and unconditionally: it is the record of last resort.
        println!("{}", serde_json::to_string(&entry).unwrap_or_default());
        if self.tx.try_send(Message::Entry(entry)).is_err() {
            tracing::warn!("security log queue full; an entry reached only standard output");
        }
    }

    /// Writes what was recorded before this call to the ConfigMaps without waiting for its
    /// organization's next turn, and from then on every batch at once: for shutdown.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// Entries of what the controller does on a Membership's request or its planning (invitations,
/// unlocks, MFA resets): the controller's own Event on the Membership says it, with why
/// (`Invited`, `InvitationRotated`, `Unlocked`, ...). A second Event here said it twice.
fn announced_by_controller(event: &str) -> bool {
    matches!(event, "InvitationSent" | "Unlocked" | "MfaReset")
}

/// The ConfigMap holding an organization's log.
pub fn configmap_name(org: &str) -> String {
    format!("roster-security-{org}")
}

/// The newest of `existing` followed by `new`, as JSON lines: at most `KEPT` of them and
/// `KEPT_BYTES` in all.
pub fn append(existing: &str, new: &[Entry]) -> String {
    let mut lines: Vec<String> = existing
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines.extend(
        new.iter()
            .map(|e| serde_json::to_string(e).unwrap_or_default()),
    );
    let mut bytes = 0;
    let keep = lines
        .iter()
        .rev()
        .take(KEPT)
        .take_while(|l| {
            bytes += l.len() + 1;
            bytes <= KEPT_BYTES
        })
        .count();
    let mut out = lines[lines.len() - keep..].join("\n");
    out.push('\n');
    out
}

pub fn parse(log: &str) -> Vec<Entry> {
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Organizations' logs written at once.
const WRITERS: usize = 4;

/// Whether a failed write is worth another try at the organization's next turn: the API server
/// was unreachable, overloaded or busy with other writers, rather than refusing the entries.
/// (What waits is bounded, so trying again costs a write a period at most.)
fn worth_retrying(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// `first` and what arrives within a second after it: one batch of Events, and the flushes
/// asked for (a flush ends the batch: what came before it is to be written now).
async fn collect(
    first: Message,
    rx: &mut mpsc::Receiver<Message>,
) -> (Vec<Entry>, Vec<tokio::sync::oneshot::Sender<()>>) {
    let (mut batch, mut flushes) = (Vec::new(), Vec::new());
    let mut take = |m: Message| match m {
        Message::Entry(e) => {
            batch.push(e);
            true
        }
        Message::Flush(done) => {
            flushes.push(done);
            false
        }
    };
    if take(first) {
        let deadline = tokio::time::sleep(Duration::from_secs(1));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                next = rx.recv() => match next {
                    Some(m) => {
                        if !take(m) {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
    }
    (batch, flushes)
}

struct Writer {
    api: Api<ConfigMap>,
    events: EventsQueue,
    orgs: Cache<Organization>,
    /// Memberships by organization and e-mail: a scan of all of them per entry made a bulk
    /// invitation of 20,000 members quadratic (and the queue overflowed meanwhile).
    memberships: crate::cache::EmailIndex,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let mut pending = Pending::default();
        // Once stopping (or every sender gone), nothing waits for its turn.
        let (mut open, mut stopping) = (true, false);
        let now = || tokio::time::Instant::now().into_std();
        while open {
            let due = pending.next_due();
            let wake = due.map_or_else(tokio::time::Instant::now, Into::into);
            let mut flushed = Vec::new();
            tokio::select! {
                next = rx.recv() => match next {
                    Some(first) => {
                        let (batch, flushes) = collect(first, &mut rx).await;
                        for (org, entries) in self.publish(batch) {
                            pending.add(&org, entries, now());
                        }
                        stopping |= !flushes.is_empty();
                        flushed = flushes;
                    }
                    None => open = false,
                },
                _ = tokio::time::sleep_until(wake), if due.is_some() => {}
            }
            // Organizations apart, a few at a time: at shutdown each gets its write within
            // the same few seconds, whatever its name's place in the alphabet.
            let due = pending.take_due(now(), stopping || !open);
            let me = &self;
            let written: Vec<_> =
                futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
                    futures::stream::iter(due.into_iter().map(|(org, entries)| async move {
                        let result = me.persist(&org, &entries).await;
                        (org, entries, result)
                    })),
                    WRITERS,
                ))
                .await;
            for (org, entries, result) in written {
                match result {
                    Ok(()) => {}
                    // Stopping, there is no next turn: such entries are reported lost.
                    Err(e) if worth_retrying(&e) && open && !stopping => {
                        tracing::warn!(organization = %org, error = %e, waiting = entries.len(), "cannot append to the security log ConfigMap; trying again at its next turn");
                        pending.restore(&org, entries, now());
                    }
                    Err(e) => {
                        tracing::warn!(organization = %org, error = %e, lost = entries.len(), "cannot append to the security log ConfigMap");
                    }
                }
            }
            for done in flushed {
                let _ = done.send(());
            }
        }
    }

    /// Sends a batch's Events and returns its entries for the ConfigMaps, by organization;
    /// made-up organizations and addresses stay on standard output.
    fn publish(&self, batch: Vec<Entry>) -> BTreeMap<String, Vec<Entry>> {
        let mut by_org: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
        let mut announced = Vec::new();
        for e in batch {
            let Some(member) = self.known(&e) else {
                continue;
            };
            if let Some(m) = member.filter(|_| !announced_by_controller(&e.event)) {
                let regarding = m.object_ref(&());
                announced.push((event(&e, &regarding), regarding));
            }
            by_org.entry(e.organization.clone()).or_default().push(e);
        }
        self.events.send(distinct(announced));
        by_org
    }

    /// Whether an entry concerns a real organization (and, if it names an address, a member of
    /// it): `Some(member)` then, `None` for what only standard output keeps.
    fn known(&self, e: &Entry) -> Option<Option<std::sync::Arc<Membership>>> {
        let org = &e.organization;
        self.orgs.get(org, org)?;
        let Some(email) = &e.email else {
            return Some(None);
        };
        self.memberships
            .get(org, email)
            .into_iter()
            .find(|m| &m.spec.email == email)
            .map(Some)
    }

    async fn persist(&self, org: &str, entries: &[Entry]) -> Result<(), kube::Error> {
        let name = configmap_name(org);
        let merged = |data: Option<&BTreeMap<String, String>>| {
            let existing = |k: &str| data.and_then(|d| d.get(k)).map_or("", String::as_str);
            [ACTIVITY_KEY, ACTIONS_KEY, FAILURES_KEY]
                .into_iter()
                .map(|k| {
                    let new: Vec<Entry> =
                        entries.iter().filter(|e| e.part() == k).cloned().collect();
                    (k.to_string(), append(existing(k), &new))
                })
                .collect::<BTreeMap<String, String>>()
        };
        // Conflicts all the way: the last one is the error (the entries are lost to the
        // ConfigMap, and the caller says so).
        let mut conflict = None;
        for _ in 0..20 {
            match self.api.get_opt(&name).await? {
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: Some(BTreeMap::from([
                                (MANAGED_BY.into(), MANAGER.into()),
                                (ORGANIZATION_LABEL.into(), org.to_string()),
                            ])),
                            ..Default::default()
                        },
                        data: Some(merged(None)),
                        ..Default::default()
                    };
                    match self.api.create(&PostParams::default(), &cm).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            conflict = Some(kube::Error::Api(s));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Some(mut cm) => {
                    cm.data = Some(merged(cm.data.as_ref()));
                    match self.api.replace(&name, &PostParams::default(), &cm).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            conflict = Some(kube::Error::Api(s));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        conflict.map_or(Ok(()), Err)
    }
}

/// The Event an entry is shown as on its member's Membership.
fn event(e: &Entry, regarding: &ObjectReference) -> Key {
    let note = [
        e.email.clone(),
        e.reason.clone(),
        e.source_ip.as_ref().map(|ip| format!("from {ip}")),
        e.detail.clone(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    let folded = [
        e.email.clone(),
        e.reason.clone(),
        Some("from more sources: `roster security-log` has each".to_string()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    Key::of(regarding, e.warning(), &e.event, &note, &folded)
}

/// Each distinct Event of a batch once (first-seen order), with how many times it was seen:
/// one write for all of them. A script logging a member in a loop made one write per login.
fn distinct(events: Vec<(Key, ObjectReference)>) -> Vec<(Key, ObjectReference, i32)> {
    let mut out: Vec<(Key, ObjectReference, i32)> = Vec::new();
    let mut at: std::collections::HashMap<Key, usize> = std::collections::HashMap::new();
    for (key, regarding) in events {
        match at.get(&key) {
            Some(&i) => out[i].2 = out[i].2.saturating_add(1),
            None => {
                at.insert(key.clone(), out.len());
                out.push((key, regarding, 1));
            }
        }
    }
    out
}

/// Reads an organization's log (the `security-log` command), both parts, oldest first.
pub async fn read(client: Client, namespace: &str, org: &str) -> Result<Vec<Entry>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let data = api
        .get_opt(&configmap_name(org))
        .await?
        .and_then(|cm| cm.data)
        .unwrap_or_default();
    let mut entries: Vec<Entry> = [ACTIVITY_KEY, ACTIONS_KEY, FAILURES_KEY]
        .iter()
        .filter_map(|k| data.get(*k))
        .flat_map(|log| parse(log))
        .collect();
    // RFC 3339 in UTC, to the second: text order is time order; the sort is stable.
    entries.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_one_line_clipped_and_bounded() {
        let nasty = Entry::new("acme", Some("bob@acme.example"), "LoginFailed")
            .reason("WrongPassword")
            .client(
                Some("10.0.0.1".into()),
                Some(&format!("evil\nagent\u{1b}[31m{}", "x".repeat(10_000))),
            );
        let line = serde_json::to_string(&nasty).expect("json");
        assert!(!line.contains('\n') && !line.contains('\u{1b}'));
        assert_eq!(
            nasty.user_agent.as_ref().map(|u| u.chars().count()),
            Some(MAX_FIELD)
        );

        let many: Vec<Entry> = (0..KEPT + 5)
            .map(|i| Entry::new("acme", None, "LoginFailed").detail(i.to_string()))
            .collect();
        let log = append(&append("", &many[..10]), &many[10..]);
        let parsed = parse(&log);
        assert_eq!(parsed.len(), KEPT);
        assert_eq!(
            parsed[0].detail.as_deref(),
            Some("5"),
            "oldest dropped first"
        );
        assert_eq!(
            parsed[KEPT - 1].detail.as_deref(),
            Some(&*(KEPT + 4).to_string())
        );
    }

    #[test]
    fn a_batch_publishes_each_distinct_event_once_with_its_count() {
        let at = |name: &str, uid: &str| ObjectReference {
            namespace: Some("acme".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        };
        let (bob, bob_again, carl) = (at("bob", "u1"), at("bob", "u2"), at("carl", "u3"));
        let ok = |ip: &str, r: &ObjectReference| {
            (
                event(
                    &Entry::new("acme", Some("bob@acme.example"), "LoginSucceeded")
                        .client(Some(ip.into()), None),
                    r,
                ),
                r.clone(),
            )
        };
        let failed = |why: &str| {
            (
                event(
                    &Entry::new("acme", Some("bob@acme.example"), "LoginFailed").reason(why),
                    &bob,
                ),
                bob.clone(),
            )
        };
        let batch = vec![
            ok("10.0.0.1", &bob),
            ok("10.0.0.1", &bob),
            failed("WrongPassword"),
            ok("10.0.0.2", &bob),
            ok("10.0.0.1", &bob),
            // The same reason, another note: another Event, not a count of the first.
            failed("CodeMissing"),
            ok("10.0.0.1", &carl),
            // Another Membership of the same name (deleted and declared again).
            ok("10.0.0.1", &bob_again),
            failed("WrongPassword"),
        ];
        let published: Vec<String> = distinct(batch)
            .into_iter()
            .map(|(k, _, n)| {
                let kind = if k.warning { "Warning" } else { "Normal" };
                format!("{} {} {kind} {}: {} x{n}", k.name, k.uid, k.reason, k.note)
            })
            .collect();
        assert_eq!(
            published,
            [
                "bob u1 Normal LoginSucceeded: bob@acme.example, from 10.0.0.1 x3",
                "bob u1 Warning LoginFailed: bob@acme.example, WrongPassword x2",
                "bob u1 Normal LoginSucceeded: bob@acme.example, from 10.0.0.2 x1",
                "bob u1 Warning LoginFailed: bob@acme.example, CodeMissing x1",
                "carl u3 Normal LoginSucceeded: bob@acme.example, from 10.0.0.1 x1",
                "bob u2 Normal LoginSucceeded: bob@acme.example, from 10.0.0.1 x1",
            ]
        );
    }

    #[test]
    fn the_log_is_bounded_in_bytes_too_and_failures_are_kept_apart() {
        let fat: Vec<Entry> = (0..KEPT)
            .map(|i| {
                Entry::new("acme", Some("bob@acme.example"), "LoginSucceeded")
                    .detail("d".repeat(MAX_FIELD))
                    .client(Some("10.0.0.1".into()), Some(&"u".repeat(MAX_FIELD)))
                    .reason(&i.to_string())
            })
            .collect();
        let log = append("", &fat);
        assert!(log.len() <= KEPT_BYTES, "{}", log.len());
        let parsed = parse(&log);
        assert!(parsed.len() < KEPT);
        assert_eq!(
            parsed.last().and_then(|e| e.reason.as_deref()),
            Some(&*(KEPT - 1).to_string()),
            "the newest are kept"
        );
        for failure in ["LoginFailed", "OwnershipTransferFailed", "Locked"] {
            assert!(Entry::new("acme", None, failure).failure(), "{failure}");
        }
        for action in [
            "Unlocked",
            "MfaReset",
            "OwnershipTransferred",
            "InvitationAccepted",
        ] {
            assert_eq!(
                Entry::new("acme", None, action).part(),
                ACTIONS_KEY,
                "{action}"
            );
        }
        assert_eq!(
            Entry::new("acme", None, "LoginSucceeded").part(),
            ACTIVITY_KEY
        );
        // Client-supplied text JSON would escape stays as long as it was.
        let e = Entry::new("acme", None, "LoginFailed").client(None, Some(&"\\\"".repeat(200)));
        let line = serde_json::to_string(&e).expect("json");
        assert!(line.len() < 2 * MAX_FIELD, "{}", line.len());
    }
}
