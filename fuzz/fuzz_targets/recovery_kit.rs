//! `RecoveryKit::open` on arbitrary bytes with a fixed passphrase: errors, never panics.
//! The seed corpus holds a kit sealed with that passphrase at a low scrypt work factor, so
//! the age header, scrypt stanza, payload and TOML stages are all reached.
//!
//! Slow by nature: every `open` builds an `age::scrypt::Identity`, which times one scrypt
//! run (log N = 10) to calibrate, and an input may ask for a work factor up to that
//! calibration + 4 (about 16 s); expect tens to hundreds of executions per second.
#![no_main]

use archipel_fuzz::KIT_PASSPHRASE;
use archipel_node::keys::RecoveryKit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kit) = RecoveryKit::open(data, KIT_PASSPHRASE) {
        assert_eq!(kit.format, "archipel-recovery-kit-v1");
    }
});
