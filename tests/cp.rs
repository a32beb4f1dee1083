//! The control plane end to end: real TLS (Kong's shared mode) on 127.0.0.1, scripted
//! data planes from `tests/support/cp_dp.rs`.

mod support;

use support::configs::{big_config, hash_of};

use std::sync::Arc;
use std::time::{Duration, Instant};

use dpspec::channel::Ended;
use dpspec::config::EMPTY_HASH;
use dpspec::cp::{ControlPlaneBuilder, CpEvent, PushOutcome};
use dpspec::http::NodeIdentity;
use dpspec::services::config::report_metadata_response::Response as MetadataAnswer;
use dpspec::services::config::{GetCapabilitiesRequest, ReportMetadataRequest, SyncConfigRequest};
use dpspec::services::gate::SyncStatus;
use dpspec::services::negotiation::{
    dp_request, NegotiateServicesRequest, ServiceRequest, REJECT_NO_VALID_VERSION,
    REJECT_UNKNOWN_SERVICE,
};
use dpspec::services::{GetCapabilities, ReportMetadata, SyncConfig};
use dpspec::upgrade::UpgradeError;
use dpspec::wrpc::envelope::{encode_envelope, PayloadV1};
use dpspec::wrpc::{ErrorType, Rpc, WrpcError};
use dpspec::ControlPlane;
use serde_json::json;
use support::cp_dp::{dial_raw, pool, wait_event, wait_event_within, Dp, Shared, PATIENCE};

fn builder(certs: &Shared) -> ControlPlaneBuilder {
    support::init_logs();
    ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(certs.identity())
        .node_id("cp-test")
}

fn config(n: u64) -> serde_json::Value {
    json!({
        "_format_version": "3.0",
        "_transform": false,
        "services": [{"id": format!("s{n}"), "name": "svc", "host": "example.com", "port": 80}],
        "routes": [{"id": format!("r{n}"), "service": format!("s{n}"), "paths": ["/"]}],
    })
}

#[test]
fn negotiation_accepted_names_the_cp_and_config_v1() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let events = cp.events();
    let dp = Dp::connect(cp.local_addr(), &certs.client(), "dp-1", "3.1.0", &pool()).unwrap();
    let resp = dp.negotiate();
    assert_eq!(resp.node.unwrap().id, "cp-test");
    assert_eq!(resp.services_accepted.len(), 1);
    assert_eq!(resp.services_accepted[0].name, "config");
    assert_eq!(resp.services_accepted[0].version, "v1");
    assert!(resp.services_rejected.is_empty());
    let outcome = wait_event(&events, |e| match e {
        CpEvent::Negotiated { outcome, .. } => Some(outcome.clone()),
        _ => None,
    });
    assert_eq!(outcome, Ok(vec!["config v1".to_string()]));
    let node = &cp.nodes()[0];
    assert!(node.negotiated);
    assert_eq!(node.sync_status, SyncStatus::Normal);
    assert_eq!(node.hostname, "host-dp-1");
    // The config service is served from now on.
    let caps = dp
        .peer
        .call::<GetCapabilities>(&GetCapabilitiesRequest {})
        .unwrap();
    assert_eq!(caps.capabilities, [1]);
}

#[test]
fn unknown_service_and_no_common_version_are_rejected_per_service() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let dp = Dp::connect(cp.local_addr(), &certs.client(), "dp-1", "3.1.0", &pool()).unwrap();
    let mut req = dp_request("3.1.0", "h");
    req.services_requested = vec![
        ServiceRequest {
            name: "CONFIG".into(),
            versions: vec!["v9".into()],
        },
        ServiceRequest {
            name: "metrics".into(),
            versions: vec!["v1".into()],
        },
    ];
    let resp = dp.negotiate_with(&req).unwrap();
    assert_eq!(resp.error_message, "");
    assert!(resp.services_accepted.is_empty());
    let rejected: Vec<(&str, &str)> = resp
        .services_rejected
        .iter()
        .map(|r| (r.name.as_str(), r.message.as_str()))
        .collect();
    assert_eq!(
        rejected,
        [
            ("config", REJECT_NO_VALID_VERSION),
            ("metrics", REJECT_UNKNOWN_SERVICE)
        ]
    );
    // Not negotiated: the config service stays unserved.
    let err = dp.report(&[]).unwrap_err();
    assert!(err.is_remote(ErrorType::InvalidService), "{err}");
}

#[test]
fn wrong_node_type_gets_only_an_error_message() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let dp = Dp::connect(cp.local_addr(), &certs.client(), "dp-1", "3.1.0", &pool()).unwrap();
    let mut req: NegotiateServicesRequest = dp_request("3.1.0", "h");
    req.node.as_mut().unwrap().r#type = "ENVOY".into();
    let resp = dp.negotiate_with(&req).unwrap();
    assert!(resp.error_message.contains("unknown node type"), "{resp:?}");
    assert!(resp.node.is_none() && resp.services_accepted.is_empty());
    assert!(resp.services_rejected.is_empty());
    assert_eq!(cp.nodes()[0].sync_status, SyncStatus::Unknown);
}

#[test]
fn dp_newer_than_the_cp_minor_is_refused() {
    let certs = Shared::new();
    // The last wRPC release: a 3.2 DP is newer (the default, 3.9.3, would accept it).
    let cp = builder(&certs).kong_version("3.1.1").start().unwrap();
    let dp = Dp::connect(cp.local_addr(), &certs.client(), "dp-1", "3.2.0", &pool()).unwrap();
    let resp = dp.negotiate_with(&dp_request("3.2.0", "h")).unwrap();
    assert!(resp.error_message.contains("newer"), "{resp:?}");
    let node = &cp.nodes()[0];
    assert_eq!(node.sync_status, SyncStatus::KongVersionIncompatible);
    assert!(!node.negotiated);
}

#[test]
fn config_call_before_negotiation_gets_invalid_service() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let dp = Dp::connect(cp.local_addr(), &certs.client(), "dp-1", "3.1.0", &pool()).unwrap();
    let err = dp.ping(EMPTY_HASH).unwrap_err();
    assert!(err.is_remote(ErrorType::InvalidService), "{err}");
    let err = dp.report(&[]).unwrap_err();
    assert!(err.is_remote(ErrorType::InvalidService), "{err}");
    // Still connected, and negotiation then works.
    dp.negotiate();
    dp.ping(EMPTY_HASH).unwrap();
}

#[test]
fn sync_config_called_by_a_dp_gets_invalid_rpc() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let dp = Dp::connect(cp.local_addr(), &certs.client(), "dp-1", "3.1.0", &pool()).unwrap();
    dp.negotiate();
    let err = dp
        .peer
        .call::<SyncConfig>(&SyncConfigRequest::default())
        .unwrap_err();
    assert!(err.is_remote(ErrorType::InvalidRpc), "{err}");
    assert!(dp.peer.ended().is_none());
}

#[test]
fn config_is_pushed_right_after_report_metadata() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let events = cp.events();
    let v = config(1);
    assert_eq!(cp.set_config(v.clone()).unwrap(), 1);
    let dp = Dp::connect(cp.local_addr(), &certs.client(), "dp-1", "3.1.0", &pool()).unwrap();
    dp.negotiate();
    assert!(
        dp.configs.try_recv().is_err(),
        "no push before ReportMetadata"
    );
    let answer = dp.report(&[("acl", "3.1.0")]).unwrap();
    assert_eq!(answer.response, Some(MetadataAnswer::Ok("done".into())));
    let got = dp.next_config();
    assert_eq!(got.version, 1);
    assert_eq!(got.hash, hash_of(&v));
    wait_event(&events, |e| {
        matches!(e, CpEvent::ConfigAcked { version: 1, .. }).then_some(())
    });
    let node = &cp.nodes()[0];
    assert!(node.metadata_reported);
    assert_eq!(node.plugins[0].name, "acl");
    let push = node.last_push.as_ref().unwrap();
    assert_eq!((push.version, &push.hash), (1, &hash_of(&v)));
    assert_eq!(push.outcome, PushOutcome::Accepted);
    // The DP reports what it runs.
    dp.ping(&got.hash).unwrap();
    let hash = wait_event(&events, |e| match e {
        CpEvent::Ping { hash, .. } => Some(hash.clone()),
        _ => None,
    });
    assert_eq!(hash, got.hash);
    let node = &cp.nodes()[0];
    assert_eq!(node.reported_hash.as_deref(), Some(got.hash.as_str()));
    assert!(node.last_seen.is_some());
}

#[test]
fn set_config_reaches_fifty_dps_with_the_same_version_and_hash() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let events = cp.events();
    let tls = certs.client();
    let pool = pool();
    let dps: Vec<Dp> = (0..50)
        .map(|i| Dp::ready(cp.local_addr(), &tls, &format!("dp-{i}"), &pool))
        .collect();
    let v = config(7);
    let version = cp.set_config(v.clone()).unwrap();
    for dp in &dps {
        let got = dp.next_config();
        assert_eq!(
            (got.version, got.hash.as_str()),
            (version, hash_of(&v).as_str())
        );
    }
    // Each ack is recorded: the registry is updated before its ConfigAcked is sent.
    let mut acked = std::collections::BTreeSet::new();
    while acked.len() < 50 {
        acked.insert(wait_event(&events, |e| match e {
            CpEvent::ConfigAcked {
                node_id,
                version: v,
                ..
            } if *v == version => Some(node_id.clone()),
            _ => None,
        }));
    }
    let nodes = cp.nodes();
    assert_eq!(nodes.len(), 50);
    for n in &nodes {
        let push = n.last_push.as_ref();
        assert!(
            push.is_some_and(|p| p.version == version && p.outcome == PushOutcome::Accepted),
            "{}: {push:?}",
            n.node_id
        );
    }
}

#[test]
fn rapid_set_config_ends_on_the_last_version_and_never_goes_back() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let tls = certs.client();
    let pool = pool();
    let dps: Vec<Dp> = (0..10)
        .map(|i| Dp::ready(cp.local_addr(), &tls, &format!("dp-{i}"), &pool))
        .collect();
    let mut last = 0;
    for n in 0..100 {
        last = cp.set_config(config(n)).unwrap();
    }
    assert_eq!(last, 100);
    let last_hash = hash_of(&config(99));
    for dp in &dps {
        let got = dp.wait_version(100);
        assert_eq!(got.hash, last_hash);
        let seen = dp.seen.lock().unwrap().clone();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "{}: versions not increasing: {seen:?}",
            dp.node.node_id
        );
    }
}

#[test]
fn dp_without_report_metadata_is_dropped_after_the_deadline() {
    let certs = Shared::new();
    let cp = builder(&certs)
        .metadata_deadline(Duration::from_millis(300))
        .start()
        .unwrap();
    let events = cp.events();
    let started = Instant::now();
    let silent = Dp::connect(cp.local_addr(), &certs.client(), "silent", "3.1.0", &pool()).unwrap();
    silent.negotiate();
    let good = Dp::ready(cp.local_addr(), &certs.client(), "good", &pool());
    match silent.wait_end() {
        Ended::ClosedByPeer { code, reason } => {
            assert_eq!(code, Some(1008));
            assert_eq!(reason, "no ReportMetadata in time");
        }
        other => panic!("{other:?}"),
    }
    // The deadline is honoured, not cut short (a lower bound: a busy machine only makes
    // it later).
    assert!(started.elapsed() >= Duration::from_millis(300));
    let (node, reason) = wait_event(&events, |e| match e {
        CpEvent::DpDisconnected {
            node_id, reason, ..
        } => Some((node_id.clone(), reason.clone())),
        _ => None,
    });
    assert_eq!(node, "silent");
    assert!(reason.contains("1008"), "{reason}");
    assert!(good.peer.ended().is_none(), "a DP that reported stays");
}

#[test]
fn bad_ping_hash_gets_an_error_and_the_connection_stays() {
    let certs = Shared::new();
    let cp = builder(&certs).start().unwrap();
    let dp = Dp::ready(cp.local_addr(), &certs.client(), "dp-1", &pool());
    for bad in ["abc", "", &"z".repeat(32), &"0".repeat(33)] {
        let err = dp.ping(bad).unwrap_err();
        assert!(err.is_remote(ErrorType::Generic), "{bad:?}: {err}");
        assert!(err.to_string().contains("32 hex"), "{err}");
    }
    dp.ping(EMPTY_HASH).unwrap();
    assert!(dp.peer.ended().is_none());
    assert_eq!(cp.nodes()[0].reported_hash.as_deref(), Some(EMPTY_HASH));
}

#[test]
fn connections_over_the_cap_per_node_get_429() {
    let certs = Shared::new();
    let cp = builder(&certs).max_connections_per_node(2).start().unwrap();
    let events = cp.events();
    let tls = certs.client();
    let pool = pool();
    let _a = Dp::connect(cp.local_addr(), &tls, "same", "3.1.0", &pool).unwrap();
    let b = Dp::connect(cp.local_addr(), &tls, "same", "3.1.0", &pool).unwrap();
    let err = match Dp::connect(cp.local_addr(), &tls, "same", "3.1.0", &pool) {
        Err(e) => e,
        Ok(_) => panic!("a third connection was accepted"),
    };
    match err {
        dpspec::Error::Upgrade(UpgradeError::Refused(r)) => {
            assert_eq!(r.status, 429);
            assert!(r.body.contains("already holds 2 connections"), "{}", r.body);
            assert_eq!(r.cp_node_id.as_deref(), Some("cp-test"));
        }
        other => panic!("{other}"),
    }
    // Another node is not affected; a freed slot is usable again.
    let _other = Dp::connect(cp.local_addr(), &tls, "other", "3.1.0", &pool).unwrap();
    b.peer.close(1000, "bye");
    // The slot is free once the CP has taken b out of its registry, which it does
    // before it announces b's end (b is the only one of "same" to end).
    let b_conn = wait_event(&events, |e| match e {
        CpEvent::DpDisconnected { node_id, conn, .. } if node_id == "same" => Some(*conn),
        _ => None,
    });
    assert_eq!(
        cp.nodes().iter().filter(|n| n.node_id == "same").count(),
        1,
        "connection {b_conn} still counted"
    );
    Dp::connect(cp.local_addr(), &tls, "same", "3.1.0", &pool).unwrap();
}

#[test]
fn a_dp_that_stops_reading_does_not_delay_the_others() {
    let certs = Shared::new();
    // Only these timeouts can end the stuck DP (it never answers SyncConfig, and what it
    // is sent waits in socket buffers it never reads): until one fires it is connected.
    let stuck_timeout = Duration::from_secs(10);
    let cp = builder(&certs)
        .write_timeout(stuck_timeout)
        .sync_timeout(stuck_timeout)
        .close_timeout(Duration::from_millis(300))
        .start()
        .unwrap();
    let events = cp.events();
    let tls = certs.client();
    let pool = pool();
    // The stuck DP writes its requests by hand and never reads.
    let node = NodeIdentity::new("stuck", "stuck-host", "3.1.0");
    let (channel, _reader) = dial_raw(cp.local_addr(), &tls, &node).unwrap();
    let send = |seq: u32, svc: u32, rpc: u32, body: Vec<u8>| {
        let deadline = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60) as u32;
        channel
            .send(&encode_envelope(&PayloadV1::request(
                svc, rpc, seq, deadline, body,
            )))
            .unwrap();
    };
    let neg = prost::Message::encode_to_vec(&dp_request("3.1.0", "stuck-host"));
    send(1, 5, 1, neg);
    wait_event(&events, |e| {
        matches!(e, CpEvent::Negotiated { node_id, .. } if node_id == "stuck").then_some(())
    });
    let meta = prost::Message::encode_to_vec(&ReportMetadataRequest::default());
    send(2, ReportMetadata::SERVICE_ID, ReportMetadata::RPC_ID, meta);
    wait_event(&events, |e| {
        matches!(e, CpEvent::Metadata { node_id, .. } if node_id == "stuck").then_some(())
    });
    let dps: Vec<Dp> = (0..3)
        .map(|i| Dp::ready(cp.local_addr(), &tls, &format!("dp-{i}"), &pool))
        .collect();

    for seed in 1..=3u64 {
        let version = cp.set_config(big_config(1_500_000, seed)).unwrap();
        for dp in &dps {
            let got = dp.wait_version(version);
            assert_eq!(got.version, version);
            assert!(got.gzipped_len > 1_000_000);
        }
    }
    // Every config reached the reading DPs while the stuck one is still connected: were
    // pushes waiting on it, they would have waited until its timeout dropped it.
    assert!(
        cp.nodes().iter().any(|n| n.node_id == "stuck"),
        "the stuck DP was dropped before the others had their configs"
    );
    let reason = wait_event_within(&events, stuck_timeout + PATIENCE, |e| match e {
        CpEvent::DpDisconnected {
            node_id, reason, ..
        } if node_id == "stuck" => Some(reason.clone()),
        _ => None,
    });
    assert!(!reason.is_empty());
    assert_eq!(cp.nodes().len(), 3);
}

#[test]
fn plugin_gate_skips_incompatible_dps_and_records_why() {
    let certs = Shared::new();
    let cp = builder(&certs)
        .plugins(vec![dpspec::services::config::PluginVersion {
            name: "acl".into(),
            version: "3.1.1".into(),
        }])
        .start()
        .unwrap();
    let events = cp.events();
    let tls = certs.client();
    let pool = pool();
    let ok = Dp::connect(cp.local_addr(), &tls, "ok", "3.1.0", &pool).unwrap();
    let missing = Dp::connect(cp.local_addr(), &tls, "missing", "3.1.0", &pool).unwrap();
    let old = Dp::connect(cp.local_addr(), &tls, "old", "3.1.0", &pool).unwrap();
    for (dp, plugins) in [
        (&ok, vec![("acl", "3.0.0")]),
        (&missing, vec![("cors", "3.1.1")]),
        (&old, vec![("acl", "2.8.0")]),
    ] {
        dp.negotiate();
        dp.report(&plugins).unwrap();
    }
    cp.set_config(config(1)).unwrap();
    assert_eq!(ok.next_config().version, 1);
    let mut skipped = Vec::new();
    while skipped.len() < 2 {
        skipped.push(wait_event(&events, |e| match e {
            CpEvent::ConfigSkipped {
                node_id, status, ..
            } => Some((node_id.clone(), *status)),
            _ => None,
        }));
    }
    skipped.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        skipped,
        [
            ("missing".to_string(), SyncStatus::PluginSetIncompatible),
            ("old".to_string(), SyncStatus::PluginVersionIncompatible)
        ]
    );
    assert!(missing.configs.try_recv().is_err() && old.configs.try_recv().is_err());
    let by_id = |id: &str| cp.nodes().into_iter().find(|n| n.node_id == id).unwrap();
    assert_eq!(by_id("ok").sync_status, SyncStatus::Normal);
    let m = by_id("missing");
    assert_eq!(m.sync_status, SyncStatus::PluginSetIncompatible);
    assert_eq!(
        m.status_reason.as_deref(),
        Some("configured plugin acl 3.1.1 is missing from the data plane")
    );
    assert!(m.last_push.is_none());
    assert_eq!(
        by_id("old").sync_status,
        SyncStatus::PluginVersionIncompatible
    );
}

#[test]
fn set_config_over_the_max_message_size_is_refused_before_sending() {
    let certs = Shared::new();
    let cp = builder(&certs).max_message_size(64 * 1024).start().unwrap();
    let dp = Dp::ready(cp.local_addr(), &certs.client(), "dp-1", &pool());
    let err = cp.set_config(big_config(100_000, 9)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, dpspec::Error::InvalidInput(_)), "{text}");
    assert!(
        text.contains("over the max message size of 65536"),
        "{text}"
    );
    assert!(cp.config_version().is_none());
    let err = cp.set_config(json!(["not", "an", "object"])).unwrap_err();
    assert!(matches!(err, dpspec::Error::Config(_)), "{err}");
    // The next good config is version 1: nothing was used up, nothing sent.
    assert_eq!(cp.set_config(config(1)).unwrap(), 1);
    assert_eq!(dp.next_config().version, 1);
}

#[test]
fn shutdown_closes_every_dp_with_1000_and_joins() {
    let certs = Shared::new();
    let cp = Arc::new(builder(&certs).start().unwrap());
    let tls = certs.client();
    let pool = pool();
    let dps: Vec<Dp> = (0..5)
        .map(|i| Dp::ready(cp.local_addr(), &tls, &format!("dp-{i}"), &pool))
        .collect();
    let silent = Dp::connect(cp.local_addr(), &tls, "silent", "3.1.0", &pool).unwrap();
    // shutdown returns having closed every DP itself: each sees 1000, none waits out a
    // deadline of its own (the silent one's ReportMetadata deadline would close it with
    // 1008).
    cp.shutdown();
    for dp in dps.iter().chain([&silent]) {
        match dp.wait_end() {
            Ended::ClosedByPeer { code, .. } => assert_eq!(code, Some(1000)),
            other => panic!("{}: {other:?}", dp.node.node_id),
        }
    }
    assert!(cp.nodes().is_empty());
    let addr = cp.local_addr();
    let again = Dp::connect(addr, &tls, "late", "3.1.0", &pool);
    assert!(again.is_err(), "the listener still accepts");
    cp.shutdown();
    let err = Dp::connect(addr, &tls, "late", "3.1.0", &pool)
        .err()
        .unwrap();
    assert!(!matches!(
        err,
        dpspec::Error::Wrpc(WrpcError::Timeout { .. })
    ));
}
