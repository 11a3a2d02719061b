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
    #[error(transparent)]
    S3(#[from] super::s3::S3Error),
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
    /// `len` bytes of a blob from `range.start` (cut at its end); `None` if absent. Stores
    /// that can fetch a range without the rest (S3) override it.
    fn get_range(
        &self,
        id: &BlobId,
        range: std::ops::Range<u64>,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        Ok(self.get(id)?.map(|b| {
            let end = (range.end.min(b.len() as u64)) as usize;
            let start = (range.start as usize).min(end);
            b[start..end].to_vec()
        }))
    }
    /// Makes the given blobs durable (those written by one ingest, before its commit). A
    /// store that writes in the background waits for these only; the others flush.
    fn flush_blobs(&self, _ids: &[BlobId]) -> Result<(), BlobError> {
        self.flush()
    }
    /// Several blobs at once, in order (unverified). Stores with a network round trip per
    /// blob (S3) fetch them in parallel; memory is the caller's: it asks for few.
    fn get_many(&self, ids: &[BlobId]) -> Vec<Result<Option<Vec<u8>>, BlobError>> {
        ids.iter().map(|id| self.get(id)).collect()
    }
    /// How many blobs a sequential reader should fetch at once (1: one at a time; a store
    /// with a round trip per blob says how many requests it runs in parallel).
    fn read_ahead(&self) -> usize {
        1
    }
    /// Up to `limit` IDs starting with `prefix` and above `after`, ascending: a listing
    /// resumed where it stopped, without holding it open.
    fn list_after(
        &self,
        prefix: &[u8],
        after: Option<&BlobId>,
        limit: usize,
    ) -> Result<Vec<BlobId>, BlobError> {
        self.list(prefix)
            .filter(|x| match (x, after) {
                (Ok(id), Some(a)) => id > a,
                _ => true,
            })
            .take(limit)
            .collect()
    }
    /// Whether blobs take room on the node's own disk (then writes keep the disk reserve;
    /// an object store has its own quota).
    fn on_local_disk(&self) -> bool {
        true
    }
    /// Gives back the room of deleted blobs where deleting alone does not (pack files);
    /// returns the bytes freed. Runs while the store serves.
    fn reclaim(&self) -> Result<u64, BlobError> {
        Ok(0)
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
    fn list_after(
        &self,
        prefix: &[u8],
        after: Option<&BlobId>,
        limit: usize,
    ) -> Result<Vec<BlobId>, BlobError> {
        let start = match after {
            Some(a) if a.as_slice() >= prefix => std::ops::Bound::Excluded(a.to_vec()),
            _ => std::ops::Bound::Included(prefix.to_vec()),
        };
        let mut out = Vec::new();
        for k in self
            .tree
            .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
            .keys()
        {
            let k = k?;
            if !k.starts_with(prefix) || out.len() == limit {
                break;
            }
            out.push(
                <[u8; 32]>::try_from(k.as_ref())
                    .map_err(|_| BlobError::Backend(format!("blob key of {} bytes", k.len())))?,
            );
        }
        Ok(out)
    }
}

/// One conformance suite for every implementation: sled and files here, S3 (s3s-fs, Garage)
/// from `tests/tests/s3.rs`. Public so that the integration tests can run it against real
/// object stores; it returns what failed rather than panicking.
pub mod conformance {
    use super::*;

    macro_rules! check {
        ($cond:expr, $($why:tt)+) => {
            if !$cond {
                return Err(format!("{}: {}", stringify!($cond), format!($($why)+)));
            }
        };
    }

    fn e(what: &str) -> impl FnOnce(BlobError) -> String + '_ {
        move |err| format!("{what}: {err}")
    }

    /// Put, get, ranges, exists, size, delete, listing (all and by prefix), idempotence,
    /// and that a blob under the wrong address reads as corrupt. Expects an empty store.
    pub fn run(store: &dyn BlobStore) -> Result<(), String> {
        let a = b"first blob".to_vec();
        let ida = *blake3::hash(&a).as_bytes();
        let b = vec![7u8; 300_000];
        let idb = *blake3::hash(&b).as_bytes();
        // Large enough for a store that treats big and small blobs differently.
        let c: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let idc = *blake3::hash(&c).as_bytes();
        store.put(&idc, &c).map_err(e("put c"))?;
        check!(
            matches!(get_verified(store, &idc).map_err(e("get c"))?, Verified::Ok(ref x) if *x == c),
            "a large blob reads back whole"
        );
        check!(
            store.size(&idc).map_err(e("size c"))? == Some(c.len() as u64),
            "size"
        );
        // Ranges: inside, at the start, across the end (cut), empty, past the end.
        let r = store.get_range(&idc, 1000..5000).map_err(e("range"))?;
        check!(
            r.as_deref() == Some(&c[1000..5000]),
            "a range inside the blob"
        );
        let r = store.get_range(&idc, 0..1).map_err(e("range"))?;
        check!(r.as_deref() == Some(&c[0..1]), "the first byte");
        let n = c.len() as u64;
        let r = store.get_range(&idc, n - 10..n + 10).map_err(e("range"))?;
        check!(
            r.as_deref() == Some(&c[c.len() - 10..]),
            "a range across the end is cut"
        );
        store.delete(&idc).map_err(e("delete c"))?;
        check!(!store.contains(&idc).map_err(e("contains c"))?, "deleted");
        check!(
            store.get_range(&idc, 0..10).map_err(e("range"))?.is_none(),
            "range of absent"
        );
        check!(
            !store.contains(&ida).map_err(e("contains a"))?,
            "absent at first"
        );
        check!(
            store.get(&ida).map_err(e("get a"))?.is_none(),
            "get of absent is None"
        );
        check!(
            store.size(&ida).map_err(e("size a"))?.is_none(),
            "size of absent is None"
        );
        store.put(&ida, &a).map_err(e("put a"))?;
        store.put(&ida, &a).map_err(e("put a again"))?; // idempotent
        store.put(&idb, &b).map_err(e("put b"))?;
        store.flush().map_err(e("flush"))?;
        check!(
            store.contains(&ida).map_err(e("contains a"))?,
            "present after put"
        );
        check!(
            matches!(get_verified(store, &ida).map_err(e("get a"))?, Verified::Ok(ref x) if *x == a),
            "a reads back"
        );
        check!(
            matches!(get_verified(store, &idb).map_err(e("get b"))?, Verified::Ok(ref x) if *x == b),
            "b reads back"
        );
        let listed = store
            .list(&[])
            .collect::<Result<Vec<_>, _>>()
            .map_err(e("list"))?;
        let mut want = vec![ida, idb];
        want.sort();
        check!(
            listed == want,
            "listing is every blob in ascending order: {listed:?}"
        );
        let by_prefix = store
            .list(&ida[..1])
            .collect::<Result<Vec<_>, _>>()
            .map_err(e("list by prefix"))?;
        check!(
            by_prefix.contains(&ida) && by_prefix.iter().all(|x| x[0] == ida[0]),
            "listing by prefix"
        );
        let by_prefix = store
            .list(&idb[..3])
            .collect::<Result<Vec<_>, _>>()
            .map_err(e("list by prefix"))?;
        check!(by_prefix == vec![idb], "listing by a longer prefix");
        let none = store
            .list(&[ida[0] ^ 0x80, 1, 2])
            .collect::<Result<Vec<_>, _>>()
            .map_err(e("list by prefix"))?;
        check!(none.is_empty(), "listing by a prefix no blob has");
        // A blob stored under the wrong address reads as corrupt, never as data.
        let wrong = [0u8; 32];
        store.put(&wrong, &a).map_err(e("put wrong"))?;
        check!(
            matches!(
                get_verified(store, &wrong).map_err(e("get wrong"))?,
                Verified::Corrupt
            ),
            "corrupt"
        );
        store.delete(&wrong).map_err(e("delete wrong"))?;
        store.delete(&ida).map_err(e("delete a"))?;
        store.delete(&ida).map_err(e("delete a twice"))?; // deleting twice is fine
        check!(
            matches!(
                get_verified(store, &ida).map_err(e("get a"))?,
                Verified::Missing
            ),
            "missing after delete"
        );
        store.delete(&idb).map_err(e("delete b"))?;
        Ok(())
    }

    /// Many blobs: listing crosses page boundaries and stays in order. `n` small blobs.
    pub fn run_many(store: &dyn BlobStore, n: u32) -> Result<(), String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let bytes = format!("blob number {i}").into_bytes();
            let id = *blake3::hash(&bytes).as_bytes();
            store.put(&id, &bytes).map_err(e("put"))?;
            ids.push(id);
        }
        ids.sort();
        let listed = store
            .list(&[])
            .collect::<Result<Vec<_>, _>>()
            .map_err(e("list"))?;
        check!(
            listed == ids,
            "{} listed, {} stored",
            listed.len(),
            ids.len()
        );
        let p = ids[ids.len() / 2][0];
        let by_prefix = store
            .list(&[p])
            .collect::<Result<Vec<_>, _>>()
            .map_err(e("list by prefix"))?;
        let want: Vec<_> = ids.iter().filter(|x| x[0] == p).copied().collect();
        check!(by_prefix == want, "listing by prefix across pages");
        for id in &ids {
            store.delete(id).map_err(e("delete"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_blob_store_conforms() {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(d.path()).open().unwrap();
        let s = SledBlobStore::open(&db).unwrap();
        conformance::run(&s).unwrap();
        conformance::run_many(&s, 300).unwrap();
    }
}
