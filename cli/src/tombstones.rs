//! `archipel tombstones ...`: a holder's side of lawful destruction. The tombstones this
//! node received from its peers, and suspending (or resuming) the deletion one orders when
//! the archivist doubts it.

use crate::connect::connect;
use archipel_proto::v1::{ReceivedTombstone, ReceivedTombstonesRequest, SuspendTombstoneRequest};
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum TombstonesCommand {
    /// The tombstones received from peers: in quarantine (and until when), suspended, or
    /// deleted (with this node's signed deletion receipt).
    Ls {
        /// Only this origin's (node ID).
        #[arg(long)]
        origin: Option<String>,
    },
    /// Keep a peer's record past the quarantine, withdrawn, until `resume`: for an
    /// elimination this node's archivist doubts (a compromised origin).
    Suspend {
        /// The origin's node ID.
        origin: String,
        record: String,
        /// Why: kept on this node (the log commits to it) and told to the origin.
        #[arg(long)]
        reason: String,
    },
    /// Let a suspended deletion go ahead: the quarantine runs on from the tombstone's
    /// arrival (one already over deletes the copy at the next pass).
    Resume { origin: String, record: String },
}

fn tombstone_json(t: &ReceivedTombstone) -> serde_json::Value {
    json!({
        "origin": t.origin,
        "record": t.record_id,
        "visa": t.visa,
        "eliminated_at": t.eliminated_at,
        "received_at": t.received_at,
        "state": t.state,
        "delete_after": t.delete_after,
        "suspended": t.suspended,
        "suspended_at": t.suspended_at,
        "receipt": t.receipt,
    })
}

fn print(t: &ReceivedTombstone) {
    let state = match t.state.as_str() {
        "quarantined" => format!("quarantined until {}", t.delete_after),
        "suspended" => format!("suspended since {}: {}", t.suspended_at, t.suspended),
        s => s.to_string(),
    };
    println!("{}  {}  visa {:?}  {state}", t.origin, t.record_id, t.visa);
}

pub async fn run(node: &str, json_out: bool, cmd: TombstonesCommand) -> anyhow::Result<ExitCode> {
    let mut c = connect(node).await?;
    let list = match cmd {
        TombstonesCommand::Ls { origin } => {
            c.received_tombstones(ReceivedTombstonesRequest {
                origin: origin.unwrap_or_default(),
            })
            .await?
            .into_inner()
            .tombstones
        }
        TombstonesCommand::Suspend {
            origin,
            record,
            reason,
        } => vec![
            c.suspend_tombstone(SuspendTombstoneRequest {
                origin,
                record_id: record,
                reason,
                resume: false,
            })
            .await?
            .into_inner(),
        ],
        TombstonesCommand::Resume { origin, record } => vec![
            c.suspend_tombstone(SuspendTombstoneRequest {
                origin,
                record_id: record,
                reason: String::new(),
                resume: true,
            })
            .await?
            .into_inner(),
        ],
    };
    crate::output::print_list(json_out, &list, tombstone_json, print);
    Ok(ExitCode::SUCCESS)
}
