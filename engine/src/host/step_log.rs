//! What a step call says in the logs: one line per call, when it ends —
//! what it did, and for steps that report `bytes`, the size in MiB and the
//! throughput in MiB/s:
//!
//! ```text
//! 01:19:37  INFO cassandra archive: archive 10 sources into /mnt/backup/cassandra/cassandra_X.tar: 4.2 MiB in 219ms (19.3 MiB/s)
//! 01:19:36  INFO es_health: check cluster health of http://127.0.0.1:9200/, require yellow: done in 39ms
//! ```
//!
//! The line "starting" is at debug level (`-v`); progress of long steps is
//! a bar on a terminal, a line every few seconds otherwise (the step's own
//! `Progress`). Every line carries structured fields, which `--log-format
//! json` prints as keys of its object: `step`, `label`, `status`,
//! `duration_seconds`, and from the step's result `path`, `part` (the backup
//! set part its file name says: `cassandra`, `files`, `minio`,
//! `elasticsearch`, `manifest`), `bytes` and `mib_per_second`.

use std::path::Path;
use std::time::Duration;

use runbook_steps::backup::layout::{SetFileKind, classify_file_name};
use runbook_steps::runtime::wording::{mib, mib_per_second};

use crate::host::secrets::mask;

/// One step call, as its log lines name it.
pub struct StepLog<'a> {
    /// The call's label (masked when printed).
    pub label: &'a str,
    /// The step's name.
    pub step: &'static str,
    /// What it does (the step's dry-run description).
    pub description: &'a str,
}

/// The set part a file name belongs to, if it is a set file.
fn part_of(path: &str) -> Option<String> {
    let name = Path::new(path).file_name()?.to_str()?;
    match classify_file_name(name)?.0 {
        SetFileKind::Archive(part) | SetFileKind::Sidecar(part) | SetFileKind::Partial(part) => {
            Some(part)
        }
        SetFileKind::Marker => Some(runbook_steps::backup::layout::ELASTICSEARCH_PART.to_string()),
        SetFileKind::Manifest => Some("manifest".to_string()),
    }
}

fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// A duration for people: `219ms`, `3s 40ms`, `1h 2m 3s`.
fn human_duration(duration: Duration) -> String {
    let rounded = if duration >= Duration::from_secs(60) {
        Duration::from_secs(duration.as_secs())
    } else {
        Duration::from_millis(duration.as_millis() as u64)
    };
    humantime::format_duration(rounded).to_string()
}

impl StepLog<'_> {
    /// The call starts (debug: the end line says what it did).
    pub fn started(&self) {
        tracing::debug!(
            step = self.step,
            label = %mask(self.label),
            status = "started",
            "{}: {}",
            mask(self.label),
            mask(self.description)
        );
    }

    /// The call under `--dry-run`, which only describes.
    pub fn dry_run(&self) {
        tracing::info!(
            step = self.step,
            label = %mask(self.label),
            status = "dry_run",
            "{}: [dry-run] would {}",
            mask(self.label),
            mask(self.description)
        );
    }

    /// The call succeeded with `result` after `took`.
    pub fn succeeded(&self, result: &serde_json::Value, took: Duration) {
        let path = result.get("path").and_then(|p| p.as_str());
        let part = path.and_then(part_of);
        let bytes = result.get("bytes").and_then(|b| b.as_u64());
        // A check that moved nothing reads better as "done".
        let shown_bytes = bytes.filter(|b| *b > 0);
        let rate = bytes.and_then(|b| mib_per_second(b, took.as_secs_f64()));
        let rate_value = bytes
            .filter(|_| took.as_secs_f64() > 0.0)
            .map(|b| (b as f64 / 1_048_576.0 / took.as_secs_f64() * 1000.0).round() / 1000.0);
        let outcome = match (shown_bytes, &rate) {
            (Some(b), Some(rate)) => format!("{} in {} ({rate})", mib(b), human_duration(took)),
            (Some(b), None) => format!("{} in {}", mib(b), human_duration(took)),
            (None, _) => format!("done in {}", human_duration(took)),
        };
        tracing::info!(
            step = self.step,
            label = %mask(self.label),
            status = "ok",
            duration_seconds = seconds(took),
            path = path.map(mask),
            part = part.as_deref(),
            bytes = bytes,
            mib_per_second = rate_value,
            "{}: {}: {outcome}",
            mask(self.label),
            mask(self.description)
        );
    }

    /// The call failed with `error` after `took`.
    pub fn failed(&self, error: &str, kind: &str, took: Duration) {
        tracing::warn!(
            step = self.step,
            label = %mask(self.label),
            status = "failed",
            kind = kind,
            duration_seconds = seconds(took),
            "{}: failed after {}: {}",
            mask(self.label),
            human_duration(took),
            mask(error)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_durations() {
        assert_eq!(
            part_of("/b/cassandra/cassandra_20261207_02h15m00s.tar").as_deref(),
            Some("cassandra")
        );
        assert_eq!(
            part_of("/b/backup_20261207_02h15m00s.json").as_deref(),
            Some("manifest")
        );
        assert_eq!(
            part_of("/b/elasticsearch/elasticsearch_20261207_02h15m00s.info").as_deref(),
            Some("elasticsearch")
        );
        assert_eq!(part_of("/b/other.tar"), None);
        assert_eq!(human_duration(Duration::from_micros(219_400)), "219ms");
        assert_eq!(human_duration(Duration::from_millis(3_040)), "3s 40ms");
        assert_eq!(human_duration(Duration::from_millis(3_723_500)), "1h 2m 3s");
    }
}
