//! Scrub and repair: every `scrub_interval_secs` this node re-reads every blob it keeps,
//! its own records' and those it holds for other territories, and checks each against its
//! BLAKE3 address. A blob found missing or corrupt is fetched again from another copy:
//! - for a held blob of origin O: from O itself, else from any other peer holding O's copy;
//! - for one of this node's own blobs: from the holders that receipted the record.
//!
//! Whatever is fetched is checked against the blob's address before it is stored, so a
//! peer sending altered bytes is caught (and logged) instead of trusted. Each damaged blob
//! gives a PREMIS `fixity check` failure event, each repair a `replication` event.

use super::{FederationError, Peer};
use crate::archive::Archive;
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{BlobId, Envelope};
use archipel_proto::v1::FetchBlobRequest;
use std::collections::HashSet;
use std::sync::Arc;

/// What one scrub found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScrubReport {
    pub blobs_checked: u64,
    pub damaged: u64,
    pub repaired: u64,
    /// Blobs no copy could restore (yet): a later scrub tries again.
    pub unrepaired: u64,
}

enum Damage {
    Missing,
    Corrupt,
}

/// Fetches a blob of `origin`'s from the first of `sources` that has it intact.
async fn fetch_from(
    archive: &Arc<Archive>,
    sources: &[Peer],
    origin: &str,
    blob: &BlobId,
) -> Option<Vec<u8>> {
    for peer in sources {
        let Ok(mut client) = archive.peers.client(peer).await else {
            continue;
        };
        let answer = client
            .fetch_blob(FetchBlobRequest {
                origin: origin.to_string(),
                blob_id: blob.to_vec(),
            })
            .await;
        let Ok(answer) = answer else { continue };
        let data = answer.into_inner().data;
        if blake3::hash(&data).as_bytes() == blob {
            return Some(data.into());
        }
        // A peer that serves bytes not matching the address is lying or broken: say so.
        tracing::warn!(peer = %peer.node_id, blob = %hex::encode(blob), "peer sent an altered blob");
        let detail = *blake3::hash(&data).as_bytes();
        let _ = archive.append_event(
            "validation",
            &peer.node_id,
            "scrub",
            Outcome::Failure,
            detail,
        );
    }
    None
}

fn check(
    store: &dyn crate::store::BlobStore,
    id: &BlobId,
) -> Result<Option<Damage>, FederationError> {
    Ok(match store.get(id)? {
        None => Some(Damage::Missing),
        Some(b) if blake3::hash(&b).as_bytes() != id => Some(Damage::Corrupt),
        Some(_) => None,
    })
}

/// Scrubs what this node holds for other territories.
pub async fn scrub_held(archive: &Arc<Archive>) -> Result<ScrubReport, FederationError> {
    let mut report = ScrubReport::default();
    let peers = archive
        .peers
        .list()
        .map_err(|e| FederationError::Storage(e.to_string()))?;
    for (origin, _) in archive.holding.origins()? {
        let store = archive.holding.blobs_of(&origin)?;
        // The origin first, then everyone else that may hold its records.
        let mut sources: Vec<Peer> = peers
            .iter()
            .filter(|p| p.node_id == origin)
            .cloned()
            .collect();
        sources.extend(peers.iter().filter(|p| p.node_id != origin).cloned());
        let a = archive.clone();
        let o = origin.clone();
        let damaged = tokio::task::spawn_blocking(move || {
            let mut seen = HashSet::new();
            let mut damaged = Vec::new();
            let mut checked = 0u64;
            for rec in a.holding.records_of(&o) {
                let (record_id, env) = rec?;
                for b in env.blobs {
                    if !seen.insert(b) {
                        continue;
                    }
                    checked += 1;
                    if let Some(d) = check(store.as_ref(), &b)? {
                        damaged.push((record_id.clone(), b, d));
                    }
                }
            }
            Ok::<_, FederationError>((checked, damaged))
        })
        .await
        .map_err(|e| FederationError::Storage(e.to_string()))??;
        report.blobs_checked += damaged.0;
        for (record_id, blob, damage) in damaged.1 {
            report.damaged += 1;
            let what = match damage {
                Damage::Missing => "missing",
                Damage::Corrupt => "corrupt",
            };
            tracing::warn!(origin = %origin, record = %record_id, blob = %hex::encode(blob), what, "held blob damaged");
            archive
                .append_event("fixity check", &record_id, "scrub", Outcome::Failure, blob)
                .map_err(|e| FederationError::Storage(e.to_string()))?;
            match fetch_from(archive, &sources, &origin, &blob).await {
                Some(bytes) => {
                    let a = archive.clone();
                    let o = origin.clone();
                    tokio::task::spawn_blocking(move || a.holding.repair_blob(&o, &blob, &bytes))
                        .await
                        .map_err(|e| FederationError::Storage(e.to_string()))??;
                    archive
                        .append_event("replication", &record_id, "scrub", Outcome::Success, blob)
                        .map_err(|e| FederationError::Storage(e.to_string()))?;
                    report.repaired += 1;
                }
                None => report.unrepaired += 1,
            }
        }
    }
    archive.store.flush().await?;
    Ok(report)
}

/// Scrubs this node's own blobs, repairing from the holders.
pub async fn scrub_own(archive: &Arc<Archive>) -> Result<ScrubReport, FederationError> {
    let mut report = ScrubReport::default();
    let a = archive.clone();
    let damaged = tokio::task::spawn_blocking(move || {
        let mut seen = HashSet::new();
        let mut damaged = Vec::new();
        let mut checked = 0u64;
        for id in a.record_ids() {
            let id = id.map_err(|e| FederationError::Storage(e.to_string()))?;
            let Some(bytes) = a.store.envelope(&id)? else {
                continue;
            };
            let env = Envelope::decode(&bytes)
                .map_err(|e| FederationError::Storage(format!("envelope of {id}: {e}")))?;
            for b in env.blobs {
                if !seen.insert(b) {
                    continue;
                }
                checked += 1;
                if check(a.store.blobs.as_ref(), &b)?.is_some() {
                    damaged.push((id.clone(), b));
                }
            }
        }
        Ok::<_, FederationError>((checked, damaged))
    })
    .await
    .map_err(|e| FederationError::Storage(e.to_string()))??;
    report.blobs_checked = damaged.0;
    let me = archive.identity.node_id.clone();
    for (record_id, blob) in damaged.1 {
        report.damaged += 1;
        tracing::warn!(record = %record_id, blob = %hex::encode(blob), "own blob damaged; fetching it from a holder");
        archive
            .append_event("fixity check", &record_id, "scrub", Outcome::Failure, blob)
            .map_err(|e| FederationError::Storage(e.to_string()))?;
        let mut sources = Vec::new();
        for h in archive.custody.holders_of(&record_id)? {
            if let Some(p) = archive
                .peers
                .get(&h.node_id)
                .map_err(|e| FederationError::Storage(e.to_string()))?
            {
                sources.push(p);
            }
        }
        match fetch_from(archive, &sources, &me, &blob).await {
            Some(bytes) => {
                let a = archive.clone();
                tokio::task::spawn_blocking(move || {
                    a.store.blobs.delete(&blob)?;
                    a.store.blobs.put(&blob, &bytes)?;
                    a.store.blobs.flush()
                })
                .await
                .map_err(|e| FederationError::Storage(e.to_string()))??;
                archive
                    .append_event("replication", &record_id, "scrub", Outcome::Success, blob)
                    .map_err(|e| FederationError::Storage(e.to_string()))?;
                report.repaired += 1;
            }
            None => report.unrepaired += 1,
        }
    }
    archive.store.flush().await?;
    Ok(report)
}
