//! `s3_upload` against a real S3 API: `moto_server` (PyPI `moto[server]`)
//! started on a free 127.0.0.1 port per test. Files over the multipart
//! threshold use S3's smallest part size (5 MiB) to stay quick.

use runbook_test_support::moto;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use moto::{Moto, Relay, Watched, alias_env, env_of};
use runbook_steps::s3::upload::{UploadOptions, UploadOutput, upload_with_env};
use runbook_steps::{StepContext, StepError};
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;
const PART_SIZE: usize = 5 * MIB;

fn options(json: serde_json::Value) -> UploadOptions {
    serde_json::from_value(json).unwrap()
}

/// The upload step with `json` options and the aliases `env` gives, in a
/// step context named `label`.
fn upload_step(
    label: &str,
    json: serde_json::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> impl Future<Output = Result<UploadOutput, StepError>> + Send + use<> {
    upload_with_env(options(json), StepContext::detached(label), env)
}

/// `len` deterministic, incompressible-looking bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Writes `files` (name → content) into `dir`; returns their paths in order.
fn write_files(dir: &Path, files: &[(&str, &[u8])]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|(name, content)| {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            path
        })
        .collect()
}

fn summary(output: &UploadOutput) -> (u64, u64, u64) {
    (output.uploaded, output.skipped, output.bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_byte_identical_then_skips_what_is_present() {
    let moto = Moto::start();
    // Unfinished multipart uploads, as a killed run leaves them: the one of a
    // key being uploaded goes, the other is none of our business.
    moto.python(
        r#"
s3.create_bucket(Bucket="backups")
for key in ["thehive/sets/cassandra_1.tar", "thehive/sets/other.tar"]:
    upload = s3.create_multipart_upload(Bucket="backups", Key=key)
    s3.upload_part(Bucket="backups", Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024)
"#,
    );
    let work = tempfile::tempdir().unwrap();
    let archive = pattern(12 * MIB + 123, 1);
    let small = pattern(3 * MIB, 2);
    let sidecar = format!("{}  cassandra_1.tar\n", sha256_hex(&archive));
    let manifest = br#"{"format": 1, "complete": true}"#.to_vec();
    let paths = write_files(
        work.path(),
        &[
            ("cassandra_1.tar", &archive),
            ("cassandra_1.tar.sha256", sidecar.as_bytes()),
            ("small.bin", &small),
            ("empty.bin", b""),
            ("backup_1.json", &manifest),
        ],
    );
    let env = alias_env("offsite", moto.port, work.path());
    let upload = || {
        upload_step(
            "off-site copy",
            serde_json::json!({
                "files": &paths[..4], "last": [&paths[4]], "dest": "offsite/backups/thehive/sets",
                "part_size": PART_SIZE, "concurrency": 3
            }),
            &env,
        )
    };

    let first = upload().await.unwrap();
    let total: u64 = [&archive, sidecar.as_bytes(), &small, b"", &manifest]
        .iter()
        .map(|c| c.len() as u64)
        .sum();
    assert_eq!(summary(&first), (5, 0, total));
    let keys: Vec<&str> = first.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "thehive/sets/cassandra_1.tar",
            "thehive/sets/cassandra_1.tar.sha256",
            "thehive/sets/small.bin",
            "thehive/sets/empty.bin",
            "thehive/sets/backup_1.json"
        ]
    );
    let archive_entry = &first.objects[0];
    assert_eq!(
        archive_entry.sha256.as_deref(),
        Some(sha256_hex(&archive).as_str())
    );
    assert_eq!(archive_entry.bytes, archive.len() as u64);
    // The multipart archive was checked against the server's composite SHA-256
    // checksum. moto keeps a single PUT's checksum only when the AWS SDK's own
    // x-amz-sdk-checksum-algorithm header comes with it (AWS and MinIO keep it
    // anyway), so the small files were checked by their MD5 ETags.
    let checks: Vec<(&str, bool)> = first.objects.iter().map(|o| (o.check, o.skipped)).collect();
    assert_eq!(
        checks,
        [
            ("sha256", false),
            ("etag", false),
            ("etag", false),
            ("etag", false),
            ("etag", false)
        ]
    );

    let expected: BTreeMap<String, Vec<u8>> = [
        ("thehive/sets/cassandra_1.tar", archive.clone()),
        ("thehive/sets/cassandra_1.tar.sha256", sidecar.into_bytes()),
        ("thehive/sets/small.bin", small.clone()),
        ("thehive/sets/empty.bin", Vec::new()),
        ("thehive/sets/backup_1.json", manifest),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert!(
        moto.objects("backups").await == expected,
        "the bucket differs from the files"
    );
    // Over the threshold: three parts (5 + 5 + 2 MiB); under it: one PUT.
    assert!(
        moto.etag("backups", "thehive/sets/cassandra_1.tar")
            .await
            .ends_with("-3\"")
    );
    assert!(
        !moto
            .etag("backups", "thehive/sets/small.bin")
            .await
            .contains('-')
    );

    let second = upload().await.unwrap();
    assert_eq!(summary(&second), (0, 5, 0));
    assert!(second.objects.iter().all(|o| o.skipped));
    assert_eq!(second.objects[0].sha256, first.objects[0].sha256);

    // Same size, other content: only that file goes up again.
    let changed = pattern(3 * MIB, 3);
    std::fs::write(&paths[2], &changed).unwrap();
    let third = upload().await.unwrap();
    assert_eq!(summary(&third), (1, 4, changed.len() as u64));
    assert!(!third.objects[2].skipped);
    let now = moto.objects("backups").await;
    assert!(now["thehive/sets/small.bin"] == changed);
    assert_eq!(
        moto.incomplete_uploads("backups"),
        ["thehive/sets/other.tar"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checksums_etags_check_single_and_multipart_uploads() {
    let moto = Moto::start();
    moto.python(r#"s3.create_bucket(Bucket="backups")"#);
    let work = tempfile::tempdir().unwrap();
    let big = pattern(11 * MIB + 7, 4);
    let small = pattern(1000, 5);
    let paths = write_files(work.path(), &[("big.tar", &big), ("small.txt", &small)]);
    let upload = || {
        upload_with_env(
            options(serde_json::json!({
                "files": paths, "dest": "backups", "endpoint": moto.url(),
                "access_key": "test", "secret_key": "test",
                "part_size": PART_SIZE, "checksum": false
            })),
            StepContext::detached("upload"),
            &env_of(&[]),
        )
    };
    let first = upload().await.unwrap();
    assert_eq!(summary(&first), (2, 0, (big.len() + small.len()) as u64));
    let checks: Vec<&str> = first.objects.iter().map(|o| o.check).collect();
    assert_eq!(checks, ["etag", "etag"]);
    let objects = moto.objects("backups").await;
    assert!(objects["big.tar"] == big && objects["small.txt"] == small);

    // The multipart ETag computed locally matches the server's: skipped.
    let second = upload().await.unwrap();
    assert_eq!(summary(&second), (0, 2, 0));
    let checks: Vec<&str> = second.objects.iter().map(|o| o.check).collect();
    assert_eq!(checks, ["etag", "etag"]);
}

/// A [`Relay`] in front of moto that, once the requests of all connections
/// together pass `after` bytes, holds the request that crossed the mark
/// forever (a stand-in for a transfer stuck mid-upload) and says so.
struct StallingRelay {
    relay: Relay,
    stalled: Arc<tokio::sync::Notify>,
}

impl StallingRelay {
    async fn start(upstream: u16, after: usize) -> StallingRelay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let stalled = Arc::new(tokio::sync::Notify::new());
        let forwarded = Arc::new(AtomicUsize::new(0));
        let armed = Arc::new(AtomicBool::new(true));
        let notify = Arc::clone(&stalled);
        let relay = Relay::start(
            upstream,
            Watched::Requests,
            move |mut client_read, mut server_write| {
                let (forwarded, armed, notify) = (
                    Arc::clone(&forwarded),
                    Arc::clone(&armed),
                    Arc::clone(&notify),
                );
                async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let before = forwarded.fetch_add(n, Ordering::SeqCst);
                        if before + n > after && armed.swap(false, Ordering::SeqCst) {
                            notify.notify_one();
                            std::future::pending::<()>().await;
                        }
                        if server_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            },
        )
        .await;
        StallingRelay { relay, stalled }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_leaves_no_parts_and_resumes() {
    let moto = Moto::start();
    moto.python(r#"s3.create_bucket(Bucket="backups")"#);
    let work = tempfile::tempdir().unwrap();
    let first_archive = pattern(12 * MIB, 6);
    let second_archive = pattern(12 * MIB, 7);
    let manifest = b"{\"complete\": true}".to_vec();
    let paths = write_files(
        work.path(),
        &[
            ("cassandra_2.tar", &first_archive),
            ("files_2.tar", &second_archive),
            ("backup_2.json", &manifest),
        ],
    );
    let upload_options = || {
        options(serde_json::json!({
            "files": &paths[..2], "last": [&paths[2]], "dest": "offsite/backups/sets",
            "part_size": PART_SIZE, "concurrency": 2
        }))
    };

    // Stuck after 15 MiB of requests: both archives are mid-upload by then.
    let relay = StallingRelay::start(moto.port, 15 * MIB).await;
    let relay_env = alias_env("offsite", relay.relay.port, work.path());
    let ctx = StepContext::detached("off-site copy");
    let cancel = ctx.cancel.clone();
    let running = upload_with_env(upload_options(), ctx, &relay_env);
    let stalled = Arc::clone(&relay.stalled);
    let interrupt = async move {
        stalled.notified().await;
        cancel.cancel();
    };
    let (outcome, ()) = tokio::join!(running, interrupt);
    let error = outcome.unwrap_err();
    assert_eq!(error.kind(), "cancelled", "{error}");

    // The stuck multipart upload was aborted, not left behind; the manifest,
    // which goes last, was not uploaded.
    assert_eq!(moto.incomplete_uploads("backups"), Vec::<String>::new());
    let present = moto.objects("backups").await;
    assert!(
        !present.contains_key("sets/backup_2.json"),
        "{:?}",
        present.keys()
    );
    assert!(
        present.len() < 2,
        "nothing was interrupted: {:?}",
        present.keys()
    );
    drop(relay);

    // Again, straight to the server: only what is missing goes up.
    let env = alias_env("offsite", moto.port, work.path());
    let resumed = upload_with_env(
        upload_options(),
        StepContext::detached("off-site copy"),
        &env,
    )
    .await
    .unwrap();
    assert_eq!(
        (resumed.uploaded, resumed.skipped),
        (3 - present.len() as u64, present.len() as u64)
    );
    for object in &resumed.objects {
        let short = object.key.trim_start_matches("sets/");
        assert_eq!(object.skipped, present.contains_key(&object.key), "{short}");
    }
    let expected: BTreeMap<String, Vec<u8>> = [
        ("sets/cassandra_2.tar", first_archive),
        ("sets/files_2.tar", second_archive),
        ("sets/backup_2.json", manifest),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert!(
        moto.objects("backups").await == expected,
        "the bucket differs from the files"
    );
    assert!(moto.incomplete_uploads("backups").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_or_file_is_a_clear_error_and_dry_run_uploads_nothing() {
    let moto = Moto::start();
    moto.python(
        r#"
s3.create_bucket(Bucket="backups")
s3.put_object(Bucket="backups", Key="sets/already.txt", Body=b"already")
"#,
    );
    let work = tempfile::tempdir().unwrap();
    let paths = write_files(
        work.path(),
        &[("already.txt", b"already"), ("new.tar", b"new archive")],
    );
    let env = alias_env("offsite", moto.port, work.path());

    let error = upload_step(
        "upload",
        serde_json::json!({"files": paths, "dest": "offsite/nosuchbucket/sets"}),
        &env,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "bucket_missing");
    assert_eq!(
        error.to_string(),
        format!(
            "bucket `nosuchbucket` does not exist on alias `offsite` (http://127.0.0.1:{})",
            moto.port
        )
    );

    // No file: the pre-flight check of the destination alone.
    let check = |dest: &str| {
        upload_step(
            "off-site check",
            serde_json::json!({"files": [], "dest": dest}),
            &env,
        )
    };
    let checked = check("offsite/backups/sets").await.unwrap();
    assert_eq!((summary(&checked), checked.objects.len()), ((0, 0, 0), 0));
    let error = check("offsite/nosuchbucket").await.unwrap_err();
    assert_eq!(error.kind(), "bucket_missing");

    let missing = work.path().join("missing.tar");
    let error = upload_step(
        "upload",
        serde_json::json!({"files": [&paths[0], &missing], "dest": "offsite/backups"}),
        &env,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "io");
    assert!(
        error
            .to_string()
            .starts_with(&format!("could not read {}", missing.display())),
        "{error}"
    );

    // Through the registry, as the engine calls it, under --dry-run.
    let step = runbook_steps::find_step("s3_upload").unwrap();
    let prepared = step
        .prepare(serde_json::json!({
            "files": paths, "dest": "backups/sets", "endpoint": moto.url(),
            "access_key": "test", "secret_key": "test"
        }))
        .unwrap();
    assert!(prepared.dry_run_placeholder.is_none());
    let mut ctx = StepContext::detached("upload");
    ctx.dry_run = true;
    let dry = prepared.run(ctx).await.unwrap();
    assert_eq!(
        (
            dry["uploaded"].as_u64(),
            dry["skipped"].as_u64(),
            dry["bytes"].as_u64()
        ),
        (Some(1), Some(1), Some(11))
    );
    assert_eq!(dry["objects"][1]["key"], "sets/new.tar");
    assert_eq!(dry["objects"][1]["sha256"], serde_json::Value::Null);
    assert_eq!(dry["objects"][0]["skipped"], true);
    let keys: Vec<String> = moto.objects("backups").await.into_keys().collect();
    assert_eq!(keys, ["sets/already.txt"], "the dry run uploaded something");
}

/// `folder` + `remove` (what a restore and its undo use): the prefix ends up
/// holding exactly the folder's files, keyed by their paths below it; objects
/// outside the prefix are never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_with_remove_makes_the_prefix_hold_exactly_the_folder() {
    let moto = Moto::start();
    moto.python(
        r#"
s3.create_bucket(Bucket="thehive")
s3.put_object(Bucket="thehive", Key="files/7f/same.txt", Body=b"same")
s3.put_object(Bucket="thehive", Key="files/7f/changed.txt", Body=b"written after the backup")
s3.put_object(Bucket="thehive", Key="files/new/later.txt", Body=b"written later")
s3.put_object(Bucket="thehive", Key="files/top-later.txt", Body=b"later")
s3.put_object(Bucket="thehive", Key="other/kept.txt", Body=b"outside the prefix")
"#,
    );
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("minio_20261126_01h15m00s");
    std::fs::create_dir_all(folder.join("7f")).unwrap();
    std::fs::create_dir_all(folder.join("a b/deep")).unwrap();
    std::fs::write(folder.join("7f/same.txt"), b"same").unwrap();
    std::fs::write(folder.join("7f/changed.txt"), b"as backed up").unwrap();
    std::fs::write(
        folder.join("a b/deep/gone.txt"),
        b"deleted after the backup",
    )
    .unwrap();
    std::fs::create_dir_all(folder.join("empty-folder")).unwrap();
    let env = alias_env("offsite", moto.port, work.path());
    let run = |dry_run: bool| {
        let mut ctx = StepContext::detached("restore bucket");
        ctx.dry_run = dry_run;
        upload_with_env(
            options(
                serde_json::json!({"folder": folder, "dest": "offsite/thehive/files", "remove": true}),
            ),
            ctx,
            &env,
        )
    };

    let dry = run(true).await.unwrap();
    assert_eq!((summary(&dry), dry.removed), ((2, 1, 36), 2));
    assert_eq!(
        moto.objects("thehive").await.len(),
        5,
        "the dry run changed the bucket"
    );

    let done = run(false).await.unwrap();
    assert_eq!((summary(&done), done.removed), ((2, 1, 36), 2));
    let objects = moto.objects("thehive").await;
    let expected: BTreeMap<String, Vec<u8>> = [
        ("files/7f/changed.txt", &b"as backed up"[..]),
        ("files/7f/same.txt", b"same"),
        ("files/a b/deep/gone.txt", b"deleted after the backup"),
        ("other/kept.txt", b"outside the prefix"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_vec()))
    .collect();
    assert_eq!(objects, expected);

    // Again: nothing to do.
    let again = run(false).await.unwrap();
    assert_eq!((summary(&again), again.removed), ((0, 3, 0), 0));
    assert_eq!(again.objects.len(), 3, "every file is listed by default");

    // A restore's whole folder: the same counts, no per-file list.
    let unlisted = upload_with_env(
        options(
            serde_json::json!({"folder": folder, "dest": "offsite/thehive/files",
                                   "remove": true, "report_objects": false}),
        ),
        StepContext::detached("restore bucket"),
        &env,
    )
    .await
    .unwrap();
    assert_eq!((summary(&unlisted), unlisted.removed), ((0, 3, 0), 0));
    assert!(unlisted.objects.is_empty(), "{:?}", unlisted.objects);

    // `remove` alone cannot know what must go; a symlink is no file to upload.
    let error = upload_step(
        "restore bucket",
        serde_json::json!({"files": [], "dest": "offsite/thehive", "remove": true}),
        &env,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "options");
    assert!(
        error.to_string().contains("`remove` needs `folder`"),
        "{error}"
    );
    std::os::unix::fs::symlink("/etc/passwd", folder.join("7f/link")).unwrap();
    let error = run(false).await.unwrap_err();
    assert_eq!(error.kind(), "io");
    assert!(
        error.to_string().contains("7f/link is not a regular file"),
        "{error}"
    );
    assert_eq!(
        moto.objects("thehive").await,
        expected,
        "a refused folder changed the bucket"
    );

    // An empty folder with `remove` empties the prefix (and only it).
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let emptied = upload_step(
        "restore bucket",
        serde_json::json!({"folder": empty, "dest": "offsite/thehive/files", "remove": true}),
        &env,
    )
    .await
    .unwrap();
    assert_eq!((summary(&emptied), emptied.removed), ((0, 0, 0), 3));
    let keys: Vec<String> = moto.objects("thehive").await.into_keys().collect();
    assert_eq!(keys, ["other/kept.txt"]);
}

/// A [`Relay`] in front of moto that counts the HEAD and GET requests
/// passing through it: a stand-in for a server's request log (moto_server's
/// is not kept), to see which requests a step made.
struct CountingRelay {
    relay: Relay,
    heads: Arc<AtomicUsize>,
    gets: Arc<AtomicUsize>,
}

impl CountingRelay {
    async fn start(upstream: u16) -> CountingRelay {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let heads = Arc::new(AtomicUsize::new(0));
        let gets = Arc::new(AtomicUsize::new(0));
        let (head_count, get_count) = (Arc::clone(&heads), Arc::clone(&gets));
        let relay = Relay::start(
            upstream,
            Watched::Requests,
            move |mut client_read, mut server_write| {
                let (heads, gets) = (Arc::clone(&head_count), Arc::clone(&get_count));
                async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    // The last 5 bytes of the previous read, so that a request
                    // line cut between two reads is counted (once: a method and
                    // its ` /` are 6 bytes or more).
                    let mut seen: Vec<u8> = Vec::new();
                    loop {
                        let n = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        seen.extend_from_slice(&buffer[..n]);
                        heads.fetch_add(occurrences(&seen, b"HEAD /"), Ordering::SeqCst);
                        gets.fetch_add(occurrences(&seen, b"GET /"), Ordering::SeqCst);
                        seen.drain(..seen.len().saturating_sub(5));
                        if server_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            },
        )
        .await;
        CountingRelay { relay, heads, gets }
    }

    /// The HEAD and GET requests counted since the last call.
    fn take(&self) -> (usize, usize) {
        (
            self.heads.swap(0, Ordering::SeqCst),
            self.gets.swap(0, Ordering::SeqCst),
        )
    }
}

/// How many times `needle` occurs in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// A file whose object is listed with the same size and a single-part ETag
/// equal to its MD5 is skipped with no HEAD request; one whose content
/// changed (same size, so only the ETag tells) goes up again; a multipart
/// object, whose listed ETag is no MD5, still gets its HEAD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_single_part_etag_skips_without_a_head_and_a_changed_file_goes_up_again() {
    let moto = Moto::start();
    moto.python(r#"s3.create_bucket(Bucket="backups")"#);
    let work = tempfile::tempdir().unwrap();
    let big = pattern(PART_SIZE + 5, 8);
    let paths = write_files(
        work.path(),
        &[
            ("a.bin", &pattern(3000, 9)),
            ("b.bin", &pattern(100_000, 10)),
            ("big.tar", &big),
        ],
    );
    let relay = CountingRelay::start(moto.port).await;
    let upload = |port: u16| {
        upload_step(
            "off-site copy",
            serde_json::json!({"files": &paths, "dest": "offsite/backups/sets",
                               "part_size": PART_SIZE}),
            &alias_env("offsite", port, work.path()),
        )
    };
    let first = upload(moto.port).await.unwrap();
    assert_eq!(first.uploaded, 3);

    let second = upload(relay.relay.port).await.unwrap();
    let (heads, gets) = relay.take();
    assert_eq!(summary(&second), (0, 3, 0));
    let checks: Vec<(&str, bool)> = second
        .objects
        .iter()
        .map(|o| (o.check, o.skipped))
        .collect();
    assert_eq!(checks, [("etag", true), ("etag", true), ("sha256", true)]);
    assert!(gets >= 1, "the listing did not go through the relay");
    assert_eq!(heads, 1, "only the multipart object needs a HEAD");

    let changed = pattern(3000, 11);
    std::fs::write(&paths[0], &changed).unwrap();
    let third = upload(relay.relay.port).await.unwrap();
    let (heads, _) = relay.take();
    assert_eq!(summary(&third), (1, 2, 3000));
    assert!(!third.objects[0].skipped && third.objects[1].skipped);
    // a.bin: the HEAD that confirms it differs and the read-back after its
    // upload; big.tar: its HEAD.
    assert_eq!(heads, 3);
    assert!(moto.objects("backups").await["sets/a.bin"] == changed);
}
