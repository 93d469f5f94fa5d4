//! The telecom itinerary card, reduced at once to what policy needs: for
//! each risk word the source used, the most recent visit it was given to
//! (area code and date). The rest of the travel history is never kept.
//!
//! The words are kept as the source wrote them (trimmed, lower-cased), not
//! judged here: which words mean none, low, medium or high is the policy
//! document's vocabulary, so a word nobody listed can be reported as
//! unrecognised instead of silently passing.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Distinct risk words kept per card; a card with more is `overflowed`
/// (and fails as unrecognised): memory stays bounded whatever a source sends.
pub const MAX_RISK_WORDS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskVisit {
    /// The region code of the area (e.g. `420100`).
    pub area: String,
    pub date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItineraryVerdict {
    /// (risk word, the latest visit given that word), sorted by word.
    pub latest_by_risk: Vec<(String, RiskVisit)>,
    /// More than `MAX_RISK_WORDS` distinct words: unreadable as a whole.
    #[serde(default)]
    pub overflowed: bool,
}

/// Folds a risk word for lookup: surrounding space trimmed, lower-cased.
pub fn fold_risk_word(raw: &str) -> String {
    raw.trim().to_lowercase()
}

impl ItineraryVerdict {
    pub fn from_visits<'a>(
        visits: impl IntoIterator<Item = (&'a str, &'a str, NaiveDate)>,
    ) -> Self {
        let mut latest_by_risk: Vec<(String, RiskVisit)> = Vec::new();
        let mut overflowed = false;
        for (area, risk, date) in visits {
            let word = fold_risk_word(risk);
            let full = latest_by_risk.len() == MAX_RISK_WORDS;
            match latest_by_risk.iter_mut().find(|(w, _)| *w == word) {
                Some((_, visit)) if visit.date >= date => {}
                Some((_, visit)) => {
                    *visit = RiskVisit {
                        area: area.to_owned(),
                        date,
                    }
                }
                None if full => overflowed = true,
                None => latest_by_risk.push((
                    word,
                    RiskVisit {
                        area: area.to_owned(),
                        date,
                    },
                )),
            }
        }
        latest_by_risk.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            latest_by_risk,
            overflowed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_visit_per_risk_word_is_kept() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
        let verdict = ItineraryVerdict::from_visits([
            ("330100", "low", d(25)),
            ("420100", "high", d(10)),
            ("310000", " Medium", d(20)),
            ("310100", "medium", d(12)),
            ("110000", "高风险", d(3)),
        ]);
        let words: Vec<&str> = verdict
            .latest_by_risk
            .iter()
            .map(|(w, _)| w.as_str())
            .collect();
        assert_eq!(words, ["high", "low", "medium", "高风险"]);
        let medium = &verdict.latest_by_risk[2].1;
        assert_eq!((medium.area.as_str(), medium.date), ("310000", d(20)));
        assert!(!verdict.overflowed);
    }

    #[test]
    fn too_many_distinct_words_overflow() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let words: Vec<String> = (0..=MAX_RISK_WORDS).map(|i| format!("w{i}")).collect();
        let verdict = ItineraryVerdict::from_visits(words.iter().map(|w| ("1", w.as_str(), d)));
        assert!(verdict.overflowed);
        assert_eq!(verdict.latest_by_risk.len(), MAX_RISK_WORDS);
    }
}
