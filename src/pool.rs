//! One copy of each value many cached entries carry. 20,000 cached members of two projects
//! each carried 140,000 copies of a few hundred names (their organization's, their projects'
//! and the projects' namespaces), and members given the same projects and roles, or converged
//! in the same second, carry equal grants, access lists and condition times.
//!
//! Values are chosen by whoever may create objects, so a pool cannot grow without bound:
//! values no entry holds any more are dropped whenever it has doubled since the last time.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// The values one cache's entries share. Owned by the cache's writer: no lock, no global.
#[derive(Debug)]
pub struct Pool<T: ?Sized> {
    set: HashSet<Arc<T>>,
    /// The pool's size at which values no entry holds are dropped.
    prune_at: usize,
}

impl<T: ?Sized> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            set: HashSet::new(),
            prune_at: 0,
        }
    }
}

/// Below this a pool is not pruned: a few values cost less than scanning them.
const SMALLEST: usize = 64;

impl<T: ?Sized + Hash + Eq> Pool<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    /// The shared copy of `value`.
    pub fn get(&mut self, value: &T) -> Arc<T> {
        if let Some(v) = self.set.get(value) {
            return v.clone();
        }
        self.prune();
        let v: Arc<T> = Arc::from(value);
        self.set.insert(v.clone());
        v
    }

    /// `value`, or the equal one the pool holds (then `value` is dropped).
    pub fn share(&mut self, value: Arc<T>) -> Arc<T> {
        if let Some(v) = self.set.get(&*value) {
            return v.clone();
        }
        self.prune();
        self.set.insert(value.clone());
        value
    }

    fn prune(&mut self) {
        if self.set.len() >= self.prune_at.max(SMALLEST) {
            // Held by this pool alone: no entry carries it any more.
            self.set.retain(|v| Arc::strong_count(v) > 1);
            self.prune_at = self.set.len() * 2;
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert!(
                names.len() <= 2 * (held.len() + SMALLEST),
                "{} names",
                names.len()
            );
        }
        for h in &held {
            assert!(
                Arc::ptr_eq(h, &names.get(h)),
                "a held value is still the shared one"
            );
        }
    }
}
