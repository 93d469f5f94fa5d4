//! The reason messages people read, in zh-CN and en, from a catalogue file
//! (config/messages.toml) rather than strings scattered in code; the
//! language is negotiated per request from `Accept-Language` (default zh-CN).

use std::collections::BTreeMap;
use std::path::Path;

use crate::domain::ReasonCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    ZhCn,
    En,
}

impl Lang {
    pub fn tag(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The supported language the header prefers most (by q-value, then
    /// order); zh-CN when it names none.
    pub fn negotiate(accept_language: Option<&str>) -> Self {
        let mut best: Option<(f32, Lang)> = None;
        for entry in accept_language.unwrap_or_default().split(',') {
            let mut parts = entry.trim().split(';');
            let tag = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag.starts_with("zh") {
                Lang::ZhCn
            } else if tag.starts_with("en") {
                Lang::En
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::ZhCn, |(_, lang)| lang)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MessagesError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {problem}")]
    Invalid { file: String, problem: String },
}

/// A message's texts, [zh-CN, en], each present and not blank; `missing`
/// makes the error for a language that is not.
pub fn both_languages<E>(
    texts: &BTreeMap<String, String>,
    missing: impl Fn(&str) -> E,
) -> Result<[String; 2], E> {
    let get = |lang: &str| {
        texts
            .get(lang)
            .filter(|t| !t.trim().is_empty())
            .cloned()
            .ok_or_else(|| missing(lang))
    };
    Ok([get("zh-CN")?, get("en")?])
}

#[derive(Debug, Clone)]
pub struct Messages {
    /// Indexed by `ReasonCode as usize`: [zh-CN, en].
    texts: Vec<[String; 2]>,
}

impl Messages {
    pub fn load(path: &Path) -> Result<Self, MessagesError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| MessagesError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&file, &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Self, MessagesError> {
        let invalid = |problem: String| MessagesError::Invalid {
            file: file.to_owned(),
            problem,
        };
        let raw: BTreeMap<String, BTreeMap<String, String>> =
            toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
        for code in raw.keys() {
            if ReasonCode::parse(code).is_none() {
                return Err(invalid(format!("[{code}] is not a reason code")));
            }
        }
        let texts = ReasonCode::ALL
            .iter()
            .map(|code| {
                let entry = raw
                    .get(code.as_str())
                    .ok_or_else(|| invalid(format!("[{}] is missing", code.as_str())))?;
                both_languages(entry, |lang| {
                    invalid(format!("{}.{lang} is missing or empty", code.as_str()))
                })
            })
            .collect::<Result<Vec<_>, MessagesError>>()?;
        Ok(Self { texts })
    }

    pub fn text(&self, code: ReasonCode, lang: Lang) -> &str {
        &self.texts[code as usize][usize::from(lang == Lang::En)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalogue_is_complete() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/messages.toml");
        let messages = Messages::load(&path).unwrap();
        // The scheme: 7 and 14 days, centralised or home isolation for both.
        for (code, days) in [
            (ReasonCode::HealthCodeYellow, "7"),
            (ReasonCode::HealthCodeRed, "14"),
        ] {
            let zh = messages.text(code, Lang::ZhCn);
            let en = messages.text(code, Lang::En);
            assert!(zh.contains(&format!("{days}天集中或居家隔离")), "{zh}");
            assert!(
                en.contains(&format!("{days} days of centralised or home isolation")),
                "{en}"
            );
        }
        assert!(messages
            .text(ReasonCode::NoHealthCode, Lang::En)
            .contains("apply for one through"));
    }

    #[test]
    fn languages_are_negotiated() {
        assert_eq!(Lang::negotiate(None), Lang::ZhCn);
        assert_eq!(Lang::negotiate(Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(
            Lang::negotiate(Some("fr, en;q=0.5, zh-CN;q=0.8")),
            Lang::ZhCn
        );
        assert_eq!(Lang::negotiate(Some("de")), Lang::ZhCn);
        assert_eq!(Lang::negotiate(Some("zh;q=0, en;q=0.1")), Lang::En);
    }

    #[test]
    fn an_incomplete_catalogue_is_refused() {
        let err = Messages::parse("m.toml", "[ALL_GREEN]\nen = \"ok\"\n").unwrap_err();
        assert!(
            err.to_string().contains("ALL_GREEN.zh-CN is missing"),
            "{err}"
        );
        let err = Messages::parse("m.toml", "[NOPE]\nen = \"x\"\n").unwrap_err();
        assert!(
            err.to_string().contains("[NOPE] is not a reason code"),
            "{err}"
        );
    }
}
