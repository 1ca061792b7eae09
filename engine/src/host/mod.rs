//! The Rhai host: everything a running script touches. The engine with every
//! function registered ([`engine`]), the one generic adapter between Rhai maps
//! and step options/results ([`step_call`]) and the line each call logs
//! ([`step_log`]), the functions scripts call
//! besides steps (files, shell text, backup sets, `parallel` ([`parallel`]),
//! `defer` ([`cleanup`]), `undo()` ([`compensation`]), `private_dir`
//! ([`private_dir`])), the state every engine function shares during a run
//! ([`run_state`]) and the journal it writes ([`journal`]) and the retention
//! of journals ([`journal_retention`]), errors raised into
//! scripts and how they are printed ([`script_error`]), config values and their
//! rules, secrets and their masking, finding and trusting workflow files, and
//! `runbook check`. It imports nothing from `run/`, `report/` or `cli/`.

pub mod backup_set_functions;
pub mod check;
pub mod check_lints;
pub mod cleanup;
pub mod compensation;
pub mod config;
pub mod config_error;
pub mod config_keys;
pub mod config_probe;
pub mod config_rules;
pub mod config_site;
pub mod config_source;
pub mod engine;
pub mod file_functions;
pub mod file_safety;
pub mod journal;
pub mod journal_retention;
pub mod parallel;
pub mod private_dir;
pub mod run_error;
pub mod run_state;
pub mod script_error;
pub mod secrets;
pub mod shell_text;
pub mod step_call;
pub mod step_log;
pub mod step_misuse;
pub mod wording_functions;
pub mod workflow;
