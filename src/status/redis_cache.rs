//! The shared status cache in Redis (standalone or Redis Cluster).
//!
//! One long-lived multiplexed connection serves every request and reconnects
//! by itself (`ConnectionManager`; the cluster client does the same per
//! node). All subjects of one request are read with a single MGET, which the
//! cluster client splits into one request per shard involved. Every call is
//! bounded by `command_timeout`, and after a failure Redis is skipped for
//! `skip_after_failure` so a dead Redis costs one timeout, not one per check.
//!
//! Writes go through a small Lua script that applies the ordering rule of
//! `CachedStatus::supersedes` (newer wins, a tie keeps the stricter) and
//! answers with the status that stands, so a slow write-back never
//! overwrites a pushed change and the check that wrote it answers with what
//! was kept. Pushes are also PUBLISHed on the invalidation channel, which
//! every replica listens to in order to drop its L1 copy.
//!
//! Keys are `<namespace>:v4:hc:<pseudonym>`, values hold the status and its
//! ordering fields, messages carry the pseudonym: Redis never holds a
//! subject id. The `v4` changes whenever the key or value format does, so a
//! rolling upgrade never misreads an old value (old keys expire by TTL).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{socket2::TcpKeepalive, TcpSettings};
use redis::{ConnectionInfo, IntoConnectionInfo};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use super::{CacheError, CacheTtls, CachedStatus, L1Cache, Pseudonym, Put};

const KEY_FORMAT_VERSION: &str = "v4";

/// Writes `ARGV[1]` (order `ARGV[2]`, rank `ARGV[6]`) with TTL `ARGV[3]` ms
/// unless the stored value stands against it: a larger order, or the same
/// order and a higher rank. With nothing stored and a floor `ARGV[7]`
/// given, a value ordered before the floor is refused. Publishes `ARGV[5]`
/// on channel `ARGV[4]` when one is given, whatever happened (a replica's L1
/// may hold what Redis no longer does). Returns 1 if written, 0 if refused,
/// else the stored value that stands.
const WRITE_UNLESS_STANDS: &str = r"
local current = redis.call('GET', KEYS[1])
local result = 1
if current then
  local ok, decoded = pcall(cjson.decode, current)
  if ok and type(decoded) == 'table' and tonumber(decoded.order_us) then
    local order, new_order = tonumber(decoded.order_us), tonumber(ARGV[2])
    local rank = tonumber(decoded.rank) or 3
    if order > new_order or (order == new_order and rank > tonumber(ARGV[6])) then
      result = current
    end
  end
elseif ARGV[7] ~= '' and tonumber(ARGV[2]) < tonumber(ARGV[7]) then
  result = 0
end
if result == 1 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return result
";

/// `SET KEYS[1] ARGV[1] PX ARGV[2]` unless it exists; returns what exists.
const CLAIM: &str = r"
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Appends to a list, trims it to its newest `ARGV[2]`, expires it in `ARGV[3]` ms.
const APPEND: &str = r"
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Reads a list and deletes it.
const TAKE: &str = r"
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return items
";

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    /// Connected on first use, so start-up does not wait for the cluster.
    Cluster {
        client: Box<ClusterClient>,
        connection: Arc<OnceCell<ClusterConnection>>,
        slots: Arc<std::sync::RwLock<Option<Arc<SlotMap>>>>,
    },
}

/// Which master serves which hash slots (from CLUSTER SLOTS), so that the
/// keys of one check go out as one pipeline per shard. Dropped and fetched
/// again whenever a shard answers with an error (a slot moved).
struct SlotMap {
    /// (first slot, last slot, host, port), as CLUSTER SLOTS lists them.
    ranges: Vec<(u16, u16, String, u16)>,
}

impl SlotMap {
    fn parse(reply: redis::Value) -> Option<Self> {
        let redis::Value::Array(entries) = reply else {
            return None;
        };
        let mut ranges = Vec::new();
        for entry in entries {
            let redis::Value::Array(fields) = entry else {
                return None;
            };
            let first: u16 = redis::from_redis_value_ref(fields.first()?).ok()?;
            let last: u16 = redis::from_redis_value_ref(fields.get(1)?).ok()?;
            let redis::Value::Array(master) = fields.get(2)? else {
                return None;
            };
            let host: String = redis::from_redis_value_ref(master.first()?).ok()?;
            let port: u16 = redis::from_redis_value_ref(master.get(1)?).ok()?;
            ranges.push((first, last, host, port));
        }
        Some(Self { ranges })
    }

    fn node_of(&self, slot: u16) -> Option<usize> {
        self.ranges
            .iter()
            .position(|(first, last, _, _)| (*first..=*last).contains(&slot))
    }
}

/// The Redis Cluster hash slot of a key (CRC16/XMODEM mod 16384). Keys here
/// never hold `{`, so hash tags do not apply.
fn hash_slot(key: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for byte in key {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[derive(Clone)]
pub struct RedisCache {
    connection: Connection,
    key_prefix: String,
    /// Prefix of the replay guard's keys (digests of signed pushes).
    sighting_prefix: String,
    /// Prefix of the keyed values other parts keep here (`kv_*`).
    value_prefix: String,
    channel: String,
    ttls: CacheTtls,
    command_timeout: Duration,
    skip_after_failure: Duration,
    /// Milliseconds since `epoch` before which Redis is skipped.
    skip_until_ms: Arc<AtomicU64>,
    epoch: Instant,
}

/// How to reach Redis beyond its URL: a `rediss://` URL speaks TLS,
/// verified against `ca_pem` (else the system's roots), with a client
/// certificate when the server asks for one; `password` (read from
/// `cache.redis_password_file`) replaces the URL's.
#[derive(Clone, Default)]
pub struct RedisAccess {
    pub ca_pem: Option<Vec<u8>>,
    /// (certificate, key), PEM.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAccess")
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_identity", &self.client_identity.is_some())
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RedisAccess {
    fn certificates(&self) -> Option<redis::TlsCertificates> {
        (self.ca_pem.is_some() || self.client_identity.is_some()).then(|| redis::TlsCertificates {
            client_tls: self
                .client_identity
                .clone()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert,
                    client_key: key,
                }),
            root_cert: self.ca_pem.clone(),
        })
    }

    /// A client for one URL, with the TLS material and password.
    pub fn client(&self, url: &str) -> redis::RedisResult<redis::Client> {
        let info = self.connection_info(url)?;
        match self.certificates() {
            Some(certificates) => redis::Client::build_with_tls(info, certificates),
            None => redis::Client::open(info),
        }
    }

    fn connection_info(&self, url: &str) -> redis::RedisResult<ConnectionInfo> {
        let mut info = url.into_connection_info()?.set_tcp_settings(tcp_settings());
        if let Some(password) = &self.password {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        Ok(info)
    }
}

#[derive(Debug, Clone)]
pub struct RedisCacheOptions {
    pub url: String,
    pub access: RedisAccess,
    /// Non-empty: Redis Cluster with these seed nodes (`url` is ignored).
    pub cluster_nodes: Vec<String>,
    pub namespace: String,
    pub ttls: CacheTtls,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    pub skip_after_failure: Duration,
}

/// Keepalive and a TCP user timeout make a half-open connection (Redis host
/// gone without a FIN) fail in seconds instead of minutes.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default()
        .set_nodelay(true)
        .set_keepalive(
            TcpKeepalive::new()
                .with_time(Duration::from_secs(10))
                .with_interval(Duration::from_secs(5))
                .with_retries(3),
        )
        .set_user_timeout(Duration::from_secs(15))
}

impl RedisCache {
    /// Prepares the connection without connecting: the service starts (and
    /// serves from the provider) even while Redis is down.
    pub fn new(options: RedisCacheOptions) -> Result<Self, redis::RedisError> {
        let connection = if options.cluster_nodes.is_empty() {
            let client = options.access.client(&options.url)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(options.connect_timeout))
                .set_response_timeout(Some(options.command_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(2));
            Connection::Single(ConnectionManager::new_lazy_with_config(client, config)?)
        } else {
            let nodes = options
                .cluster_nodes
                .iter()
                .map(|n| options.access.connection_info(n))
                .collect::<Result<Vec<_>, _>>()?;
            let mut builder = ClusterClient::builder(nodes)
                .connection_timeout(options.connect_timeout)
                .response_timeout(options.command_timeout)
                .tcp_settings(tcp_settings())
                .retries(1);
            if let Some(certificates) = options.access.certificates() {
                builder = builder.certs(certificates);
            }
            let client = builder.build()?;
            Connection::Cluster {
                client: Box::new(client),
                connection: Arc::new(OnceCell::new()),
                slots: Default::default(),
            }
        };
        let namespace = &options.namespace;
        Ok(Self {
            connection,
            key_prefix: format!("{namespace}:{KEY_FORMAT_VERSION}:hc:"),
            sighting_prefix: format!("{namespace}:{KEY_FORMAT_VERSION}:push:"),
            value_prefix: format!("{namespace}:{KEY_FORMAT_VERSION}:"),
            channel: format!("{namespace}:{KEY_FORMAT_VERSION}:invalidate"),
            ttls: options.ttls,
            command_timeout: options.command_timeout,
            skip_after_failure: options.skip_after_failure,
            skip_until_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        })
    }

    pub fn invalidation_channel(&self) -> &str {
        &self.channel
    }

    pub fn key_for(&self, subject: &Pseudonym) -> String {
        let mut key = String::with_capacity(self.key_prefix.len() + 64);
        key.push_str(&self.key_prefix);
        subject.push_hex(&mut key);
        key
    }

    /// False while Redis is being skipped after a failure.
    pub fn is_up(&self) -> bool {
        self.epoch.elapsed().as_millis() as u64 >= self.skip_until_ms.load(Ordering::Relaxed)
    }

    pub async fn get_many(
        &self,
        subjects: &[&Pseudonym],
    ) -> Result<Vec<Option<CachedStatus>>, CacheError> {
        let keys: Vec<String> = subjects.iter().map(|s| self.key_for(s)).collect();
        let raw: Vec<Option<Vec<u8>>> = match &self.connection {
            Connection::Single(_) => {
                let mut mget = redis::cmd("MGET");
                mget.arg(&keys);
                self.query(&mget).await?
            }
            Connection::Cluster { .. } => {
                if !self.is_up() {
                    return Err(CacheError::Skipped);
                }
                self.bounded(self.cluster_get(&keys)).await?
            }
        };
        Ok(raw
            .into_iter()
            .map(|value| value.and_then(|bytes| decode(&bytes)))
            .collect())
    }

    fn write_command(
        &self,
        subject: &Pseudonym,
        status: &CachedStatus,
        publish: bool,
        floor_us: Option<i64>,
    ) -> redis::Cmd {
        let ttl = self.ttls.keep_for(&status.status);
        // Serialising plain data structs into a Vec cannot fail.
        let value = serde_json::to_vec(status).unwrap_or_default();
        let mut eval = redis::cmd("EVAL");
        eval.arg(WRITE_UNLESS_STANDS)
            .arg(1)
            .arg(self.key_for(subject))
            .arg(value)
            .arg(status.order_us)
            .arg(ttl.as_millis() as u64);
        if publish {
            eval.arg(&self.channel).arg(subject.to_hex());
        } else {
            eval.arg("").arg("");
        }
        eval.arg(status.rank);
        match floor_us {
            Some(floor) => eval.arg(floor),
            None => eval.arg(""),
        };
        eval
    }

    pub async fn put_many(
        &self,
        entries: &[(&Pseudonym, CachedStatus)],
    ) -> Result<Vec<Put>, CacheError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let replies: Vec<redis::Value> = match &self.connection {
            Connection::Single(manager) => {
                if !self.is_up() {
                    return Err(CacheError::Skipped);
                }
                let mut pipe = redis::pipe();
                for (subject, status) in entries {
                    pipe.add_command(self.write_command(subject, status, false, None));
                }
                self.bounded(pipe.query_async(&mut manager.clone())).await?
            }
            // Keys of one batch live on different slots; a cluster pipeline
            // must stay on one, so the writes go out side by side instead.
            Connection::Cluster { .. } => {
                let writes = entries.iter().map(|(subject, status)| {
                    let command = self.write_command(subject, status, false, None);
                    async move { self.query::<redis::Value>(&command).await }
                });
                futures_util::future::join_all(writes)
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()?
            }
        };
        Ok(replies.into_iter().map(put_outcome).collect())
    }

    pub async fn put_pushed(
        &self,
        subjects: &[Pseudonym],
        status: CachedStatus,
        floor_us: i64,
    ) -> Result<Put, CacheError> {
        let mut first = None;
        for subject in subjects {
            let reply: redis::Value = self
                .query(&self.write_command(subject, &status, true, Some(floor_us)))
                .await?;
            first.get_or_insert(put_outcome(reply));
        }
        Ok(first.unwrap_or(Put::Refused))
    }

    pub async fn first_sighting(&self, digest: &str, ttl: Duration) -> Result<bool, CacheError> {
        let mut set = redis::cmd("SET");
        set.arg(format!("{}{digest}", self.sighting_prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        let reply: Option<String> = self.query(&set).await?;
        Ok(reply.is_some())
    }

    /// Sets `name` to `value` for `ttl` unless it is set; returns the value
    /// that was there (`None`: claimed now). Names are the caller's keyed
    /// digests, never an id.
    pub async fn kv_claim(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, CacheError> {
        let mut set = redis::cmd("EVAL");
        set.arg(CLAIM)
            .arg(1)
            .arg(format!("{}{name}", self.value_prefix))
            .arg(value)
            .arg(ttl.as_millis().max(1) as u64);
        self.query(&set).await
    }

    pub async fn kv_set(&self, name: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut set = redis::cmd("SET");
        set.arg(format!("{}{name}", self.value_prefix))
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        self.query::<()>(&set).await
    }

    pub async fn kv_delete(&self, name: &str) -> Result<(), CacheError> {
        let mut del = redis::cmd("DEL");
        del.arg(format!("{}{name}", self.value_prefix));
        self.query::<i64>(&del).await.map(|_| ())
    }

    /// Appends `value` to the list `name`, keeps its newest `keep` entries
    /// and (re)sets its expiry to `ttl`: one round trip.
    pub async fn kv_append(
        &self,
        name: &str,
        value: &[u8],
        keep: usize,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let mut append = redis::cmd("EVAL");
        append
            .arg(APPEND)
            .arg(1)
            .arg(format!("{}{name}", self.value_prefix))
            .arg(value)
            .arg(keep.max(1))
            .arg(ttl.as_millis().max(1) as u64);
        self.query::<i64>(&append).await.map(|_| ())
    }

    /// Takes (reads and deletes, at once) the list `name`.
    pub async fn kv_take(&self, name: &str) -> Result<Vec<Vec<u8>>, CacheError> {
        let mut take = redis::cmd("EVAL");
        take.arg(TAKE)
            .arg(1)
            .arg(format!("{}{name}", self.value_prefix));
        self.query(&take).await
    }

    pub async fn forget_sighting(&self, digest: &str) {
        let mut del = redis::cmd("DEL");
        del.arg(format!("{}{digest}", self.sighting_prefix));
        if let Err(error) = self.query::<i64>(&del).await {
            tracing::warn!(%error, "could not forget a push digest; the provider's retry may be refused as a replay");
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, CacheError> {
        if !self.is_up() {
            return Err(CacheError::Skipped);
        }
        let call = async {
            match &self.connection {
                Connection::Single(manager) => command.query_async(&mut manager.clone()).await,
                Connection::Cluster {
                    client, connection, ..
                } => {
                    let connection = connection
                        .get_or_try_init(|| client.get_async_connection())
                        .await?;
                    command.query_async(&mut connection.clone()).await
                }
            }
        };
        self.bounded(call).await
    }

    /// GETs grouped into one pipeline per shard, the shards asked side by
    /// side: one round trip per shard involved, whatever the slots.
    async fn cluster_get(&self, keys: &[String]) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
        use redis::cluster_routing::SingleNodeRoutingInfo;
        let Connection::Cluster {
            client,
            connection,
            slots,
        } = &self.connection
        else {
            return Ok(Vec::new());
        };
        let connection = connection
            .get_or_try_init(|| client.get_async_connection())
            .await?;
        let cached = slots.read().unwrap_or_else(|p| p.into_inner()).clone();
        let map = match cached {
            Some(map) => map,
            None => {
                let reply: redis::Value = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut connection.clone())
                    .await?;
                let map = Arc::new(SlotMap::parse(reply).ok_or_else(|| {
                    redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "unreadable CLUSTER SLOTS reply",
                    ))
                })?);
                *slots.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&map));
                map
            }
        };
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let node = map.node_of(hash_slot(key.as_bytes())).ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::Client, "a hash slot has no master"))
            })?;
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, members)) => members.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        let requests = groups.into_iter().map(|(node, members)| {
            let (_, _, host, port) = map.ranges[node].clone();
            let mut pipe = redis::pipe();
            for i in &members {
                pipe.cmd("GET").arg(&keys[*i]);
            }
            let mut connection = connection.clone();
            async move {
                let route = SingleNodeRoutingInfo::ByAddress { host, port };
                let values = connection
                    .route_pipeline(pipe, 0, members.len(), route)
                    .await?;
                Ok::<_, redis::RedisError>((members, values))
            }
        });
        let mut found = vec![None; keys.len()];
        for answer in futures_util::future::join_all(requests).await {
            let (members, values) = match answer {
                Ok(answer) => answer,
                Err(error) => {
                    // A slot may have moved: fetch the map again next time.
                    *slots.write().unwrap_or_else(|p| p.into_inner()) = None;
                    return Err(error);
                }
            };
            for (i, value) in members.into_iter().zip(values) {
                found[i] = redis::from_redis_value(value)?;
            }
        }
        Ok(found)
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, CacheError> {
        let outcome = match tokio::time::timeout(self.command_timeout, call).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => CacheError::Redis(e),
            Err(_) => CacheError::Timeout(self.command_timeout),
        };
        let until = self.epoch.elapsed() + self.skip_after_failure;
        self.skip_until_ms
            .store(until.as_millis() as u64, Ordering::Relaxed);
        Err(outcome)
    }
}

/// The write script's answer: 1 written, 0 refused, else the value that
/// stands (one this build cannot decode counts as refused: not written,
/// nothing usable kept).
fn put_outcome(reply: redis::Value) -> Put {
    match reply {
        redis::Value::Int(1) => Put::Written,
        redis::Value::BulkString(bytes) => decode(&bytes).map_or(Put::Refused, Put::Kept),
        _ => Put::Refused,
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

/// Listens for invalidations and drops the named subjects from L1. On any
/// disconnect L1 is cleared (messages may have been missed) and the
/// listener reconnects with backoff. In a cluster, PUBLISH reaches every
/// node, so listening to one node suffices.
pub fn spawn_invalidation_listener(
    url: String,
    access: RedisAccess,
    channel: String,
    l1: L1Cache,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen(&url, &access, &channel, &l1, &mut backoff).await {
                Ok(()) => tracing::warn!("redis invalidation stream ended; reconnecting"),
                Err(error) => {
                    tracing::warn!(%error, "redis invalidation listener failed; reconnecting")
                }
            }
            l1.invalidate_all();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}

async fn listen(
    url: &str,
    access: &RedisAccess,
    channel: &str,
    l1: &L1Cache,
    backoff: &mut Duration,
) -> redis::RedisResult<()> {
    let client = access.client(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    *backoff = Duration::from_millis(100);
    // Anything published while we were away is unknown: start clean.
    l1.invalidate_all();
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let payload: String = message.get_payload()?;
        match Pseudonym::parse_hex(&payload) {
            Some(subject) => l1.invalidate(&subject),
            // Not ours (an older build's raw id): whatever it named, drop all.
            None => l1.invalidate_all(),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::hash_slot;

    #[test]
    fn hash_slots_match_redis_cluster_keyslot() {
        // Values of CLUSTER KEYSLOT on a real server.
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"bar"), 5061);
        assert_eq!(hash_slot(b"hello"), 866);
    }
}
