//! The CP's request head parser and upgrade check, on bytes delivered in chunks of a
//! size the input chooses.
//!
//! Input: byte 0 picks the chunk size (1..=128) and the limits (bit 7: tight limits);
//! the rest is what the peer sends.
//!
//! Checks: no panic; a head parsed from chunks equals the head parsed whole, and the
//! bytes read past it are the bytes that follow it; an accepted upgrade gets a 101 that
//! parses and that a DP's check accepts for the same key.
#![no_main]

use std::io::{Cursor, Read};

use dpspec::http::{read_request_head, read_response_head, HttpLimits};
use dpspec::upgrade::{
    accept_response, check_request, check_response, check_upgrade, rejection_response, Endpoint,
    Rejection, UpgradeRequest, UpgradeTarget,
};
use libfuzzer_sys::fuzz_target;

/// Hands out its bytes at most `chunk` per read.
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
    let limits = if ctl & 0x80 != 0 {
        HttpLimits::default().max_head_bytes(512).max_headers(8)
    } else {
        HttpLimits::default()
    };
    let chunk = usize::from(ctl & 0x7f) + 1;

    let mut cursor = Cursor::new(data);
    let whole = read_request_head(&mut cursor, &limits);
    let mut chunks = Chunks { data, chunk };
    let split = read_request_head(&mut chunks, &limits);
    if let Ok((head, leftover)) = &whole {
        let Ok((head2, leftover2)) = &split else {
            panic!("parsed whole but not in chunks of {chunk}: {split:?}");
        };
        assert_eq!(head, head2);
        // The head ends at the same byte both ways, and every byte read past it is kept.
        let end = cursor.position() as usize - leftover.len();
        let end2 = data.len() - chunks.data.len() - leftover2.len();
        assert_eq!(end, end2);
        assert!(data[end..].starts_with(leftover));
        assert!(data[end..].starts_with(leftover2));

        answer_passes_the_dps_check(check_request(head), &UpgradeTarget::wrpc());
        // The same head at /v1/outlet (Kong's JSON protocol).
        answer_passes_the_dps_check(
            check_upgrade(head, &Endpoint::outlet()),
            &UpgradeTarget::outlet(),
        );
    }
});

/// The CP's answer to a checked request parses; a 101 passes the DP's check for `target`
/// (when the DP would have offered what the request did), a refusal keeps its status.
fn answer_passes_the_dps_check(checked: Result<UpgradeRequest, Rejection>, target: &UpgradeTarget) {
    match checked {
        Ok(req) => {
            let resp = accept_response(&req, "cp-node");
            let (rh, rest) = read_response_head(&mut Cursor::new(&resp), &HttpLimits::default())
                .expect("our 101 must parse");
            assert!(rest.is_empty());
            assert_eq!(rh.status, 101);
            if req.subprotocol == target.subprotocol {
                check_response(&rh, &req.key, target).expect("our 101 must pass the DP's check");
            }
        }
        Err(rej) => {
            let resp = rejection_response(&rej, "cp-node", true);
            let (rh, _) = read_response_head(&mut Cursor::new(&resp), &HttpLimits::default())
                .expect("our refusal must parse");
            assert_eq!(rh.status, rej.status);
        }
    }
}
