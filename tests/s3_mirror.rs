//! `mcli_mirror` against a real S3 API: `moto_server` (PyPI `moto[server]`)
//! started on a free 127.0.0.1 port per test. Bad-credential tests switch on
//! moto's IAM authentication (`/moto-api/reset-auth`), which checks SigV4
//! signatures and access keys like AWS does.

use runbook_test_support::{moto, support};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use moto::{Moto, Relay, Watched, alias_env, env_of};
use object_store::{ObjectStoreExt, PutPayload};
use runbook_steps::s3::mirror::{MirrorOptions, MirrorOutput, mirror_with_env};
use runbook_steps::{StepContext, StepError};
use support::free_port;

fn options(json: serde_json::Value) -> MirrorOptions {
    serde_json::from_value(json).unwrap()
}

/// The mirror step with `json` options and the aliases `env` gives, in a
/// step context named `mirror`.
fn mirror_step(
    json: serde_json::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> impl Future<Output = Result<MirrorOutput, StepError>> + Send + use<> {
    mirror_with_env(options(json), StepContext::detached("mirror"), env)
}

/// The deterministic content of test object `i` (every tenth one empty).
fn content(i: usize) -> Vec<u8> {
    if i.is_multiple_of(10) {
        return Vec::new();
    }
    (0..(i * 37) % 3000 + 1)
        .map(|j| ((i + j) % 251) as u8)
        .collect()
}

fn key(i: usize) -> String {
    match i % 4 {
        0 => format!("top-{i:05}.bin"),
        _ => format!("attachments/{:02x}/{:02x}/{i:05}.bin", i % 17, i % 5),
    }
}

/// Every regular file below `root`, relative path → content.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let relative = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (relative, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

const OBJECTS: usize = 1105;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_nested_bucket_mirrors_byte_identical_and_resumes() {
    let moto = Moto::start();
    moto.python(
        r#"
s3.create_bucket(Bucket="thehive")
s3.put_object(Bucket="thehive", Key="emptydir/", Body=b"")
s3.put_object(Bucket="thehive", Key="names/with space/été +plus.txt", Body=b"accents")
"#,
    );
    let store = moto.store("thehive");
    futures::stream::iter(0..OBJECTS)
        .map(|i| {
            let store = store.clone();
            async move {
                store
                    .put(
                        &object_store::path::Path::from(key(i)),
                        PutPayload::from(content(i)),
                    )
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    // A multipart object: its ETag is not an MD5 ("<hash>-3").
    let multipart: Vec<u8> = (0..3 * 2048 + 100).map(|j| (j % 253) as u8).collect();
    let mut upload = store
        .put_multipart(&object_store::path::Path::from("big/multipart.bin"))
        .await
        .unwrap();
    for part in [
        &multipart[..2048],
        &multipart[2048..4096],
        &multipart[4096..],
    ] {
        upload
            .put_part(PutPayload::from(part.to_vec()))
            .await
            .unwrap();
    }
    upload.complete().await.unwrap();

    let mut expected: BTreeMap<String, Vec<u8>> =
        (0..OBJECTS).map(|i| (key(i), content(i))).collect();
    expected.insert("names/with space/été +plus.txt".into(), b"accents".to_vec());
    expected.insert("big/multipart.bin".into(), multipart);

    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("minio_20261126_01h15m00s");
    let env = alias_env("minio", moto.port, work.path());
    let mirror = |remove: bool| {
        mirror_step(
            serde_json::json!({
                "source": "minio/thehive", "dest": dest, "concurrency": 8, "remove": remove
            }),
            &env,
        )
    };

    let first = mirror(false).await.unwrap();
    let total = expected.len() as u64;
    assert_eq!(
        (
            first.objects,
            first.downloaded,
            first.skipped,
            first.refused,
            first.vanished
        ),
        (total, total, 0, 0, 0)
    );
    assert_eq!(
        first.bytes,
        expected.values().map(|c| c.len() as u64).sum::<u64>()
    );
    assert_eq!(first.downloaded_bytes, first.bytes);
    assert!(
        tree(&dest) == expected,
        "the mirror differs from the bucket"
    );
    assert!(dest.join("emptydir").is_dir());

    // Each file carries the object's Last-Modified as its mtime.
    let head = store
        .head(&object_store::path::Path::from(key(1)))
        .await
        .unwrap();
    let mtime = filetime::FileTime::from_last_modification_time(
        &std::fs::metadata(dest.join(key(1))).unwrap(),
    );
    assert_eq!(mtime.unix_seconds(), head.last_modified.timestamp());

    let second = mirror(false).await.unwrap();
    assert_eq!((second.downloaded, second.skipped), (0, total));

    // A changed object, a stray local file, and a local folder standing where
    // the bucket has a file: the change and the blocked file are fetched, the
    // strays go with `remove` (before the downloads, so the folder is no obstacle).
    store
        .put(
            &object_store::path::Path::from(key(3)),
            PutPayload::from(b"changed".to_vec()),
        )
        .await
        .unwrap();
    std::fs::create_dir_all(dest.join("stray")).unwrap();
    std::fs::write(dest.join("stray/old.bin"), b"old").unwrap();
    std::fs::remove_file(dest.join(key(5))).unwrap();
    std::fs::create_dir_all(dest.join(key(5))).unwrap();
    std::fs::write(dest.join(key(5)).join("junk"), b"junk").unwrap();
    let third = mirror(true).await.unwrap();
    assert_eq!(
        (third.downloaded, third.skipped, third.removed),
        (2, total - 2, 2)
    );
    expected.insert(key(3), b"changed".to_vec());
    assert!(
        tree(&dest) == expected,
        "the mirror differs from the bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_keys_are_refused_and_dry_run_writes_nothing() {
    let moto = Moto::start();
    moto.python(
        r#"
s3.create_bucket(Bucket="thehive")
for key in ["files/a/../../../escape.txt", "files//lead.txt", "files/./dot.txt", "files/ok/fine.txt", "other/outside.txt"]:
    s3.put_object(Bucket="thehive", Key=key, Body=b"data")
"#,
    );
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("deep/dest");
    // Through the registry, as the engine calls it, with an explicit endpoint.
    let step = runbook_steps::find_step("mcli_mirror").unwrap();
    let run = |dry_run: bool| {
        let prepared = step
            .prepare(serde_json::json!({
                "source": "thehive/files", "dest": dest, "endpoint": moto.url(),
                "access_key": "test", "secret_key": "test"
            }))
            .unwrap();
        assert!(prepared.dry_run_placeholder.is_none());
        let mut ctx = StepContext::detached("mirror");
        ctx.dry_run = dry_run;
        prepared.run(ctx)
    };

    let dry = run(true).await.unwrap();
    assert_eq!(
        (dry["downloaded"].as_u64(), dry["refused"].as_u64()),
        (Some(1), Some(3))
    );
    assert!(!dest.exists(), "dry run created the destination");

    let real = run(false).await.unwrap();
    assert_eq!(real["objects"], 1);
    assert_eq!(real["downloaded"], 1);
    assert_eq!(real["refused"], 3);
    let refused: Vec<&str> = real["refused_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        refused.contains(&"files/a/../../../escape.txt"),
        "{refused:?}"
    );
    assert!(refused.contains(&"files//lead.txt"), "{refused:?}");
    // Nothing but the one safe file anywhere in the work folder.
    let everything: Vec<String> = tree(work.path()).into_keys().collect();
    assert_eq!(everything, ["deep/dest/ok/fine.txt"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_with_the_s3_code_and_the_alias() {
    let moto = Moto::start();
    let keys: serde_json::Value = serde_json::from_str(&moto.python(
        r#"
s3.create_bucket(Bucket="secured")
s3.put_object(Bucket="secured", Key="doc/report.txt", Body=b"classified")
iam = client("iam")
iam.create_user(UserName="backup")
key = iam.create_access_key(UserName="backup")["AccessKey"]
iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
# From now on moto checks every request's access key and signature.
urllib.request.urlopen(urllib.request.Request(ep + "/moto-api/reset-auth", data=b"0",
    method="POST", headers={"Content-Type": "text/plain"})).read()
print(json.dumps({"access": key["AccessKeyId"], "secret": key["SecretAccessKey"]}))
"#,
    ))
    .unwrap();
    let access = keys["access"].as_str().unwrap();
    let secret = keys["secret"].as_str().unwrap();

    let config = tempfile::tempdir().unwrap();
    let write_alias = |access: &str, secret: &str| {
        let json = serde_json::json!({"version": "10", "aliases": {"backup": {
            "url": moto.url(), "accessKey": access, "secretKey": secret, "api": "S3v4", "path": "auto"
        }}});
        std::fs::write(config.path().join("config.json"), json.to_string()).unwrap();
    };
    let work = tempfile::tempdir().unwrap();
    let env = env_of(&[("HOME", work.path().display().to_string())]);
    let mirror = || {
        mirror_step(
            serde_json::json!({
                "source": "backup/secured", "dest": work.path().join("dest"),
                "config_dir": config.path()
            }),
            &env,
        )
    };

    // The right keys pass moto's signature check, for the listing and the download.
    write_alias(access, secret);
    let good = mirror().await.unwrap();
    assert_eq!(good.downloaded, 1);
    assert_eq!(
        std::fs::read(work.path().join("dest/doc/report.txt")).unwrap(),
        b"classified"
    );

    let alias_named = format!("alias `backup` (http://127.0.0.1:{})", moto.port);
    write_alias(access, "wrong-secret-value");
    let error = mirror().await.unwrap_err();
    assert_eq!(error.kind(), "credentials");
    let text = error.to_string();
    assert!(text.contains(&alias_named), "{text}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
    assert!(!text.contains("wrong-secret-value"), "{text}");

    write_alias("AKIAUNKNOWNKEY000000", secret);
    let error = mirror().await.unwrap_err();
    assert_eq!(error.kind(), "credentials");
    let text = error.to_string();
    assert!(
        text.contains(&alias_named) && text.contains("InvalidAccessKeyId"),
        "{text}"
    );
    assert!(!text.contains(secret), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_endpoint_and_missing_bucket_are_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let closed_port = free_port();
    let env = env_of(&[
        (
            "MC_HOST_gone",
            format!("http://AK:SECRETKEY@127.0.0.1:{closed_port}"),
        ),
        ("HOME", work.path().display().to_string()),
    ]);
    let error = mirror_step(
        serde_json::json!({"source": "gone/thehive", "dest": work.path().join("d")}),
        &env,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "unreachable");
    assert_eq!(
        error.message(),
        format!("cannot reach alias `gone` (http://127.0.0.1:{closed_port})")
    );
    assert!(!error.to_string().contains("SECRETKEY"));

    let moto = Moto::start();
    let env = alias_env("minio", moto.port, work.path());
    let error = mirror_step(
        serde_json::json!({"source": "minio/nosuchbucket", "dest": work.path().join("d")}),
        &env,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "bucket_missing");
    assert_eq!(
        error.to_string(),
        format!(
            "bucket `nosuchbucket` does not exist on alias `minio` (http://127.0.0.1:{})",
            moto.port
        )
    );

    // An alias that exists nowhere names where it was looked for.
    let error = mirror_step(
        serde_json::json!({"source": "nowhere/b", "dest": work.path().join("d")}),
        &env,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "config");
    assert!(
        error.to_string().contains("alias `nowhere` not found"),
        "{error}"
    );
    assert!(!work.path().join("d").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mc_host_and_config_json_aliases_both_work() {
    let moto = Moto::start();
    moto.python(
        r#"
s3.create_bucket(Bucket="thehive")
s3.put_object(Bucket="thehive", Key="a/one.txt", Body=b"one")
s3.put_object(Bucket="thehive", Key="two.txt", Body=b"two")
"#,
    );
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    std::fs::create_dir_all(home.join(".mcli")).unwrap();
    std::fs::write(
        home.join(".mcli/config.json"),
        serde_json::json!({"version": "10", "aliases": {"files": {
            "url": moto.url(), "accessKey": "test", "secretKey": "test", "api": "s3v4", "path": "on"
        }}})
        .to_string(),
    )
    .unwrap();
    let env = alias_env("viaenv", moto.port, &home);
    let expected: BTreeMap<String, Vec<u8>> = [
        ("a/one.txt".to_string(), b"one".to_vec()),
        ("two.txt".to_string(), b"two".to_vec()),
    ]
    .into();
    for alias in ["viaenv", "files"] {
        let dest: PathBuf = work.path().join(alias);
        let result = mirror_step(
            serde_json::json!({"source": format!("{alias}/thehive"), "dest": dest}),
            &env,
        )
        .await
        .unwrap_or_else(|e| panic!("{alias}: {e}"));
        assert_eq!(result.downloaded, 2, "{alias}");
        assert_eq!(tree(&dest), expected, "{alias}");
    }
}

/// What [`FaultyRelay`] does to the first response stream that passes its threshold.
#[derive(Clone)]
enum Fault {
    /// Close the connection (a dropped connection mid-object).
    Cut,
    /// Stop forwarding and hold the connection open (a hung transfer).
    Stall,
    /// Stop forwarding until notified, then go on.
    Pause(std::sync::Arc<tokio::sync::Notify>),
}

/// A [`Relay`] in front of moto that, once, cuts or stalls the first
/// server-to-client stream passing `after` bytes: a stand-in for a flaky network.
struct FaultyRelay {
    relay: Relay,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FaultyRelay {
    /// True once the fault has happened.
    fn fired(&self) -> bool {
        !self.armed.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn start(upstream: u16, after: usize, fault: Fault) -> FaultyRelay {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let armed = Arc::new(AtomicBool::new(true));
        let relay_armed = Arc::clone(&armed);
        let relay = Relay::start(
            upstream,
            Watched::Answers,
            move |mut server_read, mut client_write| {
                let armed = Arc::clone(&armed);
                let fault = fault.clone();
                async move {
                    let mut sent = 0;
                    let mut buffer = vec![0u8; 16 * 1024];
                    loop {
                        let n = match server_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if sent + n > after && armed.swap(false, Ordering::SeqCst) {
                            let _ = client_write.write_all(&buffer[..after - sent]).await;
                            match &fault {
                                Fault::Cut => break,
                                Fault::Stall => std::future::pending::<()>().await,
                                Fault::Pause(resume) => {
                                    resume.notified().await;
                                    let _ = client_write.write_all(&buffer[after - sent..n]).await;
                                    sent += n;
                                    continue;
                                }
                            }
                        }
                        sent += n;
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            },
        )
        .await;
        FaultyRelay {
            relay,
            armed: relay_armed,
        }
    }
}

/// A bucket holding one 1 MiB object; returns its content.
fn one_big_object(moto: &Moto) -> Vec<u8> {
    moto.python(
        r#"
s3.create_bucket(Bucket="thehive")
s3.put_object(Bucket="thehive", Key="big/blob.bin", Body=bytes((i * 7 + 3) % 256 for i in range(1 << 20)))
"#,
    );
    (0..1usize << 20)
        .map(|i| ((i * 7 + 3) % 256) as u8)
        .collect()
}

fn through_relay(relay: &FaultyRelay, dest: &Path) -> MirrorOptions {
    options(serde_json::json!({
        "source": "thehive", "dest": dest, "endpoint": format!("http://127.0.0.1:{}", relay.relay.port),
        "access_key": "test", "secret_key": "test"
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_object_is_retried() {
    let moto = Moto::start();
    let blob = one_big_object(&moto);
    let relay = FaultyRelay::start(moto.port, 300 * 1024, Fault::Cut).await;
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let result = mirror_with_env(
        through_relay(&relay, &dest),
        StepContext::detached("mirror"),
        &env_of(&[]),
    )
    .await
    .unwrap();
    assert!(relay.fired(), "the connection was never cut");
    assert_eq!(result.downloaded, 1);
    assert!(std::fs::read(dest.join("big/blob.bin")).unwrap() == blob);
    assert_eq!(tree(&dest).len(), 1, "a .partial file was left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interruption_deletes_partial_files() {
    let moto = Moto::start();
    one_big_object(&moto);
    let relay = FaultyRelay::start(moto.port, 300 * 1024, Fault::Stall).await;
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let ctx = StepContext::detached("mirror");
    let cancel = ctx.cancel.clone();
    let run = tokio::spawn(mirror_with_env(
        through_relay(&relay, &dest),
        ctx,
        &env_of(&[]),
    ));
    // Wait until the download is under way and stuck with data in the .partial file.
    let partial = dest.join("big/blob.bin.partial");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let started = |partial: &Path| std::fs::metadata(partial).is_ok_and(|m| m.len() > 0);
    while !(relay.fired() && started(&partial)) {
        assert!(
            std::time::Instant::now() < until,
            "the download never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    cancel.cancel();
    let error = run.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), "cancelled");
    assert!(
        tree(&dest).is_empty(),
        "files left: {:?}",
        tree(&dest).keys()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_after_the_listing_is_counted_not_fatal() {
    let moto = Moto::start();
    one_big_object(&moto);
    moto.python(r#"s3.put_object(Bucket="thehive", Key="hot/later.txt", Body=b"short-lived")"#);
    let resume = std::sync::Arc::new(tokio::sync::Notify::new());
    let relay = FaultyRelay::start(moto.port, 300 * 1024, Fault::Pause(resume.clone())).await;
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let mut options = through_relay(&relay, &dest);
    // One at a time, in listing order: big/blob.bin first, then hot/later.txt.
    options.concurrency = 1;
    let run = tokio::spawn(mirror_with_env(
        options,
        StepContext::detached("mirror"),
        &env_of(&[]),
    ));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !relay.fired() {
        assert!(
            std::time::Instant::now() < until,
            "the download never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Listed, not yet downloaded: delete it behind the mirror's back.
    moto.store("thehive")
        .delete(&object_store::path::Path::from("hot/later.txt"))
        .await
        .unwrap();
    resume.notify_one();
    let result = run.await.unwrap().unwrap();
    assert_eq!(
        (result.objects, result.downloaded, result.vanished),
        (2, 1, 1)
    );
    let files: Vec<String> = tree(&dest).into_keys().collect();
    assert_eq!(files, ["big/blob.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_with_a_private_ca_from_mc_certs_folder() {
    let certs = tempfile::tempdir().unwrap();
    let moto = Moto::start_tls(certs.path());
    moto.python(
        r#"
s3.create_bucket(Bucket="thehive")
s3.put_object(Bucket="thehive", Key="a/one.txt", Body=b"over tls")
"#,
    );
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("mcli");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({"version": "10", "aliases": {"secure": {
            "url": moto.url(), "accessKey": "test", "secretKey": "test", "api": "S3v4", "path": "auto"
        }}})
        .to_string(),
    )
    .unwrap();
    let env = env_of(&[("HOME", work.path().display().to_string())]);
    let mirror = || {
        mirror_step(
            serde_json::json!({
                "source": "secure/thehive", "dest": work.path().join("dest"), "config_dir": config
            }),
            &env,
        )
    };

    // Without the CA the certificate is not trusted: a clear error, naming the alias.
    let error = mirror().await.unwrap_err();
    assert_eq!(error.kind(), "unreachable");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("cannot reach alias `secure` ({})", moto.url())),
        "{text}"
    );
    assert!(text.contains("put its certificate in certs/CAs/"), "{text}");
    assert!(
        text.ends_with("invalid peer certificate: UnknownIssuer"),
        "{text}"
    );

    // mc keeps private CAs in <config dir>/certs/CAs/; so do we.
    std::fs::create_dir_all(config.join("certs/CAs")).unwrap();
    std::fs::copy(
        certs.path().join("ca.crt"),
        config.join("certs/CAs/private-ca.crt"),
    )
    .unwrap();
    std::fs::write(config.join("certs/CAs/README"), "not a certificate").unwrap();
    let result = mirror().await.unwrap();
    assert_eq!(result.downloaded, 1);
    assert_eq!(
        std::fs::read(work.path().join("dest/a/one.txt")).unwrap(),
        b"over tls"
    );
}
