//! Label handling for scraped series: merging the target labels into a scraped series
//! (`honor_labels`, `exported_` renaming of conflicts), metric relabeling, the label limits,
//! and the labels of the synthetic report series.

use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::{Label, Labels};

use super::MetricRelabelFn;
use crate::error::{Error, Result};
use crate::intern::intern;
use crate::textparse::Sample;

const EXPORTED_PREFIX: &str = "exported_";

/// The target labels that are attached to samples: all but the `__`-prefixed internal ones.
pub(crate) fn public_target_labels(target: &Labels) -> Vec<Label> {
    target
        .iter()
        .filter(|l| !l.name.starts_with("__"))
        .cloned()
        .collect()
}

fn find<'a>(v: &'a [Label], name: &str) -> Option<&'a Label> {
    v.iter().find(|l| &*l.name == name)
}

fn set(v: &mut Vec<Label>, name: &str, value: &str) {
    match v.iter_mut().find(|l| &*l.name == name) {
        Some(l) => l.value = intern(value),
        None => v.push(Label {
            name: intern(name),
            value: intern(value),
        }),
    }
}

/// Sets a target label, sharing the target's strings.
fn set_label(v: &mut Vec<Label>, label: &Label) {
    match v.iter_mut().find(|l| l.name == label.name) {
        Some(l) => l.value = label.value.clone(),
        None => v.push(label.clone()),
    }
}

/// The final labels of a scraped series (Prometheus's `mutateSampleLabels`), or `None` when
/// metric relabeling drops it. A duplicate or empty label name in the exposition is an error.
pub(crate) fn mutate_sample_labels(
    s: &Sample<'_>,
    target: &[Label],
    honor: bool,
    relabel: Option<&MetricRelabelFn>,
) -> Result<Option<Labels>> {
    let mut v: Vec<Label> = Vec::with_capacity(s.labels.len() + target.len() + 1);
    // Label strings are interned: the series cache, the staleness sets and the storage share
    // one copy of each distinct string across all targets.
    v.push(Label {
        name: intern(METRIC_NAME),
        value: intern(&s.name),
    });
    for (n, val) in &s.labels {
        if n.is_empty() {
            return Err(Error::InvalidLabels("empty label name".into()));
        }
        if find(&v, n).is_some() {
            return Err(Error::InvalidLabels(format!(
                "label name {n:?} is not unique in series {:?}",
                s.name
            )));
        }
        v.push(Label {
            name: intern(n),
            value: intern(val),
        });
    }
    if honor {
        for l in target {
            // Present in the exposition, even with an empty value: the exposed one wins.
            if find(&v, &l.name).is_none() {
                v.push(l.clone());
            }
        }
    } else {
        let mut conflicts: Vec<Label> = Vec::new();
        for l in target {
            if let Some(e) = find(&v, &l.name).filter(|e| !e.value.is_empty()) {
                conflicts.push(e.clone());
            }
            set_label(&mut v, l);
        }
        // Shorter names first, so `exported_x` is taken before `exported_exported_x`.
        conflicts.sort_by_key(|l| l.name.len());
        for c in conflicts {
            let mut name = c.name.to_string();
            loop {
                name.insert_str(0, EXPORTED_PREFIX);
                if !matches!(find(&v, &name), Some(e) if !e.value.is_empty()) {
                    set(&mut v, &name, &c.value);
                    break;
                }
            }
        }
    }
    let labels = Labels::new(v);
    let labels = match relabel {
        Some(f) => match f(&labels) {
            Some(l) => l,
            None => return Ok(None),
        },
        None => labels,
    };
    if labels.is_empty() {
        return Ok(None);
    }
    Ok(Some(labels))
}

/// Prometheus's `%.50s`: at most 50 characters.
fn trunc50(s: &str) -> &str {
    match s.char_indices().nth(50) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Checks the name, the label names and the label limits of a final label set; the error
/// fails the whole scrape.
pub(crate) fn check_labels(
    l: &Labels,
    label_limit: usize,
    name_len: usize,
    value_len: usize,
) -> Result<()> {
    let Some(met) = l.metric_name() else {
        return Err(Error::Scrape("missing metric name (__name__ label)".into()));
    };
    if l.iter().any(|x| x.name.is_empty()) {
        return Err(Error::Scrape(format!(
            "invalid metric name or label names: {l}"
        )));
    }
    if label_limit > 0 && l.len() > label_limit {
        return Err(Error::Scrape(format!(
            "label_limit exceeded (metric: {}, number of labels: {}, limit: {label_limit})",
            trunc50(met),
            l.len()
        )));
    }
    for x in l.iter() {
        if name_len > 0 && x.name.len() > name_len {
            return Err(Error::Scrape(format!(
                "label_name_length_limit exceeded (metric: {}, label name: {}, length: {}, limit: {name_len})",
                trunc50(met),
                trunc50(&x.name),
                x.name.len()
            )));
        }
        if value_len > 0 && x.value.len() > value_len {
            return Err(Error::Scrape(format!(
                "label_value_length_limit exceeded (metric: {}, label name: {}, value: {:?}, length: {}, limit: {value_len})",
                trunc50(met),
                trunc50(&x.name),
                trunc50(&x.value),
                x.value.len()
            )));
        }
    }
    Ok(())
}

/// The names of the synthetic series, in report order.
pub(crate) const REPORT_NAMES: [&str; super::cache::REPORT_SERIES] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// Labels of the synthetic series: the public target labels plus the name.
pub(crate) fn report_labels(target: &[Label]) -> Vec<Labels> {
    REPORT_NAMES
        .iter()
        .map(|n| {
            let mut v = target.to_vec();
            v.push(Label::new(METRIC_NAME, *n));
            Labels::new(v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sample(pairs: &[(&'static str, &'static str)]) -> Sample<'static> {
        Sample {
            name: "m".into(),
            labels: pairs
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
            value: 1.0,
            timestamp_ms: None,
            exemplar: None,
        }
    }

    fn target() -> Vec<Label> {
        public_target_labels(&Labels::from_pairs(&[
            ("job", "j"),
            ("instance", "i:1"),
            ("__address__", "i:1"),
        ]))
    }

    #[test]
    fn conflicts_renamed_unless_honored() {
        let s = sample(&[("job", "exposed"), ("exported_job", "x"), ("a", "")]);
        let l = mutate_sample_labels(&s, &target(), false, None)
            .unwrap()
            .unwrap();
        assert_eq!(l.get("job"), Some("j"));
        assert_eq!(l.get("exported_job"), Some("x"));
        assert_eq!(l.get("exported_exported_job"), Some("exposed"));
        assert_eq!(l.get("instance"), Some("i:1"));
        assert!(!l.has("__address__") && !l.has("a"));

        let l = mutate_sample_labels(&s, &target(), true, None)
            .unwrap()
            .unwrap();
        assert_eq!(l.get("job"), Some("exposed"));
        assert_eq!(l.get("instance"), Some("i:1"));
        assert!(!l.has("exported_exported_job"));

        // An exposed empty value does not conflict (and, honored, removes the target label).
        let s = sample(&[("job", "")]);
        let l = mutate_sample_labels(&s, &target(), false, None)
            .unwrap()
            .unwrap();
        assert_eq!(l.get("job"), Some("j"));
        assert!(!l.has("exported_job"));
        let l = mutate_sample_labels(&s, &target(), true, None)
            .unwrap()
            .unwrap();
        assert!(!l.has("job"));
    }

    #[test]
    fn relabel_and_duplicates() {
        let drop_all: MetricRelabelFn = Arc::new(|_| None);
        let s = sample(&[("a", "1")]);
        assert!(mutate_sample_labels(&s, &target(), false, Some(&drop_all))
            .unwrap()
            .is_none());
        let dup = sample(&[("a", "1"), ("a", "2")]);
        assert!(mutate_sample_labels(&dup, &target(), false, None).is_err());
    }

    #[test]
    fn limits() {
        let l = Labels::from_pairs(&[("__name__", "m"), ("a", "12345")]);
        assert!(check_labels(&l, 2, 0, 0).is_ok());
        let e = check_labels(&l, 1, 0, 0).unwrap_err().to_string();
        assert!(e.starts_with("label_limit exceeded"), "{e}");
        let e = check_labels(&l, 0, 4, 0).unwrap_err().to_string();
        assert!(e.starts_with("label_name_length_limit exceeded"), "{e}");
        let e = check_labels(&l, 0, 0, 4).unwrap_err().to_string();
        assert!(e.starts_with("label_value_length_limit exceeded"), "{e}");
        let nameless = Labels::from_pairs(&[("a", "1")]);
        assert!(check_labels(&nameless, 0, 0, 0).is_err());
    }
}
