//! `Metadata::decode` on arbitrary bytes: never panics, and what it accepts is canonical.
#![no_main]

use archipel_fuzz::assert_canonical;
use archipel_proto::manifest::Metadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(metadata) = Metadata::decode(data) {
        assert_canonical("Metadata", &metadata.encode(), data);
    }
});
