//! When to try again after a connection to the CP fails or ends.

use std::time::Duration;

use crate::random;

/// How long the data plane waits before its next connection attempt.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum Reconnect {
    /// Kong's rule: a random whole number of seconds from 5 to 10 after any failure. The
    /// default.
    #[default]
    Kong,
    /// Exponential backoff: `initial`, doubled after each failed attempt up to `max`, each
    /// delay drawn at random from its upper half (jitter), back to `initial` after a
    /// connection that negotiated successfully.
    Backoff {
        /// The first delay.
        initial: Duration,
        /// The largest delay.
        max: Duration,
    },
    /// Always the same delay (handy in tests).
    Fixed(Duration),
}

impl Reconnect {
    /// The delay before attempt number `failures + 1`, where `failures` counts the attempts
    /// that failed in a row (0 after a good connection).
    pub fn delay(&self, failures: u32) -> Duration {
        match self {
            Reconnect::Kong => Duration::from_secs(random::range(5, 10)),
            Reconnect::Fixed(d) => *d,
            Reconnect::Backoff { initial, max } => {
                let factor = 2u32.saturating_pow(failures.min(31));
                let full = initial.saturating_mul(factor).min(*max);
                let half = full / 2;
                let jitter = random::range(0, half.as_millis() as u64);
                half + Duration::from_millis(jitter)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kong_waits_a_whole_number_of_seconds_from_5_to_10() {
        for _ in 0..200 {
            let d = Reconnect::Kong.delay(3);
            assert!(d >= Duration::from_secs(5) && d <= Duration::from_secs(10));
            assert_eq!(d.subsec_nanos(), 0);
        }
    }

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let b = Reconnect::Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for _ in 0..100 {
            let first = b.delay(0);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let late = b.delay(20);
            assert!(late >= Duration::from_secs(1) && late <= Duration::from_secs(2));
        }
    }
}
