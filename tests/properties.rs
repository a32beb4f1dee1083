//! Property tests over the parsers and codecs a peer's bytes reach: HTTP heads, the
//! CONNECT answer, the wRPC envelope, the negotiation and config messages, config intake
//! and Kong's hash. The same entry points have fuzz targets under `fuzz/`.
//!
//! Each property runs a modest number of cases (`PROPTEST_CASES=5000 cargo test --test
//! properties` for a longer run). `write_fuzz_seeds`, ignored by default, writes the
//! fuzzers' seed corpora from real messages.

use std::io::{self, Cursor, Read};

use proptest::prelude::*;
use prost::Message;
use serde_json::{Map, Value};

use dpspec::config::{config_hashes, decode, gzip, inflate, parse_object, ConfigError};
use dpspec::http::{read_request_head, read_response_head, HeadError, HttpLimits, NodeIdentity};
use dpspec::proxy::{read_connect_answer, ProxyError};
use dpspec::services::config::{
    GranularHashes, PingCPRequest, PluginVersion, ReportMetadataRequest, ReportMetadataResponse,
    SyncConfigRequest, SyncConfigResponse,
};
use dpspec::services::negotiation::{
    check_response, dp_request, NegotiateServicesRequest, NegotiateServicesResponse,
    NegotiationPolicy, ServiceRequest,
};
use dpspec::upgrade::{build_request, check_request};
use dpspec::wrpc::envelope::{decode_envelope, encode_envelope, PayloadV1, WebsocketPayload};
use dpspec::wrpc::validate::{self, classify, Kind};
use dpspec::wrpc::ErrorType;

fn config() -> ProptestConfig {
    ProptestConfig {
        // Modest by default; PROPTEST_CASES sets another count.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(128),
        // Failures are reported with their minimal input; no files are written.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Hands out `data` in reads of the given sizes (cycling), never more than asked.
struct Split<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl<'a> Split<'a> {
    fn new(data: &'a [u8], sizes: Vec<usize>) -> Split<'a> {
        Split {
            data,
            sizes,
            next: 0,
        }
    }
}

impl Read for Split<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = if self.sizes.is_empty() {
            usize::MAX
        } else {
            self.sizes[self.next % self.sizes.len()].max(1)
        };
        self.next += 1;
        let n = want.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn header_value() -> impl Strategy<Value = String> {
    // Visible ASCII and inner spaces; httparse trims the ends.
    "[!-~]([ -~]{0,30}[!-~])?"
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((token(), header_value()), 0..12)
}

fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["GET", "HEAD", "POST", "OPTIONS"]),
        "/[A-Za-z0-9/._~?=&%-]{0,40}",
        0u8..=1,
        headers(),
    )
        .prop_map(|(method, target, minor, headers)| {
            let mut out = format!("{method} {target} HTTP/1.{minor}\r\n");
            for (n, v) in headers {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.into_bytes()
        })
}

fn response_bytes() -> impl Strategy<Value = Vec<u8>> {
    (100u16..=599, "[A-Za-z ]{0,20}", 0u8..=1, headers()).prop_map(
        |(status, reason, minor, headers)| {
            let mut out = format!("HTTP/1.{minor} {status} {reason}\r\n");
            for (n, v) in headers {
                out.push_str(&format!("{n}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.into_bytes()
        },
    )
}

/// Everything a reader still holds: what the parser kept past the head, then the rest.
fn after_head(leftover: Vec<u8>, rest: &[u8]) -> Vec<u8> {
    let mut all = leftover;
    all.extend_from_slice(rest);
    all
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        "[a-z0-9 ]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..7).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_config() -> impl Strategy<Value = Vec<(String, Value)>> {
    let key = prop_oneof![
        Just("routes".to_string()),
        Just("services".to_string()),
        Just("plugins".to_string()),
        Just("_format_version".to_string()),
        "[a-z_]{1,10}",
    ];
    prop::collection::btree_map(key, any_json(), 0..8).prop_map(|m| m.into_iter().collect())
}

/// A JSON object's text with its keys in the given order.
fn object_text(entries: &[(String, Value)]) -> Vec<u8> {
    let mut out = b"{".to_vec();
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend(serde_json::to_vec(k).unwrap());
        out.push(b':');
        out.extend(serde_json::to_vec(v).unwrap());
    }
    out.push(b'}');
    out
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn any_payload() -> impl Strategy<Value = PayloadV1> {
    (
        (
            0i32..7,
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (any::<u32>(), 0i32..3, any::<u32>()),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..3),
        prop::option::of((0i32..5, "[ -~]{0,20}")),
    )
        .prop_map(
            |((mtype, svc_id, rpc_id, seq, ack), (deadline, enc, stream_id), payloads, error)| {
                PayloadV1 {
                    mtype,
                    error: error.map(
                        |(etype, description)| dpspec::wrpc::envelope::ErrorPayload {
                            etype,
                            description,
                        },
                    ),
                    svc_id,
                    rpc_id,
                    seq,
                    ack,
                    deadline,
                    payload_encoding: enc,
                    payloads: payloads.into_iter().map(Into::into).collect(),
                    stream_id,
                }
            },
        )
}

fn plugins() -> impl Strategy<Value = Vec<PluginVersion>> {
    prop::collection::vec(
        ("[a-z-]{1,16}", "([0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2})?")
            .prop_map(|(name, version)| PluginVersion { name, version }),
        0..6,
    )
}

fn hex32() -> impl Strategy<Value = String> {
    "[0-9a-f]{32}"
}

proptest! {
    #![proptest_config(config())]

    // -- HTTP heads -------------------------------------------------------------------

    #[test]
    fn request_head_parser_takes_any_bytes(
        data in prop::collection::vec(any::<u8>(), 0..600),
        sizes in prop::collection::vec(1usize..64, 0..4),
    ) {
        let limits = HttpLimits::default().max_head_bytes(256).max_headers(8);
        for result in [
            read_request_head(&mut Cursor::new(&data), &limits),
            read_request_head(&mut Split::new(&data, sizes.clone()), &limits),
        ] {
            match result {
                Ok((head, _)) => { let _ = check_request(&head); }
                Err(e) => {
                    prop_assert!(matches!(e, HeadError::TooLarge { limit: 256 }
                        | HeadError::TooManyHeaders { limit: 8 }
                        | HeadError::Malformed(_)
                        | HeadError::Eof { .. }), "{e:?}");
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn response_head_and_connect_answer_take_any_bytes(
        data in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        match read_response_head(&mut Cursor::new(&data), &HttpLimits::default()) {
            Ok(_) => {}
            Err(e) => prop_assert!(matches!(e, HeadError::Malformed(_)
                | HeadError::TooManyHeaders { .. } | HeadError::Eof { .. }), "{e:?}"),
        }
        let mut r = Cursor::new(&data);
        match read_connect_answer(&mut r, "proxy:3128") {
            Ok(_) => prop_assert_eq!(data[r.position() as usize - 1], b'\n'),
            Err(e) => prop_assert!(matches!(e, ProxyError::NotHttp { .. }
                | ProxyError::Closed { .. } | ProxyError::HeadTooLarge { .. }), "{e:?}"),
        }
    }

    #[test]
    fn a_request_head_split_anywhere_parses_as_whole(
        head in request_bytes(),
        tail in prop::collection::vec(any::<u8>(), 0..300),
        sizes in prop::collection::vec(1usize..50, 1..6),
    ) {
        let mut data = head.clone();
        data.extend_from_slice(&tail);
        let limits = HttpLimits::default();
        let mut whole_r = Cursor::new(&data[..]);
        let (whole, left) = read_request_head(&mut whole_r, &limits).unwrap();
        let rest = &data[whole_r.position() as usize..];
        prop_assert_eq!(after_head(left, rest), tail.clone());
        let mut split_r = Split::new(&data, sizes);
        let (split, left) = read_request_head(&mut split_r, &limits).unwrap();
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(after_head(left, split_r.data), tail);
    }

    #[test]
    fn a_response_head_split_anywhere_parses_as_whole(
        head in response_bytes(),
        tail in prop::collection::vec(any::<u8>(), 0..300),
        sizes in prop::collection::vec(1usize..50, 1..6),
    ) {
        let mut data = head.clone();
        data.extend_from_slice(&tail);
        let limits = HttpLimits::default();
        let mut whole_r = Cursor::new(&data[..]);
        let (whole, left) = read_response_head(&mut whole_r, &limits).unwrap();
        let rest = &data[whole_r.position() as usize..];
        prop_assert_eq!(after_head(left, rest), tail.clone());
        let mut split_r = Split::new(&data, sizes);
        let (split, left) = read_response_head(&mut split_r, &limits).unwrap();
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(after_head(left, split_r.data), tail.clone());
        // The proxy's parser stops exactly at the end of the head.
        let mut r = Cursor::new(&data[..]);
        let (status, _) = read_connect_answer(&mut r, "proxy:3128").unwrap();
        prop_assert_eq!(status, whole.status);
        prop_assert_eq!(&data[r.position() as usize..], &tail[..]);
    }

    #[test]
    fn a_built_upgrade_request_passes_the_cp_check(
        id in "[A-Za-z0-9-]{1,40}",
        host in "[a-z0-9.-]{0,30}",
        version in "[0-9]\\.[0-9]{1,2}\\.[0-9]{1,2}",
        sizes in prop::collection::vec(1usize..40, 1..4),
    ) {
        let node = NodeIdentity::new(id, host, version);
        let bytes = build_request("cp.example:8005", &dpspec::upgrade::UpgradeTarget::wrpc(), &node, "dGhlIHNhbXBsZSBub25jZQ==");
        let (head, left) = read_request_head(&mut Split::new(&bytes, sizes), &HttpLimits::default()).unwrap();
        prop_assert!(left.is_empty());
        let req = check_request(&head).unwrap();
        prop_assert_eq!(req.node, node);
    }

    // -- wRPC envelope ----------------------------------------------------------------

    #[test]
    fn envelope_decoder_takes_any_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        match decode_envelope(&data) {
            Ok(msg) => {
                let both = validate::decode(&data);
                prop_assert_eq!(both.as_ref().map(|(_, k)| *k).map_err(|e| *e), classify(&msg));
            }
            Err(_) => prop_assert!(validate::decode(&data).is_err()),
        }
    }

    #[test]
    fn envelopes_round_trip(p in any_payload()) {
        let bytes = encode_envelope(&p);
        let back = decode_envelope(&bytes).unwrap();
        prop_assert_eq!(back.version, 1);
        prop_assert_eq!(back.payload.as_ref(), Some(&p));
        prop_assert_eq!(WebsocketPayload::decode(&bytes[..]).unwrap(), back);
    }

    #[test]
    fn kong_safe_constructors_classify_as_what_they_build(
        svc in 1u32.., rpc in 1u32.., seq in 1u32.., other in 1u32..,
        body in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let kind = |p: PayloadV1| validate::decode(&encode_envelope(&p)).map(|(_, k)| k);
        prop_assert_eq!(kind(PayloadV1::request(svc, rpc, seq, other, body.clone())), Ok(Kind::Request));
        prop_assert_eq!(kind(PayloadV1::response(svc, rpc, seq, other, body.clone())), Ok(Kind::Response));
        prop_assert_eq!(kind(PayloadV1::error(svc, rpc, seq, other, ErrorType::Generic, "x")), Ok(Kind::Error));
        prop_assert_eq!(kind(PayloadV1::stream_begin(svc, rpc, seq)), Ok(Kind::StreamBegin));
        prop_assert_eq!(kind(PayloadV1::stream_message(svc, rpc, seq, other, body)), Ok(Kind::StreamMessage));
        prop_assert_eq!(kind(PayloadV1::stream_end(svc, rpc, seq, other)), Ok(Kind::StreamEnd));
    }

    // -- negotiation and config messages ----------------------------------------------

    #[test]
    fn service_messages_take_any_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(req) = NegotiateServicesRequest::decode(&data[..]) {
            let _ = NegotiationPolicy::default().negotiate(&req);
        }
        if let Ok(resp) = NegotiateServicesResponse::decode(&data[..]) {
            let _ = check_response(&resp);
        }
        let _ = ReportMetadataRequest::decode(&data[..]);
        let _ = ReportMetadataResponse::decode(&data[..]);
        let _ = PingCPRequest::decode(&data[..]);
        let _ = SyncConfigResponse::decode(&data[..]);
        if let Ok(sync) = SyncConfigRequest::decode(&data[..]) {
            let _ = decode(&sync.config, 64 * 1024);
        }
    }

    #[test]
    fn negotiation_answers_what_the_dp_check_expects(
        version in "3\\.[0-9]\\.[0-9]",
        services in prop::collection::vec(
            (prop::sample::select(vec!["config", "CONFIG", "other"]),
             prop::collection::vec(prop::sample::select(vec!["v1", "V1", "v2"]), 1..3)),
            1..4),
    ) {
        let mut req = dp_request(&version, "dp-host");
        req.services_requested = services.iter()
            .map(|(n, v)| ServiceRequest { name: n.to_string(), versions: v.iter().map(|s| s.to_string()).collect() })
            .collect();
        let wire = NegotiateServicesRequest::decode(&req.encode_to_vec()[..]).unwrap();
        prop_assert_eq!(&wire, &req);
        let policy = NegotiationPolicy { cp_node_id: "cp".into(), ..NegotiationPolicy::default() };
        let resp = match policy.negotiate(&wire) {
            Ok(resp) => resp,
            Err(failure) => failure.to_response(),
        };
        let resp = NegotiateServicesResponse::decode(&resp.encode_to_vec()[..]).unwrap();
        // The DP accepts when any config entry offered v1 (the CP accepts that entry).
        let gate_ok = version.starts_with("3.0.") || version.starts_with("3.1.");
        let expect_ok = gate_ok && services.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("config") && v.iter().any(|s| s.eq_ignore_ascii_case("v1"))
        });
        prop_assert_eq!(check_response(&resp).is_ok(), expect_ok, "{:?}", resp);
    }

    #[test]
    fn config_messages_round_trip(
        config in prop::collection::vec(any::<u8>(), 0..100),
        version in any::<u64>(),
        hash in hex32(),
        parts in prop::option::of((hex32(), hex32(), hex32())),
        plugins in plugins(),
    ) {
        let sync = SyncConfigRequest {
            config: config.into(),
            version,
            config_hash: hash.clone(),
            hashes: parts.map(|(routes, services, plugins)| GranularHashes {
                config: hash.clone(), routes, services, plugins, ..GranularHashes::default()
            }),
        };
        prop_assert_eq!(SyncConfigRequest::decode(&sync.encode_to_vec()[..]).unwrap(), sync);
        let ping = PingCPRequest { hash };
        prop_assert_eq!(PingCPRequest::decode(&ping.encode_to_vec()[..]).unwrap(), ping);
        let report = ReportMetadataRequest { plugins };
        prop_assert_eq!(ReportMetadataRequest::decode(&report.encode_to_vec()[..]).unwrap(), report);
    }

    // -- config intake and Kong's hash ------------------------------------------------

    #[test]
    fn inflate_never_returns_more_than_the_cap(
        data in prop::collection::vec(any::<u8>(), 0..300),
        json in prop::collection::vec(any::<u8>(), 0..2000),
        cap in 0usize..3000,
    ) {
        if let Ok(out) = inflate(&data, cap) {
            prop_assert!(out.len() <= cap);
        }
        for packed in [gzip(&json), zlib(&json)] {
            match inflate(&packed, cap) {
                Ok(out) => {
                    prop_assert!(json.len() <= cap);
                    prop_assert_eq!(out, json.clone());
                }
                Err(e) => {
                    prop_assert!(json.len() > cap, "{e}");
                    prop_assert!(matches!(e, ConfigError::TooLarge { limit } if limit == cap), "{e:?}");
                }
            }
        }
    }

    #[test]
    fn kong_hash_does_not_depend_on_key_order(entries in any_config(), seed in any::<u64>()) {
        let mut shuffled = entries.clone();
        // A deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let a = parse_object(&object_text(&entries)).unwrap();
        let b = parse_object(&object_text(&shuffled)).unwrap();
        let mut reversed = entries.clone();
        reversed.reverse();
        let c = parse_object(&object_text(&reversed)).unwrap();
        let h = config_hashes(&a);
        prop_assert_eq!(&config_hashes(&b), &h);
        prop_assert_eq!(&config_hashes(&c), &h);
        // And the wire form gives the same object and hash.
        let back = decode(&gzip(&object_text(&shuffled)), 1 << 20).unwrap();
        prop_assert_eq!(config_hashes(&back), h);
    }

    #[test]
    fn json_parser_takes_any_bytes(data in prop::collection::vec(any::<u8>(), 0..200)) {
        match parse_object(&data) {
            Ok(map) => { let _ = config_hashes(&map); }
            Err(e) => prop_assert!(matches!(e, ConfigError::Json(_) | ConfigError::NotAnObject(_)), "{e:?}"),
        }
    }
}

#[test]
fn nested_json_is_refused_not_a_stack_overflow() {
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        parse_object(deep.as_bytes()),
        Err(ConfigError::Json(_))
    ));
    let gz = gzip(deep.as_bytes());
    assert!(matches!(decode(&gz, 1 << 20), Err(ConfigError::Json(_))));
}

/// Writes the fuzz targets' seed corpora under `fuzz/seeds/` from real messages built by
/// this crate. Run it after a wire format changes:
/// `cargo test --test properties -- --ignored write_fuzz_seeds`.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    use dpspec::services::config::SERVICE_ID as CONFIG_SVC;
    use dpspec::services::negotiation::{
        NegotiationPolicy, RPC_NEGOTIATE_SERVICES, SERVICE_ID as NEGOTIATION_SVC,
    };
    use dpspec::upgrade::{accept_response, rejection_response, Rejection};

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    let with_ctl = |ctl: u8, bytes: &[u8]| {
        let mut v = vec![ctl];
        v.extend_from_slice(bytes);
        v
    };

    // HTTP: Kong 3.1's upgrade request, the CP's 101 and a refusal, proxy answers.
    let node = NodeIdentity::new(
        "d1a2b3c4-0000-4000-8000-000000000001",
        "dp-1.example",
        "3.1.1",
    );
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let upgrade = build_request(
        "cp.example:8005",
        &dpspec::upgrade::UpgradeTarget::wrpc(),
        &node,
        key,
    );
    write(
        "http_request_head",
        "kong_upgrade",
        &with_ctl(0x7f, &upgrade),
    );
    write(
        "http_request_head",
        "kong_upgrade_bytewise",
        &with_ctl(0, &upgrade),
    );
    write(
        "http_request_head",
        "head_probe_tight",
        &with_ctl(
            0x83,
            b"HEAD /v1/wrpc?node_id=x&node_version=3.0.0 HTTP/1.1\r\nHost: cp\r\n\r\n",
        ),
    );
    let (head, _) = read_request_head(&mut Cursor::new(&upgrade), &HttpLimits::default()).unwrap();
    let req = check_request(&head).unwrap();
    let accept = accept_response(&req, "cp-node-1");
    let mut accept_and_frame = accept.clone();
    accept_and_frame.extend_from_slice(&[0x82, 0x02, 0x08, 0x01]);
    write("http_response_head", "kong_101", &with_ctl(0x7f, &accept));
    write(
        "http_response_head",
        "kong_101_then_frame",
        &with_ctl(3, &accept_and_frame),
    );
    let refusal = rejection_response(
        &Rejection::new(426, "upgrade required").with_header("Sec-WebSocket-Version", "13"),
        "cp-node-1",
        true,
    );
    write(
        "http_response_head",
        "refusal_426",
        &with_ctl(0x10, &refusal),
    );
    write(
        "http_response_head",
        "proxy_200",
        &with_ctl(0x7f, b"HTTP/1.1 200 Connection established\r\n\r\n"),
    );
    write(
        "http_response_head",
        "proxy_407",
        &with_ctl(
            1,
            b"HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n",
        ),
    );

    // wRPC envelopes: one of each kind.
    let negotiate = dp_request("3.1.1", "dp-1.example");
    let policy = NegotiationPolicy {
        cp_node_id: "cp-node-1".into(),
        ..NegotiationPolicy::default()
    };
    let answer = policy.negotiate(&negotiate).unwrap();
    let envelopes = [
        (
            "negotiate_request",
            PayloadV1::request(
                NEGOTIATION_SVC,
                RPC_NEGOTIATE_SERVICES,
                1,
                1_900_000_000,
                negotiate.encode_to_vec(),
            ),
        ),
        (
            "negotiate_response",
            PayloadV1::response(
                NEGOTIATION_SVC,
                RPC_NEGOTIATE_SERVICES,
                1,
                1,
                answer.encode_to_vec(),
            ),
        ),
        (
            "error",
            PayloadV1::error(3, 1, 2, 7, ErrorType::InvalidService, "unknown service 3"),
        ),
        ("stream_begin", PayloadV1::stream_begin(CONFIG_SVC, 2, 5)),
        (
            "stream_message",
            PayloadV1::stream_message(CONFIG_SVC, 2, 6, 5, b"\x0a\x01x".to_vec()),
        ),
        ("stream_end", PayloadV1::stream_end(CONFIG_SVC, 2, 7, 5)),
    ];
    for (name, p) in envelopes {
        write("wrpc_envelope", name, &encode_envelope(&p));
    }

    // Negotiation messages.
    write("negotiation", "dp_request", &negotiate.encode_to_vec());
    write("negotiation", "cp_accepts", &answer.encode_to_vec());
    let mut old = dp_request("2.8.0", "old-dp");
    old.services_requested[0].versions = vec!["v2".into(), "v1".into()];
    write("negotiation", "dp_request_old", &old.encode_to_vec());
    let refused = policy.negotiate(&old).unwrap_err().to_response();
    write("negotiation", "cp_refuses", &refused.encode_to_vec());

    // Config messages and intake: a small Kong declarative config.
    let kong = serde_json::json!({
        "_format_version": "3.0",
        "_transform": false,
        "services": [{"id": "0855b320-0dd2-547d-891d-601e9b38647f", "name": "svc",
                      "host": "upstream.example", "port": 80, "protocol": "http",
                      "connect_timeout": 60000, "retries": 5, "enabled": true}],
        "routes": [{"id": "481a9539-f49c-51b6-b2e2-fe99ee68866c", "name": "r",
                    "paths": ["/"], "service": {"id": "0855b320-0dd2-547d-891d-601e9b38647f"},
                    "strip_path": true, "regex_priority": 0, "tags": null}],
        "plugins": [{"name": "rate-limiting", "config": {"minute": 5, "policy": "local",
                     "fault_tolerant": true, "limit_by": "consumer"}}],
        "upstreams": [],
        "targets": []
    });
    let json = serde_json::to_vec(&kong).unwrap();
    let map: Map<String, Value> = serde_json::from_slice(&json).unwrap();
    let hashes = config_hashes(&map);
    let sync = SyncConfigRequest {
        config: gzip(&json).into(),
        version: 3,
        config_hash: hashes.config.clone(),
        hashes: Some(hashes.to_granular()),
    };
    write("config_messages", "sync_config", &sync.encode_to_vec());
    write(
        "config_messages",
        "sync_config_zlib_no_hashes",
        &SyncConfigRequest {
            config: zlib(&json).into(),
            version: 1,
            ..SyncConfigRequest::default()
        }
        .encode_to_vec(),
    );
    let report = ReportMetadataRequest {
        plugins: vec![
            PluginVersion {
                name: "key-auth".into(),
                version: "3.1.1".into(),
            },
            PluginVersion {
                name: "rate-limiting".into(),
                version: "2.4.0".into(),
            },
        ],
    };
    write(
        "config_messages",
        "report_metadata",
        &report.encode_to_vec(),
    );
    write(
        "config_messages",
        "ping_cp",
        &PingCPRequest {
            hash: hashes.config.clone(),
        }
        .encode_to_vec(),
    );
    write(
        "config_messages",
        "sync_config_rejected",
        &SyncConfigResponse {
            accepted: false,
            errors: vec![dpspec::dp::config_error(
                "plugins",
                "unknown plugin",
                dpspec::dp::ConfigErrorType::Validation,
            )],
        }
        .encode_to_vec(),
    );
    write("config_intake", "kong_gzip", &gzip(&json));
    write("config_intake", "kong_zlib", &zlib(&json));
    write("config_intake", "kong_json", &json);
    write("config_intake", "empty_object_gzip", &gzip(b"{}"));
}
