//! The Merkle log persisted in sled (tree `log`).
//!
//! Keys: `size` → leaf count; `L‖index` → leaf bytes; `N‖level‖index` → hash of the perfect
//! subtree of 2^level leaves starting at leaf `index << level`; `R‖record ID` → index of the
//! record's ingestion event. Appending a leaf stores its hash and every perfect subtree it
//! completes (O(log n) writes), so any proof needs O(log n) reads.

use archipel_proto::rfc6962::{Hash, ProofError, SubtreeHashes, leaf_hash, node_hash};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log storage: {0}")]
    Storage(String),
    #[error("log proof: {0}")]
    Proof(#[from] ProofError),
    #[error("the stored log is damaged at {0}")]
    Damaged(String),
    #[error(
        "refusing to sign: the log of size {size} is not consistent with the checkpoint this node signed at size {signed}"
    )]
    Inconsistent { size: u64, signed: u64 },
    #[error("no ingestion event for record {0}")]
    NoRecord(String),
    #[error("this node signed no checkpoint at size {0}")]
    NotSigned(u64),
    #[error("the log is empty: nothing to sign or prove")]
    Empty,
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

impl From<sled::Error> for LogError {
    fn from(e: sled::Error) -> Self {
        LogError::Storage(e.to_string())
    }
}

const SIZE: &[u8] = b"size";

pub fn leaf_key(index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b'L');
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn node_key(level: u32, index: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(10);
    k.push(b'N');
    k.push(level as u8);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn record_key(record_id: &str) -> Vec<u8> {
    let mut k = vec![b'R'];
    k.extend_from_slice(record_id.as_bytes());
    k
}

fn as_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

fn as_hash(v: Option<sled::IVec>, what: &str) -> Result<Hash, LogError> {
    v.and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok())
        .ok_or_else(|| LogError::Damaged(what.to_string()))
}

/// Appends one leaf inside a sled transaction; returns its index.
pub fn append_tx<E>(
    t: &TransactionalTree,
    leaf: &[u8],
) -> Result<u64, ConflictableTransactionError<E>> {
    let index = as_u64(t.get(SIZE)?);
    t.insert(leaf_key(index), leaf)?;
    let mut h = leaf_hash(leaf);
    t.insert(node_key(0, index), &h[..])?;
    let (mut level, mut i) = (0u32, index);
    // Each time this leaf closes a left sibling, the parent subtree is complete.
    while i & 1 == 1 {
        let left = t
            .get(node_key(level, i - 1))?
            .and_then(|v| <[u8; 32]>::try_from(v.as_ref()).ok())
            .unwrap_or([0; 32]);
        h = node_hash(&left, &h);
        level += 1;
        i >>= 1;
        t.insert(node_key(level, i), &h[..])?;
    }
    t.insert(SIZE, &(index + 1).to_be_bytes())?;
    Ok(index)
}

/// Records which leaf is a record's ingestion event.
pub fn index_record_tx<E>(
    t: &TransactionalTree,
    record_id: &str,
    index: u64,
) -> Result<(), ConflictableTransactionError<E>> {
    t.insert(record_key(record_id), &index.to_be_bytes())?;
    Ok(())
}

/// Cuts a log back to its first `keep` leaves, removing the later leaves and every stored
/// subtree hash that covers one of them, in one atomic batch. Only a witness's copy of a
/// peer's log uses this (to drop pushed leaves that did not match the peer's checkpoint);
/// a node's own log only grows.
pub fn truncate(tree: &sled::Tree, keep: u64) -> Result<(), LogError> {
    let size = as_u64(tree.get(SIZE)?);
    if keep >= size {
        return Ok(());
    }
    let mut batch = sled::Batch::default();
    for i in keep..size {
        batch.remove(leaf_key(i));
    }
    // Subtree (level, i) spans [i·2^level, (i+1)·2^level): it is stored once that end is
    // <= size, and covers a removed leaf when that end is > keep. u128: no shift overflows.
    for level in 0..64u32 {
        let width = 1u128 << level;
        if width > u128::from(size) {
            break;
        }
        let mut i = u128::from(keep) / width;
        while (i + 1) * width <= u128::from(size) {
            batch.remove(node_key(level, i as u64));
            i += 1;
        }
    }
    batch.insert(SIZE, &keep.to_be_bytes());
    tree.apply_batch(batch)?;
    Ok(())
}

/// A read view of the log at the size it had when the view was taken.
#[derive(Debug, Clone)]
pub struct LogView {
    tree: sled::Tree,
    size: u64,
}

impl LogView {
    pub fn new(tree: &sled::Tree) -> Result<Self, LogError> {
        Ok(LogView {
            size: as_u64(tree.get(SIZE)?),
            tree: tree.clone(),
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn leaf(&self, index: u64) -> Result<Vec<u8>, LogError> {
        if index >= self.size {
            return Err(ProofError::IndexOutOfRange {
                index,
                size: self.size,
            }
            .into());
        }
        self.tree
            .get(leaf_key(index))?
            .map(|v| v.to_vec())
            .ok_or_else(|| LogError::Damaged(format!("leaf {index} is missing")))
    }

    pub fn record_event(&self, record_id: &str) -> Result<u64, LogError> {
        self.tree
            .get(record_key(record_id))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| LogError::NoRecord(record_id.to_string()))
    }
}

impl SubtreeHashes for LogView {
    type Error = LogError;

    fn leaf_count(&self) -> u64 {
        self.size
    }

    fn perfect_subtree_hash(&self, level: u32, index: u64) -> Result<Hash, LogError> {
        let end = index
            .checked_add(1)
            .and_then(|n| n.checked_shl(level))
            .ok_or(ProofError::RangeOutOfBounds {
                start: index,
                end: index,
                leaf_count: self.size,
            })?;
        if level > 63 || end > self.size {
            return Err(ProofError::RangeOutOfBounds {
                start: index << level.min(63),
                end,
                leaf_count: self.size,
            }
            .into());
        }
        as_hash(
            self.tree.get(node_key(level, index))?,
            &format!("subtree hash {level}/{index}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archipel_proto::rfc6962::{
        consistency_proof_between, inclusion_proof_at, root_from_leaf_hashes, tree_root,
        verify_consistency, verify_inclusion,
    };
    use proptest::prelude::*;
    use sled::Transactional;

    fn append(tree: &sled::Tree, leaf: &[u8]) -> u64 {
        (tree,)
            .transaction(|(t,)| append_tx::<()>(t, leaf))
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// Truncating then appending other leaves gives the tree of the new list of leaves,
        /// with no stale subtree hash left behind.
        #[test]
        fn truncate_then_regrow_matches_the_model(n in 1u64..70, keep_pct in 0u64..100, extra in 0u64..40) {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let tree = db.open_tree("log").unwrap();
            let mut model: Vec<Hash> = Vec::new();
            for i in 0..n {
                let l = format!("a{i}");
                append(&tree, l.as_bytes());
                model.push(leaf_hash(l.as_bytes()));
            }
            let keep = n * keep_pct / 100;
            truncate(&tree, keep).unwrap();
            model.truncate(keep as usize);
            prop_assert_eq!(LogView::new(&tree).unwrap().size(), keep);
            for i in 0..extra {
                let l = format!("b{i}");
                append(&tree, l.as_bytes());
                model.push(leaf_hash(l.as_bytes()));
            }
            let view = LogView::new(&tree).unwrap();
            let size = model.len() as u64;
            prop_assert_eq!(view.size(), size);
            prop_assert_eq!(tree_root(&view, size).unwrap(), root_from_leaf_hashes(&model));
            for s in 1..=size {
                prop_assert_eq!(tree_root(&view, s).unwrap(), root_from_leaf_hashes(&model[..s as usize]));
            }
            // Nothing beyond the size is left.
            prop_assert!(tree.get(leaf_key(size)).unwrap().is_none());
            prop_assert!(tree.get(node_key(0, size)).unwrap().is_none());
        }

        /// The persisted tree against a simple model: the list of leaves.
        #[test]
        fn persisted_tree_matches_the_model(leaves in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..70)) {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let tree = db.open_tree("log").unwrap();
            let mut model: Vec<Hash> = Vec::new();
            for (i, l) in leaves.iter().enumerate() {
                prop_assert_eq!(append(&tree, l), i as u64);
                model.push(leaf_hash(l));
                let view = LogView::new(&tree).unwrap();
                prop_assert_eq!(view.size(), model.len() as u64);
                let n = model.len() as u64;
                prop_assert_eq!(tree_root(&view, n).unwrap(), root_from_leaf_hashes(&model));
                for idx in [0, n / 2, n - 1] {
                    let p = inclusion_proof_at(&view, idx, n).unwrap();
                    verify_inclusion(idx, n, &model[idx as usize], &p, &root_from_leaf_hashes(&model)).unwrap();
                }
                if n > 1 {
                    let old = n / 2 + 1;
                    let p = consistency_proof_between(&view, old, n).unwrap();
                    verify_consistency(old, n, &p, &root_from_leaf_hashes(&model[..old as usize]), &root_from_leaf_hashes(&model)).unwrap();
                }
            }
        }
    }
}
