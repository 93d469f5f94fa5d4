//! Who a status or a reason is about: the driver, the n-th passenger, or the
//! n-th candidate driver of a candidate filter.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    Driver,
    /// Index into the request's `passengers` array.
    Passenger(usize),
    /// Index into the candidate filter's `drivers` array.
    Candidate(usize),
}

impl Party {
    pub fn role(self) -> &'static str {
        match self {
            Party::Driver => "driver",
            Party::Passenger(_) => "passenger",
            Party::Candidate(_) => "candidate",
        }
    }

    pub fn index(self) -> Option<usize> {
        match self {
            Party::Driver => None,
            Party::Passenger(i) | Party::Candidate(i) => Some(i),
        }
    }
}

/// Serialises as the fields `party` and (for passengers and candidates)
/// `index`: `{"party": "passenger", "index": 0}`.
impl Serialize for Party {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("party", self.role())?;
        if let Some(index) = self.index() {
            map.serialize_entry("index", &index)?;
        }
        map.end()
    }
}
