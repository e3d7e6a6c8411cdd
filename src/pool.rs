//! One copy of each value many cached entries carry. 20,000 cached members of two projects
//! each carried 140,000 copies of a few hundred names (their organization's, their projects'
//! and the projects' namespaces), and members given the same projects and roles, or converged
//! in the same second, carry equal grants, access lists and condition times.
//!
//! Values are chosen by whoever may create objects, so a pool cannot grow without bound: the
//! values no entry holds any more are dropped whenever the bytes the pool holds have doubled
//! since the last time. Counted in bytes, not values, and with the names a list holds
//! (`Weigh`): counted in values, one Membership rewritten again and again with hundreds of
//! long project names left hundreds of times its own size behind (red team 30). Deletions and
//! edits that bring nothing new add no bytes, so the pool is also scanned after every so many
//! lookups (four per value it holds): what they freed goes at the next activity, not at the
//! next growth (red team 31).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// What a pooled value keeps alive: its own bytes and those of the names it holds (a dead
/// list of grants keeps its names). A name shared by many lists counts once per list, so live
/// lists weigh more than they take and leave room for as much dead weight: at most about the
/// stored objects' size as JSON, never growing with edits (red team 31).
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl Weigh for str {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl<T: Weigh> Weigh for [T] {
    fn weight(&self) -> usize {
        self.iter().map(Weigh::weight).sum()
    }
}

/// The values one cache's entries share. Owned by the cache's writer: no lock, no global.
#[derive(Debug)]
pub struct Pool<T: ?Sized> {
    set: HashSet<Arc<T>>,
    /// What the values keep alive, with their counts and slots (`cost`).
    bytes: usize,
    /// The size at which values no entry holds are dropped.
    prune_at: usize,
    /// Lookups since the last scan.
    lookups: usize,
}

impl<T: ?Sized> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            set: HashSet::new(),
            bytes: 0,
            prune_at: 0,
            lookups: 0,
        }
    }
}

/// Below this a pool is not pruned: a few dead values cost less than scanning the pool.
const SMALLEST: usize = 64 * 1024;

/// What a value keeps alive, its Arc's two counts, and its slot in the set.
fn cost<T: ?Sized + Weigh>(v: &Arc<T>) -> usize {
    v.weight() + std::mem::size_of::<Arc<T>>() + 2 * std::mem::size_of::<usize>()
}

impl<T: ?Sized + Hash + Eq + Weigh> Pool<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    /// The shared copy of `value`.
    pub fn get(&mut self, value: &T) -> Arc<T> {
        if let Some(v) = self.set.get(value) {
            let v = v.clone();
            self.looked_up();
            return v;
        }
        self.insert(Arc::from(value))
    }

    /// `value`, or the equal one the pool holds (then `value` is dropped).
    pub fn share(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(v) = self.set.get(&*value) {
            let v = v.clone();
            self.looked_up();
            return v;
        }
        self.insert(value)
    }

    /// Every four lookups per value held (amortized, a scan costs one per lookup), the values
    /// deletions and edits freed are dropped, though nothing new came.
    fn looked_up(&mut self) {
        self.lookups += 1;
        if self.lookups >= 4 * self.set.len() + 1024 {
            self.prune();
        }
    }

    fn prune(&mut self) {
        // Held by this pool alone: no entry carries it any more.
        self.set.retain(|v| Arc::strong_count(v) > 1);
        if self.set.len() < self.set.capacity() / 4 {
            self.set.shrink_to_fit();
        }
        self.bytes = self.set.iter().map(cost).sum();
        self.prune_at = self.bytes * 2;
        self.lookups = 0;
    }

    fn insert(&mut self, value: Arc<T>) -> Arc<T> {
        if self.bytes >= self.prune_at.max(SMALLEST) {
            self.prune();
        }
        self.bytes += cost(&value);
        self.set.insert(value.clone());
        value
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.len()
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Weigh for u8 {
        fn weight(&self) -> usize {
            1
        }
    }

    #[test]
    fn each_value_is_kept_once() {
        let mut names = Pool::<str>::default();
        let a = names.get("acme");
        let b = names.get(&String::from("acme"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &names.get("beta")));
        let mut lists = Pool::<[u8]>::default();
        let x = lists.share(Arc::from(&[1u8, 2][..]));
        let y = lists.share(Arc::from(&[1u8, 2][..]));
        assert!(Arc::ptr_eq(&x, &y));
        assert!(!Arc::ptr_eq(&x, &lists.share(Arc::from(&[2u8, 1][..]))));
        assert_eq!((names.len(), lists.len()), (2, 2));
    }

    /// Values made up one after another (names an Admin keeps changing) stay bounded by the
    /// values still held, not by every value ever seen.
    #[test]
    fn values_nobody_holds_are_dropped() {
        let mut names = Pool::<str>::default();
        let held: Vec<Arc<str>> = (0..10).map(|i| names.get(&format!("kept-{i}"))).collect();
        for i in 0..100_000 {
            names.get(&format!("gone-{i}"));
            assert!(names.bytes() <= 2 * SMALLEST, "{} bytes", names.bytes());
        }
        for h in &held {
            assert!(
                Arc::ptr_eq(h, &names.get(h)),
                "a held value is still the shared one"
            );
        }
        assert!(names.len() < SMALLEST);
    }

    /// Red team 31: values freed by deletions (and edits that bring nothing new) go at the
    /// next activity, not only once new values have doubled the pool.
    #[test]
    fn values_freed_without_anything_new_go_at_the_next_lookups() {
        let mut names = Pool::<str>::default();
        let kept = names.get("acme");
        let deleted: Vec<Arc<str>> = (0..1000)
            .map(|i| names.get(&format!("{i:04}{}", "x".repeat(250))))
            .collect();
        let before = names.bytes();
        drop(deleted);
        for _ in 0..(4 * 1001 + 1024) {
            names.get(&kept);
        }
        assert!(names.len() == 1, "{} values held", names.len());
        assert!(
            names.bytes() < before / 100,
            "{} of {} bytes",
            names.bytes(),
            before
        );
    }

    /// Large values count as what they take: a few dozen dead ones of 250 KB are not kept
    /// because they are few.
    #[test]
    fn large_values_nobody_holds_are_dropped() {
        let mut names = Pool::<str>::default();
        let held = names.get(&"h".repeat(256 * 1024));
        for i in 0..200 {
            names.get(&format!("{i:03}{}", "x".repeat(256 * 1024)));
            assert!(
                names.bytes() <= 2 * (cost(&held) + SMALLEST) + cost(&held),
                "{} bytes held for one live value of {}",
                names.bytes(),
                cost(&held)
            );
        }
    }
}
