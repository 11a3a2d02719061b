//! Custody receipts (`archipel_proto::custody`) on arbitrary text, as a holder could send:
//! - `Receipt::decode` never panics and what it accepts encodes back to the same bytes;
//! - `Receipt::verify` with a fixed holder key never panics and never accepts a receipt
//!   that does not decode.
#![no_main]

use archipel_proto::custody::Receipt;
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (sig, text) = data.split_at(data.len().min(64));
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(r) = Receipt::decode(text) {
        assert_eq!(r.encode().as_deref(), Ok(text), "receipt is not canonical");
    }
    let holder = SigningKey::from_bytes(&[7; 32]).verifying_key();
    if Receipt::verify(text, sig, &holder).is_ok() {
        assert!(Receipt::decode(text).is_ok());
    }
});
