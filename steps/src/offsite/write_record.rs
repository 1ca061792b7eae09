//! `offsite_record`: writes a set's off-site record (see
//! [`crate::offsite::record`]) from what `age_encrypt` and `s3_upload`
//! returned, next to the set's manifest.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::offsite::record::{
    OffsiteObject, OffsiteRecord, OffsiteVerification, PlainFile, RECORD_FORMAT, VERIFIED,
    manifest_stamp, record_file_name,
};
use crate::runtime::atomic_file::write_atomic;
use crate::runtime::blocking_work::run_blocking;
use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};

/// The `offsite_record` step.
pub struct OffsiteRecordStep;

/// Options of `offsite_record`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordOptions {
    /// The set's manifest (`backup_STAMP.json`), uploaded after the record.
    pub manifest: PathBuf,
    /// `ALIAS/BUCKET[/PREFIX]` the copy went to.
    pub dest: String,
    /// The workflow making the copy.
    pub workflow: String,
    /// `objects` of `s3_upload`'s result (the set's files, the manifest not yet).
    pub uploaded: Vec<UploadedEntry>,
    /// `files` of `age_encrypt`'s result, when the archives were encrypted.
    #[serde(default)]
    pub encrypted: Vec<EncryptedEntry>,
}

/// The fields used of one `s3_upload` object (the others are ignored).
#[derive(Debug, Deserialize)]
pub struct UploadedEntry {
    /// The object key.
    pub key: String,
    /// The local file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: Option<String>,
    /// What the read-back matched.
    pub check: String,
}

/// The fields used of one `age_encrypt` file.
#[derive(Debug, Deserialize)]
pub struct EncryptedEntry {
    /// The plain file.
    pub path: PathBuf,
    /// The `.age` file.
    pub encrypted: PathBuf,
    /// The plain size.
    pub bytes: u64,
    /// The plain SHA-256.
    pub sha256: String,
}

/// Result of `offsite_record`.
#[derive(Debug, Default, Serialize)]
pub struct RecordOutput {
    /// The record written.
    pub path: PathBuf,
    /// True when every object's upload was checked by SHA-256 or ETag.
    pub verified: bool,
    /// Why (or why not).
    pub detail: String,
}

/// Why `offsite_record` failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The manifest's name is not `backup_STAMP.json`.
    #[error("{} is not a set manifest (backup_STAMP.json)", path.display())]
    NotAManifest {
        /// The path.
        path: PathBuf,
    },
    /// An uploaded object has no SHA-256 (a dry run's result).
    #[error("`{key}` has no sha256 in the upload's result (was it a dry run?)")]
    NoChecksum {
        /// The key.
        key: String,
    },
    /// A local file operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl StepFailure for RecordError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            RecordError::NotAManifest { .. } | RecordError::NoChecksum { .. } => ErrorKind::Options,
            RecordError::Io { .. } => ErrorKind::Io,
        }
    }
}

impl Step for OffsiteRecordStep {
    const NAME: &'static str = "offsite_record";
    const DOC: &'static str = "\
Writes a set's off-site record, offsite_STAMP.json, next to its manifest.

The record lists every object of the off-site copy with its size and SHA-256
(for an encrypted `.age` object also the plain archive's name, size and
SHA-256), the set's manifest last (its object key beside the others), and
whether the copy counts as verified: every uploaded object's read-back after the
upload (`s3_upload`'s `check`) matched the server's SHA-256 checksum or its
ETag (MD5, or the multipart ETag computed locally). An object only checked by
size makes the copy `unverified`: off-site retention (`offsite_prune`) keeps
such a set and never counts it. Upload the record right before the manifest:
`runbook verify --set STAMP --offsite` re-checks the objects it lists.

Options:
  manifest   string  the set's manifest, backup_STAMP.json (required)
  dest       string  ALIAS/BUCKET[/PREFIX] the copy went to (required)
  workflow   string  the workflow making the copy: workflow_name() (required)
  uploaded   array   `objects` of s3_upload's result (required)
  encrypted  array   `files` of age_encrypt's result (default: none)

Result:
  path      string  the record written
  verified  bool    every object was checked by SHA-256 or ETag
  detail    string  why (or why not)

Example:
  let record = offsite_record(#{ manifest: manifest, dest: cfg.offsite, workflow: workflow_name(),
                                 uploaded: copy.objects, encrypted: sealed.files });
  s3_upload(#{ files: [record.path], last: [manifest], dest: cfg.offsite });
";

    type Options = RecordOptions;
    type Output = RecordOutput;

    fn describe(options: &RecordOptions) -> String {
        format!(
            "write the off-site record of {} ({} objects at {})",
            options.manifest.display(),
            options.uploaded.len() + 1,
            options.dest
        )
    }

    fn dry_run(_options: &RecordOptions) -> DryRun<RecordOutput> {
        DryRun::Skip(RecordOutput::default())
    }

    async fn run(options: RecordOptions, _ctx: StepContext) -> Result<RecordOutput, StepError> {
        run_blocking("offsite_record", move || write_record(&options)).await
    }
}

/// The blocking body of the step: one object per uploaded file (with its
/// plain file when it was encrypted), the manifest's own object last, the
/// verification verdict, written atomically next to the manifest.
pub fn write_record(options: &RecordOptions) -> Result<RecordOutput, RecordError> {
    let manifest = &options.manifest;
    let not_a_manifest = || RecordError::NotAManifest {
        path: manifest.clone(),
    };
    let name = manifest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(not_a_manifest)?;
    let stamp = manifest_stamp(name).ok_or_else(not_a_manifest)?;
    let text = std::fs::read(manifest).map_err(|source| RecordError::Io {
        action: "read",
        path: manifest.clone(),
        source,
    })?;
    let (mut objects, weak) = uploaded_objects(options)?;
    objects.push(manifest_object(options, name, &text));
    let record = OffsiteRecord {
        format: RECORD_FORMAT,
        stamp: stamp.to_string(),
        workflow: options.workflow.clone(),
        dest: options.dest.clone(),
        encryption: if options.encrypted.is_empty() {
            "none"
        } else {
            "age"
        }
        .to_string(),
        created: chrono::Local::now().to_rfc3339(),
        objects,
        verified: verification(options.uploaded.len(), &weak),
    };
    let path = manifest.with_file_name(record_file_name(stamp));
    let json = serde_json::to_string_pretty(&record).expect("a record serializes");
    write_atomic(&path, format!("{json}\n").as_bytes(), 0o600).map_err(|source| {
        RecordError::Io {
            action: "write",
            path: path.clone(),
            source,
        }
    })?;
    Ok(RecordOutput {
        path,
        verified: record.is_verified(),
        detail: record.verified.detail,
    })
}

/// The record's object for each uploaded file, and the uploads whose
/// read-back only checked the size (`` `KEY` (CHECK) ``, one each).
fn uploaded_objects(
    options: &RecordOptions,
) -> Result<(Vec<OffsiteObject>, Vec<String>), RecordError> {
    let plain_by_encrypted: HashMap<&PathBuf, &EncryptedEntry> = options
        .encrypted
        .iter()
        .map(|e| (&e.encrypted, e))
        .collect();
    let mut objects = Vec::new();
    let mut weak = Vec::new();
    for uploaded in &options.uploaded {
        let sha256 = uploaded
            .sha256
            .clone()
            .ok_or_else(|| RecordError::NoChecksum {
                key: uploaded.key.clone(),
            })?;
        if !matches!(uploaded.check.as_str(), "sha256" | "etag") {
            weak.push(format!("`{}` ({})", uploaded.key, uploaded.check));
        }
        let plain = plain_by_encrypted.get(&uploaded.path).map(|e| PlainFile {
            name: e
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            bytes: e.bytes,
            sha256: e.sha256.clone(),
        });
        objects.push(OffsiteObject {
            key: uploaded.key.clone(),
            bytes: uploaded.bytes,
            sha256,
            check: uploaded.check.clone(),
            plain,
        });
    }
    Ok((objects, weak))
}

/// The manifest's own object (`name`, holding `text`), under the same prefix
/// as the uploaded files; `s3_upload` checks it when it goes up, after this
/// record is written.
fn manifest_object(options: &RecordOptions, name: &str, text: &[u8]) -> OffsiteObject {
    let prefix = options
        .uploaded
        .first()
        .and_then(|o| o.key.rsplit_once('/'))
        .map(|(p, _)| format!("{p}/"))
        .unwrap_or_default();
    OffsiteObject {
        key: format!("{prefix}{name}"),
        bytes: text.len() as u64,
        sha256: hex::encode(Sha256::digest(text)),
        // Checked by `s3_upload` when it goes up, after this record.
        check: "pending".to_string(),
        plain: None,
    }
}

/// The record's verdict: verified when every one of the `uploaded` objects
/// was matched by checksum or ETag, else which ones only had their size
/// checked (`weak`).
fn verification(uploaded: usize, weak: &[String]) -> OffsiteVerification {
    if weak.is_empty() {
        OffsiteVerification {
            result: VERIFIED.to_string(),
            detail: format!(
                "{uploaded} objects read back after the upload and matched by SHA-256 checksum or ETag"
            ),
        }
    } else {
        OffsiteVerification {
            result: "unverified".to_string(),
            detail: format!(
                "only the size could be checked for {}: the server gave no SHA-256 checksum or MD5 ETag",
                weak.join(", ")
            ),
        }
    }
}
