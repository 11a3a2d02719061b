//! `archipel hold ...`: legal holds, which block a record's elimination until lifted.

use crate::connect::connect;
use archipel_proto::v1::{HoldInfo, HoldListRequest, HoldSetRequest, ShowRequest};
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum HoldCommand {
    /// Put a record under a legal hold (litigation, inquiry): it cannot be eliminated.
    Set {
        record: String,
        /// Why (case reference, request): kept on this node; the log commits to it.
        #[arg(long)]
        reason: String,
    },
    /// Lift a record's legal hold.
    Lift { record: String },
    /// Every record under a legal hold.
    Ls,
}

fn hold_json(h: &HoldInfo) -> serde_json::Value {
    json!({"record": h.record_id, "reason": h.reason, "set_at": h.set_at})
}

pub async fn run(node: &str, json_out: bool, cmd: HoldCommand) -> anyhow::Result<ExitCode> {
    let mut c = connect(node).await?;
    match cmd {
        HoldCommand::Set { record, reason } => {
            let h = c
                .hold_set(HoldSetRequest {
                    record_id: record,
                    reason,
                })
                .await?
                .into_inner();
            if json_out {
                println!("{}", hold_json(&h));
            } else {
                println!("{} held since {}: {}", h.record_id, h.set_at, h.reason);
            }
        }
        HoldCommand::Lift { record } => {
            let h = c
                .hold_lift(ShowRequest { record_id: record })
                .await?
                .into_inner();
            if json_out {
                println!("{}", hold_json(&h));
            } else {
                println!("{} hold lifted (held since {})", h.record_id, h.set_at);
            }
        }
        HoldCommand::Ls => {
            let holds = c.hold_list(HoldListRequest {}).await?.into_inner().holds;
            crate::output::print_list(json_out, &holds, hold_json, |h| {
                println!("{}  {}  {}", h.record_id, h.set_at, h.reason)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
