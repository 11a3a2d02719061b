//! OAI-PMH 2.0 at `/oai` (GET, and POST with a form body): the six verbs, `oai_dc`
//! (unqualified Dublin Core), stateless resumption tokens, day granularity, sets by producer
//! and by type.
//!
//! What is published: only records whose metadata may be shown today, that is records
//! whose content is communicable ([`crate::record::communicability`], asked at request time)
//! or whose producer marked the metadata as public (`metadata_public`). Anything else does
//! not exist as far as OAI-PMH is concerned: asking for it by identifier answers
//! `idDoesNotExist`, exactly as for an identifier never minted, so nothing tells a harvester
//! that a closed record is there.
//!
//! Datestamps (day granularity): the day the record became visible as it is now shown, i.e.
//! the later of its ingestion day and the day its delay ran out. A record that opens on
//! 1 March thus appears to a `from=` harvest on 1 March, not on the day it was ingested
//! decades ago. A later metadata edit does not move the datestamp: the catalog keeps no
//! modification time yet, and finding it in the audit log would mean scanning the log.
//!
//! Deleted records: `deletedRecord` is `persistent`. A record eliminated lawfully while
//! OAI-PMH listed it stays in every list verb and in GetRecord as a header with
//! `status="deleted"`, its sets, and the day of its elimination as datestamp (so an
//! incremental `from=` harvest learns of it); the origin keeps its tombstone for ever
//! (`elimination`). A record that was never listed (closed, metadata not public) stays
//! unknown. A record absent from the catalog with no tombstone while the audit log holds its
//! ingestion event is answered by GetRecord with a deleted header dated by that event.

pub mod args;
mod xml;

use super::State;
use crate::archive::{Archive, ListFilter};
use crate::clock;
use crate::record::{Communicability, communicability};
use archipel_proto::manifest::Manifest;
use args::{ErrorCode, ListQuery, OAI_DC, OaiError, OaiRequest, encode_token, parse_request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use time::Date;
use xml::Writer;

/// Records (or headers) per ListRecords / ListIdentifiers page. A config field
/// (`gateway_oai_page_size`) would replace this constant once the gateway's configuration
/// has one; tests use [`routes_with`].
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page accepted by [`routes_with`].
pub const MAX_PAGE_SIZE: usize = 1000;
/// Catalog entries opened per step while looking for a page of visible records.
const SCAN_STEP: usize = 200;

const OAI_NS: &str = "http://www.openarchives.org/OAI/2.0/";
const OAI_SCHEMA: &str =
    "http://www.openarchives.org/OAI/2.0/ http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd";
const OAI_DC_NS: &str = "http://www.openarchives.org/OAI/2.0/oai_dc/";
const OAI_DC_XSD: &str = "http://www.openarchives.org/OAI/2.0/oai_dc.xsd";
const OAI_DC_SCHEMA: &str =
    "http://www.openarchives.org/OAI/2.0/oai_dc/ http://www.openarchives.org/OAI/2.0/oai_dc.xsd";
const DC_NS: &str = "http://purl.org/dc/elements/1.1/";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// What the OAI-PMH endpoint needs beyond the archive.
#[derive(Debug, Clone)]
pub struct Settings {
    pub page_size: usize,
    /// The `<repo>` of identifiers `oai:<repo>:<record ID>`; the node ID when unset.
    pub repository_identifier: Option<String>,
    /// Identify's `adminEmail` (mandatory in OAI-PMH); when unset, a placeholder that says
    /// so (`unset@<repository>.invalid`).
    pub admin_email: Option<String>,
    /// The public URL of the endpoint (`https://archives.example.fr/oai`); when unset it is
    /// rebuilt from the request's `Host`.
    pub base_url: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            page_size: DEFAULT_PAGE_SIZE,
            repository_identifier: None,
            admin_email: None,
            base_url: None,
        }
    }
}

/// What can go wrong while answering, besides OAI-PMH errors (which are answers).
#[derive(Debug, thiserror::Error)]
pub enum OaiFailure {
    #[error("reading the archive: {0}")]
    Archive(#[from] crate::error::Error),
    #[error("reading the audit log: {0}")]
    Log(#[from] crate::log::LogError),
    #[error("the request worker failed: {0}")]
    Worker(String),
}

impl IntoResponse for OaiFailure {
    fn into_response(self) -> Response {
        // The details go to the node's log, not to the public.
        tracing::error!(error = %self, "OAI-PMH request failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "internal error\n",
        )
            .into_response()
    }
}

/// `/oai` with the default settings.
pub fn routes() -> axum::Router<State> {
    routes_with(Settings::default())
}

/// `/oai` with explicit settings (tests use a small page size).
pub fn routes_with(settings: Settings) -> axum::Router<State> {
    let settings = Arc::new(Settings {
        page_size: settings.page_size.clamp(1, MAX_PAGE_SIZE),
        ..settings
    });
    let for_post = settings.clone();
    axum::Router::new().route(
        "/oai",
        axum::routing::get(
            move |axum::extract::State(archive): axum::extract::State<State>,
                  axum::extract::RawQuery(query): axum::extract::RawQuery,
                  headers: HeaderMap| {
                let settings = settings.clone();
                async move { answer(archive, settings, query.unwrap_or_default(), &headers).await }
            },
        )
        .post(
            move |axum::extract::State(archive): axum::extract::State<State>,
                  headers: HeaderMap,
                  body: axum::body::Bytes| {
                let settings = for_post.clone();
                async move { answer_post(archive, settings, &headers, &body).await }
            },
        ),
    )
}

async fn answer_post(
    archive: State,
    settings: Arc<Settings>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    // OAI-PMH 3.1.1.2: POST requests carry the arguments as a form.
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    let query = if !form {
        None
    } else if body.len() > args::MAX_QUERY {
        // parse_pairs refuses it with badArgument; keep the message without copying it.
        Some("x".repeat(args::MAX_QUERY + 1))
    } else {
        std::str::from_utf8(body).ok().map(str::to_string)
    };
    match query {
        Some(q) => answer(archive, settings, q, headers).await,
        None => {
            let base = base_url(
                &settings,
                headers,
                archive.gateway_url.get().map(String::as_str),
            );
            xml_response(error_document(
                &base,
                &[],
                &OaiError::new(
                    ErrorCode::BadArgument,
                    "POST requests must send application/x-www-form-urlencoded UTF-8",
                ),
            ))
        }
    }
}

async fn answer(
    archive: State,
    settings: Arc<Settings>,
    query: String,
    headers: &HeaderMap,
) -> Response {
    let base = base_url(
        &settings,
        headers,
        archive.gateway_url.get().map(String::as_str),
    );
    // Catalog scans decrypt entries and read sled: off the async workers.
    let done = tokio::task::spawn_blocking(move || render(&archive, &settings, &query, &base))
        .await
        .map_err(|e| OaiFailure::Worker(e.to_string()));
    match done {
        Ok(Ok(doc)) => xml_response(doc),
        Ok(Err(e)) | Err(e) => e.into_response(),
    }
}

fn xml_response(doc: String) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/xml; charset=utf-8"),
            // Answers change as records open and are added.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        doc,
    )
        .into_response()
}

/// The endpoint's URL as the harvester reached it. `Host` comes from the client, so only a
/// plain host[:port] is echoed; anything else falls back to `localhost`.
fn base_url(settings: &Settings, headers: &HeaderMap, archive_url: Option<&str>) -> String {
    if let Some(url) = &settings.base_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{}://{host}/oai", scheme(archive_url))
}

/// `https` when the gateway serves TLS (its bound URL says so), else `http`.
fn scheme(gateway_url: Option<&str>) -> &'static str {
    match gateway_url {
        Some(u) if u.starts_with("https://") => "https",
        _ => "http",
    }
}

/// The key that authenticates resumption tokens: derived from the node's signing key, so
/// it survives restarts (a harvest resumes across one) and differs between nodes.
pub fn token_key(archive: &Archive) -> [u8; 32] {
    blake3::derive_key(
        "archipel oai-pmh resumption token v1",
        &archive.identity.signing_key.to_bytes(),
    )
}

fn response_date() -> String {
    // RFC 3339 UTC with seconds and `Z`, as OAI-PMH requires for responseDate.
    clock::now_rfc3339()
}

fn open_document(w: &mut Writer) {
    w.open(
        "OAI-PMH",
        &[
            ("xmlns", OAI_NS),
            ("xmlns:xsi", XSI_NS),
            ("xsi:schemaLocation", OAI_SCHEMA),
        ],
    );
    w.text("responseDate", &[], &response_date());
}

fn error_document(base: &str, request_attrs: &[(&str, &str)], e: &OaiError) -> String {
    let mut w = Writer::new();
    open_document(&mut w);
    w.text("request", request_attrs, base);
    w.text("error", &[("code", e.code.as_str())], &e.message);
    w.finish()
}

/// One whole response document.
fn render(
    archive: &Archive,
    settings: &Settings,
    query: &str,
    base: &str,
) -> Result<String, OaiFailure> {
    let key = token_key(archive);
    let request = match parse_request(query, &key) {
        Ok(r) => r,
        Err(e) => {
            // OAI-PMH 3.2: after badVerb or badArgument the request element carries no
            // attributes. Other errors echo the (valid) arguments.
            let pairs = if matches!(e.code, ErrorCode::BadVerb | ErrorCode::BadArgument) {
                Vec::new()
            } else {
                args::parse_pairs(query).unwrap_or_default()
            };
            let attrs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            return Ok(error_document(base, &attrs, &e));
        }
    };
    // Every argument was checked by parse_request: names are known, values are escaped.
    let pairs = args::parse_pairs(query).unwrap_or_default();
    let attrs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let repo = Repository::new(archive, settings, base);
    let mut body = Writer::fragment();
    let answered = match &request {
        OaiRequest::Identify => repo.identify(&mut body),
        OaiRequest::ListMetadataFormats { identifier } => {
            repo.list_metadata_formats(&mut body, identifier.as_deref())
        }
        OaiRequest::ListSets { resumption_token } => {
            repo.list_sets(&mut body, resumption_token.as_deref())
        }
        OaiRequest::List(q) => repo.list(&mut body, q, &key),
        OaiRequest::GetRecord {
            identifier,
            metadata_prefix,
        } => repo.get_record(&mut body, identifier, metadata_prefix),
    };
    let mut w = Writer::new();
    open_document(&mut w);
    w.text("request", &attrs, base);
    match answered {
        Ok(()) => {
            w.raw(&body.finish_fragment());
        }
        Err(Answer::Oai(e)) => {
            w.text("error", &[("code", e.code.as_str())], &e.message);
        }
        Err(Answer::Failed(f)) => return Err(f),
    }
    Ok(w.finish())
}

/// Why a verb did not produce its normal answer.
enum Answer {
    Oai(OaiError),
    Failed(OaiFailure),
}

impl From<OaiError> for Answer {
    fn from(e: OaiError) -> Self {
        Answer::Oai(e)
    }
}

impl<E: Into<OaiFailure>> From<E> for Answer {
    fn from(e: E) -> Self {
        Answer::Failed(e.into())
    }
}

/// A record as OAI-PMH shows it today.
struct Visible<'m> {
    manifest: &'m Manifest,
    datestamp: Date,
    status: Communicability,
    sets: Vec<String>,
}

fn ingestion_day(m: &Manifest) -> Date {
    time::OffsetDateTime::from_unix_timestamp(m.ingested_at)
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN)
}

/// Whether the record's metadata may be published on `today`, and as of which day it looks
/// as it does now.
fn visible(m: &Manifest, today: Date) -> Option<Visible<'_>> {
    // The gateway's one rule of what the public may see (`gateway::access`); the
    // communicability answer is still needed for the opening day and the rights statement.
    if super::access::access(&m.metadata, today) == super::access::Access::Hidden {
        return None;
    }
    let status = communicability(&m.metadata, today);
    let ingested = ingestion_day(m);
    let datestamp = match status {
        Communicability::Open { since } => since.map_or(ingested, |d| d.max(ingested)),
        _ => ingested,
    };
    Some(Visible {
        manifest: m,
        datestamp,
        status,
        sets: record_sets(m),
    })
}

/// The sets a record is listed in by OAI-PMH on `today`, or `None` if it is not listed
/// (remembered when it is eliminated, to report it as deleted).
pub fn listed(m: &Manifest, today: Date) -> Option<Vec<String>> {
    visible(m, today).map(|v| v.sets)
}

/// A lawfully eliminated record that OAI-PMH listed: a deleted header.
struct Gone {
    id: String,
    day: Date,
    sets: Vec<String>,
}

enum Item {
    Live(Box<Manifest>),
    Gone(Gone),
}

impl Item {
    fn id(&self) -> &str {
        match self {
            Item::Live(m) => &m.record_id,
            Item::Gone(g) => &g.id,
        }
    }
}

/// Fills one page of a list verb from items met in record ID order.
struct Pager<'q> {
    q: &'q ListQuery,
    today: Date,
    size: usize,
    page: Vec<Item>,
    more: bool,
}

impl Pager<'_> {
    /// Takes the item if the query selects it; false once the page is full and another
    /// selected item exists (then there is a next page).
    fn offer(&mut self, item: Item) -> bool {
        let (day, sets) = match &item {
            Item::Live(m) => match visible(m, self.today) {
                Some(v) => (v.datestamp, v.sets),
                None => return true,
            },
            Item::Gone(g) => (g.day, g.sets.clone()),
        };
        let q = self.q;
        let selected = q.from.is_none_or(|f| day >= f)
            && q.until.is_none_or(|u| day <= u)
            && q.set.as_deref().is_none_or(|s| in_set(&sets, s));
        if !selected {
            return true;
        }
        if self.page.len() == self.size {
            self.more = true;
            return false;
        }
        self.page.push(item);
        true
    }
}

/// `producer:<slug>` and `type:<slug>` for a record (when it has them).
fn record_sets(m: &Manifest) -> Vec<String> {
    let mut sets = Vec::new();
    if !m.metadata.producer.trim().is_empty() {
        sets.push(format!("producer:{}", slug(&m.metadata.producer)));
    }
    if !m.metadata.record_type.trim().is_empty() {
        sets.push(format!("type:{}", slug(&m.metadata.record_type)));
    }
    sets
}

/// Membership, hierarchical: `producer` holds every `producer:<slug>`.
fn in_set(sets: &[String], spec: &str) -> bool {
    sets.iter().any(|s| {
        s == spec
            || s.strip_prefix(spec)
                .is_some_and(|rest| rest.starts_with(':'))
    })
}

/// A setSpec part from a name: lower case, French accents folded, anything else a dash.
/// A name with no letter or digit gets a digest, so it still has a set of its own.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().to_lowercase().chars() {
        let folded: &str = match c {
            'à' | 'â' | 'ä' | 'á' | 'ã' | 'å' => "a",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'î' | 'ï' | 'í' | 'ì' => "i",
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => "o",
            'ù' | 'û' | 'ü' | 'ú' => "u",
            'ÿ' | 'ý' => "y",
            'ç' => "c",
            'ñ' => "n",
            'œ' => "oe",
            'æ' => "ae",
            c if c.is_ascii_alphanumeric() => {
                out.push(c);
                continue;
            }
            _ => "-",
        };
        if folded == "-" {
            if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push_str(folded);
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        let h = blake3::hash(name.as_bytes());
        out = format!("h{}", &hex::encode(h.as_bytes())[..12]);
    }
    out
}

struct Repository<'a> {
    archive: &'a Archive,
    settings: &'a Settings,
    base: &'a str,
    today: Date,
    repo_id: String,
}

impl<'a> Repository<'a> {
    fn new(archive: &'a Archive, settings: &'a Settings, base: &'a str) -> Self {
        Repository {
            archive,
            settings,
            base,
            today: clock::today(),
            repo_id: settings
                .repository_identifier
                .clone()
                .unwrap_or_else(|| archive.identity.node_id.clone()),
        }
    }

    fn identifier(&self, record_id: &str) -> String {
        format!("oai:{}:{record_id}", self.repo_id)
    }

    /// The record ID in an identifier of this repository, if it is one.
    fn record_id_of<'i>(&self, identifier: &'i str) -> Option<&'i str> {
        identifier
            .strip_prefix("oai:")?
            .strip_prefix(self.repo_id.as_str())?
            .strip_prefix(':')
            .filter(|id| args::valid_record_id(id))
    }

    fn check_prefix(prefix: &str) -> Result<(), OaiError> {
        if prefix == OAI_DC {
            Ok(())
        } else {
            Err(OaiError::new(
                ErrorCode::CannotDisseminateFormat,
                format!("metadataPrefix {prefix:?} is not served; this repository serves oai_dc"),
            ))
        }
    }

    /// Walks the catalog after `after`, calling `f` for each record; `f` returns false to
    /// stop.
    fn scan(&self, after: &str, mut f: impl FnMut(&Manifest) -> bool) -> Result<(), Answer> {
        let mut token = after.to_string();
        loop {
            let (page, next) = self
                .archive
                .list(&ListFilter::default(), SCAN_STEP, &token)?;
            for m in &page {
                if !f(m) {
                    return Ok(());
                }
            }
            if next.is_empty() {
                return Ok(());
            }
            token = next;
        }
    }

    /// The record behind an identifier, if it exists and its metadata may be shown;
    /// `Err(Deleted)` information comes as `Ok(Lookup::Deleted(day))`.
    fn lookup(&self, identifier: &str) -> Result<Lookup, Answer> {
        let unknown = || {
            OaiError::new(
                ErrorCode::IdDoesNotExist,
                format!("no record {identifier:?} in this repository"),
            )
        };
        let Some(id) = self.record_id_of(identifier) else {
            return Err(unknown().into());
        };
        match self.archive.manifest(id) {
            Ok(m) => {
                if visible(&m, self.today).is_some() {
                    Ok(Lookup::Found(Box::new(m)))
                } else {
                    // Not communicable and metadata not public: indistinguishable from absent.
                    Err(unknown().into())
                }
            }
            Err(crate::error::Error::Store(crate::store::StoreError::NotFound(_))) => {
                if let Some(state) = self.archive.elimination(id)? {
                    // Reported as deleted only if it was listed when it was eliminated.
                    return if state.oai_visible {
                        let day = gone_day(&state).unwrap_or(self.today);
                        Ok(Lookup::Deleted(id.to_string(), day, state.oai_sets))
                    } else {
                        Err(unknown().into())
                    };
                }
                match self.deleted_day(id)? {
                    Some(day) => Ok(Lookup::Deleted(id.to_string(), day, Vec::new())),
                    None => Err(unknown().into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// For a record no longer in the catalog: the day of its ingestion event, if the audit
    /// log has one (then the record existed and is gone).
    fn deleted_day(&self, id: &str) -> Result<Option<Date>, Answer> {
        let view = self.archive.log.view()?;
        let index = match view.record_event(id) {
            Ok(i) => i,
            Err(crate::log::LogError::NoRecord(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let leaf = view.leaf(index)?;
        let day = archipel_proto::event::Event::decode(&leaf)
            .ok()
            .and_then(|e| e.time.get(..10).and_then(clock::parse_date))
            .unwrap_or(self.today);
        Ok(Some(day))
    }

    fn identify(&self, w: &mut Writer) -> Result<(), Answer> {
        // The earliest datestamp is at least the first record's ingestion day (record IDs
        // are ULIDs, minted in ingestion order).
        let mut earliest = self.today;
        self.scan("", |m| {
            earliest = earliest.min(ingestion_day(m));
            false
        })?;
        let admin = self
            .settings
            .admin_email
            .clone()
            .unwrap_or_else(|| format!("unset@{}.invalid", self.repo_id));
        w.open("Identify", &[]);
        w.text(
            "repositoryName",
            &[],
            &format!("Archipel — {}", self.archive.identity.territory),
        );
        w.text("baseURL", &[], self.base);
        w.text("protocolVersion", &[], "2.0");
        w.text("adminEmail", &[], &admin);
        w.text("earliestDatestamp", &[], &clock::format_date(earliest));
        w.text("deletedRecord", &[], "persistent");
        w.text("granularity", &[], "YYYY-MM-DD");
        w.close();
        Ok(())
    }

    fn write_formats(w: &mut Writer) {
        w.open("ListMetadataFormats", &[]);
        w.open("metadataFormat", &[]);
        w.text("metadataPrefix", &[], OAI_DC);
        w.text("schema", &[], OAI_DC_XSD);
        w.text("metadataNamespace", &[], OAI_DC_NS);
        w.close();
        w.close();
    }

    fn list_metadata_formats(
        &self,
        w: &mut Writer,
        identifier: Option<&str>,
    ) -> Result<(), Answer> {
        if let Some(identifier) = identifier {
            match self.lookup(identifier)? {
                Lookup::Found(_) => {}
                Lookup::Deleted(..) => {
                    return Err(OaiError::new(
                        ErrorCode::NoMetadataFormats,
                        format!("{identifier:?} was deleted: no metadata is disseminated for it"),
                    )
                    .into());
                }
            }
        }
        Self::write_formats(w);
        Ok(())
    }

    fn list_sets(&self, w: &mut Writer, resumption_token: Option<&str>) -> Result<(), Answer> {
        if resumption_token.is_some() {
            // The set list always comes whole, so this repository never issues such a token.
            return Err(OaiError::new(
                ErrorCode::BadResumptionToken,
                "ListSets answers in one response; this repository issued no token for it",
            )
            .into());
        }
        let mut sets = std::collections::BTreeMap::<String, String>::new();
        let today = self.today;
        self.scan("", |m| {
            if visible(m, today).is_some() {
                let md = &m.metadata;
                if !md.producer.trim().is_empty() {
                    sets.entry(format!("producer:{}", slug(&md.producer)))
                        .or_insert_with(|| md.producer.trim().to_string());
                }
                if !md.record_type.trim().is_empty() {
                    sets.entry(format!("type:{}", slug(&md.record_type)))
                        .or_insert_with(|| md.record_type.trim().to_string());
                }
            }
            true
        })?;
        w.open("ListSets", &[]);
        for (spec, name) in [
            ("producer", "Par service producteur"),
            ("type", "Par type de document"),
        ] {
            w.open("set", &[]);
            w.text("setSpec", &[], spec);
            w.text("setName", &[], name);
            w.close();
        }
        for (spec, name) in &sets {
            w.open("set", &[]);
            w.text("setSpec", &[], spec);
            w.text("setName", &[], name);
            w.close();
        }
        w.close();
        Ok(())
    }

    /// Eliminated records after `after` that OAI-PMH listed, in record ID order.
    fn gone_after(
        &self,
        after: &str,
    ) -> Result<impl Iterator<Item = Result<Gone, Answer>> + use<>, Answer> {
        let today = self.today;
        Ok(self
            .archive
            .store
            .tombstones_after(after)
            .map_err(crate::error::Error::from)?
            .filter_map(move |kv| {
                let (id, bytes) = match kv {
                    Ok(kv) => kv,
                    Err(e) => return Some(Err(Answer::from(crate::error::Error::from(e)))),
                };
                let state = match <archipel_proto::v1::EliminationState as prost::Message>::decode(
                    bytes.as_slice(),
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        return Some(Err(Answer::from(crate::error::Error::from(
                            crate::store::StoreError::Backend(format!(
                                "elimination state of {id}: {e}"
                            )),
                        ))));
                    }
                };
                if !state.oai_visible {
                    return None;
                }
                Some(Ok(Gone {
                    day: gone_day(&state).unwrap_or(today),
                    sets: state.oai_sets,
                    id,
                }))
            }))
    }

    fn list(&self, w: &mut Writer, q: &ListQuery, key: &[u8; 32]) -> Result<(), Answer> {
        Self::check_prefix(&q.metadata_prefix)?;
        let mut pager = Pager {
            q,
            today: self.today,
            size: self.settings.page_size,
            page: Vec::new(),
            more: false,
        };
        // The catalog and the tombstones are both in record ID order: merge them.
        let mut gone = self.gone_after(&q.after)?.peekable();
        let mut failure: Option<Answer> = None;
        let mut stopped = false;
        self.scan(&q.after, |m| {
            while let Some(g) = gone.next_if(|g| g.as_ref().map_or(true, |g| g.id < m.record_id)) {
                match g {
                    Ok(g) => {
                        if !pager.offer(Item::Gone(g)) {
                            stopped = true;
                            return false;
                        }
                    }
                    Err(e) => {
                        failure = Some(e);
                        stopped = true;
                        return false;
                    }
                }
            }
            if !pager.offer(Item::Live(Box::new(m.clone()))) {
                stopped = true;
                return false;
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !stopped {
            for g in gone {
                if !pager.offer(Item::Gone(g?)) {
                    break;
                }
            }
        }
        let (page, more) = (pager.page, pager.more);
        if page.is_empty() {
            return Err(OaiError::new(
                ErrorCode::NoRecordsMatch,
                "no record matches these arguments",
            )
            .into());
        }
        let element = if q.records {
            "ListRecords"
        } else {
            "ListIdentifiers"
        };
        w.open(element, &[]);
        for item in &page {
            match item {
                Item::Live(m) => {
                    let Some(v) = visible(m, self.today) else {
                        continue;
                    };
                    if q.records {
                        self.write_record(w, &v);
                    } else {
                        self.write_header(w, &v);
                    }
                }
                Item::Gone(g) => {
                    if q.records {
                        w.open("record", &[]);
                    }
                    self.write_deleted_header(w, &g.id, g.day, &g.sets);
                    if q.records {
                        w.close();
                    }
                }
            }
        }
        let cursor = q.cursor.to_string();
        if more {
            let next = ListQuery {
                after: page.last().map(|i| i.id().to_string()).unwrap_or_default(),
                cursor: q.cursor.saturating_add(page.len() as u64),
                ..q.clone()
            };
            w.text(
                "resumptionToken",
                &[("cursor", &cursor)],
                &encode_token(&next, key),
            );
        } else if !q.after.is_empty() {
            // The last page of a list that was cut: an empty token says it is complete.
            let total = q.cursor.saturating_add(page.len() as u64).to_string();
            w.empty(
                "resumptionToken",
                &[("completeListSize", &total), ("cursor", &cursor)],
            );
        }
        w.close();
        Ok(())
    }

    fn get_record(&self, w: &mut Writer, identifier: &str, prefix: &str) -> Result<(), Answer> {
        // An unknown identifier is reported before an unknown format (either is allowed;
        // this order tells the harvester the more fundamental problem first).
        let found = self.lookup(identifier)?;
        Self::check_prefix(prefix)?;
        w.open("GetRecord", &[]);
        match found {
            Lookup::Found(m) => {
                if let Some(v) = visible(&m, self.today) {
                    self.write_record(w, &v);
                }
            }
            Lookup::Deleted(id, day, sets) => {
                w.open("record", &[]);
                self.write_deleted_header(w, &id, day, &sets);
                w.close();
            }
        }
        w.close();
        Ok(())
    }

    fn write_deleted_header(&self, w: &mut Writer, id: &str, day: Date, sets: &[String]) {
        w.open("header", &[("status", "deleted")]);
        w.text("identifier", &[], &self.identifier(id));
        w.text("datestamp", &[], &clock::format_date(day));
        for s in sets {
            w.text("setSpec", &[], s);
        }
        w.close();
    }

    fn write_header(&self, w: &mut Writer, v: &Visible) {
        w.open("header", &[]);
        w.text("identifier", &[], &self.identifier(&v.manifest.record_id));
        w.text("datestamp", &[], &clock::format_date(v.datestamp));
        for s in &v.sets {
            w.text("setSpec", &[], s);
        }
        w.close();
    }

    fn write_record(&self, w: &mut Writer, v: &Visible) {
        w.open("record", &[]);
        self.write_header(w, v);
        w.open("metadata", &[]);
        self.write_dc(w, v);
        w.close();
        w.close();
    }

    /// Unqualified Dublin Core. Only descriptive metadata: the person dates that drive some
    /// delays, the DUA and the final disposition are management data and never published.
    fn write_dc(&self, w: &mut Writer, v: &Visible) {
        let m = v.manifest;
        let md = &m.metadata;
        w.open(
            "oai_dc:dc",
            &[
                ("xmlns:oai_dc", OAI_DC_NS),
                ("xmlns:dc", DC_NS),
                ("xmlns:xsi", XSI_NS),
                ("xsi:schemaLocation", OAI_DC_SCHEMA),
            ],
        );
        w.text("dc:title", &[], &md.title);
        if !md.producer.is_empty() {
            w.text("dc:creator", &[], &md.producer);
        }
        for k in &md.keywords {
            w.text("dc:subject", &[], k);
        }
        if !md.description.is_empty() {
            w.text("dc:description", &[], &md.description);
        }
        w.text("dc:publisher", &[], &self.archive.identity.territory);
        match (md.date_from.as_str(), md.date_to.as_str()) {
            ("", "") => {}
            (a, b) if a == b || b.is_empty() => {
                w.text("dc:date", &[], a);
            }
            ("", b) => {
                w.text("dc:date", &[], b);
            }
            // ISO 8601 interval, as FranceArchives reads dates of files of documents.
            (a, b) => {
                w.text("dc:date", &[], &format!("{a}/{b}"));
            }
        }
        if !md.record_type.is_empty() {
            w.text("dc:type", &[], &md.record_type);
        }
        let mut formats: Vec<&str> = m
            .files
            .iter()
            .map(|f| f.media_type.as_str())
            .filter(|t| !t.is_empty())
            .collect();
        formats.sort_unstable();
        formats.dedup();
        for f in formats {
            w.text("dc:format", &[], f);
        }
        let page = self
            .base
            .strip_suffix("/oai")
            .map(|root| format!("{root}/records/{}", m.record_id));
        if let Some(page) = page {
            w.text("dc:identifier", &[], &page);
        }
        w.text("dc:identifier", &[], &m.record_id);
        if !md.language.is_empty() {
            w.text("dc:language", &[], &md.language);
        }
        w.text("dc:rights", &[], &rights_statement(v.status));
        if v.status.is_open() && !md.licence.is_empty() {
            w.text("dc:rights", &[], &md.licence);
        }
        w.close();
    }
}

/// The day a record was eliminated, from its tombstone.
fn gone_day(state: &archipel_proto::v1::EliminationState) -> Option<Date> {
    let t = state.tombstone.as_ref()?;
    let t = archipel_proto::tombstone::Tombstone::decode(&t.text).ok()?;
    t.time.get(..10).and_then(clock::parse_date)
}

enum Lookup {
    Found(Box<Manifest>),
    /// Record ID, the day it was eliminated (or of its ingestion event, if that is all
    /// that is known) and its sets.
    Deleted(String, Date, Vec<String>),
}

/// The access statement of `dc:rights`, in French like the rest of the public pages.
fn rights_statement(status: Communicability) -> String {
    match status {
        Communicability::Open { since: None } => {
            "Communicable de plein droit (Code du patrimoine, art. L213-1)".to_string()
        }
        Communicability::Open { since: Some(d) } => format!(
            "Communicable depuis le {} (Code du patrimoine, art. L213-2)",
            clock::format_date(d)
        ),
        Communicability::Until(d) => format!(
            "Non communicable avant le {} (Code du patrimoine, art. L213-2) ; seules les métadonnées sont publiées",
            clock::format_date(d)
        ),
        Communicability::Closed => {
            "Non communicable (Code du patrimoine, art. L213-2) ; seules les métadonnées sont publiées"
                .to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archipel_proto::manifest::Metadata;

    fn manifest(md: Metadata, ingested: &str) -> Manifest {
        let t =
            time::OffsetDateTime::parse(ingested, &time::format_description::well_known::Rfc3339)
                .expect("test date");
        Manifest {
            record_id: "01KAX7Z3Q4M5N6P7R8S9T0V1W2".into(),
            origin: "node".into(),
            ingested_at: t.unix_timestamp(),
            metadata: md,
            files: vec![],
        }
    }

    fn day(s: &str) -> Date {
        clock::parse_date(s).expect("test date")
    }

    #[test]
    fn slugs_fold_french_names() {
        assert_eq!(slug("Secrétariat général"), "secretariat-general");
        assert_eq!(slug("  Délibération / Conseil  "), "deliberation-conseil");
        assert_eq!(slug("Œuvres d'art"), "oeuvres-d-art");
        assert!(args::valid_set_spec(&format!("producer:{}", slug("***"))));
        assert_ne!(slug("***"), slug("+++"));
        assert!(args::valid_set_spec(&format!("type:{}", slug("日本"))));
    }

    #[test]
    fn hierarchical_set_membership() {
        let sets = vec![
            "producer:etat-civil".to_string(),
            "type:registre".to_string(),
        ];
        assert!(in_set(&sets, "producer"));
        assert!(in_set(&sets, "producer:etat-civil"));
        assert!(!in_set(&sets, "producer:etat"));
        assert!(!in_set(&sets, "type:registre:x"));
        assert!(in_set(&sets, "type"));
    }

    #[test]
    fn visibility_and_datestamps() {
        let today = day("2026-06-01");
        let immediate = Metadata {
            communicability: "immediate".into(),
            ..Default::default()
        };
        let m = manifest(immediate, "2026-05-03T10:00:00Z");
        assert_eq!(
            visible(&m, today).map(|v| v.datestamp),
            Some(day("2026-05-03"))
        );

        // Opened on 2026-05-20 (50 years after its document): visible from that day.
        let opened = Metadata {
            communicability: "l213-2-3".into(),
            date_from: "1976-05-20".into(),
            date_to: "1976-05-20".into(),
            ..Default::default()
        };
        let m = manifest(opened.clone(), "2020-01-01T00:00:00Z");
        assert_eq!(
            visible(&m, today).map(|v| v.datestamp),
            Some(day("2026-05-20"))
        );
        assert!(visible(&m, day("2026-05-19")).is_none());

        // Still closed: hidden, unless the metadata is public.
        let closed = Metadata {
            date_from: "2000-01-01".into(),
            date_to: "2000-01-01".into(),
            ..opened.clone()
        };
        assert!(visible(&manifest(closed.clone(), "2020-01-01T00:00:00Z"), today).is_none());
        let public = Metadata {
            metadata_public: true,
            ..closed
        };
        let m = manifest(public, "2020-01-01T00:00:00Z");
        let v = visible(&m, today).expect("public metadata");
        assert_eq!(v.datestamp, day("2020-01-01"));
        assert!(!v.status.is_open());

        // No category at all: hidden.
        assert!(
            visible(
                &manifest(Metadata::default(), "2020-01-01T00:00:00Z"),
                today
            )
            .is_none()
        );
    }

    #[test]
    fn rights_say_when_a_record_opens() {
        assert!(rights_statement(Communicability::Until(day("2051-01-01"))).contains("2051-01-01"));
        assert!(rights_statement(Communicability::Open { since: None }).contains("L213-1"));
    }
}
