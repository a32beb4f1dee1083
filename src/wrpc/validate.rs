//! Envelope validation: decides what a received message is, or which protocol rule it
//! breaks, without any I/O.
//!
//! The protocol answers an invalid envelope with an ERROR (when the message can be tied to
//! a seq) and then closes the connection; [`Invalid`] carries what the caller needs for
//! both: the broken [`Rule`], a short close reason, and the seq to acknowledge.
//!
//! # Stream rules enforced here
//!
//! Only the rules that a single message can break are checked: a stream message
//! (STREAM_BEGIN, STREAM_MESSAGE, STREAM_END) needs a non-zero `stream_id`, a STREAM_BEGIN
//! must use its own `seq` as `stream_id`, and every stream message needs non-zero
//! `svc_id` and `rpc_id` (a stream always belongs to an RPC). Deadlines and payload counts
//! are not checked on stream messages: the protocol's own example sets them freely.
//!
//! Rules that need connection state are the stream bookkeeping's job, not this module's:
//! a message for a stream that was never begun (or already ended) is dropped, not treated
//! as a broken envelope.
//!
//! An RPC must have `stream_id` 0. ERROR messages are only checked for their `error`
//! field; their ids and `stream_id` are whatever the peer echoed.

use std::fmt;

use super::envelope::{MessageType, PayloadVersion, WebsocketPayload};

/// What a valid message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An RPC with `ack` 0: the peer calls us.
    Request,
    /// An RPC with `ack` != 0: the peer answers one of our requests.
    Response,
    /// A protocol error about one of our messages. Never answered.
    Error,
    /// Opens a stream.
    StreamBegin,
    /// One message of a stream.
    StreamMessage,
    /// Closes a stream.
    StreamEnd,
}

/// One rule of the envelope, as broken by a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// The bytes are not a valid `WebsocketPayload` protobuf.
    BadProtobuf,
    /// `version` is not V1 (1); holds the version received.
    BadVersion(i32),
    /// `version` is V1 but there is no `payload`.
    NoPayload,
    /// `seq` is 0.
    ZeroSeq,
    /// An RPC or stream message with `svc_id` 0.
    ZeroSvcId,
    /// An RPC or stream message with `rpc_id` 0.
    ZeroRpcId,
    /// A request (RPC with `ack` 0) with `deadline` 0.
    RequestWithoutDeadline,
    /// A response (RPC with `ack` != 0) with a `deadline`; holds the deadline.
    ResponseWithDeadline(u32),
    /// A response with more than one payload element; holds how many.
    ResponseWithManyPayloads(usize),
    /// An ERROR message without its `error` field.
    ErrorWithoutError,
    /// `mtype` unspecified (0) or unknown; holds the value received.
    UnknownMessageType(i32),
    /// A stream message with `stream_id` 0.
    StreamIdZero,
    /// A STREAM_BEGIN whose `stream_id` is not its own `seq`.
    StreamBeginIdNotSeq {
        /// The message's seq.
        seq: u32,
        /// The stream id it carried.
        stream_id: u32,
    },
    /// An RPC (not a stream message) with `stream_id` != 0; holds the stream id.
    StreamIdOnRpc(u32),
}

impl Rule {
    /// A short reason for the WebSocket close frame (always well under the 123 bytes a
    /// close reason may hold).
    pub fn close_reason(&self) -> String {
        let s = match self {
            Rule::BadProtobuf => "invalid protobuf",
            Rule::BadVersion(_) => "unsupported wrpc version",
            Rule::NoPayload => "missing payload",
            Rule::ZeroSeq => "seq is 0",
            Rule::ZeroSvcId => "svc_id is 0",
            Rule::ZeroRpcId => "rpc_id is 0",
            Rule::RequestWithoutDeadline => "request without deadline",
            Rule::ResponseWithDeadline(_) => "response with deadline",
            Rule::ResponseWithManyPayloads(_) => "response with several payloads",
            Rule::ErrorWithoutError => "error message without error",
            Rule::UnknownMessageType(_) => "unknown message type",
            Rule::StreamIdZero => "stream message with stream_id 0",
            Rule::StreamBeginIdNotSeq { .. } => "stream_begin with stream_id != seq",
            Rule::StreamIdOnRpc(_) => "rpc with stream_id",
        };
        format!("invalid wrpc message: {s}")
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::BadProtobuf => f.write_str("the message is not a valid wRPC protobuf"),
            Rule::BadVersion(v) => write!(f, "envelope version is {v}, only 1 is supported"),
            Rule::NoPayload => f.write_str("the envelope has no payload"),
            Rule::ZeroSeq => f.write_str("seq is 0; every message needs a non-zero seq"),
            Rule::ZeroSvcId => f.write_str("svc_id is 0; an RPC needs a service id above 0"),
            Rule::ZeroRpcId => f.write_str("rpc_id is 0; an RPC needs an rpc id above 0"),
            Rule::RequestWithoutDeadline => {
                f.write_str("a request (ack 0) has deadline 0; requests need a deadline")
            }
            Rule::ResponseWithDeadline(d) => {
                write!(f, "a response (ack set) has deadline {d}; responses need 0")
            }
            Rule::ResponseWithManyPayloads(n) => {
                write!(
                    f,
                    "a response has {n} payload elements; at most one is allowed"
                )
            }
            Rule::ErrorWithoutError => f.write_str("an ERROR message has no error field"),
            Rule::UnknownMessageType(t) => write!(f, "message type {t} is unspecified or unknown"),
            Rule::StreamIdZero => f.write_str("a stream message has stream_id 0"),
            Rule::StreamBeginIdNotSeq { seq, stream_id } => write!(
                f,
                "a STREAM_BEGIN has stream_id {stream_id}, but it must equal its seq {seq}"
            ),
            Rule::StreamIdOnRpc(id) => {
                write!(f, "an RPC has stream_id {id}; non-stream messages need 0")
            }
        }
    }
}

/// A received message that breaks a [`Rule`] of the envelope.
///
/// The protocol's answer: send an ERROR acknowledging `seq` (only when it is `Some`), then
/// close the connection with [`Rule::close_reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Invalid {
    /// The rule broken.
    pub rule: Rule,
    /// The seq to acknowledge in the ERROR sent before closing, when the message can be
    /// tied to one. `None` when it has no usable seq, and for ERROR messages, which are
    /// never answered.
    pub seq: Option<u32>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "invalid wRPC message (seq {seq}): {}", self.rule),
            None => write!(f, "invalid wRPC message: {}", self.rule),
        }
    }
}

impl std::error::Error for Invalid {}

/// Says what a decoded message is, or which rule it breaks.
///
/// Checks, in order: the version, the payload's presence, `seq`, then the rules of its
/// message type (see the module documentation for stream rules).
pub fn classify(msg: &WebsocketPayload) -> Result<Kind, Invalid> {
    let payload = msg.payload.as_ref();
    if msg.version != PayloadVersion::V1 as i32 {
        let seq = payload.map(|p| p.seq).filter(|&s| s != 0);
        return Err(Invalid {
            rule: Rule::BadVersion(msg.version),
            seq,
        });
    }
    let Some(p) = payload else {
        return Err(Invalid {
            rule: Rule::NoPayload,
            seq: None,
        });
    };
    if p.seq == 0 {
        return Err(Invalid {
            rule: Rule::ZeroSeq,
            seq: None,
        });
    }
    let fail = |rule| {
        Err(Invalid {
            rule,
            seq: Some(p.seq),
        })
    };
    let mtype = match MessageType::try_from(p.mtype) {
        Ok(MessageType::Unspecified) | Err(_) => return fail(Rule::UnknownMessageType(p.mtype)),
        Ok(t) => t,
    };
    if mtype == MessageType::Error {
        return match p.error {
            Some(_) => Ok(Kind::Error),
            None => Err(Invalid {
                rule: Rule::ErrorWithoutError,
                seq: None,
            }),
        };
    }
    if p.svc_id == 0 {
        return fail(Rule::ZeroSvcId);
    }
    if p.rpc_id == 0 {
        return fail(Rule::ZeroRpcId);
    }
    match mtype {
        MessageType::Rpc => {
            if p.stream_id != 0 {
                return fail(Rule::StreamIdOnRpc(p.stream_id));
            }
            if p.ack == 0 {
                if p.deadline == 0 {
                    return fail(Rule::RequestWithoutDeadline);
                }
                Ok(Kind::Request)
            } else {
                if p.deadline != 0 {
                    return fail(Rule::ResponseWithDeadline(p.deadline));
                }
                if p.payloads.len() > 1 {
                    return fail(Rule::ResponseWithManyPayloads(p.payloads.len()));
                }
                Ok(Kind::Response)
            }
        }
        _ => {
            if p.stream_id == 0 {
                return fail(Rule::StreamIdZero);
            }
            match mtype {
                MessageType::StreamBegin if p.stream_id != p.seq => {
                    fail(Rule::StreamBeginIdNotSeq {
                        seq: p.seq,
                        stream_id: p.stream_id,
                    })
                }
                MessageType::StreamBegin => Ok(Kind::StreamBegin),
                MessageType::StreamMessage => Ok(Kind::StreamMessage),
                _ => Ok(Kind::StreamEnd),
            }
        }
    }
}

/// Decodes one WebSocket message and classifies it: [`Rule::BadProtobuf`] (seq `None`)
/// when the bytes are not a protobuf envelope, otherwise as [`classify`].
pub fn decode(bytes: &[u8]) -> Result<(WebsocketPayload, Kind), Invalid> {
    let msg = super::envelope::decode_envelope(bytes).map_err(|_| Invalid {
        rule: Rule::BadProtobuf,
        seq: None,
    })?;
    let kind = classify(&msg)?;
    Ok((msg, kind))
}

#[cfg(test)]
mod tests {
    use super::super::envelope::{encode_envelope, ErrorType, PayloadV1};
    use super::*;

    fn wrap(p: PayloadV1) -> WebsocketPayload {
        WebsocketPayload {
            version: 1,
            payload: Some(p),
        }
    }

    fn req() -> PayloadV1 {
        PayloadV1::request(5, 1, 10, 1_700_000_000, vec![1])
    }

    fn resp() -> PayloadV1 {
        PayloadV1::response(5, 1, 11, 3, vec![1])
    }

    fn rule_of(p: PayloadV1) -> Invalid {
        classify(&wrap(p)).unwrap_err()
    }

    fn invalid(rule: Rule, seq: Option<u32>) -> Invalid {
        Invalid { rule, seq }
    }

    #[test]
    fn valid_messages_are_classified() {
        let cases = [
            (req(), Kind::Request),
            (resp(), Kind::Response),
            (
                PayloadV1::error(5, 1, 12, 3, ErrorType::Generic, "x"),
                Kind::Error,
            ),
            (PayloadV1::stream_begin(5, 2, 20), Kind::StreamBegin),
            (
                PayloadV1::stream_message(5, 2, 21, 20, vec![]),
                Kind::StreamMessage,
            ),
            (PayloadV1::stream_end(5, 2, 22, 20), Kind::StreamEnd),
        ];
        for (p, kind) in cases {
            let bytes = encode_envelope(&p);
            assert_eq!(decode(&bytes).unwrap(), (wrap(p), kind));
        }
    }

    #[test]
    fn response_without_payload_is_valid() {
        let mut p = resp();
        p.payloads.clear();
        assert_eq!(classify(&wrap(p)), Ok(Kind::Response));
    }

    #[test]
    fn request_with_several_payloads_is_valid() {
        let mut p = req();
        p.payloads.push(vec![2].into());
        assert_eq!(classify(&wrap(p)), Ok(Kind::Request));
    }

    #[test]
    fn bad_protobuf_is_rejected_without_seq() {
        assert_eq!(
            decode(&[0x12, 0x05, 0x08]).unwrap_err(),
            invalid(Rule::BadProtobuf, None)
        );
    }

    #[test]
    fn version_other_than_1_is_rejected() {
        let mut m = wrap(req());
        m.version = 2;
        assert_eq!(
            classify(&m).unwrap_err(),
            invalid(Rule::BadVersion(2), Some(10))
        );
        m.version = 0;
        m.payload = None;
        assert_eq!(
            classify(&m).unwrap_err(),
            invalid(Rule::BadVersion(0), None)
        );
    }

    #[test]
    fn missing_payload_is_rejected() {
        let m = WebsocketPayload {
            version: 1,
            payload: None,
        };
        assert_eq!(classify(&m).unwrap_err(), invalid(Rule::NoPayload, None));
    }

    #[test]
    fn seq_zero_is_rejected() {
        let mut p = req();
        p.seq = 0;
        assert_eq!(rule_of(p), invalid(Rule::ZeroSeq, None));
    }

    #[test]
    fn rpc_with_svc_id_zero_is_rejected() {
        let mut p = req();
        p.svc_id = 0;
        assert_eq!(rule_of(p), invalid(Rule::ZeroSvcId, Some(10)));
    }

    #[test]
    fn rpc_with_rpc_id_zero_is_rejected() {
        let mut p = resp();
        p.rpc_id = 0;
        assert_eq!(rule_of(p), invalid(Rule::ZeroRpcId, Some(11)));
    }

    #[test]
    fn request_without_deadline_is_rejected() {
        let mut p = req();
        p.deadline = 0;
        assert_eq!(rule_of(p), invalid(Rule::RequestWithoutDeadline, Some(10)));
    }

    #[test]
    fn response_with_deadline_is_rejected() {
        let mut p = resp();
        p.deadline = 7;
        assert_eq!(rule_of(p), invalid(Rule::ResponseWithDeadline(7), Some(11)));
    }

    #[test]
    fn response_with_two_payloads_is_rejected() {
        let mut p = resp();
        p.payloads.push(Vec::new().into());
        assert_eq!(
            rule_of(p),
            invalid(Rule::ResponseWithManyPayloads(2), Some(11))
        );
    }

    #[test]
    fn error_without_error_is_rejected_and_never_answered() {
        let mut p = PayloadV1::error(5, 1, 12, 3, ErrorType::Generic, "x");
        p.error = None;
        assert_eq!(rule_of(p), invalid(Rule::ErrorWithoutError, None));
    }

    #[test]
    fn unspecified_and_unknown_message_types_are_rejected() {
        let mut p = req();
        p.mtype = 0;
        assert_eq!(
            rule_of(p.clone()),
            invalid(Rule::UnknownMessageType(0), Some(10))
        );
        p.mtype = 6;
        assert_eq!(rule_of(p), invalid(Rule::UnknownMessageType(6), Some(10)));
    }

    #[test]
    fn stream_message_with_stream_id_zero_is_rejected() {
        let p = PayloadV1::stream_message(5, 2, 21, 0, vec![]);
        assert_eq!(rule_of(p), invalid(Rule::StreamIdZero, Some(21)));
        let p = PayloadV1::stream_end(5, 2, 22, 0);
        assert_eq!(rule_of(p), invalid(Rule::StreamIdZero, Some(22)));
    }

    #[test]
    fn stream_begin_with_stream_id_other_than_seq_is_rejected() {
        let mut p = PayloadV1::stream_begin(5, 2, 20);
        p.stream_id = 19;
        assert_eq!(
            rule_of(p),
            invalid(
                Rule::StreamBeginIdNotSeq {
                    seq: 20,
                    stream_id: 19
                },
                Some(20)
            )
        );
    }

    #[test]
    fn rpc_with_stream_id_is_rejected() {
        let mut p = req();
        p.stream_id = 4;
        assert_eq!(rule_of(p), invalid(Rule::StreamIdOnRpc(4), Some(10)));
    }

    #[test]
    fn stream_message_with_svc_id_zero_is_rejected() {
        let p = PayloadV1::stream_begin(0, 2, 20);
        assert_eq!(rule_of(p), invalid(Rule::ZeroSvcId, Some(20)));
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let rules = [
            Rule::BadProtobuf,
            Rule::BadVersion(i32::MIN),
            Rule::NoPayload,
            Rule::ZeroSeq,
            Rule::ZeroSvcId,
            Rule::ZeroRpcId,
            Rule::RequestWithoutDeadline,
            Rule::ResponseWithDeadline(u32::MAX),
            Rule::ResponseWithManyPayloads(usize::MAX),
            Rule::ErrorWithoutError,
            Rule::UnknownMessageType(i32::MIN),
            Rule::StreamIdZero,
            Rule::StreamBeginIdNotSeq {
                seq: u32::MAX,
                stream_id: u32::MAX,
            },
            Rule::StreamIdOnRpc(u32::MAX),
        ];
        for r in rules {
            assert!(r.close_reason().len() <= 123, "{r:?}");
            assert!(!r.to_string().is_empty());
        }
        assert_eq!(
            invalid(Rule::ZeroSeq, None).to_string(),
            "invalid wRPC message: seq is 0; every message needs a non-zero seq"
        );
        assert_eq!(
            Rule::RequestWithoutDeadline.close_reason(),
            "invalid wrpc message: request without deadline"
        );
    }
}
