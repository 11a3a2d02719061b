//! The public log over HTTP (C2SP tlog-tiles) from a real node's gateway: a mirror fetches
//! the checkpoint, checks its signature with the log's vkey, downloads every entry bundle
//! and hash tile, checks that they agree with each other, and recomputes the checkpoint's
//! root two ways (from all the entries, with the RFC 6962 code of `archipel-proto`, and from
//! the tiles alone). Also: content types, caching, and what is refused.
#![allow(clippy::unwrap_used)]

#[path = "support/http.rs"]
mod http;

use archipel_node::gateway::tiles::{format_index, root_from_tiles, split_entries, split_hashes};
use archipel_proto::checkpoint::Checkpoint;
use archipel_proto::note::Verifier;
use archipel_proto::rfc6962::{Hash, leaf_hash, root_from_leaf_hashes};
use archipel_tests::TestNode;
use archipel_tests::cluster::free_port;
use std::collections::HashMap;

fn tile_path(level: Option<u32>, index: u64, size_at_level: u64) -> (String, bool) {
    let kind = level.map_or("entries".to_string(), |l| l.to_string());
    let full = (index + 1) * 256 <= size_at_level;
    let mut p = format!("/tile/{kind}/{}", format_index(index));
    if !full {
        p.push_str(&format!(".p/{}", size_at_level - index * 256));
    }
    (p, full)
}

fn fetch(base: &str, path: &str, full: bool) -> Vec<u8> {
    let r = http::get(base, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/octet-stream"),
        "{path}"
    );
    let cache = r.header("cache-control").unwrap_or("");
    assert_eq!(
        cache.contains("immutable"),
        full,
        "{path}: cache-control {cache}"
    );
    r.body
}

#[test]
fn a_mirror_recomputes_the_checkpoint_from_tiles() {
    let root = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut node = TestNode::init_with(
        root.path(),
        "node",
        "Commune de Landerneau",
        &["--gateway-listen", &listen],
    )
    .unwrap();
    // This test reads many pages quickly: the per-client rate limit (tested in
    // gateway_abuse.rs) is switched off so that the machine's speed cannot make it fail.
    let config = node.data.join("archipel.toml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    text.insert_str(0, "gateway_rate_per_sec = 0\n");
    std::fs::write(&config, text).unwrap();
    node.start().unwrap();
    let status = node.cli_json(&["status"]);
    let base = status["gateway_url"].as_str().unwrap().to_string();
    let verifier = Verifier::from_vkey(status["log_vkey"].as_str().unwrap()).unwrap();

    // No checkpoint signed yet: nothing is published.
    assert_eq!(http::get(&base, "/tile/0/000.p/1").status, 404);

    // Over 256 events (three per ingest): a full level-0 tile, a partial one, and a
    // partial level-1 tile.
    let file = root.path().join("f.txt");
    for i in 0..90 {
        std::fs::write(&file, format!("pièce {i}\n")).unwrap();
        node.ingest(
            &[&file],
            &format!("Pièce {i}"),
            &["--communicability", "immediate"],
        );
    }
    node.cli_ok(&["log", "checkpoint"]);

    let r = http::get(&base, "/checkpoint");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(
        !r.header("cache-control")
            .unwrap_or("")
            .contains("immutable")
    );
    let cp =
        Checkpoint::open(&r.body, &verifier).expect("the checkpoint verifies with the log key");
    let size = cp.size;
    assert!(size > 256, "log of {size} entries");

    // Every entry bundle, then every level-0 tile: each entry hashes to its tile's hash.
    let mut entries: Vec<Vec<u8>> = Vec::new();
    let mut leaf_hashes: Vec<Hash> = Vec::new();
    for n in 0..size.div_ceil(256) {
        let (path, full) = tile_path(None, n, size);
        let bundle = split_entries(&fetch(&base, &path, full)).expect("entry bundle");
        let (path, full) = tile_path(Some(0), n, size);
        let tile = split_hashes(&fetch(&base, &path, full)).expect("hash tile");
        assert_eq!(bundle.len(), tile.len(), "{path}");
        for (e, h) in bundle.iter().zip(&tile) {
            assert_eq!(&leaf_hash(e), h, "entry of {path}");
        }
        entries.extend(bundle);
        leaf_hashes.extend(tile);
    }
    assert_eq!(entries.len() as u64, size);
    assert!(
        String::from_utf8_lossy(&entries[0]).starts_with("archipel-event/v1\n"),
        "entries are the public event text"
    );
    // The root from the entries alone, with the RFC 6962 code.
    assert_eq!(root_from_leaf_hashes(&leaf_hashes), cp.root);

    // The root from the tiles alone, as a tlog-tiles client computes it; level-1 hashes
    // must be the roots of the full level-0 tiles below them.
    let mut cache: HashMap<(u32, u64, u64), Vec<Hash>> = HashMap::new();
    let from_tiles = root_from_tiles(
        size,
        |level, index, width| -> Result<Vec<Hash>, String> {
            let at_level = size >> (8 * level);
            let (path, full) = tile_path(Some(level), index, at_level);
            assert_eq!(full, width == 256);
            Ok(cache
                .entry((level, index, width))
                .or_insert_with(|| split_hashes(&fetch(&base, &path, full)).unwrap())
                .clone())
        },
        |m| m,
    )
    .unwrap();
    assert_eq!(from_tiles, cp.root);
    let (path, full) = tile_path(Some(1), 0, size >> 8);
    let level1 = split_hashes(&fetch(&base, &path, full)).unwrap();
    assert_eq!(level1[0], root_from_leaf_hashes(&leaf_hashes[..256]));

    // Beyond the checkpoint: not served, even once the log has grown.
    node.ingest(
        &[&file],
        "Après le checkpoint",
        &["--communicability", "immediate"],
    );
    let beyond = if size % 256 == 255 {
        format!("/tile/entries/{}", format_index(size / 256))
    } else {
        format!(
            "/tile/entries/{}.p/{}",
            format_index(size / 256),
            size % 256 + 1
        )
    };
    assert_eq!(http::get(&base, &beyond).status, 404, "{beyond}");
    assert_eq!(
        http::get(&base, "/tile/0/001").status,
        404,
        "no second full tile"
    );
    assert_eq!(
        http::get(&base, "/tile/2/000.p/1").status,
        404,
        "no level-2 tile yet"
    );
    // Smaller partial tiles than the current one are older tree sizes, still served.
    let r = http::get(&base, "/tile/0/000.p/3");
    assert_eq!(r.status, 200);
    assert_eq!(split_hashes(&r.body).unwrap(), leaf_hashes[..3].to_vec());
    // Malformed paths.
    for bad in [
        "/tile/0/0",
        "/tile/00/000",
        "/tile/0/x000/000",
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/entries/000.p/",
        "/tile/64/000",
        "/tile/0/..%2F..%2Fetc",
    ] {
        let r = http::get(&base, bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    // HEAD of a full tile: headers, no body.
    let r = http::request(&base, "HEAD", "/tile/0/000", &[], &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("8192"));
}
