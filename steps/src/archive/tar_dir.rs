//! `tar_dir`: writes a GNU tar archive (optionally zstd/gzip) of folders and
//! files in one pass, with its SHA-256, atomically, in a reproducible order.

use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, CString, OsStr};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::dir::{Dir, Type as DirEntryType};
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, fstatat};
use std::time::Instant;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use crate::archive::io::{ArchiveSink, Compression};
use crate::archive::read_ahead::{self, AheadFile, FILES_AHEAD, ReadAhead, ReadAheadHook, ToSize};
use crate::archive::sidecar::{Sidecar, write_sidecar};
use crate::runtime::atomic_file::PartialFile;
use crate::runtime::blocking_work::{Stop, WorkControl, run_blocking};
use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::progress::Progress;
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::runtime::throttle::{MaxRate, Throttle};

/// Permissions of archives and their checksum files: they hold all the data.
pub const ARCHIVE_MODE: u32 = 0o600;
/// Warnings kept in the result; the rest are counted in a last line (all are logged).
const MAX_WARNINGS: usize = 100;

/// The `tar_dir` step.
pub struct TarDir;

/// Options of `tar_dir`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TarDirOptions {
    /// The archive to write.
    pub dest: PathBuf,
    /// A folder (or file) whose contents go under `prefix/`.
    #[serde(default)]
    pub src: Option<PathBuf>,
    /// The top folder inside the archive for `src` (default: the name of `src`;
    /// `""`: no top folder).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Several sources, each placed at its own path inside the archive.
    #[serde(default)]
    pub entries: Option<Vec<EntrySource>>,
    /// Compression of the archive.
    #[serde(default)]
    pub compress: Compression,
    /// Compression level (default: zstd 3, gzip 6).
    #[serde(default)]
    pub level: Option<i32>,
    /// Glob patterns of paths to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// What to do with a file or folder that cannot be read.
    #[serde(default)]
    pub on_unreadable: OnUnreadable,
    /// What to do with a file that vanishes, shrinks, grows or is modified
    /// while it is archived.
    #[serde(default)]
    pub on_changed: OnChanged,
    /// The most bytes per second of file data to archive.
    #[serde(default)]
    pub max_rate: MaxRate,
    /// How many files ahead of the one being archived are opened and their
    /// data asked for, several at a time (0: none).
    #[serde(default = "default_read_ahead")]
    pub read_ahead: usize,
}

fn default_read_ahead() -> usize {
    FILES_AHEAD
}

/// One source of `entries`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntrySource {
    /// A file or folder on disk.
    pub src: PathBuf,
    /// Where it goes inside the archive (relative, no `..`).
    pub path: String,
}

/// What to do with a source that cannot be read (permission denied).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnUnreadable {
    /// Fail the step naming the path.
    #[default]
    Fail,
    /// Leave it out with a warning and count it in `skipped`.
    Skip,
}

/// What to do with a source that changes while it is archived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnChanged {
    /// Fail the step naming the file: the archive would not hold it as it was.
    #[default]
    Fail,
    /// Archive what could be read (a shrunk file padded with zeros), with a
    /// warning, and list it in `changed`.
    Warn,
}

/// Result of `tar_dir`.
#[derive(Debug, Default, Serialize)]
pub struct TarDirOutput {
    /// The archive written.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Entries in the archive (files, folders, symlinks).
    pub entries: u64,
    /// Regular files stored.
    pub files: u64,
    /// Folders stored.
    pub dirs: u64,
    /// Hex SHA-256 of the archive (also in `<dest>.sha256`).
    pub sha256: String,
    /// Sources left out: vanished while archiving, unreadable (with
    /// `on_unreadable: "skip"`), sockets, FIFOs and devices.
    pub skipped: u64,
    /// What went wrong without failing the step, one line each.
    pub warnings: Vec<String>,
    /// Files that vanished, shrank, grew or were modified while archived
    /// (with `on_changed: "warn"`), one line each.
    pub changed: Vec<String>,
    /// Symlinks whose target lies outside the source they belong to (an
    /// absolute target, or `..` above it), as `archive path -> target`: stored
    /// as symlinks, but what they point to is not in the archive.
    pub links_outside: Vec<String>,
    /// Wall time.
    pub duration_ms: u64,
}

/// Why `tar_dir` failed.
#[derive(Debug, thiserror::Error)]
pub enum TarDirError {
    /// The options do not make sense together.
    #[error("tar_dir: {0}")]
    Options(String),
    /// An exclude pattern is not a valid glob.
    #[error("invalid exclude pattern `{pattern}`")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        source: globset::Error,
    },
    /// A source given in the options does not exist or cannot be examined.
    #[error("source {path} cannot be read")]
    Source {
        /// The source.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file or folder cannot be read (permission denied) and
    /// `on_unreadable` is `"fail"`.
    #[error("cannot read {path} (use on_unreadable: \"skip\" to leave it out)")]
    Unreadable {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file vanished, shrank, grew or was modified while archived, and
    /// `on_changed` is `"fail"`.
    #[error("{path} {what}")]
    Changed {
        /// The file or folder.
        path: PathBuf,
        /// What happened to it.
        what: String,
    },
    /// Reading a source failed mid-way.
    #[error("reading {path} failed")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing the archive failed.
    #[error("writing {path} failed")]
    Write {
        /// The archive (or its `.partial`).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The filesystem holding the archive is full; the partial archive was removed.
    #[error(
        "disk full writing {path}: the archive needs about {needed_mib} MiB (the sources' size), {free_mib} MiB is free now that the partial archive is removed"
    )]
    DiskFull {
        /// The archive (or its `.partial`).
        path: PathBuf,
        /// The sources' total size, in MiB.
        needed_mib: u64,
        /// Free space in MiB after the partial archive was removed.
        free_mib: u64,
    },
    /// Interrupted or timed out; the partial archive was removed.
    #[error(transparent)]
    Stopped(#[from] Stop),
}

impl StepFailure for TarDirError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            TarDirError::Options(_) | TarDirError::Pattern { .. } => ErrorKind::Options,
            TarDirError::Source { .. } => ErrorKind::Source,
            TarDirError::Unreadable { .. } => ErrorKind::Unreadable,
            TarDirError::Changed { .. } => ErrorKind::Changed,
            TarDirError::Read { .. } | TarDirError::Write { .. } => ErrorKind::Io,
            TarDirError::DiskFull { .. } => ErrorKind::DiskFull,
            TarDirError::Stopped(stop) => stop.kind(),
        }
    }
}

impl Step for TarDir {
    const NAME: &'static str = "tar_dir";
    const HANDLES_TIMEOUT: bool = true;
    const DOC: &'static str = "\
Writes a tar archive of folders and files in one pass, with its SHA-256.

The archive is GNU tar format (GNU long names for paths over 100 bytes), read by
any `tar xf`. It is written to `<dest>.partial`, fsynced and renamed to `dest`,
so `dest` only ever holds a complete archive; a `.partial` left by a crash is
replaced by the next run. Next to it, `<dest>.sha256` holds the checksum in
`sha256sum` format (`sha256sum -c` checks it), then comment lines with a CRC-32
of each file's data, which let verify_archive name a damaged entry. Both files
get mode 0600. The SHA-256 is computed while writing: each file is read once.

Entries are in sorted order, so the same input gives a byte-identical archive.
Mode, mtime, uid/gid and user/group names are kept. Hard links are stored as
regular files with their content (e.g. Cassandra snapshot files). A source
given in the options that is a symlink is followed (a symlinked attachment
folder is archived as the folder it points to); below it, symlinks are stored
as symlinks and never followed, and those pointing outside the source (an
absolute target, or `..` above it) are listed in `links_outside` with a
warning. Folders are walked relative to their parent (`openat`), so paths
longer than PATH_MAX (4096 bytes) are archived (as GNU long names). Sockets,
FIFOs and devices are skipped with a warning. Hot data: a file that vanishes,
shrinks, grows or is modified (its mtime changes) while archived fails the
step naming it; with `on_changed: \"warn\"` it is kept as read (cut to the
size seen when opened, or padded with zeros) with a warning and listed in
`changed`. A file or folder that cannot be read fails the step, naming it and
the OS reason, unless `on_unreadable: \"skip\"`. Folders that `entries`
paths need but no source provides (e.g. the top folder) are added with mode 0755.

While a file is copied, other threads open the next ones and ask the kernel
for their data (`read_ahead`), so that from a cold page cache many small files
are read from the disk at once instead of one after the other; the archive's
own thread still opens, checks and reads each file itself, so this changes
nothing in the archive or in what is reported.

Options:
  dest          string            the archive to write (its folder must exist) (required)
  src           string            a folder whose contents go under `prefix/`
  prefix        string            top folder for `src` (default: the name of `src`; \"\": none)
  entries       array of maps     instead of src: #{ src, path } each, a file or folder
                                  placed at `path` inside the archive
  compress      string            \"none\" (default), \"zstd\" or \"gzip\"
  level         int               compression level (default: zstd 3, gzip 6)
  exclude       array of strings  glob patterns to leave out: a pattern with a `/` is
                                  matched against the path inside the archive, one
                                  without against each name (default [])
  on_unreadable string            \"fail\" (default) or \"skip\"
  on_changed    string            a file that vanishes, shrinks, grows or is modified
                                  while archived: \"fail\" (default) or \"warn\"
  max_rate      string            most bytes per second of file data read and written,
                                  e.g. \"200MiB/s\"; steps given the same rate share it
                                  (default \"\": no limit)
  read_ahead    int               files opened ahead of the one being archived, their
                                  data asked for from the disk 8 files at a time (at
                                  most 32 MiB ahead), so a cold cache's per-file latency
                                  overlaps; changes nothing in the archive (default 64;
                                  0: off)

Result:
  path         string   the archive
  bytes        int      archive size
  entries      int      entries in the archive
  files        int      regular files stored
  dirs         int      folders stored
  sha256       string   hex SHA-256 of the archive
  skipped      int      sources left out (vanished, unreadable, special files)
  warnings     array    one line per problem that did not fail the step (first 100)
  changed      array    files changed while archived (on_changed \"warn\"; first 100)
  links_outside array   symlinks pointing outside the source, \"path -> target\" (first 100)
  duration_ms  int      wall time

Example:
  let a = tar_dir(#{
      dest: `${dir}/cassandra_${stamp}.tar`,
      entries: [
          #{ src: cql_file, path: `cassandra_${stamp}/create_keyspace_thehive.cql` },
          #{ src: table_snapshot, path: `cassandra_${stamp}/thehive/${table}` },
      ],
  });
  log_info(`${a.path}: ${a.files} files, ${a.bytes} bytes, sha256 ${a.sha256}`);
";

    type Options = TarDirOptions;
    type Output = TarDirOutput;

    fn describe(options: &TarDirOptions) -> String {
        let sources = match (&options.src, &options.entries) {
            (Some(src), _) => src.display().to_string(),
            (None, Some(entries)) => crate::runtime::wording::count(entries.len() as u64, "source"),
            (None, None) => "nothing".to_string(),
        };
        let compression = match options.compress {
            Compression::None => String::new(),
            other => format!(" ({})", other.name()),
        };
        format!(
            "archive {sources} into {}{compression}",
            options.dest.display()
        )
    }

    fn label(options: &TarDirOptions) -> Option<String> {
        options
            .dest
            .file_name()
            .map(|n| format!("tar {}", n.to_string_lossy()))
    }

    fn dry_run(options: &TarDirOptions) -> DryRun<TarDirOutput> {
        DryRun::Skip(TarDirOutput {
            path: options.dest.to_string_lossy().into_owned(),
            ..TarDirOutput::default()
        })
    }

    async fn run(options: TarDirOptions, ctx: StepContext) -> Result<TarDirOutput, StepError> {
        let (control, _cancel_when_dropped) = WorkControl::from_context(&ctx);
        run_blocking("tar_dir", move || write_archive(&options, &control)).await
    }
}

/// Writes the archive `options` describe (the blocking body of the step).
pub fn write_archive(
    options: &TarDirOptions,
    control: &WorkControl,
) -> Result<TarDirOutput, TarDirError> {
    write_archive_with_hook(options, control, &|_| {})
}

/// An ENOSPC write error becomes [`TarDirError::DiskFull`], with the space the
/// archive needs and what is free (measured after the partial file is gone,
/// which the partial file's guard does before this runs).
fn explain_disk_full(error: TarDirError, options: &TarDirOptions, needed: u64) -> TarDirError {
    match error {
        TarDirError::Write { path, source } if source.raw_os_error() == Some(libc::ENOSPC) => {
            let folder = options
                .dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let free = crate::files::disk_free(folder).unwrap_or(0);
            TarDirError::DiskFull {
                path,
                needed_mib: needed.div_ceil(1 << 20),
                free_mib: free >> 20,
            }
        }
        other => other,
    }
}

/// [`write_archive`], calling `before_file` with each regular file's source
/// path just before opening it. Tests use it to change the tree mid-walk.
pub fn write_archive_with_hook(
    options: &TarDirOptions,
    control: &WorkControl,
    before_file: &dyn Fn(&Path),
) -> Result<TarDirOutput, TarDirError> {
    write_archive_with_hooks(options, control, before_file, &|_| {})
}

/// [`write_archive_with_hook`], also calling `read_ahead_done` (from a
/// read-ahead thread) with each file's path once the read-ahead has opened it
/// and asked for its data. Tests use it to change a file between the
/// read-ahead and the archive's own read.
pub fn write_archive_with_hooks(
    options: &TarDirOptions,
    control: &WorkControl,
    before_file: &dyn Fn(&Path),
    read_ahead_done: ReadAheadHook<'_>,
) -> Result<TarDirOutput, TarDirError> {
    let started = Instant::now();
    let plan = Plan::new(options)?;
    let total = plan.prescan(options.read_ahead);
    let hooks = Hooks {
        before_file,
        read_ahead_done,
    };
    write_planned(options, control, hooks, plan, total, started)
        .map_err(|e| explain_disk_full(e, options, total))
}

/// The test hooks of [`write_archive_with_hooks`].
struct Hooks<'a> {
    before_file: &'a dyn Fn(&Path),
    read_ahead_done: ReadAheadHook<'a>,
}

/// Writes the planned archive to its `.partial` file, then its checksum
/// file, then renames it into place; the result with its lists capped.
fn write_planned(
    options: &TarDirOptions,
    control: &WorkControl,
    hooks: Hooks<'_>,
    plan: Plan,
    total: u64,
    started: Instant,
) -> Result<TarDirOutput, TarDirError> {
    let progress = Progress::new(control.progress, &control.label, total);

    let dest = &options.dest;
    let write_error = |source| TarDirError::Write {
        path: dest.clone(),
        source,
    };
    let (partial, file) =
        PartialFile::create(dest, ARCHIVE_MODE).map_err(|source| TarDirError::Write {
            path: crate::runtime::atomic_file::partial_path(dest),
            source,
        })?;
    let own_file = file.metadata().map(|m| (m.dev(), m.ino())).ok();
    let sink = ArchiveSink::new(file, options.compress, options.level.unwrap_or(0))
        .map_err(write_error)?;
    let read_ahead = ReadAhead::new(options.read_ahead, hooks.read_ahead_done);
    let mut writer = ArchiveWriter {
        builder: tar::Builder::new(sink),
        control,
        progress: &progress,
        on_unreadable: options.on_unreadable,
        on_changed: options.on_changed,
        own_file,
        before_file: hooks.before_file,
        read_ahead: &read_ahead,
        names: NameCache::default(),
        scratch: Vec::new(),
        output: TarDirOutput::default(),
        dest: dest.clone(),
        synthesized_mtime: plan.synthesized_mtime,
        file_crcs: Vec::new(),
        throttle: options.max_rate.throttle(),
    };
    plan.walk_reading_ahead(&read_ahead, &mut |item| writer.add(item))?;
    let sink = writer.builder.into_inner().map_err(write_error)?;
    control.check()?;
    let written = sink.finish().map_err(write_error)?;
    progress.finish();
    // The checksum file first: a crash between the two renames leaves a
    // checksum that does not match, never an archive that looks verified.
    let sidecar = Sidecar {
        sha256: written.sha256.clone(),
        file_crcs: std::mem::take(&mut writer.file_crcs),
    };
    write_sidecar(dest, &sidecar).map_err(write_error)?;
    partial.commit(written.file).map_err(write_error)?;

    let mut output = writer.output;
    output.path = dest.to_string_lossy().into_owned();
    output.bytes = written.bytes;
    output.sha256 = written.sha256;
    output.duration_ms = started.elapsed().as_millis() as u64;
    cap_lists(&mut output);
    Ok(output)
}

/// Keeps the first [`MAX_WARNINGS`] lines of each list of the result, the
/// rest counted in a last line (all were logged as they came).
fn cap_lists(output: &mut TarDirOutput) {
    for list in [
        &mut output.warnings,
        &mut output.changed,
        &mut output.links_outside,
    ] {
        if list.len() > MAX_WARNINGS {
            let more = list.len() - MAX_WARNINGS;
            list.truncate(MAX_WARNINGS);
            list.push(format!("... and {more} more"));
        }
    }
}

/// One source placed at a path inside the archive.
#[derive(Debug)]
struct Root {
    src: PathBuf,
    /// Path inside the archive; empty: the source's contents go at the top.
    path: PathBuf,
}

/// The sources in archive order, the folders to add for them, the exclusions.
struct Plan {
    roots: Vec<Root>,
    /// Parent folders of root paths that no source provides.
    synthesized_dirs: BTreeSet<PathBuf>,
    /// Their mtime: the newest mtime among the sources, so it is reproducible.
    synthesized_mtime: u64,
    exclude_paths: GlobSet,
    exclude_names: GlobSet,
}

/// What the walk hands to its visitor.
enum Item<'a> {
    /// A folder the archive needs but no source provides.
    SynthesizedDir(&'a Path),
    /// A file, folder or symlink found on disk.
    Found(Found<'a>),
    /// Something that could not be listed.
    Error { path: PathBuf, error: io::Error },
}

/// One file, folder, symlink or special file met by the walk.
struct Found<'a> {
    /// How to reach it without resolving its full path.
    place: Place<'a>,
    /// Its full path, for messages only (it may exceed PATH_MAX).
    path: &'a Path,
    /// Its path inside the archive.
    archive_path: &'a Path,
    /// The archive path of the source it belongs to: symlinks resolving
    /// above it point outside what is archived.
    root: &'a Path,
    kind: Kind,
}

/// Where an entry is. A source given in the options is reached by its path,
/// and followed if it is a symlink (the caller named it: `attachment_folder`
/// may be a link to the real folder). Everything below is reached as one
/// name inside its already open folder (`openat`-style), so paths of any
/// length work and no symlink below a source is ever followed.
#[derive(Clone, Copy)]
enum Place<'a> {
    Root(&'a Path),
    In(BorrowedFd<'a>, &'a CStr),
}

impl Place<'_> {
    /// The entry's status; a symlink below a source is not followed.
    fn stat(self) -> io::Result<Stat> {
        match self {
            Place::Root(path) => std::fs::metadata(path).map(|m| Stat::from(&m)),
            Place::In(dir, name) => fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map(|s| Stat::from(&s))
                .map_err(io::Error::from),
        }
    }

    /// Opens a file for reading: never through a symlink below a source
    /// (`O_NOFOLLOW`), never blocking on a FIFO put in its place (`O_NONBLOCK`).
    fn open_file(self) -> io::Result<File> {
        match self {
            Place::Root(path) => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path),
            Place::In(dir, name) => openat(
                dir,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map(File::from)
            .map_err(io::Error::from),
        }
    }

    fn read_link(self) -> io::Result<PathBuf> {
        match self {
            Place::Root(path) => std::fs::read_link(path),
            Place::In(dir, name) => readlinkat(dir, name)
                .map(PathBuf::from)
                .map_err(io::Error::from),
        }
    }
}

/// What kind of entry the listing says it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Special(&'static str),
}

impl Kind {
    fn from_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFSOCK => Kind::Special("socket"),
            libc::S_IFIFO => Kind::Special("FIFO"),
            libc::S_IFBLK => Kind::Special("block device"),
            libc::S_IFCHR => Kind::Special("character device"),
            _ => Kind::Special("special file"),
        }
    }

    fn from_dir_entry(kind: DirEntryType) -> Kind {
        match kind {
            DirEntryType::File => Kind::File,
            DirEntryType::Directory => Kind::Dir,
            DirEntryType::Symlink => Kind::Symlink,
            DirEntryType::Socket => Kind::Special("socket"),
            DirEntryType::Fifo => Kind::Special("FIFO"),
            DirEntryType::BlockDevice => Kind::Special("block device"),
            DirEntryType::CharacterDevice => Kind::Special("character device"),
        }
    }
}

/// The status fields the archive needs, from `stat` or an open file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    dev: u64,
    ino: u64,
}

impl From<&Metadata> for Stat {
    fn from(meta: &Metadata) -> Stat {
        Stat {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

impl From<&FileStat> for Stat {
    fn from(stat: &FileStat) -> Stat {
        Stat {
            mode: stat.st_mode,
            uid: stat.st_uid,
            gid: stat.st_gid,
            size: stat.st_size.max(0) as u64,
            mtime: stat.st_mtime,
            mtime_nsec: stat.st_mtime_nsec,
            dev: stat.st_dev,
            ino: stat.st_ino,
        }
    }
}

impl Plan {
    /// The plan for `options`: the sources in archive order (checked not to
    /// overlap), the folders their paths need, and the exclusions.
    fn new(options: &TarDirOptions) -> Result<Plan, TarDirError> {
        let mut roots = roots_of(options)?;
        roots.sort_by(|a, b| a.path.cmp(&b.path));
        for pair in roots.windows(2) {
            if pair[1].path.starts_with(&pair[0].path) {
                return Err(TarDirError::Options(format!(
                    "entry paths overlap: `{}` and `{}`",
                    pair[0].path.display(),
                    pair[1].path.display()
                )));
            }
        }
        for root in &roots {
            if let Ok(target) = std::fs::read_link(&root.src) {
                tracing::info!(
                    "{} is a symlink to {}: archiving what it points to",
                    root.src.display(),
                    target.display()
                );
            }
        }
        let synthesized_mtime = newest_mtime(&roots)?;
        let mut synthesized_dirs = BTreeSet::new();
        for root in &roots {
            for ancestor in root.path.ancestors().skip(1) {
                if !ancestor.as_os_str().is_empty() {
                    synthesized_dirs.insert(ancestor.to_path_buf());
                }
            }
        }
        let (exclude_paths, exclude_names) = exclusions(&options.exclude)?;
        Ok(Plan {
            roots,
            synthesized_dirs,
            synthesized_mtime,
            exclude_paths,
            exclude_names,
        })
    }

    fn excluded(&self, archive_path: &Path) -> bool {
        archive_path
            .file_name()
            .is_some_and(|name| self.exclude_names.is_match(name))
            || self.exclude_paths.is_match(archive_path)
    }

    /// Total size of the regular files, for progress. Errors are ignored
    /// here: the real walk reports them. With the read-ahead on, the files are
    /// examined several at a time ([`read_ahead::total_size`]).
    fn prescan(&self, read_ahead: usize) -> u64 {
        if read_ahead > 0 {
            return read_ahead::total_size(|size| self.prescan_handing_over(size));
        }
        let mut total = 0;
        let _ = self.walk(&mut |item| {
            if let Item::Found(found) = item
                && found.kind == Kind::File
                && let Ok(stat) = found.place.stat()
            {
                total += stat.size;
            }
            Ok(())
        });
        total
    }

    /// Walks the tree handing each regular file to `size`, to be examined.
    fn prescan_handing_over(&self, size: &mut dyn FnMut(ToSize)) {
        let mut folder = FolderHandle::default();
        let _ = self.walk(&mut |item| {
            if let Item::Found(found) = item
                && found.kind == Kind::File
            {
                size(match folder.ahead_file(&found) {
                    Some(file) => ToSize::In(file),
                    None => ToSize::Known(found.place.stat().map_or(0, |stat| stat.size)),
                });
            }
            Ok(())
        });
    }

    /// [`Plan::walk`], with `read_ahead`'s scout walking the same tree ahead
    /// of it (on its own thread, its own folder handles) and offering it each
    /// regular file; the scout and the read-ahead threads end with the walk.
    fn walk_reading_ahead(
        &self,
        read_ahead: &ReadAhead<'_>,
        visit: &mut dyn FnMut(Item<'_>) -> Result<(), TarDirError>,
    ) -> Result<(), TarDirError> {
        std::thread::scope(|scope| {
            let _running = read_ahead.start(scope, |read_ahead| self.scout(read_ahead));
            self.walk(visit)
        })
    }

    /// Walks the tree in archive order offering each regular file to
    /// `read_ahead`, until it is stopped. Errors are ignored here: the
    /// archive's own walk meets and reports them.
    fn scout(&self, read_ahead: &ReadAhead<'_>) {
        let mut folder = FolderHandle::default();
        let _ = self.walk(&mut |item| {
            let Item::Found(found) = item else {
                return Ok(());
            };
            if found.kind != Kind::File {
                return Ok(());
            }
            if read_ahead.offer(folder.ahead_file(&found)) {
                Ok(())
            } else {
                // Stopped: end the walk (this error goes nowhere).
                Err(TarDirError::Stopped(Stop::Cancelled))
            }
        });
    }

    /// Visits everything in archive order: sorted by path, folders before
    /// their contents.
    fn walk(
        &self,
        visit: &mut dyn FnMut(Item<'_>) -> Result<(), TarDirError>,
    ) -> Result<(), TarDirError> {
        let mut synthesized = self.synthesized_dirs.iter().peekable();
        for root in &self.roots {
            // Folders sort before what they hold, so emit those needed so far.
            while let Some(dir) = synthesized.next_if(|dir| **dir < root.path) {
                visit(Item::SynthesizedDir(dir))?;
            }
            let place = Place::Root(&root.src);
            let kind = match place.stat() {
                Ok(stat) => Kind::from_mode(stat.mode),
                Err(error) => {
                    visit(Item::Error {
                        path: root.src.clone(),
                        error,
                    })?;
                    continue;
                }
            };
            // `prefix: ""`: the folder itself has no entry.
            if !root.path.as_os_str().is_empty() {
                visit(Item::Found(Found {
                    place,
                    path: &root.src,
                    archive_path: &root.path,
                    root: &root.path,
                    kind,
                }))?;
            }
            if kind == Kind::Dir {
                // Followed if `src` is a symlink: the folder it names.
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
                match Dir::open(&root.src, flags, Mode::empty()) {
                    Ok(dir) => self.walk_folder(dir, &root.src, &root.path, &root.path, visit)?,
                    Err(error) => visit(Item::Error {
                        path: root.src.clone(),
                        error: error.into(),
                    })?,
                }
            }
        }
        for dir in synthesized {
            visit(Item::SynthesizedDir(dir))?;
        }
        Ok(())
    }

    /// Visits what the open folder `dir` holds, sorted by name, each folder
    /// opened relative to its parent: a path's length never matters.
    fn walk_folder(
        &self,
        mut dir: Dir,
        path: &Path,
        archive_dir: &Path,
        root: &Path,
        visit: &mut dyn FnMut(Item<'_>) -> Result<(), TarDirError>,
    ) -> Result<(), TarDirError> {
        let names = match sorted_names(&mut dir) {
            Ok(names) => names,
            Err(error) => {
                return visit(Item::Error {
                    path: path.to_path_buf(),
                    error: error.into(),
                });
            }
        };
        for (name, listed_kind) in &names {
            let os_name = OsStr::from_bytes(name.to_bytes());
            let archive_path = archive_dir.join(os_name);
            if self.excluded(&archive_path) {
                continue;
            }
            let entry_path = path.join(os_name);
            let place = Place::In(dir.as_fd(), name);
            // Most filesystems say the kind in the listing; others need a stat.
            let kind = match listed_kind {
                Some(kind) => Kind::from_dir_entry(*kind),
                None => match place.stat() {
                    Ok(stat) => Kind::from_mode(stat.mode),
                    Err(error) => {
                        visit(Item::Error {
                            path: entry_path,
                            error,
                        })?;
                        continue;
                    }
                },
            };
            visit(Item::Found(Found {
                place,
                path: &entry_path,
                archive_path: &archive_path,
                root,
                kind,
            }))?;
            if kind == Kind::Dir {
                // O_NOFOLLOW: a folder replaced by a symlink since the listing
                // is not entered (ELOOP, reported as changed).
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                match Dir::openat(dir.as_fd(), name.as_c_str(), flags, Mode::empty()) {
                    Ok(sub) => self.walk_folder(sub, &entry_path, &archive_path, root, visit)?,
                    Err(error) => visit(Item::Error {
                        path: entry_path,
                        error: error.into(),
                    })?,
                }
            }
        }
        Ok(())
    }
}

/// The folder the walk is in, duplicated once for the threads that open its
/// files: a depth-first walk has one open folder per path at a time.
#[derive(Default)]
struct FolderHandle {
    open: Option<(PathBuf, Arc<OwnedFd>)>,
}

impl FolderHandle {
    /// `found` (a file below a source) as its folder and name, for another
    /// thread; `None` for a source given by path, or if the folder's handle
    /// cannot be duplicated (the file is then left to the archive's thread).
    fn ahead_file(&mut self, found: &Found<'_>) -> Option<AheadFile> {
        let Place::In(dir, name) = found.place else {
            return None;
        };
        let parent = found.path.parent().unwrap_or(Path::new(""));
        if self.open.as_ref().is_none_or(|(path, _)| path != parent) {
            self.open = dir
                .try_clone_to_owned()
                .ok()
                .map(|fd| (parent.to_path_buf(), Arc::new(fd)));
        }
        self.open.as_ref().map(|(_, fd)| AheadFile {
            folder: Arc::clone(fd),
            name: name.to_owned(),
            path: found.path.to_path_buf(),
        })
    }
}

/// The names in the open folder `dir` (without `.` and `..`) with the kind
/// the listing gives, sorted byte-wise: the archive's order.
fn sorted_names(dir: &mut Dir) -> nix::Result<Vec<(CString, Option<DirEntryType>)>> {
    let mut names: Vec<(CString, Option<DirEntryType>)> = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push((name.to_owned(), entry.file_type()));
        }
    }
    names.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(names)
}

/// Checks and normalizes a path inside the archive.
fn archive_path(text: &str, allow_empty: bool) -> Result<PathBuf, TarDirError> {
    let mut path = PathBuf::new();
    for component in Path::new(text).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => {
                return Err(TarDirError::Options(format!(
                    "archive path `{text}` must be relative, without `..`"
                )));
            }
        }
    }
    if path.as_os_str().is_empty() && !allow_empty {
        return Err(TarDirError::Options(format!(
            "archive path `{text}` is empty"
        )));
    }
    Ok(path)
}

/// The sources `src`/`prefix` or `entries` name, each at its checked path
/// inside the archive, in the order given.
fn roots_of(options: &TarDirOptions) -> Result<Vec<Root>, TarDirError> {
    match (&options.src, &options.entries) {
        (Some(_), Some(_)) => Err(TarDirError::Options(
            "give either `src` (with `prefix`) or `entries`, not both".into(),
        )),
        (None, None) => Err(TarDirError::Options("give `src` or `entries`".into())),
        (Some(src), None) => {
            let prefix = match &options.prefix {
                Some(prefix) => prefix.clone(),
                None => src
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            };
            Ok(vec![Root {
                src: src.clone(),
                path: archive_path(&prefix, true)?,
            }])
        }
        (None, Some(entries)) => {
            if options.prefix.is_some() {
                return Err(TarDirError::Options(
                    "`prefix` goes with `src`; with `entries` give each a `path`".into(),
                ));
            }
            if entries.is_empty() {
                return Err(TarDirError::Options("`entries` is empty".into()));
            }
            entries
                .iter()
                .map(|e| {
                    Ok(Root {
                        src: e.src.clone(),
                        path: archive_path(&e.path, false)?,
                    })
                })
                .collect()
        }
    }
}

/// The newest mtime among the sources (followed if symlinks), so the folders
/// the archive adds for them get a reproducible one; a source that cannot be
/// examined fails the step here, before anything is written.
fn newest_mtime(roots: &[Root]) -> Result<u64, TarDirError> {
    let mut newest = 0;
    for root in roots {
        let meta = std::fs::metadata(&root.src).map_err(|source| TarDirError::Source {
            path: root.src.clone(),
            source,
        })?;
        newest = newest.max(meta.mtime().max(0) as u64);
    }
    Ok(newest)
}

/// The `exclude` patterns as two sets: those with a `/`, matched against the
/// path inside the archive, and those without, matched against each name.
fn exclusions(exclude: &[String]) -> Result<(GlobSet, GlobSet), TarDirError> {
    let mut paths = GlobSetBuilder::new();
    let mut names = GlobSetBuilder::new();
    for pattern in exclude {
        let glob = GlobBuilder::new(pattern.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|source| TarDirError::Pattern {
                pattern: pattern.clone(),
                source,
            })?;
        if pattern.contains('/') {
            paths.add(glob);
        } else {
            names.add(glob);
        }
    }
    let build = |set: GlobSetBuilder| {
        set.build().map_err(|source| TarDirError::Pattern {
            pattern: exclude.join(", "),
            source,
        })
    };
    Ok((build(paths)?, build(names)?))
}

/// uid/gid to user/group names, looked up once each.
#[derive(Default)]
struct NameCache {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl NameCache {
    fn user(&mut self, uid: u32) -> Option<&str> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .as_deref()
    }

    fn group(&mut self, gid: u32) -> Option<&str> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                nix::unistd::Group::from_gid(gid.into())
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .as_deref()
    }
}

struct ArchiveWriter<'a> {
    builder: tar::Builder<ArchiveSink>,
    control: &'a WorkControl,
    progress: &'a Progress,
    on_unreadable: OnUnreadable,
    on_changed: OnChanged,
    /// The `.partial` being written, so a `dest` inside a source is not archived.
    own_file: Option<(u64, u64)>,
    before_file: &'a dyn Fn(&Path),
    /// Told each regular file the walk reaches, so it stays ahead of it.
    read_ahead: &'a ReadAhead<'a>,
    names: NameCache,
    scratch: Vec<u8>,
    output: TarDirOutput,
    dest: PathBuf,
    synthesized_mtime: u64,
    /// CRC-32 of each regular file's data, for the checksum file.
    file_crcs: Vec<u32>,
    /// `max_rate`.
    throttle: Option<std::sync::Arc<Throttle>>,
}

/// How a source file was opened.
enum Opened {
    File(File, Stat),
    Skipped,
}

impl ArchiveWriter<'_> {
    fn write_error(&self, source: io::Error) -> TarDirError {
        TarDirError::Write {
            path: self.dest.clone(),
            source,
        }
    }

    fn warn(&mut self, message: String) {
        tracing::warn!("{}: {message}", self.control.label);
        self.output.warnings.push(message);
    }

    fn skip(&mut self, message: String) {
        self.output.skipped += 1;
        self.warn(message);
    }

    /// A source that cannot be read: fail or skip, as `on_unreadable` says.
    fn unreadable(&mut self, path: &Path, error: io::Error) -> Result<(), TarDirError> {
        match self.on_unreadable {
            OnUnreadable::Fail => Err(TarDirError::Unreadable {
                path: path.to_path_buf(),
                source: error,
            }),
            OnUnreadable::Skip => {
                self.skip(format!("skipped {}: {error}", path.display()));
                Ok(())
            }
        }
    }

    /// A source that vanished, shrank, grew or changed while archived: fail
    /// or warn, as `on_changed` says.
    fn changed(&mut self, path: &Path, what: String) -> Result<(), TarDirError> {
        self.changed_keeping(path, what, None)
    }

    /// [`Self::changed`], saying with `on_changed: "warn"` what was stored.
    fn changed_keeping(
        &mut self,
        path: &Path,
        what: String,
        kept: Option<String>,
    ) -> Result<(), TarDirError> {
        match self.on_changed {
            OnChanged::Fail => Err(TarDirError::Changed {
                path: path.to_path_buf(),
                what,
            }),
            OnChanged::Warn => {
                let line = match kept {
                    Some(kept) => format!("{} {what}: {kept}", path.display()),
                    None => format!("{} {what}", path.display()),
                };
                self.output.changed.push(line.clone());
                self.warn(line);
                Ok(())
            }
        }
    }

    fn add(&mut self, item: Item<'_>) -> Result<(), TarDirError> {
        self.control.check()?;
        match item {
            Item::SynthesizedDir(path) => {
                let mut header = Header::new_gnu();
                header.set_entry_type(EntryType::Directory);
                header.set_mode(0o755);
                let uid = nix::unistd::geteuid().as_raw();
                let gid = nix::unistd::getegid().as_raw();
                self.set_owner(&mut header, uid, gid);
                header.set_mtime(self.synthesized_mtime);
                header.set_size(0);
                self.append_dir(&mut header, path)?;
                self.output.dirs += 1;
                Ok(())
            }
            Item::Error { path, error } => self.listing_error(&path, error),
            Item::Found(found) => match found.kind {
                Kind::File => {
                    self.read_ahead.reach();
                    self.add_file(found.place, found.path, found.archive_path)
                }
                Kind::Dir => {
                    let Some(stat) = self.stat(&found)? else {
                        return Ok(());
                    };
                    let mut header = self.header_from(&stat, EntryType::Directory);
                    header.set_size(0);
                    self.append_dir(&mut header, found.archive_path)?;
                    self.output.dirs += 1;
                    Ok(())
                }
                Kind::Symlink => {
                    let Some(stat) = self.stat(&found)? else {
                        return Ok(());
                    };
                    let target = match found.place.read_link() {
                        Ok(target) => target,
                        Err(e) => return self.listing_error(found.path, e),
                    };
                    if points_outside(found.archive_path, &target, found.root) {
                        let link =
                            format!("{} -> {}", found.archive_path.display(), target.display());
                        self.warn(format!(
                            "{} is a symlink to {}, outside what is archived: stored as a symlink, its target is not in the archive",
                            found.path.display(),
                            target.display()
                        ));
                        self.output.links_outside.push(link);
                    }
                    let mut header = self.header_from(&stat, EntryType::Symlink);
                    header.set_size(0);
                    self.builder
                        .append_link(&mut header, found.archive_path, &target)
                        .map_err(|e| self.write_error(e))?;
                    self.output.entries += 1;
                    Ok(())
                }
                Kind::Special(kind) => {
                    self.skip(format!("skipped {kind} {}", found.path.display()));
                    Ok(())
                }
            },
        }
    }

    /// An error while listing or examining `path`.
    fn listing_error(&mut self, path: &Path, error: io::Error) -> Result<(), TarDirError> {
        match error.raw_os_error() {
            Some(libc::ENOENT) => {
                self.output.skipped += 1;
                self.changed(path, "vanished while being archived".into())
            }
            // A folder replaced by a symlink or a file since it was listed.
            Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                self.output.skipped += 1;
                self.changed(path, "was replaced while being archived".into())
            }
            Some(libc::EACCES) | Some(libc::EPERM) => self.unreadable(path, error),
            _ => Err(TarDirError::Read {
                path: path.to_path_buf(),
                source: error,
            }),
        }
    }

    /// The status of a folder or symlink; `None` if it vanished (reported).
    fn stat(&mut self, found: &Found<'_>) -> Result<Option<Stat>, TarDirError> {
        match found.place.stat() {
            Ok(stat) => Ok(Some(stat)),
            Err(error) => {
                self.listing_error(found.path, error)?;
                Ok(None)
            }
        }
    }

    fn header_from(&mut self, stat: &Stat, entry_type: EntryType) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_mode(stat.mode & 0o7777);
        header.set_mtime(stat.mtime.max(0) as u64);
        self.set_owner(&mut header, stat.uid, stat.gid);
        header
    }

    fn set_owner(&mut self, header: &mut Header, uid: u32, gid: u32) {
        header.set_uid(uid.into());
        header.set_gid(gid.into());
        // Names longer than the header field are left out; the ids remain.
        if let Some(user) = self.names.user(uid) {
            let _ = header.set_username(user);
        }
        if let Some(group) = self.names.group(gid) {
            let _ = header.set_groupname(group);
        }
    }

    /// Appends a header (and GNU long-name entries) with no data after it.
    fn append_empty(&mut self, header: &mut Header, path: &Path) -> Result<(), TarDirError> {
        self.builder
            .append_data(header, path, io::empty())
            .map_err(|e| self.write_error(e))?;
        self.output.entries += 1;
        Ok(())
    }

    /// Appends a folder entry named with a trailing `/`, as GNU tar does (the
    /// tar crate's path setter drops it; short names are set directly, long
    /// ones keep it in the GNU long-name entry).
    fn append_dir(&mut self, header: &mut Header, path: &Path) -> Result<(), TarDirError> {
        let mut name = path.as_os_str().as_bytes().to_vec();
        name.push(b'/');
        let field = &mut header.as_old_mut().name;
        if name.len() < field.len() && !name.contains(&0) {
            field.fill(0);
            field[..name.len()].copy_from_slice(&name);
            header.set_cksum();
            self.builder
                .append(header, io::empty())
                .map_err(|e| self.write_error(e))?;
            self.output.entries += 1;
            Ok(())
        } else {
            self.append_empty(header, Path::new(std::ffi::OsStr::from_bytes(&name)))
        }
    }

    fn open(&mut self, place: Place<'_>, src: &Path) -> Result<Opened, TarDirError> {
        let file = match place.open_file() {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                self.output.skipped += 1;
                self.changed(src, "was replaced by a symlink while being archived".into())?;
                return Ok(Opened::Skipped);
            }
            Err(e) => {
                self.listing_error(src, e)?;
                return Ok(Opened::Skipped);
            }
        };
        let meta = file.metadata().map_err(|source| TarDirError::Read {
            path: src.to_path_buf(),
            source,
        })?;
        if !meta.is_file() {
            self.output.skipped += 1;
            self.changed(src, "is no longer a regular file".into())?;
            return Ok(Opened::Skipped);
        }
        if self.own_file == Some((meta.dev(), meta.ino())) {
            return Ok(Opened::Skipped);
        }
        Ok(Opened::File(file, Stat::from(&meta)))
    }

    /// Archives one regular file: its header, then its data streamed through
    /// the CRC-32 and held to the size in the header whatever the file does
    /// meanwhile (a shrunk file padded with zeros), then the padding to the
    /// next block. A change seen is handled as `on_changed` says.
    fn add_file(
        &mut self,
        place: Place<'_>,
        src: &Path,
        archive_path: &Path,
    ) -> Result<(), TarDirError> {
        (self.before_file)(src);
        let (mut file, before) = match self.open(place, src)? {
            Opened::File(file, stat) => (file, stat),
            Opened::Skipped => return Ok(()),
        };
        let size = before.size;
        let mut header = self.header_from(&before, EntryType::Regular);
        header.set_size(size);
        // The header and any long-name entry now; the data is streamed below
        // so its size can be held to the header's whatever the file does.
        self.append_empty(&mut header, archive_path)?;

        let mut crc = crc32fast::Hasher::new();
        let copied = self.copy_file_data(&mut file, size, src, &mut crc)?;
        if copied < size {
            write_zeros(self.builder.get_mut(), size - copied).map_err(|e| self.write_error(e))?;
            update_with_zeros(&mut crc, size - copied);
        }
        if let Some((what, kept)) = change_while_archived(&mut file, &before, copied) {
            self.changed_keeping(src, what, Some(kept))?;
        }
        let padding = (512 - size % 512) % 512;
        write_zeros(self.builder.get_mut(), padding).map_err(|e| self.write_error(e))?;
        self.file_crcs.push(crc.finalize());
        self.output.files += 1;
        Ok(())
    }

    /// Streams up to `size` bytes of `file` into the archive, through `crc`,
    /// the progress and the throttle, checking for a stop at each chunk;
    /// returns how many bytes the file had (fewer if it shrank). A failure
    /// names the side that failed: reading `src`, or writing the archive.
    fn copy_file_data(
        &mut self,
        file: &mut File,
        size: u64,
        src: &Path,
        crc: &mut crc32fast::Hasher,
    ) -> Result<u64, TarDirError> {
        let control = self.control;
        let progress = self.progress;
        let throttle = self.throttle.as_deref();
        let mut stopped = None;
        let copied = self
            .builder
            .get_mut()
            .copy_from(file, size, &mut self.scratch, |data| {
                crc.update(data);
                progress.inc(data.len() as u64);
                if let Some(throttle) = throttle {
                    throttle.take_blocking_unless(data.len() as u64, || control.check().is_err());
                }
                control.check().map_err(|stop| {
                    stopped = Some(stop);
                    io::Error::other(stop)
                })
            });
        if let Some(stop) = stopped {
            return Err(stop.into());
        }
        match copied {
            Ok(copied) => Ok(copied),
            // Which side failed? Writes fail with the writer's error; retry a
            // read to tell: a read error repeats.
            Err(e) => {
                let mut probe = [0u8; 1];
                Err(match file.read(&mut probe) {
                    Err(read_error) => TarDirError::Read {
                        path: src.to_path_buf(),
                        source: read_error,
                    },
                    Ok(_) => self.write_error(e),
                })
            }
        }
    }
}

/// How a file whose data was just copied (`copied` bytes, of the
/// `before.size` its header says) changed while it was archived, as (what
/// happened, what the archive holds), or `None` if it did not: it shrank,
/// grew (one more byte can be read), or its mtime moved. Size and mtime
/// only: a hard link made or removed elsewhere (a Cassandra compaction
/// removing the live SSTable) changes the ctime of an unchanged snapshot file.
fn change_while_archived(file: &mut File, before: &Stat, copied: u64) -> Option<(String, String)> {
    let size = before.size;
    if copied < size {
        return Some((
            format!("shrank while being archived (from {size} to {copied} bytes)"),
            format!("stored its first {copied} bytes padded with zeros to {size}"),
        ));
    }
    let mut probe = [0u8; 1];
    if matches!(file.read(&mut probe), Ok(n) if n > 0) {
        return Some((
            format!("grew while being archived (past {size} bytes)"),
            format!("stored its first {size} bytes"),
        ));
    }
    let modified = file
        .metadata()
        .map(|m| Stat::from(&m))
        .is_ok_and(|after| (after.mtime, after.mtime_nsec) != (before.mtime, before.mtime_nsec));
    modified.then(|| {
        (
            "was modified while being archived".to_string(),
            "the stored copy may mix old and new data".to_string(),
        )
    })
}

fn write_zeros(sink: &mut impl Write, mut count: u64) -> io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while count > 0 {
        let n = count.min(ZEROS.len() as u64) as usize;
        sink.write_all(&ZEROS[..n])?;
        count -= n as u64;
    }
    Ok(())
}

fn update_with_zeros(crc: &mut crc32fast::Hasher, mut count: u64) {
    const ZEROS: [u8; 4096] = [0; 4096];
    while count > 0 {
        let n = count.min(ZEROS.len() as u64) as usize;
        crc.update(&ZEROS[..n]);
        count -= n as u64;
    }
}

/// True when the symlink at `link` (an archive path) to `target` resolves
/// outside `top`, the archive path of the source it belongs to: an absolute
/// target, or more `..` than folders between `top` and the link.
fn points_outside(link: &Path, target: &Path, top: &Path) -> bool {
    let floor = top.components().count();
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth <= floor {
                    return true;
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> TarDirOptions {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn archive_paths_must_be_relative_without_dotdot() {
        assert_eq!(archive_path("./a/b/", false).unwrap(), PathBuf::from("a/b"));
        assert!(archive_path("/abs", false).is_err());
        assert!(archive_path("a/../b", false).is_err());
        assert!(archive_path("", false).is_err());
        assert_eq!(archive_path("", true).unwrap(), PathBuf::new());
    }

    #[test]
    fn src_and_entries_are_exclusive_and_overlaps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let both = options(
            serde_json::json!({"dest": "x.tar", "src": d, "entries": [{"src": d, "path": "a"}]}),
        );
        assert!(matches!(Plan::new(&both), Err(TarDirError::Options(_))));
        let overlap = options(serde_json::json!({"dest": "x.tar", "entries": [
            {"src": d, "path": "a"}, {"src": d, "path": "a/b"}]}));
        let e = Plan::new(&overlap).err().unwrap();
        assert!(e.to_string().contains("overlap"), "{e}");
    }

    #[test]
    fn parents_of_entry_paths_are_synthesized_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let plan = Plan::new(&options(serde_json::json!({"dest": "x.tar", "entries": [
            {"src": d, "path": "top/ks/t1"}, {"src": d, "path": "top/ks/t2"}, {"src": d, "path": "top/a.cql"}]})))
        .unwrap();
        let dirs: Vec<_> = plan.synthesized_dirs.iter().cloned().collect();
        assert_eq!(dirs, [PathBuf::from("top"), PathBuf::from("top/ks")]);
    }

    #[test]
    fn exclude_matches_names_anywhere_and_paths_from_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let plan = Plan::new(&options(serde_json::json!({"dest": "x.tar",
            "src": dir.path(), "prefix": "files", "exclude": ["*.tmp", "files/cache/**"]})))
        .unwrap();
        assert!(plan.excluded(Path::new("files/a/b.tmp")));
        assert!(plan.excluded(Path::new("files/cache/x/y")));
        assert!(!plan.excluded(Path::new("files/a/cache/x")));
        assert!(!plan.excluded(Path::new("files/a/b.txt")));
    }

    #[test]
    fn symlinks_resolving_above_their_source_point_outside() {
        let top = Path::new("files_S");
        let outside =
            |link: &str, target: &str| points_outside(Path::new(link), Path::new(target), top);
        assert!(!outside("files_S/a/l", "b"));
        assert!(!outside("files_S/a/l", "../b"));
        assert!(outside("files_S/a/l", "../../b"));
        assert!(outside("files_S/l", "/etc/hostname"));
        assert!(!outside("files_S/a/l", "x/../../y"));
        assert!(outside("files_S/a/l", "x/../../../y"));
        // No top folder (`prefix: ""`): the archive's root is the floor.
        assert!(outside("l", "../x"));
        assert!(!points_outside(
            Path::new("a/l"),
            Path::new("../x"),
            Path::new("")
        ));
    }

    #[test]
    fn the_prescan_totals_the_same_with_its_threads_as_without() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        let mut expected = 0;
        for i in 0..600u64 {
            let folder = tree.join(format!("{:02x}", i % 7));
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join(format!("f{i}")), vec![b'x'; i as usize * 13]).unwrap();
            expected += i * 13;
        }
        // A symlink to a file counts nothing (it is stored as a link).
        std::os::unix::fs::symlink("00/f0", tree.join("link")).unwrap();
        let single = dir.path().join("single.cql");
        std::fs::write(&single, b"CREATE KEYSPACE").unwrap();
        expected += 15;
        let plan = Plan::new(&options(serde_json::json!({"dest": "x.tar", "entries": [
            {"src": tree, "path": "top/tree"}, {"src": single, "path": "top/single.cql"}]})))
        .unwrap();
        assert_eq!(plan.prescan(0), expected);
        assert_eq!(plan.prescan(FILES_AHEAD), expected);
    }

    #[test]
    fn unknown_option_and_bad_compression_are_rejected() {
        let e =
            serde_json::from_value::<TarDirOptions>(serde_json::json!({"dest": "x", "srcs": "y"}))
                .unwrap_err();
        assert!(e.to_string().contains("unknown field `srcs`"), "{e}");
        let e = serde_json::from_value::<TarDirOptions>(
            serde_json::json!({"dest": "x", "src": "y", "compress": "xz"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `xz`"), "{e}");
    }
}
