//! The `runbook` command line: arguments and dispatch ([`args`]), the
//! commands other than a run ([`commands`]: `steps`, `check`, `verify`,
//! `recover`, ...), `list` and `verify --set` over the backup catalogue
//! ([`catalogue`]), `status` ([`status`], with the next timer run from [`next_timer`]), the service, timer and cron file `init` writes
//! ([`schedule_units`]), and `docs/steps.md` from the step docs ([`step_docs`]).

pub mod args;
pub mod catalogue;
pub mod commands;
pub mod completion_values;
pub mod man_page;
pub mod next_timer;
pub mod offsite;
pub mod schedule_units;
pub mod site_config;
pub mod status;
pub mod step_docs;

pub use args::main;
