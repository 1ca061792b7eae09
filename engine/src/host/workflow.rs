//! Finding a workflow (a `.rhai` file or a stock workflow embedded in the
//! binary) and resolving its `import`s.

use std::path::{Path, PathBuf};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};
use sha2::{Digest, Sha256};

/// The stock workflows and their library, embedded in the binary: (path
/// relative to `workflows/`, source).
pub const STOCK_FILES: &[(&str, &str)] = &[
    (
        "cluster-hot-backup.rhai",
        include_str!("../../../workflows/cluster-hot-backup.rhai"),
    ),
    (
        "restore-prep.rhai",
        include_str!("../../../workflows/restore-prep.rhai"),
    ),
    (
        "restore-bucket.rhai",
        include_str!("../../../workflows/restore-bucket.rhai"),
    ),
    (
        "lib/thehive.rhai",
        include_str!("../../../workflows/lib/thehive.rhai"),
    ),
    (
        "cluster-hot-restore.rhai",
        include_str!("../../../workflows/cluster-hot-restore.rhai"),
    ),
    (
        "lib/restore_cassandra.rhai",
        include_str!("../../../workflows/lib/restore_cassandra.rhai"),
    ),
    (
        "lib/restore_elasticsearch.rhai",
        include_str!("../../../workflows/lib/restore_elasticsearch.rhai"),
    ),
    (
        "lib/restore_storage.rhai",
        include_str!("../../../workflows/lib/restore_storage.rhai"),
    ),
    (
        "lib/restore_plan.rhai",
        include_str!("../../../workflows/lib/restore_plan.rhai"),
    ),
];

/// Prefix of the display name of stock workflow files.
pub const STOCK_PREFIX: &str = "stock:";

/// A loaded workflow.
pub struct Workflow {
    /// Its name (file stem): names the journal and the lock.
    pub name: String,
    /// What messages show: the path, or `stock:NAME.rhai`.
    pub display: String,
    /// The source text.
    pub source: String,
    /// Where its imports resolve: the file's folder, or the embedded stock files.
    pub modules: WorkflowModules,
}

/// Why a workflow cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// Neither a file nor a stock name.
    #[error("no workflow file `{0}` and no stock workflow of that name; stock workflows: {1}")]
    NotFound(String, String),
    /// The file is writable by others while running as root.
    #[error(transparent)]
    Unsafe(#[from] crate::host::file_safety::UnsafeScript),
    /// The folder holding the workflow could be changed by another user.
    #[error(transparent)]
    Untrusted(#[from] crate::host::file_safety::Untrusted),
    /// The file cannot be read.
    #[error("cannot read workflow {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The names of the stock workflows (not the library).
pub fn stock_workflow_names() -> Vec<&'static str> {
    STOCK_FILES
        .iter()
        .filter(|(path, _)| !path.contains('/'))
        .map(|(path, _)| path.trim_end_matches(".rhai"))
        .collect()
}

fn stock_source(path: &str) -> Option<&'static str> {
    STOCK_FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, source)| *source)
}

impl Workflow {
    /// Loads `spec`: a path to a `.rhai` file, or the name of a stock workflow.
    pub fn load(spec: &str) -> Result<Self, WorkflowError> {
        let path = Path::new(spec);
        let looks_like_path = spec.contains('/') || spec.ends_with(".rhai") || path.exists();
        if looks_like_path {
            crate::host::file_safety::check_script_file(path)?;
            let source = std::fs::read_to_string(path).map_err(|source| WorkflowError::Read {
                path: spec.to_string(),
                source,
            })?;
            let folder = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            // Modules are imported from this folder: whoever can write it
            // decides what the workflow runs.
            crate::host::file_safety::check_trusted(
                &folder,
                crate::host::file_safety::TrustedUse::WorkflowFolder,
            )?;
            return Ok(Workflow {
                name: file_stem(spec),
                display: spec.to_string(),
                source,
                modules: WorkflowModules::Folder(folder),
            });
        }
        let file = format!("{spec}.rhai");
        match stock_source(&file) {
            Some(source) if !spec.contains('/') => Ok(Workflow {
                name: spec.to_string(),
                display: format!("{STOCK_PREFIX}{file}"),
                source: source.to_string(),
                modules: WorkflowModules::Stock,
            }),
            _ => Err(WorkflowError::NotFound(
                spec.to_string(),
                stock_workflow_names().join(", "),
            )),
        }
    }

    /// SHA-256 of the source, hex.
    pub fn sha256(&self) -> String {
        hex_digest(self.source.as_bytes())
    }
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn file_stem(spec: &str) -> String {
    Path::new(spec)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workflow".to_string())
}

/// The source text of a file named in an error position (for the excerpt).
pub fn source_text(name: &str) -> Option<String> {
    match name.strip_prefix(STOCK_PREFIX) {
        Some(stock) => stock_source(stock).map(str::to_string),
        None => std::fs::read_to_string(name).ok(),
    }
}

/// Resolves `import "lib/x" as x;`.
#[derive(Clone, Debug)]
pub enum WorkflowModules {
    /// Relative to the workflow file's folder (then to the importing file's).
    Folder(PathBuf),
    /// From the stock files embedded in the binary.
    Stock,
}

impl ModuleResolver for WorkflowModules {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        match self {
            WorkflowModules::Folder(folder) => {
                // Relative to the importing file's folder, else the workflow's.
                let file = format!("{}.rhai", path.trim_end_matches(".rhai"));
                let importer_dir = source
                    .filter(|s| !s.starts_with(STOCK_PREFIX))
                    .and_then(|s| Path::new(s).parent())
                    .map(Path::to_path_buf);
                let resolved = [
                    importer_dir.map(|d| d.join(&file)),
                    Some(folder.join(&file)),
                ]
                .into_iter()
                .flatten()
                .find(|candidate| candidate.is_file())
                .ok_or_else(|| {
                    Box::new(EvalAltResult::ErrorModuleNotFound(
                        format!("{path} (looked for {})", folder.join(&file).display()),
                        position,
                    ))
                })?;
                let display = resolved.display().to_string();
                crate::host::file_safety::check_script_file(&resolved).map_err(|e| {
                    Box::new(EvalAltResult::ErrorInModule(
                        display.clone(),
                        EvalAltResult::ErrorRuntime(e.to_string().into(), Position::NONE).into(),
                        position,
                    ))
                })?;
                let text = std::fs::read_to_string(&resolved).map_err(|e| {
                    Box::new(EvalAltResult::ErrorInModule(
                        display.clone(),
                        EvalAltResult::ErrorRuntime(
                            format!("cannot read {display}: {e}").into(),
                            Position::NONE,
                        )
                        .into(),
                        position,
                    ))
                })?;
                compile_module(engine, &display, &text, position)
            }
            WorkflowModules::Stock => {
                let file = format!("{}.rhai", path.trim_end_matches(".rhai"));
                let text = stock_source(&file).ok_or_else(|| {
                    Box::new(EvalAltResult::ErrorModuleNotFound(
                        path.to_string(),
                        position,
                    ))
                })?;
                compile_module(engine, &format!("{STOCK_PREFIX}{file}"), text, position)
            }
        }
    }
}

/// Compiles and evaluates a module; errors name the module file.
fn compile_module(
    engine: &Engine,
    display: &str,
    text: &str,
    position: Position,
) -> Result<Shared<Module>, Box<EvalAltResult>> {
    let in_module = |e: Box<EvalAltResult>| {
        Box::new(EvalAltResult::ErrorInModule(
            display.to_string(),
            e,
            position,
        ))
    };
    let mut ast = engine.compile(text).map_err(|e| in_module(e.into()))?;
    ast.set_source(display.to_string());
    let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
    Ok(module.into())
}
