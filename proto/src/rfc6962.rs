//! RFC 6962 / RFC 9162 Merkle tree over SHA-256: hashes, proof building and proof checking.
//!
//! The verifiers follow RFC 9162 sections 2.1.3.2 (inclusion) and 2.1.4.2 (consistency) step
//! by step, with the conventions of the transparency-dev Go library
//! (github.com/transparency-dev/merkle), so that Archipel accepts and rejects exactly what
//! standard verifiers and witnesses do:
//! - a leaf hash or proof hash that is not 32 bytes is an error;
//! - a consistency proof from size 0 is an error ("meaningless"); a witness handles `old 0`
//!   itself, before any proof is checked;
//! - expected roots are compared as opaque byte strings, as Go's `verifyMatch` does (a root of
//!   the wrong length never equals a computed one, but two equal roots for two equal sizes
//!   match whatever their length).
//!
//! Proofs are built from a [`SubtreeHashes`] source, so that a persistent log can answer them
//! in O(log n) from stored interior nodes; the in-memory implementation over a slice of leaf
//! hashes recomputes subtrees in O(n), which is fine for tests and small trees.

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Size in bytes of every hash in the tree.
pub const HASH_SIZE: usize = 32;

/// A SHA-256 tree hash.
pub type Hash = [u8; HASH_SIZE];

/// Why a proof could not be built or did not verify.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProofError {
    #[error("leaf index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("{what} is {len} bytes long, but a SHA-256 hash is 32 bytes")]
    BadHashLength { what: &'static str, len: usize },
    #[error("wrong proof size: got {got} hashes, want {want}")]
    WrongProofSize { got: usize, want: usize },
    #[error("proof length does not match the path through the tree")]
    PathMismatch,
    #[error("calculated root {calculated} does not match the expected root {expected}")]
    RootMismatch {
        calculated: String,
        expected: String,
    },
    #[error("calculated old root {calculated} does not match the expected old root {expected}")]
    OldRootMismatch {
        calculated: String,
        expected: String,
    },
    #[error("old tree size {size1} is larger than new tree size {size2}")]
    OldSizeLarger { size1: u64, size2: u64 },
    #[error("a consistency proof from an empty tree is meaningless")]
    EmptyOldTree,
    #[error("tree sizes are equal ({size}) but the consistency proof is not empty")]
    NonEmptyProofForEqualSizes { size: u64 },
    #[error("empty consistency proof between different tree sizes {size1} and {size2}")]
    EmptyProof { size1: u64, size2: u64 },
    #[error("tree size {size} is beyond the {leaf_count} leaves available")]
    SizeBeyondTree { size: u64, leaf_count: u64 },
    #[error("leaf range [{start}, {end}) is empty or outside a tree of {leaf_count} leaves")]
    RangeOutOfBounds {
        start: u64,
        end: u64,
        leaf_count: u64,
    },
    #[error("leaf range [{start}, {end}) does not start on a subtree boundary")]
    UnalignedRange { start: u64, end: u64 },
}

/// Hash of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Leaf hash: SHA-256(0x00 || leaf).
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(leaf);
    h.finalize().into()
}

/// Interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Root (MTH) of a list of leaf hashes; the empty list gives [`empty_root`].
pub fn root_from_leaf_hashes(leaf_hashes: &[Hash]) -> Hash {
    match leaf_hashes {
        [] => empty_root(),
        [only] => *only,
        _ => {
            // Split at the largest power of two strictly smaller than n (RFC 6962 2.1).
            let k = largest_power_of_two_below(leaf_hashes.len() as u64) as usize;
            let (left, right) = leaf_hashes.split_at(k);
            node_hash(&root_from_leaf_hashes(left), &root_from_leaf_hashes(right))
        }
    }
}

/// A source of subtree hashes, enough to build proofs.
///
/// Only [`perfect_subtree_hash`](Self::perfect_subtree_hash) is required: complete subtrees
/// never change once their leaves exist, so a persistent log can store them and answer in
/// O(1); [`range_hash`](Self::range_hash) then combines O(log n) of them.
pub trait SubtreeHashes {
    /// The storage's error type; proof building errors convert into it.
    type Error: From<ProofError>;

    /// Number of leaves currently available.
    fn leaf_count(&self) -> u64;

    /// Hash of the perfect subtree of 2^`level` leaves starting at leaf `index << level`.
    fn perfect_subtree_hash(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;

    /// MTH of the leaves [start, end), for a non-empty range whose start is a multiple of the
    /// largest power of two not above its length: the only ranges proofs ask for.
    ///
    /// The default splits the range into perfect subtrees, largest first, and hashes them
    /// together from the right, which is the RFC 6962 recursion unrolled.
    fn range_hash(&self, start: u64, end: u64) -> Result<Hash, Self::Error> {
        let leaf_count = self.leaf_count();
        if start >= end || end > leaf_count {
            return Err(ProofError::RangeOutOfBounds {
                start,
                end,
                leaf_count,
            }
            .into());
        }
        let len = end - start;
        let top = u64::BITS - 1 - len.leading_zeros();
        if start & ((1u64 << top) - 1) != 0 {
            return Err(ProofError::UnalignedRange { start, end }.into());
        }
        let mut parts = Vec::with_capacity(len.count_ones() as usize);
        let mut pos = start;
        for level in (0..=top).rev() {
            if (len >> level) & 1 == 1 {
                parts.push(self.perfect_subtree_hash(level, pos >> level)?);
                pos += 1u64 << level;
            }
        }
        let mut rev = parts.into_iter().rev();
        let mut acc = rev.next().ok_or(ProofError::RangeOutOfBounds {
            start,
            end,
            leaf_count,
        })?;
        for left in rev {
            acc = node_hash(&left, &acc);
        }
        Ok(acc)
    }
}

/// In-memory source over leaf hashes: O(2^level) per subtree, fine for tests.
impl SubtreeHashes for [Hash] {
    type Error = ProofError;

    fn leaf_count(&self) -> u64 {
        self.len() as u64
    }

    fn perfect_subtree_hash(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        let leaf_count = self.leaf_count();
        let width = 1u64.checked_shl(level);
        let start = width.and_then(|w| index.checked_mul(w));
        let end = start.zip(width).and_then(|(s, w)| s.checked_add(w));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(ProofError::RangeOutOfBounds {
                start: u64::MAX,
                end: u64::MAX,
                leaf_count,
            });
        };
        let leaves = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.get(s..e))
            .ok_or(ProofError::RangeOutOfBounds {
                start,
                end,
                leaf_count,
            })?;
        Ok(root_from_leaf_hashes(leaves))
    }
}

impl SubtreeHashes for Vec<Hash> {
    type Error = ProofError;

    fn leaf_count(&self) -> u64 {
        self.as_slice().leaf_count()
    }

    fn perfect_subtree_hash(&self, level: u32, index: u64) -> Result<Hash, ProofError> {
        self.as_slice().perfect_subtree_hash(level, index)
    }
}

/// Root of the tree made of the first `size` leaves of `tree`.
pub fn tree_root<S: SubtreeHashes + ?Sized>(tree: &S, size: u64) -> Result<Hash, S::Error> {
    if size == 0 {
        return Ok(empty_root());
    }
    check_size(tree, size)?;
    tree.range_hash(0, size)
}

/// Inclusion proof (RFC 9162 2.1.3.1) of leaf `index` in the whole tree.
pub fn inclusion_proof<S: SubtreeHashes + ?Sized>(
    tree: &S,
    index: u64,
) -> Result<Vec<Hash>, S::Error> {
    inclusion_proof_at(tree, index, tree.leaf_count())
}

/// Inclusion proof of leaf `index` in the tree of the first `size` leaves (an older tree head).
pub fn inclusion_proof_at<S: SubtreeHashes + ?Sized>(
    tree: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    check_size(tree, size)?;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size }.into());
    }
    // PATH(m, D[lo:hi]) walked from the root down; siblings are collected top-down and the
    // proof lists them bottom-up.
    let mut siblings = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let mid = lo + largest_power_of_two_below(hi - lo);
        if index < mid {
            siblings.push(tree.range_hash(mid, hi)?);
            hi = mid;
        } else {
            siblings.push(tree.range_hash(lo, mid)?);
            lo = mid;
        }
    }
    siblings.reverse();
    Ok(siblings)
}

/// Consistency proof (RFC 9162 2.1.4.1) from the first `old_size` leaves to the whole tree.
pub fn consistency_proof<S: SubtreeHashes + ?Sized>(
    tree: &S,
    old_size: u64,
) -> Result<Vec<Hash>, S::Error> {
    consistency_proof_between(tree, old_size, tree.leaf_count())
}

/// Consistency proof between the trees of the first `size1` and `size2` leaves.
///
/// Equal sizes give an empty proof; `size1 == 0` is an error, as in the verifier.
pub fn consistency_proof_between<S: SubtreeHashes + ?Sized>(
    tree: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, S::Error> {
    check_size(tree, size2)?;
    if size1 > size2 {
        return Err(ProofError::OldSizeLarger { size1, size2 }.into());
    }
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree.into());
    }
    if size1 == size2 {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[lo:hi], complete) unrolled: `upper` gets the siblings top-down, and the
    // final node (only when the old tree is not a complete subtree here) goes first.
    let mut m = size1;
    let (mut lo, mut hi) = (0u64, size2);
    let mut complete = true;
    let mut upper = Vec::new();
    let mut first = None;
    loop {
        let n = hi - lo;
        if m == n {
            if !complete {
                first = Some(tree.range_hash(lo, hi)?);
            }
            break;
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            upper.push(tree.range_hash(lo + k, hi)?);
            hi = lo + k;
        } else {
            upper.push(tree.range_hash(lo, lo + k)?);
            m -= k;
            lo += k;
            complete = false;
        }
    }
    let mut proof = Vec::with_capacity(upper.len() + 1);
    proof.extend(first);
    proof.extend(upper.into_iter().rev());
    Ok(proof)
}

/// Root implied by an inclusion proof (RFC 9162 2.1.3.2, steps 1 to 5 without the final
/// comparison).
pub fn root_from_inclusion_proof<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[P],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let leaf = to_hash(leaf_hash, "leaf hash")?;
    // Checked up front only to give a clear error; the RFC loop checks the same thing.
    let want = inclusion_proof_size(index, size);
    if proof.len() != want {
        return Err(ProofError::WrongProofSize {
            got: proof.len(),
            want,
        });
    }
    let mut f = index;
    let mut s = size - 1;
    let mut r = leaf;
    for p in proof {
        let p = to_hash(p.as_ref(), "proof hash")?;
        if s == 0 {
            return Err(ProofError::PathMismatch);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(&p, &r);
            // Skip the levels where this node is a right-border node without a sibling.
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, &p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::PathMismatch);
    }
    Ok(r)
}

/// Checks that the leaf with hash `leaf_hash` is at `index` in the tree of `size` leaves with
/// root `root` (RFC 9162 2.1.3.2).
pub fn verify_inclusion<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf_hash: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    let calculated = root_from_inclusion_proof(index, size, leaf_hash, proof)?;
    if calculated.as_slice() != root {
        return Err(ProofError::RootMismatch {
            calculated: hex::encode(calculated),
            expected: hex::encode(root),
        });
    }
    Ok(())
}

/// Checks that the tree of `size2` leaves with root `root2` extends the tree of `size1` leaves
/// with root `root1` (RFC 9162 2.1.4.2).
pub fn verify_consistency<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::OldSizeLarger { size1, size2 });
    }
    // Before the equal-size case: even 0 -> 0 is refused, as the shared vectors require.
    if size1 == 0 {
        return Err(ProofError::EmptyOldTree);
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::NonEmptyProofForEqualSizes { size: size1 });
        }
        if root1 != root2 {
            return Err(ProofError::RootMismatch {
                calculated: hex::encode(root1),
                expected: hex::encode(root2),
            });
        }
        return Ok(());
    }
    // Step 1.
    if proof.is_empty() {
        return Err(ProofError::EmptyProof { size1, size2 });
    }
    let want = consistency_proof_size(size1, size2);
    if proof.len() != want {
        return Err(ProofError::WrongProofSize {
            got: proof.len(),
            want,
        });
    }
    // Step 2: when the old tree is a complete subtree, its root is the starting node.
    let mut path = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(to_hash(root1, "old root")?);
    }
    for p in proof {
        path.push(to_hash(p.as_ref(), "proof hash")?);
    }
    // Steps 3 and 4.
    let mut f = size1 - 1;
    let mut s = size2 - 1;
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    let (seed, rest) = path
        .split_first()
        .ok_or(ProofError::EmptyProof { size1, size2 })?;
    let mut fr = *seed;
    let mut sr = *seed;
    // Step 6.
    for c in rest {
        if s == 0 {
            return Err(ProofError::PathMismatch);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    if s != 0 {
        return Err(ProofError::PathMismatch);
    }
    if fr.as_slice() != root1 {
        return Err(ProofError::OldRootMismatch {
            calculated: hex::encode(fr),
            expected: hex::encode(root1),
        });
    }
    if sr.as_slice() != root2 {
        return Err(ProofError::RootMismatch {
            calculated: hex::encode(sr),
            expected: hex::encode(root2),
        });
    }
    Ok(())
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size` (> index) leaves:
/// the levels below the point where the paths to `index` and `size - 1` diverge, plus one
/// per left sibling on the right border above it.
fn inclusion_proof_size(index: u64, size: u64) -> usize {
    let (inner, border) = decompose_inclusion(index, size);
    (inner + border) as usize
}

/// Number of hashes in a consistency proof, for 0 < size1 < size2.
fn consistency_proof_size(size1: u64, size2: u64) -> usize {
    let (inner, border) = decompose_inclusion(size1 - 1, size2);
    let shift = size1.trailing_zeros();
    // The old root is given by the caller, not by the proof, when it is a complete subtree.
    let seed = u32::from(!size1.is_power_of_two());
    (seed + inner.saturating_sub(shift) + border) as usize
}

fn decompose_inclusion(index: u64, size: u64) -> (u32, u32) {
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// Largest power of two strictly smaller than `n`, for n >= 2.
fn largest_power_of_two_below(n: u64) -> u64 {
    1u64 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

fn check_size<S: SubtreeHashes + ?Sized>(tree: &S, size: u64) -> Result<(), ProofError> {
    let leaf_count = tree.leaf_count();
    if size > leaf_count {
        return Err(ProofError::SizeBeyondTree { size, leaf_count });
    }
    Ok(())
}

fn to_hash(bytes: &[u8], what: &'static str) -> Result<Hash, ProofError> {
    bytes.try_into().map_err(|_| ProofError::BadHashLength {
        what,
        len: bytes.len(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Panicking is how a test fails.
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::Value;
    use std::path::{Path, PathBuf};

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors/rfc6962");

    fn standard_leaves() -> Vec<Hash> {
        [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
        .iter()
        .map(|h| leaf_hash(&hex::decode(h).unwrap()))
        .collect()
    }

    #[test]
    fn empty_tree_root_is_sha256_of_nothing() {
        assert_eq!(
            hex::encode(root_from_leaf_hashes(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(tree_root(&Vec::<Hash>::new(), 0).unwrap(), empty_root());
    }

    #[test]
    fn known_roots_of_the_standard_leaves() {
        let want = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = standard_leaves();
        assert!(hex::encode(root_from_leaf_hashes(&leaves[..1])).starts_with("6e340b9c"));
        assert!(hex::encode(root_from_leaf_hashes(&leaves)).starts_with("5dc9da79"));
        for (n, want) in want.iter().enumerate() {
            let size = n as u64 + 1;
            assert_eq!(hex::encode(root_from_leaf_hashes(&leaves[..=n])), *want);
            // The trait path (perfect subtrees combined) must agree with the recursion.
            assert_eq!(hex::encode(tree_root(&leaves, size).unwrap()), *want);
        }
    }

    fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                json_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }

    fn b64(v: &Value, field: &str) -> Vec<u8> {
        let s = v[field]
            .as_str()
            .unwrap_or_else(|| panic!("missing {field}"));
        STANDARD.decode(s).unwrap()
    }

    fn proof_field(v: &Value) -> Vec<Vec<u8>> {
        match &v["proof"] {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .map(|p| STANDARD.decode(p.as_str().unwrap()).unwrap())
                .collect(),
            other => panic!("unexpected proof {other}"),
        }
    }

    fn run_vector(path: &Path, kind: &str) -> Result<(), ProofError> {
        let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let proof = proof_field(&v);
        let want_err = v["wantErr"].as_bool().unwrap();
        let got = match kind {
            "inclusion" => verify_inclusion(
                v["leafIdx"].as_u64().unwrap(),
                v["treeSize"].as_u64().unwrap(),
                &b64(&v, "leafHash"),
                &proof,
                &b64(&v, "root"),
            ),
            "consistency" => verify_consistency(
                v["size1"].as_u64().unwrap(),
                v["size2"].as_u64().unwrap(),
                &proof,
                &b64(&v, "root1"),
                &b64(&v, "root2"),
            ),
            _ => unreachable!(),
        };
        assert_eq!(
            got.is_err(),
            want_err,
            "{} ({}): got {got:?}",
            path.display(),
            v["desc"]
        );
        got
    }

    #[test]
    fn every_shared_vector() {
        let mut total = 0;
        for kind in ["inclusion", "consistency"] {
            let mut files = Vec::new();
            json_files(&Path::new(VECTORS).join(kind), &mut files);
            assert!(!files.is_empty(), "no {kind} vectors under {VECTORS}");
            let accepted = files.iter().filter(|f| run_vector(f, kind).is_ok()).count();
            assert!(accepted > 0, "no accepted {kind} vector");
            total += files.len();
        }
        println!("ran {total} RFC 6962 vector files");
        assert!(
            total >= 196,
            "only {total} vector files found, the shared set has 196"
        );
    }

    fn flip(h: &Hash) -> Hash {
        let mut h = *h;
        h[7] ^= 0x10;
        h
    }

    #[test]
    fn built_proofs_verify_and_tampered_ones_do_not() {
        let leaves: Vec<Hash> = (0u32..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let size = n as u64;
            let tree = leaves[..n].to_vec();
            let root = root_from_leaf_hashes(&tree);
            assert_eq!(tree_root(&leaves, size).unwrap(), root);

            for index in 0..size {
                let leaf = &tree[index as usize];
                let proof = inclusion_proof(&tree, index).unwrap();
                // Building against an older size of a larger tree gives the same proof.
                assert_eq!(inclusion_proof_at(&leaves, index, size).unwrap(), proof);
                verify_inclusion(index, size, leaf, &proof, &root).unwrap();
                assert_eq!(
                    root_from_inclusion_proof(index, size, leaf, &proof).unwrap(),
                    root
                );

                assert!(verify_inclusion(index, size, &flip(leaf), &proof, &root).is_err());
                assert!(verify_inclusion(index, size, leaf, &proof, &flip(&root)).is_err());
                if index + 1 < size {
                    assert!(verify_inclusion(index + 1, size, leaf, &proof, &root).is_err());
                }
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i] = flip(&bad[i]);
                    assert!(verify_inclusion(index, size, leaf, &bad, &root).is_err());
                }
                let mut longer = proof.clone();
                longer.push(root);
                assert!(verify_inclusion(index, size, leaf, &longer, &root).is_err());
                if !proof.is_empty() {
                    let shorter = &proof[..proof.len() - 1];
                    assert!(verify_inclusion(index, size, leaf, shorter, &root).is_err());
                }
            }

            for old in 1..=size {
                let old_root = root_from_leaf_hashes(&tree[..old as usize]);
                let proof = consistency_proof(&tree, old).unwrap();
                assert_eq!(
                    consistency_proof_between(&leaves, old, size).unwrap(),
                    proof
                );
                verify_consistency(old, size, &proof, &old_root, &root).unwrap();

                assert!(verify_consistency(old, size, &proof, &flip(&old_root), &root).is_err());
                assert!(verify_consistency(old, size, &proof, &old_root, &flip(&root)).is_err());
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i] = flip(&bad[i]);
                    assert!(verify_consistency(old, size, &bad, &old_root, &root).is_err());
                }
                let mut longer = proof.clone();
                longer.push(root);
                assert!(verify_consistency(old, size, &longer, &old_root, &root).is_err());
                if !proof.is_empty() {
                    let shorter = &proof[..proof.len() - 1];
                    assert!(verify_consistency(old, size, shorter, &old_root, &root).is_err());
                }
            }
        }
    }

    #[test]
    fn builder_errors() {
        let tree: Vec<Hash> = (0u8..5).map(|i| leaf_hash(&[i])).collect();
        assert_eq!(
            inclusion_proof(&tree, 5),
            Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
        );
        assert_eq!(
            inclusion_proof_at(&tree, 0, 6),
            Err(ProofError::SizeBeyondTree {
                size: 6,
                leaf_count: 5
            })
        );
        assert_eq!(consistency_proof(&tree, 0), Err(ProofError::EmptyOldTree));
        assert_eq!(
            consistency_proof(&tree, 6),
            Err(ProofError::OldSizeLarger { size1: 6, size2: 5 })
        );
        assert_eq!(consistency_proof(&tree, 5), Ok(Vec::new()));
        assert!(matches!(
            tree.range_hash(1, 3),
            Err(ProofError::UnalignedRange { start: 1, end: 3 })
        ));
        assert!(matches!(
            tree.range_hash(3, 3),
            Err(ProofError::RangeOutOfBounds { .. })
        ));
        assert!(matches!(
            tree.perfect_subtree_hash(64, 0),
            Err(ProofError::RangeOutOfBounds { .. })
        ));
        assert!(matches!(
            tree.perfect_subtree_hash(1, u64::MAX),
            Err(ProofError::RangeOutOfBounds { .. })
        ));
    }

    #[test]
    fn verifier_errors_are_specific() {
        let tree = standard_leaves();
        let root = root_from_leaf_hashes(&tree);
        let proof = inclusion_proof(&tree, 2).unwrap();
        assert_eq!(
            verify_inclusion(u64::MAX, 8, &tree[2], &proof, &root),
            Err(ProofError::IndexOutOfRange {
                index: u64::MAX,
                size: 8
            })
        );
        assert_eq!(
            verify_inclusion(2, 8, &tree[2][..31], &proof, &root),
            Err(ProofError::BadHashLength {
                what: "leaf hash",
                len: 31
            })
        );
        assert_eq!(
            verify_inclusion(2, 8, &tree[2], &proof[..2], &root),
            Err(ProofError::WrongProofSize { got: 2, want: 3 })
        );
        let short: Vec<&[u8]> = vec![&proof[0], &proof[1][..5], &proof[2]];
        assert!(matches!(
            verify_inclusion(2, 8, &tree[2], &short, &root),
            Err(ProofError::BadHashLength { len: 5, .. })
        ));
        assert!(matches!(
            verify_inclusion(3, 8, &tree[2], &proof, &root),
            Err(ProofError::RootMismatch { .. })
        ));
        let none: [Hash; 0] = [];
        assert_eq!(
            verify_consistency(0, 0, &none, &root, &root),
            Err(ProofError::EmptyOldTree)
        );
        assert_eq!(
            verify_consistency(4, 3, &none, &root, &root),
            Err(ProofError::OldSizeLarger { size1: 4, size2: 3 })
        );
        assert_eq!(
            verify_consistency(3, 8, &none, &root, &root),
            Err(ProofError::EmptyProof { size1: 3, size2: 8 })
        );
        assert_eq!(
            verify_consistency(8, 8, &[root], &root, &root),
            Err(ProofError::NonEmptyProofForEqualSizes { size: 8 })
        );
        let old_root = root_from_leaf_hashes(&tree[..3]);
        let proof = consistency_proof(&tree, 3).unwrap();
        assert!(matches!(
            verify_consistency(3, 8, &proof, &flip(&old_root), &root),
            Err(ProofError::OldRootMismatch { .. })
        ));
        assert!(ProofError::EmptyOldTree.to_string().contains("meaningless"));
    }
}
