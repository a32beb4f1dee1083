//! PEM input: certificates, keys and identities, read with rustls-pki-types' `PemObject`.

use std::fmt;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// A certificate chain and its private key, for a server or for a client (mTLS).
///
/// `Debug` shows the chain length and the key type, never the key.
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key of the leaf (PKCS#8, SEC1 or PKCS#1).
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.key {
            PrivateKeyDer::Pkcs1(_) => "PKCS#1 RSA",
            PrivateKeyDer::Sec1(_) => "SEC1 EC",
            PrivateKeyDer::Pkcs8(_) => "PKCS#8",
            _ => "other",
        };
        f.debug_struct("Identity")
            .field("chain_len", &self.chain.len())
            .field("key", &format_args!("<{kind} key redacted>"))
            .finish()
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Reads a chain (leaf first, as in Kong's `cluster_cert`) and its key (Kong's
    /// `cluster_cert_key`) from PEM text, and checks that the key is of a supported type
    /// and belongs to the leaf.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Identity, TlsError> {
        Identity::build(
            certs_from_pem(cert_pem, "certificate PEM")?,
            key_from_pem(key_pem, "private key PEM")?,
            "certificate PEM",
            "private key PEM",
        )
    }

    /// Reads a chain and its key from PEM files; errors name the file.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Identity, TlsError> {
        let (cert_what, cert_pem) = read_file(cert.as_ref())?;
        let (key_what, key_pem) = read_file(key.as_ref())?;
        Identity::build(
            certs_from_pem(&cert_pem, &cert_what)?,
            key_from_pem(&key_pem, &key_what)?,
            &cert_what,
            &key_what,
        )
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_what: &str,
        key_what: &str,
    ) -> Result<Identity, TlsError> {
        let signer =
            rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::Pem {
                what: key_what.to_string(),
                reason: format!("unsupported or malformed key: {e}"),
            })?;
        rustls::sign::CertifiedKey::new(chain.clone(), signer)
            .keys_match()
            .map_err(|e| TlsError::Pem {
                what: cert_what.to_string(),
                reason: format!("the private key does not belong to the first certificate ({e})"),
            })?;
        Ok(Identity { chain, key })
    }

    /// The end-entity (leaf) certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}

/// Reads a file for PEM parsing, returning (its display name, its bytes).
pub(crate) fn read_file(path: &Path) -> Result<(String, Vec<u8>), TlsError> {
    let what = path.display().to_string();
    match std::fs::read(path) {
        Ok(b) => Ok((what, b)),
        Err(e) => Err(TlsError::Pem {
            reason: format!("cannot read the file: {e}"),
            what,
        }),
    }
}

/// Every `CERTIFICATE` block of `pem`; at least one is required.
pub(crate) fn certs_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what: what.to_string(),
            reason: "no \"BEGIN CERTIFICATE\" block found".into(),
        });
    }
    Ok(certs)
}

/// The first certificate of `pem` (the one to pin).
pub(crate) fn first_cert_from_pem(
    pem: &[u8],
    what: &str,
) -> Result<CertificateDer<'static>, TlsError> {
    Ok(certs_from_pem(pem, what)?.swap_remove(0))
}

/// The first private key of `pem` (PKCS#8, SEC1 or PKCS#1).
pub(crate) fn key_from_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: what.to_string(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => "no private key block found".into(),
            e => e.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_pem_without_blocks_is_refused() {
        let e = certs_from_pem(b"hello", "ca.pem").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad PEM in ca.pem: no \"BEGIN CERTIFICATE\" block found"
        );
    }

    #[test]
    fn key_pem_without_key_is_refused() {
        let e = key_from_pem(b"", "key.pem").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad PEM in key.pem: no private key block found"
        );
    }

    #[test]
    fn broken_base64_is_refused() {
        let pem = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = certs_from_pem(pem, "x").unwrap_err();
        assert!(matches!(e, TlsError::Pem { .. }), "{e:?}");
    }

    #[test]
    fn missing_file_names_the_file() {
        let e = Identity::from_pem_files("/nonexistent/c.pem", "/nonexistent/k.pem").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("bad PEM in /nonexistent/c.pem: cannot read"));
    }
}
