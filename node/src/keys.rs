//! The territory's keys: its age identity, the recovery recipients, per-record and per-file
//! keys, the local catalog key, and the passphrase-protected recovery kit.
//!
//! Key hierarchy (see ARCHITECTURE.md, "Keys"):
//! - each stored file's content is one age stream to a fresh X25519 *file key*;
//! - each record has a fresh X25519 *record key*; the record's manifest (which holds its
//!   file keys) is sealed to it;
//! - the record key is wrapped (age) to the territory's identity and every recovery
//!   recipient: that *key envelope* is the only way to open the record;
//! - releasing a record publishes its record key; destroying it deletes every key envelope.
//! - the *index key* (local only) seals the catalog and keys the deduplication index, so
//!   no plaintext digest is ever stored in clear.

use crate::identity::{self, IdentityError};
use age::secrecy::{ExposeSecret, SecretString};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("{0} is not a valid age recipient (expected age1...)")]
    BadRecipient(String),
    #[error("{what} is not a valid age identity")]
    BadIdentity { what: String },
    #[error("age encryption failed: {0}")]
    Encrypt(String),
    #[error("cannot decrypt {what}: {why}")]
    Decrypt { what: String, why: String },
    #[error(
        "{file} is not this node's key (node.toml expects {expected}, the file holds {found}): restore the right file, e.g. from the recovery kit"
    )]
    WrongKey {
        file: &'static str,
        expected: String,
        found: String,
    },
    #[error("the recovery kit could not be opened: wrong passphrase or not a kit ({0})")]
    Kit(String),
}

/// All secrets of a territory's node, loaded from the data directory.
pub struct Keyring {
    territory: age::x25519::Identity,
    recovery: Vec<age::x25519::Recipient>,
    index_key: [u8; 32],
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("territory", &self.territory.to_public().to_string())
            .field("recovery", &self.recovery.len())
            .finish_non_exhaustive()
    }
}

fn parse_recipient(s: &str) -> Result<age::x25519::Recipient, KeyError> {
    age::x25519::Recipient::from_str(s.trim()).map_err(|_| KeyError::BadRecipient(s.to_string()))
}

pub fn parse_identity(s: &str, what: &str) -> Result<age::x25519::Identity, KeyError> {
    age::x25519::Identity::from_str(s.trim()).map_err(|_| KeyError::BadIdentity {
        what: what.to_string(),
    })
}

impl Keyring {
    /// Creates fresh territory keys in `data/keys` (which must exist, mode 0700).
    pub fn create(data: &Path, recovery: &[String]) -> Result<Self, KeyError> {
        let recovery = recovery
            .iter()
            .map(|r| parse_recipient(r))
            .collect::<Result<Vec<_>, _>>()?;
        let territory = age::x25519::Identity::generate();
        let mut index_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut index_key);
        let ring = Keyring {
            territory,
            recovery,
            index_key,
        };
        ring.write(data)?;
        Ok(ring)
    }

    fn write(&self, data: &Path) -> Result<(), KeyError> {
        let keys = identity::keys_dir(data);
        identity::write_secret(
            &keys.join("territory.key"),
            format!("{}\n", self.territory.to_string().expose_secret()).as_bytes(),
        )?;
        identity::write_secret(
            &keys.join("index.key"),
            format!("{}\n", hex::encode(self.index_key)).as_bytes(),
        )?;
        let recipients: String = self.recovery.iter().map(|r| format!("{r}\n")).collect();
        let path = keys.join("recovery.txt");
        std::fs::write(&path, recipients).map_err(|source| IdentityError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(())
    }

    pub fn load(data: &Path) -> Result<Self, KeyError> {
        let territory = parse_identity(
            &identity::read_secret(data, "territory.key")?,
            "keys/territory.key",
        )?;
        let index_hex = identity::read_secret(data, "index.key")?;
        let index_key: [u8; 32] = hex::decode(index_hex.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| KeyError::BadIdentity {
                what: "keys/index.key (expected 64 hex digits)".into(),
            })?;
        let path = identity::keys_dir(data).join("recovery.txt");
        let recovery = match std::fs::read_to_string(&path) {
            Ok(t) => t
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(parse_recipient)
                .collect::<Result<Vec<_>, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(IdentityError::Io {
                    path: path.display().to_string(),
                    source,
                }
                .into());
            }
        };
        Ok(Keyring {
            territory,
            recovery,
            index_key,
        })
    }

    pub fn territory_recipient(&self) -> String {
        self.territory.to_public().to_string()
    }

    pub fn recovery_recipients(&self) -> Vec<String> {
        self.recovery.iter().map(|r| r.to_string()).collect()
    }

    /// Wraps a record key to the territory and every recovery recipient.
    pub fn wrap_record_key(&self, record_key: &age::x25519::Identity) -> Result<Vec<u8>, KeyError> {
        let territory = self.territory.to_public();
        let mut recipients: Vec<&dyn age::Recipient> = vec![&territory];
        recipients.extend(self.recovery.iter().map(|r| r as &dyn age::Recipient));
        seal_to(
            recipients.into_iter(),
            record_key.to_string().expose_secret().as_bytes(),
        )
    }

    pub fn unwrap_record_key(
        &self,
        envelope: &[u8],
        record_id: &str,
    ) -> Result<age::x25519::Identity, KeyError> {
        let what = format!("key envelope of record {record_id}");
        let plain = open_with(&self.territory, envelope, &what)?;
        let text =
            String::from_utf8(plain).map_err(|_| KeyError::BadIdentity { what: what.clone() })?;
        parse_identity(&text, &what)
    }

    /// Identifies the index key without revealing it (kept in `node.toml`).
    pub fn index_key_check(&self) -> String {
        hex::encode(&self.subkey("archipel index key check v1")[..16])
    }

    /// Refuses key files that are not the ones this node was created with: another node's
    /// territory key would serve this archive under the wrong identity.
    pub fn check_against(&self, id: &identity::NodeIdentity) -> Result<(), KeyError> {
        let found = self.territory_recipient();
        if found != id.territory_recipient {
            return Err(KeyError::WrongKey {
                file: "keys/territory.key",
                expected: id.territory_recipient.clone(),
                found,
            });
        }
        let found = self.index_key_check();
        if found != id.index_key_check {
            return Err(KeyError::WrongKey {
                file: "keys/index.key",
                expected: id.index_key_check.clone(),
                found,
            });
        }
        Ok(())
    }

    fn subkey(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.index_key)
    }

    /// Seals catalog bytes with the index key; `aad` binds them to their sled key.
    pub fn seal_index(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        let cipher = XChaCha20Poly1305::new(&self.subkey("archipel catalog v1").into());
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        let ct = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .map_err(|e| KeyError::Encrypt(e.to_string()))?;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open_index(&self, sealed: &[u8], aad: &[u8], what: &str) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < 24 {
            return Err(KeyError::Decrypt {
                what: what.to_string(),
                why: "too short".into(),
            });
        }
        let cipher = XChaCha20Poly1305::new(&self.subkey("archipel catalog v1").into());
        cipher
            .decrypt(
                XNonce::from_slice(&sealed[..24]),
                Payload {
                    msg: &sealed[24..],
                    aad,
                },
            )
            .map_err(|_| KeyError::Decrypt {
                what: what.to_string(),
                why: "authentication failed (altered, or another node's key)".into(),
            })
    }

    /// A commitment to an event's details: only this node can recompute it, so the public log
    /// reveals nothing of them.
    pub fn commitment(&self, details: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.subkey("archipel event detail v1"), details).as_bytes()
    }

    /// The deduplication key of a plaintext file: a keyed hash, so equal files meet in the
    /// index without their digests being stored in clear.
    pub fn dedup_key(&self, blake3: &[u8; 32], size: u64) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.subkey("archipel dedup v1"));
        h.update(blake3);
        h.update(&size.to_be_bytes());
        *h.finalize().as_bytes()
    }
}

/// age-encrypts a small buffer to some recipients.
pub fn seal_to<'a>(
    recipients: impl Iterator<Item = &'a dyn age::Recipient>,
    plain: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let enc = age::Encryptor::with_recipients(recipients)
        .map_err(|e| KeyError::Encrypt(e.to_string()))?;
    let mut out = Vec::with_capacity(plain.len() + 256);
    let mut w = enc
        .wrap_output(&mut out)
        .map_err(|e| KeyError::Encrypt(e.to_string()))?;
    w.write_all(plain)
        .map_err(|e| KeyError::Encrypt(e.to_string()))?;
    // Without finish() the last chunk is never written.
    w.finish().map_err(|e| KeyError::Encrypt(e.to_string()))?;
    Ok(out)
}

/// Opens a small age file with one identity.
pub fn open_with(
    identity: &dyn age::Identity,
    sealed: &[u8],
    what: &str,
) -> Result<Vec<u8>, KeyError> {
    let err = |why: String| KeyError::Decrypt {
        what: what.to_string(),
        why,
    };
    let dec = age::Decryptor::new_buffered(sealed).map_err(|e| err(e.to_string()))?;
    let mut r = dec
        .decrypt(std::iter::once(identity))
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| err(e.to_string()))?;
    Ok(out)
}

/// Every secret needed to rebuild a node elsewhere.
#[derive(Serialize, Deserialize)]
pub struct RecoveryKit {
    pub format: String,
    pub territory: String,
    pub node_id: String,
    pub node_key: String,
    pub territory_key: String,
    pub index_key: String,
    pub recovery_recipients: Vec<String>,
}

const KIT_FORMAT: &str = "archipel-recovery-kit-v1";

impl RecoveryKit {
    pub fn from_data_dir(data: &Path) -> Result<Self, KeyError> {
        let id = identity::load(data)?;
        let ring = Keyring::load(data)?;
        Ok(RecoveryKit {
            format: KIT_FORMAT.into(),
            territory: id.territory.clone(),
            node_id: id.node_id.clone(),
            node_key: identity::encode_seed(&id.signing_key).trim().to_string(),
            territory_key: ring.territory.to_string().expose_secret().to_string(),
            index_key: hex::encode(ring.index_key),
            recovery_recipients: ring.recovery_recipients(),
        })
    }

    /// Encrypts the kit with a passphrase (age scrypt). `work_factor` (log2 N) is lowered only
    /// by tests.
    pub fn seal(&self, passphrase: &str, work_factor: Option<u8>) -> Result<Vec<u8>, KeyError> {
        let text = toml::to_string(self).map_err(|e| KeyError::Encrypt(e.to_string()))?;
        let mut r = age::scrypt::Recipient::new(SecretString::from(passphrase.to_string()));
        if let Some(w) = work_factor {
            r.set_work_factor(w);
        }
        seal_to(std::iter::once(&r as &dyn age::Recipient), text.as_bytes())
    }

    pub fn open(sealed: &[u8], passphrase: &str) -> Result<Self, KeyError> {
        let id = age::scrypt::Identity::new(SecretString::from(passphrase.to_string()));
        let plain =
            open_with(&id, sealed, "recovery kit").map_err(|e| KeyError::Kit(e.to_string()))?;
        let text = String::from_utf8(plain).map_err(|e| KeyError::Kit(e.to_string()))?;
        let kit: RecoveryKit = toml::from_str(&text).map_err(|e| KeyError::Kit(e.to_string()))?;
        if kit.format != KIT_FORMAT {
            return Err(KeyError::Kit(format!("unknown format {}", kit.format)));
        }
        Ok(kit)
    }

    /// Recreates the identity and keys of the kit's node in an empty data directory.
    pub fn install(&self, data: &Path) -> Result<(), KeyError> {
        let key = identity::decode_seed(&self.node_key, "recovery kit")?;
        let node_id = identity::create_layout(data, &key)?;
        if node_id != self.node_id {
            return Err(KeyError::Kit(format!(
                "node key gives ID {node_id}, kit says {}",
                self.node_id
            )));
        }
        let ring = Keyring {
            territory: parse_identity(&self.territory_key, "recovery kit territory key")?,
            recovery: self
                .recovery_recipients
                .iter()
                .map(|r| parse_recipient(r))
                .collect::<Result<_, _>>()?,
            index_key: hex::decode(&self.index_key)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| KeyError::Kit("index key is not 32 bytes of hex".into()))?,
        };
        ring.write(data)?;
        identity::write_node_file(
            data,
            &identity::NodeFile {
                territory: self.territory.clone(),
                node_id,
                created_at: crate::clock::now_rfc3339(),
                territory_recipient: ring.territory_recipient(),
                index_key_check: ring.index_key_check(),
            },
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring {
            territory: age::x25519::Identity::generate(),
            recovery: vec![age::x25519::Identity::generate().to_public()],
            index_key: [5; 32],
        }
    }

    #[test]
    fn record_key_opens_with_territory_and_recovery_only() {
        let r = ring();
        let recovery_id = age::x25519::Identity::generate();
        let r = Keyring {
            recovery: vec![recovery_id.to_public()],
            ..r
        };
        let rk = age::x25519::Identity::generate();
        let env = r.wrap_record_key(&rk).unwrap();
        let back = r.unwrap_record_key(&env, "r1").unwrap();
        assert_eq!(back.to_public().to_string(), rk.to_public().to_string());
        // The archives départementales can open it with their own key.
        let plain = open_with(&recovery_id, &env, "env").unwrap();
        assert!(
            String::from_utf8(plain)
                .unwrap()
                .starts_with("AGE-SECRET-KEY-1")
        );
        // Another territory cannot.
        let other = ring();
        assert!(other.unwrap_record_key(&env, "r1").is_err());
    }

    #[test]
    fn index_seal_is_bound_to_its_key_and_aad() {
        let r = ring();
        let s = r.seal_index(b"hello", b"rec1").unwrap();
        assert_eq!(r.open_index(&s, b"rec1", "x").unwrap(), b"hello");
        assert!(r.open_index(&s, b"rec2", "x").is_err());
        let mut bad = s.clone();
        bad[30] ^= 1;
        assert!(r.open_index(&bad, b"rec1", "x").is_err());
    }

    #[test]
    fn kit_round_trips_and_refuses_wrong_passphrase() {
        let d = tempfile::tempdir().unwrap();
        let k = RecoveryKit {
            format: KIT_FORMAT.into(),
            territory: "Commune".into(),
            node_id: "x".into(),
            node_key: "k".into(),
            territory_key: "t".into(),
            index_key: "i".into(),
            recovery_recipients: vec![],
        };
        let sealed = k.seal("correct horse", Some(4)).unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"Commune"));
        let back = RecoveryKit::open(&sealed, "correct horse").unwrap();
        assert_eq!(back.territory, "Commune");
        assert!(matches!(
            RecoveryKit::open(&sealed, "wrong"),
            Err(KeyError::Kit(_))
        ));
        drop(d);
    }
}
