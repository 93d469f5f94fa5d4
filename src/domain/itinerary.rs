//! The telecom itinerary card, reduced at once to what policy needs: the
//! most recent visit to a risk area (its area code and date), or none. The
//! travel history itself is never kept.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskVisit {
    /// The region code of the area (e.g. `420100`).
    pub area: String,
    pub date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItineraryVerdict {
    pub last_risk_visit: Option<RiskVisit>,
}

impl ItineraryVerdict {
    /// Keeps only the latest visit whose risk level counts (medium, high).
    pub fn from_visits<'a>(
        visits: impl IntoIterator<Item = (&'a str, &'a str, NaiveDate)>,
    ) -> Self {
        let last_risk_visit = visits
            .into_iter()
            .filter(|(_, risk, _)| matches!(risk.to_ascii_lowercase().as_str(), "medium" | "high"))
            .max_by_key(|(_, _, date)| *date)
            .map(|(area, _, date)| RiskVisit {
                area: area.to_owned(),
                date,
            });
        Self { last_risk_visit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_risky_visit_is_kept() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        let verdict = ItineraryVerdict::from_visits([
            ("330100", "low", d(25)),
            ("420100", "high", d(10)),
            ("310000", "Medium", d(20)),
        ]);
        assert_eq!(
            verdict.last_risk_visit,
            Some(RiskVisit {
                area: "310000".into(),
                date: d(20)
            })
        );
        assert_eq!(
            ItineraryVerdict::from_visits([("330100", "low", d(1))]).last_risk_visit,
            None
        );
    }
}
