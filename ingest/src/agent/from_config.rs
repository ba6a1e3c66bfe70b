//! From `prometheus.yml`'s `remote_write` entries to [`QueueSettings`]: HTTP clients built
//! from each entry's client settings (credentials read from their files now), the
//! `Authorization` and custom headers, the protocol, `queue_config`, `write_relabel_configs`
//! and `global.external_labels`. A [`QueueBuilder`] remembers what it built so that a reload
//! with an unchanged entry hands back the same settings (and the queue keeps running).

use std::collections::HashMap;
use std::sync::Arc;

use strata_tsdb::Labels;

use super::{QueueSettings, RelabelFn};
use crate::config::{Config, ProtobufMessage, RemoteWriteConfig};
use crate::error::{Error, Result};
use crate::remote::Protocol;

/// Builds queue settings from configurations; see the module docs.
#[derive(Default)]
pub struct QueueBuilder {
    built: HashMap<String, QueueSettings>,
}

impl QueueBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The queues `cfg` describes, one per `remote_write` entry. Every entry is checked before
    /// any is returned; an error names the entry and field.
    pub fn build(&mut self, cfg: &Config) -> Result<Vec<QueueSettings>> {
        let ext: Vec<(String, String)> = cfg
            .global
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let external = Labels::from_pairs(&ext);
        let mut next = HashMap::new();
        let mut out = Vec::with_capacity(cfg.remote_write.len());
        for (i, rw) in cfg.remote_write.iter().enumerate() {
            let field = format!("remote_write[{i}]");
            let err = |message: String| Error::Config {
                path: cfg.path().map(Into::into),
                message,
            };
            let http = rw.http_client.to_settings(&field).map_err(err)?;
            let key = format!(
                "{}|{:?}|{:?}|{ext:?}",
                serde_json::to_string(rw).unwrap_or_default(),
                http.authorization_header(),
                http.tls
            );
            let settings = match self.built.get(&key) {
                Some(s) => s.clone(),
                None => queue_settings(rw, &http, external.clone(), i)
                    .map_err(|e| err(format!("{field}: {e}")))?,
            };
            next.insert(key, settings.clone());
            out.push(settings);
        }
        self.built = next;
        Ok(out)
    }
}

fn queue_settings(
    rw: &RemoteWriteConfig,
    http: &crate::http::HttpSettings,
    external_labels: Labels,
    index: usize,
) -> Result<QueueSettings> {
    let client = crate::http::build_client(http, Some(rw.remote_timeout.as_std()))?;
    let name = if rw.name.is_empty() {
        format!("remote_write_{index}")
    } else {
        rw.name.clone()
    };
    let mut s = QueueSettings::new(name, rw.url.clone(), client);
    s.headers = rw
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(a) = http.authorization_header() {
        s.headers.push(("Authorization".into(), a));
    }
    s.protocol = match rw.protobuf_message {
        ProtobufMessage::WriteV1 => Protocol::V1,
        ProtobufMessage::WriteV2 => Protocol::V2,
    };
    let q = &rw.queue_config;
    let pos = |v: i64| v.max(1) as usize;
    s.capacity = pos(q.capacity);
    s.max_shards = pos(q.max_shards);
    s.min_shards = pos(q.min_shards);
    s.max_samples_per_send = pos(q.max_samples_per_send);
    s.batch_send_deadline = q.batch_send_deadline.as_std();
    s.min_backoff = q.min_backoff.as_std();
    s.max_backoff = q.max_backoff.as_std();
    s.retry_on_http_429 = q.retry_on_http_429;
    s.remote_timeout = rw.remote_timeout.as_std();
    s.external_labels = external_labels;
    if !rw.write_relabel_configs.is_empty() {
        let rules = rw.write_relabel_configs.clone();
        let f: RelabelFn = Arc::new(move |l: &Labels| crate::relabel::process(l, &rules));
        s.write_relabel = Some(f);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_queues_and_reuses_unchanged_ones() {
        let yaml = "global:\n  external_labels:\n    dc: a\n\
            remote_write:\n  - url: http://127.0.0.1:1/w\n    name: one\n    basic_auth:\n      username: u\n      password: p\n    headers:\n      X-Scope: t\n    write_relabel_configs:\n      - action: drop\n        source_labels: [__name__]\n        regex: skip_.*\n    queue_config:\n      max_samples_per_send: 500\n      batch_send_deadline: 2s\n\
            \x20 - url: http://127.0.0.1:2/w\n    protobuf_message: io.prometheus.write.v2.Request\n    authorization:\n      credentials: tok\n";
        let cfg = Config::from_yaml(yaml).unwrap();
        let mut b = QueueBuilder::new();
        let qs = b.build(&cfg).unwrap();
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0].name, "one");
        assert_eq!(qs[0].protocol, Protocol::V1);
        assert_eq!(qs[0].max_samples_per_send, 500);
        assert_eq!(qs[0].batch_send_deadline, std::time::Duration::from_secs(2));
        assert!(qs[0]
            .headers
            .contains(&("Authorization".into(), "Basic dTpw".into())));
        assert!(qs[0].headers.contains(&("X-Scope".into(), "t".into())));
        let relabel = qs[0].write_relabel.clone().unwrap();
        assert!(relabel(&Labels::from_pairs(&[("__name__", "skip_me")])).is_none());
        assert!(relabel(&Labels::from_pairs(&[("__name__", "keep")])).is_some());
        assert_eq!(qs[0].external_labels, Labels::from_pairs(&[("dc", "a")]));
        assert_eq!(qs[1].name, "remote_write_1");
        assert_eq!(qs[1].protocol, Protocol::V2);
        assert!(qs[1]
            .headers
            .contains(&("Authorization".into(), "Bearer tok".into())));

        // The same configuration again: the very same relabel function (the queue keeps
        // running); a changed entry gets a new one.
        let again = b.build(&cfg).unwrap();
        assert!(Arc::ptr_eq(
            again[0].write_relabel.as_ref().unwrap(),
            &relabel
        ));
        let changed = Config::from_yaml(&yaml.replace("skip_.*", "other_.*")).unwrap();
        let qs3 = b.build(&changed).unwrap();
        assert!(!Arc::ptr_eq(
            qs3[0].write_relabel.as_ref().unwrap(),
            &relabel
        ));
    }
}
