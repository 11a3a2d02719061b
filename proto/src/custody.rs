//! Custody receipts: what a holder signs when it takes custody of a copy of a record.
//!
//! A receipt is short UTF-8 text, one `key value` line each, in a fixed order (like audit
//! leaves, so anyone can read and check it with no Archipel code), signed with the holder's
//! Ed25519 node key:
//!
//! ```text
//! archipel-custody-receipt/v1
//! origin qkm5ubkcg3u35gncpq36be726ztepvs4
//! record 01KAX7M3S1H4T6Q9W2Z8B5C0DE
//! blobs 3f1c…(BLAKE3 of the record's blob IDs, in envelope order, 64 hex)
//! envelope 9a0e…(BLAKE3 of the signed envelope held, 64 hex)
//! holder b5y2…(the holder's node ID)
//! time 2026-11-25T17:57:36Z
//! ```
//!
//! The signature is over exactly these bytes. The origin appends the receipt's BLAKE3 to its
//! audit log as a PREMIS `replication` event and keeps the receipt itself.

use crate::manifest::BlobId;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

const HEADER: &str = "archipel-custody-receipt/v1";
const MAX_RECEIPT: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub origin: String,
    pub record_id: String,
    /// BLAKE3 of the concatenated blob IDs of the record, in envelope order.
    pub blob_set: [u8; 32],
    /// BLAKE3 of the signed envelope the holder keeps.
    pub envelope: [u8; 32],
    pub holder: String,
    /// RFC 3339 UTC, whole seconds.
    pub time: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("custody receipt is malformed: {0}")]
    Malformed(&'static str),
    #[error("custody receipt has a bad signature")]
    Signature,
}

/// The digest of a record's blob set, as receipts name it.
pub fn blob_set_digest(blobs: &[BlobId]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    for b in blobs {
        h.update(b);
    }
    *h.finalize().as_bytes()
}

fn token_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic())
}

impl Receipt {
    pub fn encode(&self) -> Result<String, ReceiptError> {
        for (v, name) in [
            (&self.origin, "origin"),
            (&self.record_id, "record"),
            (&self.holder, "holder"),
            (&self.time, "time"),
        ] {
            if !token_ok(v) {
                return Err(ReceiptError::Malformed(name));
            }
        }
        Ok(format!(
            "{HEADER}\norigin {}\nrecord {}\nblobs {}\nenvelope {}\nholder {}\ntime {}\n",
            self.origin,
            self.record_id,
            hex::encode(self.blob_set),
            hex::encode(self.envelope),
            self.holder,
            self.time
        ))
    }

    pub fn decode(text: &str) -> Result<Self, ReceiptError> {
        if text.len() > MAX_RECEIPT {
            return Err(ReceiptError::Malformed("too long"));
        }
        let body = text
            .strip_suffix('\n')
            .ok_or(ReceiptError::Malformed("no final newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() != 7 || lines[0] != HEADER {
            return Err(ReceiptError::Malformed("header and 6 fields expected"));
        }
        let field = |i: usize, key: &'static str| -> Result<&str, ReceiptError> {
            lines[i]
                .strip_prefix(key)
                .and_then(|r| r.strip_prefix(' '))
                .filter(|v| token_ok(v))
                .ok_or(ReceiptError::Malformed(key))
        };
        let digest = |i: usize, key: &'static str| -> Result<[u8; 32], ReceiptError> {
            let v = field(i, key)?;
            let mut out = [0u8; 32];
            if v.len() != 64 || v.bytes().any(|c| c.is_ascii_uppercase()) {
                return Err(ReceiptError::Malformed(key));
            }
            hex::decode_to_slice(v, &mut out).map_err(|_| ReceiptError::Malformed(key))?;
            Ok(out)
        };
        let r = Receipt {
            origin: field(1, "origin")?.to_string(),
            record_id: field(2, "record")?.to_string(),
            blob_set: digest(3, "blobs")?,
            envelope: digest(4, "envelope")?,
            holder: field(5, "holder")?.to_string(),
            time: field(6, "time")?.to_string(),
        };
        // Canonical: re-encoding gives the same bytes.
        if r.encode()? != text {
            return Err(ReceiptError::Malformed("not canonical"));
        }
        Ok(r)
    }

    /// Signs the receipt; returns its text and the signature.
    pub fn sign(&self, key: &SigningKey) -> Result<(String, [u8; 64]), ReceiptError> {
        let text = self.encode()?;
        let sig = key.sign(text.as_bytes()).to_bytes();
        Ok((text, sig))
    }

    /// Parses a receipt and checks the holder's signature over it.
    pub fn verify(
        text: &str,
        signature: &[u8],
        holder: &VerifyingKey,
    ) -> Result<Self, ReceiptError> {
        let sig: [u8; 64] = signature.try_into().map_err(|_| ReceiptError::Signature)?;
        holder
            .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| ReceiptError::Signature)?;
        Self::decode(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Receipt {
        Receipt {
            origin: "qkm5ubkcg3u35gncpq36be726ztepvs4".into(),
            record_id: "01KAX7M3S1H4T6Q9W2Z8B5C0DE".into(),
            blob_set: blob_set_digest(&[[1; 32], [2; 32]]),
            envelope: [7; 32],
            holder: "b5y2ubkcg3u35gncpq36be726ztepvs4".into(),
            time: "2026-11-25T17:57:36Z".into(),
        }
    }

    #[test]
    fn signed_receipts_round_trip_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let (text, sig) = sample().sign(&key).unwrap();
        assert_eq!(
            Receipt::verify(&text, &sig, &key.verifying_key()).unwrap(),
            sample()
        );
        let forged = text.replace("2026", "2025");
        assert_eq!(
            Receipt::verify(&forged, &sig, &key.verifying_key()),
            Err(ReceiptError::Signature)
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            Receipt::verify(&text, &sig, &other.verifying_key()),
            Err(ReceiptError::Signature)
        );
    }

    #[test]
    fn malformed_receipts_are_refused() {
        let text = sample().encode().unwrap();
        for bad in [
            text.trim_end().to_string(),
            text.replace("origin ", "origin  "),
            text.replace("blobs ", "blobs X"),
            format!("{text}extra\n"),
            text.to_uppercase(),
        ] {
            assert!(Receipt::decode(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn blob_set_digest_depends_on_order() {
        assert_ne!(
            blob_set_digest(&[[1; 32], [2; 32]]),
            blob_set_digest(&[[2; 32], [1; 32]])
        );
    }
}
