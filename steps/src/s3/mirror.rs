//! `mcli_mirror`: mirrors an S3/MinIO bucket (or a prefix of it) into a local
//! folder, like `mcli mirror ALIAS/BUCKET DEST`, natively.
//!
//! Listing, key planning, opening objects, pacing and the ETag check are
//! [`bucket_copy`](super::bucket_copy)'s (shared with `s3_archive`); here is
//! what a folder needs: what is already there, stray files removed, each object
//! downloaded to a `.partial` file, retried whole, and renamed into place.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::runtime::throttle::MaxRate;
use crate::s3::alias::{EnvLookup, S3Endpoint, S3Location, process_env};
use crate::s3::bucket_copy::{
    ChunkPace, default_concurrency, default_true, etag_md5_mismatch, list_bucket, object_reader,
    open_object, warn_vanished,
};
use crate::s3::connection::S3Connection;
use crate::s3::keys::{KeyPlan, PARTIAL_SUFFIX, PlannedFile};
/// Whole-object attempts when a download fails midway or does not check out
/// (object_store already resumes dropped connections inside each attempt).
const DOWNLOAD_ATTEMPTS: u32 = 3;

/// The `mcli_mirror` step.
pub struct McliMirror;

/// Options of `mcli_mirror`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorOptions {
    /// `ALIAS/BUCKET[/PREFIX]`, or `BUCKET[/PREFIX]` with `endpoint`.
    pub source: String,
    /// The local folder (created when missing).
    pub dest: PathBuf,
    /// Downloads running at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Delete local files that are not in the bucket.
    #[serde(default)]
    pub remove: bool,
    /// Check each file's MD5 against a single-part ETag.
    #[serde(default = "default_true")]
    pub verify_md5: bool,
    /// The most bytes per second to download (shared with every step given
    /// the same rate).
    #[serde(default)]
    pub max_rate: MaxRate,
    /// Endpoint, keys, config folder, region, CA.
    #[serde(flatten)]
    pub connection: S3Connection,
}

/// Result of `mcli_mirror`.
#[derive(Debug, Default, Serialize)]
pub struct MirrorOutput {
    /// Objects under the source that map to local files (refused keys excluded).
    pub objects: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Objects downloaded by this run (under dry-run: that would be).
    pub downloaded: u64,
    /// Bytes downloaded by this run (under dry-run: that would be).
    pub downloaded_bytes: u64,
    /// Objects already present with the same size and mtime.
    pub skipped: u64,
    /// Local files deleted because the bucket no longer has them (`remove: true`).
    pub removed: u64,
    /// Keys refused because they cannot map safely to a local path.
    pub refused: u64,
    /// The first refused keys (escaped), for the report.
    pub refused_keys: Vec<String>,
    /// Objects listed but deleted before they could be downloaded.
    pub vanished: u64,
    /// Wall time.
    pub duration_ms: u64,
}

/// Why `mcli_mirror` failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A download failed.
    #[error("downloading `{key}` from {endpoint} failed")]
    Download {
        /// The object key.
        key: String,
        /// The alias and URL.
        endpoint: String,
        /// object_store's error.
        source: object_store::Error,
    },
    /// A downloaded object does not match its size or MD5.
    #[error("`{key}` from {endpoint}: {check} mismatch after {attempts} attempts ({detail}){hint}")]
    Integrity {
        /// The object key.
        key: String,
        /// The alias and URL.
        endpoint: String,
        /// `size` or `md5`.
        check: &'static str,
        /// `expected X, got Y`.
        detail: String,
        /// Attempts made.
        attempts: u32,
        /// Advice, or empty.
        hint: &'static str,
    },
    /// A folder on the way to a file is a symbolic link: following it could
    /// write outside `dest`.
    #[error("refusing to write through the symbolic link {}", path.display())]
    SymlinkInDest {
        /// The link.
        path: PathBuf,
    },
    /// A local file operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done, e.g. "create".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl StepFailure for MirrorError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            MirrorError::Download { .. } => ErrorKind::Download,
            MirrorError::Integrity { .. } => ErrorKind::Integrity,
            MirrorError::SymlinkInDest { .. } => ErrorKind::UnsafePath,
            MirrorError::Io { .. } => ErrorKind::Io,
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MirrorError {
    let path = path.to_path_buf();
    move |source| MirrorError::Io {
        action,
        path,
        source,
    }
}

impl Step for McliMirror {
    const NAME: &'static str = "mcli_mirror";
    const DOC: &'static str = "\
Mirrors an S3/MinIO bucket (or a folder of it) into a local folder, like `mcli mirror`.

No MinIO client needs to be installed. The alias is found the way `mcli`/`mc` find
it: the environment variable MC_HOST_<ALIAS> (https://ACCESS:SECRET@host[:port]),
else config.json in `config_dir`, $MC_CONFIG_DIR, ~/.mcli/ or ~/.mc/ (set up by
`mcli alias set ALIAS URL ACCESS SECRET`; its `path` setting picks path-style or
virtual-host requests). Or give `endpoint`, `access_key` and `secret_key`; `source`
is then BUCKET[/PREFIX].

First the bucket is listed once, like `mcli ls`: an unreachable endpoint, rejected
credentials (with the S3 error code, e.g. SignatureDoesNotMatch or
InvalidAccessKeyId) or a missing bucket fail at once, naming the alias and endpoint.
Then every object is streamed to `<file>.partial`, checked (size; MD5 when the ETag
is a single-part MD5), given the object's Last-Modified as mtime and renamed into
place. Dropped connections are resumed. A file already present with the same size
and mtime is skipped, so re-running after an interruption only fetches the rest.
Keys that cannot map safely below `dest` (a `..` or `.` segment, a leading `/`,
an empty segment, a NUL or other control character, a name over 255 bytes, a file
that is also a folder prefix) are refused: logged, counted, never written. An
object deleted between listing and download is logged and counted as vanished.
When interrupted, the `.partial` files are deleted.

Under --dry-run the listing runs for real and the result counts what would be
downloaded and removed; nothing is written.

Options:
  source      string  ALIAS/BUCKET[/PREFIX] (BUCKET[/PREFIX] with `endpoint`) (required)
  dest        string  local folder, created when missing (required)
  concurrency int     downloads at once (default 8)
  remove      bool    delete local files absent from the bucket (default false)
  config_dir  string  MinIO-client config folder searched first (default: none)
  endpoint    string  http(s)://host[:port] instead of an alias (default: none)
  access_key  string  access key for `endpoint` (default: anonymous)
  secret_key  string  secret key for `endpoint`; use secret() (default: anonymous)
  region      string  signing region (default: from an AWS host name, else us-east-1)
  verify_md5  bool    compare MD5 with single-part ETags; turn off for buckets with
                      SSE-KMS/SSE-C encryption, whose ETags are not MD5s (default true)
  ca_cert     string  PEM file of a private certificate authority to trust, besides the
                      system's and those in certs/CAs/ of the MinIO-client config
                      folders, as `mc` uses them (default: none)
  max_rate    string  most bytes per second downloaded, e.g. \"200MiB/s\"; steps given
                      the same rate share it (default \"\": no limit)

Result:
  objects           int     objects under the source (refused keys excluded)
  bytes             int     their total size
  downloaded        int     objects fetched by this run
  downloaded_bytes  int     bytes fetched by this run
  skipped           int     objects already up to date
  removed           int     local files deleted (remove: true)
  refused           int     keys refused as unsafe
  refused_keys      array   the first 100 refused keys
  vanished          int     objects deleted from the bucket during the run
  duration_ms       int     wall time

Example:
  let m = mcli_mirror(#{ source: \"minio/thehive\", dest: `/mnt/backup/minio/minio_${stamp}`,
                         timeout: \"6h\" });
  if m.refused > 0 { log_warn(`${m.refused} keys were not mirrored`); }
";

    type Options = MirrorOptions;
    type Output = MirrorOutput;

    fn describe(options: &MirrorOptions) -> String {
        let mut line = format!(
            "mirror {}{} into {} ({} at a time",
            options.connection.endpoint_prefix(),
            options.source,
            options.dest.display(),
            options.concurrency.max(1)
        );
        if options.remove {
            line.push_str(", removing local files absent from the bucket");
        }
        if let Some(rate) = options.max_rate.limit() {
            line.push_str(&format!(
                ", at most {}",
                MaxRate::bytes_per_second(rate).describe()
            ));
        }
        line.push(')');
        line
    }

    fn label(options: &MirrorOptions) -> Option<String> {
        Some(format!("mirror {}", options.source))
    }

    fn dry_run(_options: &MirrorOptions) -> DryRun<MirrorOutput> {
        // Listing only reads, and checking the alias is the most useful part of a
        // dry run; `run` writes nothing when ctx.dry_run is set.
        DryRun::Run
    }

    fn run(
        options: MirrorOptions,
        ctx: StepContext,
    ) -> impl Future<Output = Result<MirrorOutput, StepError>> + Send {
        mirror_with_env(options, ctx, &process_env)
    }
}

/// Runs the mirror, reading `MC_HOST_*`, `MC_CONFIG_DIR` and `HOME` through
/// `env` (tests pass their own; the step passes the process environment).
/// The environment is read before the returned future first runs.
pub fn mirror_with_env(
    options: MirrorOptions,
    ctx: StepContext,
    env: EnvLookup<'_>,
) -> impl Future<Output = Result<MirrorOutput, StepError>> + Send + use<> {
    let resolved = options
        .connection
        .target("source", &options.source)
        .resolve(env);
    async move {
        let (endpoint, location) = resolved?;
        run_mirror(options, endpoint, location, ctx).await
    }
}

/// Lists and maps the bucket, settles what is already there (and removes
/// strays with `remove`), then downloads the rest.
async fn run_mirror(
    options: MirrorOptions,
    endpoint: S3Endpoint,
    location: S3Location,
    ctx: StepContext,
) -> Result<MirrorOutput, StepError> {
    let started = Instant::now();
    let listed = list_bucket(&endpoint, &location, &ctx).await?;
    let mut output = MirrorOutput {
        objects: listed.objects,
        bytes: listed.bytes,
        refused: listed.refused,
        refused_keys: listed.refused_keys,
        ..MirrorOutput::default()
    };
    let (plan, to_fetch) =
        settle_local_side(&options, listed.plan, ctx.dry_run, &mut output).await?;
    if ctx.dry_run {
        output.downloaded = to_fetch.len() as u64;
        output.downloaded_bytes = to_fetch.iter().map(|&i| plan.files[i as usize].size).sum();
        output.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(output);
    }
    download_all(
        &options,
        &endpoint,
        &location,
        &plan,
        to_fetch,
        &ctx,
        &mut output,
    )
    .await?;
    output.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        "{}: {} objects ({} bytes): {} downloaded, {} up to date, {} removed, {} refused, {} vanished",
        ctx.label,
        output.objects,
        output.bytes,
        output.downloaded,
        output.skipped,
        output.removed,
        output.refused,
        output.vanished
    );
    Ok(output)
}

/// Finds the files already up to date in `dest` (counted in `skipped`) and,
/// with `remove`, deletes (under dry-run: counts) the local files the bucket
/// does not have. Returns the plan (lent to the blocking threads) and the
/// indices of its files to download.
async fn settle_local_side(
    options: &MirrorOptions,
    plan: KeyPlan,
    dry_run: bool,
    output: &mut MirrorOutput,
) -> Result<(KeyPlan, Vec<u32>), StepError> {
    let dest = options.dest.clone();
    let (plan, to_fetch, skipped) = tokio::task::spawn_blocking(move || {
        let (to_fetch, skipped) = split_up_to_date(&dest, &plan);
        (plan, to_fetch, skipped)
    })
    .await
    .expect("up-to-date check panicked");
    output.skipped = skipped;
    if !options.remove {
        return Ok((plan, to_fetch));
    }
    // Removal comes first: it also clears a stale file standing where the
    // bucket now has a folder (or the reverse), and leftover `.partial` files.
    let dest = options.dest.clone();
    let delete = !dry_run;
    let (plan, removed) = tokio::task::spawn_blocking(move || {
        let removed = remove_extra(&dest, &plan, delete);
        (plan, removed)
    })
    .await
    .expect("removal panicked");
    output.removed = removed?;
    Ok((plan, to_fetch))
}

/// Creates the folders, then downloads `to_fetch`, `concurrency` at a time,
/// counting what came and what vanished in `output`.
async fn download_all(
    options: &MirrorOptions,
    endpoint: &S3Endpoint,
    location: &S3Location,
    plan: &KeyPlan,
    to_fetch: Vec<u32>,
    ctx: &StepContext,
    output: &mut MirrorOutput,
) -> Result<(), StepError> {
    tokio::fs::create_dir_all(&options.dest)
        .await
        .map_err(io_error("create", &options.dest))?;
    let fetcher = Arc::new(Fetcher {
        store: object_reader(endpoint, location)?,
        endpoint: endpoint.describe(),
        dest: options.dest.clone(),
        verified_folders: Mutex::new(HashSet::new()),
        pace: ChunkPace::new(
            ctx,
            to_fetch.iter().map(|&i| plan.files[i as usize].size).sum(),
            options.max_rate,
        ),
        verify_md5: options.verify_md5,
    });
    for folder in &plan.folders {
        fetcher.ensure_folder(folder).await?;
    }
    let mut downloads = futures::stream::iter(to_fetch.into_iter().map(|index| {
        let entry = &plan.files[index as usize];
        let fetcher = Arc::clone(&fetcher);
        async move {
            let outcome = fetcher.fetch(entry).await;
            (entry, outcome)
        }
    }))
    .buffer_unordered(options.concurrency.max(1));
    loop {
        let next = tokio::select! {
            next = downloads.next() => next,
            // Dropping `downloads` drops the running downloads, whose guards
            // delete their `.partial` files.
            _ = ctx.cancel.cancelled() => return Err(StepError::cancelled()),
        };
        let Some((entry, outcome)) = next else { break };
        match outcome? {
            Fetched::Downloaded(bytes) => {
                output.downloaded += 1;
                output.downloaded_bytes += bytes;
            }
            Fetched::Vanished => {
                output.vanished += 1;
                output.removed +=
                    forget_vanished(options, entry, &location.bucket, &ctx.label).await?;
            }
        }
    }
    drop(downloads);
    fetcher.pace.finish();
    Ok(())
}

/// Reports an object deleted after the listing; with `remove`, deletes the
/// older copy a previous run left (it is no longer in the bucket either).
/// Returns the files removed (0 or 1).
async fn forget_vanished(
    options: &MirrorOptions,
    entry: &PlannedFile,
    bucket: &str,
    label: &str,
) -> Result<u64, MirrorError> {
    warn_vanished(label, &entry.key, bucket, "not mirrored");
    let stale = options.dest.join(entry.relative());
    if options.remove && tokio::fs::symlink_metadata(&stale).await.is_ok() {
        tokio::fs::remove_file(&stale)
            .await
            .map_err(io_error("remove", &stale))?;
        return Ok(1);
    }
    Ok(0)
}

/// Splits the plan's files into those to download (their indices) and those
/// already up to date (a regular file with the same size and mtime, to the
/// second; counted).
fn split_up_to_date(dest: &Path, plan: &KeyPlan) -> (Vec<u32>, u64) {
    let mut fetch = Vec::new();
    let mut current = 0;
    for (index, entry) in plan.files.iter().enumerate() {
        let up_to_date = std::fs::symlink_metadata(dest.join(entry.relative()))
            .map(|meta| {
                meta.file_type().is_file()
                    && meta.len() == entry.size
                    && filetime::FileTime::from_last_modification_time(&meta).unix_seconds()
                        == entry.modified
            })
            .unwrap_or(false);
        if up_to_date {
            current += 1;
        } else {
            fetch.push(u32::try_from(index).expect("fewer than 2^32 objects in a bucket listing"));
        }
    }
    (fetch, current)
}

/// Deletes (or, with `delete` false, counts) the files below `dest` that are
/// not files of `plan`, then the emptied folders that are not its folders.
/// Returns the number of files.
fn remove_extra(dest: &Path, plan: &KeyPlan, delete: bool) -> Result<u64, MirrorError> {
    if !dest.exists() {
        return Ok(0);
    }
    let keep: HashSet<&str> = plan.files.iter().map(PlannedFile::relative).collect();
    let mut removed = 0;
    let mut emptied = Vec::new();
    for item in walkdir::WalkDir::new(dest)
        .min_depth(1)
        .contents_first(true)
    {
        let item = item.map_err(|e| {
            let path = e.path().unwrap_or(dest).to_path_buf();
            MirrorError::Io {
                action: "list",
                path,
                source: e.into(),
            }
        })?;
        let relative = item
            .path()
            .strip_prefix(dest)
            .expect("walkdir yields paths below its root")
            .to_string_lossy()
            .into_owned();
        if item.file_type().is_dir() {
            if !plan.is_folder(&relative) {
                emptied.push(item.into_path());
            }
        } else if !keep.contains(relative.as_str()) {
            removed += 1;
            if delete {
                std::fs::remove_file(item.path()).map_err(io_error("remove", item.path()))?;
            }
        }
    }
    if delete {
        // contents_first: children come before parents, so nested empty
        // folders go in one pass. A folder that still holds kept files stays.
        for folder in emptied {
            let _ = std::fs::remove_dir(&folder);
        }
    }
    Ok(removed)
}

/// The outcome of one object.
enum Fetched {
    Downloaded(u64),
    Vanished,
}

/// Shared state of the downloads.
struct Fetcher {
    store: object_store::aws::AmazonS3,
    endpoint: String,
    dest: PathBuf,
    /// Folders already checked to be real folders (not links) below dest.
    verified_folders: Mutex<HashSet<String>>,
    pace: ChunkPace,
    verify_md5: bool,
}

/// Deletes a `.partial` file when dropped, unless it was renamed into place.
struct PartialFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Why one download attempt did not produce a good file.
enum AttemptError {
    /// Worth another attempt.
    Retry(MirrorError),
    /// Not.
    Fatal(MirrorError),
    Vanished,
}

impl Fetcher {
    /// Creates `relative` (a folder below dest) and its parents, refusing to go
    /// through symbolic links, so that no key can write outside dest.
    async fn ensure_folder(&self, relative: &str) -> Result<(), MirrorError> {
        if relative.is_empty() {
            return Ok(());
        }
        let mut sofar = String::new();
        for segment in relative.split('/') {
            if !sofar.is_empty() {
                sofar.push('/');
            }
            sofar.push_str(segment);
            if self
                .verified_folders
                .lock()
                .expect("folder cache lock")
                .contains(&sofar)
            {
                continue;
            }
            let path = self.dest.join(&sofar);
            match tokio::fs::symlink_metadata(&path).await {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(MirrorError::SymlinkInDest { path });
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(MirrorError::Io {
                        action: "create folder",
                        path,
                        source: std::io::Error::other("a file is in the way"),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match tokio::fs::create_dir(&path).await {
                        Ok(()) => {}
                        // Another download created it meanwhile; check it again next time.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                        Err(e) => return Err(io_error("create folder", &path)(e)),
                    }
                }
                Err(e) => return Err(io_error("inspect", &path)(e)),
            }
            self.verified_folders
                .lock()
                .expect("folder cache lock")
                .insert(sofar.clone());
        }
        Ok(())
    }

    async fn fetch(&self, entry: &PlannedFile) -> Result<Fetched, MirrorError> {
        if let Some((parent, _)) = entry.relative().rsplit_once('/') {
            self.ensure_folder(parent).await?;
        }
        let target = self.dest.join(entry.relative());
        let mut partial = PartialFile {
            path: PathBuf::from(format!("{}{PARTIAL_SUFFIX}", target.display())),
            armed: false,
        };
        let mut attempt = 1;
        loop {
            match self.attempt(entry, &target, &mut partial).await {
                Ok(bytes) => return Ok(Fetched::Downloaded(bytes)),
                Err(AttemptError::Vanished) => return Ok(Fetched::Vanished),
                Err(AttemptError::Fatal(error)) => return Err(error),
                Err(AttemptError::Retry(error)) if attempt >= DOWNLOAD_ATTEMPTS => {
                    let mut error = error;
                    if let MirrorError::Integrity { attempts, .. } = &mut error {
                        *attempts = attempt;
                    }
                    return Err(error);
                }
                Err(AttemptError::Retry(error)) => {
                    tracing::warn!(
                        "{error}; retrying `{}` (attempt {} of {DOWNLOAD_ATTEMPTS})",
                        entry.key.escape_debug(),
                        attempt + 1
                    );
                    attempt += 1;
                }
            }
        }
    }

    /// One download of the whole object into `partial`, renamed to `target`
    /// when it checks out. Returns the bytes written.
    async fn attempt(
        &self,
        entry: &PlannedFile,
        target: &Path,
        partial: &mut PartialFile,
    ) -> Result<u64, AttemptError> {
        let file = fresh_partial(partial).await?;
        let (meta, written, md5) = self.download_into(entry, file, &partial.path).await?;
        self.check_download(entry, &meta, written, md5)?;
        let mtime = filetime::FileTime::from_unix_time(meta.last_modified.timestamp(), 0);
        filetime::set_file_times(&partial.path, mtime, mtime)
            .map_err(fatal_io("set the mtime of", &partial.path))?;
        tokio::fs::rename(&partial.path, target)
            .await
            .map_err(fatal_io("rename into place", target))?;
        partial.armed = false;
        Ok(written)
    }

    /// Streams the object's body into `file` (at `path`); returns what the
    /// server said of the object, the bytes written and their MD5.
    async fn download_into(
        &self,
        entry: &PlannedFile,
        mut file: tokio::fs::File,
        path: &Path,
    ) -> Result<(object_store::ObjectMeta, u64, md5::Md5), AttemptError> {
        let key = &entry.key;
        let download_error = |source: object_store::Error| match source {
            object_store::Error::NotFound { .. } => AttemptError::Vanished,
            source => AttemptError::Retry(MirrorError::Download {
                key: key.to_string(),
                endpoint: self.endpoint.clone(),
                source,
            }),
        };
        let result = open_object(&self.store, key)
            .await
            .map_err(download_error)?
            .ok_or(AttemptError::Vanished)?;
        let meta = result.meta.clone();
        let mut stream = result.into_stream();
        let mut md5 = Md5::new();
        let mut written: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(download_error)?;
            self.pace.take(chunk.len() as u64).await;
            file.write_all(&chunk)
                .await
                .map_err(fatal_io("write", path))?;
            md5.update(&chunk);
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(fatal_io("write", path))?;
        Ok((meta, written, md5))
    }

    /// The size, and the MD5 when the ETag is one, against what was written.
    fn check_download(
        &self,
        entry: &PlannedFile,
        meta: &object_store::ObjectMeta,
        written: u64,
        md5: md5::Md5,
    ) -> Result<(), AttemptError> {
        let integrity = |check, expected: String, got: String, hint| {
            AttemptError::Retry(MirrorError::Integrity {
                key: entry.key.to_string(),
                endpoint: self.endpoint.clone(),
                check,
                detail: format!("expected {expected}, got {got}"),
                attempts: 1,
                hint,
            })
        };
        if written != meta.size {
            return Err(integrity(
                "size",
                format!("{} bytes", meta.size),
                format!("{written} bytes"),
                "",
            ));
        }
        if self.verify_md5
            && let Some(mismatch) = etag_md5_mismatch(meta.e_tag.as_deref(), md5)
        {
            return Err(integrity(
                "md5",
                mismatch.expected,
                mismatch.got,
                "; if the bucket is encrypted (SSE-KMS/SSE-C) its ETags are not MD5s: set verify_md5: false",
            ));
        }
        Ok(())
    }
}

/// A local file error that no new attempt would cure.
fn fatal_io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> AttemptError {
    let path = path.to_path_buf();
    move |source| {
        AttemptError::Fatal(MirrorError::Io {
            action,
            path,
            source,
        })
    }
}

/// Creates `partial` afresh: a stale `.partial` (or anything planted there)
/// goes first; `create_new` then never follows a link.
async fn fresh_partial(partial: &mut PartialFile) -> Result<tokio::fs::File, AttemptError> {
    match tokio::fs::remove_file(&partial.path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fatal_io("remove", &partial.path)(e)),
    }
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial.path)
        .await
        .map_err(fatal_io("create", &partial.path))?;
    partial.armed = true;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> MirrorOptions {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_and_unknown_options() {
        let o = options(serde_json::json!({"source": "minio/thehive", "dest": "/tmp/x"}));
        assert_eq!(o.concurrency, 8);
        assert!(!o.remove && o.verify_md5);
        assert!(matches!(McliMirror::dry_run(&o), DryRun::Run));
        assert_eq!(
            McliMirror::describe(&o),
            "mirror minio/thehive into /tmp/x (8 at a time)"
        );
        let e = serde_json::from_value::<MirrorOptions>(
            serde_json::json!({"source": "a/b", "dest": "/x", "concurency": 2}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `concurency`"), "{e}");
    }

    #[test]
    fn secret_key_is_not_in_debug_output() {
        let o = options(serde_json::json!({
            "source": "thehive", "dest": "/x", "endpoint": "http://127.0.0.1:9000",
            "access_key": "AK", "secret_key": "VERYSECRET"
        }));
        assert!(!format!("{o:?}").contains("VERYSECRET"));
    }
}
