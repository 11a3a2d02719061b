//! HTML building blocks: escaping, the page layout and French formatting of dates and sizes.
//!
//! Pages are built with `format!` and [`escape`]: every value that comes from a record, a
//! query or the configuration goes through `escape` (text and attribute values alike), and
//! nothing else is interpolated. No JavaScript anywhere.
//!
//! Accessibility (RGAA basics): `lang="fr"`, a skip link to the main content, one `h1` per
//! page and ordered headings, a label for every form field, visible keyboard focus, text
//! contrast above 7:1, tables with captions and header cells. The pages have no images (an
//! image added later needs an `alt`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::Date;

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

/// "15 mars 2049" ("1er" for the first of the month, as French writes it).
pub fn date_fr(d: Date) -> String {
    let day = if d.day() == 1 {
        "1er".to_string()
    } else {
        d.day().to_string()
    };
    format!(
        "{day} {} {}",
        MONTHS[usize::from(u8::from(d.month())) - 1],
        d.year()
    )
}

/// A YYYY-MM-DD string in French, or as written if it is not a date.
pub fn date_text_fr(s: &str) -> String {
    crate::clock::parse_date(s).map_or_else(|| s.to_string(), date_fr)
}

/// A record's dates in French: "1998", "du 1er janvier 1998 au 31 décembre 1998", or
/// "sans date".
pub fn dates_fr(from: &str, to: &str) -> String {
    match (from.is_empty(), to.is_empty()) {
        (true, true) => "sans date".to_string(),
        _ if from == to || to.is_empty() => format!("le {}", date_text_fr(from)),
        (true, false) => format!("le {}", date_text_fr(to)),
        _ => format!("du {} au {}", date_text_fr(from), date_text_fr(to)),
    }
}

/// "812 octets", "1,5 Ko", "12,3 Mo" (French decimal comma, binary multiples).
pub fn size_fr(n: u64) -> String {
    const UNITS: [&str; 4] = ["Ko", "Mo", "Go", "To"];
    if n < 1024 {
        return format!("{n} octet{}", if n > 1 { "s" } else { "" });
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit]).replace('.', ",")
}

/// A whole page. `title` and `territory` are escaped here; `main` is HTML already built
/// with [`escape`]; `head` holds extra `<meta>` elements (built with [`escape`]).
pub fn page(territory: &str, title: &str, head: &str, main: &str) -> String {
    let territory = escape(territory);
    let title = escape(title);
    format!(
        r##"<!DOCTYPE html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — Archives de {territory}</title>
<link rel="stylesheet" href="/style.css">
{head}</head>
<body>
<a class="evitement" href="#contenu">Aller au contenu</a>
<header>
<p class="site"><a href="/">Archives publiques — {territory}</a></p>
<nav aria-label="Navigation principale">
<ul>
<li><a href="/">Rechercher</a></li>
<li><a href="/communicabilite">Communicabilité des archives</a></li>
<li><a href="/openapi.json">API pour les scripts (JSON)</a></li>
</ul>
</nav>
</header>
<main id="contenu" tabindex="-1">
{main}
</main>
<footer>
<p>Archives conservées et publiées par {territory} avec Archipel. Aucune adresse IP n'est enregistrée avec ce que vous consultez.</p>
</footer>
</body>
</html>
"##
    )
}

/// An HTML response with the gateway's caching rule for pages: revalidate each time
/// (metadata and communicability can change).
pub fn response(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// The stylesheet: dark text on white (contrast above 15:1), links in blue (#000091, about
/// 14:1) and underlined, a thick focus outline, and a skip link that shows when focused.
pub const STYLE: &str = r#"
html { font-family: system-ui, sans-serif; font-size: 100%; line-height: 1.5; color: #161616; background: #fff; }
body { margin: 0 auto; max-width: 60rem; padding: 0 1rem; }
a { color: #000091; text-decoration: underline; }
a:hover { text-decoration-thickness: 2px; }
:focus-visible { outline: 3px solid #000091; outline-offset: 2px; }
.evitement { position: absolute; left: -10000px; }
.evitement:focus { position: static; display: inline-block; padding: .5rem; background: #fff; }
header { border-bottom: 1px solid #767676; margin-bottom: 1rem; }
header .site { font-size: 1.25rem; font-weight: bold; margin: .75rem 0 .25rem; }
nav ul { list-style: none; padding: 0; margin: 0 0 .75rem; display: flex; flex-wrap: wrap; gap: 1rem; }
footer { border-top: 1px solid #767676; margin-top: 2rem; font-size: .9rem; }
form.recherche { display: grid; gap: .75rem; grid-template-columns: repeat(auto-fit, minmax(14rem, 1fr)); align-items: end; }
label { display: block; font-weight: bold; }
.aide { display: block; font-weight: normal; font-size: .875rem; color: #3a3a3a; }
input, select, button { font: inherit; padding: .375rem .5rem; border: 1px solid #3a3a3a; border-radius: 2px; width: 100%; box-sizing: border-box; color: #161616; background: #fff; }
button { background: #000091; color: #fff; border-color: #000091; cursor: pointer; }
ol.resultats { padding-left: 1.25rem; }
ol.resultats li { margin-bottom: 1rem; }
ol.resultats h3 { margin: 0; font-size: 1.1rem; }
dl.notice { display: grid; grid-template-columns: minmax(8rem, 14rem) 1fr; gap: .25rem 1rem; }
dl.notice dt { font-weight: bold; }
dl.notice dd { margin: 0; }
table { border-collapse: collapse; width: 100%; }
caption { text-align: left; font-weight: bold; padding: .25rem 0; }
th, td { border: 1px solid #767676; padding: .375rem; text-align: left; vertical-align: top; }
code, pre { font-family: ui-monospace, monospace; overflow-wrap: anywhere; word-break: break-all; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: .5rem; border: 1px solid #767676; }
.statut { padding: .5rem; border-left: 4px solid #000091; background: #f5f5fe; }
nav.pages ul { list-style: none; display: flex; gap: 1rem; padding: 0; }
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_date;

    #[test]
    fn escapes_every_special_character() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(escape("Délibérations"), "Délibérations");
        let p = page("<b>", "\"t\"", "", "");
        assert!(p.contains("&lt;b&gt;") && !p.contains("<b>"));
        assert!(p.contains("&quot;t&quot;"));
        assert!(p.contains(r#"<html lang="fr">"#));
    }

    #[test]
    fn french_formats() {
        assert_eq!(date_fr(parse_date("2049-03-15").unwrap()), "15 mars 2049");
        assert_eq!(
            date_fr(parse_date("1998-01-01").unwrap()),
            "1er janvier 1998"
        );
        assert_eq!(size_fr(1), "1 octet");
        assert_eq!(size_fr(812), "812 octets");
        assert_eq!(size_fr(1536), "1,5 Ko");
        assert_eq!(size_fr(3 << 20), "3,0 Mo");
        assert_eq!(dates_fr("", ""), "sans date");
        assert_eq!(
            dates_fr("1998-01-01", "1998-12-31"),
            "du 1er janvier 1998 au 31 décembre 1998"
        );
    }
}
