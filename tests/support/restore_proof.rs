//! Issue 13's proof on the real servers (a real Cassandra 4.1 node and a real
//! OpenSearch 2.19 node in one sandbox started with `--real --storage s3`):
//! digest, back up, wipe (DROP KEYSPACE, delete the index, empty the folder or
//! bucket), run restore-prep and then its whole plan as printed (`bash
//! restore-plan.sh`), digest again: equal. An S3 sandbox keeps the folder its
//! bucket was filled from, so both storages are proven on one sandbox:
//! `storage=local` restores the folder, `storage=s3` the bucket.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::cluster::{Cluster, gnu_tar_extract, stderr};
use crate::support::{assert_contains, repo_root, runbook_binary, venv_bin};

/// Where the attachments of a round trip live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `storage=local`: the sandbox's attachment folder.
    Local,
    /// `storage=s3`: the sandbox's bucket (moto_server), alias `th_minio`.
    S3,
}

impl Storage {
    /// The workflow's `storage` value.
    pub fn name(self) -> &'static str {
        match self {
            Storage::Local => "local",
            Storage::S3 => "s3",
        }
    }

    /// `sandbox.py digest --attachments` value.
    fn place(self) -> &'static str {
        match self {
            Storage::Local => "folder",
            Storage::S3 => "bucket",
        }
    }
}

/// The `--cql-auth` role of a sandbox, if any.
#[derive(Clone, Copy, Debug)]
pub struct Login {
    pub user: &'static str,
    pub password: &'static str,
}

/// The folder holding the real `nodetool`, `cqlsh` and `sstableloader`.
pub fn real_tools() -> PathBuf {
    repo_root().join("tests/real-servers/cassandra/bin")
}

/// `sandbox.py digest DIR --attachments folder|bucket`: Cassandra rows,
/// OpenSearch documents and the attachments of `storage`.
pub fn digest(cluster: &Cluster, storage: Storage) -> serde_json::Value {
    cluster.digest_of(&["--attachments", storage.place()])
}

#[track_caller]
pub fn succeeded(what: &str, out: Output) -> String {
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
        .expect("env.sh exports CQLSH_HOST: the sandbox runs a real Cassandra node")
        .to_string()
}

/// The real cqlsh against the sandbox's node, logged in when auth is on (the
/// password through a cqlshrc, never on a command line).
fn cqlsh(cluster: &Cluster, login: Option<Login>, statement: &str) -> Output {
    let mut command = Command::new(real_tools().join("cqlsh"));
    command.arg(node_address(cluster));
    if let Some(login) = login {
        let rc = cluster.dir.path().join("proof.cqlshrc");
        std::fs::write(
            &rc,
            format!(
                "[authentication]\nusername = {}\npassword = {}\n",
                login.user, login.password
            ),
        )
        .unwrap();
        std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        command.arg("--cqlshrc").arg(rc);
    }
    command.args(["-e", statement]).output().unwrap()
}

/// `curl -s ARGS` with a JSON content type (OpenSearch wants one on a body):
/// (HTTP status, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json",
        ])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("curl printed the status");
    (status.parse().expect("a status code"), body.to_string())
}

/// The names of the snapshots in the sandbox's `thehive_repository`.
pub fn snapshot_names(cluster: &Cluster) -> Vec<String> {
    let (status, body) = curl(&[&format!(
        "{}/_snapshot/thehive_repository/_all?verbose=false",
        cluster.es_url()
    )]);
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    listed["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshot"].as_str().unwrap().to_string())
        .collect()
}

fn empty_folder(folder: &Path) {
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

/// Deletes every object of the sandbox's bucket (with boto3, as sandbox.py
/// filled it) and checks it is empty.
fn empty_bucket(cluster: &Cluster) {
    let endpoint = cluster.record["s3_endpoint"]
        .as_str()
        .expect("an S3 sandbox (--storage s3)");
    let script = r#"import sys, boto3
s3 = boto3.resource("s3", endpoint_url=sys.argv[1], aws_access_key_id="test",
                    aws_secret_access_key="test", region_name="us-east-1")
bucket = s3.Bucket("thehive")
bucket.objects.all().delete()
left = sum(1 for _ in bucket.objects.all())
assert left == 0, "%d objects left" % left
"#;
    succeeded(
        "emptying the bucket",
        Command::new(venv_bin("python"))
            .args(["-c", script, endpoint])
            .output()
            .unwrap(),
    );
}

/// A HOME for the plan's run holding the MinIO-client config an admin's machine
/// has (`mcli alias set th_minio URL KEY SECRET` writes it): the alias the plan's
/// `runbook run restore-bucket` line uses.
fn admin_home(cluster: &Cluster) -> PathBuf {
    let home = cluster.dir.path().join("admin-home");
    let mcli = home.join(".mcli");
    std::fs::create_dir_all(&mcli).unwrap();
    if let Some(endpoint) = cluster.record["s3_endpoint"].as_str() {
        let config = serde_json::json!({
            "version": "10",
            "aliases": {"th_minio": {
                "url": endpoint, "accessKey": "test", "secretKey": "test",
                "api": "s3v4", "path": "auto"
            }}
        });
        let file = mcli.join("config.json");
        std::fs::write(&file, config.to_string()).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    home
}

/// The whole restore plan, `bash restore-plan.sh`, as an admin runs it: the
/// real tools and runbook on PATH, the sandbox's MinIO alias in ~/.mcli, and
/// no other setting from the sandbox's env.sh (no CQLSH_HOST, no MC_HOST_*):
/// the only secret given is CASSANDRA_PASSWORD, when auth is on.
pub fn run_plan(cluster: &Cluster, plan_file: &Path, login: Option<Login>) -> Output {
    let runbook_bin = runbook_binary();
    let path = format!(
        "{}:{}:{}",
        real_tools().display(),
        runbook_bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .arg(plan_file)
        .env_clear()
        .env("PATH", path)
        .env("HOME", admin_home(cluster))
        // The plan's runbook keeps its journal with the test's, not in /var/lib/runbook.
        .env("RUNBOOK_JOURNAL_DIR", cluster.dir.path().join("journal"))
        .current_dir(cluster.dir.path());
    if let Some(login) = login {
        command.env("CASSANDRA_PASSWORD", login.password);
    }
    command.output().unwrap()
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

/// Digest, `backup` (which runs cluster-hot-backup with `storage` and returns
/// the stamp of the set it made), wipe, restore-prep, the whole plan, digest:
/// equal. Returns the seconds the backup and the plan took.
pub fn backup_wipe_restore_compare(
    cluster: &Cluster,
    storage: Storage,
    login: Option<Login>,
    backup: impl FnOnce(&Cluster) -> String,
) -> (f64, f64) {
    // 1. Digest: every part holds data.
    let before = digest(cluster, storage);
    let tables = before["cassandra"].as_object().expect("a cassandra digest");
    assert_eq!(tables.len(), 9, "JanusGraph's nine tables: {before}");
    assert!(
        tables
            .values()
            .all(|table| table["rows"].as_u64() > Some(0)),
        "every table holds rows: {before}"
    );
    assert!(
        before["indices"]["thehive_global"]["documents"].as_u64() > Some(0),
        "the index holds documents: {before}"
    );
    assert!(
        before["attachments"]["files"].as_u64() > Some(0),
        "attachments to restore: {before}"
    );

    // The backup.
    let started = std::time::Instant::now();
    let stamp = backup(cluster);
    let backup_seconds = started.elapsed().as_secs_f64();
    assert!(
        cluster.cassandra_snapshots().is_empty(),
        "the snapshot is cleared after the backup: {:?}",
        cluster.cassandra_snapshots()
    );
    let archives = cluster.path("cassandra_archive");
    let extracted = cluster.dir.path().join(format!("extracted-{stamp}"));
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
    let storage_archive = match storage {
        Storage::Local => cluster
            .path("storage_archive")
            .join(format!("files_{stamp}.tar")),
        Storage::S3 => cluster
            .path("s3_archive")
            .join(format!("minio_{stamp}.tar")),
    };
    assert!(
        storage_archive.is_file(),
        "the {} backup made {}",
        storage.name(),
        storage_archive.display()
    );

    // 2. The restore plan, prepared before anything is wiped.
    let address = node_address(cluster);
    let staging = cluster.dir.path().join("staging");
    let backup_folder = cluster.path("backup");
    let mut settings = vec![
        ("manifest_path", backup_folder.display().to_string()),
        ("stamp", stamp.clone()),
        ("elasticsearch_url", cluster.es_url()),
        ("cassandra_archive_path", archives.display().to_string()),
        (
            "storage_archive_path",
            cluster.path("storage_archive").display().to_string(),
        ),
        (
            "s3_archive_path",
            cluster.path("s3_archive").display().to_string(),
        ),
        ("s3_source", "th_minio/thehive".to_string()),
        ("staging", staging.display().to_string()),
        ("cassandra_connection", address.clone()),
        (
            "attachment_folder",
            cluster.path("attachments").display().to_string(),
        ),
    ];
    if let Some(login) = login {
        settings.push(("cassandra_user", login.user.to_string()));
    }
    cluster.restore_prep_run(&settings).success();
    let plan_file = staging.join(&stamp).join("restore-plan.sh");
    let plan = std::fs::read_to_string(&plan_file).unwrap();
    if let Some(login) = login {
        assert!(
            !plan.contains(login.password),
            "the password is not written into the plan:\n{plan}"
        );
    }
    assert_eq!(
        plan.lines()
            .filter(|line| line.starts_with("sstableloader "))
            .count(),
        9,
        "one sstableloader per table:\n{plan}"
    );
    assert_contains(&plan, "set -euo pipefail");
    assert_contains(&plan, "_restore?wait_for_completion=true' | jq -nec ");
    match storage {
        Storage::Local => assert_contains(&plan, "\ncp -a "),
        Storage::S3 => assert_contains(&plan, "\nrunbook run restore-bucket "),
    }
    assert!(
        !plan.lines().any(|line| line.starts_with("mcli ")),
        "the plan needs no MinIO client:\n{plan}"
    );

    // 3. Wipe: the keyspace, the index, the attachments.
    succeeded(
        "DROP KEYSPACE",
        cqlsh(cluster, login, "DROP KEYSPACE thehive"),
    );
    let gone = cqlsh(cluster, login, "SELECT count(*) FROM thehive.edgestore");
    assert!(
        !gone.status.success(),
        "thehive.edgestore still answers after DROP KEYSPACE"
    );
    let (status, body) = curl(&[
        "-X",
        "DELETE",
        &format!("{}/thehive_global", cluster.es_url()),
    ]);
    assert_eq!((status, body.as_str()), (200, r#"{"acknowledged":true}"#));
    match storage {
        Storage::Local => empty_folder(&cluster.path("attachments")),
        Storage::S3 => empty_bucket(cluster),
    }
    let wiped = digest(cluster, storage);
    assert_eq!(wiped["attachments"]["files"], 0, "{wiped}");
    assert!(
        wiped["indices"].get("thehive_global").is_none(),
        "the index is gone: {wiped}"
    );
    assert_ne!(wiped["attachments"], before["attachments"]);

    // 4. The whole plan, as printed.
    let started = std::time::Instant::now();
    let ran = run_plan(cluster, &plan_file, login);
    let restore_seconds = started.elapsed().as_secs_f64();
    let output = succeeded(&format!("bash {}", plan_file.display()), ran);
    // The restore's answer, as jq printed it: every shard restored.
    let answer = output
        .lines()
        .find_map(|line| {
            let start = line.find(r#"{"snapshot":"#)?;
            serde_json::from_str::<serde_json::Value>(&line[start..]).ok()
        })
        .unwrap_or_else(|| panic!("no _restore answer in the plan's output:\n{output}"));
    let shards = &answer["snapshot"]["shards"];
    assert!(shards["total"].as_u64() > Some(0), "{answer}");
    assert_eq!(shards["failed"], 0, "{answer}");
    assert_eq!(shards["successful"], shards["total"], "{answer}");

    // 5. The same rows, documents and attachments.
    let after = digest(cluster, storage);
    assert_eq!(
        after["cassandra"], before["cassandra"],
        "restored rows differ"
    );
    assert_eq!(
        after["indices"], before["indices"],
        "restored documents differ"
    );
    assert_eq!(
        after["attachments"], before["attachments"],
        "restored attachments differ"
    );
    assert_eq!(after, before);
    (backup_seconds, restore_seconds)
}

/// The stamps of the sets whose manifests are in the sandbox's backup folder.
pub fn set_stamps(cluster: &Cluster) -> std::collections::BTreeSet<String> {
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
