//! Who may call what: bearer tokens, roles and per-client rate limits.
//!
//! Clients are configured with a name, a role and the SHA-256 of their token
//! (never the token). A presented token is hashed and compared in constant
//! time against every client's hash, so neither the comparison nor the loop
//! leaks how close a guess was. Each client has a token bucket; an empty
//! bucket is a 429 with `Retry-After`. This module decides; the HTTP
//! middleware that asks it (`routes::guard`) and the mapping from routes to
//! roles live in `routes`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::{sha256, ClientSettings, Role};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required (Authorization: Bearer <token>)")]
    MissingToken,
    #[error("the bearer token is not recognised")]
    UnknownToken,
    #[error("client {client} (role {role}) may not call this endpoint; it needs role {needed}")]
    Forbidden {
        client: String,
        role: &'static str,
        needed: String,
    },
    #[error("client {client} is over its rate limit; retry after {retry_after_secs} s")]
    RateLimited {
        client: String,
        retry_after_secs: u64,
    },
}

impl AuthError {
    /// `client` (of `role`) may not call what only `needed` may.
    pub fn forbidden(client: &str, role: Role, needed: &[Role]) -> Self {
        AuthError::Forbidden {
            client: client.to_owned(),
            role: role.as_str(),
            needed: needed
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn new(per_second: f64, capacity: f64) -> Self {
        Self {
            capacity,
            per_second,
            tokens: capacity,
            refilled: Instant::now(),
        }
    }

    /// Takes a token, or says how long until one is available.
    fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.per_second,
            ))
        }
    }
}

pub struct Client {
    pub name: String,
    pub role: Role,
    token_sha256: [u8; 32],
    bucket: Mutex<TokenBucket>,
    clients: Option<Vec<String>>,
    cities: Option<Vec<String>>,
}

/// The authenticated caller, put in request extensions for handlers and logs.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// A fleet's dispatch clients: only their decisions may be read.
    pub clients: Option<Vec<String>>,
    /// Only decisions of these cities may be read (regulator, fleet).
    pub cities: Option<Vec<String>>,
}

/// Client names go into logs, metrics and the audit trail as they are:
/// 1 to 64 of a-z, A-Z, 0-9, '.', '_' and '-'.
pub fn is_client_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub struct Authenticator {
    enabled: bool,
    clients: Vec<Client>,
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    pub fn new(
        enabled: bool,
        clients: Vec<(ClientSettings, [u8; 32])>,
        default_rate: f64,
        default_burst: f64,
    ) -> Self {
        let clients = clients
            .into_iter()
            .map(|(settings, token_sha256)| Client {
                bucket: Mutex::new(TokenBucket::new(
                    settings.rate_per_sec.unwrap_or(default_rate),
                    settings.burst.unwrap_or(default_burst),
                )),
                name: settings.name,
                role: settings.role,
                token_sha256,
                clients: settings.clients,
                cities: settings.cities,
            })
            .collect();
        Self { enabled, clients }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The caller a console session names, if that client is still
    /// configured with one of `needed` (a session dies with its client or
    /// a change of its role); takes a token from its bucket like a request.
    pub fn caller_named(&self, name: &str, needed: &[Role]) -> Result<Caller, AuthError> {
        let client = self
            .clients
            .iter()
            .find(|c| c.name == name)
            .ok_or(AuthError::UnknownToken)?;
        self.admit(client, needed)
    }

    /// The SHA-256 of the token of the client named `name` (console
    /// sessions are bound to it: a new token ends the old sessions).
    pub fn token_digest(&self, name: &str) -> Option<[u8; 32]> {
        self.clients
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.token_sha256)
    }

    fn admit(&self, client: &Client, needed: &[Role]) -> Result<Caller, AuthError> {
        if !needed.contains(&client.role) {
            return Err(AuthError::forbidden(&client.name, client.role, needed));
        }
        let taken = client
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Err(wait) = taken {
            return Err(AuthError::RateLimited {
                client: client.name.clone(),
                retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        Ok(Caller {
            name: client.name.clone(),
            role: client.role,
            clients: client.clients.clone(),
            cities: client.cities.clone(),
        })
    }

    /// `Ok(None)` when authentication is disabled. `needed`: the roles
    /// that may call.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        needed: &[Role],
    ) -> Result<Option<Caller>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for client in &self.clients {
            if constant_time_eq(&client.token_sha256, &presented) {
                found = Some(client);
            }
        }
        let client = found.ok_or(AuthError::UnknownToken)?;
        self.admit(client, needed).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(
        name: &str,
        role: Role,
        token: &str,
        rate: f64,
        burst: f64,
    ) -> (ClientSettings, [u8; 32]) {
        (
            ClientSettings {
                name: name.into(),
                role,
                token_sha256: None,
                token_sha256_file: None,
                rate_per_sec: Some(rate),
                burst: Some(burst),
                clients: None,
                cities: None,
            },
            sha256(token.as_bytes()),
        )
    }

    #[test]
    fn tokens_roles_and_limits() {
        let auth = Authenticator::new(
            true,
            vec![
                client("d", Role::Dispatch, "dispatch-secret", 1.0, 2.0),
                client("r", Role::Regulator, "regulator-secret", 100.0, 100.0),
            ],
            1.0,
            1.0,
        );
        assert_eq!(
            auth.authorize(None, &[Role::Dispatch]).unwrap_err(),
            AuthError::MissingToken
        );
        assert_eq!(
            auth.authorize(Some("Bearer nope"), &[Role::Dispatch])
                .unwrap_err(),
            AuthError::UnknownToken
        );
        assert!(matches!(
            auth.authorize(Some("Bearer regulator-secret"), &[Role::Dispatch]),
            Err(AuthError::Forbidden { .. })
        ));
        let caller = auth
            .authorize(Some("Bearer dispatch-secret"), &[Role::Dispatch])
            .unwrap()
            .unwrap();
        assert_eq!(caller.name, "d");
        assert!(auth
            .authorize(Some("Bearer dispatch-secret"), &[Role::Dispatch])
            .is_ok());
        assert!(matches!(
            auth.authorize(Some("Bearer dispatch-secret"), &[Role::Dispatch]),
            Err(AuthError::RateLimited {
                retry_after_secs: 1,
                ..
            })
        ));
    }

    #[test]
    fn disabled_lets_everyone_through() {
        let auth = Authenticator::new(false, vec![], 1.0, 1.0);
        assert!(auth.authorize(None, &[Role::Ops]).unwrap().is_none());
    }
}
