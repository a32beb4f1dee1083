//! One timer thread for the whole control plane: deadlines in a heap, fed by a channel.
//!
//! The thread sleeps until the earliest deadline (or a new one arrives) with
//! `recv_deadline`: no per-connection threads, no polling, no wake-ups while nothing is
//! due. When a deadline passes, the callback gets its key; it runs on the timer thread,
//! so it must be quick (hand anything blocking to another thread).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

enum Command {
    At(Instant, u64),
    Stop,
}

/// A running timer thread. Dropping it stops and joins the thread.
pub(crate) struct Timer {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Timer {
    /// Starts the thread `dpspec-<name>`; `fire(key)` runs for each deadline that passes.
    pub(crate) fn start(name: &str, fire: impl Fn(u64) + Send + 'static) -> std::io::Result<Timer> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("dpspec-{name}"))
            .stack_size(256 * 1024)
            .spawn(move || run(rx, fire))?;
        Ok(Timer {
            tx,
            thread: Some(thread),
        })
    }

    /// Calls `fire(key)` at `at` (at once if it has passed).
    pub(crate) fn schedule(&self, at: Instant, key: u64) {
        let _ = self.tx.send(Command::At(at, key));
    }

    /// Stops the thread (deadlines not yet due are dropped) and joins it. Idempotent.
    pub(crate) fn stop(&mut self) {
        let _ = self.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(rx: Receiver<Command>, fire: impl Fn(u64)) {
    let mut heap: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    loop {
        let now = Instant::now();
        while let Some(Reverse((at, key))) = heap.peek().copied() {
            if at > now {
                break;
            }
            heap.pop();
            fire(key);
        }
        let next = match heap.peek() {
            Some(Reverse((at, _))) => rx.recv_deadline(*at),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(Command::At(at, key)) => heap.push(Reverse((at, key))),
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_order_not_schedule_order() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut timer = Timer::start("timer-test", move |k| {
            let _ = tx.send(k);
        })
        .unwrap();
        let now = Instant::now();
        timer.schedule(now + Duration::from_millis(60), 3);
        timer.schedule(now + Duration::from_millis(20), 1);
        timer.schedule(now + Duration::from_millis(40), 2);
        timer.schedule(now + Duration::from_secs(3600), 4);
        let got: Vec<u64> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, [1, 2, 3]);
        assert!(now.elapsed() >= Duration::from_millis(60));
        timer.stop();
        assert!(rx.try_recv().is_err(), "the far deadline must not fire");
    }
}
