//! The base helpers of the integration tests: the real `runbook` binary, the
//! Python test servers installed by `tests/run`, free loopback ports, and what
//! a finished command printed. The crate root re-exports all of it
//! (`runbook_test_support::runbook`); it is also reachable as
//! `runbook_test_support::support` so that code written as `support::x` keeps
//! reading the same. (This file was `mod.rs`, included by each binary with
//! `#[path]` before the crate existed.)
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root: the folder holding `tests/support` (found upwards from
/// the crate being compiled, which is `engine/`, `steps/` or `tests/support/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("tests/support").is_dir())
        .expect("the crate lies inside the runbook workspace")
        .to_path_buf()
}

/// The freshly built `runbook` binary. Cargo names it in `CARGO_BIN_EXE_runbook`
/// when it runs a test of the `runbook` package (the engine), which it builds
/// first; any other test has no fresh binary to run, and is told so.
pub fn runbook_binary() -> PathBuf {
    match std::env::var_os("CARGO_BIN_EXE_runbook") {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "CARGO_BIN_EXE_runbook is not set: only tests of the `runbook` package (engine/Cargo.toml) \
             can run the binary; run them with `cargo test -p runbook --test NAME`"
        ),
    }
}

/// A command running the freshly built `runbook` binary, with a clean
/// environment for config (no stray `RUNBOOK_*` variables) and quiet progress.
pub fn runbook() -> Command {
    let mut command = Command::new(runbook_binary());
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

/// Sends `signal` to a running `runbook` (SIGINT, SIGTERM) and waits for what
/// it printed on its way out.
pub fn interrupt(child: std::process::Child, signal: nix::sys::signal::Signal) -> Output {
    send_signal(&child, signal);
    child.wait_with_output().expect("runbook ends")
}

/// Sends `signal` to `child`, which must still be running.
pub fn send_signal(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
        .unwrap_or_else(|e| panic!("cannot send {signal} to pid {}: {e}", child.id()));
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

/// What a finished command wrote to stderr (lossy UTF-8).
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What a finished command wrote to stdout (lossy UTF-8).
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The exit code of a finished command; panics if a signal ended it.
#[track_caller]
pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

/// The names of the entries of `folder`, sorted.
pub fn sorted_names(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
