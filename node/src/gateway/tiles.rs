//! The audit log as a C2SP tlog-tiles log, so that anyone can mirror it with standard tools
//! and recompute its root:
//! - `/checkpoint`: the latest signed checkpoint, with the witnesses' cosignatures collected
//!   for it (verifiers ignore signature lines of keys they do not know);
//! - `/tile/<L>/<N>[.p/<W>]`: hash tiles, 256 hashes wide; the hash `i` of tile `N` at level
//!   `L` is the perfect subtree of 256^L leaves numbered `N·256 + i` at tree level 8·L, which
//!   the log already stores (`log::tree`), so a tile is 256 reads;
//! - `/tile/entries/<N>[.p/<W>]`: entry bundles, each leaf as a big-endian u16 length and
//!   its bytes (the leaves are the public event text of `archipel_proto::event`).
//!
//! Only what the latest signed checkpoint commits to is served: a tile or bundle reaching
//! past its size answers 404, so the public never sees entries the node has not signed for.
//! Full tiles never change and are cached as immutable; partial tiles are not.

use super::State;
use crate::log::{LogError, LogView};
use archipel_proto::rfc6962::{Hash, SubtreeHashes, empty_root, node_hash, root_from_leaf_hashes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels spanned by one tile level.
const TILE_HEIGHT: u32 = 8;
/// Highest tile level the specification allows.
pub const MAX_TILE_LEVEL: u32 = 63;

/// Which resource a `/tile/...` path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    /// Hash tile at this tile level.
    Hashes(u32),
    /// Entry bundle.
    Entries,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePath {
    pub kind: TileKind,
    pub index: u64,
    /// `Some(W)` for a partial tile `.p/W` (1 to 255).
    pub partial: Option<u16>,
}

impl TilePath {
    /// Number of hashes or entries in the resource.
    pub fn width(&self) -> u64 {
        self.partial.map_or(TILE_WIDTH, u64::from)
    }

    /// The path below `/tile/`, in the specification's canonical form.
    pub fn to_path(&self) -> String {
        let kind = match self.kind {
            TileKind::Hashes(l) => l.to_string(),
            TileKind::Entries => "entries".to_string(),
        };
        let mut s = format!("{kind}/{}", format_index(self.index));
        if let Some(w) = self.partial {
            s.push_str(&format!(".p/{w}"));
        }
        s
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TilesError {
    #[error("not a tile path: {0}")]
    BadPath(String),
    #[error("{0}")]
    NotFound(String),
    #[error("reading the audit log: {0}")]
    Log(#[from] LogError),
    #[error("log entry {0} is longer than an entry bundle can hold (65535 bytes)")]
    EntryTooLong(u64),
    #[error("the request worker failed: {0}")]
    Worker(String),
}

impl IntoResponse for TilesError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            TilesError::BadPath(_) | TilesError::NotFound(_) => {
                let status = if matches!(self, TilesError::BadPath(_)) {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::NOT_FOUND
                };
                (status, format!("{self}\n"))
            }
            _ => {
                // Details for the operator's log, not for the public.
                tracing::error!(error = %self, "public log request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error\n".to_string(),
                )
            }
        };
        (
            status,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response()
    }
}

/// `N` as zero-padded 3-digit path elements, all but the last prefixed with `x`
/// (1234067 → `x001/x234/067`).
pub fn format_index(mut n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        parts.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// A decimal with no leading zero (`0` itself allowed), within `max`.
fn canonical_decimal(s: &str, max: u64) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse::<u64>().ok())
        .flatten()
        .filter(|v| *v <= max)
}

/// Parses the part of a path after `/tile/`. Only the canonical spelling is accepted, so
/// one resource has one URL (and one cache entry).
pub fn parse_tile_path(rest: &str) -> Option<TilePath> {
    let mut parts: Vec<&str> = rest.split('/').collect();
    if parts.len() < 2 {
        return None;
    }
    let kind = match parts.remove(0) {
        "entries" => TileKind::Entries,
        l => {
            TileKind::Hashes(u32::try_from(canonical_decimal(l, u64::from(MAX_TILE_LEVEL))?).ok()?)
        }
    };
    let mut partial = None;
    let n = parts.len();
    if n >= 2 && parts[n - 2].ends_with(".p") {
        let w = canonical_decimal(parts[n - 1], 255).filter(|w| *w >= 1)?;
        partial = Some(u16::try_from(w).ok()?);
        parts.pop();
        let last = parts.last_mut()?;
        *last = last.strip_suffix(".p")?;
    }
    // At most 7 elements: 1000^7 > 2^64.
    if parts.is_empty() || parts.len() > 7 {
        return None;
    }
    let (last, prefix) = parts.split_last()?;
    let mut index: u64 = 0;
    for (i, p) in prefix.iter().enumerate() {
        let v = three_digits(p.strip_prefix('x')?)?;
        // A leading element of zero is a second spelling of a smaller index.
        if i == 0 && v == 0 {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(v)?;
    }
    index = index.checked_mul(1000)?.checked_add(three_digits(last)?)?;
    Some(TilePath {
        kind,
        index,
        partial,
    })
}

/// Number of hashes available at tile level `level` in a tree of `size` leaves (the
/// complete subtrees of 256^level leaves).
fn hashes_at_level(size: u64, level: u32) -> u64 {
    size.checked_shr(TILE_HEIGHT * level).unwrap_or(0)
}

/// The width of tile `index` at `level` in a tree of `size` leaves: 256 for a full tile,
/// 1..=255 for the partial one, `None` if the tree has no such tile.
pub fn tile_width(size: u64, level: u32, index: u64) -> Option<u64> {
    let count = hashes_at_level(size, level);
    let start = index.checked_mul(TILE_WIDTH)?;
    if start >= count {
        return None;
    }
    Some((count - start).min(TILE_WIDTH))
}

/// Whether a tree of `size` leaves contains this resource (a partial tile of any width up
/// to what the tree has: each is the tile of an earlier size, and never changes).
pub fn available(path: &TilePath, size: u64) -> bool {
    let level = match path.kind {
        TileKind::Hashes(l) => l,
        TileKind::Entries => 0,
    };
    match tile_width(size, level, path.index) {
        Some(w) => path.width() <= w,
        None => false,
    }
}

/// The hashes of a tile, concatenated (32 bytes each).
pub fn tile_bytes<S: SubtreeHashes + ?Sized>(
    tree: &S,
    level: u32,
    index: u64,
    width: u64,
) -> Result<Vec<u8>, S::Error> {
    let mut out = Vec::with_capacity(width as usize * 32);
    let tree_level = TILE_HEIGHT * level;
    for i in 0..width {
        // Callers check availability first, so index·256 + i stays within the tree size.
        let h = tree.perfect_subtree_hash(tree_level, index * TILE_WIDTH + i)?;
        out.extend_from_slice(&h);
    }
    Ok(out)
}

/// Splits tile bytes into hashes; `None` if the length is not a multiple of 32.
pub fn split_hashes(bytes: &[u8]) -> Option<Vec<Hash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .filter_map(|c| <Hash>::try_from(c).ok())
            .collect(),
    )
}

/// Splits an entry bundle into its entries; `None` if it is malformed.
pub fn split_entries(mut bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < len {
            return None;
        }
        let (entry, rest) = rest.split_at(len);
        out.push(entry.to_vec());
        bytes = rest;
    }
    Some(out)
}

/// The root of a tree of `size` leaves from its tiles alone, as a mirror computes it:
/// the tree splits into perfect subtrees (one per bit of `size`); one at tree level `k`
/// is 2^(k mod 8) consecutive hashes of one tile at level ⌊k/8⌋, hashed together.
/// `tile(level, index, width)` returns a tile's hashes.
pub fn root_from_tiles<E>(
    size: u64,
    mut tile: impl FnMut(u32, u64, u64) -> Result<Vec<Hash>, E>,
    malformed: impl Fn(String) -> E,
) -> Result<Hash, E> {
    if size == 0 {
        return Ok(empty_root());
    }
    let mut parts = Vec::new();
    let mut pos: u64 = 0;
    for k in (0..u64::BITS).rev() {
        if (size >> k) & 1 == 0 {
            continue;
        }
        let j = pos >> k;
        let (level, r) = (k / TILE_HEIGHT, k % TILE_HEIGHT);
        let first = j << r;
        let count = 1u64 << r;
        let index = first / TILE_WIDTH;
        let offset = (first % TILE_WIDTH) as usize;
        let width = tile_width(size, level, index)
            .ok_or_else(|| malformed(format!("no tile {level}/{index} at size {size}")))?;
        let hashes = tile(level, index, width)?;
        let slice = hashes
            .get(offset..offset + count as usize)
            .ok_or_else(|| malformed(format!("tile {level}/{index} is too short")))?;
        parts.push(root_from_leaf_hashes(slice));
        pos += 1u64 << k;
    }
    let mut rev = parts.into_iter().rev();
    let mut acc = rev
        .next()
        .ok_or_else(|| malformed("no subtree".to_string()))?;
    for left in rev {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// The size of the latest signed checkpoint (0 when none was signed yet).
fn committed_size(archive: &crate::archive::Archive) -> Result<u64, LogError> {
    Ok(archive
        .log
        .latest_signed()?
        .map(|(cp, _)| cp.size)
        .unwrap_or(0))
}

/// `/checkpoint` and `/tile/...`.
pub fn routes() -> axum::Router<State> {
    axum::Router::new()
        .route("/checkpoint", axum::routing::get(checkpoint))
        .route("/tile/{*rest}", axum::routing::get(tile))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TilesError> + Send + 'static,
) -> Result<T, TilesError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TilesError::Worker(e.to_string()))?
}

async fn checkpoint(
    axum::extract::State(archive): axum::extract::State<State>,
) -> Result<Response, TilesError> {
    let note = blocking(move || {
        let Some((cp, note)) = archive.log.latest_signed()? else {
            return Err(TilesError::NotFound(
                "this node has not signed a checkpoint of its log yet".into(),
            ));
        };
        Ok(archive.log.with_cosignatures(cp.size, &note)?)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            // The specification: mutable, not cached beyond a few seconds.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        note,
    )
        .into_response())
}

async fn tile(
    axum::extract::State(archive): axum::extract::State<State>,
    axum::extract::Path(rest): axum::extract::Path<String>,
) -> Result<Response, TilesError> {
    let path = parse_tile_path(&rest).ok_or_else(|| TilesError::BadPath(rest.clone()))?;
    let body = blocking(move || {
        let size = committed_size(&archive)?;
        if !available(&path, size) {
            return Err(TilesError::NotFound(format!(
                "tile/{} is not part of the log as of its latest checkpoint (size {size})",
                path.to_path()
            )));
        }
        let view = archive.log.view()?;
        match path.kind {
            TileKind::Hashes(level) => Ok(tile_bytes(&view, level, path.index, path.width())?),
            TileKind::Entries => entry_bundle(&view, path.index, path.width()),
        }
    })
    .await?;
    let cache = if path.partial.is_none() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response())
}

fn entry_bundle(view: &LogView, index: u64, width: u64) -> Result<Vec<u8>, TilesError> {
    let mut out = Vec::new();
    for i in 0..width {
        let n = index * TILE_WIDTH + i;
        let leaf = view.leaf(n)?;
        let len = u16::try_from(leaf.len()).map_err(|_| TilesError::EntryTooLong(n))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&leaf);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use archipel_proto::rfc6962::{leaf_hash, tree_root};
    use sled::Transactional;

    #[test]
    fn index_paths_follow_the_specification() {
        assert_eq!(format_index(0), "000");
        assert_eq!(format_index(7), "007");
        assert_eq!(format_index(1000), "x001/000");
        assert_eq!(format_index(1234067), "x001/x234/067");
        for n in [0u64, 1, 999, 1000, 1001, 1234067, u64::MAX] {
            let p = TilePath {
                kind: TileKind::Hashes(2),
                index: n,
                partial: Some(17),
            };
            assert_eq!(parse_tile_path(&p.to_path()), Some(p), "{n}");
        }
        assert_eq!(
            parse_tile_path("entries/x001/x234/067.p/255"),
            Some(TilePath {
                kind: TileKind::Entries,
                index: 1234067,
                partial: Some(255)
            })
        );
        for bad in [
            "",
            "0",
            "0/",
            "00/000",
            "64/000",
            "-1/000",
            "0/0",
            "0/0000",
            "0/x000/001",
            "0/001/002",
            "0/x001",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/07",
            "0/000.p",
            "0/000/.p/3",
            "entries/../000",
            "0/x018/x446/x744/x073/x709/x551/616",
            "0/x001/x001/x001/x001/x001/x001/x001/000",
            "1/+01",
        ] {
            assert_eq!(parse_tile_path(bad), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn widths_match_the_specification_example() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
        // level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of
        // width 17, and one partial level 2 tile of width 1."
        let s = 70_000;
        assert_eq!(tile_width(s, 0, 272), Some(256));
        assert_eq!(tile_width(s, 0, 273), Some(112));
        assert_eq!(tile_width(s, 0, 274), None);
        assert_eq!(tile_width(s, 1, 0), Some(256));
        assert_eq!(tile_width(s, 1, 1), Some(17));
        assert_eq!(tile_width(s, 2, 0), Some(1));
        assert_eq!(tile_width(s, 3, 0), None);
        assert_eq!(tile_width(256, 1, 0), Some(1));
        assert_eq!(tile_width(u64::MAX, 63, 0), None);
        let full = |l, n| TilePath {
            kind: TileKind::Hashes(l),
            index: n,
            partial: None,
        };
        assert!(available(&full(0, 272), s));
        assert!(!available(&full(0, 273), s));
        let partial = TilePath {
            partial: Some(112),
            ..full(0, 273)
        };
        assert!(available(&partial, s));
        assert!(!available(
            &TilePath {
                partial: Some(113),
                ..partial
            },
            s
        ));
        assert!(available(
            &TilePath {
                partial: Some(5),
                ..partial
            },
            s
        ));
    }

    /// A persisted log of `n` leaves, as the node keeps it.
    fn log_of(n: u64) -> (sled::Db, Vec<Vec<u8>>) {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let tree = db.open_tree("log").expect("tree");
        let leaves: Vec<Vec<u8>> = (0..n).map(|i| format!("leaf {i}").into_bytes()).collect();
        for l in &leaves {
            (&tree,)
                .transaction(|(t,)| crate::log::tree::append_tx::<()>(t, l))
                .expect("append");
        }
        (db, leaves)
    }

    #[test]
    fn roots_from_tiles_match_rfc6962() {
        let (db, leaves) = log_of(70_000);
        let view = LogView::new(&db.open_tree("log").expect("tree")).expect("view");
        let hashes: Vec<Hash> = leaves.iter().map(|l| leaf_hash(l)).collect();
        for size in [
            1u64, 2, 3, 255, 256, 257, 511, 512, 4097, 65_535, 65_536, 65_537, 70_000,
        ] {
            let from_tiles = root_from_tiles(
                size,
                |level, index, width| -> Result<Vec<Hash>, String> {
                    let bytes =
                        tile_bytes(&view, level, index, width).map_err(|e| e.to_string())?;
                    split_hashes(&bytes).ok_or_else(|| "bad tile".to_string())
                },
                |m| m,
            )
            .expect("root from tiles");
            assert_eq!(
                from_tiles,
                tree_root(&view, size).expect("root"),
                "size {size}"
            );
            assert_eq!(
                from_tiles,
                root_from_leaf_hashes(&hashes[..size as usize]),
                "size {size}"
            );
        }
        // A full level-1 hash is the root of the full level-0 tile below it.
        let tile0 = split_hashes(&tile_bytes(&view, 0, 3, 256).expect("tile")).expect("hashes");
        let tile1 = split_hashes(&tile_bytes(&view, 1, 0, 256).expect("tile")).expect("hashes");
        assert_eq!(root_from_leaf_hashes(&tile0), tile1[3]);
        assert_eq!(tile0[0], leaf_hash(&leaves[3 * 256]));
        assert_eq!(
            root_from_tiles(0, |_, _, _| Ok::<_, String>(vec![]), |m| m),
            Ok(empty_root())
        );
    }

    #[test]
    fn entry_bundles_round_trip() {
        let (db, leaves) = log_of(300);
        let view = LogView::new(&db.open_tree("log").expect("tree")).expect("view");
        let bundle = entry_bundle(&view, 1, 44).expect("bundle");
        let entries = split_entries(&bundle).expect("entries");
        assert_eq!(entries.as_slice(), &leaves[256..300]);
        assert_eq!(split_entries(&[0, 5, 1]), None);
        assert_eq!(split_entries(&[0]), None);
        assert_eq!(split_entries(&[]), Some(vec![]));
    }
}
