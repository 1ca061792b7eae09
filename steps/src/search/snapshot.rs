//! `es_snapshot`: takes an Elasticsearch snapshot and waits for its terminal
//! state; anything but SUCCESS is a failure (the reference scripts reported a
//! snapshot as done the moment it was accepted).

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
use crate::search::snapshot_api::delete_snapshot;

/// The timeout when the script gives none: big clusters snapshot for a while.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);
/// Time allowed past the deadline to delete a snapshot (`on_timeout: "delete"`).
const TIMEOUT_CLEANUP_GRACE: Duration = Duration::from_secs(30);
/// The shortest pause between two status requests: `poll: "0s"` would send
/// requests as fast as Elasticsearch answers them.
const MIN_POLL: Duration = Duration::from_millis(50);
/// How many status requests in a row may fail (HTTP 5xx, a cut-off answer,
/// a dropped connection) before the step gives up following the snapshot:
/// 50 s at the default 5 s poll. (The client already retries 502/503/504
/// within each request.)
const POLL_FAILURES_IN_A_ROW: u32 = 10;
/// Time allowed to delete the snapshot after an interruption: the run is
/// stopping and should stop promptly.
const CANCEL_CLEANUP_GRACE: Duration = Duration::from_secs(10);

/// The `es_snapshot` step.
pub struct EsSnapshot;

/// Which indices to snapshot: one string (may hold commas and wildcards) or a list.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged, expecting = "a string or an array of strings")]
pub enum Indices {
    /// `"thehive_global"` or `"a,b*"`.
    One(String),
    /// `["a", "b"]`.
    Many(Vec<String>),
}

impl Indices {
    fn names(&self) -> Vec<String> {
        match self {
            Indices::One(text) => text.split(',').map(|s| s.trim().to_string()).collect(),
            Indices::Many(list) => list.clone(),
        }
    }
}

/// What to do with a snapshot still running at the timeout.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnTimeout {
    /// Let it run on (it may still finish; nothing refers to it).
    #[default]
    Leave,
    /// Delete it (Elasticsearch aborts a running snapshot on delete).
    Delete,
}

crate::search::client::with_http_connection! {
    /// Options of `es_snapshot`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct EsSnapshotOptions {
        /// Elasticsearch's URL.
        #[serde(default = "default_elasticsearch_url")]
        pub url: Url,
        /// The registered snapshot repository.
        pub repository: String,
        /// The new snapshot's name.
        pub snapshot: String,
        /// Indices to include (default: Elasticsearch's default, all of them).
        #[serde(default)]
        pub indices: Option<Indices>,
        /// Skip missing or closed indices instead of failing.
        #[serde(default = "default_true")]
        pub ignore_unavailable: bool,
        /// Include the cluster state.
        #[serde(default)]
        pub include_global_state: bool,
        /// Wait for the terminal state (false: return once accepted).
        #[serde(default = "default_true")]
        pub wait: bool,
        /// Start nothing: follow the snapshot `snapshot`, already started (by
        /// an earlier call with `wait: false`), to its terminal state.
        #[serde(default)]
        pub follow: bool,
        /// Pause between two status requests.
        #[serde(default = "default_poll", with = "humantime_serde")]
        pub poll: Duration,
        /// Ask every node to check it can write to the repository first.
        #[serde(default)]
        pub verify_repository: bool,
        /// Accept a PARTIAL snapshot.
        #[serde(default)]
        pub allow_partial: bool,
        /// What to do with a snapshot still running at the timeout.
        #[serde(default)]
        pub on_timeout: OnTimeout,
    }
}

fn default_true() -> bool {
    true
}

fn default_poll() -> Duration {
    Duration::from_secs(5)
}

impl EsSnapshotOptions {
    fn full_name(&self) -> String {
        format!("{}:{}", self.repository, self.snapshot)
    }
}

/// Result of `es_snapshot`.
#[derive(Debug, Default, Serialize)]
pub struct EsSnapshotOutput {
    /// The repository.
    pub repository: String,
    /// The snapshot's name.
    pub snapshot: String,
    /// The snapshot's UUID.
    pub uuid: String,
    /// SUCCESS (or PARTIAL with `allow_partial`; IN_PROGRESS with `wait: false`).
    pub state: String,
    /// The indices in the snapshot.
    pub indices: Vec<String>,
    /// Shards in the snapshot.
    pub shards_total: u64,
    /// Shards that failed.
    pub shards_failed: u64,
    /// When it started (ISO 8601, UTC).
    pub start_time: String,
    /// When it ended (ISO 8601, UTC; empty while running).
    pub end_time: String,
    /// How long it took, as Elasticsearch measured it.
    pub duration_ms: u64,
    /// The Elasticsearch version that wrote it.
    pub version: String,
}

/// Why `es_snapshot` failed (besides plain HTTP failures).
#[derive(Debug, thiserror::Error)]
pub enum EsSnapshotError {
    /// The repository is not registered.
    #[error(
        "snapshot repository `{repository}` is not registered at {url}: register it first, e.g. \
         PUT {url} with {{\"type\":\"fs\",\"settings\":{{\"location\":\"/mnt/backup/elasticsearch\"}}}} \
         (the location must be listed in `path.repo` on every node)"
    )]
    RepositoryMissing {
        /// The repository.
        repository: String,
        /// The repository's URL.
        url: String,
    },
    /// `_verify` failed: some node cannot reach the repository.
    #[error(
        "snapshot repository `{repository}` failed verification (is its location shared by every node?)"
    )]
    VerifyFailed {
        /// The repository.
        repository: String,
        /// What Elasticsearch said.
        source: HttpError,
    },
    /// The snapshot could not be started.
    #[error("could not start snapshot {name}")]
    Start {
        /// `repository:snapshot`.
        name: String,
        /// What Elasticsearch said.
        source: HttpError,
    },
    /// A snapshot of that name already exists (another run's, with the same
    /// stamp): nothing was started, and it must not be deleted.
    #[error(
        "snapshot {name} already exists: another run made it (same stamp: clock set back, \
         daylight-saving change, two runs in one second); this run started nothing and leaves it alone"
    )]
    NameTaken {
        /// `repository:snapshot`.
        name: String,
        /// What Elasticsearch said.
        source: HttpError,
    },
    /// The PUT answered 2xx but did not say the snapshot was accepted.
    #[error("PUT {url} did not accept snapshot {name}: {answer}")]
    NotAccepted {
        /// `repository:snapshot`.
        name: String,
        /// The URL.
        url: String,
        /// The answer, shortened.
        answer: String,
    },
    /// The snapshot ended in a state other than SUCCESS.
    #[error(
        "snapshot {name} ended {state}: {shards_failed} of {shards_total} shards failed{failures}"
    )]
    Ended {
        /// `repository:snapshot`.
        name: String,
        /// FAILED, PARTIAL or INCOMPATIBLE.
        state: String,
        /// Failed shards.
        shards_failed: u64,
        /// All shards.
        shards_total: u64,
        /// "; [index][shard] on node N: reason" per failure, and the snapshot's reason.
        failures: String,
    },
    /// The snapshot disappeared while we waited for it.
    #[error("snapshot {name} disappeared from {url} while running (deleted by someone else?)")]
    Vanished {
        /// `repository:snapshot`.
        name: String,
        /// The snapshot's URL.
        url: String,
    },
    /// The snapshot was still running at the step's timeout.
    #[error("snapshot {name} still {state} after {waited}; {fate}")]
    StillRunning {
        /// `repository:snapshot`.
        name: String,
        /// Its last known state.
        state: String,
        /// How long the step waited.
        waited: String,
        /// "left running (...)" or "deleted" or why deleting failed.
        fate: String,
    },
    /// Following the snapshot failed; it may still be running.
    #[error("lost track of snapshot {name}, which may still be running")]
    Poll {
        /// `repository:snapshot`.
        name: String,
        /// The failure.
        source: HttpError,
    },
}

impl StepFailure for EsSnapshotError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            EsSnapshotError::RepositoryMissing { .. } => ErrorKind::RepositoryMissing,
            EsSnapshotError::VerifyFailed { .. } => ErrorKind::RepositoryVerify,
            EsSnapshotError::Start { source, .. } => source.error_kind(),
            EsSnapshotError::NotAccepted { .. } => ErrorKind::InvalidResponse,
            EsSnapshotError::NameTaken { .. } => ErrorKind::SnapshotExists,
            EsSnapshotError::Ended { state, .. } => match state.as_str() {
                "PARTIAL" => ErrorKind::SnapshotPartial,
                "INCOMPATIBLE" => ErrorKind::SnapshotIncompatible,
                _ => ErrorKind::SnapshotFailed,
            },
            EsSnapshotError::Vanished { .. } => ErrorKind::SnapshotMissing,
            EsSnapshotError::StillRunning { .. } => ErrorKind::Timeout,
            EsSnapshotError::Poll { source, .. } => source.error_kind(),
        }
    }
}

/// A snapshot as `GET /_snapshot/<repo>/<snapshot>` describes it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SnapshotInfo {
    snapshot: String,
    uuid: String,
    state: Option<String>,
    reason: Option<String>,
    indices: Vec<String>,
    start_time: Option<String>,
    end_time: Option<String>,
    duration_in_millis: Option<u64>,
    version: Option<String>,
    failures: Vec<ShardFailure>,
    shards: Option<ShardCounts>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ShardFailure {
    index: Option<String>,
    shard_id: Option<i64>,
    node_id: Option<String>,
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ShardCounts {
    total: u64,
    failed: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SnapshotList {
    snapshots: Vec<SnapshotInfo>,
}

/// The answer to the PUT: `{"accepted":true}`, or the finished snapshot.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartAnswer {
    accepted: Option<bool>,
    snapshot: Option<SnapshotInfo>,
}

impl SnapshotInfo {
    fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("IN_PROGRESS")
    }

    fn is_terminal(&self) -> bool {
        matches!(
            self.state(),
            "SUCCESS" | "FAILED" | "PARTIAL" | "INCOMPATIBLE"
        )
    }

    fn output(self, repository: &str) -> EsSnapshotOutput {
        let state = self.state().to_string();
        let shards = self.shards.unwrap_or_default();
        EsSnapshotOutput {
            repository: repository.to_string(),
            state,
            snapshot: self.snapshot,
            uuid: self.uuid,
            indices: self.indices,
            shards_total: shards.total,
            shards_failed: shards.failed,
            start_time: self.start_time.unwrap_or_default(),
            end_time: self.end_time.unwrap_or_default(),
            duration_ms: self.duration_in_millis.unwrap_or_default(),
            version: self.version.unwrap_or_default(),
        }
    }

    fn failures_text(&self) -> String {
        let mut text = String::new();
        for failure in &self.failures {
            text.push_str(&format!(
                "; [{}][{}]",
                failure.index.as_deref().unwrap_or("?"),
                failure
                    .shard_id
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "?".to_string())
            ));
            if let Some(node) = &failure.node_id {
                text.push_str(&format!(" on node {node}"));
            }
            text.push_str(&format!(
                ": {}",
                failure.reason.as_deref().unwrap_or("no reason given")
            ));
        }
        if let Some(reason) = &self.reason {
            text.push_str(&format!("; reason: {reason}"));
        }
        text
    }
}

impl Step for EsSnapshot {
    const NAME: &'static str = "es_snapshot";
    const DOC: &'static str = "\
Takes an Elasticsearch snapshot and waits until it is SUCCESS; any other end is an error.

1. Checks the repository is registered (GET /_snapshot/<repository>); with
   `verify_repository`, also asks every node to check it can write there
   (POST /_snapshot/<repository>/_verify: catches a location not shared by all nodes).
2. Starts the snapshot (PUT /_snapshot/<repository>/<snapshot>) and requires
   `\"accepted\": true`. A snapshot of that name already there (another run's)
   fails with kind `snapshot_exists`: nothing was started, so nothing of it
   is this run's to delete.
3. Polls GET /_snapshot/<repository>/<snapshot> every `poll` until the state is
   terminal (a status request that fails with HTTP 5xx, a cut-off answer or a
   dropped connection is asked again at the next poll; 10 such failures in a
   row end the step). SUCCESS ends the step; FAILED, PARTIAL (unless `allow_partial`) and
   INCOMPATIBLE are errors listing the failed shards and their reasons.
   At the timeout (default 2h) the step fails naming the snapshot still running,
   after deleting it when `on_timeout: \"delete\"` (30 s allowed for that).
   When the run is interrupted while the snapshot runs, the step deletes it
   (Elasticsearch aborts it; at most 10 s) since a snapshot of an interrupted
   backup is not one to restore, then reports the interruption.

Requests that fail transiently (connection refused; connection reset and timeouts
for GET/PUT/DELETE; HTTP 429, 502, 503, 504) are retried with exponential backoff
(0.25 s doubling up to 10 s, honouring Retry-After) for up to 2 minutes per request
and never past the timeout. Other errors are not retried; they show Elasticsearch's
`error.type` and `error.reason` and the URL. If the PUT was retried and Elasticsearch
then says the name is taken, the first attempt started it: the step follows it.

Under --dry-run the repository check (and `_verify`) run for real; the PUT is only
described and a placeholder result (state SUCCESS, empty uuid) is returned.

Options:
  url                   string           Elasticsearch URL (default \"http://127.0.0.1:9200\")
  repository            string           registered snapshot repository (required)
  snapshot              string           new snapshot name, lower case (required)
  indices               string or array  indices to include (default: all)
  ignore_unavailable    bool             skip missing or closed indices (default true)
  include_global_state  bool             include the cluster state (default false)
  wait                  bool             wait for the terminal state (default true)
  follow                bool             send no PUT: follow the snapshot of that name, started
                                         earlier with `wait: false`, to its end (default false)
  poll                  duration         pause between status requests (default \"5s\", at least 50ms)
  verify_repository     bool             POST _verify before starting (default false)
  allow_partial         bool             accept a PARTIAL snapshot (default false)
  on_timeout            string           \"leave\" (default) or \"delete\" the running snapshot
  user, password        string, secret   basic auth (password from secret())
  api_key               secret           API key, sent as `Authorization: ApiKey <key>`
  ca_cert               string           PEM file of the CA to trust besides the system's
  insecure              bool             accept any certificate; logs a warning (default false)
  timeout               duration         (common option) default \"2h\"

Result:
  repository     string   the repository
  snapshot       string   the snapshot name
  uuid           string   the snapshot UUID
  state          string   SUCCESS (PARTIAL with allow_partial; IN_PROGRESS with wait: false)
  indices        array    indices in the snapshot
  shards_total   int      shards in the snapshot
  shards_failed  int      shards that failed
  start_time     string   start, ISO 8601 UTC
  end_time       string   end, ISO 8601 UTC (empty while running)
  duration_ms    int      duration as Elasticsearch measured it
  version        string   Elasticsearch version that wrote the snapshot

Example:
  let snap = es_snapshot(#{
      url: \"http://127.0.0.1:9200\", user: \"elastic\", password: secret(\"ES_PASSWORD\"),
      repository: \"thehive_repository\", snapshot: `elasticsearch_${stamp}`,
      indices: \"thehive_global\", on_timeout: \"delete\", timeout: \"3h\",
  });
  log_info(`snapshot ${snap.snapshot}: ${snap.shards_total} shards in ${snap.duration_ms} ms`);
";
    const HANDLES_TIMEOUT: bool = true;

    type Options = EsSnapshotOptions;
    type Output = EsSnapshotOutput;

    fn describe(options: &EsSnapshotOptions) -> String {
        let indices = match &options.indices {
            Some(indices) => format!("indices {}", indices.names().join(",")),
            None => "all indices".to_string(),
        };
        let then = if options.wait {
            format!(
                "then wait for SUCCESS (poll every {}; on timeout {})",
                humantime::format_duration(options.poll),
                match options.on_timeout {
                    OnTimeout::Leave => "leave it running",
                    OnTimeout::Delete => "delete it",
                }
            )
        } else {
            "without waiting for it to end".to_string()
        };
        if options.follow {
            return format!(
                "follow snapshot {} of {}{}{}, {then}",
                options.full_name(),
                display_url(&options.url),
                options.connection().auth_summary(),
                tls_summary(&options.ca_cert, options.insecure),
            );
        }
        format!(
            "snapshot {indices} of {}{}{} into {}, {then}",
            display_url(&options.url),
            options.connection().auth_summary(),
            tls_summary(&options.ca_cert, options.insecure),
            options.full_name(),
        )
    }

    fn label(options: &EsSnapshotOptions) -> Option<String> {
        Some(format!("es_snapshot {}", options.snapshot))
    }

    fn default_timeout(_options: &EsSnapshotOptions) -> Option<Duration> {
        Some(DEFAULT_TIMEOUT)
    }

    fn dry_run(_options: &EsSnapshotOptions) -> DryRun<EsSnapshotOutput> {
        DryRun::Run
    }

    async fn run(
        options: EsSnapshotOptions,
        ctx: StepContext,
    ) -> Result<EsSnapshotOutput, StepError> {
        if options.poll < MIN_POLL {
            return Err(StepError::new(
                ErrorKind::Options,
                format!(
                    "option `poll` {} is too short: at least {} (every poll is a request to Elasticsearch)",
                    humantime::format_duration(options.poll),
                    humantime::format_duration(MIN_POLL)
                ),
            ));
        }
        // A wildcard, comma or `_all` would make the cleanup DELETE (or a
        // poll read) every snapshot it matches: one name means one snapshot.
        for (key, name) in [
            ("repository", &options.repository),
            ("snapshot", &options.snapshot),
        ] {
            if !crate::search::snapshot_api::is_plain_name(name) {
                return Err(HttpError::Options(format!(
                    "`{key}` is `{name}`: use letters, digits, `_`, `-` and `.` only \
                     (no wildcard, comma, `_all`, `/`, and not starting with `_`, `-` or `.`)"
                ))
                .into());
            }
        }
        let client = HttpClient::new(&options.connection(), &options.url, &ctx)?;
        check_repository(&client, &options).await?;
        if ctx.dry_run {
            tracing::info!(
                target: "runbook::es_snapshot",
                "{}: dry-run: would {} {}",
                ctx.label,
                if options.follow { "follow" } else { "PUT" },
                display_url(&snapshot_url(&options))
            );
            return Ok(dry_run_output(&options));
        }
        let started = Instant::now();
        match follow_snapshot(&client, &options).await {
            Ok(output) => Ok(output),
            Err(Interrupted::Failed(error)) => Err(error),
            Err(Interrupted::Cancelled) => {
                delete_after_interruption(&client, &options, &ctx).await;
                Err(StepError::cancelled())
            }
            Err(Interrupted::Deadline { state }) => {
                Err(still_running(&client, &options, state, started)
                    .await
                    .into())
            }
        }
    }
}

/// How starting and following the snapshot ended when it did not end well.
enum Interrupted {
    /// A failure to report as is.
    Failed(StepError),
    /// The run was interrupted after the PUT was sent.
    Cancelled,
    /// The deadline passed after the PUT was sent; the last state seen.
    Deadline { state: String },
}

impl<E: StepFailure> From<E> for Interrupted {
    fn from(error: E) -> Self {
        Interrupted::Failed(error.into())
    }
}

fn snapshot_url(options: &EsSnapshotOptions) -> Url {
    crate::search::snapshot_api::snapshot_url(&options.url, &options.repository, &options.snapshot)
}

fn dry_run_output(options: &EsSnapshotOptions) -> EsSnapshotOutput {
    EsSnapshotOutput {
        repository: options.repository.clone(),
        snapshot: options.snapshot.clone(),
        state: "SUCCESS".to_string(),
        indices: options
            .indices
            .as_ref()
            .map(Indices::names)
            .unwrap_or_default(),
        ..EsSnapshotOutput::default()
    }
}

async fn check_repository(
    client: &HttpClient,
    options: &EsSnapshotOptions,
) -> Result<(), StepError> {
    if !client
        .repository_registered(&options.url, &options.repository)
        .await?
    {
        return Err(EsSnapshotError::RepositoryMissing {
            repository: options.repository.clone(),
            url: display_url(&endpoint(&options.url, &["_snapshot", &options.repository])),
        }
        .into());
    }
    if options.verify_repository {
        let verify = endpoint(&options.url, &["_snapshot", &options.repository, "_verify"]);
        client
            .send_ok(&HttpRequest::new(Method::POST, verify))
            .await
            .map_err(|source| match source {
                HttpError::Cancelled => StepError::cancelled(),
                source => EsSnapshotError::VerifyFailed {
                    repository: options.repository.clone(),
                    source,
                }
                .into(),
            })?;
    }
    Ok(())
}

/// Sends the PUT (unless `follow`) and polls until a terminal state.
async fn follow_snapshot(
    client: &HttpClient,
    options: &EsSnapshotOptions,
) -> Result<EsSnapshotOutput, Interrupted> {
    let url = snapshot_url(options);
    if !options.follow
        && let Some(finished) = start_snapshot(client, options, &url).await?
    {
        return Ok(finished);
    }
    poll_until_done(client, options, &url).await
}

/// The PUT that starts the snapshot. `Some` when Elasticsearch answered with
/// the finished snapshot already; `None` when it accepted it (or an earlier
/// attempt of a retried PUT had started it) and it is to be polled.
async fn start_snapshot(
    client: &HttpClient,
    options: &EsSnapshotOptions,
    url: &Url,
) -> Result<Option<EsSnapshotOutput>, Interrupted> {
    let answer = send_start(client, options, url).await?;
    let name_taken = matches!(
        answer.es_error_type().as_deref(),
        Some("snapshot_name_already_in_use_exception" | "invalid_snapshot_name_exception")
    ) && String::from_utf8_lossy(&answer.body).contains("already exists");
    if answer.attempts > 1 && name_taken {
        // An earlier attempt reached Elasticsearch before its answer was lost.
        tracing::warn!(
            target: "runbook::es_snapshot",
            "snapshot {} already exists after a retried PUT: following it",
            options.full_name()
        );
        return Ok(None);
    }
    if name_taken {
        return Err(EsSnapshotError::NameTaken {
            name: options.full_name(),
            source: answer.to_error(),
        }
        .into());
    }
    if !answer.status.is_success() {
        return Err(EsSnapshotError::Start {
            name: options.full_name(),
            source: answer.to_error(),
        }
        .into());
    }
    let start: StartAnswer = answer.json()?;
    if let Some(info) = start.snapshot.filter(SnapshotInfo::is_terminal) {
        return finish(info, options).map(Some).map_err(Interrupted::Failed);
    }
    if start.accepted != Some(true) {
        return Err(EsSnapshotError::NotAccepted {
            name: options.full_name(),
            url: display_url(url),
            answer: String::from_utf8_lossy(&answer.body)
                .chars()
                .take(200)
                .collect(),
        }
        .into());
    }
    Ok(None)
}

/// Sends the PUT that starts the snapshot (retried by the client) and
/// returns Elasticsearch's answer, whatever its status; a request that got
/// no answer is the step's error.
async fn send_start(
    client: &HttpClient,
    options: &EsSnapshotOptions,
    url: &Url,
) -> Result<HttpResponse, Interrupted> {
    let mut body = serde_json::json!({
        "ignore_unavailable": options.ignore_unavailable,
        "include_global_state": options.include_global_state,
    });
    if let Some(indices) = &options.indices {
        body["indices"] = serde_json::to_value(indices).expect("indices serialize");
    }
    match client
        .send(&HttpRequest::json(Method::PUT, url.clone(), &body))
        .await
    {
        Ok(answer) => Ok(answer),
        Err(HttpError::Cancelled) => Err(Interrupted::Cancelled),
        Err(HttpError::Deadline { .. }) => Err(Interrupted::Deadline {
            state: "starting".to_string(),
        }),
        Err(source) => Err(EsSnapshotError::Start {
            name: options.full_name(),
            source,
        }
        .into()),
    }
}

/// Polls the started snapshot every `poll` until it reaches a terminal state
/// (or at once without `wait`), riding out a few failed reads in a row.
async fn poll_until_done(
    client: &HttpClient,
    options: &EsSnapshotOptions,
    url: &Url,
) -> Result<EsSnapshotOutput, Interrupted> {
    let mut state = "IN_PROGRESS".to_string();
    // Status requests that failed in a row.
    let mut failures: u32 = 0;
    loop {
        let info = match poll_once(client, options, url).await {
            Ok(info) => {
                failures = 0;
                info
            }
            Err(error) if is_transient_poll_error(&error) => {
                // One HTTP 500 or a truncated answer says nothing about the
                // snapshot, which goes on in Elasticsearch: ask again, up to
                // POLL_FAILURES_IN_A_ROW times in a row.
                failures += 1;
                if failures >= POLL_FAILURES_IN_A_ROW {
                    return Err(EsSnapshotError::Poll {
                        name: options.full_name(),
                        source: error,
                    }
                    .into());
                }
                tracing::warn!(
                    target: "runbook::es_snapshot",
                    "snapshot {}: reading its state failed ({error}); asking again ({failures} of {POLL_FAILURES_IN_A_ROW} failures in a row allowed)",
                    options.full_name()
                );
                state = wait_for_next_poll(client, options, state).await?;
                continue;
            }
            Err(error) => return Err(poll_failure(error, options, url, state)),
        };
        if info.is_terminal() || !options.wait {
            return finish(info, options).map_err(Interrupted::Failed);
        }
        state = info.state().to_string();
        tracing::debug!(
            target: "runbook::es_snapshot",
            "snapshot {} is {state}",
            options.full_name()
        );
        state = wait_for_next_poll(client, options, state).await?;
    }
}

/// Sleeps `poll`, unless the run is cancelled or its deadline comes first
/// (then the snapshot was last seen in `state`). Gives `state` back.
async fn wait_for_next_poll(
    client: &HttpClient,
    options: &EsSnapshotOptions,
    state: String,
) -> Result<String, Interrupted> {
    tokio::select! {
        _ = client.cancelled() => Err(Interrupted::Cancelled),
        _ = client.deadline_reached() => Err(Interrupted::Deadline { state }),
        _ = tokio::time::sleep(options.poll) => Ok(state),
    }
}

/// A poll's failure that is not worth asking again: cancelled, the deadline
/// (the snapshot last seen in `state`), the snapshot gone (404), or another.
fn poll_failure(
    error: HttpError,
    options: &EsSnapshotOptions,
    url: &Url,
    state: String,
) -> Interrupted {
    match error {
        HttpError::Cancelled => Interrupted::Cancelled,
        HttpError::Deadline { .. } => Interrupted::Deadline { state },
        HttpError::Status { status: 404, .. } => EsSnapshotError::Vanished {
            name: options.full_name(),
            url: display_url(url),
        }
        .into(),
        source => EsSnapshotError::Poll {
            name: options.full_name(),
            source,
        }
        .into(),
    }
}

/// A failure to read the snapshot's state that another request may not
/// have: a server error (5xx), an answer that is not the expected JSON (cut
/// off), a dropped connection. Not: 404 (the snapshot is gone), 401/403.
fn is_transient_poll_error(error: &HttpError) -> bool {
    match error {
        HttpError::Status { status, .. } => *status >= 500,
        HttpError::Json { .. } | HttpError::Transport { .. } => true,
        _ => false,
    }
}

async fn poll_once(
    client: &HttpClient,
    options: &EsSnapshotOptions,
    url: &Url,
) -> Result<SnapshotInfo, HttpError> {
    let list: SnapshotList = client
        .send_ok(&HttpRequest::new(Method::GET, url.clone()))
        .await?
        .json()?;
    list.snapshots
        .into_iter()
        .find(|s| s.snapshot == options.snapshot)
        .ok_or_else(|| HttpError::Status {
            method: Method::GET,
            url: display_url(url),
            status: 404,
            detail: String::new(),
            attempts: String::new(),
        })
}

fn finish(info: SnapshotInfo, options: &EsSnapshotOptions) -> Result<EsSnapshotOutput, StepError> {
    let state = info.state().to_string();
    let accepted = state == "SUCCESS"
        || (state == "PARTIAL" && options.allow_partial)
        || (!options.wait && !info.is_terminal());
    if accepted {
        if state == "PARTIAL" {
            tracing::warn!(
                target: "runbook::es_snapshot",
                "snapshot {} is PARTIAL (accepted by allow_partial){}",
                options.full_name(),
                info.failures_text()
            );
        }
        return Ok(info.output(&options.repository));
    }
    let shards = info.shards.as_ref();
    Err(EsSnapshotError::Ended {
        name: options.full_name(),
        shards_failed: shards.map(|s| s.failed).unwrap_or_default(),
        shards_total: shards.map(|s| s.total).unwrap_or_default(),
        failures: info.failures_text(),
        state,
    }
    .into())
}

/// The timeout error, after deleting the snapshot when asked to.
async fn still_running(
    client: &HttpClient,
    options: &EsSnapshotOptions,
    state: String,
    started: Instant,
) -> EsSnapshotError {
    let url = snapshot_url(options);
    let fate = match options.on_timeout {
        OnTimeout::Leave => format!(
            "left running (on_timeout: \"leave\"); delete it with DELETE {}",
            display_url(&url)
        ),
        OnTimeout::Delete => {
            let cleanup = client.with_deadline(Some(Instant::now() + TIMEOUT_CLEANUP_GRACE));
            match delete_snapshot(&cleanup, &url).await {
                Ok(()) => "deleted it (on_timeout: \"delete\")".to_string(),
                Err(error) => format!("deleting it failed: {error}"),
            }
        }
    };
    let waited = Duration::from_secs(started.elapsed().as_secs().max(1));
    EsSnapshotError::StillRunning {
        name: options.full_name(),
        state,
        waited: humantime::format_duration(waited).to_string(),
        fate,
    }
}

/// After an interruption: the snapshot of an interrupted backup is not one to
/// restore, so delete it (which aborts it), within a short grace period.
async fn delete_after_interruption(
    client: &HttpClient,
    options: &EsSnapshotOptions,
    ctx: &StepContext,
) {
    let url = snapshot_url(options);
    let cleanup = client
        .uncancellable()
        .with_deadline(Some(Instant::now() + CANCEL_CLEANUP_GRACE));
    match delete_snapshot(&cleanup, &url).await {
        Ok(()) => tracing::warn!(
            target: "runbook::es_snapshot",
            "{}: interrupted: deleted snapshot {}",
            ctx.label,
            options.full_name()
        ),
        Err(error) => tracing::warn!(
            target: "runbook::es_snapshot",
            "{}: interrupted: could not delete snapshot {}, it may still be running: {error}",
            ctx.label,
            options.full_name()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> EsSnapshotOptions {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_and_describe_hide_the_password() {
        let o = options(serde_json::json!({
            "repository": "thehive_repository", "snapshot": "elasticsearch_1",
            "indices": "thehive_global", "user": "elastic", "password": "hunter2",
        }));
        assert!(o.ignore_unavailable && !o.include_global_state && o.wait && !o.allow_partial);
        assert_eq!(o.poll, Duration::from_secs(5));
        assert_eq!(o.on_timeout, OnTimeout::Leave);
        assert_eq!(EsSnapshot::default_timeout(&o), Some(DEFAULT_TIMEOUT));
        let text = EsSnapshot::describe(&o);
        assert_eq!(
            text,
            "snapshot indices thehive_global of http://127.0.0.1:9200/ as user elastic into \
             thehive_repository:elasticsearch_1, then wait for SUCCESS (poll every 5s; on timeout leave it running)"
        );
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn indices_take_a_string_or_a_list_and_reject_others() {
        let o =
            options(serde_json::json!({"repository": "r", "snapshot": "s", "indices": ["a", "b"]}));
        assert_eq!(o.indices.unwrap().names(), ["a", "b"]);
        let e = serde_json::from_value::<EsSnapshotOptions>(
            serde_json::json!({"repository": "r", "snapshot": "s", "indices": 3}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("a string or an array of strings"),
            "{e}"
        );
        let e = serde_json::from_value::<EsSnapshotOptions>(
            serde_json::json!({"repository": "r", "snapshot": "s", "on_timeout": "abort"}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown variant `abort`"), "{e}");
    }

    #[test]
    fn failed_shards_are_listed() {
        let info: SnapshotInfo = serde_json::from_value(serde_json::json!({
            "snapshot": "s", "state": "PARTIAL", "shards": {"total": 3, "failed": 1, "successful": 2},
            "failures": [{"index": "thehive_global", "shard_id": 2, "node_id": "n1", "reason": "disk full"}]
        }))
        .unwrap();
        let o = options(serde_json::json!({"repository": "r", "snapshot": "s"}));
        let e = finish(info, &o).unwrap_err();
        assert_eq!(e.kind(), "snapshot_partial");
        assert_eq!(
            e.to_string(),
            "snapshot r:s ended PARTIAL: 1 of 3 shards failed; [thehive_global][2] on node n1: disk full"
        );
    }
}
