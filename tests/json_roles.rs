//! Our DataPlane against our ControlPlane over Kong's JSON protocol (`/v1/outlet`), and
//! mixed with wRPC: real TLS on loopback, every wait on an event with a deadline.

mod support;

use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use dpspec::cp::{CpEvent, NodeInfo, PushOutcome};
use dpspec::dp::{ConfigUpdate, DataPlane, DataPlaneBuilder, DpEvent, ProtocolChoice, Reconnect};
use dpspec::proxy::ProxyUrl;
use dpspec::tls::{ClientAuth, Identity, TrustMode};
use dpspec::{ControlPlane, Protocol};
use serde_json::json;
use support::certs::{Ca, Pem};

/// How long any one wait may take before the test fails; a passing run takes far less.
const PATIENCE: Duration = Duration::from_secs(15);

fn identity(pem: &Pem) -> Identity {
    Identity::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap()
}

/// A CP in Kong's shared mode with `pem` as the one certificate.
fn shared_cp(pem: &Pem, wrpc: bool) -> ControlPlane {
    ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(identity(pem))
        .client_auth(ClientAuth::Shared(None))
        .wrpc(wrpc)
        .start()
        .unwrap()
}

/// A DP builder for `cp` in shared mode, accepting every config.
fn shared_dp(
    cp: &ControlPlane,
    pem: &Pem,
    name: &str,
    protocol: ProtocolChoice,
) -> DataPlaneBuilder {
    DataPlane::builder(cp.local_addr().to_string())
        .trust(TrustMode::pinned_pem(pem.cert.as_bytes()).unwrap())
        .identity(identity(pem))
        .hostname(name)
        .protocol(protocol)
        .reconnect(Reconnect::Fixed(Duration::from_millis(50)))
        .config_handler(|_: &ConfigUpdate<'_>| Ok(()))
}

/// Reads `rx` until `pred` holds for an event, and returns it with every event read before.
fn wait_for<E: std::fmt::Debug>(
    rx: &Receiver<E>,
    what: &str,
    mut pred: impl FnMut(&E) -> bool,
) -> (E, Vec<E>) {
    let deadline = Instant::now() + PATIENCE;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(e) if pred(&e) => return (e, before),
            Ok(e) => before.push(e),
            Err(_) => panic!("no event for {what} in {PATIENCE:?}; saw {before:#?}"),
        }
    }
}

/// Waits until the CP holds exactly `n` nodes and every one satisfies `pred`. Every
/// registry change is followed by an event, so it re-checks after each event on `events`
/// (the CP's one shared receiver: take it once per test, before the DPs start).
fn until_nodes(
    cp: &ControlPlane,
    events: &Receiver<CpEvent>,
    n: usize,
    what: &str,
    pred: impl Fn(&NodeInfo) -> bool,
) -> Vec<NodeInfo> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let nodes = cp.nodes();
        if nodes.len() == n && nodes.iter().all(&pred) {
            return nodes;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            events.recv_timeout(left).is_ok(),
            "{what}: not reached in {PATIENCE:?}: {nodes:#?}"
        );
    }
}

/// The JSON round trip every JSON test checks: the CP has a config before the DP starts;
/// the DP connects over JSON, applies the CP's hash and pings it; the CP records the node
/// as JSON with that hash and the push as accepted.
fn json_dp_applies_the_cps_config(cp: &ControlPlane, builder: DataPlaneBuilder) -> DataPlane {
    let cp_events = cp.events();
    let v = cp
        .set_config(json!({"_format_version": "3.0", "services": [{"id": "s1", "name": "a"}]}))
        .unwrap();
    let (cv, hashes) = cp.config_version().unwrap();
    assert_eq!(cv, v);
    let hash = hashes.config.clone();
    let dp = builder.start().unwrap();

    let (_, before) = wait_for(
        &dp.events(),
        "the DP applying the config",
        |e| matches!(e, DpEvent::ConfigApplied { hash: h, from_cache: false, .. } if *h == hash),
    );
    let connected: Vec<_> = before
        .iter()
        .filter_map(|e| match e {
            DpEvent::Connected { protocol, .. } => Some(*protocol),
            _ => None,
        })
        .collect();
    assert_eq!(connected, vec![Protocol::Json], "{before:#?}");
    let st = dp.status();
    assert!(st.connected, "{st:#?}");
    assert_eq!(st.protocol, Some(Protocol::Json), "{st:#?}");
    assert_eq!(st.applied_hash.as_deref(), Some(hash.as_str()), "{st:#?}");
    assert_eq!(
        st.applied_version, None,
        "JSON has no version numbers: {st:#?}"
    );
    assert_eq!(st.cp_node_id.as_deref(), Some(cp.node_id()), "{st:#?}");

    let node_id = dp.node_id().to_string();
    wait_for(
        &cp_events,
        "the CP seeing a ping with the hash",
        |e| matches!(e, CpEvent::Ping { node_id: n, hash: h, .. } if *n == node_id && *h == hash),
    );
    // The Ping event follows the registry update that completes the push.
    let nodes = cp.nodes();
    assert_eq!(nodes.len(), 1, "{nodes:#?}");
    let node = &nodes[0];
    assert_eq!(node.node_id, node_id);
    assert_eq!(node.protocol, Protocol::Json, "{node:#?}");
    assert_eq!(
        node.reported_hash.as_deref(),
        Some(hash.as_str()),
        "{node:#?}"
    );
    assert!(node.metadata_reported, "{node:#?}");
    let push = node.last_push.as_ref().expect("a push record");
    assert_eq!(
        (push.version, push.hash.as_str(), &push.outcome),
        (v, hash.as_str(), &PushOutcome::Accepted),
        "{node:#?}"
    );
    dp
}

#[test]
fn json_dp_gets_config_from_our_cp_in_shared_mode() {
    support::init_logs();
    let pem = support::certs::kong_shared();
    let cp = shared_cp(&pem, true);
    let dp = json_dp_applies_the_cps_config(
        &cp,
        shared_dp(&cp, &pem, "json-shared", ProtocolChoice::Json),
    );
    dp.shutdown();
}

#[test]
fn json_dp_gets_config_from_our_cp_in_pki_mode() {
    support::init_logs();
    let ca = Ca::new("dpspec test CA");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    let client = ca.client("json-pki-dp");
    let cp = ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(identity(&server))
        .client_auth(ClientAuth::pki_pem(ca.pem.cert.as_bytes()).unwrap())
        .start()
        .unwrap();
    let builder = DataPlane::builder(cp.local_addr().to_string())
        .server_name("localhost")
        .trust(TrustMode::ca_pem(ca.pem.cert.as_bytes()).unwrap())
        .identity(identity(&client))
        .hostname("json-pki")
        .protocol(ProtocolChoice::Json)
        .reconnect(Reconnect::Fixed(Duration::from_millis(50)))
        .config_handler(|_: &ConfigUpdate<'_>| Ok(()));
    let dp = json_dp_applies_the_cps_config(&cp, builder);
    dp.shutdown();
}

#[test]
fn json_dp_through_a_connect_proxy() {
    support::init_logs();
    let pem = support::certs::kong_shared();
    let cp = shared_cp(&pem, true);
    let proxy = support::proxy::start(support::proxy::Behavior::Tunnel, None);
    let builder = shared_dp(&cp, &pem, "json-proxied", ProtocolChoice::Json)
        .proxy(ProxyUrl::new("127.0.0.1", proxy.port));
    let dp = json_dp_applies_the_cps_config(&cp, builder);
    let head = String::from_utf8(
        proxy
            .heads
            .recv_timeout(PATIENCE)
            .expect("the proxy saw a CONNECT"),
    )
    .unwrap();
    assert!(
        head.starts_with(&format!("CONNECT {} HTTP/1.1\r\n", cp.local_addr())),
        "the DP went through the proxy: {head}"
    );
    dp.shutdown();
}

#[test]
fn auto_lands_on_json_when_the_cp_has_wrpc_off_and_on_wrpc_by_default() {
    support::init_logs();
    let pem = support::certs::kong_shared();
    for (wrpc, expected) in [(false, Protocol::Json), (true, Protocol::Wrpc)] {
        let cp = shared_cp(&pem, wrpc);
        let cp_events = cp.events();
        let v = cp
            .set_config(json!({"_format_version": "3.0", "wrpc_on": wrpc}))
            .unwrap();
        let (_, hashes) = cp.config_version().unwrap();
        let hash = hashes.config.clone();
        let dp = shared_dp(&cp, &pem, &format!("auto-{wrpc}"), ProtocolChoice::Auto)
            .start()
            .unwrap();
        let (connected, _) = wait_for(&dp.events(), "the DP connecting", |e| {
            matches!(e, DpEvent::Connected { .. })
        });
        assert!(
            matches!(connected, DpEvent::Connected { protocol, .. } if protocol == expected),
            "wrpc {wrpc}: {connected:?}"
        );
        let (applied, _) = wait_for(
            &dp.events(),
            "the DP applying the config",
            |e| matches!(e, DpEvent::ConfigApplied { hash: h, .. } if *h == hash),
        );
        let want_version = (expected == Protocol::Wrpc).then_some(v);
        assert!(
            matches!(applied, DpEvent::ConfigApplied { version, .. } if version == want_version),
            "wrpc {wrpc}: {applied:?}"
        );
        assert_eq!(dp.status().protocol, Some(expected), "wrpc {wrpc}");
        let nodes = until_nodes(&cp, &cp_events, 1, "the CP recording the hash", |n| {
            n.reported_hash.as_deref() == Some(hash.as_str())
                && n.last_push
                    .as_ref()
                    .is_some_and(|p| p.version == v && p.outcome == PushOutcome::Accepted)
        });
        assert_eq!(nodes[0].protocol, expected, "wrpc {wrpc}: {nodes:#?}");
        dp.shutdown();
    }
}

#[test]
fn a_mixed_fleet_converges_on_one_hash() {
    support::init_logs();
    let pem = support::certs::kong_shared();
    let cp = shared_cp(&pem, true);
    let cp_events = cp.events();
    let dps: Vec<_> = (0..6)
        .map(|i| {
            let protocol = if i % 2 == 0 {
                ProtocolChoice::Wrpc
            } else {
                ProtocolChoice::Json
            };
            shared_dp(&cp, &pem, &format!("fleet-{i}"), protocol)
                .start()
                .unwrap()
        })
        .collect();
    // Pushes start once a node has reported its plugins.
    let nodes = until_nodes(&cp, &cp_events, 6, "every DP ready for pushes", |n| {
        n.metadata_reported
    });
    let count = |p: Protocol| nodes.iter().filter(|n| n.protocol == p).count();
    assert_eq!((count(Protocol::Wrpc), count(Protocol::Json)), (3, 3));

    cp.set_config(json!({"_format_version": "3.0", "services": [{"id": "s1"}]}))
        .unwrap();
    let (_, h1) = cp.config_version().unwrap();
    let v2 = cp
        .set_config(json!({"_format_version": "3.0", "services": [{"id": "s2"}]}))
        .unwrap();
    let (_, h2) = cp.config_version().unwrap();
    assert_ne!(h1.config, h2.config);
    let h2 = h2.config;

    until_nodes(
        &cp,
        &cp_events,
        6,
        "every DP reporting the second hash",
        |n| {
            n.reported_hash.as_deref() == Some(h2.as_str())
                && n.last_push.as_ref().is_some_and(|p| {
                    p.version == v2 && p.hash == h2 && p.outcome == PushOutcome::Accepted
                })
        },
    );
    for (i, dp) in dps.iter().enumerate() {
        let st = dp.status();
        assert_eq!(
            st.applied_hash.as_deref(),
            Some(h2.as_str()),
            "dp {i}: {st:#?}"
        );
        let (want_protocol, want_version) = if i % 2 == 0 {
            (Protocol::Wrpc, Some(v2))
        } else {
            (Protocol::Json, None)
        };
        assert_eq!(
            (st.protocol, st.applied_version),
            (Some(want_protocol), want_version),
            "dp {i}: {st:#?}"
        );
    }
    let ids: std::collections::BTreeSet<_> = cp.nodes().into_iter().map(|n| n.node_id).collect();
    let ours: std::collections::BTreeSet<_> = dps.iter().map(|d| d.node_id().to_string()).collect();
    assert_eq!(ids, ours);
    for dp in &dps {
        dp.shutdown();
    }
}
