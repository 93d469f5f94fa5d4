//! Keyed pseudonyms of subjects for everything that leaves the process on
//! the status path: Redis keys, and invalidation messages on pub/sub.
//!
//! A subject id is often a phone number, and a list of who just turned red
//! is exactly what must not be readable by anyone with access to Redis. So
//! Redis only ever sees `HMAC-SHA256(cache secret, id)`, hex-encoded. The
//! cache secret is distinct from the audit key (a cache pseudonym must not
//! be joinable with the trail) and from the events secret.
//!
//! Rotation: a new secret changes every key, so a replica on the new secret
//! does not see the old entries (they expire by TTL and the provider is
//! asked again) nor the invalidations published under the old secret. The
//! `previous` secret closes that gap during a rolling change: pushes are
//! written and announced under both, so replicas still on the old secret
//! drop their copies too; reads use the active secret only.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::domain::SubjectId;

/// Hex of an HMAC-SHA256: what Redis sees instead of a subject id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym([u8; 32]);

impl Pseudonym {
    /// Reads the 64 hex digits of an invalidation message.
    pub fn parse_hex(hex: &str) -> Option<Self> {
        crate::hexcode::decode32(hex).map(Self)
    }

    /// 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        crate::hexcode::encode(&self.0)
    }

    /// Appends the 64 hex digits to `out`.
    pub fn push_hex(&self, out: &mut String) {
        crate::hexcode::push_encoded(out, &self.0);
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonym({})", &self.to_hex()[..12])
    }
}

/// The cache secrets: the active one, and the one being rotated out.
#[derive(Clone)]
pub struct CacheKeys {
    active: Hmac<Sha256>,
    previous: Option<Hmac<Sha256>>,
}

impl CacheKeys {
    /// Secrets are checked (length, distinctness) by the configuration.
    pub fn new(active: &[u8], previous: Option<&[u8]>) -> Self {
        let mac = |secret: &[u8]| {
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any size")
        };
        Self {
            active: mac(active),
            previous: previous.map(mac),
        }
    }

    /// The pseudonym under the active secret.
    pub fn pseudonym(&self, subject: &SubjectId) -> Pseudonym {
        Self::under(&self.active, subject)
    }

    /// The pseudonym under the previous secret, while one is configured.
    pub fn previous_pseudonym(&self, subject: &SubjectId) -> Option<Pseudonym> {
        self.previous.as_ref().map(|mac| Self::under(mac, subject))
    }

    /// A keyed digest of several parts under the active secret (each part
    /// length-prefixed, so no two lists of parts collide): how anything
    /// else that names people or their requests is keyed outside the
    /// process (idempotency keys, request fingerprints).
    pub fn digest(&self, parts: &[&[u8]]) -> Pseudonym {
        let mut mac = self.active.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        Pseudonym(mac.finalize().into_bytes().into())
    }

    fn under(mac: &Hmac<Sha256>, subject: &SubjectId) -> Pseudonym {
        let mut mac = mac.clone();
        mac.update(subject.expose().as_bytes());
        Pseudonym(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_stable_and_never_the_id() {
        let subject = SubjectId::parse("13800138000").unwrap();
        let keys = CacheKeys::new(b"first-cache-secret", Some(b"older-cache-secret"));
        let p = keys.pseudonym(&subject);
        assert_eq!(p, keys.pseudonym(&subject), "stable");
        let hex = p.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(!hex.contains("13800138000"));
        assert_eq!(Pseudonym::parse_hex(&hex), Some(p.clone()));
        let other = CacheKeys::new(b"second-cache-secret", None);
        assert_ne!(other.pseudonym(&subject), p, "keyed");
        assert_ne!(keys.previous_pseudonym(&subject), Some(p.clone()));
        assert_eq!(
            keys.previous_pseudonym(&subject),
            Some(CacheKeys::new(b"older-cache-secret", None).pseudonym(&subject))
        );
        assert!(
            !format!("{p:?}").contains(&hex),
            "debug shows a prefix only"
        );
    }
}
