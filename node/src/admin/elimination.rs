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
        holders.push(holder_deletion(s, id));
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

/// How far one holder got: a receipt wins over a refusal, which wins over a quarantine.
fn holder_deletion(s: &EliminationState, node_id: String) -> HolderDeletion {
    let mut h = HolderDeletion {
        state: "pending".into(),
        ..Default::default()
    };
    if let Some(r) = s.receipts.get(&node_id) {
        h.state = "deleted".into();
        h.receipt = r.text.clone();
    } else if let Some(why) = s.refused.get(&node_id) {
        h.state = "refused".into();
        h.reason = why.clone();
    } else if let Some(u) = s.quarantined_until.get(&node_id) {
        h.state = "quarantined".into();
        h.quarantined_until = u.clone();
    }
    h.node_id = node_id;
    h
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

#[cfg(test)]
mod tests {
    use super::*;
    use archipel_proto::v1::SignedText;

    #[test]
    fn each_holder_shows_its_furthest_state() {
        let mut s = EliminationState::default();
        s.quarantined_until
            .insert("q".into(), "2026-12-26T00:00:00Z".into());
        s.refused
            .insert("r".into(), "suspended by the holder".into());
        s.quarantined_until
            .insert("r".into(), "2026-12-26T00:00:00Z".into());
        s.receipts.insert(
            "d".into(),
            SignedText {
                text: "receipt".into(),
                signature: vec![1],
            },
        );
        s.refused.insert("d".into(), "an old refusal".into());
        let h = |id: &str| holder_deletion(&s, id.to_string());
        assert_eq!(h("p").state, "pending");
        assert_eq!(h("q").state, "quarantined");
        assert_eq!(h("q").quarantined_until, "2026-12-26T00:00:00Z");
        assert_eq!(h("r").state, "refused");
        assert_eq!(h("r").reason, "suspended by the holder");
        assert_eq!(h("d").state, "deleted");
        assert_eq!(h("d").receipt, "receipt");
        assert_eq!(h("d").node_id, "d");
    }
}
