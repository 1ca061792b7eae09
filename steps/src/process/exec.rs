//! `exec`: runs a program, captures its output, kills its whole process group
//! on timeout or interruption.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};

/// Output kept per stream; past it the step fails rather than eat memory.
pub const CAPTURE_LIMIT: usize = 16 * 1024 * 1024;
/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Lines of stderr quoted in an exit-code error.
const STDERR_TAIL_LINES: usize = 5;

/// The `exec` step.
pub struct Exec;

/// Options of `exec`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecOptions {
    /// The program, looked up in PATH (or the shell command line with `shell: true`).
    pub cmd: String,
    /// Arguments, passed as they are: no shell, no word splitting.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables added to runbook's own.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working folder.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Text written to the program's standard input (default: empty input).
    #[serde(default)]
    pub stdin: Option<String>,
    /// Exit codes that count as success.
    #[serde(default = "default_ok_codes")]
    pub ok_codes: Vec<i32>,
    /// Keep stdout/stderr in the result (false: only stream them to the log).
    #[serde(default = "default_true")]
    pub capture: bool,
    /// The command only reads: it runs for real under `--dry-run`.
    #[serde(default)]
    pub read_only: bool,
    /// Run `cmd` (with `args` appended) through `/bin/sh -c`.
    #[serde(default)]
    pub shell: bool,
}

fn default_ok_codes() -> Vec<i32> {
    vec![0]
}

fn default_true() -> bool {
    true
}

/// Result of `exec`.
#[derive(Debug, Default, Serialize)]
pub struct ExecOutput {
    /// Exit code (128 + N when killed by signal N).
    pub code: i32,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// Wall time.
    pub duration_ms: u64,
}

/// Why `exec` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program could not be started at all.
    #[error("could not start `{cmd}`: {reason}")]
    Spawn {
        /// The program.
        cmd: String,
        /// Why, e.g. "not found in PATH".
        reason: String,
    },
    /// The program ran and exited with a code not in `ok_codes`.
    #[error("`{command}` exited with code {code}{tail}")]
    ExitCode {
        /// Program and first argument.
        command: String,
        /// The exit code.
        code: i32,
        /// ": " and the last lines of stderr, or empty.
        tail: String,
    },
    /// The program printed more than [`CAPTURE_LIMIT`] on one stream.
    #[error("`{command}` printed more than {limit} MiB on {stream}; use `capture: false`")]
    OutputTooLarge {
        /// Program and first argument.
        command: String,
        /// "stdout" or "stderr".
        stream: &'static str,
        /// The limit in MiB.
        limit: usize,
    },
    /// Waiting for the program failed.
    #[error("waiting for `{command}` failed: {source}")]
    Wait {
        /// Program and first argument.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl StepFailure for ExecError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            ExecError::Spawn { .. } => ErrorKind::Spawn,
            ExecError::ExitCode { .. } => ErrorKind::ExitCode,
            ExecError::OutputTooLarge { .. } => ErrorKind::OutputTooLarge,
            ExecError::Wait { .. } => ErrorKind::Io,
        }
    }
}

impl Step for Exec {
    const NAME: &'static str = "exec";
    const DOC: &'static str = "\
Runs a program and captures its output; no shell unless `shell: true`.

The program runs in its own process group. On timeout or interruption the whole
group (the program and everything it started) gets SIGTERM, then SIGKILL after
2 seconds. Output is streamed line by line to the debug log and kept up to
16 MiB per stream.

Options:
  cmd        string             program, looked up in PATH (required)
  args       array of strings   arguments, passed as they are (default [])
  env        map                extra environment variables (default #{})
  cwd        string             working folder (default: runbook's)
  stdin      string             text written to standard input (default: none)
  ok_codes   array of ints      exit codes that count as success (default [0])
  capture    bool               keep stdout/stderr in the result (default true)
  read_only  bool               the command only reads: it runs under --dry-run (default false)
  shell      bool               run through /bin/sh -c (default false)

Result:
  code         int      exit code (128+N when killed by signal N)
  stdout       string   captured standard output
  stderr       string   captured standard error
  duration_ms  int      wall time

Example:
  let status = exec(#{ cmd: \"nodetool\", args: [\"status\"], read_only: true, timeout: \"1m\" });
  log_info(status.stdout);
";

    type Options = ExecOptions;
    type Output = ExecOutput;

    fn describe(options: &ExecOptions) -> String {
        let mut line = String::from("run ");
        if options.shell {
            line.push_str("/bin/sh -c ");
        }
        line.push_str(&shell_quote(&options.cmd));
        for arg in &options.args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        if let Some(cwd) = &options.cwd {
            line.push_str(&format!(" (in {})", cwd.display()));
        }
        line
    }

    fn label(options: &ExecOptions) -> Option<String> {
        Some(short_command(options))
    }

    fn dry_run(options: &ExecOptions) -> DryRun<ExecOutput> {
        if options.read_only {
            DryRun::Run
        } else {
            DryRun::Skip(ExecOutput::default())
        }
    }

    fn changes(options: &ExecOptions) -> bool {
        !options.read_only
    }

    async fn run(options: ExecOptions, ctx: StepContext) -> Result<ExecOutput, StepError> {
        run_exec(options, ctx).await
    }
}

/// Program and first argument, e.g. `nodetool snapshot`: what errors and labels show.
fn short_command(options: &ExecOptions) -> String {
    let program = std::path::Path::new(&options.cmd)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| options.cmd.clone());
    match options.args.first() {
        Some(first) if !options.shell && !first.starts_with('-') => format!("{program} {first}"),
        _ => program,
    }
}

/// Quotes a word for display the way a shell would need it.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Kills the process group if the step is dropped (engine timeout) before the
/// program ended.
struct GroupGuard {
    pgid: Pid,
    finished: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.finished {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

struct Captured {
    text: String,
    overflow: bool,
}

fn spawn_reader(
    pipe: os_pipe::PipeReader,
    stream: &'static str,
    label: String,
    keep: bool,
) -> std::thread::JoinHandle<Captured> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut kept = Vec::new();
        let mut overflow = false;
        let mut line = Vec::new();
        loop {
            line.clear();
            // Read raw bytes: a program may print non-UTF-8 output.
            match reader.by_ref().take(1 << 20).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            tracing::debug!(
                target: "runbook::exec",
                "{label} {stream}: {}",
                String::from_utf8_lossy(&line).trim_end()
            );
            if keep && !overflow {
                if kept.len() + line.len() > CAPTURE_LIMIT {
                    overflow = true;
                } else {
                    kept.extend_from_slice(&line);
                }
            }
        }
        Captured {
            text: String::from_utf8_lossy(&kept).into_owned(),
            overflow,
        }
    })
}

async fn run_exec(options: ExecOptions, ctx: StepContext) -> Result<ExecOutput, StepError> {
    let started = Instant::now();
    let command = short_command(&options);
    let (out_read, out_write) = os_pipe::pipe().map_err(|e| spawn_error(&options.cmd, &e))?;
    let (err_read, err_write) = os_pipe::pipe().map_err(|e| spawn_error(&options.cmd, &e))?;
    let expression = expression(&options, out_write, err_write);
    let handle = expression
        .start()
        .map_err(|e| spawn_error(&options.cmd, &e))?;
    // The expression holds the write ends of the pipes: drop it so the readers
    // see end-of-file when the program exits.
    drop(expression);
    let handle = Arc::new(handle);
    let pid = handle.pids().first().copied().unwrap_or_default();
    let mut guard = GroupGuard {
        pgid: Pid::from_raw(pid as i32),
        finished: false,
    };
    let stdout = spawn_reader(out_read, "stdout", ctx.label.clone(), options.capture);
    let stderr = spawn_reader(err_read, "stderr", ctx.label.clone(), true);

    let waiter = {
        let handle = Arc::clone(&handle);
        tokio::task::spawn_blocking(move || handle.wait().map(|output| output.status))
    };
    tokio::pin!(waiter);
    let deadline = ctx.deadline;
    let waited = tokio::select! {
        status = &mut waiter => Ok(status),
        _ = ctx.cancel.cancelled() => Err(StepError::cancelled()),
        _ = sleep_until(deadline) => Err(StepError::timed_out(
            deadline.map(|d| d.duration_since(tokio::time::Instant::from_std(started))).unwrap_or_default(),
        )),
    };
    let status = match waited {
        Ok(status) => status,
        Err(error) => {
            terminate_group(guard.pgid, &mut waiter).await;
            guard.finished = true;
            return Err(error);
        }
    };
    let status = status
        .expect("exec wait task panicked")
        .map_err(|source| ExecError::Wait {
            command: command.clone(),
            source,
        })?;
    guard.finished = true;
    // The program ended; its children may still hold the pipes: kill the group
    // so the readers finish.
    let _ = killpg(guard.pgid, Signal::SIGKILL);
    let stdout = stdout.join().expect("stdout reader panicked");
    let stderr = stderr.join().expect("stderr reader panicked");
    judge_exit(&options, command, status, stdout, stderr, started)
}

/// The program of `options` (through `/bin/sh -c` with `shell`), writing to
/// the given pipes, in its own process group, with its stdin, environment
/// and folder.
fn expression(
    options: &ExecOptions,
    out_write: os_pipe::PipeWriter,
    err_write: os_pipe::PipeWriter,
) -> duct::Expression {
    let expression = if options.shell {
        let mut line = options.cmd.clone();
        for arg in &options.args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        duct::cmd("/bin/sh", ["-c".to_string(), line])
    } else {
        duct::cmd(&options.cmd, &options.args)
    };
    let mut expression = expression
        .stdout_file(out_write)
        .stderr_file(err_write)
        .unchecked()
        .before_spawn(|command| {
            // Own process group, so a timeout kills the program and its children.
            command.process_group(0);
            Ok(())
        });
    expression = match &options.stdin {
        Some(text) => expression.stdin_bytes(text.clone().into_bytes()),
        None => expression.stdin_null(),
    };
    for (key, value) in &options.env {
        expression = expression.env(key, value);
    }
    if let Some(cwd) = &options.cwd {
        expression = expression.dir(cwd);
    }
    expression
}

/// The step's result once the program ended with `status`: an error for
/// output over the capture limit or an exit code not in `ok_codes`.
fn judge_exit(
    options: &ExecOptions,
    command: String,
    status: std::process::ExitStatus,
    stdout: Captured,
    stderr: Captured,
    started: Instant,
) -> Result<ExecOutput, StepError> {
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    for (captured, stream) in [(&stdout, "stdout"), (&stderr, "stderr")] {
        if captured.overflow {
            return Err(ExecError::OutputTooLarge {
                command,
                stream,
                limit: CAPTURE_LIMIT >> 20,
            }
            .into());
        }
    }
    if !options.ok_codes.contains(&code) {
        return Err(ExecError::ExitCode {
            command,
            code,
            tail: stderr_tail(&stderr.text),
        }
        .into());
    }
    Ok(ExecOutput {
        code,
        stdout: if options.capture {
            stdout.text
        } else {
            String::new()
        },
        stderr: if options.capture {
            stderr.text
        } else {
            String::new()
        },
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM to the group, SIGKILL after [`KILL_GRACE`], then reap.
async fn terminate_group<F>(pgid: Pid, waiter: &mut std::pin::Pin<&mut F>)
where
    F: std::future::Future,
{
    let _ = killpg(pgid, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, waiter.as_mut())
        .await
        .is_err()
    {
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = waiter.as_mut().await;
    } else {
        // The leader exited; make sure no child of it survives.
        let _ = killpg(pgid, Signal::SIGKILL);
    }
}

fn spawn_error(cmd: &str, error: &std::io::Error) -> StepError {
    let reason = match error.kind() {
        std::io::ErrorKind::NotFound if !cmd.contains('/') => "not found in PATH".to_string(),
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied (not executable?)".to_string(),
        _ => error.to_string(),
    };
    ExecError::Spawn {
        cmd: cmd.to_string(),
        reason,
    }
    .into()
}

/// The part of stderr worth quoting in one line: the tool's own `error:` line
/// when there is one (Java tools such as nodetool follow it with a stack
/// trace), else the last few lines.
fn stderr_tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    if let Some(error_line) = lines
        .iter()
        .find(|l| l.len() > 6 && l[..6].eq_ignore_ascii_case("error:"))
    {
        return format!(": {error_line}");
    }
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    format!(": {}", lines[start..].join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> ExecOptions {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn describe_quotes_arguments_that_need_it() {
        let o = options(
            serde_json::json!({"cmd": "cqlsh", "args": ["127.0.0.1", "-e", "DESCRIBE KEYSPACE thehive"]}),
        );
        assert_eq!(
            Exec::describe(&o),
            "run cqlsh 127.0.0.1 -e 'DESCRIBE KEYSPACE thehive'"
        );
        assert_eq!(Exec::label(&o).unwrap(), "cqlsh 127.0.0.1");
    }

    #[test]
    fn unknown_option_is_rejected() {
        let e = serde_json::from_value::<ExecOptions>(serde_json::json!({"cmd": "x", "argz": []}))
            .unwrap_err();
        assert!(e.to_string().contains("unknown field `argz`"), "{e}");
    }

    #[test]
    fn defaults() {
        let o = options(serde_json::json!({"cmd": "true"}));
        assert_eq!(o.ok_codes, vec![0]);
        assert!(o.capture && !o.read_only && !o.shell);
        assert!(matches!(Exec::dry_run(&o), DryRun::Skip(_)));
    }

    #[tokio::test]
    async fn captures_output_and_reports_exit_code() {
        let ok = Exec::run(
            options(serde_json::json!({"cmd": "sh", "args": ["-c", "echo out; echo err >&2"]})),
            StepContext::detached("t"),
        )
        .await
        .unwrap();
        assert_eq!(
            (ok.code, ok.stdout.as_str(), ok.stderr.as_str()),
            (0, "out\n", "err\n")
        );

        let failed = Exec::run(
            options(serde_json::json!({"cmd": "sh", "args": ["-c", "echo boom >&2; exit 2"]})),
            StepContext::detached("t"),
        )
        .await
        .unwrap_err();
        assert_eq!(failed.kind(), "exit_code");
        assert_eq!(failed.to_string(), "`sh` exited with code 2: boom");
    }

    #[test]
    fn stderr_tail_prefers_the_tools_error_line_over_a_stack_trace() {
        let nodetool = "error: No space left on device\n-- StackTrace --\njava.nio.file.FileSystemException: x\n\tat java.base/sun.nio.fs.UnixException.translateToIOException(UnixException.java:100)\n";
        assert_eq!(stderr_tail(nodetool), ": error: No space left on device");
        assert_eq!(stderr_tail("a\nb\n\nc\n"), ": a | b | c");
        assert_eq!(stderr_tail(""), "");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let e = Exec::run(
            options(serde_json::json!({"cmd": "no-such-program-xyz"})),
            StepContext::detached("t"),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind(), "spawn");
        assert_eq!(
            e.to_string(),
            "could not start `no-such-program-xyz`: not found in PATH"
        );
    }
}
