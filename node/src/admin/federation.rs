//! Admin RPCs about the federation: where a record's copies are, and per-peer accounting.

use crate::archive::Archive;
use crate::error::Error;
use crate::federation::replicator;
use crate::store::StoreError;
use archipel_proto::v1::{CustodyResponse, FederationReportResponse, PeerAccount};
use std::sync::Arc;

fn fed(e: crate::federation::PeerError) -> Error {
    Error::Peer(e)
}

/// Blocking sled work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Protocol(format!("worker thread: {e}")))?
}

pub async fn custody(archive: &Arc<Archive>, record_id: &str) -> Result<CustodyResponse, Error> {
    let a = archive.clone();
    let id = record_id.to_string();
    blocking(move || {
        let envelope = a
            .store
            .envelope(&id)?
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let digest = *blake3::hash(&envelope).as_bytes();
        let key_digest = *blake3::hash(&a.store.key_envelope(&id)?.unwrap_or_default()).as_bytes();
        let peers = a.peers.list().map_err(fed)?;
        let cands = replicator::candidates(&a, &peers)?;
        let plan = replicator::plan(&a, &cands, &id, &digest, &key_digest)?;
        let holders = a
            .custody
            .holders_of(&id)?
            .into_iter()
            .filter(|h| plan.holders.contains(&h.node_id) || plan.stale.contains(&h.node_id))
            .collect();
        Ok(CustodyResponse {
            record_id: id,
            copies_wanted: a.config.federation.replication_factor,
            holders,
            pending: plan.new,
        })
    })
    .await
}

pub async fn report(archive: &Arc<Archive>) -> Result<FederationReportResponse, Error> {
    let a = archive.clone();
    blocking(move || {
        let peers = a.peers.list().map_err(fed)?;
        let cands = replicator::candidates(&a, &peers)?;
        let grace = a.config.federation.holder_grace_secs;
        let mut accounts = Vec::with_capacity(peers.len());
        for p in &peers {
            let (records_for_us, bytes_for_us) = a.custody.totals_at(&p.node_id)?;
            let we_hold = a.holding.totals(&p.node_id)?;
            let state = a.custody.state(&p.node_id)?;
            accounts.push(PeerAccount {
                node_id: p.node_id.clone(),
                territory: p.territory.clone(),
                zone: p.zone.clone(),
                offer_bytes: p.offer_bytes,
                records_held_for_us: records_for_us,
                bytes_held_for_us: bytes_for_us,
                records_we_hold: we_hold.records,
                bytes_we_hold: we_hold.bytes,
                pending_records: 0,
                last_challenge: state.last_challenge.clone(),
                last_challenge_outcome: state.last_challenge_outcome.clone(),
                cosigned_size: state.cosigned_size,
                last_seen: if state.last_seen == 0 {
                    String::new()
                } else {
                    crate::clock::rfc3339(state.last_seen as i64)
                },
                gone: a.custody.is_gone(&p.node_id, grace)?,
            });
        }
        // One pass over the receipts (sorted by record): a record is complete when enough
        // of its receipted holders still count, and a receipt naming an older envelope is
        // pending at that holder. Cheap enough to poll: no placement is computed.
        let counting: Vec<&str> = cands
            .iter()
            .filter(|c| !a.custody.is_gone(&c.node_id, grace).unwrap_or(true))
            .map(|c| c.node_id.as_str())
            .collect();
        let wanted = a.config.federation.replication_factor.saturating_sub(1) as usize;
        let records = a.store.record_count()?;
        let mut complete = 0u64;
        let mut current: Option<(String, [u8; 32], usize)> = None;
        let close = |cur: &Option<(String, [u8; 32], usize)>, complete: &mut u64| {
            if let Some((_, _, n)) = cur
                && *n >= wanted
            {
                *complete += 1;
            }
        };
        for h in a.custody.all()? {
            let (record_id, holder) = h?;
            if current.as_ref().is_none_or(|(r, _, _)| *r != record_id) {
                close(&current, &mut complete);
                let digest = a
                    .store
                    .envelope(&record_id)?
                    .map(|e| *blake3::hash(&e).as_bytes())
                    .unwrap_or_default();
                current = Some((record_id.clone(), digest, 0));
            }
            if !counting.contains(&holder.as_str()) {
                continue;
            }
            let Some((_, digest, n)) = current.as_mut() else {
                continue;
            };
            if a.custody.receipted_digest(&holder, &record_id)?.as_ref() == Some(digest) {
                *n += 1;
            } else if let Some(acc) = accounts.iter_mut().find(|x| x.node_id == holder) {
                acc.pending_records += 1;
            }
        }
        close(&current, &mut complete);
        if wanted == 0 {
            complete = records;
        }
        Ok(FederationReportResponse {
            replication_factor: a.config.federation.replication_factor,
            zone: a.config.federation.zone.clone(),
            peers: accounts,
            records,
            fully_replicated: complete,
        })
    })
    .await
}
