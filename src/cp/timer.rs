//! One timer thread for the whole control plane: tasks in a heap by due time, fed by a
//! channel.
//!
//! The thread sleeps until the earliest task is due (or a new one arrives) with
//! `recv_deadline`: no per-connection threads, no polling, no wake-ups while nothing is
//! due. Tasks run on the timer thread, so each must be quick and must never wait on a
//! socket: they queue a close frame, shut a socket down, or give up on a call.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Work to run when its time comes.
pub(crate) type Task = Box<dyn FnOnce() + Send>;

enum Command {
    At(Instant, Task),
    Stop,
}

/// A running timer thread. Dropping it stops and joins the thread.
pub(crate) struct Timer {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Timer {
    /// Starts the thread `dpspec-<name>`.
    pub(crate) fn start(name: &str) -> std::io::Result<Timer> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name(format!("dpspec-{name}"))
            .stack_size(256 * 1024)
            .spawn(move || run(rx))?;
        Ok(Timer {
            tx,
            thread: Some(thread),
        })
    }

    /// Runs `task` at `at` (at once if it has passed).
    pub(crate) fn schedule(&self, at: Instant, task: impl FnOnce() + Send + 'static) {
        let _ = self.tx.send(Command::At(at, Box::new(task)));
    }

    /// Stops the thread (tasks not yet due are dropped unrun) and joins it. Idempotent.
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

/// A task in the heap: earliest first, then in the order scheduled.
struct Due {
    at: Instant,
    order: u64,
    task: Task,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap pops the greatest, we want the earliest.
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

fn run(rx: Receiver<Command>) {
    let mut heap: BinaryHeap<Due> = BinaryHeap::new();
    let mut order = 0u64;
    loop {
        let now = Instant::now();
        while heap.peek().is_some_and(|d| d.at <= now) {
            if let Some(due) = heap.pop() {
                (due.task)();
            }
        }
        let next = match heap.peek() {
            Some(d) => rx.recv_deadline(d.at),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(Command::At(at, task)) => {
                order += 1;
                heap.push(Due { at, order, task });
            }
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
    fn runs_in_due_order_not_schedule_order() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut timer = Timer::start("timer-test").unwrap();
        let now = Instant::now();
        for (ms, key) in [(60, 3), (20, 1), (40, 2), (3_600_000, 4)] {
            let tx = tx.clone();
            timer.schedule(now + Duration::from_millis(ms), move || {
                let _ = tx.send(key);
            });
        }
        let got: Vec<u64> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, [1, 2, 3]);
        timer.stop();
        assert!(rx.try_recv().is_err(), "the far task must not run");
    }

    #[test]
    fn tasks_due_together_run_in_the_order_scheduled() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut timer = Timer::start("timer-test").unwrap();
        let at = Instant::now();
        for key in 0..50 {
            let tx = tx.clone();
            timer.schedule(at, move || {
                let _ = tx.send(key);
            });
        }
        let got: Vec<u32> = (0..50)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        timer.stop();
    }
}
