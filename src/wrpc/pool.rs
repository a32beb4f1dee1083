//! A bounded pool of worker threads fed by a crossbeam channel. Handlers run here, never on
//! a reader thread, so a slow handler never stops a connection from reading.

use std::sync::Mutex;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};

/// A unit of work.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads sharing one bounded queue. Share one pool between many connections with
/// an `Arc`. Dropping the last handle lets queued jobs finish and joins the threads.
pub struct WorkerPool {
    tx: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    capacity: usize,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The queue is at its limit; the job was not taken.
#[derive(Debug)]
pub struct Overloaded;

impl WorkerPool {
    /// Starts `workers` threads (at least one) named `dpspec-<name>-<n>`, with room for
    /// `queue` waiting jobs (at least one).
    pub fn new(name: &str, workers: usize, queue: usize) -> std::io::Result<WorkerPool> {
        let capacity = queue.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(capacity);
        let mut threads = Vec::new();
        for n in 0..workers.max(1) {
            let rx = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("dpspec-{name}-{n}"))
                .stack_size(512 * 1024)
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })?;
            threads.push(handle);
        }
        Ok(WorkerPool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            capacity,
        })
    }

    internal_fn! {
        /// Queues `job` unless the queue is full or the pool is shut down.
        fn try_submit(&self, job: Job) -> Result<(), Overloaded> {
            let tx = crate::channel::lock(&self.tx).clone();
            match tx {
                Some(tx) => match tx.try_send(job) {
                    Ok(()) => Ok(()),
                    Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(Overloaded),
                },
                None => Err(Overloaded),
            }
        }
    }

    /// Stops taking jobs, lets the queued ones finish, and joins the threads. A worker
    /// calling this on its own pool does not wait for itself.
    pub fn shutdown(&self) {
        crate::channel::lock(&self.tx).take();
        let threads = std::mem::take(&mut *crate::channel::lock(&self.threads));
        let me = std::thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_refuses_instead_of_growing() {
        let pool = WorkerPool::new("test", 1, 2).unwrap();
        let (block_tx, block_rx) = crossbeam_channel::bounded::<()>(0);
        let (started_tx, started_rx) = crossbeam_channel::bounded::<()>(1);
        pool.try_submit(Box::new(move || {
            started_tx.send(()).unwrap();
            let _ = block_rx.recv();
        }))
        .unwrap();
        started_rx.recv().unwrap();
        pool.try_submit(Box::new(|| {})).unwrap();
        pool.try_submit(Box::new(|| {})).unwrap();
        assert!(pool.try_submit(Box::new(|| {})).is_err());
        drop(block_tx);
        pool.shutdown();
    }
}
