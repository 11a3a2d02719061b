//! When a record may be shown to anyone (Code du patrimoine L213-1 and L213-2).
//!
//! One function, [`communicability`], decides from the category and the dates; everything
//! else (gateway, OAI-PMH, release) asks it. Unknown or missing facts mean "not
//! communicable", never the reverse.

use crate::clock::{add_years, parse_date};
use archipel_proto::manifest::Metadata;
use time::Date;

/// The categories of the domain brief, by their code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Immediate,
    L213_2_1,
    L213_2_2Medical,
    L213_2_3,
    L213_2_4,
    L213_2_5,
    Never,
}

impl Category {
    pub const ALL: [Category; 7] = [
        Category::Immediate,
        Category::L213_2_1,
        Category::L213_2_2Medical,
        Category::L213_2_3,
        Category::L213_2_4,
        Category::L213_2_5,
        Category::Never,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Category::Immediate => "immediate",
            Category::L213_2_1 => "l213-2-1",
            Category::L213_2_2Medical => "l213-2-2-medical",
            Category::L213_2_3 => "l213-2-3",
            Category::L213_2_4 => "l213-2-4",
            Category::L213_2_5 => "l213-2-5",
            Category::Never => "never",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// The answer for one record on one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Communicability {
    /// Communicable since that date (`None`: immediately, by right).
    Open { since: Option<Date> },
    /// Not yet; communicable from that date.
    Until(Date),
    /// Not communicable and no date can be computed (category unset, missing dates, or
    /// `never`).
    Closed,
}

impl Communicability {
    pub fn is_open(self) -> bool {
        matches!(self, Communicability::Open { .. })
    }
}

fn delay_from(start: Option<Date>, years: i32) -> Option<Date> {
    start.and_then(|d| add_years(d, years))
}

/// Decides whether `meta` is communicable on `today`.
pub fn communicability(meta: &Metadata, today: Date) -> Communicability {
    let Some(cat) = Category::parse(&meta.communicability) else {
        return Communicability::Closed;
    };
    // Delays run from the most recent document of the file.
    let doc = parse_date(&meta.date_to).or_else(|| parse_date(&meta.date_from));
    let death = parse_date(&meta.person_death_date);
    let birth = parse_date(&meta.person_birth_date);
    let opens = match cat {
        Category::Immediate => return Communicability::Open { since: None },
        Category::Never => return Communicability::Closed,
        Category::L213_2_1 => delay_from(doc, 25),
        Category::L213_2_3 => delay_from(doc, 50),
        Category::L213_2_2Medical => match death {
            Some(d) => add_years(d, 25),
            None => delay_from(birth, 120),
        },
        // "75 (or 100) years, or 25 years after the person's death if shorter".
        Category::L213_2_4 | Category::L213_2_5 => {
            let years = if cat == Category::L213_2_4 { 75 } else { 100 };
            let by_doc = delay_from(doc, years);
            let by_death = delay_from(death, 25);
            match (by_doc, by_death) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
    };
    match opens {
        Some(d) if today >= d => Communicability::Open { since: Some(d) },
        Some(d) => Communicability::Until(d),
        None => Communicability::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn meta(cat: &str, date: &str) -> Metadata {
        Metadata {
            communicability: cat.into(),
            date_from: date.into(),
            date_to: date.into(),
            ..Default::default()
        }
    }

    fn d(s: &str) -> Date {
        parse_date(s).unwrap()
    }

    /// Day before: closed until the date; day of and day after: open.
    fn check_boundary(m: &Metadata, opens: &str) {
        let o = d(opens);
        assert_eq!(
            communicability(m, o - Duration::days(1)),
            Communicability::Until(o)
        );
        assert!(communicability(m, o).is_open(), "day of {opens}");
        assert!(
            communicability(m, o + Duration::days(1)).is_open(),
            "day after {opens}"
        );
    }

    #[test]
    fn every_category_at_its_boundary() {
        assert!(communicability(&meta("immediate", ""), d("1900-01-01")).is_open());
        check_boundary(&meta("l213-2-1", "1999-03-15"), "2024-03-15");
        check_boundary(&meta("l213-2-3", "1974-06-01"), "2024-06-01");
        check_boundary(&meta("l213-2-4", "1950-01-10"), "2025-01-10");
        check_boundary(&meta("l213-2-5", "1920-12-31"), "2020-12-31");
        let mut med = meta("l213-2-2-medical", "1990-01-01");
        med.person_death_date = "2000-05-05".into();
        check_boundary(&med, "2025-05-05");
        let mut med = meta("l213-2-2-medical", "1990-01-01");
        med.person_birth_date = "1900-02-02".into();
        check_boundary(&med, "2020-02-02");
        assert_eq!(
            communicability(&meta("never", "1000-01-01"), d("2999-01-01")),
            Communicability::Closed
        );
    }

    #[test]
    fn death_shortens_rows_4_and_5() {
        let mut m = meta("l213-2-4", "2000-01-01");
        m.person_death_date = "1990-01-01".into();
        check_boundary(&m, "2015-01-01");
        let mut m = meta("l213-2-5", "1950-01-01");
        // Death + 25 (2065) is later than document + 100 (2050): the shorter wins.
        m.person_death_date = "2040-01-01".into();
        check_boundary(&m, "2050-01-01");
    }

    #[test]
    fn unknown_or_missing_facts_mean_closed() {
        let today = d("2026-01-01");
        assert_eq!(
            communicability(&meta("", "1900-01-01"), today),
            Communicability::Closed
        );
        assert_eq!(
            communicability(&meta("bogus", "1900-01-01"), today),
            Communicability::Closed
        );
        assert_eq!(
            communicability(&meta("l213-2-1", ""), today),
            Communicability::Closed
        );
        assert_eq!(
            communicability(&meta("l213-2-2-medical", "1900-01-01"), today),
            Communicability::Closed
        );
    }

    #[test]
    fn leap_day_delay_falls_on_28_february() {
        check_boundary(&meta("l213-2-1", "2000-02-29"), "2025-02-28");
    }

    #[test]
    fn range_runs_from_most_recent_document() {
        let m = Metadata {
            communicability: "l213-2-1".into(),
            date_from: "1980-01-01".into(),
            date_to: "1990-07-01".into(),
            ..Default::default()
        };
        check_boundary(&m, "2015-07-01");
    }
}
