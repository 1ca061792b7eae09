//! `s3_archive` against a real S3 API (`moto_server`, PyPI `moto[server]`,
//! the sandbox's S3 stand-in) started per test: the streamed archive holds
//! the same members as the staging mode's `mcli_mirror` + `tar_dir`, GNU tar
//! reads it, a changed object fails (or warns), and an empty bucket gives an
//! archive of the top folder alone.

use runbook_test_support::{cluster, moto};

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use futures::StreamExt;
use moto::{Moto, alias_env};
use object_store::{ObjectStoreExt, PutPayload};
use runbook_steps::archive::tar_dir::{TarDirOptions, write_archive};
use runbook_steps::archive::verification::{VerifyArchiveOptions, verify_archive};
use runbook_steps::runtime::blocking_work::WorkControl;
use runbook_steps::s3::archive::{S3ArchiveOptions, S3ArchiveOutput, archive_with_env};
use runbook_steps::s3::mirror::{MirrorOptions, mirror_with_env};
use runbook_steps::{StepContext, StepError};

const TOP: &str = "minio_20261126_01h15m00s";

/// One member of an archive as the tar crate reads it: everything but the
/// folder mtimes, which the staging mode takes from the clock.
#[derive(Debug, PartialEq, Eq)]
struct Member {
    path: String,
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    user: Option<String>,
    group: Option<String>,
    size: u64,
    file_mtime: Option<u64>,
    content: Vec<u8>,
}

fn members(archive: &Path) -> Vec<Member> {
    let mut reader = tar::Archive::new(std::fs::File::open(archive).unwrap());
    reader
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            let kind = header.entry_type().as_byte();
            Member {
                path: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
                kind,
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                user: header.username().unwrap().map(str::to_string),
                group: header.groupname().unwrap().map(str::to_string),
                size: header.size().unwrap(),
                file_mtime: (kind != b'5').then(|| header.mtime().unwrap()),
                content,
            }
        })
        .collect()
}

/// `tar tvf` with the date and time of folder lines left out.
fn listing_without_folder_dates(archive: &Path) -> Vec<String> {
    cluster::gnu_tar_list(archive, true)
        .lines()
        .map(|line| {
            if line.starts_with('d') {
                let fields: Vec<&str> = line.split_whitespace().collect();
                format!(
                    "{} {} {} {}",
                    fields[0],
                    fields[1],
                    fields[2],
                    fields[5..].join(" ")
                )
            } else {
                line.to_string()
            }
        })
        .collect()
}

/// The s3_archive step of `minio/thehive` into `dest` ([`archive_options`]
/// with `extra`), the aliases `env` gives, `after_listing` run once the
/// bucket is listed, in a step context named `archive`.
fn archive_step(
    dest: &Path,
    extra: serde_json::Value,
    env: &dyn Fn(&str) -> Option<String>,
    after_listing: Box<dyn FnOnce() + Send>,
) -> impl Future<Output = Result<S3ArchiveOutput, StepError>> + Send + use<> {
    archive_with_env(
        archive_options(dest, extra),
        StepContext::detached("archive"),
        env,
        after_listing,
    )
}

fn archive_options(dest: &Path, extra: serde_json::Value) -> S3ArchiveOptions {
    let mut json = serde_json::json!({"source": "minio/thehive", "dest": dest});
    json.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json).unwrap()
}

async fn put(moto: &Moto, key: &str, body: Vec<u8>) {
    moto.store("thehive")
        .put(&object_store::path::Path::from(key), PutPayload::from(body))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamed_archive_equals_the_staging_modes_member_for_member() {
    let moto = Moto::start();
    moto.python(
        r#"
s3.create_bucket(Bucket="thehive")
s3.put_object(Bucket="thehive", Key="emptydir/", Body=b"")
s3.put_object(Bucket="thehive", Key="names/with space/été +plus.txt", Body=b"accents")
s3.put_object(Bucket="thehive", Key="a.txt", Body=b"dot sorts before slash")
s3.put_object(Bucket="thehive", Key="a/b", Body=b"in a folder")
for key in ["bad//key", "x", "x/inside", "up/../escape", "c", "c.partial"]:
    s3.put_object(Bucket="thehive", Key=key, Body=b"odd")
"#,
    );
    let long = format!("{}/{}", "d".repeat(120), "n".repeat(120));
    put(&moto, &long, b"a GNU long name".to_vec()).await;
    // Above the prefetch size: streamed when its turn comes.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    put(&moto, "big/object.bin", big).await;
    futures::stream::iter(0..300)
        .map(|i| {
            let moto = &moto;
            async move {
                let body: Vec<u8> = (0..(i * 53) % 2000)
                    .map(|j| ((i + j) % 256) as u8)
                    .collect();
                put(moto, &format!("attachments/{:02x}/{i:04}.bin", i % 7), body).await;
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;

    let work = tempfile::tempdir().unwrap();
    let env = alias_env("minio", moto.port, work.path());

    // The staging mode: mirror into TOP/, then tar_dir of it.
    let staging = work.path().join(TOP);
    let mirror: MirrorOptions =
        serde_json::from_value(serde_json::json!({"source": "minio/thehive", "dest": staging}))
            .unwrap();
    let mirrored = mirror_with_env(mirror, StepContext::detached("mirror"), &env)
        .await
        .unwrap();
    let staged = work.path().join("staged.tar");
    let tar: TarDirOptions =
        serde_json::from_value(serde_json::json!({"dest": staged, "src": staging, "prefix": TOP}))
            .unwrap();
    let control = WorkControl::new("tar");
    tokio::task::spawn_blocking(move || write_archive(&tar, &control).map(|_| ()))
        .await
        .unwrap()
        .unwrap();

    // The stream mode.
    let streamed = work.path().join(format!("{TOP}.tar"));
    let out = archive_step(&streamed, serde_json::json!({}), &env, Box::new(|| {}))
        .await
        .unwrap();
    assert_eq!(
        (out.objects, out.refused, out.vanished),
        (mirrored.objects, mirrored.refused, 0)
    );
    assert_eq!(
        out.refused_keys, mirrored.refused_keys,
        "the same keys refused"
    );
    assert_eq!(out.refused, 4, "{:?}", out.refused_keys);
    assert_eq!(out.files, out.objects);
    assert!(!work.path().join(format!("{TOP}.tar.partial")).exists());

    let (staged_members, streamed_members) = (members(&staged), members(&streamed));
    assert!(streamed_members.len() > 300);
    assert_eq!(staged_members.len(), streamed_members.len());
    for (a, b) in staged_members.iter().zip(&streamed_members) {
        assert_eq!(a, b, "member differs");
    }
    assert_eq!(
        listing_without_folder_dates(&staged),
        listing_without_folder_dates(&streamed),
        "GNU tar lists the same members"
    );
    // The checksum file is tar_dir's: sha256sum -c accepts it, verify_archive
    // checks the whole archive and each file's CRC-32 against it.
    let check = std::process::Command::new("sha256sum")
        .args(["-c", &format!("{TOP}.tar.sha256")])
        .current_dir(work.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let verify = VerifyArchiveOptions {
        path: streamed.clone(),
        require_checksum: true,
        ..VerifyArchiveOptions::default()
    };
    let report = verify_archive(&verify, &WorkControl::new("verify")).unwrap();
    assert_eq!(report.entries, out.entries);
    assert_eq!(report.sha256, out.sha256);

    // GNU tar extracts it into the tree the mirror made.
    let extracted = work.path().join("extracted");
    cluster::gnu_tar_extract(&streamed, &extracted);
    assert_eq!(cluster::tree(&extracted.join(TOP)), cluster::tree(&staging));
    assert!(extracted.join(TOP).join("emptydir").is_dir());

    // The same bucket gives a byte-identical archive.
    let again = work.path().join("again").join(format!("{TOP}.tar"));
    std::fs::create_dir_all(again.parent().unwrap()).unwrap();
    let second = archive_step(
        &again,
        serde_json::json!({"concurrency": 3}),
        &env,
        Box::new(|| {}),
    )
    .await
    .unwrap();
    assert_eq!(second.sha256, out.sha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_changed_during_the_backup_fails_or_is_kept_with_a_warning() {
    let moto = Moto::start();
    moto.python(
        r#"
s3.create_bucket(Bucket="thehive")
for i in range(20):
    s3.put_object(Bucket="thehive", Key=f"files/{i:02}.bin", Body=bytes([i]) * (100 + i))
"#,
    );
    let work = tempfile::tempdir().unwrap();
    let env = alias_env("minio", moto.port, work.path());
    let dest = work.path().join(format!("{TOP}.tar"));
    let port = moto.port;
    // Rewritten with another size after the listing, before it is read.
    let change = move || {
        Box::new(move || {
            let status = std::process::Command::new(runbook_test_support::support::venv_bin(
                "python",
            ))
            .arg("-c")
            .arg(format!(
                "import boto3\n\
                 s3=boto3.client('s3',endpoint_url='http://127.0.0.1:{port}',aws_access_key_id='test',aws_secret_access_key='test',region_name='us-east-1')\n\
                 s3.put_object(Bucket='thehive',Key='files/07.bin',Body=b'rewritten')"
            ))
            .status()
            .unwrap();
            assert!(status.success());
        }) as Box<dyn FnOnce() + Send>
    };

    let error = archive_step(&dest, serde_json::json!({}), &env, change())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "changed", "{error}");
    let message = error.to_string();
    assert!(
        message.contains("`files/07.bin` in bucket `thehive` changed during the backup: listed with 107 bytes, read with 9 bytes"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(!dest.exists(), "no archive after a failure");
    assert!(
        !work.path().join(format!("{TOP}.tar.partial")).exists(),
        "the partial archive is removed"
    );

    // Allowed: the version read is archived, and listed in `changed`.
    moto.python(r#"s3.put_object(Bucket="thehive", Key="files/07.bin", Body=bytes([7]) * 107)"#);
    let out = archive_step(
        &dest,
        serde_json::json!({"on_changed": "warn"}),
        &env,
        change(),
    )
    .await
    .unwrap();
    assert_eq!(out.changed.len(), 1, "{:?}", out.changed);
    assert!(out.changed[0].contains("files/07.bin"), "{:?}", out.changed);
    let extracted = work.path().join("x");
    cluster::gnu_tar_extract(&dest, &extracted);
    assert_eq!(
        std::fs::read(extracted.join(TOP).join("files/07.bin")).unwrap(),
        b"rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_bucket_gives_an_archive_of_the_top_folder_alone() {
    let moto = Moto::start();
    moto.python(r#"s3.create_bucket(Bucket="thehive")"#);
    let work = tempfile::tempdir().unwrap();
    let env = alias_env("minio", moto.port, work.path());
    let dest = work.path().join(format!("{TOP}.tar"));
    let out = archive_step(&dest, serde_json::json!({}), &env, Box::new(|| {}))
        .await
        .unwrap();
    assert_eq!(
        (out.objects, out.files, out.dirs, out.entries),
        (0, 0, 1, 1)
    );
    assert_eq!(cluster::gnu_tar_list(&dest, false), format!("{TOP}/\n"));
    let sums: BTreeMap<String, String> = BTreeMap::from([(
        "sidecar".to_string(),
        std::fs::read_to_string(work.path().join(format!("{TOP}.tar.sha256"))).unwrap(),
    )]);
    assert!(sums["sidecar"].starts_with(&out.sha256), "{sums:?}");
}
