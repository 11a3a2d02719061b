//! Disaster recovery: a node wiped by ransomware is rebuilt on a blank machine from its
//! recovery kit (its keys) and its peers (its data).
//!
//! Order, and why:
//! 1. the peers are found at the addresses given (their node IDs were in the wiped peer
//!    list, so they are learnt from their TLS certificates: nothing they send is trusted);
//! 2. the audit log comes back first, from the witness keeping the longest history; it is
//!    installed only if it matches a checkpoint this node's own key signed;
//! 3. every record a peer holds for this node: its envelope must carry this node's
//!    signature, its key envelope must open with the territory key, its manifest must name
//!    the envelope's blobs, and every blob must hash to its address; then it is committed
//!    exactly as an ingest would (catalog, deduplication index, reference counts);
//! 4. custody is rebuilt from the holders' fresh receipts, and every record is checked end
//!    to end (decryption and plaintext digests) before the restore says it is done.

use super::custody::NewReceipt;
use super::replicator::peer_key;
use super::transport::discover_node_id;
use super::{FederationError, Peer};
use crate::archive::Archive;
use crate::store::CommitPlan;
use archipel_proto::custody::Receipt;
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{BlobId, Envelope, Manifest};
use archipel_proto::v1::federation_client::FederationClient;
use archipel_proto::v1::{FetchBlobRequest, FetchLogRequest, HeldRecord, ListHeldRequest};
use futures::StreamExt;
use std::collections::{HashMap, HashSet};

/// Records restored at the same time.
const PARALLEL_RECORDS: usize = 8;
use std::sync::Arc;
use tonic::transport::Channel;

/// What a restore did.
#[derive(Debug, Default, Clone)]
pub struct RestoreReport {
    pub peers: Vec<Peer>,
    pub log_size: u64,
    pub records: u64,
    pub bytes: u64,
    pub blobs_fetched: u64,
    /// Records refused (bad signature, undecryptable, blobs nowhere intact).
    pub refused: Vec<String>,
    /// Records whose end-to-end check failed after the restore.
    pub damaged: Vec<String>,
    /// Lawful eliminations whose tombstones came back from the holders.
    pub eliminations: u64,
}

/// Progress, for a bar: records restored so far, and the total announced by the peers.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

fn storage(e: impl std::fmt::Display) -> FederationError {
    FederationError::Storage(e.to_string())
}

struct Source {
    peer: Peer,
    client: FederationClient<Channel>,
}

async fn connect_all(
    archive: &Arc<Archive>,
    addresses: &[String],
) -> Result<Vec<Source>, FederationError> {
    let mut out = Vec::new();
    for address in addresses {
        let node_id = discover_node_id(address, &archive.identity.signing_key)
            .await
            .map_err(|e| FederationError::Peer {
                node_id: "?".into(),
                reason: format!("{address}: {e}"),
            })?;
        archive
            .peers
            .pinned
            .insert(node_id.clone())
            .map_err(storage)?;
        let mut peer = Peer {
            node_id: node_id.clone(),
            address: address.clone(),
            territory: "?".into(),
            zone: String::new(),
            offer_bytes: 0,
            added_at: crate::clock::now_rfc3339(),
        };
        let hello = archive
            .peers
            .hello(&peer)
            .await
            .map_err(|e| FederationError::Peer {
                node_id: node_id.clone(),
                reason: format!(
                    "{e} (is this node still pinned there? peers keep pinning a wiped node's ID)"
                ),
            })?;
        peer.territory = hello.territory;
        archive.peers.add(&peer).map_err(storage)?;
        let mut client = archive.peers.client(&peer).await.map_err(storage)?;
        peer_key(archive, &peer, &mut client).await?;
        out.push(Source { peer, client });
    }
    Ok(out)
}

/// The longest copy of our log any witness keeps, installed if it verifies.
async fn restore_log(
    archive: &Arc<Archive>,
    sources: &mut [Source],
) -> Result<u64, FederationError> {
    let mut best: Option<(Vec<Vec<u8>>, String)> = None;
    for s in sources.iter_mut() {
        let mut leaves = Vec::new();
        let mut checkpoint = String::new();
        loop {
            let page = match s
                .client
                .fetch_log(FetchLogRequest {
                    start: leaves.len() as u64,
                    limit: 1000,
                })
                .await
            {
                Ok(p) => p.into_inner(),
                Err(e) => {
                    tracing::warn!(peer = %s.peer.node_id, error = %e.message(), "no log from this peer");
                    break;
                }
            };
            if checkpoint.is_empty() {
                checkpoint = page.checkpoint.clone();
            }
            let got = page.leaves.len();
            leaves.extend(page.leaves);
            if got == 0 || leaves.len() as u64 >= page.size {
                break;
            }
        }
        if checkpoint.is_empty() {
            continue;
        }
        // Only the leaves the checkpoint covers.
        let size = archipel_proto::checkpoint::Checkpoint::open(
            checkpoint.as_bytes(),
            &archive.log.verifier(),
        )
        .map(|cp| cp.size)
        .unwrap_or(0);
        if size == 0 || (leaves.len() as u64) < size {
            tracing::warn!(peer = %s.peer.node_id, "this peer's copy of the log does not verify");
            continue;
        }
        leaves.truncate(size as usize);
        if best.as_ref().is_none_or(|(l, _)| l.len() < leaves.len()) {
            best = Some((leaves, checkpoint));
        }
    }
    let Some((leaves, note)) = best else {
        tracing::warn!("no peer keeps a copy of this node's audit log; it starts anew");
        return Ok(0);
    };
    let a = archive.clone();
    let cp = tokio::task::spawn_blocking(move || a.log.install(&leaves, &note))
        .await
        .map_err(storage)??;
    Ok(cp.size)
}

/// Checks a held copy and opens its manifest.
fn open_copy(archive: &Archive, held: &HeldRecord) -> Result<(Envelope, Manifest), String> {
    let copy = held.copy.clone().unwrap_or_default();
    let env = Envelope::decode(&copy.envelope).map_err(|e| e.to_string())?;
    if env.origin != archive.identity.node_id {
        return Err(format!("record of another origin ({})", env.origin));
    }
    env.verify(&archive.identity.verifying_key())
        .map_err(|e| e.to_string())?;
    let key = archive
        .keys
        .unwrap_record_key(&copy.key_envelope, &env.record_id)
        .map_err(|e| e.to_string())?;
    let plain = crate::keys::open_with(&key, &env.sealed_manifest, "manifest")
        .map_err(|e| e.to_string())?;
    let m = Manifest::decode(&plain).map_err(|e| e.to_string())?;
    if m.record_id != env.record_id || m.blob_ids() != env.blobs {
        return Err("the manifest does not match its envelope".into());
    }
    Ok((env, m))
}

async fn fetch_blob(
    archive: &Arc<Archive>,
    sources: &[Source],
    first: usize,
    blob: &BlobId,
) -> Option<Vec<u8>> {
    let n = sources.len();
    for k in 0..n {
        let s = &sources[(first + k) % n];
        let answer = s
            .client
            .clone()
            .fetch_blob(FetchBlobRequest {
                origin: archive.identity.node_id.clone(),
                blob_id: blob.to_vec(),
            })
            .await;
        if let Ok(a) = answer {
            let data = a.into_inner().data;
            if blake3::hash(&data).as_bytes() == blob {
                return Some(data.into());
            }
            tracing::warn!(peer = %s.peer.node_id, blob = %hex::encode(blob), "peer sent an altered blob");
        }
    }
    None
}

/// What restoring one record brought back.
#[derive(Debug, Default)]
struct Restored {
    bytes: u64,
    blobs: u64,
}

/// Restores one record from `sources[from]`'s copy.
async fn restore_record(
    archive: &Arc<Archive>,
    sources: &[Source],
    from: usize,
    held: HeldRecord,
) -> Result<Restored, String> {
    let mut done = Restored::default();
    let (env, manifest) = open_copy(archive, &held)?;
    let copy = held.copy.clone().unwrap_or_default();
    let session: [u8; 16] = rand::random();
    let mut plan = CommitPlan {
        record_id: env.record_id.clone(),
        envelope: copy.envelope.clone(),
        key_envelope: copy.key_envelope.clone(),
        defer_flush: true,
        ..Default::default()
    };
    let mut seen = HashSet::new();
    for b in &env.blobs {
        if !seen.insert(*b) || archive.store.blobs.contains(b).map_err(|e| e.to_string())? {
            continue;
        }
        let Some(bytes) = fetch_blob(archive, sources, from, b).await else {
            archive
                .store
                .clean_staging(Some(&session))
                .map_err(|e| e.to_string())?;
            return Err(format!("blob {} is intact nowhere", hex::encode(b)));
        };
        let a = archive.clone();
        let id = *b;
        let len = bytes.len() as u64;
        tokio::task::spawn_blocking(move || a.store.put_blob(&session, &id, &bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        plan.staged.push(*b);
        plan.new_blob_bytes += len;
        done.blobs += 1;
    }
    let keys = &archive.keys;
    let plain = manifest.encode();
    plan.catalog_entry = keys
        .seal_index(&plain, env.record_id.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut dkeys = HashSet::new();
    for f in &manifest.files {
        plan.file_objects.push(f.object_id());
        let dkey = keys.dedup_key(&f.blake3, f.size);
        if dkeys.insert(dkey)
            && archive
                .store
                .dedup_lookup(&dkey)
                .map_err(|e| e.to_string())?
                .is_none()
        {
            let mut anonymous = f.clone();
            anonymous.name.clear();
            anonymous.media_type.clear();
            let sealed = keys
                .seal_index(&anonymous.encode(), &dkey)
                .map_err(|e| e.to_string())?;
            plan.dedup_entries.push((dkey, sealed));
        }
    }
    done.bytes = manifest.files.iter().map(|f| f.size).sum::<u64>();
    archive
        .store
        .commit(&session, plan)
        .await
        .map_err(|e| e.to_string())?;
    Ok(done)
}

/// The tombstones of this node's lawful eliminations, from the holders that keep them,
/// with each holder's deletion receipt: the proof of what was destroyed, under which visa,
/// comes back with the log. Whether OAI-PMH listed the record is not known any more, so a
/// restored elimination is not reported there. Returns how many came back.
async fn restore_tombstones(
    archive: &Arc<Archive>,
    sources: &mut [Source],
) -> Result<u64, FederationError> {
    use archipel_proto::tombstone::{DeletionReceipt, Tombstone};
    use archipel_proto::v1::EliminationState;
    let me = archive.identity.verifying_key();
    let mut states: std::collections::BTreeMap<String, EliminationState> = Default::default();
    let mut holders = Vec::new();
    for s in sources.iter_mut() {
        let key = peer_key(archive, &s.peer, &mut s.client).await?;
        holders.push(s.peer.node_id.clone());
        let mut after = String::new();
        loop {
            let page = s
                .client
                .held_tombstones(ListHeldRequest {
                    after: after.clone(),
                    limit: 1000,
                })
                .await
                .map_err(|st| FederationError::Peer {
                    node_id: s.peer.node_id.clone(),
                    reason: st.message().to_string(),
                })?
                .into_inner();
            for e in page.entries {
                after = e.record_id.clone();
                let Some(t) = e.tombstone else { continue };
                // Only what this node itself signed.
                let Ok(parsed) = Tombstone::verify(&t.text, &t.signature, &me) else {
                    tracing::warn!(peer = %s.peer.node_id, record = %e.record_id, "tombstone not signed by this node: ignored");
                    continue;
                };
                if parsed.origin != archive.identity.node_id || parsed.record_id != e.record_id {
                    continue;
                }
                let state = states
                    .entry(e.record_id.clone())
                    .or_insert_with(|| EliminationState {
                        tombstone: Some(t.clone()),
                        ..Default::default()
                    });
                if let Some(r) = e.receipt
                    && let Ok(pr) = DeletionReceipt::verify(&r.text, &r.signature, &key)
                    && pr.holder == s.peer.node_id
                    && pr.record_id == e.record_id
                {
                    state.receipts.insert(s.peer.node_id.clone(), r);
                }
            }
            if !page.more {
                break;
            }
        }
    }
    let n = states.len() as u64;
    let a = archive.clone();
    tokio::task::spawn_blocking(move || -> Result<(), FederationError> {
        use prost::Message;
        for (id, state) in states {
            let unconfirmed = holders.iter().any(|h| !state.receipts.contains_key(h));
            a.store
                .restore_tombstone(&id, &state.encode_to_vec(), unconfirmed)?;
        }
        Ok(())
    })
    .await
    .map_err(storage)??;
    Ok(n)
}

/// Rebuilds this (freshly installed, empty) node from the peers at `addresses`.
pub async fn restore(
    archive: &Arc<Archive>,
    addresses: &[String],
    progress: Progress<'_>,
) -> Result<RestoreReport, FederationError> {
    if archive.store.record_count()? != 0 {
        return Err(FederationError::Refused(
            "this node already has records: restore only into a new data directory".into(),
        ));
    }
    let mut sources = connect_all(archive, addresses).await?;
    let mut report = RestoreReport {
        peers: sources.iter().map(|s| s.peer.clone()).collect(),
        ..Default::default()
    };
    report.log_size = restore_log(archive, &mut sources).await?;
    let mut done: HashSet<String> = HashSet::new();
    let mut receipts: Vec<NewReceipt> = Vec::new();
    let mut announced: HashMap<String, ()> = HashMap::new();
    for from in 0..sources.len() {
        let mut after = String::new();
        // The holder's key checks its receipts (learnt once per peer, not per page).
        let peer = sources[from].peer.clone();
        let key = {
            let s = &mut sources[from];
            peer_key(archive, &s.peer, &mut s.client).await?
        };
        loop {
            let page = sources[from]
                .client
                .list_held(ListHeldRequest {
                    after: after.clone(),
                    limit: 500,
                })
                .await
                .map_err(|s| FederationError::Peer {
                    node_id: sources[from].peer.node_id.clone(),
                    reason: s.message().to_string(),
                })?
                .into_inner();
            let mut todo = Vec::new();
            for held in page.records {
                let copy = held.copy.clone().unwrap_or_default();
                let Ok(env) = Envelope::decode(&copy.envelope) else {
                    continue;
                };
                after = env.record_id.clone();
                announced.insert(env.record_id.clone(), ());
                // The holder's receipt: custody comes back with the records.
                if let Some(r) = &held.receipt
                    && let Ok(parsed) = Receipt::verify(&r.text, &r.signature, &key)
                    && parsed.holder == peer.node_id
                    && parsed.record_id == env.record_id
                {
                    receipts.push(NewReceipt {
                        record_id: env.record_id.clone(),
                        holder: peer.node_id.clone(),
                        territory: peer.territory.clone(),
                        receipt: r.clone(),
                        envelope_digest: parsed.envelope,
                        key_digest: *blake3::hash(&copy.key_envelope).as_bytes(),
                        stored_bytes: 0,
                        event: None,
                    });
                }
                if !done.contains(&env.record_id) {
                    todo.push((env.record_id, held));
                }
            }
            // Several records at once: their blob fetches overlap, from every peer in turn.
            let sources_ref = &sources;
            let mut results = futures::stream::iter(todo.into_iter().enumerate().map(
                |(i, (id, held))| async move {
                    let first = (from + i) % sources_ref.len();
                    (id, restore_record(archive, sources_ref, first, held).await)
                },
            ))
            .buffer_unordered(PARALLEL_RECORDS);
            while let Some((id, result)) = results.next().await {
                match result {
                    Ok(r) => {
                        report.records += 1;
                        report.bytes += r.bytes;
                        report.blobs_fetched += r.blobs;
                        done.insert(id);
                    }
                    Err(why) => {
                        tracing::warn!(record = %id, peer = %peer.node_id, why, "copy refused");
                        report
                            .refused
                            .push(format!("{id} from {}: {why}", peer.node_id));
                    }
                }
                progress(report.records, announced.len() as u64);
            }
            if !page.more {
                break;
            }
        }
    }
    report.eliminations = restore_tombstones(archive, &mut sources).await?;
    // A record refused from one peer but restored from another is fine.
    report
        .refused
        .retain(|r| !done.contains(r.split(' ').next().unwrap_or_default()));
    for r in &mut receipts {
        if let Some(env) = archive.store.envelope(&r.record_id)? {
            let blobs = Envelope::decode(&env).map(|e| e.blobs).unwrap_or_default();
            r.stored_bytes = archive.store.stored_size_of(&blobs)?;
        }
    }
    let a = archive.clone();
    tokio::task::spawn_blocking(move || a.custody.record(&a.log, &receipts))
        .await
        .map_err(storage)??;
    // Commits deferred their flushes: make everything durable once.
    archive.store.blobs.flush()?;
    archive.store.flush().await?;
    // End to end: every record decrypts and matches its plaintext digests.
    let a = archive.clone();
    let ids: Vec<String> = done.iter().cloned().collect();
    report.damaged = tokio::task::spawn_blocking(move || {
        ids.iter()
            .filter(|id| !crate::fixity::check_record(&a, id).problems.is_empty())
            .cloned()
            .collect()
    })
    .await
    .map_err(storage)?;
    progress(report.records, announced.len() as u64);
    let summary = format!(
        "restored {} records, log of {} entries, from {}",
        report.records,
        report.log_size,
        report
            .peers
            .iter()
            .map(|p| p.node_id.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    archive
        .append_event(
            "replication",
            "node",
            "restore",
            if report.damaged.is_empty() && report.refused.is_empty() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            *blake3::hash(summary.as_bytes()).as_bytes(),
        )
        .map_err(storage)?;
    archive.store.flush().await?;
    Ok(report)
}
