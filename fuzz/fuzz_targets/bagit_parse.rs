//! BagIt tag files and manifests (`archipel_proto::bagit`, what `archipel ingest --bag`
//! reads from a producer's bag) on arbitrary text:
//! - `parse_info` never panics, and every label it returns is trimmed and free of `:`;
//! - `parse_manifest` never panics, every path it accepts stays inside the bag (relative,
//!   no `..`, `.` or empty component, no backslash), no path is listed twice, digests are
//!   lower case, and `decode_path(encode_path(path)) == path`.
#![no_main]

use archipel_proto::bagit::{decode_path, encode_path, parse_info, parse_manifest};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(info) = parse_info(text, "bag-info.txt") {
        for (label, _) in &info {
            assert_eq!(label.trim(), label, "label not trimmed");
            assert!(!label.contains(':'), "label {label:?} holds a colon");
        }
    }
    if let Ok(entries) = parse_manifest(text, "manifest-sha512.txt") {
        let mut seen = BTreeSet::new();
        for (path, digest) in &entries {
            assert!(!path.starts_with('/'), "absolute path {path:?}");
            assert!(!path.contains('\\'), "backslash in {path:?}");
            assert!(
                path.split('/')
                    .all(|c| !c.is_empty() && c != "." && c != ".."),
                "path {path:?} could leave the bag"
            );
            assert!(seen.insert(path.clone()), "{path:?} returned twice");
            assert_eq!(digest, &digest.to_ascii_lowercase());
            assert_eq!(&decode_path(&encode_path(path)), path);
        }
    }
});
