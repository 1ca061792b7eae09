//! End to end on the real servers together: a real Apache Cassandra 4.1 node
//! with `--cql-auth` and a real OpenSearch 2.19 node (installed by
//! tests/setup-real-servers.sh, started by `sandbox.py start --real --storage s3
//! --cql-auth USER:PASSWORD`). The stock backup workflow's sets, with the
//! attachments in a folder and in a bucket, are restored with the whole plan
//! restore-prep prints (the real cqlsh -f, sstableloader, the snapshot
//! `_restore`, the attachments copied or put back) and every digest comes back
//! equal (tests/support/restore_proof.rs; the same without auth is in
//! tests/real_opensearch.rs).
//!
//! The servers are started once for this test binary (about 15 s) and stopped
//! when the binary exits. Servers that cannot be installed or started fail every
//! test with the reason; none is skipped.

use runbook_test_support::shared::with_cql_auth;
use runbook_test_support::{SharedCluster, cluster, restore_proof, support};

use std::process::Command;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cluster::*;
use restore_proof::{Login, Storage, backup_wipe_restore_compare, set_stamps, succeeded};
use support::{assert_contains, repo_root};

const USER: &str = "thehive";
const PASSWORD: &str = "Real-Cql-Secret-7";
const LOGIN: Login = Login {
    user: USER,
    password: PASSWORD,
};

/// The real servers (Cassandra with `--cql-auth`), started on first use;
/// tests that change the node's data take turns.
static NODE: SharedCluster =
    SharedCluster::real_servers(|| with_cql_auth(&["--real", "--storage", "s3"], USER, PASSWORD));

fn node() -> (&'static Cluster, MutexGuard<'static, ()>) {
    NODE.take()
}

/// A real tool from env.sh's PATH folder, with the sandbox's environment.
fn tool(cluster: &Cluster, name: &str) -> Command {
    let mut command = Command::new(
        repo_root()
            .join("tests/real-servers/cassandra/bin")
            .join(name),
    );
    for (key, value) in cluster.record["env"].as_object().unwrap() {
        command.env(key, value.as_str().unwrap());
    }
    command
}

fn node_address(cluster: &Cluster) -> String {
    cluster.record["env"]["CQLSH_HOST"]
        .as_str()
        .expect("env.sh exports CQLSH_HOST")
        .to_string()
}

#[test]
fn env_sh_points_the_real_tools_at_the_sandbox_node() {
    let (cluster, _guard) = node();
    let address = node_address(cluster);
    let status = succeeded(
        "nodetool status",
        tool(cluster, "nodetool").arg("status").output().unwrap(),
    );
    assert_contains(&status, &format!("UN  {address} "));
    let version = succeeded(
        "nodetool version",
        tool(cluster, "nodetool").arg("version").output().unwrap(),
    );
    assert_contains(&version, "ReleaseVersion: 4.1.");
    // cqlsh without HOST uses CQLSH_HOST; the role made by --cql-auth logs in.
    let select = succeeded(
        "cqlsh",
        tool(cluster, "cqlsh")
            .args(["-u", USER, "-p", PASSWORD, "-e"])
            .arg("SELECT count(*) FROM thehive.janusgraph_ids")
            .output()
            .unwrap(),
    );
    assert_contains(&select, "(1 rows)");
    // Without credentials the node refuses: authentication is really on.
    let refused = tool(cluster, "cqlsh")
        .args(["-e", "SELECT now() FROM system.local"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert_contains(&stderr(&refused), "Remote end requires authentication");
}

/// Runs the stock backup (attachments from `storage`) as the --cql-auth role
/// while sampling every process's command line; returns the stamp of the set it
/// made. Fails if the password appears on any command line meanwhile.
fn backup_without_password_on_any_command_line(cluster: &Cluster, storage: Storage) -> String {
    let before = set_stamps(cluster);
    let done = AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                        if text.contains(PASSWORD) {
                            seen.push(text);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seen
        });
        let backup = cluster
            .runbook(&[
                "run",
                "cluster-hot-backup",
                "--set",
                &format!("cassandra_user={USER}"),
                "--set",
                &format!("storage={}", storage.name()),
            ])
            .env("CASSANDRA_PASSWORD", PASSWORD)
            .run();
        done.store(true, Ordering::Relaxed);
        backup.success();
        sampler.join().unwrap()
    });
    assert!(
        seen.is_empty(),
        "the password was on a command line: {seen:?}"
    );
    let made: Vec<String> = set_stamps(cluster).difference(&before).cloned().collect();
    assert_eq!(made.len(), 1, "one new backup set: {made:?}");
    made[0].clone()
}

#[test]
fn backup_succeeds_while_a_writer_inserts_rows() {
    let (cluster, _guard) = node();
    let stop = AtomicBool::new(false);
    let (inserted, stamp) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut inserted = 0u32;
            let mut failures = Vec::new();
            let mut number = 0u32;
            // The writer's password goes through a cqlshrc, so the sampler above
            // sees only what runbook and its children put on command lines.
            let rc = cluster.dir.path().join("writer.cqlshrc");
            std::fs::write(
                &rc,
                format!("[authentication]\nusername = {USER}\npassword = {PASSWORD}\n"),
            )
            .unwrap();
            std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            while !stop.load(Ordering::Relaxed) {
                number += 1;
                // A JanusGraph-shaped row, as TheHive writes while it runs.
                let statement = format!(
                    "INSERT INTO thehive.edgestore (key, column1, value) VALUES (0x77726974{number:08x}, 0x01, 0x{number:08x})"
                );
                let out = tool(cluster, "cqlsh")
                    .arg("--cqlshrc")
                    .arg(&rc)
                    .args(["-e", &statement])
                    .output()
                    .unwrap();
                if out.status.success() {
                    inserted += 1;
                } else {
                    failures.push(stderr(&out));
                }
            }
            assert!(failures.is_empty(), "inserts failed during the backup: {failures:?}");
            inserted
        });
        // Let the writer get going before the snapshot.
        std::thread::sleep(Duration::from_secs(2));
        let stamp = backup_without_password_on_any_command_line(cluster, Storage::Local);
        stop.store(true, Ordering::Relaxed);
        (writer.join().unwrap(), stamp)
    });
    assert!(
        inserted >= 2,
        "the writer inserted only {inserted} rows during the backup"
    );
    let archive = cluster
        .path("cassandra_archive")
        .join(format!("cassandra_{stamp}.tar"));
    let listing = gnu_tar_list(&archive, false);
    assert_contains(&listing, "/thehive/edgestore-");
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "the snapshot is cleared after the backup: {:?}",
        cluster.cassandra_snapshots()
    );
}

/// Issue 13's proof, storage `local` with `--cql-auth`: digest, backup, wipe
/// (keyspace, index, attachment folder), restore-prep, the whole plan as
/// printed with only CASSANDRA_PASSWORD given, digest: equal.
#[test]
fn with_cql_auth_a_local_storage_backup_restores_to_an_equal_digest() {
    let (cluster, _guard) = node();
    let (backup, restore) =
        backup_wipe_restore_compare(cluster, Storage::Local, Some(LOGIN), |cluster| {
            backup_without_password_on_any_command_line(cluster, Storage::Local)
        });
    eprintln!("with cql auth, storage local: backup {backup:.1} s, restore plan {restore:.1} s");
}

/// The same with storage `s3`: the bucket is emptied and put back by the plan's
/// `runbook run restore-bucket` line.
#[test]
fn with_cql_auth_an_s3_storage_backup_restores_to_an_equal_digest() {
    let (cluster, _guard) = node();
    let (backup, restore) =
        backup_wipe_restore_compare(cluster, Storage::S3, Some(LOGIN), |cluster| {
            backup_without_password_on_any_command_line(cluster, Storage::S3)
        });
    eprintln!("with cql auth, storage s3: backup {backup:.1} s, restore plan {restore:.1} s");
}
