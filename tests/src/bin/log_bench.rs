//! Audit-log benchmark: append rate, proof building time at two log sizes, and the size of a
//! deposit certificate. Run: `cargo run --release -p archipel-tests --bin log_bench [-- N]`.

use anyhow::Context;
use archipel_node::log::tree::{LogView, append_tx};
use archipel_proto::event::{Event, Outcome};
use archipel_proto::rfc6962::{consistency_proof_between, inclusion_proof_at};
use archipel_proto::tlog_proof::TlogProof;
use rand::Rng;
use sled::Transactional;
use std::time::{Duration, Instant};

fn leaf(i: u64) -> Vec<u8> {
    Event {
        time: "2026-11-25T18:00:00Z".into(),
        event_type: "ingestion".into(),
        object: format!("01KAX7M3S1H4T6Q9W2{i:08}"),
        agent_node: "qkm5ubkcg3u35gncpq36be726ztepvs4".into(),
        agent_actor: "admin".into(),
        outcome: Outcome::Success,
        detail: *blake3::hash(&i.to_be_bytes()).as_bytes(),
    }
    .to_string()
    .into_bytes()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time to build an inclusion and a consistency proof at `size`, over `n` draws.
fn proof_times(view: &LogView, size: u64, n: usize) -> anyhow::Result<(Duration, Duration, usize)> {
    let mut rng = rand::thread_rng();
    let (mut inc, mut con) = (Vec::new(), Vec::new());
    let mut hashes = 0;
    for _ in 0..n {
        let i = rng.gen_range(0..size);
        let t = Instant::now();
        let p = inclusion_proof_at(view, i, size)?;
        inc.push(t.elapsed());
        hashes = hashes.max(p.len());
        let old = rng.gen_range(1..=size);
        let t = Instant::now();
        consistency_proof_between(view, old, size)?;
        con.push(t.elapsed());
    }
    Ok((median(inc), median(con), hashes))
}

fn main() -> anyhow::Result<()> {
    let total: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let tree = db.open_tree("log")?;
    println!(
        "archipel audit-log benchmark, {} events, {}",
        total,
        time_now()
    );

    // One event per transaction: the node's worst case (a fixity check, a key export).
    let single = 20_000.min(total);
    let t = Instant::now();
    for i in 0..single {
        let l = leaf(i);
        (&tree,)
            .transaction(|(t,)| append_tx::<()>(t, &l))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    let rate_single = single as f64 / t.elapsed().as_secs_f64();

    // The rest in batches of 1000 per transaction, to reach the large size quickly.
    let t = Instant::now();
    let mut i = single;
    let mut size_small_view = None;
    while i < total {
        let end = (i + 1000).min(total);
        let leaves: Vec<Vec<u8>> = (i..end).map(leaf).collect();
        (&tree,)
            .transaction(|(t,)| {
                for l in &leaves {
                    append_tx::<()>(t, l)?;
                }
                Ok(())
            })
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        i = end;
        if size_small_view.is_none() && i >= 1000 {
            size_small_view = Some(i);
        }
    }
    let rate_batch = (total - single) as f64 / t.elapsed().as_secs_f64().max(1e-9);
    db.flush()?;
    let view = LogView::new(&tree)?;
    println!("append, one event per transaction:   {rate_single:>10.0} events/s");
    println!("append, 1000 events per transaction: {rate_batch:>10.0} events/s");

    for size in [1_000u64, 1_000_000] {
        if size > view.size() {
            continue;
        }
        let (inc, con, hashes) = proof_times(&view, size, 2000)?;
        println!(
            "log of {size:>9} events: inclusion proof {:>6.1} µs ({hashes} hashes), consistency proof {:>6.1} µs",
            inc.as_secs_f64() * 1e6,
            con.as_secs_f64() * 1e6
        );
    }
    // A deposit certificate at the largest size: leaf, proof, signed checkpoint.
    let size = view.size();
    let idx = size / 3;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let signer =
        archipel_proto::note::Signer::new("archipel/bench/qkm5ubkcg3u35gncpq36be726ztepvs4", key)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let cp = archipel_proto::checkpoint::Checkpoint {
        origin: "archipel/bench/qkm5ubkcg3u35gncpq36be726ztepvs4".into(),
        size,
        root: archipel_proto::rfc6962::tree_root(&view, size)?,
        extensions: vec![],
    };
    let proof = TlogProof {
        extra: Some(view.leaf(idx)?),
        index: idx,
        proof: inclusion_proof_at(&view, idx, size)?,
        checkpoint: cp.sign(&signer).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let text = proof.encode();
    proof
        .verify(&signer.verifier(), None)
        .context("certificate verifies")?;
    println!(
        "deposit certificate at log size {size}: {} bytes",
        text.len()
    );
    let disk: u64 = walk(dir.path());
    println!(
        "on-disk size of the log: {:.1} MiB ({:.0} bytes per event)",
        disk as f64 / 1048576.0,
        disk as f64 / size as f64
    );
    Ok(())
}

fn walk(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                n += if m.is_dir() {
                    walk(&e.path())
                } else {
                    m.blocks() * 512
                };
            }
        }
    }
    n
}

fn time_now() -> String {
    archipel_node::clock::now_rfc3339()
}
