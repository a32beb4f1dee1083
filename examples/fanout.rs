//! Fan-out benchmark: one control plane (this process, the real [`ControlPlane`]) and N
//! data planes in a second process (this program again, in `dps` mode), all on loopback.
//!
//! ```text
//! cargo run --release --example fanout -- run -n 1000 --size 1048576 --runs 5
//! ```
//!
//! `run` starts the CP, starts the DP process, waits until every DP has negotiated and
//! reported its metadata, then measures:
//! - the CP's RSS per connected idle DP (the `VmRSS` delta of `/proc/self/status` from
//!   before the DPs connected to after, divided by N) and its thread count (`Threads`);
//! - `--runs` times: the time from `set_config` (hashing and gzip included) until every DP
//!   has acked that version. The config is a Kong-style declarative config grown until its
//!   gzip is `--size` bytes (what goes on the wire to every DP).
//!
//! One JSON line per measurement on stdout. The DPs are lean: the library's dialer,
//! channel and peer (one reader thread each, one shared worker pool), answering
//! NegotiateServices' and ReportMetadata's protocol and acking each SyncConfig after
//! checking its version, hash and gzip framing; every 1000th DP inflates the config and
//! checks Kong's hash of it.
//!
//! Raise the open-file limit first (each connection holds several descriptors on each
//! side): `bench/fanout.sh` does.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dpspec::channel::{Channel, ChannelConfig, Role};
use dpspec::cp::CpEvent;
use dpspec::http::client::{dial, DialOptions};
use dpspec::services::config::{ReportMetadataRequest, SyncConfigResponse};
use dpspec::services::negotiation::{check_response, dp_request};
use dpspec::services::{NegotiateServices, ReportMetadata, SyncConfig};
use dpspec::tls::{ClientTls, Identity, TrustMode};
use dpspec::upgrade::NodeIdentity;
use dpspec::wrpc::{HandlerError, Peer, PeerConfig, Services, WorkerPool};
use dpspec::ControlPlane;
use serde_json::{json, Value};

const USAGE: &str = "usage:
  fanout run [-n DPS] [--size GZIPPED_BYTES] [--runs R] [--connectors K]
  fanout dps --addr ADDR --cert PEM --key PEM -n DPS [--connectors K]";

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error"))
        .target(env_logger::Target::Stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Flags::parse(&args[1..]).and_then(|f| run(&f)),
        Some("dps") => Flags::parse(&args[1..]).and_then(|f| dps(&f)),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fanout: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Flags {
    n: usize,
    size: usize,
    runs: usize,
    connectors: usize,
    addr: String,
    cert: String,
    key: String,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut f = Flags {
            n: 100,
            size: 1024 * 1024,
            runs: 5,
            connectors: 4,
            addr: String::new(),
            cert: String::new(),
            key: String::new(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let num = || {
                value
                    .parse::<usize>()
                    .map_err(|_| format!("{flag}: {value:?} is not a number"))
            };
            match flag.as_str() {
                "-n" => f.n = num()?,
                "--size" => f.size = num()?,
                "--runs" => f.runs = num()?,
                "--connectors" => f.connectors = num()?.max(1),
                "--addr" => f.addr = value.clone(),
                "--cert" => f.cert = value.clone(),
                "--key" => f.key = value.clone(),
                other => return Err(format!("unknown flag {other}\n{USAGE}")),
            }
        }
        Ok(f)
    }
}

/// `VmRSS` in KiB and `Threads` of this process, from `/proc/self/status`.
fn proc_status() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

/// A self-signed `kong_clustering` certificate (Kong's shared mode), as PEM.
fn shared_cert() -> Result<(String, String), String> {
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kong_clustering");
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Pseudo-random hex (xorshift): compresses about 2:1, like real configs' ids and keys.
struct Hex(u64);

impl Hex {
    fn next(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            s.push_str(&format!("{:016x}", self.0));
        }
        s.truncate(len);
        s
    }
}

/// A declarative config of `services` services with a route each, tagged with `run`.
fn config(services: usize, run: usize) -> Value {
    let mut hex = Hex(0x9e37_79b9_7f4a_7c15 ^ run as u64);
    let svcs: Vec<Value> = (0..services)
        .map(|i| {
            json!({
                "id": hex.next(32), "name": format!("svc-{i}"), "host": format!("{}.internal", hex.next(12)),
                "port": 8000 + (i % 1000), "protocol": "http", "tags": [hex.next(24), format!("run-{run}")],
            })
        })
        .collect();
    let routes: Vec<Value> = (0..services)
        .map(|i| {
            json!({
                "id": hex.next(32), "name": format!("route-{i}"), "paths": [format!("/{}", hex.next(16))],
                "service": {"name": format!("svc-{i}")},
            })
        })
        .collect();
    json!({"_format_version": "3.0", "_transform": false, "services": svcs, "routes": routes})
}

/// How many services make a config whose gzip is at least `size` bytes.
fn services_for(size: usize) -> usize {
    let probe = 200;
    let gz = dpspec::config::gzip(&serde_json::to_vec(&config(probe, 0)).unwrap_or_default());
    let per = (gz.len() / probe).max(1);
    (size * 103 / 100 / per + 1).max(1)
}

fn run(f: &Flags) -> Result<(), String> {
    let (cert, key) = shared_cert()?;
    let dir = std::env::temp_dir().join(format!("dpspec-fanout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (cert_path, key_path) = (dir.join("cluster.crt"), dir.join("cluster.key"));
    std::fs::write(&cert_path, &cert).map_err(|e| e.to_string())?;
    std::fs::write(&key_path, &key).map_err(|e| e.to_string())?;

    let services = services_for(f.size);
    let configs: Vec<Value> = (0..f.runs).map(|r| config(services, r + 1)).collect();

    let identity =
        Identity::from_pem(cert.as_bytes(), key.as_bytes()).map_err(|e| e.to_string())?;
    let (rss0, threads0) = proc_status();
    let cp = ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(identity)
        .event_capacity(4 * f.n + 4096)
        .metadata_deadline(Duration::from_secs(60))
        .max_message_size(16 * 1024 * 1024)
        .start()
        .map_err(|e| e.to_string())?;
    let events = cp.events();
    std::thread::sleep(Duration::from_millis(200));
    let (rss_cp, threads_cp) = proc_status();
    println!(
        "{}",
        json!({"event": "cp-started", "rss_kib": rss_cp, "threads": threads_cp,
               "rss_kib_before_cp": rss0, "threads_before_cp": threads0})
    );

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let t_connect = Instant::now();
    let mut child = Command::new(exe)
        .args(["dps", "--addr", &cp.local_addr().to_string()])
        .args(["--cert", &cert_path.display().to_string()])
        .args(["--key", &key_path.display().to_string()])
        .args([
            "-n",
            &f.n.to_string(),
            "--connectors",
            &f.connectors.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the DP process: {e}"))?;
    let child_out = child.stdout.take().ok_or("no child stdout")?;
    let (line_tx, lines) = crossbeam_channel::unbounded::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(child_out).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });

    // Wait until every DP has reported its metadata (or the DP process gives up).
    let mut reported = 0;
    let patience = Duration::from_secs(300);
    while reported < f.n {
        if let Ok(line) = lines.try_recv() {
            println!("{line}");
            if line.contains("\"dps-ready\"") {
                let failed = serde_json::from_str::<Value>(&line)
                    .ok()
                    .and_then(|v| v["failed"].as_u64())
                    .unwrap_or(0);
                if failed > 0 {
                    return Err(format!("{failed} DPs could not connect; see above"));
                }
            }
        }
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(CpEvent::Metadata { .. }) => reported += 1,
            Ok(CpEvent::DpDisconnected { reason, .. }) => {
                return Err(format!("a DP disconnected while connecting: {reason}"))
            }
            _ => {}
        }
        if t_connect.elapsed() > patience {
            return Err(format!(
                "only {reported} of {} DPs connected in {patience:?}",
                f.n
            ));
        }
    }
    let connect_secs = t_connect.elapsed().as_secs_f64();
    // Let connection setup garbage settle before measuring the idle footprint.
    std::thread::sleep(Duration::from_secs(2));
    let (rss_idle, threads_idle) = proc_status();
    let per_dp = (rss_idle.saturating_sub(rss_cp) as f64 * 1024.0 / f.n.max(1) as f64).round();
    println!(
        "{}",
        json!({"event": "idle", "dps": f.n, "connect_seconds": (connect_secs * 100.0).round() / 100.0,
               "cp_rss_kib": rss_idle, "cp_threads": threads_idle,
               "cp_rss_bytes_per_dp": per_dp, "cp_threads_per_dp": (threads_idle - threads_cp) as f64 / f.n.max(1) as f64})
    );

    let mut times = Vec::new();
    for (r, cfg) in configs.into_iter().enumerate() {
        let t = Instant::now();
        let version = cp.set_config(cfg).map_err(|e| e.to_string())?;
        let stored = t.elapsed();
        cp.config_version().ok_or("no config after set_config")?;
        let mut acked = 0;
        while acked < f.n {
            match events.recv_timeout(Duration::from_secs(120)) {
                Ok(CpEvent::ConfigAcked { version: v, .. }) if v == version => acked += 1,
                Ok(CpEvent::ConfigRejected {
                    version: v, reason, ..
                }) if v == version => return Err(format!("a DP refused version {v}: {reason}")),
                Ok(CpEvent::DpDisconnected { reason, .. }) => {
                    return Err(format!("a DP disconnected during the push: {reason}"))
                }
                Ok(_) => {}
                Err(_) => return Err(format!("only {acked} of {} acks in 120 s", f.n)),
            }
        }
        let all = t.elapsed();
        times.push(all.as_secs_f64());
        let (rss, threads) = proc_status();
        println!(
            "{}",
            json!({"event": "pushed", "run": r + 1, "version": version, "dps": f.n,
                   "gzipped_bytes": f.size, "services": services,
                   "set_config_seconds": (stored.as_secs_f64() * 1e4).round() / 1e4,
                   "all_acked_seconds": (all.as_secs_f64() * 1e4).round() / 1e4,
                   "cp_rss_kib": rss, "cp_threads": threads})
        );
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    let gz_len = {
        let json = serde_json::to_vec(&config(services, 1)).unwrap_or_default();
        (json.len(), dpspec::config::gzip(&json).len())
    };
    let (rss_end, threads_end) = proc_status();
    println!(
        "{}",
        json!({"event": "summary", "dps": f.n, "runs": times.len(),
               "json_bytes": gz_len.0, "gzipped_bytes": gz_len.1,
               "median_all_acked_seconds": (median * 1e4).round() / 1e4,
               "cp_rss_bytes_per_idle_dp": per_dp, "cp_threads_idle": threads_idle,
               "cp_rss_kib_after_pushes": rss_end, "cp_threads_after_pushes": threads_end})
    );
    drop(child.stdin.take());
    let t = Instant::now();
    cp.shutdown();
    let _ = child.wait();
    eprintln!("fanout: shut down in {:.2} s", t.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The DP process

fn dps(f: &Flags) -> Result<(), String> {
    let cert = std::fs::read(&f.cert).map_err(|e| format!("{}: {e}", f.cert))?;
    let key = std::fs::read(&f.key).map_err(|e| format!("{}: {e}", f.key))?;
    let tls = ClientTls::new(
        TrustMode::pinned_pem(&cert).map_err(|e| e.to_string())?,
        Some(Identity::from_pem(&cert, &key).map_err(|e| e.to_string())?),
    )
    .map_err(|e| e.to_string())?;
    let (host, port) = f.addr.rsplit_once(':').ok_or("--addr needs host:port")?;
    let port: u16 = port.parse().map_err(|_| "--addr: bad port")?;
    let pool = Arc::new(WorkerPool::new("dps", 2, 65536).map_err(|e| e.to_string())?);
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let peers = std::sync::Mutex::new(Vec::with_capacity(f.n));
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..f.connectors {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= f.n {
                    return;
                }
                match connect_dp(i, host, port, &tls, &pool) {
                    Ok(peer) => peers.lock().unwrap_or_else(|p| p.into_inner()).push(peer),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("fanout dps: DP {i}: {e}");
                        }
                    }
                }
            });
        }
    });
    let (rss, threads) = proc_status();
    println!(
        "{}",
        json!({"event": "dps-ready", "dps": f.n, "failed": failed.load(Ordering::Relaxed),
               "seconds": (t.elapsed().as_secs_f64() * 100.0).round() / 100.0,
               "dp_process_rss_kib": rss, "dp_process_threads": threads})
    );
    let _ = std::io::stdout().flush();
    // Run until the CP process closes our stdin; the CP closes the connections itself.
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    Ok(())
}

fn connect_dp(
    i: usize,
    host: &str,
    port: u16,
    tls: &ClientTls,
    pool: &Arc<WorkerPool>,
) -> Result<Peer, String> {
    let node = NodeIdentity::new(
        dpspec::random::uuid_v4(),
        format!("dp-{i}"),
        dpspec::dp::DEFAULT_KONG_VERSION,
    );
    let mut opts = DialOptions::new(host, port, tls.clone(), node);
    opts.connect_timeout = Duration::from_secs(30);
    let dialed = dial(&opts).map_err(|e| e.to_string())?;
    let (channel, reader) = Channel::new(
        dialed.session,
        dialed.sock,
        dialed.leftover,
        Role::Client,
        ChannelConfig {
            max_message_size: 16 * 1024 * 1024,
            label: format!("dp-{i}"),
            ..ChannelConfig::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let services = Services::new();
    let verify = i % 1000 == 0;
    services.handle::<SyncConfig, _>(move |_, req| {
        let gz = &req.config;
        let framed = gz.len() > 18 && gz[0] == 0x1f && gz[1] == 0x8b;
        if req.version == 0 || req.config_hash.len() != 32 || !framed {
            return Err(HandlerError::new("malformed SyncConfig"));
        }
        if verify {
            let map = dpspec::config::decode(gz, 256 * 1024 * 1024)?;
            let hashes = dpspec::config::config_hashes(&map);
            if hashes.config != req.config_hash {
                return Err(HandlerError::new("config hash mismatch"));
            }
        }
        Ok(SyncConfigResponse {
            accepted: true,
            errors: vec![],
        })
    });
    let peer = Peer::new(channel, services, pool.clone(), PeerConfig::default());
    peer.spawn(reader).map_err(|e| e.to_string())?;
    let answer = peer
        .call::<NegotiateServices>(&dp_request(dpspec::dp::DEFAULT_KONG_VERSION, "dp"))
        .map_err(|e| format!("NegotiateServices: {e}"))?;
    check_response(&answer).map_err(|e| format!("NegotiateServices: {e}"))?;
    peer.call::<ReportMetadata>(&ReportMetadataRequest { plugins: vec![] })
        .map_err(|e| format!("ReportMetadata: {e}"))?;
    Ok(peer)
}
