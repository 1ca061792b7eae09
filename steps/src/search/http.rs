//! `http`: one HTTP request for site-specific needs (notifications, other
//! services), with the same auth, TLS and retry handling as the Elasticsearch steps.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::secret::Secret;
use crate::runtime::step::{DryRun, Step, StepContext};
use crate::search::client::{HttpClient, HttpRequest, HttpResponse, display_url, tls_summary};

/// The `http` step.
pub struct Http;

/// Options of `http`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpOptions {
    /// The method, e.g. "GET", "POST".
    #[serde(default = "default_method")]
    pub method: String,
    /// The full URL.
    pub url: Url,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body (sent with `Content-Type: application/json`).
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// A text body (sent with `Content-Type: text/plain` unless `headers` says otherwise).
    #[serde(default)]
    pub body: Option<String>,
    /// Status codes that count as success (default: any 2xx).
    #[serde(default)]
    pub expect: Option<Vec<u16>>,
    /// Basic-auth user.
    #[serde(default)]
    pub user: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// API key (Elasticsearch style: `Authorization: ApiKey <key>`).
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// PEM file of the CA to trust.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure: bool,
}

crate::search::client::impl_http_connection!(HttpOptions);

fn default_method() -> String {
    "GET".to_string()
}

impl HttpOptions {
    fn method_name(&self) -> String {
        self.method.to_ascii_uppercase()
    }

    fn only_reads(&self) -> bool {
        matches!(self.method_name().as_str(), "GET" | "HEAD")
    }
}

/// Result of `http`.
#[derive(Debug, Default, Serialize)]
pub struct HttpOutput {
    /// The status code.
    pub status: u16,
    /// Response headers, names in lower case (repeated headers joined by ", ").
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON when it is JSON, else `()`.
    pub json: serde_json::Value,
    /// The body as text.
    pub text: String,
}

/// Why `http` failed before or after talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpStepError {
    /// The options contradict each other or hold an invalid value.
    #[error("{0}")]
    Options(String),
    /// The server answered with a status outside `expect`.
    #[error("{0}")]
    UnexpectedStatus(Box<UnexpectedStatus>),
}

/// An answer whose status `expect` does not allow.
#[derive(Debug, thiserror::Error)]
#[error("{method} {url}: HTTP {status}, expected {expected}; answer{detail}{attempts}")]
pub struct UnexpectedStatus {
    /// The method.
    pub method: String,
    /// The URL (credentials never shown).
    pub url: String,
    /// The status that came back.
    pub status: u16,
    /// What `expect` allows, e.g. `200 or 204`, or `a 2xx status`.
    pub expected: String,
    /// `: ` and what the server said (Elasticsearch's error type and
    /// reason, else the start of the body), or ` (empty body)`.
    pub detail: String,
    /// " (gave up after N attempts)" or empty.
    pub attempts: String,
    /// The kind the same status has elsewhere (`unauthorized`, `http_status`...).
    pub kind: ErrorKind,
}

impl StepFailure for HttpStepError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            HttpStepError::Options(_) => ErrorKind::Options,
            HttpStepError::UnexpectedStatus(status) => status.kind,
        }
    }
}

/// The error for an answer whose status `expect` does not allow.
fn unexpected_status(answer: &HttpResponse, expect: Option<&[u16]>) -> HttpStepError {
    let expected = match expect {
        Some([]) | None => "a 2xx status".to_string(),
        Some(codes) => codes
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" or "),
    };
    let detail = match crate::search::client::error_detail(&answer.body) {
        detail if detail.is_empty() => " (empty body)".to_string(),
        detail => detail,
    };
    HttpStepError::UnexpectedStatus(Box::new(UnexpectedStatus {
        method: answer.method.to_string(),
        url: answer.url.clone(),
        status: answer.status.as_u16(),
        expected,
        detail,
        attempts: crate::search::client::attempts_note(answer.attempts),
        kind: answer.to_error().error_kind(),
    }))
}

impl Step for Http {
    const NAME: &'static str = "http";
    const DOC: &'static str = "\
Sends one HTTP request and returns the answer; a status outside `expect` is an error.

Transient failures are retried with exponential backoff (0.25 s doubling up to 10 s,
honouring Retry-After) for up to 2 minutes and never past the timeout: connection
refused and HTTP 429, 502, 503, 504 always; connection reset and timeouts only for
GET, HEAD, PUT, DELETE and OPTIONS (a POST may have been processed). Other errors are
not retried. Errors name the method and URL and quote what the server said
(Elasticsearch's `error.type` and `error.reason`, else the start of the body);
a status outside `expect` also says what was expected (`HTTP 503, expected 200
or 204; answer: ...`); credentials and secrets never appear. Credentials inside the URL are refused: use `user` and
`password`. Under --dry-run only GET and HEAD are sent; other methods return a
placeholder (status: the first `expect` code or 200, empty body).

Options:
  method          string          HTTP method (default \"GET\")
  url             string          full URL (required)
  headers         map             extra request headers (default #{})
  json            any             JSON body, sent as application/json
  body            string          text body (not with `json`)
  expect          array of ints   status codes that count as success (default: any 2xx)
  user, password  string, secret  basic auth (password from secret())
  api_key         secret          sent as `Authorization: ApiKey <key>`
  ca_cert         string          PEM file of the CA to trust besides the system's
  insecure        bool            accept any certificate; logs a warning (default false)

Result:
  status   int     status code
  headers  map     response headers, lower-case names
  json     any     the body parsed as JSON, () when it is not JSON
  text     string  the body as text

Example:
  http(#{ method: \"POST\", url: \"https://chat.example.org/hooks/backup\",
          json: #{ text: `backup ${stamp} done` }, expect: [200, 204], timeout: \"30s\" });
";

    type Options = HttpOptions;
    type Output = HttpOutput;

    fn describe(options: &HttpOptions) -> String {
        let connection = options.connection();
        let body = match (&options.json, &options.body) {
            (Some(_), _) => " with a JSON body",
            (None, Some(_)) => " with a text body",
            (None, None) => "",
        };
        format!(
            "{} {}{body}{}{}",
            options.method_name(),
            display_url(&options.url),
            connection.auth_summary(),
            tls_summary(&options.ca_cert, options.insecure),
        )
    }

    fn label(options: &HttpOptions) -> Option<String> {
        Some(format!(
            "http {} {}",
            options.method_name(),
            options.url.host_str().unwrap_or_default()
        ))
    }

    fn dry_run(options: &HttpOptions) -> DryRun<HttpOutput> {
        if options.only_reads() {
            DryRun::Run
        } else {
            DryRun::Skip(HttpOutput {
                status: options
                    .expect
                    .as_ref()
                    .and_then(|codes| codes.first().copied())
                    .unwrap_or(200),
                json: serde_json::Value::Null,
                ..HttpOutput::default()
            })
        }
    }

    fn changes(options: &HttpOptions) -> bool {
        !options.only_reads()
    }

    async fn run(options: HttpOptions, ctx: StepContext) -> Result<HttpOutput, StepError> {
        let request = build_request(&options)?;
        let connection = options.connection();
        let client = HttpClient::new(&connection, &options.url, &ctx)?;
        let answer = client.send(&request).await?;
        let expected = match &options.expect {
            Some(codes) => codes.contains(&answer.status.as_u16()),
            None => answer.status.is_success(),
        };
        if !expected {
            return Err(unexpected_status(&answer, options.expect.as_deref()).into());
        }
        let mut headers = BTreeMap::new();
        for (name, value) in &answer.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers
                .entry(name.as_str().to_string())
                .and_modify(|joined: &mut String| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert(value);
        }
        let is_json = answer
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let json = if is_json {
            serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Null
        };
        Ok(HttpOutput {
            status: answer.status.as_u16(),
            headers,
            json,
            text: String::from_utf8_lossy(&answer.body).into_owned(),
        })
    }
}

fn build_request(options: &HttpOptions) -> Result<HttpRequest, HttpStepError> {
    let method = Method::from_bytes(options.method_name().as_bytes())
        .map_err(|_| HttpStepError::Options(format!("invalid HTTP method `{}`", options.method)))?;
    let mut request = match (&options.json, &options.body) {
        (Some(_), Some(_)) => {
            return Err(HttpStepError::Options(
                "give either `json` or `body`, not both".to_string(),
            ));
        }
        (Some(json), None) => HttpRequest::json(method, options.url.clone(), json),
        (None, Some(text)) => {
            let mut request = HttpRequest::new(method, options.url.clone());
            request.body = Some((Bytes::from(text.clone()), "text/plain; charset=utf-8"));
            request
        }
        (None, None) => HttpRequest::new(method, options.url.clone()),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &options.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HttpStepError::Options(format!("invalid header name `{name}`")))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            // Never quote the value: it may be a token.
            HttpStepError::Options(format!("invalid value for header `{name}`"))
        })?;
        value.set_sensitive(true);
        if header == CONTENT_TYPE
            && let Some((bytes, _)) = request.body.take()
        {
            // The script's content type wins over the default one.
            request.body = Some((bytes, ""));
        }
        headers.insert(header, value);
    }
    request.headers = headers;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(json: serde_json::Value) -> HttpOptions {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn only_get_and_head_run_under_dry_run() {
        let get = options(serde_json::json!({"url": "http://127.0.0.1:1/x"}));
        assert!(matches!(Http::dry_run(&get), DryRun::Run));
        let head = options(serde_json::json!({"url": "http://127.0.0.1:1/x", "method": "head"}));
        assert!(matches!(Http::dry_run(&head), DryRun::Run));
        let post = options(
            serde_json::json!({"url": "http://127.0.0.1:1/x", "method": "POST", "expect": [204]}),
        );
        match Http::dry_run(&post) {
            DryRun::Skip(placeholder) => assert_eq!(placeholder.status, 204),
            DryRun::Run => panic!("POST must not run under dry-run"),
        }
    }

    #[test]
    fn describe_shows_method_url_and_no_secret() {
        let o = options(serde_json::json!({
            "method": "post", "url": "https://hooks.example/x", "json": {"a": 1},
            "user": "bot", "password": "hunter2", "headers": {"X-Token": "t0ken"},
        }));
        let text = Http::describe(&o);
        assert_eq!(
            text,
            "POST https://hooks.example/x with a JSON body as user bot"
        );
        assert!(!format!("{o:?}").contains("hunter2"));
    }

    #[test]
    fn json_and_body_together_are_refused() {
        let o = options(serde_json::json!({"url": "http://127.0.0.1:1/", "json": 1, "body": "x"}));
        assert_eq!(
            build_request(&o).unwrap_err().to_string(),
            "give either `json` or `body`, not both"
        );
    }
}
