//! The control plane's `/v1/outlet` (Kong's JSON protocol) end to end: real TLS (Kong's
//! shared mode) on 127.0.0.1, scripted raw JSON data planes from
//! `tests/support/json_dp.rs`, beside wRPC data planes on the same listener.

mod support;

use std::time::Duration;

use dpspec::config::EMPTY_HASH;
use dpspec::cp::{ControlPlaneBuilder, CpEvent, NodeInfo, PushOutcome};
use dpspec::services::config::PluginVersion;
use dpspec::services::gate::SyncStatus;
use dpspec::{ControlPlane, Protocol};
use serde_json::{json, Value};
use support::attackers::EventLog;
use support::configs::{big_config, hash_of};
use support::cp_dp::{pool, Dp, Shared, PATIENCE};
use support::json_dp::{ask, upgrade_request, JsonDp, BINARY, PING, TEXT};

fn builder(certs: &Shared) -> ControlPlaneBuilder {
    support::init_logs();
    ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(certs.identity())
        .node_id("cp-json")
}

fn config(n: u64) -> Value {
    json!({"_format_version": "3.0", "_transform": false,
           "services": [{"id": format!("00000000-0000-4000-8000-{n:012}"), "name": format!("s{n}"),
                         "host": "example.com", "port": 80, "protocol": "http"}]})
}

fn node(cp: &ControlPlane, node_id: &str) -> NodeInfo {
    cp.nodes()
        .into_iter()
        .find(|n| n.node_id == node_id)
        .unwrap_or_else(|| panic!("{node_id} is not connected"))
}

/// Checks one `reconfigure` against the config the CP was given.
fn assert_reconfigure(msg: &Value, config: &Value) {
    assert_eq!(msg["type"], "reconfigure");
    assert_eq!(&msg["config_table"], config);
    assert_eq!(msg["config_hash"], hash_of(config).as_str());
    assert!(
        msg["timestamp"].as_f64().unwrap() > 1.6e9,
        "{}",
        msg["timestamp"]
    );
    let hashes = msg["hashes"].as_object().unwrap();
    for k in [
        "config",
        "routes",
        "services",
        "plugins",
        "upstreams",
        "targets",
    ] {
        assert_eq!(hashes[k].as_str().unwrap().len(), 32, "hashes.{k}");
    }
    assert_eq!(hashes["config"], msg["config_hash"]);
}

#[test]
fn a_json_dp_gets_the_config_at_once_after_basic_info_and_every_new_one() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let first = config(1);
    cp.set_config(first.clone()).unwrap();
    let mut dp = JsonDp::connect(cp.local_addr(), &certs.client(), "dp-j1", "3.9.3");
    // Kong's 101 for /v1/outlet names no subprotocol; ours carries kong-node-id.
    assert_eq!(dp.head.header_str("sec-websocket-protocol"), None);
    assert_eq!(dp.head.header_str("kong-node-id"), Some("cp-json"));
    dp.basic_info(&[("acl", "3.9.3")]);
    let (msg, _) = dp.next_reconfigure();
    assert_reconfigure(&msg, &first);

    let second = config(2);
    cp.set_config(second.clone()).unwrap();
    let (msg, _) = dp.next_reconfigure();
    assert_reconfigure(&msg, &second);
    let info = node(&cp, "dp-j1");
    assert_eq!(info.protocol, Protocol::Json);
    assert!(info.metadata_reported);
    assert_eq!(info.plugins[0].name, "acl");
    // Queued, no answer in this protocol (the send may still be returning).
    let outcome = info.last_push.unwrap().outcome;
    assert!(
        matches!(outcome, PushOutcome::Sent | PushOutcome::InFlight),
        "{outcome:?}"
    );
}

#[test]
fn pings_get_empty_pongs_and_are_recorded_and_a_matching_hash_accepts_the_push() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let events = EventLog::drain(cp.events());
    let mut dp = JsonDp::ready(cp.local_addr(), &certs.client(), "dp-j2", "3.5.0", &[]);
    // An empty ping (Kong 3.5 before any config) counts as 32 zeros.
    assert!(dp.ping_pong(b"").is_empty());
    let info = node(&cp, "dp-j2");
    assert_eq!(info.reported_hash.as_deref(), Some(EMPTY_HASH));
    assert!(info.last_seen.is_some());

    let cfg = config(3);
    let version = cp.set_config(cfg.clone()).unwrap();
    let (msg, _) = dp.next_reconfigure();
    let hash = msg["config_hash"].as_str().unwrap().to_string();
    assert!(dp.ping_pong(hash.as_bytes()).is_empty());
    let info = node(&cp, "dp-j2");
    assert_eq!(info.reported_hash.as_deref(), Some(hash.as_str()));
    let push = info.last_push.unwrap();
    assert_eq!(
        (push.version, push.outcome),
        (version, PushOutcome::Accepted)
    );
    events.wait_node(PATIENCE, "dp-j2", "the ack", |e| match e {
        CpEvent::ConfigAcked { version: v, .. } => (*v == version).then_some(()),
        _ => None,
    });
    let connected = events.wait_node(PATIENCE, "dp-j2", "the connection", |e| match e {
        CpEvent::DpConnected { protocol, .. } => Some(*protocol),
        _ => None,
    });
    assert_eq!(connected, Protocol::Json);
}

#[test]
fn the_version_gate_closes_newer_dps_with_kong_version_incompatible() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let events = EventLog::drain(cp.events());
    for (node_id, version) in [("dp-310", "3.10.0"), ("dp-400", "4.0.0")] {
        let mut dp = JsonDp::ready(cp.local_addr(), &certs.client(), node_id, version, &[]);
        assert_eq!(dp.wait_close(), Some(1008), "{node_id}");
        let status = events.wait_node(PATIENCE, node_id, "the gate", |e| match e {
            CpEvent::Incompatible { status, .. } => Some(*status),
            _ => None,
        });
        assert_eq!(status, SyncStatus::KongVersionIncompatible);
        assert_eq!(status.as_str(), "kong_version_incompatible");
        events.wait_disconnect(PATIENCE, node_id);
    }
    // Every 3.x up to the default 3.9.3 passes, 3.0 (which also speaks wRPC) included.
    let mut old = JsonDp::ready(cp.local_addr(), &certs.client(), "dp-300", "3.0.0", &[]);
    assert!(old.ping_pong(EMPTY_HASH.as_bytes()).is_empty());
}

#[test]
fn the_plugin_gate_skips_the_push_and_keeps_the_dp_connected() {
    let certs = Shared::new();
    let cp = builder(&certs)
        .plugins(vec![PluginVersion {
            name: "acl".into(),
            version: "3.9.3".into(),
        }])
        .start()
        .unwrap();
    let events = EventLog::drain(cp.events());
    cp.set_config(config(4)).unwrap();
    let mut dp = JsonDp::ready(cp.local_addr(), &certs.client(), "dp-nop", "3.9.3", &[]);
    let status = events.wait_node(PATIENCE, "dp-nop", "the skip", |e| match e {
        CpEvent::ConfigSkipped { status, .. } => Some(*status),
        _ => None,
    });
    assert_eq!(status, SyncStatus::PluginSetIncompatible);
    assert!(
        dp.ping_pong(EMPTY_HASH.as_bytes()).is_empty(),
        "still connected"
    );
    assert_eq!(
        node(&cp, "dp-nop").sync_status,
        SyncStatus::PluginSetIncompatible
    );
    // A DP with the plugin gets the config.
    let mut ok = JsonDp::ready(
        cp.local_addr(),
        &certs.client(),
        "dp-acl",
        "3.9.3",
        &[("acl", "3.9.3")],
    );
    let (msg, _) = ok.next_reconfigure();
    assert_reconfigure(&msg, &config(4));
}

#[test]
fn a_config_over_4_mib_gzipped_is_skipped_for_3_3_and_sent_to_3_4() {
    let certs = Shared::new();
    // wRPC off: its 4 MiB SyncConfig limit would refuse the config outright.
    let cp = builder(&certs).wrpc(false).start().unwrap();
    let events = EventLog::drain(cp.events());
    let big = big_config(6_000_000, 11);
    cp.set_config(big.clone()).unwrap();
    let mut old = JsonDp::ready(cp.local_addr(), &certs.client(), "dp-33", "3.3.1", &[]);
    let reason = events.wait_node(PATIENCE, "dp-33", "the size skip", |e| match e {
        CpEvent::ConfigSkipped { reason, .. } => Some(reason.clone()),
        _ => None,
    });
    assert!(reason.contains("4194304"), "{reason}");
    assert!(
        old.ping_pong(EMPTY_HASH.as_bytes()).is_empty(),
        "still connected"
    );
    let mut new = JsonDp::ready(cp.local_addr(), &certs.client(), "dp-34", "3.4.0", &[]);
    let (msg, len) = new.next_reconfigure();
    assert!(len > 4 * 1024 * 1024, "{len}");
    assert_eq!(msg["config_hash"], hash_of(&big).as_str());
}

#[test]
fn with_wrpc_off_the_probe_gets_404_and_json_still_works() {
    let certs = Shared::new();
    let cp = builder(&certs).wrpc(false).start().unwrap();
    let (head, _) = ask(
        cp.local_addr(),
        &certs.client(),
        b"HEAD /v1/wrpc HTTP/1.1\r\nHost: cp\r\n\r\n",
    );
    assert_eq!(head.status, 404);
    assert_eq!(head.header_str("kong-node-id"), Some("cp-json"));
    let Err(err) = Dp::connect(cp.local_addr(), &certs.client(), "dp-w", "3.1.0", &pool()) else {
        panic!("the wRPC upgrade must be refused");
    };
    assert!(err.to_string().contains("404"), "{err}");
    let mut dp = JsonDp::ready(cp.local_addr(), &certs.client(), "dp-j", "3.9.3", &[]);
    assert!(dp.ping_pong(EMPTY_HASH.as_bytes()).is_empty());
}

#[test]
fn with_json_off_outlet_gets_404_and_the_probe_400() {
    let certs = Shared::new();
    let cp = builder(&certs).json(false).start().unwrap();
    let req = upgrade_request("GET", "/v1/outlet", "dp-x", "3.9.3", "");
    let (head, _) = ask(cp.local_addr(), &certs.client(), &req);
    assert_eq!(head.status, 404);
    let (head, _) = ask(
        cp.local_addr(),
        &certs.client(),
        b"HEAD /v1/wrpc HTTP/1.1\r\nHost: cp\r\n\r\n",
    );
    assert_eq!(head.status, 400);
    assert!(builder(&certs).json(false).wrpc(false).start().is_err());
}

#[test]
fn both_protocols_share_one_listener_and_one_config() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let cfg = config(5);
    let version = cp.set_config(cfg.clone()).unwrap();
    // A Kong 3.0 wRPC DP passes the default (3.9.3) version gate.
    let wrpc = Dp::ready(cp.local_addr(), &certs.client(), "dp-w30", &pool());
    let mut json = JsonDp::ready(cp.local_addr(), &certs.client(), "dp-j39", "3.9.3", &[]);
    let (msg, _) = json.next_reconfigure();
    assert_reconfigure(&msg, &cfg);
    assert_eq!(wrpc.wait_version(version).hash, hash_of(&cfg));
    assert_eq!(node(&cp, "dp-w30").protocol, Protocol::Wrpc);
    assert_eq!(node(&cp, "dp-j39").protocol, Protocol::Json);
}

#[test]
fn an_upgrade_without_node_id_or_version_is_400_with_kong_node_id() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    for req in [
        &b"GET /v1/outlet?node_hostname=h&node_version=3.9.3 HTTP/1.1\r\nHost: cp\r\n\r\n"[..],
        b"GET /v1/outlet?node_id=a&node_hostname=h HTTP/1.1\r\nHost: cp\r\n\r\n",
    ] {
        let (head, _) = ask(cp.local_addr(), &certs.client(), req);
        assert_eq!(head.status, 400);
        assert_eq!(head.header_str("kong-node-id"), Some("cp-json"));
    }
}

#[test]
fn a_dp_that_stops_pinging_is_closed_after_the_ping_timeout() {
    let certs = Shared::new();
    let cp = builder(&certs)
        .ping_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    let mut dp = JsonDp::ready(cp.local_addr(), &certs.client(), "dp-mute", "3.9.3", &[]);
    assert_eq!(dp.wait_close(), Some(1008));
}

/// Each hostile peer is answered as interop-json.md says, and the good DP beside them
/// keeps its pongs and its pushes.
#[test]
fn hostile_json_peers_are_closed_and_the_good_dp_is_unaffected() {
    let certs = Shared::new();
    let cp = builder(&certs)
        .metadata_deadline(Duration::from_millis(400))
        .json_max_message_size(256 * 1024)
        .start()
        .unwrap();
    let events = EventLog::drain(cp.events());
    let addr = cp.local_addr();
    let tls = certs.client();
    let mut good = JsonDp::ready(addr, &tls, "dp-good", "3.9.3", &[]);
    let mut n = 0;
    let mut check_good = |good: &mut JsonDp, what: &str| {
        n += 1;
        let cfg = config(100 + n);
        cp.set_config(cfg.clone()).unwrap();
        let (msg, _) = good.next_reconfigure();
        assert_reconfigure(&msg, &cfg);
        let hash = msg["config_hash"].as_str().unwrap().to_string();
        assert!(good.ping_pong(hash.as_bytes()).is_empty(), "after {what}");
    };
    type Attack = fn(&mut JsonDp);
    let attacks: [(&str, Attack, u16); 8] = [
        (
            "text first",
            |dp| dp.send(TEXT, br#"{"type":"basic_info","plugins":[]}"#),
            1008,
        ),
        (
            "garbage first",
            |dp| dp.send(BINARY, b"\x00\xffnot json"),
            1007,
        ),
        ("ping first", |dp| dp.ping(EMPTY_HASH.as_bytes()), 1008),
        ("no basic_info in time", |_| {}, 1008),
        (
            "a fragmented basic_info",
            |dp| dp.send_frame(false, BINARY, br#"{"type":"#, None),
            1008,
        ),
        (
            "a frame over the limit",
            |dp| dp.send_frame(true, BINARY, b"{", Some(1 << 20)),
            1009,
        ),
        (
            "a ping of 31 bytes",
            |dp| {
                dp.basic_info(&[]);
                dp.send(PING, &[b'a'; 31]);
            },
            1008,
        ),
        (
            "a data frame after basic_info",
            |dp| {
                dp.basic_info(&[]);
                dp.send(BINARY, br#"{"type":"error"}"#);
            },
            1008,
        ),
    ];
    for (i, (what, attack, code)) in attacks.into_iter().enumerate() {
        let node_id = format!("dp-bad-{i}");
        let mut bad = JsonDp::connect(addr, &tls, &node_id, "3.9.3");
        attack(&mut bad);
        assert_eq!(bad.wait_close(), Some(code), "{what}");
        let reason = events.wait_disconnect(PATIENCE, &node_id);
        assert!(reason.contains(&code.to_string()), "{what}: {reason}");
        check_good(&mut good, what);
    }
    assert!(events
        .disconnections()
        .iter()
        .all(|(id, _)| id != "dp-good"));
    assert_eq!(node(&cp, "dp-good").sync_status, SyncStatus::Normal);
}
