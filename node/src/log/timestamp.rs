//! RFC 3161 time-stamps for audit-log checkpoints.
//!
//! French electronic-archiving practice (NF Z42-013 / ISO 14641) expects the audit trail to be
//! sealed by a time-stamping authority (TSA): we send the TSA the SHA-256 of a checkpoint and
//! keep the signed token it answers with.
//!
//! Everything is hand-written and small on purpose, so the node needs no ASN.1 or HTTP crate:
//! - [`request_der`] encodes the `TimeStampReq` (RFC 3161 §2.4.1);
//! - [`stamp`] POSTs it over plain HTTP/1.1 (`http://host[:port]/path`, no TLS: the token is
//!   signed, the transport need not be trusted), with a time limit and a size limit;
//! - [`parse_response`] reads the `TimeStampResp` with a strict, bounds-checked DER reader
//!   that never panics, whatever the input.
//!
//! **The TSA's CMS signature is not verified here.** What is checked is that the TSA granted
//! the request, that the token is structurally a `SignedData` holding a `TSTInfo`, that the
//! token's message imprint is the SHA-256 of our message and that it echoes our nonce. The
//! token (the `ContentInfo`) is kept verbatim, so that its signature and certificate chain can
//! be checked later by any RFC 3161 tool, e.g.
//! `openssl ts -verify -data checkpoint.txt -in token.der -token_in -CAfile tsa-ca.pem`.

use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest HTTP response body accepted from a TSA.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The largest HTTP response head (status line and headers) accepted from a TSA.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// What may be buffered in all: head, body and chunked-encoding framing.
const MAX_BUFFERED_BYTES: usize = MAX_HEAD_BYTES + MAX_RESPONSE_BYTES + 8 * 1024;

/// A time-stamp token granted by a TSA for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampToken {
    /// The `TimeStampToken` (a CMS `ContentInfo` holding a `SignedData`), byte for byte as the
    /// TSA sent it. Its signature is NOT verified by this module: keep it so that
    /// `openssl ts -verify -in FILE -token_in ...` (or any RFC 3161 verifier) can check it.
    pub der: Vec<u8>,
    /// The token's `genTime`, as the TSA wrote it (GeneralizedTime, e.g. `20260131120000Z`
    /// or `20260131120000.25Z`, always UTC).
    pub gen_time: String,
}

impl TimestampToken {
    /// Reads back a stored token: checks its structure and that it time-stamps `message`
    /// (SHA-256 imprint), and returns it with its `genTime`. Like [`stamp`], it does not
    /// verify the TSA's signature; there is no nonce to check on a stored token.
    pub fn from_der(der: Vec<u8>, message: &[u8]) -> Result<Self, TimestampError> {
        let info = parse_token(&der)?;
        check_imprint(&info, message)?;
        Ok(TimestampToken {
            gen_time: info.gen_time,
            der,
        })
    }
}

/// Why a time-stamp could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum TimestampError {
    #[error("invalid TSA URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("cannot connect to the TSA at {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("I/O error while {during} the TSA: {source}")]
    Io {
        during: &'static str,
        source: std::io::Error,
    },
    #[error("malformed HTTP response from the TSA: {0}")]
    Http(String),
    #[error("the TSA answered HTTP status {status} {reason}")]
    HttpStatus { status: u16, reason: String },
    #[error("malformed time-stamp response (at {step}): {detail}")]
    Malformed { step: &'static str, detail: String },
    #[error("the TSA rejected the request with status {status} ({detail})")]
    Rejected { status: u64, detail: String },
    #[error(
        "the time-stamp token is for another message: its imprint is {got}, expected the SHA-256 {expected}"
    )]
    ImprintMismatch { expected: String, got: String },
    #[error("the time-stamp token's nonce is {got}, but the request's nonce was {expected}")]
    NonceMismatch { expected: String, got: String },
    #[error("timed out: no complete answer from the TSA within {0:?}")]
    Timeout(Duration),
    #[error("the TSA's response is too large (more than {limit} bytes)")]
    TooLarge { limit: usize },
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

/// The DER `TimeStampReq` (RFC 3161 §2.4.1) for `message`:
/// `{ version 1, messageImprint { sha256 (with NULL parameters), SHA-256(message) },
/// nonce, certReq TRUE }` (no policy, no extensions).
pub fn request_der(message: &[u8], nonce: u64) -> Vec<u8> {
    let digest = Sha256::digest(message);
    let imprint = der::tlv(
        der::SEQUENCE,
        &[
            sha256_algorithm_identifier(),
            der::tlv(der::OCTET_STRING, &digest),
        ]
        .concat(),
    );
    let body = [
        der::tlv(der::INTEGER, &[1]),
        imprint,
        der::tlv(der::INTEGER, &der::uint_content(nonce)),
        der::tlv(der::BOOLEAN, &[0xff]),
    ]
    .concat();
    der::tlv(der::SEQUENCE, &body)
}

/// 2.16.840.1.101.3.4.2.1, the content of the OID.
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// 1.2.840.113549.1.7.2, id-signedData.
const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// 1.2.840.113549.1.9.16.1.4, id-ct-TSTInfo.
const OID_TST_INFO: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];

fn sha256_algorithm_identifier() -> Vec<u8> {
    der::tlv(
        der::SEQUENCE,
        &[der::tlv(der::OID, OID_SHA256), der::tlv(der::NULL, &[])].concat(),
    )
}

// ---------------------------------------------------------------------------------------
// Stamping over HTTP
// ---------------------------------------------------------------------------------------

/// Asks the TSA at `url` (`http://host[:port]/path`; plain HTTP only) to time-stamp
/// `message`, within `timeout` for the whole exchange (connection, request, response).
///
/// Checks the TSA granted the request (status 0 or 1), that the token's imprint is
/// SHA-256(`message`) and that it carries the request's (random) nonce. The TSA's signature
/// is not verified: see [`TimestampToken::der`].
pub async fn stamp(
    url: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<TimestampToken, TimestampError> {
    let nonce = rand::random::<u64>().max(1);
    stamp_with_nonce(url, message, nonce, timeout).await
}

async fn stamp_with_nonce(
    url: &str,
    message: &[u8],
    nonce: u64,
    timeout: Duration,
) -> Result<TimestampToken, TimestampError> {
    let target = Target::parse(url)?;
    let request = request_der(message, nonce);
    let response = tokio::time::timeout(timeout, post(&target, &request))
        .await
        .map_err(|_| TimestampError::Timeout(timeout))??;
    let token = parse_response(&response, message, nonce)?;
    tracing::debug!(tsa = %target.authority, gen_time = %token.gen_time, "checkpoint time-stamped");
    Ok(token)
}

/// Where to POST: from `http://host[:port]/path[?query]`.
#[derive(Debug, PartialEq, Eq)]
struct Target<'a> {
    /// Without the brackets of an IPv6 literal.
    host: &'a str,
    port: u16,
    /// `host[:port]` as written, for the `Host` header.
    authority: &'a str,
    /// Path and query, starting with `/`.
    path: String,
}

impl<'a> Target<'a> {
    fn parse(url: &'a str) -> Result<Self, TimestampError> {
        let bad = |reason| TimestampError::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("it contains spaces or control characters"));
        }
        let Some(rest) = strip_prefix_ignore_case(url, "http://") else {
            return Err(if strip_prefix_ignore_case(url, "https://").is_some() {
                bad("https is not supported, give a plain http:// URL (the token is signed)")
            } else {
                bad("it must start with http://")
            });
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at_checked(i).unwrap_or((rest, "")),
            None => (rest, ""),
        };
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        if authority.contains('@') {
            return Err(bad("user information in the URL is not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((host, tail)) = bracketed.split_once(']') else {
                return Err(bad("unterminated IPv6 address"));
            };
            match tail {
                "" => (host, None),
                _ => match tail.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(bad("unexpected characters after the IPv6 address")),
                },
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(bad("the port is not a number between 1 and 65535")),
            },
        };
        Ok(Target {
            host,
            port,
            authority,
            path,
        })
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// POSTs `body` to the TSA and returns the body of its 200 answer.
async fn post(target: &Target<'_>, body: &[u8]) -> Result<Vec<u8>, TimestampError> {
    let mut stream = TcpStream::connect((target.host, target.port))
        .await
        .map_err(|source| TimestampError::Connect {
            addr: target.authority.to_string(),
            source,
        })?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: archipel-node/{}\r\n\
         Content-Type: application/timestamp-query\r\nAccept: application/timestamp-reply\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        target.path,
        target.authority,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let sending = |source| TimestampError::Io {
        during: "sending the request to",
        source,
    };
    stream
        .write_all(&[head.as_bytes(), body].concat())
        .await
        .map_err(sending)?;
    stream.flush().await.map_err(sending)?;

    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|source| TimestampError::Io {
                during: "reading the response of",
                source,
            })?;
        let eof = n == 0;
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        if buf.len() > MAX_BUFFERED_BYTES {
            return Err(TimestampError::TooLarge {
                limit: MAX_RESPONSE_BYTES,
            });
        }
        if let Some(body) = parse_http_response(&buf, eof)? {
            return Ok(body);
        }
        if eof {
            // parse_http_response never asks for more once told the connection is closed.
            return Err(TimestampError::Http("connection closed too early".into()));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses what was received so far of an HTTP/1.x response: `Ok(None)` if more is needed
/// (never when `eof`), the body of a 200 answer, or an error.
fn parse_http_response(buf: &[u8], eof: bool) -> Result<Option<Vec<u8>>, TimestampError> {
    let http = |msg: &str| TimestampError::Http(msg.to_string());
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(http("response headers are too long"));
        }
        if eof {
            return Err(if buf.is_empty() {
                http("the TSA closed the connection without answering")
            } else {
                http("connection closed in the middle of the response headers")
            });
        }
        return Ok(None);
    };
    if head_end > MAX_HEAD_BYTES {
        return Err(http("response headers are too long"));
    }
    let head = String::from_utf8_lossy(buf.get(..head_end).unwrap_or(&[]));
    let body = buf.get(head_end.saturating_add(4)..).unwrap_or(&[]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(TimestampError::Http(format!(
            "not an HTTP/1.x status line: {:?}",
            truncated(status_line)
        )));
    }
    let code = parts.next().unwrap_or("");
    let status = match code.parse::<u16>() {
        Ok(s) if code.len() == 3 && (100..=999).contains(&s) => s,
        _ => {
            return Err(TimestampError::Http(format!(
                "bad status code in {:?}",
                truncated(status_line)
            )));
        }
    };
    if status != 200 {
        return Err(TimestampError::HttpStatus {
            status,
            reason: truncated(parts.next().unwrap_or("").trim()),
        });
    }
    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(TimestampError::Http(format!(
                "malformed header line {:?}",
                truncated(line)
            )));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    TimestampError::Http(format!("bad Content-Length {:?}", truncated(value)))
                })?;
            if content_length.is_some_and(|c| c != n) {
                return Err(http("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if !value.eq_ignore_ascii_case("identity") {
                return Err(TimestampError::Http(format!(
                    "unsupported Transfer-Encoding {:?}",
                    truncated(value)
                )));
            }
        }
    }
    let too_large = TimestampError::TooLarge {
        limit: MAX_RESPONSE_BYTES,
    };
    if chunked {
        return decode_chunked(body, eof);
    }
    match content_length {
        Some(n) if n > MAX_RESPONSE_BYTES => Err(too_large),
        Some(n) => match body.get(..n) {
            Some(body) => Ok(Some(body.to_vec())),
            None if eof => Err(TimestampError::Http(format!(
                "connection closed after {} of {n} body bytes",
                body.len()
            ))),
            None => Ok(None),
        },
        None if body.len() > MAX_RESPONSE_BYTES => Err(too_large),
        // No length: the body ends with the connection (we asked for `Connection: close`).
        None if eof => Ok(Some(body.to_vec())),
        None => Ok(None),
    }
}

/// Decodes a chunked body received so far: `Ok(None)` if incomplete (and not `eof`).
fn decode_chunked(mut data: &[u8], eof: bool) -> Result<Option<Vec<u8>>, TimestampError> {
    let incomplete = || {
        if eof {
            Err(TimestampError::Http(
                "connection closed in the middle of a chunked body".into(),
            ))
        } else {
            Ok(None)
        }
    };
    let mut out = Vec::new();
    loop {
        let Some(line_end) = find(data, b"\r\n") else {
            if data.len() > 1024 {
                return Err(TimestampError::Http("chunk size line too long".into()));
            }
            return incomplete();
        };
        let line = String::from_utf8_lossy(data.get(..line_end).unwrap_or(&[]));
        let rest = data.get(line_end.saturating_add(2)..).unwrap_or(&[]);
        let size_str = line.split(';').next().unwrap_or("").trim();
        let size = if !size_str.is_empty()
            && size_str.len() <= 8
            && size_str.bytes().all(|b| b.is_ascii_hexdigit())
        {
            usize::from_str_radix(size_str, 16).ok()
        } else {
            None
        };
        let Some(size) = size else {
            return Err(TimestampError::Http(format!(
                "bad chunk size {:?}",
                truncated(&line)
            )));
        };
        if size == 0 {
            // The last chunk; trailers, if any, are not needed.
            return Ok(Some(out));
        }
        if out.len().saturating_add(size) > MAX_RESPONSE_BYTES {
            return Err(TimestampError::TooLarge {
                limit: MAX_RESPONSE_BYTES,
            });
        }
        let (Some(chunk), Some(after)) = (rest.get(..size), rest.get(size..)) else {
            return incomplete();
        };
        match after.get(..2) {
            None => return incomplete(),
            Some(b"\r\n") => {}
            Some(_) => return Err(TimestampError::Http("chunk not followed by CRLF".into())),
        }
        out.extend_from_slice(chunk);
        data = after.get(2..).unwrap_or(&[]);
    }
}

/// At most 200 characters of something the server sent, for an error message.
fn truncated(s: &str) -> String {
    s.chars().take(200).collect()
}

// ---------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------

/// Parses a DER `TimeStampResp` (RFC 3161 §2.4.2) answering the request for `message` with
/// `nonce`: the TSA must have granted it (status 0 or 1), and the token must carry the
/// SHA-256 imprint of `message` and the same nonce. The signature is not verified.
pub fn parse_response(
    response: &[u8],
    message: &[u8],
    nonce: u64,
) -> Result<TimestampToken, TimestampError> {
    let token = granted_token(response)?;
    let info = parse_token(token)?;
    check_imprint(&info, message)?;
    let expected = der::uint_content(nonce);
    match info.nonce {
        Some(got) if got == expected.as_slice() => {}
        got => {
            return Err(TimestampError::NonceMismatch {
                expected: format!("0x{}", hex::encode(&expected)),
                got: got.map_or_else(|| "absent".to_string(), |g| format!("0x{}", hex::encode(g))),
            });
        }
    }
    Ok(TimestampToken {
        der: token.to_vec(),
        gen_time: info.gen_time,
    })
}

fn malformed(step: &'static str) -> impl FnOnce(String) -> TimestampError {
    move |detail| TimestampError::Malformed { step, detail }
}

/// `TimeStampResp ::= SEQUENCE { status PKIStatusInfo, timeStampToken TimeStampToken OPTIONAL }`:
/// the token's bytes if the status is granted.
fn granted_token(response: &[u8]) -> Result<&[u8], TimestampError> {
    let step = "TimeStampResp";
    let mut top = der::Reader::new(response);
    let resp = top
        .expect(der::SEQUENCE, "TimeStampResp")
        .map_err(malformed(step))?;
    top.finish("TimeStampResp").map_err(malformed(step))?;
    let mut r = resp.reader();
    let status_info = r
        .expect(der::SEQUENCE, "PKIStatusInfo")
        .map_err(malformed(step))?;
    let token = r
        .optional(der::SEQUENCE, "timeStampToken")
        .map_err(malformed(step))?;
    r.finish("timeStampToken").map_err(malformed(step))?;

    let (status, detail) = parse_status(status_info.value).map_err(malformed("PKIStatusInfo"))?;
    if status > 1 {
        return Err(TimestampError::Rejected { status, detail });
    }
    token.map(|t| t.raw).ok_or(TimestampError::Malformed {
        step,
        detail: format!("status {status} ({detail}) but no timeStampToken"),
    })
}

/// `PKIStatusInfo ::= SEQUENCE { status PKIStatus, statusString PKIFreeText OPTIONAL,
/// failInfo PKIFailureInfo OPTIONAL }`: the status and a readable description.
fn parse_status(value: &[u8]) -> Result<(u64, String), String> {
    let mut r = der::Reader::new(value);
    let status =
        der::uint(r.expect(der::INTEGER, "status")?.value).map_err(|e| format!("status: {e}"))?;
    let mut detail = vec![
        match status {
            0 => "granted",
            1 => "grantedWithMods",
            2 => "rejection",
            3 => "waiting",
            4 => "revocationWarning",
            5 => "revocationNotification",
            _ => "unknown status",
        }
        .to_string(),
    ];
    if let Some(texts) = r.optional(der::SEQUENCE, "statusString")? {
        let mut t = texts.reader();
        while !t.is_empty() {
            let s = t.expect(der::UTF8_STRING, "statusString")?;
            detail.push(format!(
                "{:?}",
                truncated(&String::from_utf8_lossy(s.value))
            ));
        }
    }
    if let Some(bits) = r.optional(der::BIT_STRING, "failInfo")? {
        const NAMES: [(usize, &str); 8] = [
            (0, "badAlg"),
            (2, "badRequest"),
            (5, "badDataFormat"),
            (14, "timeNotAvailable"),
            (15, "unacceptedPolicy"),
            (16, "unacceptedExtension"),
            (17, "addInfoNotAvailable"),
            (25, "systemFailure"),
        ];
        let Some((&unused, bytes)) = bits.value.split_first() else {
            return Err("failInfo: empty BIT STRING".into());
        };
        if unused > 7 || (bytes.is_empty() && unused != 0) {
            return Err("failInfo: bad BIT STRING".into());
        }
        let set = |i: usize| bytes.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0);
        let failures: Vec<&str> = NAMES
            .iter()
            .filter(|(i, _)| set(*i))
            .map(|(_, n)| *n)
            .collect();
        if !failures.is_empty() {
            detail.push(format!("failure: {}", failures.join(", ")));
        }
    }
    r.finish("PKIStatusInfo")?;
    Ok((status, detail.join("; ")))
}

/// What is checked or kept of a token's `TSTInfo`.
#[derive(Debug)]
struct TstInfo<'a> {
    gen_time: String,
    /// The imprint's hash algorithm OID (content bytes) and whether its parameters are
    /// absent or NULL.
    hash_algorithm: &'a [u8],
    hash_params_ok: bool,
    hashed_message: &'a [u8],
    /// The nonce's INTEGER content bytes.
    nonce: Option<&'a [u8]>,
}

/// Walks `ContentInfo → SignedData → encapContentInfo → eContent → TSTInfo` (RFC 5652,
/// RFC 3161 §2.4.2).
fn parse_token(token: &[u8]) -> Result<TstInfo<'_>, TimestampError> {
    // ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY }
    let step = "ContentInfo";
    let mut top = der::Reader::new(token);
    let content_info = top
        .expect(der::SEQUENCE, "ContentInfo")
        .map_err(malformed(step))?;
    top.finish("ContentInfo").map_err(malformed(step))?;
    let mut r = content_info.reader();
    let content_type = r.expect(der::OID, "contentType").map_err(malformed(step))?;
    if content_type.value != OID_SIGNED_DATA {
        return Err(TimestampError::Malformed {
            step,
            detail: "the token is not a CMS SignedData".into(),
        });
    }
    let content = r
        .expect(der::CONTEXT_0, "content")
        .map_err(malformed(step))?;
    r.finish("content").map_err(malformed(step))?;
    let mut r = content.reader();
    let signed_data = r
        .expect(der::SEQUENCE, "SignedData")
        .map_err(malformed(step))?;
    r.finish("SignedData").map_err(malformed(step))?;

    // SignedData ::= SEQUENCE { version, digestAlgorithms SET, encapContentInfo,
    //   certificates [0] IMPLICIT OPTIONAL, crls [1] IMPLICIT OPTIONAL, signerInfos SET }
    let step = "SignedData";
    let mut r = signed_data.reader();
    r.expect(der::INTEGER, "version").map_err(malformed(step))?;
    r.expect(der::SET, "digestAlgorithms")
        .map_err(malformed(step))?;
    let encap = r
        .expect(der::SEQUENCE, "encapContentInfo")
        .map_err(malformed(step))?;
    r.optional(der::CONTEXT_0, "certificates")
        .map_err(malformed(step))?;
    r.optional(der::CONTEXT_1, "crls")
        .map_err(malformed(step))?;
    r.expect(der::SET, "signerInfos").map_err(malformed(step))?;
    r.finish("signerInfos").map_err(malformed(step))?;

    // EncapsulatedContentInfo ::= SEQUENCE { eContentType OID,
    //   eContent [0] EXPLICIT OCTET STRING OPTIONAL }
    let step = "encapContentInfo";
    let mut r = encap.reader();
    let e_content_type = r
        .expect(der::OID, "eContentType")
        .map_err(malformed(step))?;
    if e_content_type.value != OID_TST_INFO {
        return Err(TimestampError::Malformed {
            step,
            detail: "the signed content is not a TSTInfo".into(),
        });
    }
    let explicit = r
        .expect(der::CONTEXT_0, "eContent")
        .map_err(malformed(step))?;
    r.finish("eContent").map_err(malformed(step))?;
    let mut r = explicit.reader();
    let e_content = r
        .expect(der::OCTET_STRING, "eContent")
        .map_err(malformed(step))?;
    r.finish("eContent").map_err(malformed(step))?;

    // TSTInfo ::= SEQUENCE { version INTEGER { v1(1) }, policy OID,
    //   messageImprint MessageImprint, serialNumber INTEGER, genTime GeneralizedTime,
    //   accuracy Accuracy OPTIONAL, ordering BOOLEAN DEFAULT FALSE, nonce INTEGER OPTIONAL,
    //   tsa [0] GeneralName OPTIONAL, extensions [1] IMPLICIT Extensions OPTIONAL }
    let step = "TSTInfo";
    let mut top = der::Reader::new(e_content.value);
    let tst_info = top
        .expect(der::SEQUENCE, "TSTInfo")
        .map_err(malformed(step))?;
    top.finish("TSTInfo").map_err(malformed(step))?;
    let mut r = tst_info.reader();
    let version = r.expect(der::INTEGER, "version").map_err(malformed(step))?;
    if version.value != [1] {
        return Err(TimestampError::Malformed {
            step,
            detail: format!("unsupported version 0x{}", hex::encode(version.value)),
        });
    }
    r.expect(der::OID, "policy").map_err(malformed(step))?;
    let imprint = r
        .expect(der::SEQUENCE, "messageImprint")
        .map_err(malformed(step))?;
    let serial = r
        .expect(der::INTEGER, "serialNumber")
        .map_err(malformed(step))?;
    der::check_integer(serial.value)
        .map_err(|e| format!("serialNumber: {e}"))
        .map_err(malformed(step))?;
    let gen_time = r
        .expect(der::GENERALIZED_TIME, "genTime")
        .map_err(malformed(step))?;
    let gen_time = generalized_time(gen_time.value)
        .map_err(|e| format!("genTime: {e}"))
        .map_err(malformed(step))?;
    r.optional(der::SEQUENCE, "accuracy")
        .map_err(malformed(step))?;
    r.optional(der::BOOLEAN, "ordering")
        .map_err(malformed(step))?;
    let nonce = r.optional(der::INTEGER, "nonce").map_err(malformed(step))?;
    if let Some(nonce) = &nonce {
        der::check_integer(nonce.value)
            .map_err(|e| format!("nonce: {e}"))
            .map_err(malformed(step))?;
    }
    r.optional(der::CONTEXT_0, "tsa").map_err(malformed(step))?;
    r.optional(der::CONTEXT_1, "extensions")
        .map_err(malformed(step))?;
    r.finish("TSTInfo").map_err(malformed(step))?;

    // MessageImprint ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, hashedMessage OCTET STRING }
    // AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }
    let step = "TSTInfo messageImprint";
    let mut r = imprint.reader();
    let algorithm = r
        .expect(der::SEQUENCE, "hashAlgorithm")
        .map_err(malformed(step))?;
    let hashed_message = r
        .expect(der::OCTET_STRING, "hashedMessage")
        .map_err(malformed(step))?;
    r.finish("hashedMessage").map_err(malformed(step))?;
    let mut a = algorithm.reader();
    let oid = a.expect(der::OID, "algorithm").map_err(malformed(step))?;
    let hash_params_ok = a.is_empty() || a.rest() == [der::NULL, 0];

    Ok(TstInfo {
        gen_time,
        hash_algorithm: oid.value,
        hash_params_ok,
        hashed_message: hashed_message.value,
        nonce: nonce.map(|n| n.value),
    })
}

fn check_imprint(info: &TstInfo<'_>, message: &[u8]) -> Result<(), TimestampError> {
    let expected = hex::encode(Sha256::digest(message));
    if info.hash_algorithm != OID_SHA256 || !info.hash_params_ok {
        return Err(TimestampError::ImprintMismatch {
            expected,
            got: format!(
                "made with another hash algorithm (OID content 0x{})",
                hex::encode(info.hash_algorithm)
            ),
        });
    }
    let got = hex::encode(info.hashed_message);
    if got != expected {
        return Err(TimestampError::ImprintMismatch { expected, got });
    }
    Ok(())
}

/// Checks a DER GeneralizedTime (`YYYYMMDDHHMMSS[.f+]Z`) and returns it as text.
fn generalized_time(value: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(value).map_err(|_| "not ASCII".to_string())?;
    let shape_ok = s.len() >= 15
        && s.get(..14)
            .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
        && s.ends_with('Z')
        && match s.get(14..s.len().saturating_sub(1)) {
            Some("") => true,
            Some(frac) => frac
                .strip_prefix('.')
                .is_some_and(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())),
            None => false,
        };
    if !shape_ok {
        return Err(format!(
            "{:?} is not YYYYMMDDHHMMSS[.fff]Z",
            truncated(&String::from_utf8_lossy(value))
        ));
    }
    Ok(s.to_string())
}

// ---------------------------------------------------------------------------------------
// DER
// ---------------------------------------------------------------------------------------

/// A minimal, strict DER reader and writer: single-byte tags, definite minimal lengths,
/// every access bounds-checked (no indexing, no panics on any input).
mod der {
    pub const BOOLEAN: u8 = 0x01;
    pub const INTEGER: u8 = 0x02;
    pub const BIT_STRING: u8 = 0x03;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OID: u8 = 0x06;
    pub const UTF8_STRING: u8 = 0x0c;
    pub const GENERALIZED_TIME: u8 = 0x18;
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    /// `[0]` constructed (EXPLICIT, or IMPLICIT of a constructed type).
    pub const CONTEXT_0: u8 = 0xa0;
    /// `[1]` constructed.
    pub const CONTEXT_1: u8 = 0xa1;

    /// One element: its tag, its content and its whole encoding.
    #[derive(Debug, Clone, Copy)]
    pub struct Tlv<'a> {
        pub tag: u8,
        pub value: &'a [u8],
        pub raw: &'a [u8],
    }

    impl<'a> Tlv<'a> {
        /// A reader over the content (of a constructed element).
        pub fn reader(&self) -> Reader<'a> {
            Reader::new(self.value)
        }
    }

    /// Reads consecutive elements.
    #[derive(Debug, Clone)]
    pub struct Reader<'a> {
        rest: &'a [u8],
    }

    impl<'a> Reader<'a> {
        pub fn new(input: &'a [u8]) -> Self {
            Reader { rest: input }
        }

        pub fn is_empty(&self) -> bool {
            self.rest.is_empty()
        }

        pub fn rest(&self) -> &'a [u8] {
            self.rest
        }

        pub fn peek_tag(&self) -> Option<u8> {
            self.rest.first().copied()
        }

        /// The next element, whatever its tag.
        pub fn read(&mut self) -> Result<Tlv<'a>, String> {
            let input = self.rest;
            let Some((&tag, after_tag)) = input.split_first() else {
                return Err("unexpected end of data".into());
            };
            if tag & 0x1f == 0x1f {
                return Err(format!(
                    "high-tag-number form (tag byte {tag:#04x}) not supported"
                ));
            }
            let Some((&first, after_first)) = after_tag.split_first() else {
                return Err("truncated: no length".into());
            };
            let (len, after_len) = if first < 0x80 {
                (usize::from(first), after_first)
            } else if first == 0x80 {
                return Err("indefinite length (BER) is not DER".into());
            } else {
                let n = usize::from(first & 0x7f);
                if n > 4 {
                    return Err(format!("a {n}-byte length is too long"));
                }
                let Some((len_bytes, after_len)) = after_first.split_at_checked(n) else {
                    return Err("truncated length".into());
                };
                if len_bytes.first() == Some(&0) {
                    return Err("non-minimal length (leading zero byte)".into());
                }
                let len = len_bytes
                    .iter()
                    .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                if len < 0x80 {
                    return Err("non-minimal length (long form below 128)".into());
                }
                (len, after_len)
            };
            let Some((value, rest)) = after_len.split_at_checked(len) else {
                return Err(format!(
                    "truncated: length {len} but only {} bytes left",
                    after_len.len()
                ));
            };
            let raw_len = input.len().saturating_sub(rest.len());
            let raw = input.get(..raw_len).unwrap_or(&[]);
            self.rest = rest;
            Ok(Tlv { tag, value, raw })
        }

        /// The next element, which must have tag `tag`.
        pub fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>, String> {
            let tlv = self.read().map_err(|e| format!("{what}: {e}"))?;
            if tlv.tag != tag {
                return Err(format!(
                    "{what}: expected tag {tag:#04x}, found {:#04x}",
                    tlv.tag
                ));
            }
            Ok(tlv)
        }

        /// The next element if it has tag `tag`.
        pub fn optional(&mut self, tag: u8, what: &str) -> Result<Option<Tlv<'a>>, String> {
            if self.peek_tag() == Some(tag) {
                self.expect(tag, what).map(Some)
            } else {
                Ok(None)
            }
        }

        /// Nothing must be left.
        pub fn finish(&self, after: &str) -> Result<(), String> {
            if self.rest.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} unexpected trailing bytes after {after}",
                    self.rest.len()
                ))
            }
        }
    }

    /// Checks INTEGER content is minimal two's complement.
    pub fn check_integer(value: &[u8]) -> Result<(), String> {
        match value {
            [] => Err("empty INTEGER".into()),
            [0x00, next, ..] if next & 0x80 == 0 => Err("non-minimal INTEGER".into()),
            [0xff, next, ..] if next & 0x80 != 0 => Err("non-minimal INTEGER".into()),
            _ => Ok(()),
        }
    }

    /// Decodes a non-negative INTEGER that fits in a u64.
    pub fn uint(value: &[u8]) -> Result<u64, String> {
        check_integer(value)?;
        if value.first().is_some_and(|b| b & 0x80 != 0) {
            return Err("negative INTEGER".into());
        }
        let digits = match value {
            [0x00, rest @ ..] if !rest.is_empty() => rest,
            _ => value,
        };
        if digits.len() > 8 {
            return Err("INTEGER too large".into());
        }
        Ok(digits
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// The minimal INTEGER content for a non-negative `n`.
    pub fn uint_content(n: u64) -> Vec<u8> {
        let mut content: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        if content.first().is_none_or(|&b| b & 0x80 != 0) {
            content.insert(0, 0);
        }
        content
    }

    /// One element, DER-encoded.
    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let len = content.len();
        let mut out = Vec::with_capacity(len.saturating_add(6));
        out.push(tag);
        if len < 0x80 {
            out.extend(u8::try_from(len));
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.extend(u8::try_from(bytes.len()).map(|n| 0x80 | n));
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(content);
        out
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A real exchange with `openssl ts -reply` (OpenSSL 3.0, P-256 TSA key, certReq TRUE,
    /// accuracy, ordering, tsa name): the request for FIXTURE_MESSAGE with FIXTURE_NONCE,
    /// and the response.
    const FIXTURE_MESSAGE: &[u8] = b"archipel checkpoint fixture\n";
    const FIXTURE_NONCE: u64 = 0xA5C3_0F1E_2D3C_4B5A;
    const FIXTURE_GEN_TIME: &str = "20261125181409Z";
    const FIXTURE_REQUEST: &str = concat!(
        "30440201013031300d060960864801650304020105000420856879563cecf60f4a7503b10369f2f7d1d3",
        "5b8fbb2069abe36b315d899a8904020900a5c30f1e2d3c4b5a0101ff",
    );
    const FIXTURE_RESPONSE: &str = concat!(
        "3082053130030201003082052806092a864886f70d010702a082051930820515020103310f300d060960864801650304",
        "020105003081a2060b2a864886f70d0109100104a0819204818f30818c02010106042a0304013031300d060960864801",
        "650304020105000420856879563cecf60f4a7503b10369f2f7d1d35b8fbb2069abe36b315d899a8904020102180f3230",
        "3236313132353138313430395a300a020101800201f48101640101ff020900a5c30f1e2d3c4b5aa020a41e301c311a30",
        "1806035504030c11417263686970656c205465737420545341a082031f3082019d30820144a003020102020102300a06",
        "082a8648ce3d040302301b3119301706035504030c10417263686970656c2054657374204341301e170d323631313235",
        "3138313430395a170d3336313132323138313430395a301c311a301806035504030c11417263686970656c2054657374",
        "205453413059301306072a8648ce3d020106082a8648ce3d0301070342000450bf3e018c498411a581cf9483ecc16f8e",
        "e095f7daaef6224af165e008d63771931ad277461ccd5ea5089bc6ed6518d0b8400273ef55fd99ffc7a7025143583fa3",
        "783076300c0603551d130101ff04023000300e0603551d0f0101ff0404030206c030160603551d250101ff040c300a06",
        "082b06010505070308301d0603551d0e041604146d4ed45f94ecb27e11e16edd69f114714199528a301f0603551d2304",
        "1830168014c27cad273a72361ab13b253a13d277e041fd113d300a06082a8648ce3d04030203470030440220456fe5c5",
        "fa08801035f486670aefc6eb59c4779ecb8003e370b556d8cdf5e79002203fea631e2b1675c05545dafc93d9e6e20b7c",
        "bddb0fc61f2faf4385e8adb05e4a3082017a30820120a003020102021479a1e622007cd02cb7811552927a6efd1a5078",
        "0e300a06082a8648ce3d040302301b3119301706035504030c10417263686970656c2054657374204341301e170d3236",
        "313132353138313430385a170d3336313132323138313430385a301b3119301706035504030c10417263686970656c20",
        "546573742043413059301306072a8648ce3d020106082a8648ce3d03010703420004ec1c9bf524fde0ab3b7f8bdd70c5",
        "a25c45b66124897b70354418a716c762c48cae2b40a4e98864a711667b4b92bb691d19a824f78cb27d7f1157257cf0df",
        "7bd5a3423040300f0603551d130101ff040530030101ff300e0603551d0f0101ff040403020106301d0603551d0e0416",
        "0414c27cad273a72361ab13b253a13d277e041fd113d300a06082a8648ce3d040302034800304502206b46b27ed6e8c8",
        "289bf54982d678ee810971c3351a921333a6f4efb76bb097bb02210080cbaed07bc8404791adaa20b7f2310ecfc43671",
        "3ae7e8ca7af1bb2123128b1a31820135308201310201013020301b3119301706035504030c10417263686970656c2054",
        "657374204341020102300d06096086480165030402010500a081a4301a06092a864886f70d010903310d060b2a864886",
        "f70d0109100104301c06092a864886f70d010905310f170d3236313132353138313430395a302f06092a864886f70d01",
        "090431220420dc06ae612919fc172e2b3a5f43babd9af613829a3c461932d3a3f1a6e0522cae3037060b2a864886f70d",
        "010910022f31283026302430220420b375fe6aa09019871c09ec5b58ed8726a4c8eb7b422b551f33d0b4177bba99f430",
        "0a06082a8648ce3d04030204483046022100e0f7cd14373c5a0cbf57782b9a811c346bb6a4dc6b3bb7c5d078792ffc1a",
        "3007022100b2a2819f70eaee3157f5a22f791965986e25ed82df39c4afda30f68a177448d2",
    );

    /// `openssl ts -reply` for a SHA-1 query its configuration does not accept.
    const FIXTURE_REJECTION: &str = concat!(
        "30373035020102302c0c2a4d6573736167652064696765737420616c676f726974686d206973206e6f74",
        "20737570706f727465642e03020780",
    );

    fn fixture_response() -> Vec<u8> {
        hex::decode(FIXTURE_RESPONSE).unwrap()
    }

    #[test]
    fn request_has_the_rfc3161_structure() {
        let message = b"some checkpoint\n";
        for nonce in [1u64, 0x7f, 0x80, 0xff, 0x1234, FIXTURE_NONCE, u64::MAX] {
            let req = request_der(message, nonce);
            let mut top = der::Reader::new(&req);
            let seq = top.expect(der::SEQUENCE, "TimeStampReq").unwrap();
            top.finish("TimeStampReq").unwrap();
            let mut r = seq.reader();
            assert_eq!(r.expect(der::INTEGER, "version").unwrap().value, [1]);
            let imprint = r.expect(der::SEQUENCE, "messageImprint").unwrap();
            let got_nonce = r.expect(der::INTEGER, "nonce").unwrap();
            assert_eq!(der::uint(got_nonce.value).unwrap(), nonce);
            der::check_integer(got_nonce.value).unwrap();
            assert_eq!(r.expect(der::BOOLEAN, "certReq").unwrap().value, [0xff]);
            r.finish("certReq").unwrap();

            let mut r = imprint.reader();
            let alg = r.expect(der::SEQUENCE, "hashAlgorithm").unwrap();
            let hash = r.expect(der::OCTET_STRING, "hashedMessage").unwrap();
            r.finish("hashedMessage").unwrap();
            assert_eq!(hash.value, Sha256::digest(message).as_slice());
            let mut a = alg.reader();
            assert_eq!(a.expect(der::OID, "algorithm").unwrap().value, OID_SHA256);
            let null = a.expect(der::NULL, "parameters").unwrap();
            assert!(null.value.is_empty());
            a.finish("parameters").unwrap();
        }
    }

    #[test]
    fn request_matches_an_independently_encoded_request_openssl_accepts() {
        // FIXTURE_REQUEST was encoded by a separate script and printed by
        // `openssl ts -query -in REQ -text` as sha256 / Nonce 0xA5C30F1E2D3C4B5A / certReq yes.
        assert_eq!(
            hex::encode(request_der(FIXTURE_MESSAGE, FIXTURE_NONCE)),
            FIXTURE_REQUEST
        );
    }

    #[test]
    fn nonces_are_minimal_positive_integers() {
        assert_eq!(der::uint_content(0), [0]);
        assert_eq!(der::uint_content(1), [1]);
        assert_eq!(der::uint_content(0x7f), [0x7f]);
        assert_eq!(der::uint_content(0x80), [0, 0x80]);
        assert_eq!(der::uint_content(0x0100), [1, 0]);
        assert_eq!(
            der::uint_content(u64::MAX),
            [0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        for n in [0u64, 1, 0x80, 0xffff, 1 << 63, u64::MAX] {
            assert_eq!(der::uint(&der::uint_content(n)).unwrap(), n);
        }
    }

    #[test]
    fn der_lengths_are_encoded_minimally() {
        assert_eq!(der::tlv(0x04, &[]), [0x04, 0]);
        assert_eq!(der::tlv(0x04, &[7; 0x7f])[..2], [0x04, 0x7f]);
        assert_eq!(der::tlv(0x04, &[7; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(der::tlv(0x04, &[7; 0x1234])[..4], [0x04, 0x82, 0x12, 0x34]);
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0x1_0000] {
            let enc = der::tlv(0x04, &vec![9; len]);
            let mut r = der::Reader::new(&enc);
            let tlv = r.read().unwrap();
            assert_eq!(tlv.value.len(), len);
            assert_eq!(tlv.raw, enc.as_slice());
            assert!(r.is_empty());
        }
    }

    #[test]
    fn der_reader_is_strict() {
        let bad: &[(&[u8], &str)] = &[
            (&[], "end of data"),
            (&[0x30], "no length"),
            (&[0x30, 0x80, 0, 0], "indefinite"),
            (&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5], "non-minimal"),
            (&[0x04, 0x82, 0x00, 0x80], "leading zero"),
            (&[0x04, 0x85, 1, 1, 1, 1, 1], "too long"),
            (&[0x04, 0x82, 0x01], "truncated length"),
            (&[0x04, 0x03, 1, 2], "truncated"),
            (&[0x1f, 0x01, 0x00], "high-tag-number"),
        ];
        for (input, expected) in bad {
            let err = der::Reader::new(input).read().unwrap_err();
            assert!(err.contains(expected), "{input:02x?}: {err}");
        }
        assert!(der::check_integer(&[0, 1]).is_err());
        assert!(der::check_integer(&[0xff, 0x80]).is_err());
        assert!(der::uint(&[0x80]).is_err());
        assert!(der::uint(&[1, 2, 3, 4, 5, 6, 7, 8, 9]).is_err());
        assert_eq!(der::uint(&[0, 0x80]).unwrap(), 0x80);
    }

    #[test]
    fn parses_a_real_openssl_response() {
        let response = fixture_response();
        let token = parse_response(&response, FIXTURE_MESSAGE, FIXTURE_NONCE).unwrap();
        assert_eq!(token.gen_time, FIXTURE_GEN_TIME);
        // The token is the ContentInfo, verbatim: the response minus its outer header and
        // its PKIStatusInfo (`30 03 02 01 00`).
        assert!(response.ends_with(&token.der));
        assert_eq!(token.der.first(), Some(&0x30));
        assert_eq!(response.len() - token.der.len(), 4 + 5);
        // A stored token reads back.
        let again = TimestampToken::from_der(token.der.clone(), FIXTURE_MESSAGE).unwrap();
        assert_eq!(again, token);
    }

    #[test]
    fn rejects_another_message_or_nonce() {
        let response = fixture_response();
        let err = parse_response(&response, b"another checkpoint\n", FIXTURE_NONCE).unwrap_err();
        assert!(
            matches!(err, TimestampError::ImprintMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("another message"), "{err}");
        let err = parse_response(&response, FIXTURE_MESSAGE, FIXTURE_NONCE ^ 1).unwrap_err();
        assert!(matches!(err, TimestampError::NonceMismatch { .. }), "{err}");
        assert!(err.to_string().contains("a5c30f1e2d3c4b5a"), "{err}");
        let token = parse_response(&response, FIXTURE_MESSAGE, FIXTURE_NONCE).unwrap();
        let err = TimestampToken::from_der(token.der, b"x").unwrap_err();
        assert!(
            matches!(err, TimestampError::ImprintMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn reports_a_real_rejection_with_its_reason() {
        let response = hex::decode(FIXTURE_REJECTION).unwrap();
        let err = parse_response(&response, FIXTURE_MESSAGE, FIXTURE_NONCE).unwrap_err();
        let TimestampError::Rejected { status, detail } = &err else {
            panic!("{err}");
        };
        assert_eq!(*status, 2);
        assert!(detail.contains("rejection"), "{detail}");
        assert!(detail.contains("not supported"), "{detail}");
        assert!(detail.contains("badAlg"), "{detail}");
        assert!(err.to_string().contains("status 2"), "{err}");
    }

    #[test]
    fn granted_without_a_token_is_malformed() {
        for status in [0u8, 1] {
            let response = der::tlv(der::SEQUENCE, &der::tlv(der::SEQUENCE, &[2, 1, status]));
            let err = parse_response(&response, b"", 1).unwrap_err();
            assert!(matches!(err, TimestampError::Malformed { .. }), "{err}");
            assert!(err.to_string().contains("no timeStampToken"), "{err}");
        }
        for status in [3u8, 4, 5, 42] {
            let response = der::tlv(der::SEQUENCE, &der::tlv(der::SEQUENCE, &[2, 1, status]));
            let err = parse_response(&response, b"", 1).unwrap_err();
            assert!(
                matches!(err, TimestampError::Rejected { status: s, .. } if s == u64::from(status)),
                "{err}"
            );
        }
    }

    #[test]
    fn every_truncation_of_a_real_response_is_an_error() {
        let response = fixture_response();
        for len in 0..response.len() {
            let err = parse_response(&response[..len], FIXTURE_MESSAGE, FIXTURE_NONCE)
                .expect_err("a truncated response must not be accepted");
            assert!(
                matches!(err, TimestampError::Malformed { .. }),
                "truncated to {len}: {err}"
            );
        }
        // Trailing garbage too.
        for extra in [&[0u8][..], &[0x30, 0x00], &[0xff; 7]] {
            let mut longer = response.clone();
            longer.extend_from_slice(extra);
            let err = parse_response(&longer, FIXTURE_MESSAGE, FIXTURE_NONCE).unwrap_err();
            assert!(err.to_string().contains("trailing"), "{err}");
        }
        // And the token alone, truncated.
        let token = parse_response(&response, FIXTURE_MESSAGE, FIXTURE_NONCE)
            .unwrap()
            .der;
        for len in 0..token.len() {
            assert!(TimestampToken::from_der(token[..len].to_vec(), FIXTURE_MESSAGE).is_err());
        }
    }

    #[test]
    fn every_corrupted_byte_of_a_real_response_is_handled_without_panic() {
        let response = fixture_response();
        let mut accepted = 0;
        for i in 0..response.len() {
            for v in [
                0x00u8,
                0x01,
                0x7f,
                0x80,
                0x81,
                0x84,
                0xff,
                response[i] ^ 0x01,
            ] {
                let mut corrupted = response.clone();
                corrupted[i] = v;
                if corrupted == response {
                    continue;
                }
                // The signature is not verified: a corrupted certificate or signature byte
                // still parses; a corrupted imprint, nonce or structure must not.
                if let Ok(token) = parse_response(&corrupted, FIXTURE_MESSAGE, FIXTURE_NONCE) {
                    accepted += 1;
                    assert!(corrupted.ends_with(&token.der));
                }
            }
        }
        assert!(accepted > 0);

        // But never with a corrupted imprint or nonce.
        let digest = Sha256::digest(FIXTURE_MESSAGE);
        let nonce = der::uint_content(FIXTURE_NONCE);
        for needle in [digest.as_slice(), nonce.as_slice()] {
            let at = find(&response, needle).unwrap();
            for i in at..at + needle.len() {
                let mut corrupted = response.clone();
                corrupted[i] ^= 0x01;
                let err = parse_response(&corrupted, FIXTURE_MESSAGE, FIXTURE_NONCE).unwrap_err();
                assert!(
                    matches!(
                        err,
                        TimestampError::ImprintMismatch { .. }
                            | TimestampError::NonceMismatch { .. }
                    ),
                    "{err}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_response(&bytes, b"m", 1);
            let _ = TimestampToken::from_der(bytes.clone(), b"m");
            let _ = parse_http_response(&bytes, false);
            let _ = parse_http_response(&bytes, true);
            let _ = decode_chunked(&bytes, true);
        }

        #[test]
        fn spliced_garbage_never_panics(
            at in 0usize..1400,
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut response = fixture_response();
            let at = at.min(response.len());
            response.splice(at..at, bytes);
            let _ = parse_response(&response, FIXTURE_MESSAGE, FIXTURE_NONCE);
        }
    }

    #[test]
    fn generalized_times() {
        for ok in [
            "20260131120000Z",
            "20260131120000.5Z",
            "20260131120000.123Z",
        ] {
            assert_eq!(generalized_time(ok.as_bytes()).unwrap(), ok);
        }
        for bad in [
            "",
            "Z",
            "2026013112000Z",
            "20260131120000",
            "20260131120000.Z",
            "20260131120000+0100",
            "2026013112000aZ",
            "20260131120000,5Z",
        ] {
            assert!(generalized_time(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        let t = Target::parse("http://tsa.example.fr/tsr").unwrap();
        assert_eq!(
            (t.host, t.port, t.authority, t.path.as_str()),
            ("tsa.example.fr", 80, "tsa.example.fr", "/tsr")
        );
        let t = Target::parse("HTTP://127.0.0.1:3180").unwrap();
        assert_eq!((t.host, t.port, t.path.as_str()), ("127.0.0.1", 3180, "/"));
        let t = Target::parse("http://[::1]:8080/a/b?x=1#frag").unwrap();
        assert_eq!(
            (t.host, t.port, t.authority, t.path.as_str()),
            ("::1", 8080, "[::1]:8080", "/a/b?x=1")
        );
        let t = Target::parse("http://h?q").unwrap();
        assert_eq!(t.path, "/?q");
        for bad in [
            "https://tsa.example.fr/",
            "ftp://x/",
            "tsa.example.fr",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:65536/",
            "http://h:+80/",
            "http://h:/",
            "http://u@h/",
            "http://h/a b",
            "http://h/\r\nX: y",
            "http://[::1/",
            "http://[::1]x/",
        ] {
            let err = Target::parse(bad).unwrap_err();
            assert!(matches!(err, TimestampError::InvalidUrl { .. }), "{bad}");
        }
        assert!(
            Target::parse("https://x/")
                .unwrap_err()
                .to_string()
                .contains("https")
        );
    }

    #[test]
    fn http_responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(parse_http_response(ok, false).unwrap().unwrap(), b"abc");
        // Incomplete, then closed.
        for len in 0..ok.len() {
            assert!(parse_http_response(&ok[..len], false).unwrap().is_none());
            assert!(matches!(
                parse_http_response(&ok[..len], true),
                Err(TimestampError::Http(_))
            ));
        }
        // Extra bytes after Content-Length are ignored.
        let mut longer = ok.to_vec();
        longer.extend_from_slice(b"zzz");
        assert_eq!(
            parse_http_response(&longer, false).unwrap().unwrap(),
            b"abc"
        );
        // No length: up to the end of the connection.
        let close = b"HTTP/1.0 200 OK\r\n\r\nabcdef";
        assert!(parse_http_response(close, false).unwrap().is_none());
        assert_eq!(
            parse_http_response(close, true).unwrap().unwrap(),
            b"abcdef"
        );
        // Chunked.
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(
            parse_http_response(chunked, false).unwrap().unwrap(),
            b"abc0123456789"
        );
        for len in 0..chunked.len() - 4 {
            assert!(
                parse_http_response(&chunked[..len], false)
                    .unwrap()
                    .is_none()
            );
        }
        let bad_chunk =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n";
        assert!(parse_http_response(bad_chunk, false).is_err());
        // Status.
        let err =
            parse_http_response(b"HTTP/1.1 500 Internal Server Error\r\n\r\n", false).unwrap_err();
        assert!(
            matches!(&err, TimestampError::HttpStatus { status: 500, reason } if reason == "Internal Server Error"),
            "{err}"
        );
        assert!(err.to_string().contains("500"));
        // Too large.
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE_BYTES + 1
        );
        assert!(matches!(
            parse_http_response(huge.as_bytes(), false),
            Err(TimestampError::TooLarge { .. })
        ));
        let huge_chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n";
        assert!(matches!(
            parse_http_response(huge_chunk, false),
            Err(TimestampError::TooLarge { .. })
        ));
        // Garbage.
        for garbage in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_http_response(garbage, true),
                    Err(TimestampError::Http(_))
                ),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
        let endless = vec![b'x'; MAX_HEAD_BYTES + 1];
        assert!(parse_http_response(&endless, false).is_err());
    }

    /// Serves `reply` once to the first connection, after reading the request.
    async fn serve_once(reply: Vec<u8>) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/tsa", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                if let Some(end) = find(&request, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&request[..end]).to_lowercase();
                    let length: usize = head
                        .split("content-length:")
                        .nth(1)
                        .and_then(|rest| rest.lines().next())
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap();
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                assert!(n > 0, "client closed before sending its request");
            }
            socket.write_all(&reply).await.unwrap();
            request
        });
        (url, handle)
    }

    #[tokio::test]
    async fn stamps_over_http() {
        let body = fixture_response();
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(&body);
        let (url, server) = serve_once(reply).await;
        let token = stamp_with_nonce(&url, FIXTURE_MESSAGE, FIXTURE_NONCE, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(token.gen_time, FIXTURE_GEN_TIME);
        let request = server.await.unwrap();
        let text = String::from_utf8_lossy(&request);
        assert!(text.starts_with("POST /tsa HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Type: application/timestamp-query\r\n"));
        assert!(text.contains("\r\nContent-Length: 70\r\n"));
        assert!(request.ends_with(&hex::decode(FIXTURE_REQUEST).unwrap()));

        // The same answer to a request with another (random) nonce.
        let mut reply = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        reply.extend_from_slice(&body);
        let (url, _server) = serve_once(reply).await;
        let err = stamp(&url, FIXTURE_MESSAGE, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, TimestampError::NonceMismatch { .. }), "{err}");
    }
}
