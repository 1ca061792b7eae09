//! `es_restore`: deletes indices, then restores indices from an Elasticsearch
//! snapshot and checks the answer (every shard back). One step, so that a
//! journaled undo ("put the index back from the safety snapshot") is a single
//! idempotent action: carried out again after a crash, it deletes what a
//! half-done attempt left and restores again.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use url::Url;

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::search::client::{
    HttpClient, HttpError, HttpRequest, HttpResponse, default_elasticsearch_url, display_url,
    endpoint, tls_summary,
};

/// The timeout when the script gives none: restoring a big index takes a while.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

/// The `es_restore` step.
pub struct EsRestore;

crate::search::client::with_http_connection! {
/// Options of `es_restore`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsRestoreOptions {
    /// Elasticsearch's URL.
    #[serde(default = "default_elasticsearch_url")]
    pub url: Url,
    /// The registered snapshot repository.
    pub repository: String,
    /// The snapshot to restore from (needed when `indices` is not empty).
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Indices to restore from the snapshot (empty: restore nothing).
    #[serde(default)]
    pub indices: Vec<String>,
    /// Indices deleted first (one missing is fine): the restore refuses to
    /// overwrite an open index.
    #[serde(default)]
    pub delete: Vec<String>,
    /// Index name -> UUID recorded before a restore: when every index named
    /// here still has its UUID and no other index of `delete` exists, the
    /// restore never touched them and nothing is done (an undo of a restore
    /// that never started deletes nothing).
    #[serde(default)]
    pub unchanged_uuids: BTreeMap<String, String>,
}
}

impl EsRestoreOptions {
    fn full_name(&self) -> String {
        format!(
            "{}:{}",
            self.repository,
            self.snapshot.as_deref().unwrap_or("")
        )
    }
}

/// Result of `es_restore`.
#[derive(Debug, Default, Serialize)]
pub struct EsRestoreOutput {
    /// The repository.
    pub repository: String,
    /// The snapshot restored from ("" when nothing was restored).
    pub snapshot: String,
    /// The indices of `delete` that existed and were deleted.
    pub deleted: Vec<String>,
    /// The indices restored, as Elasticsearch's answer lists them.
    pub indices: Vec<String>,
    /// Shards to restore.
    pub shards_total: u64,
    /// Shards restored.
    pub shards_successful: u64,
    /// Shards that failed.
    pub shards_failed: u64,
    /// How long the deletions and the restore took.
    pub duration_ms: u64,
    /// True when `unchanged_uuids` found the indices untouched: nothing was done.
    pub unchanged: bool,
}

/// Why `es_restore` failed (besides plain HTTP failures).
#[derive(Debug, thiserror::Error)]
pub enum EsRestoreError {
    /// The options hold a name that is not one index, or contradict each other.
    #[error("{0}")]
    Options(String),
    /// Deleting an index failed.
    #[error("could not delete index {index} before restoring {name}")]
    Delete {
        /// The index.
        index: String,
        /// `repository:snapshot`.
        name: String,
        /// What Elasticsearch said.
        source: HttpError,
    },
    /// The snapshot is not in the repository.
    #[error("snapshot {name} does not exist: nothing to restore from")]
    SnapshotMissing {
        /// `repository:snapshot`.
        name: String,
        /// What Elasticsearch said.
        source: HttpError,
    },
    /// Elasticsearch refused or failed the restore request.
    #[error("restoring indices {indices} from {name} failed")]
    Request {
        /// `repository:snapshot`.
        name: String,
        /// The indices asked for.
        indices: String,
        /// What Elasticsearch said.
        source: HttpError,
    },
    /// The answer is not a finished restore.
    #[error("POST {url} did not answer with the restored shards: {answer}")]
    NoShards {
        /// The URL.
        url: String,
        /// The answer, shortened.
        answer: String,
    },
    /// Not every shard came back.
    #[error(
        "the restore of {indices} from {name} brought back {successful} of {total} shards \
         ({failed} failed): the restored indices are incomplete"
    )]
    Incomplete {
        /// `repository:snapshot`.
        name: String,
        /// The indices restored.
        indices: String,
        /// Shards to restore.
        total: u64,
        /// Shards restored.
        successful: u64,
        /// Shards failed.
        failed: u64,
    },
}

impl StepFailure for EsRestoreError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            EsRestoreError::Options(_) => ErrorKind::Options,
            EsRestoreError::Delete { source, .. } => source.error_kind(),
            EsRestoreError::SnapshotMissing { .. } => ErrorKind::SnapshotMissing,
            EsRestoreError::Request { source, .. } => source.error_kind(),
            EsRestoreError::NoShards { .. } => ErrorKind::InvalidResponse,
            EsRestoreError::Incomplete { .. } => ErrorKind::RestoreIncomplete,
        }
    }
}

/// `{"snapshot":{"snapshot":..,"indices":[..],"shards":{"total":..,"failed":..,"successful":..}}}`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RestoreAnswer {
    snapshot: Option<RestoreInfo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RestoreInfo {
    indices: Vec<String>,
    shards: Option<RestoreShards>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RestoreShards {
    total: u64,
    failed: u64,
    successful: u64,
}

/// A name that means exactly one index: no wildcard, no list, no `_all`, no
/// exclusion. `DELETE /*` must never be built from an option.
fn is_one_index(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['_', '-', '+'])
        && name != "."
        && name != ".."
        && !name.contains(['*', '?', ',', '/', '\\', ' ', '"', '<', '>', '|', '#', ':'])
}

/// The options' names checked before any request (an options error).
fn check_options(options: &EsRestoreOptions) -> Result<(), StepError> {
    if !crate::search::snapshot_api::is_plain_name(&options.repository) {
        return Err(EsRestoreError::Options(format!(
            "`repository` is `{}`: use letters, digits, `_`, `-` and `.` only",
            options.repository
        ))
        .into());
    }
    match &options.snapshot {
        Some(name) if !crate::search::snapshot_api::is_plain_name(name) => {
            return Err(EsRestoreError::Options(format!(
                "`snapshot` is `{name}`: use letters, digits, `_`, `-` and `.` only"
            ))
            .into());
        }
        None if !options.indices.is_empty() => {
            return Err(EsRestoreError::Options(
                "`indices` to restore need the `snapshot` to restore them from".to_string(),
            )
            .into());
        }
        _ => {}
    }
    let recorded: Vec<String> = options.unchanged_uuids.keys().cloned().collect();
    for (key, names) in [
        ("indices", &options.indices),
        ("delete", &options.delete),
        ("unchanged_uuids", &recorded),
    ] {
        if let Some(bad) = names.iter().find(|name| !is_one_index(name)) {
            return Err(EsRestoreError::Options(format!(
                "`{key}` holds `{bad}`, which is not the name of one index \
                 (no wildcard, comma, `_all`, or leading `_`, `-`, `+`)"
            ))
            .into());
        }
    }
    Ok(())
}

impl Step for EsRestore {
    const NAME: &'static str = "es_restore";
    const DOC: &'static str = "\
Deletes indices, then restores indices from an Elasticsearch snapshot and checks every shard came back.

1. DELETE /<index> for each name in `delete` (an index that does not exist is
   fine: the step can be carried out again after a crash).
2. POST /_snapshot/<repository>/<snapshot>/_restore?wait_for_completion=true with
   `{\"indices\": \"<indices>\", \"include_global_state\": false}`, waiting as long as
   the step's timeout allows (no 5-minute cap per request).
3. The answer must list the shards with `failed` = 0 and `successful` = `total`,
   and `total` > 0: Elasticsearch answers HTTP 200 even when shards failed (an
   index whose settings cannot be allocated comes back red). Anything else is an
   error of kind `restore_incomplete` naming the numbers.
With `unchanged_uuids` (index -> UUID recorded before a restore), nothing is
done when every index named there still has its UUID and no other index of
`delete` exists: the restore never touched them (`unchanged: true`).
A snapshot that is not in the repository fails with kind `snapshot_missing`.
With `indices` empty only the deletions are made. Names must be one index each
(no wildcard, comma or `_all`). Used by the restore workflow both to restore a
set and, as its journaled undo, to put the live index back from the safety snapshot.

Options:
  url                   string           Elasticsearch URL (default \"http://127.0.0.1:9200\")
  repository            string           the snapshot repository (required)
  snapshot              string           the snapshot (required when `indices` is not empty)
  indices               array            indices to restore (default [])
  delete                array            indices deleted first; missing ones are fine (default [])
  unchanged_uuids       map              index -> UUID: do nothing while all are unchanged (default #{})
  user, password        string, secret   basic auth (password from secret())
  api_key               secret           API key, sent as `Authorization: ApiKey <key>`
  ca_cert               string           PEM file of the CA to trust besides the system's
  insecure              bool             accept any certificate; logs a warning (default false)
  timeout               duration         (common option) default \"2h\"

Result:
  repository         string   the repository
  snapshot           string   the snapshot (\"\" when nothing was restored)
  deleted            array    the indices of `delete` that existed and were deleted
  indices            array    the indices restored (from the answer)
  shards_total       int      shards to restore
  shards_successful  int      shards restored
  shards_failed      int      shards that failed (always 0 on success)
  duration_ms        int      time taken
  unchanged          bool     true when `unchanged_uuids` found nothing to do

Example:
  let back = es_restore(#{
      url: \"http://127.0.0.1:9200\", repository: \"thehive_repository\",
      snapshot: `elasticsearch_${stamp}`, indices: [\"thehive_global\"],
      delete: [\"thehive_global\"], timeout: \"6h\",
  });
  log_info(`restored ${back.indices}: ${back.shards_successful} of ${back.shards_total} shards`);
";

    type Options = EsRestoreOptions;
    type Output = EsRestoreOutput;

    fn describe(options: &EsRestoreOptions) -> String {
        let url = display_url(&options.url);
        let auth = format!(
            "{}{}",
            options.connection().auth_summary(),
            tls_summary(&options.ca_cert, options.insecure)
        );
        let delete = format!("delete indices {} of {url}{auth}", options.delete.join(","));
        match (options.delete.is_empty(), options.indices.is_empty()) {
            (true, true) => "nothing to delete or restore".to_string(),
            (false, true) => delete,
            (true, false) => format!(
                "restore indices {} from {} into {url}{auth} and require every shard back",
                options.indices.join(","),
                options.full_name()
            ),
            (false, false) => format!(
                "{delete}, then restore indices {} from {} and require every shard back",
                options.indices.join(","),
                options.full_name()
            ),
        }
    }

    fn label(options: &EsRestoreOptions) -> Option<String> {
        Some(match &options.snapshot {
            Some(snapshot) if !options.indices.is_empty() => format!("es_restore {snapshot}"),
            _ => "es_restore (delete only)".to_string(),
        })
    }

    fn default_timeout(_options: &EsRestoreOptions) -> Option<Duration> {
        Some(DEFAULT_TIMEOUT)
    }

    fn dry_run(options: &EsRestoreOptions) -> DryRun<EsRestoreOutput> {
        DryRun::Skip(EsRestoreOutput {
            repository: options.repository.clone(),
            snapshot: options.snapshot.clone().unwrap_or_default(),
            deleted: options.delete.clone(),
            indices: options.indices.clone(),
            ..EsRestoreOutput::default()
        })
    }

    async fn run(
        options: EsRestoreOptions,
        ctx: StepContext,
    ) -> Result<EsRestoreOutput, StepError> {
        check_options(&options)?;
        let started = Instant::now();
        let client = HttpClient::new(&options.connection(), &options.url, &ctx)?;
        if !options.unchanged_uuids.is_empty() && untouched(&client, &options).await? {
            tracing::info!(
                target: "runbook::es_restore",
                "{}: indices {} are as they were (same UUIDs): nothing to delete or restore",
                ctx.label,
                options.unchanged_uuids.keys().cloned().collect::<Vec<_>>().join(",")
            );
            return Ok(EsRestoreOutput {
                repository: options.repository.clone(),
                unchanged: true,
                duration_ms: started.elapsed().as_millis() as u64,
                ..EsRestoreOutput::default()
            });
        }
        let deleted = delete_indices(&client, &options, &ctx.label).await?;
        let mut output = EsRestoreOutput {
            repository: options.repository.clone(),
            deleted,
            ..EsRestoreOutput::default()
        };
        let Some(snapshot) = options
            .snapshot
            .clone()
            .filter(|_| !options.indices.is_empty())
        else {
            output.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(output);
        };
        let (info, shards) = restore_indices(&client, &options, &ctx, &snapshot).await?;
        tracing::info!(
            target: "runbook::es_restore",
            "{}: restored {} from {}: {} of {} shards",
            ctx.label,
            info.join(","),
            options.full_name(),
            shards.successful,
            shards.total
        );
        output.snapshot = snapshot;
        output.indices = info;
        output.shards_total = shards.total;
        output.shards_successful = shards.successful;
        output.shards_failed = shards.failed;
        output.duration_ms = started.elapsed().as_millis() as u64;
        Ok(output)
    }
}

/// Deletes the indices of `delete` (one request each; one already gone is
/// fine) and returns those that were there.
async fn delete_indices(
    client: &HttpClient,
    options: &EsRestoreOptions,
    label: &str,
) -> Result<Vec<String>, StepError> {
    let mut deleted = Vec::new();
    for index in &options.delete {
        let url = endpoint(&options.url, &[index]);
        let answer = client
            .send(&HttpRequest::new(Method::DELETE, url))
            .await
            .map_err(|source| delete_error(options, index, source))?;
        match answer.status.as_u16() {
            200..=299 => deleted.push(index.clone()),
            404 => {}
            _ => return Err(delete_error(options, index, answer.to_error())),
        }
    }
    if !deleted.is_empty() {
        tracing::info!(
            target: "runbook::es_restore",
            "{label}: deleted indices {}",
            deleted.join(",")
        );
    }
    Ok(deleted)
}

/// Restores `indices` from `snapshot` and waits for it to be done; the
/// indices restored and their shards, every one of which must be back.
async fn restore_indices(
    client: &HttpClient,
    options: &EsRestoreOptions,
    ctx: &StepContext,
    snapshot: &str,
) -> Result<(Vec<String>, RestoreShards), StepError> {
    let mut url = endpoint(
        &options.url,
        &["_snapshot", &options.repository, snapshot, "_restore"],
    );
    url.set_query(Some("wait_for_completion=true"));
    let indices = options.indices.join(",");
    let body = serde_json::json!({
        "indices": indices,
        "include_global_state": false,
    });
    // The restore answers only when every shard is done: allow it the
    // whole step's time, not the client's per-request limit.
    let patient = client.with_request_timeout(ctx.remaining().unwrap_or(DEFAULT_TIMEOUT));
    let answer = patient
        .send(&HttpRequest::json(Method::POST, url.clone(), &body))
        .await
        .map_err(|source| match source {
            // Elasticsearch goes on restoring: the caller's undo deletes the index.
            HttpError::Cancelled => StepError::cancelled(),
            source => request_error(options, &indices, source).into(),
        })?;
    restored_shards(&answer, options, indices, &url)
}

/// The indices restored and their shards, from the answer to the restore
/// request sent to `url`; the step's error when the snapshot is missing, the
/// request failed, or a shard was not restored.
fn restored_shards(
    answer: &HttpResponse,
    options: &EsRestoreOptions,
    indices: String,
    url: &Url,
) -> Result<(Vec<String>, RestoreShards), StepError> {
    if !answer.status.is_success() {
        let error = answer.to_error();
        let missing = String::from_utf8_lossy(&answer.body).contains("snapshot does not exist")
            || answer.es_error_type().as_deref() == Some("snapshot_missing_exception");
        return Err(if missing {
            EsRestoreError::SnapshotMissing {
                name: options.full_name(),
                source: error,
            }
        } else {
            request_error(options, &indices, error)
        }
        .into());
    }
    let parsed: RestoreAnswer = answer.json()?;
    let Some((info, shards)) = parsed
        .snapshot
        .and_then(|info| info.shards.map(|shards| (info.indices, shards)))
    else {
        return Err(EsRestoreError::NoShards {
            url: display_url(url),
            answer: String::from_utf8_lossy(&answer.body)
                .chars()
                .take(200)
                .collect(),
        }
        .into());
    };
    if shards.failed > 0 || shards.successful != shards.total || shards.total == 0 {
        return Err(EsRestoreError::Incomplete {
            name: options.full_name(),
            indices: if info.is_empty() {
                indices
            } else {
                info.join(",")
            },
            total: shards.total,
            successful: shards.successful,
            failed: shards.failed,
        }
        .into());
    }
    Ok((info, shards))
}

/// True when every index of `unchanged_uuids` exists with its recorded UUID
/// and no other index of `delete` exists: nothing was deleted or restored
/// since the UUIDs were recorded (a restore deletes an index first, and a
/// restored index gets a new UUID).
async fn untouched(client: &HttpClient, options: &EsRestoreOptions) -> Result<bool, StepError> {
    let mut names: Vec<&String> = options.delete.iter().collect();
    names.extend(options.unchanged_uuids.keys());
    names.sort();
    names.dedup();
    for index in names {
        let url = endpoint(&options.url, &[index, "_settings", "index.uuid"]);
        let answer = client.send(&HttpRequest::new(Method::GET, url)).await?;
        let uuid = match answer.status.as_u16() {
            404 => None,
            200..=299 => {
                let settings: serde_json::Value = answer.json()?;
                match settings
                    .pointer(&format!("/{index}/settings/index/uuid"))
                    .and_then(|uuid| uuid.as_str())
                {
                    Some(uuid) => Some(uuid.to_string()),
                    // An alias or an answer of another shape: do the whole put-back.
                    None => return Ok(false),
                }
            }
            _ => return Err(answer.to_error().into()),
        };
        if uuid.as_ref() != options.unchanged_uuids.get(index) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn delete_error(options: &EsRestoreOptions, index: &str, source: HttpError) -> StepError {
    match source {
        HttpError::Cancelled => StepError::cancelled(),
        source => EsRestoreError::Delete {
            index: index.to_string(),
            name: options.full_name(),
            source,
        }
        .into(),
    }
}

fn request_error(options: &EsRestoreOptions, indices: &str, source: HttpError) -> EsRestoreError {
    EsRestoreError::Request {
        name: options.full_name(),
        indices: indices.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> EsRestoreOptions {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn describe_names_what_is_deleted_and_restored_and_no_secret() {
        let o = options(serde_json::json!({
            "repository": "thehive_repository", "snapshot": "pre_restore_1",
            "indices": ["thehive_global"], "delete": ["thehive_global", "other"],
            "user": "elastic", "password": "hunter2",
        }));
        assert_eq!(
            EsRestore::describe(&o),
            "delete indices thehive_global,other of http://127.0.0.1:9200/ as user elastic, then \
             restore indices thehive_global from thehive_repository:pre_restore_1 and require every shard back"
        );
        assert!(!format!("{o:?}").contains("hunter2"));
        let only_delete = options(serde_json::json!({"repository": "r", "delete": ["a"]}));
        assert_eq!(
            EsRestore::describe(&only_delete),
            "delete indices a of http://127.0.0.1:9200/"
        );
        assert_eq!(
            EsRestore::label(&only_delete).unwrap(),
            "es_restore (delete only)"
        );
    }

    #[test]
    fn names_that_are_not_one_index_are_refused() {
        for bad in ["*", "thehive_*", "a,b", "_all", "-a", ""] {
            let o = options(serde_json::json!({"repository": "r", "delete": [bad]}));
            let e = check_options(&o).unwrap_err();
            assert!(
                e.to_string().contains("not the name of one index"),
                "{bad}: {e}"
            );
        }
        let o = options(serde_json::json!({"repository": "r", "indices": ["a"]}));
        assert!(
            check_options(&o)
                .unwrap_err()
                .to_string()
                .contains("need the `snapshot`")
        );
        let o =
            options(serde_json::json!({"repository": "r", "snapshot": "_all", "indices": ["a"]}));
        assert!(check_options(&o).is_err());
        let o = options(
            serde_json::json!({"repository": "r", "snapshot": "s", "indices": [".hidden"]}),
        );
        assert!(check_options(&o).is_ok());
        let e = serde_json::from_value::<EsRestoreOptions>(
            serde_json::json!({"repository": "r", "delete_first": true}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn failed_shards_name_the_numbers() {
        let e = EsRestoreError::Incomplete {
            name: "r:s".to_string(),
            indices: "thehive_global".to_string(),
            total: 1,
            successful: 0,
            failed: 1,
        };
        assert_eq!(e.kind(), "restore_incomplete");
        assert_eq!(
            e.to_string(),
            "the restore of thehive_global from r:s brought back 0 of 1 shards (1 failed): \
             the restored indices are incomplete"
        );
    }
}
