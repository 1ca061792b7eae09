//! Refusing workflow files others could have changed: when runbook runs as
//! root, a workflow or module writable by group or others would let any such
//! user run code as root.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a script file is refused.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeScript {
    /// Group- or world-writable while running as root.
    #[error(
        "refusing {path}: it is writable by {who} and runbook runs as root (fix: chmod go-w {path})"
    )]
    Writable {
        /// The file.
        path: String,
        /// "group", "others" or "group and others".
        who: &'static str,
    },
    /// The file cannot be inspected.
    #[error("cannot inspect {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Checks a workflow or module file before it is loaded.
pub fn check_script_file(path: &Path) -> Result<(), UnsafeScript> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let metadata = std::fs::metadata(path).map_err(|source| UnsafeScript::Io {
        path: path.display().to_string(),
        source,
    })?;
    let mode = metadata.mode();
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "group and others",
        (true, false) => "group",
        (false, true) => "others",
        (false, false) => return Ok(()),
    };
    Err(UnsafeScript::Writable {
        path: path.display().to_string(),
        who,
    })
}
