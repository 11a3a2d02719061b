//! Why blobs are files by default: sled's memory when it stores large values.
//!
//! Writes 1 GiB of values of a given size into a sled tree with a 64 MiB `cache_capacity`,
//! then prints the write rate and the process's RSS and peak RSS.
//! Run: `cargo run --release -p archipel-tests --bin sled_probe -- VALUE_KIB [FLUSH_EVERY]`.

use std::time::Instant;

fn rss_mib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let value_kib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4096);
    let flush_every: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let total = 1usize << 30;
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let tree = db.open_tree("blobs")?;
    let n = total / (value_kib * 1024);
    let mut buf = vec![0u8; value_kib * 1024];
    let start = Instant::now();
    for i in 0..n {
        buf[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let id = blake3::hash(&buf);
        tree.insert(id.as_bytes(), buf.as_slice())?;
        if flush_every > 0 && (i + 1) % flush_every == 0 {
            db.flush()?;
        }
    }
    db.flush()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sled, {n} values of {value_kib} KiB (1 GiB), cache_capacity 64 MiB: {:.0} MB/s, RSS {} MiB, peak {} MiB",
        total as f64 / secs / 1e6,
        rss_mib("VmRSS:"),
        rss_mib("VmHWM:")
    );
    Ok(())
}
