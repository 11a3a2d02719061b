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
use std::sync::RwLock;

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
///
/// The territory key and the recovery recipients change at run time (key rotation,
/// `keys recovery add|remove`), so they sit behind a lock; the index key never changes.
pub struct Keyring {
    state: RwLock<KeyState>,
    index_key: [u8; 32],
}

/// The age keys of the territory as they stand now.
#[derive(Clone)]
struct KeyState {
    /// New record keys are wrapped to this identity's recipient.
    territory: age::x25519::Identity,
    /// Earlier territory identities, kept (in `keys/previous-territory.keys`) until
    /// `keys retire` has checked that no key envelope needs them any more.
    previous: Vec<age::x25519::Identity>,
    recovery: Vec<age::x25519::Recipient>,
}

/// What a key change did, for the audit log and the operator.
#[derive(Debug, Clone, Default)]
pub struct KeyChange {
    pub old_recipient: String,
    pub new_recipient: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.read();
        f.debug_struct("Keyring")
            .field("territory", &s.territory.to_public().to_string())
            .field("previous", &s.previous.len())
            .field("recovery", &s.recovery.len())
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

const PREVIOUS_FILE: &str = "previous-territory.keys";
const RECOVERY_FILE: &str = "recovery.txt";

fn io_error(path: &Path, source: std::io::Error) -> KeyError {
    IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
    .into()
}

fn identities_text(ids: &[age::x25519::Identity]) -> String {
    ids.iter()
        .map(|i| format!("{}\n", i.to_string().expose_secret()))
        .collect()
}

fn recipients_text(rs: &[age::x25519::Recipient]) -> String {
    rs.iter().map(|r| format!("{r}\n")).collect()
}

impl Keyring {
    /// Creates fresh territory keys in `data/keys` (which must exist, mode 0700).
    pub fn create(data: &Path, recovery: &[String]) -> Result<Self, KeyError> {
        let recovery = recovery
            .iter()
            .map(|r| parse_recipient(r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut index_key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut index_key);
        let ring = Keyring {
            state: RwLock::new(KeyState {
                territory: age::x25519::Identity::generate(),
                previous: Vec::new(),
                recovery,
            }),
            index_key,
        };
        ring.write(data)?;
        Ok(ring)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyState> {
        // A panic while holding the lock cannot leave a half-changed state: every change
        // builds a whole new KeyState first, so a poisoned lock still guards good data.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, KeyState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, data: &Path) -> Result<(), KeyError> {
        let keys = identity::keys_dir(data);
        let s = self.read();
        identity::write_secret(
            &keys.join("territory.key"),
            format!("{}\n", s.territory.to_string().expose_secret()).as_bytes(),
        )?;
        identity::write_secret(
            &keys.join("index.key"),
            format!("{}\n", hex::encode(self.index_key)).as_bytes(),
        )?;
        if !s.previous.is_empty() {
            identity::write_secret(
                &keys.join(PREVIOUS_FILE),
                identities_text(&s.previous).as_bytes(),
            )?;
        }
        let path = keys.join(RECOVERY_FILE);
        std::fs::write(&path, recipients_text(&s.recovery)).map_err(|e| io_error(&path, e))?;
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
        let previous = match identity::read_secret(data, PREVIOUS_FILE) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| parse_identity(l, "keys/previous-territory.keys"))
                .collect::<Result<Vec<_>, _>>()?,
            Err(IdentityError::Missing { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let path = identity::keys_dir(data).join(RECOVERY_FILE);
        let recovery = match std::fs::read_to_string(&path) {
            Ok(t) => t
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(parse_recipient)
                .collect::<Result<Vec<_>, _>>()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(io_error(&path, source)),
        };
        Ok(Keyring {
            state: RwLock::new(KeyState {
                territory,
                previous,
                recovery,
            }),
            index_key,
        })
    }

    pub fn territory_recipient(&self) -> String {
        self.read().territory.to_public().to_string()
    }

    /// Recipients of territory keys that were rotated out but not yet retired.
    pub fn previous_recipients(&self) -> Vec<String> {
        self.read()
            .previous
            .iter()
            .map(|i| i.to_public().to_string())
            .collect()
    }

    pub fn recovery_recipients(&self) -> Vec<String> {
        self.read().recovery.iter().map(|r| r.to_string()).collect()
    }

    /// Wraps a record key to the territory and every recovery recipient.
    pub fn wrap_record_key(&self, record_key: &age::x25519::Identity) -> Result<Vec<u8>, KeyError> {
        let s = self.read();
        let territory = s.territory.to_public();
        let mut recipients: Vec<&dyn age::Recipient> = vec![&territory];
        recipients.extend(s.recovery.iter().map(|r| r as &dyn age::Recipient));
        seal_to(
            recipients.into_iter(),
            record_key.to_string().expose_secret().as_bytes(),
        )
    }

    /// Opens a key envelope with the current territory key or, during a rotation, an
    /// earlier one.
    pub fn unwrap_record_key(
        &self,
        envelope: &[u8],
        record_id: &str,
    ) -> Result<age::x25519::Identity, KeyError> {
        let s = self.read();
        let ids = std::iter::once(&s.territory).chain(s.previous.iter());
        unwrap_with(ids, envelope, record_id)
    }

    /// Opens a key envelope with the current territory key only: what `keys retire`
    /// checks before it destroys the earlier ones.
    pub fn opens_with_current(&self, envelope: &[u8], record_id: &str) -> bool {
        let s = self.read();
        unwrap_with(std::iter::once(&s.territory), envelope, record_id).is_ok()
    }

    /// Replaces the territory key with a fresh one. The old key is kept with the earlier
    /// ones until retired, so every existing key envelope still opens meanwhile.
    ///
    /// Order on disk, each step atomic: the previous-keys file (now holding the old key),
    /// then `territory.key`, then `node.toml`. A crash between two steps leaves a node
    /// that starts: `check_against` accepts a `node.toml` that names a previous key.
    pub fn rotate(&self, data: &Path) -> Result<KeyChange, KeyError> {
        let mut s = self.write_state();
        let old = s.territory.clone();
        let mut next = s.clone();
        next.territory = age::x25519::Identity::generate();
        next.previous.push(old.clone());
        let keys = identity::keys_dir(data);
        identity::replace_secret(
            &keys.join(PREVIOUS_FILE),
            identities_text(&next.previous).as_bytes(),
        )?;
        identity::replace_secret(
            &keys.join("territory.key"),
            format!("{}\n", next.territory.to_string().expose_secret()).as_bytes(),
        )?;
        let mut file = identity::read_node_file(data)?;
        file.territory_recipient = next.territory.to_public().to_string();
        identity::write_node_file(data, &file)?;
        let change = KeyChange {
            old_recipient: old.to_public().to_string(),
            new_recipient: next.territory.to_public().to_string(),
        };
        *s = next;
        Ok(change)
    }

    /// Destroys the earlier territory keys. The caller checks first that no key envelope
    /// of this node needs them. Returns their recipients.
    pub fn retire_previous(&self, data: &Path) -> Result<Vec<String>, KeyError> {
        let mut s = self.write_state();
        let retired = s
            .previous
            .iter()
            .map(|i| i.to_public().to_string())
            .collect();
        let path = identity::keys_dir(data).join(PREVIOUS_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, e)),
        }
        s.previous.clear();
        Ok(retired)
    }

    /// Adds (`add = true`) or removes a recovery recipient. Returns false when there was
    /// nothing to do (already there, or not there).
    pub fn change_recovery(
        &self,
        data: &Path,
        recipient: &str,
        add: bool,
    ) -> Result<bool, KeyError> {
        let r = parse_recipient(recipient)?;
        let mut s = self.write_state();
        let present = s.recovery.iter().any(|x| x.to_string() == r.to_string());
        if present == add {
            return Ok(false);
        }
        let mut next = s.recovery.clone();
        if add {
            next.push(r);
        } else {
            next.retain(|x| x.to_string() != r.to_string());
        }
        identity::replace_file(
            &identity::keys_dir(data).join(RECOVERY_FILE),
            recipients_text(&next).as_bytes(),
            0o644,
        )?;
        s.recovery = next;
        Ok(true)
    }

    /// Identifies the index key without revealing it (kept in `node.toml`).
    pub fn index_key_check(&self) -> String {
        hex::encode(&self.subkey("archipel index key check v1")[..16])
    }

    /// Refuses key files that are not the ones this node was created with: another node's
    /// territory key would serve this archive under the wrong identity.
    pub fn check_against(&self, id: &identity::NodeIdentity) -> Result<(), KeyError> {
        let found = self.territory_recipient();
        // A rotation interrupted before `node.toml` was rewritten leaves it naming the
        // previous key: still this node's.
        if found != id.territory_recipient
            && !self.previous_recipients().contains(&id.territory_recipient)
        {
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
    open_with_any(std::iter::once(identity), sealed, what)
}

/// Opens a small age file with whichever of some identities it was sealed to.
fn open_with_any<'a>(
    identities: impl Iterator<Item = &'a dyn age::Identity>,
    sealed: &[u8],
    what: &str,
) -> Result<Vec<u8>, KeyError> {
    let err = |why: String| KeyError::Decrypt {
        what: what.to_string(),
        why,
    };
    let dec = age::Decryptor::new_buffered(sealed).map_err(|e| err(e.to_string()))?;
    let mut r = dec.decrypt(identities).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| err(e.to_string()))?;
    Ok(out)
}

/// Opens a key envelope with any of some identities and parses the record key inside.
fn unwrap_with<'a>(
    ids: impl Iterator<Item = &'a age::x25519::Identity>,
    envelope: &[u8],
    record_id: &str,
) -> Result<age::x25519::Identity, KeyError> {
    let what = format!("key envelope of record {record_id}");
    let plain = open_with_any(ids.map(|i| i as &dyn age::Identity), envelope, &what)?;
    let text =
        String::from_utf8(plain).map_err(|_| KeyError::BadIdentity { what: what.clone() })?;
    parse_identity(&text, &what)
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
    /// Territory keys rotated out but not yet retired: key envelopes made before the
    /// rotation may still need them. Absent from kits made before rotation existed.
    #[serde(default)]
    pub previous_territory_keys: Vec<String>,
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
            territory_key: ring
                .read()
                .territory
                .to_string()
                .expose_secret()
                .to_string(),
            index_key: hex::encode(ring.index_key),
            recovery_recipients: ring.recovery_recipients(),
            previous_territory_keys: ring
                .read()
                .previous
                .iter()
                .map(|i| i.to_string().expose_secret().to_string())
                .collect(),
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
            state: RwLock::new(KeyState {
                territory: parse_identity(&self.territory_key, "recovery kit territory key")?,
                previous: self
                    .previous_territory_keys
                    .iter()
                    .map(|k| parse_identity(k, "recovery kit previous territory key"))
                    .collect::<Result<_, _>>()?,
                recovery: self
                    .recovery_recipients
                    .iter()
                    .map(|r| parse_recipient(r))
                    .collect::<Result<_, _>>()?,
            }),
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

    fn ring_with(recovery: Vec<age::x25519::Recipient>) -> Keyring {
        Keyring {
            state: RwLock::new(KeyState {
                territory: age::x25519::Identity::generate(),
                previous: Vec::new(),
                recovery,
            }),
            index_key: [5; 32],
        }
    }

    fn ring() -> Keyring {
        ring_with(vec![age::x25519::Identity::generate().to_public()])
    }

    /// A data directory as `init` makes it, without the database.
    fn data_dir() -> (tempfile::TempDir, Keyring) {
        let d = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let node_id = identity::create_layout(d.path(), &key).unwrap();
        let ring = Keyring::create(d.path(), &[]).unwrap();
        identity::write_node_file(
            d.path(),
            &identity::NodeFile {
                territory: "Commune".into(),
                node_id,
                created_at: String::new(),
                territory_recipient: ring.territory_recipient(),
                index_key_check: ring.index_key_check(),
            },
        )
        .unwrap();
        (d, ring)
    }

    #[test]
    fn rotation_keeps_old_envelopes_open_until_retired_and_survives_a_reload() {
        let (d, ring) = data_dir();
        let rk = age::x25519::Identity::generate();
        let before = ring.wrap_record_key(&rk).unwrap();
        let change = ring.rotate(d.path()).unwrap();
        assert_ne!(change.old_recipient, change.new_recipient);
        assert_eq!(ring.territory_recipient(), change.new_recipient);
        assert_eq!(
            ring.previous_recipients(),
            vec![change.old_recipient.clone()]
        );
        // Old envelopes still open, but not with the new key alone.
        assert!(ring.unwrap_record_key(&before, "r").is_ok());
        assert!(!ring.opens_with_current(&before, "r"));
        let after = ring.wrap_record_key(&rk).unwrap();
        assert!(ring.opens_with_current(&after, "r"));
        // What is on disk is what is in memory, node.toml included.
        let loaded = Keyring::load(d.path()).unwrap();
        assert_eq!(loaded.territory_recipient(), change.new_recipient);
        assert!(loaded.unwrap_record_key(&before, "r").is_ok());
        let id = identity::load(d.path()).unwrap();
        assert_eq!(id.territory_recipient, change.new_recipient);
        loaded.check_against(&id).unwrap();
        // A kit made now carries the previous key too.
        let kit = RecoveryKit::from_data_dir(d.path()).unwrap();
        assert_eq!(kit.previous_territory_keys.len(), 1);
        // Retired: the old key is gone from memory and disk.
        let retired = ring.retire_previous(d.path()).unwrap();
        assert_eq!(retired, vec![change.old_recipient]);
        assert!(ring.unwrap_record_key(&before, "r").is_err());
        assert!(
            Keyring::load(d.path())
                .unwrap()
                .unwrap_record_key(&before, "r")
                .is_err()
        );
        assert!(!identity::keys_dir(d.path()).join(PREVIOUS_FILE).exists());
    }

    #[test]
    fn a_rotation_interrupted_before_node_toml_still_starts() {
        let (d, ring) = data_dir();
        let id_before = identity::load(d.path()).unwrap();
        ring.rotate(d.path()).unwrap();
        // As if the crash came before node.toml was rewritten.
        let loaded = Keyring::load(d.path()).unwrap();
        loaded.check_against(&id_before).unwrap();
        // Another node's node.toml is still refused.
        let other = identity::NodeIdentity {
            territory_recipient: age::x25519::Identity::generate().to_public().to_string(),
            ..identity::load(d.path()).unwrap()
        };
        assert!(matches!(
            loaded.check_against(&other),
            Err(KeyError::WrongKey { .. })
        ));
    }

    #[test]
    fn recovery_recipients_change_on_disk_and_in_new_envelopes() {
        let (d, ring) = data_dir();
        let holder = age::x25519::Identity::generate();
        let r = holder.to_public().to_string();
        assert!(ring.change_recovery(d.path(), &r, true).unwrap());
        assert!(!ring.change_recovery(d.path(), &r, true).unwrap());
        let rk = age::x25519::Identity::generate();
        let env = ring.wrap_record_key(&rk).unwrap();
        assert!(open_with(&holder, &env, "env").is_ok());
        assert_eq!(
            Keyring::load(d.path()).unwrap().recovery_recipients(),
            vec![r.clone()]
        );
        assert!(ring.change_recovery(d.path(), &r, false).unwrap());
        let env = ring.wrap_record_key(&rk).unwrap();
        assert!(open_with(&holder, &env, "env").is_err());
        assert!(
            Keyring::load(d.path())
                .unwrap()
                .recovery_recipients()
                .is_empty()
        );
        assert!(matches!(
            ring.change_recovery(d.path(), "age1nope", true),
            Err(KeyError::BadRecipient(_))
        ));
    }

    #[test]
    fn record_key_opens_with_territory_and_recovery_only() {
        let recovery_id = age::x25519::Identity::generate();
        let r = ring_with(vec![recovery_id.to_public()]);
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
            previous_territory_keys: vec![],
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
