//! One run of a workflow, driven from outside the script: the run itself
//! ([`runner`]: lock, journal, signals, the script thread, the exit code),
//! the lock ([`lock`]) and `runbook recover` ([`recovery`], which first
//! waits for the programs a killed run left running: [`orphans`]). It builds the
//! host (`host::engine`) and reads what the script left in the run's state,
//! journal and compensations (`host::run_state`, `host::journal`,
//! `host::compensation`); the host never calls back into it.

pub mod lock;
pub mod orphans;
pub mod recovery;
pub mod runner;
