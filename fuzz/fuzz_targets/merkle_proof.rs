//! RFC 6962 / 9162 proof verifiers (`archipel_proto::rfc6962`), which check proofs received
//! from a log. The first byte picks a mode:
//! - even: arbitrary sizes, leaf hash, roots and proof hashes (of any length) go to
//!   `root_from_inclusion_proof`, `verify_inclusion` and `verify_consistency`: never panic;
//! - odd: a tree of up to 256 leaves is built from the input; inclusion and consistency
//!   proofs built for it must verify, and must stop verifying once one bit is flipped.
#![no_main]

use archipel_proto::rfc6962::{
    Hash, consistency_proof_between, inclusion_proof_at, leaf_hash, root_from_inclusion_proof,
    tree_root, verify_consistency, verify_inclusion,
};
use libfuzzer_sys::fuzz_target;

/// A little cursor over the fuzz input; reads past the end give zeros / empty slices.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_be_bytes(b)
    }
    /// Small sizes are where the interesting edges are; keep most values small.
    fn size(&mut self) -> u64 {
        let v = self.u64();
        if v >> 63 == 1 { v } else { v % 300 }
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    /// A hash-sized value whose length is usually 32 but can be anything up to 40.
    fn hashlike(&mut self) -> &'a [u8] {
        let l = self.u8();
        let len = if l < 200 { 32 } else { usize::from(l - 200) };
        self.bytes(len)
    }
}

fn arbitrary_checks(mut inp: Input<'_>) {
    let a = inp.size();
    let b = inp.size();
    let leaf = inp.hashlike();
    let root1 = inp.hashlike();
    let root2 = inp.hashlike();
    let mut proof = Vec::new();
    while !inp.0.is_empty() && proof.len() < 80 {
        proof.push(inp.hashlike());
    }
    let _ = root_from_inclusion_proof(a, b, leaf, &proof);
    let _ = verify_inclusion(a, b, leaf, &proof, root2);
    let _ = verify_consistency(a, b, &proof, root1, root2);
}

fn flip(proof: &[Hash], bit: usize) -> Vec<Hash> {
    let mut p = proof.to_vec();
    let total = p.len() * 256;
    if total > 0 {
        let bit = bit % total;
        p[bit / 256][(bit % 256) / 8] ^= 1 << (bit % 8);
    }
    p
}

fn built_proofs_verify(mut inp: Input<'_>) {
    let n = u64::from(inp.u8()) + 1;
    let salt = inp.u8();
    let leaves: Vec<Hash> = (0..n)
        .map(|i| leaf_hash(&[&i.to_be_bytes()[..], &[salt]].concat()))
        .collect();
    let size2 = u64::from(inp.u8()) % n + 1;
    let size1 = u64::from(inp.u8()) % size2 + 1;
    let index = u64::from(inp.u8()) % size2;
    let bit = usize::from(inp.u8()) * 256 + usize::from(inp.u8());

    let root1 = tree_root(&leaves, size1).expect("size1 <= leaf count");
    let root2 = tree_root(&leaves, size2).expect("size2 <= leaf count");

    let proof = inclusion_proof_at(&leaves, index, size2).expect("index < size2 <= n");
    let leaf = leaves[usize::try_from(index).expect("small")];
    if let Err(e) = verify_inclusion(index, size2, &leaf, &proof, &root2) {
        panic!("inclusion proof of {index} in {size2} does not verify: {e}");
    }
    if !proof.is_empty() {
        assert!(
            verify_inclusion(index, size2, &leaf, &flip(&proof, bit), &root2).is_err(),
            "inclusion proof of {index} in {size2} verifies with a flipped bit"
        );
    }

    let proof = consistency_proof_between(&leaves, size1, size2).expect("0 < size1 <= size2 <= n");
    if let Err(e) = verify_consistency(size1, size2, &proof, &root1, &root2) {
        panic!("consistency proof {size1} -> {size2} does not verify: {e}");
    }
    if !proof.is_empty() {
        assert!(
            verify_consistency(size1, size2, &flip(&proof, bit), &root1, &root2).is_err(),
            "consistency proof {size1} -> {size2} verifies with a flipped bit"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    if inp.u8() & 1 == 0 {
        arbitrary_checks(inp);
    } else {
        built_proofs_verify(inp);
    }
});
