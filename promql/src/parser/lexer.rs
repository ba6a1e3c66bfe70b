//! The PromQL lexer: turns the query into tokens with byte positions, following the states and
//! error messages of Prometheus's `promql/parser/lex.go` (statement level, inside `{...}`, inside
//! `[...]` duration expressions). Small scanners are nom combinators over `&str`.
//!
//! Lexing stops at the first error, which becomes a final [`T::Error`] token; the parser reports it
//! only when it reaches it (as Prometheus does, so an earlier syntax error wins).

use nom::bytes::complete::{take_while, take_while1};
use nom::IResult;

use super::ast::AggregateOp;

/// Token types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum T {
    Eof,
    Error,
    Comma,
    Colon,
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    /// `=` (in matchers).
    Eql,
    Number,
    Duration,
    Str,
    Identifier,
    MetricIdentifier,
    // Operators.
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eqlc,
    Neq,
    Lte,
    Lss,
    Gte,
    Gtr,
    TrimUpper,
    TrimLower,
    EqlRegex,
    NeqRegex,
    At,
    Land,
    Lor,
    Lunless,
    Atan2,
    // Aggregators.
    Agg(AggregateOp),
    // Keywords.
    Bool,
    By,
    GroupLeft,
    GroupRight,
    Fill,
    FillLeft,
    FillRight,
    Ignoring,
    Offset,
    Smoothed,
    Anchored,
    On,
    Without,
    // Preprocessors.
    Start,
    End,
    Step,
    Range,
    MaxOf,
    MinOf,
}

impl T {
    fn is_operator(self) -> bool {
        matches!(
            self,
            T::Add
                | T::Sub
                | T::Mul
                | T::Div
                | T::Mod
                | T::Pow
                | T::Eqlc
                | T::Neq
                | T::Lte
                | T::Lss
                | T::Gte
                | T::Gtr
                | T::TrimUpper
                | T::TrimLower
                | T::EqlRegex
                | T::NeqRegex
                | T::At
                | T::Land
                | T::Lor
                | T::Lunless
                | T::Atan2
        )
    }

    fn is_keyword(self) -> bool {
        matches!(
            self,
            T::Bool
                | T::By
                | T::GroupLeft
                | T::GroupRight
                | T::Fill
                | T::FillLeft
                | T::FillRight
                | T::Ignoring
                | T::Offset
                | T::Smoothed
                | T::Anchored
                | T::On
                | T::Without
        )
    }
}

/// A token: type, byte offset, and text (for `Error`, the message).
#[derive(Clone, Debug)]
pub struct Token {
    pub t: T,
    pub pos: usize,
    pub val: String,
}

impl Token {
    /// End offset (exclusive).
    pub fn end(&self) -> usize {
        if self.t == T::Error || self.t == T::Eof {
            self.pos
        } else {
            self.pos + self.val.len()
        }
    }

    /// Prometheus's `Item.String()`.
    fn item_string(&self) -> String {
        match self.t {
            T::Eof => "EOF".into(),
            T::Error => self.val.clone(),
            T::Identifier | T::MetricIdentifier => go_quote(&self.val),
            t if t.is_keyword() => format!("<{}>", self.val),
            t if t.is_operator() => format!("<op:{}>", self.val),
            T::Agg(_) => format!("<aggr:{}>", self.val),
            _ => {
                if self.val.chars().count() > 10 {
                    let head: String = self.val.chars().take(10).collect();
                    format!("{}...", go_quote(&head))
                } else {
                    go_quote(&self.val)
                }
            }
        }
    }

    /// Prometheus's `Item.desc()`, used in `unexpected ...` messages.
    pub fn desc(&self) -> String {
        let kind = match self.t {
            T::Eof => return "end of input".into(),
            T::Error => "error",
            T::Identifier => "identifier",
            T::MetricIdentifier => "metric identifier",
            T::Str => "string",
            T::Number => "number",
            T::Duration => "duration",
            _ => return self.item_string(),
        };
        format!("{} {}", kind, self.item_string())
    }
}

/// Go's `%q` for strings (`strconv.Quote`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_go_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%q` for a rune (`strconv.QuoteRune`).
pub fn go_quote_rune(c: Option<char>) -> String {
    let c = c.unwrap_or('\u{FFFD}');
    let mut out = String::from("'");
    push_go_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

/// Go's `%#U` (`U+0063 'c'`).
fn go_unicode(c: Option<char>) -> String {
    let c = c.unwrap_or('\u{FFFD}');
    if is_printable(c) {
        format!("U+{:04X} '{}'", c as u32, c)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

fn is_printable(c: char) -> bool {
    !c.is_control() && c != '\u{FFFD}' && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{AD}')
}

fn push_go_escaped(out: &mut String, c: char, quote: char) {
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if is_printable(c) || c == ' ' => out.push(c),
        c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

/// nom: an identifier-like word (`[A-Za-z0-9_:]*`).
fn word_with_colon(i: &str) -> IResult<&str, &str> {
    take_while(|c: char| is_alnum(c) || c == ':')(i)
}

/// nom: a word of letters and underscores (duration keywords).
fn alpha_word(i: &str) -> IResult<&str, &str> {
    take_while1(is_alpha)(i)
}

/// nom: a run of spaces.
fn spaces(i: &str) -> IResult<&str, &str> {
    take_while(is_space)(i)
}

/// Keyword lookup (lower-cased word).
fn keyword(w: &str) -> Option<T> {
    Some(match w {
        "and" => T::Land,
        "or" => T::Lor,
        "unless" => T::Lunless,
        "atan2" => T::Atan2,
        "offset" => T::Offset,
        "smoothed" => T::Smoothed,
        "anchored" => T::Anchored,
        "by" => T::By,
        "without" => T::Without,
        "on" => T::On,
        "ignoring" => T::Ignoring,
        "group_left" => T::GroupLeft,
        "group_right" => T::GroupRight,
        "fill" => T::Fill,
        "fill_left" => T::FillLeft,
        "fill_right" => T::FillRight,
        "bool" => T::Bool,
        "start" => T::Start,
        "end" => T::End,
        "step" => T::Step,
        "range" => T::Range,
        "max_of" => T::MaxOf,
        "min_of" => T::MinOf,
        "inf" | "nan" => T::Number,
        _ => return AggregateOp::from_name(w).map(T::Agg),
    })
}

fn duration_keyword(w: &str) -> Option<T> {
    match w {
        "step" => Some(T::Step),
        "range" => Some(T::Range),
        "max_of" => Some(T::MaxOf),
        "min_of" => Some(T::MinOf),
        _ => None,
    }
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    width: usize,
    paren_depth: i64,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
    got_duration: bool,
    /// In the `lexDurationExpr` state (just after `[`, until a number or `]`).
    in_duration_expr: bool,
    out: Vec<Token>,
}

/// Lexes the whole input. The last token is `Eof` or `Error`. Comments are dropped.
pub fn lex(input: &str) -> Vec<Token> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        width: 0,
        paren_depth: 0,
        brace_open: false,
        bracket_open: false,
        got_colon: false,
        got_duration: false,
        in_duration_expr: false,
        out: Vec::new(),
    };
    loop {
        let done = if l.brace_open {
            l.inside_braces()
        } else if l.in_duration_expr {
            l.duration_expr()
        } else {
            l.statements()
        };
        if done {
            break;
        }
    }
    l.out
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn next(&mut self) -> Option<char> {
        match self.rest().chars().next() {
            Some(c) => {
                self.width = c.len_utf8();
                self.pos += self.width;
                Some(c)
            }
            None => {
                self.width = 0;
                None
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn backup(&mut self) {
        self.pos -= self.width;
        self.width = 0;
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.next();
                true
            }
            _ => false,
        }
    }

    fn is(&self, valid: &str) -> bool {
        matches!(self.peek(), Some(c) if valid.contains(c))
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn emit(&mut self, t: T) {
        self.out.push(Token {
            t,
            pos: self.start,
            val: self.input[self.start..self.pos].to_string(),
        });
        self.start = self.pos;
    }

    fn ignore(&mut self) {
        self.start = self.pos;
    }

    /// Emits an error token; lexing ends.
    fn errorf(&mut self, msg: String) -> bool {
        self.out.push(Token {
            t: T::Error,
            pos: self.start,
            val: msg,
        });
        true
    }

    fn skip_spaces(&mut self) {
        if let Ok((rest, _)) = spaces(self.rest()) {
            self.pos = self.input.len() - rest.len();
        }
        self.ignore();
    }

    fn line_comment(&mut self) {
        let rest = self.rest();
        let n = rest.find(['\n', '\r']).unwrap_or(rest.len());
        self.pos += n;
        self.ignore();
    }

    /// `lexStatements`. Returns true when lexing is finished.
    fn statements(&mut self) -> bool {
        if self.rest().starts_with('#') {
            self.line_comment();
            return false;
        }
        let r = self.next();
        match r {
            None => {
                if self.paren_depth != 0 {
                    return self.errorf("unclosed left parenthesis".into());
                }
                if self.bracket_open {
                    return self.errorf("unclosed left bracket".into());
                }
                self.emit(T::Eof);
                return true;
            }
            Some(',') => self.emit(T::Comma),
            Some(c) if is_space(c) => self.skip_spaces(),
            Some('*') => self.emit(T::Mul),
            Some('/') => self.emit(T::Div),
            Some('%') => self.emit(T::Mod),
            Some('+') => self.emit(T::Add),
            Some('-') => self.emit(T::Sub),
            Some('^') => self.emit(T::Pow),
            Some('=') => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(T::Eqlc)
                }
                Some('~') => {
                    return self.errorf(format!(
                        "unexpected character after '=': {}",
                        go_quote_rune(Some('~'))
                    ))
                }
                _ => self.emit(T::Eql),
            },
            Some('!') => {
                let t = self.next();
                if t != Some('=') {
                    return self.errorf(format!(
                        "unexpected character after '!': {}",
                        go_quote_rune(t)
                    ));
                }
                self.emit(T::Neq)
            }
            Some('<') => {
                if self.accept("=") {
                    self.emit(T::Lte)
                } else if self.accept("/") {
                    self.emit(T::TrimUpper)
                } else {
                    self.emit(T::Lss)
                }
            }
            Some('>') => {
                if self.accept("=") {
                    self.emit(T::Gte)
                } else if self.accept("/") {
                    self.emit(T::TrimLower)
                } else {
                    self.emit(T::Gtr)
                }
            }
            Some(c)
                if c.is_ascii_digit()
                    || (c == '.' && matches!(self.peek(), Some(d) if d.is_ascii_digit())) =>
            {
                self.backup();
                return self.number_or_duration();
            }
            Some(q @ ('"' | '\'')) => return self.string(q),
            Some('`') => return self.raw_string(),
            Some(c) if is_alpha(c) || c == ':' => {
                if !self.bracket_open {
                    self.backup();
                    self.keyword_or_identifier();
                    return false;
                }
                if c == ':' {
                    if self.got_colon {
                        return self.errorf(format!("unexpected colon {}", go_quote_rune(Some(c))));
                    }
                    self.emit(T::Colon);
                    self.got_colon = true;
                    return false;
                }
                if self.scan_duration_keyword() {
                    return false;
                }
                return self.errorf(format!(
                    "unexpected character: {}, expected {}",
                    go_quote_rune(Some(c)),
                    go_quote_rune(Some(':'))
                ));
            }
            Some('(') => {
                self.emit(T::LParen);
                self.paren_depth += 1;
            }
            Some(')') => {
                self.emit(T::RParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    // The error replaces the `)` token, as in Prometheus.
                    if let Some(t) = self.out.pop() {
                        self.start = t.pos;
                    }
                    return self.errorf(format!(
                        "unexpected right parenthesis {}",
                        go_quote_rune(Some(')'))
                    ));
                }
            }
            Some('{') => {
                self.emit(T::LBrace);
                self.brace_open = true;
            }
            Some('[') => {
                if self.bracket_open {
                    return self.errorf(format!(
                        "unexpected left bracket {}",
                        go_quote_rune(Some('['))
                    ));
                }
                self.got_colon = false;
                self.emit(T::LBracket);
                self.skip_spaces();
                self.bracket_open = true;
                self.in_duration_expr = true;
            }
            Some(']') => {
                if !self.bracket_open {
                    return self.errorf(format!(
                        "unexpected right bracket {}",
                        go_quote_rune(Some(']'))
                    ));
                }
                self.emit(T::RBracket);
                self.bracket_open = false;
            }
            Some('@') => self.emit(T::At),
            Some(c) => {
                return self.errorf(format!("unexpected character: {}", go_quote_rune(Some(c))))
            }
        }
        false
    }

    /// `lexDurationExpr`.
    fn duration_expr(&mut self) -> bool {
        let r = self.next();
        match r {
            None => return self.errorf("unexpected end of input in duration expression".into()),
            Some(']') => {
                self.emit(T::RBracket);
                self.bracket_open = false;
                self.got_colon = false;
                self.in_duration_expr = false;
            }
            Some(':') => {
                if !self.got_duration {
                    return self
                        .errorf("unexpected colon before duration in duration expression".into());
                }
                if self.got_colon {
                    return self.errorf("unexpected repeated colon in duration expression".into());
                }
                self.emit(T::Colon);
                self.got_colon = true;
            }
            Some('(') => {
                self.emit(T::LParen);
                self.paren_depth += 1;
            }
            Some(')') => {
                self.emit(T::RParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    // The error replaces the `)` token, as in Prometheus.
                    if let Some(t) = self.out.pop() {
                        self.start = t.pos;
                    }
                    return self.errorf(format!(
                        "unexpected right parenthesis {}",
                        go_quote_rune(Some(')'))
                    ));
                }
            }
            Some(c) if is_space(c) => self.skip_spaces(),
            Some('+') => self.emit(T::Add),
            Some('-') => self.emit(T::Sub),
            Some('*') => self.emit(T::Mul),
            Some('/') => self.emit(T::Div),
            Some('%') => self.emit(T::Mod),
            Some('^') => self.emit(T::Pow),
            Some(',') => self.emit(T::Comma),
            Some(c) if matches!(c.to_ascii_lowercase(), 's' | 'r' | 'm') => {
                if !self.scan_duration_keyword() {
                    return self.errorf(format!(
                        "unexpected character in duration expression: {}",
                        go_quote_rune(Some(c))
                    ));
                }
            }
            Some(c)
                if c.is_ascii_digit()
                    || (c == '.' && matches!(self.peek(), Some(d) if d.is_ascii_digit())) =>
            {
                self.backup();
                self.got_duration = true;
                self.in_duration_expr = false;
                return self.number_or_duration();
            }
            Some(c) => {
                return self.errorf(format!(
                    "unexpected character in duration expression: {}",
                    go_quote_rune(Some(c))
                ))
            }
        }
        false
    }

    /// Scans `step`, `range`, `max_of`, `min_of` (any case); the first char is consumed.
    fn scan_duration_keyword(&mut self) -> bool {
        let word_start = self.start;
        let rest = &self.input[word_start..];
        let Ok((after, w)) = alpha_word(rest) else {
            return false;
        };
        self.pos = self.input.len() - after.len();
        match duration_keyword(&w.to_ascii_lowercase()) {
            Some(t) => {
                self.emit(t);
                true
            }
            None => false,
        }
    }

    /// `lexInsideBraces`.
    fn inside_braces(&mut self) -> bool {
        if self.rest().starts_with('#') {
            self.line_comment();
            return false;
        }
        let r = self.next();
        match r {
            None => return self.errorf("unexpected end of input inside braces".into()),
            Some(c) if is_space(c) => self.skip_spaces(),
            Some(c) if is_alpha(c) => {
                let rest = self.rest();
                let n = rest.find(|c: char| !is_alnum(c)).unwrap_or(rest.len());
                self.pos += n;
                self.emit(T::Identifier);
            }
            Some(',') => self.emit(T::Comma),
            Some(q @ ('"' | '\'')) => return self.string(q),
            Some('`') => return self.raw_string(),
            Some('=') => {
                if self.accept("~") {
                    self.emit(T::EqlRegex)
                } else {
                    self.emit(T::Eql)
                }
            }
            Some('!') => match self.next() {
                Some('~') => self.emit(T::NeqRegex),
                Some('=') => self.emit(T::Neq),
                nr => {
                    return self.errorf(format!(
                        "unexpected character after '!' inside braces: {}",
                        go_quote_rune(nr)
                    ))
                }
            },
            Some('{') => {
                return self.errorf(format!(
                    "unexpected left brace {}",
                    go_quote_rune(Some('{'))
                ))
            }
            Some('}') => {
                self.emit(T::RBrace);
                self.brace_open = false;
            }
            Some(c) => {
                return self.errorf(format!(
                    "unexpected character inside braces: {}",
                    go_quote_rune(Some(c))
                ))
            }
        }
        false
    }

    /// `lexString`; the opening quote is consumed.
    fn string(&mut self, quote: char) -> bool {
        loop {
            match self.next() {
                Some('\\') => {
                    if let Some(msg) = self.escape(quote) {
                        return self.errorf(msg);
                    }
                }
                Some('\u{FFFD}') => return self.errorf("invalid UTF-8 rune".into()),
                None | Some('\n') => return self.errorf("unterminated quoted string".into()),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.emit(T::Str);
        false
    }

    /// `lexEscape`: validates one escape sequence (backslash consumed).
    fn escape(&mut self, quote: char) -> Option<String> {
        let mut ch = self.next();
        let (mut n, base, max): (u32, u32, u32) = match ch {
            Some(c) if "abfnrtv\\".contains(c) || c == quote => return None,
            Some('0'..='7') => (3, 8, 255),
            Some('x') => {
                ch = self.next();
                (2, 16, 255)
            }
            Some('u') => {
                ch = self.next();
                (4, 16, 0x10FFFF)
            }
            Some('U') => {
                ch = self.next();
                (8, 16, 0x10FFFF)
            }
            None => return Some("escape sequence not terminated".into()),
            Some(c) => return Some(format!("unknown escape sequence {}", go_unicode(Some(c)))),
        };
        let mut x: u32 = 0;
        while n > 0 {
            let d = ch.and_then(|c| c.to_digit(16)).unwrap_or(16);
            if d >= base {
                if ch.is_none() {
                    return Some("escape sequence not terminated".into());
                }
                return Some(format!(
                    "illegal character {} in escape sequence",
                    go_unicode(ch)
                ));
            }
            x = x.wrapping_mul(base).wrapping_add(d);
            n -= 1;
            if n > 0 {
                ch = self.next();
            }
        }
        if x > max || (0xD800..0xE000).contains(&x) {
            return Some("escape sequence is an invalid Unicode code point".into());
        }
        None
    }

    /// `lexRawString`; the opening backtick is consumed.
    fn raw_string(&mut self) -> bool {
        loop {
            match self.next() {
                Some('\u{FFFD}') => return self.errorf("invalid UTF-8 rune".into()),
                None => return self.errorf("unterminated raw string".into()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(T::Str);
        false
    }

    /// `lexKeywordOrIdentifier` at statement level.
    fn keyword_or_identifier(&mut self) {
        if let Ok((rest, _)) = word_with_colon(self.rest()) {
            self.pos = self.input.len() - rest.len();
        }
        let word = &self.input[self.start..self.pos];
        match keyword(&word.to_ascii_lowercase()) {
            Some(kw @ (T::Fill | T::FillLeft | T::FillRight)) => {
                let followed_by_paren = self.rest().trim_start_matches(is_space).starts_with('(');
                self.emit(if followed_by_paren { kw } else { T::Identifier });
            }
            Some(kw) => self.emit(kw),
            None if !word.contains(':') => self.emit(T::Identifier),
            None => self.emit(T::MetricIdentifier),
        }
    }

    /// `lexNumberOrDuration`.
    fn number_or_duration(&mut self) -> bool {
        if self.scan_number() {
            self.emit(T::Number);
            return false;
        }
        if self.accept_remaining_duration() {
            self.backup();
            self.emit(T::Duration);
            return false;
        }
        let text = self.input[self.start..self.pos].to_string();
        self.errorf(format!(
            "bad number or duration syntax: {}",
            go_quote(&text)
        ))
    }

    fn accept_remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            self.accept_run("0123456789");
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        let c = self.next();
        !matches!(c, Some(c) if is_alnum(c))
    }

    /// `scanNumber`: decimal, hex, float with `_` separators and exponents.
    fn scan_number(&mut self) -> bool {
        let initial = self.pos;
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            self.accept("_");
            digits = "0123456789abcdefABCDEF";
        }
        self.accept(".");
        self.accept(digits);
        let mut dot = false;
        let mut exp = false;
        let all = format!("{digits}._eE");
        while self.is(&all) {
            if self.is(".") && dot {
                self.accept(".");
                return false;
            }
            if self.is("eE") && exp {
                self.accept("eE");
                return false;
            }
            if self.accept(".") {
                dot = true;
                if self.accept("_.") {
                    return false;
                }
                if digits.len() > 10 {
                    return false;
                }
                continue;
            }
            if self.accept("eE") {
                exp = true;
                self.accept("+-");
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            if self.accept("_") {
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            self.accept_run(digits);
        }
        if self.pos == initial {
            return false;
        }
        !matches!(self.peek(), Some(c) if is_alnum(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(s: &str) -> Vec<T> {
        lex(s).into_iter().map(|t| t.t).collect()
    }

    #[test]
    fn basic_tokens() {
        assert_eq!(
            types("sum by (a) (rate(x[5m])) > bool 1"),
            vec![
                T::Agg(AggregateOp::Sum),
                T::By,
                T::LParen,
                T::Identifier,
                T::RParen,
                T::LParen,
                T::Identifier,
                T::LParen,
                T::Identifier,
                T::LBracket,
                T::Duration,
                T::RBracket,
                T::RParen,
                T::RParen,
                T::Gtr,
                T::Bool,
                T::Number,
                T::Eof
            ]
        );
        assert_eq!(
            types("a:b{c=~'d'} # comment"),
            vec![
                T::MetricIdentifier,
                T::LBrace,
                T::Identifier,
                T::EqlRegex,
                T::Str,
                T::RBrace,
                T::Eof
            ]
        );
        assert_eq!(
            types("fill + fill(1)"),
            vec![
                T::Identifier,
                T::Add,
                T::Fill,
                T::LParen,
                T::Number,
                T::RParen,
                T::Eof
            ]
        );
    }

    #[test]
    fn numbers() {
        for n in [
            "1", "0x1f", "1e3", "1.5e-3", ".5", "1_000", "0x_1F", "5.", "Inf", "NaN", "nan",
        ] {
            assert_eq!(types(n), vec![T::Number, T::Eof], "{n}");
        }
        for d in ["5m", "1h30m", "100ms", "1y2w", "5y1hs"] {
            assert_eq!(types(d), vec![T::Duration, T::Eof], "{d}");
        }
        for (bad, msg) in [
            ("5mm", "bad number or duration syntax: \"5mm\""),
            ("1m1", "bad number or duration syntax: \"1m1\""),
            ("2.5.", "bad number or duration syntax: \"2.5.\""),
            ("100..", "bad number or duration syntax: \"100..\""),
            ("0de", "bad number or duration syntax: \"0de\""),
        ] {
            let toks = lex(bad);
            let last = toks.last().unwrap();
            assert_eq!((last.t, last.val.as_str()), (T::Error, msg), "{bad}");
        }
    }

    #[test]
    fn string_errors() {
        let e = |s: &str| lex(s).last().unwrap().val.clone();
        assert_eq!(e(r#""\c""#), "unknown escape sequence U+0063 'c'");
        assert_eq!(
            e(r#""\x.""#),
            "illegal character U+002E '.' in escape sequence"
        );
        assert_eq!(e("\"abc"), "unterminated quoted string");
        assert_eq!(e("`abc"), "unterminated raw string");
        assert_eq!(e(r#""\"#), "escape sequence not terminated");
    }
}
