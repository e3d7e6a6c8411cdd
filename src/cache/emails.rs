//! Memberships by organization and e-mail, kept beside the Membership cache from the same watch
//! events: the webhook and the login path ask "who holds this address here?" on every request,
//! and answering by a scan of every cached Membership cost time in proportion to the cluster's
//! size (BENCHMARKS.md).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::api::Membership;

/// The Memberships filed under a hash of (namespace, lower-case e-mail), by name. Keys are
/// hashes and nothing else is kept beside the store's own objects: with 20,000 members, string
/// keys, a map by name and a map per address cost 13 MB, more than half of what the
/// Memberships themselves take. A lookup answers with the store's object of each name filed
/// there, checked against the address asked for: a hash collision, or an entry left behind by
/// an event sequence the API server never sends, costs a comparison, never a wrong answer.
#[derive(Default)]
struct Maps {
    by_email: HashMap<u64, Vec<Arc<Membership>>>,
}

fn key(namespace: &str, email: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    namespace.hash(&mut h);
    for b in email.bytes() {
        h.write_u8(b.to_ascii_lowercase());
    }
    h.finish()
}

fn same(m: &Membership, namespace: &str, name: &str) -> bool {
    m.metadata.namespace.as_deref() == Some(namespace) && m.metadata.name.as_deref() == Some(name)
}

impl Maps {
    /// Files `m` under its address, replacing the entry of the same name there (an address
    /// never changes: the CRD makes `spec.email` immutable).
    fn insert(&mut self, m: Arc<Membership>) {
        let (Some(ns), Some(name)) = (m.metadata.namespace.as_deref(), m.metadata.name.as_deref())
        else {
            return;
        };
        let set = self.by_email.entry(key(ns, &m.spec.email)).or_default();
        match set.binary_search_by(|x| x.metadata.name.as_deref().cmp(&Some(name))) {
            Ok(i) if same(&set[i], ns, name) => set[i] = m,
            Ok(i) | Err(i) => set.insert(i, m),
        }
    }

    fn remove(&mut self, m: &Membership) {
        let (Some(ns), Some(name)) = (m.metadata.namespace.as_deref(), m.metadata.name.as_deref())
        else {
            return;
        };
        let k = key(ns, &m.spec.email);
        if let Some(set) = self.by_email.get_mut(&k) {
            set.retain(|x| !same(x, ns, name));
            if set.is_empty() {
                self.by_email.remove(&k);
            }
        }
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
                fresh.by_email.shrink_to_fit();
                *live = fresh;
            }
            watcher::Event::Apply(m) => {
                let shared = self
                    .store
                    .get(&ObjectRef::from_obj(m))
                    .unwrap_or_else(|| Arc::new(m.clone()));
                live.insert(shared);
            }
            watcher::Event::Delete(m) => live.remove(m),
        }
    }

    /// Memberships in `namespace` whose e-mail is `email` (compared without case), by name.
    pub fn get(&self, namespace: &str, email: &str) -> Vec<Arc<Membership>> {
        let Ok(live) = self.live.read() else {
            return vec![];
        };
        live.by_email
            .get(&key(namespace, email))
            .map(|set| {
                // The store's object of each name filed here, as it is now: the freshest
                // version even while this index is a step behind the store.
                set.iter()
                    .filter_map(|m| {
                        let now = self
                            .store
                            .get(&ObjectRef::new(m.metadata.name.as_deref()?).within(namespace))?;
                        (now.metadata.namespace.as_deref() == Some(namespace)
                            && now.spec.email.eq_ignore_ascii_case(email))
                        .then_some(now)
                    })
                    .collect()
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

    /// The index is told each event just after the store: in between (and during a relist's
    /// swap) a lookup must still find the member, as the store has them now.
    #[test]
    fn a_lookup_between_store_and_index_answers_from_the_store() {
        let mut b = Both::new();
        b.apply(watcher::Event::Apply(m("acme", "bob", "bob@acme.example")));
        let mut newer = m("acme", "bob", "bob@acme.example");
        newer.spec.disabled = true;
        let e = watcher::Event::Apply(newer);
        b.writer.apply_watcher_event(&e);
        let found = b.ix.get("acme", "bob@acme.example");
        assert_eq!(names(found.clone()), ["bob"]);
        assert!(
            found[0].spec.disabled,
            "the store's version, not the index's"
        );
        b.ix.apply(&e);
        // A relist whose store swap the index has not seen yet.
        for e in [
            watcher::Event::Init,
            watcher::Event::InitApply(m("acme", "bob", "bob@acme.example")),
            watcher::Event::InitDone,
        ] {
            b.writer.apply_watcher_event(&e);
        }
        let found = b.ix.get("acme", "bob@acme.example");
        assert_eq!(names(found.clone()), ["bob"]);
        assert!(!found[0].spec.disabled);
        // Gone from the store: gone from every answer, told or not.
        b.writer.apply_watcher_event(&watcher::Event::Delete(m(
            "acme",
            "bob",
            "bob@acme.example",
        )));
        assert!(b.ix.get("acme", "bob@acme.example").is_empty());
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
