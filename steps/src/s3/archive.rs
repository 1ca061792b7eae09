//! `s3_archive`: streams the objects of an S3/MinIO bucket straight into a tar
//! archive, in sorted order, with no copy of the bucket written to disk and
//! read back.
//!
//! The archive holds what `mcli_mirror` into `TOP/` then `tar_dir` of that
//! folder gives, member for member (names, order, sizes, modes, owners, file
//! mtimes): the keys are mapped and refused by the same rules
//! ([`keys`](super::keys)); files get mode 0666 and folders 0777 less the
//! umask, as the mirror's files and folders get when created; each file has
//! its object's Last-Modified as mtime. Only folder mtimes differ: the
//! mirror's are the time it ran, here they are the newest Last-Modified in
//! the bucket, so the same bucket gives a byte-identical archive.
//!
//! Two tasks share the work: the async side lists, fetches (small objects
//! ahead of time, `concurrency` at once, large ones when their turn comes)
//! and sends the bytes in archive order over a bounded channel; a blocking
//! thread writes the tar stream through the archive sink (SHA-256 on its own
//! thread), then the `.sha256` file, fsync and rename. Memory stays bounded:
//! at most `concurrency` small objects held, and each large one streamed.

use std::cmp::Ordering;
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use md5::{Digest, Md5};
use object_store::{GetResult, ObjectMeta};
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};
use tokio::sync::mpsc;

use crate::archive::io::{ArchiveSink, Compression};
use crate::archive::sidecar::{Sidecar, write_sidecar};
use crate::runtime::atomic_file::{PartialFile, partial_path};
use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::runtime::throttle::MaxRate;
use crate::s3::alias::{EnvLookup, S3Endpoint, S3Location, process_env};
use crate::s3::bucket_copy::{
    ChunkPace, default_concurrency, default_true, etag_md5_mismatch, list_bucket, object_reader,
    open_object, warn_vanished,
};
use crate::s3::connection::S3Connection;
use crate::s3::keys::{KeyPlan, PlannedFile};

/// Permissions of the archive and its checksum file (as tar_dir's): they
/// hold all the data.
const ARCHIVE_MODE: u32 = 0o600;
/// Objects up to this size are fetched ahead, whole, into memory.
const PREFETCH_MAX: u64 = 1 << 20;
/// Pieces in flight between the fetching side and the writing thread.
const CHANNEL_DEPTH: usize = 64;
/// Lines kept in `changed` and `warnings` (all are logged).
const MAX_LINES: usize = 100;

/// The `s3_archive` step.
pub struct S3Archive;

/// What to do with an object that changed between the listing and its read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnChangedObject {
    /// Fail the step naming the object.
    #[default]
    Fail,
    /// Archive the version read, with a warning, and list it in `changed`.
    Warn,
}

/// Options of `s3_archive`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3ArchiveOptions {
    /// `ALIAS/BUCKET[/PREFIX]`, or `BUCKET[/PREFIX]` with `endpoint`.
    pub source: String,
    /// The archive to write (its folder must exist).
    pub dest: PathBuf,
    /// The top folder inside the archive (default: the archive's name
    /// without `.tar`; `""`: none).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Small objects fetched ahead at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Check each object's MD5 against a single-part ETag.
    #[serde(default = "default_true")]
    pub verify_md5: bool,
    /// An object that changed between the listing and its read.
    #[serde(default)]
    pub on_changed: OnChangedObject,
    /// The most bytes per second to read from the bucket into the archive.
    #[serde(default)]
    pub max_rate: MaxRate,
    /// Endpoint, keys, config folder, region, CA.
    #[serde(flatten)]
    pub connection: S3Connection,
}

/// Result of `s3_archive`.
#[derive(Debug, Default, Serialize)]
pub struct S3ArchiveOutput {
    /// The archive written.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of the archive (also in `<dest>.sha256`).
    pub sha256: String,
    /// Entries in the archive (files and folders).
    pub entries: u64,
    /// Files stored (objects archived).
    pub files: u64,
    /// Folders stored.
    pub dirs: u64,
    /// Objects under the source that map to files (refused keys excluded).
    pub objects: u64,
    /// Their total size in the listing.
    pub object_bytes: u64,
    /// Keys refused because they cannot be stored as file names.
    pub refused: u64,
    /// The first refused keys (escaped).
    pub refused_keys: Vec<String>,
    /// Objects listed but deleted before they could be read.
    pub vanished: u64,
    /// Objects that changed while archived (`on_changed: "warn"`), one line each.
    pub changed: Vec<String>,
    /// What went wrong without failing the step, one line each.
    pub warnings: Vec<String>,
    /// Wall time.
    pub duration_ms: u64,
}

/// Why `s3_archive` failed.
#[derive(Debug, thiserror::Error)]
pub enum S3ArchiveError {
    /// The options do not make sense.
    #[error("s3_archive: {0}")]
    Options(String),
    /// Reading an object failed.
    #[error("reading `{key}` from {endpoint} failed")]
    Download {
        /// The object key.
        key: String,
        /// The alias and URL.
        endpoint: String,
        /// object_store's error.
        source: object_store::Error,
    },
    /// An object changed between the listing and its read, or its body did
    /// not have the length announced.
    #[error(
        "`{key}` in bucket `{bucket}` changed during the backup: {what} (on_changed: \"warn\" archives the version read)"
    )]
    Changed {
        /// The object key.
        key: String,
        /// The bucket.
        bucket: String,
        /// What differs.
        what: String,
    },
    /// An object's data does not match its MD5 ETag.
    #[error(
        "`{key}` from {endpoint}: md5 mismatch (expected {expected}, got {got}); if the bucket is encrypted (SSE-KMS/SSE-C) its ETags are not MD5s: set verify_md5: false"
    )]
    Integrity {
        /// The object key.
        key: String,
        /// The alias and URL.
        endpoint: String,
        /// The ETag's MD5.
        expected: String,
        /// The data's MD5.
        got: String,
    },
    /// Writing the archive failed.
    #[error("writing {} failed", path.display())]
    Write {
        /// The archive (or its `.partial`).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl StepFailure for S3ArchiveError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            S3ArchiveError::Options(_) => ErrorKind::Options,
            S3ArchiveError::Download { .. } => ErrorKind::Download,
            S3ArchiveError::Changed { .. } => ErrorKind::Changed,
            S3ArchiveError::Integrity { .. } => ErrorKind::Integrity,
            S3ArchiveError::Write { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                ErrorKind::DiskFull
            }
            S3ArchiveError::Write { .. } => ErrorKind::Io,
        }
    }
}

impl Step for S3Archive {
    const NAME: &'static str = "s3_archive";
    const DOC: &'static str = "\
Streams the objects of an S3/MinIO bucket straight into a tar archive, with its SHA-256.

The archive is the one `mcli_mirror` into a folder TOP then `tar_dir` of that
folder with `prefix: TOP` would give, member for member (names, order, sizes,
modes, owners, object Last-Modified as file mtime; folders get the newest
Last-Modified of the bucket), but no copy of the bucket is written to disk and
read back: each object goes from the connection into the archive. The bucket
is found as for mcli_mirror (alias, or `endpoint` with keys) and listed once
(the reachability check); keys that cannot be file names are refused by the
same rules as mcli_mirror (logged, counted, listed in `refused_keys`, never
archived). Entries are in sorted order, so the same bucket gives a
byte-identical archive. The archive is written to `<dest>.partial`, fsynced and
renamed; `<dest>.sha256` holds the checksum in `sha256sum` format and per-file
CRC-32s, as tar_dir writes them, so verify_archive checks it the same way.
Small objects (up to 1 MiB) are fetched ahead, `concurrency` at once; larger
ones are streamed when their turn comes: memory stays at a few MiB.

An object deleted after the listing is left out with a warning (`vanished`).
An object that changed after the listing (another size, a newer Last-Modified)
fails the step naming it; with `on_changed: \"warn\"` the version read is
archived, with a warning, and listed in `changed`. A body shorter than
announced is the same: fail, or (warn) padded with zeros. Each object's MD5 is
checked against a single-part ETag (a mismatch always fails). When interrupted,
the partial archive is removed. Under --dry-run the listing runs for real and
nothing is written.

Options:
  source      string  ALIAS/BUCKET[/PREFIX] (BUCKET[/PREFIX] with `endpoint`) (required)
  dest        string  the archive to write; its folder must exist (required)
  prefix      string  top folder in the archive (default: the name of `dest` without
                      .tar; \"\": none)
  concurrency int     small objects fetched ahead at once (default 8)
  verify_md5  bool    compare MD5 with single-part ETags (default true)
  on_changed  string  an object changed during the backup: \"fail\" (default) or \"warn\"
  max_rate    string  most bytes per second read into the archive, e.g. \"200MiB/s\";
                      steps given the same rate share it (default \"\": no limit)
  config_dir, endpoint, access_key, secret_key, region, ca_cert: as for mcli_mirror

Result:
  path          string  the archive
  bytes         int     archive size
  sha256        string  hex SHA-256 of the archive
  entries       int     entries in the archive (files and folders)
  files         int     objects archived
  dirs          int     folders stored
  objects       int     objects under the source (refused keys excluded)
  object_bytes  int     their total size in the listing
  refused       int     keys refused as unsafe
  refused_keys  array   the first 100 refused keys
  vanished      int     objects deleted from the bucket during the run
  changed       array   objects changed during the run (on_changed \"warn\"; first 100)
  warnings      array   one line per problem that did not fail the step (first 100)
  duration_ms   int     wall time

Example:
  let a = s3_archive(#{ source: \"th_minio/thehive\", dest: `/mnt/backup/minio/minio_${stamp}.tar`,
                        timeout: \"12h\" });
  log_info(`${a.path}: ${a.files} objects, ${a.bytes} bytes, sha256 ${a.sha256}`);
";

    type Options = S3ArchiveOptions;
    type Output = S3ArchiveOutput;

    fn describe(options: &S3ArchiveOptions) -> String {
        let mut line = format!(
            "archive {}{} into {}",
            options.connection.endpoint_prefix(),
            options.source,
            options.dest.display()
        );
        if options.max_rate.limit().is_some() {
            line.push_str(&format!(" (at most {})", options.max_rate.describe()));
        }
        line
    }

    fn label(options: &S3ArchiveOptions) -> Option<String> {
        Some(format!("archive {}", options.source))
    }

    fn dry_run(_options: &S3ArchiveOptions) -> DryRun<S3ArchiveOutput> {
        // Listing only reads and checks the alias; `run` writes nothing under dry-run.
        DryRun::Run
    }

    fn run(
        options: S3ArchiveOptions,
        ctx: StepContext,
    ) -> impl Future<Output = Result<S3ArchiveOutput, StepError>> + Send {
        archive_with_env(options, ctx, &process_env, Box::new(|| {}))
    }
}

/// Runs the step, reading `MC_HOST_*`, `MC_CONFIG_DIR` and `HOME` through
/// `env`; `after_listing` runs once the bucket is listed, before any object
/// is read (tests change the bucket there).
pub fn archive_with_env(
    options: S3ArchiveOptions,
    ctx: StepContext,
    env: EnvLookup<'_>,
    after_listing: Box<dyn FnOnce() + Send>,
) -> impl Future<Output = Result<S3ArchiveOutput, StepError>> + Send + use<> {
    let resolved = options
        .connection
        .target("source", &options.source)
        .resolve(env);
    async move {
        let (endpoint, location) = resolved?;
        run_archive(options, endpoint, location, ctx, after_listing).await
    }
}

/// The top folder: `prefix`, else the archive's name without `.tar`.
fn top_folder(options: &S3ArchiveOptions) -> Result<String, S3ArchiveError> {
    let top = match &options.prefix {
        Some(prefix) => prefix.trim_matches('/').to_string(),
        None => {
            let name = options
                .dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.strip_suffix(".tar").unwrap_or(&name).to_string()
        }
    };
    let bad = Path::new(&top)
        .components()
        .any(|c| !matches!(c, Component::Normal(_)));
    if bad || top.contains("//") {
        return Err(S3ArchiveError::Options(format!(
            "prefix `{top}` must be a relative folder name without `.` or `..`"
        )));
    }
    Ok(top)
}

async fn run_archive(
    options: S3ArchiveOptions,
    endpoint: S3Endpoint,
    location: S3Location,
    ctx: StepContext,
    after_listing: Box<dyn FnOnce() + Send>,
) -> Result<S3ArchiveOutput, StepError> {
    let started = Instant::now();
    let top = top_folder(&options)?;
    let listed = list_bucket(&endpoint, &location, &ctx).await?;
    after_listing();
    let mut output = S3ArchiveOutput {
        path: options.dest.to_string_lossy().into_owned(),
        objects: listed.objects,
        object_bytes: listed.bytes,
        refused: listed.refused,
        refused_keys: listed.refused_keys,
        ..S3ArchiveOutput::default()
    };
    if ctx.dry_run {
        return Ok(output);
    }
    let store = object_reader(&endpoint, &location)?;
    let plan = &listed.plan;
    let members = archive_order(plan, &top);
    let (pieces, received) = mpsc::channel(CHANNEL_DEPTH);
    let writer_dest = options.dest.clone();
    let writer = tokio::task::spawn_blocking(move || write_members(received, &writer_dest));
    let mut streamer = Streamer {
        store: Arc::new(store),
        endpoint: endpoint.describe(),
        bucket: location.bucket.clone(),
        pieces,
        pace: ChunkPace::new(&ctx, output.object_bytes, options.max_rate),
        verify_md5: options.verify_md5,
        on_changed: options.on_changed,
        label: ctx.label.clone(),
        top,
        output: &mut output,
    };
    let streamed = tokio::select! {
        streamed = streamer.stream_all(plan, members, options.concurrency.max(1)) => streamed,
        _ = ctx.cancel.cancelled() => Err(StreamEnd::Failed(StepError::cancelled())),
    };
    streamer.pace.finish();
    // Closing the channel ends the writer: it finishes the archive after
    // `Finish`, or removes the partial file without it.
    drop(streamer);
    let written = writer
        .await
        .map_err(|_| StepError::new(ErrorKind::Internal, "s3_archive writer thread panicked"))?;
    let written = match (streamed, written) {
        (Err(StreamEnd::Failed(error)), _) => return Err(error),
        (_, Err(error)) => return Err(error.into()),
        (Ok(()), Ok(written)) => written,
        (Err(StreamEnd::WriterGone), Ok(_)) => {
            return Err(StepError::new(
                ErrorKind::Internal,
                "s3_archive writer stopped without an error",
            ));
        }
    };
    record_written(&mut output, written, started, &ctx.label);
    Ok(output)
}

/// Puts what the writer made into the result, shortens long lists, logs the summary.
fn record_written(output: &mut S3ArchiveOutput, written: Written, started: Instant, label: &str) {
    output.bytes = written.bytes;
    output.sha256 = written.sha256;
    output.entries = written.entries;
    output.files = written.files;
    output.dirs = written.dirs;
    output.duration_ms = started.elapsed().as_millis() as u64;
    for list in [&mut output.changed, &mut output.warnings] {
        if list.len() > MAX_LINES {
            let more = list.len() - MAX_LINES;
            list.truncate(MAX_LINES);
            list.push(format!("... and {more} more"));
        }
    }
    tracing::info!(
        "{}: {} objects ({} bytes) into {} ({} bytes), {} refused, {} vanished, {} changed",
        label,
        output.files,
        output.object_bytes,
        output.path,
        output.bytes,
        output.refused,
        output.vanished,
        output.changed.len()
    );
}

/// One member of the archive, in archive order: an index into the plan (the
/// plan holds each key once; the order holds 8 bytes per member).
#[derive(Clone, Copy, Debug)]
enum Member {
    /// The top folder itself.
    Top,
    /// A folder of the plan.
    Folder(u32),
    /// A file of the plan.
    File(u32),
}

/// The index of a plan's folder or file, as a [`Member`] holds it.
fn member_index(index: usize) -> u32 {
    u32::try_from(index).expect("fewer than 2^32 objects in a bucket listing")
}

/// The path of `member` relative to the top folder ("" = the top folder).
fn member_path(plan: &KeyPlan, member: Member) -> &str {
    match member {
        Member::Top => "",
        Member::Folder(index) => &plan.folders[index as usize],
        Member::File(index) => plan.files[index as usize].relative(),
    }
}

/// Compares `/`-separated paths the way a sorted folder walk visits them:
/// segment by segment, so `a/b` comes before `a.txt` (as tar_dir orders a
/// mirrored folder), and a folder before what it holds.
fn walk_order(a: &str, b: &str) -> Ordering {
    fn segments(path: &str) -> impl Iterator<Item = &[u8]> {
        path.split('/')
            .filter(|_| !path.is_empty())
            .map(str::as_bytes)
    }
    segments(a).cmp(segments(b))
}

/// The folders and files of `plan` in archive order; the top folder first
/// unless `top` is empty.
fn archive_order(plan: &KeyPlan, top: &str) -> Vec<Member> {
    let mut members = Vec::with_capacity(plan.folders.len() + plan.files.len() + 1);
    members.extend((0..plan.folders.len()).map(|i| Member::Folder(member_index(i))));
    members.extend((0..plan.files.len()).map(|i| Member::File(member_index(i))));
    if !top.is_empty() {
        members.push(Member::Top);
    }
    members.sort_by(|a, b| walk_order(member_path(plan, *a), member_path(plan, *b)));
    members
}

/// What the fetching side hands the writing thread, in archive order.
enum Piece {
    /// A folder entry.
    Folder {
        path: PathBuf,
        mtime: u64,
    },
    /// A file's header; exactly `size` bytes of `Data`/`Zeros` follow, then `EndFile`.
    File {
        path: PathBuf,
        size: u64,
        mtime: u64,
    },
    Data(Bytes),
    Zeros(u64),
    EndFile,
    /// Everything was sent: finish and commit the archive.
    Finish,
}

/// Why streaming stopped early.
enum StreamEnd {
    /// The writing thread is gone; its own error says why.
    WriterGone,
    Failed(StepError),
}

impl<E: Into<StepError>> From<E> for StreamEnd {
    fn from(error: E) -> StreamEnd {
        StreamEnd::Failed(error.into())
    }
}

/// An object's body as it comes from the bucket (or from memory, fetched ahead).
type ObjectBody = BoxStream<'static, object_store::Result<Bytes>>;

/// An object fetched ahead (or not).
enum Prefetched {
    /// Small: the whole body, read.
    Body(ObjectMeta, Vec<Bytes>),
    /// Large, or bigger than listed: opened, its body still to stream.
    Open(GetResult),
    /// Fetched when its turn comes.
    Later,
    Vanished,
    Failed(object_store::Error),
}

/// A spawned prefetch, aborted when dropped (an interrupted run).
struct PrefetchTask(tokio::task::JoinHandle<Prefetched>);

impl Drop for PrefetchTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads a small object whole; leaves a large one for its turn.
async fn prefetch(store: Arc<object_store::aws::AmazonS3>, file: PlannedFile) -> Prefetched {
    if file.size > PREFETCH_MAX {
        return Prefetched::Later;
    }
    let result = match open_object(store.as_ref(), &file.key).await {
        Ok(Some(result)) => result,
        Ok(None) => return Prefetched::Vanished,
        Err(e) => return Prefetched::Failed(e),
    };
    if result.meta.size > PREFETCH_MAX {
        return Prefetched::Open(result);
    }
    let meta = result.meta.clone();
    let mut chunks = Vec::new();
    let mut body = result.into_stream();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => chunks.push(chunk),
            Err(e) => return Prefetched::Failed(e),
        }
    }
    Prefetched::Body(meta, chunks)
}

/// The fetching side.
struct Streamer<'a> {
    store: Arc<object_store::aws::AmazonS3>,
    endpoint: String,
    bucket: String,
    pieces: mpsc::Sender<Piece>,
    pace: ChunkPace,
    verify_md5: bool,
    on_changed: OnChangedObject,
    label: String,
    /// The top folder ("" = none).
    top: String,
    output: &'a mut S3ArchiveOutput,
}

impl Streamer<'_> {
    async fn send(&self, piece: Piece) -> Result<(), StreamEnd> {
        self.pieces
            .send(piece)
            .await
            .map_err(|_| StreamEnd::WriterGone)
    }

    /// Sends every member in order, fetching small objects ahead (each
    /// file's entry is copied out of the plan only when its fetch starts).
    async fn stream_all(
        &mut self,
        plan: &KeyPlan,
        members: Vec<Member>,
        ahead: usize,
    ) -> Result<(), StreamEnd> {
        let folder_mtime = newest_mtime(plan);
        let store = Arc::clone(&self.store);
        // The files' indices in archive order (owned, so that the stream
        // holds no closure over borrowed members across its awaits).
        let file_order: Vec<u32> = members
            .iter()
            .filter_map(|member| match *member {
                Member::File(index) => Some(index),
                Member::Top | Member::Folder(_) => None,
            })
            .collect();
        let mut fetched = futures::stream::iter(file_order.into_iter().map(move |index| {
            let file = plan.files[index as usize].clone();
            PrefetchTask(tokio::spawn(prefetch(Arc::clone(&store), file)))
        }))
        .map(|mut task| async move {
            let joined = (&mut task.0).await;
            joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        })
        .buffered(ahead);
        for &member in &members {
            match member {
                Member::Top | Member::Folder(_) => {
                    let path = self.archive_path(member_path(plan, member));
                    self.send(Piece::Folder {
                        path,
                        mtime: folder_mtime,
                    })
                    .await?;
                }
                Member::File(index) => {
                    let prefetched = fetched.next().await.expect("one prefetch per file");
                    self.archive_object(&plan.files[index as usize], prefetched)
                        .await?;
                }
            }
        }
        self.send(Piece::Finish).await
    }

    /// `relative` below the top folder.
    fn archive_path(&self, relative: &str) -> PathBuf {
        match (self.top.as_str(), relative) {
            ("", relative) => PathBuf::from(relative),
            (top, "") => PathBuf::from(top),
            (top, relative) => PathBuf::from(format!("{top}/{relative}")),
        }
    }

    /// Sends one object's header and body, then checks its MD5.
    async fn archive_object(
        &mut self,
        file: &PlannedFile,
        prefetched: Prefetched,
    ) -> Result<(), StreamEnd> {
        let Some((meta, body)) = self.opened(file, prefetched).await? else {
            return self.vanished(file);
        };
        let key = &file.key;
        self.check_listed_version(file, &meta)?;
        let size = meta.size;
        self.send(Piece::File {
            path: self.archive_path(file.relative()),
            size,
            mtime: meta.last_modified.timestamp().max(0) as u64,
        })
        .await?;
        let (sent, md5) = self.send_body(key, size, body).await?;
        if sent < size {
            self.changed(
                key,
                format!("its body ended after {sent} of {size} bytes"),
                "padded with zeros",
            )?;
            self.send(Piece::Zeros(size - sent)).await?;
        }
        self.send(Piece::EndFile).await?;
        if self.verify_md5
            && sent == size
            && let Some(mismatch) = etag_md5_mismatch(meta.e_tag.as_deref(), md5)
        {
            return Err(S3ArchiveError::Integrity {
                key: key.to_string(),
                endpoint: self.endpoint.clone(),
                expected: mismatch.expected,
                got: mismatch.got,
            }
            .into());
        }
        Ok(())
    }

    /// The object's metadata and body, fetched ahead or opened now; `None`
    /// when it was deleted after the listing.
    async fn opened(
        &self,
        file: &PlannedFile,
        prefetched: Prefetched,
    ) -> Result<Option<(ObjectMeta, ObjectBody)>, StreamEnd> {
        let key = &file.key;
        let result = match prefetched {
            Prefetched::Body(meta, chunks) => {
                let body = futures::stream::iter(chunks.into_iter().map(Ok)).boxed();
                return Ok(Some((meta, body)));
            }
            Prefetched::Open(result) => result,
            Prefetched::Later => match open_object(self.store.as_ref(), key).await {
                Ok(Some(result)) => result,
                Ok(None) => return Ok(None),
                Err(e) => return Err(self.download_error(key, e)),
            },
            Prefetched::Vanished => return Ok(None),
            Prefetched::Failed(e) => return Err(self.download_error(key, e)),
        };
        Ok(Some((result.meta.clone(), result.into_stream())))
    }

    /// An object read with another size or a newer Last-Modified than
    /// listed changed during the backup: an error, or (warn) a line.
    fn check_listed_version(
        &mut self,
        file: &PlannedFile,
        meta: &ObjectMeta,
    ) -> Result<(), StreamEnd> {
        let listed = file;
        let newer = meta.last_modified.timestamp() > listed.modified;
        if meta.size == listed.size && !newer {
            return Ok(());
        }
        self.changed(
            &listed.key,
            format!(
                "listed with {} bytes, read with {} bytes{}",
                listed.size,
                meta.size,
                if newer {
                    " and a newer Last-Modified"
                } else {
                    ""
                }
            ),
            "archived the version read",
        )
    }

    /// Sends at most `size` bytes of `body`; returns the count and their MD5.
    async fn send_body(
        &mut self,
        key: &str,
        size: u64,
        mut body: ObjectBody,
    ) -> Result<(u64, Md5), StreamEnd> {
        let mut md5 = Md5::new();
        let mut sent = 0u64;
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|e| self.download_error(key, e))?;
            if sent + chunk.len() as u64 > size {
                self.changed(
                    key,
                    format!("its body is longer than the {size} bytes announced"),
                    "stored the announced length",
                )?;
                chunk.truncate((size - sent) as usize);
            }
            self.pace.take(chunk.len() as u64).await;
            md5.update(&chunk);
            sent += chunk.len() as u64;
            self.send(Piece::Data(chunk)).await?;
            if sent == size {
                break;
            }
        }
        Ok((sent, md5))
    }

    fn download_error(&self, key: &str, source: object_store::Error) -> StreamEnd {
        S3ArchiveError::Download {
            key: key.to_string(),
            endpoint: self.endpoint.clone(),
            source,
        }
        .into()
    }

    fn vanished(&mut self, file: &PlannedFile) -> Result<(), StreamEnd> {
        let line = warn_vanished(&self.label, &file.key, &self.bucket, "not archived");
        self.output.vanished += 1;
        self.output.warnings.push(line);
        Ok(())
    }

    /// An object changed during the backup: an error, or (warn) a line.
    fn changed(&mut self, key: &str, what: String, kept: &str) -> Result<(), StreamEnd> {
        match self.on_changed {
            OnChangedObject::Fail => Err(S3ArchiveError::Changed {
                key: key.escape_debug().to_string(),
                bucket: self.bucket.clone(),
                what,
            }
            .into()),
            OnChangedObject::Warn => {
                let line = format!(
                    "`{}` changed during the backup: {what}: {kept}",
                    key.escape_debug()
                );
                tracing::warn!("{}: {line}", self.label);
                self.output.changed.push(line.clone());
                self.output.warnings.push(line);
                Ok(())
            }
        }
    }
}

/// The folders' mtime: the newest Last-Modified of the objects (now for an
/// empty bucket).
fn newest_mtime(plan: &KeyPlan) -> u64 {
    plan.files
        .iter()
        .map(|file| file.modified.max(0) as u64)
        .max()
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
}

/// What the writing thread made.
struct Written {
    bytes: u64,
    sha256: String,
    entries: u64,
    files: u64,
    dirs: u64,
}

/// Owner and permission bits the mirror's files and folders would get.
struct Owner {
    uid: u32,
    gid: u32,
    user: Option<String>,
    group: Option<String>,
    file_mode: u32,
    folder_mode: u32,
}

impl Owner {
    fn of_this_process() -> Owner {
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        let umask = process_umask();
        Owner {
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            user: nix::unistd::User::from_uid(uid)
                .ok()
                .flatten()
                .map(|u| u.name),
            group: nix::unistd::Group::from_gid(gid)
                .ok()
                .flatten()
                .map(|g| g.name),
            file_mode: 0o666 & !umask,
            folder_mode: 0o777 & !umask,
        }
    }

    fn header(&self, entry_type: EntryType, mode: u32, mtime: u64, size: u64) -> Header {
        let mut header = Header::new_gnu();
        header.set_entry_type(entry_type);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_uid(self.uid.into());
        header.set_gid(self.gid.into());
        // Names longer than the header field are left out; the ids remain.
        if let Some(user) = &self.user {
            let _ = header.set_username(user);
        }
        if let Some(group) = &self.group {
            let _ = header.set_groupname(group);
        }
        header.set_size(size);
        header
    }
}

/// The process's umask, read without changing it (`umask(2)` can only be
/// read by setting it, which would race with other threads creating files).
fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let value = line.strip_prefix("Umask:")?.trim();
                u32::from_str_radix(value, 8).ok()
            })
        })
        .unwrap_or(0o022)
}

/// The writing thread: turns pieces into the archive, then commits it.
fn write_members(
    mut pieces: mpsc::Receiver<Piece>,
    dest: &Path,
) -> Result<Written, S3ArchiveError> {
    let write_error = |source| S3ArchiveError::Write {
        path: dest.to_path_buf(),
        source,
    };
    let (partial, file) =
        PartialFile::create(dest, ARCHIVE_MODE).map_err(|source| S3ArchiveError::Write {
            path: partial_path(dest),
            source,
        })?;
    let sink = ArchiveSink::new(file, Compression::None, 0).map_err(write_error)?;
    let mut writer = MemberWriter::new(sink);
    loop {
        // The fetching side stopped without `Finish`: drop the partial archive.
        let Some(piece) = pieces.blocking_recv() else {
            return Err(write_error(io::Error::other("s3_archive was stopped")));
        };
        if let Piece::Finish = piece {
            break;
        }
        writer.write(piece).map_err(write_error)?;
    }
    writer.commit(partial, dest).map_err(write_error)
}

/// The tar stream being written, with what it holds so far.
struct MemberWriter {
    builder: tar::Builder<ArchiveSink>,
    owner: Owner,
    counts: Written,
    /// The CRC-32 of every file written, in archive order (for the sidecar).
    crcs: Vec<u32>,
    /// The file whose data is coming: its size and the CRC-32 so far.
    current: Option<(u64, crc32fast::Hasher)>,
}

impl MemberWriter {
    fn new(sink: ArchiveSink) -> MemberWriter {
        MemberWriter {
            builder: tar::Builder::new(sink),
            owner: Owner::of_this_process(),
            counts: Written {
                bytes: 0,
                sha256: String::new(),
                entries: 0,
                files: 0,
                dirs: 0,
            },
            crcs: Vec::new(),
            current: None,
        }
    }

    /// Writes one piece (any but `Finish`).
    fn write(&mut self, piece: Piece) -> io::Result<()> {
        let owner = &self.owner;
        match piece {
            Piece::Folder { path, mtime } => {
                let mut header = owner.header(EntryType::Directory, owner.folder_mode, mtime, 0);
                append_folder(&mut self.builder, &mut header, &path)?;
                self.counts.entries += 1;
                self.counts.dirs += 1;
            }
            Piece::File { path, size, mtime } => {
                let mut header = owner.header(EntryType::Regular, owner.file_mode, mtime, size);
                // The header (and any long-name entry) now; the data follows.
                self.builder.append_data(&mut header, &path, io::empty())?;
                self.counts.entries += 1;
                self.current = Some((size, crc32fast::Hasher::new()));
            }
            Piece::Data(data) => {
                let (_, crc) = self.current.as_mut().expect("data follows a file header");
                crc.update(&data);
                self.builder.get_mut().write_all(&data)?;
            }
            Piece::Zeros(count) => {
                let (_, crc) = self.current.as_mut().expect("zeros follow a file header");
                write_zeros(self.builder.get_mut(), Some(crc), count)?;
            }
            Piece::EndFile => {
                let (size, crc) = self.current.take().expect("a file ends after its header");
                write_zeros(self.builder.get_mut(), None, (512 - size % 512) % 512)?;
                self.crcs.push(crc.finalize());
                self.counts.files += 1;
            }
            Piece::Finish => unreachable!("write_members ends on Finish"),
        }
        Ok(())
    }

    /// Ends the tar stream, writes the checksum file, then renames the
    /// archive into place.
    fn commit(self, partial: PartialFile, dest: &Path) -> io::Result<Written> {
        let sink = self.builder.into_inner()?;
        let written = sink.finish()?;
        // The checksum file first: a crash between the two renames leaves a
        // checksum that does not match, never an archive that looks verified.
        let sidecar = Sidecar {
            sha256: written.sha256.clone(),
            file_crcs: self.crcs,
        };
        write_sidecar(dest, &sidecar)?;
        partial.commit(written.file)?;
        Ok(Written {
            bytes: written.bytes,
            sha256: written.sha256,
            ..self.counts
        })
    }
}

/// Appends a folder entry named with a trailing `/`, as GNU tar (and
/// tar_dir) does: short names set directly, long ones through the GNU
/// long-name entry.
fn append_folder(
    builder: &mut tar::Builder<ArchiveSink>,
    header: &mut Header,
    path: &Path,
) -> io::Result<()> {
    let mut name = path.as_os_str().as_bytes().to_vec();
    name.push(b'/');
    let field = &mut header.as_old_mut().name;
    if name.len() < field.len() && !name.contains(&0) {
        field.fill(0);
        field[..name.len()].copy_from_slice(&name);
        header.set_cksum();
        builder.append(header, io::empty())
    } else {
        builder.append_data(
            header,
            Path::new(std::ffi::OsStr::from_bytes(&name)),
            io::empty(),
        )
    }
}

fn write_zeros(
    sink: &mut impl Write,
    mut crc: Option<&mut crc32fast::Hasher>,
    mut count: u64,
) -> io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while count > 0 {
        let n = count.min(ZEROS.len() as u64) as usize;
        sink.write_all(&ZEROS[..n])?;
        if let Some(crc) = crc.as_deref_mut() {
            crc.update(&ZEROS[..n]);
        }
        count -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::keys::plan_keys;
    use crate::s3::listing::ListedObject;

    fn options(json: serde_json::Value) -> S3ArchiveOptions {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_unknown_options_and_the_top_folder() {
        let o = options(serde_json::json!({"source": "minio/thehive", "dest": "/b/minio_S.tar"}));
        assert_eq!(o.concurrency, 8);
        assert!(o.verify_md5);
        assert_eq!(o.on_changed, OnChangedObject::Fail);
        assert_eq!(top_folder(&o).unwrap(), "minio_S");
        assert_eq!(
            S3Archive::describe(&o),
            "archive minio/thehive into /b/minio_S.tar"
        );
        let e = serde_json::from_value::<S3ArchiveOptions>(
            serde_json::json!({"source": "a/b", "dest": "/x.tar", "concurency": 2}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `concurency`"), "{e}");
        let e = serde_json::from_value::<S3ArchiveOptions>(
            serde_json::json!({"source": "a/b", "dest": "/x.tar", "max_rate": "fast"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_rate `fast`"), "{e}");
        let o = options(serde_json::json!({"source": "a/b", "dest": "/x.tar", "prefix": "../up"}));
        assert!(top_folder(&o).is_err());
    }

    #[test]
    fn members_come_in_the_order_a_sorted_folder_walk_gives() {
        let object = |key: &str| ListedObject {
            key: key.into(),
            utf8: true,
            size: u64::from(!key.ends_with('/')),
            modified: 7,
            single_part_etag: None,
        };
        let plan = plan_keys(
            vec![
                object("a.txt"),
                object("a/b"),
                object("b/"),
                object("a-z/c"),
            ],
            "",
        );
        let order: Vec<String> = archive_order(&plan, "top")
            .into_iter()
            .map(|m| match m {
                Member::Top | Member::Folder(_) => format!("{}/", member_path(&plan, m)),
                Member::File(_) => member_path(&plan, m).to_string(),
            })
            .collect();
        assert_eq!(order, ["/", "a/", "a/b", "a-z/", "a-z/c", "a.txt", "b/"]);
        assert_eq!(newest_mtime(&plan), 7);
    }

    #[test]
    fn the_order_indexes_the_plan_without_copying_its_keys() {
        let object = |key: &str| ListedObject {
            key: key.into(),
            utf8: true,
            size: 1,
            modified: 3,
            single_part_etag: None,
        };
        let plan = plan_keys(
            vec![
                object("p/b/2"),
                object("p/a"),
                object("p/b/1"),
                object("p/a.txt"),
            ],
            "p/",
        );
        // No top folder: the plan's folders and files only, each once.
        let order = archive_order(&plan, "");
        let paths: Vec<&str> = order.iter().map(|m| member_path(&plan, *m)).collect();
        assert_eq!(paths, ["a", "a.txt", "b", "b/1", "b/2"]);
        assert!(matches!(order[2], Member::Folder(0)));
        assert!(matches!(order[3], Member::File(2)));
        // The member's path is the plan's key, not a copy.
        assert!(std::ptr::eq(
            member_path(&plan, order[3]).as_ptr(),
            plan.files[2].key[2..].as_ptr()
        ));
        assert_eq!(std::mem::size_of::<Member>(), 8);
    }
}
