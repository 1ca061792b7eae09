//! The local sandbox cluster for end-to-end tests: tests/sandbox/sandbox.py
//! starts stand-in `nodetool`/`cqlsh` on generated data, the Elasticsearch
//! stand-in and (for S3 storage) a real S3 server; [`Cluster`] runs the real
//! `runbook` binary against it and stops it on drop.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{Ran, Test};
use crate::support::{repo_root, runbook, venv_bin};

/// A sandbox cluster and a folder for journals and extraction; stopped on drop.
pub struct Cluster {
    /// Holds the sandbox (`sb/`), journals and scratch space.
    pub dir: tempfile::TempDir,
    /// What sandbox.py printed.
    pub record: serde_json::Value,
}

/// The journaled calls of the step `name` in a run's journal, in order.
pub fn steps_of<'a>(journal: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    journal["steps"]
        .as_array()
        .expect("a journal's steps")
        .iter()
        .filter(|s| s["step"] == name)
        .collect()
}

/// A step's start and end in a run's journal (UTC milliseconds): the step
/// whose label is `label`, else the first whose label starts with it.
pub fn step_span(journal: &serde_json::Value, label: &str) -> (i64, i64) {
    let steps = journal["steps"].as_array().expect("a journal's steps");
    let step = steps
        .iter()
        .find(|s| s["label"] == label)
        .or_else(|| {
            steps
                .iter()
                .find(|s| s["label"].as_str().is_some_and(|l| l.starts_with(label)))
        })
        .unwrap_or_else(|| panic!("no step `{label}` in the journal: {journal:#}"));
    let started = chrono::DateTime::parse_from_rfc3339(step["started"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    (started, started + step["duration_ms"].as_i64().unwrap())
}

impl Cluster {
    /// The one journal in the cluster's journal folder, parsed (fails unless
    /// exactly one run wrote there).
    pub fn only_journal(&self) -> serde_json::Value {
        let journals: Vec<_> = walk(&self.dir.path().join("journal"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        assert_eq!(journals.len(), 1, "{journals:?}");
        serde_json::from_str(&std::fs::read_to_string(&journals[0]).unwrap()).unwrap()
    }

    pub fn start(args: &[&str]) -> Self {
        Cluster::start_in(tempfile::tempdir().expect("temp dir"), args)
    }

    /// [`Cluster::start`] with the sandbox in `dir/sb` (a folder the caller
    /// made first, e.g. to watch it before the servers start).
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Self {
        let sandbox = dir.path().join("sb");
        let out = Command::new(venv_bin("python"))
            .arg(repo_root().join("tests/sandbox/sandbox.py"))
            .arg("start")
            .arg(&sandbox)
            .args(args)
            .output()
            .expect("sandbox.py runs");
        assert!(
            out.status.success(),
            "sandbox start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record = serde_json::from_slice(&out.stdout).expect("sandbox prints its record");
        Cluster { dir, record }
    }

    pub fn sandbox(&self) -> PathBuf {
        self.dir.path().join("sb")
    }

    pub fn path(&self, key: &str) -> PathBuf {
        PathBuf::from(
            self.record["paths"][key]
                .as_str()
                .unwrap_or_else(|| panic!("no path {key}")),
        )
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = runbook();
        command.args(args);
        if matches!(args.first(), Some(&"run") | Some(&"plan")) {
            command
                .arg("--vars")
                .arg(self.path("vars"))
                .arg("--journal-dir")
                .arg(self.dir.path().join("journal"))
                .args(["--set", "elasticsearch_poll=1s"]);
        }
        for (key, value) in self.record["env"].as_object().unwrap() {
            command.env(key, value.as_str().unwrap());
        }
        command.current_dir(self.dir.path());
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("runbook runs")
    }

    /// `runbook ARGS` against the sandbox as a [`Test`]: what [`Cluster::command`]
    /// sets up (the sandbox's vars, journal folder, environment and a 1 s
    /// Elasticsearch poll for `run` and `plan`), then `.run().success()` etc.
    pub fn runbook(&self, args: &[&str]) -> Test {
        let mut test = Test::at(self.dir.path()).args(args);
        if matches!(args.first(), Some(&"run") | Some(&"plan")) {
            test = test
                .arg("--vars")
                .arg(self.path("vars"))
                .args(["--set", "elasticsearch_poll=1s"]);
        }
        for (key, value) in self.record["env"].as_object().unwrap() {
            test = test.env(key, value.as_str().unwrap());
        }
        test
    }

    /// `runbook ARGS` in the cluster's folder with the sandbox's environment
    /// only: no vars and no poll setting (for a workflow file of the test's
    /// own, or a stock run without [`Cluster::runbook`]'s additions).
    pub fn bare_runbook<I, S>(&self, args: I) -> Test
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut test = Test::at(self.dir.path()).args(args);
        for (key, value) in self.record["env"].as_object().unwrap() {
            test = test.env(key, value.as_str().unwrap());
        }
        test
    }

    /// `runbook recover` of the runs journaled in the cluster's folder.
    pub fn recover(&self) -> Test {
        self.runbook(&["recover", "--journal-dir"])
            .arg(self.dir.path().join("journal"))
    }

    /// `runbook run restore-prep --set KEY=VALUE...` with the journal kept
    /// here; no sandbox vars, so each test names every key it relies on.
    pub fn restore_prep(&self, settings: &[(&str, String)]) -> Output {
        self.restore_prep_run(settings).output()
    }

    /// [`Cluster::restore_prep`] as a finished [`Test`], to check with
    /// `.success()` and the like.
    pub fn restore_prep_run(&self, settings: &[(&str, String)]) -> Ran {
        let mut test = Test::at(self.dir.path()).args(["run", "restore-prep"]);
        for (key, value) in settings {
            test = test.arg("--set").arg(format!("{key}={value}"));
        }
        test.run()
    }

    /// `sandbox.py COMMAND DIR ARGS...` on this sandbox, run to the end
    /// (`status`, `digest`, `stop`): what it printed and how it ended.
    pub fn sandbox_py(&self, command: &str, args: &[&str]) -> Output {
        Command::new(venv_bin("python"))
            .arg(repo_root().join("tests/sandbox/sandbox.py"))
            .arg(command)
            .arg(self.sandbox())
            .args(args)
            .output()
            .expect("sandbox.py runs")
    }

    /// `sandbox.py digest DIR ARGS...` (`--attachments folder|bucket`): the
    /// Cassandra rows, index documents and attachments it hashed.
    #[track_caller]
    pub fn digest_of(&self, args: &[&str]) -> serde_json::Value {
        let out = self.sandbox_py("digest", args);
        assert!(out.status.success(), "digest failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("digest prints JSON")
    }

    pub fn es_url(&self) -> String {
        self.record["elasticsearch_url"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn es_faults(&self, faults: serde_json::Value) {
        let out = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
            ])
            .arg(faults.to_string())
            .arg(format!("{}/_standin/faults", self.es_url()))
            .output()
            .unwrap();
        assert!(out.status.success(), "setting ES faults failed");
    }

    /// Every request the Elasticsearch stand-in received. A log that cannot
    /// be read fails the test (an empty list would pass every "nothing was
    /// snapshotted" check without checking anything).
    pub fn es_requests(&self) -> Vec<serde_json::Value> {
        let out = Command::new("curl")
            .args(["-sf"])
            .arg(format!("{}/_standin/requests", self.es_url()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot read the stand-in's request log at {}: {}",
            self.es_url(),
            stderr(&out)
        );
        let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        value
            .as_array()
            .cloned()
            .or_else(|| value["requests"].as_array().cloned())
            .unwrap_or_else(|| panic!("the stand-in's request log is no list: {value}"))
    }

    /// The sandbox's S3 server (`--storage s3`), `http://127.0.0.1:PORT`.
    pub fn s3_endpoint(&self) -> String {
        self.record["s3_endpoint"]
            .as_str()
            .expect("the sandbox was started with --storage s3")
            .to_string()
    }

    /// Runs a Python `script` with `s3` (a boto3 client of the sandbox's S3
    /// server) and the modules `boto3` and `json`; what it printed. Fails the
    /// test with the script's stderr when it fails.
    pub fn boto3(&self, script: &str) -> String {
        let out = Command::new(venv_bin("python"))
            .arg("-c")
            .arg(format!(
                "import boto3, json\n\
                 s3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', \
                 aws_secret_access_key='test', region_name='us-east-1')\n{script}",
                self.s3_endpoint()
            ))
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "boto3 script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates the bucket `name` on the sandbox's S3 server (an off-site
    /// destination next to the attachments bucket).
    pub fn make_bucket(&self, name: &str) {
        let made = Command::new("curl")
            .args(["-sf", "-X", "PUT"])
            .arg(format!("{}/{name}", self.s3_endpoint()))
            .output()
            .expect("curl runs");
        assert!(
            made.status.success(),
            "cannot create the bucket {name} on {}: {}",
            self.s3_endpoint(),
            String::from_utf8_lossy(&made.stderr)
        );
    }

    pub fn knob(&self, name: &str, value: &str) {
        std::fs::write(self.path("state").join(name), value).unwrap();
    }

    /// Every file under the backup folder, relative.
    pub fn backup_files(&self) -> Vec<String> {
        let root = self.path("backup");
        let mut files: Vec<String> = walk(&root)
            .into_iter()
            .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        files.sort();
        files
    }

    /// Asserts that nothing was snapshotted (the run stopped before): no
    /// `nodetool snapshot` ran, no Cassandra snapshot folder exists, and no
    /// PUT or DELETE request reached Elasticsearch.
    #[track_caller]
    pub fn assert_nothing_snapshotted(&self) {
        let invocations =
            std::fs::read_to_string(self.path("state").join("invocations.log")).unwrap_or_default();
        assert!(
            !invocations.contains(r#""snapshot""#),
            "nodetool snapshot ran:\n{invocations}"
        );
        assert!(
            self.cassandra_snapshots().is_empty(),
            "{:?}",
            self.cassandra_snapshots()
        );
        let changes: Vec<_> = self
            .es_requests()
            .into_iter()
            .filter(|r| r["method"] == "PUT" || r["method"] == "DELETE")
            .collect();
        assert!(changes.is_empty(), "Elasticsearch was changed: {changes:?}");
    }

    /// Snapshot folders left in the Cassandra data folder.
    pub fn cassandra_snapshots(&self) -> Vec<PathBuf> {
        walk_dirs(&self.path("cassandra_data"))
            .into_iter()
            .filter(|p| {
                p.parent()
                    .is_some_and(|parent| parent.ends_with("snapshots"))
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(venv_bin("python"))
            .arg(repo_root().join("tests/sandbox/sandbox.py"))
            .arg("stop")
            .arg(self.sandbox())
            .output();
    }
}

pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

pub fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            if entry.file_type().unwrap().is_dir() {
                out.push(entry.path());
                out.extend(walk_dirs(&entry.path()));
            }
        }
    }
    out
}

pub use crate::support::{code, stderr};

/// Relative path -> content of every file under `root`.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(root)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(root).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// `tar tf ARCHIVE` (`tar tvf` when `verbose`): GNU tar's listing, which must
/// succeed.
pub fn gnu_tar_list(archive: &Path, verbose: bool) -> String {
    let out = Command::new("tar")
        .arg(if verbose { "tvf" } else { "tf" })
        .arg(archive)
        .output()
        .expect("GNU tar runs");
    assert!(
        out.status.success(),
        "GNU tar cannot list {}: {}",
        archive.display(),
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn gnu_tar_extract(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let out = Command::new("tar")
        .arg("xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "GNU tar cannot extract {}: {}",
        archive.display(),
        stderr(&out)
    );
}

/// The STAMP of the only file matching `prefix*suffix` in `folder`.
pub fn only_stamp(folder: &Path, prefix: &str, suffix: &str) -> String {
    let names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(suffix))
        .collect();
    assert_eq!(
        names.len(),
        1,
        "expected one {prefix}*{suffix} in {}: {names:?}",
        folder.display()
    );
    names[0][prefix.len()..names[0].len() - suffix.len()].to_string()
}

pub fn assert_failed_cleanly(cluster: &Cluster, out: &Output, reason: &str) {
    let err = stderr(out);
    assert_eq!(code(out), 1, "{err}");
    assert!(err.contains(reason), "expected `{reason}` in:\n{err}");
    assert_no_set_left(cluster);
}

impl Ran {
    /// [`assert_failed_cleanly`] as a check of a finished run: exit 1,
    /// `reason` in stderr, and nothing left that could pass for a set.
    #[track_caller]
    pub fn failed_cleanly(self, cluster: &Cluster, reason: &str) -> Ran {
        let ran = self.failure(1).stderr_contains(reason);
        assert_no_set_left(cluster);
        ran
    }
}

/// A failed run left no marker, manifest or partial file in the backup
/// folder, and no Cassandra snapshot.
#[track_caller]
pub fn assert_no_set_left(cluster: &Cluster) {
    let files = cluster.backup_files();
    assert!(
        !files.iter().any(|f| f.ends_with(".info")),
        "a failed run left a marker: {files:?}"
    );
    assert!(
        !files.iter().any(|f| f.starts_with("backup_")),
        "a failed run left a manifest: {files:?}"
    );
    assert!(
        !files.iter().any(|f| f.ends_with(".partial")),
        "a failed run left a partial file: {files:?}"
    );
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "Cassandra snapshot left: {:?}",
        cluster.cassandra_snapshots()
    );
}
