//! SEDA transfers: the node logs the `ArchiveTransferReply` the CLI gave to a producer's
//! `ArchiveTransfer` (the SEDA parsing, validation and mapping are in the CLI and
//! `archipel_proto::seda`; the node only ever sees an ordinary ingest stream per record).
//!
//! One PREMIS `transfer` event per record the transfer created (object = the record;
//! outcome success, or failure when a later unit was refused), or, for a transfer refused
//! before anything was archived, one event about `node` with outcome failure. The detail is the
//! node's keyed commitment to the reply's exact bytes: the public log proves which reply was
//! given without showing it (a reply names agencies and may quote titles).

use crate::archive::Archive;
use crate::error::Result;
use crate::store::StoreError;
use archipel_proto::event::Outcome;

/// Largest reply accepted (a reply lists at most a few thousand units).
const MAX_REPLY: usize = 4 * 1024 * 1024;
/// Largest number of records one transfer may name.
const MAX_RECORDS: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("transfer reply: empty or larger than {MAX_REPLY} bytes")]
    Reply,
    #[error("transfer reply: more than {MAX_RECORDS} records, or an accepted transfer with none")]
    Records,
}

impl Archive {
    /// Appends the `transfer` events of one SEDA transfer's reply; returns how many.
    pub async fn transfer_log(
        &self,
        record_ids: &[String],
        accepted: bool,
        reply: &[u8],
    ) -> Result<u32> {
        if reply.is_empty() || reply.len() > MAX_REPLY {
            return Err(TransferError::Reply.into());
        }
        if record_ids.len() > MAX_RECORDS || (accepted && record_ids.is_empty()) {
            return Err(TransferError::Records.into());
        }
        for id in record_ids {
            if self.store.envelope(id)?.is_none() {
                return Err(StoreError::NotFound(id.clone()).into());
            }
        }
        if !self.log.enabled {
            return Ok(0);
        }
        let detail = self.keys.commitment(reply);
        let outcome = if accepted {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut events = Vec::new();
        // A transfer refused part-way names the records it created before the refusal.
        for id in record_ids {
            events.push(self.log.event("transfer", id, "admin", outcome, detail)?);
        }
        if record_ids.is_empty() {
            events.push(
                self.log
                    .event("transfer", "node", "admin", Outcome::Failure, detail)?,
            );
        }
        self.store.append_events(&events).await?;
        u32::try_from(events.len()).map_err(|_| TransferError::Records.into())
    }
}
