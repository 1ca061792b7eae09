//! Archive verification: reads a whole tar archive (plain, zstd or gzip) once,
//! checking every header and every byte, and compares its SHA-256 with the
//! expected one. The body of the `verify_archive` step, of `extract_archive`'s
//! check before unpacking, and of `runbook verify PATH...`
//! ([`verify_archive_file`]).

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use crate::archive::io::{CHUNK_SIZE, Compression, HashingFileReader};
use crate::archive::sidecar::{SidecarError, read_sidecar, sidecar_path};
use crate::runtime::blocking_work::{Stop, WorkControl};
use crate::runtime::error::{ErrorKind, StepFailure};
use crate::runtime::progress::Progress;
use crate::runtime::throttle::{MaxRate, Throttle};

/// Largest GNU long-name or PAX header accepted (real ones are a few KiB).
const MAX_META_ENTRY: u64 = 1 << 20;
const BLOCK: usize = 512;

/// Options of `verify_archive`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyArchiveOptions {
    /// The archive.
    pub path: PathBuf,
    /// Expected hex SHA-256 (default: from `<path>.sha256` when present).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Fail when there is neither `sha256` nor a `<path>.sha256` file.
    #[serde(default)]
    pub require_checksum: bool,
    /// Glob patterns that must each match at least one entry.
    #[serde(default)]
    pub expect: Vec<String>,
    /// The least number of entries.
    #[serde(default)]
    pub min_entries: Option<u64>,
    /// The most bytes per second to read.
    #[serde(default)]
    pub max_rate: MaxRate,
    /// Where the archive's bytes are read from.
    #[serde(default)]
    pub read_from: ReadFrom,
}

/// Where `verify_archive` reads the archive from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// Through the page cache, as any read: an archive just written is mostly
    /// still there, so this checks the bytes written, not the disk.
    #[default]
    Cache,
    /// From the device: the archive is flushed and its pages dropped from the
    /// page cache first, and dropped again after the check.
    Disk,
}

/// Where the expected checksum came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChecksumSource {
    /// None was available: only the structure was checked.
    #[default]
    None,
    /// The `<path>.sha256` file.
    Sidecar,
    /// The `sha256` option.
    Given,
}

/// Result of `verify_archive`: the archive is sound (any problem is an error).
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Always true: a bad archive fails the step.
    pub ok: bool,
    /// Entries (files, folders, links; not the GNU/PAX metadata entries).
    pub entries: u64,
    /// Size of the archive file.
    pub bytes: u64,
    /// Hex SHA-256 of the archive file.
    pub sha256: String,
    /// Where the archive was read from.
    pub read_from: ReadFrom,
    /// With `read_from: "disk"`: pages of the archive still in the page cache
    /// when the read began (0 unless the file system keeps them, e.g. tmpfs).
    pub cached_pages: u64,
    /// What the checksum was compared with.
    #[serde(skip)]
    pub checksum: ChecksumSource,
}

impl VerifyReport {
    /// One line for `runbook verify`: `ok <path>: N entries, B bytes, sha256 matches <source>`.
    pub fn summary(&self, path: &Path) -> String {
        let checksum = match self.checksum {
            ChecksumSource::None => "no checksum to compare",
            ChecksumSource::Sidecar => "sha256 matches the .sha256 file",
            ChecksumSource::Given => "sha256 matches",
        };
        format!(
            "ok {}: {} entries, {} bytes, {checksum}",
            path.display(),
            self.entries,
            self.bytes
        )
    }
}

/// Why an archive failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The archive cannot be opened or read.
    #[error("cannot read archive {path}")]
    Read {
        /// The archive.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The checksum file exists but is unusable.
    #[error(transparent)]
    Sidecar(#[from] SidecarError),
    /// `require_checksum` and nothing to compare with.
    #[error("no checksum for {path}: no {sidecar} and no `sha256` option")]
    ChecksumMissing {
        /// The archive.
        path: PathBuf,
        /// The sidecar looked for.
        sidecar: String,
    },
    /// The `sha256` option is not 64 hex digits.
    #[error("`sha256` must be 64 hex digits, got `{0}`")]
    BadExpected(String),
    /// The archive's bytes are not the ones that were checksummed.
    #[error(
        "{path}: sha256 mismatch: expected {expected}, got {actual} (the file is damaged or was modified)"
    )]
    ChecksumMismatch {
        /// The archive.
        path: PathBuf,
        /// From the sidecar or option.
        expected: String,
        /// Computed now.
        actual: String,
    },
    /// An entry's data differs from when the archive was written (its CRC-32
    /// in the checksum file does not match).
    #[error(
        "{path}: checksum mismatch: the data of entry `{entry}` at byte offset {offset} differs from when the archive was written"
    )]
    EntryChecksumMismatch {
        /// The archive.
        path: PathBuf,
        /// The damaged entry.
        entry: String,
        /// Where its data starts (in the decompressed stream for zstd/gzip).
        offset: u64,
    },
    /// The tar structure (or compression) is broken.
    #[error("{path}: {problem} {location}")]
    Corrupt {
        /// The archive.
        path: PathBuf,
        /// What is wrong, e.g. "bad header checksum".
        problem: String,
        /// "in entry `x` at byte offset N" or similar.
        location: String,
        /// The entry concerned, when there is one.
        entry: Option<String>,
        /// Offset in the tar stream (the decompressed stream for zstd/gzip).
        offset: u64,
    },
    /// The archive is sound but lacks what `expect` / `min_entries` ask for.
    #[error("{path}: {message}")]
    Expectation {
        /// The archive.
        path: PathBuf,
        /// What is missing.
        message: String,
    },
    /// An `expect` pattern is not a valid glob.
    #[error("invalid expect pattern `{pattern}`")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        source: globset::Error,
    },
    /// Interrupted or timed out.
    #[error(transparent)]
    Stopped(#[from] Stop),
}

impl StepFailure for VerifyError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            VerifyError::Read { .. } => ErrorKind::Io,
            VerifyError::Sidecar(_) | VerifyError::ChecksumMissing { .. } => {
                ErrorKind::ChecksumMissing
            }
            VerifyError::BadExpected(_) | VerifyError::Pattern { .. } => ErrorKind::Options,
            VerifyError::ChecksumMismatch { .. } | VerifyError::EntryChecksumMismatch { .. } => {
                ErrorKind::ChecksumMismatch
            }
            VerifyError::Corrupt { .. } => ErrorKind::Corrupt,
            VerifyError::Expectation { .. } => ErrorKind::Expectation,
            VerifyError::Stopped(stop) => stop.kind(),
        }
    }
}

/// Verifies the archive at `path` against `expected_sha256`, else against its
/// `.sha256` file when there is one: what `runbook verify PATH...` calls.
pub fn verify_archive_file(
    path: &Path,
    expected_sha256: Option<&str>,
    control: &WorkControl,
) -> Result<VerifyReport, VerifyError> {
    verify_archive(
        &VerifyArchiveOptions {
            path: path.to_path_buf(),
            sha256: expected_sha256.map(str::to_string),
            ..VerifyArchiveOptions::default()
        },
        control,
    )
}

/// The blocking body of the step.
pub fn verify_archive(
    options: &VerifyArchiveOptions,
    control: &WorkControl,
) -> Result<VerifyReport, VerifyError> {
    let path = &options.path;
    let expected = ExpectedChecksum::new(options)?;
    let expect = ExpectedEntries::new(&options.expect)?;
    let read_error = |source| VerifyError::Read {
        path: path.clone(),
        source,
    };
    // Only a regular file: a FIFO would block the open for ever and a device
    // like /dev/zero never ends; both are refused at once.
    let file = crate::runtime::regular_file::open_regular(path).map_err(read_error)?;
    let cached_pages = match options.read_from {
        ReadFrom::Cache => 0,
        ReadFrom::Disk => drop_before_reading(&file, control).map_err(read_error)?,
    };
    let dropper = match options.read_from {
        ReadFrom::Disk => Some(file.try_clone().map_err(read_error)?),
        ReadFrom::Cache => None,
    };
    let read = read_archive(
        path,
        file,
        &expected.file_crcs,
        &expect,
        &options.max_rate,
        control,
    )?;
    if let Some(file) = dropper {
        // What the check read is needed no more: leave the cache to others.
        crate::archive::page_cache::drop_cached_pages(&file).map_err(read_error)?;
    }
    if let Some(expected) = expected.sha256
        && expected != read.sha256
    {
        return Err(VerifyError::ChecksumMismatch {
            path: path.clone(),
            expected,
            actual: read.sha256,
        });
    }
    check_expectations(options, &read)?;
    Ok(VerifyReport {
        ok: true,
        entries: read.entries,
        bytes: read.bytes,
        sha256: read.sha256,
        read_from: options.read_from,
        cached_pages,
        checksum: expected.source,
    })
}

/// `read_from: "disk"`: flushes the archive and drops its pages from the page
/// cache; returns how many are still there (with a warning when some are).
fn drop_before_reading(file: &std::fs::File, control: &WorkControl) -> io::Result<u64> {
    use crate::archive::page_cache::{drop_cached_pages, resident_pages};
    drop_cached_pages(file)?;
    let left = resident_pages(file)?;
    if left.resident > 0 {
        tracing::warn!(
            "{}: {} of the archive's {} pages are still in the page cache after dropping them (a tmpfs, or another process maps the file?): those are read from memory, not from the disk",
            control.label,
            left.resident,
            left.total
        );
    }
    Ok(left.resident)
}

/// The checksum to compare with, where it came from, and the per-file CRCs
/// that go with it.
struct ExpectedChecksum {
    sha256: Option<String>,
    source: ChecksumSource,
    /// Per-file CRCs name a damaged entry; only if they describe this archive.
    file_crcs: Vec<u32>,
}

impl ExpectedChecksum {
    fn new(options: &VerifyArchiveOptions) -> Result<ExpectedChecksum, VerifyError> {
        let path = &options.path;
        let sidecar = read_sidecar(path)?;
        let (sha256, source) = match &options.sha256 {
            Some(given) => {
                let hex = given.trim().to_ascii_lowercase();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(VerifyError::BadExpected(given.clone()));
                }
                (Some(hex), ChecksumSource::Given)
            }
            None => match &sidecar {
                Some(sidecar) => (Some(sidecar.sha256.clone()), ChecksumSource::Sidecar),
                None => (None, ChecksumSource::None),
            },
        };
        let file_crcs = match sidecar {
            Some(sidecar) if Some(&sidecar.sha256) == sha256.as_ref() => sidecar.file_crcs,
            _ => Vec::new(),
        };
        if sha256.is_none() && options.require_checksum {
            return Err(VerifyError::ChecksumMissing {
                path: path.clone(),
                sidecar: sidecar_path(path).display().to_string(),
            });
        }
        Ok(ExpectedChecksum {
            sha256,
            source,
            file_crcs,
        })
    }
}

/// What one read of the whole archive found.
struct ArchiveRead {
    entries: u64,
    /// Which `expect` patterns matched an entry.
    matched: Vec<bool>,
    sha256: String,
    bytes: u64,
}

/// Reads the whole archive once: every header and byte, the CRC-32s, the hash.
fn read_archive(
    path: &Path,
    mut file: std::fs::File,
    file_crcs: &[u32],
    expect: &ExpectedEntries,
    max_rate: &MaxRate,
    control: &WorkControl,
) -> Result<ArchiveRead, VerifyError> {
    let read_error = |source| VerifyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = file.metadata().map_err(read_error)?.len();
    let compression = Compression::detect(&mut file).map_err(read_error)?;
    let progress = Progress::new(control.progress, &control.label, size);
    let decoder = Decoder::new(HashingFileReader::new(file), compression).map_err(read_error)?;
    let mut walker = TarWalker {
        stream: decoder,
        offset: 0,
        path,
        compressed: compression != Compression::None,
        control,
        progress: &progress,
        reported: 0,
        throttle: max_rate.throttle(),
        scratch: vec![0; CHUNK_SIZE],
        file_crcs,
        files_seen: 0,
    };
    let mut entries = 0u64;
    let mut matched = vec![false; expect.len()];
    walker.walk(&mut |name| {
        entries += 1;
        expect.mark(name, &mut matched);
    })?;
    let (sha256, bytes) = walker.stream.finish().map_err(read_error)?;
    progress.finish();
    Ok(ArchiveRead {
        entries,
        matched,
        sha256,
        bytes,
    })
}

/// The `expect` patterns each matched an entry, and `min_entries` is met.
fn check_expectations(
    options: &VerifyArchiveOptions,
    read: &ArchiveRead,
) -> Result<(), VerifyError> {
    let missing: Vec<&str> = options
        .expect
        .iter()
        .zip(&read.matched)
        .filter(|(_, found)| !**found)
        .map(|(pattern, _)| pattern.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(VerifyError::Expectation {
            path: options.path.clone(),
            message: format!("no entry matches {}", missing.join(", ")),
        });
    }
    if let Some(min) = options.min_entries
        && read.entries < min
    {
        return Err(VerifyError::Expectation {
            path: options.path.clone(),
            message: format!("{} entries, expected at least {min}", read.entries),
        });
    }
    Ok(())
}

/// The `expect` patterns.
struct ExpectedEntries {
    set: GlobSet,
    count: usize,
}

impl ExpectedEntries {
    fn new(patterns: &[String]) -> Result<ExpectedEntries, VerifyError> {
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            set.add(
                GlobBuilder::new(pattern.trim_end_matches('/'))
                    .literal_separator(true)
                    .build()
                    .map_err(|source| VerifyError::Pattern {
                        pattern: pattern.clone(),
                        source,
                    })?,
            );
        }
        let set = set.build().map_err(|source| VerifyError::Pattern {
            pattern: patterns.join(", "),
            source,
        })?;
        Ok(ExpectedEntries {
            set,
            count: patterns.len(),
        })
    }

    fn len(&self) -> usize {
        self.count
    }

    fn mark(&self, name: &str, matched: &mut [bool]) {
        if self.set.is_empty() {
            return;
        }
        for index in self.set.matches(name.trim_end_matches('/')) {
            matched[index] = true;
        }
    }
}

/// The archive bytes, decompressed when needed, hashed underneath.
enum Decoder {
    Plain(HashingFileReader),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<HashingFileReader>>>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<HashingFileReader>>>),
}

impl Decoder {
    fn new(reader: HashingFileReader, compression: Compression) -> io::Result<Decoder> {
        Ok(match compression {
            Compression::None => Decoder::Plain(reader),
            Compression::Zstd => Decoder::Zstd(Box::new(zstd::stream::read::Decoder::new(reader)?)),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(CHUNK_SIZE, reader),
            ))),
        })
    }

    fn file_position(&self) -> u64 {
        match self {
            Decoder::Plain(r) => r.consumed(),
            Decoder::Zstd(d) => d.get_ref().get_ref().consumed(),
            Decoder::Gzip(d) => d.get_ref().get_ref().consumed(),
        }
    }

    /// The SHA-256 and size of the whole file.
    fn finish(self) -> io::Result<(String, u64)> {
        match self {
            Decoder::Plain(r) => r.finish(),
            Decoder::Zstd(d) => d.finish().into_inner().finish(),
            Decoder::Gzip(d) => d.into_inner().into_inner().finish(),
        }
    }
}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Zstd(d) => d.read(buf),
            Decoder::Gzip(d) => d.read(buf),
        }
    }
}

/// Walks the tar stream block by block.
struct TarWalker<'a> {
    stream: Decoder,
    /// Offset in the tar stream.
    offset: u64,
    path: &'a Path,
    compressed: bool,
    control: &'a WorkControl,
    progress: &'a Progress,
    /// File position last reported to progress.
    reported: u64,
    /// `max_rate`: charged with the file bytes read.
    throttle: Option<std::sync::Arc<Throttle>>,
    scratch: Vec<u8>,
    /// Expected CRC-32 of each regular file's data (may be empty).
    file_crcs: &'a [u32],
    /// Regular files read so far.
    files_seen: usize,
}

/// What metadata headers (GNU long name/link, PAX) said about the entry that
/// follows them, not yet used.
#[derive(Default)]
struct PendingMeta {
    long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
    /// The metadata header read (its name and offset), whose entry has not come yet.
    header: Option<(String, u64)>,
}

impl TarWalker<'_> {
    fn corrupt(&self, problem: impl Into<String>, entry: Option<&str>, offset: u64) -> VerifyError {
        let stream = if self.compressed {
            " of the decompressed stream"
        } else {
            ""
        };
        let location = match entry {
            Some(name) => format!("in entry `{name}` at byte offset {offset}{stream}"),
            None => format!("at byte offset {offset}{stream}"),
        };
        VerifyError::Corrupt {
            path: self.path.to_path_buf(),
            problem: problem.into(),
            location,
            entry: entry.map(str::to_string),
            offset,
        }
    }

    /// Reads until `buf` is full or the stream ends; returns the count.
    fn read_full(&mut self, buf: &mut [u8], entry: Option<&str>) -> Result<usize, VerifyError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.stream.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let at = self.offset + filled as u64;
                    return Err(if self.compressed {
                        self.corrupt(format!("cannot decompress ({e})"), entry, at)
                    } else {
                        VerifyError::Read {
                            path: self.path.to_path_buf(),
                            source: e,
                        }
                    });
                }
            }
        }
        self.offset += filled as u64;
        let position = self.stream.file_position();
        self.progress.inc(position - self.reported);
        if let Some(throttle) = &self.throttle {
            let control = self.control;
            throttle.take_blocking_unless(position - self.reported, || control.check().is_err());
        }
        self.reported = position;
        Ok(filled)
    }

    /// Reads `len` bytes of entry data and its padding; keeps the data when
    /// `keep` (metadata entries); compares its CRC-32 with `expected_crc`.
    fn read_data(
        &mut self,
        len: u64,
        entry: &str,
        keep: bool,
        expected_crc: Option<u32>,
    ) -> Result<Vec<u8>, VerifyError> {
        let start = self.offset;
        let mut crc = crc32fast::Hasher::new();
        let mut kept = Vec::new();
        let mut left = len;
        let mut scratch = std::mem::take(&mut self.scratch);
        while left > 0 {
            self.control.check()?;
            let want = left.min(scratch.len() as u64) as usize;
            let n = self.read_full(&mut scratch[..want], Some(entry))?;
            if keep {
                kept.extend_from_slice(&scratch[..n]);
            }
            if expected_crc.is_some() {
                crc.update(&scratch[..n]);
            }
            if n < want {
                self.scratch = scratch;
                return Err(self.corrupt(
                    format!(
                        "archive truncated: entry data ends after {} of {len} bytes",
                        self.offset - start
                    ),
                    Some(entry),
                    self.offset,
                ));
            }
            left -= n as u64;
        }
        self.scratch = scratch;
        if let Some(expected) = expected_crc
            && crc.finalize() != expected
        {
            return Err(VerifyError::EntryChecksumMismatch {
                path: self.path.to_path_buf(),
                entry: entry.to_string(),
                offset: start,
            });
        }
        let padding = ((BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64) as usize;
        let mut pad = [0u8; BLOCK];
        let pad_start = self.offset;
        let n = self.read_full(&mut pad[..padding], Some(entry))?;
        if n < padding {
            return Err(self.corrupt(
                "archive truncated in the padding after the entry data",
                Some(entry),
                self.offset,
            ));
        }
        if let Some(bad) = pad[..padding].iter().position(|b| *b != 0) {
            return Err(self.corrupt(
                "bad padding after the entry data (not zeros)",
                Some(entry),
                pad_start + bad as u64,
            ));
        }
        Ok(kept)
    }

    /// Walks every entry, calling `found` with each real entry's name: each
    /// header is checked, metadata entries (long names, pax) are applied to
    /// the entry after them, up to the end-of-archive marker.
    fn walk(&mut self, found: &mut dyn FnMut(&str)) -> Result<(), VerifyError> {
        let mut meta = PendingMeta::default();
        let mut last_entry: Option<String> = None;
        let mut block = [0u8; BLOCK];
        loop {
            self.control.check()?;
            let header_offset = self.offset;
            let n = self.read_full(&mut block, None)?;
            let after = last_entry.as_deref().map(|e| format!("after entry `{e}`"));
            if n < BLOCK || block.iter().all(|b| *b == 0) {
                return self.end_of_entries(n, &meta, after, header_offset);
            }
            let header = Header::from_byte_slice(&block);
            self.check_header_checksum(&block, header, after.as_deref(), header_offset)?;
            let (name, size) = self.name_and_size(header, &mut meta, header_offset)?;
            // Old GNU sparse files: a map of data blocks, in the header and
            // in extension headers before the data.
            if header.entry_type() == EntryType::GNUSparse {
                self.check_sparse_map(header, size, &name, header_offset)?;
            }
            match header.entry_type() {
                EntryType::GNULongName
                | EntryType::GNULongLink
                | EntryType::XHeader
                | EntryType::XGlobalHeader => {
                    self.read_meta_entry(header, size, name, header_offset, &mut meta)?;
                }
                entry_type => {
                    self.read_entry(header, entry_type, size, &name, header_offset)?;
                    found(&name);
                    meta.header = None;
                    last_entry = Some(name);
                }
            }
        }
    }

    /// Where the headers end: the `n` bytes read at `header_offset` are a
    /// zero block, or less than a block. A zero block must start the
    /// end-of-archive marker (read to its end) and may not follow a metadata
    /// header still waiting for its entry; a short read is a truncation.
    fn end_of_entries(
        &mut self,
        n: usize,
        meta: &PendingMeta,
        after: Option<String>,
        header_offset: u64,
    ) -> Result<(), VerifyError> {
        if n == 0 {
            return Err(self.end_problem(
                "archive truncated: no end-of-archive marker",
                after,
                header_offset,
            ));
        }
        if n < BLOCK {
            return Err(self.end_problem("archive truncated in a header", after, header_offset));
        }
        // GNU tar ignores it; the tar crate behind extract_archive
        // fails, and a writer never leaves one: the entry it
        // described is lost (found by fuzzing).
        if let Some((name, offset)) = &meta.header {
            return Err(self.corrupt(
                "metadata header with no entry after it (the entry it describes is missing)",
                Some(name),
                *offset,
            ));
        }
        self.finish_end_marker(after, header_offset)
    }

    /// Fails unless the header's stored checksum is the one its bytes give.
    fn check_header_checksum(
        &self,
        block: &[u8; BLOCK],
        header: &Header,
        after: Option<&str>,
        header_offset: u64,
    ) -> Result<(), VerifyError> {
        let stored = header.cksum();
        let computed = header_checksum(block);
        if stored.ok() != Some(computed) {
            let name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
            return Err(self.corrupt(
                "bad header checksum",
                Some(&describe_name(&name, after)),
                header_offset,
            ));
        }
        Ok(())
    }

    /// The entry's name (a GNU long name or pax path read before it wins over
    /// the header's) and its data size (a pax size wins over the header's),
    /// both taken out of `meta`.
    fn name_and_size(
        &self,
        header: &Header,
        meta: &mut PendingMeta,
        header_offset: u64,
    ) -> Result<(String, u64), VerifyError> {
        let raw_name = meta
            .long_name
            .take()
            .or(meta.pax_path.take())
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let size = match meta.pax_size.take() {
            Some(size) => size,
            None => header.entry_size().map_err(|e| {
                self.corrupt(format!("bad size field ({e})"), Some(&name), header_offset)
            })?,
        };
        Ok((name, size))
    }

    /// Reads a GNU long name/link or PAX header and keeps what it says for
    /// the entry that follows.
    fn read_meta_entry(
        &mut self,
        header: &Header,
        size: u64,
        name: String,
        header_offset: u64,
        meta: &mut PendingMeta,
    ) -> Result<(), VerifyError> {
        if size > MAX_META_ENTRY {
            return Err(self.corrupt(
                format!("implausible metadata entry size {size}"),
                Some(&name),
                header_offset,
            ));
        }
        let data = self.read_data(size, &name, true, None)?;
        match header.entry_type() {
            EntryType::GNULongName => {
                let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                meta.long_name = Some(data[..end].to_vec());
            }
            EntryType::XHeader => {
                for extension in tar::PaxExtensions::new(&data) {
                    let extension = extension.map_err(|e| {
                        self.corrupt(format!("bad PAX header ({e})"), Some(&name), header_offset)
                    })?;
                    let key = extension.key_bytes();
                    if !pax_value_ok(key, extension.value_bytes()) {
                        // GNU tar fails on it ("Malformed extended
                        // header"); found by fuzzing.
                        return Err(self.corrupt(
                            format!(
                                "bad PAX header (invalid {}={})",
                                String::from_utf8_lossy(key),
                                String::from_utf8_lossy(extension.value_bytes())
                            ),
                            Some(&name),
                            header_offset,
                        ));
                    }
                    match key {
                        b"path" => meta.pax_path = Some(extension.value_bytes().to_vec()),
                        b"size" => {
                            meta.pax_size = extension.value().ok().and_then(|v| v.parse().ok());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if header.entry_type() != EntryType::XGlobalHeader {
            meta.header = Some((name, header_offset));
        }
        Ok(())
    }

    /// Checks a real entry's header fields and reads its data (checking the
    /// file's CRC-32 when the sidecar records one).
    fn read_entry(
        &mut self,
        header: &Header,
        entry_type: EntryType,
        size: u64,
        name: &str,
        header_offset: u64,
    ) -> Result<(), VerifyError> {
        // GNU tar fails on an entry whose mode, owner or mtime
        // field is not a number (found by fuzzing).
        if let Some(field) = bad_numeric_field(header) {
            return Err(self.corrupt(
                format!("bad {field} field in the header"),
                Some(name),
                header_offset,
            ));
        }
        // GNU tar takes a name ending in `/` for a folder and
        // skips the data after it: such a file entry is unreadable.
        if name.ends_with('/') && !entry_type.is_dir() && size > 0 {
            return Err(self.corrupt(
                "file entry named like a folder (ends in `/`): GNU tar cannot read its data",
                Some(name),
                header_offset,
            ));
        }
        let expected_crc = if entry_type.is_file() {
            self.files_seen += 1;
            self.file_crcs.get(self.files_seen - 1).copied()
        } else {
            None
        };
        self.read_data(size, name, false, expected_crc)?;
        Ok(())
    }

    fn end_problem(&self, problem: &str, after: Option<String>, offset: u64) -> VerifyError {
        match after {
            Some(after) => self.corrupt(format!("{problem} {after}"), None, offset),
            None => self.corrupt(format!("{problem} (no entries)"), None, offset),
        }
    }

    /// After the first zero block: a second one, then only zeros to the end.
    fn finish_end_marker(&mut self, after: Option<String>, offset: u64) -> Result<(), VerifyError> {
        let mut block = [0u8; BLOCK];
        let n = self.read_full(&mut block, None)?;
        if n < BLOCK {
            return Err(self.end_problem(
                "archive truncated in the end-of-archive marker",
                after,
                offset,
            ));
        }
        if block.iter().any(|b| *b != 0) {
            return Err(self.end_problem(
                "lone zero block (damaged header or end marker)",
                after,
                offset,
            ));
        }
        // GNU tar pads archives to whole records with zeros: allow that, nothing else.
        let mut scratch = std::mem::take(&mut self.scratch);
        loop {
            let start = self.offset;
            let n = self.read_full(&mut scratch, None)?;
            if let Some(bad) = scratch[..n].iter().position(|b| *b != 0) {
                self.scratch = scratch;
                return Err(self.end_problem(
                    "data after the end-of-archive marker",
                    after,
                    start + bad as u64,
                ));
            }
            if n < scratch.len() {
                break;
            }
        }
        self.scratch = scratch;
        Ok(())
    }

    /// Reads the extension headers of an old GNU sparse entry and checks its
    /// map the way GNU tar and the tar crate (behind extract_archive) read
    /// it, since both refuse a map that does not add up: found by fuzzing,
    /// verify passed such archives as sound.
    fn check_sparse_map(
        &mut self,
        header: &Header,
        stored: u64,
        name: &str,
        header_offset: u64,
    ) -> Result<(), VerifyError> {
        let bad = |walker: &Self, problem: &str| {
            walker.corrupt(
                format!("bad sparse map ({problem})"),
                Some(name),
                header_offset,
            )
        };
        let Some(gnu) = header.as_gnu() else {
            return Err(bad(self, "sparse entry type in a non-GNU header"));
        };
        let real_size = gnu
            .real_size()
            .map_err(|_| bad(self, "unreadable real size"))?;
        let mut map = SparseMap {
            stored,
            real_size,
            end: 0,
            consumed: 0,
        };
        map.add_all(&gnu.sparse).map_err(|p| bad(self, p))?;
        let mut extended = extended_flag(gnu.isextended[0]).map_err(|p| bad(self, p))?;
        while extended {
            let at = self.offset;
            let mut extension = tar::GnuExtSparseHeader::new();
            if self.read_full(extension.as_mut_bytes(), Some(name))? < BLOCK {
                return Err(self.corrupt("archive truncated in a sparse header", Some(name), at));
            }
            map.add_all(extension.sparse()).map_err(|p| bad(self, p))?;
            extended = extended_flag(extension.isextended[0]).map_err(|p| bad(self, p))?;
        }
        map.finish().map_err(|p| bad(self, p))
    }
}

/// The `isextended` byte: 0 or 1 (GNU tar takes any non-zero value for
/// yes, the tar crate only 1).
fn extended_flag(byte: u8) -> Result<bool, &'static str> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err("bad extension flag"),
    }
}

/// An old GNU sparse map being checked, block by block.
struct SparseMap {
    /// Data bytes stored in the archive for the entry.
    stored: u64,
    /// The size of the file the map describes.
    real_size: u64,
    /// Where the last block ends in the file.
    end: u64,
    /// Stored bytes the blocks so far account for.
    consumed: u64,
}

impl SparseMap {
    /// Adds the blocks of one header; the first empty block ends that header's list.
    fn add_all(&mut self, blocks: &[tar::GnuSparseHeader]) -> Result<(), &'static str> {
        let mut ended = false;
        for block in blocks {
            let empty = block.numbytes[0] == 0;
            if empty && block.offset[0] != 0 {
                return Err("block with an offset and no length");
            }
            if ended && !empty {
                return Err("block after the end of the list");
            }
            if empty {
                ended = true;
                continue;
            }
            if block.offset[0] == 0 {
                return Err("block with a length and no offset");
            }
            let offset = block.offset().map_err(|_| "unreadable block offset")?;
            let length = block.length().map_err(|_| "unreadable block length")?;
            if offset < self.end {
                return Err("blocks out of order or overlapping");
            }
            if length != 0 && !self.consumed.is_multiple_of(BLOCK as u64) {
                return Err("block data not on a 512-byte boundary");
            }
            self.end = offset
                .checked_add(length)
                .filter(|end| *end <= self.real_size)
                .ok_or("block past the end of the file")?;
            self.consumed = self
                .consumed
                .checked_add(length)
                .filter(|consumed| *consumed <= self.stored)
                .ok_or("blocks hold more data than the entry stores")?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), &'static str> {
        if self.consumed != self.stored {
            return Err("blocks hold less data than the entry stores");
        }
        if self.end != self.real_size {
            return Err("blocks do not end at the file's size");
        }
        Ok(())
    }
}

/// Whether a PAX record's value is one GNU tar accepts: its numeric keys
/// must hold numbers (times with an optional sign and fraction).
fn pax_value_ok(key: &[u8], value: &[u8]) -> bool {
    let digits = |v: &[u8]| !v.is_empty() && v.iter().all(u8::is_ascii_digit);
    match key {
        b"size" | b"uid" | b"gid" => digits(value),
        b"mtime" | b"atime" | b"ctime" => {
            let unsigned = value.strip_prefix(b"-").unwrap_or(value);
            match unsigned.iter().position(|b| *b == b'.') {
                Some(dot) => {
                    digits(&unsigned[..dot]) && unsigned[dot + 1..].iter().all(u8::is_ascii_digit)
                }
                None => digits(unsigned),
            }
        }
        _ => true,
    }
}

/// The first of an entry header's mode, uid, gid and mtime fields that GNU
/// tar would not read as a number.
fn bad_numeric_field(header: &Header) -> Option<&'static str> {
    let old = header.as_old();
    [
        ("mode", &old.mode[..]),
        ("uid", &old.uid[..]),
        ("gid", &old.gid[..]),
        ("mtime", &old.mtime[..]),
    ]
    .into_iter()
    .find(|(_, field)| !numeric_field_ok(field))
    .map(|(name, _)| name)
}

/// A numeric header field as GNU tar reads it: after optional spaces, either
/// base-256 (first byte 0x80, or 0xff for negative) or octal digits ended by
/// a NUL, a space or the field's end (no digits reads as 0); only spaces is
/// an error ("Blanks in header"). The tar crate takes any byte with the high
/// bit for base-256 and no NUL-terminated tail: GNU tar is the stricter one.
fn numeric_field_ok(field: &[u8]) -> bool {
    let Some(start) = field.iter().position(|b| *b != b' ') else {
        return false;
    };
    let rest = &field[start..];
    if matches!(rest[0], 0x80 | 0xff) {
        return true;
    }
    let digits = rest
        .iter()
        .take_while(|b| (b'0'..=b'7').contains(*b))
        .count();
    rest.get(digits).is_none_or(|b| *b == 0 || *b == b' ')
}

fn describe_name(name: &str, after: Option<&str>) -> String {
    match after {
        Some(after) if name.is_empty() => format!("(unreadable header {after})"),
        _ => name.to_string(),
    }
}

/// The tar header checksum: the sum of the header bytes with the checksum
/// field (bytes 148..156) counted as spaces.
fn header_checksum(block: &[u8; BLOCK]) -> u32 {
    block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    fn tiny_archive(dir: &Path) -> PathBuf {
        let path = dir.join("a.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        let mut header = Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "top/hello.txt", &b"hello"[..])
            .unwrap();
        builder.into_inner().unwrap();
        path
    }

    fn verify(path: &Path) -> Result<VerifyReport, VerifyError> {
        verify_archive_file(path, None, &WorkControl::new("t"))
    }

    #[test]
    fn read_from_disk_starts_with_no_page_of_the_archive_cached_and_leaves_none() {
        use crate::archive::page_cache::resident_pages;
        // On the disk the tests run from (/tmp may be a tmpfs).
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::tempdir_in(base).unwrap();
        let path = tiny_archive(dir.path());
        let cached = |path: &Path| resident_pages(&File::open(path).unwrap()).unwrap();
        assert!(cached(&path).resident > 0, "just written, so cached");
        let options = VerifyArchiveOptions {
            path: path.clone(),
            read_from: ReadFrom::Disk,
            ..VerifyArchiveOptions::default()
        };
        let report = verify_archive(&options, &WorkControl::new("t")).unwrap();
        assert_eq!((report.read_from, report.cached_pages), (ReadFrom::Disk, 0));
        assert_eq!(cached(&path).resident, 0);
        // The default reads through the cache and leaves the pages there.
        let report = verify(&path).unwrap();
        assert_eq!(report.read_from, ReadFrom::Cache);
        assert!(cached(&path).resident > 0);
    }

    #[test]
    fn read_from_disk_on_a_tmpfs_counts_the_pages_it_cannot_drop() {
        let shm = Path::new("/dev/shm");
        assert!(
            shm.is_dir(),
            "this test needs the tmpfs /dev/shm (standard on Linux)"
        );
        let dir = tempfile::tempdir_in(shm).unwrap();
        let path = tiny_archive(dir.path());
        let options = VerifyArchiveOptions {
            path,
            read_from: ReadFrom::Disk,
            ..VerifyArchiveOptions::default()
        };
        let report = verify_archive(&options, &WorkControl::new("t")).unwrap();
        assert!(report.cached_pages > 0, "{report:?}");
    }

    #[test]
    fn sound_archive_and_expectations() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_archive(dir.path());
        let report = verify(&path).unwrap();
        assert_eq!(report.entries, 1);
        assert_eq!(report.bytes, 2048);
        assert_eq!(report.checksum, ChecksumSource::None);
        let mut options = VerifyArchiveOptions {
            path: path.clone(),
            expect: vec!["top/*.txt".into(), "top/*.cql".into()],
            ..Default::default()
        };
        let e = verify_archive(&options, &WorkControl::new("t")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: no entry matches top/*.cql", path.display())
        );
        options.expect.pop();
        options.min_entries = Some(2);
        let e = verify_archive(&options, &WorkControl::new("t")).unwrap_err();
        assert!(
            e.to_string().ends_with("1 entries, expected at least 2"),
            "{e}"
        );
        options.min_entries = None;
        options.require_checksum = true;
        assert_eq!(
            verify_archive(&options, &WorkControl::new("t"))
                .unwrap_err()
                .kind(),
            "checksum_missing"
        );
    }

    #[test]
    fn damaged_header_and_missing_end_marker_name_entry_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_archive(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[10] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let e = verify(&path).unwrap_err();
        assert!(
            e.to_string()
                .contains("bad header checksum in entry `top/hello.Txt` at byte offset 0"),
            "{e}"
        );

        bytes[10] ^= 0x20;
        std::fs::write(&path, &bytes[..1024]).unwrap();
        let e = verify(&path).unwrap_err();
        assert!(
            e.to_string().contains(
                "no end-of-archive marker after entry `top/hello.txt` at byte offset 1024"
            ),
            "{e}"
        );
    }

    /// An archive with one old GNU sparse entry: `blocks` as (offset,
    /// length), the file's `real_size`, and `stored` bytes of data.
    fn sparse_archive(dir: &Path, blocks: &[(u64, u64)], real_size: u64, stored: u64) -> PathBuf {
        let path = dir.join("sparse.tar");
        let mut header = Header::new_gnu();
        header.set_path("top/sparse").unwrap();
        header.set_entry_type(EntryType::GNUSparse);
        header.set_mode(0o644);
        header.set_size(stored);
        let gnu = header.as_gnu_mut().unwrap();
        gnu.set_real_size(real_size);
        for (slot, (offset, length)) in gnu.sparse.iter_mut().zip(blocks) {
            slot.set_offset(*offset);
            slot.set_length(*length);
        }
        header.set_cksum();
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        builder
            .append(&header, &vec![7u8; stored as usize][..])
            .unwrap();
        builder.into_inner().unwrap();
        path
    }

    /// Regression (found by the verify_archive fuzz target, see
    /// docs/reliability.md, "Fuzzing"): a sparse map that GNU tar ("invalid sparse archive
    /// member") and the tar crate refuse was passed as sound.
    #[test]
    fn sparse_maps_that_do_not_add_up_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        // Sound: 512 bytes at 0, 1 byte at 1024, in a 1025-byte file.
        let good = sparse_archive(dir.path(), &[(0, 512), (1024, 1)], 1025, 513);
        assert_eq!(verify(&good).unwrap().entries, 1);
        let bytes = std::fs::read(&good).unwrap();
        let mut reader = tar::Archive::new(&bytes[..]);
        for entry in reader.entries().unwrap() {
            std::io::copy(&mut entry.unwrap(), &mut io::sink()).unwrap();
        }

        // (blocks, real size, stored bytes, problem)
        type Case<'a> = (&'a [(u64, u64)], u64, u64, &'a str);
        let cases: [Case; 5] = [
            // The fuzzer's case: a last block far past the file's end.
            (
                &[(0, 512), (1024, 1), (7_340_039, 0)],
                1025,
                513,
                "block past the end of the file",
            ),
            (
                &[(0, 512), (100, 1)],
                1025,
                513,
                "blocks out of order or overlapping",
            ),
            (
                &[(0, 512), (1024, 1)],
                1025,
                600,
                "blocks hold less data than the entry stores",
            ),
            (
                &[(0, 512), (1024, 1)],
                2000,
                513,
                "blocks do not end at the file's size",
            ),
            (
                &[(0, 100), (1024, 1)],
                1025,
                101,
                "block data not on a 512-byte boundary",
            ),
        ];
        for (blocks, real_size, stored, problem) in cases {
            let path = sparse_archive(dir.path(), blocks, real_size, stored);
            let e = verify(&path).unwrap_err();
            assert_eq!(e.kind(), "corrupt", "{blocks:?}: {e}");
            assert!(
                e.to_string().contains(&format!(
                    "bad sparse map ({problem}) in entry `top/sparse` at byte offset 0"
                )),
                "{blocks:?}: {e}"
            );
        }
    }

    /// Regression (found by the verify_archive fuzz target, see
    /// docs/reliability.md, "Fuzzing"): a PAX header right before the end-of-archive
    /// marker passed as sound, but extract_archive cannot read the archive.
    #[test]
    fn a_metadata_header_with_no_entry_after_it_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lost.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        // An entry, then a lone PAX header, then the end marker.
        let mut header = Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "top/hello.txt", &b"hello"[..])
            .unwrap();
        builder
            .append_pax_extensions([("path", &b"top/lost.txt"[..])])
            .unwrap();
        builder.into_inner().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let mut reader = tar::Archive::new(&bytes[..]);
        let refused = reader.entries().unwrap().any(|entry| entry.is_err());
        assert!(refused, "the tar crate refuses it too");

        let e = verify(&path).unwrap_err();
        assert_eq!(e.kind(), "corrupt", "{e}");
        assert!(
            e.to_string().contains(
                "metadata header with no entry after it (the entry it describes is missing) in entry"
            ) && e.to_string().contains("at byte offset 1024"),
            "{e}"
        );
    }

    /// A one-file archive whose first header is changed by `edit` (the
    /// checksum is set again afterwards); `long` gives it a GNU long name.
    fn edited_archive(dir: &Path, long: bool, edit: impl Fn(&mut [u8])) -> PathBuf {
        let path = dir.join("edited.tar");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        let name = if long {
            format!("top/{}", "x".repeat(120))
        } else {
            "top/f".to_string()
        };
        builder
            .append_data(&mut header, name, &b"hello"[..])
            .unwrap();
        let mut bytes = builder.into_inner().unwrap();
        let mut first = Header::new_old();
        first.as_mut_bytes().copy_from_slice(&bytes[..BLOCK]);
        edit(first.as_mut_bytes());
        first.set_cksum();
        bytes[..BLOCK].copy_from_slice(first.as_bytes());
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Regression (found by comparing what verify passes with GNU tar over
    /// the fuzzing corpus, see docs/reliability.md, "Fuzzing"): GNU tar fails on an entry
    /// whose mode, uid, gid or mtime is not a number; all NULs is accepted,
    /// and so is anything in a GNU long-name header.
    #[test]
    fn non_numeric_mode_owner_or_mtime_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        for (range, what) in [
            (100..108, "mode"),
            (108..116, "uid"),
            (116..124, "gid"),
            (136..148, "mtime"),
        ] {
            let path = edited_archive(dir.path(), false, |b| {
                b[range.clone()].copy_from_slice(&b"\xd0zz077777777"[..range.len()])
            });
            let e = verify(&path).unwrap_err();
            assert!(
                e.to_string()
                    .contains(&format!("bad {what} field in the header in entry `top/f`")),
                "{e}"
            );
            let blank = edited_archive(dir.path(), false, |b| b[range.clone()].fill(0));
            verify(&blank).unwrap();
            let spaces = edited_archive(dir.path(), false, |b| b[range.clone()].fill(b' '));
            assert!(verify(&spaces).is_err(), "{what}: only spaces");
            // Base-256 only with a first byte of 0x80 (or 0xff).
            let base256 = edited_archive(dir.path(), false, |b| {
                b[range.clone()].fill(0);
                b[range.start] = 0x80;
                b[range.end - 1] = 1;
            });
            verify(&base256).unwrap();
        }
        let long = edited_archive(dir.path(), true, |b| {
            assert_eq!(b[156], b'L');
            b[100..108].copy_from_slice(b"\xd0zz0777\0");
        });
        verify(&long).unwrap();
    }

    /// Regression (found like the one above): GNU tar fails on a PAX record
    /// whose numeric value is not a number ("Malformed extended header").
    #[test]
    fn non_numeric_pax_values_are_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pax.tar");
        for (key, value, ok) in [
            ("size", "x5", false),
            ("mtime", "abc", false),
            ("uid", "-", false),
            ("mtime", "-1795682158.800944153", true),
            ("mti\u{e9}e", "1", true),
        ] {
            let mut builder = tar::Builder::new(File::create(&path).unwrap());
            builder
                .append_pax_extensions([(key, value.as_bytes())])
                .unwrap();
            let mut header = Header::new_gnu();
            header.set_size(5);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, "top/f", &b"hello"[..])
                .unwrap();
            builder.into_inner().unwrap();
            match verify(&path) {
                Ok(_) => assert!(ok, "{key}={value} passed"),
                Err(e) => {
                    assert!(!ok, "{key}={value}: {e}");
                    assert!(
                        e.to_string()
                            .contains(&format!("bad PAX header (invalid {key}={value})")),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn header_checksum_matches_the_tar_crate() {
        let mut header = Header::new_gnu();
        header.set_path("x").unwrap();
        header.set_cksum();
        let block: &[u8; 512] = header.as_bytes();
        assert_eq!(header.cksum().unwrap(), header_checksum(block));
    }
}
