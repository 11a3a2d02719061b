//! The log owner's side of witnessing: ask each peer to cosign our latest checkpoint, keep
//! the cosignatures (attached to our checkpoints by the audit API), and push the leaves the
//! peer lacks so that it keeps a copy of our log.

use super::{WitnessError, is_cosigner_of};
use crate::archive::Archive;
use crate::federation::Peer;
use crate::log::LogError;
use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::note::CosignatureVerifier;
use archipel_proto::rfc6962::consistency_proof_between;
use archipel_proto::v1::federation_client::FederationClient;
use archipel_proto::v1::{AddCheckpointRequest, HelloRequest, PushLogEntriesRequest};
use archipel_proto::witness::{AddCheckpointBody, parse_cosignature_lines, parse_size_body};
use ed25519_dalek::VerifyingKey;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// How long one call to a witness may take (a push page is at most ~4 MiB).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Leaves a push carries.
const PAGE: u64 = super::MAX_PUSH as u64;

type Client = FederationClient<Channel>;

fn storage(e: impl std::fmt::Display) -> WitnessError {
    WitnessError::Storage(e.to_string())
}

/// Asks every peer to witness our latest checkpoint (signing one if the log grew), stores
/// the cosignatures they return, and pushes them the leaves they lack. Returns how many new
/// cosignatures were gained. A peer that is unreachable or refuses is logged and skipped;
/// only a failure of our own storage is an error.
pub async fn collect_cosignatures(archive: &Arc<Archive>) -> Result<u32, WitnessError> {
    let a = archive.clone();
    let signed = tokio::task::spawn_blocking(move || a.log.checkpoint())
        .await
        .map_err(|e| storage(format!("worker thread: {e}")))?;
    let (cp, note) = match signed {
        Ok(s) => s,
        Err(LogError::Empty) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let peers = archive.peers.list().map_err(storage)?;
    let mut gained = 0;
    for peer in peers {
        match witness_with(archive, &peer, &cp, &note).await {
            Ok(true) => gained += 1,
            Ok(false) => {}
            Err(e @ WitnessError::Refused { status: 422, .. }) => {
                // The witness holds a checkpoint of ours that this log does not extend.
                tracing::error!(peer = %peer.node_id, size = cp.size, error = %e,
                    "a witness refuses our checkpoint as inconsistent with what it cosigned before");
            }
            Err(e @ (WitnessError::Storage(_) | WitnessError::Log(_))) => return Err(e),
            Err(e) => {
                tracing::warn!(peer = %peer.node_id, size = cp.size, error = %e, "witnessing failed");
            }
        }
    }
    Ok(gained)
}

async fn call<T>(
    peer: &Peer,
    f: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, WitnessError> {
    let err = |reason: String| WitnessError::Peer {
        node_id: peer.node_id.clone(),
        reason,
    };
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(s)) => Err(err(format!("{:?}: {}", s.code(), s.message()))),
        Err(_) => Err(err(format!("no answer within {CALL_TIMEOUT:?}"))),
    }
}

/// One peer: cosignature (unless it already cosigned this size), then leaves.
async fn witness_with(
    archive: &Arc<Archive>,
    peer: &Peer,
    cp: &Checkpoint,
    note: &str,
) -> Result<bool, WitnessError> {
    let unreachable = |reason: String| WitnessError::Peer {
        node_id: peer.node_id.clone(),
        reason,
    };
    // Bounded: one unreachable peer must not hold up the others.
    let mut client = tokio::time::timeout(CALL_TIMEOUT, archive.peers.client(peer))
        .await
        .map_err(|_| unreachable(format!("no connection within {CALL_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let already = archive
        .log
        .cosignatures_at(cp.size)?
        .iter()
        .any(|(w, _)| *w == peer.node_id);
    let gained = if already {
        false
    } else {
        let key = peer_key(archive, peer, &mut client).await?;
        cosign(archive, peer, &mut client, &key, cp, note).await?;
        true
    };
    push_leaves(archive, peer, &mut client, cp.size).await?;
    Ok(gained)
}

/// The peer's Ed25519 key: from its Hello, checked against the node ID we pinned (the node
/// ID is derived from the key), and remembered.
async fn peer_key(
    archive: &Archive,
    peer: &Peer,
    client: &mut Client,
) -> Result<VerifyingKey, WitnessError> {
    let bad = |reason: String| WitnessError::Peer {
        node_id: peer.node_id.clone(),
        reason,
    };
    let state = archive.custody.state(&peer.node_id).map_err(storage)?;
    let known = hex::decode(&state.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .filter(|k| crate::identity::node_id_of(k) == peer.node_id);
    if let Some(k) = known {
        return Ok(k);
    }
    let hello = call(peer, client.hello(HelloRequest {})).await?;
    let key = <[u8; 32]>::try_from(hello.public_key.as_slice())
        .ok()
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| bad("its Hello carries no valid Ed25519 key".into()))?;
    if crate::identity::node_id_of(&key) != peer.node_id {
        return Err(bad(
            "the key in its Hello is not the key of the pinned node ID".into(),
        ));
    }
    let hex_key = hex::encode(key.as_bytes());
    archive
        .custody
        .update_state(&peer.node_id, |s| s.public_key = hex_key.clone())
        .map_err(storage)?;
    Ok(key)
}

/// The add-checkpoint body from `old`: the proof is built from our log when it can be; when
/// it cannot (the witness knows a larger tree than ours), an empty one, and the witness
/// judges (it keeps evidence of forks).
fn body(archive: &Archive, old: u64, cp: &Checkpoint, note: &str) -> Result<Vec<u8>, WitnessError> {
    let proof = if old > 0 && old < cp.size {
        consistency_proof_between(&archive.log.view()?, old, cp.size).unwrap_or_default()
    } else {
        Vec::new()
    };
    Ok(AddCheckpointBody {
        old_size: old,
        proof,
        checkpoint: note.as_bytes().to_vec(),
    }
    .encode())
}

async fn cosign(
    archive: &Archive,
    peer: &Peer,
    client: &mut Client,
    key: &VerifyingKey,
    cp: &Checkpoint,
    note: &str,
) -> Result<(), WitnessError> {
    let old = archive
        .custody
        .state(&peer.node_id)
        .map_err(storage)?
        .cosigned_size;
    let mut resp = call(
        peer,
        client.add_checkpoint(AddCheckpointRequest {
            body: body(archive, old, cp, note)?,
        }),
    )
    .await?;
    if resp.status == 409 {
        // Our record of what it cosigned is stale (a witness or a node restored): once more
        // from the size it says.
        let size = parse_size_body(&resp.body).map_err(|e| WitnessError::Refused {
            node_id: peer.node_id.clone(),
            status: 409,
            reason: format!("unreadable size: {e}"),
        })?;
        resp = call(
            peer,
            client.add_checkpoint(AddCheckpointRequest {
                body: body(archive, size, cp, note)?,
            }),
        )
        .await?;
    }
    if resp.status != 200 {
        return Err(WitnessError::Refused {
            node_id: peer.node_id.clone(),
            status: resp.status,
            reason: String::from_utf8_lossy(&resp.body).trim().to_string(),
        });
    }
    let bad = |reason: String| WitnessError::BadCosignature {
        node_id: peer.node_id.clone(),
        reason,
    };
    let lines = parse_cosignature_lines(&resp.body).map_err(|e| bad(e.to_string()))?;
    let text = cp.to_text();
    let mut found = None;
    for sig in lines {
        if !is_cosigner_of(&sig.name, &peer.node_id) {
            continue;
        }
        let v = CosignatureVerifier::new(&sig.name, *key).map_err(|e| bad(e.to_string()))?;
        if sig.key_id == v.key_id() && v.verify(&text, &sig.signature).is_ok() {
            found = Some(sig);
            break;
        }
    }
    let sig = found.ok_or_else(|| bad(format!("no line verifies with its key for {text:?}")))?;
    archive
        .log
        .store_cosignature(cp.size, &peer.node_id, &sig.to_line())?;
    let size = cp.size;
    archive
        .custody
        .update_state(&peer.node_id, |s| s.cosigned_size = size)
        .map_err(storage)?;
    tracing::info!(peer = %peer.node_id, size, "checkpoint cosigned by a witness");
    Ok(())
}

/// Pushes our leaves from what the witness keeps up to `upto` (the size it cosigned).
async fn push_leaves(
    archive: &Arc<Archive>,
    peer: &Peer,
    client: &mut Client,
    upto: u64,
) -> Result<(), WitnessError> {
    let mut pos = call(
        peer,
        client.push_log_entries(PushLogEntriesRequest {
            start: 0,
            leaves: vec![],
        }),
    )
    .await?
    .size;
    while pos < upto {
        let end = upto.min(pos + PAGE);
        let a = archive.clone();
        let leaves = tokio::task::spawn_blocking(move || {
            let view = a.log.view()?;
            (pos..end)
                .map(|i| view.leaf(i))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| storage(format!("worker thread: {e}")))??;
        let kept = call(
            peer,
            client.push_log_entries(PushLogEntriesRequest { start: pos, leaves }),
        )
        .await?
        .size;
        if kept <= pos {
            return Err(WitnessError::Peer {
                node_id: peer.node_id.clone(),
                reason: format!("kept no leaf of the page from {pos}"),
            });
        }
        pos = kept;
    }
    Ok(())
}
