//! `archipel-node`: the daemon. Thin: parse arguments, then call the library.

use anyhow::{Context, bail};
use archipel_node::{Config, Node, RecoveryKit, init, is_initialised};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "archipel-node",
    version,
    about = "Archipel archive node: a territory's records, encrypted and content-addressed."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a node's identity and keys in a data directory.
    Init {
        #[arg(long, default_value = "archipel-data")]
        data: PathBuf,
        /// The territory this node archives for, e.g. "Commune de Saint-Malo".
        #[arg(long)]
        territory: String,
        /// An age recipient (age1...) that can also open every record, e.g. the archives
        /// départementales. Repeatable.
        #[arg(long = "recovery-recipient")]
        recovery_recipients: Vec<String>,
        /// HOST:PORT where other territories' nodes will reach this one (mutual TLS); written
        /// to <data>/archipel.toml as `peer_listen`.
        #[arg(long)]
        peer_listen: Option<String>,
        /// This territory's zone (département or région code, e.g. 29); placement keeps one
        /// copy of each record outside it. Written to <data>/archipel.toml.
        #[arg(long)]
        zone: Option<String>,
        /// HOST:PORT (or :PORT for loopback) where the citizen gateway serves communicable
        /// records over HTTP; written to <data>/archipel.toml as `gateway_listen`.
        #[arg(long)]
        gateway_listen: Option<String>,
        /// Recreate the node from a recovery kit instead of creating new keys.
        #[arg(long, conflicts_with_all = ["recovery_recipients"])]
        kit: Option<PathBuf>,
    },
    /// Serve the node (initialising ./archipel-data on first run).
    Run {
        #[arg(long)]
        data: Option<PathBuf>,
        /// A TOML configuration file (see deploy/config.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Rebuild a wiped node on a blank machine: its keys from the recovery kit, its records
    /// and audit log from its peers, verified end to end.
    Restore {
        /// The recovery kit written by `export-kit` (passphrase from the terminal, or from
        /// ARCHIPEL_PASSPHRASE in scripts).
        #[arg(long)]
        kit: PathBuf,
        /// A new, empty data directory.
        #[arg(long, default_value = "archipel-data")]
        data: PathBuf,
        /// HOST:PORT of a peer's federation listener. Repeatable; at least one.
        #[arg(long = "peer", required = true)]
        peers: Vec<String>,
        /// This node's federation listener from now on (as `init --peer-listen`).
        #[arg(long)]
        peer_listen: Option<String>,
        /// This territory's zone (as `init --zone`).
        #[arg(long)]
        zone: Option<String>,
    },
    /// Check a configuration file and the data directory it names; report every problem at
    /// once, each with its field and the fix. Exit code 1 if there is any.
    CheckConfig {
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Move this node's blobs (its own and those it holds for peers) to another store, with
    /// the node stopped: each blob is checked (BLAKE3) in the source and again in the
    /// target; an interrupted run resumes. Then the node is switched over (a marker in its
    /// database, and `blob_store` in the configuration file). The old copies are left.
    MigrateBlobs {
        #[arg(long)]
        data: Option<PathBuf>,
        /// The configuration file (it must hold the `[s3]` table for `--to s3`); default
        /// <data>/archipel.toml, which is created if absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where the blobs go: s3, sled or files.
        #[arg(long)]
        to: String,
    },
    /// Write a passphrase-protected recovery kit with every secret of the node.
    ExportKit {
        #[arg(long, default_value = "archipel-data")]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

fn passphrase(confirm: bool) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("ARCHIPEL_PASSPHRASE") {
        return Ok(p);
    }
    let p = rpassword::prompt_password("Recovery kit passphrase: ").context(
        "cannot read the passphrase from the terminal; set ARCHIPEL_PASSPHRASE in scripts",
    )?;
    if confirm {
        let again = rpassword::prompt_password("Again: ")?;
        if again != p {
            bail!("the passphrases differ");
        }
    }
    Ok(p)
}

fn default_territory() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host = host.trim();
    if host.is_empty() {
        "Territoire non nommé".to_string()
    } else {
        format!("Territoire {host}")
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARCHIPEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

fn load_config(data: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<Config> {
    // An explicit --config, else <data>/archipel.toml when it exists, else the defaults.
    let in_data = data
        .as_ref()
        .map(|d| d.join("archipel.toml"))
        .filter(|p| p.exists());
    let mut cfg = match config.or(in_data) {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    };
    if let Some(d) = data {
        cfg.data_dir = d;
    }
    secret_paths_from_env(&mut cfg);
    cfg.validate()?;
    Ok(cfg)
}

/// Paths to secrets may come from the environment (a secrets manager, a container's
/// mounted secrets) rather than the config file; the environment wins.
fn secret_paths_from_env(cfg: &mut Config) {
    if let Some(p) = std::env::var_os("ARCHIPEL_DATA_DIR") {
        cfg.data_dir = PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("ARCHIPEL_GATEWAY_TLS_CERT") {
        cfg.gateway_tls_cert = Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("ARCHIPEL_GATEWAY_TLS_KEY") {
        cfg.gateway_tls_key = Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("ARCHIPEL_S3_CREDENTIALS_FILE") {
        cfg.s3.credentials_file = Some(PathBuf::from(p));
    }
}

/// `check-config`: every problem of the configuration and the data directory, at once.
fn check_config(data: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<()> {
    use archipel_node::config::ConfigError;
    let in_data = data
        .as_ref()
        .map(|d| d.join("archipel.toml"))
        .filter(|p| p.exists());
    let source = config.clone().or(in_data);
    let mut cfg = match &source {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(d) = data {
        cfg.data_dir = d;
    }
    secret_paths_from_env(&mut cfg);
    let mut problems = Vec::new();
    match cfg.validate() {
        Ok(()) => {}
        Err(ConfigError::Invalid(p)) => problems.extend(p),
        Err(e) => problems.push(e.to_string()),
    }
    for (field, address) in [
        ("peer_listen", cfg.peer_listen.as_deref()),
        ("gateway_listen", cfg.gateway_listen.as_deref()),
    ] {
        if let Some(a) = address
            && a.rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            problems.push(format!(
                "{field} = {a:?}: must be HOST:PORT, e.g. 0.0.0.0:7443"
            ));
        }
    }
    for (field, path) in [
        ("gateway_tls_cert", &cfg.gateway_tls_cert),
        ("gateway_tls_key", &cfg.gateway_tls_key),
    ] {
        if let Some(p) = path
            && let Err(e) = std::fs::File::open(p)
        {
            problems.push(format!(
                "{field} = {:?}: cannot be read ({e}); fix the path or its permissions",
                p.display()
            ));
        }
    }
    if cfg.blob_store == archipel_node::config::BlobStoreKind::S3
        && !problems.iter().any(|p| p.starts_with("s3."))
    {
        // Connection, credentials and permissions: write, read, list and delete a probe.
        let mut quick = cfg.s3.clone();
        quick.max_retries = quick.max_retries.min(1);
        match archipel_node::store::S3Connection::open(&quick) {
            Ok(conn) => match conn.probe() {
                Ok(()) => println!(
                    "s3: {} bucket {:?}: write, read, list and delete work",
                    cfg.s3.endpoint, cfg.s3.bucket
                ),
                Err(e) => problems.push(e),
            },
            Err(e) => problems.push(e.to_string()),
        }
    }
    if is_initialised(&cfg.data_dir) {
        // The same checks as at start: key files, their permissions, that they belong together.
        match archipel_node::identity::load(&cfg.data_dir) {
            Ok(id) => match archipel_node::keys::Keyring::load(&cfg.data_dir) {
                Ok(keys) => {
                    if let Err(e) = keys.check_against(&id) {
                        problems.push(format!("data_dir keys: {e}"));
                    }
                }
                Err(e) => problems.push(format!("data_dir keys: {e}")),
            },
            Err(e) => problems.push(format!("data_dir: {e}")),
        }
    } else {
        println!(
            "note: {} holds no node yet; `archipel-node init` (or `run`) creates one",
            cfg.data_dir.display()
        );
    }
    let what = source
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the defaults".into());
    if problems.is_empty() {
        println!(
            "{what}: no problem found (data directory {})",
            cfg.data_dir.display()
        );
        return Ok(());
    }
    for p in &problems {
        println!("problem: {p}");
    }
    eprintln!("{what}: {} problem(s)", problems.len());
    std::process::exit(1)
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    init_logging(cfg.log_json);
    if !is_initialised(&cfg.data_dir) {
        let territory = default_territory();
        let id = init(&cfg.data_dir, &territory, &[])?;
        tracing::info!(node_id = %id, territory = %territory, data = %cfg.data_dir.display(), "initialised a new node");
    }
    let node = Node::open(cfg)?;
    let listener = node.bind_admin()?;
    let peer_listener = node.bind_peers().await?;
    let gateway_listener = node.bind_gateway().await?;
    let metrics_listener = match &node.archive.config.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("metrics_listen {address}"))?,
        ),
        None => None,
    };
    let a = &node.archive;
    tracing::info!(
        node_id = %a.identity.node_id,
        territory = %a.identity.territory,
        admin = %a.config.admin_socket_path().display(),
        peers = ?a.config.peer_listen,
        gateway = ?a.gateway_url.get(),
        records = a.store.record_count().unwrap_or(0),
        "archipel-node serving"
    );
    // Scripts wait for this line on stdout.
    println!(
        "archipel-node ready: node {} on {}",
        a.identity.node_id,
        a.config.admin_socket_path().display()
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.changed().await;
    };
    let grace = std::time::Duration::from_secs(node.archive.config.shutdown_grace_secs);
    // In-flight ingests get the grace period to commit; one still streaming after it is
    // dropped, and its staged blobs are removed (now, or at the next start).
    let admin = drained(
        node.serve_admin(listener, wait(stopped.clone())),
        wait(stopped.clone()),
        grace,
        "admin requests (ingests)",
    );
    let peers = async {
        match peer_listener {
            // A peer that keeps its connection open must not hold the node up forever.
            Some(l) => {
                drained(
                    node.serve_peers(l, wait(stopped.clone())),
                    wait(stopped.clone()),
                    grace,
                    "peer connections",
                )
                .await
            }
            None => Ok(()),
        }
    };
    let gateway = async {
        match gateway_listener {
            Some(l) => node.serve_gateway(l, wait(stopped.clone())).await,
            None => Ok(()),
        }
    };
    let metrics = async {
        match metrics_listener {
            Some(l) => {
                archipel_node::metrics::serve(node.archive.clone(), l, wait(stopped.clone())).await
            }
            None => Ok(()),
        }
    };
    let signal = async {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    let (served, peers_served, gateway_served, metrics_served, ()) =
        tokio::join!(admin, peers, gateway, metrics, signal);
    served?;
    metrics_served.context("metrics server")?;
    peers_served?;
    gateway_served?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Runs a server until it stops by itself, or until `grace` after `stopping` fires.
async fn drained(
    serve: impl std::future::Future<Output = archipel_node::Result<()>>,
    stopping: impl std::future::Future<Output = ()>,
    grace: std::time::Duration,
    what: &str,
) -> archipel_node::Result<()> {
    tokio::pin!(serve);
    let deadline = async {
        stopping.await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = &mut serve => r,
        () = deadline => {
            tracing::warn!("{what} still open {grace:?} after shutdown began: dropped");
            Ok(())
        }
    }
}

async fn restore(cfg: Config, peers: Vec<String>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let node = Node::open(cfg)?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} records {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    };
    let report =
        archipel_node::federation::restore::restore(&node.archive, &peers, &progress).await?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    println!(
        "restored {} records ({} bytes, {} blobs fetched) and an audit log of {} entries from {} peer(s)",
        report.records,
        report.bytes,
        report.blobs_fetched,
        report.log_size,
        report.peers.len()
    );
    if report.eliminations > 0 {
        println!(
            "{} lawful elimination(s) came back with their signed tombstones and the holders' receipts",
            report.eliminations
        );
    }
    for p in &report.peers {
        println!(
            "peer {} ({}) at {}: pinned again; set its zone and offer with `archipel peer add`",
            p.node_id, p.territory, p.address
        );
    }
    for r in &report.refused {
        eprintln!("refused: {r}");
    }
    for r in &report.damaged {
        eprintln!("damaged after restore: {r}");
    }
    if !report.refused.is_empty() || !report.damaged.is_empty() {
        bail!(
            "{} record(s) could not be restored intact",
            report.refused.len() + report.damaged.len()
        );
    }
    println!("start the node with `archipel-node run --data ...`: it resumes replication");
    Ok(())
}

fn export_kit(data: &Path, out: &Path) -> anyhow::Result<()> {
    let kit = RecoveryKit::from_data_dir(data)?;
    let sealed = kit.seal(&passphrase(true)?, None)?;
    // Logged before the kit exists: an export that is not in the log cannot happen.
    log_key_export(data)?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    f.write_all(&sealed)?;
    f.sync_all()?;
    println!(
        "recovery kit of node {} written to {}: keep it offline, with its passphrase apart",
        kit.node_id,
        out.display()
    );
    Ok(())
}

/// Every key export is in the audit log: through the running node, or directly if it is
/// stopped.
fn log_key_export(data: &Path) -> anyhow::Result<()> {
    use archipel_node::identity::IdentityError;
    use archipel_proto::event::Outcome;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cfg = Config::with_data_dir(data);
    match Node::open(cfg.clone()) {
        Ok(node) => rt.block_on(async {
            let a = &node.archive;
            let e = a.log.event(
                "archipel:key export",
                "node",
                "operator",
                Outcome::Success,
                [0; 32],
            )?;
            a.store.append_events(&[e]).await?;
            Ok::<_, anyhow::Error>(())
        }),
        Err(archipel_node::Error::Identity(IdentityError::Locked(_))) => rt.block_on(async {
            let channel = archipel_node::admin_channel(&cfg.admin_socket_path())
                .await
                .context("the node is running but its admin socket does not answer")?;
            archipel_proto::v1::archive_client::ArchiveClient::new(channel)
                .log_key_export(archipel_proto::v1::LogKeyExportRequest {})
                .await
                .context("the running node did not log the export")?;
            Ok(())
        }),
        Err(e) => Err(e.into()),
    }
}

/// Writes what `init` was told into <data>/archipel.toml, the config file the node reads at
/// start; every other field keeps its default.
fn write_init_config(
    data: &std::path::Path,
    peer_listen: Option<&str>,
    zone: Option<&str>,
    gateway_listen: Option<&str>,
) -> anyhow::Result<()> {
    if peer_listen.is_none() && zone.is_none() && gateway_listen.is_none() {
        return Ok(());
    }
    let mut text = String::new();
    if let Some(address) = peer_listen {
        text.push_str(&format!("peer_listen = {address:?}\n"));
    }
    // Top-level keys before the [federation] table, or TOML would put them inside it.
    if let Some(address) = gateway_listen {
        text.push_str(&format!("gateway_listen = {address:?}\n"));
    }
    if let Some(zone) = zone {
        text.push_str(&format!("\n[federation]\nzone = {zone:?}\n"));
    }
    let path = data.join("archipel.toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `migrate-blobs`: see the command's help.
fn migrate_blobs(data: Option<PathBuf>, config: Option<PathBuf>, to: &str) -> anyhow::Result<()> {
    use archipel_node::config::BlobStoreKind;
    use archipel_node::store::migrate::{MigrateReport, migrate_namespace};
    let kind = match to {
        "s3" => BlobStoreKind::S3,
        "sled" => BlobStoreKind::Sled,
        "files" => BlobStoreKind::Files,
        other => bail!("--to {other:?}: give s3, sled or files"),
    };
    let file = config.clone().unwrap_or_else(|| {
        data.clone()
            .unwrap_or_else(|| PathBuf::from("archipel-data"))
            .join("archipel.toml")
    });
    let cfg = load_config(data, config)?;
    if !is_initialised(&cfg.data_dir) {
        bail!("{} holds no node", cfg.data_dir.display());
    }
    let mut target_cfg = cfg.clone();
    target_cfg.blob_store = kind;
    target_cfg
        .validate()
        .with_context(|| format!("the target store's settings in {}", file.display()))?;
    // Opening the node takes its data directory's lock: a running node makes this fail.
    let node = Node::open(cfg.clone()).context(
        "cannot open the node (stop it first: the migration runs with the node stopped)",
    )?;
    let a = &node.archive;
    let from_place = archipel_node::node::blob_place(&cfg)?;
    let to_place = archipel_node::node::blob_place(&target_cfg)?;
    if from_place.kind() == to_place.kind() {
        bail!("the blobs are in {} already", to_place.kind());
    }
    let db = a.store.db();
    let mut report = MigrateReport::default();
    let started = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let mut progress = |r: &MigrateReport| {
        if last.elapsed().as_secs() >= 2 {
            last = std::time::Instant::now();
            eprintln!(
                "{} copied ({} MiB), {} already there, {} failed",
                r.copied,
                r.bytes >> 20,
                r.already,
                r.failed.len()
            );
        }
    };
    let to_own = to_place.open_own(db)?;
    migrate_namespace(
        a.store.blobs.as_ref(),
        to_own.as_ref(),
        &mut report,
        &mut progress,
    )?;
    // What this node holds for its peers, origin by origin.
    let to_held = archipel_node::federation::holding::Holding::open(db, &cfg.data_dir, &to_place)?;
    for (origin, _) in a.holding.origins()? {
        migrate_namespace(
            a.holding.blobs_of(&origin)?.as_ref(),
            to_held.blobs_of(&origin)?.as_ref(),
            &mut report,
            &mut progress,
        )?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} blobs copied and checked ({:.1} MiB in {:.1} s), {} already in {}, {} failed",
        report.copied,
        report.bytes as f64 / (1 << 20) as f64,
        secs,
        report.already,
        to_place.kind(),
        report.failed.len()
    );
    if !report.failed.is_empty() {
        for f in &report.failed {
            println!("failed: {f}");
        }
        bail!(
            "the node still uses {}: fix the blobs above and run again (it resumes)",
            from_place.kind()
        );
    }
    a.store.set_blob_place(&to_place)?;
    set_blob_store_in(&file, to_place.kind())?;
    println!(
        "the node now uses {} (marker in its database, blob_store in {}); the copies in {} are left in place",
        to_place.kind(),
        file.display(),
        from_place.kind()
    );
    Ok(())
}

/// Sets `blob_store = "KIND"` in a TOML file, keeping its other lines and comments.
fn set_blob_store_in(file: &Path, kind: &str) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let line = format!("blob_store = {kind:?}");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Some(l) = lines
        .iter_mut()
        .find(|l| l.trim_start().starts_with("blob_store") && l.contains('='))
    {
        *l = line;
    } else {
        // A top-level key goes before the first table, or TOML would put it inside it.
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with('['))
            .unwrap_or(lines.len());
        lines.insert(at, line);
    }
    let mut out = lines.join("\n");
    out.push('\n');
    // Checked before it replaces the file: a broken configuration would stop the node.
    toml::from_str::<Config>(&out).context("the updated configuration does not parse")?;
    let tmp = file.with_extension("toml.tmp");
    std::fs::write(&tmp, &out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run {
        data: None,
        config: None,
    }) {
        Command::Init {
            data,
            territory,
            recovery_recipients,
            kit,
            peer_listen,
            zone,
            gateway_listen,
        } => {
            // Checked before anything is created, so a typo leaves no half-made node.
            if let Some(address) = &gateway_listen
                && archipel_node::config::gateway_address(address).is_none()
            {
                bail!("--gateway-listen {address:?}: give HOST:PORT, or :PORT for loopback");
            }
            let id = match kit {
                Some(kit) => {
                    let sealed = std::fs::read(&kit)
                        .with_context(|| format!("cannot read {}", kit.display()))?;
                    let kit = RecoveryKit::open(&sealed, &passphrase(false)?)?;
                    kit.install(&data)?;
                    kit.node_id
                }
                None => init(&data, &territory, &recovery_recipients)?,
            };
            write_init_config(
                &data,
                peer_listen.as_deref(),
                zone.as_deref(),
                gateway_listen.as_deref(),
            )?;
            println!("{id}");
            Ok(())
        }
        Command::Run { data, config } => {
            let cfg = load_config(data, config)?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(run(cfg))
        }
        Command::ExportKit { data, out } => export_kit(&data, &out),
        Command::MigrateBlobs { data, config, to } => migrate_blobs(data, config, &to),
        Command::CheckConfig { data, config } => check_config(data, config),
        Command::Restore {
            kit,
            data,
            peers,
            peer_listen,
            zone,
        } => {
            if is_initialised(&data) {
                bail!(
                    "{} already holds a node: restore only into a new, empty data directory",
                    data.display()
                );
            }
            let sealed =
                std::fs::read(&kit).with_context(|| format!("cannot read {}", kit.display()))?;
            let kit = RecoveryKit::open(&sealed, &passphrase(false)?)?;
            kit.install(&data)?;
            write_init_config(&data, peer_listen.as_deref(), zone.as_deref(), None)?;
            let cfg = load_config(Some(data.clone()), None)?;
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(restore(cfg, peers))
        }
    }
}
