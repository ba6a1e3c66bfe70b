//! Label sets and label matchers.
//!
//! A [`Labels`] is a set of name/value pairs sorted by name with unique names; its strings are
//! shared `Arc<str>`s so that the head can intern them (one allocation per distinct string).
//! Ordering is Prometheus's `labels.Compare`; [`Labels::stable_hash`] is xxHash64 over
//! `name 0xff value 0xff ...`, stable across processes and versions.
//!
//! [`Matcher`] implements `=`, `!=`, `=~`, `!~` with Prometheus 3's regex semantics: the pattern
//! is fully anchored, `.` matches a newline, and `\d \w \s \b` are ASCII-only as in Go's RE2. A
//! regex that is a plain alternation of literals (`a|b|c`) is evaluated as a set lookup.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One name/value pair.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: Arc<str>,
    pub value: Arc<str>,
}

impl Label {
    pub fn new(name: impl Into<Arc<str>>, value: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.name, self.value)
    }
}

/// A sorted set of labels with unique names. Cloning is cheap (reference counted).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels(Arc<[Label]>);

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    /// Prometheus's `labels.Compare`: pairwise by name then value, then by length.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            let c = a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value));
            if c != std::cmp::Ordering::Equal {
                return c;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        Labels(Arc::from(Vec::new()))
    }

    /// Builds a label set from labels in any order. Later duplicates of a name replace earlier
    /// ones; labels with an empty value are dropped (Prometheus treats them as absent).
    pub fn new(mut v: Vec<Label>) -> Self {
        v.retain(|l| !l.value.is_empty());
        v.sort_by(|a, b| a.name.cmp(&b.name));
        // Keep the last of each duplicate name.
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v {
            match out.last_mut() {
                Some(prev) if prev.name == l.name => *prev = l,
                _ => out.push(l),
            }
        }
        Labels(Arc::from(out))
    }

    /// Builds from labels already sorted by name with unique names (no check in release builds).
    pub fn from_sorted(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Labels(Arc::from(v))
    }

    /// Builds from `(name, value)` string pairs in any order.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Self {
        Self::new(
            pairs
                .iter()
                .map(|(n, v)| Label::new(n.as_ref(), v.as_ref()))
                .collect(),
        )
    }

    /// Checks Prometheus's validity rules: names are non-empty and unique, values non-empty.
    pub fn validate(pairs: &[(impl AsRef<str>, impl AsRef<str>)]) -> Result<()> {
        let mut seen = HashSet::new();
        for (n, _) in pairs {
            let n = n.as_ref();
            if n.is_empty() {
                return Err(Error::InvalidLabels("empty label name".into()));
            }
            if !seen.insert(n) {
                return Err(Error::InvalidLabels(format!("duplicate label name {n:?}")));
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }
    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.0[i].value)
    }

    /// The value of `name`, or `""` when absent (Prometheus's `Get`).
    pub fn get_or_empty(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The metric name (`__name__`), if any.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// xxHash64 over `name 0xff value 0xff` for every label; stable across runs.
    pub fn stable_hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        for l in self.0.iter() {
            h.update(l.name.as_bytes());
            h.update(&[0xff]);
            h.update(l.value.as_bytes());
            h.update(&[0xff]);
        }
        h.digest()
    }

    /// Hash over only the named labels (`on(...)`), or all but them (`ignoring(...)`).
    pub fn hash_for_labels(&self, names: &[&str], include: bool) -> u64 {
        let mut h = xxhash_rust::xxh64::Xxh64::new(0);
        for l in self.0.iter() {
            if names.contains(&&*l.name) == include {
                h.update(l.name.as_bytes());
                h.update(&[0xff]);
                h.update(l.value.as_bytes());
                h.update(&[0xff]);
            }
        }
        h.digest()
    }

    /// A copy without the named labels.
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| !names.contains(&&*l.name))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        )
    }

    /// A copy with only the named labels.
    pub fn keep_only(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| names.contains(&&*l.name))
                .cloned()
                .collect::<Vec<_>>()
                .into(),
        )
    }

    /// A mutable builder starting from this set.
    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.0.to_vec(),
        }
    }

    pub fn to_vec(&self) -> Vec<Label> {
        self.0.to_vec()
    }
}

impl fmt::Display for Labels {
    /// Prometheus's `{a="b", c="d"}` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_legacy_label_name(&l.name) {
                f.write_str(&l.name)?;
            } else {
                write!(f, "\"{}\"", escape_value(&l.name))?;
            }
            write!(f, "=\"{}\"", escape_value(&l.value))?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Is `n` a label name of the classic character set `[a-zA-Z_][a-zA-Z0-9_]*`?
pub fn is_legacy_label_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Escapes a label value as Go's `strconv.Quote` would, without the surrounding quotes, for the
/// characters that occur in practice (backslash, quote, newline, tab, control characters).
pub fn escape_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                s.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => s.push(c),
        }
    }
    s
}

/// Mutable label set used to derive new sets (set, delete, then build).
#[derive(Clone, Debug, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.labels.retain(|l| &*l.name != name);
        if !value.is_empty() {
            self.labels.push(Label::new(name, value));
        }
        self
    }
    pub fn del(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| &*l.name != name);
        self
    }
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| &*l.name == name)
            .map(|l| &*l.value)
    }
    pub fn build(&self) -> Labels {
        Labels::new(self.labels.clone())
    }
}

/// The four matcher kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchType {
    Equal,
    NotEqual,
    Regexp,
    NotRegexp,
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        })
    }
}

/// A compiled regular expression with Prometheus semantics and fast paths.
#[derive(Clone)]
pub struct FastRegex {
    pattern: String,
    kind: RegexKind,
}

#[derive(Clone)]
enum RegexKind {
    /// `a|b|c`: a set of literals.
    Set(HashSet<String>),
    /// `.*`: matches everything.
    Any,
    /// `.+`: matches every non-empty string.
    NonEmpty,
    /// `prefix.*`
    Prefix(String),
    /// Anything else.
    Re(regex::Regex),
}

impl FastRegex {
    /// Compiles `pattern` fully anchored, with `.` matching newlines and ASCII-only Perl classes.
    pub fn new(pattern: &str) -> Result<Self> {
        let translated = translate_perl_classes(pattern);
        let anchored = format!("^(?s:{translated})$");
        let re = regex::Regex::new(&anchored).map_err(|e| Error::InvalidRegex {
            pattern: pattern.to_string(),
            detail: e.to_string(),
        })?;
        let kind = match analyse(pattern) {
            Some(k) => k,
            None => RegexKind::Re(re),
        };
        Ok(Self {
            pattern: pattern.to_string(),
            kind,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn is_match(&self, s: &str) -> bool {
        match &self.kind {
            RegexKind::Set(set) => set.contains(s),
            RegexKind::Any => true,
            RegexKind::NonEmpty => !s.is_empty(),
            RegexKind::Prefix(p) => s.starts_with(p.as_str()),
            RegexKind::Re(re) => re.is_match(s),
        }
    }

    /// The literal alternatives when the pattern is a plain alternation of literals.
    pub fn set_matches(&self) -> Option<Vec<&str>> {
        match &self.kind {
            RegexKind::Set(s) => {
                let mut v: Vec<&str> = s.iter().map(|s| s.as_str()).collect();
                v.sort_unstable();
                Some(v)
            }
            _ => None,
        }
    }

    /// A literal prefix every match starts with (`foo.*` → `foo`).
    pub fn prefix(&self) -> Option<&str> {
        match &self.kind {
            RegexKind::Prefix(p) => Some(p),
            _ => None,
        }
    }

    /// True when the empty string matches.
    pub fn matches_empty(&self) -> bool {
        self.is_match("")
    }
}

impl fmt::Debug for FastRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FastRegex({:?})", self.pattern)
    }
}

/// Rewrites Perl classes (`\d \D \w \W \s \S \b \B`) to their ASCII meaning, as Go's RE2
/// defines them (the `regex` crate's are Unicode).
pub fn translate_perl_classes(p: &str) -> String {
    let mut out = String::with_capacity(p.len() + 8);
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[0-9A-Za-z_]"),
            Some('W') => out.push_str("[^0-9A-Za-z_]"),
            Some('s') => out.push_str("[\\t\\n\\f\\r ]"),
            Some('S') => out.push_str("[^\\t\\n\\f\\r ]"),
            Some('b') => out.push_str("(?-u:\\b)"),
            Some('B') => out.push_str("(?-u:\\B)"),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Recognises the patterns with a fast path.
fn analyse(pattern: &str) -> Option<RegexKind> {
    use regex_syntax::hir::{HirKind, Literal};
    if pattern == ".*" {
        return Some(RegexKind::Any);
    }
    if pattern == ".+" {
        return Some(RegexKind::NonEmpty);
    }
    let hir = regex_syntax::ParserBuilder::new()
        .dot_matches_new_line(true)
        .build()
        .parse(pattern)
        .ok()?;
    fn lit(h: &regex_syntax::hir::Hir) -> Option<String> {
        match h.kind() {
            HirKind::Literal(Literal(b)) => String::from_utf8(b.to_vec()).ok(),
            HirKind::Empty => Some(String::new()),
            HirKind::Capture(c) => lit(&c.sub),
            HirKind::Concat(parts) => {
                let mut s = String::new();
                for p in parts {
                    s.push_str(&lit(p)?);
                }
                Some(s)
            }
            _ => None,
        }
    }
    match hir.kind() {
        HirKind::Alternation(alts) => {
            let mut set = HashSet::new();
            for a in alts {
                set.insert(lit(a)?);
            }
            Some(RegexKind::Set(set))
        }
        HirKind::Capture(c) => match c.sub.kind() {
            HirKind::Alternation(alts) => {
                let mut set = HashSet::new();
                for a in alts {
                    set.insert(lit(a)?);
                }
                Some(RegexKind::Set(set))
            }
            _ => lit(&hir).map(|s| RegexKind::Set(HashSet::from([s]))),
        },
        HirKind::Concat(parts) if parts.len() == 2 => {
            let p = lit(&parts[0])?;
            let tail = &parts[1];
            let any = regex_syntax::ParserBuilder::new()
                .dot_matches_new_line(true)
                .build()
                .parse(".*")
                .ok()?;
            if *tail == any {
                Some(RegexKind::Prefix(p))
            } else {
                None
            }
        }
        _ => lit(&hir).map(|s| RegexKind::Set(HashSet::from([s]))),
    }
}

/// A label matcher: `name op value`.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub typ: MatchType,
    pub name: String,
    pub value: String,
    re: Option<FastRegex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.typ == o.typ && self.name == o.name && self.value == o.value
    }
}
impl Eq for Matcher {}

impl Matcher {
    /// Builds a matcher; regex matchers compile their pattern and fail on a bad one.
    pub fn new(typ: MatchType, name: impl Into<String>, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let re = match typ {
            MatchType::Regexp | MatchType::NotRegexp => Some(FastRegex::new(&value)?),
            _ => None,
        };
        Ok(Self {
            typ,
            name,
            value,
            re,
        })
    }

    /// `name="value"`; never fails.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            typ: MatchType::Equal,
            name: name.into(),
            value: value.into(),
            re: None,
        }
    }

    /// Does `v` (the label's value, `""` when absent) satisfy the matcher?
    #[inline]
    pub fn matches(&self, v: &str) -> bool {
        match self.typ {
            MatchType::Equal => v == self.value,
            MatchType::NotEqual => v != self.value,
            MatchType::Regexp => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchType::NotRegexp => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// The compiled regex of a regex matcher.
    pub fn regex(&self) -> Option<&FastRegex> {
        self.re.as_ref()
    }

    /// True when the matcher matches the empty string (i.e. series lacking the label).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// For `=~` with a literal alternation: the values to look up.
    pub fn set_matches(&self) -> Option<Vec<&str>> {
        self.re.as_ref().and_then(|r| r.set_matches())
    }

    /// Does the label set satisfy the matcher?
    pub fn matches_labels(&self, l: &Labels) -> bool {
        self.matches(l.get_or_empty(&self.name))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}\"{}\"",
            self.name,
            self.typ,
            escape_value(&self.value)
        )
    }
}

/// Do all matchers accept the label set?
pub fn matches_all(ms: &[Matcher], l: &Labels) -> bool {
    ms.iter().all(|m| m.matches_labels(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> Matcher {
        Matcher::new(MatchType::Regexp, "x", p).unwrap()
    }

    #[test]
    fn labels_are_sorted_and_unique() {
        let l = Labels::from_pairs(&[("b", "2"), ("a", "1"), ("b", "3"), ("c", "")]);
        assert_eq!(l.to_string(), r#"{a="1", b="3"}"#);
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn compare_is_prometheus_order() {
        let a = Labels::from_pairs(&[("a", "1")]);
        let b = Labels::from_pairs(&[("a", "1"), ("b", "1")]);
        let c = Labels::from_pairs(&[("a", "2")]);
        assert!(a < b && b < c);
    }

    #[test]
    fn hash_is_stable() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "x")]);
        assert_eq!(l.stable_hash(), l.clone().stable_hash());
        assert_ne!(
            l.stable_hash(),
            Labels::from_pairs(&[("__name__", "upj"), ("ob", "x")]).stable_hash()
        );
    }

    #[test]
    fn regex_is_anchored_and_dot_matches_newline() {
        assert!(re("fo+").matches("foo"));
        assert!(!re("fo+").matches("xfoo"));
        assert!(!re("fo+").matches("foox"));
        assert!(re("a.b").matches("a\nb"));
        assert!(re(".*").matches("a\nb"));
    }

    #[test]
    fn perl_classes_are_ascii() {
        assert!(re(r"\d+").matches("123"));
        assert!(!re(r"\d").matches("٣")); // Arabic-Indic digit
        assert!(!re(r"\w").matches("é"));
        assert!(re(r"\W").matches("é"));
        assert!(re(r"[\d]x").matches("1x"));
        assert!(re(r"\\d").matches("\\d"));
        assert!(re(r"a\b.*").matches("a b"));
        assert!(!re(r"\s").matches("\u{a0}"));
    }

    #[test]
    fn alternation_becomes_a_set() {
        let m = re("a|b|cd");
        assert_eq!(m.set_matches(), Some(vec!["a", "b", "cd"]));
        assert!(m.matches("cd") && !m.matches("c"));
        assert_eq!(re("(?i)a|b").set_matches(), None);
        assert!(re("(?i)a|b").matches("A"));
        assert!(re("foo.*").regex().unwrap().prefix() == Some("foo"));
        assert!(re("foo.*").matches("foo\nbar"));
    }

    #[test]
    fn not_regex_and_empty() {
        let m = Matcher::new(MatchType::NotRegexp, "x", "a|").unwrap();
        assert!(!m.matches(""));
        assert!(m.matches("b"));
        assert!(Matcher::new(MatchType::Regexp, "x", "(").is_err());
    }
}
