//! What a citizen may see of a record, decided at request time from the one function of
//! communicability (`record::communicability`) and the `metadata_public` flag. Every handler
//! of the gateway asks here; none decides on its own.

use super::GatewayError;
use crate::record::{Communicability, communicability};
use archipel_proto::manifest::Metadata;
use time::Date;

/// A record as the public may see it today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Communicable: metadata, files, digests and downloads.
    Open,
    /// Not communicable, but its producer marked its metadata public: metadata only, never
    /// content nor content digests; `opens` is when it becomes communicable, if known.
    MetadataOnly { opens: Option<Date> },
    /// Nothing: the gateway answers as if the record did not exist.
    Hidden,
}

pub fn access(meta: &Metadata, today: Date) -> Access {
    match communicability(meta, today) {
        Communicability::Open { .. } => Access::Open,
        Communicability::Until(d) if meta.metadata_public => {
            Access::MetadataOnly { opens: Some(d) }
        }
        Communicability::Closed if meta.metadata_public => Access::MetadataOnly { opens: None },
        Communicability::Until(_) | Communicability::Closed => Access::Hidden,
    }
}

/// Metadata may be shown (`Open` or `MetadataOnly`); otherwise 404.
pub fn require_visible(meta: &Metadata, today: Date) -> Result<Access, GatewayError> {
    match access(meta, today) {
        Access::Hidden => Err(GatewayError::NotFound),
        a => Ok(a),
    }
}

/// Content may be served; otherwise 403 with the opening date (metadata public) or 404.
pub fn require_content(record: &str, meta: &Metadata, today: Date) -> Result<(), GatewayError> {
    match access(meta, today) {
        Access::Open => Ok(()),
        Access::MetadataOnly { opens } => Err(GatewayError::NotCommunicable {
            record: record.to_string(),
            opens,
        }),
        Access::Hidden => Err(GatewayError::NotFound),
    }
}

/// Whether a record can ever become visible without a change of its metadata: the search
/// index keeps only those (a `Closed` record with private metadata stays hidden until an
/// archivist edits it, which rebuilds the index).
pub fn may_become_visible(meta: &Metadata, today: Date) -> bool {
    meta.metadata_public || !matches!(communicability(meta, today), Communicability::Closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_date;

    fn meta(cat: &str, date: &str, public: bool) -> Metadata {
        Metadata {
            communicability: cat.into(),
            date_from: date.into(),
            date_to: date.into(),
            metadata_public: public,
            ..Default::default()
        }
    }

    #[test]
    fn content_only_when_communicable_and_metadata_only_when_public() {
        let today = parse_date("2026-01-01").unwrap();
        let opens = parse_date("2049-03-15").unwrap();
        assert_eq!(access(&meta("immediate", "", false), today), Access::Open);
        assert_eq!(
            access(&meta("l213-2-1", "2024-03-15", true), today),
            Access::MetadataOnly { opens: Some(opens) }
        );
        assert_eq!(
            access(&meta("l213-2-1", "2024-03-15", false), today),
            Access::Hidden
        );
        assert_eq!(
            access(&meta("never", "", true), today),
            Access::MetadataOnly { opens: None }
        );
        assert_eq!(access(&meta("", "", false), today), Access::Hidden);
        assert!(matches!(
            require_content("r", &meta("l213-2-1", "2024-03-15", true), today),
            Err(GatewayError::NotCommunicable { opens: Some(d), .. }) if d == opens
        ));
        assert!(matches!(
            require_content("r", &meta("l213-2-1", "2024-03-15", false), today),
            Err(GatewayError::NotFound)
        ));
        // The day it opens, content is served.
        assert!(require_content("r", &meta("l213-2-1", "2024-03-15", false), opens).is_ok());
        assert!(may_become_visible(
            &meta("l213-2-1", "2024-03-15", false),
            today
        ));
        assert!(!may_become_visible(&meta("never", "", false), today));
    }
}
