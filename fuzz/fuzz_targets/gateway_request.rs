//! The citizen gateway's parsers of outside input: search query strings
//! (`gateway::query::SearchQuery::parse`) and `Range` headers (`gateway::range::parse`).
//! Never panics; a parsed query prints back (`to_query`) to a string that parses to the same
//! query; a satisfiable range lies inside the file.
#![no_main]

use archipel_node::gateway::query::{MAX_QUERY, SearchQuery};
use archipel_node::gateway::range::{RangeAnswer, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = SearchQuery::parse(s) {
        let again = q.to_query(q.page);
        if again.len() <= MAX_QUERY {
            let back = SearchQuery::parse(&again).expect("a printed query parses");
            assert_eq!(back, q, "query does not round trip through {again:?}");
        }
    }
    // The file size from the input too, so that small and huge files are both tried.
    let size = data
        .iter()
        .take(8)
        .fold(0u64, |acc, b| acc.wrapping_mul(251).wrapping_add(u64::from(*b)))
        % 4
        * (data.len() as u64).wrapping_pow(3);
    for size in [size, 0, 1, u64::MAX] {
        if let RangeAnswer::Part { start, end } = parse(s, size) {
            assert!(start <= end && end < size, "{s:?} on {size}: {start}-{end}");
        }
    }
});
