//! The data plane against a scripted CP over real TLS (Kong's shared mode) on loopback.

mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dpspec::config::{gzip, EMPTY_HASH};
use dpspec::dp::{
    config_error, ConfigErrorType, ConfigUpdate, DataPlane, DataPlaneBuilder, DpEvent, Reconnect,
};
use support::script_cp::{Negotiation, ScriptCp, PATIENCE};

const HASH_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const HASH_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// What the test handler saw: (version, hash, from_cache, number of top-level keys).
type Seen = Arc<Mutex<Vec<(u64, String, bool, usize)>>>;

/// wRPC configs always carry a version.
fn version_of(u: &ConfigUpdate<'_>) -> u64 {
    u.version.expect("a wRPC config has a version")
}

fn dp_for(cp: &ScriptCp, seen: &Seen) -> DataPlaneBuilder {
    support::logs::capture();
    let (trust, identity) = cp.dp_trust();
    let seen = seen.clone();
    DataPlane::builder(cp.addr.to_string())
        .trust(trust)
        .identity(identity)
        .hostname("dp-test")
        .plugins([("rate-limiting", "3.1.0"), ("acl", "3.1.0")])
        .reconnect(Reconnect::Fixed(Duration::from_millis(20)))
        .ping_interval(Duration::from_secs(3600))
        .config_handler(move |u: &ConfigUpdate<'_>| {
            seen.lock().unwrap().push((
                version_of(u),
                u.hash.to_string(),
                u.from_cache,
                u.config.len(),
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

fn tmp_cache(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dpspec-dp-{name}-{}", dpspec::random::uuid_v4()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn happy_path_negotiates_reports_pings_applies_and_pings_the_new_hash() {
    let cp = ScriptCp::start(Negotiation::Accept);
    let seen = Seen::default();
    let dp = dp_for(&cp, &seen).start().unwrap();
    let conn = cp.next_conn();
    assert_eq!(conn.node.node_id, dp.node_id());
    assert_eq!(conn.node.hostname, "dp-test");
    assert_eq!(conn.node.version, "3.1.1");
    let plugins = conn.reported.recv_timeout(PATIENCE).unwrap();
    assert_eq!(
        plugins,
        vec![
            ("acl".into(), "3.1.0".into()),
            ("rate-limiting".into(), "3.1.0".into())
        ]
    );
    assert_eq!(
        conn.next_ping(),
        EMPTY_HASH,
        "before any config the DP pings 32 zeros"
    );

    let resp = conn
        .push(1, r#"{"_format_version":"3.0","services":[]}"#, HASH_A)
        .unwrap();
    assert!(resp.accepted && resp.errors.is_empty());
    assert_eq!(
        conn.next_ping(),
        HASH_A,
        "the ping after an apply carries the new hash"
    );
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[(1, HASH_A.to_string(), false, 2)]
    );
    let st = dp.status();
    assert!(st.connected);
    assert_eq!(st.cp_node_id.as_deref(), Some(support::script_cp::CP_ID));
    assert_eq!(
        st.negotiated,
        vec![("config".to_string(), "v1".to_string())]
    );
    assert_eq!(
        (st.applied_version, st.applied_hash.as_deref()),
        (Some(1), Some(HASH_A))
    );
    dp.shutdown();
    assert!(matches!(
        conn.peer.wait(),
        dpspec::channel::Ended::ClosedByPeer {
            code: Some(1000),
            ..
        }
    ));
}

#[test]
fn error_message_in_negotiation_leads_to_a_reconnect() {
    let cp = ScriptCp::start(Negotiation::ErrorMessage("dp version too new".into()));
    let dp = dp_for(&cp, &Seen::default()).start().unwrap();
    let first = cp.next_conn();
    let e = wait_for(&dp, "disconnect", |e| {
        matches!(e, DpEvent::Disconnected { .. })
    });
    let DpEvent::Disconnected { reason } = e else {
        unreachable!()
    };
    assert!(reason.contains("dp version too new"), "{reason}");
    let second = cp.next_conn();
    assert_eq!(first.node.node_id, second.node.node_id);
    assert!(dp.status().reconnects >= 1);
    assert!(
        !support::logs::lines_with("dp version too new").is_empty(),
        "the reason is logged"
    );
}

#[test]
fn rejected_config_service_leads_to_a_reconnect() {
    let cp = ScriptCp::start(Negotiation::RejectConfig);
    let dp = dp_for(&cp, &Seen::default()).start().unwrap();
    let _first = cp.next_conn();
    let DpEvent::Disconnected { reason } = wait_for(&dp, "disconnect", |e| {
        matches!(e, DpEvent::Disconnected { .. })
    }) else {
        unreachable!()
    };
    assert!(reason.contains("config"), "{reason}");
    let _second = cp.next_conn();
}

#[test]
fn handler_rejection_is_reported_and_the_hash_stays() {
    let cp = ScriptCp::start(Negotiation::Accept);
    let dp = dp_for(&cp, &Seen::default()).start().unwrap();
    let conn = cp.next_conn();
    conn.next_ping();
    conn.push(1, "{}", HASH_A).unwrap();
    assert_eq!(conn.next_ping(), HASH_A);
    let resp = conn.push(2, r#"{"reject_me":true}"#, HASH_B).unwrap();
    assert!(!resp.accepted);
    assert_eq!(resp.errors.len(), 1);
    assert_eq!(
        (resp.errors[0].id.as_str(), resp.errors[0].entity.as_str()),
        ("svc-1", "services")
    );
    assert_eq!(dp.status().applied_hash.as_deref(), Some(HASH_A));
    wait_for(&dp, "rejection event", |e| {
        matches!(
            e,
            DpEvent::ConfigRejected {
                version: Some(2),
                ..
            }
        )
    });
}

#[test]
fn older_version_is_ignored_but_answered() {
    let cp = ScriptCp::start(Negotiation::Accept);
    let seen = Seen::default();
    let dp = dp_for(&cp, &seen).start().unwrap();
    let conn = cp.next_conn();
    conn.push(5, "{}", HASH_A).unwrap();
    let resp = conn.push(4, r#"{"x":1}"#, HASH_B).unwrap();
    assert!(resp.accepted, "an old version is still answered accepted");
    assert_eq!(seen.lock().unwrap().len(), 1, "but not applied");
    assert_eq!(dp.status().applied_hash.as_deref(), Some(HASH_A));
}

#[test]
fn gzip_bomb_and_invalid_json_get_error_answers_and_the_dp_stays_connected() {
    let cp = ScriptCp::start(Negotiation::Accept);
    let dp = dp_for(&cp, &Seen::default())
        .max_inflated_size(1 << 20)
        .start()
        .unwrap();
    let conn = cp.next_conn();
    let bomb = gzip(&vec![b' '; 8 << 20]);
    let resp = conn.push_bytes(1, bomb, HASH_A).unwrap();
    assert!(!resp.accepted);
    assert!(
        resp.errors[0].entity.contains("config"),
        "{:?}",
        resp.errors
    );
    let resp = conn.push(2, "{ not json", HASH_A).unwrap();
    assert!(!resp.accepted);
    let resp = conn.push(3, "[1, 2, 3]", HASH_A).unwrap();
    assert!(!resp.accepted);
    assert!(
        resp.errors[0].entity.contains("object"),
        "{:?}",
        resp.errors
    );
    // Still connected: a good config goes through on the same connection.
    assert!(conn.push(4, "{}", HASH_B).unwrap().accepted);
    assert!(conn.peer.ended().is_none());
    assert_eq!(dp.status().reconnects, 0);
}

#[test]
fn same_hash_is_not_applied_twice() {
    let cp = ScriptCp::start(Negotiation::Accept);
    let seen = Seen::default();
    let _dp = dp_for(&cp, &seen).start().unwrap();
    let conn = cp.next_conn();
    assert!(conn.push(1, "{}", HASH_A).unwrap().accepted);
    assert!(conn.push(2, r#"{"x":1}"#, HASH_A).unwrap().accepted);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn kong_hash_is_computed_when_the_cp_sends_none() {
    let cp = ScriptCp::start(Negotiation::Accept);
    let dp = dp_for(&cp, &Seen::default()).start().unwrap();
    let conn = cp.next_conn();
    conn.next_ping();
    assert!(
        conn.push(1, r#"{"routes":{},"services":{},"plugins":{}}"#, "")
            .unwrap()
            .accepted
    );
    assert_eq!(
        conn.next_ping(),
        "81aac97a81ad03c0cf0b36663806488e",
        "interop.md section 7 vector"
    );
    drop(dp);
}

#[test]
fn cp_going_away_and_coming_back_leads_to_reconnect_and_renegotiation() {
    let cp = ScriptCp::start(Negotiation::Accept);
    let dp = dp_for(&cp, &Seen::default()).start().unwrap();
    let conn = cp.next_conn();
    conn.push(1, "{}", HASH_A).unwrap();
    // The CP goes away: connection closed and listener gone.
    let addr = cp.addr.to_string();
    let cert = cp.cert.clone();
    conn.peer.close(1001, "cp restarting");
    drop(conn);
    drop(cp);
    wait_for(&dp, "disconnect", |e| {
        matches!(e, DpEvent::Disconnected { .. })
    });
    // ... and comes back on the same address.
    let cp = ScriptCp::start_at(&addr, cert, Negotiation::Accept);
    let conn = cp.next_conn();
    wait_for(&dp, "renegotiation", |e| {
        matches!(e, DpEvent::Negotiated { .. })
    });
    assert_eq!(
        conn.next_ping(),
        HASH_A,
        "the applied config survives the reconnect"
    );
    assert!(dp.status().reconnects >= 1);
}

#[test]
fn dp_started_with_the_cp_down_serves_the_cached_config() {
    let cache = tmp_cache("down");
    let cp = ScriptCp::start(Negotiation::Accept);
    let first = dp_for(&cp, &Seen::default())
        .cache_dir(&cache)
        .start()
        .unwrap();
    let conn = cp.next_conn();
    conn.push(
        7,
        r#"{"_format_version":"3.0","services":[{"id":"s1"}]}"#,
        HASH_A,
    )
    .unwrap();
    let node_id = first.node_id().to_string();
    drop(first);
    drop(conn);
    let addr = cp.addr;
    drop(cp); // the CP is down now

    let seen = Seen::default();
    let down = ScriptCp::start(Negotiation::Accept);
    let (trust, identity) = down.dp_trust();
    let seen2 = seen.clone();
    let dp = DataPlane::builder(addr.to_string())
        .trust(trust)
        .identity(identity)
        .cache_dir(&cache)
        .reconnect(Reconnect::Fixed(Duration::from_secs(60)))
        .config_handler(move |u: &ConfigUpdate<'_>| {
            seen2.lock().unwrap().push((
                version_of(u),
                u.hash.to_string(),
                u.from_cache,
                u.config.len(),
            ));
            Ok(())
        })
        .start()
        .unwrap();
    assert_eq!(
        dp.node_id(),
        node_id,
        "the node id is kept in the cache directory"
    );
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[(7, HASH_A.to_string(), true, 2)]
    );
    assert_eq!(dp.status().applied_hash.as_deref(), Some(HASH_A));
    wait_for(&dp, "cached apply", |e| {
        matches!(
            e,
            DpEvent::ConfigApplied {
                from_cache: true,
                ..
            }
        )
    });
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn cache_file_cut_in_half_is_ignored_with_a_clear_log_line() {
    let cache = tmp_cache("half");
    let cp = ScriptCp::start(Negotiation::Accept);
    let first = dp_for(&cp, &Seen::default())
        .cache_dir(&cache)
        .start()
        .unwrap();
    let conn = cp.next_conn();
    conn.push(1, r#"{"services":[{"id":"s1","name":"a"}]}"#, HASH_A)
        .unwrap();
    drop(first);
    let file = cache.join(dpspec::dp::cache::CONFIG_FILE);
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();

    let seen = Seen::default();
    let dp = dp_for(&cp, &seen).cache_dir(&cache).start().unwrap();
    assert!(
        seen.lock().unwrap().is_empty(),
        "a corrupt cache is not applied"
    );
    assert_eq!(dp.status().applied_hash, None);
    let lines = support::logs::lines_with("is corrupt");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&cache.display().to_string())),
        "{lines:?}"
    );
    std::fs::remove_dir_all(cache).unwrap();
}

#[test]
fn whole_flow_through_a_connect_proxy() {
    let cp = ScriptCp::start(Negotiation::Accept);
    let proxy = support::proxy::start(support::proxy::Behavior::Tunnel, Some("Basic ZHA6c2VjcmV0"));
    let url = dpspec::proxy::ProxyUrl::parse(&format!("http://dp:secret@127.0.0.1:{}", proxy.port))
        .unwrap();
    let dp = dp_for(&cp, &Seen::default()).proxy(url).start().unwrap();
    let conn = cp.next_conn();
    assert!(conn.push(1, "{}", HASH_A).unwrap().accepted);
    assert_eq!(dp.status().applied_hash.as_deref(), Some(HASH_A));
    let head = String::from_utf8(proxy.heads.recv_timeout(PATIENCE).unwrap()).unwrap();
    assert!(
        head.starts_with(&format!("CONNECT {} HTTP/1.1", cp.addr)),
        "{head}"
    );
    assert!(
        support::logs::lines_with("secret").is_empty(),
        "the proxy password is never logged"
    );
}

#[test]
fn node_id_must_be_a_uuid() {
    let err = DataPlane::builder("127.0.0.1:1")
        .node_id("not-a-uuid")
        .config_handler(|_: &ConfigUpdate<'_>| Ok(()))
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("UUID"), "{err}");
}
