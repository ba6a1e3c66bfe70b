//! Matcher evaluation over postings: turns a list of label matchers into the set of series IDs
//! (a `roaring` bitmap) that satisfy all of them, using only set operations on postings lists
//! before any series is touched. Works over any index that implements [`PostingsIndex`] (the
//! head's in-memory postings and a block's index file).
//!
//! The rules are Prometheus's: matchers that do not match the empty string intersect; matchers
//! that match the empty string (`a=""`, `a!="x"`, `a!~"x"`) subtract the series that have a
//! non-matching value; when no matcher narrows the set, evaluation starts from all series.

use roaring::RoaringBitmap;

use crate::error::Result;
use crate::labels::{MatchType, Matcher};

/// What matcher evaluation needs from an index.
pub trait PostingsIndex {
    /// Series that have label `name` with exactly `value`.
    fn postings(&self, name: &str, value: &str) -> Result<RoaringBitmap>;
    /// Union of the postings of every value of `name` for which `f` holds.
    fn postings_matching(&self, name: &str, f: &dyn Fn(&str) -> bool) -> Result<RoaringBitmap>;
    /// Every series.
    fn all_postings(&self) -> Result<RoaringBitmap>;
}

/// Postings for the values a matcher accepts, using set lookups where possible.
fn matching(ix: &dyn PostingsIndex, m: &Matcher) -> Result<RoaringBitmap> {
    match m.typ {
        MatchType::Equal => ix.postings(&m.name, &m.value),
        MatchType::Regexp => {
            if let Some(vals) = m.set_matches() {
                let mut out = RoaringBitmap::new();
                for v in vals {
                    out |= ix.postings(&m.name, v)?;
                }
                Ok(out)
            } else {
                ix.postings_matching(&m.name, &|v| m.matches(v))
            }
        }
        _ => ix.postings_matching(&m.name, &|v| m.matches(v)),
    }
}

/// The series IDs matching all `matchers`.
pub fn postings_for_matchers(
    ix: &dyn PostingsIndex,
    matchers: &[Matcher],
) -> Result<RoaringBitmap> {
    let mut acc: Option<RoaringBitmap> = None;
    let mut subtract = RoaringBitmap::new();

    // Positive matchers first (cheapest narrowing), smallest first is not known up front.
    for m in matchers {
        if m.matches_empty() {
            continue;
        }
        let p = matching(ix, m)?;
        acc = Some(match acc {
            None => p,
            Some(a) => a & p,
        });
        if acc.as_ref().is_some_and(|a| a.is_empty()) {
            return Ok(RoaringBitmap::new());
        }
    }
    for m in matchers {
        if !m.matches_empty() {
            continue;
        }
        match m.typ {
            // `a=~".*"` matches everything.
            MatchType::Regexp if m.value == ".*" => {}
            // `a!="x"`: remove series with a="x".
            MatchType::NotEqual => subtract |= ix.postings(&m.name, &m.value)?,
            // `a!~"x"`: remove series whose value matches x.
            MatchType::NotRegexp => {
                let inv = Matcher::new(MatchType::Regexp, m.name.clone(), m.value.clone())?;
                subtract |= matching(ix, &inv)?;
            }
            // `a=""` or `a=~"|x"`: remove series with a value that does not match.
            _ => subtract |= ix.postings_matching(&m.name, &|v| !m.matches(v))?,
        }
    }
    let mut out = match acc {
        Some(a) => a,
        None => ix.all_postings()?,
    };
    out -= subtract;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Mem(BTreeMap<(String, String), RoaringBitmap>, u32);

    impl PostingsIndex for Mem {
        fn postings(&self, n: &str, v: &str) -> Result<RoaringBitmap> {
            Ok(self
                .0
                .get(&(n.to_string(), v.to_string()))
                .cloned()
                .unwrap_or_default())
        }
        fn postings_matching(&self, n: &str, f: &dyn Fn(&str) -> bool) -> Result<RoaringBitmap> {
            let mut out = RoaringBitmap::new();
            for ((ln, lv), p) in &self.0 {
                if ln == n && f(lv) {
                    out |= p;
                }
            }
            Ok(out)
        }
        fn all_postings(&self) -> Result<RoaringBitmap> {
            Ok((0..self.1).collect())
        }
    }

    fn ix() -> Mem {
        // series 0: {a=1,b=x} 1: {a=2} 2: {a=1} 3: {b=y}
        let mut m = BTreeMap::new();
        let mut add = |n: &str, v: &str, id: u32| {
            m.entry((n.to_string(), v.to_string()))
                .or_insert_with(RoaringBitmap::new)
                .insert(id);
        };
        add("a", "1", 0);
        add("b", "x", 0);
        add("a", "2", 1);
        add("a", "1", 2);
        add("b", "y", 3);
        Mem(m, 4)
    }

    fn q(ms: &[(&str, MatchType, &str)]) -> Vec<u32> {
        let ms: Vec<Matcher> = ms
            .iter()
            .map(|(n, t, v)| Matcher::new(*t, *n, *v).unwrap())
            .collect();
        postings_for_matchers(&ix(), &ms).unwrap().iter().collect()
    }

    #[test]
    fn matcher_semantics() {
        use MatchType::*;
        assert_eq!(q(&[("a", Equal, "1")]), [0, 2]);
        assert_eq!(q(&[("a", Equal, "1"), ("b", Equal, "x")]), [0]);
        assert_eq!(q(&[("a", NotEqual, "1")]), [1, 3]);
        assert_eq!(q(&[("b", Equal, "")]), [1, 2]);
        assert_eq!(q(&[("b", NotEqual, "")]), [0, 3]);
        assert_eq!(q(&[("a", Regexp, "1|2")]), [0, 1, 2]);
        assert_eq!(q(&[("a", Regexp, "|2")]), [1, 3]);
        assert_eq!(q(&[("a", NotRegexp, "1")]), [1, 3]);
        assert_eq!(q(&[("a", NotRegexp, ".+")]), [3]);
        assert_eq!(q(&[("a", Regexp, ".*")]), [0, 1, 2, 3]);
        assert_eq!(q(&[("a", Regexp, ".+"), ("b", NotRegexp, "x|y")]), [1, 2]);
    }
}
