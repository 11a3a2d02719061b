//! C2SP checkpoints (`archipel_proto::checkpoint`) on arbitrary bytes:
//! - `Checkpoint::parse_text` never panics, what it accepts prints back to the same text
//!   (`to_text(parse_text(t)) == t`, what a witness relies on) and passes `validate`;
//! - `Checkpoint::open` (signed note + checkpoint) with a fixed log key never panics and,
//!   when it accepts, agrees with parsing the note's text.
#![no_main]

use archipel_fuzz::{assert_canonical, log_verifier};
use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::note::Verifier;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static LOG: LazyLock<Verifier> = LazyLock::new(log_verifier);

fuzz_target!(|data: &[u8]| {
    if let Ok((checkpoint, note)) = Checkpoint::open_with_note(data, &LOG) {
        assert!(
            Checkpoint::parse_text(&note.text).as_ref() == Ok(&checkpoint),
            "Checkpoint::open disagrees with parse_text of the note text"
        );
        assert_canonical(
            "Checkpoint (opened)",
            checkpoint.to_text().as_bytes(),
            note.text.as_bytes(),
        );
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(checkpoint) = Checkpoint::parse_text(text) {
        assert_canonical("Checkpoint", checkpoint.to_text().as_bytes(), data);
        if let Err(e) = checkpoint.validate() {
            panic!("parsed checkpoint fails validate: {e}");
        }
    }
});
