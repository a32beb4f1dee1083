//! The data plane process of examples/storm.rs: N lean wRPC DPs (examples/common/fleet.rs)
//! that reconnect when their connection ends, each with a TLS session store of its own
//! (as N separate data planes have), so that each offers its own ticket.
//!
//! Commands on stdin, one a line:
//! - `mode once`: a DP whose connection ends waits for `go` (every DP reconnecting at the
//!   same moment: the worst case). `dps-down` is printed once all N are waiting.
//! - `mode jitter`: a DP whose connection ends reconnects after Kong's delay, a random
//!   whole number of seconds from 5 to 10.
//! - `go`: every waiting DP connects now: all are queued at once for the connector
//!   threads (`--connectors`, default 1000: more than the CP's 512 connections in the
//!   handshake phase, so the CP always has a full queue, without 10,000 threads to start
//!   and stop per storm, which a real fleet of separate machines does not pay either).
//! - `stats`: prints a `dps-stats` line: this process's CPU seconds, its threads, the
//!   failed connection attempts so far, and the connect times since the last `stats`:
//!   from the moment a DP wanted to connect (the `go`, or its reconnect time) until its
//!   ReportMetadata was answered (waiting for a CPU, TCP, TLS, the upgrade and
//!   NegotiateServices included).
//!
//! A failed attempt is retried after Kong's delay in either mode. The process starts in
//! `mode once` with every DP waiting, and ends when stdin closes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use dpspec::dp::Reconnect;
use dpspec::tls::ClientTls;
use dpspec::wrpc::{Peer, WorkerPool};
use serde_json::json;

use crate::fleet;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Once,
    Jitter,
}

struct Fleet {
    host: String,
    port: u16,
    tls: Vec<ClientTls>,
    pool: Arc<WorkerPool>,
    peers: Mutex<Vec<Option<Peer>>>,
    mode: Mutex<Mode>,
    /// DPs waiting for `go`.
    parked: Mutex<Vec<usize>>,
    failures: AtomicUsize,
    /// Seconds from wanting to connect to ReportMetadata answered, for each successful
    /// connect since the last `stats`.
    connect_secs: Mutex<Vec<f64>>,
    /// Reconnects due at an instant, for the scheduler thread.
    later: Sender<(Instant, usize)>,
    /// DPs to connect now, for the connector threads.
    todo: Sender<(usize, Instant)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stack of each connector thread: the handshake and two calls need little.
const CONNECT_STACK: usize = 256 * 1024;

impl Fleet {
    /// DP `i`'s connection ended (or its attempt failed, `failed`).
    fn ended(self: &Arc<Self>, i: usize, failed: bool) {
        if !failed && *lock(&self.mode) == Mode::Once {
            let mut parked = lock(&self.parked);
            parked.push(i);
            if parked.len() == self.tls.len() {
                say(json!({"event": "dps-down", "dps": parked.len()}));
            }
            return;
        }
        let _ = self
            .later
            .send((Instant::now() + Reconnect::Kong.delay(0), i));
    }

    /// Queues DP `i` for a connector; `since` is when it wanted to connect (the `go`, or
    /// its reconnect time), from which its connect time is counted.
    fn connect_now(&self, i: usize, since: Instant) {
        let _ = self.todo.send((i, since));
    }

    fn connect(self: &Arc<Self>, i: usize, since: Instant) {
        match fleet::connect_dp(i, &self.host, self.port, &self.tls[i], &self.pool) {
            Ok(peer) => {
                lock(&self.connect_secs).push(since.elapsed().as_secs_f64());
                let fleet = self.clone();
                peer.on_end(move |_| fleet.ended(i, false));
                lock(&self.peers)[i] = Some(peer);
            }
            Err(e) => {
                if self.failures.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("storm dps: DP {i}: {e}");
                }
                self.ended(i, true);
            }
        }
    }

    fn go(self: &Arc<Self>) {
        let parked = std::mem::take(&mut *lock(&self.parked));
        let now = Instant::now();
        for i in parked {
            self.connect_now(i, now);
        }
    }

    fn stats(&self) {
        let mut secs = std::mem::take(&mut *lock(&self.connect_secs));
        secs.sort_by(f64::total_cmp);
        let at = |q: f64| {
            secs.get(((secs.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        let (rss, threads) = fleet::proc_status();
        let (user, sys) = cpu_seconds();
        say(
            json!({"event": "dps-stats", "cpu_user": user, "cpu_sys": sys,
                   "threads": threads, "rss_kib": rss,
                   "failures": self.failures.load(Ordering::Relaxed),
                   "connects": secs.len(), "connect_p50": at(0.5), "connect_p99": at(0.99),
                   "connect_max": at(1.0)}),
        );
    }
}

fn say(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// This process's user and system CPU seconds, from `/proc/self/stat`.
pub fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// Runs the scheduled reconnects at their time.
fn scheduler(fleet: Arc<Fleet>, rx: Receiver<(Instant, usize)>) {
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    loop {
        let wait = due
            .peek()
            .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()));
        let got = match wait {
            Some(w) => rx.recv_timeout(w),
            None => rx
                .recv()
                .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
        };
        match got {
            Ok(item) => due.push(Reverse(item)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        while let Some(Reverse((at, i))) = due.peek().copied() {
            if at > Instant::now() {
                break;
            }
            due.pop();
            fleet.connect_now(i, at);
        }
    }
}

/// The DP process: `n` DPs of `addr`, connected by `connectors` threads, driven by stdin
/// as the header says.
pub fn run(addr: &str, cert: &str, key: &str, n: usize, connectors: usize) -> Result<(), String> {
    let cert = std::fs::read(cert).map_err(|e| format!("{cert}: {e}"))?;
    let key = std::fs::read(key).map_err(|e| format!("{key}: {e}"))?;
    let base = fleet::shared_client_tls(&cert, &key)?;
    let (host, port) = addr.rsplit_once(':').ok_or("--addr needs host:port")?;
    let port: u16 = port.parse().map_err(|_| "--addr: bad port")?;
    let (later, later_rx) = crossbeam_channel::unbounded();
    let (todo, todo_rx) = crossbeam_channel::unbounded::<(usize, Instant)>();
    let fleet = Arc::new(Fleet {
        host: host.to_string(),
        port,
        tls: (0..n).map(|_| base.with_own_sessions()).collect(),
        pool: Arc::new(WorkerPool::new("dps", 2, 65536).map_err(|e| e.to_string())?),
        peers: Mutex::new((0..n).map(|_| None).collect()),
        mode: Mutex::new(Mode::Once),
        parked: Mutex::new((0..n).collect()),
        failures: AtomicUsize::new(0),
        connect_secs: Mutex::new(Vec::with_capacity(n)),
        later,
        todo,
    });
    for c in 0..connectors.max(1) {
        let (fleet, todo) = (fleet.clone(), todo_rx.clone());
        std::thread::Builder::new()
            .name(format!("connector-{c}"))
            .stack_size(CONNECT_STACK)
            .spawn(move || {
                for (i, since) in todo {
                    fleet.connect(i, since);
                }
            })
            .map_err(|e| format!("starting connector {c}: {e}"))?;
    }
    let sched = {
        let fleet = fleet.clone();
        std::thread::spawn(move || scheduler(fleet, later_rx))
    };
    say(json!({"event": "dps-parked", "dps": n}));
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        match line.trim() {
            "mode once" => *lock(&fleet.mode) = Mode::Once,
            "mode jitter" => *lock(&fleet.mode) = Mode::Jitter,
            "go" => fleet.go(),
            "stats" => fleet.stats(),
            other => eprintln!("storm dps: unknown command {other:?}"),
        }
    }
    // Stdin closed: the CP process is done. Close every connection and leave.
    for peer in lock(&fleet.peers).iter().flatten() {
        peer.close(1000, "benchmark over");
    }
    // The scheduler holds the fleet (and so its own sender): it ends with the process.
    drop(sched);
    Ok(())
}
