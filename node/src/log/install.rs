//! Reinstalling a log on a rebuilt node (restore): the leaves a witness kept, checked
//! against a checkpoint this node's own key signed, before anything is written.

use super::AuditLog;
use super::tree::{self as log_tree, LogError};
use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::event::Event;
use archipel_proto::rfc6962::{leaf_hash, root_from_leaf_hashes};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

/// Leaves appended per transaction.
const CHUNK: usize = 1000;

impl AuditLog {
    /// Installs `leaves` as the whole log of an empty node. `note` must be a checkpoint of
    /// exactly these leaves signed with this node's key (other signature lines, such as
    /// witness cosignatures, are ignored). The checkpoint becomes the latest signed one, so
    /// the node never signs anything inconsistent with the history it had.
    pub fn install(&self, leaves: &[Vec<u8>], note: &str) -> Result<Checkpoint, LogError> {
        let cp = Checkpoint::open(note.as_bytes(), &self.verifier())
            .map_err(|e| LogError::Checkpoint(format!("restored checkpoint: {e}")))?;
        if cp.size != leaves.len() as u64 {
            return Err(LogError::Checkpoint(format!(
                "restored checkpoint covers {} entries, {} were fetched",
                cp.size,
                leaves.len()
            )));
        }
        let hashes: Vec<_> = leaves.iter().map(|l| leaf_hash(l)).collect();
        if root_from_leaf_hashes(&hashes) != cp.root {
            return Err(LogError::Checkpoint(
                "restored entries do not match the signed checkpoint's root".into(),
            ));
        }
        if self.view()?.size() != 0 {
            return Err(LogError::Checkpoint(
                "the log is not empty: restore only into a new data directory".into(),
            ));
        }
        for (n, chunk) in leaves.chunks(CHUNK).enumerate() {
            let base = (n * CHUNK) as u64;
            (&self.tree,)
                .transaction(|(t,)| {
                    for (i, leaf) in chunk.iter().enumerate() {
                        let index = log_tree::append_tx::<LogError>(t, leaf)?;
                        debug_assert_eq!(index, base + i as u64);
                        // Deposit certificates find a record's ingestion event through this index.
                        if let Ok(e) = Event::decode(leaf)
                            && e.event_type == "ingestion"
                        {
                            log_tree::index_record_tx(t, &e.object, index)?;
                        }
                    }
                    Ok::<_, ConflictableTransactionError<LogError>>(())
                })
                .map_err(|e| match e {
                    sled::transaction::TransactionError::Abort(e) => e,
                    sled::transaction::TransactionError::Storage(e) => e.into(),
                })?;
        }
        // Same key, same text: the signature is the one this node made before (Ed25519 is
        // deterministic), now stored as ours.
        let mine = cp
            .sign(&self.signer)
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        self.checkpoints
            .insert(cp.size.to_be_bytes(), mine.as_bytes())?;
        self.tree.flush()?;
        self.checkpoints.flush()?;
        Ok(cp)
    }
}
