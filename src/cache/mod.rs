//! The caches roster reads instead of the API server: reflectors of Organizations, Projects,
//! Memberships, roster's RoleBindings and (when identity runs) members' credential records.
//! The controller polls their trigger streams (which keeps them current); the webhook and the
//! identity server read the same stores. Without a controller, `drive()` polls them.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::reflector::{self, Lookup, Store};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

mod bindings;
mod credentials;
mod emails;
pub use bindings::Binding;
pub use credentials::Credential;
pub use emails::EmailIndex;

use crate::api::contract::{CREDENTIALS_SECRET_TYPE, managed_selector};
use crate::api::{Membership, Organization, Project};

type Trigger<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// Read handles on the caches; cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub orgs: Store<Organization>,
    pub projects: Store<Project>,
    pub memberships: Store<Membership>,
    /// The same Memberships by organization and e-mail.
    pub emails: EmailIndex,
    /// roster's RoleBindings, subjects kept compact (`Binding::rolebinding` reads one whole).
    pub rolebindings: Store<Binding>,
    /// Members' credential records (identity), when identity runs.
    pub credentials: Option<Store<Credential>>,
    ready: tokio::sync::watch::Receiver<Option<Result<(), NotReady>>>,
}

/// A cache that can never be read: its watch (or the readiness watcher) ended before listing.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the {0} watch stopped before listing")]
pub struct NotReady(pub &'static str);

pub struct Triggers {
    pub orgs: Trigger<Organization>,
    pub projects: Trigger<Project>,
    pub memberships: Trigger<Membership>,
    /// roster's RoleBindings that changed (each names its organization).
    pub rolebindings: BoxStream<'static, Binding>,
    /// Credential records that changed (each names its organization).
    pub credentials: Option<BoxStream<'static, Credential>>,
}

pub struct Caches {
    stores: Stores,
    triggers: Triggers,
}

impl Caches {
    /// Sets up the watches; nothing is listed until the trigger streams are polled.
    /// `credentials_namespace` is roster's own namespace when identity runs.
    pub fn new(client: &Client, credentials_namespace: Option<&str>) -> Caches {
        // Lists are paged (500 a page, read consistently; served from the API server's watch
        // cache where it can). `any_semantic` (resourceVersion=0) makes the API server ignore
        // the page size: 20,000 Memberships came as one response, parsed whole before any was
        // slimmed — the largest part of roster's peak memory.
        let wc = watcher::Config::default();
        let managed = wc.clone().labels(&managed_selector());
        let (orgs, org_events) =
            reflected::<Organization, _>(Api::all(client.clone()), wc.clone(), slim, |_| {});
        let (projects, project_events) =
            reflected::<Project, _>(Api::all(client.clone()), wc.clone(), slim, |_| {});
        // The index needs the store, the store's stream needs the index: filled once both exist.
        let slot: Arc<std::sync::OnceLock<EmailIndex>> = Arc::default();
        let follow = slot.clone();
        let (memberships, membership_events) =
            reflected::<Membership, _>(Api::all(client.clone()), wc, slim_membership, move |e| {
                if let Some(ix) = follow.get() {
                    ix.apply(e);
                }
            });
        let emails = EmailIndex::new(memberships.clone());
        let _ = slot.set(emails.clone());
        let (rolebindings, rb_events) = compact(
            Api::<RoleBinding>::all(client.clone()),
            managed,
            Binding::of,
        );
        let (credentials, credential_events) = match credentials_namespace {
            Some(ns) => {
                let (store, events) = credentials(client, ns);
                (Some(store), Some(events))
            }
            None => (None, None),
        };
        let ready = watch_readiness(
            &orgs,
            &projects,
            &memberships,
            &rolebindings,
            credentials.clone(),
        );
        Caches {
            stores: Stores {
                orgs,
                projects,
                memberships,
                emails,
                rolebindings,
                credentials,
                ready,
            },
            triggers: Triggers {
                orgs: org_events.boxed(),
                projects: project_events.boxed(),
                memberships: membership_events.boxed(),
                rolebindings: rb_events,
                credentials: credential_events,
            },
        }
    }

    pub fn stores(&self) -> Stores {
        self.stores.clone()
    }

    pub fn split(self) -> (Stores, Triggers) {
        (self.stores, self.triggers)
    }

    /// Keeps the caches current when no controller polls them (webhook-only mode).
    pub fn drive(self) -> Stores {
        let Triggers {
            orgs,
            projects,
            memberships,
            rolebindings,
            credentials,
        } = self.triggers;
        tokio::spawn(orgs.for_each(|_| async {}));
        tokio::spawn(projects.for_each(|_| async {}));
        tokio::spawn(memberships.for_each(|_| async {}));
        tokio::spawn(rolebindings.for_each(|_| async {}));
        if let Some(c) = credentials {
            tokio::spawn(c.for_each(|_| async {}));
        }
        self.stores
    }
}

impl Stores {
    /// Waits until every cache has listed its objects once.
    pub async fn ready(&self) -> Result<(), NotReady> {
        let mut rx = self.ready.clone();
        let outcome = rx
            .wait_for(Option::is_some)
            .await
            .map_err(|_| NotReady("readiness"))?
            .clone();
        outcome.unwrap_or(Ok(()))
    }

    pub fn is_ready(&self) -> bool {
        matches!(*self.ready.borrow(), Some(Ok(())))
    }
}

/// Planning from a half-filled cache would revoke access that exists, so nothing reads the
/// caches before every store has listed its objects. `Store::wait_until_ready` wakes only one of
/// several concurrent waiters, so a single task waits on the stores and publishes the outcome on
/// a channel that any number of readers can wait on.
fn watch_readiness(
    orgs: &Store<Organization>,
    projects: &Store<Project>,
    memberships: &Store<Membership>,
    rolebindings: &Store<Binding>,
    credentials: Option<Store<Credential>>,
) -> tokio::sync::watch::Receiver<Option<Result<(), NotReady>>> {
    let (tx, rx) = tokio::sync::watch::channel(None);
    let (orgs, projects, memberships, rolebindings) = (
        orgs.clone(),
        projects.clone(),
        memberships.clone(),
        rolebindings.clone(),
    );
    tokio::spawn(async move {
        let outcome = async {
            orgs.wait_until_ready()
                .await
                .map_err(|_| NotReady("organizations"))?;
            projects
                .wait_until_ready()
                .await
                .map_err(|_| NotReady("projects"))?;
            memberships
                .wait_until_ready()
                .await
                .map_err(|_| NotReady("memberships"))?;
            rolebindings
                .wait_until_ready()
                .await
                .map_err(|_| NotReady("rolebindings"))?;
            if let Some(c) = credentials {
                c.wait_until_ready()
                    .await
                    .map_err(|_| NotReady("credentials"))?;
            }
            Ok::<(), NotReady>(())
        }
        .await;
        let _ = tx.send(Some(outcome));
    });
    rx
}

/// The credential records in roster's namespace `ns`, cached in their compact form
/// (`Credential`), and the stream of those that changed.
pub fn credentials(
    client: &Client,
    ns: &str,
) -> (Store<Credential>, BoxStream<'static, Credential>) {
    let wc = watcher::Config::default().fields(&format!("type={CREDENTIALS_SECRET_TYPE}"));
    compact(Api::<Secret>::namespaced(client.clone(), ns), wc, |s| {
        Credential::of(&s)
    })
}

/// An object as a cache holds it when the object itself would cost too much: what `version`
/// returns moves with every change worth a reconcile.
pub trait Compact: Lookup<DynamicType = ()> + Clone + Send + Sync + 'static {
    fn version(&self) -> u64;
}

/// A watch cached in a compact form (`of` each object), and the stream of the entries that
/// changed: a relist passes on only what moved meanwhile, and deletions.
fn compact<K, C>(
    api: Api<K>,
    wc: watcher::Config,
    of: fn(K) -> C,
) -> (Store<C>, BoxStream<'static, C>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    C: Compact,
{
    let (store, mut writer) = reflector::store();
    let mut changed = Changed::default();
    let stream = watcher(api, wc)
        .backoff(watch_backoff())
        .filter_map(move |event| {
            let out = match event {
                Ok(event) => {
                    let event = map_event(event, of);
                    writer.apply_watcher_event(&event);
                    changed.of(event)
                }
                // Retried by the watch itself (see `reflected`).
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    None
                }
            };
            std::future::ready(out)
        });
    (store, stream.boxed())
}

fn map_event<K, C>(e: watcher::Event<K>, of: fn(K) -> C) -> watcher::Event<C> {
    use watcher::Event as E;
    match e {
        E::Apply(k) => E::Apply(of(k)),
        E::InitApply(k) => E::InitApply(of(k)),
        E::Delete(k) => E::Delete(of(k)),
        E::Init => E::Init,
        E::InitDone => E::InitDone,
    }
}

/// Which watch events of compact entries are changes worth a reconcile. Kept as hashes (as
/// `reflected` does): an extra reconcile at worst, and no strings per entry.
struct Changed<C> {
    seen: HashMap<u64, u64>,
    kind: std::marker::PhantomData<C>,
}

impl<C> Default for Changed<C> {
    fn default() -> Self {
        Changed {
            seen: HashMap::new(),
            kind: std::marker::PhantomData,
        }
    }
}

impl<C: Compact> Changed<C> {
    fn of(&mut self, event: watcher::Event<C>) -> Option<C> {
        let key = |c: &C| hash_of((c.namespace(), c.name()));
        match event {
            watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                let version = c.version();
                (self.seen.insert(key(&c), version) != Some(version)).then_some(c)
            }
            watcher::Event::Delete(c) => {
                self.seen.remove(&key(&c));
                Some(c)
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        }
    }
}

fn hash_of(x: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

/// A reflector whose store the reconciler reads, and the stream of objects that should
/// trigger a reconcile: a new spec, a deletion, or an object gone. Status-only changes (which
/// roster itself writes) do not trigger.
fn reflected<K, F>(
    api: Api<K>,
    wc: watcher::Config,
    prepare: fn(&mut K),
    mut follow: F,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + use<K, F>,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    F: FnMut(&watcher::Event<K>) + Send + 'static,
{
    let (store, writer) = reflector::store();
    // By a hash of namespace and name, not by ObjectRef (four strings per object, 20,000
    // Memberships: megabytes). Two objects sharing a key can only cost an extra reconcile,
    // never a missed one, unless their fingerprints collide as well.
    let mut seen: HashMap<u64, u64> = HashMap::new();
    let stream = watcher(api, wc)
        .backoff(watch_backoff())
        // Cache only what decisions read: managedFields and kubectl's last-applied copy of the
        // whole object are most of an object's size and no rule of roster's reads them.
        .modify(prepare)
        .reflect(writer)
        .filter_map(move |event| {
            // Indexes beside the store see every event right after it, relists included.
            if let Ok(e) = &event {
                follow(e);
            }
            let out = match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    let fingerprint = trigger_fingerprint(&obj);
                    (seen.insert(seen_key(&obj), fingerprint) != Some(fingerprint))
                        .then_some(Ok(obj))
                }
                Ok(watcher::Event::Delete(obj)) => {
                    seen.remove(&seen_key(&obj));
                    Some(Ok(obj))
                }
                Ok(watcher::Event::Init) => {
                    tracing::debug!(kind = %K::kind(&()), "listing");
                    None
                }
                Ok(watcher::Event::InitDone) => {
                    tracing::debug!(kind = %K::kind(&()), "listed");
                    None
                }
                // The watch retries on its own (watch_backoff). Passing the error on would put the
                // Controller's trigger backoff on *all* trigger streams, freezing every cache for up to
                // a minute after an API server restart.
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    None
                }
            };
            std::future::ready(out)
        });
    (store, stream)
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops the parts of an object roster never reads before it is cached.
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A Membership's status is kept in its compact form (`MembershipStatus::compact`): with
/// 20,000 members the messages and summaries alone were tens of megabytes.
pub fn slim_membership(m: &mut Membership) {
    slim(m);
    // Lists grow by doubling while they are deserialized: cached for good, they keep only
    // what they hold.
    m.spec.projects.shrink_to_fit();
    if let Some(s) = m.status.as_mut() {
        s.compact();
    }
}

/// kube's default watch backoff grows to 30 s; after an API server restart that leaves roster
/// blind for up to half a minute. Retrying a list at most every 8 s costs little and keeps
/// convergence after an outage within seconds.
pub(crate) fn watch_backoff() -> ResetTimerBackoff<WatchBackoff> {
    ResetTimerBackoff::new(WatchBackoff(0), Duration::from_secs(60))
}

/// 500 ms doubling to 8 s.
pub(crate) struct WatchBackoff(u32);

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let delay = Duration::from_millis(500) * 2u32.saturating_pow(self.0.min(4));
        self.0 = self.0.saturating_add(1);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.0 = 0;
    }
}

/// What about an object makes it worth planning again. For roster's kinds the spec is covered by
/// `generation`; RoleBindings have no generation, so their content counts.
fn seen_key<K: Resource>(obj: &K) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().namespace.hash(&mut h);
    obj.meta().name.hash(&mut h);
    h.finish()
}

pub(crate) fn trigger_fingerprint<K: Resource + serde::Serialize>(obj: &K) -> u64 {
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match meta.generation {
        Some(g) => g.hash(&mut h),
        None => serde_json::to_string(obj).unwrap_or_default().hash(&mut h),
    }
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut h);
    meta.labels.hash(&mut h);
    meta.annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(crate::api::contract::PREFIX))
        .for_each(|kv| kv.hash(&mut h));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MembershipSpec, MembershipStatus, Phase};

    fn member() -> Membership {
        let mut m = Membership::new(
            "bob",
            MembershipSpec {
                email: "bob@acme.example".into(),
                display_name: None,
                role: None,
                projects: vec![],
                disabled: false,
                mfa: None,
                expires_at: None,
            },
        );
        m.metadata.generation = Some(1);
        m
    }

    #[test]
    fn the_cache_keeps_what_decisions_read_and_drops_the_rest() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let mut m = member();
        m.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default(); 3]);
        m.metadata.annotations = Some(
            [
                (LAST_APPLIED.to_string(), "{\"a whole copy\":1}".to_string()),
                ("roster.dev/unlock".to_string(), "n1".to_string()),
            ]
            .into(),
        );
        slim(&mut m);
        assert!(m.metadata.managed_fields.is_none());
        assert_eq!(
            m.metadata.annotations,
            Some([("roster.dev/unlock".to_string(), "n1".to_string())].into())
        );
        assert_eq!(m.spec.email, "bob@acme.example");
        let mut only_last_applied = member();
        only_last_applied.metadata.annotations =
            Some([(LAST_APPLIED.to_string(), "{}".to_string())].into());
        slim(&mut only_last_applied);
        assert!(only_last_applied.metadata.annotations.is_none());
    }

    #[test]
    fn status_writes_do_not_trigger_but_spec_and_deletion_do() {
        let base = member();
        let mut status_only = base.clone();
        status_only.status = Some(MembershipStatus {
            phase: Some(Phase::Active),
            ..Default::default()
        });
        status_only.metadata.resource_version = Some("42".into());
        assert_eq!(
            trigger_fingerprint(&base),
            trigger_fingerprint(&status_only)
        );

        let mut spec = base.clone();
        spec.metadata.generation = Some(2);
        assert_ne!(trigger_fingerprint(&base), trigger_fingerprint(&spec));

        let mut deleting = base.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_ne!(trigger_fingerprint(&base), trigger_fingerprint(&deleting));

        let mut nonce = base.clone();
        nonce.metadata.annotations = Some(
            [(
                crate::api::contract::Request::Unlock
                    .annotation()
                    .to_string(),
                "n1".to_string(),
            )]
            .into(),
        );
        assert_ne!(trigger_fingerprint(&base), trigger_fingerprint(&nonce));
    }

    #[test]
    fn watch_backoff_is_capped_at_eight_seconds() {
        let delays: Vec<u64> = WatchBackoff(0)
            .take(7)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
