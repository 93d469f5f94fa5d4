//! Appeals against automated refusals (PIPL art. 24): what a person may
//! contest and what a regulator may answer, as types that hold only valid
//! values.
//!
//! Grounds and notes are free text written by people. They are kept (the
//! trail must say what was argued and why it was answered so), but a
//! person's raw id must not ride in them unnoticed: `FreeText::parse`
//! refuses control characters and bounds the length, and
//! `FreeText::possible_identifier` tells when the text holds a run of
//! digits as long as a phone or ID number, so the caller is warned and the
//! record flagged. Tokens that are the appealed people's own ids are
//! replaced before anything is stored (see `appeals`).

use super::InvalidRequest;

/// Grounds and notes: 1 to this many characters.
pub const MAX_FREE_TEXT_CHARS: usize = 2_000;

/// What replaces a token of the text that is a party's raw id.
pub const REDACTED: &str = "[subject id]";

/// Digits in a row (spaces and hyphens between them allowed) from which a
/// text may hold a phone number (11) or an ID number (17 and a check
/// character); shorter runs (dates, amounts, trip numbers) pass.
const IDENTIFIER_DIGITS: usize = 11;

/// Free text of a person, trimmed, 1..=2,000 characters, no control
/// characters but line breaks and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreeText(String);

impl FreeText {
    pub fn parse(field: &str, raw: &str) -> Result<Self, InvalidRequest> {
        let text = raw.trim();
        let invalid = |problem: String| InvalidRequest {
            field: field.to_owned(),
            problem,
        };
        if text.is_empty() {
            return Err(invalid("must not be empty".into()));
        }
        let chars = text.chars().count();
        if chars > MAX_FREE_TEXT_CHARS {
            return Err(invalid(format!(
                "is {chars} characters long; at most {MAX_FREE_TEXT_CHARS} are allowed"
            )));
        }
        if let Some(c) = text
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(invalid(format!(
                "contains the control character U+{:04X}",
                c as u32
            )));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Replaces every token (a maximal run of the subject id alphabet)
    /// for which `is_party_id` holds by `REDACTED`; returns how many.
    pub fn redact(&mut self, mut is_party_id: impl FnMut(&str) -> bool) -> usize {
        let is_id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        let mut out = String::with_capacity(self.0.len());
        let mut redacted = 0;
        let mut rest = self.0.as_str();
        while !rest.is_empty() {
            let token_end = rest.find(|c: char| !is_id_char(c)).unwrap_or(rest.len());
            if token_end == 0 {
                let c = rest.chars().next().unwrap_or(' ');
                out.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
            let token = &rest[..token_end];
            // A sentence's full stop or colon may end the token.
            let bare = token.trim_end_matches(['.', ':', '-', '_']);
            if is_party_id(token) {
                out.push_str(REDACTED);
                redacted += 1;
            } else if !bare.is_empty() && is_party_id(bare) {
                out.push_str(REDACTED);
                out.push_str(&token[bare.len()..]);
                redacted += 1;
            } else {
                out.push_str(token);
            }
            rest = &rest[token_end..];
        }
        self.0 = out;
        redacted
    }

    /// Whether the text holds a run of digits as long as a phone or ID
    /// number (see `possible_identifier`).
    pub fn possible_identifier(&self) -> bool {
        possible_identifier(&self.0)
    }
}

/// Whether `text` holds a run of digits as long as a phone or ID number
/// (spaces and hyphens inside the run allowed).
pub fn possible_identifier(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= IDENTIFIER_DIGITS {
                return true;
            }
        } else if !matches!(c, ' ' | '-') {
            run = 0;
        }
    }
    false
}

/// A regulator's answer to an appeal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppealOutcome {
    /// The refusal stands.
    Upheld,
    /// The refusal was wrong.
    Overturned,
}

impl AppealOutcome {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "upheld" => Some(Self::Upheld),
            "overturned" => Some(Self::Overturned),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upheld => "upheld",
            Self::Overturned => "overturned",
        }
    }
}

/// Why a refusal was overturned: what a reader of the decision learns
/// besides the note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverturnCause {
    /// The provider's code for the person was wrong.
    ProviderDataWrong,
    /// The status used was not the person's current one.
    StatusOutdated,
    /// The person is not the one the status belonged to.
    WrongPerson,
    /// The policy was applied wrongly to a correct status.
    PolicyMisapplied,
    Other,
}

impl OverturnCause {
    pub const ALL: [Self; 5] = [
        Self::ProviderDataWrong,
        Self::StatusOutdated,
        Self::WrongPerson,
        Self::PolicyMisapplied,
        Self::Other,
    ];

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProviderDataWrong => "provider_data_wrong",
            Self::StatusOutdated => "status_outdated",
            Self::WrongPerson => "wrong_person",
            Self::PolicyMisapplied => "policy_misapplied",
            Self::Other => "other",
        }
    }
}

/// Which party of a decision an appeal is about: driver or passenger, and
/// for a passenger which one (the request's index; the only one if absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppealedParty {
    pub role: &'static str,
    pub index: Option<u32>,
}

impl AppealedParty {
    pub fn parse(role: &str, index: Option<u32>) -> Result<Self, InvalidRequest> {
        let role = match role {
            "driver" => "driver",
            "passenger" => "passenger",
            other => {
                return Err(InvalidRequest {
                    field: "party".into(),
                    problem: format!("{other:?} is not driver or passenger"),
                })
            }
        };
        if role == "driver" && index.is_some() {
            return Err(InvalidRequest {
                field: "index".into(),
                problem: "a decision has one driver; index is for passengers".into(),
            });
        }
        Ok(Self { role, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_is_bounded_and_clean() {
        assert_eq!(
            FreeText::parse("grounds", "  ok \n").unwrap().as_str(),
            "ok"
        );
        assert_eq!(
            FreeText::parse("grounds", "  ").unwrap_err().field,
            "grounds"
        );
        assert!(FreeText::parse("note", &"字".repeat(2_000)).is_ok());
        assert!(FreeText::parse("note", &"字".repeat(2_001)).is_err());
        assert!(FreeText::parse("note", "bell \u{7}").is_err());
        assert!(FreeText::parse("note", "tab\tand\r\nlines").is_ok());
    }

    #[test]
    fn long_digit_runs_are_flagged_and_short_ones_pass() {
        let flagged = |t: &str| FreeText::parse("g", t).unwrap().possible_identifier();
        assert!(flagged("call me on 13800138000"));
        assert!(flagged("phone 138-0013-8000 please"));
        assert!(flagged("ID 11010519491231002X"));
        assert!(!flagged("trip T-2026-11-30 at 08:15, fare 35"));
        assert!(!flagged("my code was green on 2026 11 29"));
    }

    #[test]
    fn party_ids_are_replaced_token_by_token() {
        let mut text = FreeText::parse(
            "g",
            "I am 13800138000, not 13800138001. Really 13800138000.",
        )
        .unwrap();
        let n = text.redact(|t| t == "13800138000");
        assert_eq!(n, 2);
        assert_eq!(
            text.as_str(),
            "I am [subject id], not 13800138001. Really [subject id]."
        );
        let mut chinese = FreeText::parse("g", "本人(u-1)绿码").unwrap();
        assert_eq!(chinese.redact(|t| t == "u-1"), 1);
        assert_eq!(chinese.as_str(), "本人([subject id])绿码");
    }
}
