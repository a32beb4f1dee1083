//! Fan-out benchmark: one control plane (this process, the real [`ControlPlane`]) and N
//! data planes in a second process (this program again, in `dps` mode), all on loopback.
//!
//! ```text
//! cargo run --release --example fanout -- run -n 1000 --size 1048576 --runs 5 [--protocol json]
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
//! One JSON line per measurement on stdout. The DPs are lean (examples/common/fleet.rs,
//! shared with examples/isolation.rs), and speak wRPC or, with `--protocol json`, Kong's
//! JSON protocol: wRPC DPs ack each SyncConfig after checking its version, hash and gzip
//! framing; JSON DPs ack each `reconfigure` with a ping carrying its hash; every 1000th
//! DP of either kind inflates the config and checks Kong's hash of it.
//!
//! `limit` measures what this machine allows for the same bytes without this crate: see
//! examples/common/limit.rs.
//!
//! ```text
//! cargo run --release --example fanout -- limit -n 10000 --size 1048576 --runs 5 [--lanes 16]
//! ```
//!
//! Raise the open-file limit first (each connection holds several descriptors on each
//! side): `bench/fanout.sh` does.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use dpspec::cp::CpEvent;
use dpspec::tls::Identity;
use dpspec::ControlPlane;
use dpspec::Protocol;
use fleet::{config, proc_status, services_for};
use limit::{cpu_seconds, LimitFlags};
use serde_json::{json, Value};

#[path = "common/flags.rs"]
mod flags;
#[path = "common/fleet.rs"]
mod fleet;
#[path = "common/limit.rs"]
mod limit;
#[path = "common/rss.rs"]
mod rss;

const USAGE: &str = "usage:
  fanout run [-n DPS] [--size GZIPPED_BYTES] [--runs R] [--connectors K] [--protocol wrpc|json]
  fanout dps --addr ADDR --cert PEM --key PEM -n DPS [--connectors K] [--protocol wrpc|json]
  fanout limit [-n CONNECTIONS] [--size BYTES] [--runs R] [--lanes L] [--chunk BYTES] [--read BYTES]";

fn main() -> ExitCode {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error"))
        .target(env_logger::Target::Stderr)
        .try_init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Flags::parse(&args[1..]).and_then(|f| run(&f)),
        Some("dps") => Flags::parse(&args[1..])
            .and_then(|f| fleet::dps(&f.addr, &f.cert, &f.key, f.n, f.connectors, f.protocol)),
        Some("limit") => Flags::parse(&args[1..]).and_then(|f| limit::run(&f.limit())),
        Some("limit-dps") => Flags::parse(&args[1..])
            .and_then(|f| limit::receivers(&f.addr, &f.cert, &f.key, &f.limit())),
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
    /// Seconds to stay up, idle, after the idle measurement (to inspect the processes).
    hold: u64,
    /// What the lean DPs speak: `wrpc` (default) or `json`.
    protocol: Protocol,
    /// `limit`: sender/receiver pairs, plaintext sealed per write, bytes per read.
    lanes: usize,
    chunk: usize,
    read: usize,
    sndbuf: usize,
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
            hold: 0,
            protocol: Protocol::Wrpc,
            lanes: 16,
            chunk: 256 * 1024,
            read: 256 * 1024,
            sndbuf: 0,
            addr: String::new(),
            cert: String::new(),
            key: String::new(),
        };
        for flag in flags::pairs(args, USAGE, &[]) {
            let flag = flag?;
            let value = flag.text;
            match flag.name {
                "-n" => f.n = flag.num()?,
                "--size" => f.size = flag.num()?,
                "--runs" => f.runs = flag.num()?,
                "--connectors" => f.connectors = flag.num()?.max(1),
                "--hold" => f.hold = flag.num()? as u64,
                "--protocol" => {
                    f.protocol = match value {
                        "wrpc" => Protocol::Wrpc,
                        "json" => Protocol::Json,
                        other => return Err(format!("--protocol {other}: wrpc or json")),
                    }
                }
                "--lanes" => f.lanes = flag.num()?.max(1),
                "--chunk" => f.chunk = flag.num()?.max(1),
                "--read" => f.read = flag.num()?.max(1),
                "--sndbuf" => f.sndbuf = flag.num()?,
                "--addr" => f.addr = value.to_string(),
                "--cert" => f.cert = value.to_string(),
                "--key" => f.key = value.to_string(),
                _ => return Err(flag.unknown()),
            }
        }
        Ok(f)
    }

    fn limit(&self) -> LimitFlags {
        LimitFlags {
            n: self.n,
            size: self.size,
            runs: self.runs,
            lanes: self.lanes,
            chunk: self.chunk,
            read: self.read,
            sndbuf: self.sndbuf,
        }
    }
}

fn run(f: &Flags) -> Result<(), String> {
    let certs = fleet::cert_files("fanout")?;

    let services = services_for(f.size);
    let configs: Vec<Value> = (0..f.runs).map(|r| config(services, r + 1)).collect();

    let identity = Identity::from_pem(certs.cert.as_bytes(), certs.key.as_bytes())
        .map_err(|e| e.to_string())?;
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
    let kinds_cp = rss::Rss::now();
    println!(
        "{}",
        json!({"event": "cp-started", "rss_kib": rss_cp, "threads": threads_cp,
               "rss_kib_before_cp": rss0, "threads_before_cp": threads0})
    );

    let t_connect = Instant::now();
    let (mut child, lines) = fleet::spawn_dps(
        &cp.local_addr().to_string(),
        &certs.cert_path,
        &certs.key_path,
        f.n,
        f.connectors,
        f.protocol,
    )?;

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
    let kinds_idle = rss::Rss::now();
    let per_dp = (rss_idle.saturating_sub(rss_cp) as f64 * 1024.0 / f.n.max(1) as f64).round();
    println!(
        "{}",
        json!({"event": "idle", "dps": f.n, "connect_seconds": (connect_secs * 100.0).round() / 100.0,
               "cp_rss_kib": rss_idle, "cp_threads": threads_idle,
               "cp_rss_bytes_per_dp": per_dp, "cp_threads_per_dp": (threads_idle - threads_cp) as f64 / f.n.max(1) as f64,
               "cp_rss_bytes_per_dp_by_kind": kinds_idle.per(&kinds_cp, f.n)})
    );
    if f.hold > 0 {
        eprintln!(
            "fanout: holding for {} s: CP pid {}, DP process pid {}",
            f.hold,
            std::process::id(),
            child.id()
        );
        std::thread::sleep(Duration::from_secs(f.hold));
    }

    let mut times = Vec::new();
    let mut cpus = Vec::new();
    let dps_pid = Some(child.id());
    for (r, cfg) in configs.into_iter().enumerate() {
        let (cpu_cp0, cpu_dps0) = (cpu_seconds(None), cpu_seconds(dps_pid));
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
        let cpu_cp = cpu_seconds(None) - cpu_cp0;
        let cpu_dps = cpu_seconds(dps_pid) - cpu_dps0;
        times.push(all.as_secs_f64());
        cpus.push(cpu_cp + cpu_dps);
        let (rss, threads) = proc_status();
        println!(
            "{}",
            json!({"event": "pushed", "run": r + 1, "version": version, "dps": f.n,
                   "gzipped_bytes": f.size, "services": services,
                   "set_config_seconds": (stored.as_secs_f64() * 1e4).round() / 1e4,
                   "all_acked_seconds": (all.as_secs_f64() * 1e4).round() / 1e4,
                   "cpu_seconds_cp": (cpu_cp * 100.0).round() / 100.0,
                   "cpu_seconds_dps": (cpu_dps * 100.0).round() / 100.0,
                   "cp_rss_kib": rss, "cp_threads": threads})
        );
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    cpus.sort_by(|a, b| a.total_cmp(b));
    let median_cpu = cpus.get(cpus.len() / 2).copied().unwrap_or(0.0);
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
               "median_cpu_seconds_per_push": (median_cpu * 100.0).round() / 100.0,
               "cpu_seconds_cp_total": (cpu_seconds(None) * 100.0).round() / 100.0,
               "cpu_seconds_dps_total": (cpu_seconds(dps_pid) * 100.0).round() / 100.0,
               "cp_rss_bytes_per_idle_dp": per_dp, "cp_threads_idle": threads_idle,
               "cp_rss_kib_after_pushes": rss_end, "cp_threads_after_pushes": threads_end})
    );
    drop(child.stdin.take());
    let t = Instant::now();
    cp.shutdown();
    let _ = child.wait();
    eprintln!("fanout: shut down in {:.2} s", t.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&certs.dir);
    Ok(())
}
