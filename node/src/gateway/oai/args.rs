//! OAI-PMH request arguments: the query string (or form body) decoded, checked against what
//! each verb allows, and resumption tokens encoded and decoded.
//!
//! Pure code with no I/O, so the fuzz target `oai_args` can feed it anything. Everything a
//! harvester sends passes through [`parse_request`]; nothing else reads request arguments.

use time::Date;

/// Longest query string or form body accepted: real requests are a few hundred bytes.
pub const MAX_QUERY: usize = 4096;
/// Longest resumption token accepted (ours are well under 400 characters).
pub const MAX_TOKEN: usize = 1024;
/// Length of the integrity tag at the end of a resumption token.
const TAG_LEN: usize = 12;
/// Field separator inside a token's payload: never in a set spec, a date or a record ID.
const SEP: char = '\u{1f}';

/// The only metadata format served (the one OAI-PMH makes mandatory).
pub const OAI_DC: &str = "oai_dc";

/// OAI-PMH error codes (protocol section 3.6), all answered with HTTP 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadArgument,
    BadResumptionToken,
    BadVerb,
    CannotDisseminateFormat,
    IdDoesNotExist,
    NoRecordsMatch,
    NoMetadataFormats,
    NoSetHierarchy,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadArgument => "badArgument",
            ErrorCode::BadResumptionToken => "badResumptionToken",
            ErrorCode::BadVerb => "badVerb",
            ErrorCode::CannotDisseminateFormat => "cannotDisseminateFormat",
            ErrorCode::IdDoesNotExist => "idDoesNotExist",
            ErrorCode::NoRecordsMatch => "noRecordsMatch",
            ErrorCode::NoMetadataFormats => "noMetadataFormats",
            ErrorCode::NoSetHierarchy => "noSetHierarchy",
        }
    }
}

/// An OAI-PMH error: its code and a message for the harvester's operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct OaiError {
    pub code: ErrorCode,
    pub message: String,
}

impl OaiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        OaiError {
            code,
            message: message.into(),
        }
    }
}

fn bad_argument(message: impl Into<String>) -> OaiError {
    OaiError::new(ErrorCode::BadArgument, message)
}

fn bad_token(message: impl Into<String>) -> OaiError {
    OaiError::new(ErrorCode::BadResumptionToken, message)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Identify,
    ListMetadataFormats,
    ListSets,
    ListIdentifiers,
    ListRecords,
    GetRecord,
}

impl Verb {
    pub const ALL: [Verb; 6] = [
        Verb::Identify,
        Verb::ListMetadataFormats,
        Verb::ListSets,
        Verb::ListIdentifiers,
        Verb::ListRecords,
        Verb::GetRecord,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Identify => "Identify",
            Verb::ListMetadataFormats => "ListMetadataFormats",
            Verb::ListSets => "ListSets",
            Verb::ListIdentifiers => "ListIdentifiers",
            Verb::ListRecords => "ListRecords",
            Verb::GetRecord => "GetRecord",
        }
    }

    pub fn parse(s: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The arguments this verb accepts besides `verb`, by name.
    fn allowed(self) -> &'static [&'static str] {
        match self {
            Verb::Identify => &[],
            Verb::ListMetadataFormats => &["identifier"],
            Verb::ListSets => &["resumptionToken"],
            Verb::ListIdentifiers | Verb::ListRecords => {
                &["metadataPrefix", "from", "until", "set", "resumptionToken"]
            }
            Verb::GetRecord => &["identifier", "metadataPrefix"],
        }
    }
}

/// The selection of a ListIdentifiers or ListRecords request, as first asked or as carried
/// by a resumption token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// `true` for ListRecords, `false` for ListIdentifiers: a token is valid for one only.
    pub records: bool,
    pub metadata_prefix: String,
    pub set: Option<String>,
    pub from: Option<Date>,
    pub until: Option<Date>,
    /// Resume after this record ID (empty: from the start).
    pub after: String,
    /// Records already returned before this page (the `cursor` attribute).
    pub cursor: u64,
}

/// A request whose arguments are all valid for its verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OaiRequest {
    Identify,
    ListMetadataFormats {
        identifier: Option<String>,
    },
    /// `resumption_token` is always refused: the set list comes whole, in one response.
    ListSets {
        resumption_token: Option<String>,
    },
    List(ListQuery),
    GetRecord {
        identifier: String,
        metadata_prefix: String,
    },
}

impl OaiRequest {
    pub fn verb(&self) -> Verb {
        match self {
            OaiRequest::Identify => Verb::Identify,
            OaiRequest::ListMetadataFormats { .. } => Verb::ListMetadataFormats,
            OaiRequest::ListSets { .. } => Verb::ListSets,
            OaiRequest::List(q) if q.records => Verb::ListRecords,
            OaiRequest::List(_) => Verb::ListIdentifiers,
            OaiRequest::GetRecord { .. } => Verb::GetRecord,
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one `application/x-www-form-urlencoded` component (`+` is a space, `%XX` a
/// byte); the result must be UTF-8. A stray `%` is refused rather than passed through, so
/// that a value never means two things.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value)?;
                let lo = bytes.get(i + 2).copied().and_then(hex_value)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The query string (or form body) as (name, value) pairs, in order. Empty pieces (`a=1&&b=2`)
/// are skipped, as browsers produce them.
pub fn parse_pairs(query: &str) -> Result<Vec<(String, String)>, OaiError> {
    if query.len() > MAX_QUERY {
        return Err(bad_argument(format!(
            "the request is {} bytes long, over {MAX_QUERY}",
            query.len()
        )));
    }
    let mut pairs = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return Err(bad_argument(
                "an argument is not valid percent-encoded UTF-8",
            ));
        };
        pairs.push((k, v));
    }
    Ok(pairs)
}

/// A day-granularity datestamp argument: exactly `YYYY-MM-DD`, a real calendar date.
pub fn parse_day(name: &str, value: &str) -> Result<Date, OaiError> {
    let shape_ok = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(bad_argument(format!(
            "{name}={value:?}: this repository's granularity is YYYY-MM-DD (days)"
        )));
    }
    crate::clock::parse_date(value)
        .ok_or_else(|| bad_argument(format!("{name}={value:?} is not a calendar date")))
}

/// A set spec as OAI-PMH defines it: colon-separated non-empty parts of unreserved URI
/// characters. Ours are `producer`, `type`, `producer:<slug>` and `type:<slug>`; others are
/// well-formed but empty sets.
pub fn valid_set_spec(s: &str) -> bool {
    s.len() <= 200
        && s.split(':').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(
                            b,
                            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
                        )
                })
        })
}

/// A metadata prefix as the OAI-PMH schema defines it: `[A-Za-z0-9\-_\.!~\*'\(\)]+`.
pub fn valid_metadata_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
                )
        })
}

/// A record ID as this node mints them: a ULID (26 Crockford base32 characters).
pub fn valid_record_id(s: &str) -> bool {
    s.len() == 26 && ulid::Ulid::from_string(s).is_ok()
}

/// Checks the arguments of a request and returns what it asks. `token_key` authenticates
/// resumption tokens (see [`encode_token`]).
pub fn parse_request(query: &str, token_key: &[u8; 32]) -> Result<OaiRequest, OaiError> {
    let pairs = parse_pairs(query)?;
    let verbs: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "verb")
        .map(|(_, v)| v.as_str())
        .collect();
    let verb = match verbs.as_slice() {
        [] => return Err(OaiError::new(ErrorCode::BadVerb, "no verb given")),
        [one] => Verb::parse(one)
            .ok_or_else(|| OaiError::new(ErrorCode::BadVerb, format!("unknown verb {one:?}")))?,
        _ => return Err(OaiError::new(ErrorCode::BadVerb, "the verb is repeated")),
    };
    let mut args: Vec<(&str, &str)> = Vec::new();
    for (k, v) in pairs.iter().filter(|(k, _)| k != "verb") {
        if !verb.allowed().contains(&k.as_str()) {
            return Err(bad_argument(format!(
                "{} does not take the argument {k:?}",
                verb.as_str()
            )));
        }
        if args.iter().any(|(seen, _)| seen == k) {
            return Err(bad_argument(format!("the argument {k} is repeated")));
        }
        if v.is_empty() {
            return Err(bad_argument(format!("the argument {k} is empty")));
        }
        args.push((k.as_str(), v.as_str()));
    }
    let get = |name: &str| {
        args.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    match verb {
        Verb::Identify => Ok(OaiRequest::Identify),
        Verb::ListMetadataFormats => Ok(OaiRequest::ListMetadataFormats {
            identifier: get("identifier"),
        }),
        Verb::ListSets => Ok(OaiRequest::ListSets {
            resumption_token: get("resumptionToken"),
        }),
        Verb::GetRecord => {
            let (Some(identifier), Some(metadata_prefix)) =
                (get("identifier"), get("metadataPrefix"))
            else {
                return Err(bad_argument(
                    "GetRecord needs both identifier and metadataPrefix",
                ));
            };
            Ok(OaiRequest::GetRecord {
                identifier,
                metadata_prefix,
            })
        }
        Verb::ListIdentifiers | Verb::ListRecords => {
            let records = verb == Verb::ListRecords;
            if let Some(token) = get("resumptionToken") {
                // The token is an exclusive argument: it carries every other one.
                if args.len() > 1 {
                    return Err(bad_argument(
                        "resumptionToken is an exclusive argument: send it alone with the verb",
                    ));
                }
                let q = decode_token(&token, token_key)?;
                if q.records != records {
                    return Err(bad_token(format!(
                        "this resumption token belongs to another verb than {}",
                        verb.as_str()
                    )));
                }
                return Ok(OaiRequest::List(q));
            }
            let metadata_prefix = get("metadataPrefix")
                .ok_or_else(|| bad_argument(format!("{} needs metadataPrefix", verb.as_str())))?;
            // OAI-PMH's own pattern for a prefix (and what a token can carry: fuzzing found
            // a prefix holding the token's field separator).
            if !valid_metadata_prefix(&metadata_prefix) {
                return Err(bad_argument(format!(
                    "metadataPrefix={metadata_prefix:?} is not a valid metadata prefix"
                )));
            }
            let from = get("from").map(|v| parse_day("from", &v)).transpose()?;
            let until = get("until").map(|v| parse_day("until", &v)).transpose()?;
            if let (Some(f), Some(u)) = (from, until)
                && f > u
            {
                return Err(bad_argument("from is later than until"));
            }
            let set = get("set");
            if let Some(s) = &set
                && !valid_set_spec(s)
            {
                return Err(bad_argument(format!("set={s:?} is not a valid setSpec")));
            }
            Ok(OaiRequest::List(ListQuery {
                records,
                metadata_prefix,
                set,
                from,
                until,
                after: String::new(),
                cursor: 0,
            }))
        }
    }
}

fn token_tag(key: &[u8; 32], payload: &[u8]) -> [u8; TAG_LEN] {
    let full = blake3::keyed_hash(key, payload);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&full.as_bytes()[..TAG_LEN]);
    tag
}

fn day_text(d: Option<Date>) -> String {
    d.map(crate::clock::format_date).unwrap_or_default()
}

/// Encodes where a list stopped and what it selects, so the next request needs no state on
/// the server. The payload is authenticated with a keyed BLAKE3 tag: a token that was cut,
/// altered or made up is refused as `badResumptionToken` instead of being half understood.
/// It is not secret (it holds nothing the harvester did not send, plus a record ID that the
/// harvester just received).
pub fn encode_token(q: &ListQuery, key: &[u8; 32]) -> String {
    let fields = [
        "v1".to_string(),
        if q.records { "R" } else { "I" }.to_string(),
        q.metadata_prefix.clone(),
        q.set.clone().unwrap_or_default(),
        day_text(q.from),
        day_text(q.until),
        q.after.clone(),
        q.cursor.to_string(),
    ];
    let payload = fields.join(&SEP.to_string());
    let mut bytes = payload.into_bytes();
    let tag = token_tag(key, &bytes);
    bytes.extend_from_slice(&tag);
    data_encoding::BASE64URL_NOPAD.encode(&bytes)
}

/// Decodes and checks a token made by [`encode_token`] with the same key.
pub fn decode_token(token: &str, key: &[u8; 32]) -> Result<ListQuery, OaiError> {
    if token.len() > MAX_TOKEN {
        return Err(bad_token("the resumption token is too long"));
    }
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(token.as_bytes())
        .map_err(|_| bad_token("the resumption token is not one of this repository's"))?;
    if bytes.len() < TAG_LEN {
        return Err(bad_token("the resumption token is too short"));
    }
    let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
    // Constant time is not needed (the tag guards against mistakes, not secrets), but
    // it costs nothing.
    let want = token_tag(key, payload);
    if want.iter().zip(tag).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
        return Err(bad_token(
            "the resumption token was altered or comes from another repository",
        ));
    }
    let text = std::str::from_utf8(payload).map_err(|_| bad_token("damaged resumption token"))?;
    let fields: Vec<&str> = text.split(SEP).collect();
    let [version, kind, prefix, set, from, until, after, cursor] = fields.as_slice() else {
        return Err(bad_token("damaged resumption token"));
    };
    if *version != "v1" {
        return Err(bad_token("resumption token of an unknown version"));
    }
    let records = match *kind {
        "R" => true,
        "I" => false,
        _ => return Err(bad_token("damaged resumption token")),
    };
    // The fields were checked when the list was first asked; checked again because a
    // token must never be trusted more than the request that made it.
    let day = |name: &str, v: &str| -> Result<Option<Date>, OaiError> {
        if v.is_empty() {
            return Ok(None);
        }
        parse_day(name, v)
            .map(Some)
            .map_err(|_| bad_token("damaged resumption token"))
    };
    let from = day("from", from)?;
    let until = day("until", until)?;
    if !valid_metadata_prefix(prefix)
        || (!set.is_empty() && !valid_set_spec(set))
        || (!after.is_empty() && !valid_record_id(after))
    {
        return Err(bad_token("damaged resumption token"));
    }
    let cursor: u64 = cursor
        .parse()
        .ok()
        .filter(|_| !cursor.starts_with('+'))
        .ok_or_else(|| bad_token("damaged resumption token"))?;
    Ok(ListQuery {
        records,
        metadata_prefix: prefix.to_string(),
        set: (!set.is_empty()).then(|| set.to_string()),
        from,
        until,
        after: after.to_string(),
        cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn err(q: &str) -> ErrorCode {
        match parse_request(q, &KEY) {
            Err(e) => e.code,
            Ok(r) => panic!("{q:?} accepted: {r:?}"),
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a+b%3Ac").as_deref(), Some("a b:c"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
    }

    #[test]
    fn verbs_and_their_arguments() {
        assert_eq!(
            parse_request("verb=Identify", &KEY),
            Ok(OaiRequest::Identify)
        );
        assert_eq!(err(""), ErrorCode::BadVerb);
        assert_eq!(err("verb=Nope"), ErrorCode::BadVerb);
        assert_eq!(err("verb=Identify&verb=Identify"), ErrorCode::BadVerb);
        assert_eq!(
            err("verb=identify"),
            ErrorCode::BadVerb,
            "verbs are case-sensitive"
        );
        assert_eq!(err("verb=Identify&x=1"), ErrorCode::BadArgument);
        assert_eq!(err("verb=ListRecords"), ErrorCode::BadArgument);
        assert_eq!(
            err("verb=ListRecords&metadataPrefix=oai_dc&metadataPrefix=oai_dc"),
            ErrorCode::BadArgument
        );
        assert_eq!(err("verb=GetRecord&identifier=x"), ErrorCode::BadArgument);
        assert_eq!(
            err("verb=ListIdentifiers&metadataPrefix="),
            ErrorCode::BadArgument
        );
        match parse_request(
            "verb=ListRecords&metadataPrefix=oai_dc&from=2024-01-02&until=2024-02-01&set=producer%3Asecretariat",
            &KEY,
        ) {
            Ok(OaiRequest::List(q)) => {
                assert!(q.records);
                assert_eq!(q.set.as_deref(), Some("producer:secretariat"));
                assert_eq!(
                    q.from.map(crate::clock::format_date).as_deref(),
                    Some("2024-01-02")
                );
                assert_eq!(q.cursor, 0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dates_are_days_only() {
        let base = "verb=ListRecords&metadataPrefix=oai_dc&from=";
        for bad in [
            "2024-01-02T00:00:00Z",
            "2024-1-2",
            "2024-02-30",
            "20240102",
            "2024-01-02 ",
            "２０２４-01-02",
        ] {
            assert_eq!(
                err(&format!("{base}{bad}")),
                ErrorCode::BadArgument,
                "{bad}"
            );
        }
        assert_eq!(
            err("verb=ListRecords&metadataPrefix=oai_dc&from=2024-02-01&until=2024-01-01"),
            ErrorCode::BadArgument
        );
    }

    #[test]
    fn set_specs() {
        assert!(valid_set_spec("producer:secretariat-general"));
        assert!(valid_set_spec("type"));
        assert!(!valid_set_spec("producer:"));
        assert!(!valid_set_spec("a b"));
        assert!(!valid_set_spec(""));
        assert_eq!(
            err("verb=ListRecords&metadataPrefix=oai_dc&set=a%20b"),
            ErrorCode::BadArgument
        );
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let q = ListQuery {
            records: true,
            metadata_prefix: OAI_DC.into(),
            set: Some("type:deliberation".into()),
            from: crate::clock::parse_date("2020-01-01"),
            until: None,
            after: "01KAX7Z3Q4M5N6P7R8S9T0V1W2".into(),
            cursor: 50,
        };
        let t = encode_token(&q, &KEY);
        assert!(t.len() < 400);
        assert_eq!(decode_token(&t, &KEY), Ok(q.clone()));
        // Through the request parser, with the right verb only.
        assert_eq!(
            parse_request(&format!("verb=ListRecords&resumptionToken={t}"), &KEY),
            Ok(OaiRequest::List(q.clone()))
        );
        assert_eq!(
            err(&format!("verb=ListIdentifiers&resumptionToken={t}")),
            ErrorCode::BadResumptionToken
        );
        assert_eq!(
            err(&format!(
                "verb=ListRecords&resumptionToken={t}&metadataPrefix=oai_dc"
            )),
            ErrorCode::BadArgument
        );
        // Another key, a flipped character, garbage.
        assert_eq!(
            decode_token(&t, &[8; 32]).map_err(|e| e.code),
            Err(ErrorCode::BadResumptionToken)
        );
        let mut chars: Vec<char> = t.chars().collect();
        chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
        let flipped: String = chars.into_iter().collect();
        assert_eq!(
            decode_token(&flipped, &KEY).map_err(|e| e.code),
            Err(ErrorCode::BadResumptionToken)
        );
        for garbage in ["", "x", "!!!!", "AAAAAAAAAAAAAAAAAAAA", &"A".repeat(2000)] {
            assert_eq!(
                decode_token(garbage, &KEY).map_err(|e| e.code),
                Err(ErrorCode::BadResumptionToken),
                "{garbage:?}"
            );
        }
        // A well-tagged payload with bad fields is refused too.
        let payload = "v1\u{1f}R\u{1f}oai_dc\u{1f}\u{1f}\u{1f}\u{1f}not-a-ulid\u{1f}0";
        let mut bytes = payload.as_bytes().to_vec();
        bytes.extend_from_slice(&token_tag(&KEY, payload.as_bytes()));
        let forged = data_encoding::BASE64URL_NOPAD.encode(&bytes);
        assert_eq!(
            decode_token(&forged, &KEY).map_err(|e| e.code),
            Err(ErrorCode::BadResumptionToken)
        );
    }

    #[test]
    fn list_sets_token_is_kept_for_the_handler() {
        assert_eq!(
            parse_request("verb=ListSets&resumptionToken=abc", &KEY),
            Ok(OaiRequest::ListSets {
                resumption_token: Some("abc".into())
            })
        );
    }

    #[test]
    fn a_metadata_prefix_outside_the_oai_pattern_is_a_bad_argument() {
        // Found by fuzzing: a prefix holding the token's field separator broke the token.
        let q = "verb=ListRecords&metadataPrefix=oai%1Fdc";
        assert!(matches!(
            parse_request(q, &KEY),
            Err(OaiError {
                code: ErrorCode::BadArgument,
                ..
            })
        ));
        assert!(valid_metadata_prefix("oai_dc"));
        assert!(!valid_metadata_prefix(""));
        assert!(!valid_metadata_prefix("oai dc"));
    }
}
