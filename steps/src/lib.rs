//! Native operations that runbook workflows call.
//!
//! # Layout
//! - [`step`]: the [`Step`](step::Step) trait every operation implements, and the
//!   [`StepContext`](step::StepContext) the engine hands to a running step.
//! - [`registry`]: the explicit list of every step, type-erased for the engine.
//! - [`error`]: [`StepError`](error::StepError), what a failed step reports.
//! - [`progress`]: progress reporting (a bar on a terminal, log lines otherwise).
//! - One file per step: [`exec`], [`tar_dir`], [`verify_archive`],
//!   [`extract_archive`], [`http`], [`es_server`], [`es_health`], [`es_snapshot`],
//!   [`mcli_mirror`], [`s3_upload`], [`prune`].
//! - What the steps share, one concept per module: [`archive_io`] (compression,
//!   hashing writer and reader), [`atomic_file`] (`.partial` + fsync + rename),
//!   [`checksum_sidecar`] (the `.sha256` file), [`blocking_work`] (cancellation
//!   and deadlines for blocking loops), [`http_client`] (the retrying HTTP
//!   client), [`s3_alias`] (MinIO-client aliases, S3 clients),
//!   [`backup_catalogue`] (finding backup sets), [`files`] (the file helpers
//!   scripts call), [`regular_file`] (opening only regular files, never blocking),
//!   [`snapshot_check`] (is a set's Elasticsearch snapshot still there).
//!
//! This crate knows nothing of Rhai: options come in as serde values and results
//! go out as serde values, so every step can be unit-tested as plain Rust.

pub mod error;
pub mod progress;
pub mod registry;
pub mod step;

pub mod archive_io;
pub mod atomic_file;
pub mod backup_catalogue;
pub mod blocking_work;
pub mod checksum_sidecar;
pub mod es_health;
pub mod es_server;
pub mod es_snapshot;
pub mod exec;
pub mod extract_archive;
pub mod files;
pub mod http;
pub mod http_client;
pub mod mcli_mirror;
pub mod prune;
pub mod regular_file;
pub mod s3_alias;
pub mod s3_upload;
pub mod snapshot_check;
pub mod tar_dir;
pub mod verify_archive;

pub use error::{StepError, StepFailure};
pub use registry::{StepEntry, all_steps, find_step};
pub use step::{DryRun, Step, StepContext};
