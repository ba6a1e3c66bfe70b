//! Relabeling: Prometheus's `relabel_configs` / `metric_relabel_configs` /
//! `write_relabel_configs` rules and their application to a label set.
//!
//! [`RelabelConfig`] deserializes one rule with Prometheus's defaults (`action: replace`,
//! `separator: ";"`, `regex: (.*)`, `replacement: $1`) and validates it as Prometheus's
//! `relabel.Config.Validate` does. Regexes are fully anchored (`^(?s:...)$`) with `\d \w \s \b`
//! ASCII-only as in Go's RE2. [`process`] applies rules in order exactly like
//! `relabel.ProcessBuilder`, including Go's `Regexp.Expand` template rules (`$1`, `${1}`,
//! `${name}`, `$$`; `$1x` names the group `1x`) and `hashmod`'s MD5-based hash.

mod md5;

use std::fmt;

use serde::de::Deserializer;
use serde::{Deserialize, Serialize, Serializer};
use strata_tsdb::labels::{Label, Labels};

use crate::config::duration::{deserialize_checked, scalar_string};
use crate::config::ValidationScheme;
use crate::error::{Error, Result};

/// What a rule does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Action {
    /// Match `regex` against the joined source values; on a match set `target_label` (itself
    /// expanded) to the expanded `replacement`, or delete it when that is empty.
    #[default]
    Replace,
    /// Drop the label set unless `regex` matches the joined source values.
    Keep,
    /// Drop the label set when `regex` matches the joined source values.
    Drop,
    /// Drop unless the joined source values equal the value of `target_label`.
    KeepEqual,
    /// Drop when the joined source values equal the value of `target_label`.
    DropEqual,
    /// Set `target_label` to MD5(joined source values) mod `modulus`.
    HashMod,
    /// Copy every label whose name matches `regex` to the name given by `replacement`.
    LabelMap,
    /// Remove every label whose name matches `regex`.
    LabelDrop,
    /// Remove every label whose name does not match `regex`.
    LabelKeep,
    /// Set `target_label` to the joined source values in lower case.
    Lowercase,
    /// Set `target_label` to the joined source values in upper case.
    Uppercase,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    /// Case-insensitive, as Prometheus.
    pub fn parse(s: &str) -> std::result::Result<Action, String> {
        Ok(match s.to_lowercase().as_str() {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return Err(format!("unknown relabel action {s:?}")),
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A relabeling regex: anchored, `.` matching newlines, Go's ASCII Perl classes.
#[derive(Clone)]
pub struct RelabelRegex {
    pattern: String,
    re: regex::Regex,
    /// False only for the implicit default `(.*)`; Prometheus distinguishes it from an
    /// explicit `(.*)` (the `replace` fast path and `keepequal`/`dropequal` validation).
    explicit: bool,
}

impl RelabelRegex {
    /// Compiles `pattern` as Prometheus's `relabel.NewRegexp`.
    pub fn new(pattern: &str) -> Result<Self> {
        let translated = strata_tsdb::labels::translate_perl_classes(pattern);
        let re = regex::Regex::new(&format!("^(?s:{translated})$")).map_err(|e| Error::Config {
            path: None,
            message: format!("invalid regex {pattern:?}: {}", one_line(&e.to_string())),
        })?;
        Ok(RelabelRegex {
            pattern: pattern.to_string(),
            re,
            explicit: true,
        })
    }

    /// The implicit default `(.*)`.
    pub fn default_regex() -> Self {
        RelabelRegex {
            pattern: "(.*)".into(),
            re: regex::Regex::new("^(?s:(.*))$").expect("constant regex compiles"),
            explicit: false,
        }
    }

    /// The pattern as written (without the anchors).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    /// True when this is the implicit default rather than a configured regex.
    pub fn is_default(&self) -> bool {
        !self.explicit
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.explicit == other.explicit
    }
}

impl fmt::Debug for RelabelRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.pattern)
    }
}

impl Serialize for RelabelRegex {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.pattern)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One relabeling rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator`; `None` when not written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_labels: Option<Vec<String>>,
    pub separator: String,
    #[serde(skip_serializing_if = "RelabelRegex::is_default")]
    pub regex: RelabelRegex,
    #[serde(skip_serializing_if = "is_zero")]
    pub modulus: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target_label: String,
    pub replacement: String,
    pub action: Action,
    /// Which target label names `replace` accepts; set by [`RelabelConfig::validate`].
    #[serde(skip)]
    pub name_validation: ValidationScheme,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Default for RelabelConfig {
    /// Prometheus's `DefaultRelabelConfig`: replace, `;`, `(.*)`, `$1`, no target.
    fn default() -> Self {
        RelabelConfig {
            source_labels: None,
            separator: ";".into(),
            regex: RelabelRegex::default_regex(),
            modulus: 0,
            target_label: String::new(),
            replacement: "$1".into(),
            action: Action::Replace,
            name_validation: ValidationScheme::Utf8,
        }
    }
}

fn opt_scalar<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    Option::<Scalar>::deserialize(d).map(|o| o.map(|s| s.0))
}

/// Wraps [`scalar_string`] so that it can sit inside an `Option`.
struct Scalar(String);
impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        scalar_string(d).map(Scalar)
    }
}

/// `Some(None)` for an explicit null, `None` (via `default`) when absent.
fn explicit_opt<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<String>>, D::Error> {
    opt_scalar(d).map(Some)
}

impl<'de> Deserialize<'de> for RelabelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            source_labels: Option<Vec<String>>,
            #[serde(default, deserialize_with = "opt_scalar")]
            separator: Option<String>,
            #[serde(default, deserialize_with = "explicit_opt")]
            regex: Option<Option<String>>,
            #[serde(default)]
            modulus: Option<u64>,
            #[serde(default, deserialize_with = "opt_scalar")]
            target_label: Option<String>,
            #[serde(default, deserialize_with = "opt_scalar")]
            replacement: Option<String>,
            #[serde(default, deserialize_with = "opt_scalar")]
            action: Option<String>,
        }
        deserialize_checked(d, |raw: Raw| {
            let mut c = RelabelConfig {
                source_labels: raw.source_labels,
                ..Default::default()
            };
            if let Some(s) = raw.separator {
                c.separator = s;
            }
            if let Some(r) = raw.regex {
                // An explicit null compiles the empty pattern, as Prometheus.
                c.regex = RelabelRegex::new(r.as_deref().unwrap_or("")).map_err(config_message)?;
            }
            c.modulus = raw.modulus.unwrap_or(0);
            c.target_label = raw.target_label.unwrap_or_default();
            if let Some(r) = raw.replacement {
                c.replacement = r;
            }
            if let Some(a) = raw.action {
                c.action = Action::parse(&a)?;
            }
            c.validate(ValidationScheme::Utf8)?;
            Ok(c)
        })
    }
}

fn config_message(e: Error) -> String {
    match e {
        Error::Config { message, .. } => message,
        other => other.to_string(),
    }
}

/// Prometheus's `relabelTargetLegacy`: legacy label-name characters plus `$var` / `${var}`.
fn valid_legacy_with_vars(s: &str) -> bool {
    // ^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$
    let b = s.as_bytes();
    if b.is_empty() {
        return false;
    }
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    let mut first = true;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            i += 1;
        } else if c == b'$' {
            if i + 1 < b.len() && b[i + 1] == b'{' {
                let start = i + 2;
                let mut k = start;
                while k < b.len() && word(b[k]) {
                    k += 1;
                }
                if k == start || k >= b.len() || b[k] != b'}' {
                    return false;
                }
                i = k + 1;
            } else {
                let start = i + 1;
                let mut k = start;
                while k < b.len() && word(b[k]) {
                    k += 1;
                }
                if k == start {
                    return false;
                }
                i = k;
            }
        } else if c.is_ascii_digit() && !first {
            i += 1;
        } else {
            return false;
        }
        first = false;
    }
    true
}

impl RelabelConfig {
    /// Prometheus's `relabel.Config.Validate` under the given label-name scheme; remembers the
    /// scheme for [`process`].
    pub fn validate(&mut self, scheme: ValidationScheme) -> std::result::Result<(), String> {
        use Action::*;
        self.name_validation = scheme;
        let a = self.action;
        if self.modulus == 0 && a == HashMod {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        if matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && self.target_label.is_empty()
        {
            return Err(format!(
                "relabel configuration for {a} action requires 'target_label' value"
            ));
        }
        let has_var = self.target_label.contains('$');
        let valid_with_vars = |v: &str| match scheme {
            ValidationScheme::Utf8 => scheme.is_valid_label_name(v),
            ValidationScheme::Legacy => valid_legacy_with_vars(v),
        };
        let invalid_target = || {
            format!(
                "{:?} is invalid 'target_label' for {a} action",
                self.target_label
            )
        };
        if a == Replace && !has_var && !scheme.is_valid_label_name(&self.target_label) {
            return Err(invalid_target());
        }
        if a == Replace && has_var && !valid_with_vars(&self.target_label) {
            return Err(invalid_target());
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual) {
            if !scheme.is_valid_label_name(&self.target_label) {
                return Err(invalid_target());
            }
            if self.replacement != "$1" {
                return Err(format!("'replacement' can not be set for {a} action"));
            }
        }
        if a == LabelMap && !valid_with_vars(&self.replacement) {
            return Err(format!(
                "{:?} is invalid 'replacement' for {a} action",
                self.replacement
            ));
        }
        if a == HashMod && !scheme.is_valid_label_name(&self.target_label) {
            return Err(invalid_target());
        }
        if matches!(a, DropEqual | KeepEqual)
            && (self.regex.explicit
                || self.modulus != 0
                || self.separator != ";"
                || self.replacement != "$1")
        {
            return Err(format!(
                "{a} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (self.source_labels.is_some()
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != ";"
                || self.replacement != "$1")
        {
            return Err(format!(
                "{a} action requires only 'regex', and no other fields"
            ));
        }
        Ok(())
    }
}

/// A label set under modification with the semantics of Prometheus's `labels.Builder`: a base
/// set plus deletions and additions in insertion order, where iteration sees a snapshot.
#[derive(Clone, Debug)]
pub(crate) struct LabelBuilder {
    base: Labels,
    del: Vec<String>,
    add: Vec<(String, String)>,
}

impl LabelBuilder {
    pub(crate) fn new(base: Labels) -> Self {
        LabelBuilder {
            base,
            del: Vec::new(),
            add: Vec::new(),
        }
    }

    pub(crate) fn get(&self, name: &str) -> &str {
        if let Some((_, v)) = self.add.iter().find(|(n, _)| n == name) {
            return v;
        }
        if self.del.iter().any(|n| n == name) {
            return "";
        }
        self.base.get_or_empty(name)
    }

    /// Sets `name`; an empty value deletes it.
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            self.del(name);
            return;
        }
        if let Some(a) = self.add.iter_mut().find(|(n, _)| n == name) {
            a.1 = value.to_string();
        } else {
            self.add.push((name.to_string(), value.to_string()));
        }
    }

    pub(crate) fn del(&mut self, name: &str) {
        self.add.retain(|(n, _)| n != name);
        self.del.push(name.to_string());
    }

    /// The current labels, in Prometheus's `Range` order (base labels not overridden, then
    /// additions in insertion order).
    pub(crate) fn snapshot(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .base
            .iter()
            .filter(|l| {
                !self.del.iter().any(|d| **d == *l.name)
                    && !self.add.iter().any(|(n, _)| **n == *l.name)
            })
            .map(|l| (l.name.to_string(), l.value.to_string()))
            .collect();
        v.extend(self.add.iter().cloned());
        v
    }

    pub(crate) fn labels(&self) -> Labels {
        Labels::new(
            self.snapshot()
                .into_iter()
                .map(|(n, v)| Label::new(n, v))
                .collect(),
        )
    }
}

/// Applies `cfgs` in order to `labels`. `None` means a `keep`/`drop`/`keepequal`/`dropequal`
/// rule dropped the set; otherwise the resulting labels (possibly empty, which callers treat
/// as dropped when relabeling series, as Prometheus does).
pub fn process(labels: &Labels, cfgs: &[RelabelConfig]) -> Option<Labels> {
    if cfgs.is_empty() {
        return Some(labels.clone());
    }
    let mut b = LabelBuilder::new(labels.clone());
    if process_builder(&mut b, cfgs) {
        Some(b.labels())
    } else {
        None
    }
}

/// [`process`] on a builder; false when the labels are dropped.
pub(crate) fn process_builder(b: &mut LabelBuilder, cfgs: &[RelabelConfig]) -> bool {
    cfgs.iter().all(|c| relabel_one(c, b))
}

fn relabel_one(cfg: &RelabelConfig, b: &mut LabelBuilder) -> bool {
    let val = match &cfg.source_labels {
        None => String::new(),
        Some(names) => names
            .iter()
            .map(|n| b.get(n))
            .collect::<Vec<_>>()
            .join(&cfg.separator),
    };
    match cfg.action {
        Action::Drop => {
            if cfg.regex.is_match(&val) {
                return false;
            }
        }
        Action::Keep => {
            if !cfg.regex.is_match(&val) {
                return false;
            }
        }
        Action::DropEqual => {
            if b.get(&cfg.target_label) == val {
                return false;
            }
        }
        Action::KeepEqual => {
            if b.get(&cfg.target_label) != val {
                return false;
            }
        }
        Action::Replace => {
            if val.is_empty()
                && cfg.regex.is_default()
                && !cfg.target_label.contains('$')
                && !cfg.replacement.contains('$')
            {
                b.set(&cfg.target_label, &cfg.replacement);
                return true;
            }
            let Some(caps) = cfg.regex.re.captures(&val) else {
                return true;
            };
            let target = expand(&cfg.regex.re, &caps, &cfg.target_label);
            if !cfg.name_validation.is_valid_label_name(&target) {
                return true;
            }
            let res = expand(&cfg.regex.re, &caps, &cfg.replacement);
            if res.is_empty() {
                b.del(&target);
            } else {
                b.set(&target, &res);
            }
        }
        Action::Lowercase => {
            let v: String = val.chars().flat_map(char::to_lowercase).collect();
            b.set(&cfg.target_label, &v);
        }
        Action::Uppercase => {
            let v: String = val.chars().flat_map(char::to_uppercase).collect();
            b.set(&cfg.target_label, &v);
        }
        Action::HashMod => {
            let digest = md5::digest(val.as_bytes());
            let mut last8 = [0u8; 8];
            last8.copy_from_slice(&digest[8..]);
            let m = u64::from_be_bytes(last8) % cfg.modulus.max(1);
            b.set(&cfg.target_label, &m.to_string());
        }
        Action::LabelMap => {
            for (name, value) in b.snapshot() {
                if let Some(caps) = cfg.regex.re.captures(&name) {
                    let res = expand(&cfg.regex.re, &caps, &cfg.replacement);
                    if !res.is_empty() {
                        b.set(&res, &value);
                    }
                }
            }
        }
        Action::LabelDrop => {
            for (name, _) in b.snapshot() {
                if cfg.regex.is_match(&name) {
                    b.del(&name);
                }
            }
        }
        Action::LabelKeep => {
            for (name, _) in b.snapshot() {
                if !cfg.regex.is_match(&name) {
                    b.del(&name);
                }
            }
        }
    }
    true
}

/// Go's `Regexp.ExpandString`: `$name` / `${name}` where name is letters, digits and `_`
/// (as long as possible), numeric names without leading zeros index groups, `$$` is `$`,
/// anything else after `$` is literal. Unknown or unmatched groups expand to nothing.
pub fn expand(re: &regex::Regex, caps: &regex::Captures<'_>, template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        match extract_name(rest) {
            None => out.push('$'),
            Some((name, after)) => {
                rest = after;
                match group_number(name) {
                    Some(n) => {
                        if let Some(m) = caps.get(n) {
                            out.push_str(m.as_str());
                        }
                    }
                    None => {
                        if re.capture_names().any(|n| n == Some(name)) {
                            if let Some(m) = caps.name(name) {
                                out.push_str(m.as_str());
                            }
                        }
                    }
                }
            }
        }
    }
    out.push_str(rest);
    out
}

/// Parses the name after a `$`: `{name}` or a maximal run of name characters. Returns the name
/// and the text after it.
fn extract_name(s: &str) -> Option<(&str, &str)> {
    let (brace, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let end = body
        .char_indices()
        .find(|(_, c)| !(c.is_alphabetic() || c.is_numeric() || *c == '_'))
        .map(|(i, _)| i)
        .unwrap_or(body.len());
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    if brace {
        let after = body[end..].strip_prefix('}')?;
        Some((name, after))
    } else {
        Some((name, &body[end..]))
    }
}

/// A group number when `name` is all ASCII digits without a leading zero (and below 1e8).
fn group_number(name: &str) -> Option<usize> {
    if !name.bytes().all(|c| c.is_ascii_digit()) || (name.len() > 1 && name.starts_with('0')) {
        return None;
    }
    name.parse::<usize>().ok().filter(|n| *n < 100_000_000)
}

#[cfg(test)]
mod tests;
