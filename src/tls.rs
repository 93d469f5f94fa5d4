//! TLS material and passwords for the connections tripgate makes (Redis,
//! PostgreSQL, the upstreams): CA certificates and client identities read
//! from PEM files, secrets from their files,
//! checked once at start-up so a wrong file stops the process naming its
//! setting. Certificates are always verified, against the configured CA or
//! else the system's roots; there is no "accept anything" mode.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// Every certificate of a PEM file (at least one).
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certificates.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(certificates)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key: {e}"))
}

/// The roots to verify a server against: the CA file's certificates when
/// one is given, else the system's.
pub fn roots(ca_pem: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for certificate in certificates(pem)? {
                roots
                    .add(certificate)
                    .map_err(|e| format!("not a usable CA certificate: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for certificate in found.certs {
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err(
                    "no CA file is configured and the system has no root certificates".into(),
                );
            }
        }
    }
    Ok(roots)
}

/// A client configuration verifying servers against `roots`.
pub fn client_config(roots: RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Reads a file; the error names it.
pub fn read(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A secret held in a file (a password, a mounted Kubernetes secret): its
/// text, without the trailing newline editors and `kubectl` leave.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A configured file, unless the setting is empty (an environment
/// variable set to "" turns a file setting off).
pub fn given(path: &Option<std::path::PathBuf>) -> Option<&std::path::Path> {
    path.as_deref().filter(|p| !p.as_os_str().is_empty())
}
