//! Identifier newtypes: subjects (people), trips and cities.
//!
//! Subject and trip ids share one grammar: 1 to 128 characters from
//! `[A-Za-z0-9._:-]`. The grammar is strict because ids end up in cache keys
//! and URLs of the provider API; anything outside it is refused at the edge.

use std::fmt;

pub const MAX_ID_LEN: usize = 128;
const MAX_CITY_LEN: usize = 64;

/// Why a string is not a valid identifier. The message never repeats the
/// offending value: it may be a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdentifier {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} characters long; at most {max} are allowed")]
    TooLong { len: usize, max: usize },
    #[error("contains a character outside {allowed} at position {position}")]
    BadCharacter {
        position: usize,
        allowed: &'static str,
    },
}

fn check_grammar(
    raw: &str,
    max: usize,
    allowed: &'static str,
    is_allowed: impl Fn(char) -> bool,
) -> Result<(), InvalidIdentifier> {
    if raw.is_empty() {
        return Err(InvalidIdentifier::Empty);
    }
    let len = raw.chars().count();
    if len > max {
        return Err(InvalidIdentifier::TooLong { len, max });
    }
    match raw.chars().position(|c| !is_allowed(c)) {
        Some(position) => Err(InvalidIdentifier::BadCharacter { position, allowed }),
        None => Ok(()),
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// A person's identifier at the health-code provider (often a phone number).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectId(String);

impl SubjectId {
    pub fn parse(raw: &str) -> Result<Self, InvalidIdentifier> {
        check_grammar(raw, MAX_ID_LEN, "[A-Za-z0-9._:-]", is_id_char)?;
        Ok(Self(raw.to_owned()))
    }

    /// The raw identifier. Call sites are the few places allowed to see it:
    /// cache keys, the provider request and pseudonymisation.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectId(<redacted>)")
    }
}

/// The dispatch backend's trip (or order) identifier; not personal data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct TripId(String);

impl TripId {
    pub fn parse(raw: &str) -> Result<Self, InvalidIdentifier> {
        check_grammar(raw, MAX_ID_LEN, "[A-Za-z0-9._:-]", is_id_char)?;
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A city as named in the policy document: lower-case ASCII letters, digits,
/// `_` and `-`. Parsing folds case so "Hangzhou" and "hangzhou" are one city.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct CityCode(String);

impl CityCode {
    pub fn parse(raw: &str) -> Result<Self, InvalidIdentifier> {
        let folded = raw.to_ascii_lowercase();
        check_grammar(&folded, MAX_CITY_LEN, "[a-z0-9_-]", |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
        })?;
        Ok(Self(folded))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_id_accepts_the_documented_alphabet() {
        assert!(SubjectId::parse("D-42").is_ok());
        assert!(SubjectId::parse("+8613800138000").is_err());
        assert!(SubjectId::parse("a.b_c:d-E9").is_ok());
        assert_eq!(SubjectId::parse(""), Err(InvalidIdentifier::Empty));
        assert_eq!(
            SubjectId::parse(&"x".repeat(129)),
            Err(InvalidIdentifier::TooLong { len: 129, max: 128 })
        );
        assert!(SubjectId::parse(&"x".repeat(128)).is_ok());
        assert!(matches!(
            SubjectId::parse("ab cd"),
            Err(InvalidIdentifier::BadCharacter { position: 2, .. })
        ));
        assert!(SubjectId::parse("é").is_err());
    }

    #[test]
    fn subject_id_debug_output_is_redacted() {
        let id = SubjectId::parse("13800138000").unwrap();
        assert!(!format!("{id:?}").contains("13800138000"));
    }

    #[test]
    fn city_code_folds_case() {
        assert_eq!(CityCode::parse("HangZhou").unwrap().as_str(), "hangzhou");
        assert!(CityCode::parse("hang zhou").is_err());
    }
}
