//! The HTML pages, in French: home and search (`/`), a record (`/records/{id}`), what
//! communicability means (`/communicabilite`), and the error pages.

use super::access::Access;
use super::html::{self, escape};
use super::index::Results;
use super::query::{PAGE_SIZE, SearchQuery};
use super::{Shared, error_headers, file_path, load_visible, log_error, public_message};
use crate::record::{Communicability, communicability};
use archipel_proto::manifest::{Manifest, Metadata};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn routes() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/", get(home))
        .route("/records/{id}", get(record))
        .route("/communicabilite", get(communicabilite))
        .route("/style.css", get(style))
}

/// An error as an HTML page, with its status from `Error::http_status`.
pub fn error_page(gw: &Shared, e: &crate::Error) -> Response {
    log_error(e);
    let status = e.http_status();
    let title = match status {
        StatusCode::NOT_FOUND => "Document introuvable",
        StatusCode::GONE => "Document éliminé",
        StatusCode::FORBIDDEN => "Document non communicable",
        StatusCode::BAD_REQUEST => "Requête invalide",
        StatusCode::SERVICE_UNAVAILABLE => "Service momentanément indisponible",
        _ => "Erreur",
    };
    let main = format!(
        "<h1>{}</h1>\n<p class=\"statut\">{}</p>\n<p><a href=\"/\">Retour à la recherche</a> · <a href=\"/communicabilite\">Quand un document devient-il communicable ?</a></p>",
        escape(title),
        escape(&public_message(e))
    );
    let mut r = html::response(
        status,
        html::page(&gw.archive.identity.territory, title, "", &main),
    );
    error_headers(e, &mut r);
    r
}

pub async fn not_found(State(gw): State<Shared>) -> Response {
    error_page(&gw, &super::GatewayError::NotFound.into())
}

async fn style() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        html::STYLE,
    )
        .into_response()
}

/// One sentence on a record's communicability today.
pub fn status_fr(meta: &Metadata, access: Access) -> String {
    match (access, communicability(meta, crate::clock::today())) {
        (Access::Open, Communicability::Open { since: Some(d) }) => format!(
            "Communicable depuis le {} (délai de l'article L213-2 du Code du patrimoine écoulé).",
            html::date_fr(d)
        ),
        (Access::Open, _) => {
            "Communicable immédiatement (article L213-1 du Code du patrimoine).".to_string()
        }
        (Access::MetadataOnly { opens: Some(d) }, _) => format!(
            "Non communicable avant le {} : seule sa description est publiée.",
            html::date_fr(d)
        ),
        (_, _) => "Non communicable : seule sa description est publiée.".to_string(),
    }
}

fn options(all: &str, values: &[String], selected: &str) -> String {
    let mut out = format!("<option value=\"\">{}</option>", escape(all));
    let mut found = false;
    for v in values {
        let sel = if v == selected {
            found = true;
            " selected"
        } else {
            ""
        };
        out.push_str(&format!(
            "<option value=\"{0}\"{sel}>{0}</option>",
            escape(v)
        ));
    }
    if !found && !selected.is_empty() {
        out.push_str(&format!(
            "<option value=\"{0}\" selected>{0}</option>",
            escape(selected)
        ));
    }
    out
}

fn search_form(q: &SearchQuery, producers: &[String], types: &[String]) -> String {
    format!(
        r#"<form class="recherche" method="get" action="/" role="search" aria-label="Rechercher un document">
<div><label for="q">Mots recherchés <span class="aide" id="q-aide">dans le titre, la description et les mots-clés</span></label>
<input type="search" id="q" name="q" value="{q}" aria-describedby="q-aide"></div>
<div><label for="producer">Producteur</label>
<select id="producer" name="producer">{producers}</select></div>
<div><label for="type">Type de document</label>
<select id="type" name="type">{types}</select></div>
<div><label for="from">Date de début <span class="aide" id="from-aide">AAAA ou AAAA-MM-JJ</span></label>
<input type="text" id="from" name="from" value="{from}" inputmode="numeric" aria-describedby="from-aide"></div>
<div><label for="to">Date de fin <span class="aide" id="to-aide">AAAA ou AAAA-MM-JJ</span></label>
<input type="text" id="to" name="to" value="{to}" inputmode="numeric" aria-describedby="to-aide"></div>
<div><button type="submit">Rechercher</button></div>
</form>"#,
        q = escape(&q.text),
        producers = options("Tous les producteurs", producers, &q.producer),
        types = options("Tous les types", types, &q.record_type),
        from = escape(&q.from),
        to = escape(&q.to),
    )
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{}…", cut.trim_end())
}

fn results_html(q: &SearchQuery, r: &Results<'_>) -> String {
    let mut out = format!(
        "<h2 id=\"resultats\">{} document{} trouvé{}</h2>\n",
        r.total,
        if r.total > 1 { "s" } else { "" },
        if r.total > 1 { "s" } else { "" }
    );
    if r.entries.is_empty() {
        out.push_str("<p>Aucun document consultable ne correspond à cette recherche.</p>\n");
        return out;
    }
    let start = (r.page - 1) * PAGE_SIZE + 1;
    out.push_str(&format!(
        "<ol class=\"resultats\" start=\"{start}\" aria-labelledby=\"resultats\">\n"
    ));
    for (e, access) in &r.entries {
        let md = &e.metadata;
        let mut facts = Vec::new();
        if !md.producer.is_empty() {
            facts.push(escape(&md.producer));
        }
        facts.push(escape(&html::dates_fr(&md.date_from, &md.date_to)));
        if !md.record_type.is_empty() {
            facts.push(escape(&md.record_type));
        }
        out.push_str(&format!(
            "<li><h3><a href=\"/records/{id}\">{title}</a></h3>\n<p>{facts}</p>\n{desc}<p>{status}</p></li>\n",
            id = escape(&e.id),
            title = escape(&md.title),
            facts = facts.join(" · "),
            desc = if md.description.is_empty() {
                String::new()
            } else {
                format!("<p>{}</p>\n", escape(&truncate(&md.description, 300)))
            },
            status = escape(&status_fr(md, *access)),
        ));
    }
    out.push_str("</ol>\n");
    if r.pages > 1 {
        out.push_str("<nav class=\"pages\" aria-label=\"Pages de résultats\"><ul>");
        if r.page > 1 {
            out.push_str(&format!(
                "<li><a href=\"/?{}#resultats\" rel=\"prev\">Page précédente</a></li>",
                escape(&q.to_query(r.page - 1))
            ));
        }
        out.push_str(&format!(
            "<li aria-current=\"page\">Page {} sur {}</li>",
            r.page, r.pages
        ));
        if r.page < r.pages {
            out.push_str(&format!(
                "<li><a href=\"/?{}#resultats\" rel=\"next\">Page suivante</a></li>",
                escape(&q.to_query(r.page + 1))
            ));
        }
        out.push_str("</ul></nav>\n");
    }
    out
}

async fn home(State(gw): State<Shared>, RawQuery(raw): RawQuery) -> Response {
    let territory = gw.archive.identity.territory.clone();
    let parsed = SearchQuery::parse(raw.as_deref().unwrap_or(""));
    let snapshot = match gw.index.snapshot(&gw.archive).await {
        Ok(s) => s,
        Err(e) => return error_page(&gw, &e),
    };
    let today = crate::clock::today();
    let (producers, types) = snapshot.facets(today);
    let intro = format!(
        "<h1>Rechercher dans les archives de {}</h1>\n<p>Les documents publiés ici sont ceux que la loi permet de communiquer à tous (<a href=\"/communicabilite\">en savoir plus sur la communicabilité</a>). Chaque fichier peut être vérifié : il est exactement celui qui a été archivé.</p>\n",
        escape(&territory)
    );
    let (status, main) = match parsed {
        Ok(q) => {
            let r = snapshot.search(&q, today, PAGE_SIZE);
            (
                StatusCode::OK,
                format!(
                    "{intro}{}\n{}",
                    search_form(&q, &producers, &types),
                    results_html(&q, &r)
                ),
            )
        }
        Err(e) => {
            let e = crate::Error::from(e);
            (
                e.http_status(),
                format!(
                    "{intro}<p class=\"statut\" role=\"alert\">{}</p>\n{}",
                    escape(&public_message(&e)),
                    search_form(&SearchQuery::default(), &producers, &types)
                ),
            )
        }
    };
    html::response(status, html::page(&territory, "Recherche", "", &main))
}

/// Dublin Core elements of a record: (label in French, DC element, value).
pub fn dublin_core(gw: &Shared, m: &Manifest) -> Vec<(&'static str, &'static str, String)> {
    let md = &m.metadata;
    let mut formats: Vec<&str> = m.files.iter().map(|f| f.media_type.as_str()).collect();
    formats.sort_unstable();
    formats.dedup();
    let date = match (md.date_from.as_str(), md.date_to.as_str()) {
        ("", "") => String::new(),
        (a, b) if a == b || b.is_empty() => a.to_string(),
        ("", b) => b.to_string(),
        (a, b) => format!("{a}/{b}"),
    };
    vec![
        ("Titre", "title", md.title.clone()),
        ("Producteur", "creator", md.producer.clone()),
        ("Mots-clés", "subject", md.keywords.join(", ")),
        ("Description", "description", md.description.clone()),
        ("Éditeur", "publisher", super::publisher_of(&gw.archive, m)),
        ("Date", "date", date),
        ("Type", "type", md.record_type.clone()),
        ("Format", "format", formats.join(", ")),
        ("Identifiant", "identifier", m.record_id.clone()),
        ("Langue", "language", md.language.clone()),
        ("Droits", "rights", md.licence.clone()),
    ]
}

async fn record(State(gw): State<Shared>, Path(id): Path<String>) -> Response {
    let (m, access) = match load_visible(&gw, &id).await {
        Ok(v) => v,
        Err(e) => return error_page(&gw, &e),
    };
    let md = &m.metadata;
    let id = &m.record_id;
    let dc = dublin_core(&gw, &m);
    let mut head =
        String::from("<link rel=\"schema.DC\" href=\"http://purl.org/dc/elements/1.1/\">\n");
    let mut notice = String::from("<dl class=\"notice\">\n");
    for (label, element, value) in &dc {
        if value.is_empty() {
            continue;
        }
        head.push_str(&format!(
            "<meta name=\"DC.{element}\" content=\"{}\">\n",
            escape(value)
        ));
        let shown = match *element {
            "date" => html::dates_fr(&md.date_from, &md.date_to),
            _ => value.clone(),
        };
        notice.push_str(&format!("<dt>{label}</dt><dd>{}</dd>\n", escape(&shown)));
    }
    notice.push_str(&format!(
        "<dt>Entrée aux archives</dt><dd>{}</dd>\n</dl>\n",
        escape(&crate::clock::rfc3339(m.ingested_at))
    ));
    let files = match access {
        Access::Open => {
            let mut t = String::from(
                "<table>\n<caption>Fichiers de ce document</caption>\n<thead><tr><th scope=\"col\">Fichier</th><th scope=\"col\">Taille</th><th scope=\"col\">Format</th><th scope=\"col\">Empreintes du contenu</th></tr></thead>\n<tbody>\n",
            );
            for f in &m.files {
                t.push_str(&format!(
                    "<tr><td><a href=\"{href}\">Télécharger {name}</a></td><td>{size}</td><td>{mt}</td><td>BLAKE3 : <code>{b3}</code><br>SHA-512 : <code>{sha}</code></td></tr>\n",
                    href = escape(&file_path(id, &f.name)),
                    name = escape(&f.name),
                    size = escape(&html::size_fr(f.size)),
                    mt = escape(&f.media_type),
                    b3 = hex::encode(f.blake3),
                    sha = hex::encode(f.sha512),
                ));
            }
            t.push_str("</tbody>\n</table>\n");
            t
        }
        Access::MetadataOnly { .. } | Access::Hidden => {
            let mut t = String::from(
                "<p>Le contenu de ce document n'est pas consultable : ses fichiers ne sont ni téléchargeables ni décrits par leurs empreintes.</p>\n<ul>\n",
            );
            for f in &m.files {
                t.push_str(&format!(
                    "<li>{} ({}, {})</li>\n",
                    escape(&f.name),
                    escape(&html::size_fr(f.size)),
                    escape(&f.media_type)
                ));
            }
            t.push_str("</ul>\n");
            t
        }
    };
    let vkey = gw.archive.log.vkey();
    let main = format!(
        r#"<h1>{title}</h1>
<p class="statut">{status}</p>
{permalink}<section aria-labelledby="description">
<h2 id="description">Description (Dublin Core)</h2>
{notice}</section>
<section aria-labelledby="fichiers">
<h2 id="fichiers">Fichiers</h2>
{files}</section>
<section aria-labelledby="verifier">
<h2 id="verifier">Vérifier</h2>
<p>À son entrée aux archives, chaque document est inscrit dans un journal public qui ne peut que s'allonger (arbre de Merkle, RFC 6962). L'état du journal est signé par {territory} et cosigné par d'autres territoires, qui en gardent une copie.</p>
<ul>
<li><a href="/records/{id}/certificate">Télécharger le certificat de dépôt</a> (fichier <code>{id}.tlog-proof</code>, format C2SP tlog-proof) : il prouve que ce document est inscrit au journal, et à quelle date.</li>
<li><a href="/checkpoint">Dernier point de contrôle cosigné du journal</a></li>
</ul>
<h3>Vérifier hors ligne, avec la ligne de commande Archipel</h3>
<pre><code>archipel log check-proof {id}.tlog-proof --key {vkey}</code></pre>
<p>Clé de vérification du journal : <code>{vkey}</code>. Comparez-la avec celle que publie {territory} par d'autres voies.</p>
<p>Pour vérifier un fichier téléchargé, calculez son empreinte et comparez-la à celle affichée ci-dessus : <code>b3sum FICHIER</code> (BLAKE3) ou <code>sha512sum FICHIER</code> (SHA-512).</p>
</section>
<p><a href="/api/records/{id}">Ce document en JSON</a></p>
"#,
        title = escape(&md.title),
        status = escape(&status_fr(md, access)),
        permalink = super::ark::permalink_html(&gw.archive.config, id),
        territory = escape(&gw.archive.identity.territory),
        id = escape(id),
        vkey = escape(&vkey),
    );
    html::response(
        StatusCode::OK,
        html::page(&gw.archive.identity.territory, &md.title, &head, &main),
    )
}

async fn communicabilite(State(gw): State<Shared>) -> Response {
    let main = r#"<h1>Quand un document d'archives devient-il communicable ?</h1>
<p>Les archives publiques appartiennent à tous, mais certaines contiennent des informations qui doivent rester protégées pendant un temps : la vie privée, le secret médical, la sécurité des personnes. Le Code du patrimoine (articles L213-1 et L213-2) fixe quand chaque document peut être montré à toute personne qui le demande : c'est sa <strong>communicabilité</strong>.</p>
<h2>La règle : tout est communicable, tout de suite</h2>
<p>Les délibérations, les décisions, les budgets et la plupart des documents administratifs sont communicables dès leur création. Ils sont publiés ici en entier.</p>
<h2>Les exceptions : des délais</h2>
<table>
<caption>Délais de communicabilité (article L213-2 du Code du patrimoine)</caption>
<thead><tr><th scope="col">Ce que contient le document</th><th scope="col">Communicable après</th><th scope="col">À compter de</th></tr></thead>
<tbody>
<tr><td>Délibérations du gouvernement, secret des affaires, enquêtes fiscales et douanières</td><td>25 ans</td><td>la date du document le plus récent du dossier</td></tr>
<tr><td>Secret médical</td><td>25 ans après le décès, ou 120 ans après la naissance si la date de décès n'est pas connue</td><td>le décès ou la naissance de la personne</td></tr>
<tr><td>Défense nationale, sûreté de l'État, sécurité publique, vie privée, appréciation portée sur une personne nommée</td><td>50 ans</td><td>la date du document le plus récent du dossier</td></tr>
<tr><td>Enquêtes de police judiciaire, affaires portées devant les juridictions, minutes des notaires, registres de naissance et de mariage, enquêtes statistiques sur la vie privée</td><td>75 ans, ou 25 ans après le décès de la personne si c'est plus court</td><td>la date du document ; pour les registres, leur clôture</td></tr>
<tr><td>Les mêmes documents lorsqu'ils concernent des mineurs, l'intimité de la vie sexuelle, ou la sécurité de personnes nommées</td><td>100 ans, ou 25 ans après le décès de la personne si c'est plus court</td><td>la date du document</td></tr>
<tr><td>Informations permettant de concevoir des armes de destruction massive</td><td>jamais</td><td>—</td></tr>
</tbody>
</table>
<h2>Ce que vous voyez ici</h2>
<ul>
<li>Un document communicable est publié en entier : sa description, ses fichiers et leurs empreintes.</li>
<li>Un document qui ne l'est pas encore n'est jamais publié. Si son producteur a jugé que sa description pouvait l'être (un titre peut nommer une personne, ce n'est donc pas automatique), vous voyez cette description et la date à laquelle le document deviendra communicable.</li>
<li>La communicabilité est calculée à chaque consultation : un document devient consultable ici le jour même où son délai s'achève.</li>
<li>Quand une information manque pour calculer le délai, le document est traité comme non communicable.</li>
</ul>
<p>Pour consulter un document avant la fin de son délai (dérogation), adressez-vous au service d'archives qui le conserve.</p>
"#;
    html::response(
        StatusCode::OK,
        html::page(
            &gw.archive.identity.territory,
            "Communicabilité des archives",
            "",
            main,
        ),
    )
}
