//! The run summary: one JSON document per run (`runbook run --summary-json
//! FILE`, and the stdin of the workflow's `notify_command`), built from the
//! run's journal when the run has ended.
//!
//! It says what a monitoring system or a mail needs without reading the
//! journal: the workflow and the backup set's stamp, the result and how long
//! the run took, each step call (label, duration, bytes and throughput where
//! the step reports bytes), each archive made (path, size, SHA-256), and on
//! failure the error (step, label, kind, message, position). Every string is
//! masked like the journal.

use std::path::{Path, PathBuf};

use serde::Serialize;

use runbook_steps::backup::layout::{SetFileKind, classify_file_name};

use crate::host::journal::{JournalDoc, StepRecord};

/// The `format` field: changes only when a field changes meaning or goes away.
pub const FORMAT: &str = "runbook-run-summary/1";

/// `--summary-json -` writes the summary to stdout.
pub const STDOUT: &str = "-";

/// The summary of one run.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    /// [`FORMAT`].
    pub format: &'static str,
    /// The run's id: its journal's file name without `.json`.
    pub run: String,
    /// The workflow's name (file stem or stock name).
    pub workflow: String,
    /// Its path, or `stock:NAME`.
    pub workflow_path: String,
    /// The host it ran on.
    pub host: String,
    /// True for `plan` / `--dry-run`.
    pub dry_run: bool,
    /// The stamp of the backup set the run made (from its manifest or its
    /// archives' names), if it made one.
    pub stamp: Option<String>,
    /// `success`, `failed` or `interrupted`.
    pub result: String,
    /// Start and end (UTC, RFC 3339).
    pub started: String,
    /// End time.
    pub ended: Option<String>,
    /// Wall time of the run.
    pub duration_seconds: f64,
    /// The journal, for every detail.
    pub journal: Option<PathBuf>,
    /// Each step call, in completion order.
    pub steps: Vec<StepSummary>,
    /// Each archive the run wrote (steps whose result has `path`, `bytes`
    /// and `sha256`), once per path.
    pub archives: Vec<ArchiveSummary>,
    /// Total size of `archives`.
    pub archive_bytes: u64,
    /// Why the run failed; `null` on success.
    pub error: Option<serde_json::Value>,
}

/// One step call.
#[derive(Debug, Serialize)]
pub struct StepSummary {
    /// The call's label (the step name unless `label:` was given).
    pub label: String,
    /// The step.
    pub step: String,
    /// `ok`, `failed` or `dry_run`.
    pub status: String,
    /// `file:line:column` of the call.
    pub position: String,
    /// Wall time.
    pub duration_seconds: f64,
    /// The `bytes` the step's result reports, if it does.
    pub bytes: Option<u64>,
    /// `bytes` per second of wall time, in MiB/s.
    pub mib_per_second: Option<f64>,
    /// The step's error, on failure.
    pub error: Option<String>,
}

/// One archive.
#[derive(Debug, Serialize)]
pub struct ArchiveSummary {
    /// The label of the step that wrote it.
    pub label: String,
    /// The file.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its hex SHA-256.
    pub sha256: String,
}

fn seconds_between(start: &str, end: Option<&str>) -> f64 {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    match (parse(start), end.and_then(parse)) {
        (Some(a), Some(b)) => ((b - a).num_milliseconds().max(0) as f64) / 1000.0,
        _ => 0.0,
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The stamp in a set file's name (`backup_STAMP.json`, `cassandra_STAMP.tar`).
fn stamp_of(path: &str) -> Option<(SetFileKind, String)> {
    Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(classify_file_name)
}

/// Builds the summary of the run recorded in `doc`. `error` is the error map
/// of what failed the run (see [`crate::host::run_error`]); when the run did
/// not succeed and there is none, the journal's error text stands in.
pub fn build(
    doc: &JournalDoc,
    workflow_name: &str,
    journal: Option<&Path>,
    error: Option<serde_json::Value>,
) -> RunSummary {
    let (archives, stamp) = archives_and_stamp(doc);
    RunSummary {
        format: FORMAT,
        run: journal
            .and_then(|j| j.file_stem())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        workflow: workflow_name.to_string(),
        workflow_path: doc.workflow.clone(),
        host: doc.host.clone(),
        dry_run: doc.dry_run,
        stamp,
        result: doc.status.clone(),
        started: doc.started.clone(),
        ended: doc.ended.clone(),
        duration_seconds: seconds_between(&doc.started, doc.ended.as_deref()),
        journal: journal.map(Path::to_path_buf),
        archive_bytes: archives.iter().map(|a| a.bytes).sum(),
        steps: doc.steps.iter().map(step_summary).collect(),
        archives,
        error: error.or_else(|| journal_error(doc)),
    }
}

/// The result of a step record, when the step succeeded.
fn ok_result(record: &StepRecord) -> Option<&serde_json::Value> {
    record.result.as_ref().filter(|_| record.status == "ok")
}

/// The `bytes` a successful step reports.
fn result_bytes(record: &StepRecord) -> Option<u64> {
    ok_result(record)
        .and_then(|r| r.get("bytes"))
        .and_then(|b| b.as_u64())
}

/// One step call of the run: how long, how many bytes and how fast.
fn step_summary(record: &StepRecord) -> StepSummary {
    let bytes = result_bytes(record);
    let seconds = record.duration_ms as f64 / 1000.0;
    StepSummary {
        label: record.label.clone(),
        step: record.step.clone(),
        status: record.status.clone(),
        position: record.position.clone(),
        duration_seconds: seconds,
        bytes,
        mib_per_second: bytes
            .filter(|_| seconds > 0.0)
            .map(|b| round3(b as f64 / 1_048_576.0 / seconds)),
        error: record.error.clone(),
    }
}

/// The archives the run wrote (a path written twice counts once, the last
/// time), and the set's stamp: the manifest's, else the first archive's.
fn archives_and_stamp(doc: &JournalDoc) -> (Vec<ArchiveSummary>, Option<String>) {
    let mut archives: Vec<ArchiveSummary> = Vec::new();
    let mut manifest_stamp = None;
    let mut archive_stamp = None;
    for record in &doc.steps {
        let Some(result) = ok_result(record) else {
            continue;
        };
        let path = result.get("path").and_then(|p| p.as_str());
        if let Some(path) = path
            && let Some((kind, stamp)) = stamp_of(path)
        {
            match kind {
                SetFileKind::Manifest => manifest_stamp = Some(stamp),
                SetFileKind::Archive(_) => archive_stamp = archive_stamp.or(Some(stamp)),
                _ => {}
            }
        }
        if let (Some(path), Some(bytes), Some(sha256)) = (
            path,
            result_bytes(record),
            result.get("sha256").and_then(|s| s.as_str()),
        ) {
            archives.retain(|a| a.path != path);
            archives.push(ArchiveSummary {
                label: record.label.clone(),
                path: path.to_string(),
                bytes,
                sha256: sha256.to_string(),
            });
        }
    }
    (archives, manifest_stamp.or(archive_stamp))
}

/// The error of a run that did not succeed and left no error map: the first
/// line of the journal's error text, else its status.
fn journal_error(doc: &JournalDoc) -> Option<serde_json::Value> {
    if doc.status == "success" || doc.status == "running" {
        return None;
    }
    Some(serde_json::json!({
        "step": null,
        "kind": if doc.status == "interrupted" { "cancelled" } else { "failed" },
        "message": doc.error.as_deref().and_then(|e| e.lines().next()).map(|l| l.trim_start_matches("error: ")).unwrap_or(&doc.status),
    }))
}

/// The summary as masked, pretty JSON.
pub fn to_json(summary: &RunSummary) -> String {
    let value = serde_json::to_value(summary).unwrap_or_default();
    let masked = crate::host::secrets::mask_json(&value);
    serde_json::to_string_pretty(&masked).unwrap_or_default() + "\n"
}

/// Fails when `--summary-json FILE` could not be written: checked before the
/// run, like `--metrics-file`.
pub fn check_writable(path: &Path) -> Result<(), String> {
    if path.as_os_str() == STDOUT {
        return Ok(());
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    crate::host::file_functions::check_write_access(&folder).map_err(|e| {
        format!(
            "--summary-json {}: cannot write in {}: {e}",
            path.display(),
            folder.display()
        )
    })
}

/// After the run: builds the summary and writes it to `path`
/// (`--summary-json`; `-` = stdout). Returns the summary and its JSON text,
/// which the runner hands to [`crate::report::notify`] (the notification
/// reads the summary; the summary knows nothing of it). Writing never changes
/// the run's outcome: a failure is logged.
pub fn after_run(
    path: Option<&Path>,
    doc: &JournalDoc,
    workflow_name: &str,
    journal: Option<&Path>,
    error: Option<rhai::Map>,
) -> (RunSummary, String) {
    let error = error.and_then(|map| {
        rhai::serde::from_dynamic::<serde_json::Value>(&rhai::Dynamic::from_map(map)).ok()
    });
    let summary = build(doc, workflow_name, journal, error);
    let text = to_json(&summary);
    match path {
        Some(p) if p.as_os_str() == STDOUT => print!("{text}"),
        Some(p) => {
            match runbook_steps::runtime::atomic_file::write_atomic(p, text.as_bytes(), 0o644) {
                Ok(()) => tracing::debug!("run summary written to {}", p.display()),
                Err(e) => tracing::error!("cannot write the run summary {}: {e}", p.display()),
            }
        }
        None => {}
    }
    (summary, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::journal::StepRecord;

    fn record(
        label: &str,
        step: &str,
        status: &str,
        ms: u64,
        result: serde_json::Value,
    ) -> StepRecord {
        StepRecord {
            label: label.into(),
            step: step.into(),
            position: "wf.rhai:1:1".into(),
            options: serde_json::Value::Null,
            started: String::new(),
            duration_ms: ms,
            status: status.into(),
            result: (status == "ok").then_some(result),
            error: (status != "ok").then(|| "it broke".to_string()),
        }
    }

    #[test]
    fn stamp_archives_and_throughput_come_from_the_step_results() {
        let doc = JournalDoc {
            workflow: "stock:cluster-hot-backup.rhai".into(),
            started: "2026-12-07T01:15:00.000Z".into(),
            ended: Some("2026-12-07T01:16:40.500Z".into()),
            status: "success".into(),
            steps: vec![
                record(
                    "cassandra archive",
                    "tar_dir",
                    "ok",
                    2000,
                    serde_json::json!({"path": "/b/cassandra/cassandra_20261207_02h15m00s.tar", "bytes": 4_194_304, "sha256": "ab"}),
                ),
                // A retried archive: the same path once, with the last result.
                record(
                    "cassandra archive",
                    "tar_dir",
                    "ok",
                    1000,
                    serde_json::json!({"path": "/b/cassandra/cassandra_20261207_02h15m00s.tar", "bytes": 2_097_152, "sha256": "cd"}),
                ),
                record("stamp check", "http", "failed", 5, serde_json::Value::Null),
                record(
                    "write manifest",
                    "write_manifest",
                    "ok",
                    10,
                    serde_json::json!({"path": "/b/backup_20261207_02h15m00s.json"}),
                ),
            ],
            ..JournalDoc::default()
        };
        let summary = build(&doc, "cluster-hot-backup", None, None);
        assert_eq!(summary.stamp.as_deref(), Some("20261207_02h15m00s"));
        assert_eq!(summary.duration_seconds, 100.5);
        assert_eq!(summary.archives.len(), 1);
        assert_eq!(summary.archives[0].sha256, "cd");
        assert_eq!(summary.archive_bytes, 2_097_152);
        assert_eq!(summary.steps[0].mib_per_second, Some(2.0));
        assert_eq!(summary.steps[2].error.as_deref(), Some("it broke"));
        assert!(summary.error.is_none());

        let failed = JournalDoc {
            status: "failed".into(),
            error: Some("error: the script failed\n  --> wf.rhai:3:1".into()),
            ..doc
        };
        let summary = build(&failed, "cluster-hot-backup", None, None);
        let error = summary.error.expect("an error");
        assert_eq!(error["message"], "the script failed");
        assert_eq!(error["kind"], "failed");
    }
}
