//! The explicit list of every step, and the type erasure that lets the engine
//! serve all of them through one generic adapter.
//!
//! It sits at the top of the crate, above every concept, because it is the one
//! module that imports every step: the runtime below it imports no step.
//!
//! Adding a step: write its file, then add one line to [`all_steps`].

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::time::Duration;

use crate::runtime::error::StepError;
use crate::runtime::step::{DryRun, Step, StepContext};

type BoxedRun = Box<
    dyn FnOnce(
            StepContext,
        )
            -> Pin<Box<dyn Future<Output = Result<serde_json::Value, StepError>> + Send>>
        + Send,
>;

/// A step, type-erased: options in and results out as JSON values.
pub struct StepEntry {
    /// The function name scripts call.
    pub name: &'static str,
    /// The full documentation text.
    pub doc: &'static str,
    /// See [`Step::HANDLES_TIMEOUT`].
    pub handles_timeout: bool,
    prepare: fn(serde_json::Value) -> Result<PreparedStep, OptionsError>,
}

/// Options that do not fit the step's options struct.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OptionsError {
    /// The offending key path (e.g. `args[2]`), empty when it is the whole map.
    pub key: String,
    /// What is wrong, from serde ("unknown field `x`, expected one of ...").
    pub message: String,
}

/// A step whose options are parsed and checked, ready to describe or run.
pub struct PreparedStep {
    /// One line: what the step would do.
    pub description: String,
    /// The step's own label suggestion.
    pub label: Option<String>,
    /// The step's default timeout.
    pub default_timeout: Option<Duration>,
    /// `Some(placeholder)` when the step does nothing under dry-run.
    pub dry_run_placeholder: Option<serde_json::Value>,
    /// See [`Step::changes`].
    pub changes: bool,
    run: BoxedRun,
}

impl PreparedStep {
    /// Runs the step.
    pub async fn run(self, ctx: StepContext) -> Result<serde_json::Value, StepError> {
        (self.run)(ctx).await
    }
}

impl StepEntry {
    /// The step's one-line summary (first line of its doc).
    pub fn summary(&self) -> &'static str {
        self.doc.lines().next().unwrap_or_default()
    }

    /// Parses `options` (unknown keys, missing keys and wrong types are errors
    /// naming the key) and gets the step ready to run.
    pub fn prepare(&self, options: serde_json::Value) -> Result<PreparedStep, OptionsError> {
        (self.prepare)(options)
    }
}

fn entry<S: Step>() -> StepEntry {
    StepEntry {
        name: S::NAME,
        doc: S::DOC,
        handles_timeout: S::HANDLES_TIMEOUT,
        prepare: prepare::<S>,
    }
}

fn prepare<S: Step>(value: serde_json::Value) -> Result<PreparedStep, OptionsError> {
    let options: S::Options = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        OptionsError {
            key: if key == "." { String::new() } else { key },
            message: e.into_inner().to_string(),
        }
    })?;
    let dry_run_placeholder = match S::dry_run(&options) {
        DryRun::Skip(placeholder) => Some(to_json(&placeholder)),
        DryRun::Run => None,
    };
    Ok(PreparedStep {
        description: S::describe(&options),
        label: S::label(&options),
        default_timeout: S::default_timeout(&options),
        dry_run_placeholder,
        changes: S::changes(&options),
        run: Box::new(move |ctx| {
            Box::pin(async move { S::run(options, ctx).await.map(|out| to_json(&out)) })
        }),
    })
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("step results serialize to JSON")
}

/// Every step, in the order `runbook steps` lists them.
pub fn all_steps() -> &'static [StepEntry] {
    static STEPS: LazyLock<Vec<StepEntry>> = LazyLock::new(|| {
        vec![
            entry::<crate::process::exec::Exec>(),
            entry::<crate::archive::tar_dir::TarDir>(),
            entry::<crate::archive::verify::VerifyArchive>(),
            entry::<crate::archive::extract::ExtractArchive>(),
            entry::<crate::s3::mirror::McliMirror>(),
            entry::<crate::s3::upload::S3Upload>(),
            entry::<crate::s3::archive::S3Archive>(),
            entry::<crate::search::http::Http>(),
            entry::<crate::search::server::EsServer>(),
            entry::<crate::search::health::EsHealth>(),
            entry::<crate::search::snapshot::EsSnapshot>(),
            entry::<crate::search::restore::EsRestore>(),
            entry::<crate::backup::prune::Prune>(),
            entry::<crate::backup::write_manifest::WriteManifest>(),
            entry::<crate::local::move_path::MovePath>(),
            entry::<crate::crypto::encrypt::AgeEncrypt>(),
            entry::<crate::crypto::decrypt::AgeDecrypt>(),
            entry::<crate::offsite::write_record::OffsiteRecordStep>(),
            entry::<crate::offsite::verify::OffsiteVerify>(),
            entry::<crate::offsite::prune::OffsitePrune>(),
            // New steps: one line here.
        ]
    });
    &STEPS
}

/// The step called `name`.
pub fn find_step(name: &str) -> Option<&'static StepEntry> {
    all_steps().iter().find(|s| s.name == name)
}
