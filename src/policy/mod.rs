//! City policy: which codes are acceptable where, as data.
//!
//! `document` loads and validates config/policy.toml into a `Policy` that can
//! only hold consistent rules; `evaluate` is a pure function from a policy and
//! the parties' lookups to a decision. Nothing in this module does I/O apart
//! from reading the document file at load time.

mod document;
mod evaluate;

pub use crate::domain::Standing;
pub use document::{
    CheckKind, CityPolicy, HookRules, Isolation, OnUnavailable, Policy, PolicyError, RiskLevel,
};
pub use evaluate::{evaluate, Evaluation};
