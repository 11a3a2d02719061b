//! `fed_bench`: Archipel's federation against rsync, side by side, on the same corpus,
//! machine and run.
//!
//! Run it through `./fed_bench.sh` (installs rsync if needed, builds the release binaries,
//! then runs this one with the arguments passed through); `fed_bench --help` lists the flags.
//!
//! For each workload (one large random file as one record; many small random files, one
//! record each) it measures:
//! 1. Replication to two peers over loopback: three release nodes (origin + 2 peers, distinct
//!    territories, pinned both ways, `[federation] replication_interval_secs = 1`, the
//!    challenge/scrub/anti-entropy/witness schedules pushed out of the way). The corpus is
//!    ingested at the origin before the origin pins its peers (ingest is not timed); the
//!    clock starts right before the origin's first `archipel peer add` and stops when
//!    `archipel federation --json` (polled every 200 ms) says `fully_replicated == records`.
//!    Against it: `rsync -a corpus/ rsync://127.0.0.1:PORT/mod/` to two rsync daemons on
//!    loopback, both transfers in parallel, timed until both finish. Throughput = plaintext
//!    corpus bytes / wall seconds (MB = 10^6 bytes), the same bytes for both tools, although
//!    Archipel moves ciphertext (slightly larger) over TLS and rsync plain bytes in the clear.
//!    Peak RSS: VmHWM of each node, reset (`/proc/PID/clear_refs` = 5) after ingest, read
//!    when replication is complete; the rsync processes' VmHWM polled every 20 ms (each
//!    daemon forks two processes per connection; the figure is the sum of the peaks).
//! 2. Restore from the two peers: `archipel-node export-kit` of the origin, SIGKILL, its data
//!    directory deleted, then `archipel-node restore --kit K --data D --peer A1 --peer A2`
//!    timed (plaintext bytes of every record / wall seconds); then the restored node is
//!    started and a few records read back with `archipel get` and compared byte for byte.
//! 3. Time from ingest to 3 copies receipted (last workload's cluster, before the restore):
//!    N small records ingested one at a time with `archipel ingest FILE`, then
//!    `archipel status RECORD --json` polled every 20 ms until `holders` has two entries;
//!    median and p90 in milliseconds, from the start of the ingest command.

use anyhow::{Context, Result, bail};
use archipel_tests::cluster::{KIT_PASSPHRASE, TERRITORIES, free_port};
use archipel_tests::{TestNode, bin};
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const USAGE: &str = "\
fed_bench: Archipel's replication and restore against rsync, side by side (run it through
./fed_bench.sh).

Usage: fed_bench [FLAGS]

  --quick               small sizes for a smoke run (64 MiB file, 300 small files, 5 receipts)
  --big-size SIZE       size of the large random file (default 1GiB; K/M/G are binary)
  --small-count N       number of small records/files (default 10000)
  --small-min SIZE      smallest small file (default 4KiB)
  --small-max SIZE      largest small file (default 64KiB)
  --seed N              seed of the corpus generator (default 42; same corpus as bench)
  --workloads LIST      big,small (default both)
  --tools LIST          archipel,rsync (default both)
  --repeat N            replication runs of each tool, interleaved (default 1); the table
                        shows the median run, restore and receipts run after the last one
  --receipts N          records for the ingest-to-3-copies latency (default 20; 0 = skip)
  --no-restore          skip the restore step
  --batch-records N     [federation] batch_records of the nodes (default: the node's)
  --concurrency N       [federation] concurrency of the nodes (default: the node's)
  --poll-holders        detect completion from the holders' reports (`records_we_hold`,
                        cheap) and ask the origin (`fully_replicated`) only once they
                        hold everything: the origin's report walks every record, and
                        polling it every 200 ms costs the origin CPU (to measure that)
  --perf DIR            `perf record` the origin and the first holder during replication
                        (flat profiles, DIR/origin-WORKLOAD.data, DIR/holder-WORKLOAD.data)
  --timeout SECS        give up waiting for replication after SECS (default 3600)
  --work DIR            keep the corpus in DIR/corpus and reuse it (default: a temporary
                        directory, removed at the end); compatible with bench's --work
  --keep                keep the node data directories and rsync targets
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
    workloads: Vec<String>,
    archipel: bool,
    rsync: bool,
    receipts: usize,
    repeat: usize,
    restore: bool,
    batch_records: Option<u32>,
    concurrency: Option<u32>,
    poll_holders: bool,
    perf: Option<PathBuf>,
    timeout: Duration,
    work: Option<PathBuf>,
    keep: bool,
    out: Option<PathBuf>,
    quick: bool,
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
        if matches!(name, "quick" | "keep" | "no-restore" | "poll-holders") {
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
            "workloads",
            "tools",
            "receipts",
            "repeat",
            "batch-records",
            "concurrency",
            "timeout",
            "perf",
            "work",
            "out",
        ];
        if !KNOWN.contains(&name.as_str()) {
            bail!("unknown flag --{name}\n\n{USAGE}");
        }
        flags.insert(name, value);
    }
    let quick = switches.contains("quick");
    let num = |name: &str| -> Result<Option<u64>> {
        flags
            .get(name)
            .map(|v| {
                v.parse::<u64>()
                    .with_context(|| format!("--{name}: not a number"))
            })
            .transpose()
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
    let tools = list("tools", "archipel,rsync");
    let workloads = list("workloads", "big,small");
    for w in &workloads {
        if !matches!(w.as_str(), "big" | "small") {
            bail!("--workloads: unknown workload {w:?} (big, small)");
        }
    }
    for t in &tools {
        if !matches!(t.as_str(), "archipel" | "rsync") {
            bail!("--tools: unknown tool {t:?} (archipel, rsync)");
        }
    }
    let o = Options {
        big_size: size("big-size", if quick { 64 << 20 } else { 1 << 30 })?,
        small_count: num("small-count")?.unwrap_or(if quick { 300 } else { 10_000 }) as usize,
        small_min: size("small-min", 4 << 10)?,
        small_max: size("small-max", 64 << 10)?,
        seed: num("seed")?.unwrap_or(42),
        archipel: tools.iter().any(|t| t == "archipel"),
        rsync: tools.iter().any(|t| t == "rsync"),
        workloads,
        receipts: num("receipts")?.unwrap_or(if quick { 5 } else { 20 }) as usize,
        repeat: (num("repeat")?.unwrap_or(1) as usize).max(1),
        restore: !switches.contains("no-restore"),
        batch_records: num("batch-records")?.map(|v| v as u32),
        concurrency: num("concurrency")?.map(|v| v as u32),
        poll_holders: switches.contains("poll-holders"),
        perf: flags.get("perf").map(PathBuf::from),
        timeout: Duration::from_secs(num("timeout")?.unwrap_or(3600)),
        work: flags.get("work").map(PathBuf::from),
        keep: switches.contains("keep"),
        out: flags.get("out").map(PathBuf::from),
        quick,
    };
    if o.small_min == 0 || o.small_min > o.small_max {
        bail!("--small-min must be at least 1 and at most --small-max");
    }
    if o.big_size == 0 || o.small_count == 0 {
        bail!("sizes and counts must be at least 1");
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// The corpus (the same generator, names and stamps as `bench`, so `--work` shares it)

#[derive(Debug, Clone)]
struct CorpusFile {
    name: String,
    size: u64,
    blake3: String,
}

#[derive(Debug, Clone)]
struct Corpus {
    key: String,
    label: String,
    dir: PathBuf,
    files: Vec<CorpusFile>,
    total: u64,
}

fn human_bytes(n: u64) -> String {
    const UNITS: &[(u64, &str)] = &[(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (m, u) in UNITS {
        if n >= *m {
            return if n.is_multiple_of(*m) {
                format!("{} {u}", n / m)
            } else {
                format!("{:.1} {u}", n as f64 / *m as f64)
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

fn corpus(
    root: &Path,
    id: &str,
    make: impl FnOnce(&Path) -> Result<Vec<CorpusFile>>,
) -> Result<(PathBuf, Vec<CorpusFile>)> {
    let dir = root.join(id);
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

fn big_corpus(root: &Path, o: &Options) -> Result<Corpus> {
    let id = format!("big-{}-seed{}", o.big_size, o.seed);
    let (size, seed) = (o.big_size, o.seed);
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
        label: format!("one {} file", human_bytes(o.big_size)),
        total: files.iter().map(|f| f.size).sum(),
        dir,
        files,
    })
}

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
            "{} records of {}-{}",
            o.small_count,
            human_bytes(o.small_min),
            human_bytes(o.small_max)
        ),
        total: files.iter().map(|f| f.size).sum(),
        dir,
        files,
    })
}

fn fresh_dir(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("remove {}", path.display()))?;
    }
    std::fs::create_dir_all(path)?;
    Ok(())
}

/// Reads every file of the corpus once so that both tools find it in the page cache.
fn warm_read(dir: &Path) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for e in std::fs::read_dir(dir)? {
        let mut f = std::fs::File::open(e?.path())?;
        while std::io::Read::read(&mut f, &mut buf)? > 0 {}
    }
    Ok(())
}

fn blake3_file(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path).with_context(|| format!("{}", path.display()))?)?;
    Ok(h.finalize().to_hex().to_string())
}

fn sync_disks() {
    let _ = Command::new("sync").status();
}

// ---------------------------------------------------------------------------------------
// /proc probes

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// VmHWM (peak resident set) of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

/// Resets a process's VmHWM to its current RSS (Linux ≥ 4.0; needs the right to write
/// /proc/PID/clear_refs).
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
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

/// User + system CPU seconds of a process's waited-for children.
fn process_children_cpu(pid: &str) -> f64 {
    stat_fields(pid)
        .and_then(|f| Some((f.get(13)? + f.get(14)?) as f64 / clock_ticks()))
        .unwrap_or(0.0)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls the VmHWM of every process in the trees under some root PIDs (every 20 ms) and
/// keeps each process's peak; a process is attributed to the first root it descends from.
struct TreeSampler {
    peaks: Arc<Mutex<HashMap<u32, (usize, u64)>>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TreeSampler {
    fn start(roots: Vec<u32>) -> TreeSampler {
        let peaks: Arc<Mutex<HashMap<u32, (usize, u64)>>> = Arc::default();
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peaks, done) = (peaks.clone(), done.clone());
            std::thread::spawn(move || {
                loop {
                    let stop = done.load(Ordering::Relaxed);
                    // Parent of every process now.
                    let mut parent: HashMap<u32, u32> = HashMap::new();
                    if let Ok(rd) = std::fs::read_dir("/proc") {
                        for e in rd.flatten() {
                            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok())
                            else {
                                continue;
                            };
                            if let Some(f) = stat_fields(&e.file_name().to_string_lossy()) {
                                parent.insert(pid, f.get(1).copied().unwrap_or(0) as u32);
                            }
                        }
                    }
                    for &pid in parent.keys() {
                        // Walk up to a root.
                        let (mut p, mut hops) = (pid, 0);
                        let root = loop {
                            if let Some(i) = roots.iter().position(|r| *r == p) {
                                break Some(i);
                            }
                            match parent.get(&p) {
                                Some(&pp) if pp > 1 && hops < 64 => {
                                    p = pp;
                                    hops += 1;
                                }
                                _ => break None,
                            }
                        };
                        if let (Some(root), Some(kib)) = (root, vm_hwm_kib(pid))
                            && let Ok(mut m) = peaks.lock()
                        {
                            let e = m.entry(pid).or_insert((root, 0));
                            e.1 = e.1.max(kib);
                        }
                    }
                    if stop {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        TreeSampler {
            peaks,
            done,
            thread: Some(thread),
        }
    }

    /// Stops sampling (after one last pass); per root: (sum of the processes' peaks, the
    /// largest peak, processes seen), KiB.
    fn finish(mut self, roots: usize) -> Vec<(u64, u64, usize)> {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let m = self.peaks.lock().map(|m| m.clone()).unwrap_or_default();
        (0..roots)
            .map(|r| {
                let v: Vec<u64> = m.values().filter(|(i, _)| *i == r).map(|x| x.1).collect();
                (
                    v.iter().sum(),
                    v.iter().copied().max().unwrap_or(0),
                    v.len(),
                )
            })
            .collect()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------
// Archipel: three nodes

struct Cluster {
    root: PathBuf,
    nodes: Vec<TestNode>,
    listen: Vec<String>,
    batch_records: Option<u32>,
    concurrency: Option<u32>,
}

fn archipel(node: &TestNode) -> Command {
    let mut c = Command::new(bin("archipel"));
    c.env_remove("ARCHIPEL_NODE").arg("--node").arg(&node.data);
    c
}

/// Runs a command to its end, failing with its stderr unless it succeeds; returns stdout.
fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cli_json(node: &TestNode, args: &[&str]) -> Result<Value> {
    let out = run_ok(archipel(node).args(args).arg("--json"))?;
    serde_json::from_str(&out).with_context(|| format!("archipel {args:?} said {out:?}"))
}

impl Cluster {
    fn new(root: &Path, o: &Options) -> Result<Cluster> {
        fresh_dir(root)?;
        let mut c = Cluster {
            root: root.to_path_buf(),
            nodes: Vec::new(),
            listen: Vec::new(),
            batch_records: o.batch_records,
            concurrency: o.concurrency,
        };
        for (i, (territory, _)) in TERRITORIES.iter().take(3).enumerate() {
            let addr = format!("127.0.0.1:{}", free_port());
            let node = TestNode::init_with(
                root,
                &format!("node{i}"),
                territory,
                &["--peer-listen", &addr],
            )?;
            c.nodes.push(node);
            c.listen.push(addr);
        }
        for i in 0..3 {
            c.write_config(i)?;
            c.nodes[i].start()?;
        }
        Ok(c)
    }

    /// `<data>/archipel.toml`: fast replication sweeps; challenges, scrub, anti-entropy
    /// and witnessing far out of the way.
    fn write_config(&self, i: usize) -> Result<()> {
        let mut extra = String::new();
        if let Some(b) = self.batch_records {
            extra.push_str(&format!("batch_records = {b}\n"));
        }
        if let Some(c) = self.concurrency {
            extra.push_str(&format!("concurrency = {c}\n"));
        }
        let text = format!(
            "peer_listen = {listen:?}\n\
             [federation]\n\
             replication_factor = 3\n\
             zone = {zone:?}\n\
             replication_interval_secs = 1\n\
             anti_entropy_interval_secs = 86400\n\
             challenge_interval_secs = 86400\n\
             scrub_interval_secs = 86400\n\
             holder_grace_secs = 2592000\n\
             witness_interval_secs = 86400\n\
             {extra}",
            listen = self.listen[i],
            zone = TERRITORIES[i].1,
        );
        std::fs::write(self.nodes[i].data.join("archipel.toml"), text)?;
        Ok(())
    }

    /// `archipel peer add` at `of` for `peer`, at its own listener.
    fn add_peer(&self, of: usize, peer: usize) -> Result<()> {
        run_ok(archipel(&self.nodes[of]).args([
            "peer",
            "add",
            "--id",
            &self.nodes[peer].node_id,
            "--address",
            &self.listen[peer],
            "--territory",
            TERRITORIES[peer].0,
            "--zone",
            TERRITORIES[peer].1,
            "--offer",
            "1000G",
        ]))?;
        Ok(())
    }

    fn pid(&self, i: usize) -> Result<u32> {
        self.nodes[i].pid().context("node not running")
    }
}

/// Ingests one-file records over one admin connection (the CLI's own gRPC calls, without
/// a process per record); returns the record IDs in order.
fn ingest_records(node: &TestNode, dir: &Path, files: &[CorpusFile]) -> Result<Vec<String>> {
    use archipel_proto::v1::archive_client::ArchiveClient;
    use archipel_proto::v1::{
        Commit, FileHeader, IngestRequest, RecordMetadata, ingest_request::Item,
    };
    let data = node.data.clone();
    archipel_tests::runtime().block_on(async {
        let channel = archipel_tests::admin_channel(&data).await;
        let mut client = ArchiveClient::new(channel);
        let mut ids = Vec::with_capacity(files.len());
        for f in files {
            let bytes = std::fs::read(dir.join(&f.name))?;
            let items = [
                Item::Metadata(RecordMetadata {
                    title: format!("fed_bench {}", f.name),
                    ..Default::default()
                }),
                Item::File(FileHeader {
                    name: f.name.clone(),
                    size: bytes.len() as u64,
                    media_type: String::new(),
                }),
                Item::Chunk(bytes),
                Item::Commit(Commit {}),
            ];
            let stream = tokio_stream::iter(
                items
                    .into_iter()
                    .map(|item| IngestRequest { item: Some(item) }),
            );
            let resp = client
                .ingest(stream)
                .await
                .with_context(|| format!("ingest {}", f.name))?;
            ids.push(resp.into_inner().id);
        }
        Ok(ids)
    })
}

/// Ingests the corpus at the origin (untimed): the large file with `archipel ingest`, small
/// files one record each over one admin connection. Returns (record ID, file) pairs.
fn ingest_corpus(c: &Cluster, corpus: &Corpus) -> Result<Vec<(String, CorpusFile)>> {
    let t = Instant::now();
    let origin = &c.nodes[0];
    let ids = if corpus.files.len() == 1 {
        let f = &corpus.files[0];
        let v: Value =
            serde_json::from_str(&run_ok(archipel(origin).current_dir(&corpus.dir).args([
                "ingest",
                &f.name,
                "--title",
                "fed_bench",
                "--json",
            ]))?)?;
        vec![v["id"].as_str().context("no record id")?.to_string()]
    } else {
        ingest_records(origin, &corpus.dir, &corpus.files)?
    };
    println!(
        "  ingest at the origin (untimed): {} records in {:.1} s",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(ids.into_iter().zip(corpus.files.iter().cloned()).collect())
}

#[derive(Debug, Clone, Default)]
struct Replication {
    secs: f64,
    records: u64,
    /// VmHWM of origin, holder 1, holder 2 since the reset after ingest.
    rss_kib: [u64; 3],
    cpu: [f64; 3],
    polls: usize,
    poll_mean_ms: f64,
    /// (seconds since start, fully replicated) every few seconds.
    progress: Vec<(f64, u64)>,
    load_before: f64,
    /// Stored bytes each holder keeps for the origin, from the origin's report.
    held_bytes: Vec<u64>,
}

/// Pins the peers (they first pin the origin), then times replication until complete.
fn replicate(c: &Cluster, expected: u64, o: &Options, key: &str) -> Result<Replication> {
    // The peers pin the origin first: the origin has no peers yet, so nothing moves.
    c.add_peer(1, 0)?;
    c.add_peer(2, 0)?;
    c.add_peer(1, 2)?;
    c.add_peer(2, 1)?;
    sync_disks();
    let mut r = Replication {
        load_before: load_average(),
        ..Default::default()
    };
    let pids: Vec<u32> = (0..3).map(|i| c.pid(i)).collect::<Result<_>>()?;
    let cpu0: Vec<f64> = pids
        .iter()
        .map(|p| process_cpu(*p).unwrap_or(0.0))
        .collect();
    for p in &pids {
        if !reset_hwm(*p) {
            println!("  note: cannot reset VmHWM of {p}: peaks include ingest");
        }
    }
    let mut perfs = Vec::new();
    if let Some(dir) = &o.perf {
        std::fs::create_dir_all(dir)?;
        for (i, who) in [(0, "origin"), (1, "holder")] {
            perfs.push(
                Command::new("perf")
                    .args([
                        "record",
                        "-q",
                        "-F",
                        "499",
                        "-p",
                        &pids[i].to_string(),
                        "-o",
                    ])
                    .arg(dir.join(format!("{who}-{key}.data")))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("perf record")?,
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let start = Instant::now();
    c.add_peer(0, 1)?;
    c.add_peer(0, 2)?;
    let mut poll_time = 0.0;
    let mut last_print = 0.0;
    loop {
        let tick = Instant::now();
        if o.poll_holders {
            let mut held = Vec::new();
            for h in 1..3 {
                let v = cli_json(&c.nodes[h], &["federation"])?;
                let origin = &c.nodes[0].node_id;
                held.push(
                    v["peers"]
                        .as_array()
                        .and_then(|a| a.iter().find(|p| p["node_id"] == origin.as_str()))
                        .and_then(|p| p["records_we_hold"].as_u64())
                        .unwrap_or(0),
                );
            }
            if held.iter().any(|n| *n < expected) {
                poll_time += tick.elapsed().as_secs_f64();
                r.polls += 1;
                let now = start.elapsed().as_secs_f64();
                if now - last_print >= 5.0 {
                    last_print = now;
                    println!("    {now:7.1} s: holders keep {held:?} of {expected} records");
                }
                if start.elapsed() > o.timeout {
                    bail!("replication not complete after {:?}", o.timeout);
                }
                let spent = tick.elapsed();
                if spent < Duration::from_millis(200) {
                    std::thread::sleep(Duration::from_millis(200) - spent);
                }
                continue;
            }
        }
        let v = cli_json(&c.nodes[0], &["federation"])?;
        poll_time += tick.elapsed().as_secs_f64();
        r.polls += 1;
        let records = v["records"].as_u64().unwrap_or(0);
        let full = v["fully_replicated"].as_u64().unwrap_or(0);
        let now = start.elapsed().as_secs_f64();
        if records == expected && full == records {
            r.secs = now;
            r.records = records;
            r.held_bytes = v["peers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| p["bytes_held_for_us"].as_u64().unwrap_or(0))
                        .collect()
                })
                .unwrap_or_default();
            r.progress.push((now, full));
            break;
        }
        if now - last_print >= 5.0 {
            last_print = now;
            r.progress.push((now, full));
            println!("    {now:7.1} s: {full}/{records} records with 3 copies");
        }
        if start.elapsed() > o.timeout {
            bail!(
                "replication not complete after {:?}: {v}\norigin log tail:\n{}",
                o.timeout,
                tail(&c.nodes[0].log_text(), 30)
            );
        }
        let spent = tick.elapsed();
        if spent < Duration::from_millis(200) {
            std::thread::sleep(Duration::from_millis(200) - spent);
        }
    }
    for (i, p) in pids.iter().enumerate() {
        r.rss_kib[i] = vm_hwm_kib(*p).unwrap_or(0);
        r.cpu[i] = process_cpu(*p).unwrap_or(0.0) - cpu0[i];
    }
    r.poll_mean_ms = poll_time * 1000.0 / r.polls.max(1) as f64;
    for mut p in perfs {
        let _ = Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
    Ok(r)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[derive(Debug, Clone, Default)]
struct Receipts {
    /// From the start of `archipel ingest` to `status` showing two holders, ms.
    total_ms: Vec<f64>,
    /// The ingest command alone, ms.
    ingest_ms: Vec<f64>,
    bytes: u64,
}

/// N small records ingested one at a time; each waited for until it has 3 copies.
fn receipt_latency(
    c: &Cluster,
    n: usize,
    dir: &Path,
    o: &Options,
) -> Result<(Receipts, Vec<(String, CorpusFile)>)> {
    fresh_dir(dir)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(o.seed ^ 0x00C0_FFEE);
    let mut r = Receipts::default();
    let mut records = Vec::new();
    for k in 0..n {
        let name = format!("latency{k:03}.bin");
        let size = rng.gen_range(o.small_min..=o.small_max);
        let blake3 = write_random(&dir.join(&name), size, &mut rng)?;
        r.bytes += size;
        // Let the previous record's traffic and the 1 s sweep settle.
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        let v: Value =
            serde_json::from_str(&run_ok(archipel(&c.nodes[0]).current_dir(dir).args([
                "ingest",
                &name,
                "--title",
                "fed_bench latency",
                "--json",
            ]))?)?;
        let ingest = start.elapsed().as_secs_f64() * 1000.0;
        let id = v["id"].as_str().context("no record id")?.to_string();
        loop {
            let s = cli_json(&c.nodes[0], &["status", &id])?;
            let holders = s["holders"].as_array().map(Vec::len).unwrap_or(0);
            if holders >= 2 {
                break;
            }
            if start.elapsed() > Duration::from_secs(120) {
                bail!("record {id} still lacks holders after 120 s: {s}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let total = start.elapsed().as_secs_f64() * 1000.0;
        println!("    record {k:2}: ingest {ingest:6.1} ms, 3 copies receipted at {total:7.1} ms");
        r.total_ms.push(total);
        r.ingest_ms.push(ingest);
        records.push((id, CorpusFile { name, size, blake3 }));
    }
    Ok((r, records))
}

#[derive(Debug, Clone, Default)]
struct Restore {
    secs: f64,
    bytes: u64,
    records: usize,
    rss_kib: u64,
    /// VmHWM of the two holders while they served the restore (reset before).
    holder_rss_kib: [u64; 2],
    cpu: f64,
    checked: usize,
    stdout: String,
}

/// Exports the origin's kit, kills and wipes it, restores it from the two peers (timed),
/// starts it again and reads a few records back.
fn restore(c: &mut Cluster, records: &[(String, CorpusFile)]) -> Result<Restore> {
    let kit = c.root.join("origin.kit");
    run_ok(
        Command::new(bin("archipel-node"))
            .args(["export-kit", "--data"])
            .arg(&c.nodes[0].data)
            .arg("--out")
            .arg(&kit)
            .env("ARCHIPEL_PASSPHRASE", KIT_PASSPHRASE),
    )
    .context("export-kit")?;
    c.nodes[0].kill();
    let data = c.nodes[0].data.clone();
    std::fs::remove_dir_all(&data)?;
    let holders: Vec<u32> = (1..3).map(|i| c.pid(i)).collect::<Result<_>>()?;
    for p in &holders {
        reset_hwm(*p);
    }
    sync_disks();
    let mut cmd = Command::new(bin("archipel-node"));
    cmd.args(["restore", "--kit"])
        .arg(&kit)
        .arg("--data")
        .arg(&data)
        .args(["--peer", &c.listen[1], "--peer", &c.listen[2]])
        .env("ARCHIPEL_PASSPHRASE", KIT_PASSPHRASE)
        .env("ARCHIPEL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cpu0 = process_children_cpu("self");
    let start = Instant::now();
    let child = cmd.spawn().context("run archipel-node restore")?;
    let sampler = TreeSampler::start(vec![child.id()]);
    let out = child.wait_with_output()?;
    let secs = start.elapsed().as_secs_f64();
    let peaks = sampler.finish(1);
    if !out.status.success() {
        bail!(
            "restore failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut r = Restore {
        secs,
        bytes: records.iter().map(|(_, f)| f.size).sum(),
        records: records.len(),
        rss_kib: peaks[0].1,
        cpu: process_children_cpu("self") - cpu0,
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        ..Default::default()
    };
    for (i, p) in holders.iter().enumerate() {
        r.holder_rss_kib[i] = vm_hwm_kib(*p).unwrap_or(0);
    }
    // Byte for byte: the first and last records and a spread of others (every one when
    // there are few).
    c.write_config(0)?;
    c.nodes[0].start()?;
    let out_dir = c.root.join("restored");
    fresh_dir(&out_dir)?;
    let step = (records.len() / 20).max(1);
    let mut picks: Vec<usize> = (0..records.len()).step_by(step).collect();
    picks.push(records.len() - 1);
    picks.dedup();
    for i in picks {
        let (id, f) = &records[i];
        let dest = out_dir.join(&f.name);
        run_ok(archipel(&c.nodes[0]).args(["get", id, "-o"]).arg(&dest))?;
        if blake3_file(&dest)? != f.blake3 {
            bail!("restored record {id} ({}) differs from the corpus", f.name);
        }
        std::fs::remove_file(&dest)?;
        r.checked += 1;
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------
// rsync: two daemons on loopback

struct RsyncDaemon {
    child: Child,
    port: u16,
    dest: PathBuf,
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_rsync_daemon(dir: &Path) -> Result<RsyncDaemon> {
    fresh_dir(dir)?;
    let dest = dir.join("dest");
    std::fs::create_dir_all(&dest)?;
    let port = free_port();
    // The daemon keeps our user (a daemon started by root would otherwise become nobody).
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&dest)?;
        (m.uid(), m.gid())
    };
    let conf = dir.join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "pid file = {pid}\nlog file = {log}\nuse chroot = false\nuid = {uid}\ngid = {gid}\n\
             [mod]\npath = {dest}\nread only = false\n",
            pid = dir.join("rsyncd.pid").display(),
            log = dir.join("rsyncd.log").display(),
            dest = dest.display(),
        ),
    )?;
    let child = Command::new("rsync")
        .arg("--daemon")
        .arg("--no-detach")
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--port={port}"))
        .arg("--address=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start rsync --daemon")?;
    let d = RsyncDaemon { child, port, dest };
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("rsync daemon on port {port} did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(d)
}

#[derive(Debug, Clone, Default)]
struct RsyncRun {
    secs: f64,
    /// Until both transfers finished and a `sync` wrote everything to disk.
    secs_with_sync: f64,
    /// Per daemon: sum of its processes' peaks, largest process, processes.
    daemon_rss: Vec<(u64, u64, usize)>,
    /// The two client processes (each forks none with rsync://): largest peak.
    client_rss_kib: u64,
    cpu_daemons: f64,
    cpu_clients: f64,
    load_before: f64,
}

fn rsync_run(corpus: &Corpus, dir: &Path) -> Result<RsyncRun> {
    let daemons = [
        start_rsync_daemon(&dir.join("d1"))?,
        start_rsync_daemon(&dir.join("d2"))?,
    ];
    warm_read(&corpus.dir)?;
    sync_disks();
    let mut r = RsyncRun {
        load_before: load_average(),
        ..Default::default()
    };
    let dcpu0: f64 = daemons
        .iter()
        .map(|d| process_children_cpu(&d.child.id().to_string()))
        .sum();
    let ccpu0 = process_children_cpu("self");
    let src = format!("{}/", corpus.dir.display());
    let start = Instant::now();
    let clients: Vec<Child> = daemons
        .iter()
        .map(|d| {
            Command::new("rsync")
                .arg("-a")
                .arg(&src)
                .arg(format!("rsync://127.0.0.1:{}/mod/", d.port))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("run rsync")
        })
        .collect::<Result<_>>()?;
    let mut roots: Vec<u32> = daemons.iter().map(|d| d.child.id()).collect();
    roots.extend(clients.iter().map(Child::id));
    let sampler = TreeSampler::start(roots);
    for c in clients {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "rsync failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    r.secs = start.elapsed().as_secs_f64();
    // The daemons reap their children right after the transfer; give them a moment.
    std::thread::sleep(Duration::from_millis(100));
    let peaks = sampler.finish(4);
    sync_disks();
    r.secs_with_sync = start.elapsed().as_secs_f64() - 0.1;
    r.daemon_rss = peaks[..2].to_vec();
    r.client_rss_kib = peaks[2].1.max(peaks[3].1);
    r.cpu_daemons = daemons
        .iter()
        .map(|d| process_children_cpu(&d.child.id().to_string()))
        .sum::<f64>()
        - dcpu0;
    r.cpu_clients = process_children_cpu("self") - ccpu0;
    // Everything arrived: sizes of all, bytes of a spread.
    for d in &daemons {
        for (i, f) in corpus.files.iter().enumerate() {
            let p = d.dest.join(&f.name);
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(u64::MAX);
            if len != f.size {
                bail!("rsync: {} has {len} bytes, want {}", p.display(), f.size);
            }
            if i % 500 == 0 && blake3_file(&p)? != f.blake3 {
                bail!("rsync: {} differs", p.display());
            }
        }
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------
// Driving one workload

#[derive(Debug, Default)]
struct WorkloadResult {
    label: String,
    key: String,
    bytes: u64,
    files: usize,
    ingest_secs: f64,
    archipel_runs: Vec<Replication>,
    rsync_runs: Vec<RsyncRun>,
    restore: Option<Restore>,
    receipts: Option<Receipts>,
}

/// The run of median wall time (the lower middle one for an even count).
fn median_run<T>(runs: &[T], secs: impl Fn(&T) -> f64) -> Option<&T> {
    let mut v: Vec<&T> = runs.iter().collect();
    v.sort_by(|a, b| secs(a).total_cmp(&secs(b)));
    v.get(v.len().saturating_sub(1) / 2).copied()
}

impl WorkloadResult {
    fn archipel(&self) -> Option<&Replication> {
        median_run(&self.archipel_runs, |r| r.secs)
    }
    fn rsync(&self) -> Option<&RsyncRun> {
        median_run(&self.rsync_runs, |r| r.secs)
    }
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn bench_workload(o: &Options, corpus: &Corpus, runs: &Path, last: bool) -> Result<WorkloadResult> {
    println!(
        "\n== {}: {} files, {} bytes",
        corpus.label,
        corpus.files.len(),
        corpus.total
    );
    let mut w = WorkloadResult {
        label: corpus.label.clone(),
        key: corpus.key.clone(),
        bytes: corpus.total,
        files: corpus.files.len(),
        ..Default::default()
    };
    for run in 0..o.repeat {
        let final_run = run + 1 == o.repeat;
        if o.repeat > 1 {
            println!("  run {} of {}", run + 1, o.repeat);
        }
        if o.archipel {
            let root = runs.join(format!("archipel-{}", corpus.key));
            let mut c = Cluster::new(&root, o)?;
            warm_read(&corpus.dir)?;
            let t = Instant::now();
            let mut records = ingest_corpus(&c, corpus)?;
            w.ingest_secs = t.elapsed().as_secs_f64();
            println!("  archipel: pinning the peers, replicating...");
            let r = replicate(&c, records.len() as u64, o, &corpus.key)?;
            println!(
                "  archipel replication: {:8.3} s {:8.1} MB/s  origin {:6.1} MiB  holders {:6.1} / {:6.1} MiB  CPU s origin {:.1} holders {:.1} / {:.1}  ({} polls, {:.0} ms each)",
                r.secs,
                mb_s(corpus.total, r.secs),
                mib(r.rss_kib[0]),
                mib(r.rss_kib[1]),
                mib(r.rss_kib[2]),
                r.cpu[0],
                r.cpu[1],
                r.cpu[2],
                r.polls,
                r.poll_mean_ms
            );
            w.archipel_runs.push(r);
            if final_run && last && o.receipts > 0 {
                println!(
                    "  ingest to 3 copies receipted, {} records one at a time:",
                    o.receipts
                );
                let (rc, extra) = receipt_latency(&c, o.receipts, &root.join("latency"), o)?;
                println!(
                    "  ingest -> 3 copies: median {:.0} ms, p90 {:.0} ms (ingest alone median {:.0} ms)",
                    percentile(&rc.total_ms, 0.5),
                    percentile(&rc.total_ms, 0.9),
                    percentile(&rc.ingest_ms, 0.5)
                );
                w.receipts = Some(rc);
                records.extend(extra);
            }
            if final_run && o.restore {
                let rs = restore(&mut c, &records)?;
                println!(
                    "  archipel restore:     {:8.3} s {:8.1} MB/s  restore {:6.1} MiB  holders {:6.1} / {:6.1} MiB  CPU {:.1} s  ({} records checked byte for byte)",
                    rs.secs,
                    mb_s(rs.bytes, rs.secs),
                    mib(rs.rss_kib),
                    mib(rs.holder_rss_kib[0]),
                    mib(rs.holder_rss_kib[1]),
                    rs.cpu,
                    rs.checked
                );
                println!("    {}", rs.stdout.replace('\n', "\n    "));
                w.restore = Some(rs);
            }
            for n in &mut c.nodes {
                n.kill();
            }
            if !o.keep {
                drop(c);
                std::fs::remove_dir_all(&root)?;
            }
        }
        if o.rsync {
            let dir = runs.join(format!("rsync-{}", corpus.key));
            let r = rsync_run(corpus, &dir)?;
            println!(
                "  rsync to 2 daemons:   {:8.3} s {:8.1} MB/s  ({:.3} s with sync)  daemons {:6.1} / {:6.1} MiB  clients {:6.1} MiB  CPU s daemons {:.1} clients {:.1}",
                r.secs,
                mb_s(corpus.total, r.secs),
                r.secs_with_sync,
                mib(r.daemon_rss[0].0),
                mib(r.daemon_rss[1].0),
                mib(r.client_rss_kib),
                r.cpu_daemons,
                r.cpu_clients
            );
            w.rsync_runs.push(r);
            if !o.keep {
                std::fs::remove_dir_all(&dir)?;
            }
        }
    }
    Ok(w)
}

fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    // Nearest rank.
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
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

fn opt(v: Option<f64>, prec: usize) -> String {
    v.filter(|x| x.is_finite())
        .map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

fn table(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&format!("| {} |\n", r.join(" | ")));
        if i == 0 {
            out.push_str(&format!("|{}\n", "---|".repeat(r.len())));
        }
    }
    out
}

fn main() -> Result<()> {
    let o = parse_options()?;
    if o.rsync && Command::new("rsync").arg("--version").output().is_err() {
        bail!(
            "rsync is not installed: apt-get install -y rsync (./fed_bench.sh does it), or pass --tools archipel"
        );
    }
    let temp = tempfile::Builder::new()
        .prefix("archipel-fed-bench")
        .tempdir()?;
    let work = o.work.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let runs = work.join("fed-runs");
    fresh_dir(&runs)?;
    let corpus_root = work.join("corpus");
    std::fs::create_dir_all(&corpus_root)?;
    let date = command_line("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]);
    let rsync_version = command_line("rsync", &["--version"])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let archipel_version = command_line(&bin("archipel").display().to_string(), &["--version"]);
    println!(
        "Archipel federation vs rsync, {date}: {} cores; {archipel_version} | {rsync_version}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!("work directory {}", work.display());
    let mut corpora = Vec::new();
    for w in &o.workloads {
        corpora.push(match w.as_str() {
            "big" => big_corpus(&corpus_root, &o)?,
            _ => small_corpus(&corpus_root, &o)?,
        });
    }
    let load_start = load_average();
    let mut results = Vec::new();
    let n = corpora.len();
    for (i, c) in corpora.iter().enumerate() {
        results.push(bench_workload(&o, c, &runs, i + 1 == n)?);
    }
    let load_end = load_average();

    println!(
        "\nArchipel federation vs rsync — {date} — load average {load_start:.2} at start, {load_end:.2} at end{}",
        if o.quick {
            " — QUICK (smoke) sizes"
        } else {
            ""
        }
    );
    println!(
        "  Throughput = plaintext corpus bytes / wall seconds, MB = 10^6 bytes; median of {} run(s) (--repeat), restore and receipts once.\n  \
         Archipel: from the origin's first `peer add` to `federation --json` saying fully_replicated == records (polled every 200 ms).\n  \
         rsync: two `rsync -a` to two daemons on loopback, in parallel, until both exit (no fsync; \"+sync\" adds a `sync`).\n  \
         Peak RSS: node VmHWM reset after ingest; rsync: sum of the peaks of each daemon's processes.\n",
        o.repeat
    );
    let mut t = vec![
        [
            "workload",
            "Archipel s",
            "Archipel MB/s",
            "rsync s",
            "rsync MB/s",
            "Archipel/rsync",
            "rsync+sync MB/s",
            "origin RSS MiB",
            "holder RSS MiB",
            "rsync daemon RSS MiB",
            "rsync client RSS MiB",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for w in &results {
        let a = w.archipel();
        let r = w.rsync();
        let am = a.map(|a| mb_s(w.bytes, a.secs));
        let rm = r.map(|r| mb_s(w.bytes, r.secs));
        t.push(vec![
            w.label.clone(),
            opt(a.map(|a| a.secs), 2),
            opt(am, 1),
            opt(r.map(|r| r.secs), 2),
            opt(rm, 1),
            opt(am.zip(rm).map(|(a, r)| a / r), 2),
            opt(r.map(|r| mb_s(w.bytes, r.secs_with_sync)), 1),
            opt(a.map(|a| mib(a.rss_kib[0])), 1),
            a.map(|a| format!("{:.1} / {:.1}", mib(a.rss_kib[1]), mib(a.rss_kib[2])))
                .unwrap_or_else(|| "-".into()),
            r.map(|r| {
                format!(
                    "{:.1} / {:.1}",
                    mib(r.daemon_rss[0].0),
                    mib(r.daemon_rss[1].0)
                )
            })
            .unwrap_or_else(|| "-".into()),
            opt(r.map(|r| mib(r.client_rss_kib)), 1),
        ]);
    }
    print!("{}", table(&t));
    if o.repeat > 1 {
        for w in &results {
            let list = |v: Vec<f64>| {
                v.iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!(
                "  {}: runs (s) Archipel {} | rsync {} | rsync+sync {}",
                w.label,
                list(w.archipel_runs.iter().map(|a| a.secs).collect()),
                list(w.rsync_runs.iter().map(|r| r.secs).collect()),
                list(w.rsync_runs.iter().map(|r| r.secs_with_sync).collect())
            );
        }
    }
    let mut t = vec![
        [
            "workload",
            "restore s",
            "restore MB/s",
            "records",
            "restore RSS MiB",
            "holder RSS MiB",
            "checked",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for w in &results {
        if let Some(r) = &w.restore {
            t.push(vec![
                w.label.clone(),
                format!("{:.2}", r.secs),
                format!("{:.1}", mb_s(r.bytes, r.secs)),
                r.records.to_string(),
                format!("{:.1}", mib(r.rss_kib)),
                format!(
                    "{:.1} / {:.1}",
                    mib(r.holder_rss_kib[0]),
                    mib(r.holder_rss_kib[1])
                ),
                r.checked.to_string(),
            ]);
        }
    }
    if t.len() > 1 {
        println!();
        print!("{}", table(&t));
    }
    for w in &results {
        if let Some(r) = &w.receipts {
            println!(
                "\ningest -> 3 copies receipted ({} records, {}): median {:.0} ms, p90 {:.0} ms, max {:.0} ms; ingest alone median {:.0} ms",
                r.total_ms.len(),
                w.label,
                percentile(&r.total_ms, 0.5),
                percentile(&r.total_ms, 0.9),
                percentile(&r.total_ms, 1.0),
                percentile(&r.ingest_ms, 0.5)
            );
        }
    }
    println!();
    for w in &results {
        if let (Some(a), Some(r)) = (w.archipel(), w.rsync()) {
            let ratio = r.secs / a.secs;
            println!(
                "target {} {}: Archipel/rsync {:.2} (>= 0.80)",
                if ratio >= 0.8 { "MET   " } else { "MISSED" },
                w.label,
                ratio
            );
        }
    }

    if let Some(path) = &o.out {
        let doc = json!({
            "date": date,
            "archipel": archipel_version,
            "rsync": rsync_version,
            "load_average": {"start": load_start, "end": load_end},
            "options": {
                "big_size": o.big_size, "small_count": o.small_count,
                "small_min": o.small_min, "small_max": o.small_max, "seed": o.seed,
                "batch_records": o.batch_records, "concurrency": o.concurrency,
                "poll_holders": o.poll_holders,
                "receipts": o.receipts, "quick": o.quick,
            },
            "results": results.iter().map(|w| json!({
                "workload": w.key,
                "label": w.label,
                "bytes": w.bytes,
                "files": w.files,
                "ingest_secs_untimed": w.ingest_secs,
                "archipel_runs_secs": w.archipel_runs.iter().map(|a| a.secs).collect::<Vec<_>>(),
                "rsync_runs_secs": w.rsync_runs.iter().map(|r| r.secs).collect::<Vec<_>>(),
                "archipel": w.archipel().map(|a| json!({
                    "secs": a.secs,
                    "mb_per_s": mb_s(w.bytes, a.secs),
                    "records": a.records,
                    "peak_rss_kib": {"origin": a.rss_kib[0], "holder1": a.rss_kib[1], "holder2": a.rss_kib[2]},
                    "cpu_secs": {"origin": a.cpu[0], "holder1": a.cpu[1], "holder2": a.cpu[2]},
                    "polls": a.polls,
                    "poll_mean_ms": a.poll_mean_ms,
                    "progress": a.progress,
                    "held_bytes": a.held_bytes,
                    "load_before": a.load_before,
                })),
                "rsync": w.rsync().map(|r| json!({
                    "secs": r.secs,
                    "mb_per_s": mb_s(w.bytes, r.secs),
                    "secs_with_sync": r.secs_with_sync,
                    "daemon_rss_kib": r.daemon_rss.iter().map(|d| json!({"sum": d.0, "largest": d.1, "processes": d.2})).collect::<Vec<_>>(),
                    "client_rss_kib": r.client_rss_kib,
                    "cpu_secs": {"daemons": r.cpu_daemons, "clients": r.cpu_clients},
                    "load_before": r.load_before,
                })),
                "ratio_archipel_rsync": w.archipel().zip(w.rsync()).map(|(a, r)| r.secs / a.secs),
                "restore": w.restore.as_ref().map(|r| json!({
                    "secs": r.secs, "bytes": r.bytes, "records": r.records,
                    "mb_per_s": mb_s(r.bytes, r.secs),
                    "peak_rss_kib": r.rss_kib, "holder_peak_rss_kib": r.holder_rss_kib,
                    "cpu_secs": r.cpu, "checked_byte_for_byte": r.checked, "output": r.stdout,
                })),
                "receipts": w.receipts.as_ref().map(|r| json!({
                    "total_ms": r.total_ms, "ingest_ms": r.ingest_ms,
                    "median_ms": percentile(&r.total_ms, 0.5),
                    "p90_ms": percentile(&r.total_ms, 0.9),
                })),
            })).collect::<Vec<_>>(),
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
