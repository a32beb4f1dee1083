//! What one received message leads to, decided without I/O: [`decide`] decodes and
//! validates the bytes, looks the rpc up in the handler table and says what the reader
//! must do ([`Decision`]); the peer's reader does it.

use std::sync::Arc;

use super::envelope::{decode_envelope_owned, ErrorType, PayloadV1};
use super::pending::is_past_at;
use super::table::{Entry, HandlerTable, Lookup, StreamFn, UnaryFn};
use super::validate::{classify, Invalid, Kind, Rule};
use super::WrpcError;

/// An ERROR to send in answer to one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    /// The service id of the message answered.
    pub(crate) svc_id: u32,
    /// The rpc id of the message answered.
    pub(crate) rpc_id: u32,
    /// The seq of the message answered.
    pub(crate) ack: u32,
    /// The error's type.
    pub(crate) etype: ErrorType,
    /// The error's text.
    pub(crate) text: String,
}

impl Reject {
    /// An ERROR answering `to`.
    pub(crate) fn to(to: &PayloadV1, etype: ErrorType, text: impl Into<String>) -> Reject {
        Reject {
            svc_id: to.svc_id,
            rpc_id: to.rpc_id,
            ack: to.seq,
            etype,
            text: text.into(),
        }
    }
}

/// What the reader does with one message.
pub(crate) enum Decision<C> {
    /// Close the connection with 1007 (invalid payload) for breaking `rule`, after
    /// sending `reply` if there is one. `why` is for the log.
    Close {
        /// The rule broken.
        rule: Rule,
        /// What went wrong, in words.
        why: String,
        /// The ERROR to send first (when the message can be tied to a seq).
        reply: Option<Reject>,
    },
    /// Answer with an ERROR and read on.
    Reject(Reject),
    /// Run a unary handler on `request`: on the reader when `inline`, else on a worker.
    Serve {
        /// The request.
        request: PayloadV1,
        /// Its handler.
        handler: Arc<UnaryFn<C>>,
        /// Whether the handler runs on the reader thread.
        inline: bool,
    },
    /// Open the stream `begin` begins, served by `handler`.
    BeginStream {
        /// The STREAM_BEGIN.
        begin: PayloadV1,
        /// The stream's handler.
        handler: Arc<StreamFn<C>>,
    },
    /// Hand a response to the call whose request had seq `ack`.
    Answer {
        /// The seq of our request.
        ack: u32,
        /// The service id the response names.
        svc_id: u32,
        /// The rpc id the response names.
        rpc_id: u32,
        /// The response's body.
        body: Vec<u8>,
    },
    /// Fail the call whose request had seq `ack` with the peer's ERROR.
    Fail {
        /// The seq of our request.
        ack: u32,
        /// The peer's error.
        error: WrpcError,
    },
    /// Deliver a message to an open inbound stream.
    StreamMessage {
        /// The stream.
        stream_id: u32,
        /// The message's body.
        body: Vec<u8>,
    },
    /// End an inbound stream.
    StreamEnd {
        /// The stream.
        stream_id: u32,
    },
}

/// Decides what `message` leads to, with the handlers of `table`, at `now` (Unix
/// seconds, for request deadlines).
pub(crate) fn decide<C>(message: Vec<u8>, table: &HandlerTable<C>, now: u64) -> Decision<C> {
    let envelope = match decode_envelope_owned(message) {
        Ok(envelope) => envelope,
        Err(e) => {
            return Decision::Close {
                rule: Rule::BadProtobuf,
                why: format!("envelope does not decode: {e}"),
                reply: None,
            }
        }
    };
    let kind = match classify(&envelope) {
        Ok(kind) => kind,
        Err(Invalid { rule, seq }) => {
            let reply = match (seq, envelope.payload.as_ref()) {
                (Some(_), Some(p)) => Some(Reject::to(p, ErrorType::Generic, rule.to_string())),
                _ => None,
            };
            return Decision::Close {
                rule,
                why: rule.to_string(),
                reply,
            };
        }
    };
    let Some(p) = envelope.payload else {
        // classify has already refused an envelope without payload.
        let rule = Rule::NoPayload;
        let why = rule.to_string();
        return Decision::Close {
            rule,
            why,
            reply: None,
        };
    };
    match kind {
        Kind::Request => request(p, table, now),
        Kind::Response => Decision::Answer {
            ack: p.ack,
            svc_id: p.svc_id,
            rpc_id: p.rpc_id,
            body: p.into_body(),
        },
        Kind::Error => {
            let e = p.error.unwrap_or_default();
            let etype = ErrorType::try_from(e.etype).unwrap_or(ErrorType::Unspecified);
            Decision::Fail {
                ack: p.ack,
                error: WrpcError::Remote {
                    etype,
                    description: e.description,
                },
            }
        }
        Kind::StreamBegin => match table.lookup(p.svc_id, p.rpc_id) {
            Lookup::Found(Entry::Stream(handler)) => Decision::BeginStream { begin: p, handler },
            Lookup::UnknownService => {
                Decision::Reject(Reject::to(&p, ErrorType::InvalidService, "unknown service"))
            }
            _ => Decision::Reject(Reject::to(&p, ErrorType::InvalidRpc, "no stream handler")),
        },
        Kind::StreamMessage => Decision::StreamMessage {
            stream_id: p.stream_id,
            body: p.into_body(),
        },
        Kind::StreamEnd => Decision::StreamEnd {
            stream_id: p.stream_id,
        },
    }
}

/// A request: past its deadline, for an unknown service or rpc, or served.
fn request<C>(p: PayloadV1, table: &HandlerTable<C>, now: u64) -> Decision<C> {
    if is_past_at(p.deadline, now) {
        return Decision::Reject(Reject::to(&p, ErrorType::Generic, "deadline exceeded"));
    }
    let (handler, inline) = match table.lookup(p.svc_id, p.rpc_id) {
        Lookup::UnknownService => {
            let text = format!("unknown service {}", p.svc_id);
            return Decision::Reject(Reject::to(&p, ErrorType::InvalidService, text));
        }
        Lookup::UnknownRpc | Lookup::Found(Entry::Stream(_)) => {
            let text = format!("unknown rpc {} of service {}", p.rpc_id, p.svc_id);
            return Decision::Reject(Reject::to(&p, ErrorType::InvalidRpc, text));
        }
        Lookup::Found(Entry::Unary(handler)) => (handler, false),
        Lookup::Found(Entry::Inline(handler)) => (handler, true),
    };
    Decision::Serve {
        request: p,
        handler,
        inline,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::wrpc::envelope::{encode_envelope, PayloadVersion, WebsocketPayload};

    const NOW: u64 = 1_700_000_000;
    const LATER: u32 = 1_700_000_090;

    /// A table serving (1, 1) on a worker, (1, 2) inline and streams of (1, 3); service
    /// 2 declared without handlers.
    fn table() -> HandlerTable<()> {
        let t = HandlerTable::default();
        t.insert(
            1,
            1,
            Entry::Unary(Arc::new(|_: &(), b: &Bytes| Ok(b.to_vec()))),
        );
        t.insert(
            1,
            2,
            Entry::Inline(Arc::new(|_: &(), b: &Bytes| Ok(b.to_vec()))),
        );
        t.insert(1, 3, Entry::Stream(Arc::new(|_: &(), _| {})));
        t.declare(2);
        t
    }

    fn decide_msg(msg: &PayloadV1) -> Decision<()> {
        decide(encode_envelope(msg), &table(), NOW)
    }

    fn request(svc: u32, rpc: u32) -> PayloadV1 {
        PayloadV1::request(svc, rpc, 7, LATER, b"hi".to_vec())
    }

    fn rejected(d: Decision<()>) -> Reject {
        match d {
            Decision::Reject(r) => r,
            _ => panic!("not rejected"),
        }
    }

    #[test]
    fn bytes_that_do_not_decode_close_the_connection_unanswered() {
        match decide(vec![0xff, 0xff, 0xff], &table(), NOW) {
            Decision::Close { rule, reply, .. } => {
                assert_eq!(rule, Rule::BadProtobuf);
                assert_eq!(reply, None);
            }
            _ => panic!("not closed"),
        }
    }

    #[test]
    fn a_broken_rule_with_a_seq_is_answered_generic_then_closed() {
        let mut msg = request(1, 1);
        msg.deadline = 0;
        match decide_msg(&msg) {
            Decision::Close { rule, reply, .. } => {
                assert_eq!(rule, Rule::RequestWithoutDeadline);
                let reply = reply.expect("answered before closing");
                assert_eq!((reply.svc_id, reply.rpc_id, reply.ack), (1, 1, 7));
                assert_eq!(reply.etype, ErrorType::Generic);
            }
            _ => panic!("not closed"),
        }
    }

    #[test]
    fn a_message_without_seq_closes_unanswered() {
        let mut msg = request(1, 1);
        msg.seq = 0;
        match decide_msg(&msg) {
            Decision::Close { rule, reply, .. } => {
                assert_eq!(rule, Rule::ZeroSeq);
                assert_eq!(reply, None);
            }
            _ => panic!("not closed"),
        }
        let bad_version = WebsocketPayload {
            version: PayloadVersion::Unspecified as i32,
            payload: None,
        };
        let d = decide(prost::Message::encode_to_vec(&bad_version), &table(), NOW);
        assert!(matches!(d, Decision::Close { reply: None, .. }));
    }

    #[test]
    fn unknown_service_gets_invalid_service_error() {
        let r = rejected(decide_msg(&request(9, 1)));
        assert_eq!((r.etype, r.ack), (ErrorType::InvalidService, 7));
        assert_eq!(r.text, "unknown service 9");
    }

    #[test]
    fn unknown_rpc_of_a_declared_or_served_service_gets_invalid_rpc_error() {
        let r = rejected(decide_msg(&request(2, 1)));
        assert_eq!(r.etype, ErrorType::InvalidRpc);
        let r = rejected(decide_msg(&request(1, 9)));
        assert_eq!(
            (r.etype, r.text.as_str()),
            (ErrorType::InvalidRpc, "unknown rpc 9 of service 1")
        );
    }

    #[test]
    fn a_request_for_a_stream_rpc_gets_invalid_rpc_error() {
        let r = rejected(decide_msg(&request(1, 3)));
        assert_eq!(r.etype, ErrorType::InvalidRpc);
    }

    #[test]
    fn a_request_past_its_deadline_is_refused_unserved() {
        let mut msg = request(1, 1);
        msg.deadline = (NOW - 1) as u32;
        let r = rejected(decide_msg(&msg));
        assert_eq!(
            (r.etype, r.text.as_str()),
            (ErrorType::Generic, "deadline exceeded")
        );
        msg.deadline = NOW as u32;
        assert!(
            matches!(decide_msg(&msg), Decision::Serve { .. }),
            "due this second"
        );
    }

    #[test]
    fn a_served_request_goes_to_its_handler_on_a_worker_or_inline() {
        for (rpc, on_reader) in [(1, false), (2, true)] {
            match decide_msg(&request(1, rpc)) {
                Decision::Serve {
                    request,
                    handler,
                    inline,
                } => {
                    assert_eq!(inline, on_reader);
                    assert_eq!((request.seq, request.rpc_id), (7, rpc));
                    assert_eq!(handler(&(), &request.body_bytes()).unwrap(), b"hi");
                }
                _ => panic!("not served"),
            }
        }
    }

    #[test]
    fn a_response_goes_to_the_call_it_acknowledges() {
        let msg = PayloadV1::response(1, 1, 8, 3, b"answer".to_vec());
        match decide_msg(&msg) {
            Decision::Answer {
                ack,
                svc_id,
                rpc_id,
                body,
            } => assert_eq!((ack, svc_id, rpc_id, &body[..]), (3, 1, 1, &b"answer"[..])),
            _ => panic!("not an answer"),
        }
    }

    #[test]
    fn an_error_fails_the_call_it_acknowledges_with_its_type() {
        let msg = PayloadV1::error(1, 1, 8, 3, ErrorType::InvalidRpc, "nope");
        match decide_msg(&msg) {
            Decision::Fail { ack, error } => {
                assert_eq!(ack, 3);
                assert!(error.is_remote(ErrorType::InvalidRpc));
            }
            _ => panic!("not a failure"),
        }
    }

    #[test]
    fn a_stream_begins_only_where_a_stream_handler_is() {
        let begin = |svc, rpc| PayloadV1::stream_begin(svc, rpc, 5);
        match decide_msg(&begin(1, 3)) {
            Decision::BeginStream { begin, .. } => assert_eq!(begin.stream_id, 5),
            _ => panic!("not begun"),
        }
        assert_eq!(
            rejected(decide_msg(&begin(9, 3))).etype,
            ErrorType::InvalidService
        );
        assert_eq!(
            rejected(decide_msg(&begin(1, 1))).etype,
            ErrorType::InvalidRpc
        );
        assert_eq!(
            rejected(decide_msg(&begin(2, 1))).etype,
            ErrorType::InvalidRpc
        );
    }

    #[test]
    fn stream_messages_and_ends_are_routed_by_stream_id() {
        let msg = PayloadV1::stream_message(1, 3, 6, 5, b"part".to_vec());
        match decide_msg(&msg) {
            Decision::StreamMessage { stream_id, body } => {
                assert_eq!((stream_id, &body[..]), (5, &b"part"[..]))
            }
            _ => panic!("not a stream message"),
        }
        let end = PayloadV1::stream_end(1, 3, 7, 5);
        assert!(matches!(
            decide_msg(&end),
            Decision::StreamEnd { stream_id: 5 }
        ));
    }
}
