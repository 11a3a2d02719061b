//! `archipel`: the archivist's command line. It talks to a node's admin API and never
//! touches the node's storage itself.

mod bag;
mod commands;
mod connect;
mod demo;
mod eliminate;
mod federation;
mod hold;
mod keys;
mod log;
mod metadata;
mod output;
mod peer;
mod premis;
mod seda;
mod tombstones;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  other error
  2  usage error (bad flags)
  3  node unreachable
  4  record or file not found
  5  invalid input (metadata, files), named in the message
  6  fixity failure: a record does not match its digests (data loss)
  7  resource exhausted (disk full, record too large)
  8  a log, checkpoint or proof does not verify (tampering or fork)
  9  refused by a rule of the archive (a legal hold, a DUA still running, none to lift,
     a key still needed)";

#[derive(Parser)]
#[command(name = "archipel", version, about = "Archipel: archive a territory's records, read them back, check them.", after_help = EXIT_CODES)]
pub struct Cli {
    /// The node: its data directory, unix:PATH of its admin socket, or https://HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "ARCHIPEL_NODE",
        default_value = "archipel-data"
    )]
    node: String,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Archive one or more files as one record.
    Ingest {
        #[arg(required_unless_present_any = ["bag", "seda"], conflicts_with_all = ["bag", "seda"])]
        files: Vec<PathBuf>,
        /// A BagIt bag (RFC 8493) to archive as one record, checked completely first;
        /// bag-info.txt gives the metadata that flags and --metadata do not.
        #[arg(long, value_name = "DIR", conflicts_with = "seda")]
        bag: Option<PathBuf>,
        /// A SEDA 2.2 ArchiveTransfer (the XML next to its files, or a zip holding both):
        /// validated against the schema, every digest checked, one record per ArchiveUnit;
        /// answered with an ArchiveTransferReply, logged by the node.
        #[arg(long, value_name = "TRANSFER.xml|TRANSFER.zip")]
        seda: Option<PathBuf>,
        /// Where to write the ArchiveTransferReply (default: next to the input, NAME.reply.xml).
        #[arg(long, value_name = "OUT.xml", requires = "seda")]
        reply: Option<PathBuf>,
        /// Metadata from a TOML or JSON file (flags override it).
        #[arg(long)]
        metadata: Option<PathBuf>,
        #[command(flatten)]
        meta: metadata::MetadataArgs,
    },
    /// Read a record back: one file to PATH, several files into directory PATH.
    Get {
        record: String,
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Only this file of the record.
        #[arg(long)]
        file: Option<String>,
        /// Byte range start (with --file or a one-file record).
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Byte range length (0: to the end).
        #[arg(long, default_value_t = 0)]
        length: u64,
    },
    /// List records, oldest first.
    Ls {
        #[arg(long)]
        producer: Option<String>,
        #[arg(long = "type")]
        record_type: Option<String>,
        #[arg(long)]
        date_from: Option<String>,
        #[arg(long)]
        date_to: Option<String>,
        #[arg(long)]
        communicability: Option<String>,
        /// At most this many records (0: all).
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Change a record's metadata (e.g. set its communicability); the content never changes.
    Edit {
        record: String,
        #[command(flatten)]
        meta: metadata::MetadataArgs,
    },
    /// Write records as BagIt bags (SHA-512 manifests, Dublin Core in bag-info.txt, the
    /// record's events as PREMIS 3 and JSON lines), one directory per record under OUT.
    /// With --all, every record plus the whole audit log: safe to re-run, it keeps bags
    /// already exported and unchanged.
    Export {
        records: Vec<String>,
        #[arg(long)]
        all: bool,
        #[arg(
            long,
            value_name = "OUT",
            required_unless_present = "seda",
            conflicts_with = "seda"
        )]
        bag: Option<PathBuf>,
        /// Write the records as one SEDA 2.2 ArchiveTransfer (SHA-512 digests): OUT a
        /// directory (manifest.xml and content/), or OUT.zip.
        #[arg(long, value_name = "OUT")]
        seda: Option<PathBuf>,
    },
    /// Show a record's metadata, files and digests.
    Show { record: String },
    /// Fixity check of one record, or of all of them.
    Verify { record: Option<String> },
    /// The node's identity and counters; with RECORD, where that record's copies are.
    Status { record: Option<String> },
    /// The territory's age key and recovery recipients: rotate, retire, add, remove.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Per peer: what each territory keeps for the others (reciprocity), against offers.
    Federation,
    /// Start a three-territory federation on loopback with sample records, to try things.
    Demo(demo::DemoArgs),
    /// The other territories' nodes this node trusts.
    #[command(subcommand)]
    Peer(peer::PeerCommand),
    /// Lawful destruction of records whose DUA has run out (sort final D or T), against the
    /// visa of the archives départementales; or, with --status, how far it got.
    Eliminate(eliminate::EliminateArgs),
    /// Tombstones received from peers (their lawful eliminations): list them, suspend or
    /// resume the deletion of this node's copy.
    #[command(subcommand)]
    Tombstones(tombstones::TombstonesCommand),
    /// Legal holds: a held record cannot be eliminated until the hold is lifted.
    #[command(subcommand)]
    Hold(hold::HoldCommand),
    /// The audit log: read it, verify it, prove a deposit.
    #[command(subcommand)]
    Log(log::LogCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli.node, cli.json, cli.command).await {
        Ok(code) => code,
        Err(e) => {
            let code = commands::exit_code(&e);
            if let Some(status) = e.downcast_ref::<tonic::Status>() {
                eprintln!("error: {}", status.message());
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(code)
        }
    }
}
