//! Mistakes `runbook check` finds in a compiled workflow besides calls to
//! functions that do not exist, each one line with its position:
//!
//! - a step called with something other than one map of options
//!   (`exec("ls")`): Rhai would only say at run time that no such function
//!   exists;
//! - a closure (`defer(|| ...)`, a `parallel` branch) using a variable that
//!   is not defined where the closure is made: Rhai captures variables when
//!   the closure is made, and fails there, at run time;
//! - `cfg.some_key` where `cfg` holds the result of `config(#{ ... })` and
//!   `some_key` is not among the keys declared: a Rhai map yields `()` for a
//!   missing key, and the step given `()` fails later with a confusing
//!   "null" error. `runbook run` refuses such a workflow before anything
//!   runs, too ([`unknown_config_keys`]).

use std::collections::BTreeSet;

use rhai::{AST, ASTNode, Expr, Position, Stmt};

use crate::host::script_error::describe_position;

/// The name Rhai gives a closure's function.
const CLOSURE_PREFIX: &str = "anon$";

/// A problem `check` found.
#[derive(Debug)]
pub struct CheckProblem {
    /// What is wrong.
    pub message: String,
    /// `file:line:column`.
    pub position: String,
}

/// Every problem of this module in `ast` (one file).
pub fn lint(ast: &AST, display: &str) -> Vec<CheckProblem> {
    let mut problems = step_arguments(ast, display);
    problems.extend(closure_variables(ast, display));
    problems.extend(unknown_config_keys(ast, display));
    problems
}

fn problem(display: &str, position: rhai::Position, message: String) -> CheckProblem {
    CheckProblem {
        message,
        position: describe_position(Some(display), position),
    }
}

/// What a literal argument is, for the message; `None` for anything that
/// may be a map at run time (a variable, a call, a map).
fn literal_kind(expr: &Expr) -> Option<&'static str> {
    match expr {
        Expr::StringConstant(..) | Expr::InterpolatedString(..) | Expr::CharConstant(..) => {
            Some("a string")
        }
        Expr::IntegerConstant(..) | Expr::FloatConstant(..) => Some("a number"),
        Expr::BoolConstant(..) => Some("a bool"),
        Expr::Array(..) => Some("an array"),
        Expr::Unit(..) => Some("()"),
        _ => None,
    }
}

/// Steps called with a literal that is not a map, or with more than one argument.
fn step_arguments(ast: &AST, display: &str) -> Vec<CheckProblem> {
    let own: BTreeSet<String> = ast.iter_functions().map(|f| f.name.to_string()).collect();
    let mut problems = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, position)))
            | Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => Some((call, *position)),
            _ => None,
        };
        if let Some((call, position)) = call
            && call.op_token.is_none()
            && !call.is_qualified()
            && !own.contains(call.name.as_str())
            && let Some(step) = runbook_steps::find_step(call.name.as_str())
        {
            let example = format!("{}(#{{ ... }})", step.name);
            match call.args.as_slice() {
                [only] => {
                    if let Some(kind) = literal_kind(only) {
                        problems.push(problem(
                            display,
                            position,
                            format!(
                                "step `{}` takes one map of options, not {kind}: {example} \
                                 (`runbook steps {}` lists them)",
                                step.name, step.name
                            ),
                        ));
                    }
                }
                [] => {}
                many => problems.push(problem(
                    display,
                    position,
                    format!(
                        "step `{}` takes one map of options, not {} arguments: {example} \
                         (`runbook steps {}` lists them)",
                        step.name,
                        many.len(),
                        step.name
                    ),
                )),
            }
        }
        true
    });
    problems
}

/// Variables a closure captures that are not defined where it is made.
///
/// Rhai compiles `|| body` into a function `anon$...` curried with every
/// variable the body uses from outside (`curry(Fn("anon$..."), a, b)`); a
/// captured variable the parser found in no enclosing scope has no index.
fn closure_variables(ast: &AST, display: &str) -> Vec<CheckProblem> {
    let closures = closure_bodies(ast);
    let mut problems = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, _))) | Some(ASTNode::Stmt(Stmt::FnCall(call, _))) => {
                Some(call)
            }
            _ => None,
        };
        if let Some(call) = call
            && call.name.as_str() == "curry"
            && let Some(Expr::DynamicConstant(pointer, _)) = call.args.first()
            && let Some(pointer) = (**pointer).clone().try_cast::<rhai::FnPtr>()
            && pointer.fn_name().starts_with(CLOSURE_PREFIX)
        {
            let in_defer = path.iter().rev().skip(1).take(4).any(|node| {
                matches!(node, ASTNode::Expr(Expr::FnCall(c, _)) | ASTNode::Stmt(Stmt::FnCall(c, _)) if c.name.as_str() == "defer")
            });
            let what = if in_defer { "a defer closure" } else { "a closure" };
            for argument in call.args.iter().skip(1) {
                if let Expr::Variable(variable, _, position) = argument
                    && variable.0.is_none()
                    && !captured_by_an_enclosing_closure(&closures, pointer.fn_name(), variable.1.as_str(), *position)
                {
                    problems.push(problem(
                        display,
                        *position,
                        format!(
                            "{what} uses `{}`, which is not defined where the closure is made \
                             (define it with `let` before the closure)",
                            variable.1
                        ),
                    ));
                }
            }
        }
        true
    });
    problems
}

/// Where each closure's body starts, its function's name and the variables
/// it captures (its function's parameters).
struct ClosureBody {
    name: String,
    start: Position,
    captured: Vec<String>,
}

fn closure_bodies(ast: &AST) -> Vec<ClosureBody> {
    ast.iter_fn_def()
        .filter(|f| f.name.starts_with(CLOSURE_PREFIX))
        .map(|f| ClosureBody {
            name: f.name.to_string(),
            start: f.body.start_position(),
            captured: f.params.iter().map(|p| p.to_string()).collect(),
        })
        .collect()
}

/// True when `name`, used at `at` by the closure `curried`, is captured by
/// a closure whose body starts before `curried`'s: a closure made inside
/// another closure (`|| outcome_of(|| f(cfg))`) names the outer closure's
/// captures, which the parser leaves without an index (they become the outer
/// function's parameters only once its body is parsed), although they are
/// defined there. (Rhai keeps no end position of a closure's body, so "the
/// enclosing closure" is read as "a closure starting before": a variable
/// that is really undefined is still reported at the outermost closure,
/// which captures it from a scope where it has no index.)
fn captured_by_an_enclosing_closure(
    closures: &[ClosureBody],
    curried: &str,
    name: &str,
    at: Position,
) -> bool {
    let key = |p: Position| (p.line().unwrap_or(0), p.position().unwrap_or(0));
    // An enclosing closure starts before the closure it makes (and a closure
    // made inside `curried` starts after it: it is not one).
    let made_at = closures
        .iter()
        .find(|c| c.name == curried)
        .map_or(at, |c| c.start);
    closures.iter().any(|c| {
        key(c.start) < key(made_at)
            && key(c.start) < key(at)
            && c.captured.iter().any(|n| n == name)
    })
}

/// The variables bound to `config(#{ ... })` at the top level, and the keys
/// their literal maps declare (plus keys the script assigns: `cfg.k = v`).
fn declared_config(ast: &AST) -> Option<DeclaredConfig> {
    let mut names = BTreeSet::new();
    let mut keys = BTreeSet::new();
    // A name also bound to something else at the top level holds another map
    // part of the time: not checked.
    let mut rebound = BTreeSet::new();
    for statement in ast.statements() {
        if let Stmt::Var(var, _, _) = statement
            && !matches!(&var.1, Expr::FnCall(call, _) if call.name.as_str() == "config")
        {
            rebound.insert(var.0.name.to_string());
        }
        if let Stmt::Var(var, _, _) = statement
            && let Expr::FnCall(call, _) = &var.1
            && call.name.as_str() == "config"
            && !call.is_qualified()
        {
            // A config map that is not written out cannot be checked. (A
            // map of constants is folded into one constant when compiled.)
            match call.args.first() {
                Some(Expr::Map(map, _)) => {
                    keys.extend(map.0.iter().map(|(ident, _)| ident.name.to_string()));
                }
                Some(Expr::DynamicConstant(value, _)) if value.is_map() => {
                    let map = (**value).clone().cast::<rhai::Map>();
                    keys.extend(map.keys().map(|k| k.to_string()));
                }
                _ => return None,
            }
            names.insert(var.0.name.to_string());
        }
    }
    names.retain(|name| !rebound.contains(name));
    if names.is_empty() {
        return None;
    }
    let declared = keys.clone();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Assignment(assignment))) = path.last()
            && let Expr::Dot(dot, _, _) = &assignment.1.lhs
            && let Expr::Variable(variable, _, _) = &dot.lhs
            && names.contains(variable.1.as_str())
            && let Expr::Property(property, _) = &dot.rhs
        {
            keys.insert(property.2.to_string());
        }
        true
    });
    Some(DeclaredConfig {
        names,
        keys,
        declared,
    })
}

/// What [`declared_config`] found.
struct DeclaredConfig {
    /// The variables holding config() results (usually `cfg`).
    names: BTreeSet<String>,
    /// The keys that may be read: declared, or assigned by the script.
    keys: BTreeSet<String>,
    /// The keys config() declares.
    declared: BTreeSet<String>,
}

/// `cfg.key` reads of keys the workflow's `config(#{ ... })` does not declare.
///
/// Checked in the file that calls `config()`, where the variable holding
/// its result (usually `cfg`) is known: its top level, its closures and its
/// functions' parameters of the same name. Modules it imports receive the
/// map as an argument and are not checked.
pub fn unknown_config_keys(ast: &AST, display: &str) -> Vec<CheckProblem> {
    let Some(DeclaredConfig {
        names,
        keys,
        declared,
    }) = declared_config(ast)
    else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Expr(Expr::Dot(dot, _, _))) = path.last()
            && let Expr::Variable(variable, _, _) = &dot.lhs
            && variable.2.is_empty()
            && names.contains(variable.1.as_str())
        {
            let property = match &dot.rhs {
                Expr::Property(property, position) => Some((property, *position)),
                Expr::Dot(inner, _, _) | Expr::Index(inner, _, _) => match &inner.lhs {
                    Expr::Property(property, position) => Some((property, *position)),
                    _ => None,
                },
                _ => None,
            };
            if let Some((property, position)) = property
                && !keys.contains(property.2.as_str())
            {
                problems.push(problem(
                    display,
                    position,
                    unknown_key_message(variable.1.as_str(), property.2.as_str(), &declared),
                ));
            }
        }
        true
    });
    problems
}

fn unknown_key_message(variable: &str, key: &str, keys: &BTreeSet<String>) -> String {
    let best = keys
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), k))
        .min();
    let suggestion = match best {
        Some((distance, candidate))
            if distance <= (key.len() / 3).max(1) || candidate.contains(key) =>
        {
            format!(" (did you mean `{candidate}`?)")
        }
        _ => String::new(),
    };
    let declared: Vec<&str> = keys.iter().map(String::as_str).collect();
    format!(
        "{variable}.{key}: `{key}` is not a config key of this workflow{suggestion}; \
         config() declares: {}",
        declared.join(", ")
    )
}
