//! Bookkeeping without I/O: the per-connection seq counter, the table of calls waiting
//! for their answer, and deadline arithmetic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::WrpcError;
use crate::channel::lock;

/// The seq counter of one connection: starts at 1, advances for every message sent
/// (requests, responses, errors, stream messages), and skips 0 when it wraps.
#[derive(Debug)]
pub struct SeqCounter(AtomicU32);

impl Default for SeqCounter {
    fn default() -> Self {
        SeqCounter(AtomicU32::new(1))
    }
}

impl SeqCounter {
    /// A counter whose first seq is `first` (0 is skipped); for tests of wrap-around.
    #[cfg(test)]
    fn starting_at(first: u32) -> SeqCounter {
        SeqCounter(AtomicU32::new(first))
    }

    /// The next seq, never 0.
    pub fn next(&self) -> u32 {
        loop {
            let seq = self.0.fetch_add(1, Ordering::Relaxed);
            if seq != 0 {
                return seq;
            }
        }
    }
}

/// What a waiting caller receives: the response body, or why there is none.
pub type Answer = Result<Vec<u8>, WrpcError>;

/// Where one call's answer lands. The caller parks on it at once: a channel receiver
/// spins and yields before it parks, and dozens of waiting callers doing that on two cores
/// take the CPU from the reader threads that deliver the answers.
#[derive(Default)]
pub struct AnswerSlot {
    value: Mutex<Option<Answer>>,
    ready: Condvar,
}

impl AnswerSlot {
    /// Delivers the answer (only the first one counts) and wakes the caller.
    pub fn put(&self, answer: Answer) {
        let mut value = lock(&self.value);
        if value.is_some() {
            return;
        }
        *value = Some(answer);
        // Wake the caller after letting go of the lock, so it does not wake only to wait
        // for it.
        drop(value);
        self.ready.notify_one();
    }

    /// Waits at most `timeout` for the answer.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Answer> {
        let deadline = Instant::now() + timeout;
        let mut value = lock(&self.value);
        loop {
            if let Some(answer) = value.take() {
                return Some(answer);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            value = match self.ready.wait_timeout(value, left) {
                Ok((v, _)) => v,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// Who gets a call's answer: a caller parked on a slot, or a callback run where the
/// answer lands (the reader thread, the closer, or whoever expires the call).
pub(crate) enum Waiter {
    /// A caller blocked in [`AnswerSlot::wait_timeout`].
    Parked(Arc<AnswerSlot>),
    /// Code to run with the answer; it must be quick (the control plane's pushes).
    #[cfg_attr(not(feature = "cp"), allow(dead_code))]
    Callback(Box<dyn FnOnce(Answer) + Send>),
}

impl Waiter {
    fn put(self, answer: Answer) {
        match self {
            Waiter::Parked(slot) => slot.put(answer),
            Waiter::Callback(f) => f(answer),
        }
    }
}

struct Slot {
    svc_id: u32,
    rpc_id: u32,
    answer: Waiter,
}

/// The calls of one connection that wait for an answer, by the seq of their request.
#[derive(Default)]
pub struct Pending {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    slots: HashMap<u32, Slot>,
    /// Set once the connection has ended: new calls fail at once.
    closed: Option<WrpcError>,
}

/// What happened to an answer handed to [`Pending::resolve`].
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// It reached its caller.
    Delivered,
    /// No call waits for this ack (it timed out, or never existed): drop it.
    Stray,
    /// A call waits for this ack but for another (service, rpc): the caller gets an error.
    Mismatched,
}

impl Pending {
    /// Registers a call; fails if the connection has already ended.
    pub fn insert(
        &self,
        seq: u32,
        svc_id: u32,
        rpc_id: u32,
        answer: Arc<AnswerSlot>,
    ) -> Result<(), WrpcError> {
        self.insert_waiter(seq, svc_id, rpc_id, Waiter::Parked(answer))
    }

    /// Registers a call answered through `answer`; fails (dropping it uncalled) if the
    /// connection has already ended.
    pub(crate) fn insert_waiter(
        &self,
        seq: u32,
        svc_id: u32,
        rpc_id: u32,
        answer: Waiter,
    ) -> Result<(), WrpcError> {
        let mut t = lock(&self.inner);
        if let Some(e) = &t.closed {
            return Err(e.clone());
        }
        t.slots.insert(
            seq,
            Slot {
                svc_id,
                rpc_id,
                answer,
            },
        );
        Ok(())
    }

    /// Forgets a call (its caller gave up).
    pub fn remove(&self, seq: u32) {
        lock(&self.inner).slots.remove(&seq);
    }

    /// Whether a call with this seq still waits.
    #[cfg(test)]
    fn contains(&self, seq: u32) -> bool {
        lock(&self.inner).slots.contains_key(&seq)
    }

    /// Hands an answer to the call whose request had seq `ack`.
    pub fn resolve(&self, ack: u32, svc_id: u32, rpc_id: u32, answer: Answer) -> Resolved {
        let Some(slot) = lock(&self.inner).slots.remove(&ack) else {
            return Resolved::Stray;
        };
        if slot.svc_id != svc_id || slot.rpc_id != rpc_id {
            slot.answer.put(Err(WrpcError::Mismatch {
                expected: (slot.svc_id, slot.rpc_id),
                got: (svc_id, rpc_id),
            }));
            return Resolved::Mismatched;
        }
        slot.answer.put(answer);
        Resolved::Delivered
    }

    /// Hands an answer to the call whose request had seq `ack`, whatever ids it names
    /// (ERRORs do not always echo them faithfully).
    pub fn resolve_any(&self, ack: u32, answer: Answer) -> Resolved {
        let Some(slot) = lock(&self.inner).slots.remove(&ack) else {
            return Resolved::Stray;
        };
        slot.answer.put(answer);
        Resolved::Delivered
    }

    /// Fails every waiting call with `error` and every later one too.
    pub fn close(&self, error: WrpcError) {
        let slots = {
            let mut t = lock(&self.inner);
            t.closed = Some(error.clone());
            std::mem::take(&mut t.slots)
        };
        for (_, slot) in slots {
            slot.answer.put(Err(error.clone()));
        }
    }

    /// How many calls wait.
    pub fn len(&self) -> usize {
        lock(&self.inner).slots.len()
    }

    /// Whether no call waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Now, in whole Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The wire deadline for a call that gives up after `timeout`: whole Unix seconds, rounded
/// up, at least 1 and at most `u32::MAX`.
pub fn deadline_after(timeout: Duration) -> u32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = now.saturating_add(timeout);
    let secs = at.as_secs() + u64::from(at.subsec_nanos() > 0);
    secs.clamp(1, u64::from(u32::MAX)) as u32
}

/// Whether a request with this wire deadline is already past it.
pub fn is_past(deadline: u32) -> bool {
    is_past_at(deadline, unix_now())
}

/// Whether a request with this wire deadline is past it at `now` (Unix seconds).
pub(crate) fn is_past_at(deadline: u32, now: u64) -> bool {
    u64::from(deadline) < now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_starts_at_one_and_skips_zero_on_wrap() {
        assert_eq!(SeqCounter::default().next(), 1);
        let c = SeqCounter::starting_at(u32::MAX);
        assert_eq!(c.next(), u32::MAX);
        assert_eq!(c.next(), 1);
    }

    #[test]
    fn stray_and_mismatched_answers_are_told_apart() {
        let p = Pending::default();
        let slot = Arc::new(AnswerSlot::default());
        p.insert(7, 1, 2, slot.clone()).unwrap();
        assert_eq!(p.resolve(8, 1, 2, Ok(vec![])), Resolved::Stray);
        assert_eq!(p.resolve(7, 1, 3, Ok(vec![])), Resolved::Mismatched);
        let got = slot.wait_timeout(Duration::from_secs(1)).unwrap();
        assert!(matches!(got, Err(WrpcError::Mismatch { .. })));
        assert_eq!(p.resolve(7, 1, 2, Ok(vec![])), Resolved::Stray);
    }

    #[test]
    fn close_fails_waiting_and_later_calls() {
        let p = Pending::default();
        let slot = Arc::new(AnswerSlot::default());
        p.insert(1, 1, 1, slot.clone()).unwrap();
        p.close(WrpcError::Timeout { name: "x".into() });
        assert!(slot.wait_timeout(Duration::from_secs(1)).unwrap().is_err());
        assert!(p.insert(2, 1, 1, Arc::default()).is_err());
    }

    #[test]
    fn callbacks_run_once_with_their_answer_outside_the_lock() {
        let p = Arc::new(Pending::default());
        let (tx, rx) = crossbeam_channel::unbounded();
        for seq in [1, 2, 3] {
            let (tx, p2) = (tx.clone(), p.clone());
            let cb = Box::new(move |a: Answer| {
                // The table is usable from inside a callback: no lock is held.
                let _ = p2.len();
                tx.send((seq, a.is_ok())).unwrap();
            });
            p.insert_waiter(seq, 1, 2, Waiter::Callback(cb)).unwrap();
        }
        assert_eq!(p.resolve(1, 1, 2, Ok(vec![])), Resolved::Delivered);
        assert_eq!(
            p.resolve_any(2, Err(WrpcError::Timeout { name: "t".into() })),
            Resolved::Delivered
        );
        assert!(!p.contains(2) && p.contains(3));
        p.close(WrpcError::Timeout {
            name: "closed".into(),
        });
        let got: Vec<_> = rx.try_iter().collect();
        assert_eq!(got, [(1, true), (2, false), (3, false)]);
        let late = Waiter::Callback(Box::new(|_| panic!("must not run")));
        assert!(p.insert_waiter(4, 1, 2, late).is_err());
    }

    #[test]
    fn deadline_is_whole_seconds_rounded_up() {
        let d = deadline_after(Duration::from_millis(1500));
        let now = unix_now();
        assert!(u64::from(d) > now && u64::from(d) <= now + 3);
        assert!(is_past(1));
        assert!(!is_past(d));
    }
}
