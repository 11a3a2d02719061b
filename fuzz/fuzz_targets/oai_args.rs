//! Arbitrary bytes as an OAI-PMH query string (or form body), through
//! `archipel_node::gateway::oai::args::parse_request`, and as a resumption token through
//! `decode_token`: never panics. Besides:
//! - a token that decodes encodes back to the same string (one spelling per token), and
//! - a list request that parses survives a round trip through a token of its own.
#![no_main]

use archipel_node::gateway::oai::args::{OaiRequest, decode_token, encode_token, parse_request};
use libfuzzer_sys::fuzz_target;

/// A fixed token key: the fuzzer cannot forge tags, so seeds carry valid ones (see below).
const KEY: [u8; 32] = [42; 32];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = decode_token(text, &KEY) {
        assert_eq!(encode_token(&q, &KEY), text, "a token has one spelling");
    }
    if let Ok(OaiRequest::List(q)) = parse_request(text, &KEY) {
        let token = encode_token(&q, &KEY);
        assert_eq!(
            decode_token(&token, &KEY).as_ref(),
            Ok(&q),
            "token round trip"
        );
        let again = format!(
            "verb={}&resumptionToken={token}",
            if q.records {
                "ListRecords"
            } else {
                "ListIdentifiers"
            }
        );
        assert_eq!(parse_request(&again, &KEY), Ok(OaiRequest::List(q)));
    }
});
