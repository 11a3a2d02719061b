//! The audit log: every state change of the node appends an event (a leaf) to an RFC 6962
//! Merkle tree kept in sled, in the same transaction as the change itself. Checkpoints
//! (C2SP signed notes) are signed with the node's Ed25519 key and kept, and the node never
//! signs a checkpoint inconsistent with one it signed before.

pub mod install;
pub mod timestamp;
pub mod tree;

pub use tree::{LogError, LogView};

use crate::identity::NodeIdentity;
use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::event::{Event, Outcome};
use archipel_proto::note::{Signer, Verifier};
use archipel_proto::rfc6962::tree_root;
use std::sync::Mutex;

/// An event about to be appended, and the record whose ingestion it is (if it is one).
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub leaf: Vec<u8>,
    pub ingestion_of: Option<String>,
}

/// The log's identity and its signed checkpoints.
#[derive(Debug)]
pub struct AuditLog {
    tree: sled::Tree,
    checkpoints: sled::Tree,
    timestamps: sled::Tree,
    /// Witnesses' cosignature lines of our checkpoints: size ‖ witness node ID → line.
    cosignatures: sled::Tree,
    signer: Signer,
    origin: String,
    node_id: String,
    sign_lock: Mutex<()>,
    /// Only the benchmark switches this off, to measure what logging costs.
    pub enabled: bool,
}

/// `archipel/<territory slug>/<node ID>`: unique per node, readable, URL-like.
pub fn origin_for(territory: &str, node_id: &str) -> String {
    let mut slug = String::new();
    for c in territory.to_lowercase().chars() {
        let c = match c {
            'à' | 'â' | 'ä' | 'á' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            c => c,
        };
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    let slug = if slug.is_empty() { "territory" } else { slug };
    format!("archipel/{slug}/{node_id}")
}

impl AuditLog {
    pub fn open(db: &sled::Db, identity: &NodeIdentity) -> Result<Self, LogError> {
        let origin = origin_for(&identity.territory, &identity.node_id);
        let signer = Signer::new(&origin, identity.signing_key.clone())
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        let enabled = !cfg!(feature = "bench-switches")
            || std::env::var_os("ARCHIPEL_BENCH_NO_EVENT_LOG").is_none();
        Ok(AuditLog {
            tree: db.open_tree("log")?,
            checkpoints: db.open_tree("log_checkpoints")?,
            timestamps: db.open_tree("log_timestamps")?,
            cosignatures: db.open_tree("log_cosignatures")?,
            signer,
            origin,
            node_id: identity.node_id.clone(),
            sign_lock: Mutex::new(()),
            enabled,
        })
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifier(&self) -> Verifier {
        self.signer.verifier()
    }

    /// The verifier key in signed-note vkey form.
    pub fn vkey(&self) -> String {
        self.signer.verifier().to_vkey()
    }

    pub fn view(&self) -> Result<LogView, LogError> {
        LogView::new(&self.tree)
    }

    /// Builds an event leaf for this node.
    pub fn event(
        &self,
        event_type: &str,
        object: &str,
        actor: &str,
        outcome: Outcome,
        detail: [u8; 32],
    ) -> Result<PendingEvent, LogError> {
        let e = Event {
            time: crate::clock::now_rfc3339(),
            event_type: event_type.to_string(),
            object: object.to_string(),
            agent_node: self.node_id.clone(),
            agent_actor: actor.to_string(),
            outcome,
            detail,
        };
        let leaf = e
            .encode()
            .map_err(|err| LogError::Damaged(format!("cannot encode event: {err}")))?;
        Ok(PendingEvent {
            leaf,
            ingestion_of: None,
        })
    }

    /// The latest checkpoint this node signed, if any.
    pub fn latest_signed(&self) -> Result<Option<(Checkpoint, String)>, LogError> {
        let Some((_, note)) = self.checkpoints.last()? else {
            return Ok(None);
        };
        let cp = Checkpoint::open(&note, &self.verifier())
            .map_err(|e| LogError::Damaged(format!("stored checkpoint: {e}")))?;
        Ok(Some((cp, String::from_utf8_lossy(&note).into_owned())))
    }

    /// Returns a checkpoint covering the whole log, signing a new one if the log grew.
    /// Refuses if the log no longer extends what was signed before.
    pub fn checkpoint(&self) -> Result<(Checkpoint, String), LogError> {
        let _guard = self
            .sign_lock
            .lock()
            .map_err(|_| LogError::Checkpoint("signing lock poisoned".into()))?;
        let view = self.view()?;
        let size = view.size();
        let latest = self.latest_signed()?;
        if let Some((cp, note)) = &latest {
            if cp.size == size {
                if tree_root(&view, size)? != cp.root {
                    return Err(LogError::Inconsistent {
                        size,
                        signed: cp.size,
                    });
                }
                return Ok((cp.clone(), note.clone()));
            }
            if cp.size > size || tree_root(&view, cp.size)? != cp.root {
                tracing::error!(
                    size,
                    signed = cp.size,
                    "audit log does not extend the last signed checkpoint: refusing to sign"
                );
                return Err(LogError::Inconsistent {
                    size,
                    signed: cp.size,
                });
            }
        }
        if size == 0 {
            return Err(LogError::Empty);
        }
        let cp = Checkpoint {
            origin: self.origin.clone(),
            size,
            root: tree_root(&view, size)?,
            extensions: vec![],
        };
        let note = cp
            .sign(&self.signer)
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        self.checkpoints
            .insert(size.to_be_bytes(), note.as_bytes())?;
        self.checkpoints.flush()?;
        tracing::debug!(size, "signed a checkpoint");
        Ok((cp, note))
    }

    /// The RFC 3161 token of the checkpoint of `size`, if a TSA stamped it.
    pub fn timestamp_of(&self, size: u64) -> Result<Option<Vec<u8>>, LogError> {
        Ok(self.timestamps.get(size.to_be_bytes())?.map(|v| v.to_vec()))
    }

    pub fn store_timestamp(&self, size: u64, token: &[u8]) -> Result<(), LogError> {
        self.timestamps.insert(size.to_be_bytes(), token)?;
        self.timestamps.flush()?;
        Ok(())
    }

    /// The signed checkpoint of exactly `size`, if this node signed one.
    pub fn signed_at(&self, size: u64) -> Result<Option<String>, LogError> {
        Ok(self
            .checkpoints
            .get(size.to_be_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

fn cosignature_key(size: u64, witness: &str) -> Vec<u8> {
    let mut k = size.to_be_bytes().to_vec();
    k.extend_from_slice(witness.as_bytes());
    k
}

impl AuditLog {
    /// Keeps a witness's cosignature line (verified by the caller) of our checkpoint of
    /// `size`; a newer one from the same witness replaces it. Flushed: a cosignature is
    /// evidence worth a disk write.
    pub fn store_cosignature(&self, size: u64, witness: &str, line: &str) -> Result<(), LogError> {
        self.cosignatures
            .insert(cosignature_key(size, witness), line.as_bytes())?;
        self.cosignatures.flush()?;
        Ok(())
    }

    /// The cosignature lines collected for the checkpoint of `size`, by witness node ID.
    pub fn cosignatures_at(&self, size: u64) -> Result<Vec<(String, String)>, LogError> {
        self.cosignatures
            .scan_prefix(size.to_be_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k[8..]).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// `note` (our signed checkpoint of `size`) with the cosignature lines collected for it
    /// appended. Signed-note verifiers ignore lines from keys they do not know, so the note
    /// still verifies with the log key alone; the total stays within what parsers accept.
    pub fn with_cosignatures(&self, size: u64, note: &str) -> Result<String, LogError> {
        let lines = self.cosignatures_at(size)?;
        if lines.is_empty() {
            return Ok(note.to_string());
        }
        let Ok(parsed) = archipel_proto::note::Note::parse(note.as_bytes()) else {
            return Ok(note.to_string());
        };
        let room = archipel_proto::note::MAX_SIGNATURES.saturating_sub(parsed.signatures.len());
        let mut out = note.to_string();
        for (_, line) in lines.into_iter().take(room) {
            // Stored lines were parsed and verified when collected; re-checked here so a
            // damaged entry can never make the note unparseable.
            let line = line.trim_end_matches('\n');
            if archipel_proto::note::NoteSignature::parse_line(line).is_ok() && !out.contains(line)
            {
                out.push_str(line);
                out.push('\n');
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_a_readable_slug() {
        assert_eq!(
            origin_for("Commune de Plougastel-Daoulas", "abc"),
            "archipel/commune-de-plougastel-daoulas/abc"
        );
        assert_eq!(
            origin_for("Région Île-de-France", "x"),
            "archipel/region-ile-de-france/x"
        );
        assert_eq!(origin_for("***", "x"), "archipel/territory/x");
    }
}
