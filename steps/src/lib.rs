//! Native operations that runbook workflows call.
//!
//! # Layout
//! - [`registry`]: the list of every step ([`all_steps`], [`find_step`]), the
//!   one module that imports every step, above every concept.
//! - [`runtime`]: what every step is built on, importing no step: the
//!   [`Step`] trait and [`StepContext`] (`step`), the error a step reports
//!   (`error`), progress, blocking work with cancellation and deadlines
//!   (`blocking_work`), `.partial` + rename files (`atomic_file`), opening
//!   only regular files (`regular_file`), [`Secret`](runtime::secret::Secret),
//!   the shared byte-rate budget (`throttle`) and plural and size wording
//!   (`wording`).
//! - [`archive`]: `tar_dir`, `verify_archive`, `extract_archive`; shared:
//!   `io` (compression, hashing), `sidecar` (`.sha256`), `verification`,
//!   `page_cache` (dropping an archive's pages for `read_from: "disk"`).
//! - [`s3`]: `mcli_mirror` (`mirror`), `s3_upload` (`upload`), `s3_archive`
//!   (`archive`: a bucket streamed into a tar archive); shared: `alias`
//!   (MinIO-client aliases, the signed S3 client), `connection` (the options
//!   every S3 step takes, and `TargetOptions`), `keys` (object keys as file
//!   names), `listing`, `bucket_copy` (what `mirror` and `archive` share: the
//!   listing plan, opening objects, pacing, the ETag MD5 check).
//! - [`search`]: Elasticsearch/OpenSearch and HTTP: `client` (the retrying
//!   HTTP client), `snapshot_api` (snapshot URL and delete, plain names,
//!   shared with retention), steps `es_server`, `es_health`, `es_snapshot`, `es_restore`
//!   (`restore`), `http`.
//! - [`process`]: the `exec` step.
//! - [`backup`]: the backup set: `layout` (the stamp and every file name),
//!   `manifest` (the typed set manifest, format 1) and the `write_manifest`
//!   step, `catalogue`, `snapshot_check`, `archive_check` (reading archives
//!   back for `runbook verify`), retention (`prune`).
//! - [`files`]: the file helpers scripts call (`write_file`, `glob`, ...).
//! - [`local`]: `move_path` (atomic renames of local folders, and their undo).
//! - [`crypto`]: `age_encrypt`, `age_decrypt` (the off-site copy's
//!   encryption); shared: `keys` (recipients and identity files), `stream`.
//! - [`offsite`]: the off-site copy beyond the upload: `offsite_record`
//!   (`write_record`), `offsite_verify` (`verify`), `offsite_prune`
//!   (`prune`); shared: `record` (the off-site record), `remote`.
//!
//! One file per step; a step file imports only the runtime and its concept's
//! shared modules, never another step. See docs/architecture.md.
//!
//! This crate knows nothing of Rhai: options come in as serde values and results
//! go out as serde values, so every step can be unit-tested as plain Rust.

pub mod archive;
pub mod backup;
pub mod crypto;
pub mod files;
pub mod local;
pub mod offsite;
pub mod process;
pub mod registry;
pub mod runtime;
pub mod s3;
pub mod search;

pub use registry::{StepEntry, all_steps, find_step};
pub use runtime::error::{ErrorKind, StepError, StepFailure};
pub use runtime::step::{DryRun, Step, StepContext};
