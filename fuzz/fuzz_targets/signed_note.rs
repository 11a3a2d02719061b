//! C2SP signed notes (`archipel_proto::note`) on arbitrary bytes: `Note::parse` never
//! panics and what it accepts re-encodes to the same bytes; `open_note` with a fixed log key
//! and `verify_cosignature` with a fixed witness key never panic, and a note that opens is
//! the note that parses. Seeds hold notes signed and cosigned by those keys.
#![no_main]

use archipel_fuzz::{assert_canonical, log_verifier, witness_verifier};
use archipel_proto::note::{CosignatureVerifier, Note, Verifier, open_note, verify_cosignature};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static LOG: LazyLock<Verifier> = LazyLock::new(log_verifier);
static WITNESS: LazyLock<CosignatureVerifier> = LazyLock::new(witness_verifier);

fuzz_target!(|data: &[u8]| {
    let parsed = Note::parse(data);
    let opened = open_note(data, &LOG);
    if let Ok(note) = &opened {
        assert!(
            parsed.as_ref() == Ok(note),
            "open_note accepted a note that Note::parse reads differently"
        );
    }
    let Ok(note) = parsed else {
        return;
    };
    assert_canonical("Note", note.encode().as_bytes(), data);
    for sig in &note.signatures {
        let line = sig.to_line();
        let back = archipel_proto::note::NoteSignature::parse_line(
            line.strip_suffix('\n').unwrap_or(&line),
        );
        assert!(
            back.as_ref() == Ok(sig),
            "signature line does not round trip"
        );
    }
    let _ = verify_cosignature(&note, &WITNESS);
});
