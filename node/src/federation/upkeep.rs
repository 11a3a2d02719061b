//! The federation's periodic jobs, each on its own schedule from `[federation]`:
//! anti-entropy with each holder, proof-of-storage challenges, scrub and repair, and asking
//! peers to witness this node's log. One task runs them one at a time, so they never
//! compete with each other for the disk.

use super::reconcile;
use super::{FederationError, Peer};
use crate::archive::Archive;
use archipel_proto::event::Outcome;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};

fn every(secs: u64) -> Interval {
    let period = Duration::from_secs(secs);
    let mut i = interval_at(Instant::now() + period, period);
    i.set_missed_tick_behavior(MissedTickBehavior::Delay);
    i
}

/// Reconciles what `peer` holds for us with the receipts we keep for it. Records it lacks
/// or keeps in another version lose their receipt and go back to replication.
pub async fn anti_entropy(
    archive: &Arc<Archive>,
    peer: &Peer,
) -> Result<reconcile::Difference, FederationError> {
    let mut client = archive.peers.connect(peer).await?;
    let local = archive.custody.index_of(&peer.node_id);
    let diff = match reconcile::reconcile(&local, &mut client).await {
        Ok(d) => d,
        Err(e) => {
            archive.custody.failed(&peer.node_id)?;
            return Err(FederationError::Peer {
                node_id: peer.node_id.clone(),
                reason: e.to_string(),
            });
        }
    };
    archive.custody.seen(&peer.node_id)?;
    let lost: Vec<&String> = diff
        .missing_at_remote
        .iter()
        .chain(diff.differing.iter())
        .collect();
    tracing::info!(
        holder = %peer.node_id,
        lost = lost.len(),
        extra = diff.extra_at_remote.len(),
        bytes = diff.bytes_exchanged,
        round_trips = diff.round_trips,
        "anti-entropy"
    );
    if !lost.is_empty() {
        let mut h = blake3::Hasher::new();
        for id in &lost {
            h.update(id.as_bytes());
            archive.custody.forget(&peer.node_id, id)?;
            archive.replication.push(id);
        }
        archive
            .append_event(
                "fixity check",
                &peer.node_id,
                "anti-entropy",
                Outcome::Failure,
                *h.finalize().as_bytes(),
            )
            .map_err(|e| FederationError::Storage(e.to_string()))?;
        archive.replication.suspect(&peer.node_id);
    }
    Ok(diff)
}

async fn anti_entropy_all(archive: &Arc<Archive>) {
    let Ok(peers) = archive.peers.list() else {
        return;
    };
    for p in peers {
        if let Err(e) = anti_entropy(archive, &p).await {
            tracing::warn!(holder = %p.node_id, error = %e, "anti-entropy failed");
        }
    }
}

async fn scrub(archive: &Arc<Archive>) {
    match super::scrub::scrub_held(archive).await {
        Ok(r) if r.damaged > 0 => tracing::warn!(?r, "scrub of held copies"),
        Ok(r) => tracing::debug!(?r, "scrub of held copies"),
        Err(e) => tracing::warn!(error = %e, "scrub of held copies failed"),
    }
    match super::scrub::scrub_own(archive).await {
        Ok(r) if r.damaged > 0 => tracing::warn!(?r, "scrub of own records"),
        Ok(r) => tracing::debug!(?r, "scrub of own records"),
        Err(e) => tracing::warn!(error = %e, "scrub of own records failed"),
    }
}

/// Lawful destruction: deletes held records whose quarantine is over, then sends our
/// pending tombstones to the peers.
pub async fn tombstones(archive: &Arc<Archive>) {
    let a = archive.clone();
    match tokio::task::spawn_blocking(move || super::tombstone::shred_due(&a)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(records = n, "held records deleted after their quarantine"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "deleting held records after their quarantine failed")
        }
        Err(e) => tracing::warn!(error = %e, "deleting held records: task failed"),
    }
    match super::tombstone::propagate(archive).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(receipts = n, "deletion receipts received"),
        Err(e) => tracing::warn!(error = %e, "sending tombstones failed"),
    }
}

/// Runs the periodic jobs until `shutdown`.
pub async fn run(archive: Arc<Archive>, mut shutdown: watch::Receiver<bool>) {
    let f = archive.config.federation.clone();
    let mut ae = every(f.anti_entropy_interval_secs);
    let mut ch = every(f.challenge_interval_secs);
    let mut sc = every(f.scrub_interval_secs);
    let mut wi = every(f.witness_interval_secs);
    let mut rl = every(f.replication_interval_secs);
    loop {
        let job = async {
            tokio::select! {
                _ = ae.tick() => anti_entropy_all(&archive).await,
                _ = ch.tick() => {
                    super::challenge::challenge_all(&archive).await;
                }
                _ = sc.tick() => scrub(&archive).await,
                _ = rl.tick() => {
                    tombstones(&archive).await;
                    match super::release::release_all(&archive).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(records = n, "communicable records released to their holders"),
                        Err(e) => tracing::warn!(error = %e, "releasing communicable records failed"),
                    }
                }
                _ = wi.tick() => {
                                    if let Err(e) = super::witness::collect_cosignatures(&archive).await {
                        tracing::warn!(error = %e, "collecting cosignatures failed");
                    }
                }
            }
        };
        tokio::select! {
            _ = job => {}
            _ = shutdown.changed() => return,
        }
    }
}
