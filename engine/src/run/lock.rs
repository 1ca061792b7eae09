//! One run of a workflow at a time, for every user of the site: an exclusive
//! `flock` on `<lock folder>/<workflow name>.lock`. The kernel drops the
//! lock when the holder dies, so a lock left by a dead process never blocks.
//!
//! The lock folder is shared by root and the admins (the site file's
//! `lock_dir`, default `/run/lock/runbook`), so a manual run as an admin and
//! the nightly run as root cannot overlap. `flock` works on a read-only
//! descriptor: a user who may only read a lock file another user made can
//! still take the lock. Who may read it is who may hold it (and so block the
//! others): lock files are 0600, or 0640 for the site's `lock_group`.
//!
//! Whoever can write the lock folder could swap the lock file under a
//! holder, or plant a symlink for root to open: the folder must be a real
//! folder owned by root or by the user running, writable by nobody else
//! except the `lock_group`; a lock file is opened without following a
//! symlink, must be a regular file, and is only written when it is this
//! user's own with one link.
//!
//! Who holds a lock is read from the kernel (`/proc/locks`: the holder's pid,
//! then its user and start time from `/proc/PID`), which also works when the
//! holder could not write into a file another user made; a note the holder
//! wrote into the file is the fallback.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::fcntl::{Flock, FlockArg};
use nix::unistd::Gid;

/// The lock folder when the site names none.
pub const DEFAULT_LOCK_DIR: &str = "/run/lock/runbook";

/// Where this process takes run locks (see [`set_lock_place`]).
#[derive(Clone, Debug)]
pub struct LockPlace {
    /// The folder.
    pub dir: PathBuf,
    /// `lock_group`: the group sharing the locks (name, gid).
    pub group: Option<(String, Gid)>,
    /// Where `dir` was chosen, for messages ("site file X key lock_dir").
    pub chosen_by: String,
}

static LOCK_PLACE: OnceLock<LockPlace> = OnceLock::new();

/// Sets where this process's run locks go (once, before the first lock).
pub fn set_lock_place(place: LockPlace) {
    let _ = LOCK_PLACE.set(place);
}

/// Where this process's run locks go; `journal_dir` when none was set.
pub fn lock_place(journal_dir: &Path) -> LockPlace {
    LOCK_PLACE.get().cloned().unwrap_or_else(|| LockPlace {
        dir: journal_dir.to_path_buf(),
        group: None,
        chosen_by: "the journal folder".to_string(),
    })
}

/// Where the run locks go: `RUNBOOK_LOCK_DIR`, else the site file's
/// `lock_dir`, else a journal folder given on the command line (a run
/// history of its own: a test, an experiment), else [`DEFAULT_LOCK_DIR`],
/// shared by every user. The group: `RUNBOOK_LOCK_GROUP` or `lock_group`.
pub fn lock_place_for(
    site: &crate::host::config_site::Site,
    journal_dir_given: Option<&Path>,
) -> Result<LockPlace, String> {
    let (dir, chosen_by) = match site.setting("lock_dir").filter(|(d, _)| !d.is_empty()) {
        Some((dir, origin)) => (PathBuf::from(dir), format!("{origin}")),
        None => match journal_dir_given {
            Some(journal) => (
                journal.to_path_buf(),
                "the journal folder given on the command line".to_string(),
            ),
            None => (PathBuf::from(DEFAULT_LOCK_DIR), "the default".to_string()),
        },
    };
    let group = match site.setting("lock_group").filter(|(g, _)| !g.is_empty()) {
        None => None,
        Some((name, origin)) => match nix::unistd::Group::from_name(&name) {
            Ok(Some(group)) => Some((name, group.gid)),
            _ => {
                return Err(format!(
                    "lock_group `{name}` (from {origin}): no such group"
                ));
            }
        },
    };
    Ok(LockPlace {
        dir,
        group,
        chosen_by,
    })
}

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
        /// "pid N, user U, started TIME".
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
    /// The lock folder or file could be changed by another user, or cannot be
    /// shared: nothing ran.
    #[error("lock {path}: {reason}")]
    Refused {
        /// The folder or file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl RunLock {
    /// Takes the lock for `workflow_name` without waiting, in the folder set
    /// by [`set_lock_place`] (else in `journal_dir`).
    pub fn acquire(journal_dir: &Path, workflow_name: &str) -> Result<Self, LockError> {
        let place = lock_place(journal_dir);
        prepare_folder(&place)?;
        let path = place.dir.join(format!("{workflow_name}.lock"));
        let (file, writable) = open_lock_file(&path, &place)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                return Err(LockError::Held {
                    holder: describe_holder(&mut file),
                    path,
                });
            }
            Err((_, errno)) => {
                return Err(LockError::Io {
                    path,
                    source: std::io::Error::from(errno),
                });
            }
        };
        // Locked a file that was unlinked or replaced meanwhile: another run
        // may lock the new one, so this lock would exclude nobody.
        let held = lock.metadata().map_err(|source| LockError::Io {
            path: path.clone(),
            source,
        })?;
        let same = std::fs::symlink_metadata(&path)
            .is_ok_and(|now| now.ino() == held.ino() && now.dev() == held.dev());
        if !same {
            return Err(LockError::Refused {
                path,
                reason: "the lock file was replaced while it was being locked; run again"
                    .to_string(),
            });
        }
        if writable {
            write_note(&mut lock, &held);
        }
        Ok(RunLock { _lock: lock })
    }
}

/// Creates the lock folder if missing and checks nobody else can change it.
fn prepare_folder(place: &LockPlace) -> Result<(), LockError> {
    let dir = &place.dir;
    let refused = |reason: String| LockError::Refused {
        path: dir.clone(),
        reason,
    };
    if std::fs::symlink_metadata(dir).is_err() {
        create_folder(place).map_err(|e| {
            refused(format!(
                "cannot create the lock folder: {e} (chosen by {}; root creates it with \
                 `install -d -m 2770 -g GROUP {}` and the site file sets lock_group = \"GROUP\", \
                 or set lock_dir to a folder root and the admins share)",
                place.chosen_by,
                dir.display()
            ))
        })?;
    }
    let metadata = std::fs::symlink_metadata(dir).map_err(|e| refused(e.to_string()))?;
    if metadata.file_type().is_symlink() || !metadata.is_dir() {
        return Err(refused(format!(
            "not a folder but a {} (chosen by {}): remove it, or set lock_dir to a real folder",
            if metadata.file_type().is_symlink() {
                "symbolic link"
            } else {
                "file"
            },
            place.chosen_by
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if metadata.uid() != me && metadata.uid() != 0 {
        return Err(refused(format!(
            "the lock folder is owned by {}, who could swap the lock files under a run \
             (fix: chown root {} — or remove it; as root, runbook makes it)",
            user_name(metadata.uid()),
            dir.display()
        )));
    }
    let mode = metadata.mode();
    if mode & 0o002 != 0 {
        return Err(refused(format!(
            "the lock folder is writable by every user, who could swap the lock files \
             under a run (fix: chmod o-w {})",
            dir.display()
        )));
    }
    let shared_group = place.group.as_ref().map(|(_, gid)| gid.as_raw());
    if mode & 0o020 != 0 && shared_group != Some(metadata.gid()) {
        return Err(refused(format!(
            "the lock folder is writable by group {}, which is not the site's lock_group \
             (fix: chmod g-w {}, or set lock_group = \"{}\" in the site file)",
            group_name(metadata.gid()),
            dir.display(),
            group_name(metadata.gid())
        )));
    }
    Ok(())
}

/// Makes the lock folder: 0755, or 2770 for the `lock_group`.
fn create_folder(place: &LockPlace) -> std::io::Result<()> {
    if let Some(parent) = place.dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::create_dir(&place.dir) {
        Ok(()) => {}
        // Another run made it meanwhile: checked like any existing folder.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    let mode = match &place.group {
        Some((_, gid)) => {
            nix::unistd::chown(&place.dir, None, Some(*gid)).map_err(std::io::Error::from)?;
            0o2770
        }
        None => 0o755,
    };
    std::fs::set_permissions(&place.dir, std::fs::Permissions::from_mode(mode))
}

/// Opens (creating if missing) the lock file, never through a symlink;
/// read-only when this user may not write it (another user's lock file).
/// Returns the file and whether it is this user's to write.
fn open_lock_file(path: &Path, place: &LockPlace) -> Result<(File, bool), LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mode = if place.group.is_some() { 0o640 } else { 0o600 };
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(LockError::Refused {
                path: path.to_path_buf(),
                reason: "the lock file is a symbolic link; remove it (runbook never makes one)"
                    .to_string(),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            // Another user's lock file: taking the lock only needs to read it.
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .map_err(|source| cannot_share(path, source))?
        }
        Err(e) => return Err(io(e)),
    };
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(LockError::Refused {
            path: path.to_path_buf(),
            reason: "the lock file is not a regular file; remove it".to_string(),
        });
    }
    let mine = metadata.uid() == nix::unistd::geteuid().as_raw() && metadata.nlink() == 1;
    if mine && let Some((_, gid)) = &place.group {
        // A file this user made: shared with the lock_group (0640).
        if metadata.gid() != gid.as_raw() || metadata.mode() & 0o777 != 0o640 {
            nix::unistd::fchown(&file, None, Some(*gid)).map_err(|e| io(e.into()))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o640))
                .map_err(io)?;
        }
    }
    Ok((file, mine))
}

fn cannot_share(path: &Path, source: std::io::Error) -> LockError {
    if source.kind() == std::io::ErrorKind::NotFound {
        // No lock file yet, and this user may not make one in the folder.
        let folder = path.parent().unwrap_or(Path::new("/"));
        let owner = std::fs::metadata(folder)
            .map(|m| {
                format!(
                    "owned by {}, group {}, mode {:o}",
                    user_name(m.uid()),
                    group_name(m.gid()),
                    m.mode() & 0o7777
                )
            })
            .unwrap_or_default();
        return LockError::Refused {
            path: path.to_path_buf(),
            reason: format!(
                "this user cannot create the lock file in the lock folder ({owner}); make the \
                 folder the lock_group's: chgrp GROUP {dir} && chmod 2770 {dir}, with \
                 lock_group = \"GROUP\" in the site file",
                dir = folder.display()
            ),
        };
    }
    let owner = std::fs::symlink_metadata(path)
        .map(|m| {
            format!(
                "owned by {}, mode {:o}",
                user_name(m.uid()),
                m.mode() & 0o777
            )
        })
        .unwrap_or_else(|_| "another user's".to_string());
    LockError::Refused {
        path: path.to_path_buf(),
        reason: format!(
            "this user cannot read the lock file ({owner}: {source}), so it cannot tell \
             whether another user's run holds it; set lock_group = \"GROUP\" in the site \
             file (a group root and the admins share: lock files become 0640 for it), or \
             run as the file's owner"
        ),
    }
}

/// Records who holds the lock in the file: the fallback for [`describe_holder`].
fn write_note(lock: &mut Flock<File>, held: &std::fs::Metadata) {
    let note = format!(
        "pid {}, user {}, started {}",
        std::process::id(),
        user_name(held.uid()),
        chrono::Local::now().format("%Y-%m-%d %H:%M:%S %Z")
    );
    let written = lock
        .set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|_| lock.write_all(note.as_bytes()))
        .and_then(|()| lock.flush());
    if let Err(e) = written {
        tracing::debug!("cannot note the lock holder: {e}");
    }
}

/// "pid N, user U, started TIME" of the process holding `file`'s lock: from
/// the kernel's lock table, else the note the holder wrote.
fn describe_holder(file: &mut File) -> String {
    if let Ok(metadata) = file.metadata()
        && let Some(pid) = holder_pid(&metadata)
    {
        let user = process_uid(pid)
            .map(user_name)
            .unwrap_or_else(|| "unknown".to_string());
        let started = process_start(pid).unwrap_or_else(|| "at an unknown time".to_string());
        return format!("pid {pid}, user {user}, started {started}");
    }
    let mut note = String::new();
    let _ = file.read_to_string(&mut note);
    match note.trim() {
        "" => "holder unknown".to_string(),
        note => note.to_string(),
    }
}

/// The pid holding a `flock` on the file of `metadata`, from `/proc/locks`
/// (`1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`).
fn holder_pid(metadata: &std::fs::Metadata) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    let (major, minor) = (libc::major(metadata.dev()), libc::minor(metadata.dev()));
    let wanted = format!("{major:02x}:{minor:02x}:{}", metadata.ino());
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // Waiters are listed with "->"; this is a non-blocking lock: none.
        if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&wanted.as_str()) {
            return None;
        }
        fields.get(4)?.parse().ok().filter(|pid| *pid != 0)
    })
}

fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Real, effective, saved, filesystem: the effective user is who runs it.
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The start time of `pid`, local time.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses);
    // starttime is field 22 overall, the 20th after ")".
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf reads a constant of the running system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if per_second <= 0 {
        return None;
    }
    let seconds = boot + (ticks / per_second as u64) as i64;
    let at = chrono::DateTime::from_timestamp(seconds, 0)?;
    Some(
        at.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
    )
}

fn user_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| format!("gid {gid}"))
}
