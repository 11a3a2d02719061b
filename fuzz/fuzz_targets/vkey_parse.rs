//! Note key strings (`archipel_proto::note`) on arbitrary bytes: verifier keys (vkeys) for
//! note and cosignature verifiers, and private keys. Never panics; what is accepted prints
//! back to the same string, except that the key ID's hex digits are printed in lower case
//! (the parser, like Go's `note.NewVerifier`, accepts either case: see `lower_key_id`).
#![no_main]

use archipel_fuzz::assert_canonical;
use archipel_proto::note::{CosignatureSigner, CosignatureVerifier, Signer, Verifier};
use libfuzzer_sys::fuzz_target;

/// `s` with the hex key ID (the field after the first '+' that follows `prefix`) in lower case.
fn lower_key_id(s: &str, prefix: &str) -> String {
    let Some(rest) = s.strip_prefix(prefix) else {
        return s.to_owned();
    };
    let mut parts = rest.splitn(3, '+');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(id), Some(key)) => {
            format!("{prefix}{name}+{}+{key}", id.to_ascii_lowercase())
        }
        _ => s.to_owned(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(v) = Verifier::from_vkey(s) {
        assert_canonical(
            "vkey",
            v.to_vkey().as_bytes(),
            lower_key_id(s, "").as_bytes(),
        );
        assert!(Verifier::from_vkey(&v.to_vkey()).as_ref() == Ok(&v));
    }
    if let Ok(v) = CosignatureVerifier::from_vkey(s) {
        // A type 0x01 vkey is accepted and printed back as type 0x04: compare the parse of
        // the printed form instead of bytes.
        let again = CosignatureVerifier::from_vkey(&v.to_vkey());
        assert!(
            again.as_ref() == Ok(&v),
            "cosignature vkey does not round trip"
        );
    }
    if let Ok(signer) = Signer::from_private_key(s) {
        assert_canonical(
            "private key",
            signer.to_private_key().as_bytes(),
            lower_key_id(s, "PRIVATE+KEY+").as_bytes(),
        );
        let _ = signer.sign("fuzz\n");
    }
    if let Ok(signer) = CosignatureSigner::from_private_key(s) {
        let _ = signer.sign(
            "origin\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
            1,
        );
    }
});
