//! What the user sees: logs and their format ([`logging`]), colours and
//! progress on a terminal ([`terminal`]), script errors and how they are
//! printed ([`script_error`]), exit codes ([`exit_code`]) and the Prometheus
//! textfile ([`metrics`]), the run summary
//! ([`summary`]) and the `notify_command` it is given to ([`notify`]).

pub mod exit_code;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod script_error;
pub mod summary;
pub mod terminal;
