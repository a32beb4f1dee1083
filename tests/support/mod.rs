//! Shared code for the end-to-end tests.
#![allow(dead_code)]

pub mod attackers;
pub mod certs;
pub mod chaos;
pub mod configs;
pub mod cp_dp;

/// Turns on logging once for a test binary (`RUST_LOG=debug cargo test` to see it).
pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}
pub mod echo;
pub mod json_cp;
pub mod json_dp;
pub mod logs;
pub mod pair;
pub mod proxy;
pub mod script_cp;
pub mod tls_pair;
pub mod wait;
