//! Fair share of the worker pool, per connection.
//!
//! - [`FairShare`]: at most `limit` requests of one connection queued or running at once
//!   (open inbound streams count while their handler runs). The reader takes a share
//!   before it queues a request and waits while the connection has none left, so it stops
//!   reading: TCP then pushes back on that peer alone.
//! - [`Turns`]: a connection's jobs wait in its own queue, and the connection has at most
//!   one turn waiting in the pool's shared queue. A worker that takes a turn queues the
//!   connection's next turn at the back before it runs the job, so busy connections take
//!   turns round-robin (a quiet connection's request waits behind one job per busy
//!   connection, not behind all their jobs), a connection's jobs still run in parallel,
//!   and the shared queue holds at most one entry per connection.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::pool::Job;
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

/// A request rate per connection: `per_second` on average, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestRate {
    /// Requests per second, on average (at least 1).
    pub per_second: u32,
    /// Requests that may come at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl RequestRate {
    /// `per_second` requests a second on average, at most `burst` at once after a quiet
    /// spell (each at least 1).
    pub const fn new(per_second: u32, burst: u32) -> RequestRate {
        RequestRate { per_second, burst }
    }
}

/// The shortest rest of a reader whose peer is at its request rate (at 200 requests a
/// second, four requests come in each wake-up).
pub(crate) const THROTTLED_REST: Duration = Duration::from_millis(20);

/// A token bucket over [`RequestRate`], without I/O: time is passed in.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: RequestRate,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate: RequestRate, now: Instant) -> Bucket {
        let rate = RequestRate {
            per_second: rate.per_second.max(1),
            burst: rate.burst.max(1),
        };
        Bucket {
            rate,
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// Takes a token at `now`, or says how long to rest: until a token is there, and at
    /// least [`THROTTLED_REST`], so that a peer held at its rate costs its reader one
    /// wake-up per few requests rather than one per request.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        let rate = f64::from(self.rate.per_second);
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.rate.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate).max(THROTTLED_REST))
        }
    }
}

/// One connection's queue of jobs waiting for a turn on the pool.
#[derive(Default)]
pub(crate) struct Turns {
    queue: Mutex<TurnQueue>,
}

#[derive(Default)]
struct TurnQueue {
    jobs: VecDeque<Job>,
    /// A turn of this connection waits in the pool's queue (or is being taken).
    scheduled: bool,
}

impl Turns {
    /// Queues `job`; true when no turn is scheduled and the caller must submit one.
    pub(crate) fn push(&self, job: Job) -> bool {
        let mut q = lock(&self.queue);
        q.jobs.push_back(job);
        !std::mem::replace(&mut q.scheduled, true)
    }

    /// The pool refused the turn [`push`](Self::push) asked for: takes the job back.
    pub(crate) fn take_back(&self) -> Option<Job> {
        let mut q = lock(&self.queue);
        q.scheduled = false;
        q.jobs.pop_back()
    }

    /// The job for the turn being taken, and whether another turn must be submitted
    /// (jobs are left). With none left the connection is no longer scheduled.
    pub(crate) fn next(&self) -> (Option<Job>, bool) {
        let mut q = lock(&self.queue);
        let job = q.jobs.pop_front();
        let more = !q.jobs.is_empty();
        q.scheduled = more;
        (job, more)
    }

    /// Jobs waiting.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.queue).jobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(
            RequestRate {
                per_second: 10,
                burst: 3,
            },
            t0,
        );
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100));
        assert!(b.take(t0 + Duration::from_millis(95)).unwrap_err() == THROTTLED_REST);
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(150)).is_err());
        // A long quiet spell refills to the burst, no more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(later).is_ok());
        }
        assert!(b.take(later).is_err());
    }

    #[test]
    fn a_connection_has_one_turn_scheduled_however_many_jobs_wait() {
        let turns = Turns::default();
        let (tx, rx) = crossbeam_channel::unbounded();
        let job = |n: u32| -> Job {
            let tx = tx.clone();
            Box::new(move || tx.send(n).unwrap())
        };
        assert!(turns.push(job(1)), "the first job asks for a turn");
        assert!(!turns.push(job(2)), "a turn is already scheduled");
        assert!(!turns.push(job(3)));
        assert_eq!(turns.len(), 3);
        let (first, more) = turns.next();
        first.unwrap()();
        assert!(more, "jobs are left: the next turn is submitted");
        let (second, more) = turns.next();
        second.unwrap()();
        assert!(more);
        let (third, more) = turns.next();
        third.unwrap()();
        assert!(!more, "none left: no longer scheduled");
        assert!(turns.push(job(4)), "a new job asks for a new turn");
        assert!(
            turns.take_back().is_some(),
            "refused by the pool: taken back"
        );
        assert!(turns.push(job(5)), "and the next job asks again");
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2, 3]);
    }

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
