//! C2SP tlog-proof (`c2sp.org/tlog-proof@v1`): an offline proof that an entry is in a log.
//!
//! Archipel's deposit certificate ("attestation de dépôt") is such a proof whose `extra`
//! line carries the ingestion event's exact leaf bytes, so the file is self-contained.

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::note::Verifier;
use crate::rfc6962::{Hash, ProofError, leaf_hash, verify_inclusion};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

const HEADER: &str = "c2sp.org/tlog-proof@v1";
const MAX_PROOF: usize = 1 << 20;
const MAX_HASHES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlogProofError {
    #[error("proof file is {0} bytes, over the limit of {MAX_PROOF}")]
    TooLong(usize),
    #[error("not a c2sp.org/tlog-proof@v1 file: {0}")]
    Malformed(String),
    #[error("the proof has no extra data: the leaf must be supplied")]
    NoLeaf,
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("inclusion proof of entry {index} in tree of size {size} does not verify: {source}")]
    Inclusion {
        index: u64,
        size: u64,
        source: ProofError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim (with any cosignatures).
    pub checkpoint: String,
}

impl TlogProof {
    pub fn encode(&self) -> String {
        let mut s = format!("{HEADER}\n");
        if let Some(e) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(e)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, TlogProofError> {
        if bytes.len() > MAX_PROOF {
            return Err(TlogProofError::TooLong(bytes.len()));
        }
        let bad = |why: &str| TlogProofError::Malformed(why.to_string());
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("first line must be c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("missing index line"))?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(e).map_err(|_| bad("extra is not base64"))?);
            line = lines.next().ok_or_else(|| bad("missing index line"))?;
        }
        let idx = line
            .strip_prefix("index ")
            .ok_or_else(|| bad("expected `index N`"))?;
        if idx.is_empty()
            || (idx.len() > 1 && idx.starts_with('0'))
            || !idx.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad("index must be a decimal number without leading zeroes"));
        }
        let index: u64 = idx.parse().map_err(|_| bad("index out of range"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_HASHES {
                return Err(bad("too many proof hashes"));
            }
            let h = B64
                .decode(l)
                .map_err(|_| bad("a proof line is not base64"))?;
            proof.push(
                Hash::try_from(h.as_slice()).map_err(|_| bad("a proof hash is not 32 bytes"))?,
            );
        }
        if checkpoint.is_empty() {
            return Err(bad("missing checkpoint"));
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// Verifies the checkpoint's signature by `log_key` and the inclusion of `leaf` (the
    /// `extra` bytes when `leaf` is `None`). Returns the verified checkpoint.
    pub fn verify(
        &self,
        log_key: &Verifier,
        leaf: Option<&[u8]>,
    ) -> Result<Checkpoint, TlogProofError> {
        let cp = Checkpoint::open(self.checkpoint.as_bytes(), log_key)?;
        let leaf = leaf
            .or(self.extra.as_deref())
            .ok_or(TlogProofError::NoLeaf)?;
        verify_inclusion(self.index, cp.size, &leaf_hash(leaf), &self.proof, &cp.root).map_err(
            |source| TlogProofError::Inclusion {
                index: self.index,
                size: cp.size,
                source,
            },
        )?;
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::Signer;
    use crate::rfc6962::{inclusion_proof, root_from_leaf_hashes};
    use ed25519_dalek::SigningKey;

    fn setup() -> (TlogProof, Verifier, Vec<Vec<u8>>) {
        let leaves: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 10]).collect();
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        let signer = Signer::new("archipel/test/log", SigningKey::from_bytes(&[4; 32])).unwrap();
        let cp = Checkpoint {
            origin: "archipel/test/log".into(),
            size: 7,
            root: root_from_leaf_hashes(&hashes),
            extensions: vec![],
        };
        let note = cp.sign(&signer).unwrap();
        let proof = inclusion_proof(&hashes, 3).unwrap();
        let p = TlogProof {
            extra: Some(leaves[3].clone()),
            index: 3,
            proof,
            checkpoint: note,
        };
        (p, signer.verifier(), leaves)
    }

    #[test]
    fn round_trips_and_verifies() {
        let (p, v, _) = setup();
        let text = p.encode();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "));
        let back = TlogProof::parse(text.as_bytes()).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.verify(&v, None).unwrap().size, 7);
    }

    #[test]
    fn every_alteration_fails() {
        let (p, v, leaves) = setup();
        assert!(p.verify(&v, Some(&leaves[2])).is_err());
        let mut q = p.clone();
        q.index = 2;
        assert!(q.verify(&v, None).is_err());
        let mut q = p.clone();
        q.proof[0][0] ^= 1;
        assert!(q.verify(&v, None).is_err());
        let other = Signer::new("archipel/test/log", SigningKey::from_bytes(&[5; 32])).unwrap();
        assert!(p.verify(&other.verifier(), None).is_err());
        let text = p.encode();
        for cut in [10, 40, text.len() - 5] {
            let r = TlogProof::parse(&text.as_bytes()[..cut])
                .and_then(|q| q.verify(&v, None).map(|_| ()));
            assert!(r.is_err(), "truncated at {cut}");
        }
        let padded = format!("{text}garbage\n");
        let r = TlogProof::parse(padded.as_bytes()).and_then(|q| q.verify(&v, None).map(|_| ()));
        assert!(r.is_err());
        assert!(TlogProof::parse(text.replace("index 3", "index 03").as_bytes()).is_err());
    }
}
