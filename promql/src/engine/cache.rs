//! Per-query caches keyed by the identity of a label set.
//!
//! Label sets are reference counted and immutable: a series loaded by a selector (or produced
//! by a memoized range function, see [`super::eval`]) carries the same allocation at every
//! step. Values derived from a series' labels (an aggregation's group key, a binary operator's
//! matching signature or result labels) can therefore be computed once per series and query
//! instead of once per step, looked up by the allocation's address with a cheap integer hash.
//! The cache keeps a clone of each label set it has seen, so an address is never reused for a
//! different set while the cache lives.

use std::collections::HashMap;

use strata_tsdb::Labels;

/// A hash map with the fast hasher (integer and pointer keys).
pub(crate) type FxHashMap<K, V> = strata_tsdb::fasthash::FastMap<K, V>;

/// The identity of a label set: the address of its shared allocation.
#[inline]
pub(crate) fn ident(l: &Labels) -> usize {
    l.as_slice().as_ptr() as usize
}

/// Interns values derived from label sets: `derive(labels)` is computed once per label-set
/// identity, and equal derived label sets get the same dense id (so per-step bookkeeping can
/// use vectors indexed by id instead of hash maps keyed by labels).
///
/// When the inputs are not stable across steps (fresh label sets every step, e.g. the output
/// of a binary operator), caching by identity would only grow memory: once the identity map
/// holds far more entries than a step looks up, it is dropped and lookups derive every time
/// (the interning of derived sets stays, it is bounded by the number of distinct results).
pub(crate) struct Interner<X: Copy, K = usize> {
    /// Derived id (and extra datum) by input identity, with the inputs kept alive.
    by_ident: FxHashMap<K, (Keep, u32, X)>,
    by_value: HashMap<Labels, u32>,
    values: Vec<Labels>,
    disabled: bool,
    step_lookups: usize,
    max_step_lookups: usize,
}

/// The label sets whose identities make up a key (kept alive while the key is cached).
type Keep = (Labels, Option<Labels>);

impl<X: Copy, K> Default for Interner<X, K> {
    fn default() -> Self {
        Self {
            by_ident: FxHashMap::default(),
            by_value: HashMap::new(),
            values: Vec::new(),
            disabled: false,
            step_lookups: 0,
            max_step_lookups: 0,
        }
    }
}

impl<X: Copy> Interner<X, usize> {
    /// The id of the value derived from `l` (and the extra per-input datum `X`).
    pub fn get(&mut self, l: &Labels, derive: impl FnOnce(&Labels) -> (Labels, X)) -> (u32, X) {
        self.get_by(ident(l), || (l.clone(), None), || derive(l))
    }
}

impl<X: Copy> Interner<X, (usize, usize)> {
    /// The id of the value derived from the pair `(a, b)`.
    pub fn get_pair(
        &mut self,
        a: &Labels,
        b: &Labels,
        derive: impl FnOnce(&Labels, &Labels) -> (Labels, X),
    ) -> (u32, X) {
        self.get_by(
            (ident(a), ident(b)),
            || (a.clone(), Some(b.clone())),
            || derive(a, b),
        )
    }
}

impl<X: Copy, K: std::hash::Hash + Eq> Interner<X, K> {
    fn get_by(
        &mut self,
        key: K,
        keep: impl FnOnce() -> Keep,
        derive: impl FnOnce() -> (Labels, X),
    ) -> (u32, X) {
        self.step_lookups += 1;
        if !self.disabled {
            if let Some(&(_, id, x)) = self.by_ident.get(&key) {
                return (id, x);
            }
        }
        let (v, x) = derive();
        let id = self.intern(v);
        if !self.disabled {
            self.by_ident.insert(key, (keep(), id, x));
        }
        (id, x)
    }

    /// The id of a derived label set.
    pub fn intern(&mut self, v: Labels) -> u32 {
        match self.by_value.get(&v) {
            Some(&id) => id,
            None => {
                let id = self.values.len() as u32;
                self.by_value.insert(v.clone(), id);
                self.values.push(v);
                id
            }
        }
    }

    /// The derived label set with id `id`.
    pub fn value(&self, id: u32) -> &Labels {
        &self.values[id as usize]
    }

    /// Number of distinct derived values so far.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Ends a step: disables identity caching once the identity map has grown well beyond
    /// what a step looks up (inputs with fresh label sets every step add a step's worth of
    /// entries each time; stable inputs, even with some churn, do not).
    pub fn end_step(&mut self) {
        self.max_step_lookups = self.max_step_lookups.max(self.step_lookups);
        if !self.disabled && self.by_ident.len() > 4 * self.max_step_lookups + 1024 {
            self.disabled = true;
            self.by_ident = FxHashMap::default();
        }
        self.step_lookups = 0;
    }
}

/// Per-step membership marks over dense ids: `mark(id)` is true the first time an id is
/// marked in the current step.
#[derive(Default)]
pub(crate) struct Marks {
    gen: u32,
    seen: Vec<u32>,
    slot: Vec<u32>,
}

impl Marks {
    /// Starts a new step with ids below `n`.
    pub fn next_step(&mut self, n: usize) {
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.seen.iter_mut().for_each(|s| *s = 0);
            self.gen = 1;
        }
        if self.seen.len() < n {
            self.seen.resize(n, 0);
            self.slot.resize(n, 0);
        }
    }

    /// The slot stored for `id` in this step, if any.
    #[inline]
    pub fn get(&self, id: u32) -> Option<u32> {
        let i = id as usize;
        (i < self.seen.len() && self.seen[i] == self.gen).then(|| self.slot[i])
    }

    /// Stores `slot` for `id` in this step (growing as needed).
    #[inline]
    pub fn set(&mut self, id: u32, slot: u32) {
        let i = id as usize;
        if i >= self.seen.len() {
            self.seen.resize(i + 1, 0);
            self.slot.resize(i + 1, 0);
        }
        self.seen[i] = self.gen;
        self.slot[i] = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_caches_by_identity_and_dedups_values() {
        let a = Labels::from_pairs(&[("__name__", "x"), ("job", "a")]);
        let b = Labels::from_pairs(&[("__name__", "y"), ("job", "a")]);
        let mut calls = 0;
        let mut i: Interner<bool> = Interner::default();
        let mut job = |l: &Labels| {
            calls += 1;
            (l.keep_only(&["job"]), true)
        };
        let (ia, _) = i.get(&a, &mut job);
        let (ib, _) = i.get(&b, &mut job);
        i.end_step();
        let (ia2, x) = i.get(&a.clone(), &mut job);
        assert_eq!((ia, ia2, x), (ib, ia, true));
        assert_eq!(calls, 2);
        assert_eq!(i.value(ia).get("job"), Some("a"));
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn interner_disables_on_unstable_inputs() {
        let mut i: Interner<()> = Interner::default();
        // Stable inputs that first show up at a later step keep the cache.
        let stable: Vec<Labels> = (0..2000)
            .map(|k| Labels::from_pairs(&[("job", k.to_string())]))
            .collect();
        i.end_step();
        for _ in 0..10 {
            for l in &stable {
                i.get(l, |l| (l.clone(), ()));
            }
            i.end_step();
        }
        assert!(!i.disabled);
        // Fresh label sets at every step turn it off.
        for _ in 0..10 {
            for k in 0..2000 {
                let l = Labels::from_pairs(&[("job", k.to_string())]);
                i.get(&l, |l| (l.clone(), ()));
            }
            i.end_step();
        }
        assert!(i.disabled);
        assert!(i.by_ident.is_empty());
        assert_eq!(i.len(), 2000);
    }

    #[test]
    fn marks_reset_per_step() {
        let mut m = Marks::default();
        m.next_step(4);
        assert_eq!(m.get(2), None);
        m.set(2, 7);
        m.set(9, 1);
        assert_eq!((m.get(2), m.get(9)), (Some(7), Some(1)));
        m.next_step(4);
        assert_eq!((m.get(2), m.get(9)), (None, None));
    }
}
