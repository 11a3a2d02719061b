//! The node's identity: its Ed25519 signing key, the node ID derived from it, and the
//! layout of secret files in the data directory.
//!
//! Layout of a data directory:
//! - `node.toml`: territory name and node ID (public);
//! - `keys/` (0700): `node.key` (Ed25519 seed), `territory.key` (age identity),
//!   `index.key` (catalog and deduplication key), all 0600; `recovery.txt` (public
//!   recipients of the recovery kit holders, one per line);
//! - `db/`: the sled database; `admin.sock`: the admin API; `node.lock`: held while running.

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} is readable by other users (mode {mode:o}); secrets must be private: run `chmod 600 {path}`"
    )]
    Permissions { path: String, mode: u32 },
    #[error(
        "{path} is missing: is {dir} an Archipel data directory? Create one with `archipel-node init --data {dir} --territory NAME`"
    )]
    Missing { path: String, dir: String },
    #[error("{path} is malformed: {why}")]
    Malformed { path: String, why: String },
    #[error("{0} is already initialised; refusing to overwrite its keys")]
    AlreadyInitialised(String),
    #[error("another archipel-node is already running on {0} (it holds node.lock)")]
    Locked(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Node ID: lowercase base32 of the first 20 bytes of BLAKE3(public key). One ID names the
/// node everywhere (admin, peers, log origin).
pub fn node_id_of(key: &VerifyingKey) -> String {
    let h = blake3::hash(key.as_bytes());
    data_encoding::BASE32_NOPAD
        .encode(&h.as_bytes()[..20])
        .to_ascii_lowercase()
}

/// Public facts about the node, in `node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeFile {
    pub territory: String,
    pub node_id: String,
    pub created_at: String,
    /// The territory's age recipient: the node refuses a `territory.key` that is not its own.
    pub territory_recipient: String,
    /// A keyed digest that identifies `index.key` without revealing it.
    pub index_key_check: String,
}

#[derive(Debug)]
pub struct NodeIdentity {
    pub territory: String,
    pub node_id: String,
    pub signing_key: SigningKey,
    /// From `node.toml`, to check the key files against.
    pub territory_recipient: String,
    pub index_key_check: String,
}

impl NodeIdentity {
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }
}

pub fn keys_dir(data: &Path) -> PathBuf {
    data.join("keys")
}

/// Writes a secret file with mode 0600, refusing to replace an existing one.
pub fn write_secret(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(contents).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

/// Replaces a secret file (mode 0600) atomically: a crash leaves the old or the new
/// contents, never a mix. Key rotation and recovery-recipient changes use it.
pub fn replace_secret(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    replace_file(path, contents, 0o600)
}

/// Replaces a file atomically with `mode`: a temporary file written and fsynced, renamed
/// over the old one, then the directory fsynced. A crash leaves the old or the new file.
pub fn replace_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path)
}

/// Makes a rename durable: the directory entry is flushed too.
fn sync_dir(path: &Path) -> Result<(), IdentityError> {
    match path.parent() {
        Some(dir) => fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir)),
        None => Ok(()),
    }
}

/// Reads a secret file after checking that only its owner can read it.
pub fn read_secret(data: &Path, name: &str) -> Result<String, IdentityError> {
    let path = keys_dir(data).join(name);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing {
                path: path.display().to_string(),
                dir: data.display().to_string(),
            });
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::Permissions {
            path: path.display().to_string(),
            mode,
        });
    }
    fs::read_to_string(&path).map_err(io_err(&path))
}

pub fn encode_seed(key: &SigningKey) -> String {
    format!(
        "archipel-node-key-v1 {}\n",
        data_encoding::BASE64.encode(key.as_bytes())
    )
}

pub fn decode_seed(text: &str, path: &str) -> Result<SigningKey, IdentityError> {
    let bad = |why: &str| IdentityError::Malformed {
        path: path.to_string(),
        why: why.to_string(),
    };
    let b64 = text
        .trim()
        .strip_prefix("archipel-node-key-v1 ")
        .ok_or_else(|| bad("expected `archipel-node-key-v1 <base64 seed>`"))?;
    let seed = data_encoding::BASE64
        .decode(b64.as_bytes())
        .map_err(|_| bad("seed is not base64"))?;
    let seed: [u8; 32] = seed.try_into().map_err(|_| bad("seed is not 32 bytes"))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Creates `data/keys` (0700) and `node.toml`; refuses if the directory holds a node already.
pub fn create_layout(data: &Path, key: &SigningKey) -> Result<String, IdentityError> {
    if data.join("node.toml").exists() {
        return Err(IdentityError::AlreadyInitialised(
            data.display().to_string(),
        ));
    }
    fs::create_dir_all(data).map_err(io_err(data))?;
    let keys = keys_dir(data);
    fs::create_dir_all(&keys).map_err(io_err(&keys))?;
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o700)).map_err(io_err(&keys))?;
    write_secret(&keys.join("node.key"), encode_seed(key).as_bytes())?;
    let node_id = node_id_of(&key.verifying_key());
    Ok(node_id)
}

/// Writes `node.toml` last: its presence marks a complete initialisation.
pub fn write_node_file(data: &Path, file: &NodeFile) -> Result<(), IdentityError> {
    let path = data.join("node.toml");
    let text = toml::to_string(file).map_err(|e| IdentityError::Malformed {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    replace_file(&path, text.as_bytes(), 0o644)
}

/// Reads `node.toml` alone (no key files), e.g. to update it after a key rotation.
pub fn read_node_file(data: &Path) -> Result<NodeFile, IdentityError> {
    let path = data.join("node.toml");
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    toml::from_str(&text).map_err(|e| IdentityError::Malformed {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

pub fn load(data: &Path) -> Result<NodeIdentity, IdentityError> {
    let path = data.join("node.toml");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(IdentityError::Missing {
                path: path.display().to_string(),
                dir: data.display().to_string(),
            });
        }
        Err(e) => return Err(io_err(&path)(e)),
    };
    let file: NodeFile = toml::from_str(&text).map_err(|e| IdentityError::Malformed {
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    let key_path = keys_dir(data).join("node.key");
    let signing_key = decode_seed(
        &read_secret(data, "node.key")?,
        &key_path.display().to_string(),
    )?;
    let node_id = node_id_of(&signing_key.verifying_key());
    if node_id != file.node_id {
        return Err(IdentityError::Malformed {
            path: path.display().to_string(),
            why: format!(
                "node_id {} does not match the key in {} ({node_id})",
                file.node_id,
                key_path.display()
            ),
        });
    }
    Ok(NodeIdentity {
        territory: file.territory,
        node_id,
        signing_key,
        territory_recipient: file.territory_recipient,
        index_key_check: file.index_key_check,
    })
}

/// An exclusive lock on the data directory, held for the life of the node.
#[derive(Debug)]
pub struct DataLock {
    _file: fs::File,
}

pub fn lock(data: &Path) -> Result<DataLock, IdentityError> {
    let path = data.join("node.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(DataLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(IdentityError::Locked(data.display().to_string())),
        Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_stable_and_derived_from_the_key() {
        let k = SigningKey::from_bytes(&[1; 32]);
        let id = node_id_of(&k.verifying_key());
        assert_eq!(id.len(), 32);
        assert_eq!(id, node_id_of(&k.verifying_key()));
        assert_ne!(
            id,
            node_id_of(&SigningKey::from_bytes(&[2; 32]).verifying_key())
        );
    }

    #[test]
    fn seed_round_trips_and_rejects_garbage() {
        let k = SigningKey::from_bytes(&[3; 32]);
        let back = decode_seed(&encode_seed(&k), "x").unwrap();
        assert_eq!(back.as_bytes(), k.as_bytes());
        assert!(decode_seed("archipel-node-key-v1 AAAA", "x").is_err());
        assert!(decode_seed("garbage", "x").is_err());
    }

    #[test]
    fn readable_secret_is_refused_with_the_fix() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(keys_dir(d.path())).unwrap();
        let p = keys_dir(d.path()).join("node.key");
        fs::write(&p, "x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret(d.path(), "node.key").unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn second_lock_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _a = lock(d.path()).unwrap();
        assert!(matches!(lock(d.path()), Err(IdentityError::Locked(_))));
    }
}
