//! One run of a workflow: the run itself ([`runner`]: lock, journal, signals,
//! the script thread, the exit code), the state every engine function shares
//! during it ([`run_state`]), `parallel` and `defer`, `undo()` compensations
//! and `runbook recover`, the journal, the lock, and the private folder for
//! files holding secrets.

pub mod cleanup;
pub mod compensation;
pub mod journal;
pub mod lock;
pub mod parallel;
pub mod private_dir;
pub mod recovery;
pub mod run_error;
pub mod run_state;
pub mod runner;
