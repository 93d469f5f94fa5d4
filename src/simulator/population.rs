//! The seeded population: `D-000000`.. drivers and `P-0000000`.. passengers
//! whose codes are a pure function of (seed, id), so any size costs no memory
//! and the same seed always gives the same people.
//!
//! The mix is meant to look like a city in an outbreak week: mostly green,
//! some yellow and red, Xiamen's orange, codes from other regions, a colour
//! no policy knows, codes not renewed for days, and people without a code.

use chrono::{DateTime, TimeDelta, Utc};

use crate::provider_api::{HealthCodeRecord, ItineraryRecord, Visit};

#[derive(Debug, Clone, Copy)]
pub struct PopulationSpec {
    pub drivers: u64,
    pub passengers: u64,
    pub seed: u64,
}

pub struct Population {
    spec: PopulationSpec,
    /// Codes are renewed relative to this instant.
    born: DateTime<Utc>,
}

/// (share in per-mille, colour, issuer, hours since renewal or None for
/// "renewed within the last day"), in cumulative order. The remainder has no
/// code.
const MIX: [(u64, &str, &str, Option<i64>); 9] = [
    (800, "green", "hangzhou", None),
    (60, "green", "zhejiang", None),
    (40, "green", "national", None),
    (30, "yellow", "hangzhou", None),
    (20, "red", "hangzhou", None),
    (15, "orange", "xiamen", None),
    (10, "green", "xiamen", None),
    (5, "grey", "hangzhou", None),
    (5, "green", "hangzhou", Some(50)),
];

impl Population {
    pub fn new(spec: PopulationSpec) -> Self {
        Self {
            spec,
            born: Utc::now(),
        }
    }

    pub fn size(&self) -> u64 {
        self.spec.drivers + self.spec.passengers
    }

    pub fn driver_id(index: u64) -> String {
        format!("D-{index:06}")
    }

    pub fn passenger_id(index: u64) -> String {
        format!("P-{index:07}")
    }

    fn is_member(&self, subject_id: &str) -> bool {
        let (digits, count) = if let Some(d) = subject_id.strip_prefix("D-") {
            (d, self.spec.drivers)
        } else if let Some(d) = subject_id.strip_prefix("P-") {
            (d, self.spec.passengers)
        } else {
            return false;
        };
        digits.bytes().all(|b| b.is_ascii_digit()) && digits.parse::<u64>().is_ok_and(|i| i < count)
    }

    /// The seeded code of a member of the population; `None` for people
    /// without a code and for ids outside the population.
    pub fn code_of(&self, subject_id: &str) -> Option<HealthCodeRecord> {
        if !self.is_member(subject_id) {
            return None;
        }
        let hash = mix(self.spec.seed ^ fnv1a(subject_id.as_bytes()));
        let mut pick = hash % 1000;
        for (share, colour, issuer, age_hours) in MIX {
            if pick < share {
                let age = match age_hours {
                    Some(hours) => TimeDelta::hours(hours),
                    None => TimeDelta::minutes(((hash >> 20) % (20 * 60)) as i64),
                };
                let renewed_at = self.born - age;
                // The colour has held since some day of its period: up to
                // 6 days for yellow, 13 for red, 60 for the others.
                let days_held = match colour {
                    "yellow" | "orange" => 7,
                    "red" => 14,
                    _ => 61,
                };
                let held = TimeDelta::hours(((hash >> 40) % (days_held * 24 - 1)) as i64);
                return Some(HealthCodeRecord::v2(
                    subject_id,
                    colour,
                    issuer,
                    renewed_at - held,
                    renewed_at,
                ));
            }
            pick -= share;
        }
        None
    }
}

const AREAS: [&str; 5] = ["420100", "310000", "110000", "440300", "510100"];

impl Population {
    /// The seeded itinerary card of a member: 4% visited a risk area in the
    /// last 10 days, 3% between 20 and 29 days ago; the others travelled
    /// only through low-risk regions.
    pub fn itinerary_of(&self, subject_id: &str) -> Option<ItineraryRecord> {
        if !self.is_member(subject_id) {
            return None;
        }
        let hash = mix(self.spec.seed.rotate_left(17) ^ fnv1a(subject_id.as_bytes()));
        let today = self.born.date_naive();
        let area = AREAS[(hash >> 12) as usize % AREAS.len()];
        let days_ago = |d: u64| today - TimeDelta::days(d as i64);
        let mut visits = vec![Visit {
            region: "330100".into(),
            risk: "low".into(),
            date: days_ago((hash >> 24) % 14),
        }];
        match hash % 100 {
            0..=3 => visits.push(Visit {
                region: area.into(),
                risk: "high".into(),
                date: days_ago((hash >> 32) % 10),
            }),
            4..=6 => visits.push(Visit {
                region: area.into(),
                risk: "medium".into(),
                date: days_ago(20 + (hash >> 32) % 10),
            }),
            _ => {}
        }
        Some(ItineraryRecord {
            subject_id: subject_id.to_owned(),
            days: 30,
            visits,
        })
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// splitmix64's finaliser: spreads nearby inputs over the whole range.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_deterministic_and_varied() {
        let spec = PopulationSpec {
            drivers: 10,
            passengers: 10_000,
            seed: 7,
        };
        let a = Population::new(spec);
        let b = Population::new(spec);
        let mut colours = std::collections::BTreeMap::new();
        let mut missing = 0;
        for i in 0..10_000 {
            let id = Population::passenger_id(i);
            let code = a.code_of(&id);
            assert_eq!(
                code.as_ref().map(|c| &c.color),
                b.code_of(&id).as_ref().map(|c| &c.color)
            );
            match code {
                Some(c) => *colours.entry(c.color).or_insert(0) += 1,
                None => missing += 1,
            }
        }
        assert!(colours["green"] > 8_000, "{colours:?}");
        for colour in ["yellow", "red", "orange", "grey"] {
            assert!(colours[colour] > 10, "{colour}: {colours:?}");
        }
        assert!(missing > 50);
        assert!(a.code_of("P-0010000").is_none(), "outside the population");
        assert!(a.code_of("X-1").is_none());
    }
}
