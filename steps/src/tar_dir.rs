//! `tar_dir`: writes a GNU tar archive (optionally zstd/gzip) of folders and
//! files in one pass, with its SHA-256, atomically, in a reproducible order.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use crate::archive_io::{ArchiveSink, Compression};
use crate::atomic_file::PartialFile;
use crate::blocking_work::{Stop, WorkControl, run_blocking};
use crate::checksum_sidecar::{Sidecar, write_sidecar};
use crate::error::{StepError, StepFailure};
use crate::progress::Progress;
use crate::step::{DryRun, Step, StepContext};

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
    fn kind(&self) -> &'static str {
        match self {
            TarDirError::Options(_) | TarDirError::Pattern { .. } => "invalid_options",
            TarDirError::Source { .. } => "source",
            TarDirError::Unreadable { .. } => "unreadable",
            TarDirError::Read { .. } | TarDirError::Write { .. } => "io",
            TarDirError::DiskFull { .. } => "disk_full",
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
regular files with their content (e.g. Cassandra snapshot files); symlinks are
stored as symlinks, never followed. Sockets, FIFOs and devices are skipped with
a warning. Hot data: a file that vanishes before it is read is skipped with a
warning; a file that grows or shrinks while read still gives a well-formed
entry with the size seen when it was opened (cut, or padded with zeros) and a
warning. A file or folder that cannot be read fails the step, naming it,
unless `on_unreadable: \"skip\"`. Folders that `entries` paths need but no
source provides (e.g. the top folder) are added with mode 0755.

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

Result:
  path         string   the archive
  bytes        int      archive size
  entries      int      entries in the archive
  files        int      regular files stored
  dirs         int      folders stored
  sha256       string   hex SHA-256 of the archive
  skipped      int      sources left out (vanished, unreadable, special files)
  warnings     array    one line per problem that did not fail the step (first 100)
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
            (None, Some(entries)) => format!("{} sources", entries.len()),
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
    let started = Instant::now();
    let plan = Plan::new(options)?;
    let total = plan.prescan();
    write_planned(options, control, before_file, plan, total, started)
        .map_err(|e| explain_disk_full(e, options, total))
}

fn write_planned(
    options: &TarDirOptions,
    control: &WorkControl,
    before_file: &dyn Fn(&Path),
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
            path: crate::atomic_file::partial_path(dest),
            source,
        })?;
    let own_file = file.metadata().map(|m| (m.dev(), m.ino())).ok();
    let sink = ArchiveSink::new(file, options.compress, options.level.unwrap_or(0))
        .map_err(write_error)?;
    let mut writer = ArchiveWriter {
        builder: tar::Builder::new(sink),
        control,
        progress: &progress,
        on_unreadable: options.on_unreadable,
        own_file,
        before_file,
        names: NameCache::default(),
        scratch: Vec::new(),
        output: TarDirOutput::default(),
        dest: dest.clone(),
        synthesized_mtime: plan.synthesized_mtime,
        file_crcs: Vec::new(),
    };
    plan.walk(&mut |item| writer.add(item))?;
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
    if output.warnings.len() > MAX_WARNINGS {
        let more = output.warnings.len() - MAX_WARNINGS;
        output.warnings.truncate(MAX_WARNINGS);
        output
            .warnings
            .push(format!("... and {more} more warnings"));
    }
    Ok(output)
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
    Found {
        entry: &'a walkdir::DirEntry,
        archive_path: &'a Path,
    },
    /// Something that could not be listed.
    Error { path: PathBuf, error: io::Error },
}

impl Plan {
    fn new(options: &TarDirOptions) -> Result<Plan, TarDirError> {
        let mut roots = match (&options.src, &options.entries) {
            (Some(_), Some(_)) => {
                return Err(TarDirError::Options(
                    "give either `src` (with `prefix`) or `entries`, not both".into(),
                ));
            }
            (None, None) => {
                return Err(TarDirError::Options("give `src` or `entries`".into()));
            }
            (Some(src), None) => {
                let prefix = match &options.prefix {
                    Some(prefix) => prefix.clone(),
                    None => src
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                };
                vec![Root {
                    src: src.clone(),
                    path: archive_path(&prefix, true)?,
                }]
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
                    .collect::<Result<Vec<_>, TarDirError>>()?
            }
        };
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
        let mut synthesized_mtime = 0;
        for root in &roots {
            let meta = std::fs::metadata(&root.src).map_err(|source| TarDirError::Source {
                path: root.src.clone(),
                source,
            })?;
            synthesized_mtime = synthesized_mtime.max(meta.mtime().max(0) as u64);
        }
        let mut synthesized_dirs = BTreeSet::new();
        for root in &roots {
            for ancestor in root.path.ancestors().skip(1) {
                if !ancestor.as_os_str().is_empty() {
                    synthesized_dirs.insert(ancestor.to_path_buf());
                }
            }
        }
        let mut paths = GlobSetBuilder::new();
        let mut names = GlobSetBuilder::new();
        for pattern in &options.exclude {
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
                pattern: options.exclude.join(", "),
                source,
            })
        };
        Ok(Plan {
            roots,
            synthesized_dirs,
            synthesized_mtime,
            exclude_paths: build(paths)?,
            exclude_names: build(names)?,
        })
    }

    fn excluded(&self, archive_path: &Path) -> bool {
        archive_path
            .file_name()
            .is_some_and(|name| self.exclude_names.is_match(name))
            || self.exclude_paths.is_match(archive_path)
    }

    /// Total size of the regular files, for progress. Errors are ignored
    /// here: the real walk reports them.
    fn prescan(&self) -> u64 {
        let mut total = 0;
        let _ = self.walk(&mut |item| {
            if let Item::Found { entry, .. } = item
                && entry.file_type().is_file()
                && let Ok(meta) = entry.metadata()
            {
                total += meta.len();
            }
            Ok(())
        });
        total
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
            let walker = walkdir::WalkDir::new(&root.src)
                .follow_links(false)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|entry| {
                    entry.depth() == 0 || {
                        let relative = entry.path().strip_prefix(&root.src).unwrap_or(entry.path());
                        !self.excluded(&root.path.join(relative))
                    }
                });
            for entry in walker {
                match entry {
                    Ok(entry) => {
                        let relative = entry
                            .path()
                            .strip_prefix(&root.src)
                            .unwrap_or(Path::new(""));
                        // `join("")` would add a trailing slash, which GNU tar
                        // reads as a folder: a file source is the root itself.
                        let archive_path = if relative.as_os_str().is_empty() {
                            root.path.clone()
                        } else {
                            root.path.join(relative)
                        };
                        if archive_path.as_os_str().is_empty() {
                            // `prefix: ""`: the folder itself has no entry.
                            continue;
                        }
                        visit(Item::Found {
                            entry: &entry,
                            archive_path: &archive_path,
                        })?;
                    }
                    Err(error) => {
                        let path = error.path().unwrap_or(&root.src).to_path_buf();
                        let error = error
                            .into_io_error()
                            .unwrap_or_else(|| io::Error::other("filesystem loop"));
                        visit(Item::Error { path, error })?;
                    }
                }
            }
        }
        for dir in synthesized {
            visit(Item::SynthesizedDir(dir))?;
        }
        Ok(())
    }
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
    /// The `.partial` being written, so a `dest` inside a source is not archived.
    own_file: Option<(u64, u64)>,
    before_file: &'a dyn Fn(&Path),
    names: NameCache,
    scratch: Vec<u8>,
    output: TarDirOutput,
    dest: PathBuf,
    synthesized_mtime: u64,
    /// CRC-32 of each regular file's data, for the checksum file.
    file_crcs: Vec<u32>,
}

/// How a source file was opened.
enum Opened {
    File(File, Metadata),
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
            Item::Found {
                entry,
                archive_path,
            } => {
                let file_type = entry.file_type();
                if file_type.is_file() {
                    self.add_file(entry.path(), archive_path)
                } else if file_type.is_dir() {
                    let Some(meta) = self.lstat(entry)? else {
                        return Ok(());
                    };
                    let mut header = self.header_from(&meta, EntryType::Directory);
                    header.set_size(0);
                    self.append_dir(&mut header, archive_path)?;
                    self.output.dirs += 1;
                    Ok(())
                } else if file_type.is_symlink() {
                    let Some(meta) = self.lstat(entry)? else {
                        return Ok(());
                    };
                    let target = match std::fs::read_link(entry.path()) {
                        Ok(target) => target,
                        Err(e) => return self.listing_error(entry.path(), e),
                    };
                    let mut header = self.header_from(&meta, EntryType::Symlink);
                    header.set_size(0);
                    self.builder
                        .append_link(&mut header, archive_path, &target)
                        .map_err(|e| self.write_error(e))?;
                    self.output.entries += 1;
                    Ok(())
                } else {
                    let kind = special_kind(&file_type);
                    self.skip(format!("skipped {kind} {}", entry.path().display()));
                    Ok(())
                }
            }
        }
    }

    /// An error while listing or examining `path`.
    fn listing_error(&mut self, path: &Path, error: io::Error) -> Result<(), TarDirError> {
        match error.kind() {
            io::ErrorKind::NotFound => {
                self.skip(format!(
                    "skipped {}: vanished while archiving",
                    path.display()
                ));
                Ok(())
            }
            io::ErrorKind::PermissionDenied => self.unreadable(path, error),
            _ => Err(TarDirError::Read {
                path: path.to_path_buf(),
                source: error,
            }),
        }
    }

    fn lstat(&mut self, entry: &walkdir::DirEntry) -> Result<Option<Metadata>, TarDirError> {
        match entry.metadata() {
            Ok(meta) => Ok(Some(meta)),
            Err(error) => {
                let error = error
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("filesystem loop"));
                self.listing_error(entry.path(), error)?;
                Ok(None)
            }
        }
    }

    fn header_from(&mut self, meta: &Metadata, entry_type: EntryType) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_mode(meta.mode() & 0o7777);
        header.set_mtime(meta.mtime().max(0) as u64);
        self.set_owner(&mut header, meta.uid(), meta.gid());
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

    fn open(&mut self, src: &Path) -> Result<Opened, TarDirError> {
        // O_NOFOLLOW: a file replaced by a symlink since listing is not
        // followed; O_NONBLOCK: one replaced by a FIFO does not hang the open.
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(src);
        let file = match opened {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                self.skip(format!(
                    "skipped {}: replaced by a symlink while archiving",
                    src.display()
                ));
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
            self.skip(format!(
                "skipped {}: no longer a regular file",
                src.display()
            ));
            return Ok(Opened::Skipped);
        }
        if self.own_file == Some((meta.dev(), meta.ino())) {
            return Ok(Opened::Skipped);
        }
        Ok(Opened::File(file, meta))
    }

    fn add_file(&mut self, src: &Path, archive_path: &Path) -> Result<(), TarDirError> {
        (self.before_file)(src);
        let (mut file, meta) = match self.open(src)? {
            Opened::File(file, meta) => (file, meta),
            Opened::Skipped => return Ok(()),
        };
        let size = meta.len();
        let mut header = self.header_from(&meta, EntryType::Regular);
        header.set_size(size);
        // The header and any long-name entry now; the data is streamed below
        // so its size can be held to the header's whatever the file does.
        self.append_empty(&mut header, archive_path)?;

        let control = self.control;
        let progress = self.progress;
        let mut stopped = None;
        let mut crc = crc32fast::Hasher::new();
        let copied = self
            .builder
            .get_mut()
            .copy_from(&mut file, size, &mut self.scratch, |data| {
                crc.update(data);
                progress.inc(data.len() as u64);
                control.check().map_err(|stop| {
                    stopped = Some(stop);
                    io::Error::other(stop)
                })
            });
        if let Some(stop) = stopped {
            return Err(stop.into());
        }
        let copied = match copied {
            Ok(copied) => copied,
            // Which side failed? Writes fail with the writer's error; retry a
            // read to tell: a read error repeats.
            Err(e) => {
                let mut probe = [0u8; 1];
                return Err(match file.read(&mut probe) {
                    Err(read_error) => TarDirError::Read {
                        path: src.to_path_buf(),
                        source: read_error,
                    },
                    Ok(_) => self.write_error(e),
                });
            }
        };
        let sink = self.builder.get_mut();
        if copied < size {
            write_zeros(sink, size - copied).map_err(|e| self.write_error(e))?;
            update_with_zeros(&mut crc, size - copied);
            self.warn(format!(
                "{} shrank while being archived: stored its first {copied} bytes padded with zeros to {size}",
                src.display()
            ));
        } else {
            let mut probe = [0u8; 1];
            if matches!(file.read(&mut probe), Ok(n) if n > 0) {
                self.warn(format!(
                    "{} grew while being archived: stored its first {size} bytes",
                    src.display()
                ));
            }
        }
        let sink = self.builder.get_mut();
        let padding = (512 - size % 512) % 512;
        write_zeros(sink, padding).map_err(|e| self.write_error(e))?;
        self.file_crcs.push(crc.finalize());
        self.output.files += 1;
        Ok(())
    }
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

fn special_kind(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_socket() {
        "socket"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_char_device() {
        "character device"
    } else {
        "special file"
    }
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
