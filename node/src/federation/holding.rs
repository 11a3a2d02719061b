//! The holder's side: what this node keeps for other territories.
//!
//! Each origin has its own namespace: its blobs in `blobs/held/<origin>/` (or the sled tree
//! `held/<origin>/blobs`), its records in the sled tree `held_records` under the key prefix
//! `<origin>`. Invariants:
//! - nothing is stored before it is checked: an envelope must carry the origin's signature
//!   (the key of the caller's TLS certificate) and name that origin; a blob's bytes must
//!   hash to its address and it must have been asked for by an accepted offer;
//! - a held record is never deleted nor overwritten on the origin's request: a newer
//!   envelope is accepted only if it names the same blobs (a metadata change), and the older
//!   one is kept in `held_versions` (so is the older copy when only the key envelope
//!   changes); a different blob set is refused and raises an alert;
//! - a receipt is signed only once the record and its blobs are durable.

use super::FederationError;
use super::reconcile::SledRangeSet;
use super::service::Caller;
use crate::archive::Archive;
use crate::log::tree as log_tree;
use crate::store::{BlobPlace, BlobStore, FileBlobStore, SledBlobStore};
use archipel_proto::custody::{Receipt, blob_set_digest};
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{BlobId, Envelope};
use archipel_proto::v1::{
    BlobPut, ChallengeRequest, ChallengeResponse, CommitResponse, CustodyReceipt, DeletionRequest,
    FetchBlobRequest, FetchBlobResponse, HeldRecord, ListHeldRequest, ListHeldResponse,
    OfferResponse, PutBlobsResponse, RecordBatch, RecordCopy, Refusal,
};
use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest blob accepted from a peer (blob_size_kib is at most 16 MiB, plus age overhead).
pub const MAX_BLOB: usize = 17 << 20;
/// Largest key envelope accepted (an age file to a few recipients is well under 4 KiB).
const MAX_KEY_ENVELOPE: usize = 64 << 10;
/// Largest envelope accepted (metadata is bounded at 64 KiB; a 1 TiB record has 256 Ki
/// blobs of 32 bytes).
const MAX_ENVELOPE: usize = 16 << 20;
/// Records per ListHeld page.
const MAX_PAGE: u32 = 1000;
/// Envelope digests remembered as verified (about 3 MiB).
const MAX_VERIFIED: usize = 100_000;

/// Per-origin counters in `held_meta`: records, bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeldTotals {
    pub records: u64,
    pub bytes: u64,
}

pub(super) fn totals_of(v: Option<sled::IVec>) -> HeldTotals {
    match v.as_deref() {
        Some(b) if b.len() == 16 => HeldTotals {
            records: u64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
            bytes: u64::from_be_bytes(b[8..].try_into().unwrap_or_default()),
        },
        _ => HeldTotals::default(),
    }
}

pub(super) fn totals_bytes(t: HeldTotals) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&t.records.to_be_bytes());
    out[8..].copy_from_slice(&t.bytes.to_be_bytes());
    out
}

fn key(origin: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(origin.len() + rest.len());
    k.extend_from_slice(origin.as_bytes());
    k.extend_from_slice(rest);
    k
}

fn refused(record_id: &str, reason: impl Into<String>) -> Refusal {
    Refusal {
        record_id: record_id.to_string(),
        reason: reason.into(),
    }
}

/// An accepted copy, checked.
struct Checked {
    envelope: Envelope,
    copy: RecordCopy,
    digest: [u8; 32],
}

#[derive(Debug)]
pub struct Holding {
    db: sled::Db,
    records: sled::Tree,
    versions: sled::Tree,
    index: sled::Tree,
    staging: sled::Tree,
    meta: sled::Tree,
    /// Tombstones of lawfully eliminated records (`federation::tombstone`).
    tombstones: sled::Tree,
    place: BlobPlace,
    stores: Mutex<HashMap<String, Arc<dyn BlobStore>>>,
    /// Envelopes (by digest) whose origin signature was checked at offer, so that the
    /// commit of the same batch does not check it again. Bounded; cleared when full.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Recent refused deletions and overwrites, per origin, for the mass-change alert.
    suspicious: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Holding {
    pub fn open(
        db: &sled::Db,
        data_dir: &std::path::Path,
        place: &BlobPlace,
    ) -> Result<Self, FederationError> {
        Ok(Holding {
            records: db.open_tree("held_records")?,
            versions: db.open_tree("held_versions")?,
            index: db.open_tree("held_index")?,
            staging: db.open_tree("held_staging")?,
            meta: db.open_tree("held_meta")?,
            tombstones: db.open_tree("held_tombstones")?,
            // Held blobs sit next to the node's own, in their own namespace per origin.
            place: match place {
                BlobPlace::Files(_) => BlobPlace::Files(data_dir.join("blobs").join("held")),
                other => other.clone(),
            },
            db: db.clone(),
            stores: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashSet::new()),
            suspicious: Mutex::new(HashMap::new()),
        })
    }

    /// The blob store of one origin's namespace.
    pub fn blobs_of(&self, origin: &str) -> Result<Arc<dyn BlobStore>, FederationError> {
        if !super::transport::is_node_id(origin) {
            return Err(FederationError::Refused(format!(
                "{origin:?} is not a node ID"
            )));
        }
        let mut stores = self
            .stores
            .lock()
            .map_err(|_| FederationError::Storage("store map poisoned".into()))?;
        if let Some(s) = stores.get(origin) {
            return Ok(s.clone());
        }
        let store: Arc<dyn BlobStore> = match &self.place {
            BlobPlace::Files(dir) => Arc::new(FileBlobStore::open_named(
                &dir.join(origin),
                &self.db,
                &format!("held/{origin}/packed"),
            )?),
            BlobPlace::Sled => Arc::new(SledBlobStore::open_named(
                &self.db,
                &format!("held/{origin}/blobs"),
            )?),
            BlobPlace::S3(conn) => Arc::new(conn.namespace(&format!("held/{origin}"))),
            // A running node: the same store as the online migration switches.
            BlobPlace::Layered(p) => p.open(&crate::store::Namespace::Held(origin.to_string()))?,
        };
        stores.insert(origin.to_string(), store.clone());
        Ok(store)
    }

    /// Older versions of held records (origin ‖ record ‖ digest), for lawful destruction.
    pub(super) fn versions_tree(&self) -> &sled::Tree {
        &self.versions
    }

    /// The trees a held record lives in: records, versions, index, per-origin totals.
    pub(super) fn trees(&self) -> (&sled::Tree, &sled::Tree, &sled::Tree, &sled::Tree) {
        (&self.records, &self.versions, &self.index, &self.meta)
    }

    /// The (record ID, envelope digest) set kept for `origin`, for anti-entropy.
    pub fn index_of(&self, origin: &str) -> SledRangeSet {
        SledRangeSet {
            tree: self.index.clone(),
            prefix: origin.as_bytes().to_vec(),
        }
    }

    /// Origins this node holds something for, with their totals.
    pub fn origins(&self) -> Result<Vec<(String, HeldTotals)>, FederationError> {
        self.meta
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), totals_of(Some(v))))
            })
            .collect()
    }

    pub fn totals(&self, origin: &str) -> Result<HeldTotals, FederationError> {
        Ok(totals_of(self.meta.get(origin.as_bytes())?))
    }

    /// The held copy of one record, if any.
    pub fn get(
        &self,
        origin: &str,
        record_id: &str,
    ) -> Result<Option<HeldRecord>, FederationError> {
        match self.records.get(key(origin, record_id.as_bytes()))? {
            Some(v) => Ok(Some(HeldRecord::decode(v.as_ref()).map_err(|e| {
                FederationError::Storage(format!("held record {record_id}: {e}"))
            })?)),
            None => Ok(None),
        }
    }

    /// Every record held for `origin` (scrub).
    pub fn records_of<'a>(
        &'a self,
        origin: &str,
    ) -> impl Iterator<Item = Result<(String, Envelope), FederationError>> + 'a {
        let prefix = origin.len();
        self.records.scan_prefix(origin.as_bytes()).map(move |kv| {
            let (k, v) = kv?;
            let id = String::from_utf8_lossy(&k[prefix..]).into_owned();
            let held = HeldRecord::decode(v.as_ref())
                .map_err(|e| FederationError::Storage(format!("held record {id}: {e}")))?;
            let env = Envelope::decode(&held.copy.unwrap_or_default().envelope)
                .map_err(|e| FederationError::Storage(format!("held record {id}: {e}")))?;
            Ok((id, env))
        })
    }

    /// Checks one offered copy: the caller's own record, signed by it, not changing the
    /// content of a copy already held.
    fn check(&self, caller: &Caller, copy: RecordCopy) -> Result<Checked, String> {
        if copy.envelope.len() > MAX_ENVELOPE || copy.key_envelope.len() > MAX_KEY_ENVELOPE {
            return Err("envelope or key envelope too large".into());
        }
        if !copy.key_envelope.starts_with(b"age-encryption.org/v1\n") {
            return Err("the key envelope is not an age file".into());
        }
        let envelope = Envelope::decode(&copy.envelope).map_err(|e| e.to_string())?;
        if envelope.origin != caller.node_id {
            return Err(format!(
                "record of origin {}, sent by {}: a node sends only its own records",
                envelope.origin, caller.node_id
            ));
        }
        if self
            .tombstones
            .contains_key(key(&caller.node_id, envelope.record_id.as_bytes()))
            .unwrap_or(false)
        {
            return Err(format!(
                "record {} was eliminated by its origin: no copy of it is kept any more",
                envelope.record_id
            ));
        }
        let digest = *blake3::hash(&copy.envelope).as_bytes();
        let known = self
            .verified
            .lock()
            .map(|v| v.contains(&digest))
            .unwrap_or(false);
        if !known {
            envelope.verify(&caller.key).map_err(|e| e.to_string())?;
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= MAX_VERIFIED {
                    v.clear();
                }
                v.insert(digest);
            }
        }
        if let Ok(Some(held)) = self.get(&caller.node_id, &envelope.record_id) {
            let old = Envelope::decode(&held.copy.unwrap_or_default().envelope)
                .map_err(|e| format!("held copy unreadable: {e}"))?;
            if old.blobs != envelope.blobs {
                return Err(format!(
                    "record {} is held with other content; a held record's content never changes",
                    envelope.record_id
                ));
            }
        }
        Ok(Checked {
            envelope,
            copy,
            digest,
        })
    }

    /// Notes a refused overwrite or deletion; alerts when an origin makes too many.
    pub(super) fn suspicious(&self, archive: &Archive, origin: &str, count: usize) {
        let threshold = archive.config.federation.mass_change_alert as usize;
        let alert = {
            let Ok(mut map) = self.suspicious.lock() else {
                return;
            };
            let q = map.entry(origin.to_string()).or_default();
            let now = Instant::now();
            for _ in 0..count {
                q.push_back(now);
            }
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(3600))
            {
                q.pop_front();
            }
            // One alert each time the window crosses the threshold again.
            let crossed = q.len() >= threshold;
            if crossed {
                q.clear();
            }
            crossed
        };
        if alert {
            tracing::warn!(origin, "origin asks for mass changes to its held copies");
            let detail = *blake3::hash(format!("mass change by {origin}").as_bytes()).as_bytes();
            if let Err(e) =
                archive.append_event("archipel:alert", origin, "holder", Outcome::Failure, detail)
            {
                tracing::error!(error = %e, "cannot log a mass-change alert");
            }
        }
    }

    pub(super) fn log_rejection(&self, archive: &Archive, origin: &str, object: &str, why: &str) {
        tracing::warn!(origin, object, why, "refused a replicated copy");
        let detail = *blake3::hash(why.as_bytes()).as_bytes();
        let object = if object.is_empty() { origin } else { object };
        if let Err(e) =
            archive.append_event("validation", object, "holder", Outcome::Failure, detail)
        {
            tracing::error!(error = %e, "cannot log a refused copy");
        }
    }

    pub fn offer(
        &self,
        archive: &Archive,
        caller: &Caller,
        batch: RecordBatch,
    ) -> Result<OfferResponse, FederationError> {
        let store = self.blobs_of(&caller.node_id)?;
        let mut answer = OfferResponse::default();
        let mut wanted = HashSet::new();
        let mut overwrites = 0;
        for copy in batch.records {
            let id_hint = Envelope::decode(&copy.envelope)
                .map(|e| e.record_id)
                .unwrap_or_default();
            let checked = match self.check(caller, copy) {
                Ok(c) => c,
                Err(why) => {
                    if why.contains("never changes") {
                        overwrites += 1;
                    }
                    self.log_rejection(archive, &caller.node_id, &id_hint, &why);
                    answer.refused.push(refused(&id_hint, why));
                    continue;
                }
            };
            for b in &checked.envelope.blobs {
                if wanted.contains(b) {
                    continue;
                }
                let have = if batch.verify_existing {
                    match store.get(b)? {
                        Some(bytes) if blake3::hash(&bytes).as_bytes() == b => true,
                        Some(_) => {
                            // Corrupt here: drop it so the origin sends it again.
                            tracing::warn!(blob = %hex::encode(b), "held blob is corrupt; asking for it again");
                            store.delete(b)?;
                            false
                        }
                        None => false,
                    }
                } else {
                    store.contains(b)?
                };
                if !have {
                    wanted.insert(*b);
                    answer.missing_blobs.push(b.to_vec());
                }
            }
        }
        if overwrites > 0 {
            self.suspicious(archive, &caller.node_id, overwrites);
        }
        // The staging marks of the blobs asked for are what PutBlobs accepts, and they are
        // on disk before any of those blobs is written (one flush per batch, not per blob).
        if !wanted.is_empty() {
            let mut marks = sled::Batch::default();
            for b in &wanted {
                marks.insert(key(&caller.node_id, b), &[]);
            }
            self.staging.apply_batch(marks)?;
            self.db.flush()?;
        }
        Ok(answer)
    }

    pub fn put_blob(
        &self,
        archive: &Archive,
        caller: &Caller,
        put: BlobPut,
    ) -> Result<PutBlobsResponse, FederationError> {
        let origin = &caller.node_id;
        let id: BlobId = put
            .blob_id
            .as_slice()
            .try_into()
            .map_err(|_| FederationError::Refused("a blob ID is 32 bytes".into()))?;
        let hex_id = hex::encode(id);
        if put.data.len() > MAX_BLOB {
            self.log_rejection(archive, origin, &hex_id, "blob too large");
            return Err(FederationError::Refused(format!(
                "blob {hex_id} is {} bytes, over {MAX_BLOB}",
                put.data.len()
            )));
        }
        if blake3::hash(&put.data).as_bytes() != &id {
            self.log_rejection(
                archive,
                origin,
                &hex_id,
                "bytes do not match the blob's BLAKE3 address",
            );
            return Err(FederationError::Refused(format!(
                "blob {hex_id}: its bytes do not match its BLAKE3 address"
            )));
        }
        if !self.staging.contains_key(key(origin, &id))? {
            self.log_rejection(archive, origin, &hex_id, "blob not asked for by an offer");
            return Err(FederationError::Refused(format!(
                "blob {hex_id} was not asked for: offer its record first"
            )));
        }
        let store = self.blobs_of(origin)?;
        if store.contains(&id)? {
            return Ok(PutBlobsResponse {
                already_held: 1,
                ..Default::default()
            });
        }
        archive
            .store
            .ensure_room(
                if store.on_local_disk() {
                    put.data.len() as u64
                } else {
                    0
                },
                archive.store.reserve,
                "a held blob",
            )
            .map_err(|e| FederationError::Full(e.to_string()))?;
        store.put(&id, &put.data)?;
        // Counted in `held_meta` when a record commits it, in the same transaction: a count
        // kept apart from the staging mark could be lost by a kill.
        Ok(PutBlobsResponse {
            stored: 1,
            stored_bytes: put.data.len() as u64,
            already_held: 0,
        })
    }

    /// Keeps the batch's records whose blobs are all here and durable; signs a receipt for
    /// each.
    pub fn commit(
        &self,
        archive: &Archive,
        caller: &Caller,
        batch: RecordBatch,
    ) -> Result<CommitResponse, FederationError> {
        let origin = &caller.node_id;
        let store = self.blobs_of(origin)?;
        let mut answer = CommitResponse::default();
        let mut accepted = Vec::new();
        for copy in batch.records {
            let id_hint = Envelope::decode(&copy.envelope)
                .map(|e| e.record_id)
                .unwrap_or_default();
            let checked = match self.check(caller, copy) {
                Ok(c) => c,
                Err(why) => {
                    answer.refused.push(refused(&id_hint, why));
                    continue;
                }
            };
            let mut missing = None;
            for b in &checked.envelope.blobs {
                if !store.contains(b)? {
                    missing = Some(hex::encode(b));
                    break;
                }
            }
            if let Some(b) = missing {
                answer
                    .refused
                    .push(refused(&id_hint, format!("blob {b} has not been received")));
                continue;
            }
            accepted.push(checked);
        }
        if accepted.is_empty() {
            return Ok(answer);
        }
        // Blobs first, then the records that reference them.
        store.flush()?;
        let now = crate::clock::now_rfc3339();
        let mut receipts = Vec::with_capacity(accepted.len());
        let mut events = Vec::with_capacity(accepted.len());
        let mut values = Vec::with_capacity(accepted.len());
        for c in &accepted {
            let rid = &c.envelope.record_id;
            let held = self.get(origin, rid)?;
            let since = held
                .as_ref()
                .map(|h| h.since.clone())
                .unwrap_or_else(|| now.clone());
            let receipt = Receipt {
                origin: origin.clone(),
                record_id: rid.clone(),
                blob_set: blob_set_digest(&c.envelope.blobs),
                envelope: c.digest,
                holder: archive.identity.node_id.clone(),
                time: now.clone(),
            };
            let (text, sig) = receipt
                .sign(&archive.identity.signing_key)
                .map_err(|e| FederationError::Storage(e.to_string()))?;
            let signed = CustodyReceipt {
                text,
                signature: sig.to_vec(),
            };
            let is_new = held.is_none();
            let changed = held
                .as_ref()
                .and_then(|h| h.copy.as_ref())
                // A new key envelope (a key rotation, or an origin trying to make the copy
                // unreadable) is a change too: the older copy is kept either way.
                .is_some_and(|old| {
                    old.envelope != c.copy.envelope || old.key_envelope != c.copy.key_envelope
                });
            if is_new || changed {
                let detail = *blake3::hash(signed.text.as_bytes()).as_bytes();
                events.push(archive.log.event(
                    "replication",
                    rid,
                    "holder",
                    Outcome::Success,
                    detail,
                )?);
            }
            values.push((
                rid.clone(),
                is_new,
                held.and_then(|h| h.copy).filter(|_| changed),
                HeldRecord {
                    copy: Some(c.copy.clone()),
                    since,
                    receipt: None,
                }
                .encode_to_vec(),
            ));
            receipts.push(signed);
        }
        // Sizes of the blobs this commit takes out of staging (received, not yet counted).
        let mut sizes: HashMap<BlobId, u64> = HashMap::new();
        for c in &accepted {
            for b in &c.envelope.blobs {
                if !sizes.contains_key(b) && self.staging.contains_key(key(origin, b))? {
                    sizes.insert(*b, store.size(b)?.unwrap_or(0));
                }
            }
        }
        let trees = (
            &self.records,
            &self.versions,
            &self.index,
            &self.staging,
            &self.meta,
            archive.log.tree(),
        );
        trees
            .transaction(|(records, versions, index, staging, meta, log)| {
                let mut new_records = 0u64;
                let mut new_bytes = 0u64;
                for (c, (rid, is_new, old, value)) in accepted.iter().zip(&values) {
                    let k = key(origin, rid.as_bytes());
                    if let Some(old) = old {
                        // Older versions are kept, never overwritten.
                        let mut vk = k.clone();
                        let mut h = blake3::Hasher::new();
                        h.update(&old.envelope);
                        h.update(&old.key_envelope);
                        vk.extend_from_slice(h.finalize().as_bytes());
                        versions.insert(vk, old.encode_to_vec())?;
                    }
                    records.insert(k.clone(), value.as_slice())?;
                    index.insert(k, &c.digest[..])?;
                    for b in &c.envelope.blobs {
                        if staging.remove(key(origin, b))?.is_some() {
                            new_bytes += sizes.get(b).copied().unwrap_or(0);
                        }
                    }
                    if *is_new {
                        new_records += 1;
                    }
                }
                if new_records > 0 || new_bytes > 0 {
                    let mut t = totals_of(meta.get(origin.as_bytes())?);
                    t.records += new_records;
                    t.bytes += new_bytes;
                    meta.insert(origin.as_bytes(), &totals_bytes(t)[..])?;
                }
                if archive.log.enabled {
                    for e in &events {
                        log_tree::append_tx::<FederationError>(log, &e.leaf)?;
                    }
                }
                Ok::<_, ConflictableTransactionError<FederationError>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => e.into(),
            })?;
        answer.receipts = receipts;
        Ok(answer)
    }

    /// What this node holds for the caller (its own records: restore after a wipe).
    pub fn list(
        &self,
        archive: &Archive,
        caller: &Caller,
        request: ListHeldRequest,
    ) -> Result<ListHeldResponse, FederationError> {
        let origin = &caller.node_id;
        let limit = request.limit.clamp(1, MAX_PAGE) as usize;
        let start = key(origin, request.after.as_bytes());
        let mut answer = ListHeldResponse::default();
        for kv in self.records.range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(origin.as_bytes()) {
                break;
            }
            if k.as_ref() == key(origin, request.after.as_bytes()).as_slice() {
                continue;
            }
            // A record under a tombstone is withdrawn: a restore must not bring it back.
            if self.tombstones.contains_key(&k)? {
                continue;
            }
            if answer.records.len() == limit {
                answer.more = true;
                break;
            }
            let mut held = HeldRecord::decode(v.as_ref())
                .map_err(|e| FederationError::Storage(format!("held record: {e}")))?;
            let copy = held.copy.clone().unwrap_or_default();
            let env = Envelope::decode(&copy.envelope)
                .map_err(|e| FederationError::Storage(format!("held record: {e}")))?;
            let receipt = Receipt {
                origin: origin.clone(),
                record_id: env.record_id.clone(),
                blob_set: blob_set_digest(&env.blobs),
                envelope: *blake3::hash(&copy.envelope).as_bytes(),
                holder: archive.identity.node_id.clone(),
                time: crate::clock::now_rfc3339(),
            };
            let (text, sig) = receipt
                .sign(&archive.identity.signing_key)
                .map_err(|e| FederationError::Storage(e.to_string()))?;
            held.receipt = Some(CustodyReceipt {
                text,
                signature: sig.to_vec(),
            });
            answer.records.push(held);
        }
        Ok(answer)
    }

    /// A blob of `origin`'s, verified before it is served: from this node's own store if it
    /// is the origin, else from the origin's namespace here.
    pub fn fetch_blob(
        &self,
        archive: &Archive,
        request: FetchBlobRequest,
    ) -> Result<FetchBlobResponse, FederationError> {
        let id: BlobId = request
            .blob_id
            .as_slice()
            .try_into()
            .map_err(|_| FederationError::Refused("a blob ID is 32 bytes".into()))?;
        let bytes = if request.origin == archive.identity.node_id {
            archive.store.blobs.get(&id)?
        } else {
            self.blobs_of(&request.origin)?.get(&id)?
        };
        match bytes {
            Some(b) if blake3::hash(&b).as_bytes() == &id => {
                Ok(FetchBlobResponse { data: b.into() })
            }
            Some(_) => Err(FederationError::NotFound(format!(
                "blob {} is corrupt here",
                hex::encode(id)
            ))),
            None => Err(FederationError::NotFound(format!(
                "blob {} of {} is not held here",
                hex::encode(id),
                request.origin
            ))),
        }
    }

    /// Proof of storage: keyed BLAKE3 of each named blob of the caller's, as held now.
    pub fn answer_challenge(
        &self,
        caller: &Caller,
        request: ChallengeRequest,
    ) -> Result<ChallengeResponse, FederationError> {
        let nonce: [u8; 32] = request
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| FederationError::Refused("a challenge nonce is 32 bytes".into()))?;
        if request.blob_ids.len() > 1024 {
            return Err(FederationError::Refused(
                "at most 1024 blobs per challenge".into(),
            ));
        }
        let store = self.blobs_of(&caller.node_id)?;
        let mut proofs = Vec::with_capacity(request.blob_ids.len());
        for b in &request.blob_ids {
            let id: BlobId = b
                .as_slice()
                .try_into()
                .map_err(|_| FederationError::Refused("a blob ID is 32 bytes".into()))?;
            proofs.push(match store.get(&id)? {
                Some(bytes) => blake3::keyed_hash(&nonce, &bytes).as_bytes().to_vec(),
                None => Vec::new(),
            });
        }
        Ok(ChallengeResponse { proofs })
    }

    /// Logs and refuses a deletion request: holders delete only through lawful destruction.
    pub fn refuse_deletion(
        &self,
        archive: &Archive,
        caller: &Caller,
        request: DeletionRequest,
    ) -> FederationError {
        let n = request.record_ids.len().max(1);
        let detail = *blake3::hash(request.encode_to_vec().as_slice()).as_bytes();
        if let Err(e) = archive.append_event(
            "deletion",
            &caller.node_id,
            "holder",
            Outcome::Failure,
            detail,
        ) {
            tracing::error!(error = %e, "cannot log a refused deletion");
        }
        self.suspicious(archive, &caller.node_id, n);
        FederationError::DeletionRefused {
            quarantine_days: archive.config.federation.deletion_quarantine_days,
        }
    }

    /// Replaces a blob of `origin`'s that scrub found missing or corrupt (the bytes were
    /// verified by the caller against the blob's address).
    pub fn repair_blob(
        &self,
        origin: &str,
        id: &BlobId,
        bytes: &[u8],
    ) -> Result<(), FederationError> {
        if blake3::hash(bytes).as_bytes() != id {
            return Err(FederationError::Refused(format!(
                "repair of blob {}: bytes do not match",
                hex::encode(id)
            )));
        }
        let store = self.blobs_of(origin)?;
        store.delete(id)?;
        store.put(id, bytes)?;
        store.flush()?;
        Ok(())
    }
}
