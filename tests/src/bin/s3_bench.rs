//! Archipel with its blobs in Garage against a plain S3 upload of the same corpus with
//! rclone, and against Archipel on its embedded store, side by side in one run (issue 8).
//!
//! For each setup (embedded store; Garage, one node; Garage, three nodes with three copies):
//! a fresh release node ingests the corpus with the real CLI (`archipel ingest`), then reads
//! it back (`archipel get`), each timed from the command's start to its end; the node's peak
//! RSS (VmHWM) is read at the end. Against Garage, `rclone copy` uploads the same files to
//! the same server (and downloads them back), timed the same way.
//! Throughput = plaintext corpus bytes / wall seconds (MB = 10^6 bytes).
//!
//! Usage: `s3_bench [--big-mib N] [--small N] [--work DIR]` (run by `./s3_bench.sh`).
#![allow(clippy::print_stdout)]

use anyhow::{Context, Result, bail};
use archipel_tests::s3::{ACCESS_KEY, BUCKET, REGION, S3Server, SECRET_KEY, credentials_toml};
use archipel_tests::{TestNode, p, random_file};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Args {
    big_mib: usize,
    small: usize,
    work: Option<PathBuf>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        big_mib: 512,
        small: 2000,
        work: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("a flag without its value");
        match flag.as_str() {
            "--big-mib" => a.big_mib = value()?.parse()?,
            "--small" => a.small = value()?.parse()?,
            "--work" => a.work = Some(PathBuf::from(value()?)),
            "--help" | "-h" => {
                println!("s3_bench [--big-mib N (512)] [--small N (2000)] [--work DIR]");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other} (see --help)"),
        }
    }
    Ok(a)
}

/// The corpus: one large file, and many small files (4–64 KiB) in a directory.
struct Corpus {
    big: PathBuf,
    small_dir: PathBuf,
    small_files: Vec<PathBuf>,
    big_bytes: u64,
    small_bytes: u64,
}

fn corpus(dir: &Path, a: &Args) -> Result<Corpus> {
    let big = dir.join("big.bin");
    random_file(&big, a.big_mib << 20, 1)?;
    let small_dir = dir.join("small");
    std::fs::create_dir_all(&small_dir)?;
    let mut small_files = Vec::with_capacity(a.small);
    let mut small_bytes = 0u64;
    for i in 0..a.small {
        // A spread of sizes from 4 to 64 KiB, reproducible.
        let size = 4096 + (i * 7919 % 61_440);
        let f = small_dir.join(format!("piece-{i:05}.bin"));
        random_file(&f, size, 100 + i as u64)?;
        small_bytes += size as u64;
        small_files.push(f);
    }
    Ok(Corpus {
        big_bytes: std::fs::metadata(&big)?.len(),
        big,
        small_dir,
        small_files,
        small_bytes,
    })
}

fn timed(cmd: &mut Command) -> Result<(f64, String)> {
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn vm_hwm_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// Seconds for: ingest big, get big, ingest small, get small; and the node's peak RSS.
struct Figures {
    secs: [f64; 4],
    rss_mib: f64,
}

fn cli(node: &TestNode) -> Command {
    let mut c = Command::new(archipel_tests::bin("archipel"));
    c.arg("--node").arg(&node.data);
    c
}

fn archipel_run(root: &Path, name: &str, config: &str, c: &Corpus) -> Result<Figures> {
    let mut node = TestNode::init(root, name, "Région Bretagne")?;
    std::fs::write(node.data.join("archipel.toml"), config)?;
    node.start()?;
    let id_of = |out: &str| -> Result<String> {
        let v: serde_json::Value = serde_json::from_str(out)?;
        Ok(v["id"].as_str().context("no id")?.to_string())
    };
    let (t0, out) = timed(cli(&node).args(["ingest", p(&c.big), "--title", "Grand", "--json"]))?;
    let big_id = id_of(&out)?;
    let got = root.join(format!("{name}-big.out"));
    let (t1, _) = timed(cli(&node).args(["get", &big_id, "-o", p(&got)]))?;
    let mut ingest_small = cli(&node);
    ingest_small.arg("ingest");
    ingest_small.args(&c.small_files);
    ingest_small.args(["--title", "Petits", "--json"]);
    let (t2, out) = timed(&mut ingest_small)?;
    let small_id = id_of(&out)?;
    let got_dir = root.join(format!("{name}-small.out"));
    let (t3, _) = timed(cli(&node).args(["get", &small_id, "-o", p(&got_dir)]))?;
    let rss_mib = node.pid().map(vm_hwm_mib).unwrap_or(0.0);
    // Read back byte for byte: a fast wrong answer is no answer.
    if blake3_of(&got)? != blake3_of(&c.big)? {
        bail!("{name}: the large file read back differs");
    }
    let _ = std::fs::remove_file(&got);
    node.stop()?;
    Ok(Figures {
        secs: [t0, t1, t2, t3],
        rss_mib,
    })
}

fn blake3_of(path: &Path) -> Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize())
}

/// rclone against `server`, configured through the environment (no config file).
fn rclone(server: &S3Server) -> Command {
    let mut c = Command::new("rclone");
    // The AWS SDK inside rclone 1.60 cannot use a custom CA bundle with its own transport
    // and fails at start when one is set; loopback is plain HTTP anyway.
    c.env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG_G_TYPE", "s3")
        .env("RCLONE_CONFIG_G_PROVIDER", "Other")
        .env("RCLONE_CONFIG_G_ENDPOINT", server.endpoint())
        .env("RCLONE_CONFIG_G_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_CONFIG_G_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RCLONE_CONFIG_G_REGION", REGION)
        .env("RCLONE_CONFIG_G_FORCE_PATH_STYLE", "true")
        .args(["--config", "/dev/null", "--transfers", "8"]);
    c
}

/// Seconds for: upload big, download big, upload small, download small.
fn rclone_run(root: &Path, server: &S3Server, tag: &str, c: &Corpus) -> Result<[f64; 4]> {
    let dest = |what: &str| format!("G:{BUCKET}/rclone-{tag}/{what}");
    let (t0, _) = timed(rclone(server).args(["copy", p(&c.big), &dest("big")]))?;
    let back = root.join(format!("rclone-{tag}-big"));
    let (t1, _) = timed(rclone(server).args(["copy", &dest("big"), p(&back)]))?;
    let (t2, _) = timed(rclone(server).args(["copy", p(&c.small_dir), &dest("small")]))?;
    let back_small = root.join(format!("rclone-{tag}-small"));
    let (t3, _) = timed(rclone(server).args(["copy", &dest("small"), p(&back_small)]))?;
    let _ = std::fs::remove_dir_all(&back);
    Ok([t0, t1, t2, t3])
}

fn s3_config(server: &S3Server, root: &Path, prefix: &str) -> Result<String> {
    let creds = root.join(format!("{prefix}-creds.toml"));
    std::fs::write(&creds, credentials_toml())?;
    Ok(format!(
        "blob_store = \"s3\"\n{}credentials_file = \"{}\"\n",
        server.config_table(&server.endpoint(), prefix),
        creds.display()
    ))
}

fn mbs(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn main() -> Result<()> {
    let a = args()?;
    if Command::new("rclone").arg("version").output().is_err() {
        bail!("rclone is missing (apt-get install rclone; s3_bench.sh does it)");
    }
    let tmp;
    let root = match &a.work {
        Some(w) => {
            std::fs::create_dir_all(w)?;
            w.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let c = corpus(&root, &a)?;
    let load0 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    std::fs::create_dir_all(root.join("g1"))?;
    std::fs::create_dir_all(root.join("g3"))?;
    let embedded = archipel_run(&root, "embedded", "", &c)?;
    let g1 = S3Server::garage(&root.join("g1"))?.context("garage is not installed")?;
    let arch_g1 = archipel_run(&root, "garage1", &s3_config(&g1, &root, "one")?, &c)?;
    let rc_g1 = rclone_run(&root, &g1, "one", &c)?;
    drop(g1);
    let g3 = S3Server::garage_cluster(&root.join("g3"), 3)?.context("garage is not installed")?;
    let arch_g3 = archipel_run(&root, "garage3", &s3_config(&g3[0], &root, "three")?, &c)?;
    let rc_g3 = rclone_run(&root, &g3[0], "three", &c)?;
    drop(g3);
    let load1 = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let sizes = [c.big_bytes, c.big_bytes, c.small_bytes, c.small_bytes];
    let steps = [
        "large file, ingest / upload",
        "large file, get / download",
        "small files, ingest / upload",
        "small files, get / download",
    ];
    println!(
        "\nS3 benchmark, {} UTC; corpus: one {} MiB file, {} files of 4-64 KiB ({:.1} MB)",
        archipel_node::clock::now_rfc3339(),
        a.big_mib,
        a.small,
        c.small_bytes as f64 / 1e6
    );
    println!(
        "load average at start {}, at end {}",
        load0.trim(),
        load1.trim()
    );
    println!(
        "\n| step | Archipel on embedded store | Archipel on Garage (1 node) | rclone on Garage (1 node) | ratio | Archipel on Garage (3 nodes, 3 copies) | rclone on Garage (3 nodes) | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for i in 0..4 {
        let (e, a1, r1, a3, r3) = (
            mbs(sizes[i], embedded.secs[i]),
            mbs(sizes[i], arch_g1.secs[i]),
            mbs(sizes[i], rc_g1[i]),
            mbs(sizes[i], arch_g3.secs[i]),
            mbs(sizes[i], rc_g3[i]),
        );
        println!(
            "| {} | {e:.1} MB/s | {a1:.1} MB/s | {r1:.1} MB/s | **{:.2}** | {a3:.1} MB/s | {r3:.1} MB/s | **{:.2}** |",
            steps[i],
            a1 / r1,
            a3 / r3
        );
    }
    println!(
        "\nnode peak RSS: embedded {:.1} MiB, Garage 1 node {:.1} MiB, Garage 3 nodes {:.1} MiB",
        embedded.rss_mib, arch_g1.rss_mib, arch_g3.rss_mib
    );
    Ok(())
}
