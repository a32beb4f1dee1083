//! WebSocket framing without I/O: frame headers through tungstenite's [`FrameHeader`],
//! masking, and a decoder that turns received plaintext into whole messages.
//!
//! The decoder enforces what RFC 6455 and this crate require of a peer: client frames
//! masked and server frames not, no reserved bits, control frames short and unfragmented,
//! close frames with a valid code and a UTF-8 reason, and no message over the size limit
//! (checked from the frame header, before the payload is buffered).

use std::io::Cursor;

use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Close status codes this crate sends or names (RFC 6455 section 7.4.1). Which codes may
/// appear on the wire is `is_valid_close_code`'s to say.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// A WebSocket protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A data type this endpoint does not accept (wRPC: a text frame).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Data inconsistent with the message type (wRPC: a bad envelope).
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A message bigger than this endpoint accepts.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// Whether `code` may appear in a close frame on the wire, sent or received (RFC 6455
/// sections 7.4.1 and 7.4.2, and the IANA registry).
///
/// Valid: 1000–1003, 1007–1014 (1012–1014 are registered since the RFC: service restart,
/// try again later, bad gateway) and 3000–4999 (libraries, frameworks, applications).
/// Invalid: below 1000, 1004 (reserved), 1005, 1006 and 1015 (they stand for "no code",
/// "no close frame" and "TLS failed", so are never sent), 1016–2999 (reserved for the
/// protocol) and 5000 up.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The code [`close_payload`] puts on the wire when asked for `code`: `code` itself when
/// [`is_valid_close_code`] accepts it, else 1000 (normal closure). An invalid code is our
/// own caller's mistake, not the peer's, so it must not become 1002 (which blames the
/// peer); 1000 still ends the connection cleanly.
pub fn sendable_close_code(code: u16) -> u16 {
    if is_valid_close_code(code) {
        code
    } else {
        close_code::NORMAL
    }
}

/// Which end of the WebSocket this is. Clients mask their frames; servers do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end that sent the upgrade request (the DP).
    Client,
    /// The end that answered it (the CP).
    Server,
}

/// One complete thing the decoder found in the byte stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole binary message, reassembled from its fragments.
    Binary(Vec<u8>),
    /// A whole text message (wRPC does not use them; the channel closes with 1003).
    Text,
    /// A ping with its payload, to be answered with a pong.
    Ping(Vec<u8>),
    /// A pong (ignored).
    Pong,
    /// A close frame, with the code and reason if the peer gave them. The decoder only
    /// returns valid codes (see [`is_valid_close_code`]), so echoing one is always legal,
    /// and UTF-8 reasons (any other is a violation with 1007).
    Close(Option<(u16, String)>),
}

/// Why the decoder gave up on the byte stream; the channel closes with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The close code to send.
    pub code: u16,
    /// What the peer did wrong, short enough for a close frame.
    pub reason: String,
}

impl Violation {
    fn protocol(reason: impl Into<String>) -> Violation {
        Violation {
            code: close_code::PROTOCOL_ERROR,
            reason: reason.into(),
        }
    }
}

/// Largest frame header: 2 bytes, 8 bytes of length, 4 bytes of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// Writes the header of an unfragmented binary frame carrying `len` bytes into `out`,
/// masked with `mask` if given; returns nothing, the payload follows.
pub fn write_header(out: &mut Vec<u8>, opcode: OpCode, len: usize, mask: Option<[u8; 4]>) {
    let header = FrameHeader {
        is_final: true,
        opcode,
        mask,
        ..FrameHeader::default()
    };
    // Writing into a Vec cannot fail.
    let _ = header.format(len as u64, out);
}

/// XORs `buf` with the 4-byte `mask`, where `offset` is the position of `buf[0]` within
/// the frame's payload.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = [0u8; 8];
    for (i, b) in m.iter_mut().enumerate() {
        *b = mask[(offset + i) % 4];
    }
    let wide = u64::from_ne_bytes(m);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes([
            chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
        ]) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 8];
    }
}

/// Formats a whole control frame (close, ping, pong) into bytes ready to encrypt.
pub fn control_frame(control: Control, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER_LEN + payload.len());
    write_header(&mut out, OpCode::Control(control), payload.len(), mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        apply_mask(&mut out[start..], mask, 0);
    }
    out
}

/// The payload of a close frame: the code, then the reason cut to fit 123 bytes on a
/// character boundary. A code that must not be sent (1005, 1006, 1015, or any other that
/// [`is_valid_close_code`] refuses) goes out as 1000; see [`sendable_close_code`].
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = Vec::with_capacity(2 + cut);
    out.extend_from_slice(&sendable_close_code(code).to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..cut]);
    out
}

/// The least room [`Decoder`] makes past the bytes of an incomplete frame: one socket read
/// (the reader's chunk, a TLS record and some).
const GROW_STEP: usize = 16 * 1024 + 512;

/// Close code 1008, policy violation: a fragmented message where none may be.
const POLICY_VIOLATION: u16 = 1008;

/// Turns plaintext into [`Frame`]s. Feed bytes with [`Decoder::buffer`], then call
/// [`Decoder::next`] until it returns `Ok(None)`.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_message: usize,
    input: Vec<u8>,
    start: usize,
    /// A fragmented message being reassembled: its opcode was binary (true) or text.
    partial: Option<(bool, Vec<u8>)>,
    /// Whether fragmented messages are taken (else a non-final data frame is a violation).
    fragments: bool,
    /// A big data frame whose payload is received straight into its own buffer.
    direct: Option<Direct>,
}

/// A big data frame being received into a buffer of its own, which becomes the message:
/// its bytes are copied neither out of the input buffer nor by the input's growth.
struct Direct {
    header: FrameHeader,
    len: usize,
    /// The payload so far; may run past `len` into the next frame's bytes.
    payload: Vec<u8>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("len", &self.len)
            .field("received", &self.payload.len())
            .finish()
    }
}

/// Data frames of at least this many bytes are received into their own buffer
/// ([`Direct`]) once an eighth of them has arrived: a peer can make us reserve at most
/// eight times what it has sent.
const DIRECT_MIN: usize = 256 * 1024;

/// Room past a direct frame's end for the next frame's first bytes, which come in the
/// same read (a TLS record's plaintext), so that they do not reallocate the payload.
const DIRECT_SLACK: usize = 16 * 1024 + 512;

impl Decoder {
    /// A decoder for the given end, refusing messages over `max_message` bytes.
    pub fn new(role: Role, max_message: usize) -> Decoder {
        Decoder {
            role,
            max_message,
            input: Vec::new(),
            start: 0,
            partial: None,
            fragments: true,
            direct: None,
        }
    }

    /// This decoder, refusing fragmented messages: a non-final data frame is a violation
    /// with close code 1008 (policy), as Kong's `/v1/outlet` nodes take every message as
    /// one frame.
    pub fn without_fragments(mut self) -> Decoder {
        self.fragments = false;
        self
    }

    /// The buffer to append received plaintext to.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        if let Some(direct) = self.direct.as_mut() {
            return &mut direct.payload;
        }
        if self.start > 0 && self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
        }
        &mut self.input
    }

    /// The buffer to append `incoming` more bytes of received plaintext to: as
    /// [`buffer`](Self::buffer), except that a big data frame whose header has arrived
    /// moves to its own buffer as soon as these bytes bring it to an eighth, so that they
    /// go there at once instead of growing the input first and being moved after.
    pub fn buffer_for(&mut self, incoming: usize) -> &mut Vec<u8> {
        if self.direct.is_none() && self.input.len() - self.start + incoming >= DIRECT_MIN / 8 {
            self.direct_before(incoming);
        }
        self.buffer()
    }

    /// Starts receiving the big data frame at the head of the input into its own buffer if
    /// `incoming` more bytes bring it to an eighth without completing it.
    fn direct_before(&mut self, incoming: usize) {
        let Some((header, header_len, len)) = self.head_frame() else {
            return;
        };
        if !matches!(header.opcode, OpCode::Data(_)) {
            return;
        }
        let have = self.input.len() - self.start - header_len;
        if len >= DIRECT_MIN && have + incoming >= len / 8 && have + incoming <= len {
            self.start_direct(header, header_len, len);
        }
    }

    /// The header at the head of the input, its length and the payload length it
    /// announces: `None` while it is incomplete, or when it is one [`next`](Self::next)
    /// refuses (left for `next` to report).
    fn head_frame(&self) -> Option<(FrameHeader, usize, usize)> {
        let mut cursor = Cursor::new(&self.input[self.start..]);
        let (header, len) = FrameHeader::parse(&mut cursor).ok()??;
        self.check_header(&header, len).ok()?;
        Some((header, cursor.position() as usize, len as usize))
    }

    /// Bytes of the frame being received that have not arrived yet: 0 between frames,
    /// while its header is incomplete, or when the header is one [`next`](Self::next)
    /// refuses (over the size limit, say). What the peer claims, within the limit.
    pub fn missing(&self) -> usize {
        if let Some(direct) = self.direct.as_ref() {
            return direct.len.saturating_sub(direct.payload.len());
        }
        self.head_frame().map_or(0, |(_, header_len, len)| {
            (header_len + len).saturating_sub(self.input.len() - self.start)
        })
    }

    /// Bytes received but not yet consumed.
    pub fn pending(&self) -> usize {
        let direct = self.direct.as_ref().map_or(0, |d| d.payload.len());
        self.input.len() - self.start + direct
    }

    /// Bytes of buffer held: the input's and a big frame's own.
    pub fn reserved(&self) -> usize {
        self.input.capacity() + self.direct.as_ref().map_or(0, |d| d.payload.capacity())
    }

    /// Releases buffer memory held by an idle decoder.
    pub fn shrink(&mut self) {
        if self.pending() == 0 {
            self.input = Vec::new();
            self.start = 0;
        }
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed, or the violation
    /// that must close the connection.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Frame>, Violation> {
        loop {
            if let Some(direct) = self.direct.as_ref() {
                if direct.payload.len() < direct.len {
                    return Ok(None);
                }
                if let Some(frame) = self.finish_direct()? {
                    return Ok(Some(frame));
                }
                continue;
            }
            let avail = &self.input[self.start..];
            let mut cursor = Cursor::new(avail);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    self.compact();
                    return Ok(None);
                }
                Err(e) => return Err(Violation::protocol(format!("bad frame header: {e}"))),
            };
            let header_len = cursor.position() as usize;
            self.check_header(&header, len)?;
            let len = len as usize;
            if avail.len() < header_len + len {
                let have = avail.len() - header_len;
                if matches!(header.opcode, OpCode::Data(_)) && len >= DIRECT_MIN && have >= len / 8
                {
                    self.start_direct(header, header_len, len);
                } else {
                    self.reserve_for(header_len + len);
                    self.compact();
                }
                return Ok(None);
            }
            let payload_start = self.start + header_len;
            let payload = &mut self.input[payload_start..payload_start + len];
            if let Some(mask) = header.mask {
                apply_mask(payload, mask, 0);
            }
            let payload = &self.input[payload_start..payload_start + len];
            self.start = payload_start + len;
            match header.opcode {
                OpCode::Control(Control::Close) => return parse_close(payload).map(Some),
                OpCode::Control(Control::Ping) => return Ok(Some(Frame::Ping(payload.to_vec()))),
                OpCode::Control(Control::Pong) => return Ok(Some(Frame::Pong)),
                OpCode::Data(data) => {
                    let payload = Payload::Borrowed(payload);
                    if let Some(frame) =
                        data_frame(&mut self.partial, data, header.is_final, payload)?
                    {
                        return Ok(Some(frame));
                    }
                }
                OpCode::Control(Control::Reserved(_)) => {
                    return Err(Violation::protocol("reserved control opcode"))
                }
            }
        }
    }

    fn check_header(&self, header: &FrameHeader, len: u64) -> Result<(), Violation> {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(Violation::protocol(
                "reserved bits set (no extension was negotiated)",
            ));
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(Violation::protocol("client frame not masked")),
            (Role::Client, true) => return Err(Violation::protocol("server frame masked")),
            _ => {}
        }
        if let OpCode::Control(_) = header.opcode {
            if !header.is_final || len > 125 {
                return Err(Violation::protocol(
                    "control frame fragmented or over 125 bytes",
                ));
            }
            return Ok(());
        }
        if !header.is_final && !self.fragments {
            return Err(Violation {
                code: POLICY_VIOLATION,
                reason: "fragmented message: every message must be one frame".into(),
            });
        }
        let so_far = self.partial.as_ref().map_or(0, |(_, b)| b.len() as u64);
        if len.saturating_add(so_far) > self.max_message as u64 {
            return Err(Violation {
                code: close_code::MESSAGE_TOO_BIG,
                reason: format!(
                    "message of {} bytes is over the limit of {} bytes",
                    len.saturating_add(so_far),
                    self.max_message
                ),
            });
        }
        Ok(())
    }

    /// Makes room for more of an incomplete frame of `frame_len` bytes (header included),
    /// in step with what has arrived: room for one more read, or for as many bytes again
    /// as have come (so a big frame costs amortised O(1) copies per byte), never past the
    /// frame's end. The length the header claims is not reserved up front: a header costs
    /// a peer 14 bytes, and must not cost us 4 MiB.
    fn reserve_for(&mut self, frame_len: usize) {
        let have = self.input.len() - self.start;
        let room = frame_len.min(have.saturating_add(have.max(GROW_STEP)));
        if self.start + room > self.input.capacity() {
            // Compact first so a big frame does not need room for consumed bytes too.
            self.input.drain(..self.start);
            self.start = 0;
            self.input
                .reserve_exact(room.saturating_sub(self.input.len()));
        }
    }

    /// Moves the part of a big data frame that has arrived into a buffer of the frame's
    /// size, where the rest will be received.
    fn start_direct(&mut self, header: FrameHeader, header_len: usize, len: usize) {
        let from = self.start + header_len;
        let mut payload = Vec::with_capacity(len + DIRECT_SLACK);
        payload.extend_from_slice(&self.input[from..]);
        self.input = Vec::new();
        self.start = 0;
        self.direct = Some(Direct {
            header,
            len,
            payload,
        });
    }

    /// The direct frame is complete: what follows it goes back to the input, and its
    /// payload becomes a frame (or part of a fragmented message).
    fn finish_direct(&mut self) -> Result<Option<Frame>, Violation> {
        let Some(Direct {
            header,
            len,
            mut payload,
        }) = self.direct.take()
        else {
            return Ok(None);
        };
        self.input = payload.split_off(len);
        self.start = 0;
        if let Some(mask) = header.mask {
            apply_mask(&mut payload, mask, 0);
        }
        let OpCode::Data(data) = header.opcode else {
            return Err(Violation::protocol("a control frame cannot be this big"));
        };
        data_frame(
            &mut self.partial,
            data,
            header.is_final,
            Payload::Owned(payload),
        )
    }

    fn compact(&mut self) {
        if self.start > 0 && (self.start == self.input.len() || self.start > 64 * 1024) {
            self.input.drain(..self.start);
            self.start = 0;
        }
    }
}

/// A data frame's payload: in the input buffer, or in a buffer of its own.
enum Payload<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Payload<'_> {
    fn into_vec(self) -> Vec<u8> {
        match self {
            Payload::Borrowed(b) => b.to_vec(),
            Payload::Owned(v) => v,
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b,
            Payload::Owned(v) => v,
        }
    }
}

/// Takes one data frame: a whole message when it is final, else a part of `partial`, the
/// fragmented message being reassembled (`None`: no message is complete yet).
fn data_frame(
    partial: &mut Option<(bool, Vec<u8>)>,
    data: Data,
    is_final: bool,
    payload: Payload,
) -> Result<Option<Frame>, Violation> {
    let message = |binary: bool, bytes: Vec<u8>| {
        if binary {
            Frame::Binary(bytes)
        } else {
            Frame::Text
        }
    };
    if data == Data::Continue {
        let Some((_, buf)) = partial.as_mut() else {
            return Err(Violation::protocol("continuation frame without a message"));
        };
        buf.extend_from_slice(payload.as_slice());
        if !is_final {
            return Ok(None);
        }
        let (binary, buf) = partial.take().unwrap_or_default();
        return Ok(Some(message(binary, buf)));
    }
    if partial.is_some() {
        return Err(Violation::protocol("new message inside a fragmented one"));
    }
    let binary = data == Data::Binary;
    if is_final {
        return Ok(Some(message(binary, payload.into_vec())));
    }
    *partial = Some((binary, payload.into_vec()));
    Ok(None)
}

fn parse_close(payload: &[u8]) -> Result<Frame, Violation> {
    match payload.len() {
        0 => Ok(Frame::Close(None)),
        1 => Err(Violation::protocol("close frame with a 1-byte payload")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(Violation::protocol(format!(
                    "close code {code} is not valid on the wire"
                )));
            }
            // RFC 6455 8.1: invalid UTF-8 in a text payload fails the connection.
            let Ok(reason) = std::str::from_utf8(&payload[2..]) else {
                return Err(Violation {
                    code: close_code::INVALID_PAYLOAD,
                    reason: "close reason is not UTF-8".into(),
                });
            };
            Ok(Frame::Close(Some((code, reason.to_string()))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_frame(payload: &[u8], mask: Option<[u8; 4]>, fin: bool, op: OpCode) -> Vec<u8> {
        let mut out = Vec::new();
        let header = FrameHeader {
            is_final: fin,
            opcode: op,
            mask,
            ..FrameHeader::default()
        };
        header.format(payload.len() as u64, &mut out).unwrap();
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(m) = mask {
            apply_mask(&mut out[start..], m, 0);
        }
        out
    }

    #[test]
    fn mask_matches_bytewise_xor_at_any_offset() {
        let data: Vec<u8> = (0..37u8).collect();
        for offset in 0..4 {
            let mut fast = data.clone();
            apply_mask(&mut fast, [1, 2, 3, 4], offset);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][(i + offset) % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn without_fragments_a_non_final_frame_is_a_policy_violation() {
        let first = binary_frame(b"he", Some([1, 2, 3, 4]), false, OpCode::Data(Data::Binary));
        let mut d = Decoder::new(Role::Server, 100).without_fragments();
        d.buffer().extend_from_slice(&first);
        let v = d.next().unwrap_err();
        assert_eq!(v.code, 1008);
        assert!(v.reason.contains("fragmented"), "{}", v.reason);
        let whole = binary_frame(
            b"hello",
            Some([1, 2, 3, 4]),
            true,
            OpCode::Data(Data::Binary),
        );
        let mut d = Decoder::new(Role::Server, 100).without_fragments();
        d.buffer().extend_from_slice(&whole);
        assert_eq!(d.next().unwrap(), Some(Frame::Binary(b"hello".to_vec())));
    }

    #[test]
    fn server_decodes_masked_binary_split_byte_by_byte() {
        let bytes = binary_frame(
            b"hello",
            Some([9, 8, 7, 6]),
            true,
            OpCode::Data(Data::Binary),
        );
        let mut d = Decoder::new(Role::Server, 100);
        for (i, b) in bytes.iter().enumerate() {
            d.buffer().push(*b);
            let got = d.next().unwrap();
            if i + 1 < bytes.len() {
                assert_eq!(got, None);
            } else {
                assert_eq!(got, Some(Frame::Binary(b"hello".to_vec())));
            }
        }
    }

    #[test]
    fn fragments_are_reassembled_with_a_ping_between() {
        let mut d = Decoder::new(Role::Client, 100);
        d.buffer()
            .extend(binary_frame(b"ab", None, false, OpCode::Data(Data::Binary)));
        d.buffer().extend(binary_frame(
            b"p",
            None,
            true,
            OpCode::Control(Control::Ping),
        ));
        d.buffer().extend(binary_frame(
            b"cd",
            None,
            true,
            OpCode::Data(Data::Continue),
        ));
        assert_eq!(d.next().unwrap(), Some(Frame::Ping(b"p".to_vec())));
        assert_eq!(d.next().unwrap(), Some(Frame::Binary(b"abcd".to_vec())));
        assert_eq!(d.next().unwrap(), None);
    }

    #[test]
    fn oversize_is_refused_from_the_header_alone() {
        let mut d = Decoder::new(Role::Client, 10);
        let mut out = Vec::new();
        write_header(&mut out, OpCode::Data(Data::Binary), 11, None);
        d.buffer().extend(out);
        let v = d.next().unwrap_err();
        assert_eq!(v.code, close_code::MESSAGE_TOO_BIG);
    }

    #[test]
    fn a_header_claiming_4_mib_reserves_only_a_read_not_the_payload() {
        let mut d = Decoder::new(Role::Client, 8 << 20);
        let mut header = Vec::new();
        write_header(&mut header, OpCode::Data(Data::Binary), 4 << 20, None);
        d.buffer().extend(header);
        assert_eq!(d.next().unwrap(), None);
        assert!(
            d.input.capacity() <= 2 * GROW_STEP,
            "capacity {} after a header alone",
            d.input.capacity()
        );
    }

    #[test]
    fn a_big_frame_fed_in_reads_grows_with_what_arrived_and_decodes_in_place() {
        let payload: Vec<u8> = (0..(1usize << 20)).map(|i| i as u8).collect();
        let bytes = binary_frame(&payload, None, true, OpCode::Data(Data::Binary));
        let mut d = Decoder::new(Role::Client, 4 << 20);
        let mut fed = 0;
        for chunk in bytes.chunks(GROW_STEP) {
            d.buffer().extend_from_slice(chunk);
            fed += chunk.len();
            let got = d.next().unwrap();
            if fed < bytes.len() {
                assert_eq!(got, None);
                let cap = d.reserved();
                assert!(
                    cap <= 8 * fed + 2 * GROW_STEP,
                    "capacity {cap} after {fed} bytes"
                );
                assert!(
                    cap <= bytes.len() + DIRECT_SLACK,
                    "capacity {cap} past the frame's end"
                );
            } else {
                let Some(Frame::Binary(message)) = got else {
                    panic!("{got:?}")
                };
                assert!(message == payload, "the payload differs");
                // Received into its own buffer, not copied out of the input.
                assert_eq!(message.capacity(), payload.len() + DIRECT_SLACK);
            }
        }
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_big_frame_moves_to_its_own_buffer_before_the_input_grows_past_an_eighth() {
        let payload: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 3) as u8).collect();
        let bytes = binary_frame(&payload, None, true, OpCode::Data(Data::Binary));
        let mut d = Decoder::new(Role::Client, 4 << 20);
        let mut got = None;
        let mut most_input = 0;
        // As the reader appends: a TLS record's plaintext at a time, many per socket read,
        // and the frames looked at only once a read's records are all in.
        for read in bytes.chunks(256 * 1024) {
            for record in read.chunks(16 * 1024) {
                d.buffer_for(record.len()).extend_from_slice(record);
                most_input = most_input.max(d.input.capacity());
            }
            while let Some(frame) = d.next().unwrap() {
                got = Some(frame);
            }
        }
        assert!(
            most_input <= payload.len() / 8 + GROW_STEP,
            "the input grew to {most_input} bytes"
        );
        let Some(Frame::Binary(message)) = got else {
            panic!("no message")
        };
        assert!(message == payload, "the payload differs");
        assert_eq!(message.capacity(), payload.len() + DIRECT_SLACK);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn missing_counts_what_the_frame_being_received_still_lacks() {
        let payload = vec![5u8; DIRECT_MIN * 2];
        let bytes = binary_frame(&payload, None, true, OpCode::Data(Data::Binary));
        let mut d = Decoder::new(Role::Client, 4 << 20);
        assert_eq!(d.missing(), 0, "nothing yet");
        d.buffer().extend_from_slice(&bytes[..1]);
        assert_eq!(d.missing(), 0, "an incomplete header says nothing");
        let mut fed = 1;
        for chunk in bytes[1..].chunks(100_000) {
            d.buffer_for(chunk.len()).extend_from_slice(chunk);
            fed += chunk.len();
            assert_eq!(d.missing(), bytes.len() - fed);
            if fed < bytes.len() {
                assert_eq!(d.next().unwrap(), None);
                assert_eq!(d.missing(), bytes.len() - fed, "the same once in place");
            }
        }
        assert!(matches!(d.next().unwrap(), Some(Frame::Binary(_))));
        assert_eq!(d.missing(), 0);
        // A header over the limit claims nothing.
        let mut d = Decoder::new(Role::Client, 1000);
        let mut header = Vec::new();
        write_header(&mut header, OpCode::Data(Data::Binary), 1 << 30, None);
        d.buffer().extend(header);
        assert_eq!(d.missing(), 0);
    }

    #[test]
    fn a_big_masked_frame_then_small_ones_in_the_same_reads_all_decode() {
        let payload: Vec<u8> = (0..(DIRECT_MIN * 3 + 7)).map(|i| (i * 7) as u8).collect();
        let mut bytes = binary_frame(
            &payload,
            Some([1, 2, 3, 4]),
            true,
            OpCode::Data(Data::Binary),
        );
        bytes.extend(binary_frame(
            b"next",
            Some([5, 6, 7, 8]),
            true,
            OpCode::Data(Data::Binary),
        ));
        bytes.extend(binary_frame(
            b"p",
            Some([9, 9, 9, 9]),
            true,
            OpCode::Control(Control::Ping),
        ));
        let mut d = Decoder::new(Role::Server, 4 << 20);
        let mut frames = Vec::new();
        // Reads of an odd size, so the big frame's end falls inside one.
        for chunk in bytes.chunks(10_007) {
            d.buffer().extend_from_slice(chunk);
            while let Some(frame) = d.next().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 3);
        assert!(
            frames[0] == Frame::Binary(payload),
            "the big payload differs"
        );
        assert_eq!(frames[1], Frame::Binary(b"next".to_vec()));
        assert_eq!(frames[2], Frame::Ping(b"p".to_vec()));
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn a_big_first_fragment_is_received_in_place_and_continued() {
        let first: Vec<u8> = vec![1; DIRECT_MIN * 2];
        let mut bytes = binary_frame(&first, None, false, OpCode::Data(Data::Binary));
        bytes.extend(binary_frame(
            b"end",
            None,
            true,
            OpCode::Data(Data::Continue),
        ));
        let mut d = Decoder::new(Role::Client, 4 << 20);
        let mut frames = Vec::new();
        for chunk in bytes.chunks(GROW_STEP) {
            d.buffer().extend_from_slice(chunk);
            while let Some(frame) = d.next().unwrap() {
                frames.push(frame);
            }
        }
        let mut whole = first;
        whole.extend_from_slice(b"end");
        assert_eq!(frames.len(), 1);
        assert!(frames[0] == Frame::Binary(whole), "the message differs");
    }

    #[test]
    fn unmasked_client_frame_is_a_protocol_error() {
        let mut d = Decoder::new(Role::Server, 10);
        d.buffer()
            .extend(binary_frame(b"x", None, true, OpCode::Data(Data::Binary)));
        assert_eq!(d.next().unwrap_err().code, close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn close_frame_carries_code_and_reason() {
        let mut d = Decoder::new(Role::Client, 10);
        let payload = close_payload(1007, "bad envelope");
        d.buffer()
            .extend(control_frame(Control::Close, &payload, None));
        assert_eq!(
            d.next().unwrap(),
            Some(Frame::Close(Some((1007, "bad envelope".into()))))
        );
    }

    fn decode_close(payload: &[u8]) -> Result<Option<Frame>, Violation> {
        let mut d = Decoder::new(Role::Client, 10);
        d.buffer()
            .extend(control_frame(Control::Close, payload, None));
        d.next()
    }

    #[test]
    fn close_codes_follow_rfc_6455_and_the_iana_registry() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ];
        let invalid = [
            0,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2000,
            2999,
            5000,
            u16::MAX,
        ];
        for code in valid.into_iter().chain([3000, 3999, 4000, 4999]) {
            assert!(is_valid_close_code(code), "{code} should be valid");
        }
        for code in invalid {
            assert!(!is_valid_close_code(code), "{code} should be invalid");
        }
    }

    #[test]
    fn peer_close_with_an_invalid_code_is_a_protocol_error() {
        for code in [
            0u16,
            999,
            1004,
            1005,
            1006,
            1015,
            1016,
            2999,
            5000,
            u16::MAX,
        ] {
            let v = decode_close(&code.to_be_bytes()).unwrap_err();
            assert_eq!(v.code, close_code::PROTOCOL_ERROR, "code {code}");
        }
    }

    #[test]
    fn peer_close_with_a_registered_or_private_code_is_accepted() {
        for code in [1000u16, 1012, 1013, 1014, 3000, 4999] {
            assert_eq!(
                decode_close(&code.to_be_bytes()).unwrap(),
                Some(Frame::Close(Some((code, String::new()))))
            );
        }
    }

    #[test]
    fn peer_close_with_a_one_byte_payload_is_a_protocol_error() {
        let v = decode_close(&[3]).unwrap_err();
        assert_eq!(v.code, close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn peer_close_reason_that_is_not_utf8_is_invalid_payload() {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bad \xff\xfe reason");
        let v = decode_close(&payload).unwrap_err();
        assert_eq!(v.code, close_code::INVALID_PAYLOAD);
        // A multi-byte character is fine.
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("arrêt".as_bytes());
        assert_eq!(
            decode_close(&payload).unwrap(),
            Some(Frame::Close(Some((1000, "arrêt".into()))))
        );
    }

    #[test]
    fn close_payload_never_sends_a_reserved_or_invalid_code() {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            let p = close_payload(code, "why");
            assert_eq!(&p[..2], &close_code::NORMAL.to_be_bytes(), "code {code}");
            assert_eq!(&p[2..], b"why");
        }
        assert_eq!(&close_payload(4000, "")[..2], &4000u16.to_be_bytes());
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let p = close_payload(1000, &reason);
        assert!(p.len() <= 125);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }

    #[test]
    fn text_frame_is_reported() {
        let mut d = Decoder::new(Role::Client, 10);
        d.buffer()
            .extend(binary_frame(b"hi", None, true, OpCode::Data(Data::Text)));
        assert_eq!(d.next().unwrap(), Some(Frame::Text));
    }
}
