//! `private_dir()`: a folder for files that hold a secret while a program
//! reads them (a cqlshrc with the Cassandra password), kept out of the archive
//! folders (a backup share others may read).
//!
//! The folder is `<base>/<workflow>-<pid>-<ms>`, mode 0700, under the first of
//! `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`), `$XDG_RUNTIME_DIR/runbook`,
//! `/run/runbook` (as root), or `<temp dir>/runbook-<uid>`. Its removal is an
//! undo action journaled *before* it is created: it goes when the run ends
//! (success, failure, SIGINT/SIGTERM) and, after a SIGKILL, by `runbook recover`
//! or the next run.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::host::compensation::Action;
use crate::host::file_safety::{TrustedUse, check_trusted};
use crate::host::run_state::RunState;

/// This run's folder, once made (one run per process).
static FOLDER: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The folder that holds the runs' private folders.
fn base() -> PathBuf {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dirs) = from_env("RUNTIME_DIRECTORY") {
        // systemd separates several runtime directories with `:`.
        let first = dirs
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or("")
            .to_string();
        if !first.is_empty() {
            return PathBuf::from(first);
        }
    }
    if let Some(xdg) = from_env("XDG_RUNTIME_DIR") {
        return PathBuf::from(xdg).join("runbook");
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/runbook");
    }
    std::env::temp_dir().join(format!("runbook-{}", nix::unistd::geteuid()))
}

/// Returns this run's private folder, making it (and journaling its removal)
/// on the first call. In a dry run, the path only.
pub fn private_dir(state: &Arc<RunState>, position: String) -> Result<String, String> {
    let mut folder = FOLDER.lock().expect("private folder lock poisoned");
    if let Some(path) = folder.as_ref() {
        return Ok(path.display().to_string());
    }
    let base = base();
    let display = &state.workflow_display;
    let name = std::path::Path::new(
        display
            .strip_prefix(crate::host::workflow::STOCK_PREFIX)
            .unwrap_or(display),
    )
    .file_stem()
    .map(|s| s.to_string_lossy().into_owned())
    .unwrap_or_else(|| "workflow".to_string());
    let path = base.join(format!(
        "{name}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    ));
    if state.dry_run {
        return Ok(path.display().to_string());
    }
    let fix = "set RUNTIME_DIRECTORY to a private folder (systemd: RuntimeDirectory=runbook)";
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)
        .map_err(|e| {
            format!(
                "cannot create the runtime folder {}: {e} ({fix})",
                base.display()
            )
        })?;
    // Another user could otherwise read or swap the files put there.
    check_trusted(&base, TrustedUse::RuntimeFolder).map_err(|e| format!("{e}; or {fix}"))?;
    let id = state.add_compensation(
        format!("remove private folder {}", path.display()),
        Action::Remove {
            remove: path.display().to_string(),
        },
        position,
    );
    state
        .run_compensations
        .lock()
        .expect("compensation list poisoned")
        .push(id);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .map_err(|e| {
            format!(
                "cannot create the private folder {}: {e} ({fix})",
                path.display()
            )
        })?;
    *folder = Some(path.clone());
    Ok(path.display().to_string())
}
