//! The run journal: one JSON file per run, rewritten atomically after every
//! step, so a crash leaves a valid journal up to the last finished step.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::host::compensation::Compensation;
use crate::host::secrets::mask_json;

/// Items of a list in a step's result that the journal keeps.
pub const JOURNALED_ITEMS: usize = 100;

/// A copy of a step's result with every list longer than [`JOURNALED_ITEMS`]
/// cut to its first items, and beside it how many were left out
/// (`objects_not_journaled: 9900`). A result can list every object of a
/// bucket or file of a folder (10,000 and more); the journal is rewritten
/// after every step and copied when read, so whole lists made a restore into
/// a bucket hold 140 MiB. The workflow still gets the whole result; the
/// journal keeps what a reader needs (counts, bytes, paths, the first items).
/// Only the kept items are copied.
pub fn with_long_lists_cut(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut copy = serde_json::Map::new();
            for (key, item) in map {
                if let serde_json::Value::Array(items) = item
                    && items.len() > JOURNALED_ITEMS
                {
                    copy.insert(
                        format!("{key}_not_journaled"),
                        (items.len() - JOURNALED_ITEMS).into(),
                    );
                }
                copy.insert(key.clone(), with_long_lists_cut(item));
            }
            serde_json::Value::Object(copy)
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .take(JOURNALED_ITEMS)
                .map(with_long_lists_cut)
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The journal's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JournalDoc {
    /// The workflow's path (or `stock:NAME`).
    pub workflow: String,
    /// SHA-256 of the workflow's source.
    pub workflow_sha256: String,
    /// runbook's version.
    pub engine_version: String,
    /// The host name.
    pub host: String,
    /// The running process.
    pub pid: u32,
    /// True under `--dry-run`.
    pub dry_run: bool,
    /// Start time (UTC, RFC 3339).
    pub started: String,
    /// End time; absent while running or after a crash.
    pub ended: Option<String>,
    /// `running`, `success`, `failed` or `interrupted`.
    pub status: String,
    /// The error that failed the run, one line per cause.
    pub error: Option<String>,
    /// The effective config (secrets masked).
    pub config: serde_json::Value,
    /// One record per step call, in completion order.
    pub steps: Vec<StepRecord>,
    /// Undo actions registered with `undo()`, and their state.
    #[serde(default)]
    pub compensations: Vec<Compensation>,
}

/// One step call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepRecord {
    /// The label.
    pub label: String,
    /// The step's name.
    pub step: String,
    /// `file:line:column` of the call.
    pub position: String,
    /// The options as given (secrets masked).
    pub options: serde_json::Value,
    /// Start time.
    pub started: String,
    /// Wall time.
    pub duration_ms: u64,
    /// `ok`, `failed` or `dry_run`.
    pub status: String,
    /// The result map, on success.
    pub result: Option<serde_json::Value>,
    /// The error, on failure.
    pub error: Option<String>,
}

/// A journal being written.
pub struct Journal {
    path: PathBuf,
    doc: Mutex<JournalDoc>,
    /// With `--journal-group`: the group that may read the journal (0640).
    group: Option<nix::unistd::Gid>,
}

/// UTC now in RFC 3339 with milliseconds.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Journal {
    /// Creates `<dir>/<UTC time>-<workflow name>.json` and writes the header.
    pub fn create(
        dir: &Path,
        workflow_name: &str,
        doc: JournalDoc,
        group: Option<nix::unistd::Gid>,
    ) -> std::io::Result<Self> {
        let file_name = format!(
            "{}-{}.json",
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            workflow_name
        );
        let journal = Journal {
            path: dir.join(file_name),
            doc: Mutex::new(doc),
            group,
        };
        journal.write()?;
        Ok(journal)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Updates the document and rewrites the file.
    pub fn update(&self, change: impl FnOnce(&mut JournalDoc)) {
        // Parallel branches update the journal concurrently: change and write
        // under one lock, so writes never interleave.
        let mut doc = self.doc.lock().expect("journal lock poisoned");
        change(&mut doc);
        if let Err(error) = self.write_doc(&doc) {
            tracing::warn!("cannot write the journal {}: {error}", self.path.display());
        }
    }

    /// Adds a step record (its result's long lists already cut: see
    /// [`with_long_lists_cut`]).
    pub fn record_step(&self, record: StepRecord) {
        self.update(|doc| doc.steps.push(record));
    }

    fn write(&self) -> std::io::Result<()> {
        let doc = self.doc.lock().expect("journal lock poisoned");
        self.write_doc(&doc)
    }

    fn write_doc(&self, doc: &JournalDoc) -> std::io::Result<()> {
        let mut value = serde_json::to_value(doc).map_err(std::io::Error::other)?;
        value = mask_json(&value);
        let text = serde_json::to_vec_pretty(&value).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some(gid) = self.group {
            use std::os::unix::fs::PermissionsExt;
            nix::unistd::fchown(&file, None, Some(gid)).map_err(std::io::Error::from)?;
            file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
        }
        file.write_all(&text)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        // The rename is durable only once the folder is synced: compensations
        // must be on disk before the side effect they undo happens.
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// A copy of the document.
    pub fn snapshot(&self) -> JournalDoc {
        self.doc.lock().expect("journal lock poisoned").clone()
    }

    /// Opens an existing journal (for recovery).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let doc: JournalDoc = serde_json::from_str(&text).map_err(std::io::Error::other)?;
        // Keep the group an earlier run gave it.
        let group = std::fs::metadata(path).ok().and_then(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.mode() & 0o040 != 0).then(|| nix::unistd::Gid::from_raw(m.gid()))
        });
        Ok(Journal {
            path: path.to_path_buf(),
            doc: Mutex::new(doc),
            group,
        })
    }
}

/// The default journal folder: `/var/lib/runbook` as root, else
/// `$XDG_STATE_HOME/runbook` (`~/.local/state/runbook`).
pub fn default_journal_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/runbook");
    }
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return PathBuf::from(state).join("runbook");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/state/runbook")
}

/// The host name, for the journal (and scripts' `hostname()`).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_of_a_result_are_cut_and_say_how_many_were_left_out() {
        let objects: Vec<_> = (0..10_000)
            .map(|i| serde_json::json!({ "key": format!("k{i}") }))
            .collect();
        let removed: Vec<_> = (0..3).map(|i| format!("r{i}")).collect();
        let result = serde_json::json!({
            "uploaded": 10_000,
            "objects": objects,
            "removed": removed,
            "nested": { "files": (0..101).collect::<Vec<_>>() },
        });
        let result = with_long_lists_cut(&result);
        assert_eq!(result["objects"].as_array().unwrap().len(), JOURNALED_ITEMS);
        assert_eq!(result["objects"][0]["key"], "k0");
        assert_eq!(result["objects_not_journaled"], 10_000 - JOURNALED_ITEMS);
        assert_eq!(result["removed"], serde_json::json!(["r0", "r1", "r2"]));
        assert!(result.get("removed_not_journaled").is_none());
        assert_eq!(
            result["nested"]["files"].as_array().unwrap().len(),
            JOURNALED_ITEMS
        );
        assert_eq!(result["nested"]["files_not_journaled"], 1);
        assert_eq!(result["uploaded"], 10_000);
    }
}
