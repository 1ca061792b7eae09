//! Native operations that runbook workflows call.
//!
//! # Layout
//! - [`step`]: the [`Step`](step::Step) trait every operation implements, and the
//!   [`StepContext`](step::StepContext) the engine hands to a running step.
//! - [`registry`]: the explicit list of every step, type-erased for the engine.
//! - [`error`]: [`StepError`](error::StepError), what a failed step reports.
//! - [`progress`]: progress reporting (a bar on a terminal, log lines otherwise).
//! - One file per step: [`exec`], ...
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
pub mod es_snapshot;
pub mod exec;
pub mod extract_archive;
pub mod files;
pub mod http;
pub mod http_client;
pub mod mcli_mirror;
pub mod prune;
pub mod s3_alias;
pub mod s3_upload;
pub mod tar_dir;
pub mod verify_archive;

pub use error::{StepError, StepFailure};
pub use registry::{StepEntry, all_steps, find_step};
pub use step::{DryRun, Step, StepContext};
