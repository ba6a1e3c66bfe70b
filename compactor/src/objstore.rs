//! Object-storage configuration in Thanos's objstore YAML format, turned into a [`Bucket`].
//!
//! ```yaml
//! type: S3            # FILESYSTEM | S3 | GCS | AZURE (case-insensitive)
//! config: { ... }     # the provider's fields, named as Thanos names them
//! prefix: some/dir    # optional: every key lives under this prefix
//! ```
//!
//! Fields are checked strictly, as Thanos does (`yaml.UnmarshalStrict`): a field Thanos knows but
//! Strata does not implement (`trace`, `part_size`, `http_config.idle_conn_timeout`, ...) is
//! accepted and listed in [`BucketDescription::ignored`] for the caller to log; any other field
//! is an error naming it. Credentials that are not in the file come from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AZURE_STORAGE_*`,
//! `GOOGLE_SERVICE_ACCOUNT*`) through `object_store`'s builders. Secrets are never printed: the
//! config types' `Debug` shows `<redacted>`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ClientOptions;
use yaml_serde::{Mapping, Value};

use crate::bucket::Bucket;
use crate::error::{Error, Result};

/// A secret string: its `Debug` and `Display` never show the value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself (for handing to a client, never for logs).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

/// `type: FILESYSTEM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilesystemConfig {
    pub directory: PathBuf,
}

/// `type: S3` (Thanos's `providers/s3` field names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// `host[:port]`, no scheme (Thanos/minio style). Empty: AWS for `region`.
    pub endpoint: String,
    pub region: String,
    pub access_key: Option<Secret>,
    pub secret_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    /// `http_config.insecure_skip_verify`: accept any TLS certificate.
    pub insecure_skip_verify: bool,
    /// `bucket_lookup_type: virtual-hosted` (the default `auto` and `path` use path style).
    pub virtual_hosted: bool,
    /// `sse_config` with `type: SSE-KMS`: the KMS key ID.
    pub sse_kms_key_id: Option<String>,
}

/// `type: GCS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcsConfig {
    pub bucket: String,
    /// The service account's JSON key, as text.
    pub service_account: Option<Secret>,
}

/// `type: AZURE`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureConfig {
    pub storage_account: String,
    pub storage_account_key: Option<Secret>,
    pub container: String,
    /// Endpoint suffix, `blob.core.windows.net` by default.
    pub endpoint: String,
}

/// The provider part of an objstore configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Provider {
    Filesystem(FilesystemConfig),
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
}

/// A parsed objstore configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjstoreConfig {
    pub provider: Provider,
    /// Key prefix inside the bucket (no leading or trailing `/`); empty for none.
    pub prefix: String,
    /// Fields Thanos knows that Strata accepts and ignores (`config.trace`, ...).
    pub ignored: Vec<String>,
}

/// What a configured bucket is, for logs (no secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketDescription {
    /// `FILESYSTEM`, `S3`, `GCS` or `AZURE`.
    pub kind: &'static str,
    /// The bucket or container name, or the directory.
    pub name: String,
    /// The endpoint (S3, Azure), empty when the provider's default.
    pub endpoint: String,
    pub prefix: String,
    /// Fields accepted but not implemented; worth a warning.
    pub ignored: Vec<String>,
}

impl fmt::Display for BucketDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.name)?;
        if !self.endpoint.is_empty() {
            write!(f, " at {}", self.endpoint)?;
        }
        if !self.prefix.is_empty() {
            write!(f, " (prefix {})", self.prefix)?;
        }
        Ok(())
    }
}

fn cfg_err(field: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Config {
        field: field.into(),
        detail: detail.into(),
    }
}

/// A YAML mapping whose fields are taken one by one; what is left at the end is checked against
/// the fields Thanos knows.
struct Fields {
    section: String,
    map: Vec<(String, Value)>,
    ignored: Vec<String>,
}

impl Fields {
    fn new(section: &str, v: Value) -> Result<Fields> {
        let map = match v {
            Value::Null => Mapping::new(),
            Value::Mapping(m) => m,
            _ => return Err(cfg_err(section, "must be a mapping")),
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Value::String(k) = k else {
                return Err(cfg_err(section, format!("key {k:?} is not a string")));
            };
            out.push((k, v));
        }
        Ok(Fields {
            section: section.to_string(),
            map: out,
            ignored: Vec::new(),
        })
    }

    fn path(&self, key: &str) -> String {
        if self.section.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.section)
        }
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        let i = self.map.iter().position(|(k, _)| k == key)?;
        Some(self.map.remove(i).1)
    }

    fn string(&mut self, key: &str) -> Result<String> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(_) => Err(cfg_err(self.path(key), "must be a string")),
        }
    }

    fn secret(&mut self, key: &str) -> Result<Option<Secret>> {
        let s = self.string(key)?;
        Ok((!s.is_empty()).then_some(Secret(s)))
    }

    fn boolean(&mut self, key: &str) -> Result<bool> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(cfg_err(self.path(key), "must be true or false")),
        }
    }

    fn sub(&mut self, key: &str) -> Result<Fields> {
        let v = self.take(key).unwrap_or(Value::Null);
        Fields::new(&self.path(key), v)
    }

    /// Fields Thanos knows but Strata ignores: recorded when present with a non-empty value.
    fn ignore(&mut self, keys: &[&str]) {
        for k in keys {
            if let Some(v) = self.take(k) {
                let empty = match &v {
                    Value::Null => true,
                    Value::Bool(b) => !b,
                    Value::String(s) => s.is_empty(),
                    Value::Mapping(m) => m.is_empty(),
                    Value::Sequence(s) => s.is_empty(),
                    _ => false,
                };
                if !empty {
                    let p = self.path(k);
                    self.ignored.push(p);
                }
            }
        }
    }

    /// Errors on the first field left over; returns the ignored ones.
    fn finish(self) -> Result<Vec<String>> {
        if let Some((k, _)) = self.map.first() {
            return Err(cfg_err(self.path(k), "unknown field"));
        }
        Ok(self.ignored)
    }

    fn merge(&mut self, other: Fields) -> Result<()> {
        let ign = other.finish()?;
        self.ignored.extend(ign);
        Ok(())
    }
}

/// Thanos's `http_config` fields (exthttp.HTTPConfig); returns `insecure_skip_verify`.
fn http_config(parent: &mut Fields) -> Result<bool> {
    let mut h = parent.sub("http_config")?;
    let skip = h.boolean("insecure_skip_verify")?;
    h.ignore(&[
        "idle_conn_timeout",
        "response_header_timeout",
        "tls_handshake_timeout",
        "expect_continue_timeout",
        "max_idle_conns",
        "max_idle_conns_per_host",
        "max_conns_per_host",
        "tls_config",
        "force_attempt_http2",
        "disable_compression",
    ]);
    parent.merge(h)?;
    Ok(skip)
}

/// Parses the objstore YAML without building a client.
pub fn parse(text: &str) -> Result<ObjstoreConfig> {
    let v: Value = yaml_serde::from_str(text).map_err(|e| cfg_err("objstore", e.to_string()))?;
    let mut top = Fields::new("", v)?;
    let kind = top.string("type")?;
    if kind.is_empty() {
        return Err(cfg_err("type", "missing (FILESYSTEM, S3, GCS or AZURE)"));
    }
    let prefix = top.string("prefix")?.trim_matches('/').to_string();
    if prefix.split('/').any(|p| p == "..") {
        return Err(cfg_err("prefix", "must not contain `..`"));
    }
    let mut c = top.sub("config")?;
    let provider = match kind.to_ascii_uppercase().as_str() {
        "FILESYSTEM" => {
            let dir = c.string("directory")?;
            if dir.is_empty() {
                return Err(cfg_err("config.directory", "missing"));
            }
            Provider::Filesystem(FilesystemConfig {
                directory: PathBuf::from(dir),
            })
        }
        "S3" => Provider::S3(parse_s3(&mut c)?),
        "GCS" => {
            let bucket = c.string("bucket")?;
            if bucket.is_empty() {
                return Err(cfg_err("config.bucket", "missing"));
            }
            let service_account = c.secret("service_account")?;
            c.ignore(&[
                "use_grpc",
                "grpc_conn_pool_size",
                "http_config",
                "chunk_size_bytes",
            ]);
            Provider::Gcs(GcsConfig {
                bucket,
                service_account,
            })
        }
        "AZURE" => {
            let a = AzureConfig {
                storage_account: c.string("storage_account")?,
                storage_account_key: c.secret("storage_account_key")?,
                container: c.string("container")?,
                endpoint: c.string("endpoint")?,
            };
            if a.storage_account.is_empty() {
                return Err(cfg_err("config.storage_account", "missing"));
            }
            if a.container.is_empty() {
                return Err(cfg_err("config.container", "missing"));
            }
            if c.take("storage_connection_string").is_some() {
                return Err(cfg_err(
                    "config.storage_connection_string",
                    "not supported; give storage_account and storage_account_key",
                ));
            }
            c.ignore(&[
                "storage_create_container",
                "max_retries",
                "msi_resource",
                "user_assigned_id",
                "az_tenant_id",
                "client_id",
                "client_secret",
                "reader_config",
                "pipeline_config",
                "http_config",
            ]);
            Provider::Azure(a)
        }
        "SWIFT" | "COS" | "ALIYUNOSS" | "BOS" | "OCI" | "OBS" => {
            return Err(cfg_err(
                "type",
                format!(
                "{kind} is a Thanos provider Strata does not support (FILESYSTEM, S3, GCS, AZURE)"
            ),
            ))
        }
        _ => {
            return Err(cfg_err(
                "type",
                format!("unknown provider {kind:?} (FILESYSTEM, S3, GCS or AZURE)"),
            ))
        }
    };
    top.merge(c)?;
    let ignored = top.finish()?;
    Ok(ObjstoreConfig {
        provider,
        prefix,
        ignored,
    })
}

fn parse_s3(c: &mut Fields) -> Result<S3Config> {
    let mut s = S3Config {
        bucket: c.string("bucket")?,
        endpoint: c.string("endpoint")?,
        region: c.string("region")?,
        access_key: c.secret("access_key")?,
        secret_key: c.secret("secret_key")?,
        session_token: c.secret("session_token")?,
        insecure: c.boolean("insecure")?,
        ..Default::default()
    };
    if s.bucket.is_empty() {
        return Err(cfg_err("config.bucket", "missing"));
    }
    if s.endpoint.contains("://") {
        return Err(cfg_err(
            "config.endpoint",
            "host[:port] without a scheme (use `insecure: true` for plain HTTP)",
        ));
    }
    if c.boolean("signature_version2")? {
        return Err(cfg_err(
            "config.signature_version2",
            "AWS signature version 2 is not supported",
        ));
    }
    if s.access_key.is_some() != s.secret_key.is_some() {
        let (f, other) = if s.access_key.is_some() {
            ("config.secret_key", "access_key")
        } else {
            ("config.access_key", "secret_key")
        };
        return Err(cfg_err(
            f,
            format!("missing while {other} is given; give both, or neither to use the environment"),
        ));
    }
    let aws_sdk_auth = c.boolean("aws_sdk_auth")?;
    if aws_sdk_auth && s.access_key.is_some() {
        return Err(cfg_err(
            "config.aws_sdk_auth",
            "aws_sdk_auth and access_key are mutually exclusive",
        ));
    }
    s.insecure_skip_verify = http_config(c)?;
    match c.string("bucket_lookup_type")?.as_str() {
        "" | "auto" | "path" => {}
        "virtual-hosted" => s.virtual_hosted = true,
        other => {
            return Err(cfg_err(
                "config.bucket_lookup_type",
                format!("{other:?}: expected auto, virtual-hosted or path"),
            ))
        }
    }
    match c.string("list_objects_version")?.as_str() {
        "" | "v1" | "v2" => {}
        other => {
            return Err(cfg_err(
                "config.list_objects_version",
                format!("{other:?}: expected v1 or v2"),
            ))
        }
    }
    let mut sse = c.sub("sse_config")?;
    match sse.string("type")?.as_str() {
        "" | "SSE-S3" => {}
        "SSE-KMS" => {
            let id = sse.string("kms_key_id")?;
            if id.is_empty() {
                return Err(cfg_err(
                    "config.sse_config.kms_key_id",
                    "required with type SSE-KMS",
                ));
            }
            s.sse_kms_key_id = Some(id);
        }
        "SSE-C" => return Err(cfg_err("config.sse_config.type", "SSE-C is not supported")),
        other => {
            return Err(cfg_err(
                "config.sse_config.type",
                format!("{other:?}: expected SSE-S3, SSE-KMS or SSE-C"),
            ))
        }
    }
    sse.ignore(&["kms_encryption_context", "encryption_key"]);
    c.merge(sse)?;
    let mut trace = c.sub("trace")?;
    trace.ignore(&["enable"]);
    c.merge(trace)?;
    c.ignore(&[
        "disable_dualstack",
        "put_user_metadata",
        "send_content_md5",
        "disable_multipart",
        "part_size",
        "sts_endpoint",
        "max_retries",
    ]);
    Ok(s)
}

/// True when `endpoint` is AWS's own S3 endpoint (`s3.amazonaws.com`,
/// `s3.<region>.amazonaws.com`, `s3-<region>.amazonaws.com`); returns the region it names.
fn aws_endpoint_region(endpoint: &str) -> Option<Option<String>> {
    let host = endpoint.split(':').next().unwrap_or_default();
    let rest = host.strip_suffix(".amazonaws.com")?;
    if rest == "s3" {
        return Some(None);
    }
    let region = rest
        .strip_prefix("s3.")
        .or_else(|| rest.strip_prefix("s3-"))?;
    Some(Some(region.to_string()))
}

impl ObjstoreConfig {
    /// Builds the bucket client (no network traffic; FILESYSTEM creates its directory).
    pub fn build(&self) -> Result<(Bucket, BucketDescription)> {
        let (store, kind, name, endpoint): (Bucket, &'static str, String, String) =
            match &self.provider {
                Provider::Filesystem(f) => {
                    std::fs::create_dir_all(&f.directory)
                        .map_err(|e| Error::io("create directory", &f.directory, e))?;
                    let fs = LocalFileSystem::new_with_prefix(&f.directory).map_err(|e| {
                        cfg_err(
                            "config.directory",
                            format!("{}: {e}", f.directory.display()),
                        )
                    })?;
                    (
                        Arc::new(fs),
                        "FILESYSTEM",
                        f.directory.display().to_string(),
                        String::new(),
                    )
                }
                Provider::S3(s) => {
                    let (b, ep) = build_s3(s)?;
                    (b, "S3", s.bucket.clone(), ep)
                }
                Provider::Gcs(g) => {
                    let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&g.bucket);
                    if let Some(sa) = &g.service_account {
                        b = b.with_service_account_key(sa.expose());
                    }
                    let store = b
                        .build()
                        .map_err(|e| cfg_err("config", format!("GCS client: {e}")))?;
                    (Arc::new(store), "GCS", g.bucket.clone(), String::new())
                }
                Provider::Azure(a) => {
                    let mut b = MicrosoftAzureBuilder::from_env()
                        .with_account(&a.storage_account)
                        .with_container_name(&a.container);
                    if let Some(k) = &a.storage_account_key {
                        b = b.with_access_key(k.expose());
                    }
                    let mut ep = String::new();
                    if !a.endpoint.is_empty() && a.endpoint != "blob.core.windows.net" {
                        ep = format!(
                            "https://{}.{}",
                            a.storage_account,
                            a.endpoint.trim_start_matches("https://")
                        );
                        b = b.with_endpoint(ep.clone());
                    }
                    let store = b
                        .build()
                        .map_err(|e| cfg_err("config", format!("Azure client: {e}")))?;
                    (Arc::new(store), "AZURE", a.container.clone(), ep)
                }
            };
        let store: Bucket = if self.prefix.is_empty() {
            store
        } else {
            Arc::new(PrefixStore::new(store, self.prefix.as_str()))
        };
        let store = crate::retry::RetryingStore::wrap(store);
        Ok((
            store,
            BucketDescription {
                kind,
                name,
                endpoint,
                prefix: self.prefix.clone(),
                ignored: self.ignored.clone(),
            },
        ))
    }
}

fn build_s3(s: &S3Config) -> Result<(Bucket, String)> {
    let mut b = AmazonS3Builder::from_env().with_bucket_name(&s.bucket);
    let mut region = s.region.clone();
    let mut endpoint = String::new();
    match aws_endpoint_region(&s.endpoint) {
        // AWS itself: let the client derive the URL from the region.
        Some(r) if region.is_empty() => region = r.unwrap_or_default(),
        Some(_) => {}
        None if !s.endpoint.is_empty() => {
            let scheme = if s.insecure { "http" } else { "https" };
            endpoint = if s.virtual_hosted {
                format!("{scheme}://{}.{}", s.bucket, s.endpoint)
            } else {
                format!("{scheme}://{}", s.endpoint)
            };
            b = b.with_endpoint(&endpoint);
        }
        None => {}
    }
    if region.is_empty() && std::env::var_os("AWS_REGION").is_none() {
        region = "us-east-1".into();
    }
    if !region.is_empty() {
        b = b.with_region(region);
    }
    b = b.with_virtual_hosted_style_request(s.virtual_hosted);
    if let (Some(k), Some(sk)) = (&s.access_key, &s.secret_key) {
        b = b
            .with_access_key_id(k.expose())
            .with_secret_access_key(sk.expose());
        if let Some(t) = &s.session_token {
            b = b.with_token(t.expose());
        }
    }
    if let Some(id) = &s.sse_kms_key_id {
        b = b.with_sse_kms_encryption(id);
    }
    let opts = ClientOptions::new()
        .with_allow_http(s.insecure)
        .with_allow_invalid_certificates(s.insecure_skip_verify);
    b = b.with_client_options(opts);
    let store = b
        .build()
        .map_err(|e| cfg_err("config", format!("S3 client: {e}")))?;
    Ok((Arc::new(store), endpoint))
}

/// Parses the objstore YAML and builds the bucket.
pub fn from_yaml(text: &str) -> Result<(Bucket, BucketDescription)> {
    parse(text)?.build()
}

/// Reads, parses and builds the objstore configuration file at `path`.
pub fn from_file(path: &Path) -> Result<(Bucket, BucketDescription)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    from_yaml(&text).map_err(|e| match e {
        Error::Config { field, detail } => Error::Config {
            field: format!("{}: {field}", path.display()),
            detail,
        },
        e => e,
    })
}

/// The default bucket of `strata serve`: a FILESYSTEM bucket at `dir`.
pub fn filesystem(dir: &Path) -> Result<(Bucket, BucketDescription)> {
    ObjstoreConfig {
        provider: Provider::Filesystem(FilesystemConfig {
            directory: dir.to_path_buf(),
        }),
        prefix: String::new(),
        ignored: Vec::new(),
    }
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_field(text: &str) -> String {
        match parse(text) {
            Err(Error::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn filesystem_creates_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let yaml = format!(
            "type: filesystem\nconfig:\n  directory: {}\n",
            dir.display()
        );
        let (bucket, desc) = from_yaml(&yaml).unwrap();
        assert!(dir.is_dir());
        assert_eq!(desc.kind, "FILESYSTEM");
        assert_eq!(desc.name, dir.display().to_string());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let k = object_store::path::Path::from("x/y");
            bucket.put(&k, "hi".into()).await.unwrap();
        });
        assert_eq!(std::fs::read(dir.join("x/y")).unwrap(), b"hi");
    }

    #[test]
    fn prefix_applies_to_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let yaml = format!(
            "type: FILESYSTEM\nprefix: /tenant/a/\nconfig:\n  directory: {}\n",
            tmp.path().display()
        );
        let (bucket, desc) = from_yaml(&yaml).unwrap();
        assert_eq!(desc.prefix, "tenant/a");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            bucket
                .put(&object_store::path::Path::from("k"), "v".into())
                .await
                .unwrap();
        });
        assert!(tmp.path().join("tenant/a/k").is_file());
        assert_eq!(
            err_field("type: FILESYSTEM\nprefix: a/../b\nconfig: {directory: /x}"),
            "prefix"
        );
    }

    #[test]
    fn s3_fields() {
        let c = parse(
            r#"
type: S3
config:
  bucket: metrics
  endpoint: 127.0.0.1:9000
  region: eu-west-1
  access_key: AKID
  secret_key: VERYSECRET
  insecure: true
  http_config:
    insecure_skip_verify: true
    idle_conn_timeout: 1m
  trace:
    enable: true
  part_size: 1000
  bucket_lookup_type: path
"#,
        )
        .unwrap();
        let Provider::S3(s) = &c.provider else {
            panic!("not S3")
        };
        assert_eq!(s.bucket, "metrics");
        assert_eq!(s.endpoint, "127.0.0.1:9000");
        assert_eq!(s.region, "eu-west-1");
        assert!(s.insecure && s.insecure_skip_verify && !s.virtual_hosted);
        assert_eq!(s.secret_key.as_ref().unwrap().expose(), "VERYSECRET");
        assert_eq!(
            c.ignored,
            vec![
                "config.http_config.idle_conn_timeout",
                "config.trace.enable",
                "config.part_size"
            ]
        );
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("VERYSECRET") && !dbg.contains("AKID"),
            "{dbg}"
        );
        let (_, desc) = c.build().unwrap();
        assert_eq!(desc.endpoint, "http://127.0.0.1:9000");
        assert_eq!(desc.to_string(), "S3 metrics at http://127.0.0.1:9000");
    }

    #[test]
    fn s3_errors_name_the_field() {
        assert_eq!(
            err_field("type: S3\nconfig: {bucket: b, endpoint: x, bogus: 1}"),
            "config.bogus"
        );
        assert_eq!(
            err_field("type: S3\nconfig: {bucket: b, signature_version2: true}"),
            "config.signature_version2"
        );
        assert_eq!(
            err_field("type: S3\nconfig: {endpoint: x}"),
            "config.bucket"
        );
        assert_eq!(
            err_field("type: S3\nconfig: {bucket: b, access_key: a}"),
            "config.secret_key"
        );
        assert_eq!(
            err_field("type: S3\nconfig: {bucket: b, endpoint: 'http://x'}"),
            "config.endpoint"
        );
        assert_eq!(
            err_field("type: S3\nconfig: {bucket: b, http_config: {nope: 1}}"),
            "config.http_config.nope"
        );
        assert_eq!(
            err_field("type: S3\nconfig: {bucket: b, insecure: maybe}"),
            "config.insecure"
        );
        assert_eq!(
            err_field("type: S3\nconfig: {bucket: b, bucket_lookup_type: dns}"),
            "config.bucket_lookup_type"
        );
        assert_eq!(
            err_field("type: S3\nconfig: {bucket: b}\nextra: 1"),
            "extra"
        );
        assert_eq!(err_field("config: {bucket: b}"), "type");
        assert_eq!(err_field("type: SWIFT\nconfig: {}"), "type");
        assert_eq!(err_field("type: NOPE\nconfig: {}"), "type");
        assert_eq!(
            err_field("type: FILESYSTEM\nconfig: {}"),
            "config.directory"
        );
    }

    #[test]
    fn aws_endpoint_uses_region() {
        assert_eq!(aws_endpoint_region("s3.amazonaws.com"), Some(None));
        assert_eq!(
            aws_endpoint_region("s3.eu-west-2.amazonaws.com"),
            Some(Some("eu-west-2".into()))
        );
        assert_eq!(aws_endpoint_region("minio:9000"), None);
        let c = parse("type: S3\nconfig: {bucket: b, endpoint: s3.eu-west-2.amazonaws.com, access_key: a, secret_key: s}")
            .unwrap();
        let (_, desc) = c.build().unwrap();
        assert_eq!(desc.endpoint, "");
    }

    #[test]
    fn gcs_fields() {
        let c = parse("type: GCS\nconfig:\n  bucket: g\n  service_account: '{\"type\": \"service_account\"}'\n  use_grpc: true\n").unwrap();
        let Provider::Gcs(g) = &c.provider else {
            panic!("not GCS")
        };
        assert_eq!(g.bucket, "g");
        assert!(g
            .service_account
            .as_ref()
            .unwrap()
            .expose()
            .contains("service_account"));
        assert!(!format!("{c:?}").contains("\"type\""));
        assert_eq!(c.ignored, vec!["config.use_grpc"]);
        assert_eq!(err_field("type: GCS\nconfig: {}"), "config.bucket");
        assert_eq!(
            err_field("type: GCS\nconfig: {bucket: g, x: 1}"),
            "config.x"
        );
    }

    #[test]
    fn azure_fields() {
        let c = parse("type: AZURE\nconfig:\n  storage_account: acct\n  storage_account_key: UzNDUjNU\n  container: c\n  endpoint: blob.core.chinacloudapi.cn\n  max_retries: 3\n").unwrap();
        let Provider::Azure(a) = &c.provider else {
            panic!("not Azure")
        };
        assert_eq!(a.storage_account, "acct");
        assert_eq!(a.container, "c");
        assert!(!format!("{c:?}").contains("UzNDUjNU"));
        let (_, desc) = c.build().unwrap();
        assert_eq!(desc.endpoint, "https://acct.blob.core.chinacloudapi.cn");
        assert_eq!(desc.name, "c");
        assert_eq!(
            err_field("type: AZURE\nconfig: {container: c}"),
            "config.storage_account"
        );
        assert_eq!(
            err_field("type: AZURE\nconfig: {storage_account: a}"),
            "config.container"
        );
    }

    #[test]
    fn from_file_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("objstore.yml");
        std::fs::write(&p, "type: S3\nconfig: {bucket: b, oops: 1}\n").unwrap();
        let e = from_file(&p).err().unwrap().to_string();
        assert!(
            e.contains("objstore.yml") && e.contains("config.oops"),
            "{e}"
        );
    }
}
