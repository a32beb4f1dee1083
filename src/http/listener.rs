//! The listener: the accept loop, the connection threads and their bookkeeping, shutdown.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::conn::{serve, Finished};
use super::server::{ServerConfig, LISTEN_BACKLOG};
use super::HttpError;
use crate::tls::ServerTls;

/// A listening CP endpoint. Dropping it shuts it down ([`Listener::shutdown`]).
pub struct Listener {
    local_addr: SocketAddr,
    inner: Arc<Inner>,
    accept: Option<JoinHandle<()>>,
}

pub(super) struct Inner {
    pub(super) tls: ServerTls,
    pub(super) config: ServerConfig,
    pub(super) stopping: AtomicBool,
    conns: Mutex<Conns>,
    /// Signalled when a connection leaves the handshake phase (or at shutdown).
    room: Condvar,
    /// TLS handshakes completed: full, and resumed from a session ticket.
    pub(super) full_handshakes: AtomicU64,
    pub(super) resumed_handshakes: AtomicU64,
}

#[derive(Default)]
pub(super) struct Conns {
    next_id: u64,
    pub(super) map: HashMap<u64, Conn>,
    /// Threads that are done and wait to be joined.
    pub(super) finished: Vec<u64>,
    /// Connections in the TLS handshake or HTTP head phase.
    handshaking: usize,
    /// Connection threads that handed their upgraded connection to a fresh thread
    /// ([`HandOff`]) and end: joined at the next accept or at shutdown.
    pub(super) retired: Vec<JoinHandle<()>>,
}

pub(super) struct Conn {
    /// A handle on the socket while the connection is in the HTTP phase, to unblock it at
    /// shutdown; `None` once handed to a switch route.
    pub(super) sock: Option<TcpStream>,
    /// The thread serving the connection: its connection thread, or the one that thread
    /// handed it to.
    pub(super) thread: Option<JoinHandle<()>>,
    /// Counted in [`Conns::handshaking`].
    handshaking: bool,
}

impl Inner {
    pub(super) fn conns(&self) -> MutexGuard<'_, Conns> {
        // A panic elsewhere while holding the lock leaves the map usable.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connection `id` is past its handshake phase (served, handed over, or gone).
    pub(super) fn handshake_done(&self, conns: &mut Conns, id: u64) {
        if let Some(c) = conns.map.get_mut(&id) {
            if std::mem::take(&mut c.handshaking) {
                conns.handshaking -= 1;
                self.room.notify_one();
            }
        }
    }

    /// Waits until fewer than the cap are in the handshake phase; false at shutdown.
    fn wait_for_room(&self) -> bool {
        let cap = self.config.max_handshakes;
        let mut conns = self.conns();
        let mut said = false;
        while conns.handshaking >= cap && !self.stopping.load(Ordering::SeqCst) {
            if !said {
                log::info!(
                    "{cap} connections are in the TLS/HTTP phase; new ones wait in the listen \
                     backlog"
                );
                said = true;
            }
            conns = self.room.wait(conns).unwrap_or_else(|e| e.into_inner());
        }
        !self.stopping.load(Ordering::SeqCst)
    }
}

impl Listener {
    /// Binds `addr` and starts accepting.
    ///
    /// Each connection gets `tls`, then one request, served by the route of `config` at
    /// its path.
    pub fn bind(
        addr: impl ToSocketAddrs,
        tls: ServerTls,
        config: ServerConfig,
    ) -> Result<Listener, HttpError> {
        config.check()?;
        let listener = bind(addr).map_err(HttpError::Bind)?;
        let local_addr = listener.local_addr().map_err(HttpError::Bind)?;
        let inner = Arc::new(Inner {
            tls,
            config,
            stopping: AtomicBool::new(false),
            conns: Mutex::new(Conns::default()),
            room: Condvar::new(),
            full_handshakes: AtomicU64::new(0),
            resumed_handshakes: AtomicU64::new(0),
        });
        let accept_inner = inner.clone();
        let accept = thread::Builder::new()
            .name("dpspec-accept".into())
            .spawn(move || accept_loop(listener, accept_inner))
            .map_err(HttpError::Spawn)?;
        log::info!("listening on {local_addr}");
        Ok(Listener {
            local_addr,
            inner,
            accept: Some(accept),
        })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    internal_fn! {
        /// TLS handshakes completed so far: (full, resumed from a session ticket).
        fn handshakes(&self) -> (u64, u64) {
            (
                self.inner.full_handshakes.load(Ordering::Relaxed),
                self.inner.resumed_handshakes.load(Ordering::Relaxed),
            )
        }
    }

    /// Stops accepting: new connections are refused, connections still in the HTTP phase
    /// are cut, and no further connection is handed to a switch route. Connections
    /// already handed over keep running. Idempotent.
    ///
    /// Call this, then close the upgraded connections, then [`Listener::shutdown`]: no
    /// upgrade can slip in between.
    pub fn stop_accepting(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.inner.stopping.store(true, Ordering::SeqCst);
        {
            let _conns = self.inner.conns();
            self.inner.room.notify_all();
        }
        // Wake the blocked accept with a connection to ourselves.
        let wake = match self.local_addr {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from((Ipv4Addr::LOCALHOST, a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((Ipv6Addr::LOCALHOST, a.port()))
            }
            a => a,
        };
        let woken = TcpStream::connect_timeout(&wake, Duration::from_secs(2));
        if let (Err(e), false) = (woken, accept.is_finished()) {
            log::warn!(
                "could not wake the accept thread on {wake}: {e}; it ends at the next connection"
            );
        }
        if accept.join().is_err() {
            log::error!("the accept thread panicked");
        }
        for conn in self.inner.conns().map.values() {
            if let Some(sock) = &conn.sock {
                let _ = sock.shutdown(Shutdown::Both);
            }
        }
        log::info!("stopped listening on {}", self.local_addr);
    }

    /// Stops accepting ([`Listener::stop_accepting`]) and joins every connection thread:
    /// those in the HTTP phase end at once; those handed to a switch route are
    /// joined too, so close the upgraded connections first (or make
    /// the route's handler return), or this blocks until they end. Idempotent.
    pub fn shutdown(&mut self) {
        self.stop_accepting();
        loop {
            // A thread joined here may hand its connection on meanwhile: look again.
            let threads: Vec<JoinHandle<()>> = {
                let mut conns = self.inner.conns();
                conns.finished.clear();
                let mut threads = std::mem::take(&mut conns.retired);
                threads.extend(conns.map.drain().filter_map(|(_, c)| c.thread));
                threads
            };
            if threads.is_empty() {
                break;
            }
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How long to wait after an accept error before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds `addr` (each address it names in turn) with [`LISTEN_BACKLOG`].
fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to bind");
    for addr in addr.to_socket_addrs()? {
        let bound = (|| {
            let sock = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )?;
            #[cfg(unix)]
            sock.set_reuse_address(true)?;
            sock.bind(&addr.into())?;
            sock.listen(LISTEN_BACKLOG)?;
            Ok::<_, io::Error>(TcpListener::from(sock))
        })();
        match bound {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut failing = false;
    loop {
        if !inner.wait_for_room() {
            break;
        }
        let accepted = listener.accept();
        let accepted_at = Instant::now();
        if inner.stopping.load(Ordering::SeqCst) {
            break;
        }
        match accepted {
            Ok((sock, peer)) => {
                reap(&inner);
                match spawn_conn(&inner, sock, peer, accepted_at) {
                    Ok(()) if failing => {
                        log::info!("accepting connections again");
                        failing = false;
                    }
                    Ok(()) => {}
                    // Out of descriptors or threads just after the accept: the same episode
                    // as a failed accept, shed and said once, not once per connection.
                    Err(e) => {
                        if !failing {
                            log::warn!(
                                "accepting a connection failed: cannot serve the connection \
                                 from {peer}: {e}; shedding connections, retrying every \
                                 {ACCEPT_BACKOFF:?}"
                            );
                            failing = true;
                        } else {
                            log::debug!("dropping the connection from {peer}: {e}");
                        }
                        thread::sleep(ACCEPT_BACKOFF);
                    }
                }
            }
            // The peer gave up before we took it: nothing wrong here.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: never end the loop; say so once per episode.
                if !failing {
                    log::warn!(
                        "accepting a connection failed: {e}; retrying every {ACCEPT_BACKOFF:?}"
                    );
                    failing = true;
                }
                thread::sleep(ACCEPT_BACKOFF);
            }
        }
    }
    // The listening socket closes here: new connections are refused from now on.
}

/// Joins the connection threads that are done.
fn reap(inner: &Inner) {
    let threads: Vec<JoinHandle<()>> = {
        let mut conns = inner.conns();
        let done = std::mem::take(&mut conns.finished);
        let mut threads = std::mem::take(&mut conns.retired);
        threads.extend(
            done.iter()
                .filter_map(|id| conns.map.remove(id).and_then(|c| c.thread)),
        );
        threads
    };
    for t in threads {
        let _ = t.join();
    }
}

/// Starts the thread of a new connection; on failure (out of descriptors or threads) the
/// connection is dropped and the error returned.
fn spawn_conn(
    inner: &Arc<Inner>,
    sock: TcpStream,
    peer: SocketAddr,
    accepted_at: Instant,
) -> io::Result<()> {
    let handle = sock.try_clone()?;
    let id = {
        let mut conns = inner.conns();
        let id = conns.next_id;
        conns.next_id += 1;
        conns.map.insert(
            id,
            Conn {
                sock: Some(handle),
                thread: None,
                handshaking: true,
            },
        );
        conns.handshaking += 1;
        id
    };
    let conn_inner = inner.clone();
    let spawned = thread::Builder::new()
        .name(format!("dpspec-conn-{peer}"))
        .stack_size(inner.config.conn_stack_size)
        .spawn(move || {
            let _done = Finished {
                inner: &conn_inner,
                id,
            };
            serve(&conn_inner, id, sock, peer, accepted_at);
        });
    let mut conns = inner.conns();
    match spawned {
        Ok(t) => {
            if let Some(c) = conns.map.get_mut(&id) {
                match c.thread {
                    // It has already handed its connection on (see HandOff::run).
                    Some(_) => conns.retired.push(t),
                    None => c.thread = Some(t),
                }
            }
            Ok(())
        }
        Err(e) => {
            inner.handshake_done(&mut conns, id);
            conns.map.remove(&id);
            Err(io::Error::new(
                e.kind(),
                format!("cannot start its thread: {e}"),
            ))
        }
    }
}
