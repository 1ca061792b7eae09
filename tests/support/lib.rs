//! Test-only helpers shared by every integration-test binary in `tests/`
//! (a dev-dependency of the `runbook` and `runbook-steps` packages; never
//! published, never linked into the binary).
//!
//! # Layout
//! - [`harness`]: [`Test`], one run of the real `runbook` binary written as
//!   what it checks, and [`Workdir`], a folder for several runs.
//! - [`support`] (re-exported here): the binary, the test virtualenv, free
//!   ports, child guards, signals, `code`/`stderr` of an `Output`.
//! - [`cluster`]: the sandbox cluster (tests/sandbox/sandbox.py) and what a
//!   backup left behind.
//! - [`moto`]: the moto S3 server, its Python helper and a fault relay.
//! - [`restore_proof`]: back up, wipe, restore, compare digests (real servers).
//! - [`running`]: [`Running`], a run the test acts on while it runs (signals,
//!   SIGKILL, waits for a condition), then checks like a finished [`Test`].
//! - [`servers`]: loopback server processes killed with their process group,
//!   and the Elasticsearch stand-in on a free port.
//! - [`shared`]: [`SharedCluster`], one sandbox (real servers or stand-ins)
//!   for every test of a binary, taken in turns, stopped at exit.
//! - [`tmpfs`]: [`TmpfsMount`], a small or read-only disk for one test.
//!
//! A test binary uses it as `use runbook_test_support::{Test, ...};` (the
//! package it belongs to lists `runbook-test-support` under dev-dependencies).

pub mod cluster;
pub mod harness;
pub mod moto;
pub mod restore_proof;
pub mod running;
pub mod servers;
pub mod shared;
pub mod support;
pub mod tmpfs;

pub use harness::{Ran, Test, Workdir};
pub use running::{Running, wait_until};
pub use shared::SharedCluster;
pub use support::*;
pub use tmpfs::TmpfsMount;
