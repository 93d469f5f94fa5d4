//! The moments dispatch checks people at.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// Before a trip is assigned: the driver and every passenger.
    Trip,
    /// Before a driver goes on duty.
    DriverShift,
    /// Before a passenger's order is accepted.
    PassengerOrder,
    /// Before matching: which candidate drivers may take the trip.
    Candidates,
}

impl Hook {
    pub const ALL: [Hook; 4] = [
        Hook::Trip,
        Hook::DriverShift,
        Hook::PassengerOrder,
        Hook::Candidates,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Trip => "trip",
            Hook::DriverShift => "driver_shift",
            Hook::PassengerOrder => "passenger_order",
            Hook::Candidates => "candidates",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|hook| hook.as_str() == raw)
    }
}
