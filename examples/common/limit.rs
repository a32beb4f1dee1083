//! The machine's limit for a fan-out: the same bytes sealed by rustls server connections,
//! sent over loopback TCP to rustls client connections in a second process, and opened
//! there, with nothing of this crate in between (no WebSocket, no outbox, no wRPC).
//!
//! `fanout limit -n N --size BYTES [--runs R] [--lanes L] [--chunk BYTES] [--read BYTES]`
//! connects N TLS connections (not timed), then R times sends one message of `--size`
//! incompressible bytes (fresh for each run) down every connection and times it until the
//! second process has opened every byte. `--lanes` pairs of threads do the work, one
//! sender in this process and one receiver in the other for each lane, each lane taking
//! its connections one after another, each message until the receiver's one-byte answer
//! (as the fan-out's window keeps 16 pushes on the wire at once, each until the data
//! plane answers); a sender seals `--chunk` bytes at a time and writes them with one
//! vectored write, a receiver reads up to `--read` bytes per system call and feeds them to
//! rustls. Every connection's message is checked by length and head, every 1000th byte
//! for byte.
//!
//! Included by examples/fanout.rs (`#[path = "common/limit.rs"] mod limit;`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dpspec::tls::{ClientAuth, Identity, ServerTls};
use rustls::{ClientConnection, ServerConnection};
use serde_json::{json, Value};

use crate::fleet;

/// What `fanout limit` and its second process (`fanout limit-dps`) are told.
pub struct LimitFlags {
    pub n: usize,
    pub size: usize,
    pub runs: usize,
    pub lanes: usize,
    pub chunk: usize,
    pub read: usize,
    /// SO_SNDBUF of the senders' sockets (0: the kernel's autotuning).
    pub sndbuf: usize,
}

/// CPU seconds (user + system) used so far by process `pid` (`None`: this one), from
/// `/proc/PID/stat`.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let hz = 100.0; // USER_HZ on Linux
    (ticks(11) + ticks(12)) / hz
}

/// The message of run `run`: incompressible bytes (xorshift), different for every run.
fn payload(size: usize, run: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d ^ (run as u64 + 1).wrapping_mul(0x9e37_79b9);
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

fn round(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// `fanout limit`: the sending side, in this process.
pub fn run(f: &LimitFlags) -> Result<(), String> {
    let certs = fleet::cert_files("limit")?;
    let identity = Identity::from_pem(certs.cert.as_bytes(), certs.key.as_bytes())
        .map_err(|e| e.to_string())?;
    let server = ServerTls::new(identity, ClientAuth::None).map_err(|e| e.to_string())?;
    let config = server.config().clone();
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(["limit-dps", "--addr", &addr.to_string()])
        .args(["--cert", &certs.cert_path.display().to_string()])
        .args(["--key", &certs.key_path.display().to_string()])
        .args(["-n", &f.n.to_string(), "--size", &f.size.to_string()])
        .args([
            "--runs",
            &f.runs.to_string(),
            "--lanes",
            &f.lanes.to_string(),
        ])
        .args(["--read", &f.read.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the receiving process: {e}"))?;
    let child_pid = child.id();
    let out = child.stdout.take().ok_or("no child stdout")?;
    let (line_tx, lines) = crossbeam_channel::unbounded::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });

    // Accept and handshake every connection; each one's first 4 plaintext bytes say which
    // it is.
    let t = Instant::now();
    let slots: Vec<Mutex<Option<(ServerConnection, TcpStream)>>> =
        (0..f.n).map(|_| Mutex::new(None)).collect();
    let accepted = AtomicUsize::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                if accepted.fetch_add(1, Ordering::SeqCst) >= f.n {
                    return;
                }
                let got = listener
                    .accept()
                    .map_err(|e| e.to_string())
                    .and_then(|(sock, _)| accept_one(sock, &config, f.sndbuf));
                match got {
                    Ok((i, conn, sock)) if i < f.n => {
                        *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some((conn, sock))
                    }
                    Ok((i, _, _)) => {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(format!("connection index {i} out of range"));
                        return;
                    }
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let _ = child.kill();
        return Err(format!("accepting: {e}"));
    }
    let mut conns: Vec<(ServerConnection, TcpStream)> = Vec::with_capacity(f.n);
    for slot in slots {
        conns.push(
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .ok_or("a connection is missing")?,
        );
    }
    wait_line(&lines, "limit-ready")?;
    println!(
        "{}",
        json!({"event": "limit-connected", "connections": f.n,
               "seconds": round(t.elapsed().as_secs_f64())})
    );

    // Lane j sends to connections j, j + L, j + 2L, ...
    let lanes = f.lanes.clamp(1, f.n.max(1));
    let mut by_lane: Vec<Vec<(ServerConnection, TcpStream)>> =
        (0..lanes).map(|_| Vec::new()).collect();
    for (i, c) in conns.into_iter().enumerate() {
        by_lane[i % lanes].push(c);
    }
    let mut times = Vec::new();
    let mut cpus = Vec::new();
    for run in 0..f.runs {
        let message = payload(f.size, run);
        let (cpu_s0, cpu_r0) = (cpu_seconds(None), cpu_seconds(Some(child_pid)));
        let t = Instant::now();
        let sent: Result<Vec<()>, String> = std::thread::scope(|s| {
            let handles: Vec<_> = by_lane
                .iter_mut()
                .map(|lane| {
                    let message = &message;
                    s.spawn(move || -> Result<(), String> {
                        for (conn, sock) in lane.iter_mut() {
                            send(conn, sock, message, f.chunk)?;
                            wait_ack(conn, sock)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("a sender panicked".into())))
                .collect()
        });
        sent?;
        let line = wait_line(&lines, "limit-received")?;
        let all = t.elapsed().as_secs_f64();
        let cpu_s = cpu_seconds(None) - cpu_s0;
        let cpu_r = cpu_seconds(Some(child_pid)) - cpu_r0;
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["run"].as_u64() != Some(run as u64) {
            return Err(format!("expected run {run}, got {line}"));
        }
        times.push(all);
        cpus.push(cpu_s + cpu_r);
        println!(
            "{}",
            json!({"event": "limit-run", "run": run + 1, "connections": f.n, "bytes": f.size,
                   "lanes": lanes, "seconds": round(all),
                   "gib_per_second": round((f.n * f.size) as f64 / all / (1u64 << 30) as f64),
                   "cpu_seconds_sender": round(cpu_s), "cpu_seconds_receiver": round(cpu_r)})
        );
    }
    times.sort_by(|a, b| a.total_cmp(b));
    cpus.sort_by(|a, b| a.total_cmp(b));
    let median = |v: &[f64]| v.get(v.len() / 2).copied().unwrap_or(0.0);
    println!(
        "{}",
        json!({"event": "limit-summary", "connections": f.n, "bytes": f.size, "runs": times.len(),
               "lanes": lanes, "chunk": f.chunk, "read": f.read,
               "median_seconds": round(median(&times)),
               "median_cpu_seconds": round(median(&cpus))})
    );
    drop(child.stdin.take());
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&certs.dir);
    Ok(())
}

/// Waits (at most 10 minutes) for the second process's line with `event`.
fn wait_line(lines: &crossbeam_channel::Receiver<String>, event: &str) -> Result<String, String> {
    let want = format!("\"{event}\"");
    loop {
        match lines.recv_timeout(Duration::from_secs(600)) {
            Ok(line) if line.contains(&want) => return Ok(line),
            Ok(line) if line.contains("\"error\"") => return Err(line),
            Ok(_) => {}
            Err(_) => return Err(format!("no {event} from the receiving process")),
        }
    }
}

/// Handshakes one accepted connection and reads which one it is.
fn accept_one(
    mut sock: TcpStream,
    config: &Arc<rustls::ServerConfig>,
    sndbuf: usize,
) -> Result<(usize, ServerConnection, TcpStream), String> {
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    if sndbuf > 0 {
        socket2::SockRef::from(&sock)
            .set_send_buffer_size(sndbuf)
            .map_err(|e| e.to_string())?;
    }
    let mut conn = ServerConnection::new(config.clone()).map_err(|e| e.to_string())?;
    let mut index = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        if conn.is_handshaking() || conn.wants_write() {
            conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
        }
        match conn.reader().read(&mut index[got..]) {
            Ok(0) => return Err("closed before its index".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if conn.read_tls(&mut sock).map_err(|e| e.to_string())? == 0 {
                    return Err("closed before its index".into());
                }
                conn.process_new_packets().map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    while conn.wants_write() {
        conn.write_tls(&mut sock).map_err(|e| e.to_string())?;
    }
    // The whole message may wait sealed in rustls until the socket takes it.
    conn.set_buffer_limit(None);
    Ok((u32::from_le_bytes(index) as usize, conn, sock))
}

/// Seals `message` `chunk` bytes at a time, each chunk's records written with vectored
/// writes straight from rustls's buffer.
fn send(
    conn: &mut ServerConnection,
    sock: &mut TcpStream,
    message: &[u8],
    chunk: usize,
) -> Result<(), String> {
    for piece in message.chunks(chunk.max(1)) {
        conn.writer()
            .write_all(piece)
            .map_err(|e| format!("sealing: {e}"))?;
        while conn.wants_write() {
            conn.write_tls(sock).map_err(|e| format!("sending: {e}"))?;
        }
    }
    Ok(())
}

/// Waits for the one-byte answer that says the message was opened: a lane has one
/// message on the wire at a time, as a push holds its place in the fan-out's window until
/// the data plane answers. (Without it a sender fills every connection's socket buffers
/// far ahead of its receiver, until the kernel's TCP memory runs out and drops packets.)
fn wait_ack(conn: &mut ServerConnection, sock: &mut TcpStream) -> Result<(), String> {
    let mut ack = [0u8; 1];
    loop {
        match conn.reader().read(&mut ack) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err("closed before its answer".into()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if conn.read_tls(sock).map_err(|e| format!("reading: {e}"))? == 0 {
                    return Err("closed before its answer".into());
                }
                conn.process_new_packets()
                    .map_err(|e| format!("TLS: {e}"))?;
            }
            Err(e) => return Err(format!("TLS read: {e}")),
        }
    }
}

/// `fanout limit-dps`: the receiving side, in the second process.
pub fn receivers(addr: &str, cert: &str, key: &str, f: &LimitFlags) -> Result<(), String> {
    if let Err(e) = receive_all(addr, cert, key, f) {
        fail(&e);
    }
    Ok(())
}

/// Reports `e` to the sending process and exits, closing every connection (a sender
/// waiting on one of them fails instead of waiting forever).
fn fail(e: &str) -> ! {
    println!("{}", json!({"event": "error", "error": e}));
    let _ = std::io::stdout().flush();
    std::process::exit(1)
}

fn receive_all(addr: &str, cert: &str, key: &str, f: &LimitFlags) -> Result<(), String> {
    let cert = std::fs::read(cert).map_err(|e| format!("{cert}: {e}"))?;
    let key = std::fs::read(key).map_err(|e| format!("{key}: {e}"))?;
    let tls = fleet::shared_client_tls(&cert, &key)?;
    let config = tls.config().clone();
    let name = rustls_pki_types::ServerName::try_from(dpspec::tls::KONG_SERVER_NAME)
        .map_err(|e| e.to_string())?;
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<(ClientConnection, TcpStream)>>> =
        (0..f.n).map(|_| Mutex::new(None)).collect();
    let failed: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= f.n {
                    return;
                }
                let connected = (|| -> Result<(ClientConnection, TcpStream), String> {
                    let mut sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
                    sock.set_nodelay(true).map_err(|e| e.to_string())?;
                    let mut conn = ClientConnection::new(config.clone(), name.clone())
                        .map_err(|e| e.to_string())?;
                    while conn.is_handshaking() {
                        conn.complete_io(&mut sock).map_err(|e| e.to_string())?;
                    }
                    conn.writer()
                        .write_all(&(i as u32).to_le_bytes())
                        .map_err(|e| e.to_string())?;
                    while conn.wants_write() {
                        conn.write_tls(&mut sock).map_err(|e| e.to_string())?;
                    }
                    Ok((conn, sock))
                })();
                match connected {
                    Ok(c) => *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(c),
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(format!("connection {i}: {e}"));
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let lanes = f.lanes.clamp(1, f.n.max(1));
    let mut by_lane: Vec<Vec<(usize, ClientConnection, TcpStream)>> =
        (0..lanes).map(|_| Vec::new()).collect();
    for (i, slot) in slots.into_iter().enumerate() {
        let (conn, sock) = slot
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or("a connection is missing")?;
        by_lane[i % lanes].push((i, conn, sock));
    }
    println!("{}", json!({"event": "limit-ready", "connections": f.n}));
    let _ = std::io::stdout().flush();

    let (done_tx, done) = crossbeam_channel::unbounded::<usize>();
    std::thread::scope(|s| -> Result<(), String> {
        for lane in by_lane.iter_mut() {
            let done_tx = done_tx.clone();
            s.spawn(move || {
                let mut raw = vec![0u8; f.read.max(1)];
                let mut message = vec![0u8; f.size];
                for run in 0..f.runs {
                    let expected = payload(f.size, run);
                    for (i, conn, sock) in lane.iter_mut() {
                        let got = receive(conn, sock, &mut raw, &mut message)
                            .and_then(|()| check(&message, &expected, *i))
                            .and_then(|()| answer(conn, sock));
                        if let Err(e) = got {
                            // The other lanes' senders would wait on us forever: end here.
                            fail(&format!("connection {i}, run {}: {e}", run + 1));
                        }
                    }
                    let _ = done_tx.send(run);
                }
            });
        }
        drop(done_tx);
        for run in 0..f.runs {
            for _ in 0..lanes {
                match done.recv() {
                    Ok(r) if r == run => {}
                    Ok(r) => return Err(format!("a lane finished run {r} during run {run}")),
                    Err(_) => return Err("the receiving lanes ended early".into()),
                }
            }
            println!("{}", json!({"event": "limit-received", "run": run}));
            let _ = std::io::stdout().flush();
        }
        Ok(())
    })?;
    // Run until the sending process closes our stdin.
    let mut sink = String::new();
    let _ = std::io::stdin().read_line(&mut sink);
    Ok(())
}

/// Reads until `message` is full of opened plaintext.
fn receive(
    conn: &mut ClientConnection,
    sock: &mut TcpStream,
    raw: &mut [u8],
    message: &mut [u8],
) -> Result<(), String> {
    let mut got = 0;
    while got < message.len() {
        let n = sock.read(raw).map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("closed mid-message".into());
        }
        let mut data = &raw[..n];
        while !data.is_empty() {
            conn.read_tls(&mut data)
                .map_err(|e| format!("TLS buffer: {e}"))?;
            conn.process_new_packets()
                .map_err(|e| format!("TLS: {e}"))?;
            loop {
                match conn.reader().read(&mut message[got..]) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("TLS read: {e}")),
                }
            }
        }
    }
    Ok(())
}

/// Sends the one-byte answer (see [`wait_ack`]).
fn answer(conn: &mut ClientConnection, sock: &mut TcpStream) -> Result<(), String> {
    conn.writer()
        .write_all(b"k")
        .map_err(|e| format!("sealing: {e}"))?;
    while conn.wants_write() {
        conn.write_tls(sock).map_err(|e| format!("sending: {e}"))?;
    }
    Ok(())
}

/// Every message by length and head; every 1000th byte for byte.
fn check(message: &[u8], expected: &[u8], i: usize) -> Result<(), String> {
    let head = expected.len().min(64);
    let whole = i % 1000 == 0;
    if message.len() != expected.len()
        || message[..head] != expected[..head]
        || (whole && message != expected)
    {
        return Err("the message differs".into());
    }
    Ok(())
}
