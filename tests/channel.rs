//! The message channel over real TLS on loopback.

mod support;

use std::time::{Duration, Instant};

use dpspec::channel::{ChannelConfig, ChannelError, Ended, Incoming, Role};
use support::pair::channel_pair;

fn cfg() -> ChannelConfig {
    ChannelConfig::default().close_timeout(Duration::from_secs(2))
}

fn message(i: u32) -> Vec<u8> {
    // Sizes from 4 bytes to about 40 KiB, so some messages span several TLS records.
    let len = 4 + (i as usize * 7919) % 40_000;
    let mut m = vec![(i % 251) as u8; len];
    m[..4].copy_from_slice(&i.to_be_bytes());
    m
}

fn next_message(rx: &crossbeam_channel::Receiver<Incoming>) -> Vec<u8> {
    match rx
        .recv_timeout(Duration::from_secs(20))
        .expect("message in time")
    {
        Incoming::Message(m) => m,
        Incoming::Ended(e) => panic!("channel ended early: {e}"),
    }
}

#[test]
fn both_sides_send_10000_messages_at_once_all_arrive_in_order() {
    support::init_logs();
    let ((client, client_reader), (server, server_reader)) = channel_pair(cfg(), cfg());
    let (_c, client_rx) = client_reader.spawn_queue(64).unwrap();
    let (_s, server_rx) = server_reader.spawn_queue(64).unwrap();
    const N: u32 = 10_000;
    let senders: Vec<_> = [client.clone(), server.clone()]
        .into_iter()
        .map(|ch| {
            std::thread::spawn(move || {
                for i in 0..N {
                    // A bulk sender of its own may wait for the peer instead of being
                    // dropped as not reading.
                    let m = message(i);
                    let deadline = Instant::now() + Duration::from_secs(20);
                    ch.wait_for_room(m.len() + 16, deadline).unwrap();
                    ch.send(&m).unwrap();
                }
            })
        })
        .collect();
    let check = |rx: crossbeam_channel::Receiver<Incoming>| {
        std::thread::spawn(move || {
            for i in 0..N {
                assert_eq!(next_message(&rx), message(i), "message {i}");
            }
        })
    };
    let (a, b) = (check(client_rx), check(server_rx));
    for s in senders {
        s.join().unwrap();
    }
    a.join().unwrap();
    b.join().unwrap();
    client.close(1000, "done");
    assert_eq!(
        client.wait(),
        Ended::ClosedByUs {
            code: 1000,
            reason: "done".into()
        }
    );
    assert_eq!(
        server.wait(),
        Ended::ClosedByPeer {
            code: Some(1000),
            reason: "done".into()
        }
    );
}

#[test]
fn idle_round_trip_does_not_wait_on_a_timer() {
    let ((client, client_reader), (server, server_reader)) = channel_pair(cfg(), cfg());
    let (_c, client_rx) = client_reader.spawn_queue(4).unwrap();
    let (_s, server_rx) = server_reader.spawn_queue(4).unwrap();
    // What proves it is not a clock: on an idle connection send() writes the message to
    // the socket itself before it returns, nothing is left for a flusher or a timer
    // (backlog 0), and the reader, blocked on the socket, hands it on as it comes. The
    // times are printed for information only.
    let echo = std::thread::spawn(move || {
        while let Ok(Incoming::Message(m)) = server_rx.recv() {
            server.send(&m).unwrap();
            assert_eq!(server.backlog(), 0, "the echo waits to be written");
        }
    });
    let mut times = Vec::new();
    for i in 0..200u32 {
        let start = Instant::now();
        client.send(&i.to_be_bytes()).unwrap();
        assert_eq!(client.backlog(), 0, "message {i} waits to be written");
        assert_eq!(next_message(&client_rx), i.to_be_bytes());
        times.push(start.elapsed());
        // Let the connection go idle between round trips.
        if i % 20 == 0 {
            std::thread::yield_now();
        }
    }
    times.sort();
    println!(
        "idle ping-pong round trip over TLS: median {:?}, p99 {:?}",
        times[100], times[198]
    );
    client.close(1000, "");
    echo.join().unwrap();
}

#[test]
fn oversize_message_fails_at_the_sender_and_nothing_is_written() {
    let small = cfg().max_message_size(1024);
    let ((client, _cr), (_server, server_reader)) = channel_pair(small, cfg());
    let (_s, server_rx) = server_reader.spawn_queue(4).unwrap();
    match client.send(&vec![7u8; 1025]) {
        Err(ChannelError::MessageTooLarge {
            size: 1025,
            max: 1024,
        }) => {}
        other => panic!("expected MessageTooLarge, got {other:?}"),
    }
    client.send(b"after").unwrap();
    assert_eq!(next_message(&server_rx), b"after");
}

#[test]
fn peer_sending_oversize_message_gets_close_1009() {
    let big = cfg().max_message_size(1 << 20);
    let small = cfg().max_message_size(1024);
    let ((client, client_reader), (server, server_reader)) = channel_pair(big, small);
    let (_c, client_rx) = client_reader.spawn_queue(4).unwrap();
    let (_s, _server_rx) = server_reader.spawn_queue(4).unwrap();
    client.send(&vec![1u8; 2048]).unwrap();
    match client_rx.recv_timeout(Duration::from_secs(10)).unwrap() {
        Incoming::Ended(Ended::ClosedByPeer {
            code: Some(1009),
            reason,
        }) => {
            assert!(reason.contains("2048"), "{reason}");
        }
        other => panic!("expected close 1009, got {other:?}"),
    }
    match server.wait() {
        Ended::ClosedByUs { code: 1009, .. } => {}
        other => panic!("server should have closed with 1009: {other:?}"),
    }
}

#[test]
fn peer_vanishing_is_reported_to_the_owner() {
    let ((client, client_reader), (server, _server_reader)) = channel_pair(cfg(), cfg());
    let (_c, client_rx) = client_reader.spawn_queue(4).unwrap();
    server.abort();
    match client_rx.recv_timeout(Duration::from_secs(10)).unwrap() {
        Incoming::Ended(Ended::Failed { reason }) => assert!(!reason.is_empty()),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert!(matches!(
        client.send(b"x"),
        Err(ChannelError::Closed(Ended::Failed { .. }))
    ));
}

#[test]
fn send_after_close_is_refused_with_the_reason() {
    let ((client, client_reader), (_server, server_reader)) = channel_pair(cfg(), cfg());
    let _c = client_reader.spawn_queue(4).unwrap();
    let _s = server_reader.spawn_queue(4).unwrap();
    client.close(1001, "going away");
    match client.send(b"late") {
        Err(ChannelError::Closed(Ended::ClosedByUs { code: 1001, reason })) => {
            assert_eq!(reason, "going away")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn records_after_the_peers_close_notify_end_the_channel_instead_of_spinning() {
    use std::io::Write;
    support::init_logs();
    let ((mut client, mut sock), (server, server_sock)) = support::pair::tls_sessions();
    let (channel, reader) =
        dpspec::channel::Channel::new(server, server_sock, Vec::new(), Role::Server, cfg())
            .unwrap();
    let (_r, rx) = reader.spawn_queue(8).unwrap();
    // A hostile (or broken) client: close_notify, then more records on the same stream.
    client.send_close_notify();
    client.writer().write_all(b"after the end").unwrap();
    while client.wants_write() {
        client.write_tls(&mut sock).unwrap();
    }
    match rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the channel ends")
    {
        Incoming::Ended(Ended::Failed { reason }) => {
            assert!(reason.contains("close_notify"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(channel.ended().is_some());
}

/// What an idle connection's reader holds while it waits for the socket is small, before
/// and after a 1 MiB message; while that message is in flight it holds the read buffer
/// and the message's own buffer, and lets both go once the message is whole.
#[test]
fn a_reader_lets_its_big_buffers_go_once_a_1_mib_message_is_whole() {
    use std::io::Write;

    use dpspec::channel::frame::{apply_mask, write_header};
    use dpspec::channel::Channel;
    use support::wait;
    use tungstenite::protocol::frame::coding::{Data, OpCode};

    support::init_logs();
    let patience = Duration::from_secs(20);
    let ((client_tls, client_sock), (server_tls, server_sock)) = support::pair::tls_sessions();
    let (server, reader) =
        Channel::new(server_tls, server_sock, Vec::new(), Role::Server, cfg()).unwrap();
    let (_reader, rx) = reader.spawn_queue(4).unwrap();
    let mut client = rustls::StreamOwned::new(client_tls, client_sock);
    // The reader announces nothing as it goes back to waiting on the socket; its buffers
    // are what it held when it last did.
    let waiting =
        |cond: &dyn Fn(usize) -> bool| wait::until(patience, || cond(server.reader_buffers()));

    assert!(waiting(&|held| held > 0), "the reader never waited");
    let idle = server.reader_buffers();
    assert!(idle <= 4096, "an idle reader holds {idle} bytes");

    let payload: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    let mask = [9, 8, 7, 6];
    let mut frame = Vec::new();
    write_header(
        &mut frame,
        OpCode::Data(Data::Binary),
        payload.len(),
        Some(mask),
    );
    let start = frame.len();
    frame.extend_from_slice(&payload);
    apply_mask(&mut frame[start..], mask, 0);

    // Half the message: the reader waits for the rest with the message's own buffer and
    // a read buffer of a TLS record.
    let half = frame.len() / 2;
    client.write_all(&frame[..half]).unwrap();
    client.flush().unwrap();
    assert!(
        waiting(&|held| held > payload.len() + 16 * 1024),
        "mid-message the reader holds {} bytes",
        server.reader_buffers()
    );
    client.write_all(&frame[half..]).unwrap();
    client.flush().unwrap();
    let got = next_message(&rx);
    assert!(got == payload, "the 1 MiB message differs");
    drop(got);
    assert!(
        waiting(&|held| held == idle),
        "after the message the reader holds {} bytes, {idle} before it",
        server.reader_buffers()
    );
    drop(client);
}

#[test]
fn a_close_sent_while_other_senders_wait_for_the_outbox_still_goes_out() {
    // A sender that sees another waiting for the outbox leaves its frames for that one
    // to write. A close frame left that way once stayed queued when the waiting sender
    // was then refused (the channel was closing): the peer never saw it, and the close
    // waited out its timeout and cut the connection. Four senders keep the outbox lock
    // contended while the close is queued; the peer must see the close frame every time.
    for round in 0..40 {
        let short = ChannelConfig::default().close_timeout(Duration::from_millis(300));
        let ((client, client_reader), (_server, server_reader)) = channel_pair(short, cfg());
        let _c = client_reader.spawn_queue(64).unwrap();
        let (_s, server_rx) = server_reader.spawn_queue(1 << 16).unwrap();
        let barrier = std::sync::Barrier::new(5);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let (client, barrier) = (&client, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    while client.send(b"busy").is_ok() {}
                });
            }
            barrier.wait();
            client.close(1000, "done");
        });
        let ended = loop {
            match server_rx.recv_timeout(Duration::from_secs(20)).unwrap() {
                Incoming::Message(_) => continue,
                Incoming::Ended(e) => break e,
            }
        };
        match ended {
            Ended::ClosedByPeer {
                code: Some(1000), ..
            } => {}
            other => panic!("round {round}: the server saw {other}, not the close frame"),
        }
    }
}
