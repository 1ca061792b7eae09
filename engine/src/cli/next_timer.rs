//! The next run of the backup's systemd timer, for `runbook status`.
//!
//! Asked of systemd as `systemctl show TIMER --property=LoadState
//! --property=ActiveState --property=NextElapseUSecRealtime`, which prints
//! `KEY=VALUE` lines; `systemctl show` prints a timestamp as `Tue 2026-12-08
//! 01:15:00 UTC` in the zone of its own `TZ` (and leaves the value empty, or
//! the line out, when the timer has no next run), so it runs with `TZ=UTC`
//! and `LC_ALL=C`. A machine without systemd (no `systemctl`, or one that
//! answers "System has not been booted with systemd") gives "unknown", never
//! an error: cron may be running the backup there.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long `systemctl` may take (a wedged D-Bus must not hang a probe).
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(5);

/// What systemd says about the timer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NextTimerRun {
    /// The timer unit asked about.
    pub timer: String,
    /// `scheduled` (a next run is known), `inactive` (loaded, not started),
    /// `not-loaded` (systemd knows no such timer) or `unknown` (systemd
    /// could not be asked).
    pub state: String,
    /// The next run (UTC, RFC 3339), when `scheduled`.
    pub next: Option<String>,
    /// Seconds until then.
    pub in_seconds: Option<i64>,
    /// Why the state is not `scheduled`, in a few words.
    pub detail: Option<String>,
}

impl NextTimerRun {
    fn without_next(timer: &str, state: &str, detail: String) -> Self {
        NextTimerRun {
            timer: timer.to_string(),
            state: state.to_string(),
            next: None,
            in_seconds: None,
            detail: Some(detail),
        }
    }
}

/// Asks systemd about `timer`.
pub fn ask(timer: &str) -> NextTimerRun {
    match run_systemctl(timer) {
        Ok(text) => parse(timer, &text, chrono::Utc::now()),
        Err(detail) => NextTimerRun::without_next(timer, "unknown", detail),
    }
}

/// `systemctl show` output, or why there is none.
fn run_systemctl(timer: &str) -> Result<String, String> {
    let mut child = Command::new("systemctl")
        .args([
            "show",
            timer,
            "--property=LoadState",
            "--property=ActiveState",
            "--property=NextElapseUSecRealtime",
        ])
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "no systemctl on PATH: systemd does not run here".to_string()
            }
            _ => format!("cannot run systemctl: {e}"),
        })?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= SYSTEMCTL_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "systemctl did not answer within {}s",
                    SYSTEMCTL_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("cannot wait for systemctl: {e}")),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    if !status.success() {
        let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!(
            "systemctl show failed ({}): {}",
            status
                .code()
                .map(|c| format!("exit {c}"))
                .unwrap_or_else(|| "killed".to_string()),
            first.trim()
        ));
    }
    Ok(stdout)
}

/// A `systemctl show` timestamp: `Tue 2026-12-08 01:15:00 UTC` (the
/// weekday is optional; the zone must be UTC, as asked with `TZ=UTC`).
fn parse_timestamp(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let (date, time, zone) = match words.as_slice() {
        [_, date, time, zone] | [date, time, zone] => (*date, *time, *zone),
        _ => return None,
    };
    if zone != "UTC" {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(&format!("{date} {time}"), "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

/// What the `KEY=VALUE` lines of `systemctl show` say, at `now`.
fn parse(timer: &str, text: &str, now: chrono::DateTime<chrono::Utc>) -> NextTimerRun {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or("")
    };
    let load = value("LoadState");
    if load != "loaded" {
        return NextTimerRun::without_next(
            timer,
            "not-loaded",
            format!(
                "systemd has no {timer} (LoadState={}): install the units `runbook init` writes",
                if load.is_empty() { "?" } else { load }
            ),
        );
    }
    let active = value("ActiveState");
    let next = value("NextElapseUSecRealtime");
    if next.is_empty() {
        return NextTimerRun::without_next(
            timer,
            "inactive",
            format!("{timer} is {active}, no run scheduled: systemctl enable --now {timer}"),
        );
    }
    match parse_timestamp(next) {
        Some(at) => NextTimerRun {
            timer: timer.to_string(),
            state: "scheduled".to_string(),
            next: Some(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            in_seconds: Some((at - now).num_seconds()),
            detail: None,
        },
        None => NextTimerRun::without_next(
            timer,
            "unknown",
            format!("cannot read NextElapseUSecRealtime={next}"),
        ),
    }
}

/// The `next run:` line of the status text.
pub fn text(next: &NextTimerRun) -> String {
    match (&next.next, next.in_seconds) {
        (Some(at), Some(seconds)) => {
            let when = if seconds >= 0 {
                format!(
                    "in {}",
                    runbook_steps::backup::catalogue::human_age(seconds as u64)
                )
            } else {
                "overdue".to_string()
            };
            format!("next run:     {at} ({when}), {}\n", next.timer)
        }
        _ => format!(
            "next run:     {} ({})\n",
            next.state,
            next.detail.as_deref().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn reads_what_systemctl_show_prints() {
        let now = at("2026-12-07T20:00:00Z");
        let scheduled = parse(
            "t.timer",
            "NextElapseUSecRealtime=Tue 2026-12-08 01:27:13 UTC\nLoadState=loaded\nActiveState=active\n",
            now,
        );
        assert_eq!(scheduled.state, "scheduled");
        assert_eq!(scheduled.next.as_deref(), Some("2026-12-08T01:27:13Z"));
        assert_eq!(scheduled.in_seconds, Some(5 * 3600 + 27 * 60 + 13));
        let inactive = parse(
            "t.timer",
            "NextElapseUSecRealtime=\nLoadState=loaded\nActiveState=inactive\n",
            now,
        );
        assert_eq!(inactive.state, "inactive");
        let missing = parse(
            "t.timer",
            "LoadState=not-found\nActiveState=inactive\n",
            now,
        );
        assert_eq!(missing.state, "not-loaded");
        let other_zone = parse(
            "t.timer",
            "NextElapseUSecRealtime=Tue 2026-12-08 02:27:13 CET\nLoadState=loaded\nActiveState=active\n",
            now,
        );
        assert_eq!(other_zone.state, "unknown");
    }
}
