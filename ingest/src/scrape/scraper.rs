//! Fetching one target (Prometheus's `targetScraper`): a GET with the negotiated `Accept`
//! header, `Accept-Encoding` (`gzip` or `identity`), `X-Prometheus-Scrape-Timeout-Seconds`,
//! the pool's authentication and headers; a non-200 status fails the scrape; the body
//! (decompressed) is read up to `body_size_limit`.

use std::time::Duration;

use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_TYPE, USER_AGENT};

use super::ScrapeTarget;
use crate::scrape_format::accept_header;

/// The user agent sent with scrapes.
pub(crate) const SCRAPE_USER_AGENT: &str = concat!("Strata/", env!("CARGO_PKG_VERSION"));

/// Go's `strconv.FormatFloat(secs, 'f', -1, 64)` for the timeout header.
fn format_seconds(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

pub(crate) struct Scraper {
    /// `None` when the pool's client could not be built (the loop reports that error).
    client: Option<reqwest::Client>,
    accept: String,
    accept_encoding: &'static str,
    timeout_header: String,
}

/// A request error with its causes (reqwest hides the interesting part in `source()`).
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

impl Scraper {
    pub fn new(client: Option<reqwest::Client>, target: &ScrapeTarget) -> Self {
        let p = &target.params;
        Self {
            client,
            accept: accept_header(&p.scrape_protocols, p.escaping),
            accept_encoding: if p.enable_compression {
                "gzip"
            } else {
                "identity"
            },
            timeout_header: format_seconds(target.timeout),
        }
    }

    /// Fetches the page into `buf` (cleared first); returns the `Content-Type`. The caller
    /// bounds the time.
    pub async fn fetch(
        &self,
        target: &ScrapeTarget,
        buf: &mut Vec<u8>,
    ) -> Result<Option<String>, String> {
        buf.clear();
        let Some(client) = &self.client else {
            return Err("no HTTP client".into());
        };
        let rb = client
            .get(&target.url)
            .header(ACCEPT, &self.accept)
            .header(ACCEPT_ENCODING, self.accept_encoding)
            .header(USER_AGENT, SCRAPE_USER_AGENT)
            .header("X-Prometheus-Scrape-Timeout-Seconds", &self.timeout_header);
        let rb = target.params.http.apply(rb);
        let mut resp = rb
            .send()
            .await
            .map_err(|e| format!("Get {:?}: {}", target.url, describe(&e)))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("server returned HTTP status {}", resp.status()));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limit = target.params.body_size_limit;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading body of {:?}: {}", target.url, describe(&e)))?
        {
            buf.extend_from_slice(&chunk);
            // As Prometheus: a body reaching the limit fails.
            if limit > 0 && buf.len() as u64 >= limit {
                buf.clear();
                return Err("body size limit exceeded".into());
            }
        }
        Ok(content_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_header_format() {
        assert_eq!(format_seconds(Duration::from_secs(10)), "10");
        assert_eq!(format_seconds(Duration::from_millis(250)), "0.25");
    }
}
