//! The programs a killed run left running. A step's program runs in a process
//! group of its own (so that a timeout kills it with its children), so a
//! SIGKILL of runbook leaves it running: a `nodetool snapshot` goes on
//! linking tables after `runbook recover` has cleared the snapshot, and the
//! snapshot is left for ever. Every program a run starts inherits
//! [`RUN_PID_VARIABLE`] (runbook's pid, set before any thread starts); before
//! undoing a killed run, recovery waits for the programs carrying its pid to
//! end, and kills what is left after [`WAIT`].

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid, getpgrp};

/// The environment variable holding the pid of the run that started a program.
/// Not `RUNBOOK_…`: those are config keys, and a `runbook` started by a step
/// would take an unknown one for a typo.
pub const RUN_PID_VARIABLE: &str = "RUN_BY_RUNBOOK_PID";

/// How long recovery waits for a killed run's programs before killing them:
/// a `nodetool snapshot` that flushes large memtables takes minutes, and
/// killing it would not stop the server's snapshot.
const WAIT: Duration = Duration::from_secs(120);

/// A running program: its pid and command line (shortened).
type Program = (i32, String);

/// The live processes whose environment says run `run_pid` started them.
fn programs_of(run_pid: u32) -> Vec<Program> {
    let needle = format!("{RUN_PID_VARIABLE}={run_pid}");
    let own = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A zombie's environment reads empty: it is not running.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if pid == own || !environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let mut shown: String = String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .trim()
            .chars()
            .take(80)
            .collect();
        if shown.is_empty() {
            shown = "?".to_string();
        }
        found.push((pid, shown));
    }
    found
}

fn describe(programs: &[Program]) -> String {
    programs
        .iter()
        .map(|(pid, cmd)| format!("pid {pid} `{cmd}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lists (dry run) or waits for the programs the killed run `run_pid` left
/// running, so that its undo actions do not race them; kills the process
/// groups of those still running after [`WAIT`] (never this process's own).
pub async fn settle_programs_of(run_pid: u32, dry_run: bool) {
    let left = programs_of(run_pid);
    if left.is_empty() {
        return;
    }
    if dry_run {
        tracing::warn!(
            "the killed run (pid {run_pid}) left programs running: {}; `runbook recover` waits for them to end (at most {}) before undoing",
            describe(&left),
            humantime::format_duration(WAIT)
        );
        return;
    }
    tracing::warn!(
        "the killed run (pid {run_pid}) left programs running: {}; waiting for them to end (at most {}) before undoing",
        describe(&left),
        humantime::format_duration(WAIT)
    );
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if programs_of(run_pid).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = programs_of(run_pid);
    let own_group = getpgrp();
    for (pid, _) in &left {
        let pid = Pid::from_raw(*pid);
        match getpgid(Some(pid)) {
            Ok(group) if group != own_group => drop(killpg(group, Signal::SIGKILL)),
            _ => drop(kill(pid, Signal::SIGKILL)),
        }
    }
    tracing::warn!(
        "killed what the killed run (pid {run_pid}) left running after {}: {}",
        humantime::format_duration(WAIT),
        describe(&left)
    );
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && !programs_of(run_pid).is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
