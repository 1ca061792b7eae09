//! One run of a workflow at a time: an exclusive `flock` on
//! `<journal-dir>/<workflow name>.lock`. The kernel drops the lock when the
//! holder dies, so a lock left by a dead process never blocks.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// A held run lock; released on drop.
pub struct RunLock {
    _lock: Flock<File>,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live run holds it.
    #[error("another run of this workflow is in progress ({holder}); lock file {path}")]
    Held {
        /// "pid N since TIME" as the holder wrote it.
        holder: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file cannot be opened.
    #[error("cannot open the lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl RunLock {
    /// Takes the lock for `workflow_name` in `dir`, without waiting.
    pub fn acquire(dir: &Path, workflow_name: &str) -> Result<Self, LockError> {
        let path = dir.join(format!("{workflow_name}.lock"));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    holder: if holder.is_empty() {
                        "holder unknown".to_string()
                    } else {
                        holder.to_string()
                    },
                    path,
                });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        // Record who holds it, for the message a second run prints.
        let note = format!(
            "pid {} since {}",
            std::process::id(),
            chrono::Local::now().format("%Y-%m-%d %H:%M:%S %Z")
        );
        lock.set_len(0).map_err(io)?;
        lock.rewind().map_err(io)?;
        lock.write_all(note.as_bytes()).map_err(io)?;
        lock.flush().map_err(io)?;
        Ok(RunLock { _lock: lock })
    }
}
