//! A holder's archivist suspending the deletion a tombstone orders, and resuming it.
//!
//! The quarantine (`deletion_quarantine_days`) exists so that an elimination ordered from a
//! compromised origin can still be undone; a holder whose archivist doubts a tombstone (no
//! visa known to the archives départementales, a burst of eliminations) suspends it: the
//! copy stays past the quarantine, withdrawn as before, until the archivist resumes the
//! deletion. Each change is logged on the holder (`archipel:tombstone suspension`,
//! `archipel:tombstone resumption`; the detail is a keyed commitment to the reason, which
//! the public log does not reveal). The origin, when it next sends the tombstone (once the
//! quarantine it was told is over), is answered REFUSED with the reason, and shows it in
//! `archipel eliminate --status`.

use super::FederationError;
use super::release::{key, storage};
use super::tombstone::{quarantine_secs, tree};
use crate::archive::Archive;
use crate::elimination::EliminationError;
use crate::error::Result;
use archipel_proto::event::Outcome;
use archipel_proto::tombstone::Tombstone;
use archipel_proto::v1::{HeldTombstone, ReceivedTombstone};
use prost::Message;

/// Longest reason kept, in bytes.
pub const MAX_REASON: usize = 1024;

/// What `archipel tombstones` shows of one received tombstone.
pub fn describe(archive: &Archive, held: &HeldTombstone) -> ReceivedTombstone {
    let text = held.tombstone.clone().unwrap_or_default().text;
    let t = Tombstone::decode(&text).ok();
    let (state, delete_after) = if held.receipt.is_some() {
        ("deleted", String::new())
    } else if !held.suspended.is_empty() {
        ("suspended", String::new())
    } else {
        (
            "quarantined",
            crate::clock::rfc3339(held.received_at + quarantine_secs(archive)),
        )
    };
    ReceivedTombstone {
        origin: t.as_ref().map(|t| t.origin.clone()).unwrap_or_default(),
        record_id: t.as_ref().map(|t| t.record_id.clone()).unwrap_or_default(),
        visa: t.as_ref().map(|t| t.visa.clone()).unwrap_or_default(),
        eliminated_at: t.as_ref().map(|t| t.time.clone()).unwrap_or_default(),
        received_at: crate::clock::rfc3339(held.received_at),
        state: state.to_string(),
        delete_after,
        suspended: held.suspended.clone(),
        suspended_at: if held.suspended.is_empty() {
            String::new()
        } else {
            crate::clock::rfc3339(held.suspended_at)
        },
        receipt: held
            .receipt
            .as_ref()
            .map(|r| r.text.clone())
            .unwrap_or_default(),
    }
}

/// The tombstones received from `origin` (empty: from every origin), by origin and record.
pub fn received(archive: &Archive, origin: &str) -> Result<Vec<ReceivedTombstone>> {
    let stones = tree(archive)?;
    let mut out = Vec::new();
    for kv in stones.scan_prefix(origin.as_bytes()) {
        let (_, v) = kv.map_err(FederationError::from)?;
        let held = HeldTombstone::decode(v.as_ref()).map_err(storage)?;
        out.push(describe(archive, &held));
    }
    Ok(out)
}

/// Suspends (or, with `resume`, resumes) the deletion of `origin`'s `record_id` here.
pub fn suspend(
    archive: &Archive,
    origin: &str,
    record_id: &str,
    reason: &str,
    resume: bool,
) -> Result<ReceivedTombstone> {
    let reason = reason.trim();
    if !resume
        && (reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control))
    {
        return Err(EliminationError::SuspensionReason.into());
    }
    let stones = tree(archive)?;
    let k = key(origin, record_id);
    let now = crate::clock::now_unix();
    let mut events = Vec::new();
    if archive.log.enabled {
        let (event, detail) = if resume {
            ("archipel:tombstone resumption", record_id.as_bytes())
        } else {
            ("archipel:tombstone suspension", reason.as_bytes())
        };
        let detail = archive.keys.commitment(detail);
        events.push(
            archive
                .log
                .event(event, record_id, "admin", Outcome::Success, detail)?,
        );
    }
    let refuse = |why: &str| -> crate::error::Error {
        EliminationError::Suspension(format!("record {record_id}: {why}")).into()
    };
    // One transaction with its event, which also keeps it from interleaving with the start
    // of a deletion (`tombstone::shred_one` checks the suspension inside its own).
    let held = archive
        .store
        .change_with_events(&stones, &k, &events, |current| {
            let unknown = || -> crate::error::Error {
                FederationError::NotFound(format!(
                    "no tombstone received from {origin} for record {record_id} \
                     (`archipel tombstones ls` lists those received, origin first)"
                ))
                .into()
            };
            let v = current.ok_or_else(unknown)?;
            let mut held = HeldTombstone::decode(v.as_ref()).map_err(storage)?;
            // The key is origin ‖ record without a separator: check both halves.
            let text = held.tombstone.clone().unwrap_or_default().text;
            match Tombstone::decode(&text) {
                Ok(t) if t.origin == origin && t.record_id == record_id => {}
                _ => return Err(unknown()),
            }
            if held.receipt.is_some() || held.shredding {
                return Err(refuse("its copy here is already deleted"));
            }
            match (resume, held.suspended.is_empty()) {
                (false, false) => return Err(refuse("its deletion is already suspended")),
                (true, true) => return Err(refuse("its deletion is not suspended")),
                (false, true) => {
                    held.suspended = reason.to_string();
                    held.suspended_at = now;
                }
                (true, false) => {
                    held.suspended.clear();
                    held.suspended_at = 0;
                }
            }
            Ok((held.encode_to_vec(), held))
        })?;
    Ok(describe(archive, &held))
}
