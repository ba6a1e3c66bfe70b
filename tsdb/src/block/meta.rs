//! A block's `meta.json`: Prometheus's `BlockMeta` plus Thanos's optional `thanos` section.
//!
//! Field names, order and omission rules follow Prometheus's Go structs (`tsdb/block.go`:
//! `omitempty` on the stats counters and on the optional compaction fields; `stats` is always
//! written) and Thanos's `pkg/block/metadata` (`thanos` section). The `thanos` key is omitted
//! when [`BlockMeta::thanos`] is `None`, so Prometheus-only blocks round-trip unchanged.
//! Unknown keys inside the `thanos` section (e.g. `rewrites`, `index_stats`) are kept verbatim.
//!
//! Block IDs are [`ulid::Ulid`], (de)serialized as their 26-character Crockford base32 string.
//!
//! [`write_meta`] writes like Prometheus's `writeMetaFile`: `json.MarshalIndent(meta, "", "\t")`
//! (tab indentation, no trailing newline, `<`, `>`, `&`, U+2028 and U+2029 escaped as Go does)
//! to `meta.json.tmp`, fsync, rename over `meta.json`, fsync the directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

use crate::error::{Error, Result};

/// File name of the block meta file.
pub const META_FILENAME: &str = "meta.json";
/// The only meta.json version.
pub const META_VERSION_1: u32 = 1;
/// Compaction hint of blocks built from out-of-order chunks.
pub const COMPACTION_HINT_FROM_OUT_OF_ORDER: &str = "from-out-of-order";

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}

mod ulid_str {
    use super::*;

    pub fn serialize<S: Serializer>(u: &Ulid, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&u.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        Ulid::from_string(&s).map_err(|e| serde::de::Error::custom(format!("ulid {s:?}: {e}")))
    }

    pub mod vec {
        use super::*;

        pub fn serialize<S: Serializer>(v: &[Ulid], s: S) -> std::result::Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|u| u.to_string()))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> std::result::Result<Vec<Ulid>, D::Error> {
            let v = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
            v.iter()
                .map(|s| {
                    Ulid::from_string(s)
                        .map_err(|e| serde::de::Error::custom(format!("ulid {s:?}: {e}")))
                })
                .collect()
        }
    }
}

/// `null` (a nil Go slice or map) decodes as the default value.
fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Prometheus's `BlockMeta`, with Thanos's section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    #[serde(with = "ulid_str")]
    pub ulid: Ulid,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    #[serde(default)]
    pub compaction: BlockMetaCompaction,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
}

impl BlockMeta {
    /// A level-1 block meta with itself as its only source.
    pub fn new(ulid: Ulid, min_time: i64, max_time: i64) -> Self {
        BlockMeta {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: BlockMetaCompaction {
                level: 1,
                sources: vec![ulid],
                ..Default::default()
            },
            version: META_VERSION_1,
            thanos: None,
        }
    }

    /// Serializes exactly as Prometheus's `json.MarshalIndent(meta, "", "\t")`.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serializing plain structs, strings and integers into a Vec cannot fail.
        if self.serialize(&mut ser).is_err() {
            out.clear();
        }
        go_html_escape(out)
    }

    /// Parses meta.json bytes; `path` is used in errors.
    pub fn from_json(b: &[u8], path: &Path) -> Result<Self> {
        let m: BlockMeta = serde_json::from_slice(b).map_err(|source| Error::Meta {
            path: path.to_path_buf(),
            source,
        })?;
        if m.version != META_VERSION_1 {
            return Err(Error::Block {
                ulid: m.ulid.to_string(),
                detail: format!(
                    "{}: unexpected meta file version {}",
                    path.display(),
                    m.version
                ),
            });
        }
        Ok(m)
    }
}

/// Go's encoding/json escapes `<`, `>`, `&`, U+2028 and U+2029 inside strings; outside strings
/// none of them can occur in JSON, so a plain substitution is exact.
fn go_html_escape(b: Vec<u8>) -> Vec<u8> {
    let needs = b.iter().any(|&c| matches!(c, b'<' | b'>' | b'&'))
        || b.windows(3)
            .any(|w| w == "\u{2028}".as_bytes() || w == "\u{2029}".as_bytes());
    if !needs {
        return b;
    }
    let s = String::from_utf8_lossy(&b);
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

/// Counters about the block's contents; zero counters are omitted from the JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(rename = "numFloatSamples", default, skip_serializing_if = "is_zero")]
    pub num_float_samples: u64,
    #[serde(
        rename = "numHistogramSamples",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub num_histogram_samples: u64,
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

/// A block's ID and time range (compaction parents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    #[serde(with = "ulid_str")]
    pub ulid: Ulid,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// What compactions the block went through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMetaCompaction {
    /// Maximum number of compaction cycles any source block has gone through.
    pub level: u32,
    /// ULIDs of all source head blocks that went into the block.
    #[serde(with = "ulid_str::vec", default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
    /// The compaction produced no samples; delete on next reload.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// The direct parents of this block.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub parents: Vec<BlockDesc>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// E.g. [`COMPACTION_HINT_FROM_OUT_OF_ORDER`].
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub hints: Vec<String>,
}

/// Thanos's section of meta.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    /// Thanos meta version; 0 (absent) means 1.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub version: u32,
    /// External labels of the producer.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: ThanosDownsample,
    /// Upload source: `sidecar`, `receive`, `compactor`, ...
    #[serde(default)]
    pub source: String,
    /// Deprecated list of chunk segment files.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub segment_files: Vec<String>,
    /// Every file of the block, sorted by relative path.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub files: Vec<ThanosFile>,
    /// Keys this version does not model (`rewrites`, `index_stats`, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Downsampling resolution in milliseconds (0 = raw).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosDownsample {
    pub resolution: i64,
}

/// One file of a block in Thanos's `files` list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosFile {
    pub rel_path: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<serde_json::Value>,
}

/// Reads and validates `dir/meta.json`.
pub fn read_meta(dir: impl AsRef<Path>) -> Result<BlockMeta> {
    let path = dir.as_ref().join(META_FILENAME);
    let b = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    BlockMeta::from_json(&b, &path)
}

/// Writes `dir/meta.json` atomically (`meta.json.tmp`, fsync, rename, directory fsync); returns
/// the number of bytes written.
pub fn write_meta(dir: impl AsRef<Path>, meta: &BlockMeta) -> Result<u64> {
    let dir = dir.as_ref();
    let path = dir.join(META_FILENAME);
    let tmp = dir.join(format!("{META_FILENAME}.tmp"));
    let json = meta.to_json();
    let res = (|| {
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(&json)
            .map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
        let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
        d.sync_all()
            .map_err(|e| Error::io("fsync directory", dir, e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.map(|_| json.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROM: &str = "{\n\t\"ulid\": \"01M80TA1VGJW06MXF9VYNYGVDX\",\n\t\"minTime\": 1700000000000,\n\t\"maxTime\": 1700006360001,\n\t\"stats\": {\n\t\t\"numSamples\": 535,\n\t\t\"numSeries\": 5,\n\t\t\"numChunks\": 5\n\t},\n\t\"compaction\": {\n\t\t\"level\": 1,\n\t\t\"sources\": [\n\t\t\t\"01M80TA1VGJW06MXF9VYNYGVDX\"\n\t\t]\n\t},\n\t\"version\": 1\n}";

    #[test]
    fn prometheus_meta_round_trips_byte_for_byte() {
        let m = BlockMeta::from_json(PROM.as_bytes(), Path::new("m")).unwrap();
        assert_eq!(m.stats.num_samples, 535);
        assert_eq!(m.compaction.sources, vec![m.ulid]);
        assert!(m.thanos.is_none());
        assert_eq!(String::from_utf8(m.to_json()).unwrap(), PROM);
    }

    #[test]
    fn empty_stats_and_full_compaction() {
        let u = Ulid::from_string("01M80TA1ZFXE3PSVZKM2ZNB79S").unwrap();
        let mut m = BlockMeta::new(u, 0, 10);
        let s = String::from_utf8(m.to_json()).unwrap();
        assert!(s.contains("\"stats\": {},"), "{s}");
        m.compaction.parents = vec![BlockDesc {
            ulid: u,
            min_time: 0,
            max_time: 5,
        }];
        m.compaction.deletable = true;
        m.compaction.failed = true;
        m.compaction.hints = vec![COMPACTION_HINT_FROM_OUT_OF_ORDER.into()];
        m.stats.num_tombstones = 3;
        let back = BlockMeta::from_json(&m.to_json(), Path::new("m")).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn thanos_section_round_trips_and_keeps_unknown_keys() {
        let json = r#"{
	"ulid": "01M80TA1ZFXE3PSVZKM2ZNB79S",
	"minTime": 0,
	"maxTime": 7200000,
	"stats": {"numSamples": 1, "numFloatSamples": 1},
	"compaction": {"level": 2, "sources": ["01M80TA1ZFXE3PSVZKM2ZNB79S"], "parents": null},
	"version": 1,
	"thanos": {
		"labels": {"replica": "a<b>&c", "cluster": "eu"},
		"downsample": {"resolution": 300000},
		"source": "compactor",
		"segment_files": ["000001"],
		"files": [{"rel_path": "chunks/000001", "size_bytes": 1234}, {"rel_path": "meta.json"}],
		"rewrites": [{"sources": ["01M80TA1ZFXE3PSVZKM2ZNB79S"]}],
		"index_stats": {"series_max_size": 10}
	}
}"#;
        let m = BlockMeta::from_json(json.as_bytes(), Path::new("m")).unwrap();
        let t = m.thanos.as_ref().unwrap();
        assert_eq!(t.labels["replica"], "a<b>&c");
        assert_eq!(t.downsample.resolution, 300_000);
        assert_eq!(t.files[0].size_bytes, 1234);
        assert_eq!(t.files[1].size_bytes, 0);
        assert!(t.extra.contains_key("rewrites") && t.extra.contains_key("index_stats"));
        let out = String::from_utf8(m.to_json()).unwrap();
        assert!(
            out.contains(r#""replica": "a\u003cb\u003e\u0026c""#),
            "{out}"
        );
        assert!(out.contains(r#""rel_path": "meta.json""#) && !out.contains("\"hash\""));
        assert_eq!(
            BlockMeta::from_json(out.as_bytes(), Path::new("m")).unwrap(),
            m
        );
        // null labels (a nil Go map) are accepted.
        let nulls = json.replace(r#"{"replica": "a<b>&c", "cluster": "eu"}"#, "null");
        let m = BlockMeta::from_json(nulls.as_bytes(), Path::new("m")).unwrap();
        assert!(m.thanos.unwrap().labels.is_empty());
    }

    #[test]
    fn files_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let m = BlockMeta::from_json(PROM.as_bytes(), Path::new("m")).unwrap();
        let n = write_meta(dir.path(), &m).unwrap();
        assert_eq!(n, PROM.len() as u64);
        assert!(!dir.path().join("meta.json.tmp").exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("meta.json")).unwrap(),
            PROM
        );
        assert_eq!(read_meta(dir.path()).unwrap(), m);

        std::fs::write(dir.path().join("meta.json"), "{garbage").unwrap();
        let e = read_meta(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Meta { .. }));
        assert!(e.to_string().contains("meta.json"), "{e}");

        std::fs::write(
            dir.path().join("meta.json"),
            PROM.replace("\"version\": 1", "\"version\": 2"),
        )
        .unwrap();
        assert!(read_meta(dir.path())
            .unwrap_err()
            .to_string()
            .contains("version 2"));

        let e = read_meta(dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
    }
}
