//! The archive as the rest of the node sees it: the store, the keys and the identity
//! together, with the read-side queries (list, show, node facts).

use crate::config::Config;
use crate::error::{Error, Result};
use crate::identity::NodeIdentity;
use crate::keys::Keyring;
use crate::log::AuditLog;
use crate::store::{Store, StoreError};
use archipel_proto::manifest::{FileEntry, Manifest};
use std::path::PathBuf;

#[derive(Debug)]
pub struct Archive {
    pub config: Config,
    pub identity: NodeIdentity,
    pub keys: Keyring,
    pub store: Store,
    pub log: AuditLog,
    pub peers: crate::federation::Peers,
    /// What this node keeps for other territories.
    pub holding: crate::federation::holding::Holding,
    /// Who keeps this node's records: custody receipts and peer health.
    pub custody: crate::federation::custody::Custody,
    /// Counters and latency histograms for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Records waiting for their copies, and the replication job's wake-up.
    pub replication: crate::federation::replicator::ReplicationQueue,
    /// This node as a witness of its peers' logs.
    pub witness: crate::federation::witness::Witness,
    /// The last manifest opened: reading a record of many files one by one would otherwise
    /// decrypt and decode its whole manifest once per file.
    pub recent: std::sync::Mutex<Option<std::sync::Arc<Manifest>>>,
    /// The citizen gateway's base URL once its listener is bound (`status --json`:
    /// `gateway_url`); unset when the gateway is off.
    pub gateway_url: std::sync::OnceLock<String>,
}

/// Filters of `list`; empty fields match everything.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub producer: String,
    pub record_type: String,
    /// Records whose date range meets [date_from, date_to] (YYYY-MM-DD, inclusive).
    pub date_from: String,
    pub date_to: String,
    pub communicability: String,
}

impl ListFilter {
    fn matches(&self, m: &Manifest) -> bool {
        let md = &m.metadata;
        (self.producer.is_empty() || md.producer == self.producer)
            && (self.record_type.is_empty() || md.record_type == self.record_type)
            && (self.communicability.is_empty() || md.communicability == self.communicability)
            // ISO dates compare as strings; undated records never match a date filter.
            && (self.date_from.is_empty() || (!md.date_to.is_empty() && md.date_to.as_str() >= self.date_from.as_str()))
            && (self.date_to.is_empty() || (!md.date_from.is_empty() && md.date_from.as_str() <= self.date_to.as_str()))
    }
}

pub const MAX_PAGE: usize = 1000;

impl Archive {
    /// The record's manifest, from the sealed catalog.
    pub fn manifest(&self, record_id: &str) -> Result<Manifest> {
        Ok(self.manifest_shared(record_id)?.as_ref().clone())
    }

    /// The record's manifest, shared with the one-entry cache of the last record read.
    pub fn manifest_shared(&self, record_id: &str) -> Result<std::sync::Arc<Manifest>> {
        if let Ok(recent) = self.recent.lock()
            && let Some(m) = recent.as_ref()
            && m.record_id == record_id
        {
            return Ok(m.clone());
        }
        let Some(sealed) = self.store.catalog_entry(record_id)? else {
            return Err(StoreError::NotFound(self.missing(record_id)).into());
        };
        let m = std::sync::Arc::new(self.open_catalog(record_id, &sealed)?);
        if let Ok(mut recent) = self.recent.lock() {
            *recent = Some(m.clone());
        }
        Ok(m)
    }

    /// How a missing record is named: with its elimination, if it was eliminated here.
    fn missing(&self, record_id: &str) -> String {
        let eliminated = self
            .elimination(record_id)
            .ok()
            .flatten()
            .and_then(|s| s.tombstone)
            .and_then(|t| archipel_proto::tombstone::Tombstone::decode(&t.text).ok());
        match eliminated {
            Some(t) => format!(
                "{record_id}: it was eliminated on {} under visa {:?}",
                t.time, t.visa
            ),
            None => record_id.to_string(),
        }
    }

    /// The last manifest read, if it is this record's: no I/O, so callers on async threads
    /// can try it before paying for a hop to a blocking thread.
    pub fn recent_manifest(&self, record_id: &str) -> Option<std::sync::Arc<Manifest>> {
        let recent = self.recent.lock().ok()?;
        recent
            .as_ref()
            .filter(|m| m.record_id == record_id)
            .cloned()
    }

    pub(crate) fn forget_recent(&self) {
        if let Ok(mut recent) = self.recent.lock() {
            *recent = None;
        }
    }

    fn open_catalog(&self, record_id: &str, sealed: &[u8]) -> Result<Manifest> {
        let plain = self.keys.open_index(
            sealed,
            record_id.as_bytes(),
            &format!("catalog entry of {record_id}"),
        )?;
        Manifest::decode(&plain).map_err(|e| {
            Error::Store(StoreError::Damaged {
                record: record_id.to_string(),
                why: format!("catalog entry: {e}"),
            })
        })
    }

    /// One page of records in ingestion order, and the token of the next page.
    pub fn list(
        &self,
        filter: &ListFilter,
        page_size: usize,
        token: &str,
    ) -> Result<(Vec<Manifest>, String)> {
        let page_size = page_size.clamp(1, MAX_PAGE);
        let mut out = Vec::new();
        for kv in self.store.catalog_after(token) {
            let (id, sealed) = kv?;
            let m = self.open_catalog(&id, &sealed)?;
            if filter.matches(&m) {
                if out.len() == page_size {
                    let next = out
                        .last()
                        .map(|m: &Manifest| m.record_id.clone())
                        .unwrap_or_default();
                    return Ok((out, next));
                }
                out.push(m);
            }
        }
        Ok((out, String::new()))
    }

    /// Every record ID, in order.
    pub fn record_ids(&self) -> impl Iterator<Item = Result<String>> + '_ {
        self.store
            .catalog_after("")
            .map(|kv| kv.map(|(id, _)| id).map_err(Error::from))
    }

    pub fn find_file<'m>(&self, m: &'m Manifest, name: &str) -> Result<&'m FileEntry> {
        if name.is_empty() {
            return match m.files.as_slice() {
                [one] => Ok(one),
                _ => Err(StoreError::AmbiguousFile(m.record_id.clone()).into()),
            };
        }
        m.files.iter().find(|f| f.name == name).ok_or_else(|| {
            StoreError::FileNotFound {
                record: m.record_id.clone(),
                name: name.to_string(),
            }
            .into()
        })
    }

    /// Appends one event to the audit log on its own (written out by sled within its flush
    /// interval; callers that must not lose it flush the store).
    pub fn append_event(
        &self,
        event_type: &str,
        object: &str,
        actor: &str,
        outcome: archipel_proto::event::Outcome,
        detail: [u8; 32],
    ) -> Result<()> {
        if !self.log.enabled {
            return Ok(());
        }
        let e = self.log.event(event_type, object, actor, outcome, detail)?;
        self.store.append_events_lazily(&[e])?;
        Ok(())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }
}

/// Metadata fields that are access and retention policy rather than description.
fn policy_changed(
    a: &archipel_proto::manifest::Metadata,
    b: &archipel_proto::manifest::Metadata,
) -> bool {
    a.communicability != b.communicability
        || a.metadata_public != b.metadata_public
        || a.dua_years != b.dua_years
        || a.final_disposition != b.final_disposition
        || a.person_death_date != b.person_death_date
        || a.person_birth_date != b.person_birth_date
        || a.licence != b.licence
}

fn description_changed(
    a: &archipel_proto::manifest::Metadata,
    b: &archipel_proto::manifest::Metadata,
) -> bool {
    a.title != b.title
        || a.description != b.description
        || a.producer != b.producer
        || a.date_from != b.date_from
        || a.date_to != b.date_to
        || a.record_type != b.record_type
        || a.language != b.language
        || a.keywords != b.keywords
}

impl Archive {
    /// Replaces a record's metadata: the manifest is sealed again to the same record key, the
    /// envelope re-signed, and the change logged, all in one transaction. Blobs are untouched.
    pub async fn update_metadata(
        &self,
        record_id: &str,
        metadata: archipel_proto::manifest::Metadata,
    ) -> Result<Manifest> {
        use archipel_proto::event::Outcome;
        use archipel_proto::manifest::Envelope;
        let old = self.manifest(record_id)?;
        let mut events = Vec::new();
        let detail = self.keys.commitment(&metadata.encode());
        if policy_changed(&old.metadata, &metadata) {
            events.push(self.log.event(
                "policy assignment",
                record_id,
                "admin",
                Outcome::Success,
                detail,
            )?);
        }
        if description_changed(&old.metadata, &metadata) {
            events.push(self.log.event(
                "metadata modification",
                record_id,
                "admin",
                Outcome::Success,
                detail,
            )?);
        }
        if events.is_empty() {
            return Ok(old);
        }
        if !self.log.enabled {
            events.clear();
        }
        let key_envelope = self
            .store
            .key_envelope(record_id)?
            .ok_or_else(|| StoreError::NotFound(record_id.to_string()))?;
        let record_key = self.keys.unwrap_record_key(&key_envelope, record_id)?;
        let manifest = Manifest { metadata, ..old };
        let plain = manifest.encode();
        let recipient = record_key.to_public();
        let sealed =
            crate::keys::seal_to(std::iter::once(&recipient as &dyn age::Recipient), &plain)?;
        let envelope = Envelope::sign(
            manifest.record_id.clone(),
            manifest.origin.clone(),
            manifest.ingested_at,
            sealed,
            manifest.blob_ids(),
            &self.identity.signing_key,
        )
        .encode();
        let catalog = self.keys.seal_index(&plain, record_id.as_bytes())?;
        self.forget_recent();
        self.store
            .replace_record(record_id, envelope, catalog, events)
            .await?;
        self.forget_recent();
        Ok(manifest)
    }
}
