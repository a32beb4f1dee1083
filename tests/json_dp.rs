//! The data plane on Kong's JSON protocol (`/v1/outlet`) against a scripted JSON CP over
//! real TLS (Kong's shared mode) on loopback; and the `auto` probe against both kinds of
//! CP. Fixtures follow `kong-json-protocols.md` section 1.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use dpspec::channel::Ended;
use dpspec::config::{config_hashes, gzip, EMPTY_HASH};
use dpspec::dp::{
    config_error, ConfigErrorType, ConfigUpdate, DataPlane, DataPlaneBuilder, DpEvent,
    ProtocolChoice, Reconnect,
};
use dpspec::Protocol;
use serde_json::{json, Map, Value};
use support::json_cp::{raw_frame, FromDp, JsonConn, JsonCp, Script, PATIENCE};

const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const HASH_C: &str = "cccccccccccccccccccccccccccccccc";

/// What the handler saw: (version, hash, granular routes hash, config).
type Seen = Arc<Mutex<Vec<(Option<u64>, String, String, Map<String, Value>)>>>;

fn dp_for(cp: &JsonCp, seen: &Seen) -> DataPlaneBuilder {
    support::logs::capture();
    let (trust, identity) = cp.dp_trust();
    let seen = seen.clone();
    DataPlane::builder(cp.addr.to_string())
        .trust(trust)
        .identity(identity)
        .hostname("dp-test")
        .protocol(ProtocolChoice::Json)
        .plugins([("rate-limiting", "3.4.0"), ("ACL", "3.4.0"), ("cors", "")])
        .reconnect(Reconnect::Fixed(Duration::from_millis(20)))
        .ping_interval(Duration::from_secs(3600))
        .max_inflated_size(1 << 20)
        .config_handler(move |u: &ConfigUpdate<'_>| {
            seen.lock().unwrap().push((
                u.version,
                u.hash.to_string(),
                u.hashes.routes.clone(),
                u.config.clone(),
            ));
            if u.config.contains_key("reject_me") {
                return Err(vec![config_error(
                    "svc-1",
                    "services",
                    ConfigErrorType::Validation,
                )]);
            }
            Ok(())
        })
}

fn wait_for(dp: &DataPlane, what: &str, mut pred: impl FnMut(&DpEvent) -> bool) -> DpEvent {
    loop {
        let e = dp
            .events()
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("waiting for {what}"));
        if pred(&e) {
            return e;
        }
    }
}

fn applied(dp: &DataPlane, hash: &str) {
    wait_for(
        dp,
        &format!("config {hash} applied"),
        |e| matches!(e, DpEvent::ConfigApplied { hash: h, from_cache: false, .. } if h == hash),
    );
}

fn rejected(dp: &DataPlane) -> DpEvent {
    wait_for(dp, "a rejected config", |e| {
        matches!(e, DpEvent::ConfigRejected { .. })
    })
}

/// A 3.x reconfigure: gzip of the whole message with config_hash and hashes.
fn reconfigure(config: Value, hash: &str) -> Vec<u8> {
    let msg = json!({
        "type": "reconfigure",
        "timestamp": 1718000000.123,
        "config_table": config,
        "config_hash": hash,
        "hashes": {"config": hash, "routes": HASH_C, "services": EMPTY_HASH,
                   "plugins": EMPTY_HASH, "upstreams": EMPTY_HASH, "targets": EMPTY_HASH},
    });
    gzip(&serde_json::to_vec(&msg).unwrap())
}

fn services(n: usize) -> Value {
    let list: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("0000000{i}-0000-4000-8000-000000000000"), "name": format!("s{i}"), "host": "example.com"}))
        .collect();
    json!({"_format_version": "3.0", "_transform": false, "services": list})
}

/// Reads basic_info and the first ping, as every connection starts.
fn opening(conn: &JsonConn) -> (Value, String) {
    let FromDp::Binary(first) = conn.next() else {
        panic!("the first frame must be binary basic_info")
    };
    let info: Value = serde_json::from_slice(&first).expect("uncompressed JSON");
    (info, conn.next_ping())
}

fn start(cp: &JsonCp, seen: &Seen) -> (DataPlane, JsonConn) {
    let dp = dp_for(cp, seen).start().unwrap();
    let conn = cp.next_conn();
    opening(&conn);
    (dp, conn)
}

#[test]
fn upgrade_request_is_kongs_outlet_request_without_subprotocol() {
    let cp = JsonCp::start(Script::default());
    let dp = dp_for(&cp, &Seen::default()).start().unwrap();
    let conn = cp.next_conn();
    let req = &conn.request;
    let first = format!(
        "GET /v1/outlet?node_id={}&node_hostname=dp-test&node_version=3.1.1 HTTP/1.1\r\n",
        dp.node_id()
    );
    assert!(req.starts_with(&first), "{req}");
    let lower = req.to_ascii_lowercase();
    assert!(!lower.contains("sec-websocket-protocol"), "{req}");
    for header in [
        format!("kong-node-id: {}\r\n", dp.node_id()),
        "kong-version: 3.1.1\r\n".into(),
        "kong-hostname: dp-test\r\n".into(),
        "upgrade: websocket\r\n".into(),
        "sec-websocket-version: 13\r\n".into(),
    ] {
        assert!(
            lower.contains(&header.to_ascii_lowercase()),
            "{header:?} in {req}"
        );
    }
    // Json chosen outright: no probe.
    assert!(cp.probes.try_recv().is_err());
    let ev = wait_for(&dp, "connected", |e| matches!(e, DpEvent::Connected { .. }));
    assert!(matches!(
        ev,
        DpEvent::Connected {
            protocol: Protocol::Json,
            ..
        }
    ));
    assert_eq!(dp.status().protocol, Some(Protocol::Json));
}

#[test]
fn basic_info_first_then_a_ping_of_32_zeros_at_once() {
    let cp = JsonCp::start(Script::default());
    let _dp = dp_for(&cp, &Seen::default()).start().unwrap();
    let conn = cp.next_conn();
    let (info, ping) = opening(&conn);
    // Sorted by lowercased name, version left out when empty, no labels when none set.
    assert_eq!(
        info,
        json!({"type": "basic_info", "plugins": [
            {"name": "ACL", "version": "3.4.0"},
            {"name": "cors"},
            {"name": "rate-limiting", "version": "3.4.0"},
        ]})
    );
    assert_eq!(ping, EMPTY_HASH);
}

#[test]
fn labels_go_in_basic_info_when_set() {
    let cp = JsonCp::start(Script::default());
    let _dp = dp_for(&cp, &Seen::default())
        .labels([("deployment", "eu-1"), ("tier", "edge")])
        .start()
        .unwrap();
    let (info, _) = opening(&cp.next_conn());
    assert_eq!(
        info["labels"],
        json!({"deployment": "eu-1", "tier": "edge"})
    );
}

#[test]
fn applied_config_is_pinged_at_once_and_status_has_no_version() {
    let cp = JsonCp::start(Script::default());
    let seen = Seen::default();
    let (dp, conn) = start(&cp, &seen);
    conn.send(&reconfigure(services(2), HASH_A));
    applied(&dp, HASH_A);
    assert_eq!(conn.next_ping(), HASH_A);
    let s = seen.lock().unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(
        (s[0].0, s[0].1.as_str(), s[0].2.as_str()),
        (None, HASH_A, HASH_C)
    );
    assert_eq!(s[0].3["services"].as_array().unwrap().len(), 2);
    let st = dp.status();
    assert_eq!(st.applied_hash.as_deref(), Some(HASH_A));
    assert_eq!(st.applied_version, None);
    assert!(st.connected);
}

#[test]
fn pings_go_out_every_interval() {
    let cp = JsonCp::start(Script::default());
    let _dp = dp_for(&cp, &Seen::default())
        .ping_interval(Duration::from_millis(30))
        .start()
        .unwrap();
    let conn = cp.next_conn();
    opening(&conn);
    for _ in 0..3 {
        assert_eq!(conn.next_ping(), EMPTY_HASH);
    }
}

#[test]
fn kong_2_8_reconfigure_without_hashes_keeps_the_cps_hash() {
    let cp = JsonCp::start(Script::default());
    let seen = Seen::default();
    let (dp, conn) = start(&cp, &seen);
    let msg = json!({"type": "reconfigure", "timestamp": 1718000000.5,
        "config_table": {"_format_version": "2.1", "_transform": false,
                         "services": [{"id": "s1", "host": "example.com"}]},
        "config_hash": HASH_B});
    conn.send(&gzip(&serde_json::to_vec(&msg).unwrap()));
    applied(&dp, HASH_B);
    let s = seen.lock().unwrap();
    assert_eq!((s[0].1.as_str(), s[0].2.as_str()), (HASH_B, EMPTY_HASH));
}

#[test]
fn kong_2_4_reconfigure_without_config_hash_gets_kongs_hash() {
    let cp = JsonCp::start(Script::default());
    let seen = Seen::default();
    let (dp, conn) = start(&cp, &seen);
    let config = services(1);
    let msg = json!({"type": "reconfigure", "config_table": config});
    conn.send(&gzip(&serde_json::to_vec(&msg).unwrap()));
    let expected = config_hashes(config.as_object().unwrap());
    applied(&dp, &expected.config);
    assert_eq!(conn.next_ping(), expected.config);
    assert_eq!(seen.lock().unwrap()[0].2, expected.routes);
}

#[test]
fn zlib_instead_of_gzip_is_inflated_too() {
    let cp = JsonCp::start(Script::default());
    let seen = Seen::default();
    let (dp, conn) = start(&cp, &seen);
    let msg = json!({"type": "reconfigure", "config_table": services(1), "config_hash": HASH_A});
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&serde_json::to_vec(&msg).unwrap()).unwrap();
    conn.send(&z.finish().unwrap());
    applied(&dp, HASH_A);
}

#[test]
fn same_hash_is_not_applied_twice_and_other_types_are_ignored() {
    let cp = JsonCp::start(Script::default());
    let seen = Seen::default();
    let (dp, conn) = start(&cp, &seen);
    conn.send(&reconfigure(services(1), HASH_A));
    applied(&dp, HASH_A);
    conn.send(&reconfigure(services(3), HASH_A));
    conn.send(&gzip(br#"{"type":"something_new","config_table":{}}"#));
    conn.send(&reconfigure(services(2), HASH_B));
    applied(&dp, HASH_B);
    let hashes: Vec<String> = seen.lock().unwrap().iter().map(|s| s.1.clone()).collect();
    assert_eq!(hashes, [HASH_A, HASH_B]);
}

#[test]
fn configs_arriving_during_a_slow_apply_coalesce_to_the_newest() {
    let cp = JsonCp::start(Script::default());
    let seen = Seen::default();
    let (release_tx, release): (Sender<()>, Receiver<()>) = crossbeam_channel::unbounded();
    let (started_tx, started) = crossbeam_channel::unbounded::<String>();
    let dp = dp_for(&cp, &seen)
        .config_handler(move |u: &ConfigUpdate<'_>| {
            let _ = started_tx.send(u.hash.to_string());
            release.recv_timeout(PATIENCE).expect("released");
            Ok(())
        })
        .start()
        .unwrap();
    let conn = cp.next_conn();
    opening(&conn);
    conn.send(&reconfigure(services(1), HASH_A));
    assert_eq!(started.recv_timeout(PATIENCE).unwrap(), HASH_A);
    conn.send(&reconfigure(services(2), HASH_B));
    conn.send(&reconfigure(services(3), HASH_C));
    // The DP's reader has read both once it answers a ping sent after them.
    conn.sync();
    release_tx.send(()).unwrap();
    release_tx.send(()).unwrap();
    applied(&dp, HASH_A);
    applied(&dp, HASH_C);
    assert_eq!(started.recv_timeout(PATIENCE).unwrap(), HASH_C);
    assert!(started.try_recv().is_err(), "B must have been skipped");
    assert_eq!(dp.status().applied_hash.as_deref(), Some(HASH_C));
}

#[test]
fn hostile_frames_keep_the_applied_config_and_the_connection() {
    // Text and garbage before anything else, straight after the 101.
    let mut after = raw_frame(0x1, b"hello from a CP that speaks text");
    after.extend(raw_frame(0x2, b"\x00\x01 not gzip, not zlib"));
    let cp = JsonCp::start(Script {
        after_101: after,
        ..Script::default()
    });
    let seen = Seen::default();
    let (dp, conn) = start(&cp, &seen);
    rejected(&dp); // the garbage
    conn.send(&reconfigure(services(1), HASH_A));
    applied(&dp, HASH_A);
    assert_eq!(conn.next_ping(), HASH_A);

    let bomb = gzip(&vec![b' '; 4 << 20]); // 4 MiB of spaces, over the 1 MiB cap
    let bad_json = gzip(b"{\"type\":\"reconfigure\",\"config_table\":");
    let no_table =
        gzip(br#"{"type":"reconfigure","config_hash":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}"#);
    let refused = reconfigure(json!({"reject_me": true}), HASH_B);
    for (what, frame) in [
        ("gzip bomb", bomb),
        ("invalid JSON", bad_json),
        ("no config_table", no_table),
        ("handler rejection", refused),
    ] {
        conn.send(&frame);
        let ev = rejected(&dp);
        let DpEvent::ConfigRejected { version, errors } = ev else {
            unreachable!()
        };
        assert_eq!(version, None, "{what}");
        assert!(!errors.is_empty(), "{what}");
        assert_eq!(dp.status().applied_hash.as_deref(), Some(HASH_A), "{what}");
        assert!(dp.status().connected, "{what}");
    }
    // Still the same connection, still able to apply, nothing sent but pings.
    conn.send(&reconfigure(services(2), HASH_C));
    applied(&dp, HASH_C);
    assert_eq!(conn.next_ping(), HASH_C);
    assert!(cp.conns.try_recv().is_err(), "no reconnect");
    assert!(conn.from_dp.try_recv().is_err());
    assert_eq!(support::logs::lines_with("ignoring a text frame").len(), 1);
}

#[test]
fn a_frame_above_the_limit_closes_1009_and_the_dp_reconnects() {
    let cp = JsonCp::start(Script::default());
    let seen = Seen::default();
    let dp = dp_for(&cp, &seen)
        .json_max_message_size(64 * 1024)
        .start()
        .unwrap();
    let conn = cp.next_conn();
    opening(&conn);
    conn.send(&vec![7u8; 100 * 1024]);
    match conn.ended() {
        Ended::ClosedByPeer { code, .. } => assert_eq!(code, Some(1009)),
        other => panic!("{other:?}"),
    }
    wait_for(&dp, "disconnected", |e| {
        matches!(e, DpEvent::Disconnected { .. })
    });
    let again = cp.next_conn();
    opening(&again);
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn a_silent_cp_is_dropped_after_the_liveness_timeout() {
    let cp = JsonCp::start(Script::default());
    let dp = dp_for(&cp, &Seen::default())
        .liveness_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    let conn = cp.next_conn();
    opening(&conn);
    // The CP answers the first ping (a pong is liveness) and then says nothing.
    let ev = wait_for(&dp, "disconnected", |e| {
        matches!(e, DpEvent::Disconnected { .. })
    });
    let DpEvent::Disconnected { reason } = ev else {
        unreachable!()
    };
    assert!(reason.contains("no frame from the CP"), "{reason}");
    let again = cp.next_conn();
    opening(&again);
}

#[test]
fn auto_probes_head_v1_wrpc_and_lands_on_json_on_404() {
    let cp = JsonCp::start(Script::default());
    let dp = dp_for(&cp, &Seen::default())
        .protocol(ProtocolChoice::Auto)
        .start()
        .unwrap();
    let probe = cp.probes.recv_timeout(PATIENCE).unwrap();
    assert!(probe.starts_with("HEAD /v1/wrpc HTTP/1.1\r\n"), "{probe}");
    assert!(probe.contains(&format!("kong-node-id: {}\r\n", dp.node_id())));
    assert!(probe.contains("kong-version: 3.1.1\r\n"));
    assert!(probe.contains("kong-hostname: dp-test\r\n"));
    let conn = cp.next_conn();
    opening(&conn);
    wait_for(&dp, "connected on JSON", |e| {
        matches!(
            e,
            DpEvent::Connected {
                protocol: Protocol::Json,
                ..
            }
        )
    });
    // Probed again on every reconnect.
    conn.channel.close(1000, "bye");
    cp.probes.recv_timeout(PATIENCE).unwrap();
    opening(&cp.next_conn());
}

#[test]
fn auto_lands_on_wrpc_when_the_probe_is_not_404() {
    // Our own wRPC CP answers HEAD /v1/wrpc with 400 (no upgrade), as Kong 3.0/3.1 do.
    let cp = support::script_cp::ScriptCp::start(support::script_cp::Negotiation::Accept);
    let (trust, identity) = cp.dp_trust();
    let dp = DataPlane::builder(cp.addr.to_string())
        .trust(trust)
        .identity(identity)
        .reconnect(Reconnect::Fixed(Duration::from_millis(20)))
        .ping_interval(Duration::from_secs(3600))
        .config_handler(|_: &ConfigUpdate<'_>| Ok(()))
        .start()
        .unwrap();
    let _conn = cp.next_conn();
    wait_for(&dp, "connected on wRPC", |e| {
        matches!(
            e,
            DpEvent::Connected {
                protocol: Protocol::Wrpc,
                ..
            }
        )
    });
    assert_eq!(dp.status().protocol, Some(Protocol::Wrpc));
}

#[test]
fn auto_retries_a_probe_that_fails_by_the_reconnect_policy() {
    // A CP that answers the probe with a 444-style close: no HTTP answer at all.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, accepted) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for s in listener.incoming().take(2) {
            let _ = tx.send(());
            drop(s);
        }
    });
    let cert = support::certs::kong_shared();
    let dp = DataPlane::builder(addr.to_string())
        .trust(dpspec::tls::TrustMode::pinned_pem(cert.cert.as_bytes()).unwrap())
        .reconnect(Reconnect::Fixed(Duration::from_millis(20)))
        .config_handler(|_: &ConfigUpdate<'_>| Ok(()))
        .start()
        .unwrap();
    let ev = wait_for(&dp, "a failed probe", |e| {
        matches!(e, DpEvent::Disconnected { .. })
    });
    let DpEvent::Disconnected { reason } = ev else {
        unreachable!()
    };
    assert!(reason.contains("HEAD /v1/wrpc"), "{reason}");
    accepted.recv_timeout(PATIENCE).unwrap();
    accepted.recv_timeout(PATIENCE).unwrap();
}
