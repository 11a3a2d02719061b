//! Admin API of lawful destruction: `Eliminate` and `Eliminations` (origin side),
//! `ReceivedTombstones` and `SuspendTombstone` (holder side, `federation::suspension`).

use crate::archive::Archive;
use crate::error::Result;
use archipel_proto::tombstone::Tombstone;
use archipel_proto::v1::{Elimination, EliminationState, HolderDeletion};
use prost::Message;
use std::sync::Arc;

/// What the CLI shows of one elimination: the tombstone, and each current peer's progress.
pub fn describe(archive: &Archive, record_id: &str, s: &EliminationState) -> Elimination {
    let signed = s.tombstone.clone().unwrap_or_default();
    let t = Tombstone::decode(&signed.text).ok();
    let mut holders: Vec<HolderDeletion> = Vec::new();
    let peers = archive.peers.list().unwrap_or_default();
    let mut ids: Vec<String> = peers.into_iter().map(|p| p.node_id).collect();
    // A peer removed since still counts if it confirmed.
    for h in s.receipts.keys() {
        if !ids.contains(h) {
            ids.push(h.clone());
        }
    }
    ids.sort();
    for id in ids {
        let mut h = HolderDeletion {
            state: "pending".into(),
            ..Default::default()
        };
        if let Some(r) = s.receipts.get(&id) {
            h.state = "deleted".into();
            h.receipt = r.text.clone();
        } else if let Some(why) = s.refused.get(&id) {
            h.state = "refused".into();
            h.reason = why.clone();
        } else if let Some(u) = s.quarantined_until.get(&id) {
            h.state = "quarantined".into();
            h.quarantined_until = u.clone();
        }
        h.node_id = id;
        holders.push(h);
    }
    Elimination {
        record_id: record_id.to_string(),
        visa: t.as_ref().map(|t| t.visa.clone()).unwrap_or_default(),
        time: t.as_ref().map(|t| t.time.clone()).unwrap_or_default(),
        tombstone: signed.text,
        signature: hex::encode(signed.signature),
        holders,
    }
}

/// Eliminates, then sends the tombstones to the peers at once (in the background).
/// Returns the eliminations and how many blobs this node deleted.
pub async fn eliminate(
    archive: &Arc<Archive>,
    record_ids: &[String],
    visa: &str,
) -> Result<(Vec<Elimination>, u64)> {
    let before = archive.store.blob_count()?;
    let done = archive.eliminate(record_ids, visa).await?;
    let deleted = before.saturating_sub(archive.store.blob_count()?);
    let a = archive.clone();
    tokio::spawn(async move { crate::federation::upkeep::tombstones(&a).await });
    let list = done
        .iter()
        .map(|(id, s)| describe(archive, id, s))
        .collect();
    Ok((list, deleted))
}

/// One elimination, or all of them (`record_id` empty).
pub fn eliminations(archive: &Archive, record_id: &str) -> Result<Vec<Elimination>> {
    if !record_id.is_empty() {
        return match archive.elimination(record_id)? {
            Some(s) => Ok(vec![describe(archive, record_id, &s)]),
            None => Err(crate::store::StoreError::NotFound(format!(
                "{record_id} among eliminated records"
            ))
            .into()),
        };
    }
    let mut out = Vec::new();
    for kv in archive.store.tombstones_after("")? {
        let (id, bytes) = kv?;
        let s = EliminationState::decode(bytes.as_slice()).map_err(|e| {
            crate::elimination::EliminationError::Damaged(id.clone(), e.to_string())
        })?;
        out.push(describe(archive, &id, &s));
    }
    Ok(out)
}
