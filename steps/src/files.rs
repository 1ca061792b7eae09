//! File helpers for workflows: small functions the engine exposes to scripts
//! next to the steps (`write_file`, `read_file`, `mkdir`, `remove`, `exists`,
//! `glob`, `file_size`, `disk_free`, `dir_size`). Plain Rust here; each doc
//! comment is user documentation, and [`FILES_DOC`] is their section of
//! `docs/steps.md`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use globset::GlobBuilder;

use crate::runtime::atomic_file::write_atomic;

/// Permissions of a file `write_file` creates (an existing file keeps its own).
pub const NEW_FILE_MODE: u32 = 0o644;
/// Largest file `read_file` reads: scripts handle text, not data.
pub const READ_LIMIT: u64 = 16 << 20;

/// The documentation of the file helpers, in the same shape as a step's DOC.
pub const FILES_DOC: &str = "\
File helpers: small functions for paths, files and folders.

They run directly (no retries, no timeout) and raise an error naming the path
when something goes wrong. Under --dry-run the ones that change something
(write_file, mkdir, remove) only log what they would do.

Functions:
  write_file(path, text)       writes text to a file atomically (temp file in the
                               same folder, fsync, rename): readers never see half
                               a file. A new file gets mode 0644, an existing one
                               keeps its mode.
  read_file(path)              the file's text (UTF-8, at most 16 MiB)
  mkdir(path)                  creates a folder and its parents; fine if it exists
  remove(path)                 removes a file, a symlink or an empty folder;
                               true if something was removed, false if nothing was
                               there. Refuses `/`, an empty path, the protected roots
                               from the config, and any folder holding one of them.
  remove(path, true)           the same, recursively (a folder and all it holds;
                               symlinks inside are removed, never followed)
  exists(path)                 true if the path exists (a dangling symlink does not)
  glob(pattern)                paths matching the pattern, sorted; `*` and `?` stay
                               within one name, `**` crosses folders, `{a,b}` and
                               `[ab]` work
  file_size(path)              size in bytes
  disk_free(path)              bytes available to runbook on the filesystem holding path
  write_access_error(path)     \"\" when runbook (its effective user) can create files
                               in the folder path, else why not (\"Read-only file
                               system (os error 30)\"); asks the kernel (access(2)),
                               writes nothing, so it is safe in a pre-flight and a plan
  dir_size(path)               total size in bytes of the files under a folder
                               (symlinks not followed)
  share_with_group(path, group)  sets the group of a file (or folder) and its mode to
                               0640 (0750): backups are created 0600, this lets a
                               backup operators' group read them, never others

Example:
  mkdir(`${dir}/cassandra`);
  if disk_free(dir) < 2 * dir_size(`/var/lib/cassandra/data/thehive`) { throw \"not enough room\" }
  write_file(`${dir}/elasticsearch_${stamp}.info`, snapshot_name);
  for old in glob(`${dir}/cassandra_*.tar`) { log_info(old) }
  remove(`${work}/staging`, true);
";

/// Why a file helper failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The operation failed on `path`.
    #[error("cannot {operation} {path}")]
    Io {
        /// What was being done, e.g. "read".
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// `remove` was asked to delete something it never deletes.
    #[error("refusing to remove {path}: {reason}")]
    Refused {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A glob pattern is invalid.
    #[error("invalid glob pattern `{pattern}`")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        source: globset::Error,
    },
    /// `read_file` on a file that is not text.
    #[error("{path} is not UTF-8 text")]
    NotText {
        /// The path.
        path: PathBuf,
    },
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError::Io {
        operation,
        path,
        source,
    }
}

/// Writes `text` to `path` atomically: to `<path>.partial` in the same folder,
/// fsynced, then renamed over `path` (readers see the old or the new file,
/// never half of one). A new file gets mode 0644; an existing one keeps its mode.
pub fn write_file(path: &Path, text: &str) -> Result<(), FileError> {
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(NEW_FILE_MODE);
    write_atomic(path, text.as_bytes(), mode).map_err(io_error("write", path))
}

/// The text of the file at `path` (UTF-8, at most [`READ_LIMIT`] bytes).
pub fn read_file(path: &Path) -> Result<String, FileError> {
    let size = file_size(path)?;
    if size > READ_LIMIT {
        return Err(FileError::Io {
            operation: "read",
            path: path.to_path_buf(),
            source: io::Error::other(format!("file is {size} bytes, over the {READ_LIMIT} limit")),
        });
    }
    let bytes = std::fs::read(path).map_err(io_error("read", path))?;
    String::from_utf8(bytes).map_err(|_| FileError::NotText {
        path: path.to_path_buf(),
    })
}

/// Creates the folder `path` and any missing parents; fine if it exists.
pub fn mkdir(path: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(path).map_err(io_error("create folder", path))
}

/// Removes `path`: a file, a symlink (not what it points to) or, with
/// `recursive`, a folder and everything in it (an empty folder without).
/// Returns false when nothing was there. Refuses `/`, an empty path, any of
/// `protected` and any folder holding one of them.
pub fn remove(path: &Path, recursive: bool, protected: &[PathBuf]) -> Result<bool, FileError> {
    let refuse = |reason: String| FileError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(refuse("empty path".into()));
    }
    let absolute = absolute_normalized(path).map_err(io_error("resolve", path))?;
    if absolute.parent().is_none() {
        return Err(refuse("it is the root folder".into()));
    }
    for root in protected {
        let root_abs = absolute_normalized(root).map_err(io_error("resolve", root))?;
        if root_abs.starts_with(&absolute) {
            return Err(refuse(if root_abs == absolute {
                "it is a protected root".into()
            } else {
                format!("it holds the protected root {}", root.display())
            }));
        }
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error("remove", path)(e)),
    };
    let removed = if !meta.is_dir() {
        std::fs::remove_file(path)
    } else if recursive {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_dir(path)
    };
    removed.map_err(io_error("remove", path))?;
    Ok(true)
}

/// `path` made absolute and cleaned of `.` and `..`, with symlinks in its
/// existing parent folders resolved (so `/mnt/backup/../backup` and a symlink
/// to a protected root are recognized).
fn absolute_normalized(path: &Path) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut clean = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    // Resolve the parent (the path itself may be a symlink we remove as such).
    if let (Some(parent), Some(name)) = (clean.parent(), clean.file_name())
        && let Ok(real_parent) = std::fs::canonicalize(parent)
    {
        return Ok(real_parent.join(name));
    }
    Ok(clean)
}

/// True if `path` exists (following symlinks: a dangling symlink is false).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// The characters that make a path component a pattern rather than a name.
const GLOB_SPECIAL: [char; 4] = ['*', '?', '[', '{'];

/// Paths matching `pattern`, sorted. `*` and `?` match within one name, `**`
/// any number of folders, `{a,b}` alternatives, `[ab]` a character class.
/// Symlinks are listed but not followed into.
pub fn glob(pattern: &str) -> Result<Vec<PathBuf>, FileError> {
    let matcher = GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|source| FileError::Pattern {
            pattern: pattern.to_string(),
            source,
        })?
        .compile_matcher();
    // Walk from the longest leading part without wildcards.
    let mut base = PathBuf::new();
    let mut rest = 0usize;
    let mut deep = false;
    for component in Path::new(pattern).components() {
        let text = component.as_os_str().to_string_lossy();
        let wild = text.contains(GLOB_SPECIAL);
        if rest == 0 && !wild {
            base.push(component);
        } else {
            rest += 1;
            deep |= text.contains("**");
        }
    }
    if rest == 0 {
        return Ok(if Path::new(pattern).symlink_metadata().is_ok() {
            vec![PathBuf::from(pattern)]
        } else {
            Vec::new()
        });
    }
    let start = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base.clone()
    };
    let mut walker = walkdir::WalkDir::new(&start)
        .min_depth(1)
        .follow_links(false);
    if !deep {
        walker = walker.max_depth(rest);
    }
    let mut found: Vec<PathBuf> = walker
        .into_iter()
        .filter_map(Result::ok)
        .map(|entry| {
            if base.as_os_str().is_empty() {
                // Patterns without a folder match paths without the `./`.
                entry
                    .path()
                    .strip_prefix(".")
                    .unwrap_or(entry.path())
                    .to_path_buf()
            } else {
                entry.into_path()
            }
        })
        .filter(|path| matcher.is_match(path))
        .collect();
    found.sort();
    Ok(found)
}

/// Size of the file at `path` in bytes (following symlinks).
pub fn file_size(path: &Path) -> Result<u64, FileError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(io_error("read the size of", path))
}

/// Bytes available to this (unprivileged) process on the filesystem holding `path`.
pub fn disk_free(path: &Path) -> Result<u64, FileError> {
    let stat = nix::sys::statvfs::statvfs(path)
        .map_err(|errno| io_error("read free space of", path)(io::Error::from(errno)))?;
    #[allow(clippy::useless_conversion)] // the types differ between platforms
    Ok(u64::from(stat.blocks_available()) * u64::from(stat.fragment_size()))
}

/// Shares a private file with a group: sets its group to `group` and its mode
/// to 0640 (a folder: 0750). Backups are created 0600 (attachments of a
/// security incident platform are sensitive); this widens them to a backup
/// operators' group only, never to others.
pub fn share_with_group(path: &Path, group: &str) -> Result<(), FileError> {
    let unknown = || FileError::Io {
        operation: "find the group for",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::NotFound, format!("no group named `{group}`")),
    };
    let gid = nix::unistd::Group::from_name(group)
        .ok()
        .flatten()
        .ok_or_else(unknown)?
        .gid;
    let metadata = std::fs::symlink_metadata(path).map_err(io_error("share", path))?;
    nix::unistd::chown(path, None, Some(gid))
        .map_err(|e| io_error("change the group of", path)(io::Error::from(e)))?;
    let mode = if metadata.is_dir() { 0o750 } else { 0o640 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_error("change the mode of", path))
}

/// Total size in bytes of the regular files under the folder `path`
/// (symlinks are not followed; a file with several hard links counts each
/// time). Each folder is opened relative to its parent, so paths longer than
/// PATH_MAX are counted too; a file that vanishes meanwhile is not.
pub fn dir_size(path: &Path) -> Result<u64, FileError> {
    use nix::dir::Dir;
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let dir = Dir::open(path, flags, Mode::empty())
        .map_err(|errno| io_error("read", path)(errno.into()))?;
    size_below(dir, path)
}

fn size_below(mut dir: nix::dir::Dir, path: &Path) -> Result<u64, FileError> {
    use nix::dir::{Dir, Type};
    use nix::errno::Errno;
    use nix::fcntl::{AtFlags, OFlag};
    use nix::sys::stat::{Mode, fstatat};
    use std::os::unix::ffi::OsStrExt;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(|errno| io_error("read", path)(errno.into()))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push((name.to_owned(), entry.file_type()));
        }
    }
    let mut total = 0;
    for (name, kind) in names {
        let entry_path = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        let stat = match kind {
            Some(Type::Directory | Type::File) | None => {
                match fstatat(&dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(stat) => stat,
                    Err(Errno::ENOENT) => continue,
                    Err(errno) => return Err(io_error("read", &entry_path)(errno.into())),
                }
            }
            Some(_) => continue,
        };
        match stat.st_mode & libc::S_IFMT {
            libc::S_IFREG => total += stat.st_size.max(0) as u64,
            libc::S_IFDIR => {
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                match Dir::openat(&dir, name.as_c_str(), flags, Mode::empty()) {
                    Ok(sub) => total += size_below(sub, &entry_path)?,
                    Err(Errno::ENOENT) => {}
                    Err(errno) => return Err(io_error("read", &entry_path)(errno.into())),
                }
            }
            _ => {}
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.info");
        mkdir(path.parent().unwrap()).unwrap();
        write_file(&path, "snap").unwrap();
        assert_eq!(read_file(&path).unwrap(), "snap");
        assert_eq!(file_size(&path).unwrap(), 4);
        assert_eq!(dir_size(dir.path()).unwrap(), 4);
        assert!(exists(&path));
        assert!(disk_free(dir.path()).unwrap() > 0);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, NEW_FILE_MODE);
    }

    #[test]
    fn remove_refuses_root_empty_and_protected() {
        let dir = tempfile::tempdir().unwrap();
        let protected = vec![dir.path().join("backup")];
        mkdir(&protected[0].join("x")).unwrap();
        for (path, reason) in [
            (PathBuf::from("/"), "root folder"),
            (PathBuf::new(), "empty path"),
            (dir.path().join("backup"), "protected root"),
            (
                dir.path().join("backup/x/../.."),
                "holds the protected root",
            ),
            (dir.path().to_path_buf(), "holds the protected root"),
        ] {
            let e = remove(&path, true, &protected).unwrap_err();
            assert!(e.to_string().contains(reason), "{}: {e}", path.display());
        }
        // Not recursive: a non-empty folder stays.
        assert!(remove(&protected[0].join("x/.."), false, &[]).is_err());
        assert!(remove(&protected[0].join("x"), false, &protected).unwrap());
        assert!(!remove(&protected[0].join("x"), false, &protected).unwrap());
    }

    #[test]
    fn glob_is_sorted_and_respects_separators() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.tar", "a.tar", "sub/c.tar", "a.tar.sha256"] {
            let path = dir.path().join(name);
            mkdir(path.parent().unwrap()).unwrap();
            std::fs::write(path, "").unwrap();
        }
        let base = dir.path().display();
        let names = |pattern: String| -> Vec<String> {
            glob(&pattern)
                .unwrap()
                .iter()
                .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(names(format!("{base}/*.tar")), ["a.tar", "b.tar"]);
        assert_eq!(
            names(format!("{base}/**/*.tar")),
            ["a.tar", "b.tar", "sub/c.tar"]
        );
        assert_eq!(names(format!("{base}/a.tar")), ["a.tar"]);
    }
}
