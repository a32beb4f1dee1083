//! Unit tests of both sides of the upgrade.

use super::*;
use crate::http::{
    read_request_head, read_response_head, HttpLimits, NodeIdentity, RequestHead, ResponseHead,
};
use std::io::Cursor;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn node() -> NodeIdentity {
    NodeIdentity::new("7b8a0c5e-1111-4c4c-9d9d-000000000001", "dp-1", "3.1.0")
}

fn parse_req(bytes: &[u8]) -> RequestHead {
    read_request_head(&mut Cursor::new(bytes), &HttpLimits::default())
        .unwrap()
        .0
}

fn parse_resp(bytes: &[u8]) -> (ResponseHead, Vec<u8>) {
    read_response_head(&mut Cursor::new(bytes), &HttpLimits::default()).unwrap()
}

fn good_request() -> Vec<u8> {
    build_request("cp.example:8005", &UpgradeTarget::wrpc(), &node(), KEY)
}

/// The good request with header `name` removed (all of them) and `extra` lines added.
fn edited(remove: &[&str], extra: &str) -> RequestHead {
    let text = String::from_utf8(good_request()).unwrap();
    let mut lines: Vec<&str> = text
        .split("\r\n")
        .filter(|l| {
            !remove
                .iter()
                .any(|r| l.to_ascii_lowercase().starts_with(&format!("{r}:")))
        })
        .filter(|l| !l.is_empty())
        .collect();
    for e in extra.split("\r\n").filter(|e| !e.is_empty()) {
        lines.push(e);
    }
    parse_req(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())
}

#[test]
fn request_bytes_are_exactly_kongs() {
    let text = String::from_utf8(good_request()).unwrap();
    assert_eq!(
        text,
        "GET /v1/wrpc?node_id=7b8a0c5e-1111-4c4c-9d9d-000000000001&node_hostname=dp-1&node_version=3.1.0 HTTP/1.1\r\n\
         Host: cp.example:8005\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: wrpc.konghq.com\r\n\
         kong-node-id: 7b8a0c5e-1111-4c4c-9d9d-000000000001\r\n\
         kong-version: 3.1.0\r\n\
         kong-hostname: dp-1\r\n\r\n"
    );
}

#[test]
fn request_with_a_query_in_the_path_and_unsafe_values() {
    let n = NodeIdentity::new("a b", "h&x", "1%");
    let text = String::from_utf8(build_request(
        "h",
        &UpgradeTarget::new("/p?x=1", Some(WRPC_SUBPROTOCOL)),
        &n,
        KEY,
    ))
    .unwrap();
    assert!(
        text.starts_with(
            "GET /p?x=1&node_id=a%20b&node_hostname=h%26x&node_version=1%25 HTTP/1.1\r\n"
        ),
        "{text}"
    );
    // Values that cannot be sent raw stay out of the headers.
    assert!(!text.contains("kong-node-id"), "{text}");
    assert!(n.validate().is_err());
}

#[test]
fn node_validation() {
    assert!(node().validate().is_ok());
    assert!(NodeIdentity::new("id", "", "3.1.0").validate().is_ok());
    for bad in [
        NodeIdentity::new("", "h", "3.1.0"),
        NodeIdentity::new("id", "h", ""),
        NodeIdentity::new("id", "h\r\n", "3.1.0"),
        NodeIdentity::new("id", "h#", "3.1.0"),
        NodeIdentity::new("x".repeat(257), "h", "3.1.0"),
        NodeIdentity::new("id", "hé", "3.1.0"),
    ] {
        assert!(
            matches!(bad.validate(), Err(crate::http::HttpError::InvalidNode(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn good_request_is_accepted_with_its_identity() {
    let req = check_request(&parse_req(&good_request())).unwrap();
    assert_eq!(req.key, KEY);
    assert_eq!(req.node, node());
}

#[test]
fn identity_from_the_query_alone_as_kong_sends_it() {
    let head = edited(&["kong-node-id", "kong-version", "kong-hostname"], "");
    assert_eq!(check_request(&head).unwrap().node, node());
}

#[test]
fn headers_win_over_the_query() {
    let head = edited(
        &["kong-node-id", "kong-version"],
        "kong-node-id: from-header\r\nKONG-VERSION: 3.0.1",
    );
    let n = check_request(&head).unwrap().node;
    assert_eq!(n.node_id, "from-header");
    assert_eq!(n.version, "3.0.1");
    assert_eq!(n.hostname, "dp-1");
}

#[test]
fn identity_from_headers_alone() {
    let mut head = parse_req(&good_request());
    head.target = WRPC_PATH.into();
    assert_eq!(check_request(&head).unwrap().node, node());
}

#[test]
fn hostname_is_optional() {
    let mut head = edited(&["kong-hostname"], "");
    head.target = "/v1/wrpc?node_id=a&node_version=3.1.0".into();
    assert_eq!(check_request(&head).unwrap().node.hostname, "");
}

#[test]
fn missing_node_id_or_version_is_400_saying_which() {
    let mut head = edited(&["kong-node-id"], "");
    head.target = "/v1/wrpc?node_hostname=h&node_version=3.1.0".into();
    let rej = check_request(&head).unwrap_err();
    assert_eq!(rej.status, 400);
    assert!(rej.reason.contains("missing node_id"), "{rej}");

    let mut head = edited(&["kong-version"], "");
    head.target = "/v1/wrpc?node_id=a".into();
    let rej = check_request(&head).unwrap_err();
    assert_eq!(rej.status, 400);
    assert!(rej.reason.contains("missing node_version"), "{rej}");

    let head = edited(&["kong-node-id"], "kong-node-id: ");
    let rej = check_request(&head).unwrap_err();
    assert_eq!(rej.status, 400);
    assert!(rej.reason.contains("kong-node-id header is empty"), "{rej}");
}

#[test]
fn bad_identity_values_are_400() {
    let long = "x".repeat(257);
    let head = edited(&["kong-hostname"], &format!("kong-hostname: {long}"));
    let rej = check_request(&head).unwrap_err();
    assert_eq!(rej.status, 400);
    assert!(rej.reason.contains("longer than 256"), "{rej}");

    // httparse refuses control characters in headers; the query can still hold them.
    let mut head = edited(&["kong-node-id"], "");
    head.target = "/v1/wrpc?node_id=a\x1bb&node_version=1".into();
    let rej = check_request(&head).unwrap_err();
    assert!(rej.reason.contains("control"), "{rej}");

    let mut head = edited(&["kong-node-id"], "");
    head.headers.push(("kong-node-id".into(), vec![0xff, 0xfe]));
    let rej = check_request(&head).unwrap_err();
    assert!(rej.reason.contains("not UTF-8"), "{rej}");
}

#[test]
fn head_gets_400_and_other_methods_405() {
    let mut head = parse_req(&good_request());
    head.method = "HEAD".into();
    assert_eq!(check_request(&head).unwrap_err().status, 400);
    head.method = "POST".into();
    let rej = check_request(&head).unwrap_err();
    assert_eq!(rej.status, 405);
    assert_eq!(rej.headers, vec![("Allow".to_string(), "GET".to_string())]);
}

#[test]
fn http_1_0_is_refused() {
    let mut head = parse_req(&good_request());
    head.version = 0;
    assert_eq!(check_request(&head).unwrap_err().status, 400);
}

#[test]
fn upgrade_and_connection_headers_are_required() {
    let rej = check_request(&edited(&["upgrade"], "")).unwrap_err();
    assert_eq!(rej.status, 400);
    assert!(rej.reason.contains("Upgrade: websocket"), "{rej}");
    let rej = check_request(&edited(&["upgrade"], "Upgrade: h2c")).unwrap_err();
    assert_eq!(rej.status, 400);
    let rej = check_request(&edited(&["connection"], "")).unwrap_err();
    assert!(rej.reason.contains("Connection"), "{rej}");
    let rej = check_request(&edited(&["connection"], "Connection: keep-alive")).unwrap_err();
    assert_eq!(rej.status, 400);
    // Tokens are found in lists and across repeated headers, in any case.
    let ok = edited(
        &["connection", "upgrade"],
        "Connection: keep-alive\r\nConnection: keep-alive, UPGRADE\r\nUpgrade: WebSocket",
    );
    assert!(check_request(&ok).is_ok());
}

#[test]
fn key_must_be_base64_of_16_bytes() {
    let rej = check_request(&edited(&["sec-websocket-key"], "")).unwrap_err();
    assert_eq!(rej.status, 400);
    assert!(rej.reason.contains("missing"), "{rej}");
    for bad in [
        "short==",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZQ=x",
        "dGhlIHNhbXBsZSBub25j!Q==",
    ] {
        let rej = check_request(&edited(
            &["sec-websocket-key"],
            &format!("Sec-WebSocket-Key: {bad}"),
        ))
        .unwrap_err();
        assert_eq!(rej.status, 400, "{bad}");
        assert!(rej.reason.contains("base64"), "{rej}");
    }
}

#[test]
fn version_other_than_13_is_426_with_the_version_header() {
    for extra in ["", "Sec-WebSocket-Version: 8"] {
        let rej = check_request(&edited(&["sec-websocket-version"], extra)).unwrap_err();
        assert_eq!(rej.status, 426);
        assert_eq!(
            rej.headers,
            vec![("Sec-WebSocket-Version".to_string(), "13".to_string())]
        );
    }
}

#[test]
fn missing_subprotocol_is_400_with_the_protocol_header() {
    for extra in ["", "Sec-WebSocket-Protocol: chat, superchat"] {
        let rej = check_request(&edited(&["sec-websocket-protocol"], extra)).unwrap_err();
        assert_eq!(rej.status, 400);
        assert_eq!(
            rej.headers,
            vec![(
                "Sec-WebSocket-Protocol".to_string(),
                "wrpc.konghq.com".to_string()
            )]
        );
    }
    let ok = edited(
        &["sec-websocket-protocol"],
        "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: x, wrpc.konghq.com ",
    );
    assert!(check_request(&ok).is_ok());
}

#[test]
fn accept_response_bytes_and_round_trip() {
    let req = check_request(&parse_req(&good_request())).unwrap();
    let bytes = accept_response(&req, "cp-1");
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Sec-WebSocket-Protocol: wrpc.konghq.com\r\n\
         kong-node-id: cp-1\r\n\r\n"
    );
    let (head, _) = parse_resp(&bytes);
    check_response(&head, KEY, &UpgradeTarget::wrpc()).unwrap();
}

#[test]
fn response_checks() {
    let req = check_request(&parse_req(&good_request())).unwrap();
    let good = String::from_utf8(accept_response(&req, "cp-1")).unwrap();
    type Case = (&'static str, &'static str, fn(&UpgradeError) -> bool);
    let cases: [Case; 5] = [
        (
            "Upgrade: websocket\r\n",
            "",
            |e| matches!(e, UpgradeError::NotWebSocket(w) if w.contains("Upgrade")),
        ),
        (
            "Connection: Upgrade\r\n",
            "",
            |e| matches!(e, UpgradeError::NotWebSocket(w) if w.contains("Connection")),
        ),
        (
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            |e| matches!(e, UpgradeError::BadAccept),
        ),
        ("Sec-WebSocket-Protocol: wrpc.konghq.com\r\n", "", |e| {
            matches!(e, UpgradeError::Subprotocol(None))
        }),
        (
            "wrpc.konghq.com",
            "chat",
            |e| matches!(e, UpgradeError::Subprotocol(Some(p)) if p == "chat"),
        ),
    ];
    for (from, to, check) in cases {
        let bytes = good.replace(from, to);
        let (head, _) = parse_resp(bytes.as_bytes());
        let err = check_response(&head, KEY, &UpgradeTarget::wrpc()).unwrap_err();
        assert!(check(&err), "{from}: {err:?}");
    }
}

#[test]
fn non_101_is_refused_with_status_reason_and_cp_id() {
    let rej = Rejection::new(429, "node 7b8a has 2 connections already");
    let bytes = rejection_response(&rej, "cp-9", true);
    let (head, body) = parse_resp(&bytes);
    assert_eq!(body, b"node 7b8a has 2 connections already\n");
    let err = check_response(&head, KEY, &UpgradeTarget::wrpc()).unwrap_err();
    match &err {
        UpgradeError::Refused(r) => {
            assert_eq!(r.status, 429);
            assert_eq!(r.reason, "Too Many Requests");
            assert_eq!(r.cp_node_id.as_deref(), Some("cp-9"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "the CP answered 429 Too Many Requests (CP node cp-9); too many connections from this node, retry later"
    );
}

#[test]
fn rejection_response_bytes() {
    let rej = Rejection::bad("nope")
        .with_header("Sec-WebSocket-Protocol", WRPC_SUBPROTOCOL)
        .with_header("Content-Length", "999")
        .with_header("X-Bad", "a\r\nb");
    let text = String::from_utf8(rejection_response(&rej, "cp-1", true)).unwrap();
    assert_eq!(
        text,
        "HTTP/1.1 400 Bad Request\r\n\
         Sec-WebSocket-Protocol: wrpc.konghq.com\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         kong-node-id: cp-1\r\n\
         Content-Length: 5\r\n\
         Connection: close\r\n\r\nnope\n"
    );
    let head_only = rejection_response(&rej, "cp-1", false);
    assert!(head_only.ends_with(b"Connection: close\r\n\r\n"));
}

#[test]
fn plain_wrpc_services_may_take_upgrades_without_identity() {
    let head = edited(&["kong-node-id", "kong-version", "kong-hostname"], "");
    let mut anonymous = head.clone();
    anonymous.target = "/v1/wrpc".into();
    assert_eq!(check_request(&anonymous).unwrap_err().status, 400);
    let req = check_request_without_identity(&anonymous).unwrap();
    assert_eq!(req.node, NodeIdentity::default());
    // An identity that is sent is still checked.
    let mut bad = anonymous.clone();
    bad.target = format!("/v1/wrpc?node_id={}&node_version=3.1.0", "x".repeat(300));
    assert!(check_request_without_identity(&bad).is_err());
}

#[test]
fn outlet_request_offers_no_subprotocol() {
    let text = String::from_utf8(build_request(
        "cp:8005",
        &UpgradeTarget::outlet(),
        &node(),
        KEY,
    ))
    .unwrap();
    assert!(
        text.starts_with(
            "GET /v1/outlet?node_id=7b8a0c5e-1111-4c4c-9d9d-000000000001&node_hostname=dp-1&node_version=3.1.0 HTTP/1.1\r\n"
        ),
        "{text}"
    );
    assert!(
        !text.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{text}"
    );
    assert!(text.contains("kong-node-id: 7b8a0c5e-1111-4c4c-9d9d-000000000001\r\n"));
}

#[test]
fn outlet_answer_must_carry_no_subprotocol() {
    let ok = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        tungstenite::handshake::derive_accept_key(KEY.as_bytes())
    );
    let (head, _) = parse_resp(ok.as_bytes());
    check_response(&head, KEY, &UpgradeTarget::outlet()).unwrap();
    // The same answer does not do for wRPC, which needs its subprotocol back.
    assert!(matches!(
        check_response(&head, KEY, &UpgradeTarget::wrpc()),
        Err(UpgradeError::Subprotocol(None))
    ));
    let with = ok.replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Protocol: wrpc.konghq.com\r\n\r\n",
    );
    let (head, _) = parse_resp(with.as_bytes());
    assert!(matches!(
        check_response(&head, KEY, &UpgradeTarget::outlet()),
        Err(UpgradeError::Subprotocol(Some(_)))
    ));
    // Kong does not check Sec-WebSocket-Accept; we do, on either path.
    let bad = ok.replace(
        &tungstenite::handshake::derive_accept_key(KEY.as_bytes()),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    );
    let (head, _) = parse_resp(bad.as_bytes());
    assert!(matches!(
        check_response(&head, KEY, &UpgradeTarget::outlet()),
        Err(UpgradeError::BadAccept)
    ));
}

/// Kong's `/v1/outlet` upgrade request: identity in the query, no subprotocol.
fn outlet_request(query: &str, extra: &str) -> RequestHead {
    parse_req(
        format!(
            "GET /v1/outlet{query} HTTP/1.1\r\nUpgrade: websocket\r\nHost: cp:8005\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
             Connection: Upgrade\r\n{extra}\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn outlet_takes_no_subprotocol_and_its_101_names_none() {
    let head = outlet_request("?node_id=a&node_hostname=h&node_version=3.9.3", "");
    let req = check_upgrade(&head, &Endpoint::outlet()).unwrap();
    assert_eq!(req.subprotocol, None);
    assert_eq!(req.node, NodeIdentity::new("a", "h", "3.9.3"));
    let text = String::from_utf8(accept_response(&req, "cp-1")).unwrap();
    assert!(
        !text.to_ascii_lowercase().contains("sec-websocket-protocol"),
        "{text}"
    );
    let (resp, _) = parse_resp(text.as_bytes());
    assert_eq!(resp.status, 101);
    assert_eq!(
        resp.header_str("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
}

#[test]
fn outlet_echoes_the_first_subprotocol_offered() {
    let head = outlet_request(
        "?node_id=a&node_version=3.9.3",
        "Sec-WebSocket-Protocol: x.example, y\r\n",
    );
    let req = check_upgrade(&head, &Endpoint::outlet()).unwrap();
    assert_eq!(req.subprotocol.as_deref(), Some("x.example"));
    let text = String::from_utf8(accept_response(&req, "cp-1")).unwrap();
    assert!(
        text.contains("Sec-WebSocket-Protocol: x.example\r\n"),
        "{text}"
    );
}

#[test]
fn outlet_checks_the_identity_before_the_websocket_headers() {
    // No node_id and not even an upgrade: Kong answers 400 for the id first.
    let head = parse_req(b"GET /v1/outlet?node_version=3.9.3 HTTP/1.1\r\nHost: cp\r\n\r\n");
    let rej = check_upgrade(&head, &Endpoint::outlet()).unwrap_err();
    assert_eq!(rej.status, 400);
    assert!(rej.reason.contains("node_id"), "{rej}");
    let head = parse_req(b"HEAD /v1/outlet?node_id=a HTTP/1.1\r\nHost: cp\r\n\r\n");
    let rej = check_upgrade(&head, &Endpoint::outlet()).unwrap_err();
    assert!(rej.reason.contains("node_version"), "{rej}");
    // wRPC keeps its order: the upgrade headers first.
    let rej = check_upgrade(&head, &Endpoint::wrpc()).unwrap_err();
    assert!(rej.reason.contains("GET"), "{rej}");
}
