//! Memberships by organization and e-mail, kept beside the Membership cache from the same watch
//! events: the webhook and the login path ask "who holds this address here?" on every request,
//! and answering by a scan of every cached Membership cost time in proportion to the cluster's
//! size (BENCHMARKS.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::api::Membership;

type Key = (String, String);

#[derive(Default)]
struct Maps {
    /// (namespace, lower-case e-mail) → Memberships by name.
    by_email: HashMap<Key, BTreeMap<String, Arc<Membership>>>,
    /// (namespace, name) → the key it is filed under (an e-mail could change).
    by_name: HashMap<Key, Key>,
}

impl Maps {
    fn remove(&mut self, ns: &str, name: &str) {
        if let Some(key) = self.by_name.remove(&(ns.to_string(), name.to_string()))
            && let Some(set) = self.by_email.get_mut(&key)
        {
            set.remove(name);
            if set.is_empty() {
                self.by_email.remove(&key);
            }
        }
    }

    fn insert(&mut self, m: Arc<Membership>) {
        let (Some(ns), Some(name)) = (m.metadata.namespace.clone(), m.metadata.name.clone()) else {
            return;
        };
        self.remove(&ns, &name);
        let key = (ns.clone(), m.spec.email.to_ascii_lowercase());
        self.by_name.insert((ns, name.clone()), key.clone());
        self.by_email.entry(key).or_default().insert(name, m);
    }
}

/// Cheap to clone; every clone reads the same index. It holds the store's own objects (the
/// same allocations), not copies.
#[derive(Clone)]
pub struct EmailIndex {
    store: Store<Membership>,
    live: Arc<RwLock<Maps>>,
}

impl EmailIndex {
    /// An index of `store`, to be told every watch event right after the store has seen it.
    pub fn new(store: Store<Membership>) -> EmailIndex {
        EmailIndex {
            store,
            live: Arc::default(),
        }
    }

    /// Follows one watch event (after the store has).
    pub fn apply(&self, event: &watcher::Event<Membership>) {
        let Ok(mut live) = self.live.write() else {
            return;
        };
        match event {
            // A relist fills the store's buffer, swapped in at its end: so is the index.
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => {
                let mut fresh = Maps::default();
                for m in self.store.state() {
                    fresh.insert(m);
                }
                *live = fresh;
            }
            watcher::Event::Apply(m) => {
                let shared = self
                    .store
                    .get(&ObjectRef::from_obj(m))
                    .unwrap_or_else(|| Arc::new(m.clone()));
                live.insert(shared);
            }
            watcher::Event::Delete(m) => {
                if let (Some(ns), Some(name)) =
                    (m.metadata.namespace.as_deref(), m.metadata.name.as_deref())
                {
                    live.remove(ns, name);
                }
            }
        }
    }

    /// Memberships in `namespace` whose e-mail is `email` (compared without case), by name.
    pub fn get(&self, namespace: &str, email: &str) -> Vec<Arc<Membership>> {
        self.live
            .read()
            .ok()
            .and_then(|l| {
                l.by_email
                    .get(&(namespace.to_string(), email.to_ascii_lowercase()))
                    .map(|set| set.values().cloned().collect())
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{Rng, member};
    use kube::runtime::reflector;

    fn m(ns: &str, name: &str, email: &str) -> Membership {
        let mut x = member(name, None, &[]);
        x.metadata.namespace = Some(ns.into());
        x.spec.email = email.into();
        x
    }

    fn names(v: Vec<Arc<Membership>>) -> Vec<String> {
        v.iter().filter_map(|m| m.metadata.name.clone()).collect()
    }

    /// A store and its index, told every event in the order the watch stream tells them.
    struct Both {
        writer: reflector::store::Writer<Membership>,
        ix: EmailIndex,
    }

    impl Both {
        fn new() -> Both {
            let (store, writer) = reflector::store::<Membership>();
            Both {
                writer,
                ix: EmailIndex::new(store),
            }
        }

        fn apply(&mut self, e: watcher::Event<Membership>) {
            self.writer.apply_watcher_event(&e);
            self.ix.apply(&e);
        }
    }

    #[test]
    fn lookups_follow_applies_deletes_and_relists() {
        let mut b = Both::new();
        b.apply(watcher::Event::Apply(m("acme", "bob", "bob@acme.example")));
        b.apply(watcher::Event::Apply(m("acme", "bob2", "Bob@Acme.example")));
        b.apply(watcher::Event::Apply(m("beta", "bob", "bob@acme.example")));
        assert_eq!(names(b.ix.get("acme", "BOB@acme.example")), ["bob", "bob2"]);
        assert_eq!(names(b.ix.get("beta", "bob@acme.example")), ["bob"]);
        // The index holds the store's own objects, not copies.
        let stored =
            b.ix.store
                .get(&ObjectRef::new("bob").within("acme"))
                .expect("stored");
        assert!(Arc::ptr_eq(
            &stored,
            &b.ix.get("acme", "bob@acme.example")[0]
        ));
        // A changed address is filed anew, not twice.
        b.apply(watcher::Event::Apply(m(
            "acme",
            "bob2",
            "robert@acme.example",
        )));
        assert_eq!(names(b.ix.get("acme", "bob@acme.example")), ["bob"]);
        assert_eq!(names(b.ix.get("acme", "robert@acme.example")), ["bob2"]);
        b.apply(watcher::Event::Delete(m("acme", "bob", "bob@acme.example")));
        assert!(b.ix.get("acme", "bob@acme.example").is_empty());
        // A relist replaces everything at its end, not before.
        b.apply(watcher::Event::Init);
        b.apply(watcher::Event::InitApply(m(
            "acme",
            "carl",
            "carl@acme.example",
        )));
        assert_eq!(names(b.ix.get("acme", "robert@acme.example")), ["bob2"]);
        b.apply(watcher::Event::InitDone);
        assert!(b.ix.get("acme", "robert@acme.example").is_empty());
        assert_eq!(names(b.ix.get("acme", "carl@acme.example")), ["carl"]);
    }

    /// Property: after any sequence of watch events, the index answers exactly what a scan of
    /// the reflector's store answers.
    #[test]
    fn the_index_always_agrees_with_a_scan_of_the_store() {
        let (cases, seed) = crate::fixtures::fuzz_budget(300);
        let mut rng = Rng::new(seed);
        for _ in 0..cases {
            let mut b = Both::new();
            let pick = |rng: &mut Rng, options: &[&'static str]| options[rng.below(options.len())];
            for _ in 0..40 {
                let obj = m(
                    pick(&mut rng, &["acme", "beta"]),
                    pick(&mut rng, &["a", "b", "c", "d"]),
                    pick(&mut rng, &["x@e.example", "y@e.example", "X@e.example"]),
                );
                let event = match rng.below(10) {
                    0 => watcher::Event::Init,
                    1 => watcher::Event::InitDone,
                    2 | 3 => watcher::Event::InitApply(obj),
                    4 | 5 => watcher::Event::Delete(obj),
                    _ => watcher::Event::Apply(obj),
                };
                b.apply(event);
            }
            for ns in ["acme", "beta"] {
                for email in ["x@e.example", "y@e.example"] {
                    let mut scanned: Vec<String> =
                        b.ix.store
                            .state()
                            .iter()
                            .filter(|m| {
                                m.metadata.namespace.as_deref() == Some(ns)
                                    && m.spec.email.eq_ignore_ascii_case(email)
                            })
                            .filter_map(|m| m.metadata.name.clone())
                            .collect();
                    scanned.sort();
                    assert_eq!(
                        names(b.ix.get(ns, email)),
                        scanned,
                        "seed {seed}: {ns} {email}"
                    );
                }
            }
        }
    }
}
