//! Files that appear under their final name only when complete: written to
//! `<dest>.partial` in the same folder, fsynced, renamed over `dest`, and the
//! folder fsynced so the rename itself survives a crash.
//!
//! A `.partial` left by a crash is never picked up: the next writer removes it
//! and starts over, and readers only ever look at final names.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The suffix of in-progress files.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// `<path>.partial`: where `path` is written before it is complete.
pub fn partial_path(path: &Path) -> PathBuf {
    with_suffix(path, PARTIAL_SUFFIX)
}

/// `path` with `suffix` appended to its file name (`a.tar` + `.sha256` = `a.tar.sha256`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// A file being written at `<dest>.partial`. [`PartialFile::commit`] moves it
/// to `dest`; dropping it uncommitted (error, cancellation, panic) removes it.
#[derive(Debug)]
pub struct PartialFile {
    partial: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl PartialFile {
    /// Creates `<dest>.partial` with permissions `mode`, replacing any leftover
    /// from an earlier crash. Fails when the folder of `dest` does not exist.
    pub fn create(dest: &Path, mode: u32) -> io::Result<(PartialFile, File)> {
        let partial = partial_path(dest);
        // Remove rather than truncate: a leftover may have other permissions,
        // or be a symlink someone planted; `create_new` never follows one.
        match std::fs::remove_file(&partial) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&partial)?;
        // The umask may have removed bits but never adds any; set exactly.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        Ok((
            PartialFile {
                partial,
                dest: dest.to_path_buf(),
                committed: false,
            },
            file,
        ))
    }

    /// The in-progress path.
    pub fn partial(&self) -> &Path {
        &self.partial
    }

    /// The final path.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flushes `file` to disk, renames `<dest>.partial` to `dest` and fsyncs
    /// the folder. `file` must be the one [`PartialFile::create`] returned.
    pub fn commit(mut self, file: File) -> io::Result<()> {
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.partial, &self.dest)?;
        self.committed = true;
        sync_parent(&self.dest)
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Fsyncs the folder holding `path`, so a rename or creation in it is durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// Writes `contents` to `path` atomically (temp + fsync + rename + fsync of
/// the folder) with permissions `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let (partial, mut file) = PartialFile::create(path, mode)?;
    file.write_all(contents)?;
    partial.commit(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn commit_moves_partial_to_dest_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tar");
        std::fs::write(partial_path(&dest), b"leftover from a crash").unwrap();
        let (partial, mut file) = PartialFile::create(&dest, 0o600).unwrap();
        file.write_all(b"new").unwrap();
        assert!(!dest.exists());
        partial.commit(file).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert!(!partial_path(&dest).exists());
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn dropping_uncommitted_removes_partial_and_leaves_dest_alone() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tar");
        std::fs::write(&dest, b"old").unwrap();
        let (partial, mut file) = PartialFile::create(&dest, 0o600).unwrap();
        file.write_all(b"half").unwrap();
        drop(partial);
        assert!(!partial_path(&dest).exists());
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    }
}
