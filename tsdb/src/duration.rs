//! Prometheus's duration notation (`model.ParseDuration`): `0`, or `<digits><unit>` groups
//! with units `y w d h m s ms` in strictly decreasing order (`1h30m`, `10s53ms`), no sign, no
//! fractions, bounded like Go's nanosecond `time.Duration`. The one parser for flags,
//! configuration files, PromQL and test scripts.

use std::fmt;

/// Why a duration string was refused. The messages are Prometheus's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    Empty,
    Invalid { input: String },
    UnknownUnit { unit: String, input: String },
    OutOfRange,
}

impl DurationError {
    /// The message with strings quoted by `quote` (PromQL quotes as Go's `%q` does).
    pub fn message_with(&self, quote: &dyn Fn(&str) -> String) -> String {
        match self {
            DurationError::Empty => "empty duration string".into(),
            DurationError::Invalid { input } => {
                format!("not a valid duration string: {}", quote(input))
            }
            DurationError::UnknownUnit { unit, input } => {
                format!("unknown unit {} in duration {}", quote(unit), quote(input))
            }
            DurationError::OutOfRange => "duration out of range".into(),
        }
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message_with(&|s| format!("{s:?}")))
    }
}

impl std::error::Error for DurationError {}

/// The units in milliseconds, largest first: the order Prometheus requires them in.
pub const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a Prometheus duration into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, DurationError> {
    match s {
        "0" => return Ok(0),
        "" => return Err(DurationError::Empty),
        _ => {}
    }
    let invalid = || DurationError::Invalid { input: s.into() };
    // Go bounds durations by int64 nanoseconds.
    let max_ms = i64::MAX as u64 / 1_000_000;
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    let mut last_unit: Option<usize> = None;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return Err(invalid());
        }
        let v: u64 = s[start..i].parse().map_err(|_| DurationError::OutOfRange)?;
        let ustart = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        if i == ustart {
            return Err(invalid());
        }
        let unit = &s[ustart..i];
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(DurationError::UnknownUnit {
                unit: unit.into(),
                input: s.into(),
            });
        };
        if last_unit.is_some_and(|l| pos <= l) {
            return Err(invalid());
        }
        last_unit = Some(pos);
        total = v
            .checked_mul(UNITS[pos].1)
            .and_then(|x| total.checked_add(x))
            .filter(|t| *t <= max_ms)
            .ok_or(DurationError::OutOfRange)?;
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_notation() {
        for (s, ms) in [
            ("0", 0),
            ("2h", 7_200_000),
            ("1d12h", 129_600_000),
            ("1h30m", 5_400_000),
            ("10s53ms", 10_053),
            ("1500ms", 1500),
            ("1y", 365 * 86_400_000),
            ("2w", 14 * 86_400_000),
        ] {
            assert_eq!(parse_duration_ms(s), Ok(ms), "{s}");
        }
        for (s, msg) in [
            ("", "empty duration string"),
            ("5", "not a valid duration string: \"5\""),
            ("x", "not a valid duration string: \"x\""),
            ("-1h", "not a valid duration string: \"-1h\""),
            ("1.5h", "unknown unit \".\" in duration \"1.5h\""),
            ("30m1h", "not a valid duration string: \"30m1h\""),
            ("1h1h", "not a valid duration string: \"1h1h\""),
            ("3q", "unknown unit \"q\" in duration \"3q\""),
            ("999999999y", "duration out of range"),
            ("99999999999999999999s", "duration out of range"),
        ] {
            assert_eq!(
                parse_duration_ms(s).map_err(|e| e.to_string()),
                Err(msg.to_string()),
                "{s}"
            );
        }
        // The largest: Go's time.Duration holds 292 years.
        assert!(parse_duration_ms("292y").is_ok());
        assert!(parse_duration_ms("293y").is_err());
    }
}
