//! The gateway's search index: the metadata of every record that is, or may become, visible
//! to the public, decrypted once and kept in memory, so that a search does not open every
//! catalog entry.
//!
//! It is rebuilt (all at once) when the store's generation counter moves, i.e. after an
//! ingest or a metadata change, at the next search. Visibility is not decided here: every
//! search filters the entries with `access::access` for today's date, so a record that
//! opens at midnight appears without a rebuild.
//!
//! Memory: per record, its metadata text twice (as written and folded for matching) plus
//! its files' names, media types and digests (about 150 bytes a file) and about 400 bytes
//! of overhead; the build logs its estimate. For 100,000 records of 1 KiB of metadata and
//! one file each, about 250 MiB. Records that can never be visible without an edit (a
//! `never` or unset category with private metadata) are left out.

use super::access::{self, Access};
use super::query::{SearchQuery, fold};
use crate::archive::Archive;
use crate::error::Result;
use archipel_proto::manifest::{Manifest, Metadata};
use std::sync::{Arc, RwLock};
use time::Date;

/// A file as the public may see it (no key, no blob).
#[derive(Debug, Clone)]
pub struct PublicFile {
    pub name: String,
    pub size: u64,
    pub media_type: String,
    pub blake3: [u8; 32],
    pub sha512: [u8; 64],
}

/// A record's public facts.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub metadata: Metadata,
    pub files: Vec<PublicFile>,
    pub ingested_at: i64,
    /// Folded title, description and keywords, space-separated.
    haystack: String,
}

impl Entry {
    pub fn from_manifest(m: &Manifest) -> Self {
        let md = &m.metadata;
        let mut text = format!("{} {}", md.title, md.description);
        for k in &md.keywords {
            text.push(' ');
            text.push_str(k);
        }
        Entry {
            id: m.record_id.clone(),
            metadata: md.clone(),
            files: m
                .files
                .iter()
                .map(|f| PublicFile {
                    name: f.name.clone(),
                    size: f.size,
                    media_type: f.media_type.clone(),
                    blake3: f.blake3,
                    sha512: f.sha512,
                })
                .collect(),
            ingested_at: m.ingested_at,
            haystack: format!(
                " {} ",
                fold(&text).split_whitespace().collect::<Vec<_>>().join(" ")
            ),
        }
    }

    fn approx_bytes(&self) -> usize {
        let md = &self.metadata;
        let text = md.title.len()
            + md.description.len()
            + md.producer.len()
            + md.record_type.len()
            + md.keywords.iter().map(|k| k.len() + 24).sum::<usize>()
            + md.licence.len()
            + 64;
        let files: usize = self
            .files
            .iter()
            .map(|f| f.name.len() + f.media_type.len() + 150)
            .sum();
        text + self.haystack.len() + files + 400
    }

    /// Every word of the search is in the title, description or keywords (as a prefix of a
    /// word there: "délib" finds "délibérations").
    fn matches(&self, q: &SearchQuery) -> bool {
        let md = &self.metadata;
        q.words
            .iter()
            .all(|w| self.haystack.contains(&format!(" {w}")))
            && (q.producer.is_empty() || md.producer == q.producer)
            && (q.record_type.is_empty() || md.record_type == q.record_type)
            // Date ranges that meet [from, to]; undated records never match a date filter.
            && (q.from.is_empty() || (!md.date_to.is_empty() && md.date_to >= q.from))
            && (q.to.is_empty() || (!md.date_from.is_empty() && md.date_from <= q.to))
    }
}

/// One build of the index.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store generation it was built at (`None`: never built).
    generation: Option<u64>,
    /// In record ID order (ingestion order).
    pub entries: Vec<Entry>,
    pub approx_bytes: usize,
}

/// A page of search results.
#[derive(Debug)]
pub struct Results<'a> {
    pub total: usize,
    pub page: usize,
    pub pages: usize,
    pub entries: Vec<(&'a Entry, Access)>,
}

impl Snapshot {
    /// The visible entries matching `q`, page `q.page`.
    pub fn search(&self, q: &SearchQuery, today: Date, page_size: usize) -> Results<'_> {
        let mut total = 0;
        let first = (q.page - 1).saturating_mul(page_size);
        let mut entries = Vec::new();
        for e in &self.entries {
            let a = access::access(&e.metadata, today);
            if a == Access::Hidden || !e.matches(q) {
                continue;
            }
            if total >= first && entries.len() < page_size {
                entries.push((e, a));
            }
            total += 1;
        }
        Results {
            total,
            page: q.page,
            pages: total.div_ceil(page_size).max(1),
            entries,
        }
    }

    /// Distinct producers and types among visible records, sorted (the search form's
    /// choices).
    pub fn facets(&self, today: Date) -> (Vec<String>, Vec<String>) {
        let mut producers = std::collections::BTreeSet::new();
        let mut types = std::collections::BTreeSet::new();
        for e in &self.entries {
            if access::access(&e.metadata, today) == Access::Hidden {
                continue;
            }
            if !e.metadata.producer.is_empty() {
                producers.insert(e.metadata.producer.clone());
            }
            if !e.metadata.record_type.is_empty() {
                types.insert(e.metadata.record_type.clone());
            }
        }
        (producers.into_iter().collect(), types.into_iter().collect())
    }
}

/// The index: the latest snapshot, and a lock so that one rebuild runs at a time.
#[derive(Debug, Default)]
pub struct SearchIndex {
    current: RwLock<Arc<Snapshot>>,
    building: tokio::sync::Mutex<()>,
}

impl SearchIndex {
    fn current(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The index as of the store's current generation, rebuilt first if records changed.
    pub async fn snapshot(&self, archive: &Arc<Archive>) -> Result<Arc<Snapshot>> {
        let now = archive.store.generation();
        let s = self.current();
        if s.generation == Some(now) {
            return Ok(s);
        }
        let _building = self.building.lock().await;
        // Someone else may have rebuilt it while we waited.
        let s = self.current();
        let now = archive.store.generation();
        if s.generation == Some(now) {
            return Ok(s);
        }
        let a = archive.clone();
        let built = Arc::new(super::blocking(move || build(&a, now)).await?);
        tracing::info!(
            records = built.entries.len(),
            approx_mib = built.approx_bytes / (1 << 20),
            "gateway search index built"
        );
        match self.current.write() {
            Ok(mut c) => *c = built.clone(),
            Err(poisoned) => *poisoned.into_inner() = built.clone(),
        }
        Ok(built)
    }
}

/// Reads every catalog entry. `generation` is read before the scan, so a change during the
/// scan makes the next search rebuild again.
fn build(archive: &Archive, generation: u64) -> Result<Snapshot> {
    let today = crate::clock::today();
    let mut entries = Vec::new();
    let mut approx_bytes = 0;
    let mut after = String::new();
    loop {
        let (page, next) = archive.list(&Default::default(), crate::archive::MAX_PAGE, &after)?;
        for m in &page {
            if access::may_become_visible(&m.metadata, today) {
                let e = Entry::from_manifest(m);
                approx_bytes += e.approx_bytes();
                entries.push(e);
            }
        }
        if next.is_empty() {
            break;
        }
        after = next;
    }
    // Records other territories released to this node: served here when their origin is
    // down.
    for r in crate::federation::release::released(archive)? {
        if access::may_become_visible(&r.manifest.metadata, today) {
            let e = Entry::from_manifest(&r.manifest);
            approx_bytes += e.approx_bytes();
            entries.push(e);
        }
    }
    Ok(Snapshot {
        generation: Some(generation),
        entries,
        approx_bytes,
    })
}
