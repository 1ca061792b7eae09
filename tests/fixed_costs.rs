//! The stock backup's fixed costs (issue 16): fewer JVM and cqlsh starts on
//! its critical path, with every check and guarantee kept. The real `runbook`
//! binary runs the stock workflow against the local sandbox (stand-in
//! `nodetool`/`cqlsh`, whose invocation log shows every call).

use runbook_test_support::{cluster, support};

use cluster::*;
use support::assert_contains;

/// The stand-ins' invocations, one argv per call.
fn invocations(cluster: &Cluster) -> Vec<Vec<String>> {
    std::fs::read_to_string(cluster.path("state").join("invocations.log"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["argv"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn the_manifest_records_the_cassandra_version_read_by_cqlsh_without_nodetool_version() {
    let cluster = Cluster::start(&[]);
    // A version no default has: it can only come from the server's answer.
    let out = cluster
        .command(&["run", "cluster-hot-backup"])
        .env("SANDBOX_RELEASE_VERSION", "4.1.7")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let backup = cluster.path("backup");
    let stamp = only_stamp(&backup, "backup_", ".json");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(backup.join(format!("backup_{stamp}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["cassandra"]["version"], "4.1.7", "{manifest:#}");

    let calls = invocations(&cluster);
    assert!(
        !calls
            .iter()
            .any(|argv| argv[0] == "nodetool" && argv.iter().any(|a| a == "version")),
        "nodetool version ran: {calls:?}"
    );
    // The version came with the schema read after the snapshot: one cqlsh
    // process for both statements.
    let both: Vec<_> = calls
        .iter()
        .filter(|argv| {
            argv[0] == "cqlsh"
                && argv.iter().any(|a| {
                    a.contains("DESCRIBE KEYSPACE thehive")
                        && a.contains("SELECT release_version FROM system.local")
                })
        })
        .collect();
    assert_eq!(both.len(), 1, "{calls:?}");
    // JVM and cqlsh starts of the whole backup: nodetool status and snapshot
    // and clearsnapshot, the pre-flight's cqlsh and the schema's.
    let nodetool: Vec<&str> = calls
        .iter()
        .filter(|argv| argv[0] == "nodetool")
        .map(|argv| argv[1].as_str())
        .collect();
    assert_eq!(
        nodetool,
        ["status", "snapshot", "clearsnapshot"],
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|argv| argv[0] == "cqlsh").count(),
        2,
        "{calls:?}"
    );
}

#[test]
fn the_preflight_checks_run_side_by_side_and_the_first_failing_one_is_reported_as_before() {
    let cluster = Cluster::start(&[]);
    // Cassandra down: both the nodetool and the cqlsh check fail.
    cluster.knob("nodetool-unreachable", "");
    cluster.knob("cqlsh-unreachable", "");
    let out = cluster.run(&["run", "cluster-hot-backup"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    // The line of the check that came first when they ran one after the
    // other, alone, as before (not a "2 of 3 branches failed" list).
    assert_contains(&err, "error: step exec (nodetool status) failed:");
    assert!(!err.contains("branch"), "{err}");
    assert!(!err.contains("cqlsh cannot read keyspace"), "{err}");
    // Both checks ran (side by side: the cqlsh check did not wait for the
    // nodetool one to succeed), and nothing was snapshotted.
    let calls = invocations(&cluster);
    assert!(
        calls
            .iter()
            .any(|argv| argv[0] == "nodetool" && argv[1] == "status"),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|argv| argv[0] == "cqlsh"),
        "the cqlsh check did not run beside the nodetool one: {calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|argv| argv.iter().any(|a| a == "snapshot")),
        "{calls:?}"
    );
    cluster.assert_nothing_snapshotted();
}

#[test]
fn a_failing_cqlsh_check_alone_still_fails_with_its_own_line_before_anything_changes() {
    let cluster = Cluster::start(&[]);
    cluster.knob("cqlsh-unreachable", "");
    let out = cluster.run(&["run", "cluster-hot-backup"]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert_contains(
        &err,
        "error: cqlsh cannot read keyspace thehive (check cassandra_user and CASSANDRA_PASSWORD, cassandra_connection, cqlsh)",
    );
    assert!(!err.contains("branch"), "{err}");
    assert!(cluster.cassandra_snapshots().is_empty());
    assert!(
        cluster.backup_files().is_empty(),
        "{:?}",
        cluster.backup_files()
    );
}

#[test]
fn the_cassandra_snapshot_is_cleared_once_its_archive_is_written_not_after_its_verification() {
    let cluster = Cluster::start(&["--cassandra-mb", "20"]);
    let out = cluster.run(&["run", "cluster-hot-backup"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let journal = cluster.only_journal();
    let (_, archive_end) = step_span(&journal, "cassandra archive");
    let (clear_start, _) = step_span(&journal, "clear Cassandra snapshot cassandra_");
    let (verify_start, _) = step_span(&journal, "verify cassandra archive");
    // The snapshot's files are read by the archive only: cleared after it
    // was written (and fsynced), and started beside the verification, not
    // after it.
    assert!(
        clear_start >= archive_end,
        "the snapshot was cleared while it was archived: {journal:#}"
    );
    assert!(verify_start >= archive_end, "{journal:#}");
    // Once, as a step of the branch (its undo was dismissed): no second
    // clearsnapshot as a cleanup.
    let clears = invocations(&cluster)
        .into_iter()
        .filter(|argv| argv[0] == "nodetool" && argv[1] == "clearsnapshot")
        .count();
    assert_eq!(clears, 1);
    assert!(cluster.cassandra_snapshots().is_empty());
}

#[test]
fn a_cqlsh_that_prints_no_release_version_fails_the_backup_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::start(&[]);
    // A cqlsh answering DESCRIBE but dropping the query's table: the
    // manifest could not record the version the set was made with.
    let standin = support::repo_root().join("tests/sandbox/bin/cqlsh");
    let wrapper = cluster.dir.path().join("cqlsh-without-version");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n'{}' \"$@\" | sed '/^ release_version$/,$d'\n",
            standin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cqlsh = format!("cqlsh={}", wrapper.display());
    let out = cluster.run(&["run", "cluster-hot-backup", "--set", &cqlsh]);
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert_contains(
        &err,
        "error: cqlsh printed no release_version from system.local",
    );
    // The run's undo cleared the snapshot and removed what it wrote.
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "{:?}",
        cluster.cassandra_snapshots()
    );
    assert!(
        !cluster.backup_files().iter().any(|f| f.contains(".tar")
            || f.ends_with(".json")
            || f.ends_with(".info")
            || f.ends_with(".cql")),
        "{:?}",
        cluster.backup_files()
    );
}
