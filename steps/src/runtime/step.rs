//! The contract between a step and the engine.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::error::StepError;
use crate::runtime::progress::ProgressMode;

/// One native operation. Implement it in one file, then add one line to the
/// crate's `registry` (`all_steps`, at the top of the crate).
pub trait Step: 'static {
    /// The function name scripts call, e.g. `"exec"`.
    const NAME: &'static str;
    /// The step's documentation, printed by `runbook steps NAME` and rendered into
    /// `docs/steps.md`. First line: a one-line summary. Then sections `Options:`,
    /// `Result:` and `Example:`.
    const DOC: &'static str;
    /// True when the step looks at [`StepContext::deadline`] itself and ends
    /// cleanly (e.g. deletes what it started) before the engine cuts it off.
    const HANDLES_TIMEOUT: bool = false;

    /// The step's options, deserialized from the script's map. Use
    /// `#[serde(deny_unknown_fields)]` so a typo is an error.
    type Options: DeserializeOwned + Send + 'static;
    /// What the step returns to the script.
    type Output: Serialize + Send + 'static;

    /// What the step would do, in one line, for dry-run output and logs.
    fn describe(options: &Self::Options) -> String;

    /// A short label for logs and the journal when the script gives none.
    fn label(_options: &Self::Options) -> Option<String> {
        None
    }

    /// The timeout when the script gives none.
    fn default_timeout(_options: &Self::Options) -> Option<Duration> {
        None
    }

    /// What happens under `--dry-run`: skip with a placeholder result, or run
    /// (for steps that only read, or that check read-only parts for real and
    /// skip the rest by looking at [`StepContext::dry_run`]).
    fn dry_run(options: &Self::Options) -> DryRun<Self::Output>;

    /// True when running the step (for real) may change something: a file, a
    /// snapshot, an object. The engine uses it for the exit code: a failed run
    /// exits 2 ("nothing ran") only when no changing step started. The default
    /// errs on the safe side; steps that only read say so.
    fn changes(_options: &Self::Options) -> bool {
        true
    }

    /// Does the work.
    fn run(
        options: Self::Options,
        ctx: StepContext,
    ) -> impl Future<Output = Result<Self::Output, StepError>> + Send;
}

/// A step's behaviour under `--dry-run`.
pub enum DryRun<T> {
    /// Do nothing; return this plausible placeholder so the script runs on.
    Skip(T),
    /// Call `run` with `ctx.dry_run == true`: the step only reads.
    Run,
}

/// What the engine gives a running step.
#[derive(Clone, Debug)]
pub struct StepContext {
    /// The label shown in logs and the journal.
    pub label: String,
    /// True under `--dry-run` (only seen by steps whose [`Step::dry_run`] is `Run`).
    pub dry_run: bool,
    /// Cancelled when the run is interrupted; long work checks it and stops.
    pub cancel: CancellationToken,
    /// When the step's timeout expires, if it has one.
    pub deadline: Option<Instant>,
    /// How to show progress on long work.
    pub progress: ProgressMode,
}

impl StepContext {
    /// A context for tests and for calling steps outside the engine.
    pub fn detached(label: &str) -> Self {
        StepContext {
            label: label.to_string(),
            dry_run: false,
            cancel: CancellationToken::new(),
            deadline: None,
            progress: ProgressMode::Off,
        }
    }

    /// Time left before the deadline (`None`: no deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}
