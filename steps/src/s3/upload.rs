//! `s3_upload`: uploads local files to `ALIAS/BUCKET/PREFIX`, like `mcli cp
//! FILE... ALIAS/BUCKET/PREFIX/`, natively; the off-site copy of a backup set.
//!
//! The alias is resolved and the S3 client built by [`crate::s3::alias`], and
//! the bucket is listed by `mcli_mirror`'s listing, so both steps find the same
//! endpoints and fail with the same messages. Uploads go through object_store
//! (single PUT up to `part_size`, multipart above it), with the
//! `x-amz-checksum-sha256` header on every request so that a server supporting
//! it refuses a body damaged in transit. Each object is then read back with a
//! HEAD request (`x-amz-checksum-mode: ENABLED`) and compared with the local
//! file: the SHA-256 checksum the server computed where it keeps one,
//! otherwise the ETag (the MD5, or the multipart ETag computed locally with
//! the same part size). A file already there is skipped on its listed size
//! and single-part ETag (its MD5) without a HEAD; see [`plan_one`].
//!
//! Memory stays bounded: a part is read only once one of `concurrency` upload
//! slots is free, so at most `concurrency` parts are held at once.

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use futures::StreamExt;
use md5::Md5;
use object_store::aws::{AmazonS3, Checksum};
use object_store::{
    Attribute, Attributes, MultipartUpload, ObjectStore, PutMultipartOptions, PutOptions,
    PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::progress::Progress;
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::runtime::throttle::{MaxRate, Throttle};
use crate::s3::alias::{
    AliasError, EnvLookup, S3Endpoint, S3Location, process_env, transfer_client_options,
};
use crate::s3::connection::S3Connection;
use crate::s3::listing::list_objects;

const MIB: u64 = 1024 * 1024;
/// The smallest part S3 accepts (every part but the last).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// The largest part S3 accepts.
const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// The most parts a multipart upload may have.
const MAX_PARTS: u64 = 10_000;
/// User metadata recording the part size of a multipart upload, so that a
/// later run computes the same multipart ETag even if `part_size` changed.
const PART_SIZE_METADATA: &str = "runbook-part-size";
/// How long a HEAD request may take to connect, and in all.
const HEAD_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take when there is no file to upload (a check).
const CHECK_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long aborting an interrupted multipart upload may take.
const ABORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Files whose check or upload futures exist at once. A future holds its
/// whole state (a HEAD request, a PUT) from the moment it is built, a few
/// KiB each: built for all 10,000 files of a bucket at once they held
/// 60-90 MiB (seen in a restore into a bucket), built a window at a time
/// they hold a fixed amount whatever the number of files.
const FILES_IN_FLIGHT_WINDOW: usize = 256;

/// The `s3_upload` step.
pub struct S3Upload;

/// Options of `s3_upload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadOptions {
    /// The files to upload, started in this order.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// One file to upload (instead of, or before, `files`).
    #[serde(default)]
    pub src: Option<PathBuf>,
    /// Files uploaded only once every other file is uploaded and checked
    /// (the set manifest: its presence off-site means the set is complete).
    #[serde(default)]
    pub last: Vec<PathBuf>,
    /// `ALIAS/BUCKET[/PREFIX]`, or `BUCKET[/PREFIX]` with `endpoint`.
    pub dest: String,
    /// Every file below this folder, each as PREFIX/<its path below it>.
    #[serde(default)]
    pub folder: Option<PathBuf>,
    /// Delete the objects under PREFIX that are not among the files uploaded
    /// (only with `folder`): the prefix then holds exactly the folder.
    #[serde(default)]
    pub remove: bool,
    /// Parts (or whole small files) uploading at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Files larger than this go up in parts of this size, in bytes.
    #[serde(default = "default_part_size")]
    pub part_size: u64,
    /// Send the `x-amz-checksum-sha256` header (off for servers that refuse it).
    #[serde(default = "default_true")]
    pub checksum: bool,
    /// List every file in the result's `objects` (off for a whole folder
    /// whose list nobody reads: 40,000 objects held 200 MiB as the result,
    /// its script value and its journal copy).
    #[serde(default = "default_true")]
    pub report_objects: bool,
    /// The most bytes per second to upload (shared with every step given
    /// the same rate).
    #[serde(default)]
    pub max_rate: MaxRate,
    /// Endpoint, keys, config folder, region, CA.
    #[serde(flatten)]
    pub connection: S3Connection,
}

fn default_concurrency() -> usize {
    4
}

fn default_part_size() -> u64 {
    64 * MIB
}

fn default_true() -> bool {
    true
}

impl UploadOptions {
    /// Every file in upload order, each with whether it is one of `last`.
    fn sources(&self) -> impl Iterator<Item = (&PathBuf, bool)> {
        self.src
            .iter()
            .chain(&self.files)
            .map(|p| (p, false))
            .chain(self.last.iter().map(|p| (p, true)))
    }
}

/// Result of `s3_upload`.
#[derive(Debug, Default, Serialize)]
pub struct UploadOutput {
    /// Files uploaded by this run (under dry-run: that would be).
    pub uploaded: u64,
    /// Files already present with the same size and checksum.
    pub skipped: u64,
    /// Bytes uploaded by this run (under dry-run: that would be).
    pub bytes: u64,
    /// Every file, in the order given (empty with `report_objects: false`).
    pub objects: Vec<UploadedObject>,
    /// Wall time.
    pub duration_ms: u64,
    /// Objects already under the destination prefix (the listing every run makes).
    pub listed_objects: u64,
    /// Their total size: with no file to upload, what the destination holds
    /// (a pre-flight uses it to estimate a mirror's size).
    pub listed_bytes: u64,
    /// Objects deleted because they are not in `folder` (`remove`; under
    /// dry-run: that would be).
    pub removed: u64,
}

/// One file of [`UploadOutput`].
#[derive(Clone, Debug, Serialize)]
pub struct UploadedObject {
    /// The object key.
    pub key: String,
    /// The local file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256 (hex); `None` under dry-run for a file that was not read.
    pub sha256: Option<String>,
    /// True when the object was already there.
    pub skipped: bool,
    /// What matched the local file: `sha256` (the server's checksum), `etag`
    /// (MD5 or multipart ETag, the listing's or a HEAD's) or `size` (the
    /// server gave neither); empty under dry-run.
    pub check: &'static str,
}

/// Why `s3_upload` failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// `part_size` out of S3's bounds.
    #[error("part_size {part_size} is out of range: S3 takes parts of 5 MiB (5242880) to 5 GiB")]
    PartSize {
        /// The value given.
        part_size: u64,
    },
    /// A path to upload is not a regular file.
    #[error("{} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A file name cannot become an object key.
    #[error("{} cannot be uploaded: its key `{key}` {reason}", path.display())]
    InvalidKey {
        /// The file.
        path: PathBuf,
        /// The key it would get.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The destination prefix cannot begin an object key (`..`, `a//b`, a
    /// control character): refused before anything is uploaded, also when
    /// there is no file (the pre-flight check).
    #[error("the prefix `{prefix}` of `{dest}` is not a valid object path: {reason}")]
    InvalidPrefix {
        /// `dest` as given.
        dest: String,
        /// The prefix.
        prefix: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Two files would get the same key.
    #[error("{} and {} would both be uploaded as `{key}`", first.display(), second.display())]
    DuplicateKey {
        /// The key.
        key: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// A local file operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done, e.g. "read".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file changed size while it was being read.
    #[error("{} changed while it was being uploaded ({detail}); nothing was left under `{key}`", path.display())]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What changed.
        detail: String,
    },
    /// An upload request failed.
    #[error("uploading {} to `{key}` in bucket `{bucket}` on {endpoint} failed", path.display())]
    Upload {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The alias and URL.
        endpoint: String,
        /// object_store's error (boxed: it is large).
        source: Box<object_store::Error>,
    },
    /// A HEAD request could not be sent.
    #[error("checking `{key}` in bucket `{bucket}` on {endpoint} failed")]
    HeadConnection {
        /// The key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The alias and URL.
        endpoint: String,
        /// The connection error.
        source: reqwest::Error,
    },
    /// A HEAD request got an error answer.
    #[error("checking `{key}` in bucket `{bucket}` on {endpoint} failed: HTTP {status}")]
    HeadStatus {
        /// The key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The alias and URL.
        endpoint: String,
        /// The HTTP status.
        status: u16,
    },
    /// The object read back does not match the file.
    #[error("{object} does not match {} after the upload: {check} {detail}{}", path.display(), integrity_hint(check))]
    Integrity {
        /// The file.
        path: PathBuf,
        /// The object: `` `key` in bucket `b` on alias `a` (url) ``.
        object: String,
        /// `size`, `sha256` or `etag`.
        check: &'static str,
        /// `expected X, got Y`.
        detail: String,
    },
    /// Signing a request failed.
    #[error(transparent)]
    Alias(#[from] AliasError),
    /// `remove` without `folder`: what the prefix should hold is not known.
    #[error("`remove` needs `folder`: only a whole folder says which objects of `{dest}` must go")]
    RemoveWithoutFolder {
        /// `dest` as given.
        dest: String,
    },
    /// A DELETE request failed.
    #[error("deleting `{key}` from bucket `{bucket}` on {endpoint} failed: {detail}")]
    Delete {
        /// The key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The alias and URL.
        endpoint: String,
        /// The HTTP status or the connection error.
        detail: String,
    },
    /// The final listing does not show an object as uploaded.
    #[error("final listing of bucket `{bucket}` on {endpoint}: `{key}` {detail}")]
    NotListed {
        /// The key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The alias and URL.
        endpoint: String,
        /// `is missing` or `has N bytes, expected M`.
        detail: String,
    },
}

/// Advice for an integrity failure of kind `check`.
fn integrity_hint(check: &str) -> &'static str {
    if check == "etag" {
        "; if the bucket is encrypted (SSE-KMS/SSE-C) its ETags are not MD5s, and only \
         `checksum: true` on a server that keeps SHA-256 checksums can check the upload"
    } else {
        ""
    }
}

impl StepFailure for UploadError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            UploadError::PartSize { .. }
            | UploadError::InvalidKey { .. }
            | UploadError::InvalidPrefix { .. }
            | UploadError::DuplicateKey { .. }
            | UploadError::RemoveWithoutFolder { .. } => ErrorKind::Options,
            UploadError::Alias(e) => e.error_kind(),
            UploadError::NotAFile { .. } | UploadError::Io { .. } => ErrorKind::Io,
            UploadError::FileChanged { .. } => ErrorKind::Changed,
            UploadError::Upload { .. } => ErrorKind::Upload,
            UploadError::HeadConnection { .. } => ErrorKind::Unreachable,
            UploadError::HeadStatus { .. } | UploadError::Delete { .. } => ErrorKind::S3,
            UploadError::Integrity { .. } | UploadError::NotListed { .. } => ErrorKind::Integrity,
        }
    }
}

impl Step for S3Upload {
    const NAME: &'static str = "s3_upload";
    const DOC: &'static str = "\
Uploads files to an S3/MinIO bucket, like `mcli cp FILE... ALIAS/BUCKET/PREFIX/`.

Each file becomes the object PREFIX/<file name>. The alias is found as for
mcli_mirror: MC_HOST_<ALIAS>, else config.json in `config_dir`, $MC_CONFIG_DIR,
~/.mcli/ or ~/.mc/; or give `endpoint`, `access_key` and `secret_key`, and `dest`
is then BUCKET[/PREFIX].

First the prefix is listed: an unreachable endpoint, rejected credentials or a
missing bucket fail at once, naming the alias and endpoint. With no file this is
a check of the destination (2 s connect timeout) that also reports what it holds
(`listed_objects`, `listed_bytes`); a prefix that cannot begin an object key
(`..`, an empty segment, a control character) is refused even then. A file whose object
is already there with the same size and content is skipped, so a run that was
interrupted (or a retry) only uploads what is missing. A skip compares the file's
size with the listed size, then, where the listing shows a single-part ETag (32
hex digits), the file's MD5 with it, with no other request; else (a multipart
ETag, none, or one that is not the file's MD5, as an SSE-KMS/SSE-C object has)
a HEAD request gives the server's SHA-256 checksum where it keeps one, otherwise
the ETag (multipart: computed locally). The MD5 finds any accidental difference
as surely as the SHA-256; it is no proof against a file made on purpose to have
the object's MD5 (whoever can write the bucket can replace the object anyway).
Files up to `part_size`
go up in one request, larger ones in parts of `part_size` (multipart upload).
Every request carries the SHA-256 checksum header (x-amz-checksum-sha256), which
servers supporting it check; then every object is read back and compared with
the file: the SHA-256 checksum the server computed where it keeps one, otherwise
the ETag (the MD5, or the multipart ETag computed locally). A final listing
checks that every object is there with the right size. `last` files start only
once all the others are uploaded and checked: pass the set manifest there, so
that its presence off-site means the set is complete.

Files are streamed: at most `concurrency` parts are in memory at once (about
concurrency x part_size bytes). When interrupted (or at the timeout), unfinished
multipart uploads are aborted, so no partial object or orphaned part is left;
those of a run that was killed are aborted by the next run before it uploads
the same key. A file that changes size while it is read fails the step.

The credentials need s3:ListBucket, s3:PutObject, s3:GetObject (for the checks)
and s3:AbortMultipartUpload; with s3:ListBucketMultipartUploads too, leftovers of
killed runs are found (without it, a warning).

With no file at all, only the listing runs: a pre-flight check that the
destination answers, to run before a long backup.

With `folder`, every file below it is uploaded as PREFIX/<its path below the
folder> (`7f/report.txt` -> PREFIX/7f/report.txt; a symlink or other non-file
fails the step before anything is uploaded). With `remove` too, the objects
under PREFIX that are none of those files are deleted once every file is
uploaded and checked, and a last listing checks that the prefix holds exactly
the folder: like `mcli mirror --overwrite --remove FOLDER ALIAS/BUCKET`. An
empty folder with `remove` empties the prefix.

Under --dry-run the prefix is listed for real (checking the alias and bucket),
files already present are read to compare their checksums, and the result lists
what would be uploaded and skipped; nothing is uploaded.

Options:
  files       array   files to upload, started in this order (default: none; with
                      no file at all, only the destination is checked)
  src         string  one file to upload, before `files` (default: none)
  last        array   files uploaded after all the others are uploaded and checked
                      (default: none)
  dest        string  ALIAS/BUCKET[/PREFIX] (BUCKET[/PREFIX] with `endpoint`) (required)
  folder      string  upload every file below this folder, keys = paths below it
                      (default: none)
  remove      bool    with folder: delete the objects under PREFIX that are not in
                      it (default false)
  concurrency int     parts or small files uploading at once (default 4)
  part_size   int     multipart above this size, in parts of this size, in bytes;
                      5 MiB to 5 GiB, raised for files over 10,000 parts (default 67108864)
  checksum    bool    send x-amz-checksum-sha256; turn off for a server that refuses
                      it (default true)
  report_objects bool list every file in the result's `objects` (default true; false
                      for a large folder whose list is not read: `objects` is empty)
  config_dir  string  MinIO-client config folder searched first (default: none)
  endpoint    string  http(s)://host[:port] instead of an alias (default: none)
  access_key  string  access key for `endpoint` (default: anonymous)
  secret_key  string  secret key for `endpoint`; use secret() (default: anonymous)
  region      string  signing region (default: from an AWS host name, else us-east-1)
  ca_cert     string  PEM file of a private certificate authority to trust, besides the
                      system's and those in certs/CAs/ of the MinIO-client config
                      folders (default: none)
  max_rate    string  most bytes per second uploaded, e.g. \"200MiB/s\"; steps given the
                      same rate share it (default \"\": no limit)

Result:
  uploaded     int     files uploaded by this run
  skipped      int     files already present with the same size and checksum
  bytes        int     bytes uploaded by this run
  objects      array   per file, in the order given: #{ key, path, bytes, sha256,
                       skipped, check } (check: \"sha256\", \"etag\" or \"size\", what
                       matched; sha256 is () under dry-run for a file not read);
                       empty with report_objects: false
  duration_ms  int     wall time
  listed_objects, listed_bytes  int  objects under the prefix before the upload, and
                       their total size (with no file: a check of the destination
                       that also says how much it holds)
  removed      int     objects deleted (remove: true)

Example:
  let copy = s3_upload(#{ files: [archive.path, `${archive.path}.sha256`],
                          last: [manifest], dest: \"offsite/thehive-backups\",
                          timeout: \"12h\", retries: 2 });
  log_info(`off-site: ${copy.uploaded} uploaded, ${copy.skipped} already there`);
  s3_upload(#{ folder: extracted, dest: \"th_minio/thehive\", remove: true });
";

    // A timeout is turned into an interruption, so multipart uploads are aborted.
    const HANDLES_TIMEOUT: bool = true;

    type Options = UploadOptions;
    type Output = UploadOutput;

    fn describe(options: &UploadOptions) -> String {
        let count = options.sources().count();
        if count == 0 {
            return format!("check that {} answers (no file to upload)", options.dest);
        }
        let mut line = format!(
            "upload {count} file{} to {}{} ({} at a time, parts of {}",
            if count == 1 { "" } else { "s" },
            options.connection.endpoint_prefix(),
            options.dest,
            options.concurrency.max(1),
            if options.part_size.is_multiple_of(MIB) {
                format!("{} MiB", options.part_size / MIB)
            } else {
                format!("{} bytes", options.part_size)
            }
        );
        if !options.last.is_empty() {
            line.push_str(&format!(", {} last", options.last.len()));
        }
        if options.max_rate.limit().is_some() {
            line.push_str(&format!(", at most {}", options.max_rate.describe()));
        }
        line.push(')');
        line
    }

    fn label(options: &UploadOptions) -> Option<String> {
        Some(format!("upload to {}", options.dest))
    }

    fn dry_run(_options: &UploadOptions) -> DryRun<UploadOutput> {
        // The listing and the checksum comparison only read; `run` uploads
        // nothing when ctx.dry_run is set.
        DryRun::Run
    }

    fn changes(options: &UploadOptions) -> bool {
        // Without files it only lists the destination (a pre-flight check).
        options.sources().next().is_some() || options.folder.is_some()
    }

    fn run(
        options: UploadOptions,
        ctx: StepContext,
    ) -> impl Future<Output = Result<UploadOutput, StepError>> + Send {
        upload_with_env(options, ctx, &process_env)
    }
}

/// Runs the upload, reading `MC_HOST_*`, `MC_CONFIG_DIR` and `HOME` through
/// `env` (tests pass their own; the step passes the process environment).
/// The environment is read before the returned future first runs.
pub fn upload_with_env(
    options: UploadOptions,
    ctx: StepContext,
    env: EnvLookup<'_>,
) -> impl Future<Output = Result<UploadOutput, StepError>> + Send + use<> {
    let resolved = options
        .connection
        .target("dest", &options.dest)
        .resolve(env);
    async move {
        let (endpoint, location) = resolved?;
        run_upload(options, endpoint, location, ctx).await
    }
}

/// One file to upload.
#[derive(Clone, Debug)]
struct Source {
    path: PathBuf,
    key: String,
    size: u64,
    /// One of `last`.
    last: bool,
}

/// Checks the options and the files; returns them with their keys and sizes.
async fn collect_sources(
    options: &UploadOptions,
    prefix: &str,
) -> Result<Vec<Source>, UploadError> {
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&options.part_size) {
        return Err(UploadError::PartSize {
            part_size: options.part_size,
        });
    }
    check_prefix(&options.dest, prefix)?;
    let mut sources = UniqueSources::default();
    for (path, last) in options.sources() {
        sources.add(named_source(path, last, prefix).await?)?;
    }
    if options.remove && options.folder.is_none() {
        return Err(UploadError::RemoveWithoutFolder {
            dest: options.dest.clone(),
        });
    }
    if let Some(folder) = &options.folder {
        for source in folder_sources(folder, prefix)? {
            sources.add(source)?;
        }
    }
    Ok(sources.list)
}

/// The sources in order, each key given once.
#[derive(Default)]
struct UniqueSources {
    list: Vec<Source>,
    /// Key → the file that has it.
    seen: HashMap<String, PathBuf>,
}

impl UniqueSources {
    /// Adds `source`, refusing a key another file already has.
    fn add(&mut self, source: Source) -> Result<(), UploadError> {
        if let Some(first) = self.seen.get(&source.key) {
            return Err(UploadError::DuplicateKey {
                key: source.key,
                first: first.clone(),
                second: source.path,
            });
        }
        self.seen.insert(source.key.clone(), source.path.clone());
        self.list.push(source);
        Ok(())
    }
}

/// A file given by name (`src`, `files`, `last`): keyed PREFIX/<its name>.
async fn named_source(path: &Path, last: bool, prefix: &str) -> Result<Source, UploadError> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|source| UploadError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
    if !meta.is_file() {
        return Err(UploadError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let invalid = |key: String, reason| UploadError::InvalidKey {
        path: path.to_path_buf(),
        key,
        reason,
    };
    let name = path
        .file_name()
        .ok_or_else(|| invalid(String::new(), "is empty"))?;
    let name = name
        .to_str()
        .ok_or_else(|| invalid(name.to_string_lossy().into_owned(), "is not UTF-8"))?;
    let key = checked_key(path, format!("{prefix}{name}"))?;
    Ok(Source {
        path: path.to_path_buf(),
        key,
        size: meta.len(),
        last,
    })
}

/// Refuses a key with a control character, or one that object_store, which
/// addresses objects by path, would not name exactly.
fn checked_key(path: &Path, key: String) -> Result<String, UploadError> {
    let reason = if key.chars().any(|c| c.is_control()) {
        "holds a control character"
    } else {
        match object_store::path::Path::parse(&key) {
            Ok(parsed) if parsed.as_ref() == key => return Ok(key),
            _ => "is not a valid object path",
        }
    };
    Err(UploadError::InvalidKey {
        path: path.to_path_buf(),
        key,
        reason,
    })
}

/// Every file below `folder`, keyed PREFIX/<its path below the folder>, in
/// path order; anything but files and folders is refused.
fn folder_sources(folder: &Path, prefix: &str) -> Result<Vec<Source>, UploadError> {
    let mut sources = Vec::new();
    let walker = walkdir::WalkDir::new(folder)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walker {
        let read_error = |path: PathBuf, e: walkdir::Error| UploadError::Io {
            action: "read",
            path,
            source: e.into(),
        };
        let entry = entry.map_err(|e| read_error(e.path().unwrap_or(folder).to_path_buf(), e))?;
        let file_type = entry.file_type();
        if file_type.is_dir() {
            continue;
        }
        let path = entry.path().to_path_buf();
        if !file_type.is_file() {
            return Err(UploadError::NotAFile { path });
        }
        let size = entry
            .metadata()
            .map_err(|e| read_error(path.clone(), e))?
            .len();
        let key = checked_key(&path, folder_key(folder, &path, prefix)?)?;
        sources.push(Source {
            path,
            key,
            size,
            last: false,
        });
    }
    Ok(sources)
}

/// PREFIX/<the path of `path` below `folder`>, `/`-separated.
fn folder_key(folder: &Path, path: &Path, prefix: &str) -> Result<String, UploadError> {
    let relative = path.strip_prefix(folder).unwrap_or(path);
    let mut key = prefix.to_string();
    for (index, component) in relative.components().enumerate() {
        let Some(part) = component.as_os_str().to_str() else {
            return Err(UploadError::InvalidKey {
                key: format!("{key}{}", relative.display()),
                path: path.to_path_buf(),
                reason: "is not UTF-8",
            });
        };
        if index > 0 {
            key.push('/');
        }
        key.push_str(part);
    }
    Ok(key)
}

/// Refuses a prefix that no object key may start with.
fn check_prefix(dest: &str, prefix: &str) -> Result<(), UploadError> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(());
    }
    let invalid = |reason| UploadError::InvalidPrefix {
        dest: dest.to_string(),
        prefix: prefix.to_string(),
        reason,
    };
    if trimmed.chars().any(|c| c.is_control()) {
        return Err(invalid("it holds a control character"));
    }
    if trimmed
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(invalid(
            "it has an empty, `.` or `..` segment (S3 would store the objects under another name than the one given)",
        ));
    }
    match object_store::path::Path::parse(trimmed) {
        Ok(parsed) if parsed.as_ref() == trimmed => Ok(()),
        _ => Err(invalid("object_store cannot address it")),
    }
}

/// The part size for a file of `size` bytes: `part_size`, raised (to whole
/// MiB) when the file would need more than 10,000 parts.
fn part_size_for(size: u64, part_size: u64) -> u64 {
    if size.div_ceil(part_size) <= MAX_PARTS {
        return part_size;
    }
    size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB
}

/// What the server says about an object (a HEAD answer).
#[derive(Clone, Debug, Default)]
struct RemoteObject {
    size: u64,
    /// Without quotes, lower case.
    etag: Option<String>,
    /// `x-amz-checksum-sha256` (base64, maybe with a `-N` suffix).
    checksum_sha256: Option<String>,
    /// The part size recorded by a previous multipart upload of ours.
    part_size: Option<u64>,
}

impl RemoteObject {
    /// The number of parts of a multipart object, from its ETag (`<md5>-N`).
    fn parts(&self) -> Option<usize> {
        self.etag.as_deref()?.split_once('-')?.1.parse().ok()
    }
}

/// The digests of a local file, computed while reading it in parts.
#[derive(Clone, Debug)]
struct FileDigests {
    size: u64,
    sha256: [u8; 32],
    md5: [u8; 16],
    part_md5: Vec<[u8; 16]>,
    part_sha256: Vec<[u8; 32]>,
}

/// What compared equal, or why not.
type Comparison = Result<&'static str, (&'static str, String)>;

impl FileDigests {
    fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The multipart ETag: MD5 of the parts' MD5s, `-` and the part count.
    fn multipart_etag(&self) -> String {
        let mut md5 = Md5::new();
        for part in &self.part_md5 {
            md5.update(part);
        }
        format!("{}-{}", hex::encode(md5.finalize()), self.part_md5.len())
    }

    /// The composite checksum of a multipart object: SHA-256 of the parts' SHA-256s.
    fn composite_sha256(&self) -> String {
        let mut sha = Sha256::new();
        for part in &self.part_sha256 {
            sha.update(part);
        }
        BASE64.encode(sha.finalize())
    }

    /// Compares with what the server holds: the size, then its SHA-256 checksum
    /// if it keeps one, else its ETag. `Ok` names the check that matched.
    fn compare(&self, remote: &RemoteObject) -> Comparison {
        if remote.size != self.size {
            return Err((
                "size",
                format!("expected {} bytes, got {}", self.size, remote.size),
            ));
        }
        let multipart = remote.parts();
        if let Some(checksum) = &remote.checksum_sha256 {
            // AWS writes a composite checksum as `<base64>-N`; some servers omit `-N`.
            let (value, count) = match checksum.rsplit_once('-') {
                Some((value, count)) => (value, count.parse::<usize>().ok()),
                None => (checksum.as_str(), None),
            };
            let expected = match multipart.or(count) {
                Some(parts) if parts == self.part_sha256.len() => self.composite_sha256(),
                Some(parts) => {
                    return Err((
                        "sha256",
                        format!(
                            "the object has {parts} parts, the file {} at this part size",
                            self.part_sha256.len()
                        ),
                    ));
                }
                None => BASE64.encode(self.sha256),
            };
            return if value == expected {
                Ok("sha256")
            } else {
                Err(("sha256", format!("expected {expected}, got {value}")))
            };
        }
        if let Some(etag) = &remote.etag {
            let expected = match multipart {
                Some(_) => self.multipart_etag(),
                None => hex::encode(self.md5),
            };
            return if *etag == expected {
                Ok("etag")
            } else {
                Err(("etag", format!("expected {expected}, got {etag}")))
            };
        }
        Ok("size")
    }
}

/// Reads a file in parts, hashing as it goes; blocking (use [`read_part`]).
struct PartReader {
    file: std::fs::File,
    path: PathBuf,
    key: String,
    /// The size the file had when planned.
    expected: u64,
    read: u64,
    part_size: u64,
    sha256: Sha256,
    md5: Md5,
    part_md5: Vec<[u8; 16]>,
    part_sha256: Vec<[u8; 32]>,
    /// The first part was the whole file: its digests are the file's, and
    /// `sha256`/`md5` were not fed (each byte hashed twice, not four times:
    /// most files are one part, and hashing was most of a skip's CPU time).
    one_part: bool,
}

impl PartReader {
    fn open(source: &Source, part_size: u64) -> Result<Self, UploadError> {
        let file = std::fs::File::open(&source.path).map_err(|e| UploadError::Io {
            action: "open",
            path: source.path.clone(),
            source: e,
        })?;
        Ok(PartReader {
            file,
            path: source.path.clone(),
            key: source.key.clone(),
            expected: source.size,
            read: 0,
            part_size,
            sha256: Sha256::new(),
            md5: Md5::new(),
            part_md5: Vec::new(),
            part_sha256: Vec::new(),
            one_part: false,
        })
    }

    fn done(&self) -> bool {
        self.read >= self.expected
    }

    fn changed(&self, detail: String) -> UploadError {
        UploadError::FileChanged {
            path: self.path.clone(),
            key: self.key.clone(),
            detail,
        }
    }

    /// The next part (empty for an empty file).
    fn next_part(&mut self) -> Result<Bytes, UploadError> {
        let want = self.part_size.min(self.expected - self.read) as usize;
        let mut buffer = Vec::with_capacity(want);
        let got = (&mut self.file)
            .take(want as u64)
            .read_to_end(&mut buffer)
            .map_err(|source| UploadError::Io {
                action: "read",
                path: self.path.clone(),
                source,
            })?;
        if got < want {
            return Err(self.changed(format!(
                "it shrank to {} bytes from {}",
                self.read + got as u64,
                self.expected
            )));
        }
        if self.read == 0 && got as u64 == self.expected {
            self.one_part = true;
        } else if !self.one_part {
            self.sha256.update(&buffer);
            self.md5.update(&buffer);
        }
        self.read += got as u64;
        self.part_md5.push(Md5::digest(&buffer).into());
        self.part_sha256.push(Sha256::digest(&buffer).into());
        Ok(Bytes::from(buffer))
    }

    /// Checks that the file ended where planned; returns the digests.
    fn finish(mut self) -> Result<FileDigests, UploadError> {
        let mut probe = [0u8; 1];
        let more = self
            .file
            .read(&mut probe)
            .map_err(|source| UploadError::Io {
                action: "read",
                path: self.path.clone(),
                source,
            })?;
        if more > 0 {
            return Err(self.changed(format!("it grew past {} bytes", self.expected)));
        }
        let (sha256, md5) = if self.one_part {
            (self.part_sha256[0], self.part_md5[0])
        } else {
            (self.sha256.finalize().into(), self.md5.finalize().into())
        };
        Ok(FileDigests {
            size: self.read,
            sha256,
            md5,
            part_md5: self.part_md5,
            part_sha256: self.part_sha256,
        })
    }
}

/// Reads the next part off the async threads.
async fn read_part(mut reader: PartReader) -> (PartReader, Result<Bytes, UploadError>) {
    tokio::task::spawn_blocking(move || {
        let part = reader.next_part();
        (reader, part)
    })
    .await
    .expect("reading a part panicked")
}

/// Hashes a whole file in parts of `part_size`, stopping when `stop` fires.
async fn hash_file(
    source: &Source,
    part_size: u64,
    stop: &CancellationToken,
) -> Result<FileDigests, StepError> {
    let source_for_open = source.clone();
    let mut reader =
        tokio::task::spawn_blocking(move || PartReader::open(&source_for_open, part_size))
            .await
            .expect("opening a file panicked")?;
    while !reader.done() {
        if stop.is_cancelled() {
            return Err(StepError::cancelled());
        }
        let (back, part) = read_part(reader).await;
        reader = back;
        part?;
    }
    Ok(tokio::task::spawn_blocking(move || reader.finish())
        .await
        .expect("finishing a file panicked")?)
}

/// What to do with one file.
enum Plan {
    Upload,
    /// Already there: the file's SHA-256 and what compared equal. Only the
    /// digest is kept (not the per-part lists): 40,000 skipped files of a
    /// restore held 12 MiB of part digests nobody read again.
    Skip([u8; 32], &'static str),
}

/// Everything an upload needs, shared by the concurrent uploads.
struct Uploader {
    store: AmazonS3,
    http: reqwest::Client,
    endpoint: S3Endpoint,
    bucket: String,
    /// The bucket's base URL, without trailing slash.
    bucket_url: String,
    part_size: u64,
    slots: Arc<Semaphore>,
    progress: Arc<Progress>,
    /// Fires on interruption, at the deadline, or when another upload failed.
    stop: CancellationToken,
    /// `max_rate`: each body waits for its bytes before it is sent.
    throttle: Option<Arc<Throttle>>,
}

/// Why one file's upload ended early.
enum Stopped {
    Failed(UploadError),
    Interrupted,
}

impl From<UploadError> for Stopped {
    fn from(error: UploadError) -> Self {
        Stopped::Failed(error)
    }
}

impl Uploader {
    fn upload_error(&self, source: &Source) -> impl FnOnce(object_store::Error) -> UploadError {
        let path = source.path.clone();
        let key = source.key.clone();
        let bucket = self.bucket.clone();
        let endpoint = self.endpoint.describe();
        move |error| UploadError::Upload {
            path,
            key,
            bucket,
            endpoint,
            source: Box::new(error),
        }
    }

    /// Reads the object's size, ETag, checksum and recorded part size; `None`
    /// when there is no such object.
    async fn head(&self, key: &str) -> Result<Option<RemoteObject>, UploadError> {
        head_object(
            &self.http,
            &self.endpoint,
            &self.bucket,
            &self.bucket_url,
            key,
        )
        .await
    }

    /// Waits for an upload slot.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Stopped> {
        tokio::select! {
            permit = Arc::clone(&self.slots).acquire_owned() => {
                Ok(permit.expect("the upload slots are never closed"))
            }
            _ = self.stop.cancelled() => Err(Stopped::Interrupted),
        }
    }

    /// Uploads one file and checks the object against it.
    async fn upload(&self, source: &Source) -> Result<UploadedObject, Stopped> {
        tokio::select! {
            () = self.abort_stale_uploads(&source.key) => {}
            _ = self.stop.cancelled() => return Err(Stopped::Interrupted),
        }
        let part_size = part_size_for(source.size, self.part_size);
        let opened = source.clone();
        let reader = tokio::task::spawn_blocking(move || PartReader::open(&opened, part_size))
            .await
            .expect("opening a file panicked")?;
        let location = object_store::path::Path::parse(&source.key)
            .expect("collect_sources only accepts keys that are object paths");
        let digests = if source.size <= part_size {
            self.put_whole(source, &location, reader).await?
        } else {
            self.put_in_parts(source, &location, reader, part_size)
                .await?
        };
        let remote = self.head(&source.key).await?;
        let check = match remote.map(|r| digests.compare(&r)) {
            Some(Ok(check)) => check,
            Some(Err((check, detail))) => {
                return Err(self.integrity(source, check, detail).into());
            }
            None => {
                return Err(self
                    .integrity(source, "size", "the object is missing".to_string())
                    .into());
            }
        };
        tracing::debug!(
            "uploaded {} as `{}` ({} bytes, {check} checked)",
            source.path.display(),
            source.key,
            source.size
        );
        Ok(UploadedObject {
            key: source.key.clone(),
            path: source.path.clone(),
            bytes: source.size,
            sha256: Some(digests.sha256_hex()),
            skipped: false,
            check,
        })
    }

    /// Aborts the multipart uploads of exactly `key` left by a run that could
    /// not abort them (killed, or the machine went down), so their parts stop
    /// taking space. Best effort: a user without the right to list multipart
    /// uploads gets a warning, not a failure.
    async fn abort_stale_uploads(&self, key: &str) {
        let stale = match self.stale_uploads(key).await {
            Ok(stale) => stale,
            Err(reason) => {
                tracing::warn!(
                    "could not look for unfinished multipart uploads of `{key}` in bucket `{}` on {}: {reason}",
                    self.bucket,
                    self.endpoint.describe()
                );
                return;
            }
        };
        for upload_id in stale {
            match self.abort_upload(key, &upload_id).await {
                Ok(()) => tracing::info!(
                    "aborted an unfinished multipart upload of `{key}` left by an earlier run"
                ),
                Err(reason) => tracing::warn!(
                    "could not abort an unfinished multipart upload of `{key}` in bucket `{}` on {}: {reason}",
                    self.bucket,
                    self.endpoint.describe()
                ),
            }
        }
    }

    /// The upload ids of the unfinished multipart uploads of exactly `key`
    /// (ListMultipartUploads with the key as prefix).
    async fn stale_uploads(&self, key: &str) -> Result<Vec<String>, String> {
        let mut url = url::Url::parse(&format!("{}/", self.bucket_url))
            .expect("a bucket URL with a slash is a URL");
        url.query_pairs_mut()
            .append_pair("uploads", "")
            .append_pair("prefix", key);
        let body = self.signed(reqwest::Method::GET, url).await?;
        let listing: ListMultipartUploadsResult = quick_xml::de::from_str(&body)
            .map_err(|e| format!("not a ListMultipartUploads answer: {e}"))?;
        Ok(listing
            .uploads
            .into_iter()
            .filter(|u| u.key == key)
            .map(|u| u.upload_id)
            .collect())
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), String> {
        let mut url = url::Url::parse(&format!("{}/{}", self.bucket_url, encode_key(key)))
            .expect("a bucket URL with an encoded key is a URL");
        url.query_pairs_mut().append_pair("uploadId", upload_id);
        self.signed(reqwest::Method::DELETE, url).await.map(drop)
    }

    /// Sends a signed request without a body; the answer's body, or why not.
    async fn signed(&self, method: reqwest::Method, url: url::Url) -> Result<String, String> {
        let mut headers = reqwest::header::HeaderMap::new();
        self.endpoint
            .sign_headers(&method, &url, &mut headers)
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .request(method, url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            let code = quick_xml::de::from_str::<S3ErrorCode>(&body)
                .ok()
                .and_then(|e| e.code)
                .unwrap_or_else(|| "no S3 error code".to_string());
            return Err(format!("HTTP {}: {code}", status.as_u16()));
        }
        Ok(body)
    }

    fn integrity(&self, source: &Source, check: &'static str, detail: String) -> UploadError {
        UploadError::Integrity {
            path: source.path.clone(),
            object: format!(
                "`{}` in bucket `{}` on {}",
                source.key,
                self.bucket,
                self.endpoint.describe()
            ),
            check,
            detail,
        }
    }

    /// One PUT of the whole file.
    async fn put_whole(
        &self,
        source: &Source,
        location: &object_store::path::Path,
        reader: PartReader,
    ) -> Result<FileDigests, Stopped> {
        let _slot = self.slot().await?;
        let (reader, body) = read_part(reader).await;
        let body = body?;
        let digests = tokio::task::spawn_blocking(move || reader.finish())
            .await
            .expect("finishing a file panicked")?;
        if let Some(throttle) = &self.throttle {
            throttle.take(body.len() as u64).await;
        }
        let put = self
            .store
            .put_opts(location, PutPayload::from(body), PutOptions::default());
        tokio::select! {
            put = put => { put.map_err(self.upload_error(source))?; }
            // A single PUT leaves nothing behind when dropped.
            _ = self.stop.cancelled() => return Err(Stopped::Interrupted),
        }
        self.progress.inc(source.size);
        Ok(digests)
    }

    /// A multipart upload, aborted unless it completes.
    async fn put_in_parts(
        &self,
        source: &Source,
        location: &object_store::path::Path,
        reader: PartReader,
        part_size: u64,
    ) -> Result<FileDigests, Stopped> {
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(PART_SIZE_METADATA.into()),
            part_size.to_string().into(),
        );
        let options = PutMultipartOptions {
            attributes,
            ..PutMultipartOptions::default()
        };
        let mut upload = tokio::select! {
            upload = self.store.put_multipart_opts(location, options) => {
                upload.map_err(self.upload_error(source))?
            }
            _ = self.stop.cancelled() => return Err(Stopped::Interrupted),
        };
        let mut outcome = self.send_parts(source, &mut upload, reader).await;
        if outcome.is_ok() {
            // Completing is one short request: not interrupted halfway.
            if let Err(e) = upload.complete().await {
                outcome = Err(self.upload_error(source)(e).into());
            }
        }
        if outcome.is_err() {
            match tokio::time::timeout(ABORT_TIMEOUT, upload.abort()).await {
                Ok(Ok(())) => tracing::debug!("aborted the multipart upload of `{}`", source.key),
                Ok(Err(e)) => tracing::warn!(
                    "could not abort the multipart upload of `{}` in bucket `{}` on {}: {e}; \
                     its parts stay until a lifecycle rule removes them",
                    source.key,
                    self.bucket,
                    self.endpoint.describe()
                ),
                Err(_) => tracing::warn!(
                    "aborting the multipart upload of `{}` in bucket `{}` on {} timed out; \
                     its parts stay until a lifecycle rule removes them",
                    source.key,
                    self.bucket,
                    self.endpoint.describe()
                ),
            }
        }
        outcome
    }

    /// Reads and sends every part; each part waits for a slot before it is read.
    async fn send_parts(
        &self,
        source: &Source,
        upload: &mut Box<dyn MultipartUpload>,
        mut reader: PartReader,
    ) -> Result<FileDigests, Stopped> {
        // Dropping the set (on an error) cancels the parts still in flight.
        let mut parts: JoinSet<Result<(), object_store::Error>> = JoinSet::new();
        let part_done = |joined: Result<
            Result<(), object_store::Error>,
            tokio::task::JoinError,
        >| {
            match joined {
                Ok(result) => result.map_err(|e| Stopped::Failed(self.upload_error(source)(e))),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Err(Stopped::Interrupted),
            }
        };
        while !reader.done() {
            let slot = tokio::select! {
                slot = self.slot() => slot?,
                Some(joined) = parts.join_next() => { part_done(joined)?; continue; }
            };
            let (back, body) = read_part(reader).await;
            reader = back;
            let body = body?;
            let bytes = body.len() as u64;
            if let Some(throttle) = &self.throttle {
                throttle.take(bytes).await;
            }
            let send = upload.put_part(PutPayload::from(body));
            let progress = Arc::clone(&self.progress);
            parts.spawn(async move {
                send.await?;
                drop(slot);
                progress.inc(bytes);
                Ok(())
            });
        }
        let digests = tokio::task::spawn_blocking(move || reader.finish())
            .await
            .expect("finishing a file panicked")?;
        loop {
            tokio::select! {
                joined = parts.join_next() => match joined {
                    Some(joined) => part_done(joined)?,
                    None => break,
                },
                _ = self.stop.cancelled() => return Err(Stopped::Interrupted),
            }
        }
        Ok(digests)
    }
}

/// A ListMultipartUploads answer (the parts used).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMultipartUploadsResult {
    #[serde(default, rename = "Upload")]
    uploads: Vec<PendingUpload>,
}

/// One unfinished multipart upload.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PendingUpload {
    key: String,
    upload_id: String,
}

/// The code of an S3 error answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3ErrorCode {
    code: Option<String>,
}

/// Percent-encodes a key for a request path the way S3 canonicalizes it
/// (everything but unreserved characters and `/`).
fn encode_key(key: &str) -> String {
    const KEY_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(key, KEY_SET).to_string()
}

/// A signed HEAD request for `key` asking for its checksum; `None` on 404.
async fn head_object(
    http: &reqwest::Client,
    endpoint: &S3Endpoint,
    bucket: &str,
    bucket_url: &str,
    key: &str,
) -> Result<Option<RemoteObject>, UploadError> {
    let url = url::Url::parse(&format!("{bucket_url}/{}", encode_key(key)))
        .expect("a bucket URL with an encoded key is a URL");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-amz-checksum-mode",
        reqwest::header::HeaderValue::from_static("ENABLED"),
    );
    endpoint.sign_headers(&reqwest::Method::HEAD, &url, &mut headers)?;
    let response = http
        .head(url)
        .headers(headers)
        .send()
        .await
        .map_err(|source| UploadError::HeadConnection {
            key: key.to_string(),
            bucket: bucket.to_string(),
            endpoint: endpoint.describe(),
            source,
        })?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(UploadError::HeadStatus {
            key: key.to_string(),
            bucket: bucket.to_string(),
            endpoint: endpoint.describe(),
            status: status.as_u16(),
        });
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    Ok(Some(RemoteObject {
        size: header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        etag: header("etag").map(|e| {
            e.trim_start_matches("W/")
                .trim_matches('"')
                .to_ascii_lowercase()
        }),
        checksum_sha256: header("x-amz-checksum-sha256").map(str::to_string),
        part_size: header(&format!("x-amz-meta-{PART_SIZE_METADATA}"))
            .and_then(|v| v.parse().ok())
            .filter(|p| (MIN_PART_SIZE..=MAX_PART_SIZE).contains(p)),
    }))
}

/// A signed DELETE request for `key`; a missing object is fine.
async fn delete_object(
    http: &reqwest::Client,
    endpoint: &S3Endpoint,
    bucket: &str,
    bucket_url: &str,
    key: &str,
) -> Result<(), UploadError> {
    let failed = |detail: String| UploadError::Delete {
        key: key.to_string(),
        bucket: bucket.to_string(),
        endpoint: endpoint.describe(),
        detail,
    };
    let url = url::Url::parse(&format!("{bucket_url}/{}", encode_key(key)))
        .expect("a bucket URL with an encoded key is a URL");
    let mut headers = reqwest::header::HeaderMap::new();
    endpoint.sign_headers(&reqwest::Method::DELETE, &url, &mut headers)?;
    let response = http
        .delete(url)
        .headers(headers)
        .send()
        .await
        .map_err(|e| {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(inner) = cause {
                text.push_str(&format!(": {inner}"));
                cause = inner.source();
            }
            failed(text)
        })?;
    let status = response.status();
    if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let code = quick_xml::de::from_str::<S3ErrorCode>(&body)
        .ok()
        .and_then(|e| e.code)
        .map(|c| format!(" {c}"))
        .unwrap_or_default();
    Err(failed(format!("HTTP {}{code}", status.as_u16())))
}

/// Fires `stop` at the deadline; returns the timer's handle (abort it when done).
fn stop_at_deadline(
    ctx: &StepContext,
    stop: &CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let deadline = ctx.deadline?;
    let stop = stop.clone();
    Some(tokio::spawn(async move {
        tokio::time::sleep_until(deadline).await;
        stop.cancel();
    }))
}

/// Why the run stopped early, as a step error.
fn interrupted(ctx: &StepContext, started: tokio::time::Instant) -> StepError {
    match ctx.deadline {
        Some(deadline) if !ctx.cancel.is_cancelled() && tokio::time::Instant::now() >= deadline => {
            StepError::timed_out(deadline.saturating_duration_since(started))
        }
        _ => StepError::cancelled(),
    }
}

async fn run_upload(
    options: UploadOptions,
    endpoint: S3Endpoint,
    location: S3Location,
    ctx: StepContext,
) -> Result<UploadOutput, StepError> {
    let started = Instant::now();
    let started_tokio = tokio::time::Instant::now();
    let stop = ctx.cancel.child_token();
    let timer = stop_at_deadline(&ctx, &stop);
    let result = upload_all(options, endpoint, location, &ctx, &stop).await;
    if let Some(timer) = timer {
        timer.abort();
    }
    let mut output = match result {
        Ok(output) => output,
        Err(_) if stop.is_cancelled() => return Err(interrupted(&ctx, started_tokio)),
        Err(error) => return Err(error),
    };
    output.duration_ms = started.elapsed().as_millis() as u64;
    Ok(output)
}

/// Checks the sources, lists the destination, plans what to upload or skip,
/// uploads (`last` files last), deletes what `remove` removes and checks the
/// final listing.
async fn upload_all(
    options: UploadOptions,
    endpoint: S3Endpoint,
    location: S3Location,
    ctx: &StepContext,
    stop: &CancellationToken,
) -> Result<UploadOutput, StepError> {
    let sources = collect_sources(&options, &location.prefix).await?;
    let (http, listed) = list_destination(&endpoint, &location, sources.is_empty(), stop).await?;
    // With `remove`, what the prefix holds beyond the folder's files.
    let extra = extra_keys(&options, &sources, &listed);
    let mut output = UploadOutput {
        listed_objects: listed.len() as u64,
        listed_bytes: listed.values().map(|entry| entry.size).sum::<u64>(),
        removed: extra.len() as u64,
        ..UploadOutput::default()
    };
    if sources.is_empty() && options.folder.is_none() {
        tracing::info!(
            "{}: bucket `{}` on {} answers ({} objects, {} bytes under the prefix); no file to upload",
            ctx.label,
            location.bucket,
            endpoint.describe(),
            output.listed_objects,
            output.listed_bytes
        );
        return Ok(output);
    }
    let bucket_url = bucket_base_url(&endpoint, &location);
    let remote = Remote {
        http: &http,
        endpoint: &endpoint,
        bucket: &location.bucket,
        bucket_url: &bucket_url,
    };
    let plans = plan_uploads(&sources, &listed, &remote, &options, ctx, stop).await?;
    let (mut objects, to_upload) = sort_plans(
        &sources,
        plans,
        options.report_objects || ctx.dry_run,
        &mut output,
    );
    let upload_bytes: u64 = to_upload.iter().map(|&i| sources[i].size).sum();

    if ctx.dry_run {
        return Ok(dry_run_output(&sources, objects, &to_upload, output));
    }
    let uploader = Uploader::new(&options, &remote, &location, ctx, stop, upload_bytes)?;
    let concurrency = options.concurrency.max(1);
    uploader
        .upload_in_order(&sources, to_upload, concurrency, &mut objects, &mut output)
        .await?;
    uploader.progress.finish();
    let objects: Vec<UploadedObject> = objects.into_iter().flatten().collect();
    // Only once every file is up and checked: what is not in the folder goes.
    delete_extra(&remote, &extra, &options, ctx, stop).await?;
    check_listed(&remote, &location, &sources, options.remove, stop).await?;
    tracing::info!(
        "{}: {} files uploaded ({} bytes), {} already there, to bucket `{}` on {}",
        ctx.label,
        output.uploaded,
        output.bytes,
        output.skipped,
        location.bucket,
        endpoint.describe()
    );
    if options.report_objects {
        output.objects = objects;
    }
    Ok(output)
}

/// The client for HEAD, listing and delete requests, and the destination's
/// listing (key → size and single-part ETag). With no file to upload this is a pre-flight check:
/// an endpoint that does not answer must fail in seconds.
async fn list_destination(
    endpoint: &S3Endpoint,
    location: &S3Location,
    preflight: bool,
    stop: &CancellationToken,
) -> Result<(reqwest::Client, HashMap<String, ListedEntry>), StepError> {
    let connect_timeout = if preflight {
        CHECK_CONNECT_TIMEOUT
    } else {
        HEAD_CONNECT_TIMEOUT
    };
    let http = endpoint.request_client(connect_timeout, HEAD_TIMEOUT)?;
    let listed = tokio::select! {
        listed = listed_entries(&http, endpoint, location) => listed?,
        _ = stop.cancelled() => return Err(StepError::cancelled()),
    };
    Ok((http, listed))
}

/// The bucket's base URL, without trailing slash.
fn bucket_base_url(endpoint: &S3Endpoint, location: &S3Location) -> String {
    endpoint
        .bucket_url(&location.bucket)
        .as_str()
        .trim_end_matches('/')
        .to_string()
}

/// Under dry-run: the files that would be uploaded, counted as uploaded
/// (without a checksum), with the skipped ones.
fn dry_run_output(
    sources: &[Source],
    mut objects: Vec<Option<UploadedObject>>,
    to_upload: &[usize],
    mut output: UploadOutput,
) -> UploadOutput {
    for &index in to_upload {
        let source = &sources[index];
        objects[index] = Some(UploadedObject {
            key: source.key.clone(),
            path: source.path.clone(),
            bytes: source.size,
            sha256: None,
            skipped: false,
            check: "",
        });
    }
    output.uploaded = to_upload.len() as u64;
    output.bytes = to_upload.iter().map(|&i| sources[i].size).sum();
    output.objects = objects.into_iter().flatten().collect();
    output
}

/// The bucket an upload talks to over plain HTTP (HEAD and listing).
struct Remote<'a> {
    http: &'a reqwest::Client,
    endpoint: &'a S3Endpoint,
    bucket: &'a str,
    /// The bucket's base URL, without trailing slash.
    bucket_url: &'a str,
}

/// For each source, in order: upload it, or skip it because the object is
/// there with the same size and checksums (which reads the file).
async fn plan_uploads(
    sources: &[Source],
    listed: &HashMap<String, ListedEntry>,
    remote: &Remote<'_>,
    options: &UploadOptions,
    ctx: &StepContext,
    stop: &CancellationToken,
) -> Result<Vec<Plan>, StepError> {
    // The futures are built first, a window at a time (FILES_IN_FLIGHT_WINDOW):
    // a stream of borrowing closures trips the compiler's `Send` check of the
    // step's future.
    let mut plans = Vec::with_capacity(sources.len());
    for window in sources.chunks(FILES_IN_FLIGHT_WINDOW) {
        let checks: Vec<_> = window
            .iter()
            .map(|source| {
                let entry = listed.get(&source.key).copied();
                plan_one(source, entry, remote, options, ctx, stop)
            })
            .collect();
        let mut checked = futures::stream::iter(checks).buffered(options.concurrency.max(1));
        while let Some(plan) = checked.next().await {
            plans.push(plan?);
        }
    }
    Ok(plans)
}

/// Upload `source`, or skip it. Nothing listed with its size: upload. Listed
/// with a single-part ETag: the file's MD5 is compared with it, and equal
/// means skip, with no request (a HEAD per file was most of a restore's
/// upload of 10,000 files that were all there). Otherwise (a multipart or
/// no ETag, or one that is not the file's MD5: another content, or an
/// encrypted object whose ETag is no MD5) a HEAD decides, as it did for
/// every file before: the server's SHA-256 where it keeps one, else the ETag.
async fn plan_one(
    source: &Source,
    entry: Option<ListedEntry>,
    remote: &Remote<'_>,
    options: &UploadOptions,
    ctx: &StepContext,
    stop: &CancellationToken,
) -> Result<Plan, StepError> {
    let Some(entry) = entry.filter(|entry| entry.size == source.size) else {
        return Ok(Plan::Upload);
    };
    // The digests already computed, with the part size they were computed at.
    let mut hashed: Option<(u64, FileDigests)> = None;
    if let Some(etag) = entry.single_part_etag {
        let part_size = part_size_for(source.size, options.part_size);
        let digests = hash_file(source, part_size, stop).await?;
        if digests.md5 == etag {
            return Ok(Plan::Skip(digests.sha256, "etag"));
        }
        hashed = Some((part_size, digests));
    }
    let Some(found) = head_object(
        remote.http,
        remote.endpoint,
        remote.bucket,
        remote.bucket_url,
        &source.key,
    )
    .await?
    else {
        return Ok(Plan::Upload);
    };
    let part_size = part_size_for(source.size, found.part_size.unwrap_or(options.part_size));
    let digests = match hashed {
        Some((hashed_at, digests)) if hashed_at == part_size => digests,
        _ => hash_file(source, part_size, stop).await?,
    };
    Ok(match digests.compare(&found) {
        Ok(check) => Plan::Skip(digests.sha256, check),
        Err((check, detail)) => {
            tracing::info!(
                "{}: `{}` differs from {} ({check}: {detail}); uploading it again",
                ctx.label,
                source.key,
                source.path.display()
            );
            Plan::Upload
        }
    })
}

/// The result slot of every source (filled for the skipped ones when they are
/// `reported`, counted in `output.skipped`) and the indices of the sources to
/// upload.
fn sort_plans(
    sources: &[Source],
    plans: Vec<Plan>,
    reported: bool,
    output: &mut UploadOutput,
) -> (Vec<Option<UploadedObject>>, Vec<usize>) {
    let mut objects: Vec<Option<UploadedObject>> = Vec::with_capacity(sources.len());
    let mut to_upload: Vec<usize> = Vec::new();
    for (index, (source, plan)) in sources.iter().zip(plans).enumerate() {
        match plan {
            Plan::Skip(sha256, check) => {
                output.skipped += 1;
                objects.push(reported.then(|| UploadedObject {
                    key: source.key.clone(),
                    path: source.path.clone(),
                    bytes: source.size,
                    sha256: Some(hex::encode(sha256)),
                    skipped: true,
                    check,
                }));
            }
            Plan::Upload => {
                to_upload.push(index);
                objects.push(None);
            }
        }
    }
    (objects, to_upload)
}

/// The final listing: every object uploaded or skipped is there with its size.
/// The keys under the prefix that are none of the sources (with `remove`;
/// else none), sorted.
fn extra_keys(
    options: &UploadOptions,
    sources: &[Source],
    listed: &HashMap<String, ListedEntry>,
) -> Vec<String> {
    if !options.remove {
        return Vec::new();
    }
    let keys: std::collections::HashSet<&str> = sources.iter().map(|s| s.key.as_str()).collect();
    let mut extra: Vec<String> = listed
        .keys()
        .filter(|k| !keys.contains(k.as_str()))
        .cloned()
        .collect();
    extra.sort();
    extra
}

/// Deletes the `extra` keys (`remove`), `concurrency` at a time.
async fn delete_extra(
    remote: &Remote<'_>,
    extra: &[String],
    options: &UploadOptions,
    ctx: &StepContext,
    stop: &CancellationToken,
) -> Result<(), StepError> {
    let deletes: Vec<_> = extra
        .iter()
        .map(|key| async move {
            delete_object(
                remote.http,
                remote.endpoint,
                remote.bucket,
                remote.bucket_url,
                key,
            )
            .await
        })
        .collect();
    let mut deleting = futures::stream::iter(deletes).buffer_unordered(options.concurrency.max(1));
    loop {
        let next = tokio::select! {
            next = deleting.next() => next,
            _ = stop.cancelled() => return Err(StepError::cancelled()),
        };
        match next {
            Some(result) => result?,
            None => break,
        }
    }
    if let Some(first) = extra.first() {
        tracing::info!(
            "{}: {} objects not in {} deleted from bucket `{}` (e.g. `{}`)",
            ctx.label,
            extra.len(),
            options
                .folder
                .as_deref()
                .map(|f| f.display().to_string())
                .unwrap_or_default(),
            remote.bucket,
            first
        );
    }
    Ok(())
}

/// The final listing: every source's object (uploaded or skipped) is there
/// with its size; with `only` (`remove`), nothing else is.
async fn check_listed(
    remote: &Remote<'_>,
    location: &S3Location,
    sources: &[Source],
    only: bool,
    stop: &CancellationToken,
) -> Result<(), StepError> {
    let listed = tokio::select! {
        listed = listed_entries(remote.http, remote.endpoint, location) => listed?,
        _ = stop.cancelled() => return Err(StepError::cancelled()),
    };
    for object in sources {
        let detail = match listed.get(&object.key).map(|entry| entry.size) {
            Some(size) if size == object.size => continue,
            Some(size) => format!("has {size} bytes, expected {}", object.size),
            None => "is missing".to_string(),
        };
        return Err(UploadError::NotListed {
            key: object.key.clone(),
            bucket: location.bucket.clone(),
            endpoint: remote.endpoint.describe(),
            detail,
        }
        .into());
    }
    if only && listed.len() != sources.len() {
        let keys: std::collections::HashSet<&str> =
            sources.iter().map(|o| o.key.as_str()).collect();
        if let Some(key) = listed.keys().find(|k| !keys.contains(k.as_str())) {
            return Err(UploadError::NotListed {
                key: key.clone(),
                bucket: location.bucket.clone(),
                endpoint: remote.endpoint.describe(),
                detail: "is still there, but it is not in the folder (written meanwhile?)"
                    .to_string(),
            }
            .into());
        }
    }
    Ok(())
}

impl Uploader {
    /// The object store client (SHA-256 checksums when `checksum`), the
    /// concurrency slots and the progress bar for `upload_bytes`.
    fn new(
        options: &UploadOptions,
        remote: &Remote<'_>,
        location: &S3Location,
        ctx: &StepContext,
        stop: &CancellationToken,
        upload_bytes: u64,
    ) -> Result<Uploader, StepError> {
        let mut builder = remote.endpoint.object_store_builder(
            &location.bucket,
            transfer_client_options(),
            RetryConfig::default(),
        )?;
        if options.checksum {
            builder = builder.with_checksum_algorithm(Checksum::SHA256);
        }
        let store = builder.build().map_err(|source| AliasError::Build {
            endpoint: remote.endpoint.describe(),
            source,
        })?;
        Ok(Uploader {
            store,
            http: remote.http.clone(),
            endpoint: remote.endpoint.clone(),
            bucket: location.bucket.clone(),
            bucket_url: remote.bucket_url.to_string(),
            part_size: options.part_size,
            slots: Arc::new(Semaphore::new(options.concurrency.max(1))),
            progress: Arc::new(Progress::new(ctx.progress, &ctx.label, upload_bytes)),
            stop: stop.child_token(),
            throttle: options.max_rate.throttle(),
        })
    }

    /// Uploads the sources at `to_upload`, `concurrency` at a time; `last`
    /// files start only once every other file is uploaded and checked. On a
    /// failure the others are stopped (and abort their multipart uploads)
    /// and drained, so nothing is left half-done.
    async fn upload_in_order(
        &self,
        sources: &[Source],
        to_upload: Vec<usize>,
        concurrency: usize,
        objects: &mut [Option<UploadedObject>],
        output: &mut UploadOutput,
    ) -> Result<(), StepError> {
        let (first, last): (Vec<usize>, Vec<usize>) =
            to_upload.into_iter().partition(|&i| !sources[i].last);
        let mut failure: Option<Stopped> = None;
        for group in [first, last] {
            for window in group.chunks(FILES_IN_FLIGHT_WINDOW) {
                if failure.is_some() {
                    break;
                }
                let window: Vec<_> = window
                    .iter()
                    .map(|&index| {
                        let source = &sources[index];
                        async move { (index, self.upload(source).await) }
                    })
                    .collect();
                let mut uploads = futures::stream::iter(window).buffer_unordered(concurrency);
                while let Some((index, outcome)) = uploads.next().await {
                    match outcome {
                        Ok(object) => {
                            output.uploaded += 1;
                            output.bytes += object.bytes;
                            objects[index] = Some(object);
                        }
                        Err(stopped) => {
                            self.stop.cancel();
                            if failure.is_none() || matches!(failure, Some(Stopped::Interrupted)) {
                                failure = Some(stopped);
                            }
                        }
                    }
                }
            }
            match failure {
                Some(Stopped::Failed(error)) => return Err(error.into()),
                Some(Stopped::Interrupted) => return Err(StepError::cancelled()),
                None => {}
            }
        }
        Ok(())
    }
}

/// What the listing says of one object under the prefix.
#[derive(Clone, Copy, Debug)]
struct ListedEntry {
    size: u64,
    /// Its ETag when single-part (see [`crate::s3::listing::ListedObject`]).
    single_part_etag: Option<[u8; 16]>,
}

/// Lists the prefix: key → size and single-part ETag (keys that are not
/// UTF-8 are left out: none of ours can be one).
async fn listed_entries(
    http: &reqwest::Client,
    endpoint: &S3Endpoint,
    location: &S3Location,
) -> Result<HashMap<String, ListedEntry>, StepError> {
    let listing = list_objects(http, endpoint, location).await?;
    Ok(listing
        .into_iter()
        .filter(|o| o.utf8)
        .map(|o| {
            let entry = ListedEntry {
                size: o.size,
                single_part_etag: o.single_part_etag,
            };
            (o.key, entry)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> UploadOptions {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_prefix_with_dot_dot_or_empty_segments_is_refused() {
        for bad in ["../../x/", "a//b/", "./a/", "a/\tb/"] {
            let e = check_prefix("alias/bucket/x", bad).unwrap_err();
            assert_eq!(e.kind(), "options", "{bad}: {e}");
        }
        for good in ["", "offsite/", "a/b c/"] {
            assert!(check_prefix("alias/bucket", good).is_ok(), "{good}");
        }
    }

    #[test]
    fn defaults_and_unknown_options() {
        let o = options(serde_json::json!({"files": ["/a/x.tar", "/a/x.tar.sha256"],
                                           "last": ["/b/m.json"], "dest": "offsite/b/p"}));
        assert_eq!(
            (o.concurrency, o.part_size, o.checksum, o.report_objects),
            (4, 64 * MIB, true, true)
        );
        assert!(matches!(S3Upload::dry_run(&o), DryRun::Run));
        assert_eq!(
            S3Upload::describe(&o),
            "upload 3 files to offsite/b/p (4 at a time, parts of 64 MiB, 1 last)"
        );
        let order: Vec<(String, bool)> = o
            .sources()
            .map(|(p, last)| (p.display().to_string(), last))
            .collect();
        assert_eq!(
            order,
            [
                ("/a/x.tar".to_string(), false),
                ("/a/x.tar.sha256".to_string(), false),
                ("/b/m.json".to_string(), true)
            ]
        );
        let e = serde_json::from_value::<UploadOptions>(
            serde_json::json!({"src": "/a", "dest": "a/b", "partsize": 2}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `partsize`"), "{e}");
    }

    #[test]
    fn secret_key_is_not_in_debug_output() {
        let o = options(serde_json::json!({
            "src": "/x", "dest": "bucket", "endpoint": "http://127.0.0.1:9000",
            "access_key": "AK", "secret_key": "VERYSECRET"
        }));
        assert!(!format!("{o:?}").contains("VERYSECRET"));
    }

    #[tokio::test]
    async fn sources_get_keys_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.tar");
        std::fs::write(&a, b"abc").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let a_again = dir.path().join("sub/a.tar");
        std::fs::write(&a_again, b"").unwrap();

        let o = options(serde_json::json!({"files": [a], "dest": "x/b"}));
        let sources = collect_sources(&o, "sets/").await.unwrap();
        assert_eq!(
            (sources[0].key.as_str(), sources[0].size),
            ("sets/a.tar", 3)
        );

        let o = options(serde_json::json!({"files": [a, a_again], "dest": "x/b"}));
        let e = collect_sources(&o, "").await.unwrap_err();
        assert!(matches!(e, UploadError::DuplicateKey { .. }), "{e}");

        let o = options(serde_json::json!({"files": [dir.path().join("sub")], "dest": "x/b"}));
        assert!(matches!(
            collect_sources(&o, "").await.unwrap_err(),
            UploadError::NotAFile { .. }
        ));

        let missing = dir.path().join("missing.tar");
        let o = options(serde_json::json!({"files": [missing], "dest": "x/b"}));
        let e = collect_sources(&o, "").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("could not read {}", missing.display())
        );

        let o = options(serde_json::json!({"dest": "x/b"}));
        assert!(collect_sources(&o, "").await.unwrap().is_empty());
        let o = options(serde_json::json!({"src": a, "dest": "x/b", "part_size": 1024}));
        assert!(matches!(
            collect_sources(&o, "").await.unwrap_err(),
            UploadError::PartSize { part_size: 1024 }
        ));
    }

    #[test]
    fn part_size_grows_past_ten_thousand_parts() {
        assert_eq!(part_size_for(100 * MIB, 64 * MIB), 64 * MIB);
        assert_eq!(part_size_for(10_000 * 5 * MIB, 5 * MIB), 5 * MIB);
        let size = 10_000 * 5 * MIB + 1;
        let grown = part_size_for(size, 5 * MIB);
        assert_eq!(grown, 6 * MIB);
        assert!(size.div_ceil(grown) <= MAX_PARTS);
    }

    fn digests_of(data: &[u8], part_size: usize) -> FileDigests {
        let parts: Vec<&[u8]> = data.chunks(part_size).collect();
        FileDigests {
            size: data.len() as u64,
            sha256: Sha256::digest(data).into(),
            md5: Md5::digest(data).into(),
            part_md5: parts.iter().map(|p| Md5::digest(p).into()).collect(),
            part_sha256: parts.iter().map(|p| Sha256::digest(p).into()).collect(),
        }
    }

    #[test]
    fn comparisons_follow_s3_checksums_and_etags() {
        let data: Vec<u8> = (0..10u32).flat_map(|i| i.to_le_bytes()).collect();
        let single = digests_of(&data, 1000);
        let remote = RemoteObject {
            size: 40,
            etag: Some(hex::encode(Md5::digest(&data))),
            ..RemoteObject::default()
        };
        assert_eq!(single.compare(&remote), Ok("etag"));
        let with_checksum = RemoteObject {
            checksum_sha256: Some(BASE64.encode(Sha256::digest(&data))),
            ..remote.clone()
        };
        assert_eq!(single.compare(&with_checksum), Ok("sha256"));
        let wrong_size = RemoteObject {
            size: 41,
            ..remote.clone()
        };
        assert_eq!(single.compare(&wrong_size).unwrap_err().0, "size");
        let wrong_etag = RemoteObject {
            etag: Some("0".repeat(32)),
            ..remote.clone()
        };
        assert_eq!(single.compare(&wrong_etag).unwrap_err().0, "etag");
        assert_eq!(
            single.compare(&RemoteObject {
                size: 40,
                ..RemoteObject::default()
            }),
            Ok("size")
        );

        // Multipart: ETag and composite checksum over parts of 16 bytes (3 parts).
        let parts = digests_of(&data, 16);
        let mut concatenated = Vec::new();
        for part in data.chunks(16) {
            concatenated.extend_from_slice(&Md5::digest(part));
        }
        let etag = format!("{}-3", hex::encode(Md5::digest(&concatenated)));
        assert_eq!(parts.multipart_etag(), etag);
        let multipart = RemoteObject {
            size: 40,
            etag: Some(etag),
            ..RemoteObject::default()
        };
        assert_eq!(parts.compare(&multipart), Ok("etag"));
        let composite = parts.composite_sha256();
        for checksum in [composite.clone(), format!("{composite}-3")] {
            let remote = RemoteObject {
                checksum_sha256: Some(checksum),
                ..multipart.clone()
            };
            assert_eq!(parts.compare(&remote), Ok("sha256"));
        }
        // The same file hashed with another part size does not match.
        let other = digests_of(&data, 32);
        assert!(other.compare(&multipart).is_err());
    }

    #[test]
    fn unfinished_upload_listing_parses() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket>
<KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>sets/a.tar</Prefix><MaxUploads>1000</MaxUploads>
<IsTruncated>false</IsTruncated>
<Upload><Key>sets/a.tar</Key><UploadId>id-1</UploadId><Initiated>2026-11-26T08:05:03.000Z</Initiated></Upload>
<Upload><Key>sets/a.tar.sha256</Key><UploadId>id-2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        let listing: ListMultipartUploadsResult = quick_xml::de::from_str(xml).unwrap();
        let pairs: Vec<(&str, &str)> = listing
            .uploads
            .iter()
            .map(|u| (u.key.as_str(), u.upload_id.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("sets/a.tar", "id-1"), ("sets/a.tar.sha256", "id-2")]
        );
        let empty: ListMultipartUploadsResult = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><Bucket>b</Bucket></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.uploads.is_empty());
    }

    #[test]
    fn keys_are_encoded_like_s3_canonical_paths() {
        assert_eq!(
            encode_key("sets/a b+c(1)~.tar"),
            "sets/a%20b%2Bc%281%29~.tar"
        );
        assert_eq!(encode_key("été"), "%C3%A9t%C3%A9");
    }

    #[test]
    fn reader_digests_are_the_files_whether_read_in_one_part_or_several() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100u32).flat_map(|i| i.to_le_bytes()).collect();
        for (len, part_size) in [(400, 400), (400, 1000), (400, 150), (0, 150)] {
            let path = dir.path().join(format!("f{len}-{part_size}"));
            std::fs::write(&path, &data[..len]).unwrap();
            let source = Source {
                path,
                key: "f".into(),
                size: len as u64,
                last: false,
            };
            let mut reader = PartReader::open(&source, part_size).unwrap();
            // An empty file is read as one empty part by a whole PUT, as none by a hash.
            if len == 0 {
                reader.next_part().unwrap();
            }
            while !reader.done() {
                reader.next_part().unwrap();
            }
            let got = reader.finish().unwrap();
            let expected = digests_of(&data[..len], part_size as usize);
            let case = format!("{len} bytes in parts of {part_size}");
            assert_eq!(
                (got.sha256, got.md5),
                (expected.sha256, expected.md5),
                "{case}"
            );
            if len > 0 {
                assert_eq!(
                    (got.part_md5, got.part_sha256),
                    (expected.part_md5, expected.part_sha256),
                    "{case}"
                );
            }
        }
    }

    #[test]
    fn reader_notices_a_file_that_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 100]).unwrap();
        let source = Source {
            path: path.clone(),
            key: "f".into(),
            size: 60,
            last: false,
        };
        let mut reader = PartReader::open(&source, 50).unwrap();
        assert_eq!(reader.next_part().unwrap().len(), 50);
        assert_eq!(reader.next_part().unwrap().len(), 10);
        assert!(reader.done());
        let e = reader.finish().unwrap_err();
        assert!(e.to_string().contains("it grew past 60 bytes"), "{e}");

        let source = Source {
            size: 200,
            ..source
        };
        let mut reader = PartReader::open(&source, 150).unwrap();
        reader.next_part().unwrap_err();
        let mut reader = PartReader::open(&source, 50).unwrap();
        for _ in 0..2 {
            reader.next_part().unwrap();
        }
        let e = reader.next_part().unwrap_err();
        assert!(
            e.to_string().contains("shrank to 100 bytes from 200"),
            "{e}"
        );
    }
}
