//! Reading records back: blobs are checked against their BLAKE3 address as they are loaded,
//! age authenticates every 64 KiB of plaintext, and a whole-file read ends by comparing the
//! file's BLAKE3 with the manifest. Wrong bytes are an error, never data.

use crate::archive::Archive;
use crate::error::{Error, Result};
use crate::keys::parse_identity;
use crate::store::{BlobStore, StoreError, Verified};
use archipel_proto::manifest::{BlobId, FileEntry};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;

/// Memory a reader may hold in blobs fetched ahead (the batch being read and the next one
/// in flight), when its store fetches in parallel (S3).
const READ_AHEAD_BYTES: u64 = 32 << 20;

/// One fetched blob: its bytes (unchecked), absent, or the store's error.
type FetchedBlob = std::result::Result<Option<Vec<u8>>, crate::store::BlobError>;
type Fetched = Vec<FetchedBlob>;

/// The ciphertext of one file, read blob by blob, seekable. A sequential read from a store
/// that fetches blobs in parallel (S3) fetches a batch ahead while the current one is
/// decrypted: at most `READ_AHEAD_BYTES` of blobs per reader.
pub struct BlobSource {
    blobs: Arc<dyn BlobStore>,
    ids: Vec<BlobId>,
    blob_size: u64,
    len: u64,
    pos: u64,
    current: Option<(usize, Vec<u8>)>,
    record: String,
    /// Blobs per batch fetched ahead (1: no read-ahead).
    batch: usize,
    /// Fetched and not read yet: the blobs from this index on.
    ready: Option<(usize, std::collections::VecDeque<FetchedBlob>)>,
    /// The next batch, being fetched: its first index and the fetching thread.
    next: Option<(usize, std::thread::JoinHandle<Fetched>)>,
}

impl BlobSource {
    pub fn new(blobs: Arc<dyn BlobStore>, file: &FileEntry, record: &str) -> Self {
        let blob_size = u64::from(file.blob_size.max(1));
        // Half the budget for the batch being read, half for the one in flight.
        let batch =
            (READ_AHEAD_BYTES / 2 / blob_size).clamp(1, blobs.read_ahead().max(1) as u64) as usize;
        BlobSource {
            blobs,
            ids: file.blobs.clone(),
            blob_size,
            len: file.cipher_len,
            pos: 0,
            current: None,
            record: record.to_string(),
            batch,
            ready: None,
            next: None,
        }
    }

    /// Starts fetching the batch from `start` in the background.
    fn prefetch(&mut self, start: usize) {
        if self.batch <= 1 || start >= self.ids.len() || self.next.is_some() {
            return;
        }
        let end = (start + self.batch).min(self.ids.len());
        let ids = self.ids[start..end].to_vec();
        let blobs = self.blobs.clone();
        if let Ok(h) = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || blobs.get_many(&ids))
        {
            self.next = Some((start, h));
        }
    }

    /// The bytes of blob `index` as fetched (not yet checked).
    fn fetch(&mut self, index: usize, id: &BlobId) -> FetchedBlob {
        let sequential = self.current.as_ref().is_some_and(|(i, _)| i + 1 == index)
            || (index == 0 && self.current.is_none());
        if self.batch <= 1 || !sequential {
            // A seek elsewhere (a byte range): one blob, and what was fetched ahead is dropped.
            self.ready = None;
            self.next = None;
            return self.blobs.get(id);
        }
        loop {
            if let Some((start, q)) = &mut self.ready {
                if *start == index
                    && let Some(b) = q.pop_front()
                {
                    *start += 1;
                    if q.is_empty() {
                        self.ready = None;
                    }
                    return b;
                }
                self.ready = None;
            }
            match self.next.take() {
                Some((start, h)) if start == index => {
                    let got = h.join().map_err(|_| {
                        crate::store::BlobError::Backend("the read-ahead thread panicked".into())
                    })?;
                    self.ready = Some((start, got.into()));
                    self.prefetch(start + self.batch);
                }
                _ => {
                    // The first batch: fetched now; the next one starts behind it.
                    let end = (index + self.batch).min(self.ids.len());
                    let got = self.blobs.get_many(&self.ids[index..end]);
                    self.ready = Some((index, got.into()));
                    self.prefetch(end);
                }
            }
        }
    }

    fn load(&mut self, index: usize) -> std::io::Result<&[u8]> {
        if self.current.as_ref().map(|(i, _)| *i) != Some(index) {
            let id = *self.ids.get(index).ok_or_else(|| {
                std::io::Error::other(StoreError::Damaged {
                    record: self.record.clone(),
                    why: format!("ciphertext offset beyond its {} blobs", self.ids.len()),
                })
            })?;
            let fetched = self.fetch(index, &id);
            let verified = fetched.map(|b| match b {
                None => Verified::Missing,
                Some(b) if blake3::hash(&b).as_bytes() == &id => Verified::Ok(b),
                Some(_) => Verified::Corrupt,
            });
            let blob = match verified {
                Ok(Verified::Ok(b)) => b,
                Ok(Verified::Missing) => {
                    return Err(std::io::Error::other(StoreError::Missing {
                        record: self.record.clone(),
                        blob: hex::encode(id),
                    }));
                }
                Ok(Verified::Corrupt) => {
                    return Err(std::io::Error::other(StoreError::Corrupt {
                        record: self.record.clone(),
                        blob: hex::encode(id),
                    }));
                }
                Err(e) => return Err(std::io::Error::other(StoreError::from(e))),
            };
            self.current = Some((index, blob));
        }
        Ok(self
            .current
            .as_ref()
            .map(|(_, b)| b.as_slice())
            .unwrap_or(&[]))
    }
}

impl Read for BlobSource {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let index = (self.pos / self.blob_size) as usize;
        let offset = (self.pos % self.blob_size) as usize;
        let blob = self.load(index)?;
        if offset >= blob.len() {
            return Err(std::io::Error::other(StoreError::Damaged {
                record: self.record.clone(),
                why: "a blob is shorter than the manifest says".into(),
            }));
        }
        let n = (blob.len() - offset).min(buf.len());
        buf[..n].copy_from_slice(&blob[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobSource {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// Turns an I/O error from the read stack back into the store error it carries.
pub fn io_to_error(e: std::io::Error, record: &str, file: &str) -> Error {
    let kind = e.kind();
    match e.into_inner().map(|inner| inner.downcast::<StoreError>()) {
        Some(Ok(store)) => Error::Store(*store),
        Some(Err(other)) => Error::Store(StoreError::DigestMismatch {
            record: record.to_string(),
            file: file.to_string(),
            why: format!("decryption failed: {other}"),
        }),
        None => Error::Store(StoreError::DigestMismatch {
            record: record.to_string(),
            file: file.to_string(),
            why: format!("decryption failed: {kind}"),
        }),
    }
}

/// A decrypting, seekable reader of one file's plaintext.
pub fn open_file(
    archive: &Archive,
    file: &FileEntry,
    record: &str,
) -> Result<age::stream::StreamReader<BufReader<BlobSource>>> {
    open_file_from(archive.store.blobs.clone(), file, record)
}

/// [`open_file`] over any blob store (a holder reads a released record from the origin's
/// namespace).
pub fn open_file_from(
    blobs: std::sync::Arc<dyn crate::store::BlobStore>,
    file: &FileEntry,
    record: &str,
) -> Result<age::stream::StreamReader<BufReader<BlobSource>>> {
    let source = BlobSource::new(blobs, file, record);
    let key = parse_identity(&file.file_key, "file key")?;
    let dec = age::Decryptor::new_buffered(BufReader::with_capacity(256 * 1024, source)).map_err(
        |e| StoreError::DigestMismatch {
            record: record.to_string(),
            file: file.name.clone(),
            why: format!("not a readable age stream: {e}"),
        },
    )?;
    dec.decrypt(std::iter::once(&key as &dyn age::Identity))
        .map_err(|e| {
            Error::Store(StoreError::DigestMismatch {
                record: record.to_string(),
                file: file.name.clone(),
                why: format!("cannot decrypt: {e}"),
            })
        })
}

/// Reads `[offset, offset+length)` of a file into `sink`, in chunks of `chunk` bytes. A read
/// of the whole file also checks the file's BLAKE3 at the end.
pub fn read_range(
    archive: &Archive,
    file: &FileEntry,
    record: &str,
    offset: u64,
    length: u64,
    chunk: usize,
    sink: impl FnMut(Vec<u8>) -> bool,
) -> Result<()> {
    read_range_from(
        archive.store.blobs.clone(),
        file,
        record,
        offset,
        length,
        chunk,
        sink,
    )
}

/// [`read_range`] over any blob store.
pub fn read_range_from(
    blobs: std::sync::Arc<dyn crate::store::BlobStore>,
    file: &FileEntry,
    record: &str,
    offset: u64,
    length: u64,
    chunk: usize,
    mut sink: impl FnMut(Vec<u8>) -> bool,
) -> Result<()> {
    if offset > file.size || length > file.size - offset {
        return Err(StoreError::Range {
            offset,
            length,
            size: file.size,
        }
        .into());
    }
    let whole = offset == 0 && length == file.size;
    let mut r = open_file_from(blobs, file, record)?;
    if offset > 0 {
        r.seek(SeekFrom::Start(offset))
            .map_err(|e| io_to_error(e, record, &file.name))?;
    }
    let mut hasher = whole.then(blake3::Hasher::new);
    let mut left = length;
    while left > 0 {
        let mut buf = vec![0u8; chunk.min(left as usize)];
        let mut filled = 0;
        while filled < buf.len() {
            let n = r
                .read(&mut buf[filled..])
                .map_err(|e| io_to_error(e, record, &file.name))?;
            if n == 0 {
                return Err(StoreError::DigestMismatch {
                    record: record.to_string(),
                    file: file.name.clone(),
                    why: format!("ended {left} bytes early"),
                }
                .into());
            }
            filled += n;
        }
        left -= buf.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&buf);
        }
        if !sink(buf) {
            return Ok(()); // the reader went away
        }
    }
    if let Some(h) = hasher
        && h.finalize().as_bytes() != &file.blake3
    {
        return Err(StoreError::DigestMismatch {
            record: record.to_string(),
            file: file.name.clone(),
            why: "BLAKE3 of the content differs from the manifest".into(),
        }
        .into());
    }
    Ok(())
}
