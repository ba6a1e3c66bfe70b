//! A FILESYSTEM bucket for the compactor and bucket-tool tests: its objstore YAML file, and
//! blocks written from in-memory series and uploaded in Thanos's layout.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_compactor::bucket::{self, Bucket};
use strata_tsdb::block::meta::{BlockMeta, ThanosMeta};
use strata_tsdb::block::{write_block, SeriesToWrite};
use strata_tsdb::compact::encode_chunks;
use strata_tsdb::labels::Labels;
use ulid::Ulid;

pub struct TestBucket {
    /// The bucket's directory.
    pub dir: PathBuf,
    /// Its objstore YAML file, for `--objstore.config-file`.
    pub config: PathBuf,
    /// Where blocks are written before upload.
    pub local: PathBuf,
    pub bucket: Bucket,
    pub rt: tokio::runtime::Runtime,
}

impl TestBucket {
    /// A bucket in `root/bucket`, with its config at `root/objstore.yml`.
    pub fn new(root: &Path) -> TestBucket {
        let dir = root.join("bucket");
        let config = root.join("objstore.yml");
        std::fs::write(
            &config,
            format!(
                "type: FILESYSTEM\nconfig:\n  directory: {}\n",
                dir.display()
            ),
        )
        .expect("objstore config");
        let local = root.join("local");
        std::fs::create_dir_all(&local).expect("mkdir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let bucket = bucket::local_bucket(&dir).expect("bucket");
        TestBucket {
            dir,
            config,
            local,
            bucket,
            rt,
        }
    }

    /// Writes a block of `series` (sorted here) over `[mint, maxt)` with external labels
    /// `ext` and uploads it; returns its meta.
    pub fn add_block(
        &self,
        mint: i64,
        maxt: i64,
        mut series: Vec<(Labels, Vec<(i64, f64)>)>,
        ext: &[(&str, &str)],
    ) -> BlockMeta {
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut symbols: BTreeSet<Arc<str>> = BTreeSet::from([Arc::from("")]);
        for (l, _) in &series {
            for x in l.iter() {
                symbols.insert(x.name.clone());
                symbols.insert(x.value.clone());
            }
        }
        let mut it = series.into_iter().map(|(labels, s)| {
            Ok(SeriesToWrite {
                labels,
                chunks: encode_chunks(&s)?,
            })
        });
        let mut meta = write_block(
            &self.local,
            BlockMeta::new(Ulid::new(), mint, maxt),
            &symbols,
            &mut it,
        )
        .expect("write block")
        .expect("non-empty block");
        meta.thanos = Some(ThanosMeta {
            labels: ext
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            source: "sidecar".into(),
            ..Default::default()
        });
        self.rt
            .block_on(bucket::upload_block(
                &self.bucket,
                &self.local.join(meta.ulid.to_string()),
                &meta,
            ))
            .expect("upload");
        meta
    }
}
