//! `run_error()`: the error that ended the workflow's body, for `defer`
//! closures (a site's own mail or webhook call on failure) and for the run
//! summary (`--summary-json`, `notify_command`).
//!
//! One `runbook` process runs one workflow, so the error is kept once per
//! process. It is recorded after the body ends and before the deferred
//! cleanups run: a cleanup sees it, a parallel branch's own cleanups (which
//! run when the branch ends, while the body still runs) see `()`.

use std::sync::Mutex;

use rhai::{Dynamic, Engine, EvalAltResult, Map};

use crate::host::script_error::error_map;

static RUN_ERROR: Mutex<Option<Map>> = Mutex::new(None);

/// Records how the workflow's body ended (`None`: it succeeded).
pub fn record(error: Option<&EvalAltResult>) {
    let map = error.map(|e| single_branch(error_map(e)));
    *RUN_ERROR.lock().expect("run error lock poisoned") = map;
}

/// The error of the one failed branch when a `parallel` call failed because
/// of one branch (as the terminal report shows it), else `map` itself. Several
/// failed branches stay a `parallel` error with their maps in `errors`.
fn single_branch(map: Map) -> Map {
    if map.get("step").map(|s| s.to_string()).as_deref() != Some("parallel") {
        return map;
    }
    let branches: Vec<Map> = map
        .get("errors")
        .and_then(|e| e.read_lock::<rhai::Array>().map(|a| a.clone()))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.read_lock::<Map>().map(|m| m.clone()))
        .collect();
    match <[Map; 1]>::try_from(branches) {
        Ok([only]) => only,
        Err(_) => map,
    }
}

/// The error that ended the body, as a map (`step`, `kind`, `message`,
/// `position`, and `label`/`causes` for a step failure), if it failed.
pub fn current() -> Option<Map> {
    RUN_ERROR.lock().expect("run error lock poisoned").clone()
}

/// Registers `run_error()`: `()` while the body runs and after it succeeded,
/// else the error map a `catch (e)` would have seen.
pub fn register(engine: &mut Engine) {
    engine.register_fn("run_error", || -> Dynamic {
        current().map(Dynamic::from).unwrap_or(Dynamic::UNIT)
    });
}
