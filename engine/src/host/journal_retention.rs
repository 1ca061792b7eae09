//! Retention of run journals: at the end of each run, a workflow's journals
//! beyond the newest `journal_keep` runs, and those older than
//! `journal_max_age`, are removed, so the journal folder does not grow
//! forever (a nightly backup makes 365 journals a year).
//!
//! Never removed: the current run's journal; the journal of a run that has
//! not ended (`running`: still live, or killed and waiting for `runbook
//! recover`); a journal with an undo action still pending (a failed undo
//! that `recover` tries again); the newest journal of a real run (not a
//! plan), which `runbook status` shows; a file that cannot be read or that
//! another user could have written; other workflows' journals. The policy
//! comes from the workflow's config keys `journal_keep` and
//! `journal_max_age` when it declares them (the stock backup does; a site
//! sets them like any key), else [`DEFAULT_KEEP`] and [`DEFAULT_MAX_AGE`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::host::file_safety::{TrustedUse, check_trusted};
use crate::host::journal::JournalDoc;

/// Config key: how many runs' journals to keep (0: no limit by count).
pub const KEEP_KEY: &str = "journal_keep";
/// Config key: the age after which a journal goes ("90d"; "0s": no limit by age).
pub const MAX_AGE_KEY: &str = "journal_max_age";
/// Journals kept by count when the workflow does not say.
pub const DEFAULT_KEEP: u64 = 50;
/// Journals kept by age when the workflow does not say.
pub const DEFAULT_MAX_AGE: &str = "90d";

/// How many journals to keep, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The newest this many runs stay (0: no limit).
    pub keep: u64,
    /// Journals of runs started longer ago go (`None`: no limit).
    pub max_age: Option<Duration>,
}

impl Policy {
    /// The policy the run's effective config (as journaled) asks for.
    pub fn from_config(config: &serde_json::Value) -> Result<Policy, String> {
        let keep = match config.get(KEEP_KEY) {
            None => DEFAULT_KEEP,
            Some(value) => value
                .as_u64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| {
                    format!("config key `{KEEP_KEY}`: expected a whole number ≥ 0, got {value}")
                })?,
        };
        let age_text = match config.get(MAX_AGE_KEY) {
            None => DEFAULT_MAX_AGE.to_string(),
            Some(serde_json::Value::String(text)) => text.trim().to_string(),
            Some(other) => {
                return Err(format!(
                    "config key `{MAX_AGE_KEY}`: expected a duration like \"90d\", got {other}"
                ));
            }
        };
        let max_age = match age_text.as_str() {
            "" | "0" => None,
            text => Some(humantime::parse_duration(text).map_err(|e| {
                format!("config key `{MAX_AGE_KEY}`: {text:?}: {e} (expected e.g. \"90d\")")
            })?)
            .filter(|d| !d.is_zero()),
        };
        Ok(Policy { keep, max_age })
    }
}

/// What retention did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The journals removed.
    pub removed: Vec<PathBuf>,
    /// Journals that should have gone but are kept, and why.
    pub kept_because: Vec<(PathBuf, &'static str)>,
    /// What failed (a file that could not be removed).
    pub errors: Vec<String>,
}

/// The start time in a journal's file name `<%Y%m%dT%H%M%S%.3fZ>-<workflow>.json`,
/// if it is one of `workflow`'s.
fn journal_time(path: &Path, workflow: &str) -> Option<DateTime<Utc>> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".json")?;
    let (time, name) = stem.split_once('-')?;
    if name != workflow {
        return None;
    }
    NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%.3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Why a journal must stay whatever the policy says, if it must.
fn protected(doc: &JournalDoc) -> Option<&'static str> {
    if doc.status == "running" || doc.ended.is_none() {
        return Some("its run has not ended (live, or waiting for `runbook recover`)");
    }
    if doc
        .compensations
        .iter()
        .any(|c| c.state == "pending" || c.state == "failed")
    {
        return Some("an undo action is still pending (`runbook recover` tries it again)");
    }
    None
}

/// Applies `policy` to `workflow`'s journals in `dir`; `current` is this
/// run's journal, `now` the time ages are measured from.
pub fn apply(
    dir: &Path,
    workflow: &str,
    current: &Path,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut journals: Vec<(DateTime<Utc>, PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|path| journal_time(&path, workflow).map(|time| (time, path)))
        .collect();
    // Newest first: the name starts with the UTC start time.
    journals.sort_by(|a, b| b.cmp(a));
    let mut newest_real_run_seen = false;
    for (position, (started, path)) in journals.iter().enumerate() {
        if path == current {
            newest_real_run_seen |= true;
            continue;
        }
        let doc = match check_trusted(path, TrustedUse::Journal)
            .map_err(|e| e.to_string())
            .and_then(|()| std::fs::read_to_string(path).map_err(|e| e.to_string()))
            .and_then(|text| serde_json::from_str::<JournalDoc>(&text).map_err(|e| e.to_string()))
        {
            Ok(doc) => doc,
            // Not known to be finished, or not ours: never removed.
            Err(_) => continue,
        };
        let is_newest_real_run = !doc.dry_run && !newest_real_run_seen;
        newest_real_run_seen |= !doc.dry_run;
        let beyond_count = policy.keep > 0 && position as u64 >= policy.keep;
        let too_old = policy
            .max_age
            .is_some_and(|max| (now - *started).to_std().is_ok_and(|age| age > max));
        if !beyond_count && !too_old {
            continue;
        }
        if let Some(reason) = protected(&doc) {
            outcome.kept_because.push((path.clone(), reason));
            continue;
        }
        if is_newest_real_run {
            outcome.kept_because.push((
                path.clone(),
                "the newest real run's journal (`runbook status` shows it)",
            ));
            continue;
        }
        match std::fs::remove_file(path) {
            Ok(()) => outcome.removed.push(path.clone()),
            Err(e) => outcome
                .errors
                .push(format!("cannot remove the journal {}: {e}", path.display())),
        }
    }
    outcome
}

/// "90d" for whole days, else humantime's form ("36h").
fn age_text(age: Duration) -> String {
    let seconds = age.as_secs();
    if seconds.is_multiple_of(86_400) {
        format!("{}d", seconds / 86_400)
    } else {
        humantime::format_duration(age).to_string()
    }
}

/// At the end of a run (not a plan): applies the policy the run's config asks
/// for to its workflow's journals next to its own, and logs what went. A
/// failure is logged; it never changes the run's outcome.
pub fn after_run(journal: &crate::host::journal::Journal, workflow: &str) {
    let doc = journal.snapshot();
    if doc.dry_run {
        return;
    }
    let policy = match Policy::from_config(&doc.config) {
        Ok(policy) => policy,
        Err(e) => {
            tracing::error!("journal retention: {e}; no journal removed");
            return;
        }
    };
    let Some(dir) = journal.path().parent() else {
        return;
    };
    let outcome = apply(dir, workflow, journal.path(), &policy, Utc::now());
    for path in &outcome.removed {
        tracing::debug!(path = %path.display(), "journal retention: removed {}", path.display());
    }
    for (path, reason) in &outcome.kept_because {
        tracing::debug!("journal retention: kept {}: {reason}", path.display());
    }
    for error in &outcome.errors {
        tracing::warn!("journal retention: {error}");
    }
    if !outcome.removed.is_empty() {
        let limits = [
            (policy.keep > 0).then(|| format!("beyond the newest {}", policy.keep)),
            policy
                .max_age
                .map(|age| format!("older than {}", age_text(age))),
        ];
        let limits: Vec<String> = limits.into_iter().flatten().collect();
        tracing::info!(
            removed = outcome.removed.len(),
            "journal retention: removed {} of {workflow} in {} ({})",
            runbook_steps::runtime::wording::count(outcome.removed.len() as u64, "journal"),
            dir.display(),
            limits.join(" or ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_defaults_and_config_keys() {
        let default = Policy::from_config(&serde_json::json!({})).unwrap();
        assert_eq!(default.keep, 50);
        assert_eq!(default.max_age, Some(Duration::from_secs(90 * 86_400)));
        let off =
            Policy::from_config(&serde_json::json!({"journal_keep": 0, "journal_max_age": "0s"}))
                .unwrap();
        assert_eq!(
            off,
            Policy {
                keep: 0,
                max_age: None
            }
        );
        let bad = Policy::from_config(&serde_json::json!({"journal_max_age": "soon"})).unwrap_err();
        assert!(
            bad.starts_with("config key `journal_max_age`: \"soon\""),
            "{bad}"
        );
    }

    #[test]
    fn only_this_workflows_journal_names_count() {
        let t = journal_time(
            Path::new("/j/20261207T011500.112Z-cluster-hot-backup.json"),
            "cluster-hot-backup",
        );
        assert_eq!(t.unwrap().to_rfc3339(), "2026-12-07T01:15:00.112+00:00");
        assert!(
            journal_time(
                Path::new("/j/20261207T011500.112Z-hot-backup.json"),
                "backup"
            )
            .is_none()
        );
        assert!(
            journal_time(
                Path::new("/j/20261207T011500.112Z-backup.json.tmp"),
                "backup"
            )
            .is_none()
        );
        assert!(journal_time(Path::new("/j/backup.lock"), "backup").is_none());
    }
}
