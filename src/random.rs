//! Random values from the operating system, through ring (already in the tree for TLS):
//! node ids, WebSocket masks and reconnect jitter.

use ring::rand::SecureRandom;

/// Fills `buf` with random bytes. Falls back to a clock-derived value only if the
/// operating system's source fails, which ring reports as an error.
pub(crate) fn fill(buf: &mut [u8]) {
    // ring's SystemRandom is a zero-sized handle on getrandom(2): no provider to build
    // (rustls's default_provider allocates its suite lists on every call).
    if ring::rand::SystemRandom::new().fill(buf).is_err() {
        let mut x = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}

/// A random u64.
#[cfg(feature = "dp")]
pub(crate) fn u64() -> u64 {
    let mut b = [0u8; 8];
    fill(&mut b);
    u64::from_le_bytes(b)
}

/// A random whole number in `low..=high` (reconnect jitter).
#[cfg(feature = "dp")]
pub(crate) fn range(low: u64, high: u64) -> u64 {
    if high <= low {
        return low;
    }
    low + u64() % (high - low + 1)
}

/// A random UUID (version 4), lowercase with hyphens, as Kong's node ids are.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Whether `s` looks like a UUID (8-4-4-4-12 hex digits).
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    parts.len() == 5
        && parts
            .iter()
            .zip(lens)
            .all(|(p, n)| p.len() == n && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_version_4_and_distinct() {
        let a = super::uuid_v4();
        assert!(super::is_uuid(&a), "{a}");
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, super::uuid_v4());
    }

    #[test]
    #[cfg(feature = "dp")]
    fn range_stays_inside() {
        for _ in 0..1000 {
            let v = super::range(5, 10);
            assert!((5..=10).contains(&v));
        }
    }
}
