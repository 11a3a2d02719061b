//! `archipel eliminate ...`: lawful destruction, against a visa d'élimination.

use crate::connect::connect;
use archipel_proto::v1::{EliminateRequest, Elimination, ShowRequest};
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct EliminateArgs {
    /// The records of the bordereau d'élimination: all are destroyed, or none (every reason
    /// for refusing is listed).
    #[arg(required_unless_present = "status")]
    records: Vec<String>,
    /// Reference of the visa d'élimination signed by the archives départementales.
    #[arg(long, required_unless_present = "status")]
    visa: Option<String>,
    /// Instead: show eliminations and how far each peer got (deleted, in quarantine,
    /// pending); with no record, every elimination.
    #[arg(long, conflicts_with = "visa")]
    status: bool,
}

/// One elimination as `--json` and the reversibility export (`log/eliminations.jsonl`) give it.
pub fn elimination_json(e: &Elimination) -> serde_json::Value {
    json!({
        "record": e.record_id,
        "visa": e.visa,
        "time": e.time,
        "tombstone": e.tombstone,
        "signature": e.signature,
        "holders": e.holders.iter().map(|h| json!({
            "node_id": h.node_id,
            "state": h.state,
            "quarantined_until": h.quarantined_until,
            "receipt": h.receipt,
            "reason": h.reason,
        })).collect::<Vec<_>>(),
    })
}

fn print(e: &Elimination) {
    println!(
        "{} eliminated {} under visa {:?}",
        e.record_id, e.time, e.visa
    );
    for h in &e.holders {
        match h.state.as_str() {
            "quarantined" => println!("  {}  quarantined until {}", h.node_id, h.quarantined_until),
            "refused" => println!("  {}  refused: {}", h.node_id, h.reason),
            s => println!("  {}  {s}", h.node_id),
        }
    }
}

pub async fn run(node: &str, json_out: bool, args: EliminateArgs) -> anyhow::Result<ExitCode> {
    let mut c = connect(node).await?;
    let list = if args.status {
        let ids = if args.records.is_empty() {
            vec![String::new()]
        } else {
            args.records
        };
        let mut all = Vec::new();
        for id in ids {
            all.extend(
                c.eliminations(ShowRequest { record_id: id })
                    .await?
                    .into_inner()
                    .eliminations,
            );
        }
        all
    } else {
        let answer = c
            .eliminate(EliminateRequest {
                record_ids: args.records,
                visa: args.visa.unwrap_or_default(),
            })
            .await?
            .into_inner();
        if !json_out {
            eprintln!(
                "{} record(s) eliminated, {} blob(s) deleted here; the peers delete their copies after the federation's quarantine",
                answer.eliminated.len(),
                answer.deleted_blobs
            );
        }
        answer.eliminated
    };
    crate::output::print_list(json_out, &list, elimination_json, print);
    Ok(ExitCode::SUCCESS)
}
