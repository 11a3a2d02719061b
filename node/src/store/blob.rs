//! Where encrypted blobs live: a small trait, so that another backend (S3) can hold them
//! while sled keeps the indexes.
//!
//! The store only ever holds ciphertext addressed by its BLAKE3; it is the caller's job to
//! decide which blobs are referenced. Reads through [`get_verified`] check the address.

use archipel_proto::manifest::BlobId;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob store: {0}")]
    Backend(String),
}

impl From<sled::Error> for BlobError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Io(io) => BlobError::Io(io),
            other => BlobError::Backend(other.to_string()),
        }
    }
}

/// A content-addressed store of encrypted blobs. Implementations must be durable after
/// [`BlobStore::flush`] returns, and idempotent on `put` of the same ID.
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError>;
    /// The stored bytes, unverified; `None` if absent.
    fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError>;
    fn contains(&self, id: &BlobId) -> Result<bool, BlobError>;
    fn delete(&self, id: &BlobId) -> Result<(), BlobError>;
    /// IDs starting with `prefix`, in ascending order.
    fn list(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<BlobId, BlobError>> + '_>;
    fn flush(&self) -> Result<(), BlobError>;
    /// The stored size of a blob, if present.
    fn size(&self, id: &BlobId) -> Result<Option<u64>, BlobError> {
        Ok(self.get(id)?.map(|b| b.len() as u64))
    }
    /// Whether writing a blob of `len` bytes lands outside the sled log, so that the
    /// staging mark must be made durable first (otherwise a crash could leave a blob that
    /// nothing lists). sled-held blobs share the log with the mark: no.
    fn outside_log(&self, _len: usize) -> bool {
        false
    }
}

/// The result of reading a blob and checking its address.
#[derive(Debug)]
pub enum Verified {
    Ok(Vec<u8>),
    Missing,
    /// The bytes found do not hash to the ID: altered on disk.
    Corrupt,
}

pub fn get_verified(store: &dyn BlobStore, id: &BlobId) -> Result<Verified, BlobError> {
    Ok(match store.get(id)? {
        None => Verified::Missing,
        Some(b) if blake3::hash(&b).as_bytes() == id => Verified::Ok(b),
        Some(_) => Verified::Corrupt,
    })
}

/// Blobs in a sled tree of the node's database (the embedded default).
#[derive(Debug, Clone)]
pub struct SledBlobStore {
    tree: sled::Tree,
    db: sled::Db,
}

impl SledBlobStore {
    pub fn open(db: &sled::Db) -> Result<Self, BlobError> {
        Self::open_named(db, "blobs")
    }

    /// Blobs in the sled tree `tree` (one per namespace).
    pub fn open_named(db: &sled::Db, tree: &str) -> Result<Self, BlobError> {
        Ok(SledBlobStore {
            tree: db.open_tree(tree)?,
            db: db.clone(),
        })
    }
}

impl BlobStore for SledBlobStore {
    fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
        self.tree.insert(id, bytes)?;
        Ok(())
    }
    fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        Ok(self.tree.get(id)?.map(|v| v.to_vec()))
    }
    fn contains(&self, id: &BlobId) -> Result<bool, BlobError> {
        Ok(self.tree.contains_key(id)?)
    }
    fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        self.tree.remove(id)?;
        Ok(())
    }
    fn list(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<BlobId, BlobError>> + '_> {
        Box::new(self.tree.scan_prefix(prefix).keys().map(|k| {
            let k = k?;
            <[u8; 32]>::try_from(k.as_ref())
                .map_err(|_| BlobError::Backend(format!("blob key of {} bytes", k.len())))
        }))
    }
    fn flush(&self) -> Result<(), BlobError> {
        self.db.flush()?;
        Ok(())
    }
}

/// One conformance suite for every implementation (the S3 backend will run it too).
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    pub fn run(store: &dyn BlobStore) {
        let a = b"first blob".to_vec();
        let ida = *blake3::hash(&a).as_bytes();
        let b = vec![7u8; 300_000];
        let idb = *blake3::hash(&b).as_bytes();
        // Large enough for a store that treats big and small blobs differently.
        let c = vec![9u8; 3 << 20];
        let idc = *blake3::hash(&c).as_bytes();
        store.put(&idc, &c).unwrap();
        assert!(matches!(get_verified(store, &idc).unwrap(), Verified::Ok(x) if x == c));
        store.delete(&idc).unwrap();
        assert!(!store.contains(&idc).unwrap());
        assert!(!store.contains(&ida).unwrap());
        assert!(store.get(&ida).unwrap().is_none());
        store.put(&ida, &a).unwrap();
        store.put(&ida, &a).unwrap(); // idempotent
        store.put(&idb, &b).unwrap();
        store.flush().unwrap();
        assert!(store.contains(&ida).unwrap());
        assert!(matches!(get_verified(store, &ida).unwrap(), Verified::Ok(x) if x == a));
        assert!(matches!(get_verified(store, &idb).unwrap(), Verified::Ok(x) if x == b));
        let mut listed: Vec<_> = store.list(&[]).map(|r| r.unwrap()).collect();
        let mut want = vec![ida, idb];
        want.sort();
        listed.sort();
        assert_eq!(listed, want);
        let by_prefix: Vec<_> = store.list(&ida[..1]).map(|r| r.unwrap()).collect();
        assert!(by_prefix.contains(&ida));
        // A blob stored under the wrong address reads as corrupt, never as data.
        let wrong = [0u8; 32];
        store.put(&wrong, &a).unwrap();
        assert!(matches!(
            get_verified(store, &wrong).unwrap(),
            Verified::Corrupt
        ));
        store.delete(&ida).unwrap();
        store.delete(&ida).unwrap(); // deleting twice is fine
        assert!(matches!(
            get_verified(store, &ida).unwrap(),
            Verified::Missing
        ));
    }

    #[test]
    fn sled_blob_store_conforms() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(d.path()).open().unwrap();
        run(&SledBlobStore::open(&db).unwrap());
    }
}
