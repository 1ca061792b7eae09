//! Long blocking work (reading and writing archives) on a worker thread, with
//! the step's cancellation, deadline and progress mode carried along.
//!
//! The async step hands a [`WorkControl`] to `spawn_blocking`; the blocking
//! loop calls [`WorkControl::check`] often (it is an atomic load and a clock
//! read) and stops cleanly, removing what it half wrote. If the engine drops
//! the step's future (its own timeout), the guard from
//! [`WorkControl::from_context`] cancels the worker too, so no thread keeps
//! writing after the step is gone.

use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::runtime::error::{ErrorKind, StepError};
use crate::runtime::progress::ProgressMode;
use crate::runtime::step::StepContext;

/// Why blocking work stopped before the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stop {
    /// The run was interrupted.
    #[error("interrupted")]
    Cancelled,
    /// The step's timeout expired after this long.
    #[error("timed out after {}", crate::runtime::error::to_the_millisecond(*.0))]
    TimedOut(Duration),
}

impl Stop {
    /// The error kind scripts see.
    pub fn kind(self) -> ErrorKind {
        match self {
            Stop::Cancelled => ErrorKind::Cancelled,
            Stop::TimedOut(_) => ErrorKind::Timeout,
        }
    }
}

/// What blocking work needs from the step context.
#[derive(Clone, Debug)]
pub struct WorkControl {
    /// Label for progress display.
    pub label: String,
    /// Cancelled on interruption (or when the step is dropped).
    pub cancel: CancellationToken,
    /// When to give up.
    pub deadline: Option<Instant>,
    /// How to show progress.
    pub progress: ProgressMode,
    started: Instant,
}

impl WorkControl {
    /// A control with no deadline, no progress and a fresh cancellation token:
    /// for tests and for calling the blocking APIs directly.
    pub fn new(label: &str) -> WorkControl {
        WorkControl {
            label: label.to_string(),
            cancel: CancellationToken::new(),
            deadline: None,
            progress: ProgressMode::Off,
            started: Instant::now(),
        }
    }

    /// The control for a step run, and a guard that cancels the work when the
    /// step's future is dropped: keep the guard alive in the async part.
    pub fn from_context(ctx: &StepContext) -> (WorkControl, DropGuard) {
        let cancel = ctx.cancel.child_token();
        let guard = cancel.clone().drop_guard();
        let control = WorkControl {
            label: ctx.label.clone(),
            cancel,
            deadline: ctx.deadline.map(|d| d.into_std()),
            progress: ctx.progress,
            started: Instant::now(),
        };
        (control, guard)
    }

    /// `Err` when the work must stop now.
    pub fn check(&self) -> Result<(), Stop> {
        if self.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        if let Some(deadline) = self.deadline
            && Instant::now() >= deadline
        {
            return Err(Stop::TimedOut(
                deadline.saturating_duration_since(self.started),
            ));
        }
        Ok(())
    }
}

/// Runs `work` on the blocking pool and converts its error into a [`StepError`].
pub async fn run_blocking<T, E>(
    step: &'static str,
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, StepError>
where
    T: Send + 'static,
    E: Into<StepError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(StepError::new(
            ErrorKind::Internal,
            format!("{step} worker thread panicked"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_cancellation_and_deadline() {
        let mut control = WorkControl::new("t");
        assert_eq!(control.check(), Ok(()));
        control.deadline = Some(Instant::now() - Duration::from_millis(1));
        assert_eq!(control.check().unwrap_err().kind(), "timeout");
        control.cancel.cancel();
        assert_eq!(control.check(), Err(Stop::Cancelled));
    }

    #[test]
    fn dropping_the_guard_cancels_the_work() {
        let ctx = StepContext::detached("t");
        let (control, guard) = WorkControl::from_context(&ctx);
        drop(guard);
        assert_eq!(control.check(), Err(Stop::Cancelled));
        assert!(
            !ctx.cancel.is_cancelled(),
            "the run itself is not cancelled"
        );
    }
}
