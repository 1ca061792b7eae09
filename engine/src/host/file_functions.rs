//! The file helpers (`write_file`, `read_file`, `mkdir`, ...) exposed to
//! scripts. The work is done by `runbook_steps::files`; this file only adapts
//! arguments, errors (with the script position) and dry-run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, NativeCallContext};
use runbook_steps::files;

use crate::host::run_state::RunState;
use crate::host::script_error::{describe_position, runtime_error};
use runbook_steps::ErrorKind;
use runbook_steps::runtime::error::one_line;

type FnResult<T> = Result<T, Box<EvalAltResult>>;

fn error(
    state: &RunState,
    context: &NativeCallContext,
    name: &str,
    e: impl std::fmt::Display,
) -> Box<EvalAltResult> {
    runtime_error(
        name,
        ErrorKind::File,
        format!("{name}: {e}"),
        describe_position(
            context.call_source().or(Some(&state.workflow_display)),
            context.call_position(),
        ),
        context.call_position(),
    )
}

/// Folders a script may never remove: every absolute path among the config
/// values (archive folders, data folders) and `/`.
fn protected_roots(state: &RunState) -> Vec<PathBuf> {
    let config = state.config.lock().expect("config lock poisoned");
    config
        .values()
        .filter_map(|v| v.clone().into_string().ok())
        .filter(|s| s.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Registers the file helpers: those that change files, those that read
/// them, and those that measure them.
pub fn register(engine: &mut Engine, state: &Arc<RunState>) {
    register_writes(engine, state);
    register_reads(engine, state);
    register_sizes(engine, state);
}

/// `write_file`, `mkdir`, `remove` and `share_with_group`: each says what
/// it would do under dry-run, and marks the run as having changed something.
fn register_writes(engine: &mut Engine, state: &Arc<RunState>) {
    let s = Arc::clone(state);
    engine.register_fn(
        "write_file",
        move |c: NativeCallContext, path: &str, text: &str| -> FnResult<()> {
            if s.dry_run {
                tracing::info!("[dry-run] would write {path} ({} bytes)", text.len());
                return Ok(());
            }
            s.note_change();
            files::write_file(Path::new(path), text)
                .map_err(|e| error(&s, &c, "write_file", one_line(&e)))
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "write_file",
        move |c: NativeCallContext, path: &str, text: &str, mode: i64| -> FnResult<()> {
            if s.dry_run {
                tracing::info!(
                    "[dry-run] would write {path} ({} bytes, mode {mode:o})",
                    text.len()
                );
                return Ok(());
            }
            let mode = u32::try_from(mode)
                .map_err(|_| error(&s, &c, "write_file", format!("bad mode {mode}")))?;
            s.note_change();
            runbook_steps::runtime::atomic_file::write_atomic(
                Path::new(path),
                text.as_bytes(),
                mode,
            )
            .map_err(|e| error(&s, &c, "write_file", format!("cannot write {path}: {e}")))
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "mkdir",
        move |c: NativeCallContext, path: &str| -> FnResult<()> {
            if s.dry_run {
                if !Path::new(path).is_dir() {
                    tracing::info!("[dry-run] would create folder {path}");
                }
                return Ok(());
            }
            s.note_change();
            files::mkdir(Path::new(path)).map_err(|e| error(&s, &c, "mkdir", one_line(&e)))
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "remove",
        move |c: NativeCallContext, path: &str| -> FnResult<bool> { remove(&s, &c, path, false) },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "remove",
        move |c: NativeCallContext, path: &str, recursive: bool| -> FnResult<bool> {
            remove(&s, &c, path, recursive)
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "share_with_group",
        move |c: NativeCallContext, path: &str, group: &str| -> FnResult<()> {
            if s.dry_run {
                tracing::info!("[dry-run] would give {path} to group {group} (mode 0640)");
                return Ok(());
            }
            s.note_change();
            files::share_with_group(Path::new(path), group)
                .map_err(|e| error(&s, &c, "share_with_group", one_line(&e)))
        },
    );
}

/// `read_file`, `exists`, `glob` and `write_access_error`: they change nothing.
fn register_reads(engine: &mut Engine, state: &Arc<RunState>) {
    let s = Arc::clone(state);
    engine.register_fn(
        "read_file",
        move |c: NativeCallContext, path: &str| -> FnResult<String> {
            files::read_file(Path::new(path)).map_err(|e| error(&s, &c, "read_file", one_line(&e)))
        },
    );
    engine.register_fn("exists", |path: &str| files::exists(Path::new(path)));
    let s = Arc::clone(state);
    engine.register_fn(
        "glob",
        move |c: NativeCallContext, pattern: &str| -> FnResult<Array> {
            files::glob(pattern)
                .map(|paths| {
                    paths
                        .into_iter()
                        .map(|p| Dynamic::from(p.display().to_string()))
                        .collect()
                })
                .map_err(|e| error(&s, &c, "glob", one_line(&e)))
        },
    );
    engine.register_fn("write_access_error", |path: &str| {
        write_access_error(Path::new(path))
    });
}

/// `file_size`, `disk_free` and `dir_size`, in bytes.
fn register_sizes(engine: &mut Engine, state: &Arc<RunState>) {
    register_size(engine, state, "file_size", files::file_size);
    register_size(engine, state, "disk_free", files::disk_free);
    register_size(engine, state, "dir_size", files::dir_size);
}

/// The script function `name(path)`: the bytes `measure` finds at `path`.
fn register_size(
    engine: &mut Engine,
    state: &Arc<RunState>,
    name: &'static str,
    measure: fn(&Path) -> Result<u64, files::FileError>,
) {
    let s = Arc::clone(state);
    engine.register_fn(
        name,
        move |c: NativeCallContext, path: &str| -> FnResult<i64> {
            measure(Path::new(path))
                .map(as_i64)
                .map_err(|e| error(&s, &c, name, one_line(&e)))
        },
    );
}

/// Why the effective user cannot create files in the folder `path`, or ""
/// when it can. Writes nothing (access(2) with W_OK|X_OK and AT_EACCESS, which
/// also reports a read-only mount), so it is safe in a pre-flight and a plan.
fn write_access_error(path: &Path) -> String {
    match check_write_access(path) {
        Ok(()) => String::new(),
        Err(reason) => reason,
    }
}

/// `Ok` when the effective user can create files in the folder `path`;
/// else why not. Writes nothing (see `write_access_error`).
pub fn check_write_access(path: &Path) -> Result<(), String> {
    use nix::unistd::{AccessFlags, faccessat};
    match std::fs::metadata(path) {
        Err(e) => return Err(e.to_string()),
        Ok(meta) if !meta.is_dir() => return Err("it is not a folder".to_string()),
        Ok(_) => {}
    }
    faccessat(
        nix::fcntl::AT_FDCWD,
        path,
        AccessFlags::W_OK | AccessFlags::X_OK,
        nix::fcntl::AtFlags::AT_EACCESS,
    )
    .map_err(|errno| std::io::Error::from_raw_os_error(errno as i32).to_string())
}

fn remove(
    state: &RunState,
    context: &NativeCallContext,
    path: &str,
    recursive: bool,
) -> FnResult<bool> {
    if state.dry_run {
        let exists = Path::new(path).symlink_metadata().is_ok();
        if exists {
            let what = if recursive {
                " and everything in it"
            } else {
                ""
            };
            tracing::info!("[dry-run] would remove {path}{what}");
        }
        return Ok(exists);
    }
    state.note_change();
    files::remove(Path::new(path), recursive, &protected_roots(state))
        .map_err(|e| error(state, context, "remove", one_line(&e)))
}
