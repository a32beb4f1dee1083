//! The whole protocol in one process: a control plane and two data planes over real TLS on
//! loopback, in Kong's shared mode, with throwaway certificates made on the spot. One DP
//! speaks wRPC (`/v1/wrpc`, Kong 3.0/3.1), the other Kong's JSON protocol (`/v1/outlet`,
//! every release since), and the CP serves both on one listener.
//!
//! ```text
//! cargo run --example hybrid
//! ```
//!
//! It pushes `examples/kong.json`, shows each step as it happens, checks that both DPs
//! applied the config with the CP's hash and that the CP saw that hash in each one's
//! ping, and exits 0 (1 if anything is missing after 30 s). `RUST_LOG=debug` shows the
//! library's logs too.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::Select;
use dpspec::cp::CpEvent;
use dpspec::dp::{ConfigUpdate, DataPlane, DpEvent, ProtocolChoice, Reconnect};
use dpspec::tls::{ClientAuth, Identity, TrustMode};
use dpspec::ControlPlane;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P384_SHA384};

/// A certificate like `kong hybrid gen_cert` makes: EC P-384, CN kong_clustering, no SAN.
fn kong_cluster_cert() -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "kong_clustering");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    (cert.pem(), key.serialize_pem())
}

fn run() -> Result<(), String> {
    let (cert, key) = kong_cluster_cert();
    let identity =
        || Identity::from_pem(cert.as_bytes(), key.as_bytes()).map_err(|e| e.to_string());
    println!("[setup] made a throwaway kong_clustering certificate (P-384, no SAN)");

    let cp = ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(identity()?)
        .client_auth(ClientAuth::Shared(None))
        .start()
        .map_err(|e| format!("starting the CP: {e}"))?;
    let cp_events = cp.events();
    println!(
        "[cp] listening on {} as node {}",
        cp.local_addr(),
        cp.node_id()
    );

    let json = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/kong.json"))
        .map_err(|e| format!("reading examples/kong.json: {e}"))?;
    let config: serde_json::Value = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    let version = cp
        .set_config(config)
        .map_err(|e| format!("set_config: {e}"))?;
    let (_, hashes) = cp
        .config_version()
        .ok_or("the CP has no config after set_config")?;
    let hash = hashes.config.clone();
    println!("[cp] config version {version} ready, hash {hash}");

    let start_dp = |name: &'static str, protocol: ProtocolChoice| {
        DataPlane::builder(cp.local_addr().to_string())
            .trust(TrustMode::pinned_pem(cert.as_bytes()).map_err(|e| e.to_string())?)
            .identity(identity()?)
            .hostname(format!("hybrid-demo-{name}"))
            .protocol(protocol)
            .plugins([("rate-limiting", "3.1.1"), ("cors", "3.1.1")])
            .reconnect(Reconnect::Fixed(Duration::from_millis(200)))
            .config_handler(move |u: &ConfigUpdate<'_>| {
                let count =
                    |k: &str| u.config.get(k).and_then(|v| v.as_array()).map_or(0, Vec::len);
                println!(
                    "[dp {name}] applying config {}: {} services, {} routes, {} plugins, {} upstreams, {} targets",
                    u.version.map_or("(JSON has no version)".to_string(), |v| format!("version {v}")),
                    count("services"),
                    count("routes"),
                    count("plugins"),
                    count("upstreams"),
                    count("targets")
                );
                Ok(())
            })
            .start()
            .map_err(|e| format!("starting the {name} DP: {e}"))
    };
    let dps = [
        ("wrpc", start_dp("wrpc", ProtocolChoice::Wrpc)?),
        ("json", start_dp("json", ProtocolChoice::Json)?),
    ];
    for (name, dp) in &dps {
        println!("[dp {name}] started as node {}", dp.node_id());
    }

    let dp_events: Vec<_> = dps.iter().map(|(_, dp)| dp.events()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Per DP: applied the CP's hash; the CP saw that hash in its ping.
    let mut done = [(false, false); 2];
    while !done.iter().all(|&(applied, seen)| applied && seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut sel = Select::new();
        for events in &dp_events {
            sel.recv(events);
        }
        let cp_index = sel.recv(&cp_events);
        let op = sel
            .select_timeout(left)
            .map_err(|_| "timed out after 30 s")?;
        let index = op.index();
        if index == cp_index {
            let event = op.recv(&cp_events).map_err(|_| "the CP stopped")?;
            if let CpEvent::Ping {
                node_id, hash: h, ..
            } = &event
            {
                if let Some(k) = dps.iter().position(|(_, dp)| dp.node_id() == node_id) {
                    done[k].1 |= *h == hash;
                }
            }
            print_cp_event(&event, &dps);
            continue;
        }
        let (name, _) = &dps[index];
        match op.recv(&dp_events[index]).map_err(|_| "a DP stopped")? {
            DpEvent::Connected { protocol, .. } => {
                println!("[dp {name}] connected, speaking {protocol}")
            }
            DpEvent::Negotiated { services } => println!("[dp {name}] negotiated {services:?}"),
            DpEvent::ConfigApplied { hash: h, .. } => {
                println!("[dp {name}] config applied, hash {h}");
                if h != hash {
                    return Err(format!(
                        "the {name} DP applied hash {h}, the CP sent {hash}"
                    ));
                }
                done[index].0 = true;
            }
            DpEvent::ConfigRejected { errors, .. } => {
                return Err(format!("the {name} DP rejected the config: {errors:?}"))
            }
            DpEvent::Pinged { hash } => println!("[dp {name}] pinged with hash {hash}"),
            DpEvent::Disconnected { reason } => println!("[dp {name}] disconnected: {reason}"),
            other => println!("[dp {name}] {other:?}"),
        }
    }
    for node in cp.nodes() {
        println!(
            "[cp] registry: {} ({}) version {}, {}, status {}",
            node.node_id,
            node.hostname,
            node.version,
            node.protocol,
            node.sync_status.as_str()
        );
    }
    for (_, dp) in &dps {
        dp.shutdown();
    }
    cp.shutdown();
    println!("[done] both DPs run config {hash}, and the CP saw it in each one's ping");
    Ok(())
}

/// One line per CP event, naming the DP by its protocol.
fn print_cp_event(event: &CpEvent, dps: &[(&str, DataPlane); 2]) {
    let who = |node_id: &str| {
        dps.iter()
            .find(|(_, dp)| dp.node_id() == node_id)
            .map_or("?", |(name, _)| *name)
    };
    match event {
        CpEvent::DpConnected { node_id, addr, .. } => {
            println!("[cp] DP {} ({node_id}) connected from {addr}", who(node_id))
        }
        CpEvent::Negotiated {
            node_id, outcome, ..
        } => println!("[cp] {} negotiation: {outcome:?}", who(node_id)),
        CpEvent::Metadata {
            node_id, plugins, ..
        } => {
            let names: Vec<_> = plugins
                .iter()
                .map(|p| format!("{} {}", p.name, p.version))
                .collect();
            println!(
                "[cp] {} reported plugins: {}",
                who(node_id),
                names.join(", ")
            );
        }
        CpEvent::ConfigPushed {
            node_id, version, ..
        } => println!("[cp] config version {version} sent to {}", who(node_id)),
        CpEvent::ConfigAcked {
            node_id, version, ..
        } => println!("[cp] config version {version} accepted by {}", who(node_id)),
        CpEvent::Ping { node_id, hash, .. } => {
            println!("[cp] ping from {} with hash {hash}", who(node_id))
        }
        other => println!("[cp] {other:?}"),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[failed] {e}");
            ExitCode::FAILURE
        }
    }
}
