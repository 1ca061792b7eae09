//! The `write_manifest` step: the set manifest `backup_<STAMP>.json`, built
//! from the parts' results and written last and atomically (its presence
//! means the set is complete). The manifest's shape is
//! [`crate::backup::manifest`]'s.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backup::layout::{manifest_file_name, parse_stamp};
use crate::backup::manifest::{
    MANIFEST_FORMAT, Manifest, ManifestArchive, ManifestCassandra, ManifestConfig, ManifestOrigin,
    ManifestSnapshot, VERIFIED_OK, Verification, manifest_time_now,
};
use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};

/// Options of `write_manifest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteManifestOptions {
    /// The manifest folder.
    pub manifest_path: PathBuf,
    /// The set's stamp.
    pub stamp: String,
    /// The Cassandra part's result.
    pub cassandra: ArchivePart,
    /// The Elasticsearch part's result.
    pub elasticsearch: SnapshotPart,
    /// The attachment part's result, if any.
    #[serde(default)]
    pub storage: Option<ArchivePart>,
    /// The workflow's name (`origin.workflow`).
    pub workflow: String,
    /// The workflow's SHA-256.
    #[serde(default)]
    pub workflow_sha256: Option<String>,
    /// The host making the set.
    #[serde(default)]
    pub host: Option<String>,
    /// The config the set is made with, recorded whole.
    #[serde(default)]
    pub config: Map<String, Value>,
    /// The group to share the manifest with (mode 0640); "" = none (0600).
    #[serde(default)]
    pub group: String,
}

/// An archive part's result as the workflow's part function returns it
/// (other keys of that map, such as `undo_ids`, are ignored).
#[derive(Debug, Default, Deserialize)]
pub struct ArchivePart {
    /// `cassandra`, `files`, `minio`, `seaweedfs`.
    #[serde(default)]
    pub part: String,
    /// The archive.
    #[serde(default)]
    pub path: PathBuf,
    /// Its size.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Its SHA-256.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Entries counted by `verify_archive`.
    #[serde(default)]
    pub entries: Option<u64>,
    /// Symlinks pointing outside the source.
    #[serde(default)]
    pub links_outside: Option<Vec<String>>,
    /// What the site allowed to go on with a warning.
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
    /// Cassandra: the snapshot tag.
    #[serde(default)]
    pub snapshot_tag: Option<String>,
    /// Cassandra: the keyspace.
    #[serde(default)]
    pub keyspace: Option<String>,
    /// Cassandra: the tables' folders.
    #[serde(default)]
    pub tables: Option<Vec<String>>,
    /// Cassandra: its version.
    #[serde(default)]
    pub version: Option<String>,
    /// Cassandra: when the snapshot started (ms since the epoch).
    #[serde(default)]
    pub snapshot_started_ms: Option<i64>,
}

/// The Elasticsearch part's result (`es_snapshot`'s, plus `marker` and
/// `warnings`; other keys ignored).
#[derive(Debug, Default, Deserialize)]
pub struct SnapshotPart {
    /// The repository.
    #[serde(default)]
    pub repository: Option<String>,
    /// The snapshot.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Its UUID.
    #[serde(default)]
    pub uuid: Option<String>,
    /// Its state.
    #[serde(default)]
    pub state: Option<String>,
    /// When it started (ISO 8601).
    #[serde(default)]
    pub start_time: Option<String>,
    /// When it ended.
    #[serde(default)]
    pub end_time: Option<String>,
    /// The Elasticsearch version.
    #[serde(default)]
    pub version: Option<String>,
    /// The indices.
    #[serde(default)]
    pub indices: Option<Vec<String>>,
    /// The `.info` marker.
    #[serde(default)]
    pub marker: Option<PathBuf>,
    /// What the site allowed to go on with a warning.
    #[serde(default)]
    pub warnings: Option<Vec<String>>,
}

/// What `write_manifest` returns.
#[derive(Debug, Serialize)]
pub struct WriteManifestOutput {
    /// The manifest written.
    pub path: String,
}

/// Why `write_manifest` failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteManifestError {
    /// The stamp is not one `backup_stamp()` makes.
    #[error("write_manifest: `{0}` is not a stamp like 20261126_01h15m00s (use backup_stamp())")]
    Stamp(String),
    /// The file could not be written.
    #[error("cannot write the manifest {path}")]
    Write {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl StepFailure for WriteManifestError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            WriteManifestError::Stamp(_) => ErrorKind::Options,
            WriteManifestError::Write { .. } => ErrorKind::Io,
        }
    }
}

/// The `write_manifest` step.
pub struct WriteManifest;

fn manifest_path(options: &WriteManifestOptions) -> PathBuf {
    options
        .manifest_path
        .join(manifest_file_name(&options.stamp))
}

/// The manifest for these parts' results, made now.
pub fn build_manifest(options: &WriteManifestOptions) -> Manifest {
    let now = manifest_time_now();
    let cassandra = &options.cassandra;
    let elasticsearch = &options.elasticsearch;
    let archives = std::iter::once(cassandra)
        .chain(options.storage.as_ref())
        .map(|a| ManifestArchive {
            part: a.part.clone(),
            path: a.path.clone(),
            bytes: a.bytes,
            sha256: a.sha256.clone(),
            entries: a.entries,
            links_outside: a.links_outside.clone().unwrap_or_default(),
            other: Map::new(),
        })
        .collect();
    // Everything a site allowed to go on with a warning (allow_* keys): the
    // set is "complete with warnings", and this says what it lacks.
    let mut warnings = Vec::new();
    let mut add = |part: &str, list: &Option<Vec<String>>| {
        for w in list.iter().flatten() {
            warnings.push(format!("{part}: {w}"));
        }
    };
    add(&cassandra.part, &cassandra.warnings);
    add("elasticsearch", &elasticsearch.warnings);
    if let Some(storage) = &options.storage {
        add(&storage.part, &storage.warnings);
    }
    let es_start = elasticsearch
        .start_time
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    let skew = match (es_start, cassandra.snapshot_started_ms) {
        (Some(es), Some(cassandra)) => Some((es - cassandra).abs() as f64 / 1000.0),
        _ => None,
    };
    let config: ManifestConfig = serde_json::from_value(Value::Object(options.config.clone()))
        .unwrap_or_else(|_| ManifestConfig {
            other: options.config.clone(),
            ..ManifestConfig::default()
        });
    Manifest {
        format: Some(MANIFEST_FORMAT),
        stamp: Some(options.stamp.clone()),
        host: options.host.clone(),
        created: Some(now.clone()),
        complete: Some(true),
        verified: Some(Verification {
            time: now,
            result: VERIFIED_OK.to_string(),
            errors: Vec::new(),
        }),
        archives,
        cassandra: Some(ManifestCassandra {
            snapshot_tag: cassandra.snapshot_tag.clone(),
            keyspace: cassandra.keyspace.clone(),
            tables: cassandra.tables.clone().unwrap_or_default(),
            version: cassandra.version.clone(),
            other: Map::new(),
        }),
        elasticsearch: Some(ManifestSnapshot {
            repository: elasticsearch.repository.clone(),
            snapshot: elasticsearch.snapshot.clone(),
            uuid: elasticsearch.uuid.clone(),
            state: elasticsearch.state.clone(),
            start_time: elasticsearch.start_time.clone(),
            end_time: elasticsearch.end_time.clone(),
            version: elasticsearch.version.clone(),
            indices: elasticsearch.indices.clone().unwrap_or_default(),
            marker: elasticsearch.marker.clone(),
            other: Map::new(),
        }),
        warnings,
        snapshot_skew_seconds: skew,
        workflow_sha256: options.workflow_sha256.clone(),
        origin: Some(ManifestOrigin {
            tool: "runbook".to_string(),
            workflow: options.workflow.clone(),
            manifest_path: options.manifest_path.clone(),
        }),
        config: Some(config),
        other: Map::new(),
    }
}

impl Step for WriteManifest {
    const NAME: &'static str = "write_manifest";
    const DOC: &'static str = "\
Writes the set manifest backup_<STAMP>.json, last: its presence means the set is complete.

Built from the parts' results as the stock workflow's part functions return
them (other keys of those maps, such as undo_ids, are ignored): each
archive's part, path, bytes, sha256, entries and links_outside; the Cassandra
snapshot tag, keyspace, tables and version; the Elasticsearch snapshot
(repository, snapshot, uuid, state, start and end time, version, indices,
.info marker); every part's warnings as \"part: warning\"; the skew between
the two snapshots' starts; `created` and `verified` (result \"ok\": the
archives were verified before) in local time, %Y-%m-%dT%H:%M:%S%z; the
workflow's origin (retention removes only sets whose origin is its own
workflow and manifest folder) and the config whole. Format 1; `runbook list`,
`verify --set`, `prune` and backup_manifest() read the same struct.

Written atomically: backup_<STAMP>.json.partial, mode 0600 (0640 and group
`group` when one is given), fsynced, renamed, the folder fsynced. A failure
leaves no manifest. Under --dry-run nothing is written.

Options:
  manifest_path    string  the manifest folder (required)
  stamp            string  the set's stamp, from backup_stamp() (required)
  cassandra        map     the Cassandra part's result (required)
  elasticsearch    map     the Elasticsearch part's result (required)
  storage          map     the attachment part's result (default: none)
  workflow         string  the workflow's name, workflow_name() (required)
  workflow_sha256  string  workflow_sha256() (default: not recorded)
  host             string  hostname() (default: not recorded)
  config           map     the config, recorded whole (default #{})
  group            string  group to share the manifest with, mode 0640 (default \"\": 0600)

Result:
  path   string  the manifest written

Example:
  let m = write_manifest(#{ manifest_path: cfg.manifest_path, stamp: stamp,
      cassandra: cassandra, elasticsearch: elasticsearch, storage: storage,
      workflow: workflow_name(), workflow_sha256: workflow_sha256(),
      host: hostname(), config: cfg, group: cfg.backup_group });
  log_info(`manifest ${m.path}`);";

    type Options = WriteManifestOptions;
    type Output = WriteManifestOutput;

    fn describe(options: &WriteManifestOptions) -> String {
        let mode = if options.group.is_empty() {
            "mode 0600".to_string()
        } else {
            format!("mode 0640, group {}", options.group)
        };
        format!("write {} ({mode})", manifest_path(options).display())
    }

    fn label(_options: &WriteManifestOptions) -> Option<String> {
        Some("write manifest".to_string())
    }

    fn dry_run(options: &WriteManifestOptions) -> DryRun<WriteManifestOutput> {
        DryRun::Skip(WriteManifestOutput {
            path: manifest_path(options).display().to_string(),
        })
    }

    async fn run(
        options: WriteManifestOptions,
        _ctx: StepContext,
    ) -> Result<WriteManifestOutput, StepError> {
        if parse_stamp(&options.stamp).is_none() {
            return Err(WriteManifestError::Stamp(options.stamp.clone()).into());
        }
        let path = manifest_path(&options);
        let manifest = build_manifest(&options);
        let group = (!options.group.is_empty()).then_some(options.group.as_str());
        manifest
            .write_new(&path, group)
            .map_err(|source| WriteManifestError::Write {
                path: path.clone(),
                source,
            })?;
        Ok(WriteManifestOutput {
            path: path.display().to_string(),
        })
    }
}
