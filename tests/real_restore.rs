//! `cluster-hot-restore` end to end on the real servers: a real Apache
//! Cassandra 4.1 node with `--cql-auth`, a real OpenSearch 2.19 node and an S3
//! server (moto; an S3 sandbox keeps the folder its bucket was filled from, so
//! both storages are proven on one sandbox), started once for this test binary
//! by `sandbox.py start DIR --cassandra real --es opensearch --storage s3
//! --cql-auth USER:PASSWORD`, tests taking turns. Stopped when the binary exits.
//!
//! - every refusal changes nothing: no `confirm`, a wrong `confirm`, TheHive
//!   running, an incomplete set, an archive with one flipped byte, the snapshot
//!   missing from the repository (digest equal, no safety copy, no staging);
//! - the round trip: digest, backup, insert/update/delete rows, documents and
//!   files, restore, digest equal to the backup-time one; the safety copies are
//!   then dropped with the command the summary prints; with the default loader
//!   (`cassandra_loader` auto: nodetool import on this one-node sandbox, local
//!   storage) and with `cassandra_loader=sstableloader` (S3 storage);
//! - a set made by the guide's scripts' steps (no manifest) restores;
//! - a set made on this sandbox restores into a second, freshly started one
//!   (other addresses, emptied keyspace, index and attachments);
//! - SIGTERM mid-restore: the undo puts everything back, exit 143.
//!
//! Servers that cannot be installed or started fail every test with the
//! reason; none is skipped.

use runbook_test_support::shared::with_cql_auth;
use runbook_test_support::{Ran, SharedCluster, Test, cluster, restore_proof, support};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use cluster::*;
use nix::sys::signal::Signal;
use restore_proof::{Storage, curl, digest, real_tools, set_stamps, succeeded};
use support::{assert_contains, venv_bin};

const USER: &str = "thehive";
const PASSWORD: &str = "Real-Restore-Secret-5";

/// `sandbox.py start` arguments: real Cassandra (`--cql-auth`) and OpenSearch, S3.
fn sandbox_args() -> Vec<String> {
    with_cql_auth(
        &[
            "--cassandra",
            "real",
            "--es",
            "opensearch",
            "--storage",
            "s3",
        ],
        USER,
        PASSWORD,
    )
}

/// The real servers, started on first use; tests take turns.
static NODE: SharedCluster = SharedCluster::real_servers(sandbox_args);

fn node() -> (&'static Cluster, MutexGuard<'static, ()>) {
    NODE.take()
}

fn node_address(cluster: &Cluster) -> String {
    cluster.record["env"]["CQLSH_HOST"]
        .as_str()
        .expect("env.sh exports CQLSH_HOST: the sandbox runs a real Cassandra node")
        .to_string()
}

/// PATH with the real nodetool, cqlsh and sstableloader first.
fn tools_path() -> String {
    format!(
        "{}:{}",
        real_tools().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `runbook run cluster-hot-backup` as the --cql-auth role; returns the new set's stamp.
fn backup(cluster: &Cluster, storage: Storage) -> String {
    let before = set_stamps(cluster);
    cluster
        .runbook(&[
            "run",
            "cluster-hot-backup",
            "--set",
            &format!("storage={}", storage.name()),
        ])
        .env("PATH", tools_path())
        .run()
        .success();
    let made: Vec<String> = set_stamps(cluster).difference(&before).cloned().collect();
    assert_eq!(made.len(), 1, "one new backup set: {made:?}");
    made[0].clone()
}

fn staging(cluster: &Cluster) -> PathBuf {
    cluster.dir.path().join("restore-staging")
}

/// `runbook ACTION cluster-hot-restore` with the sandbox's vars.json, the real
/// tools on PATH, the sandbox's environment (CASSANDRA_PASSWORD, the MinIO
/// alias), a staging folder in the test's folder and no TheHive on this
/// machine (`thehive_check=false`), then `settings`.
fn restore_command(cluster: &Cluster, action: &str, settings: &[(&str, &str)]) -> Test {
    let mut test = cluster
        .bare_runbook([action, "cluster-hot-restore", "--vars"])
        .arg(cluster.path("vars"));
    let staging = staging(cluster).display().to_string();
    let defaults = [("staging", staging.as_str()), ("thehive_check", "false")];
    for (key, value) in defaults.iter().chain(settings) {
        test = test.arg("--set").arg(format!("{key}={value}"));
    }
    test.env("PATH", tools_path())
}

fn restore(cluster: &Cluster, settings: &[(&str, &str)]) -> Ran {
    restore_command(cluster, "run", settings).run()
}

/// Drops the safety copies a restore of `stamp` left (`discard_safety`), as
/// the admin does once satisfied.
fn discard_safety(cluster: &Cluster, stamp: &str, storage: Storage) {
    restore(
        cluster,
        &[("discard_safety", stamp), ("storage", storage.name())],
    )
    .success();
}

/// The real cqlsh against the sandbox's node as the --cql-auth role (the
/// password through a 0600 cqlshrc).
fn cqlsh(cluster: &Cluster, statement: &str) -> String {
    let rc = cluster.dir.path().join("test.cqlshrc");
    std::fs::write(
        &rc,
        format!("[authentication]\nusername = {USER}\npassword = {PASSWORD}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new(real_tools().join("cqlsh"))
        .arg(node_address(cluster))
        .arg("--cqlshrc")
        .arg(&rc)
        .args(["-e", statement])
        .output()
        .unwrap();
    succeeded(&format!("cqlsh -e {statement}"), out)
}

/// The safety copies and staging folders a restore leaves: `pre_restore_*`
/// snapshots in the repository, Cassandra snapshot folders, anything named
/// `*pre_restore*` beside the attachment folder, the staging folders.
fn leftovers(cluster: &Cluster) -> Vec<String> {
    let mut found = Vec::new();
    let (status, body) = curl(&[&format!(
        "{}/_snapshot/thehive_repository/_all",
        cluster.es_url()
    )]);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    for snapshot in answer["snapshots"].as_array().unwrap() {
        let name = snapshot["snapshot"].as_str().unwrap();
        if name.starts_with("pre_restore") {
            found.push(format!("snapshot {name}"));
        }
    }
    for folder in cluster.cassandra_snapshots() {
        found.push(format!("Cassandra snapshot {}", folder.display()));
    }
    // Beside the attachment folder, and in the Cassandra data folder (the
    // keyspace's safety copy is hard-linked there).
    let attachments = cluster.path("attachments");
    for folder in [
        attachments.parent().unwrap().to_path_buf(),
        cluster.path("cassandra_data"),
    ] {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("pre_restore") {
                found.push(format!("{}", entry.path().display()));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(staging(cluster)) {
        for entry in entries.flatten() {
            found.push(format!("staging {}", entry.path().display()));
        }
    }
    found
}

/// A refusal: the exit code, the one line, and nothing changed.
#[track_caller]
fn assert_refused(
    cluster: &Cluster,
    before: &serde_json::Value,
    out: &Ran,
    exit: i32,
    reason: &str,
) {
    let err = &out.stderr;
    assert_eq!(out.code(), Some(exit), "{err}");
    let line = err
        .lines()
        .find(|line| line.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{err}"));
    assert_contains(line, reason);
    assert_eq!(
        &digest(cluster, Storage::Local),
        before,
        "a refused restore changed the data"
    );
    assert_eq!(
        leftovers(cluster),
        Vec::<String>::new(),
        "a refused restore left something"
    );
}

fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// The action lines a run logged after `heading` (`  part: action`), without
/// the log prefix.
fn actions(text: &str, heading: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| !line.contains(heading))
        .skip(1)
        .take_while(|line| line.contains("INFO   "))
        .map(|line| line.split_once("INFO   ").unwrap().1.to_string())
        .collect()
}

/// `runbook run restore-prep` on set `stamp` with the sandbox's settings:
/// the restore's actions it prints (its extraction folder `STAGING/STAMP/`
/// written as the restore's `STAGING/cluster-hot-restore_STAMP/`). The
/// extraction is removed again.
fn restore_prep_actions(cluster: &Cluster, stamp: &str) -> Vec<String> {
    let staging = staging(cluster);
    let mut prep = Test::at(cluster.dir.path()).args(["run", "restore-prep"]);
    let vars: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cluster.path("vars")).unwrap()).unwrap();
    for key in [
        "manifest_path",
        "elasticsearch_url",
        "cassandra_archive_path",
        "storage_archive_path",
        "s3_archive_path",
        "cassandra_connection",
        "cassandra_user",
        "cassandra_data_folder",
        "attachment_folder",
        "nodetool",
        "cqlsh",
    ] {
        prep = prep
            .arg("--set")
            .arg(format!("{key}={}", vars[key].as_str().unwrap()));
    }
    // The sandbox's environment (nodetool's JMX host and port: the plan's
    // `cassandra_loader auto` counts the nodes), then the test's own.
    for (key, value) in cluster.record["env"].as_object().unwrap() {
        prep = prep.env(key, value.as_str().unwrap());
    }
    let prepared = prep
        .arg("--set")
        .arg(format!("staging={}", staging.display()))
        .arg("--set")
        .arg(format!("stamp={stamp}"))
        .env("CASSANDRA_PASSWORD", PASSWORD)
        .env("PATH", tools_path())
        .run()
        .success();
    let err = &prepared.stderr;
    std::fs::remove_dir_all(staging.join(stamp)).unwrap();
    actions(err, "would, in order:")
        .into_iter()
        .map(|line| {
            line.replace(
                &format!("{}/{stamp}/", staging.display()),
                &format!("{}/cluster-hot-restore_{stamp}/", staging.display()),
            )
        })
        .collect()
}

#[test]
fn every_refusal_changes_nothing() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster, Storage::Local);
    let before = digest(cluster, Storage::Local);
    assert_eq!(leftovers(cluster), Vec::<String>::new());

    // No confirm: exit 2, the line names the stamp to type.
    let out = restore(cluster, &[("stamp", &stamp)]);
    assert_refused(
        cluster,
        &before,
        &out,
        2,
        &format!(
            "confirm is not set: this run would replace the live data with backup set {stamp}"
        ),
    );
    assert_contains(&out.stderr, &format!("--set confirm={stamp}"));
    // The newest set is chosen when no stamp is given, and named all the same.
    let out = restore(cluster, &[]);
    assert_refused(cluster, &before, &out, 2, &format!("backup set {stamp}"));

    // A wrong confirm.
    let out = restore(
        cluster,
        &[("stamp", &stamp), ("confirm", "20200101_00h00m00s")],
    );
    assert_refused(
        cluster,
        &before,
        &out,
        2,
        &format!("confirm is \"20200101_00h00m00s\", but the set to restore is {stamp}"),
    );

    // TheHive running: thehive_check exits 0.
    let out = restore(
        cluster,
        &[
            ("stamp", &stamp),
            ("confirm", &stamp),
            ("thehive_check", "true"),
        ],
    );
    assert_refused(
        cluster,
        &before,
        &out,
        1,
        "TheHive is running on this node (thehive_check \"true\" exited 0)",
    );
    // A check that cannot run is a config error, not "stopped".
    let out = restore(
        cluster,
        &[
            ("stamp", &stamp),
            ("confirm", &stamp),
            ("thehive_check", "no-such-command-here"),
        ],
    );
    assert_refused(cluster, &before, &out, 2, "could not run (exit 127)");

    // A misspelt part.
    let out = restore(
        cluster,
        &[
            ("stamp", &stamp),
            ("confirm", &stamp),
            ("parts", "cassandra,db"),
        ],
    );
    assert_refused(cluster, &before, &out, 2, "parts: \"db\" is not a part");

    // An incomplete set: no manifest anywhere, no explicit stamp.
    let empty = cluster.dir.path().join("no-manifests");
    std::fs::create_dir_all(&empty).unwrap();
    let out = restore(
        cluster,
        &[
            ("manifest_path", &empty.display().to_string()),
            ("confirm", &stamp),
        ],
    );
    assert_refused(cluster, &before, &out, 1, "no complete backup set in");
    assert_contains(&out.stderr, "restore one with --set stamp=STAMP");
    // An explicit stamp whose set has no manifest and lacks its Cassandra archive.
    let lonely = "20200202_02h02m02s";
    let out = restore(cluster, &[("stamp", lonely), ("confirm", lonely)]);
    assert_refused(
        cluster,
        &before,
        &out,
        1,
        &format!("set {lonely} (no manifest) cannot be restored: missing"),
    );
    assert_contains(&out.stderr, &format!("cassandra_{lonely}.tar"));

    // One flipped byte in the Cassandra archive (put back afterwards).
    let archive = cluster
        .path("cassandra_archive")
        .join(format!("cassandra_{stamp}.tar"));
    flip_byte(&archive);
    let out = restore(cluster, &[("stamp", &stamp), ("confirm", &stamp)]);
    flip_byte(&archive);
    assert_refused(
        cluster,
        &before,
        &out,
        1,
        &format!("its cassandra archive {} is damaged", archive.display()),
    );

    // The snapshot missing from the repository (deleted: this set is spent).
    let (status, body) = curl(&[
        "-X",
        "DELETE",
        &format!(
            "{}/_snapshot/thehive_repository/elasticsearch_{stamp}",
            cluster.es_url()
        ),
    ]);
    assert_eq!(status, 200, "{body}");
    let out = restore(cluster, &[("stamp", &stamp), ("confirm", &stamp)]);
    assert_refused(
        cluster,
        &before,
        &out,
        1,
        &format!("Elasticsearch snapshot elasticsearch_{stamp} in repository thehive_repository"),
    );
    assert_contains(&out.stderr, "does not exist: the set cannot be restored");
}

#[test]
fn plan_prints_every_action_and_changes_nothing() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster, Storage::Local);
    let before = digest(cluster, Storage::Local);
    let out = restore_command(cluster, "plan", &[("stamp", &stamp), ("storage", "local")])
        .run()
        .success();
    let err = &out.stderr;
    assert_contains(err, &format!("the restore of set {stamp} will, in order"));
    for part in ["elasticsearch: ", "cassandra: ", "storage: "] {
        assert!(
            err.lines()
                .any(|line| line.contains(&format!("INFO   {part}"))),
            "no plan line for {part}:\n{err}"
        );
    }
    assert_contains(err, "plan complete");
    // The default loader on this one-node sandbox: one nodetool import per table.
    assert_eq!(
        err.lines()
            .filter(|line| line.contains("INFO   cassandra: ") && line.contains(" import thehive "))
            .count(),
        9,
        "{err}"
    );
    assert_eq!(digest(cluster, Storage::Local), before);
    assert_eq!(leftovers(cluster), Vec::<String>::new());
}

/// A stamp for a set made now, in the backup's format.
fn stamp_now() -> String {
    // A second apart from any set made in the same second.
    std::thread::sleep(Duration::from_millis(1100));
    let out = Command::new("date")
        .arg("+%Y%m%d_%Hh%Mm%Ss")
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The first `count` (key, column1) pairs of `table`, as CQL blob literals.
fn some_rows(cluster: &Cluster, table: &str, count: usize) -> Vec<(String, String)> {
    let text = cqlsh(
        cluster,
        &format!("SELECT key, column1 FROM thehive.{table} LIMIT {count}"),
    );
    let rows: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let (key, column) = line.split_once('|')?;
            let (key, column) = (key.trim(), column.trim());
            (key.starts_with("0x") && column.starts_with("0x"))
                .then(|| (key.to_string(), column.to_string()))
        })
        .collect();
    assert_eq!(rows.len(), count, "rows of thehive.{table}:\n{text}");
    rows
}

/// The ids of the first `count` documents of thehive_global.
fn some_documents(cluster: &Cluster, count: usize) -> Vec<String> {
    let (status, body) = curl(&[&format!(
        "{}/thehive_global/_search?size={count}&sort=_doc",
        cluster.es_url()
    )]);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    answer["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["_id"].as_str().unwrap().to_string())
        .collect()
}

/// The files of the attachment folder, relative, sorted.
fn attachment_files(cluster: &Cluster) -> Vec<PathBuf> {
    let root = cluster.path("attachments");
    let mut files: Vec<PathBuf> = walk(&root)
        .into_iter()
        .map(|path| path.strip_prefix(&root).unwrap().to_path_buf())
        .collect();
    files.sort();
    files
}

/// Runs a boto3 script against the sandbox's bucket `thehive` (argv[1] = endpoint).
fn bucket_script(cluster: &Cluster, body: &str) {
    let endpoint = cluster.record["s3_endpoint"]
        .as_str()
        .expect("an S3 sandbox (--storage s3)");
    let script = format!(
        "import sys, boto3\ns3 = boto3.client(\"s3\", endpoint_url=sys.argv[1], aws_access_key_id=\"test\", \
         aws_secret_access_key=\"test\", region_name=\"us-east-1\")\n{body}\n"
    );
    succeeded(
        "the bucket script",
        Command::new(venv_bin("python"))
            .args(["-c", &script, endpoint])
            .output()
            .unwrap(),
    );
}

/// Inserts, updates and deletes rows, documents and attachments (in the
/// folder or the bucket): every part of the digest changes.
fn change_everything(cluster: &Cluster, storage: Storage) {
    let before = digest(cluster, storage);
    let rows = some_rows(cluster, "edgestore", 2);
    cqlsh(
        cluster,
        "INSERT INTO thehive.edgestore (key, column1, value) VALUES (0x7e57000001, 0x01, 0x02)",
    );
    cqlsh(
        cluster,
        &format!(
            "UPDATE thehive.edgestore SET value = 0xdeadbeef WHERE key = {} AND column1 = {}",
            rows[0].0, rows[0].1
        ),
    );
    cqlsh(
        cluster,
        &format!("DELETE FROM thehive.edgestore WHERE key = {}", rows[1].0),
    );
    let es = cluster.es_url();
    let ids = some_documents(cluster, 2);
    let json = ["-d"];
    let (status, body) = curl(
        &[
            &[
                "-X",
                "PUT",
                &format!("{es}/thehive_global/_doc/restore-test-new"),
            ][..],
            &json,
            &[r#"{"title":"written after the backup"}"#],
        ]
        .concat(),
    );
    assert!(status == 201 || status == 200, "{body}");
    let (status, body) = curl(
        &[
            &["-X", "PUT", &format!("{es}/thehive_global/_doc/{}", ids[0])][..],
            &json,
            &[r#"{"title":"changed after the backup"}"#],
        ]
        .concat(),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = curl(&[
        "-X",
        "DELETE",
        &format!("{es}/thehive_global/_doc/{}", ids[1]),
    ]);
    assert_eq!(status, 200, "{body}");
    let (status, body) = curl(&["-X", "POST", &format!("{es}/thehive_global/_refresh")]);
    assert_eq!(status, 200, "{body}");
    match storage {
        Storage::Local => {
            let root = cluster.path("attachments");
            let files = attachment_files(cluster);
            std::fs::write(root.join("written-after-the-backup.txt"), "new\n").unwrap();
            std::fs::write(root.join(&files[0]), "changed after the backup\n").unwrap();
            std::fs::remove_file(root.join(&files[1])).unwrap();
        }
        Storage::S3 => bucket_script(
            cluster,
            "keys = [o['Key'] for o in s3.list_objects_v2(Bucket='thehive')['Contents']][:2]\n\
             s3.put_object(Bucket='thehive', Key='written-after-the-backup.txt', Body=b'new')\n\
             s3.put_object(Bucket='thehive', Key=keys[0], Body=b'changed after the backup')\n\
             s3.delete_object(Bucket='thehive', Key=keys[1])",
        ),
    }
    let after = digest(cluster, storage);
    for part in ["cassandra", "indices", "attachments"] {
        assert_ne!(
            after[part], before[part],
            "the {part} digest did not change"
        );
    }
}

/// Digest, backup, change everything, restore, digest equal to the backup-time
/// one; the summary's discard command then drops every safety copy. `loader`:
/// the cassandra_loader setting ("" = the default, auto: nodetool import on
/// this one-node sandbox).
fn round_trip(cluster: &Cluster, storage: Storage, loader: &str) {
    let stamp = backup(cluster, storage);
    let at_backup = digest(cluster, storage);
    change_everything(cluster, storage);
    // What restore-prep says the restore will do (folder storage: it
    // prepares a folder archive's restore).
    let prepared = (storage == Storage::Local && loader.is_empty())
        .then(|| restore_prep_actions(cluster, &stamp));
    let storage_setting = ("storage", storage.name());
    let mut settings = vec![
        ("stamp", stamp.as_str()),
        ("confirm", stamp.as_str()),
        storage_setting,
    ];
    if !loader.is_empty() {
        settings.push(("cassandra_loader", loader));
    }
    let started = Instant::now();
    let out = restore(cluster, &settings);
    let seconds = started.elapsed().as_secs_f64();
    let out = out.success();
    let err = &out.stderr;
    eprintln!(
        "restore of {stamp} ({}) took {seconds:.1} s",
        storage.name()
    );
    assert_eq!(digest(cluster, storage), at_backup, "restored data differ");
    // restore-prep printed the actions the restore took (one source: the
    // part libraries' plan()).
    let taken = actions(err, "will, in order");
    assert!(taken.len() > 10, "{taken:#?}");
    if let Some(prepared) = prepared {
        assert_eq!(prepared, taken, "restore-prep printed another plan");
    }
    if loader.is_empty() {
        assert_contains(
            err,
            "tables loaded by nodetool import (cassandra_loader auto: the cluster is this one node)",
        );
        assert_contains(err, "9 tables imported (nodetool import, no streaming)");
    } else {
        assert_contains(err, &format!("(cassandra_loader {loader})"));
        assert_contains(err, "9 tables streamed");
    }
    assert_contains(err, &format!("backup set {stamp} restored in "));
    assert_contains(err, "start TheHive");
    let discard = format!("runbook run cluster-hot-restore --set discard_safety={stamp}");
    assert_contains(err, &discard);
    assert!(
        !leftovers(cluster).is_empty(),
        "the safety copies stay until dropped"
    );
    discard_safety(cluster, &stamp, storage);
    assert_eq!(leftovers(cluster), Vec::<String>::new());
    assert_eq!(digest(cluster, storage), at_backup);
}

#[test]
fn round_trip_with_auth_and_local_storage() {
    let (cluster, _guard) = node();
    round_trip(cluster, Storage::Local, "");
}

/// The same with sstableloader (cassandra_loader=sstableloader), the loader
/// of a cluster of several nodes.
#[test]
fn round_trip_with_auth_and_s3_storage_streamed_by_sstableloader() {
    let (cluster, _guard) = node();
    round_trip(cluster, Storage::S3, "sstableloader");
}

/// A real tool (nodetool) with the sandbox's environment (JMX host and port).
fn nodetool(cluster: &Cluster, args: &[&str]) -> String {
    let mut command = Command::new(real_tools().join("nodetool"));
    for (key, value) in cluster.record["env"].as_object().unwrap() {
        command.env(key, value.as_str().unwrap());
    }
    succeeded(
        &format!("nodetool {args:?}"),
        command.args(args).output().unwrap(),
    )
}

fn gnu_tar(args: &[&str], folder: &Path) {
    succeeded(
        &format!("tar {args:?}"),
        Command::new("tar")
            .args(args)
            .current_dir(folder)
            .output()
            .unwrap(),
    );
}

/// A set as TheHive's guide scripts make it (reference-procedure.md, "Backup"),
/// step by step with the real tools: `nodetool snapshot -t cassandra_STAMP`,
/// `DESCRIBE KEYSPACE` without its WARNING lines, the snapshot folders copied
/// into a staging folder and tarred as cassandra_STAMP.tar, `clearsnapshot`;
/// the snapshot elasticsearch_STAMP with its .info marker; the attachment
/// folder copied and tarred as files_STAMP.tar. No manifest, no checksum.
fn guide_made_set(cluster: &Cluster) -> String {
    let stamp = stamp_now();
    let work = cluster.dir.path().join(format!("guide-{stamp}"));
    // Cassandra.
    let tag = format!("cassandra_{stamp}");
    nodetool(cluster, &["snapshot", "-t", &tag, "thehive"]);
    let schema: String = cqlsh(cluster, "DESCRIBE KEYSPACE thehive")
        .lines()
        .filter(|line| !line.starts_with("WARNING"))
        .map(|line| format!("{line}\n"))
        .collect();
    let top = work.join(&tag);
    std::fs::create_dir_all(top.join("thehive")).unwrap();
    std::fs::write(top.join("create_keyspace_thehive.cql"), schema.trim_start()).unwrap();
    let keyspace = cluster.path("cassandra_data").join("data/thehive");
    for table in std::fs::read_dir(&keyspace).unwrap().flatten() {
        let snapshot = table.path().join("snapshots").join(&tag);
        if snapshot.is_dir() {
            let dest = top.join("thehive").join(table.file_name());
            succeeded(
                "cp -r",
                Command::new("cp")
                    .arg("-r")
                    .arg(&snapshot)
                    .arg(&dest)
                    .output()
                    .unwrap(),
            );
        }
    }
    let archive = cluster.path("cassandra_archive").join(format!("{tag}.tar"));
    gnu_tar(&["cf", &archive.display().to_string(), &tag], &work);
    nodetool(cluster, &["clearsnapshot", "-t", &tag]);
    // Elasticsearch.
    let snapshot = format!("elasticsearch_{stamp}");
    let (status, body) = curl(&[
        "-X",
        "PUT",
        "-d",
        r#"{"indices":"thehive_global","ignore_unavailable":true,"include_global_state":false}"#,
        &format!(
            "{}/_snapshot/thehive_repository/{snapshot}?wait_for_completion=true",
            cluster.es_url()
        ),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_contains(&body, r#""state":"SUCCESS""#);
    std::fs::write(
        cluster.path("es_archive").join(format!("{snapshot}.info")),
        body,
    )
    .unwrap();
    // Attachments.
    let files_top = format!("files_{stamp}");
    succeeded(
        "cp -a",
        Command::new("cp")
            .arg("-a")
            .arg(cluster.path("attachments"))
            .arg(work.join(&files_top))
            .output()
            .unwrap(),
    );
    let files = cluster
        .path("storage_archive")
        .join(format!("{files_top}.tar"));
    gnu_tar(&["cf", &files.display().to_string(), &files_top], &work);
    std::fs::remove_dir_all(&work).unwrap();
    assert!(
        !cluster
            .path("backup")
            .join(format!("backup_{stamp}.json"))
            .exists()
    );
    stamp
}

#[test]
fn a_set_made_by_the_guides_scripts_restores_with_an_explicit_stamp() {
    let (cluster, _guard) = node();
    let stamp = guide_made_set(cluster);
    let at_backup = digest(cluster, Storage::Local);
    change_everything(cluster, Storage::Local);
    let out = restore(
        cluster,
        &[("stamp", &stamp), ("confirm", &stamp), ("storage", "local")],
    )
    .success();
    let err = &out.stderr;
    assert_contains(err, &format!("set {stamp} has no manifest"));
    assert_contains(err, "(a guide-made set: no manifest)");
    assert_eq!(digest(cluster, Storage::Local), at_backup);
    discard_safety(cluster, &stamp, Storage::Local);
    assert_eq!(leftovers(cluster), Vec::<String>::new());
}

/// SIGTERM once the Cassandra part is being restored (the index already is):
/// the undo actions put every part back, the run exits 143.
#[test]
fn sigterm_mid_restore_puts_everything_back() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster, Storage::Local);
    change_everything(cluster, Storage::Local);
    let before_restore = digest(cluster, Storage::Local);
    let run = restore_command(
        cluster,
        "run",
        &[("stamp", &stamp), ("confirm", &stamp), ("storage", "local")],
    )
    .spawn()
    .wait_for_stderr_within("cassandra: restoring", Duration::from_secs(600));
    // Into the Cassandra restore (tables being emptied or loaded).
    std::thread::sleep(Duration::from_secs(3));
    let out = run.signal(Signal::SIGTERM).finish().failure(143);
    let text = &out.stderr;
    assert_eq!(
        digest(cluster, Storage::Local),
        before_restore,
        "the cluster is not as before the restore:\n{text}"
    );
    assert!(
        !staging(cluster)
            .join(format!("cluster-hot-restore_{stamp}"))
            .exists(),
        "the staging folder is removed"
    );
    // What the undo left (the safety copies) is dropped as after a success.
    discard_safety(cluster, &stamp, Storage::Local);
}

/// Moving to new servers: a set made on this sandbox restores into a second,
/// freshly started one (other loopback addresses), its keyspace, index and
/// attachments emptied first. The backup share is copied over (the set's
/// archives moved, the snapshot repository's files copied, the repository
/// registered again as an admin does after mounting the share); the set's
/// manifest gives the keyspace, repository and index names, the new
/// sandbox's vars.json the addresses.
#[test]
fn a_set_restores_onto_a_new_cluster() {
    let (old, _guard) = node();
    let stamp = backup(old, Storage::Local);
    let at_backup = digest(old, Storage::Local);
    let args = sandbox_args();
    // A second sandbox, stopped when dropped (also when the test fails).
    let new = Cluster::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ne!(node_address(&new), node_address(old));
    assert_ne!(new.es_url(), old.es_url());

    // The new cluster, empty.
    cqlsh(&new, "DROP KEYSPACE thehive");
    let (status, body) = curl(&["-X", "DELETE", &format!("{}/thehive_global", new.es_url())]);
    assert_eq!(status, 200, "{body}");
    for entry in std::fs::read_dir(new.path("attachments"))
        .unwrap()
        .flatten()
    {
        if entry.file_type().unwrap().is_dir() {
            std::fs::remove_dir_all(entry.path()).unwrap();
        } else {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }

    // The backup share, moved over.
    for (key, name) in [
        ("cassandra_archive", format!("cassandra_{stamp}.tar")),
        ("cassandra_archive", format!("cassandra_{stamp}.tar.sha256")),
        ("storage_archive", format!("files_{stamp}.tar")),
        ("storage_archive", format!("files_{stamp}.tar.sha256")),
        ("es_archive", format!("elasticsearch_{stamp}.info")),
        ("backup", format!("backup_{stamp}.json")),
    ] {
        std::fs::rename(old.path(key).join(&name), new.path(key).join(&name)).unwrap();
    }
    let repository = new.path("es_archive");
    succeeded(
        "cp -a repository",
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", old.path("es_archive").display()))
            .arg(&repository)
            .output()
            .unwrap(),
    );
    let (status, body) = curl(&[
        "-X",
        "PUT",
        "-d",
        &serde_json::json!({"type": "fs", "settings": {"location": repository}}).to_string(),
        &format!("{}/_snapshot/thehive_repository", new.es_url()),
    ]);
    assert_eq!(status, 200, "{body}");

    let out = restore(
        &new,
        &[("stamp", &stamp), ("confirm", &stamp), ("storage", "local")],
    )
    .success();
    let err = &out.stderr;
    assert_contains(err, "found at");
    let restored = digest(&new, Storage::Local);
    assert_eq!(restored["cassandra"], at_backup["cassandra"]);
    assert_eq!(restored["indices"], at_backup["indices"]);
    assert_eq!(restored["attachments"], at_backup["attachments"]);
    drop(new);
}

/// The parts and the tables overlap, proven by order, not by timing: a
/// stand-in sstableloader (the real one behind a wrapper) holds its first
/// table's load until this run's journal records the attachments' extraction
/// and another table's load as finished (the journal is rewritten after every
/// step, records in completion order). Restored one part after the other, or
/// one table after the other, neither could happen while that load waits: it
/// would give up after 5 minutes and fail the run. Overlapping, the journal
/// lists `attachments: extract` and another table before the held table's
/// load, the run succeeds and the data are the set's.
#[test]
fn the_attachments_are_extracted_while_cassandra_loads() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster, Storage::Local);
    let at_backup = digest(cluster, Storage::Local);
    change_everything(cluster, Storage::Local);
    let journals = cluster.dir.path().join("journal");
    let held = cluster.dir.path().join("overlap-held");
    let _ = std::fs::remove_dir_all(&held);
    let wrapper = cluster.dir.path().join("overlap-sstableloader");
    write_script(
        &wrapper,
        &format!(
            "#!/usr/bin/env bash\n\
         # stand-in: the real sstableloader; its first load waits until the\n\
         # newest journal of {journals} records the attachments' extraction\n\
         # and another table's load\n\
         set -u\n\
         if [ \"$1\" != --help ] && mkdir {held} 2>/dev/null; then\n\
         \x20 for _ in $(seq 3000); do\n\
         \x20   journal=$(ls -t {journals}/*cluster-hot-restore.json | head -1)\n\
         \x20   if grep -q '\"label\": \"attachments: extract\"' \"$journal\" &&\n\
         \x20      grep -q '\"label\": \"sstableloader thehive.' \"$journal\"; then\n\
         \x20     echo \"${{@: -1}}\" > {held}/folder\n\
         \x20     exec {real} \"$@\"\n\
         \x20   fi\n\
         \x20   sleep 0.1\n\
         \x20 done\n\
         \x20 echo 'no extraction or other table loaded while this table waited' >&2\n\
         \x20 exit 1\n\
         fi\n\
         exec {real} \"$@\"\n",
            journals = journals.display(),
            held = held.display(),
            real = real_tools().join("sstableloader").display(),
        ),
    );
    let out = restore_with_loader(cluster, &stamp, &wrapper).success();
    let err = &out.stderr;
    assert!(held.exists(), "the wrapper held a load:\n{err}");
    assert_contains(err, "at the same time (restore_overlap)");
    assert_eq!(
        digest(cluster, Storage::Local),
        at_backup,
        "restored data differ"
    );

    // The journal of that run: the extraction finished before the last load.
    let journal = std::fs::read_dir(&journals)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.to_string_lossy().ends_with("cluster-hot-restore.json"))
        .max_by_key(|path| std::fs::metadata(path).unwrap().modified().unwrap())
        .expect("the restore's journal");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&journal).unwrap()).unwrap();
    let labels: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["label"].as_str().unwrap())
        .collect();
    let extracted = labels
        .iter()
        .position(|label| *label == "attachments: extract")
        .unwrap_or_else(|| panic!("no extraction in {labels:#?}"));
    let last_load = labels
        .iter()
        .rposition(|label| label.starts_with("sstableloader thehive."))
        .unwrap_or_else(|| panic!("no load in {labels:#?}"));
    assert!(
        extracted < last_load,
        "the extraction ended after the last table's load: {labels:#?}"
    );
    // The held table's load ended after another table's: loads in parallel.
    let folder = std::fs::read_to_string(held.join("folder")).unwrap();
    let table = Path::new(folder.trim())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .split('-')
        .next()
        .unwrap()
        .to_string();
    let held_load = labels
        .iter()
        .position(|label| *label == format!("sstableloader thehive.{table}"))
        .unwrap_or_else(|| panic!("no load of {table} in {labels:#?}"));
    let first_load = labels
        .iter()
        .position(|label| label.starts_with("sstableloader thehive."))
        .unwrap();
    assert!(
        first_load < held_load && extracted < held_load,
        "table {table}'s load was held until another table's load and the extraction ended: {labels:#?}"
    );
    discard_safety(cluster, &stamp, Storage::Local);
}

/// A failure in one branch while the others restore: the first table's load
/// fails (a stand-in sstableloader: the real one behind a wrapper that fails
/// its first load once the attachments are extracted, so the attachment
/// branch has changed the live folder by then). The other branches finish,
/// then every part is put back: the data are as before the restore, exit 1,
/// the error names the table.
#[test]
fn a_table_failing_while_the_other_parts_restore_puts_every_part_back() {
    let (cluster, _guard) = node();
    let stamp = backup(cluster, Storage::Local);
    change_everything(cluster, Storage::Local);
    let before_restore = digest(cluster, Storage::Local);
    let journals = cluster.dir.path().join("journal");
    let failed = cluster.dir.path().join("branch-failed");
    let _ = std::fs::remove_dir_all(&failed);
    let wrapper = cluster.dir.path().join("failing-branch-sstableloader");
    write_script(
        &wrapper,
        &format!(
            "#!/usr/bin/env bash\n\
         # stand-in: the real sstableloader; its first load fails once the\n\
         # newest journal of {journals} records the attachments' extraction\n\
         set -u\n\
         if [ \"$1\" != --help ] && mkdir {failed} 2>/dev/null; then\n\
         \x20 for _ in $(seq 3000); do\n\
         \x20   journal=$(ls -t {journals}/*cluster-hot-restore.json | head -1)\n\
         \x20   grep -q '\"label\": \"attachments: extract\"' \"$journal\" && break\n\
         \x20   sleep 0.1\n\
         \x20 done\n\
         \x20 echo 'stand-in: streaming failed' >&2\n\
         \x20 exit 1\n\
         fi\n\
         exec {real} \"$@\"\n",
            journals = journals.display(),
            failed = failed.display(),
            real = real_tools().join("sstableloader").display(),
        ),
    );
    let out = restore_with_loader(cluster, &stamp, &wrapper).failure(1);
    let err = &out.stderr;
    assert!(failed.exists(), "the stand-in failed a load:\n{err}");
    assert_contains(err, "sstableloader failed for table thehive.");
    assert_contains(err, "undoing");
    assert_eq!(
        digest(cluster, Storage::Local),
        before_restore,
        "the cluster is not as before the restore:\n{err}"
    );
    assert!(
        !staging(cluster)
            .join(format!("cluster-hot-restore_{stamp}"))
            .exists(),
        "the staging folder is removed"
    );
    discard_safety(cluster, &stamp, Storage::Local);
}

/// The confirmed restore of `stamp` (storage local) with `loader` as its
/// sstableloader (a wrapper around the real one), chosen explicitly
/// (cassandra_loader=sstableloader: the default imports on this one node).
fn restore_with_loader(cluster: &Cluster, stamp: &str, loader: &Path) -> Ran {
    let loader = loader.display().to_string();
    restore(
        cluster,
        &[
            ("stamp", stamp),
            ("confirm", stamp),
            ("storage", "local"),
            ("sstableloader", &loader),
            ("cassandra_loader", "sstableloader"),
        ],
    )
}

/// Writes an executable script (a wrapper around a real tool) at `path`.
fn write_script(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}
