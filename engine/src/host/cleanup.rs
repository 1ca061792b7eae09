#![allow(deprecated)]
// NativeCallContextStore is "volatile", not deprecated: it is how a closure is called later or on another thread.
//! Deferred cleanup: `defer(|| ...)` registers a closure that runs, in reverse
//! order, when the workflow or the parallel branch that registered it ends —
//! on success, on failure and on interruption.
//!
//! Each thread that runs script code (the workflow itself, each parallel
//! branch) keeps its own stack of frames, so a branch's cleanups run when that
//! branch ends.

use std::cell::RefCell;

use crate::host::run_state::{in_cleanup, set_in_cleanup};

use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, NativeCallContextStore};

/// A registered cleanup.
pub enum Deferred {
    /// `defer(|| ...)`.
    Closure {
        /// The closure.
        closure: FnPtr,
        /// Its calling context (libraries, imports).
        context: Box<NativeCallContextStore>,
        /// Where it was registered.
        position: String,
    },
    /// `undo(#{ ... })`: a journaled compensation.
    Compensation {
        /// Its id in the journal.
        id: i64,
        /// The run it belongs to.
        state: std::sync::Arc<crate::host::run_state::RunState>,
    },
}

thread_local! {
    static FRAMES: RefCell<Vec<Vec<Deferred>>> = const { RefCell::new(Vec::new()) };
}

/// Starts a frame (workflow start, branch start).
pub fn push_frame() {
    FRAMES.with(|f| f.borrow_mut().push(Vec::new()));
}

/// Ends the current frame and returns its cleanups, in registration order.
pub fn pop_frame() -> Vec<Deferred> {
    FRAMES.with(|f| f.borrow_mut().pop().unwrap_or_default())
}

fn push(item: Deferred) {
    FRAMES.with(|f| {
        let mut frames = f.borrow_mut();
        if frames.is_empty() {
            frames.push(Vec::new());
        }
        frames.last_mut().expect("a frame exists").push(item);
    });
}

/// Registers a cleanup in the current frame.
pub fn defer(closure: FnPtr, context: NativeCallContextStore, position: String) {
    push(Deferred::Closure {
        closure,
        context: Box::new(context),
        position,
    });
}

/// Registers a journaled compensation in the current frame.
pub fn defer_compensation(id: i64, state: std::sync::Arc<crate::host::run_state::RunState>) {
    push(Deferred::Compensation { id, state });
}

/// [`run_deferred`] for a frame that ended with `failed` (its undo actions
/// then log as a rollback).
pub fn run_deferred_after(
    engine: &Engine,
    deferred: Vec<Deferred>,
    failed: bool,
) -> Vec<Box<EvalAltResult>> {
    let was_rolling_back = crate::host::run_state::rolling_back();
    crate::host::run_state::set_rolling_back(failed || was_rolling_back);
    let failures = run_deferred(engine, deferred);
    crate::host::run_state::set_rolling_back(was_rolling_back);
    failures
}

/// Runs `deferred` in reverse order; every cleanup runs even when one fails.
/// Returns the failures.
pub fn run_deferred(engine: &Engine, deferred: Vec<Deferred>) -> Vec<Box<EvalAltResult>> {
    let mut failures = Vec::new();
    let was_in_cleanup = in_cleanup();
    set_in_cleanup(true);
    for item in deferred.into_iter().rev() {
        match item {
            Deferred::Closure {
                closure,
                context,
                position,
            } => {
                tracing::debug!("running cleanup registered at {position}");
                let context = context.create_context(engine);
                if let Err(error) = closure.call_raw(&context, None, Vec::<Dynamic>::new()) {
                    tracing::error!(
                        "cleanup registered at {position} failed: {}",
                        crate::host::script_error::one_line(&error)
                    );
                    failures.push(error);
                }
            }
            Deferred::Compensation { id, state } => {
                if let Err(error) = state.run_compensation(id) {
                    failures.push(error);
                }
            }
        }
    }
    set_in_cleanup(was_in_cleanup);
    failures
}
