//! Audit events: the leaves of a node's transparency log.
//!
//! A leaf is short UTF-8 text, one `key value` line each, in a fixed order, so that anyone
//! can read it with no Archipel code and the bytes are canonical:
//!
//! ```text
//! archipel-event/v1
//! time 2026-11-25T17:57:36Z
//! type ingestion
//! object 01KAX7M3S1H4T6Q9W2Z8B5C0DE
//! agent qkm5ubkcg3u35gncpq36be726ztepvs4 admin
//! outcome success
//! detail 12a0e2004b26c647bcde4a8c26cef5b18c85d2201a62e65112da6c694afd20c6
//! ```
//!
//! `time` is inside the leaf so it cannot be changed without changing the tree. `object` is
//! an opaque identifier (record ID, peer node ID, `node`): never a title or a name, since the
//! log is public and permanent. `detail` is a BLAKE3 digest of the event's details (for an
//! ingestion, of the record's signed envelope), which are kept elsewhere.

use std::fmt;

const HEADER: &str = "archipel-event/v1";
const MAX_LEAF: usize = 4096;

/// PREMIS event types (Library of Congress vocabulary) used by Archipel, plus a few
/// node-management types that PREMIS does not name, prefixed `archipel:`.
pub const EVENT_TYPES: &[&str] = &[
    "ingestion",
    "validation",
    "message digest calculation",
    "fixity check",
    "replication",
    "transfer",
    "encryption",
    "decryption",
    "digital signature generation",
    "digital signature validation",
    "dissemination",
    "metadata modification",
    "policy assignment",
    "migration",
    "redaction",
    "deletion",
    "deaccession",
    "archipel:key export",
    "archipel:key rotation",
    "archipel:key retirement",
    "archipel:recipients change",
    "archipel:peer change",
    "archipel:alert",
    "archipel:hold",
    "archipel:hold lift",
    "archipel:tombstone suspension",
    "archipel:tombstone resumption",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// RFC 3339 UTC, whole seconds, `Z` suffix.
    pub time: String,
    pub event_type: String,
    pub object: String,
    /// Node ID of the node that acted.
    pub agent_node: String,
    /// The operator or service on that node (e.g. `admin`, `fixity`, `checkpointer`).
    pub agent_actor: String,
    pub outcome: Outcome,
    pub detail: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event leaf is {0} bytes, over the limit of {MAX_LEAF}")]
    TooLong(usize),
    #[error("event leaf is not UTF-8")]
    Utf8,
    #[error("event leaf line {line}: expected {expected}")]
    Line { line: usize, expected: &'static str },
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("event field {0} is invalid")]
    Field(&'static str),
}

fn token_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic())
}

impl Event {
    /// Checks the fields a leaf is made of (no spaces or newlines in tokens).
    pub fn validate(&self) -> Result<(), EventError> {
        if !EVENT_TYPES.contains(&self.event_type.as_str()) {
            return Err(EventError::UnknownType(self.event_type.clone()));
        }
        if !(self.time.len() == 20 && self.time.ends_with('Z') && token_ok(&self.time)) {
            return Err(EventError::Field("time"));
        }
        for (v, name) in [
            (&self.object, "object"),
            (&self.agent_node, "agent node"),
            (&self.agent_actor, "agent actor"),
        ] {
            if !token_ok(v) {
                return Err(EventError::Field(name));
            }
        }
        Ok(())
    }

    /// The canonical leaf bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EventError> {
        self.validate()?;
        Ok(self.to_string().into_bytes())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        if bytes.len() > MAX_LEAF {
            return Err(EventError::TooLong(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| EventError::Utf8)?;
        let body = text.strip_suffix('\n').ok_or(EventError::Line {
            line: 0,
            expected: "a final newline",
        })?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.len() != 7 || lines[0] != HEADER {
            return Err(EventError::Line {
                line: 1,
                expected: "archipel-event/v1 and 6 fields",
            });
        }
        let field = |i: usize, key: &'static str| -> Result<&str, EventError> {
            lines[i]
                .strip_prefix(key)
                .and_then(|r| r.strip_prefix(' '))
                .ok_or(EventError::Line {
                    line: i + 1,
                    expected: key,
                })
        };
        let (node, actor) = field(4, "agent")?.split_once(' ').ok_or(EventError::Line {
            line: 5,
            expected: "agent <node> <actor>",
        })?;
        let outcome = match field(5, "outcome")? {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            _ => return Err(EventError::Field("outcome")),
        };
        let detail: [u8; 32] = hex::decode(field(6, "detail")?)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(EventError::Field("detail"))?;
        let e = Event {
            time: field(1, "time")?.to_string(),
            event_type: field(2, "type")?.to_string(),
            object: field(3, "object")?.to_string(),
            agent_node: node.to_string(),
            agent_actor: actor.to_string(),
            outcome,
            detail,
        };
        e.validate()?;
        // Canonical: re-encoding must give the same bytes (no stray spaces, upper-case hex).
        if e.to_string().as_bytes() != bytes {
            return Err(EventError::Line {
                line: 0,
                expected: "canonical spacing and lower-case hex",
            });
        }
        Ok(e)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{HEADER}\ntime {}\ntype {}\nobject {}\nagent {} {}\noutcome {}\ndetail {}\n",
            self.time,
            self.event_type,
            self.object,
            self.agent_node,
            self.agent_actor,
            self.outcome.as_str(),
            hex::encode(self.detail)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            time: "2026-11-25T17:57:36Z".into(),
            event_type: "message digest calculation".into(),
            object: "01KAX7M3S1H4T6Q9W2Z8B5C0DE".into(),
            agent_node: "qkm5ubkcg3u35gncpq36be726ztepvs4".into(),
            agent_actor: "admin".into(),
            outcome: Outcome::Success,
            detail: [0xab; 32],
        }
    }

    #[test]
    fn round_trips_and_is_readable() {
        let b = sample().encode().unwrap();
        let text = String::from_utf8(b.clone()).unwrap();
        assert!(text.contains("\ntype message digest calculation\n"));
        assert_eq!(Event::decode(&b).unwrap(), sample());
    }

    #[test]
    fn rejects_non_canonical_and_unknown() {
        let b = sample().encode().unwrap();
        let upper = String::from_utf8(b.clone())
            .unwrap()
            .replace("abab", "ABAB");
        assert!(Event::decode(upper.as_bytes()).is_err());
        let spaced = String::from_utf8(b.clone())
            .unwrap()
            .replace("time ", "time  ");
        assert!(Event::decode(spaced.as_bytes()).is_err());
        let mut e = sample();
        e.event_type = "coffee".into();
        assert!(e.encode().is_err());
        let mut e = sample();
        e.object = "a title with spaces".into();
        assert_eq!(e.encode(), Err(EventError::Field("object")));
        for cut in 0..b.len() {
            assert!(Event::decode(&b[..cut]).is_err());
        }
    }
}
