//! The wRPC envelope: the protobuf messages that wrap every RPC on the wire.
//!
//! Every binary WebSocket message carries exactly one [`WebsocketPayload`], which holds one
//! [`PayloadV1`]. The definitions here are written by hand with prost's derive macros (no
//! `.proto` compilation); field numbers follow the wRPC protocol definition, and
//! [`ErrorType`] is numbered the way Kong and go-wrpc number it on the wire.
//!
//! The constructors always produce what every known peer accepts: requests, responses and
//! stream messages carry exactly one payload element (empty bytes for an empty message,
//! because a go-wrpc peer crashes on a request without one), encoded as PROTO3.
//!
//! Decoding accepts anything protobuf allows: fields in any order, zero values written
//! explicitly and empty sub-messages, which is what Kong's Lua encoder produces.

use bytes::Bytes;
use prost::Message;

/// Version of the envelope ([`WebsocketPayload::version`]). Only V1 exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PayloadVersion {
    /// Not set: a receiver drops such a message.
    Unspecified = 0,
    /// Version 1, the only one defined.
    V1 = 1,
}

/// What a [`PayloadV1`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MessageType {
    /// Not set: the message is invalid.
    Unspecified = 0,
    /// A protocol-level error about an earlier message (see [`PayloadV1::error`]).
    Error = 1,
    /// A request (`ack == 0`) or a response (`ack` = the request's `seq`).
    Rpc = 2,
    /// Opens a stream; its `stream_id` equals its own `seq`.
    StreamBegin = 3,
    /// One message of an open stream.
    StreamMessage = 4,
    /// Closes a stream.
    StreamEnd = 5,
}

/// Kind of a protocol-level error, numbered as Kong and go-wrpc number it (the published
/// `.proto` only lists the first two).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ErrorType {
    /// No particular kind; Kong sends it when a handler fails.
    Unspecified = 0,
    /// A generic protocol error (invalid message, handler failure on our side).
    Generic = 1,
    /// The receiver does not know the `svc_id`.
    InvalidService = 2,
    /// The receiver knows the service but not the `rpc_id` (or has no handler for it).
    InvalidRpc = 3,
}

/// How the elements of [`PayloadV1::payloads`] are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Encoding {
    /// Not set; used when there is no payload (errors, stream control messages).
    Unspecified = 0,
    /// Protocol buffers version 3: the only encoding in use.
    Proto3 = 1,
}

/// The top-level message of every binary WebSocket message.
#[derive(Clone, PartialEq, Message)]
pub struct WebsocketPayload {
    /// The envelope version, a [`PayloadVersion`]; must be V1 (1).
    #[prost(enumeration = "PayloadVersion", tag = "1")]
    pub version: i32,
    /// The message itself; present exactly when `version` is V1.
    #[prost(message, optional, tag = "2")]
    pub payload: Option<PayloadV1>,
}

/// A protocol-level error carried by an [`MessageType::Error`] message.
#[derive(Clone, PartialEq, Message)]
pub struct ErrorPayload {
    /// The kind of error, an [`ErrorType`].
    #[prost(enumeration = "ErrorType", tag = "1")]
    pub etype: i32,
    /// Human-readable text.
    #[prost(string, tag = "2")]
    pub description: String,
}

/// One wRPC message: a request, a response, an error or a stream message.
#[derive(Clone, PartialEq, Message)]
pub struct PayloadV1 {
    /// What this message is, a [`MessageType`].
    #[prost(enumeration = "MessageType", tag = "1")]
    pub mtype: i32,
    /// The error, set only on [`MessageType::Error`] messages. Errors returned by an RPC
    /// handler travel in `payloads` as ordinary responses instead.
    #[prost(message, optional, tag = "2")]
    pub error: Option<ErrorPayload>,
    /// The service id (greater than 0 for RPCs).
    #[prost(uint32, tag = "3")]
    pub svc_id: u32,
    /// The RPC id within the service (greater than 0 for RPCs).
    #[prost(uint32, tag = "4")]
    pub rpc_id: u32,
    /// The sender's sequence number for this message; never 0. Each side keeps its own
    /// counter per connection; a receiver must not assume it increases.
    #[prost(uint32, tag = "5")]
    pub seq: u32,
    /// In a response or an error: the `seq` of the message answered. 0 in a request.
    #[prost(uint32, tag = "6")]
    pub ack: u32,
    /// In a request: the Unix time, in whole seconds, when the caller gives up. 0 in a
    /// response.
    #[prost(uint32, tag = "7")]
    pub deadline: u32,
    /// How `payloads` are encoded, an [`Encoding`].
    #[prost(enumeration = "Encoding", tag = "8")]
    pub payload_encoding: i32,
    /// The encoded request or response. Repeated in the protocol definition, singular in
    /// Kong: one element looks the same on the wire either way. Decoded with
    /// [`decode_envelope_owned`], each element shares the message's buffer.
    #[prost(bytes = "bytes", repeated, tag = "9")]
    pub payloads: Vec<Bytes>,
    /// For stream messages, the `seq` of the stream's STREAM_BEGIN; 0 otherwise.
    #[prost(uint32, tag = "10")]
    pub stream_id: u32,
}

impl PayloadV1 {
    /// A request (`ack` 0) calling `rpc` of service `svc`, giving up at `deadline` (Unix
    /// seconds, must not be 0), with `body` as its only payload element.
    pub fn request(svc: u32, rpc: u32, seq: u32, deadline: u32, body: Vec<u8>) -> Self {
        PayloadV1 {
            mtype: MessageType::Rpc as i32,
            error: None,
            svc_id: svc,
            rpc_id: rpc,
            seq,
            ack: 0,
            deadline,
            payload_encoding: Encoding::Proto3 as i32,
            payloads: vec![Bytes::from(body)],
            stream_id: 0,
        }
    }

    /// A response to the request whose seq was `ack`, echoing its `svc` and `rpc` (Kong
    /// chooses the decoder from them), deadline 0, with `body` as its only payload element.
    pub fn response(svc: u32, rpc: u32, seq: u32, ack: u32, body: Vec<u8>) -> Self {
        PayloadV1 {
            mtype: MessageType::Rpc as i32,
            error: None,
            svc_id: svc,
            rpc_id: rpc,
            seq,
            ack,
            deadline: 0,
            payload_encoding: Encoding::Proto3 as i32,
            payloads: vec![Bytes::from(body)],
            stream_id: 0,
        }
    }

    /// A protocol error about the message whose seq was `ack`, echoing its ids. It has no
    /// payload, as the protocol requires for errors.
    pub fn error(
        svc: u32,
        rpc: u32,
        seq: u32,
        ack: u32,
        etype: ErrorType,
        description: impl Into<String>,
    ) -> Self {
        PayloadV1 {
            mtype: MessageType::Error as i32,
            error: Some(ErrorPayload {
                etype: etype as i32,
                description: description.into(),
            }),
            svc_id: svc,
            rpc_id: rpc,
            seq,
            ack,
            deadline: 0,
            payload_encoding: Encoding::Unspecified as i32,
            payloads: Vec::new(),
            stream_id: 0,
        }
    }

    /// Opens a stream in the context of `rpc` of service `svc`: the stream's id is this
    /// message's own `seq`. A control message: no payload, encoding unspecified.
    pub fn stream_begin(svc: u32, rpc: u32, seq: u32) -> Self {
        PayloadV1 {
            mtype: MessageType::StreamBegin as i32,
            error: None,
            svc_id: svc,
            rpc_id: rpc,
            seq,
            ack: 0,
            deadline: 0,
            payload_encoding: Encoding::Unspecified as i32,
            payloads: Vec::new(),
            stream_id: seq,
        }
    }

    /// One message of the stream `stream_id`, with `body` as its only payload element.
    pub fn stream_message(svc: u32, rpc: u32, seq: u32, stream_id: u32, body: Vec<u8>) -> Self {
        PayloadV1 {
            mtype: MessageType::StreamMessage as i32,
            error: None,
            svc_id: svc,
            rpc_id: rpc,
            seq,
            ack: 0,
            deadline: 0,
            payload_encoding: Encoding::Proto3 as i32,
            payloads: vec![Bytes::from(body)],
            stream_id,
        }
    }

    /// Closes the stream `stream_id`. A control message: no payload, encoding unspecified.
    pub fn stream_end(svc: u32, rpc: u32, seq: u32, stream_id: u32) -> Self {
        PayloadV1 {
            mtype: MessageType::StreamEnd as i32,
            error: None,
            svc_id: svc,
            rpc_id: rpc,
            seq,
            ack: 0,
            deadline: 0,
            payload_encoding: Encoding::Unspecified as i32,
            payloads: Vec::new(),
            stream_id,
        }
    }

    /// The encoded message: the first payload element, or empty bytes when there is none
    /// (a missing payload means an empty message).
    pub fn body(&self) -> &[u8] {
        self.payloads.first().map(|b| &b[..]).unwrap_or(&[])
    }

    /// Like [`body`](Self::body), but takes the bytes out (a copy only when they share
    /// the buffer of a bigger message).
    pub fn into_body(self) -> Vec<u8> {
        self.into_body_bytes().into()
    }

    /// Like [`body`](Self::body), as a handle on the same bytes (no copy).
    pub fn body_bytes(&self) -> Bytes {
        self.payloads.first().cloned().unwrap_or_default()
    }

    /// Like [`body`](Self::body), but takes the bytes out without copying them.
    pub fn into_body_bytes(self) -> Bytes {
        self.payloads.into_iter().next().unwrap_or_default()
    }
}

/// The bytes of a whole request envelope up to its payload: `request_head(..) + body`
/// equals `encode_envelope(&PayloadV1::request(svc, rpc, seq, deadline, body))`, so a big
/// body shared by many requests (a config pushed to every DP) is never copied into each.
pub fn request_head(svc: u32, rpc: u32, seq: u32, deadline: u32, body_len: usize) -> Vec<u8> {
    use prost::encoding::{
        encode_key, encode_varint, encoded_len_varint, int32, key_len, WireType,
    };
    let fields = PayloadV1::request(svc, rpc, seq, deadline, Vec::new());
    let mut without_payload = fields.clone();
    without_payload.payloads.clear();
    // The payload (field 9) is the last field written: stream_id (10) is 0 in a request.
    let payload_field = key_len(9) + encoded_len_varint(body_len as u64) + body_len;
    let inner = without_payload.encoded_len() + payload_field;
    let version = PayloadVersion::V1 as i32;
    let mut buf = Vec::with_capacity(32 + without_payload.encoded_len());
    int32::encode(1, &version, &mut buf);
    encode_key(2, WireType::LengthDelimited, &mut buf);
    encode_varint(inner as u64, &mut buf);
    without_payload
        .encode(&mut buf)
        .expect("a Vec grows as needed");
    encode_key(9, WireType::LengthDelimited, &mut buf);
    encode_varint(body_len as u64, &mut buf);
    buf
}

/// Encodes `msg` inside a [`WebsocketPayload`] of version V1, ready to be sent as one
/// binary WebSocket message. Allocates once, at the exact size, and does not copy `msg`.
pub fn encode_envelope(msg: &PayloadV1) -> Vec<u8> {
    use prost::encoding::{int32, message};
    let version = PayloadVersion::V1 as i32;
    let len = int32::encoded_len(1, &version) + message::encoded_len(2, msg);
    let mut buf = Vec::with_capacity(len);
    int32::encode(1, &version, &mut buf);
    message::encode(2, msg, &mut buf);
    debug_assert_eq!(buf.len(), len);
    buf
}

/// Decodes one WebSocket message into a [`WebsocketPayload`]. Only the protobuf encoding
/// is checked here; see [`super::validate::classify`] for the protocol rules.
pub fn decode_envelope(bytes: &[u8]) -> Result<WebsocketPayload, prost::DecodeError> {
    WebsocketPayload::decode(bytes)
}

/// Like [`decode_envelope`], but takes the message: the payload elements are slices of its
/// buffer, not copies (what the peer does with every message it receives).
pub fn decode_envelope_owned(message: Vec<u8>) -> Result<WebsocketPayload, prost::DecodeError> {
    WebsocketPayload::decode(Bytes::from(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap(p: PayloadV1) -> WebsocketPayload {
        WebsocketPayload {
            version: 1,
            payload: Some(p),
        }
    }

    // A request body: field 1, length 2, "hi".
    const BODY: &[u8] = &[0x0a, 0x02, b'h', b'i'];

    const REQUEST_BYTES: &[u8] = &[
        0x08, 0x01, // WebsocketPayload.version (1, varint) = V1
        0x12, 0x16, // WebsocketPayload.payload (2, len) = 22 bytes:
        0x08, 0x02, //   mtype (1, varint) = RPC
        0x18, 0x05, //   svc_id (3, varint) = 5
        0x20, 0x01, //   rpc_id (4, varint) = 1
        0x28, 0x01, //   seq (5, varint) = 1
        // ack = 0: not written
        0x38, 0x80, 0xe2, 0xcf, 0xaa, 0x06, //   deadline (7, varint) = 1_700_000_000
        0x40, 0x01, //   payload_encoding (8, varint) = PROTO3
        0x4a, 0x04, 0x0a, 0x02, b'h', b'i', //   payloads (9, len) = the 4-byte body
    ];

    #[test]
    fn request_encodes_to_golden_bytes() {
        let p = PayloadV1::request(5, 1, 1, 1_700_000_000, BODY.to_vec());
        assert_eq!(encode_envelope(&p), REQUEST_BYTES);
        assert_eq!(decode_envelope(REQUEST_BYTES).unwrap(), wrap(p));
    }

    #[test]
    fn response_with_empty_body_keeps_one_empty_payload_element() {
        let p = PayloadV1::response(1, 3, 7, 2, Vec::new());
        let expected: &[u8] = &[
            0x08, 0x01, // version = V1
            0x12, 0x0e, // payload: 14 bytes
            0x08, 0x02, //   mtype = RPC
            0x18, 0x01, //   svc_id = 1
            0x20, 0x03, //   rpc_id = 3
            0x28, 0x07, //   seq = 7
            0x30, 0x02, //   ack (6, varint) = 2
            // deadline = 0: not written
            0x40, 0x01, //   payload_encoding = PROTO3
            0x4a, 0x00, //   payloads: one element of 0 bytes
        ];
        assert_eq!(encode_envelope(&p), expected);
        assert_eq!(decode_envelope(expected).unwrap(), wrap(p));
    }

    #[test]
    fn error_encodes_to_golden_bytes() {
        let p = PayloadV1::error(1, 9, 8, 4, ErrorType::InvalidRpc, "no");
        let expected: &[u8] = &[
            0x08, 0x01, // version = V1
            0x12, 0x12, // payload: 18 bytes
            0x08, 0x01, //   mtype = ERROR
            0x12, 0x06, //   error (2, len) = 6 bytes:
            0x08, 0x03, //     etype (1, varint) = INVALID_RPC
            0x12, 0x02, b'n', b'o', //     description (2, len) = "no"
            0x18, 0x01, //   svc_id = 1
            0x20, 0x09, //   rpc_id = 9
            0x28, 0x08, //   seq = 8
            0x30,
            0x04, //   ack = 4
                  // no deadline, no encoding, no payloads, no stream_id
        ];
        assert_eq!(encode_envelope(&p), expected);
        assert_eq!(decode_envelope(expected).unwrap(), wrap(p));
    }

    #[test]
    fn encode_envelope_matches_prost_on_the_wrapper() {
        for p in [
            PayloadV1::request(5, 1, 300, 99, vec![7; 300]),
            PayloadV1::stream_begin(2, 3, 40),
            PayloadV1::stream_message(2, 3, 41, 40, vec![1]),
            PayloadV1::stream_end(2, 3, 42, 40),
        ] {
            assert_eq!(encode_envelope(&p), wrap(p).encode_to_vec());
        }
    }

    #[test]
    fn shuffled_fields_and_explicit_zeros_decode_like_the_normal_encoding() {
        let shuffled: &[u8] = &[
            0x12, 0x1a, // payload first: 26 bytes
            0x4a, 0x04, 0x0a, 0x02, b'h', b'i', //   payloads
            0x50, 0x00, //   stream_id = 0, written
            0x40, 0x01, //   payload_encoding = PROTO3
            0x38, 0x80, 0xe2, 0xcf, 0xaa, 0x06, //   deadline
            0x30, 0x00, //   ack = 0, written
            0x28, 0x01, //   seq = 1
            0x20, 0x01, //   rpc_id = 1
            0x18, 0x05, //   svc_id = 5
            0x08, 0x02, //   mtype = RPC, last
            0x08, 0x01, // version last
        ];
        assert_eq!(
            decode_envelope(shuffled).unwrap(),
            decode_envelope(REQUEST_BYTES).unwrap()
        );
    }

    #[test]
    fn zero_enums_written_explicitly_decode_like_omitted_ones() {
        let normal = PayloadV1::error(1, 2, 3, 4, ErrorType::Unspecified, "no");
        let kong_style: &[u8] = &[
            0x08, 0x01, // version = V1
            0x12, 0x16, // payload: 22 bytes
            0x40, 0x00, //   payload_encoding = UNSPECIFIED, written
            0x38, 0x00, //   deadline = 0, written
            0x12, 0x06, //   error: 6 bytes
            0x12, 0x02, b'n', b'o', //     description = "no"
            0x08, 0x00, //     etype = UNSPECIFIED, written
            0x30, 0x04, //   ack = 4
            0x28, 0x03, //   seq = 3
            0x20, 0x02, //   rpc_id = 2
            0x18, 0x01, //   svc_id = 1
            0x08, 0x01, //   mtype = ERROR
        ];
        assert_eq!(decode_envelope(kong_style).unwrap(), wrap(normal));
    }

    #[test]
    fn empty_sub_message_decodes_as_present_and_default() {
        // A request as Kong writes it: with an empty `error` sub-message.
        let mut with_empty_error = REQUEST_BYTES.to_vec();
        with_empty_error[3] += 2;
        with_empty_error.extend_from_slice(&[0x12, 0x00]); // error (2, len) = 0 bytes
        let decoded = decode_envelope(&with_empty_error).unwrap();
        let mut expected = PayloadV1::request(5, 1, 1, 1_700_000_000, BODY.to_vec());
        expected.error = Some(ErrorPayload::default());
        assert_eq!(decoded, wrap(expected));
        assert_eq!(decoded.payload.unwrap().body(), BODY);
    }

    #[test]
    fn missing_payload_element_is_an_empty_body() {
        let mut p = PayloadV1::response(1, 1, 1, 1, vec![1, 2]);
        assert_eq!(p.body(), &[1, 2]);
        p.payloads.clear();
        assert_eq!(p.body(), b"");
        assert_eq!(p.into_body(), Vec::<u8>::new());
    }

    #[test]
    fn constructors_set_the_stream_fields() {
        let b = PayloadV1::stream_begin(4, 5, 30);
        assert_eq!((b.mtype, b.stream_id, b.payloads.len()), (3, 30, 0));
        let m = PayloadV1::stream_message(4, 5, 31, 30, vec![9]);
        assert_eq!((m.mtype, m.stream_id, m.body()), (4, 30, &[9u8][..]));
        let e = PayloadV1::stream_end(4, 5, 32, 30);
        assert_eq!((e.mtype, e.stream_id, e.payloads.len()), (5, 30, 0));
    }

    #[test]
    fn truncated_bytes_fail_to_decode() {
        assert!(decode_envelope(&REQUEST_BYTES[..REQUEST_BYTES.len() - 1]).is_err());
    }

    #[test]
    fn request_head_plus_body_is_the_whole_request() {
        for len in [0usize, 1, 127, 128, 16_383, 16_384, 1 << 20] {
            let body = vec![0x5a; len];
            let mut parts = request_head(1, 2, 77, 1_700_000_000, len);
            parts.extend_from_slice(&body);
            let whole = encode_envelope(&PayloadV1::request(1, 2, 77, 1_700_000_000, body));
            assert_eq!(parts, whole, "body of {len} bytes");
        }
    }
}
