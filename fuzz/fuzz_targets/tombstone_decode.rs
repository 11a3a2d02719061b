//! Tombstones and deletion receipts (`archipel_proto::tombstone`) on arbitrary text, as an
//! origin (tombstone) or a holder (receipt) could send:
//! - `decode` never panics and what it accepts encodes back to the same bytes;
//! - `verify` with a fixed key never panics and never accepts text that does not decode.
#![no_main]

use archipel_proto::tombstone::{DeletionReceipt, Tombstone};
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sig, text) = data.split_at(data.len().min(64));
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(t) = Tombstone::decode(text) {
        assert_eq!(t.encode().as_deref(), Ok(text), "tombstone is not canonical");
    }
    if let Ok(r) = DeletionReceipt::decode(text) {
        assert_eq!(r.encode().as_deref(), Ok(text), "receipt is not canonical");
    }
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    if Tombstone::verify(text, sig, &key).is_ok() {
        assert!(Tombstone::decode(text).is_ok());
    }
    if DeletionReceipt::verify(text, sig, &key).is_ok() {
        assert!(DeletionReceipt::decode(text).is_ok());
    }
});
