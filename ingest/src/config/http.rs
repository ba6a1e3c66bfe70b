//! The HTTP client settings shared by `scrape_configs` and `remote_write` (Prometheus's
//! `common/config.HTTPClientConfig`, inlined into both sections of `prometheus.yml`).
//!
//! The fields sit directly in the enclosing section, so they are read key by key through
//! [`HttpClientConfig::take_field`] by the enclosing section's deserializer; that keeps unknown
//! keys an error and YAML positions in error messages. After reading, [`HttpClientConfig::validate`]
//! applies Prometheus's mutual-exclusion rules and folds the deprecated `bearer_token` /
//! `bearer_token_file` into [`Authorization`], as Prometheus does.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess};
use serde::{Deserialize, Serialize, Serializer};

/// A configured secret. Serializes as `<secret>` so that a printed configuration does not leak it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_empty() {
            s.serialize_str("")
        } else {
            s.serialize_str("<secret>")
        }
    }
}

/// `basic_auth`: HTTP basic authentication. Exactly as Prometheus, `username` and
/// `username_file` exclude each other, as do `password` and `password_file`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    /// Read the username from this file (relative paths resolved against the config's directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_file: Option<PathBuf>,
    /// Accepted for compatibility; secret managers are not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub password: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Accepted for compatibility; secret managers are not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_ref: Option<String>,
}

/// `authorization`: sends `Authorization: <type> <credentials>`. `type` defaults to `Bearer`.
/// A deprecated `bearer_token` / `bearer_token_file` ends up here after validation.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default, rename = "type")]
    pub auth_type: String,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub credentials: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// Accepted for compatibility; secret managers are not implemented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_ref: Option<String>,
}

/// `tls_config`. Inline `ca`/`cert`/`key` and the `*_file` forms exclude each other; a client
/// certificate needs its key and vice versa.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM text of the CA certificate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cert: String,
    #[serde(default, skip_serializing_if = "Secret::is_empty")]
    pub key: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<String>,
    /// Expected server name (SNI and certificate verification).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_name: String,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<TlsVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<TlsVersion>,
    /// Accepted for compatibility (extra ALPN protocols).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next_protos: Vec<String>,
}

/// `min_version` / `max_version` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
pub enum TlsVersion {
    TLS10,
    TLS11,
    TLS12,
    TLS13,
}

impl TlsConfig {
    fn validate(&self) -> Result<(), String> {
        let count = |a: bool, b: bool, c: bool| a as u8 + b as u8 + c as u8;
        if count(
            !self.ca.is_empty(),
            self.ca_file.is_some(),
            self.ca_ref.is_some(),
        ) > 1
        {
            return Err("at most one of ca, ca_file & ca_ref must be configured".into());
        }
        let cert = count(
            !self.cert.is_empty(),
            self.cert_file.is_some(),
            self.cert_ref.is_some(),
        );
        let key = count(
            !self.key.is_empty(),
            self.key_file.is_some(),
            self.key_ref.is_some(),
        );
        if cert > 1 {
            return Err("at most one of cert, cert_file & cert_ref must be configured".into());
        }
        if key > 1 {
            return Err("at most one of key and key_file must be configured".into());
        }
        if cert > 0 && key == 0 {
            return Err(
                "exactly one of key or key_file must be configured when a client certificate is configured"
                    .into(),
            );
        }
        if key > 0 && cert == 0 {
            return Err(
                "exactly one of cert or cert_file must be configured when a client key is configured"
                    .into(),
            );
        }
        if let (Some(min), Some(max)) = (self.min_version, self.max_version) {
            if max < min {
                return Err("tls_config.max_version must be greater than or equal to tls_config.min_version if both are specified".into());
            }
        }
        Ok(())
    }

    fn set_directory(&mut self, dir: &Path) {
        for f in [&mut self.ca_file, &mut self.cert_file, &mut self.key_file] {
            join_dir(dir, f);
        }
    }

    /// True when nothing is configured.
    pub fn is_default(&self) -> bool {
        *self == TlsConfig::default()
    }
}

/// HTTP client settings of a scrape job or a remote-write endpoint.
///
/// Defaults as Prometheus: `follow_redirects: true`; `enable_http2: true` for scrapes and
/// `false` for remote write. After loading, `bearer_token`/`bearer_token_file` are folded into
/// [`Authorization`] with type `Bearer`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HttpClientConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// Accepted but not implemented (reported by `Config::unsupported`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<yaml_serde::Value>,
    #[serde(skip_serializing_if = "TlsConfig::is_default")]
    pub tls_config: TlsConfig,
    pub follow_redirects: bool,
    pub enable_http2: bool,
    /// `proxy_url`: an HTTP proxy for every request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_proxy: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub proxy_from_environment: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub proxy_connect_header: BTreeMap<String, Vec<Secret>>,
    /// `http_headers`: accepted but not implemented (reported by `Config::unsupported`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_headers: Option<yaml_serde::Value>,
    /// The deprecated fields as written; empty after [`HttpClientConfig::validate`].
    #[serde(skip)]
    pub(crate) bearer_token: Secret,
    #[serde(skip)]
    pub(crate) bearer_token_file: Option<PathBuf>,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        HttpClientConfig {
            basic_auth: None,
            authorization: None,
            oauth2: None,
            tls_config: TlsConfig::default(),
            follow_redirects: true,
            enable_http2: true,
            proxy_url: None,
            no_proxy: None,
            proxy_from_environment: false,
            proxy_connect_header: BTreeMap::new(),
            http_headers: None,
            bearer_token: Secret::default(),
            bearer_token_file: None,
        }
    }
}

/// The keys [`HttpClientConfig`] owns inside an enclosing section.
pub const HTTP_CLIENT_FIELDS: &[&str] = &[
    "basic_auth",
    "authorization",
    "oauth2",
    "bearer_token",
    "bearer_token_file",
    "tls_config",
    "follow_redirects",
    "enable_http2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "http_headers",
];

impl HttpClientConfig {
    /// Defaults for a `remote_write` endpoint (HTTP/2 off, as Prometheus).
    pub fn remote_write_default() -> Self {
        HttpClientConfig {
            enable_http2: false,
            ..Default::default()
        }
    }

    /// Reads the value of `key` from `map` when `key` is one of [`HTTP_CLIENT_FIELDS`];
    /// returns `false` (consuming nothing) otherwise.
    pub(crate) fn take_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "basic_auth" => self.basic_auth = map.next_value()?,
            "authorization" => self.authorization = map.next_value()?,
            "oauth2" => self.oauth2 = map.next_value()?,
            "bearer_token" => {
                self.bearer_token = map.next_value::<Option<Secret>>()?.unwrap_or_default()
            }
            "bearer_token_file" => self.bearer_token_file = map.next_value()?,
            "tls_config" => {
                self.tls_config = map.next_value::<Option<TlsConfig>>()?.unwrap_or_default()
            }
            "follow_redirects" => self.follow_redirects = map.next_value()?,
            "enable_http2" => self.enable_http2 = map.next_value()?,
            "proxy_url" => {
                let u: Option<String> = map.next_value()?;
                if let Some(u) = &u {
                    if !u.is_empty() {
                        super::validate_url(u).map_err(de::Error::custom)?;
                    }
                }
                self.proxy_url = u.filter(|u| !u.is_empty());
            }
            "no_proxy" => self.no_proxy = map.next_value()?,
            "proxy_from_environment" => self.proxy_from_environment = map.next_value()?,
            "proxy_connect_header" => {
                self.proxy_connect_header = map
                    .next_value::<Option<BTreeMap<String, Vec<Secret>>>>()?
                    .unwrap_or_default()
            }
            "http_headers" => self.http_headers = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Prometheus's `HTTPClientConfig.Validate`: mutual exclusions, `authorization.type`
    /// defaulting to `Bearer` (and not `basic`), folding `bearer_token(_file)` into
    /// `authorization`, proxy and TLS rules.
    pub fn validate(&mut self) -> Result<(), String> {
        let has_bearer = !self.bearer_token.is_empty() || self.bearer_token_file.is_some();
        if !self.bearer_token.is_empty() && self.bearer_token_file.is_some() {
            return Err(
                "at most one of bearer_token & bearer_token_file must be configured".into(),
            );
        }
        if (self.basic_auth.is_some() || self.oauth2.is_some()) && has_bearer {
            return Err(
                "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"
                    .into(),
            );
        }
        if let Some(b) = &self.basic_auth {
            let n = !b.username.is_empty() as u8
                + b.username_file.is_some() as u8
                + b.username_ref.is_some() as u8;
            if n > 1 {
                return Err(
                    "at most one of basic_auth username, username_file & username_ref must be configured"
                        .into(),
                );
            }
            let n = !b.password.is_empty() as u8
                + b.password_file.is_some() as u8
                + b.password_ref.is_some() as u8;
            if n > 1 {
                return Err(
                    "at most one of basic_auth password, password_file & password_ref must be configured"
                        .into(),
                );
            }
        }
        if let Some(a) = &mut self.authorization {
            if has_bearer {
                return Err(
                    "authorization is not compatible with bearer_token & bearer_token_file".into(),
                );
            }
            let n = !a.credentials.is_empty() as u8
                + a.credentials_file.is_some() as u8
                + a.credentials_ref.is_some() as u8;
            if n > 1 {
                return Err(
                    "at most one of authorization credentials & credentials_file must be configured"
                        .into(),
                );
            }
            a.auth_type = a.auth_type.trim().to_string();
            if a.auth_type.is_empty() {
                a.auth_type = "Bearer".into();
            }
            if a.auth_type.eq_ignore_ascii_case("basic") {
                return Err(
                    r#"authorization type cannot be set to "basic", use "basic_auth" instead"#
                        .into(),
                );
            }
            if self.basic_auth.is_some() || self.oauth2.is_some() {
                return Err(
                    "at most one of basic_auth, oauth2 & authorization must be configured".into(),
                );
            }
        } else if !self.bearer_token.is_empty() {
            self.authorization = Some(Authorization {
                auth_type: "Bearer".into(),
                credentials: std::mem::take(&mut self.bearer_token),
                ..Default::default()
            });
        } else if let Some(f) = self.bearer_token_file.take() {
            self.authorization = Some(Authorization {
                auth_type: "Bearer".into(),
                credentials_file: Some(f),
                ..Default::default()
            });
        }
        if self.oauth2.is_some() && self.basic_auth.is_some() {
            return Err(
                "at most one of basic_auth, oauth2 & authorization must be configured".into(),
            );
        }
        if !self.proxy_connect_header.is_empty()
            && !self.proxy_from_environment
            && self.proxy_url.is_none()
        {
            return Err("if proxy_connect_header is configured, proxy_url or proxy_from_environment must also be configured".into());
        }
        if self.proxy_from_environment && self.proxy_url.is_some() {
            return Err(
                "if proxy_from_environment is configured, proxy_url must not be configured".into(),
            );
        }
        if self.proxy_from_environment && self.no_proxy.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(
                "if proxy_from_environment is configured, no_proxy must not be configured".into(),
            );
        }
        if self.proxy_url.is_none() && self.no_proxy.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err("if no_proxy is configured, proxy_url must also be configured".into());
        }
        self.tls_config.validate()
    }

    /// Resolves relative file paths against `dir` (the configuration file's directory).
    pub fn set_directory(&mut self, dir: &Path) {
        self.tls_config.set_directory(dir);
        if let Some(b) = &mut self.basic_auth {
            join_dir(dir, &mut b.username_file);
            join_dir(dir, &mut b.password_file);
        }
        if let Some(a) = &mut self.authorization {
            join_dir(dir, &mut a.credentials_file);
        }
        join_dir(dir, &mut self.bearer_token_file);
    }

    /// Names of the settings present here that Strata does not implement.
    pub(crate) fn unsupported(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.oauth2.is_some() {
            v.push("oauth2");
        }
        if self.http_headers.is_some() {
            v.push("http_headers");
        }
        if self
            .basic_auth
            .as_ref()
            .is_some_and(|b| b.username_ref.is_some() || b.password_ref.is_some())
        {
            v.push("basic_auth (secret refs)");
        }
        if self
            .authorization
            .as_ref()
            .is_some_and(|a| a.credentials_ref.is_some())
        {
            v.push("authorization.credentials_ref");
        }
        let t = &self.tls_config;
        if t.ca_ref.is_some() || t.cert_ref.is_some() || t.key_ref.is_some() {
            v.push("tls_config (secret refs)");
        }
        v
    }
}

/// Prometheus's `config.JoinDir`: a relative, non-empty path becomes `dir/path`.
pub(crate) fn join_dir(dir: &Path, p: &mut Option<PathBuf>) {
    if let Some(path) = p {
        if path.as_os_str().is_empty() {
            *p = None;
        } else if path.is_relative() {
            *path = dir.join(&*path);
        }
    }
}

impl HttpClientConfig {
    /// The client settings the scraper and the remote-write queue use: credentials read from
    /// their files now (so a reload picks up rotated files), the `Authorization` header built,
    /// TLS file paths passed on. Inline PEM (`ca`, `cert`, `key`) and secret references are
    /// not supported and are an error naming the field; `field` prefixes it (e.g.
    /// `scrape_configs[0]`).
    pub fn to_settings(&self, field: &str) -> Result<crate::http::HttpSettings, String> {
        let read = |what: &str, p: &Path| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("{field}.{what}: reading {}: {e}", p.display()))
        };
        let basic_auth = match &self.basic_auth {
            None => None,
            Some(b) => {
                let user = match &b.username_file {
                    Some(p) => read("basic_auth.username_file", p)?,
                    None => b.username.clone(),
                };
                let pass = match &b.password_file {
                    Some(p) => read("basic_auth.password_file", p)?,
                    None => b.password.expose().to_string(),
                };
                Some((user, pass))
            }
        };
        let authorization = match &self.authorization {
            None => None,
            Some(a) => {
                let cred = match &a.credentials_file {
                    Some(p) => read("authorization.credentials_file", p)?,
                    None => a.credentials.expose().to_string(),
                };
                let typ = if a.auth_type.is_empty() {
                    "Bearer"
                } else {
                    a.auth_type.as_str()
                };
                Some(format!("{typ} {cred}"))
            }
        };
        let t = &self.tls_config;
        for (name, set) in [
            ("ca", !t.ca.is_empty()),
            ("cert", !t.cert.is_empty()),
            ("key", !t.key.is_empty()),
            ("ca_ref", t.ca_ref.is_some()),
            ("cert_ref", t.cert_ref.is_some()),
            ("key_ref", t.key_ref.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{field}.tls_config.{name}: not supported by Strata; use the *_file form"
                ));
            }
        }
        Ok(crate::http::HttpSettings {
            basic_auth,
            authorization,
            tls: crate::http::TlsSettings {
                ca_file: t.ca_file.clone(),
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
                server_name: (!t.server_name.is_empty()).then(|| t.server_name.clone()),
                insecure_skip_verify: t.insecure_skip_verify,
            },
            proxy_url: self.proxy_url.clone(),
            follow_redirects: self.follow_redirects,
            headers: Vec::new(),
        })
    }
}
