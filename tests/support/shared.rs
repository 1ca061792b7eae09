//! One sandbox for every test of a test binary: [`SharedCluster`], started on
//! first use, taken in turns, stopped when the test process exits.
//!
//! A real Cassandra or OpenSearch node takes a minute or two to start, so a
//! binary starts its servers once; the tests change the servers' data, so
//! they take turns. Statics are never dropped: the sandbox is stopped by an
//! `atexit` handler when the test process exits (also after failed tests,
//! whose panics the test harness catches), and by a detached watcher when the
//! process is killed (Ctrl-C, SIGKILL), so no JVM is ever left behind.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};

use crate::cluster::Cluster;
use crate::support::{repo_root, stderr, venv_bin};

/// A sandbox shared by the tests of one binary:
///
/// ```ignore
/// static SERVERS: SharedCluster = SharedCluster::real_servers(|| vec!["--real".into()]);
/// let (cluster, _turn) = SERVERS.take();
/// ```
pub struct SharedCluster {
    /// Whether `tests/setup-real-servers.sh` runs first (it installs the real
    /// Cassandra and OpenSearch when they are missing).
    real_servers: bool,
    /// `sandbox.py start DIR ARGS...`.
    start_args: fn() -> Vec<String>,
    /// The sandbox, or why it could not be started (every test then fails
    /// with that reason; the start is not tried again).
    started: OnceLock<Result<Cluster, String>>,
    /// Held by the test using the sandbox.
    turn: Mutex<()>,
}

impl SharedCluster {
    /// A sandbox of stand-ins and moto (`sandbox.py start DIR ARGS`), or of
    /// real servers already installed.
    pub const fn sandbox(start_args: fn() -> Vec<String>) -> Self {
        SharedCluster::new(false, start_args)
    }

    /// A sandbox of real servers: `tests/setup-real-servers.sh` first, then
    /// `sandbox.py start DIR ARGS`.
    pub const fn real_servers(start_args: fn() -> Vec<String>) -> Self {
        SharedCluster::new(true, start_args)
    }

    const fn new(real_servers: bool, start_args: fn() -> Vec<String>) -> Self {
        SharedCluster {
            real_servers,
            start_args,
            started: OnceLock::new(),
            turn: Mutex::new(()),
        }
    }

    /// This test's turn on the sandbox (started on first use); panics with
    /// the reason when it could not be started.
    pub fn take(&'static self) -> (&'static Cluster, MutexGuard<'static, ()>) {
        let turn = self
            .turn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match self.started.get_or_init(|| self.start()) {
            Ok(cluster) => (cluster, turn),
            Err(reason) => panic!("the shared sandbox could not be started: {reason}"),
        }
    }

    fn start(&'static self) -> Result<Cluster, String> {
        if self.real_servers {
            install_real_servers()?;
        }
        let args = (self.start_args)();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Watched from before the start: a test process killed while the
        // servers start (a minute or two) leaves none of them running.
        let dir = tempfile::tempdir().map_err(|error| format!("no temp dir: {error}"))?;
        stop_when_killed(&dir.path().join("sb"), dir.path());
        let cluster =
            std::panic::catch_unwind(|| Cluster::start_in(dir, &args)).map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "sandbox start panicked".into())
            })?;
        stop_at_exit(self);
        Ok(cluster)
    }
}

/// `sandbox.py start` arguments: `args`, then `--cql-auth USER:PASSWORD`
/// (the real Cassandra with PasswordAuthenticator and that role).
pub fn with_cql_auth(args: &[&str], user: &str, password: &str) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    all.push("--cql-auth".to_string());
    all.push(format!("{user}:{password}"));
    all
}

fn install_real_servers() -> Result<(), String> {
    let install = Command::new("bash")
        .arg(repo_root().join("tests/setup-real-servers.sh"))
        .output()
        .map_err(|error| format!("cannot run tests/setup-real-servers.sh: {error}"))?;
    if install.status.success() {
        Ok(())
    } else {
        Err(format!(
            "tests/setup-real-servers.sh failed: {}",
            stderr(&install)
        ))
    }
}

/// The sandboxes this process started, stopped by [`stop_all`] at exit.
static STARTED: Mutex<Vec<&'static SharedCluster>> = Mutex::new(Vec::new());

fn stop_at_exit(shared: &'static SharedCluster) {
    static REGISTER: Once = Once::new();
    STARTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(shared);
    // SAFETY: registers a plain extern "C" function with no captured state.
    REGISTER.call_once(|| unsafe {
        libc::atexit(stop_all);
    });
}

/// Stops every started sandbox and removes its folder. sandbox.py's stderr
/// (the nodes' peak RSS, "stopped") goes to the test's stderr.
extern "C" fn stop_all() {
    let started = STARTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for shared in started.iter() {
        if let Some(Ok(cluster)) = shared.started.get() {
            let _ = Command::new(venv_bin("python"))
                .arg(repo_root().join("tests/sandbox/sandbox.py"))
                .arg("stop")
                .arg(cluster.sandbox())
                .stdout(Stdio::null())
                .status();
            let _ = std::fs::remove_dir_all(cluster.dir.path());
        }
    }
}

/// A detached watcher stops the sandbox `sandbox` and removes `folder` once
/// this test process is gone without running its exit handlers (killed),
/// after the sandbox's `sandbox.py start` (which outlives a killed test) has
/// ended, so that nothing it starts late is left running.
// The watcher must outlive this process, so it is never waited for.
#[allow(clippy::zombie_processes)]
fn stop_when_killed(sandbox: &std::path::Path, folder: &std::path::Path) {
    let script = r#"while kill -0 "$1" 2>/dev/null; do sleep 0.5; done
while pgrep -f "sandbox.py start $4( |$)" >/dev/null; do sleep 1; done
[ -d "$4" ] && "$2" "$3" stop "$4" >/dev/null 2>&1
rm -rf "$5""#;
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("sandbox-watcher")
        .arg(std::process::id().to_string())
        .arg(venv_bin("python"))
        .arg(repo_root().join("tests/sandbox/sandbox.py"))
        .arg(sandbox)
        .arg(folder)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("the watcher starts");
}
