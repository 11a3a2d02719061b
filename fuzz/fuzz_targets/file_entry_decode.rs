//! `FileEntry::decode` on arbitrary bytes: never panics, and what it accepts is canonical.
#![no_main]

use archipel_fuzz::assert_canonical;
use archipel_proto::manifest::FileEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = FileEntry::decode(data) {
        assert_canonical("FileEntry", &entry.encode(), data);
        let _ = entry.object_id();
    }
});
