//! The attachment-storage part of cluster-hot-restore
//! (`workflows/lib/restore_storage.rhai`), through the real `runbook` binary
//! and a small workflow importing the lib, on one sandbox started with
//! `--storage s3` (stand-in Cassandra and Elasticsearch, a real S3 server:
//! moto_server) whose attachment folder is kept too, so both storages are
//! proven on it:
//! - round trips: digest, back up with the stock workflow, add, change and
//!   delete files (or objects), restore, digest equal to the backup-time one,
//!   for a folder and for a bucket;
//! - undo: a full disk mid-extraction, a SIGTERM mid-extraction and a SIGKILL
//!   followed by `runbook recover` leave the folder exactly as before;
//! - the `minio` / `seaweedfs` archive names: a seaweedfs-named set is listed,
//!   verified, prepared by restore-prep and restored.
//!
//! The sandbox is started once for this test binary and stopped when it
//! exits; tests take turns. A sandbox that cannot start fails every test with
//! the reason; none is skipped.

use runbook_test_support::restore_proof::set_stamps;
use runbook_test_support::{Ran, Running, SharedCluster, Test, TmpfsMount, cluster, support};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use cluster::*;
use nix::sys::signal::Signal;
use support::{assert_contains, repo_root, sorted_names, venv_bin};

/// The shared sandbox, started on first use: tests change its attachments,
/// so they take turns.
static SANDBOX: SharedCluster = SharedCluster::sandbox(|| vec!["--storage".into(), "s3".into()]);

fn sandbox() -> (&'static Cluster, MutexGuard<'static, ()>) {
    SANDBOX.take()
}

/// The test workflow: the lib's functions in the order cluster-hot-restore
/// calls them, on the set `stamp`. `fill` fills the disk holding that path
/// once the pre-flight has passed; `fail_after=restore` fails once the
/// restore is done (the undo must put everything back); `tamper` writes that
/// file between the restore and its verification.
const RESTORE_WORKFLOW: &str = r#"
import "lib/restore_storage" as storage;
let cfg = config(#{
    storage: "local",
    attachment_folder: "",
    s3_source: "th_minio/thehive",
    manifest_path: "",
    staging: "",
    stamp: "",
    fill: "",
    fail_after: "",
    tamper: "",
} + storage::config_defaults());
let set = backup_manifest(cfg.manifest_path, cfg.stamp).manifest;
let source = ();
for archive in set.archives { if archive.part != "cassandra" { source = archive.path; } }
for line in storage::plan(cfg, set, source) { log_info(`plan: ${line}`); }
storage::preflight(cfg, set, source);
if cfg.fill != "" {
    exec(#{ cmd: "sh", args: ["-c", "dd if=/dev/zero of=\"$1\" bs=64k 2>/dev/null; truncate -s -1M \"$1\"", "fill", cfg.fill] });
}
let safety = storage::safety_copy(cfg, set, set.stamp);
let restored = storage::restore(cfg, set, source);
if cfg.fail_after == "restore" { fail("failing on purpose after the restore"); }
if cfg.tamper != "" { write_file(cfg.tamper, "written between the restore and its check"); }
let verified = storage::verify(cfg, set, source, restored);
for id in safety.undo_ids { dismiss(id); }
log_info(`restored: ${verified.to_json()}; safety copy ${safety.name}`);
"#;

const DISCARD_WORKFLOW: &str = r#"
import "lib/restore_storage" as storage;
let cfg = config(#{ storage: "local", attachment_folder: "", s3_source: "th_minio/thehive", staging: "", stamp: "" });
storage::discard_safety(cfg, cfg.stamp);
"#;

/// A folder holding the two test workflows beside a copy of the lib.
fn workflows(cluster: &Cluster) -> PathBuf {
    let folder = cluster.dir.path().join("workflows");
    std::fs::create_dir_all(folder.join("lib")).unwrap();
    std::fs::copy(
        repo_root().join("workflows/lib/restore_storage.rhai"),
        folder.join("lib/restore_storage.rhai"),
    )
    .unwrap();
    std::fs::write(folder.join("storage-restore.rhai"), RESTORE_WORKFLOW).unwrap();
    std::fs::write(folder.join("storage-discard.rhai"), DISCARD_WORKFLOW).unwrap();
    folder
}

/// `runbook VERB WORKFLOW` with the sandbox's environment and `--set`s.
fn workflow(cluster: &Cluster, verb: &str, name: &str, sets: &[(&str, String)]) -> Test {
    let mut test = cluster
        .bare_runbook([verb])
        .arg(workflows(cluster).join(name));
    for (key, value) in sets {
        test = test.arg("--set").arg(format!("{key}={value}"));
    }
    test
}

fn staging(cluster: &Cluster) -> String {
    cluster.dir.path().join("staging").display().to_string()
}

/// The restore test workflow on set `stamp`.
fn restore_run(cluster: &Cluster, stamp: &str, sets: &[(&str, String)]) -> Test {
    let mut all = vec![
        (
            "manifest_path",
            cluster.path("backup").display().to_string(),
        ),
        ("staging", staging(cluster)),
        ("stamp", stamp.to_string()),
    ];
    all.extend_from_slice(sets);
    workflow(cluster, "run", "storage-restore.rhai", &all)
}

/// Runs the restore test workflow on set `stamp`.
fn restore(cluster: &Cluster, stamp: &str, sets: &[(&str, String)]) -> Ran {
    restore_run(cluster, stamp, sets).run()
}

/// Runs the workflow that discards the safety copy of the restore of `stamp`.
fn discard(cluster: &Cluster, stamp: &str, sets: &[(&str, String)]) -> Ran {
    let mut all = vec![("staging", staging(cluster)), ("stamp", stamp.to_string())];
    all.extend_from_slice(sets);
    workflow(cluster, "run", "storage-discard.rhai", &all).run()
}

/// The stock backup workflow with these `--set`s; the new set's stamp.
fn backup(cluster: &Cluster, sets: &[(&str, String)]) -> String {
    let before = set_stamps(cluster);
    let mut args = vec!["run".to_string(), "cluster-hot-backup".to_string()];
    for (key, value) in sets {
        args.push("--set".into());
        args.push(format!("{key}={value}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cluster.runbook(&args).run().success();
    let new: Vec<String> = set_stamps(cluster).difference(&before).cloned().collect();
    assert_eq!(new.len(), 1, "one new set expected: {new:?}");
    new[0].clone()
}

/// `sandbox.py digest DIR --attachments folder|bucket`: the attachments' count
/// and a hash of their sorted paths and contents.
fn digest(cluster: &Cluster, place: &str) -> serde_json::Value {
    cluster.digest_of(&["--attachments", place])["attachments"].clone()
}

/// Everything about a folder that the restore must keep or bring back: each
/// entry's relative path, kind, mode, owner and content (files) or target
/// (symlinks), and the folder's own mode and owner.
fn exact_state(root: &Path) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let mut state = BTreeMap::new();
    let meta = std::fs::symlink_metadata(root).unwrap();
    state.insert(
        ".".to_string(),
        format!(
            "dir {:o} {}:{}",
            meta.mode() & 0o7777,
            meta.uid(),
            meta.gid()
        ),
    );
    fn visit(root: &Path, folder: &Path, state: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(folder).unwrap().flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            let head = format!("{:o} {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid());
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                state.insert(relative, format!("link {head} -> {}", target.display()));
            } else if meta.is_dir() {
                state.insert(relative, format!("dir {head}"));
                visit(root, &path, state);
            } else {
                let content = Sha256::digest(std::fs::read(&path).unwrap());
                state.insert(relative, format!("file {head} {content:x}"));
            }
        }
    }
    visit(root, root, &mut state);
    state
}

/// Adds, changes and deletes files (and a folder) in `folder`.
fn change_files(folder: &Path) {
    let files: Vec<PathBuf> = walk(folder);
    assert!(files.len() > 3, "too few attachments to change");
    std::fs::write(&files[0], b"changed after the backup").unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    std::fs::create_dir_all(folder.join("written-later")).unwrap();
    std::fs::write(folder.join("written-later/new.txt"), b"new").unwrap();
    std::fs::write(folder.join("added.txt"), b"added").unwrap();
}

/// Boto3 against the sandbox's bucket.
fn bucket_python(cluster: &Cluster, body: &str) -> String {
    let endpoint = cluster.record["s3_endpoint"].as_str().unwrap();
    let script = format!(
        "import sys, boto3\ns3 = boto3.client('s3', endpoint_url=sys.argv[1], aws_access_key_id='test', \
         aws_secret_access_key='test', region_name='us-east-1')\n{body}"
    );
    let out = Command::new(venv_bin("python"))
        .args(["-c", &script, endpoint])
        .output()
        .unwrap();
    assert!(out.status.success(), "boto3 failed: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies the sandbox's attachments into `dest` (a new folder).
fn copy_attachments(cluster: &Cluster, dest: &Path) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let out = Command::new("cp")
        .arg("-a")
        .arg(cluster.path("attachments"))
        .arg(dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp: {}", stderr(&out));
}

// ---------------------------------------------------------------- round trips

#[test]
fn a_folder_restore_brings_back_exactly_the_backed_up_attachments_and_keeps_a_safety_copy() {
    let (cluster, _turn) = sandbox();
    let folder = cluster.path("attachments");
    let local = [("storage", "local".to_string())];
    // TheHive's own user and mode on its folder: the restored folder must keep them.
    std::fs::set_permissions(&folder, std::os::unix::fs::PermissionsExt::from_mode(0o750)).unwrap();
    std::os::unix::fs::chown(&folder, Some(65534), Some(65534)).unwrap();
    let at_backup = digest(cluster, "folder");
    let stamp = backup(cluster, &local);

    change_files(&folder);
    let changed = exact_state(&folder);
    assert_ne!(digest(cluster, "folder"), at_backup);
    let parent = folder.parent().unwrap();

    // A plan changes nothing and prints the actions.
    let sets = [
        ("storage", "local".to_string()),
        ("attachment_folder", folder.display().to_string()),
    ];
    let mut plan_sets = sets.to_vec();
    plan_sets.extend([
        (
            "manifest_path",
            cluster.path("backup").display().to_string(),
        ),
        ("staging", staging(cluster)),
        ("stamp", stamp.clone()),
    ]);
    let plan = workflow(cluster, "plan", "storage-restore.rhai", &plan_sets)
        .run()
        .success();
    let plan_log = &plan.stderr;
    assert_contains(
        plan_log,
        &format!(
            "mv -T -- {} {}.pre_restore_{stamp}",
            folder.display(),
            folder.display()
        ),
    );
    assert_contains(plan_log, "--strip-components=1");
    assert_eq!(exact_state(&folder), changed, "the plan changed the folder");
    assert!(
        !parent
            .join(format!("attachments.pre_restore_{stamp}"))
            .exists()
    );

    // A folder that is not what the archive held after the restore fails the
    // check, and the undo puts the folder back as it was before.
    let mut tampered = sets.to_vec();
    tampered.push((
        "tamper",
        folder.join("7f-written-meanwhile").display().to_string(),
    ));
    let out = restore(cluster, &stamp, &tampered).failure(1);
    let err = &out.stderr;
    assert_contains(
        err,
        &format!("the attachment folder {} holds ", folder.display()),
    );
    assert_contains(
        err,
        &format!("after the restore, the archive files_{stamp}.tar "),
    );
    assert_contains(err, "put back: the attachment folder");
    assert_eq!(
        exact_state(&folder),
        changed,
        "the undo did not put the folder back"
    );
    assert!(
        !sorted_names(parent).iter().any(|n| n.contains("restore_")),
        "leftovers: {:?}\n{err}",
        sorted_names(parent)
    );

    let restored = restore(cluster, &stamp, &sets).success();
    let log = &restored.stderr;
    assert_eq!(digest(cluster, "folder"), at_backup, "{log}");
    let meta = std::fs::metadata(&folder).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o750,
        "the live folder's mode is kept"
    );
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "the live folder's owner is kept"
    );
    assert_contains(log, "attachments verified:");
    // The safety copy is the folder as it was just before, untouched.
    let aside = parent.join(format!("attachments.pre_restore_{stamp}"));
    assert_eq!(exact_state(&aside), changed);
    assert!(
        !sorted_names(parent).iter().any(|n| n.contains(".restore_")),
        "the extraction folder was left: {:?}",
        sorted_names(parent)
    );

    // A second restore of the same set refuses while that copy is there.
    let again = restore(cluster, &stamp, &sets).failure(1);
    assert_contains(
        &again.stderr,
        &format!(
            "{} exists: the safety copy of an earlier restore of set {stamp}",
            aside.display()
        ),
    );
    assert_eq!(digest(cluster, "folder"), at_backup);

    // discard_safety drops it (and only with its marker), twice is harmless.
    discard(cluster, &stamp, &sets).success();
    assert!(!aside.exists());
    assert!(
        !parent
            .join(format!("attachments.pre_restore_{stamp}.made-by-runbook"))
            .exists()
    );
    discard(cluster, &stamp, &sets)
        .success()
        .stderr_contains("no safety copy");
    // A folder by that name that no restore made is left alone.
    std::fs::create_dir(&aside).unwrap();
    let foreign = discard(cluster, &stamp, &sets).failure(1);
    assert_contains(&foreign.stderr, "it is left alone");
    assert!(aside.exists());
    std::fs::remove_dir(&aside).unwrap();
    assert_eq!(digest(cluster, "folder"), at_backup);
}

#[test]
fn a_bucket_restore_makes_the_bucket_exactly_the_backed_up_objects() {
    let (cluster, _turn) = sandbox();
    let at_backup = digest(cluster, "bucket");
    let stamp = backup(cluster, &[("storage", "s3".to_string())]);
    bucket_python(
        cluster,
        "keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='thehive')['Contents'])\n\
         s3.put_object(Bucket='thehive', Key=keys[0], Body=b'changed after the backup')\n\
         s3.delete_object(Bucket='thehive', Key=keys[1])\n\
         s3.put_object(Bucket='thehive', Key='written-later/new.txt', Body=b'new')\n",
    );
    let before = digest(cluster, "bucket");
    assert_ne!(before, at_backup);

    let sets = [("storage", "s3".to_string())];
    // An object whose key cannot be a file cannot be set aside: refused, nothing changed.
    bucket_python(
        cluster,
        "s3.put_object(Bucket='thehive', Key='bad//key', Body=b'x')\n",
    );
    let with_bad_key = digest(cluster, "bucket");
    let out = restore(cluster, &stamp, &sets).failure(1);
    assert_contains(
        &out.stderr,
        "1 objects of th_minio/thehive have keys that cannot be stored as files, so they cannot be set aside (nothing was changed)",
    );
    assert_eq!(digest(cluster, "bucket"), with_bad_key);
    assert!(sorted_names(Path::new(&staging(cluster))).is_empty());
    bucket_python(
        cluster,
        "s3.delete_object(Bucket='thehive', Key='bad//key')\n",
    );
    assert_eq!(digest(cluster, "bucket"), before);

    // Failing after the restore puts the bucket back as it was before it.
    let failed = restore(
        cluster,
        &stamp,
        &[
            ("storage", "s3".to_string()),
            ("fail_after", "restore".into()),
        ],
    )
    .failure(1);
    assert_contains(
        &failed.stderr,
        "put back: the bucket th_minio/thehive as it was",
    );
    assert_eq!(
        digest(cluster, "bucket"),
        before,
        "the undo did not put the bucket back"
    );
    assert!(
        sorted_names(Path::new(&staging(cluster))).is_empty(),
        "{:?}",
        sorted_names(Path::new(&staging(cluster)))
    );

    let log = restore(cluster, &stamp, &sets).success().stderr;
    assert_eq!(digest(cluster, "bucket"), at_backup, "{log}");
    assert_contains(
        &log,
        "attachments verified: th_minio/thehive holds the archive's",
    );
    // The safety copy holds the objects as they were just before.
    let aside = Path::new(&staging(cluster)).join(format!("bucket.pre_restore_{stamp}"));
    assert!(aside.join("written-later/new.txt").is_file());
    discard(cluster, &stamp, &sets).success();
    assert!(!aside.exists());
    assert!(sorted_names(Path::new(&staging(cluster))).is_empty());
}

// ---------------------------------------------------------------- undo

#[test]
fn a_full_disk_mid_extraction_leaves_the_folder_exactly_as_it_was() {
    let (cluster, _turn) = sandbox();
    let disk = cluster.dir.path().join("small-disk");
    let _mount = TmpfsMount::new(&disk, "size=40m");
    let folder = disk.join("files");
    copy_attachments(cluster, &folder);
    let sets = [
        ("storage", "local".to_string()),
        ("attachment_folder", folder.display().to_string()),
    ];
    let stamp = backup(cluster, &sets);
    change_files(&folder);
    let before = exact_state(&folder);

    // The pre-flight finds room; then the disk is filled, and the extraction fails.
    let mut run_sets = sets.to_vec();
    run_sets.push(("fill", disk.join("filler").display().to_string()));
    let out = restore(cluster, &stamp, &run_sets).failure(1);
    let err = &out.stderr;
    assert_contains(err, "No space left on device");
    assert_contains(err, "put back: the attachment folder");
    assert_eq!(
        exact_state(&folder),
        before,
        "the folder is not as it was:\n{err}"
    );
    assert_eq!(
        sorted_names(&disk),
        ["files", "filler"],
        "leftovers on the disk"
    );
}

#[test]
fn refusals_before_anything_is_set_aside_change_nothing() {
    let (cluster, _turn) = sandbox();
    let disk = cluster.dir.path().join("refusals-disk");
    // 16 MiB: room for the ~10 MiB of attachments, not for their extraction too.
    let _mount = TmpfsMount::new(&disk, "size=16m");
    let folder = disk.join("files");
    copy_attachments(cluster, &folder);
    let sets = |folder: &Path| {
        vec![
            ("storage", "local".to_string()),
            ("attachment_folder", folder.display().to_string()),
        ]
    };
    let stamp = backup(cluster, &sets(&folder));
    let before = exact_state(&folder);
    let refused = |sets: &[(&str, String)], reason: &str| {
        let out = restore(cluster, &stamp, sets).failure(1);
        let err = &out.stderr;
        assert_contains(err, reason);
        assert!(
            !err.contains("undoing"),
            "something was changed and undone:\n{err}"
        );
        assert_eq!(exact_state(&folder), before);
        assert_eq!(sorted_names(&disk), ["files"], "{err}");
    };
    refused(
        &sets(&folder),
        &format!(
            "not enough space in {} for the extracted attachments: about 9 MiB needed, 5 MiB free; make room, or change attachment_folder",
            disk.display()
        ),
    );
    refused(
        &sets(&disk.join("missing")),
        &format!(
            "attachment folder {}/missing does not exist: create it (owned by TheHive's user), or fix the config key attachment_folder",
            disk.display()
        ),
    );
    // The folder itself is renamed: not through a symlink, never a mount point.
    let link = disk.join("link");
    std::os::unix::fs::symlink(&folder, &link).unwrap();
    let out = restore(cluster, &stamp, &sets(&link)).failure(1);
    assert_contains(
        &out.stderr,
        &format!(
            "attachment_folder {} is a symlink (to {}): the restore renames the folder itself; set attachment_folder to {}",
            link.display(),
            folder.display(),
            folder.display()
        ),
    );
    std::fs::remove_file(&link).unwrap();
    let out = restore(cluster, &stamp, &sets(&disk)).failure(1);
    assert_contains(
        &out.stderr,
        &format!(
            "attachment_folder {} is a mount point (an NFS share?): it cannot be renamed aside in one atomic rename",
            disk.display()
        ),
    );
    assert_eq!(exact_state(&folder), before);
    assert_eq!(sorted_names(&disk), ["files"]);
    // A read-only file system: the live folder cannot be renamed aside.
    let remount = |options: &str| {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&disk)
            .output()
            .unwrap();
        assert!(out.status.success(), "remount {options}: {}", stderr(&out));
    };
    remount("ro");
    refused(
        &sets(&folder),
        &format!(
            "cannot rename the attachment folder aside: {} is not writable (Read-only file system (os error 30))",
            disk.display()
        ),
    );
    remount("rw");
    // What an interrupted restore left (its undo or `runbook recover` removes it).
    let leftover = disk.join(format!(".files.restore_{stamp}"));
    std::fs::create_dir(&leftover).unwrap();
    let out = restore(cluster, &stamp, &sets(&folder)).failure(1);
    assert_contains(
        &out.stderr,
        &format!(
            "{} exists (left by an interrupted restore? runbook recover removes it): remove it first",
            leftover.display()
        ),
    );
    std::fs::remove_dir(&leftover).unwrap();
    assert_eq!(exact_state(&folder), before);
    // Storage "none" is no place to restore to: a config error, exit 2.
    let out = restore(cluster, &stamp, &[("storage", "none".to_string())]).failure(2);
    assert_contains(
        &out.stderr,
        "storage is \"none\": the attachment part restores into \"local\" (attachment_folder) or \"s3\" (s3_source)",
    );
}

/// Starts the restore of `stamp` into `folder` and stops it (SIGSTOP) while the
/// archive is being extracted: the extraction folder exists and the live
/// folder is set aside. Returns the stopped run.
fn stopped_mid_extraction(cluster: &Cluster, stamp: &str, folder: &Path) -> Running {
    let parent = folder.parent().unwrap();
    let work = parent.join(format!(".files.restore_{stamp}"));
    let all = [
        (
            "manifest_path",
            cluster.path("backup").display().to_string(),
        ),
        ("staging", staging(cluster)),
        ("stamp", stamp.to_string()),
        ("storage", "local".to_string()),
        ("attachment_folder", folder.display().to_string()),
    ];
    let mut run = workflow(cluster, "run", "storage-restore.rhai", &all).spawn();
    // Polled often (not with `wait_until`'s 20 ms): the window is short.
    let until = Instant::now() + Duration::from_secs(60);
    while !work.exists() {
        assert!(
            run.is_running() && Instant::now() < until,
            "the extraction did not start"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    let run = run.signal(Signal::SIGSTOP);
    assert!(
        !folder.exists() && work.exists(),
        "the extraction was over before the test could stop it: make the test's archive bigger"
    );
    run
}

#[test]
fn sigterm_or_sigkill_and_recover_mid_extraction_put_the_folder_back() {
    let (cluster, _turn) = sandbox();
    // Big enough that the extraction takes a while (about 120 MiB).
    let folder = cluster.dir.path().join("big").join("files");
    copy_attachments(cluster, &folder);
    for i in 0..12u8 {
        std::fs::write(folder.join(format!("00/big-{i}.bin")), vec![i; 10 << 20]).unwrap();
    }
    let sets = [
        ("storage", "local".to_string()),
        ("attachment_folder", folder.display().to_string()),
    ];
    let stamp = backup(cluster, &sets);
    change_files(&folder);
    let before = exact_state(&folder);
    let parent = folder.parent().unwrap();

    // SIGTERM: the run's undo puts the folder back, exit 143.
    let out = stopped_mid_extraction(cluster, &stamp, &folder)
        .signal(Signal::SIGTERM)
        .signal(Signal::SIGCONT)
        .finish()
        .failure(143)
        .stderr_contains("put back: the attachment folder");
    let err = &out.stderr;
    assert_eq!(
        exact_state(&folder),
        before,
        "SIGTERM: the folder is not as it was:\n{err}"
    );
    assert_eq!(sorted_names(parent), ["files"], "SIGTERM left something");

    // SIGKILL: nothing runs; `runbook recover` carries out the journaled undo.
    stopped_mid_extraction(cluster, &stamp, &folder).kill();
    assert!(
        !folder.exists(),
        "the live folder is set aside while the run is dead"
    );
    let recover = cluster
        .recover()
        .run()
        .success()
        .stderr_contains("put back: the attachment folder");
    let log = &recover.stderr;
    assert_eq!(
        exact_state(&folder),
        before,
        "recover: the folder is not as it was:\n{log}"
    );
    assert_eq!(sorted_names(parent), ["files"], "recover left something");
    std::fs::remove_dir_all(parent).unwrap();
}

#[test]
fn sigterm_or_sigkill_and_recover_mid_bucket_restore_put_the_bucket_back() {
    let (cluster, _turn) = sandbox();
    let stamp = backup(cluster, &[("storage", "s3".to_string())]);
    // Half the objects changed since the backup: the restore uploads them one
    // after the other (in key order), then deletes the one written later.
    let first = bucket_python(
        cluster,
        "keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='thehive')['Contents'])\n\
         for key in keys[:150]: s3.put_object(Bucket='thehive', Key=key, Body=b'changed')\n\
         s3.put_object(Bucket='thehive', Key='written-later/new.txt', Body=b'new')\n\
         print(keys[0])\n",
    );
    let first = first.trim().to_string();
    let before = digest(cluster, "bucket");
    let staging = PathBuf::from(staging(cluster));
    let start = || {
        let all = [
            (
                "manifest_path",
                cluster.path("backup").display().to_string(),
            ),
            ("staging", staging.display().to_string()),
            ("stamp", stamp.clone()),
            ("storage", "s3".to_string()),
        ];
        let run = workflow(cluster, "run", "storage-restore.rhai", &all).spawn();
        // Stopped once the restore has changed the bucket: the first changed
        // object is back as archived, the others not yet.
        let probe = format!(
            "import time\n\
             until = time.time() + 120\n\
             while s3.get_object(Bucket='thehive', Key='{first}')['Body'].read() == b'changed':\n\
            \x20   assert time.time() < until, 'the restore did not change the bucket within 120 s'\n\
            \x20   time.sleep(0.02)\n"
        );
        bucket_python(cluster, &probe);
        let run = run.signal(Signal::SIGSTOP);
        let still = bucket_python(
            cluster,
            "keys = sorted(o['Key'] for o in s3.list_objects_v2(Bucket='thehive')['Contents'])\n\
             print(sum(1 for k in keys[:150] if s3.get_object(Bucket='thehive', Key=k)['Body'].read() == b'changed'))\n",
        );
        assert!(
            still.trim().parse::<u32>().unwrap() > 0,
            "the upload was over before the test could stop it"
        );
        run.signal(Signal::SIGCONT)
    };

    let out = start()
        .signal(Signal::SIGTERM)
        .finish()
        .failure(143)
        .stderr_contains("put back: the bucket th_minio/thehive as it was");
    let err = &out.stderr;
    assert_eq!(
        digest(cluster, "bucket"),
        before,
        "SIGTERM: the bucket is not as it was:\n{err}"
    );
    assert!(
        sorted_names(&staging).is_empty(),
        "{:?}",
        sorted_names(&staging)
    );

    start().kill();
    let recover = cluster
        .recover()
        .run()
        .success()
        .stderr_contains("put back: the bucket th_minio/thehive as it was");
    let log = &recover.stderr;
    assert_eq!(
        digest(cluster, "bucket"),
        before,
        "recover: the bucket is not as it was:\n{log}"
    );
    assert!(
        sorted_names(&staging).is_empty(),
        "{:?}",
        sorted_names(&staging)
    );
    bucket_python(
        cluster,
        "s3.delete_object(Bucket='thehive', Key='written-later/new.txt')\n",
    );
}

// ---------------------------------------------------------------- archive names

#[test]
fn a_seaweedfs_named_set_is_listed_verified_prepared_and_restored() {
    let (cluster, _turn) = sandbox();
    let backup_folder = cluster.path("backup");
    let seaweedfs = backup_folder.join("seaweedfs");
    std::fs::create_dir_all(&seaweedfs).unwrap();
    let at_backup = digest(cluster, "bucket");

    // Only the two names TheHive's guide has used.
    cluster
        .runbook(&[
            "run",
            "cluster-hot-backup",
            "--set",
            "s3_archive_name=garage",
        ])
        .run()
        .failure(2)
        .stderr_contains("s3_archive_name");

    let minio = backup(cluster, &[("storage", "s3".to_string())]);
    let weed = backup(
        cluster,
        &[
            ("storage", "s3".to_string()),
            ("s3_archive_name", "seaweedfs".to_string()),
            ("s3_archive_path", seaweedfs.display().to_string()),
        ],
    );
    let archive = seaweedfs.join(format!("seaweedfs_{weed}.tar"));
    assert!(
        archive.is_file()
            && seaweedfs
                .join(format!("seaweedfs_{weed}.tar.sha256"))
                .is_file()
    );
    // GNU tar reads it, every entry under seaweedfs_STAMP/.
    let listing = Command::new("tar")
        .arg("tf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(listing.status.success());
    let entries = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(entries.lines().count() > 300, "{entries}");
    assert!(
        entries
            .lines()
            .all(|l| l.starts_with(&format!("seaweedfs_{weed}/"))),
        "{entries}"
    );
    assert!(
        !seaweedfs.join(format!("seaweedfs_{weed}")).exists(),
        "mirror folder left"
    );

    // `runbook list` finds both names (the default folders include seaweedfs/).
    let table = Test::new()
        .args(["list", "--manifest-path"])
        .arg(&backup_folder)
        .run()
        .success()
        .stdout;
    let row = |stamp: &str| {
        table
            .lines()
            .find(|l| l.starts_with(stamp))
            .unwrap_or_else(|| panic!("{stamp} not listed:\n{table}"))
            .to_string()
    };
    assert_contains(&row(&minio), "cassandra,elasticsearch,minio");
    assert_contains(&row(&weed), "cassandra,elasticsearch,seaweedfs");
    assert_contains(&row(&weed), "complete");
    let json = Test::new()
        .args(["list", "--json", "--manifest-path"])
        .arg(&backup_folder)
        .run()
        .success();
    let sets: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let set = sets["sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stamp"] == weed.as_str())
        .unwrap();
    assert!(
        set["parts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["part"] == "seaweedfs"
                && p["path"] == archive.display().to_string().as_str()
                && p["listed"] == true)
    );

    // `runbook verify --set` reads it against the manifest.
    Test::new()
        .args(["verify", "--set", &weed, "--manifest-path"])
        .arg(&backup_folder)
        .run()
        .success();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(backup_folder.join(format!("backup_{weed}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["verified"]["result"], "ok", "{manifest}");

    // restore-prep finds it and plans the bucket restore from seaweedfs_STAMP/.
    let prep_staging = cluster.dir.path().join("prep");
    Test::at(cluster.dir.path())
        .args(["run", "restore-prep"])
        .args([
            "--set",
            &format!("manifest_path={}", backup_folder.display()),
        ])
        .args(["--set", &format!("stamp={weed}")])
        .args(["--set", &format!("staging={}", prep_staging.display())])
        .args(["--set", &format!("elasticsearch_url={}", cluster.es_url())])
        .args(["--set", &format!("s3_archive_path={}", seaweedfs.display())])
        .run()
        .success();
    let plan = std::fs::read_to_string(prep_staging.join(&weed).join("restore-plan.sh")).unwrap();
    let extracted = prep_staging.join(&weed).join(format!("seaweedfs_{weed}"));
    assert_contains(
        &plan,
        &format!(
            "runbook run restore-bucket --set 'source={}' --set 'dest=th_minio/thehive'",
            extracted.display()
        ),
    );
    assert_eq!(
        walk(&extracted).len(),
        at_backup["files"].as_u64().unwrap() as usize
    );

    // The restore takes it too: the bucket changed since comes back.
    bucket_python(
        cluster,
        "s3.put_object(Bucket='thehive', Key='written-later/new.txt', Body=b'new')\n",
    );
    assert_ne!(digest(cluster, "bucket"), at_backup);
    let sets = [("storage", "s3".to_string())];
    let log = restore(cluster, &weed, &sets).success().stderr;
    assert_contains(
        &log,
        &format!("from seaweedfs_{weed}.tar restored into th_minio/thehive"),
    );
    assert_eq!(digest(cluster, "bucket"), at_backup);
    discard(cluster, &weed, &sets).success();
    std::fs::remove_dir_all(&prep_staging).unwrap();
}
