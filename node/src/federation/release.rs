//! Releasing communicable records to the holders, so that a peer territory's gateway still
//! serves a commune's public records when the commune's node is down.
//!
//! A record's key opens its manifest (and through it the file keys of that record only:
//! ARCHITECTURE.md, "Keys", invariant 2). Once a record's content is communicable under the
//! archives law, its key is no secret: the origin sends it to the holders of the record
//! (`Release`), once, and logs each disclosure (PREMIS `dissemination`, actor
//! `release-<holder node ID>`).
//! The holder checks the key opens the copy it holds and that the record is communicable
//! today by its own clock, then keeps the key in `held_releases`. Nothing else is ever
//! released: a record that is not communicable stays unreadable at its holders.

use super::replicator::peer_err;
use super::service::Caller;
use super::{FederationError, Peer};
use crate::archive::Archive;
use crate::record::communicability;
use crate::store::BlobStore;
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{Envelope, FileEntry, Manifest};
use archipel_proto::v1::{Refusal, ReleaseRequest, ReleaseResponse, ReleasedKey};
use std::sync::Arc;

/// Records released per request.
const BATCH: usize = 500;

pub(super) fn key(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len());
    k.extend_from_slice(a.as_bytes());
    k.extend_from_slice(b.as_bytes());
    k
}

pub(super) fn storage(e: impl std::fmt::Display) -> FederationError {
    FederationError::Storage(e.to_string())
}

/// Opens a held or own envelope's manifest with a record key.
fn open_manifest(envelope: &[u8], record_key: &str) -> Result<(Envelope, Manifest), String> {
    let env = Envelope::decode(envelope).map_err(|e| e.to_string())?;
    let id = crate::keys::parse_identity(record_key, "record key").map_err(|e| e.to_string())?;
    let plain =
        crate::keys::open_with(&id, &env.sealed_manifest, "manifest").map_err(|e| e.to_string())?;
    let m = Manifest::decode(&plain).map_err(|e| e.to_string())?;
    if m.record_id != env.record_id || m.blob_ids() != env.blobs {
        return Err("the manifest does not match its envelope".into());
    }
    Ok((env, m))
}

/// Holder side: keeps the released keys that open what it holds for the caller.
pub fn accept(
    archive: &Archive,
    caller: &Caller,
    request: ReleaseRequest,
) -> Result<ReleaseResponse, FederationError> {
    let tree = archive.store.db().open_tree("held_releases")?;
    let by_record = archive.store.db().open_tree("held_releases_by_record")?;
    let today = crate::clock::today();
    let mut answer = ReleaseResponse::default();
    for k in request.keys.into_iter().take(BATCH) {
        let refuse = |why: String| Refusal {
            record_id: k.record_id.clone(),
            reason: why,
        };
        let Some(held) = archive.holding.get(&caller.node_id, &k.record_id)? else {
            answer.refused.push(refuse("not held here".into()));
            continue;
        };
        let copy = held.copy.unwrap_or_default();
        match open_manifest(&copy.envelope, &k.record_key) {
            Ok((_, m)) if communicability(&m.metadata, today).is_open() => {
                tree.insert(key(&caller.node_id, &k.record_id), k.record_key.as_bytes())?;
                by_record.insert(k.record_id.as_bytes(), caller.node_id.as_bytes())?;
                answer.accepted += 1;
            }
            Ok(_) => answer.refused.push(refuse(
                "not communicable today: its key stays secret".into(),
            )),
            Err(why) => answer
                .refused
                .push(refuse(format!("the key does not open it: {why}"))),
        }
    }
    tree.flush()?;
    if answer.accepted > 0 {
        // The gateway's search index picks the released records up.
        archive.store.bump_generation();
    }
    Ok(answer)
}

/// The released record `record_id`, if another territory released it to this node.
pub fn find(archive: &Archive, record_id: &str) -> Result<Option<ReleasedRecord>, FederationError> {
    let db = archive.store.db();
    let Some(origin) = db
        .open_tree("held_releases_by_record")?
        .get(record_id.as_bytes())?
    else {
        return Ok(None);
    };
    let origin = String::from_utf8_lossy(&origin).into_owned();
    let Some(record_key) = db
        .open_tree("held_releases")?
        .get(key(&origin, record_id))?
    else {
        return Ok(None);
    };
    let Some(held) = archive.holding.get(&origin, record_id)? else {
        return Ok(None);
    };
    let copy = held.copy.unwrap_or_default();
    let (_, manifest) = open_manifest(&copy.envelope, &String::from_utf8_lossy(&record_key))
        .map_err(|why| FederationError::Storage(format!("released record {record_id}: {why}")))?;
    Ok(Some(ReleasedRecord { origin, manifest }))
}

/// A record of another territory whose key was released to this node.
#[derive(Debug, Clone)]
pub struct ReleasedRecord {
    pub origin: String,
    pub manifest: Manifest,
}

/// Every released record this node holds (for its gateway).
pub fn released(archive: &Archive) -> Result<Vec<ReleasedRecord>, FederationError> {
    let tree = archive.store.db().open_tree("held_releases")?;
    let mut out = Vec::new();
    for kv in tree.iter() {
        let (k, v) = kv?;
        // Node IDs are 32 characters.
        if k.len() <= 32 {
            continue;
        }
        let origin = String::from_utf8_lossy(&k[..32]).into_owned();
        let record = String::from_utf8_lossy(&k[32..]).into_owned();
        let Some(held) = archive.holding.get(&origin, &record)? else {
            continue;
        };
        let copy = held.copy.unwrap_or_default();
        match open_manifest(&copy.envelope, &String::from_utf8_lossy(&v)) {
            Ok((_, manifest)) => out.push(ReleasedRecord { origin, manifest }),
            Err(why) => tracing::warn!(origin, record, why, "released record does not open"),
        }
    }
    Ok(out)
}

/// The blob store to read a released record's files from.
pub fn blobs_of(archive: &Archive, origin: &str) -> Result<Arc<dyn BlobStore>, FederationError> {
    archive.holding.blobs_of(origin)
}

/// Reads `[offset, offset+length)` of a released record's file (verified like any read).
pub fn read_released(
    archive: &Archive,
    r: &ReleasedRecord,
    file: &FileEntry,
    offset: u64,
    length: u64,
    chunk: usize,
    sink: impl FnMut(Vec<u8>) -> bool,
) -> crate::error::Result<()> {
    let blobs = blobs_of(archive, &r.origin)?;
    crate::read::read_range_from(
        blobs,
        file,
        &r.manifest.record_id,
        offset,
        length,
        chunk,
        sink,
    )
}

/// Origin side: sends the keys of communicable records to their holders, once each.
pub async fn release_all(archive: &Arc<Archive>) -> Result<u32, FederationError> {
    let a = archive.clone();
    // (holder, record ID, record key) still to send.
    let todo = tokio::task::spawn_blocking(
        move || -> Result<Vec<(String, String, String)>, FederationError> {
            let sent = a.store.db().open_tree("released")?;
            let today = crate::clock::today();
            let mut todo = Vec::new();
            for id in a.record_ids() {
                let id = id.map_err(storage)?;
                let holders = a.custody.holders_of(&id)?;
                if holders
                    .iter()
                    .all(|h| sent.contains_key(key(&id, &h.node_id)).unwrap_or(false))
                {
                    continue;
                }
                let m = a.manifest(&id).map_err(storage)?;
                if !communicability(&m.metadata, today).is_open() {
                    continue;
                }
                let Some(ke) = a.store.key_envelope(&id)? else {
                    continue;
                };
                let rk = a.keys.unwrap_record_key(&ke, &id).map_err(storage)?;
                use age::secrecy::ExposeSecret;
                let text = rk.to_string().expose_secret().to_string();
                for h in holders {
                    if !sent.contains_key(key(&id, &h.node_id))? {
                        todo.push((h.node_id, id.clone(), text.clone()));
                    }
                }
            }
            Ok(todo)
        },
    )
    .await
    .map_err(storage)??;
    let mut accepted = 0;
    let peers = archive.peers.list().map_err(storage)?;
    let sent = archive.store.db().open_tree("released")?;
    for peer in peers {
        let mine: Vec<&(String, String, String)> =
            todo.iter().filter(|(h, _, _)| *h == peer.node_id).collect();
        for chunk in mine.chunks(BATCH) {
            accepted += send(archive, &peer, chunk, &sent).await?;
        }
    }
    Ok(accepted)
}

async fn send(
    archive: &Arc<Archive>,
    peer: &Peer,
    chunk: &[&(String, String, String)],
    sent: &sled::Tree,
) -> Result<u32, FederationError> {
    let mut client = archive.peers.connect(peer).await?;
    let request = ReleaseRequest {
        keys: chunk
            .iter()
            .map(|(_, id, k)| ReleasedKey {
                record_id: id.clone(),
                record_key: k.clone(),
            })
            .collect(),
    };
    let answer = client
        .release(request)
        .await
        .map_err(|s| peer_err(peer, s))?
        .into_inner();
    let refused: Vec<&str> = answer
        .refused
        .iter()
        .map(|r| r.record_id.as_str())
        .collect();
    for r in &answer.refused {
        tracing::warn!(holder = %peer.node_id, record = %r.record_id, reason = %r.reason, "release refused");
    }
    for (_, id, record_key) in chunk {
        if refused.contains(&id.as_str()) {
            continue;
        }
        sent.insert(
            key(id, &peer.node_id),
            crate::clock::now_rfc3339().as_bytes(),
        )?;
        // Each disclosure is logged, naming the holder (anyone can check a published key
        // against the detail).
        archive
            .append_event(
                "dissemination",
                id,
                &format!("release-{}", peer.node_id),
                Outcome::Success,
                *blake3::hash(record_key.as_bytes()).as_bytes(),
            )
            .map_err(storage)?;
    }
    sent.flush()?;
    Ok(answer.accepted)
}
