//! The fan-out window: how many pushes may be on the wire at once, across every data
//! plane. A config queued on 10,000 connections at once makes 10,000 half-written
//! messages on the CP, 10,000 half-received ones on the other side, and as many threads
//! writing them; a window keeps only a few in flight, as a fixed set of writers would,
//! without any thread waiting on a socket: a push holds its place until the data plane
//! answers it (wRPC) or its message has been wholly written (JSON, which has no answer),
//! or until a short time has passed, so that a data plane that never answers or reads
//! slowly does not hold it; then the place goes to the next data plane in line.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use crate::channel::lock;

/// Pushes on the wire at once (as many as the sixteen push threads that used to wait on
/// their answers, which a 10,000-DP fan-out measures as fast as more).
pub(crate) const PUSH_WINDOW: usize = 16;

/// How long one push holds its place at most: past it the next one starts, and the slow
/// one goes on writing beside it.
pub(crate) const SLOT_TIMEOUT: Duration = Duration::from_millis(500);

/// Places in the window and the connections waiting for one.
pub(crate) struct Window {
    limit: usize,
    state: Mutex<State>,
}

struct State {
    in_flight: usize,
    waiting: VecDeque<u64>,
}

impl Window {
    pub(crate) fn new(limit: usize) -> Window {
        Window {
            limit: limit.max(1),
            state: Mutex::new(State {
                in_flight: 0,
                waiting: VecDeque::new(),
            }),
        }
    }

    /// Takes a place for `conn`, or puts it in line (true: it has one now).
    pub(crate) fn enter(&self, conn: u64) -> bool {
        let mut s = lock(&self.state);
        if s.in_flight < self.limit {
            s.in_flight += 1;
            true
        } else {
            s.waiting.push_back(conn);
            false
        }
    }

    /// Gives a place back; returns the connection in line that now holds it.
    pub(crate) fn leave(&self) -> Option<u64> {
        let mut s = lock(&self.state);
        match s.waiting.pop_front() {
            Some(next) => Some(next),
            None => {
                s.in_flight = s.in_flight.saturating_sub(1);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_run_out_and_pass_to_the_next_in_line() {
        let w = Window::new(2);
        assert!(w.enter(1));
        assert!(w.enter(2));
        assert!(!w.enter(3));
        assert!(!w.enter(4));
        assert_eq!(w.leave(), Some(3), "1's place goes to 3");
        assert_eq!(w.leave(), Some(4));
        assert_eq!(w.leave(), None, "nobody waits: the place is free");
        assert!(w.enter(5));
        assert_eq!(w.leave(), None);
        assert_eq!(w.leave(), None);
        assert!(w.enter(6) && w.enter(7));
        assert!(!w.enter(8));
    }
}
