//! `parallel([|| ..., || ...])`: runs closures on their own threads, truly
//! concurrently, and returns their results in order. A failing branch does not
//! stop the others; every branch's cleanups run; the call then fails listing
//! every branch's error.

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, Map, NativeCallContext};

use crate::host::cleanup;
use crate::host::script_error;
use runbook_steps::ErrorKind;

/// The stack of a branch's thread: the main thread's usual 8 MiB.
const BRANCH_STACK_BYTES: usize = 8 * 1024 * 1024;

/// The `parallel` function.
pub fn parallel(context: NativeCallContext, branches: Array) -> Result<Array, Box<EvalAltResult>> {
    let closures = closures_of(&context, branches)?;
    #[allow(deprecated)]
    let store = context.store_data();
    let engine = context.engine();
    let in_cleanup = crate::host::run_state::in_cleanup();
    let rolling_back = crate::host::run_state::rolling_back();
    let outcomes: Vec<Result<Dynamic, Vec<Box<EvalAltResult>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = closures
            .iter()
            .map(|closure| {
                let store = store.clone();
                // As deep a stack as the main thread's: a branch runs the
                // same script code (up to 64 call levels).
                std::thread::Builder::new()
                    .stack_size(BRANCH_STACK_BYTES)
                    .spawn_scoped(scope, move || {
                        crate::host::run_state::set_in_cleanup(in_cleanup);
                        crate::host::run_state::set_rolling_back(rolling_back);
                        cleanup::push_frame();
                        #[allow(deprecated)]
                        let branch_context = store.create_context(engine);
                        let result = closure.call_raw(&branch_context, None, Vec::<Dynamic>::new());
                        let cleanup_failures = cleanup::run_deferred_after(
                            engine,
                            cleanup::pop_frame(),
                            result.is_err(),
                        );
                        match result {
                            Ok(value) if cleanup_failures.is_empty() => Ok(value),
                            Ok(_) => Err(cleanup_failures),
                            Err(error) => {
                                let mut all = vec![error];
                                all.extend(cleanup_failures);
                                Err(all)
                            }
                        }
                    })
                    .expect("a parallel branch's thread starts")
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("parallel branch panicked"))
            .collect()
    });

    combine(outcomes, &context)
}

/// The branches, each of which must be a closure.
fn closures_of(
    context: &NativeCallContext,
    branches: Array,
) -> Result<Vec<FnPtr>, Box<EvalAltResult>> {
    let position = context.call_position();
    let mut closures = Vec::with_capacity(branches.len());
    for (index, branch) in branches.into_iter().enumerate() {
        let type_name = branch.type_name();
        match branch.try_cast::<FnPtr>() {
            Some(closure) => closures.push(closure),
            None => {
                return Err(script_error::runtime_error(
                    "parallel",
                    ErrorKind::Options,
                    format!(
                        "branch {} is a {type_name}, expected a closure `|| {{ ... }}`",
                        index + 1
                    ),
                    script_error::describe_position(context.call_source(), position),
                    position,
                ));
            }
        }
    }
    Ok(closures)
}

/// The branches' results in order, or one `parallel` error listing every
/// branch's errors (each with its branch number).
// The errors stay boxed as Rhai hands them over (`Box<EvalAltResult>`).
#[allow(clippy::vec_box)]
fn combine(
    outcomes: Vec<Result<Dynamic, Vec<Box<EvalAltResult>>>>,
    context: &NativeCallContext,
) -> Result<Array, Box<EvalAltResult>> {
    let position = context.call_position();
    let total = outcomes.len();
    let mut results = Array::with_capacity(total);
    let mut errors = Array::new();
    let mut failed = 0;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(value) => results.push(value),
            Err(branch_errors) => {
                results.push(Dynamic::UNIT);
                for error in branch_errors {
                    failed += 1;
                    let mut map: Map = script_error::error_map(&error);
                    map.insert("branch".into(), Dynamic::from((index + 1) as i64));
                    errors.push(map.into());
                }
            }
        }
    }
    if errors.is_empty() {
        return Ok(results);
    }
    let mut map = Map::new();
    map.insert("step".into(), "parallel".into());
    map.insert("kind".into(), ErrorKind::Parallel.as_str().into());
    map.insert(
        "message".into(),
        format!("{failed} of {total} branches failed").into(),
    );
    map.insert("errors".into(), errors.into());
    map.insert(
        "position".into(),
        script_error::describe_position(context.call_source(), position).into(),
    );
    Err(EvalAltResult::ErrorRuntime(map.into(), position).into())
}
