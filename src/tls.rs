//! The one place that decides which certificate authorities wsvault trusts.
//!
//! Operators run their own CAs (on-premise Navixy behind a corporate CA, PostgreSQL
//! with a private CA) and keep them in the operating system's store, so every
//! outbound TLS connection (WebSocket, the Navixy login call) trusts that store
//! rather than a root list compiled into the binary, plus an optional per-source
//! `ca_file`. PostgreSQL goes through sqlx, which reads the same OS store itself
//! (see `store::postgres::connect` for its `ca_file`).
//!
//! The configuration is built per connection attempt, not once: a rotated CA file or
//! an updated OS store takes effect at the next reconnect without a restart.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why no TLS configuration could be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The `ca_file` cannot be read or holds no PEM certificate.
    #[error("ca_file {path}: {message}")]
    CaFile { path: PathBuf, message: String },
    /// Neither the OS store nor a `ca_file` yielded a usable certificate.
    #[error(
        "no trusted CA certificate: the operating system's store is empty or unreadable \
         (install ca-certificates) and no ca_file is configured"
    )]
    NoRoots,
    /// rustls refused the protocol setup (not expected with the built-in provider).
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Reads every PEM certificate of `path`; at least one is required, so a wrong file
/// (a key, an empty file) is refused when the config is loaded, not at connect time.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |message: String| TlsError::CaFile {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Trust anchors: the OS store plus `ca_file`. Certificates of the OS store that
/// rustls cannot parse are skipped (one odd entry must not disable TLS).
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!("reading the OS certificate store: {e}");
    }
    let (_added, _skipped) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in load_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsError::CaFile {
                path: path.to_path_buf(),
                message: format!("unusable certificate: {e}"),
            })?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(roots)
}

/// A client configuration (ring provider, TLS 1.2 and 1.3, full certificate and
/// host name verification) trusting [`root_store`].
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = load_ca_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("ca.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = load_ca_file(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
