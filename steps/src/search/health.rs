//! `es_health`: reads (and optionally waits for) Elasticsearch's cluster
//! health and fails when it is below what the workflow requires.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::secret::Secret;
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::search::client::{
    HttpClient, HttpRequest, default_elasticsearch_url, display_url, endpoint, tls_summary,
};

/// How long Elasticsearch waits for `wait_for_status` when the step has no timeout
/// (Elasticsearch's own default).
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Kept back from the step's remaining time so Elasticsearch answers before the deadline.
const WAIT_MARGIN: Duration = Duration::from_secs(2);

/// The `es_health` step.
pub struct EsHealth;

/// A cluster health colour, worst first so that `<` means "worse than".
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Some primary shard is unassigned: data is unavailable.
    Red,
    /// All primaries assigned, some replica is not.
    Yellow,
    /// All shards assigned.
    Green,
}

impl HealthStatus {
    fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Red => "red",
            HealthStatus::Yellow => "yellow",
            HealthStatus::Green => "green",
        }
    }
}

/// Options of `es_health`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsHealthOptions {
    /// Elasticsearch's URL.
    #[serde(default = "default_elasticsearch_url")]
    pub url: Url,
    /// Ask Elasticsearch to wait (until the step's timeout) for this status.
    #[serde(default)]
    pub wait_for_status: Option<HealthStatus>,
    /// The least acceptable status (default: `wait_for_status`, else yellow).
    #[serde(default)]
    pub require: Option<HealthStatus>,
    /// Basic-auth user.
    #[serde(default)]
    pub user: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// API key.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// PEM file of the CA to trust.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure: bool,
}

crate::search::client::impl_http_connection!(EsHealthOptions);

impl EsHealthOptions {
    fn required(&self) -> HealthStatus {
        self.require
            .or(self.wait_for_status)
            .unwrap_or(HealthStatus::Yellow)
    }
}

/// Result of `es_health`.
#[derive(Debug, Serialize)]
pub struct EsHealthOutput {
    /// "green", "yellow" or "red".
    pub status: HealthStatus,
    /// Nodes in the cluster.
    pub number_of_nodes: u64,
    /// Data nodes in the cluster.
    pub number_of_data_nodes: u64,
    /// Share of shards active, 0 to 100.
    pub active_shards_percent: f64,
}

/// What `GET /_cluster/health` answers (the fields we use).
#[derive(Debug, Deserialize)]
struct ClusterHealth {
    status: HealthStatus,
    #[serde(default)]
    number_of_nodes: u64,
    #[serde(default)]
    number_of_data_nodes: u64,
    #[serde(default)]
    active_shards_percent_as_number: f64,
    #[serde(default)]
    unassigned_shards: u64,
    #[serde(default)]
    initializing_shards: u64,
    #[serde(default)]
    relocating_shards: u64,
    #[serde(default)]
    timed_out: bool,
}

/// Why `es_health` failed (besides plain HTTP failures).
#[derive(Debug, thiserror::Error)]
pub enum EsHealthError {
    /// The cluster is below the required status.
    #[error(
        "cluster health at {url} is {status}, {required} required{waited}: {unassigned} unassigned, \
         {initializing} initializing, {relocating} relocating shards ({meaning})"
    )]
    BelowRequired {
        /// The health URL.
        url: String,
        /// The status.
        status: &'static str,
        /// The required status.
        required: &'static str,
        /// " (waited for it)" or empty.
        waited: &'static str,
        /// Unassigned shards.
        unassigned: u64,
        /// Initializing shards.
        initializing: u64,
        /// Relocating shards.
        relocating: u64,
        /// What the status means.
        meaning: &'static str,
    },
}

impl StepFailure for EsHealthError {
    fn error_kind(&self) -> ErrorKind {
        ErrorKind::Health
    }
}

impl Step for EsHealth {
    const NAME: &'static str = "es_health";
    const DOC: &'static str = "\
Reads Elasticsearch's cluster health; fails when it is below `require`.

GET /_cluster/health. With `wait_for_status`, Elasticsearch is asked to wait for
that status for the step's remaining time (less 2 s; 30 s without a timeout).
`require` defaults to `wait_for_status`, else \"yellow\": a red cluster (some
primary shard unassigned, data unavailable) always fails unless `require: \"red\"`.
Runs for real under --dry-run (it only reads). Retries and errors as for `http`.

Options:
  url              string          Elasticsearch URL (default \"http://127.0.0.1:9200\")
  wait_for_status  string          \"green\" or \"yellow\": wait for it (default: no wait)
  require          string          least acceptable status: \"green\", \"yellow\" or \"red\"
  user, password   string, secret  basic auth (password from secret())
  api_key          secret          API key, sent as `Authorization: ApiKey <key>`
  ca_cert          string          PEM file of the CA to trust besides the system's
  insecure         bool            accept any certificate; logs a warning (default false)

Result:
  status                string  \"green\", \"yellow\" or \"red\"
  number_of_nodes       int     nodes in the cluster
  number_of_data_nodes  int     data nodes
  active_shards_percent float   active shards, percent

Example:
  let health = es_health(#{ url: \"http://127.0.0.1:9200\", wait_for_status: \"green\", timeout: \"2m\" });
  log_info(`cluster ${health.status}, ${health.number_of_nodes} nodes`);
";

    type Options = EsHealthOptions;
    type Output = EsHealthOutput;

    fn describe(options: &EsHealthOptions) -> String {
        let connection = options.connection();
        let wait = match options.wait_for_status {
            Some(status) => format!(", waiting for {}", status.as_str()),
            None => String::new(),
        };
        format!(
            "check cluster health of {}{}{}{wait}, require {}",
            display_url(&options.url),
            connection.auth_summary(),
            tls_summary(&options.ca_cert, options.insecure),
            options.required().as_str()
        )
    }

    fn label(_options: &EsHealthOptions) -> Option<String> {
        Some("es_health".to_string())
    }

    fn dry_run(_options: &EsHealthOptions) -> DryRun<EsHealthOutput> {
        DryRun::Run
    }

    fn changes(_options: &EsHealthOptions) -> bool {
        false
    }

    async fn run(options: EsHealthOptions, ctx: StepContext) -> Result<EsHealthOutput, StepError> {
        let connection = options.connection();
        let client = HttpClient::new(&connection, &options.url, &ctx)?;
        let mut url = endpoint(&options.url, &["_cluster", "health"]);
        if let Some(status) = options.wait_for_status {
            let wait = ctx
                .remaining()
                .map(|left| left.saturating_sub(WAIT_MARGIN).max(Duration::from_secs(1)))
                .unwrap_or(DEFAULT_WAIT);
            url.query_pairs_mut()
                .append_pair("wait_for_status", status.as_str())
                .append_pair("timeout", &format!("{}s", wait.as_secs()));
        }
        let answer = client
            .send(&HttpRequest::new(Method::GET, url.clone()))
            .await?;
        // 408: Elasticsearch waited for `wait_for_status` in vain; the body is
        // still the health, with `timed_out: true`.
        let answer = if answer.status.as_u16() == 408 {
            answer
        } else {
            answer.require_success()?
        };
        let health: ClusterHealth = answer.json()?;
        let required = options.required();
        if health.status < required {
            return Err(EsHealthError::BelowRequired {
                url: display_url(&endpoint(&options.url, &["_cluster", "health"])),
                status: health.status.as_str(),
                required: required.as_str(),
                waited: if health.timed_out {
                    " (waited for it in vain)"
                } else {
                    ""
                },
                unassigned: health.unassigned_shards,
                initializing: health.initializing_shards,
                relocating: health.relocating_shards,
                meaning: match health.status {
                    HealthStatus::Red => {
                        "red: some primary shards are unassigned, data is unavailable"
                    }
                    _ => "yellow: some replica shards are unassigned",
                },
            }
            .into());
        }
        Ok(EsHealthOutput {
            status: health.status,
            number_of_nodes: health.number_of_nodes,
            number_of_data_nodes: health.number_of_data_nodes,
            active_shards_percent: health.active_shards_percent_as_number,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> EsHealthOptions {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn require_defaults_to_wait_for_status_then_yellow() {
        assert_eq!(
            options(serde_json::json!({})).required(),
            HealthStatus::Yellow
        );
        assert_eq!(
            options(serde_json::json!({"wait_for_status": "green"})).required(),
            HealthStatus::Green
        );
        assert_eq!(
            options(serde_json::json!({"wait_for_status": "green", "require": "red"})).required(),
            HealthStatus::Red
        );
        assert!(
            HealthStatus::Red < HealthStatus::Yellow && HealthStatus::Yellow < HealthStatus::Green
        );
    }

    #[test]
    fn unknown_status_is_rejected() {
        let e = serde_json::from_value::<EsHealthOptions>(serde_json::json!({"require": "blue"}))
            .unwrap_err();
        assert!(e.to_string().contains("unknown variant `blue`"), "{e}");
    }

    #[test]
    fn describe_names_url_and_requirement_without_secrets() {
        let o = options(serde_json::json!({"api_key": "c2VjcmV0", "wait_for_status": "green"}));
        let text = EsHealth::describe(&o);
        assert_eq!(
            text,
            "check cluster health of http://127.0.0.1:9200/ with an API key, waiting for green, require green"
        );
    }
}
