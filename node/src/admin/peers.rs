//! Admin RPCs that manage the node's peers; each change is an audit event.

use crate::archive::Archive;
use crate::error::Error;
use crate::federation::Peer;
use archipel_proto::event::Outcome;
use archipel_proto::v1::{PeerEntry, PeerListResponse, PeerStatus};

pub fn to_pb(p: &Peer) -> PeerEntry {
    PeerEntry {
        node_id: p.node_id.clone(),
        address: p.address.clone(),
        territory: p.territory.clone(),
        zone: p.zone.clone(),
        offer_bytes: p.offer_bytes,
        added_at: p.added_at.clone(),
    }
}

async fn log_change(archive: &Archive, node_id: &str, what: &str) -> Result<(), Error> {
    let detail = archive
        .keys
        .commitment(format!("{what} {node_id}").as_bytes());
    let event = archive.log.event(
        "archipel:peer change",
        node_id,
        "admin",
        Outcome::Success,
        detail,
    )?;
    archive.store.append_events(&[event]).await?;
    Ok(())
}

pub async fn add(archive: &Archive, e: PeerEntry) -> Result<PeerEntry, Error> {
    let peer = Peer {
        node_id: e.node_id.trim().to_string(),
        address: e.address.trim().to_string(),
        territory: e.territory.trim().to_string(),
        zone: e.zone.trim().to_string(),
        offer_bytes: e.offer_bytes,
        added_at: crate::clock::now_rfc3339(),
    };
    archive.peers.add(&peer)?;
    log_change(archive, &peer.node_id, "add").await?;
    tracing::info!(peer = %peer.node_id, address = %peer.address, territory = %peer.territory, "peer added");
    // A new peer may be where missing copies go: look at every record now.
    archive.replication.sweep();
    Ok(to_pb(&peer))
}

pub async fn remove(archive: &Archive, node_id: &str) -> Result<(), Error> {
    let peer = archive.peers.remove(node_id)?;
    log_change(archive, &peer.node_id, "remove").await?;
    tracing::info!(peer = %peer.node_id, "peer removed");
    // Its copies no longer count: place them elsewhere now.
    archive.replication.sweep();
    Ok(())
}

/// Every peer, each checked with a Hello over mutual TLS (concurrently).
pub async fn list(archive: &Archive) -> Result<PeerListResponse, Error> {
    let peers = archive.peers.list()?;
    let checks = peers.iter().map(|p| archive.peers.hello(p));
    let answers = futures::future::join_all(checks).await;
    let peers = peers
        .iter()
        .zip(answers)
        .map(|(p, answer)| match answer {
            Ok(h) if h.node_id == p.node_id => PeerStatus {
                peer: Some(to_pb(p)),
                reachable: true,
                announced_territory: h.territory,
                error: String::new(),
            },
            Ok(h) => PeerStatus {
                peer: Some(to_pb(p)),
                reachable: false,
                announced_territory: String::new(),
                error: format!("answered as {}", h.node_id),
            },
            Err(e) => PeerStatus {
                peer: Some(to_pb(p)),
                reachable: false,
                announced_territory: String::new(),
                error: e.to_string(),
            },
        })
        .collect();
    Ok(PeerListResponse { peers })
}
