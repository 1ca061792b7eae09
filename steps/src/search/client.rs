//! The HTTP plumbing shared by the service steps (`http`, `es_health`,
//! `es_snapshot`): authentication, TLS trust, retries with capped exponential
//! backoff inside the step's deadline, cancellation, and errors that show what
//! the server said (Elasticsearch's `error.type` / `error.reason`) and the URL,
//! never a credential.
//!
//! # The common options
//! serde's `#[serde(flatten)]` does not work together with
//! `#[serde(deny_unknown_fields)]`, so each step's options struct repeats the
//! five connection fields (`user`, `password`, `api_key`, `ca_cert`,
//! `insecure`) as plain, documented fields; `with_http_connection!` declares
//! such a struct with the five written once, and gives it one `connection()`
//! method that gathers them into an [`HttpConnection`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::runtime::error::{ErrorKind, StepFailure};
use crate::runtime::step::StepContext;

/// How long one request is retried on transient failures when the step's
/// deadline does not end it sooner: a service that stays down longer than this
/// is down, and the run should say so rather than wait hours.
pub const RETRY_WINDOW: Duration = Duration::from_secs(120);
/// The first pause between two attempts; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest pause between two attempts (also caps `Retry-After`).
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long connecting (TCP + TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take when the step's deadline is further away.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Characters of a non-JSON error body quoted in an error.
const BODY_EXCERPT: usize = 200;

use crate::runtime::secret::Secret;

/// The connection options every HTTP step takes besides its URL.
#[derive(Clone, Debug, Default)]
pub struct HttpConnection {
    /// Basic-auth user.
    pub user: Option<String>,
    /// Basic-auth password (needs `user`).
    pub password: Option<Secret>,
    /// Elasticsearch API key, sent as `Authorization: ApiKey <key>`.
    pub api_key: Option<Secret>,
    /// PEM file with the CA certificate(s) to trust besides the system's.
    pub ca_cert: Option<PathBuf>,
    /// Accept any server certificate.
    pub insecure: bool,
}

/// Declares a step's options struct with the five connection fields (`user`,
/// `password`, `api_key`, `ca_cert`, `insecure`) after its own, and gives it a
/// `connection()` method that gathers them into an [`HttpConnection`]. The
/// fields are written into each struct rather than `#[serde(flatten)]`ed
/// because serde's flatten disables `deny_unknown_fields`: a typo must stay an
/// error. Written once here, for `http`, `es_server`, `es_health`,
/// `es_snapshot`, `es_restore` and `prune`'s `elasticsearch`.
macro_rules! with_http_connection {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $type:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $type, )*
            /// Basic-auth user.
            #[serde(default)]
            pub user: Option<String>,
            /// Basic-auth password (needs `user`).
            #[serde(default)]
            pub password: Option<crate::runtime::secret::Secret>,
            /// API key, sent as `Authorization: ApiKey <key>`.
            #[serde(default)]
            pub api_key: Option<crate::runtime::secret::Secret>,
            /// PEM file of the CA to trust besides the system's.
            #[serde(default)]
            pub ca_cert: Option<std::path::PathBuf>,
            /// Accept any server certificate.
            #[serde(default)]
            pub insecure: bool,
        }

        impl $name {
            /// The connection options, gathered for [`crate::search::client::HttpClient`].
            pub(crate) fn connection(&self) -> crate::search::client::HttpConnection {
                crate::search::client::HttpConnection {
                    user: self.user.clone(),
                    password: self.password.clone(),
                    api_key: self.api_key.clone(),
                    ca_cert: self.ca_cert.clone(),
                    insecure: self.insecure,
                }
            }
        }
    };
}
pub(crate) use with_http_connection;

impl HttpConnection {
    /// A few words on the authentication used, for `describe` (never the secret).
    pub fn auth_summary(&self) -> String {
        match (&self.user, &self.api_key) {
            (Some(user), _) => format!(" as user {user}"),
            (None, Some(_)) => " with an API key".to_string(),
            (None, None) => String::new(),
        }
    }
}

/// Why an HTTP request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The connection options do not make sense together.
    #[error("{0}")]
    Options(String),
    /// The URL is not one we can send a request to.
    #[error("invalid url `{url}`: {reason}")]
    Url {
        /// The URL as given (credentials removed).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `ca_cert` file could not be read.
    #[error("could not read the CA certificate file {path}")]
    CaCertRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `ca_cert` file holds no usable PEM certificate.
    #[error("the CA certificate file {path} holds no PEM certificate: {reason}")]
    CaCertParse {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
    /// The HTTP client could not be set up.
    #[error("could not set up the HTTP client: {reason}")]
    Client {
        /// Why.
        reason: String,
    },
    /// The request never got an HTTP answer (refused, reset, TLS failure...).
    #[error("{method} {url}: {reason}{attempts}{hint}")]
    Transport {
        /// The method.
        method: Method,
        /// The URL.
        url: String,
        /// The innermost cause, e.g. "Connection refused (os error 111)".
        reason: String,
        /// " (gave up after N attempts)" or empty.
        attempts: String,
        /// A suggestion, or empty.
        hint: &'static str,
    },
    /// The server answered with a status the caller does not accept.
    #[error("{method} {url}: HTTP {status}{detail}{attempts}")]
    Status {
        /// The method.
        method: Method,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// ": type: reason" from an Elasticsearch error, or an excerpt of the body.
        detail: String,
        /// " (gave up after N attempts)" or empty.
        attempts: String,
    },
    /// The answer was not the JSON the caller needs.
    #[error("{method} {url}: the answer is not the expected JSON: {reason}")]
    Json {
        /// The method.
        method: Method,
        /// The URL.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The step's deadline passed before the request got an answer.
    #[error("{method} {url}: no answer before the step's timeout{last}")]
    Deadline {
        /// The method.
        method: Method,
        /// The URL.
        url: String,
        /// " (last attempt: ...)" or empty.
        last: String,
    },
    /// The run was interrupted.
    #[error("interrupted")]
    Cancelled,
}

impl StepFailure for HttpError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            HttpError::Options(_) | HttpError::Url { .. } => ErrorKind::Options,
            HttpError::CaCertRead { .. } | HttpError::CaCertParse { .. } => ErrorKind::CaCert,
            HttpError::Client { .. } => ErrorKind::Client,
            HttpError::Transport { .. } => ErrorKind::Connect,
            HttpError::Status { status: 401, .. } => ErrorKind::Unauthorized,
            HttpError::Status { status: 403, .. } => ErrorKind::Forbidden,
            HttpError::Status { status: 404, .. } => ErrorKind::NotFound,
            HttpError::Status { .. } => ErrorKind::HttpStatus,
            HttpError::Json { .. } => ErrorKind::InvalidResponse,
            HttpError::Deadline { .. } => ErrorKind::Timeout,
            // The same kind as StepError::cancelled(), so the engine treats both alike.
            HttpError::Cancelled => ErrorKind::Cancelled,
        }
    }
}

/// Where the Elasticsearch steps look when the script gives no `url`.
pub const DEFAULT_ELASTICSEARCH_URL: &str = "http://127.0.0.1:9200";

/// [`DEFAULT_ELASTICSEARCH_URL`] parsed, for `#[serde(default = ...)]`.
pub fn default_elasticsearch_url() -> Url {
    Url::parse(DEFAULT_ELASTICSEARCH_URL).expect("the default url parses")
}

/// The URL as shown in messages: without user or password.
pub fn display_url(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// `base` with `segments` appended as path segments (each percent-encoded), so
/// a base URL with a path prefix (a reverse proxy) keeps it.
pub fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_query(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// One request to send.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// The method.
    pub method: Method,
    /// The full URL.
    pub url: Url,
    /// Extra headers.
    pub headers: HeaderMap,
    /// The body, if any, with its content type (empty: set by `headers`).
    pub body: Option<(Bytes, &'static str)>,
}

impl HttpRequest {
    /// A request without a body.
    pub fn new(method: Method, url: Url) -> Self {
        HttpRequest {
            method,
            url,
            headers: HeaderMap::new(),
            body: None,
        }
    }

    /// A request with a JSON body.
    pub fn json(method: Method, url: Url, body: &serde_json::Value) -> Self {
        let mut request = HttpRequest::new(method, url);
        request.body = Some((Bytes::from(body.to_string()), "application/json"));
        request
    }
}

/// A complete answer (body read).
#[derive(Debug)]
pub struct HttpResponse {
    /// The method of the request.
    pub method: Method,
    /// The URL shown in messages.
    pub url: String,
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// How many attempts it took (1 = no retry).
    pub attempts: u32,
}

impl HttpResponse {
    /// The body parsed as JSON into `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| HttpError::Json {
            method: self.method.clone(),
            url: self.url.clone(),
            reason: e.to_string(),
        })
    }

    /// Elasticsearch's `error.type`, if the body is an Elasticsearch error.
    pub fn es_error_type(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value
            .pointer("/error/type")
            .and_then(|t| t.as_str())
            .map(str::to_string)
    }

    /// The error for this answer: status, what the server said, the URL.
    pub fn to_error(&self) -> HttpError {
        HttpError::Status {
            method: self.method.clone(),
            url: self.url.clone(),
            status: self.status.as_u16(),
            detail: error_detail(&self.body),
            attempts: attempts_note(self.attempts),
        }
    }

    /// `Ok(self)` for a 2xx answer, else [`HttpResponse::to_error`].
    pub fn require_success(self) -> Result<Self, HttpError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(self.to_error())
        }
    }
}

/// What an error body says, as ": type: reason" (Elasticsearch) or ": excerpt".
/// `: type: reason` from an Elasticsearch error body, else `: ` and the
/// first [`BODY_EXCERPT`] characters of the body on one line; empty for an
/// empty body.
pub(crate) fn error_detail(body: &[u8]) -> String {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        match value.get("error") {
            Some(serde_json::Value::Object(error)) => {
                let mut detail = String::new();
                let text = |key: &str, from: &serde_json::Map<String, serde_json::Value>| {
                    from.get(key).and_then(|v| v.as_str()).map(str::to_string)
                };
                if let Some(kind) = text("type", error) {
                    detail.push_str(": ");
                    detail.push_str(&kind);
                }
                if let Some(reason) = text("reason", error) {
                    detail.push_str(": ");
                    detail.push_str(&reason);
                }
                if let Some(serde_json::Value::Object(cause)) = error.get("caused_by") {
                    let kind = text("type", cause).unwrap_or_default();
                    let reason = text("reason", cause).unwrap_or_default();
                    detail.push_str(&format!(" (caused by {kind}: {reason})"));
                }
                if !detail.is_empty() {
                    return detail;
                }
            }
            Some(serde_json::Value::String(message)) => return format!(": {message}"),
            _ => {}
        }
    }
    let excerpt = one_line_excerpt(body, BODY_EXCERPT);
    if excerpt.is_empty() {
        return String::new();
    }
    format!(": {excerpt}")
}

/// The start of `body` as text on one line (each run of whitespace made one
/// space), at most `limit` characters, `...` when cut; empty for an empty
/// body.
pub(crate) fn one_line_excerpt(body: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut excerpt: String = one_line.chars().take(limit).collect();
    if excerpt.len() < one_line.len() {
        excerpt.push_str("...");
    }
    excerpt
}

pub(crate) fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (gave up after {attempts} attempts)")
    } else {
        String::new()
    }
}

/// A configured client bound to one step run: its deadline and cancellation.
pub struct HttpClient {
    client: reqwest::Client,
    connection: HttpConnection,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    label: String,
    /// Replaces the client's per-request limit ([`REQUEST_TIMEOUT`]) for a
    /// request that only answers when long work is done.
    request_timeout: Option<Duration>,
}

impl HttpClient {
    /// Checks the connection options and builds the client. `url` is the
    /// server's URL (for the `insecure` warning and for rejecting embedded
    /// credentials).
    pub fn new(
        connection: &HttpConnection,
        url: &Url,
        ctx: &StepContext,
    ) -> Result<Self, HttpError> {
        Self::with_connect_timeout(connection, url, ctx, CONNECT_TIMEOUT)
    }

    /// [`HttpClient::new`] with another connect timeout (a pre-flight probe
    /// wants a short one: an address that does not answer must fail fast).
    pub fn with_connect_timeout(
        connection: &HttpConnection,
        url: &Url,
        ctx: &StepContext,
        connect_timeout: Duration,
    ) -> Result<Self, HttpError> {
        check_url(url)?;
        match (&connection.user, &connection.password, &connection.api_key) {
            (Some(_), None, _) => {
                return Err(HttpError::Options("`user` needs `password`".to_string()));
            }
            (None, Some(_), _) => {
                return Err(HttpError::Options("`password` needs `user`".to_string()));
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(HttpError::Options(
                    "give either `user` + `password` or `api_key`, not both".to_string(),
                ));
            }
            _ => {}
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &connection.ca_cert {
            let pem = std::fs::read(path).map_err(|source| HttpError::CaCertRead {
                path: path.clone(),
                source,
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                HttpError::CaCertParse {
                    path: path.clone(),
                    reason: innermost(&e),
                }
            })?;
            if certificates.is_empty() {
                return Err(HttpError::CaCertParse {
                    path: path.clone(),
                    reason: "no `BEGIN CERTIFICATE` block found".to_string(),
                });
            }
            builder = builder.tls_certs_merge(certificates);
        }
        if connection.insecure {
            tracing::warn!(
                target: "runbook::http",
                "{}: TLS CERTIFICATE CHECKS ARE OFF for {} (`insecure: true`): anyone on the \
                 network path can read and change this traffic, credentials included; \
                 use `ca_cert` instead",
                ctx.label,
                url.host_str().unwrap_or_default()
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder.build().map_err(|e| HttpError::Client {
            reason: innermost(&e),
        })?;
        Ok(HttpClient {
            client,
            connection: connection.clone(),
            deadline: ctx.deadline,
            cancel: ctx.cancel.clone(),
            label: ctx.label.clone(),
            request_timeout: None,
        })
    }

    /// The same client with another deadline (e.g. a short grace period for
    /// cleanup after the step's own deadline passed).
    pub fn with_deadline(&self, deadline: Option<Instant>) -> HttpClient {
        HttpClient {
            client: self.client.clone(),
            connection: self.connection.clone(),
            deadline,
            cancel: self.cancel.clone(),
            label: self.label.clone(),
            request_timeout: self.request_timeout,
        }
    }

    /// The same client with another limit for each request than
    /// [`REQUEST_TIMEOUT`] (e.g. a restore with `wait_for_completion`, which
    /// answers when the work is done); the deadline still applies.
    pub fn with_request_timeout(&self, timeout: Duration) -> HttpClient {
        HttpClient {
            request_timeout: Some(timeout),
            ..self.with_deadline(self.deadline)
        }
    }

    /// The same client, deaf to cancellation (for cleanup after an interruption).
    pub fn uncancellable(&self) -> HttpClient {
        HttpClient {
            cancel: CancellationToken::new(),
            ..self.with_deadline(self.deadline)
        }
    }

    /// Sends `request`, retrying transient failures (connection refused, 429,
    /// 502, 503, 504; for idempotent methods also connection reset and
    /// timeouts) with capped exponential backoff, for at most [`RETRY_WINDOW`]
    /// and never past the deadline. Returns the final answer whatever its
    /// status; the caller decides which statuses are errors.
    pub async fn send(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        check_url(&request.url)?;
        let shown_url = display_url(&request.url);
        let started = Instant::now();
        let retry_end = match self.deadline {
            Some(deadline) => deadline.min(started + RETRY_WINDOW),
            None => started + RETRY_WINDOW,
        };
        let mut attempt: u32 = 0;
        // What the previous attempt got, for a deadline error.
        let mut previous = String::new();
        loop {
            attempt += 1;
            let outcome = self.attempt(request).await;
            let (last, retry_after) = match judge(outcome, request, &shown_url, attempt, &previous)
            {
                Verdict::Done(result) => return result,
                Verdict::Retry { last, retry_after } => (last, retry_after),
            };
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << (attempt - 1).min(16))
                .max(retry_after.unwrap_or_default())
                .min(MAX_BACKOFF);
            let last_words = match &last {
                Last::Answer(response) => format!(
                    "HTTP {}{}",
                    response.status.as_u16(),
                    error_detail(&response.body)
                ),
                Last::Failed(error) => innermost(error),
            };
            if Instant::now() + backoff > retry_end {
                // Out of time: report the last failure as it was.
                return match last {
                    Last::Answer(response) => {
                        Ok(response.into_response(request, &shown_url, attempt))
                    }
                    Last::Failed(error) => {
                        Err(transport_error(request, &shown_url, &error, attempt))
                    }
                };
            }
            tracing::warn!(
                target: "runbook::http",
                "{}: {} {}: {last_words}; retrying in {}",
                self.label,
                request.method,
                shown_url,
                humantime::format_duration(backoff)
            );
            previous = format!(" (last attempt: {last_words})");
            tokio::select! {
                _ = self.cancel.cancelled() => return Err(HttpError::Cancelled),
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// Sends `request` once, without any retry: for a probe, where "nothing
    /// answers" is the finding and must come at once. Returns the answer
    /// whatever its status.
    pub async fn send_once(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        check_url(&request.url)?;
        let shown_url = display_url(&request.url);
        match self.attempt(request).await {
            Attempt::Answer(answer) => Ok(answer.into_response(request, &shown_url, 1)),
            Attempt::Failed(error) => Err(transport_error(request, &shown_url, &error, 1)),
            Attempt::Deadline => Err(HttpError::Deadline {
                method: request.method.clone(),
                url: shown_url,
                last: String::new(),
            }),
            Attempt::Cancelled => Err(HttpError::Cancelled),
        }
    }

    /// Resolves when the run is interrupted.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Resolves at the deadline (never, without one).
    pub async fn deadline_reached(&self) {
        sleep_until(self.deadline).await;
    }

    /// Sends `request` and requires a 2xx answer.
    pub async fn send_ok(&self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        self.send(request).await?.require_success()
    }

    async fn attempt(&self, request: &HttpRequest) -> Attempt {
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .headers(request.headers.clone());
        if let Some(timeout) = self.request_timeout {
            builder = builder.timeout(timeout);
        }
        if let (Some(user), Some(password)) = (&self.connection.user, &self.connection.password) {
            builder = builder.basic_auth(user, Some(password.expose()));
        } else if let Some(key) = &self.connection.api_key {
            let mut value = match HeaderValue::from_str(&format!("ApiKey {}", key.expose())) {
                Ok(value) => value,
                Err(_) => HeaderValue::from_static("ApiKey invalid"),
            };
            value.set_sensitive(true);
            builder = builder.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some((body, content_type)) = &request.body {
            // An empty content type: the caller's headers carry their own.
            if !content_type.is_empty() {
                builder = builder.header(reqwest::header::CONTENT_TYPE, *content_type);
            }
            builder = builder.body(body.clone());
        }
        let exchange = async {
            let response = builder.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(Answer {
                status,
                headers,
                body,
            })
        };
        tokio::select! {
            _ = self.cancel.cancelled() => Attempt::Cancelled,
            _ = sleep_until(self.deadline) => Attempt::Deadline,
            result = exchange => match result {
                Ok(answer) => Attempt::Answer(answer),
                Err(error) => Attempt::Failed(error),
            },
        }
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    /// The answer to `request` (shown as `shown_url`), after `attempts` attempts.
    fn into_response(self, request: &HttpRequest, shown_url: &str, attempts: u32) -> HttpResponse {
        HttpResponse {
            method: request.method.clone(),
            url: shown_url.to_string(),
            status: self.status,
            headers: self.headers,
            body: self.body,
            attempts,
        }
    }
}

enum Attempt {
    Answer(Answer),
    Failed(reqwest::Error),
    Deadline,
    Cancelled,
}

enum Last {
    Answer(Answer),
    Failed(reqwest::Error),
}

/// What one attempt of [`HttpClient::send`] comes to.
enum Verdict {
    /// The final answer or error.
    Done(Result<HttpResponse, HttpError>),
    /// A transient failure: try again (after `Retry-After`, if the server said).
    Retry {
        last: Last,
        retry_after: Option<Duration>,
    },
}

/// Whether attempt number `attempt` of `request` is final: an answer with a
/// status that is not transient, a failure that is permanent (or, for a
/// method that is not idempotent, one after the request may have been
/// sent), the deadline (`previous` says what the attempt before got), or
/// cancellation.
fn judge(
    outcome: Attempt,
    request: &HttpRequest,
    shown_url: &str,
    attempt: u32,
    previous: &str,
) -> Verdict {
    let idempotent = matches!(
        request.method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    );
    match outcome {
        Attempt::Answer(response) => {
            if !is_transient_status(response.status) {
                return Verdict::Done(Ok(response.into_response(request, shown_url, attempt)));
            }
            let retry_after = response
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            Verdict::Retry {
                last: Last::Answer(response),
                retry_after,
            }
        }
        Attempt::Failed(error) => {
            let retry = match classify(&error) {
                Failure::NotSent => true,
                Failure::Interrupted => idempotent,
                Failure::Permanent => false,
            };
            if !retry {
                return Verdict::Done(Err(transport_error(request, shown_url, &error, attempt)));
            }
            Verdict::Retry {
                last: Last::Failed(error),
                retry_after: None,
            }
        }
        Attempt::Deadline => Verdict::Done(Err(HttpError::Deadline {
            method: request.method.clone(),
            url: shown_url.to_string(),
            last: previous.to_string(),
        })),
        Attempt::Cancelled => Verdict::Done(Err(HttpError::Cancelled)),
    }
}

/// How far a failed request got.
enum Failure {
    /// Never reached the server (refused): always safe to retry.
    NotSent,
    /// Cut off midway (reset, timeout): safe to retry when idempotent.
    Interrupted,
    /// Will not get better by retrying (TLS, DNS, bad request).
    Permanent,
}

fn classify(error: &reqwest::Error) -> Failure {
    use std::io::ErrorKind;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(hyper) = cause.downcast_ref::<hyper::Error>()
            && hyper.is_incomplete_message()
        {
            // The server closed the connection before answering.
            return Failure::Interrupted;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::ConnectionRefused => return Failure::NotSent,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof
                | ErrorKind::TimedOut => return Failure::Interrupted,
                // TLS failures come wrapped as InvalidData: not transient.
                _ => {}
            }
        }
        source = cause.source();
    }
    if error.is_timeout() {
        Failure::Interrupted
    } else {
        Failure::Permanent
    }
}

fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// The innermost cause of an error: the one that says what happened.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

fn transport_error(
    request: &HttpRequest,
    url: &str,
    error: &reqwest::Error,
    attempts: u32,
) -> HttpError {
    let reason = innermost(error);
    let lower = reason.to_lowercase();
    let hint = if lower.contains("certificate") || lower.contains("unknownissuer") {
        " (give the CA that signed the server's certificate as `ca_cert`)"
    } else if lower.contains("corrupt message") || lower.contains("invalidcontenttype") {
        " (is the server speaking plain http rather than https?)"
    } else {
        ""
    };
    HttpError::Transport {
        method: request.method.clone(),
        url: url.to_string(),
        reason,
        attempts: attempts_note(attempts),
        hint,
    }
}

fn check_url(url: &Url) -> Result<(), HttpError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HttpError::Url {
            url: display_url(url),
            reason: "only http and https are supported".to_string(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(HttpError::Url {
            url: display_url(url),
            reason: "credentials go in `user` and `password` (from secret()), not in the url"
                .to_string(),
        });
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The TLS settings in a few words for `describe`, e.g. " (trusting CA /etc/ca.pem)".
pub fn tls_summary(ca_cert: &Option<PathBuf>, insecure: bool) -> String {
    match (ca_cert.as_deref().map(Path::display), insecure) {
        (_, true) => " (TLS certificate checks off)".to_string(),
        (Some(path), false) => format!(" (trusting CA {path})"),
        (None, false) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elasticsearch_error_detail_shows_type_and_reason() {
        let body = br#"{"error":{"root_cause":[],"type":"repository_missing_exception","reason":"[r] missing"},"status":404}"#;
        assert_eq!(
            error_detail(body),
            ": repository_missing_exception: [r] missing"
        );
        assert_eq!(
            error_detail(b"<html>\n  Bad   gateway</html>"),
            ": <html> Bad gateway</html>"
        );
        assert_eq!(
            error_detail(br#"{"error":"no handler found"}"#),
            ": no handler found"
        );
        assert_eq!(error_detail(b""), "");
    }

    #[test]
    fn endpoint_keeps_a_path_prefix_and_encodes_segments() {
        let base = Url::parse("https://proxy.example/es/?x=1").unwrap();
        assert_eq!(
            endpoint(&base, &["_snapshot", "my repo"]).as_str(),
            "https://proxy.example/es/_snapshot/my%20repo"
        );
        let bare = Url::parse("http://127.0.0.1:9200").unwrap();
        assert_eq!(
            endpoint(&bare, &["_cluster", "health"]).as_str(),
            "http://127.0.0.1:9200/_cluster/health"
        );
    }

    #[test]
    fn credentials_in_the_url_are_refused_without_being_shown() {
        let url = Url::parse("http://elastic:hunter2@127.0.0.1:9200/").unwrap();
        let error = check_url(&url).unwrap_err().to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("`user` and `password`"), "{error}");
    }

    #[test]
    fn auth_options_must_fit_together() {
        let url = Url::parse("http://127.0.0.1:9200").unwrap();
        let ctx = StepContext::detached("t");
        let secret = || Some(Secret::new("s"));
        let only_password = HttpConnection {
            password: secret(),
            ..Default::default()
        };
        assert!(HttpClient::new(&only_password, &url, &ctx).is_err());
        let both = HttpConnection {
            user: Some("u".to_string()),
            password: secret(),
            api_key: secret(),
            ..Default::default()
        };
        assert!(HttpClient::new(&both, &url, &ctx).is_err());
        let basic = HttpConnection {
            user: Some("u".to_string()),
            password: secret(),
            ..Default::default()
        };
        assert!(HttpClient::new(&basic, &url, &ctx).is_ok());
    }
}
