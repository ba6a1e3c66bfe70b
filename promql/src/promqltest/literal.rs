//! Scalar literals of the `.test` language, with Go's exact acceptance rules: Prometheus
//! durations (`model.ParseDuration`), numbers (`strconv.ParseInt(s, 0, 64)` falling back to
//! `strconv.ParseFloat`), and quoted strings (Prometheus `strutil.Unquote` for label values,
//! Go `strconv.Unquote` for `expect string`).

/// Parses a Prometheus duration (`model.ParseDuration`) into milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    strata_tsdb::duration::parse_duration_ms(s).map_err(|e| e.to_string())
}

/// Go's `underscoreOK`: underscores only between digits (or after a base prefix).
fn underscore_ok(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] | 0x20 == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Go's `strconv.ParseInt(s, 0, 64)`: optional sign, base prefixes `0x` `0o` `0b` and a bare
/// leading `0` for octal, underscores between digits.
pub fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return None;
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if body.contains('_') && !underscore_ok(body) {
        return None;
    }
    let cleaned: String = digits.chars().filter(|&c| c != '_').collect();
    if cleaned.is_empty() || cleaned.starts_with(['+', '-']) {
        return None;
    }
    let mag = u64::from_str_radix(&cleaned, radix).ok()?;
    if neg {
        if mag <= 1u64 << 63 {
            Some((mag as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(mag).ok()
    }
}

/// Go's `strconv.ParseFloat(s, 64)`: decimal and hexadecimal (`0x1.8p3`) floats, `inf`,
/// `infinity`, `nan` in any case with an optional sign, underscores between digits.
pub fn go_parse_float(s: &str) -> Option<f64> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let sign = |v: f64| if neg { -v } else { v };
    match lower.as_str() {
        "inf" | "infinity" => return Some(sign(f64::INFINITY)),
        // Go accepts only an unsigned "nan".
        "nan" if s.len() == body.len() => return Some(f64::NAN),
        _ => {}
    }
    if body.contains('_') && !underscore_ok(body) {
        return None;
    }
    let cleaned: String = lower.chars().filter(|&c| c != '_').collect();
    if let Some(hex) = cleaned.strip_prefix("0x") {
        return parse_hex_float(hex).map(sign);
    }
    // Rust's grammar for decimal floats equals Go's except for the special names handled above.
    if cleaned.is_empty()
        || !cleaned
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'))
        || cleaned.starts_with(['+', '-'])
    {
        return None;
    }
    cleaned.parse::<f64>().ok().map(sign)
}

/// Hex float body after `0x`: `h[.h]p[+-]d` (exponent mandatory, as in Go).
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mant, exp) = s.split_once('p')?;
    let exp: i32 = exp.parse().ok()?;
    let (int_part, frac_part) = mant.split_once('.').unwrap_or((mant, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in int_part.chars() {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in frac_part.chars() {
        value += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(value * 2f64.powi(exp))
}

/// Prometheus's number conversion (`parser.number`, promqltest's `parseNumber`): integer
/// syntax first (so `010` is octal 8), then float syntax.
pub fn go_parse_number(s: &str) -> Option<f64> {
    go_parse_int(s)
        .map(|n| n as f64)
        .or_else(|| go_parse_float(s))
}

pub use crate::parser::QuoteRules;

/// Unquotes a complete quoted literal (quotes included) with the parser's unquoting; bytes
/// that are not valid UTF-8 are an error here (test scripts must say what they mean).
pub fn unquote(s: &str, rules: QuoteRules) -> Result<String, String> {
    let out = crate::parser::unquote_bytes(s, rules)
        .ok_or_else(|| format!("invalid quoted string {s}"))?;
    String::from_utf8(out).map_err(|_| format!("quoted string {s} is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("5m"), Ok(300_000));
        assert_eq!(parse_duration_ms("10s53ms"), Ok(10_053));
        assert_eq!(parse_duration_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("1w"), Ok(604_800_000));
        assert_eq!(parse_duration_ms("1y"), Ok(31_536_000_000));
        assert_eq!(parse_duration_ms("100ms"), Ok(100));
        assert!(parse_duration_ms("").is_err());
        assert!(parse_duration_ms("1").is_err());
        assert!(parse_duration_ms("30m1h").is_err());
        assert!(parse_duration_ms("1m1m").is_err());
        assert!(parse_duration_ms("-1m").is_err());
        assert!(parse_duration_ms("1.5m").is_err());
        assert!(parse_duration_ms("1x").is_err());
        assert!(
            parse_duration_ms("300y").is_err(),
            "beyond Go's time.Duration"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(go_parse_number("7"), Some(7.0));
        assert_eq!(go_parse_number("-2.5"), Some(-2.5));
        assert_eq!(go_parse_number("1e3"), Some(1000.0));
        assert_eq!(go_parse_number(".5"), Some(0.5));
        assert_eq!(go_parse_number("5."), Some(5.0));
        assert_eq!(go_parse_number("010"), Some(8.0), "octal, as Go");
        assert_eq!(
            go_parse_number("09"),
            Some(9.0),
            "not octal: float fallback"
        );
        assert_eq!(go_parse_number("0x10"), Some(16.0));
        assert_eq!(go_parse_number("1_000"), Some(1000.0));
        assert_eq!(go_parse_number("0x1p-2"), Some(0.25));
        assert_eq!(go_parse_number("Inf"), Some(f64::INFINITY));
        assert_eq!(go_parse_number("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(go_parse_number("+inf"), Some(f64::INFINITY));
        assert!(go_parse_number("NaN").is_some_and(f64::is_nan));
        assert_eq!(go_parse_number("1__0"), None);
        assert_eq!(go_parse_number("_1"), None);
        assert_eq!(go_parse_number("1m"), None);
        assert_eq!(go_parse_number("foo"), None);
        assert_eq!(go_parse_number(""), None);
        assert_eq!(
            go_parse_number("99999999999999999999"),
            Some(99999999999999999999.0)
        );
    }

    #[test]
    fn unquoting() {
        use QuoteRules::*;
        assert_eq!(unquote(r#""a\"b""#, PromQL).as_deref(), Ok("a\"b"));
        assert_eq!(unquote(r"'a\'b'", PromQL).as_deref(), Ok("a'b"));
        assert_eq!(unquote(r#""\n\t\\""#, PromQL).as_deref(), Ok("\n\t\\"));
        assert_eq!(unquote(r#""\u00e9\x41\101""#, PromQL).as_deref(), Ok("éAA"));
        assert_eq!(unquote("`a\\nb`", PromQL).as_deref(), Ok("a\\nb"));
        assert_eq!(unquote(r#""é""#, PromQL).as_deref(), Ok("é"));
        assert!(unquote(r#""a"b""#, PromQL).is_err());
        assert!(unquote(r#""\'""#, PromQL).is_err());
        assert!(unquote(r#""\q""#, PromQL).is_err());
        assert!(unquote(r#""abc"#, PromQL).is_err());
        assert!(unquote("'ab'", Go).is_err());
        assert_eq!(unquote("'a'", Go).as_deref(), Ok("a"));
        assert_eq!(unquote(r#""""#, Go).as_deref(), Ok(""));
    }
}
