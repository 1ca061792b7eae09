//! External programs: the `exec` step (process groups, timeouts, output capture).

pub mod exec;
