//! The store each cache keeps its objects in: what kube's reflector store does (a relist is
//! taken whole at its end, readers wait until the first list is in), without a key beside each
//! object. kube keys its store by an `ObjectRef`, four strings copied from the object (name,
//! namespace, resourceVersion, uid): about 220 B an object, 9 MB for 20,000 Memberships and
//! their credential records. Here the table holds the objects alone, found by a hash of their
//! namespace and name and compared by the names they carry.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::HashTable;
use kube::runtime::reflector::Lookup;
use kube::runtime::watcher;
use tokio::sync::watch;

/// Read handle on a cache; cheap to clone, every clone reads the same objects.
pub struct Store<K> {
    shared: Arc<Shared<K>>,
    ready: watch::Receiver<bool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            shared: self.shared.clone(),
            ready: self.ready.clone(),
        }
    }
}

/// The only writer of a `Store`: fed the watch's events in order.
pub struct Writer<K> {
    shared: Arc<Shared<K>>,
    /// A relist under way: taken as the store's content at its end.
    buffer: HashTable<Arc<K>>,
    ready: watch::Sender<bool>,
}

/// The writer was dropped (its watch ended) before the first list was in.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the cache's writer stopped before its first list")]
pub struct WriterDropped;

struct Shared<K> {
    objects: RwLock<HashTable<Arc<K>>>,
    /// Keyed per process: names are chosen by whoever may create objects.
    seed: RandomState,
}

/// An empty store and its writer.
pub fn store<K>() -> (Store<K>, Writer<K>) {
    let writer = Writer::default();
    (writer.as_reader(), writer)
}

impl<K> Default for Writer<K> {
    fn default() -> Self {
        Writer {
            shared: Arc::new(Shared {
                objects: RwLock::new(HashTable::new()),
                seed: RandomState::new(),
            }),
            buffer: HashTable::new(),
            ready: watch::Sender::new(false),
        }
    }
}

impl<K> Writer<K> {
    /// A read handle on this writer's store.
    pub fn as_reader(&self) -> Store<K> {
        Store {
            shared: self.shared.clone(),
            ready: self.ready.subscribe(),
        }
    }
}

/// Whether `obj` is the object named `name` in `namespace`. `Lookup` for API objects and
/// for roster's compact entries borrows the object's own fields: nothing is copied.
fn is<K: Lookup>(obj: &K, namespace: Option<&str>, name: &str) -> bool {
    obj.namespace().as_deref() == namespace && obj.name().as_deref().unwrap_or_default() == name
}

impl<K: Lookup> Shared<K> {
    fn hash(&self, namespace: Option<&str>, name: &str) -> u64 {
        self.seed.hash_one((namespace, name))
    }

    fn hash_of(&self, obj: &K) -> u64 {
        self.hash(
            obj.namespace().as_deref(),
            obj.name().as_deref().unwrap_or_default(),
        )
    }

    fn insert(&self, table: &mut HashTable<Arc<K>>, obj: Arc<K>) {
        let hash = self.hash_of(&obj);
        let (ns, name) = (obj.namespace(), obj.name());
        let (ns, name) = (ns.as_deref(), name.as_deref().unwrap_or_default());
        match table.find_mut(hash, |o| is(o.as_ref(), ns, name)) {
            Some(slot) => *slot = obj.clone(),
            None => {
                table.insert_unique(hash, obj.clone(), |o| self.hash_of(o));
            }
        }
    }
}

impl<K: Lookup> Store<K> {
    /// The object named `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let hash = self.shared.hash(Some(namespace), name);
        let objects = self
            .shared
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        objects
            .find(hash, |o| is(o.as_ref(), Some(namespace), name))
            .cloned()
    }

    /// Every object, in no particular order.
    pub fn state(&self) -> Vec<Arc<K>> {
        let objects = self
            .shared
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        objects.iter().cloned().collect()
    }

    /// The objects `keep` accepts, in no particular order.
    pub fn state_filter(&self, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        let objects = self
            .shared
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        objects.iter().filter(|o| keep(o)).cloned().collect()
    }

    /// Whether the first list is in.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the first list is in.
    pub async fn wait_until_ready(&self) -> Result<(), WriterDropped> {
        let mut rx = self.ready.clone();
        rx.wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| WriterDropped)
    }
}

impl<K: Lookup + Clone> Writer<K> {
    /// Takes one watch event, its objects copied (tests and benchmarks; the caches hand
    /// theirs over: `apply`).
    pub fn apply_watcher_event(&mut self, event: &watcher::Event<K>) {
        self.apply(event.clone());
    }
}

impl<K: Lookup> Writer<K> {
    /// Takes one watch event's objects as they are. kube's reflector stores a copy of each
    /// object and drops the original: every long-lived object was allocated beside a
    /// short-lived twin, and the holes the twins left kept pages resident.
    /// Ready once the first list is in.
    pub fn apply(&mut self, event: watcher::Event<K>) {
        let listed = matches!(event, watcher::Event::InitDone);
        self.apply_shared(&super::map_event(event, Arc::new));
        if listed {
            self.mark_ready();
        }
    }

    /// Takes one watch event, as kube's reflector does: a relist's objects become the store's
    /// content at its end (`InitDone`). The store holds the event's own objects (whoever else
    /// holds them shares them). It is not marked ready here: indexes beside it see the list
    /// first (`mark_ready`).
    pub fn apply_shared(&mut self, event: &watcher::Event<Arc<K>>) {
        let shared = &*self.shared;
        let write = || {
            shared
                .objects
                .write()
                .unwrap_or_else(PoisonError::into_inner)
        };
        match event {
            watcher::Event::Apply(obj) => shared.insert(&mut write(), obj.clone()),
            watcher::Event::Delete(obj) => {
                let (ns, name) = (obj.namespace(), obj.name());
                let (ns, name) = (ns.as_deref(), name.as_deref().unwrap_or_default());
                let hash = shared.hash(ns, name);
                if let Ok(entry) = write().find_entry(hash, |o| is(o.as_ref(), ns, name)) {
                    entry.remove();
                }
            }
            watcher::Event::Init => self.buffer = HashTable::new(),
            watcher::Event::InitApply(obj) => shared.insert(&mut self.buffer, obj.clone()),
            watcher::Event::InitDone => {
                let mut listed = std::mem::take(&mut self.buffer);
                listed.shrink_to_fit(|o| shared.hash_of(o));
                *write() = listed;
            }
        }
    }

    /// Tells readers the first list is in. Readers must not be told before everything that
    /// answers beside the store (the e-mail index) has it too: an index answering "nobody"
    /// would let the webhook's one-owner and unique-address rules pass.
    pub fn mark_ready(&mut self) {
        self.ready.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Organization;

    fn org(ns: &str, name: &str, owner: &str) -> Organization {
        let mut o = crate::fixtures::org(owner);
        o.metadata.name = Some(name.into());
        o.metadata.namespace = Some(ns.into());
        o
    }

    fn owners(s: &Store<Organization>) -> Vec<String> {
        let mut v: Vec<String> = s.state().iter().map(|o| o.spec.owner.clone()).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_store_is_read_by_namespace_and_name_and_takes_a_relist_whole_at_its_end() {
        use watcher::Event as E;
        let (s, mut w) = store::<Organization>();
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.wait_until_ready().await })
        };
        w.apply_watcher_event(&E::Init);
        w.apply_watcher_event(&E::InitApply(org("acme", "acme", "a@x")));
        w.apply_watcher_event(&E::InitApply(org("beta", "acme", "b@x")));
        // Not in before the list ends, and not ready.
        assert!(s.get("acme", "acme").is_none());
        assert!(!waiting.is_finished());
        w.apply_watcher_event(&E::InitDone);
        waiting.await.expect("task").expect("ready");
        // Same name, other namespace: two objects, each found as itself.
        assert_eq!(s.get("acme", "acme").expect("acme").spec.owner, "a@x");
        assert_eq!(s.get("beta", "acme").expect("beta").spec.owner, "b@x");
        assert!(s.get("acme", "beta").is_none());
        // An update replaces, a delete removes, only the object named.
        w.apply_watcher_event(&E::Apply(org("acme", "acme", "c@x")));
        assert_eq!(owners(&s), ["b@x", "c@x"]);
        w.apply_watcher_event(&E::Delete(org("beta", "acme", "")));
        assert_eq!(owners(&s), ["c@x"]);
        // A relist: the old content is read until it ends, then only what it listed.
        w.apply_watcher_event(&E::Init);
        w.apply_watcher_event(&E::InitApply(org("gamma", "gamma", "g@x")));
        assert_eq!(owners(&s), ["c@x"]);
        // A relist begun again (a page failed) drops what the cut one had buffered.
        w.apply_watcher_event(&E::Init);
        w.apply_watcher_event(&E::InitApply(org("delta", "delta", "d@x")));
        w.apply_watcher_event(&E::InitDone);
        assert_eq!(owners(&s), ["d@x"]);
        assert!(s.get("acme", "acme").is_none());
        // Ready stays ready once the writer is gone.
        drop(w);
        s.wait_until_ready().await.expect("still ready");
    }

    #[tokio::test]
    async fn a_store_whose_writer_stopped_before_listing_is_never_ready() {
        let (s, w) = store::<Organization>();
        drop(w);
        assert!(s.wait_until_ready().await.is_err());
        assert!(s.state().is_empty());
    }

    #[test]
    fn many_objects_are_each_found_as_themselves() {
        let (s, mut w) = store::<Organization>();
        for i in 0..2000 {
            let (ns, name) = (format!("o{}", i % 7), format!("n{i}"));
            w.apply_watcher_event(&watcher::Event::Apply(org(&ns, &name, &name)));
        }
        for i in 0..2000 {
            let (ns, name) = (format!("o{}", i % 7), format!("n{i}"));
            assert_eq!(s.get(&ns, &name).expect("found").spec.owner, name);
            assert!(s.get(&format!("o{}", (i + 1) % 7), &name).is_none());
        }
        assert_eq!(s.state().len(), 2000);
    }
}
