//! The fault matrix (docs/reliability.md): the rows that no step-level or
//! engine test covers, each run end to end — the real `runbook` binary and the
//! stock workflow against the sandbox cluster (tests/sandbox/sandbox.py) —
//! unless a step-level check fits better.
//!
//! Every wait polls for a condition with a generous deadline; no sleep is an
//! assertion. Tests that mount a tmpfs or drop capabilities need root (the
//! test run is root); they fail with the reason otherwise, rather than pass
//! without checking anything.

use runbook_test_support::servers::ServerProcess;
use runbook_test_support::{Ran, Running, Test, TmpfsMount, cluster, support, wait_until};

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::assert_contains;

// ---------------------------------------------------------------- helpers

/// `runbook run cluster-hot-backup` with `extra` arguments against the sandbox.
fn backup(cluster: &Cluster, extra: &[&str]) -> Test {
    cluster.runbook(&[&["run", "cluster-hot-backup"], extra].concat())
}

/// `runbook run cluster-hot-backup` with `extra` arguments, started and left running.
fn spawn_backup(cluster: &Cluster, extra: &[&str]) -> Running {
    backup(cluster, extra).spawn()
}

/// The invocation log of the stand-in `nodetool`/`cqlsh`.
fn invocations(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.path("state").join("invocations.log")).unwrap_or_default()
}

/// True when the stand-in ES has received a GET poll of a snapshot after its
/// first `skip` requests (those of earlier runs): a GET that follows the
/// snapshot's PUT (the GET before it is the run's check that its stamp is free).
fn es_polled(cluster: &Cluster, skip: usize) -> bool {
    let of_snapshot = |r: &serde_json::Value, method: &str| {
        r["method"] == method
            && r["path"]
                .as_str()
                .unwrap_or("")
                .starts_with("/_snapshot/thehive_repository/elasticsearch_")
    };
    let requests = cluster.es_requests();
    let mut after_put = requests
        .iter()
        .skip(skip)
        .skip_while(|r| !of_snapshot(r, "PUT"));
    after_put.next().is_some() && after_put.any(|r| of_snapshot(r, "GET"))
}

/// Names of the snapshots the stand-in ES was asked to create (PUT) and to delete.
fn es_snapshots(cluster: &Cluster, method: &str) -> Vec<String> {
    cluster
        .es_requests()
        .iter()
        .filter(|r| r["method"] == method)
        .filter_map(|r| {
            r["path"]
                .as_str()?
                .strip_prefix("/_snapshot/thehive_repository/")
                .map(str::to_string)
        })
        .collect()
}

/// Every snapshot the run created in Elasticsearch was deleted again.
fn assert_es_snapshots_deleted(cluster: &Cluster) {
    let created = es_snapshots(cluster, "PUT");
    assert!(!created.is_empty(), "no snapshot was created");
    let deleted = es_snapshots(cluster, "DELETE");
    for name in &created {
        assert!(
            deleted.contains(name),
            "Elasticsearch snapshot {name} was not deleted: {:?}",
            cluster.es_requests()
        );
    }
}

/// Nothing of an interrupted run is left that could pass for a backup, nor debris:
/// no marker, manifest, `.partial`, mirror staging folder or Cassandra snapshot.
fn assert_no_debris(cluster: &Cluster) {
    let files = cluster.backup_files();
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".info") || f.starts_with("backup_") || f.ends_with(".partial")),
        "debris or a complete-looking set left: {files:?}"
    );
    let staging: Vec<PathBuf> = walk_dirs(&cluster.path("backup"))
        .into_iter()
        .filter(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("minio_"))
        })
        .collect();
    assert!(staging.is_empty(), "mirror staging left: {staging:?}");
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "Cassandra snapshot left: {:?}",
        cluster.cassandra_snapshots()
    );
}

/// A `.tar.partial` file with data in it under `folder`: an archive being written.
fn tar_partial_with_data(folder: &Path) -> bool {
    walk(folder).iter().any(|p| {
        p.to_string_lossy().ends_with(".tar.partial")
            && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
    })
}

/// Runs a workflow file of the test's own (not the stock one: no sandbox
/// vars) with the sandbox's environment, for the stand-in tools.
fn run_workflow_file(cluster: &Cluster, workflow: &Path) -> Ran {
    cluster.bare_runbook(["run"]).arg(workflow).run()
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Relative path (raw bytes, so non-UTF-8 names compare exactly) -> content.
fn byte_tree(root: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    walk(root)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(root)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The first line of runbook's error: `error: ...`, or the failed branch's line.
fn error_line(ran: &Ran) -> String {
    let err = &ran.stderr;
    let mut lines = err.lines().skip_while(|l| !l.starts_with("error: "));
    let first = lines.next().unwrap_or_default();
    match lines.next() {
        Some(branch) if branch.trim_start().starts_with("branch ") => branch.trim().to_string(),
        _ => first.to_string(),
    }
}

// ---------------------------------------------------------------- tools

#[test]
fn nodetool_not_found_fails_preflight_before_anything_is_snapshotted() {
    let cluster = Cluster::start(&[]);
    backup(&cluster, &["--set", "nodetool=/nonexistent/nodetool"])
        .run()
        .failed_cleanly(
            &cluster,
            "step exec (nodetool status) failed: could not start `/nonexistent/nodetool`: no such file",
        );
    // A bare name that is not in PATH.
    backup(&cluster, &["--set", "nodetool=nodetool"])
        .env("PATH", "/usr/bin:/bin")
        .run()
        .failed_cleanly(
            &cluster,
            "step exec (nodetool status) failed: could not start `nodetool`: not found in PATH",
        );
    assert!(
        cluster.backup_files().is_empty(),
        "{:?}",
        cluster.backup_files()
    );
    assert!(
        es_snapshots(&cluster, "PUT").is_empty(),
        "an Elasticsearch snapshot was started"
    );
}

#[test]
fn a_hung_nodetool_is_killed_with_its_children_at_the_timeout() {
    let cluster = Cluster::start(&[]);
    cluster.knob("nodetool-hang", "status");
    let nodetool = support::repo_root().join("tests/sandbox/bin/nodetool");
    let workflow = cluster.dir.path().join("hang.rhai");
    std::fs::write(
        &workflow,
        format!(
            "exec(#{{ cmd: \"{}\", args: [\"status\"], timeout: \"2s\" }});\n",
            nodetool.display()
        ),
    )
    .unwrap();
    let ran = run_workflow_file(&cluster, &workflow).failure(1);
    assert!(
        error_line(&ran).contains("timed out after 2s"),
        "{}",
        ran.stderr
    );
    // The stand-in and its child both ignore SIGTERM: only a kill of the
    // whole process group ends them.
    let pids = std::fs::read_to_string(cluster.path("state").join("nodetool-hang.pids"))
        .expect("the hang knob records its pids");
    let pids: Vec<i32> = pids
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    assert_eq!(pids.len(), 2, "one parent and one child: {pids:?}");
    for pid in pids {
        wait_until(&format!("pid {pid} to end"), || !alive(pid));
    }
}

#[test]
fn cqlsh_that_cannot_authenticate_or_prints_nothing_fails_the_run_cleanly() {
    let cluster = Cluster::start(&["--cql-auth", "backup:Right-Pass-1"]);
    // Caught in pre-flight (issue 12 §5): before any snapshot, naming the keys.
    backup(&cluster, &[])
        .env("CASSANDRA_PASSWORD", "Wrong-Pass-2")
        .run()
        .failed_cleanly(
            &cluster,
            "error: cqlsh cannot read keyspace thehive (check cassandra_user and CASSANDRA_PASSWORD, \
             cassandra_connection, cqlsh): `cqlsh 127.0.0.1` exited with code 1",
        )
        // cqlsh's reason is shown, the password is not.
        .stderr_contains("[Bad credentials]")
        .output_lacks("Wrong-Pass-2");
    // The private cqlshrc holding the password is removed.
    assert!(
        !cluster
            .backup_files()
            .iter()
            .any(|f| f.ends_with(".cqlshrc")),
        "{:?}",
        cluster.backup_files()
    );
    cluster.assert_nothing_snapshotted();

    cluster.knob("cqlsh-empty", "");
    backup(&cluster, &[]).run().failed_cleanly(
        &cluster,
        "cqlsh printed no CREATE KEYSPACE for thehive: is the keyspace name right and cqlsh able to connect?",
    );
    cluster.assert_nothing_snapshotted();
    assert!(
        !cluster
            .backup_files()
            .iter()
            .any(|f| f.ends_with(".tar") || f.ends_with(".cql")),
        "{:?}",
        cluster.backup_files()
    );
}

// ---------------------------------------------------------------- Elasticsearch

#[test]
fn partial_and_incompatible_elasticsearch_snapshots_fail_the_run_cleanly() {
    let cluster = Cluster::start(&[]);
    for state in ["PARTIAL", "INCOMPATIBLE"] {
        cluster.es_faults(serde_json::json!({ "snapshot_end": state }));
        backup(&cluster, &[])
            .run()
            .failed_cleanly(&cluster, &format!("ended {state}: "));
        assert_es_snapshots_deleted(&cluster);
        let files = cluster.backup_files();
        assert!(
            !files.iter().any(|f| f.starts_with("storage/")),
            "storage must not run after a failed part: {files:?}"
        );
    }
}

// ---------------------------------------------------------------- disk

#[test]
fn a_missing_too_small_or_read_only_archive_folder_fails_and_names_it() {
    let cluster = Cluster::start(&[]);
    let missing = cluster.dir.path().join("not-mounted");
    backup(&cluster, &["--set", &format!("storage_archive_path={}", missing.display())])
        .run()
        .failed_cleanly(
            &cluster,
            &format!(
                "archive folder {} (storage_archive_path) does not exist: create it, or mount the backup share",
                missing.display()
            ),
        );
    assert!(
        cluster.backup_files().is_empty(),
        "{:?}",
        cluster.backup_files()
    );
    assert!(!missing.exists(), "the folder must not be created");

    // Too small for the estimate: refused in pre-flight, before any snapshot.
    let small = cluster.dir.path().join("small");
    let _small_mount = TmpfsMount::new(&small, "size=8m");
    backup(
        &cluster,
        &[
            "--set",
            &format!("storage_archive_path={}", small.display()),
        ],
    )
    .run()
    .failed_cleanly(
        &cluster,
        &format!(
            "not enough space in {} for the attachment archive: about ",
            small.display()
        ),
    )
    .stderr_contains(" MiB needed, 8 MiB free");
    cluster.assert_nothing_snapshotted();

    let read_only = cluster.dir.path().join("read-only");
    let _mount = TmpfsMount::new(&read_only, "ro,size=200m");
    backup(
        &cluster,
        &[
            "--set",
            &format!("storage_archive_path={}", read_only.display()),
        ],
    )
    .run()
    .failed_cleanly(&cluster, &read_only.display().to_string())
    .stderr_contains("(storage_archive_path) is not writable")
    .stderr_contains("Read-only file system");
    // Caught in pre-flight, by a probe write: nothing was snapshotted.
    cluster.assert_nothing_snapshotted();
}

#[test]
fn disk_full_mid_archive_removes_the_partial_file_and_leaves_no_manifest() {
    let cluster = Cluster::start(&[]);
    let full = cluster.dir.path().join("small-disk");
    // Room for the pre-flight estimate (archive + 10% + 64 MiB)...
    let _mount = TmpfsMount::new(&full, "size=100m");
    // ...filled once pre-flight has passed (nodetool snapshot follows it), with
    // runbook stopped so that the attachment archive has not started yet.
    let run = spawn_backup(
        &cluster,
        &["--set", &format!("storage_archive_path={}", full.display())],
    )
    .wait_until("nodetool snapshot", || {
        invocations(&cluster).contains("\"snapshot\"")
    })
    .signal(Signal::SIGSTOP);
    let free = nix::sys::statvfs::statvfs(&full).unwrap();
    let room = free.blocks_available() as u64 * free.fragment_size() as u64;
    let filler = vec![0u8; (room - 512 * 1024) as usize];
    std::fs::write(full.join("filler"), filler).unwrap();
    run.signal(Signal::SIGCONT)
        .finish()
        .failed_cleanly(
            &cluster,
            &format!(
                "step tar_dir (attachments archive) failed: disk full writing {}/files_",
                full.display()
            ),
        )
        .stderr_contains("the archive needs about ")
        .stderr_contains(" MiB is free now that the partial archive is removed");
    let names: Vec<String> = std::fs::read_dir(&full)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["filler"], "the partial archive is removed");
    // The other parts of the set, in their own folders, are not damaged:
    // whatever archive is left there is whole (the set has no manifest, so it
    // is never taken for a complete backup).
    for folder in ["cassandra_archive", "storage_archive"] {
        let folder = cluster.path(folder);
        for sidecar in walk(&folder)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".sha256"))
        {
            let check = Command::new("sha256sum")
                .arg("-c")
                .arg(&sidecar)
                .current_dir(&folder)
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "{}",
                String::from_utf8_lossy(&check.stdout)
            );
        }
    }
    assert_es_snapshots_deleted(&cluster);
}

#[test]
fn an_unreadable_attachment_fails_the_run_naming_it() {
    let cluster = Cluster::start(&[]);
    let secret = cluster.path("attachments").join("00").join("locked.bin");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, b"nobody may read this").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads anything: run without the capabilities that bypass file modes.
    backup(&cluster, &[])
        .spawn_under(&[
            "setpriv",
            "--bounding-set",
            "-dac_override,-dac_read_search",
        ])
        .finish()
        .failed_cleanly(
            &cluster,
            &format!(
                "cannot read {} (use on_unreadable: \"skip\" to leave it out)",
                secret.display()
            ),
        );
    assert_es_snapshots_deleted(&cluster);
    assert!(
        !cluster
            .backup_files()
            .iter()
            .any(|f| f.starts_with("storage/")),
        "{:?}",
        cluster.backup_files()
    );
}

#[test]
fn files_whose_size_changes_while_read_give_a_well_formed_archive_with_a_warning() {
    // procfs files stat as 0 bytes and read as more (it "grew"); sysfs
    // attributes stat as 4096 bytes and read as fewer (it "shrank"): the same
    // code path as a file written to during the tar, without a race.
    let cluster = Cluster::start(&[]);
    let dir = cluster.dir.path();
    let archive = dir.join("changing.tar");
    let workflow = dir.join("changing.rhai");
    std::fs::write(
        &workflow,
        format!(
            r#"let out = tar_dir(#{{ dest: "{archive}", on_changed: "warn", entries: [
                   #{{ src: "/proc/self/status", path: "grew" }},
                   #{{ src: "/sys/kernel/mm/transparent_hugepage/enabled", path: "shrank" }},
               ] }});
               for w in out.warnings {{ log_warn(w); }}
               verify_archive(#{{ path: "{archive}", expect: ["grew", "shrank"], require_checksum: true }});
            "#,
            archive = archive.display()
        ),
    )
    .unwrap();
    run_workflow_file(&cluster, &workflow)
        .success()
        .stderr_contains(
            "/proc/self/status grew while being archived (past 0 bytes): stored its first 0 bytes",
        )
        .stderr_contains("/sys/kernel/mm/transparent_hugepage/enabled shrank while being archived");
    gnu_tar_extract(&archive, &dir.join("extracted"));
    assert_eq!(
        std::fs::metadata(dir.join("extracted/shrank"))
            .unwrap()
            .len(),
        4096
    );
}

// ---------------------------------------------------------------- signals

/// Signals one run at the point `reached` says, then checks exit code and cleanup.
fn interrupt_run(cluster: &Cluster, how: Signal, reached: impl FnMut() -> bool, what: &str) {
    interrupt_run_with(cluster, &[], how, reached, what);
}

/// [`interrupt_run`] of a run given `extra` arguments.
fn interrupt_run_with(
    cluster: &Cluster,
    extra: &[&str],
    how: Signal,
    reached: impl FnMut() -> bool,
    what: &str,
) {
    spawn_backup(cluster, extra)
        .wait_until(what, reached)
        .signal(how)
        .finish()
        .failure(128 + how as i32);
    assert_no_debris(cluster);
    assert_es_snapshots_deleted(cluster);
}

#[test]
fn sigint_and_sigterm_during_the_tar_clean_up() {
    let cluster = Cluster::start(&["--cassandra-mb", "150"]);
    let archives = cluster.path("cassandra_archive");
    for how in [Signal::SIGINT, Signal::SIGTERM] {
        interrupt_run(
            &cluster,
            how,
            || tar_partial_with_data(&archives),
            "the Cassandra archive to be written",
        );
        assert!(
            cluster.backup_files().is_empty(),
            "{how:?}: {:?}",
            cluster.backup_files()
        );
    }
}

#[test]
fn sigint_and_sigterm_during_the_mirror_clean_up() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "1500"]);
    let minio = cluster.path("s3_archive");
    let mirroring = || {
        walk_dirs(&minio).iter().any(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("minio_"))
        }) && walk(&minio).len() > 20
    };
    for how in [Signal::SIGINT, Signal::SIGTERM] {
        // The staging mode mirrors the bucket into a folder first (the
        // default, "stream", writes no mirror folder: the next test).
        interrupt_run_with(
            &cluster,
            &["--set", "s3_mode=staging"],
            how,
            mirroring,
            "the mirror to be under way",
        );
        let left: Vec<PathBuf> = walk(&minio);
        assert!(left.is_empty(), "{how:?}: {left:?}");
    }
}

#[test]
fn sigint_and_sigterm_while_the_bucket_streams_into_its_archive_clean_up() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "1500"]);
    let minio = cluster.path("s3_archive");
    for how in [Signal::SIGINT, Signal::SIGTERM] {
        interrupt_run(
            &cluster,
            how,
            || tar_partial_with_data(&minio),
            "the bucket archive to be written",
        );
        let left: Vec<PathBuf> = walk(&minio);
        assert!(left.is_empty(), "{how:?}: {left:?}");
    }
}

#[test]
fn sigint_and_sigterm_while_polling_elasticsearch_clean_up() {
    let cluster = Cluster::start(&[]);
    cluster.es_faults(serde_json::json!({ "snapshot_end": "IN_PROGRESS" }));
    for how in [Signal::SIGINT, Signal::SIGTERM] {
        let earlier = cluster.es_requests().len();
        interrupt_run(
            &cluster,
            how,
            || es_polled(&cluster, earlier),
            "a snapshot poll",
        );
    }
}

// ---------------------------------------------------------------- SIGKILL, then recovery

/// SIGKILLs a run once `reached`, then `runbook recover` must leave nothing behind.
fn kill_then_recover(cluster: &Cluster, reached: impl FnMut() -> bool, what: &str) -> Ran {
    // SIGKILL: no cleanup runs in the process.
    spawn_backup(cluster, &[]).wait_until(what, reached).kill();
    let recovered = cluster.recover().run().success();
    assert_no_debris(cluster);
    assert_es_snapshots_deleted(cluster);
    recovered
}

#[test]
fn sigkill_while_polling_elasticsearch_then_recover_deletes_the_snapshot() {
    let cluster = Cluster::start(&[]);
    cluster.es_faults(serde_json::json!({ "snapshot_end": "IN_PROGRESS" }));
    // Killed once the Cassandra branch is done (its clearsnapshot ran) and
    // Elasticsearch is being polled: the snapshot is the only debris.
    kill_then_recover(
        &cluster,
        || invocations(&cluster).contains("clearsnapshot") && es_polled(&cluster, 0),
        "the Cassandra branch to end while Elasticsearch is polled",
    )
    .stderr_contains("delete Elasticsearch snapshot elasticsearch_");
}

#[test]
fn sigkill_mid_tar_then_recover_clears_the_snapshot_and_the_partial_file() {
    let cluster = Cluster::start(&["--cassandra-mb", "150"]);
    let archives = cluster.path("cassandra_archive");
    let markers = cluster.path("es_archive");
    // Killed mid-tar, once the Elasticsearch branch has written its marker
    // (so the kill cannot land inside that small write).
    kill_then_recover(
        &cluster,
        || {
            tar_partial_with_data(&archives)
                && walk(&markers)
                    .iter()
                    .any(|p| p.to_string_lossy().ends_with(".info"))
        },
        "the Cassandra archive to be written after the marker",
    )
    .stderr_contains("clear Cassandra snapshot cassandra_")
    // The marker is removed.
    .stderr_contains(".info");
    let files = cluster.backup_files();
    assert!(
        !files.iter().any(|f| f.starts_with("cassandra/")),
        "{files:?}"
    );
}

#[test]
fn sigkill_while_cqlsh_runs_leaves_the_cqlshrc_only_in_the_private_folder_and_recover_removes_it() {
    use std::os::unix::fs::PermissionsExt;
    const PASSWORD: &str = "Cql-Rc-Pw-58";
    let cluster = Cluster::start(&["--cql-auth", &format!("backup:{PASSWORD}")]);
    // cqlsh waits before connecting: the kill lands while it runs.
    cluster.knob("cqlsh-delay", "5");
    let runtime = cluster.dir.path().join("runtime");
    let cqlshrc = || {
        walk(&runtime)
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with(".cqlshrc"))
    };
    // SIGKILL: no cleanup runs in the process.
    backup(&cluster, &[])
        .env("RUNTIME_DIRECTORY", &runtime)
        .spawn()
        .wait_until("the cqlshrc in the private folder", || {
            cqlshrc().is_some() && invocations(&cluster).contains("--cqlshrc")
        })
        .kill();
    let rc = cqlshrc().expect("the cqlshrc outlives a SIGKILL until recovery");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&rc), 0o600);
    assert_eq!(mode(rc.parent().unwrap()), 0o700);
    assert_eq!(rc.parent().unwrap().parent().unwrap(), runtime);
    // Nothing on the backup share holds the password.
    for file in walk(&cluster.path("backup")) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes
                .windows(PASSWORD.len())
                .any(|w| w == PASSWORD.as_bytes()),
            "the password is on the backup share in {}",
            file.display()
        );
    }
    cluster
        .recover()
        .run()
        .success()
        .stderr_contains("remove private folder");
    assert!(
        std::fs::read_dir(&runtime).unwrap().next().is_none(),
        "left in the runtime folder: {:?}",
        walk(&runtime)
    );
    assert_no_debris(&cluster);
    // A run that ends normally removes its private folder itself.
    cluster.knob("cqlsh-delay", "0");
    backup(&cluster, &[])
        .env("RUNTIME_DIRECTORY", &runtime)
        .run()
        .success();
    assert!(
        std::fs::read_dir(&runtime).unwrap().next().is_none(),
        "left in the runtime folder: {:?}",
        walk(&runtime)
    );
}

// ---------------------------------------------------------------- input

#[test]
fn non_utf8_and_newline_file_names_are_archived_and_restored_byte_identical() {
    let cluster = Cluster::start(&[]);
    let attachments = cluster.path("attachments");
    let odd: [&[u8]; 4] = [
        b"00/latin1-caf\xe9.bin",
        b"00/broken-\xff\xfe-utf8",
        b"00/two\nlines.txt",
        b"00/folder\nwith newline/inside\xe9.txt",
    ];
    for (i, name) in odd.iter().enumerate() {
        let path = attachments.join(OsStr::from_bytes(name));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("odd name {i}\n")).unwrap();
    }
    backup(&cluster, &[]).run().success();
    let backups = cluster.path("backup");
    let stamp = only_stamp(&backups, "backup_", ".json");
    let restore = cluster.dir.path().join("restore");
    gnu_tar_extract(
        &backups.join(format!("storage/files_{stamp}.tar")),
        &restore,
    );
    let restored = byte_tree(&restore.join(format!("files_{stamp}")));
    for name in odd {
        let key = name.to_vec();
        assert!(
            restored.contains_key(&key),
            "{} missing after GNU tar extraction",
            String::from_utf8_lossy(name)
        );
    }
    assert!(
        restored == byte_tree(&attachments),
        "the restored tree differs"
    );
}

// ---------------------------------------------------------------- security

/// Command lines (NUL-separated argv) of every descendant of `root`.
fn descendants_cmdlines(root: i32) -> Vec<Vec<u8>> {
    let mut parents: BTreeMap<i32, i32> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if let Some(ppid) = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse().ok())
        {
            parents.insert(pid, ppid);
        }
    }
    let is_descendant = |mut pid: i32| {
        while let Some(&parent) = parents.get(&pid) {
            if parent == root {
                return true;
            }
            if parent <= 1 {
                return false;
            }
            pid = parent;
        }
        false
    };
    parents
        .keys()
        .filter(|&&pid| is_descendant(pid))
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .collect()
}

#[test]
fn the_cassandra_password_is_never_on_a_child_command_line() {
    const PASSWORD: &str = "Cql-Secret-On-Proc-7";
    let cluster = Cluster::start(&["--cql-auth", &format!("backup:{PASSWORD}")]);
    // cqlsh waits 2 s before connecting: its command line is there to be read.
    cluster.knob("cqlsh-delay", "2");
    let mut run = spawn_backup(&cluster, &[]);
    let runbook_pid = run.pid();
    let mut seen: Vec<Vec<u8>> = Vec::new();
    while run.is_running() {
        for cmdline in descendants_cmdlines(runbook_pid) {
            if !seen.contains(&cmdline) {
                seen.push(cmdline);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    run.finish().success().output_lacks(PASSWORD);
    let shown: Vec<String> = seen
        .iter()
        .map(|c| String::from_utf8_lossy(c).replace('\0', " "))
        .collect();
    assert!(
        shown
            .iter()
            .any(|c| c.contains("cqlsh") && c.contains("--cqlshrc")),
        "cqlsh was never seen running: {shown:#?}"
    );
    for cmdline in &shown {
        assert!(
            !cmdline.contains(PASSWORD),
            "password on a command line: {cmdline}"
        );
    }
    assert!(!invocations(&cluster).contains(PASSWORD));
}

// ---------------------------------------------------------------- S3

/// Runs moto's S3 server in-process with one bucket filled through moto's
/// backend directly (10,000 HTTP uploads would take a minute); prints
/// `ready` once serving, and stops when stdin closes.
const MOTO_FILLED: &str = r#"
import sys
from moto.server import ThreadedMotoServer
from moto.s3.models import s3_backends
from moto.core import DEFAULT_ACCOUNT_ID
port, bucket, count, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
backend.create_bucket(bucket, "us-east-1")
for i in range(count):
    body = bytes((i * 7 + j) % 251 for j in range(size))
    backend.put_object(bucket, f"{i % 100:02d}/object-{i:05d}", body)
print("ready", flush=True)
sys.stdin.read()
server.stop()
"#;

/// A moto S3 server on a free port with `count` objects of `size` bytes in `bucket`.
struct FilledS3 {
    _child: support::ChildGuard,
    port: u16,
}

impl FilledS3 {
    fn start(bucket: &str, count: usize, size: usize) -> FilledS3 {
        use std::io::BufRead;
        let port = support::free_port();
        let mut child = Command::new(support::venv_bin("python"))
            .arg("-c")
            .arg(MOTO_FILLED)
            .args([
                port.to_string(),
                bucket.into(),
                count.to_string(),
                size.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "moto did not start");
        FilledS3 {
            _child: support::ChildGuard(child),
            port,
        }
    }
}

#[test]
fn more_than_ten_thousand_zero_byte_objects_are_all_mirrored() {
    let s3 = FilledS3::start("many", 10_001, 0);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("mirror");
    let workflow = work.path().join("many.rhai");
    std::fs::write(
        &workflow,
        format!(
            r#"let r = mcli_mirror(#{{ source: "many_s3/many", dest: "{}" }});
               log_info(`mirrored ${{r.objects}} objects, ${{r.downloaded}} downloaded, ${{r.bytes}} bytes`);"#,
            dest.display()
        ),
    )
    .unwrap();
    Test::at(work.path())
        .arg("run")
        .arg(&workflow)
        .env(
            "MC_HOST_many_s3",
            format!("http://test:test@127.0.0.1:{}", s3.port),
        )
        .env("HOME", work.path())
        .run()
        .success()
        .stderr_contains("mirrored 10001 objects, 10001 downloaded, 0 bytes");
    let files = walk(&dest);
    assert_eq!(files.len(), 10_001);
    assert!(
        files
            .iter()
            .all(|f| std::fs::metadata(f).unwrap().len() == 0)
    );
}

/// A TCP relay in front of an S3 server that holds the first response
/// passing `after` bytes until released: the object can be changed
/// mid-download. Its threads end with the test process.
struct PausingRelay {
    port: u16,
    fired: std::sync::Arc<std::sync::atomic::AtomicBool>,
    release: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl PausingRelay {
    fn start(upstream: u16, after: usize) -> PausingRelay {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Condvar, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fired = Arc::new(AtomicBool::new(false));
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let (relay_fired, relay_release) = (Arc::clone(&fired), Arc::clone(&release));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut client_read, mut server_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_read, &mut server_write);
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                });
                let (fired, release) = (Arc::clone(&relay_fired), Arc::clone(&relay_release));
                let (mut server_read, mut client_write) = (server, client);
                std::thread::spawn(move || {
                    let mut sent = 0;
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buffer) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let mut from = 0;
                        if sent + n > after && !fired.swap(true, Ordering::SeqCst) {
                            from = after - sent;
                            if client_write.write_all(&buffer[..from]).is_err() {
                                break;
                            }
                            let (released, wake) = &*release;
                            let mut released = released.lock().unwrap();
                            while !*released {
                                released = wake.wait(released).unwrap();
                            }
                        }
                        sent += n;
                        if client_write.write_all(&buffer[from..n]).is_err() {
                            break;
                        }
                    }
                    let _ = client_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        PausingRelay {
            port,
            fired,
            release,
        }
    }

    fn fired(&self) -> bool {
        self.fired.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn release(&self) {
        let (released, wake) = &*self.release;
        *released.lock().unwrap() = true;
        wake.notify_all();
    }
}

#[test]
fn an_object_changed_while_downloaded_is_stored_whole_never_mixed() {
    const SIZE: usize = 1 << 20;
    let s3 = FilledS3::start("blob", 1, SIZE);
    let original: Vec<u8> = (0..SIZE).map(|j| (j % 251) as u8).collect();
    let changed: Vec<u8> = (0..SIZE + 4096).map(|j| (j % 13) as u8).collect();
    let relay = PausingRelay::start(s3.port, 300 * 1024);
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("mirror");
    let workflow = work.path().join("changing.rhai");
    std::fs::write(
        &workflow,
        format!(
            r#"let r = mcli_mirror(#{{ source: "blob", dest: "{}", endpoint: "http://127.0.0.1:{}",
                                      access_key: "test", secret_key: "test" }});
               log_info(`downloaded ${{r.downloaded}}`);"#,
            dest.display(),
            relay.port
        ),
    )
    .unwrap();
    let mirror = || Test::at(work.path()).arg("run").arg(&workflow);
    let download = mirror()
        .spawn()
        .wait_until("the download to be under way", || relay.fired());
    // Replace the object behind the mirror's back, then let the download go on.
    let new_body = work.path().join("new-body");
    std::fs::write(&new_body, &changed).unwrap();
    let put = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--aws-sigv4",
            "aws:amz:us-east-1:s3",
            "--user",
            "test:test",
            "-H",
            "Content-Type: application/octet-stream",
            "-X",
            "PUT",
            "--data-binary",
        ])
        .arg(format!("@{}", new_body.display()))
        .arg(format!("http://127.0.0.1:{}/blob/00/object-00000", s3.port))
        .output()
        .unwrap();
    assert!(put.status.success(), "{}", stderr(&put));
    relay.release();
    download.finish().success();
    let stored = std::fs::read(dest.join("00/object-00000")).unwrap();
    assert!(
        stored == original || stored == changed,
        "the stored file mixes two versions ({} bytes)",
        stored.len()
    );
    assert_eq!(
        walk(&dest).len(),
        1,
        "a .partial file was left: {:?}",
        walk(&dest)
    );
    // The next run brings the new version.
    let next = mirror().run().success();
    let stored = std::fs::read(dest.join("00/object-00000")).unwrap();
    assert!(
        stored == changed,
        "the new version ({} bytes) was not fetched: {} bytes stored\n{}",
        changed.len(),
        stored.len(),
        next.stderr
    );
}

// ---------------------------------------------------------------- pre-flight (issue 12 §5)

/// Runs `test`; the finished run and how long it took.
fn timed(test: Test) -> (Ran, Duration) {
    let started = Instant::now();
    let ran = test.run();
    (ran, started.elapsed())
}

/// `runbook run cluster-hot-backup` with the sandbox's vars and environment,
/// without the harness's `--set elasticsearch_poll`.
fn stock_backup(cluster: &Cluster) -> Test {
    cluster
        .bare_runbook(["run", "cluster-hot-backup", "--vars"])
        .arg(cluster.path("vars"))
}

/// `--set` arguments, environment variables, the expected message.
type PreflightCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn configuration_mistakes_fail_in_preflight_with_exit_2_naming_the_key() {
    let cluster = Cluster::start(&[]);
    let offsite_alias = ("MC_HOST_offsite", "http://key:secretkey@127.0.0.1:1");
    let cases: &[PreflightCase] = &[
        (
            &["--set", "storage=S3"],
            &[],
            r#"config key `storage` (from --set): "S3" is not allowed (allowed: "local", "s3" or "none")"#,
        ),
        (
            &["--set", "max_rate=fast"],
            &[],
            r#"config key `max_rate` (from --set): "fast" is not a rate: expected a number and a unit: B, kB, MB, GB, KiB, MiB or GiB (allowed: a rate like "200MiB/s" or "50MB/s", or "" for no limit)"#,
        ),
        (
            &["--set", "keep=-1"],
            &[],
            "config key `keep` (from --set): -1 is too small (allowed: 0 to 10000)",
        ),
        (
            &["--set", "keep=99999999999999999999"],
            &[],
            "config key `keep` (from --set): 99999999999999999999 is far too large (allowed: 0 to 10000)",
        ),
        (
            &["--set", "elasticsearch_poll=0s"],
            &[],
            r#"config key `elasticsearch_poll` (from --set): "0s" is too small (allowed: a duration from 1s to 10m"#,
        ),
        (
            &[],
            &[("RUNBOOK_KEPP", "3")],
            "environment variable RUNBOOK_KEPP names no config key of this workflow (did you mean RUNBOOK_KEEP?)",
        ),
        (
            &["--set", "elasticsearch_url=127.0.0.1:9200"],
            &[],
            "error: elasticsearch_url: `127.0.0.1:9200` is not a URL: relative URL without a base (write it like http://127.0.0.1:9200)",
        ),
        (
            &["--set", "cassandra_user=backup"],
            &[],
            r#"error: cassandra_user is "backup", so a password is needed: secret CASSANDRA_PASSWORD is not set"#,
        ),
        (
            &[
                "--set",
                "metrics_file=/nonexistent-runbook-folder/runbook.prom",
            ],
            &[],
            "error: metrics_file /nonexistent-runbook-folder/runbook.prom: cannot write in /nonexistent-runbook-folder: No such file or directory",
        ),
        (
            &["--set", "offsite=offsite/bucket/../../x"],
            &[offsite_alias],
            "error: offsite offsite/bucket/../../x: the prefix `../../x/` of `offsite/bucket/../../x` is not a valid object path",
        ),
        (
            &[
                "--set",
                "storage=s3",
                "--set",
                "s3_source=nosuchalias/thehive",
            ],
            &[],
            "error: s3_source nosuchalias/thehive: alias `nosuchalias` not found",
        ),
    ];
    for (args, env, expected) in cases {
        let mut test = if args.iter().any(|a| a.starts_with("elasticsearch_poll=")) {
            // The harness sets its own elasticsearch_poll with --set: run without it.
            stock_backup(&cluster).args(*args)
        } else {
            backup(&cluster, args)
        };
        for (key, value) in *env {
            test = test.env(key, value);
        }
        let (ran, took) = timed(test);
        let ran = ran.failure(2).stderr_contains(expected);
        assert!(
            took < Duration::from_secs(5),
            "{args:?}: pre-flight took {took:?}"
        );
        assert!(
            !ran.stderr.contains("retrying"),
            "{args:?} {env:?}: retried:\n{}",
            ran.stderr
        );
        cluster.assert_nothing_snapshotted();
        assert!(
            cluster.backup_files().is_empty(),
            "{args:?}: {:?}",
            cluster.backup_files()
        );
    }
}

/// A loopback HTTP server that is not Elasticsearch: Python's http.server
/// serving a folder listing. Killed on drop.
fn not_elasticsearch(dir: &Path) -> ServerProcess {
    let port = support::free_port();
    let mut command = Command::new(support::venv_bin("python"));
    command
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .current_dir(dir);
    ServerProcess::spawn_quiet(command, port, "python -m http.server")
}

#[test]
fn a_wrong_elasticsearch_url_fails_in_preflight_within_seconds_saying_what_answered() {
    let cluster = Cluster::start(&[]);
    // Nothing listens: refused at once, no retries.
    let closed = support::free_port();
    let (ran, took) = timed(backup(
        &cluster,
        &[
            "--set",
            &format!("elasticsearch_url=http://127.0.0.1:{closed}"),
        ],
    ));
    let ran = ran.failed_cleanly(
        &cluster,
        &format!(
            "error: elasticsearch_url: nothing answers at http://127.0.0.1:{closed}/: Connection refused"
        ),
    );
    let err = &ran.stderr;
    assert!(took < Duration::from_secs(5), "took {took:?}:\n{err}");
    assert!(!err.contains("retrying"), "{err}");
    assert!(!err.contains("not registered"), "wrong advice:\n{err}");

    // Something accepts connections but never answers: the probe's own
    // timeout, not minutes of retries.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let (ran, took) = timed(backup(
        &cluster,
        &[
            "--set",
            &format!("elasticsearch_url=http://127.0.0.1:{silent_port}"),
        ],
    ));
    ran.failed_cleanly(
        &cluster,
        &format!(
            "error: elasticsearch_url: nothing answers at http://127.0.0.1:{silent_port}/: no answer within 3s"
        ),
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(silent);

    // A web server that is not Elasticsearch.
    let web = not_elasticsearch(cluster.dir.path());
    let (ran, took) = timed(backup(
        &cluster,
        &[
            "--set",
            &format!("elasticsearch_url=http://127.0.0.1:{}", web.port),
        ],
    ));
    ran.failed_cleanly(
        &cluster,
        &format!(
            "error: elasticsearch_url: http://127.0.0.1:{}/ answers, but this is not Elasticsearch/OpenSearch: GET / answered no JSON: <!DOCTYPE HTML",
            web.port
        ),
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    cluster.assert_nothing_snapshotted();
}

#[test]
fn a_replication_factor_below_the_node_count_fails_preflight_unless_allowed() {
    let cluster = Cluster::start(&[]);
    cluster.knob("replication", "1");
    backup(&cluster, &[]).run().failed_cleanly(
        &cluster,
        "error: keyspace thehive has replication factor 1 but nodetool status lists 3 nodes: \
         this node's snapshot would hold only part of the data; raise the replication factor \
         (ALTER KEYSPACE), or set allow_partial_replication=true and back up every node",
    );
    cluster.assert_nothing_snapshotted();

    // NetworkTopologyStrategy: per datacenter.
    cluster.knob("replication", "datacenter1=2");
    backup(&cluster, &[]).run().failed_cleanly(
        &cluster,
        "error: keyspace thehive has replication factor 2 in datacenter datacenter1, which has 3 nodes",
    );
    cluster.assert_nothing_snapshotted();

    // Allowed: a warning with the numbers, and the backup is made.
    backup(&cluster, &["--set", "allow_partial_replication=true"])
        .run()
        .success()
        .stderr_contains(
        "keyspace thehive has replication factor 2 in datacenter datacenter1, which has 3 nodes: \
         this node's snapshot would hold only part of the data (allow_partial_replication is set: going on; back up every node)",
    );
    only_stamp(&cluster.path("backup"), "backup_", ".json");

    // Replication factor 3 on 3 nodes (the sandbox's default) passes silently.
    std::fs::remove_file(cluster.path("state").join("replication")).unwrap();
    backup(&cluster, &[])
        .run()
        .success()
        .output_lacks("replication factor");
}

/// Modification times of the archive folders: creating and removing a probe
/// file in a folder changes its mtime.
fn folder_mtimes(cluster: &Cluster) -> Vec<(String, std::time::SystemTime)> {
    [
        "cassandra_archive",
        "es_archive",
        "storage_archive",
        "backup",
    ]
    .iter()
    .map(|key| {
        let path = cluster.path(key);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        (path.display().to_string(), mtime)
    })
    .collect()
}

#[test]
fn plan_checks_the_archive_folders_without_writing_in_them() {
    let cluster = Cluster::start(&[]);
    // Folder times in the past, so that any probe file would show.
    for key in [
        "cassandra_archive",
        "es_archive",
        "storage_archive",
        "backup",
    ] {
        let status = Command::new("touch")
            .args(["-m", "-d", "2020-01-01 00:00:00"])
            .arg(cluster.path(key))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let before = folder_mtimes(&cluster);
    cluster
        .runbook(&["plan", "cluster-hot-backup"])
        .run()
        .success();
    assert_eq!(
        folder_mtimes(&cluster),
        before,
        "plan wrote in an archive folder"
    );

    // A read-only archive folder is found by the plan, too.
    let read_only = cluster.dir.path().join("read-only");
    let _mount = TmpfsMount::new(&read_only, "ro,size=10m");
    cluster
        .runbook(&[
            "plan",
            "cluster-hot-backup",
            "--set",
            &format!("storage_archive_path={}", read_only.display()),
        ])
        .run()
        .failure(1)
        .stderr_contains(&format!(
            "error: archive folder {} (storage_archive_path) is not writable: Read-only file system",
            read_only.display()
        ));
}

#[test]
fn s3_storage_plan_shows_the_offsite_copy_and_the_mirror_folder_must_hold_the_bucket() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "20"]);
    cluster.make_bucket("offsite");
    let planned = cluster
        .runbook(&[
            "plan",
            "cluster-hot-backup",
            "--set",
            "offsite=th_minio/offsite/sets",
        ])
        .run()
        .success();
    let err = &planned.stderr;
    let line = err
        .lines()
        .find(|l| l.contains("[dry-run] would copy to th_minio/offsite/sets:"))
        .unwrap_or_else(|| panic!("no off-site line in:\n{err}"));
    for part in [
        "cassandra_",
        ".tar.sha256",
        "elasticsearch_",
        ".info",
        "minio_",
    ] {
        assert_contains(line, part);
    }
    assert_contains(line, ".json last");
    assert!(
        cluster.backup_files().is_empty(),
        "{:?}",
        cluster.backup_files()
    );

    // The bucket's listing sizes the mirror: a mirror folder too small for the
    // objects and their archive is refused before any snapshot.
    let small = cluster.dir.path().join("small");
    let _small_mount = TmpfsMount::new(&small, "size=8m");
    backup(
        &cluster,
        &["--set", &format!("s3_archive_path={}", small.display())],
    )
    .run()
    .failed_cleanly(
        &cluster,
        &format!(
            "error: not enough space in {} for the bucket mirror and its archive: about ",
            small.display()
        ),
    );
    cluster.assert_nothing_snapshotted();
}

// ---------------------------------------------------------------- Elasticsearch polling (issue 12 §4)

#[test]
fn one_http_500_and_one_cut_off_answer_while_polling_do_not_fail_the_backup() {
    let cluster = Cluster::start(&[]);
    let poll = "^/_snapshot/thehive_repository/elasticsearch_";
    cluster.es_faults(serde_json::json!({
        "snapshot_polls": 3,
        "rules": [
            // The first GET of the snapshot is the stamp check, before the PUT.
            {"method": "GET", "path": poll, "pass": 1, "status": 500, "count": 1},
            {"method": "GET", "path": poll, "action": "malformed", "count": 1},
        ],
    }));
    backup(&cluster, &[])
        .run()
        .success()
        .stderr_contains("reading its state failed")
        .output_lacks("lost track");
    let statuses: Vec<String> = cluster
        .es_requests()
        .iter()
        .filter(|r| {
            r["method"] == "GET"
                && r["path"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("/_snapshot/thehive_repository/elasticsearch_")
        })
        .map(|r| r["status"].to_string())
        .collect();
    assert!(
        statuses.contains(&"500".to_string()),
        "the 500 was not served: {statuses:?}"
    );
    only_stamp(&cluster.path("backup"), "backup_", ".json");
}

/// Issue 12 §1: a set made by TheHive's own scripts (archives and `.info`
/// marker, no runbook manifest) and its snapshot survive a run killed
/// mid-tar, `runbook recover`, and the next run's retention with keep=1:
/// never counted, never removed, a warning in the run's output.
#[test]
fn a_guide_made_set_survives_sigkill_recover_and_retention() {
    let cluster = Cluster::start(&["--cassandra-mb", "150"]);
    let backups = cluster.path("backup");
    let guide = "20200101_01h00m00s";
    let guide_files = [
        format!("cassandra/cassandra_{guide}.tar"),
        format!("storage/files_{guide}.tar"),
        format!("elasticsearch/elasticsearch_{guide}.info"),
    ];
    for file in &guide_files {
        std::fs::write(backups.join(file), b"made by the guide's scripts\n").unwrap();
    }
    let snapshot = format!("elasticsearch_{guide}");
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-d",
        ])
        .arg(r#"{"indices":"thehive_global"}"#)
        .arg(format!(
            "{}/_snapshot/thehive_repository/{snapshot}?wait_for_completion=true",
            cluster.es_url()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "creating the guide's snapshot failed");

    let archives = cluster.path("cassandra_archive");
    spawn_backup(&cluster, &["--set", "keep=1"])
        .wait_until("the Cassandra archive to be written", || {
            tar_partial_with_data(&archives)
        })
        .kill();
    cluster.recover().run().success();

    backup(&cluster, &["--set", "keep=1"])
        .run()
        .success()
        .stderr_contains(&format!("set {guide} left alone: foreign set"));
    let files = cluster.backup_files();
    for file in &guide_files {
        assert!(files.contains(file), "{file} was removed: {files:?}");
    }
    assert!(
        !es_snapshots(&cluster, "DELETE").contains(&snapshot),
        "the guide's snapshot was deleted: {:?}",
        cluster.es_requests()
    );
}
