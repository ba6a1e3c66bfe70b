//! Prometheus's duration and byte-size notations as they appear in `prometheus.yml`.
//!
//! [`Duration`] is `model.Duration`: integer amounts of `y w d h m s ms` in that order, each at
//! most once (`1d2h30m`, `500ms`, `1y`), or a bare `0`. A year is 365 days and a week 7 days.
//! It prints back in the same form (`90s` prints as `1m30s`, years and weeks only when exact).
//!
//! [`ByteSize`] is `units.Base2Bytes`: `B`, `KB`/`KiB`, `MB`/`MiB`, ... `EB`/`EiB`, all powers
//! of 1024, with optional fractions and sequences (`1.5MB`, `1GB512MB`), a bare `0`, or a YAML
//! integer meaning bytes.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A non-negative duration with millisecond resolution, in Prometheus notation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

use strata_tsdb::duration::UNITS;

impl Duration {
    /// The zero duration.
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }
    /// Whole milliseconds.
    pub fn as_millis(&self) -> u64 {
        self.0.as_millis() as u64
    }
    pub fn as_std(&self) -> std::time::Duration {
        self.0
    }
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// Parses Prometheus's notation. The error text is Prometheus's.
    pub fn parse(s: &str) -> Result<Self, String> {
        strata_tsdb::duration::parse_duration_ms(s)
            .map(|ms| Duration::from_millis(ms as u64))
            .map_err(|e| e.to_string())
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Duration::parse(s)
    }
}

impl fmt::Display for Duration {
    /// Prometheus's form: `0s`, `1m30s`, `2w` (years and weeks only when they divide exactly).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, mult) in UNITS {
            let exact_only = unit == "y" || unit == "w";
            if exact_only && !ms.is_multiple_of(mult) {
                continue;
            }
            let v = ms / mult;
            if v > 0 {
                write!(f, "{v}{unit}")?;
                ms -= v * mult;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Parse inside the visitor so that errors carry the value's position.
        d.deserialize_any(ScalarVisitor(
            |s: &str| Duration::parse(s),
            "a duration such as 15s",
        ))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A byte count written with base-2 units (Prometheus's `units.Base2Bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `10MB`, `1.5GiB`, `1GB512MB`, `0`. `KB` and `KiB` both mean 1024.
    pub fn parse(s: &str) -> Result<Self, String> {
        let invalid = || format!("units: invalid {s}");
        let mut rest = s;
        if let Some(r) = rest.strip_prefix('+') {
            rest = r;
        } else if rest.starts_with('-') {
            // Negative sizes parse in Go but are meaningless for a limit.
            return Err(format!("byte size {s:?} must not be negative"));
        }
        if rest == "0" {
            return Ok(ByteSize(0));
        }
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut total = 0f64;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let num = &rest[..num_end];
            if num.is_empty() || num == "." || num.matches('.').count() > 1 {
                return Err(invalid());
            }
            let v: f64 = num.parse().map_err(|_| invalid())?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            rest = &rest[unit_end..];
            let mult =
                byte_unit(unit).ok_or_else(|| format!("units: unknown unit {unit} in {s}"))?;
            total += v * mult;
        }
        if total >= 9.223_372_036_854_776e18 {
            return Err("units: overflow parsing unit".into());
        }
        Ok(ByteSize(total as u64))
    }
}

fn byte_unit(u: &str) -> Option<f64> {
    let (prefix, suffix) = match u {
        "B" => return Some(1.0),
        _ if u.len() == 3 && u.ends_with("iB") => (&u[..1], "iB"),
        _ if u.len() == 2 && u.ends_with('B') => (&u[..1], "B"),
        _ => return None,
    };
    let _ = suffix;
    let pow = match prefix {
        "K" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        "P" => 5,
        "E" => 6,
        _ => return None,
    };
    Some(1024f64.powi(pow))
}

impl fmt::Display for ByteSize {
    /// `units.Base2Bytes.String()`: `0B`, `10MiB`, `1GiB512MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PREFIXES: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
        let mut n = self.0;
        if n == 0 {
            return f.write_str("0B");
        }
        let mut parts = Vec::new();
        for p in PREFIXES {
            let r = n % 1024;
            if r != 0 {
                let suffix = if p.is_empty() { "B" } else { "iB" };
                parts.push(format!("{r}{p}{suffix}"));
            }
            n /= 1024;
            if n == 0 {
                break;
            }
        }
        parts.reverse();
        f.write_str(&parts.concat())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte size such as 10MB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("byte size {v} must not be negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Visits any scalar as text and converts it with the function, inside the deserializer call
/// (so that an error gets the YAML position of the value).
pub(crate) struct ScalarVisitor<F>(pub F, pub &'static str);

impl<T, F: FnOnce(&str) -> Result<T, String>> Visitor<'_> for ScalarVisitor<F> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.0)(v).map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

/// Deserializes a mapping as `R`, then converts it with `check` while still inside the
/// deserializer, so that a validation error carries the mapping's YAML path and position.
pub(crate) fn deserialize_checked<'de, D, R, T, F>(d: D, check: F) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    R: Deserialize<'de>,
    F: FnOnce(R) -> Result<T, String>,
{
    struct V<R, T, F>(F, std::marker::PhantomData<fn() -> (R, T)>);
    impl<'de, R: Deserialize<'de>, T, F: FnOnce(R) -> Result<T, String>> Visitor<'de> for V<R, T, F> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping")
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            let raw = R::deserialize(de::value::MapAccessDeserializer::new(map))?;
            (self.0)(raw).map_err(de::Error::custom)
        }
    }
    d.deserialize_map(V(check, std::marker::PhantomData))
}

/// Reads any YAML scalar as its text (Go's yaml.v2 lets `15` unmarshal into a string), so that
/// `scrape_interval: 15` reports Prometheus's "not a valid duration string" rather than a
/// type error.
pub(crate) fn scalar_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let ok = [
            ("0", 0),
            ("0s", 0),
            ("500ms", 500),
            ("15s", 15_000),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("1d2h30m", 95_400_000),
            ("1w", 7 * 86_400_000),
            ("1y", 365 * 86_400_000),
            (
                "1y2w3d4h5m6s7ms",
                ((((365 + 2 * 7 + 3) * 24 + 4) * 60 + 5) * 60 + 6) * 1000 + 7,
            ),
            ("90s", 90_000),
        ];
        for (s, ms) in ok {
            assert_eq!(Duration::parse(s).unwrap().as_millis(), ms, "{s}");
        }
        for bad in [
            "", "1", "15", "1.5s", "s", "1m1h", "1s1s", "1x", "-1s", "1h 30m", "1S",
        ] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(
            Duration::parse("1x").unwrap_err(),
            "unknown unit \"x\" in duration \"1x\""
        );
        assert!(Duration::parse("300y").is_err(), "overflows time.Duration");
    }

    #[test]
    fn prints_prometheus_form() {
        let cases = [
            ("0", "0s"),
            ("90s", "1m30s"),
            ("500ms", "500ms"),
            ("1d2h30m", "1d2h30m"),
            ("14d", "2w"),
            ("10d", "10d"),
            ("365d", "1y"),
            ("1h0m0s", "1h"),
            ("1s500ms", "1s500ms"),
        ];
        for (input, want) in cases {
            assert_eq!(Duration::parse(input).unwrap().to_string(), want, "{input}");
        }
        // "12w6d" prints as days because weeks do not divide 90 days exactly.
        assert_eq!(Duration::parse("90d").unwrap().to_string(), "90d");
    }

    #[test]
    fn parses_byte_sizes() {
        let ok = [
            ("0", 0),
            ("1B", 1),
            ("10KB", 10 * 1024),
            ("10KiB", 10 * 1024),
            ("10MB", 10 << 20),
            ("1GB", 1 << 30),
            ("1.5MB", 3 << 19),
            ("1GB512MB", (1 << 30) + (512 << 20)),
            ("2TiB", 2 << 40),
        ];
        for (s, n) in ok {
            assert_eq!(ByteSize::parse(s).unwrap().0, n, "{s}");
        }
        for bad in ["", "10", "10kB", "10XB", "MB", "1..5MB", "-1MB"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(ByteSize(10 << 20).to_string(), "10MiB");
        assert_eq!(ByteSize((1 << 30) + 1).to_string(), "1GiB1B");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }
}
