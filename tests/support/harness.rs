//! [`Test`]: one run of the real `runbook` binary written as what it checks,
//! in the spirit of just's test harness:
//!
//! ```ignore
//! Test::new()
//!     .write("wf.rhai", r#"let c = config(#{ keep: 3 });"#)
//!     .args(["run", "wf.rhai", "--set", "keep=three"])
//!     .run()
//!     .failure(2)
//!     .stderr_contains("config key `keep` (from --set): expected a whole number");
//! ```
//!
//! A test that runs several commands in one folder uses a [`Workdir`] and
//! starts each run with [`Workdir::runbook`]. Every check panics with the whole
//! stdout and stderr of the run, so a failure shows what the binary said.
//!
//! A run the test acts on while it runs (a signal, a second run beside it) is
//! started with [`Test::spawn`] and ended with [`Running::finish`](crate::Running::finish) after acting on it
//! (a signal, a wait for a file), giving the same [`Ran`]; one that must not hang is
//! run with [`Test::run_within`]; one that only a hand-built [`Command`] can
//! start (through `setpriv` as another user) is checked with
//! [`Ran::from_command`].

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};

use crate::support::runbook;

/// A temporary folder for workflows, vars files and journals; removed on drop.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Default for Workdir {
    fn default() -> Self {
        Self::new()
    }
}

impl Workdir {
    /// A fresh, empty folder.
    pub fn new() -> Self {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `name` inside the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `text` to `name` (creating its folders) and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A run of `runbook ARGS` in this folder; `run` and `plan` keep their
    /// journal in `journal/` here (read back with [`Workdir::journals`]).
    pub fn runbook<I, S>(&self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Test::at(self.root()).args(args)
    }

    /// `runbook ARGS` in this folder as a [`Command`], for a test that needs
    /// the process itself (to signal it, to run it while another holds a lock).
    pub fn command(&self, args: &[&str]) -> Command {
        self.runbook(args).command()
    }

    /// `runbook ARGS` in this folder, run to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("runbook runs")
    }

    /// The journals written to `journal/`, oldest first.
    pub fn journals(&self) -> Vec<serde_json::Value> {
        let mut paths: Vec<_> = std::fs::read_dir(self.path("journal"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
        paths.sort();
        paths
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }
}

/// One run of the real `runbook` binary, built up and then [`run`](Test::run).
#[must_use = "a Test does nothing until .run()"]
pub struct Test {
    /// The folder the run starts in; owned (and removed) when `Test::new` made it.
    dir: PathBuf,
    owned: Option<tempfile::TempDir>,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    journal: Option<PathBuf>,
}

impl Default for Test {
    fn default() -> Self {
        Self::new()
    }
}

impl Test {
    /// A run in a fresh temporary folder, kept until the [`Ran`] is dropped.
    pub fn new() -> Self {
        let owned = tempfile::tempdir().expect("temp dir");
        let mut test = Test::at(owned.path());
        test.owned = Some(owned);
        test
    }

    /// A run in an existing folder (not removed afterwards). `run` and `plan`
    /// keep their journal in its `journal/` (never in the system's
    /// /var/lib/runbook) unless the arguments name a `--journal-dir`.
    pub fn at(dir: impl AsRef<Path>) -> Self {
        Test {
            dir: dir.as_ref().to_path_buf(),
            owned: None,
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            journal: Some(dir.as_ref().join("journal")),
        }
    }

    /// `name` inside the run's folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Writes `text` to `name` inside the run's folder before it runs.
    pub fn write(self, name: &str, text: &str) -> Self {
        let path = self.path(name);
        std::fs::create_dir_all(path.parent().expect("a file has a folder")).unwrap();
        std::fs::write(&path, text).unwrap();
        self
    }

    /// One more argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// `--set KEY=VALUE` for each pair (a workflow's config keys).
    pub fn settings<K: std::fmt::Display, V: std::fmt::Display>(
        mut self,
        settings: &[(K, V)],
    ) -> Self {
        for (key, value) in settings {
            self = self.arg("--set").arg(format!("{key}={value}"));
        }
        self
    }

    /// An environment variable for the run (`RUNBOOK_*` from the test's own
    /// environment are always removed; set them here).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((
            key.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    /// Removes an environment variable the test process has.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_os_string(), None));
        self
    }

    /// What the run reads on stdin (by default: nothing, stdin is closed).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The run as a [`Command`], for tests that spawn it themselves.
    pub fn command(&self) -> Command {
        let mut command = runbook();
        command.args(&self.args).current_dir(&self.dir);
        // Appended after the other arguments, as `--journal-dir DIR`.
        let subcommand = self.args.first().and_then(|a| a.to_str());
        let journal_named = self.args.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == "--journal-dir" || a.starts_with("--journal-dir="))
        });
        if let (Some("run" | "plan"), Some(journal), false) =
            (subcommand, &self.journal, journal_named)
        {
            command.arg("--journal-dir").arg(journal);
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }

    /// Runs `runbook` to the end like [`Test::run`], but fails the test
    /// (after killing the run) if it has not ended within `limit`: for the
    /// tests whose bug would be a run that blocks for ever.
    #[track_caller]
    pub fn run_within(self, limit: std::time::Duration) -> Ran {
        let shown = self
            .args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let mut running = self.spawn();
        let until = std::time::Instant::now() + limit;
        while running.is_running() {
            if std::time::Instant::now() >= until {
                drop(running.kill());
                panic!("runbook {shown} did not end within {limit:?} (killed)");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        running.finish()
    }

    /// Runs `runbook` to the end and keeps what it printed.
    #[track_caller]
    pub fn run(self) -> Ran {
        let mut command = self.command();
        command
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("runbook starts");
        if let Some(input) = &self.stdin {
            // A run that does not read its stdin closes it early: not an error here.
            let _ = child.stdin.take().expect("piped stdin").write_all(input);
        }
        let output = child.wait_with_output().expect("runbook runs");
        Ran {
            args: self.args,
            dir: self.dir,
            _owned: self.owned,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// A finished [`Test`]: its exit status and output, and checks on them that
/// return the run so they chain.
pub struct Ran {
    args: Vec<OsString>,
    dir: PathBuf,
    _owned: Option<tempfile::TempDir>,
    /// How the run ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Ran {
    /// Runs a `runbook` run built by hand as a [`Command`] to the end (see
    /// [`Running::from_command`](crate::Running::from_command)), for the same
    /// chain of checks.
    #[track_caller]
    pub fn from_command(command: Command) -> Ran {
        crate::Running::from_command(command).finish()
    }

    /// `name` inside the folder the run started in.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The run as an [`Output`], for helpers written against one.
    pub fn output(&self) -> Output {
        Output {
            status: self.status,
            stdout: self.stdout.clone().into_bytes(),
            stderr: self.stderr.clone().into_bytes(),
        }
    }

    /// The exit code (`None` when a signal ended the run).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    fn show(&self) -> String {
        format!(
            "runbook {}\n--- exit: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            self.status,
            self.stdout,
            self.stderr
        )
    }

    /// Asserts exit 0.
    #[track_caller]
    pub fn success(self) -> Self {
        assert!(self.status.success(), "expected exit 0\n{}", self.show());
        self
    }

    /// Asserts exit `code` (1 workflow failed, 2 usage/config, 3 lock held...).
    #[track_caller]
    pub fn failure(self, code: i32) -> Self {
        assert_ne!(code, 0, "failure(0): use success()");
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit {code}\n{}",
            self.show()
        );
        self
    }

    /// Asserts that stdout contains `needle`.
    #[track_caller]
    pub fn stdout_contains(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "expected `{needle}` in stdout\n{}",
            self.show()
        );
        self
    }

    /// Asserts that stderr contains `needle`.
    #[track_caller]
    pub fn stderr_contains(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "expected `{needle}` in stderr\n{}",
            self.show()
        );
        self
    }

    /// Asserts that neither stdout nor stderr contains `needle` (a secret, a
    /// message that must not appear).
    #[track_caller]
    pub fn output_lacks(self, needle: &str) -> Self {
        assert!(
            !self.stdout.contains(needle) && !self.stderr.contains(needle),
            "`{needle}` must not be printed\n{}",
            self.show()
        );
        self
    }

    /// Asserts that stdout is exactly `expected`.
    #[track_caller]
    pub fn stdout_is(self, expected: &str) -> Self {
        assert_eq!(self.stdout, expected, "stdout differs\n{}", self.show());
        self
    }

    /// Asserts that the run did not succeed, whatever its exit code (for a
    /// check that any failure satisfies; prefer [`Ran::failure`] with the code).
    #[track_caller]
    pub fn failed(self) -> Self {
        assert!(
            !self.status.success(),
            "expected a failure\n{}",
            self.show()
        );
        self
    }

    /// Asserts that stderr does not contain `needle` (a message that must
    /// not appear there; stdout may still say it).
    #[track_caller]
    pub fn stderr_lacks(self, needle: &str) -> Self {
        assert!(
            !self.stderr.contains(needle),
            "`{needle}` must not be in stderr\n{}",
            self.show()
        );
        self
    }

    /// Asserts that stdout starts with `prefix`.
    #[track_caller]
    pub fn stdout_starts_with(self, prefix: &str) -> Self {
        assert!(
            self.stdout.starts_with(prefix),
            "expected stdout to start with `{prefix}`\n{}",
            self.show()
        );
        self
    }

    /// Stdout parsed as JSON (`--json`, `--summary-json -`); fails the test,
    /// showing the run, when it is not JSON.
    #[track_caller]
    pub fn stdout_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.show()))
    }

    /// The journals the run's folder holds in `journal/` (where [`Test::at`]
    /// and [`Test::new`] keep them), oldest first; the last one is this
    /// run's when it wrote one.
    pub fn journals(&self) -> Vec<serde_json::Value> {
        read_journals(&self.dir.join("journal"))
    }
}

/// The `*.json` journals in `folder`, oldest first (their names start with
/// the run's start time); none when the folder does not exist.
pub fn read_journals(folder: &Path) -> Vec<serde_json::Value> {
    let mut paths: Vec<_> = std::fs::read_dir(folder)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("journal {} is not JSON: {e}", p.display()))
        })
        .collect()
}

// Added for tests/support/running.rs (a run the test acts on while it runs):
// a new constructor only; the methods above are unchanged.
impl Ran {
    /// The [`Ran`] of `test`, which ended with `output` (a run started with
    /// [`Test::spawn`]).
    pub(crate) fn of(test: Test, output: Output) -> Ran {
        Ran {
            args: test.args,
            dir: test.dir,
            _owned: test.owned,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
