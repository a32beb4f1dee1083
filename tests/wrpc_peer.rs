//! The wRPC peer over real TLS on loopback.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dpspec::channel::{ChannelConfig, Ended, Incoming};
use dpspec::wrpc::envelope::{decode_envelope, encode_envelope, MessageType, PayloadV1};
use dpspec::wrpc::{ErrorType, Peer, PeerConfig, Services, WorkerPool, WrpcError};
use support::echo::*;

fn req(s: &str) -> EchoRequest {
    EchoRequest { s: s.into() }
}

#[test]
fn calls_go_both_ways_on_one_connection() {
    let (client, server) = peer_pair(echo_services(), echo_services());
    assert_eq!(client.call::<Echo>(&req("a")).unwrap().s, "echo-a");
    assert_eq!(server.call::<Echo>(&req("b")).unwrap().s, "echo-b");
}

#[test]
fn thirty_two_threads_make_1000_concurrent_calls_each_gets_its_own_answer() {
    let (client, _server) = peer_pair(Services::new(), echo_services());
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for i in (t..1000).step_by(32) {
                    let s = format!("{t}-{i}");
                    assert_eq!(
                        client.call::<Echo>(&req(&s)).unwrap().s,
                        format!("echo-{s}")
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(client.pending_calls(), 0);
}

#[test]
fn unknown_service_and_unknown_rpc_get_their_error_types_and_the_connection_stays() {
    let (client, _server) = peer_pair(Services::new(), echo_services());
    let e = client.call::<Nothing>(&req("x")).unwrap_err();
    assert!(e.is_remote(ErrorType::InvalidService), "{e}");
    let e = client.call::<Missing>(&req("x")).unwrap_err();
    assert!(e.is_remote(ErrorType::InvalidRpc), "{e}");
    assert_eq!(client.call::<Echo>(&req("still")).unwrap().s, "echo-still");
}

#[test]
fn handler_error_text_reaches_the_caller() {
    let (client, _server) = peer_pair(Services::new(), echo_services());
    match client.call::<Fail>(&req("boom")).unwrap_err() {
        WrpcError::Remote {
            etype: ErrorType::Generic,
            description,
        } => {
            assert_eq!(description, "failed: boom")
        }
        other => panic!("{other:?}"),
    }
}

/// A client peer, and the raw server end of its connection for writing envelopes by hand.
fn peer_and_raw(
    services: Services,
) -> (
    Peer,
    dpspec::channel::Channel,
    crossbeam_channel::Receiver<Incoming>,
) {
    let ((cc, cr), (sc, sr)) =
        support::pair::channel_pair(ChannelConfig::default(), ChannelConfig::default());
    let peer = Peer::new(cc, services, pool(), PeerConfig::default());
    peer.spawn(cr).unwrap();
    let (_h, rx) = sr.spawn_queue(64).unwrap();
    (peer, sc, rx)
}

fn next_envelope(rx: &crossbeam_channel::Receiver<Incoming>) -> PayloadV1 {
    match rx.recv_timeout(Duration::from_secs(10)).expect("a message") {
        Incoming::Message(m) => decode_envelope(&m).unwrap().payload.unwrap(),
        Incoming::Ended(e) => panic!("ended: {e}"),
    }
}

/// Sends a request for Echo from the raw end and returns the seq used; the next message the
/// raw end receives must be its response (anything sent in answer to earlier stray messages
/// would come first, since the peer handles messages in order).
fn probe(raw: &dpspec::channel::Channel, rx: &crossbeam_channel::Receiver<Incoming>, seq: u32) {
    let deadline = (dpspec::wrpc::pending::unix_now() + 30) as u32;
    let body = prost::Message::encode_to_vec(&req("probe"));
    raw.send(&encode_envelope(&PayloadV1::request(
        1, 1, seq, deadline, body,
    )))
    .unwrap();
    let answer = next_envelope(rx);
    assert_eq!(answer.mtype, MessageType::Rpc as i32, "{answer:?}");
    assert_eq!(answer.ack, seq);
    let resp: EchoResponse = prost::Message::decode(answer.body()).unwrap();
    assert_eq!(resp.s, "echo-probe");
}

#[test]
fn late_response_after_timeout_is_dropped_and_not_answered() {
    let (peer, raw, rx) = peer_and_raw(echo_services());
    let caller = {
        let peer = peer.clone();
        std::thread::spawn(move || {
            peer.call_timeout::<Echo>(&req("slow"), Duration::from_millis(200))
        })
    };
    let request = next_envelope(&rx);
    assert_eq!(request.ack, 0);
    assert!(request.deadline > 0);
    let err = caller.join().unwrap().unwrap_err();
    assert!(matches!(err, WrpcError::Timeout { .. }), "{err}");
    // The answer arrives after the caller gave up.
    let body = prost::Message::encode_to_vec(&EchoResponse { s: "late".into() });
    raw.send(&encode_envelope(&PayloadV1::response(
        1,
        1,
        1,
        request.seq,
        body,
    )))
    .unwrap();
    probe(&raw, &rx, 2);
}

#[test]
fn stray_response_and_stray_error_get_no_reply() {
    let (_peer, raw, rx) = peer_and_raw(echo_services());
    raw.send(&encode_envelope(&PayloadV1::response(
        1,
        1,
        1,
        4242,
        vec![],
    )))
    .unwrap();
    raw.send(&encode_envelope(&PayloadV1::error(
        1,
        1,
        2,
        4343,
        ErrorType::Generic,
        "stray",
    )))
    .unwrap();
    probe(&raw, &rx, 3);
}

#[test]
fn request_without_a_payload_element_is_served_as_an_empty_message() {
    let (_peer, raw, rx) = peer_and_raw(echo_services());
    let deadline = (dpspec::wrpc::pending::unix_now() + 30) as u32;
    let mut msg = PayloadV1::request(1, 1, 1, deadline, vec![]);
    msg.payloads.clear();
    raw.send(&encode_envelope(&msg)).unwrap();
    let answer = next_envelope(&rx);
    assert_eq!(answer.ack, 1);
    assert_eq!(
        answer.payloads.len(),
        1,
        "responses carry exactly one payload element"
    );
    let resp: EchoResponse = prost::Message::decode(answer.body()).unwrap();
    assert_eq!(resp.s, "echo-");
}

#[test]
fn response_echoes_ids_acks_the_seq_and_has_no_deadline() {
    let (_peer, raw, rx) = peer_and_raw(echo_services());
    let deadline = (dpspec::wrpc::pending::unix_now() + 30) as u32;
    let body = prost::Message::encode_to_vec(&req("x"));
    raw.send(&encode_envelope(&PayloadV1::request(
        1, 1, 77, deadline, body,
    )))
    .unwrap();
    let answer = next_envelope(&rx);
    assert_eq!(
        (answer.svc_id, answer.rpc_id, answer.ack, answer.deadline),
        (1, 1, 77, 0)
    );
    assert_eq!(answer.seq, 1, "the peer's first message has seq 1");
}

#[test]
fn request_past_its_deadline_is_not_run() {
    let (_peer, raw, rx) = peer_and_raw(echo_services());
    let body = prost::Message::encode_to_vec(&req("x"));
    raw.send(&encode_envelope(&PayloadV1::request(
        1, 1, 5, 1_000_000, body,
    )))
    .unwrap();
    let answer = next_envelope(&rx);
    assert_eq!(answer.mtype, MessageType::Error as i32);
    assert_eq!(answer.ack, 5);
    let e = answer.error.unwrap();
    assert_eq!(
        (e.etype, e.description.as_str()),
        (ErrorType::Generic as i32, "deadline exceeded")
    );
    probe(&raw, &rx, 6);
}

/// Every fatal rule of interop.md section 4, as bytes, with the words its close reason
/// must contain and whether an ERROR (ack 1) comes before the close.
fn fatal_cases() -> Vec<(Vec<u8>, &'static str, bool)> {
    use dpspec::wrpc::envelope::WebsocketPayload;
    let deadline = (dpspec::wrpc::pending::unix_now() + 30) as u32;
    let request = || PayloadV1::request(1, 1, 1, deadline, vec![]);
    let with = |f: &dyn Fn(&mut PayloadV1)| {
        let mut p = request();
        f(&mut p);
        encode_envelope(&p)
    };
    let raw = |w: WebsocketPayload| prost::Message::encode_to_vec(&w);
    let mut two_payloads = PayloadV1::response(1, 1, 1, 3, vec![1]);
    two_payloads.payloads.push(vec![2].into());
    let mut response_deadline = PayloadV1::response(1, 1, 1, 3, vec![]);
    response_deadline.deadline = 5;
    let mut error_without_error = PayloadV1::error(1, 1, 1, 3, ErrorType::Generic, "x");
    error_without_error.error = None;
    let mut begin_wrong_id = PayloadV1::stream_begin(1, 4, 1);
    begin_wrong_id.stream_id = 9;
    vec![
        (vec![0xff, 0xff, 0xff], "invalid protobuf", false),
        (
            raw(WebsocketPayload {
                version: 2,
                payload: Some(request()),
            }),
            "unsupported wrpc version",
            true,
        ),
        (
            raw(WebsocketPayload {
                version: 1,
                payload: None,
            }),
            "missing payload",
            false,
        ),
        (with(&|p| p.seq = 0), "seq is 0", false),
        (with(&|p| p.svc_id = 0), "svc_id is 0", true),
        (with(&|p| p.rpc_id = 0), "rpc_id is 0", true),
        (with(&|p| p.deadline = 0), "request without deadline", true),
        (
            encode_envelope(&response_deadline),
            "response with deadline",
            true,
        ),
        (
            encode_envelope(&two_payloads),
            "response with several payloads",
            true,
        ),
        (
            encode_envelope(&error_without_error),
            "error message without error",
            false,
        ),
        (with(&|p| p.mtype = 0), "unknown message type", true),
        (with(&|p| p.mtype = 9), "unknown message type", true),
        (with(&|p| p.stream_id = 4), "rpc with stream_id", true),
        (
            encode_envelope(&begin_wrong_id),
            "stream_begin with stream_id != seq",
            true,
        ),
    ]
}

#[test]
fn every_fatal_envelope_rule_closes_with_1007_and_names_the_rule() {
    for (bytes, rule, answered) in fatal_cases() {
        let (peer, raw, rx) = peer_and_raw(echo_services());
        raw.send(&bytes).unwrap();
        if answered {
            let e = next_envelope(&rx);
            assert_eq!(e.mtype, MessageType::Error as i32, "{rule}");
            assert_eq!(e.ack, 1, "{rule}");
            assert_eq!(e.error.unwrap().etype, ErrorType::Generic as i32, "{rule}");
        }
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            Incoming::Ended(Ended::ClosedByPeer {
                code: Some(1007),
                reason,
            }) => {
                assert!(reason.contains(rule), "{reason} should name {rule}")
            }
            other => panic!("{rule}: expected close 1007, got {other:?}"),
        }
        assert!(matches!(peer.wait(), Ended::ClosedByUs { code: 1007, .. }));
    }
}

#[test]
fn text_frame_gets_close_1003() {
    use std::io::{Read, Write};
    let ((cc, cs), (sc, ss)) = support::pair::tls_sessions();
    let (server, reader) = dpspec::channel::Channel::new(
        sc,
        ss,
        Vec::new(),
        dpspec::channel::Role::Server,
        ChannelConfig::default(),
    )
    .unwrap();
    let peer = Peer::new(server, echo_services(), pool(), PeerConfig::default());
    peer.spawn(reader).unwrap();
    let mut client = rustls::StreamOwned::new(cc, cs);
    // FIN + text opcode, masked, 2 bytes "hi" under the mask 0,0,0,0.
    client
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'])
        .unwrap();
    client.flush().unwrap();
    let mut head = [0u8; 4];
    client.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    let len = (head[1] & 0x7f) as usize;
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1003);
    let mut reason = vec![0u8; len - 2];
    client.read_exact(&mut reason).unwrap();
    assert!(String::from_utf8(reason).unwrap().contains("text frames"));
}

#[test]
fn big_call_does_not_hold_up_small_ones() {
    let cfg = ChannelConfig::default().max_message_size(8 << 20);
    let server = echo_services();
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
    let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
    server.handle::<Size, _>(move |_, blob| {
        // The big call finishes only after every small call has completed.
        release_rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .unwrap();
        Ok(EchoResponse {
            s: blob.data.len().to_string(),
        })
    });
    let (client, _server) = peer_pair_with(Services::new(), server, pool(), cfg);
    let big = {
        let client = client.clone();
        std::thread::spawn(move || {
            client.call::<Size>(&Blob {
                data: vec![7; 4 << 20],
            })
        })
    };
    for i in 0..100 {
        assert_eq!(
            client.call::<Echo>(&req(&i.to_string())).unwrap().s,
            format!("echo-{i}")
        );
    }
    release_tx.send(()).unwrap();
    assert_eq!(big.join().unwrap().unwrap().s, (4 << 20).to_string());
}

#[test]
fn closing_with_100_calls_pending_fails_all_promptly() {
    let server = Services::new();
    let (_hold_tx, hold_rx) = crossbeam_channel::bounded::<()>(0);
    server.handle::<Echo, _>(move |_, _| {
        let _ = hold_rx.recv_timeout(Duration::from_secs(30));
        Err(dpspec::wrpc::HandlerError::new("released"))
    });
    let big_pool = Arc::new(WorkerPool::new("hold", 2, 1024).unwrap());
    let (client, _server) =
        peer_pair_with(Services::new(), server, big_pool, ChannelConfig::default());
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            std::thread::spawn(move || client.call::<Echo>(&req("wait")))
        })
        .collect();
    // Nothing announces a call becoming pending (the callers are blocked in `call`, and
    // only two of the requests reach a handler), so look at the count until it is 100.
    assert!(
        support::wait::until(Duration::from_secs(30), || client.pending_calls() == 100),
        "{} calls pending",
        client.pending_calls()
    );
    let start = Instant::now();
    client.close(1000, "bye");
    for c in callers {
        match c.join().unwrap() {
            Err(WrpcError::ConnectionClosed(_)) => {}
            other => panic!("expected connection closed, got {other:?}"),
        }
    }
    println!("100 pending calls failed {:?} after close", start.elapsed());
    assert!(matches!(
        client.call::<Echo>(&req("after")),
        Err(WrpcError::ConnectionClosed(_))
    ));
}

#[test]
fn a_burst_from_one_connection_waits_its_turn_instead_of_filling_the_worker_queue() {
    let server = Services::new();
    let (hold_tx, hold_rx) = crossbeam_channel::unbounded::<()>();
    server.handle::<Echo, _>(move |_, r| {
        let _ = hold_rx.recv_timeout(Duration::from_secs(30));
        Ok(EchoResponse { s: r.s })
    });
    // One worker and room for four jobs: before fair shares, 40 calls from one connection
    // filled the queue and 35 of them were answered "overloaded".
    let tiny = Arc::new(WorkerPool::new("tiny", 1, 4).unwrap());
    let (client, _server) = peer_pair_with(Services::new(), server, tiny, ChannelConfig::default());
    let callers: Vec<_> = (0..40)
        .map(|i| {
            let client = client.clone();
            std::thread::spawn(move || {
                client.call_timeout::<Echo>(&req(&format!("c{i}")), Duration::from_secs(60))
            })
        })
        .collect();
    for _ in 0..40 {
        hold_tx.send(()).unwrap();
    }
    for (i, c) in callers.into_iter().enumerate() {
        let answer = c.join().unwrap().expect("served in turn, never refused");
        assert_eq!(answer.s, format!("c{i}"));
    }
}

#[test]
fn a_pool_truly_out_of_capacity_answers_overloaded() {
    let server = Services::new();
    let (_hold_tx, hold_rx) = crossbeam_channel::bounded::<()>(0);
    server.handle::<Echo, _>(move |_, r| {
        let _ = hold_rx.recv_timeout(Duration::from_secs(30));
        Ok(EchoResponse { s: r.s })
    });
    // One worker, room for one waiting turn, and ten connections each with work: the CP
    // as a whole is out of capacity, and the connections past it are told so at once.
    let tiny = Arc::new(WorkerPool::new("tiny", 1, 1).unwrap());
    let pairs: Vec<_> = (0..10)
        .map(|_| {
            peer_pair_with(
                Services::new(),
                server.clone(),
                tiny.clone(),
                ChannelConfig::default(),
            )
        })
        .collect();
    let callers: Vec<_> = pairs
        .iter()
        .map(|(client, _)| {
            let client = client.clone();
            std::thread::spawn(move || {
                client.call_timeout::<Echo>(&req("x"), Duration::from_secs(2))
            })
        })
        .collect();
    let mut overloaded = 0;
    for c in callers {
        if let Err(WrpcError::Remote {
            etype: ErrorType::Generic,
            description,
        }) = c.join().unwrap()
        {
            assert!(description.starts_with("overloaded"), "{description}");
            overloaded += 1;
        }
    }
    // One runs, one waits: the other eight are refused instead of queued.
    assert!(overloaded >= 7, "only {overloaded} of 10 were refused");
}

#[test]
fn streams_carry_1000_messages_each_way_in_order() {
    let (got_tx, got_rx) = crossbeam_channel::unbounded::<String>();
    let server = Services::new();
    server.handle_stream::<Stream, _>(move |ctx, inbound| {
        // Answer with a stream of our own, then relay what arrives.
        let out = ctx.peer.open_stream::<Stream>().unwrap();
        for i in 0..1000 {
            out.send(&req(&format!("down-{i}"))).unwrap();
        }
        out.finish().unwrap();
        for m in inbound {
            let r: EchoRequest = prost::Message::decode(&m[..]).unwrap();
            got_tx.send(r.s).unwrap();
        }
        got_tx.send("end".into()).unwrap();
    });
    let (down_tx, down_rx) = crossbeam_channel::unbounded::<String>();
    let client = Services::new();
    client.handle_stream::<Stream, _>(move |_, inbound| {
        for m in inbound {
            let r: EchoRequest = prost::Message::decode(&m[..]).unwrap();
            down_tx.send(r.s).unwrap();
        }
    });
    let (client, _server) = peer_pair(client, server);
    let up = client.open_stream::<Stream>().unwrap();
    for i in 0..1000 {
        up.send(&req(&format!("up-{i}"))).unwrap();
    }
    up.finish().unwrap();
    for i in 0..1000 {
        assert_eq!(
            got_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            format!("up-{i}")
        );
        assert_eq!(
            down_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            format!("down-{i}")
        );
    }
    assert_eq!(got_rx.recv_timeout(Duration::from_secs(10)).unwrap(), "end");
}

#[test]
fn stream_ends_when_its_connection_closes() {
    let (ended_tx, ended_rx) = crossbeam_channel::bounded::<usize>(1);
    let server = Services::new();
    server.handle_stream::<Stream, _>(move |_, inbound| {
        ended_tx.send(inbound.count()).unwrap();
    });
    let (client, _server) = peer_pair(Services::new(), server);
    let up = client.open_stream::<Stream>().unwrap();
    up.send(&req("one")).unwrap();
    up.send(&req("two")).unwrap();
    std::mem::forget(up); // no STREAM_END: only the connection's end can finish it
    client.close(1000, "bye");
    assert_eq!(ended_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 2);
}
