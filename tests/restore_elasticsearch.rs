//! The Elasticsearch part of `cluster-hot-restore` (workflows/lib/restore_elasticsearch.rhai)
//! on a real OpenSearch 2.19 node (`sandbox.py start --cassandra standin --es opensearch`):
//! a set made by the stock backup is restored over changed documents and the
//! digest equals the backup-time one; a restore answering with failed shards
//! (an index whose snapshotted settings cannot be allocated: the real node
//! answers HTTP 200 with `failed: 1`), a failure after the restore, SIGTERM
//! during the restore and SIGKILL + `runbook recover` all put the index back
//! from the safety snapshot; a snapshot missing from the repository is
//! refused before anything changes; `plan` changes nothing.
//!
//! The lib is taken from `runbook init` (the stock files embedded in the
//! binary, so its STOCK_FILES registration is tested too), driven by a small
//! test workflow written beside it. One sandbox serves every test of this
//! binary (tests take turns; `SharedCluster`), stopped when the test process exits.

use runbook_test_support::{Ran, Running, SharedCluster, Test, cluster, restore_proof, support};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cluster::*;
use nix::sys::signal::Signal;
use restore_proof::{curl, set_stamps, snapshot_names};
use serde_json::Value;
use support::assert_contains;

/// The test workflow: the part's functions in the order cluster-hot-restore
/// calls them, with a failure injected after any of them (`fail_after`).
const TEST_WORKFLOW: &str = r#"// Test workflow: the Elasticsearch part of cluster-hot-restore alone.
import "lib/restore_elasticsearch" as elasticsearch;
let cfg = config(elasticsearch::config_defaults() + #{
    manifest_path: "", stamp: "", fail_after: "", discard_safety: "",
    skip_safety_copy: false, skip_restore: false,
});
if cfg.discard_safety != "" {
    elasticsearch::discard_safety(cfg, cfg.discard_safety);
    return;
}
let set = backup_manifest(cfg.manifest_path, cfg.stamp).manifest;
for line in elasticsearch::plan(cfg, set, ()) { log_info(`plan: ${line}`); }
let checked = elasticsearch::preflight(cfg, set, ());
log_info(`preflight: ${checked.to_json()}`);
let safety = if cfg.skip_safety_copy { #{ undo_ids: [] } } else { elasticsearch::safety_copy(cfg, set, set.stamp) };
log_info(`safety: ${safety.to_json()}`);
if cfg.fail_after == "safety_copy" { fail("test failure after safety_copy"); }
let restored = if cfg.skip_restore { #{ indices: ["thehive_global"] } } else { elasticsearch::restore(cfg, set, ()) };
log_info(`restored: ${restored.to_json()}`);
if cfg.fail_after == "restore" { fail("test failure after restore"); }
let counts = elasticsearch::verify(cfg, set, (), restored);
log_info(`verified: ${counts.to_json()}`);
if cfg.fail_after == "verify" { fail("test failure after verify"); }
for id in safety.undo_ids { dismiss(id); }
log_info("restore done");
"#;

/// The shared node, started on first use: tests change the index and the
/// repository, so they take turns.
static NODE: SharedCluster = SharedCluster::sandbox(|| {
    [
        "--cassandra",
        "standin",
        "--es",
        "opensearch",
        "--es-docs",
        "300",
    ]
    .map(String::from)
    .into()
});

/// The shared node and its test workflow's folder.
struct Fixture {
    cluster: &'static Cluster,
    workflow: PathBuf,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The fixture (the node and its test workflow, made on first use) and this
/// test's turn on the node.
fn fixture() -> (&'static Fixture, MutexGuard<'static, ()>) {
    let (cluster, turn) = NODE.take();
    let fixture = FIXTURE.get_or_init(|| {
        let folder = cluster.dir.path().join("workflows");
        // The journal folder init creates for the units: the test's own.
        Test::new()
            .arg("init")
            .arg(&folder)
            .env("RUNBOOK_JOURNAL_DIR", cluster.dir.path().join("journal"))
            .run()
            .success();
        assert!(
            folder.join("lib/restore_elasticsearch.rhai").is_file(),
            "runbook init wrote no lib/restore_elasticsearch.rhai: it is not in STOCK_FILES"
        );
        let workflow = folder.join("es-restore-test.rhai");
        std::fs::write(&workflow, TEST_WORKFLOW).unwrap();
        Fixture { cluster, workflow }
    });
    (fixture, turn)
}

/// A request that must answer 200; its JSON.
fn es(method: &str, cluster: &Cluster, path: &str, body: Option<&str>) -> Value {
    let url = format!("{}{path}", cluster.es_url());
    let mut args = vec!["-X", method, url.as_str()];
    if let Some(body) = body {
        args.extend(["-d", body]);
    }
    let (status, text) = curl(&args);
    assert!(
        status == 200 || status == 201,
        "{method} {path}: HTTP {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The ES part of `sandbox.py digest`: per index, its document count and a
/// hash of its sorted documents.
fn es_digest(cluster: &Cluster) -> Value {
    cluster.digest_of(&[])["indices"].clone()
}

/// The index's UUID: a new one means the index was deleted and made again.
fn index_uuid(cluster: &Cluster) -> String {
    let settings = es("GET", cluster, "/thehive_global/_settings", None);
    settings["thehive_global"]["settings"]["index"]["uuid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn health(cluster: &Cluster) -> String {
    es("GET", cluster, "/_cluster/health", None)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The stock backup (Cassandra stand-in, local attachments); the stamp of the set made.
fn backup(cluster: &Cluster) -> String {
    let before = set_stamps(cluster);
    // Two sets must not share a stamp (one per second).
    std::thread::sleep(Duration::from_millis(1100));
    cluster
        .runbook(&["run", "cluster-hot-backup"])
        .run()
        .success();
    let made: Vec<String> = set_stamps(cluster).difference(&before).cloned().collect();
    assert_eq!(made.len(), 1, "one new set: {made:?}");
    made[0].clone()
}

/// Keeps the live index aside in a snapshot of the test's own
/// (`test_keep_aside`), for a test that deletes or damages it.
fn keep_index_aside(cluster: &Cluster) {
    es(
        "PUT",
        cluster,
        "/_snapshot/thehive_repository/test_keep_aside?wait_for_completion=true",
        Some(r#"{"indices":"thehive_global","include_global_state":false}"#),
    );
}

/// Restores the index [`keep_index_aside`] kept (the index must be gone),
/// then drops that snapshot: the live index back for the next tests.
fn put_index_back(cluster: &Cluster) {
    es(
        "POST",
        cluster,
        "/_snapshot/thehive_repository/test_keep_aside/_restore?wait_for_completion=true",
        Some(r#"{"indices":"thehive_global","include_global_state":false}"#),
    );
    es(
        "DELETE",
        cluster,
        "/_snapshot/thehive_repository/test_keep_aside",
        None,
    );
}

/// Documents added, changed and deleted after the backup; each call touches
/// other documents (tests share the index, and an undo leaves it changed).
fn change_documents(cluster: &Cluster) {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    es(
        "PUT",
        cluster,
        &format!("/thehive_global/_doc/added-after-backup-{call}?refresh=true"),
        Some(r#"{"title":"added after the backup"}"#),
    );
    es(
        "PUT",
        cluster,
        "/thehive_global/_doc/doc-000001?refresh=true",
        Some(&format!(
            r#"{{"title":"changed after the backup ({call})"}}"#
        )),
    );
    es(
        "DELETE",
        cluster,
        &format!("/thehive_global/_doc/doc-{:06}?refresh=true", 100 + call),
        None,
    );
}

/// `runbook run|plan` of the test workflow for set `stamp` (its journal in
/// the cluster's folder).
fn restore_command(fixture: &Fixture, verb: &str, stamp: &str, extra: &[&str]) -> Test {
    let cluster = fixture.cluster;
    let mut test = Test::at(cluster.dir.path())
        .arg(verb)
        .arg(&fixture.workflow)
        .arg("--set")
        .arg(format!(
            "manifest_path={}",
            cluster.path("backup").display()
        ))
        .arg("--set")
        .arg(format!("elasticsearch_url={}", cluster.es_url()))
        .args(["--set", "elasticsearch_poll=1s", "--set"])
        .arg(format!("stamp={stamp}"));
    for setting in extra {
        test = test.args(["--set", setting]);
    }
    test
}

fn restore(fixture: &Fixture, stamp: &str, extra: &[&str]) -> Ran {
    restore_command(fixture, "run", stamp, extra).run()
}

/// Drops the safety snapshot of set `stamp` (what the admin does when satisfied).
fn discard_safety(fixture: &Fixture, stamp: &str) -> Ran {
    restore(fixture, "", &[&format!("discard_safety={stamp}")]).success()
}

/// Round trip: backup, change documents, restore: the digest equals the
/// backup-time one, verify returns the count, the safety snapshot stays until
/// discard_safety (idempotent).
#[test]
fn a_set_restores_over_changed_documents_to_the_backup_time_digest() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let at_backup = es_digest(cluster);
    let stamp = backup(cluster);
    change_documents(cluster);
    let changed = es_digest(cluster);
    assert_ne!(changed, at_backup);
    assert_eq!(changed["thehive_global"]["documents"], 300);

    let started = Instant::now();
    let out = restore(fixture, &stamp, &[]);
    let seconds = started.elapsed().as_secs_f64();
    let out = out.success();
    let err = &out.stderr;
    eprintln!("safety copy + restore + verify of 300 documents: {seconds:.1} s");
    assert_eq!(es_digest(cluster), at_backup);
    assert_contains(
        err,
        r#"verified: {"documents":{"thehive_global":300},"total":300}"#,
    );
    assert_contains(
        err,
        "restored thehive_global from thehive_repository:elasticsearch_",
    );
    // The plan: safety snapshot, delete, restore with its jq check.
    assert_contains(
        err,
        &format!("plan: curl -X DELETE {}/thehive_global", cluster.es_url()),
    );
    assert_contains(
        err,
        r#"| jq -nec 'input | if (.snapshot.shards | .total > 0 and .failed == 0 and .successful == .total) then . else error("the restore did not bring back every shard: \(tojson)") end'"#,
    );
    let safety = format!("pre_restore_{stamp}");
    assert!(snapshot_names(cluster).contains(&safety));

    discard_safety(fixture, &stamp)
        .stderr_contains(&format!("Elasticsearch safety snapshot {safety} deleted"));
    assert!(!snapshot_names(cluster).contains(&safety));
    discard_safety(fixture, &stamp).stderr_contains("(already dropped)");
}

/// The set's snapshot holds the index with settings no node satisfies: the
/// real node answers the restore with HTTP 200 and 0 of 1 shards (the index
/// red). The run fails naming the numbers, and the undo deletes the red index
/// and restores the safety snapshot: the index is as before, green.
#[test]
fn a_restore_with_failed_shards_puts_the_index_back_and_exits_1() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let nowhere = r#"{"index.routing.allocation.require._name":"no_such_node"}"#;
    es("PUT", cluster, "/thehive_global/_settings", Some(nowhere));
    let stamp = backup(cluster);
    es(
        "PUT",
        cluster,
        "/thehive_global/_settings",
        Some(r#"{"index.routing.allocation.require._name":null}"#),
    );
    change_documents(cluster);
    let before = es_digest(cluster);

    let out = restore(fixture, &stamp, &[]).failure(1);
    let err = &out.stderr;
    assert_contains(
        err,
        &format!(
            "the restore of thehive_global from thehive_repository:elasticsearch_{stamp} brought back 0 of 1 shards (1 failed)"
        ),
    );
    assert_contains(
        err,
        &format!(
            "put back: Elasticsearch indices thehive_global from safety snapshot pre_restore_{stamp}: undoing"
        ),
    );
    assert_contains(
        err,
        &format!(
            "restored thehive_global from thehive_repository:pre_restore_{stamp}: 1 of 1 shards"
        ),
    );
    assert_eq!(es_digest(cluster), before);
    assert_eq!(health(cluster), "green");
    let settings = es("GET", cluster, "/thehive_global/_settings", None);
    assert!(
        settings
            .pointer("/thehive_global/settings/index/routing")
            .is_none(),
        "the index put back has the live index's settings: {settings}"
    );
    discard_safety(fixture, &stamp);
}

/// A failure after the restore and its verification (in another part, say)
/// puts the index back: the digest is the pre-restore one.
#[test]
fn a_failure_after_the_restore_puts_the_index_back() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let stamp = backup(cluster);
    change_documents(cluster);
    let before = es_digest(cluster);
    let out = restore(fixture, &stamp, &["fail_after=verify"]).failure(1);
    let err = &out.stderr;
    assert_contains(err, "test failure after verify");
    assert_contains(err, r#"verified: {"documents":{"thehive_global":300}"#);
    assert_contains(
        err,
        "put back: Elasticsearch indices thehive_global from safety snapshot",
    );
    assert_eq!(es_digest(cluster), before);
    discard_safety(fixture, &stamp);
}

/// A failure after the safety copy but before the restore (another part's
/// restore failing first, say): the undo finds the index untouched (same UUID)
/// and deletes nothing.
#[test]
fn a_failure_before_the_restore_leaves_the_index_untouched() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let stamp = backup(cluster);
    change_documents(cluster);
    let before = es_digest(cluster);
    let uuid = index_uuid(cluster);
    let out = restore(fixture, &stamp, &["fail_after=safety_copy"]).failure(1);
    let err = &out.stderr;
    assert_contains(err, "test failure after safety_copy");
    assert_contains(
        err,
        "indices thehive_global are as they were (same UUIDs): nothing to delete or restore",
    );
    assert_eq!(index_uuid(cluster), uuid);
    assert_eq!(es_digest(cluster), before);
    discard_safety(fixture, &stamp);
}

/// An index the set holds that did not exist before the restore does not
/// exist after the undo.
#[test]
fn an_index_that_did_not_exist_is_gone_after_the_undo() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let stamp = backup(cluster);
    let before = es_digest(cluster);
    // Keep the live index aside (a snapshot of our own), then delete it.
    keep_index_aside(cluster);
    es("DELETE", cluster, "/thehive_global", None);
    let out = restore(fixture, &stamp, &["fail_after=restore"]).failure(1);
    let err = &out.stderr;
    assert_contains(err, "no safety snapshot needed");
    assert_contains(
        err,
        "put back: delete Elasticsearch indices thehive_global (none existed before the restore): undoing",
    );
    let (status, body) = curl(&[&format!("{}/thehive_global", cluster.es_url())]);
    assert_eq!(status, 404, "the index the restore created is gone: {body}");
    assert!(!snapshot_names(cluster).contains(&format!("pre_restore_{stamp}")));
    // The live index back for the next tests.
    put_index_back(cluster);
    assert_eq!(es_digest(cluster), before);
}

/// The set's snapshot is gone from the repository: refused in pre-flight,
/// nothing changed (same index, no safety snapshot).
#[test]
fn a_snapshot_missing_from_the_repository_is_refused_before_anything_changes() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let stamp = backup(cluster);
    es(
        "DELETE",
        cluster,
        &format!("/_snapshot/thehive_repository/elasticsearch_{stamp}"),
        None,
    );
    change_documents(cluster);
    let before = es_digest(cluster);
    let uuid = index_uuid(cluster);
    let snapshots = snapshot_names(cluster);
    let out = restore(fixture, &stamp, &[]).failure(1);
    let err = &out.stderr;
    assert_contains(
        err,
        &format!(
            "Elasticsearch snapshot elasticsearch_{stamp} of set {stamp} is not in repository thehive_repository at {}: the set cannot be restored (nothing was changed)",
            cluster.es_url()
        ),
    );
    assert_eq!(index_uuid(cluster), uuid);
    assert_eq!(snapshot_names(cluster), snapshots);
    assert_eq!(es_digest(cluster), before);
}

/// The plan's lines (what restore-prep prints), run one by one with bash
/// exactly as printed, restore the set too; the jq check fails a restore that
/// did not bring back every shard.
#[test]
fn the_plan_lines_run_as_printed_restore_the_set() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let at_backup = es_digest(cluster);
    let stamp = backup(cluster);
    change_documents(cluster);
    let out = restore_command(fixture, "plan", &stamp, &[])
        .run()
        .success();
    let err = &out.stderr;
    let lines: Vec<String> = err
        .lines()
        .filter_map(|line| line.split_once(" INFO plan: ").map(|(_, l)| l.to_string()))
        .collect();
    let commands: Vec<&String> = lines.iter().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        commands.len(),
        3,
        "safety snapshot, delete, restore: {lines:?}"
    );
    for command in &commands {
        let run = Command::new("bash")
            .args(["-o", "pipefail", "-c", command])
            .output()
            .unwrap();
        assert!(run.status.success(), "{command}: {}", stderr(&run));
    }
    assert_eq!(es_digest(cluster), at_backup);
    discard_safety(fixture, &stamp);

    // The same restore of a snapshot whose shards cannot be allocated: jq fails.
    keep_index_aside(cluster);
    es(
        "PUT",
        cluster,
        "/thehive_global/_settings",
        Some(r#"{"index.routing.allocation.require._name":"no_such_node"}"#),
    );
    let bad = backup(cluster);
    es("DELETE", cluster, "/thehive_global", None);
    let out = restore_command(fixture, "plan", &bad, &[]).run();
    let restore_line = out
        .stderr
        .lines()
        .find_map(|line| {
            line.split_once(" INFO plan: ")
                .map(|(_, l)| l.to_string())
                .filter(|l| l.contains("/_restore?"))
        })
        .expect("the plan has a restore line");
    let run = Command::new("bash")
        .args(["-o", "pipefail", "-c", &restore_line])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(5), "jq fails: {}", stderr(&run));
    assert_contains(
        &stderr(&run),
        r#"the restore did not bring back every shard: {"snapshot""#,
    );
    es("DELETE", cluster, "/thehive_global", None);
    put_index_back(cluster);
    assert_eq!(es_digest(cluster), at_backup);
}

/// Refusals in pre-flight, each before anything changes (same index, same
/// snapshots): the safety snapshot of an earlier restore of the set is still
/// there; the cluster is red; the set's repository is read-only (no safety
/// snapshot possible) or not registered.
#[test]
fn preflight_refusals_change_nothing() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let stamp = backup(cluster);
    change_documents(cluster);
    let before = es_digest(cluster);
    let uuid = index_uuid(cluster);
    // The digest reads every index: a red one would hang it, so it is
    // compared once the refusal's cause is gone.
    let refused = |reason: &str| {
        let snapshots = snapshot_names(cluster);
        let out = restore(fixture, &stamp, &[]).failure(1);
        let err = &out.stderr;
        assert_contains(err, reason);
        assert_eq!(index_uuid(cluster), uuid);
        assert_eq!(snapshot_names(cluster), snapshots);
    };

    let safety = format!("pre_restore_{stamp}");
    es(
        "PUT",
        cluster,
        &format!("/_snapshot/thehive_repository/{safety}?wait_for_completion=true"),
        Some(r#"{"indices":"thehive_global","include_global_state":false}"#),
    );
    refused(&format!(
        "an Elasticsearch snapshot {safety} is already in repository thehive_repository: the safety copy of an earlier restore of set {stamp}. \
             Check the live index, then drop it with: runbook run cluster-hot-restore --set discard_safety={stamp}"
    ));
    discard_safety(fixture, &stamp);
    assert_eq!(es_digest(cluster), before);

    es(
        "PUT",
        cluster,
        "/test_red_index",
        Some(
            r#"{"settings":{"index.number_of_replicas":0,"index.routing.allocation.require._name":"no_such_node"}}"#,
        ),
    );
    refused(&format!(
        "Elasticsearch cluster at {} is not ready for a restore: cluster health at {}/_cluster/health is red",
        cluster.es_url(),
        cluster.es_url()
    ));
    es("DELETE", cluster, "/test_red_index", None);
    assert_eq!(es_digest(cluster), before);

    repository_settings(cluster, r#","readonly":true"#);
    refused(
        "the Elasticsearch snapshot repository \"thehive_repository\" is registered read-only at ",
    );
    repository_settings(cluster, "");

    es("DELETE", cluster, "/_snapshot/thehive_repository", None);
    let out = restore(fixture, &stamp, &[]);
    repository_settings(cluster, "");
    let out = out.failure(1);
    let err = &out.stderr;
    assert_contains(
        err,
        &format!(
            "the Elasticsearch snapshot repository \"thehive_repository\" of set {stamp} is not registered at {}",
            cluster.es_url()
        ),
    );
    assert_eq!(index_uuid(cluster), uuid);
    assert_eq!(es_digest(cluster), before);
}

/// The lib's own guards: restore() never deletes a live index that no
/// SUCCESS safety snapshot holds (called without safety_copy), and verify()
/// fails when the live index was not recovered from the set's snapshot.
#[test]
fn restore_needs_the_safety_copy_and_verify_needs_the_sets_snapshot() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let stamp = backup(cluster);
    let uuid = index_uuid(cluster);
    let out = restore(fixture, &stamp, &["skip_safety_copy=true"]).failure(1);
    let err = &out.stderr;
    assert_contains(
        err,
        &format!(
            "refusing to delete the live Elasticsearch index thehive_global: no SUCCESS safety snapshot pre_restore_{stamp} in repository thehive_repository holds it (take the safety copy first)"
        ),
    );
    assert_eq!(index_uuid(cluster), uuid);

    // The live index came from the sandbox's bulk load or another snapshot, not this set's.
    let out = restore(fixture, &stamp, &["skip_restore=true"]).failure(1);
    let err = &out.stderr;
    assert_contains(
        err,
        &format!(
            "the Elasticsearch indices are not exactly snapshot elasticsearch_{stamp}: thehive_global shard 0 "
        ),
    );
    assert_contains(
        err,
        "put back: Elasticsearch indices thehive_global from safety snapshot",
    );
    assert_eq!(es_digest(cluster)["thehive_global"]["documents"], 300);
    discard_safety(fixture, &stamp);
}

/// `runbook plan` probes, prints the plan, and changes nothing.
#[test]
fn plan_changes_nothing() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let stamp = backup(cluster);
    change_documents(cluster);
    let before = es_digest(cluster);
    let uuid = index_uuid(cluster);
    let snapshots = snapshot_names(cluster);
    let out = restore_command(fixture, "plan", &stamp, &[])
        .run()
        .success();
    let err = &out.stderr;
    assert_contains(err, "plan: curl -X DELETE");
    assert_contains(err, "[dry-run]");
    assert_eq!(index_uuid(cluster), uuid);
    assert_eq!(snapshot_names(cluster), snapshots);
    assert_eq!(es_digest(cluster), before);
}

/// The repository throttled so a restore of the index takes seconds.
struct Throttled<'a>(&'a Cluster);

impl<'a> Throttled<'a> {
    fn new(cluster: &'a Cluster) -> Self {
        repository_settings(cluster, r#","max_restore_bytes_per_sec":"20kb""#);
        Throttled(cluster)
    }
}

impl Drop for Throttled<'_> {
    fn drop(&mut self) {
        // No assertion here: a drop while a failed test unwinds must not panic.
        let location = self.0.path("es_archive");
        curl(&[
            "-X",
            "PUT",
            &format!("{}/_snapshot/thehive_repository", self.0.es_url()),
            "-d",
            &format!(
                r#"{{"type":"fs","settings":{{"location":"{}"}}}}"#,
                location.display()
            ),
        ]);
    }
}

fn repository_settings(cluster: &Cluster, extra: &str) {
    let location = cluster.path("es_archive");
    es(
        "PUT",
        cluster,
        "/_snapshot/thehive_repository",
        Some(&format!(
            r#"{{"type":"fs","settings":{{"location":"{}"{extra}}}}}"#,
            location.display()
        )),
    );
}

/// Starts the restore and returns once its `es_restore` step has started
/// (the deletion done, the restore running).
fn start_restore_and_wait_for_the_restore_step(fixture: &Fixture, stamp: &str) -> Running {
    let run = restore_command(fixture, "run", stamp, &[])
        .spawn()
        .wait_for_stderr("elasticsearch restore: deleted indices thehive_global");
    // The restore request is sent right after the deletion; let it run.
    std::thread::sleep(Duration::from_millis(1500));
    run
}

/// SIGTERM while the restore runs: the undo deletes the half-restored index and
/// restores the safety snapshot; exit 143, the index as before.
#[test]
fn sigterm_during_the_restore_puts_the_index_back() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let stamp = backup(cluster);
    change_documents(cluster);
    let before = es_digest(cluster);
    let throttled = Throttled::new(cluster);
    let run = start_restore_and_wait_for_the_restore_step(fixture, &stamp);
    let (status, _) = curl(&[&format!("{}/thehive_global/_count", cluster.es_url())]);
    assert_ne!(
        status, 200,
        "the restore is still running when the signal comes"
    );
    let ended = run.signal(Signal::SIGTERM).finish();
    drop(throttled);
    eprintln!("{}", ended.stderr);
    ended
        .failure(143)
        .stderr_contains("put back: Elasticsearch indices thehive_global from safety snapshot")
        .stderr_contains(&format!(
            "restored thehive_global from thehive_repository:pre_restore_{stamp}: 1 of 1 shards"
        ));
    assert_eq!(es_digest(cluster), before);
    discard_safety(fixture, &stamp);
}

/// SIGKILL while the restore runs (no cleanup at all): `runbook recover`
/// carries out the journaled undo and the index is as before.
#[test]
fn after_sigkill_during_the_restore_recover_puts_the_index_back() {
    let (fixture, _turn) = fixture();
    let cluster = fixture.cluster;
    let stamp = backup(cluster);
    change_documents(cluster);
    let before = es_digest(cluster);
    let throttled = Throttled::new(cluster);
    start_restore_and_wait_for_the_restore_step(fixture, &stamp).kill();
    // The repository is still throttled: the put-back restore takes seconds too.
    let recovered = Test::at(cluster.dir.path())
        .arg("recover")
        .arg("--journal-dir")
        .arg(cluster.dir.path().join("journal"))
        .run();
    drop(throttled);
    eprintln!("{}", recovered.stderr);
    recovered
        .success()
        .stderr_contains("put back: Elasticsearch indices thehive_global from safety snapshot");
    assert_eq!(es_digest(cluster), before);
    discard_safety(fixture, &stamp);
}
