//! The Rhai host: an [`Engine`] with every step and engine function registered.

use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, Map, NativeCallContext};

use crate::host::cleanup;
use crate::host::compensation::Action;
use crate::host::parallel;
use crate::host::run_state::RunState;
use crate::host::script_error::{describe_position, runtime_error};
use crate::host::step_call::call_step;
use crate::host::workflow::WorkflowModules;
use runbook_steps::ErrorKind;

/// Default bound on the Rhai operations one run (or one parallel branch) may
/// execute: stops an endless loop in pure script code (steps have their own
/// timeouts). About 10 s of pure script work in a release build; a workflow
/// looping over tens of thousands of files stays far below it.
pub const MAX_OPERATIONS: u64 = 100_000_000;

fn position_of(state: &RunState, context: &NativeCallContext) -> String {
    describe_position(
        context.call_source().or(Some(&state.workflow_display)),
        context.call_position(),
    )
}

/// Builds the engine for one run: its limits and hooks, then every script
/// function, group by group (each `register_*` below is the index of one
/// group; the other groups live with their concern in `host/`).
pub fn build_engine(state: Arc<RunState>, modules: WorkflowModules) -> Engine {
    let mut engine = Engine::new();
    engine.set_module_resolver(modules);
    set_limits_and_hooks(&mut engine, &state);
    register_steps(&mut engine, &state);
    register_config_functions(&mut engine, &state);
    register_flow_functions(&mut engine, &state);
    register_run_facts(&mut engine, &state);
    register_logging(&mut engine);
    register_undo_functions(&mut engine, &state);
    crate::host::file_functions::register(&mut engine, &state);
    crate::host::shell_text::register(&mut engine, state.workflow_display.clone());
    crate::host::backup_set_functions::register(&mut engine, &state);
    crate::host::config_source::register(&mut engine, &state);
    crate::host::run_error::register(&mut engine);
    crate::host::wording_functions::register(&mut engine);
    crate::host::step_misuse::register(&mut engine, &state);
    engine
}

/// The bounds on script work, the stop on cancellation, and where `print`
/// and `debug` go (masked, to the log).
fn set_limits_and_hooks(engine: &mut Engine, state: &Arc<RunState>) {
    engine.set_max_operations(state.max_operations);
    engine.set_max_expr_depths(128, 64);
    // Rhai's default is 8 call levels in a debug build and 64 in a release
    // build: a workflow calling a library that calls into parallel branches
    // (cluster-hot-restore -> restore_cassandra -> load_tables -> ...) must
    // not fail in one and work in the other.
    engine.set_max_call_levels(64);
    let state = Arc::clone(state);
    engine.on_progress(move |_| {
        (state.cancel.is_cancelled() && !crate::host::run_state::in_cleanup())
            .then(|| Dynamic::from("interrupted"))
    });
    engine.on_print(|text| tracing::info!("{}", crate::host::secrets::mask(text)));
    engine.on_debug(|text, _, _| tracing::debug!("{}", crate::host::secrets::mask(text)));
}

/// Every step of the registry, callable as `name(#{ options })` and `name()`.
fn register_steps(engine: &mut Engine, state: &Arc<RunState>) {
    for entry in runbook_steps::all_steps() {
        let state_with_options = Arc::clone(state);
        engine.register_fn(
            entry.name,
            move |context: NativeCallContext, options: Map| {
                call_step(&state_with_options, entry, &context, options)
            },
        );
        let state_no_args = Arc::clone(state);
        engine.register_fn(entry.name, move |context: NativeCallContext| {
            call_step(&state_no_args, entry, &context, Map::new())
        });
    }
}

/// `config(defaults)`, `config(defaults, rules)` and `secret(name)`.
fn register_config_functions(engine: &mut Engine, state: &Arc<RunState>) {
    let s = Arc::clone(state);
    engine.register_fn(
        "config",
        move |context: NativeCallContext, defaults: Map| -> Result<Map, Box<EvalAltResult>> {
            config(&s, &context, defaults, Map::new())
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "config",
        move |context: NativeCallContext,
              defaults: Map,
              rules: Map|
              -> Result<Map, Box<EvalAltResult>> { config(&s, &context, defaults, rules) },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "secret",
        move |context: NativeCallContext, name: &str| -> Result<String, Box<EvalAltResult>> {
            let value = crate::host::secrets::read_secret(name).map_err(|e| {
                runtime_error(
                    "secret",
                    ErrorKind::Config,
                    e.to_string(),
                    position_of(&s, &context),
                    context.call_position(),
                )
            })?;
            let config = config_strings(&s.config.lock().expect("config lock poisoned"));
            crate::host::secrets::warn_collisions(
                config.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            Ok(value)
        },
    );
}

/// `parallel([...])`, `defer(|| ...)`, `fail(msg)` and `fail_config(msg)`.
fn register_flow_functions(engine: &mut Engine, state: &Arc<RunState>) {
    engine.register_fn("parallel", parallel::parallel);
    let s = Arc::clone(state);
    engine.register_fn(
        "defer",
        move |context: NativeCallContext, closure: FnPtr| {
            #[allow(deprecated)]
            let store = context.store_data();
            cleanup::defer(closure, store, position_of(&s, &context));
        },
    );
    register_stop(engine, state, "fail", "fail", ErrorKind::Fail);
    // Like fail(), but the cause is the configuration: exit 2 ("nothing
    // ran") as long as nothing was changed yet, as for a bad --set.
    register_stop(engine, state, "fail_config", "config", ErrorKind::Config);
}

/// The script function `name(message)`, which stops the run with an error
/// of `kind` reported as coming from `reported_as`.
fn register_stop(
    engine: &mut Engine,
    state: &Arc<RunState>,
    name: &str,
    reported_as: &'static str,
    kind: ErrorKind,
) {
    let s = Arc::clone(state);
    engine.register_fn(
        name,
        move |context: NativeCallContext, message: &str| -> Result<(), Box<EvalAltResult>> {
            Err(runtime_error(
                reported_as,
                kind,
                message.to_string(),
                position_of(&s, &context),
                context.call_position(),
            ))
        },
    );
}

/// What a script may ask about the run and its machine: the time, the host,
/// its private folder, dry-run, and the workflow's name and digest.
fn register_run_facts(engine: &mut Engine, state: &Arc<RunState>) {
    engine.register_fn("now", |format: &str| {
        chrono::Local::now().format(format).to_string()
    });
    engine.register_fn("now_ms", || chrono::Utc::now().timestamp_millis());
    engine.register_fn("parse_time_ms", |text: &str| -> Dynamic {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| Dynamic::from(t.timestamp_millis()))
            .unwrap_or(Dynamic::UNIT)
    });
    engine.register_fn("hostname", crate::host::journal::hostname);
    let s = Arc::clone(state);
    engine.register_fn(
        "private_dir",
        move |context: NativeCallContext| -> Result<String, Box<EvalAltResult>> {
            let position = position_of(&s, &context);
            crate::host::private_dir::private_dir(&s, position.clone()).map_err(|message| {
                runtime_error(
                    "private_dir",
                    ErrorKind::File,
                    format!("private_dir: {message}"),
                    position,
                    context.call_position(),
                )
            })
        },
    );
    let s = Arc::clone(state);
    engine.register_fn("is_dry_run", move || s.dry_run);
    let s = Arc::clone(state);
    engine.register_fn("workflow_sha256", move || s.workflow_sha256.clone());
    let s = Arc::clone(state);
    engine.register_fn("workflow_name", move || s.workflow_name.clone());
}

/// `log_info(msg)` and `log_warn(msg)`, masked.
fn register_logging(engine: &mut Engine) {
    engine.register_fn("log_info", |message: &str| {
        tracing::info!("{}", crate::host::secrets::mask(message));
    });
    engine.register_fn("log_warn", |message: &str| {
        tracing::warn!("{}", crate::host::secrets::mask(message));
    });
}

/// `undo(#{ ... })`, which records a compensation, and `dismiss(id)`.
fn register_undo_functions(engine: &mut Engine, state: &Arc<RunState>) {
    let s = Arc::clone(state);
    engine.register_fn(
        "undo",
        move |context: NativeCallContext, spec: Map| -> Result<i64, Box<EvalAltResult>> {
            undo(&s, &context, spec)
        },
    );
    let s = Arc::clone(state);
    engine.register_fn("dismiss", move |id: i64| {
        s.dismiss_compensation(id);
    });
}

/// `config(defaults, rules)`: the effective config of the run (defaults,
/// overridden by the site file, `RUNBOOK_<KEY>` and `--set`), after every
/// name and value is checked.
fn config(
    state: &RunState,
    context: &NativeCallContext,
    defaults: Map,
    rules: Map,
) -> Result<Map, Box<EvalAltResult>> {
    let error = |e: crate::host::config::ConfigError| {
        // A rule that makes no sense is the script's fault, not the user's.
        let kind = if matches!(e, crate::host::config::ConfigError::BadRule(_)) {
            ErrorKind::Script
        } else {
            ErrorKind::Config
        };
        runtime_error(
            "config",
            kind,
            e.to_string(),
            position_of(state, context),
            context.call_position(),
        )
    };
    if let Some(stop) = crate::host::config_probe::probe_declared(&defaults) {
        return Err(stop);
    }
    let rules = crate::host::config_rules::Rules::parse(&rules, &defaults).map_err(error)?;
    let mut declared = state.config.lock().expect("config lock poisoned");
    check_key_names(state, &declared, &defaults).map_err(error)?;
    let env = |name: &str| std::env::var(name).ok();
    let effective = state
        .overrides
        .resolve(&defaults, env)
        .map_err(|e| error(rules.explain(e)))?;
    rules
        .check(&effective, |key| state.overrides.origin_of(key, env))
        .map_err(error)?;
    if let Some(stop) = crate::host::config_probe::probe_effective(&effective, |key| {
        state.overrides.origin_of(key, env)
    }) {
        return Err(stop);
    }
    declared.extend(effective.clone());
    publish_declared(state, &declared);
    Ok(effective)
}

/// Every key set from outside (`--set`, the site file, `RUNBOOK_<KEY>`) is
/// one a workflow declares: this call's `defaults`, an earlier call's
/// (`declared`), or (for the site file and the environment) another workflow's.
fn check_key_names(
    state: &RunState,
    declared: &Map,
    defaults: &Map,
) -> Result<(), crate::host::config::ConfigError> {
    let mut names: Vec<String> = declared.keys().map(|k| k.to_string()).collect();
    names.extend(defaults.keys().map(|k| k.to_string()));
    state
        .overrides
        .check_declared(names.iter().map(String::as_str))?;
    // A key of another workflow (from the site's point of view) is not an
    // error here: one environment and one site file serve every workflow.
    let known = names
        .iter()
        .map(String::as_str)
        .chain(state.overrides.known_elsewhere());
    state.overrides.check_site_keys(known.clone())?;
    crate::host::config_rules::check_environment(
        std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()),
        known,
    )
}

/// Makes the declared config known: its values to secret masking (and the
/// warning about a secret among them), the run state, and the journal.
fn publish_declared(state: &RunState, declared: &Map) {
    let strings = config_strings(declared);
    crate::host::secrets::set_public_values(strings.iter().map(|(_, v)| v.as_str()));
    crate::host::secrets::warn_collisions(strings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    *state.config_declared.lock().expect("config lock poisoned") = true;
    if let Some(journal) = &state.journal {
        let value = rhai::serde::from_dynamic::<serde_json::Value>(&declared.clone().into())
            .unwrap_or_default();
        journal.update(|doc| doc.config = value);
    }
}

/// The string values of a config map (list items included), by key.
fn config_strings(config: &Map) -> Vec<(String, String)> {
    let mut strings = Vec::new();
    for (key, value) in config {
        if let Some(text) = value.read_lock::<rhai::ImmutableString>() {
            strings.push((key.to_string(), text.to_string()));
        } else if let Some(items) = value.read_lock::<rhai::Array>() {
            for item in items.iter() {
                if let Some(text) = item.read_lock::<rhai::ImmutableString>() {
                    strings.push((key.to_string(), text.to_string()));
                }
            }
        }
    }
    strings
}

/// What an `undo(...)` map says: whether it is undone at the end of the run
/// (`scope: "run"`) rather than of its branch, its label, and the action
/// (its `timeout` in a step action). The message of what is wrong otherwise.
fn parse_undo_spec(
    mut json: serde_json::Map<String, serde_json::Value>,
) -> Result<(bool, String, Action), String> {
    let run_scope = match json.remove("scope") {
        None => false,
        Some(serde_json::Value::String(scope)) if scope == "branch" => false,
        Some(serde_json::Value::String(scope)) if scope == "run" => true,
        Some(other) => {
            return Err(format!(
                "`scope` must be \"branch\" or \"run\", not {other}"
            ));
        }
    };
    let label = match json.remove("label") {
        Some(serde_json::Value::String(label)) => label,
        _ => {
            return Err("`label` (a string saying what is undone) is required".to_string());
        }
    };
    // How long the step may take when carried out (default 5 minutes): e.g.
    // restoring a big index from a safety snapshot takes longer.
    let timeout = match json.remove("timeout") {
        None => None,
        Some(serde_json::Value::String(text)) => match humantime::parse_duration(&text) {
            Ok(_) => Some(text),
            Err(e) => return Err(format!("`timeout` \"{text}\": {e}")),
        },
        Some(other) => {
            return Err(format!(
                "`timeout` must be a duration like \"2h\", not {other}"
            ));
        }
    };
    let mut action: Action = serde_json::from_value(serde_json::Value::Object(json))
        .map_err(|_| "expected either `step` and `options`, or `remove` (a path)".to_string())?;
    match &mut action {
        Action::Step { timeout: slot, .. } => *slot = timeout,
        Action::Remove { .. } if timeout.is_some() => {
            return Err("`timeout` is for step actions, not `remove`".to_string());
        }
        Action::Remove { .. } => {}
    }
    Ok((run_scope, label, action))
}

/// `undo(#{ label, step, options })` / `undo(#{ label, remove })`.
fn undo(
    state: &Arc<RunState>,
    context: &NativeCallContext,
    spec: Map,
) -> Result<i64, Box<EvalAltResult>> {
    let position = position_of(state, context);
    let error = |message: String| {
        runtime_error(
            "undo",
            ErrorKind::Options,
            format!("undo: {message}"),
            position.clone(),
            context.call_position(),
        )
    };
    let json = match rhai::serde::from_dynamic::<serde_json::Value>(&spec.into()) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(error("expected a map".to_string())),
    };
    let (run_scope, label, mut action) = parse_undo_spec(json).map_err(error)?;
    if let Action::Step { step, options, .. } = &mut action {
        let entry = runbook_steps::find_step(step)
            .ok_or_else(|| error(format!("no step named `{step}`")))?;
        entry
            .prepare(options.clone())
            .map_err(|e| error(format!("step {step}: {}", e.message)))?;
        // The journal holds the secret's name; the undo reads it again.
        *options = crate::host::secrets::to_references(options, "").map_err(error)?;
    }
    let id = state.add_compensation(label, action, position);
    if run_scope {
        state
            .run_compensations
            .lock()
            .expect("compensation list poisoned")
            .push(id);
    } else {
        cleanup::defer_compensation(id, Arc::clone(state));
    }
    Ok(id)
}
