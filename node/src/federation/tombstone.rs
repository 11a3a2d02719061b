//! Lawful destruction across the federation.
//!
//! Origin side (`propagate`): every tombstone without a deletion receipt from some current
//! peer is sent to it again, on the replication schedule and right after an elimination,
//! until each peer has answered with a signed receipt (a peer that never held the record
//! answers at once, with 0 blobs). Receipts are checked against the peer's key, kept in the
//! record's `EliminationState` and logged (PREMIS `deletion`, actor `holder-<node ID>`).
//!
//! Holder side (`accept`, `shred_due`): a tombstone must carry the origin's signature and
//! name the content the holder keeps. From its arrival the record is withdrawn (no longer
//! listed for restore, no longer served by the holder's gateway, new copies refused: PREMIS
//! `deaccession`) but everything is kept for the federation's quarantine
//! (`deletion_quarantine_days`), so an elimination ordered from a compromised origin can
//! still be undone by hand from the holders' data. After it, one transaction removes the
//! held record, its older versions and its key envelope (crypto-shredding) and notes the
//! blobs to delete; then the blobs go (those no other held record of that origin uses),
//! and the holder signs its deletion receipt (PREMIS `deletion`). A crash in between
//! resumes from the noted blobs. Many tombstones from one origin within an hour raise the
//! holder's mass-change alert, as refused deletions do. A tombstone the holder's archivist
//! suspended (`suspension.rs`) is kept past the quarantine and answered REFUSED.

use super::replicator::{peer_err, peer_key};
use super::service::Caller;
use super::{FederationError, Peer};
use crate::archive::Archive;
use archipel_proto::custody::blob_set_digest;
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{BlobId, Envelope};
use archipel_proto::tombstone::{DeletionReceipt, Tombstone};
use archipel_proto::v1::tombstone_answer::State;
use archipel_proto::v1::{
    EliminationState, HeldTombstone, SignedText, TombstoneAnswer, TombstoneAnswers, TombstoneBatch,
};
use prost::Message;
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::HashSet;
use std::sync::Arc;

/// Tombstones per request.
const BATCH: usize = 500;
/// A holder's refusal reason is kept (and shown) up to this many characters.
const REFUSAL_CHARS: usize = 1024;

/// Key of a held tombstone: origin ‖ record, as for released keys.
use super::release::{key, storage};

pub(super) fn tree(archive: &Archive) -> Result<sled::Tree, FederationError> {
    Ok(archive.store.db().open_tree("held_tombstones")?)
}

/// The keys of `held_tombstones` without a deletion receipt yet, so that the periodic pass
/// does not read every tombstone ever received.
fn pending(archive: &Archive) -> Result<sled::Tree, FederationError> {
    Ok(archive.store.db().open_tree("held_tombstones_pending")?)
}

pub(super) fn quarantine_secs(archive: &Archive) -> i64 {
    i64::from(archive.config.federation.deletion_quarantine_days) * 86_400
}

fn answer_of(archive: &Archive, record_id: &str, held: &HeldTombstone) -> TombstoneAnswer {
    if held.receipt.is_none() && !held.suspended.is_empty() {
        return refused(
            record_id,
            format!(
                "deletion suspended by the holder's archivist on {}: {}",
                crate::clock::rfc3339(held.suspended_at),
                held.suspended
            ),
        );
    }
    match &held.receipt {
        Some(r) => TombstoneAnswer {
            record_id: record_id.to_string(),
            state: State::Deleted as i32,
            receipt: Some(r.clone()),
            ..Default::default()
        },
        None => TombstoneAnswer {
            record_id: record_id.to_string(),
            state: State::Quarantined as i32,
            delete_after: crate::clock::rfc3339(held.received_at + quarantine_secs(archive)),
            ..Default::default()
        },
    }
}

fn refused(record_id: &str, why: impl Into<String>) -> TombstoneAnswer {
    TombstoneAnswer {
        record_id: record_id.to_string(),
        state: State::Refused as i32,
        reason: why.into(),
        ..Default::default()
    }
}

/// Holder side: takes the caller's tombstones (see the module's documentation).
pub fn accept(
    archive: &Archive,
    caller: &Caller,
    batch: TombstoneBatch,
) -> Result<TombstoneAnswers, FederationError> {
    let stones = tree(archive)?;
    let origin = &caller.node_id;
    let mut answers = TombstoneAnswers::default();
    let mut fresh = 0;
    for signed in batch.tombstones.into_iter().take(BATCH) {
        let t = match Tombstone::verify(&signed.text, &signed.signature, &caller.key) {
            Ok(t) if &t.origin == origin => t,
            Ok(t) => {
                answers.answers.push(refused(
                    &t.record_id,
                    "a node sends only the tombstones of its own records",
                ));
                continue;
            }
            Err(e) => {
                answers.answers.push(refused("", e.to_string()));
                continue;
            }
        };
        let k = key(origin, &t.record_id);
        if let Some(v) = stones.get(&k)? {
            let held = HeldTombstone::decode(v.as_ref()).map_err(storage)?;
            answers
                .answers
                .push(answer_of(archive, &t.record_id, &held));
            continue;
        }
        if let Some(h) = archive.holding.get(origin, &t.record_id)? {
            let env = Envelope::decode(&h.copy.unwrap_or_default().envelope).map_err(storage)?;
            if blob_set_digest(&env.blobs) != t.blob_set {
                let why = "the tombstone names other content than the copy held here";
                archive
                    .holding
                    .log_rejection(archive, origin, &t.record_id, why);
                answers.answers.push(refused(&t.record_id, why));
                continue;
            }
        }
        let held = HeldTombstone {
            tombstone: Some(signed.clone()),
            received_at: crate::clock::now_unix(),
            ..Default::default()
        };
        (&stones, &pending(archive)?)
            .transaction(|(stones, pending)| {
                stones.insert(k.as_slice(), held.encode_to_vec())?;
                pending.insert(k.as_slice(), &[])?;
                Ok::<_, ConflictableTransactionError<FederationError>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => e.into(),
            })?;
        // Withdrawn at once: the holder's gateway no longer serves it.
        let releases = archive.store.db().open_tree("held_releases")?;
        if releases.remove(&k)?.is_some() {
            archive
                .store
                .db()
                .open_tree("held_releases_by_record")?
                .remove(t.record_id.as_bytes())?;
            archive.store.bump_generation();
        }
        archive
            .append_event(
                "deaccession",
                &t.record_id,
                &format!("tombstone-{origin}"),
                Outcome::Success,
                *blake3::hash(signed.text.as_bytes()).as_bytes(),
            )
            .map_err(storage)?;
        fresh += 1;
        answers
            .answers
            .push(answer_of(archive, &t.record_id, &held));
    }
    stones.flush()?;
    if fresh > 0 {
        archive.holding.suspicious(archive, origin, fresh);
        // With no quarantine, delete now so that the origin has its receipts at once.
        if quarantine_secs(archive) == 0 {
            shred_due(archive)?;
            for a in answers.answers.iter_mut() {
                if a.state == State::Quarantined as i32
                    && let Some(v) = stones.get(key(origin, &a.record_id))?
                {
                    let held = HeldTombstone::decode(v.as_ref()).map_err(storage)?;
                    *a = answer_of(archive, &a.record_id, &held);
                }
            }
        }
    }
    Ok(answers)
}

/// Holder side: the caller's tombstones kept here, paged by record ID (restore).
pub fn list_for(
    archive: &Archive,
    caller: &Caller,
    request: archipel_proto::v1::ListHeldRequest,
) -> Result<archipel_proto::v1::HeldTombstonesResponse, FederationError> {
    let origin = caller.node_id.as_bytes();
    let limit = request.limit.clamp(1, 1000) as usize;
    let start = key(&caller.node_id, &request.after);
    let mut answer = archipel_proto::v1::HeldTombstonesResponse::default();
    for kv in tree(archive)?.range(start.clone()..) {
        let (k, v) = kv?;
        if !k.starts_with(origin) {
            break;
        }
        if k.as_ref() == start.as_slice() {
            continue;
        }
        if answer.entries.len() == limit {
            answer.more = true;
            break;
        }
        let held = HeldTombstone::decode(v.as_ref()).map_err(storage)?;
        answer.entries.push(archipel_proto::v1::HeldTombstoneEntry {
            record_id: String::from_utf8_lossy(&k[origin.len()..]).into_owned(),
            tombstone: held.tombstone,
            receipt: held.receipt,
        });
    }
    Ok(answer)
}

/// Holder side: deletes what each tombstone whose quarantine is over names. Returns how
/// many records were deleted.
pub fn shred_due(archive: &Archive) -> Result<usize, FederationError> {
    let stones = tree(archive)?;
    let waiting = pending(archive)?;
    let now = crate::clock::now_unix();
    let q = quarantine_secs(archive);
    let mut done = 0;
    for k in waiting.iter().keys() {
        let k = k?;
        let Some(v) = stones.get(&k)? else {
            waiting.remove(&k)?;
            continue;
        };
        let held = HeldTombstone::decode(v.as_ref()).map_err(storage)?;
        if held.receipt.is_some() {
            waiting.remove(&k)?;
            continue;
        }
        // Suspended by this node's archivist: kept, past the quarantine too.
        if !held.shredding && (!held.suspended.is_empty() || held.received_at + q > now) {
            continue;
        }
        let text = held.tombstone.clone().unwrap_or_default().text;
        let t = Tombstone::decode(&text).map_err(storage)?;
        if shred_one(archive, &stones, &k, held, &t)? {
            done += 1;
        }
    }
    Ok(done)
}

/// Deletes one held record; false if its deletion was suspended meanwhile (nothing done).
fn shred_one(
    archive: &Archive,
    stones: &sled::Tree,
    k: &[u8],
    mut held: HeldTombstone,
    t: &Tombstone,
) -> Result<bool, FederationError> {
    let origin = &t.origin;
    let holding = &archive.holding;
    if !held.shredding {
        let copy = holding.get(origin, &t.record_id)?;
        let blobs: Vec<BlobId> = match &copy {
            Some(h) => {
                Envelope::decode(&h.copy.clone().unwrap_or_default().envelope)
                    .map_err(storage)?
                    .blobs
            }
            None => Vec::new(),
        };
        // Blobs another held record of this origin uses stay (deduplicated content).
        let mut doomed: HashSet<BlobId> = blobs.iter().copied().collect();
        if !doomed.is_empty() {
            for r in holding.records_of(origin) {
                let (id, env) = r?;
                if id != t.record_id {
                    for b in &env.blobs {
                        doomed.remove(b);
                    }
                }
            }
        }
        let store = holding.blobs_of(origin)?;
        let mut bytes = 0u64;
        for b in &doomed {
            bytes += store.size(b)?.unwrap_or(0);
        }
        let versions: Vec<sled::IVec> = holding
            .versions_tree()
            .scan_prefix(k)
            .keys()
            .collect::<Result<_, _>>()?;
        held.shredding = true;
        held.pending_blobs = doomed.iter().map(|b| b.to_vec()).collect();
        let value = held.encode_to_vec();
        let was_held = copy.is_some();
        let (records, versions_tree, index, meta) = holding.trees();
        let started = (records, versions_tree, index, meta, stones)
            .transaction(|(records, versions_t, index, meta, stones)| {
                // Suspended since it was read (`suspension::suspend`): leave it.
                let now = stones.get(k)?;
                if now.is_none_or(|v| {
                    HeldTombstone::decode(v.as_ref()).is_ok_and(|h| !h.suspended.is_empty())
                }) {
                    return Ok(false);
                }
                records.remove(k)?;
                index.remove(k)?;
                for v in &versions {
                    versions_t.remove(v.clone())?;
                }
                if was_held {
                    let mut tot = super::holding::totals_of(meta.get(origin.as_bytes())?);
                    tot.records = tot.records.saturating_sub(1);
                    tot.bytes = tot.bytes.saturating_sub(bytes);
                    meta.insert(origin.as_bytes(), &super::holding::totals_bytes(tot)[..])?;
                }
                stones.insert(k, value.as_slice())?;
                Ok::<_, ConflictableTransactionError<FederationError>>(true)
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => e.into(),
            })?;
        if !started {
            return Ok(false);
        }
        stones.flush()?;
    }
    let store = holding.blobs_of(origin)?;
    for b in &held.pending_blobs {
        if let Ok(id) = <BlobId>::try_from(b.as_slice()) {
            store.delete(&id)?;
        }
    }
    store.flush()?;
    let receipt = DeletionReceipt {
        origin: origin.clone(),
        record_id: t.record_id.clone(),
        tombstone: *blake3::hash(held.tombstone.clone().unwrap_or_default().text.as_bytes())
            .as_bytes(),
        holder: archive.identity.node_id.clone(),
        deleted_blobs: held.pending_blobs.len() as u64,
        time: crate::clock::now_rfc3339(),
    };
    let (text, sig) = receipt
        .sign(&archive.identity.signing_key)
        .map_err(storage)?;
    held.receipt = Some(SignedText {
        text: text.clone(),
        signature: sig.to_vec(),
    });
    held.shredding = false;
    held.pending_blobs.clear();
    stones.insert(k, held.encode_to_vec())?;
    pending(archive)?.remove(k)?;
    archive
        .append_event(
            "deletion",
            &t.record_id,
            &format!("holder-{origin}"),
            Outcome::Success,
            *blake3::hash(text.as_bytes()).as_bytes(),
        )
        .map_err(storage)?;
    stones.flush()?;
    tracing::info!(origin = %origin, record = %t.record_id, blobs = receipt.deleted_blobs, "held record deleted after its quarantine");
    Ok(true)
}

/// Origin side: sends pending tombstones to every current peer; returns how many deletion
/// receipts arrived.
pub async fn propagate(archive: &Arc<Archive>) -> Result<u32, FederationError> {
    let peers = archive.peers.list().map_err(storage)?;
    if peers.is_empty() {
        return Ok(0);
    }
    let a = archive.clone();
    let peer_ids: Vec<String> = peers.iter().map(|p| p.node_id.clone()).collect();
    // Only eliminations some current peer has not confirmed (memory: those alone).
    let pending = tokio::task::spawn_blocking(move || -> Result<_, FederationError> {
        let mut out: Vec<(String, EliminationState)> = Vec::new();
        for id in a.store.unconfirmed_tombstones().map_err(storage)? {
            let Some(bytes) = a.store.tombstone(&id).map_err(storage)? else {
                a.store.confirm_tombstone(&id).map_err(storage)?;
                continue;
            };
            let state = EliminationState::decode(bytes.as_slice()).map_err(storage)?;
            if peer_ids.iter().any(|p| !state.receipts.contains_key(p)) {
                out.push((id, state));
            } else {
                a.store.confirm_tombstone(&id).map_err(storage)?;
            }
        }
        Ok(out)
    })
    .await
    .map_err(storage)??;
    let mut received = 0;
    // RFC 3339 UTC timestamps of one format compare as text.
    let now = crate::clock::now_rfc3339();
    for peer in &peers {
        let todo: Vec<&(String, EliminationState)> = pending
            .iter()
            .filter(|(_, s)| {
                !s.receipts.contains_key(&peer.node_id)
                    // A holder in quarantine is asked again once it is over.
                    && s
                        .quarantined_until
                        .get(&peer.node_id)
                        .is_none_or(|until| *until <= now)
            })
            .collect();
        for chunk in todo.chunks(BATCH) {
            match send(archive, peer, chunk).await {
                Ok(n) => received += n,
                Err(e) => {
                    tracing::warn!(peer = %peer.node_id, error = %e, "sending tombstones failed");
                    break;
                }
            }
        }
    }
    Ok(received)
}

/// Rewrites an elimination's state when `change` says it changed it.
fn update_state(
    archive: &Archive,
    record_id: &str,
    change: impl Fn(&mut EliminationState) -> bool,
) -> Result<(), FederationError> {
    archive
        .store
        .update_tombstone(record_id, |old| {
            let mut s = EliminationState::decode(old).ok()?;
            change(&mut s).then(|| s.encode_to_vec())
        })
        .map_err(storage)
}

async fn send(
    archive: &Arc<Archive>,
    peer: &Peer,
    chunk: &[&(String, EliminationState)],
) -> Result<u32, FederationError> {
    let mut client = archive.peers.connect(peer).await?;
    let key = peer_key(archive, peer, &mut client).await?;
    let batch = TombstoneBatch {
        tombstones: chunk
            .iter()
            .filter_map(|(_, s)| s.tombstone.clone())
            .collect(),
    };
    let answers = client
        .tombstones(batch)
        .await
        .map_err(|s| peer_err(peer, s))?
        .into_inner();
    let mut received = 0;
    for a in answers.answers {
        let Some((_, state)) = chunk.iter().find(|(id, _)| *id == a.record_id) else {
            continue;
        };
        let stone_digest = *blake3::hash(
            state
                .tombstone
                .as_ref()
                .map(|t| t.text.as_bytes())
                .unwrap_or_default(),
        )
        .as_bytes();
        match State::try_from(a.state) {
            Ok(State::Deleted) => {
                let Some(signed) = a.receipt else { continue };
                let r = match DeletionReceipt::verify(&signed.text, &signed.signature, &key) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(holder = %peer.node_id, error = %e, "invalid deletion receipt");
                        continue;
                    }
                };
                if r.origin != archive.identity.node_id
                    || r.holder != peer.node_id
                    || r.record_id != a.record_id
                    || r.tombstone != stone_digest
                {
                    tracing::warn!(holder = %peer.node_id, record = %a.record_id, "deletion receipt for something else");
                    continue;
                }
                let holder = &peer.node_id;
                let detail = *blake3::hash(signed.text.as_bytes()).as_bytes();
                update_state(archive, &a.record_id, |s| {
                    s.quarantined_until.remove(holder);
                    s.refused.remove(holder);
                    s.receipts.insert(holder.clone(), signed.clone());
                    true
                })?;
                archive
                    .append_event(
                        "deletion",
                        &a.record_id,
                        &format!("holder-{}", peer.node_id),
                        Outcome::Success,
                        detail,
                    )
                    .map_err(storage)?;
                received += 1;
            }
            Ok(State::Quarantined) => {
                let holder = &peer.node_id;
                update_state(archive, &a.record_id, |s| {
                    let unchanged = s.quarantined_until.get(holder) == Some(&a.delete_after)
                        && !s.refused.contains_key(holder);
                    s.refused.remove(holder);
                    s.quarantined_until
                        .insert(holder.clone(), a.delete_after.clone());
                    !unchanged
                })?;
            }
            _ => {
                // The holder's words, shown to our archivist: printable, and short.
                let mut reason: String = a
                    .reason
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(REFUSAL_CHARS)
                    .collect();
                if reason.is_empty() {
                    reason = "no reason given".into();
                }
                let holder = &peer.node_id;
                // Asked again on every pass: said once per new reason (the state this pass
                // started from says what was known).
                if state.refused.get(holder) != Some(&reason) {
                    tracing::warn!(holder = %holder, record = %a.record_id, reason = %reason, "holder refused a tombstone");
                }
                update_state(archive, &a.record_id, |s| {
                    if s.refused.get(holder) == Some(&reason) {
                        return false;
                    }
                    s.quarantined_until.remove(holder);
                    s.refused.insert(holder.clone(), reason.clone());
                    true
                })?;
            }
        }
    }
    Ok(received)
}
