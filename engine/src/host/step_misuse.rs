//! A step called with a string (`exec("ls -l")`): without this, Rhai says
//! only "Function not found: exec (&str | ImmutableString | String)". The
//! overload registered here fails with the step's usage instead, as an
//! options error (exit 2 while nothing has changed). `runbook check` finds
//! the same mistake before running ([`crate::host::check_lints`]).

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, NativeCallContext};
use runbook_steps::ErrorKind;

use crate::host::run_state::RunState;
use crate::host::script_error::{describe_position, runtime_error};

/// Registers `STEP(text)` for every step, failing with the step's usage.
pub fn register(engine: &mut Engine, state: &Arc<RunState>) {
    for entry in runbook_steps::all_steps() {
        let state = Arc::clone(state);
        engine.register_fn(
            entry.name,
            move |context: NativeCallContext, _text: &str| -> Result<Dynamic, Box<EvalAltResult>> {
                let position = describe_position(
                    context.call_source().or(Some(&state.workflow_display)),
                    context.call_position(),
                );
                Err(runtime_error(
                    entry.name,
                    ErrorKind::Options,
                    format!(
                        "step `{0}` takes one map of options, not a string: {0}(#{{ ... }}) \
                         (`runbook steps {0}` lists them)",
                        entry.name
                    ),
                    position,
                    context.call_position(),
                ))
            },
        );
    }
}
