//! The README's main command, `cargo run --example hybrid`, runs in the suite: `cargo test`
//! builds the examples before it runs the tests, so the binary is beside the test's.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap();
    dir.pop(); // the test binary
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples").join(name)
}

#[test]
fn hybrid_example_brings_a_wrpc_dp_and_a_json_dp_to_the_cps_hash() {
    let bin = example("hybrid");
    assert!(bin.exists(), "{} was not built", bin.display());
    let out = Command::new(&bin).env("RUST_LOG", "warn").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let hash_line = stdout
        .lines()
        .find(|l| l.contains("config version 1 ready, hash"))
        .unwrap();
    let hash = hash_line.rsplit(' ').next().unwrap();
    assert_eq!(hash.len(), 32);
    for dp in ["wrpc", "json"] {
        assert!(
            stdout.contains(&format!("[dp {dp}] connected, speaking {dp}")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("[dp {dp}] config applied, hash {hash}")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("[cp] ping from {dp} with hash {hash}")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!(", {dp}, status normal")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("2 services, 2 routes, 2 plugins, 1 upstreams, 2 targets"),
        "{stdout}"
    );
    assert!(stdout.contains("[done]"), "{stdout}");
}
