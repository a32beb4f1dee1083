//! Moving an upgraded connection off its connection thread: [`HandOff`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;

use super::conn::Finished;
use super::listener::Inner;
#[cfg(doc)]
use super::server::{ServerConfig, Switched};

/// Lets whatever takes a switched connection move the rest of its life to a fresh
/// thread: [`HandOff::run`]. Passed along with the connection ([`Switched`]).
///
/// Why: the connection thread ran the TLS handshake and the HTTP head, deep in the stack
/// (about 20 KiB of it touched), and a thread keeps every stack page it ever touched.
/// The thread that then waits on the socket for months needs only what a reader
/// touches, so an idle connection costs a fraction of the memory when the thread that
/// waits is not the one that shook hands.
pub struct HandOff {
    inner: Arc<Inner>,
    id: u64,
    peer: SocketAddr,
}

impl std::fmt::Debug for HandOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandOff")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl HandOff {
    /// The hand-off of connection `id`, from `peer`.
    pub(super) fn new(inner: &Arc<Inner>, id: u64, peer: SocketAddr) -> HandOff {
        HandOff {
            inner: inner.clone(),
            id,
            peer,
        }
    }

    /// Runs `work` (the rest of the connection's life) on a fresh thread, which the
    /// listener joins as it would have joined the connection thread, and returns at once:
    /// the caller then returns too, and the connection thread ends. If no thread can be
    /// started, runs `work` here: nothing is lost either way.
    ///
    /// The new thread's stack is [`ServerConfig::conn_stack_size`] and 64 KiB more: the
    /// extra is only virtual memory, and keeps glibc from giving it the cached stack of
    /// an ended connection thread (it reuses one of the size asked or up to four times
    /// it), whose deep pages would stay resident for the connection's life.
    pub fn run(self, work: impl FnOnce() + Send + 'static) {
        let HandOff { inner, id, peer } = self;
        // Held until the new thread is recorded, so that it cannot end (and be reaped)
        // before it is known; on failure the work comes back from here.
        let slot = Arc::new(Mutex::new(Some(work)));
        let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
        let (thread_slot, thread_inner) = (slot.clone(), inner.clone());
        let spawned = thread::Builder::new()
            .name(format!("dpspec-conn-{peer}"))
            .stack_size(inner.config.conn_stack_size + 64 * 1024)
            .spawn(move || {
                let _done = Finished {
                    inner: &thread_inner,
                    id,
                };
                let work = take(thread_slot);
                if let Some(work) = work {
                    work();
                }
            });
        match spawned {
            Ok(t) => {
                // From here on the connection is this thread's: the connection thread's
                // end no longer marks it done (see Finished).
                let mut conns = inner.conns();
                let previous = match conns.map.get_mut(&id) {
                    Some(c) => c.thread.replace(t),
                    // Shutdown has taken the connections: it joins the retired too.
                    None => Some(t),
                };
                conns.retired.extend(previous);
            }
            Err(e) => {
                log::warn!(
                    "cannot start a thread for the connection from {peer}: {e}; serving it \
                     on its handshake thread"
                );
                let work = held.take();
                drop(held);
                if let Some(work) = work {
                    work();
                }
            }
        }
    }
}

/// Takes the work out of its slot and lets go of the slot (a thread's closure lives as
/// long as the thread).
fn take<T>(slot: Arc<Mutex<Option<T>>>) -> Option<T> {
    let work = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    work
}
