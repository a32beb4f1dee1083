//! The whole protocol in one process: a control plane and a data plane over real TLS on
//! loopback, in Kong's shared mode, with throwaway certificates made on the spot.
//!
//! ```text
//! cargo run --example hybrid
//! ```
//!
//! It pushes `examples/kong.json`, shows each step as it happens, checks that the DP
//! applied the config with the CP's hash and that the CP saw that hash in a PingCP, and
//! exits 0 (1 if anything is missing after 30 s). `RUST_LOG=debug` shows the library's
//! logs too.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossbeam_channel::select;
use dpspec::cp::CpEvent;
use dpspec::dp::{ConfigUpdate, DataPlane, DpEvent, Reconnect};
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

    let dp = DataPlane::builder(cp.local_addr().to_string())
        .trust(TrustMode::pinned_pem(cert.as_bytes()).map_err(|e| e.to_string())?)
        .client_identity(identity()?)
        .hostname("hybrid-demo-dp")
        .plugins([("rate-limiting", "3.1.1"), ("cors", "3.1.1")])
        .reconnect(Reconnect::Fixed(Duration::from_millis(200)))
        .config_handler(|u: &ConfigUpdate<'_>| {
            let count = |k: &str| u.config.get(k).and_then(|v| v.as_array()).map_or(0, Vec::len);
            println!(
                "[dp] applying config version {}: {} services, {} routes, {} plugins, {} upstreams, {} targets",
                u.version.map_or("-".to_string(), |v| v.to_string()),
                count("services"),
                count("routes"),
                count("plugins"),
                count("upstreams"),
                count("targets")
            );
            Ok(())
        })
        .start()
        .map_err(|e| format!("starting the DP: {e}"))?;
    println!(
        "[dp] started as node {}, connecting to {}",
        dp.node_id(),
        cp.local_addr()
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut dp_applied, mut cp_saw_hash) = (false, false);
    while !(dp_applied && cp_saw_hash) {
        let left = deadline.saturating_duration_since(Instant::now());
        select! {
            recv(dp.events()) -> e => match e.map_err(|_| "the DP stopped")? {
                DpEvent::Connected { cp_node_id, .. } => println!("[dp] connected (CP node {})", cp_node_id.unwrap_or_default()),
                DpEvent::Negotiated { services } => println!("[dp] negotiated {services:?}"),
                DpEvent::ConfigApplied { version, hash: h, .. } => {
                    println!("[dp] config version {} applied, hash {h}", version.map_or("-".to_string(), |v| v.to_string()));
                    if h != hash {
                        return Err(format!("the DP applied hash {h}, the CP sent {hash}"));
                    }
                    dp_applied = true;
                }
                DpEvent::ConfigRejected { errors, .. } => return Err(format!("the DP rejected the config: {errors:?}")),
                DpEvent::Pinged { hash } => println!("[dp] PingCP answered (hash {hash})"),
                DpEvent::Disconnected { reason } => println!("[dp] disconnected: {reason}"),
                other => println!("[dp] {other:?}"),
            },
            recv(cp_events) -> e => match e.map_err(|_| "the CP stopped")? {
                CpEvent::DpConnected { node_id, addr, .. } => println!("[cp] DP {node_id} connected from {addr}"),
                CpEvent::Negotiated { outcome, .. } => println!("[cp] negotiation: {outcome:?}"),
                CpEvent::Metadata { plugins, .. } => {
                    let names: Vec<_> = plugins.iter().map(|p| format!("{} {}", p.name, p.version)).collect();
                    println!("[cp] ReportMetadata: {}", names.join(", "));
                }
                CpEvent::ConfigPushed { version, .. } => println!("[cp] SyncConfig version {version} sent"),
                CpEvent::ConfigAcked { version, .. } => println!("[cp] SyncConfig version {version} accepted"),
                CpEvent::Ping { hash: h, .. } => {
                    println!("[cp] PingCP with hash {h}");
                    cp_saw_hash |= h == hash;
                }
                other => println!("[cp] {other:?}"),
            },
            default(left) => return Err("timed out after 30 s".into()),
        }
    }
    let node = cp
        .nodes()
        .into_iter()
        .find(|n| n.node_id == dp.node_id())
        .ok_or("the CP lost the DP")?;
    println!(
        "[cp] registry: {} ({}) version {}, status {}",
        node.node_id,
        node.hostname,
        node.version,
        node.sync_status.as_str()
    );
    dp.shutdown();
    cp.shutdown();
    println!("[done] the DP runs config {hash} and the CP saw it in PingCP");
    Ok(())
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
