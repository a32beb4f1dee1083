//! The wRPC echo service over TLS, its load generator, and the raw baseline they are
//! measured against.
//!
//! ```text
//! cargo run --release --example echo -- gen-certs DIR
//! cargo run --release --example echo -- server --listen 127.0.0.1:9443 \
//!     --cert DIR/server.pem --key DIR/server.key
//! cargo run --release --example echo -- bench --url wss://127.0.0.1:9443/v1/wrpc \
//!     --ca DIR/ca.pem -n 20000 -m 200000 -c 32 --size 64 [--baseline]
//! cargo run --release --example echo -- baseline -n 20000 --size 64
//! ```
//!
//! `server` serves service `Echo` (id 1), rpc `Echo` (id 1): request
//! `EchoRPCRequest { string s = 1 }`, response `EchoRPCResponse { string s = 1 }` =
//! `"echo-" + s`, the convention of the reference wRPC echo example, at `/v1/wrpc` and
//! `/echo`. It is a plain wRPC server: no client certificate and no Kong node identity are
//! asked for. It prints `{"event":"listening","addr":...}` once it accepts.
//!
//! `bench` runs N sequential calls, then M calls with C in flight on one connection (C
//! threads calling through one shared peer), checks every reply, and prints one JSON line
//! per phase. With `--baseline` it first measures the raw baseline in the same process.
//!
//! `baseline` is the floor of this stack on this machine: the same round trip with rustls
//! and tungstenite alone (no wRPC, no thread beyond the two ends), client and server in
//! this process over loopback, with throwaway certificates.

#[path = "common/flags.rs"]
mod flags;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpspec::channel::{Channel, ChannelConfig, Role};
use dpspec::http::{client, Listener, NodeIdentity, ServerConfig};
use dpspec::tls::{ClientAuth, ClientTls, Identity, ServerTls, TrustMode};
use dpspec::upgrade::{self, Endpoint, UpgradeHandler, UpgradeTarget, Upgraded, WRPC_PATH};
use dpspec::wrpc::{Peer, PeerConfig, Services, WorkerPool};
use dpspec::wrpc_service;
use serde_json::json;

/// The request of the reference echo example.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRpcRequest {
    /// The text to echo.
    #[prost(string, tag = "1")]
    pub s: String,
}

/// The response of the reference echo example: `"echo-" + s`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EchoRpcResponse {
    /// `"echo-" + s`.
    #[prost(string, tag = "1")]
    pub s: String,
}

wrpc_service! {
    /// The echo service (id 1).
    pub service Echo = 1 {
        /// Answers `"echo-" + s`.
        rpc EchoRpc = 1 (EchoRpcRequest) -> EchoRpcResponse;
    }
}

const USAGE: &str = "usage:
  echo gen-certs DIR
  echo server --listen ADDR --cert PEM --key PEM [--workers N]
  echo bench --url wss://ADDR/PATH --ca PEM [-n N] [-m M] [-c C] [--size BYTES] [--baseline]
  echo baseline [-n N] [--size BYTES]";

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("gen-certs") => match args.get(1) {
            Some(dir) => gen_certs(Path::new(dir)),
            None => Err(USAGE.to_string()),
        },
        Some("server") => Flags::parse(&args[1..]).and_then(|f| server(&f)),
        Some("bench") => Flags::parse(&args[1..]).and_then(|f| bench(&f)),
        Some("baseline") => Flags::parse(&args[1..]).and_then(|f| {
            let line = baseline(f.n, f.size)?;
            println!("{line}");
            Ok(())
        }),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Flags {
    listen: String,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    url: Option<String>,
    n: usize,
    m: usize,
    c: usize,
    size: usize,
    workers: usize,
    baseline: bool,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut f = Flags {
            listen: "127.0.0.1:9443".into(),
            cert: None,
            key: None,
            ca: None,
            url: None,
            n: 10_000,
            m: 100_000,
            c: 32,
            size: 64,
            workers: 2,
            baseline: false,
        };
        for flag in flags::pairs(args, USAGE, &["--baseline"]) {
            let flag = flag?;
            let value = flag.text;
            match flag.name {
                "--baseline" => f.baseline = true,
                "--listen" => f.listen = value.to_string(),
                "--cert" => f.cert = Some(value.into()),
                "--key" => f.key = Some(value.into()),
                "--ca" => f.ca = Some(value.into()),
                "--url" => f.url = Some(value.to_string()),
                "-n" => f.n = flag.num()?,
                "-m" => f.m = flag.num()?,
                "-c" => f.c = flag.num()?.max(1),
                "--size" => f.size = flag.num()?,
                "--workers" => f.workers = flag.num()?.max(1),
                _ => return Err(flag.unknown()),
            }
        }
        Ok(f)
    }
}

// ---------------------------------------------------------------------------------------
// Certificates

/// A CA and a server certificate for `localhost` and `127.0.0.1`, as PEM:
/// (ca cert, server cert, server key).
fn make_certs() -> Result<(String, String, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let e = |e: rcgen::Error| e.to_string();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "dpspec echo CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(e)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(e)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().map_err(e)?;
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    Ok((ca_cert.pem(), cert.pem(), key.serialize_pem()))
}

fn gen_certs(dir: &Path) -> Result<(), String> {
    let (ca, cert, key) = make_certs()?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, text) in [("ca.pem", ca), ("server.pem", cert), ("server.key", key)] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    println!(
        "{}",
        json!({"event": "certs", "dir": dir.display().to_string()})
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Server

fn echo_services() -> Services {
    let services = Services::new();
    services.handle_inline::<EchoRpc, _>(|_, req| {
        let mut s = String::with_capacity(5 + req.s.len());
        s.push_str("echo-");
        s.push_str(&req.s);
        Ok(EchoRpcResponse { s })
    });
    services
}

fn server(f: &Flags) -> Result<(), String> {
    let (Some(cert), Some(key)) = (&f.cert, &f.key) else {
        return Err(format!("--cert and --key are required\n{USAGE}"));
    };
    let identity = Identity::from_pem_files(cert, key).map_err(|e| e.to_string())?;
    let tls = ServerTls::new(identity, ClientAuth::None).map_err(|e| e.to_string())?;
    let pool = Arc::new(WorkerPool::new("echo", f.workers, 65536).map_err(|e| e.to_string())?);
    let handler: Arc<dyn UpgradeHandler> = Arc::new(EchoServer {
        pool,
        services: echo_services(),
    });
    // A plain wRPC server: any wRPC client may call, with no Kong node identity.
    let endpoint = Endpoint::wrpc().identity(false);
    let config = ServerConfig::new("dpspec-echo")
        .route(WRPC_PATH, upgrade::route(endpoint.clone(), handler.clone()))
        .route("/echo", upgrade::route(endpoint, handler));
    let listener = Listener::bind(f.listen.as_str(), tls, config)
        .map_err(|e| format!("{}: {}", f.listen, dpspec::Error::from(e).report()))?;
    println!(
        "{}",
        json!({"event": "listening", "addr": listener.local_addr().to_string()})
    );
    let _ = std::io::stdout().flush();
    // Serve until killed.
    loop {
        std::thread::park();
    }
}

/// Runs each upgraded connection's peer on the connection's own thread.
struct EchoServer {
    pool: Arc<WorkerPool>,
    services: Services,
}

impl UpgradeHandler for EchoServer {
    fn upgraded(&self, up: Upgraded) {
        let cfg = ChannelConfig::default().label(up.peer_addr.to_string());
        match Channel::new(up.session, up.sock, up.leftover, Role::Server, cfg) {
            Ok((channel, reader)) => {
                let peer = Peer::new(
                    channel,
                    self.services.clone(),
                    self.pool.clone(),
                    PeerConfig::default(),
                );
                let ended = peer.serve(reader);
                log::info!("{}: {ended}", up.peer_addr);
            }
            Err(e) => log::warn!("{}: {e}", up.peer_addr),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Load generator

/// The request text of call `i`: its number, then filler up to `size` bytes.
fn payload(i: usize, size: usize) -> String {
    let mut s = format!("{i:010}");
    while s.len() < size {
        s.push('x');
    }
    s.truncate(size.max(10));
    s
}

/// Latency percentiles and rate of one phase, as a JSON line.
fn report(phase: &str, size: usize, inflight: usize, wall: Duration, lat: &mut [u64]) -> String {
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    json!({
        "phase": phase,
        "calls": lat.len(),
        "inflight": inflight,
        "size": size,
        "seconds": (wall.as_secs_f64() * 1e4).round() / 1e4,
        "calls_per_sec": (lat.len() as f64 / wall.as_secs_f64()).round(),
        "p50_us": (pct(0.50) * 10.0).round() / 10.0,
        "p99_us": (pct(0.99) * 10.0).round() / 10.0,
    })
    .to_string()
}

fn parse_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("wss://")
        .ok_or_else(|| format!("{url}: only wss:// URLs are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/v1/wrpc".to_string()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse::<u16>()
                .map_err(|_| format!("{url}: bad port {p:?}"))?,
        ),
        None => (hostport.to_string(), 443),
    };
    Ok((host, port, path))
}

fn bench(f: &Flags) -> Result<(), String> {
    let url = f
        .url
        .as_deref()
        .ok_or(format!("--url is required\n{USAGE}"))?;
    let ca = f.ca.as_ref().ok_or(format!("--ca is required\n{USAGE}"))?;
    let (host, port, path) = parse_url(url)?;
    if f.baseline {
        println!("{}", baseline(f.n, f.size)?);
    }
    let trust = TrustMode::ca_pem_file(ca).map_err(|e| e.to_string())?;
    let tls = ClientTls::new(trust, None).map_err(|e| e.to_string())?;
    let node = NodeIdentity::new(dpspec::random::uuid_v4(), "echo-bench", "3.9.0");
    let opts = client::DialOptions::new(host, port, tls, node);
    let target = UpgradeTarget::new(path, Some(dpspec::upgrade::WRPC_SUBPROTOCOL));
    let dialed = dpspec::upgrade::dial(&opts, &target).map_err(|e| e.to_string())?;
    let (channel, reader) = Channel::new(
        dialed.session,
        dialed.sock,
        dialed.leftover,
        Role::Client,
        ChannelConfig::default().label(url.to_string()),
    )
    .map_err(|e| e.to_string())?;
    let pool = Arc::new(WorkerPool::new("bench", 1, 16).map_err(|e| e.to_string())?);
    let peer = Peer::new(channel, Services::new(), pool, PeerConfig::default());
    peer.spawn(reader).map_err(|e| e.to_string())?;

    let call = |peer: &Peer, i: usize| -> Result<u64, String> {
        let s = payload(i, f.size);
        let t = Instant::now();
        let resp = peer
            .call::<EchoRpc>(&EchoRpcRequest { s: s.clone() })
            .map_err(|e| format!("call {i}: {e}"))?;
        let took = t.elapsed().as_nanos() as u64;
        if resp.s.len() != s.len() + 5 || !resp.s.starts_with("echo-") || resp.s[5..] != s {
            return Err(format!("call {i}: wrong reply {:?}", resp.s));
        }
        Ok(took)
    };

    // Warm up (connection buffers, allocator, caches).
    for i in 0..f.n.min(1000) {
        call(&peer, i)?;
    }
    let mut lat = Vec::with_capacity(f.n);
    let t = Instant::now();
    for i in 0..f.n {
        lat.push(call(&peer, i)?);
    }
    println!("{}", report("sequential", f.size, 1, t.elapsed(), &mut lat));

    if f.m > 0 {
        let c = f.c;
        let t = Instant::now();
        let results: Vec<Result<Vec<u64>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..c)
                .map(|k| {
                    let peer = peer.clone();
                    let call = &call;
                    s.spawn(move || {
                        let share = f.m / c + usize::from(k < f.m % c);
                        let mut lat = Vec::with_capacity(share);
                        for j in 0..share {
                            lat.push(call(&peer, k + j * c)?);
                        }
                        Ok(lat)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a caller panicked".into())))
                .collect()
        });
        let wall = t.elapsed();
        let mut lat = Vec::with_capacity(f.m);
        for r in results {
            lat.extend(r?);
        }
        println!("{}", report("concurrent", f.size, c, wall, &mut lat));
    }
    peer.close(1000, "bench done");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Raw baseline: rustls + tungstenite, one thread per end.

fn baseline(n: usize, size: usize) -> Result<String, String> {
    use tungstenite::Message;
    let (ca, cert, key) = make_certs()?;
    let identity =
        Identity::from_pem(cert.as_bytes(), key.as_bytes()).map_err(|e| e.to_string())?;
    let server_cfg = ServerTls::new(identity, ClientAuth::None)
        .map_err(|e| e.to_string())?
        .config()
        .clone();
    let client_cfg = ClientTls::new(
        TrustMode::ca_pem(ca.as_bytes()).map_err(|e| e.to_string())?,
        None,
    )
    .map_err(|e| e.to_string())?
    .config()
    .clone();
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;

    let server = std::thread::spawn(move || -> Result<(), String> {
        let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        let conn = rustls::ServerConnection::new(server_cfg).map_err(|e| e.to_string())?;
        let stream = rustls::StreamOwned::new(conn, sock);
        let mut ws = tungstenite::accept(stream).map_err(|e| e.to_string())?;
        loop {
            match ws.read() {
                Ok(Message::Binary(b)) => {
                    let mut out = Vec::with_capacity(5 + b.len());
                    out.extend_from_slice(b"echo-");
                    out.extend_from_slice(&b);
                    ws.send(Message::binary(out)).map_err(|e| e.to_string())?;
                }
                Ok(Message::Close(_)) => return Ok(()),
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    });

    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("localhost")
        .map_err(|e| e.to_string())?
        .to_owned();
    let conn = rustls::ClientConnection::new(client_cfg, name).map_err(|e| e.to_string())?;
    let stream = rustls::StreamOwned::new(conn, sock);
    let url = format!("wss://localhost:{}/echo", addr.port());
    let (mut ws, _) = tungstenite::client(url.as_str(), stream).map_err(|e| e.to_string())?;
    let mut round_trip = |i: usize| -> Result<u64, String> {
        let s = payload(i, size);
        let t = Instant::now();
        ws.send(Message::binary(s.clone().into_bytes()))
            .map_err(|e| e.to_string())?;
        let reply = loop {
            match ws.read().map_err(|e| e.to_string())? {
                Message::Binary(b) => break b,
                _ => continue,
            }
        };
        let took = t.elapsed().as_nanos() as u64;
        if reply.len() != s.len() + 5 || &reply[..5] != b"echo-" || &reply[5..] != s.as_bytes() {
            return Err(format!("raw call {i}: wrong reply"));
        }
        Ok(took)
    };
    for i in 0..n.min(1000) {
        round_trip(i)?;
    }
    let mut lat = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        lat.push(round_trip(i)?);
    }
    let wall = t.elapsed();
    let _ = ws.close(None);
    let _ = ws.flush();
    drop(ws);
    let _ = server.join();
    Ok(report("raw-sequential", size, 1, wall, &mut lat))
}
