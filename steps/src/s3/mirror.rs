//! `mcli_mirror`: mirrors an S3/MinIO bucket (or a prefix of it) into a local
//! folder, like `mcli mirror ALIAS/BUCKET DEST`, natively.
//!
//! Listing is [`listing`](super::listing)'s (shared with `s3_upload`).
//! Downloads go through object_store, which retries and resumes (by range, with
//! the ETag pinned) a body whose connection drops.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use md5::{Digest, Md5};
use object_store::{GetOptions, ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::progress::Progress;
use crate::runtime::secret::Secret;
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::s3::alias::{
    AliasError, EnvLookup, S3Endpoint, S3Location, TargetOptions, process_env,
    transfer_client_options,
};
use crate::s3::listing::{LIST_CONNECT_TIMEOUT, LIST_PAGE_TIMEOUT, ListedObject, list_objects};

/// Refused keys listed in the result (all of them are counted and logged).
const REFUSED_KEYS_SHOWN: usize = 100;
/// Whole-object attempts when a download fails midway or does not check out
/// (object_store already resumes dropped connections inside each attempt).
const DOWNLOAD_ATTEMPTS: u32 = 3;
/// Longest file name most Linux file systems accept, in bytes.
const NAME_MAX: usize = 255;
/// Suffix of files being downloaded.
const PARTIAL_SUFFIX: &str = ".partial";

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
    /// A MinIO-client configuration folder searched first for the alias.
    #[serde(default)]
    pub config_dir: Option<PathBuf>,
    /// `http(s)://host[:port]` instead of an alias.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Access key for `endpoint`.
    #[serde(default)]
    pub access_key: Option<String>,
    /// Secret key for `endpoint`.
    #[serde(default)]
    pub secret_key: Option<Secret>,
    /// Signing region (default: from an AWS host name, else us-east-1).
    #[serde(default)]
    pub region: Option<String>,
    /// Check each file's MD5 against a single-part ETag.
    #[serde(default = "default_true")]
    pub verify_md5: bool,
    /// A PEM file of certificate authorities to trust (private CA on the endpoint).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

fn default_concurrency() -> usize {
    8
}

fn default_true() -> bool {
    true
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
            options
                .endpoint
                .as_deref()
                .map(|e| format!("{e} "))
                .unwrap_or_default(),
            options.source,
            options.dest.display(),
            options.concurrency.max(1)
        );
        if options.remove {
            line.push_str(", removing local files absent from the bucket");
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
    let resolved = resolve(&options, env);
    async move {
        let (endpoint, location) = resolved?;
        run_mirror(options, endpoint, location, ctx).await
    }
}

fn resolve(
    options: &MirrorOptions,
    env: EnvLookup<'_>,
) -> Result<(S3Endpoint, S3Location), AliasError> {
    TargetOptions {
        option: "source",
        location: &options.source,
        endpoint: options.endpoint.as_deref(),
        access_key: options.access_key.as_deref(),
        secret_key: options.secret_key.as_ref(),
        config_dir: options.config_dir.as_deref(),
        region: options.region.as_deref(),
        ca_cert: options.ca_cert.as_deref(),
    }
    .resolve(env)
}

/// An object with the local path it mirrors to.
#[derive(Clone, Debug)]
struct MirrorEntry {
    object: ListedObject,
    /// Relative to `dest`, `/`-separated.
    relative: String,
}

/// What a key maps to.
#[derive(Debug, PartialEq, Eq)]
enum KeyMapping {
    /// A file at this path relative to dest.
    File(String),
    /// A folder marker (`dir/`, empty): this folder relative to dest ("" = dest).
    Folder(String),
    /// Refused, with the reason.
    Refused(&'static str),
}

/// Maps `key` (under `prefix`) to a path below dest, or says why not.
fn map_key(key: &str, prefix: &str, size: u64) -> KeyMapping {
    let Some(relative) = key.strip_prefix(prefix) else {
        return KeyMapping::Refused("outside the listed prefix");
    };
    if key.contains('\0') {
        return KeyMapping::Refused("NUL byte in key");
    }
    if relative.starts_with('/') {
        return KeyMapping::Refused("leading `/`");
    }
    if key.chars().any(|c| c.is_control()) {
        return KeyMapping::Refused("control character in key");
    }
    let (path, folder) = match relative.strip_suffix('/') {
        Some(path) => (path, true),
        None => (relative, false),
    };
    if folder && size > 0 {
        return KeyMapping::Refused("object name ends with `/` but has content");
    }
    if path.is_empty() {
        return KeyMapping::Folder(String::new());
    }
    for segment in path.split('/') {
        match segment {
            "" => return KeyMapping::Refused("empty path segment (`//`)"),
            "." => return KeyMapping::Refused("`.` path segment"),
            ".." => return KeyMapping::Refused("`..` path segment"),
            s if s.len() > NAME_MAX => return KeyMapping::Refused("name longer than 255 bytes"),
            _ => {}
        }
    }
    if !folder {
        // The download addresses the object through an object_store path; make
        // sure it names exactly this key.
        match object_store::path::Path::parse(key) {
            Ok(parsed) if parsed.as_ref() == key => {}
            _ => return KeyMapping::Refused("not addressable as an object path"),
        }
    }
    if folder {
        KeyMapping::Folder(path.to_string())
    } else {
        KeyMapping::File(path.to_string())
    }
}

/// The result of mapping a listing onto dest.
#[derive(Debug, Default)]
struct MirrorPlan {
    files: Vec<MirrorEntry>,
    /// Every folder that must exist (relative, including parents of files).
    folders: BTreeSet<String>,
    refused: Vec<(String, &'static str)>,
}

fn plan_mirror(listing: Vec<ListedObject>, prefix: &str) -> MirrorPlan {
    let mut plan = MirrorPlan::default();
    let mut candidates = Vec::new();
    for object in listing {
        if !object.utf8 {
            plan.refused.push((object.key, "key is not valid UTF-8"));
            continue;
        }
        match map_key(&object.key, prefix, object.size) {
            KeyMapping::File(relative) => candidates.push(MirrorEntry { object, relative }),
            KeyMapping::Folder(relative) => {
                if !relative.is_empty() {
                    plan.folders.insert(relative);
                }
            }
            KeyMapping::Refused(reason) => plan.refused.push((object.key, reason)),
        }
    }
    for entry in &candidates {
        let mut parent = entry.relative.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            plan.folders.insert(up.to_string());
            parent = up;
        }
    }
    let files: HashSet<&str> = candidates.iter().map(|e| e.relative.as_str()).collect();
    let mut accepted = Vec::with_capacity(candidates.len());
    for entry in &candidates {
        let clash = if plan.folders.contains(&entry.relative) {
            Some("also a folder prefix of other keys")
        } else if entry
            .relative
            .strip_suffix(PARTIAL_SUFFIX)
            .is_some_and(|stem| files.contains(stem))
        {
            Some("clashes with the temporary file of another key")
        } else {
            None
        };
        match clash {
            Some(reason) => plan.refused.push((entry.object.key.clone(), reason)),
            None => accepted.push(entry.clone()),
        }
    }
    plan.files = accepted;
    plan
}

async fn run_mirror(
    options: MirrorOptions,
    endpoint: S3Endpoint,
    location: S3Location,
    ctx: StepContext,
) -> Result<MirrorOutput, StepError> {
    let started = Instant::now();
    let http = endpoint.request_client(LIST_CONNECT_TIMEOUT, LIST_PAGE_TIMEOUT)?;
    let listing = tokio::select! {
        listing = list_objects(&http, &endpoint, &location) => listing?,
        _ = ctx.cancel.cancelled() => return Err(StepError::cancelled()),
    };
    let plan = plan_mirror(listing, &location.prefix);

    let mut output = MirrorOutput {
        objects: plan.files.len() as u64,
        bytes: plan.files.iter().map(|e| e.object.size).sum(),
        refused: plan.refused.len() as u64,
        ..MirrorOutput::default()
    };
    for (key, reason) in &plan.refused {
        let shown = key.escape_debug().to_string();
        tracing::warn!(
            "{}: refusing key `{shown}` in bucket `{}`: {reason}",
            ctx.label,
            location.bucket
        );
        if output.refused_keys.len() < REFUSED_KEYS_SHOWN {
            output.refused_keys.push(shown);
        }
    }

    let dest = options.dest.clone();
    let files = plan.files;
    let (to_fetch, skipped) = tokio::task::spawn_blocking(move || split_up_to_date(&dest, files))
        .await
        .expect("up-to-date check panicked");
    output.skipped = skipped.len() as u64;
    let mut keep: HashSet<String> = skipped.into_iter().collect();
    keep.extend(to_fetch.iter().map(|e| e.relative.clone()));

    // Removal comes first: it also clears a stale file standing where the
    // bucket now has a folder (or the reverse), and leftover `.partial` files.
    if options.remove {
        let dest = options.dest.clone();
        let folders = plan.folders.clone();
        let delete = !ctx.dry_run;
        output.removed =
            tokio::task::spawn_blocking(move || remove_extra(&dest, &keep, &folders, delete))
                .await
                .expect("removal panicked")?;
    }
    if ctx.dry_run {
        output.downloaded = to_fetch.len() as u64;
        output.downloaded_bytes = to_fetch.iter().map(|e| e.object.size).sum();
        output.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(output);
    }

    tokio::fs::create_dir_all(&options.dest)
        .await
        .map_err(io_error("create", &options.dest))?;
    let store = endpoint.object_store(
        &location.bucket,
        transfer_client_options(),
        RetryConfig::default(),
    )?;
    let fetcher = Arc::new(Fetcher {
        store,
        endpoint: endpoint.describe(),
        dest: options.dest.clone(),
        verified_folders: Mutex::new(HashSet::new()),
        progress: Progress::new(
            ctx.progress,
            &ctx.label,
            to_fetch.iter().map(|e| e.object.size).sum(),
        ),
        verify_md5: options.verify_md5,
    });
    for folder in &plan.folders {
        fetcher.ensure_folder(folder).await?;
    }
    let mut downloads = futures::stream::iter(to_fetch.into_iter().map(|entry| {
        let fetcher = Arc::clone(&fetcher);
        async move {
            let outcome = fetcher.fetch(&entry).await;
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
                tracing::warn!(
                    "{}: `{}` was deleted from bucket `{}` after the listing; not mirrored",
                    ctx.label,
                    entry.object.key.escape_debug(),
                    location.bucket
                );
                output.vanished += 1;
                // An older copy from a previous run is no longer in the bucket either.
                let stale = options.dest.join(&entry.relative);
                if options.remove && tokio::fs::symlink_metadata(&stale).await.is_ok() {
                    tokio::fs::remove_file(&stale)
                        .await
                        .map_err(io_error("remove", &stale))?;
                    output.removed += 1;
                }
            }
        }
    }
    drop(downloads);
    fetcher.progress.finish();
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

/// Splits entries into those to download and the relative paths already up to
/// date (a regular file with the same size and mtime, to the second).
fn split_up_to_date(dest: &Path, files: Vec<MirrorEntry>) -> (Vec<MirrorEntry>, Vec<String>) {
    let mut fetch = Vec::new();
    let mut current = Vec::new();
    for entry in files {
        let up_to_date = std::fs::symlink_metadata(dest.join(&entry.relative))
            .map(|meta| {
                meta.file_type().is_file()
                    && meta.len() == entry.object.size
                    && filetime::FileTime::from_last_modification_time(&meta).unix_seconds()
                        == entry.object.modified
            })
            .unwrap_or(false);
        if up_to_date {
            current.push(entry.relative);
        } else {
            fetch.push(entry);
        }
    }
    (fetch, current)
}

/// Deletes (or, with `delete` false, counts) the files below `dest` that are not
/// in `keep`, then the emptied folders that are not in `folders`. Returns the
/// number of files.
fn remove_extra(
    dest: &Path,
    keep: &HashSet<String>,
    folders: &BTreeSet<String>,
    delete: bool,
) -> Result<u64, MirrorError> {
    if !dest.exists() {
        return Ok(0);
    }
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
            if !folders.contains(&relative) {
                emptied.push(item.into_path());
            }
        } else if !keep.contains(&relative) {
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
    progress: Progress,
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

    async fn fetch(&self, entry: &MirrorEntry) -> Result<Fetched, MirrorError> {
        if let Some((parent, _)) = entry.relative.rsplit_once('/') {
            self.ensure_folder(parent).await?;
        }
        let target = self.dest.join(&entry.relative);
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
                        entry.object.key.escape_debug(),
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
        entry: &MirrorEntry,
        target: &Path,
        partial: &mut PartialFile,
    ) -> Result<u64, AttemptError> {
        let key = &entry.object.key;
        let download_error = |source: object_store::Error| match source {
            object_store::Error::NotFound { .. } => AttemptError::Vanished,
            source => AttemptError::Retry(MirrorError::Download {
                key: key.clone(),
                endpoint: self.endpoint.clone(),
                source,
            }),
        };
        let fatal_io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| {
                AttemptError::Fatal(MirrorError::Io {
                    action,
                    path,
                    source,
                })
            }
        };
        // A stale `.partial` (or anything planted there) goes first; create_new
        // then never follows a link.
        match tokio::fs::remove_file(&partial.path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fatal_io("remove", &partial.path)(e)),
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial.path)
            .await
            .map_err(fatal_io("create", &partial.path))?;
        partial.armed = true;

        let location = object_store::path::Path::parse(key)
            .expect("map_key only accepts keys that are object paths");
        let result = self
            .store
            .get_opts(&location, GetOptions::default())
            .await
            .map_err(download_error)?;
        let meta = result.meta.clone();
        let mut stream = result.into_stream();
        let mut md5 = Md5::new();
        let mut written: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(download_error)?;
            file.write_all(&chunk)
                .await
                .map_err(fatal_io("write", &partial.path))?;
            md5.update(&chunk);
            written += chunk.len() as u64;
            self.progress.inc(chunk.len() as u64);
        }
        file.flush()
            .await
            .map_err(fatal_io("write", &partial.path))?;
        drop(file);

        let integrity = |check, expected: String, got: String, hint| {
            AttemptError::Retry(MirrorError::Integrity {
                key: key.clone(),
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
            && let Some(expected) = meta.e_tag.as_deref().and_then(single_part_md5)
        {
            let got = hex::encode(md5.finalize());
            if got != expected {
                return Err(integrity(
                    "md5",
                    expected,
                    got,
                    "; if the bucket is encrypted (SSE-KMS/SSE-C) its ETags are not MD5s: set verify_md5: false",
                ));
            }
        }
        let mtime = filetime::FileTime::from_unix_time(meta.last_modified.timestamp(), 0);
        filetime::set_file_times(&partial.path, mtime, mtime)
            .map_err(fatal_io("set the mtime of", &partial.path))?;
        tokio::fs::rename(&partial.path, target)
            .await
            .map_err(fatal_io("rename into place", target))?;
        partial.armed = false;
        Ok(written)
    }
}

/// The MD5 in a single-part ETag (`"<32 hex digits>"`), lower case; `None` for
/// multipart ETags (`"<hex>-<parts>"`) and anything else.
fn single_part_md5(etag: &str) -> Option<String> {
    let etag = etag.trim().trim_start_matches("W/").trim_matches('"');
    (etag.len() == 32 && etag.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| etag.to_ascii_lowercase())
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

    #[test]
    fn keys_map_safely_or_are_refused() {
        use KeyMapping::*;
        assert_eq!(map_key("a/b/c.bin", "", 3), File("a/b/c.bin".into()));
        assert_eq!(map_key("files/a/b", "files/", 3), File("a/b".into()));
        assert_eq!(map_key("a/", "", 0), Folder("a".into()));
        assert_eq!(map_key("files/", "files/", 0), Folder(String::new()));
        assert_eq!(
            map_key("a/../../etc/passwd", "", 1),
            Refused("`..` path segment")
        );
        assert_eq!(map_key("..", "", 1), Refused("`..` path segment"));
        assert_eq!(map_key("a/./b", "", 1), Refused("`.` path segment"));
        assert_eq!(map_key("/etc/passwd", "", 1), Refused("leading `/`"));
        assert_eq!(map_key("files//x", "files/", 1), Refused("leading `/`"));
        assert_eq!(map_key("a//b", "", 1), Refused("empty path segment (`//`)"));
        assert_eq!(map_key("a\0b", "", 1), Refused("NUL byte in key"));
        assert_eq!(map_key("a\nb", "", 1), Refused("control character in key"));
        assert_eq!(
            map_key("a/", "", 4),
            Refused("object name ends with `/` but has content")
        );
        let long = "x".repeat(256);
        assert_eq!(map_key(&long, "", 1), Refused("name longer than 255 bytes"));
        // Names that merely contain dots are fine.
        assert_eq!(map_key("a/..b/c..", "", 1), File("a/..b/c..".into()));
    }

    #[test]
    fn plan_refuses_files_that_are_also_folders() {
        let object = |key: &str| ListedObject {
            key: key.into(),
            utf8: true,
            size: 1,
            modified: 0,
        };
        let plan = plan_mirror(
            vec![
                object("a"),
                object("a/b"),
                object("c"),
                object("c.partial"),
                object("../x"),
            ],
            "",
        );
        let files: Vec<&str> = plan.files.iter().map(|e| e.relative.as_str()).collect();
        assert_eq!(files, ["a/b", "c"]);
        let refused: Vec<&str> = plan.refused.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(refused, ["../x", "a", "c.partial"]);
        assert!(plan.folders.contains("a"));
    }

    #[test]
    fn etags() {
        assert_eq!(
            single_part_md5("\"9B2CF535F27731C974343645A3985328\"").as_deref(),
            Some("9b2cf535f27731c974343645a3985328")
        );
        assert_eq!(
            single_part_md5("\"9b2cf535f27731c974343645a3985328-2\""),
            None
        );
        assert_eq!(single_part_md5("\"abc\""), None);
    }
}
