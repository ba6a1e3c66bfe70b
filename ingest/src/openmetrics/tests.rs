//! Tests for the OpenMetrics parser: every construct, every error kind with its exact position,
//! Prometheus's testdata files, random input, and streaming throughput.

use std::collections::HashSet;
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

/// Parses until the first error and returns its (line, column, kind).
fn first_error(input: &str) -> (usize, usize, SyntaxError) {
    first_error_in(OpenMetricsParser::new(input))
}

fn first_error_in(p: OpenMetricsParser<'_>) -> (usize, usize, SyntaxError) {
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

#[test]
fn metadata_lines() {
    let input = "# HELP go_gc A summary of \\\"GC\\\" \\\\ times.\\n\\x\n\
                 # TYPE go_gc summary\n\
                 # UNIT go_gc_seconds seconds\n\
                 # HELP nohelp \n\
                 # UNIT nounit \n\
                 # HELP nul a\0b\n\
                 # EOF\n";
    let got = parse_all(input).unwrap();
    assert_eq!(
        got,
        vec![
            Entry::Help {
                name: "go_gc".into(),
                text: "A summary of \"GC\" \\ times.\n\\x".into()
            },
            Entry::Type {
                name: "go_gc".into(),
                typ: MetricType::Summary
            },
            Entry::Unit {
                name: "go_gc_seconds".into(),
                unit: "seconds"
            },
            Entry::Help {
                name: "nohelp".into(),
                text: "".into()
            },
            Entry::Unit {
                name: "nounit".into(),
                unit: ""
            },
            Entry::Help {
                name: "nul".into(),
                text: "a\0b".into()
            },
        ]
    );
    // No escape: the help text is borrowed.
    let got = parse_all("# HELP a plain text\n# EOF").unwrap();
    assert!(matches!(
        &got[0],
        Entry::Help {
            text: Cow::Borrowed(_),
            ..
        }
    ));
}

#[test]
fn all_types() {
    for (s, t) in [
        ("counter", MetricType::Counter),
        ("gauge", MetricType::Gauge),
        ("histogram", MetricType::Histogram),
        ("gaugehistogram", MetricType::GaugeHistogram),
        ("summary", MetricType::Summary),
        ("info", MetricType::Info),
        ("stateset", MetricType::Stateset),
        ("unknown", MetricType::Unknown),
    ] {
        let input = format!("# TYPE m {s}\n# EOF\n");
        let got = parse_all(&input).unwrap();
        assert_eq!(
            got,
            vec![Entry::Type {
                name: "m".into(),
                typ: t
            }]
        );
        assert_eq!(t.as_str(), s);
    }
}

#[test]
fn samples_values_timestamps_exemplars() {
    let input = r#"# TYPE go_goroutines gauge
go_goroutines 33 123.123
some:aggregate:rate5m{a_b="c"} 1
_metric_starting_with_underscore 1
testmetric{_label_starting_with_underscore="foo"} 1
testmetric{label="\"bar\"",b="x\\y\nz",} -4.9351e-05
m{} +Inf
m -Inf
m nan
m NaN
m 1E3 -1.5
# TYPE hhh histogram
hhh_bucket{le="+Inf"} 1 # {id="histogram-bucket-test"} 4
hhh_count 1 # {id="histogram-count-test",xx="yy"} 4 123.123
# TYPE foo counter
foo_total 17.0 1520879607.789 # {id="counter-test"} 5
foo_total{a="b"} 17.0 1520879607.789 # {} NaN
foo_created 1520872607.123
# EOF
"#;
    let got = parse_all(input).unwrap();
    let samples: Vec<&Sample> = got
        .iter()
        .filter_map(|e| match e {
            Entry::Sample(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(samples.len(), 15);

    let s = samples[0];
    assert_eq!(s.name, "go_goroutines");
    assert!(s.labels.is_empty());
    assert_eq!(s.value, 33.0);
    assert_eq!(s.timestamp_ms, Some(123123));
    assert_eq!(s.exemplar, None);

    assert_eq!(samples[1].name, "some:aggregate:rate5m");
    assert_eq!(samples[1].label("a_b"), Some("c"));
    assert_eq!(samples[2].name, "_metric_starting_with_underscore");
    assert_eq!(
        samples[3].label("_label_starting_with_underscore"),
        Some("foo")
    );

    // Escapes resolved; unescaped values stay borrowed.
    let s = samples[4];
    assert_eq!(s.label("label"), Some("\"bar\""));
    assert_eq!(s.label("b"), Some("x\\y\nz"));
    assert!(matches!(s.name, Cow::Borrowed(_)));
    assert!(matches!(s.labels[0].0, Cow::Borrowed(_)));
    assert!(matches!(s.labels[0].1, Cow::Owned(_)));
    assert_eq!(s.value, -4.9351e-05);
    assert!(matches!(samples[1].labels[0].1, Cow::Borrowed(_)));

    assert_eq!(samples[5].value, f64::INFINITY);
    assert_eq!(samples[6].value, f64::NEG_INFINITY);
    assert_eq!(samples[7].value.to_bits(), lex_nan());
    assert_eq!(samples[8].value.to_bits(), lex_nan());
    assert_eq!(samples[9].value, 1000.0);
    assert_eq!(samples[9].timestamp_ms, Some(-1500));

    let ex = samples[10].exemplar.as_ref().unwrap();
    assert_eq!(
        ex.labels,
        vec![("id".into(), "histogram-bucket-test".into())]
    );
    assert_eq!(ex.value, 4.0);
    assert_eq!(ex.timestamp_ms, None);
    assert_eq!(samples[10].timestamp_ms, None);

    let ex = samples[11].exemplar.as_ref().unwrap();
    assert_eq!(ex.labels.len(), 2);
    assert_eq!(ex.timestamp_ms, Some(123123));
    let l = ex.to_labels().unwrap();
    assert_eq!(l.get("xx"), Some("yy"));

    let s = samples[12];
    assert_eq!(s.timestamp_ms, Some(1520879607789));
    assert_eq!(s.exemplar.as_ref().unwrap().value, 5.0);
    let ex = samples[13].exemplar.as_ref().unwrap();
    assert!(ex.labels.is_empty());
    assert!(ex.value.is_nan());

    // `_created` is an ordinary sample by default.
    assert_eq!(samples[14].name, "foo_created");
    assert_eq!(samples[14].value, 1520872607.123);
}

fn lex_nan() -> u64 {
    crate::textparse::lex::NORMAL_NAN_BITS
}

#[test]
fn le_and_quantile_normalisation_follows_last_type() {
    let input = r#"# TYPE s summary
s{quantile="0"} 1
s{quantile="0.25"} 1
# TYPE h histogram
h_bucket{le="1"} 1
h_bucket{le="1e6"} 1
h_bucket{le="c"} 1
h_bucket{le="+Inf"} 1
h_bucket{quantile="0"} 1
# TYPE c counter
c_total{le="1"} 1
# EOF
"#;
    let got = parse_all(input).unwrap();
    let vals: Vec<String> = got
        .iter()
        .filter_map(|e| match e {
            Entry::Sample(s) => Some(s.labels[0].1.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(vals, ["0.0", "0.25", "1.0", "1e+06", "c", "+Inf", "0", "1"]);
}

#[test]
fn quoted_utf8_names() {
    let input = r#"# HELP "go.gc_duration_seconds" A summary.
# TYPE "go.gc_duration_seconds" summary
# UNIT "go.gc_duration_seconds" seconds
{"go.gc_duration_seconds",quantile="0"} 4.9351e-05
{"http.status",q="0.9",a="b"} 8.3835e-05
{q="0.9","http.status",a="b"} 8.3835e-05
{"go.gc_duration_seconds_sum"} 0.004304266
{"Heizölrückstoßabdämpfung 10€ metric with \"interesting\" {character\nchoices}","strange©™\n'quoted' \"name\""="6"} 10.0
quotedexemplar_count 1 # {"id.thing"="histogram-count-test",other="hello"} 4
# EOF
"#;
    let got = parse_all(input).unwrap();
    assert_eq!(
        got[0],
        Entry::Help {
            name: "go.gc_duration_seconds".into(),
            text: "A summary.".into()
        }
    );
    assert_eq!(
        got[2],
        Entry::Unit {
            name: "go.gc_duration_seconds".into(),
            unit: "seconds"
        }
    );
    let s = sample(&got[3]);
    assert_eq!(s.name, "go.gc_duration_seconds");
    assert_eq!(s.labels, vec![("quantile".into(), "0.0".into())]);
    let s = sample(&got[5]);
    assert_eq!(s.name, "http.status");
    assert_eq!(s.labels.len(), 2);
    let l = s.to_labels().unwrap();
    assert_eq!(l.get("__name__"), Some("http.status"));
    assert_eq!(l.get("q"), Some("0.9"));
    assert_eq!(sample(&got[6]).name, "go.gc_duration_seconds_sum");
    let s = sample(&got[7]);
    assert_eq!(
        s.name,
        "Heizölrückstoßabdämpfung 10€ metric with \"interesting\" {character\nchoices}"
    );
    assert_eq!(s.labels[0].0, "strange©™\n'quoted' \"name\"");
    assert_eq!(s.labels[0].1, "6");
    let ex = sample(&got[8]).exemplar.as_ref().unwrap();
    assert_eq!(ex.labels[0].0, "id.thing");
    assert_eq!(ex.labels[1].1, "hello");
}

#[test]
fn eof_handling() {
    assert_eq!(parse_all("# EOF").unwrap(), vec![]);
    assert_eq!(parse_all("# EOF\n").unwrap(), vec![]);
    let mut p = OpenMetricsParser::new("a 1\n# EOF\n");
    assert!(matches!(p.next(), Some(Ok(Entry::Sample(_)))));
    assert_eq!(p.next().unwrap().unwrap(), Entry::Eof);
    assert!(p.next().is_none());
    // The iterator is fused after an error.
    let mut p = OpenMetricsParser::new("a x\nb 1\n# EOF\n");
    assert!(p.next().unwrap().is_err());
    assert!(p.next().is_none());
}

#[test]
fn skip_created_series() {
    let input = "# TYPE foo counter\nfoo_total 1\nfoo_created 2\n\
                 # TYPE fizz_created gauge\nfizz_created 3\n# EOF\n";
    let names = |skip| -> Vec<String> {
        OpenMetricsParser::new(input)
            .skip_created_series(skip)
            .filter_map(|e| match e.unwrap() {
                Entry::Sample(s) => Some(s.name.into_owned()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(names(false), ["foo_total", "foo_created", "fizz_created"]);
    // A gauge named `*_created` is kept.
    assert_eq!(names(true), ["foo_total", "fizz_created"]);
}

#[test]
fn nul_bytes() {
    for ok in [
        "null_byte_metric{a=\"abc\0\"} 1\n# EOF\n",
        "a{b=\"\0ss\"} 1\n# EOF\n",
        "a{b=\"\0\"} 1\n# EOF",
    ] {
        parse_all(ok).unwrap();
    }
    assert_eq!(
        first_error("a{b=\0\"ssss\"} 1\n# EOF\n"),
        (
            1,
            5,
            expected("label value in double quotes", Found::Char('\0'))
        )
    );
    assert_eq!(
        first_error("a{b\0=\"hiih\"} 1"),
        (1, 4, expected("'=' after label name", Found::Char('\0')))
    );
    assert_eq!(
        first_error("a\0{b=\"ddd\"} 1"),
        (1, 2, expected("space before value", Found::Char('\0')))
    );
    assert_eq!(
        first_error("c_total 1 # {b=\"\0ss\"} 1\n# EOF\n"),
        (1, 17, SyntaxError::NulInExemplar)
    );
}

#[test]
fn invalid_utf8_via_bytes() {
    let (l, c, k) = first_error_in(OpenMetricsParser::from_bytes(
        b"a 1\na{b=\"\xff\"} 1\n# EOF\n",
    ));
    assert_eq!((l, c, k), (2, 6, SyntaxError::InvalidUtf8));
    let (l, c, k) = first_error_in(OpenMetricsParser::from_bytes(b"a 1\n# EOF\n\xff"));
    assert_eq!((l, c, k), (3, 1, SyntaxError::DataAfterEof));
    // Entries before the bad byte are still produced.
    let mut p = OpenMetricsParser::from_bytes(b"a 1\n\xff");
    assert!(matches!(p.next(), Some(Ok(Entry::Sample(_)))));
    assert!(p.next().unwrap().is_err());
    // Valid bytes parse like the string.
    assert_eq!(OpenMetricsParser::from_bytes(b"a 1\n# EOF\n").count(), 2);
}

#[test]
fn error_display() {
    let e = parse_all("a 1\n# TYPE x gauge\nx{y='z'} 1\n# EOF\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 3 column 5: expected label value in double quotes, found '\\''"
    );
    let e = parse_all("a 1 NaN\n# EOF\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1 column 5: invalid timestamp \"NaN\": must be a finite number"
    );
    let e = parse_all("a tru\n# EOF\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1 column 3: invalid sample value \"tru\": invalid syntax"
    );
    let e = parse_all("a 1").unwrap_err();
    assert_eq!(
        e.to_string(),
        "line 1 column 4: data does not end with # EOF"
    );
}

#[test]
fn errors_with_positions() {
    use Found::{Char, EndOfInput, EndOfLine};
    let num = |what, text: &str, reason| SyntaxError::InvalidNumber {
        what,
        text: text.into(),
        reason,
    };
    let start = "metric name, '{' or '#' at start of line";
    let cases: Vec<(&str, (usize, usize, SyntaxError))> = vec![
        // EOF handling.
        ("", (1, 1, SyntaxError::MissingEof)),
        ("metric 1", (1, 9, SyntaxError::MissingEof)),
        ("metric 1\n", (2, 1, SyntaxError::MissingEof)),
        (
            "metric_total 1 # {aa=\"bb\"} 4",
            (1, 29, SyntaxError::MissingEof),
        ),
        ("# HELP m text", (1, 14, SyntaxError::MissingEof)),
        ("# EOF\na 1", (2, 1, SyntaxError::DataAfterEof)),
        ("# EOF\n\n", (2, 1, SyntaxError::DataAfterEof)),
        ("# EOFa 1", (1, 6, SyntaxError::DataAfterEof)),
        ("# EOF ", (1, 6, SyntaxError::DataAfterEof)),
        // Start of line.
        ("\n", (1, 1, expected(start, EndOfLine))),
        ("a 1\n\n# EOF\n", (2, 1, expected(start, EndOfLine))),
        (" a 1\n# EOF\n", (1, 1, expected(start, Char(' ')))),
        ("9\n# EOF\n", (1, 1, expected(start, Char('9')))),
        ("#", (1, 2, expected("space after '#'", EndOfInput))),
        (
            "#\tTYPE c counter\n",
            (1, 2, expected("space after '#'", Char('\t'))),
        ),
        (
            "#  TYPE c counter\n",
            (
                1,
                3,
                expected("HELP, TYPE, UNIT or EOF after '# '", Char(' ')),
            ),
        ),
        (
            "# H",
            (
                1,
                3,
                expected("HELP, TYPE, UNIT or EOF after '# '", Char('H')),
            ),
        ),
        (
            "# some comment\n",
            (
                1,
                3,
                expected("HELP, TYPE, UNIT or EOF after '# '", Char('s')),
            ),
        ),
        ("# HELPx\n", (1, 7, expected("space after HELP", Char('x')))),
        // Metadata.
        (
            "# TYPE u untyped\n# EOF\n",
            (1, 10, SyntaxError::InvalidMetricType("untyped".into())),
        ),
        (
            "# TYPE c counter \n# EOF\n",
            (1, 10, SyntaxError::InvalidMetricType("counter ".into())),
        ),
        (
            "# TYPE c  counter\n",
            (1, 10, SyntaxError::InvalidMetricType(" counter".into())),
        ),
        (
            "# TYPE \n# EOF\n",
            (1, 8, expected("metric name", EndOfLine)),
        ),
        (
            "# HELP \n# EOF\n",
            (1, 8, expected("metric name", EndOfLine)),
        ),
        (
            "# UNIT \n# EOF\n",
            (1, 8, expected("metric name", EndOfLine)),
        ),
        (
            "# TYPE m\n# EOF\n",
            (
                1,
                9,
                expected("space and text after metric name", EndOfLine),
            ),
        ),
        (
            "# HELP m\n# EOF\n",
            (
                1,
                9,
                expected("space and text after metric name", EndOfLine),
            ),
        ),
        (
            "# TYPE m.x gauge\n",
            (
                1,
                9,
                expected("space and text after metric name", Char('.')),
            ),
        ),
        (
            "# HELP \"unterminated\n",
            (2, 1, expected("closing '\"'", EndOfInput)),
        ),
        (
            "# UNIT metric suffix\n# EOF\n",
            (
                1,
                15,
                SyntaxError::UnitNotSuffix {
                    unit: "suffix".into(),
                    metric: "metric".into(),
                },
            ),
        ),
        (
            "# UNIT metricsuffix suffix\n# EOF\n",
            (
                1,
                21,
                SyntaxError::UnitNotSuffix {
                    unit: "suffix".into(),
                    metric: "metricsuffix".into(),
                },
            ),
        ),
        (
            "# UNIT m suffix\n# EOF\n",
            (
                1,
                10,
                SyntaxError::UnitNotSuffix {
                    unit: "suffix".into(),
                    metric: "m".into(),
                },
            ),
        ),
        // Separators.
        (
            "a\n# EOF\n",
            (1, 2, expected("space before value", EndOfLine)),
        ),
        (
            "a\t1\n# EOF\n",
            (1, 2, expected("space before value", Char('\t'))),
        ),
        ("a  1\n# EOF\n", (1, 3, expected("sample value", Char(' ')))),
        (
            "a 1\t2\n# EOF\n",
            (1, 3, num("sample value", "1\t2", FloatError::Syntax)),
        ),
        (
            "a 1 2 \n# EOF\n",
            (
                1,
                6,
                expected("exemplar or end of line after timestamp", Char(' ')),
            ),
        ),
        (
            "a 1 2 #\n# EOF\n",
            (
                1,
                6,
                expected("exemplar or end of line after timestamp", Char(' ')),
            ),
        ),
        (
            "a 1 1 1\n# EOF\n",
            (
                1,
                6,
                expected("exemplar or end of line after timestamp", Char(' ')),
            ),
        ),
        ("a 1 \n# EOF\n", (1, 5, expected("timestamp", EndOfLine))),
        (
            "a 1 #\n# EOF\n",
            (1, 5, num("timestamp", "#", FloatError::Syntax)),
        ),
        (
            "a 1 1z\n# EOF\n",
            (1, 5, num("timestamp", "1z", FloatError::Syntax)),
        ),
        // Labels.
        (
            "a{b='c'} 1\n# EOF\n",
            (1, 5, expected("label value in double quotes", Char('\''))),
        ),
        (
            "a{,b=\"c\"} 1\n# EOF\n",
            (1, 3, expected("label name or '}'", Char(','))),
        ),
        (
            "a{b=\"c\"d=\"e\"} 1\n# EOF\n",
            (1, 8, expected("',' or '}' after label value", Char('d'))),
        ),
        (
            "a{b=\"c\",,d=\"e\"} 1\n# EOF\n",
            (1, 9, expected("label name or '}'", Char(','))),
        ),
        (
            "a{b=\"c\", d=\"e\"} 1\n# EOF\n",
            (1, 9, expected("label name or '}'", Char(' '))),
        ),
        (
            "a{b=\n# EOF\n",
            (1, 5, expected("label value in double quotes", EndOfLine)),
        ),
        (
            "something_weird{problem=\"\n# EOF\n",
            (1, 26, expected("closing '\"'", EndOfLine)),
        ),
        (
            "a{b=\"x\\\ny\"} 1\n# EOF\n",
            (1, 8, expected("closing '\"'", EndOfLine)),
        ),
        (
            "empty_label_name{=\"\"} 0\n# EOF\n",
            (1, 18, expected("label name or '}'", Char('='))),
        ),
        (
            "{A}0\n# EOF\n",
            (1, 3, expected("'=' after label name", Char('}'))),
        ),
        (
            "{\"a\",\"b = \"c\"}\n# EOF\n",
            (1, 12, expected("'=' after label name", Char('c'))),
        ),
        (
            "{\"a\",b\\nc=\"d\"} 1\n# EOF\n",
            (1, 7, expected("'=' after label name", Char('\\'))),
        ),
        (
            "a {b=\"c\"} 1\n# EOF\n",
            (1, 3, num("sample value", "{b=\"c\"}", FloatError::Syntax)),
        ),
        (
            "{b=\"c\",} 1\n# EOF\n",
            (1, 1, SyntaxError::MetricNameNotSet),
        ),
        ("{} 1\n# EOF\n", (1, 1, SyntaxError::MetricNameNotSet)),
        (
            "a{\"b\"} 1\n# EOF\n",
            (1, 3, SyntaxError::MetricNameAlreadySet),
        ),
        (
            "{\"a\",\"b\"} 1\n# EOF\n",
            (1, 6, SyntaxError::MetricNameAlreadySet),
        ),
        (
            "a{é=\"x\"} 1\n# EOF\n",
            (1, 3, expected("label name or '}'", Char('é'))),
        ),
        // Numbers.
        (
            "a true\n# EOF\n",
            (1, 3, num("sample value", "true", FloatError::Syntax)),
        ),
        (
            "foo 1_2\n\n# EOF\n",
            (
                1,
                5,
                num("sample value", "1_2", FloatError::UnsupportedChar),
            ),
        ),
        (
            "foo 0x1p-3\n\n# EOF\n",
            (
                1,
                5,
                num("sample value", "0x1p-3", FloatError::UnsupportedChar),
            ),
        ),
        (
            "foo 0x1P-3\n\n# EOF\n",
            (
                1,
                5,
                num("sample value", "0x1P-3", FloatError::UnsupportedChar),
            ),
        ),
        (
            "foo 1e999\n# EOF\n",
            (1, 5, num("sample value", "1e999", FloatError::OutOfRange)),
        ),
        (
            "foo 0 1_2\n\n# EOF\n",
            (1, 7, num("timestamp", "1_2", FloatError::UnsupportedChar)),
        ),
        (
            "a 1 NaN\n# EOF\n",
            (
                1,
                5,
                SyntaxError::NonFiniteTimestamp {
                    what: "timestamp",
                    text: "NaN".into(),
                },
            ),
        ),
        (
            "a 1 -Inf\n# EOF\n",
            (
                1,
                5,
                SyntaxError::NonFiniteTimestamp {
                    what: "timestamp",
                    text: "-Inf".into(),
                },
            ),
        ),
        (
            "a 1 Inf\n# EOF\n",
            (
                1,
                5,
                SyntaxError::NonFiniteTimestamp {
                    what: "timestamp",
                    text: "Inf".into(),
                },
            ),
        ),
        // Exemplars.
        (
            "custom_metric_total 1 # {aa=bb}\n# EOF\n",
            (1, 29, expected("label value in double quotes", Char('b'))),
        ),
        (
            "custom_metric_total 1 # {aa=\"bb\"}\n# EOF\n",
            (1, 34, expected("space before exemplar value", EndOfLine)),
        ),
        (
            "custom_metric_total 1 # {aa=\"bb\"}",
            (1, 34, expected("space before exemplar value", EndOfInput)),
        ),
        (
            "custom_metric_total 1 # {bb}",
            (1, 28, expected("'=' after label name", Char('}'))),
        ),
        (
            "custom_metric_total 1 # {\"bb\"} 1\n# EOF\n",
            (1, 30, expected("'=' after label name", Char('}'))),
        ),
        (
            "custom_metric_total 1 # {bb, a=\"dd\"}",
            (1, 28, expected("'=' after label name", Char(','))),
        ),
        (
            "custom_metric_total 1 # {aa=\"bb\",,cc=\"dd\"} 1",
            (1, 34, expected("label name or '}'", Char(','))),
        ),
        (
            "custom_metric_total 1 # {aa=\"bb\"} 1_2",
            (
                1,
                35,
                num("exemplar value", "1_2", FloatError::UnsupportedChar),
            ),
        ),
        (
            "custom_metric_total 1 # {aa=\"bb\"} true",
            (1, 35, num("exemplar value", "true", FloatError::Syntax)),
        ),
        (
            "custom_metric_total 1 # {aa=\"bb\",cc=}",
            (1, 37, expected("label value in double quotes", Char('}'))),
        ),
        (
            "custom_metric_total 1 # {aa=\\\"\\xff\\\"} 9.0",
            (1, 29, expected("label value in double quotes", Char('\\'))),
        ),
        (
            "custom_metric_total 1 # {a=\"b\"} 1 2 3\n# EOF\n",
            (1, 36, expected("end of line after exemplar", Char(' '))),
        ),
        (
            "custom_metric_total 1 # {a=\"b\"} 1 # {c=\"d\"} 2\n# EOF\n",
            (1, 35, num("exemplar timestamp", "#", FloatError::Syntax)),
        ),
        (
            "# TYPE hhh histogram\nhhh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4 NaN",
            (
                2,
                39,
                SyntaxError::NonFiniteTimestamp {
                    what: "exemplar timestamp",
                    text: "NaN".into(),
                },
            ),
        ),
        (
            "# TYPE hhh histogram\nhhh_bucket{le=\"+Inf\"} 1 # {aa=\"bb\"} 4 -Inf",
            (
                2,
                39,
                SyntaxError::NonFiniteTimestamp {
                    what: "exemplar timestamp",
                    text: "-Inf".into(),
                },
            ),
        ),
        // Columns count characters, not bytes.
        (
            "a{b=\"ééé\"c=\"\"} 1\n# EOF\n",
            (1, 10, expected("',' or '}' after label value", Char('c'))),
        ),
        // An error deep in a document.
        (
            "# TYPE a gauge\na 1\na{b=\"c\" 2\n# EOF\n",
            (3, 8, expected("',' or '}' after label value", Char(' '))),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(first_error(input), want, "input {input:?}");
    }
}

#[test]
fn bare_identifier_in_braces_does_not_panic() {
    assert!(parse_all("{A} 0\n# EOF\n").is_err());
}

// ---- Prometheus testdata files ----

use crate::textparse::testdata::{fixtures, TESTDATA};

/// Counts computed from the raw lines, independently of the parser.
#[derive(Debug, PartialEq)]
struct Counts {
    families: usize,
    series: usize,
    samples: usize,
    exemplars: usize,
}

fn line_counts(text: &str) -> Counts {
    let mut series = HashSet::new();
    let mut c = Counts {
        families: 0,
        series: 0,
        samples: 0,
        exemplars: 0,
    };
    for line in text.lines() {
        if line.starts_with("# TYPE ") {
            c.families += 1;
        } else if !line.starts_with('#') && !line.is_empty() {
            c.samples += 1;
            let body = match line.find(" # {") {
                Some(p) => {
                    c.exemplars += 1;
                    &line[..p]
                }
                None => line,
            };
            // The series is the text up to the end of the label set, or up to the value.
            let key = match body.find("} ") {
                Some(p) if body.contains('{') => &body[..=p],
                _ => body.split(' ').next().unwrap_or(body),
            };
            series.insert(key.to_string());
        }
    }
    c.series = series.len();
    c
}

fn parser_counts(text: &str) -> Counts {
    let mut series = HashSet::new();
    let mut c = Counts {
        families: 0,
        series: 0,
        samples: 0,
        exemplars: 0,
    };
    let mut family: Option<(String, MetricType)> = None;
    let mut saw_eof = false;
    for e in OpenMetricsParser::new(text) {
        match e.unwrap() {
            Entry::Type { name, typ } => {
                c.families += 1;
                family = Some((name.into_owned(), typ));
            }
            Entry::Sample(s) => {
                c.samples += 1;
                c.exemplars += usize::from(s.exemplar.is_some());
                if let Some(ex) = &s.exemplar {
                    ex.to_labels().unwrap();
                }
                // Every sample belongs to the family its TYPE line declared, through the
                // type's suffix rules (`_total`, `_bucket`, `_count`, `_sum`, `_created`).
                let (fam, typ) = family.as_ref().expect("sample before TYPE");
                assert_eq!(family_name(&s.name, *typ), fam, "sample {}", s.name);
                series.insert(s.to_labels().unwrap());
            }
            Entry::Eof => saw_eof = true,
            _ => {}
        }
    }
    assert!(saw_eof);
    c.series = series.len();
    c
}

#[test]
fn prometheus_testdata_files() {
    let files = fixtures(".om.txt");
    assert!(files.len() >= 2, "expected the OpenMetrics fixtures");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let want = line_counts(&text);
        let got = parser_counts(&text);
        assert_eq!(got, want, "{}", path.display());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match name.as_str() {
            // Facts from NOTES.md, as a cross-check of the line-based counts.
            "alltypes.5mfs.om.txt" => {
                assert_eq!(got.families, 5);
                assert_eq!(got.exemplars, 6);
            }
            "1histogram.om.txt" => {
                assert_eq!(got.families, 1);
                assert_eq!(got.exemplars, 0);
            }
            _ => {}
        }
        eprintln!("{name}: {got:?}");
    }
}

#[test]
fn testdata_negative_le_and_exemplar_timestamps() {
    let Ok(text) = std::fs::read_to_string(format!("{TESTDATA}/alltypes.5mfs.om.txt")) else {
        return;
    };
    let got = parse_all(&text).unwrap();
    let s = got
        .iter()
        .filter_map(|e| match e {
            Entry::Sample(s) if s.exemplar.is_some() => Some(s),
            _ => None,
        })
        .next()
        .unwrap();
    assert_eq!(s.label("le"), Some("-0.0002899999999999998"));
    let ex = s.exemplar.as_ref().unwrap();
    assert_eq!(ex.labels, vec![("dummyID".into(), "17783".into())]);
    assert_eq!(ex.value, -0.0003825067330956884);
    assert_eq!(ex.timestamp_ms, Some(1726839814223));
}

// ---- Robustness and throughput ----

const VALID_DOC: &str = r#"# HELP rpc RPC latency \"distributions\".
# TYPE rpc histogram
# UNIT rpc_seconds seconds
rpc_bucket{le="0.5",svc="a\\b"} 1 # {trace="abc"} 0.3 1.5
rpc_bucket{le="+Inf",svc="a"} 2 123.5
rpc_count 2
{"rpc.x",le="1"} NaN
# TYPE c counter
c_total{a="b",} 3 # {} 1
# EOF
"#;

fn check_no_panic(p: OpenMetricsParser<'_>) {
    let mut errors = 0;
    for e in p {
        if let Err(e) = e {
            errors += 1;
            let (line, col) = e.position().unwrap();
            assert!(line >= 1 && col >= 1);
            let _ = e.to_string();
        }
    }
    assert!(errors <= 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_text_never_panics(s in "[a-z_{}=,\" #\\\\\n.0-9eE+\\-:é\t\0]{0,80}") {
        check_no_panic(OpenMetricsParser::new(&s));
    }

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..120)) {
        check_no_panic(OpenMetricsParser::from_bytes(&b));
    }

    #[test]
    fn mutated_document_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6)
    ) {
        let mut b = VALID_DOC.as_bytes().to_vec();
        for (idx, op, byte) in edits {
            if b.is_empty() { break; }
            let i = idx.index(b.len());
            match op {
                0 => { b.remove(i); }
                1 => b.insert(i, byte),
                _ => b[i] = byte,
            }
        }
        check_no_panic(OpenMetricsParser::from_bytes(&b));
    }
}

#[test]
fn valid_doc_parses() {
    let got = parse_all(VALID_DOC).unwrap();
    assert_eq!(got.len(), 9);
}

fn generate(lines: usize) -> String {
    let mut s = String::with_capacity(lines * 80);
    let mut n = 0;
    let mut fam = 0;
    while n < lines {
        s.push_str(&format!("# TYPE fam{fam}_seconds histogram\n"));
        n += 1;
        for inst in 0..4 {
            for le in ["0.1", "1.0", "+Inf"] {
                s.push_str(&format!(
                    "fam{fam}_seconds_bucket{{instance=\"host-{inst}:9090\",job=\"node\",le=\"{le}\"}} {} 1700000000.123 # {{trace_id=\"{fam:x}{inst}\"}} 0.5\n",
                    fam * 10 + inst
                ));
            }
            s.push_str(&format!(
                "fam{fam}_seconds_count{{instance=\"host-{inst}:9090\",job=\"node\"}} 12\n\
                 fam{fam}_seconds_sum{{instance=\"host-{inst}:9090\",job=\"node\"}} 3.25e-3\n"
            ));
            n += 5;
        }
        fam += 1;
    }
    s.push_str("# EOF\n");
    s
}

#[test]
fn streams_100k_lines() {
    let text = generate(100_000);
    let lines = text.lines().count();
    assert!(lines >= 100_000);
    let t = Instant::now();
    let mut samples = 0usize;
    for e in OpenMetricsParser::new(&text) {
        if let Entry::Sample(s) = e.unwrap() {
            samples += 1;
            std::hint::black_box(&s);
        }
    }
    let elapsed = t.elapsed();
    assert_eq!(
        samples,
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
    let rate = lines as f64 / elapsed.as_secs_f64();
    eprintln!(
        "parsed {lines} lines ({} bytes) in {elapsed:?}: {rate:.0} lines/s, {:.0} MB/s",
        text.len(),
        text.len() as f64 / elapsed.as_secs_f64() / 1e6
    );
}
