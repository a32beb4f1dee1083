//! A data plane: connects to a CP (Kong's JSON protocol at `/v1/outlet` or wRPC, probed by
//! default), reports, pings, applies every config it is pushed (here: only counts the
//! entities), and prints one JSON object per event on stdout, each with the `protocol`
//! of the connection (`json`, `wrpc`, or null before any); logs go to stderr.
//!
//! ```text
//! cargo run --example dp -- --cp 127.0.0.1:8005 \
//!     --shared-cert cluster.crt --cert cluster.crt --key cluster.key --cache /tmp/dp-cache
//! ```
//!
//! Flags: `--cp HOST:PORT` (required), `--server-name NAME` (default `kong_clustering`
//! with `--shared-cert`, else the CP host), `--ca PEM` (trust a CA bundle) or
//! `--shared-cert PEM` (Kong's shared mode: pin this certificate), `--cert PEM --key PEM`
//! (client certificate), `--node-id UUID`, `--hostname NAME`, `--version X.Y.Z` (default
//! 3.1.1), `--proxy http://[user:pass@]host:port`, `--cache DIR`, `--protocol
//! auto|wrpc|json` (default auto: Kong 3.0's `HEAD /v1/wrpc` probe), `--ping-interval
//! SECONDS` (default 30), `--exit-after-config` (exit 0 once a config from the CP is
//! applied). `RUST_LOG=debug` for more logs.

use std::io::Write;
use std::process::ExitCode;

use std::time::Duration;

use dpspec::dp::{ConfigUpdate, DataPlane, DpEvent, ProtocolChoice};
use dpspec::proxy::ProxyUrl;
use dpspec::tls::{Identity, TrustMode};
use serde_json::{json, Value};

const USAGE: &str =
    "usage: dp --cp HOST:PORT [--ca PEM | --shared-cert PEM] [--cert PEM --key PEM] \
                     [--server-name NAME] [--node-id UUID] [--hostname NAME] [--version X.Y.Z] \
                     [--proxy URL] [--cache DIR] [--protocol auto|wrpc|json] \
                     [--ping-interval SECONDS] [--exit-after-config]";

#[derive(Default)]
struct Args {
    cp: Option<String>,
    server_name: Option<String>,
    ca: Option<String>,
    shared_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    node_id: Option<String>,
    hostname: Option<String>,
    version: Option<String>,
    proxy: Option<String>,
    cache: Option<String>,
    protocol: Option<String>,
    ping_interval: Option<String>,
    exit_after_config: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--exit-after-config" => {
                args.exit_after_config = true;
                continue;
            }
            _ => {}
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let slot = match flag.as_str() {
            "--cp" => &mut args.cp,
            "--server-name" => &mut args.server_name,
            "--ca" => &mut args.ca,
            "--shared-cert" => &mut args.shared_cert,
            "--cert" => &mut args.cert,
            "--key" => &mut args.key,
            "--node-id" => &mut args.node_id,
            "--hostname" => &mut args.hostname,
            "--version" => &mut args.version,
            "--proxy" => &mut args.proxy,
            "--cache" => &mut args.cache,
            "--protocol" => &mut args.protocol,
            "--ping-interval" => &mut args.ping_interval,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        };
        *slot = Some(value);
    }
    Ok(args)
}

fn start(args: &Args) -> Result<DataPlane, String> {
    let cp = args
        .cp
        .clone()
        .ok_or_else(|| format!("--cp is required\n{USAGE}"))?;
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
    let mut b = DataPlane::builder(cp).config_handler(|u: &ConfigUpdate<'_>| {
        let count = |k: &str| {
            u.config
                .get(k)
                .and_then(Value::as_array)
                .map_or(0, Vec::len)
        };
        log::info!(
            "applying config {} ({} services, {} routes, {} plugins)",
            u.hash,
            count("services"),
            count("routes"),
            count("plugins")
        );
        Ok(())
    });
    b = match (&args.ca, &args.shared_cert) {
        (Some(_), Some(_)) => return Err("give --ca or --shared-cert, not both".into()),
        (Some(ca), None) => b.trust(TrustMode::ca_pem(&read(ca)?).map_err(|e| e.to_string())?),
        (None, Some(c)) => b.trust(TrustMode::pinned_pem(&read(c)?).map_err(|e| e.to_string())?),
        (None, None) => b,
    };
    match (&args.cert, &args.key) {
        (Some(c), Some(k)) => {
            let id = Identity::from_pem_files(c, k).map_err(|e| e.to_string())?;
            b = b.identity(id);
        }
        (None, None) => {}
        _ => return Err("--cert and --key go together".into()),
    }
    if let Some(p) = &args.proxy {
        b = b.proxy(ProxyUrl::parse(p).map_err(|e| e.to_string())?);
    }
    if let Some(v) = &args.server_name {
        b = b.server_name(v);
    }
    if let Some(v) = &args.node_id {
        b = b.node_id(v);
    }
    if let Some(v) = &args.hostname {
        b = b.hostname(v);
    }
    if let Some(v) = &args.version {
        b = b.version(v);
    }
    if let Some(v) = &args.cache {
        b = b.cache_dir(v);
    }
    if let Some(v) = &args.protocol {
        b = b.protocol(v.parse::<ProtocolChoice>().map_err(|e| e.to_string())?);
    }
    if let Some(v) = &args.ping_interval {
        let secs: f64 = v
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s > 0.0)
            .ok_or_else(|| format!("--ping-interval {v:?}: expected seconds above 0"))?;
        b = b.ping_interval(Duration::from_secs_f64(secs));
    }
    b.start().map_err(|e| e.report().to_string())
}

/// One event as a JSON line; `protocol` is that of the connection it happened on.
fn to_json(event: &DpEvent, protocol: Option<&str>) -> Value {
    let mut line = event_json(event);
    if let Some(obj) = line.as_object_mut() {
        obj.insert("protocol".into(), json!(protocol));
    }
    line
}

fn event_json(event: &DpEvent) -> Value {
    match event {
        DpEvent::Connected { cp_node_id, .. } => {
            json!({"event": "connected", "cp_node_id": cp_node_id})
        }
        DpEvent::Negotiated { services } => json!({"event": "negotiated", "services": services}),
        DpEvent::ConfigApplied {
            version,
            hash,
            from_cache,
        } => {
            let mut line =
                json!({"event": "config_applied", "hash": hash, "from_cache": from_cache});
            // Only wRPC numbers its configs.
            if let (Some(v), Some(obj)) = (version, line.as_object_mut()) {
                obj.insert("version".into(), json!(v));
            }
            line
        }
        DpEvent::ConfigRejected { version, errors } => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| json!({"id": e.id, "entity": e.entity, "type": e.err_type}))
                .collect();
            let mut line = json!({"event": "config_rejected", "errors": errors});
            if let (Some(v), Some(obj)) = (version, line.as_object_mut()) {
                obj.insert("version".into(), json!(v));
            }
            line
        }
        DpEvent::Pinged { hash } => json!({"event": "ping", "hash": hash}),
        DpEvent::Disconnected { reason } => json!({"event": "disconnected", "reason": reason}),
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
    let dp = match start(&args) {
        Ok(dp) => dp,
        Err(e) => {
            eprintln!("dp: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    println!(
        "{}",
        json!({"event": "started", "node_id": dp.node_id(), "protocol": null})
    );
    let mut protocol: Option<&'static str> = None;
    for event in dp.events().iter() {
        if let DpEvent::Connected { protocol: p, .. } = &event {
            protocol = Some(p.as_str());
        }
        let _ = writeln!(out, "{}", to_json(&event, protocol));
        let _ = out.flush();
        if args.exit_after_config
            && matches!(
                event,
                DpEvent::ConfigApplied {
                    from_cache: false,
                    ..
                }
            )
        {
            break;
        }
    }
    dp.shutdown();
    ExitCode::SUCCESS
}
