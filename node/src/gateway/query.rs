//! Search query strings (`?q=...&producer=...&type=...&from=...&to=...&page=...`), parsed
//! here by hand: they are outside input, the parser is small and fuzzed (`fuzz/`), and a bad
//! value gets a French message rather than a framework's English one.

use super::GatewayError;
use crate::clock::parse_date;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Longest query string accepted, in bytes.
pub const MAX_QUERY: usize = 4096;
/// Longest search text, in characters, and most words in it.
pub const MAX_TEXT: usize = 500;
pub const MAX_WORDS: usize = 20;
/// Results per page, and the last page that can be asked for.
pub const PAGE_SIZE: usize = 20;
pub const MAX_PAGE: usize = 10_000;

/// A parsed search. Empty strings mean "no filter".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// The search text as typed (shown back in the form).
    pub text: String,
    /// Its words, folded (see [`fold`]); a record matches when it contains all of them.
    pub words: Vec<String>,
    pub producer: String,
    pub record_type: String,
    /// YYYY-MM-DD, inclusive; a bare year YYYY means its first (from) or last (to) day.
    pub from: String,
    pub to: String,
    /// 1-based.
    pub page: usize,
}

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// Decodes one `application/x-www-form-urlencoded` component.
fn decode(raw: &str) -> Result<String, GatewayError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad("la requête contient des caractères qui ne sont pas de l'UTF-8"))
}

fn date(value: &str, field: &str, end_of_year: bool) -> Result<String, GatewayError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(String::new());
    }
    if v.len() == 4 && v.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(if end_of_year {
            format!("{v}-12-31")
        } else {
            format!("{v}-01-01")
        });
    }
    if parse_date(v).is_some() {
        return Ok(v.to_string());
    }
    Err(bad(format!(
        "{field} : la date « {v} » n'est pas valide ; écrivez-la AAAA-MM-JJ (par exemple 1998-01-31) ou AAAA"
    )))
}

impl SearchQuery {
    /// Parses the raw query string (without `?`). Unknown parameters are ignored; the first
    /// occurrence of a parameter wins.
    pub fn parse(raw: &str) -> Result<Self, GatewayError> {
        if raw.len() > MAX_QUERY {
            return Err(bad(format!(
                "la requête est trop longue (plus de {MAX_QUERY} octets)"
            )));
        }
        let mut seen: Vec<(&str, String)> = Vec::new();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = match k {
                "q" | "producer" | "type" | "from" | "to" | "page" => k,
                _ => continue,
            };
            if seen.iter().any(|(s, _)| *s == key) {
                continue;
            }
            seen.push((key, decode(v)?));
        }
        let get = |k: &str| {
            seen.iter()
                .find(|(s, _)| *s == k)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let text = get("q");
        if text.chars().count() > MAX_TEXT {
            return Err(bad(format!(
                "le texte recherché est trop long (plus de {MAX_TEXT} caractères)"
            )));
        }
        let words: Vec<String> = fold(&text).split_whitespace().map(str::to_string).collect();
        if words.len() > MAX_WORDS {
            return Err(bad(format!(
                "trop de mots dans la recherche (au plus {MAX_WORDS})"
            )));
        }
        let producer = get("producer");
        let record_type = get("type");
        if producer.chars().count() > MAX_TEXT || record_type.chars().count() > MAX_TEXT {
            return Err(bad("un filtre est trop long"));
        }
        let from = date(&get("from"), "Date de début", false)?;
        let to = date(&get("to"), "Date de fin", true)?;
        if !from.is_empty() && !to.is_empty() && from > to {
            return Err(bad("la date de début est après la date de fin"));
        }
        let page_text = get("page");
        let page = if page_text.is_empty() {
            1
        } else {
            match page_text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(bad(format!(
                        "le numéro de page doit être un nombre entre 1 et {MAX_PAGE}"
                    )));
                }
            }
        };
        Ok(SearchQuery {
            text,
            words,
            producer,
            record_type,
            from,
            to,
            page,
        })
    }

    /// The query string of this search at `page` (for pagination links), without `?`.
    pub fn to_query(&self, page: usize) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("q", &self.text),
            ("producer", &self.producer),
            ("type", &self.record_type),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.is_empty() {
                parts.push(format!("{k}={}", encode(v)));
            }
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        parts.join("&")
    }
}

/// Characters left as they are in a query component.
const QUERY_SAFE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

pub fn encode(v: &str) -> String {
    utf8_percent_encode(v, QUERY_SAFE).to_string()
}

/// Lower case without French diacritics, and every character that is not a letter or a digit
/// turned into a space: "Délibérations, 1998" and "deliberations 1998" search alike.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'â' | 'ä' | 'á' | 'ã' | 'å' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'î' | 'ï' | 'í' | 'ì' => out.push('i'),
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => out.push('o'),
            'ù' | 'û' | 'ü' | 'ú' => out.push('u'),
            'ÿ' | 'ý' => out.push('y'),
            'ç' => out.push('c'),
            'ñ' => out.push('n'),
            'œ' => out.push_str("oe"),
            'æ' => out.push_str("ae"),
            c if c.is_alphanumeric() => out.push(c),
            _ => out.push(' '),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        let q = SearchQuery::parse(
            "q=registre+des+d%C3%A9lib%C3%A9rations&producer=Secr%C3%A9tariat&type=&from=1998&to=1998-12-31&page=2&x=1",
        )
        .unwrap();
        assert_eq!(q.text, "registre des délibérations");
        assert_eq!(q.words, ["registre", "des", "deliberations"]);
        assert_eq!(q.producer, "Secrétariat");
        assert_eq!(q.from, "1998-01-01");
        assert_eq!(q.to, "1998-12-31");
        assert_eq!(q.page, 2);
        assert_eq!(SearchQuery::parse(&q.to_query(2)).unwrap(), q);
        assert_eq!(SearchQuery::parse("").unwrap().page, 1);
    }

    #[test]
    fn bad_values_are_refused_in_french() {
        for raw in [
            "page=0",
            "page=abc",
            "from=1998-02-30",
            "from=2000&to=1990",
            "q=%FF",
        ] {
            let e = SearchQuery::parse(raw).unwrap_err();
            assert!(matches!(e, GatewayError::BadRequest(_)), "{raw}: {e}");
        }
        assert!(SearchQuery::parse(&"q=a".repeat(2000)).is_err());
    }

    #[test]
    fn folding() {
        assert_eq!(
            fold("Délibérations, Œuvre-1998"),
            "deliberations  oeuvre 1998"
        );
    }
}
