//! Signed chain heads: what lets a regulator check the trail with a public
//! key alone.
//!
//! Since record format 2 a chain link is a plain SHA-256 (anyone can
//! recompute it); what makes a chain unforgeable is that its instance signs
//! its head (instance, seq, hash) with an Ed25519 key every few seconds and
//! when it closes, and that retention signs the checkpoints it leaves. A
//! regulator who saves the signed heads (`GET /v1/audit/heads`) can later
//! prove that a chain still reaches every head they saved: records cannot
//! be dropped from the end, nor a chain deleted, nor records re-sealed,
//! without a signature failing or a saved head going missing. The signing
//! key never leaves the service; the secret pseudonym key is not needed to
//! verify.
//!
//! Keys are named by an id derived from the public key (the first 16 hex
//! digits of its SHA-256), carried by every signature, so keys rotate: the
//! retired public keys stay listed (`audit.retired_public_keys`) and old
//! signatures keep verifying.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::ChainHead;

/// How a public key is written: `ed25519:<base64 of its 32 bytes>`.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// What a signature vouches for: a live head, a closed chain's last head, or
/// a retention checkpoint (the link before the oldest record kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadKind {
    Head,
    Closed,
    Checkpoint,
}

impl HeadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HeadKind::Head => "head",
            HeadKind::Closed => "closed",
            HeadKind::Checkpoint => "checkpoint",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [HeadKind::Head, HeadKind::Closed, HeadKind::Checkpoint]
            .into_iter()
            .find(|k| k.as_str() == raw)
    }
}

/// A signed statement "chain `instance_id` reached link `seq` with `hash`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SignedHead {
    pub instance_id: String,
    pub seq: i64,
    pub hash: String,
    /// Microseconds since the epoch.
    pub signed_at_us: i64,
    pub key_id: String,
    /// base64 of the Ed25519 signature of `message()`.
    pub signature: String,
    #[schema(value_type = String)]
    pub kind: HeadKind,
}

impl SignedHead {
    /// The bytes signed: domain, kind and every field, newline-separated.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "tripgate chain head v1\n{}\n{}\n{}\n{}\n{}\n{}",
            self.kind.as_str(),
            self.instance_id,
            self.seq,
            self.hash,
            self.signed_at_us,
            self.key_id
        )
        .into_bytes()
    }

    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// A signed head as the API serves it and regulators save it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeadView {
    pub instance_id: String,
    pub seq: i64,
    pub hash: String,
    /// RFC 3339, microseconds.
    pub signed_at: String,
    pub key_id: String,
    pub signature: String,
    /// `head`; `closed` when the instance stopped cleanly; `checkpoint`.
    pub kind: String,
}

impl From<&SignedHead> for HeadView {
    fn from(h: &SignedHead) -> Self {
        Self {
            instance_id: h.instance_id.clone(),
            seq: h.seq,
            hash: h.hash.clone(),
            signed_at: super::rfc3339_micros(h.signed_at_us),
            key_id: h.key_id.clone(),
            signature: h.signature.clone(),
            kind: h.kind.as_str().to_owned(),
        }
    }
}

impl TryFrom<HeadView> for SignedHead {
    type Error = String;

    fn try_from(h: HeadView) -> Result<Self, String> {
        let signed_at_us = chrono::DateTime::parse_from_rfc3339(&h.signed_at)
            .map_err(|e| format!("signed_at {:?}: {e}", h.signed_at))?
            .timestamp_micros();
        let kind = HeadKind::parse(&h.kind).ok_or_else(|| format!("unknown kind {:?}", h.kind))?;
        Ok(SignedHead {
            instance_id: h.instance_id,
            seq: h.seq,
            hash: h.hash,
            signed_at_us,
            key_id: h.key_id,
            signature: h.signature,
            kind,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("not a signing key: expected the base64 of 32 bytes")]
    Malformed,
    #[error("not a public key: expected {PUBLIC_KEY_PREFIX}<base64 of 32 bytes>, got {0:?}")]
    BadPublicKey(String),
}

/// The key id of a public key.
pub fn key_id(public: &VerifyingKey) -> String {
    let digest = crate::hexcode::sha256(public.as_bytes());
    crate::hexcode::encode(&digest[..8])
}

pub fn public_key_string(public: &VerifyingKey) -> String {
    format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(public.as_bytes()))
}

/// The instance's signing key.
#[derive(Clone)]
pub struct HeadSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for HeadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeadSigner(key_id: {})", self.key_id)
    }
}

impl HeadSigner {
    /// From the text of a key file: base64 of the 32-byte secret.
    pub fn from_text(text: &str) -> Result<Self, SigningKeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SigningKeyError::Malformed)?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| SigningKeyError::Malformed)?;
        Ok(Self::from_seed(seed))
    }

    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(&key.verifying_key());
        Self { key, key_id }
    }

    /// A new random key, as the text of a key file.
    pub fn generate_text() -> Result<String, getrandom::Error> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed)?;
        Ok(STANDARD.encode(seed))
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, instance_id: &str, head: &ChainHead, kind: HeadKind) -> SignedHead {
        let mut signed = SignedHead {
            instance_id: instance_id.to_owned(),
            seq: head.seq,
            hash: head.hash.clone(),
            signed_at_us: chrono::Utc::now().timestamp_micros(),
            key_id: self.key_id.clone(),
            signature: String::new(),
            kind,
        };
        signed.signature = STANDARD.encode(self.key.sign(&signed.message()).to_bytes());
        signed
    }
}

/// The public keys a verifier trusts: the current one and retired ones.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl PublicKeys {
    /// Keys written as `ed25519:<base64>`, separated by white space or
    /// commas (a `--public-key` file, the configured retired keys).
    pub fn parse(text: &str) -> Result<Self, SigningKeyError> {
        let mut keys = Self::default();
        for word in text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
        {
            keys.add(parse_public_key(word)?);
        }
        Ok(keys)
    }

    pub fn add(&mut self, key: VerifyingKey) {
        let id = key_id(&key);
        if !self.keys.iter().any(|(k, _)| *k == id) {
            self.keys.push((id, key));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `head` carries a valid signature by one of these keys.
    pub fn verify(&self, head: &SignedHead) -> bool {
        let Some((_, key)) = self.keys.iter().find(|(id, _)| *id == head.key_id) else {
            return false;
        };
        let Ok(bytes) = STANDARD.decode(&head.signature) else {
            return false;
        };
        let Ok(signature) = Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(&head.message(), &signature).is_ok()
    }
}

pub fn parse_public_key(word: &str) -> Result<VerifyingKey, SigningKeyError> {
    let bad = || SigningKeyError::BadPublicKey(word.chars().take(80).collect());
    let encoded = word.strip_prefix(PUBLIC_KEY_PREFIX).ok_or_else(bad)?;
    let bytes: [u8; 32] = STANDARD
        .decode(encoded)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_verify_with_the_public_key_only_and_any_change_breaks_them() {
        let signer = HeadSigner::from_seed([7; 32]);
        let head = ChainHead {
            seq: 42,
            hash: "ab".repeat(32),
        };
        let signed = signer.sign("tripgate-1", &head, HeadKind::Head);
        let keys = PublicKeys::parse(&public_key_string(&signer.public_key())).unwrap();
        assert!(keys.verify(&signed));
        for tampered in [
            SignedHead {
                seq: 41,
                ..signed.clone()
            },
            SignedHead {
                hash: "cd".repeat(32),
                ..signed.clone()
            },
            SignedHead {
                instance_id: "other".into(),
                ..signed.clone()
            },
            SignedHead {
                kind: HeadKind::Checkpoint,
                ..signed.clone()
            },
        ] {
            assert!(!keys.verify(&tampered), "{tampered:?}");
        }
        let other = HeadSigner::from_seed([8; 32]);
        let stranger = PublicKeys::parse(&public_key_string(&other.public_key())).unwrap();
        assert!(!stranger.verify(&signed), "another key");
    }

    #[test]
    fn key_files_and_public_keys_parse_strictly() {
        let text = HeadSigner::generate_text().unwrap();
        let signer = HeadSigner::from_text(&format!("{text}\n")).unwrap();
        assert_eq!(signer.key_id().len(), 16);
        assert!(HeadSigner::from_text("not base64!").is_err());
        assert!(HeadSigner::from_text(&STANDARD.encode([1u8; 31])).is_err());
        assert!(PublicKeys::parse("ed25519:AAAA").is_err());
        assert!(PublicKeys::parse("rsa:abc").is_err());
        let both = format!(
            "{}\n{}",
            public_key_string(&signer.public_key()),
            public_key_string(&HeadSigner::from_seed([3; 32]).public_key())
        );
        assert_eq!(PublicKeys::parse(&both).unwrap().keys.len(), 2);
    }
}
