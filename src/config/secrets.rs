//! Everything in the settings that is a secret, or is read from one: the
//! audit keys, the cache's pseudonym secret, the head-signing key, the
//! events secret, client token hashes. Each is read once, in
//! `Settings::parse`, and checked there (lengths, distinctness, production's
//! refusal of example values). A `Secret` never prints its value.

use std::path::PathBuf;

use serde::Deserialize;

use super::{
    sha256, AuditBackend, ClientSettings, ConfigError, Environment, Role, Settings,
    EXAMPLE_SIGNING_KEY_IDS, EXAMPLE_TOKENS,
};

/// A secret value from a configuration file or variable: its `Debug` is
/// redacted, so no log line or panic message can print it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// A secret given inline or as a file (a mounted Kubernetes secret; one
/// trailing newline is not part of it).
pub(super) fn read_secret(
    inline: &Option<Secret>,
    file: &Option<PathBuf>,
) -> Result<String, String> {
    match (inline, file) {
        (Some(secret), None) => Ok(secret.expose().to_owned()),
        (None, Some(file)) => crate::tls::read_secret_file(file),
        _ => Err("set exactly one of `secret` and `secret_file`".into()),
    }
}

/// Whether a secret is one of the examples shipped in configuration files.
fn is_example_secret(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    [
        "local-development",
        "example",
        "replace",
        "changeme",
        "change-me",
    ]
    .iter()
    .any(|marker| lower.contains(marker))
}

/// What `Settings::parse` reads and checks once; start-up consumes it.
pub struct Parsed {
    pub provider_url: reqwest::Url,
    pub national_url: Option<reqwest::Url>,
    pub itinerary_url: Option<reqwest::Url>,
    pub audit_keys: crate::audit::AuditKeys,
    pub cache_keys: crate::status::CacheKeys,
    pub signer: crate::audit::HeadSigner,
    /// The signer's public key and the retired ones.
    pub public_keys: crate::audit::PublicKeys,
    pub events_secret: Secret,
    pub auth_clients: Vec<(ClientSettings, [u8; 32])>,
    /// Where status-change notifications go, and their secret; `None`: off.
    pub notify: Option<(reqwest::Url, Secret)>,
    /// TLS material and password for Redis.
    pub redis_access: crate::status::RedisAccess,
    /// PEM CAs of the provider, the national platform, the itinerary source.
    pub upstream_cas: UpstreamCas,
}

/// The CA files of the upstreams, read and checked.
#[derive(Debug, Clone, Default)]
pub struct UpstreamCas {
    pub provider: Option<Vec<u8>>,
    pub national: Option<Vec<u8>>,
    pub itinerary: Option<Vec<u8>>,
}

/// Reads a PEM file of certificates named by `key`, checking it holds some.
fn read_certificates(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid { key, problem };
    let pem = crate::tls::read(path).map_err(invalid)?;
    crate::tls::certificates(&pem).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    Ok(pem)
}

impl Settings {
    /// The audit keys, secrets read from their files where configured.
    pub fn audit_keys(&self) -> Result<crate::audit::AuditKeys, ConfigError> {
        self.audit_keys_of(&self.audit_key_secrets()?)
    }

    /// The (id, secret) of every audit key, each read once.
    pub(super) fn audit_key_secrets(&self) -> Result<Vec<(String, String)>, ConfigError> {
        let mut pairs = Vec::with_capacity(self.audit.keys.len());
        for (i, key) in self.audit.keys.iter().enumerate() {
            let secret = read_secret(&key.secret, &key.secret_file).map_err(|problem| {
                ConfigError::Invalid {
                    key: "audit.keys",
                    problem: format!("key {i} ({}): {problem}", key.id),
                }
            })?;
            if self.environment == Environment::Production && is_example_secret(&secret) {
                return Err(ConfigError::Invalid {
                    key: "audit.keys",
                    problem: format!("key {}: production refuses an example secret", key.id),
                });
            }
            pairs.push((key.id.clone(), secret));
        }
        Ok(pairs)
    }

    pub(super) fn audit_keys_of(
        &self,
        pairs: &[(String, String)],
    ) -> Result<crate::audit::AuditKeys, ConfigError> {
        crate::audit::AuditKeys::new(pairs, &self.audit.active_key).map_err(|e| {
            ConfigError::Invalid {
                key: "audit.keys",
                problem: e.to_string(),
            }
        })
    }

    /// Clients with their token hashes read and checked, their scopes
    /// checked (a fleet names dispatch clients; cities are city codes, for
    /// the roles that read the trail), and their rate
    /// limits resolved (the client's own, else its role's, else the default).
    pub fn auth_clients(&self) -> Result<Vec<(ClientSettings, [u8; 32])>, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            key: "auth.clients",
            problem,
        };
        let usable = |rate: f64, burst: f64| rate > 0.0 && rate.is_finite() && burst >= 1.0;
        if !usable(self.auth.rate_per_sec, self.auth.burst) {
            return Err(ConfigError::Invalid {
                key: "auth.rate_per_sec",
                problem: "rate_per_sec must be > 0 and burst >= 1".into(),
            });
        }
        for (role, limit) in &self.auth.role_limits {
            if !usable(limit.rate_per_sec, limit.burst) {
                return Err(ConfigError::Invalid {
                    key: "auth.role_limits",
                    problem: format!("{}: rate_per_sec must be > 0 and burst >= 1", role.as_str()),
                });
            }
        }
        let mut clients = Vec::with_capacity(self.auth.clients.len());
        for (i, client) in self.auth.clients.iter().enumerate() {
            let hex = read_secret(&client.token_sha256, &client.token_sha256_file)
                .map_err(|p| invalid(format!("client {i} ({}): token_sha256: {p}", client.name)))?;
            let hash = crate::hexcode::decode32(hex.trim()).ok_or_else(|| {
                invalid(format!(
                    "client {i} ({}): token_sha256 must be 64 hex digits",
                    client.name
                ))
            })?;
            if !crate::auth::is_client_name(&client.name)
                || clients
                    .iter()
                    .any(|(c, _): &(ClientSettings, _)| c.name == client.name)
            {
                return Err(invalid(format!(
                    "client {i}: names must be unique, 1 to 64 of a-z, A-Z, 0-9, '.', '_' and '-'"
                )));
            }
            check_scope(i, client, &self.auth.clients).map_err(invalid)?;
            if clients.iter().any(|(_, h)| *h == hash) {
                return Err(invalid(format!(
                    "client {i} ({}): shares its token with another client",
                    client.name
                )));
            }
            let role_limit = self.auth.role_limits.get(&client.role);
            let mut client = client.clone();
            let rate = client
                .rate_per_sec
                .or(role_limit.map(|l| l.rate_per_sec))
                .unwrap_or(self.auth.rate_per_sec);
            let burst = client
                .burst
                .or(role_limit.map(|l| l.burst))
                .unwrap_or(self.auth.burst);
            if !usable(rate, burst) {
                return Err(invalid(format!(
                    "client {i} ({}): rate_per_sec must be > 0 and burst >= 1",
                    client.name
                )));
            }
            (client.rate_per_sec, client.burst) = (Some(rate), Some(burst));
            clients.push((client, hash));
        }
        if self.auth.enabled && clients.is_empty() {
            return Err(invalid(
                "auth is enabled but no client is configured".into(),
            ));
        }
        Ok(clients)
    }

    /// Production must authenticate, must not run on example secrets, must
    /// keep its audit trail on disk, and must share its cache and trail
    /// between instances unless it runs exactly one.
    pub(super) fn refuse_unsafe_production(
        &self,
        events: &Secret,
        clients: &[(ClientSettings, [u8; 32])],
    ) -> Result<(), ConfigError> {
        if self.audit.backend == AuditBackend::Sqlite
            && self.audit.sqlite_path.as_os_str() == ":memory:"
        {
            return Err(ConfigError::Invalid {
                key: "audit.sqlite_path",
                problem: "production refuses an in-memory audit trail (it is lost on restart)"
                    .into(),
            });
        }
        if !self.server.single_instance {
            if self.cache.backend == super::CacheBackend::Memory {
                return Err(ConfigError::Invalid {
                    key: "cache.backend",
                    problem: "production refuses the in-process cache with several instances \
                              (a push, an idempotency key or a notification pass would reach one \
                              of them); use \"redis\", or set server.single_instance = true"
                        .into(),
                });
            }
            if self.audit.backend == AuditBackend::Sqlite {
                return Err(ConfigError::Invalid {
                    key: "audit.backend",
                    problem: "production refuses the SQLite trail with several instances (each \
                              would keep its own trail on its own disk); use \"postgres\", or set \
                              server.single_instance = true"
                        .into(),
                });
            }
        }
        if !self.server.allow_plaintext_backends {
            if self.cache.backend == super::CacheBackend::Redis && self.plaintext_redis() {
                return Err(ConfigError::Invalid {
                    key: "cache.redis_url",
                    problem: "production refuses Redis without TLS (use rediss://, with cache.redis_ca_file for a private CA), unless server.allow_plaintext_backends = true says the network is encrypted otherwise".into(),
                });
            }
            if self.audit.backend == AuditBackend::Postgres
                && !crate::audit::postgres_requires_tls(&self.audit.postgres_url)
            {
                return Err(ConfigError::Invalid {
                    key: "audit.postgres_url",
                    problem: "production refuses PostgreSQL without TLS (add ?sslmode=require, with audit.postgres_ca_file for a private CA), unless server.allow_plaintext_backends = true says the network is encrypted otherwise".into(),
                });
            }
        }
        if !self.auth.enabled {
            return Err(ConfigError::Invalid {
                key: "auth.enabled",
                problem: "production refuses to run without authentication".into(),
            });
        }
        if is_example_secret(events.expose()) {
            return Err(ConfigError::Invalid {
                key: "events.secret",
                problem: "production refuses an example secret".into(),
            });
        }
        for (client, hash) in clients {
            if EXAMPLE_TOKENS
                .iter()
                .any(|token| sha256(token.as_bytes()) == *hash)
            {
                return Err(ConfigError::Invalid {
                    key: "auth.clients",
                    problem: format!(
                        "client {}: production refuses an example token",
                        client.name
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether any Redis URL in use (the cluster's nodes, else the one URL)
    /// is not `rediss://`.
    fn plaintext_redis(&self) -> bool {
        let cache = &self.cache;
        if cache.redis_cluster_nodes.is_empty() {
            !cache.redis_url.starts_with("rediss://")
        } else {
            cache
                .redis_cluster_nodes
                .iter()
                .any(|u| !u.starts_with("rediss://"))
        }
    }

    /// Redis's TLS material and password, read once and checked.
    pub fn redis_access(&self) -> Result<crate::status::RedisAccess, ConfigError> {
        let cache = &self.cache;
        let given = crate::tls::given;
        let ca_pem = given(&cache.redis_ca_file)
            .map(|path| read_certificates("cache.redis_ca_file", path))
            .transpose()?;
        let client_identity = match (
            given(&cache.redis_client_cert_file),
            given(&cache.redis_client_key_file),
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let cert = read_certificates("cache.redis_client_cert_file", cert)?;
                let key_pem = crate::tls::read(key).map_err(|problem| {
                    ConfigError::Invalid {
                        key: "cache.redis_client_key_file",
                        problem,
                    }
                })?;
                crate::tls::private_key(&key_pem).map_err(|problem| ConfigError::Invalid {
                    key: "cache.redis_client_key_file",
                    problem,
                })?;
                Some((cert, key_pem))
            }
            _ => {
                return Err(ConfigError::Invalid {
                    key: "cache.redis_client_cert_file",
                    problem: "a client certificate needs its key (redis_client_key_file) and the key its certificate".into(),
                })
            }
        };
        let tls_material = ca_pem.is_some() || client_identity.is_some();
        if cache.backend == super::CacheBackend::Redis && tls_material && self.plaintext_redis() {
            return Err(ConfigError::Invalid {
                key: "cache.redis_url",
                problem: "TLS files are configured for Redis but its URL is not rediss://".into(),
            });
        }
        let password = given(&cache.redis_password_file)
            .map(|path| {
                crate::tls::read_secret_file(path).map_err(|problem| ConfigError::Invalid {
                    key: "cache.redis_password_file",
                    problem,
                })
            })
            .transpose()?;
        Ok(crate::status::RedisAccess {
            ca_pem,
            client_identity,
            password,
        })
    }

    /// The upstreams' CA files, read once and checked.
    pub fn upstream_cas(&self) -> Result<UpstreamCas, ConfigError> {
        let read = |key, path: &Option<PathBuf>| {
            crate::tls::given(path)
                .map(|p| read_certificates(key, p))
                .transpose()
        };
        Ok(UpstreamCas {
            provider: read("provider.ca_file", &self.provider.ca_file)?,
            national: read("national.ca_file", &self.national.ca_file)?,
            itinerary: read("itinerary.ca_file", &self.itinerary.ca_file)?,
        })
    }

    /// PostgreSQL's CA and password files: readable and what they say.
    pub(super) fn check_postgres_access(&self) -> Result<(), ConfigError> {
        if let Some(path) = crate::tls::given(&self.audit.postgres_ca_file) {
            read_certificates("audit.postgres_ca_file", path)?;
        }
        if let Some(path) = crate::tls::given(&self.audit.postgres_password_file) {
            crate::tls::read_secret_file(path).map_err(|problem| ConfigError::Invalid {
                key: "audit.postgres_password_file",
                problem,
            })?;
        }
        Ok(())
    }

    /// The notification target and its secret, when `notify.url` is set.
    pub fn notify_target(&self) -> Result<Option<(reqwest::Url, Secret)>, ConfigError> {
        if self.notify.url.trim().is_empty() {
            return Ok(None);
        }
        let url = super::http_url("notify.url", &self.notify.url)?;
        let secret =
            read_secret(&self.notify.secret, &self.notify.secret_file).map_err(|problem| {
                ConfigError::Invalid {
                    key: "notify.secret",
                    problem,
                }
            })?;
        if secret.len() < 16 {
            return Err(ConfigError::Invalid {
                key: "notify.secret",
                problem: "must be at least 16 bytes".into(),
            });
        }
        if self.environment == super::Environment::Production && is_example_secret(&secret) {
            return Err(ConfigError::Invalid {
                key: "notify.secret",
                problem: "production refuses an example secret".into(),
            });
        }
        Ok(Some((url, Secret(secret))))
    }

    /// The shared secret of pushed status events.
    pub fn events_secret(&self) -> Result<Secret, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            key: "events.secret",
            problem,
        };
        let secret = read_secret(&self.events.secret, &self.events.secret_file).map_err(invalid)?;
        if secret.len() < 16 {
            return Err(invalid("must be at least 16 bytes".into()));
        }
        Ok(Secret(secret))
    }

    /// The cache secrets, read once and checked: at least 16 bytes, and
    /// none equal to `others` (the audit keys' and the events secret, as
    /// `parse` read them: a pseudonym in Redis must not be joinable with
    /// the trail).
    pub(super) fn cache_keys(
        &self,
        others: &[&str],
    ) -> Result<crate::status::CacheKeys, ConfigError> {
        let active = read_secret(
            &self.cache.pseudonym_secret,
            &self.cache.pseudonym_secret_file,
        )
        .map_err(|problem| ConfigError::Invalid {
            key: "cache.pseudonym_secret",
            problem: problem.replace("`secret`", "`pseudonym_secret`"),
        })?;
        let previous = match (
            &self.cache.previous_pseudonym_secret,
            &self.cache.previous_pseudonym_secret_file,
        ) {
            (None, None) => None,
            (inline, file) => {
                Some(
                    read_secret(inline, file).map_err(|problem| ConfigError::Invalid {
                        key: "cache.previous_pseudonym_secret",
                        problem,
                    })?,
                )
            }
        };
        for (key, secret) in std::iter::once(("cache.pseudonym_secret", &active)).chain(
            previous
                .as_ref()
                .map(|p| ("cache.previous_pseudonym_secret", p)),
        ) {
            if secret.len() < 16 {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "must be at least 16 bytes".into(),
                });
            }
            if others.contains(&secret.as_str()) {
                return Err(ConfigError::Invalid {
                    key,
                    problem: "must differ from the audit keys and the events secret".into(),
                });
            }
        }
        if self.environment == Environment::Production && is_example_secret(&active) {
            return Err(ConfigError::Invalid {
                key: "cache.pseudonym_secret",
                problem: "production refuses an example secret".into(),
            });
        }
        Ok(crate::status::CacheKeys::new(
            active.as_bytes(),
            previous.as_deref().map(str::as_bytes),
        ))
    }

    /// The key that signs chain heads, read from `audit.signing_key_file`.
    /// Production refuses the example key shipped for local use.
    pub fn audit_signer(&self) -> Result<crate::audit::HeadSigner, ConfigError> {
        let invalid = |problem: String| ConfigError::Invalid {
            key: "audit.signing_key_file",
            problem,
        };
        let path = &self.audit.signing_key_file;
        if path.as_os_str().is_empty() {
            return Err(invalid(
                "must name the file of the Ed25519 key that signs chain heads \
                 (`tripgate audit keygen --out FILE` makes one)"
                    .into(),
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
        let signer = crate::audit::HeadSigner::from_text(&text)
            .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        if self.environment == Environment::Production
            && EXAMPLE_SIGNING_KEY_IDS.contains(&signer.key_id())
        {
            return Err(invalid(
                "production refuses the example signing key shipped for local use".into(),
            ));
        }
        Ok(signer)
    }

    /// The public keys signed heads are checked with: the signing key's and
    /// the retired ones.
    pub fn audit_public_keys(&self) -> Result<crate::audit::PublicKeys, ConfigError> {
        self.audit_public_keys_of(&self.audit_signer()?)
    }

    pub(super) fn audit_public_keys_of(
        &self,
        signer: &crate::audit::HeadSigner,
    ) -> Result<crate::audit::PublicKeys, ConfigError> {
        let mut keys = crate::audit::PublicKeys::parse(&self.audit.retired_public_keys.join(" "))
            .map_err(|e| ConfigError::Invalid {
            key: "audit.retired_public_keys",
            problem: e.to_string(),
        })?;
        keys.add(signer.public_key());
        Ok(keys)
    }
}

/// A client's scope: `clients` for a fleet only (and required), each a
/// configured dispatch client; `cities` for regulators and fleets only,
/// each a city code.
fn check_scope(i: usize, client: &ClientSettings, all: &[ClientSettings]) -> Result<(), String> {
    let name = &client.name;
    match (&client.clients, client.role) {
        (None, Role::Fleet) => {
            return Err(format!(
                "client {i} ({name}): a fleet must list the dispatch clients it may read (clients = [...])"
            ))
        }
        (Some(listed), Role::Fleet) => {
            if listed.is_empty() {
                return Err(format!("client {i} ({name}): clients must not be empty"));
            }
            for other in listed {
                if !all
                    .iter()
                    .any(|c| &c.name == other && c.role == Role::Dispatch)
                {
                    return Err(format!(
                        "client {i} ({name}): clients names {other:?}, which is not a configured dispatch client"
                    ));
                }
            }
        }
        (Some(_), role) => {
            return Err(format!(
                "client {i} ({name}): clients applies to role fleet only, not {}",
                role.as_str()
            ))
        }
        (None, _) => {}
    }
    if let Some(cities) = &client.cities {
        if !matches!(client.role, Role::Regulator | Role::Fleet) {
            return Err(format!(
                "client {i} ({name}): cities applies to roles regulator and fleet only"
            ));
        }
        if cities.is_empty() {
            return Err(format!(
                "client {i} ({name}): cities must not be empty (leave it out for every city)"
            ));
        }
        for city in cities {
            crate::domain::CityCode::parse(city)
                .map_err(|e| format!("client {i} ({name}): cities: {city:?}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_example_signing_key_is_known_as_an_example() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let text = std::fs::read_to_string(dir.join("audit-signing-key.example")).unwrap();
        let signer = crate::audit::HeadSigner::from_text(&text).unwrap();
        assert_eq!(super::EXAMPLE_SIGNING_KEY_IDS, [signer.key_id()]);
    }
}
