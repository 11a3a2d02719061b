//! Record metadata from flags and/or a metadata file (TOML or JSON, same field names).

use anyhow::{Context, bail};
use archipel_proto::v1::RecordMetadata;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataArgs {
    /// Title of the record (required, here or in --metadata).
    #[arg(long)]
    pub title: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Producing service, e.g. "Secrétariat général".
    #[arg(long)]
    pub producer: Option<String>,
    /// Date of the document, YYYY-MM-DD.
    #[arg(long)]
    pub date: Option<String>,
    /// Start of the date range of a file of documents.
    #[arg(long)]
    pub date_from: Option<String>,
    #[arg(long)]
    pub date_to: Option<String>,
    /// Record type, e.g. "délibération", "permis de construire".
    #[arg(long = "type")]
    #[serde(rename = "type")]
    pub record_type: Option<String>,
    /// Language tag (default fr).
    #[arg(long)]
    pub language: Option<String>,
    /// Keyword (repeatable).
    #[arg(long = "keyword")]
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Licence (default "Licence Ouverte 2.0" for immediately communicable records).
    #[arg(long)]
    pub licence: Option<String>,
    /// Communicability category: immediate, l213-2-1, l213-2-2-medical, l213-2-3,
    /// l213-2-4, l213-2-5 or never. Unset means not communicable.
    #[arg(long)]
    pub communicability: Option<String>,
    /// Durée d'utilité administrative, in years (with --final).
    #[arg(long)]
    pub dua: Option<u32>,
    /// Sort final at the end of the DUA: C, D or T (with --dua).
    #[arg(long = "final")]
    #[serde(rename = "final")]
    pub final_disposition: Option<String>,
    /// The metadata itself may be published even while the content is not communicable.
    #[arg(long)]
    #[serde(default)]
    pub metadata_public: bool,
    /// For delays that run from a person's death (YYYY-MM-DD).
    #[arg(long)]
    pub person_death_date: Option<String>,
    #[arg(long)]
    pub person_birth_date: Option<String>,
}

/// Largest metadata file read (the node refuses more than 64 KiB of encoded metadata).
const MAX_METADATA_FILE: u64 = 256 * 1024;

pub fn load_file(path: &Path) -> anyhow::Result<MetadataArgs> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read metadata file {}", path.display()))?;
    if meta.len() > MAX_METADATA_FILE {
        bail!(
            "metadata file {} is {} bytes; the limit is {MAX_METADATA_FILE}",
            path.display(),
            meta.len()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read metadata file {}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "metadata file {} is not valid JSON metadata: {e}",
                path.display()
            )
        })?
    } else {
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "metadata file {} is not valid TOML metadata: {e}",
                path.display()
            )
        })?
    };
    Ok(parsed)
}

/// Flags win over the file. A date and a range given together (one in each) stay together,
/// so that the node refuses them rather than guess which was meant.
pub fn merge(flags: MetadataArgs, file: Option<MetadataArgs>) -> RecordMetadata {
    let base = file
        .map(|f| layer(f, RecordMetadata::default(), false))
        .unwrap_or_default();
    layer(flags, base, false)
}

/// Flags, then the metadata file, then `base` (e.g. what a bag's bag-info.txt says).
pub fn merge_over(
    flags: MetadataArgs,
    file: Option<MetadataArgs>,
    base: MetadataArgs,
) -> RecordMetadata {
    let base = layer(base, RecordMetadata::default(), false);
    let base = match file {
        Some(f) => layer(f, base, true),
        None => base,
    };
    layer(flags, base, true)
}

/// Flags given on the command line replace the record's current values; a new date replaces
/// the record's range and the reverse.
pub fn overlay(flags: MetadataArgs, current: RecordMetadata) -> RecordMetadata {
    layer(flags, current, true)
}

/// `flags` where given, else `current`; with `date_replaces_range`, giving a date clears
/// `current`'s range and giving a range clears its date.
fn layer(
    flags: MetadataArgs,
    current: RecordMetadata,
    date_replaces_range: bool,
) -> RecordMetadata {
    let pick = |a: Option<String>, b: String| a.unwrap_or(b);
    let single = date_replaces_range && flags.date.is_some();
    let range = date_replaces_range && (flags.date_from.is_some() || flags.date_to.is_some());
    RecordMetadata {
        title: pick(flags.title, current.title),
        description: pick(flags.description, current.description),
        producer: pick(flags.producer, current.producer),
        date: if range {
            flags.date.unwrap_or_default()
        } else {
            pick(flags.date, current.date)
        },
        date_from: if single {
            String::new()
        } else {
            pick(flags.date_from, current.date_from)
        },
        date_to: if single {
            String::new()
        } else {
            pick(flags.date_to, current.date_to)
        },
        record_type: pick(flags.record_type, current.record_type),
        language: pick(flags.language, current.language),
        keywords: if flags.keywords.is_empty() {
            current.keywords
        } else {
            flags.keywords
        },
        licence: pick(flags.licence, current.licence),
        communicability: pick(flags.communicability, current.communicability),
        dua_years: flags.dua.or(current.dua_years),
        final_disposition: pick(flags.final_disposition, current.final_disposition),
        metadata_public: flags.metadata_public || current.metadata_public,
        person_death_date: pick(flags.person_death_date, current.person_death_date),
        person_birth_date: pick(flags.person_birth_date, current.person_birth_date),
    }
}
