//! Iterating a series stored as a sequence of non-overlapping chunks in time order, loading
//! each chunk only when the cursor reaches it; `seek` skips whole chunks by their time range
//! without loading them.

use crate::error::Result;
use crate::storage::SampleIterator;

/// Loads chunk `i` of the chain as a sample iterator.
pub type ChunkLoader = Box<dyn FnMut(usize) -> Result<Box<dyn SampleIterator>> + Send>;

/// A lazy iterator over a chain of chunks with known `(mint, maxt)`.
pub struct ChainIterator {
    ranges: Vec<(i64, i64)>,
    loader: ChunkLoader,
    /// Index of the chunk `cur` belongs to.
    idx: usize,
    cur: Option<Box<dyn SampleIterator>>,
    started: bool,
    valid: bool,
    done: bool,
    err: Option<String>,
}

impl ChainIterator {
    /// `ranges[i]` is the `(mint, maxt)` of chunk `i`; chunks must be in time order.
    pub fn new(ranges: Vec<(i64, i64)>, loader: ChunkLoader) -> Self {
        Self {
            ranges,
            loader,
            idx: 0,
            cur: None,
            started: false,
            valid: false,
            done: false,
            err: None,
        }
    }

    fn load(&mut self, i: usize) -> bool {
        self.idx = i;
        if i >= self.ranges.len() {
            self.cur = None;
            return false;
        }
        match (self.loader)(i) {
            Ok(it) => {
                self.cur = Some(it);
                true
            }
            Err(e) => {
                self.err = Some(e.to_string());
                self.cur = None;
                self.idx = self.ranges.len();
                false
            }
        }
    }

    fn finish(&mut self) -> bool {
        self.valid = false;
        self.done = true;
        self.cur = None;
        false
    }

    /// Moves within the current chunk (by `next`, or `seek(t)`), then on to later chunks.
    fn advance(&mut self, t: Option<i64>) -> bool {
        loop {
            let Some(c) = self.cur.as_mut() else {
                return self.finish();
            };
            let ok = match t {
                Some(t) => c.seek(t),
                None => c.next(),
            };
            if ok {
                self.valid = true;
                return true;
            }
            if self.check_err() {
                return self.finish();
            }
            let n = self.idx + 1;
            if !self.load(n) {
                return self.finish();
            }
        }
    }

    fn check_err(&mut self) -> bool {
        if let Some(e) = self.cur.as_ref().and_then(|c| c.err()) {
            self.err = Some(e);
            self.cur = None;
            self.idx = self.ranges.len();
            return true;
        }
        false
    }
}

impl SampleIterator for ChainIterator {
    fn next(&mut self) -> bool {
        if self.done {
            return false;
        }
        if !self.started {
            self.started = true;
            if !self.load(0) {
                return self.finish();
            }
        }
        self.advance(None)
    }

    fn seek(&mut self, t: i64) -> bool {
        if self.done {
            return false;
        }
        if self.valid && self.cur.as_ref().is_some_and(|c| c.at().0 >= t) {
            return true;
        }
        let mut i = if self.started { self.idx } else { 0 };
        while i < self.ranges.len() && self.ranges[i].1 < t {
            i += 1;
        }
        if (!self.started || i != self.idx || self.cur.is_none()) && !self.load(i) {
            self.started = true;
            return self.finish();
        }
        self.started = true;
        self.advance(Some(t))
    }

    fn at(&self) -> (i64, f64) {
        match &self.cur {
            Some(c) => c.at(),
            None => (i64::MIN, f64::NAN),
        }
    }

    fn err(&self) -> Option<String> {
        self.err.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::VecIterator;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn chain(chunks: Vec<Vec<(i64, f64)>>, loads: Arc<AtomicUsize>) -> ChainIterator {
        let ranges = chunks.iter().map(|c| (c[0].0, c[c.len() - 1].0)).collect();
        let chunks: Vec<Arc<Vec<(i64, f64)>>> = chunks.into_iter().map(Arc::new).collect();
        ChainIterator::new(
            ranges,
            Box::new(move |i| {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(Box::new(VecIterator::new(chunks[i].clone())) as Box<dyn SampleIterator>)
            }),
        )
    }

    #[test]
    fn iterates_and_seeks_lazily() {
        let loads = Arc::new(AtomicUsize::new(0));
        let mut it = chain(
            vec![
                vec![(1, 1.0), (2, 2.0)],
                vec![(5, 5.0), (6, 6.0)],
                vec![(9, 9.0)],
            ],
            loads.clone(),
        );
        assert!(it.seek(6));
        assert_eq!(it.at(), (6, 6.0));
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "first chunk skipped unloaded"
        );
        assert!(it.seek(3));
        assert_eq!(it.at(), (6, 6.0));
        assert!(it.next());
        assert_eq!(it.at(), (9, 9.0));
        assert!(!it.next());
        assert!(!it.seek(100));

        let mut it = chain(vec![vec![(1, 1.0)], vec![(3, 3.0)]], Arc::default());
        let mut got = vec![];
        while it.next() {
            got.push(it.at().0);
        }
        assert_eq!(got, [1, 3]);
        let mut it = chain(vec![vec![(1, 1.0)], vec![(3, 3.0)]], Arc::default());
        assert!(it.seek(2) && it.at().0 == 3);
        assert!(!it.seek(4));
    }
}
