//! A small in-memory cache of decrypted small files, for downloads.
//!
//! Serving a small file from the store costs an X25519 unwrap of its file key, a blob read
//! and a blocking-thread hop per request, which dominates for 10 KiB files; nginx serves the
//! same file from the page cache. Files of at most [`MAX_FILE`] bytes are kept here once
//! read and verified, up to [`BUDGET`] bytes in all (oldest out first).
//!
//! Only what the gateway may serve ends up here: a file is cached after the access check
//! let it through, and every request checks access again before looking here. Entries are
//! keyed by the file's BLAKE3 (the plaintext, so a deduplicated file is cached once) and
//! the whole cache is dropped whenever a record of the archive changes (the store's
//! generation moves: a metadata change, a new record, a destruction), so no plaintext of a
//! changed or destroyed record outlives the change in memory.

use axum::body::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Largest file kept, in bytes.
pub const MAX_FILE: u64 = 256 * 1024;
/// Most bytes kept in all.
pub const BUDGET: usize = 32 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct FileCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    bytes: usize,
    files: HashMap<[u8; 32], Bytes>,
    order: VecDeque<[u8; 32]>,
}

impl Inner {
    /// Empties the cache if the archive changed since it was filled.
    fn at(&mut self, generation: u64) {
        if self.generation != generation {
            *self = Inner {
                generation,
                ..Inner::default()
            };
        }
    }
}

impl FileCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic mid-update can at worst leave a size count off: the cache is advisory.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, generation: u64, blake3: &[u8; 32]) -> Option<Bytes> {
        let mut inner = self.lock();
        inner.at(generation);
        inner.files.get(blake3).cloned()
    }

    pub fn put(&self, generation: u64, blake3: [u8; 32], bytes: Bytes) {
        if bytes.len() as u64 > MAX_FILE {
            return;
        }
        let mut inner = self.lock();
        inner.at(generation);
        if inner.files.contains_key(&blake3) {
            return;
        }
        while inner.bytes + bytes.len() > BUDGET {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.files.remove(&old) {
                inner.bytes -= b.len();
            }
        }
        inner.bytes += bytes.len();
        inner.order.push_back(blake3);
        inner.files.insert(blake3, bytes);
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_small_files_within_budget_and_forgets_on_change() {
        let c = FileCache::default();
        c.put(1, [1; 32], Bytes::from_static(b"abc"));
        assert_eq!(c.get(1, &[1; 32]).as_deref(), Some(&b"abc"[..]));
        // Too large: never kept.
        c.put(1, [2; 32], Bytes::from(vec![0; MAX_FILE as usize + 1]));
        assert!(c.get(1, &[2; 32]).is_none());
        // The archive changed: everything goes.
        assert!(c.get(2, &[1; 32]).is_none());
        assert_eq!(c.bytes(), 0);
        // Over budget: the oldest go first, the total stays bounded.
        let n = BUDGET / MAX_FILE as usize + 3;
        for i in 0..n {
            c.put(2, [i as u8; 32], Bytes::from(vec![0; MAX_FILE as usize]));
        }
        assert!(c.bytes() <= BUDGET);
        assert!(c.get(2, &[0; 32]).is_none(), "the oldest was evicted");
        assert!(c.get(2, &[(n - 1) as u8; 32]).is_some());
    }
}
