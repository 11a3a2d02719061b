//! Lawful destruction: the origin's signed tombstone and a holder's signed deletion receipt.
//!
//! Both are short UTF-8 text, one `key value` line each, in a fixed order (like custody
//! receipts and audit leaves, so anyone can read and check them with no Archipel code),
//! signed with the signer's Ed25519 node key over exactly these bytes:
//!
//! ```text
//! archipel-tombstone/v1
//! origin qkm5ubkcg3u35gncpq36be726ztepvs4
//! record 01KAX7M3S1H4T6Q9W2Z8B5C0DE
//! blobs 3f1c…(BLAKE3 of the record's blob IDs, in envelope order, 64 hex)
//! visa AD13 bordereau n° 2026-145
//! time 2026-11-25T17:57:36Z
//! ```
//!
//! ```text
//! archipel-deletion-receipt/v1
//! origin qkm5ubkcg3u35gncpq36be726ztepvs4
//! record 01KAX7M3S1H4T6Q9W2Z8B5C0DE
//! tombstone 9a0e…(BLAKE3 of the tombstone text, 64 hex)
//! holder b5y2…
//! deleted 12  (blobs this holder deleted; 0 if it held nothing)
//! time 2026-12-25T17:57:36Z
//! ```
//!
//! The visa reference names the elimination authorisation signed by the archives
//! départementales (Code du patrimoine L214-3); it is administrative, never personal data.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

const TOMBSTONE: &str = "archipel-tombstone/v1";
const RECEIPT: &str = "archipel-deletion-receipt/v1";
const MAX_TEXT: usize = 2048;
/// Longest visa reference, in bytes.
pub const MAX_VISA: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TombstoneError {
    #[error("tombstone or deletion receipt is malformed: {0}")]
    Malformed(&'static str),
    #[error("tombstone or deletion receipt has a bad signature")]
    Signature,
}

/// The origin's signed statement that a record was lawfully destroyed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub origin: String,
    pub record_id: String,
    /// BLAKE3 of the concatenated blob IDs of the record, in envelope order (as receipts).
    pub blob_set: [u8; 32],
    pub visa: String,
    /// RFC 3339 UTC, whole seconds.
    pub time: String,
}

/// A holder's signed statement that it deleted everything it kept of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionReceipt {
    pub origin: String,
    pub record_id: String,
    /// BLAKE3 of the tombstone's text.
    pub tombstone: [u8; 32],
    pub holder: String,
    /// Blobs the holder deleted (blobs another held record still uses stay).
    pub deleted_blobs: u64,
    pub time: String,
}

fn token_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic())
}

/// A visa reference: printable text (accents allowed), no control characters, no leading
/// or trailing space, at most [`MAX_VISA`] bytes.
pub fn visa_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_VISA && s.trim() == s && !s.chars().any(|c| c.is_control())
}

fn lines(text: &str, header: &str, n: usize) -> Result<Vec<String>, TombstoneError> {
    if text.len() > MAX_TEXT {
        return Err(TombstoneError::Malformed("too long"));
    }
    let body = text
        .strip_suffix('\n')
        .ok_or(TombstoneError::Malformed("no final newline"))?;
    let lines: Vec<String> = body.split('\n').map(str::to_string).collect();
    if lines.len() != n + 1 || lines[0] != header {
        return Err(TombstoneError::Malformed(
            "wrong header or number of fields",
        ));
    }
    Ok(lines)
}

fn field<'a>(lines: &'a [String], i: usize, key: &'static str) -> Result<&'a str, TombstoneError> {
    lines[i]
        .strip_prefix(key)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(TombstoneError::Malformed(key))
}

fn token<'a>(lines: &'a [String], i: usize, key: &'static str) -> Result<&'a str, TombstoneError> {
    field(lines, i, key).and_then(|v| {
        if token_ok(v) {
            Ok(v)
        } else {
            Err(TombstoneError::Malformed(key))
        }
    })
}

fn digest(lines: &[String], i: usize, key: &'static str) -> Result<[u8; 32], TombstoneError> {
    let v = token(lines, i, key)?;
    let mut out = [0u8; 32];
    if v.len() != 64 || v.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(TombstoneError::Malformed(key));
    }
    hex::decode_to_slice(v, &mut out).map_err(|_| TombstoneError::Malformed(key))?;
    Ok(out)
}

fn verify_sig(text: &str, signature: &[u8], key: &VerifyingKey) -> Result<(), TombstoneError> {
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| TombstoneError::Signature)?;
    key.verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
        .map_err(|_| TombstoneError::Signature)
}

impl Tombstone {
    pub fn encode(&self) -> Result<String, TombstoneError> {
        for (v, name) in [
            (&self.origin, "origin"),
            (&self.record_id, "record"),
            (&self.time, "time"),
        ] {
            if !token_ok(v) {
                return Err(TombstoneError::Malformed(name));
            }
        }
        if !visa_ok(&self.visa) {
            return Err(TombstoneError::Malformed("visa"));
        }
        Ok(format!(
            "{TOMBSTONE}\norigin {}\nrecord {}\nblobs {}\nvisa {}\ntime {}\n",
            self.origin,
            self.record_id,
            hex::encode(self.blob_set),
            self.visa,
            self.time
        ))
    }

    pub fn decode(text: &str) -> Result<Self, TombstoneError> {
        let l = lines(text, TOMBSTONE, 5)?;
        let t = Tombstone {
            origin: token(&l, 1, "origin")?.to_string(),
            record_id: token(&l, 2, "record")?.to_string(),
            blob_set: digest(&l, 3, "blobs")?,
            visa: field(&l, 4, "visa")?.to_string(),
            time: token(&l, 5, "time")?.to_string(),
        };
        if t.encode()? != text {
            return Err(TombstoneError::Malformed("not canonical"));
        }
        Ok(t)
    }

    /// Signs the tombstone; returns its text and the signature.
    pub fn sign(&self, key: &SigningKey) -> Result<(String, [u8; 64]), TombstoneError> {
        let text = self.encode()?;
        let sig = key.sign(text.as_bytes()).to_bytes();
        Ok((text, sig))
    }

    /// Checks the origin's signature, then parses.
    pub fn verify(
        text: &str,
        signature: &[u8],
        origin: &VerifyingKey,
    ) -> Result<Self, TombstoneError> {
        verify_sig(text, signature, origin)?;
        Self::decode(text)
    }
}

impl DeletionReceipt {
    pub fn encode(&self) -> Result<String, TombstoneError> {
        for (v, name) in [
            (&self.origin, "origin"),
            (&self.record_id, "record"),
            (&self.holder, "holder"),
            (&self.time, "time"),
        ] {
            if !token_ok(v) {
                return Err(TombstoneError::Malformed(name));
            }
        }
        Ok(format!(
            "{RECEIPT}\norigin {}\nrecord {}\ntombstone {}\nholder {}\ndeleted {}\ntime {}\n",
            self.origin,
            self.record_id,
            hex::encode(self.tombstone),
            self.holder,
            self.deleted_blobs,
            self.time
        ))
    }

    pub fn decode(text: &str) -> Result<Self, TombstoneError> {
        let l = lines(text, RECEIPT, 6)?;
        let deleted = token(&l, 5, "deleted")?;
        if deleted.len() > 1 && deleted.starts_with('0') {
            return Err(TombstoneError::Malformed("deleted"));
        }
        let r = DeletionReceipt {
            origin: token(&l, 1, "origin")?.to_string(),
            record_id: token(&l, 2, "record")?.to_string(),
            tombstone: digest(&l, 3, "tombstone")?,
            holder: token(&l, 4, "holder")?.to_string(),
            deleted_blobs: deleted
                .parse()
                .map_err(|_| TombstoneError::Malformed("deleted"))?,
            time: token(&l, 6, "time")?.to_string(),
        };
        if r.encode()? != text {
            return Err(TombstoneError::Malformed("not canonical"));
        }
        Ok(r)
    }

    pub fn sign(&self, key: &SigningKey) -> Result<(String, [u8; 64]), TombstoneError> {
        let text = self.encode()?;
        let sig = key.sign(text.as_bytes()).to_bytes();
        Ok((text, sig))
    }

    /// Checks the holder's signature, then parses.
    pub fn verify(
        text: &str,
        signature: &[u8],
        holder: &VerifyingKey,
    ) -> Result<Self, TombstoneError> {
        verify_sig(text, signature, holder)?;
        Self::decode(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tombstone() -> Tombstone {
        Tombstone {
            origin: "qkm5ubkcg3u35gncpq36be726ztepvs4".into(),
            record_id: "01KAX7M3S1H4T6Q9W2Z8B5C0DE".into(),
            blob_set: [4; 32],
            visa: "AD13 bordereau n° 2026-145".into(),
            time: "2026-11-25T17:57:36Z".into(),
        }
    }

    fn receipt() -> DeletionReceipt {
        DeletionReceipt {
            origin: "qkm5ubkcg3u35gncpq36be726ztepvs4".into(),
            record_id: "01KAX7M3S1H4T6Q9W2Z8B5C0DE".into(),
            tombstone: [5; 32],
            holder: "b5y2ubkcg3u35gncpq36be726ztepvs4".into(),
            deleted_blobs: 12,
            time: "2026-12-25T17:57:36Z".into(),
        }
    }

    #[test]
    fn signed_tombstones_and_receipts_round_trip_and_tampering_is_caught() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        let (text, sig) = tombstone().sign(&key).unwrap();
        assert_eq!(
            Tombstone::verify(&text, &sig, &key.verifying_key()).unwrap(),
            tombstone()
        );
        assert_eq!(
            Tombstone::verify(&text.replace("145", "146"), &sig, &key.verifying_key()),
            Err(TombstoneError::Signature)
        );
        assert_eq!(
            Tombstone::verify(&text, &sig, &other),
            Err(TombstoneError::Signature)
        );
        let (text, sig) = receipt().sign(&key).unwrap();
        assert_eq!(
            DeletionReceipt::verify(&text, &sig, &key.verifying_key()).unwrap(),
            receipt()
        );
        assert_eq!(
            DeletionReceipt::verify(&text.replace("12", "13"), &sig, &key.verifying_key()),
            Err(TombstoneError::Signature)
        );
    }

    #[test]
    fn malformed_texts_are_refused() {
        let t = tombstone().encode().unwrap();
        for bad in [
            t.trim_end().to_string(),
            t.replace("visa AD13", "visa  AD13"),
            t.replace("visa AD13 bordereau n° 2026-145", "visa "),
            t.replace("blobs ", "blobs X"),
            format!("{t}extra\n"),
            t.replace("origin ", "origin\t"),
        ] {
            assert!(Tombstone::decode(&bad).is_err(), "{bad:?}");
        }
        let r = receipt().encode().unwrap();
        for bad in [
            r.replace("deleted 12", "deleted 012"),
            r.replace("deleted 12", "deleted -1"),
        ] {
            assert!(DeletionReceipt::decode(&bad).is_err(), "{bad:?}");
        }
        assert!(!visa_ok("with\nnewline"));
        assert!(!visa_ok(" leading"));
        assert!(!visa_ok(&"x".repeat(MAX_VISA + 1)));
    }
}
