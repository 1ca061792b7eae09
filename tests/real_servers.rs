//! End to end on a real Apache Cassandra 4.1 node (installed by
//! tests/setup-real-servers.sh, started by `sandbox.py start --cassandra real`):
//! the stock backup workflow's archive is restored into the real node with the
//! real tools (cqlsh -f, sstableloader) and the data comes back identical.
//!
//! The node is started once for this test binary (it takes 15-30 s) and stopped
//! when the binary exits. A node that cannot be installed or started fails every
//! test with the reason; none is skipped.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use cluster::*;
use support::{assert_contains, repo_root, runbook, venv_bin};

const USER: &str = "thehive";
const PASSWORD: &str = "Real-Cql-Secret-7";

/// The shared node, or why it could not be started.
static NODE: OnceLock<Result<Cluster, String>> = OnceLock::new();
/// Tests that change the node's data run one at a time.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// Stops the shared sandbox when the test binary exits (statics are never dropped).
/// sandbox.py's stderr (the node's peak RSS, "stopped") goes to the test's stderr.
extern "C" fn stop_node_at_exit() {
    if let Some(Ok(cluster)) = NODE.get() {
        let _ = Command::new(venv_bin("python"))
            .arg(repo_root().join("tests/sandbox/sandbox.py"))
            .arg("stop")
            .arg(cluster.sandbox())
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(cluster.dir.path());
    }
}

/// The real node (with `--cql-auth`), started on first use; panics with the reason
/// when it cannot be, and locks out other data-changing tests while held.
fn node() -> (&'static Cluster, MutexGuard<'static, ()>) {
    let started = NODE.get_or_init(|| {
        let install = Command::new("bash")
            .arg(repo_root().join("tests/setup-real-servers.sh"))
            .output()
            .map_err(|error| format!("cannot run tests/setup-real-servers.sh: {error}"))?;
        if !install.status.success() {
            return Err(format!(
                "tests/setup-real-servers.sh failed: {}",
                stderr(&install)
            ));
        }
        let auth = format!("{USER}:{PASSWORD}");
        let cluster = std::panic::catch_unwind(|| {
            Cluster::start(&["--cassandra", "real", "--cql-auth", &auth])
        })
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "sandbox start panicked".into())
        })?;
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe { libc::atexit(stop_node_at_exit) };
        Ok(cluster)
    });
    let cluster = match started {
        Ok(cluster) => cluster,
        Err(reason) => panic!("the real Cassandra node could not be started: {reason}"),
    };
    let guard = EXCLUSIVE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    (cluster, guard)
}

/// `sandbox.py digest` of the node: row counts and hashes per table, attachments.
fn digest(cluster: &Cluster) -> serde_json::Value {
    let out = Command::new(venv_bin("python"))
        .arg(repo_root().join("tests/sandbox/sandbox.py"))
        .arg("digest")
        .arg(cluster.sandbox())
        .output()
        .unwrap();
    assert!(out.status.success(), "digest failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("digest prints JSON")
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

#[track_caller]
fn succeeded(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        stderr(&out)
    );
    stdout
}

fn node_address(cluster: &Cluster) -> String {
    cluster.record["env"]["CQLSH_HOST"]
        .as_str()
        .expect("env.sh exports CQLSH_HOST")
        .to_string()
}

fn table_folders(keyspace_folder: &Path) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(keyspace_folder)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    folders
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

/// Runs one line of a restore plan exactly as printed, as an admin would: with
/// the real tools first on PATH (env.sh) and the password in CASSANDRA_PASSWORD.
fn run_plan_line(cluster: &Cluster, line: &str) {
    let mut command = Command::new("bash");
    command.args(["-c", line]);
    for (key, value) in cluster.record["env"].as_object().unwrap() {
        command.env(key, value.as_str().unwrap());
    }
    let bin = repo_root().join("tests/real-servers/cassandra/bin");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command
        .env("PATH", path)
        .env("CASSANDRA_PASSWORD", PASSWORD);
    succeeded(&format!("plan line `{line}`"), command.output().unwrap());
}

/// The stamps of the complete sets (backup_STAMP.json) in the backup folder.
fn set_stamps(cluster: &Cluster) -> BTreeSet<String> {
    std::fs::read_dir(cluster.path("backup"))
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter_map(|name| {
            name.strip_prefix("backup_")?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect()
}

/// Runs the stock backup as the --cql-auth role while sampling every process's
/// command line; returns the stamp of the set it made. Fails if the password
/// appears on any command line meanwhile.
fn backup_without_password_on_any_command_line(cluster: &Cluster) -> String {
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
            .command(&[
                "run",
                "cluster-hot-backup",
                "--set",
                &format!("cassandra_user={USER}"),
            ])
            .env("CASSANDRA_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        done.store(true, Ordering::Relaxed);
        assert_eq!(code(&backup), 0, "{}", stderr(&backup));
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
        let stamp = backup_without_password_on_any_command_line(cluster);
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
    let listing = succeeded(
        "tar tf",
        Command::new("tar")
            .arg("tf")
            .arg(&archive)
            .output()
            .unwrap(),
    );
    assert_contains(&listing, "/thehive/edgestore-");
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "the snapshot is cleared after the backup: {:?}",
        cluster.cassandra_snapshots()
    );
}

#[test]
fn backup_restored_by_the_restore_plan_gives_the_same_data() {
    let (cluster, _guard) = node();
    let before = digest(cluster);
    let tables = before["cassandra"].as_object().expect("a cassandra digest");
    assert_eq!(tables.len(), 9, "JanusGraph's nine tables: {before}");
    assert!(
        tables
            .values()
            .all(|table| table["rows"].as_u64() > Some(0)),
        "every table holds rows: {before}"
    );

    // 1. The stock workflow against the real node (and the ES stand-in).
    let stamp = backup_without_password_on_any_command_line(cluster);
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "the snapshot is cleared after the backup: {:?}",
        cluster.cassandra_snapshots()
    );
    let archives = cluster.path("cassandra_archive");
    let extracted = cluster.dir.path().join("extracted");
    gnu_tar_extract(&archives.join(format!("cassandra_{stamp}.tar")), &extracted);
    let set = extracted.join(format!("cassandra_{stamp}"));
    let schema_text = std::fs::read_to_string(set.join("create_keyspace_thehive.cql")).unwrap();
    assert!(
        schema_text.starts_with("CREATE KEYSPACE thehive"),
        "the archived schema starts with CREATE KEYSPACE (cqlsh's WARNING line dropped):\n{schema_text}"
    );
    let folders = table_folders(&set.join("thehive"));
    assert_eq!(folders.len(), 9, "one folder per table: {folders:?}");
    for folder in &folders {
        for part in ["manifest.json", "schema.cql"] {
            assert!(
                folder.join(part).is_file(),
                "{} has no {part}",
                folder.display()
            );
        }
    }

    // 2. The restore plan.
    let address = node_address(cluster);
    let staging = cluster.dir.path().join("staging");
    let backup_folder = cluster.path("backup");
    let mut prep = runbook();
    prep.args(["run", "restore-prep", "--journal-dir"])
        .arg(cluster.dir.path().join("journal"));
    for (key, value) in [
        ("manifest_path", backup_folder.display().to_string()),
        ("stamp", stamp.clone()),
        ("elasticsearch_url", cluster.es_url()),
        ("cassandra_archive_path", archives.display().to_string()),
        (
            "storage_archive_path",
            backup_folder.join("storage").display().to_string(),
        ),
        ("staging", staging.display().to_string()),
        ("cassandra_connection", address.clone()),
        ("cassandra_user", USER.to_string()),
        (
            "attachment_folder",
            cluster.path("attachments").display().to_string(),
        ),
    ] {
        prep.arg("--set").arg(format!("{key}={value}"));
    }
    let prep = prep.output().unwrap();
    assert_eq!(code(&prep), 0, "{}", stderr(&prep));
    let plan = std::fs::read_to_string(staging.join(&stamp).join("restore-plan.sh")).unwrap();
    assert!(
        !plan.contains(PASSWORD),
        "the password is not written into the plan:\n{plan}"
    );
    let commands: Vec<&str> = plan
        .lines()
        .filter(|line| {
            line.starts_with("cqlsh ")
                || line.starts_with("sstableloader ")
                || line.starts_with("cp ")
        })
        .collect();
    assert_eq!(
        commands
            .iter()
            .filter(|line| line.starts_with("sstableloader "))
            .count(),
        9,
        "one sstableloader per table:\n{plan}"
    );

    // 3. Wipe: the keyspace and the attachments.
    let cqlsh = |args: &[&str]| {
        tool(cluster, "cqlsh")
            .args(["-u", USER, "-p", PASSWORD])
            .args(args)
            .output()
            .unwrap()
    };
    succeeded("DROP KEYSPACE", cqlsh(&["-e", "DROP KEYSPACE thehive"]));
    let gone = cqlsh(&["-e", "SELECT count(*) FROM thehive.edgestore"]);
    assert!(
        !gone.status.success(),
        "thehive.edgestore still answers after DROP KEYSPACE"
    );
    let attachments = cluster.path("attachments");
    for entry in std::fs::read_dir(&attachments).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    assert_ne!(digest(cluster)["attachments"], before["attachments"]);

    // 4. Every Cassandra and attachment command of the plan, exactly as printed
    //    (the Elasticsearch part is the stand-in's here).
    for line in &commands {
        run_plan_line(cluster, line);
    }

    // 5. The same rows in every table, the same attachments.
    let after = digest(cluster);
    assert_eq!(
        after["cassandra"], before["cassandra"],
        "restored rows differ"
    );
    assert_eq!(
        after["attachments"], before["attachments"],
        "restored attachments differ"
    );
}
