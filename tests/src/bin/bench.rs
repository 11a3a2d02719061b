//! `bench`: Archipel against restic, side by side, on the same corpus, machine and run.
//!
//! Run it through `./bench.sh` (builds the release binaries, then runs this one with the
//! arguments passed through); `bench --help` lists the flags.
//!
//! Workloads: one large file of random bytes (incompressible), and many small files of random
//! sizes and content in one directory. For each workload and tool it measures:
//! - ingest (archipel ingest / restic backup) and restore (archipel get / restic restore)
//!   throughput: corpus bytes / wall seconds, MB = 10^6 bytes, median of the runs;
//! - peak RSS (VmHWM from /proc) of the archipel-node process (a fresh process for every run,
//!   read right after the step), of the archipel CLI and of restic (both polled every 2 ms,
//!   then every 20 ms after the first 200 ms, until they exit: the last value seen);
//! - CPU seconds (user+sys) of the node (from /proc/PID/stat) and of the client process (the
//!   children's times of this process, exact);
//! - on-disk bytes per archived byte: allocated blocks of the node's data directory or of the
//!   restic repository after ingest.
//!
//! Method: every ingest goes to a fresh store (a new node data directory, a new restic
//! repository), so no run deduplicates against an earlier one. The corpus is read before
//! every ingest and the store before every restore, so that both tools see a warm page cache
//! (dropping the cache is not possible reliably here); `sync` runs before every timed step so
//! that earlier writes are not flushed during it. Archipel and restic runs are interleaved
//! (A, R, A, R...) so that noise from other work on the machine falls on both alike. Restored
//! bytes are compared with the corpus (BLAKE3), untimed.

use anyhow::{Context, Result, bail};
use archipel_tests::{TestNode, bin};
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const USAGE: &str = "\
bench: Archipel against restic, side by side (run it through ./bench.sh).

Usage: bench [FLAGS]

  --quick               small sizes for a smoke run (64 MiB file, 300 small files, 1 run each)
  --big-size SIZE       size of the large random file (default 1GiB; K/M/G suffixes are binary)
  --small-count N       number of small files (default 10000)
  --small-min SIZE      smallest small file (default 4KiB)
  --small-max SIZE      largest small file (default 64KiB)
  --seed N              seed of the corpus generator (default 42)
  --repeat N            runs of every step (default: 1 for the large file, 3 for small files)
  --repeat-big N        runs of every step of the large-file workload
  --repeat-small N      runs of every step of the small-files workload
  --workloads LIST      big,small (default both)
  --tools LIST          archipel,restic (default both)
  --batch N             at most N files per archipel record (default: all files in one record,
                        unless the OS argument length limit forces batches of 2000)
  --work DIR            keep the corpus in DIR/corpus and reuse it on later runs (default: a
                        temporary directory, removed at the end)
  --restic-compression MODE
                        restic's --compression for backup: auto (restic's default), off, max
  --keep                keep the stores (node data, restic repositories) of the last runs
  --out FILE            also write the results as JSON to FILE
  -h, --help            this help
";

// ---------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
struct Options {
    big_size: u64,
    small_count: usize,
    small_min: u64,
    small_max: u64,
    seed: u64,
    repeat_big: usize,
    repeat_small: usize,
    workloads: Vec<String>,
    archipel: bool,
    restic: bool,
    batch: usize,
    work: Option<PathBuf>,
    keep: bool,
    out: Option<PathBuf>,
    quick: bool,
    restic_compression: String,
}

fn parse_size(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        _ => bail!("bad size unit in {s:?} (use K, M or G: binary multiples)"),
    };
    n.checked_mul(mult).context("size overflows")
}

fn parse_options() -> Result<Options> {
    let mut flags: BTreeMap<String, String> = BTreeMap::new();
    let mut switches: HashSet<String> = HashSet::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "-h" || a == "--help" {
            print!("{USAGE}");
            std::process::exit(0);
        }
        let Some(name) = a.strip_prefix("--") else {
            bail!("unexpected argument {a:?}\n\n{USAGE}");
        };
        if matches!(name, "quick" | "keep") {
            switches.insert(name.to_string());
            continue;
        }
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = args
                    .next()
                    .with_context(|| format!("--{name} needs a value"))?;
                (name.to_string(), v)
            }
        };
        const KNOWN: &[&str] = &[
            "big-size",
            "small-count",
            "small-min",
            "small-max",
            "seed",
            "repeat",
            "repeat-big",
            "repeat-small",
            "workloads",
            "tools",
            "batch",
            "work",
            "out",
            "restic-compression",
        ];
        if !KNOWN.contains(&name.as_str()) {
            bail!("unknown flag --{name}\n\n{USAGE}");
        }
        flags.insert(name, value);
    }
    let quick = switches.contains("quick");
    let num = |name: &str, default: u64| -> Result<u64> {
        flags
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .with_context(|| format!("--{name}: not a number"))
            })
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let size = |name: &str, default: u64| -> Result<u64> {
        flags
            .get(name)
            .map(|v| parse_size(v).with_context(|| format!("--{name}")))
            .transpose()
            .map(|v| v.unwrap_or(default))
    };
    let list = |name: &str, default: &str| -> Vec<String> {
        flags
            .get(name)
            .map(String::as_str)
            .unwrap_or(default)
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let repeat = flags
        .get("repeat")
        .map(|v| v.parse::<usize>())
        .transpose()?;
    let (def_big, def_small) = if quick { (1, 1) } else { (1, 3) };
    let tools = list("tools", "archipel,restic");
    let workloads = list("workloads", "big,small");
    for w in &workloads {
        if !matches!(w.as_str(), "big" | "small") {
            bail!("--workloads: unknown workload {w:?} (big, small)");
        }
    }
    for t in &tools {
        if !matches!(t.as_str(), "archipel" | "restic") {
            bail!("--tools: unknown tool {t:?} (archipel, restic)");
        }
    }
    let o = Options {
        big_size: size("big-size", if quick { 64 << 20 } else { 1 << 30 })?,
        small_count: num("small-count", if quick { 300 } else { 10_000 })? as usize,
        small_min: size("small-min", 4 << 10)?,
        small_max: size("small-max", 64 << 10)?,
        seed: num("seed", 42)?,
        repeat_big: num("repeat-big", repeat.unwrap_or(def_big) as u64)? as usize,
        repeat_small: num("repeat-small", repeat.unwrap_or(def_small) as u64)? as usize,
        archipel: tools.iter().any(|t| t == "archipel"),
        restic: tools.iter().any(|t| t == "restic"),
        workloads,
        batch: num("batch", 0)? as usize,
        work: flags.get("work").map(PathBuf::from),
        keep: switches.contains("keep"),
        out: flags.get("out").map(PathBuf::from),
        quick,
        restic_compression: flags
            .get("restic-compression")
            .cloned()
            .unwrap_or_else(|| "auto".into()),
    };
    if !matches!(o.restic_compression.as_str(), "auto" | "off" | "max") {
        bail!("--restic-compression: auto, off or max");
    }
    if o.small_min == 0 || o.small_min > o.small_max {
        bail!("--small-min must be at least 1 and at most --small-max");
    }
    if o.big_size == 0 || o.repeat_big == 0 || o.repeat_small == 0 {
        bail!("sizes and repeat counts must be at least 1");
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// The corpus

#[derive(Debug, Clone)]
struct CorpusFile {
    name: String,
    size: u64,
    blake3: String,
}

#[derive(Debug, Clone)]
struct Corpus {
    /// "big" or "small".
    key: String,
    /// For the table, e.g. "1 GiB random file".
    label: String,
    dir: PathBuf,
    files: Vec<CorpusFile>,
    total: u64,
    repeat: usize,
}

fn human_bytes(n: u64) -> String {
    const UNITS: &[(u64, &str)] = &[(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (m, u) in UNITS {
        if n >= *m {
            let v = n as f64 / *m as f64;
            return if n.is_multiple_of(*m) {
                format!("{} {u}", n / m)
            } else {
                format!("{v:.1} {u}")
            };
        }
    }
    format!("{n} B")
}

/// Writes `size` random bytes from `rng` to `path`; returns their BLAKE3 (hex).
fn write_random(path: &Path, size: u64, rng: &mut impl RngCore) -> Result<String> {
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?,
    );
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        hasher.update(&buf[..n]);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Loads a corpus generated earlier (its stamp file is written last), if it is complete.
fn load_stamp(stamp: &Path, dir: &Path) -> Option<Vec<CorpusFile>> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(stamp).ok()?).ok()?;
    let files: Vec<CorpusFile> = v["files"]
        .as_array()?
        .iter()
        .map(|f| {
            Some(CorpusFile {
                name: f["name"].as_str()?.to_string(),
                size: f["size"].as_u64()?,
                blake3: f["blake3"].as_str()?.to_string(),
            })
        })
        .collect::<Option<_>>()?;
    let complete = files.iter().all(|f| {
        std::fs::metadata(dir.join(&f.name))
            .map(|m| m.len() == f.size)
            .unwrap_or(false)
    });
    let count = std::fs::read_dir(dir).ok()?.count();
    (complete && count == files.len()).then_some(files)
}

/// Generates a corpus with `make` in `root/<id>`, or reuses it if it is there already.
fn corpus(
    root: &Path,
    id: &str,
    make: impl FnOnce(&Path) -> Result<Vec<CorpusFile>>,
) -> Result<(PathBuf, Vec<CorpusFile>)> {
    let dir = root.join(id);
    // The stamp lives beside the directory, so the tools never archive it.
    let stamp = root.join(format!("{id}.json"));
    if let Some(files) = load_stamp(&stamp, &dir) {
        println!("corpus {id}: reusing {}", dir.display());
        return Ok((dir, files));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let files = make(&dir)?;
    let listed: Vec<Value> = files
        .iter()
        .map(|f| json!({"name": f.name, "size": f.size, "blake3": f.blake3}))
        .collect();
    std::fs::write(&stamp, serde_json::to_string(&json!({ "files": listed }))?)?;
    println!(
        "corpus {id}: generated in {:.1} s in {}",
        t.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok((dir, files))
}

/// Workload (a): one file of random bytes.
fn big_corpus(root: &Path, o: &Options) -> Result<Corpus> {
    let id = format!("big-{}-seed{}", o.big_size, o.seed);
    let size = o.big_size;
    let seed = o.seed;
    let (dir, files) = corpus(root, &id, |dir| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let blake3 = write_random(&dir.join("big.bin"), size, &mut rng)?;
        Ok(vec![CorpusFile {
            name: "big.bin".into(),
            size,
            blake3,
        }])
    })?;
    Ok(Corpus {
        key: "big".into(),
        label: format!("{} random file", human_bytes(o.big_size)),
        total: files.iter().map(|f| f.size).sum(),
        dir,
        files,
        repeat: o.repeat_big,
    })
}

/// Workload (b): many small files of random sizes and content, in one directory.
fn small_corpus(root: &Path, o: &Options) -> Result<Corpus> {
    let id = format!(
        "small-{}x{}-{}-seed{}",
        o.small_count, o.small_min, o.small_max, o.seed
    );
    let (count, min, max, seed) = (o.small_count, o.small_min, o.small_max, o.seed);
    let (dir, files) = corpus(root, &id, |dir| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5A11_F11E);
        (0..count)
            .map(|i| {
                let name = format!("f{i:06}.bin");
                let size = rng.gen_range(min..=max);
                let blake3 = write_random(&dir.join(&name), size, &mut rng)?;
                Ok(CorpusFile { name, size, blake3 })
            })
            .collect()
    })?;
    Ok(Corpus {
        key: "small".into(),
        label: format!(
            "{} files of {}-{}",
            o.small_count,
            human_bytes(o.small_min),
            human_bytes(o.small_max)
        ),
        total: files.iter().map(|f| f.size).sum(),
        dir,
        files,
        repeat: o.repeat_small,
    })
}

// ---------------------------------------------------------------------------------------
// Files: warm-up reads, disk usage, verification

/// Every regular file under `path` (or `path` itself), recursively.
fn walk(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("{}", path.display()))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(path)? {
            walk(&e?.path(), out)?;
        }
    } else if meta.is_file() {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Reads everything under `path` once so that the page cache holds it.
fn warm_read(path: &Path) -> Result<u64> {
    let mut files = Vec::new();
    walk(path, &mut files)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    for f in files {
        // Files of a running node may come and go (sled); what is readable is enough.
        let Ok(mut file) = std::fs::File::open(&f) else {
            continue;
        };
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(total)
}

/// Allocated bytes under `path` (blocks × 512, directories included, hard links once), like
/// `du -s --block-size=1`.
fn disk_usage(path: &Path) -> Result<u64> {
    fn visit(p: &Path, seen: &mut HashSet<(u64, u64)>, total: &mut u64) -> Result<()> {
        let m = std::fs::symlink_metadata(p)?;
        if seen.insert((m.dev(), m.ino())) {
            *total += m.blocks() * 512;
        }
        if m.is_dir() {
            for e in std::fs::read_dir(p)? {
                visit(&e?.path(), seen, total)?;
            }
        }
        Ok(())
    }
    let mut total = 0;
    visit(path, &mut HashSet::new(), &mut total)?;
    Ok(total)
}

/// Checks that the files under `restored` (found by name, at any depth) are exactly the
/// corpus, byte for byte.
fn verify_restore(corpus: &Corpus, restored: &Path) -> Result<()> {
    let mut files = Vec::new();
    walk(restored, &mut files)?;
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .context("restored file name")?
            .to_string();
        if let Some(prev) = found.insert(name.clone(), f.clone()) {
            bail!("restored twice: {} and {}", prev.display(), f.display());
        }
    }
    if found.len() != corpus.files.len() {
        bail!(
            "restored {} files, the corpus has {}",
            found.len(),
            corpus.files.len()
        );
    }
    for cf in &corpus.files {
        let path = found
            .get(&cf.name)
            .with_context(|| format!("{} was not restored", cf.name))?;
        let mut h = blake3::Hasher::new();
        h.update_reader(std::fs::File::open(path)?)?;
        if h.finalize().to_hex().as_str() != cf.blake3 {
            bail!("{} differs from the corpus", path.display());
        }
    }
    Ok(())
}

fn fresh_dir(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("remove {}", path.display()))?;
    }
    std::fs::create_dir_all(path)?;
    Ok(())
}

/// Lets the kernel write back earlier steps' dirty pages before the next timed step.
fn sync_disks() {
    let _ = Command::new("sync").status();
}

// ---------------------------------------------------------------------------------------
// /proc probes

/// VmHWM (peak resident set) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Fields after the command name in /proc/PID/stat (field 3, the state, is index 0).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .collect(),
    )
}

fn clock_ticks() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of a running process (all its threads).
fn process_cpu(pid: u32) -> Option<f64> {
    let f = stat_fields(&pid.to_string())?;
    Some((f.get(11)? + f.get(12)?) as f64 / clock_ticks())
}

/// User + system CPU seconds of this process's waited-for children, cumulated.
fn children_cpu() -> f64 {
    stat_fields("self")
        .and_then(|f| Some((f.get(13)? + f.get(14)?) as f64 / clock_ticks()))
        .unwrap_or(0.0)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------
// Measuring processes

/// One client process (the archipel CLI or restic), measured.
#[derive(Debug, Clone, Default)]
struct ProcStats {
    wall: f64,
    peak_rss_kib: u64,
    cpu: f64,
}

/// Runs `cmd` to its end, timing it and polling its VmHWM (every 2 ms for the first 200 ms,
/// then every 20 ms; VmHWM only grows, so the last value read is the peak up to then); fails
/// unless it succeeds. Returns its stats and its stdout.
fn run_measured(cmd: &mut Command) -> Result<(ProcStats, String)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cpu0 = children_cpu();
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("cannot run {cmd:?}"))?;
    let pid = child.id();
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = vm_hwm_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                // Finer at first, so that short runs are seen too.
                let since = start.elapsed();
                std::thread::sleep(if since < Duration::from_millis(200) {
                    Duration::from_millis(2)
                } else {
                    Duration::from_millis(20)
                });
            }
        })
    };
    let out = child.wait_with_output()?;
    let wall = start.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let cpu = children_cpu() - cpu0;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((
        ProcStats {
            wall,
            peak_rss_kib: peak.load(Ordering::Relaxed),
            cpu,
        },
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// One run of one step by one tool.
#[derive(Debug, Clone, Default)]
struct Sample {
    /// Wall seconds of the whole step (all client processes of it).
    secs: f64,
    client_rss_kib: u64,
    client_cpu: f64,
    /// The archipel-node process, for Archipel.
    server_rss_kib: Option<u64>,
    server_cpu: Option<f64>,
    /// One-minute load average just before the step: other work on the machine.
    load_before: f64,
}

impl Sample {
    fn add_client(&mut self, p: &ProcStats) {
        self.client_rss_kib = self.client_rss_kib.max(p.peak_rss_kib);
        self.client_cpu += p.cpu;
    }
}

struct Ctx {
    /// Stores and restore targets of the runs.
    runs: PathBuf,
    /// restic's --compression for backups.
    restic_compression: String,
    /// Most file names per archipel record.
    batch: usize,
}

// ---------------------------------------------------------------------------------------
// Archipel

/// The node holding the last ingest's records, stopped between steps.
struct ArchipelStore {
    root: PathBuf,
    node: TestNode,
    /// Record ID and its file names.
    records: Vec<(String, Vec<String>)>,
}

fn archipel_cmd(node: &TestNode) -> Command {
    let mut c = Command::new(bin("archipel"));
    c.env_remove("ARCHIPEL_NODE").arg("--node").arg(&node.data);
    c
}

/// Starts the node and returns its PID.
fn start_node(node: &mut TestNode) -> Result<u32> {
    node.start()?;
    node.pid().context("node has no PID")
}

/// One ingest of the corpus into a fresh node: `archipel ingest FILES... --title bench`.
fn archipel_ingest_once(
    ctx: &Ctx,
    corpus: &Corpus,
    run: usize,
) -> Result<(Sample, u64, ArchipelStore)> {
    let root = ctx.runs.join(format!("archipel-{}-{run}", corpus.key));
    fresh_dir(&root)?;
    let mut node = TestNode::init(&root, "node", "Territoire du banc d'essai")?;
    let pid = start_node(&mut node)?;
    warm_read(&corpus.dir)?;
    sync_disks();
    let mut s = Sample {
        load_before: load_average(),
        ..Default::default()
    };
    let cpu0 = process_cpu(pid).unwrap_or(0.0);
    let mut records = Vec::new();
    let start = Instant::now();
    for batch in corpus.files.chunks(ctx.batch.max(1)) {
        let names: Vec<String> = batch.iter().map(|f| f.name.clone()).collect();
        // Relative names (run in the corpus directory) keep the argument list short.
        let (p, out) = run_measured(
            archipel_cmd(&node)
                .current_dir(&corpus.dir)
                .arg("ingest")
                .args(&names)
                .args(["--title", "bench", "--json"]),
        )?;
        s.add_client(&p);
        let v: Value =
            serde_json::from_str(&out).with_context(|| format!("ingest said {out:?}"))?;
        let id = v["id"].as_str().context("no record id")?.to_string();
        records.push((id, names));
    }
    s.secs = start.elapsed().as_secs_f64();
    s.server_rss_kib = vm_hwm_kib(pid);
    s.server_cpu = process_cpu(pid).map(|c| c - cpu0);
    node.stop()?;
    let disk = disk_usage(&node.data)?;
    Ok((
        s,
        disk,
        ArchipelStore {
            root,
            node,
            records,
        },
    ))
}

/// One restore of every record with a freshly started node: `archipel get ID -o OUT`.
fn archipel_get_once(ctx: &Ctx, corpus: &Corpus, store: &mut ArchipelStore) -> Result<Sample> {
    let out_dir = ctx.runs.join(format!("archipel-{}-restored", corpus.key));
    fresh_dir(&out_dir)?;
    let pid = start_node(&mut store.node)?;
    warm_read(&store.node.data)?;
    sync_disks();
    let mut s = Sample {
        load_before: load_average(),
        ..Default::default()
    };
    let cpu0 = process_cpu(pid).unwrap_or(0.0);
    let start = Instant::now();
    for (id, names) in &store.records {
        // One file: -o is the file; several: -o is the directory they go in.
        let dest = match names.as_slice() {
            [one] => out_dir.join(one),
            _ => out_dir.clone(),
        };
        let (p, _) = run_measured(
            archipel_cmd(&store.node)
                .args(["get", id, "--json", "-o"])
                .arg(&dest),
        )?;
        s.add_client(&p);
    }
    s.secs = start.elapsed().as_secs_f64();
    s.server_rss_kib = vm_hwm_kib(pid);
    s.server_cpu = process_cpu(pid).map(|c| c - cpu0);
    store.node.stop()?;
    verify_restore(corpus, &out_dir).context("archipel get: restored bytes differ")?;
    std::fs::remove_dir_all(&out_dir)?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// restic

const RESTIC_PASSWORD: &str = "archipel-bench";

struct ResticRepo {
    repo: PathBuf,
}

fn restic_cmd(ctx: &Ctx, repo: &Path) -> Command {
    let mut c = Command::new("restic");
    c.env("RESTIC_PASSWORD", RESTIC_PASSWORD)
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_CACHE_DIR", ctx.runs.join("restic-cache"))
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND");
    c
}

/// One backup of the corpus into a fresh repository (`restic init`, untimed, then
/// `restic backup DIR`).
fn restic_backup_once(ctx: &Ctx, corpus: &Corpus, run: usize) -> Result<(Sample, u64, ResticRepo)> {
    let repo = ctx.runs.join(format!("restic-{}-{run}", corpus.key));
    if repo.exists() {
        std::fs::remove_dir_all(&repo)?;
    }
    run_measured(restic_cmd(ctx, &repo).args(["init", "--quiet"])).context("restic init")?;
    warm_read(&corpus.dir)?;
    sync_disks();
    let mut s = Sample {
        load_before: load_average(),
        ..Default::default()
    };
    let (p, _) = run_measured(
        restic_cmd(ctx, &repo)
            .args(["backup", "--quiet", "--host", "bench", "--compression"])
            .arg(&ctx.restic_compression)
            .arg(&corpus.dir),
    )?;
    s.secs = p.wall;
    s.add_client(&p);
    let disk = disk_usage(&repo)?;
    Ok((s, disk, ResticRepo { repo }))
}

/// One restore of the latest snapshot: `restic restore latest --target OUT`.
fn restic_restore_once(ctx: &Ctx, corpus: &Corpus, repo: &ResticRepo) -> Result<Sample> {
    let out_dir = ctx.runs.join(format!("restic-{}-restored", corpus.key));
    fresh_dir(&out_dir)?;
    warm_read(&repo.repo)?;
    sync_disks();
    let mut s = Sample {
        load_before: load_average(),
        ..Default::default()
    };
    let (p, _) = run_measured(
        restic_cmd(ctx, &repo.repo)
            .args(["restore", "latest", "--quiet", "--target"])
            .arg(&out_dir),
    )?;
    s.secs = p.wall;
    s.add_client(&p);
    verify_restore(corpus, &out_dir).context("restic restore: restored bytes differ")?;
    std::fs::remove_dir_all(&out_dir)?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// Results

/// All runs of one step by one tool.
#[derive(Debug, Clone, Default)]
struct ToolStep {
    samples: Vec<Sample>,
    /// After ingest: allocated bytes of the store (last run).
    disk_bytes: Option<u64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl ToolStep {
    fn median_secs(&self) -> f64 {
        median(self.samples.iter().map(|s| s.secs).collect())
    }
    fn mb_s(&self, bytes: u64) -> f64 {
        bytes as f64 / 1e6 / self.median_secs()
    }
    fn client_rss_mib(&self) -> f64 {
        self.samples
            .iter()
            .map(|s| s.client_rss_kib)
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    }
    fn server_rss_mib(&self) -> Option<f64> {
        self.samples
            .iter()
            .filter_map(|s| s.server_rss_kib)
            .max()
            .map(|k| k as f64 / 1024.0)
    }
    fn to_json(&self, bytes: u64) -> Value {
        json!({
            "median_secs": self.median_secs(),
            "mb_per_s": self.mb_s(bytes),
            "client_peak_rss_mib": self.client_rss_mib(),
            "server_peak_rss_mib": self.server_rss_mib(),
            "disk_bytes": self.disk_bytes,
            "disk_bytes_per_byte": self.disk_bytes.map(|d| d as f64 / bytes as f64),
            "runs": self.samples.iter().map(|s| json!({
                "secs": s.secs,
                "mb_per_s": bytes as f64 / 1e6 / s.secs,
                "client_peak_rss_kib": s.client_rss_kib,
                "client_cpu_secs": s.client_cpu,
                "server_peak_rss_kib": s.server_rss_kib,
                "server_cpu_secs": s.server_cpu,
                "load_before": s.load_before,
            })).collect::<Vec<_>>(),
        })
    }
}

/// One workload and step, both tools.
#[derive(Debug, Clone)]
struct Row {
    workload: String,
    key: String,
    step: &'static str,
    bytes: u64,
    files: usize,
    archipel: Option<ToolStep>,
    restic: Option<ToolStep>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        Some(self.archipel.as_ref()?.mb_s(self.bytes) / self.restic.as_ref()?.mb_s(self.bytes))
    }
}

/// Runs both steps of one workload, the tools interleaved run by run.
fn bench_workload(ctx: &Ctx, o: &Options, corpus: &Corpus) -> Result<Vec<Row>> {
    println!(
        "\n== {}: {} files, {} bytes, {} run(s) per step",
        corpus.label,
        corpus.files.len(),
        corpus.total,
        corpus.repeat
    );
    let mb_s = |s: &Sample| corpus.total as f64 / 1e6 / s.secs;
    let (mut a_in, mut r_in) = (ToolStep::default(), ToolStep::default());
    let mut a_store: Option<ArchipelStore> = None;
    let mut r_repo: Option<ResticRepo> = None;
    for run in 0..corpus.repeat {
        if o.archipel {
            // Only the last store is kept, for the restore step.
            if let Some(old) = a_store.take() {
                let root = old.root.clone();
                drop(old);
                std::fs::remove_dir_all(root)?;
            }
            let (s, disk, store) = archipel_ingest_once(ctx, corpus, run)?;
            println!(
                "  archipel ingest  run {}: {:8.3} s {:8.1} MB/s  node {:6.1} MiB  cli {:6.1} MiB  load {:.2}",
                run + 1,
                s.secs,
                mb_s(&s),
                s.server_rss_kib.unwrap_or(0) as f64 / 1024.0,
                s.client_rss_kib as f64 / 1024.0,
                s.load_before
            );
            a_in.samples.push(s);
            a_in.disk_bytes = Some(disk);
            a_store = Some(store);
        }
        if o.restic {
            if let Some(old) = r_repo.take() {
                std::fs::remove_dir_all(old.repo)?;
            }
            let (s, disk, repo) = restic_backup_once(ctx, corpus, run)?;
            println!(
                "  restic backup    run {}: {:8.3} s {:8.1} MB/s  restic {:6.1} MiB  load {:.2}",
                run + 1,
                s.secs,
                mb_s(&s),
                s.client_rss_kib as f64 / 1024.0,
                s.load_before
            );
            r_in.samples.push(s);
            r_in.disk_bytes = Some(disk);
            r_repo = Some(repo);
        }
    }
    let (mut a_out, mut r_out) = (ToolStep::default(), ToolStep::default());
    for run in 0..corpus.repeat {
        if let Some(store) = a_store.as_mut() {
            let s = archipel_get_once(ctx, corpus, store)?;
            println!(
                "  archipel get     run {}: {:8.3} s {:8.1} MB/s  node {:6.1} MiB  cli {:6.1} MiB  load {:.2}",
                run + 1,
                s.secs,
                mb_s(&s),
                s.server_rss_kib.unwrap_or(0) as f64 / 1024.0,
                s.client_rss_kib as f64 / 1024.0,
                s.load_before
            );
            a_out.samples.push(s);
        }
        if let Some(repo) = r_repo.as_ref() {
            let s = restic_restore_once(ctx, corpus, repo)?;
            println!(
                "  restic restore   run {}: {:8.3} s {:8.1} MB/s  restic {:6.1} MiB  load {:.2}",
                run + 1,
                s.secs,
                mb_s(&s),
                s.client_rss_kib as f64 / 1024.0,
                s.load_before
            );
            r_out.samples.push(s);
        }
    }
    if !o.keep {
        if let Some(store) = a_store.take() {
            let root = store.root.clone();
            drop(store);
            std::fs::remove_dir_all(root)?;
        }
        if let Some(repo) = r_repo.take() {
            std::fs::remove_dir_all(repo.repo)?;
        }
    }
    let row = |step, a: ToolStep, r: ToolStep| Row {
        workload: corpus.label.clone(),
        key: corpus.key.clone(),
        step,
        bytes: corpus.total,
        files: corpus.files.len(),
        archipel: o.archipel.then_some(a),
        restic: o.restic.then_some(r),
    };
    Ok(vec![
        row("ingest", a_in, r_in),
        row("restore", a_out, r_out),
    ])
}

// ---------------------------------------------------------------------------------------
// Report

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    json!({
        "date": command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]),
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": model,
        "mem_gib": mem_kib as f64 / (1024.0 * 1024.0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "restic": command_line("restic", &["version"]),
        "archipel": command_line(&bin("archipel").display().to_string(), &["--version"]),
    })
}

const NOTES: &[&str] = &[
    "MB = 10^6 bytes; throughput = corpus bytes / wall seconds, median of the runs.",
    "Warm cache: the corpus is read before each ingest, the store/repository before each restore; `sync` before each step (untimed).",
    "Fresh store per ingest run (new node data dir, new restic repo); a fresh archipel-node process per run and step.",
    "Peak RSS = VmHWM, max over the runs; node read after the step, CLI and restic polled every 2 ms (first 200 ms), then 20 ms, until they exit.",
    "Disk = allocated blocks of the node's data dir / restic repo after ingest, per corpus byte.",
    "Archipel and restic runs interleaved; other work on the machine shows as the load average.",
    "restic: a repository of restic's default format (0.14+: v2, compressed), password from the environment, its cache in the work dir.",
];

/// A Markdown-style table; the first `text_cols` columns are left-aligned, the rest (numbers)
/// right-aligned.
fn table(rows: &[Vec<String>], text_cols: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                let pad = widths[c] - s.chars().count();
                if c < text_cols {
                    format!("{s}{}", " ".repeat(pad))
                } else {
                    format!("{}{s}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        }
    }
    out
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

fn main_table(rows: &[Row]) -> String {
    let mut t = vec![
        [
            "workload",
            "step",
            "archipel MB/s",
            "restic MB/s",
            "archipel/restic",
            "node peak RSS MiB",
            "archipel CLI peak RSS MiB",
            "restic peak RSS MiB",
            "disk/byte archipel",
            "disk/byte restic",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        let a = r.archipel.as_ref();
        let rs = r.restic.as_ref();
        t.push(vec![
            r.workload.clone(),
            r.step.to_string(),
            opt(a.map(|a| a.mb_s(r.bytes)), 1),
            opt(rs.map(|x| x.mb_s(r.bytes)), 1),
            opt(r.ratio(), 2),
            opt(a.and_then(ToolStep::server_rss_mib), 1),
            opt(a.map(ToolStep::client_rss_mib), 1),
            opt(rs.map(ToolStep::client_rss_mib), 1),
            opt(
                a.and_then(|a| a.disk_bytes)
                    .map(|d| d as f64 / r.bytes as f64),
                3,
            ),
            opt(
                rs.and_then(|x| x.disk_bytes)
                    .map(|d| d as f64 / r.bytes as f64),
                3,
            ),
        ]);
    }
    table(&t, 2)
}

fn runs_table(rows: &[Row]) -> String {
    let mut t = vec![
        [
            "workload",
            "step",
            "tool",
            "runs (wall s)",
            "median s",
            "client CPU s",
            "node CPU s",
            "load before",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in rows {
        for (tool, ts) in [("archipel", &r.archipel), ("restic", &r.restic)] {
            let Some(ts) = ts else { continue };
            let list = |f: &dyn Fn(&Sample) -> Option<f64>, p: usize| {
                ts.samples
                    .iter()
                    .map(|s| opt(f(s), p))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            t.push(vec![
                r.workload.clone(),
                r.step.to_string(),
                tool.to_string(),
                list(&|s| Some(s.secs), 3),
                format!("{:.3}", ts.median_secs()),
                list(&|s| Some(s.client_cpu), 2),
                list(&|s| s.server_cpu, 2),
                list(&|s| Some(s.load_before), 2),
            ]);
        }
    }
    table(&t, 3)
}

/// The goals Archipel is held to; `None` when a figure is missing.
fn targets(rows: &[Row], quick: bool) -> Vec<(String, Option<bool>, String)> {
    let find = |key: &str, step: &str| rows.iter().find(|r| r.key == key && r.step == step);
    let mut out = Vec::new();
    if let Some(r) = find("big", "ingest") {
        let a = r.archipel.as_ref().map(|a| a.mb_s(r.bytes));
        out.push((
            "large file ingest >= 250 MB/s".to_string(),
            a.map(|a| a >= 250.0),
            opt(a, 1) + " MB/s",
        ));
        out.push((
            "large file ingest >= restic".to_string(),
            r.ratio().map(|x| x >= 1.0),
            format!("ratio {}", opt(r.ratio(), 2)),
        ));
    }
    if let Some(r) = find("small", "ingest") {
        out.push((
            "small files ingest >= restic".to_string(),
            r.ratio().map(|x| x >= 1.0),
            format!("ratio {}", opt(r.ratio(), 2)),
        ));
    }
    let node_peak = rows
        .iter()
        .filter_map(|r| r.archipel.as_ref()?.server_rss_mib())
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    out.push((
        "node peak RSS < 200 MiB".to_string(),
        node_peak.map(|p| p < 200.0),
        opt(node_peak, 1) + " MiB",
    ));
    if quick {
        for t in &mut out {
            t.2.push_str(" (quick sizes: not conclusive)");
        }
    }
    out
}

// ---------------------------------------------------------------------------------------

/// Most files per record that keep `archipel ingest NAMES...` well under the OS limit.
fn batch_size(o: &Options, corpora: &[Corpus]) -> usize {
    if o.batch > 0 {
        return o.batch;
    }
    let arg_max: usize = command_line("getconf", &["ARG_MAX"])
        .parse()
        .unwrap_or(128 * 1024);
    let env: usize = std::env::vars_os()
        .map(|(k, v)| k.len() + v.len() + 2)
        .sum();
    let budget = (arg_max / 2).saturating_sub(env + 4096);
    let widest = corpora
        .iter()
        .map(|c| c.files.iter().map(|f| f.name.len() + 1 + 8).sum::<usize>())
        .max()
        .unwrap_or(0);
    if widest <= budget {
        usize::MAX
    } else {
        println!(
            "note: the file list ({widest} bytes) exceeds the argument budget ({budget} of ARG_MAX {arg_max}): archipel ingests in records of 2000 files"
        );
        2000
    }
}

fn main() -> Result<()> {
    let o = parse_options()?;
    if o.restic && Command::new("restic").arg("version").output().is_err() {
        bail!(
            "restic is not installed: apt-get install -y restic (./bench.sh does it), or pass --tools archipel"
        );
    }
    // The corpus may be kept (--work); the stores of the runs never are, unless --keep.
    let temp = tempfile::Builder::new()
        .prefix("archipel-bench")
        .tempdir()?;
    let work = o.work.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let runs = work.join("runs");
    fresh_dir(&runs)?;
    let corpus_root = work.join("corpus");
    std::fs::create_dir_all(&corpus_root)?;

    let info = machine();
    println!(
        "Archipel vs restic, {}: {} × {}, {:.1} GiB RAM, kernel {}",
        info["date"].as_str().unwrap_or(""),
        info["nproc"],
        info["cpu_model"].as_str().unwrap_or(""),
        info["mem_gib"].as_f64().unwrap_or(0.0),
        info["kernel"].as_str().unwrap_or("")
    );
    println!(
        "{} | {} | binaries in {}",
        info["archipel"].as_str().unwrap_or(""),
        info["restic"].as_str().unwrap_or(""),
        archipel_tests::bin_dir().display()
    );
    println!("work directory {}", work.display());

    let mut corpora = Vec::new();
    for w in &o.workloads {
        corpora.push(match w.as_str() {
            "big" => big_corpus(&corpus_root, &o)?,
            _ => small_corpus(&corpus_root, &o)?,
        });
    }
    let ctx = Ctx {
        runs: runs.clone(),
        restic_compression: o.restic_compression.clone(),
        batch: batch_size(&o, &corpora),
    };
    let load_start = load_average();
    let mut rows = Vec::new();
    for c in &corpora {
        rows.extend(bench_workload(&ctx, &o, c)?);
    }
    let load_end = load_average();

    println!(
        "\nArchipel vs restic — {} — {} × {} — load average {:.2} at start, {:.2} at end{}",
        info["date"].as_str().unwrap_or(""),
        info["nproc"],
        info["cpu_model"].as_str().unwrap_or(""),
        load_start,
        load_end,
        if o.quick {
            " — QUICK (smoke) sizes"
        } else {
            ""
        }
    );
    for n in NOTES {
        println!("  {n}");
    }
    if o.restic_compression != "auto" {
        println!(
            "  restic backs up with --compression {}.",
            o.restic_compression
        );
    }
    if ctx.batch != usize::MAX {
        println!(
            "  Archipel ingests at most {} files per record (several records).",
            ctx.batch
        );
    }
    println!();
    print!("{}", main_table(&rows));
    println!();
    print!("{}", runs_table(&rows));
    println!();
    let goals = targets(&rows, o.quick);
    for (what, ok, figure) in &goals {
        let mark = match ok {
            Some(true) => "MET   ",
            Some(false) => "MISSED",
            None => "n/a   ",
        };
        println!("target {mark} {what}: {figure}");
    }

    if let Some(path) = &o.out {
        let doc = json!({
            "machine": info,
            "load_average": {"start": load_start, "end": load_end},
            "options": {
                "quick": o.quick,
                "big_size": o.big_size,
                "small_count": o.small_count,
                "small_min": o.small_min,
                "small_max": o.small_max,
                "seed": o.seed,
                "repeat_big": o.repeat_big,
                "repeat_small": o.repeat_small,
                "restic_compression": o.restic_compression,
                "archipel_files_per_record": (ctx.batch != usize::MAX).then_some(ctx.batch),
            },
            "notes": NOTES,
            "results": rows.iter().map(|r| json!({
                "workload": r.key,
                "label": r.workload,
                "step": r.step,
                "bytes": r.bytes,
                "files": r.files,
                "archipel": r.archipel.as_ref().map(|a| a.to_json(r.bytes)),
                "restic": r.restic.as_ref().map(|x| x.to_json(r.bytes)),
                "ratio_archipel_restic": r.ratio(),
            })).collect::<Vec<_>>(),
            "targets": goals.iter().map(|(what, ok, figure)| json!({"target": what, "met": ok, "figure": figure})).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nresults written to {}", path.display());
    }
    if o.keep {
        let _ = temp.keep();
        println!("stores kept in {}", runs.display());
    } else {
        std::fs::remove_dir_all(&runs)?;
        drop(temp);
    }
    Ok(())
}
