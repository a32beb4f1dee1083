//! Our DataPlane against our ControlPlane, over Kong's shared-mode TLS on loopback.

mod support;

use std::time::{Duration, Instant};

use dpspec::cp::{CpEvent, PushOutcome};
use dpspec::dp::{config_error, ConfigErrorType, ConfigUpdate, DataPlane, DpEvent, Reconnect};
use dpspec::tls::{ClientAuth, Identity, TrustMode};
use dpspec::ControlPlane;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(20);

fn cp(pem: &support::certs::Pem) -> ControlPlane {
    ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(Identity::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap())
        .client_auth(ClientAuth::Shared(None))
        .start()
        .unwrap()
}

fn dp(cp: &ControlPlane, pem: &support::certs::Pem, name: &str) -> DataPlane {
    DataPlane::builder(cp.local_addr().to_string())
        .trust(TrustMode::pinned_pem(pem.cert.as_bytes()).unwrap())
        .identity(Identity::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap())
        .hostname(name)
        .reconnect(Reconnect::Fixed(Duration::from_millis(50)))
        .config_handler(|u: &ConfigUpdate<'_>| {
            if u.config.contains_key("reject_me") {
                Err(vec![config_error(
                    "r1",
                    "routes",
                    ConfigErrorType::Validation,
                )])
            } else {
                Ok(())
            }
        })
        .start()
        .unwrap()
}

/// Waits until every node of the CP satisfies `pred`.
fn until_nodes(
    cp: &ControlPlane,
    n: usize,
    what: &str,
    pred: impl Fn(&dpspec::cp::NodeInfo) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    let events = cp.events();
    loop {
        let nodes = cp.nodes();
        if nodes.len() == n && nodes.iter().all(&pred) {
            return;
        }
        // Every change in the registry is followed by an event (the test is the only
        // reader): recheck after the next one.
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            events.recv_timeout(left).is_ok(),
            "{what}: not reached in {PATIENCE:?}: {nodes:#?}"
        );
    }
}

#[test]
fn three_dps_follow_two_configs_and_the_cp_records_their_hashes() {
    support::init_logs();
    let pem = support::certs::kong_shared();
    let cp = cp(&pem);
    let v1 = cp
        .set_config(json!({"_format_version": "3.0", "services": [{"id": "s1"}]}))
        .unwrap();
    let dps: Vec<_> = (0..3).map(|i| dp(&cp, &pem, &format!("dp-{i}"))).collect();
    let (_, h1) = cp.config_version().unwrap();
    until_nodes(&cp, 3, "all on v1", |n| {
        n.reported_hash.as_deref() == Some(h1.config.as_str())
            && n.last_push
                .as_ref()
                .is_some_and(|p| p.version == v1 && p.outcome == PushOutcome::Accepted)
    });
    let v2 = cp
        .set_config(json!({"_format_version": "3.0", "services": []}))
        .unwrap();
    let (_, h2) = cp.config_version().unwrap();
    assert_ne!(h1.config, h2.config);
    until_nodes(&cp, 3, "all on v2", |n| {
        n.reported_hash.as_deref() == Some(h2.config.as_str())
    });
    for dp in &dps {
        let st = dp.status();
        assert_eq!(
            (st.applied_version, st.applied_hash.as_deref()),
            (Some(v2), Some(h2.config.as_str()))
        );
        assert_eq!(st.cp_node_id.as_deref(), Some(cp.node_id()));
    }
}

#[test]
fn a_rejected_config_is_recorded_by_the_cp_with_the_dp_errors() {
    let pem = support::certs::kong_shared();
    let cp = cp(&pem);
    cp.set_config(json!({"_format_version": "3.0"})).unwrap();
    let dp = dp(&cp, &pem, "dp-r");
    let (_, good) = cp.config_version().unwrap();
    until_nodes(&cp, 1, "good config applied", |n| {
        n.reported_hash.as_deref() == Some(good.config.as_str())
    });
    let events = cp.events();
    let v = cp
        .set_config(json!({"_format_version": "3.0", "reject_me": true}))
        .unwrap();
    let errors = loop {
        match events.recv_timeout(PATIENCE).expect("a rejection event") {
            CpEvent::ConfigRejected {
                version, errors, ..
            } if version == v => break errors,
            _ => {}
        }
    };
    assert_eq!(
        (errors[0].id.as_str(), errors[0].entity.as_str()),
        ("r1", "routes")
    );
    let node = &cp.nodes()[0];
    assert!(
        matches!(&node.last_push.as_ref().unwrap().outcome, PushOutcome::Rejected(e) if e.len() == 1)
    );
    assert_eq!(
        dp.status().applied_hash.as_deref(),
        Some(good.config.as_str()),
        "the old config stays"
    );
    assert!(dp
        .events()
        .try_iter()
        .any(|e| matches!(e, DpEvent::ConfigRejected { .. })));
}

#[test]
fn dp_survives_a_cp_restart_and_converges_on_the_new_config() {
    let pem = support::certs::kong_shared();
    let first = cp(&pem);
    first
        .set_config(json!({"_format_version": "3.0", "a": 1}))
        .unwrap();
    let addr = first.local_addr();
    let dp = dp(&first, &pem, "dp-restart");
    let (_, h1) = first.config_version().unwrap();
    until_nodes(&first, 1, "first config", |n| {
        n.reported_hash.as_deref() == Some(h1.config.as_str())
    });
    first.shutdown();
    drop(first);
    let second = ControlPlane::builder()
        .listen(addr.to_string())
        .identity(Identity::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap())
        .start()
        .unwrap();
    second
        .set_config(json!({"_format_version": "3.0", "b": 2}))
        .unwrap();
    let (_, h2) = second.config_version().unwrap();
    until_nodes(&second, 1, "second config", |n| {
        n.reported_hash.as_deref() == Some(h2.config.as_str())
    });
    assert!(dp.status().reconnects >= 1);
}
