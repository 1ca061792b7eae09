//! `extract_archive`: unpacks a tar archive (plain, zstd or gzip) into a
//! folder, refusing anything that would write outside it.
//!
//! Archives may come from anywhere at restore time, so every entry is checked
//! before anything is written: no absolute paths, no `..`, no device files or
//! FIFOs, no symlink or hard link that points outside `dest`. Writing never
//! follows a symlink: every folder on the way to an entry must be a real
//! folder, and an existing symlink at an entry's own path is replaced, not
//! written through. Symlinks are created last, once every file is in place,
//! and one whose target goes through another symlink is refused, so chains
//! of links cannot be used to escape either.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use tar::EntryType;

use crate::archive_io::{CHUNK_SIZE, Compression};
use crate::blocking_work::{Stop, WorkControl, run_blocking};
use crate::error::{StepError, StepFailure};
use crate::progress::Progress;
use crate::step::{DryRun, Step, StepContext};
use crate::verify_archive::{VerifyArchiveOptions, VerifyError, verify_archive};

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
}

fn default_true() -> bool {
    true
}

/// Result of `extract_archive`.
#[derive(Debug, Default, Serialize)]
pub struct ExtractArchiveOutput {
    /// Entries created (files, folders, links).
    pub entries: u64,
    /// Bytes of file data written.
    pub bytes: u64,
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
    fn kind(&self) -> &'static str {
        match self {
            ExtractError::Verify(e) => e.kind(),
            ExtractError::Refused { .. } => "unsafe_entry",
            ExtractError::Read { .. } | ExtractError::Write { .. } => "io",
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
Entries with an absolute path or a `..` component, symlinks or hard links
pointing outside `dest`, symlinks whose target goes through another symlink,
device files, FIFOs and GNU sparse files (whose holes would be written out in
full) are refused: the step fails naming the entry, and nothing is ever
written outside `dest`. Symlinks already in `dest` are never followed. Mode
(without setuid/setgid bits) and mtime are restored; owners too when running
as root. On failure, what was extracted so far stays in `dest`.

Options:
  path    string   the archive (required)
  dest    string   folder to extract into, created if missing (required)
  verify  bool     check the archive and its .sha256 file first (default true)

Result:
  entries  int   entries created (files, folders, links)
  bytes    int   bytes of file data written

Example:
  extract_archive(#{ path: `${dir}/files_${stamp}.tar`, dest: `${work}/restore` });
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

/// The blocking body of the step.
pub fn extract_archive(
    options: &ExtractArchiveOptions,
    control: &WorkControl,
) -> Result<ExtractArchiveOutput, ExtractError> {
    if options.verify {
        verify_archive(
            &VerifyArchiveOptions {
                path: options.path.clone(),
                require_checksum: true,
                ..VerifyArchiveOptions::default()
            },
            control,
        )?;
    }
    let read_error = |source| ExtractError::Read {
        path: options.path.clone(),
        source,
    };
    let mut file = File::open(&options.path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    let compression = Compression::detect(&mut file).map_err(read_error)?;
    let reader = BufReader::with_capacity(CHUNK_SIZE, file);
    let stream: Box<dyn Read> = match compression {
        Compression::None => Box::new(reader),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(read_error)?)
        }
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
    };
    std::fs::create_dir_all(&options.dest).map_err(|source| ExtractError::Write {
        path: options.dest.clone(),
        source,
    })?;
    let progress = Progress::new(control.progress, &control.label, size);
    let mut extractor = Extractor {
        archive_path: &options.path,
        dest: &options.dest,
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

/// A folder's metadata, applied after its contents are written.
struct DirAttributes {
    path: PathBuf,
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
    dest: &'a Path,
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

    fn extract<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw_path = entry
            .path()
            .map_err(|source| ExtractError::Read {
                path: self.archive_path.to_path_buf(),
                source,
            })?
            .into_owned();
        let name = raw_path.display().to_string();
        let relative = safe_relative(&raw_path).map_err(|reason| self.refuse(&name, reason))?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let mtime = header.mtime().unwrap_or(0);
        let owner = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let entry_type = header.entry_type();
        match entry_type {
            EntryType::XGlobalHeader | EntryType::XHeader => return Ok(()),
            EntryType::Char | EntryType::Block => {
                return Err(self.refuse(&name, "device files are never extracted"));
            }
            EntryType::Fifo => return Err(self.refuse(&name, "FIFOs are never extracted")),
            // Its header sets the file's size apart from the data stored: a
            // 2 KiB entry can claim terabytes of holes, which would be
            // written out as zeros (found by fuzzing). runbook never writes
            // sparse entries; GNU tar extracts them with real holes.
            EntryType::GNUSparse => {
                return Err(self.refuse(
                    &name,
                    "GNU sparse files are never extracted (their holes would be written out in full; use GNU tar)",
                ));
            }
            _ => {}
        }
        if relative.as_os_str().is_empty() {
            // `./` itself: nothing to create.
            return Ok(());
        }
        let target = self.dest.join(&relative);
        self.make_parents(&relative, &name)?;
        match entry_type {
            EntryType::Directory => {
                match std::fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        self.remove_existing(&target)?;
                        self.mkdir(&target)?;
                    }
                    Err(_) => self.mkdir(&target)?,
                }
                self.dirs.push(DirAttributes {
                    path: target,
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
                let source_relative = safe_relative(&link)
                    .map_err(|reason| self.refuse(&name, format!("hard link target: {reason}")))?;
                let source = self.dest.join(&source_relative);
                self.check_real_dirs(&source_relative, &name)?;
                match std::fs::symlink_metadata(&source) {
                    Ok(meta) if meta.is_file() => {}
                    _ => {
                        return Err(self.refuse(
                            &name,
                            format!(
                                "hard link to `{}`, which is not a file extracted before it",
                                link.display()
                            ),
                        ));
                    }
                }
                self.remove_existing(&target)?;
                std::fs::hard_link(&source, &target).map_err(|source| ExtractError::Write {
                    path: target.clone(),
                    source,
                })?;
            }
            // Regular, contiguous and GNU sparse entries: file data.
            _ => {
                self.remove_existing(&target)?;
                let size = entry.size();
                self.write_file(&mut entry, &target, size)?;
                self.set_file_attributes(&target, mode, mtime, owner)?;
            }
        }
        self.output.entries += 1;
        Ok(())
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

    fn mkdir(&self, path: &Path) -> Result<(), ExtractError> {
        std::fs::create_dir(path).map_err(|source| ExtractError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Removes a file or symlink in the way (never what a symlink points to).
    fn remove_existing(&self, path: &Path) -> Result<(), ExtractError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => Err(ExtractError::Write {
                path: path.to_path_buf(),
                source: io::Error::other("a folder is in the way"),
            }),
            Ok(_) => std::fs::remove_file(path).map_err(|source| ExtractError::Write {
                path: path.to_path_buf(),
                source,
            }),
            Err(_) => Ok(()),
        }
    }

    /// Every folder from `dest` down to the parent of `relative` must be a
    /// real folder (missing ones are created), never a symlink.
    fn make_parents(&self, relative: &Path, name: &str) -> Result<(), ExtractError> {
        let mut current = self.dest.to_path_buf();
        let Some(parent) = relative.parent() else {
            return Ok(());
        };
        let mut relative_so_far = PathBuf::new();
        for component in parent.components() {
            current.push(component);
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
            match std::fs::symlink_metadata(&current) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(self.refuse(
                        name,
                        format!("its folder {} is a symlink", current.display()),
                    ));
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(self.refuse(name, format!("{} is not a folder", current.display())));
                }
                Err(_) => self.mkdir(&current)?,
            }
        }
        Ok(())
    }

    /// Like [`Self::make_parents`] but only checks.
    fn check_real_dirs(&self, relative: &Path, name: &str) -> Result<(), ExtractError> {
        let mut current = self.dest.to_path_buf();
        for component in relative.parent().into_iter().flat_map(Path::components) {
            current.push(component);
            if std::fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(self.refuse(
                    name,
                    format!("link target goes through the symlink {}", current.display()),
                ));
            }
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        data: &mut impl Read,
        target: &Path,
        size: u64,
    ) -> Result<(), ExtractError> {
        let write_error = |source| ExtractError::Write {
            path: target.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(target)
            .map_err(write_error)?;
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
            file.write_all(&self.buffer[..n]).map_err(write_error)?;
            left -= n as u64;
            self.output.bytes += n as u64;
            self.progress.inc(n as u64);
        }
        Ok(())
    }

    fn set_file_attributes(
        &self,
        path: &Path,
        mode: u32,
        mtime: u64,
        owner: (u64, u64),
    ) -> Result<(), ExtractError> {
        let write_error = |source| ExtractError::Write {
            path: path.to_path_buf(),
            source,
        };
        if self.as_root {
            std::os::unix::fs::lchown(path, Some(owner.0 as u32), Some(owner.1 as u32))
                .map_err(write_error)?;
        }
        // No setuid/setgid from an archive of unknown origin.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o1777))
            .map_err(write_error)?;
        let time = filetime::FileTime::from_unix_time(mtime as i64, 0);
        filetime::set_file_times(path, time, time).map_err(write_error)
    }

    /// Creates the symlinks, each checked against every other.
    fn create_symlinks(&mut self) -> Result<(), ExtractError> {
        let links: HashSet<PathBuf> = self.symlinks.iter().map(|l| l.relative.clone()).collect();
        for link in std::mem::take(&mut self.symlinks) {
            self.control.check()?;
            check_symlink_target(&link.relative, &link.target, &links)
                .map_err(|reason| self.refuse(&link.entry, reason))?;
            self.make_parents(&link.relative, &link.entry)?;
            let path = self.dest.join(&link.relative);
            self.remove_existing(&path)?;
            let write_error = |source| ExtractError::Write {
                path: path.clone(),
                source,
            };
            std::os::unix::fs::symlink(&link.target, &path).map_err(write_error)?;
            if self.as_root {
                std::os::unix::fs::lchown(
                    &path,
                    Some(link.owner.0 as u32),
                    Some(link.owner.1 as u32),
                )
                .map_err(write_error)?;
            }
            let time = filetime::FileTime::from_unix_time(link.mtime as i64, 0);
            filetime::set_symlink_file_times(&path, time, time).map_err(write_error)?;
            self.output.entries += 1;
        }
        Ok(())
    }

    /// Folder modes and mtimes last (writing inside a folder changes its
    /// mtime), deepest first.
    fn finish_dirs(&mut self) -> Result<(), ExtractError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by(|a, b| b.path.cmp(&a.path));
        for dir in dirs {
            self.set_file_attributes(&dir.path, dir.mode, dir.mtime, dir.owner)?;
        }
        Ok(())
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

/// A symlink at `link` (relative to dest) pointing to `target` must resolve
/// inside dest without going through any symlink.
fn check_symlink_target(
    link: &Path,
    target: &Path,
    links: &HashSet<PathBuf>,
) -> Result<(), String> {
    let mut resolved: Vec<&std::ffi::OsStr> = Vec::new();
    if let Some(parent) = link.parent() {
        resolved.extend(parent.components().map(|c| c.as_os_str()));
    }
    let components: Vec<Component> = target.components().collect();
    for (index, component) in components.iter().enumerate() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "symlink to the absolute path `{}`",
                    target.display()
                ));
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if resolved.pop().is_none() {
                    return Err(format!(
                        "symlink to `{}` points outside the destination",
                        target.display()
                    ));
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
    Ok(())
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
            path: archive,
            dest: dest.clone(),
            verify: false,
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

    #[test]
    fn symlink_targets_must_stay_inside_without_chains() {
        let none = HashSet::new();
        assert!(check_symlink_target(Path::new("a/l"), Path::new("../b"), &none).is_ok());
        assert!(check_symlink_target(Path::new("a/l"), Path::new("../../b"), &none).is_err());
        assert!(check_symlink_target(Path::new("l"), Path::new("/etc"), &none).is_err());
        let links: HashSet<PathBuf> = [PathBuf::from("x")].into();
        let e = check_symlink_target(Path::new("t"), Path::new("x/.."), &links).unwrap_err();
        assert!(e.contains("goes through the symlink `x`"), "{e}");
        assert!(check_symlink_target(Path::new("t"), Path::new("x"), &links).is_ok());
    }
}
