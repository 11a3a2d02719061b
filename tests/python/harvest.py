#!/usr/bin/env python3
"""Harvests an Archipel gateway's OAI-PMH endpoint with Sickle, the client FranceArchives
uses, and checks what it gets against what the Rust test ingested.

    python3 harvest.py BASE_URL EXPECTATIONS.json

BASE_URL is the endpoint (http://127.0.0.1:PORT/oai). EXPECTATIONS.json (written by
tests/tests/oai.rs) holds:
  repo           the repository identifier (oai:<repo>:<record ID>)
  visible        {record ID: {"title": ..., "sets": [...], "open": bool}} (every record a
                 harvester may see)
  hidden_ids     record IDs that must never appear
  hidden_titles  titles that must never appear anywhere in a response
  today          YYYY-MM-DD (the node's day, UTC)
  page_size      records per page
Exits 0 after printing "harvest: N checks passed", 1 on the first failed check.
Installs nothing: .ci/run installs Sickle (python3 -m pip install sickle).
"""

import datetime
import json
import sys

try:
    from sickle import Sickle, oaiexceptions
    from sickle.iterator import OAIResponseIterator
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"harvest: Sickle is not installed ({e}); run: python3 -m pip install sickle",
          file=sys.stderr)
    sys.exit(2)

OAI_NS = "{http://www.openarchives.org/OAI/2.0/}"
CHECKS = 0


def check(cond, what):
    global CHECKS
    if not cond:
        print(f"harvest: FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    CHECKS += 1


def record_id(identifier, repo):
    prefix = f"oai:{repo}:"
    check(identifier.startswith(prefix), f"identifier {identifier!r} starts with {prefix!r}")
    return identifier[len(prefix):]


def error_code(sickle, **params):
    """The OAI-PMH error code of a request, read from the XML (HTTP status must be 200)."""
    resp = sickle.harvest(**params)
    check(resp.http_response.status_code == 200, f"{params}: HTTP 200 for OAI errors")
    err = resp.xml.find(f".//{OAI_NS}error")
    return None if err is None else err.get("code")


def expect_exception(exc, what, fn):
    try:
        result = fn()
        # Iterators raise on the first page, which they fetch when built.
        if hasattr(result, "__next__"):
            next(result)
    except exc:
        check(True, what)
        return
    except Exception as e:  # noqa: BLE001
        check(False, f"{what}: raised {type(e).__name__}: {e}")
    check(False, f"{what}: no {exc.__name__} raised")


def main():
    base, expectations = sys.argv[1], sys.argv[2]
    with open(expectations, encoding="utf-8") as f:
        exp = json.load(f)
    repo = exp["repo"]
    visible = exp["visible"]
    hidden_ids = set(exp["hidden_ids"])
    hidden_titles = exp["hidden_titles"]
    today = datetime.date.fromisoformat(exp["today"])
    page_size = exp["page_size"]

    # Like a production harvester, honour OAI-PMH flow control (503 with Retry-After): the
    # gateway's per-client rate limit answers /oai that way.
    polite = dict(max_retries=10, retry_status_codes=(503,), default_retry_after=1)
    sickle = Sickle(base, timeout=60, **polite)

    # Identify
    ident = sickle.Identify()
    check(ident.protocolVersion == "2.0", "protocolVersion 2.0")
    check(ident.deletedRecord == "persistent", "deletedRecord persistent")
    check(ident.granularity == "YYYY-MM-DD", "granularity YYYY-MM-DD")
    check(ident.baseURL == base, f"baseURL {ident.baseURL!r} == {base!r}")
    check(ident.earliestDatestamp <= exp["today"], "earliestDatestamp not in the future")

    # ListMetadataFormats
    formats = [f.metadataPrefix for f in sickle.ListMetadataFormats()]
    check(formats == ["oai_dc"], f"formats {formats}")
    some_id = next(iter(visible))
    formats = [f.metadataPrefix for f in sickle.ListMetadataFormats(identifier=f"oai:{repo}:{some_id}")]
    check(formats == ["oai_dc"], "formats of one record")

    # ListSets: the two families and every set of a visible record.
    specs = {s.setSpec: s.setName for s in sickle.ListSets()}
    check("producer" in specs and "type" in specs, f"top-level sets in {sorted(specs)}")
    for rid, r in visible.items():
        for s in r["sets"]:
            check(s in specs, f"set {s} of {rid} is listed")

    # ListRecords, page by page: raw XML of every page, and the number of pages.
    pages = 0
    raw = []
    for resp in Sickle(base, iterator=OAIResponseIterator, **polite).ListRecords(metadataPrefix="oai_dc"):
        pages += 1
        raw.append(resp.raw)
    want_pages = (len(visible) + page_size - 1) // page_size
    check(pages == want_pages, f"{pages} pages for {len(visible)} records of {page_size} a page")
    everything = "".join(raw)
    for t in hidden_titles:
        check(t not in everything, f"hidden title {t!r} never appears")
    for rid in hidden_ids:
        check(rid not in everything, f"hidden record {rid} never appears")

    # ListRecords, record by record (Sickle follows the resumption tokens).
    seen = {}
    for rec in sickle.ListRecords(metadataPrefix="oai_dc"):
        rid = record_id(rec.header.identifier, repo)
        check(rid not in seen, f"{rid} listed once")
        check(not rec.header.deleted, f"{rid} not deleted")
        seen[rid] = rec
    check(set(seen) == set(visible), f"harvested {sorted(set(seen) ^ set(visible))} differ")
    for rid, rec in seen.items():
        want = visible[rid]
        md = rec.metadata
        check(md.get("title") == [want["title"]], f"{rid} title {md.get('title')}")
        check(sorted(rec.header.setSpecs) == sorted(want["sets"]),
              f"{rid} sets {rec.header.setSpecs} != {want['sets']}")
        check(rec.header.datestamp == exp["today"], f"{rid} datestamp {rec.header.datestamp}")
        rights = " ".join(md.get("rights", []))
        if want["open"]:
            check("Communicable" in rights and "Non communicable" not in rights, f"{rid} rights {rights}")
        else:
            check("Non communicable" in rights, f"{rid} rights {rights}")
        check(rid in md.get("identifier", []), f"{rid} dc:identifier")
        check(md.get("publisher"), f"{rid} dc:publisher")

    # ListIdentifiers, and the same harvest over POST.
    ids = [record_id(h.identifier, repo) for h in sickle.ListIdentifiers(metadataPrefix="oai_dc")]
    check(sorted(ids) == sorted(visible), "ListIdentifiers lists the same records")
    posted = Sickle(base, http_method="POST", **polite)
    ids = [record_id(h.identifier, repo) for h in posted.ListIdentifiers(metadataPrefix="oai_dc")]
    check(sorted(ids) == sorted(visible), "ListIdentifiers over POST")

    # Incremental harvests, as FranceArchives runs them (from=YYYY-MM-DD).
    tomorrow = (today + datetime.timedelta(days=1)).isoformat()
    yesterday = (today - datetime.timedelta(days=1)).isoformat()
    ids = [record_id(r.header.identifier, repo) for r in sickle.ListRecords(metadataPrefix="oai_dc", **{"from": exp["today"]})]
    check(sorted(ids) == sorted(visible), "from=today gives everything ingested today")
    ids = [record_id(r.header.identifier, repo) for r in sickle.ListRecords(metadataPrefix="oai_dc", **{"from": yesterday, "until": exp["today"]})]
    check(sorted(ids) == sorted(visible), "from=yesterday&until=today")
    expect_exception(oaiexceptions.NoRecordsMatch, "from=tomorrow matches nothing",
                     lambda: sickle.ListRecords(metadataPrefix="oai_dc", **{"from": tomorrow}))
    expect_exception(oaiexceptions.NoRecordsMatch, "until=yesterday matches nothing",
                     lambda: sickle.ListIdentifiers(metadataPrefix="oai_dc", until=yesterday))

    # Sets: each set gives exactly its records; a family gives every record that has one.
    for spec in sorted(s for s in specs if ":" in s):
        want = sorted(rid for rid, r in visible.items() if spec in r["sets"])
        got = sorted(record_id(r.header.identifier, repo) for r in sickle.ListRecords(metadataPrefix="oai_dc", set=spec))
        check(got == want, f"set {spec}: {len(got)} records, want {len(want)}")
    family = sorted(rid for rid, r in visible.items() if any(s.startswith("producer:") for s in r["sets"]))
    got = sorted(record_id(h.identifier, repo) for h in sickle.ListIdentifiers(metadataPrefix="oai_dc", set="producer"))
    check(got == family, "set=producer holds every record with a producer")
    expect_exception(oaiexceptions.NoRecordsMatch, "an unknown set matches nothing",
                     lambda: sickle.ListRecords(metadataPrefix="oai_dc", set="producer:nobody"))

    # GetRecord
    for rid, want in visible.items():
        rec = sickle.GetRecord(identifier=f"oai:{repo}:{rid}", metadataPrefix="oai_dc")
        check(rec.metadata.get("title") == [want["title"]], f"GetRecord {rid}")
    for rid in hidden_ids:
        expect_exception(oaiexceptions.IdDoesNotExist, f"GetRecord of hidden {rid}",
                         lambda rid=rid: sickle.GetRecord(identifier=f"oai:{repo}:{rid}", metadataPrefix="oai_dc"))
        expect_exception(oaiexceptions.IdDoesNotExist, f"ListMetadataFormats of hidden {rid}",
                         lambda rid=rid: sickle.ListMetadataFormats(identifier=f"oai:{repo}:{rid}"))
    expect_exception(oaiexceptions.IdDoesNotExist, "GetRecord of another repository's identifier",
                     lambda: sickle.GetRecord(identifier=f"oai:elsewhere:{some_id}", metadataPrefix="oai_dc"))
    expect_exception(oaiexceptions.CannotDisseminateFormat, "GetRecord in marc21",
                     lambda: sickle.GetRecord(identifier=f"oai:{repo}:{some_id}", metadataPrefix="marc21"))
    expect_exception(oaiexceptions.CannotDisseminateFormat, "ListRecords in marc21",
                     lambda: sickle.ListRecords(metadataPrefix="marc21"))

    # Error codes, read from the XML.
    check(error_code(sickle, verb="Nope") == "badVerb", "badVerb")
    check(error_code(sickle) == "badVerb", "no verb: badVerb")
    check(error_code(sickle, verb="ListRecords") == "badArgument", "missing metadataPrefix")
    check(error_code(sickle, verb="ListRecords", metadataPrefix="oai_dc", **{"from": f"{exp['today']}T00:00:00Z"}) == "badArgument",
          "seconds granularity refused")
    check(error_code(sickle, verb="ListRecords", metadataPrefix="oai_dc", **{"from": "2024-13-01"}) == "badArgument",
          "impossible date refused")
    check(error_code(sickle, verb="Identify", extra="1") == "badArgument", "unknown argument")
    check(error_code(sickle, verb="ListRecords", resumptionToken="garbage") == "badResumptionToken",
          "garbage token")
    check(error_code(sickle, verb="ListSets", resumptionToken="x") == "badResumptionToken",
          "ListSets token")
    # A real token, used with the other list verb, and altered.
    first = sickle.harvest(verb="ListIdentifiers", metadataPrefix="oai_dc")
    token = first.xml.find(f".//{OAI_NS}resumptionToken")
    if len(visible) > page_size:
        check(token is not None and token.text, "a first page of a long list carries a token")
        check(token.get("cursor") == "0", "cursor of the first page")
        check(error_code(sickle, verb="ListRecords", resumptionToken=token.text) == "badResumptionToken",
              "a ListIdentifiers token refused by ListRecords")
        altered = token.text[:-2] + ("AA" if token.text[-2:] != "AA" else "BB")
        check(error_code(sickle, verb="ListIdentifiers", resumptionToken=altered) == "badResumptionToken",
              "altered token")
        check(error_code(sickle, verb="ListIdentifiers", resumptionToken=token.text, metadataPrefix="oai_dc") == "badArgument",
              "token is exclusive")
        check(error_code(sickle, verb="ListIdentifiers", resumptionToken=token.text) is None,
              "the token itself works")

    print(f"harvest: {CHECKS} checks passed ({len(visible)} records in {pages} pages)")


if __name__ == "__main__":
    main()
