//! `offsite_verify`: re-checks a set's off-site copy against its off-site
//! record: every object present with the recorded size, downloaded and
//! hashed to the recorded SHA-256 (of the encrypted bytes for `.age`
//! objects: no identity needed).

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::offsite::record::{OffsiteRecord, RECORD_MAX_BYTES, record_file_name};
use crate::offsite::remote::Remote;
use crate::runtime::error::{ErrorKind, StepError};
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::s3::alias::{EnvLookup, process_env};
use crate::s3::connection::S3Connection;

/// The `offsite_verify` step.
pub struct OffsiteVerify;

/// Options of `offsite_verify`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsiteVerifyOptions {
    /// The local record, `offsite_STAMP.json` next to the manifest.
    #[serde(default)]
    pub record: Option<PathBuf>,
    /// Without `record`: the set whose record is read off-site.
    #[serde(default)]
    pub stamp: Option<String>,
    /// `ALIAS/BUCKET[/PREFIX]` (default: the record's `dest`).
    #[serde(default)]
    pub dest: Option<String>,
    /// Fail the step when a problem is found (false: only report it).
    #[serde(default = "default_true")]
    pub fail: bool,
    /// How to reach the destination (`config_dir`, `endpoint`, its keys,
    /// `region`, `ca_cert`): the options every S3 step takes.
    #[serde(flatten)]
    pub connection: S3Connection,
}

fn default_true() -> bool {
    true
}

/// Result of `offsite_verify`.
#[derive(Debug, Default, Serialize)]
pub struct OffsiteVerifyOutput {
    /// The set.
    pub stamp: String,
    /// Where its copy is.
    pub dest: String,
    /// `ok` or `failed`.
    pub result: String,
    /// Per object, in the record's order.
    pub objects: Vec<CheckedObject>,
    /// Bytes downloaded and hashed.
    pub bytes: u64,
    /// Every problem, one line each, naming the object.
    pub errors: Vec<String>,
    /// Wall time.
    pub duration_ms: u64,
}

/// One object of [`OffsiteVerifyOutput`].
#[derive(Debug, Serialize)]
pub struct CheckedObject {
    /// The key.
    pub key: String,
    /// Its recorded size.
    pub bytes: u64,
    /// True when present with the recorded size and SHA-256.
    pub ok: bool,
    /// What is wrong.
    pub error: Option<String>,
}

impl Step for OffsiteVerify {
    const NAME: &'static str = "offsite_verify";
    const DOC: &'static str = "\
Re-checks a set's off-site copy: every object downloaded and hashed.

The objects and their SHA-256 come from the set's off-site record
(offsite_STAMP.json, written by `offsite_record`): the local one given as
`record`, or, with `stamp` and `dest`, the one off-site (when the backup machine
is lost). Each object must be listed with the recorded size, then it is
downloaded and hashed as it streams in (constant memory; nothing is written to
disk) and compared with the recorded SHA-256 (an encrypted `.age` object with
the SHA-256 of its encrypted bytes: the identity is not needed). The record's
own object must be there too. `runbook verify --set STAMP --offsite` runs this.

Options:
  record      string  the local record (default: read off-site, from `stamp` and `dest`)
  stamp       string  without `record`: the set (default: none)
  dest        string  ALIAS/BUCKET[/PREFIX] (default: the record's `dest`)
  fail        bool    fail the step on a problem (default true; false: only report)
  config_dir, endpoint, access_key, secret_key, region, ca_cert: as for s3_upload

Result:
  stamp, dest  string  the set and where its copy is
  result       string  \"ok\" or \"failed\"
  objects      array   per object: #{ key, bytes, ok, error }
  bytes        int     bytes downloaded
  errors       array   every problem, one line each naming the object
  duration_ms  int     wall time

Example:
  offsite_verify(#{ record: `${cfg.manifest_path}/offsite_${stamp}.json`, timeout: \"12h\" });
";

    const HANDLES_TIMEOUT: bool = false;

    type Options = OffsiteVerifyOptions;
    type Output = OffsiteVerifyOutput;

    fn describe(options: &OffsiteVerifyOptions) -> String {
        match (&options.record, &options.stamp) {
            (Some(record), _) => format!(
                "download and hash every object listed in {}",
                record.display()
            ),
            (None, stamp) => format!(
                "download and hash every object of set {} at {}",
                stamp.as_deref().unwrap_or("?"),
                options.dest.as_deref().unwrap_or("?")
            ),
        }
    }

    fn dry_run(_options: &OffsiteVerifyOptions) -> DryRun<OffsiteVerifyOutput> {
        DryRun::Run
    }

    fn changes(_options: &OffsiteVerifyOptions) -> bool {
        false
    }

    fn run(
        options: OffsiteVerifyOptions,
        ctx: StepContext,
    ) -> impl Future<Output = Result<OffsiteVerifyOutput, StepError>> + Send {
        verify_with_env(options, ctx, &process_env)
    }
}

use std::future::Future;

/// Runs the check, reading `MC_HOST_*` and the MinIO-client config through
/// `env` (and the local record) before the returned future first runs.
pub fn verify_with_env(
    options: OffsiteVerifyOptions,
    ctx: StepContext,
    env: EnvLookup<'_>,
) -> impl Future<Output = Result<OffsiteVerifyOutput, StepError>> + Send + use<> {
    let local = options
        .record
        .as_ref()
        .map(|path| OffsiteRecord::read(path).map_err(|e| StepError::new(ErrorKind::Io, e)));
    let dest = match (&options.dest, &local) {
        (Some(dest), _) => Ok(dest.clone()),
        (None, Some(Ok(record))) => Ok(record.dest.clone()),
        (None, Some(Err(_))) => Ok(String::new()),
        (None, None) => Err(StepError::new(
            ErrorKind::Options,
            "give `record` (the local offsite_STAMP.json), or `stamp` and `dest`",
        )),
    };
    let resolved = dest.and_then(|dest| {
        options
            .connection
            .target("dest", &dest)
            .resolve(env)
            .map_err(StepError::from)
    });
    async move {
        let local = local.transpose()?;
        let (endpoint, location) = resolved?;
        let remote = Remote::connect(endpoint, location)?;
        verify(options, ctx, local, remote).await
    }
}

async fn verify(
    options: OffsiteVerifyOptions,
    ctx: StepContext,
    local: Option<OffsiteRecord>,
    remote: Remote,
) -> Result<OffsiteVerifyOutput, StepError> {
    let started = Instant::now();
    let record = match local {
        Some(record) => record,
        None => record_off_site(&options, &remote).await?,
    };
    let mut output = OffsiteVerifyOutput {
        stamp: record.stamp.clone(),
        dest: options.dest.clone().unwrap_or(record.dest.clone()),
        ..OffsiteVerifyOutput::default()
    };
    let listed = remote.list().await?;
    let mut keys: Vec<(String, u64, Option<String>)> = record
        .objects
        .iter()
        .map(|o| (o.key.clone(), o.bytes, Some(o.sha256.clone())))
        .collect();
    if options.record.is_some()
        && let Some(own) = record.own_key()
    {
        keys.push((own, 0, None));
    }
    for (key, bytes, sha256) in keys {
        let error = check_object(&remote, &listed, &key, bytes, sha256.as_deref(), &ctx).await?;
        if let Some((hashed, _)) = error.as_ref().err() {
            output.bytes += hashed;
        } else if let Ok(hashed) = error {
            output.bytes += hashed;
        }
        let error = error.err().map(|(_, e)| e);
        if let Some(e) = &error {
            output.errors.push(e.clone());
        }
        output.objects.push(CheckedObject {
            key,
            bytes,
            ok: error.is_none(),
            error,
        });
    }
    output.result = if output.errors.is_empty() {
        "ok"
    } else {
        "failed"
    }
    .to_string();
    output.duration_ms = started.elapsed().as_millis() as u64;
    if options.fail && !output.errors.is_empty() {
        return Err(StepError::new(
            ErrorKind::Integrity,
            format!(
                "the off-site copy of set {} at {} has {} problem(s): {}",
                output.stamp,
                output.dest,
                output.errors.len(),
                output.errors.join("; ")
            ),
        ));
    }
    Ok(output)
}

/// The record of `stamp`, read off-site.
async fn record_off_site(
    options: &OffsiteVerifyOptions,
    remote: &Remote,
) -> Result<OffsiteRecord, StepError> {
    let Some(stamp) = &options.stamp else {
        return Err(StepError::new(
            ErrorKind::Options,
            "give `record` (the local offsite_STAMP.json), or `stamp` and `dest`",
        ));
    };
    let key = remote.key(&record_file_name(stamp));
    let Some(text) = remote.read_small(&key, RECORD_MAX_BYTES).await? else {
        return Err(StepError::new(
            ErrorKind::NotFound,
            format!(
                "no off-site record {}: set {stamp} has no verified off-site copy there",
                remote.describe(&key)
            ),
        ));
    };
    OffsiteRecord::parse(&String::from_utf8_lossy(&text)).map_err(|e| {
        StepError::new(
            ErrorKind::InvalidResponse,
            format!("{} is not an off-site record: {e}", remote.describe(&key)),
        )
    })
}

/// Checks one object: `Ok(bytes hashed)`, or the bytes hashed and the
/// problem; a failure to reach the server is the step's error.
async fn check_object(
    remote: &Remote,
    listed: &std::collections::HashMap<String, u64>,
    key: &str,
    bytes: u64,
    sha256: Option<&str>,
    ctx: &StepContext,
) -> Result<Result<u64, (u64, String)>, StepError> {
    let Some(&size) = listed.get(key) else {
        return Ok(Err((0, format!("{} is missing", remote.describe(key)))));
    };
    let Some(expected) = sha256 else {
        return Ok(Ok(0));
    };
    if size != bytes {
        return Ok(Err((
            0,
            format!(
                "{} has {size} bytes, the record says {bytes}",
                remote.describe(key)
            ),
        )));
    }
    let Some((got_bytes, got)) = remote.hash(key, &ctx.cancel).await? else {
        return Ok(Err((0, format!("{} is missing", remote.describe(key)))));
    };
    if got_bytes != bytes || !got.eq_ignore_ascii_case(expected) {
        return Ok(Err((
            got_bytes,
            format!(
                "{} does not match the record: sha256 {got} ({got_bytes} bytes), the record says {expected} ({bytes} bytes)",
                remote.describe(key)
            ),
        )));
    }
    tracing::debug!("off-site {key}: {bytes} bytes, sha256 matches");
    Ok(Ok(got_bytes))
}
