//! `archipel peer ...`: the other territories' nodes this node trusts, pinned by node ID.

use crate::connect::connect;
use archipel_proto::v1::{PeerEntry, PeerListRequest, PeerRemoveRequest, PeerStatus};
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PeerCommand {
    /// Pin a peer: its node ID, where to reach it, and its territory.
    Add {
        #[arg(long)]
        id: String,
        /// HOST:PORT of the peer's federation listener (`peer_address` in its status).
        #[arg(long)]
        address: String,
        #[arg(long)]
        territory: String,
        /// Département or région, used to place copies.
        #[arg(long, default_value = "")]
        zone: String,
        /// Storage the peer offers the federation, e.g. 500G, 2T (binary units).
        #[arg(long, default_value = "0", value_parser = parse_size)]
        offer: u64,
    },
    /// Unpin a peer: its connections are refused at once.
    Remove { id: String },
    /// Every peer, and whether it answers now.
    Ls,
}

/// `500G`, `2T`, `750M`, or bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 10),
        Some((i, 'M' | 'm')) => (&s[..i], 20),
        Some((i, 'G' | 'g')) => (&s[..i], 30),
        Some((i, 'T' | 't')) => (&s[..i], 40),
        _ => (s, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 500G or 2T"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn entry_json(p: &PeerEntry) -> serde_json::Value {
    json!({"node_id": p.node_id, "address": p.address, "territory": p.territory, "zone": p.zone, "offer_bytes": p.offer_bytes, "added_at": p.added_at})
}

fn status_json(s: &PeerStatus) -> serde_json::Value {
    let mut v = entry_json(&s.peer.clone().unwrap_or_default());
    v["reachable"] = json!(s.reachable);
    v["announced_territory"] = json!(s.announced_territory);
    v["error"] = json!(s.error);
    v
}

pub async fn run(node: &str, json_out: bool, cmd: PeerCommand) -> anyhow::Result<ExitCode> {
    let mut c = connect(node).await?;
    match cmd {
        PeerCommand::Add {
            id,
            address,
            territory,
            zone,
            offer,
        } => {
            let entry = PeerEntry {
                node_id: id,
                address,
                territory,
                zone,
                offer_bytes: offer,
                added_at: String::new(),
            };
            let p = c.peer_add(entry).await?.into_inner();
            if json_out {
                println!("{}", entry_json(&p));
            } else {
                println!(
                    "peer {} ({}) pinned at {}",
                    p.node_id, p.territory, p.address
                );
            }
        }
        PeerCommand::Remove { id } => {
            c.peer_remove(PeerRemoveRequest {
                node_id: id.clone(),
            })
            .await?;
            if json_out {
                println!("{}", json!({"removed": id}));
            } else {
                println!("peer {id} removed");
            }
        }
        PeerCommand::Ls => {
            let peers = c.peer_list(PeerListRequest {}).await?.into_inner().peers;
            crate::output::print_list(json_out, &peers, status_json, |s| {
                let p = s.peer.clone().unwrap_or_default();
                let state = if s.reachable {
                    "up".to_string()
                } else {
                    format!("DOWN ({})", s.error)
                };
                println!(
                    "{}  {:<21}  {:<30}  {}",
                    p.node_id, p.address, p.territory, state
                );
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("500G"), Ok(500 << 30));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
