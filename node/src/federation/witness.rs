//! Witnessing (C2SP tlog-witness) of peers' audit logs, and audit-log replication.
//!
//! Each node witnesses its pinned peers' logs: a peer submits its own latest checkpoint with
//! a consistency proof from the size this witness last cosigned; the witness checks the
//! proof, cosigns (cosignature/v1, key = the node's Ed25519 key, name
//! [`cosigner_name`]), and stores the new checkpoint in one atomic step before answering.
//! A checkpoint that contradicts what the witness cosigned or keeps is never cosigned: the
//! request is kept as evidence and an `archipel:alert` event goes to the witness's own log.
//!
//! The witness also keeps a copy of each peer's log leaves (pushed by the peer after a
//! cosignature), checked against the checkpoint it cosigned, so that a wiped node gets its
//! history back ([`Witness::fetch_log`]).
//!
//! Trees:
//! - `witness_state`: origin → [`Cosigned`]: the latest checkpoint cosigned (size, root, the
//!   peer-signed note with this witness's cosignature line);
//! - `witness_evidence`: BLAKE3 of the evidence → evidence text (what was refused and why);
//! - `witness_log/<origin>`: the peer's leaves, in the layout of [`crate::log::tree`] (leaves
//!   and perfect subtree hashes, so each push costs O(new leaves · log n) and any earlier
//!   root is O(log n)), plus `verified` (u64: leaves checked against a cosigned root) and
//!   `note` (the cosigned checkpoint of that size).
//!
//! The log owner's side, which asks peers for cosignatures and pushes leaves, is
//! [`collect_cosignatures`].

mod collector;

pub use collector::collect_cosignatures;

use super::service::Caller;
use crate::archive::Archive;
use crate::identity::NodeIdentity;
use crate::log::tree::{self as log_tree, LogView};
use crate::log::{LogError, origin_for};
use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::event::{Event, Outcome};
use archipel_proto::note::{CosignatureSigner, Note, NoteError, Verifier};
use archipel_proto::rfc6962::{Hash, tree_root, verify_consistency};
use archipel_proto::v1::{
    AddCheckpointResponse, FetchLogRequest, FetchLogResponse, PushLogEntriesRequest,
    PushLogEntriesResponse,
};
use archipel_proto::witness::{
    AddCheckpointBody, COSIGNATURE_CONTENT_TYPE, SIZE_CONTENT_TYPE, encode_size_body,
};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// Most leaves one push may carry (a page; leaves are at most 4 KiB each).
pub const MAX_PUSH: usize = 1000;
/// Most leaves one fetch returns.
pub const MAX_FETCH: u32 = 1000;
/// Compare-and-swap rounds before an add-checkpoint gives up (only concurrent submissions
/// of the same origin can make one fail, and each round re-decides against the new state).
const CAS_ROUNDS: usize = 16;
const VERIFIED: &[u8] = b"verified";
const VERIFIED_NOTE: &[u8] = b"note";
const TEXT: &str = "text/plain; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness storage: {0}")]
    Storage(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("this witness has cosigned no checkpoint of node {0}: submit one first")]
    NotWitnessed(String),
    #[error("leaves must continue the log exactly: this witness keeps {expected}, got start {got}")]
    Gap { expected: u64, got: u64 },
    #[error(
        "leaves up to {end} go beyond the checkpoint this witness cosigned (size {cosigned}): submit a checkpoint first"
    )]
    BeyondCheckpoint { end: u64, cosigned: u64 },
    #[error("at most {MAX_PUSH} leaves a push, got {0}")]
    TooMany(usize),
    #[error("leaf {index} is not an event of the caller's log: {reason}")]
    BadLeaf { index: u64, reason: String },
    #[error(
        "the pushed leaves do not match the checkpoint the caller signed at size {size}: refused, and recorded as evidence"
    )]
    Mismatch { size: u64 },
    #[error("peer {node_id}: {reason}")]
    Peer { node_id: String, reason: String },
    #[error("witness {node_id} answered {status}: {reason}")]
    Refused {
        node_id: String,
        status: u32,
        reason: String,
    },
    #[error("witness {node_id} sent no valid cosignature: {reason}")]
    BadCosignature { node_id: String, reason: String },
}

impl WitnessError {
    /// The gRPC code for this error (the one mapping in error.rs asks).
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            WitnessError::Storage(_) | WitnessError::Log(_) => Code::Internal,
            WitnessError::NotWitnessed(_)
            | WitnessError::Gap { .. }
            | WitnessError::BeyondCheckpoint { .. } => Code::FailedPrecondition,
            WitnessError::TooMany(_)
            | WitnessError::BadLeaf { .. }
            | WitnessError::Mismatch { .. } => Code::InvalidArgument,
            WitnessError::Peer { .. } => Code::Unavailable,
            WitnessError::Refused { .. } => Code::FailedPrecondition,
            WitnessError::BadCosignature { .. } => Code::DataLoss,
        }
    }
}

impl From<sled::Error> for WitnessError {
    fn from(e: sled::Error) -> Self {
        WitnessError::Storage(e.to_string())
    }
}

impl From<NoteError> for WitnessError {
    fn from(e: NoteError) -> Self {
        WitnessError::Storage(format!("cosigning: {e}"))
    }
}

/// The cosigner name of a node: `archipel-witness/<territory slug>/<node ID>`, beside its
/// log origin `archipel/<territory slug>/<node ID>` (a different name, hence a different key
/// ID, for the same Ed25519 key).
pub fn cosigner_name(territory: &str, node_id: &str) -> String {
    let origin = origin_for(territory, node_id);
    let rest = origin.strip_prefix("archipel/").unwrap_or(&origin);
    format!("archipel-witness/{rest}")
}

/// This node's cosigner.
pub fn cosigner(identity: &NodeIdentity) -> Result<CosignatureSigner, NoteError> {
    CosignatureSigner::new(
        &cosigner_name(&identity.territory, &identity.node_id),
        identity.signing_key.clone(),
    )
}

/// Whether `name` is the cosigner name of node `node_id` (whatever its territory).
pub fn is_cosigner_of(name: &str, node_id: &str) -> bool {
    name.strip_prefix("archipel-witness/")
        .is_some_and(|rest| slug_and_id_are(rest, node_id))
}

/// Whether `origin` is the log origin of node `node_id`: `archipel/<slug>/<node ID>`, the
/// form [`origin_for`] gives. Callers only ever submit their own log.
pub fn origin_is_of(origin: &str, node_id: &str) -> bool {
    origin
        .strip_prefix("archipel/")
        .is_some_and(|rest| slug_and_id_are(rest, node_id))
}

fn slug_and_id_are(rest: &str, node_id: &str) -> bool {
    rest.rsplit_once('/').is_some_and(|(slug, id)| {
        id == node_id
            && !slug.is_empty()
            && slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// A piece of evidence of log misbehaviour: its BLAKE3 digest (named by the alert event)
/// and its text.
pub type Evidence = ([u8; 32], Vec<u8>);

/// What the witness keeps of a log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cosigned {
    size: u64,
    root: Hash,
    /// The log-signed note (the log's own signature lines only) with this witness's
    /// cosignature line appended.
    note: String,
}

impl Cosigned {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40 + self.note.len());
        v.extend_from_slice(&self.size.to_be_bytes());
        v.extend_from_slice(&self.root);
        v.extend_from_slice(self.note.as_bytes());
        v
    }

    fn decode(v: &[u8]) -> Result<Self, WitnessError> {
        let damaged = || WitnessError::Storage("witness state entry is damaged".into());
        let size = v
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .ok_or_else(damaged)?;
        let root = v
            .get(8..40)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(damaged)?;
        let note = std::str::from_utf8(&v[40..]).map_err(|_| damaged())?;
        Ok(Cosigned {
            size: u64::from_be_bytes(size),
            root,
            note: note.to_string(),
        })
    }
}

fn answer(status: u32, body: Vec<u8>, content_type: &str) -> AddCheckpointResponse {
    AddCheckpointResponse {
        status,
        body,
        content_type: content_type.to_string(),
    }
}

fn reason(status: u32, why: impl std::fmt::Display) -> AddCheckpointResponse {
    answer(status, format!("{why}\n").into_bytes(), TEXT)
}

fn get_u64(tree: &sled::Tree, key: &[u8]) -> Result<u64, WitnessError> {
    Ok(tree
        .get(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

#[derive(Debug)]
pub struct Witness {
    db: sled::Db,
    state: sled::Tree,
    evidence: sled::Tree,
}

impl Witness {
    pub fn open(db: &sled::Db) -> Result<Self, WitnessError> {
        Ok(Witness {
            db: db.clone(),
            state: db.open_tree("witness_state")?,
            evidence: db.open_tree("witness_evidence")?,
        })
    }

    /// The copy of `origin`'s log leaves.
    fn log_of(&self, origin: &str) -> Result<sled::Tree, WitnessError> {
        Ok(self.db.open_tree(format!("witness_log/{origin}"))?)
    }

    /// The caller's log as this witness knows it: its origin and the latest checkpoint
    /// cosigned. Should a node have had several origins (a territory renamed), the one with
    /// the largest cosigned tree is its log.
    fn cosigned_of(&self, node_id: &str) -> Result<Option<(String, Cosigned)>, WitnessError> {
        let mut best: Option<(String, Cosigned)> = None;
        for kv in self.state.iter() {
            let (k, v) = kv?;
            let origin = String::from_utf8_lossy(&k).into_owned();
            if !origin_is_of(&origin, node_id) {
                continue;
            }
            let c = Cosigned::decode(&v)?;
            if best.as_ref().is_none_or(|(_, b)| c.size > b.size) {
                best = Some((origin, c));
            }
        }
        Ok(best)
    }

    /// C2SP tlog-witness add-checkpoint, for the caller's own log. Never fails: storage
    /// errors answer 500, which the caller retries later.
    pub fn add_checkpoint(
        &self,
        archive: &Archive,
        caller: &Caller,
        body: &[u8],
    ) -> AddCheckpointResponse {
        match self.try_add_checkpoint(archive, caller, body) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(peer = %caller.node_id, error = %e, "witness: add-checkpoint failed");
                reason(500, e)
            }
        }
    }

    fn try_add_checkpoint(
        &self,
        archive: &Archive,
        caller: &Caller,
        body: &[u8],
    ) -> Result<AddCheckpointResponse, WitnessError> {
        let req = match AddCheckpointBody::parse(body) {
            Ok(r) => r,
            Err(e) => return Ok(reason(400, e)),
        };
        let note = match Note::parse(&req.checkpoint) {
            Ok(n) => n,
            Err(e) => return Ok(reason(400, format!("checkpoint note: {e}"))),
        };
        let cp = match Checkpoint::parse_text(&note.text) {
            Ok(c) => c,
            Err(e) => return Ok(reason(400, format!("checkpoint: {e}"))),
        };
        // A peer's only log is its own; any other origin is unknown here.
        if !origin_is_of(&cp.origin, &caller.node_id) {
            return Ok(reason(
                404,
                format!(
                    "unknown origin {:?}: this witness only witnesses your own log, archipel/<territory>/{}",
                    cp.origin, caller.node_id
                ),
            ));
        }
        let Ok(verifier) = Verifier::new(&cp.origin, caller.key) else {
            return Ok(reason(404, format!("unknown origin {:?}", cp.origin)));
        };
        if let Err(e) = Checkpoint::open(&req.checkpoint, &verifier) {
            return Ok(reason(
                403,
                format!("no valid signature by the log key of {}: {e}", cp.origin),
            ));
        }
        // Only the log's own signature lines are kept and handed back later.
        let kept = Note {
            text: note.text.clone(),
            signatures: note
                .signatures
                .into_iter()
                .filter(|s| s.name == verifier.name() && s.key_id == verifier.key_id())
                .collect(),
        };
        let signer = cosigner(&archive.identity)?;
        for _ in 0..CAS_ROUNDS {
            let current = self.state.get(cp.origin.as_bytes())?;
            let prev = current.as_deref().map(Cosigned::decode).transpose()?;
            // Evidence first, whatever old size the client claims: a checkpoint signed by the
            // log's key that contradicts what this witness cosigned or keeps proves a fork.
            if let Some(p) = &prev
                && cp.size == p.size
                && cp.root != p.root
            {
                return self.misbehaviour(
                    archive,
                    caller,
                    prev.as_ref(),
                    &format!(
                        "checkpoint of size {} has a different root than the one this witness cosigned at that size",
                        cp.size
                    ),
                    body,
                );
            }
            if let Some(why) = self.contradicts_kept_leaves(&cp)? {
                return self.misbehaviour(archive, caller, prev.as_ref(), &why, body);
            }
            if req.old_size > cp.size {
                return Ok(reason(
                    400,
                    format!(
                        "old size {} is larger than the checkpoint size {}",
                        req.old_size, cp.size
                    ),
                ));
            }
            let prev_size = prev.as_ref().map_or(0, |p| p.size);
            if req.old_size != prev_size {
                return Ok(answer(409, encode_size_body(prev_size), SIZE_CONTENT_TYPE));
            }
            match &prev {
                _ if req.old_size == 0 || req.old_size == cp.size => {
                    // Nothing to prove (equal sizes: equal roots were checked above).
                    if !req.proof.is_empty() {
                        return Ok(reason(
                            400,
                            format!(
                                "a consistency proof from size {} to {} must be empty",
                                req.old_size, cp.size
                            ),
                        ));
                    }
                }
                Some(p) => {
                    if let Err(e) =
                        verify_consistency(p.size, cp.size, &req.proof, &p.root, &cp.root)
                    {
                        return self.misbehaviour(
                            archive,
                            caller,
                            prev.as_ref(),
                            &format!(
                                "no valid consistency proof from the cosigned size {} to {}: {e}",
                                p.size, cp.size
                            ),
                            body,
                        );
                    }
                }
                // old_size == prev_size, so old_size > 0 implies a previous checkpoint.
                None => return Err(WitnessError::Storage("witness state vanished".into())),
            }
            let now = u64::try_from(crate::clock::now_unix()).unwrap_or(0);
            let sig = signer.sign(&note.text, now)?;
            let line = sig.to_line();
            let mut cosigned_note = kept.clone();
            cosigned_note.signatures.push(sig);
            let next = Cosigned {
                size: cp.size,
                root: cp.root,
                note: cosigned_note.encode(),
            };
            // The old-size check above and this store are one step: the swap only happens
            // if the state is still the one checked.
            match self.state.compare_and_swap(
                cp.origin.as_bytes(),
                current.as_ref(),
                Some(next.encode()),
            )? {
                Ok(()) => {
                    // Persisted before answering: a cosignature must never be forgotten.
                    self.state.flush()?;
                    tracing::debug!(origin = %cp.origin, size = cp.size, "witness: cosigned");
                    return Ok(answer(200, line.into_bytes(), COSIGNATURE_CONTENT_TYPE));
                }
                // Another submission moved the state: decide again against the new one.
                Err(_) => continue,
            }
        }
        Ok(reason(503, "too many concurrent submissions; try again"))
    }

    /// A reason if `cp` contradicts the leaves this witness keeps and verified.
    fn contradicts_kept_leaves(&self, cp: &Checkpoint) -> Result<Option<String>, WitnessError> {
        let tree = self.log_of(&cp.origin)?;
        let verified = get_u64(&tree, VERIFIED)?;
        if cp.size == 0 || cp.size > verified {
            return Ok(None);
        }
        let root = tree_root(&LogView::new(&tree)?, cp.size)?;
        Ok((root != cp.root).then(|| {
            format!(
                "checkpoint of size {} contradicts the {verified} leaves this witness keeps, checked against a checkpoint it cosigned",
                cp.size
            )
        }))
    }

    /// Refuses a checkpoint or leaves that show the caller's log misbehaving: keeps the
    /// evidence, appends an alert to this node's log (once per distinct evidence), answers
    /// 422.
    fn misbehaviour(
        &self,
        archive: &Archive,
        caller: &Caller,
        cosigned: Option<&Cosigned>,
        why: &str,
        request: &[u8],
    ) -> Result<AddCheckpointResponse, WitnessError> {
        self.record_evidence(archive, caller, cosigned, why, request)?;
        Ok(reason(
            422,
            format!("refused, and kept as evidence of log misbehaviour: {why}"),
        ))
    }

    fn record_evidence(
        &self,
        archive: &Archive,
        caller: &Caller,
        cosigned: Option<&Cosigned>,
        why: &str,
        request: &[u8],
    ) -> Result<(), WitnessError> {
        let mut evidence = format!(
            "archipel-witness-evidence/v1\nreason {why}\ncaller {}\n\ncosigned\n{}\nrequest\n",
            caller.node_id,
            cosigned.map_or("none\n", |c| c.note.as_str()),
        )
        .into_bytes();
        evidence.extend_from_slice(request);
        let digest = *blake3::hash(&evidence).as_bytes();
        tracing::error!(peer = %caller.node_id, evidence = %hex::encode(digest), "witness: {why}");
        // The same evidence submitted again (a peer retrying) raises no second alert.
        let new = self
            .evidence
            .compare_and_swap(digest, None as Option<&[u8]>, Some(evidence))?
            .is_ok();
        self.evidence.flush()?;
        if new {
            archive
                .append_event(
                    "archipel:alert",
                    &caller.node_id,
                    "witness",
                    Outcome::Failure,
                    digest,
                )
                .map_err(|e| WitnessError::Storage(format!("alert event: {e}")))?;
            archive.store.db().flush()?;
        }
        Ok(())
    }

    /// The evidence this witness keeps, by BLAKE3 digest (for operators and tests).
    pub fn evidence(&self) -> Result<Vec<Evidence>, WitnessError> {
        self.evidence
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let k = <[u8; 32]>::try_from(k.as_ref())
                    .map_err(|_| WitnessError::Storage("evidence key".into()))?;
                Ok((k, v.to_vec()))
            })
            .collect()
    }

    /// Keeps a page of the caller's log leaves. They must continue exactly the leaves kept,
    /// stay within the checkpoint this witness cosigned, and be events of the caller; once
    /// they reach that checkpoint's size their root must be its root, or they are dropped
    /// (back to the last verified size) and kept as evidence. An empty push only asks how
    /// many leaves the witness keeps (verified or not), where the next push starts.
    pub fn push_log_entries(
        &self,
        archive: &Archive,
        caller: &Caller,
        request: PushLogEntriesRequest,
    ) -> Result<PushLogEntriesResponse, WitnessError> {
        let (origin, cosigned) = self
            .cosigned_of(&caller.node_id)?
            .ok_or_else(|| WitnessError::NotWitnessed(caller.node_id.clone()))?;
        let tree = self.log_of(&origin)?;
        let kept = LogView::new(&tree)?.size();
        if request.leaves.is_empty() {
            return Ok(PushLogEntriesResponse { size: kept });
        }
        if request.leaves.len() > MAX_PUSH {
            return Err(WitnessError::TooMany(request.leaves.len()));
        }
        if request.start != kept {
            return Err(WitnessError::Gap {
                expected: kept,
                got: request.start,
            });
        }
        let end = kept + request.leaves.len() as u64;
        if end > cosigned.size {
            return Err(WitnessError::BeyondCheckpoint {
                end,
                cosigned: cosigned.size,
            });
        }
        for (i, leaf) in request.leaves.iter().enumerate() {
            let index = kept + i as u64;
            let e = Event::decode(leaf).map_err(|e| WitnessError::BadLeaf {
                index,
                reason: e.to_string(),
            })?;
            if e.agent_node != caller.node_id {
                return Err(WitnessError::BadLeaf {
                    index,
                    reason: format!("an event of node {}", e.agent_node),
                });
            }
        }
        (&tree,)
            .transaction(|(t,)| {
                // Checked again inside: two pushes racing must not both append.
                let now = t
                    .get(b"size")?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                    .map_or(0, u64::from_be_bytes);
                if now != kept {
                    return Err(ConflictableTransactionError::Abort(WitnessError::Gap {
                        expected: now,
                        got: kept,
                    }));
                }
                for leaf in &request.leaves {
                    log_tree::append_tx::<WitnessError>(t, leaf)?;
                }
                Ok(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => e.into(),
            })?;
        if end == cosigned.size {
            let root = tree_root(&LogView::new(&tree)?, end)?;
            if root != cosigned.root {
                let verified = get_u64(&tree, VERIFIED)?;
                log_tree::truncate(&tree, verified)?;
                tree.flush()?;
                let why = format!(
                    "pushed leaves [{kept}, {end}) give root {} at size {end}, not the root of the checkpoint it signed at that size",
                    hex::encode(root)
                );
                self.record_evidence(
                    archive,
                    caller,
                    Some(&cosigned),
                    &why,
                    format!("push {kept} {end}\n").as_bytes(),
                )?;
                return Err(WitnessError::Mismatch { size: end });
            }
            let mut batch = sled::Batch::default();
            batch.insert(VERIFIED, &end.to_be_bytes());
            batch.insert(VERIFIED_NOTE, cosigned.note.as_bytes());
            tree.apply_batch(batch)?;
        }
        tree.flush()?;
        Ok(PushLogEntriesResponse { size: end })
    }

    /// The caller's own log as this witness keeps it: verified leaves from `start` (at most
    /// `limit`, capped at [`MAX_FETCH`]), how many verified leaves it keeps, and the
    /// checkpoint it cosigned at exactly that size (the peer-signed note with this witness's
    /// cosignature), so the leaves check against it; with no verified leaf yet, the latest
    /// checkpoint cosigned. Nothing witnessed: an empty answer.
    pub fn fetch_log(
        &self,
        caller: &Caller,
        request: FetchLogRequest,
    ) -> Result<FetchLogResponse, WitnessError> {
        let Some((origin, cosigned)) = self.cosigned_of(&caller.node_id)? else {
            return Ok(FetchLogResponse::default());
        };
        let tree = self.log_of(&origin)?;
        let verified = get_u64(&tree, VERIFIED)?;
        let checkpoint = match tree.get(VERIFIED_NOTE)? {
            Some(n) if verified > 0 => String::from_utf8_lossy(&n).into_owned(),
            _ => cosigned.note,
        };
        let limit = u64::from(request.limit.min(MAX_FETCH));
        let end = verified.min(request.start.saturating_add(limit));
        let view = LogView::new(&tree)?;
        let leaves = (request.start..end)
            .map(|i| view.leaf(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FetchLogResponse {
            leaves,
            checkpoint,
            size: verified,
        })
    }
}

#[cfg(test)]
mod tests;
