//! The stock backup workflow against a real OpenSearch 2.19 node (installed from
//! Maven Central by tests/setup-real-servers.sh) together with a real Cassandra
//! 4.1 node without authentication and an S3 bucket (`tests/sandbox/sandbox.py
//! start --real --storage s3`): OpenSearch's answers and failures, and issue
//! 13's proof without `--cql-auth` for storage `local` and `s3` (backup, wipe,
//! the whole restore plan, equal digests; tests/support/restore_proof.rs).
//! One sandbox serves every test of this binary: it is started by the first test
//! and stopped when the test process exits (`SharedCluster`).
//! Servers that cannot be installed or started fail the tests with the reason.

use runbook_test_support::{Ran, SharedCluster, cluster, restore_proof};

use std::process::Command;
use std::sync::MutexGuard;

use cluster::*;
use restore_proof::{curl, snapshot_names};
use serde_json::Value;

/// The shared node, started on first use: tests change its index and
/// snapshots, so they take turns.
static NODE: SharedCluster = SharedCluster::real_servers(|| {
    ["--real", "--storage", "s3", "--es-docs", "500"]
        .map(String::from)
        .into()
});

/// The node (started on first use) and this test's turn on it.
fn node() -> (&'static Cluster, MutexGuard<'static, ()>) {
    NODE.take()
}

fn digest(cluster: &Cluster) -> Value {
    cluster.digest_of(&[])
}

/// The backup folder's files, leaving out the snapshot repository's own files
/// (the fs repository lives in `backup/elasticsearch/`, next to the markers, and
/// OpenSearch rewrites its `index-N` files on every snapshot or deletion).
fn backup_files(cluster: &Cluster) -> Vec<String> {
    cluster
        .backup_files()
        .into_iter()
        .filter(|path| !path.starts_with("elasticsearch/") || path.ends_with(".info"))
        .collect()
}

/// What a failed run must leave: no new snapshot, marker, archive or manifest,
/// no Cassandra snapshot folder.
fn assert_nothing_left(cluster: &Cluster, snapshots_before: &[String], files_before: &[String]) {
    assert_eq!(snapshot_names(cluster), snapshots_before);
    assert_eq!(backup_files(cluster), files_before);
    assert_eq!(
        cluster.cassandra_snapshots(),
        Vec::<std::path::PathBuf>::new()
    );
}

/// TheHive's guide scripts grep the raw answers: the real node answers compact
/// JSON (the stand-in is held to the same text in es_steps.rs).
#[test]
fn real_opensearch_answers_the_compact_json_the_guide_scripts_grep() {
    let (cluster, _turn) = node();
    let url = cluster.es_url();
    let location = cluster.path("es_archive").join("grep-check");
    let (status, body) = curl(&[
        "-X",
        "PUT",
        &format!("{url}/_snapshot/grep_check"),
        "-d",
        &format!(
            r#"{{"type":"fs","settings":{{"location":"{}"}}}}"#,
            location.display()
        ),
    ]);
    assert_eq!((status, body.as_str()), (200, r#"{"acknowledged":true}"#));
    let (status, body) = curl(&[
        "-X",
        "PUT",
        &format!("{url}/_snapshot/grep_check/s1"),
        "-d",
        r#"{"indices":"thehive_global","ignore_unavailable":true,"include_global_state":false}"#,
    ]);
    assert_eq!((status, body.as_str()), (200, r#"{"accepted":true}"#));
    // Deleting waits for the running snapshot to end; then the repository goes.
    let (status, body) = curl(&["-X", "DELETE", &format!("{url}/_snapshot/grep_check/s1")]);
    assert_eq!((status, body.as_str()), (200, r#"{"acknowledged":true}"#));
    let (status, body) = curl(&["-X", "DELETE", &format!("{url}/_snapshot/grep_check")]);
    assert_eq!((status, body.as_str()), (200, r#"{"acknowledged":true}"#));
}

/// The backup, then the restore plan's Elasticsearch commands run exactly as
/// printed: the index comes back with every shard and the same documents.
#[test]
fn a_backup_restores_into_real_opensearch_with_an_equal_digest() {
    let (cluster, _turn) = node();
    let before = digest(cluster);
    assert_eq!(
        before["indices"]["thehive_global"]["documents"], 500,
        "{before}"
    );

    cluster
        .runbook(&["run", "cluster-hot-backup"])
        .run()
        .success();

    let staging = cluster.dir.path().join("staging");
    let backup = cluster.path("backup");
    cluster
        .restore_prep_run(&[
            ("manifest_path", backup.display().to_string()),
            (
                "cassandra_archive_path",
                cluster.path("cassandra_archive").display().to_string(),
            ),
            (
                "elasticsearch_archive_path",
                cluster.path("es_archive").display().to_string(),
            ),
            (
                "storage_archive_path",
                cluster.path("storage_archive").display().to_string(),
            ),
            (
                "attachment_folder",
                cluster.path("attachments").display().to_string(),
            ),
            ("elasticsearch_url", cluster.es_url()),
            ("staging", staging.display().to_string()),
        ])
        .success();
    let plan_file = walk(&staging)
        .into_iter()
        .find(|p| p.ends_with("restore-plan.sh"))
        .expect("restore-prep wrote restore-plan.sh");
    let plan = std::fs::read_to_string(&plan_file).unwrap();
    let es_lines: Vec<&str> = plan
        .lines()
        .skip_while(|line| !line.starts_with("# 2. Elasticsearch"))
        .skip(1)
        .take_while(|line| line.starts_with("curl"))
        .collect();
    assert_eq!(es_lines.len(), 2, "the plan's Elasticsearch part:\n{plan}");

    let run_line = |line: &str| {
        // Exactly as printed; curl's progress meter goes to stderr.
        let out = Command::new("bash").args(["-c", line]).output().unwrap();
        assert!(out.status.success(), "{line}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        run_line(es_lines[0]),
        r#"{"acknowledged":true}"#,
        "{}",
        es_lines[0]
    );
    let restored: Value =
        serde_json::from_str(&run_line(es_lines[1])).expect("restore answers JSON");
    let shards = &restored["snapshot"]["shards"];
    assert!(shards["total"].as_u64().unwrap() > 0, "{restored}");
    assert_eq!(shards["failed"], 0, "{restored}");
    assert_eq!(shards["successful"], shards["total"], "{restored}");
    assert_eq!(digest(cluster), before);
}

/// Runs the stock backup with `--set SETTING`, which must fail (exit 1)
/// leaving nothing ([`assert_nothing_left`]); the run, to check its output.
#[track_caller]
fn backup_fails_leaving_nothing(cluster: &Cluster, setting: &str) -> Ran {
    let snapshots = snapshot_names(cluster);
    let files = backup_files(cluster);
    let ran = cluster
        .runbook(&["run", "cluster-hot-backup", "--set", setting])
        .run()
        .failure(1);
    assert_nothing_left(cluster, &snapshots, &files);
    ran
}

/// The repository is not registered: pre-flight says so, nothing is snapshotted.
#[test]
fn an_unregistered_repository_fails_preflight_with_nothing_snapshotted() {
    let (cluster, _turn) = node();
    backup_fails_leaving_nothing(cluster, "elasticsearch_repository=not_registered")
        .stderr_contains(&format!(
            "the Elasticsearch snapshot repository \"not_registered\" is not registered at {}",
            cluster.es_url()
        ));
}

/// A named index that does not exist: pre-flight says which config key to fix,
/// before anything is snapshotted (with ignore_unavailable the real node would
/// otherwise take a SUCCESS snapshot holding nothing).
#[test]
fn a_missing_index_fails_preflight_with_nothing_snapshotted() {
    let (cluster, _turn) = node();
    backup_fails_leaving_nothing(cluster, "elasticsearch_indices=no_such_index")
        .stderr_contains(&format!(
            "the Elasticsearch index \"no_such_index\" does not exist at {}: fix the config key elasticsearch_indices",
            cluster.es_url()
        ));
}

/// A pattern that matches no index: the real node's snapshot ends SUCCESS with
/// no index and 0 shards; the run fails and deletes that snapshot.
#[test]
fn a_snapshot_holding_no_index_fails_the_run_and_is_deleted() {
    let (cluster, _turn) = node();
    backup_fails_leaving_nothing(cluster, "elasticsearch_indices=nomatch*")
        .stderr_contains(
            "holds no index (0 shards): \"nomatch*\" (elasticsearch_indices) matches no index",
        )
        .stderr_contains("delete Elasticsearch snapshot elasticsearch_");
}

/// `status` sees the node healthy; `digest` is stable for the same documents and
/// changes when one document changes.
#[test]
fn status_answers_and_the_digest_follows_the_documents() {
    let (cluster, _turn) = node();
    let status = cluster.sandbox_py("status", &[]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let report: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(report["healthy"], true, "{report}");

    let first = digest(cluster);
    assert_eq!(digest(cluster), first);
    let doc = format!("{}/thehive_global/_doc/doc-000001", cluster.es_url());
    let (code_get, original) = curl(&[&format!(
        "{}/thehive_global/_source/doc-000001",
        cluster.es_url()
    )]);
    assert_eq!(code_get, 200, "{original}");
    let (code_put, answer) = curl(&[
        "-X",
        "PUT",
        &format!("{doc}?refresh=true"),
        "-d",
        r#"{"title":"changed"}"#,
    ]);
    assert_eq!(code_put, 200, "{answer}");
    let changed = digest(cluster);
    let (code_back, answer) = curl(&["-X", "PUT", &format!("{doc}?refresh=true"), "-d", &original]);
    assert_eq!(code_back, 200, "{answer}");
    assert_ne!(changed, first);
    assert_eq!(
        changed["indices"]["thehive_global"]["documents"],
        first["indices"]["thehive_global"]["documents"]
    );
    assert_eq!(digest(cluster), first, "the original document put back");
}

/// `stop` ends the JVM and leaves no process of its group (a node of its own,
/// so the shared one is not disturbed).
#[test]
fn stop_leaves_no_opensearch_process() {
    let cluster = Cluster::start(&["--es", "opensearch", "--es-docs", "0"]);
    let node = cluster.record["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "elasticsearch")
        .expect("the node is recorded")
        .clone();
    assert!(node["start_seconds"].as_f64().unwrap() > 0.0, "{node}");
    assert!(node["rss_kib"].as_u64().unwrap() > 0, "{node}");
    let group = node["pgid"].as_i64().unwrap();
    let out = cluster.sandbox_py("stop", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            fields[2].parse::<i64>().ok() == Some(group) && !matches!(fields[0], "Z" | "X")
        })
        .collect();
    assert!(left.is_empty(), "left after stop: {left:?}");
    let (status, _) = curl(&["-m", "2", &format!("{}/", node["url"].as_str().unwrap())]);
    assert_eq!(status, 0, "nothing answers at the node's address any more");
}

/// The stock backup with attachments from `storage`; the stamp of the set made.
fn backup(cluster: &Cluster, storage: restore_proof::Storage) -> String {
    let before = restore_proof::set_stamps(cluster);
    cluster
        .runbook(&[
            "run",
            "cluster-hot-backup",
            "--set",
            &format!("storage={}", storage.name()),
        ])
        .run()
        .success();
    let made: Vec<String> = restore_proof::set_stamps(cluster)
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(made.len(), 1, "one new backup set: {made:?}");
    made[0].clone()
}

/// Issue 13's proof, storage `local`, no Cassandra authentication: digest,
/// backup, wipe (keyspace, index, attachment folder), restore-prep, the whole
/// plan as printed, digest: equal.
#[test]
fn without_cql_auth_a_local_storage_backup_restores_to_an_equal_digest() {
    let (cluster, _turn) = node();
    let storage = restore_proof::Storage::Local;
    let (backup_s, restore_s) =
        restore_proof::backup_wipe_restore_compare(cluster, storage, None, |cluster| {
            backup(cluster, storage)
        });
    eprintln!(
        "without cql auth, storage local: backup {backup_s:.1} s, restore plan {restore_s:.1} s"
    );
}

/// The same with storage `s3`: the bucket is emptied and put back by the plan.
#[test]
fn without_cql_auth_an_s3_storage_backup_restores_to_an_equal_digest() {
    let (cluster, _turn) = node();
    let storage = restore_proof::Storage::S3;
    let (backup_s, restore_s) =
        restore_proof::backup_wipe_restore_compare(cluster, storage, None, |cluster| {
            backup(cluster, storage)
        });
    eprintln!(
        "without cql auth, storage s3: backup {backup_s:.1} s, restore plan {restore_s:.1} s"
    );
}
