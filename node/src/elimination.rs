//! Lawful destruction at the origin (Code du patrimoine L214-3): a record may be destroyed
//! only once its DUA has run out, when its sort final is D (or T, for the part an archivist
//! decided not to keep), when no legal hold is on it, and against the reference of the visa
//! d'élimination signed by the archives départementales.
//!
//! `eliminate` takes a list (a bordereau d'élimination) and destroys all of it or nothing:
//! every refusal is reported at once. For each record, one transaction (`Store::eliminate`)
//! removes the envelope, the key envelope (crypto-shredding: the record key existed only
//! there, so no copy of the blobs or of the envelope anywhere can be opened once every key
//! envelope is gone), the catalog entry and the file objects no other record uses, logs a
//! PREMIS `deletion` event committing to the signed tombstone (which carries the visa
//! reference) and keeps the tombstone for ever. The federation then sends the tombstone to
//! the peers (`federation::tombstone`), which delete their copies after the quarantine and
//! confirm with signed deletion receipts.

use crate::archive::Archive;
use crate::clock;
use crate::error::Result;
use crate::store::{EliminationPlan, FileObject, StoreError};
use archipel_proto::event::Outcome;
use archipel_proto::manifest::{Manifest, Metadata};
use archipel_proto::tombstone::{MAX_VISA, Tombstone, visa_ok};
use archipel_proto::v1::{EliminationState, SignedText};
use prost::Message;
use time::Date;

/// Records per elimination request (a bordereau rarely lists more).
pub const MAX_RECORDS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum EliminationError {
    #[error(
        "a visa reference is required (--visa): the reference of the visa d'élimination \
         signed by the archives départementales, printable text of at most {MAX_VISA} bytes"
    )]
    Visa,
    #[error("name the records to eliminate (at most {MAX_RECORDS})")]
    Records,
    #[error("nothing was eliminated: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("elimination state of record {0} is damaged: {1}")]
    Damaged(String, String),
    #[error(
        "a reason is required to suspend a deletion (--reason): printable text of at most {} bytes",
        crate::federation::suspension::MAX_REASON
    )]
    SuspensionReason,
    #[error("{0}")]
    Suspension(String),
}

/// When a record's DUA runs out: its DUA in years after the date of its most recent
/// document (`date_to`, else `date_from`), else after its ingestion. `None`: no DUA.
pub fn dua_end(m: &Manifest) -> Option<Date> {
    let years = m.metadata.dua_years?;
    let start = [&m.metadata.date_to, &m.metadata.date_from]
        .into_iter()
        .find_map(|d| clock::parse_date(d))
        .or_else(|| {
            time::OffsetDateTime::from_unix_timestamp(m.ingested_at)
                .ok()
                .map(|t| t.date())
        })?;
    clock::add_years(start, i32::try_from(years).ok()?)
}

/// Why the law forbids destroying this record today, if it does.
pub fn refusal(m: &Manifest, held: bool, today: Date) -> Option<String> {
    let id = &m.record_id;
    if held {
        return Some(format!(
            "record {id} is under a legal hold (lift it first: archipel hold lift {id})"
        ));
    }
    let Metadata {
        final_disposition, ..
    } = &m.metadata;
    match final_disposition.as_str() {
        "D" | "T" => {}
        "C" => {
            return Some(format!(
                "record {id} has the sort final C (conserver): it is kept for ever"
            ));
        }
        _ => {
            return Some(format!(
                "record {id} has no DUA and sort final: nothing authorises its destruction"
            ));
        }
    }
    match dua_end(m) {
        None => Some(format!("record {id} has no DUA: its end cannot be known")),
        Some(end) if end > today => Some(format!(
            "record {id}: its DUA runs until {}",
            clock::format_date(end)
        )),
        Some(_) => None,
    }
}

fn decode_state(id: &str, bytes: &[u8]) -> Result<EliminationState> {
    EliminationState::decode(bytes)
        .map_err(|e| EliminationError::Damaged(id.to_string(), e.to_string()).into())
}

impl Archive {
    /// The elimination state of a record, if it was eliminated here.
    pub fn elimination(&self, record_id: &str) -> Result<Option<EliminationState>> {
        match self.store.tombstone(record_id)? {
            Some(b) => Ok(Some(decode_state(record_id, &b)?)),
            None => Ok(None),
        }
    }

    /// Destroys every named record, or none (see the module's documentation).
    pub async fn eliminate(
        &self,
        record_ids: &[String],
        visa: &str,
    ) -> Result<Vec<(String, EliminationState)>> {
        let visa = visa.trim();
        if !visa_ok(visa) {
            return Err(EliminationError::Visa.into());
        }
        let mut ids: Vec<String> = record_ids.iter().map(|s| s.trim().to_string()).collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() || ids.len() > MAX_RECORDS || ids.iter().any(|i| i.is_empty()) {
            return Err(EliminationError::Records.into());
        }
        let today = clock::today();
        let mut manifests = Vec::with_capacity(ids.len());
        let mut reasons = Vec::new();
        for id in &ids {
            match self.manifest(id) {
                Ok(m) => {
                    let held = self.store.hold(id)?.is_some();
                    if let Some(why) = refusal(&m, held, today) {
                        reasons.push(why);
                    }
                    manifests.push(m);
                }
                Err(crate::error::Error::Store(StoreError::NotFound(_))) => {
                    match self.elimination(id)? {
                        Some(s) => {
                            let t = s.tombstone.unwrap_or_default();
                            let when = Tombstone::decode(&t.text)
                                .map(|t| format!(" on {} under visa {:?}", t.time, t.visa))
                                .unwrap_or_default();
                            reasons.push(format!("record {id} was already eliminated{when}"));
                        }
                        None => reasons.push(format!("no record {id}")),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if !reasons.is_empty() {
            return Err(EliminationError::Refused(reasons).into());
        }
        let mut done = Vec::with_capacity(manifests.len());
        for m in manifests {
            let state = self.eliminate_one(&m, visa).await?;
            done.push((m.record_id.clone(), state));
        }
        Ok(done)
    }

    async fn eliminate_one(&self, m: &Manifest, visa: &str) -> Result<EliminationState> {
        let id = m.record_id.clone();
        let tombstone = Tombstone {
            origin: self.identity.node_id.clone(),
            record_id: id.clone(),
            blob_set: archipel_proto::custody::blob_set_digest(&m.blob_ids()),
            visa: visa.to_string(),
            time: clock::now_rfc3339(),
        };
        let (text, signature) = tombstone
            .sign(&self.identity.signing_key)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let today = clock::today();
        let oai = crate::gateway::oai::listed(m, today);
        let state = EliminationState {
            tombstone: Some(SignedText {
                text: text.clone(),
                signature: signature.to_vec(),
            }),
            oai_visible: oai.is_some(),
            oai_sets: oai.unwrap_or_default(),
            ..Default::default()
        };
        let mut files = Vec::with_capacity(m.files.len());
        for f in &m.files {
            let mut blob_sizes = Vec::with_capacity(f.blobs.len());
            for b in &f.blobs {
                blob_sizes.push(
                    self.store
                        .blobs
                        .size(b)
                        .map_err(StoreError::from)?
                        .unwrap_or(0),
                );
            }
            files.push(FileObject {
                object_id: f.object_id(),
                dedup_key: self.keys.dedup_key(&f.blake3, f.size),
                blobs: f.blobs.clone(),
                blob_sizes,
            });
        }
        // The receipts of its holders go first: once the record is gone, anti-entropy must
        // not see their copies as ours to repair. (A crash right after only makes the
        // replicator look for a record it can still send.)
        for h in self.custody.holders_of(&id)? {
            self.custody.forget(&h.node_id, &id)?;
        }
        let mut events = Vec::new();
        if self.log.enabled {
            events.push(self.log.event(
                "deletion",
                &id,
                "eliminate",
                Outcome::Success,
                *blake3::hash(text.as_bytes()).as_bytes(),
            )?);
        }
        let gone = self
            .store
            .eliminate(EliminationPlan {
                record_id: id.clone(),
                files,
                state: state.encode_to_vec(),
                events,
            })
            .await?;
        self.forget_recent();
        tracing::info!(record = %id, blobs = gone.deleted_blobs, bytes = gone.deleted_bytes, visa, "record eliminated");
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(dua: Option<u32>, fin: &str, from: &str, to: &str) -> Manifest {
        Manifest {
            record_id: "R".into(),
            origin: "o".into(),
            ingested_at: 1_700_000_000,
            metadata: Metadata {
                title: "t".into(),
                dua_years: dua,
                final_disposition: fin.into(),
                date_from: from.into(),
                date_to: to.into(),
                ..Default::default()
            },
            files: vec![],
        }
    }

    fn day(s: &str) -> Date {
        clock::parse_date(s).unwrap()
    }

    #[test]
    fn the_dua_runs_from_the_most_recent_document() {
        let m = manifest(Some(10), "D", "2000-01-01", "2005-06-30");
        assert_eq!(dua_end(&m), Some(day("2015-06-30")));
        let m = manifest(Some(10), "D", "2000-01-01", "");
        assert_eq!(dua_end(&m), Some(day("2010-01-01")));
        // No date: from the ingestion (2023-11-14).
        let m = manifest(Some(1), "D", "", "");
        assert_eq!(dua_end(&m), Some(day("2024-11-14")));
        assert_eq!(dua_end(&manifest(None, "", "", "")), None);
    }

    #[test]
    fn only_an_expired_dua_with_sort_final_d_or_t_and_no_hold_allows_destruction() {
        let today = day("2026-11-26");
        let ok = manifest(Some(10), "D", "", "2010-01-01");
        assert_eq!(refusal(&ok, false, today), None);
        assert_eq!(
            refusal(&manifest(Some(10), "T", "", "2010-01-01"), false, today),
            None
        );
        assert!(refusal(&ok, true, today).unwrap().contains("legal hold"));
        assert!(
            refusal(&manifest(Some(10), "C", "", "2010-01-01"), false, today)
                .unwrap()
                .contains("conserver")
        );
        assert!(
            refusal(&manifest(Some(30), "D", "", "2010-01-01"), false, today)
                .unwrap()
                .contains("runs until 2040-01-01")
        );
        assert!(refusal(&manifest(None, "", "", ""), false, today).is_some());
        // The last day of the DUA: it has run out.
        assert_eq!(
            refusal(&manifest(Some(10), "D", "", "2016-11-26"), false, today),
            None
        );
    }
}
