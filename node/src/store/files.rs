//! Blobs as files: the default blob store.
//!
//! Why not sled: measured here, sled keeps every inserted value in memory whatever its
//! `cache_capacity` (about 1 GiB of RSS after writing 1 GiB of 4 MiB, 1 MiB or 64 KiB values;
//! `tests/src/bin/sled_probe.rs`), which breaks the node's bounded-memory promise for large
//! records. sled still holds everything else (indexes, envelopes, keys, catalog, the log).
//!
//! Layout: a full-size blob is a file `<dir>/<2 hex>/<2 hex>/<64 hex>`, written to
//! `<dir>/tmp/` and renamed into place, so it is whole or absent. A small blob (a small file,
//! or the tail of a large one) is appended to a pack file `<dir>/packs/<n>.pack` and found
//! through the sled tree `packed` (ID → pack, offset, length): creating one inode per small
//! blob cost more than everything else when ingesting thousands of small files. `flush`
//! syncs the file system (`syncfs`), which the store calls before it commits a record that
//! references new blobs. `tmp/` is emptied at start-up: its files belong to writes a crash
//! interrupted. Deleting a packed blob removes its index entry; its bytes stay in the pack
//! until `reclaim` (the node's `pack-compactor` job, hourly) rewrites the closed packs that
//! are mostly dead: it copies their live blobs, each checked against its BLAKE3 address,
//! to the current pack, syncs, moves each index entry only if it still points at the old
//! place (compare-and-swap: a blob deleted meanwhile stays deleted), flushes the index,
//! and only then removes the old pack. A crash at any point leaves every entry pointing at
//! bytes that exist (old or new copy); the next pass finishes. A reader that looked up the
//! old place just before the removal looks again.

use super::blob::{BlobError, BlobStore};
use archipel_proto::manifest::BlobId;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Blobs smaller than this go into pack files.
pub const PACK_BELOW: usize = 1024 * 1024;
/// A pack file is closed and a new one started past this size.
const PACK_SIZE: u64 = 256 * 1024 * 1024;

#[derive(Debug)]
struct PackWriter {
    number: u32,
    file: fs::File,
    len: u64,
}

/// A closed pack is rewritten once at least this share of its bytes is dead.
const REPACK_DEAD_SHARE: f64 = 0.5;
/// A pack is rewritten only if the disk keeps this much free beyond the copies: the
/// node's disk reserve (256 MiB by default) is enforced on ingest, and sled must never
/// meet a full disk.
const REPACK_MARGIN: u64 = 1 << 30;

#[derive(Debug)]
pub struct FileBlobStore {
    dir: PathBuf,
    tmp_seq: AtomicU64,
    packed: sled::Tree,
    pack: Mutex<Option<PackWriter>>,
    /// One repack at a time.
    repacking: Mutex<()>,
    /// Held (read) by a small put from its append to its index entry; a repack takes it
    /// (write) once before it lists a closed pack's entries, so that no put is still about
    /// to point into that pack.
    indexing: std::sync::RwLock<()>,
}

/// One blob of a pack, as its index entry says.
struct PackEntry {
    id: sled::IVec,
    location: sled::IVec,
    offset: u64,
    len: u32,
}

fn blob_id(k: &[u8]) -> Result<BlobId, BlobError> {
    BlobId::try_from(k).map_err(|_| BlobError::Backend("pack index key is not a blob ID".into()))
}

fn location_bytes(pack: u32, offset: u64, len: u32) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[0..4].copy_from_slice(&pack.to_be_bytes());
    v[4..12].copy_from_slice(&offset.to_be_bytes());
    v[12..16].copy_from_slice(&len.to_be_bytes());
    v
}

fn parse_location(v: &[u8]) -> Option<(u32, u64, u32)> {
    let v: [u8; 16] = v.try_into().ok()?;
    Some((
        u32::from_be_bytes(v[0..4].try_into().ok()?),
        u64::from_be_bytes(v[4..12].try_into().ok()?),
        u32::from_be_bytes(v[12..16].try_into().ok()?),
    ))
}

impl FileBlobStore {
    pub fn open(dir: &Path, db: &sled::Db) -> Result<Self, BlobError> {
        Self::open_named(dir, db, "packed")
    }

    /// A store in `dir` whose small-blob index is the sled tree `packed_tree` (one per
    /// namespace: a holder keeps each origin's blobs apart).
    pub fn open_named(dir: &Path, db: &sled::Db, packed_tree: &str) -> Result<Self, BlobError> {
        fs::create_dir_all(dir.join("tmp"))?;
        fs::create_dir_all(dir.join("packs"))?;
        for e in fs::read_dir(dir.join("tmp"))? {
            let _ = fs::remove_file(e?.path());
        }
        Ok(FileBlobStore {
            dir: dir.to_path_buf(),
            tmp_seq: AtomicU64::new(0),
            packed: db.open_tree(packed_tree)?,
            pack: Mutex::new(None),
            repacking: Mutex::new(()),
            indexing: std::sync::RwLock::new(()),
        })
    }

    fn pack_path(&self, number: u32) -> PathBuf {
        self.dir.join("packs").join(format!("{number:08}.pack"))
    }

    /// Appends a small blob to the current pack; returns (pack, offset).
    fn append(&self, bytes: &[u8]) -> Result<(u32, u64), BlobError> {
        let mut guard = self
            .pack
            .lock()
            .map_err(|_| BlobError::Backend("pack writer lock poisoned".into()))?;
        if guard.as_ref().is_none_or(|p| p.len >= PACK_SIZE) {
            // A fresh pack after the highest existing one: never append to a pack that a
            // crash may have left with a torn tail that an index entry could point past.
            let next = self.pack_numbers()?.into_iter().max().map_or(0, |n| n + 1);
            let file = fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.pack_path(next))?;
            *guard = Some(PackWriter {
                number: next,
                file,
                len: 0,
            });
        }
        let w = guard
            .as_mut()
            .ok_or_else(|| BlobError::Backend("no pack writer".into()))?;
        let offset = w.len;
        if let Err(e) = w.file.write_all(bytes) {
            // Part of it may be written: the offsets after it would be wrong. The next
            // small blob starts a new pack.
            *guard = None;
            return Err(e.into());
        }
        w.len += bytes.len() as u64;
        Ok((w.number, offset))
    }

    /// Blob files whose hex name starts with `prefix`.
    fn list_files(&self, prefix: &str, out: &mut Vec<BlobId>) -> Result<(), BlobError> {
        let names = |dir: &Path| -> Result<Vec<String>, BlobError> {
            let mut v: Vec<String> = fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            Ok(v)
        };
        for a in names(&self.dir)?.into_iter().filter(|n| n.len() == 2) {
            if !a.starts_with(&prefix[..prefix.len().min(2)]) {
                continue;
            }
            for b in names(&self.dir.join(&a))? {
                let found = names(&self.dir.join(&a).join(&b))?;
                out.extend(
                    found
                        .iter()
                        .filter(|n| n.starts_with(prefix))
                        .filter_map(|n| parse_id(n)),
                );
            }
        }
        Ok(())
    }

    fn packed_at(&self, id: &BlobId) -> Result<Option<(u32, u64, u32)>, BlobError> {
        Ok(self.packed.get(id)?.and_then(|v| parse_location(&v)))
    }

    fn pack_numbers(&self) -> Result<Vec<u32>, BlobError> {
        Ok(fs::read_dir(self.dir.join("packs"))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".pack")?
                    .parse::<u32>()
                    .ok()
            })
            .collect())
    }

    /// Rewrites the closed packs of which at least `dead_share` of the bytes belong to no
    /// index entry (see the module's documentation); returns the bytes freed.
    pub fn repack(&self, dead_share: f64) -> Result<u64, BlobError> {
        let _one = self
            .repacking
            .lock()
            .map_err(|_| BlobError::Backend("repack lock poisoned".into()))?;
        // Closed packs only: those below the one being written. Packs are numbered upwards,
        // so a pack created from now on is never among these; with no writer yet, every
        // pack listed now is closed.
        let closed: Vec<u32> = {
            let writer = self
                .pack
                .lock()
                .map_err(|_| BlobError::Backend("pack writer lock poisoned".into()))?;
            let current = writer.as_ref().map(|w| w.number);
            let mut packs = self.pack_numbers()?;
            packs.retain(|p| current.is_none_or(|c| *p < c));
            packs
        };
        let mut live: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
        for v in self.packed.iter().values() {
            if let Some((pack, _, len)) = parse_location(&v?) {
                *live.entry(pack).or_default() += u64::from(len);
            }
        }
        let mut freed = 0;
        for pack in closed {
            let size = fs::metadata(self.pack_path(pack))?.len();
            let alive = live.get(&pack).copied().unwrap_or(0);
            if size == 0 || (size - alive.min(size)) as f64 / (size as f64) < dead_share {
                continue;
            }
            let needed = alive.saturating_add(REPACK_MARGIN);
            if let Some(free) = super::free_bytes_at(&self.dir).filter(|f| *f < needed) {
                tracing::warn!(
                    pack,
                    free_mib = free >> 20,
                    needed_mib = needed >> 20,
                    "repack skipped: free some disk space to give back this pack's dead bytes"
                );
                continue;
            }
            if self.rewrite_pack(pack)? {
                freed += size.saturating_sub(alive);
            }
        }
        Ok(freed)
    }

    /// The index entries pointing into `pack`: (ID, location as stored, offset, length).
    fn entries_of(&self, pack: u32) -> Result<Vec<PackEntry>, BlobError> {
        let mut out = Vec::new();
        for kv in self.packed.iter() {
            let (k, v) = kv?;
            if let Some((p, offset, len)) = parse_location(&v)
                && p == pack
            {
                out.push(PackEntry {
                    id: k,
                    location: v,
                    offset,
                    len,
                });
            }
        }
        Ok(out)
    }

    /// Moves one pack's live blobs to the current pack, then removes it; false (the pack
    /// kept, nothing copied) if one of its live blobs does not match its address: it stays
    /// where it is, for scrub to repair.
    fn rewrite_pack(&self, pack: u32) -> Result<bool, BlobError> {
        use std::io::{Read, Seek, SeekFrom};
        // A barrier: a put that appended to this pack while it was still being written has
        // indexed it once no put holds `indexing`. The pack is closed, so from here on its
        // entries can only go (deletes) or move (re-puts go to the current pack).
        drop(
            self.indexing
                .write()
                .map_err(|_| BlobError::Backend("pack index lock poisoned".into()))?,
        );
        let entries = self.entries_of(pack)?;
        let mut file = fs::File::open(self.pack_path(pack))?;
        let mut read = |e: &PackEntry| -> Result<Option<Vec<u8>>, BlobError> {
            file.seek(SeekFrom::Start(e.offset))?;
            let mut bytes = Vec::with_capacity(e.len as usize);
            (&mut file).take(u64::from(e.len)).read_to_end(&mut bytes)?;
            if blake3::hash(&bytes).as_bytes() != e.id.as_ref() {
                tracing::warn!(pack, blob = %hex::encode(&e.id), "repack: blob does not match its address; pack kept for scrub to repair it");
                return Ok(None);
            }
            Ok(Some(bytes))
        };
        // Checked first, copied after: a pack that is kept gets no copies made in vain.
        for e in &entries {
            if read(e)?.is_none() {
                return Ok(false);
            }
        }
        let mut moves = Vec::with_capacity(entries.len());
        for e in &entries {
            let Some(bytes) = read(e)? else {
                return Ok(false);
            };
            let (to, at) = self.append(&bytes)?;
            moves.push(location_bytes(to, at, e.len));
        }
        // The copies are on disk before any entry points at them.
        self.flush()?;
        for (e, new) in entries.iter().zip(&moves) {
            // Deleted (or moved) meanwhile: the copy is dead bytes for a later pass.
            let _ =
                self.packed
                    .compare_and_swap(&e.id, Some(e.location.as_ref()), Some(&new[..]))?;
        }
        self.packed.flush()?;
        // After the barrier no new entry can point here; those that did were all moved or
        // have gone. Checked anyway before the only irreversible step.
        for e in &entries {
            if self
                .packed_at(&blob_id(&e.id)?)?
                .is_some_and(|(p, ..)| p == pack)
            {
                return Ok(false);
            }
        }
        fs::remove_file(self.pack_path(pack))?;
        Ok(true)
    }

    /// Where a blob's bytes are: (file, offset, length). Tests use it to damage blobs.
    pub fn location(&self, id: &BlobId) -> Result<Option<(PathBuf, u64, u64)>, BlobError> {
        if let Some((pack, offset, len)) = self.packed_at(id)? {
            return Ok(Some((self.pack_path(pack), offset, u64::from(len))));
        }
        let path = self.path_of(id);
        Ok(fs::metadata(&path).ok().map(|m| (path, 0, m.len())))
    }

    /// Where a full-size blob's file is.
    pub fn path_of(&self, id: &BlobId) -> PathBuf {
        let h = hex::encode(id);
        self.dir.join(&h[..2]).join(&h[2..4]).join(h)
    }
}

fn parse_id(name: &str) -> Option<BlobId> {
    if name.len() != 64 {
        return None;
    }
    hex::decode(name).ok()?.try_into().ok()
}

impl BlobStore for FileBlobStore {
    fn put(&self, id: &BlobId, bytes: &[u8]) -> Result<(), BlobError> {
        if bytes.len() < PACK_BELOW {
            let _indexing = self
                .indexing
                .read()
                .map_err(|_| BlobError::Backend("pack index lock poisoned".into()))?;
            if self.packed.contains_key(id)? {
                return Ok(());
            }
            let (pack, offset) = self.append(bytes)?;
            self.packed
                .insert(id, &location_bytes(pack, offset, bytes.len() as u32))?;
            return Ok(());
        }
        let path = self.path_of(id);
        if path.exists() {
            return Ok(()); // content-addressed: same ID, same bytes
        }
        let seq = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp =
            self.dir
                .join("tmp")
                .join(format!("{}.{}.{seq}", hex::encode(id), std::process::id()));
        let written = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(&tmp, &path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        Ok(written?)
    }

    fn get(&self, id: &BlobId) -> Result<Option<Vec<u8>>, BlobError> {
        // A repack may remove the pack between the lookup and the open: look again.
        let mut last = None;
        while let Some(at @ (pack, offset, len)) = self.packed_at(id)? {
            use std::io::{Read, Seek, SeekFrom};
            let mut f = match fs::File::open(self.pack_path(pack)) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    if last == Some(at) {
                        return Ok(None);
                    }
                    last = Some(at);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::with_capacity(len as usize);
            f.take(u64::from(len)).read_to_end(&mut buf)?;
            // A short read is returned as is: the caller's BLAKE3 check reports it corrupt.
            return Ok(Some(buf));
        }
        match fs::read(self.path_of(id)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn contains(&self, id: &BlobId) -> Result<bool, BlobError> {
        Ok(self.packed.contains_key(id)? || self.path_of(id).exists())
    }

    fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        self.packed.remove(id)?;
        match fs::remove_file(self.path_of(id)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn list(&self, prefix: &[u8]) -> Box<dyn Iterator<Item = Result<BlobId, BlobError>> + '_> {
        let mut out = Vec::new();
        match self
            .list_files(&hex::encode(prefix), &mut out)
            .and_then(|()| {
                for k in self.packed.scan_prefix(prefix).keys() {
                    if let Ok(id) = <[u8; 32]>::try_from(k?.as_ref()) {
                        out.push(id);
                    }
                }
                Ok(())
            }) {
            Ok(()) => {
                out.sort();
                out.dedup();
                Box::new(out.into_iter().map(Ok))
            }
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn size(&self, id: &BlobId) -> Result<Option<u64>, BlobError> {
        Ok(self.location(id)?.map(|(_, _, len)| len))
    }

    fn outside_log(&self, len: usize) -> bool {
        // Packed blobs are indexed in sled after their staging mark: same log, same order.
        len >= PACK_BELOW
    }

    fn flush(&self) -> Result<(), BlobError> {
        // One syscall makes every blob written so far durable, however many there are.
        let dir = fs::File::open(&self.dir)?;
        rustix::fs::syncfs(&dir).map_err(std::io::Error::from)?;
        Ok(())
    }

    fn reclaim(&self) -> Result<u64, BlobError> {
        self.repack(REPACK_DEAD_SHARE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    #[test]
    fn file_blob_store_conforms() {
        let d = tempfile::tempdir().unwrap();
        let s = FileBlobStore::open(d.path(), &db()).unwrap();
        super::super::blob::conformance::run(&s).unwrap();
        super::super::blob::conformance::run_many(&s, 300).unwrap();
    }

    #[test]
    fn small_blobs_share_packs_and_survive_reopening() {
        let d = tempfile::tempdir().unwrap();
        let db = db();
        let s = FileBlobStore::open(d.path(), &db).unwrap();
        let blobs: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 1000 + i as usize]).collect();
        for b in &blobs {
            s.put(blake3::hash(b).as_bytes(), b).unwrap();
        }
        drop(s);
        let s = FileBlobStore::open(d.path(), &db).unwrap();
        for b in &blobs {
            assert_eq!(s.get(blake3::hash(b).as_bytes()).unwrap().unwrap(), *b);
        }
        assert_eq!(fs::read_dir(d.path().join("packs")).unwrap().count(), 1);
        // A reopened store starts a new pack rather than append after a possibly torn tail.
        s.put(&[1; 32], b"after").unwrap();
        assert_eq!(fs::read_dir(d.path().join("packs")).unwrap().count(), 2);
    }

    /// Packs mostly dead are rewritten: live blobs read back the same, a blob deleted
    /// meanwhile stays deleted, the room is given back, and a pack holding a damaged blob is
    /// kept whole rather than lose it.
    #[test]
    fn reclaim_rewrites_mostly_dead_packs_and_keeps_every_live_blob() {
        let d = tempfile::tempdir().unwrap();
        let db = db();
        let blobs: Vec<Vec<u8>> = (0..200u32)
            .map(|i| {
                let mut b = vec![(i % 251) as u8; 3000 + i as usize];
                b[..4].copy_from_slice(&i.to_be_bytes());
                b
            })
            .collect();
        let id = |b: &[u8]| *blake3::hash(b).as_bytes();
        // Two closed packs (a reopened store starts a new one): 0 holds 0..100, 1 holds
        // 100..200.
        for half in [0..100, 100..200] {
            let s = FileBlobStore::open(d.path(), &db).unwrap();
            for b in &blobs[half] {
                s.put(&id(b), b).unwrap();
            }
        }
        let s = FileBlobStore::open(d.path(), &db).unwrap();
        // Pack 0: 80% deleted; pack 1: 10% deleted (kept as is).
        for b in blobs[..80].iter().chain(&blobs[100..110]) {
            s.delete(&id(b)).unwrap();
        }
        let packs_bytes = || -> u64 {
            fs::read_dir(d.path().join("packs"))
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum()
        };
        let before = packs_bytes();
        let freed = s.reclaim().unwrap();
        assert!(!s.pack_path(0).exists(), "pack 0 rewritten and removed");
        assert!(s.pack_path(1).exists(), "pack 1 under the threshold stays");
        let dead0: u64 = blobs[..80].iter().map(|b| b.len() as u64).sum();
        assert_eq!(freed, dead0);
        assert_eq!(packs_bytes(), before - dead0);
        for (i, b) in blobs.iter().enumerate() {
            let got = s.get(&id(b)).unwrap();
            if i < 80 || (100..110).contains(&i) {
                assert!(got.is_none(), "blob {i} deleted");
            } else {
                assert_eq!(got.as_deref(), Some(&b[..]), "blob {i}");
            }
        }
        // Survives reopening: the index points at the new copies.
        drop(s);
        let s = FileBlobStore::open(d.path(), &db).unwrap();
        for b in &blobs[80..100] {
            assert_eq!(s.get(&id(b)).unwrap().as_deref(), Some(&b[..]));
        }
        // Pack 1 mostly dead now, one of its live blobs damaged: nothing moves.
        for b in &blobs[110..190] {
            s.delete(&id(b)).unwrap();
        }
        let (path, offset, _) = s.location(&id(&blobs[195])).unwrap().unwrap();
        let mut raw = fs::read(&path).unwrap();
        raw[offset as usize] ^= 1;
        fs::write(&path, raw).unwrap();
        let before = packs_bytes();
        assert_eq!(s.reclaim().unwrap(), 0);
        assert!(
            s.pack_path(1).exists(),
            "a pack with a damaged blob is kept"
        );
        assert_eq!(
            packs_bytes(),
            before,
            "nothing copied for a pack that is kept"
        );
        assert_eq!(
            s.get(&id(&blobs[190])).unwrap().as_deref(),
            Some(&blobs[190][..])
        );
    }

    /// Repacks running while blobs are written and deleted (as at start-up, when the
    /// compactor's first pass meets ingests): every blob put and not deleted reads back,
    /// before and after reopening.
    #[test]
    fn reclaim_while_writing_loses_nothing() {
        let d = tempfile::tempdir().unwrap();
        let db = db();
        let id = |b: &[u8]| *blake3::hash(b).as_bytes();
        let blob = |i: u32| {
            let mut b = vec![(i % 249) as u8; 2000 + (i as usize % 700)];
            b[..4].copy_from_slice(&i.to_be_bytes());
            b
        };
        // Closed packs, all dead (so that the compactor's own copies do not keep the pack
        // being written alive: that pack must look dead to it for a while).
        for round in 0..4u32 {
            let s = FileBlobStore::open(d.path(), &db).unwrap();
            for i in round * 100..round * 100 + 100 {
                s.put(&id(&blob(i)), &blob(i)).unwrap();
                s.delete(&id(&blob(i))).unwrap();
            }
        }
        let s = std::sync::Arc::new(FileBlobStore::open(d.path(), &db).unwrap());
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
        let writing = std::sync::Arc::new(AtomicBool::new(true));
        let passes = std::sync::Arc::new(AtomicUsize::new(0));
        let compactor = {
            let (s, writing, passes) = (s.clone(), writing.clone(), passes.clone());
            std::thread::spawn(move || {
                while writing.load(SeqCst) || passes.load(SeqCst) < 3 {
                    s.reclaim().unwrap();
                    passes.fetch_add(1, SeqCst);
                }
            })
        };
        let mut kept = Vec::new();
        // First blobs that go at once (duplicate or abandoned ingests: the pack being
        // written is all dead for a while), then blobs that stay, in that same pack.
        for i in 1000..1600u32 {
            if i == 1300 {
                // The pack being written is all dead now: let the compactor look at it.
                let seen = passes.load(SeqCst);
                while passes.load(SeqCst) < seen + 2 {
                    std::thread::yield_now();
                }
            }
            s.put(&id(&blob(i)), &blob(i)).unwrap();
            if i < 1300 || i % 3 == 0 {
                s.delete(&id(&blob(i))).unwrap();
            } else {
                kept.push(i);
            }
        }
        writing.store(false, SeqCst);
        compactor.join().unwrap();
        s.reclaim().unwrap();
        let check = |s: &FileBlobStore| {
            for &i in &kept {
                assert_eq!(
                    s.get(&id(&blob(i))).unwrap().as_deref(),
                    Some(&blob(i)[..]),
                    "blob {i}"
                );
            }
        };
        check(&s);
        drop(s);
        check(&FileBlobStore::open(d.path(), &db).unwrap());
    }

    #[test]
    fn interrupted_writes_are_swept_at_open() {
        let d = tempfile::tempdir().unwrap();
        let db = db();
        let s = FileBlobStore::open(d.path(), &db).unwrap();
        fs::write(d.path().join("tmp").join("half-written"), b"x").unwrap();
        drop(s);
        FileBlobStore::open(d.path(), &db).unwrap();
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }
}
