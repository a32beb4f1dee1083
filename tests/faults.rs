//! Faults between a real data plane and a real control plane over TLS on 127.0.0.1: the
//! CP dies in the middle of a push, the DP dies in the middle of writing its cache, the
//! network goes silent in the middle of a config, and the clocks disagree.

mod support;

use support::configs::{big_config, hash_of};

use support::chaos;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chaos::{unix_now, RawDp, Relay};
use dpspec::config::EncodedConfig;
use dpspec::cp::{CpEvent, PushOutcome};
use dpspec::dp::{cache, ConfigUpdate, DataPlane, DpEvent, Reconnect};
use dpspec::services::config::{PingCPRequest, ReportMetadataRequest, SyncConfigRequest};
use dpspec::services::negotiation::dp_request;
use dpspec::services::{NegotiateServices, PingCP, ReportMetadata, SyncConfig};
use dpspec::tls::TrustMode;
use dpspec::wrpc::envelope::{encode_envelope, ErrorType, MessageType, PayloadV1};
use dpspec::wrpc::Rpc;
use dpspec::ControlPlane;
use serde_json::json;
use support::cp_dp::{wait_event_within, Shared, PATIENCE};
use support::script_cp::{Negotiation, ScriptCp};

fn config(n: u64) -> serde_json::Value {
    json!({
        "_format_version": "3.0",
        "services": [{"id": format!("s{n}"), "name": "svc", "host": "example.com", "port": 80}],
    })
}

fn cp_at(certs: &Shared, addr: &str) -> ControlPlane {
    support::logs::capture();
    ControlPlane::builder()
        .listen(addr)
        .identity(certs.identity())
        .node_id("cp-faults")
        .write_timeout(Duration::from_secs(1))
        .close_timeout(Duration::from_millis(200))
        .start()
        .unwrap()
}

fn dp_to(addr: std::net::SocketAddr, certs: &Shared, cache_dir: Option<&PathBuf>) -> DataPlane {
    let mut b = DataPlane::builder(addr.to_string())
        .trust(TrustMode::pinned_pem(certs.pem.cert.as_bytes()).unwrap())
        .identity(certs.identity())
        .hostname("dp-faults")
        .reconnect(Reconnect::Fixed(Duration::from_millis(50)))
        .ping_interval(Duration::from_secs(3600))
        .config_handler(|_: &ConfigUpdate<'_>| Ok(()));
    if let Some(dir) = cache_dir {
        b = b.cache_dir(dir);
    }
    b.start().unwrap()
}

/// Waits for the DP to apply the config with `hash`: its `ConfigApplied` event (the
/// status is updated before the event is sent), unless the status already shows it.
fn applied(dp: &DataPlane, hash: &str) {
    if dp.status().applied_hash.as_deref() != Some(hash) {
        wait_dp_within(dp, PATIENCE * 2, |e| {
            matches!(e, DpEvent::ConfigApplied { hash: h, .. } if h == hash).then_some(())
        });
    }
    assert_eq!(dp.status().applied_hash.as_deref(), Some(hash));
}

fn wait_dp<T>(dp: &DataPlane, pick: impl FnMut(&DpEvent) -> Option<T>) -> T {
    wait_dp_within(dp, PATIENCE, pick)
}

/// Waits for the first DP event that `pick` maps to `Some`, skipping the others.
fn wait_dp_within<T>(
    dp: &DataPlane,
    patience: Duration,
    mut pick: impl FnMut(&DpEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + patience;
    let mut skipped = Vec::new();
    loop {
        match dp.events().recv_deadline(deadline) {
            Ok(e) => match pick(&e) {
                Some(t) => return t,
                None => skipped.push(e),
            },
            Err(_) => panic!(
                "the awaited DP event did not come in {patience:?}; status {:?}; \
                 skipped {skipped:#?}",
                dp.status()
            ),
        }
    }
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "dpspec-faults-{name}-{}",
        dpspec::random::uuid_v4()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn cp_killed_mid_push_the_dp_keeps_its_config_and_converges_after() {
    let certs = Shared::new();
    let cp = cp_at(&certs, "127.0.0.1:0");
    let cp_addr = cp.local_addr();
    let relay = Relay::start(cp_addr);
    let dir = tmp_dir("kill-cp");
    let dp = dp_to(relay.addr, &certs, Some(&dir));
    let c1 = config(1);
    cp.set_config(c1.clone()).unwrap();
    applied(&dp, &hash_of(&c1));
    // A 3 MB push, slowed to a trickle; the CP dies once part of it is through.
    relay.throttle(16 * 1024, Duration::from_millis(20));
    let mark = relay.down_bytes.get();
    cp.set_config(big_config(3_000_000, 7)).unwrap();
    assert!(
        relay.down_bytes.wait_at_least(mark + 200_000, PATIENCE),
        "the push did not start"
    );
    // What a killed process looks like from the DP: the connection ends, and whatever the
    // CP had not put on the wire is lost.
    relay.cut();
    drop(cp);
    let reason = wait_dp(&dp, |e| match e {
        DpEvent::Disconnected { reason } => Some(reason.clone()),
        _ => None,
    });
    assert!(!reason.is_empty());
    assert_eq!(
        dp.status().applied_hash.as_deref(),
        Some(hash_of(&c1).as_str())
    );
    let cached = cache::read_config(&dir).unwrap().unwrap();
    assert_eq!(
        cached.hash,
        hash_of(&c1),
        "the cache holds the last good config"
    );
    // A new CP on the same address with a newer config: the DP converges on it.
    relay.throttle(0, Duration::ZERO);
    let cp = cp_at(&certs, &cp_addr.to_string());
    let c3 = config(3);
    cp.set_config(c3.clone()).unwrap();
    applied(&dp, &hash_of(&c3));
    assert_eq!(
        cache::read_config(&dir).unwrap().unwrap().hash,
        hash_of(&c3)
    );
    dp.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dp_killed_mid_cache_write_restarts_from_the_previous_good_config() {
    let certs = Shared::new();
    let cp = cp_at(&certs, "127.0.0.1:0");
    let dir = tmp_dir("kill-dp");
    let dp = dp_to(cp.local_addr(), &certs, Some(&dir));
    let c1 = config(1);
    cp.set_config(c1.clone()).unwrap();
    applied(&dp, &hash_of(&c1));
    dp.shutdown();
    drop(dp);
    // The next write died half way: its temporary file is left truncated beside the good
    // config.json (the rename never happened).
    let good = std::fs::read(dir.join(cache::CONFIG_FILE)).unwrap();
    let newer = String::from_utf8(good.clone())
        .unwrap()
        .replace(&hash_of(&c1), &"b".repeat(32));
    let tmp = dir.join(format!(".{}.tmp", cache::CONFIG_FILE));
    std::fs::write(&tmp, &newer.as_bytes()[..newer.len() / 2]).unwrap();
    // Restart with no CP reachable: the previous good config serves.
    drop(cp);
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dp = dp_to(nowhere, &certs, Some(&dir));
    let (hash, from_cache) = wait_dp(&dp, |e| match e {
        DpEvent::ConfigApplied {
            hash, from_cache, ..
        } => Some((hash.clone(), *from_cache)),
        _ => None,
    });
    assert_eq!((hash.as_str(), from_cache), (hash_of(&c1).as_str(), true));
    assert_eq!(dp.status().applied_hash, Some(hash_of(&c1)));
    assert_eq!(std::fs::read(dir.join(cache::CONFIG_FILE)).unwrap(), good);
    dp.shutdown();
    drop(dp);
    // The next good write replaces the leftover.
    let cp = cp_at(&certs, "127.0.0.1:0");
    let dp = dp_to(cp.local_addr(), &certs, Some(&dir));
    let c2 = config(2);
    cp.set_config(c2.clone()).unwrap();
    applied(&dp, &hash_of(&c2));
    assert!(!tmp.exists(), "the temporary file was left behind");
    assert_eq!(
        cache::read_config(&dir).unwrap().unwrap().hash,
        hash_of(&c2)
    );
    dp.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_black_holed_network_mid_config_is_noticed_by_both_sides_and_recovered() {
    let certs = Shared::new();
    support::logs::capture();
    let cp = ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(certs.identity())
        .write_timeout(Duration::from_secs(1))
        .sync_timeout(Duration::from_secs(1))
        .close_timeout(Duration::from_millis(200))
        .start()
        .unwrap();
    let cp_events = cp.events();
    let relay = Relay::start(cp.local_addr());
    let dp = DataPlane::builder(relay.addr.to_string())
        .trust(TrustMode::pinned_pem(certs.pem.cert.as_bytes()).unwrap())
        .identity(certs.identity())
        .reconnect(Reconnect::Fixed(Duration::from_millis(50)))
        .ping_interval(Duration::from_millis(300))
        .call_timeout(Duration::from_millis(700))
        .config_handler(|_: &ConfigUpdate<'_>| Ok(()))
        .start()
        .unwrap();
    let c1 = config(1);
    cp.set_config(c1.clone()).unwrap();
    applied(&dp, &hash_of(&c1));
    let first_conn = cp.nodes()[0].conn;
    // The DP's answer to SyncConfig 1 has reached the CP (else the black hole would
    // swallow it, and the CP would time out on config 1 instead of 2).
    wait_event_within(&cp_events, PATIENCE, |e| {
        matches!(e, CpEvent::ConfigAcked { conn, version: 1, .. } if *conn == first_conn)
            .then_some(())
    });
    // The network goes silent: no byte passes, nothing is closed.
    relay.black_hole();
    let cut = Instant::now();
    let c2 = big_config(500_000, 3);
    cp.set_config(c2.clone()).unwrap();
    // The CP: its SyncConfig goes unanswered past sync_timeout; it drops the DP. Nothing
    // is closed, so only that timeout can have ended the connection (a liveness bound
    // here, not a clock: how soon is the timeout's business).
    let reason = wait_event_within(&cp_events, PATIENCE * 2, |e| match e {
        CpEvent::DpDisconnected { conn, reason, .. } if *conn == first_conn => Some(reason.clone()),
        _ => None,
    });
    let cp_noticed = cut.elapsed();
    assert!(!cp.nodes().iter().any(|n| n.conn == first_conn), "{reason}");
    let lines = support::logs::lines_with("did not answer SyncConfig 2");
    assert!(!lines.is_empty(), "no SyncConfig timeout logged: {reason}");
    // The DP: its ping goes unanswered past call_timeout; it reconnects.
    let reason = wait_dp(&dp, |e| match e {
        DpEvent::Disconnected { reason } => Some(reason.clone()),
        _ => None,
    });
    let dp_noticed = cut.elapsed();
    assert!(reason.contains("did not answer PingCP"), "{reason}");
    // New connections pass again: the DP gets what it missed.
    applied(&dp, &hash_of(&c2));
    assert!(relay.accepted() >= 2);
    let node = cp.nodes().into_iter().next().unwrap();
    assert_eq!(node.last_push.unwrap().outcome, PushOutcome::Accepted);
    eprintln!("black hole noticed by the CP after {cp_noticed:?}, by the DP after {dp_noticed:?}");
    dp.shutdown();
}

/// The wire deadline a peer whose clock is `skew` seconds off would put on a call with
/// Kong's 90 s timeout.
fn skewed_deadline(skew: i64) -> u32 {
    (unix_now() as i64 + skew + 90) as u32
}

#[test]
fn cp_clock_60s_ahead_or_behind_still_works_and_past_90s_fails_clearly() {
    // The CP receives calls from a DP whose clock is off.
    let certs = Shared::new();
    let cp = cp_at(&certs, "127.0.0.1:0");
    let dp = RawDp::connect(cp.local_addr(), &certs.client(), "skewed");
    dp.call::<NegotiateServices>(1, skewed_deadline(60), &dp_request("3.1.0", "h"));
    assert_eq!(dp.next(PATIENCE).unwrap().ack, 1);
    dp.call::<ReportMetadata>(2, skewed_deadline(-60), &ReportMetadataRequest::default());
    let answer = dp.next(PATIENCE).unwrap();
    assert_eq!((answer.mtype, answer.ack), (MessageType::Rpc as i32, 2));
    let ping = PingCPRequest {
        hash: "0".repeat(32),
    };
    // 91 s behind: the deadline is a second in the past.
    dp.call::<PingCP>(3, skewed_deadline(-91), &ping);
    let answer = dp.next(PATIENCE).unwrap();
    assert_eq!((answer.mtype, answer.ack), (MessageType::Error as i32, 3));
    let err = answer.error.unwrap();
    assert_eq!(
        (err.etype, err.description.as_str()),
        (ErrorType::Generic as i32, "deadline exceeded")
    );
    assert!(cp.nodes()[0].reported_hash.is_none(), "the ping was run");
    assert!(dp.channel.ended().is_none());
}

#[test]
fn dp_served_by_a_cp_clock_60s_ahead_or_behind_applies_and_past_90s_refuses() {
    // The DP receives SyncConfig from a CP whose clock is off.
    let script = ScriptCp::start(Negotiation::Accept);
    let (trust, identity) = script.dp_trust();
    support::logs::capture();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    let dp = DataPlane::builder(script.addr.to_string())
        .trust(trust)
        .identity(identity)
        .reconnect(Reconnect::Fixed(Duration::from_millis(50)))
        .ping_interval(Duration::from_secs(3600))
        .config_handler(move |u: &ConfigUpdate<'_>| {
            seen2.lock().unwrap().push(u.hash.to_string());
            Ok(())
        })
        .start()
        .unwrap();
    let conn = script.next_conn();
    conn.reported.recv_timeout(PATIENCE).unwrap();
    let push = |seq: u32, n: u64, skew: i64| {
        let c = EncodedConfig::new(&config(n)).unwrap();
        let req = SyncConfigRequest {
            config: c.gzipped.to_vec().into(),
            version: n,
            config_hash: c.hashes.config.clone(),
            hashes: None,
        };
        let body = prost::Message::encode_to_vec(&req);
        let msg = PayloadV1::request(
            SyncConfig::SERVICE_ID,
            SyncConfig::RPC_ID,
            seq,
            skewed_deadline(skew),
            body,
        );
        conn.peer.channel().send(&encode_envelope(&msg)).unwrap();
        c.hashes.config
    };
    let ahead = push(1001, 1, 60);
    applied(&dp, &ahead);
    let behind = push(1002, 2, -60);
    applied(&dp, &behind);
    let late = push(1003, 3, -91);
    let after = push(1004, 4, 0);
    applied(&dp, &after);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [ahead, behind, after],
        "the late config {late} was applied"
    );
    dp.shutdown();
}
