//! Arbitrary bytes decoded as the gRPC `RecordMetadata` (what a client sends to ingest),
//! then `archipel_node::record::validate`: never panics. Protobuf is not canonical, so there
//! is no byte round trip; instead, metadata that validates must
//! - encode to canonical bytes that `Metadata::decode` reads back to the same value (the
//!   node seals and later decodes exactly these bytes in the manifest), and
//! - validate again to itself through `to_proto` (validation is idempotent).
#![no_main]

use archipel_node::record::{to_proto, validate};
use archipel_proto::manifest::Metadata;
use archipel_proto::v1::RecordMetadata;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(proto) = RecordMetadata::decode(data) else {
        return;
    };
    let Ok(metadata) = validate(&proto) else {
        return;
    };
    let encoded = metadata.encode();
    match Metadata::decode(&encoded) {
        Ok(back) => assert!(
            back == metadata,
            "validated metadata decodes to another value: {metadata:?} -> {back:?}"
        ),
        Err(e) => panic!("validated metadata does not decode back: {e}; metadata: {metadata:?}"),
    }
    match validate(&to_proto(&metadata)) {
        Ok(again) => assert!(
            again == metadata,
            "validation is not idempotent: {metadata:?} -> {again:?}"
        ),
        Err(e) => panic!("validated metadata fails validation again: {e}; metadata: {metadata:?}"),
    }
});
