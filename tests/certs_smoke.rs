mod support;

#[test]
fn support_certificates_are_pem() {
    let ca = support::certs::Ca::new("test ca");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    assert!(server.cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(support::certs::kong_shared().key.contains("PRIVATE KEY"));
}
