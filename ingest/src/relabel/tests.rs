use super::*;

fn ls(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs)
}

/// Parses one rule from YAML (validated as the config loader does).
fn rule(yaml: &str) -> RelabelConfig {
    yaml_serde::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn rule_err(yaml: &str) -> String {
    match yaml_serde::from_str::<RelabelConfig>(yaml) {
        Ok(r) => panic!("{yaml} should fail, got {r:?}"),
        Err(e) => e.to_string(),
    }
}

fn run(input: &[(&str, &str)], rules: &[&str]) -> Option<Labels> {
    let cfgs: Vec<RelabelConfig> = rules.iter().map(|r| rule(r)).collect();
    process(&ls(input), &cfgs)
}

#[test]
fn defaults_match_prometheus() {
    let r = rule("target_label: x");
    assert_eq!(r.action, Action::Replace);
    assert_eq!(r.separator, ";");
    assert_eq!(r.regex.as_str(), "(.*)");
    assert!(r.regex.is_default());
    assert_eq!(r.replacement, "$1");
    assert_eq!(r.modulus, 0);
    assert!(r.source_labels.is_none());
    // An explicit (.*) is not the default (Prometheus compares regex pointers).
    assert!(!rule("{target_label: x, regex: '(.*)'}").regex.is_default());
    // Actions are case-insensitive.
    assert_eq!(
        rule("{action: LabelDrop, regex: x}").action,
        Action::LabelDrop
    );
}

#[test]
fn replace_cases() {
    let input = [("a", "foo"), ("b", "bar"), ("c", "baz")];
    // Regex match with capture groups, joined sources.
    assert_eq!(
        run(
            &input,
            &["{source_labels: [a, b], regex: 'f(.*);(.*)r', target_label: a, replacement: '${1}${2}'}"]
        ),
        Some(ls(&[("a", "ooba"), ("b", "bar"), ("c", "baz")]))
    );
    // No match: unchanged.
    assert_eq!(
        run(
            &input,
            &["{source_labels: [a], regex: 'x(.*)', target_label: d}"]
        ),
        Some(ls(&input))
    );
    // Default regex (.*) and $1 copy a label.
    assert_eq!(
        run(&input, &["{source_labels: [a], target_label: d}"]),
        Some(ls(&[
            ("a", "foo"),
            ("b", "bar"),
            ("c", "baz"),
            ("d", "foo")
        ]))
    );
    // Empty replacement result deletes the target label.
    assert_eq!(
        run(
            &input,
            &["{source_labels: [a], regex: 'foo', target_label: b, replacement: ''}"]
        ),
        Some(ls(&[("a", "foo"), ("c", "baz")]))
    );
    // Fast path: empty source value with default regex sets the static replacement.
    assert_eq!(
        run(&input, &["{target_label: z, replacement: static}"]),
        Some(ls(&[
            ("a", "foo"),
            ("b", "bar"),
            ("c", "baz"),
            ("z", "static")
        ]))
    );
    // ... and with an empty replacement deletes.
    assert_eq!(
        run(
            &input,
            &["{source_labels: [nope], target_label: a, replacement: ''}"]
        ),
        Some(ls(&[("b", "bar"), ("c", "baz")]))
    );
    // Missing source label with default regex and $1: value empty → target deleted.
    assert_eq!(
        run(&input, &["{source_labels: [nope], target_label: a}"]),
        Some(ls(&[("b", "bar"), ("c", "baz")]))
    );
    // Target label from a capture group.
    assert_eq!(
        run(
            &[("a", "some-name-value")],
            &["{source_labels: [a], regex: 'some-([^-]+)-([^,]+)', target_label: '${1}', replacement: '${2}'}"]
        ),
        Some(ls(&[("a", "some-name-value"), ("name", "value")]))
    );
    // An invalid expanded target name (empty, from a missing group) is a no-op.
    assert_eq!(
        run(
            &[("a", "foo")],
            &["{source_labels: [a], regex: '(f).*', target_label: '$2', replacement: 'x'}"]
        ),
        Some(ls(&[("a", "foo")]))
    );
    // `(?s)`: dot matches newlines.
    assert_eq!(
        run(
            &[("a", "foo\nbar")],
            &["{source_labels: [a], regex: 'foo.bar', target_label: m, replacement: yes}"]
        ),
        Some(ls(&[("a", "foo\nbar"), ("m", "yes")]))
    );
    // Anchored: a partial match does not count.
    assert_eq!(
        run(
            &[("a", "xfoo")],
            &["{source_labels: [a], regex: foo, target_label: m, replacement: yes}"]
        ),
        Some(ls(&[("a", "xfoo")]))
    );
}

#[test]
fn go_expand_semantics() {
    let re = regex::Regex::new("^(?s:(?P<first>a)(b)(c)?)$").unwrap();
    let caps = re.captures("ab").unwrap();
    let cases = [
        ("$1", "a"),
        ("${1}", "a"),
        ("${first}", "a"),
        ("$first", "a"),
        ("$1x", ""), // the group named `1x`
        ("${1}x", "ax"),
        ("$2$1", "ba"),
        ("$$1", "$1"),
        ("$3", ""),     // unmatched group
        ("$9", ""),     // out of range
        ("$01", ""),    // leading zero: a name, not a number
        ("$", "$"),     // nothing nameable: literal
        ("$-", "$-"),   // likewise
        ("${1", "${1"), // missing brace: literal `$`
        ("${}", "${}"), // empty name: literal
        ("x$0y", "x"),  // $0y is the name `0y`
        ("x${0}y", "xaby"),
    ];
    for (t, want) in cases {
        assert_eq!(expand(&re, &caps, t), want, "template {t:?}");
    }
}

#[test]
fn keep_and_drop() {
    let input = [("a", "foo"), ("b", "bar")];
    assert_eq!(
        run(
            &input,
            &["{source_labels: [a], regex: 'f.*', action: drop}"]
        ),
        None
    );
    assert_eq!(
        run(
            &input,
            &["{source_labels: [a], regex: 'x.*', action: drop}"]
        ),
        Some(ls(&input))
    );
    assert_eq!(
        run(
            &input,
            &["{source_labels: [a], regex: 'f.*', action: keep}"]
        ),
        Some(ls(&input))
    );
    assert_eq!(
        run(
            &input,
            &["{source_labels: [a], regex: 'x.*', action: keep}"]
        ),
        None
    );
    // Joined values with a custom separator; missing labels contribute "".
    assert_eq!(
        run(
            &input,
            &["{source_labels: [a, z, b], separator: ',', regex: 'foo,,bar', action: keep}"]
        ),
        Some(ls(&input))
    );
    // Rules stop at the first drop.
    assert_eq!(
        run(
            &input,
            &[
                "{source_labels: [a], regex: foo, action: drop}",
                "{target_label: x, replacement: y}"
            ]
        ),
        None
    );
}

#[test]
fn keepequal_and_dropequal() {
    let eq = [("a", "x"), ("b", "x")];
    let ne = [("a", "x"), ("b", "y")];
    let keep = "{source_labels: [a], target_label: b, action: keepequal}";
    let drop = "{source_labels: [a], target_label: b, action: dropequal}";
    assert_eq!(run(&eq, &[keep]), Some(ls(&eq)));
    assert_eq!(run(&ne, &[keep]), None);
    assert_eq!(run(&eq, &[drop]), None);
    assert_eq!(run(&ne, &[drop]), Some(ls(&ne)));
}

#[test]
fn hashmod_matches_prometheus() {
    // Expected values from Prometheus's relabel tests.
    assert_eq!(
        run(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            &["{source_labels: [c], target_label: d, action: hashmod, modulus: 1000}"]
        ),
        Some(ls(&[
            ("a", "foo"),
            ("b", "bar"),
            ("c", "baz"),
            ("d", "976")
        ]))
    );
    assert_eq!(
        run(
            &[("a", "foo\nbar")],
            &["{source_labels: [a], target_label: b, action: hashmod, modulus: 1000}"]
        ),
        Some(ls(&[("a", "foo\nbar"), ("b", "734")]))
    );
}

#[test]
fn labelmap_labeldrop_labelkeep() {
    assert_eq!(
        run(
            &[("a", "foo"), ("b1", "bar"), ("b2", "baz")],
            &["{action: labelmap, regex: '(b.*)', replacement: 'bar_${1}'}"]
        ),
        Some(ls(&[
            ("a", "foo"),
            ("b1", "bar"),
            ("b2", "baz"),
            ("bar_b1", "bar"),
            ("bar_b2", "baz")
        ]))
    );
    // The usual Kubernetes idiom.
    assert_eq!(
        run(
            &[("__meta_kubernetes_pod_label_app", "web"), ("x", "1")],
            &["{action: labelmap, regex: '__meta_kubernetes_pod_label_(.+)'}"]
        ),
        Some(ls(&[
            ("__meta_kubernetes_pod_label_app", "web"),
            ("app", "web"),
            ("x", "1")
        ]))
    );
    assert_eq!(
        run(
            &[("a", "1"), ("b1", "2"), ("b2", "3")],
            &["{action: labeldrop, regex: 'b.*'}"]
        ),
        Some(ls(&[("a", "1")]))
    );
    assert_eq!(
        run(
            &[("a", "1"), ("b1", "2"), ("b2", "3")],
            &["{action: labelkeep, regex: 'b.*'}"]
        ),
        Some(ls(&[("b1", "2"), ("b2", "3")]))
    );
}

#[test]
fn lowercase_uppercase() {
    assert_eq!(
        run(
            &[("foo", "bAr123Foo")],
            &["{source_labels: [foo], target_label: foo_uppercase, action: uppercase}"]
        ),
        Some(ls(&[("foo", "bAr123Foo"), ("foo_uppercase", "BAR123FOO")]))
    );
    assert_eq!(
        run(
            &[("foo", "bAr123Foo")],
            &["{source_labels: [foo], target_label: foo_lowercase, action: lowercase}"]
        ),
        Some(ls(&[("foo", "bAr123Foo"), ("foo_lowercase", "bar123foo")]))
    );
}

#[test]
fn ascii_perl_classes() {
    // \d is ASCII-only in Go: an Arabic-Indic digit does not match.
    assert_eq!(
        run(
            &[("a", "٣")],
            &["{source_labels: [a], regex: '\\d', action: keep}"]
        ),
        None
    );
    assert!(run(
        &[("a", "3")],
        &["{source_labels: [a], regex: '\\d', action: keep}"]
    )
    .is_some());
}

#[test]
fn validation_errors_name_the_problem() {
    assert!(rule_err("{action: hashmod, target_label: x}").contains("requires non-zero modulus"));
    assert!(rule_err("{action: replace}").contains("requires 'target_label'"));
    assert!(rule_err("{action: lowercase, source_labels: [a]}").contains("requires 'target_label'"));
    assert!(
        rule_err("{action: keepequal, source_labels: [a], target_label: b, regex: x}")
            .contains("requires only 'source_labels' and `target_label`")
    );
    assert!(
        rule_err("{action: dropequal, source_labels: [a], target_label: b, replacement: y}")
            .contains("'replacement' can not be set for dropequal action")
    );
    assert!(
        rule_err("{action: labeldrop, regex: x, source_labels: [a]}")
            .contains("labeldrop action requires only 'regex'")
    );
    assert!(
        rule_err("{action: uppercase, source_labels: [a], target_label: b, replacement: z}")
            .contains("'replacement' can not be set for uppercase action")
    );
    assert!(rule_err("{action: bogus}").contains("unknown relabel action \"bogus\""));
    let e = rule_err("{source_labels: [a], regex: 'a(b', target_label: x}");
    assert!(e.contains("invalid regex \"a(b\""), "{e}");
    assert!(rule_err("{target_label: x, foo: bar}").contains("unknown field `foo`"));

    // Legacy name validation (when a job asks for it).
    let mut r = rule("{target_label: 'a.b'}");
    assert!(r.validate(ValidationScheme::Utf8).is_ok());
    let e = r.validate(ValidationScheme::Legacy).unwrap_err();
    assert!(
        e.contains("\"a.b\" is invalid 'target_label' for replace action"),
        "{e}"
    );
    let mut r = rule("{target_label: 'x_${1}', source_labels: [a]}");
    assert!(r.validate(ValidationScheme::Legacy).is_ok());
    let mut r = rule("{action: labelmap, regex: '(.*)', replacement: 'a-$1'}");
    assert!(r.validate(ValidationScheme::Legacy).is_err());
}

#[test]
fn null_regex_is_the_empty_pattern() {
    // `regex:` with no value compiles the empty pattern (Prometheus's conf.good.yml has this).
    let r = rule("{regex: , replacement: static, target_label: abc}");
    assert_eq!(r.regex.as_str(), "");
    assert!(!r.regex.is_default());
    assert_eq!(
        run(
            &[("x", "1")],
            &["{regex: , replacement: static, target_label: abc}"]
        ),
        Some(ls(&[("abc", "static"), ("x", "1")]))
    );
}
