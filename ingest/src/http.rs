//! Outgoing HTTP client settings shared by the scrape loops and the agent's remote-write queue:
//! a plain-struct version of Prometheus's `HTTPClientConfig` (basic auth, an `Authorization`
//! header, TLS files, proxy, redirects, extra headers), [`build_client`] turning it into a
//! `reqwest::Client`, and [`HttpSettings::apply`] adding the per-request parts (auth and
//! headers) to a request.
//!
//! Settings the HTTP client cannot honour (a TLS `server_name` override) are rejected with
//! [`Error::HttpSetting`] naming the setting rather than silently ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};

use crate::error::{Error, Result};

/// TLS settings (Prometheus's `tls_config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file with the CA certificates to trust (in addition to the built-in roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate; needs `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Server name to verify the certificate against instead of the URL's host. Not supported
    /// by the client: [`build_client`] rejects it.
    pub server_name: Option<String>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// Client settings for one scrape pool or remote-write endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `(username, password)`.
    pub basic_auth: Option<(String, String)>,
    /// The complete `Authorization` header value, e.g. `"Bearer xyz"`.
    pub authorization: Option<String>,
    pub tls: TlsSettings,
    /// Proxy for every request (`http://`, `https://` or `socks5://`). Without it no proxy is
    /// used, whatever the environment says (Prometheus's default).
    pub proxy_url: Option<String>,
    /// Follow up to 10 redirects (Prometheus's default is true).
    pub follow_redirects: bool,
    /// Extra headers sent with every request.
    pub headers: Vec<(String, String)>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            basic_auth: None,
            authorization: None,
            tls: TlsSettings::default(),
            proxy_url: None,
            follow_redirects: true,
            headers: Vec::new(),
        }
    }
}

fn setting_err(setting: &'static str, detail: impl ToString) -> Error {
    Error::HttpSetting {
        setting,
        detail: detail.to_string(),
    }
}

fn read_pem(setting: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| setting_err(setting, format!("reading {}: {e}", path.display())))
}

impl HttpSettings {
    /// Checks the settings that do not need the file system: at most one of basic auth and
    /// `authorization`, valid header names and values, an authorization value usable as a
    /// header.
    pub fn validate(&self) -> Result<()> {
        if self.basic_auth.is_some() && self.authorization.is_some() {
            return Err(setting_err(
                "authorization",
                "at most one of basic_auth and authorization may be configured",
            ));
        }
        if let Some(a) = &self.authorization {
            HeaderValue::from_str(a)
                .map_err(|_| setting_err("authorization", "not a valid header value"))?;
        }
        for (n, v) in &self.headers {
            HeaderName::from_bytes(n.as_bytes())
                .map_err(|_| setting_err("http_headers", format!("invalid header name {n:?}")))?;
            HeaderValue::from_str(v).map_err(|_| {
                setting_err("http_headers", format!("invalid value for header {n:?}"))
            })?;
        }
        Ok(())
    }

    /// Adds the authentication and the extra headers to a request.
    /// The `Authorization` header value these settings send, if any (basic auth encoded as
    /// `Basic <base64(user:password)>`), for senders that take plain headers.
    pub fn authorization_header(&self) -> Option<String> {
        if let Some((user, pass)) = &self.basic_auth {
            return Some(format!(
                "Basic {}",
                base64(format!("{user}:{pass}").as_bytes())
            ));
        }
        self.authorization.clone()
    }

    pub fn apply(&self, mut rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some((user, pass)) = &self.basic_auth {
            rb = rb.basic_auth(user, Some(pass));
        }
        if let Some(a) = &self.authorization {
            rb = rb.header(AUTHORIZATION, a.as_str());
        }
        for (n, v) in &self.headers {
            rb = rb.header(n.as_str(), v.as_str());
        }
        rb
    }
}

/// Standard base64 with padding (RFC 4648), for the basic-auth header.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= c.len() {
                out.push(A[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A client for `settings`. `timeout` bounds each whole request (connect to end of body).
/// Responses with `Content-Encoding: gzip` are decompressed transparently. Errors name the
/// setting at fault ([`Error::HttpSetting`]).
pub fn build_client(settings: &HttpSettings, timeout: Option<Duration>) -> Result<reqwest::Client> {
    settings.validate()?;
    let tls = &settings.tls;
    if let Some(name) = &tls.server_name {
        return Err(setting_err(
            "tls_config.server_name",
            format!("overriding the TLS server name ({name:?}) is not supported"),
        ));
    }
    let mut b = reqwest::Client::builder().gzip(true);
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    if let Some(ca) = &tls.ca_file {
        let pem = read_pem("tls_config.ca_file", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| setting_err("tls_config.ca_file", format!("{}: {e}", ca.display())))?;
        if certs.is_empty() {
            return Err(setting_err(
                "tls_config.ca_file",
                format!("{}: no certificates found", ca.display()),
            ));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let mut pem = read_pem("tls_config.cert_file", cert)?;
            pem.push(b'\n');
            pem.extend(read_pem("tls_config.key_file", key)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                setting_err(
                    "tls_config.cert_file",
                    format!("{} / {}: {e}", cert.display(), key.display()),
                )
            })?;
            b = b.identity(id);
        }
        (Some(_), None) => {
            return Err(setting_err(
                "tls_config.key_file",
                "cert_file is set but key_file is not",
            ))
        }
        (None, Some(_)) => {
            return Err(setting_err(
                "tls_config.cert_file",
                "key_file is set but cert_file is not",
            ))
        }
        (None, None) => {}
    }
    if tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    match &settings.proxy_url {
        Some(p) => {
            let proxy = reqwest::Proxy::all(p.as_str())
                .map_err(|e| setting_err("proxy_url", format!("{p:?}: {e}")))?;
            b = b.proxy(proxy);
        }
        None => b = b.no_proxy(),
    }
    b = b.redirect(if settings.follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    });
    b.build().map_err(|e| setting_err("client", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_header_is_rfc4648_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let s = HttpSettings {
            basic_auth: Some(("Aladdin".into(), "open sesame".into())),
            ..Default::default()
        };
        assert_eq!(
            s.authorization_header().as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
    }

    #[test]
    fn rejects_what_reqwest_cannot_do() {
        let mut s = HttpSettings::default();
        s.tls.server_name = Some("example".into());
        let e = build_client(&s, None).unwrap_err();
        assert!(e.to_string().contains("server_name"), "{e}");

        let s = HttpSettings {
            basic_auth: Some(("u".into(), "p".into())),
            authorization: Some("Bearer x".into()),
            ..Default::default()
        };
        assert!(build_client(&s, None).is_err());

        let mut s = HttpSettings::default();
        s.tls.cert_file = Some("/nonexistent.pem".into());
        let e = build_client(&s, None).unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");

        let mut s = HttpSettings::default();
        s.tls.ca_file = Some("/nonexistent/ca.pem".into());
        let e = build_client(&s, None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");

        let s = HttpSettings {
            headers: vec![("bad header".into(), "v".into())],
            ..Default::default()
        };
        assert!(build_client(&s, None).is_err());
        let s = HttpSettings {
            proxy_url: Some("::not a url".into()),
            ..Default::default()
        };
        assert!(build_client(&s, None).is_err());
    }

    #[test]
    fn applies_auth_and_headers() {
        let s = HttpSettings {
            basic_auth: Some(("user".into(), "pw".into())),
            headers: vec![("X-Extra".into(), "1".into())],
            ..Default::default()
        };
        let c = build_client(&s, Some(Duration::from_secs(1))).unwrap();
        let req = s.apply(c.get("http://127.0.0.1:1/")).build().unwrap();
        assert_eq!(req.headers()["x-extra"], "1");
        // base64("user:pw")
        assert_eq!(req.headers()["authorization"], "Basic dXNlcjpwdw==");
        let s = HttpSettings {
            authorization: Some("Bearer xyz".into()),
            ..Default::default()
        };
        let req = s.apply(c.get("http://127.0.0.1:1/")).build().unwrap();
        assert_eq!(req.headers()["authorization"], "Bearer xyz");
    }
}
