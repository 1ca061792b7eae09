//! What the user sees: logs and their format ([`logging`]), colours and
//! progress on a terminal ([`terminal`]), exit codes ([`exit_code`]) and the
//! Prometheus textfile ([`metrics`]). Errors raised into scripts and how they
//! are printed live with the host (`host::script_error`), which raises them.

pub mod exit_code;
pub mod logging;
pub mod metrics;
pub mod terminal;
