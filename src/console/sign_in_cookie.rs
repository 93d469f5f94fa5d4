//! The console's sign-in cookie and CSRF tokens, with no server-side state
//! (any replica can check them).
//!
//! A sign-in is the cookie `tripgate_session` =
//! `<client>~<expires unix>~<nonce>~<mac>`: the mac is an HMAC over the
//! rest under a key derived from the active audit key
//! (`AuditKeys::console_session_key`, secret and the same on every
//! replica) and the SHA-256 of the client's token, so a sign-in ends at its
//! expiry, when the client is removed, or when its token changes. The
//! cookie is HttpOnly, SameSite=Strict, Path=/console, and Secure when the
//! request came over TLS.
//!
//! CSRF: a form of a signed-in page carries an HMAC of the sign-in's nonce;
//! without a sign-in (authentication off, or the sign-in form itself) it
//! carries the value of a random `tripgate_csrf` cookie (double submit).
//! Every POST also has its Origin, when sent, checked against its Host.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const SIGN_IN_COOKIE: &str = "tripgate_session";
pub const CSRF_COOKIE: &str = "tripgate_csrf";
pub const LANG_COOKIE: &str = "tripgate_lang";
/// How long a sign-in lasts.
pub const SIGN_IN_SECS: i64 = 8 * 3600;

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        m.update(part);
        m.update(b"\x1f");
    }
    m.finalize().into_bytes().into()
}

/// The key of one client's sign-ins (the label is part of the cookie
/// format: changing it would end every sign-in).
pub fn client_key(console_key: &[u8], token_sha256: &[u8; 32]) -> [u8; 32] {
    mac(console_key, &[b"session", token_sha256])
}

/// A sign-in, as its cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub client: String,
    pub expires: i64,
    pub nonce: String,
}

impl SignIn {
    pub fn new(client: &str, now: i64) -> Result<Self, getrandom::Error> {
        Ok(Self {
            client: client.to_owned(),
            expires: now + SIGN_IN_SECS,
            nonce: random_hex()?,
        })
    }

    pub fn cookie_value(&self, key: &[u8; 32]) -> String {
        let body = format!("{}~{}~{}", self.client, self.expires, self.nonce);
        let tag = crate::hexcode::encode(&mac(key, &[body.as_bytes()]));
        format!("{body}~{tag}")
    }

    /// The client a cookie names, before its mac can be checked (the key
    /// depends on the client).
    pub fn claimed_client(value: &str) -> Option<&str> {
        value
            .split('~')
            .next()
            .filter(|c| crate::auth::is_client_name(c))
    }

    /// The sign-in, if the cookie is intact under `key` and not expired.
    pub fn verify(value: &str, key: &[u8; 32], now: i64) -> Option<Self> {
        let (body, tag) = value.rsplit_once('~')?;
        let expected = crate::hexcode::encode(&mac(key, &[body.as_bytes()]));
        if !constant_time_eq(expected.as_bytes(), tag.as_bytes()) {
            return None;
        }
        let mut parts = body.split('~');
        let client = parts.next()?.to_owned();
        let expires: i64 = parts.next()?.parse().ok()?;
        let nonce = parts.next()?.to_owned();
        if parts.next().is_some() || expires <= now {
            return None;
        }
        Some(Self {
            client,
            expires,
            nonce,
        })
    }

    /// The CSRF token of the forms this sign-in is shown.
    pub fn csrf(&self, key: &[u8; 32]) -> String {
        crate::hexcode::encode(&mac(key, &[b"csrf", self.nonce.as_bytes()]))
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 16 random bytes as hex (a nonce, a double-submit CSRF value).
pub fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)?;
    Ok(crate::hexcode::encode(&bytes))
}

/// Whether a double-submit CSRF value looks like one this module made.
pub fn is_csrf_value(value: &str) -> bool {
    value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ins_verify_only_intact_unexpired_and_under_their_key() {
        let key = client_key(b"console key", &[7; 32]);
        let sign_in = SignIn::new("regulator", 1_000).unwrap();
        let cookie = sign_in.cookie_value(&key);
        assert_eq!(SignIn::claimed_client(&cookie), Some("regulator"));
        assert_eq!(SignIn::verify(&cookie, &key, 1_001), Some(sign_in.clone()));
        assert_eq!(SignIn::verify(&cookie, &key, 1_000 + SIGN_IN_SECS), None);
        let other_token = client_key(b"console key", &[8; 32]);
        assert_eq!(SignIn::verify(&cookie, &other_token, 1_001), None);
        let longer = cookie.replacen(
            &format!("~{}~", sign_in.expires),
            &format!("~{}~", sign_in.expires + 99_999),
            1,
        );
        assert_eq!(SignIn::verify(&longer, &key, 1_001), None);
        let renamed = cookie.replacen("regulator", "regulatoR", 1);
        assert_eq!(SignIn::verify(&renamed, &key, 1_001), None);
        assert_ne!(
            sign_in.csrf(&key),
            SignIn::new("regulator", 1_000).unwrap().csrf(&key)
        );
    }
}
