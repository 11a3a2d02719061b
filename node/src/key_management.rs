//! Key management while the node runs: rotating the territory key, changing the recovery
//! recipients, re-wrapping record keys, and retiring old territory keys. Every step is an
//! event of the audit log.
//!
//! The record keys themselves never change (the content and manifests stay as they are);
//! what changes is who can open their *key envelopes*:
//! 1. `rotate` makes a new territory key (the old one is kept as a *previous* key) or
//!    `change_recovery` edits the recovery recipients; new records use the new set at once;
//! 2. every existing key envelope is re-wrapped to the new set (`rewrap`, resumable: a
//!    durable flag says a pass is due, and the pass is idempotent);
//! 3. replication sends the re-wrapped envelopes to the holders (the custody index keeps
//!    the digest of the key envelope each holder has; a different one makes it stale);
//! 4. `retire` destroys the previous keys, only once every local envelope opens with the
//!    current key and every holder has acknowledged the current envelopes (or `force`).

use crate::archive::Archive;
use crate::keys::KeyError;
use crate::store::StoreError;
use archipel_proto::event::Outcome;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum KeyManagementError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
    #[error(transparent)]
    Federation(#[from] crate::federation::FederationError),
    #[error("there is no previous territory key to retire")]
    NothingToRetire,
    #[error(
        "key envelopes are still being re-wrapped after the last key change: run `archipel keys rewrap`, then retire"
    )]
    RewrapPending,
    #[error(
        "{copies} copies at holders still carry key envelopes that need a previous key; wait for replication to send the re-wrapped ones (`archipel keys status`), or retire with --force and rely on the recovery recipients for those copies"
    )]
    HoldersBehind { copies: u64 },
    #[error(
        "key envelope of record {record} opens with no key of this node ({why}): if a previous territory key was lost, reinstall it from a recovery kit made before its retirement"
    )]
    Unopenable { record: String, why: String },
}

/// One key change at a time: two rotations at once would each keep a different "previous".
static KEY_CHANGE: Mutex<()> = Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    // The guarded data is `()`: a panic elsewhere leaves nothing inconsistent behind.
    KEY_CHANGE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Appends a key-management event and waits for the disk: a key change that is not in
/// the log must not have happened.
fn log_event(archive: &Archive, event_type: &str, text: &str) -> Result<(), KeyManagementError> {
    if !archive.log.enabled {
        return Ok(());
    }
    let detail = archive.keys.commitment(text.as_bytes());
    let e = archive.log.event(
        event_type,
        "territory-keys",
        "operator",
        Outcome::Success,
        detail,
    )?;
    archive.store.append_events_lazily(&[e])?;
    archive.store.db().flush().map_err(StoreError::from)?;
    Ok(())
}

/// Where the territory's keys stand.
#[derive(Debug, Clone, Default)]
pub struct KeyStatus {
    pub territory_recipient: String,
    pub previous_recipients: Vec<String>,
    pub recovery_recipients: Vec<String>,
    pub rewrap_pending: bool,
    /// Copies at current peers whose key envelope is not the current one.
    pub copies_behind: u64,
}

pub fn status(archive: &Archive) -> Result<KeyStatus, KeyManagementError> {
    Ok(KeyStatus {
        territory_recipient: archive.keys.territory_recipient(),
        previous_recipients: archive.keys.previous_recipients(),
        recovery_recipients: archive.keys.recovery_recipients(),
        rewrap_pending: archive.store.rewrap_pending()?,
        copies_behind: copies_behind(archive)?,
    })
}

/// What a key change did.
#[derive(Debug, Clone, Default)]
pub struct ChangeReport {
    pub territory_recipient: String,
    /// The recipient rotated out (rotation only).
    pub previous_recipient: String,
    pub rewrapped: u64,
    pub changed: bool,
}

/// Rotates the territory key and re-wraps every record key to the new one.
pub fn rotate(archive: &Archive) -> Result<ChangeReport, KeyManagementError> {
    let _one = exclusive();
    // Durable before the keys change: a crash mid-way leaves the pass due, not forgotten.
    archive.store.set_rewrap_pending(true)?;
    let change = archive.keys.rotate(&archive.data_dir())?;
    log_event(
        archive,
        "archipel:key rotation",
        &format!("{} -> {}", change.old_recipient, change.new_recipient),
    )?;
    tracing::info!(old = %change.old_recipient, new = %change.new_recipient, "territory key rotated");
    let rewrapped = rewrap_locked(archive)?;
    Ok(ChangeReport {
        territory_recipient: change.new_recipient,
        previous_recipient: change.old_recipient,
        rewrapped,
        changed: true,
    })
}

/// Adds or removes a recovery recipient and re-wraps every record key accordingly.
pub fn change_recovery(
    archive: &Archive,
    recipient: &str,
    add: bool,
) -> Result<ChangeReport, KeyManagementError> {
    let _one = exclusive();
    let pending_before = archive.store.rewrap_pending()?;
    archive.store.set_rewrap_pending(true)?;
    let changed = match archive
        .keys
        .change_recovery(&archive.data_dir(), recipient, add)
    {
        Ok(c) => c,
        Err(e) => {
            archive.store.set_rewrap_pending(pending_before)?;
            return Err(e.into());
        }
    };
    if !changed {
        archive.store.set_rewrap_pending(pending_before)?;
        return Ok(ChangeReport {
            territory_recipient: archive.keys.territory_recipient(),
            ..Default::default()
        });
    }
    let what = if add { "added" } else { "removed" };
    log_event(
        archive,
        "archipel:recipients change",
        &format!("recovery recipient {what}: {}", recipient.trim()),
    )?;
    tracing::info!(recipient = %recipient.trim(), add, "recovery recipients changed");
    let rewrapped = rewrap_locked(archive)?;
    Ok(ChangeReport {
        territory_recipient: archive.keys.territory_recipient(),
        rewrapped,
        changed: true,
        ..Default::default()
    })
}

/// Runs (or resumes) the re-wrapping pass.
pub fn rewrap(archive: &Archive) -> Result<u64, KeyManagementError> {
    let _one = exclusive();
    rewrap_locked(archive)
}

fn rewrap_locked(archive: &Archive) -> Result<u64, KeyManagementError> {
    let mut n = 0u64;
    for entry in archive.store.key_envelopes() {
        let (id, old) = entry?;
        let new = rewrapped(archive, &id, &old)?;
        if archive.store.replace_key_envelope(&id, &old, &new)? {
            n += 1;
        }
        if n.is_multiple_of(10_000) && n > 0 {
            tracing::info!(records = n, "re-wrapping key envelopes");
        }
    }
    archive.store.db().flush().map_err(StoreError::from)?;
    // PREMIS "encryption": the record keys are encrypted anew, to the current recipients.
    log_event(
        archive,
        "encryption",
        &format!("{n} key envelopes re-wrapped"),
    )?;
    archive.store.set_rewrap_pending(false)?;
    // Holders get the new envelopes with the next pass of replication.
    archive.replication.sweep();
    tracing::info!(records = n, "key envelopes re-wrapped");
    Ok(n)
}

/// A key envelope opened with any key of the node and wrapped to the current recipients.
fn rewrapped(archive: &Archive, id: &str, envelope: &[u8]) -> Result<Vec<u8>, KeyManagementError> {
    let record_key = archive.keys.unwrap_record_key(envelope, id).map_err(|e| {
        KeyManagementError::Unopenable {
            record: id.to_string(),
            why: e.to_string(),
        }
    })?;
    Ok(archive.keys.wrap_record_key(&record_key)?)
}

/// Copies at current peers whose key envelope is not the record's current one.
fn copies_behind(archive: &Archive) -> Result<u64, KeyManagementError> {
    let peers: std::collections::HashSet<String> = archive
        .peers
        .list()
        .map_err(|e| crate::federation::FederationError::Storage(e.to_string()))?
        .into_iter()
        .map(|p| p.node_id)
        .collect();
    let mut behind = 0u64;
    let mut current: Option<(String, [u8; 32])> = None;
    for pair in archive.custody.all()? {
        let (record, holder) = pair?;
        if !peers.contains(&holder) {
            continue;
        }
        // `all` is sorted by record: one key envelope read per record.
        if current.as_ref().is_none_or(|(r, _)| *r != record) {
            let Some(ke) = archive.store.key_envelope(&record)? else {
                current = None;
                continue;
            };
            current = Some((record.clone(), *blake3::hash(&ke).as_bytes()));
        }
        let Some((_, digest)) = &current else {
            continue;
        };
        if archive.custody.receipted_key_digest(&holder, &record)? != Some(*digest) {
            behind += 1;
        }
    }
    Ok(behind)
}

/// Destroys the previous territory keys, after checking that nothing needs them.
pub fn retire(archive: &Archive, force: bool) -> Result<Vec<String>, KeyManagementError> {
    let _one = exclusive();
    if archive.keys.previous_recipients().is_empty() {
        return Err(KeyManagementError::NothingToRetire);
    }
    if archive.store.rewrap_pending()? {
        return Err(KeyManagementError::RewrapPending);
    }
    // Every local envelope must open with the current key alone: an ingest that wrapped
    // its record key just before the rotation may have committed after the pass saw it.
    let mut stragglers = 0u64;
    for entry in archive.store.key_envelopes() {
        let (id, ke) = entry?;
        if !archive.keys.opens_with_current(&ke, &id) {
            let new = rewrapped(archive, &id, &ke)?;
            archive.store.replace_key_envelope(&id, &ke, &new)?;
            stragglers += 1;
        }
    }
    if stragglers > 0 {
        archive.store.db().flush().map_err(StoreError::from)?;
        archive.replication.sweep();
    }
    let behind = copies_behind(archive)?;
    if behind > 0 && !force {
        return Err(KeyManagementError::HoldersBehind { copies: behind });
    }
    // Logged first: a destroyed key must never be missing from the log.
    let retiring = archive.keys.previous_recipients();
    log_event(
        archive,
        "archipel:key retirement",
        &format!(
            "retired {}; {behind} copies at holders left with older key envelopes",
            retiring.join(", ")
        ),
    )?;
    let retired = archive.keys.retire_previous(&archive.data_dir())?;
    tracing::info!(retired = ?retired, copies_behind = behind, "previous territory keys retired");
    Ok(retired)
}
