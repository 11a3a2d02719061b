//! Moving blobs to another store while the node keeps serving (online `migrate-blobs`).
//!
//! Every blob namespace of a node (its own blobs, and one per peer it holds blobs for) is
//! served through a [`LayeredBlobStore`]. Normally it has one layer. When a migration
//! starts, the target is recorded durably in `meta` first, then every namespace switches to
//! two layers: writes go to the target, reads try the target then the source, deletes go
//! to both. A background worker then copies every blob of the source to the target
//! (checking BLAKE3 on the source read and again on a read back from the target), saving
//! its position in `meta` after each durable batch, so that a node killed mid-way resumes
//! where it was. Only when every blob is verified does it rewrite `blob_store` in the
//! configuration file, then flip `meta/blob_place` and drop the source layer. The source
//! copies stay until the operator removes them.

use super::blob::{BlobError, BlobStore, Verified, get_verified};
use super::{BLOB_PLACE, BlobPlace, FileBlobStore, SledBlobStore, StoreError};
use archipel_proto::manifest::BlobId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// `meta` key: the kind (`s3`, `sled`, `files`) a migration is moving blobs to.
pub(super) const MIGRATION_TO: &[u8] = b"migration/to";
/// `meta` key: the configuration file whose `blob_store` is switched at the end.
const MIGRATION_CONFIG: &[u8] = b"migration/config";
/// `meta` key: namespace ‖ 0 ‖ last blob ID known durable and verified in the target.
const MIGRATION_CURSOR: &[u8] = b"migration/cursor";
/// `meta` key: at most this many blobs per second (u32; absent: no limit).
const MIGRATION_RATE: &[u8] = b"migration/rate";
/// `meta` key: copied, already there, bytes (3 × u64) so far.
const MIGRATION_COUNTS: &[u8] = b"migration/counts";

/// The cursor is saved (after a flush of the target) at least this often.
const SAVE_EVERY_BLOBS: u64 = 64;
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// At most this many failed blobs are kept for the status (the count is exact).
const FAILED_KEPT: usize = 50;

/// A blob namespace: the node's own blobs, or those held for one peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    Own,
    Held(String),
}

impl Namespace {
    /// A name that sorts the namespaces in migration order ("blobs" before "held/...").
    pub fn name(&self) -> String {
        match self {
            Namespace::Own => "blobs".to_string(),
            Namespace::Held(origin) => format!("held/{origin}"),
        }
    }
}

impl BlobPlace {
    /// The store of one namespace at this place (files: `<dir>/held/<origin>` for a peer's).
    pub fn open_namespace(
        &self,
        db: &sled::Db,
        ns: &Namespace,
    ) -> Result<Arc<dyn BlobStore>, BlobError> {
        Ok(match (self, ns) {
            (BlobPlace::Files(dir), Namespace::Own) => Arc::new(FileBlobStore::open(dir, db)?),
            (BlobPlace::Files(dir), Namespace::Held(o)) => Arc::new(FileBlobStore::open_named(
                &dir.join("held").join(o),
                db,
                &format!("held/{o}/packed"),
            )?),
            (BlobPlace::Sled, Namespace::Own) => Arc::new(SledBlobStore::open(db)?),
            (BlobPlace::Sled, Namespace::Held(o)) => {
                Arc::new(SledBlobStore::open_named(db, &format!("held/{o}/blobs"))?)
            }
            (BlobPlace::S3(conn), ns) => Arc::new(conn.namespace(&ns.name())),
            (BlobPlace::Layered(p), ns) => p.open(ns)?,
        })
    }
}

#[derive(Debug)]
struct Layers {
    /// Where writes go, and where reads look first.
    primary: Arc<dyn BlobStore>,
    /// The source of a migration under way: read when the primary lacks a blob.
    fallback: Option<Arc<dyn BlobStore>>,
}

/// One namespace's blobs, in one store or, during a migration, across two.
#[derive(Debug)]
pub struct LayeredBlobStore {
    layers: RwLock<Layers>,
    /// The blobs being copied by the migration or deleted: a copy and a delete of the same
    /// blob take turns. Otherwise a blob deleted while the worker had read it from the
    /// source (an abandoned ingest's) would be written to the target after the delete, and
    /// stay there, an orphan. Other blobs never wait.
    busy: Mutex<std::collections::HashSet<BlobId>>,
    idle: std::sync::Condvar,
}

impl LayeredBlobStore {
    fn new(layers: Layers) -> Self {
        LayeredBlobStore {
            layers: RwLock::new(layers),
            busy: Mutex::new(std::collections::HashSet::new()),
            idle: std::sync::Condvar::new(),
        }
    }

    /// Runs `work` on `id` once no other copy or delete of `id` runs.
    fn one_at_a_time<T>(&self, id: &BlobId, work: impl FnOnce() -> T) -> T {
        let mut busy = lock(&self.busy);
        while busy.contains(id) {
            busy = self.idle.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        busy.insert(*id);
        drop(busy);
        let out = work();
        lock(&self.busy).remove(id);
        self.idle.notify_all();
        out
    }

    fn layers(&self) -> std::sync::RwLockReadGuard<'_, Layers> {
        // A panic while holding the lock cannot leave the layers half-changed (each change
        // is one assignment), so a poisoned lock is still right to use.
        self.layers.read().unwrap_or_else(|e| e.into_inner())
    }
    fn layers_mut(&self) -> std::sync::RwLockWriteGuard<'_, Layers> {
        self.layers.write().unwrap_or_else(|e| e.into_inner())
    }
    /// The migration's step for one blob, with deletes held off until it is done.
    fn copy_blob(
        &self,
        from: &dyn BlobStore,
        to: &dyn BlobStore,
        id: &BlobId,
    ) -> Result<Copied, BlobError> {
        self.one_at_a_time(id, || copy_one(from, to, id))
    }
    /// (source, target) while migrating.
    fn pair(&self) -> Option<(Arc<dyn BlobStore>, Arc<dyn BlobStore>)> {
        let l = self.layers();
        l.fallback.clone().map(|f| (f, l.primary.clone()))
    }
}

impl BlobStore for LayeredBlobStore {
    fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
        // The read guard is held during the write: a migration's switch (write guard) waits
        // for writes in flight, so none lands in the source once the worker lists it.
        let l = self.layers();
        l.primary.put(id, bytes)
    }
    fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        let l = self.layers();
        match l.primary.get(id)? {
            Some(b) => Ok(Some(b)),
            None => match &l.fallback {
                Some(f) => f.get(id),
                None => Ok(None),
            },
        }
    }
    fn get_range(
        &self,
        id: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        let l = self.layers();
        match l.primary.get_range(id, range.clone())? {
            Some(b) => Ok(Some(b)),
            None => match &l.fallback {
                Some(f) => f.get_range(id, range),
                None => Ok(None),
            },
        }
    }
    fn contains(&self, id: &BlobId) -> Result<bool, BlobError> {
        let l = self.layers();
        Ok(l.primary.contains(id)?
            || match &l.fallback {
                Some(f) => f.contains(id)?,
                None => false,
            })
    }
    fn size(&self, id: &BlobId) -> Result<Option<u64>, BlobError> {
        let l = self.layers();
        match l.primary.size(id)? {
            Some(n) => Ok(Some(n)),
            None => match &l.fallback {
                Some(f) => f.size(id),
                None => Ok(None),
            },
        }
    }
    fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        self.one_at_a_time(id, || {
            let l = self.layers();
            l.primary.delete(id)?;
            if let Some(f) = &l.fallback {
                f.delete(id)?;
            }
            Ok(())
        })
    }
    fn list(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<BlobId, BlobError>> + '_> {
        let (primary, fallback) = {
            let l = self.layers();
            (l.primary.clone(), l.fallback.clone())
        };
        let Some(fallback) = fallback else {
            return Box::new(OwnedList::new(primary, prefix));
        };
        // Both layers in ascending order: merge them, each ID once.
        Box::new(Merge {
            a: OwnedList::new(primary, prefix).peekable(),
            b: OwnedList::new(fallback, prefix).peekable(),
        })
    }
    fn flush(&self) -> Result<(), BlobError> {
        let l = self.layers();
        l.primary.flush()?;
        if let Some(f) = &l.fallback {
            f.flush()?;
        }
        Ok(())
    }
    fn flush_blobs(&self, ids: &[BlobId]) -> Result<(), BlobError> {
        // New blobs only ever go to the primary.
        self.layers().primary.flush_blobs(ids)
    }
    fn outside_log(&self, len: usize) -> bool {
        self.layers().primary.outside_log(len)
    }
    fn on_local_disk(&self) -> bool {
        self.layers().primary.on_local_disk()
    }
    fn read_ahead(&self) -> usize {
        self.layers().primary.read_ahead()
    }
    fn reclaim(&self) -> Result<u64, BlobError> {
        // Not during a migration: the source is about to be left behind anyway. The layers
        // are not held during the pass (a migration may start meanwhile: the repack stays
        // safe for the readers of the source).
        let primary = {
            let l = self.layers();
            if l.fallback.is_some() {
                return Ok(0);
            }
            l.primary.clone()
        };
        primary.reclaim()
    }
    fn get_many(&self, ids: &[BlobId]) -> Vec<Result<Option<Vec<u8>>, BlobError>> {
        let (primary, fallback) = {
            let l = self.layers();
            (l.primary.clone(), l.fallback.clone())
        };
        let mut got = primary.get_many(ids);
        if let Some(f) = fallback {
            for (slot, id) in got.iter_mut().zip(ids) {
                if matches!(slot, Ok(None)) {
                    *slot = f.get(id);
                }
            }
        }
        got
    }
}

/// A listing that owns its store (the layers may change while it runs).
struct OwnedList {
    items: std::vec::IntoIter<Result<BlobId, BlobError>>,
    store: Arc<dyn BlobStore>,
    prefix: Vec<u8>,
    after: Option<BlobId>,
    done: bool,
}

/// IDs fetched per batch by [`OwnedList`].
const LIST_CHUNK: usize = 1000;

impl OwnedList {
    fn new(store: Arc<dyn BlobStore>, prefix: &[u8]) -> Self {
        OwnedList {
            items: Vec::new().into_iter(),
            store,
            prefix: prefix.to_vec(),
            after: None,
            done: false,
        }
    }
}

impl Iterator for OwnedList {
    type Item = Result<BlobId, BlobError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(x) = self.items.next() {
            return Some(x);
        }
        if self.done {
            return None;
        }
        // A batch at a time, from where the previous one stopped: memory stays bounded.
        match self
            .store
            .list_after(&self.prefix, self.after.as_ref(), LIST_CHUNK)
        {
            Ok(batch) => {
                if batch.len() < LIST_CHUNK {
                    self.done = true;
                }
                self.after = batch.last().copied();
                self.items = batch.into_iter().map(Ok).collect::<Vec<_>>().into_iter();
                self.items.next()
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

struct Merge<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = Result<BlobId, BlobError>>,
    B: Iterator<Item = Result<BlobId, BlobError>>,
{
    type Item = Result<BlobId, BlobError>;
    fn next(&mut self) -> Option<Self::Item> {
        let (take_a, same) = match (self.a.peek(), self.b.peek()) {
            (None, None) => return None,
            (Some(_), None) | (Some(Err(_)), _) => (true, false),
            (None, Some(_)) | (_, Some(Err(_))) => (false, false),
            (Some(Ok(x)), Some(Ok(y))) => (x <= y, x == y),
        };
        if same {
            // In both layers: once.
            self.b.next();
        }
        if take_a { self.a.next() } else { self.b.next() }
    }
}

/// What a migration is doing, for `migrate-blobs` and the status RPC.
#[derive(Debug, Clone, Default)]
pub struct MigrationStatus {
    /// `idle` (no migration), `copying`, `failed` (some blobs could not be moved; the node
    /// keeps reading both stores; run the command again to retry), `done`.
    pub state: String,
    pub from: String,
    pub to: String,
    pub copied: u64,
    pub already: u64,
    pub bytes: u64,
    pub failed: Vec<String>,
    pub failed_count: u64,
    /// The namespace being copied.
    pub namespace: String,
    /// Why the migration stopped, if it did on an error.
    pub error: String,
}

#[derive(Debug)]
struct State {
    current: BlobPlace,
    target: Option<BlobPlace>,
    config_file: Option<PathBuf>,
}

/// Where a node's blobs are and, during a migration, where they are going. One per node,
/// shared by the store of its own blobs and by the holding of its peers' blobs.
#[derive(Debug)]
pub struct Placement {
    db: sled::Db,
    meta: sled::Tree,
    state: RwLock<State>,
    stores: Mutex<HashMap<Namespace, Arc<LayeredBlobStore>>>,
    status: Mutex<MigrationStatus>,
    /// Held by the worker while it runs (one at a time).
    worker: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_counts(v: Option<sled::IVec>) -> (u64, u64, u64) {
    let n = |i: usize| {
        v.as_deref()
            .and_then(|b| b.get(i * 8..i * 8 + 8))
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    };
    (n(0), n(1), n(2))
}

impl Placement {
    /// `current`: where the blobs are (`meta/blob_place`); `target`: where a migration
    /// recorded in `meta` is moving them, if one is.
    pub(super) fn new(
        db: &sled::Db,
        meta: &sled::Tree,
        current: BlobPlace,
        target: Option<BlobPlace>,
    ) -> Result<Arc<Self>, StoreError> {
        let config_file = meta
            .get(MIGRATION_CONFIG)?
            .map(|v| PathBuf::from(String::from_utf8_lossy(&v).into_owned()));
        let (copied, already, bytes) = read_counts(meta.get(MIGRATION_COUNTS)?);
        let status = MigrationStatus {
            state: if target.is_some() { "copying" } else { "idle" }.to_string(),
            from: current.kind().to_string(),
            to: target
                .as_ref()
                .map(|t| t.kind().to_string())
                .unwrap_or_default(),
            copied,
            already,
            bytes,
            ..Default::default()
        };
        Ok(Arc::new(Placement {
            db: db.clone(),
            meta: meta.clone(),
            state: RwLock::new(State {
                current,
                target,
                config_file,
            }),
            stores: Mutex::new(HashMap::new()),
            status: Mutex::new(status),
            worker: Mutex::new(()),
        }))
    }

    fn state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The kind of store the blobs are in (the source, during a migration).
    pub fn kind(&self) -> &'static str {
        self.state().current.kind()
    }

    /// The kind a migration under way is moving them to.
    pub fn migrating_to(&self) -> Option<&'static str> {
        self.state().target.as_ref().map(|t| t.kind())
    }

    /// The (layered) store of one namespace; the same one for every caller.
    pub fn open(&self, ns: &Namespace) -> Result<Arc<dyn BlobStore>, BlobError> {
        let state = self.state();
        let mut stores = lock(&self.stores);
        if let Some(s) = stores.get(ns) {
            return Ok(s.clone());
        }
        let layers = match &state.target {
            None => Layers {
                primary: state.current.open_namespace(&self.db, ns)?,
                fallback: None,
            },
            Some(t) => Layers {
                primary: t.open_namespace(&self.db, ns)?,
                fallback: Some(state.current.open_namespace(&self.db, ns)?),
            },
        };
        let s = Arc::new(LayeredBlobStore::new(layers));
        stores.insert(ns.clone(), s.clone());
        Ok(s)
    }

    pub fn status(&self) -> MigrationStatus {
        lock(&self.status).clone()
    }

    /// Starts moving the blobs to `target`: records it durably, then sends every new write
    /// there. `config_file` gets `blob_store` rewritten at the end. Starting again the
    /// migration under way (to the same kind) is allowed: it resets a failed one.
    pub fn begin(
        &self,
        target: BlobPlace,
        config_file: &Path,
        max_blobs_per_second: u32,
    ) -> Result<(), StoreError> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = &state.target {
            if t.kind() == target.kind() {
                self.set_rate(max_blobs_per_second)?;
                let mut s = lock(&self.status);
                if s.state == "failed" {
                    // A new pass over everything: the failed blobs may have been repaired.
                    self.meta.remove(MIGRATION_CURSOR)?;
                    s.state = "copying".into();
                    s.failed.clear();
                    s.failed_count = 0;
                    s.error.clear();
                }
                return Ok(());
            }
            return Err(StoreError::Backend(format!(
                "a migration of the blobs from {} to {} is under way: let it finish first",
                state.current.kind(),
                t.kind()
            )));
        }
        if state.current.kind() == target.kind() {
            return Err(StoreError::Backend(format!(
                "the blobs are in {} already",
                target.kind()
            )));
        }
        // Durable before any write goes to the target: a node restarted after this point
        // reads both stores.
        let config = config_file.to_string_lossy().into_owned();
        let mut batch = sled::Batch::default();
        batch.insert(MIGRATION_TO, target.kind().as_bytes());
        batch.insert(MIGRATION_CONFIG, config.as_bytes());
        batch.remove(MIGRATION_CURSOR);
        batch.remove(MIGRATION_COUNTS);
        self.meta.apply_batch(batch)?;
        self.set_rate(max_blobs_per_second)?;
        let stores = lock(&self.stores);
        let mut opened = Vec::new();
        for ns in stores.keys() {
            opened.push((ns.clone(), target.open_namespace(&self.db, ns)?));
        }
        for (ns, primary) in opened {
            if let Some(s) = stores.get(&ns) {
                let mut l = s.layers_mut();
                let source = std::mem::replace(&mut l.primary, primary);
                l.fallback = Some(source);
            }
        }
        *lock(&self.status) = MigrationStatus {
            state: "copying".into(),
            from: state.current.kind().into(),
            to: target.kind().into(),
            ..Default::default()
        };
        state.target = Some(target);
        state.config_file = Some(config_file.to_path_buf());
        Ok(())
    }

    fn set_rate(&self, max_blobs_per_second: u32) -> Result<(), StoreError> {
        if max_blobs_per_second == 0 {
            self.meta.remove(MIGRATION_RATE)?;
        } else {
            self.meta
                .insert(MIGRATION_RATE, &max_blobs_per_second.to_be_bytes())?;
        }
        self.db.flush()?;
        Ok(())
    }

    fn rate(&self) -> u32 {
        self.meta
            .get(MIGRATION_RATE)
            .ok()
            .flatten()
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map(u32::from_be_bytes)
            .unwrap_or(0)
    }

    /// Copies every blob of the source to the target, from where a previous run stopped,
    /// then switches the node over. Blocking; `held` lists the peers whose blobs this node
    /// holds. Returns the final status (`done`, or `failed` with the blobs that were not
    /// moved). Without a migration under way, returns at once.
    pub fn run_worker(&self, held: &[String]) -> MigrationStatus {
        let Ok(_running) = self.worker.try_lock() else {
            return self.status();
        };
        if self.state().target.is_none() {
            return self.status();
        }
        if let Err(e) = self.copy_all(held) {
            let mut s = lock(&self.status);
            s.state = "failed".into();
            s.error = e.to_string();
            tracing::error!(error = %e, "blob migration stopped");
            return s.clone();
        }
        if lock(&self.status).failed_count > 0 {
            let mut s = lock(&self.status);
            s.state = "failed".into();
            return s.clone();
        }
        if let Err(e) = self.finish() {
            let mut s = lock(&self.status);
            s.state = "failed".into();
            s.error = e.to_string();
            tracing::error!(error = %e, "blob migration could not switch over");
            return s.clone();
        }
        self.status()
    }

    fn copy_all(&self, held: &[String]) -> Result<(), StoreError> {
        let mut namespaces = vec![Namespace::Own];
        namespaces.extend(held.iter().map(|o| Namespace::Held(o.clone())));
        namespaces.sort_by_key(Namespace::name);
        let cursor = self.meta.get(MIGRATION_CURSOR)?;
        let (cursor_ns, cursor_id) = match cursor.as_deref() {
            Some(v) if v.len() > 32 => (
                String::from_utf8_lossy(&v[32..]).into_owned(),
                <[u8; 32]>::try_from(&v[..32]).ok(),
            ),
            _ => (String::new(), None),
        };
        for ns in namespaces {
            let name = ns.name();
            if name < cursor_ns {
                continue;
            }
            let after = if name == cursor_ns { cursor_id } else { None };
            let store = self.open(&ns)?;
            let Some(layered) = lock(&self.stores).get(&ns).cloned() else {
                continue;
            };
            let Some((from, to)) = layered.pair() else {
                // Opened after the switch-over: nothing to move.
                continue;
            };
            drop(store);
            lock(&self.status).namespace = name.clone();
            self.copy_namespace(&name, &layered, from.as_ref(), to.as_ref(), after)?;
        }
        Ok(())
    }

    fn copy_namespace(
        &self,
        name: &str,
        layered: &LayeredBlobStore,
        from: &dyn BlobStore,
        to: &dyn BlobStore,
        after: Option<BlobId>,
    ) -> Result<(), StoreError> {
        let mut since_save = 0u64;
        let mut saved_at = std::time::Instant::now();
        let mut last = None;
        let started = std::time::Instant::now();
        let mut done = 0u64;
        // One listing held open across the copy: lazy for sled and S3 (a page at a time).
        for id in from.list(&[]) {
            let id = id?;
            if after.is_some_and(|a| id <= a) {
                continue;
            }
            let rate = self.rate();
            if rate > 0 {
                // Paced: blob n starts no earlier than n / rate seconds in.
                let due = std::time::Duration::from_secs_f64(done as f64 / f64::from(rate));
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            done += 1;
            let outcome = layered.copy_blob(from, to, &id)?;
            {
                let mut s = lock(&self.status);
                match outcome {
                    Copied::Written(n) => {
                        s.copied += 1;
                        s.bytes += n;
                    }
                    Copied::Already => s.already += 1,
                    Copied::Failed(why) => {
                        s.failed_count += 1;
                        if s.failed.len() < FAILED_KEPT {
                            s.failed.push(why);
                        }
                    }
                }
            }
            last = Some(id);
            since_save += 1;
            if since_save >= SAVE_EVERY_BLOBS || saved_at.elapsed() >= SAVE_EVERY {
                self.save(name, to, &id)?;
                since_save = 0;
                saved_at = std::time::Instant::now();
            }
        }
        if let Some(id) = last {
            self.save(name, to, &id)?;
        }
        Ok(())
    }

    /// Makes the target durable, then records that everything up to `id` is in it.
    fn save(&self, name: &str, to: &dyn BlobStore, id: &BlobId) -> Result<(), StoreError> {
        to.flush()?;
        let mut cursor = id.to_vec();
        cursor.extend_from_slice(name.as_bytes());
        let (copied, already, bytes) = {
            let s = lock(&self.status);
            (s.copied, s.already, s.bytes)
        };
        let mut counts = Vec::with_capacity(24);
        for n in [copied, already, bytes] {
            counts.extend_from_slice(&n.to_be_bytes());
        }
        let mut batch = sled::Batch::default();
        batch.insert(MIGRATION_CURSOR, cursor);
        batch.insert(MIGRATION_COUNTS, counts);
        self.meta.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Every blob is in the target, verified: switch the configuration file, then the
    /// marker, then stop reading the source.
    fn finish(&self) -> Result<(), StoreError> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let Some(target) = state.target.clone() else {
            return Ok(());
        };
        // The file first: a node killed between the two finds the migration still recorded
        // and the file naming its target, which it accepts, and finishes again.
        if let Some(file) = &state.config_file {
            set_blob_store_in(file, target.kind())?;
        }
        let mut batch = sled::Batch::default();
        batch.insert(BLOB_PLACE, target.kind().as_bytes());
        for k in [
            MIGRATION_TO,
            MIGRATION_CONFIG,
            MIGRATION_CURSOR,
            MIGRATION_COUNTS,
            MIGRATION_RATE,
        ] {
            batch.remove(k);
        }
        self.meta.apply_batch(batch)?;
        self.db.flush()?;
        for s in lock(&self.stores).values() {
            s.layers_mut().fallback = None;
        }
        let from = std::mem::replace(&mut state.current, target);
        state.target = None;
        let mut s = lock(&self.status);
        s.state = "done".into();
        s.namespace.clear();
        tracing::info!(
            from = from.kind(),
            to = state.current.kind(),
            copied = s.copied,
            already = s.already,
            "blob migration finished: the node now uses its new store only"
        );
        Ok(())
    }
}

enum Copied {
    Written(u64),
    Already,
    Failed(String),
}

/// One blob: skipped if already good in the target; else read and checked in the source,
/// written, read back and checked in the target.
fn copy_one(from: &dyn BlobStore, to: &dyn BlobStore, id: &BlobId) -> Result<Copied, BlobError> {
    let hex_id = hex::encode(id);
    if let Verified::Ok(_) = get_verified(to, id)? {
        return Ok(Copied::Already);
    }
    Ok(match get_verified(from, id)? {
        Verified::Ok(bytes) => {
            to.put(id, &bytes)?;
            match get_verified(to, id)? {
                Verified::Ok(_) => Copied::Written(bytes.len() as u64),
                Verified::Missing => Copied::Failed(format!(
                    "blob {hex_id}: absent from the target just after writing it"
                )),
                Verified::Corrupt => {
                    Copied::Failed(format!("blob {hex_id}: read back altered from the target"))
                }
            }
        }
        // Deleted meanwhile (an abandoned ingest's blob): nothing to move.
        Verified::Missing => Copied::Already,
        Verified::Corrupt => Copied::Failed(format!(
            "blob {hex_id}: corrupt in the source (not copied); repair it from a peer \
             (scrub), then run the migration again"
        )),
    })
}

/// Sets `blob_store = "KIND"` in a TOML file, keeping its other lines and comments; the
/// file is replaced atomically.
pub fn set_blob_store_in(file: &Path, kind: &str) -> Result<(), StoreError> {
    let io = |what: &str, e: std::io::Error| {
        StoreError::Backend(format!("cannot {what} {}: {e}", file.display()))
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io("read", e)),
    };
    let line = format!("blob_store = {kind:?}");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Some(l) = lines
        .iter_mut()
        .find(|l| l.trim_start().starts_with("blob_store") && l.contains('='))
    {
        *l = line;
    } else {
        // A top-level key goes before the first table, or TOML would put it inside it.
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .unwrap_or(lines.len());
        lines.insert(at, line);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    // Checked before it replaces the file: a broken configuration would stop the node.
    toml::from_str::<crate::Config>(&out).map_err(|e| {
        StoreError::Backend(format!(
            "{}: the updated configuration does not parse: {e}",
            file.display()
        ))
    })?;
    crate::identity::replace_file(file, out.as_bytes(), 0o644)
        .map_err(|e| StoreError::Backend(format!("cannot replace {}: {e}", file.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(s: &dyn BlobStore, b: &[u8]) -> BlobId {
        let id = *blake3::hash(b).as_bytes();
        s.put(&id, b).unwrap();
        id
    }

    #[test]
    fn online_migration_serves_throughout_and_resumes() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(d.path().join("db"))
            .open()
            .unwrap();
        let meta = db.open_tree("meta").unwrap();
        let p = Placement::new(&db, &meta, BlobPlace::Sled, None).unwrap();
        let own = p.open(&Namespace::Own).unwrap();
        let held = p.open(&Namespace::Held("peer".into())).unwrap();
        let old: Vec<BlobId> = (0..150u32)
            .map(|i| put(own.as_ref(), &vec![i as u8; 100 + i as usize]))
            .collect();
        let old_held = put(held.as_ref(), b"held blob");
        let cfg = d.path().join("archipel.toml");
        std::fs::write(&cfg, "# comment\n").unwrap();
        p.begin(BlobPlace::Files(d.path().join("blobs")), &cfg, 0)
            .unwrap();
        assert_eq!(p.migrating_to(), Some("files"));
        // Served during the migration: old blobs from the source, new ones to the target.
        let new = put(own.as_ref(), b"written during the migration");
        assert!(own.get(&old[3]).unwrap().is_some());
        assert!(own.get(&new).unwrap().is_some());
        let listed: Vec<_> = own.list(&[]).map(Result::unwrap).collect();
        assert_eq!(listed.len(), 151);
        assert!(listed.windows(2).all(|w| w[0] < w[1]));
        // A worker that stopped part-way: a cursor in the middle of the own namespace.
        let mut sorted = old.clone();
        sorted.sort();
        let own_store = lock(&p.stores).get(&Namespace::Own).cloned().unwrap();
        let (from, to) = own_store.pair().unwrap();
        for id in &sorted[..70] {
            assert!(matches!(
                copy_one(from.as_ref(), to.as_ref(), id).unwrap(),
                Copied::Written(_)
            ));
        }
        p.save("blobs", to.as_ref(), &sorted[69]).unwrap();
        // One blob damaged in the source: the migration fails and keeps both layers.
        let bad = [0xffu8; 32];
        from.put(&bad, b"not these bytes").unwrap();
        let s = p.run_worker(&["peer".to_string()]);
        assert_eq!(s.state, "failed", "{s:?}");
        assert_eq!(s.failed_count, 1, "{s:?}");
        assert!(own.get(&old[0]).unwrap().is_some());
        from.delete(&bad).unwrap();
        p.begin(BlobPlace::Files(d.path().join("blobs")), &cfg, 0)
            .unwrap();
        let s = p.run_worker(&["peer".to_string()]);
        assert_eq!(s.state, "done", "{s:?}");
        assert_eq!(p.kind(), "files");
        assert_eq!(
            meta.get(BLOB_PLACE).unwrap().as_deref(),
            Some(&b"files"[..])
        );
        assert!(meta.get(MIGRATION_TO).unwrap().is_none());
        assert!(
            std::fs::read_to_string(&cfg)
                .unwrap()
                .contains("blob_store = \"files\"")
        );
        // Only the target now: everything is there.
        let files = BlobPlace::Files(d.path().join("blobs"));
        let t = files.open_namespace(&db, &Namespace::Own).unwrap();
        for id in old.iter().chain([&new]) {
            assert!(matches!(
                get_verified(t.as_ref(), id).unwrap(),
                Verified::Ok(_)
            ));
        }
        let th = files
            .open_namespace(&db, &Namespace::Held("peer".into()))
            .unwrap();
        assert!(th.contains(&old_held).unwrap());
        SledBlobStore::open(&db).unwrap().delete(&old[5]).unwrap();
        assert!(own.get(&old[5]).unwrap().is_some(), "read from the target");
    }

    /// A source store whose `get` of one blob stops half-way (after reading) until told to go.
    #[derive(Debug)]
    struct Paused {
        inner: Arc<dyn BlobStore>,
        at: BlobId,
        read: Mutex<Option<std::sync::mpsc::Sender<()>>>,
        go: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl BlobStore for Paused {
        fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
            self.inner.put(id, bytes)
        }
        fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
            let got = self.inner.get(id);
            if *id == self.at
                && let Some(tx) = lock(&self.read).take()
            {
                tx.send(()).unwrap();
                lock(&self.go).recv().unwrap();
            }
            got
        }
        fn contains(&self, id: &BlobId) -> Result<bool, BlobError> {
            self.inner.contains(id)
        }
        fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
            self.inner.delete(id)
        }
        fn list(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<BlobId, BlobError>> + '_> {
            self.inner.list(prefix)
        }
        fn flush(&self) -> Result<(), BlobError> {
            self.inner.flush()
        }
    }

    /// An ingest abandoned while the worker copies its blob deletes it from both layers;
    /// the delete waits for the copy, so no orphan copy stays in the target.
    #[test]
    fn a_blob_deleted_during_its_copy_leaves_no_copy_in_the_target() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(d.path().join("db"))
            .open()
            .unwrap();
        let source: Arc<dyn BlobStore> = Arc::new(SledBlobStore::open_named(&db, "src").unwrap());
        let target: Arc<dyn BlobStore> = Arc::new(SledBlobStore::open_named(&db, "dst").unwrap());
        let id = put(
            source.as_ref(),
            b"staged by an ingest that will be abandoned",
        );
        let (read_tx, read_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel();
        let paused: Arc<dyn BlobStore> = Arc::new(Paused {
            inner: source.clone(),
            at: id,
            read: Mutex::new(Some(read_tx)),
            go: Mutex::new(go_rx),
        });
        let layered = Arc::new(LayeredBlobStore::new(Layers {
            primary: target.clone(),
            fallback: Some(paused.clone()),
        }));
        let copier = {
            let (layered, paused, target) = (layered.clone(), paused.clone(), target.clone());
            std::thread::spawn(move || {
                layered
                    .copy_blob(paused.as_ref(), target.as_ref(), &id)
                    .unwrap()
            })
        };
        read_rx.recv().unwrap(); // the worker has the source's bytes in hand
        let deleter = {
            let layered = layered.clone();
            std::thread::spawn(move || layered.delete(&id).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !deleter.is_finished(),
            "the delete went ahead during the copy"
        );
        go_tx.send(()).unwrap();
        assert!(matches!(copier.join().unwrap(), Copied::Written(_)));
        deleter.join().unwrap();
        assert!(!source.contains(&id).unwrap());
        assert!(
            !target.contains(&id).unwrap(),
            "an orphan copy stayed in the target"
        );
        assert!(!layered.contains(&id).unwrap());
    }
}
