//! `extract_archive`: unpacks a tar archive (plain, zstd or gzip) into a
//! folder, refusing anything that would write outside it.
//!
//! Archives may come from anywhere at restore time, so every entry is checked
//! before anything is written: no absolute paths, no `..`, no device files or
//! FIFOs, no hard link that points outside `dest`. Writing never follows a
//! symlink: every folder on the way to an entry is opened relative to its
//! parent with `O_NOFOLLOW` (so it must be a real folder, and paths longer
//! than PATH_MAX work), and an existing symlink at an entry's own path is
//! replaced, not written through. Symlinks are data: they are created as
//! they were archived, pointing wherever they pointed (those pointing outside
//! `dest` are reported), last, once every file is in place, and never
//! followed; one whose target goes through another symlink of the archive is
//! refused.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, UtimensatFlags, fchmod, fstatat, futimens, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use serde::{Deserialize, Serialize};
use tar::EntryType;

use crate::archive::io::{CHUNK_SIZE, Compression};
use crate::archive::verification::{VerifyArchiveOptions, VerifyError, verify_archive};
use crate::runtime::blocking_work::{Stop, WorkControl, run_blocking};
use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::progress::Progress;
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::runtime::throttle::{MaxRate, ThrottledRead};

/// The `extract_archive` step.
pub struct ExtractArchive;

/// Options of `extract_archive`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractArchiveOptions {
    /// The archive.
    pub path: PathBuf,
    /// The folder to extract into (created if missing).
    pub dest: PathBuf,
    /// Verify the archive against its `.sha256` file first.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// The archive's top folder (`files_STAMP`): every entry must be in it,
    /// and its contents are extracted straight into `dest`.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// The most bytes per second to read (the check and the extraction).
    #[serde(default)]
    pub max_rate: MaxRate,
}

fn default_true() -> bool {
    true
}

/// Result of `extract_archive`.
#[derive(Debug, Default, Serialize)]
pub struct ExtractArchiveOutput {
    /// Entries created (files, folders, links).
    pub entries: u64,
    /// Of those, files (regular files and hard links).
    pub files: u64,
    /// Bytes of file data written.
    pub bytes: u64,
    /// Symlinks created that point outside `dest`, as `path -> target`
    /// (present only when there are some): restored as they were archived,
    /// but what they point to is not part of the archive.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links_outside: Vec<String>,
}

/// Why `extract_archive` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The verification pass failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// An entry would write outside `dest`, or is a kind that is never extracted.
    #[error("{archive}: refused entry `{entry}`: {reason}")]
    Refused {
        /// The archive.
        archive: PathBuf,
        /// The entry's path in the archive.
        entry: String,
        /// Why.
        reason: String,
    },
    /// Reading the archive failed.
    #[error("cannot read archive {path}")]
    Read {
        /// The archive.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Writing under `dest` failed.
    #[error("cannot write {path}")]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Interrupted or timed out; what was extracted so far stays.
    #[error(transparent)]
    Stopped(#[from] Stop),
}

impl StepFailure for ExtractError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            ExtractError::Verify(e) => e.error_kind(),
            ExtractError::Refused { .. } => ErrorKind::UnsafeEntry,
            ExtractError::Read { .. } | ExtractError::Write { .. } => ErrorKind::Io,
            ExtractError::Stopped(stop) => stop.kind(),
        }
    }
}

impl Step for ExtractArchive {
    const NAME: &'static str = "extract_archive";
    const HANDLES_TIMEOUT: bool = true;
    const DOC: &'static str = "\
Extracts a tar archive (plain, zstd or gzip) into a folder, safely.

With `verify` (the default) the archive is first checked like verify_archive
with `require_checksum: true`: its `<path>.sha256` file must exist and match.
Entries with an absolute path or a `..` component, hard links pointing
outside `dest`, entries under a symlink, symlinks whose target goes through
another symlink of the archive, device files, FIFOs and GNU sparse files
(whose holes would be written out in full) are refused: the step fails naming
the entry, and nothing is ever written outside `dest`. Symlinks are restored
as symlinks with the target they were archived with, also one pointing
outside `dest` (listed in `links_outside`); they are created last and never
followed, and symlinks already in `dest` are never written through. Folders
are opened relative to their parent, so paths longer than PATH_MAX work. Mode
(without setuid/setgid bits) and mtime are restored; owners too when running
as root. On failure, what was extracted so far stays in `dest`.

With `strip_prefix` (the archive's top folder, e.g. `files_STAMP`), what is in
that folder is extracted straight into `dest`, like `tar --strip-components=1`:
an entry outside it is refused, hard link targets are read below it too, and
`dest` itself keeps its own owner and mode (the top folder's are not applied).

Options:
  path          string   the archive (required)
  dest          string   folder to extract into, created if missing (required)
  verify        bool     check the archive and its .sha256 file first (default true)
  strip_prefix  string   the top folder every entry is in, left out of the paths
                         (default: none, paths are kept as archived)
  max_rate      string   most bytes per second read (check and extraction), e.g.
                         \"200MiB/s\"; steps given the same rate share it (default \"\": none)

Result:
  entries        int     entries created (files, folders, links)
  files          int     of those, files (regular files and hard links)
  bytes          int     bytes of file data written
  links_outside  array   symlinks pointing outside dest, \"path -> target\" (only if any)

Example:
  extract_archive(#{ path: `${dir}/files_${stamp}.tar`, dest: `${work}/restore` });
  extract_archive(#{ path: archive, dest: tmp, strip_prefix: `files_${stamp}` });
";

    type Options = ExtractArchiveOptions;
    type Output = ExtractArchiveOutput;

    fn describe(options: &ExtractArchiveOptions) -> String {
        format!(
            "extract {} into {}",
            options.path.display(),
            options.dest.display()
        )
    }

    fn label(options: &ExtractArchiveOptions) -> Option<String> {
        options
            .path
            .file_name()
            .map(|n| format!("extract {}", n.to_string_lossy()))
    }

    fn dry_run(_options: &ExtractArchiveOptions) -> DryRun<ExtractArchiveOutput> {
        DryRun::Skip(ExtractArchiveOutput::default())
    }

    async fn run(
        options: ExtractArchiveOptions,
        ctx: StepContext,
    ) -> Result<ExtractArchiveOutput, StepError> {
        let (control, _cancel_when_dropped) = WorkControl::from_context(&ctx);
        run_blocking("extract_archive", move || {
            extract_archive(&options, &control)
        })
        .await
    }
}

/// The blocking body of the step: checks `strip_prefix`, verifies the
/// archive (with `verify`), then extracts its entries one by one, the
/// symlinks and the folders' attributes last.
pub fn extract_archive(
    options: &ExtractArchiveOptions,
    control: &WorkControl,
) -> Result<ExtractArchiveOutput, ExtractError> {
    let strip_prefix = strip_prefix_of(options)?;
    if options.verify {
        verify_archive(
            &VerifyArchiveOptions {
                path: options.path.clone(),
                require_checksum: true,
                max_rate: options.max_rate,
                ..VerifyArchiveOptions::default()
            },
            control,
        )?;
    }
    let read_error = |source| ExtractError::Read {
        path: options.path.clone(),
        source,
    };
    let (stream, size) = open_archive(options, control)?;
    let dest_fd = open_dest(&options.dest)?;
    let progress = Progress::new(control.progress, &control.label, size);
    let mut extractor = Extractor {
        archive_path: &options.path,
        strip_prefix: strip_prefix.as_deref(),
        dest: &options.dest,
        dest_fd,
        last_parent: None,
        control,
        progress: &progress,
        as_root: nix::unistd::geteuid().is_root(),
        buffer: vec![0; CHUNK_SIZE],
        dirs: Vec::new(),
        symlinks: Vec::new(),
        symlink_paths: HashSet::new(),
        output: ExtractArchiveOutput::default(),
    };
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries().map_err(read_error)? {
        control.check()?;
        let entry = entry.map_err(read_error)?;
        extractor.extract(entry)?;
    }
    extractor.create_symlinks()?;
    extractor.finish_dirs()?;
    progress.finish();
    Ok(extractor.output)
}

/// The `strip_prefix` option as a relative folder path, or why it is refused
/// (before anything is written).
fn strip_prefix_of(options: &ExtractArchiveOptions) -> Result<Option<PathBuf>, ExtractError> {
    let Some(top) = options.strip_prefix.as_deref() else {
        return Ok(None);
    };
    top_folder(top)
        .map(Some)
        .map_err(|reason| ExtractError::Refused {
            archive: options.path.clone(),
            entry: top.to_string(),
            reason: format!("strip_prefix: {reason}"),
        })
}

/// The archive's decompressed, throttled byte stream and its size on disk
/// (what the progress counts).
fn open_archive(
    options: &ExtractArchiveOptions,
    control: &WorkControl,
) -> Result<(Box<dyn Read>, u64), ExtractError> {
    let read_error = |source| ExtractError::Read {
        path: options.path.clone(),
        source,
    };
    let mut file = File::open(&options.path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    let compression = Compression::detect(&mut file).map_err(read_error)?;
    let reader = BufReader::with_capacity(
        CHUNK_SIZE,
        ThrottledRead::new(file, options.max_rate.throttle()).until_stopped(control),
    );
    let stream: Box<dyn Read> = match compression {
        Compression::None => Box::new(reader),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(read_error)?)
        }
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
    };
    Ok((stream, size))
}

/// Creates `dest` if missing and opens it: every path below it is reached
/// from this descriptor.
fn open_dest(dest: &Path) -> Result<OwnedFd, ExtractError> {
    let write_error = |source| ExtractError::Write {
        path: dest.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(write_error)?;
    File::open(dest).map(OwnedFd::from).map_err(write_error)
}

/// A folder's metadata, applied after its contents are written.
struct DirAttributes {
    /// Relative path inside `dest`.
    relative: PathBuf,
    mode: u32,
    mtime: u64,
    owner: (u64, u64),
}

/// A symlink, created after every file.
struct PendingSymlink {
    /// Relative path inside `dest`.
    relative: PathBuf,
    target: PathBuf,
    mtime: u64,
    owner: (u64, u64),
    entry: String,
}

struct Extractor<'a> {
    archive_path: &'a Path,
    /// The top folder left out of every path (`strip_prefix`).
    strip_prefix: Option<&'a Path>,
    dest: &'a Path,
    /// `dest`, open: every path below it is reached from here, one name at a time.
    dest_fd: OwnedFd,
    /// The folder of the previous entry (entries come grouped by folder).
    last_parent: Option<(PathBuf, OwnedFd)>,
    control: &'a WorkControl,
    progress: &'a Progress,
    as_root: bool,
    buffer: Vec<u8>,
    dirs: Vec<DirAttributes>,
    symlinks: Vec<PendingSymlink>,
    /// Relative paths of the symlinks seen so far (created at the end).
    symlink_paths: HashSet<PathBuf>,
    output: ExtractArchiveOutput,
}

impl Extractor<'_> {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ExtractError {
        ExtractError::Refused {
            archive: self.archive_path.to_path_buf(),
            entry: entry.to_string(),
            reason: reason.into(),
        }
    }

    /// Extracts one entry: checks its path and kind, then creates it under
    /// `dest` as a folder, a file or a hard link (a symlink is only noted
    /// here and made by [`Self::create_symlinks`], after every file).
    fn extract<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let (name, relative) = self.entry_path(&entry)?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let mtime = header.mtime().unwrap_or(0);
        let owner = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let entry_type = header.entry_type();
        if !self.is_extracted(entry_type, &name)? {
            return Ok(());
        }
        if relative.as_os_str().is_empty() {
            // `./` itself: nothing to create.
            return Ok(());
        }
        let target = self.dest.join(&relative);
        let file_name = entry_name(&relative);
        let parent = self.open_parent(&relative, &name, true)?;
        let parent_relative = relative.parent().map(Path::to_path_buf).unwrap_or_default();
        match entry_type {
            EntryType::Directory => {
                self.make_dir(&parent, &file_name, &target)?;
                self.dirs.push(DirAttributes {
                    relative,
                    mode,
                    mtime,
                    owner,
                });
            }
            EntryType::Symlink => {
                let link = self.link_name(&entry, &name)?;
                self.symlink_paths.insert(relative.clone());
                self.symlinks.push(PendingSymlink {
                    relative,
                    target: link,
                    mtime,
                    owner,
                    entry: name,
                });
                return Ok(());
            }
            EntryType::Link => {
                let link = self.link_name(&entry, &name)?;
                self.make_hard_link(&link, &name, &parent, &file_name, &target)?;
                self.output.files += 1;
            }
            // Regular, contiguous and GNU sparse entries: file data.
            _ => {
                self.remove_existing(&parent, &file_name, &target)?;
                let size = entry.size();
                let file = self.write_file(&mut entry, &parent, &file_name, &target, size)?;
                self.set_attributes(&file, &target, mode, mtime, owner)?;
                self.output.files += 1;
            }
        }
        self.last_parent = Some((parent_relative, parent));
        self.output.entries += 1;
        Ok(())
    }

    /// The entry's path as archived (for messages) and as a safe path
    /// relative to `dest` (the `strip_prefix` folder left out), or why it is
    /// refused.
    fn entry_path<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(String, PathBuf), ExtractError> {
        let raw_path = entry
            .path()
            .map_err(|source| ExtractError::Read {
                path: self.archive_path.to_path_buf(),
                source,
            })?
            .into_owned();
        let name = raw_path.display().to_string();
        let relative = safe_relative(&raw_path)
            .and_then(|relative| self.strip(relative))
            .map_err(|reason| self.refuse(&name, reason))?;
        Ok((name, relative))
    }

    /// Whether an entry of this kind creates something (false: a pax
    /// header, already applied by the tar crate), or why it is refused.
    fn is_extracted(&self, entry_type: EntryType, name: &str) -> Result<bool, ExtractError> {
        match entry_type {
            EntryType::XGlobalHeader | EntryType::XHeader => Ok(false),
            EntryType::Char | EntryType::Block => {
                Err(self.refuse(name, "device files are never extracted"))
            }
            EntryType::Fifo => Err(self.refuse(name, "FIFOs are never extracted")),
            // Its header sets the file's size apart from the data stored: a
            // 2 KiB entry can claim terabytes of holes, which would be
            // written out as zeros (found by fuzzing). runbook never writes
            // sparse entries; GNU tar extracts them with real holes.
            EntryType::GNUSparse => Err(self.refuse(
                name,
                "GNU sparse files are never extracted (their holes would be written out in full; use GNU tar)",
            )),
            _ => Ok(true),
        }
    }

    /// Makes the folder `file_name` in `parent`: an existing folder is kept,
    /// a file or symlink in its place is replaced.
    fn make_dir(
        &self,
        parent: &OwnedFd,
        file_name: &CString,
        target: &Path,
    ) -> Result<(), ExtractError> {
        match fstatat(parent, file_name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFDIR => Ok(()),
            Ok(_) => {
                self.remove_existing(parent, file_name, target)?;
                self.mkdir(parent, file_name, target)
            }
            Err(_) => self.mkdir(parent, file_name, target),
        }
    }

    /// Makes `file_name` in `parent` a hard link to `link` (the target's path
    /// as archived), which must be a regular file extracted before it.
    fn make_hard_link(
        &self,
        link: &Path,
        name: &str,
        parent: &OwnedFd,
        file_name: &CString,
        target: &Path,
    ) -> Result<(), ExtractError> {
        let source_relative = safe_relative(link)
            .and_then(|relative| self.strip(relative))
            .map_err(|reason| self.refuse(name, format!("hard link target: {reason}")))?;
        let not_extracted = || {
            self.refuse(
                name,
                format!(
                    "hard link to `{}`, which is not a file extracted before it",
                    link.display()
                ),
            )
        };
        if source_relative.as_os_str().is_empty() {
            return Err(not_extracted());
        }
        let source_parent = self.open_parent(&source_relative, name, false)?;
        let source_name = entry_name(&source_relative);
        match fstatat(
            &source_parent,
            source_name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFREG => {}
            _ => return Err(not_extracted()),
        }
        self.remove_existing(parent, file_name, target)?;
        linkat(
            &source_parent,
            source_name.as_c_str(),
            parent,
            file_name.as_c_str(),
            AtFlags::empty(),
        )
        .map_err(|errno| write_error(target, errno))
    }

    /// `relative` without the top folder of `strip_prefix` (empty for the
    /// top folder itself), or why it is not in that folder.
    fn strip(&self, relative: PathBuf) -> Result<PathBuf, String> {
        let Some(top) = self.strip_prefix else {
            return Ok(relative);
        };
        match relative.strip_prefix(top) {
            Ok(rest) => Ok(rest.to_path_buf()),
            Err(_) => Err(format!(
                "it is not in the archive's top folder `{}/` (strip_prefix)",
                top.display()
            )),
        }
    }

    fn link_name<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        name: &str,
    ) -> Result<PathBuf, ExtractError> {
        match entry.link_name() {
            Ok(Some(link)) => Ok(link.into_owned()),
            Ok(None) => Err(self.refuse(name, "link without a target")),
            Err(source) => Err(ExtractError::Read {
                path: self.archive_path.to_path_buf(),
                source,
            }),
        }
    }

    fn mkdir(&self, parent: &OwnedFd, name: &CString, path: &Path) -> Result<(), ExtractError> {
        mkdirat(parent, name.as_c_str(), Mode::from_bits_truncate(0o777))
            .map_err(|errno| write_error(path, errno))
    }

    /// Removes a file or symlink in the way (never what a symlink points to).
    fn remove_existing(
        &self,
        parent: &OwnedFd,
        name: &CString,
        path: &Path,
    ) -> Result<(), ExtractError> {
        match fstatat(parent, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFDIR => Err(ExtractError::Write {
                path: path.to_path_buf(),
                source: io::Error::other("a folder is in the way"),
            }),
            Ok(_) => unlinkat(parent, name.as_c_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(|errno| write_error(path, errno)),
            Err(_) => Ok(()),
        }
    }

    /// Opens the folder holding `relative`, one component at a time from
    /// `dest`, never through a symlink (`O_NOFOLLOW`): each must be a real
    /// folder, and none may be a symlink of the archive. With `create`,
    /// missing folders are made.
    fn open_parent(
        &self,
        relative: &Path,
        name: &str,
        create: bool,
    ) -> Result<OwnedFd, ExtractError> {
        let parent = relative.parent().unwrap_or(Path::new(""));
        self.refuse_archive_symlinks_in(parent, name)?;
        if let Some((cached, fd)) = &self.last_parent
            && cached == parent
        {
            return fd.try_clone().map_err(|source| ExtractError::Write {
                path: self.dest.join(parent),
                source,
            });
        }
        let mut current = self
            .dest_fd
            .try_clone()
            .map_err(|source| ExtractError::Write {
                path: self.dest.to_path_buf(),
                source,
            })?;
        let mut path = self.dest.to_path_buf();
        for component in parent.components() {
            path.push(component);
            current = self.open_folder(&current, component.as_os_str(), &path, name, create)?;
        }
        Ok(current)
    }

    /// Refuses the entry `name` when a folder on its way (`parent`, relative
    /// to `dest`) is a symlink of the archive.
    fn refuse_archive_symlinks_in(&self, parent: &Path, name: &str) -> Result<(), ExtractError> {
        let mut relative_so_far = PathBuf::new();
        for component in parent.components() {
            relative_so_far.push(component);
            if self.symlink_paths.contains(&relative_so_far) {
                return Err(self.refuse(
                    name,
                    format!(
                        "its folder {} is a symlink in the archive",
                        relative_so_far.display()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Opens the folder `component` (at `path`) inside the open folder
    /// `current`, without following a symlink; with `create`, makes it if it
    /// is missing. `name` is the entry the folder is opened for.
    fn open_folder(
        &self,
        current: &OwnedFd,
        component: &OsStr,
        path: &Path,
        name: &str,
        create: bool,
    ) -> Result<OwnedFd, ExtractError> {
        let component = CString::new(component.as_bytes())
            .map_err(|_| self.refuse(name, "NUL byte in path"))?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut opened = openat(current, component.as_c_str(), flags, Mode::empty());
        if matches!(opened, Err(Errno::ENOENT)) && create {
            self.mkdir(current, &component, path)?;
            opened = openat(current, component.as_c_str(), flags, Mode::empty());
        }
        let is_symlink = || {
            fstatat(current, component.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| stat.st_mode & libc::S_IFMT == libc::S_IFLNK)
        };
        match opened {
            Ok(fd) => Ok(fd),
            // O_DIRECTORY | O_NOFOLLOW on a symlink: ELOOP or ENOTDIR.
            Err(Errno::ELOOP | Errno::ENOTDIR) if is_symlink() => Err(self.refuse(
                name,
                if create {
                    format!("its folder {} is a symlink", path.display())
                } else {
                    format!("link target goes through the symlink {}", path.display())
                },
            )),
            Err(Errno::ENOTDIR) => {
                Err(self.refuse(name, format!("{} is not a folder", path.display())))
            }
            Err(errno) => Err(write_error(path, errno)),
        }
    }

    fn write_file(
        &mut self,
        data: &mut impl Read,
        parent: &OwnedFd,
        name: &CString,
        target: &Path,
        size: u64,
    ) -> Result<File, ExtractError> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let mut file = openat(
            parent,
            name.as_c_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )
        .map(File::from)
        .map_err(|errno| write_error(target, errno))?;
        let mut left = size;
        while left > 0 {
            self.control.check()?;
            let want = left.min(self.buffer.len() as u64) as usize;
            let n = data
                .read(&mut self.buffer[..want])
                .map_err(|source| ExtractError::Read {
                    path: self.archive_path.to_path_buf(),
                    source,
                })?;
            if n == 0 {
                return Err(ExtractError::Read {
                    path: self.archive_path.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("archive truncated in `{}`", target.display()),
                    ),
                });
            }
            file.write_all(&self.buffer[..n])
                .map_err(|source| ExtractError::Write {
                    path: target.to_path_buf(),
                    source,
                })?;
            left -= n as u64;
            self.output.bytes += n as u64;
            self.progress.inc(n as u64);
        }
        Ok(file)
    }

    /// Owner (as root), mode and mtime of an open file or folder.
    fn set_attributes(
        &self,
        fd: &impl AsFd,
        path: &Path,
        mode: u32,
        mtime: u64,
        owner: (u64, u64),
    ) -> Result<(), ExtractError> {
        if self.as_root {
            fchown(
                fd,
                Some(Uid::from_raw(owner.0 as u32)),
                Some(Gid::from_raw(owner.1 as u32)),
            )
            .map_err(|errno| write_error(path, errno))?;
        }
        // No setuid/setgid from an archive of unknown origin.
        fchmod(fd, Mode::from_bits_truncate(mode & 0o1777))
            .map_err(|errno| write_error(path, errno))?;
        let time = TimeSpec::new(mtime as i64, 0);
        futimens(fd, &time, &time).map_err(|errno| write_error(path, errno))
    }

    /// Creates the symlinks, each checked against every other.
    fn create_symlinks(&mut self) -> Result<(), ExtractError> {
        let links: HashSet<PathBuf> = self.symlinks.iter().map(|l| l.relative.clone()).collect();
        self.last_parent = None;
        for link in std::mem::take(&mut self.symlinks) {
            self.control.check()?;
            let outside = check_symlink_target(&link.relative, &link.target, &links)
                .map_err(|reason| self.refuse(&link.entry, reason))?;
            let parent = self.open_parent(&link.relative, &link.entry, true)?;
            let name = entry_name(&link.relative);
            let path = self.dest.join(&link.relative);
            self.remove_existing(&parent, &name, &path)?;
            symlinkat(link.target.as_os_str(), &parent, name.as_c_str())
                .map_err(|errno| write_error(&path, errno))?;
            if self.as_root {
                fchownat(
                    &parent,
                    name.as_c_str(),
                    Some(Uid::from_raw(link.owner.0 as u32)),
                    Some(Gid::from_raw(link.owner.1 as u32)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|errno| write_error(&path, errno))?;
            }
            let time = TimeSpec::new(link.mtime as i64, 0);
            utimensat(
                &parent,
                name.as_c_str(),
                &time,
                &time,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|errno| write_error(&path, errno))?;
            if outside {
                tracing::warn!(
                    "{}: {} is a symlink to {}, outside {}: restored as a symlink; its target is not in the archive",
                    self.control.label,
                    path.display(),
                    link.target.display(),
                    self.dest.display()
                );
                self.output.links_outside.push(format!(
                    "{} -> {}",
                    link.relative.display(),
                    link.target.display()
                ));
            }
            self.output.entries += 1;
        }
        Ok(())
    }

    /// Folder modes and mtimes last (writing inside a folder changes its
    /// mtime), deepest first; each folder reopened without following symlinks.
    fn finish_dirs(&mut self) -> Result<(), ExtractError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| b.relative.cmp(&a.relative));
        self.last_parent = None;
        for dir in dirs {
            let path = self.dest.join(&dir.relative);
            let parent = self.open_parent(&dir.relative, &path.display().to_string(), false)?;
            let name = entry_name(&dir.relative);
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            let fd = openat(&parent, name.as_c_str(), flags, Mode::empty())
                .map_err(|errno| write_error(&path, errno))?;
            self.set_attributes(&fd, &path, dir.mode, dir.mtime, dir.owner)?;
        }
        Ok(())
    }
}

/// The last component of a relative path, for the `*at` calls (tar paths
/// hold no NUL byte: the header's fields end at the first one).
fn entry_name(relative: &Path) -> CString {
    let name = relative.file_name().unwrap_or(OsStr::new("."));
    CString::new(name.as_bytes()).unwrap_or_else(|_| CString::from(c"."))
}

fn write_error(path: &Path, errno: Errno) -> ExtractError {
    ExtractError::Write {
        path: path.to_path_buf(),
        source: errno.into(),
    }
}

/// `path` as a relative path with only normal components, or why not.
fn safe_relative(path: &Path) -> Result<PathBuf, String> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("path has a `..` component".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path".into()),
        }
    }
    Ok(relative)
}

/// The `strip_prefix` option as a relative path of one or more normal
/// components (`files_STAMP`, `files_STAMP/`), or why it is not one.
fn top_folder(text: &str) -> Result<PathBuf, String> {
    let top = safe_relative(Path::new(text))?;
    if top.as_os_str().is_empty() {
        return Err("it names no folder".into());
    }
    Ok(top)
}

/// Checks a symlink at `link` (relative to dest) pointing to `target`: it may
/// point anywhere (it is never followed), but a target that goes through
/// another symlink of the archive is refused. Returns whether it points
/// outside dest (an absolute target, or `..` above dest).
fn check_symlink_target(
    link: &Path,
    target: &Path,
    links: &HashSet<PathBuf>,
) -> Result<bool, String> {
    let mut resolved: Vec<&std::ffi::OsStr> = Vec::new();
    if let Some(parent) = link.parent() {
        resolved.extend(parent.components().map(|c| c.as_os_str()));
    }
    let components: Vec<Component> = target.components().collect();
    for (index, component) in components.iter().enumerate() {
        match component {
            Component::RootDir | Component::Prefix(_) => return Ok(true),
            Component::CurDir => {}
            Component::ParentDir => {
                if resolved.pop().is_none() {
                    return Ok(true);
                }
            }
            Component::Normal(part) => {
                resolved.push(part);
                let is_last = index + 1 == components.len();
                let so_far: PathBuf = resolved.iter().collect();
                if !is_last && links.contains(&so_far) {
                    return Err(format!(
                        "symlink to `{}` goes through the symlink `{}`",
                        target.display(),
                        so_far.display()
                    ));
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_only() {
        assert_eq!(
            safe_relative(Path::new("./a/b")).unwrap(),
            PathBuf::from("a/b")
        );
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
        assert!(safe_relative(Path::new("a/../../b")).is_err());
    }

    /// Regression (found by the extract_archive fuzz target, see
    /// docs/reliability.md, "Fuzzing"): a GNU sparse entry of one stored byte claiming a
    /// 256 MiB file was written out as 256 MiB of zeros; any size up to
    /// 2^63 could be claimed, filling the disk from a 2 KiB archive.
    #[test]
    fn gnu_sparse_entries_are_refused_not_inflated() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("sparse.tar");
        let claimed = 256u64 << 20;
        let mut header = tar::Header::new_gnu();
        header.set_path("big").unwrap();
        header.set_entry_type(EntryType::GNUSparse);
        header.set_mode(0o644);
        header.set_size(1);
        let gnu = header.as_gnu_mut().unwrap();
        gnu.set_real_size(claimed);
        gnu.sparse[0].set_offset(claimed - 1);
        gnu.sparse[0].set_length(1);
        header.set_cksum();
        let mut builder = tar::Builder::new(File::create(&archive).unwrap());
        builder.append(&header, &b"x"[..]).unwrap();
        builder.into_inner().unwrap();
        assert!(std::fs::metadata(&archive).unwrap().len() < 4096);

        let dest = dir.path().join("dest");
        let options = ExtractArchiveOptions {
            max_rate: MaxRate::UNLIMITED,
            path: archive,
            dest: dest.clone(),
            verify: false,
            strip_prefix: None,
        };
        let error = extract_archive(&options, &WorkControl::new("t")).unwrap_err();
        assert_eq!(error.kind(), "unsafe_entry", "{error}");
        assert!(
            error
                .to_string()
                .contains("refused entry `big`: GNU sparse files are never extracted"),
            "{error}"
        );
        assert!(!dest.join("big").exists());
    }

    /// An archive with the given (path, entry type, data or link target) entries.
    fn archive_of(path: &Path, entries: &[(&str, EntryType, &str)]) {
        let mut builder = tar::Builder::new(File::create(path).unwrap());
        for (name, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(if *kind == EntryType::Directory {
                0o750
            } else {
                0o640
            });
            header.set_mtime(1_700_000_000);
            match kind {
                EntryType::Link | EntryType::Symlink => {
                    header.set_size(0);
                    builder.append_link(&mut header, name, data).unwrap();
                }
                _ => {
                    header.set_size(data.len() as u64);
                    builder
                        .append_data(&mut header, name, data.as_bytes())
                        .unwrap();
                }
            }
        }
        builder.into_inner().unwrap();
    }

    /// Options extracting `path` into `dest` with `strip_prefix`, unchecked.
    fn strip_options(path: PathBuf, dest: PathBuf, strip_prefix: &str) -> ExtractArchiveOptions {
        ExtractArchiveOptions {
            max_rate: MaxRate::UNLIMITED,
            path,
            dest,
            verify: false,
            strip_prefix: Some(strip_prefix.into()),
        }
    }

    /// An attachment archive: a top folder holding a folder with a file and
    /// a hard link to it, and a file.
    fn top_folder_archive(path: &Path) {
        archive_of(
            path,
            &[
                ("files_20261126_01h15m00s/", EntryType::Directory, ""),
                ("files_20261126_01h15m00s/7f/", EntryType::Directory, ""),
                (
                    "files_20261126_01h15m00s/7f/report.txt",
                    EntryType::Regular,
                    "hello",
                ),
                (
                    "files_20261126_01h15m00s/7f/same.txt",
                    EntryType::Link,
                    "files_20261126_01h15m00s/7f/report.txt",
                ),
                (
                    "files_20261126_01h15m00s/top.txt",
                    EntryType::Regular,
                    "top",
                ),
            ],
        );
    }

    #[test]
    fn strip_prefix_extracts_the_top_folder_contents_into_dest() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("files_20261126_01h15m00s.tar");
        top_folder_archive(&archive);
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o701)).unwrap();
        let options = strip_options(archive, dest.clone(), "files_20261126_01h15m00s/");
        let output = extract_archive(&options, &WorkControl::new("t")).unwrap();
        assert_eq!((output.entries, output.files, output.bytes), (4, 3, 8));
        assert_eq!(
            std::fs::read_to_string(dest.join("7f/report.txt")).unwrap(),
            "hello"
        );
        assert_eq!(
            std::fs::read_to_string(dest.join("top.txt")).unwrap(),
            "top"
        );
        assert_eq!(
            std::fs::metadata(dest.join("7f/same.txt")).unwrap().ino(),
            std::fs::metadata(dest.join("7f/report.txt")).unwrap().ino()
        );
        assert!(!dest.join("files_20261126_01h15m00s").exists());
        // dest keeps its own mode: the top folder's (0750) is not applied.
        assert_eq!(std::fs::metadata(&dest).unwrap().mode() & 0o777, 0o701);
    }

    #[test]
    fn strip_prefix_refuses_an_entry_outside_the_top_folder_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("other.tar");
        archive_of(
            &other,
            &[
                ("files_20261126_01h15m00s/a.txt", EntryType::Regular, "a"),
                ("minio_20261126_01h15m00s/b.txt", EntryType::Regular, "b"),
            ],
        );
        let options = strip_options(other, dir.path().join("dest2"), "files_20261126_01h15m00s");
        let error = extract_archive(&options, &WorkControl::new("t")).unwrap_err();
        assert_eq!(error.kind(), "unsafe_entry", "{error}");
        assert!(
            error.to_string().contains(
                "refused entry `minio_20261126_01h15m00s/b.txt`: it is not in the archive's top folder `files_20261126_01h15m00s/`"
            ),
            "{error}"
        );
    }

    #[test]
    fn strip_prefix_naming_no_folder_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("files_20261126_01h15m00s.tar");
        top_folder_archive(&archive);
        for bad in ["", "../x", "/abs"] {
            let options = strip_options(archive.clone(), dir.path().join("dest3"), bad);
            let error = extract_archive(&options, &WorkControl::new("t")).unwrap_err();
            assert!(error.to_string().contains("strip_prefix"), "{bad}: {error}");
            assert!(!dir.path().join("dest3").exists(), "{bad}");
        }
    }

    #[test]
    fn symlink_targets_outside_are_reported_and_chains_refused() {
        let none = HashSet::new();
        assert_eq!(
            check_symlink_target(Path::new("a/l"), Path::new("../b"), &none),
            Ok(false)
        );
        assert_eq!(
            check_symlink_target(Path::new("a/l"), Path::new("../../b"), &none),
            Ok(true)
        );
        assert_eq!(
            check_symlink_target(Path::new("l"), Path::new("/etc"), &none),
            Ok(true)
        );
        let links: HashSet<PathBuf> = [PathBuf::from("x")].into();
        let e = check_symlink_target(Path::new("t"), Path::new("x/.."), &links).unwrap_err();
        assert!(e.contains("goes through the symlink `x`"), "{e}");
        assert!(check_symlink_target(Path::new("t"), Path::new("x"), &links).is_ok());
    }
}
