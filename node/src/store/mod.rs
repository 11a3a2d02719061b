//! The node's durable state in sled: record envelopes, key envelopes, the sealed catalog,
//! the deduplication index, and blobs (behind [`BlobStore`]).
//!
//! Invariants:
//! - a record is in `records`, `record_keys` and `catalog` together or in none of them
//!   (one sled transaction, [`Store::commit`]);
//! - a blob written by an ingest that is not committed yet is listed in `staging` *before*
//!   it is written, so that leftovers of a crash or an abandoned ingest can be found and
//!   removed ([`Store::clean_staging`]) without scanning the whole store;
//! - an acknowledged record has been flushed to disk (`flush` before the answer).

mod blob;
mod eliminate;
mod files;
pub mod relocate;
pub mod s3;

pub use blob::{BlobError, BlobStore, SledBlobStore, Verified, conformance, get_verified};
pub use eliminate::{Eliminated, EliminationPlan, FileObject};
pub use files::FileBlobStore;
pub use relocate::{MigrationStatus, Namespace, Placement};
pub use s3::{S3BlobStore, S3Connection, S3Error};

/// Where a node keeps its blobs (`blob_store` in the configuration).
#[derive(Debug, Clone)]
pub enum BlobPlace {
    /// In the sled database.
    Sled,
    /// Files under this directory.
    Files(std::path::PathBuf),
    /// An S3-compatible object store (one connection shared by every namespace).
    S3(Arc<S3Connection>),
    /// A running node's blobs: one of the above, or two during an online migration.
    Layered(Arc<Placement>),
}

impl BlobPlace {
    /// The `blob_store` value that names this place.
    pub fn kind(&self) -> &'static str {
        match self {
            BlobPlace::Sled => "sled",
            BlobPlace::Files(_) => "files",
            BlobPlace::S3(_) => "s3",
            BlobPlace::Layered(p) => p.kind(),
        }
    }

    /// The store of the node's own blobs at this place.
    pub fn open_own(&self, db: &sled::Db) -> Result<Arc<dyn BlobStore>, BlobError> {
        self.open_namespace(db, &Namespace::Own)
    }
}

use crate::log::{PendingEvent, tree as log_tree};
use archipel_proto::manifest::BlobId;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O error: {0}")]
    Io(std::io::Error),
    #[error("storage error: {0}")]
    Backend(String),
    #[error("no record {0}")]
    NotFound(String),
    #[error("record {record} has no file named {name:?}")]
    FileNotFound { record: String, name: String },
    #[error("record {0} has several files: name the one you want")]
    AmbiguousFile(String),
    #[error("range {offset}+{length} is outside the file ({size} bytes)")]
    Range { offset: u64, length: u64, size: u64 },
    #[error("record {record}: blob {blob} is corrupt (its bytes do not match its BLAKE3 address)")]
    Corrupt { record: String, blob: String },
    #[error("record {record}: blob {blob} is missing")]
    Missing { record: String, blob: String },
    #[error("record {record}: file {file:?} does not match its digest ({why})")]
    DigestMismatch {
        record: String,
        file: String,
        why: String,
    },
    #[error("{0}")]
    TooLarge(String),
    #[error("not enough disk space: {0}")]
    DiskFull(String),
    #[error("record {record}: {why}")]
    Damaged { record: String, why: String },
    #[error("record {0} is under a legal hold: lift it first (archipel hold lift {0})")]
    Held(String),
    #[error(
        "a file of this ingest matched archived content that was eliminated meanwhile; \
         send the record again"
    )]
    Eliminated,
}

impl StoreError {
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io(e) if e.raw_os_error() == Some(libc::ENOSPC))
    }
}

/// Bytes available to an unprivileged writer on the file system holding `path`.
pub(crate) fn free_bytes_at(path: &std::path::Path) -> Option<u64> {
    rustix::fs::statvfs(path)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => StoreError::Io(io),
            other => StoreError::Backend(other.to_string()),
        }
    }
}

impl From<BlobError> for StoreError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Io(io) => StoreError::Io(io),
            BlobError::Backend(s) => StoreError::Backend(s),
            e @ BlobError::S3(_) => StoreError::Backend(e.to_string()),
        }
    }
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}

/// Everything one record adds, written in one transaction.
#[derive(Debug, Default)]
pub struct CommitPlan {
    pub record_id: String,
    pub envelope: Vec<u8>,
    pub key_envelope: Vec<u8>,
    pub catalog_entry: Vec<u8>,
    /// New deduplication entries: keyed digest → sealed file reference.
    pub dedup_entries: Vec<([u8; 32], Vec<u8>)>,
    /// File objects (by ID) this record references; their reference counts grow by one.
    pub file_objects: Vec<[u8; 32]>,
    /// Deduplication entries found in the store and reused: the commit is refused if one
    /// vanished meanwhile (its content was eliminated and its blobs are being deleted).
    pub reused_dedup: Vec<[u8; 32]>,
    /// Staged blobs this record now owns.
    pub staged: Vec<BlobId>,
    pub new_blob_bytes: u64,
    /// Audit events recording this change; appended in the same transaction.
    pub events: Vec<PendingEvent>,
    /// Leave durability to the caller, who flushes once after many commits (restore into
    /// a new data directory, which is simply run again after a crash).
    pub defer_flush: bool,
}

/// Counters kept in the `meta` tree.
const RECORDS: &[u8] = b"count/records";
const BLOBS: &[u8] = b"count/blobs";
const BLOB_BYTES: &[u8] = b"count/blob_bytes";
/// Present while some key envelopes may still be wrapped to an older set of recipients
/// (a key rotation or a recovery-recipient change that has not finished re-wrapping).
const KEY_REWRAP_PENDING: &[u8] = b"keys/rewrap-pending";
/// Where the blobs are (`blob_store`'s value), written at creation and by `migrate-blobs`.
pub(crate) const BLOB_PLACE: &[u8] = b"blob_place";

fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
    pub blobs: Arc<dyn BlobStore>,
    /// Where the blobs are, and where an online migration is moving them.
    pub placement: Arc<Placement>,
    records: sled::Tree,
    record_keys: sled::Tree,
    catalog: sled::Tree,
    dedup: sled::Tree,
    file_refs: sled::Tree,
    staging: sled::Tree,
    meta: sled::Tree,
    log: sled::Tree,
    /// Legal holds: record ID -> the hold, sealed with the index key (a reason may name a
    /// person or a case).
    holds: sled::Tree,
    db_path: std::path::PathBuf,
    pub reserve: u64,
    /// Bumped after every change of a record (commit, metadata replacement): readers that
    /// keep derived views (the gateway's search index) rebuild them when it moves.
    generation: Arc<std::sync::atomic::AtomicU64>,
}

/// Opens sled, waiting up to two seconds for its file lock.
///
/// The caller already holds the data directory's own lock (`identity::lock`), so another
/// node cannot be the holder: sled 0.34 releases its lock from a background thread after
/// the last `Db` handle is dropped (spacejam/sled#1234), and a node reopened in the same
/// process (a restart in tests, `restore` then `run`) can race that thread.
fn open_db(config: sled::Config) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

impl Store {
    /// Opens (or creates) the database and removes leftovers of unacknowledged ingests.
    /// `reserve`: free bytes no blob write may eat into (see `Config::disk_reserve_mib`).
    /// `configured`: the `blob_store` of the configuration; `place_of` opens a place by
    /// kind (the one recorded in the database, and the target of a migration under way).
    pub fn open(
        path: &Path,
        cache_capacity: u64,
        reserve: u64,
        configured: &str,
        place_of: &dyn Fn(&str) -> Result<BlobPlace, StoreError>,
    ) -> Result<Self, StoreError> {
        let db = open_db(
            sled::Config::new()
                .path(path)
                .cache_capacity(cache_capacity)
                .mode(sled::Mode::HighThroughput),
        )?;
        let meta = db.open_tree("meta")?;
        // Blobs stay where they were written until `migrate-blobs` moves them: a changed
        // `blob_store` alone would make every record look damaged.
        let marker = match meta.get(BLOB_PLACE)? {
            None => {
                meta.insert(BLOB_PLACE, configured.as_bytes())?;
                configured.to_string()
            }
            Some(k) => String::from_utf8_lossy(&k).into_owned(),
        };
        let migrating = meta
            .get(relocate::MIGRATION_TO)?
            .map(|k| String::from_utf8_lossy(&k).into_owned());
        match &migrating {
            // During a migration the configuration may name either side: the file is
            // switched just before the marker.
            Some(to) if configured == marker || configured == to => {}
            Some(to) => {
                return Err(StoreError::Backend(format!(
                    "this node's blobs are being moved from {marker:?} to {to:?} but the \
                     configuration says blob_store = {configured:?}: set blob_store = \
                     {marker:?} back; the migration resumes when the node starts"
                )));
            }
            None if configured == marker => {}
            None => {
                return Err(StoreError::Backend(format!(
                    "this node's blobs are in {marker:?} but the configuration says blob_store = {configured:?}: \
                     set blob_store = {marker:?} back, or move them with \
                     `archipel-node migrate-blobs --to {configured}`"
                )));
            }
        }
        let target = match &migrating {
            Some(to) => Some(place_of(to)?),
            None => None,
        };
        let placement = Placement::new(&db, &meta, place_of(&marker)?, target)?;
        let blobs = placement.open(&Namespace::Own)?;
        let store = Store {
            records: db.open_tree("records")?,
            record_keys: db.open_tree("record_keys")?,
            catalog: db.open_tree("catalog")?,
            dedup: db.open_tree("dedup")?,
            file_refs: db.open_tree("file_refs")?,
            staging: db.open_tree("staging")?,
            meta,
            log: db.open_tree("log")?,
            holds: db.open_tree("holds")?,
            db_path: path.to_path_buf(),
            reserve,
            generation: Default::default(),
            blobs,
            placement,
            db,
        };
        let cleaned = store.clean_staging(None)?;
        if cleaned > 0 {
            tracing::info!(blobs = cleaned, "removed leftovers of unfinished ingests");
        }
        Ok(store)
    }

    /// Notes that `blob` is about to be written by ingest `session`.
    pub fn stage(&self, session: &[u8; 16], blob: &BlobId) -> Result<(), StoreError> {
        let mut key = Vec::with_capacity(48);
        key.extend_from_slice(session);
        key.extend_from_slice(blob);
        self.staging.insert(key, &[])?;
        Ok(())
    }

    pub fn put_blob(
        &self,
        session: &[u8; 16],
        id: &BlobId,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        // Never let sled meet a full disk: it does not recover well from ENOSPC. A blob in an
        // object store does not land here, but its staging mark does.
        let local = if self.blobs.on_local_disk() {
            bytes.len() as u64
        } else {
            0
        };
        self.ensure_room(local, self.reserve, "a blob")?;
        self.stage(session, id)?;
        if self.blobs.outside_log(bytes.len()) {
            // The mark must be on disk before the blob file exists (one flush per full-size
            // blob, a few ms against the 4 MiB written).
            self.db.flush()?;
        }
        self.blobs.put(id, bytes)?;
        Ok(())
    }

    /// Deletes the staged blobs of one session (an abandoned ingest), or of every session
    /// (at start-up, when no ingest can be running). Returns how many blobs were removed.
    pub fn clean_staging(&self, session: Option<&[u8; 16]>) -> Result<usize, StoreError> {
        let prefix: &[u8] = match session {
            Some(s) => s,
            None => &[],
        };
        let mut n = 0;
        for key in self.staging.scan_prefix(prefix).keys() {
            let key = key?;
            if let Ok(blob) = <[u8; 32]>::try_from(&key[16..]) {
                self.blobs.delete(&blob)?;
                n += 1;
            }
            self.staging.remove(key)?;
        }
        if n > 0 {
            self.db.flush()?;
        }
        Ok(n)
    }

    /// Drops some staged blobs now (duplicates of already archived files).
    pub fn discard_staged(&self, session: &[u8; 16], blobs: &[BlobId]) -> Result<(), StoreError> {
        for b in blobs {
            self.blobs.delete(b)?;
            let mut key = session.to_vec();
            key.extend_from_slice(b);
            self.staging.remove(key)?;
        }
        Ok(())
    }

    pub fn dedup_lookup(&self, key: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.dedup.get(key)?.map(|v| v.to_vec()))
    }

    /// Makes a record visible, whole, in one transaction; then flushes.
    pub async fn commit(&self, session: &[u8; 16], plan: CommitPlan) -> Result<(), StoreError> {
        // New blobs must be durable before a record that references them is.
        if !plan.staged.is_empty() && !plan.defer_flush {
            self.blobs.flush_blobs(&plan.staged)?;
        }
        let trees = (
            &self.records,
            &self.record_keys,
            &self.catalog,
            &self.dedup,
            &self.file_refs,
            &self.staging,
            &self.meta,
            &self.log,
        );
        trees.transaction(
            |(records, record_keys, catalog, dedup, file_refs, staging, meta, log)| {
                let id = plan.record_id.as_bytes();
                if records.get(id)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(StoreError::Backend(
                        format!("record {} exists already", plan.record_id),
                    )));
                }
                records.insert(id, plan.envelope.as_slice())?;
                record_keys.insert(id, plan.key_envelope.as_slice())?;
                catalog.insert(id, plan.catalog_entry.as_slice())?;
                for k in &plan.reused_dedup {
                    if dedup.get(k)?.is_none() {
                        return Err(ConflictableTransactionError::Abort(StoreError::Eliminated));
                    }
                }
                for (k, v) in &plan.dedup_entries {
                    // First writer wins; a concurrent duplicate keeps its own copy.
                    if dedup.get(k)?.is_none() {
                        dedup.insert(&k[..], v.as_slice())?;
                    }
                }
                for f in &plan.file_objects {
                    let n = read_u64(file_refs.get(f)?);
                    file_refs.insert(&f[..], &(n + 1).to_be_bytes())?;
                }
                for b in &plan.staged {
                    let mut key = session.to_vec();
                    key.extend_from_slice(b);
                    staging.remove(key)?;
                }
                let add = |meta: &sled::transaction::TransactionalTree, k: &[u8], d: u64| {
                    let n = read_u64(meta.get(k)?);
                    meta.insert(k, &(n + d).to_be_bytes())?;
                    Ok::<_, ConflictableTransactionError<StoreError>>(())
                };
                add(meta, RECORDS, 1)?;
                add(meta, BLOBS, plan.staged.len() as u64)?;
                add(meta, BLOB_BYTES, plan.new_blob_bytes)?;
                for e in &plan.events {
                    let index = log_tree::append_tx(log, &e.leaf)?;
                    if let Some(record) = &e.ingestion_of {
                        log_tree::index_record_tx(log, record, index)?;
                    }
                }
                Ok(())
            },
        )?;
        self.bump_generation();
        if !plan.defer_flush {
            self.db.flush_async().await?;
        }
        Ok(())
    }

    /// Appends events that record no stored change of their own (a key export), durably.
    pub async fn append_events(&self, events: &[PendingEvent]) -> Result<(), StoreError> {
        self.append_events_lazily(events)?;
        self.db.flush_async().await?;
        Ok(())
    }

    /// Appends events that accompany reads (a fixity check, a dissemination) without waiting
    /// for the disk: sled writes them out within its flush interval (500 ms), so a crash may
    /// lose the last fraction of a second of them, and a read does not pay an fsync.
    pub fn append_events_lazily(&self, events: &[PendingEvent]) -> Result<(), StoreError> {
        (&self.log,).transaction(|(log,)| {
            for e in events {
                log_tree::append_tx::<StoreError>(log, &e.leaf)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Replaces a record's envelope and catalog entry (a metadata update) with its events.
    pub async fn replace_record(
        &self,
        record_id: &str,
        envelope: Vec<u8>,
        catalog_entry: Vec<u8>,
        events: Vec<PendingEvent>,
    ) -> Result<(), StoreError> {
        (&self.records, &self.catalog, &self.log).transaction(|(records, catalog, log)| {
            let id = record_id.as_bytes();
            if records.get(id)?.is_none() {
                return Err(ConflictableTransactionError::Abort(StoreError::NotFound(
                    record_id.to_string(),
                )));
            }
            records.insert(id, envelope.as_slice())?;
            catalog.insert(id, catalog_entry.as_slice())?;
            for e in &events {
                log_tree::append_tx(log, &e.leaf)?;
            }
            Ok(())
        })?;
        self.bump_generation();
        self.db.flush_async().await?;
        Ok(())
    }

    /// Puts a record under a legal hold with its event, unless it is already held (then
    /// nothing changes and the answer is `false`).
    pub async fn set_hold(
        &self,
        record_id: &str,
        sealed: Vec<u8>,
        events: Vec<PendingEvent>,
    ) -> Result<bool, StoreError> {
        let done =
            (&self.records, &self.holds, &self.log).transaction(|(records, holds, log)| {
                let id = record_id.as_bytes();
                if records.get(id)?.is_none() {
                    return Err(ConflictableTransactionError::Abort(StoreError::NotFound(
                        record_id.to_string(),
                    )));
                }
                if holds.get(id)?.is_some() {
                    return Ok(false);
                }
                holds.insert(id, sealed.as_slice())?;
                for e in &events {
                    log_tree::append_tx(log, &e.leaf)?;
                }
                Ok(true)
            })?;
        self.db.flush_async().await?;
        Ok(done)
    }

    /// Lifts a record's legal hold with its event; `None` when there was none.
    pub async fn lift_hold(
        &self,
        record_id: &str,
        events: Vec<PendingEvent>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let lifted = (&self.holds, &self.log).transaction(|(holds, log)| {
            let Some(old) = holds.remove(record_id.as_bytes())? else {
                return Ok(None);
            };
            for e in &events {
                log_tree::append_tx(log, &e.leaf)?;
            }
            Ok(Some(old.to_vec()))
        })?;
        self.db.flush_async().await?;
        Ok(lifted)
    }

    pub fn hold(&self, record_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.holds.get(record_id.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Every hold, by record ID.
    pub fn holds(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.holds
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    /// Stored (ciphertext) bytes of a set of blobs.
    pub fn stored_size_of(&self, blobs: &[BlobId]) -> Result<u64, StoreError> {
        let mut total = 0;
        for b in blobs {
            total += self.blobs.size(b)?.unwrap_or(0);
        }
        Ok(total)
    }

    /// A counter that changes whenever a record is added or its metadata replaced (in this
    /// process; it starts at 0 at every open).
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn bump_generation(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Records that the blobs now live at `place` (the last step of `migrate-blobs`).
    pub fn set_blob_place(&self, place: &BlobPlace) -> Result<(), StoreError> {
        self.meta.insert(BLOB_PLACE, place.kind().as_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn envelope(&self, record_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.records.get(record_id.as_bytes())?.map(|v| v.to_vec()))
    }

    pub fn key_envelope(&self, record_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .record_keys
            .get(record_id.as_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Replaces a record's key envelope if it is still `old` (a record eliminated meanwhile
    /// keeps no envelope). Returns whether it was replaced.
    pub fn replace_key_envelope(
        &self,
        record_id: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        Ok(self
            .record_keys
            .compare_and_swap(record_id.as_bytes(), Some(old), Some(new))?
            .is_ok())
    }

    /// Every record's key envelope, in record ID order.
    pub fn key_envelopes(
        &self,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>), StoreError>> + '_ {
        self.record_keys.iter().map(|kv| {
            let (k, v) = kv?;
            Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
        })
    }

    pub fn rewrap_pending(&self) -> Result<bool, StoreError> {
        Ok(self.meta.contains_key(KEY_REWRAP_PENDING)?)
    }

    /// Notes (durably) that key envelopes must be re-wrapped, or that they all have been.
    pub fn set_rewrap_pending(&self, pending: bool) -> Result<(), StoreError> {
        if pending {
            self.meta.insert(KEY_REWRAP_PENDING, &[])?;
        } else {
            self.meta.remove(KEY_REWRAP_PENDING)?;
        }
        self.meta.flush()?;
        Ok(())
    }

    pub fn catalog_entry(&self, record_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.catalog.get(record_id.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Catalog entries in record ID order (chronological), starting after `after`.
    pub fn catalog_after(
        &self,
        after: &str,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>), StoreError>> + '_ {
        let start = if after.is_empty() {
            std::ops::Bound::Unbounded
        } else {
            std::ops::Bound::Excluded(after.as_bytes().to_vec())
        };
        self.catalog
            .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
    }

    pub fn record_count(&self) -> Result<u64, StoreError> {
        Ok(read_u64(self.meta.get(RECORDS)?))
    }
    pub fn blob_count(&self) -> Result<u64, StoreError> {
        Ok(read_u64(self.meta.get(BLOBS)?))
    }
    pub fn blob_bytes(&self) -> Result<u64, StoreError> {
        Ok(read_u64(self.meta.get(BLOB_BYTES)?))
    }
    pub fn staged_count(&self) -> usize {
        self.staging.len()
    }
    /// Bytes available to the node on the database's file system.
    pub fn free_bytes(&self) -> Option<u64> {
        free_bytes_at(&self.db_path)
    }

    /// Refuses a write of `bytes` that would leave less than `reserve` free.
    pub fn ensure_room(&self, bytes: u64, reserve: u64, what: &str) -> Result<(), StoreError> {
        if let Some(free) = self.free_bytes()
            && free < bytes.saturating_add(reserve)
        {
            return Err(StoreError::DiskFull(format!(
                "{what} needs about {} MiB and {} MiB must stay free, but only {} MiB are available",
                bytes.div_ceil(1 << 20),
                reserve >> 20,
                free >> 20
            )));
        }
        Ok(())
    }

    pub fn disk_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}
