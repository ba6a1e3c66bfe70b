//! Printing ASTs back to PromQL text, as Prometheus's `String()` methods do
//! (`sum by (job) (rate(x[5m]))`, durations as `1h30m`, `@ 123.000`, sorted matchers).
//! Parsing the printed text gives back an equal tree.

use std::fmt::{self, Display, Formatter, Write};

use strata_tsdb::labels::METRIC_NAME;
use strata_tsdb::{MatchType, Matcher};

use super::ast::*;
use super::lexer::go_quote;

/// Formats milliseconds as Prometheus's `model.Duration` (`1h30m`, `2w`, `0s`); negative values
/// get a leading `-`.
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut ms = if ms < 0 {
        out.push('-');
        ms.unsigned_abs()
    } else {
        ms as u64
    };
    let units: [(&str, u64, bool); 7] = [
        ("y", 365 * 24 * 3_600_000, true),
        ("w", 7 * 24 * 3_600_000, true),
        ("d", 24 * 3_600_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ];
    for (u, mult, exact) in units {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            let _ = write!(out, "{v}{u}");
            ms -= v * mult;
        }
    }
    out
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`, with `+Inf`/`-Inf`/`NaN`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Go's `%v` for a float64: shortest `%g`, exponent form when the exponent is < -4 or >= 6.
fn format_go_v(v: f64) -> String {
    if !v.is_finite() {
        return format_float(v);
    }
    if v == 0.0 {
        return format_float(v);
    }
    let sci = format!("{v:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        format_float(v)
    }
}

fn is_legacy_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_ascii_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

fn write_labels(f: &mut Formatter<'_>, labels: &[String]) -> fmt::Result {
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        if is_legacy_label_name(l) {
            f.write_str(l)?;
        } else {
            f.write_str(&go_quote(l))?;
        }
    }
    Ok(())
}

/// A matcher as Prometheus prints it: `name="value"`, quoting non-legacy names.
pub fn matcher_string(m: &Matcher) -> String {
    let name = if m.name.is_empty() || !is_legacy_label_name(&m.name) {
        go_quote(&m.name)
    } else {
        m.name.clone()
    };
    let op = match m.typ {
        MatchType::Equal => "=",
        MatchType::NotEqual => "!=",
        MatchType::Regexp => "=~",
        MatchType::NotRegexp => "!~",
    };
    format!("{name}{op}{}", go_quote(&m.value))
}

fn format_at(at: &Option<AtModifier>) -> String {
    match at {
        None => String::new(),
        Some(AtModifier::Timestamp(ms)) => format!(" @ {:.3}", *ms as f64 / 1000.0),
        Some(AtModifier::Start) => " @ start()".into(),
        Some(AtModifier::End) => " @ end()".into(),
    }
}

fn format_offset(o: &Option<Duration>) -> String {
    match o {
        None | Some(Duration::Ms(0)) => String::new(),
        Some(Duration::Ms(ms)) => format!(" offset {}", format_duration_ms(*ms)),
        Some(Duration::Expr(e)) => match e.as_ref() {
            // Only an atom may follow `offset` without parentheses.
            DurationExpr::Binary { .. } => format!(" offset ({e})"),
            _ => format!(" offset {e}"),
        },
    }
}

impl Display for Duration {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Duration::Ms(ms) => f.write_str(&format_duration_ms(*ms)),
            Duration::Expr(e) => write!(f, "{e}"),
        }
    }
}

impl Display for DurationExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            DurationExpr::Number(v) => {
                let ms = v * 1000.0;
                if *v > 0.0 && ms.fract() == 0.0 && ms < 9.0e15 {
                    f.write_str(&format_duration_ms(ms as i64))
                } else {
                    f.write_str(&format_float(*v))
                }
            }
            DurationExpr::Step => f.write_str("step()"),
            DurationExpr::Range => f.write_str("range()"),
            DurationExpr::Neg(e) => write!(f, "-{e}"),
            DurationExpr::Paren(e) => write!(f, "({e})"),
            DurationExpr::Binary { op, lhs, rhs } => {
                let o = match op {
                    DurationOp::Add => "+",
                    DurationOp::Sub => "-",
                    DurationOp::Mul => "*",
                    DurationOp::Div => "/",
                    DurationOp::Mod => "%",
                    DurationOp::Pow => "^",
                };
                write!(f, "{lhs} {o} {rhs}")
            }
            DurationExpr::MinOf(a, b) => write!(f, "min_of({a}, {b})"),
            DurationExpr::MaxOf(a, b) => write!(f, "max_of({a}, {b})"),
        }
    }
}

impl VectorSelector {
    fn write_base(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let name = self.name.as_deref().unwrap_or("");
        let mut strs: Vec<String> = self
            .matchers
            .iter()
            .filter(|m| {
                !(m.name == METRIC_NAME
                    && m.typ == MatchType::Equal
                    && m.value == name
                    && !m.value.is_empty())
            })
            .map(matcher_string)
            .collect();
        f.write_str(name)?;
        if !strs.is_empty() {
            strs.sort();
            write!(f, "{{{}}}", strs.join(","))?;
        }
        Ok(())
    }

    fn extended(&self) -> &'static str {
        if self.anchored {
            " anchored"
        } else if self.smoothed {
            " smoothed"
        } else {
            ""
        }
    }
}

impl Display for VectorSelector {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.write_base(f)?;
        write!(
            f,
            "{}{}{}",
            format_at(&self.at),
            self.extended(),
            format_offset(&self.offset)
        )
    }
}

impl Display for MatrixSelector {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.vector.write_base(f)?;
        write!(
            f,
            "[{}]{}{}{}",
            self.range,
            self.vector.extended(),
            format_at(&self.vector.at),
            format_offset(&self.vector.offset)
        )
    }
}

impl Display for VectorMatching {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let grouped = matches!(
            self.card,
            VectorMatchCardinality::ManyToOne | VectorMatchCardinality::OneToMany
        );
        if !self.labels.is_empty() || self.on || grouped {
            f.write_str(if self.on { " on (" } else { " ignoring (" })?;
            write_labels(f, &self.labels)?;
            f.write_str(")")?;
        }
        if grouped {
            f.write_str(if self.card == VectorMatchCardinality::ManyToOne {
                " group_left ("
            } else {
                " group_right ("
            })?;
            write_labels(f, &self.include)?;
            f.write_str(")")?;
        }
        match (self.fill_lhs, self.fill_rhs) {
            (Some(l), Some(r)) if l == r || (l.is_nan() && r.is_nan()) => {
                write!(f, " fill ({})", format_go_v(l))?
            }
            (l, r) => {
                if let Some(l) = l {
                    write!(f, " fill_left ({})", format_go_v(l))?;
                }
                if let Some(r) = r {
                    write!(f, " fill_right ({})", format_go_v(r))?;
                }
            }
        }
        Ok(())
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::NumberLiteral { val, .. } => f.write_str(&format_float(*val)),
            Expr::StringLiteral { val, .. } => f.write_str(&go_quote(val)),
            Expr::VectorSelector(vs) => write!(f, "{vs}"),
            Expr::MatrixSelector(m) => write!(f, "{m}"),
            Expr::Subquery(s) => {
                write!(f, "{}[{}:", s.expr, s.range)?;
                if let Some(step) = &s.step {
                    write!(f, "{step}")?;
                }
                write!(f, "]{}{}", format_at(&s.at), format_offset(&s.offset))
            }
            Expr::Call(c) => {
                write!(f, "{}(", c.func.name)?;
                for (i, a) in c.args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
            Expr::Aggregate(a) => {
                f.write_str(a.op.name())?;
                if a.without {
                    f.write_str(" without (")?;
                    write_labels(f, &a.grouping)?;
                    f.write_str(") ")?;
                } else if !a.grouping.is_empty() {
                    f.write_str(" by (")?;
                    write_labels(f, &a.grouping)?;
                    f.write_str(") ")?;
                }
                f.write_str("(")?;
                if let Some(p) = &a.param {
                    write!(f, "{p}, ")?;
                }
                write!(f, "{})", a.expr)
            }
            Expr::Binary(b) => {
                write!(f, "{} {}", b.lhs, b.op.as_str())?;
                if b.return_bool {
                    f.write_str(" bool")?;
                }
                if let Some(vm) = &b.matching {
                    write!(f, "{vm}")?;
                }
                write!(f, " {}", b.rhs)
            }
            Expr::Unary { op, expr, .. } => {
                f.write_str(if *op == UnaryOp::Neg { "-" } else { "+" })?;
                write!(f, "{expr}")
            }
            Expr::Paren { expr, .. } => write!(f, "({expr})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(format_duration_ms(0), "0s");
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
        assert_eq!(format_duration_ms(14 * 86_400_000), "2w");
        assert_eq!(format_duration_ms(15 * 86_400_000), "15d");
        assert_eq!(format_duration_ms(365 * 86_400_000), "1y");
        assert_eq!(format_duration_ms(1001), "1s1ms");
        assert_eq!(format_duration_ms(-60_000), "-1m");
    }

    #[test]
    fn floats() {
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(1e21), "1000000000000000000000");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_go_v(1e21), "1e+21");
        assert_eq!(format_go_v(0.00001), "1e-05");
        assert_eq!(format_go_v(-2.5), "-2.5");
    }
}
