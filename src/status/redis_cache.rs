//! The shared status cache in Redis.
//!
//! One long-lived multiplexed connection (`ConnectionManager`) serves every
//! request and reconnects by itself. All subjects of one request are read
//! with a single MGET and written back with a single pipeline. Every call is
//! bounded by `command_timeout`: a slow Redis degrades to cache misses, it
//! never stalls a decision.
//!
//! Keys are `<namespace>:v1:hc:<subject>`; the `v1` changes whenever the
//! value format does, so a rolling upgrade never misreads an old value.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::IntoConnectionInfo;

use super::{CacheError, CacheTtls, CachedStatus};
use crate::domain::SubjectId;

const KEY_FORMAT_VERSION: &str = "v1";

#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    key_prefix: String,
    ttls: CacheTtls,
    command_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RedisCacheOptions {
    pub url: String,
    pub namespace: String,
    pub ttls: CacheTtls,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
}

impl RedisCache {
    /// Prepares the connection without connecting: the service starts (and
    /// serves from the provider) even while Redis is down.
    pub fn new(options: RedisCacheOptions) -> Result<Self, redis::RedisError> {
        // Keepalive and a TCP user timeout make a half-open connection (Redis
        // host gone without a FIN) fail in seconds instead of minutes.
        let tcp = TcpSettings::default()
            .set_nodelay(true)
            .set_keepalive(
                TcpKeepalive::new()
                    .with_time(Duration::from_secs(10))
                    .with_interval(Duration::from_secs(5))
                    .with_retries(3),
            )
            .set_user_timeout(Duration::from_secs(15));
        let info = options
            .url
            .as_str()
            .into_connection_info()?
            .set_tcp_settings(tcp);
        let client = redis::Client::open(info)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            .set_response_timeout(Some(options.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            connection,
            key_prefix: format!("{}:{KEY_FORMAT_VERSION}:hc:", options.namespace),
            ttls: options.ttls,
            command_timeout: options.command_timeout,
        })
    }

    pub fn key_for(&self, subject: &SubjectId) -> String {
        let mut key = String::with_capacity(self.key_prefix.len() + subject.expose().len());
        key.push_str(&self.key_prefix);
        key.push_str(subject.expose());
        key
    }

    pub async fn get_many(
        &self,
        subjects: &[SubjectId],
    ) -> Result<Vec<Option<CachedStatus>>, CacheError> {
        let keys: Vec<String> = subjects.iter().map(|s| self.key_for(s)).collect();
        let mut connection = self.connection.clone();
        let raw: Vec<Option<Vec<u8>>> = self
            .bounded(redis::cmd("MGET").arg(&keys).query_async(&mut connection))
            .await?;
        Ok(raw
            .into_iter()
            .map(|value| value.and_then(|bytes| decode(&bytes)))
            .collect())
    }

    pub async fn put_many(&self, entries: &[(&SubjectId, CachedStatus)]) -> Result<(), CacheError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (subject, status) in entries {
            let ttl = self.ttls.for_status(&status.status);
            // Serialising plain data structs into a Vec cannot fail.
            let value = serde_json::to_vec(status).unwrap_or_default();
            pipe.cmd("SET")
                .arg(self.key_for(subject))
                .arg(value)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .ignore();
        }
        let mut connection = self.connection.clone();
        self.bounded(pipe.query_async::<()>(&mut connection)).await
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        match tokio::time::timeout(self.command_timeout, call).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CacheError::Timeout(self.command_timeout)),
        }
    }
}

/// A value that does not decode (written by a foreign writer, or corrupted)
/// is a miss: the provider is asked and the key overwritten.
fn decode(bytes: &[u8]) -> Option<CachedStatus> {
    match serde_json::from_slice(bytes) {
        Ok(status) => Some(status),
        Err(error) => {
            tracing::warn!(%error, "undecodable status in redis; treating it as a miss");
            None
        }
    }
}
