//! `archipel demo`: a three-territory federation on loopback, in a minute.
//!
//! Starts a commune, its département's archives and its région as real `archipel-node`
//! processes in a directory of their own, pins them to each other, ingests a few sample
//! public records of varied communicability at the commune, waits until each has its copies
//! at the two others, then prints the gateways' addresses and commands to try. Ctrl-C (or
//! SIGTERM) stops the three nodes; the directory stays for a look.

use crate::connect::connect;
use anyhow::{Context, bail};
use archipel_proto::v1::{NodeInfoRequest, PeerEntry, ShowRequest};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the three nodes keep their data (default: a new directory under /tmp).
    #[arg(long)]
    dir: Option<PathBuf>,
}

struct Territory {
    key: &'static str,
    name: &'static str,
    zone: &'static str,
}

const TERRITORIES: [Territory; 3] = [
    Territory {
        key: "commune",
        name: "Commune de Plougastel-Daoulas",
        zone: "29",
    },
    Territory {
        key: "departement",
        name: "Archives départementales du Finistère",
        zone: "29",
    },
    Territory {
        key: "region",
        name: "Région Bretagne",
        zone: "53",
    },
];

/// (file name, title, content, extra ingest flags)
const SAMPLES: [(&str, &str, &str, &[&str]); 3] = [
    (
        "deliberations-1998.txt",
        "Registre des délibérations du conseil municipal, 1998",
        "Séance du 12 mars 1998. Le conseil municipal, réuni sous la présidence du maire, \
         approuve le budget primitif de l'exercice 1998.\n",
        &[
            "--communicability",
            "immediate",
            "--type",
            "délibération",
            "--date",
            "1998-03-12",
            "--producer",
            "Mairie de Plougastel-Daoulas",
        ],
    ),
    (
        "plan-cadastral-1834.txt",
        "Plan cadastral napoléonien, section A",
        "Plan cadastral de 1834, section A dite du Bourg, échelle 1/2500.\n",
        &[
            "--communicability",
            "immediate",
            "--type",
            "plan",
            "--date",
            "1834-06-01",
            "--producer",
            "Mairie de Plougastel-Daoulas",
        ],
    ),
    (
        "naissances-2020.txt",
        "Registre des naissances, 2020",
        "Actes de naissance de l'année 2020 (communicables en 2095).\n",
        &[
            "--communicability",
            "l213-2-4",
            "--date",
            "2020-12-31",
            "--type",
            "état civil",
            "--metadata-public",
        ],
    ),
];

struct DemoNode {
    dir: PathBuf,
    child: Child,
    peer: String,
    gateway: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn sibling(name: &str) -> PathBuf {
    // The demo runs the node binary installed next to this CLI, else the one on PATH.
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn start_node(root: &Path, t: &Territory) -> anyhow::Result<DemoNode> {
    let dir = root.join(t.key);
    let out = Command::new(sibling("archipel-node"))
        .args(["init", "--territory", t.name, "--data"])
        .arg(&dir)
        .output()
        .context("cannot run archipel-node (is it installed next to archipel?)")?;
    if !out.status.success() {
        bail!(
            "archipel-node init for {}: {}",
            t.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    spawn(dir, t)
}

/// Writes the node's configuration with two free ports and starts it. The ports are free
/// when picked but not reserved, so another process may take one first: `wait_ready` then
/// sees the node exit and starts it again on other ports.
fn spawn(dir: PathBuf, t: &Territory) -> anyhow::Result<DemoNode> {
    let (peer, gateway) = (
        format!("127.0.0.1:{}", free_port()?),
        format!("127.0.0.1:{}", free_port()?),
    );
    // Fast schedules, so that the demo shows replication, witnessing and challenges at once.
    std::fs::write(
        dir.join("archipel.toml"),
        format!(
            "peer_listen = {peer:?}\ngateway_listen = {gateway:?}\ncheckpoint_interval_secs = 2\n\n\
             [federation]\nzone = {:?}\nreplication_interval_secs = 2\nwitness_interval_secs = 2\n\
             challenge_interval_secs = 10\nanti_entropy_interval_secs = 10\n",
            t.zone
        ),
    )?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))?;
    let child = Command::new(sibling("archipel-node"))
        .args(["run", "--data"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(DemoNode {
        dir,
        child,
        peer,
        gateway,
    })
}

/// Waits until the node answers; a node that exits first (a port taken between picking and
/// binding) is started again on other ports, at most three times.
async fn wait_ready(n: &mut DemoNode, t: &Territory) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut restarts = 0;
    loop {
        if let Ok(mut c) = connect(&n.dir.display().to_string()).await
            && c.node_info(NodeInfoRequest {}).await.is_ok()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = n.child.try_wait() {
            if restarts == 3 {
                bail!(
                    "node in {} stopped ({status}; see its node.log)",
                    n.dir.display()
                );
            }
            restarts += 1;
            *n = spawn(n.dir.clone(), t)?;
        }
        if Instant::now() > deadline {
            bail!(
                "node in {} did not start within a minute (see its node.log)",
                n.dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stop(nodes: &mut [DemoNode]) {
    for n in nodes.iter_mut() {
        // SIGTERM: the node finishes what it does and flushes.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(n.child.id().to_string())
            .status();
    }
    for n in nodes.iter_mut() {
        let _ = n.child.wait();
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    let root = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("archipel-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&root)?;
    let mut nodes = Vec::new();
    for t in &TERRITORIES {
        match start_node(&root, t) {
            Ok(n) => nodes.push(n),
            Err(e) => {
                stop(&mut nodes);
                return Err(e);
            }
        }
    }
    let result = demo(&root, &mut nodes).await;
    if result.is_ok() {
        println!(
            "\nCtrl-C stops the three nodes (their data stays in {}).",
            root.display()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    stop(&mut nodes);
    result.map(|()| std::process::ExitCode::SUCCESS)
}

async fn demo(root: &Path, nodes: &mut [DemoNode]) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for (n, t) in nodes.iter_mut().zip(&TERRITORIES) {
        wait_ready(n, t).await?;
        let mut c = connect(&n.dir.display().to_string()).await?;
        ids.push(c.node_info(NodeInfoRequest {}).await?.into_inner().node_id);
    }
    for (i, n) in nodes.iter().enumerate() {
        let mut c = connect(&n.dir.display().to_string()).await?;
        for (j, other) in nodes.iter().enumerate() {
            if i != j {
                c.peer_add(PeerEntry {
                    node_id: ids[j].clone(),
                    address: other.peer.clone(),
                    territory: TERRITORIES[j].name.into(),
                    zone: TERRITORIES[j].zone.into(),
                    offer_bytes: 100 << 30,
                    added_at: String::new(),
                })
                .await?;
            }
        }
    }
    println!(
        "Three territories federated on loopback, in {}:",
        root.display()
    );
    for (i, n) in nodes.iter().enumerate() {
        println!(
            "  {:<40} node {}  gateway http://{}",
            TERRITORIES[i].name, ids[i], n.gateway
        );
    }
    let commune = nodes[0].dir.display().to_string();
    let samples = root.join("samples");
    std::fs::create_dir_all(&samples)?;
    let mut records = Vec::new();
    for (file, title, content, flags) in SAMPLES {
        let path = samples.join(file);
        std::fs::write(&path, content)?;
        let out = Command::new(std::env::current_exe()?)
            .args(["--node", &commune, "--json", "ingest"])
            .arg(&path)
            .args(["--title", title])
            .args(flags)
            .output()?;
        if !out.status.success() {
            bail!("ingest of {file}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        records.push((v["id"].as_str().unwrap_or_default().to_string(), title));
    }
    println!("\nIngested at the commune, waiting for 3 copies of each...");
    let mut c = connect(&commune).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (id, title) in &records {
        loop {
            let custody = c
                .custody(ShowRequest {
                    record_id: id.clone(),
                })
                .await?
                .into_inner();
            if custody.holders.len() + 1 >= custody.copies_wanted as usize {
                let at: Vec<&str> = custody
                    .holders
                    .iter()
                    .map(|h| h.territory.as_str())
                    .collect();
                println!("  {id}  {title}: also at {}", at.join(" and "));
                break;
            }
            if Instant::now() > deadline {
                bail!("record {id} did not reach 3 copies within a minute");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let g = &nodes[0].gateway;
    let peer_g = &nodes[1].gateway;
    let (open, closed) = (&records[0].0, &records[2].0);
    println!("\nTry:");
    println!("  open http://{g}/                      the commune's gateway (in French)");
    println!("  curl http://{g}/records/{closed}      metadata only: still under a 75-year delay");
    println!("  curl http://{g}/oai?verb=ListRecords&metadataPrefix=oai_dc");
    println!(
        "  curl http://{peer_g}/api/records/{open}   the same public record at the département"
    );
    println!("  archipel --node {commune} status {open}");
    println!("  archipel --node {commune} federation");
    println!("  archipel --node {commune} log tail");
    Ok(())
}
