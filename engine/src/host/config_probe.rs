//! The config probe's hooks: while a probe runs on a thread, the workflow's
//! `config()` call notes what it declared (or resolved) here and stops the
//! script. The engine's `config()` calls [`probe_declared`] and
//! [`probe_effective`]; [`crate::host::config_keys`] starts and ends probes.
//! This module imports nothing that builds an engine, so the engine can call
//! it without a circle.

use std::cell::RefCell;

use rhai::{Dynamic, Map};

use crate::host::config::Origin;

/// What a probe does at the workflow's `config()` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeMode {
    /// Note the declared keys and stop (nothing is checked).
    Keys,
    /// Resolve and check the values as a run would, note them and stop.
    Effective,
}

/// One effective config value and where it came from.
#[derive(Clone, Debug)]
pub struct ProbedValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: serde_json::Value,
    /// Where it came from.
    pub origin: Origin,
}

/// What a probe learnt.
#[derive(Clone, Debug, Default)]
pub struct Probed {
    /// The keys the first `config()` call declares.
    pub keys: Vec<String>,
    /// With [`ProbeMode::Effective`]: the values.
    pub values: Vec<ProbedValue>,
}

/// The probe running on a thread.
pub struct ProbeState {
    mode: ProbeMode,
    found: Option<Probed>,
}

thread_local! {
    /// Set while a probe runs on this thread (see [`probe`]).
    static PROBE: RefCell<Option<ProbeState>> = const { RefCell::new(None) };
}

/// The error that ends a probed script at its `config()` call.
const PROBE_STOP: &str = "runbook: config probe done";

/// Called by `config()` first: in a [`ProbeMode::Keys`] probe, notes the
/// declared keys and returns the error that stops the script.
pub fn probe_declared(defaults: &Map) -> Option<Box<rhai::EvalAltResult>> {
    PROBE.with(|probe| {
        let mut probe = probe.borrow_mut();
        let state = probe.as_mut().filter(|s| s.mode == ProbeMode::Keys)?;
        state.found = Some(Probed {
            keys: defaults.keys().map(|k| k.to_string()).collect(),
            values: Vec::new(),
        });
        Some(stop())
    })
}

/// Called by `config()` once the values are resolved and checked: in a
/// [`ProbeMode::Effective`] probe, notes them and returns the error that
/// stops the script.
pub fn probe_effective(
    effective: &Map,
    origin: impl Fn(&str) -> Origin,
) -> Option<Box<rhai::EvalAltResult>> {
    PROBE.with(|probe| {
        let mut probe = probe.borrow_mut();
        let state = probe.as_mut().filter(|s| s.mode == ProbeMode::Effective)?;
        let values = effective
            .iter()
            .map(|(key, value)| ProbedValue {
                key: key.to_string(),
                value: rhai::serde::from_dynamic::<serde_json::Value>(value)
                    .unwrap_or(serde_json::Value::Null),
                origin: origin(key),
            })
            .collect();
        state.found = Some(Probed {
            keys: effective.keys().map(|k| k.to_string()).collect(),
            values,
        });
        Some(stop())
    })
}

fn stop() -> Box<rhai::EvalAltResult> {
    Box::new(rhai::EvalAltResult::ErrorRuntime(
        Dynamic::from(PROBE_STOP),
        rhai::Position::NONE,
    ))
}

/// Starts a probe on this thread; returns the probe it interrupts (a probe
/// within a probe), for [`end`].
pub fn begin(mode: ProbeMode) -> Option<ProbeState> {
    PROBE.with(|p| p.borrow_mut().replace(ProbeState { mode, found: None }))
}

/// Ends this thread's probe, puts `outer` back, and returns what the probe
/// learnt (`None`: the script never reached `config()`).
pub fn end(outer: Option<ProbeState>) -> Option<Probed> {
    PROBE
        .with(|p| std::mem::replace(&mut *p.borrow_mut(), outer))
        .and_then(|state| state.found)
}
