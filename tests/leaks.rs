//! Connect/disconnect cycles of a data plane against one control plane: afterwards the
//! process's thread count and resident memory are back within 10% of where they were.
//!
//! The full run is ignored by default:
//! `cargo test --release --test leaks -- --ignored`.

mod support;

use support::chaos;

use std::time::{Duration, Instant};

use chaos::{rss_kib, threads};
use dpspec::ControlPlane;
use serde_json::json;
use support::cp_dp::{pool, Dp, Shared};

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
    let cycle = |i: usize| {
        let dp = Dp::ready(cp.local_addr(), &tls, &format!("dp-{}", i % 8), &pool);
        dp.next_config();
        dp.peer.close(1000, "bye");
        assert!(dp.peer.channel().wait_timeout(Duration::from_secs(5)));
    };
    // Warm up: allocator arenas, TLS session caches, the pools' threads.
    for i in 0..50 {
        cycle(i);
    }
    let settle = || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cp.nodes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    settle();
    let (threads0, rss0) = (threads(), rss_kib());
    let started = Instant::now();
    for i in 0..n {
        cycle(i);
    }
    settle();
    let took = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut t = threads();
    while t > threads0 + threads0 / 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        t = threads();
    }
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
