//! The process-wide label-string interner of the scrape path and the agent: label names and
//! values of scraped series, of the agent's series table and of its remote-write queues share
//! one copy per distinct string (100 targets exposing the same metric names keep each name
//! once). Strings nothing references any more are dropped by [`maybe_gc`], at most every
//! [`GC_INTERVAL`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_tsdb::head::Interner;

/// Least time between two collections.
pub const GC_INTERVAL: Duration = Duration::from_secs(300);

static INTERNER: OnceLock<Interner> = OnceLock::new();
static LAST_GC: AtomicU64 = AtomicU64::new(0);

/// The shared copy of `s`.
pub fn intern(s: &str) -> Arc<str> {
    INTERNER.get_or_init(Interner::new).intern(s)
}

/// Drops unreferenced strings if the last collection is at least [`GC_INTERVAL`] old.
pub fn maybe_gc() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_GC.load(Ordering::Relaxed);
    if now.saturating_sub(last) < GC_INTERVAL.as_secs() {
        return;
    }
    if LAST_GC
        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        if let Some(i) = INTERNER.get() {
            i.gc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let a = intern("strata_intern_test_value");
        let b = intern(&String::from("strata_intern_test_value"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &intern("strata_intern_test_other")));
    }
}
