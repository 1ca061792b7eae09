//! Copying a bucket out: what `mcli_mirror` (the bucket downloaded into a
//! folder) and `s3_archive` (the bucket streamed into a tar archive) share,
//! so that both modes of the attachment backup list, plan, refuse, read,
//! pace and check objects the same way.
//!
//! Here: the listing mapped onto files and folders with the counts both
//! results report and the refused keys logged ([`list_bucket`]), the client
//! that reads objects ([`object_reader`]), opening an object and recognising
//! one deleted after the listing ([`open_object`], [`warn_vanished`]), the
//! throttle and progress every chunk goes through ([`ChunkPace`]) and the
//! check of a body against a single-part ETag ([`etag_md5_mismatch`]).
//! What each does with the bytes (files renamed into place, with whole-object
//! retries; members of one tar stream) stays in its own step file.

use std::sync::Arc;

use md5::{Digest, Md5};
use object_store::aws::AmazonS3;
use object_store::{GetOptions, GetResult, ObjectStore, RetryConfig};

use crate::runtime::error::StepError;
use crate::runtime::progress::Progress;
use crate::runtime::step::StepContext;
use crate::runtime::throttle::{MaxRate, Throttle};
use crate::s3::alias::{S3Endpoint, S3Location, transfer_client_options};
use crate::s3::keys::{KeyPlan, KeyPlanner};
use crate::s3::listing::{LIST_CONNECT_TIMEOUT, LIST_PAGE_TIMEOUT, for_each_object};

/// Refused keys listed in a step's result (all of them are counted and logged).
pub const REFUSED_KEYS_SHOWN: usize = 100;

/// Default of the `concurrency` option: objects read at once.
pub fn default_concurrency() -> usize {
    8
}

/// Default of the `verify_md5` option.
pub fn default_true() -> bool {
    true
}

/// The bucket listed and mapped onto files and folders, with the counts
/// both steps report.
#[derive(Debug)]
pub struct ListedBucket {
    /// The files and folders to store, and the refused keys.
    pub plan: KeyPlan,
    /// Objects that map to files (refused keys excluded).
    pub objects: u64,
    /// Their total size in the listing.
    pub bytes: u64,
    /// Keys refused because they cannot be stored as file names.
    pub refused: u64,
    /// The first [`REFUSED_KEYS_SHOWN`] refused keys, escaped.
    pub refused_keys: Vec<String>,
}

/// Lists the location (the first request is the reachability check), maps
/// its keys and logs every refused one; stops when the run is interrupted.
pub async fn list_bucket(
    endpoint: &S3Endpoint,
    location: &S3Location,
    ctx: &StepContext,
) -> Result<ListedBucket, StepError> {
    let http = endpoint.request_client(LIST_CONNECT_TIMEOUT, LIST_PAGE_TIMEOUT)?;
    // Each object is mapped as its page arrives: the plan keeps a compact
    // form of it, and the listing is never held whole beside the plan.
    let mut planner = KeyPlanner::new(&location.prefix);
    let listing = for_each_object(&http, endpoint, location, |object| planner.add(object));
    let listed = tokio::select! {
        listed = listing => listed,
        _ = ctx.cancel.cancelled() => Err(StepError::cancelled()),
    };
    listed?;
    let plan = planner.finish();
    let refused_keys = report_refused(&plan, &location.bucket, &ctx.label);
    Ok(ListedBucket {
        objects: plan.files.len() as u64,
        bytes: plan.files.iter().map(|f| f.size).sum(),
        refused: plan.refused.len() as u64,
        refused_keys,
        plan,
    })
}

/// Logs every refused key (escaped) with its reason; returns the first
/// [`REFUSED_KEYS_SHOWN`] of them for the step's result.
fn report_refused(plan: &KeyPlan, bucket: &str, label: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for (key, reason) in &plan.refused {
        let escaped = key.escape_debug().to_string();
        tracing::warn!("{label}: refusing key `{escaped}` in bucket `{bucket}`: {reason}");
        if keys.len() < REFUSED_KEYS_SHOWN {
            keys.push(escaped);
        }
    }
    keys
}

/// The client that reads the bucket's objects (object_store retries and
/// resumes, by range with the ETag pinned, a body whose connection drops).
pub fn object_reader(endpoint: &S3Endpoint, location: &S3Location) -> Result<AmazonS3, StepError> {
    Ok(endpoint.object_store(
        &location.bucket,
        transfer_client_options(),
        RetryConfig::default(),
    )?)
}

/// Opens `key` for reading; `Ok(None)` when it is gone (deleted after the
/// listing).
pub async fn open_object(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<GetResult>, object_store::Error> {
    let location = object_store::path::Path::parse(key)
        .expect("map_key only accepts keys that are object paths");
    match store.get_opts(&location, GetOptions::default()).await {
        Ok(result) => Ok(Some(result)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Logs that `key` was deleted from `bucket` after the listing and so was
/// `left_out` (e.g. "not mirrored"); returns the line (without the label).
pub fn warn_vanished(label: &str, key: &str, bucket: &str, left_out: &str) -> String {
    let line = format!(
        "`{}` was deleted from bucket `{bucket}` after the listing; {left_out}",
        key.escape_debug()
    );
    tracing::warn!("{label}: {line}");
    line
}

/// What every chunk read from the bucket goes through: the `max_rate`
/// throttle, then the progress bar.
pub struct ChunkPace {
    progress: Progress,
    throttle: Option<Arc<Throttle>>,
}

impl ChunkPace {
    /// A progress bar for `total` bytes (the step's label and mode) and the
    /// throttle of `max_rate`, if any.
    pub fn new(ctx: &StepContext, total: u64, max_rate: MaxRate) -> ChunkPace {
        ChunkPace {
            progress: Progress::new(ctx.progress, &ctx.label, total),
            throttle: max_rate.throttle(),
        }
    }

    /// Waits for the throttle to allow `bytes` more, then counts them.
    pub async fn take(&self, bytes: u64) {
        if let Some(throttle) = &self.throttle {
            throttle.take(bytes).await;
        }
        self.progress.inc(bytes);
    }

    /// Ends the progress bar.
    pub fn finish(&self) {
        self.progress.finish();
    }
}

/// A body whose MD5 differs from its object's single-part ETag.
#[derive(Debug, PartialEq, Eq)]
pub struct Md5Mismatch {
    /// The ETag's MD5, lower-case hex.
    pub expected: String,
    /// The body's MD5, lower-case hex.
    pub got: String,
}

/// Compares `md5` (of the body read) with `etag` when it is a single-part
/// MD5; multipart ETags and missing ones prove nothing and pass.
pub fn etag_md5_mismatch(etag: Option<&str>, md5: Md5) -> Option<Md5Mismatch> {
    let expected = etag.and_then(single_part_md5)?;
    let got = hex::encode(md5.finalize());
    (got != expected).then_some(Md5Mismatch { expected, got })
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

    #[test]
    fn a_body_is_checked_against_a_single_part_etag_only() {
        let md5_of = |data: &[u8]| {
            let mut md5 = Md5::new();
            md5.update(data);
            md5
        };
        // MD5("abc") = 900150983cd24fb0d6963f7d28e17f72
        let etag = Some("\"900150983CD24FB0D6963F7D28E17F72\"");
        assert_eq!(etag_md5_mismatch(etag, md5_of(b"abc")), None);
        assert_eq!(
            etag_md5_mismatch(etag, md5_of(b"abd")),
            Some(Md5Mismatch {
                expected: "900150983cd24fb0d6963f7d28e17f72".into(),
                got: hex::encode(md5_of(b"abd").finalize()),
            })
        );
        assert_eq!(etag_md5_mismatch(Some("\"0123-2\""), md5_of(b"x")), None);
        assert_eq!(etag_md5_mismatch(None, md5_of(b"x")), None);
    }
}
