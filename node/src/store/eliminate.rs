//! The store's half of lawful destruction: one transaction removes the record's envelope,
//! key envelope (crypto-shredding: nothing else can open its manifest and file keys),
//! catalog entry and the file objects no other record uses, appends the `deletion` event
//! and keeps the tombstone; the blobs go after, through the staging list, so a crash in
//! between leaves them to start-up's cleaning, never to nobody.

use super::{BLOB_BYTES, BLOBS, RECORDS, Store, StoreError, read_u64};
use crate::log::{PendingEvent, tree as log_tree};
use archipel_proto::manifest::BlobId;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

/// Staging session under which an elimination's blobs wait for deletion.
const SHRED_SESSION: [u8; 16] = *b"elimination\0\0\0\0\0";

/// One file object of the record to destroy.
#[derive(Debug, Clone)]
pub struct FileObject {
    /// `FileEntry::object_id`, the key of `file_refs`.
    pub object_id: [u8; 32],
    /// The keyed digest under which the deduplication index knows it.
    pub dedup_key: [u8; 32],
    pub blobs: Vec<BlobId>,
    /// Stored bytes of each blob, in order.
    pub blob_sizes: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct EliminationPlan {
    pub record_id: String,
    pub files: Vec<FileObject>,
    /// The origin's `EliminationState` (prost), kept in `tombstones` for ever.
    pub state: Vec<u8>,
    pub events: Vec<PendingEvent>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Eliminated {
    pub deleted_blobs: u64,
    pub deleted_bytes: u64,
}

impl Store {
    /// Destroys one record (the caller checked the law). Refused if the record is gone or
    /// under a legal hold at the moment of the transaction.
    pub async fn eliminate(&self, plan: EliminationPlan) -> Result<Eliminated, StoreError> {
        let tombstones = self.db.open_tree("tombstones")?;
        let unconfirmed = self.db.open_tree("tombstones_pending")?;
        let trees = [
            &self.records,
            &self.record_keys,
            &self.catalog,
            &self.dedup,
            &self.file_refs,
            &self.staging,
            &self.meta,
            &self.log,
            &self.holds,
            &tombstones,
            &unconfirmed,
        ];
        let doomed = trees[..].transaction(|t| {
            let [
                records,
                record_keys,
                catalog,
                dedup,
                file_refs,
                staging,
                meta,
                log,
                holds,
                stones,
                unconfirmed,
            ] = &t[..]
            else {
                return Err(ConflictableTransactionError::Abort(StoreError::Backend(
                    "elimination: wrong number of trees".into(),
                )));
            };
            let id = plan.record_id.as_bytes();
            if records.get(id)?.is_none() {
                return Err(ConflictableTransactionError::Abort(StoreError::NotFound(
                    plan.record_id.clone(),
                )));
            }
            if holds.get(id)?.is_some() {
                return Err(ConflictableTransactionError::Abort(StoreError::Held(
                    plan.record_id.clone(),
                )));
            }
            records.remove(id)?;
            record_keys.remove(id)?;
            catalog.remove(id)?;
            let mut doomed: Vec<BlobId> = Vec::new();
            let mut bytes = 0u64;
            let mut seen = std::collections::HashSet::new();
            for f in &plan.files {
                // A record may list the same content twice; its reference counts once per entry.
                let n = read_u64(file_refs.get(f.object_id)?);
                if n > 1 {
                    file_refs.insert(&f.object_id[..], &(n - 1).to_be_bytes())?;
                    continue;
                }
                file_refs.remove(&f.object_id[..])?;
                dedup.remove(&f.dedup_key[..])?;
                for (b, size) in f.blobs.iter().zip(&f.blob_sizes) {
                    if seen.insert(*b) {
                        let mut key = SHRED_SESSION.to_vec();
                        key.extend_from_slice(b);
                        staging.insert(key, &[])?;
                        doomed.push(*b);
                        bytes += size;
                    }
                }
            }
            let sub = |k: &[u8], d: u64| {
                let n = read_u64(meta.get(k)?);
                meta.insert(k, &n.saturating_sub(d).to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            };
            sub(RECORDS, 1)?;
            sub(BLOBS, doomed.len() as u64)?;
            sub(BLOB_BYTES, bytes)?;
            stones.insert(id, plan.state.as_slice())?;
            unconfirmed.insert(id, &[])?;
            for e in &plan.events {
                log_tree::append_tx(log, &e.leaf)?;
            }
            Ok((doomed, bytes))
        })?;
        self.bump_generation();
        // The record is gone for good before its blobs are: a crash now leaves them staged.
        self.db.flush_async().await?;
        let (doomed, bytes) = doomed;
        self.discard_staged(&SHRED_SESSION, &doomed)?;
        self.db.flush_async().await?;
        Ok(Eliminated {
            deleted_blobs: doomed.len() as u64,
            deleted_bytes: bytes,
        })
    }

    /// The origin's elimination state of a record (prost `EliminationState`), if eliminated.
    pub fn tombstone(&self, record_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .open_tree("tombstones")?
            .get(record_id.as_bytes())?
            .map(|v| v.to_vec()))
    }

    /// Every elimination after `after` (exclusive), in record ID order.
    pub fn tombstones_after(
        &self,
        after: &str,
    ) -> Result<impl Iterator<Item = Result<(String, Vec<u8>), StoreError>> + use<>, StoreError>
    {
        let tree = self.db.open_tree("tombstones")?;
        let start = after.as_bytes().to_vec();
        Ok(tree
            .range(start.clone()..)
            .filter(move |kv| {
                kv.as_ref()
                    .map_or(true, |(k, _)| k.as_ref() != start.as_slice())
            })
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            }))
    }

    /// Puts back an elimination's state (restore from peers); `unconfirmed`: some peer has
    /// not sent its receipt yet, so the federation sends the tombstone again.
    pub fn restore_tombstone(
        &self,
        record_id: &str,
        state: &[u8],
        unconfirmed: bool,
    ) -> Result<(), StoreError> {
        self.db
            .open_tree("tombstones")?
            .insert(record_id.as_bytes(), state)?;
        if unconfirmed {
            self.db
                .open_tree("tombstones_pending")?
                .insert(record_id.as_bytes(), &[])?;
        }
        Ok(())
    }

    /// Eliminations that some peer has not confirmed yet (record IDs).
    pub fn unconfirmed_tombstones(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .open_tree("tombstones_pending")?
            .iter()
            .keys()
            .map(|k| Ok(String::from_utf8_lossy(&k?).into_owned()))
            .collect()
    }

    /// Every current peer confirmed this elimination: the federation stops sending it.
    pub fn confirm_tombstone(&self, record_id: &str) -> Result<(), StoreError> {
        self.db
            .open_tree("tombstones_pending")?
            .remove(record_id.as_bytes())?;
        Ok(())
    }

    /// Replaces an elimination's state (receipts arriving from holders).
    pub fn update_tombstone(
        &self,
        record_id: &str,
        f: impl Fn(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let tree = self.db.open_tree("tombstones")?;
        tree.fetch_and_update(record_id.as_bytes(), |old| match old {
            Some(o) => f(o).or_else(|| Some(o.to_vec())),
            None => None,
        })?;
        tree.flush()?;
        Ok(())
    }

    /// Changes one entry of `tree` and appends its audit events in one transaction, then
    /// flushes: the change is acknowledged only once it is logged, and never logged
    /// without being made. `change` gets the current value and returns the new one and
    /// what to answer, or an error that aborts both (and is returned).
    pub fn change_with_events<T, E: From<StoreError>>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        events: &[PendingEvent],
        change: impl Fn(Option<sled::IVec>) -> Result<(Vec<u8>, T), E>,
    ) -> Result<T, E> {
        let out = (tree, &self.log)
            .transaction(|(t, log)| {
                let (value, out) =
                    change(t.get(key)?).map_err(ConflictableTransactionError::Abort)?;
                t.insert(key, value)?;
                for e in events {
                    log_tree::append_tx(log, &e.leaf)?;
                }
                Ok(out)
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => StoreError::from(e).into(),
            })?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(out)
    }
}
