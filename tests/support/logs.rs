//! A logger that keeps every line, so tests can assert what was logged. Install it with
//! [`capture`] instead of `init_logs` (a process has one logger).

use std::sync::{Mutex, OnceLock};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

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
            LINES.lock().unwrap().push(line);
        }
    }
    fn flush(&self) {}
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
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}
