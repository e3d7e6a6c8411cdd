//! The caches roster reads instead of the API server: reflectors of Organizations, Projects,
//! Memberships, roster's RoleBindings and (when identity runs) members' credential records.
//! The controller polls their trigger streams (which keeps them current); the webhook and the
//! identity server read the same stores. Without a controller, `drive()` polls them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::reflector::Lookup;
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

mod bindings;
mod credentials;
mod emails;
mod lean;
mod members;
mod store;
pub use bindings::Binding;
pub use credentials::{Credential, Standing};
pub use emails::EmailIndex;
use lean::Lean;
use members::Pools;
pub use members::{CachedMembership, Members, MembersWriter, cached, members};
pub use store::{Store, Writer, WriterDropped, store};

use crate::api::contract::{CREDENTIALS_SECRET_TYPE, managed_selector};
use crate::api::{Membership, Organization, Project};

/// Read handles on the caches; cheap to clone.
#[derive(Clone)]
pub struct Stores {
    pub orgs: Store<Organization>,
    pub projects: Store<Project>,
    /// Kept compact, read as Memberships (`Members`).
    pub memberships: Members,
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

/// One stream per watch of the organizations whose objects changed: a new spec, a deletion,
/// an object gone, a RoleBinding or credential record written. Status-only changes (which
/// roster itself writes) do not count.
pub struct Triggers(pub Vec<BoxStream<'static, Arc<str>>>);

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
        let whole = std::convert::identity;
        let (orgs, org_events) =
            reflected::<Organization, _, _>(Api::all(client.clone()), wc.clone(), whole, |_| {});
        let whole = std::convert::identity;
        let (projects, project_events) =
            reflected::<Project, _, _>(Api::all(client.clone()), wc.clone(), whole, |_| {});
        let mut triggers = vec![org_events, project_events];
        // The index needs the store, the store's stream needs the index: filled once both exist.
        let slot: Arc<std::sync::OnceLock<EmailIndex>> = Arc::default();
        let follow = slot.clone();
        let mut pools = Pools::default();
        let (memberships, membership_events) = reflected::<Lean<Membership>, _, _>(
            Api::all(client.clone()),
            wc,
            move |m| CachedMembership::new(m.0, &mut pools),
            move |e| {
                if let Some(ix) = follow.get() {
                    ix.apply(e);
                }
            },
        );
        let memberships = Members::new(memberships);
        let emails = EmailIndex::new(memberships.clone());
        let _ = slot.set(emails.clone());
        let (rolebindings, rb_events) = compact(
            Api::<RoleBinding>::all(client.clone()),
            managed,
            Binding::of,
        );
        triggers.extend([membership_events, rb_events]);
        let credentials = credentials_namespace.map(|ns| {
            let (store, events) = credentials(client, ns);
            triggers.push(events);
            store
        });
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
            triggers: Triggers(triggers),
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
        for t in self.triggers.0 {
            tokio::spawn(t.for_each(|_| async {}));
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
/// caches before every store has listed its objects. A single task waits on the stores in turn
/// and publishes the outcome (all in, or which watch stopped first) on one channel that any
/// number of readers wait on.
fn watch_readiness(
    orgs: &Store<Organization>,
    projects: &Store<Project>,
    memberships: &Members,
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
/// (`Credential`), and the stream of the organizations whose records changed.
pub fn credentials(client: &Client, ns: &str) -> (Store<Credential>, BoxStream<'static, Arc<str>>) {
    let wc = watcher::Config::default().fields(&format!("type={CREDENTIALS_SECRET_TYPE}"));
    let mut names = crate::pool::Pool::default();
    compact(
        Api::<Lean<Secret>>::namespaced(client.clone(), ns),
        wc,
        move |s| Credential::shared(&s.0, &mut names),
    )
}

/// An object as a cache holds it when the object itself would cost too much.
pub trait Compact: Lookup<DynamicType = ()> + Clone + Send + Sync + 'static {
    /// Moves with every change worth a reconcile.
    fn fingerprint(&self) -> u64;
    /// The organization the entry belongs to.
    fn organization(&self) -> Option<&str>;
}

/// A watch cached in a compact form (`of` each object), and the stream of the organizations
/// whose entries changed.
fn compact<K, C>(
    api: Api<K>,
    wc: watcher::Config,
    mut of: impl FnMut(K) -> C + Send + 'static,
) -> (Store<C>, BoxStream<'static, Arc<str>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    C: Compact,
{
    let (store, mut writer) = store();
    let mut changes = Changes::default();
    let events = watcher(api, wc).backoff(watch_backoff());
    let changed = organizations::<K, _>(events, move |event| {
        let event = map_event(event, &mut of);
        let changed = changes.of_compact(&event);
        writer.apply(event);
        changed
    });
    (store, changed)
}

/// The organizations each watch event concerns (`changed`), one after another. A failed watch
/// is logged, not passed on: it retries on its own (`watch_backoff`), and an error passed on
/// would put the Controller's trigger backoff on *all* trigger streams, freezing every cache for
/// up to a minute after an API server restart.
fn organizations<K, E>(
    events: impl Stream<Item = Result<E, watcher::Error>> + Send + 'static,
    mut changed: impl FnMut(E) -> Vec<Arc<str>> + Send + 'static,
) -> BoxStream<'static, Arc<str>>
where
    K: Resource<DynamicType = ()>,
{
    events
        .filter_map(move |event| {
            let out = match event {
                Ok(e) => Some(changed(e)),
                Err(e) => {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                    None
                }
            };
            std::future::ready(out)
        })
        .flat_map(futures::stream::iter)
        .boxed()
}

/// A watch event as a cache passes it on: its objects shared by the store and the indexes
/// beside it.
pub fn shared<K>(e: watcher::Event<K>) -> watcher::Event<Arc<K>> {
    map_event(e, Arc::new)
}

fn map_event<K, C>(e: watcher::Event<K>, mut of: impl FnMut(K) -> C) -> watcher::Event<C> {
    use watcher::Event as E;
    match e {
        E::Apply(k) => E::Apply(of(k)),
        E::InitApply(k) => E::InitApply(of(k)),
        E::Delete(k) => E::Delete(of(k)),
        E::Init => E::Init,
        E::InitDone => E::InitDone,
    }
}

/// Which watch events are changes worth a reconcile, and of which organizations. Kept by
/// hashes of namespace and name (strings per object would be megabytes at 20,000 members):
/// two objects sharing a key can only cost an extra reconcile, never a missed one, unless
/// their fingerprints collide as well.
///
/// A relist (after a watch expired, or an API server restart) is judged whole at its end:
/// kube's store takes the new list only then, so a reconcile started by its first page would
/// plan from the old one and, the change being marked seen, never run again. At the end, the
/// objects the relist no longer holds (deleted meanwhile; no event says so) count as changes
/// too.
#[derive(Default)]
struct Changes {
    /// Keys objects by a hash of their namespace and name, keyed per process: names are chosen
    /// by whoever may create objects, and colliding ones made offline against a fixed key
    /// could only cost reconciles, but need not be possible at all.
    seed: RandomState,
    /// Each object's fingerprint and organization, as last seen.
    seen: HashMap<u64, (u64, Arc<str>)>,
    /// One copy of each organization's name, shared by `seen`.
    names: HashSet<Arc<str>>,
    /// During a relist: the objects listed so far, and the organizations changed.
    relist: Option<(HashSet<u64>, BTreeSet<Arc<str>>)>,
}

impl Changes {
    /// The organizations to reconcile for this event. `id` gives an object's key (its
    /// namespace and name, hashed with the seed it is given), fingerprint and organization.
    fn of<T>(
        &mut self,
        event: &watcher::Event<T>,
        id: impl for<'a> Fn(&'a T, &RandomState) -> (u64, u64, Option<&'a str>),
    ) -> Vec<Arc<str>> {
        let mut changed = BTreeSet::new();
        match event {
            // A relist begun again (a page failed, no InitDone) keeps what the cut one found:
            // those objects are marked seen already.
            watcher::Event::Init => match &mut self.relist {
                Some((listed, _)) => listed.clear(),
                None => self.relist = Some(Default::default()),
            },
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let (key, fingerprint, org) = id(obj, &self.seed);
                if let Some((listed, _)) = self.relist.as_mut()
                    && matches!(event, watcher::Event::InitApply(_))
                {
                    listed.insert(key);
                }
                let org = org.map(|o| self.intern(o));
                let before = match &org {
                    Some(o) => self.seen.insert(key, (fingerprint, o.clone())),
                    None => self.seen.remove(&key),
                };
                match before {
                    Some((f, was)) if f == fingerprint && Some(&was) == org.as_ref() => {}
                    before => {
                        // An object moved to another organization (a label edited) changes both.
                        changed.extend(before.map(|(_, was)| self.release(was)));
                        changed.extend(org);
                    }
                }
            }
            watcher::Event::Delete(obj) => {
                let (key, _, org) = id(obj, &self.seed);
                let was = self.seen.remove(&key).map(|(_, was)| self.release(was));
                // Passed on, not interned: nothing holds it afterwards.
                if let Some(o) = org
                    && was.as_deref() != Some(o)
                {
                    changed.insert(Arc::from(o));
                }
                changed.extend(was);
            }
            watcher::Event::InitDone => {
                if let Some((listed, during)) = self.relist.take() {
                    changed = during;
                    self.seen.retain(|key, (_, org)| {
                        let kept = listed.contains(key);
                        if !kept {
                            changed.insert(org.clone());
                        }
                        kept
                    });
                    // Names no object holds any more (those just changed are still passed on).
                    self.names.retain(|n| Arc::strong_count(n) > 1);
                }
            }
        }
        match (&mut self.relist, event) {
            (Some((_, during)), watcher::Event::InitApply(_)) => {
                during.append(&mut changed);
                Vec::new()
            }
            _ => changed.into_iter().collect(),
        }
    }

    fn of_compact<C: Compact>(&mut self, event: &watcher::Event<C>) -> Vec<Arc<str>> {
        self.of(event, |c: &C, seed| {
            let key = seed.hash_one((c.namespace(), c.name()));
            (key, c.fingerprint(), c.organization())
        })
    }

    /// An organization name no longer held by an object: forgotten once nothing else holds it.
    fn release(&mut self, name: Arc<str>) -> Arc<str> {
        // Held here, by `names`, and by nothing else.
        if Arc::strong_count(&name) == 2 {
            self.names.remove(&name);
        }
        name
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        self.names.insert(n.clone());
        n
    }
}

fn hash_of(x: impl Hash) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

/// A reflector whose store the reconciler reads, and the stream of the organizations (the
/// objects' namespaces) to reconcile: for a new spec, a deletion, or an object gone. Status-only
/// changes (which roster itself writes) do not count.
fn reflected<K, C, F>(
    api: Api<K>,
    wc: watcher::Config,
    mut into: impl FnMut(K) -> C + Send + 'static,
    mut follow: F,
) -> (Store<C>, BoxStream<'static, Arc<str>>)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    C: Lookup + Send + Sync + 'static,
    F: FnMut(&watcher::Event<Arc<C>>) + Send + 'static,
{
    let (store, mut writer) = store();
    let mut changes = Changes::default();
    let events = watcher(api, wc)
        .backoff(watch_backoff())
        // Cache only what decisions read: managedFields and kubectl's last-applied copy of the
        // whole object are most of an object's size and no rule of roster's reads them.
        .modify(slim);
    let changed = organizations::<K, _>(events, move |e| {
        match e {
            watcher::Event::Init => tracing::debug!(kind = %K::kind(&()), "listing"),
            watcher::Event::InitDone => tracing::debug!(kind = %K::kind(&()), "listed"),
            _ => {}
        }
        take(&mut writer, &mut changes, &mut follow, &mut into, e)
    });
    (store, changed)
}

/// One watch event of a reflected kind: into the store, then to the indexes beside it (which
/// file the very objects the store holds), and only then, at a list's end, readers are told it
/// is in. The organizations it changes.
fn take<K, C>(
    writer: &mut Writer<C>,
    changes: &mut Changes,
    follow: &mut impl FnMut(&watcher::Event<Arc<C>>),
    into: &mut impl FnMut(K) -> C,
    e: watcher::Event<K>,
) -> Vec<Arc<str>>
where
    K: Resource<DynamicType = ()> + serde::Serialize,
    C: Lookup,
{
    // Judged on the whole object, before the cache keeps its compact form.
    let changed = changes.of(&e, identify);
    let e = map_event(e, |k| Arc::new(into(k)));
    writer.apply_shared(&e);
    follow(&e);
    if matches!(e, watcher::Event::InitDone) {
        writer.mark_ready();
    }
    changed
}

/// An object of roster's kinds for `Changes`: its organization is its namespace.
fn identify<'a, K: Resource + serde::Serialize>(
    obj: &'a K,
    seed: &RandomState,
) -> (u64, u64, Option<&'a str>) {
    let meta = obj.meta();
    let key = seed.hash_one((&meta.namespace, &meta.name));
    (key, trigger_fingerprint(obj), meta.namespace.as_deref())
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
pub(crate) fn trigger_fingerprint<K: Resource + serde::Serialize>(obj: &K) -> u64 {
    let meta = obj.meta();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // Another object of the same name (deleted and declared again, say while the watch was
    // down) starts again at generation 1.
    meta.uid.hash(&mut h);
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

    /// Red team of the cache store: readiness was told with the store's list swapped in and
    /// the e-mail index not yet refiled; a reader woken then found nobody at any address.
    #[test]
    fn readers_are_told_ready_only_once_the_index_has_the_list() {
        let (store, mut writer) = store::<CachedMembership>();
        let ix = EmailIndex::new(Members::new(store.clone()));
        let mut changes = Changes::default();
        let mut ready_when_followed = Vec::new();
        let mut follow = |e: &watcher::Event<Arc<CachedMembership>>| {
            ready_when_followed.push(store.is_ready());
            ix.apply(e);
        };
        let mut bob = member();
        bob.metadata.namespace = Some("acme".into());
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(bob),
            watcher::Event::InitDone,
        ] {
            take(
                &mut writer,
                &mut changes,
                &mut follow,
                &mut CachedMembership::from,
                e,
            );
        }
        assert_eq!(ready_when_followed, [false, false, false]);
        assert!(store.is_ready());
        assert_eq!(ix.get("acme", "bob@acme.example").len(), 1);
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

    fn binding(org: &str, rv: &str, users: &[&str]) -> Binding {
        use k8s_openapi::api::rbac::v1::{RoleRef, Subject};
        Binding::of(RoleBinding {
            metadata: kube::api::ObjectMeta {
                name: Some("roster-developer".into()),
                namespace: Some("acme-web".into()),
                resource_version: Some(rv.into()),
                labels: Some(
                    [(
                        crate::api::contract::ORGANIZATION_LABEL.to_string(),
                        org.to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "ClusterRole".into(),
                name: "edit".into(),
            },
            subjects: Some(
                users
                    .iter()
                    .map(|u| Subject {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "User".into(),
                        name: u.to_string(),
                        namespace: None,
                    })
                    .collect(),
            ),
        })
    }

    fn names(v: Vec<Arc<str>>) -> Vec<String> {
        v.iter().map(|o| o.to_string()).collect()
    }

    /// A store of bindings fed as the watch feeds it, and what each event passes on.
    fn watched() -> (
        Store<Binding>,
        impl FnMut(watcher::Event<Binding>) -> Vec<String>,
    ) {
        let (store, mut writer) = store::<Binding>();
        let mut changes = Changes::default();
        let feed = move |e| {
            writer.apply_watcher_event(&e);
            names(changes.of_compact(&e))
        };
        (store, feed)
    }

    #[test]
    fn a_relist_is_passed_on_once_the_store_holds_it() {
        use watcher::Event as E;
        let (store, mut feed) = watched();
        assert!(feed(E::Init).is_empty());
        assert!(feed(E::InitApply(binding("acme", "1", &["bob"]))).is_empty());
        assert_eq!(feed(E::InitDone), ["acme"]);
        // A watch outage, during which someone adds a subject; then a relist. A reconcile
        // started by its first page would read the old binding from the store, find nothing
        // to do, and (the change being marked seen) never run again.
        let drifted = binding("acme", "2", &["bob", "mallory"]);
        assert!(feed(E::Init).is_empty());
        assert!(feed(E::InitApply(drifted.clone())).is_empty());
        assert_eq!(feed(E::InitDone), ["acme"]);
        assert_eq!(
            *store.state()[0],
            drifted,
            "the store holds what was passed on"
        );
        // A relist of what is already known changes nothing.
        assert!(feed(E::Init).is_empty());
        assert!(feed(E::InitApply(drifted)).is_empty());
        assert!(feed(E::InitDone).is_empty());
    }

    #[test]
    fn an_object_gone_in_a_relist_is_a_change_of_its_organization() {
        use watcher::Event as E;
        let mut changes = Changes::default();
        let mut feed = |e: E<Binding>| names(changes.of_compact(&e));
        feed(E::Init);
        feed(E::InitApply(binding("acme", "1", &["bob"])));
        assert_eq!(feed(E::InitDone), ["acme"]);
        // Deleted during an outage: no event says so, the relist just lacks it.
        feed(E::Init);
        assert_eq!(feed(E::InitDone), ["acme"]);
        feed(E::Init);
        assert!(feed(E::InitDone).is_empty(), "passed on once");
        assert!(changes.names.is_empty(), "nothing holds the name any more");
    }

    #[test]
    fn an_object_moved_to_another_organization_is_a_change_of_both() {
        use watcher::Event as E;
        let mut changes = Changes::default();
        let mut feed = |e: E<Binding>| names(changes.of_compact(&e));
        feed(E::Init);
        feed(E::InitApply(binding("acme", "1", &["bob"])));
        feed(E::InitDone);
        // A subject added and the organization label moved in one write: the organization
        // the binding was roster's for must still be reconciled (its binding is gone from it).
        assert_eq!(
            feed(E::Apply(binding("globex", "2", &["bob", "mallory"]))),
            ["acme", "globex"]
        );
        let mut unlabelled = binding("x", "3", &["bob", "mallory"]).rolebinding();
        unlabelled.metadata.labels = None;
        let unlabelled = Binding::of(unlabelled);
        assert_eq!(feed(E::Apply(unlabelled.clone())), ["globex"]);
        assert!(feed(E::Apply(unlabelled)).is_empty());
        assert_eq!(feed(E::Delete(binding("acme", "4", &[]))), ["acme"]);
    }

    #[test]
    fn writes_and_deletions_are_changes_a_relist_of_the_same_versions_is_not() {
        use watcher::Event as E;
        let c = |rv: &str| {
            let mut s = k8s_openapi::api::core::v1::Secret::default();
            s.metadata.name = Some("c1".into());
            s.metadata.namespace = Some("roster-system".into());
            s.metadata.resource_version = Some(rv.into());
            s.metadata.labels = Some(
                [(
                    crate::api::contract::ORGANIZATION_LABEL.to_string(),
                    "acme".to_string(),
                )]
                .into(),
            );
            Credential::of(&s)
        };
        let mut changes = Changes::default();
        let mut feed = |e: E<Credential>| names(changes.of_compact(&e));
        feed(E::Init);
        feed(E::InitApply(c("1")));
        assert_eq!(feed(E::InitDone), ["acme"]);
        assert_eq!(feed(E::Apply(c("2"))), ["acme"]);
        assert!(feed(E::Apply(c("2"))).is_empty(), "seen");
        feed(E::Init);
        feed(E::InitApply(c("2")));
        assert!(feed(E::InitDone).is_empty(), "relisted, unmoved");
        feed(E::Init);
        feed(E::InitApply(c("3")));
        assert_eq!(feed(E::InitDone), ["acme"], "moved meanwhile");
        assert_eq!(feed(E::Delete(c("3"))), ["acme"]);
        assert_eq!(feed(E::Apply(c("3"))), ["acme"], "created again");
    }

    // helper-16's three (red team of 6fbe6c4), each seen failing on it.
    #[test]
    fn a_relist_cut_short_and_begun_again_still_passes_on_its_changes() {
        use watcher::Event as E;
        let (store, mut feed) = watched();
        feed(E::Init);
        feed(E::InitApply(binding("acme", "1", &["bob"])));
        assert_eq!(feed(E::InitDone), ["acme"]);
        // A relist's first page arrives, the next page's list call fails: kube's watcher
        // starts over with a new Init, no InitDone in between.
        let drifted = binding("acme", "2", &["bob", "mallory"]);
        feed(E::Init);
        assert!(feed(E::InitApply(drifted.clone())).is_empty());
        feed(E::Init);
        assert!(feed(E::InitApply(drifted.clone())).is_empty());
        let out = feed(E::InitDone);
        assert_eq!(
            *store.state()[0],
            drifted,
            "the store took the drift only now"
        );
        assert_eq!(out, ["acme"], "so acme must be reconciled now");
    }

    #[test]
    fn deleted_objects_leave_no_organization_names_behind() {
        use watcher::Event as E;
        let mut changes = Changes::default();
        changes.of_compact(&E::<Binding>::Init);
        changes.of_compact(&E::<Binding>::InitDone);
        // Anyone who may create and delete RoleBindings in some namespace can label one with
        // roster's managed-by label and any organization name.
        for i in 0..10_000 {
            let b = binding(&format!("attacker-{i:055}"), "1", &[]);
            changes.of_compact(&E::Apply(b.clone()));
            changes.of_compact(&E::Delete(b));
        }
        assert!(changes.seen.is_empty());
        assert!(
            changes.names.is_empty(),
            "{} names kept with nothing holding them",
            changes.names.len()
        );
    }

    #[test]
    fn a_member_deleted_and_declared_again_during_an_outage_is_a_change() {
        use watcher::Event as E;
        let mut old = member();
        old.metadata.namespace = Some("acme".into());
        old.metadata.uid = Some("uid-1".into());
        old.metadata.resource_version = Some("10".into());
        // spec.email is immutable: a new address is a delete and a create, at generation 1.
        let mut new = old.clone();
        new.spec.email = "robert@acme.example".into();
        new.metadata.uid = Some("uid-2".into());
        new.metadata.resource_version = Some("20".into());
        let mut changes = Changes::default();
        changes.of(&E::<Membership>::Init, identify);
        changes.of(&E::InitApply(old), identify);
        assert_eq!(
            names(changes.of(&E::<Membership>::InitDone, identify)),
            ["acme"]
        );
        changes.of(&E::<Membership>::Init, identify);
        changes.of(&E::InitApply(new), identify);
        assert_eq!(
            names(changes.of(&E::<Membership>::InitDone, identify)),
            ["acme"]
        );
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
