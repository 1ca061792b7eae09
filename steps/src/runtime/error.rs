//! What a failed step reports.
//!
//! Rules every step error follows:
//! - lower case, no trailing period;
//! - it names the thing the user has to look at: the command, the path, the URL, the key;
//! - one cause per error value: the causes are chained with `#[source]`, and the
//!   engine prints one line per cause.

use std::error::Error;

/// Declares [`ErrorKind`] from one list: each variant, the string scripts see
/// as `e.kind`, and its doc (the cause the user must act on).
macro_rules! error_kinds {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, )*) => {
        /// Why a step or an engine function failed: the cause the user must act
        /// on. Scripts see it as the string `e.kind` ([`ErrorKind::as_str`]);
        /// the stock workflows and docs/writing-workflows.md rely on those
        /// strings, so a variant's string never changes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorKind {
            /// Every kind, in the order of the list.
            pub const ALL: &'static [ErrorKind] = &[$(ErrorKind::$variant),*];

            /// The string scripts see as `e.kind`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorKind::$variant => $name,)*
                }
            }

            /// The cause in words (the variant's doc), for the docs' table of kinds.
            pub fn cause(self) -> String {
                let lines: &[&str] = match self {
                    $(ErrorKind::$variant => &[$($doc),*],)*
                };
                lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
            }
        }
    };
}

error_kinds! {
    // Bad input: the workflow, its options or the configuration must change.
    /// A step's options or an engine function's arguments are wrong (a
    /// missing or unknown key, a bad value, options that contradict each other).
    Options = "options",
    /// The configuration is wrong (a `--set`/config key, an S3 alias, a secret).
    Config = "config",
    /// The script does not compile or calls something that does not exist.
    Script = "script",
    /// The script ran more operations than `--max-operations` allows.
    OperationLimit = "operation_limit",
    /// The workflow stopped itself with `fail(msg)`.
    Fail = "fail",
    /// A branch of `parallel([...])` failed (the map lists each branch's error).
    Parallel = "parallel",
    /// A file function (`write_file`, `private_dir`, ...) failed.
    File = "file",
    /// An `undo()` compensation failed while the run was being rolled back.
    Undo = "undo",

    // Access: credentials, permissions, certificates.
    /// The server refused the credentials (HTTP 401).
    Unauthorized = "unauthorized",
    /// The credentials lack a permission (HTTP 403).
    Forbidden = "forbidden",
    /// The `ca_cert` file cannot be read or holds no usable certificate.
    CaCert = "ca_cert",
    /// The HTTP client cannot be set up (TLS settings).
    Client = "client",
    /// S3 refused the access keys.
    Credentials = "credentials",
    /// S3 denied access to the bucket or object.
    AccessDenied = "access_denied",

    // Reaching a server.
    /// Elasticsearch/OpenSearch (or an HTTP URL) did not answer: refused,
    /// reset, DNS, TLS handshake.
    Connect = "connect",
    /// The S3 endpoint did not answer.
    Unreachable = "unreachable",
    /// An HTTP server answered with an unexpected status.
    HttpStatus = "http_status",
    /// The server's answer is not what the protocol says (bad JSON, a missing field).
    InvalidResponse = "invalid_response",
    /// The URL answers, but not as Elasticsearch or OpenSearch.
    NotElasticsearch = "not_elasticsearch",
    /// S3 answered with an error other than keys, access or a missing bucket.
    S3 = "s3",
    /// The cluster's health is worse than the step requires.
    Health = "health",

    // Something that must exist does not.
    /// The server has no such thing (HTTP 404).
    NotFound = "not_found",
    /// The S3 bucket does not exist.
    BucketMissing = "bucket_missing",
    /// The snapshot repository is not registered on the cluster.
    RepositoryMissing = "repository_missing",
    /// A snapshot this step started disappeared from the repository.
    SnapshotMissing = "snapshot_missing",
    /// A source to archive does not exist or cannot be examined.
    Source = "source",

    // Elasticsearch snapshots.
    /// The repository exists but a node cannot use its location.
    RepositoryVerify = "repository_verify",
    /// A snapshot of that name is already in the repository.
    SnapshotExists = "snapshot_exists",
    /// The snapshot ended PARTIAL: some shards are missing from it.
    SnapshotPartial = "snapshot_partial",
    /// The snapshot ended INCOMPATIBLE with this cluster's version.
    SnapshotIncompatible = "snapshot_incompatible",
    /// The snapshot ended FAILED.
    SnapshotFailed = "snapshot_failed",
    /// A snapshot restore ended with shards that did not come back (the
    /// answer's `shards.failed` > 0 or `successful` < `total`).
    RestoreIncomplete = "restore_incomplete",

    // Processes.
    /// The command could not be started (not found, not executable).
    Spawn = "spawn",
    /// The command ran and exited with a code not in `ok_codes`.
    ExitCode = "exit_code",
    /// The command printed more than the capture limit on one stream (use
    /// `capture: false`).
    OutputTooLarge = "output_too_large",

    // Local files.
    /// Reading or writing a local file failed.
    Io = "io",
    /// The disk filled up while writing.
    DiskFull = "disk_full",
    /// A file or folder to archive cannot be read (permission denied) and
    /// `on_unreadable` is `"fail"`.
    Unreadable = "unreadable",
    /// A file changed or vanished while it was being archived or uploaded.
    Changed = "changed",
    /// A symlink stands where the step would write.
    UnsafePath = "unsafe_path",
    /// An archive entry would write outside `dest`, or is of a kind never extracted.
    UnsafeEntry = "unsafe_entry",
    /// Something is already at the path a move or rename would write to.
    Exists = "exists",
    /// A rename between two file systems, which cannot be atomic: the
    /// paths must be on one file system.
    CrossDevice = "cross_device",

    // Transfers.
    /// Uploading an object failed.
    Upload = "upload",
    /// Downloading an object failed.
    Download = "download",

    // Integrity: what was written or read is not what it should be.
    /// An object's bytes differ from what was sent or listed.
    Integrity = "integrity",
    /// An archive has no checksum to check against (`.sha256` missing or unreadable).
    ChecksumMissing = "checksum_missing",
    /// An archive's (or an entry's) checksum differs from the recorded one.
    ChecksumMismatch = "checksum_mismatch",
    /// The archive is not a readable tar (truncated, a bad header).
    Corrupt = "corrupt",
    /// The archive is sound but lacks what `expect` / `min_entries` ask for.
    Expectation = "expectation",

    // Encryption (off-site copies).
    /// A recipients or identity file cannot be read or holds no usable key.
    Key = "key",
    /// No identity given can decrypt the file: it was encrypted to other keys.
    WrongKey = "wrong_key",
    /// An encrypted file is damaged, truncated or not in the age format.
    Decrypt = "decrypt",

    // The run itself.
    /// The step ran past its timeout.
    Timeout = "timeout",
    /// The run was interrupted (SIGINT/SIGTERM).
    Cancelled = "cancelled",
    /// A bug: a worker thread panicked.
    Internal = "internal",
}

impl ErrorKind {
    /// The kind a script-visible string names, if any.
    pub fn parse(text: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.iter().copied().find(|k| k.as_str() == text)
    }

    /// True when another attempt cannot fix it (bad options or config,
    /// rejected credentials, an unusable CA file, a missing bucket, a symlink
    /// in the way): the engine never retries these, so a permanent error is
    /// reported at once rather than after `retries` more attempts.
    pub fn is_permanent(self) -> bool {
        matches!(
            self,
            ErrorKind::Options
                | ErrorKind::Config
                | ErrorKind::Unauthorized
                | ErrorKind::Forbidden
                | ErrorKind::CaCert
                | ErrorKind::Client
                | ErrorKind::Credentials
                | ErrorKind::AccessDenied
                | ErrorKind::BucketMissing
                | ErrorKind::UnsafePath
                | ErrorKind::Key
                | ErrorKind::WrongKey
        )
    }

    /// True when it means bad input, nothing should have run (exit code 2
    /// while the run has changed nothing).
    pub fn is_input(self) -> bool {
        matches!(
            self,
            ErrorKind::Config | ErrorKind::Options | ErrorKind::Script
        )
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets tests and callers compare a kind with the script-visible string.
impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A step's own typed error; gives the [`ErrorKind`] that scripts see as
/// `e.kind` when they catch a step failure.
pub trait StepFailure: Error + Send + Sync + 'static {
    /// Why it failed, e.g. [`ErrorKind::Spawn`], [`ErrorKind::Io`].
    fn error_kind(&self) -> ErrorKind;

    /// The script-visible string of [`StepFailure::error_kind`], e.g. `"spawn"`.
    fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }
}

/// A step failure as the engine sees it: a kind, a message and its causes.
#[derive(Debug)]
pub struct StepError {
    kind: ErrorKind,
    message: String,
    causes: Vec<String>,
}

impl StepError {
    /// A failure with a kind and a one-line message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        StepError {
            kind,
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// The step stopped because the run was interrupted (SIGINT/SIGTERM).
    pub fn cancelled() -> Self {
        StepError::new(ErrorKind::Cancelled, "interrupted")
    }

    /// The step ran past its timeout.
    pub fn timed_out(after: std::time::Duration) -> Self {
        StepError::new(
            ErrorKind::Timeout,
            format!("timed out after {}", to_the_millisecond(after)),
        )
    }

    /// Why it failed.
    pub fn error_kind(&self) -> ErrorKind {
        self.kind
    }

    /// The script-visible kind string (`e.kind` in a script).
    pub fn kind(&self) -> &'static str {
        self.kind.as_str()
    }

    /// True when retrying cannot help (see [`ErrorKind::is_permanent`]).
    pub fn is_permanent(&self) -> bool {
        self.kind.is_permanent()
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
            kind: error.error_kind(),
            message,
            causes,
        }
    }
}

/// An error and its causes on one line ("what: why: deeper why"), each cause
/// added only when the text so far does not already say it (many errors
/// repeat their source in their own message).
pub fn one_line(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// A duration as people write it, to the nearest millisecond: a deadline
/// measured from a slightly later start reads "2s", not "1s 999ms 923us 806ns".
pub fn to_the_millisecond(duration: std::time::Duration) -> humantime::FormattedDuration {
    let millis = (duration.as_nanos() + 500_000) / 1_000_000;
    humantime::format_duration(std::time::Duration::from_millis(
        u64::try_from(millis).unwrap_or(u64::MAX),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of kinds docs/writing-workflows.md shows, made from the enum.
    fn kinds_table() -> String {
        let mut table = String::from("| `e.kind` | cause | permanent |\n|---|---|---|\n");
        for kind in ErrorKind::ALL {
            let permanent = if kind.is_permanent() { "yes" } else { "" };
            table.push_str(&format!(
                "| `{}` | {} | {permanent} |\n",
                kind.as_str(),
                kind.cause()
            ));
        }
        table
    }

    #[test]
    fn writing_workflows_lists_every_kind_as_the_enum_says() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/writing-workflows.md");
        let doc = std::fs::read_to_string(path).expect("docs/writing-workflows.md");
        let table = kinds_table();
        assert!(
            doc.contains(&table),
            "docs/writing-workflows.md's table of error kinds is not the one ErrorKind makes; \
             put this table in its place:\n\n{table}"
        );
    }

    #[test]
    fn every_kind_has_its_own_string_and_parses_back() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            assert!(seen.insert(kind.as_str()), "{} twice", kind.as_str());
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(*kind));
            assert!(!kind.cause().is_empty(), "{kind:?} has no doc");
        }
        assert_eq!(ErrorKind::parse("no_such_kind"), None);
    }

    #[test]
    fn the_strings_the_stock_workflows_match_on_stay() {
        // workflows/ and workflows/lib/ catch these by name.
        for name in [
            "options",
            "config",
            "fail",
            "not_found",
            "unauthorized",
            "forbidden",
            "expectation",
            "snapshot_exists",
            "changed",
        ] {
            assert!(ErrorKind::parse(name).is_some(), "{name}");
        }
    }

    #[test]
    fn a_timeout_reads_to_the_millisecond() {
        let measured = std::time::Duration::new(1, 999_923_806);
        assert_eq!(
            StepError::timed_out(measured).to_string(),
            "timed out after 2s"
        );
        let stop = crate::runtime::blocking_work::Stop::TimedOut(measured);
        assert_eq!(stop.to_string(), "timed out after 2s");
        let odd = std::time::Duration::from_micros(2_345_400);
        assert_eq!(to_the_millisecond(odd).to_string(), "2s 345ms");
    }
}
