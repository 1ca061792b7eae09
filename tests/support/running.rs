//! [`Running`]: a run of the real `runbook` binary that the test does not
//! wait for at once, to act on it while it runs (signal it, stop and resume
//! it, kill it, read its children's command lines) and then check how it
//! ended, with the same checks as a finished [`Test`]:
//!
//! ```ignore
//! let run = cluster.runbook(&["run", "cluster-hot-backup"]).spawn();
//! run.wait_until("the Cassandra archive to be written", || partial_archive_exists());
//! run.signal(Signal::SIGINT);
//! run.finish().failure(130);
//! ```
//!
//! Every wait polls for a condition with a generous deadline (no sleep is an
//! assertion); a run that ends before the condition holds fails the wait at
//! once, with everything the run printed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{Ran, Test};

/// How long a wait for a condition of a running run lasts before it fails.
const WAIT: Duration = Duration::from_secs(60);

/// Polls `condition` every 20 ms until it holds; panics naming `what` after 60 s.
#[track_caller]
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Test {
    /// Starts the run and returns at once (stdin closed; stdout and stderr
    /// collected while it runs, for [`Running::finish`]).
    pub fn spawn(self) -> Running {
        let command = self.command();
        Running::start(self, command)
    }

    /// [`Test::spawn`] of the run under `wrapper` (a program and its
    /// arguments, e.g. `setpriv --bounding-set -dac_override`): `wrapper...
    /// runbook ARGS` with the run's environment and folder.
    pub fn spawn_under(self, wrapper: &[&str]) -> Running {
        let (program, wrapper_args) = wrapper.split_first().expect("a wrapper program");
        let runbook = self.command();
        let mut command = Command::new(program);
        command
            .args(wrapper_args)
            .arg(runbook.get_program())
            .args(runbook.get_args());
        for (key, value) in runbook.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        if let Some(dir) = runbook.get_current_dir() {
            command.current_dir(dir);
        }
        Running::start(self, command)
    }
}

/// A started [`Test`]; [`Running::finish`] waits for its end. Dropping it
/// unfinished kills the run.
#[must_use = "a Running run is killed when dropped: finish() it"]
pub struct Running {
    test: Option<Test>,
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    /// Everything the run wrote to stderr so far (appended by `stderr_reader`).
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

/// Reads a pipe to its end on a thread of its own, so that a run writing a
/// lot is never blocked on a full pipe while the test waits for something.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Like [`drain`], into `into` as the bytes come, so that the test can read
/// what the run printed while it runs.
fn drain_into(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buffer) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(&buffer[..n]);
        }
    })
}

impl Running {
    /// Starts a `runbook` run built by hand as a [`Command`] (one wrapped in
    /// `setpriv` to run as another user, or started through `env -i`), so
    /// that it is checked like a [`Test`]: stdout and stderr are kept, stdin
    /// is closed.
    pub fn from_command(command: Command) -> Running {
        let dir = command
            .get_current_dir()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let test = Test::at(dir)
            .arg(command.get_program())
            .args(command.get_args());
        Running::start(test, command)
    }

    fn start(test: Test, mut command: Command) -> Running {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("runbook starts");
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = drain_into(
            child.stderr.take().expect("piped stderr"),
            Arc::clone(&stderr),
        );
        Running {
            test: Some(test),
            child,
            stdout: Some(stdout),
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    /// What the run has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        let bytes = self
            .stderr
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits (60 s at most) until the run has written `needle` to stderr.
    #[track_caller]
    pub fn wait_for_stderr(self, needle: &str) -> Self {
        self.wait_for_stderr_within(needle, WAIT)
    }

    /// [`Running::wait_for_stderr`] with a limit of its own.
    #[track_caller]
    pub fn wait_for_stderr_within(self, needle: &str, limit: Duration) -> Self {
        let stderr = Arc::clone(&self.stderr);
        self.wait_until_within(&format!("`{needle}` in stderr"), limit, move || {
            String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|p| p.into_inner()))
                .contains(needle)
        })
    }

    /// The process id of the run (of the wrapper, for [`Test::spawn_under`]).
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the run is still going (`false` once it has ended).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("waitpid").is_none()
    }

    /// Polls `condition` until it holds (60 s at most). Fails at once, with
    /// what the run printed, when the run ends first.
    #[track_caller]
    pub fn wait_until(self, what: &str, condition: impl FnMut() -> bool) -> Self {
        self.wait_until_within(what, WAIT, condition)
    }

    /// [`Running::wait_until`] with a limit of its own (a real server's
    /// step that takes minutes to be reached).
    #[track_caller]
    pub fn wait_until_within(
        mut self,
        what: &str,
        limit: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Self {
        let until = Instant::now() + limit;
        while !condition() {
            if let Some(status) = self.child.try_wait().expect("waitpid") {
                if let Some(reader) = self.stderr_reader.take() {
                    join(reader);
                }
                panic!(
                    "the run ended ({status}) before {what}\n--- stderr:\n{}",
                    self.stderr_so_far()
                );
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what} ({limit:?})\n--- stderr so far:\n{}",
                self.stderr_so_far()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self
    }

    /// Sends `signal` (SIGINT, SIGTERM, SIGSTOP, SIGCONT...) to the run,
    /// which must still be running.
    #[track_caller]
    pub fn signal(self, signal: Signal) -> Self {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to pid {}: {e}", self.pid()));
        self
    }

    /// SIGKILLs the run (no cleanup of its own runs) and waits for its end.
    pub fn kill(mut self) -> Ran {
        self.child.kill().expect("SIGKILL the run");
        self.finish()
    }

    /// Waits for the run to end; its exit status and output, to check.
    pub fn finish(mut self) -> Ran {
        let status: ExitStatus = self.child.wait().expect("runbook ends");
        if let Some(reader) = self.stderr_reader.take() {
            join(reader);
        }
        let output = Output {
            status,
            stdout: self.stdout.take().map(join).unwrap_or_default(),
            stderr: std::mem::take(
                &mut *self
                    .stderr
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            ),
        };
        Ran::of(self.test.take().expect("finished once"), output)
    }
}

fn join<T>(reader: JoinHandle<T>) -> T {
    reader.join().expect("the pipe reader does not panic")
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.test.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
