//! The origin's replication job: every record gets `replication_factor - 1` copies at peers
//! of other territories, each confirmed by a signed custody receipt.
//!
//! New records are sent as soon as they are committed (the ingest wakes the job); a full
//! sweep every `replication_interval_secs` catches the rest (a holder that was down, a
//! receipt forgotten after a failed challenge, a metadata change, a crash before the wake).
//! A record is sent to a holder in batches: Offer, PutBlobs (only the blobs the holder
//! lacks, through a 4-message channel: memory stays bounded and a slow holder slows the
//! sender), Commit. Blobs a holder received before a disconnect stay there, so a retry
//! sends only the rest.

use super::custody::NewReceipt;
use super::placement::{self, Candidate};
use super::{FederationError, Peer};
use crate::archive::Archive;
use archipel_proto::custody::{Receipt, blob_set_digest};
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{BlobId, Envelope};
use archipel_proto::v1::federation_client::FederationClient;
use archipel_proto::v1::{BlobPut, HelloRequest, RecordBatch, RecordCopy};
use ed25519_dalek::VerifyingKey;
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tonic::transport::Channel;

/// Records committed since the last pass, and the wake-up for the job.
#[derive(Debug, Default)]
pub struct ReplicationQueue {
    pending: Mutex<BTreeSet<String>>,
    wake: Notify,
    /// Holders that said they are full, until when.
    full: Mutex<HashMap<String, Instant>>,
    /// Holders caught with bad copies: their next offers re-check what they hold.
    suspects: Mutex<BTreeSet<String>>,
    /// A full sweep is wanted at the next wake-up (a peer was added or removed).
    sweep: std::sync::atomic::AtomicBool,
    /// (holder, record) pairs a running pass is sending.
    in_flight: Mutex<std::collections::HashSet<(String, String)>>,
}

/// How long a holder that said it is full is left out of placement.
const FULL_PAUSE: Duration = Duration::from_secs(600);
/// Stored bytes per batch at most (besides `batch_records`): what a failed batch re-sends.
const BATCH_BYTES: u64 = 256 << 20;
/// How long one batch may take before the holder is considered failing.
const BATCH_TIMEOUT: Duration = Duration::from_secs(600);

impl ReplicationQueue {
    pub fn push(&self, record_id: &str) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(record_id.to_string());
        }
        self.wake.notify_one();
    }

    /// Asks for a sweep of every record now (a peer change).
    pub fn sweep(&self) {
        self.sweep.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Marks a holder whose copies must be re-checked at the next offer.
    pub fn suspect(&self, node_id: &str) {
        if let Ok(mut s) = self.suspects.lock() {
            s.insert(node_id.to_string());
        }
        self.wake.notify_one();
    }

    fn is_suspect(&self, node_id: &str) -> bool {
        self.suspects
            .lock()
            .map(|s| s.contains(node_id))
            .unwrap_or(false)
    }

    fn cleared(&self, node_id: &str) {
        if let Ok(mut s) = self.suspects.lock() {
            s.remove(node_id);
        }
    }

    fn has_work(&self) -> bool {
        self.sweep.load(std::sync::atomic::Ordering::SeqCst)
            || self.pending.lock().map(|p| !p.is_empty()).unwrap_or(false)
    }

    /// Claims (holder, record) pairs for sending; returns false if another pass has them.
    fn claim(&self, holder: &str, record: &str) -> bool {
        self.in_flight
            .lock()
            .map(|mut f| f.insert((holder.to_string(), record.to_string())))
            .unwrap_or(false)
    }

    fn release(&self, holder: &str, records: &[Arc<Outgoing>]) {
        if let Ok(mut f) = self.in_flight.lock() {
            for o in records {
                f.remove(&(holder.to_string(), o.record_id.clone()));
            }
        }
    }

    fn drain(&self) -> Vec<String> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p).into_iter().collect())
            .unwrap_or_default()
    }

    fn mark_full(&self, node_id: &str) {
        if let Ok(mut f) = self.full.lock() {
            f.insert(node_id.to_string(), Instant::now() + FULL_PAUSE);
        }
    }

    fn is_full(&self, node_id: &str) -> bool {
        self.full
            .lock()
            .map(|f| f.get(node_id).is_some_and(|until| Instant::now() < *until))
            .unwrap_or(false)
    }
}

/// What a record needs: its holders now, and the peers it should gain.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Receipted holders that count (current peers, not gone, receipt for this envelope).
    pub holders: Vec<String>,
    /// Holders whose receipt names an older envelope (a metadata change): sent again.
    pub stale: Vec<String>,
    /// Peers chosen to gain a copy.
    pub new: Vec<String>,
}

impl Plan {
    pub fn targets(&self) -> impl Iterator<Item = &String> {
        self.stale.iter().chain(self.new.iter())
    }
}

/// The peers as placement sees them, with eligibility now.
pub fn candidates(archive: &Archive, peers: &[Peer]) -> Result<Vec<Candidate>, FederationError> {
    let grace = archive.config.federation.holder_grace_secs;
    let mut out = Vec::with_capacity(peers.len());
    for p in peers {
        let over_quota = if p.offer_bytes > 0 {
            archive.custody.totals_at(&p.node_id)?.1 >= p.offer_bytes
        } else {
            false
        };
        out.push(Candidate {
            node_id: p.node_id.clone(),
            territory: p.territory.clone(),
            zone: p.zone.clone(),
            offer_bytes: p.offer_bytes,
            eligible: !over_quota
                && !archive.custody.is_gone(&p.node_id, grace)?
                && !archive.replication.is_full(&p.node_id),
        });
    }
    Ok(out)
}

/// Where a record's copies are and where they should go.
pub fn plan(
    archive: &Archive,
    candidates: &[Candidate],
    record_id: &str,
    envelope_digest: &[u8; 32],
    key_digest: &[u8; 32],
) -> Result<Plan, FederationError> {
    let grace = archive.config.federation.holder_grace_secs;
    let mut plan = Plan::default();
    for h in archive.custody.holders_of(record_id)? {
        if !candidates.iter().any(|c| c.node_id == h.node_id)
            || archive.custody.is_gone(&h.node_id, grace)?
        {
            continue;
        }
        // A holder with an older key envelope (before a key rotation or a change of
        // recovery recipients) is sent the copy again; its blobs are already there.
        let current = archive.custody.receipted_digest(&h.node_id, record_id)?
            == Some(*envelope_digest)
            && archive
                .custody
                .receipted_key_digest(&h.node_id, record_id)?
                == Some(*key_digest);
        if current {
            plan.holders.push(h.node_id);
        } else {
            plan.stale.push(h.node_id);
        }
    }
    let mut current = plan.holders.clone();
    current.extend(plan.stale.iter().cloned());
    let wanted = archive
        .config
        .federation
        .replication_factor
        .saturating_sub(1) as usize;
    plan.new = placement::choose(
        record_id,
        &archive.identity.territory,
        &archive.config.federation.zone,
        candidates,
        &current,
        wanted,
    );
    Ok(plan)
}

/// A simple token bucket for the outgoing bandwidth limit.
#[derive(Debug)]
pub struct Throttle {
    rate: f64,
    state: Mutex<(Instant, f64)>,
}

impl Throttle {
    pub fn new(mib_s: u64) -> Option<Arc<Throttle>> {
        (mib_s > 0).then(|| {
            Arc::new(Throttle {
                rate: (mib_s << 20) as f64,
                state: Mutex::new((Instant::now(), 0.0)),
            })
        })
    }

    /// Waits until `bytes` may be sent.
    async fn take(&self, bytes: usize) {
        let wait = {
            let Ok(mut s) = self.state.lock() else {
                return;
            };
            let now = Instant::now();
            // Tokens accrue at `rate`, with a burst of one second at most.
            let tokens = (s.1 + now.duration_since(s.0).as_secs_f64() * self.rate).min(self.rate);
            let left = tokens - bytes as f64;
            *s = (now, left);
            if left >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-left / self.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Records sent to one holder together.
type Batch = Vec<Arc<Outgoing>>;

/// A record ready to send (shared by the batches of its holders).
#[derive(Debug)]
struct Outgoing {
    record_id: String,
    copy: RecordCopy,
    digest: [u8; 32],
    blobs: Vec<BlobId>,
    /// Stored bytes of its blobs.
    size: u64,
}

/// Runs the job until `shutdown`.
pub async fn run(archive: Arc<Archive>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs(archive.config.federation.replication_interval_secs);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let throttle = Throttle::new(archive.config.federation.bandwidth_limit_mib_s);
    // Passes run side by side (a new peer or new records need not wait for a long
    // transfer); a (holder, record) pair already in flight is left to the pass sending it.
    let mut passes = tokio::task::JoinSet::new();
    let q = &archive.replication;
    loop {
        let full = tokio::select! {
            _ = tick.tick() => true,
            _ = q.wake.notified() => false,
            // A pass ended: serve what waited for a free slot.
            Some(_) = passes.join_next(), if !passes.is_empty() => {
                if !q.has_work() {
                    continue;
                }
                false
            }
            _ = shutdown.changed() => {
                passes.abort_all();
                return;
            }
        };
        if passes.len() >= MAX_PASSES {
            if full {
                q.sweep.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            continue;
        }
        let full = full || q.sweep.swap(false, std::sync::atomic::Ordering::SeqCst);
        start_pass(&archive, &mut passes, full, &throttle);
    }
}

/// Passes running at the same time at most.
const MAX_PASSES: usize = 4;

fn start_pass(
    archive: &Arc<Archive>,
    passes: &mut tokio::task::JoinSet<()>,
    full: bool,
    throttle: &Option<Arc<Throttle>>,
) {
    let ids = if full {
        archive.replication.drain();
        None
    } else {
        Some(archive.replication.drain())
    };
    let archive = archive.clone();
    let throttle = throttle.clone();
    passes.spawn(async move {
        if let Err(e) = pass(&archive, ids, throttle).await {
            tracing::warn!(error = %e, "replication pass failed");
        }
    });
}

/// One pass over `ids` (or every record when `None`).
pub async fn pass(
    archive: &Arc<Archive>,
    ids: Option<Vec<String>>,
    throttle: Option<Arc<Throttle>>,
) -> Result<usize, FederationError> {
    let peers = archive
        .peers
        .list()
        .map_err(|e| FederationError::Storage(e.to_string()))?;
    if peers.is_empty() || archive.config.federation.replication_factor < 2 {
        return Ok(0);
    }
    let a = archive.clone();
    // Planning reads sled only: off the async threads.
    let batches = tokio::task::spawn_blocking(move || plan_batches(&a, &peers, ids))
        .await
        .map_err(|e| FederationError::Storage(format!("planning: {e}")))??;
    let concurrency = archive.config.federation.concurrency as usize;
    let sent = futures::stream::iter(batches.into_iter().map(|(peer, batch)| {
        let archive = archive.clone();
        let throttle = throttle.clone();
        async move {
            let n = batch.len();
            let claimed = batch.clone();
            let sent = tokio::time::timeout(BATCH_TIMEOUT, send_batch(&archive, &peer, batch, throttle))
                .await;
            // Released whatever happened (a timed-out send is dropped mid-way).
            archive.replication.release(&peer.node_id, &claimed);
            match sent {
                Ok(Ok(done)) => done,
                Ok(Err(e)) => {
                    tracing::warn!(holder = %peer.node_id, records = n, error = %e, "replication to holder failed");
                    0
                }
                Err(_) => {
                    tracing::warn!(holder = %peer.node_id, records = n, "replication batch timed out");
                    let _ = archive.custody.failed(&peer.node_id);
                    0
                }
            }
        }
    }))
    .buffer_unordered(concurrency)
    .fold(0usize, |acc, n| async move { acc + n })
    .await;
    Ok(sent)
}

fn plan_batches(
    archive: &Archive,
    peers: &[Peer],
    ids: Option<Vec<String>>,
) -> Result<Vec<(Peer, Batch)>, FederationError> {
    let cands = candidates(archive, peers)?;
    let ids: Box<dyn Iterator<Item = Result<String, FederationError>>> = match ids {
        Some(ids) => Box::new(ids.into_iter().map(Ok)),
        None => Box::new(
            archive
                .record_ids()
                .map(|r| r.map_err(|e| FederationError::Storage(e.to_string()))),
        ),
    };
    // Per holder: batches with their stored bytes.
    let mut per_peer: BTreeMap<String, Vec<(u64, Batch)>> = BTreeMap::new();
    let max_records = archive.config.federation.batch_records as usize;
    for id in ids {
        let id = id?;
        let Some(envelope) = archive.store.envelope(&id)? else {
            continue;
        };
        let Some(key_envelope) = archive.store.key_envelope(&id)? else {
            continue;
        };
        let digest = *blake3::hash(&envelope).as_bytes();
        let key_digest = *blake3::hash(&key_envelope).as_bytes();
        let p = plan(archive, &cands, &id, &digest, &key_digest)?;
        if p.targets().next().is_none() {
            continue;
        }
        let env = Envelope::decode(&envelope)
            .map_err(|e| FederationError::Storage(format!("envelope of {id}: {e}")))?;
        let size = archive.store.stored_size_of(&env.blobs)?;
        let out = Arc::new(Outgoing {
            record_id: id.clone(),
            copy: RecordCopy {
                envelope,
                key_envelope,
            },
            digest,
            blobs: env.blobs,
            size,
        });
        for t in p.targets() {
            if !archive.replication.claim(t, &id) {
                continue;
            }
            let batches = per_peer.entry(t.clone()).or_default();
            let start_new = batches
                .last()
                .is_none_or(|(bytes, b)| b.len() >= max_records || *bytes >= BATCH_BYTES);
            if start_new {
                batches.push((0, Vec::new()));
            }
            if let Some((bytes, b)) = batches.last_mut() {
                *bytes += size;
                b.push(out.clone());
            }
        }
    }
    // Round robin over holders, so that every holder is served at once rather than one
    // after the other.
    let mut queues: Vec<(Peer, std::collections::VecDeque<Batch>)> = per_peer
        .into_iter()
        .filter_map(|(id, b)| {
            peers
                .iter()
                .find(|p| p.node_id == id)
                .map(|p| (p.clone(), b.into_iter().map(|(_, b)| b).collect()))
        })
        .collect();
    let mut out = Vec::new();
    while queues.iter().any(|(_, q)| !q.is_empty()) {
        for (peer, q) in &mut queues {
            if let Some(b) = q.pop_front() {
                out.push((peer.clone(), b));
            }
        }
    }
    Ok(out)
}

/// The peer's public key: learnt once from Hello and checked against its node ID (which is
/// derived from it), so receipts and cosignatures can be verified.
pub async fn peer_key(
    archive: &Archive,
    peer: &Peer,
    client: &mut FederationClient<Channel>,
) -> Result<VerifyingKey, FederationError> {
    let known = archive.custody.state(&peer.node_id)?.public_key;
    let bytes = if known.is_empty() {
        let hello = client
            .hello(HelloRequest {})
            .await
            .map_err(|s| peer_err(peer, s))?
            .into_inner();
        hello.public_key
    } else {
        hex::decode(&known).unwrap_or_default()
    };
    let key = <[u8; 32]>::try_from(bytes.as_slice())
        .ok()
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .filter(|k| crate::identity::node_id_of(k) == peer.node_id)
        .ok_or_else(|| FederationError::Peer {
            node_id: peer.node_id.clone(),
            reason: "announced a public key that does not match its node ID".into(),
        })?;
    if known.is_empty() {
        let hex_key = hex::encode(key.as_bytes());
        archive
            .custody
            .update_state(&peer.node_id, |s| s.public_key = hex_key.clone())?;
    }
    Ok(key)
}

pub fn peer_err(peer: &Peer, s: tonic::Status) -> FederationError {
    if s.code() == tonic::Code::ResourceExhausted {
        return FederationError::Full(format!("{}: {}", peer.node_id, s.message()));
    }
    FederationError::Peer {
        node_id: peer.node_id.clone(),
        reason: format!("{:?}: {}", s.code(), s.message()),
    }
}

/// Sends one batch to one holder; returns how many records it receipted.
async fn send_batch(
    archive: &Arc<Archive>,
    peer: &Peer,
    batch: Vec<Arc<Outgoing>>,
    throttle: Option<Arc<Throttle>>,
) -> Result<usize, FederationError> {
    let result = send_batch_inner(archive, peer, batch, throttle).await;
    match &result {
        Ok(_) => archive.custody.seen(&peer.node_id)?,
        Err(FederationError::Full(_)) => {
            archive.replication.mark_full(&peer.node_id);
            archive.custody.seen(&peer.node_id)?;
        }
        Err(FederationError::Peer { .. }) => archive.custody.failed(&peer.node_id)?,
        Err(_) => {}
    }
    result
}

async fn send_batch_inner(
    archive: &Arc<Archive>,
    peer: &Peer,
    batch: Vec<Arc<Outgoing>>,
    throttle: Option<Arc<Throttle>>,
) -> Result<usize, FederationError> {
    let mut client = archive.peers.connect(peer).await?;
    let key = peer_key(archive, peer, &mut client).await?;
    let started = Instant::now();
    let suspect = archive.replication.is_suspect(&peer.node_id);
    let records = RecordBatch {
        records: batch.iter().map(|o| o.copy.clone()).collect(),
        verify_existing: suspect,
    };
    let offer = client
        .offer(records.clone())
        .await
        .map_err(|s| peer_err(peer, s))?
        .into_inner();
    for r in &offer.refused {
        tracing::warn!(holder = %peer.node_id, record = %r.record_id, reason = %r.reason, "holder refused a record");
    }
    if !offer.missing_blobs.is_empty() {
        let (tx, rx) = tokio::sync::mpsc::channel::<BlobPut>(4);
        // One blocking thread reads the blobs in turn and hands them over; `blocking_send`
        // waits while the channel is full, which is the backpressure.
        let reader = {
            let archive = archive.clone();
            let missing = offer.missing_blobs.clone();
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                for id in missing {
                    let Ok(blob) = <BlobId>::try_from(id.as_slice()) else {
                        continue;
                    };
                    let Some(data) = archive.store.blobs.get(&blob)? else {
                        return Err(FederationError::Storage(format!(
                            "blob {} is missing here; scrub will repair it",
                            hex::encode(blob)
                        )));
                    };
                    if let Some(t) = &throttle {
                        handle.block_on(t.take(data.len()));
                    }
                    let put = BlobPut {
                        blob_id: blob.to_vec(),
                        data: data.into(),
                    };
                    if tx.blocking_send(put).is_err() {
                        break;
                    }
                }
                Ok(())
            })
        };
        let put = client
            .put_blobs(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        let read = reader
            .await
            .map_err(|e| FederationError::Storage(e.to_string()))?;
        put.map_err(|s| peer_err(peer, s))?;
        read?;
    }
    let sent_at = started.elapsed();
    let refused: BTreeSet<&str> = offer.refused.iter().map(|r| r.record_id.as_str()).collect();
    let to_commit = RecordBatch {
        records: batch
            .iter()
            .filter(|o| !refused.contains(o.record_id.as_str()))
            .map(|o| o.copy.clone())
            .collect(),
        verify_existing: false,
    };
    if to_commit.records.is_empty() {
        return Ok(0);
    }
    let committed = client
        .commit(to_commit)
        .await
        .map_err(|s| peer_err(peer, s))?
        .into_inner();
    for r in &committed.refused {
        tracing::warn!(holder = %peer.node_id, record = %r.record_id, reason = %r.reason, "holder refused to commit a record");
    }
    let by_id: HashMap<&str, &Outgoing> = batch
        .iter()
        .map(|o| (o.record_id.as_str(), o.as_ref()))
        .collect();
    let mut receipts = Vec::new();
    for signed in committed.receipts {
        let r = match Receipt::verify(&signed.text, &signed.signature, &key) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(holder = %peer.node_id, error = %e, "holder sent an invalid receipt");
                continue;
            }
        };
        let Some(o) = by_id.get(r.record_id.as_str()) else {
            continue;
        };
        if r.origin != archive.identity.node_id
            || r.holder != peer.node_id
            || r.envelope != o.digest
            || r.blob_set != blob_set_digest(&o.blobs)
        {
            tracing::warn!(holder = %peer.node_id, record = %r.record_id, "receipt does not match the copy sent");
            continue;
        }
        let detail =
            *blake3::hash(format!("{}{}", signed.text, hex::encode(&signed.signature)).as_bytes())
                .as_bytes();
        let event = archive.log.event(
            "replication",
            &r.record_id,
            &format!("holder-{}", peer.node_id),
            Outcome::Success,
            detail,
        )?;
        let stored_bytes = o.size;
        receipts.push(NewReceipt {
            record_id: r.record_id.clone(),
            holder: peer.node_id.clone(),
            territory: peer.territory.clone(),
            receipt: signed,
            envelope_digest: o.digest,
            key_digest: *blake3::hash(&o.copy.key_envelope).as_bytes(),
            stored_bytes,
            event: Some(event),
        });
    }
    let n = receipts.len();
    if suspect && committed.refused.is_empty() {
        archive.replication.cleared(&peer.node_id);
    }
    let a = archive.clone();
    tokio::task::spawn_blocking(move || a.custody.record(&a.log, &receipts))
        .await
        .map_err(|e| FederationError::Storage(e.to_string()))??;
    archive.store.flush().await?;
    tracing::info!(
        holder = %peer.node_id,
        records = n,
        blobs = offer.missing_blobs.len(),
        send_ms = sent_at.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "batch receipted"
    );
    Ok(n)
}
