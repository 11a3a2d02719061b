//! `Manifest::decode` on arbitrary bytes: never panics, and what it accepts is canonical
//! (`encode(decode(b)) == b`).
#![no_main]

use archipel_fuzz::assert_canonical;
use archipel_proto::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::decode(data) else {
        return;
    };
    assert_canonical("Manifest", &manifest.encode(), data);
    let _ = manifest.blob_ids();
    for file in &manifest.files {
        let _ = file.object_id();
    }
});
