//! Isolation benchmark: how much bad peers of one control plane cost its good data planes.
//!
//! ```text
//! cargo run --release --example isolation -- run [--reps 3] [--pings 1000] [--interval-ms 5] \
//!     [--dps 1000] [--bad 100] [--size 32768] [--fanout-runs 7] [--fanout-patience-s 20] \
//!     [--only flooders,...]
//! ```
//!
//! (`bench/isolation.sh [REPS] [DPS] [BAD]` builds and runs it; `--only` runs the alone
//! phase and the named ones and makes part (b)'s bad peers of those kinds only; `--dps 0`
//! skips part (b).) Everything is on 127.0.0.1; the CP is the real [`ControlPlane`] with
//! its defaults (4 handler workers, 4 push workers, 10 s write timeout, and Kong's 90 s
//! SyncConfig timeout and 5 s ReportMetadata deadline).
//!
//! Part (a), `--reps` times, each phase on a fresh CP holding a config (`--size` bytes
//! gzipped): one good DP (a lean DP, examples/common/fleet.rs) sends `--pings` PingCP
//! calls `--interval-ms` apart and records each round trip, first alone, then beside one
//! kind of bad peer per phase:
//!
//! - `flooders`: 20 authenticated DPs that flood PingCP and ReportMetadata requests and
//!   never read their socket (raw WebSocket frames through their own rustls session);
//! - `slow-readers`: 20 DPs that send 50 PingCP requests and read 64 bytes of their
//!   socket every 50 ms; this phase's config is 3 MiB gzipped, more than the socket
//!   buffers hold, so the push to each stays half written;
//! - `silent-sync`: 40 DPs that read everything and never answer SyncConfig, so the CP's
//!   pushes to them stay in flight;
//! - `no-metadata`: 60 DPs that negotiate and never send ReportMetadata (nor answer the
//!   close that follows); the pings run across their 5 s deadline;
//! - `tls-trickle`: 20 TLS handshakes whose ClientHello comes one byte every 50 ms.
//!
//! A ping that fails counts as infinitely slow; failures are counted by kind
//! (`overloaded` answers, timeouts after 1 s, closed connection, other, not sent before
//! the phase deadline).
//!
//! Part (b): `--dps` lean DPs in a second process (this program in `dps` mode, as
//! examples/fanout.rs), then `--fanout-runs` times the time from `set_config` until all
//! of them acked (after one push not counted), first with no bad peer, then beside `--bad` bad
//! peers (an even mix of the five kinds, or of those `--only` names). A push not acked by
//! all within `--fanout-patience-s` is a miss; the runs beside bad peers stop at the first
//! miss. Every run also reports when half and nine tenths of the DPs had acked.
//!
//! One JSON line per measurement on stdout, then a table of medians with the targets:
//! every ratio to the alone figure at most 1.2, every p99 under 100 ms.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use dpspec::channel::frame::{apply_mask, write_header, Decoder, Frame};
use dpspec::channel::Role;
use dpspec::cp::{CpEvent, PushOutcome};
use dpspec::http::NodeIdentity;
use dpspec::services::config::{PingCPRequest, ReportMetadataRequest};
use dpspec::services::negotiation::{check_response, dp_request, NegotiateServicesResponse};
use dpspec::services::{NegotiateServices, PingCP, ReportMetadata};
use dpspec::tls::{ClientTls, Identity};

use dpspec::upgrade::{dial, DialOptions, UpgradeTarget};
use dpspec::wrpc::envelope::{decode_envelope, encode_envelope, MessageType, PayloadV1};
use dpspec::wrpc::pending::deadline_after;
use dpspec::wrpc::{Peer, Rpc, WorkerPool, WrpcError};
use dpspec::ControlPlane;
use dpspec::Protocol;
use fleet::{config, connect_dp, services_for, CertFiles};
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::{Data, OpCode};

#[path = "common/flags.rs"]
mod flags;
#[path = "common/fleet.rs"]
mod fleet;

const USAGE: &str = "usage:
  isolation run [--reps R] [--pings P] [--interval-ms MS] [--dps N] [--bad B] [--size GZIPPED_BYTES]
                [--fanout-runs N] [--fanout-patience-s S] [--only PHASE,...]
  isolation dps --addr ADDR --cert PEM --key PEM -n DPS [--connectors K]";

/// The CP's ReportMetadata deadline (Kong's 5 s, set explicitly: the no-metadata phase is
/// timed from it).
const METADATA_DEADLINE: Duration = Duration::from_secs(5);
/// Pings before each phase's measured ones, not counted (caches, buffers, allocator).
const WARM_UP_PINGS: usize = 20;
/// The longest one phase of part (a) may take, teardown included (about 60 s when
/// every bounded wait in it runs out); past it the phase is reported as failed.
const PHASE_PATIENCE: Duration = Duration::from_secs(90);
/// A ping not answered within this counts as a timeout.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// Targets: every ratio to the alone figure at most this, every p99 under `P99_TARGET_MS`.
const RATIO_TARGET: f64 = 1.2;
const P99_TARGET_MS: f64 = 100.0;
/// No bad peer lives longer than this, whatever the controller does.
const BAD_PEER_LIFETIME: Duration = Duration::from_secs(120);
/// How long one blocked write of a bad peer waits before it looks at its stop flag.
const WRITE_SLICE: Duration = Duration::from_millis(100);
/// The gzipped size of the config in the slow readers' phase: more than a loopback
/// connection's socket buffers hold (about 2.8 MB on Linux with its defaults), so the
/// push to a slow reader cannot all be written and what the CP sends it next waits.
const PIPE_FILLING_CONFIG: usize = 3 * 1024 * 1024;
/// A slow reader reads 64 bytes this often, and sends this many PingCP requests each time
/// (a PingCP per millisecond on average).
const SLOW_READ_EVERY: Duration = Duration::from_millis(50);
const SLOW_READER_PINGS_PER_READ: usize = 50;
/// How long the bad peers of part (b) work before the first timed push.
const FANOUT_SETTLE: Duration = Duration::from_secs(3);

/// Names starting with this are bad peers (node ids and hostnames).
const BAD: &str = "bad-";

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off"))
        .target(env_logger::Target::Stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Flags::parse(&args[1..]).and_then(|f| run(&f)),
        Some("dps") => Flags::parse(&args[1..])
            .and_then(|f| fleet::dps(&f.addr, &f.cert, &f.key, f.n, f.connectors, f.protocol)),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("isolation: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone)]
struct Flags {
    reps: usize,
    /// Timed pushes of part (b), each way.
    fanout_runs: usize,
    pings: usize,
    interval: Duration,
    n: usize,
    bad: usize,
    size: usize,
    fanout_patience: Duration,
    connectors: usize,
    /// What the lean DPs speak: `wrpc` (default) or `json`.
    protocol: Protocol,
    /// Phase names of part (a) to run (all when empty; `alone` always runs).
    only: Vec<String>,
    addr: String,
    cert: String,
    key: String,
}

impl Flags {
    /// The kinds of bad peer `--only` names, or all of them.
    fn kinds(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| self.only.is_empty() || self.only.iter().any(|o| o == k.name()))
            .collect()
    }

    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut f = Flags {
            reps: 3,
            fanout_runs: 7,
            pings: 1000,
            interval: Duration::from_millis(5),
            n: 1000,
            bad: 100,
            size: 32 * 1024,
            fanout_patience: Duration::from_secs(20),
            connectors: 4,
            protocol: Protocol::Wrpc,
            only: Vec::new(),
            addr: String::new(),
            cert: String::new(),
            key: String::new(),
        };
        for flag in flags::pairs(args, USAGE, &[]) {
            let flag = flag?;
            let value = flag.text;
            match flag.name {
                "--reps" => f.reps = flag.num()?.max(1),
                "--fanout-runs" => f.fanout_runs = flag.num()?.max(1),
                "--pings" => f.pings = flag.num()?.max(1),
                "--interval-ms" => f.interval = Duration::from_millis(flag.num()? as u64),
                "--dps" | "-n" => f.n = flag.num()?,
                "--bad" => f.bad = flag.num()?,
                "--size" => f.size = flag.num()?,
                "--fanout-patience-s" => {
                    f.fanout_patience = Duration::from_secs(flag.num()? as u64)
                }
                "--connectors" => f.connectors = flag.num()?.max(1),
                "--protocol" => {
                    f.protocol = match value {
                        "wrpc" => Protocol::Wrpc,
                        "json" => Protocol::Json,
                        other => return Err(format!("--protocol {other}: wrpc or json")),
                    }
                }
                "--only" => f.only = value.split(',').map(str::to_string).collect(),
                "--addr" => f.addr = value.to_string(),
                "--cert" => f.cert = value.to_string(),
                "--key" => f.key = value.to_string(),
                _ => return Err(flag.unknown()),
            }
        }
        Ok(f)
    }
}

/// What every phase uses: the shared certificate, the DP side's TLS, the config.
struct Env {
    certs: CertFiles,
    tls: ClientTls,
    /// Services in a config of `--size` bytes gzipped, and of [`PIPE_FILLING_CONFIG`].
    services: usize,
    big_services: usize,
}

impl Env {
    fn start_cp(&self, event_capacity: usize) -> Result<ControlPlane, String> {
        let identity = Identity::from_pem(self.certs.cert.as_bytes(), self.certs.key.as_bytes())
            .map_err(|e| e.to_string())?;
        ControlPlane::builder()
            .listen("127.0.0.1:0")
            .identity(identity)
            .metadata_deadline(METADATA_DEADLINE)
            .event_capacity(event_capacity)
            .start()
            .map_err(|e| e.to_string())
    }
}

fn run(f: &Flags) -> Result<(), String> {
    let f = &Arc::new(f.clone());
    let certs = fleet::cert_files("isolation")?;
    let tls = fleet::shared_client_tls(certs.cert.as_bytes(), certs.key.as_bytes())?;
    let env = Arc::new(Env {
        certs,
        tls,
        services: services_for(f.size),
        big_services: services_for(PIPE_FILLING_CONFIG),
    });
    let started = Instant::now();
    let mut table: Vec<(Option<Kind>, Vec<PingRun>)> = std::iter::once(None)
        .chain(f.kinds().into_iter().map(Some))
        .map(|k| (k, Vec::new()))
        .collect();
    // A phase or the fan-out that fails is reported and the rest still runs.
    for rep in 1..=f.reps {
        for (kind, runs) in table.iter_mut() {
            let (env, f2, k) = (env.clone(), f.clone(), *kind);
            let phase = within(PHASE_PATIENCE, "the phase", move || {
                ping_phase(&env, &f2, k, rep)
            });
            match phase {
                Ok(r) => {
                    println!("{}", r.json(*kind, rep));
                    runs.push(r);
                }
                Err(e) => println!(
                    "{}",
                    json!({"event": "phase-failed", "rep": rep,
                           "phase": kind.map_or("alone", Kind::name), "error": e})
                ),
            }
        }
    }
    let fan = (f.n > 0).then(|| {
        let (env, f2) = (env.clone(), f.clone());
        let patience =
            Duration::from_secs(180) + 2 * (f.fanout_runs as u32 + 1) * f.fanout_patience;
        within(patience, "the fan-out", move || fanout(&env, &f2)).inspect_err(|e| {
            println!("{}", json!({"event": "fanout-failed", "error": e}));
        })
    });
    println!();
    print_summary(f, &table, fan.as_ref());
    println!(
        "\ntotal {:.0} s; JSON lines above hold every repetition",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&env.certs.dir);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Part (a): one good DP's pings, alone and beside one kind of bad peer

/// One phase of one repetition.
struct PingRun {
    pings: Pings,
    bad_ready: usize,
    bad_failed: usize,
    bad: Vec<(Kind, Tally)>,
    seconds: f64,
}

impl PingRun {
    fn json(&self, kind: Option<Kind>, rep: usize) -> String {
        let p = &self.pings;
        let dropped = self.bad.iter().filter(|(_, t)| t.ended_by_cp).count();
        let stuck = self.bad.iter().filter(|(_, t)| t.stuck).count();
        let written: u64 = self.bad.iter().map(|(_, t)| t.requests).sum();
        json!({"event": "phase", "rep": rep, "phase": kind.map_or("alone", Kind::name),
               "bad_peers": kind.map_or(0, Kind::phase_count), "bad_ready": self.bad_ready,
               "bad_failed_to_start": self.bad_failed, "bad_ended_by_cp": dropped,
               "bad_stuck_at_end": stuck, "bad_requests_written": written,
               "pings": p.lat_ns.len(), "ok": p.ok, "overloaded": p.overloaded,
               "timeouts": p.timeouts, "closed": p.closed, "other": p.other, "unsent": p.unsent,
               "first_error": p.first_error, "p50_ms": ms_json(p.percentile(0.50)),
               "p99_ms": ms_json(p.percentile(0.99)),
               "seconds": (self.seconds * 100.0).round() / 100.0})
        .to_string()
    }
}

fn ping_phase(env: &Env, f: &Flags, kind: Option<Kind>, rep: usize) -> Result<PingRun, String> {
    let t = Instant::now();
    let cp = env.start_cp(1024)?;
    let addr = cp.local_addr();
    let services = match kind {
        Some(Kind::SlowReader) => env.big_services,
        _ => env.services,
    };
    let version = cp
        .set_config(config(services, rep))
        .map_err(|e| e.to_string())?;
    let hash = cp
        .config_version()
        .map(|(_, h)| h.config)
        .unwrap_or_default();
    let pool = Arc::new(WorkerPool::new("good", 1, 64).map_err(|e| e.to_string())?);
    let good = connect_dp(0, "127.0.0.1", addr.port(), &env.tls, &pool)?;
    wait_good_acked(&cp, version, Duration::from_secs(10))?;

    let mix: Vec<(Kind, usize)> = kind.map(|k| (k, k.phase_count())).into_iter().collect();
    let mut crowd = Crowd::start(addr, &env.tls, &mix);
    let (bad_ready, bad_failed) = crowd.start_all(Duration::from_secs(15));
    std::thread::sleep(kind.map_or(Duration::from_millis(200), Kind::settle));

    let pings = measure_pings(&good, &hash, f);
    let bad = crowd.finish(Duration::from_secs(5));
    tear_down(Some(good), cp);
    Ok(PingRun {
        pings,
        bad_ready,
        bad_failed,
        bad,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// Waits until the good DP (hostname `dp-0`) has acked `version`.
fn wait_good_acked(cp: &ControlPlane, version: u64, patience: Duration) -> Result<(), String> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        let acked = cp.nodes().iter().any(|n| {
            n.hostname == "dp-0"
                && n.last_push.as_ref().is_some_and(|p| {
                    p.version == version && matches!(p.outcome, PushOutcome::Accepted)
                })
        });
        if acked {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "the good DP did not ack config {version} in {patience:?}"
    ))
}

/// Runs `job` on a thread of its own and waits at most `patience` for it: a CP (or a
/// DP) that hangs in a teardown or a phase must not hang the benchmark. Past the
/// patience the thread is left running and the error says so.
fn within<T: Send + 'static>(
    patience: Duration,
    what: &str,
    job: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(job());
    });
    match rx.recv_timeout(patience) {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{what} did not finish within {patience:?} (left running)"
        )),
    }
}

/// Closes the good DP and shuts `cp` down, each within a bounded time.
fn tear_down(good: Option<Peer>, cp: ControlPlane) {
    if let Some(good) = good {
        let closed = within(Duration::from_secs(10), "closing the good DP", move || {
            good.close(1000, "phase done");
            Ok(())
        });
        if let Err(e) = closed {
            eprintln!("isolation: {e}");
        }
    }
    let stopped = within(Duration::from_secs(20), "the CP's shutdown", move || {
        cp.shutdown();
        Ok(())
    });
    if let Err(e) = stopped {
        eprintln!("isolation: {e}");
    }
}

/// The round trips of one phase's pings; a failed ping is `u64::MAX` (infinitely slow).
#[derive(Default)]
struct Pings {
    lat_ns: Vec<u64>,
    ok: usize,
    overloaded: usize,
    timeouts: usize,
    closed: usize,
    other: usize,
    unsent: usize,
    first_error: Option<String>,
}

impl Pings {
    fn failed(&self) -> usize {
        self.lat_ns.len() - self.ok
    }

    /// The `p` quantile in ms, `None` when it falls on a failed ping.
    fn percentile(&self, p: f64) -> Option<f64> {
        let mut lat = self.lat_ns.clone();
        lat.sort_unstable();
        quantile(&lat, p).and_then(|v| (v != u64::MAX).then(|| v as f64 / 1e6))
    }
}

fn quantile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

fn measure_pings(good: &Peer, hash: &str, f: &Flags) -> Pings {
    let req = PingCPRequest {
        hash: hash.to_string(),
    };
    let warm_until = Instant::now() + 5 * PING_TIMEOUT;
    for _ in 0..WARM_UP_PINGS {
        if Instant::now() >= warm_until {
            break;
        }
        let _ = good.call_timeout::<PingCP>(&req, PING_TIMEOUT);
    }
    // Room for every ping at its interval, plus a few timeouts' worth.
    let deadline = Instant::now() + f.interval * f.pings as u32 + 5 * PING_TIMEOUT;
    let mut p = Pings::default();
    for _ in 0..f.pings {
        if Instant::now() >= deadline {
            p.unsent += 1;
            p.lat_ns.push(u64::MAX);
            continue;
        }
        let t = Instant::now();
        match good.call_timeout::<PingCP>(&req, PING_TIMEOUT) {
            Ok(_) => {
                p.ok += 1;
                p.lat_ns.push(t.elapsed().as_nanos() as u64);
            }
            Err(e) => {
                match &e {
                    WrpcError::Remote { description, .. } if description.contains("overloaded") => {
                        p.overloaded += 1
                    }
                    WrpcError::Timeout { .. } => p.timeouts += 1,
                    WrpcError::ConnectionClosed(_) => p.closed += 1,
                    _ => p.other += 1,
                }
                p.first_error.get_or_insert_with(|| e.to_string());
                p.lat_ns.push(u64::MAX);
            }
        }
        std::thread::sleep(f.interval);
    }
    p
}

// ---------------------------------------------------------------------------------------
// Part (b): fan-out to N good DPs, without and with bad peers

struct FanRun {
    /// Seconds until every DP acked, or `None` if some had not within the patience.
    seconds: Option<f64>,
    acked: usize,
    /// Seconds until a half and nine tenths of the DPs had acked.
    half: Option<f64>,
    most: Option<f64>,
}

struct Fanout {
    alone: Vec<FanRun>,
    beside: Vec<FanRun>,
    bad_ready: usize,
}

/// What the event drain passes on about the good DPs (node ids not starting with `bad-`).
enum Seen {
    Reported,
    Acked(u64),
    Disconnected(String),
}

/// Reads every CP event on a thread of its own (bad peers' pings would otherwise fill
/// the queue and crowd out the acks) and forwards those about good DPs.
fn drain_events(events: Receiver<CpEvent>) -> Receiver<Seen> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for ev in events.iter() {
            let seen = match ev {
                CpEvent::Metadata { node_id, .. } if !node_id.starts_with(BAD) => Seen::Reported,
                CpEvent::ConfigAcked {
                    node_id, version, ..
                } if !node_id.starts_with(BAD) => Seen::Acked(version),
                CpEvent::DpDisconnected {
                    node_id, reason, ..
                } if !node_id.starts_with(BAD) => Seen::Disconnected(reason),
                _ => continue,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    rx
}

fn fanout(env: &Env, f: &Flags) -> Result<Fanout, String> {
    let cp = env.start_cp(4 * f.n + 65536)?;
    let seen = drain_events(cp.events());
    let (mut child, lines) = fleet::spawn_dps(
        &cp.local_addr().to_string(),
        &env.certs.cert_path,
        &env.certs.key_path,
        f.n,
        f.connectors,
        f.protocol,
    )?;
    let result = fanout_runs(env, f, &cp, &seen, &lines);
    drop(child.stdin.take());
    tear_down(None, cp);
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn fanout_runs(
    env: &Env,
    f: &Flags,
    cp: &ControlPlane,
    seen: &Receiver<Seen>,
    lines: &Receiver<String>,
) -> Result<Fanout, String> {
    let t = Instant::now();
    let mut reported = 0;
    while reported < f.n {
        if let Ok(line) = lines.try_recv() {
            println!("{line}");
            let v: Value = serde_json::from_str(&line).unwrap_or_default();
            if v["failed"].as_u64().unwrap_or(0) > 0 {
                return Err(format!("{} DPs could not connect", v["failed"]));
            }
        }
        match seen.recv_timeout(Duration::from_millis(50)) {
            Ok(Seen::Reported) => reported += 1,
            Ok(Seen::Disconnected(reason)) => {
                return Err(format!("a DP disconnected while connecting: {reason}"))
            }
            _ => {}
        }
        if t.elapsed() > Duration::from_secs(120) {
            return Err(format!("only {reported} of {} DPs connected in 120 s", f.n));
        }
    }
    println!(
        "{}",
        json!({"event": "fanout-connected", "dps": f.n, "seconds": (t.elapsed().as_secs_f64() * 100.0).round() / 100.0})
    );
    let mut run = 0;
    let mut push = |label: &str| -> Result<FanRun, String> {
        run += 1;
        let r = push_once(cp, seen, config(env.services, 1000 + run), f)?;
        println!(
            "{}",
            json!({"event": "fanout", "with": label, "run": run, "dps": f.n,
                   "all_acked_seconds": r.seconds.map(|s| (s * 1e4).round() / 1e4),
                   "half_acked_seconds": r.half.map(|s| (s * 1e4).round() / 1e4),
                   "most_acked_seconds": r.most.map(|s| (s * 1e4).round() / 1e4),
                   "acked": r.acked, "patience_seconds": f.fanout_patience.as_secs()})
        );
        Ok(r)
    };
    // One push first, not counted: the first push of a process pays for first use
    // (allocator arenas, caches, thread stacks), and the runs beside bad peers come later.
    push("warm-up")?;
    let mut alone = Vec::new();
    for _ in 0..f.fanout_runs {
        alone.push(push("no bad peers")?);
    }
    let mut crowd = Crowd::start(cp.local_addr(), &env.tls, &mix_of(f.bad, &f.kinds()));
    let (bad_ready, _) = crowd.start_all(Duration::from_secs(15));
    // Let the flooders fill their pipes first: on one machine their own encryption
    // competes for the same cores, and that is the attackers' cost, not the CP's.
    std::thread::sleep(FANOUT_SETTLE);
    let mut beside = Vec::new();
    for _ in 0..f.fanout_runs {
        let r = push(&format!("{} bad peers", f.bad))?;
        let missed = r.seconds.is_none();
        beside.push(r);
        if missed {
            break;
        }
    }
    let bad = crowd.finish(Duration::from_secs(5));
    println!(
        "{}",
        json!({"event": "fanout-bad-peers", "ready": bad_ready,
               "ended_by_cp": bad.iter().filter(|(_, t)| t.ended_by_cp).count(),
               "requests_written": bad.iter().map(|(_, t)| t.requests).sum::<u64>()})
    );
    Ok(Fanout {
        alone,
        beside,
        bad_ready,
    })
}

/// `set_config`, then waits until all good DPs acked it or the patience runs out.
fn push_once(
    cp: &ControlPlane,
    seen: &Receiver<Seen>,
    cfg: Value,
    f: &Flags,
) -> Result<FanRun, String> {
    while seen.try_recv().is_ok() {}
    let t = Instant::now();
    let version = cp.set_config(cfg).map_err(|e| e.to_string())?;
    let deadline = t + f.fanout_patience;
    let mut acked = 0;
    let (mut half, mut most) = (None, None);
    while acked < f.n {
        match seen.recv_deadline(deadline) {
            Ok(Seen::Acked(v)) if v == version => {
                acked += 1;
                if acked == f.n / 2 {
                    half = Some(t.elapsed().as_secs_f64());
                }
                if acked == f.n * 9 / 10 {
                    most = Some(t.elapsed().as_secs_f64());
                }
            }
            Ok(Seen::Disconnected(reason)) => {
                return Err(format!("a good DP disconnected during the push: {reason}"))
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let took = t.elapsed().as_secs_f64();
    if acked < f.n && cp.dropped_events() > 0 {
        // Some events were dropped: count the acks from the registry instead.
        acked = cp
            .nodes()
            .iter()
            .filter(|n| !n.node_id.starts_with(BAD))
            .filter(|n| {
                n.last_push.as_ref().is_some_and(|p| {
                    p.version == version && matches!(p.outcome, PushOutcome::Accepted)
                })
            })
            .count();
    }
    Ok(FanRun {
        seconds: (acked >= f.n).then_some(took),
        acked,
        half,
        most,
    })
}

/// `total` bad peers, an even mix of `kinds`.
fn mix_of(total: usize, kinds: &[Kind]) -> Vec<(Kind, usize)> {
    let k = kinds.len().max(1);
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| (*kind, total / k + usize::from(i < total % k)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Summary

fn ms_json(v: Option<f64>) -> Value {
    v.map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0))
}

fn ms_text(v: Option<f64>) -> String {
    v.map_or("fail".into(), |v| format!("{v:.3}"))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// The median of per-repetition figures, a failure (`None`) counting as the slowest.
fn median(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values.map(|x| x.unwrap_or(f64::INFINITY)).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .filter(|x| x.is_finite())
}

fn ratio(v: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (v, base) {
        (Some(v), Some(b)) if b > 0.0 => Some(v / b),
        _ => None,
    }
}

fn print_summary(
    f: &Flags,
    table: &[(Option<Kind>, Vec<PingRun>)],
    fan: Option<&Result<Fanout, String>>,
) {
    println!(
        "(a) one good DP's PingCP round trip: {} pings {} ms apart per phase, medians of {} \
         repetitions; a failed ping counts as infinitely slow",
        f.pings,
        f.interval.as_millis(),
        f.reps
    );
    println!(
        "    targets: p50 and p99 ratios to alone <= {RATIO_TARGET}, p99 < {P99_TARGET_MS} ms"
    );
    println!(
        "{:<13} {:>4} {:>9} {:>9} {:>7} {:>7}  {:<7} {:<28}",
        "phase", "bad", "p50 ms", "p99 ms", "p50 x", "p99 x", "result", "failed pings (all reps)"
    );
    let figure = |runs: &[PingRun], p: f64| median(runs.iter().map(|r| r.pings.percentile(p)));
    let alone = &table[0].1;
    let (a50, a99) = (figure(alone, 0.50), figure(alone, 0.99));
    for (kind, runs) in table {
        if runs.is_empty() {
            let name = kind.map_or("alone", Kind::name);
            println!("{name:<13} no repetition completed (see phase-failed above)    MISS");
            continue;
        }
        let (p50, p99) = (figure(runs, 0.50), figure(runs, 0.99));
        let (r50, r99) = (ratio(p50, a50), ratio(p99, a99));
        let p99_ok = p99.is_some_and(|v| v < P99_TARGET_MS);
        let ok = match kind {
            None => p99_ok,
            Some(_) => {
                p99_ok
                    && r50.is_some_and(|r| r <= RATIO_TARGET)
                    && r99.is_some_and(|r| r <= RATIO_TARGET)
            }
        };
        let sum = |g: fn(&Pings) -> usize| runs.iter().map(|r| g(&r.pings)).sum::<usize>();
        let total: usize = runs.iter().map(|r| r.pings.lat_ns.len()).sum();
        let failed = sum(Pings::failed);
        let detail = if failed == 0 {
            format!("0 of {total}")
        } else {
            format!(
                "{failed} of {total}: {} overloaded, {} timeout, {} closed, {} other, {} unsent",
                sum(|p| p.overloaded),
                sum(|p| p.timeouts),
                sum(|p| p.closed),
                sum(|p| p.other),
                sum(|p| p.unsent)
            )
        };
        let x = |r: Option<f64>| match (kind, r) {
            (None, _) => "-".to_string(),
            (Some(_), Some(r)) => format!("{r:.2}"),
            (Some(_), None) => "inf".to_string(),
        };
        println!(
            "{:<13} {:>4} {:>9} {:>9} {:>7} {:>7}  {:<7} {}",
            kind.map_or("alone", Kind::name),
            kind.map_or(0, Kind::phase_count),
            ms_text(p50),
            ms_text(p99),
            x(r50),
            x(r99),
            verdict(ok),
            detail
        );
    }
    for k in table.iter().filter_map(|(k, _)| *k) {
        println!("    {:<13} {}", k.name(), k.what());
    }
    let fan = match fan {
        None => return,
        Some(Err(e)) => return println!("\n(b) fan-out did not complete: {e}"),
        Some(Ok(fan)) => fan,
    };

    let secs = |runs: &[FanRun]| median(runs.iter().map(|r| r.seconds));
    let (alone, beside) = (secs(&fan.alone), secs(&fan.beside));
    let text = |v: Option<f64>, runs: &[FanRun]| match v {
        Some(v) => format!("{v:.3} s"),
        None => {
            let worst = runs.iter().map(|r| r.acked).min().unwrap_or(0);
            format!(
                "> {} s ({worst} of {} acked)",
                f.fanout_patience.as_secs(),
                f.n
            )
        }
    };
    let r = ratio(beside, alone);
    println!(
        "\n(b) fan-out of a {} KiB (gzipped) config to {} good DPs until all acked, medians of \
         {} and {} runs; target ratio <= {RATIO_TARGET}",
        f.size / 1024,
        f.n,
        fan.alone.len(),
        fan.beside.len()
    );
    println!(
        "    no bad peers: {}; beside {} bad peers ({} up, {} of each kind): {}; ratio {}  {}",
        text(alone, &fan.alone),
        f.bad,
        fan.bad_ready,
        f.bad / f.kinds().len(),
        text(beside, &fan.beside),
        r.map_or("inf".into(), |r| format!("{r:.2}")),
        verdict(r.is_some_and(|r| r <= RATIO_TARGET))
    );
}

// ---------------------------------------------------------------------------------------
// Bad peers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Flooder,
    SlowReader,
    SilentSync,
    NoMetadata,
    Trickle,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Flooder,
        Kind::SlowReader,
        Kind::SilentSync,
        Kind::NoMetadata,
        Kind::Trickle,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Flooder => "flooders",
            Kind::SlowReader => "slow-readers",
            Kind::SilentSync => "silent-sync",
            Kind::NoMetadata => "no-metadata",
            Kind::Trickle => "tls-trickle",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Flooder => "flood PingCP + ReportMetadata, never read",
            Kind::SlowReader => "50 PingCP and a 64-byte read every 50 ms",
            Kind::SilentSync => "read everything, never answer SyncConfig",
            Kind::NoMetadata => "negotiate, never ReportMetadata; pings cross their deadline",
            Kind::Trickle => "ClientHello one byte every 50 ms",
        }
    }

    /// How many of this kind in its own phase of part (a).
    fn phase_count(self) -> usize {
        match self {
            Kind::Flooder | Kind::SlowReader | Kind::Trickle => 20,
            Kind::SilentSync => 40,
            Kind::NoMetadata => 60,
        }
    }

    /// How long the bad peers work before the pings start.
    fn settle(self) -> Duration {
        match self {
            // The deadline passes half a second into the pings.
            Kind::NoMetadata => METADATA_DEADLINE - Duration::from_millis(500),
            Kind::Flooder | Kind::SlowReader => Duration::from_millis(500),
            Kind::SilentSync | Kind::Trickle => Duration::from_millis(200),
        }
    }
}

/// What one bad peer did.
#[derive(Default)]
struct Tally {
    /// It got in place and was let loose.
    started: bool,
    /// Requests written (flooders, slow readers) or bytes of ClientHello (tricklers).
    requests: u64,
    /// The CP closed or broke the connection before the phase ended.
    ended_by_cp: bool,
    /// The thread had not ended when the phase was torn down.
    stuck: bool,
}

/// A set of bad peers, one thread each, torn down together.
struct Crowd {
    stop: Arc<AtomicBool>,
    /// A handle on every bad peer's socket, to unblock them at the end.
    socks: Arc<Mutex<Vec<TcpStream>>>,
    threads: Vec<(Kind, JoinHandle<Tally>)>,
    ready: Receiver<Result<(), String>>,
    /// Dropped to let every bad peer loose at once, once all are in place.
    go: Option<Sender<()>>,
}

impl Crowd {
    fn start(addr: SocketAddr, tls: &ClientTls, mix: &[(Kind, usize)]) -> Crowd {
        let stop = Arc::new(AtomicBool::new(false));
        let socks = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready) = crossbeam_channel::unbounded();
        let (go_tx, go) = crossbeam_channel::bounded(0);
        let until = Instant::now() + BAD_PEER_LIFETIME;
        let mut threads = Vec::new();
        for &(kind, count) in mix {
            for i in 0..count {
                let ctx = BadCtx {
                    kind,
                    node_id: format!("{BAD}{}-{i}", kind.name()),
                    addr,
                    tls: tls.clone(),
                    stop: stop.clone(),
                    socks: socks.clone(),
                    ready: ready_tx.clone(),
                    go: go.clone(),
                    until,
                };
                let spawned = std::thread::Builder::new()
                    .name(ctx.node_id.clone())
                    .stack_size(256 * 1024)
                    .spawn(move || ctx.run());
                match spawned {
                    Ok(h) => threads.push((kind, h)),
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("spawning a bad peer: {e}")));
                    }
                }
            }
        }
        Crowd {
            stop,
            socks,
            threads,
            ready,
            go: Some(go_tx),
        }
    }

    /// Waits until every bad peer is in place (connected, and negotiated and reported as
    /// its kind does) or failed to get there, then lets them all loose: (ready, failed).
    fn start_all(&mut self, patience: Duration) -> (usize, usize) {
        let deadline = Instant::now() + patience;
        let (mut ok, mut failed) = (0, 0);
        while ok + failed < self.threads.len() {
            match self.ready.recv_deadline(deadline) {
                Ok(Ok(())) => ok += 1,
                Ok(Err(e)) => {
                    if failed == 0 {
                        eprintln!("isolation: a bad peer did not start: {e}");
                    }
                    failed += 1;
                }
                Err(_) => break,
            }
        }
        self.go.take();
        (ok, failed)
    }

    /// Stops every bad peer, waits up to `patience` for their threads, then closes their
    /// sockets (a close with unread data resets the connection, which unblocks any CP
    /// thread still writing to it).
    fn finish(mut self, patience: Duration) -> Vec<(Kind, Tally)> {
        self.stop_all();
        let deadline = Instant::now() + patience;
        let mut out = Vec::new();
        for (kind, h) in std::mem::take(&mut self.threads) {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                out.push((kind, h.join().unwrap_or_default()));
            } else {
                out.push((
                    kind,
                    Tally {
                        stuck: true,
                        ..Tally::default()
                    },
                ));
            }
        }
        lock(&self.socks).clear();
        out
    }

    /// Tells every bad peer to stop and unblocks any that waits on its socket.
    fn stop_all(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.go.take();
        for s in lock(&self.socks).iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Crowd {
    /// A phase that ends early (an error) still stops its bad peers.
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Everything one bad peer's thread needs.
struct BadCtx {
    kind: Kind,
    node_id: String,
    addr: SocketAddr,
    tls: ClientTls,
    stop: Arc<AtomicBool>,
    socks: Arc<Mutex<Vec<TcpStream>>>,
    ready: Sender<Result<(), String>>,
    go: Receiver<()>,
    until: Instant,
}

impl BadCtx {
    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.until
    }

    fn run(self) -> Tally {
        let mut tally = Tally::default();
        let result = match self.kind {
            Kind::Trickle => self.trickle(&mut tally),
            _ => self.wrpc_peer(&mut tally),
        };
        match result {
            Err(e) if tally.started && !self.done() => {
                tally.ended_by_cp = true;
                log::debug!("{}: {e}", self.node_id);
            }
            _ => {}
        }
        tally
    }

    /// Signals readiness (or why not) and keeps a handle on the socket.
    fn in_place(&self, sock: &TcpStream) -> Result<(), String> {
        let clone = sock.try_clone().map_err(|e| e.to_string());
        match clone {
            Ok(c) => {
                lock(&self.socks).push(c);
                let _ = self.ready.send(Ok(()));
                // Wait for the others (the channel closes on release).
                let _ = self.go.recv_deadline(self.until);
                Ok(())
            }
            Err(e) => {
                let _ = self.ready.send(Err(e.clone()));
                Err(e)
            }
        }
    }

    fn wrpc_peer(&self, tally: &mut Tally) -> Result<(), String> {
        let mut dp = match RawDp::dial(self.addr, &self.tls, &self.node_id) {
            Ok(dp) => dp,
            Err(e) => {
                let _ = self.ready.send(Err(e.clone()));
                return Err(e);
            }
        };
        let report = self.kind != Kind::NoMetadata;
        if let Err(e) = dp.handshake(report) {
            let _ = self.ready.send(Err(format!("{}: {e}", self.node_id)));
            return Err(e);
        }
        self.in_place(&dp.sock)?;
        tally.started = true;
        match self.kind {
            Kind::Flooder => self.flood(&mut dp, tally),
            Kind::SlowReader => self.read_slowly(&mut dp, tally),
            _ => self.read_and_ignore(&mut dp),
        }
    }

    /// PingCP and ReportMetadata as fast as the CP takes them; never reads.
    fn flood(&self, dp: &mut RawDp, tally: &mut Tally) -> Result<(), String> {
        let ping = PingCPRequest {
            hash: "0".repeat(32),
        };
        let meta = ReportMetadataRequest::default();
        while !self.done() && tally.requests < 100_000_000 {
            if dp.drained() {
                for _ in 0..16 {
                    dp.queue::<PingCP>(&ping);
                    dp.queue::<ReportMetadata>(&meta);
                }
                tally.requests += 32;
            }
            dp.flush(Instant::now() + WRITE_SLICE)?;
        }
        Ok(())
    }

    /// Every 50 ms: 50 PingCP requests queued (once the last ones are written), 64 bytes read.
    fn read_slowly(&self, dp: &mut RawDp, tally: &mut Tally) -> Result<(), String> {
        let ping = PingCPRequest {
            hash: "0".repeat(32),
        };
        dp.sock
            .set_read_timeout(Some(Duration::from_millis(5)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let mut next = Instant::now();
        // One wake-up per read: the pings of a read's 50 ms go out together, so the
        // peer's own cost on the shared cores stays small; the CP sees the same rate.
        while !self.done() && tally.requests < 10_000_000 {
            if dp.drained() {
                for _ in 0..SLOW_READER_PINGS_PER_READ {
                    dp.queue::<PingCP>(&ping);
                }
                tally.requests += SLOW_READER_PINGS_PER_READ as u64;
            }
            dp.flush(Instant::now() + Duration::from_millis(1))?;
            match dp.sock.read(&mut buf) {
                Ok(0) => return Err("the CP closed the connection".into()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e.to_string()),
            }
            next += SLOW_READ_EVERY;
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        Ok(())
    }

    /// Reads and drops everything the CP sends; answers nothing, sends nothing.
    fn read_and_ignore(&self, dp: &mut RawDp) -> Result<(), String> {
        dp.sock
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        while !self.done() {
            match dp.sock.read(&mut buf) {
                Ok(0) => return Err("the CP closed the connection".into()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    /// A TLS ClientHello, one byte every 50 ms.
    fn trickle(&self, tally: &mut Tally) -> Result<(), String> {
        let started = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| e.to_string())
            .and_then(|s| {
                let mut session = self
                    .tls
                    .session("kong_clustering")
                    .map_err(|e| e.to_string())?;
                let mut hello = Vec::new();
                session.write_tls(&mut hello).map_err(|e| e.to_string())?;
                s.set_write_timeout(Some(WRITE_SLICE))
                    .map_err(|e| e.to_string())?;
                Ok((s, hello))
            });
        let (mut sock, hello) = match started {
            Ok(pair) => pair,
            Err(e) => {
                let _ = self.ready.send(Err(e.clone()));
                return Err(e);
            }
        };
        self.in_place(&sock)?;
        tally.started = true;
        for byte in hello {
            if self.done() {
                return Ok(());
            }
            sock.write_all(&[byte]).map_err(|e| e.to_string())?;
            tally.requests += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A DP written by hand on top of [`dial`]: it frames, masks and encrypts its own
/// WebSocket messages through its own rustls session, and reads only when asked to, so
/// it can stop reading altogether (no reader thread, unlike the crate's channel).
struct RawDp {
    session: rustls::ClientConnection,
    sock: TcpStream,
    decoder: Decoder,
    seq: u32,
    /// Plaintext frames not yet taken by the session, from `sent` on.
    out: Vec<u8>,
    sent: usize,
}

impl RawDp {
    fn dial(addr: SocketAddr, tls: &ClientTls, node_id: &str) -> Result<RawDp, String> {
        let node = NodeIdentity::new(node_id, node_id, dpspec::dp::DEFAULT_KONG_VERSION);
        let mut opts = DialOptions::new("127.0.0.1", addr.port(), tls.clone(), node);
        opts = opts.connect_timeout(Duration::from_secs(10));
        let d = dial(&opts, &UpgradeTarget::wrpc()).map_err(|e| format!("{node_id}: {e}"))?;
        d.sock
            .set_write_timeout(Some(WRITE_SLICE))
            .map_err(|e| e.to_string())?;
        let mut decoder = Decoder::new(Role::Client, 64 * 1024 * 1024);
        decoder.buffer().extend_from_slice(&d.leftover);
        Ok(RawDp {
            session: d.session,
            sock: d.sock,
            decoder,
            seq: 0,
            out: Vec::new(),
            sent: 0,
        })
    }

    /// NegotiateServices and its answer, then ReportMetadata if `report`, whose answer is
    /// not waited for: it may come after the whole config push, which a slow reader must
    /// leave in its socket.
    fn handshake(&mut self, report: bool) -> Result<(), String> {
        let until = Instant::now() + Duration::from_secs(10);
        let node = dp_request(dpspec::dp::DEFAULT_KONG_VERSION, "bad");
        let answer = self.call::<NegotiateServices>(&node, until)?;
        let resp: NegotiateServicesResponse =
            prost::Message::decode(&answer[..]).map_err(|e| e.to_string())?;
        check_response(&resp)?;
        if report {
            self.queue::<ReportMetadata>(&ReportMetadataRequest::default());
            self.send_all(until)?;
        }
        Ok(())
    }

    /// Queues one request for `R` as a masked binary frame.
    fn queue<R: Rpc>(&mut self, req: &R::Request) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        let body = prost::Message::encode_to_vec(req);
        let deadline = deadline_after(Duration::from_secs(60));
        let msg = PayloadV1::request(R::SERVICE_ID, R::RPC_ID, self.seq, deadline, body);
        let envelope = encode_envelope(&msg);
        let mask = self.seq.wrapping_mul(0x9e37_79b9).to_be_bytes();
        write_header(
            &mut self.out,
            OpCode::Data(Data::Binary),
            envelope.len(),
            Some(mask),
        );
        let start = self.out.len();
        self.out.extend_from_slice(&envelope);
        apply_mask(&mut self.out[start..], mask, 0);
        self.seq
    }

    /// Whether everything queued has reached the socket.
    fn drained(&self) -> bool {
        self.sent == self.out.len() && !self.session.wants_write()
    }

    /// Encrypts and writes what is queued until it is all written or `until` passes
    /// (what is left stays queued). Errors when the connection is gone.
    fn flush(&mut self, until: Instant) -> Result<(), String> {
        loop {
            if self.sent < self.out.len() {
                let n = self
                    .session
                    .writer()
                    .write(&self.out[self.sent..])
                    .map_err(|e| e.to_string())?;
                self.sent += n;
            }
            if !self.session.wants_write() {
                if self.sent == self.out.len() {
                    self.out.clear();
                    self.sent = 0;
                    return Ok(());
                }
                continue;
            }
            match self.session.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    if Instant::now() >= until {
                        return Ok(());
                    }
                }
                Err(e) => return Err(format!("writing: {e}")),
            }
        }
    }

    /// Flushes until everything queued is written; an error past `until`.
    fn send_all(&mut self, until: Instant) -> Result<(), String> {
        while !self.drained() {
            if Instant::now() >= until {
                return Err("could not send in time".into());
            }
            self.flush(until)?;
        }
        Ok(())
    }

    /// Calls `R` and waits for its answer (skipping anything else), until `until`.
    fn call<R: Rpc>(&mut self, req: &R::Request, until: Instant) -> Result<Vec<u8>, String> {
        let seq = self.queue::<R>(req);
        self.send_all(until)?;
        loop {
            let message = self.recv(until)?;
            let Some(p) = decode_envelope(&message)
                .map_err(|e| e.to_string())?
                .payload
            else {
                continue;
            };
            if p.ack != seq {
                continue;
            }
            if p.mtype == MessageType::Error as i32 {
                let e = p.error.unwrap_or_default();
                return Err(format!("{}: ERROR {}", R::NAME, e.description));
            }
            return Ok(p.into_body());
        }
    }

    /// The next binary message from the CP, until `until`.
    fn recv(&mut self, until: Instant) -> Result<Vec<u8>, String> {
        let mut plain = vec![0u8; 16 * 1024];
        loop {
            match self.decoder.next() {
                Ok(Some(Frame::Binary(b))) => return Ok(b),
                Ok(Some(Frame::Close(c))) => return Err(format!("the CP closed: {c:?}")),
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(v) => return Err(v.reason),
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("no answer in time".into());
            }
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(|e| e.to_string())?;
            match self.session.read_tls(&mut self.sock) {
                Ok(0) => return Err("the CP closed the connection".into()),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => continue,
                Err(e) => return Err(e.to_string()),
            }
            self.session
                .process_new_packets()
                .map_err(|e| e.to_string())?;
            loop {
                match self.session.reader().read(&mut plain) {
                    Ok(0) => return Err("the CP ended TLS".into()),
                    Ok(n) => self.decoder.buffer().extend_from_slice(&plain[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
        }
    }
}
