//! The origin's side: who keeps copies of this node's records, since when, and how each
//! peer is doing.
//!
//! Trees:
//! - `custody`: record ID ‖ holder node ID → the latest receipt ([`Holder`], protobuf);
//! - `custody_index`: holder node ID ‖ record ID → BLAKE3 of the envelope receipted (32
//!   bytes) ‖ stored bytes of the record (8, big-endian): the set anti-entropy compares with
//!   what the holder says it has, and the accounting;
//! - `peer_state`: node ID → [`PeerState`] (TOML): last seen, failing since, latest
//!   challenge, cosigned size, public key.
//!
//! Receipts are appended to the audit log (PREMIS `replication`) in the same transaction.

use super::FederationError;
use super::reconcile::SledRangeSet;
use crate::log::tree as log_tree;
use crate::log::{AuditLog, PendingEvent};
use archipel_proto::v1::{CustodyReceipt, Holder};
use prost::Message;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;

/// What the origin knows of a peer's behaviour.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerState {
    /// Unix seconds of the last successful exchange; 0 = never.
    #[serde(default)]
    pub last_seen: u64,
    /// Unix seconds of the first failure since the last success; 0 = not failing.
    #[serde(default)]
    pub failing_since: u64,
    #[serde(default)]
    pub last_challenge: String,
    #[serde(default)]
    pub last_challenge_outcome: String,
    /// Size of our log this peer last cosigned.
    #[serde(default)]
    pub cosigned_size: u64,
    /// The peer's Ed25519 public key, hex (checked against its node ID when learnt).
    #[serde(default)]
    pub public_key: String,
}

/// A receipt to record.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub record_id: String,
    pub holder: String,
    pub territory: String,
    pub receipt: CustodyReceipt,
    pub envelope_digest: [u8; 32],
    /// BLAKE3 of the key envelope the holder was sent: after a key rotation the origin
    /// sends the re-wrapped envelope again, and retires the old key only once every
    /// holder has it.
    pub key_digest: [u8; 32],
    pub stored_bytes: u64,
    /// The audit event; `None` when custody is only being recovered (restore), since the
    /// log already holds the original event.
    pub event: Option<PendingEvent>,
}

#[derive(Debug, Clone)]
pub struct Custody {
    custody: sled::Tree,
    index: sled::Tree,
    state: sled::Tree,
}

fn key(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len());
    k.extend_from_slice(a.as_bytes());
    k.extend_from_slice(b.as_bytes());
    k
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Custody {
    pub fn open(db: &sled::Db) -> Result<Self, FederationError> {
        Ok(Custody {
            custody: db.open_tree("custody")?,
            index: db.open_tree("custody_index")?,
            state: db.open_tree("peer_state")?,
        })
    }

    /// Every receipted holder of a record (removed peers included; callers filter).
    pub fn holders_of(&self, record_id: &str) -> Result<Vec<Holder>, FederationError> {
        self.custody
            .scan_prefix(record_id.as_bytes())
            .values()
            .map(|v| {
                Holder::decode(v?.as_ref())
                    .map_err(|e| FederationError::Storage(format!("custody of {record_id}: {e}")))
            })
            .collect()
    }

    /// Every (record ID, holder node ID) with a receipt, sorted by record.
    pub fn all(
        &self,
    ) -> Result<impl Iterator<Item = Result<(String, String), FederationError>> + '_, FederationError>
    {
        Ok(self.custody.iter().keys().map(|k| {
            let k = k?;
            // Node IDs are 32 characters: the record ID is what comes before.
            let split = k.len().saturating_sub(32);
            Ok((
                String::from_utf8_lossy(&k[..split]).into_owned(),
                String::from_utf8_lossy(&k[split..]).into_owned(),
            ))
        }))
    }

    /// The envelope digest a holder's receipt names, if it has one.
    pub fn receipted_digest(
        &self,
        holder: &str,
        record_id: &str,
    ) -> Result<Option<[u8; 32]>, FederationError> {
        self.index_digest(holder, record_id, 0)
    }

    /// The 32-byte digest at `at` in a `custody_index` value.
    fn index_digest(
        &self,
        holder: &str,
        record_id: &str,
        at: usize,
    ) -> Result<Option<[u8; 32]>, FederationError> {
        Ok(self.index.get(key(holder, record_id))?.and_then(|v| {
            v.get(at..at + 32)
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
        }))
    }

    /// The digest of the key envelope a holder last received with its receipted copy
    /// (`None` for receipts recorded before key digests were kept: sent again).
    pub fn receipted_key_digest(
        &self,
        holder: &str,
        record_id: &str,
    ) -> Result<Option<[u8; 32]>, FederationError> {
        // After the envelope digest (32 bytes) and the stored bytes (8).
        self.index_digest(holder, record_id, 40)
    }

    /// Records the receipts and their audit events in one transaction.
    pub fn record(&self, log: &AuditLog, receipts: &[NewReceipt]) -> Result<(), FederationError> {
        let mut values = Vec::with_capacity(receipts.len());
        for r in receipts {
            let since = match self.custody.get(key(&r.record_id, &r.holder))? {
                Some(old) => Holder::decode(old.as_ref())
                    .map(|h| h.since)
                    .unwrap_or_default(),
                None => String::new(),
            };
            let since = if since.is_empty() {
                crate::clock::now_rfc3339()
            } else {
                since
            };
            values.push(
                Holder {
                    node_id: r.holder.clone(),
                    territory: r.territory.clone(),
                    since,
                    receipt: Some(r.receipt.clone()),
                }
                .encode_to_vec(),
            );
        }
        (&self.custody, &self.index, log.tree())
            .transaction(|(custody, index, log_t)| {
                for (r, v) in receipts.iter().zip(&values) {
                    custody.insert(key(&r.record_id, &r.holder), v.as_slice())?;
                    let mut iv = r.envelope_digest.to_vec();
                    iv.extend_from_slice(&r.stored_bytes.to_be_bytes());
                    iv.extend_from_slice(&r.key_digest);
                    index.insert(key(&r.holder, &r.record_id), iv)?;
                    if let Some(e) = r.event.as_ref().filter(|_| log.enabled) {
                        log_tree::append_tx::<FederationError>(log_t, &e.leaf)?;
                    }
                }
                Ok::<_, ConflictableTransactionError<FederationError>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => e.into(),
            })?;
        Ok(())
    }

    /// Forgets a holder's receipt for a record (it failed a challenge or lost the record):
    /// replication will send the record again. The audit log keeps the history.
    pub fn forget(&self, holder: &str, record_id: &str) -> Result<(), FederationError> {
        (&self.custody, &self.index)
            .transaction(|(custody, index)| {
                custody.remove(key(record_id, holder))?;
                index.remove(key(holder, record_id))?;
                Ok::<_, ConflictableTransactionError<FederationError>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Abort(e) => e,
                sled::transaction::TransactionError::Storage(e) => e.into(),
            })?;
        Ok(())
    }

    /// The (record ID, envelope digest) set receipted by `holder`, for anti-entropy.
    pub fn index_of(&self, holder: &str) -> SledRangeSet {
        SledRangeSet {
            tree: self.index.clone(),
            prefix: holder.as_bytes().to_vec(),
        }
    }

    /// Records and stored bytes receipted by `holder`.
    pub fn totals_at(&self, holder: &str) -> Result<(u64, u64), FederationError> {
        let (mut records, mut bytes) = (0u64, 0u64);
        for v in self.index.scan_prefix(holder.as_bytes()).values() {
            let v = v?;
            records += 1;
            bytes += v
                .get(32..40)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
        }
        Ok((records, bytes))
    }

    /// Record IDs receipted by `holder` (challenges pick among them).
    pub fn records_at(
        &self,
        holder: &str,
    ) -> impl Iterator<Item = Result<String, FederationError>> + '_ {
        let n = holder.len();
        self.index
            .scan_prefix(holder.as_bytes())
            .keys()
            .map(move |k| Ok(String::from_utf8_lossy(&k?[n..]).into_owned()))
    }

    pub fn state(&self, node_id: &str) -> Result<PeerState, FederationError> {
        Ok(match self.state.get(node_id.as_bytes())? {
            Some(v) => toml::from_str(&String::from_utf8_lossy(&v)).unwrap_or_default(),
            None => PeerState::default(),
        })
    }

    pub fn update_state(
        &self,
        node_id: &str,
        f: impl Fn(&mut PeerState),
    ) -> Result<PeerState, FederationError> {
        let mut out = PeerState::default();
        self.state.update_and_fetch(node_id.as_bytes(), |old| {
            let mut s: PeerState = old
                .and_then(|v| toml::from_str(&String::from_utf8_lossy(v)).ok())
                .unwrap_or_default();
            f(&mut s);
            out = s.clone();
            toml::to_string(&s).ok().map(String::into_bytes)
        })?;
        Ok(out)
    }

    /// Notes a successful exchange with a peer.
    pub fn seen(&self, node_id: &str) -> Result<(), FederationError> {
        let now = unix_now();
        self.update_state(node_id, |s| {
            s.last_seen = now;
            s.failing_since = 0;
        })?;
        Ok(())
    }

    /// Notes a failed exchange with a peer.
    pub fn failed(&self, node_id: &str) -> Result<(), FederationError> {
        let now = unix_now();
        self.update_state(node_id, |s| {
            if s.failing_since == 0 {
                s.failing_since = now;
            }
        })?;
        Ok(())
    }

    /// A peer failing for longer than `grace` seconds is gone: its copies are replaced.
    pub fn is_gone(&self, node_id: &str, grace: u64) -> Result<bool, FederationError> {
        let s = self.state(node_id)?;
        Ok(s.failing_since != 0 && unix_now().saturating_sub(s.failing_since) > grace)
    }
}
