//! The Cassandra part of `cluster-hot-restore` (workflows/lib/restore_cassandra.rhai)
//! on a real Cassandra 4.1 node with PasswordAuthenticator (and a real
//! OpenSearch node, which the stock backup snapshots): sets made by the stock
//! `cluster-hot-backup` are restored through a small workflow that calls the
//! lib's functions in the order `cluster-hot-restore` does (preflight,
//! safety_copy, restore, verify, dismiss the undo), and the keyspace's digest
//! (`sandbox.py digest`: rows and per-table SHA-256) is compared.
//!
//! The servers are started once for this test binary (about a minute) and
//! stopped when it exits; tests take turns. Servers that cannot be installed or
//! started fail every test with the reason; none is skipped.

use runbook_test_support::shared::with_cql_auth;
use runbook_test_support::{Ran, SharedCluster, Test, cluster, restore_proof, support};
use std::path::PathBuf;
use std::process::Command;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster::*;
use restore_proof::{Storage, digest, real_tools, set_stamps, succeeded};
use support::{assert_contains, repo_root};

const USER: &str = "thehive";
/// The setting that makes a restore stream with sstableloader (the default,
/// `auto`, imports on this one-node sandbox).
const SSTABLELOADER: &str = "cassandra_loader=sstableloader";
const PASSWORD: &str = "Restore-Cql-Secret-4";

/// The test workflow: the lib's functions in the order the restore calls
/// them, on the set `stamp`, its Cassandra archive extracted into `staging`.
/// `fail_after_restore` plays another part failing after this one restored.
const PART_WORKFLOW: &str = r#"
import "lib/restore_cassandra" as cassandra;

let cfg = config(cassandra::config_defaults() + #{
    cassandra_keyspace: "thehive", cassandra_connection: "127.0.0.1", cassandra_user: "",
    cassandra_data_folder: "", cassandra_archive_path: "", nodetool: "nodetool", cqlsh: "cqlsh",
    elasticsearch_url: "", elasticsearch_repository: "", elasticsearch_indices: "", elasticsearch_archive_path: "",
    elasticsearch_poll: "5s",
    storage: "none", attachment_folder: "", storage_archive_path: "", s3_source: "", s3_archive_path: "",
    manifest_path: "", staging: "", stamp: "", action: "restore", fail_after_restore: false,
});

let set = backup_manifest(cfg.manifest_path, cfg.stamp).manifest;
let stamp = set.stamp;
if cfg.action == "discard" {
    cassandra::discard_safety(cfg, stamp);
    cassandra::discard_safety(cfg, stamp);      // idempotent
    return;
}
let archive = "";
for a in set.archives { if a.part == "cassandra" { archive = a.path; } }
let staging = `${cfg.staging}/${stamp}`;
mkdir(staging);
let source = `${staging}/cassandra_${stamp}`;
if !exists(source) {
    extract_archive(#{ path: archive, dest: staging, verify: false, label: "extract cassandra archive", timeout: "1h" });
}
for line in cassandra::plan(cfg, set, source) { log_info(`plan: ${line}`); }
if cfg.action == "plan" { return; }
cassandra::preflight(cfg, set, source);
let safety = cassandra::safety_copy(cfg, set, stamp);
let restored = cassandra::restore(cfg, set, source);
let checked = cassandra::verify(cfg, set, source, restored);
if cfg.fail_after_restore { fail("another part of the restore failed (test)"); }
for id in safety.undo_ids { dismiss(id); }
log_info(`restored: ${restored.to_json()} checked: ${checked.to_json()}`);
"#;

/// The real nodes (Cassandra with `--cql-auth`, OpenSearch), started on
/// first use; tests change the node's data, so they take turns.
static NODE: SharedCluster = SharedCluster::real_servers(|| {
    with_cql_auth(
        &[
            "--cassandra",
            "real",
            "--es",
            "opensearch",
            "--es-docs",
            "50",
            "--objects",
            "5",
        ],
        USER,
        PASSWORD,
    )
});

fn node() -> (&'static Cluster, MutexGuard<'static, ()>) {
    NODE.take()
}

/// The real cqlsh as the test's admin (the test's own command line, not runbook's).
fn cql(cluster: &Cluster, statement: &str) -> String {
    let mut command = Command::new(real_tools().join("cqlsh"));
    for (key, value) in cluster.record["env"].as_object().unwrap() {
        command.env(key, value.as_str().unwrap());
    }
    succeeded(
        statement,
        command
            .args(["-u", USER, "-p", PASSWORD, "-e", statement])
            .output()
            .unwrap(),
    )
}

/// The keyspace's digest: per table, rows and SHA-256.
fn keyspace_digest(cluster: &Cluster) -> serde_json::Value {
    digest(cluster, Storage::Local)["cassandra"].clone()
}

/// A new set by the stock backup (Cassandra and the index; no attachments).
fn backup(cluster: &Cluster) -> String {
    let before = set_stamps(cluster);
    cluster
        .runbook(&["run", "cluster-hot-backup", "--set", "storage=none"])
        .run()
        .success();
    let made: Vec<String> = set_stamps(cluster).difference(&before).cloned().collect();
    assert_eq!(made.len(), 1, "one new backup set: {made:?}");
    made[0].clone()
}

/// Rows inserted, updated and deleted: the live keyspace is no longer the set's.
fn change_rows(cluster: &Cluster) {
    cql(
        cluster,
        "INSERT INTO thehive.janusgraph_ids (key, column1, value) VALUES (0x0bad, 0x01, 0x02); \
         INSERT INTO thehive.systemlog (key, column1, value) VALUES (0x0bad, 0x01, 0x02)",
    );
    let keys = cql(cluster, "SELECT key FROM thehive.txlog LIMIT 2");
    let keys: Vec<&str> = keys
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("0x"))
        .collect();
    assert_eq!(keys.len(), 2, "two txlog rows to change: {keys:?}");
    cql(
        cluster,
        &format!(
            "DELETE FROM thehive.txlog WHERE key = {}; UPDATE thehive.txlog SET value = 0x99 WHERE key = {} AND column1 = 0x00",
            keys[0], keys[1]
        ),
    );
}

/// The folder holding the test workflow and a copy of the lib under test
/// (with `lib/thehive`, which it imports for its side-by-side checks).
fn workflow(cluster: &Cluster) -> PathBuf {
    let folder = cluster.dir.path().join("wf");
    std::fs::create_dir_all(folder.join("lib")).unwrap();
    for lib in ["restore_cassandra.rhai", "thehive.rhai"] {
        std::fs::copy(
            repo_root().join("workflows/lib").join(lib),
            folder.join("lib").join(lib),
        )
        .unwrap();
    }
    let file = folder.join("restore-cassandra-part.rhai");
    std::fs::write(&file, PART_WORKFLOW).unwrap();
    file
}

/// Runs the test workflow on set `stamp` with `extra` --set pairs, as the
/// sandbox's role (password from CASSANDRA_PASSWORD, env.sh's).
fn run_part(cluster: &Cluster, stamp: &str, extra: &[&str]) -> Ran {
    part_command(cluster, "run", stamp, extra).run()
}

/// The run of [`run_part`], not started.
fn part_command(cluster: &Cluster, verb: &str, stamp: &str, extra: &[&str]) -> Test {
    let file = workflow(cluster);
    let mut args = vec![
        verb.to_string(),
        file.display().to_string(),
        "--set".into(),
        format!("stamp={stamp}"),
        "--set".into(),
        format!("staging={}", cluster.dir.path().join("staging").display()),
        "--set".into(),
        format!(
            "sstableloader={}",
            real_tools().join("sstableloader").display()
        ),
    ];
    for pair in extra {
        args.push("--set".into());
        args.push(pair.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.runbook(&args)
}

/// (pid, command line) of every process.
fn command_lines() -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect()
}

/// Whether `ancestor` is `pid` or one of its ancestors (parent pids from
/// /proc/PID/stat; a process that is gone counts as no descendant).
fn descends_from(pid: i32, ancestor: i32) -> bool {
    let mut current = pid;
    for _ in 0..64 {
        if current == ancestor {
            return true;
        }
        if current <= 1 {
            return false;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{current}/stat")) else {
            return false;
        };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces, so after the last ')'.
        let Some(parent) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse().ok())
        else {
            return false;
        };
        current = parent;
    }
    false
}

/// Pids of the processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(needle)
                .then_some(pid)
        })
        .collect()
}

fn safety_folder(cluster: &Cluster, stamp: &str) -> PathBuf {
    cluster
        .path("cassandra_data")
        .join(format!("runbook_pre_restore_{stamp}"))
}

/// Roles whose name says runbook made them for a load.
fn loader_roles(cluster: &Cluster) -> Vec<String> {
    cql(cluster, "SELECT role FROM system_auth.roles")
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("runbook_"))
        .map(str::to_string)
        .collect()
}

/// A new set, then rows changed: the set's stamp and the keyspace's digest
/// before any restore (what an undo must give back).
fn backup_then_change_rows(cluster: &Cluster) -> (String, serde_json::Value) {
    let stamp = backup(cluster);
    change_rows(cluster);
    (stamp, keyspace_digest(cluster))
}

/// The keyspace is as `before_restore` and no loader role is left; then the
/// safety copy of `stamp` is dropped.
#[track_caller]
fn assert_put_back_then_discard(
    cluster: &Cluster,
    stamp: &str,
    before_restore: &serde_json::Value,
) {
    assert_eq!(&keyspace_digest(cluster), before_restore);
    assert!(
        loader_roles(cluster).is_empty(),
        "{:?}",
        loader_roles(cluster)
    );
    discard(cluster, stamp);
}

/// Drops the safety copy of `stamp` through the lib (twice: idempotent).
fn discard(cluster: &Cluster, stamp: &str) {
    run_part(cluster, stamp, &["action=discard"]).success();
    assert!(!safety_folder(cluster, stamp).exists());
    let tag = format!("pre_restore_{stamp}");
    assert!(
        !cluster
            .cassandra_snapshots()
            .iter()
            .any(|snapshot| snapshot.ends_with(&tag)),
        "snapshot {tag} cleared: {:?}",
        cluster.cassandra_snapshots()
    );
}

/// How often each loader's JVM was seen among a run's descendants.
#[derive(Debug, Default)]
struct LoaderSightings {
    bulk_loader: usize,
    nodetool_import: usize,
}

/// Runs `test` while the command line of every descendant of the run
/// (cqlsh, the helper script, the loaders' JVMs...) is sampled; other
/// processes of the machine (other test runs) are not this run's. Returns the
/// run, the command lines holding the password, and the loaders seen.
fn run_sampled(test: Test) -> (Ran, Vec<String>, LoaderSightings) {
    let run = test.spawn();
    let run_pid = run.pid();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut seen = Vec::new();
            let mut loaders = LoaderSightings::default();
            while !done.load(Ordering::Relaxed) {
                for (pid, text) in command_lines() {
                    if !descends_from(pid, run_pid) {
                        continue;
                    }
                    if text.contains(PASSWORD) {
                        seen.push(text.clone());
                    }
                    if text.contains("org.apache.cassandra.tools.BulkLoader") {
                        loaders.bulk_loader += 1;
                    }
                    if text.contains("org.apache.cassandra.tools.NodeTool")
                        && text.contains(" import ")
                    {
                        loaders.nodetool_import += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (seen, loaders)
        });
        let out = run.finish();
        done.store(true, Ordering::Relaxed);
        let (seen, loaders) = sampler.join().unwrap();
        (out, seen, loaders)
    })
}

#[test]
fn round_trip_restores_the_backup_time_keyspace_with_no_password_on_any_command_line() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster);
    let at_backup = keyspace_digest(cluster);
    assert_eq!(at_backup.as_object().unwrap().len(), 9, "{at_backup}");
    change_rows(cluster);
    assert_ne!(keyspace_digest(cluster), at_backup, "the rows changed");

    let (out, seen, loaders) = run_sampled(part_command(cluster, "run", &stamp, &[SSTABLELOADER]));
    let loaders = loaders.bulk_loader;
    let out = out.success();
    assert!(
        seen.is_empty(),
        "the password was on a command line: {seen:?}"
    );
    assert!(loaders > 0, "sstableloader was seen running while sampling");
    let log = &out.stderr;
    assert_contains(log, "schema equal to the set's; emptying its 9 tables");
    assert_contains(log, "9 tables streamed");
    assert!(!log.contains(PASSWORD), "{log}");

    // Exactly the set's rows: the insert, update and delete are gone.
    assert_eq!(keyspace_digest(cluster), at_backup);
    assert!(
        loader_roles(cluster).is_empty(),
        "{:?}",
        loader_roles(cluster)
    );
    // The safety copy stays (links, schema, script) until discard_safety.
    let safety = safety_folder(cluster, &stamp);
    assert!(safety.join("schema.cql").is_file());
    assert!(safety.join("verified").is_file());
    discard(cluster, &stamp);
}

#[test]
fn a_loader_failing_on_the_third_table_puts_the_keyspace_back() {
    let (cluster, _guard) = node();
    let (stamp, before_restore) = backup_then_change_rows(cluster);

    // sstableloader that fails on its third load (`--help` aside), a stand-in
    // in front of the real one.
    let count = cluster.dir.path().join("loads");
    let _ = std::fs::remove_file(&count);
    let wrapper = cluster.dir.path().join("failing-sstableloader");
    std::fs::write(
        &wrapper,
        format!(
            "#!/usr/bin/env bash\n\
             # stand-in: the real sstableloader, failing on its third table\n\
             real={real}\n\
             if [ \"${{1:-}}\" = --help ]; then exec \"$real\" \"$@\"; fi\n\
             n=$(flock {count}.lock sh -c 'n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}; echo $n')\n\
             if [ \"$n\" -eq 3 ]; then echo \"stand-in: stream to 127.0.0.1 failed\" >&2; exit 1; fi\n\
             exec \"$real\" \"$@\"\n",
            real = real_tools().join("sstableloader").display(),
            count = count.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let out = run_part(
        cluster,
        &stamp,
        &[
            &format!("sstableloader={}", wrapper.display()),
            SSTABLELOADER,
        ],
    )
    .failure(1);
    let log = &out.stderr;
    assert_contains(log, "sstableloader failed for table thehive.");
    assert_contains(log, "stand-in: stream to 127.0.0.1 failed");
    assert_contains(
        log,
        "put Cassandra keyspace thehive back from safety copy pre_restore_",
    );
    assert!(!log.contains("cleanup failed"), "{log}");
    assert_put_back_then_discard(cluster, &stamp, &before_restore);
}

#[test]
fn another_part_failing_after_the_restore_puts_the_keyspace_back() {
    let (cluster, _guard) = node();
    let (stamp, before_restore) = backup_then_change_rows(cluster);
    // The default loader here: nodetool import, put back with --copy-data.
    let out = run_part(cluster, &stamp, &["fail_after_restore=true"]).failure(1);
    let log = &out.stderr;
    assert_contains(log, "another part of the restore failed (test)");
    assert_contains(log, "9 tables imported (nodetool import, no streaming)");
    assert!(!log.contains("cleanup failed"), "{log}");
    assert_eq!(keyspace_digest(cluster), before_restore);
    discard(cluster, &stamp);
}

#[test]
fn a_keyspace_whose_schema_differs_is_recreated_from_the_set() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster);
    let at_backup = keyspace_digest(cluster);
    cql(
        cluster,
        "CREATE TABLE thehive.added_since (key blob PRIMARY KEY, value blob); \
         INSERT INTO thehive.added_since (key, value) VALUES (0x01, 0x02)",
    );
    change_rows(cluster);
    let out = run_part(cluster, &stamp, &[]).success();
    let log = &out.stderr;
    assert_contains(
        log,
        "schema differs from the set's create_keyspace_thehive.cql: dropping and recreating it",
    );
    let tables = cql(
        cluster,
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'thehive'",
    );
    assert!(!tables.contains("added_since"), "{tables}");
    assert_eq!(keyspace_digest(cluster), at_backup);
    discard(cluster, &stamp);
}

#[test]
fn plan_lists_every_action_without_a_password_and_changes_nothing() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster);
    change_rows(cluster);
    let before = keyspace_digest(cluster);
    // `runbook plan` runs every function of the lib in dry-run.
    let out = part_command(cluster, "plan", &stamp, &[SSTABLELOADER])
        .run()
        .success();
    let log = &out.stderr;
    let plan: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once("plan: ").map(|(_, rest)| rest))
        .collect();
    assert!(
        plan[0].contains(&format!("snapshot -t pre_restore_{stamp} thehive")),
        "{plan:?}"
    );
    assert_eq!(
        plan.iter()
            .filter(|line| line.contains("sstableloader -d "))
            .count(),
        9,
        "one load per table: {plan:?}"
    );
    for line in &plan {
        assert!(!line.contains(PASSWORD), "{line}");
        assert!(!line.contains("CASSANDRA_PASSWORD"), "{line}");
    }
    assert_contains(
        log,
        "[dry-run] would compare the schema of keyspace thehive",
    );
    assert!(!log.contains(PASSWORD), "{log}");
    assert!(
        !safety_folder(cluster, &stamp).exists(),
        "plan makes no safety copy"
    );
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "plan snapshots nothing"
    );
    assert_eq!(keyspace_digest(cluster), before, "plan changes no row");
}

/// Runs the restore part with `settings`, SIGKILLs it once a `loader` JVM
/// (its main class) works on `folder` (the keyspace is emptied by then), kills
/// this test's own leftover tools (a crash takes the tools with it: no orphan
/// goes on loading), checks the keyspace was changed, then runs `runbook
/// recover`.
fn sigkill_while_loading_then_recover(
    cluster: &Cluster,
    stamp: &str,
    settings: &[&str],
    loader: &str,
    folder: &str,
    before_restore: &serde_json::Value,
) -> Ran {
    let mut run = part_command(cluster, "run", stamp, settings).spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while processes_with(loader)
        .into_iter()
        .all(|pid| !processes_with(folder).contains(&pid))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{loader} never started on {folder}"
        );
        assert!(run.is_running(), "the run ended before loading");
        std::thread::sleep(Duration::from_millis(50));
    }
    run.kill(); // SIGKILL: no cleanup runs in the process
    // This test's own: the helper script of this sandbox's safety copy (not
    // another run's on the same machine).
    let tool = safety_folder(cluster, stamp)
        .join("restore-tool.sh")
        .display()
        .to_string();
    for needle in [tool.as_str(), folder] {
        for pid in processes_with(needle) {
            // SAFETY: kill(2) on a pid this test saw running its own tools.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_ne!(
        &keyspace_digest(cluster),
        before_restore,
        "the kill left the keyspace half-restored"
    );
    cluster.recover().run().success()
}

#[test]
fn sigkill_mid_load_then_recover_puts_the_keyspace_back() {
    let (cluster, _guard) = node();
    let (stamp, before_restore) = backup_then_change_rows(cluster);

    let staging = cluster.dir.path().join("staging").display().to_string();
    let loader = "org.apache.cassandra.tools.BulkLoader";
    sigkill_while_loading_then_recover(
        cluster,
        &stamp,
        &[SSTABLELOADER],
        loader,
        &staging,
        &before_restore,
    )
    .stderr_contains("put Cassandra keyspace thehive back from safety copy pre_restore_");
    assert_put_back_then_discard(cluster, &stamp, &before_restore);
}

#[test]
fn a_user_that_cannot_create_the_loader_role_fails_before_anything_changes() {
    let (cluster, _guard) = node();
    let (stamp, before_restore) = backup_then_change_rows(cluster);
    // A role that may log in and read, but not create roles.
    cql(
        cluster,
        "CREATE ROLE IF NOT EXISTS restore_weak WITH PASSWORD = 'Weak-Role-Pass-5' AND LOGIN = true",
    );
    let out = part_command(
        cluster,
        "run",
        &stamp,
        &["cassandra_user=restore_weak", SSTABLELOADER],
    )
    .env("CASSANDRA_PASSWORD", "Weak-Role-Pass-5")
    .run()
    .failure(1);
    let log = &out.stderr;
    assert_contains(
        log,
        "error: Cassandra user restore_weak (cassandra_user) cannot create the one-time role sstableloader logs in as \
         (it needs CREATE on ALL ROLES, e.g. a superuser); nothing was changed",
    );
    assert!(!log.contains("emptying its"), "{log}");
    assert_eq!(keyspace_digest(cluster), before_restore);
    cql(cluster, "DROP ROLE restore_weak");
    discard(cluster, &stamp);
}

/// Where nodetool import loads from during a restore of `stamp`.
fn import_folder(cluster: &Cluster, stamp: &str) -> PathBuf {
    cluster
        .path("cassandra_data")
        .join(format!("runbook_import_{stamp}"))
}

/// Writes an executable stand-in script at `path`.
fn write_stand_in(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The table folders of the safety copy of `stamp` that hold a Data.db (hard
/// links to the snapshot: a put-back that moved them would leave none).
fn tables_holding_sstables(cluster: &Cluster, stamp: &str) -> usize {
    let keyspace = safety_folder(cluster, stamp).join("thehive");
    std::fs::read_dir(&keyspace)
        .unwrap()
        .flatten()
        .filter(|table| {
            std::fs::read_dir(table.path())
                .unwrap()
                .flatten()
                .any(|file| file.file_name().to_string_lossy().ends_with("-Data.db"))
        })
        .count()
}

#[test]
fn round_trip_by_default_loads_with_nodetool_import_on_the_one_node_sandbox() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster);
    let at_backup = keyspace_digest(cluster);
    change_rows(cluster);
    assert_ne!(keyspace_digest(cluster), at_backup, "the rows changed");

    let (out, seen, loaders) = run_sampled(part_command(cluster, "run", &stamp, &[]));
    let out = out.success();
    assert!(
        seen.is_empty(),
        "the password was on a command line: {seen:?}"
    );
    assert_eq!(loaders.bulk_loader, 0, "no sstableloader ran: {loaders:?}");
    assert!(
        loaders.nodetool_import > 0,
        "nodetool import was seen running: {loaders:?}"
    );
    let log = &out.stderr;
    assert_contains(
        log,
        "tables loaded by nodetool import (cassandra_loader auto: the cluster is this one node)",
    );
    assert_contains(log, "schema equal to the set's; emptying its 9 tables");
    assert_contains(log, "9 tables imported (nodetool import, no streaming)");
    assert!(!log.contains("one-time loader role"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");

    assert_eq!(keyspace_digest(cluster), at_backup);
    assert!(
        loader_roles(cluster).is_empty(),
        "{:?}",
        loader_roles(cluster)
    );
    assert!(
        !import_folder(cluster, &stamp).exists(),
        "the import folder is removed when the load is done"
    );
    let safety = safety_folder(cluster, &stamp);
    assert!(safety.join("verified").is_file());
    assert_eq!(tables_holding_sstables(cluster, &stamp), 9);
    discard(cluster, &stamp);
}

/// A stand-in nodetool (the real one behind a wrapper) whose third `import`
/// fails as Cassandra 4.1's does when the node refuses a folder
/// (tools/nodetool/Import.java: the line, the folders, exit 1).
fn failing_import_nodetool(cluster: &Cluster) -> PathBuf {
    third_import_stand_in(
        cluster,
        "failing-import",
        "its third import failing as Cassandra 4.1's does",
        "\x20   echo 'Some directories failed to import, check server logs for details:' >&2\n\
         \x20   echo \"${@: -1}\" >&2\n\
         \x20   exit 1\n",
    )
}

/// The real nodetool behind a wrapper (a stand-in, named `NAME-nodetool`,
/// described by `what`) that runs `third` (bash lines) instead of its third
/// `import`, counted across the parallel loads with a lock.
fn third_import_stand_in(cluster: &Cluster, name: &str, what: &str, third: &str) -> PathBuf {
    let count = cluster.dir.path().join(format!("{name}s"));
    let _ = std::fs::remove_file(&count);
    let wrapper = cluster.dir.path().join(format!("{name}-nodetool"));
    write_stand_in(
        &wrapper,
        &format!(
            "#!/usr/bin/env bash\n\
             # stand-in: the real nodetool, {what}\n\
             real={real}\n\
             if [ \"${{1:-}}\" = import ]; then\n\
             \x20 n=$(flock {count}.lock sh -c 'n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}; echo $n')\n\
             \x20 if [ \"$n\" -eq 3 ]; then\n\
             {third}\
             \x20 fi\n\
             fi\n\
             exec \"$real\" \"$@\"\n",
            real = real_tools().join("nodetool").display(),
            count = count.display(),
        ),
    );
    wrapper
}

#[test]
fn an_import_failing_on_the_third_table_puts_the_keyspace_back_and_keeps_the_safety_copy() {
    let (cluster, _guard) = node();
    let (stamp, before_restore) = backup_then_change_rows(cluster);
    let wrapper = failing_import_nodetool(cluster);
    let out = run_part(
        cluster,
        &stamp,
        &[&format!("nodetool={}", wrapper.display())],
    )
    .failure(1);
    let log = &out.stderr;
    assert_contains(log, "nodetool import failed for table thehive.");
    assert_contains(
        log,
        "Some directories failed to import, check server logs for details:",
    );
    assert_contains(
        log,
        "put Cassandra keyspace thehive back from safety copy pre_restore_",
    );
    assert!(!log.contains("cleanup failed"), "{log}");
    assert!(
        !import_folder(cluster, &stamp).exists(),
        "the import folder is removed"
    );
    // The put-back copied (--copy-data): every table folder of the safety
    // copy still holds its SSTables (a move would have emptied them), so it
    // can be put back again.
    assert_eq!(tables_holding_sstables(cluster, &stamp), 9);
    assert_put_back_then_discard(cluster, &stamp, &before_restore);
}

#[test]
fn sigkill_mid_import_then_recover_puts_the_keyspace_back() {
    let (cluster, _guard) = node();
    let (stamp, before_restore) = backup_then_change_rows(cluster);

    let importing = import_folder(cluster, &stamp).display().to_string();
    let loader = "org.apache.cassandra.tools.NodeTool";
    sigkill_while_loading_then_recover(cluster, &stamp, &[], loader, &importing, &before_restore)
        .stderr_contains("put Cassandra keyspace thehive back from safety copy pre_restore_");
    assert!(
        !import_folder(cluster, &stamp).exists(),
        "recover removes the import folder"
    );
    assert_put_back_then_discard(cluster, &stamp, &before_restore);
}

#[test]
fn plan_lists_one_nodetool_import_per_table_by_default_and_changes_nothing() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster);
    let before = keyspace_digest(cluster);
    let out = part_command(cluster, "plan", &stamp, &[]).run().success();
    let log = &out.stderr;
    let plan: Vec<&str> = log
        .lines()
        .filter_map(|line| line.split_once("plan: ").map(|(_, rest)| rest))
        .collect();
    let imports: Vec<&&str> = plan
        .iter()
        .filter(|line| line.contains("nodetool import thehive "))
        .collect();
    assert_eq!(imports.len(), 9, "one import per table: {plan:?}");
    for line in &imports {
        assert!(
            line.contains(&format!("runbook_import_{stamp}/thehive/")),
            "{line}"
        );
    }
    assert!(
        plan.iter().all(|line| !line.contains("sstableloader -d ")),
        "no sstableloader: {plan:?}"
    );
    assert!(
        plan.iter()
            .any(|line| line.contains("import --copy-data of each")),
        "the put-back copies: {plan:?}"
    );
    for line in &plan {
        assert!(!line.contains(PASSWORD), "{line}");
    }
    assert!(
        !safety_folder(cluster, &stamp).exists(),
        "plan makes no safety copy"
    );
    assert!(
        !import_folder(cluster, &stamp).exists(),
        "plan makes no import folder"
    );
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "plan snapshots nothing"
    );
    assert_eq!(keyspace_digest(cluster), before, "plan changes no row");
}

/// A stand-in nodetool (the real one behind a wrapper) whose `status` lists
/// a second node, Up/Normal, in Cassandra 4.1's format.
fn two_node_nodetool(cluster: &Cluster) -> PathBuf {
    let wrapper = cluster.dir.path().join("two-node-nodetool");
    write_stand_in(
        &wrapper,
        &format!(
            "#!/usr/bin/env bash\n\
             # stand-in: the real nodetool; its status lists a second node\n\
             real={real}\n\
             if [ \"${{1:-}}\" = status ]; then\n\
             \x20 \"$real\" \"$@\" || exit\n\
             \x20 echo 'UN  127.0.0.250  1.2 MiB  16  100.0%  5b1e8e4c-0000-4000-8000-000000000250  rack1'\n\
             \x20 exit 0\n\
             fi\n\
             exec \"$real\" \"$@\"\n",
            real = real_tools().join("nodetool").display(),
        ),
    );
    wrapper
}

#[test]
fn import_on_a_cluster_of_two_nodes_is_refused_and_auto_streams() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster);
    let before = keyspace_digest(cluster);
    let nodetool = format!("nodetool={}", two_node_nodetool(cluster).display());

    let out = run_part(cluster, &stamp, &[&nodetool, "cassandra_loader=import"]).failure(1);
    assert_contains(
        &out.stderr,
        "error: cassandra_loader is \"import\" but the cluster has 2 nodes: nodetool import loads only the node it runs on, \
         so the other replicas would miss the data; set cassandra_loader to sstableloader (or auto)",
    );
    assert!(
        !safety_folder(cluster, &stamp).exists(),
        "nothing was changed"
    );
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "nothing was snapshotted"
    );
    assert_eq!(keyspace_digest(cluster), before);

    // auto: sstableloader, which streams to every replica.
    let out = part_command(cluster, "plan", &stamp, &[&nodetool])
        .run()
        .success();
    let log = &out.stderr;
    assert_contains(
        log,
        "sstableloader runs (cassandra_loader auto: more than one node, or no local data folder)",
    );
    assert_eq!(
        log.lines()
            .filter(|line| line.contains("plan: ") && line.contains("sstableloader -d "))
            .count(),
        9,
        "{log}"
    );
    assert!(!log.contains("nodetool import thehive"), "{log}");
}

/// A stand-in nodetool (the real one behind a wrapper) whose third `import`
/// exits 0 and loads nothing, as Cassandra 4.1's does when the importer finds
/// no SSTable it can take (SSTableImporter: "No new SSTables were found", in
/// the server's log only).
fn silent_import_nodetool(cluster: &Cluster) -> PathBuf {
    third_import_stand_in(
        cluster,
        "silent-import",
        "its third import loading nothing and exiting 0",
        "\x20   exit 0\n",
    )
}

#[test]
fn an_import_that_exits_0_without_loading_fails_and_puts_the_keyspace_back() {
    let (cluster, _guard) = node();
    let (stamp, before_restore) = backup_then_change_rows(cluster);
    let wrapper = silent_import_nodetool(cluster);
    let out = run_part(
        cluster,
        &stamp,
        &[&format!("nodetool={}", wrapper.display())],
    )
    .failure(1);
    let log = &out.stderr;
    assert_contains(log, "nodetool import failed for table thehive.");
    assert_contains(log, "exited 0 but left the SSTables in ");
    assert_contains(
        log,
        "put Cassandra keyspace thehive back from safety copy pre_restore_",
    );
    assert!(!log.contains("cleanup failed"), "{log}");
    assert_put_back_then_discard(cluster, &stamp, &before_restore);
}
