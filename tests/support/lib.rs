//! Test-only helpers shared by every integration-test binary in `tests/`
//! (a dev-dependency of the `runbook` and `runbook-steps` packages; never
//! published, never linked into the binary).
//!
//! # Layout
//! - [`harness`]: [`Test`], one run of the real `runbook` binary written as
//!   what it checks, and [`Workdir`], a folder for several runs.
//! - `mod.rs` (re-exported here, also as [`support`]): the binary, the test
//!   virtualenv, free ports, child guards, `code`/`stderr` of an `Output`.
//! - [`cluster`]: the sandbox cluster (tests/sandbox/sandbox.py) and what a
//!   backup left behind.
//! - [`moto`]: the moto S3 server, its Python helper and a fault relay.
//! - [`restore_proof`]: back up, wipe, restore, compare digests (real servers).
//! - [`servers`]: loopback server processes killed with their process group,
//!   and the Elasticsearch stand-in on a free port.
//!
//! A test binary uses it as `use runbook_test_support::{Test, ...};` (the
//! package it belongs to lists `runbook-test-support` under dev-dependencies).

#[path = "mod.rs"]
pub mod support;

pub mod cluster;
pub mod harness;
pub mod moto;
pub mod restore_proof;
pub mod servers;

pub use harness::{Ran, Test, Workdir};
pub use support::*;
