//! The trip-match hook's request: its wire form and its parsed, valid form.
//!
//! `TripCheckBody` is whatever JSON arrived; `TripCheck` is a request that
//! passed every rule (id grammar, 1..=8 passengers, nobody twice). Only the
//! latter travels past the route.

use serde::Deserialize;

use super::{CityCode, InvalidIdentifier, Party, SubjectId, TripId};

pub const MAX_PASSENGERS: usize = 8;

/// The trip-match hook's request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"trip_id": "T-1001", "city": "hangzhou", "driver": {"id": "D-42"}, "passengers": [{"id": "P-7"}]}))]
pub struct TripCheckBody {
    pub trip_id: String,
    pub city: String,
    pub driver: PartyBody,
    /// 1 to 8 passengers, none of them the driver, none twice.
    pub passengers: Vec<PartyBody>,
}

/// A party: `id` is 1–128 characters of `[A-Za-z0-9._:-]`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PartyBody {
    pub id: String,
}

/// A request that is well-formed JSON but breaks a rule. `field` is a JSON
/// path (`passengers[2].id`); `problem` never quotes a subject id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InvalidRequest {
    pub field: String,
    pub problem: String,
}

impl InvalidRequest {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn identifier(field: impl Into<String>, error: InvalidIdentifier) -> Self {
        Self::new(field, error.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct TripCheck {
    pub trip_id: TripId,
    pub city: CityCode,
    pub driver: SubjectId,
    /// 1..=MAX_PASSENGERS distinct subjects, none of them the driver.
    pub passengers: Vec<SubjectId>,
}

impl TripCheck {
    /// Every party with the subject it stands for, driver first.
    pub fn parties(&self) -> impl Iterator<Item = (Party, &SubjectId)> {
        std::iter::once((Party::Driver, &self.driver)).chain(
            self.passengers
                .iter()
                .enumerate()
                .map(|(i, id)| (Party::Passenger(i), id)),
        )
    }

    pub fn subjects(&self) -> Vec<SubjectId> {
        self.parties().map(|(_, id)| id.clone()).collect()
    }
}

impl TryFrom<TripCheckBody> for TripCheck {
    type Error = InvalidRequest;

    fn try_from(body: TripCheckBody) -> Result<Self, Self::Error> {
        let trip_id =
            TripId::parse(&body.trip_id).map_err(|e| InvalidRequest::identifier("trip_id", e))?;
        let city =
            CityCode::parse(&body.city).map_err(|e| InvalidRequest::identifier("city", e))?;
        let driver = SubjectId::parse(&body.driver.id)
            .map_err(|e| InvalidRequest::identifier("driver.id", e))?;

        if body.passengers.is_empty() {
            return Err(InvalidRequest::new(
                "passengers",
                "must list at least one passenger",
            ));
        }
        if body.passengers.len() > MAX_PASSENGERS {
            return Err(InvalidRequest::new(
                "passengers",
                format!(
                    "lists {} passengers; at most {MAX_PASSENGERS} are allowed",
                    body.passengers.len()
                ),
            ));
        }

        let mut passengers: Vec<SubjectId> = Vec::with_capacity(body.passengers.len());
        for (i, passenger) in body.passengers.iter().enumerate() {
            let field = format!("passengers[{i}].id");
            let id = SubjectId::parse(&passenger.id)
                .map_err(|e| InvalidRequest::identifier(field.clone(), e))?;
            if id == driver {
                return Err(InvalidRequest::new(
                    field,
                    "is the same subject as driver.id; a driver cannot be their own passenger",
                ));
            }
            if let Some(first) = passengers.iter().position(|seen| *seen == id) {
                return Err(InvalidRequest::new(
                    field,
                    format!("repeats passengers[{first}].id; each passenger must be listed once"),
                ));
            }
            passengers.push(id);
        }

        Ok(Self {
            trip_id,
            city,
            driver,
            passengers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(driver: &str, passengers: &[&str]) -> TripCheckBody {
        TripCheckBody {
            trip_id: "T-1".into(),
            city: "hangzhou".into(),
            driver: PartyBody { id: driver.into() },
            passengers: passengers
                .iter()
                .map(|p| PartyBody { id: (*p).into() })
                .collect(),
        }
    }

    #[test]
    fn a_valid_body_parses_with_parties_in_order() {
        let check = TripCheck::try_from(body("D-1", &["P-1", "P-2"])).unwrap();
        let parties: Vec<Party> = check.parties().map(|(p, _)| p).collect();
        assert_eq!(
            parties,
            vec![Party::Driver, Party::Passenger(0), Party::Passenger(1)]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = TripCheck::try_from(body("D-1", &["P-1", "P-1"])).unwrap_err();
        assert_eq!(err.field, "passengers[1].id");
        let err = TripCheck::try_from(body("D-1", &["D-1"])).unwrap_err();
        assert_eq!(err.field, "passengers[0].id");
        let err = TripCheck::try_from(body("D-1", &[])).unwrap_err();
        assert_eq!(err.field, "passengers");
        let nine: Vec<String> = (0..9).map(|i| format!("P-{i}")).collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        assert_eq!(
            TripCheck::try_from(body("D-1", &nine)).unwrap_err().field,
            "passengers"
        );
    }
}
