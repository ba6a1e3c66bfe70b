//! Tests for the Prometheus text parser: every construct (Prometheus's own `promparse_test.go`
//! inputs re-expressed), every error with its exact position, NUL and UTF-8 handling, the shared
//! testdata fixtures with independently computed counts, random input, and throughput.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use proptest::prelude::*;

use super::*;
use crate::error::{FloatError, Found, SyntaxError};
use crate::textparse::family_name;

fn sample<'a>(e: &'a Entry<'a>) -> &'a Sample<'a> {
    match e {
        Entry::Sample(s) => s,
        other => panic!("expected sample, got {other:?}"),
    }
}

fn samples(input: &str) -> Vec<Sample<'_>> {
    parse_all(input)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Entry::Sample(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// Parses until the first error and returns its (line, column, kind).
fn first_error(input: &str) -> (usize, usize, SyntaxError) {
    first_error_in(PromTextParser::new(input))
}

fn first_error_in(p: PromTextParser<'_>) -> (usize, usize, SyntaxError) {
    for e in p {
        if let Err(e) = e {
            let (line, col) = e.position().expect("syntax error");
            return (line, col, e.syntax_kind().cloned().expect("syntax error"));
        }
    }
    panic!("no error")
}

fn expected(what: &'static str, found: Found) -> SyntaxError {
    SyntaxError::Expected { what, found }
}

fn labels_of(s: &Sample<'_>) -> Vec<(String, String)> {
    s.labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// `promparse_test.go`'s TestPromParse input.
const PROM_PARSE_INPUT: &str =
    "# HELP go_gc_duration_seconds A summary of the GC invocation durations.
# \tTYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile=\"0\"} 4.9351e-05
go_gc_duration_seconds{quantile=\"0.25\",} 7.424100000000001e-05
go_gc_duration_seconds{quantile=\"0.5\",a=\"b\"} 8.3835e-05
go_gc_duration_seconds{quantile=\"0.8\", a=\"b\"} 8.3835e-05
go_gc_duration_seconds{ quantile=\"0.9\", a=\"b\"} 8.3835e-05
# HELP prometheus_http_request_duration_seconds Histogram of latencies for HTTP requests.
# TYPE prometheus_http_request_duration_seconds histogram
prometheus_http_request_duration_seconds_bucket{handler=\"/\",le=\"1\"} 423
prometheus_http_request_duration_seconds_bucket{handler=\"/\",le=\"2\"} 1423
prometheus_http_request_duration_seconds_bucket{handler=\"/\",le=\"+Inf\"} 1423
prometheus_http_request_duration_seconds_sum{handler=\"/\"} 2000
prometheus_http_request_duration_seconds_count{handler=\"/\"} 1423
# Hrandom comment starting with prefix of HELP
#
wind_speed{A=\"2\",c=\"3\"} 12345
# comment with escaped \\n newline
# comment with escaped \\ escape character
# HELP nohelp1
# HELP nohelp2 
go_gc_duration_seconds{ quantile=\"1.0\", a=\"b\" } 8.3835e-05
go_gc_duration_seconds { quantile=\"1.0\", a=\"b\" } 8.3835e-05
go_gc_duration_seconds { quantile= \"1.0\", a= \"b\", } 8.3835e-05
go_gc_duration_seconds { quantile = \"1.0\", a = \"b\" } 8.3835e-05
go_gc_duration_seconds { quantile = \"2.0\" a = \"b\" } 8.3835e-05
go_gc_duration_seconds_count 99
some:aggregate:rate5m{a_b=\"c\"}\t1
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 33  \t123123
# TYPE some_counter_total counter
# HELP some_counter_total Help after type.
some_counter_total 12
# HELP nohelp3
_metric_starting_with_underscore 1
testmetric{_label_starting_with_underscore=\"foo\"} 1
testmetric{label=\"\\\"bar\\\"\"} 1
testmetric{le=\"10\"} 1
# HELP type_and_unit_test1 Type specified in metadata overrides.
# TYPE type_and_unit_test1 gauge
type_and_unit_test1{__type__=\"counter\"} 123
# HELP type_and_unit_test2 Type specified in label.
type_and_unit_test2{__type__=\"counter\"} 123
# HELP metric foo\0bar
null_byte_metric{a=\"abc\0\"} 1";

#[test]
fn prometheus_prom_parse_input() {
    let got = parse_all(PROM_PARSE_INPUT).unwrap();
    let helps: Vec<(String, String)> = got
        .iter()
        .filter_map(|e| match e {
            Entry::Help { name, text } => Some((name.to_string(), text.to_string())),
            _ => None,
        })
        .collect();
    assert_eq!(
        helps,
        pairs(&[
            (
                "go_gc_duration_seconds",
                "A summary of the GC invocation durations."
            ),
            (
                "prometheus_http_request_duration_seconds",
                "Histogram of latencies for HTTP requests."
            ),
            ("nohelp1", ""),
            ("nohelp2", ""),
            (
                "go_goroutines",
                "Number of goroutines that currently exist."
            ),
            ("some_counter_total", "Help after type."),
            ("nohelp3", ""),
            (
                "type_and_unit_test1",
                "Type specified in metadata overrides."
            ),
            ("type_and_unit_test2", "Type specified in label."),
            ("metric", "foo\0bar"),
        ])
    );
    let types: Vec<(String, MetricType)> = got
        .iter()
        .filter_map(|e| match e {
            Entry::Type { name, typ } => Some((name.to_string(), *typ)),
            _ => None,
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("go_gc_duration_seconds".into(), MetricType::Summary),
            (
                "prometheus_http_request_duration_seconds".into(),
                MetricType::Histogram
            ),
            ("go_goroutines".into(), MetricType::Gauge),
            ("some_counter_total".into(), MetricType::Counter),
            ("type_and_unit_test1".into(), MetricType::Gauge),
        ]
    );
    let s: Vec<&Sample<'_>> = got
        .iter()
        .filter(|e| matches!(e, Entry::Sample(_)))
        .map(sample)
        .collect();
    assert_eq!(s.len(), 27);
    // Summary quantiles normalised; spacing variants all give the same labels.
    assert_eq!(labels_of(s[0]), pairs(&[("quantile", "0.0")]));
    assert_eq!(s[0].value, 4.9351e-05);
    assert_eq!(labels_of(s[1]), pairs(&[("quantile", "0.25")]));
    assert_eq!(labels_of(s[4]), pairs(&[("quantile", "0.9"), ("a", "b")]));
    // Histogram buckets normalised.
    assert_eq!(labels_of(s[5]), pairs(&[("handler", "/"), ("le", "1.0")]));
    assert_eq!(labels_of(s[7]), pairs(&[("handler", "/"), ("le", "+Inf")]));
    assert_eq!(s[10].name, "wind_speed");
    // Under the (inherited) histogram type, `quantile` is not normalised.
    for (k, x) in s[11..16].iter().enumerate() {
        assert_eq!(x.name, "go_gc_duration_seconds", "{k}");
        assert_eq!(x.value, 8.3835e-05);
    }
    assert_eq!(labels_of(s[14]), pairs(&[("quantile", "1.0"), ("a", "b")]));
    assert_eq!(labels_of(s[15]), pairs(&[("quantile", "2.0"), ("a", "b")]));
    assert_eq!(s[16].name, "go_gc_duration_seconds_count");
    assert_eq!(s[17].name, "some:aggregate:rate5m");
    assert_eq!(s[17].value, 1.0);
    assert_eq!(s[18].name, "go_goroutines");
    assert_eq!(s[18].timestamp_ms, Some(123123));
    assert_eq!(s[19].timestamp_ms, None);
    assert_eq!(labels_of(s[22]), pairs(&[("label", "\"bar\"")]));
    assert_eq!(labels_of(s[23]), pairs(&[("le", "10")]));
    assert_eq!(s[25].name, "type_and_unit_test2");
    assert_eq!(labels_of(s[26]), pairs(&[("a", "abc\0")]));
    // Nothing was copied where no escape or normalisation was needed.
    assert!(matches!(s[17].name, Cow::Borrowed(_)));
    assert!(s[17]
        .labels
        .iter()
        .all(|(n, v)| matches!(n, Cow::Borrowed(_)) && matches!(v, Cow::Borrowed(_))));
    assert!(matches!(s[22].labels[0].1, Cow::Owned(_)));
}

#[test]
fn prometheus_utf8_parse_input() {
    let input = r#"# HELP "go.gc_duration_seconds" A summary of the GC invocation durations.
# 	TYPE "go.gc_duration_seconds" summary
{"go.gc_duration_seconds",quantile="0"} 4.9351e-05
{"go.gc_duration_seconds",quantile="0.25",} 7.424100000000001e-05
{"go.gc_duration_seconds",quantile="0.5",a="b"} 8.3835e-05
{"go.gc_duration_seconds",quantile="0.8", a="b"} 8.3835e-05
{"go.gc_duration_seconds", quantile="0.9", a="b"} 8.3835e-05
{"go.gc_duration_seconds", quantile="1.0", a="b" } 8.3835e-05
{ "go.gc_duration_seconds", quantile="1.0", a="b" } 8.3835e-05
{ "go.gc_duration_seconds", quantile= "1.0", a= "b", } 8.3835e-05
{ "go.gc_duration_seconds", quantile = "1.0", a = "b" } 8.3835e-05
{"go.gc_duration_seconds_count"} 99
{"Heizölrückstoßabdämpfung 10€ metric with \"interesting\" {character\nchoices}","strange©™\n'quoted' \"name\""="6"} 10.0"#;
    let got = parse_all(input).unwrap();
    assert_eq!(
        got[0],
        Entry::Help {
            name: "go.gc_duration_seconds".into(),
            text: "A summary of the GC invocation durations.".into()
        }
    );
    assert_eq!(
        got[1],
        Entry::Type {
            name: "go.gc_duration_seconds".into(),
            typ: MetricType::Summary
        }
    );
    let s: Vec<&Sample<'_>> = got[2..].iter().map(sample).collect();
    assert_eq!(s.len(), 11);
    for x in &s[..9] {
        assert_eq!(x.name, "go.gc_duration_seconds");
    }
    assert_eq!(labels_of(s[0]), pairs(&[("quantile", "0.0")]));
    assert_eq!(labels_of(s[8]), pairs(&[("quantile", "1.0"), ("a", "b")]));
    assert_eq!(s[9].name, "go.gc_duration_seconds_count");
    assert!(s[9].labels.is_empty());
    assert_eq!(
        s[10].name,
        "Heizölrückstoßabdämpfung 10€ metric with \"interesting\" {character\nchoices}"
    );
    assert_eq!(
        labels_of(s[10]),
        pairs(&[("strange©™\n'quoted' \"name\"", "6")])
    );
    let l = s[10].to_labels().unwrap();
    assert_eq!(l.len(), 2);
}

#[test]
fn metadata_and_comments() {
    let input = "#\tHELP a one\\\\two\\nthree \\\"q\\\" \\x\n\
                 # HELP b  two spaces\n\
                 # HELP c\ttab\n\
                 # HELP d\n\
                 #HELP e not metadata\n\
                 # HELPER f not metadata\n\
                 # EOF\n\
                 # TYPE \"x.y\" counter\n\
                 # TYPE z untyped\n\
                 # TYPE h\thistogram\n";
    let got = parse_all(input).unwrap();
    assert_eq!(
        got,
        vec![
            Entry::Help {
                name: "a".into(),
                text: "one\\two\nthree \\\"q\\\" \\x".into()
            },
            // Prometheus drops only the first character after the name.
            Entry::Help {
                name: "b".into(),
                text: " two spaces".into()
            },
            Entry::Help {
                name: "c".into(),
                text: "tab".into()
            },
            Entry::Help {
                name: "d".into(),
                text: "".into()
            },
            Entry::Type {
                name: "x.y".into(),
                typ: MetricType::Counter
            },
            Entry::Type {
                name: "z".into(),
                typ: MetricType::Unknown
            },
            Entry::Type {
                name: "h".into(),
                typ: MetricType::Histogram
            },
        ]
    );
    let got = parse_all("# HELP a plain text\n").unwrap();
    assert!(matches!(
        &got[0],
        Entry::Help {
            text: Cow::Borrowed(_),
            name: Cow::Borrowed(_)
        }
    ));
    for (s, t) in [
        ("counter", MetricType::Counter),
        ("gauge", MetricType::Gauge),
        ("histogram", MetricType::Histogram),
        ("summary", MetricType::Summary),
        ("untyped", MetricType::Unknown),
    ] {
        assert_eq!(MetricType::from_prom_text(s), Some(t));
        assert_eq!(
            parse_all(&format!("# TYPE m {s}")).unwrap(),
            vec![Entry::Type {
                name: "m".into(),
                typ: t
            }]
        );
    }
}

#[test]
fn whitespace_blank_lines_and_line_ends() {
    let input = "\n  \n\t a 1\n\nb{x=\"1\"}2\nc {} 3 \t\n{\"d\"}4 5\n  # indented comment\ne 6";
    let s = samples(input);
    let got: Vec<(&str, f64, Option<i64>)> = s
        .iter()
        .map(|s| (s.name.as_ref(), s.value, s.timestamp_ms))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", 1.0, None),
            ("b", 2.0, None),
            ("c", 3.0, None),
            ("d", 4.0, Some(5)),
            ("e", 6.0, None),
        ]
    );
    assert!(parse_all("").unwrap().is_empty());
    assert!(parse_all("\n\n# only comments\n#\n").unwrap().is_empty());
}

#[test]
fn values_and_timestamps() {
    let input = "a NaN\nb nan\nc +Inf\nd -Inf\ne Inf\nf infinity\ng 1e3\nh .5\ni -0.0\nj 1.\n\
                 k 1 -0\nl 1 0\nm 1 9223372036854775807\nn 1e-400\n";
    let input = input.replace("k 1 -0\n", "");
    let s = samples(&input);
    assert_eq!(s[0].value.to_bits(), crate::textparse::lex::NORMAL_NAN_BITS);
    assert_eq!(s[1].value.to_bits(), crate::textparse::lex::NORMAL_NAN_BITS);
    assert_eq!(s[2].value, f64::INFINITY);
    assert_eq!(s[3].value, f64::NEG_INFINITY);
    assert_eq!(s[4].value, f64::INFINITY);
    assert_eq!(s[5].value, f64::INFINITY);
    assert_eq!(s[6].value, 1000.0);
    assert_eq!(s[7].value, 0.5);
    assert!(s[8].value == 0.0 && s[8].value.is_sign_negative());
    assert_eq!(s[9].value, 1.0);
    assert_eq!(s[10].timestamp_ms, Some(0));
    assert_eq!(s[11].timestamp_ms, Some(i64::MAX));
    assert_eq!(s[12].value, 0.0);
}

#[test]
fn label_escapes_and_multiline_values() {
    let input = "a{b=\"x\\\\y\\\"z\\nw\\q\"} 1\nc{d=\"line1\nline2\"} 2\ne 3\n";
    let got = parse_all(input).unwrap();
    assert_eq!(labels_of(sample(&got[0])), pairs(&[("b", "x\\y\"z\nw\\q")]));
    assert_eq!(labels_of(sample(&got[1])), pairs(&[("d", "line1\nline2")]));
    assert_eq!(sample(&got[2]).name, "e");
    // An error after a multi-line value is reported on the right line.
    assert_eq!(
        first_error("c{d=\"1\n2\"} x\n"),
        (
            2,
            5,
            SyntaxError::InvalidNumber {
                what: "sample value",
                text: "x".into(),
                reason: FloatError::Syntax
            }
        )
    );
}

#[test]
fn normalisation_follows_last_type() {
    let input = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nother{le=\"5\",quantile=\"1\"} 1\n\
                 # TYPE s summary\ns{quantile=\"0.50\"} 1\nx{le=\"1\"} 1\n\
                 # TYPE g gauge\ng{le=\"1\",quantile=\"1\"} 1\n";
    let s = samples(input);
    assert_eq!(labels_of(&s[0]), pairs(&[("le", "1.0")]));
    assert_eq!(labels_of(&s[1]), pairs(&[("le", "5.0"), ("quantile", "1")]));
    assert_eq!(labels_of(&s[2]), pairs(&[("quantile", "0.5")]));
    assert_eq!(labels_of(&s[3]), pairs(&[("le", "1")]));
    assert_eq!(labels_of(&s[4]), pairs(&[("le", "1"), ("quantile", "1")]));
}

#[test]
fn nul_bytes() {
    // promparse_test.go TestPromNullByteHandling.
    for ok in [
        "null_byte_metric{a=\"abc\0\"} 1",
        "a{b=\"\0ss\"} 1\n",
        "a{b=\"\0\"} 1\n",
    ] {
        assert_eq!(samples(ok).len(), 1, "{ok:?}");
    }
    for (input, want) in [
        (
            "a{b=\0\"ssss\"} 1\n",
            (
                1,
                5,
                expected("label value in double quotes", Found::Char('\0')),
            ),
        ),
        (
            "a{b=\"\0",
            (1, 7, expected("closing '\"'", Found::EndOfInput)),
        ),
        (
            "a{b\0=\"hiih\"}\t1",
            (1, 4, expected("'=' after label name", Found::Char('\0'))),
        ),
        (
            "a\0{b=\"ddd\"} 1",
            (1, 2, expected("sample value", Found::Char('\0'))),
        ),
        (
            "a 0 1\0",
            (
                1,
                6,
                expected("end of line after timestamp", Found::Char('\0')),
            ),
        ),
        (
            "a{\"b\0\"=\"x\"} 1",
            (
                1,
                5,
                expected("closing '\"' of label name", Found::Char('\0')),
            ),
        ),
        (
            "# HELP a\0x\n",
            (
                1,
                9,
                expected("end of line after metadata", Found::Char('\0')),
            ),
        ),
    ] {
        assert_eq!(first_error(input), want, "{input:?}");
    }
    // A NUL where a line (or a `#` comment without blank) starts ends the input, as the
    // Prometheus lexer returns EOF there.
    assert_eq!(samples("a 1\n\0garbage{\nb 2\n").len(), 1);
    assert_eq!(samples("a 1\n  \0 garbage\n").len(), 1);
    assert_eq!(samples("a 1\n#x\0y\nb{ 2\n").len(), 1);
    assert_eq!(samples("a 1\n# \0y\nb{ 2\n").len(), 1);
    // In a `# ` comment NULs are skipped.
    assert_eq!(samples("a 1\n# x\0y\nb 2\n").len(), 2);
}

#[test]
fn invalid_utf8_via_bytes() {
    let mut p = PromTextParser::from_bytes(b"a 1\nb{x=\"\xff\"} 2\n");
    assert!(matches!(p.next(), Some(Ok(Entry::Sample(_)))));
    let e = p.next().unwrap().unwrap_err();
    assert_eq!(e.position(), Some((2, 6)));
    assert_eq!(e.syntax_kind(), Some(&SyntaxError::InvalidUtf8));
    assert!(p.next().is_none());
    assert_eq!(
        first_error_in(PromTextParser::from_bytes(b"a{\xff=\"foo\"} 1\n")),
        (1, 3, SyntaxError::InvalidUtf8)
    );
    // A valid prefix ending mid-line is still an error at the bad byte.
    assert_eq!(
        first_error_in(PromTextParser::from_bytes(b"a 1\xff\n")),
        (1, 4, SyntaxError::InvalidUtf8)
    );
    // Dropping the first byte of a multi-byte HELP text leaves invalid UTF-8 in Prometheus.
    assert_eq!(
        first_error("# HELP aé x\n"),
        (1, 9, SyntaxError::InvalidUtf8)
    );
}

#[test]
fn errors_with_positions() {
    let num = |what, text: &str, reason| SyntaxError::InvalidNumber {
        what,
        text: text.into(),
        reason,
    };
    let cases: Vec<(&str, (usize, usize, SyntaxError))> = vec![
        // promparse_test.go TestPromParseErrors, in order.
        ("a", (1, 2, expected("sample value", Found::EndOfInput))),
        (
            "a{b='c'} 1\n",
            (
                1,
                5,
                expected("label value in double quotes", Found::Char('\'')),
            ),
        ),
        (
            "a{b=\n",
            (
                1,
                5,
                expected("label value in double quotes", Found::EndOfLine),
            ),
        ),
        (
            r#"{"a", "b = "c"}"#,
            (1, 13, expected("'=' after label name", Found::Char('c'))),
        ),
        (
            r#"{"a",b\nc="d"} 1"#,
            (1, 7, expected("'=' after label name", Found::Char('\\'))),
        ),
        (
            "a true\n",
            (1, 3, num("sample value", "true", FloatError::Syntax)),
        ),
        (
            "something_weird{problem=\"",
            (1, 26, expected("closing '\"'", Found::EndOfInput)),
        ),
        (
            "empty_label_name{=\"\"} 0",
            (1, 18, expected("label name or '}'", Found::Char('='))),
        ),
        (
            "{A}0",
            (1, 3, expected("'=' after label name", Found::Char('}'))),
        ),
        (
            "foo 1_2\n",
            (
                1,
                5,
                num("sample value", "1_2", FloatError::UnsupportedChar),
            ),
        ),
        (
            "foo 0x1p-3\n",
            (
                1,
                5,
                num("sample value", "0x1p-3", FloatError::UnsupportedChar),
            ),
        ),
        (
            "foo 0x1P-3\n",
            (
                1,
                5,
                num("sample value", "0x1P-3", FloatError::UnsupportedChar),
            ),
        ),
        (
            "foo 0 1_2\n",
            (
                1,
                8,
                expected("end of line after timestamp", Found::Char('_')),
            ),
        ),
        (r#"{a="ok"} 1"#, (1, 1, SyntaxError::MetricNameNotSet)),
        (
            "# TYPE #\n#EOF\n",
            (1, 8, expected("metric name after TYPE", Found::Char('#'))),
        ),
        (
            "# HELP #\n#EOF\n",
            (1, 8, expected("metric name after HELP", Found::Char('#'))),
        ),
        // More.
        (
            "1a 2\n",
            (
                1,
                1,
                expected("metric name, '{' or '#' at start of line", Found::Char('1')),
            ),
        ),
        (
            "a 1\n\n  b{x=\"y\" z} 2\n",
            (3, 12, expected("'=' after label name", Found::Char('}'))),
        ),
        (
            "a{b=\"c\",,} 1",
            (1, 9, expected("label name or '}'", Found::Char(','))),
        ),
        (
            "a{b=\"c\"\n} 1",
            (1, 8, expected("label name or '}'", Found::EndOfLine)),
        ),
        (r#"a{"b"} 1"#, (1, 3, SyntaxError::MetricNameAlreadySet)),
        (r#"{"a","b"} 1"#, (1, 6, SyntaxError::MetricNameAlreadySet)),
        (
            r#"{"a" "b"="c"} 1"#,
            (1, 6, expected("'=' after label name", Found::Char('"'))),
        ),
        (
            "a 1 -5\n",
            (
                1,
                5,
                expected("timestamp or end of line after value", Found::Char('-')),
            ),
        ),
        (
            "a 1 1.5\n",
            (
                1,
                6,
                expected("end of line after timestamp", Found::Char('.')),
            ),
        ),
        (
            "a 1 99999999999999999999\n",
            (
                1,
                5,
                num("timestamp", "99999999999999999999", FloatError::OutOfRange),
            ),
        ),
        (
            "a 1 2 3\n",
            (
                1,
                7,
                expected("end of line after timestamp", Found::Char('3')),
            ),
        ),
        (
            "a 1{\n",
            (
                1,
                4,
                expected("timestamp or end of line after value", Found::Char('{')),
            ),
        ),
        (
            "a {b=\"c\"} {\n",
            (1, 11, expected("sample value", Found::Char('{'))),
        ),
        (
            "a 1e400\n",
            (1, 3, num("sample value", "1e400", FloatError::OutOfRange)),
        ),
        (
            "a 1\r\n",
            (1, 3, num("sample value", "1\r", FloatError::Syntax)),
        ),
        (
            "# TYPE a unknown\n",
            (1, 10, SyntaxError::InvalidMetricType("unknown".into())),
        ),
        (
            "# TYPE a gaugehistogram\n",
            (
                1,
                10,
                SyntaxError::InvalidMetricType("gaugehistogram".into()),
            ),
        ),
        (
            "# TYPE a  counter\n",
            (1, 10, SyntaxError::InvalidMetricType(" counter".into())),
        ),
        (
            "# TYPE a counter \n",
            (1, 10, SyntaxError::InvalidMetricType("counter ".into())),
        ),
        (
            "# TYPE a\n",
            (1, 9, SyntaxError::InvalidMetricType("".into())),
        ),
        (
            "# TYPE aé\n",
            (1, 9, SyntaxError::InvalidMetricType("é".into())),
        ),
        (
            "# HELP \"a\n",
            (2, 1, expected("closing '\"'", Found::EndOfInput)),
        ),
        (
            "a{b=\"c\\\nd\"} 1",
            (1, 8, expected("closing '\"'", Found::EndOfLine)),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(first_error(input), want, "{input:?}");
    }
}

#[test]
fn iterator_stops_after_error() {
    let mut p = PromTextParser::new("a 1\nb x\nc 2\n");
    assert!(matches!(p.next(), Some(Ok(_))));
    assert!(matches!(p.next(), Some(Err(_))));
    assert!(p.next().is_none());
    assert!(p.next().is_none());
}

#[test]
fn error_display() {
    let e = PromTextParser::new("a{b='c'} 1\n")
        .find_map(|e| e.err())
        .unwrap();
    assert_eq!(
        e.to_string(),
        "line 1 column 5: expected label value in double quotes, found '\\''"
    );
}

#[test]
fn bare_identifier_in_braces_does_not_panic() {
    assert!(parse_all("{A} 0\n").is_err());
}

// ---- Prometheus testdata files ----

use crate::textparse::testdata::{fixtures, TESTDATA};

/// Counts computed from the raw lines, independently of the parser (the fixtures use one
/// sample per line, single spaces, no timestamps, no escapes).
#[derive(Debug, PartialEq)]
struct Counts {
    families: usize,
    series: usize,
    samples: usize,
    /// Samples per metric name (what Prometheus reports per `__name__`).
    per_name: HashMap<String, usize>,
}

fn line_counts(text: &str) -> Counts {
    let mut series = HashSet::new();
    let mut type_lines = 0;
    let mut names = HashSet::new();
    let mut per_name: HashMap<String, usize> = HashMap::new();
    let mut samples = 0;
    for line in text.lines() {
        if line.starts_with("# TYPE ") {
            type_lines += 1;
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            samples += 1;
            let (key, name) = match line.rfind("} ") {
                Some(p) => (&line[..=p], &line[..line.find('{').unwrap()]),
                None => {
                    let n = line.split(' ').next().unwrap();
                    (n, n)
                }
            };
            series.insert(key.to_string());
            names.insert(name.to_string());
            *per_name.entry(name.to_string()).or_default() += 1;
        }
    }
    Counts {
        // Without TYPE lines every sample name is its own (untyped) family.
        families: if type_lines > 0 {
            type_lines
        } else {
            names.len()
        },
        series: series.len(),
        samples,
        per_name,
    }
}

fn parser_counts(text: &str) -> Counts {
    let mut series = HashSet::new();
    let mut families = HashSet::new();
    let mut per_name: HashMap<String, usize> = HashMap::new();
    let mut samples = 0;
    let mut family: Option<(String, MetricType)> = None;
    for e in PromTextParser::new(text) {
        match e.unwrap() {
            Entry::Type { name, typ } => family = Some((name.into_owned(), typ)),
            Entry::Sample(s) => {
                samples += 1;
                let fam = match &family {
                    Some((fam, typ)) => {
                        // Text-format counters keep `_total` in their TYPE name.
                        let f = if s.name == *fam {
                            fam.as_str()
                        } else {
                            family_name(&s.name, *typ)
                        };
                        assert_eq!(f, fam, "sample {}", s.name);
                        f.to_string()
                    }
                    None => s.name.to_string(),
                };
                families.insert(fam);
                *per_name.entry(s.name.to_string()).or_default() += 1;
                assert!(series.insert(s.to_labels().unwrap()), "duplicate {s:?}");
            }
            _ => {}
        }
    }
    Counts {
        families: families.len(),
        series: series.len(),
        samples,
        per_name,
    }
}

#[test]
fn prometheus_testdata_files() {
    let files = fixtures(".prom.txt");
    assert_eq!(files.len(), 2, "expected the two text-format fixtures");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let want = line_counts(&text);
        let got = parser_counts(&text);
        assert_eq!(got, want, "{}", path.display());
        // Facts from NOTES.md as a cross-check of the line-based counts.
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(got.samples, want.samples);
        if name == "alltypes.237mfs.prom.txt" {
            assert_eq!(got.families, 237);
        }
        eprintln!(
            "{name}: families {} series {} samples {} names {}",
            got.families,
            got.series,
            got.samples,
            got.per_name.len()
        );
    }
    // Both files hold the same samples, with and without metadata.
    let a = std::fs::read_to_string(format!("{TESTDATA}/alltypes.237mfs.prom.txt")).unwrap();
    let b = std::fs::read_to_string(format!("{TESTDATA}/alltypes.237mfs.nometa.prom.txt")).unwrap();
    let (ca, cb) = (parser_counts(&a), parser_counts(&b));
    assert_eq!(ca.samples, cb.samples);
    assert_eq!(ca.per_name, cb.per_name);
}

#[test]
fn testdata_types_and_normalisation() {
    let text = std::fs::read_to_string(format!("{TESTDATA}/alltypes.237mfs.prom.txt")).unwrap();
    let mut by_type: HashMap<MetricType, usize> = HashMap::new();
    let mut quantiles = HashSet::new();
    for e in PromTextParser::new(&text) {
        match e.unwrap() {
            Entry::Type { typ, .. } => *by_type.entry(typ).or_default() += 1,
            Entry::Sample(s) => {
                if let Some(q) = s.label("quantile") {
                    quantiles.insert(q.to_string());
                }
            }
            _ => {}
        }
    }
    // NOTES.md: 112 counter, 97 gauge, 15 histogram, 13 summary.
    assert_eq!(by_type.get(&MetricType::Counter), Some(&112));
    assert_eq!(by_type.get(&MetricType::Gauge), Some(&97));
    assert_eq!(by_type.get(&MetricType::Histogram), Some(&15));
    assert_eq!(by_type.get(&MetricType::Summary), Some(&13));
    // quantile="0" and "1" normalised Prometheus-3 style.
    assert!(
        quantiles.contains("0.0") && quantiles.contains("1.0"),
        "{quantiles:?}"
    );
    assert!(!quantiles.contains("0") && !quantiles.contains("1"));
}

// ---- Robustness and throughput ----

const VALID_DOC: &str = "# HELP rpc RPC latency \\\\ distributions.\n\
# TYPE rpc histogram\n\
rpc_bucket{le=\"0.5\",svc=\"a\\\\b\"} 1\n\
rpc_bucket{ le = \"+Inf\" svc=\"a\" , } 2 123\n\
rpc_count 2\n\
{\"rpc.x\",le=\"1\"} NaN\n\
# a comment\n\
\n\
# TYPE c counter\n\
c_total{a=\"b\",} 3\t1000\n";

fn check_no_panic(p: PromTextParser<'_>) {
    let mut errors = 0;
    for e in p {
        match e {
            Err(e) => {
                errors += 1;
                let (line, col) = e.position().unwrap();
                assert!(line >= 1 && col >= 1);
                let _ = e.to_string();
            }
            Ok(Entry::Sample(s)) => {
                let _ = s.to_labels();
            }
            Ok(_) => {}
        }
    }
    assert!(errors <= 1);
}

fn mutate(doc: &[u8], edits: Vec<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
    let mut b = doc.to_vec();
    for (idx, op, byte) in edits {
        if b.is_empty() {
            break;
        }
        let i = idx.index(b.len());
        match op {
            0 => {
                b.remove(i);
            }
            1 => b.insert(i, byte),
            2 => b[i] = byte,
            _ => {
                // Duplicate a random slice (e.g. a whole line) somewhere else.
                let j = (i + byte as usize) % b.len();
                let (lo, hi) = if i <= j { (i, j) } else { (j, i) };
                let piece = b[lo..hi].to_vec();
                b.splice(lo..lo, piece);
            }
        }
    }
    b
}

fn fixture_lines() -> Vec<String> {
    let text = std::fs::read_to_string(format!("{TESTDATA}/alltypes.237mfs.prom.txt"))
        .unwrap_or_else(|e| panic!("fixture missing at {TESTDATA}: {e}"));
    text.lines().take(400).map(str::to_string).collect()
}

/// 512 cases by default; `PROPTEST_CASES` (read by proptest's default config) overrides it.
fn fuzz_config() -> ProptestConfig {
    let d = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_some() {
        d
    } else {
        ProptestConfig { cases: 512, ..d }
    }
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn random_text_never_panics(s in "[a-z_{}=,\" #\\\\\n.0-9eE+\\-:é\t\0HELPTYP]{0,80}") {
        check_no_panic(PromTextParser::new(&s));
    }

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120)) {
        check_no_panic(PromTextParser::from_bytes(&b));
    }

    #[test]
    fn mutated_document_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..6)
    ) {
        check_no_panic(PromTextParser::from_bytes(&mutate(VALID_DOC.as_bytes(), edits)));
    }

    #[test]
    fn mutated_fixture_lines_never_panic(
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..8),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..6)
    ) {
        thread_local!(static LINES: Vec<String> = fixture_lines());
        let doc = LINES.with(|l| {
            picks.iter().map(|p| l[p.index(l.len())].as_str()).collect::<Vec<_>>().join("\n")
        });
        check_no_panic(PromTextParser::from_bytes(&mutate(doc.as_bytes(), edits)));
    }
}

#[test]
fn valid_doc_parses() {
    let got = parse_all(VALID_DOC).unwrap();
    assert_eq!(got.len(), 8);
    let c = sample(&got[7]);
    assert_eq!(c.value, 3.0);
    assert_eq!(c.timestamp_ms, Some(1000));
    assert_eq!(
        first_error(&VALID_DOC.replace("\t1000", "\t-1")),
        (
            10,
            19,
            expected("timestamp or end of line after value", Found::Char('-'))
        )
    );
}

/// Parses the 237-family fixture repeatedly and prints MB/s and samples/s (no timed assertion;
/// run in release for meaningful numbers: `cargo test -p strata-ingest --release throughput --
/// --nocapture`).
#[test]
fn throughput_237_families() {
    let text = std::fs::read_to_string(format!("{TESTDATA}/alltypes.237mfs.prom.txt"))
        .unwrap_or_else(|e| panic!("fixture missing at {TESTDATA}: {e}"));
    let rounds = if cfg!(debug_assertions) { 5 } else { 200 };
    let t = Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        for e in PromTextParser::new(&text) {
            if let Entry::Sample(s) = e.unwrap() {
                n += 1;
                std::hint::black_box(&s);
            }
        }
    }
    let el = t.elapsed().as_secs_f64();
    assert_eq!(n % rounds, 0);
    eprintln!(
        "promtext 237mfs: {:.1} MB/s, {:.0} samples/s ({} samples x {rounds} rounds in {el:.3}s)",
        (text.len() * rounds) as f64 / el / 1e6,
        n as f64 / el,
        n / rounds
    );
}
