//! The adversarial pass over issue 16's release (the backup pipeline,
//! `verify = "disk"`, S3 streaming, `max_rate`, the restore's parts side by
//! side, the journal's cut lists): each test attacks one of them through the
//! real `runbook` binary and pins what must hold. What an attack found is a
//! row of docs/reliability.md naming the test.
//!
//! No sleep is an assertion: a run that must stop gets a generous limit
//! (minutes), against a defect that holds it for hours or days.

use runbook_test_support::{Ran, Running, TmpfsMount, Workdir, cluster};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster::*;
use nix::sys::signal::Signal;

// ---------------------------------------------------------------- helpers

/// How long a run told to stop (a signal, its step's timeout) may take to
/// end: generous for a loaded machine, far below the hours a throttle's
/// sleep at `"1B/s"` would hold it.
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// Waits for `running` to end within [`STOP_LIMIT`]; kills it and fails
/// naming `what` otherwise.
fn finish_within(mut running: Running, what: &str) -> Ran {
    let until = Instant::now() + STOP_LIMIT;
    while running.is_running() {
        if Instant::now() >= until {
            let ran = running.kill();
            panic!(
                "{what}: still running {STOP_LIMIT:?} after being told to stop (killed); stderr:\n{}",
                ran.output().stderr.escape_ascii()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    running.finish()
}

/// `n` bytes that do not compress, for a file to archive.
fn noise(n: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The bytes process `pid` has read so far (`rchar` of `/proc/PID/io`).
fn bytes_read_by(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Every path under `folder` whose name ends in `.partial`.
fn partials(folder: &Path) -> Vec<PathBuf> {
    walk(folder)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect()
}

/// A folder `src/` of two 1 MiB files in `work`, and an archive of it
/// `made.tar` (with its `.sha256`) written by an unthrottled `tar_dir`.
fn folder_and_archive(work: &Workdir) {
    std::fs::create_dir_all(work.path("src")).unwrap();
    std::fs::write(work.path("src/a.bin"), noise(1 << 20)).unwrap();
    std::fs::write(work.path("src/b.bin"), noise(1 << 20)).unwrap();
    work.write(
        "make.rhai",
        &format!(
            "tar_dir(#{{ dest: \"{}\", src: \"{}\" }});",
            work.path("made.tar").display(),
            work.path("src").display()
        ),
    );
    work.runbook(["run", "make.rhai"]).run().success();
}

// ---------------------------------------------------------------- max_rate

/// The three blocking steps `max_rate` throttles, each given a rate so low
/// that one buffer of data is hours of debt (`"1B/s"` is a valid rate):
/// SIGTERM and SIGINT still end the run at once with 143/130 and no
/// `.partial` left, and the step's own `timeout` still ends it (exit 1,
/// "timed out"). The throttle's sleep used to ignore both: the run slept
/// the whole debt out (262,144 s for one 256 KiB buffer at 1 B/s), deaf to
/// the signal and past its timeout.
#[test]
fn a_crawling_max_rate_never_holds_back_a_signal_or_the_step_timeout() {
    let work = Workdir::new();
    folder_and_archive(&work);
    let steps = [
        (
            "tar_dir",
            format!(
                "tar_dir(#{{ dest: \"{}\", src: \"{}\", max_rate: \"1B/s\", timeout: TIMEOUT }});",
                work.path("out.tar").display(),
                work.path("src").display()
            ),
        ),
        (
            "verify_archive",
            format!(
                "verify_archive(#{{ path: \"{}\", max_rate: \"1B/s\", timeout: TIMEOUT }});",
                work.path("made.tar").display()
            ),
        ),
        (
            "extract_archive",
            format!(
                "extract_archive(#{{ path: \"{}\", dest: \"{}\", verify: false, max_rate: \"1B/s\", timeout: TIMEOUT }});",
                work.path("made.tar").display(),
                work.path("extracted").display()
            ),
        ),
    ];
    for (step, call) in &steps {
        let file = format!("{step}.rhai");
        // A signal while the step sleeps off its debt.
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            work.write(&file, &call.replace("TIMEOUT", "\"12h\""));
            // The step has read its first buffer (256 KiB: the run alone
            // reads some 13 KB) and sleeps off its debt.
            let running = work.runbook(["run", &file]).spawn();
            let pid = running.pid();
            let running = running.wait_until(&format!("{step} to read its first buffer"), || {
                bytes_read_by(pid) >= 256 << 10
            });
            finish_within(running.signal(signal), &format!("{step} under {signal:?}"))
                .failure(128 + signal as i32)
                .stderr_contains("interrupted");
            assert_eq!(partials(work.root()), Vec::<PathBuf>::new(), "{step}");
            assert!(!work.path("out.tar").exists(), "{step}");
        }
        // The step's own timeout.
        work.write(&file, &call.replace("TIMEOUT", "\"2s\""));
        let running = work.runbook(["run", &file]).spawn();
        finish_within(running, &format!("{step} with timeout 2s"))
            .failure(1)
            .stderr_contains("timed out after");
        assert_eq!(partials(work.root()), Vec::<PathBuf>::new(), "{step}");
    }
}

// ---------------------------------------------------------------- the pipeline

/// `runbook run cluster-hot-backup` against the sandbox with `extra`
/// arguments, started and left running.
fn spawn_backup(cluster: &Cluster, extra: &[&str]) -> Running {
    cluster
        .runbook(&[&["run", "cluster-hot-backup"], extra].concat())
        .spawn()
}

/// Files under `folder` whose name starts with `prefix` and ends with
/// `suffix`, holding data.
fn files_with_data(folder: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    walk(folder)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix)
                && name.ends_with(suffix)
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
        })
        .collect()
}

/// Both archives of the pipeline are being written at this moment.
fn both_archives_being_written(cluster: &Cluster) -> bool {
    !files_with_data(
        &cluster.path("cassandra_archive"),
        "cassandra_",
        ".tar.partial",
    )
    .is_empty()
        && !files_with_data(&cluster.path("storage_archive"), "files_", ".tar.partial").is_empty()
}

/// The sets `runbook list --json` shows in the sandbox's backup folder.
fn list_sets(cluster: &Cluster) -> serde_json::Value {
    cluster
        .runbook(&["list", "--json", "--manifest-path"])
        .arg(cluster.path("backup"))
        .run()
        .success()
        .stdout_json()["sets"]
        .clone()
}

/// After an interrupted backup and its cleanup (in the run, or by `recover`):
/// no file at all in the backup folders but what the Elasticsearch
/// repository holds of its own (no archive, `.sha256`, `.partial`, marker,
/// claim or manifest), no Cassandra snapshot, every Elasticsearch snapshot
/// created also deleted, and `runbook list` shows no set at all.
fn assert_nothing_of_the_run_is_left(cluster: &Cluster, what: &str) {
    let left: Vec<String> = cluster
        .backup_files()
        .into_iter()
        .filter(|f| !f.starts_with("elasticsearch/") || f.ends_with(".info"))
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "{what}: left in the backup folders"
    );
    assert_eq!(
        cluster.cassandra_snapshots(),
        Vec::<PathBuf>::new(),
        "{what}: Cassandra snapshot left"
    );
    let requests = cluster.es_requests();
    let snapshots = |method: &str| -> Vec<String> {
        requests
            .iter()
            .filter(|r| r["method"] == method)
            .filter_map(|r| r["path"].as_str())
            .filter(|p| p.contains("/elasticsearch_"))
            .map(|p| p.split('?').next().unwrap().to_string())
            .collect()
    };
    for created in snapshots("PUT") {
        assert!(
            snapshots("DELETE").contains(&created),
            "{what}: Elasticsearch snapshot {created} was not deleted: {requests:?}"
        );
    }
    assert_eq!(
        list_sets(cluster),
        serde_json::json!([]),
        "{what}: runbook list"
    );
}

/// The pipeline's two archives, written side by side (held there by a
/// `max_rate` both share), interrupted at that moment: SIGINT and SIGTERM
/// clean up in the run (130/143); SIGKILL leaves the journal, and
/// `runbook recover` removes both `.partial` files, the marker, the stamp's
/// claim, clears the Cassandra snapshot and deletes the Elasticsearch one.
/// Also killed once one archive is complete (renamed, `.sha256` written)
/// while the other is still being written: before
/// `recover`, `runbook list` shows that stamp INCOMPLETE (never a set) and
/// `runbook verify --set` refuses it; `recover` removes the finished
/// archive too. After each: nothing left, `runbook list` empty.
#[test]
fn interrupted_while_both_archives_are_written_nothing_half_made_is_left_or_counts() {
    let cluster = Cluster::start(&["--cassandra-mb", "24", "--objects", "300"]);
    let slow = ["--set", "max_rate=3MiB/s"];
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        spawn_backup(&cluster, &slow)
            .wait_until("both archives to be written", || {
                both_archives_being_written(&cluster)
            })
            .signal(signal)
            .finish()
            .failure(128 + signal as i32);
        assert_nothing_of_the_run_is_left(&cluster, &format!("{signal:?}"));
    }
    // SIGKILL with both archives half written.
    spawn_backup(&cluster, &slow)
        .wait_until("both archives to be written", || {
            both_archives_being_written(&cluster)
        })
        .kill();
    cluster
        .recover()
        .run()
        .success()
        .stderr_contains("clear Cassandra snapshot cassandra_");
    assert_nothing_of_the_run_is_left(&cluster, "SIGKILL, then recover");
    // SIGKILL once one archive is whole (renamed, its `.sha256` written)
    // while the other is still being written (with a shared limit, the
    // Cassandra archive's large reads take most of it and end first).
    let whole = || {
        [
            ("cassandra_archive", "cassandra_"),
            ("storage_archive", "files_"),
        ]
        .iter()
        .flat_map(|(key, prefix)| files_with_data(&cluster.path(key), prefix, ".tar.sha256"))
        .next()
    };
    spawn_backup(&cluster, &slow)
        .wait_until("one archive to be whole beside the other's partial", || {
            whole().is_some()
                && (!files_with_data(&cluster.path("cassandra_archive"), "cassandra_", ".partial")
                    .is_empty()
                    || !files_with_data(&cluster.path("storage_archive"), "files_", ".partial")
                        .is_empty())
        })
        .kill();
    let sidecar = whole().unwrap();
    let name = sidecar.file_name().unwrap().to_string_lossy().into_owned();
    let stamp = &name[name.find('_').unwrap() + 1..name.len() - ".tar.sha256".len()];
    let listed = list_sets(&cluster);
    let sets = listed.as_array().unwrap();
    assert_eq!(sets.len(), 1, "{listed:#}");
    assert_eq!(sets[0]["stamp"], *stamp, "{listed:#}");
    assert_eq!(sets[0]["complete"], false, "{listed:#}");
    cluster
        .runbook(&["verify", "--set", stamp, "--manifest-path"])
        .arg(cluster.path("backup"))
        .run()
        .failed();
    cluster.recover().run().success();
    assert_nothing_of_the_run_is_left(
        &cluster,
        "SIGKILL after the attachment archive, then recover",
    );
}

// ---------------------------------------------------------------- S3

/// The newest set manifest in the sandbox's backup folder.
fn newest_manifest(cluster: &Cluster) -> serde_json::Value {
    let mut manifests: Vec<PathBuf> = walk(&cluster.path("backup"))
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("backup_") && name.ends_with(".json")
        })
        .collect();
    manifests.sort();
    let newest = manifests.last().expect("a set manifest");
    serde_json::from_str(&std::fs::read_to_string(newest).unwrap()).unwrap()
}

/// The bucket is being archived: its archive holds over 1 MiB (stream), or
/// its staging folder over 30 files (staging).
fn bucket_archive_under_way(cluster: &Cluster) -> bool {
    let root = cluster.path("s3_archive");
    let all = walk(&root);
    let streamed = all.iter().any(|p| {
        p.to_string_lossy().ends_with(".tar.partial")
            && std::fs::metadata(p).is_ok_and(|m| m.len() > 1 << 20)
    });
    let staged = all
        .iter()
        .filter(|p| {
            let relative = p.strip_prefix(&root).unwrap();
            relative.to_string_lossy().starts_with("minio_") && relative.components().count() > 1
        })
        .count();
    streamed || staged > 30
}

/// An attachment deleted from the bucket after the listing, while the
/// bucket is being archived: in both `s3_mode`s the run goes on (the data
/// is hot) and the set says so, `complete with warnings` naming the key
/// (the snapshots taken before may refer to it). The staging mode used to
/// count it (`vanished` in the mirror's result) and write a set with no
/// warning at all, while the stream mode listed it.
#[test]
fn an_object_deleted_while_the_bucket_is_archived_is_a_warning_of_the_set_in_both_modes() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "300"]);
    let keys = cluster.boto3(
        "for page in s3.get_paginator('list_objects_v2').paginate(Bucket='thehive'):\n\
         \x20   for o in page.get('Contents', []):\n\
         \x20       print(o['Key'])\n",
    );
    let keys: Vec<&str> = keys.lines().collect();
    for (mode, victim) in [
        ("stream", keys[keys.len() - 1]),
        ("staging", keys[keys.len() - 2]),
    ] {
        let begun = || bucket_archive_under_way(&cluster);
        let running = spawn_backup(
            &cluster,
            &[
                "--set",
                &format!("s3_mode={mode}"),
                "--set",
                "max_rate=1MiB/s",
            ],
        )
        .wait_until(&format!("the bucket to be archived ({mode})"), begun);
        cluster.boto3(&format!(
            "s3.delete_object(Bucket='thehive', Key='{victim}')\n"
        ));
        running.finish().success();
        let manifest = newest_manifest(&cluster);
        let archive = manifest["archives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["part"] == "minio")
            .expect("the bucket's archive in the manifest");
        let listing = gnu_tar_list(Path::new(archive["path"].as_str().unwrap()), false);
        assert!(
            !listing.contains(victim),
            "{mode}: {victim} was archived before it was deleted: the attack missed"
        );
        let warnings = manifest["warnings"].to_string();
        assert!(
            warnings.contains("deleted from bucket"),
            "{mode}: the set has no warning about {victim}: {manifest:#}"
        );
    }
}

/// Keys that are legal file names but odd (blanks, non-ASCII in both
/// Unicode normal forms, `%`, `+`, `#`, `?`, `~`, a backslash, `..` inside a
/// name, a 1,000-byte key of four long segments) stream into the archive
/// under exactly their names with their bytes (GNU tar extracts them); a key
/// that is both `x` and the folder marker `x/` is refused (`x` could not be
/// a file beside the folder `x/`), so the run fails naming it unless
/// `allow_skipped_objects=true`, which keeps it as a warning of the set;
/// `runbook verify --set` passes the set.
#[test]
fn odd_keys_stream_under_their_exact_names_and_a_key_that_is_also_a_folder_is_refused() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "5"]);
    let long = [
        "a".repeat(250),
        "b".repeat(250),
        "c".repeat(250),
        "d".repeat(247),
    ]
    .join("/");
    assert_eq!(long.len(), 1000);
    let odd = [
        "odd/with space/and  two.bin".to_string(),
        "odd/caf\u{e9}.txt".to_string(),
        "odd/cafe\u{301}.txt".to_string(),
        "odd/\u{65e5}\u{672c}/\u{1f600}.bin".to_string(),
        "odd/a+b c%20d#e?f.bin".to_string(),
        "odd/~tilde\\back.bin".to_string(),
        "odd/..dots../x..".to_string(),
        long,
    ];
    let bodies: Vec<String> = odd.iter().map(|k| format!("body of {k}")).collect();
    let mut script = String::new();
    for (key, body) in odd.iter().zip(&bodies) {
        // JSON strings are Python string literals too.
        script += &format!(
            "s3.put_object(Bucket='thehive', Key={}, Body={}.encode())\n",
            serde_json::json!(key),
            serde_json::json!(body)
        );
    }
    script += "s3.put_object(Bucket='thehive', Key='x', Body=b'file x')\n\
               s3.put_object(Bucket='thehive', Key='x/', Body=b'')\n";
    cluster.boto3(&script);
    cluster
        .runbook(&["run", "cluster-hot-backup"])
        .run()
        .failed_cleanly(&cluster, "have keys that cannot be stored as files")
        .stderr_contains("[\"x\"]");
    cluster
        .runbook(&[
            "run",
            "cluster-hot-backup",
            "--set",
            "allow_skipped_objects=true",
        ])
        .run()
        .success();
    let manifest = newest_manifest(&cluster);
    assert!(
        manifest["warnings"].to_string().contains("[\\\"x\\\"]"),
        "{manifest:#}"
    );
    let archive = manifest["archives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["part"] == "minio")
        .expect("the bucket's archive in the manifest");
    let archive = PathBuf::from(archive["path"].as_str().unwrap());
    let top = archive.file_stem().unwrap().to_string_lossy().into_owned();
    let into = cluster.dir.path().join("extracted");
    gnu_tar_extract(&archive, &into);
    for (key, body) in odd.iter().zip(&bodies) {
        let file = into.join(&top).join(key);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
            *body
        );
    }
    assert!(into.join(&top).join("x").is_dir(), "the folder marker x/");
    let stamp = &top["minio_".len()..];
    cluster
        .runbook(&["verify", "--set", stamp, "--manifest-path"])
        .arg(cluster.path("backup"))
        .run()
        .success();
}

// ---------------------------------------------------------------- the journal

/// A result list of exactly 100 items is journaled whole with no
/// `_not_journaled` count; one of 101 keeps its first 100 and says
/// `links_outside_not_journaled: 1`; the workflow gets every item either way
/// (here `tar_dir`'s `links_outside`, one per symlink pointing outside the
/// folder, and its warnings, one each).
#[test]
fn a_result_list_of_100_items_is_journaled_whole_and_one_of_101_says_one_was_left_out() {
    for count in [100usize, 101] {
        let work = Workdir::new();
        std::fs::create_dir_all(work.path("src")).unwrap();
        for i in 0..count {
            std::os::unix::fs::symlink("/etc/hostname", work.path(&format!("src/l{i:03}")))
                .unwrap();
        }
        work.write(
            "wf.rhai",
            &format!(
                "let r = tar_dir(#{{ dest: \"{}\", src: \"{}\" }});\n\
                 log_info(`workflow got ${{r.links_outside.len()}} links and ${{r.warnings.len()}} warnings`);",
                work.path("out.tar").display(),
                work.path("src").display()
            ),
        );
        work.runbook(["run", "wf.rhai"])
            .run()
            .success()
            .stderr_contains(&format!("workflow got {count} links and {count} warnings"));
        let journals = work.journals();
        let result = &journals[0]["steps"][0]["result"];
        assert_eq!(
            result["links_outside"].as_array().unwrap().len(),
            100,
            "{count}"
        );
        assert_eq!(
            result["links_outside"][99], "src/l099 -> /etc/hostname",
            "{count}: the first 100 are kept, in order"
        );
        assert_eq!(result["warnings"].as_array().unwrap().len(), 100, "{count}");
        if count == 100 {
            assert!(
                result.get("links_outside_not_journaled").is_none(),
                "{result:#}"
            );
            assert!(result.get("warnings_not_journaled").is_none(), "{result:#}");
        } else {
            assert_eq!(result["links_outside_not_journaled"], 1, "{result:#}");
            assert_eq!(result["warnings_not_journaled"], 1, "{result:#}");
        }
    }
}

/// The whole stock backup at `max_rate=1B/s`, S3 storage in both modes:
/// the bucket's reader (`s3_archive`, or `mcli_mirror` in staging mode)
/// waits for its throttle asynchronously, the Cassandra archive blocking;
/// SIGTERM once both have begun ends the run at once (143) with nothing
/// left: no `.partial`, no staging folder, no marker, no snapshot.
#[test]
fn the_whole_backup_at_one_byte_per_second_stops_at_sigterm_with_nothing_left() {
    let cluster = Cluster::start(&["--storage", "s3", "--objects", "20"]);
    for mode in ["stream", "staging"] {
        let begun = || {
            let bucket = walk(&cluster.path("s3_archive"));
            !walk(&cluster.path("cassandra_archive")).is_empty()
                && (bucket
                    .iter()
                    .any(|p| p.to_string_lossy().ends_with(".partial")))
        };
        let running = spawn_backup(
            &cluster,
            &[
                "--set",
                "max_rate=1B/s",
                "--set",
                &format!("s3_mode={mode}"),
            ],
        )
        .wait_until(&format!("both archives to begin ({mode})"), begun);
        // Both readers have taken their first bytes and wait for days.
        std::thread::sleep(Duration::from_secs(2));
        finish_within(
            running.signal(Signal::SIGTERM),
            &format!("the backup ({mode})"),
        )
        .failure(143);
        let left: Vec<String> = cluster
            .backup_files()
            .into_iter()
            .filter(|f| !f.starts_with("elasticsearch/") || f.ends_with(".info"))
            .collect();
        assert_eq!(left, Vec::<String>::new(), "{mode}");
        assert_eq!(
            cluster.cassandra_snapshots(),
            Vec::<PathBuf>::new(),
            "{mode}"
        );
    }
}

// ---------------------------------------------------------------- verify = "disk"

/// `verify = "disk"` with the archives on a tmpfs, where no page can be
/// dropped from the cache: the backup still succeeds, says for each archive
/// that its pages are read from memory, not from the disk, and the
/// journal's `verify_archive` results count them (`cached_pages` > 0): the
/// run never claims a read from the device it did not make.
#[test]
fn verify_disk_on_a_tmpfs_says_the_pages_stayed_in_memory() {
    let cluster = Cluster::start(&[]);
    let ram = cluster.dir.path().join("ram");
    let _mount = TmpfsMount::new(&ram, "size=96m");
    for folder in ["cassandra", "storage"] {
        std::fs::create_dir_all(ram.join(folder)).unwrap();
    }
    cluster
        .runbook(&["run", "cluster-hot-backup", "--set", "verify=disk"])
        .args([
            "--set",
            &format!("cassandra_archive_path={}", ram.join("cassandra").display()),
        ])
        .args([
            "--set",
            &format!("storage_archive_path={}", ram.join("storage").display()),
        ])
        .run()
        .success()
        .stderr_contains("are still in the page cache after dropping them");
    let journal = cluster.only_journal();
    let verifications = steps_of(&journal, "verify_archive");
    assert_eq!(verifications.len(), 2, "{journal:#}");
    for step in verifications {
        assert_eq!(step["result"]["read_from"], "disk", "{step:#}");
        assert!(
            step["result"]["cached_pages"].as_u64().unwrap() > 0,
            "{step:#}"
        );
    }
}

// ---------------------------------------------------------------- orphans

/// The live processes whose environment holds `key=value`.
fn processes_with_env(key: &str, value: &str) -> Vec<i32> {
    let needle = format!("{key}={value}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(e.path().join("environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .any(|v| v == needle.as_bytes())
                .then_some(pid)
        })
        .collect()
}

/// SIGKILL while `nodetool snapshot` runs (the stand-in links the tables
/// one by one over 8 s), then `runbook recover` at once. A step's program
/// runs in a process group of its own, so the SIGKILL left it running: it
/// went on linking tables after `recover` had cleared the snapshot, and a
/// Cassandra snapshot was left for ever. `recover` now waits for the
/// programs the killed run left running (they carry its pid in
/// `RUN_BY_RUNBOOK_PID`), then undoes: once the tool has ended, no
/// snapshot is left.
#[test]
fn sigkill_mid_snapshot_then_recover_waits_for_the_orphaned_tool_and_leaves_no_snapshot() {
    let cluster = Cluster::start(&["--knob", "nodetool-delay=snapshot=8"]);
    let state = cluster.path("state").display().to_string();
    spawn_backup(&cluster, &[])
        .wait_until("the snapshot to be under way", || {
            !cluster.cassandra_snapshots().is_empty()
        })
        .kill();
    cluster
        .recover()
        .run()
        .success()
        .stderr_contains("left programs running: pid ")
        .stderr_contains("clear Cassandra snapshot cassandra_");
    // Whatever the sandbox's tools still run (nothing, once recover waited).
    runbook_test_support::wait_until("the stand-in nodetool to end", || {
        processes_with_env("SANDBOX_STATE", &state).is_empty()
    });
    assert_eq!(
        cluster.cassandra_snapshots(),
        Vec::<PathBuf>::new(),
        "a Cassandra snapshot outlived the run and its recovery"
    );
}

// ---------------------------------------------------------------- the restore

/// The `sstableloader` JVMs (`BulkLoader`) run `run_pid` started.
fn loaders_of(run_pid: i32) -> usize {
    processes_with_env("RUN_BY_RUNBOOK_PID", &run_pid.to_string())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(10).any(|w| w == b"BulkLoader"))
        })
        .count()
}

/// On the real servers (Cassandra 4.1, OpenSearch 2.19): the whole
/// `cluster-hot-restore` (its parts side by side) SIGKILLed while two tables
/// are being loaded at once (`loader_parallel=2`), after a row, a document
/// and an attachment were changed since the backup. `runbook recover` waits
/// for the orphaned loaders, then puts every part back: the digest (rows,
/// documents, attachments) equals the one before the restore.
#[test]
fn sigkill_while_tables_load_side_by_side_then_recover_puts_every_part_back() {
    use runbook_test_support::restore_proof::{Storage, curl, digest, real_tools, set_stamps};
    let cluster = Cluster::start(&["--cassandra", "real", "--es", "opensearch"]);
    let tools = format!(
        "{}:{}",
        real_tools().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cluster
        .runbook(&["run", "cluster-hot-backup"])
        .env("PATH", &tools)
        .run()
        .success();
    let stamps = set_stamps(&cluster);
    assert_eq!(stamps.len(), 1, "{stamps:?}");
    let stamp = stamps.into_iter().next().unwrap();
    // Every part changed since the backup.
    let host = cluster.record["env"]["CQLSH_HOST"]
        .as_str()
        .unwrap()
        .to_string();
    let out = std::process::Command::new(real_tools().join("cqlsh"))
        .args([
            &host,
            "-e",
            "INSERT INTO thehive.edgestore (key, column1, value) VALUES (0x7e57000016, 0x01, 0x02)",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, body) = curl(&[
        "-X",
        "PUT",
        &format!(
            "{}/thehive_global/_doc/attack-16?refresh=true",
            cluster.es_url()
        ),
        "-d",
        r#"{"title":"written after the backup"}"#,
    ]);
    assert!(status == 201 || status == 200, "{status} {body}");
    std::fs::write(cluster.path("attachments").join("after-backup.bin"), b"new").unwrap();
    let before = digest(&cluster, Storage::Local);

    let staging = cluster.dir.path().join("restore-staging");
    let running = cluster
        .bare_runbook(["run", "cluster-hot-restore", "--vars"])
        .arg(cluster.path("vars"))
        .arg("--set")
        .arg(format!("staging={}", staging.display()))
        .args(["--set", "thehive_check=false", "--set", "storage=local"])
        .args([
            "--set",
            "loader_parallel=2",
            "--set",
            "cassandra_loader=sstableloader",
        ])
        .args([
            "--set",
            &format!("stamp={stamp}"),
            "--set",
            &format!("confirm={stamp}"),
        ])
        .env("PATH", &tools)
        .spawn();
    let pid = running.pid();
    running
        .wait_until_within(
            "two tables loading side by side",
            Duration::from_secs(900),
            || loaders_of(pid) >= 2,
        )
        .kill();
    let recovered = cluster.recover().env("PATH", &tools).run();
    if recovered.code() != Some(0) {
        let compensations: Vec<serde_json::Value> = walk(&cluster.dir.path().join("journal"))
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let journal: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
                journal["compensations"].clone()
            })
            .collect();
        panic!(
            "recover failed:\n{}\ncompensations: {compensations:#?}",
            String::from_utf8_lossy(&recovered.output().stderr)
        );
    }
    recovered.stderr_contains("left programs running");
    assert_eq!(
        loaders_of(pid),
        0,
        "recover waited for the orphaned loaders"
    );
    assert_eq!(
        digest(&cluster, Storage::Local),
        before,
        "a part is not as it was before the restore"
    );
}
