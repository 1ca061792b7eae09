//! The one generic adapter between Rhai and every step: a Rhai map becomes
//! the step's options (serde), the step runs on tokio with the common options
//! (`timeout`, `retries`, `retry_delay`, `label`), and the result comes back as
//! a map. Every call is logged and recorded in the journal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult, Map, NativeCallContext};
use runbook_steps::registry::PreparedStep;
use runbook_steps::{StepContext, StepEntry, StepError};

use crate::host::journal::with_long_lists_cut;
use crate::host::journal::{StepRecord, timestamp};
use crate::host::run_state::RunState;
use crate::host::script_error::{describe_position, runtime_error, step_error_map};
use crate::host::secrets::{mask, mask_json};
use runbook_steps::ErrorKind;

/// Extra time a step that handles its own timeout gets before the engine cuts it off.
const OWN_TIMEOUT_GRACE: Duration = Duration::from_secs(60);
/// Time a cancelled or timed-out step gets to clean up (remove partial files) before it is abandoned.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// The options every step accepts, handled here rather than by the step.
#[derive(Debug, Default)]
struct CommonOptions {
    timeout: Option<Duration>,
    retries: u32,
    retry_delay: Duration,
    label: Option<String>,
}

fn take_common(
    options: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<CommonOptions, String> {
    let mut common = CommonOptions {
        retry_delay: Duration::from_secs(5),
        ..CommonOptions::default()
    };
    let duration = |key: &str, value: serde_json::Value| -> Result<Duration, String> {
        match value {
            serde_json::Value::String(text) => humantime::parse_duration(&text).map_err(|e| {
                format!("option `{key}`: {e} (expected e.g. \"30s\", \"10m\", \"2h\")")
            }),
            serde_json::Value::Number(n) if n.as_u64().is_some() => {
                Ok(Duration::from_secs(n.as_u64().unwrap_or(0)))
            }
            other => Err(format!(
                "option `{key}`: expected a duration like \"30s\", got {other}"
            )),
        }
    };
    if let Some(value) = options.remove("timeout") {
        common.timeout = Some(duration("timeout", value)?);
    }
    if let Some(value) = options.remove("retry_delay") {
        common.retry_delay = duration("retry_delay", value)?;
    }
    if let Some(value) = options.remove("retries") {
        common.retries = value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("option `retries`: expected a whole number, got {value}"))?;
    }
    if let Some(value) = options.remove("label") {
        common.label = Some(match value {
            serde_json::Value::String(s) => s,
            other => return Err(format!("option `label`: expected a string, got {other}")),
        });
    }
    Ok(common)
}

/// Calls `entry` with the script's `options` map.
pub fn call_step(
    state: &Arc<RunState>,
    entry: &'static StepEntry,
    context: &NativeCallContext,
    options: Map,
) -> Result<Dynamic, Box<EvalAltResult>> {
    let position = context.call_position();
    let position_text = describe_position(
        context.call_source().or(Some(&state.workflow_display)),
        position,
    );
    let options_error = |message: String| {
        runtime_error(
            entry.name,
            ErrorKind::Options,
            format!("step {}: {message}", entry.name),
            position_text.clone(),
            position,
        )
    };
    let mut json = options_json(options).map_err(options_error)?;
    let recorded_options = mask_json(&serde_json::Value::Object(json.clone()));
    let common = take_common(&mut json).map_err(options_error)?;
    let step_options = serde_json::Value::Object(json);
    let prepared = prepare(entry, step_options.clone()).map_err(options_error)?;
    let description = mask(&prepared.description);
    let call = StepCall {
        state,
        entry,
        description: description.clone(),
        label: common
            .label
            .clone()
            .or_else(|| prepared.label.clone())
            .unwrap_or_else(|| entry.name.to_string()),
        position,
        position_text: position_text.clone(),
        recorded_options,
        in_cleanup: crate::host::run_state::in_cleanup(),
        started_at: chrono::Utc::now(),
        started: Instant::now(),
    };

    if !call.in_cleanup && state.cancel.is_cancelled() {
        return Err(call.fail(StepError::cancelled()));
    }
    if state.dry_run
        && let Some(placeholder) = prepared.dry_run_placeholder
    {
        call.log().dry_run();
        let result = with_dry_run_flag(placeholder);
        state.record_step(call.record("dry_run", Some(&result), None));
        return to_dynamic(result, &position_text, position);
    }
    call.log().started();
    if prepared.changes {
        state.note_change();
    }
    let result = call
        .run_with_retries(prepared, &step_options, &common)
        .map_err(|error| match error {
            Retried::Failed(error) => call.fail(error),
            Retried::Options(message) => options_error(message),
        })?;
    call.succeed(result)
}

/// The script's options map as JSON, or what is wrong with it.
fn options_json(options: Map) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let json = rhai::serde::from_dynamic::<serde_json::Value>(&options.into())
        .map_err(|e| format!("options cannot be read: {e}"))?;
    match json {
        serde_json::Value::Object(json) => Ok(json),
        _ => Err("options must be a map".to_string()),
    }
}

/// The step with its own options parsed, or what is wrong with them, naming
/// the key unless serde's message already does.
fn prepare(entry: &StepEntry, step_options: serde_json::Value) -> Result<PreparedStep, String> {
    entry.prepare(step_options).map_err(|e| {
        if e.key.is_empty() || e.message.contains(&format!("`{}`", e.key)) {
            e.message
        } else {
            format!("option `{}`: {}", e.key, e.message)
        }
    })
}

/// Why [`StepCall::run_with_retries`] gave up.
enum Retried {
    /// The last attempt failed.
    Failed(StepError),
    /// The options, parsed again for a retry, were refused.
    Options(String),
}

/// One step call under way: what its log lines, journal record and error
/// map name.
struct StepCall<'a> {
    state: &'a Arc<RunState>,
    entry: &'static StepEntry,
    label: String,
    /// What the call does (masked), for its log line.
    description: String,
    position: rhai::Position,
    position_text: String,
    /// The options as the journal records them (secrets masked).
    recorded_options: serde_json::Value,
    /// Called from a `defer`red cleanup or an `undo()`: runs even after an
    /// interruption.
    in_cleanup: bool,
    started_at: chrono::DateTime<chrono::Utc>,
    started: Instant,
}

impl StepCall<'_> {
    /// Its log lines ([`crate::host::step_log`]).
    fn log(&self) -> crate::host::step_log::StepLog<'_> {
        crate::host::step_log::StepLog {
            label: &self.label,
            step: self.entry.name,
            description: &self.description,
        }
    }

    /// The journal record of this call, ending now.
    fn record(
        &self,
        status: &str,
        result: Option<&serde_json::Value>,
        error: Option<String>,
    ) -> StepRecord {
        StepRecord {
            label: mask(&self.label),
            step: self.entry.name.to_string(),
            position: self.position_text.clone(),
            options: self.recorded_options.clone(),
            started: timestamp(self.started_at),
            duration_ms: self.started.elapsed().as_millis() as u64,
            status: status.to_string(),
            // Cut before masking: no whole copy of a long list is made.
            result: result.map(|r| mask_json(&with_long_lists_cut(r))),
            error,
        }
    }

    /// Logs and records the failure; the error raised into the script.
    fn fail(&self, error: StepError) -> Box<EvalAltResult> {
        let map = step_error_map(self.entry.name, &self.label, &error, &self.position_text);
        self.log().failed(
            &error.to_string(),
            error.error_kind().as_str(),
            self.started.elapsed(),
        );
        self.state
            .record_step(self.record("failed", None, Some(mask(&error.to_string()))));
        EvalAltResult::ErrorRuntime(map.into(), self.position).into()
    }

    /// Logs and records the success; the result as the script sees it.
    fn succeed(&self, result: serde_json::Value) -> Result<Dynamic, Box<EvalAltResult>> {
        let result = if self.state.dry_run {
            with_dry_run_flag(result)
        } else {
            result
        };
        self.log().succeeded(&result, self.started.elapsed());
        self.state
            .record_step(self.record("ok", Some(&result), None));
        to_dynamic(result, &self.position_text, self.position)
    }

    /// Runs the step, again after a failure up to `retries` times (not
    /// after a permanent error or an interruption), `retry_delay` apart.
    fn run_with_retries(
        &self,
        prepared: PreparedStep,
        step_options: &serde_json::Value,
        common: &CommonOptions,
    ) -> Result<serde_json::Value, Retried> {
        let timeout = common.timeout.or(prepared.default_timeout);
        let mut attempt = 0;
        let mut prepared = Some(prepared);
        loop {
            attempt += 1;
            // A step runs once per PreparedStep: parse again for a retry.
            let this_attempt = match prepared.take() {
                Some(p) => p,
                None => self
                    .entry
                    .prepare(step_options.clone())
                    .map_err(|e| Retried::Options(e.message))?,
            };
            match self.attempt(this_attempt, timeout) {
                Ok(result) => return Ok(result),
                Err(error)
                    if attempt <= common.retries
                        && error.error_kind() != ErrorKind::Cancelled
                        && !error.is_permanent()
                        && (self.in_cleanup || !self.state.cancel.is_cancelled()) =>
                {
                    tracing::warn!(
                        "{}: attempt {attempt} of {} failed: {}; retrying in {}",
                        mask(&self.label),
                        common.retries + 1,
                        mask(&error.to_string()),
                        humantime::format_duration(common.retry_delay)
                    );
                    std::thread::sleep(common.retry_delay);
                }
                Err(error) => return Err(Retried::Failed(error)),
            }
        }
    }

    /// One attempt, on the run's tokio runtime, cut off at `timeout` (plus
    /// a grace for steps that handle their own timeout).
    fn attempt(
        &self,
        prepared: PreparedStep,
        timeout: Option<Duration>,
    ) -> Result<serde_json::Value, StepError> {
        let cancel = if self.in_cleanup {
            // Cleanups must run after an interruption: they get their own token.
            tokio_util::sync::CancellationToken::new()
        } else {
            self.state.cancel.child_token()
        };
        let ctx = StepContext {
            label: self.label.clone(),
            dry_run: self.state.dry_run,
            cancel: cancel.clone(),
            deadline: timeout.map(|t| tokio::time::Instant::now() + t),
            progress: self.state.progress,
        };
        let hard_limit = timeout.map(|t| {
            if self.entry.handles_timeout {
                t + OWN_TIMEOUT_GRACE
            } else {
                t
            }
        });
        self.state
            .runtime
            .block_on(run_with_limit(prepared, ctx, cancel, hard_limit))
    }
}

async fn run_with_limit(
    prepared: PreparedStep,
    ctx: StepContext,
    cancel: tokio_util::sync::CancellationToken,
    limit: Option<Duration>,
) -> Result<serde_json::Value, StepError> {
    let run = prepared.run(ctx);
    tokio::pin!(run);
    let Some(limit) = limit else {
        return run.await;
    };
    tokio::select! {
        result = &mut run => result,
        _ = tokio::time::sleep(limit) => {
            // Ask the step to stop (blocking work checks the token), give it
            // time to remove what it half-wrote, then abandon it.
            cancel.cancel();
            let _ = tokio::time::timeout(STOP_GRACE, &mut run).await;
            Err(StepError::timed_out(limit))
        }
    }
}

fn with_dry_run_flag(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(mut map) => {
            map.insert("dry_run".into(), serde_json::Value::Bool(true));
            serde_json::Value::Object(map)
        }
        other => other,
    }
}

fn to_dynamic(
    value: serde_json::Value,
    position_text: &str,
    position: rhai::Position,
) -> Result<Dynamic, Box<EvalAltResult>> {
    rhai::serde::to_dynamic(value).map_err(|e| {
        runtime_error(
            "script",
            ErrorKind::Script,
            format!("step result cannot be converted: {e}"),
            position_text.to_string(),
            position,
        )
    })
}
