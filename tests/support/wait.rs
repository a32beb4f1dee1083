//! The last resort of a test that must wait for a state nothing announces: no event, no
//! channel, no log line. Every caller says why there is none. A test that can wait on an
//! event waits on it instead.

use std::time::{Duration, Instant};

/// How often [`until`] looks again: short beside any patience, long beside a spin.
const RECHECK: Duration = Duration::from_millis(5);

/// Waits until `cond` holds, looking again every few milliseconds (never spinning);
/// returns whether it held before `patience` ran out (a liveness bound: the caller
/// asserts the state it waited for).
pub fn until(patience: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(RECHECK);
    }
}
