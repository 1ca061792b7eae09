//! Errors raised into scripts and reported to the user.
//!
//! A step failure is raised as a Rhai runtime error whose value is a map
//! (`step`, `label`, `kind`, `message`, `causes`, `position`), so a script can
//! `try { ... } catch (e) { e.kind }`. Uncaught, it is printed as one line per
//! cause, then `--> file:line:column` and the source line.

use rhai::{Dynamic, EvalAltResult, Map, Position};
use runbook_steps::ErrorKind;

use crate::host::secrets::mask;

/// `file:line:column` for a position in `source` (the workflow when `None`).
pub fn describe_position(source: Option<&str>, position: Position) -> String {
    let file = source.filter(|s| !s.is_empty()).unwrap_or("<workflow>");
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => format!("{file}:{line}:{column}"),
        (Some(line), None) => format!("{file}:{line}"),
        _ => file.to_string(),
    }
}

/// A runtime error carrying a map, as steps and engine functions raise them.
pub fn runtime_error(
    step: &str,
    kind: ErrorKind,
    message: String,
    position_text: String,
    position: Position,
) -> Box<EvalAltResult> {
    let mut map = Map::new();
    map.insert("step".into(), step.into());
    map.insert("kind".into(), kind.as_str().into());
    map.insert("message".into(), mask(&message).into());
    map.insert("position".into(), position_text.into());
    EvalAltResult::ErrorRuntime(map.into(), position).into()
}

/// The innermost error and the source it happened in.
fn innermost(
    error: &EvalAltResult,
    mut source: Option<String>,
) -> (&EvalAltResult, Option<String>) {
    match error {
        EvalAltResult::ErrorInFunctionCall(_, fn_source, inner, _) => {
            if !fn_source.is_empty() {
                source = Some(fn_source.clone());
            }
            innermost(inner, source)
        }
        EvalAltResult::ErrorInModule(module, inner, _) => innermost(inner, Some(module.clone())),
        other => (other, source),
    }
}

/// The error as a script sees it in `catch (e)`: a map with at least `step`,
/// `kind`, `message` and `position`.
pub fn error_map(error: &EvalAltResult) -> Map {
    let (inner, source) = innermost(error, None);
    if let EvalAltResult::ErrorRuntime(value, _) = inner
        && let Some(map) = value.read_lock::<Map>()
    {
        return map.clone();
    }
    let mut map = Map::new();
    let kind = match inner {
        EvalAltResult::ErrorRuntime(..) => ErrorKind::Fail,
        EvalAltResult::ErrorTerminated(..) => ErrorKind::Cancelled,
        EvalAltResult::ErrorTooManyOperations(..) => ErrorKind::OperationLimit,
        _ => ErrorKind::Script,
    };
    map.insert("step".into(), "script".into());
    map.insert("kind".into(), kind.as_str().into());
    map.insert("message".into(), mask(&plain_message(inner)).into());
    map.insert(
        "position".into(),
        describe_position(source.as_deref(), inner.position()).into(),
    );
    map
}

/// The message of an engine error without Rhai's "(line x, position y)" suffix.
fn plain_message(error: &EvalAltResult) -> String {
    match error {
        EvalAltResult::ErrorRuntime(value, _) if value.is_string() => value.to_string(),
        EvalAltResult::ErrorTerminated(..) => "interrupted".to_string(),
        EvalAltResult::ErrorTooManyOperations(..) => {
            "the script ran more operations than --max-operations allows (an endless loop?)"
                .to_string()
        }
        other => {
            let mut text = other.to_string();
            if let Some(cut) = text.rfind(" (line ") {
                text.truncate(cut);
            }
            text
        }
    }
}

fn field(map: &Map, key: &str) -> Option<String> {
    map.get(key)
        .filter(|v| !v.is_unit())
        .map(|v| v.to_string())
        .filter(|s| !s.is_empty())
}

/// The headline for an error map: `step exec (nodetool snapshot) failed: ...`.
fn headline(map: &Map) -> String {
    let message = field(map, "message").unwrap_or_default();
    let step = field(map, "step").unwrap_or_default();
    let kind = field(map, "kind").unwrap_or_default();
    if step.is_empty()
        || step == "script"
        || step == "parallel"
        || matches!(
            ErrorKind::parse(&kind),
            Some(ErrorKind::Config | ErrorKind::Fail | ErrorKind::Options)
        )
    {
        return message;
    }
    match field(map, "label").filter(|l| *l != step) {
        Some(label) => format!("step {step} ({label}) failed: {message}"),
        None => format!("step {step} failed: {message}"),
    }
}

/// One line for logs: headline and position.
pub fn one_line(error: &EvalAltResult) -> String {
    let map = error_map(error);
    match field(&map, "position") {
        Some(position) => format!("{} (at {position})", headline(&map)),
        None => headline(&map),
    }
}

/// True when the error is bad input (config, options, script) rather than a
/// failure of the work itself.
pub fn is_input_error(error: &EvalAltResult) -> bool {
    let map = error_map(error);
    let kind = field(&map, "kind").unwrap_or_default();
    ErrorKind::parse(&kind).is_some_and(ErrorKind::is_input)
}

/// The full report for the terminal: `error: ...`, one `caused by:` line per
/// cause, then `--> position` and the source line with a caret.
pub fn render(
    error: &EvalAltResult,
    workflow_display: &str,
    sources: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut map = error_map(error);
    if let Some(position) = field(&map, "position")
        && let Some(rest) = position.strip_prefix("<workflow>")
    {
        map.insert(
            "position".into(),
            format!("{workflow_display}{rest}").into(),
        );
    }
    let branch_errors: Vec<Map> = array_field(&map, "errors")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.read_lock::<Map>().map(|m| m.clone()))
        .collect();
    if let [only] = branch_errors.as_slice() {
        return mask(&render_one_failed_branch(&map, only, sources));
    }
    let mut out = format!("error: {}\n", headline(&map));
    out.push_str(&caused_by_lines(&map));
    for branch in &branch_errors {
        let number = field(branch, "branch").unwrap_or_default();
        out.push_str(&format!("  branch {number}: {}\n", headline(branch)));
        if let Some(position) = field(branch, "position") {
            out.push_str(&format!("    --> {position}\n"));
        }
    }
    if let Some(position) = field(&map, "position") {
        out.push_str(&source_excerpt(&position, sources));
    }
    mask(&out)
}

/// One failed branch of a `parallel` call (`map`): its error is the
/// headline, with its own position, then where the parallel call is.
fn render_one_failed_branch(
    map: &Map,
    only: &Map,
    sources: &dyn Fn(&str) -> Option<String>,
) -> String {
    let number = field(only, "branch").unwrap_or_default();
    let mut out = format!("error: {}\n", headline(only));
    out.push_str(&caused_by_lines(only));
    out.push_str(&format!(
        "  (in parallel branch {number}; the other branches finished and their cleanups ran)\n"
    ));
    if let Some(position) = field(only, "position") {
        out.push_str(&source_excerpt(&position, sources));
    }
    if let Some(position) = field(map, "position") {
        out.push_str(&format!("  parallel call at {position}\n"));
    }
    out
}

/// One `  caused by:` line per item of the error map's `causes`.
fn caused_by_lines(map: &Map) -> String {
    array_field(map, "causes")
        .unwrap_or_default()
        .iter()
        .map(|cause| format!("  caused by: {cause}\n"))
        .collect()
}

/// The array at `key` of an error map, if it holds one.
fn array_field(map: &Map, key: &str) -> Option<rhai::Array> {
    map.get(key)
        .and_then(|c| c.read_lock::<rhai::Array>().map(|a| a.clone()))
}

/// `--> file:line:col`, the source line and a caret under the column.
pub fn source_excerpt(position: &str, sources: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = format!("  --> {position}\n");
    let mut parts = position.rsplitn(3, ':');
    let (column, line, file) = (parts.next(), parts.next(), parts.next());
    if let (Some(column), Some(line), Some(file)) = (column, line, file)
        && let (Ok(column), Ok(line)) = (column.parse::<usize>(), line.parse::<usize>())
        && let Some(text) = sources(file)
        && let Some(source_line) = text.lines().nth(line.saturating_sub(1))
    {
        let gutter = " ".repeat(line.to_string().len());
        out.push_str(&format!(
            "{gutter} |\n{line} | {source_line}\n{gutter} | {}^\n",
            " ".repeat(column.saturating_sub(1))
        ));
    }
    out
}

/// Builds the error map for a failed step.
pub fn step_error_map(
    step: &str,
    label: &str,
    error: &runbook_steps::StepError,
    position_text: &str,
) -> Map {
    let mut map = Map::new();
    map.insert("step".into(), step.into());
    map.insert("label".into(), mask(label).into());
    map.insert("kind".into(), error.kind().into());
    map.insert("message".into(), mask(error.message()).into());
    let causes: rhai::Array = error
        .causes()
        .iter()
        .map(|c| Dynamic::from(mask(c)))
        .collect();
    map.insert("causes".into(), causes.into());
    map.insert("position".into(), position_text.into());
    map
}
