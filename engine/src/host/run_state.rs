//! What every engine function shares during one run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rhai::Map;
use runbook_steps::runtime::progress::ProgressMode;
use tokio_util::sync::CancellationToken;

use crate::host::compensation::{Action, Compensation};
use crate::host::config::Overrides;
use crate::host::journal::{Journal, StepRecord};
use runbook_steps::ErrorKind;

/// Shared state of one run.
pub struct RunState {
    /// `--dry-run` / `plan`.
    pub dry_run: bool,
    /// Cancelled on SIGINT/SIGTERM: no new step starts, running ones stop.
    pub cancel: CancellationToken,
    /// The tokio runtime steps run on.
    pub runtime: tokio::runtime::Handle,
    /// The journal (absent for `check`).
    pub journal: Option<Journal>,
    /// Command-line config overrides.
    pub overrides: Overrides,
    /// Keys declared by `config()` calls so far, and their effective values.
    pub config: Mutex<Map>,
    /// True once `config()` was called.
    pub config_declared: Mutex<bool>,
    /// How steps show progress.
    pub progress: ProgressMode,
    /// The workflow's display name (path or `stock:NAME`), for positions.
    pub workflow_display: String,
    /// SHA-256 of the workflow's source.
    pub workflow_sha256: String,
    /// The workflow's name (file stem, or the stock name): what its backup
    /// manifests record as their `origin`, so retention knows its own sets.
    pub workflow_name: String,
    /// Bound on Rhai operations (`--max-operations`).
    pub max_operations: u64,
    /// Compensations registered with `scope: "run"`: carried out when the whole
    /// run ends (after the main cleanups), unless dismissed.
    pub run_compensations: Mutex<Vec<i64>>,
    /// True once a step or file function that may change something started
    /// for real: from then on a failure exits 1, never 2 ("nothing ran").
    pub changed: AtomicBool,
}

impl RunState {
    /// Notes that something may have been changed (not under dry-run, and not
    /// by cleanups, which put things back).
    pub fn note_change(&self) {
        if !self.dry_run && !in_cleanup() {
            self.changed.store(true, Ordering::SeqCst);
        }
    }

    /// True once something may have been changed.
    pub fn has_changed(&self) -> bool {
        self.changed.load(Ordering::SeqCst)
    }

    /// Records a step call in the journal, if there is one.
    pub fn record_step(&self, record: StepRecord) {
        if let Some(journal) = &self.journal {
            journal.record_step(record);
        }
    }
}

impl RunState {
    /// Records a compensation (fsynced before returning) and returns its id.
    pub fn add_compensation(&self, label: String, action: Action, position: String) -> i64 {
        let mut id = 0;
        if let Some(journal) = &self.journal {
            journal.update(|doc| {
                id = doc.compensations.len() as i64 + 1;
                doc.compensations.push(Compensation {
                    id,
                    label,
                    action,
                    state: "pending".to_string(),
                    position,
                    error: None,
                });
            });
        }
        id
    }

    /// Marks compensation `id` as no longer needed.
    pub fn dismiss_compensation(&self, id: i64) -> bool {
        let mut found = false;
        if let Some(journal) = &self.journal {
            journal.update(|doc| {
                if let Some(c) = doc
                    .compensations
                    .iter_mut()
                    .find(|c| c.id == id && c.state == "pending")
                {
                    c.state = "dismissed".to_string();
                    found = true;
                }
            });
        }
        found
    }

    /// Carries out compensation `id` if it is still pending (a frame ended).
    pub fn run_compensation(&self, id: i64) -> Result<(), Box<rhai::EvalAltResult>> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let Some(compensation) = journal
            .snapshot()
            .compensations
            .into_iter()
            .find(|c| c.id == id)
        else {
            return Ok(());
        };
        if compensation.state != "pending" {
            return Ok(());
        }
        // "undoing" only for a rollback: the frame failed or the run was
        // interrupted. An undo action run because its frame ended normally
        // (a snapshot cleared once archived) is cleanup.
        let rollback = rolling_back() || self.cancel.is_cancelled();
        let label = crate::host::secrets::mask(&compensation.label);
        if rollback {
            tracing::info!(undo = %label, rollback = true, "{label}: undoing");
        } else {
            tracing::info!(undo = %label, rollback = false, "{label}: cleaning up");
        }
        let outcome = self.runtime.block_on(crate::host::compensation::carry_out(
            &compensation.action,
            &compensation.label,
            self.dry_run,
        ));
        let (state, error) = match &outcome {
            Ok(()) => ("done", None),
            // Stays pending with its reason: `runbook recover` tries it again.
            Err(e) => ("pending", Some(crate::host::secrets::mask(&e.to_string()))),
        };
        journal.update(|doc| {
            if let Some(c) = doc.compensations.iter_mut().find(|c| c.id == id) {
                c.state = state.to_string();
                c.error = error.clone();
            }
        });
        outcome.map_err(|e| {
            crate::host::script_error::runtime_error(
                "undo",
                ErrorKind::Undo,
                format!("{}: {e}", compensation.label),
                compensation.position.clone(),
                rhai::Position::NONE,
            )
        })
    }
}

thread_local! {
    /// Whether this thread runs deferred cleanups (see [`in_cleanup`]).
    static IN_CLEANUP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Whether the cleanups this thread runs follow a failure (see [`rolling_back`]).
    static ROLLING_BACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True while this thread runs the cleanups of a frame that failed: its undo
/// actions are a rollback ("undoing"), not the normal end of the work
/// ("cleaning up").
pub fn rolling_back() -> bool {
    ROLLING_BACK.with(std::cell::Cell::get)
}

/// Marks the cleanups this thread runs as a rollback, or not.
pub fn set_rolling_back(value: bool) {
    ROLLING_BACK.with(|c| c.set(value));
}

/// True while this thread runs deferred cleanups: steps still run then, even
/// after an interruption, and what they change is cleanup, not a change of the
/// run's own. Kept here, not in `cleanup`, which builds on the run state.
pub fn in_cleanup() -> bool {
    IN_CLEANUP.with(std::cell::Cell::get)
}

/// Marks this thread as running cleanups (for parallel branches started by a cleanup).
pub fn set_in_cleanup(value: bool) {
    IN_CLEANUP.with(|c| c.set(value));
}
