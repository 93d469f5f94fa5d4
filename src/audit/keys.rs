//! The audit keys: secrets that pseudonymise subject ids and seal chains.
//!
//! Each configured key has an id; new records use the active key, and every
//! record names its key, so keys rotate while old records stay searchable and
//! verifiable. From each secret two keys are derived, one for subject refs
//! and one for chain hashes, so the two uses never share a key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::SubjectId;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("audit.keys: no key is configured")]
    NoKeys,
    #[error("audit.keys[{index}]: {problem}")]
    Invalid { index: usize, problem: String },
    #[error("audit.active_key: {0:?} is not the id of a configured key")]
    UnknownActive(String),
}

#[derive(Clone)]
struct DerivedKey {
    id: String,
    /// HMAC keyed with the subject key, its key schedule done once: each
    /// ref clones it rather than hashing the key's pads again.
    subject: HmacSha256,
    chain: Vec<u8>,
    session: Vec<u8>,
}

#[derive(Clone)]
pub struct AuditKeys {
    keys: Vec<DerivedKey>,
    active: usize,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "AuditKeys(ids: {ids:?}, active: {})", self.active_id())
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length.
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

fn derive(secret: &[u8], purpose: &[u8]) -> Vec<u8> {
    let mut m = mac(secret);
    m.update(purpose);
    m.finalize().into_bytes().to_vec()
}

pub const MIN_SECRET_LEN: usize = 16;

impl AuditKeys {
    /// `keys` are (id, secret) pairs.
    pub fn new(keys: &[(String, String)], active: &str) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        let mut derived = Vec::with_capacity(keys.len());
        for (index, (id, secret)) in keys.iter().enumerate() {
            let invalid = |problem: &str| KeyError::Invalid {
                index,
                problem: problem.to_owned(),
            };
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(invalid("id must be a non-empty word of [A-Za-z0-9._-]"));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(invalid("secret must be at least 16 bytes"));
            }
            if derived.iter().any(|k: &DerivedKey| k.id == *id) {
                return Err(invalid("id is used by another key"));
            }
            derived.push(DerivedKey {
                id: id.clone(),
                subject: mac(&derive(secret.as_bytes(), b"tripgate subject ref v1")),
                chain: derive(secret.as_bytes(), b"tripgate chain v1"),
                session: derive(secret.as_bytes(), b"tripgate console session v1"),
            });
        }
        let active = derived
            .iter()
            .position(|k| k.id == active)
            .ok_or_else(|| KeyError::UnknownActive(active.to_owned()))?;
        Ok(Self {
            keys: derived,
            active,
        })
    }

    pub fn active_id(&self) -> &str {
        &self.keys[self.active].id
    }

    /// The key console sessions are signed with: derived from the active
    /// audit key (shared by every replica, secret), for nothing else.
    pub fn console_session_key(&self) -> &[u8] {
        &self.keys[self.active].session
    }

    /// The subject's reference under the active key.
    pub fn subject_ref(&self, subject: &SubjectId) -> String {
        subject_ref_with(&self.keys[self.active].subject, subject.expose())
    }

    /// The subject's reference under every configured key, for searching
    /// records written before a rotation.
    pub fn all_subject_refs(&self, subject: &SubjectId) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| subject_ref_with(&k.subject, subject.expose()))
            .collect()
    }

    /// The chain hash of a record, or `None` if its key is not configured.
    pub fn chain_hash(
        &self,
        key_id: &str,
        prev_hash: &str,
        seq: i64,
        canonical: &[u8],
    ) -> Option<String> {
        let key = self.keys.iter().find(|k| k.id == key_id)?;
        let mut m = mac(&key.chain);
        m.update(prev_hash.as_bytes());
        m.update(b"\n");
        m.update(seq.to_string().as_bytes());
        m.update(b"\n");
        m.update(canonical);
        Some(crate::hexcode::encode(&m.finalize().into_bytes()))
    }
}

fn subject_ref_with(keyed: &HmacSha256, raw: &str) -> String {
    let mut m = keyed.clone();
    m.update(raw.as_bytes());
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(active: &str) -> AuditKeys {
        AuditKeys::new(
            &[
                ("old".into(), "an old secret of 16+ bytes".into()),
                ("new".into(), "a new secret of 16+ bytes".into()),
            ],
            active,
        )
        .unwrap()
    }

    #[test]
    fn refs_are_stable_per_key_and_searchable_across_keys() {
        let id = SubjectId::parse("13800138000").unwrap();
        let old = keys("old").subject_ref(&id);
        let new = keys("new").subject_ref(&id);
        assert_ne!(old, new);
        assert_eq!(old.len(), 43);
        assert!(!old.contains("13800138000"));
        assert_eq!(keys("new").all_subject_refs(&id), vec![old.clone(), new]);
        // Every stored record holds refs made this way: the value never
        // changes (made by the build before the key schedule was cached).
        assert_eq!(old, "7jHwPn9deAdRfz0eCv0pDfArhcNXrTShl2o71prZZZg");
    }

    #[test]
    fn bad_key_configuration_is_refused() {
        assert!(AuditKeys::new(&[], "x").is_err());
        assert!(AuditKeys::new(&[("k".into(), "short".into())], "k").is_err());
        assert!(AuditKeys::new(&[("k".into(), "a long enough secret".into())], "j").is_err());
    }
}
