//! The archive steps against the tools admins already trust: GNU tar lists and
//! extracts what `tar_dir` writes, `sha256sum -c` accepts its checksum file,
//! `verify_archive` catches damage and names where, `extract_archive` refuses
//! hostile archives, and a killed writer never leaves a file under the final name.

use runbook_test_support::support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use runbook_steps::archive::tar_dir::{
    TarDirOptions, write_archive_with_hook, write_archive_with_hooks,
};
use runbook_steps::archive::verification::verify_archive_file;
use runbook_steps::runtime::blocking_work::WorkControl;
use runbook_steps::runtime::error::StepFailure;
use runbook_steps::{StepContext, StepError, find_step};
use serde_json::{Value, json};

async fn run_step(name: &str, options: Value) -> Result<Value, StepError> {
    let step = find_step(name).unwrap_or_else(|| panic!("step {name} is registered"));
    let prepared = step
        .prepare(options)
        .unwrap_or_else(|e| panic!("options for {name}: {e}"));
    prepared.run(StepContext::detached("test")).await
}

/// Runs a command, panics with its stderr unless it succeeds; returns stdout.
fn sh(program: &str, args: &[&str], cwd: &Path) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn write(path: &Path, contents: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

/// A tree with everything GNU tar must get back: empty folder, empty file,
/// symlink, hard link, names with spaces and non-ASCII, a path over 255 bytes,
/// an old mtime and a non-default mode.
fn awkward_tree(root: &Path) {
    write(&root.join("a.txt"), b"hello\n");
    write(&root.join("empty"), b"");
    fs::create_dir_all(root.join("empty dir")).unwrap();
    symlink("a.txt", root.join("link to a")).unwrap();
    fs::hard_link(root.join("a.txt"), root.join("hard link")).unwrap();
    write(&root.join("sub/with space/ünïcødé ✓.txt"), "ü\n".as_bytes());
    let long = "d".repeat(120);
    let deep = root
        .join(&long)
        .join(&long)
        .join(&long)
        .join("a file with a long name.db");
    assert!(deep.strip_prefix(root).unwrap().as_os_str().len() > 255);
    write(&deep, &vec![7u8; 70_000]);
    let old = root.join("sub/old.cql");
    write(&old, b"CREATE KEYSPACE thehive;\n");
    fs::set_permissions(&old, fs::Permissions::from_mode(0o640)).unwrap();
    let time = filetime::FileTime::from_unix_time(1_500_000_000, 0);
    filetime::set_file_mtime(&old, time).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn gnu_tar_extracts_an_identical_tree_and_sha256sum_accepts_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("files");
    awkward_tree(&src);
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let dest = out.join("files_20261126_01h15m00s.tar");

    let result = run_step(
        "tar_dir",
        json!({"dest": dest, "src": src, "prefix": "files_20261126_01h15m00s"}),
    )
    .await
    .unwrap();
    assert_eq!(result["path"], json!(dest));
    assert_eq!(result["files"], json!(6), "{result}");
    assert_eq!(result["dirs"], json!(7), "{result}");
    assert_eq!(result["entries"], json!(14), "{result}");
    assert_eq!(result["skipped"], json!(0));
    assert_eq!(result["bytes"], json!(fs::metadata(&dest).unwrap().len()));
    assert_eq!(mode_of(&dest), 0o600);
    assert_eq!(
        mode_of(&out.join("files_20261126_01h15m00s.tar.sha256")),
        0o600
    );
    assert!(!out.join("files_20261126_01h15m00s.tar.partial").exists());

    let listing = sh("tar", &["tvf", dest.to_str().unwrap()], dir.path());
    assert!(
        listing.contains("files_20261126_01h15m00s/link to a -> a.txt"),
        "{listing}"
    );
    assert!(
        !listing.contains("link to files"),
        "hard links are stored as files: {listing}"
    );
    assert!(
        sh(
            "sha256sum",
            &["-c", "files_20261126_01h15m00s.tar.sha256"],
            &out
        )
        .contains(": OK")
    );
    let sidecar = fs::read_to_string(out.join("files_20261126_01h15m00s.tar.sha256")).unwrap();
    assert!(
        sidecar.starts_with(&format!(
            "{}  files_20261126_01h15m00s.tar\n",
            result["sha256"].as_str().unwrap()
        )),
        "{sidecar}"
    );

    let extracted = dir.path().join("extracted");
    fs::create_dir(&extracted).unwrap();
    sh("tar", &["xf", dest.to_str().unwrap()], &extracted);
    let top = extracted.join("files_20261126_01h15m00s");
    sh(
        "diff",
        &[
            "-r",
            "--no-dereference",
            src.to_str().unwrap(),
            top.to_str().unwrap(),
        ],
        dir.path(),
    );
    let restored = top.join("sub/old.cql");
    assert_eq!(mode_of(&restored), 0o640);
    assert_eq!(
        filetime::FileTime::from_last_modification_time(&fs::metadata(&restored).unwrap())
            .unix_seconds(),
        1_500_000_000
    );
    assert!(
        fs::symlink_metadata(top.join("link to a"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let report = run_step(
        "verify_archive",
        json!({"path": dest, "require_checksum": true,
        "expect": ["files_*/sub/*.cql"], "min_entries": 14}),
    )
    .await
    .unwrap();
    assert_eq!(
        report,
        json!({"ok": true, "entries": 14, "bytes": result["bytes"], "sha256": result["sha256"],
               "read_from": "cache", "cached_pages": 0})
    );
}

#[tokio::test]
async fn the_same_input_gives_a_byte_identical_archive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("files");
    awkward_tree(&src);
    let mut archives = Vec::new();
    for name in ["one.tar", "two.tar"] {
        let dest = dir.path().join(name);
        run_step("tar_dir", json!({"dest": dest, "src": src}))
            .await
            .unwrap();
        archives.push(fs::read(dest).unwrap());
    }
    assert!(
        archives[0] == archives[1],
        "two runs gave different archives"
    );
}

/// Paths the read-ahead reported, for a test to wait on.
#[derive(Default)]
struct ReadAheadSeen {
    paths: Mutex<Vec<PathBuf>>,
    grew: Condvar,
}

impl ReadAheadSeen {
    fn record(&self, path: &Path) {
        self.paths.lock().unwrap().push(path.to_path_buf());
        self.grew.notify_all();
    }

    /// Waits until the read-ahead has opened and asked for each of `paths`;
    /// fails the test naming those it never reached.
    fn wait_for(&self, paths: &[PathBuf]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = self.paths.lock().unwrap();
        loop {
            let missing: Vec<_> = paths.iter().filter(|p| !seen.contains(p)).collect();
            if missing.is_empty() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the read-ahead never opened {missing:?} (it saw {:?})",
                *seen
            );
            seen = self.grew.wait_timeout(seen, left).unwrap().0;
        }
    }
}

/// The read-ahead opens the next files and asks for their data before the
/// archive's own thread reaches them. Files deleted, replaced by another file,
/// replaced by a symlink or rewritten shorter after that (and before the
/// archive reads them) are met as they are then: the archive holds exactly
/// what its own read found, with the messages of a tree changed without any
/// read-ahead.
#[tokio::test]
async fn files_changed_between_the_read_ahead_and_the_archive_read_are_archived_as_found() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("files");
    for name in ["a", "b", "c", "d", "e"] {
        write(
            &src.join(name),
            format!("old {name} ").repeat(5000).as_bytes(),
        );
    }
    let dest = dir.path().join("f.tar");
    let options: TarDirOptions =
        serde_json::from_value(json!({"dest": dest, "src": src, "on_changed": "warn"})).unwrap();
    let seen = ReadAheadSeen::default();
    let ahead: Vec<PathBuf> = ["b", "c", "d", "e"].iter().map(|n| src.join(n)).collect();
    let output = write_archive_with_hooks(
        &options,
        &WorkControl::new("t"),
        &|path| {
            if path.ends_with("a") {
                // The archive is at `a`: the read-ahead has been through the
                // rest. Now change each of them before the archive reads it.
                seen.wait_for(&ahead);
                fs::remove_file(src.join("b")).unwrap();
                fs::write(src.join("c.new"), b"new c").unwrap();
                fs::rename(src.join("c.new"), src.join("c")).unwrap();
                fs::remove_file(src.join("d")).unwrap();
                symlink("a", src.join("d")).unwrap();
                fs::write(src.join("e"), b"new e, rewritten in place").unwrap();
            }
        },
        &|path| seen.record(path),
    )
    .unwrap();

    let b = src.join("b").display().to_string();
    let d = src.join("d").display().to_string();
    assert_eq!(
        output.changed,
        [
            format!("{b} vanished while being archived"),
            format!("{d} was replaced by a symlink while being archived")
        ]
    );
    assert_eq!(output.warnings, output.changed);
    assert_eq!((output.files, output.skipped), (3, 2));
    assert_eq!(
        sh("tar", &["tf", "f.tar"], dir.path()),
        "files/\nfiles/a\nfiles/c\nfiles/e\n"
    );
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    sh(
        "tar",
        &["xf", dest.to_str().unwrap(), "-C", "out"],
        dir.path(),
    );
    assert_eq!(
        fs::read(out.join("files/a")).unwrap(),
        "old a ".repeat(5000).as_bytes()
    );
    assert_eq!(fs::read(out.join("files/c")).unwrap(), b"new c");
    assert_eq!(
        fs::read(out.join("files/e")).unwrap(),
        b"new e, rewritten in place"
    );
    verify_archive_file(&dest, None, &WorkControl::new("t")).unwrap();
}

/// The read-ahead changes nothing in the archive: with it (the default, a
/// window of 64 files; and a window of one file) and without it
/// (`read_ahead: 0`), a tree of several folders, more files than the window
/// and every awkward kind of entry gives the same bytes. Only with it does the
/// read-ahead open files.
#[tokio::test]
async fn read_ahead_on_or_off_gives_a_byte_identical_archive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("files");
    awkward_tree(&src);
    for folder in 0..4 {
        for file in 0..50 {
            let data = format!("{folder}/{file} ").repeat(file * 97);
            write(
                &src.join(format!("{folder:02x}/{file:03}")),
                data.as_bytes(),
            );
        }
    }
    let (mut archives, mut files) = (Vec::new(), Vec::new());
    for read_ahead in [64, 1, 0] {
        let dest = dir.path().join(format!("ahead-{read_ahead}.tar"));
        let options: TarDirOptions =
            serde_json::from_value(json!({"dest": dest, "src": src, "read_ahead": read_ahead}))
                .unwrap();
        let seen = ReadAheadSeen::default();
        let (first, second) = (src.join("00/000"), src.join("00/001"));
        let output = write_archive_with_hooks(
            &options,
            &WorkControl::new("t"),
            &|path| {
                // At the first file, the next one is in the window.
                if read_ahead > 0 && path == first {
                    seen.wait_for(std::slice::from_ref(&second));
                }
            },
            &|path| seen.record(path),
        )
        .unwrap();
        if read_ahead == 0 {
            assert_eq!(*seen.paths.lock().unwrap(), [] as [PathBuf; 0]);
        }
        files.push(output.files);
        archives.push(fs::read(dest).unwrap());
    }
    assert!(
        files[0] > 200 && files.iter().all(|n| *n == files[0]),
        "{files:?}"
    );
    assert!(archives[0] == archives[2], "read_ahead 64 and 0 differ");
    assert!(archives[1] == archives[2], "read_ahead 1 and 0 differ");
}

#[tokio::test]
async fn cassandra_layout_from_entries_with_folders_added_for_the_paths() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/thehive");
    let mut entries = Vec::new();
    for table in ["case-0a1b", "alert-2c3d"] {
        let live = data.join(table).join("nb-1-big-Data.db");
        write(&live, table.as_bytes());
        let snapshot = data.join(table).join("snapshots/cassandra_S");
        fs::create_dir_all(&snapshot).unwrap();
        fs::hard_link(&live, snapshot.join("nb-1-big-Data.db")).unwrap();
        entries.push(json!({"src": snapshot, "path": format!("cassandra_S/thehive/{table}")}));
    }
    let cql = dir.path().join("create_keyspace_thehive.cql");
    write(&cql, b"CREATE KEYSPACE thehive;\n");
    entries.push(json!({"src": cql, "path": "cassandra_S/create_keyspace_thehive.cql"}));
    let dest = dir.path().join("cassandra_S.tar");
    run_step("tar_dir", json!({"dest": dest, "entries": entries}))
        .await
        .unwrap();
    let listing = sh("tar", &["tf", dest.to_str().unwrap()], dir.path());
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            "cassandra_S/",
            "cassandra_S/create_keyspace_thehive.cql",
            "cassandra_S/thehive/",
            "cassandra_S/thehive/alert-2c3d/",
            "cassandra_S/thehive/alert-2c3d/nb-1-big-Data.db",
            "cassandra_S/thehive/case-0a1b/",
            "cassandra_S/thehive/case-0a1b/nb-1-big-Data.db",
        ]
    );
}

#[tokio::test]
async fn a_file_deleted_during_the_walk_is_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("files");
    for name in ["a", "b", "c"] {
        write(&src.join(name), name.as_bytes());
    }
    let options: TarDirOptions = serde_json::from_value(
        json!({"dest": dir.path().join("f.tar"), "src": src, "on_changed": "warn"}),
    )
    .unwrap();
    // Entries go in sorted order: when `a` is about to be read, `b` has been
    // listed but not opened yet. Delete it then.
    let victim = src.join("b");
    let output = write_archive_with_hook(&options, &WorkControl::new("t"), &|path| {
        if path.ends_with("a") {
            fs::remove_file(&victim).unwrap();
        }
    })
    .unwrap();
    assert_eq!((output.files, output.skipped), (2, 1));
    assert_eq!(output.warnings.len(), 1);
    assert!(
        output.warnings[0].contains("files/b vanished while being archived"),
        "{:?}",
        output.warnings
    );
    assert_eq!(output.changed, output.warnings);
    let listing = sh("tar", &["tf", "f.tar"], dir.path());
    assert_eq!(listing, "files/\nfiles/a\nfiles/c\n");
    verify_archive_file(&dir.path().join("f.tar"), None, &WorkControl::new("t")).unwrap();
}

#[tokio::test]
async fn a_file_deleted_during_the_walk_fails_the_step_by_default_and_leaves_no_archive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("files");
    for name in ["a", "b", "c"] {
        write(&src.join(name), name.as_bytes());
    }
    let dest = dir.path().join("f.tar");
    let options: TarDirOptions = serde_json::from_value(json!({"dest": dest, "src": src})).unwrap();
    let victim = src.join("b");
    let error = write_archive_with_hook(&options, &WorkControl::new("t"), &|path| {
        if path.ends_with("a") {
            fs::remove_file(&victim).unwrap();
        }
    })
    .unwrap_err();
    assert_eq!(error.kind(), "changed");
    assert_eq!(
        error.to_string(),
        format!("{} vanished while being archived", victim.display())
    );
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["files"], "no archive, partial or checksum file left");
}

/// A tree deeper than PATH_MAX (4096 bytes), made relative to each folder:
/// tar_dir archives it, GNU tar lists it, verify_archive passes it and
/// extract_archive restores it, all without "File name too long".
#[tokio::test]
async fn paths_longer_than_path_max_are_archived_listed_verified_and_extracted() {
    use nix::fcntl::{OFlag, openat};
    use nix::sys::stat::{Mode, mkdirat};
    use std::io::{Read as _, Write as _};
    use std::os::fd::OwnedFd;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("files");
    fs::create_dir(&src).unwrap();
    let name = "n".repeat(250);
    let component = std::ffi::CString::new(name.clone()).unwrap();
    let mut fd: OwnedFd = fs::File::open(&src).unwrap().into();
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    for _ in 0..20 {
        mkdirat(&fd, component.as_c_str(), Mode::from_bits_truncate(0o755)).unwrap();
        fd = openat(&fd, component.as_c_str(), flags, Mode::empty()).unwrap();
    }
    let file = openat(
        &fd,
        c"leaf.txt",
        OFlag::O_WRONLY | OFlag::O_CREAT,
        Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    fs::File::from(file).write_all(b"leaf").unwrap();
    let deep = vec![name.as_str(); 20].join("/");
    assert!(deep.len() > 5000);

    let dest = dir.path().join("long.tar");
    let result = run_step(
        "tar_dir",
        json!({"dest": dest, "src": src, "prefix": "top"}),
    )
    .await
    .unwrap();
    assert_eq!(
        (result["files"].as_u64(), result["dirs"].as_u64()),
        (Some(1), Some(21))
    );
    let listing = sh("tar", &["tf", dest.to_str().unwrap()], dir.path());
    assert!(listing.lines().any(|l| l == format!("top/{deep}/leaf.txt")));
    run_step(
        "verify_archive",
        json!({"path": dest, "expect": [format!("top/{deep}/leaf.txt")]}),
    )
    .await
    .unwrap();
    let out = dir.path().join("out");
    run_step("extract_archive", json!({"path": dest, "dest": out}))
        .await
        .unwrap();
    let mut fd: OwnedFd = fs::File::open(out.join("top")).unwrap().into();
    for _ in 0..20 {
        fd = openat(&fd, component.as_c_str(), flags, Mode::empty()).unwrap();
    }
    let mut data = String::new();
    fs::File::from(openat(&fd, c"leaf.txt", OFlag::O_RDONLY, Mode::empty()).unwrap())
        .read_to_string(&mut data)
        .unwrap();
    assert_eq!(data, "leaf");
}

/// Files whose size changes between `fstat` and reading, deterministically:
/// procfs reports 0 bytes for files with content ("grew"), sysfs 4096 bytes
/// for a few bytes of content ("shrank").
#[tokio::test]
async fn files_that_grow_or_shrink_while_read_still_give_well_formed_entries() {
    let dir = tempfile::tempdir().unwrap();
    // The shrinking file is the point of the test: without it the test cannot
    // run, and fails saying so rather than check only the growing one.
    let shrinking = Path::new("/sys/devices/system/cpu/online");
    let content = fs::read(shrinking).unwrap_or_else(|e| {
        panic!(
            "this test needs {} (sysfs, present on every Linux with /sys mounted): {e}",
            shrinking.display()
        )
    });
    let stat_size = fs::metadata(shrinking).unwrap().len();
    assert!(
        stat_size == 4096 && content.len() < 4096,
        "{} no longer stats larger than it reads ({stat_size} bytes stat, {} read): pick another sysfs attribute",
        shrinking.display(),
        content.len()
    );
    let entries = vec![
        json!({"src": "/proc/self/status", "path": "top/status"}),
        json!({"src": shrinking, "path": "top/online"}),
    ];
    let dest = dir.path().join("hot.tar");
    let result = run_step(
        "tar_dir",
        json!({"dest": dest, "entries": entries, "on_changed": "warn"}),
    )
    .await
    .unwrap();
    let warnings = result["warnings"].to_string();
    assert!(
        warnings
            .contains("status grew while being archived (past 0 bytes): stored its first 0 bytes"),
        "{warnings}"
    );
    let listing = sh("tar", &["tvf", dest.to_str().unwrap()], dir.path());
    assert!(listing.contains(" 0 "), "{listing}");
    assert!(
        warnings.contains("online shrank while being archived"),
        "{warnings}"
    );
    let extracted = dir.path().join("x");
    fs::create_dir(&extracted).unwrap();
    sh("tar", &["xf", dest.to_str().unwrap()], &extracted);
    let stored = fs::read(extracted.join("top/online")).unwrap();
    assert_eq!(stored.len(), 4096, "the size from the header");
    assert_eq!(&stored[..content.len()], &content[..]);
    assert!(
        stored[content.len()..].iter().all(|b| *b == 0),
        "padded with zeros"
    );
    run_step("verify_archive", json!({"path": dest}))
        .await
        .unwrap();
}

#[tokio::test]
async fn cancellation_removes_the_partial_archive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("files");
    write(&src.join("a"), b"a");
    write(&src.join("b"), b"b");
    let dest = dir.path().join("f.tar");
    let options: TarDirOptions = serde_json::from_value(json!({"dest": dest, "src": src})).unwrap();
    let control = WorkControl::new("t");
    let error = write_archive_with_hook(&options, &control, &|path| {
        assert!(dest.with_extension("tar.partial").exists());
        if path.ends_with("a") {
            control.cancel.cancel();
        }
    })
    .unwrap_err();
    assert_eq!(error.to_string(), "interrupted");
    assert!(!dest.exists() && !dest.with_extension("tar.partial").exists());
    assert!(!dest.with_extension("tar.sha256").exists());
}

#[tokio::test]
async fn zstd_and_gzip_round_trip_through_gnu_tar_and_extract_archive() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("files");
    awkward_tree(&src);
    write(
        &src.join("text.log"),
        "line of text\n".repeat(10_000).as_bytes(),
    );
    for (compress, tar_flag) in [("zstd", "--zstd"), ("gzip", "--gzip")] {
        let dest = dir.path().join(format!("files.tar.{compress}"));
        let result = run_step(
            "tar_dir",
            json!({"dest": dest, "src": src, "compress": compress, "level": 3}),
        )
        .await
        .unwrap();
        assert!(
            result["bytes"].as_u64().unwrap() < 100_000,
            "{compress} compresses: {result}"
        );
        sh(
            "sha256sum",
            &["-c", &format!("files.tar.{compress}.sha256")],
            dir.path(),
        );

        let by_gnu = dir.path().join(format!("gnu-{compress}"));
        fs::create_dir(&by_gnu).unwrap();
        sh("tar", &[tar_flag, "-xf", dest.to_str().unwrap()], &by_gnu);
        sh(
            "diff",
            &[
                "-r",
                "--no-dereference",
                src.to_str().unwrap(),
                by_gnu.join("files").to_str().unwrap(),
            ],
            dir.path(),
        );

        let report = run_step("verify_archive", json!({"path": dest}))
            .await
            .unwrap();
        assert_eq!(report["sha256"], result["sha256"]);

        let ours = dir.path().join(format!("ours-{compress}"));
        let extracted = run_step("extract_archive", json!({"path": dest, "dest": ours}))
            .await
            .unwrap();
        assert_eq!(extracted["entries"], result["entries"]);
        sh(
            "diff",
            &[
                "-r",
                "--no-dereference",
                src.to_str().unwrap(),
                ours.join("files").to_str().unwrap(),
            ],
            dir.path(),
        );
    }
}

/// An archive of three files; returns its path and the data offset of `b.db`.
async fn three_file_archive(dir: &Path) -> (PathBuf, usize) {
    let src = dir.join("t");
    write(&src.join("a.db"), &vec![1u8; 5000]);
    write(&src.join("b.db"), &vec![2u8; 5000]);
    write(&src.join("c.db"), &vec![3u8; 5000]);
    let dest = dir.join("t.tar");
    run_step("tar_dir", json!({"dest": dest, "src": src}))
        .await
        .unwrap();
    // t/ header, a.db header + 5120 of data, b.db header: b's data follows.
    (dest, 512 + 512 + 5120 + 512)
}

async fn verify_error(path: &Path) -> StepError {
    run_step("verify_archive", json!({"path": path}))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn verify_catches_a_flipped_data_byte_and_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, b_data) = three_file_archive(dir.path()).await;
    let mut bytes = fs::read(&archive).unwrap();
    bytes[b_data + 100] ^= 0x01;
    fs::write(&archive, &bytes).unwrap();
    let error = verify_error(&archive).await;
    assert_eq!(error.kind(), "checksum_mismatch");
    let text = error.to_string();
    assert_eq!(
        text,
        format!(
            "{}: checksum mismatch: the data of entry `t/b.db` at byte offset {b_data} \
             differs from when the archive was written",
            archive.display()
        )
    );
    assert!(!sh_status("sha256sum", &["-c", "t.tar.sha256"], dir.path()));
}

#[tokio::test]
async fn verify_catches_a_flipped_byte_in_compressed_data_and_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("t");
    write(&src.join("a.db"), &vec![1u8; 5000]);
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(&src.join("b.db"), &noise);
    let dest = dir.path().join("t.tar.zst");
    run_step(
        "tar_dir",
        json!({"dest": dest, "src": src, "compress": "zstd"}),
    )
    .await
    .unwrap();
    let mut bytes = fs::read(&dest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(&dest, &bytes).unwrap();
    // Either zstd fails to decode that block, or it decodes to wrong bytes
    // that the entry's CRC-32 catches: both name the entry.
    let error = verify_error(&dest).await;
    assert!(
        ["corrupt", "checksum_mismatch"].contains(&error.kind()),
        "{error}"
    );
    assert!(error.to_string().contains("entry `t/b.db`"), "{error}");
}

fn sh_status(program: &str, args: &[&str], cwd: &Path) -> bool {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn verify_catches_a_flipped_header_byte_and_names_entry_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, b_data) = three_file_archive(dir.path()).await;
    let b_header = b_data - 512;
    let mut bytes = fs::read(&archive).unwrap();
    bytes[b_header + 2] ^= 0x01; // the name "t/b.db" becomes "t/c.db"
    fs::write(&archive, &bytes).unwrap();
    let error = verify_error(&archive).await;
    assert_eq!(error.kind(), "corrupt");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: bad header checksum in entry `t/c.db` at byte offset {b_header}",
            archive.display()
        )
    );
}

#[tokio::test]
async fn verify_catches_a_truncated_archive_and_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, b_data) = three_file_archive(dir.path()).await;
    let bytes = fs::read(&archive).unwrap();
    fs::write(&archive, &bytes[..b_data + 1000]).unwrap();
    // Without the (now wrong) checksum file: the structure alone tells.
    fs::remove_file(dir.path().join("t.tar.sha256")).unwrap();
    let error = verify_error(&archive).await;
    assert_eq!(error.kind(), "corrupt");
    assert_eq!(
        error.to_string(),
        format!(
            "{}: archive truncated: entry data ends after 1000 of 5000 bytes in entry `t/b.db` at byte offset {}",
            archive.display(),
            b_data + 1000
        )
    );
    // Cut exactly at the end of an entry: the missing end-of-archive marker.
    fs::write(&archive, &bytes[..b_data + 5120]).unwrap();
    let error = verify_error(&archive).await;
    assert!(
        error
            .to_string()
            .contains("no end-of-archive marker after entry `t/b.db`"),
        "{error}"
    );
}

/// An archive of raw entries written with headers set by hand (the tar
/// crate's checked setters refuse these paths, as they should).
/// A hand-made entry: name, type, link target, data.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

fn crafted_archive(path: &Path, entries: &[RawEntry]) {
    let mut builder = tar::Builder::new(fs::File::create(path).unwrap());
    for (name, kind, link, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap();
}

#[tokio::test]
async fn extract_refuses_crafted_archives_and_writes_nothing_outside_dest() {
    use tar::EntryType::{Block, Directory, Regular, Symlink};
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let absolute = format!("{}/abs-evil", outside.display());
    let absolute_outside = outside.display().to_string();
    let cases: Vec<(&str, Vec<RawEntry>, &str)> = vec![
        (
            "dotdot",
            vec![
                (b"ok.txt", Regular, b"", b"fine"),
                (b"../outside/evil", Regular, b"", b"x"),
            ],
            "`..`",
        ),
        (
            "absolute",
            vec![(absolute.as_bytes(), Regular, b"", b"x")],
            "absolute path",
        ),
        (
            "write through an escaping symlink",
            vec![
                (b"link", Symlink, b"../outside", b""),
                (b"link/evil", Regular, b"", b"x"),
            ],
            "is a symlink in the archive",
        ),
        (
            "write through an absolute symlink",
            vec![
                (b"link", Symlink, absolute_outside.as_bytes(), b""),
                (b"link/evil", Regular, b"", b"x"),
            ],
            "is a symlink in the archive",
        ),
        (
            "hard link through an escaping symlink",
            vec![
                (b"link", Symlink, b"../outside", b""),
                (b"hard", tar::EntryType::Link, b"link/evil", b""),
            ],
            "is a symlink in the archive",
        ),
        (
            "write through symlink",
            vec![
                (b"dir/", Directory, b"", b""),
                (b"dir/link", Symlink, b"..", b""),
                (b"dir/link/x", Regular, b"", b"x"),
            ],
            "is a symlink",
        ),
        ("device", vec![(b"sda", Block, b"", b"")], "device files"),
    ];
    for (what, entries, reason) in cases {
        let archive = dir.path().join("crafted.tar");
        crafted_archive(&archive, &entries);
        let dest = dir.path().join("dest");
        let error = run_step(
            "extract_archive",
            json!({"path": archive, "dest": dest, "verify": false}),
        )
        .await
        .unwrap_err();
        assert_eq!(error.kind(), "unsafe_entry", "{what}: {error}");
        assert!(
            error.to_string().contains("refused entry"),
            "{what}: {error}"
        );
        assert!(error.to_string().contains(reason), "{what}: {error}");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "{what}: wrote outside dest"
        );
        let _ = fs::remove_dir_all(&dest);
    }

    // A symlink planted in dest beforehand is never written through.
    let dest = dir.path().join("dest");
    fs::create_dir(&dest).unwrap();
    symlink(&outside, dest.join("planted")).unwrap();
    let archive = dir.path().join("crafted.tar");
    crafted_archive(&archive, &[(b"planted/evil", Regular, b"", b"x")]);
    let error = run_step(
        "extract_archive",
        json!({"path": archive, "dest": dest, "verify": false}),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("is a symlink"), "{error}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

/// Symlinks are data: one pointing outside the archive (absolute, or `..`
/// above the top) is restored as that same symlink, never followed, and
/// reported; nothing is written where it points.
#[tokio::test]
async fn extract_restores_symlinks_pointing_outside_as_symlinks_and_reports_them() {
    use tar::EntryType::{Directory, Regular, Symlink};
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let absolute = outside.display().to_string();
    let archive = dir.path().join("links.tar");
    crafted_archive(
        &archive,
        &[
            (b"top/", Directory, b"", b""),
            (b"top/a.txt", Regular, b"", b"data"),
            (b"top/abs", Symlink, absolute.as_bytes(), b""),
            (b"top/up", Symlink, b"../../outside", b""),
            (b"top/inside", Symlink, b"a.txt", b""),
        ],
    );
    let dest = dir.path().join("dest");
    let result = run_step(
        "extract_archive",
        json!({"path": archive, "dest": dest, "verify": false}),
    )
    .await
    .unwrap();
    assert_eq!(
        result["links_outside"],
        json!([format!("top/abs -> {absolute}"), "top/up -> ../../outside"])
    );
    assert_eq!(result["entries"], 5);
    for (link, target) in [
        ("top/abs", absolute.as_str()),
        ("top/up", "../../outside"),
        ("top/inside", "a.txt"),
    ] {
        let path = dest.join(link);
        assert!(
            fs::symlink_metadata(&path)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_link(&path).unwrap(), Path::new(target));
    }
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "wrote outside dest"
    );
    // GNU tar reads the same archive back to the same links.
    let gnu = dir.path().join("gnu");
    fs::create_dir(&gnu).unwrap();
    sh("tar", &["xf", archive.to_str().unwrap()], &gnu);
    assert_eq!(
        fs::read_link(gnu.join("top/abs")).unwrap(),
        fs::read_link(dest.join("top/abs")).unwrap()
    );
}

#[tokio::test]
async fn extract_verifies_the_checksum_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let (archive, _) = three_file_archive(dir.path()).await;
    let dest = dir.path().join("restore");
    let result = run_step("extract_archive", json!({"path": archive, "dest": dest}))
        .await
        .unwrap();
    assert_eq!(result, json!({"entries": 4, "files": 3, "bytes": 15000}));
    assert_eq!(fs::read(dest.join("t/b.db")).unwrap(), vec![2u8; 5000]);

    fs::remove_file(dir.path().join("t.tar.sha256")).unwrap();
    let error = run_step(
        "extract_archive",
        json!({"path": archive, "dest": dir.path().join("again")}),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "checksum_missing", "{error}");
    assert!(
        !dir.path().join("again").exists(),
        "nothing extracted before the check"
    );
}

const UNREADABLE_CHILD_ENV: &str = "RUNBOOK_TEST_UNREADABLE_CHILD";

/// Not a test on its own: the child process of
/// `an_unreadable_source_fails_the_step_naming_it_unless_skipped`, run as
/// `nobody` so that permissions apply. Prints `RESULT <json>` or `ERROR <text>`.
#[test]
#[ignore = "run as a child process by an_unreadable_source_fails_the_step_naming_it_unless_skipped"]
fn unreadable_test_child() {
    let Ok(spec) = std::env::var(UNREADABLE_CHILD_ENV) else {
        panic!(
            "not a test on its own: an_unreadable_source_fails_the_step_naming_it_unless_skipped runs it with {UNREADABLE_CHILD_ENV} set"
        );
    };
    let options: TarDirOptions = serde_json::from_str(&spec).unwrap();
    match runbook_steps::archive::tar_dir::write_archive(&options, &WorkControl::new("child")) {
        // On a line of its own: the test harness prints the test name first.
        Ok(output) => println!("\nRESULT {}", serde_json::to_string(&output).unwrap()),
        Err(error) => println!("\nERROR {}", StepError::from(error)),
    }
}

#[tokio::test]
async fn an_unreadable_source_fails_the_step_naming_it_unless_skipped() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = dir.path().join("src");
    write(&src.join("ok.txt"), b"fine");
    write(&src.join("secret.txt"), b"no");
    fs::create_dir(src.join("locked")).unwrap();
    write(&src.join("locked/inside.txt"), b"no");
    fs::set_permissions(src.join("secret.txt"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::set_permissions(src.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::set_permissions(&out, fs::Permissions::from_mode(0o777)).unwrap();
    let dest = out.join("files.tar");

    let run_child = |on_unreadable: &str| -> String {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "unreadable_test_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                UNREADABLE_CHILD_ENV,
                json!({"dest": dest, "src": src, "on_unreadable": on_unreadable}).to_string(),
            );
        // Root reads everything: run the child as nobody.
        if nix::unistd::geteuid().is_root() {
            command.uid(65534).gid(65534);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        stdout
            .lines()
            .find(|line| line.starts_with("RESULT ") || line.starts_with("ERROR "))
            .unwrap_or_else(|| {
                panic!(
                    "child printed no outcome: {stdout}{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })
            .to_string()
    };

    let failed = run_child("fail");
    assert!(
        failed.starts_with(&format!(
            "ERROR cannot read {}",
            src.join("locked").display()
        )),
        "{failed}"
    );
    assert!(failed.contains("on_unreadable: \"skip\""), "{failed}");
    assert!(!dest.exists() && !out.join("files.tar.partial").exists());

    let skipped = run_child("skip");
    let result: Value = serde_json::from_str(
        skipped
            .strip_prefix("RESULT ")
            .unwrap_or_else(|| panic!("{skipped}")),
    )
    .unwrap();
    assert_eq!(
        (result["files"].as_u64(), result["skipped"].as_u64()),
        (Some(1), Some(2)),
        "{result}"
    );
    let warnings = result["warnings"].to_string();
    assert!(
        warnings.contains("locked") && warnings.contains("secret.txt"),
        "{warnings}"
    );
    let listing = sh("tar", &["tf", dest.to_str().unwrap()], dir.path());
    assert_eq!(listing, "src/\nsrc/locked/\nsrc/ok.txt\n");
}

const KILL_CHILD_ENV: &str = "RUNBOOK_TEST_KILL_CHILD";

/// Not a test on its own: the child process of
/// `killing_the_writer_mid_archive_leaves_no_file_at_dest`. It archives a
/// folder and, mid-way, announces itself and waits to be killed.
#[test]
#[ignore = "run as a child process by killing_the_writer_mid_archive_leaves_no_file_at_dest"]
fn kill_test_child() {
    let Ok(spec) = std::env::var(KILL_CHILD_ENV) else {
        panic!(
            "not a test on its own: killing_the_writer_mid_archive_leaves_no_file_at_dest runs it with {KILL_CHILD_ENV} set"
        );
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let options: TarDirOptions =
        serde_json::from_value(json!({"dest": spec["dest"], "src": spec["src"]})).unwrap();
    let marker = PathBuf::from(spec["marker"].as_str().unwrap());
    write_archive_with_hook(&options, &WorkControl::new("child"), &|path| {
        if path.ends_with("f05") {
            fs::write(&marker, b"mid-archive").unwrap();
            std::thread::sleep(Duration::from_secs(120));
        }
    })
    .unwrap();
}

#[tokio::test]
async fn killing_the_writer_mid_archive_leaves_no_file_at_dest() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    for index in 0..10 {
        write(
            &src.join(format!("f{index:02}")),
            &vec![index as u8; 300_000],
        );
    }
    let dest = dir.path().join("files.tar");
    let marker = dir.path().join("marker");
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_test_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            KILL_CHILD_ENV,
            json!({"dest": dest, "src": src, "marker": marker}).to_string(),
        )
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = support::ChildGuard(child);
    let until = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < until, "the child never got mid-archive");
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "the child exited early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let partial = dir.path().join("files.tar.partial");
    assert!(partial.exists(), "the child writes to the .partial");
    child.0.kill().unwrap(); // SIGKILL: no cleanup code runs
    child.0.wait().unwrap();
    assert!(!dest.exists(), "a killed writer left a file at dest");
    assert!(!dir.path().join("files.tar.sha256").exists());

    // The next run replaces the leftover and completes.
    run_step("tar_dir", json!({"dest": dest, "src": src}))
        .await
        .unwrap();
    assert!(!partial.exists());
    verify_archive_file(&dest, None, &WorkControl::new("t")).unwrap();
}

/// `max_rate` holds tar_dir to its limit: 60 MiB of files at 20 MiB/s take
/// about 3 s. This checks the limiter's behaviour, not the machine's speed:
/// a limiter can only be slower than its limit when the machine is busy, so
/// the upper bound (at most 10% over the limit) is tight and the lower bound
/// (a fifth of the limit: the time includes the final fsync of 60 MiB, seconds
/// on a busy disk) is loose, for a loaded 2-core machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_dir_with_max_rate_stays_within_ten_percent_of_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    let chunk: Vec<u8> = (0..(10 << 20)).map(|i| (i % 251) as u8).collect();
    for i in 0..6 {
        fs::write(src.join(format!("f{i}.bin")), &chunk).unwrap();
    }
    let limit = 20u64 << 20;
    let started = Instant::now();
    let out = run_step(
        "tar_dir",
        json!({"dest": dir.path().join("a.tar"), "src": src, "max_rate": "20MiB/s"}),
    )
    .await
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let rate = (6u64 * (10 << 20)) as f64 / elapsed;
    assert_eq!(out["files"], 6);
    assert!(
        rate <= 1.10 * limit as f64,
        "{rate:.0} B/s is over the limit of {limit} B/s (+10%) after {elapsed:.2}s"
    );
    assert!(
        rate >= 0.2 * limit as f64,
        "{rate:.0} B/s: far below the limit of {limit} B/s after {elapsed:.2}s"
    );
}

/// A `max_rate` that is not a rate is an options error naming the key,
/// before anything is written.
#[tokio::test]
async fn a_max_rate_that_is_not_a_rate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("a.tar");
    for (step, mut options) in [
        ("tar_dir", json!({"dest": tar, "src": dir.path()})),
        ("verify_archive", json!({"path": tar})),
        ("extract_archive", json!({"path": tar, "dest": dir.path()})),
        ("mcli_mirror", json!({"source": "a/b", "dest": dir.path()})),
        ("s3_upload", json!({"files": [tar], "dest": "a/b"})),
        ("s3_archive", json!({"source": "a/b", "dest": tar})),
    ] {
        options["max_rate"] = json!("fast");
        let e = find_step(step).unwrap().prepare(options).err().unwrap();
        assert_eq!(e.key, "max_rate", "{step}: {e}");
        assert!(
            e.message
                .contains("max_rate `fast` is not a rate like \"200MiB/s\""),
            "{step}: {e}"
        );
    }
    assert!(!dir.path().join("a.tar").exists());
    // The S3 steps' connection options are one flattened struct: an unknown
    // key is still refused.
    for (step, options) in [
        (
            "mcli_mirror",
            json!({"source": "a/b", "dest": dir.path(), "endpont": "http://x"}),
        ),
        (
            "s3_upload",
            json!({"files": [], "dest": "a/b", "endpont": "http://x"}),
        ),
        (
            "s3_archive",
            json!({"source": "a/b", "dest": tar, "endpont": "http://x"}),
        ),
        (
            "offsite_verify",
            json!({"stamp": "20260101_00h00m00s", "dest": "a/b", "endpont": "http://x"}),
        ),
        (
            "offsite_prune",
            json!({"dest": "a/b", "workflow": "w", "keep": 1, "endpont": "http://x"}),
        ),
    ] {
        let e = find_step(step).unwrap().prepare(options).err().unwrap();
        assert!(e.message.contains("unknown field `endpont`"), "{step}: {e}");
    }
}
