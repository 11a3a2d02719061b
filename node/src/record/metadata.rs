//! Validation of a record's metadata, field by field.

use super::ValidationError;
use super::communicability::Category;
use crate::clock::{format_date, parse_date, today};
use archipel_proto::manifest::Metadata;
use archipel_proto::v1::RecordMetadata;

pub const DEFAULT_LICENCE: &str = "Licence Ouverte 2.0";
/// Upper bound of the encoded metadata; larger metadata belongs in a file of the record.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

fn text(
    field: &'static str,
    v: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<String, ValidationError> {
    let v = v.trim();
    if v.chars().count() > max_chars {
        return Err(ValidationError::new(
            field,
            format!("at most {max_chars} characters"),
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t')))
    {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

fn date(field: &'static str, v: &str) -> Result<Option<time::Date>, ValidationError> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let d = parse_date(v).ok_or_else(|| {
        ValidationError::new(
            field,
            format!("{v:?} is not a real calendar date written YYYY-MM-DD"),
        )
    })?;
    if d > today() {
        return Err(ValidationError::new(field, format!("{v} is in the future")));
    }
    Ok(Some(d))
}

/// Checks every field and returns the canonical metadata, with defaults applied.
pub fn validate(m: &RecordMetadata) -> Result<Metadata, ValidationError> {
    let title = text("title", &m.title, 500, false)?;
    if title.is_empty() {
        return Err(ValidationError::new("title", "is required"));
    }
    let description = text("description", &m.description, 16_000, true)?;
    let producer = text("producer", &m.producer, 200, false)?;
    let record_type = text("type", &m.record_type, 100, false)?;

    let single = date("date", &m.date)?;
    let from = date("date_from", &m.date_from)?;
    let to = date("date_to", &m.date_to)?;
    let (date_from, date_to) = match (single, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ValidationError::new(
                "date",
                "give either a date or a range (date_from and date_to), not both",
            ));
        }
        (Some(d), None, None) => (Some(d), Some(d)),
        (None, Some(f), Some(t)) if f > t => {
            return Err(ValidationError::new(
                "date_from",
                "must not be after date_to",
            ));
        }
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(ValidationError::new(
                "date_from",
                "a range needs both date_from and date_to",
            ));
        }
        (None, f, t) => (f, t),
    };

    let language = text("language", &m.language, 35, false)?;
    let language = if language.is_empty() {
        "fr".to_string()
    } else {
        language
    };
    let lang_ok = language.split('-').enumerate().all(|(i, part)| {
        let n = part.len();
        part.chars().all(|c| c.is_ascii_alphanumeric())
            && if i == 0 {
                (2..=3).contains(&n) && part.chars().all(|c| c.is_ascii_alphabetic())
            } else {
                (2..=8).contains(&n)
            }
    });
    if !lang_ok {
        return Err(ValidationError::new(
            "language",
            format!("{language:?} is not a language tag such as fr, oc or fr-FR"),
        ));
    }

    if m.keywords.len() > 64 {
        return Err(ValidationError::new("keywords", "at most 64 keywords"));
    }
    let mut keywords = Vec::with_capacity(m.keywords.len());
    for k in &m.keywords {
        let k = text("keywords", k, 100, false)?;
        if k.is_empty() {
            return Err(ValidationError::new(
                "keywords",
                "a keyword must not be empty",
            ));
        }
        keywords.push(k);
    }

    let communicability = m.communicability.trim().to_string();
    let category = if communicability.is_empty() {
        None
    } else {
        Some(Category::parse(&communicability).ok_or_else(|| {
            let codes: Vec<_> = Category::ALL.iter().map(|c| c.code()).collect();
            ValidationError::new(
                "communicability",
                format!(
                    "unknown category {communicability:?}; use one of {}",
                    codes.join(", ")
                ),
            )
        })?)
    };

    let death = date("person_death_date", &m.person_death_date)?;
    let birth = date("person_birth_date", &m.person_birth_date)?;
    if let (Some(b), Some(d)) = (birth, death)
        && b > d
    {
        return Err(ValidationError::new(
            "person_birth_date",
            "must not be after person_death_date",
        ));
    }
    if category == Some(Category::L213_2_2Medical) && death.is_none() && birth.is_none() {
        return Err(ValidationError::new(
            "communicability",
            "l213-2-2-medical needs person_death_date or person_birth_date",
        ));
    }
    if matches!(
        category,
        Some(Category::L213_2_1 | Category::L213_2_3 | Category::L213_2_4 | Category::L213_2_5)
    ) && date_to.is_none()
    {
        return Err(ValidationError::new(
            "date",
            format!("{communicability} runs from the document's date: give a date or a range"),
        ));
    }

    let licence = text("licence", &m.licence, 200, false)?;
    let licence = if licence.is_empty() && category == Some(Category::Immediate) {
        DEFAULT_LICENCE.to_string()
    } else {
        licence
    };

    let final_disposition = m.final_disposition.trim().to_ascii_uppercase();
    if !matches!(final_disposition.as_str(), "" | "C" | "D" | "T") {
        return Err(ValidationError::new(
            "final",
            format!(
                "{final_disposition:?} is not a sort final; use C (conserver), D (détruire) or T (trier)"
            ),
        ));
    }
    if let Some(d) = m.dua_years
        && d > 200
    {
        return Err(ValidationError::new("dua", "at most 200 years"));
    }
    if m.dua_years.is_some() == final_disposition.is_empty() {
        return Err(ValidationError::new(
            "dua",
            "the DUA and the sort final go together: give both --dua YEARS and --final C|D|T, or neither",
        ));
    }

    let meta = Metadata {
        title,
        description,
        producer,
        date_from: date_from.map(format_date).unwrap_or_default(),
        date_to: date_to.map(format_date).unwrap_or_default(),
        record_type,
        language,
        keywords,
        licence,
        communicability,
        dua_years: m.dua_years,
        final_disposition,
        metadata_public: m.metadata_public,
        person_death_date: death.map(format_date).unwrap_or_default(),
        person_birth_date: birth.map(format_date).unwrap_or_default(),
    };
    if meta.encode().len() > MAX_METADATA_BYTES {
        return Err(ValidationError::new(
            "metadata",
            format!(
                "{} bytes encoded, over the limit of {MAX_METADATA_BYTES}",
                meta.encode().len()
            ),
        ));
    }
    Ok(meta)
}

/// The wire form of validated metadata.
pub fn to_proto(m: &Metadata) -> RecordMetadata {
    let (date, date_from, date_to) = if m.date_from == m.date_to {
        (m.date_from.clone(), String::new(), String::new())
    } else {
        (String::new(), m.date_from.clone(), m.date_to.clone())
    };
    RecordMetadata {
        title: m.title.clone(),
        description: m.description.clone(),
        producer: m.producer.clone(),
        date,
        date_from,
        date_to,
        record_type: m.record_type.clone(),
        language: m.language.clone(),
        keywords: m.keywords.clone(),
        licence: m.licence.clone(),
        communicability: m.communicability.clone(),
        dua_years: m.dua_years,
        final_disposition: m.final_disposition.clone(),
        metadata_public: m.metadata_public,
        person_death_date: m.person_death_date.clone(),
        person_birth_date: m.person_birth_date.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> RecordMetadata {
        RecordMetadata {
            title: "Délibérations du conseil municipal 1998".into(),
            date: "1998-06-12".into(),
            ..Default::default()
        }
    }

    fn field_of(m: RecordMetadata) -> &'static str {
        validate(&m).unwrap_err().field
    }

    #[test]
    fn defaults_apply() {
        let mut m = ok();
        m.communicability = "immediate".into();
        let v = validate(&m).unwrap();
        assert_eq!(v.licence, DEFAULT_LICENCE);
        assert_eq!(v.language, "fr");
        assert_eq!(v.date_from, "1998-06-12");
        assert_eq!(v.date_to, "1998-06-12");
        // Not communicable until someone says so: no licence invented.
        assert_eq!(validate(&ok()).unwrap().licence, "");
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(
            field_of(RecordMetadata {
                title: "  ".into(),
                ..ok()
            }),
            "title"
        );
        assert_eq!(
            field_of(RecordMetadata {
                title: "x".repeat(501),
                ..ok()
            }),
            "title"
        );
        assert_eq!(
            field_of(RecordMetadata {
                date: "2023-02-30".into(),
                ..ok()
            }),
            "date"
        );
        assert_eq!(
            field_of(RecordMetadata {
                date: "12/06/1998".into(),
                ..ok()
            }),
            "date"
        );
        assert_eq!(
            field_of(RecordMetadata {
                date: "2999-01-01".into(),
                ..ok()
            }),
            "date"
        );
        assert_eq!(
            field_of(RecordMetadata {
                date: String::new(),
                date_from: "2000-01-02".into(),
                date_to: "2000-01-01".into(),
                ..ok()
            }),
            "date_from"
        );
        assert_eq!(
            field_of(RecordMetadata {
                date_from: "2000-01-01".into(),
                ..ok()
            }),
            "date"
        );
        assert_eq!(
            field_of(RecordMetadata {
                communicability: "public".into(),
                ..ok()
            }),
            "communicability"
        );
        assert_eq!(
            field_of(RecordMetadata {
                final_disposition: "X".into(),
                dua_years: Some(3),
                ..ok()
            }),
            "final"
        );
        assert_eq!(
            field_of(RecordMetadata {
                dua_years: Some(10),
                ..ok()
            }),
            "dua"
        );
        assert_eq!(
            field_of(RecordMetadata {
                dua_years: Some(1000),
                final_disposition: "D".into(),
                ..ok()
            }),
            "dua"
        );
        assert_eq!(
            field_of(RecordMetadata {
                language: "français".into(),
                ..ok()
            }),
            "language"
        );
        assert_eq!(
            field_of(RecordMetadata {
                keywords: vec!["".into()],
                ..ok()
            }),
            "keywords"
        );
        assert_eq!(
            field_of(RecordMetadata {
                title: "a\u{7}b".into(),
                ..ok()
            }),
            "title"
        );
        assert_eq!(
            field_of(RecordMetadata {
                communicability: "l213-2-2-medical".into(),
                ..ok()
            }),
            "communicability"
        );
        assert_eq!(
            field_of(RecordMetadata {
                communicability: "l213-2-3".into(),
                date: String::new(),
                ..ok()
            }),
            "date"
        );
    }

    /// Found by the `record_metadata` fuzz target: the validator counts characters, the
    /// decoder bytes; a title of 500 three-byte characters must still decode.
    #[test]
    fn longest_title_in_multibyte_characters_round_trips() {
        let m = validate(&RecordMetadata {
            title: "中".repeat(500),
            ..ok()
        })
        .unwrap();
        let back = archipel_proto::manifest::Metadata::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn accepts_range_and_management_rules() {
        let m = RecordMetadata {
            date: String::new(),
            date_from: "1990-01-01".into(),
            date_to: "1999-12-31".into(),
            dua_years: Some(10),
            final_disposition: "d".into(),
            communicability: "l213-2-3".into(),
            keywords: vec!["état civil".into()],
            ..ok()
        };
        let v = validate(&m).unwrap();
        assert_eq!(v.final_disposition, "D");
        assert_eq!(to_proto(&v).date_from, "1990-01-01");
    }
}
