//! `archipel status RECORD` (where a record's copies are) and `archipel federation` (what
//! each territory keeps for the others).

use crate::connect::connect;
use crate::output::human_size;
use archipel_proto::v1::{FederationReportRequest, ShowRequest};
use serde_json::json;
use std::process::ExitCode;

pub async fn record_status(node: &str, json_out: bool, record: &str) -> anyhow::Result<ExitCode> {
    let mut c = connect(node).await?;
    let r = c
        .custody(ShowRequest {
            record_id: record.to_string(),
        })
        .await?
        .into_inner();
    if json_out {
        let holders: Vec<_> = r
            .holders
            .iter()
            .map(|h| {
                json!({
                    "node_id": h.node_id,
                    "territory": h.territory,
                    "since": h.since,
                    "receipt": h.receipt.as_ref().map(|x| x.text.clone()).unwrap_or_default(),
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "record_id": r.record_id,
                "copies_wanted": r.copies_wanted,
                "copies": r.holders.len() + 1,
                "holders": holders,
                "pending": r.pending,
            })
        );
    } else {
        println!("record   {}", r.record_id);
        println!(
            "copies   {} of {} (this node and {} holder(s))",
            r.holders.len() + 1,
            r.copies_wanted,
            r.holders.len()
        );
        for h in &r.holders {
            println!("holder   {}  {}  since {}", h.node_id, h.territory, h.since);
        }
        for p in &r.pending {
            println!("pending  {p}  (chosen, no receipt yet)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn report(node: &str, json_out: bool) -> anyhow::Result<ExitCode> {
    let mut c = connect(node).await?;
    let r = c
        .federation_report(FederationReportRequest {})
        .await?
        .into_inner();
    if json_out {
        let peers: Vec<_> = r
            .peers
            .iter()
            .map(|p| {
                json!({
                    "node_id": p.node_id,
                    "territory": p.territory,
                    "zone": p.zone,
                    "offer_bytes": p.offer_bytes,
                    "records_held_for_us": p.records_held_for_us,
                    "bytes_held_for_us": p.bytes_held_for_us,
                    "records_we_hold": p.records_we_hold,
                    "bytes_we_hold": p.bytes_we_hold,
                    "pending_records": p.pending_records,
                    "last_challenge": p.last_challenge,
                    "last_challenge_outcome": p.last_challenge_outcome,
                    "cosigned_size": p.cosigned_size,
                    "last_seen": p.last_seen,
                    "gone": p.gone,
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "replication_factor": r.replication_factor,
                "zone": r.zone,
                "records": r.records,
                "fully_replicated": r.fully_replicated,
                "peers": peers,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "records {}: {} with all {} copies",
        r.records, r.fully_replicated, r.replication_factor
    );
    for p in &r.peers {
        let offer = if p.offer_bytes == 0 {
            "no stated offer".to_string()
        } else {
            format!("offers {}", human_size(p.offer_bytes))
        };
        println!(
            "\n{}  {} (zone {:?}, {offer})",
            p.node_id, p.territory, p.zone
        );
        println!(
            "  keeps for us   {} records, {}",
            p.records_held_for_us,
            human_size(p.bytes_held_for_us)
        );
        println!(
            "  we keep for it {} records, {}",
            p.records_we_hold,
            human_size(p.bytes_we_hold)
        );
        println!("  pending        {} records", p.pending_records);
        if !p.last_challenge.is_empty() {
            println!(
                "  challenge      {} at {}",
                p.last_challenge_outcome, p.last_challenge
            );
        }
        println!("  cosigned log   up to {}", p.cosigned_size);
        println!(
            "  last seen      {}{}",
            if p.last_seen.is_empty() {
                "never"
            } else {
                &p.last_seen
            },
            if p.gone {
                " (gone: its copies are being replaced)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
