//! SEDA 2.2 `ArchiveTransfer` messages (`archipel_proto::seda::parse_transfer`, what
//! `archipel ingest --seda` maps to records, after schema validation) on arbitrary text:
//! - the parser never panics (nesting and size are bounded, DOCTYPEs refused);
//! - what it accepts is consistent: at least one unit, every unit titled and referencing
//!   only objects of the message, every object referenced, digests of the right length in
//!   lower-case hex, flat file names, dates as YYYY-MM-DD, communicability one of the L213-2
//!   codes;
//! - the export writer round-trips it: writing the mapped units back as an ArchiveTransfer
//!   and parsing that gives the same titles, dates, rules and objects.
#![no_main]

use archipel_proto::seda::{
    DigestAlg, Header, ObjectOut, UnitOut, access_rule_of_category, parse_transfer,
    write_reply, write_transfer,
};
use libfuzzer_sys::fuzz_target;

fn is_date(d: &str) -> bool {
    d.is_empty() || (d.len() == 10 && d.as_bytes()[4] == b'-' && d.as_bytes()[7] == b'-')
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(t) = parse_transfer(text) else {
        return;
    };
    assert!(!t.units.is_empty());
    for o in &t.objects {
        let want = match o.algorithm {
            DigestAlg::Sha256 => 64,
            DigestAlg::Sha512 => 128,
        };
        assert_eq!(o.digest.len(), want);
        assert!(o.digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
    for u in &t.units {
        assert!(!u.title.trim().is_empty());
        assert!(!u.objects.is_empty());
        for id in &u.objects {
            let o = t.object(id).expect("a unit references an object of the message");
            assert!(!o.filename.is_empty() && !o.filename.contains('/'));
        }
        for d in [&u.date, &u.date_from, &u.date_to] {
            assert!(is_date(d), "date {d:?}");
        }
        if let Some(c) = &u.communicability {
            assert!(access_rule_of_category(c).is_some(), "category {c:?}");
        }
    }
    for o in &t.objects {
        assert!(
            t.units.iter().any(|u| u.objects.contains(&o.id)),
            "object {} is not archived",
            o.id
        );
    }

    // Round trip through the export writer, when the text survives XML 1.0 unchanged.
    let clean = |s: &str| !s.chars().any(|c| (c as u32) < 0x20);
    if !t.units.iter().all(|u| clean(&u.title)) {
        return;
    }
    let objects: Vec<ObjectOut> = t
        .objects
        .iter()
        .enumerate()
        .map(|(i, o)| ObjectOut {
            id: format!("O{i}"),
            uri: "content/x".into(),
            filename: o.filename.clone(),
            sha512: "0".repeat(128),
            size: 1,
            media_type: String::new(),
        })
        .collect();
    let index = |id: &str| t.objects.iter().position(|o| o.id == id).unwrap_or(0);
    let units: Vec<UnitOut> = t
        .units
        .iter()
        .enumerate()
        .map(|(i, u)| UnitOut {
            id: format!("U{i}"),
            title: u.title.clone(),
            date: u.date.clone(),
            date_from: u.date_from.clone(),
            date_to: u.date_to.clone(),
            dua_years: u.appraisal.as_ref().map(|a| a.dua_years),
            final_disposition: u
                .appraisal
                .as_ref()
                .map(|a| a.final_disposition.clone())
                .unwrap_or_default(),
            communicability: u.communicability.clone().unwrap_or_default(),
            objects: u.objects.iter().map(|o| format!("O{}", index(o))).collect(),
            ..Default::default()
        })
        .collect();
    let header = Header {
        message_identifier: t.message_identifier.clone(),
        date: t.date.clone(),
        archival_agency: t.archival_agency.clone(),
        transferring_agency: t.transferring_agency.clone(),
        comment: String::new(),
    };
    // Units sharing an object are written once per object here; skip those messages.
    let mut all: Vec<&String> = t.units.iter().flat_map(|u| u.objects.iter()).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    if all.len() != n {
        return;
    }
    let again = parse_transfer(&write_transfer(&header, &objects, &units))
        .expect("an exported transfer parses");
    assert_eq!(again.units.len(), t.units.len());
    for (a, b) in t.units.iter().zip(&again.units) {
        assert_eq!(a.title, b.title);
        assert_eq!((&a.date, &a.date_from, &a.date_to), (&b.date, &b.date_from, &b.date_to));
        assert_eq!(a.appraisal, b.appraisal);
        assert_eq!(a.communicability, b.communicability);
        assert_eq!(a.objects.len(), b.objects.len());
    }
    let _ = write_reply(&header, &t.message_identifier, true, &[]);
});
