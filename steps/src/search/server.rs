//! `es_server`: a pre-flight probe that the URL is an Elasticsearch or
//! OpenSearch server: one `GET /`, a short connect timeout, no retries, and a
//! look at the answer's shape. A wrong URL must fail in seconds with "nothing
//! answers" or "this is not Elasticsearch/OpenSearch", not after minutes of
//! retries with advice about a snapshot repository.

use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::search::client::{
    HttpClient, HttpError, HttpRequest, HttpResponse, display_url, endpoint, one_line_excerpt,
    tls_summary,
};

/// How long connecting may take: a probe of a wrong address must end fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the whole probe may take when the script gives no `timeout`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// Characters of an unexpected answer quoted in the error.
const EXCERPT: usize = 120;

/// The `es_server` step.
pub struct EsServer;

crate::search::client::with_http_connection! {
    /// Options of `es_server`.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct EsServerOptions {
        /// The server's URL, as text: a URL without a scheme gets a clear message.
        pub url: String,
    }
}

/// Result of `es_server`.
#[derive(Debug, Default, Serialize)]
pub struct EsServerOutput {
    /// "elasticsearch" or "opensearch".
    pub distribution: String,
    /// The server's version, e.g. "8.15.3".
    pub version: String,
    /// The cluster's name.
    pub cluster_name: String,
}

/// Why `es_server` failed.
#[derive(Debug, thiserror::Error)]
pub enum EsServerError {
    /// The URL does not parse.
    #[error("`{url}` is not a URL: {reason} (write it like http://127.0.0.1:9200)")]
    BadUrl {
        /// The text given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Nothing answered.
    #[error("nothing answers at {url}: {reason}")]
    NoAnswer {
        /// The URL.
        url: String,
        /// Connection refused, timed out...
        reason: String,
    },
    /// Something answered, but not Elasticsearch/OpenSearch.
    #[error("{url} answers, but this is not Elasticsearch/OpenSearch: {why}")]
    NotElasticsearch {
        /// The URL.
        url: String,
        /// What the answer looked like.
        why: String,
    },
    /// Credentials refused (or missing).
    #[error("{url} refused the credentials: HTTP {status}{detail}")]
    Refused {
        /// The URL.
        url: String,
        /// 401 or 403.
        status: u16,
        /// What the server said.
        detail: String,
    },
    /// Options that do not fit together, a CA file that cannot be read.
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl StepFailure for EsServerError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            EsServerError::BadUrl { .. } => ErrorKind::Options,
            EsServerError::NoAnswer { .. } => ErrorKind::Connect,
            EsServerError::NotElasticsearch { .. } => ErrorKind::NotElasticsearch,
            EsServerError::Refused { status: 403, .. } => ErrorKind::Forbidden,
            EsServerError::Refused { .. } => ErrorKind::Unauthorized,
            EsServerError::Http(e) => e.error_kind(),
        }
    }
}

/// What `GET /` answers (the fields we look at).
#[derive(Debug, Deserialize)]
struct RootAnswer {
    #[serde(default)]
    cluster_name: String,
    version: Option<VersionInfo>,
    #[serde(default)]
    tagline: Option<String>,
}

#[derive(Debug, Deserialize)]
struct VersionInfo {
    number: Option<String>,
    #[serde(default)]
    distribution: Option<String>,
}

impl Step for EsServer {
    const NAME: &'static str = "es_server";
    const DOC: &'static str = "\
Checks that `url` is an Elasticsearch or OpenSearch server (a pre-flight probe).

One GET / with a 2 s connect timeout and no retry, within the step's timeout
(default 3 s): an address where nothing answers fails at once. The answer must
be the server's root document: `version.number`, and the tagline \"You Know, for
Search\" (Elasticsearch) or `version.distribution` \"opensearch\". Anything else
(another web server, a proxy's page, a wrong port) fails with \"this is not
Elasticsearch/OpenSearch\" and an excerpt of what answered. 401/403 fail naming
the credentials. Runs for real under --dry-run (it only reads).

Options:
  url              string          the server's URL, e.g. \"http://127.0.0.1:9200\"
  user, password   string, secret  basic auth (password from secret())
  api_key          secret          API key, sent as `Authorization: ApiKey <key>`
  ca_cert          string          PEM file of the CA to trust besides the system's
  insecure         bool            accept any certificate; logs a warning (default false)

Result:
  distribution  string  \"elasticsearch\" or \"opensearch\"
  version       string  e.g. \"8.15.3\"
  cluster_name  string

Example:
  let server = es_server(#{ url: \"http://127.0.0.1:9200\" });
  log_info(`${server.distribution} ${server.version}`);
";
    const HANDLES_TIMEOUT: bool = true;

    type Options = EsServerOptions;
    type Output = EsServerOutput;

    fn describe(options: &EsServerOptions) -> String {
        let shown = Url::parse(&options.url)
            .map(|u| display_url(&u))
            .unwrap_or_else(|_| options.url.clone());
        format!(
            "check that {shown}{}{} is Elasticsearch/OpenSearch",
            options.connection().auth_summary(),
            tls_summary(&options.ca_cert, options.insecure)
        )
    }

    fn label(_options: &EsServerOptions) -> Option<String> {
        Some("es_server".to_string())
    }

    fn default_timeout(_options: &EsServerOptions) -> Option<Duration> {
        Some(DEFAULT_TIMEOUT)
    }

    fn dry_run(_options: &EsServerOptions) -> DryRun<EsServerOutput> {
        DryRun::Run
    }

    fn changes(_options: &EsServerOptions) -> bool {
        false
    }

    async fn run(options: EsServerOptions, ctx: StepContext) -> Result<EsServerOutput, StepError> {
        Ok(probe(&options, &ctx).await?)
    }
}

/// The step's body: one `GET /` (no retry: this asks whether the server
/// answers now), then what the answer says the server is.
async fn probe(
    options: &EsServerOptions,
    ctx: &StepContext,
) -> Result<EsServerOutput, EsServerError> {
    let base = parse_url(&options.url)?;
    let mut ctx = ctx.clone();
    if ctx.deadline.is_none() {
        ctx.deadline = Some(tokio::time::Instant::now() + DEFAULT_TIMEOUT);
    }
    let waited = ctx.remaining().unwrap_or(DEFAULT_TIMEOUT);
    let client =
        HttpClient::with_connect_timeout(&options.connection(), &base, &ctx, CONNECT_TIMEOUT)?;
    let url = endpoint(&base, &[]);
    let shown = display_url(&url);
    let answer = match client.send_once(&HttpRequest::new(Method::GET, url)).await {
        Ok(answer) => answer,
        Err(HttpError::Transport { reason, .. }) => {
            return Err(EsServerError::NoAnswer { url: shown, reason });
        }
        Err(HttpError::Deadline { .. }) => {
            return Err(EsServerError::NoAnswer {
                url: shown,
                reason: format!(
                    "no answer within {}",
                    humantime::format_duration(Duration::from_secs(
                        waited.as_secs_f64().round().max(1.0) as u64
                    ))
                ),
            });
        }
        Err(other) => return Err(other.into()),
    };
    identify_answer(&answer, shown)
}

/// What the answer to `GET /` from `shown` says the server is: refused
/// credentials, not Elasticsearch/OpenSearch (with an excerpt of what it
/// said), or its product and version.
fn identify_answer(answer: &HttpResponse, shown: String) -> Result<EsServerOutput, EsServerError> {
    let status = answer.status.as_u16();
    if status == 401 || status == 403 {
        let detail = match answer.to_error() {
            HttpError::Status { detail, .. } => detail,
            _ => String::new(),
        };
        return Err(EsServerError::Refused {
            url: shown,
            status,
            detail,
        });
    }
    if !answer.status.is_success() {
        return Err(EsServerError::NotElasticsearch {
            url: shown,
            why: format!(
                "GET / answered HTTP {status}: {}",
                one_line_excerpt(&answer.body, EXCERPT)
            ),
        });
    }
    let root: RootAnswer = match serde_json::from_slice(&answer.body) {
        Ok(root) => root,
        Err(_) => {
            return Err(EsServerError::NotElasticsearch {
                url: shown,
                why: format!(
                    "GET / answered no JSON: {}",
                    one_line_excerpt(&answer.body, EXCERPT)
                ),
            });
        }
    };
    identify(root).map_err(|why| EsServerError::NotElasticsearch {
        url: shown,
        why: format!("{why}: {}", one_line_excerpt(&answer.body, EXCERPT)),
    })
}

fn parse_url(text: &str) -> Result<Url, EsServerError> {
    let bad = |reason: String| EsServerError::BadUrl {
        url: text.to_string(),
        reason,
    };
    let url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad(
            "it must start with http:// or https:// and name a host".to_string(),
        ));
    }
    Ok(url)
}

/// Elasticsearch or OpenSearch, from the root document; else why not.
fn identify(root: RootAnswer) -> Result<EsServerOutput, String> {
    let Some(version) = root.version else {
        return Err("GET / has no `version`".to_string());
    };
    let Some(number) = version.number else {
        return Err("GET / has no `version.number`".to_string());
    };
    let distribution = if version.distribution.as_deref() == Some("opensearch") {
        "opensearch"
    } else if root
        .tagline
        .as_deref()
        .is_some_and(|t| t.contains("You Know, for Search"))
    {
        "elasticsearch"
    } else {
        return Err(
            "GET / has neither Elasticsearch's tagline nor `version.distribution: opensearch`"
                .to_string(),
        );
    };
    Ok(EsServerOutput {
        distribution: distribution.to_string(),
        version: number,
        cluster_name: root.cluster_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(json: serde_json::Value) -> Result<EsServerOutput, String> {
        identify(serde_json::from_value(json).unwrap())
    }

    #[test]
    fn elasticsearch_and_opensearch_are_told_apart_from_anything_else() {
        let es = root(
            serde_json::json!({"cluster_name": "c", "version": {"number": "8.15.3"},
                                          "tagline": "You Know, for Search"}),
        )
        .unwrap();
        assert_eq!(
            (es.distribution.as_str(), es.version.as_str()),
            ("elasticsearch", "8.15.3")
        );
        let os = root(serde_json::json!({"version": {"number": "2.17.0", "distribution": "opensearch"},
                                          "tagline": "The OpenSearch Project: https://opensearch.org/"}))
        .unwrap();
        assert_eq!(os.distribution, "opensearch");
        assert!(
            root(serde_json::json!({"status": "ok"}))
                .unwrap_err()
                .contains("no `version`")
        );
        assert!(
            root(serde_json::json!({"version": {"number": "1.0"}}))
                .unwrap_err()
                .contains("neither")
        );
    }

    #[test]
    fn a_url_without_a_scheme_says_how_to_write_it() {
        let e = parse_url("127.0.0.1:9200").unwrap_err().to_string();
        assert!(e.contains("write it like http://127.0.0.1:9200"), "{e}");
        let e = parse_url("elastic.example:9200").unwrap_err().to_string();
        assert!(e.contains("http:// or https://"), "{e}");
    }
}
