//! `runbook run --metrics-file PATH`: a Prometheus textfile-collector file
//! written at the end of every run, success or failure, so an alert can fire
//! when backups fail or go stale.
//!
//! The file is built from the run's journal (status, start, end, step
//! records), encoded by the `prometheus` crate and written atomically
//! (`<path>.partial`, fsync, rename: node_exporter only reads `*.prom`, so it
//! never sees a half-written file). It holds no secret: only times, sizes,
//! step names and labels (labels are masked like everything in the journal).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry, TextEncoder};

use runbook_steps::backup::layout::ARCHIVE_PARTS;

use crate::host::journal::JournalDoc;

/// Time of the last successful run, unless this run is one.
const LAST_SUCCESS: &str = "runbook_last_success_timestamp_seconds";

/// The workflow config key that asks for a metrics file, like `--metrics-file`.
pub const CONFIG_KEY: &str = "metrics_file";

/// Writes the metrics of the run recorded in `doc` to `cli_path`
/// (`--metrics-file`), else to the path in the workflow's config key
/// `metrics_file` when it declares one and it is not empty; else does nothing.
/// A dry-run writes nothing (a plan is not a backup). Failing to write is
/// logged, not fatal: the run's own outcome stands.
pub fn write_after_run(cli_path: Option<&Path>, workflow: &str, doc: &JournalDoc) {
    let from_config = doc
        .config
        .get(CONFIG_KEY)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let Some(path) = cli_path.map(Path::to_path_buf).or(from_config) else {
        return;
    };
    let path = path.as_path();
    if doc.dry_run {
        tracing::info!("dry-run: metrics file {} not written", path.display());
        return;
    }
    let previous_success = read_last_success(path, workflow);
    let result = render(workflow, doc, previous_success).and_then(|text| {
        runbook_steps::runtime::atomic_file::write_atomic(path, text.as_bytes(), 0o644)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    });
    match result {
        Ok(()) => tracing::debug!("metrics written to {}", path.display()),
        Err(e) => tracing::error!("metrics file: {e}"),
    }
}

/// The `runbook_last_success_timestamp_seconds` of `workflow` in an existing
/// metrics file, if there is one. (prometheus-parse splits label lists on `,`
/// and `=` without unescaping: a workflow name, which is a file stem, holding
/// one of `,="\}` is not found, and the last success then reads 0.)
pub fn read_last_success(path: &Path, workflow: &str) -> Option<f64> {
    let file = std::fs::File::open(path).ok()?;
    let lines = std::io::BufReader::new(file).lines();
    let scrape = prometheus_parse::Scrape::parse(lines).ok()?;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == LAST_SUCCESS && s.labels.get("workflow") == Some(workflow))
        .find_map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) if v > 0.0 => {
                Some(v)
            }
            _ => None,
        })
}

fn unix_seconds(rfc3339: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// The part an archive belongs to: its file name prefix (`cassandra`,
/// `files`, `minio`) when it has one of those, else the step's label.
fn archive_part(result: &serde_json::Value, label: &str) -> String {
    let name = result
        .get("path")
        .and_then(|p| p.as_str())
        .and_then(|p| Path::new(p).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ARCHIVE_PARTS
        .iter()
        .find(|part| name.starts_with(&format!("{part}_")))
        .map(|part| part.to_string())
        .unwrap_or_else(|| label.to_string())
}

/// The metrics text for the run in `doc`.
pub fn render(
    workflow: &str,
    doc: &JournalDoc,
    previous_success: Option<f64>,
) -> Result<String, String> {
    let metrics = MetricsFile::new(workflow);
    register_run_gauges(&metrics, doc, previous_success)?;
    let tally = StepTally::of(doc);
    let bytes = metrics.gauge_vec(
        "runbook_archive_bytes",
        "Size of the archives the last run wrote, per part.",
        &["part"],
    )?;
    for (part, value) in &tally.archive_bytes {
        bytes.with_label_values(&[part.as_str()]).set(*value);
    }
    metrics.register(bytes)?;
    let durations = metrics.gauge_vec(
        "runbook_step_duration_seconds",
        "Wall time of each step of the last run, summed per label and step.",
        &["label", "step"],
    )?;
    for ((label, step), value) in &tally.step_seconds {
        durations
            .with_label_values(&[label.as_str(), step.as_str()])
            .set(*value);
    }
    metrics.register(durations)?;
    metrics.encode()
}

/// The gauges of one run, each labelled with its workflow, gathered in one
/// registry and encoded as the textfile collector reads them.
struct MetricsFile<'a> {
    workflow: &'a str,
    registry: Registry,
}

impl<'a> MetricsFile<'a> {
    fn new(workflow: &'a str) -> Self {
        MetricsFile {
            workflow,
            registry: Registry::new(),
        }
    }

    fn opts(&self, name: &str, help: &str) -> Opts {
        Opts::new(name, help).const_label("workflow", self.workflow)
    }

    /// Registers the gauge `name` set to `value`.
    fn gauge(&self, name: &str, help: &str, value: f64) -> Result<(), String> {
        let g = Gauge::with_opts(self.opts(name, help)).map_err(failed)?;
        g.set(value);
        self.register(g)
    }

    /// A gauge per value of `labels`, to fill and then [`Self::register`].
    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec, String> {
        GaugeVec::new(self.opts(name, help), labels).map_err(failed)
    }

    fn register(
        &self,
        collector: impl prometheus::core::Collector + 'static,
    ) -> Result<(), String> {
        self.registry.register(Box::new(collector)).map_err(failed)
    }

    fn encode(&self) -> Result<String, String> {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .map_err(failed)?;
        String::from_utf8(text).map_err(|e| format!("cannot build the metrics: {e}"))
    }
}

fn failed(e: prometheus::Error) -> String {
    format!("cannot build the metrics: {e}")
}

/// When the run started, whether it succeeded, how long it took, and when
/// the last successful run started (this one, else `previous_success`).
fn register_run_gauges(
    metrics: &MetricsFile,
    doc: &JournalDoc,
    previous_success: Option<f64>,
) -> Result<(), String> {
    let started = unix_seconds(&doc.started).unwrap_or(0.0);
    let ended = doc
        .ended
        .as_deref()
        .and_then(unix_seconds)
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
    let success = doc.status == "success";
    metrics.gauge(
        "runbook_last_run_timestamp_seconds",
        "Unix time the last run started.",
        started,
    )?;
    metrics.gauge(
        "runbook_last_run_success",
        "1 if the last run succeeded, 0 if it failed or was interrupted.",
        if success { 1.0 } else { 0.0 },
    )?;
    metrics.gauge(
        "runbook_last_run_duration_seconds",
        "How long the last run took.",
        (ended - started).max(0.0),
    )?;
    metrics.gauge(
        LAST_SUCCESS,
        "Unix time the last successful run started (0: none known); alert when it gets old.",
        if success {
            started
        } else {
            previous_success.unwrap_or(0.0)
        },
    )
}

/// What the run's step records add up to.
struct StepTally {
    /// Bytes of the archives `tar_dir` wrote, per part.
    archive_bytes: BTreeMap<String, f64>,
    /// Seconds per (label, step).
    step_seconds: BTreeMap<(String, String), f64>,
}

impl StepTally {
    fn of(doc: &JournalDoc) -> Self {
        let mut tally = StepTally {
            archive_bytes: BTreeMap::new(),
            step_seconds: BTreeMap::new(),
        };
        for step in &doc.steps {
            *tally
                .step_seconds
                .entry((step.label.clone(), step.step.clone()))
                .or_default() += step.duration_ms as f64 / 1000.0;
            if step.step == "tar_dir"
                && step.status == "ok"
                && let Some(result) = &step.result
                && let Some(bytes) = result.get("bytes").and_then(|b| b.as_u64())
            {
                *tally
                    .archive_bytes
                    .entry(archive_part(result, &step.label))
                    .or_default() += bytes as f64;
            }
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::journal::StepRecord;

    fn step(label: &str, step: &str, ms: u64, result: Option<serde_json::Value>) -> StepRecord {
        StepRecord {
            label: label.into(),
            step: step.into(),
            position: String::new(),
            options: serde_json::Value::Null,
            started: String::new(),
            duration_ms: ms,
            status: "ok".into(),
            result,
            error: None,
        }
    }

    #[test]
    fn failed_run_keeps_the_previous_success_and_counts_parts() {
        let doc = JournalDoc {
            started: "2026-11-26T01:15:00.000Z".into(),
            ended: Some("2026-11-26T01:20:00.500Z".into()),
            status: "failed".into(),
            steps: vec![
                step(
                    "cassandra archive",
                    "tar_dir",
                    1500,
                    Some(serde_json::json!({"path": "/b/cassandra_x.tar", "bytes": 2048})),
                ),
                step(
                    "other archive",
                    "tar_dir",
                    500,
                    Some(serde_json::json!({"path": "/b/other.tar", "bytes": 10})),
                ),
                step("nodetool", "exec", 250, None),
                step("nodetool", "exec", 250, None),
            ],
            ..JournalDoc::default()
        };
        let text = render("cluster-hot-backup", &doc, Some(1234.0)).unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        let value = |name: &str, label: Option<(&str, &str)>| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Gauge(v) => v,
                    _ => panic!("{name} is not a gauge"),
                })
        };
        assert_eq!(value("runbook_last_run_success", None), Some(0.0));
        assert_eq!(value(LAST_SUCCESS, None), Some(1234.0));
        assert_eq!(
            value("runbook_last_run_duration_seconds", None),
            Some(300.5)
        );
        assert_eq!(
            value("runbook_archive_bytes", Some(("part", "cassandra"))),
            Some(2048.0)
        );
        assert_eq!(
            value("runbook_archive_bytes", Some(("part", "other archive"))),
            Some(10.0)
        );
        assert_eq!(
            value("runbook_step_duration_seconds", Some(("label", "nodetool"))),
            Some(0.5)
        );
        assert!(
            text.contains("# TYPE runbook_last_run_success gauge"),
            "{text}"
        );
        assert!(
            scrape
                .samples
                .iter()
                .all(|s| s.labels.get("workflow") == Some("cluster-hot-backup"))
        );
    }
}
