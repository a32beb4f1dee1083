//! Our own certificate verifiers: pinning (Kong's shared mode, both sides) and the
//! explicit no-verification mode. All of them still verify the handshake signatures, so
//! the peer must hold the private key of the certificate it shows.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
#[cfg(feature = "dp")]
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
#[cfg(feature = "cp")]
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
#[cfg(feature = "cp")]
use rustls::DistinguishedName;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
#[cfg(feature = "dp")]
use rustls_pki_types::ServerName;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::error::PinMismatch;

/// The handshake signature checks every verifier here shares: the peer must hold the key
/// of the certificate it shows, whatever we decided about the certificate itself.
macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}

fn check_pinned(
    pinned: &CertificateDer<'static>,
    end_entity: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    if end_entity.as_ref() != pinned.as_ref() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(PinMismatch)),
        )));
    }
    super::validity::check(end_entity.as_ref(), now).map_err(rustls::Error::InvalidCertificate)
}

/// Accepts exactly one server certificate (by DER equality) within its validity window,
/// with no name check: Kong's shared certificate has no subjectAltName.
#[cfg(feature = "dp")]
#[derive(Debug)]
pub(crate) struct PinnedServer {
    pub(crate) pinned: CertificateDer<'static>,
    pub(crate) algs: WebPkiSupportedAlgorithms,
}

#[cfg(feature = "dp")]
impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_pinned(&self.pinned, end_entity, now)?;
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

/// Accepts any server certificate; only the handshake signatures are checked.
#[cfg(feature = "dp")]
#[derive(Debug)]
pub(crate) struct NoVerification {
    pub(crate) algs: WebPkiSupportedAlgorithms,
}

#[cfg(feature = "dp")]
impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

/// Requires a client certificate equal (DER) to the pinned one, within its validity
/// window. Kong's CP compares SHA-256 digests of the certificates, which is the same test.
/// No CA names are offered to the client.
#[cfg(feature = "cp")]
#[derive(Debug)]
pub(crate) struct PinnedClient {
    pub(crate) pinned: CertificateDer<'static>,
    pub(crate) algs: WebPkiSupportedAlgorithms,
}

#[cfg(feature = "cp")]
impl ClientCertVerifier for PinnedClient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_pinned(&self.pinned, end_entity, now)?;
        Ok(ClientCertVerified::assertion())
    }

    signature_checks!();
}
