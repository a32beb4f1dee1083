//! Handlers run on the reader thread (`Services::handle_inline`), as the echo benchmark
//! serves them: every reply is checked, sequentially and with calls in flight from
//! several threads on one connection; a failing inline handler answers an ERROR.

mod support;

use std::time::Duration;

use dpspec::wrpc::{HandlerError, Services};
use support::echo::{peer_pair, Echo, EchoRequest, EchoResponse, Fail};

fn inline_echo() -> Services {
    let s = Services::new();
    s.handle_inline::<Echo, _>(|_, req| {
        Ok(EchoResponse {
            s: format!("echo-{}", req.s),
        })
    });
    s.handle_inline::<Fail, _>(|_, req| Err(HandlerError::new(format!("failed: {}", req.s))));
    s
}

#[test]
fn inline_echo_answers_every_call_in_order_and_in_flight() {
    let (client, _server) = peer_pair(Services::new(), inline_echo());
    for i in 0..200 {
        let s = format!("{i:05}-{}", "x".repeat(i % 50));
        let resp = client.call::<Echo>(&EchoRequest { s: s.clone() }).unwrap();
        assert_eq!(resp.s, format!("echo-{s}"));
    }
    std::thread::scope(|scope| {
        for t in 0..8 {
            let client = client.clone();
            scope.spawn(move || {
                for i in 0..50 {
                    let s = format!("t{t}-{i}");
                    let resp = client
                        .call_timeout::<Echo>(
                            &EchoRequest { s: s.clone() },
                            Duration::from_secs(10),
                        )
                        .unwrap();
                    assert_eq!(resp.s, format!("echo-{s}"));
                }
            });
        }
    });
    assert_eq!(client.pending_calls(), 0);
}

#[test]
fn failing_inline_handler_answers_an_error_and_the_connection_stays() {
    let (client, _server) = peer_pair(Services::new(), inline_echo());
    let err = client
        .call::<Fail>(&EchoRequest { s: "boom".into() })
        .unwrap_err();
    assert!(err.is_remote(dpspec::wrpc::ErrorType::Generic), "{err:?}");
    assert!(err.to_string().contains("failed: boom"), "{err}");
    let resp = client
        .call::<Echo>(&EchoRequest { s: "after".into() })
        .unwrap();
    assert_eq!(resp.s, "echo-after");
}

#[test]
fn an_inline_handler_calling_its_own_peer_is_refused_at_once_not_left_to_time_out() {
    let server = Services::new();
    server.handle_inline::<Echo, _>(|ctx, req| {
        // A call back to the peer from the reader thread: its answer could never be read.
        let back = ctx
            .peer
            .call_timeout::<Echo>(&EchoRequest { s: req.s }, Duration::from_secs(60));
        match back {
            Err(e) => Ok(EchoResponse {
                s: format!("refused: {e}"),
            }),
            Ok(_) => Err(HandlerError::new("the call back should have been refused")),
        }
    });
    let client_services = Services::new();
    client_services.handle::<Echo, _>(|_, req| Ok(EchoResponse { s: req.s }));
    let (client, _server) = peer_pair(client_services, server);
    let resp = client
        .call_timeout::<Echo>(&EchoRequest { s: "x".into() }, Duration::from_secs(30))
        .unwrap();
    assert!(resp.s.starts_with("refused: "), "{}", resp.s);
    // Refused with the reason, not timed out ("no answer before the deadline").
    assert!(resp.s.contains("reader thread"), "{}", resp.s);
}

/// A server whose peer reads at most `per_second` requests a second after a burst of 2;
/// `services` answers Echo inline or on a worker.
fn rate_limited_pair(
    services: Services,
    per_second: u32,
) -> (dpspec::wrpc::Peer, dpspec::wrpc::Peer) {
    use dpspec::wrpc::{Peer, PeerConfig, RequestRate};
    let cfg = dpspec::channel::ChannelConfig::default();
    let ((cc, cr), (sc, sr)) = support::pair::channel_pair(cfg.clone(), cfg);
    let limited = PeerConfig::default().max_request_rate(RequestRate::new(per_second, 2));
    let client = Peer::new(
        cc,
        Services::new(),
        support::echo::pool(),
        PeerConfig::default(),
    );
    let server = Peer::new(sc, services, support::echo::pool(), limited);
    client.spawn(cr).unwrap();
    server.spawn(sr).unwrap();
    (client, server)
}

#[test]
fn inline_and_worker_handlers_are_both_held_to_the_request_rate() {
    let on_worker = Services::new();
    on_worker.handle::<Echo, _>(|_, req| Ok(EchoResponse { s: req.s }));
    for (what, services) in [("inline", inline_echo()), ("worker", on_worker)] {
        let (client, _server) = rate_limited_pair(services, 20);
        let started = std::time::Instant::now();
        std::thread::scope(|scope| {
            for i in 0..8 {
                let client = client.clone();
                scope.spawn(move || {
                    client
                        .call_timeout::<Echo>(
                            &EchoRequest { s: i.to_string() },
                            Duration::from_secs(30),
                        )
                        .unwrap();
                });
            }
        });
        // Two come at once, the other six at 20 a second: the last at 300 ms or later,
        // however fast or busy the machine.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(290),
            "{what}: 8 calls in {took:?}"
        );
    }
}
