//! Fair share of the worker pool, per connection: at most `limit` requests of one
//! connection queued or running at once (open inbound streams count while their handler
//! runs). The reader takes a share before it queues a request and waits while the
//! connection has none left, so it stops reading: TCP then pushes back on that peer
//! alone, and one connection can never fill the pool's queue for the others.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::channel::lock;

/// The default share: 8 requests queued or running per connection. Kong's nodes have at
/// most a handful in flight (a ping, a metadata report, a config answer).
pub const DEFAULT_MAX_PENDING_REQUESTS: usize = 8;

/// How often a paused reader looks again whether its connection is being torn down.
const RECHECK: Duration = Duration::from_millis(250);

/// The shares of one connection.
#[derive(Debug)]
pub(crate) struct FairShare {
    limit: usize,
    busy: Mutex<usize>,
    freed: Condvar,
}

impl FairShare {
    /// Shares for a connection that may have `limit` requests queued or running (at least
    /// one).
    pub(crate) fn new(limit: usize) -> FairShare {
        FairShare {
            limit: limit.max(1),
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Takes a share, waiting while none is left. Gives up, taking none, once `stop()`
    /// says the connection is going away.
    pub(crate) fn acquire(&self, stop: impl Fn() -> bool) -> bool {
        let mut busy = lock(&self.busy);
        while *busy >= self.limit {
            if stop() {
                return false;
            }
            busy = match self.freed.wait_timeout(busy, RECHECK) {
                Ok((b, _)) => b,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        *busy += 1;
        true
    }

    /// Gives a share back (its request finished).
    pub(crate) fn release(&self) {
        let mut busy = lock(&self.busy);
        *busy = busy.saturating_sub(1);
        drop(busy);
        self.freed.notify_one();
    }

    /// Shares in use.
    pub(crate) fn in_use(&self) -> usize {
        *lock(&self.busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn shares_run_out_at_the_limit_and_come_back_on_release() {
        let fair = Arc::new(FairShare::new(2));
        assert!(fair.acquire(|| false));
        assert!(fair.acquire(|| false));
        assert_eq!(fair.in_use(), 2);
        let (tx, rx) = crossbeam_channel::bounded(1);
        let waiter = {
            let fair = fair.clone();
            std::thread::spawn(move || {
                let got = fair.acquire(|| false);
                tx.send(got).unwrap();
            })
        };
        // The third waits: nothing arrives until a share is given back.
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        fair.release();
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        waiter.join().unwrap();
        assert_eq!(fair.in_use(), 2);
    }

    #[test]
    fn a_waiting_reader_gives_up_when_its_connection_goes() {
        let fair = Arc::new(FairShare::new(1));
        assert!(fair.acquire(|| false));
        let gone = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (fair, gone) = (fair.clone(), gone.clone());
            std::thread::spawn(move || fair.acquire(|| gone.load(Ordering::SeqCst)))
        };
        gone.store(true, Ordering::SeqCst);
        assert!(!waiter.join().unwrap());
        assert_eq!(fair.in_use(), 1, "giving up takes no share");
        fair.release();
        assert_eq!(fair.in_use(), 0);
        fair.release();
        assert_eq!(fair.in_use(), 0, "never below zero");
    }
}
