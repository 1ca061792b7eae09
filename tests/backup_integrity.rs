//! A bad or incomplete backup is never reported as good (issue 12, §2 and the
//! long-path item of §4): each test runs the real `runbook` binary and the
//! stock workflow against the sandbox cluster (tests/sandbox/sandbox.py), and
//! fails on the behaviour before the fix (exit 0 with a set that lacks data,
//! or cannot be restored).
//!
//! Tests that bind-mount need root (the test run is root); they fail with
//! the reason otherwise, rather than pass without checking anything.

use runbook_test_support::{Ran, Test, cluster, support};

use std::ffi::{CString, OsStr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::*;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, mkdirat};
use support::{assert_contains, venv_bin};

// ---------------------------------------------------------------- helpers

/// The set manifest of the only set in the backup folder.
fn only_manifest(cluster: &Cluster) -> (String, serde_json::Value) {
    let backup = cluster.path("backup");
    let stamp = only_stamp(&backup, "backup_", ".json");
    let text = std::fs::read_to_string(backup.join(format!("backup_{stamp}.json"))).unwrap();
    (stamp, serde_json::from_str(&text).unwrap())
}

/// The manifest's `warnings`, one string.
fn manifest_warnings(manifest: &serde_json::Value) -> String {
    manifest["warnings"]
        .as_array()
        .unwrap_or_else(|| panic!("no warnings list in {manifest}"))
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `runbook list` over the sandbox's backup folder.
fn list(cluster: &Cluster) -> String {
    Test::new()
        .args(["list", "--manifest-path"])
        .arg(cluster.path("backup"))
        .run()
        .success()
        .stdout
}

/// The state column of `runbook list` for `stamp`.
fn listed_state(cluster: &Cluster, stamp: &str) -> String {
    let listing = list(cluster);
    let line = listing
        .lines()
        .find(|l| l.starts_with(stamp))
        .unwrap_or_else(|| panic!("{stamp} not listed:\n{listing}"));
    line[stamp.len()..]
        .trim_start()
        .split("  ")
        .next()
        .unwrap()
        .trim()
        .to_string()
}

/// Runs the backup with `--set` pairs.
fn backup(cluster: &Cluster, sets: &[&str]) -> Ran {
    let mut args = vec!["run", "cluster-hot-backup"];
    for set in sets {
        args.extend(["--set", set]);
    }
    cluster.runbook(&args).run()
}

/// `runbook run restore-prep` on the sandbox's backup folder, staging in `staging`.
fn restore_prep(cluster: &Cluster, staging: &Path) -> Ran {
    let backup = cluster.path("backup");
    cluster.restore_prep_run(&[
        ("manifest_path", backup.display().to_string()),
        ("staging", staging.display().to_string()),
        ("elasticsearch_url", cluster.es_url()),
        (
            "cassandra_archive_path",
            cluster.path("cassandra_archive").display().to_string(),
        ),
        (
            "storage_archive_path",
            cluster.path("storage_archive").display().to_string(),
        ),
        (
            "s3_archive_path",
            cluster.path("s3_archive").display().to_string(),
        ),
    ])
}

/// A bind mount undone on drop.
struct BindMount(PathBuf);

impl BindMount {
    fn new(source: &Path, target: &Path) -> BindMount {
        let out = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test needs root to bind-mount {} on {}: {}",
            source.display(),
            target.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        BindMount(target.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Runs the backup of a sandbox started with `--knob cqlsh-delay=3` and
/// removes an edgestore data file from its Cassandra snapshot while cqlsh
/// sleeps (cqlsh runs after `nodetool snapshot` and before the archive): the
/// finished run and the file removed.
fn backup_losing_a_snapshot_data_file(cluster: &Cluster) -> (Ran, PathBuf) {
    let mut removed = None;
    let ran = cluster
        .runbook(&["run", "cluster-hot-backup"])
        .spawn()
        .wait_until("a Cassandra snapshot to appear", || {
            removed = walk(&cluster.path("cassandra_data")).into_iter().find(|p| {
                p.to_string_lossy().contains("/snapshots/cassandra_")
                    && p.to_string_lossy().contains("/thehive/edgestore-")
                    && p.file_name() == Some(OsStr::new("nb-1-big-Data.db"))
            });
            removed.as_ref().is_some_and(|path| {
                std::fs::remove_file(path).unwrap();
                true
            })
        })
        .finish();
    (ran, removed.expect("the file was removed"))
}

// ---------------------------------------------------------------- symlinks

/// `attachment_folder` a symlink to the real folder: before the fix the
/// archive's top entry was that symlink, which neither GNU tar nor
/// restore-prep could restore the attachments from.
#[test]
fn a_symlinked_attachment_folder_is_archived_as_the_folder_it_points_to() {
    let cluster = Cluster::start(&["--objects", "40"]);
    let link = cluster.dir.path().join("files-link");
    std::os::unix::fs::symlink(cluster.path("attachments"), &link).unwrap();
    backup(
        &cluster,
        &[&format!("attachment_folder={}", link.display())],
    )
    .success();
    let (stamp, _) = only_manifest(&cluster);
    let archive = cluster
        .path("storage_archive")
        .join(format!("files_{stamp}.tar"));
    let listing = gnu_tar_list(&archive, true);
    let first = listing.lines().next().unwrap();
    assert!(
        first.starts_with('d') && first.ends_with(&format!("files_{stamp}/")),
        "the top entry must be a folder: {first}"
    );
    let restore = cluster.dir.path().join("gnu");
    gnu_tar_extract(&archive, &restore);
    assert_eq!(
        tree(&restore.join(format!("files_{stamp}"))),
        tree(&cluster.path("attachments"))
    );
    let staging = cluster.dir.path().join("staging");
    restore_prep(&cluster, &staging).success();
    assert_eq!(
        tree(&staging.join(&stamp).join(format!("files_{stamp}"))),
        tree(&cluster.path("attachments"))
    );
}

/// Symlinks inside the attachments that point outside them: before the fix
/// they were archived without a word and restore-prep then refused the whole
/// archive. They are data: archived as links, warned about, listed in the
/// manifest, and restored as the same links, never followed.
#[test]
fn symlinks_pointing_outside_the_attachments_are_kept_as_links_warned_and_listed() {
    let cluster = Cluster::start(&["--objects", "40"]);
    let attachments = cluster.path("attachments");
    let elsewhere = cluster.dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("target.bin"), b"not in the backup").unwrap();
    std::fs::create_dir_all(attachments.join("links")).unwrap();
    std::os::unix::fs::symlink(
        elsewhere.join("target.bin"),
        attachments.join("links/absolute"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../../elsewhere", attachments.join("links/up")).unwrap();
    std::os::unix::fs::symlink("absolute", attachments.join("links/inside")).unwrap();

    backup(&cluster, &[]).success().stderr_contains(&format!(
        "{} is a symlink to {}, outside what is archived",
        attachments.join("links/absolute").display(),
        elsewhere.join("target.bin").display()
    ));
    let (stamp, manifest) = only_manifest(&cluster);
    let files = manifest["archives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["part"] == "files")
        .unwrap();
    assert_eq!(
        files["links_outside"],
        serde_json::json!([
            format!(
                "files_{stamp}/links/absolute -> {}",
                elsewhere.join("target.bin").display()
            ),
            format!("files_{stamp}/links/up -> ../../elsewhere"),
        ])
    );
    assert_contains(
        &manifest_warnings(&manifest),
        "links/up is a symlink to ../../elsewhere",
    );
    assert_eq!(listed_state(&cluster, &stamp), "complete with warnings");

    let staging = cluster.dir.path().join("staging");
    restore_prep(&cluster, &staging).success();
    let restored = staging.join(&stamp).join(format!("files_{stamp}/links"));
    for (name, target) in [
        ("absolute", elsewhere.join("target.bin")),
        ("up", PathBuf::from("../../elsewhere")),
        ("inside", PathBuf::from("absolute")),
    ] {
        let path = restored.join(name);
        assert!(
            std::fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink(),
            "{} is not a symlink",
            path.display()
        );
        assert_eq!(std::fs::read_link(&path).unwrap(), target);
    }
    assert_eq!(
        std::fs::read(elsewhere.join("target.bin")).unwrap(),
        b"not in the backup",
        "nothing written through a link"
    );
}

// ---------------------------------------------------------------- Cassandra

/// A file removed from the Cassandra snapshot before it is archived (another
/// `clearsnapshot`, a cron job): before the fix, exit 0 and the file missing
/// from the archive. The archive is checked against each snapshot's
/// manifest.json (as Cassandra writes it): the run fails and names the file.
#[test]
fn a_file_removed_from_the_cassandra_snapshot_fails_the_backup_naming_it() {
    let cluster = Cluster::start(&["--objects", "20", "--knob", "cqlsh-delay=3"]);
    let (out, removed) = backup_losing_a_snapshot_data_file(&cluster);
    let table = removed
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    out.failed_cleanly(&cluster, "lacks files the snapshots' manifest.json list")
        .stderr_contains(&format!("/thehive/{table}/nb-1-big-Data.db"));
    assert!(
        !cluster
            .backup_files()
            .iter()
            .any(|f| f.contains("cassandra_") && f.ends_with(".tar")),
        "the incomplete archive was left: {:?}",
        cluster.backup_files()
    );
}

// ---------------------------------------------------------------- changed, skipped, empty, missing

/// SSTables without TOC.txt: what a real Cassandra 4.1 node holds after a
/// restore with sstableloader (streamed SSTables get no TOC until compaction;
/// seen on the real node, tests/real_servers.rs). The backup of such a table
/// used to fail ("lacks ... nb-1-big-TOC.txt"): it succeeds, the archive holds
/// every component; and the Data file of such an SSTable removed from the
/// snapshot before it is archived still fails the run, naming it (without a
/// TOC, the other components are required as listed when the archive starts).
#[test]
fn sstables_without_toc_as_after_sstableloader_are_archived_whole() {
    let cluster = Cluster::start(&["--objects", "20"]);
    let tocs: Vec<PathBuf> = walk(&cluster.path("cassandra_data"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-TOC.txt"))
        .collect();
    assert!(!tocs.is_empty(), "the stand-in data has TOC.txt files");
    for toc in &tocs {
        std::fs::remove_file(toc).unwrap();
    }
    backup(&cluster, &[]).success();
    let stamp = only_stamp(&cluster.path("backup"), "backup_", ".json");
    let listing = gnu_tar_list(
        &cluster
            .path("cassandra_archive")
            .join(format!("cassandra_{stamp}.tar")),
        false,
    );
    assert_contains(&listing, "/thehive/edgestore-");
    assert_contains(&listing, "nb-1-big-Statistics.db");
    assert!(!listing.contains("TOC.txt"), "{listing}");

    // The Data file of a TOC-less SSTable removed before the archive: fails.
    let cluster = Cluster::start(&["--objects", "20", "--knob", "cqlsh-delay=3"]);
    for toc in walk(&cluster.path("cassandra_data"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with("-TOC.txt"))
    {
        std::fs::remove_file(toc).unwrap();
    }
    backup_losing_a_snapshot_data_file(&cluster)
        .0
        .failed_cleanly(&cluster, "lacks files the snapshots' manifest.json list")
        .stderr_contains("/thehive/edgestore-")
        .stderr_contains("/nb-1-big-Data.db");
}

/// An attachment that shrinks while it is read (a sysfs attribute stats as
/// 4096 bytes and reads as fewer: the same code path as a 1.5 GB file cut to
/// 100 MB during the tar, without a race): before the fix, one warning, zero
/// padding, exit 0. Now the run fails naming the file and the key; with
/// `allow_changed_files` the set is made, its manifest lists the file, and
/// `list` says "complete with warnings".
#[test]
fn an_attachment_that_shrinks_while_archived_fails_the_run_unless_allowed() {
    let cluster = Cluster::start(&["--objects", "20"]);
    let sysfs = Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
    assert!(sysfs.exists(), "this test needs {}", sysfs.display());
    let victim = cluster.path("attachments").join("shrinking.bin");
    std::fs::write(&victim, b"").unwrap();
    let _mount = BindMount::new(sysfs, &victim);

    backup(&cluster, &[])
        .failed_cleanly(
            &cluster,
            &format!("{} shrank while being archived", victim.display()),
        )
        .stderr_contains("allow_changed_files=true");

    backup(&cluster, &["allow_changed_files=true"]).success();
    let (stamp, manifest) = only_manifest(&cluster);
    assert_contains(
        &manifest_warnings(&manifest),
        &format!("files: {} shrank while being archived", victim.display()),
    );
    assert_eq!(listed_state(&cluster, &stamp), "complete with warnings");
}

/// An empty attachment folder (an unmounted mount point): before the fix, a
/// set of nothing, exit 0. Now the run fails in pre-flight, before any
/// snapshot; with `allow_empty_attachments` the set is made with a warning.
#[test]
fn an_empty_attachment_folder_fails_before_any_snapshot_unless_allowed() {
    let cluster = Cluster::start(&["--objects", "20"]);
    let empty = cluster.dir.path().join("mnt-attachments");
    std::fs::create_dir(&empty).unwrap();
    let folder = format!("attachment_folder={}", empty.display());

    backup(&cluster, &[&folder])
        .failed_cleanly(
            &cluster,
            &format!(
                "attachment folder {} is empty (an unmounted share or a wrong path?)",
                empty.display()
            ),
        )
        .stderr_contains("allow_empty_attachments=true");
    let invocations =
        std::fs::read_to_string(cluster.path("state").join("invocations.log")).unwrap_or_default();
    assert!(
        !invocations.contains("\"snapshot\""),
        "a snapshot was taken before the check: {invocations}"
    );
    assert!(cluster.es_requests().iter().all(|r| r["method"] != "PUT"));

    backup(&cluster, &[&folder, "allow_empty_attachments=true"]).success();
    let (stamp, manifest) = only_manifest(&cluster);
    assert_contains(&manifest_warnings(&manifest), "files: attachment folder");
    assert_eq!(listed_state(&cluster, &stamp), "complete with warnings");
}

/// `elasticsearch_indices` naming an index that does not exist: with
/// `ignore_unavailable` the server makes a SUCCESS snapshot of no index.
/// Before the fix that was a good backup; now the run fails (and deletes the
/// empty snapshot) unless `allow_missing_indices`. A pattern is used: a
/// concrete name that does not exist is refused earlier, in pre-flight
/// (`real_opensearch::a_missing_index_fails_preflight_with_nothing_snapshotted`).
#[test]
fn elasticsearch_indices_matching_no_index_fail_the_run_unless_allowed() {
    let cluster = Cluster::start(&["--objects", "20"]);
    backup(&cluster, &["elasticsearch_indices=thehive_gloabl*"])
        .failed_cleanly(
            &cluster,
        "holds no index (0 shards): \"thehive_gloabl*\" (elasticsearch_indices) matches no index",
        )
        .stderr_contains("allow_missing_indices=true");
    let deleted = cluster
        .es_requests()
        .iter()
        .filter(|r| r["method"] == "DELETE")
        .count();
    assert!(deleted >= 1, "the empty snapshot was not deleted");

    backup(
        &cluster,
        &[
            "elasticsearch_indices=thehive_gloabl*",
            "allow_missing_indices=true",
        ],
    )
    .success();
    let (stamp, manifest) = only_manifest(&cluster);
    assert_contains(
        &manifest_warnings(&manifest),
        "elasticsearch: Elasticsearch snapshot",
    );
    assert_eq!(listed_state(&cluster, &stamp), "complete with warnings");
}

/// S3 keys that cannot be files (`a//b`, `dir/` with content, `x` next to
/// `x/y`, `..`, a leading `/`, a tab is fine): before the fix they were left
/// out with one warning and exit 0. Now the run fails listing them, unless
/// `allow_skipped_objects`, which records them in the manifest.
#[test]
fn s3_objects_whose_keys_cannot_be_files_fail_the_run_unless_allowed() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "20"]);
    let s3 = cluster.record["s3_endpoint"].as_str().unwrap().to_string();
    let put = Command::new(venv_bin("python"))
        .arg("-c")
        .arg(format!(
            "import boto3\n\
             s3=boto3.client('s3',endpoint_url='{s3}',aws_access_key_id='test',aws_secret_access_key='test',region_name='us-east-1')\n\
             for key in ['a//b', 'dir/', 'dir/x', 'x', 'x/y', 'up/../../escape', '/lead']:\n\
             \x20   s3.put_object(Bucket='thehive', Key=key, Body=b'hostile ' + key.encode())\n"
        ))
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    backup(&cluster, &[])
        .failed_cleanly(
            &cluster,
            "have keys that cannot be stored as files and are not in the backup",
        )
        .stderr_contains("allow_skipped_objects=true")
        .stderr_contains("a//b");

    backup(&cluster, &["allow_skipped_objects=true"]).success();
    let (stamp, manifest) = only_manifest(&cluster);
    let warnings = manifest_warnings(&manifest);
    assert_contains(&warnings, "minio: ");
    assert_contains(&warnings, "a//b");
    assert_eq!(listed_state(&cluster, &stamp), "complete with warnings");
}

// ---------------------------------------------------------------- long paths

/// Makes `depth` nested folders of `name` under `root` (relative to each
/// other: the full path exceeds PATH_MAX) and a file in the deepest; returns
/// the file's path relative to `root`.
fn deep_tree(root: &Path, name: &str, depth: usize, content: &[u8]) -> PathBuf {
    let mut dir: OwnedFd = std::fs::File::open(root).unwrap().into();
    let mut relative = PathBuf::new();
    let component = CString::new(name).unwrap();
    for _ in 0..depth {
        mkdirat(&dir, component.as_c_str(), Mode::from_bits_truncate(0o755)).unwrap();
        dir = openat(
            &dir,
            component.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        relative.push(name);
    }
    let file = openat(
        &dir,
        c"deep.bin",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    use std::io::Write;
    std::fs::File::from(file).write_all(content).unwrap();
    relative.push("deep.bin");
    relative
}

/// Reads a file under `root` by opening each folder relative to the last.
fn read_deep(root: &Path, relative: &Path) -> Vec<u8> {
    let mut dir: OwnedFd = std::fs::File::open(root).unwrap().into();
    let components: Vec<_> = relative.components().collect();
    for component in &components[..components.len() - 1] {
        let name = CString::new(component.as_os_str().as_bytes()).unwrap();
        dir = openat(
            &dir,
            name.as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", component.as_os_str().display()));
    }
    let name = CString::new(components.last().unwrap().as_os_str().as_bytes()).unwrap();
    let file = openat(&dir, name.as_c_str(), OFlag::O_RDONLY, Mode::empty()).unwrap();
    use std::io::Read;
    let mut data = Vec::new();
    std::fs::File::from(file).read_to_end(&mut data).unwrap();
    data
}

/// An attachment path over 4096 bytes: before the fix every backup failed
/// with "File name too long". Now the tree is archived, GNU tar lists it,
/// verify passes and restore-prep extracts it byte-identical.
#[test]
fn attachment_paths_longer_than_path_max_are_archived_verified_and_restored() {
    let cluster = Cluster::start(&["--objects", "20"]);
    let attachments = cluster.path("attachments");
    let name = "d".repeat(200);
    let relative = deep_tree(&attachments, &name, 25, b"deep attachment");
    assert!(relative.as_os_str().len() > 5000);

    backup(&cluster, &[]).success();
    let (stamp, _) = only_manifest(&cluster);
    let archive = cluster
        .path("storage_archive")
        .join(format!("files_{stamp}.tar"));
    let listing = gnu_tar_list(&archive, false);
    let expected = format!("files_{stamp}/{}", relative.display());
    assert!(
        listing.lines().any(|l| l == expected),
        "GNU tar does not list the long path"
    );
    Test::new().arg("verify").arg(&archive).run().success();

    let staging = cluster.dir.path().join("staging");
    restore_prep(&cluster, &staging).success();
    assert_eq!(
        read_deep(
            &staging.join(&stamp).join(format!("files_{stamp}")),
            &relative
        ),
        b"deep attachment"
    );
}
