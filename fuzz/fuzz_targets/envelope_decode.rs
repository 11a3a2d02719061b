//! `Envelope::decode` on arbitrary bytes: never panics, what it accepts is canonical, and
//! `verify` with a fixed origin key never panics. The seed corpus holds envelopes signed by
//! that key, so the accepting branch of `verify` is reached too.
#![no_main]

use archipel_fuzz::{assert_canonical, envelope_verifying_key};
use archipel_proto::manifest::Envelope;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static ORIGIN_KEY: LazyLock<ed25519_dalek::VerifyingKey> = LazyLock::new(envelope_verifying_key);

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = Envelope::decode(data) else {
        return;
    };
    assert_canonical("Envelope", &envelope.encode(), data);
    let _ = envelope.verify(&ORIGIN_KEY);
});
