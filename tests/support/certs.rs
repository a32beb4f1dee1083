//! Certificates made with rcgen at test time.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};

/// A certificate and its key, as PEM text.
#[derive(Clone, Debug)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that signs leaves.
pub struct Ca {
    pub pem: Pem,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: Pem {
                cert: cert.pem(),
                key: key.serialize_pem(),
            },
            params,
            key,
        }
    }

    fn issuer(&self) -> rcgen::Issuer<'_, &KeyPair> {
        rcgen::Issuer::from_params(&self.params, &self.key)
    }

    /// A server certificate for `names` (DNS names or IP addresses), usable by a CP.
    pub fn server(&self, names: &[&str]) -> Pem {
        self.leaf(names, &[ExtendedKeyUsagePurpose::ServerAuth], None)
    }

    /// A client certificate whose extended key usage is only clientAuth.
    pub fn client(&self, cn: &str) -> Pem {
        self.leaf(&[], &[ExtendedKeyUsagePurpose::ClientAuth], Some(cn))
    }

    /// A leaf with explicit validity, for expired and not-yet-valid cases.
    pub fn server_valid(&self, names: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> Pem {
        let mut params = leaf_params(names, &[ExtendedKeyUsagePurpose::ServerAuth], None);
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn leaf(&self, names: &[&str], eku: &[ExtendedKeyUsagePurpose], cn: Option<&str>) -> Pem {
        let params = leaf_params(names, eku, cn);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params.signed_by(&key, &self.issuer()).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

fn leaf_params(
    names: &[&str],
    eku: &[ExtendedKeyUsagePurpose],
    cn: Option<&str>,
) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, cn.unwrap_or("dpspec test"));
    params.extended_key_usages = eku.to_vec();
    params
}

/// A Kong-style shared certificate: EC P-384, CN `kong_clustering`, no SAN, self-signed,
/// as `kong hybrid gen_cert` makes it.
pub fn kong_shared() -> Pem {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "kong_clustering");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// A self-signed certificate for `names`, trusted by nobody unless pinned.
pub fn self_signed(names: &[&str]) -> Pem {
    let params = leaf_params(names, &[ExtendedKeyUsagePurpose::ServerAuth], None);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}
