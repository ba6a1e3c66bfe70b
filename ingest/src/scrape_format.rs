//! Scrape content negotiation: the `Accept` header Prometheus 3 sends (`scrape/scrape.go`'s
//! `acceptHeader` over `config.ScrapeProtocolsHeaders`) and the choice of parser for a
//! response's `Content-Type` (`model/textparse/interface.go`'s `New`/`extractMediaType`),
//! including the `fallback_scrape_protocol` behaviour. Only the text formats are supported:
//! OpenMetrics ([`OpenMetricsParser`]) and Prometheus text ([`PromTextParser`]); protobuf is
//! neither offered nor accepted.

use crate::error::{Error, Result};
use crate::openmetrics::OpenMetricsParser;
use crate::promtext::PromTextParser;
use crate::textparse::Entry;

/// A text exposition protocol a scrape may ask for (Prometheus's `config.ScrapeProtocol`,
/// without `PrometheusProto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScrapeProtocol {
    OpenMetricsText1_0_0,
    OpenMetricsText0_0_1,
    PrometheusText1_0_0,
    PrometheusText0_0_4,
}

/// Prometheus 3's default `scrape_protocols` order (protobuf is only first when native
/// histograms are scraped, which we do not support).
pub const DEFAULT_SCRAPE_PROTOCOLS: [ScrapeProtocol; 4] = [
    ScrapeProtocol::OpenMetricsText1_0_0,
    ScrapeProtocol::OpenMetricsText0_0_1,
    ScrapeProtocol::PrometheusText1_0_0,
    ScrapeProtocol::PrometheusText0_0_4,
];

/// Number of entries in Prometheus's `ScrapeProtocolsHeaders` (including protobuf): the q-value
/// weights start at `0.(N+1)` whatever subset is configured.
const PROMETHEUS_PROTOCOL_COUNT: usize = 5;

impl ScrapeProtocol {
    /// The media range Prometheus sends for this protocol (`config.ScrapeProtocolsHeaders`).
    pub fn header(self) -> &'static str {
        match self {
            ScrapeProtocol::OpenMetricsText1_0_0 => "application/openmetrics-text;version=1.0.0",
            ScrapeProtocol::OpenMetricsText0_0_1 => "application/openmetrics-text;version=0.0.1",
            ScrapeProtocol::PrometheusText1_0_0 => "text/plain;version=1.0.0",
            ScrapeProtocol::PrometheusText0_0_4 => "text/plain;version=0.0.4",
        }
    }

    /// The bare media type (`HeaderMediaType`), used as the fallback content type.
    pub fn media_type(self) -> &'static str {
        self.format().media_type()
    }

    /// The parser this protocol selects.
    pub fn format(self) -> Format {
        match self {
            ScrapeProtocol::OpenMetricsText1_0_0 | ScrapeProtocol::OpenMetricsText0_0_1 => {
                Format::OpenMetrics
            }
            ScrapeProtocol::PrometheusText1_0_0 | ScrapeProtocol::PrometheusText0_0_4 => {
                Format::PromText
            }
        }
    }

    /// Whether Prometheus appends `;escaping=<scheme>` (only the UTF-8-capable versions).
    fn takes_escaping(self) -> bool {
        matches!(
            self,
            ScrapeProtocol::OpenMetricsText1_0_0 | ScrapeProtocol::PrometheusText1_0_0
        )
    }
}

/// How a target should escape UTF-8 metric names (`model.EscapingScheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EscapingScheme {
    /// `allow-utf-8`: names are sent as they are (quoted when needed); Prometheus 3's default.
    #[default]
    AllowUtf8,
    /// `underscores`.
    Underscores,
    /// `dots`.
    Dots,
    /// `values`.
    Values,
}

impl EscapingScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            EscapingScheme::AllowUtf8 => "allow-utf-8",
            EscapingScheme::Underscores => "underscores",
            EscapingScheme::Dots => "dots",
            EscapingScheme::Values => "values",
        }
    }
}

/// The `Accept` header for `protocols` in preference order, as Prometheus builds it: each
/// media range (with `;escaping=` for the 1.0.0 versions) gets `;q=0.N` with N counting down
/// from 6, then `*/*` with the next weight.
pub fn accept_header(protocols: &[ScrapeProtocol], escaping: EscapingScheme) -> String {
    let mut weight = PROMETHEUS_PROTOCOL_COUNT + 1;
    let mut parts = Vec::with_capacity(protocols.len() + 1);
    for p in protocols {
        let mut v = p.header().to_string();
        if p.takes_escaping() {
            v.push_str(";escaping=");
            v.push_str(escaping.as_str());
        }
        v.push_str(&format!(";q=0.{weight}"));
        parts.push(v);
        weight = weight.saturating_sub(1);
    }
    parts.push(format!("*/*;q=0.{weight}"));
    parts.join(",")
}

/// Prometheus 3's default scrape `Accept` header (default protocols, `allow-utf-8`):
/// `application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,`
/// `application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,`
/// `text/plain;version=0.0.4;q=0.3,*/*;q=0.2`.
pub fn default_accept_header() -> String {
    accept_header(&DEFAULT_SCRAPE_PROTOCOLS, EscapingScheme::AllowUtf8)
}

/// Which parser a response needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text`.
    OpenMetrics,
    /// `text/plain` (Prometheus text 0.0.4 and 1.0.0).
    PromText,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text",
            Format::PromText => "text/plain",
        }
    }
}

/// Why a response's `Content-Type` did not select a parser by itself (messages as in
/// Prometheus's `extractMediaType`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentTypeError {
    #[error("non-compliant scrape target sending blank Content-Type")]
    Blank,
    #[error("cannot parse Content-Type {content_type:?}: {reason}")]
    Malformed {
        content_type: String,
        reason: &'static str,
    },
    #[error("received unsupported Content-Type {0:?}")]
    Unsupported(String),
    /// `application/vnd.google.protobuf`: Prometheus parses it, we do not (and never ask for it).
    #[error("protobuf exposition format is not supported (Content-Type {0:?})")]
    Protobuf(String),
}

/// The parameters of a media type, lower-cased names, unquoted values.
pub type MediaParams = Vec<(String, String)>;

fn is_token_char(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_control() && !" ()<>@,;:\\\"/[]?=".contains(c)
}

fn take_token(s: &str) -> (&str, &str) {
    let n = s.find(|c| !is_token_char(c)).unwrap_or(s.len());
    (&s[..n], &s[n..])
}

/// Go's `mime.ParseMediaType` (without RFC 2231 continuations): `type/subtype` lower-cased,
/// then `;name=value` parameters (token or quoted-string values, duplicate names rejected).
/// Errors are Go's messages.
pub fn parse_media_type(v: &str) -> Result<(String, MediaParams), &'static str> {
    let (base, mut rest) = v.split_once(';').map_or((v, ""), |(b, r)| (b, r));
    let base = base.trim().to_ascii_lowercase();
    let (typ, after) = take_token(&base);
    if typ.is_empty() {
        return Err("mime: no media type");
    }
    if !after.is_empty() {
        let Some(sub) = after.strip_prefix('/') else {
            return Err("mime: expected slash after first token");
        };
        let (sub, after) = take_token(sub);
        if sub.is_empty() {
            return Err("mime: expected token after slash");
        }
        if !after.is_empty() {
            return Err("mime: unexpected content after media subtype");
        }
    }
    let mut params: MediaParams = Vec::new();
    let mut first = true;
    loop {
        rest = rest.trim_start();
        if !first {
            if rest.is_empty() {
                break;
            }
            let Some(r) = rest.strip_prefix(';') else {
                return Err("mime: invalid media parameter");
            };
            rest = r.trim_start();
        }
        first = false;
        if rest.is_empty() {
            break;
        }
        let (key, r) = take_token(rest);
        let Some(r) = r.strip_prefix('=').filter(|_| !key.is_empty()) else {
            return Err("mime: invalid media parameter");
        };
        let (value, r) = if let Some(q) = r.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((k, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(k + 1);
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, e)) => out.push(e),
                        None => break,
                    },
                    c => out.push(c),
                }
            }
            let Some(end) = end else {
                return Err("mime: invalid media parameter");
            };
            (out, &q[end..])
        } else {
            let (t, r) = take_token(r);
            if t.is_empty() {
                return Err("mime: invalid media parameter");
            }
            (t.to_string(), r)
        };
        let key = key.to_ascii_lowercase();
        if params.iter().any(|(k, _)| *k == key) {
            return Err("mime: duplicate parameter name");
        }
        params.push((key, value));
        rest = r;
    }
    Ok((base, params))
}

/// Chooses the parser for a response's `Content-Type` as Prometheus's `extractMediaType` does:
/// `application/openmetrics-text` and `text/plain` (any parameters) select their parser;
/// a blank, malformed or unsupported content type is an error unless `fallback` is set, in
/// which case the fallback's format is used and the problem returned as a warning.
/// Protobuf is always an error.
pub fn select_format(
    content_type: Option<&str>,
    fallback: Option<ScrapeProtocol>,
) -> Result<(Format, Option<ContentTypeError>), ContentTypeError> {
    let problem = match content_type.filter(|c| !c.is_empty()) {
        None => ContentTypeError::Blank,
        Some(ct) => match parse_media_type(ct) {
            Ok((mt, _)) => match mt.as_str() {
                "application/openmetrics-text" => return Ok((Format::OpenMetrics, None)),
                "text/plain" => return Ok((Format::PromText, None)),
                "application/vnd.google.protobuf" => {
                    return Err(ContentTypeError::Protobuf(ct.to_string()))
                }
                _ => ContentTypeError::Unsupported(ct.to_string()),
            },
            Err(reason) => ContentTypeError::Malformed {
                content_type: ct.to_string(),
                reason,
            },
        },
    };
    match fallback {
        Some(p) => Ok((p.format(), Some(problem))),
        None => Err(problem),
    }
}

/// A parser for one scrape body, of either text format; iterates the shared [`Entry`] type.
#[derive(Debug, Clone)]
pub enum ScrapeParser<'a> {
    OpenMetrics(OpenMetricsParser<'a>),
    PromText(PromTextParser<'a>),
}

impl<'a> ScrapeParser<'a> {
    /// A parser of `format` over `body`.
    pub fn new(format: Format, body: &'a [u8]) -> Self {
        match format {
            Format::OpenMetrics => ScrapeParser::OpenMetrics(OpenMetricsParser::from_bytes(body)),
            Format::PromText => ScrapeParser::PromText(PromTextParser::from_bytes(body)),
        }
    }

    pub fn format(&self) -> Format {
        match self {
            ScrapeParser::OpenMetrics(_) => Format::OpenMetrics,
            ScrapeParser::PromText(_) => Format::PromText,
        }
    }

    /// Drop OpenMetrics `_created` series (see [`OpenMetricsParser::skip_created_series`]);
    /// no effect on the Prometheus text format, which has none.
    pub fn skip_created_series(self, skip: bool) -> Self {
        match self {
            ScrapeParser::OpenMetrics(p) => ScrapeParser::OpenMetrics(p.skip_created_series(skip)),
            other => other,
        }
    }
}

impl<'a> Iterator for ScrapeParser<'a> {
    type Item = Result<Entry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ScrapeParser::OpenMetrics(p) => p.next(),
            ScrapeParser::PromText(p) => p.next(),
        }
    }
}

impl std::iter::FusedIterator for ScrapeParser<'_> {}

/// The parser for a scrape response without a fallback protocol: OpenMetrics for
/// `application/openmetrics-text`, Prometheus text for `text/plain`, otherwise
/// [`Error::ContentType`] (the scrape fails, as in Prometheus 3 without
/// `fallback_scrape_protocol`).
pub fn parser_for<'a>(content_type: Option<&str>, body: &'a [u8]) -> Result<ScrapeParser<'a>> {
    let (format, _) = select_format(content_type, None)?;
    Ok(ScrapeParser::new(format, body))
}

/// [`parser_for`] with Prometheus's `fallback_scrape_protocol`: a blank, malformed or
/// unsupported content type selects the fallback's parser and the problem is returned beside it
/// (Prometheus logs it at debug level).
pub fn parser_for_with_fallback<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
    fallback: Option<ScrapeProtocol>,
) -> Result<(ScrapeParser<'a>, Option<ContentTypeError>)> {
    let (format, warning) = select_format(content_type, fallback)?;
    Ok((ScrapeParser::new(format, body), warning))
}

impl From<ContentTypeError> for Error {
    fn from(e: ContentTypeError) -> Self {
        Error::ContentType(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_match_prometheus() {
        // scrape_test.go TestAcceptHeader expectations (protobuf-less variants).
        assert_eq!(
            default_accept_header(),
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
             application/openmetrics-text;version=0.0.1;q=0.5,\
             text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        );
        assert_eq!(
            accept_header(&DEFAULT_SCRAPE_PROTOCOLS, EscapingScheme::Underscores),
            "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,\
             application/openmetrics-text;version=0.0.1;q=0.5,\
             text/plain;version=1.0.0;escaping=underscores;q=0.4,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
        );
        assert_eq!(
            accept_header(&[ScrapeProtocol::PrometheusText0_0_4], EscapingScheme::Dots),
            "text/plain;version=0.0.4;q=0.6,*/*;q=0.5"
        );
        assert_eq!(
            ScrapeProtocol::PrometheusText1_0_0.media_type(),
            "text/plain"
        );
    }

    #[test]
    fn media_type_parsing() {
        let (t, p) = parse_media_type("Text/Plain; version=0.0.4; charset=\"utf-8\"").unwrap();
        assert_eq!(t, "text/plain");
        assert_eq!(
            p,
            vec![
                ("version".to_string(), "0.0.4".to_string()),
                ("charset".to_string(), "utf-8".to_string())
            ]
        );
        assert_eq!(parse_media_type("text/plain;").unwrap().0, "text/plain");
        assert_eq!(parse_media_type("text").unwrap().0, "text");
        // interface_test.go's malformed content types.
        for (ct, err) in [
            ("invalid/", "mime: expected token after slash"),
            (
                "invalid/invalid/invalid",
                "mime: unexpected content after media subtype",
            ),
            ("/", "mime: no media type"),
            (
                "application/openmetrics-text; charset=UTF-8; charset=utf-8",
                "mime: duplicate parameter name",
            ),
            ("text/plain; version", "mime: invalid media parameter"),
            ("text/plain; a=\"x", "mime: invalid media parameter"),
        ] {
            assert_eq!(parse_media_type(ct), Err(err), "{ct}");
        }
    }

    #[test]
    fn format_selection() {
        for (ct, f) in [
            ("application/openmetrics-text", Format::OpenMetrics),
            (
                "application/openmetrics-text; charset=utf-8",
                Format::OpenMetrics,
            ),
            (
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                Format::OpenMetrics,
            ),
            ("text/plain", Format::PromText),
            ("text/plain; version=0.0.4", Format::PromText),
            (
                "text/plain; version=1.0.0; escaping=allow-utf-8",
                Format::PromText,
            ),
        ] {
            assert_eq!(select_format(Some(ct), None), Ok((f, None)), "{ct}");
        }
        assert_eq!(select_format(None, None), Err(ContentTypeError::Blank));
        assert_eq!(select_format(Some(""), None), Err(ContentTypeError::Blank));
        assert_eq!(
            select_format(Some("text/html"), None),
            Err(ContentTypeError::Unsupported("text/html".into()))
        );
        assert!(matches!(
            select_format(Some("invalid/"), None),
            Err(ContentTypeError::Malformed { .. })
        ));
        // With a fallback: the fallback's parser plus a warning.
        assert_eq!(
            select_format(None, Some(ScrapeProtocol::PrometheusText0_0_4)),
            Ok((Format::PromText, Some(ContentTypeError::Blank)))
        );
        assert_eq!(
            select_format(
                Some("text/html"),
                Some(ScrapeProtocol::OpenMetricsText1_0_0)
            ),
            Ok((
                Format::OpenMetrics,
                Some(ContentTypeError::Unsupported("text/html".into()))
            ))
        );
        let (f, w) = select_format(Some("/"), Some(ScrapeProtocol::PrometheusText1_0_0)).unwrap();
        assert_eq!(f, Format::PromText);
        assert!(w.unwrap().to_string().contains("no media type"));
        // Protobuf is refused even with a fallback.
        assert!(matches!(
            select_format(
                Some("application/vnd.google.protobuf"),
                Some(ScrapeProtocol::PrometheusText0_0_4)
            ),
            Err(ContentTypeError::Protobuf(_))
        ));
    }

    #[test]
    fn parsers_by_content_type() {
        let om = b"# TYPE a counter\na_total 1\n# EOF\n";
        let p = parser_for(Some("application/openmetrics-text; version=1.0.0"), om).unwrap();
        assert_eq!(p.format(), Format::OpenMetrics);
        assert_eq!(p.filter(|e| matches!(e, Ok(Entry::Eof))).count(), 1);
        let text = b"a 1\nb{x=\"y\"} 2 1000\n";
        let p = parser_for(Some("text/plain; version=0.0.4"), text).unwrap();
        let samples: Vec<_> = p.collect::<Result<_>>().unwrap();
        assert_eq!(samples.len(), 2);
        assert!(matches!(
            parser_for(None, text),
            Err(Error::ContentType(ContentTypeError::Blank))
        ));
        let (p, w) =
            parser_for_with_fallback(None, text, Some(ScrapeProtocol::PrometheusText0_0_4))
                .unwrap();
        assert_eq!(w, Some(ContentTypeError::Blank));
        assert_eq!(p.count(), 2);
        // Text parsed as OpenMetrics fails (no # EOF), as in Prometheus.
        let p = parser_for(Some("application/openmetrics-text"), text).unwrap();
        assert!(p.last().unwrap().is_err());
    }
}
