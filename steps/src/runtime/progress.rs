//! Progress on long work: a bar on a terminal, periodic log lines otherwise.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown; the engine picks it from the terminal and `-q`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// Nothing (quiet runs, tests).
    Off,
    /// An `info` log line every [`LOG_INTERVAL`].
    Log,
    /// A live bar on stderr (only when stderr is a terminal).
    Bar,
}

/// How often [`ProgressMode::Log`] prints a line.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Progress of one long operation counted in bytes. Cheap to update from a hot
/// loop: the bar is rate-limited by indicatif, log lines by [`LOG_INTERVAL`].
pub struct Progress {
    label: String,
    total: u64,
    bar: Option<ProgressBar>,
    log: Mutex<LogState>,
    mode: ProgressMode,
}

struct LogState {
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Starts progress for `total` bytes (0 when unknown).
    pub fn new(mode: ProgressMode, label: &str, total: u64) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("static progress template is valid")
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            total,
            bar,
            log: Mutex::new(LogState {
                done: 0,
                started: now,
                last_line: now,
            }),
            mode,
        }
    }

    /// Records `bytes` more done.
    pub fn inc(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            return;
        }
        if self.mode != ProgressMode::Log {
            return;
        }
        let mut state = self.log.lock().expect("progress lock poisoned");
        state.done += bytes;
        if state.last_line.elapsed() >= LOG_INTERVAL {
            state.last_line = Instant::now();
            let rate = state.done as f64 / state.started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                "{}: {} of {} ({}/s)",
                self.label,
                HumanBytes(state.done),
                HumanBytes(self.total),
                HumanBytes(rate as u64)
            );
        }
    }

    /// Ends the display.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
