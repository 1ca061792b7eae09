//! What a failed step reports.
//!
//! Rules every step error follows:
//! - lower case, no trailing period;
//! - it names the thing the user has to look at: the command, the path, the URL, the key;
//! - one cause per error value: the causes are chained with `#[source]`, and the
//!   engine prints one line per cause.

use std::error::Error;

/// A step's own typed error; gives the machine-readable kind that scripts see
/// as `e.kind` when they catch a step failure.
pub trait StepFailure: Error + Send + Sync + 'static {
    /// A short snake_case classification, e.g. `"spawn"`, `"exit_code"`, `"io"`.
    fn kind(&self) -> &'static str;
}

/// Kinds of failure that another attempt cannot fix (bad options or config,
/// rejected credentials, an unusable CA file): the engine never retries them,
/// so a permanent error is reported at once rather than after `retries` more
/// attempts.
const PERMANENT_KINDS: &[&str] = &[
    "options",
    "config",
    "unauthorized",
    "forbidden",
    "ca_cert",
    "client",
    // S3: keys refused, access denied, no such bucket, a symlink in the way.
    "credentials",
    "access_denied",
    "bucket_missing",
    "unsafe_path",
];

/// A step failure as the engine sees it: a kind, a message and its causes.
#[derive(Debug)]
pub struct StepError {
    kind: &'static str,
    message: String,
    causes: Vec<String>,
}

impl StepError {
    /// A failure with a kind and a one-line message.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        StepError {
            kind,
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// The step stopped because the run was interrupted (SIGINT/SIGTERM).
    pub fn cancelled() -> Self {
        StepError::new("cancelled", "interrupted")
    }

    /// The step ran past its timeout.
    pub fn timed_out(after: std::time::Duration) -> Self {
        StepError::new(
            "timeout",
            format!("timed out after {}", humantime::format_duration(after)),
        )
    }

    /// The machine-readable kind (`e.kind` in a script).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// True when retrying cannot help (see `PERMANENT_KINDS`).
    pub fn is_permanent(&self) -> bool {
        PERMANENT_KINDS.contains(&self.kind)
    }

    /// The top-level message (`e.message` in a script).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The underlying causes, outermost first.
    pub fn causes(&self) -> &[String] {
        &self.causes
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for cause in &self.causes {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl<E: StepFailure> From<E> for StepError {
    fn from(error: E) -> Self {
        let mut causes = Vec::new();
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Avoid repeating a cause that the message already embeds.
            if !causes.contains(&text) {
                causes.push(text);
            }
            source = cause.source();
        }
        let message = error.to_string();
        causes.retain(|c| !message.ends_with(c.as_str()));
        StepError {
            kind: error.kind(),
            message,
            causes,
        }
    }
}
