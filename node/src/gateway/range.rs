//! `Range` request headers (RFC 9110 §14.2), for one range of bytes. Outside input: parsed by
//! hand and fuzzed (`fuzz/fuzz_targets/gateway_range.rs`).
//!
//! Choices, all allowed by RFC 9110: a header that is not a valid `bytes=` range set, or that
//! asks for several ranges, is ignored and the whole file is served (200); a single range
//! that starts at or beyond the end of the file is unsatisfiable (416).

/// What to serve for a `Range` header on a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// The whole file (no header, an ignored one, or several ranges).
    Whole,
    /// Bytes `start..=end` (206).
    Part { start: u64, end: u64 },
    /// 416, with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Longest header looked at; longer ones are ignored (served whole).
const MAX_HEADER: usize = 256;

fn number(s: &str) -> Option<u64> {
    let s = s.trim_matches([' ', '\t']);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More digits than u64 holds: a position beyond any file.
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

pub fn parse(header: &str, size: u64) -> RangeAnswer {
    if header.len() > MAX_HEADER {
        return RangeAnswer::Whole;
    }
    let Some((unit, set)) = header.split_once('=') else {
        return RangeAnswer::Whole;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeAnswer::Whole;
    }
    let set = set.trim_matches([' ', '\t']);
    if set.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = set.split_once('-') else {
        return RangeAnswer::Whole;
    };
    let first = first.trim_matches([' ', '\t']);
    if first.is_empty() {
        // Suffix range: the last N bytes.
        let Some(n) = number(last) else {
            return RangeAnswer::Whole;
        };
        if n == 0 || size == 0 {
            return RangeAnswer::Unsatisfiable;
        }
        return RangeAnswer::Part {
            start: size.saturating_sub(n),
            end: size - 1,
        };
    }
    let Some(start) = number(first) else {
        return RangeAnswer::Whole;
    };
    let end = if last.trim_matches([' ', '\t']).is_empty() {
        None
    } else {
        match number(last) {
            Some(e) if e >= start => Some(e),
            _ => return RangeAnswer::Whole, // invalid: last before first
        }
    };
    if start >= size {
        return RangeAnswer::Unsatisfiable;
    }
    let end = end.map_or(size - 1, |e| e.min(size - 1));
    RangeAnswer::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::RangeAnswer::*;
    use super::*;

    #[test]
    fn single_ranges() {
        assert_eq!(parse("bytes=0-99", 1000), Part { start: 0, end: 99 });
        assert_eq!(
            parse("bytes=10-", 1000),
            Part {
                start: 10,
                end: 999
            }
        );
        assert_eq!(
            parse("bytes=-100", 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(parse("bytes=-5000", 1000), Part { start: 0, end: 999 });
        assert_eq!(
            parse("bytes=990-5000", 1000),
            Part {
                start: 990,
                end: 999
            }
        );
        assert_eq!(parse("Bytes = 5-5", 1000), Part { start: 5, end: 5 });
        assert_eq!(
            parse("bytes=0-99999999999999999999999", 10),
            Part { start: 0, end: 9 }
        );
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(parse("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse("bytes=99999999999999999999999-", 10), Unsatisfiable);
        assert_eq!(parse("bytes=0-1,5-6", 1000), Whole);
        assert_eq!(parse("bytes=5-1", 1000), Whole);
        assert_eq!(parse("items=0-1", 1000), Whole);
        assert_eq!(parse("bytes=a-b", 1000), Whole);
        assert_eq!(parse("bytes=+1-2", 1000), Whole);
        assert_eq!(parse("bytes", 1000), Whole);
    }
}
