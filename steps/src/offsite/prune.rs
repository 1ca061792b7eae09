//! `offsite_prune`: off-site retention. Counts only the sets this workflow
//! copied whose off-site copy was verified; never touches anything else.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::backup::catalogue::{MANIFEST_MAX_BYTES, parse_created};
use crate::backup::manifest::Manifest;
use crate::offsite::record::{
    OffsiteRecord, RECORD_MAX_BYTES, manifest_stamp, record_file_name, record_stamp,
};
use crate::offsite::remote::Remote;
use crate::runtime::error::{ErrorKind, StepError};
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::s3::alias::{EnvLookup, process_env};
use crate::s3::connection::S3Connection;

/// The `offsite_prune` step.
pub struct OffsitePrune;

/// Options of `offsite_prune`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffsitePruneOptions {
    /// `ALIAS/BUCKET[/PREFIX]` holding the off-site sets.
    pub dest: String,
    /// Only sets whose manifest and record name this workflow count or go.
    pub workflow: String,
    /// Verified off-site sets to keep (at least 1).
    pub keep: u32,
    /// Stamps never removed (the set just copied).
    #[serde(default)]
    pub protect: Vec<String>,
    /// How to reach the destination (`config_dir`, `endpoint`, its keys,
    /// `region`, `ca_cert`): the options every S3 step takes.
    #[serde(flatten)]
    pub connection: S3Connection,
}

/// Result of `offsite_prune`.
#[derive(Debug, Default, Serialize)]
pub struct OffsitePruneOutput {
    /// Verified sets kept, newest first.
    pub kept: Vec<String>,
    /// Sets removed (under dry-run: that would be).
    pub removed: Vec<RemovedSet>,
    /// Sets of this workflow not counted because their copy is not verified.
    pub unverified: Vec<String>,
    /// Everything left alone and why.
    pub warnings: Vec<String>,
}

/// One removed set.
#[derive(Debug, Serialize)]
pub struct RemovedSet {
    /// Its stamp.
    pub stamp: String,
    /// Objects deleted.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Step for OffsitePrune {
    const NAME: &'static str = "offsite_prune";
    const DOC: &'static str = "\
Off-site retention: keeps the newest `keep` verified off-site sets, removes older ones.

A set counts only when its manifest (backup_STAMP.json) is off-site and names
this `workflow` as its origin, and its off-site record (offsite_STAMP.json,
from `offsite_record`) names this workflow too, says the copy was verified
after the upload, and every object it lists is there with the recorded size.
Anything else is left alone with a warning and never counted: a set without
manifest (incomplete), without record or not verified, another workflow's, or
one whose objects are missing or changed size. The newest verified set is
always kept (`keep` is at least 1), and so are the stamps in `protect`.

A set is removed manifest first (from then on it is incomplete, never mistaken
for a restorable set), then only the objects its record lists, then the record:
objects it does not list are never deleted. Under `runbook plan` nothing is
deleted; the result lists what would be.

Options:
  dest      string  ALIAS/BUCKET[/PREFIX] of the off-site copies (required)
  workflow  string  only this workflow's sets count or go: workflow_name() (required)
  keep      int     verified off-site sets to keep, at least 1 (required)
  protect   array   stamps never removed (default: none)
  config_dir, endpoint, access_key, secret_key, region, ca_cert: as for s3_upload

Result:
  kept        array  verified sets kept, newest first
  removed     array  #{ stamp, objects, bytes } removed (under dry-run: would be)
  unverified  array  this workflow's sets not counted: copy not verified
  warnings    array  what was left alone and why

Example:
  let pruned = offsite_prune(#{ dest: cfg.offsite, workflow: workflow_name(),
                                keep: cfg.offsite_keep, protect: [stamp] });
  for w in pruned.warnings { log_warn(w); }
";

    type Options = OffsitePruneOptions;
    type Output = OffsitePruneOutput;

    fn describe(options: &OffsitePruneOptions) -> String {
        format!(
            "keep the {} newest verified off-site sets of {} at {}",
            options.keep, options.workflow, options.dest
        )
    }

    fn dry_run(_options: &OffsitePruneOptions) -> DryRun<OffsitePruneOutput> {
        DryRun::Run
    }

    fn run(
        options: OffsitePruneOptions,
        ctx: StepContext,
    ) -> impl Future<Output = Result<OffsitePruneOutput, StepError>> + Send {
        prune_with_env(options, ctx, &process_env)
    }
}

/// A set of this workflow found off-site and verified.
struct VerifiedSet {
    stamp: String,
    made: Option<chrono::DateTime<chrono::FixedOffset>>,
    manifest_key: String,
    record_key: String,
    record: OffsiteRecord,
}

/// Runs the retention, reading `MC_HOST_*` and the MinIO-client config through `env`.
/// The environment is read before the returned future first runs.
pub fn prune_with_env(
    options: OffsitePruneOptions,
    ctx: StepContext,
    env: EnvLookup<'_>,
) -> impl Future<Output = Result<OffsitePruneOutput, StepError>> + Send + use<> {
    let resolved = options
        .connection
        .target("dest", &options.dest)
        .resolve(env);
    async move {
        let (endpoint, location) = resolved?;
        prune(options, ctx, Remote::connect(endpoint, location)?).await
    }
}

async fn prune(
    options: OffsitePruneOptions,
    ctx: StepContext,
    remote: Remote,
) -> Result<OffsitePruneOutput, StepError> {
    if options.keep < 1 {
        return Err(StepError::new(
            ErrorKind::Options,
            "offsite_prune: keep must be at least 1 (the newest verified off-site set always stays)",
        ));
    }
    let listed = remote.list().await?;
    let mut output = OffsitePruneOutput::default();
    let mut verified = Vec::new();
    for (stamp, (manifest, record)) in sets_by_stamp(&remote, &listed) {
        match (manifest, record) {
            (None, _) => output.warnings.push(format!(
                "off-site set {stamp} has no manifest (incomplete): left alone"
            )),
            (Some(manifest_key), record_key) => {
                let found = examine(
                    &remote,
                    &listed,
                    &options.workflow,
                    &stamp,
                    manifest_key,
                    record_key,
                )
                .await?;
                match found {
                    Examined::Verified(set) => verified.push(*set),
                    Examined::Unverified(why) => {
                        output.unverified.push(stamp.clone());
                        output.warnings.push(why);
                    }
                    Examined::NotOurs(why) => output.warnings.push(why),
                }
            }
        }
    }
    // Newest first: by the manifest's `created` time, then by stamp.
    verified.sort_by(|a, b| (b.made, &b.stamp).cmp(&(a.made, &a.stamp)));
    for (index, set) in verified.into_iter().enumerate() {
        if index < options.keep as usize || options.protect.contains(&set.stamp) {
            output.kept.push(set.stamp);
            continue;
        }
        output
            .removed
            .push(remove_set(&remote, &set, ctx.dry_run).await?);
    }
    Ok(output)
}

/// The manifest and record keys under the prefix, by stamp (only objects
/// directly under the prefix).
fn sets_by_stamp(
    remote: &Remote,
    listed: &HashMap<String, u64>,
) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mut sets: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for key in listed.keys() {
        let Some(name) = key.strip_prefix(&remote.location.prefix) else {
            continue;
        };
        if let Some(stamp) = manifest_stamp(name) {
            sets.entry(stamp.to_string()).or_default().0 = Some(key.clone());
        } else if let Some(stamp) = record_stamp(name) {
            sets.entry(stamp.to_string()).or_default().1 = Some(key.clone());
        }
    }
    sets
}

/// What a set with a manifest off-site is.
enum Examined {
    Verified(Box<VerifiedSet>),
    Unverified(String),
    NotOurs(String),
}

/// What the off-site set `stamp` is: another workflow's (or no runbook
/// set), a set of `workflow` whose copy cannot be counted as good (no
/// record, an unreadable or unverified one, an object missing or of another
/// size than recorded), or a verified set.
async fn examine(
    remote: &Remote,
    listed: &HashMap<String, u64>,
    workflow: &str,
    stamp: &str,
    manifest_key: String,
    record_key: Option<String>,
) -> Result<Examined, StepError> {
    let text = remote.read_small(&manifest_key, MANIFEST_MAX_BYTES).await?;
    let manifest = text.and_then(|t| Manifest::parse(&String::from_utf8_lossy(&t)).ok());
    if let Some(why) = not_made_by(manifest.as_ref(), workflow, stamp) {
        return Ok(Examined::NotOurs(why));
    }
    let not_counted = |why: &str| {
        Ok(Examined::Unverified(format!(
            "off-site set {stamp} {why}: kept, not counted (check it with `runbook verify --set {stamp} --offsite`)"
        )))
    };
    let Some(record_key) = record_key else {
        return not_counted("has no off-site record, so its copy was never verified");
    };
    let record = match remote.read_small(&record_key, RECORD_MAX_BYTES).await? {
        Some(text) => OffsiteRecord::parse(&String::from_utf8_lossy(&text)).ok(),
        None => None,
    };
    let Some(record) = record.filter(|r| r.stamp == stamp) else {
        return not_counted("has an unreadable off-site record");
    };
    if record.workflow != workflow {
        return Ok(Examined::NotOurs(format!(
            "off-site set {stamp}: its record names workflow `{}`: left alone",
            record.workflow
        )));
    }
    if !record.is_verified() {
        return not_counted(&format!("is not verified ({})", record.verified.detail));
    }
    if let Some(why) = listing_mismatch(&record, listed) {
        return not_counted(&why);
    }
    let made = manifest
        .as_ref()
        .and_then(|m| m.created.as_deref())
        .and_then(parse_created);
    Ok(Examined::Verified(Box::new(VerifiedSet {
        stamp: stamp.to_string(),
        made,
        manifest_key,
        record_key,
        record,
    })))
}

/// Why the set `stamp` whose manifest is `manifest` is not one `workflow`
/// made (no readable runbook manifest, or another workflow's), or `None`.
fn not_made_by(manifest: Option<&Manifest>, workflow: &str, stamp: &str) -> Option<String> {
    match manifest.and_then(|m| m.origin.as_ref()) {
        Some(origin) if origin.workflow == workflow => None,
        Some(origin) => Some(format!(
            "off-site set {stamp} was made by workflow `{}`: left alone",
            origin.workflow
        )),
        None => Some(format!(
            "off-site set {stamp} has no readable runbook manifest: left alone"
        )),
    }
}

/// The first object of `record` that the listing lacks or holds with
/// another size, said as "has ... of N bytes, ..." or "lacks ...", or `None`.
fn listing_mismatch(record: &OffsiteRecord, listed: &HashMap<String, u64>) -> Option<String> {
    record
        .objects
        .iter()
        .find_map(|object| match listed.get(&object.key) {
            Some(&size) if size == object.bytes => None,
            Some(size) => Some(format!(
                "has `{}` of {size} bytes, its record says {}",
                object.key, object.bytes
            )),
            None => Some(format!("lacks `{}`", object.key)),
        })
}

/// Deletes a set: the manifest first, then what the record lists, then the record.
async fn remove_set(
    remote: &Remote,
    set: &VerifiedSet,
    dry_run: bool,
) -> Result<RemovedSet, StepError> {
    let mut removed = RemovedSet {
        stamp: set.stamp.clone(),
        objects: 0,
        bytes: 0,
    };
    let mut keys = vec![set.manifest_key.clone()];
    keys.extend(
        set.record
            .objects
            .iter()
            .filter(|o| o.key != set.manifest_key)
            .map(|o| o.key.clone()),
    );
    keys.push(set.record_key.clone());
    debug_assert_eq!(set.record_key, remote.key(&record_file_name(&set.stamp)));
    for key in keys {
        if !dry_run {
            remote.delete(&key).await?;
        }
        removed.objects += 1;
        removed.bytes += set
            .record
            .objects
            .iter()
            .find(|o| o.key == key)
            .map(|o| o.bytes)
            .unwrap_or(0);
    }
    Ok(removed)
}
