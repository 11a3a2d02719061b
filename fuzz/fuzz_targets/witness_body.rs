//! C2SP tlog-witness wire formats (`archipel_proto::witness`) on arbitrary bytes:
//! - `AddCheckpointBody::parse` never panics, keeps at most `MAX_PROOF_LINES` hashes, and
//!   what it accepts encodes back to the same bytes (a witness keeps refused requests as
//!   evidence, verbatim); when the embedded note opens with the fixed log key, the witness's
//!   next step, `Checkpoint::open`, must not panic either;
//! - `parse_size_body` (409 answers) and `parse_cosignature_lines` (200 answers) never panic
//!   and print back the same bytes.
#![no_main]

use archipel_fuzz::{assert_canonical, log_verifier};
use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::note::Verifier;
use archipel_proto::witness::{
    AddCheckpointBody, MAX_PROOF_LINES, encode_size_body, parse_cosignature_lines,
    parse_size_body,
};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static LOG: LazyLock<Verifier> = LazyLock::new(log_verifier);

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = AddCheckpointBody::parse(data) {
        assert!(body.proof.len() <= MAX_PROOF_LINES, "too many proof lines kept");
        assert_canonical("AddCheckpointBody", &body.encode(), data);
        let _ = Checkpoint::open(&body.checkpoint, &LOG);
    }
    if let Ok(size) = parse_size_body(data) {
        assert_canonical("409 size body", &encode_size_body(size), data);
    }
    if let Ok(lines) = parse_cosignature_lines(data) {
        assert!(!lines.is_empty(), "a 200 answer without a cosignature line");
        let text: String = lines.iter().map(|l| l.to_line()).collect();
        assert_canonical("cosignature lines", text.as_bytes(), data);
    }
});
