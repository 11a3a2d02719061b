//! `archipel keys ...`: the territory's age key and its recovery recipients.

use crate::connect::channel;
use archipel_proto::v1::keys_client::KeysClient;
use archipel_proto::v1::{
    ChangeRecoveryRecipientRequest, KeyChangeResponse, KeyStatusRequest,
    RetireTerritoryKeysRequest, RewrapRecordKeysRequest, RotateTerritoryKeyRequest,
};
use serde_json::json;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// The territory key, earlier keys not yet retired, recovery recipients, progress.
    Status,
    /// Make a new territory key: new records use it at once, existing record keys are
    /// re-wrapped to it, and the old key is kept until `keys retire`.
    Rotate,
    /// Destroy the earlier territory keys once nothing needs them any more.
    Retire {
        /// Even if some holders still have key envelopes that need an earlier key (those
        /// copies then open with the recovery recipients only).
        #[arg(long)]
        force: bool,
    },
    /// Finish re-wrapping record keys after an interrupted key change.
    Rewrap,
    /// The recovery recipients (e.g. the départemental archives' age key).
    #[command(subcommand)]
    Recovery(RecoveryCommand),
}

#[derive(clap::Subcommand)]
pub enum RecoveryCommand {
    /// Wrap every record key to one more recipient (age1...).
    Add { recipient: String },
    /// Stop wrapping record keys to a recipient (age1...).
    Remove { recipient: String },
}

const KIT_REMINDER: &str = "the recovery kit changed: export a new one now (`archipel-node export-kit --data DIR --out kit.age`) and keep it offline";

fn print_change(json_out: bool, what: &str, r: &KeyChangeResponse) {
    if json_out {
        println!(
            "{}",
            json!({"territory_recipient": r.territory_recipient, "previous_recipient": r.previous_recipient, "rewrapped": r.rewrapped, "changed": r.changed})
        );
    } else if !r.changed {
        println!("nothing to do: {what}");
    } else {
        println!("{what}; {} record keys re-wrapped", r.rewrapped);
        println!("territory recipient: {}", r.territory_recipient);
        eprintln!("note: {KIT_REMINDER}");
    }
}

pub async fn run(node: &str, json_out: bool, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let mut c = KeysClient::new(channel(node).await?);
    match cmd {
        KeysCommand::Status => {
            let s = c.key_status(KeyStatusRequest {}).await?.into_inner();
            if json_out {
                println!(
                    "{}",
                    json!({"territory_recipient": s.territory_recipient, "previous_recipients": s.previous_recipients, "recovery_recipients": s.recovery_recipients, "rewrap_pending": s.rewrap_pending, "copies_behind": s.copies_behind})
                );
            } else {
                println!("territory key:       {}", s.territory_recipient);
                for p in &s.previous_recipients {
                    println!("previous (to retire): {p}");
                }
                for r in &s.recovery_recipients {
                    println!("recovery recipient:  {r}");
                }
                if s.recovery_recipients.is_empty() {
                    println!("recovery recipient:  none (only the territory key opens records)");
                }
                if s.rewrap_pending {
                    println!("re-wrapping:         interrupted; run `archipel keys rewrap`");
                }
                println!(
                    "copies at holders with older key envelopes: {}",
                    s.copies_behind
                );
            }
        }
        KeysCommand::Rotate => {
            let r = c
                .rotate_territory_key(RotateTerritoryKeyRequest {})
                .await?
                .into_inner();
            let what = format!("territory key rotated (previous: {})", r.previous_recipient);
            print_change(json_out, &what, &r);
            if !json_out {
                println!(
                    "retire the previous key once holders have the new envelopes: `archipel keys status`, then `archipel keys retire`"
                );
            }
        }
        KeysCommand::Rewrap => {
            let r = c
                .rewrap_record_keys(RewrapRecordKeysRequest {})
                .await?
                .into_inner();
            print_change(json_out, "record keys re-wrapped", &r);
        }
        KeysCommand::Retire { force } => {
            let r = c
                .retire_territory_keys(RetireTerritoryKeysRequest { force })
                .await?
                .into_inner();
            if json_out {
                println!("{}", json!({"retired": r.retired}));
            } else {
                for k in &r.retired {
                    println!("retired {k}");
                }
                eprintln!("note: {KIT_REMINDER}");
            }
        }
        KeysCommand::Recovery(rc) => {
            let (recipient, add) = match rc {
                RecoveryCommand::Add { recipient } => (recipient, true),
                RecoveryCommand::Remove { recipient } => (recipient, false),
            };
            let r = c
                .change_recovery_recipient(ChangeRecoveryRecipientRequest {
                    recipient: recipient.clone(),
                    add,
                })
                .await?
                .into_inner();
            let what = if add {
                format!("recovery recipient {recipient} added")
            } else {
                format!("recovery recipient {recipient} removed")
            };
            let what = if r.changed {
                what
            } else if add {
                format!("{recipient} is already a recovery recipient")
            } else {
                format!("{recipient} is not a recovery recipient")
            };
            print_change(json_out, &what, &r);
        }
    }
    Ok(ExitCode::SUCCESS)
}
