//! The exit codes, as documented in `--help` and the README.

/// The workflow succeeded.
pub const SUCCESS: i32 = 0;
/// The workflow failed (also: a config error found after something was changed).
pub const FAILED: i32 = 1;
/// Usage, config or script error, found before anything was changed.
pub const INPUT: i32 = 2;
/// Another run of the same workflow holds the lock (scheduled runs: skipped).
pub const LOCKED: i32 = 3;
/// Interrupted by SIGINT.
pub const SIGINT: i32 = 130;
/// Interrupted by SIGTERM.
pub const SIGTERM: i32 = 143;

/// The table printed at the end of `--help`.
pub const HELP: &str = "\
Exit codes:
  0    success
  1    the workflow failed
  2    usage, config or script error, found before anything was changed
  3    another run of the same workflow holds the lock (skipped)
  130  interrupted by SIGINT (cleanups ran)
  143  interrupted by SIGTERM (cleanups ran)";
