//! BagIt (RFC 8493) text decoders: tag files of `Label: value` lines (`bagit.txt`,
//! `bag-info.txt`) and manifests of `DIGEST PATH` lines. Pure functions over text that comes
//! from outside (a producer's bag), fuzzed in `fuzz/fuzz_targets/bagit_parse.rs`; reading
//! files and checking digests is the CLI's job (`cli/src/bag.rs`).

use std::collections::BTreeSet;

/// Why a tag file or manifest does not parse; `what` names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BagitError {
    #[error("{what} line {line}: a continuation line with no label before it")]
    Continuation { what: String, line: usize },
    #[error("{what} line {line}: expected \"Label: value\"")]
    NotLabel { what: String, line: usize },
    #[error("{what} line {line}: expected \"DIGEST PATH\"")]
    NotManifestLine { what: String, line: usize },
    #[error("{what} line {line}: {path:?} is not a relative path inside the bag")]
    BadPath {
        what: String,
        line: usize,
        path: String,
    },
    #[error("{what}: {path:?} is listed twice")]
    Twice { what: String, path: String },
}

/// RFC 8493 section 2.1.3: CR, LF and % are percent-encoded in manifest paths.
pub fn decode_path(p: &str) -> String {
    p.replace("%0A", "\n")
        .replace("%0a", "\n")
        .replace("%0D", "\r")
        .replace("%0d", "\r")
        .replace("%25", "%")
}

/// The reverse of [`decode_path`].
pub fn encode_path(p: &str) -> String {
    p.replace('%', "%25")
        .replace('\n', "%0A")
        .replace('\r', "%0D")
}

/// `Label: value` lines, a value continued on lines that start with blanks.
pub fn parse_info(text: &str, what: &str) -> Result<Vec<(String, String)>, BagitError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match out.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => {
                    return Err(BagitError::Continuation {
                        what: what.to_string(),
                        line: i + 1,
                    });
                }
            }
            continue;
        }
        let (label, value) = line.split_once(':').ok_or_else(|| BagitError::NotLabel {
            what: what.to_string(),
            line: i + 1,
        })?;
        out.push((label.trim().to_string(), value.trim().to_string()));
    }
    Ok(out)
}

/// `digest path` lines of a manifest, as (bag path, lower-case digest). Paths are decoded,
/// `./` is dropped, and anything that could leave the bag (absolute, `..`, `.`, empty
/// components, backslashes) is refused, as is a path listed twice.
pub fn parse_manifest(text: &str, what: &str) -> Result<Vec<(String, String)>, BagitError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (digest, path) =
            line.split_once([' ', '\t'])
                .ok_or_else(|| BagitError::NotManifestLine {
                    what: what.to_string(),
                    line: i + 1,
                })?;
        let path = decode_path(path.trim_start_matches([' ', '\t']));
        let path = path.strip_prefix("./").unwrap_or(&path).to_string();
        if path.starts_with('/')
            || path
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty())
            || path.contains('\\')
        {
            return Err(BagitError::BadPath {
                what: what.to_string(),
                line: i + 1,
                path,
            });
        }
        if !seen.insert(path.clone()) {
            return Err(BagitError::Twice {
                what: what.to_string(),
                path,
            });
        }
        out.push((path, digest.to_ascii_lowercase()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_continuation_and_errors() {
        let v = parse_info("A: 1\n  more\nB:2\n", "x").expect("parses");
        assert_eq!(
            v,
            vec![("A".into(), "1 more".into()), ("B".into(), "2".into())]
        );
        assert!(matches!(
            parse_info(" lead\n", "x"),
            Err(BagitError::Continuation { .. })
        ));
        assert!(matches!(
            parse_info("nolabel\n", "x"),
            Err(BagitError::NotLabel { .. })
        ));
    }

    #[test]
    fn manifest_paths() {
        let v = parse_manifest("AB  ./data/a%25b\n", "m").expect("parses");
        assert_eq!(v, vec![("data/a%b".into(), "ab".into())]);
        for bad in ["x ../etc", "x /abs", "x data//a", "x data\\a"] {
            assert!(
                matches!(parse_manifest(bad, "m"), Err(BagitError::BadPath { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_manifest("a data/x\nb data/x\n", "m"),
            Err(BagitError::Twice { .. })
        ));
        assert_eq!(encode_path(&decode_path("a%0Ab%25")), "a%0Ab%25");
    }
}
