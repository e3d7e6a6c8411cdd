//! Memberships by organization and e-mail, kept beside the Membership cache from the same watch
//! events: the webhook and the login path ask "who holds this address here?" on every request,
//! and answering by a scan of every cached Membership cost time in proportion to the cluster's
//! size (BENCHMARKS.md).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};

use kube::runtime::watcher;

use super::members::{CachedMembership, Members};
use crate::api::Membership;

/// The Memberships filed under a hash of (namespace, lower-case e-mail). Keys are
/// hashes and nothing else is kept beside the store's own objects: with 20,000 members, string
/// keys, a map by name and a map per address cost 13 MB, more than half of what the
/// Memberships themselves take. A lookup answers with the store's object of each name filed
/// there, checked against the address asked for: a hash collision, or an entry left behind by
/// an event sequence the API server never sends, costs a comparison, never a wrong answer.
#[derive(Default)]
struct Maps {
    by_email: HashMap<u64, Vec<Arc<CachedMembership>>>,
    /// Keyed per process: addresses are chosen by whoever may invite, and colliding ones made
    /// offline against a fixed key would pile up under one entry.
    seed: RandomState,
}

/// Entries under one key are ordered by (namespace, name): a key may hold two organizations'
/// members when their hashes collide, and each must be found, replaced and removed as itself.
fn order(m: &CachedMembership) -> (&str, &str) {
    (m.namespace(), m.name())
}

impl Maps {
    fn key(&self, namespace: &str, email: &str) -> u64 {
        let mut h = self.seed.build_hasher();
        namespace.hash(&mut h);
        for b in email.bytes() {
            h.write_u8(b.to_ascii_lowercase());
        }
        h.finish()
    }

    /// Files `m` under its address, replacing the entry of the same name there (an address
    /// never changes: the CRD makes `spec.email` immutable).
    fn insert(&mut self, m: Arc<CachedMembership>) {
        let (ns, name) = order(&m);
        let k = self.key(ns, m.email());
        let set = self.by_email.entry(k).or_default();
        match set.binary_search_by(|x| order(x).cmp(&(ns, name))) {
            Ok(i) => set[i] = m,
            Err(i) => {
                set.insert(i, m);
                // One member per address, nearly always: a first insert reserves four. Only
                // then: shrinking at every insert made many members of one address (anyone
                // may declare the same one many times) cost a copy of them all each.
                if set.len() == 1 {
                    set.shrink_to_fit();
                }
            }
        }
    }

    fn remove(&mut self, m: &CachedMembership) {
        let (ns, name) = order(m);
        let k = self.key(ns, m.email());
        if let Some(set) = self.by_email.get_mut(&k) {
            set.retain(|x| order(x) != (ns, name));
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
    store: Members,
    live: Arc<RwLock<Maps>>,
}

impl EmailIndex {
    /// An index of `store`, to be told every watch event right after the store has seen it.
    pub fn new(store: Members) -> EmailIndex {
        EmailIndex {
            store,
            live: Arc::default(),
        }
    }

    /// Follows one watch event (after the store has), filing the objects the store holds.
    pub fn apply(&self, event: &watcher::Event<Arc<CachedMembership>>) {
        // Filed before the lock is taken: lookups of every organization go on meanwhile
        // (answering as the store has the members now, see `get`).
        let relisted = matches!(event, watcher::Event::InitDone).then(|| self.filed_from_store());
        let mut live = match self.live.write() {
            Ok(live) => live,
            // A thread panicked while filing: what it left half done is not to be trusted, the
            // store is. Filed anew from it, the index is whole again.
            Err(poisoned) => {
                let mut live = poisoned.into_inner();
                *live = self.filed_from_store();
                self.live.clear_poison();
                live
            }
        };
        match event {
            // A relist fills the store's buffer, swapped in at its end: so is the index.
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
            watcher::Event::InitDone => *live = relisted.unwrap_or_default(),
            watcher::Event::Apply(m) => live.insert(m.clone()),
            watcher::Event::Delete(m) => live.remove(m),
        }
    }

    /// Every member of the store filed at once: each address's entries sorted once at the
    /// end, not kept sorted entry by entry (quadratic for one address declared many times).
    fn filed_from_store(&self) -> Maps {
        let mut fresh = Maps::default();
        for m in self.store.cached().state() {
            let k = fresh.key(m.namespace(), m.email());
            fresh.by_email.entry(k).or_default().push(m);
        }
        for set in fresh.by_email.values_mut() {
            set.sort_unstable_by(|a, b| order(a).cmp(&order(b)));
            set.shrink_to_fit();
        }
        fresh.by_email.shrink_to_fit();
        fresh
    }

    /// Memberships in `namespace` whose e-mail is `email` (compared without case), by name.
    pub fn get(&self, namespace: &str, email: &str) -> Vec<Arc<Membership>> {
        let matches = |m: &CachedMembership| {
            m.namespace() == namespace && m.email().eq_ignore_ascii_case(email)
        };
        let live = match self.live.read() {
            Ok(live) => live,
            // Half-filed by a thread that panicked: answering nobody would let the webhook's
            // one-owner and unique-address rules pass, so the store answers, by a scan.
            Err(_) => {
                let mut all: Vec<_> = self
                    .store
                    .cached()
                    .state()
                    .into_iter()
                    .filter(|m| matches(m))
                    .collect();
                all.sort_by(|a, b| order(a).cmp(&order(b)));
                return all.iter().map(|m| Arc::new(m.full())).collect();
            }
        };
        let Some(set) = live.by_email.get(&live.key(namespace, email)) else {
            return vec![];
        };
        // The store's object of each name filed here, as it is now: the freshest version even
        // while this index is a step behind the store. Entries of another namespace under the
        // same key (a collision) are not this organization's.
        set.iter()
            .filter(|m| m.namespace() == namespace)
            .filter_map(|m| {
                let now = self.store.cached().get(namespace, m.name())?;
                matches(&now).then(|| Arc::new(now.full()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CachedMembership, cached};
    use crate::fixtures::{Rng, member};

    /// A watch event about one of `names` in acme or beta, of x@ or y@e.example in either case.
    pub(super) fn random_event(rng: &mut Rng, names: &[&str]) -> watcher::Event<Membership> {
        let pick = |rng: &mut Rng, options: &[&str]| options[rng.below(options.len())].to_string();
        let obj = m(
            &pick(rng, &["acme", "beta"]),
            &pick(rng, names),
            &pick(rng, &["x@e.example", "y@e.example", "X@E.example"]),
        );
        match rng.below(10) {
            0 => watcher::Event::Init,
            1 => watcher::Event::InitDone,
            2 | 3 => watcher::Event::InitApply(obj),
            4 | 5 => watcher::Event::Delete(obj),
            _ => watcher::Event::Apply(obj),
        }
    }

    /// What a scan of the store answers for (ns, email), by name.
    pub(super) fn scan(store: &Members, ns: &str, email: &str) -> Vec<String> {
        let mut v: Vec<String> = store
            .state_filter(|_| true)
            .iter()
            .filter(|m| {
                m.metadata.namespace.as_deref() == Some(ns)
                    && m.spec.email.eq_ignore_ascii_case(email)
            })
            .filter_map(|m| m.metadata.name.clone())
            .collect();
        v.sort();
        v
    }

    pub(super) fn m(ns: &str, name: &str, email: &str) -> Membership {
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
        writer: crate::cache::Writer<CachedMembership>,
        ix: EmailIndex,
    }

    impl Both {
        fn new() -> Both {
            let (store, writer) = crate::cache::store::<CachedMembership>();
            Both {
                writer,
                ix: EmailIndex::new(Members::new(store)),
            }
        }

        fn apply(&mut self, e: watcher::Event<Membership>) {
            let e = cached(e);
            self.writer.apply_shared(&e);
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
        let stored = b.ix.store.cached().get("acme", "bob").expect("stored");
        {
            let live = b.ix.live.read().expect("not poisoned");
            let filed = &live.by_email[&live.key("acme", "bob@acme.example")];
            assert!(filed.iter().any(|f| Arc::ptr_eq(f, &stored)));
        }
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
        let e = cached(watcher::Event::Apply(newer));
        b.writer.apply_shared(&e);
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
            b.writer.apply_shared(&cached(e));
        }
        let found = b.ix.get("acme", "bob@acme.example");
        assert_eq!(names(found.clone()), ["bob"]);
        assert!(!found[0].spec.disabled);
        // Gone from the store: gone from every answer, told or not.
        b.writer.apply_shared(&cached(watcher::Event::Delete(m(
            "acme",
            "bob",
            "bob@acme.example",
        ))));
        assert!(b.ix.get("acme", "bob@acme.example").is_empty());
    }

    /// Two organizations' addresses filed under one key (a hash collision, forced here): each
    /// lookup answers only its own organization's member, once.
    #[test]
    fn a_collision_across_organizations_answers_each_member_once() {
        let mut b = Both::new();
        b.apply(watcher::Event::Apply(m("acme", "bob", "bob@acme.example")));
        b.apply(watcher::Event::Apply(m("beta", "bob", "bob@beta.example")));
        let beta = b.ix.store.cached().get("beta", "bob").expect("stored");
        {
            let mut live = b.ix.live.write().expect("not poisoned");
            let k = live.key("acme", "bob@acme.example");
            live.by_email.entry(k).or_default().push(beta.clone());
        }
        assert_eq!(names(b.ix.get("acme", "bob@acme.example")), ["bob"]);
        // Filing under a key that already holds another organization's same-named member
        // replaces only its own entry.
        let mut maps = Maps::default();
        maps.insert(beta.clone());
        let k = maps.key("beta", "bob@beta.example");
        let acme = Arc::new(CachedMembership::from(m("acme", "bob", "bob@acme.example")));
        maps.by_email.entry(k).or_default().push(acme.clone());
        maps.by_email
            .get_mut(&k)
            .expect("filed")
            .sort_by(|x, y| order(x).cmp(&order(y)));
        maps.insert(beta.clone());
        maps.insert(acme);
        assert_eq!(maps.by_email[&k].len(), 2, "one entry per member");
    }

    /// A thread that panicked while holding the index's lock must not leave lookups answering
    /// nobody: the webhook's one-owner and unique-address rules read this index.
    #[test]
    fn a_poisoned_index_still_answers() {
        let mut b = Both::new();
        b.apply(watcher::Event::Apply(m(
            "acme",
            "alice",
            "alice@acme.example",
        )));
        let ix = b.ix.clone();
        let _ = std::thread::spawn(move || {
            let _held = ix.live.write();
            panic!("poisoning the index on purpose");
        })
        .join();
        assert!(b.ix.live.is_poisoned());
        assert_eq!(names(b.ix.get("acme", "alice@acme.example")), ["alice"]);
        // Events still reach it, and it heals.
        b.apply(watcher::Event::Apply(m(
            "acme",
            "carl",
            "carl@acme.example",
        )));
        assert_eq!(names(b.ix.get("acme", "carl@acme.example")), ["carl"]);
        assert!(!b.ix.live.is_poisoned());
    }

    /// Property: after any sequence of watch events, the index answers exactly what a scan of
    /// the reflector's store answers.
    #[test]
    fn the_index_always_agrees_with_a_scan_of_the_store() {
        let (cases, seed) = crate::fixtures::fuzz_budget(300);
        let mut rng = Rng::new(seed);
        for _ in 0..cases {
            let mut b = Both::new();
            for _ in 0..40 {
                let event = random_event(&mut rng, &["a", "b", "c", "d"]);
                b.apply(event);
            }
            for ns in ["acme", "beta"] {
                for email in ["x@e.example", "y@e.example"] {
                    assert_eq!(
                        names(b.ix.get(ns, email)),
                        scan(&b.ix.store, ns, email),
                        "seed {seed}: {ns} {email}"
                    );
                }
            }
        }
    }
}

/// Probes of the e-mail index by the red team of its hash keys and poisoned lock.
#[cfg(test)]
mod probe_tests {
    use super::tests::{m, random_event, scan};
    use super::*;
    use crate::cache::{CachedMembership, cached};
    use crate::fixtures::Rng;

    fn poison(ix: &EmailIndex) {
        let ix = ix.clone();
        let _ = std::thread::spawn(move || {
            let _held = ix.live.write();
            panic!("poisoning the index on purpose");
        })
        .join();
    }

    /// Any sequence of watch events, poisonings (also in the middle of a relist) and lookups
    /// made between the store's update and the index's: every lookup answers what a scan of
    /// the store answers, of the organization asked only, each member once.
    #[test]
    fn the_index_agrees_with_the_store_through_poisonings_and_relists() {
        let (cases, seed) = crate::fixtures::fuzz_budget(200);
        let mut rng = Rng::new(seed ^ 0x5eed);
        for case in 0..cases {
            let (store, mut writer) = crate::cache::store::<CachedMembership>();
            let store = Members::new(store);
            let ix = EmailIndex::new(store.clone());
            for step in 0..60 {
                if rng.chance(10) {
                    poison(&ix);
                }
                let event = cached(random_event(&mut rng, &["a", "b", "c", "d", "e"]));
                writer.apply_shared(&event);
                // Half the time the lookups come between the store and the index.
                let between = rng.chance(50);
                if !between {
                    ix.apply(&event);
                }
                for ns in ["acme", "beta"] {
                    for email in ["x@e.example", "y@e.example"] {
                        let got: Vec<String> = ix
                            .get(ns, email)
                            .iter()
                            .inspect(|m| {
                                assert_eq!(m.metadata.namespace.as_deref(), Some(ns));
                            })
                            .filter_map(|m| m.metadata.name.clone())
                            .collect();
                        let want = scan(&store, ns, email);
                        // Between store and index a member the index has never been told of
                        // may be missing (a create, or a relist's newcomer, not filed yet:
                        // the same poll files it microseconds later); nobody else may be.
                        if between
                            && matches!(event, watcher::Event::Apply(_) | watcher::Event::InitDone)
                        {
                            let mut g = got.clone();
                            g.dedup();
                            assert_eq!(g, got, "case {case} step {step}: twice");
                            assert!(
                                got.iter().all(|n| want.contains(n)),
                                "case {case} step {step} (seed {seed}): {ns} {email}: {got:?} vs {want:?}"
                            );
                        } else {
                            assert_eq!(
                                got, want,
                                "case {case} step {step} (seed {seed}): {ns} {email}"
                            );
                        }
                    }
                }
                if between {
                    ix.apply(&event);
                }
            }
        }
    }

    /// Entries under one key, of two organizations and many names (the same address declared
    /// by several Memberships files them under one key; the other organization's are placed
    /// there as a collision would): filing and removing keeps one entry per member, sorted,
    /// and never touches the other organization's.
    #[test]
    fn one_key_many_names_two_organizations() {
        let mut rng = Rng::new(7);
        let mut maps = Maps::default();
        let k = maps.key("acme", "x@e.example");
        let beta: Vec<Arc<CachedMembership>> = ["a", "c", "e", "zz"]
            .iter()
            .map(|n| Arc::new(CachedMembership::from(m("beta", n, "q@beta.example"))))
            .collect();
        maps.by_email
            .entry(k)
            .or_default()
            .extend(beta.iter().cloned());
        let mut filed = std::collections::BTreeSet::new();
        let names = ["a", "b", "c", "d", "e", "f", "g", "zz", "0", "A"];
        for _ in 0..5000 {
            let n = names[rng.below(names.len())];
            let x = m("acme", n, "x@e.example");
            if rng.chance(60) {
                maps.insert(Arc::new(CachedMembership::from(x)));
                filed.insert(n.to_string());
            } else {
                maps.remove(&CachedMembership::from(x));
                filed.remove(n);
            }
            let set = maps.by_email.get(&k).expect("beta's entries keep the key");
            let acme: Vec<String> = set
                .iter()
                .filter(|e| e.namespace() == "acme")
                .map(|e| e.name().to_string())
                .collect();
            assert_eq!(acme, filed.iter().cloned().collect::<Vec<_>>());
            let betas = set.iter().filter(|e| e.namespace() == "beta").count();
            assert_eq!(betas, beta.len());
            assert!(
                set.windows(2).all(|w| order(&w[0]) < order(&w[1])),
                "sorted"
            );
        }
    }
}
