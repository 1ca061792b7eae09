//! What the user sees: logs and their format ([`logging`]), colours and
//! progress on a terminal ([`terminal`]), script errors and how they are
//! printed ([`script_error`]), exit codes ([`exit_code`]) and the Prometheus
//! textfile ([`metrics`]).

pub mod exit_code;
pub mod logging;
pub mod metrics;
pub mod script_error;
pub mod terminal;
