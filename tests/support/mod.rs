//! Shared helpers for the integration tests: the real `runbook` binary, the
//! Python test servers installed by `tests/run`, free loopback ports.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("engine/ has a parent")
        .to_path_buf()
}

/// A command running the freshly built `runbook` binary, with a clean
/// environment for config (no stray `RUNBOOK_*` variables) and quiet progress.
pub fn runbook() -> Command {
    let Some(binary) = option_env!("CARGO_BIN_EXE_runbook") else {
        panic!("runbook() is only available to the engine package's tests")
    };
    let mut command = Command::new(binary);
    for (key, _) in std::env::vars() {
        if key.starts_with("RUNBOOK_") {
            command.env_remove(key);
        }
    }
    command
}

/// A program from the test virtualenv that `tests/run` creates (moto_server,
/// noida-db, ...). Panics with the fix when it is missing.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = repo_root().join(".venv-tests/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `tests/run`, which installs the test servers",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (bound, read back, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Waits until something accepts TCP connections on `port`, or panics.
pub fn wait_for_port(port: u16, what: &str) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what} did not start listening on 127.0.0.1:{port} within 60 s");
}

/// A child process killed when dropped (test servers).
pub struct ChildGuard(pub std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts that `haystack` (e.g. a run's stderr) contains `needle`, showing both
/// when it does not.
#[track_caller]
pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected `{needle}` in:\n{haystack}"
    );
}
