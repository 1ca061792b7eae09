//! `prune`: retention of backup sets. Keeps the newest `keep` sets that are
//! complete and verified, removes the rest by rules that never take away the
//! last good backup, and deletes the removed sets' Elasticsearch snapshots.
//!
//! The decision ([`plan`]) is plain data computed from the
//! [`Catalogue`](crate::backup::catalogue::Catalogue), so it is unit-tested
//! without files; the step then carries it out, or under dry-run only reports it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::backup::catalogue::{
    BackupSet, Catalogue, CatalogueError, Origin, Owner, SnapshotRef, is_plain_name,
};
use crate::backup::layout::MANIFEST_PREFIX;
use crate::runtime::atomic_file::sync_parent;
use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::search::client::{
    HttpClient, HttpError, default_elasticsearch_url, display_url, tls_summary,
};
use crate::search::snapshot_api::{delete_snapshot, snapshot_url};

/// The timeout when the script gives none: deleting snapshots of a big
/// repository takes a while each.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The `prune` step.
pub struct Prune;

/// Options of `prune`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneOptions {
    /// The folder holding the set manifests `backup_<STAMP>.json`.
    pub manifest_path: PathBuf,
    /// The workflow whose sets these are: only sets whose manifest records
    /// this workflow and `manifest_path` as their `origin` are counted or
    /// removed.
    pub workflow: String,
    /// Folders holding archives and markers (besides those the manifests name).
    #[serde(default)]
    pub archive_paths: Vec<PathBuf>,
    /// How many complete and verified sets to keep; 0 turns pruning off.
    pub keep: u64,
    /// Where to delete the removed sets' snapshots (absent: snapshots are left).
    #[serde(default)]
    pub elasticsearch: Option<PruneElasticsearch>,
    /// Stamps never removed (e.g. the current run's).
    #[serde(default)]
    pub protect: Vec<String>,
}

crate::search::client::with_http_connection! {
    /// The `elasticsearch` option of `prune`: the connection, as for `es_snapshot`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PruneElasticsearch {
        /// Elasticsearch's URL.
        #[serde(default = "default_elasticsearch_url")]
        pub url: Url,
        /// The snapshot repository, for the plan's description: each set's
        /// snapshot is deleted in the repository its manifest names.
        #[serde(default)]
        pub repository: Option<String>,
    }
}

/// A set that stays, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeptSet {
    /// The set's stamp.
    pub stamp: String,
    /// Why it is kept.
    pub reason: String,
}

/// A set to remove, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Removal {
    /// The set's stamp.
    pub stamp: String,
    /// Why it goes.
    pub reason: String,
    /// Its files that exist, in removal order (manifest first, marker last).
    pub files: Vec<PathBuf>,
    /// Its Elasticsearch snapshot, if it has one.
    pub snapshot: Option<SnapshotRef>,
    /// Bytes its files take.
    pub bytes: u64,
}

/// What retention decides, before anything is removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PrunePlan {
    /// Sets that stay, oldest first.
    pub kept: Vec<KeptSet>,
    /// Sets to remove, in removal order: incomplete ones first, then the
    /// others, each oldest first.
    pub removals: Vec<Removal>,
    /// Sets this workflow did not make (foreign, damaged, another
    /// workflow's): never counted, never removed.
    pub left_alone: Vec<KeptSet>,
}

/// Decides which sets go. Only sets `owner` made count and can go: a
/// readable runbook manifest names them and records `owner`'s workflow and
/// manifest folder ([`BackupSet::is_owned_by`]). Every other set (no
/// manifest, another workflow's, a damaged manifest) is left alone, listed in
/// `left_alone`, and counts for nothing. Among the owned sets, ordered by the
/// time their manifest says they were made (not by name: a local-time stamp
/// runs backwards across a daylight-saving fall-back):
/// - `keep == 0`: nothing goes;
/// - a `protect`ed stamp stays;
/// - the newest `keep` sets that are complete and verified (`ok`, nothing
///   missing since) stay; the newest of them always stays;
/// - an incomplete set goes when it is older than the newest complete set,
///   else it stays (the backup may still be running);
/// - a complete set that is not verified goes when it is older than the
///   newest verified set, else it stays (so retention never leaves fewer good
///   backups than before, even when verification keeps failing);
/// - a verified set beyond the newest `keep` goes.
pub fn plan(catalogue: &Catalogue, keep: u64, protect: &[String], owner: &Owner) -> PrunePlan {
    let mut result = PrunePlan::default();
    let mut owned: Vec<&BackupSet> = Vec::new();
    for set in &catalogue.sets {
        if set.is_owned_by(owner) {
            owned.push(set);
        } else {
            result.left_alone.push(KeptSet {
                stamp: set.stamp.clone(),
                reason: left_alone_reason(set),
            });
        }
    }
    if keep == 0 {
        return result;
    }
    owned.sort_by_key(|s| (s.made_at(), s.stamp.clone()));
    let standing = Standing::of(&owned, keep, protect);
    let mut incomplete_removals = Vec::new();
    let mut other_removals = Vec::new();
    for (index, set) in owned.iter().enumerate() {
        match standing.fate(index) {
            Fate::Kept(reason) => result.kept.push(KeptSet {
                stamp: set.stamp.clone(),
                reason,
            }),
            Fate::RemovedFirst(reason) => incomplete_removals.push(removal(set, reason)),
            Fate::Removed(reason) => other_removals.push(removal(set, reason)),
        }
    }
    result.removals = incomplete_removals;
    result.removals.extend(other_removals);
    result
}

/// Where the owned sets stand, oldest first: what the fate of each depends on.
struct Standing<'a> {
    owned: &'a [&'a BackupSet],
    keep: u64,
    protect: &'a [String],
    /// Indexes of the newest `keep` complete and verified sets.
    kept_good: Vec<usize>,
    /// Index of the newest complete and verified set.
    newest_good: Option<usize>,
    /// Index of the newest complete set.
    newest_complete: Option<usize>,
}

/// What retention does with one owned set, and why.
enum Fate {
    Kept(String),
    /// Removed before the others: an incomplete set.
    RemovedFirst(String),
    Removed(String),
}

impl<'a> Standing<'a> {
    fn of(owned: &'a [&'a BackupSet], keep: u64, protect: &'a [String]) -> Standing<'a> {
        let good: Vec<usize> = (0..owned.len())
            .filter(|&i| owned[i].is_verified_ok())
            .collect();
        Standing {
            owned,
            keep,
            protect,
            kept_good: good[good.len().saturating_sub(keep as usize)..].to_vec(),
            newest_good: good.last().copied(),
            newest_complete: (0..owned.len()).rev().find(|&i| owned[i].complete),
        }
    }

    /// The fate of the set at `index`, by the rules of [`plan`].
    fn fate(&self, index: usize) -> Fate {
        let set = self.owned[index];
        let keep = self.keep;
        if self.protect.contains(&set.stamp) {
            Fate::Kept("protected".to_string())
        } else if self.kept_good.contains(&index) {
            Fate::Kept(if Some(index) == self.newest_good {
                "the newest verified set".to_string()
            } else {
                format!("one of the {keep} newest verified sets")
            })
        } else if !set.complete {
            let what = incomplete_reason(set);
            match self.newest_complete {
                Some(newest) if index < newest => Fate::RemovedFirst(format!(
                    "incomplete ({what}) and older than the newest complete set {}",
                    self.owned[newest].stamp
                )),
                _ => Fate::Kept(format!(
                    "incomplete ({what}) but newer than any complete set: the backup may still be running"
                )),
            }
        } else if !set.is_verified_ok() {
            let what = unverified_reason(set);
            match self.newest_good {
                Some(newest) if index < newest => Fate::Removed(format!(
                    "not verified ({what}) and older than the newest verified set {}",
                    self.owned[newest].stamp
                )),
                _ => Fate::Kept(format!(
                    "not verified ({what}) but newer than any verified set"
                )),
            }
        } else {
            Fate::Removed(format!(
                "verified, but older than the {keep} newest verified sets"
            ))
        }
    }
}

/// Why retention leaves a set alone that `owner` did not make.
fn left_alone_reason(set: &BackupSet) -> String {
    let what = match set.origin {
        Origin::Damaged => "damaged",
        Origin::Foreign => "foreign",
        Origin::Runbook => "another workflow's",
    };
    let why = match (&set.written_by, set.problems.first()) {
        (Some(w), _) if set.origin == Origin::Runbook => format!(
            "made by workflow `{}` for manifest folder {}",
            w.workflow,
            w.manifest_path.display()
        ),
        (_, Some(problem)) => problem.clone(),
        (_, None) => "no runbook manifest".to_string(),
    };
    let parts = set.present_parts();
    let parts = if parts.is_empty() {
        "no parts".to_string()
    } else {
        parts.join(",")
    };
    format!("{what} set ({parts}): {why}; never counted or removed by retention")
}

fn incomplete_reason(set: &BackupSet) -> String {
    match (&set.manifest, set.problems.first()) {
        (None, _) => "no manifest".to_string(),
        (Some(_), Some(problem)) => problem.clone(),
        (Some(_), None) => "the manifest does not say complete".to_string(),
    }
}

fn unverified_reason(set: &BackupSet) -> String {
    if let Some(problem) = set.problems.first() {
        return problem.clone();
    }
    match &set.verified {
        None => "never verified".to_string(),
        Some(v) => format!("last verification {} at {}", v.result, v.time),
    }
}

fn removal(set: &BackupSet, reason: String) -> Removal {
    let files: Vec<PathBuf> = set
        .listed_files_in_removal_order()
        .into_iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    Removal {
        stamp: set.stamp.clone(),
        reason,
        files,
        // Only a snapshot the manifest names, in the repository it names.
        snapshot: set
            .snapshot
            .clone()
            .filter(|s| s.listed && s.repository.is_some()),
        bytes: set.bytes,
    }
}

/// One removed set in the result.
#[derive(Clone, Debug, Serialize)]
pub struct RemovedSet {
    /// The set's stamp.
    pub stamp: String,
    /// Why it was removed.
    pub reason: String,
    /// The files removed (under dry-run: that would be).
    pub files: Vec<PathBuf>,
    /// `repository/snapshot` deleted (or that would be); `()` when none.
    pub snapshot: Option<String>,
    /// Bytes freed.
    pub bytes: u64,
}

/// Result of `prune`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneOutput {
    /// Sets kept, with the reason.
    pub kept: Vec<KeptSet>,
    /// Sets removed, in removal order.
    pub removed: Vec<RemovedSet>,
    /// Sets this workflow did not make, left alone, with the reason.
    pub left_alone: Vec<KeptSet>,
    /// Things left alone that the admin may want to look at.
    pub warnings: Vec<String>,
    /// True when nothing was removed because of --dry-run.
    pub dry_run: bool,
}

/// Why `prune` failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The folders cannot be read.
    #[error(transparent)]
    Catalogue(#[from] CatalogueError),
    /// A protected stamp is not a stamp: a typo would protect nothing.
    #[error("`protect` holds `{0}`, which is not a stamp like 20261126_01h15m00s")]
    BadProtect(String),
    /// The snapshot repository could not be checked before removing anything.
    #[error("cannot check snapshot repository `{repository}` before pruning (nothing was removed)")]
    RepositoryCheck {
        /// The repository.
        repository: String,
        /// What went wrong.
        source: Box<HttpError>,
    },
    /// A file of a set could not be removed.
    #[error("cannot remove {path} of set {stamp}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The set.
        stamp: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A removed set's snapshot could not be deleted.
    #[error(
        "set {stamp}: its files are removed but snapshot {repository}/{snapshot} could not be deleted; \
         delete it by hand with DELETE /_snapshot/{repository}/{snapshot}"
    )]
    Snapshot {
        /// The set.
        stamp: String,
        /// The repository.
        repository: String,
        /// The snapshot.
        snapshot: String,
        /// What Elasticsearch said.
        source: Box<HttpError>,
    },
    /// The worker thread reading or removing files panicked.
    #[error("prune worker thread panicked")]
    Worker,
    /// The run was interrupted (between two sets: none is half removed).
    #[error("interrupted after removing {0} set(s)")]
    Cancelled(usize),
}

impl StepFailure for PruneError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            PruneError::Catalogue(_) | PruneError::Remove { .. } => ErrorKind::Io,
            PruneError::BadProtect(_) => ErrorKind::Options,
            PruneError::RepositoryCheck { source, .. } | PruneError::Snapshot { source, .. } => {
                source.error_kind()
            }
            PruneError::Worker => ErrorKind::Internal,
            PruneError::Cancelled(_) => ErrorKind::Cancelled,
        }
    }
}

impl Step for Prune {
    const NAME: &'static str = "prune";
    const DOC: &'static str = "\
Removes old backup sets: keeps the newest `keep` complete and verified sets.

Finds the sets as `runbook list` does: the manifests backup_<STAMP>.json in
`manifest_path`, and the archives, sidecars and .info markers in
`archive_paths` and in the folders the manifests name (a missing archive
folder is only a warning). Only sets this workflow made count and can go: a
readable manifest names them, every name in it has the exact shape runbook
writes, and its `origin` records `workflow` and `manifest_path`. Everything
else is left alone, never counted, and named in `warnings`: sets without a
manifest (TheHive's own scripts, hand copies, runs that did not finish),
another workflow's sets, and damaged manifests (unreadable, or naming a
snapshot, repository, stamp or path runbook never writes). Among this
workflow's sets, ordered by the manifest's `created` time, with `keep` > 0:
- the newest `keep` sets that are complete and verified (the manifest's
  `verified.result` is \"ok\" and no archive went missing or changed size
  since) stay; the newest verified set always stays;
- an incomplete set is removed when it is older than the newest complete set
  (a newer one may be a backup still running, and stays); these go first;
- a complete set that is not verified is removed when it is older than the
  newest verified set (newer ones stay: retention never leaves fewer good
  backups, even when verification keeps failing);
- verified sets beyond the newest `keep` are removed;
- stamps in `protect` always stay.
A set is removed manifest first (so a half-removed set is never taken for
complete; the folder is synced before going on), then the archives it names
and their leftover .partial files, their .sha256 sidecars, the .info marker,
and last the Elasticsearch snapshot it names, in the repository it names
(DELETE /_snapshot/<repository>/<snapshot>, each name percent-encoded; 404
counts as already gone). Files found by name alone are never removed. With `elasticsearch`, the repository is checked before
anything is removed. Without it, snapshots are left and listed in `warnings`.
An interruption stops between two sets. `keep: 0` does nothing at all.

Under --dry-run the step lists exactly what it would remove and why, and
removes nothing (the repository check runs for real).

Options:
  manifest_path   string   folder of the set manifests (required)
  workflow        string   the workflow whose sets to prune, as its manifests'
                           origin records it, e.g. workflow_name() (required)
  archive_paths   array    folders holding archives and .info markers (default [])
  keep            int      complete and verified sets to keep; 0 = off (required)
  elasticsearch   map      where to delete snapshots: url (default
                           \"http://127.0.0.1:9200\"), repository (shown in the plan;
                           each snapshot is deleted in the repository its manifest
                           names), user + password, api_key,
                           ca_cert, insecure, as for es_snapshot (default: snapshots left)
  protect         array    stamps never removed, e.g. the current run's (default [])
  timeout         duration (common option) default \"1h\"

Result:
  kept      array   #{ stamp, reason } per set kept, oldest first
  removed   array   #{ stamp, reason, files, snapshot, bytes } per set removed, in
                    removal order; snapshot is \"repository/name\" or ()
  left_alone array  #{ stamp, reason } per set this workflow did not make
  warnings  array   things left alone (those sets, snapshots not deleted,
                    unreadable folders)
  dry_run   bool    true under --dry-run: nothing was removed

Example:
  let pruned = prune(#{
      manifest_path: cfg.manifest_path, workflow: workflow_name(), keep: cfg.keep, protect: [stamp],
      archive_paths: [cfg.cassandra_archive_path, cfg.elasticsearch_archive_path, cfg.storage_archive_path],
      elasticsearch: #{ url: cfg.elasticsearch_url, repository: cfg.elasticsearch_repository },
  });
  for r in pruned.removed { log_info(`removed set ${r.stamp}: ${r.reason}`); }
";

    type Options = PruneOptions;
    type Output = PruneOutput;

    fn describe(options: &PruneOptions) -> String {
        if options.keep == 0 {
            return "prune nothing (keep is 0)".to_string();
        }
        let snapshots = match &options.elasticsearch {
            Some(es) => format!(
                ", deleting their snapshots in {} at {}{}{}",
                es.repository
                    .as_deref()
                    .unwrap_or("the repositories their manifests name"),
                display_url(&es.url),
                es.connection().auth_summary(),
                tls_summary(&es.ca_cert, es.insecure)
            ),
            None => String::new(),
        };
        format!(
            "keep the newest {} verified backup sets in {} and remove older ones{snapshots}",
            options.keep,
            options.manifest_path.display()
        )
    }

    fn label(options: &PruneOptions) -> Option<String> {
        Some(format!("prune (keep {})", options.keep))
    }

    fn default_timeout(_options: &PruneOptions) -> Option<Duration> {
        Some(DEFAULT_TIMEOUT)
    }

    fn dry_run(_options: &PruneOptions) -> DryRun<PruneOutput> {
        DryRun::Run
    }

    async fn run(options: PruneOptions, ctx: StepContext) -> Result<PruneOutput, StepError> {
        Ok(prune(options, &ctx).await?)
    }
}

/// The step's body: checks `protect`, finds the sets, decides ([`plan`]),
/// checks the snapshot repository, then removes the sets one by one,
/// stopping between two sets when interrupted.
async fn prune(options: PruneOptions, ctx: &StepContext) -> Result<PruneOutput, PruneError> {
    let mut output = PruneOutput {
        dry_run: ctx.dry_run,
        ..PruneOutput::default()
    };
    if options.keep == 0 {
        return Ok(output);
    }
    if let Some(bad) = options
        .protect
        .iter()
        .find(|p| crate::backup::layout::parse_stamp(p).is_none())
    {
        return Err(PruneError::BadProtect(bad.clone()));
    }
    let manifest_path = options.manifest_path.clone();
    let archive_paths = options.archive_paths.clone();
    let catalogue =
        tokio::task::spawn_blocking(move || Catalogue::scan(&manifest_path, &archive_paths))
            .await
            .map_err(|_| PruneError::Worker)??;
    output.warnings.extend(catalogue.warnings.iter().cloned());
    let owner = Owner {
        workflow: options.workflow.clone(),
        manifest_path: options.manifest_path.clone(),
    };
    let decided = plan(&catalogue, options.keep, &options.protect, &owner);
    report_kept(&mut output, decided.kept, decided.left_alone, &ctx.label);

    // Which snapshot each removal deletes, and whether its repository answers:
    // checked before the first file goes, so an unreachable Elasticsearch
    // does not leave snapshots that nothing refers to any more.
    let elasticsearch = match &options.elasticsearch {
        Some(es) => Some((es, snapshot_client(es, ctx)?)),
        None => None,
    };
    let targets = snapshot_targets(
        &decided.removals,
        elasticsearch.as_ref().map(|(es, client)| (*es, client)),
        &mut output.warnings,
    )
    .await?;
    for (removal, target) in decided.removals.into_iter().zip(targets) {
        if ctx.cancel.is_cancelled() {
            return Err(PruneError::Cancelled(output.removed.len()));
        }
        let removed = remove_set(
            removal,
            target,
            elasticsearch.as_ref().map(|(es, client)| (*es, client)),
            ctx,
        )
        .await?;
        output.removed.push(removed);
    }
    Ok(output)
}

/// Puts the sets kept and left alone in the result, each kept one logged
/// and each left alone one also returned as a warning (the stock workflow
/// logs every one of them).
fn report_kept(
    output: &mut PruneOutput,
    kept: Vec<KeptSet>,
    left_alone: Vec<KeptSet>,
    label: &str,
) {
    output.kept = kept;
    for alone in &left_alone {
        output
            .warnings
            .push(format!("set {} left alone: {}", alone.stamp, alone.reason));
    }
    output.left_alone = left_alone;
    for kept in &output.kept {
        tracing::info!("{label}: keeping set {}: {}", kept.stamp, kept.reason);
    }
}

/// The client deleting the removed sets' snapshots; a connection that cannot
/// be set up fails the step before anything is removed.
fn snapshot_client(es: &PruneElasticsearch, ctx: &StepContext) -> Result<HttpClient, PruneError> {
    HttpClient::new(&es.connection(), &es.url, ctx).map_err(|source| PruneError::RepositoryCheck {
        repository: es.repository.clone().unwrap_or_default(),
        source: Box::new(source),
    })
}

/// For each removal, in order, the snapshot (repository, name) it deletes:
/// `None` when it has none, when there is no `elasticsearch` option, when its
/// names are not plain, or when its repository is not registered (each said
/// in `warnings`). Each repository is asked once.
async fn snapshot_targets(
    removals: &[Removal],
    elasticsearch: Option<(&PruneElasticsearch, &HttpClient)>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Option<(String, String)>>, PruneError> {
    let mut targets: Vec<Option<(String, String)>> = Vec::new();
    let mut missing_repositories: Vec<String> = Vec::new();
    let mut checked: Vec<String> = Vec::new();
    for removal in removals {
        let Some(snapshot) = &removal.snapshot else {
            targets.push(None);
            continue;
        };
        let Some((es, client)) = elasticsearch else {
            warnings.push(format!(
                "set {}: snapshot {} left in place (no `elasticsearch` option)",
                removal.stamp, snapshot.name
            ));
            targets.push(None);
            continue;
        };
        // The catalogue only gives a snapshot its manifest names, with a
        // repository of plain name; checked again here, right before use.
        let Some(repository) = snapshot.repository.clone().filter(|r| is_plain_name(r)) else {
            warnings.push(format!(
                "set {}: snapshot {} left in place (its manifest names no valid repository)",
                removal.stamp, snapshot.name
            ));
            targets.push(None);
            continue;
        };
        if !is_plain_name(&snapshot.name) {
            warnings.push(format!(
                "set {}: snapshot `{}` left in place (not a plain name)",
                removal.stamp, snapshot.name
            ));
            targets.push(None);
            continue;
        }
        if !checked.contains(&repository) {
            checked.push(repository.clone());
            let registered = client
                .repository_registered(&es.url, &repository)
                .await
                .map_err(|source| PruneError::RepositoryCheck {
                    repository: repository.clone(),
                    source: Box::new(source),
                })?;
            if !registered {
                missing_repositories.push(repository.clone());
            }
        }
        if missing_repositories.contains(&repository) {
            warnings.push(format!(
                "set {}: snapshot repository `{repository}` is not registered: snapshot {} not deleted",
                removal.stamp, snapshot.name
            ));
            targets.push(None);
        } else {
            targets.push(Some((repository, snapshot.name.clone())));
        }
    }
    Ok(targets)
}

/// Removes one set (only logs what it would remove under dry-run): its files
/// (manifest first), then its snapshot `target`.
async fn remove_set(
    removal: Removal,
    target: Option<(String, String)>,
    elasticsearch: Option<(&PruneElasticsearch, &HttpClient)>,
    ctx: &StepContext,
) -> Result<RemovedSet, PruneError> {
    let verb = if ctx.dry_run {
        "would remove"
    } else {
        "removing"
    };
    tracing::info!(
        "{}: {verb} set {}: {}",
        ctx.label,
        removal.stamp,
        removal.reason
    );
    for file in &removal.files {
        tracing::info!("{}:   {verb} {}", ctx.label, file.display());
    }
    if let Some((repository, name)) = &target {
        tracing::info!("{}:   {verb} snapshot {repository}/{name}", ctx.label);
    }
    if !ctx.dry_run {
        let stamp = removal.stamp.clone();
        let files = removal.files.clone();
        let manifest = removal
            .files
            .first()
            .filter(|f| {
                f.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(MANIFEST_PREFIX))
            })
            .cloned();
        tokio::task::spawn_blocking(move || remove_files(&stamp, &files, manifest.as_deref()))
            .await
            .map_err(|_| PruneError::Worker)??;
        if let (Some((repository, name)), Some((es, client))) = (&target, elasticsearch) {
            let url = snapshot_url(&es.url, repository, name);
            // The files are gone: finish this set even if the run is being interrupted.
            delete_snapshot(&client.uncancellable(), &url)
                .await
                .map_err(|source| PruneError::Snapshot {
                    stamp: removal.stamp.clone(),
                    repository: repository.clone(),
                    snapshot: name.clone(),
                    source: Box::new(source),
                })?;
        }
    }
    Ok(RemovedSet {
        stamp: removal.stamp,
        reason: removal.reason,
        files: removal.files,
        snapshot: target.map(|(repository, name)| format!("{repository}/{name}")),
        bytes: removal.bytes,
    })
}

/// Removes `files` in order; a file already gone is fine. After the manifest,
/// the folder is synced so the set is durably incomplete before its archives go.
fn remove_files(
    stamp: &str,
    files: &[PathBuf],
    manifest: Option<&std::path::Path>,
) -> Result<(), PruneError> {
    for path in files {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PruneError::Remove {
                    path: path.clone(),
                    stamp: stamp.to_string(),
                    source,
                });
            }
        }
        if Some(path.as_path()) == manifest {
            sync_parent(path).map_err(|source| PruneError::Remove {
                path: path.clone(),
                stamp: stamp.to_string(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::catalogue::Verification;

    fn owner() -> Owner {
        Owner {
            workflow: "cluster-hot-backup".into(),
            manifest_path: "/b".into(),
        }
    }

    fn set(stamp: &str, complete: bool, verified: Option<&str>) -> BackupSet {
        BackupSet {
            stamp: stamp.to_string(),
            time: None,
            created: None,
            origin: Origin::Runbook,
            written_by: Some(crate::backup::catalogue::ManifestOrigin {
                tool: "runbook".into(),
                workflow: "cluster-hot-backup".into(),
                manifest_path: "/b".into(),
            }),
            complete,
            manifest: complete.then(|| PathBuf::from(format!("/b/backup_{stamp}.json"))),
            verified: verified.map(|result| Verification {
                time: "t".into(),
                result: result.into(),
                errors: vec![],
            }),
            parts: vec![],
            other_files: vec![],
            bytes: 0,
            age_seconds: None,
            snapshot: None,
            snapshot_state: None,
            problems: vec![],
            warnings: vec![],
        }
    }

    fn stamps(plan: &PrunePlan) -> (Vec<&str>, Vec<&str>) {
        (
            plan.kept.iter().map(|k| k.stamp.as_str()).collect(),
            plan.removals.iter().map(|r| r.stamp.as_str()).collect(),
        )
    }

    const S1: &str = "20261120_01h00m00s";
    const S2: &str = "20261121_01h00m00s";
    const S3: &str = "20261122_01h00m00s";
    const S4: &str = "20261123_01h00m00s";
    const S5: &str = "20261124_01h00m00s";

    #[test]
    fn keeps_the_newest_verified_and_removes_incomplete_first() {
        let catalogue = Catalogue {
            sets: vec![
                set(S1, true, Some("ok")),
                set(S2, true, Some("ok")),
                set(S3, false, None),
                set(S4, true, Some("failed")),
                set(S5, true, Some("ok")),
            ],
            ..Catalogue::default()
        };
        let decided = plan(&catalogue, 2, &[], &owner());
        assert_eq!(stamps(&decided), (vec![S2, S5], vec![S3, S1, S4]));
        assert!(
            decided.removals[0]
                .reason
                .starts_with("incomplete (no manifest)"),
            "{:?}",
            decided.removals
        );
        assert!(
            decided.removals[2]
                .reason
                .contains("last verification failed")
        );
        assert_eq!(decided.kept[1].reason, "the newest verified set");
        assert!(plan(&catalogue, 0, &[], &owner()).removals.is_empty());
        // A protected stamp stays whatever the rules say.
        assert_eq!(
            stamps(&plan(&catalogue, 2, &[S1.to_string()], &owner())).1,
            vec![S3, S4]
        );
    }

    #[test]
    fn never_removes_sets_newer_than_the_last_good_ones() {
        // Verification failing lately, and a backup running now.
        let catalogue = Catalogue {
            sets: vec![
                set(S1, true, Some("ok")),
                set(S2, true, Some("ok")),
                set(S3, true, Some("failed")),
                set(S4, true, None),
                set(S5, false, None),
            ],
            ..Catalogue::default()
        };
        let decided = plan(&catalogue, 1, &[], &owner());
        assert_eq!(stamps(&decided), (vec![S2, S3, S4, S5], vec![S1]));
        // No verified set at all: nothing complete goes; old incomplete sets still do.
        let catalogue = Catalogue {
            sets: vec![
                set(S1, false, None),
                set(S2, true, None),
                set(S3, true, Some("failed")),
            ],
            ..Catalogue::default()
        };
        assert_eq!(
            stamps(&plan(&catalogue, 3, &[], &owner())),
            (vec![S2, S3], vec![S1])
        );
    }

    #[test]
    fn sets_of_others_are_never_counted_or_removed() {
        let mut foreign = set(S1, false, None);
        foreign.origin = Origin::Foreign;
        foreign.written_by = None;
        let mut other = set(S2, true, Some("ok"));
        other.written_by.as_mut().unwrap().workflow = "other".into();
        let mut damaged = set(S3, false, None);
        damaged.origin = Origin::Damaged;
        let catalogue = Catalogue {
            sets: vec![
                foreign,
                other,
                damaged,
                set(S4, true, Some("ok")),
                set(S5, true, Some("ok")),
            ],
            ..Catalogue::default()
        };
        let decided = plan(&catalogue, 1, &[], &owner());
        assert_eq!(stamps(&decided), (vec![S5], vec![S4]));
        let alone: Vec<&str> = decided
            .left_alone
            .iter()
            .map(|k| k.stamp.as_str())
            .collect();
        assert_eq!(alone, [S1, S2, S3]);
        assert!(decided.left_alone[1].reason.contains("workflow `other`"));
    }

    #[test]
    fn sets_are_ordered_by_their_creation_time_not_their_name() {
        // A daylight-saving fall-back: the later set has the smaller stamp.
        let mut first = set("20261025_02h30m00s", true, Some("ok"));
        first.created = Some("2026-10-25T02:30:00+0200".into());
        let mut second = set("20261025_02h10m00s", true, Some("ok"));
        second.created = Some("2026-10-25T02:10:00+0100".into());
        let catalogue = Catalogue {
            sets: vec![second, first],
            ..Catalogue::default()
        };
        let decided = plan(&catalogue, 1, &[], &owner());
        assert_eq!(
            stamps(&decided),
            (vec!["20261025_02h10m00s"], vec!["20261025_02h30m00s"])
        );
    }

    #[test]
    fn options_and_describe() {
        let options: PruneOptions = serde_json::from_value(serde_json::json!({
            "manifest_path": "/mnt/backup", "workflow": "cluster-hot-backup", "keep": 7,
            "elasticsearch": {"repository": "thehive_repository", "user": "elastic", "password": "hunter2"},
        }))
        .unwrap();
        let text = Prune::describe(&options);
        assert!(
            text.contains("newest 7 verified") && text.contains("thehive_repository"),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(matches!(Prune::dry_run(&options), DryRun::Run));
        let typo = serde_json::from_value::<PruneOptions>(
            serde_json::json!({"manifest_path": "/b", "workflow": "w", "keep": 1, "kepe": 2}),
        );
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown field `kepe`")
        );
    }
}
