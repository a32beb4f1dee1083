//! A control plane: listens for data planes of both protocols (wRPC at `/v1/wrpc`, Kong's
//! JSON protocol at `/v1/outlet`), pushes a declarative config to them, and prints one
//! JSON object per event on stdout (logs go to stderr); every line about a connection
//! carries the `protocol` its data plane speaks.
//!
//! ```text
//! cargo run --example cp -- --listen 127.0.0.1:8005 \
//!     --cert cluster.crt --key cluster.key --config kong.json
//! ```
//!
//! Flags: `--listen ADDR` (default `0.0.0.0:8005`), `--cert PEM --key PEM` (required),
//! `--mtls shared|pki|none` (default `shared`, Kong's), `--client-ca PEM` (with `pki`),
//! `--config FILE.json` (pushed at start and again whenever the file changes),
//! `--node-id ID`, `--kong-version X.Y.Z` (default 3.9.3), `--protocols wrpc,json` (the
//! default: both). `RUST_LOG=debug` for more logs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dpspec::cp::CpEvent;
use dpspec::tls::{ClientAuth, Identity};
use dpspec::ControlPlane;
use serde_json::{json, Value};

struct Args {
    listen: String,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    mtls: String,
    client_ca: Option<PathBuf>,
    config: Option<PathBuf>,
    node_id: Option<String>,
    kong_version: Option<String>,
    protocols: String,
}

const USAGE: &str = "usage: cp --cert PEM --key PEM [--listen ADDR] [--mtls shared|pki|none] \
                     [--client-ca PEM] [--config FILE.json] [--node-id ID] [--kong-version X.Y.Z] \
                     [--protocols wrpc,json]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "0.0.0.0:8005".into(),
        cert: None,
        key: None,
        mtls: "shared".into(),
        client_ca: None,
        config: None,
        node_id: None,
        kong_version: None,
        protocols: "wrpc,json".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--listen" => args.listen = value,
            "--cert" => args.cert = Some(value.into()),
            "--key" => args.key = Some(value.into()),
            "--mtls" => args.mtls = value,
            "--client-ca" => args.client_ca = Some(value.into()),
            "--config" => args.config = Some(value.into()),
            "--node-id" => args.node_id = Some(value),
            "--kong-version" => args.kong_version = Some(value),
            "--protocols" => args.protocols = value,
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn start(args: &Args) -> Result<ControlPlane, String> {
    let (Some(cert), Some(key)) = (&args.cert, &args.key) else {
        return Err(format!("--cert and --key are required\n{USAGE}"));
    };
    let identity = Identity::from_pem_files(cert, key).map_err(|e| e.to_string())?;
    let auth = match (args.mtls.as_str(), &args.client_ca) {
        ("shared", _) => ClientAuth::Shared(None),
        ("pki", Some(ca)) => ClientAuth::pki_pem_file(ca).map_err(|e| e.to_string())?,
        ("pki", None) => return Err("--mtls pki needs --client-ca".into()),
        ("none", _) => ClientAuth::None,
        (other, _) => return Err(format!("--mtls {other}: use shared, pki or none")),
    };
    let protocols: Vec<&str> = args.protocols.split(',').map(str::trim).collect();
    if let Some(bad) = protocols.iter().find(|p| !["wrpc", "json"].contains(p)) {
        return Err(format!(
            "--protocols: unknown protocol {bad:?}: use wrpc, json or both"
        ));
    }
    let mut b = ControlPlane::builder()
        .listen(args.listen.clone())
        .identity(identity)
        .client_auth(auth)
        .wrpc(protocols.contains(&"wrpc"))
        .json(protocols.contains(&"json"));
    if let Some(id) = &args.node_id {
        b = b.node_id(id.clone());
    }
    if let Some(v) = &args.kong_version {
        b = b.kong_version(v.clone());
    }
    b.start().map_err(|e| e.report().to_string())
}

/// Reads and pushes the config file; logs what went wrong instead of stopping.
fn push_file(cp: &ControlPlane, path: &PathBuf) {
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()));
    match parsed.map(|v| cp.set_config(v).map_err(|e| e.report().to_string())) {
        Ok(Ok(version)) => log::info!("{} pushed as version {version}", path.display()),
        Ok(Err(e)) | Err(e) => log::error!("{}: {e}", path.display()),
    }
}

/// Pushes the file again whenever its modification time changes (checked every second).
fn watch(cp: Arc<ControlPlane>, path: PathBuf) {
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last: Option<SystemTime> = mtime(&path);
    push_file(&cp, &path);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = mtime(&path);
        if now.is_some() && now != last {
            last = now;
            push_file(&cp, &path);
        }
    }
}

fn to_json(event: &CpEvent) -> Value {
    match event {
        CpEvent::Listening { addr } => json!({"event": "listening", "addr": addr.to_string()}),
        CpEvent::DpConnected {
            conn,
            node_id,
            addr,
            protocol,
        } => json!({"event": "dp_connected", "conn": conn, "node_id": node_id,
                    "addr": addr.to_string(), "protocol": protocol.as_str()}),
        CpEvent::Incompatible {
            conn,
            node_id,
            status,
            reason,
        } => json!({"event": "incompatible", "conn": conn, "node_id": node_id,
                    "status": status.as_str(), "reason": reason}),
        CpEvent::Negotiated {
            conn,
            node_id,
            outcome,
        } => match outcome {
            Ok(services) => json!({"event": "negotiated", "conn": conn, "node_id": node_id,
                                   "services": services}),
            Err(e) => json!({"event": "negotiated", "conn": conn, "node_id": node_id,
                             "error": e}),
        },
        CpEvent::Metadata {
            conn,
            node_id,
            plugins,
        } => {
            let plugins: Vec<Value> = plugins
                .iter()
                .map(|p| json!({"name": p.name, "version": p.version}))
                .collect();
            json!({"event": "metadata", "conn": conn, "node_id": node_id, "plugins": plugins})
        }
        CpEvent::ConfigPushed {
            conn,
            node_id,
            version,
            hash,
        } => json!({"event": "config_pushed", "conn": conn, "node_id": node_id,
                    "version": version, "hash": hash}),
        CpEvent::ConfigSkipped {
            conn,
            node_id,
            version,
            status,
            reason,
        } => json!({"event": "config_skipped", "conn": conn, "node_id": node_id,
                    "version": version, "status": status.as_str(), "reason": reason}),
        CpEvent::ConfigAcked {
            conn,
            node_id,
            version,
        } => json!({"event": "config_acked", "conn": conn, "node_id": node_id,
                    "version": version}),
        CpEvent::ConfigRejected {
            conn,
            node_id,
            version,
            errors,
            reason,
        } => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| json!({"id": e.id, "entity": e.entity, "type": e.err_type}))
                .collect();
            json!({"event": "config_rejected", "conn": conn, "node_id": node_id,
                   "version": version, "reason": reason, "errors": errors})
        }
        CpEvent::Ping {
            conn,
            node_id,
            hash,
        } => json!({"event": "ping", "conn": conn, "node_id": node_id, "hash": hash}),
        CpEvent::DpDisconnected {
            conn,
            node_id,
            reason,
        } => json!({"event": "dp_disconnected", "conn": conn, "node_id": node_id,
                    "reason": reason}),
        other => json!({"event": "other", "debug": format!("{other:?}")}),
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let cp = match start(&args) {
        Ok(cp) => Arc::new(cp),
        Err(e) => {
            eprintln!("cannot start the control plane: {e}");
            return ExitCode::FAILURE;
        }
    };
    let events = cp.events();
    if let Some(path) = args.config.clone() {
        let cp = cp.clone();
        let spawned = std::thread::Builder::new()
            .name("cp-example-watch".into())
            .spawn(move || watch(cp, path));
        if let Err(e) = spawned {
            eprintln!("cannot start the config watcher: {e}");
            return ExitCode::FAILURE;
        }
    }
    let stdout = std::io::stdout();
    // Every event line of a connection names its protocol, learned when it connected.
    let mut protocols = std::collections::HashMap::new();
    for event in events {
        let mut line = to_json(&event);
        if let CpEvent::DpConnected { conn, protocol, .. } = &event {
            protocols.insert(*conn, protocol.as_str());
        }
        let conn = line["conn"].as_u64();
        if let (Some(protocol), Some(obj)) =
            (conn.and_then(|c| protocols.get(&c)), line.as_object_mut())
        {
            obj.insert("protocol".into(), json!(protocol));
        }
        if let CpEvent::DpDisconnected { conn, .. } = &event {
            protocols.remove(conn);
        }
        let mut out = stdout.lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}
