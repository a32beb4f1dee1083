//! The wRPC upgrade end to end: a real DP dial against the real CP listener, and raw
//! requests, over TLS on 127.0.0.1.

mod support;

use std::io::Write;

use dpspec::http::ServerConfig;
use dpspec::upgrade::{build_request, generate_key, Rejection, UpgradeError};
use dpspec::upgrade::{dial, UpgradeTarget};
use support::tls_pair::{dp_node, start, start_default, start_with, CP_ID, PATIENCE};

/// The request `dpspec` sends, with the lines starting with `drop` (lowercase names)
/// removed.
fn request_without(drop: &[&str]) -> Vec<u8> {
    let text = String::from_utf8(build_request(
        "127.0.0.1:8005",
        &UpgradeTarget::wrpc(),
        &dp_node(),
        &generate_key(),
    ))
    .unwrap();
    text.split_inclusive("\r\n")
        .filter(|l| !drop.iter().any(|d| l.to_ascii_lowercase().starts_with(d)))
        .collect::<String>()
        .into_bytes()
}

#[test]
fn dial_upgrades_and_cp_sees_identity_headers_and_query() {
    support::init_logs();
    let cp = start_default();
    let dialed = dial(&cp.dial_opts(), &UpgradeTarget::wrpc()).unwrap();
    assert_eq!(dialed.response.status, 101);
    assert_eq!(dialed.response.header_str("kong-node-id"), Some(CP_ID));
    assert!(dialed.leftover.is_empty());

    let up = cp.upgraded.recv_timeout(PATIENCE).unwrap();
    assert_eq!(up.node, dp_node());
    assert_eq!(
        up.head.header_str("kong-node-id"),
        Some("8f4e2a10-0000-4000-8000-00000000dp01")
    );
    assert_eq!(up.head.header_str("kong-version"), Some("3.1.0"));
    assert_eq!(up.head.header_str("kong-hostname"), Some("dp-host-1"));
    assert_eq!(
        up.head.query_pairs(),
        vec![
            ("node_id", "8f4e2a10-0000-4000-8000-00000000dp01"),
            ("node_hostname", "dp-host-1"),
            ("node_version", "3.1.0"),
        ]
    );
    assert_eq!(
        up.head.header_str("host"),
        Some(&*format!("127.0.0.1:{}", cp.addr().port()))
    );
    assert_eq!(up.peer_addr, dialed.sock.local_addr().unwrap());
    // Read timeout cleared, write timeout kept, on both sides.
    assert_eq!(up.sock.read_timeout().unwrap(), None);
    assert!(up.sock.write_timeout().unwrap().is_some());
    assert_eq!(dialed.sock.read_timeout().unwrap(), None);
}

#[test]
fn bytes_sent_with_the_upgrade_request_arrive_in_leftover() {
    let cp = start_default();
    let mut bytes = request_without(&[]);
    bytes.extend_from_slice(b"\x82\x83\x01\x02\x03\x04frame bytes");
    let mut stream = cp.raw_connect();
    stream.write_all(&bytes).unwrap();
    stream.flush().unwrap();
    let up = cp.upgraded.recv_timeout(PATIENCE).unwrap();
    assert_eq!(up.leftover, b"\x82\x83\x01\x02\x03\x04frame bytes");
    let (head, _) = dpspec::http::read_response_head(&mut stream, &Default::default()).unwrap();
    assert_eq!(head.status, 101);
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    assert_eq!(
        head.header_str("sec-websocket-protocol"),
        Some("wrpc.konghq.com")
    );
}

#[test]
fn identity_in_the_query_alone_is_accepted_as_kong_dps_send_it() {
    let cp = start_default();
    let bytes = request_without(&["kong-"]);
    let mut stream = cp.raw_connect();
    stream.write_all(&bytes).unwrap();
    stream.flush().unwrap();
    let up = cp.upgraded.recv_timeout(PATIENCE).unwrap();
    assert_eq!(up.node, dp_node());
}

#[test]
fn missing_subprotocol_gets_400_with_the_protocol_header_and_no_upgrade() {
    let cp = start_default();
    let (head, body) = cp.raw(&request_without(&["sec-websocket-protocol"]));
    assert_eq!(head.status, 400);
    assert_eq!(
        head.header_str("sec-websocket-protocol"),
        Some("wrpc.konghq.com")
    );
    assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
    assert_eq!(head.header_str("connection"), Some("close"));
    assert!(head.header("upgrade").is_none());
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "the wrpc.konghq.com subprotocol must be offered in Sec-WebSocket-Protocol\n"
    );
    // The answer came after the decision: nothing was admitted or handed over.
    assert!(cp.admitted.try_recv().is_err());
    assert!(cp.upgraded.try_recv().is_err());
}

#[test]
fn missing_node_id_or_version_gets_400() {
    let cp = start_default();
    for (drop, target, param) in [
        (
            &["kong-node-id", "get "][..],
            "/v1/wrpc?node_hostname=h&node_version=3.1.0",
            "node_id",
        ),
        (
            &["kong-version", "get "][..],
            "/v1/wrpc?node_id=abc&node_hostname=h",
            "node_version",
        ),
    ] {
        let mut bytes = format!("GET {target} HTTP/1.1\r\n").into_bytes();
        bytes.extend(request_without(drop));
        let (head, body) = cp.raw(&bytes);
        assert_eq!(head.status, 400, "{param}");
        assert_eq!(head.header_str("kong-node-id"), Some(CP_ID));
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains(&format!("missing {param}")), "{body}");
    }
    assert!(cp.upgraded.try_recv().is_err());
}

#[test]
fn admit_refusal_reaches_the_dp_with_status_reason_and_cp_id() {
    let cp = start(
        ServerConfig::new(CP_ID),
        Some(
            Rejection::new(429, "node 8f4e2a10 already has 2 connections")
                .with_header("Retry-After", "5"),
        ),
    );
    let err = dial(&cp.dial_opts(), &UpgradeTarget::wrpc()).unwrap_err();
    let dpspec::Error::Upgrade(UpgradeError::Refused(refusal)) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(refusal.status, 429);
    assert_eq!(refusal.reason, "Too Many Requests");
    assert_eq!(refusal.body, "node 8f4e2a10 already has 2 connections");
    assert_eq!(refusal.cp_node_id.as_deref(), Some(CP_ID));
    assert_eq!(
        err.to_string(),
        "the CP answered 429 Too Many Requests (CP node cp-node-1): \
         node 8f4e2a10 already has 2 connections; too many connections from this node, retry later"
    );
    // admit saw the request; nothing was handed over.
    assert_eq!(cp.admitted.recv_timeout(PATIENCE).unwrap().node, dp_node());
    assert!(cp.upgraded.try_recv().is_err());
}

#[test]
fn shared_mode_dial_uses_kong_clustering_and_the_shared_certificate() {
    let cp = start_with(support::tls_pair::shared(), ServerConfig::new(CP_ID), None);
    let opts = cp.dial_opts();
    assert_eq!(opts.effective_server_name(), "kong_clustering");
    let dialed = dial(&opts, &UpgradeTarget::wrpc()).unwrap();
    assert_eq!(dialed.response.status, 101);
    let up = cp.upgraded.recv_timeout(PATIENCE).unwrap();
    assert_eq!(up.session.server_name(), Some("kong_clustering"));
    assert!(up.session.peer_certificates().is_some());
}

#[test]
fn dial_to_a_wrong_path_is_refused_404() {
    let cp = start_default();
    let opts = cp.dial_opts();
    let target = UpgradeTarget::new("/v2/elsewhere", Some(dpspec::upgrade::WRPC_SUBPROTOCOL));
    let err = dial(&opts, &target).unwrap_err();
    let dpspec::Error::Upgrade(UpgradeError::Refused(refusal)) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(refusal.status, 404);
    assert_eq!(refusal.cp_node_id.as_deref(), Some(CP_ID));
    assert_eq!(refusal.body, "no endpoint at /v2/elsewhere");
}

/// A one-shot HTTP CONNECT proxy: takes one connection, sends its request line to the
/// test, answers 200 and then copies bytes both ways untouched.
fn one_shot_proxy() -> (
    std::net::SocketAddr,
    crossbeam_channel::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    let t = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            client.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let line = head.lines().next().unwrap().to_string();
        let target = line.split(' ').nth(1).unwrap().to_string();
        tx.send(line).unwrap();
        let upstream = TcpStream::connect(target).unwrap();
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
        let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut c2, &mut u2);
            let _ = u2.shutdown(std::net::Shutdown::Write);
        });
        let (mut upstream, mut client) = (upstream, client);
        let _ = std::io::copy(&mut upstream, &mut client);
        let _ = client.shutdown(std::net::Shutdown::Write);
        up.join().unwrap();
    });
    (addr, rx, t)
}

#[test]
fn dial_through_a_connect_proxy() {
    let cp = start_default();
    let (proxy_addr, lines, proxy) = one_shot_proxy();
    let mut opts = cp.dial_opts();
    opts = opts.proxy(dpspec::proxy::ProxyUrl::new("127.0.0.1", proxy_addr.port()));
    let dialed = dial(&opts, &UpgradeTarget::wrpc()).unwrap();
    assert_eq!(dialed.response.header_str("kong-node-id"), Some(CP_ID));
    assert_eq!(
        lines.recv_timeout(PATIENCE).unwrap(),
        format!("CONNECT 127.0.0.1:{} HTTP/1.1", cp.addr().port())
    );
    let up = cp.upgraded.recv_timeout(PATIENCE).unwrap();
    assert_eq!(up.node, dp_node());
    drop((dialed, up));
    proxy.join().unwrap();
}
