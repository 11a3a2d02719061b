//! Proofs of storage: the origin asks a holder for a keyed BLAKE3 (key = a fresh random
//! nonce) of blobs chosen at random among the records it receipted. Only a holder that
//! still has the bytes can answer, and a nonce is never reused, so answers cannot be kept
//! from an earlier challenge. The origin computes the same from its own copy.
//!
//! Every challenge is logged (PREMIS `fixity check`, object = the holder's node ID). A
//! failure forgets the holder's receipts for the records concerned, so replication sends
//! them again, re-checking what the holder has (`verify_existing`).

use super::replicator::{peer_err, peer_key};
use super::{FederationError, Peer};
use crate::archive::Archive;
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{BlobId, Envelope};
use archipel_proto::v1::ChallengeRequest;
use rand::Rng;
use std::sync::Arc;

/// The outcome of one challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeResult {
    pub holder: String,
    pub checked: usize,
    /// Records whose blob was missing or wrong at the holder.
    pub failed_records: Vec<String>,
}

/// Picks up to `n` (record, blob) pairs at random among the records receipted by `holder`
/// (reservoir sampling: one pass, memory bounded by `n`).
fn sample(
    archive: &Archive,
    holder: &str,
    n: usize,
) -> Result<Vec<(String, BlobId)>, FederationError> {
    let mut rng = rand::thread_rng();
    let mut picked: Vec<String> = Vec::with_capacity(n);
    for (i, id) in archive.custody.records_at(holder).enumerate() {
        let id = id?;
        if picked.len() < n {
            picked.push(id);
        } else {
            let j = rng.gen_range(0..=i);
            if j < n {
                picked[j] = id;
            }
        }
    }
    let mut out = Vec::with_capacity(picked.len());
    for id in picked {
        let Some(bytes) = archive.store.envelope(&id)? else {
            continue;
        };
        let env = Envelope::decode(&bytes)
            .map_err(|e| FederationError::Storage(format!("envelope of {id}: {e}")))?;
        if env.blobs.is_empty() {
            continue;
        }
        let b = env.blobs[rng.gen_range(0..env.blobs.len())];
        out.push((id, b));
    }
    Ok(out)
}

/// Challenges one holder.
pub async fn challenge(
    archive: &Arc<Archive>,
    peer: &Peer,
) -> Result<Option<ChallengeResult>, FederationError> {
    let n = archive.config.federation.challenge_blobs as usize;
    let a = archive.clone();
    let holder = peer.node_id.clone();
    let picks = tokio::task::spawn_blocking(move || sample(&a, &holder, n))
        .await
        .map_err(|e| FederationError::Storage(e.to_string()))??;
    if picks.is_empty() {
        return Ok(None);
    }
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill(&mut nonce);
    // What the answers must be, from our own copies (a blob we lost ourselves cannot be
    // checked: scrub repairs it from the holders).
    let a = archive.clone();
    let ids: Vec<BlobId> = picks.iter().map(|(_, b)| *b).collect();
    let expected = tokio::task::spawn_blocking(move || {
        ids.iter()
            .map(|b| {
                Ok(match a.store.blobs.get(b)? {
                    Some(bytes) if blake3::hash(&bytes).as_bytes() == b => {
                        Some(*blake3::keyed_hash(&nonce, &bytes).as_bytes())
                    }
                    _ => None,
                })
            })
            .collect::<Result<Vec<_>, FederationError>>()
    })
    .await
    .map_err(|e| FederationError::Storage(e.to_string()))??;
    let mut client = archive.peers.connect(peer).await?;
    peer_key(archive, peer, &mut client).await?;
    let request = ChallengeRequest {
        nonce: nonce.to_vec(),
        blob_ids: picks.iter().map(|(_, b)| b.to_vec()).collect(),
    };
    let answer = match client.challenge(request).await {
        Ok(a) => a.into_inner(),
        Err(s) => {
            archive.custody.failed(&peer.node_id)?;
            return Err(peer_err(peer, s));
        }
    };
    archive.custody.seen(&peer.node_id)?;
    let mut result = ChallengeResult {
        holder: peer.node_id.clone(),
        checked: 0,
        failed_records: Vec::new(),
    };
    let mut transcript = blake3::Hasher::new();
    transcript.update(&nonce);
    for (i, ((record, blob), want)) in picks.iter().zip(&expected).enumerate() {
        let Some(want) = want else { continue };
        let got = answer.proofs.get(i).map(Vec::as_slice).unwrap_or(&[]);
        transcript.update(blob);
        transcript.update(got);
        result.checked += 1;
        if got != want.as_slice() && !result.failed_records.contains(record) {
            result.failed_records.push(record.clone());
        }
    }
    let passed = result.failed_records.is_empty();
    let outcome = if passed {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    archive
        .append_event(
            "fixity check",
            &peer.node_id,
            "challenge",
            outcome,
            *transcript.finalize().as_bytes(),
        )
        .map_err(|e| FederationError::Storage(e.to_string()))?;
    let now = crate::clock::now_rfc3339();
    archive.custody.update_state(&peer.node_id, |s| {
        s.last_challenge = now.clone();
        s.last_challenge_outcome = if passed { "passed" } else { "failed" }.to_string();
    })?;
    if !passed {
        tracing::warn!(holder = %peer.node_id, records = ?result.failed_records, "holder failed a proof-of-storage challenge");
        for r in &result.failed_records {
            archive.custody.forget(&peer.node_id, r)?;
            archive.replication.push(r);
        }
        archive.replication.suspect(&peer.node_id);
    }
    archive.store.flush().await?;
    Ok(Some(result))
}

/// Challenges every peer that holds something of ours; returns the results.
pub async fn challenge_all(archive: &Arc<Archive>) -> Vec<ChallengeResult> {
    let Ok(peers) = archive.peers.list() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in peers {
        match challenge(archive, &p).await {
            Ok(Some(r)) => out.push(r),
            Ok(None) => {}
            Err(e) => tracing::warn!(holder = %p.node_id, error = %e, "challenge failed"),
        }
    }
    out
}
