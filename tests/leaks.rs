//! Connect/disconnect cycles of a data plane against one control plane: afterwards the
//! process's thread count and resident memory are back within 10% of where they were.
//!
//! The full run is ignored by default:
//! `cargo test --release --test leaks -- --ignored`.

mod support;

use support::chaos;

use std::time::{Duration, Instant};

use chaos::{rss_kib, threads};
use dpspec::cp::CpEvent;
use dpspec::ControlPlane;
use serde_json::json;
use support::cp_dp::{pool, wait_event, Dp, Shared, PATIENCE};

fn cycles(n: usize) {
    support::init_logs();
    let certs = Shared::new();
    let cp = ControlPlane::builder()
        .listen("127.0.0.1:0")
        .identity(certs.identity())
        .close_timeout(Duration::from_millis(500))
        .start()
        .unwrap();
    cp.set_config(json!({"_format_version": "3.0", "services": []}))
        .unwrap();
    let tls = certs.client();
    let pool = pool();
    let events = cp.events();
    let cycle = |i: usize| {
        let id = format!("dp-{}", i % 8);
        let dp = Dp::ready(cp.local_addr(), &tls, &id, &pool);
        dp.next_config();
        dp.peer.close(1000, "bye");
        assert!(dp.peer.channel().wait_timeout(PATIENCE));
        // The CP has forgotten the connection once it says it ended (the registry goes
        // first). One cycle at a time, so the first end of `id` seen is this one; reading
        // every event also keeps the queue from filling.
        wait_event(&events, |e| {
            matches!(e, CpEvent::DpDisconnected { node_id, .. } if *node_id == id).then_some(())
        });
        assert!(cp.nodes().is_empty(), "{:?}", cp.nodes());
    };
    // Warm up: allocator arenas, TLS session caches, the pools' threads.
    for i in 0..50 {
        cycle(i);
    }
    let (threads0, rss0) = (threads(), rss_kib());
    let started = Instant::now();
    for i in 0..n {
        cycle(i);
    }
    let took = started.elapsed();
    // A connection's threads end just after its end is announced: nothing announces the
    // moment they are gone, hence the poll of /proc (see the helper).
    let t = chaos::wait_threads_at_most(threads0 + threads0 / 10, PATIENCE);
    let rss = rss_kib();
    eprintln!(
        "{n} cycles in {took:?}: threads {threads0} -> {t}, RSS {rss0} KiB -> {rss} KiB, \
         {} events dropped",
        cp.dropped_events()
    );
    assert!(cp.nodes().is_empty(), "{:?}", cp.nodes());
    assert!(t <= threads0 + threads0 / 10, "threads {threads0} -> {t}");
    // 10%, with 2 MiB of allocator noise allowed on a small process.
    let allowed = rss0 / 10 + 2048;
    assert!(rss <= rss0 + allowed, "RSS {rss0} KiB -> {rss} KiB");
}

#[test]
fn three_hundred_connect_disconnect_cycles_leave_nothing_behind() {
    cycles(300);
}

#[test]
#[ignore = "full scale: 10,000 cycles"]
fn ten_thousand_connect_disconnect_cycles_leave_nothing_behind() {
    cycles(10_000);
}
