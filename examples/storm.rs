//! Reconnect storm benchmark: one control plane (this process, the real [`ControlPlane`])
//! restarted under N connected data planes (a second process: this program again in `dps`
//! mode, examples/common/storm_dps.rs), all on loopback, Kong's P-384 shared certificate.
//!
//! ```text
//! cargo run --release --example storm -- run -n 10000 [--runs 3] [--scenarios once:shared,once:lost,jitter:shared,jitter:lost]
//! cargo run --release --example storm -- handshakes [-n 2000]
//! ```
//!
//! `run` starts a CP with `examples/kong.json`, starts the DP process, and lets all N DPs
//! connect at once (`initial`: full handshakes, nobody holds a ticket). Then, `--runs`
//! times, each scenario: the CP is shut down (every connection closed) and a new
//! `ControlPlane` is started on the same address (a restart: nothing of the old one is
//! kept but what the scenario hands over), and measured from the new listener being
//! ready until every DP has reconnected, negotiated, reported its metadata and acked the
//! config. Scenarios are `ARRIVAL:KEYS`:
//! - `once`: every DP reconnects at the same moment, the new CP's first instant (the
//!   worst case, no jitter); `jitter`: each DP reconnects after Kong's delay, a random
//!   whole number of seconds from 5 to 10 after its connection ended.
//! - `shared`: the new CP is given the ticket secret of the one before
//!   ([`SessionTickets::Shared`]), so the DPs' tickets open: resumed handshakes. `lost`:
//!   a new secret, as a CP whose keys do not outlive it (the default
//!   [`SessionTickets::Rotating`]): every ticket is refused, full handshakes. `off`: no
//!   tickets at all ([`SessionTickets::Off`]): full handshakes, no ticket work.
//!
//! Each measurement is one JSON line: the seconds to all re-synced, the full and resumed
//! handshakes the CP counted and their rate (count / seconds until the last one), the CPU
//! seconds of each process over the storm, the DPs' connect times (p50, p99, max: from the
//! moment each wanted to connect until its ReportMetadata was answered) and failed
//! attempts. The last line has the medians.
//!
//! `handshakes` measures one connection at a time on loopback: full and resumed
//! handshakes per second, and the CPU microseconds of each side per handshake.
//!
//! Raise the open-file limit first (one descriptor per connection on each side):
//! `bench/storm.sh` does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use dpspec::cp::CpEvent;
use dpspec::tls::{
    client_handshake, server_handshake, ClientAuth, ClientTls, Identity, ServerTls, SessionTickets,
    TicketSecret, TrustMode, KONG_SERVER_NAME,
};
use dpspec::ControlPlane;
use serde_json::{json, Value};

#[path = "common/flags.rs"]
mod flags;
#[allow(dead_code)]
#[path = "common/fleet.rs"]
mod fleet;
#[path = "common/storm_dps.rs"]
mod storm_dps;

use storm_dps::cpu_seconds;

const USAGE: &str = "usage:
  storm run [-n DPS] [--runs R] [--scenarios once:shared,once:lost,jitter:shared,jitter:lost] [--max-handshakes M] [--connectors K]
  storm handshakes [-n HANDSHAKES]
  storm dps --addr ADDR --cert PEM --key PEM -n DPS [--connectors K]";

/// How long any step may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(180);

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error"))
        .target(env_logger::Target::Stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Flags::parse(&args[1..]).and_then(|f| run(&f)),
        Some("handshakes") => Flags::parse(&args[1..]).and_then(|f| handshakes(f.n)),
        Some("dps") => Flags::parse(&args[1..])
            .and_then(|f| storm_dps::run(&f.addr, &f.cert, &f.key, f.n, f.connectors)),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("storm: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Flags {
    n: usize,
    runs: usize,
    scenarios: Vec<(bool, String)>,
    max_handshakes: Option<usize>,
    connectors: usize,
    addr: String,
    cert: String,
    key: String,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, String> {
        let mut f = Flags {
            n: 1000,
            runs: 1,
            scenarios: Vec::new(),
            max_handshakes: None,
            connectors: 1000,
            addr: String::new(),
            cert: String::new(),
            key: String::new(),
        };
        let mut scenarios = "once:shared,once:lost,jitter:shared,jitter:lost".to_string();
        for flag in flags::pairs(args, USAGE, &[]) {
            let flag = flag?;
            let value = flag.text;
            match flag.name {
                "-n" => f.n = flag.num()?,
                "--runs" => f.runs = flag.num()?.max(1),
                "--scenarios" => scenarios = value.to_string(),
                "--max-handshakes" => f.max_handshakes = Some(flag.num()?),
                "--connectors" => f.connectors = flag.num()?.max(1),
                "--addr" => f.addr = value.to_string(),
                "--cert" => f.cert = value.to_string(),
                "--key" => f.key = value.to_string(),
                _ => return Err(flag.unknown()),
            }
        }
        for s in scenarios.split(',') {
            let (arrival, keys) = s.split_once(':').unwrap_or((s, "shared"));
            let once = match arrival {
                "once" => true,
                "jitter" => false,
                other => return Err(format!("scenario {s}: arrival {other}: once or jitter")),
            };
            if !["shared", "lost", "off"].contains(&keys) {
                return Err(format!("scenario {s}: keys {keys}: shared, lost or off"));
            }
            f.scenarios.push((once, keys.to_string()));
        }
        Ok(f)
    }
}

/// A Kong-style shared certificate (EC P-384, CN `kong_clustering`, no SAN, as
/// `kong hybrid gen_cert` makes it) in a fresh temporary directory.
fn kong_cert_files() -> Result<fleet::CertFiles, String> {
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "kong_clustering");
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let (cert, key) = (cert.pem(), key.serialize_pem());
    let dir = std::env::temp_dir().join(format!("dpspec-storm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (cert_path, key_path) = (dir.join("cluster.crt"), dir.join("cluster.key"));
    std::fs::write(&cert_path, &cert).map_err(|e| e.to_string())?;
    std::fs::write(&key_path, &key).map_err(|e| e.to_string())?;
    Ok(fleet::CertFiles {
        cert,
        key,
        dir,
        cert_path,
        key_path,
    })
}

/// A fresh ticket secret (what a user keeps in a file, `openssl rand 48`).
fn new_secret() -> Result<TicketSecret, String> {
    let mut bytes = [0u8; 48];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|e| format!("{e:?}"))?;
    TicketSecret::new(&bytes).map_err(|e| e.to_string())
}

/// The DP process and its output lines.
struct Dps {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Dps {
    fn spawn(
        addr: &str,
        certs: &fleet::CertFiles,
        n: usize,
        connectors: usize,
    ) -> Result<Dps, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["dps", "--addr", addr, "-n", &n.to_string()])
            .args(["--connectors", &connectors.to_string()])
            .args(["--cert", &certs.cert_path.display().to_string()])
            .args(["--key", &certs.key_path.display().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the DP process: {e}"))?;
        let stdin = child.stdin.take().ok_or("no child stdin")?;
        let out = child.stdout.take().ok_or("no child stdout")?;
        let (tx, lines) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let dps = Dps {
            child,
            stdin,
            lines,
        };
        dps.expect("dps-parked")?;
        Ok(dps)
    }

    fn send(&mut self, command: &str) -> Result<(), String> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("the DP process: {e}"))
    }

    /// Waits for the line of `event`.
    fn expect(&self, event: &str) -> Result<Value, String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| format!("no {event} from the DP process"))?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["event"] == event {
                    return Ok(v);
                }
            }
        }
    }

    /// The DP process's CPU seconds and connect statistics.
    fn stats(&mut self) -> Result<Value, String> {
        self.send("stats")?;
        self.expect("dps-stats")
    }
}

/// CLOCK_MONOTONIC in seconds.
fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn cpu() -> f64 {
    let (u, s) = cpu_seconds();
    u + s
}

fn round(x: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (x * k).round() / k
}

/// One storm on `cp` (listening since `t0`): sets the config, lets the DPs in at once
/// (`once`) or waits for their jittered reconnects, and measures until all N have acked.
fn storm(
    cp: &ControlPlane,
    config: &Value,
    dps: &mut Dps,
    n: usize,
    once: bool,
    t0: Instant,
) -> Result<Value, String> {
    let events = cp.events();
    let start_clock = monotonic() - t0.elapsed().as_secs_f64();
    let dp_before = dps.stats()?;
    let cp_before = cpu();
    let version = cp.set_config(config.clone()).map_err(|e| e.to_string())?;
    if once {
        dps.send("go")?;
    }
    let (mut acked, mut reported, mut disconnects) = (0, 0, 0);
    let (mut handshakes_done, mut reported_at) = (None, None);
    // The events are drained every few milliseconds rather than waited for one by one:
    // a receiver parked on each of 50,000 events would cost the CP a thread wake-up
    // each, which is the benchmark's cost, not the CP's.
    while acked < n {
        if t0.elapsed() > PATIENCE {
            return Err(format!("only {acked} of {n} acked in {PATIENCE:?}"));
        }
        std::thread::sleep(Duration::from_millis(5));
        for event in events.try_iter() {
            match event {
                CpEvent::ConfigAcked { version: v, .. } if v == version => acked += 1,
                CpEvent::Metadata { .. } => {
                    reported += 1;
                    if reported == n {
                        reported_at = Some(t0.elapsed().as_secs_f64());
                    }
                }
                CpEvent::DpDisconnected { reason, .. } => {
                    if disconnects < 3 {
                        eprintln!("storm: a DP disconnected during the storm: {reason}");
                    }
                    disconnects += 1;
                }
                _ => {}
            }
        }
        if handshakes_done.is_none() {
            let (full, resumed) = cp.tls_handshakes();
            if (full + resumed) as usize >= n {
                handshakes_done = Some(t0.elapsed().as_secs_f64());
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let end_clock = monotonic();
    let cp_cpu = cpu() - cp_before;
    let dp_after = dps.stats()?;
    let dp_cpu =
        |v: &Value| v["cpu_user"].as_f64().unwrap_or(0.0) + v["cpu_sys"].as_f64().unwrap_or(0.0);
    let (full, resumed) = cp.tls_handshakes();
    let hs_secs = handshakes_done.unwrap_or(secs);
    Ok(json!({
        "seconds": round(secs, 3),
        "full": full, "resumed": resumed,
        "handshakes_done_seconds": round(hs_secs, 3),
        "all_reported_seconds": round(reported_at.unwrap_or(secs), 3),
        "handshakes_per_second": round((full + resumed) as f64 / hs_secs, 0),
        "cp_cpu_seconds": round(cp_cpu, 2),
        "dp_cpu_seconds": round(dp_cpu(&dp_after) - dp_cpu(&dp_before), 2),
        "connect_p50": round(dp_after["connect_p50"].as_f64().unwrap_or(0.0), 3),
        "connect_p99": round(dp_after["connect_p99"].as_f64().unwrap_or(0.0), 3),
        "connect_max": round(dp_after["connect_max"].as_f64().unwrap_or(0.0), 3),
        "failed_attempts": dp_after["failures"].as_u64().unwrap_or(0)
            - dp_before["failures"].as_u64().unwrap_or(0),
        "disconnects": disconnects,
        // CLOCK_MONOTONIC at the start and the end, to cut a profile (`perf record -k
        // CLOCK_MONOTONIC`, then `perf report --time START,END`).
        "clock": [round(start_clock, 3), round(end_clock, 3)],
    }))
}

fn run(f: &Flags) -> Result<(), String> {
    let certs = kong_cert_files()?;
    let config: Value =
        serde_json::from_str(include_str!("kong.json")).map_err(|e| e.to_string())?;
    let identity = Identity::from_pem(certs.cert.as_bytes(), certs.key.as_bytes())
        .map_err(|e| e.to_string())?;
    let start = |listen: &str, tickets: SessionTickets| {
        let mut b = ControlPlane::builder()
            .listen(listen)
            .identity(identity.clone())
            .session_tickets(tickets)
            .event_capacity(8 * f.n + 4096);
        if let Some(m) = f.max_handshakes {
            b = b.max_handshakes(m);
        }
        b.start().map_err(|e| e.to_string())
    };
    let mut secret = new_secret()?;
    let mut cp = start("127.0.0.1:0", SessionTickets::Shared(secret.clone()))?;
    let t0 = Instant::now();
    let addr = cp.local_addr().to_string();
    let mut dps = Dps::spawn(&addr, &certs, f.n, f.connectors)?;
    let mut m = storm(&cp, &config, &mut dps, f.n, true, t0)?;
    m["scenario"] = json!("initial");
    println!("{m}");

    let mut results: Vec<(String, Value)> = Vec::new();
    for run in 1..=f.runs {
        for (once, keys) in &f.scenarios {
            let name = format!("{}:{keys}", if *once { "once" } else { "jitter" });
            dps.send(if *once { "mode once" } else { "mode jitter" })?;
            let t = Instant::now();
            cp.shutdown();
            drop(cp);
            let stop_secs = t.elapsed().as_secs_f64();
            if *once {
                dps.expect("dps-down")?;
            }
            let tickets = match keys.as_str() {
                "shared" => SessionTickets::Shared(secret.clone()),
                "lost" => {
                    secret = new_secret()?;
                    SessionTickets::Shared(secret.clone())
                }
                _ => SessionTickets::Off,
            };
            cp = start(&addr, tickets)?;
            let t0 = Instant::now();
            let mut m = storm(&cp, &config, &mut dps, f.n, *once, t0)?;
            m["scenario"] = json!(name);
            m["run"] = json!(run);
            m["dps"] = json!(f.n);
            m["shutdown_seconds"] = json!(round(stop_secs, 2));
            println!("{m}");
            results.push((name, m));
        }
    }
    let mut summary = serde_json::Map::new();
    for (once, keys) in &f.scenarios {
        let name = format!("{}:{keys}", if *once { "once" } else { "jitter" });
        let median = |field: &str| {
            let mut v: Vec<f64> = results
                .iter()
                .filter(|(n, _)| *n == name)
                .filter_map(|(_, m)| m[field].as_f64())
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        summary.insert(
            name.clone(),
            json!({"seconds": median("seconds"), "cp_cpu_seconds": median("cp_cpu_seconds"),
                   "dp_cpu_seconds": median("dp_cpu_seconds"),
                   "handshakes_per_second": median("handshakes_per_second"),
                   "connect_p99": median("connect_p99")}),
        );
    }
    println!(
        "{}",
        json!({"event": "summary", "dps": f.n, "runs": f.runs, "medians": summary})
    );
    drop(dps.stdin);
    cp.shutdown();
    let _ = dps.child.wait();
    let _ = std::fs::remove_dir_all(&certs.dir);
    Ok(())
}

/// CPU seconds of the calling thread, from `/proc/thread-self/stat`.
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `n` handshakes one at a time, full then resumed: rate and CPU per handshake per side.
fn handshakes(n: usize) -> Result<(), String> {
    let certs = kong_cert_files()?;
    let id = || Identity::from_pem(certs.cert.as_bytes(), certs.key.as_bytes());
    let server = ServerTls::new(id().map_err(|e| e.to_string())?, ClientAuth::Shared(None))
        .map_err(|e| e.to_string())?;
    let trust = TrustMode::pinned_pem(certs.cert.as_bytes()).map_err(|e| e.to_string())?;
    let client =
        ClientTls::new(trust, Some(id().map_err(|e| e.to_string())?)).map_err(|e| e.to_string())?;
    for (kind, tls) in [
        ("full", client.without_resumption()),
        ("resumed", client.clone()),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let server = server.clone();
        // One warm-up connection gives the resumed run its first ticket.
        let total = n + 1;
        let serving = std::thread::spawn(move || {
            let mut cpu0 = 0.0;
            let mut resumed = 0;
            for i in 0..total {
                let Ok((mut sock, _)) = listener.accept() else {
                    break;
                };
                let _ = sock.set_nodelay(true);
                if i == 1 {
                    cpu0 = thread_cpu();
                }
                let mut conn = server.session().expect("session");
                if server_handshake(&mut conn, &mut sock).is_ok() {
                    resumed +=
                        usize::from(conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed));
                    let _ = rustls::Stream::new(&mut conn, &mut sock).write_all(b"!");
                }
                let mut sink = [0u8; 64];
                while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
            }
            (thread_cpu() - cpu0, resumed)
        });
        let mut t = Instant::now();
        let mut cpu0 = 0.0;
        for i in 0..total {
            if i == 1 {
                t = Instant::now();
                cpu0 = thread_cpu();
            }
            let mut sock =
                std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            let _ = sock.set_nodelay(true);
            let mut conn = tls.session(KONG_SERVER_NAME).map_err(|e| e.to_string())?;
            client_handshake(&mut conn, &mut sock).map_err(|e| e.to_string())?;
            let mut byte = [0u8; 1];
            rustls::Stream::new(&mut conn, &mut sock)
                .read_exact(&mut byte)
                .map_err(|e| e.to_string())?;
        }
        let secs = t.elapsed().as_secs_f64();
        let client_cpu = thread_cpu() - cpu0;
        let (server_cpu, resumed) = serving.join().map_err(|_| "the server thread panicked")?;
        println!(
            "{}",
            json!({"event": "handshakes", "kind": kind, "n": n, "resumed": resumed,
                   "per_second": round(n as f64 / secs, 0),
                   "server_cpu_us": round(server_cpu * 1e6 / n as f64, 1),
                   "client_cpu_us": round(client_cpu * 1e6 / n as f64, 1)})
        );
    }
    let _ = std::fs::remove_dir_all(&certs.dir);
    Ok(())
}
