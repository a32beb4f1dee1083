//! A logger that keeps every line, so tests can assert what was logged, and wait for a
//! line the library logs once when something happens (where no event carries it, or the
//! event queue may drop it). Install it with [`capture`] instead of `init_logs` (a
//! process has one logger).

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Notified after every captured line.
static LOGGED: Condvar = Condvar::new();

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if record.target().starts_with("dpspec") {
            let line = format!("{} {}", record.level(), record.args());
            if std::env::var_os("SHOW_LOGS").is_some() {
                eprintln!("{line}");
            }
            lines().push(line);
            LOGGED.notify_all();
        }
    }
    fn flush(&self) {}
}

fn lines() -> std::sync::MutexGuard<'static, Vec<String>> {
    LINES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the capturing logger (once per process).
pub fn capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_boxed_logger(Box::new(Capture)).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Every captured line containing `needle`.
pub fn lines_with(needle: &str) -> Vec<String> {
    lines()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// Where the log ends now: pass it to [`wait_lines`] to look only at what comes after
/// (other tests of the process log too).
pub fn mark() -> usize {
    lines().len()
}

/// Waits until `count` lines logged after `since` satisfy `pick`, and returns them;
/// panics after `patience` naming `what` (a liveness bound: it is only reached when the
/// thing logged never happens).
pub fn wait_lines(
    since: usize,
    count: usize,
    patience: Duration,
    what: &str,
    pick: impl Fn(&str) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + patience;
    let mut found = Vec::new();
    let mut all = lines();
    // Each line is looked at once: the library's threads wait on this lock to log, and
    // a flood logs hundreds of thousands of lines.
    let mut next = since;
    loop {
        if let Some(new) = all.get(next..) {
            found.extend(new.iter().filter(|l| pick(l)).cloned());
            next = all.len();
        }
        if found.len() >= count {
            return found;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "{} of {count} lines of {what} logged in {patience:?}: {found:#?}",
            found.len()
        );
        all = LOGGED
            .wait_timeout(all, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// The line a control plane logs once a connection of `node_id` has ended and left its
/// registry (the `DpDisconnected` event follows it, but a full event queue drops events).
pub fn disconnected(node_id: &str) -> impl Fn(&str) -> bool + '_ {
    disconnected_where(move |id| id == node_id)
}

/// [`disconnected`] for every node whose id satisfies `pick`.
pub fn disconnected_where(pick: impl Fn(&str) -> bool) -> impl Fn(&str) -> bool {
    move |line: &str| {
        line.split_once("data plane ")
            .and_then(|(_, rest)| rest.split_once(" (connection "))
            .is_some_and(|(id, rest)| pick(id) && rest.contains(") disconnected: "))
    }
}
