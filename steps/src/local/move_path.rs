//! `move_path`: renames a file or folder within one file system, atomically,
//! never over something that exists unless told to replace it.
//!
//! A restore sets the live attachment folder aside with it (and its undo,
//! journaled before, moves it back, replacing whatever was put in its place),
//! then moves the extracted folder into place. rename(2) is atomic only within
//! one file system: another file system is refused (EXDEV), never copied.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use serde::{Deserialize, Serialize};

use crate::runtime::blocking_work::run_blocking;
use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};

/// The `move_path` step.
pub struct MovePath;

/// Options of `move_path`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MovePathOptions {
    /// What to move.
    pub from: PathBuf,
    /// Its new path (same file system).
    pub to: PathBuf,
    /// When `to` exists, replace it (it is removed, recursively).
    #[serde(default)]
    pub replace: bool,
    /// When `from` does not exist, do nothing (an undo that may run twice).
    #[serde(default)]
    pub missing_ok: bool,
    /// Give `from` the owner, group and mode of this path before the move.
    #[serde(default)]
    pub like: Option<PathBuf>,
}

/// Result of `move_path`.
#[derive(Debug, Default, Serialize)]
pub struct MovePathOutput {
    /// `from` was moved (false: it did not exist and `missing_ok` was set).
    pub moved: bool,
    /// Something at `to` was replaced (and removed).
    pub replaced: bool,
}

/// Why `move_path` failed.
#[derive(Debug, thiserror::Error)]
pub enum MovePathError {
    /// `from` does not exist.
    #[error("cannot move {}: it does not exist", from.display())]
    Missing {
        /// The path.
        from: PathBuf,
    },
    /// `to` exists and `replace` is not set.
    #[error("cannot move {} to {}: that name is taken (nothing was moved)", from.display(), to.display())]
    Exists {
        /// The path to move.
        from: PathBuf,
        /// The path that exists.
        to: PathBuf,
    },
    /// The two paths are on different file systems: no atomic rename.
    #[error("cannot move {} to {}: they are on different file systems (a move must be one atomic rename)", from.display(), to.display())]
    CrossDevice {
        /// The path to move.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
    },
    /// Another file-system error.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl StepFailure for MovePathError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            MovePathError::Missing { .. } => ErrorKind::NotFound,
            MovePathError::Exists { .. } => ErrorKind::Exists,
            MovePathError::CrossDevice { .. } => ErrorKind::CrossDevice,
            MovePathError::Io { .. } => ErrorKind::Io,
        }
    }
}

impl Step for MovePath {
    const NAME: &'static str = "move_path";
    const DOC: &'static str = "\
Renames a file or folder atomically (rename(2)), within one file system.

Never moves over something: when `to` exists the step fails, unless `replace`
is set; then what is at `to` is first renamed to `.<name>.replaced-by-runbook`
next to it, `from` is renamed to `to`, and the replaced one is removed
(recursively, symlinks never followed). Run again after a crash at any point,
it finishes the same move: the undo of setting a folder aside is a move back
with `replace` and `missing_ok`. Paths on different file systems are refused
(no copy: a move must be atomic). With `like`, `from` first gets that path's
owner, group (changing them needs root) and mode, e.g. a restored folder
taking the live folder's so the service that owns it can still write it.

Options:
  from        string  what to move (required)
  to          string  its new path, on the same file system (required)
  replace     bool    replace what is at `to` (default false: fail when it exists)
  missing_ok  bool    do nothing when `from` does not exist (default false)
  like        string  give `from` this path's owner, group and mode first (default: none)

Result:
  moved     bool  `from` was moved (false: it was missing and missing_ok is set)
  replaced  bool  something at `to` was replaced

Example:
  undo(#{ label: `put ${live} back`, step: \"move_path\",
          options: #{ from: aside, to: live, replace: true, missing_ok: true } });
  move_path(#{ from: live, to: aside });
";

    type Options = MovePathOptions;
    type Output = MovePathOutput;

    fn describe(options: &MovePathOptions) -> String {
        format!(
            "move {} to {}{}",
            options.from.display(),
            options.to.display(),
            if options.replace {
                " (replacing what is there)"
            } else {
                ""
            }
        )
    }

    fn dry_run(_options: &MovePathOptions) -> DryRun<MovePathOutput> {
        DryRun::Skip(MovePathOutput::default())
    }

    async fn run(options: MovePathOptions, _ctx: StepContext) -> Result<MovePathOutput, StepError> {
        run_blocking("move_path", move || move_path(&options)).await
    }
}

/// The name what `to` held is renamed to while it is replaced:
/// `.<name>.replaced-by-runbook` in its folder.
pub fn replaced_name(to: &Path) -> PathBuf {
    let mut name = OsString::from(".");
    name.push(to.file_name().unwrap_or_default());
    name.push(".replaced-by-runbook");
    to.with_file_name(name)
}

/// The blocking body of the step: checks `from` (a missing one with
/// `missing_ok` finishes a replace cut short), gives it `like`'s attributes,
/// moves what `to` holds aside when replacing, renames `from` to `to`
/// (never over anything), then removes what was moved aside.
pub fn move_path(options: &MovePathOptions) -> Result<MovePathOutput, MovePathError> {
    let from = &options.from;
    let to = &options.to;
    let replaced = replaced_name(to);
    if !exists(from)? {
        if options.missing_ok {
            // A replace cut short after its rename: finish its cleanup.
            if options.replace {
                remove_if_present(&replaced)?;
            }
            return Ok(MovePathOutput::default());
        }
        return Err(MovePathError::Missing { from: from.clone() });
    }
    if let Some(like) = &options.like {
        take_attributes(from, like)?;
    }
    let mut output = MovePathOutput {
        moved: true,
        replaced: false,
    };
    if options.replace {
        // A leftover of a replace that was cut short is that replace's to remove.
        remove_if_present(&replaced)?;
        if exists(to)? {
            rename_no_replace(to, &replaced)?;
            output.replaced = true;
        }
    }
    rename_no_replace(from, to)?;
    if options.replace {
        remove_if_present(&replaced)?;
    }
    Ok(output)
}

/// The error of `action` failing on `path`.
fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> MovePathError {
    let path = path.to_path_buf();
    move |source| MovePathError::Io {
        action,
        path,
        source,
    }
}

/// Whether something (a symlink counts, even dangling) is at `path`.
fn exists(path: &Path) -> Result<bool, MovePathError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

/// Removes the file, symlink or folder (with all it holds) at `path`, if any.
fn remove_if_present(path: &Path) -> Result<(), MovePathError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    }
    .map_err(io_error("remove", path))
}

/// Renames `source` to `dest`, never over anything there (not even an empty
/// folder, which rename(2) alone would replace), nor across filesystems.
fn rename_no_replace(source: &Path, dest: &Path) -> Result<(), MovePathError> {
    renameat2(
        AT_FDCWD,
        source,
        AT_FDCWD,
        dest,
        RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|errno| match errno {
        Errno::EEXIST | Errno::ENOTEMPTY => MovePathError::Exists {
            from: source.to_path_buf(),
            to: dest.to_path_buf(),
        },
        Errno::EXDEV => MovePathError::CrossDevice {
            from: source.to_path_buf(),
            to: dest.to_path_buf(),
        },
        errno => io_error("rename", source)(errno.into()),
    })
}

/// Gives `path` the owner, group and mode of `like` (owner and group only
/// when they differ: changing them needs root).
fn take_attributes(path: &Path, like: &Path) -> Result<(), MovePathError> {
    let model = std::fs::metadata(like).map_err(io_error("read the owner and mode of", like))?;
    let current = std::fs::symlink_metadata(path).map_err(io_error("read", path))?;
    if (current.uid(), current.gid()) != (model.uid(), model.gid()) {
        std::os::unix::fs::lchown(path, Some(model.uid()), Some(model.gid()))
            .map_err(io_error("change the owner of", path))?;
    }
    if !current.file_type().is_symlink() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(model.mode() & 0o7777))
            .map_err(io_error("change the mode of", path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(from: &Path, to: &Path) -> MovePathOptions {
        MovePathOptions {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            replace: false,
            missing_ok: false,
            like: None,
        }
    }

    #[test]
    fn never_moves_over_something_unless_replacing() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("files");
        let aside = dir.path().join("files.pre_restore_x");
        std::fs::create_dir_all(live.join("a")).unwrap();
        std::fs::write(live.join("a/1"), "live").unwrap();
        std::fs::create_dir(&aside).unwrap();
        // An empty folder at `to` is kept too (rename(2) alone would replace it).
        let e = move_path(&options(&live, &aside)).unwrap_err();
        assert_eq!(e.kind(), "exists", "{e}");
        assert!(e.to_string().contains("that name is taken"), "{e}");
        assert!(live.join("a/1").exists());
        std::fs::remove_dir(&aside).unwrap();

        let out = move_path(&options(&live, &aside)).unwrap();
        assert!(out.moved && !out.replaced);
        assert!(!live.exists());
        assert_eq!(std::fs::read_to_string(aside.join("a/1")).unwrap(), "live");

        // The undo: the restore's half-made folder is replaced, twice is harmless.
        std::fs::create_dir_all(live.join("b")).unwrap();
        std::fs::write(live.join("b/2"), "restored").unwrap();
        let undo = MovePathOptions {
            replace: true,
            missing_ok: true,
            ..options(&aside, &live)
        };
        let out = move_path(&undo).unwrap();
        assert!(out.moved && out.replaced);
        assert_eq!(std::fs::read_to_string(live.join("a/1")).unwrap(), "live");
        assert!(!live.join("b").exists());
        assert!(!replaced_name(&live).exists());
        let again = move_path(&undo).unwrap();
        assert!(!again.moved && !again.replaced);
        assert_eq!(std::fs::read_to_string(live.join("a/1")).unwrap(), "live");

        let e = move_path(&options(&aside, &live)).unwrap_err();
        assert_eq!(e.kind(), "not_found", "{e}");
    }

    #[test]
    fn a_replace_cut_short_is_finished_by_the_next_call() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("files");
        let aside = dir.path().join("files.pre_restore_x");
        std::fs::create_dir(&aside).unwrap();
        std::fs::write(aside.join("kept"), "k").unwrap();
        // Killed after moving the restored folder out of the way.
        let replaced = replaced_name(&live);
        std::fs::create_dir(&replaced).unwrap();
        std::fs::write(replaced.join("partial"), "p").unwrap();
        let undo = MovePathOptions {
            replace: true,
            missing_ok: true,
            ..options(&aside, &live)
        };
        move_path(&undo).unwrap();
        assert!(live.join("kept").exists());
        assert!(!replaced.exists());
        // Killed after the move back, before removing: the rerun only removes.
        std::fs::create_dir(&replaced).unwrap();
        let out = move_path(&undo).unwrap();
        assert!(!out.moved);
        assert!(!replaced.exists());
        assert!(live.join("kept").exists());
    }

    #[test]
    fn like_gives_the_mode_of_another_folder() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        let from = dir.path().join("new");
        let to = dir.path().join("placed");
        std::fs::create_dir(&model).unwrap();
        std::fs::set_permissions(&model, std::fs::Permissions::from_mode(0o2750)).unwrap();
        std::fs::create_dir(&from).unwrap();
        let out = move_path(&MovePathOptions {
            like: Some(model.clone()),
            ..options(&from, &to)
        })
        .unwrap();
        assert!(out.moved);
        assert_eq!(std::fs::metadata(&to).unwrap().mode() & 0o7777, 0o2750);
        let e = move_path(&MovePathOptions {
            like: Some(dir.path().join("absent")),
            ..options(&to, &from)
        })
        .unwrap_err();
        assert!(e.to_string().contains("owner and mode of"), "{e}");
        assert!(to.exists(), "nothing moves when `like` cannot be read");
    }

    #[test]
    fn unknown_options_are_refused_and_describe_says_what_happens() {
        let e = serde_json::from_value::<MovePathOptions>(
            serde_json::json!({"from": "/a", "to": "/b", "force": true}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `force`"), "{e}");
        let o: MovePathOptions =
            serde_json::from_value(serde_json::json!({"from": "/a", "to": "/b", "replace": true}))
                .unwrap();
        assert_eq!(
            MovePath::describe(&o),
            "move /a to /b (replacing what is there)"
        );
    }
}
