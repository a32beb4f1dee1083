//! What the fan-out and isolation benchmarks share: Kong's shared certificate, generated
//! declarative configs of a chosen gzipped size, lean data planes, and the second
//! process that runs N of them (`<example> dps ...`, see [`dps`] and [`spawn_dps`]).
//!
//! Included with `#[path = "common/fleet.rs"] mod fleet;` by examples/fanout.rs and
//! examples/isolation.rs.
//!
//! A lean wRPC DP is the library's dialer, channel and peer (one reader thread each, one
//! shared worker pool), answering NegotiateServices' and ReportMetadata's protocol and
//! acking each SyncConfig after checking its version, hash and gzip framing; every
//! 1000th DP (and DP 0) inflates the config and checks Kong's hash of it.
//!
//! A lean JSON DP (`/v1/outlet`) is the dialer and a channel: it sends `basic_info`, and
//! acks each `reconfigure` the only way the protocol allows, with a ping carrying its
//! hash. It reads the hash from the head of the gzipped frame (our CP writes
//! `config_hash` before `config_table`), so only the first block is inflated; every
//! 1000th DP inflates the whole config and checks Kong's hash of it. One thread pings
//! every DP of the process every 15 s, as Kong's DPs ping every 30 s.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use dpspec::channel::{Channel, ChannelConfig, CloseRequest, Ended, MessageSink, Role};
use dpspec::http::NodeIdentity;
use dpspec::services::config::{PingCPRequest, ReportMetadataRequest, SyncConfigResponse};
use dpspec::services::negotiation::{check_response, dp_request};
use dpspec::services::{NegotiateServices, PingCP, ReportMetadata, SyncConfig};
use dpspec::tls::{ClientTls, Identity, TrustMode};

use dpspec::upgrade::{dial, DialOptions, UpgradeTarget};
use dpspec::wrpc::{HandlerError, Peer, PeerConfig, Services, WorkerPool};
use dpspec::Protocol;
use serde_json::{json, Value};

/// `VmRSS` in KiB and `Threads` of this process, from `/proc/self/status`.
pub fn proc_status() -> (u64, u64) {
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

/// Kong's shared certificate and its key, as PEM and as files in a fresh temporary
/// directory (for the DP process); remove `dir` when done.
pub struct CertFiles {
    pub cert: String,
    pub key: String,
    pub dir: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// A fresh [`CertFiles`] in `$TMPDIR/dpspec-<name>-<pid>`.
pub fn cert_files(name: &str) -> Result<CertFiles, String> {
    let (cert, key) = shared_cert()?;
    let dir = std::env::temp_dir().join(format!("dpspec-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (cert_path, key_path) = (dir.join("cluster.crt"), dir.join("cluster.key"));
    std::fs::write(&cert_path, &cert).map_err(|e| e.to_string())?;
    std::fs::write(&key_path, &key).map_err(|e| e.to_string())?;
    Ok(CertFiles {
        cert,
        key,
        dir,
        cert_path,
        key_path,
    })
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

/// The client side of Kong's shared mode: pin `cert` and present it.
pub fn shared_client_tls(cert: &[u8], key: &[u8]) -> Result<ClientTls, String> {
    ClientTls::new(
        TrustMode::pinned_pem(cert).map_err(|e| e.to_string())?,
        Some(Identity::from_pem(cert, key).map_err(|e| e.to_string())?),
    )
    .map_err(|e| e.to_string())
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
pub fn config(services: usize, run: usize) -> Value {
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
pub fn services_for(size: usize) -> usize {
    let probe = 200;
    let gz = dpspec::config::gzip(&serde_json::to_vec(&config(probe, 0)).unwrap_or_default());
    let per = (gz.len() / probe).max(1);
    (size * 103 / 100 / per + 1).max(1)
}

/// Starts this program again as `<exe> dps --addr ADDR --cert CERT --key KEY -n N
/// --connectors K --protocol P` and returns it with its stdout lines. It runs until its
/// stdin closes.
pub fn spawn_dps(
    addr: &str,
    cert: &Path,
    key: &Path,
    n: usize,
    connectors: usize,
    protocol: Protocol,
) -> Result<(Child, Receiver<String>), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["dps", "--addr", addr])
        .args(["--cert", &cert.display().to_string()])
        .args(["--key", &key.display().to_string()])
        .args([
            "-n",
            &n.to_string(),
            "--connectors",
            &connectors.to_string(),
            "--protocol",
            protocol.as_str(),
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
    Ok((child, lines))
}

/// The DP process: `n` lean DPs connected to `addr` by `connectors` threads; prints one
/// `dps-ready` line, then runs until stdin closes.
pub fn dps(
    addr: &str,
    cert: &str,
    key: &str,
    n: usize,
    connectors: usize,
    protocol: Protocol,
) -> Result<(), String> {
    let cert = std::fs::read(cert).map_err(|e| format!("{cert}: {e}"))?;
    let key = std::fs::read(key).map_err(|e| format!("{key}: {e}"))?;
    let tls = shared_client_tls(&cert, &key)?;
    let (host, port) = addr.rsplit_once(':').ok_or("--addr needs host:port")?;
    let port: u16 = port.parse().map_err(|_| "--addr: bad port")?;
    // Eight workers: every 1000th DP's handler inflates and hashes the whole config (about
    // 50 ms), and with two workers for all 10,000 DPs the answers queued behind two such
    // checks held every place of the CP's push window (a real DP has its own workers).
    let pool = Arc::new(WorkerPool::new("dps", 8, 65536).map_err(|e| e.to_string())?);
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let peers = std::sync::Mutex::new(Vec::with_capacity(n));
    let channels = std::sync::Mutex::new(Vec::with_capacity(n));
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..connectors.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let connected = match protocol {
                    Protocol::Json => connect_json_dp(i, host, port, &tls)
                        .map(|ch| channels.lock().unwrap_or_else(|p| p.into_inner()).push(ch)),
                    _ => connect_dp(i, host, port, &tls, &pool)
                        .map(|peer| peers.lock().unwrap_or_else(|p| p.into_inner()).push(peer)),
                };
                match connected {
                    Ok(()) => {}
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("dps: DP {i}: {e}");
                        }
                    }
                }
            });
        }
    });
    let (rss, threads) = proc_status();
    println!(
        "{}",
        json!({"event": "dps-ready", "dps": n, "failed": failed.load(Ordering::Relaxed),
               "seconds": (t.elapsed().as_secs_f64() * 100.0).round() / 100.0,
               "dp_process_rss_kib": rss, "dp_process_threads": threads})
    );
    let _ = std::io::stdout().flush();
    // JSON DPs ping every 15 s (Kong's DPs every 30 s; the CP drops one silent for 45 s).
    let channels = channels.into_inner().unwrap_or_else(|p| p.into_inner());
    let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
    let pinger = std::thread::spawn(move || {
        while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            stop.recv_timeout(Duration::from_secs(15))
        {
            for ch in &channels {
                let _ = ch.send_ping(&dpspec::outlet::ping_payload(None));
            }
        }
    });
    // Run until the CP process closes our stdin; the CP closes the connections itself.
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    drop(stop_tx);
    let _ = pinger.join();
    Ok(())
}

/// One lean JSON DP (hostname `dp-<i>`) that has sent `basic_info` and its first ping.
pub fn connect_json_dp(
    i: usize,
    host: &str,
    port: u16,
    tls: &ClientTls,
) -> Result<Channel, String> {
    let (channel, reader) = dial_channel(i, host, port, tls, "3.9.3", &UpgradeTarget::outlet())?;
    let sink = JsonSink {
        channel: channel.clone(),
        verify: i % 1000 == 0,
    };
    reader.spawn(sink).map_err(|e| e.to_string())?;
    channel
        .send(&dpspec::outlet::encode_basic_info(&[], None))
        .map_err(|e| e.to_string())?;
    channel
        .send_ping(&dpspec::outlet::ping_payload(None))
        .map_err(|e| e.to_string())?;
    Ok(channel)
}

/// Dials DP `i` (hostname `dp-<i>`, Kong `version`) at `target` and makes its channel.
fn dial_channel(
    i: usize,
    host: &str,
    port: u16,
    tls: &ClientTls,
    version: &str,
    target: &UpgradeTarget,
) -> Result<(Channel, dpspec::channel::Reader), String> {
    let node = NodeIdentity::new(dpspec::random::uuid_v4(), format!("dp-{i}"), version);
    let mut opts = DialOptions::new(host, port, tls.clone(), node);
    opts = opts.connect_timeout(Duration::from_secs(30));
    let dialed = dial(&opts, target).map_err(|e| e.to_string())?;
    Channel::new(
        dialed.session,
        dialed.sock,
        dialed.leftover,
        Role::Client,
        ChannelConfig::default()
            .max_message_size(16 * 1024 * 1024)
            .label(format!("dp-{i}")),
    )
    .map_err(|e| e.to_string())
}

/// Acks each `reconfigure` with a ping carrying its hash.
struct JsonSink {
    channel: Channel,
    verify: bool,
}

impl MessageSink for JsonSink {
    fn on_message(&mut self, frame: Vec<u8>) -> Result<(), CloseRequest> {
        let hash = if self.verify {
            match dpspec::outlet::decode_reconfigure(&frame, 256 * 1024 * 1024) {
                Ok(dpspec::outlet::Decoded::Reconfigure(r)) => {
                    let kong = dpspec::config::config_hashes(&r.config).config;
                    (r.config_hash.as_deref() == Some(kong.as_str())).then_some(kong)
                }
                _ => None,
            }
        } else {
            head_hash(&frame)
        };
        match hash {
            Some(hash) => {
                let _ = self.channel.send_ping(hash.as_bytes());
            }
            None => eprintln!(
                "{}: a reconfigure without a good hash",
                self.channel.label()
            ),
        }
        Ok(())
    }

    fn on_end(&mut self, _ended: &Ended) {}
}

/// `config_hash` from the first bytes of a gzipped `reconfigure`: only its first 512
/// bytes are inflated, straight into a buffer of that size (flate2's streaming reader
/// inflates into a 32 KiB window, 60 times what this needs, for each of 10,000 DPs).
fn head_hash(frame: &[u8]) -> Option<String> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let deflate = frame.get(gzip_header_len(frame)?..)?;
    let mut head = [0u8; 512];
    let mut state = DecompressorOxide::new();
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _, got) = decompress(&mut state, deflate, &mut head, 0, flags);
    if !matches!(status, TINFLStatus::HasMoreOutput | TINFLStatus::Done) {
        return None;
    }
    let text = std::str::from_utf8(&head[..got]).ok()?;
    let at = text.find("\"config_hash\":\"")? + "\"config_hash\":\"".len();
    text.get(at..at + 32).map(str::to_string)
}

/// The length of a gzip member's header (RFC 1952), or `None` if `gz` does not start
/// with one.
fn gzip_header_len(gz: &[u8]) -> Option<usize> {
    if gz.len() < 10 || gz[0] != 0x1f || gz[1] != 0x8b || gz[2] != 8 {
        return None;
    }
    let flags = gz[3];
    let mut at = 10;
    if flags & 4 != 0 {
        // FEXTRA: two bytes of length, then that many bytes.
        let xlen = u16::from_le_bytes([*gz.get(at)?, *gz.get(at + 1)?]) as usize;
        at += 2 + xlen;
    }
    for bit in [8u8, 16] {
        // FNAME, FCOMMENT: zero-terminated.
        if flags & bit != 0 {
            at += gz.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2; // FHCRC
    }
    (at <= gz.len()).then_some(at)
}

/// One lean DP (hostname `dp-<i>`), negotiated and with its metadata reported.
pub fn connect_dp(
    i: usize,
    host: &str,
    port: u16,
    tls: &ClientTls,
    pool: &Arc<WorkerPool>,
) -> Result<Peer, String> {
    let version = dpspec::dp::DEFAULT_KONG_VERSION;
    let (channel, reader) = dial_channel(i, host, port, tls, version, &UpgradeTarget::wrpc())?;
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
    // As Kong's DPs do at once after ReportMetadata: the CP serves it on the reader, so
    // the idle figures include that path.
    peer.call::<PingCP>(&PingCPRequest {
        hash: "0".repeat(32),
    })
    .map_err(|e| format!("PingCP: {e}"))?;
    Ok(peer)
}
