//! The hooks' requests: their wire forms and the parsed, valid `Check`.
//!
//! `*Body` types are whatever JSON arrived; a `Check` is a request that passed
//! every rule (id grammar, list sizes, nobody twice). Only the latter travels
//! past the route.

use serde::Deserialize;

use super::{CityCode, Hook, InvalidIdentifier, Party, SubjectId, TripId};

pub const MAX_PASSENGERS: usize = 8;

/// The trip-match hook's request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"trip_id": "T-1001", "city": "hangzhou", "driver": {"id": "D-42"}, "passengers": [{"id": "P-7"}]}))]
pub struct TripCheckBody {
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub trip_id: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub city: String,
    pub driver: PartyBody,
    /// 1 to 8 passengers, none of them the driver, none twice.
    #[schema(min_items = 1, max_items = 8)]
    pub passengers: Vec<PartyBody>,
}

/// A party: `id` is 1–128 characters of `[A-Za-z0-9._:-]`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PartyBody {
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
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

/// A parsed check of any hook: every party with its subject, all distinct.
#[derive(Debug, Clone)]
pub struct Check {
    pub hook: Hook,
    pub city: CityCode,
    /// The trip (or order) the check is for; none for a driver's shift.
    pub reference: Option<TripId>,
    parties: Vec<(Party, SubjectId)>,
}

impl Check {
    /// Every party with the subject it stands for, in request order
    /// (driver, passengers, candidates).
    pub fn parties(&self) -> impl Iterator<Item = (Party, &SubjectId)> {
        self.parties
            .iter()
            .map(|(party, subject)| (*party, subject))
    }

    pub fn subjects(&self) -> Vec<SubjectId> {
        self.parties.iter().map(|(_, id)| id.clone()).collect()
    }
}

/// Collects parties, refusing empty, malformed or repeated subjects. `field`
/// names where each party came from, for error messages.
struct PartyList {
    parties: Vec<(Party, SubjectId)>,
    fields: Vec<String>,
}

impl PartyList {
    fn new() -> Self {
        Self {
            parties: Vec::new(),
            fields: Vec::new(),
        }
    }

    fn add(&mut self, party: Party, field: String, raw: &str) -> Result<(), InvalidRequest> {
        let id = SubjectId::parse(raw).map_err(|e| InvalidRequest::identifier(field.clone(), e))?;
        if let Some(first) = self.parties.iter().position(|(_, seen)| *seen == id) {
            return Err(InvalidRequest::new(
                field,
                format!(
                    "is the same subject as {}; each subject may appear once",
                    self.fields[first]
                ),
            ));
        }
        self.parties.push((party, id));
        self.fields.push(field);
        Ok(())
    }

    /// The `passengers` list every hook that has one shares: 1 to 8.
    fn add_passengers(&mut self, list: &[PartyBody]) -> Result<(), InvalidRequest> {
        self.add_list(
            ("passengers", "passenger"),
            Party::Passenger,
            list,
            MAX_PASSENGERS,
        )
    }

    /// `name` is the plural field name; `one` its singular, for messages.
    fn add_list(
        &mut self,
        (name, one): (&str, &str),
        party: fn(usize) -> Party,
        list: &[PartyBody],
        max: usize,
    ) -> Result<(), InvalidRequest> {
        if list.is_empty() {
            return Err(InvalidRequest::new(
                name,
                format!("must list at least one {one}"),
            ));
        }
        if list.len() > max {
            return Err(InvalidRequest::new(
                name,
                format!("lists {} {name}; at most {max} are allowed", list.len()),
            ));
        }
        for (i, entry) in list.iter().enumerate() {
            self.add(party(i), format!("{name}[{i}].id"), &entry.id)?;
        }
        Ok(())
    }
}

fn city(raw: &str) -> Result<CityCode, InvalidRequest> {
    CityCode::parse(raw).map_err(|e| InvalidRequest::identifier("city", e))
}

fn reference(field: &str, raw: &str) -> Result<TripId, InvalidRequest> {
    TripId::parse(raw).map_err(|e| InvalidRequest::identifier(field.to_owned(), e))
}

impl TryFrom<TripCheckBody> for Check {
    type Error = InvalidRequest;

    fn try_from(body: TripCheckBody) -> Result<Self, Self::Error> {
        let reference = reference("trip_id", &body.trip_id)?;
        let city = city(&body.city)?;
        let mut parties = PartyList::new();
        parties.add(Party::Driver, "driver.id".into(), &body.driver.id)?;
        parties.add_passengers(&body.passengers)?;
        Ok(Self {
            hook: Hook::Trip,
            city,
            reference: Some(reference),
            parties: parties.parties,
        })
    }
}

/// `POST /v1/checks/driver-shift`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DriverShiftBody {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub city: String,
    pub driver: PartyBody,
}

impl TryFrom<DriverShiftBody> for Check {
    type Error = InvalidRequest;

    fn try_from(body: DriverShiftBody) -> Result<Self, Self::Error> {
        let city = city(&body.city)?;
        let mut parties = PartyList::new();
        parties.add(Party::Driver, "driver.id".into(), &body.driver.id)?;
        Ok(Self {
            hook: Hook::DriverShift,
            city,
            reference: None,
            parties: parties.parties,
        })
    }
}

/// `POST /v1/checks/passenger-order`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PassengerOrderBody {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub city: String,
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub order_id: String,
    /// 1 to 8 passengers, none twice.
    #[schema(min_items = 1, max_items = 8)]
    pub passengers: Vec<PartyBody>,
}

impl TryFrom<PassengerOrderBody> for Check {
    type Error = InvalidRequest;

    fn try_from(body: PassengerOrderBody) -> Result<Self, Self::Error> {
        let reference = reference("order_id", &body.order_id)?;
        let city = city(&body.city)?;
        let mut parties = PartyList::new();
        parties.add_passengers(&body.passengers)?;
        Ok(Self {
            hook: Hook::PassengerOrder,
            city,
            reference: Some(reference),
            parties: parties.parties,
        })
    }
}

pub const MAX_CANDIDATES: usize = 200;

/// `POST /v1/checks/candidates`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CandidatesBody {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub city: String,
    #[schema(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub trip_id: String,
    /// 1 to 8 passengers.
    #[schema(min_items = 1, max_items = 8)]
    pub passengers: Vec<PartyBody>,
    /// 1 to 200 candidate drivers, none twice, none a passenger.
    #[schema(min_items = 1, max_items = 200)]
    pub drivers: Vec<PartyBody>,
}

impl TryFrom<CandidatesBody> for Check {
    type Error = InvalidRequest;

    fn try_from(body: CandidatesBody) -> Result<Self, Self::Error> {
        let reference = reference("trip_id", &body.trip_id)?;
        let city = city(&body.city)?;
        let mut parties = PartyList::new();
        parties.add_passengers(&body.passengers)?;
        parties.add_list(
            ("drivers", "driver"),
            Party::Candidate,
            &body.drivers,
            MAX_CANDIDATES,
        )?;
        Ok(Self {
            hook: Hook::Candidates,
            city,
            reference: Some(reference),
            parties: parties.parties,
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
        let check = Check::try_from(body("D-1", &["P-1", "P-2"])).unwrap();
        let parties: Vec<Party> = check.parties().map(|(p, _)| p).collect();
        assert_eq!(
            parties,
            vec![Party::Driver, Party::Passenger(0), Party::Passenger(1)]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = Check::try_from(body("D-1", &["P-1", "P-1"])).unwrap_err();
        assert_eq!(err.field, "passengers[1].id");
        let err = Check::try_from(body("D-1", &["D-1"])).unwrap_err();
        assert_eq!(err.field, "passengers[0].id");
        let err = Check::try_from(body("D-1", &[])).unwrap_err();
        assert_eq!(err.field, "passengers");
        let nine: Vec<String> = (0..9).map(|i| format!("P-{i}")).collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        assert_eq!(
            Check::try_from(body("D-1", &nine)).unwrap_err().field,
            "passengers"
        );
    }
}
