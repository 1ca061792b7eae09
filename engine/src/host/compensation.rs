//! Compensations: undo actions that survive a crash.
//!
//! `undo(#{ label, step, options })` or `undo(#{ label, remove: PATH })`
//! records, in the journal and fsynced *before* the side effect it undoes
//! happens, what must be done if the run does not finish normally (clear a
//! Cassandra snapshot tag, delete an Elasticsearch snapshot, remove a staging
//! folder or a `.partial` file). It also registers the action as a deferred
//! cleanup of the current frame. `dismiss(id)` says the action is no longer
//! needed (e.g. the backup set is complete). When the frame ends, a pending
//! action runs and is marked `done`; one that fails stays `pending` with its
//! error, and `runbook recover` tries it again.
//!
//! If the process dies instead (SIGKILL, power cut, OOM kill), the journal is
//! left with status `running` and pending compensations; the next run, or
//! `runbook recover`, finds it and carries them out (see `run::recovery`).
//! A secret in a step action's options is journaled as `{"$secret": "NAME"}`
//! and read again when the action is carried out.

use serde::{Deserialize, Serialize};

/// What a compensation does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Action {
    /// Call a step with these options.
    Step {
        /// The step's name.
        step: String,
        /// Its options.
        options: serde_json::Value,
        /// How long it may take (a humantime duration; default [`ACTION_TIMEOUT`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout: Option<String>,
    },
    /// Remove a file or folder (recursively), if it exists.
    Remove {
        /// The path.
        remove: String,
    },
}

/// One recorded compensation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Compensation {
    /// Its number within the run.
    pub id: i64,
    /// What it is for, e.g. "clear Cassandra snapshot cassandra_20261126_01h15m00s".
    pub label: String,
    /// What to do.
    pub action: Action,
    /// `pending`, `done` or `dismissed` (a failed attempt leaves it
    /// `pending` with `error` set; journals of older versions may say `failed`).
    pub state: String,
    /// Where the script registered it.
    pub position: String,
    /// The error of the last attempt, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why an action could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The step named by the action does not exist.
    #[error("no step named `{0}`")]
    UnknownStep(String),
    /// The options do not fit the step.
    #[error("step {step}: {message}")]
    Options {
        /// The step.
        step: String,
        /// What is wrong.
        message: String,
    },
    /// The step failed.
    #[error("step {step} failed: {error}")]
    Step {
        /// The step.
        step: String,
        /// Its error.
        error: runbook_steps::StepError,
    },
    /// The path could not be removed.
    #[error("cannot remove {path}: {source}")]
    Remove {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A secret the action needs cannot be read again.
    #[error(transparent)]
    Secret(#[from] crate::host::secrets::SecretError),
    /// The path is one runbook never removes.
    #[error("refusing to remove {0}")]
    Refused(String),
}

/// How long a compensation step may take unless its `timeout` says otherwise.
const ACTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Carries out `action` (outside any script; used by cleanups and recovery).
pub async fn carry_out(action: &Action, label: &str, dry_run: bool) -> Result<(), ActionError> {
    match action {
        Action::Step {
            step,
            options,
            timeout,
        } => run_step(step, options, timeout.as_deref(), label, dry_run).await,
        Action::Remove { remove } => remove_path(remove, label, dry_run),
    }
}

/// Runs the step `step` with `options` (its secrets read again), within
/// `timeout` (default [`ACTION_TIMEOUT`]).
async fn run_step(
    step: &str,
    options: &serde_json::Value,
    timeout: Option<&str>,
    label: &str,
    dry_run: bool,
) -> Result<(), ActionError> {
    let entry =
        runbook_steps::find_step(step).ok_or_else(|| ActionError::UnknownStep(step.to_string()))?;
    // Secrets are journaled by name: read them again now.
    let options = crate::host::secrets::resolve_references(options)?;
    let prepared = entry.prepare(options).map_err(|e| ActionError::Options {
        step: step.to_string(),
        message: e.message,
    })?;
    if dry_run {
        tracing::info!(
            "{label}: [dry-run] would {}",
            crate::host::secrets::mask(&prepared.description)
        );
        return Ok(());
    }
    let allowed = timeout
        .and_then(|text| humantime::parse_duration(text).ok())
        .unwrap_or(ACTION_TIMEOUT);
    let ctx = runbook_steps::StepContext {
        deadline: Some(tokio::time::Instant::now() + allowed),
        ..runbook_steps::StepContext::detached(label)
    };
    prepared
        .run(ctx)
        .await
        .map(|_| ())
        .map_err(|error| ActionError::Step {
            step: step.to_string(),
            error,
        })
}

/// Removes `remove` and its `.partial` file, whichever exist (folders
/// recursively); never `/`, an empty or a relative path.
fn remove_path(remove: &str, label: &str, dry_run: bool) -> Result<(), ActionError> {
    let path = std::path::Path::new(remove);
    if remove.is_empty() || path == std::path::Path::new("/") || !path.is_absolute() {
        return Err(ActionError::Refused(remove.to_string()));
    }
    // Files are written to `<path>.partial` and renamed: a crash
    // between the two leaves the partial file, which goes too.
    let partial = std::path::PathBuf::from(format!("{remove}.partial"));
    for target in [path, partial.as_path()] {
        let Ok(metadata) = target.symlink_metadata() else {
            continue;
        };
        if dry_run {
            tracing::info!("{label}: [dry-run] would remove {}", target.display());
            continue;
        }
        let removed = if metadata.is_dir() {
            std::fs::remove_dir_all(target)
        } else {
            std::fs::remove_file(target)
        };
        if let Err(e) = removed
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(ActionError::Remove {
                path: target.display().to_string(),
                source: e,
            });
        }
    }
    Ok(())
}
