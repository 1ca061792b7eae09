//! The runbook engine: a Rhai host that runs workflows calling native steps.
//!
//! # Layout
//! - [`cli`]: the `runbook` command line: arguments and dispatch (`args`), the
//!   commands besides a run (`commands`), `list` and `verify --set`
//!   (`catalogue`), `status`, `docs/steps.md` from the step docs
//!   (`step_docs`), the man page (`man_page`), completion words
//!   (`completion_values`).
//! - [`host`]: everything a running script touches: the Rhai engine with
//!   every function registered (`engine`); the one adapter between Rhai maps
//!   and steps (`step_call`); functions scripts call besides steps
//!   (`file_functions`, `shell_text`, `backup_set_functions`, `parallel`,
//!   `cleanup` (`defer`), `compensation` (`undo`), `private_dir` (files with
//!   secrets outside the archive folders)); `run_state` shared by every
//!   function during a run and the `journal` it writes; `script_error`
//!   (errors raised into scripts and printed); `config`, `config_rules`,
//!   `secrets` (reading and masking); `workflow` (finding files, imports),
//!   `file_safety` (refusing files others could change), `check`
//!   and `check_lints` (`runbook check`); `run_error` (the body's error,
//!   for cleanups and the run summary).
//! - [`run`]: one run driven from outside the script (`runner`: lock,
//!   journal, signals, script thread, exit code); `recovery`
//!   (`runbook recover`), `lock`.
//! - [`report`]: `logging`, `terminal`, `exit_code`, `metrics` (the
//!   Prometheus textfile, from the journal), `summary` (`--summary-json`),
//!   `notify` (`notify_command`).
//!
//! Folders use each other one way only: `cli` → `run` → `report` → `host`
//! (and each of them → `host`); `host` imports none of the others.
//!
//! The engine reaches steps only through the registry (`runbook_steps::find_step`,
//! `all_steps`); besides it uses the step runtime (progress, files written
//! atomically, regular files, secrets), the backup-set module
//! (`runbook_steps::backup`), the file helpers (`runbook_steps::files`) and,
//! for `runbook verify`, the archive check (`archive::verification`, the
//! shared module behind the `verify_archive` step). See docs/architecture.md.

pub mod cli;
pub mod host;
pub mod report;
pub mod run;
