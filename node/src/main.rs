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
    /// Move this node's blobs (its own and those it holds for peers) to another store. If
    /// the node is running, it does so while it keeps serving (new blobs go to the target,
    /// reads try the target then the source); else the copy runs here. Each blob is checked
    /// (BLAKE3) in the source and again in the target; progress is saved, so a run
    /// interrupted (even by a crash) resumes. Then the node is switched over (`blob_store`
    /// in the configuration file, a marker in its database). The old copies are left.
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
        /// Copy at most this many blobs per second (0: no limit), to spare the stores while
        /// a running node serves.
        #[arg(long, default_value_t = 0)]
        rate: u32,
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
    // A blob migration the node was stopped (or killed) during resumes where it was.
    archipel_node::admin::migration::spawn_worker(&node.archive);
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

/// `migrate-blobs`: see the command's help. With the node stopped, the copy runs here;
/// with the node running (its lock is held), the node is asked to run it while it serves.
fn migrate_blobs(
    data: Option<PathBuf>,
    config: Option<PathBuf>,
    to: &str,
    rate: u32,
) -> anyhow::Result<()> {
    use archipel_node::config::BlobStoreKind;
    let Some(kind) = BlobStoreKind::from_name(to) else {
        bail!("--to {to:?}: give s3, sled or files");
    };
    let file = config.clone().unwrap_or_else(|| {
        data.clone()
            .unwrap_or_else(|| PathBuf::from("archipel-data"))
            .join("archipel.toml")
    });
    let file = std::path::absolute(&file).unwrap_or(file);
    let cfg = load_config(data, config)?;
    if !is_initialised(&cfg.data_dir) {
        bail!("{} holds no node", cfg.data_dir.display());
    }
    let mut target_cfg = cfg.clone();
    target_cfg.blob_store = kind;
    target_cfg
        .validate()
        .with_context(|| format!("the target store's settings in {}", file.display()))?;
    match Node::open(cfg.clone()) {
        Ok(node) => migrate_offline(&node, &target_cfg, kind, &file, rate),
        Err(archipel_node::Error::Identity(archipel_node::identity::IdentityError::Locked(_))) => {
            migrate_online(&cfg, kind, &file, rate)
        }
        Err(e) => Err(anyhow::Error::new(e).context("cannot open the node")),
    }
}

/// One line of progress.
fn migration_line(s: &archipel_proto::v1::BlobMigrationStatus) -> String {
    format!(
        "{} {} -> {}: {} copied ({} MiB), {} already there, {} failed; the node has {} blobs of its own{}",
        s.state,
        s.from,
        s.to,
        s.copied,
        s.bytes >> 20,
        s.already,
        s.failed_count,
        s.total,
        if s.namespace.is_empty() {
            String::new()
        } else {
            format!(" (now in {})", s.namespace)
        }
    )
}

/// The end of a migration, however it ran.
fn migration_outcome(
    s: &archipel_proto::v1::BlobMigrationStatus,
    file: &Path,
) -> anyhow::Result<()> {
    println!("{}", migration_line(s));
    match s.state.as_str() {
        "done" => {
            println!(
                "the node now uses {} (marker in its database, blob_store in {}); the copies in {} are left in place",
                s.to,
                file.display(),
                s.from
            );
            Ok(())
        }
        _ => {
            for f in &s.failed {
                println!("failed: {f}");
            }
            if !s.error.is_empty() {
                println!("error: {}", s.error);
            }
            bail!(
                "the migration to {} did not finish: the node keeps reading both stores; fix \
                 the above and run the same command again (it resumes)",
                s.to
            )
        }
    }
}

fn to_proto(
    s: archipel_node::store::MigrationStatus,
    total: u64,
) -> archipel_proto::v1::BlobMigrationStatus {
    archipel_proto::v1::BlobMigrationStatus {
        state: s.state,
        from: s.from,
        to: s.to,
        copied: s.copied,
        already: s.already,
        bytes: s.bytes,
        failed: s.failed,
        failed_count: s.failed_count,
        total,
        namespace: s.namespace,
        error: s.error,
    }
}

/// The node is stopped: the same migration as a running node's, in the foreground.
fn migrate_offline(
    node: &Node,
    target_cfg: &Config,
    kind: archipel_node::config::BlobStoreKind,
    file: &Path,
    rate: u32,
) -> anyhow::Result<()> {
    let a = node.archive.clone();
    let placement = a.store.placement.clone();
    let place = archipel_node::node::place_of_kind(target_cfg, kind.name())?;
    if let archipel_node::store::BlobPlace::S3(conn) = &place {
        conn.probe()
            .map_err(|e| anyhow::anyhow!("the target store: {e}"))?;
    }
    placement.begin(place, file, rate)?;
    let held: Vec<String> = a.holding.origins()?.into_iter().map(|(o, _)| o).collect();
    let total = a.store.blob_count().unwrap_or(0);
    let worker = {
        let placement = placement.clone();
        std::thread::spawn(move || placement.run_worker(&held))
    };
    let mut last = std::time::Instant::now();
    while !worker.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if last.elapsed().as_secs() >= 2 {
            last = std::time::Instant::now();
            eprintln!("{}", migration_line(&to_proto(placement.status(), total)));
        }
    }
    let s = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the migration thread panicked"))?;
    migration_outcome(&to_proto(s, total), file)
}

/// The node is running: ask it over the admin socket, then follow its progress.
fn migrate_online(
    cfg: &Config,
    kind: archipel_node::config::BlobStoreKind,
    file: &Path,
    rate: u32,
) -> anyhow::Result<()> {
    use archipel_proto::v1::{
        BlobMigrationRequest, MigrateBlobsRequest, archive_client::ArchiveClient,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let channel = archipel_node::admin_channel(&cfg.admin_socket_path())
            .await
            .context("the node is running but its admin socket does not answer")?;
        let mut client = ArchiveClient::new(channel);
        let mut s = client
            .migrate_blobs(MigrateBlobsRequest {
                to: kind.name().to_string(),
                config_file: file.display().to_string(),
                max_blobs_per_second: rate,
            })
            .await
            .map_err(|e| {
                anyhow::anyhow!("the running node refused the migration: {}", e.message())
            })?
            .into_inner();
        eprintln!(
            "the running node is moving its blobs while it serves (interrupting this command \
             does not stop it; run it again to follow)"
        );
        let mut last = std::time::Instant::now();
        while s.state == "copying" {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            s = client
                .blob_migration(BlobMigrationRequest {})
                .await
                .map_err(|e| anyhow::anyhow!("the running node: {}", e.message()))?
                .into_inner();
            if last.elapsed().as_secs() >= 2 {
                last = std::time::Instant::now();
                eprintln!("{}", migration_line(&s));
            }
        }
        migration_outcome(&s, file)
    })
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
        Command::MigrateBlobs {
            data,
            config,
            to,
            rate,
        } => migrate_blobs(data, config, &to, rate),
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
