//! The Rhai host: the engine with every function registered ([`engine`]), the
//! one generic adapter between Rhai maps and step options/results
//! ([`step_call`]), the functions scripts call besides steps (files, shell
//! text, backup sets), config values and their rules, secrets and their
//! masking, finding and trusting workflow files, and `runbook check`.

pub mod backup_set_functions;
pub mod check;
pub mod check_lints;
pub mod config;
pub mod config_rules;
pub mod engine;
pub mod file_functions;
pub mod file_safety;
pub mod secrets;
pub mod shell_text;
pub mod step_call;
pub mod step_misuse;
pub mod workflow;
