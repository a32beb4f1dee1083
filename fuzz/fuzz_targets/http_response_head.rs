//! The DP's side of HTTP: the response head parser with the upgrade check it runs on a
//! `101`, and the CONNECT answer parser of the proxy code, on the same bytes.
//!
//! Input: byte 0 picks the chunk size (1..=128); the rest is what the CP or the proxy
//! sends.
//!
//! Checks: no panic; a head parsed from chunks equals the head parsed whole with the same
//! bytes kept past it; the CONNECT parser never reads past the end of the head it
//! returns, and agrees with the general parser on the status.
#![no_main]

use std::io::{Cursor, Read};

use dpspec::http::{read_response_head, HttpLimits};
use dpspec::proxy::read_connect_answer;
use dpspec::upgrade::{check_response, UpgradeTarget};
use libfuzzer_sys::fuzz_target;

/// The key of RFC 6455's example; its accept value is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

struct Chunks<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let chunk = usize::from(ctl & 0x7f) + 1;
    let max_head_bytes = 16 * 1024;
    let limits = HttpLimits::default().max_head_bytes(max_head_bytes);

    let mut cursor = Cursor::new(data);
    let whole = read_response_head(&mut cursor, &limits);
    let mut chunks = Chunks { data, chunk };
    let split = read_response_head(&mut chunks, &limits);
    if let Ok((head, leftover)) = &whole {
        let Ok((head2, leftover2)) = &split else {
            panic!("parsed whole but not in chunks of {chunk}: {split:?}");
        };
        assert_eq!(head, head2);
        let end = cursor.position() as usize - leftover.len();
        let end2 = data.len() - chunks.data.len() - leftover2.len();
        assert_eq!(end, end2);
        assert!(data[end..].starts_with(leftover));
        assert!(data[end..].starts_with(leftover2));
        if head.status == 101 {
            let _ = check_response(head, KEY, &UpgradeTarget::wrpc());
            let _ = check_response(head, KEY, &UpgradeTarget::outlet());
        }
    }

    let mut proxy = Cursor::new(data);
    if let Ok((status, _reason)) = read_connect_answer(&mut proxy, "proxy:3128") {
        let used = proxy.position() as usize;
        assert!(used <= data.len().min(dpspec::proxy::MAX_HEAD_BYTES));
        assert_eq!(data[used - 1], b'\n', "the answer must end at a line end");
        if let Ok((head, _)) = &whole {
            if used <= max_head_bytes {
                assert_eq!(head.status, status);
            }
        }
    }
});
