//! Anti-entropy by range fingerprints (issue 4, point 6).
//!
//! Each origin–holder pair periodically checks that what the holder keeps for the origin
//! (holder side: `holding`'s index, one prefix per origin) is what the origin believes it
//! keeps (origin side: `custody`'s index of receipts, one prefix per holder). Both are sets
//! of (record ID, envelope digest) kept in sled under a prefix: a [`SledRangeSet`].
//!
//! The traffic grows with the difference, not with the size of the sets: the origin asks
//! for fingerprints (count and XOR of BLAKE3(record ID ‖ digest)) of ranges of sorted IDs,
//! compares them with its own, and splits only the ranges that differ — into ~16 sub-ranges
//! at quantiles of its *local* keys, all the sub-ranges of one level asked in one request —
//! until a range is small on both sides, where it asks for the items themselves.
//!
//! What this is not: a proof of storage (a holder can answer fingerprints of what it claims
//! to hold; `challenge` checks the bytes), nor a snapshot (records added or removed on
//! either side while it runs may show up as differences, and are settled on the next run).
//!
//! Holder side: [`serve_fingerprints`], [`serve_items`] (what `service` calls). Origin side:
//! [`reconcile`] against any [`RemoteRanges`] — a peer's `FederationClient`, or
//! [`InProcess`] for tests and benchmarks.

use archipel_proto::v1::federation_client::FederationClient;
use archipel_proto::v1::{
    IdRange, RangeFingerprint, RangeFingerprintsRequest, RangeFingerprintsResponse, RangeItem,
    RangeItemsRequest, RangeItemsResponse,
};
use prost::Message;
use std::future::Future;
use std::ops::Bound;

/// Most ranges one `RangeFingerprints` request may ask; the origin splits bigger levels into
/// several calls. The ranges must also be sorted and disjoint, so that a request costs the
/// holder at most one pass over its index whatever the count; the count bounds the answer
/// (~40 bytes a range, ~40 KiB) and the seeks.
pub const MAX_RANGES_PER_REQUEST: usize = 1024;
/// Most items one `RangeItems` page carries (also the default when the request says 0).
pub const MAX_ITEMS_PER_PAGE: u32 = 1000;
/// How many sub-ranges a differing range is split into.
pub const FANOUT: usize = 16;
/// A differing range with at most this many items on both sides is small enough to list.
pub const LEAF_ITEMS: u64 = 16;
/// Small differing ranges are listed (one round trip each) when a level has at most this
/// many; beyond, they are split further instead, because a level of fingerprints is one
/// round trip for all of its ranges while listings are one round trip each.
const LIST_DIRECTLY: usize = 4;
/// Levels after which the comparison gives up. Each level at least divides the local items
/// of a range, so an honest run needs about log16(n) + 3; this only bounds a run whose local
/// set keeps changing under it.
const MAX_LEVELS: usize = 64;
/// gRPC length-prefixed message framing: 1 byte compressed flag + 4 bytes length.
const GRPC_FRAME: u64 = 5;
const DIGEST_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("anti-entropy storage: {0}")]
    Storage(String),
    #[error("too many ranges in one request: {asked} asked, at most {max}; split the request")]
    TooManyRanges { asked: usize, max: usize },
    #[error("invalid range: {0}")]
    InvalidRange(String),
    /// The peer refused or could not be reached.
    #[error("peer answered {code:?}: {message}")]
    Remote { code: tonic::Code, message: String },
    /// The peer's answer does not fit the request (wrong number of fingerprints, items out
    /// of order or outside the range, ...).
    #[error("peer's answer is malformed: {0}")]
    Protocol(String),
}

impl ReconcileError {
    /// The gRPC code for this error (the one mapping in error.rs asks).
    pub fn code(&self) -> tonic::Code {
        match self {
            ReconcileError::Storage(_) => tonic::Code::Internal,
            ReconcileError::TooManyRanges { .. } | ReconcileError::InvalidRange(_) => {
                tonic::Code::InvalidArgument
            }
            // Both are about another node: this one is fine, the exchange is not.
            ReconcileError::Remote { .. } | ReconcileError::Protocol(_) => tonic::Code::Unavailable,
        }
    }
}

impl From<sled::Error> for ReconcileError {
    fn from(e: sled::Error) -> Self {
        ReconcileError::Storage(e.to_string())
    }
}

impl From<tonic::Status> for ReconcileError {
    fn from(s: tonic::Status) -> Self {
        ReconcileError::Remote {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// A set of (record ID, envelope digest) items kept in a sled tree under a key prefix:
/// key = prefix ‖ record ID (ASCII), value = the 32-byte BLAKE3 of the envelope, possibly
/// followed by other bytes (custody appends the stored size), which are ignored here.
#[derive(Debug, Clone)]
pub struct SledRangeSet {
    pub tree: sled::Tree,
    pub prefix: Vec<u8>,
}

type Item = (String, [u8; DIGEST_LEN]);

/// Count and XOR of BLAKE3(record ID ‖ digest) over a range's items. XOR makes it
/// order-free and lets one pass compute many adjacent ranges; the digest's fixed length
/// at the end makes the hashed concatenation unambiguous whatever the ID's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Fingerprint {
    count: u64,
    xor: [u8; 32],
}

impl Fingerprint {
    fn add(&mut self, id: &str, digest: &[u8; DIGEST_LEN]) {
        let mut h = blake3::Hasher::new();
        h.update(id.as_bytes());
        h.update(digest);
        for (a, b) in self.xor.iter_mut().zip(h.finalize().as_bytes()) {
            *a ^= b;
        }
        self.count += 1;
    }

    fn to_wire(self) -> RangeFingerprint {
        RangeFingerprint {
            count: self.count,
            fingerprint: self.xor.to_vec(),
        }
    }

    fn from_wire(f: &RangeFingerprint) -> Result<Self, ReconcileError> {
        let xor = <[u8; 32]>::try_from(f.fingerprint.as_slice()).map_err(|_| {
            ReconcileError::Protocol(format!(
                "fingerprint of {} bytes, 32 expected",
                f.fingerprint.len()
            ))
        })?;
        Ok(Fingerprint {
            count: f.count,
            xor,
        })
    }
}

fn whole() -> IdRange {
    IdRange {
        start: String::new(),
        end: String::new(),
    }
}

fn in_range(id: &str, r: &IdRange) -> bool {
    id >= r.start.as_str() && (r.end.is_empty() || id < r.end.as_str())
}

/// Empty or inverted ranges hold nothing; inverted ones are refused by the holder (a
/// correct origin never sends one) and skipped on the local side.
fn is_empty_range(r: &IdRange) -> bool {
    !r.end.is_empty() && r.end <= r.start
}

fn check_range(r: &IdRange) -> Result<(), ReconcileError> {
    if !r.end.is_empty() && r.end < r.start {
        return Err(ReconcileError::InvalidRange(format!(
            "end {:?} before start {:?}",
            r.end, r.start
        )));
    }
    Ok(())
}

/// The smallest string after `id`: where a paged listing continues.
pub fn after(id: &str) -> String {
    let mut s = String::with_capacity(id.len() + 1);
    s.push_str(id);
    s.push('\0');
    s
}

/// Whether `r` is exactly one ID, [k, k‖"\0"): no other string lies between the two.
fn is_point(r: &IdRange) -> bool {
    r.end.len() == r.start.len() + 1 && r.end.ends_with('\0') && r.end.starts_with(&r.start)
}

/// The shortest string `s` with `prev < s <= next` (for `prev < next`): sub-range bounds
/// need only separate the local keys around them, and short bounds keep requests small
/// (random ULIDs part after 2 or 3 characters, not 26).
fn separator(prev: &str, next: &str) -> String {
    let lcp = prev
        .bytes()
        .zip(next.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    // One byte past the common prefix, widened to a whole character: any string starting
    // with next[..=lcp] is above prev, and a prefix of next is at most next.
    let mut end = (lcp + 1).min(next.len());
    while !next.is_char_boundary(end) {
        end += 1;
    }
    next[..end].to_string()
}

impl SledRangeSet {
    fn bounds(&self, r: &IdRange) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let key = |id: &str| {
            let mut k = Vec::with_capacity(self.prefix.len() + id.len());
            k.extend_from_slice(&self.prefix);
            k.extend_from_slice(id.as_bytes());
            k
        };
        let upper = if r.end.is_empty() {
            // Above every key with this prefix: the prefix with its last byte incremented
            // (after dropping trailing 0xff bytes); no such bound for an empty or all-0xff
            // prefix, which covers the rest of the tree.
            let mut p = self.prefix.clone();
            while p.last() == Some(&0xff) {
                p.pop();
            }
            match p.last_mut() {
                Some(last) => {
                    *last += 1;
                    Bound::Excluded(p)
                }
                None => Bound::Unbounded,
            }
        } else {
            Bound::Excluded(key(&r.end))
        };
        (Bound::Included(key(&r.start)), upper)
    }

    /// The items of `r`, in order. Blocking (sled).
    fn iter(&self, r: &IdRange) -> impl Iterator<Item = Result<Item, ReconcileError>> + '_ {
        // sled refuses inverted bounds; an empty range has no items anyway.
        let iter = (!is_empty_range(r)).then(|| self.tree.range(self.bounds(r)));
        let n = self.prefix.len();
        iter.into_iter().flatten().map(move |kv| {
            let (k, v) = kv?;
            let id = k
                .get(n..)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| {
                    ReconcileError::Storage(format!("record ID not UTF-8 in key {k:?}"))
                })?
                .to_string();
            let digest = v
                .get(..DIGEST_LEN)
                .and_then(|d| <[u8; DIGEST_LEN]>::try_from(d).ok())
                .ok_or_else(|| {
                    ReconcileError::Storage(format!(
                        "value of {id} has {} bytes, at least 32 expected",
                        v.len()
                    ))
                })?;
            Ok((id, digest))
        })
    }

    fn fingerprint(&self, r: &IdRange) -> Result<Fingerprint, ReconcileError> {
        let mut f = Fingerprint::default();
        for item in self.iter(r) {
            let (id, digest) = item?;
            f.add(&id, &digest);
        }
        Ok(f)
    }

    fn items(&self, r: &IdRange) -> Result<Vec<Item>, ReconcileError> {
        self.iter(r).collect()
    }

    /// Splits `r` (holding about `n` local items) into sub-ranges covering it, with their
    /// local fingerprints, in one pass: at most [`FANOUT`] parts cut at quantiles of the
    /// local keys, or, for a single local item k, [start, k), [k, k‖"\0"), [k‖"\0", end)
    /// so that k is compared on its own. Every part holds fewer local items than `r` or is a
    /// single ID, so splitting always progresses.
    fn split(&self, r: &IdRange, n: u64) -> Result<Vec<(IdRange, Fingerprint)>, ReconcileError> {
        if n <= 1 {
            let Some(first) = self.iter(r).next() else {
                // Emptied meanwhile: compare it as a range with nothing local.
                return Ok(vec![(r.clone(), Fingerprint::default())]);
            };
            let (k, digest) = first?;
            let mut one = Fingerprint::default();
            one.add(&k, &digest);
            let point_end = after(&k);
            let mut parts = Vec::with_capacity(3);
            if r.start < k {
                let below = IdRange {
                    start: r.start.clone(),
                    end: k.clone(),
                };
                // Recomputed rather than assumed empty: the set may have changed since `n`.
                let f = self.fingerprint(&below)?;
                parts.push((below, f));
            }
            let above = IdRange {
                start: point_end.clone(),
                end: r.end.clone(),
            };
            parts.push((
                IdRange {
                    start: k,
                    end: point_end,
                },
                one,
            ));
            if !is_empty_range(&above) {
                let f = self.fingerprint(&above)?;
                parts.push((above, f));
            }
            return Ok(parts);
        }
        let fanout = n.min(FANOUT as u64);
        // (first key of the part, fingerprint); the first part starts at r.start.
        let mut parts: Vec<(String, Fingerprint)> = Vec::with_capacity(fanout as usize);
        let mut prev: Option<String> = None;
        for (i, item) in self.iter(r).enumerate() {
            let (id, digest) = item?;
            // Which part the i-th item falls in; clamped, as the set may have grown since `n`.
            let part = ((i as u64).saturating_mul(fanout) / n).min(fanout - 1) as usize;
            if parts.len() <= part {
                let start = match &prev {
                    None => r.start.clone(),
                    Some(p) => separator(p, &id),
                };
                parts.push((start, Fingerprint::default()));
            }
            if let Some((_, f)) = parts.last_mut() {
                f.add(&id, &digest);
            }
            prev = Some(id);
        }
        if parts.is_empty() {
            return Ok(vec![(r.clone(), Fingerprint::default())]);
        }
        let ends: Vec<String> = parts
            .iter()
            .skip(1)
            .map(|(s, _)| s.clone())
            .chain(std::iter::once(r.end.clone()))
            .collect();
        Ok(parts
            .into_iter()
            .zip(ends)
            .map(|((start, f), end)| (IdRange { start, end }, f))
            .collect())
    }
}

/// Holder side: one fingerprint (count and XOR of BLAKE3(record ID ‖ digest) over the items
/// with start <= ID < end; an empty end is unbounded) per requested range, at most
/// [`MAX_RANGES_PER_REQUEST`] ranges, sorted and disjoint (each range ends at or before the
/// next one's start). Blocking (sled): call it off the async threads.
pub fn serve_fingerprints(
    set: &SledRangeSet,
    request: &RangeFingerprintsRequest,
) -> Result<RangeFingerprintsResponse, ReconcileError> {
    if request.ranges.len() > MAX_RANGES_PER_REQUEST {
        return Err(ReconcileError::TooManyRanges {
            asked: request.ranges.len(),
            max: MAX_RANGES_PER_REQUEST,
        });
    }
    for pair in request.ranges.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.end.is_empty() || a.end > b.start {
            return Err(ReconcileError::InvalidRange(format!(
                "ranges must be sorted and disjoint: [{:?}, {:?}) then [{:?}, {:?})",
                a.start, a.end, b.start, b.end
            )));
        }
    }
    let fingerprints = request
        .ranges
        .iter()
        .map(|r| {
            check_range(r)?;
            Ok(set.fingerprint(r)?.to_wire())
        })
        .collect::<Result<_, ReconcileError>>()?;
    Ok(RangeFingerprintsResponse { fingerprints })
}

/// Holder side: the items of one range in ID order, at most `limit` of them (0 or more than
/// [`MAX_ITEMS_PER_PAGE`] means [`MAX_ITEMS_PER_PAGE`]), `more` set when the range holds
/// more. To continue, ask again with `start` = [`after`]`(last ID)` (the last ID followed by
/// "\0", the smallest string above it) and the same `end`. Blocking (sled).
pub fn serve_items(
    set: &SledRangeSet,
    request: &RangeItemsRequest,
) -> Result<RangeItemsResponse, ReconcileError> {
    let range = request
        .range
        .as_ref()
        .ok_or_else(|| ReconcileError::InvalidRange("no range".to_string()))?;
    check_range(range)?;
    let limit = match request.limit {
        0 => MAX_ITEMS_PER_PAGE,
        l => l.min(MAX_ITEMS_PER_PAGE),
    } as usize;
    let mut items = Vec::new();
    let mut more = false;
    for item in set.iter(range) {
        let (record_id, digest) = item?;
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(RangeItem {
            record_id,
            envelope_digest: digest.to_vec(),
        });
    }
    Ok(RangeItemsResponse { items, more })
}

/// The holder as the origin sees it: the two anti-entropy calls.
pub trait RemoteRanges: Send {
    /// One fingerprint per range, in order (at most [`MAX_RANGES_PER_REQUEST`] ranges).
    fn fingerprints(
        &mut self,
        ranges: Vec<IdRange>,
    ) -> impl Future<Output = Result<RangeFingerprintsResponse, ReconcileError>> + Send;
    /// One page of a range's items (see [`serve_items`]).
    fn items(
        &mut self,
        range: IdRange,
        limit: u32,
    ) -> impl Future<Output = Result<RangeItemsResponse, ReconcileError>> + Send;
}

impl RemoteRanges for FederationClient<tonic::transport::Channel> {
    async fn fingerprints(
        &mut self,
        ranges: Vec<IdRange>,
    ) -> Result<RangeFingerprintsResponse, ReconcileError> {
        Ok(self
            .range_fingerprints(RangeFingerprintsRequest { ranges })
            .await?
            .into_inner())
    }

    async fn items(
        &mut self,
        range: IdRange,
        limit: u32,
    ) -> Result<RangeItemsResponse, ReconcileError> {
        Ok(self
            .range_items(RangeItemsRequest {
                range: Some(range),
                limit,
            })
            .await?
            .into_inner())
    }
}

/// A "remote" that is a set in this process, answering through [`serve_fingerprints`] and
/// [`serve_items`] exactly as a holder would (for tests, benchmarks and local checks). Its
/// calls block on sled inside the future: fine for those uses, not for a busy server.
#[derive(Debug, Clone)]
pub struct InProcess(pub SledRangeSet);

impl RemoteRanges for InProcess {
    async fn fingerprints(
        &mut self,
        ranges: Vec<IdRange>,
    ) -> Result<RangeFingerprintsResponse, ReconcileError> {
        serve_fingerprints(&self.0, &RangeFingerprintsRequest { ranges })
    }

    async fn items(
        &mut self,
        range: IdRange,
        limit: u32,
    ) -> Result<RangeItemsResponse, ReconcileError> {
        serve_items(
            &self.0,
            &RangeItemsRequest {
                range: Some(range),
                limit,
            },
        )
    }
}

/// What differs between the local set and the remote one, each list sorted by record ID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Difference {
    /// Local has it, the remote lacks it.
    pub missing_at_remote: Vec<String>,
    /// Both have it, with different envelope digests.
    pub differing: Vec<String>,
    /// The remote has it, local lacks it.
    pub extra_at_remote: Vec<String>,
    /// Protobuf-encoded size (prost `encoded_len`) of every request and response, plus 5
    /// bytes of gRPC message framing each. Excludes HTTP/2 (frame and HEADERS, i.e. the
    /// method path, status and trailers of each call), TLS records and TCP/IP: with a warm
    /// connection those add a roughly constant ~100–200 bytes a round trip.
    pub bytes_exchanged: u64,
    /// Calls made (each is one request and its answer).
    pub round_trips: u32,
}

impl Difference {
    pub fn is_empty(&self) -> bool {
        self.missing_at_remote.is_empty()
            && self.differing.is_empty()
            && self.extra_at_remote.is_empty()
    }
}

/// Counts the traffic of the calls made through it, and checks the answers' shape.
struct Meter<'r, R> {
    remote: &'r mut R,
    bytes: u64,
    round_trips: u32,
}

impl<R: RemoteRanges> Meter<'_, R> {
    fn count(&mut self, request: usize, response: usize) {
        self.bytes += request as u64 + response as u64 + 2 * GRPC_FRAME;
        self.round_trips = self.round_trips.saturating_add(1);
    }

    async fn fingerprints(
        &mut self,
        ranges: Vec<IdRange>,
    ) -> Result<Vec<Fingerprint>, ReconcileError> {
        let asked = ranges.len();
        let request = RangeFingerprintsRequest { ranges };
        let request_len = request.encoded_len();
        let response = self.remote.fingerprints(request.ranges).await?;
        self.count(request_len, response.encoded_len());
        if response.fingerprints.len() != asked {
            return Err(ReconcileError::Protocol(format!(
                "{} fingerprints for {asked} ranges",
                response.fingerprints.len()
            )));
        }
        response
            .fingerprints
            .iter()
            .map(Fingerprint::from_wire)
            .collect()
    }

    /// Every remote item of `range`, page after page, checked to be in order and in range.
    async fn list(&mut self, range: &IdRange) -> Result<Vec<Item>, ReconcileError> {
        let mut items: Vec<Item> = Vec::new();
        let mut page_range = range.clone();
        loop {
            let request = RangeItemsRequest {
                range: Some(page_range.clone()),
                limit: MAX_ITEMS_PER_PAGE,
            };
            let request_len = request.encoded_len();
            let response = self
                .remote
                .items(page_range.clone(), MAX_ITEMS_PER_PAGE)
                .await?;
            self.count(request_len, response.encoded_len());
            for it in response.items {
                let ordered = items.last().is_none_or(|(last, _)| *last < it.record_id);
                if !ordered || !in_range(&it.record_id, &page_range) {
                    return Err(ReconcileError::Protocol(format!(
                        "item {:?} out of order or outside the range asked",
                        it.record_id
                    )));
                }
                let digest =
                    <[u8; DIGEST_LEN]>::try_from(it.envelope_digest.as_slice()).map_err(|_| {
                        ReconcileError::Protocol(format!(
                            "digest of {} bytes for {}",
                            it.envelope_digest.len(),
                            it.record_id
                        ))
                    })?;
                items.push((it.record_id, digest));
            }
            match (response.more, items.last()) {
                (false, _) => return Ok(items),
                (true, Some((last, _))) if *last >= page_range.start => {
                    page_range.start = after(last);
                }
                // `more` on an empty page would never end.
                (true, _) => {
                    return Err(ReconcileError::Protocol(
                        "empty page announcing more".to_string(),
                    ));
                }
            }
        }
    }
}

/// Merges two sorted item lists of the same range into `diff`.
fn merge(ours: &[Item], theirs: &[Item], diff: &mut Difference) {
    let (mut i, mut j) = (0, 0);
    while i < ours.len() || j < theirs.len() {
        match (ours.get(i), theirs.get(j)) {
            (Some((a, da)), Some((b, db))) if a == b => {
                if da != db {
                    diff.differing.push(a.clone());
                }
                i += 1;
                j += 1;
            }
            (Some((a, _)), Some((b, _))) if a < b => {
                diff.missing_at_remote.push(a.clone());
                i += 1;
            }
            (Some((a, _)), None) => {
                diff.missing_at_remote.push(a.clone());
                i += 1;
            }
            (_, Some((b, _))) => {
                diff.extra_at_remote.push(b.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// Origin side: what differs between `local` and what `remote` holds, with the traffic it
/// took.
///
/// Level by level: the fingerprints of all the ranges of a level are asked together (in
/// requests of at most [`MAX_RANGES_PER_REQUEST`]); a range whose fingerprints agree is done;
/// one that differs is settled at once when one side has nothing in it (all local items
/// missing at the remote: no call; nothing local: its items are listed, paged) or it is a
/// single ID (differing digests); listed when small on both sides (at most [`LEAF_ITEMS`]) —
/// or when local has few items and the remote many more, as splitting at local keys would
/// not narrow it —; split at quantiles of its local keys otherwise, the parts going to the
/// next level. Zero differences cost one round trip; d differences about
/// d × log16(n) × (a range and a fingerprint, ~50 bytes) plus the items listed.
///
/// Local reads are blocking sled calls, each bounded by the range at hand (a whole pass of
/// the local set per level at most), made between the awaits.
pub async fn reconcile(
    local: &SledRangeSet,
    remote: &mut impl RemoteRanges,
) -> Result<Difference, ReconcileError> {
    let mut meter = Meter {
        remote,
        bytes: 0,
        round_trips: 0,
    };
    let mut diff = Difference::default();
    let all = whole();
    let mut level = vec![(all.clone(), local.fingerprint(&all)?)];
    let mut depth = 0;
    while !level.is_empty() {
        depth += 1;
        if depth > MAX_LEVELS {
            return Err(ReconcileError::Storage(format!(
                "no convergence after {MAX_LEVELS} levels (local set changing meanwhile?)"
            )));
        }
        let mut theirs = Vec::with_capacity(level.len());
        for chunk in level.chunks(MAX_RANGES_PER_REQUEST) {
            let ranges = chunk.iter().map(|(r, _)| r.clone()).collect();
            theirs.extend(meter.fingerprints(ranges).await?);
        }
        let mut next = Vec::new();
        let mut to_list = Vec::new();
        let mut small = Vec::new();
        for ((range, ours), theirs) in level.into_iter().zip(theirs) {
            if ours == theirs {
                continue;
            }
            let (n, c) = (ours.count, theirs.count);
            if n == 0 {
                to_list.push(range);
            } else if c == 0 {
                diff.missing_at_remote.extend(
                    local
                        .iter(&range)
                        .map(|it| it.map(|(id, _)| id))
                        .collect::<Result<Vec<_>, _>>()?,
                );
            } else if is_point(&range) {
                if n == 1 && c == 1 {
                    diff.differing.push(range.start);
                } else {
                    // Impossible from an honest holder (or the set changed): the listing
                    // checks and settles it.
                    to_list.push(range);
                }
            } else if n <= LEAF_ITEMS && c >= n + LEAF_ITEMS {
                to_list.push(range);
            } else if n <= LEAF_ITEMS && c <= LEAF_ITEMS {
                small.push((range, n));
            } else {
                next.extend(local.split(&range, n)?);
            }
        }
        if small.len() <= LIST_DIRECTLY {
            to_list.extend(small.into_iter().map(|(r, _)| r));
        } else {
            for (range, n) in small {
                next.extend(local.split(&range, n)?);
            }
        }
        for range in to_list {
            let theirs = meter.list(&range).await?;
            let ours = local.items(&range)?;
            merge(&ours, &theirs, &mut diff);
        }
        // The holder wants each request's ranges sorted (they are disjoint by construction),
        // and the small ranges split above came after the others.
        next.sort_by(|a, b| a.0.start.cmp(&b.0.start));
        level = next;
    }
    diff.missing_at_remote.sort_unstable();
    diff.differing.sort_unstable();
    diff.extra_at_remote.sort_unstable();
    diff.bytes_exchanged = meter.bytes;
    diff.round_trips = meter.round_trips;
    Ok(diff)
}

/// Every item the remote holds, by paged listing, with the traffic it took (counted as in
/// [`Difference::bytes_exchanged`]): the naive comparison, kept as a baseline for the
/// benchmark and for a full restore of the index.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub items: Vec<(String, [u8; DIGEST_LEN])>,
    pub bytes_exchanged: u64,
    pub round_trips: u32,
}

pub async fn list_all(remote: &mut impl RemoteRanges) -> Result<Listing, ReconcileError> {
    let mut meter = Meter {
        remote,
        bytes: 0,
        round_trips: 0,
    };
    let items = meter.list(&whole()).await?;
    Ok(Listing {
        items,
        bytes_exchanged: meter.bytes,
        round_trips: meter.round_trips,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    type Model = BTreeMap<String, [u8; 32]>;

    fn temp_db() -> sled::Db {
        sled::Config::new().temporary(true).open().unwrap()
    }

    /// Both sets in one tree under neighbouring prefixes, with noise around them, so that
    /// prefix bounds are exercised; the remote's values carry 8 extra bytes like custody's.
    fn sets(db: &sled::Db, local: &Model, remote: &Model) -> (SledRangeSet, SledRangeSet) {
        let tree = db.open_tree("index").unwrap();
        let l = SledRangeSet {
            tree: tree.clone(),
            prefix: b"L/".to_vec(),
        };
        let r = SledRangeSet {
            tree: tree.clone(),
            prefix: b"R/".to_vec(),
        };
        let mut batch = sled::Batch::default();
        for (id, d) in local {
            batch.insert([b"L/".as_slice(), id.as_bytes()].concat(), d.to_vec());
        }
        for (id, d) in remote {
            let mut v = d.to_vec();
            v.extend_from_slice(&7u64.to_be_bytes());
            batch.insert([b"R/".as_slice(), id.as_bytes()].concat(), v);
        }
        for noise in [
            &b"L"[..],
            b"L.",
            b"L0zz",
            b"M",
            b"R",
            b"R0",
            b"S/x",
            b"\xff",
        ] {
            batch.insert(noise, vec![9u8; 32]);
        }
        tree.apply_batch(batch).unwrap();
        (l, r)
    }

    fn expected(local: &Model, remote: &Model) -> Difference {
        let mut d = Difference::default();
        for (id, dl) in local {
            match remote.get(id) {
                None => d.missing_at_remote.push(id.clone()),
                Some(dr) if dr != dl => d.differing.push(id.clone()),
                Some(_) => {}
            }
        }
        for id in remote.keys() {
            if !local.contains_key(id) {
                d.extra_at_remote.push(id.clone());
            }
        }
        d
    }

    fn run(local: &SledRangeSet, remote: &SledRangeSet) -> Difference {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(reconcile(local, &mut InProcess(remote.clone())))
            .unwrap()
    }

    fn only_sets(d: &Difference) -> Difference {
        Difference {
            bytes_exchanged: 0,
            round_trips: 0,
            ..d.clone()
        }
    }

    fn digest(id: &str, version: u8) -> [u8; 32] {
        *blake3::hash(&[id.as_bytes(), &[version]].concat()).as_bytes()
    }

    /// `n` ULIDs in time order, deterministic.
    fn ulids(n: usize, seed: u64) -> Vec<String> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                ulid::Ulid::from_parts(1_700_000_000_000 + i as u64 * 37, rng.r#gen::<u128>())
                    .to_string()
            })
            .collect()
    }

    fn big(n: usize) -> Model {
        ulids(n, 1)
            .into_iter()
            .map(|id| {
                let d = digest(&id, 0);
                (id, d)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn difference_is_exactly_the_models(
            base in prop::collection::btree_map("[0-9A-Z]{1,6}", any::<[u8; 32]>(), 0..400),
            local_adds in prop::collection::btree_map("[0-9A-Z]{1,6}", any::<[u8; 32]>(), 0..40),
            remote_adds in prop::collection::btree_map("[0-9A-Z]{1,6}", any::<[u8; 32]>(), 0..40),
            local_removes in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
            remote_removes in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
            changes in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let mut local = base.clone();
            let mut remote = base.clone();
            let keys: Vec<String> = base.keys().cloned().collect();
            if !keys.is_empty() {
                for i in &local_removes { local.remove(i.get(&keys)); }
                for i in &remote_removes { remote.remove(i.get(&keys)); }
                for i in &changes {
                    if let Some(d) = remote.get_mut(i.get(&keys)) { d[0] ^= 1; }
                }
            }
            local.extend(local_adds);
            remote.extend(remote_adds);
            let db = temp_db();
            let (l, r) = sets(&db, &local, &remote);
            let got = run(&l, &r);
            prop_assert_eq!(only_sets(&got), expected(&local, &remote));
            if got.is_empty() {
                prop_assert_eq!(got.round_trips, 1);
            }
        }
    }

    #[test]
    fn empty_sides() {
        let db = temp_db();
        let some: Model = big(50);
        let (l, r) = sets(&db, &Model::new(), &Model::new());
        let d = run(&l, &r);
        assert!(d.is_empty());
        assert_eq!(d.round_trips, 1);

        let db = temp_db();
        let (l, r) = sets(&db, &some, &Model::new());
        let d = run(&l, &r);
        assert_eq!(
            d.missing_at_remote,
            some.keys().cloned().collect::<Vec<_>>()
        );
        assert_eq!(d.round_trips, 1, "an empty remote needs no listing");

        let db = temp_db();
        let (l, r) = sets(&db, &Model::new(), &some);
        let d = run(&l, &r);
        assert_eq!(d.extra_at_remote, some.keys().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn remote_with_many_items_local_lacks_is_paged() {
        let remote = big(2500);
        let local: Model = remote
            .iter()
            .take(3)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let db = temp_db();
        let (l, r) = sets(&db, &local, &remote);
        let d = run(&l, &r);
        assert_eq!(only_sets(&d), expected(&local, &remote));
        assert!(d.round_trips >= 3, "2497 extras need 3 pages: {d:?}");
    }

    #[test]
    fn equal_counts_different_content() {
        let local = big(300);
        let mut remote = local.clone();
        // Swap one ID for another: same count everywhere above the leaves.
        let gone = local.keys().nth(150).unwrap().clone();
        remote.remove(&gone);
        let new = format!("{}0", &gone);
        remote.insert(new.clone(), digest(&new, 0));
        let db = temp_db();
        let (l, r) = sets(&db, &local, &remote);
        let d = run(&l, &r);
        assert_eq!(d.missing_at_remote, vec![gone]);
        assert_eq!(d.extra_at_remote, vec![new]);
    }

    fn with_changes(base: &Model, every: usize) -> Model {
        base.iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let v = if i % every == every / 2 {
                    digest(k, 1)
                } else {
                    *v
                };
                (k.clone(), v)
            })
            .collect()
    }

    #[test]
    fn one_difference_in_100k_costs_little() {
        let local = big(100_000);
        let db = temp_db();
        let (l, r) = sets(&db, &local, &local);
        let same = run(&l, &r);
        assert!(same.is_empty());
        assert_eq!(same.round_trips, 1);
        assert!(same.bytes_exchanged < 100, "{same:?}");

        let changed = local.keys().nth(61_803).unwrap().clone();
        r.tree
            .insert(
                [b"R/".as_slice(), changed.as_bytes()].concat(),
                &digest(&changed, 1)[..],
            )
            .unwrap();
        let d = run(&l, &r);
        assert_eq!(d.differing, vec![changed]);
        assert!(d.missing_at_remote.is_empty() && d.extra_at_remote.is_empty());
        assert!(d.bytes_exchanged < 64 * 1024, "{d:?}");
        assert!(d.round_trips <= 8, "{d:?}");
        eprintln!(
            "1 of 100k: {} bytes, {} round trips",
            d.bytes_exchanged, d.round_trips
        );
    }

    #[test]
    fn traffic_grows_with_the_difference() {
        let local = big(100_000);
        let mut costs = Vec::new();
        for every in [10_000, 100] {
            let remote = with_changes(&local, every);
            let db = temp_db();
            let (l, r) = sets(&db, &local, &remote);
            let d = run(&l, &r);
            assert_eq!(only_sets(&d), expected(&local, &remote));
            eprintln!(
                "{} of 100k: {} bytes, {} round trips",
                d.differing.len(),
                d.bytes_exchanged,
                d.round_trips
            );
            costs.push((d.differing.len() as u64, d.bytes_exchanged, d.round_trips));
        }
        let (few, many) = (costs[0], costs[1]);
        assert_eq!((few.0, many.0), (10, 1000));
        // Per difference, bounded; overall, far below a full listing (~64 bytes an item).
        assert!(few.1 < 10 * 8 * 1024, "{few:?}");
        assert!(many.1 < 1000 * 2 * 1024, "{many:?}");
        assert!(many.1 > 10 * few.1, "grows with the difference: {costs:?}");
        // Levels are batched: round trips do not grow with the number of differences.
        assert!(many.2 < 40, "{many:?}");
    }

    #[test]
    fn holder_refuses_too_many_ranges_and_inverted_ones() {
        let db = temp_db();
        let (l, _) = sets(&db, &big(10), &Model::new());
        let ranges = (0..=MAX_RANGES_PER_REQUEST)
            .map(|i| IdRange {
                start: format!("{i:05}"),
                end: format!("{:05}", i + 1),
            })
            .collect::<Vec<_>>();
        let e = serve_fingerprints(
            &l,
            &RangeFingerprintsRequest {
                ranges: ranges.clone(),
            },
        )
        .unwrap_err();
        assert!(matches!(
            e,
            ReconcileError::TooManyRanges {
                asked: 1025,
                max: 1024
            }
        ));
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let ok = serve_fingerprints(
            &l,
            &RangeFingerprintsRequest {
                ranges: ranges[..MAX_RANGES_PER_REQUEST].to_vec(),
            },
        )
        .unwrap();
        assert_eq!(ok.fingerprints.len(), MAX_RANGES_PER_REQUEST);
        // The same range twice would cost the holder two passes: refused.
        let twice = vec![whole(), whole()];
        let e = serve_fingerprints(&l, &RangeFingerprintsRequest { ranges: twice }).unwrap_err();
        assert!(matches!(e, ReconcileError::InvalidRange(_)), "{e}");
        let bad = IdRange {
            start: "b".into(),
            end: "a".into(),
        };
        let e =
            serve_fingerprints(&l, &RangeFingerprintsRequest { ranges: vec![bad] }).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let empty = IdRange {
            start: "b".into(),
            end: "b".into(),
        };
        let f = serve_fingerprints(
            &l,
            &RangeFingerprintsRequest {
                ranges: vec![empty],
            },
        )
        .unwrap();
        assert_eq!(f.fingerprints[0].count, 0);
    }

    #[test]
    fn items_are_paged_and_continue_after_the_last() {
        let model = big(25);
        let db = temp_db();
        let (_, r) = sets(&db, &Model::new(), &model);
        let mut start = String::new();
        let mut seen = Vec::new();
        loop {
            let page = serve_items(
                &r,
                &RangeItemsRequest {
                    range: Some(IdRange {
                        start: start.clone(),
                        end: String::new(),
                    }),
                    limit: 10,
                },
            )
            .unwrap();
            assert!(page.items.len() <= 10);
            for it in &page.items {
                assert_eq!(
                    it.envelope_digest.len(),
                    32,
                    "only the digest, not custody's size"
                );
                assert_eq!(
                    model[&it.record_id].as_slice(),
                    it.envelope_digest.as_slice()
                );
                seen.push(it.record_id.clone());
            }
            if !page.more {
                break;
            }
            start = after(seen.last().unwrap());
        }
        assert_eq!(seen, model.keys().cloned().collect::<Vec<_>>());
    }

    #[test]
    fn separators_split_between_keys() {
        assert_eq!(separator("01HZA", "01HZB"), "01HZB");
        assert_eq!(separator("01A", "01HZB"), "01H");
        assert_eq!(separator("ab", "abc"), "abc");
        assert_eq!(separator("a", "b"), "b");
        assert!(is_point(&IdRange {
            start: "x".into(),
            end: after("x")
        }));
        assert!(!is_point(&IdRange {
            start: "x".into(),
            end: "y".into()
        }));
    }
}
