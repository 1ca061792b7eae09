//! The runbook engine: a Rhai host that runs workflows calling native steps.
//!
//! # Layout
//! - [`cli`], [`commands`], [`exit_code`]: the `runbook` command line.
//! - [`run`]: one run: lock ([`lock`]), journal ([`journal`]), signals, the
//!   script thread, deferred cleanups, the exit code; [`run_state`] is what
//!   every engine function shares during a run; [`private_dir`] holds files
//!   with secrets outside the archive folders.
//! - [`compensation`], [`recovery`]: `undo()` actions journaled before the side
//!   effect, and carrying out those of killed runs (`runbook recover`).
//! - [`workflow`]: finding a workflow file or stock workflow, resolving imports;
//!   [`file_safety`]: refusing scripts, journals, vars and password files
//!   others could change.
//! - [`host`]: the Rhai engine with every function registered; [`step_call`] is
//!   the one generic adapter between Rhai maps and step options/results.
//! - [`config`], [`config_rules`], [`secrets`]: config values, the allowed
//!   values a workflow declares for them, and secret masking.
//! - [`parallel`], [`cleanup`]: `parallel([...])` and `defer(|| ...)`.
//! - [`script_error`]: errors raised into scripts and printed to the user.
//! - [`check`]: static checks for `runbook check`.
//! - [`file_functions`]: the file helpers exposed to scripts;
//!   [`backup_set_functions`]: `backup_manifest()` for restores; [`step_docs`]:
//!   `docs/steps.md` from the step docs; [`shell_text`]: `shell_quote` and
//!   `shell_comment` for the shell scripts workflows write.
//! - [`logging`], [`terminal`]: logs, colours and progress bars.
//! - [`catalogue_command`], [`metrics`]: `runbook list`, `verify --set`, and
//!   the `--metrics-file` Prometheus textfile.

pub mod backup_set_functions;
pub mod catalogue_command;
pub mod check;
pub mod cleanup;
pub mod cli;
pub mod commands;
pub mod compensation;
pub mod config;
pub mod config_rules;
pub mod exit_code;
pub mod file_functions;
pub mod file_safety;
pub mod host;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod parallel;
pub mod private_dir;
pub mod recovery;
pub mod run;
pub mod run_state;
pub mod script_error;
pub mod secrets;
pub mod shell_text;
pub mod step_call;
pub mod step_docs;
pub mod terminal;
pub mod workflow;
