//! Notifications: when a workflow declares the config key `notify_command`
//! and it is not empty, that command runs once the run has ended, with the
//! run summary ([`crate::report::summary`]) as JSON on its stdin — after a
//! failed or interrupted run, and after a successful one too when the
//! workflow's `notify_on_success` is true. A site sends mail or calls a
//! webhook with it (`mail -s backup admin@example.org`, `curl -d @- URL`).
//!
//! The command line is split like a shell would (`shlex`) and run without a
//! shell: a value with `$`, `|` or `;` means nothing special unless the
//! command is `sh -c '...'`. It runs after the journal and the metrics are
//! written, gets `notify_timeout` (default [`NOTIFY_TIMEOUT`]) and is
//! killed with its process group after that, and its failure is logged without
//! changing the run's exit code (the backup's outcome stands). Not under
//! `--dry-run`.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::journal::JournalDoc;
use crate::report::summary::RunSummary;

/// The config key naming the command.
pub const COMMAND_KEY: &str = "notify_command";
/// The config key asking for a notification after a successful run too.
pub const ON_SUCCESS_KEY: &str = "notify_on_success";
/// The config key bounding how long the command may take (a duration such as
/// "2m"); [`NOTIFY_TIMEOUT`] when the workflow does not declare it.
pub const TIMEOUT_KEY: &str = "notify_timeout";
/// How long the command may take before it is killed, by default.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the workflow's `notify_command`, if it declares one and the run's
/// result asks for it.
pub fn after_run(doc: &JournalDoc, summary: &RunSummary, summary_json: &str) {
    let Some(command_line) = doc
        .config
        .get(COMMAND_KEY)
        .and_then(|v| v.as_str())
        .filter(|s| !s.trim().is_empty())
    else {
        return;
    };
    let on_success = doc
        .config
        .get(ON_SUCCESS_KEY)
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if summary.result == "success" && !on_success {
        return;
    }
    if doc.dry_run {
        tracing::info!("dry-run: {COMMAND_KEY} not run");
        return;
    }
    let timeout = doc
        .config
        .get(TIMEOUT_KEY)
        .and_then(|v| v.as_str())
        .and_then(|text| humantime::parse_duration(text).ok())
        .unwrap_or(NOTIFY_TIMEOUT);
    match notify(command_line, summary, summary_json, timeout) {
        Ok(()) => tracing::info!("{COMMAND_KEY}: notified ({})", summary.result),
        Err(e) => tracing::error!(
            "{COMMAND_KEY} `{}` failed: {e} (the run's result stands: {})",
            crate::host::secrets::mask(command_line),
            summary.result
        ),
    }
}

/// Runs `command_line` with `summary_json` on stdin and `RUNBOOK_RESULT`,
/// `RUNBOOK_WORKFLOW`, `RUNBOOK_STAMP` in its environment.
fn notify(
    command_line: &str,
    summary: &RunSummary,
    summary_json: &str,
    timeout: Duration,
) -> Result<(), String> {
    let words = shlex::split(command_line)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| "cannot split the command line (unbalanced quotes?)".to_string())?;
    let mut command = Command::new(&words[0]);
    command
        .args(&words[1..])
        .env("RUNBOOK_RESULT", &summary.result)
        .env("RUNBOOK_WORKFLOW", &summary.workflow)
        .env("RUNBOOK_STAMP", summary.stamp.as_deref().unwrap_or(""))
        .stdin(Stdio::piped())
        // Its output goes to runbook's stderr, with the logs: stdout may
        // carry the summary (`--summary-json -`).
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        // Its own process group: a timeout kills what it started, too.
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", words[0]))?;
    if let Some(mut stdin) = child.stdin.take() {
        let text = summary_json.to_string();
        // A command that does not read its stdin must not block the run.
        std::thread::spawn(move || {
            let _ = stdin.write_all(text.as_bytes());
        });
    }
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= timeout => {
                let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!("killed after {}s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(e.to_string()),
        }
    };
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(format!("exited with code {code}")),
        None => Err("killed by a signal".to_string()),
    }
}
