//! What the user sees: logs and their format ([`logging`]), colours and
//! progress on a terminal ([`terminal`]), exit codes ([`exit_code`]), the
//! Prometheus textfile ([`metrics`]), the run summary ([`summary`]) and the
//! `notify_command` it is given to ([`notify`]). Errors raised into scripts
//! and how they are printed live with the host (`host::script_error`), which
//! raises them.

pub mod exit_code;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod summary;
pub mod terminal;
