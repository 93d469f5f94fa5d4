//! How strict a health code is, for the one question the caches must answer
//! without the whole policy: two statuses of one subject carry the same
//! timestamp, which one stands? The stricter one, always, so that a tie can
//! never let green replace red.
//!
//! The ranks come from the policy's palettes (an issuer's `orange` may be
//! yellow); a colour or issuer no palette lists ranks strictest of all,
//! because an unknown colour is never green.

use std::collections::HashMap;

use super::{Colour, HealthCode, IssuerId, Level};

/// The rank of anything that is not a known level (unknown colour or
/// issuer, no code at all): above red.
pub const UNKNOWN_RANK: u8 = 3;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strictness {
    levels: HashMap<IssuerId, HashMap<Colour, Level>>,
}

impl Strictness {
    pub fn new(levels: HashMap<IssuerId, HashMap<Colour, Level>>) -> Self {
        Self { levels }
    }

    /// The level a code maps to under its issuer's palette, if any.
    pub fn level_of(&self, code: &HealthCode) -> Option<Level> {
        self.levels.get(&code.issuer)?.get(&code.colour).copied()
    }

    /// 0 green, 1 yellow, 2 red, `UNKNOWN_RANK` for anything else.
    pub fn rank(&self, code: &HealthCode) -> u8 {
        match self.level_of(code) {
            Some(level) => level_rank(level),
            None => UNKNOWN_RANK,
        }
    }
}

pub fn level_rank(level: Level) -> u8 {
    match level {
        Level::Green => 0,
        Level::Yellow => 1,
        Level::Red => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_colours_and_issuers_rank_above_red() {
        let palette = HashMap::from([
            (Colour::new("green"), Level::Green),
            (Colour::new("orange"), Level::Yellow),
            (Colour::new("red"), Level::Red),
        ]);
        let strictness = Strictness::new(HashMap::from([(IssuerId::new("xiamen"), palette)]));
        let code = |colour: &str, issuer: &str| HealthCode {
            colour: Colour::new(colour),
            issuer: IssuerId::new(issuer),
            renewed_at: chrono::Utc::now(),
            colour_since: None,
        };
        assert_eq!(strictness.rank(&code("green", "xiamen")), 0);
        assert_eq!(strictness.rank(&code("Orange", "xiamen")), 1);
        assert_eq!(strictness.rank(&code("red", "xiamen")), 2);
        assert_eq!(strictness.rank(&code("blue", "xiamen")), UNKNOWN_RANK);
        assert_eq!(strictness.rank(&code("green", "mars")), UNKNOWN_RANK);
    }
}
