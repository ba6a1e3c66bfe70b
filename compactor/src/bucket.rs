//! The Thanos bucket layout over any `object_store` bucket: `<ULID>/meta.json`, `<ULID>/index`,
//! `<ULID>/chunks/000001…`, and the marks `<ULID>/deletion-mark.json` and
//! `<ULID>/no-compact-mark.json`. Listing block metas, uploading a local block (chunks, then
//! index, then `meta.json` last, so a block is never visible incomplete), downloading one,
//! deleting one (`meta.json` first, so it disappears at once), and reading and writing marks.
//! Block IDs and keys are validated (a ULID; no `..`, no absolute paths).

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use strata_tsdb::block::meta::BlockMeta;
use ulid::Ulid;

use crate::error::{Error, Result};

/// A bucket: any object store (local directory, S3, GCS, Azure, in-memory).
pub type Bucket = Arc<dyn ObjectStore>;

pub const META_FILE: &str = "meta.json";
pub const INDEX_FILE: &str = "index";
pub const CHUNKS_DIR: &str = "chunks";
pub const DELETION_MARK_FILE: &str = "deletion-mark.json";
pub const NO_COMPACT_MARK_FILE: &str = "no-compact-mark.json";

/// Parses a block ID as given by a user or found in a listing: a ULID and nothing else.
pub fn parse_block_id(s: &str) -> Result<Ulid> {
    let s = s.trim_end_matches('/');
    if s.contains("..") || s.contains('/') || s.starts_with('\\') {
        return Err(Error::Invalid {
            what: "block ID",
            value: s.to_string(),
            detail: "a block ID is a ULID, not a path".into(),
        });
    }
    Ulid::from_string(s).map_err(|e| Error::Invalid {
        what: "block ID",
        value: s.to_string(),
        detail: e.to_string(),
    })
}

/// The key of `file` (a relative path such as `chunks/000001`) inside block `id`. The relative
/// path must not climb out of the block.
pub fn block_key(id: &Ulid, file: &str) -> Result<Key> {
    if file.is_empty()
        || file.starts_with('/')
        || file
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(Error::Invalid {
            what: "object key",
            value: file.to_string(),
            detail: "must be a relative path inside the block".into(),
        });
    }
    Ok(Key::from(format!("{id}/{file}")))
}

/// Reads a whole object.
pub async fn get(bucket: &Bucket, key: &Key) -> Result<bytes::Bytes> {
    let r = bucket
        .get(key)
        .await
        .map_err(|e| Error::store("get", key, e))?;
    r.bytes().await.map_err(|e| Error::store("get", key, e))
}

/// Whether an object exists.
pub async fn exists(bucket: &Bucket, key: &Key) -> Result<bool> {
    match bucket.head(key).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(Error::store("head", key, e)),
    }
}

/// The IDs of every top-level directory named like a block (with or without `meta.json`).
pub async fn list_block_dirs(bucket: &Bucket) -> Result<Vec<Ulid>> {
    let res = bucket
        .list_with_delimiter(None)
        .await
        .map_err(|e| Error::store("list", "/", e))?;
    let mut ids: Vec<Ulid> = res
        .common_prefixes
        .iter()
        .filter_map(|p| Ulid::from_string(p.as_ref().trim_end_matches('/')).ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Reads and parses `<id>/meta.json`; `Ok(None)` when it does not exist (a partial upload).
pub async fn read_meta(bucket: &Bucket, id: &Ulid) -> Result<Option<BlockMeta>> {
    let key = block_key(id, META_FILE)?;
    let b = match bucket.get(&key).await {
        Ok(r) => r.bytes().await.map_err(|e| Error::store("get", &key, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store("get", &key, e)),
    };
    let meta = BlockMeta::from_json(&b, Path::new(key.as_ref())).map_err(|e| Error::Corrupt {
        key: key.to_string(),
        detail: e.to_string(),
    })?;
    if meta.ulid != *id {
        return Err(Error::Corrupt {
            key: key.to_string(),
            detail: format!("meta.json names block {}", meta.ulid),
        });
    }
    Ok(Some(meta))
}

/// What [`list_metas`] found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Blocks with a valid `meta.json`, by ULID.
    pub blocks: Vec<BlockMeta>,
    /// Block directories without `meta.json` (uploads in progress or abandoned).
    pub partial: Vec<Ulid>,
    /// Blocks whose `meta.json` cannot be read, with the reason.
    pub corrupt: Vec<(Ulid, String)>,
}

/// Every block of the bucket, classified.
pub async fn list_metas(bucket: &Bucket) -> Result<Listing> {
    let mut out = Listing::default();
    for id in list_block_dirs(bucket).await? {
        match read_meta(bucket, &id).await {
            Ok(Some(m)) => out.blocks.push(m),
            Ok(None) => {
                // A local-filesystem bucket keeps the empty directories of deleted blocks:
                // only a directory holding objects is a partial upload.
                if !block_objects(bucket, &id).await?.is_empty() {
                    out.partial.push(id)
                }
            }
            Err(e @ Error::Corrupt { .. }) => out.corrupt.push((id, e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Every object key under block `id`, sorted.
pub async fn block_objects(bucket: &Bucket, id: &Ulid) -> Result<Vec<(Key, u64)>> {
    let prefix = Key::from(id.to_string());
    let mut v: Vec<(Key, u64)> = bucket
        .list(Some(&prefix))
        .map_ok(|m| (m.location, m.size as u64))
        .try_collect()
        .await
        .map_err(|e| Error::store("list", &prefix, e))?;
    v.sort();
    Ok(v)
}

async fn put_file(bucket: &Bucket, key: &Key, path: &Path) -> Result<u64> {
    let data = tokio::fs::read(path)
        .await
        .map_err(|e| Error::io("read", path, e))?;
    let n = data.len() as u64;
    bucket
        .put(key, PutPayload::from(data))
        .await
        .map_err(|e| Error::store("put", key, e))?;
    Ok(n)
}

/// Uploads the local block directory `dir` (its `meta.json` is replaced by `meta`, which the
/// caller fills with the `thanos` section): chunk files, then `index`, then `meta.json` last.
/// Other files of the directory (tombstones) are uploaded with the chunks.
pub async fn upload_block(bucket: &Bucket, dir: &Path, meta: &BlockMeta) -> Result<()> {
    let id = meta.ulid;
    let chunks = dir.join(CHUNKS_DIR);
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&chunks) {
        for e in rd.flatten() {
            files.push(e.path());
        }
    }
    files.sort();
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        put_file(bucket, &block_key(&id, &format!("{CHUNKS_DIR}/{name}"))?, f).await?;
    }
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut others: Vec<std::path::PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            n != META_FILE && n != INDEX_FILE && !n.ends_with(".tmp")
        })
        .collect();
    others.sort();
    for f in &others {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        put_file(bucket, &block_key(&id, name)?, f).await?;
    }
    put_file(bucket, &block_key(&id, INDEX_FILE)?, &dir.join(INDEX_FILE)).await?;
    let key = block_key(&id, META_FILE)?;
    bucket
        .put(&key, PutPayload::from(meta.to_json()))
        .await
        .map_err(|e| Error::store("put", &key, e))?;
    Ok(())
}

/// Downloads block `id` into `dest/<id>` (written under a temporary name, renamed when
/// complete); returns the directory.
pub async fn download_block(bucket: &Bucket, id: &Ulid, dest: &Path) -> Result<std::path::PathBuf> {
    let final_dir = dest.join(id.to_string());
    let tmp = dest.join(format!("{id}.download.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    for (key, _) in block_objects(bucket, id).await? {
        let rel = key
            .as_ref()
            .strip_prefix(&format!("{id}/"))
            .unwrap_or_default()
            .to_string();
        // Validates the relative path (no escaping the block directory).
        block_key(id, &rel)?;
        let path = tmp.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io("create directory", parent, e))?;
        }
        let data = get(bucket, &key).await?;
        std::fs::write(&path, &data).map_err(|e| Error::io("write", &path, e))?;
    }
    let _ = std::fs::remove_dir_all(&final_dir);
    std::fs::rename(&tmp, &final_dir).map_err(|e| Error::io("rename", &tmp, e))?;
    Ok(final_dir)
}

/// Deletes block `id`: `meta.json` first (the block disappears from listings at once), then
/// every other object, the deletion mark last.
pub async fn delete_block(bucket: &Bucket, id: &Ulid) -> Result<()> {
    let meta = block_key(id, META_FILE)?;
    match bucket.delete(&meta).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(Error::store("delete", &meta, e)),
    }
    let mark = block_key(id, DELETION_MARK_FILE)?;
    for (key, _) in block_objects(bucket, id).await? {
        if key == mark {
            continue;
        }
        match bucket.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(Error::store("delete", &key, e)),
        }
    }
    match bucket.delete(&mark).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(Error::store("delete", &mark, e)),
    }
}

/// Thanos's `deletion-mark.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    #[serde(with = "ulid_string")]
    pub id: Ulid,
    /// Unix seconds when the block was marked.
    pub deletion_time: i64,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// Thanos's `no-compact-mark.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    #[serde(with = "ulid_string")]
    pub id: Ulid,
    pub version: u32,
    /// Unix seconds.
    pub no_compact_time: i64,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

mod ulid_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(u: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&u.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        Ulid::from_string(&s).map_err(serde::de::Error::custom)
    }
}

/// Reads a JSON mark of block `id`; `Ok(None)` when absent.
pub async fn read_mark<T: serde::de::DeserializeOwned>(
    bucket: &Bucket,
    id: &Ulid,
    file: &str,
) -> Result<Option<T>> {
    let key = block_key(id, file)?;
    let b = match bucket.get(&key).await {
        Ok(r) => r.bytes().await.map_err(|e| Error::store("get", &key, e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::store("get", &key, e)),
    };
    serde_json::from_slice(&b)
        .map(Some)
        .map_err(|e| Error::Corrupt {
            key: key.to_string(),
            detail: e.to_string(),
        })
}

/// Writes a JSON mark of block `id`.
pub async fn write_mark<T: Serialize>(
    bucket: &Bucket,
    id: &Ulid,
    file: &str,
    mark: &T,
) -> Result<()> {
    let key = block_key(id, file)?;
    let body = serde_json::to_vec_pretty(mark).map_err(|e| Error::Invalid {
        what: "mark",
        value: file.to_string(),
        detail: e.to_string(),
    })?;
    bucket
        .put(&key, PutPayload::from(body))
        .await
        .map_err(|e| Error::store("put", &key, e))?;
    Ok(())
}

/// A bucket over a local directory (created if missing): the `FILESYSTEM` object store type.
pub fn local_bucket(dir: &Path) -> Result<Bucket> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
        .map_err(|e| Error::store("open", dir.display(), e))?;
    Ok(crate::retry::RetryingStore::wrap(Arc::new(fs)))
}

/// Downloads block `meta.ulid` like [`download_block`], then checks the download against the
/// meta's `thanos.files` (when listed): every file present with its size, so a block being
/// deleted (or otherwise incomplete) is an error rather than a silently truncated input.
pub async fn download_block_checked(
    bucket: &Bucket,
    meta: &BlockMeta,
    dest: &Path,
) -> Result<std::path::PathBuf> {
    let dir = download_block(bucket, &meta.ulid, dest).await?;
    let files = meta
        .thanos
        .as_ref()
        .map(|t| t.files.as_slice())
        .unwrap_or(&[]);
    for f in files {
        if f.rel_path == META_FILE {
            continue;
        }
        let key = block_key(&meta.ulid, &f.rel_path)?;
        let p = dir.join(&f.rel_path);
        let got = std::fs::metadata(&p).map(|m| m.len() as i64).ok();
        if got != Some(f.size_bytes) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Error::Corrupt {
                key: key.to_string(),
                detail: match got {
                    None => "listed in meta.json but missing from the bucket".into(),
                    Some(n) => format!("{n} bytes, meta.json says {}", f.size_bytes),
                },
            });
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn ids_and_keys_are_validated() {
        let id = Ulid::new();
        assert_eq!(parse_block_id(&id.to_string()).unwrap(), id);
        assert_eq!(parse_block_id(&format!("{id}/")).unwrap(), id);
        for bad in ["..", "../x", "/abs", "a/b", "nope", ""] {
            assert!(parse_block_id(bad).is_err(), "{bad}");
        }
        assert!(block_key(&id, "chunks/000001").is_ok());
        for bad in ["../x", "/etc/passwd", "chunks/../../x", "", "a//b"] {
            assert!(block_key(&id, bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn upload_list_download_delete() {
        let bucket: Bucket = Arc::new(InMemory::new());
        let tmp = tempfile::tempdir().unwrap();
        let id = Ulid::new();
        let dir = tmp.path().join(id.to_string());
        std::fs::create_dir_all(dir.join("chunks")).unwrap();
        std::fs::write(dir.join("chunks/000001"), b"chunkdata").unwrap();
        std::fs::write(dir.join("index"), b"indexdata").unwrap();
        std::fs::write(dir.join("tombstones"), b"t").unwrap();
        let meta = BlockMeta::new(id, 0, 1000);
        // A partial upload (no meta.json yet) is listed as partial.
        bucket
            .put(
                &block_key(&id, "index").unwrap(),
                PutPayload::from_static(b"x"),
            )
            .await
            .unwrap();
        let l = list_metas(&bucket).await.unwrap();
        assert_eq!(l.partial, vec![id]);
        upload_block(&bucket, &dir, &meta).await.unwrap();
        let l = list_metas(&bucket).await.unwrap();
        assert_eq!(l.blocks.len(), 1);
        assert_eq!(l.blocks[0], meta);
        let objs: Vec<String> = block_objects(&bucket, &id)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(
            objs,
            vec![
                format!("{id}/chunks/000001"),
                format!("{id}/index"),
                format!("{id}/meta.json"),
                format!("{id}/tombstones")
            ]
        );
        let out = tempfile::tempdir().unwrap();
        let got = download_block(&bucket, &id, out.path()).await.unwrap();
        assert_eq!(
            std::fs::read(got.join("chunks/000001")).unwrap(),
            b"chunkdata"
        );
        assert_eq!(std::fs::read(got.join("index")).unwrap(), b"indexdata");

        let mark = DeletionMark {
            id,
            deletion_time: 1_700_000_000,
            version: 1,
            details: String::new(),
        };
        write_mark(&bucket, &id, DELETION_MARK_FILE, &mark)
            .await
            .unwrap();
        let back: Option<DeletionMark> = read_mark(&bucket, &id, DELETION_MARK_FILE).await.unwrap();
        assert_eq!(back, Some(mark));
        delete_block(&bucket, &id).await.unwrap();
        assert!(block_objects(&bucket, &id).await.unwrap().is_empty());
        assert!(list_metas(&bucket).await.unwrap().blocks.is_empty());
    }

    #[tokio::test]
    async fn deleted_block_on_a_filesystem_bucket_is_not_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = local_bucket(&tmp.path().join("bucket")).unwrap();
        let id = Ulid::new();
        let dir = tmp.path().join(id.to_string());
        std::fs::create_dir_all(dir.join("chunks")).unwrap();
        std::fs::write(dir.join("chunks/000001"), b"c").unwrap();
        std::fs::write(dir.join("index"), b"i").unwrap();
        upload_block(&bucket, &dir, &BlockMeta::new(id, 0, 1))
            .await
            .unwrap();
        delete_block(&bucket, &id).await.unwrap();
        // The empty directories stay on disk, but there is no block, partial or not.
        assert!(tmp.path().join("bucket").join(id.to_string()).exists());
        let l = list_metas(&bucket).await.unwrap();
        assert!(l.blocks.is_empty() && l.partial.is_empty(), "{l:?}");
    }

    #[tokio::test]
    async fn corrupt_meta_is_reported_not_fatal() {
        let bucket: Bucket = Arc::new(InMemory::new());
        let id = Ulid::new();
        bucket
            .put(
                &block_key(&id, META_FILE).unwrap(),
                PutPayload::from_static(b"{not json"),
            )
            .await
            .unwrap();
        let l = list_metas(&bucket).await.unwrap();
        assert_eq!(l.corrupt.len(), 1);
        assert!(l.corrupt[0].1.contains("meta.json"), "{:?}", l.corrupt);
    }
}
