//! The database: a data directory holding the head (`wal/`, `chunks_head/`) and blocks
//! (`<ULID>/`), guarded by a `lock` file so two processes never open it at once. It appends
//! through the head, answers queries by merging the head and every block, and in the
//! background persists the head's oldest range as a block, compacts blocks and applies
//! retention. Blocks that fail to open are reported and left untouched on disk.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::block::Block;
use crate::compact::{self, PlanBlock};
use crate::error::{Error, Result};
use crate::head::{Head, HeadAppender, HeadOptions, HeadQuerier};
use crate::storage::merge::MergeQuerier;
use crate::storage::{Querier, Queryable};

/// Database configuration; defaults match Prometheus's.
#[derive(Clone, Debug)]
pub struct DbOptions {
    /// Block (and head chunk) range in ms. Default 2h.
    pub block_range: i64,
    /// Time retention in ms (`--storage.tsdb.retention.time`). Default 15d. 0 disables.
    pub retention_time: i64,
    /// Size retention in bytes (`--storage.tsdb.retention.size`). 0 disables.
    pub retention_size: u64,
    /// Out-of-order window in ms. Default 0.
    pub ooo_window: i64,
    /// WAL segment size in bytes.
    pub wal_segment_size: usize,
    /// How often the background task looks for work. `None` disables the background task.
    pub compaction_interval: Option<Duration>,
    /// Open without the lock, without writing anything (the head is rebuilt from the WAL in
    /// memory), and without background work: for `tsdb dump`/`analyze` next to a running server.
    pub read_only: bool,
    /// Largest block compaction may produce, in ms (`--storage.tsdb.max-block-duration`).
    /// 0: Prometheus's default (10% of the time retention, at most 31 days). Equal to
    /// `block_range`: no compaction of persisted blocks (as Thanos's sidecar requires).
    pub max_block_range: i64,
    /// Retention deletes only blocks for which this returns true (e.g. "already uploaded to
    /// object storage"); others stay until a later pass. `None`: every block may go.
    pub retention_guard: Option<RetentionGuard>,
}

/// A predicate on block IDs that local retention must satisfy before deleting a block.
#[derive(Clone)]
pub struct RetentionGuard(pub Arc<dyn Fn(&ulid::Ulid) -> bool + Send + Sync>);

impl RetentionGuard {
    pub fn new(f: impl Fn(&ulid::Ulid) -> bool + Send + Sync + 'static) -> Self {
        RetentionGuard(Arc::new(f))
    }
    pub fn allows(&self, id: &ulid::Ulid) -> bool {
        (self.0)(id)
    }
}

impl std::fmt::Debug for RetentionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetentionGuard")
    }
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            block_range: crate::head::DEFAULT_BLOCK_RANGE,
            retention_time: 15 * 24 * 3_600_000,
            retention_size: 0,
            ooo_window: 0,
            wal_segment_size: crate::wal::DEFAULT_SEGMENT_SIZE,
            compaction_interval: Some(Duration::from_secs(60)),
            read_only: false,
            max_block_range: 0,
            retention_guard: None,
        }
    }
}

/// A block directory that could not be opened.
#[derive(Clone, Debug)]
pub struct BrokenBlock {
    pub dir: PathBuf,
    pub error: String,
}

struct Stopper {
    stop: Mutex<bool>,
    cv: Condvar,
}

/// An open data directory.
pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    head: Arc<Head>,
    blocks: RwLock<Vec<Arc<Block>>>,
    broken: Mutex<Vec<BrokenBlock>>,
    /// The open `lock` file (flocked); dropped by `close`.
    lock: Mutex<Option<std::fs::File>>,
    compact_mu: Mutex<()>,
    stopper: Arc<Stopper>,
    bg: Mutex<Option<std::thread::JoinHandle<()>>>,
    closed: AtomicBool,
}

/// Takes the exclusive `flock(2)` on `<dir>/lock` that keeps a second process off a data
/// directory; held while the returned file is open. Fails at once with [`Error::Locked`].
pub fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(Error::Locked {
            path: dir.to_path_buf(),
            lock: path,
        });
    }
    Ok(f)
}

/// Is `name` a block directory name (a ULID)?
pub fn is_block_dir_name(name: &str) -> bool {
    name.len() == 26 && ulid::Ulid::from_string(name).is_ok()
}

impl Db {
    /// Opens (creating if needed) the data directory `dir`.
    pub fn open(dir: impl AsRef<Path>, opts: DbOptions) -> Result<Arc<Db>> {
        let dir = dir.as_ref().to_path_buf();
        let hopts = HeadOptions {
            chunk_range: opts.block_range,
            ooo_window: opts.ooo_window,
            wal_segment_size: opts.wal_segment_size,
            ..Default::default()
        };
        // Blocks first: the head replays only what they do not hold.
        let lock = if opts.read_only {
            if !dir.is_dir() {
                return Err(Error::io(
                    "open",
                    &dir,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no such data directory"),
                ));
            }
            None
        } else {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
            let lock = lock_dir(&dir)?;
            cleanup_tmp_dirs(&dir);
            Some(lock)
        };
        let (blocks, broken) = load_blocks(&dir)?;
        let min_valid = blocks
            .iter()
            .map(|b| b.max_time())
            .max()
            .unwrap_or(i64::MIN);
        let head = if opts.read_only {
            Head::open_read_only(&dir, hopts, min_valid)?
        } else {
            Head::open_after(&dir, hopts, min_valid)?
        };
        let db = Arc::new(Db {
            dir,
            opts,
            head,
            blocks: RwLock::new(blocks),
            broken: Mutex::new(broken),
            lock: Mutex::new(lock),
            compact_mu: Mutex::new(()),
            stopper: Arc::new(Stopper {
                stop: Mutex::new(false),
                cv: Condvar::new(),
            }),
            bg: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        if let (Some(every), false) = (db.opts.compaction_interval, db.opts.read_only) {
            let weak = Arc::downgrade(&db);
            let stopper = db.stopper.clone();
            let h = std::thread::Builder::new()
                .name("tsdb-compact".into())
                .spawn(move || loop {
                    {
                        let mut stop = stopper.stop.lock();
                        if !*stop {
                            stopper.cv.wait_for(&mut stop, every);
                        }
                        if *stop {
                            return;
                        }
                    }
                    let Some(db) = weak.upgrade() else { return };
                    if let Err(e) = db.compact() {
                        tracing::error!(error = %e, "compaction failed");
                    }
                })
                .map_err(|e| Error::io("spawn", "tsdb-compact", e))?;
            *db.bg.lock() = Some(h);
        }
        Ok(db)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn head(&self) -> &Arc<Head> {
        &self.head
    }
    pub fn options(&self) -> &DbOptions {
        &self.opts
    }

    /// The open blocks, oldest first.
    pub fn blocks(&self) -> Vec<Arc<Block>> {
        self.blocks.read().clone()
    }

    /// Block directories that failed to open, and why.
    pub fn broken_blocks(&self) -> Vec<BrokenBlock> {
        self.broken.lock().clone()
    }

    /// A new appender on the head.
    pub fn appender(&self) -> Result<HeadAppender> {
        if self.closed.load(Ordering::Acquire) || self.opts.read_only {
            return Err(Error::Closed);
        }
        Ok(self.head.appender())
    }

    /// Persists the head's oldest block range while the head spans more than 1.5 block ranges,
    /// then runs level compaction and retention. Safe to call at any time.
    pub fn compact(&self) -> Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        let _g = self.compact_mu.lock();
        if self.closed.load(Ordering::Acquire) {
            // The lock is released: another process may own the directory now.
            return Err(Error::Closed);
        }
        self.compact_head()?;
        self.compact_blocks()?;
        self.apply_retention()?;
        Ok(())
    }

    fn compact_head(&self) -> Result<()> {
        let range = self.opts.block_range;
        loop {
            let (hmin, hmax) = (self.head.min_time(), self.head.max_time());
            if hmin == i64::MAX || hmax.saturating_sub(hmin) <= range / 2 * 3 {
                return Ok(());
            }
            let mint = hmin;
            let maxt = crate::chunkenc::range_for_timestamp(mint, range);
            // The appenders may no longer write before maxt.
            self.head.set_min_valid_time(maxt);
            if let Some(meta) = compact::write_head_block(&self.dir, &self.head, mint, maxt)? {
                let b = Block::open(&self.dir.join(meta.ulid.to_string()))?;
                tracing::info!(ulid = %meta.ulid, mint, maxt, "persisted head block");
                let mut blocks = self.blocks.write();
                blocks.push(b);
                blocks.sort_by_key(|b| b.min_time());
            }
            self.head.truncate(maxt)?;
        }
    }

    fn compact_blocks(&self) -> Result<()> {
        let mut ranges = compact::default_ranges(self.opts.block_range, self.opts.retention_time);
        if self.opts.max_block_range > 0 {
            ranges.retain(|&r| r <= self.opts.max_block_range);
            if ranges.is_empty() {
                ranges.push(self.opts.block_range);
            }
        }
        loop {
            let blocks = self.blocks();
            let metas: Vec<PlanBlock> = blocks.iter().map(|b| PlanBlock::from(b.meta())).collect();
            let plan = compact::plan(&metas, &ranges);
            if plan.is_empty() {
                return Ok(());
            }
            let inputs: Vec<Arc<Block>> = blocks
                .iter()
                .filter(|b| plan.contains(&b.ulid()))
                .cloned()
                .collect();
            let out = compact::compact_blocks(&self.dir, &inputs)?;
            let mut new_blocks: Vec<Arc<Block>> = blocks
                .iter()
                .filter(|b| !plan.contains(&b.ulid()))
                .cloned()
                .collect();
            if let Some(meta) = &out {
                new_blocks.push(Block::open(&self.dir.join(meta.ulid.to_string()))?);
                tracing::info!(ulid = %meta.ulid, sources = plan.len(), "compacted blocks");
            }
            new_blocks.sort_by_key(|b| b.min_time());
            *self.blocks.write() = new_blocks;
            for b in &inputs {
                delete_block_dir(b.dir())?;
            }
            if out.is_none() && inputs.is_empty() {
                return Ok(());
            }
        }
    }

    /// Deletes blocks beyond the time and size retention.
    pub fn apply_retention(&self) -> Result<()> {
        let mut blocks = self.blocks();
        blocks.sort_by_key(|b| std::cmp::Reverse(b.max_time()));
        let metas: Vec<PlanBlock> = blocks.iter().map(|b| PlanBlock::from(b.meta())).collect();
        let mut del = compact::beyond_time_retention(&metas, self.opts.retention_time);
        let sized: Vec<(ulid::Ulid, u64)> = blocks.iter().map(|b| (b.ulid(), b.size())).collect();
        del.extend(compact::beyond_size_retention(
            &sized,
            self.head_size(),
            self.opts.retention_size,
        ));
        if let Some(guard) = &self.opts.retention_guard {
            del.retain(|id| {
                let ok = guard.allows(id);
                if !ok {
                    tracing::debug!(ulid = %id, "block beyond retention kept: not yet allowed (shipped)");
                }
                ok
            });
        }
        if del.is_empty() {
            return Ok(());
        }
        let keep: Vec<Arc<Block>> = self
            .blocks()
            .into_iter()
            .filter(|b| !del.contains(&b.ulid()))
            .collect();
        *self.blocks.write() = keep;
        for b in blocks.iter().filter(|b| del.contains(&b.ulid())) {
            tracing::info!(ulid = %b.ulid(), "deleting block beyond retention");
            delete_block_dir(b.dir())?;
        }
        Ok(())
    }

    /// Bytes used by the WAL and head chunk files.
    pub fn head_size(&self) -> u64 {
        crate::block::dir_size(&self.dir.join("wal"))
            + crate::block::dir_size(&self.dir.join("chunks_head"))
    }

    /// Stops background work, flushes and closes the WAL, and releases the lock.
    pub fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *self.stopper.stop.lock() = true;
        self.stopper.cv.notify_all();
        if let Some(h) = self.bg.lock().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
        let _g = self.compact_mu.lock();
        if let Some(w) = &self.head.wal {
            w.lock().close()?;
        }
        if let Some(c) = &self.head.chunk_disk {
            c.close()?;
        }
        // Release the lock: another process may open the directory now.
        drop(self.lock.lock().take());
        Ok(())
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.dir)
            .field("blocks", &self.blocks.read().len())
            .field("head_series", &self.head.num_series())
            .finish_non_exhaustive()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl Queryable for Db {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>> {
        let mut qs: Vec<Box<dyn Querier>> = Vec::new();
        for b in self.blocks.read().iter() {
            if b.overlaps(mint, maxt) {
                qs.push(Box::new(b.querier(mint, maxt)));
            }
        }
        let hmin = self.head.min_time();
        if hmin == i64::MAX || (maxt >= hmin && mint <= self.head.max_time()) {
            qs.push(Box::new(HeadQuerier::new(self.head.clone(), mint, maxt)));
        }
        Ok(Box::new(MergeQuerier::new(qs)))
    }
}

impl Queryable for Arc<Head> {
    fn querier(&self, mint: i64, maxt: i64) -> Result<Box<dyn Querier>> {
        Ok(Box::new(HeadQuerier::new(self.clone(), mint, maxt)))
    }
}

fn cleanup_tmp_dirs(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp-for-creation") || name.ends_with(".tmp-for-deletion") {
            tracing::info!(dir = %e.path().display(), "removing leftover temporary block");
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Opens every block in `dir`; broken ones are logged and returned separately.
pub fn load_blocks(dir: &Path) -> Result<(Vec<Arc<Block>>, Vec<BrokenBlock>)> {
    let mut blocks = Vec::new();
    let mut broken = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, e))?;
    let mut names: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter(|e| is_block_dir_name(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        match Block::open(&p) {
            Ok(b) => blocks.push(b),
            Err(e) => {
                tracing::error!(block = %p.display(), error = %e, "cannot open block; leaving it untouched");
                broken.push(BrokenBlock {
                    dir: p,
                    error: e.to_string(),
                });
            }
        }
    }
    blocks.sort_by_key(|b: &Arc<Block>| b.min_time());
    Ok((blocks, broken))
}

/// Deletes a block directory atomically: rename aside, then remove.
fn delete_block_dir(dir: &Path) -> Result<()> {
    let Some(name) = dir.file_name() else {
        return Ok(());
    };
    let aside = dir.with_file_name(format!("{}.tmp-for-deletion", name.to_string_lossy()));
    std::fs::rename(dir, &aside).map_err(|e| Error::io("rename", dir, e))?;
    std::fs::remove_dir_all(&aside).map_err(|e| Error::io("remove", &aside, e))
}
