//! What every engine function shares during one run.

use std::sync::Mutex;

use rhai::Map;
use runbook_steps::progress::ProgressMode;
use tokio_util::sync::CancellationToken;

use crate::config::Overrides;
use crate::journal::{Journal, StepRecord};

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
}

impl RunState {
    /// Records a step call in the journal, if there is one.
    pub fn record_step(&self, record: StepRecord) {
        if let Some(journal) = &self.journal {
            journal.record_step(record);
        }
    }
}
