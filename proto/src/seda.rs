//! SEDA 2.2 (Standard d'échange de données pour l'archivage): the `ArchiveTransfer` message
//! read into what Archipel archives, and the messages Archipel writes (`ArchiveTransfer` for
//! export, `ArchiveTransferReply`). Pure code over text that comes from outside, fuzzed in
//! `fuzz/fuzz_targets/seda_transfer.rs`. Schema validation (against the official XSDs) and
//! every file access are the CLI's job (`cli/src/seda.rs`); this module assumes nothing of
//! its input and refuses what it cannot map, naming the element.
//!
//! Mapping (documented in ARCHITECTURE.md, "SEDA 2.2"):
//! - every `ArchiveUnit` that references data objects (`DataObjectReference`, directly or
//!   through a `DataObjectGroup`) becomes one record; units that only hold other units are
//!   levels of description and are not records; their management rules are inherited;
//! - `Title` (first), `Description` (first), `StartDate`/`EndDate` (equal: one date),
//!   `OriginatingAgency/Identifier` (producer), `DocumentType` (type), `Language` (first),
//!   `Keyword/KeywordContent`;
//! - `AppraisalRule`: `Rule` is read as an ISO 8601 duration in years (`P10Y`) giving the DUA
//!   (several rules: the longest); `FinalAction` Keep → C, Destroy → D;
//! - `AccessRule`: the SEDA access rule codes AR038..AR062 mapped to the L213-2 categories by
//!   their delay ([`category_of_access_rule`]); several rules: the most restrictive.

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::reader::Reader;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The SEDA 2.2 namespace.
pub const NAMESPACE: &str = "fr:gouv:culture:archivesdefrance:seda:v2.2";

/// Deepest element nesting accepted (SEDA messages are a dozen levels deep; units nest).
const MAX_DEPTH: usize = 256;
/// Most elements accepted in one message.
const MAX_ELEMENTS: usize = 2_000_000;

/// Why a message cannot be read or mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SedaError {
    #[error("not well-formed XML: {0}")]
    Xml(String),
    #[error("the root element is {0}, not a SEDA 2.2 ArchiveTransfer")]
    NotTransfer(String),
    #[error("{0}: is missing")]
    Missing(String),
    #[error("unsupported structure: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
}

fn unsupported(msg: impl Into<String>) -> SedaError {
    SedaError::Unsupported(msg.into())
}

// ---------------------------------------------------------------------------------------
// A small element tree
// ---------------------------------------------------------------------------------------

/// An element: local name, attributes by local name, children, concatenated text.
#[derive(Debug, Default, Clone)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    fn text_of(&self, name: &str) -> Option<String> {
        self.all(name)
            .map(|c| c.text.trim().to_string())
            .find(|t| !t.is_empty())
    }
}

fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    match s.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => s.into_owned(),
    }
}

fn xml_err(e: impl std::fmt::Display) -> SedaError {
    SedaError::Xml(e.to_string())
}

fn start(e: &quick_xml::events::BytesStart<'_>) -> Result<Element, SedaError> {
    let mut el = Element {
        name: local(e.name().as_ref()),
        ..Default::default()
    };
    for a in e.attributes() {
        let a = a.map_err(xml_err)?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(xml_err)?
            .into_owned();
        // Namespace declarations keep their qualified name (xmlns, xmlns:p).
        let key = if key == "xmlns" || key.starts_with("xmlns:") {
            key
        } else {
            local(key.as_bytes())
        };
        el.attrs.push((key, value));
    }
    Ok(el)
}

fn parse_tree(xml: &str) -> Result<Element, SedaError> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let ev = reader.read_event().map_err(xml_err)?;
        match ev {
            Event::Start(e) => {
                if root.is_some() {
                    return Err(SedaError::Xml("content after the root element".into()));
                }
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(unsupported("the message is nested too deep or too large"));
                }
                stack.push(start(&e)?);
            }
            Event::Empty(e) => {
                if root.is_some() {
                    return Err(SedaError::Xml("content after the root element".into()));
                }
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(unsupported("the message is too large"));
                }
                let el = start(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| SedaError::Xml("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.decode().map_err(xml_err)?);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.decode().map_err(xml_err)?);
                }
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref().map_err(xml_err)? {
                    Some(c) => c,
                    None => match r.decode().map_err(xml_err)?.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(SedaError::Xml(format!("unknown entity &{other};")));
                        }
                    },
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push(ch);
                }
            }
            Event::DocType(_) => {
                return Err(unsupported("a DOCTYPE (entities are not expanded here)"));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(SedaError::Xml("the document ends inside an element".into()));
    }
    root.ok_or_else(|| SedaError::Xml("no root element".into()))
}

// ---------------------------------------------------------------------------------------
// The transfer, as Archipel reads it
// ---------------------------------------------------------------------------------------

/// The digest algorithms checked (SEDA's `MessageDigest/@algorithm` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DigestAlg {
    Sha256,
    Sha512,
}

impl DigestAlg {
    pub fn code(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "SHA-256",
            DigestAlg::Sha512 => "SHA-512",
        }
    }
    fn len(self) -> usize {
        match self {
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha512 => 64,
        }
    }
}

/// One `BinaryDataObject`: where its bytes are and what they must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryObject {
    /// Its `id` attribute.
    pub id: String,
    /// `Uri` (or `Attachment/@uri`, `Attachment/@filename`): a path relative to the message.
    pub uri: String,
    /// `FileInfo/Filename`, else the last component of `uri`: the record's file name.
    pub filename: String,
    pub algorithm: DigestAlg,
    /// Lower-case hex of the digest (`MessageDigest` may be hex or base64).
    pub digest: String,
    /// `Size`, if given.
    pub size: Option<u64>,
}

/// An `AppraisalRule`, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appraisal {
    pub dua_years: u32,
    /// `C` (Keep) or `D` (Destroy).
    pub final_disposition: String,
}

/// One record to create: an `ArchiveUnit` with data objects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unit {
    pub id: String,
    pub title: String,
    pub description: String,
    pub producer: String,
    pub record_type: String,
    pub language: String,
    pub keywords: Vec<String>,
    /// One date (`StartDate` = `EndDate`, or only one of them given).
    pub date: String,
    pub date_from: String,
    pub date_to: String,
    pub appraisal: Option<Appraisal>,
    /// An Archipel communicability code, if an `AccessRule` applies.
    pub communicability: Option<String>,
    /// IDs of its binary data objects, in message order, without repeats.
    pub objects: Vec<String>,
}

/// An `ArchiveTransfer` message, mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub message_identifier: String,
    pub date: String,
    pub archival_agency: String,
    pub transferring_agency: String,
    pub objects: Vec<BinaryObject>,
    pub units: Vec<Unit>,
}

impl Transfer {
    pub fn object(&self, id: &str) -> Option<&BinaryObject> {
        self.objects.iter().find(|o| o.id == id)
    }
}

/// The Archipel category of a SEDA access rule code, by the delay the code stands for
/// (SEDA access rule list, Code du patrimoine L213-2):
/// AR038 → `immediate`; AR039..AR044 (25 years) → `l213-2-1`; AR045, AR046 (medical
/// secrecy) → `l213-2-2-medical`; AR047..AR053 (50 years) → `l213-2-3`; AR054..AR058
/// (75 years) → `l213-2-4`; AR059..AR061 (100 years) → `l213-2-5`; AR062 → `never`.
pub fn category_of_access_rule(code: &str) -> Option<&'static str> {
    let n: u32 = code.strip_prefix("AR")?.parse().ok()?;
    if code.len() != 5 {
        return None;
    }
    Some(match n {
        38 => "immediate",
        39..=44 => "l213-2-1",
        45 | 46 => "l213-2-2-medical",
        47..=53 => "l213-2-3",
        54..=58 => "l213-2-4",
        59..=61 => "l213-2-5",
        62 => "never",
        _ => return None,
    })
}

/// The access rule code written at export for a category (one code per category, mapped
/// back to the same category by [`category_of_access_rule`]).
pub fn access_rule_of_category(category: &str) -> Option<&'static str> {
    Some(match category {
        "immediate" => "AR038",
        "l213-2-1" => "AR039",
        "l213-2-2-medical" => "AR045",
        "l213-2-3" => "AR048",
        "l213-2-4" => "AR055",
        "l213-2-5" => "AR059",
        "never" => "AR062",
        _ => return None,
    })
}

/// Most restrictive first wins when a unit carries several access rules.
fn restriction_rank(category: &str) -> usize {
    [
        "immediate",
        "l213-2-1",
        "l213-2-2-medical",
        "l213-2-3",
        "l213-2-4",
        "l213-2-5",
        "never",
    ]
    .iter()
    .position(|c| *c == category)
    .unwrap_or(usize::MAX)
}

/// An appraisal rule's duration: `P<n>Y` (ISO 8601, years only).
pub fn dua_years_of_rule(rule: &str) -> Option<u32> {
    let n = rule.strip_prefix('P')?.strip_suffix('Y')?;
    if n.is_empty() || n.len() > 4 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn hex_or_base64(text: &str, alg: DigestAlg) -> Option<String> {
    let t: String = text.split_whitespace().collect();
    if t.len() == alg.len() * 2 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(t.to_ascii_lowercase());
    }
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(&t).ok()?;
    (bytes.len() == alg.len()).then(|| hex::encode(bytes))
}

fn is_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// A SEDA `DateType` (xsd:date, dateTime, gYear, gYearMonth...) as YYYY-MM-DD; a year or
/// month stands for its first day (`start`) or its last day.
fn date_of(value: &str, what: &str, start: bool) -> Result<String, SedaError> {
    let v = value.trim();
    if let Some(head) = v.get(..10).filter(|h| is_date(h)) {
        return Ok(head.to_string());
    }
    let bad = || SedaError::Invalid(format!("{what}: {v:?} is not a date Archipel can read"));
    if v.len() == 4 && v.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(if start {
            format!("{v}-01-01")
        } else {
            format!("{v}-12-31")
        });
    }
    if v.len() == 7 && is_date(&format!("{v}-01")) {
        if start {
            return Ok(format!("{v}-01"));
        }
        let year: u32 = v[..4].parse().map_err(|_| bad())?;
        let month: u32 = v[5..].parse().map_err(|_| bad())?;
        let last = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if (year.is_multiple_of(4) && !year.is_multiple_of(100))
                || year.is_multiple_of(400) =>
            {
                29
            }
            2 => 28,
            _ => return Err(bad()),
        };
        return Ok(format!("{v}-{last}"));
    }
    Err(bad())
}

#[derive(Clone, Default)]
struct Inherited {
    appraisal: Option<Appraisal>,
    communicability: Option<String>,
}

fn management(
    unit_id: &str,
    m: Option<&Element>,
    parent: &Inherited,
) -> Result<Inherited, SedaError> {
    let mut out = parent.clone();
    let Some(m) = m else {
        return Ok(out);
    };
    if let Some(a) = m.child("AppraisalRule") {
        let rules: Vec<String> = a.all("Rule").map(|r| r.text.trim().to_string()).collect();
        if rules.is_empty() {
            return Err(unsupported(format!(
                "ArchiveUnit {unit_id}: an AppraisalRule with no Rule gives no DUA"
            )));
        }
        let mut years = 0;
        for r in &rules {
            years = years.max(dua_years_of_rule(r).ok_or_else(|| {
                unsupported(format!(
                    "ArchiveUnit {unit_id}: AppraisalRule Rule {r:?} is not a duration in years (e.g. P10Y)"
                ))
            })?);
        }
        let final_disposition = match a.text_of("FinalAction").as_deref() {
            Some("Keep") => "C",
            Some("Destroy") => "D",
            other => {
                return Err(unsupported(format!(
                    "ArchiveUnit {unit_id}: AppraisalRule FinalAction {other:?} (Keep or Destroy)"
                )));
            }
        };
        out.appraisal = Some(Appraisal {
            dua_years: years,
            final_disposition: final_disposition.to_string(),
        });
    }
    if let Some(a) = m.child("AccessRule") {
        let mut best: Option<&'static str> = None;
        for r in a.all("Rule") {
            let code = r.text.trim();
            let cat = category_of_access_rule(code).ok_or_else(|| {
                unsupported(format!(
                    "ArchiveUnit {unit_id}: AccessRule Rule {code:?} is not one of the codes AR038..AR062"
                ))
            })?;
            if best.is_none_or(|b| restriction_rank(cat) > restriction_rank(b)) {
                best = Some(cat);
            }
        }
        if let Some(b) = best {
            out.communicability = Some(b.to_string());
        }
    }
    Ok(out)
}

struct Walk<'a> {
    groups: &'a BTreeMap<String, Vec<String>>,
    objects: &'a BTreeSet<String>,
    units: Vec<Unit>,
    seen: BTreeSet<String>,
}

impl Walk<'_> {
    fn unit(&mut self, u: &Element, parent: &Inherited) -> Result<(), SedaError> {
        let id = u.attr("id").unwrap_or("").to_string();
        if u.child("ArchiveUnitRefId").is_some() {
            return Err(unsupported(format!(
                "ArchiveUnit {id}: references to other units (ArchiveUnitRefId)"
            )));
        }
        if u.child("ArchiveUnitReferenceAbstract").is_some() || u.child("Content").is_none() {
            return Err(unsupported(format!(
                "ArchiveUnit {id}: only units with their own Content are read"
            )));
        }
        if !self.seen.insert(id.clone()) {
            return Err(SedaError::Invalid(format!(
                "ArchiveUnit id {id:?} is used twice"
            )));
        }
        let inherited = management(&id, u.child("Management"), parent)?;
        let mut objects = Vec::new();
        for r in u.all("DataObjectReference") {
            if let Some(o) = r.text_of("DataObjectReferenceId") {
                if !self.objects.contains(&o) {
                    return Err(SedaError::Invalid(format!(
                        "ArchiveUnit {id}: DataObjectReferenceId {o} names no BinaryDataObject"
                    )));
                }
                objects.push(o);
            } else if let Some(g) = r.text_of("DataObjectGroupReferenceId") {
                let members = self.groups.get(&g).ok_or_else(|| {
                    SedaError::Invalid(format!(
                        "ArchiveUnit {id}: DataObjectGroupReferenceId {g} names no group of binary objects"
                    ))
                })?;
                objects.extend(members.iter().cloned());
            } else {
                return Err(unsupported(format!(
                    "ArchiveUnit {id}: a DataObjectReference with no reference"
                )));
            }
        }
        let mut unique = BTreeSet::new();
        objects.retain(|o| unique.insert(o.clone()));
        let children: Vec<&Element> = u.all("ArchiveUnit").collect();
        if objects.is_empty() && children.is_empty() {
            return Err(unsupported(format!(
                "ArchiveUnit {id}: references no data object and holds no unit"
            )));
        }
        if !objects.is_empty() {
            self.units
                .push(content(&id, u.child("Content"), &inherited, objects)?);
        }
        for c in children {
            self.unit(c, &inherited)?;
        }
        Ok(())
    }
}

fn content(
    id: &str,
    c: Option<&Element>,
    inherited: &Inherited,
    objects: Vec<String>,
) -> Result<Unit, SedaError> {
    let c = c.ok_or_else(|| SedaError::Missing(format!("ArchiveUnit {id}: Content")))?;
    let title = c
        .text_of("Title")
        .ok_or_else(|| SedaError::Missing(format!("ArchiveUnit {id}: Title")))?;
    let start = c
        .text_of("StartDate")
        .map(|d| date_of(&d, &format!("ArchiveUnit {id}: StartDate"), true))
        .transpose()?;
    let end = c
        .text_of("EndDate")
        .map(|d| date_of(&d, &format!("ArchiveUnit {id}: EndDate"), false))
        .transpose()?;
    let (date, date_from, date_to) = match (start, end) {
        (Some(a), Some(b)) if a == b => (a, String::new(), String::new()),
        (Some(a), Some(b)) => (String::new(), a, b),
        (Some(a), None) | (None, Some(a)) => (a, String::new(), String::new()),
        (None, None) => Default::default(),
    };
    Ok(Unit {
        id: id.to_string(),
        title,
        description: c.text_of("Description").unwrap_or_default(),
        producer: c
            .child("OriginatingAgency")
            .and_then(|o| o.text_of("Identifier"))
            .unwrap_or_default(),
        record_type: c.text_of("DocumentType").unwrap_or_default(),
        language: c.text_of("Language").unwrap_or_default(),
        keywords: c
            .all("Keyword")
            .filter_map(|k| k.text_of("KeywordContent"))
            .collect(),
        date,
        date_from,
        date_to,
        appraisal: inherited.appraisal.clone(),
        communicability: inherited.communicability.clone(),
        objects,
    })
}

fn binary_object(
    o: &Element,
    group: Option<&str>,
) -> Result<(BinaryObject, Option<String>), SedaError> {
    let id = o
        .attr("id")
        .ok_or_else(|| SedaError::Missing("BinaryDataObject: id".into()))?
        .to_string();
    let attachment = o.child("Attachment");
    if attachment.is_some_and(|a| !a.text.trim().is_empty()) {
        return Err(unsupported(format!(
            "BinaryDataObject {id}: content inline in the message (Attachment); give it as a file (Uri)"
        )));
    }
    let uri = o
        .text_of("Uri")
        .or_else(|| attachment.and_then(|a| a.attr("uri").or(a.attr("filename")).map(String::from)))
        .ok_or_else(|| SedaError::Missing(format!("BinaryDataObject {id}: Uri")))?;
    let md = o
        .child("MessageDigest")
        .ok_or_else(|| SedaError::Missing(format!("BinaryDataObject {id}: MessageDigest")))?;
    let alg = match md.attr("algorithm") {
        Some("SHA-512") => DigestAlg::Sha512,
        Some("SHA-256") => DigestAlg::Sha256,
        other => {
            return Err(unsupported(format!(
                "BinaryDataObject {id}: MessageDigest algorithm {other:?} (SHA-512 or SHA-256)"
            )));
        }
    };
    let digest = hex_or_base64(&md.text, alg).ok_or_else(|| {
        SedaError::Invalid(format!(
            "BinaryDataObject {id}: MessageDigest is not a {} digest in hex or base64",
            alg.code()
        ))
    })?;
    let size = o
        .text_of("Size")
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| SedaError::Invalid(format!("BinaryDataObject {id}: Size {s:?}")))
        })
        .transpose()?;
    let filename = o
        .child("FileInfo")
        .and_then(|f| f.text_of("Filename"))
        .or_else(|| {
            uri.rsplit('/')
                .next()
                .filter(|n| !n.is_empty())
                .map(String::from)
        })
        .ok_or_else(|| SedaError::Missing(format!("BinaryDataObject {id}: a file name")))?;
    // A group named inside the object (DataObjectGroupId / DataObjectGroupReferenceId).
    let own_group = o
        .text_of("DataObjectGroupId")
        .or_else(|| o.text_of("DataObjectGroupReferenceId"))
        .or_else(|| group.map(String::from));
    Ok((
        BinaryObject {
            id,
            uri,
            filename,
            algorithm: alg,
            digest,
            size,
        },
        own_group,
    ))
}

/// Reads an `ArchiveTransfer` message and maps it to records. The message should have been
/// validated against the schema first; this does not rely on it.
pub fn parse_transfer(xml: &str) -> Result<Transfer, SedaError> {
    let root = parse_tree(xml)?;
    if root.name != "ArchiveTransfer" {
        return Err(SedaError::NotTransfer(root.name));
    }
    let ns_ok = root
        .attrs
        .iter()
        .any(|(k, v)| (k == "xmlns" || k.starts_with("xmlns:")) && v == NAMESPACE);
    if !ns_ok {
        return Err(SedaError::NotTransfer(format!(
            "ArchiveTransfer outside the namespace {NAMESPACE}"
        )));
    }
    let req = |name: &str| {
        root.text_of(name)
            .ok_or_else(|| SedaError::Missing(name.to_string()))
    };
    let agency = |name: &str| {
        root.child(name)
            .and_then(|a| a.text_of("Identifier"))
            .ok_or_else(|| SedaError::Missing(format!("{name}/Identifier")))
    };
    let message_identifier = req("MessageIdentifier")?;
    let date = req("Date")?;
    let archival_agency = agency("ArchivalAgency")?;
    let transferring_agency = agency("TransferringAgency")?;
    let package = root
        .child("DataObjectPackage")
        .ok_or_else(|| SedaError::Missing("DataObjectPackage".into()))?;

    let mut objects = Vec::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |o: &Element, group: Option<&str>| -> Result<(), SedaError> {
        let (obj, g) = binary_object(o, group)?;
        if let Some(g) = g {
            groups.entry(g).or_default().push(obj.id.clone());
        }
        objects.push(obj);
        Ok(())
    };
    for c in &package.children {
        match c.name.as_str() {
            "BinaryDataObject" => add(c, None)?,
            "DataObjectGroup" => {
                let gid = c.attr("id").unwrap_or("").to_string();
                for o in &c.children {
                    match o.name.as_str() {
                        "BinaryDataObject" => add(o, Some(&gid))?,
                        "PhysicalDataObject" => {
                            return Err(unsupported(format!(
                                "PhysicalDataObject in group {gid}: Archipel keeps digital objects only"
                            )));
                        }
                        _ => {}
                    }
                }
            }
            "PhysicalDataObject" => {
                return Err(unsupported(
                    "PhysicalDataObject: Archipel keeps digital objects only",
                ));
            }
            _ => {}
        }
    }
    let mut ids = BTreeSet::new();
    for o in &objects {
        if !ids.insert(o.id.clone()) {
            return Err(SedaError::Invalid(format!(
                "BinaryDataObject id {:?} is used twice",
                o.id
            )));
        }
    }
    let dm = package
        .child("DescriptiveMetadata")
        .ok_or_else(|| SedaError::Missing("DescriptiveMetadata".into()))?;
    let mut walk = Walk {
        groups: &groups,
        objects: &ids,
        units: Vec::new(),
        seen: BTreeSet::new(),
    };
    // Rules of the whole package (ManagementMetadata) are inherited by every unit.
    let top = management(
        "(package)",
        package.child("ManagementMetadata"),
        &Inherited::default(),
    )?;
    for u in dm.all("ArchiveUnit") {
        walk.unit(u, &top)?;
    }
    let units = walk.units;
    if units.is_empty() {
        return Err(unsupported(
            "no ArchiveUnit references a data object: nothing to archive",
        ));
    }
    let used: BTreeSet<&String> = units.iter().flat_map(|u| u.objects.iter()).collect();
    if let Some(o) = objects.iter().find(|o| !used.contains(&o.id)) {
        return Err(unsupported(format!(
            "BinaryDataObject {}: no ArchiveUnit references it (it would not be archived)",
            o.id
        )));
    }
    for u in &units {
        let mut names = BTreeSet::new();
        for o in &u.objects {
            let name = objects
                .iter()
                .find(|b| &b.id == o)
                .map(|b| b.filename.clone())
                .unwrap_or_default();
            if name.contains('/') || name.contains('\\') || name.is_empty() {
                return Err(unsupported(format!(
                    "BinaryDataObject {o}: file name {name:?}; a record's files are flat names"
                )));
            }
            if !names.insert(name.clone()) {
                return Err(unsupported(format!(
                    "ArchiveUnit {}: two of its objects are named {name:?}",
                    u.id
                )));
            }
        }
    }
    Ok(Transfer {
        message_identifier,
        date,
        archival_agency,
        transferring_agency,
        objects,
        units,
    })
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// XML text escape (elements and attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry are dropped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// A token value (identifiers): whitespace collapsed, never empty.
fn token(s: &str) -> String {
    let t = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() {
        "-".to_string()
    } else {
        escape(&t)
    }
}

fn is_language(s: &str) -> bool {
    let mut parts = s.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// One binary object of an exported transfer.
#[derive(Debug, Clone)]
pub struct ObjectOut {
    pub id: String,
    pub uri: String,
    pub filename: String,
    /// Lower-case hex SHA-512.
    pub sha512: String,
    pub size: u64,
    pub media_type: String,
}

/// One record of an exported transfer.
#[derive(Debug, Clone, Default)]
pub struct UnitOut {
    pub id: String,
    /// The record's ID in Archipel (`SystemId`).
    pub system_id: String,
    pub title: String,
    pub description: String,
    pub producer: String,
    pub record_type: String,
    pub language: String,
    pub keywords: Vec<String>,
    pub date: String,
    pub date_from: String,
    pub date_to: String,
    pub dua_years: Option<u32>,
    pub final_disposition: String,
    pub communicability: String,
    pub objects: Vec<String>,
}

/// The header every message carries.
#[derive(Debug, Clone)]
pub struct Header {
    pub message_identifier: String,
    /// xsd:dateTime.
    pub date: String,
    pub archival_agency: String,
    pub transferring_agency: String,
    pub comment: String,
}

/// Writes an `ArchiveTransfer` (export): elements in the schema's order.
pub fn write_transfer(h: &Header, objects: &[ObjectOut], units: &[UnitOut]) -> String {
    let mut x = String::new();
    let _ = writeln!(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(x, "<ArchiveTransfer xmlns=\"{NAMESPACE}\">");
    if !h.comment.is_empty() {
        let _ = writeln!(x, "  <Comment>{}</Comment>", escape(&h.comment));
    }
    let _ = writeln!(x, "  <Date>{}</Date>", escape(&h.date));
    let _ = writeln!(
        x,
        "  <MessageIdentifier>{}</MessageIdentifier>",
        token(&h.message_identifier)
    );
    let _ = writeln!(x, "  <CodeListVersions/>");
    let _ = writeln!(x, "  <DataObjectPackage>");
    for o in objects {
        let _ = writeln!(x, "    <BinaryDataObject id=\"{}\">", escape(&o.id));
        let _ = writeln!(x, "      <Uri>{}</Uri>", escape(&o.uri));
        let _ = writeln!(
            x,
            "      <MessageDigest algorithm=\"SHA-512\">{}</MessageDigest>",
            escape(&o.sha512)
        );
        let _ = writeln!(x, "      <Size>{}</Size>", o.size);
        if !o.media_type.is_empty() && o.media_type.contains('/') {
            let _ = writeln!(
                x,
                "      <FormatIdentification><MimeType>{}</MimeType></FormatIdentification>",
                token(&o.media_type)
            );
        }
        let _ = writeln!(
            x,
            "      <FileInfo><Filename>{}</Filename></FileInfo>",
            escape(&o.filename)
        );
        let _ = writeln!(x, "    </BinaryDataObject>");
    }
    let _ = writeln!(x, "    <DescriptiveMetadata>");
    for u in units {
        write_unit(&mut x, u);
    }
    let _ = writeln!(x, "    </DescriptiveMetadata>");
    let _ = writeln!(x, "    <ManagementMetadata/>");
    let _ = writeln!(x, "  </DataObjectPackage>");
    let _ = writeln!(
        x,
        "  <ArchivalAgency><Identifier>{}</Identifier></ArchivalAgency>",
        token(&h.archival_agency)
    );
    let _ = writeln!(
        x,
        "  <TransferringAgency><Identifier>{}</Identifier></TransferringAgency>",
        token(&h.transferring_agency)
    );
    let _ = writeln!(x, "</ArchiveTransfer>");
    x
}

fn write_unit(x: &mut String, u: &UnitOut) {
    let _ = writeln!(x, "      <ArchiveUnit id=\"{}\">", escape(&u.id));
    let access = access_rule_of_category(&u.communicability);
    let appraisal =
        u.dua_years.is_some() && matches!(u.final_disposition.as_str(), "C" | "D" | "T");
    if access.is_some() || appraisal {
        let _ = writeln!(x, "        <Management>");
        if let (true, Some(y)) = (appraisal, u.dua_years) {
            // SEDA has no "T" (trier): it is kept, the archivist decides what is sampled.
            let action = if u.final_disposition == "D" {
                "Destroy"
            } else {
                "Keep"
            };
            let _ = writeln!(
                x,
                "          <AppraisalRule><Rule>P{y}Y</Rule><FinalAction>{action}</FinalAction></AppraisalRule>"
            );
        }
        if let Some(code) = access {
            let _ = writeln!(x, "          <AccessRule><Rule>{code}</Rule></AccessRule>");
        }
        let _ = writeln!(x, "        </Management>");
    }
    let _ = writeln!(x, "        <Content>");
    let _ = writeln!(x, "          <Title>{}</Title>", escape(&u.title));
    if !u.system_id.is_empty() {
        let _ = writeln!(x, "          <SystemId>{}</SystemId>", token(&u.system_id));
    }
    if !u.description.is_empty() {
        let _ = writeln!(
            x,
            "          <Description>{}</Description>",
            escape(&u.description)
        );
    }
    if !u.record_type.is_empty() {
        let _ = writeln!(
            x,
            "          <DocumentType>{}</DocumentType>",
            escape(&u.record_type)
        );
    }
    if is_language(&u.language) {
        let _ = writeln!(x, "          <Language>{}</Language>", u.language);
    }
    for k in &u.keywords {
        let _ = writeln!(
            x,
            "          <Keyword><KeywordContent>{}</KeywordContent></Keyword>",
            escape(k)
        );
    }
    if !u.producer.trim().is_empty() {
        let _ = writeln!(
            x,
            "          <OriginatingAgency><Identifier>{}</Identifier></OriginatingAgency>",
            token(&u.producer)
        );
    }
    let (from, to) = if !u.date.is_empty() {
        (u.date.as_str(), u.date.as_str())
    } else {
        (u.date_from.as_str(), u.date_to.as_str())
    };
    if is_date(from) {
        let _ = writeln!(x, "          <StartDate>{from}</StartDate>");
    }
    if is_date(to) {
        let _ = writeln!(x, "          <EndDate>{to}</EndDate>");
    }
    let _ = writeln!(x, "        </Content>");
    for o in &u.objects {
        let _ = writeln!(
            x,
            "        <DataObjectReference><DataObjectReferenceId>{}</DataObjectReferenceId></DataObjectReference>",
            escape(o)
        );
    }
    let _ = writeln!(x, "      </ArchiveUnit>");
}

/// One line of a reply's `Operation`: what was checked or done, and how it went.
#[derive(Debug, Clone)]
pub struct ReplyEvent {
    /// e.g. `SCHEMA`, `DIGEST`, `MISSING_FILE`, `UNSUPPORTED`, `INGEST`.
    pub type_code: String,
    pub detail: String,
    /// `OK` or `KO`.
    pub outcome: String,
}

/// Writes an `ArchiveTransferReply`: `ReplyCode` `OK` (acknowledgement, with one event per
/// record created) or `KO` (rejection, one event per reason).
pub fn write_reply(
    h: &Header,
    request_identifier: &str,
    accepted: bool,
    events: &[ReplyEvent],
) -> String {
    let mut x = String::new();
    let _ = writeln!(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(x, "<ArchiveTransferReply xmlns=\"{NAMESPACE}\">");
    if !h.comment.is_empty() {
        let _ = writeln!(x, "  <Comment>{}</Comment>", escape(&h.comment));
    }
    let _ = writeln!(x, "  <Date>{}</Date>", escape(&h.date));
    let _ = writeln!(
        x,
        "  <MessageIdentifier>{}</MessageIdentifier>",
        token(&h.message_identifier)
    );
    let _ = writeln!(x, "  <CodeListVersions/>");
    let _ = writeln!(
        x,
        "  <ReplyCode>{}</ReplyCode>",
        if accepted { "OK" } else { "KO" }
    );
    if !events.is_empty() {
        let _ = writeln!(x, "  <Operation>");
        for e in events {
            let _ = writeln!(x, "    <Event>");
            let _ = writeln!(
                x,
                "      <EventTypeCode>{}</EventTypeCode>",
                token(&e.type_code)
            );
            let _ = writeln!(
                x,
                "      <EventDateTime>{}</EventDateTime>",
                escape(&h.date)
            );
            let _ = writeln!(x, "      <EventDetail>{}</EventDetail>", escape(&e.detail));
            let _ = writeln!(x, "      <Outcome>{}</Outcome>", token(&e.outcome));
            let _ = writeln!(x, "    </Event>");
        }
        let _ = writeln!(x, "  </Operation>");
    }
    let _ = writeln!(
        x,
        "  <MessageRequestIdentifier>{}</MessageRequestIdentifier>",
        token(request_identifier)
    );
    if accepted {
        let _ = writeln!(x, "  <GrantDate>{}</GrantDate>", escape(&h.date));
    }
    let _ = writeln!(
        x,
        "  <ArchivalAgency><Identifier>{}</Identifier></ArchivalAgency>",
        token(&h.archival_agency)
    );
    let _ = writeln!(
        x,
        "  <TransferringAgency><Identifier>{}</Identifier></TransferringAgency>",
        token(&h.transferring_agency)
    );
    let _ = writeln!(x, "</ArchiveTransferReply>");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            message_identifier: "M1".into(),
            date: "2026-01-02T03:04:05Z".into(),
            archival_agency: "AD29".into(),
            transferring_agency: "Commune".into(),
            comment: String::new(),
        }
    }

    #[test]
    fn access_rules_round_trip() {
        for c in [
            "immediate",
            "l213-2-1",
            "l213-2-2-medical",
            "l213-2-3",
            "l213-2-4",
            "l213-2-5",
            "never",
        ] {
            let code = access_rule_of_category(c).expect("a code");
            assert_eq!(category_of_access_rule(code), Some(c));
        }
        assert_eq!(category_of_access_rule("AR037"), None);
        assert_eq!(category_of_access_rule("AR063"), None);
        assert_eq!(category_of_access_rule("AR0038"), None);
        assert_eq!(dua_years_of_rule("P10Y"), Some(10));
        assert_eq!(dua_years_of_rule("P10M"), None);
        assert_eq!(dua_years_of_rule("PY"), None);
    }

    #[test]
    fn export_parses_back() {
        let o = ObjectOut {
            id: "O1".into(),
            uri: "content/a.pdf".into(),
            filename: "a.pdf".into(),
            sha512: "ab".repeat(64),
            size: 3,
            media_type: "application/pdf".into(),
        };
        let u = UnitOut {
            id: "U1".into(),
            system_id: "01KAX".into(),
            title: "Délibérations <1998> & co".into(),
            description: "d".into(),
            producer: "Secrétariat général".into(),
            record_type: "délibération".into(),
            language: "fr".into(),
            keywords: vec!["budget".into(), "voirie".into()],
            date_from: "1998-01-01".into(),
            date_to: "1998-12-31".into(),
            dua_years: Some(10),
            final_disposition: "C".into(),
            communicability: "l213-2-3".into(),
            objects: vec!["O1".into()],
            ..Default::default()
        };
        let xml = write_transfer(&header(), &[o], &[u]);
        let t = parse_transfer(&xml).expect("parses");
        assert_eq!(t.units.len(), 1);
        let r = &t.units[0];
        assert_eq!(r.title, "Délibérations <1998> & co");
        assert_eq!(r.producer, "Secrétariat général");
        assert_eq!(
            (r.date_from.as_str(), r.date_to.as_str()),
            ("1998-01-01", "1998-12-31")
        );
        assert_eq!(r.keywords, vec!["budget", "voirie"]);
        assert_eq!(
            r.appraisal,
            Some(Appraisal {
                dua_years: 10,
                final_disposition: "C".into()
            })
        );
        assert_eq!(r.communicability.as_deref(), Some("l213-2-3"));
        assert_eq!(t.objects[0].filename, "a.pdf");
        assert_eq!(t.objects[0].digest, "ab".repeat(64));
    }

    #[test]
    fn refusals() {
        assert!(matches!(parse_transfer("<a>"), Err(SedaError::Xml(_))));
        assert!(matches!(
            parse_transfer("<x xmlns=\"fr:gouv:culture:archivesdefrance:seda:v2.2\"/>"),
            Err(SedaError::NotTransfer(_))
        ));
        assert!(matches!(
            parse_transfer("<!DOCTYPE a [<!ENTITY e \"x\">]><a/>"),
            Err(SedaError::Unsupported(_))
        ));
    }
}
