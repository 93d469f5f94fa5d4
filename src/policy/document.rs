//! The policy document (config/policy.toml) and its validation.
//!
//! The file is deserialised into loose `Raw*` structs, then checked as a whole
//! into `Policy`. Every error names the file, the key path and what is wrong,
//! because the person reading it is an operator editing TOML under pressure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use chrono::TimeDelta;
use serde::Deserialize;

use crate::domain::{
    fold_risk_word, CityCode, Colour, Hook, IssuerId, Level, ReasonCode, Strictness,
};
use crate::messages::Lang;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: not a valid policy document: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: {key}: {problem}")]
    Invalid {
        file: String,
        key: String,
        problem: String,
    },
}

/// What to do when a party's status cannot be determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Fail closed: the trip is refused.
    Reject,
    /// Fail open: allowed, flagged `degraded`, the reason still reported.
    AllowDegraded,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: String,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    issuers: BTreeMap<String, RawIssuer>,
    #[serde(default)]
    cities: BTreeMap<String, RawCity>,
    #[serde(default)]
    itinerary: RawItinerary,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItinerary {
    /// The itinerary source's risk words mapped to none, low, medium, high.
    risk_levels: Option<BTreeMap<String, String>>,
}

/// What a risk word of the itinerary source means. Medium and high fail
/// the itinerary check within the city's window; a word the vocabulary
/// does not list fails it as unrecognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RiskLevel {
    None,
    Low,
    Medium,
    High,
}

impl RiskLevel {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "none" => Some(RiskLevel::None),
            "low" => Some(RiskLevel::Low),
            "medium" => Some(RiskLevel::Medium),
            "high" => Some(RiskLevel::High),
            _ => None,
        }
    }

    pub fn is_risk(self) -> bool {
        matches!(self, RiskLevel::Medium | RiskLevel::High)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    max_status_age_secs: Option<i64>,
    on_unavailable: Option<OnUnavailable>,
    /// Which checks each hook runs, for cities that do not say.
    hooks: Option<BTreeMap<String, Vec<String>>>,
    itinerary_window_days: Option<i64>,
    isolation_days: Option<RawIsolation>,
}

/// Days of isolation per level before a code may turn green again.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIsolation {
    yellow: Option<i64>,
    red: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    palette: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCity {
    recognised_issuers: Vec<String>,
    max_status_age_secs: Option<i64>,
    on_unavailable: Option<OnUnavailable>,
    hooks: Option<BTreeMap<String, Vec<String>>>,
    itinerary_window_days: Option<i64>,
    isolation_days: Option<RawIsolation>,
    /// Reason messages of this city: code → language → text.
    messages: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// The scheme's isolation periods: 7 days for yellow, 14 for red.
const DEFAULT_ISOLATION_DAYS: (i64, i64) = (7, 14);

const DEFAULT_ITINERARY_WINDOW_DAYS: i64 = 14;

const DEFAULT_MAX_STATUS_AGE_SECS: i64 = 24 * 3600;

/// A check a hook can require of every party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    HealthCode,
    /// The itinerary card: no visit to a risk area within the window.
    Itinerary,
}

impl CheckKind {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "health_code" => Some(CheckKind::HealthCode),
            "itinerary" => Some(CheckKind::Itinerary),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CheckKind::HealthCode => "health_code",
            CheckKind::Itinerary => "itinerary",
        }
    }
}

/// What one hook requires in one city, with the rule ids reasons carry.
#[derive(Debug, Clone)]
pub struct HookRules {
    pub checks: Vec<CheckKind>,
    /// `<city>.<hook>`: the rule behind ALL_GREEN.
    pub all_clear: Arc<str>,
    /// `<city>.<hook>.<check>` per check, in `checks` order.
    pub check_rules: Vec<Arc<str>>,
}

impl HookRules {
    pub fn rule_for(&self, check: CheckKind) -> Arc<str> {
        self.checks
            .iter()
            .position(|c| *c == check)
            .map(|i| Arc::clone(&self.check_rules[i]))
            .unwrap_or_else(|| Arc::clone(&self.all_clear))
    }
}

/// An issuer's colour words mapped onto canonical levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Palette(HashMap<Colour, Level>);

impl Palette {
    pub fn level_of(&self, colour: &Colour) -> Option<Level> {
        self.0.get(colour).copied()
    }
}

/// How long a yellow or red code keeps its holder off the road, counted
/// from when the colour last changed, and the rule id that says so.
#[derive(Debug, Clone)]
pub struct Isolation {
    pub period: TimeDelta,
    /// `<city>.isolation.<level>`.
    pub rule: Arc<str>,
}

#[derive(Debug, Clone)]
pub struct CityPolicy {
    recognised: HashSet<IssuerId>,
    pub max_status_age: TimeDelta,
    pub on_unavailable: OnUnavailable,
    /// A risk-area visit this recent fails the itinerary check.
    pub itinerary_window: TimeDelta,
    hooks: HashMap<Hook, HookRules>,
    /// [yellow, red].
    isolation: [Isolation; 2],
    /// `<city>.renewal`: a stale code may pass again after a check-in.
    pub renewal_rule: Arc<str>,
    /// The city's own reason messages: [zh-CN, en] per code.
    messages: HashMap<ReasonCode, [String; 2]>,
}

impl CityPolicy {
    /// The isolation a level imposes (none for green).
    pub fn isolation(&self, level: Level) -> Option<&Isolation> {
        match level {
            Level::Green => None,
            Level::Yellow => Some(&self.isolation[0]),
            Level::Red => Some(&self.isolation[1]),
        }
    }

    /// The city's own message for `code`, if it has one.
    pub fn message(&self, code: ReasonCode, lang: Lang) -> Option<&str> {
        self.messages
            .get(&code)
            .map(|texts| texts[usize::from(lang == Lang::En)].as_str())
    }

    pub fn recognises(&self, issuer: &IssuerId) -> bool {
        self.recognised.contains(issuer)
    }

    /// Whether `hook` checks the itinerary card in this city.
    pub fn needs_itinerary(&self, hook: Hook) -> bool {
        self.rules(hook).checks.contains(&CheckKind::Itinerary)
    }

    /// Every hook has rules: validation fills in the defaults.
    pub fn rules(&self, hook: Hook) -> &HookRules {
        &self.hooks[&hook]
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    version: String,
    palettes: HashMap<IssuerId, Palette>,
    /// The palettes again, as the caches rank ties with them.
    strictness: Strictness,
    cities: HashMap<CityCode, CityPolicy>,
    /// The itinerary source's vocabulary, by folded word.
    risk_levels: HashMap<String, RiskLevel>,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&file, &text)
    }

    /// `file` only labels error messages.
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |key: String, problem: String| PolicyError::Invalid {
            file: file.to_owned(),
            key,
            problem,
        };

        let version = raw.version.trim().to_owned();
        if version.is_empty() {
            return Err(invalid("version".into(), "must not be empty".into()));
        }
        let default_age = match raw.defaults.max_status_age_secs {
            Some(secs) => positive_age("defaults.max_status_age_secs", secs, &invalid)?,
            None => TimeDelta::seconds(DEFAULT_MAX_STATUS_AGE_SECS),
        };
        let default_on_unavailable = raw.defaults.on_unavailable.unwrap_or(OnUnavailable::Reject);
        let default_hooks = parse_hooks("defaults.hooks", raw.defaults.hooks.as_ref(), &invalid)?;
        let window_days = |key: &str, days: Option<i64>, default: i64| match days {
            Some(d) if d > 0 => Ok(TimeDelta::days(d)),
            Some(d) => Err(invalid(
                key.to_owned(),
                format!("must be a positive number of days, not {d}"),
            )),
            None => Ok(TimeDelta::days(default)),
        };
        let default_window = window_days(
            "defaults.itinerary_window_days",
            raw.defaults.itinerary_window_days,
            DEFAULT_ITINERARY_WINDOW_DAYS,
        )?;
        let default_isolation = raw.defaults.isolation_days.unwrap_or_default();
        let (default_yellow, default_red) = (
            window_days(
                "defaults.isolation_days.yellow",
                default_isolation.yellow,
                DEFAULT_ISOLATION_DAYS.0,
            )?,
            window_days(
                "defaults.isolation_days.red",
                default_isolation.red,
                DEFAULT_ISOLATION_DAYS.1,
            )?,
        );

        let mut palettes = HashMap::new();
        for (name, issuer) in &raw.issuers {
            let issuer_id = IssuerId::new(name);
            let mut palette = HashMap::new();
            for (colour, level) in &issuer.palette {
                let key = format!("issuers.{name}.palette.{colour}");
                let level = match level.as_str() {
                    "green" => Level::Green,
                    "yellow" => Level::Yellow,
                    "red" => Level::Red,
                    other => {
                        return Err(invalid(
                            key,
                            format!("'{other}' is not a level; use green, yellow or red"),
                        ))
                    }
                };
                if palette.insert(Colour::new(colour), level).is_some() {
                    return Err(invalid(
                        key,
                        "colour is listed twice (names are case-insensitive)".into(),
                    ));
                }
            }
            if !palette.values().any(|l| *l == Level::Green) {
                return Err(invalid(
                    format!("issuers.{name}.palette"),
                    "maps no colour to green; nobody holding this issuer's code could ever pass"
                        .into(),
                ));
            }
            if palettes.insert(issuer_id, Palette(palette)).is_some() {
                return Err(invalid(
                    format!("issuers.{name}"),
                    "issuer is defined twice (names are case-insensitive)".into(),
                ));
            }
        }

        if raw.cities.is_empty() {
            return Err(invalid(
                "cities".into(),
                "no city is configured; every check would be refused".into(),
            ));
        }
        let mut cities = HashMap::new();
        for (name, city) in &raw.cities {
            let key = format!("cities.{name}");
            let code = CityCode::parse(name)
                .map_err(|e| invalid(key.clone(), format!("city name {e}")))?;
            if city.recognised_issuers.is_empty() {
                return Err(invalid(
                    format!("{key}.recognised_issuers"),
                    "must name at least one issuer".into(),
                ));
            }
            let mut recognised = HashSet::new();
            for (i, issuer) in city.recognised_issuers.iter().enumerate() {
                let issuer_key = format!("{key}.recognised_issuers[{i}]");
                let issuer_id = IssuerId::new(issuer);
                if !palettes.contains_key(&issuer_id) {
                    return Err(invalid(
                        issuer_key,
                        format!("issuer '{issuer}' has no palette under [issuers.{issuer}]"),
                    ));
                }
                if !recognised.insert(issuer_id) {
                    return Err(invalid(
                        issuer_key,
                        format!("issuer '{issuer}' is listed twice"),
                    ));
                }
            }
            let max_status_age = match city.max_status_age_secs {
                Some(secs) => positive_age(&format!("{key}.max_status_age_secs"), secs, &invalid)?,
                None => default_age,
            };
            let mut hooks = default_hooks.clone();
            let own = parse_hooks(&format!("{key}.hooks"), city.hooks.as_ref(), &invalid)?;
            for (hook, checks) in own {
                hooks.insert(hook, checks);
            }
            let hooks = Hook::ALL
                .into_iter()
                .map(|hook| {
                    let checks = hooks
                        .get(&hook)
                        .cloned()
                        .unwrap_or_else(|| vec![CheckKind::HealthCode]);
                    let all_clear: Arc<str> =
                        Arc::from(format!("{}.{}", code.as_str(), hook.as_str()));
                    let check_rules = checks
                        .iter()
                        .map(|c| Arc::from(format!("{all_clear}.{}", c.as_str())))
                        .collect();
                    (
                        hook,
                        HookRules {
                            checks,
                            all_clear,
                            check_rules,
                        },
                    )
                })
                .collect();
            let itinerary_window = match city.itinerary_window_days {
                Some(days) => window_days(&format!("{key}.itinerary_window_days"), Some(days), 0)?,
                None => default_window,
            };
            let own_isolation = city.isolation_days.unwrap_or_default();
            let isolation = |level: &str, days: Option<i64>, default: TimeDelta| {
                let period = match days {
                    Some(d) => window_days(&format!("{key}.isolation_days.{level}"), Some(d), 0)?,
                    None => default,
                };
                Ok::<_, PolicyError>(Isolation {
                    period,
                    rule: Arc::from(format!("{}.isolation.{level}", code.as_str())),
                })
            };
            let policy = CityPolicy {
                recognised,
                max_status_age,
                on_unavailable: city.on_unavailable.unwrap_or(default_on_unavailable),
                itinerary_window,
                hooks,
                isolation: [
                    isolation("yellow", own_isolation.yellow, default_yellow)?,
                    isolation("red", own_isolation.red, default_red)?,
                ],
                renewal_rule: Arc::from(format!("{}.renewal", code.as_str())),
                messages: parse_messages(&key, city.messages.as_ref(), &invalid)?,
            };
            if cities.insert(code, policy).is_some() {
                return Err(invalid(
                    key,
                    "city is defined twice (names are case-insensitive)".into(),
                ));
            }
        }

        let mut risk_levels = HashMap::new();
        let default_words: BTreeMap<String, String> = ["none", "low", "medium", "high"]
            .into_iter()
            .map(|w| (w.to_owned(), w.to_owned()))
            .collect();
        for (word, level) in raw.itinerary.risk_levels.as_ref().unwrap_or(&default_words) {
            let key = format!("itinerary.risk_levels.{word}");
            let level = RiskLevel::parse(level).ok_or_else(|| {
                invalid(
                    key.clone(),
                    format!("'{level}' is not a risk level; use none, low, medium or high"),
                )
            })?;
            let folded = fold_risk_word(word);
            if folded.is_empty() || risk_levels.insert(folded, level).is_some() {
                return Err(invalid(
                    key,
                    "word is empty or listed twice (words are case-insensitive)".into(),
                ));
            }
        }

        let strictness = Strictness::new(
            palettes
                .iter()
                .map(|(issuer, palette)| (issuer.clone(), palette.0.clone()))
                .collect(),
        );
        Ok(Self {
            version,
            palettes,
            strictness,
            cities,
            risk_levels,
        })
    }

    pub fn strictness(&self) -> &Strictness {
        &self.strictness
    }

    /// What a risk word of the itinerary source means; `None`: not listed.
    pub fn risk_level(&self, word: &str) -> Option<RiskLevel> {
        self.risk_levels.get(word).copied()
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn city(&self, city: &CityCode) -> Option<&CityPolicy> {
        self.cities.get(city)
    }

    pub fn palette(&self, issuer: &IssuerId) -> Option<&Palette> {
        self.palettes.get(issuer)
    }

    /// Whether `city` accepts codes of `issuer` (recognised, with a palette).
    pub fn accepts(&self, city: &CityPolicy, issuer: &IssuerId) -> bool {
        city.recognises(issuer) && self.palettes.contains_key(issuer)
    }
}

/// `[cities.<c>.messages.<CODE>]`: both languages, never empty, for codes
/// that exist.
fn parse_messages(
    key: &str,
    raw: Option<&BTreeMap<String, BTreeMap<String, String>>>,
    invalid: &impl Fn(String, String) -> PolicyError,
) -> Result<HashMap<ReasonCode, [String; 2]>, PolicyError> {
    let mut messages = HashMap::new();
    for (name, texts) in raw.into_iter().flatten() {
        let code_key = format!("{key}.messages.{name}");
        let code = ReasonCode::parse(name)
            .ok_or_else(|| invalid(code_key.clone(), format!("'{name}' is not a reason code")))?;
        if let Some(other) = texts
            .keys()
            .find(|l| !["zh-CN", "en"].contains(&l.as_str()))
        {
            return Err(invalid(
                format!("{code_key}.{other}"),
                "is not a language of the catalogue; use zh-CN and en".into(),
            ));
        }
        let texts = crate::messages::both_languages(texts, |lang| {
            invalid(
                format!("{code_key}.{lang}"),
                "is missing or empty; a city's message needs both zh-CN and en".into(),
            )
        })?;
        messages.insert(code, texts);
    }
    Ok(messages)
}

/// `[...hooks]`: hook name → list of checks.
fn parse_hooks(
    key: &str,
    raw: Option<&BTreeMap<String, Vec<String>>>,
    invalid: &impl Fn(String, String) -> PolicyError,
) -> Result<HashMap<Hook, Vec<CheckKind>>, PolicyError> {
    let mut hooks = HashMap::new();
    for (name, checks) in raw.into_iter().flatten() {
        let hook_key = format!("{key}.{name}");
        let hook = Hook::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Hook::ALL.iter().map(|h| h.as_str()).collect();
            invalid(
                hook_key.clone(),
                format!("'{name}' is not a hook; use one of {}", known.join(", ")),
            )
        })?;
        if checks.is_empty() {
            return Err(invalid(hook_key, "must require at least one check".into()));
        }
        let mut parsed = Vec::new();
        for (i, check) in checks.iter().enumerate() {
            let kind = CheckKind::parse(check).ok_or_else(|| {
                invalid(
                    format!("{hook_key}[{i}]"),
                    format!("'{check}' is not a check; use health_code"),
                )
            })?;
            if parsed.contains(&kind) {
                return Err(invalid(
                    format!("{hook_key}[{i}]"),
                    format!("'{check}' is listed twice"),
                ));
            }
            parsed.push(kind);
        }
        hooks.insert(hook, parsed);
    }
    Ok(hooks)
}

fn positive_age(
    key: &str,
    secs: i64,
    invalid: &impl Fn(String, String) -> PolicyError,
) -> Result<TimeDelta, PolicyError> {
    if secs <= 0 {
        return Err(invalid(
            key.to_owned(),
            format!("must be a positive number of seconds, not {secs}"),
        ));
    }
    TimeDelta::try_seconds(secs)
        .ok_or_else(|| invalid(key.to_owned(), format!("{secs} seconds is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        version = "t1"
        [issuers.hangzhou.palette]
        green = "green"
        [cities.hangzhou]
        recognised_issuers = ["hangzhou"]
    "#;

    fn error_of(text: &str) -> String {
        Policy::parse("policy.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn the_shipped_document_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/policy.toml");
        let policy = Policy::load(&path).unwrap();
        assert!(policy.city(&CityCode::parse("hangzhou").unwrap()).is_some());
    }

    #[test]
    fn defaults_apply_to_cities() {
        let policy = Policy::parse("p", MINIMAL).unwrap();
        let city = policy.city(&CityCode::parse("hangzhou").unwrap()).unwrap();
        assert_eq!(city.max_status_age, TimeDelta::hours(24));
        assert_eq!(city.on_unavailable, OnUnavailable::Reject);
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let unknown_issuer = MINIMAL.replace(r#"["hangzhou"]"#, r#"["hangzhou", "mars"]"#);
        assert_eq!(
            error_of(&unknown_issuer),
            "policy.toml: cities.hangzhou.recognised_issuers[1]: issuer 'mars' has no palette under [issuers.mars]"
        );
        let bad_level = MINIMAL.replace(r#"green = "green""#, "green = \"green\"\nblue = \"teal\"");
        assert!(error_of(&bad_level)
            .starts_with("policy.toml: issuers.hangzhou.palette.blue: 'teal' is not a level"));
        let empty_version = MINIMAL.replace(r#""t1""#, r#""  ""#);
        assert_eq!(
            error_of(&empty_version),
            "policy.toml: version: must not be empty"
        );
        let no_green = MINIMAL.replace(r#"green = "green""#, r#"green = "red""#);
        assert!(error_of(&no_green).contains("issuers.hangzhou.palette: maps no colour to green"));
        let bad_hook = format!("{MINIMAL}\n[cities.hangzhou.hooks]\nteleport = [\"health_code\"]");
        assert!(error_of(&bad_hook)
            .starts_with("policy.toml: cities.hangzhou.hooks.teleport: 'teleport' is not a hook"));
        let bad_check = format!("{MINIMAL}\n[cities.hangzhou.hooks]\ntrip = [\"horoscope\"]");
        assert!(error_of(&bad_check)
            .starts_with("policy.toml: cities.hangzhou.hooks.trip[0]: 'horoscope' is not a check"));
        let twice = MINIMAL.replace(r#"["hangzhou"]"#, r#"["hangzhou", "HangZhou"]"#);
        assert!(
            error_of(&twice).contains("recognised_issuers[1]: issuer 'HangZhou' is listed twice")
        );
        assert!(error_of("version = 1").starts_with("policy.toml: not a valid policy document"));
    }
}
