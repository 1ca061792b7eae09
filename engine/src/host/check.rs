//! `runbook check`: compiles a workflow and every module it imports, and finds
//! calls to functions that exist nowhere — before anything runs.

use std::collections::{BTreeSet, HashSet};

use rhai::{AST, ASTNode, Engine, Expr, Stmt};

use crate::host::workflow::{STOCK_FILES, STOCK_PREFIX, Workflow, WorkflowModules};

// Defined beside the lints, which this file runs (one way: check → check_lints).
pub use crate::host::check_lints::CheckProblem;

/// The names of every function an engine knows (built-in and registered).
fn known_functions(engine: &Engine) -> HashSet<String> {
    engine
        .gen_fn_signatures(true)
        .into_iter()
        .filter_map(|signature| {
            let name = signature.split('(').next()?.trim();
            // Signatures of methods look like `get$len(...)`; keep the bare name.
            let name = name.rsplit(' ').next()?;
            Some(
                name.trim_start_matches("get$")
                    .trim_start_matches("set$")
                    .to_string(),
            )
        })
        .collect()
}

fn script_functions(ast: &AST) -> HashSet<String> {
    ast.iter_functions().map(|f| f.name.to_string()).collect()
}

/// Compiles `source` named `display`, or returns the syntax error as a problem.
pub fn compile(engine: &Engine, display: &str, source: &str) -> Result<AST, CheckProblem> {
    let mut ast = engine.compile(source).map_err(|e| CheckProblem {
        message: format!("syntax error: {}", e.err_type()),
        position: crate::host::script_error::describe_position(Some(display), e.position()),
    })?;
    ast.set_source(display.to_string());
    Ok(ast)
}

fn module_source(workflow: &Workflow, importer: &str, path: &str) -> Option<(String, String)> {
    match &workflow.modules {
        WorkflowModules::Stock => {
            let file = format!("{}.rhai", path.trim_end_matches(".rhai"));
            STOCK_FILES
                .iter()
                .find(|(p, _)| *p == file)
                .map(|(p, text)| (format!("{STOCK_PREFIX}{p}"), text.to_string()))
        }
        WorkflowModules::Folder(folder) => {
            let file = format!("{}.rhai", path.trim_end_matches(".rhai"));
            let importer_dir = std::path::Path::new(importer)
                .parent()
                .map(|p| p.to_path_buf());
            let candidates = [
                importer_dir.map(|d| d.join(&file)),
                Some(folder.join(&file)),
            ];
            candidates.into_iter().flatten().find_map(|candidate| {
                std::fs::read_to_string(&candidate)
                    .ok()
                    .map(|text| (candidate.display().to_string(), text))
            })
        }
    }
}

/// Checks `workflow` and its imports with the functions of `engine`.
pub fn check(engine: &Engine, workflow: &Workflow) -> Vec<CheckProblem> {
    let known = known_functions(engine);
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    check_file(
        engine,
        workflow,
        &known,
        &workflow.display,
        &workflow.source,
        &mut seen,
        &mut problems,
    );
    problems
}

fn check_file(
    engine: &Engine,
    workflow: &Workflow,
    known: &HashSet<String>,
    display: &str,
    source: &str,
    seen: &mut BTreeSet<String>,
    problems: &mut Vec<CheckProblem>,
) -> Option<HashSet<String>> {
    if !seen.insert(display.to_string()) {
        return None;
    }
    let ast = match compile(engine, display, source) {
        Ok(ast) => ast,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    let local = script_functions(&ast);
    problems.extend(crate::host::check_lints::lint(&ast, display));
    let calls = collect_calls(&ast, workflow, display, problems);
    let mut module_functions: Vec<(String, HashSet<String>)> = Vec::new();
    for call in &calls {
        if let Call::Import(alias, module_display, module_text) = call {
            let functions = check_file(
                engine,
                workflow,
                known,
                module_display,
                module_text,
                seen,
                problems,
            )
            .or_else(|| {
                compile(engine, module_display, module_text)
                    .ok()
                    .map(|ast| script_functions(&ast))
            })
            .unwrap_or_default();
            module_functions.push((alias.clone(), functions));
        }
    }
    check_calls(&calls, &local, known, &module_functions, display, problems);
    Some(local)
}

/// The imports (with the module's source, or a problem when it is not
/// found) and the function calls of `ast`, in the order they appear.
fn collect_calls(
    ast: &AST,
    workflow: &Workflow,
    display: &str,
    problems: &mut Vec<CheckProblem>,
) -> Vec<Call> {
    let mut calls = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Import(import, position))) => {
                let (expr, alias) = &**import;
                if let Expr::StringConstant(module_path, _) = expr {
                    match module_source(workflow, display, module_path) {
                        Some((module_display, module_text)) => {
                            calls.push(Call::Import(
                                alias.name.to_string(),
                                module_display,
                                module_text,
                            ));
                        }
                        None => problems.push(CheckProblem {
                            message: format!("module `{module_path}` not found"),
                            position: crate::host::script_error::describe_position(
                                Some(display),
                                *position,
                            ),
                        }),
                    }
                }
            }
            Some(ASTNode::Expr(Expr::FnCall(call, position)))
            | Some(ASTNode::Stmt(Stmt::FnCall(call, position)))
                if call.op_token.is_none() =>
            {
                let namespace = call
                    .is_qualified()
                    .then(|| call.namespace.root().to_string());
                calls.push(Call::Function(namespace, call.name.to_string(), *position));
            }
            _ => {}
        }
        true
    });
    calls
}

/// A problem for each call of `calls` to a function that is neither the
/// file's own (`local`), nor an engine function (`known`) or keyword, nor
/// (for `alias::name`) one of the imported module's.
fn check_calls(
    calls: &[Call],
    local: &HashSet<String>,
    known: &HashSet<String>,
    module_functions: &[(String, HashSet<String>)],
    display: &str,
    problems: &mut Vec<CheckProblem>,
) {
    for call in calls {
        if let Call::Function(namespace, name, position) = call {
            let exists = match namespace {
                None => local.contains(name) || known.contains(name) || is_language_keyword(name),
                Some(alias) => match module_functions.iter().find(|(a, _)| a == alias) {
                    Some((_, functions)) => functions.contains(name),
                    None => true, // a namespace checked elsewhere (e.g. a registered module)
                },
            };
            if !exists {
                let shown = match namespace {
                    Some(alias) => format!("{alias}::{name}"),
                    None => name.clone(),
                };
                problems.push(CheckProblem {
                    message: format!("call to a function that does not exist: {shown}()"),
                    position: crate::host::script_error::describe_position(
                        Some(display),
                        *position,
                    ),
                });
            }
        }
    }
}

enum Call {
    Import(String, String, String),
    Function(Option<String>, String, rhai::Position),
}

/// Function-call syntax handled by the language itself.
fn is_language_keyword(name: &str) -> bool {
    matches!(
        name,
        "Fn" | "call"
            | "curry"
            | "is_def_var"
            | "is_def_fn"
            | "is_shared"
            | "type_of"
            | "print"
            | "debug"
            | "eval"
            | "throw"
            | "this"
            | "!"
            | "-"
            | "+"
    )
}
