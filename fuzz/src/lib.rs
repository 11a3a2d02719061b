//! Helpers shared by the fuzz targets (fuzz_targets/*.rs) and the seed generator
//! (examples/gen_seeds.rs): fixed keys, and a byte comparison that reports where two
//! encodings first differ instead of dumping both.

use archipel_proto::note::{CosignatureSigner, CosignatureVerifier, Signer, Verifier};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// Name of the fixed log key used to open notes and checkpoints.
pub const LOG_NAME: &str = "fuzz.example/log";
/// Name of the fixed witness key used to check cosignatures.
pub const WITNESS_NAME: &str = "fuzz.example/witness";

/// Key that signs the seed envelopes; `envelope_decode` verifies with its public half.
pub fn envelope_key() -> SigningKey {
    SigningKey::from_bytes(&[3; 32])
}

pub fn envelope_verifying_key() -> VerifyingKey {
    envelope_key().verifying_key()
}

/// The log's note signer (seeds) and verifier (targets).
pub fn log_signer() -> Signer {
    Signer::new(LOG_NAME, SigningKey::from_bytes(&[1; 32])).expect("valid key name")
}

pub fn log_verifier() -> Verifier {
    log_signer().verifier()
}

/// The witness's cosigner (seeds) and verifier (targets).
pub fn witness_signer() -> CosignatureSigner {
    CosignatureSigner::new(WITNESS_NAME, SigningKey::from_bytes(&[2; 32])).expect("valid key name")
}

pub fn witness_verifier() -> CosignatureVerifier {
    witness_signer().verifier()
}

/// Passphrase that `recovery_kit` tries; the seed kit is sealed with it.
pub const KIT_PASSPHRASE: &str = "passphrase";

/// Panics, naming `what` and the first differing offset, unless `reencoded == input`.
pub fn assert_canonical(what: &str, reencoded: &[u8], input: &[u8]) {
    if reencoded == input {
        return;
    }
    let at = reencoded
        .iter()
        .zip(input)
        .position(|(a, b)| a != b)
        .unwrap_or(reencoded.len().min(input.len()));
    panic!(
        "{what}: decode accepted bytes that do not re-encode identically \
         (input {} bytes, re-encoded {} bytes, first difference at offset {at}: \
         input {:02x?}, re-encoded {:02x?})",
        input.len(),
        reencoded.len(),
        &input[at..(at + 16).min(input.len())],
        &reencoded[at..(at + 16).min(reencoded.len())],
    );
}
