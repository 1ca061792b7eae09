//! Operations through the real `runbook` binary: `runbook list` over complete,
//! incomplete and damaged backup sets, `runbook verify --set`, the `prune`
//! step's retention rules (with the Elasticsearch stand-in for snapshot
//! deletion), and the `--metrics-file` Prometheus textfile.
//!
//! Backup sets are laid out as the stock workflow lays them out (archives
//! made by the real `tar_dir` step, with their `.sha256` files; `.info`
//! markers; manifests in the documented format), without running the whole
//! stock workflow.

use runbook_test_support::{Ran, Test, support};

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use runbook_test_support::harness::read_journals;
use runbook_test_support::servers::EsStandin;
use serde_json::{Value, json};
use support::{assert_contains, free_port, venv_bin};

const REPOSITORY: &str = "thehive_repository";
/// Five stamps, oldest first.
const STAMPS: [&str; 5] = [
    "20261120_01h15m00s",
    "20261121_01h15m00s",
    "20261122_01h15m00s",
    "20261123_01h15m00s",
    "20261124_01h15m00s",
];

/// A backup folder laid out like the stock workflow's defaults:
/// `<root>/backup_STAMP.json`, `<root>/cassandra/`, `<root>/elasticsearch/`,
/// `<root>/storage/`; workflows and the journal beside it.
struct Backups {
    dir: tempfile::TempDir,
}

impl Backups {
    fn new() -> Self {
        let backups = Backups {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        for folder in [
            "backup/cassandra",
            "backup/elasticsearch",
            "backup/storage",
            "data/ks/t1-0001",
        ] {
            std::fs::create_dir_all(backups.path(folder)).unwrap();
        }
        std::fs::write(
            backups.path("data/ks/t1-0001/nb-1-big-Data.db"),
            vec![7u8; 5000],
        )
        .unwrap();
        std::fs::write(backups.path("data/schema.cql"), "CREATE KEYSPACE ks;\n").unwrap();
        backups
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn root(&self) -> PathBuf {
        self.path("backup")
    }

    fn root_arg(&self) -> String {
        self.root().display().to_string()
    }

    fn cassandra(&self, stamp: &str) -> PathBuf {
        self.path(&format!("backup/cassandra/cassandra_{stamp}.tar"))
    }

    fn files(&self, stamp: &str) -> PathBuf {
        self.path(&format!("backup/storage/files_{stamp}.tar"))
    }

    fn marker(&self, stamp: &str) -> PathBuf {
        self.path(&format!("backup/elasticsearch/elasticsearch_{stamp}.info"))
    }

    fn manifest(&self, stamp: &str) -> PathBuf {
        self.path(&format!("backup/backup_{stamp}.json"))
    }

    /// Every file a complete set of `stamp` has.
    fn set_files(&self, stamp: &str) -> Vec<PathBuf> {
        let sidecar = |p: PathBuf| PathBuf::from(format!("{}.sha256", p.display()));
        vec![
            self.manifest(stamp),
            self.cassandra(stamp),
            sidecar(self.cassandra(stamp)),
            self.files(stamp),
            sidecar(self.files(stamp)),
            self.marker(stamp),
        ]
    }

    /// `runbook ARGS` in this folder (`run` and `plan` keep their journal
    /// in `journal/` here).
    fn runbook(&self, args: &[&str]) -> Test {
        Test::at(self.dir.path()).args(args)
    }

    /// `runbook verify --set STAMP --manifest-path ROOT EXTRA...`, run to the end.
    fn verify_set(&self, stamp: &str, extra: &[&str]) -> Ran {
        self.runbook(&[
            "verify",
            "--set",
            stamp,
            "--manifest-path",
            &self.root_arg(),
        ])
        .args(extra)
        .run()
    }

    /// The text table of `runbook list` (which must succeed).
    fn list_text(&self) -> String {
        self.runbook(&["list", "--manifest-path", &self.root_arg()])
            .run()
            .success()
            .stdout
    }

    fn workflow(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// Makes the archives of `stamps` with the real `tar_dir` step: the
    /// Cassandra layout (`cassandra_STAMP/create_keyspace_ks.cql`,
    /// `cassandra_STAMP/ks/<table>/...`) and an attachments archive.
    fn make_archives(&self, stamps: &[&str]) {
        let workflow = self.workflow(
            "make-archives.rhai",
            r#"let c = config(#{ root: "", data: "", stamps: [] });
               for s in c.stamps {
                   tar_dir(#{ dest: `${c.root}/cassandra/cassandra_${s}.tar`, entries: [
                       #{ src: `${c.data}/schema.cql`, path: `cassandra_${s}/create_keyspace_ks.cql` },
                       #{ src: `${c.data}/ks/t1-0001`, path: `cassandra_${s}/ks/t1-0001` },
                   ] });
                   tar_dir(#{ dest: `${c.root}/storage/files_${s}.tar`, src: `${c.data}/ks`, prefix: `files_${s}` });
               }"#,
        );
        self.runbook(&[
            "run",
            &workflow,
            "--set",
            &format!("root={}", self.root_arg()),
            "--set",
            &format!("data={}", self.path("data").display()),
            "--set",
            &format!("stamps={}", stamps.join(",")),
        ])
        .run()
        .success();
    }

    /// The `.info` marker as the stock workflow writes it (the es_snapshot result).
    fn make_marker(&self, stamp: &str) {
        let marker = json!({"repository": REPOSITORY, "snapshot": format!("elasticsearch_{stamp}"), "state": "SUCCESS"});
        std::fs::write(self.marker(stamp), format!("{marker}\n")).unwrap();
    }

    /// The set manifest in the stock workflow's format (mode 0600), with
    /// `verified.result` = `verified`.
    fn make_manifest(&self, stamp: &str, verified: &str) {
        let archive = |part: &str, path: PathBuf| {
            let sha256 = std::fs::read_to_string(format!("{}.sha256", path.display())).unwrap();
            json!({
                "part": part, "path": path, "bytes": std::fs::metadata(&path).unwrap().len(),
                "sha256": sha256.split_whitespace().next().unwrap(), "entries": 4,
            })
        };
        let manifest = json!({
            "format": 1,
            "stamp": stamp,
            "host": "backup-host",
            "created": "2026-11-24T01:20:00+0000",
            "complete": true,
            "verified": {"time": "2026-11-24T01:20:00+0000", "result": verified},
            "archives": [archive("cassandra", self.cassandra(stamp)), archive("files", self.files(stamp))],
            "cassandra": {"snapshot_tag": format!("cassandra_{stamp}"), "keyspace": "ks", "tables": ["t1-0001"], "version": "4.1.3"},
            "elasticsearch": {
                "repository": REPOSITORY, "snapshot": format!("elasticsearch_{stamp}"), "uuid": "u",
                "state": "SUCCESS", "marker": self.marker(stamp),
            },
            "snapshot_skew_seconds": 0.2,
            "workflow_sha256": "0".repeat(64),
            // As the stock workflow records it; the test workflows pruning
            // these sets are `prune.rhai` files.
            "origin": {"tool": "runbook", "workflow": "prune", "manifest_path": self.root()},
            "config": {"storage": "local"},
        });
        let path = self.manifest(stamp);
        std::fs::write(&path, format!("{manifest}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// A complete set: archives, sidecars, marker, manifest.
    fn make_complete(&self, stamp: &str, verified: &str) {
        self.make_marker(stamp);
        self.make_manifest(stamp, verified);
    }

    /// Each stamp's Elasticsearch snapshot, taken through the real http step.
    fn make_snapshots(&self, es: &EsStandin, stamps: &[&str]) {
        let snapshots = self.workflow(
            "snapshots.rhai",
            r#"let c = config(#{ es: "", stamps: [] });
               for s in c.stamps {
                   http(#{ method: "PUT", url: `${c.es}/_snapshot/thehive_repository/elasticsearch_${s}?wait_for_completion=true`,
                           json: #{ indices: "thehive_global" } });
               }"#,
        );
        self.runbook(&[
            "run",
            &snapshots,
            "--set",
            &format!("es={}", es.base),
            "--set",
            &format!("stamps={}", stamps.join(",")),
        ])
        .run()
        .success();
    }

    fn list_json(&self) -> Value {
        self.runbook(&["list", "--manifest-path", &self.root_arg(), "--json"])
            .run()
            .success()
            .stdout_json()
    }

    fn manifest_json(&self, stamp: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.manifest(stamp)).unwrap()).unwrap()
    }

    /// The result of the last call of `step` in the newest journal.
    fn last_step_result(&self, step: &str) -> Value {
        let journals = read_journals(&self.path("journal"));
        let journal = journals.last().expect("a journal");
        journal["steps"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s["step"] == step)
            .unwrap_or_else(|| panic!("no {step} step in the journal"))["result"]
            .clone()
    }
}

fn set<'a>(list: &'a Value, stamp: &str) -> &'a Value {
    list["sets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stamp"] == stamp)
        .unwrap_or_else(|| panic!("set {stamp} is listed: {list:#}"))
}

/// The stamps of a list of sets in a prune result (`removed`, `kept`,
/// `left_alone`), in its order.
fn stamps_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list of sets: {list:#}"))
        .iter()
        .map(|x| x["stamp"].as_str().unwrap().to_string())
        .collect()
}

fn parts(set: &Value) -> Vec<String> {
    set["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["present"] == true)
        .map(|p| p["part"].as_str().unwrap().to_string())
        .collect()
}

/// Flips one byte in the middle of a file, keeping its size.
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn list_shows_complete_incomplete_and_damaged_sets() {
    let b = Backups::new();
    let [good, incomplete, truncated, unreadable, failed] = STAMPS;
    b.make_archives(&[good, incomplete, truncated, unreadable, failed]);
    b.make_complete(good, "ok");
    // A run that died after the Cassandra archive and the snapshot: no manifest,
    // and the attachments archive never made it.
    b.make_marker(incomplete);
    std::fs::remove_file(b.files(incomplete)).unwrap();
    std::fs::remove_file(format!("{}.sha256", b.files(incomplete).display())).unwrap();
    // An archive cut short after the set was written.
    b.make_complete(truncated, "ok");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(b.cassandra(truncated))
        .unwrap();
    f.set_len(1024).unwrap();
    // A manifest that is not JSON.
    b.make_marker(unreadable);
    std::fs::write(b.manifest(unreadable), "{\"stamp\": \"trunc").unwrap();
    // A set whose last verification failed.
    b.make_complete(failed, "failed");

    let list = b.list_json();
    assert_eq!(list["sets"].as_array().unwrap().len(), 5, "{list:#}");

    let s = set(&list, good);
    assert_eq!(s["complete"], true);
    assert_eq!(s["verified"]["result"], "ok");
    assert_eq!(s["problems"], json!([]));
    assert_eq!(parts(s), ["cassandra", "elasticsearch", "files"]);
    let on_disk: u64 = b
        .set_files(good)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(s["bytes"], on_disk, "the size counts every file of the set");
    assert!(s["age_seconds"].as_u64().unwrap() > 0);

    let s = set(&list, incomplete);
    assert_eq!(s["complete"], false);
    assert_eq!(s["manifest"], Value::Null);
    assert_eq!(parts(s), ["cassandra", "elasticsearch"]);
    assert_eq!(s["snapshot"]["name"], format!("elasticsearch_{incomplete}"));

    let s = set(&list, truncated);
    assert_eq!(s["complete"], true);
    let problems = s["problems"].to_string();
    assert!(
        problems.contains("is 1024 bytes, the manifest says"),
        "{problems}"
    );

    let s = set(&list, unreadable);
    assert_eq!(s["complete"], false);
    assert!(
        s["problems"]
            .to_string()
            .contains("is not a valid manifest"),
        "{s:#}"
    );
    assert_eq!(parts(s), ["cassandra", "elasticsearch", "files"]);

    let s = set(&list, failed);
    assert_eq!(
        (s["complete"].clone(), s["verified"]["result"].clone()),
        (json!(true), json!("failed"))
    );

    // The table: newest first, one line per set, problems under their set.
    let text = b.list_text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("STAMP") && lines[0].contains("VERIFIED"),
        "{text}"
    );
    assert!(
        lines[1].starts_with(failed)
            && lines[1].contains("complete")
            && lines[1].contains("failed"),
        "{text}"
    );
    let line_of = |stamp: &str| *lines.iter().find(|l| l.starts_with(stamp)).unwrap();
    assert!(
        line_of(good).contains("complete")
            && line_of(good).contains("cassandra,elasticsearch,files"),
        "{text}"
    );
    assert!(line_of(incomplete).contains("INCOMPLETE"), "{text}");
    assert!(line_of(unreadable).contains("INCOMPLETE"), "{text}");
    assert!(line_of(truncated).contains("DAMAGED"), "{text}");
    assert!(
        text.contains("    ! archive ")
            && text.contains("5 sets: 3 complete, 1 complete and verified"),
        "{text}"
    );

    // A folder that does not exist is an error, not an empty list.
    let nowhere = b.path("nowhere").display().to_string();
    b.runbook(&["list", "--manifest-path", &nowhere])
        .run()
        .failure(2)
        .stderr_contains("cannot list manifest folder")
        .stderr_contains(&nowhere);
}

#[test]
fn verify_set_records_the_result_and_fails_on_a_corrupted_archive() {
    let es = EsStandin::start(&["--repository", REPOSITORY]);
    let b = Backups::new();
    let stamp = STAMPS[0];
    b.make_archives(&[stamp]);
    b.make_complete(stamp, "failed");
    b.make_snapshots(&es, &[stamp]);
    let es_arg = format!("--elasticsearch-url={}", es.base);

    b.verify_set(stamp, &[&es_arg])
        .success()
        .stdout_contains(&format!("set {stamp}: verified ok"));
    let manifest = b.manifest_json(stamp);
    assert_eq!(manifest["verified"]["result"], "ok");
    assert_eq!(manifest["verified"]["errors"], json!([]));
    assert_ne!(
        manifest["verified"]["time"], "2026-11-24T01:20:00+0000",
        "the time is updated"
    );
    assert_eq!(
        manifest["config"],
        json!({"storage": "local"}),
        "the rest of the manifest is kept"
    );
    let mode = std::fs::metadata(b.manifest(stamp))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(set(&b.list_json(), stamp)["verified"]["result"], "ok");

    // Same size, one byte changed: only reading the whole archive finds it.
    corrupt(&b.files(stamp));
    b.verify_set(stamp, &[&es_arg])
        .failure(1)
        .stdout_contains("verification FAILED");
    let manifest = b.manifest_json(stamp);
    assert_eq!(manifest["verified"]["result"], "failed");
    let errors = manifest["verified"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].as_str().unwrap().contains("mismatch")
            && errors[0].as_str().unwrap().contains("files_"),
        "{errors:?}"
    );
    let listed = b.list_json();
    assert_eq!(set(&listed, stamp)["verified"]["result"], "failed");
    assert!(!std::path::Path::new(&format!("{}.partial", b.manifest(stamp).display())).exists());

    // A missing set is a usage error; plain `verify PATH` still works.
    b.verify_set(STAMPS[4], &[])
        .failure(2)
        .stderr_contains(STAMPS[4]);
    let cassandra = b.cassandra(stamp).display().to_string();
    b.runbook(&["verify", &cassandra])
        .run()
        .success()
        .stdout_starts_with("ok ")
        .stdout_contains(&cassandra);
    b.runbook(&["verify"]).run().failure(2);
}

/// What the Elasticsearch stand-in holds and was asked, for the prune tests.
trait RepositorySnapshots {
    /// The snapshots of the stand-in's repository `thehive_repository`, sorted.
    fn snapshots(&self) -> Vec<String>;
    /// The paths of the DELETE requests it received, in order.
    fn deletes(&self) -> Vec<String>;
}

impl RepositorySnapshots for EsStandin {
    fn deletes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|(method, _, _)| method == "DELETE")
            .map(|(_, path, _)| path)
            .collect()
    }

    fn snapshots(&self) -> Vec<String> {
        let mut names: Vec<String> = self.control(
            "GET",
            &format!("/_snapshot/{REPOSITORY}/_all?verbose=false"),
        )["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["snapshot"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn prune_keeps_the_newest_verified_sets_and_deletes_the_snapshots_of_removed_ones() {
    let es = EsStandin::start(&["--repository", REPOSITORY]);
    let b = Backups::new();
    let [s1, s2, s3, s4, s5] = STAMPS;
    b.make_archives(&STAMPS);
    b.make_complete(s1, "ok");
    b.make_complete(s2, "ok");
    b.make_marker(s3); // incomplete: no manifest
    b.make_complete(s4, "failed"); // complete, not verified
    b.make_complete(s5, "ok");
    b.make_snapshots(&es, &STAMPS);
    assert_eq!(es.snapshots().len(), 5);
    es.control("DELETE", "/_standin/requests");

    let prune = b.workflow(
        "prune.rhai",
        r#"let c = config(#{ root: "", es: "", keep: 2 });
           let r = prune(#{ manifest_path: c.root, workflow: "prune", keep: c.keep,
                            archive_paths: [`${c.root}/cassandra`, `${c.root}/elasticsearch`, `${c.root}/storage`],
                            elasticsearch: #{ url: c.es, repository: "thehive_repository" } });
           for x in r.removed { log_info(`removed ${x.stamp}: ${x.reason}`); }"#,
    );
    let args = [
        "--set",
        &format!("root={}", b.root_arg()),
        "--set",
        &format!("es={}", es.base),
    ];
    let every_file = |stamps: &[&str]| -> Vec<PathBuf> {
        stamps
            .iter()
            .flat_map(|s| b.set_files(s))
            .filter(|p| p.exists())
            .collect()
    };
    let before = every_file(&STAMPS);

    // Dry-run: the same decision, nothing removed, no snapshot deleted.
    b.runbook(&["plan", &prune]).args(args).run().success();
    let planned = b.last_step_result("prune");
    assert_eq!(planned["dry_run"], true);
    assert_eq!(every_file(&STAMPS), before, "a dry-run removes nothing");
    assert!(
        es.calls().iter().all(|(method, _, _)| method == "GET"),
        "{:?}",
        es.calls()
    );
    assert_eq!(es.snapshots().len(), 5);

    b.runbook(&["run", &prune]).args(args).run().success();
    let result = b.last_step_result("prune");
    assert_eq!(result["dry_run"], false);
    // Oldest first; the set without a manifest (s3) is not this workflow's
    // to remove (issue 12: it may be TheHive's own scripts' set): left alone.
    assert_eq!(stamps_of(&result["removed"]), [s1, s4]);
    assert_eq!(stamps_of(&result["kept"]), [s2, s5]);
    assert_eq!(stamps_of(&result["left_alone"]), [s3]);
    assert_eq!(
        result["removed"], planned["removed"],
        "the dry-run listed exactly what went"
    );
    let reasons = result["removed"].to_string();
    assert!(
        result["warnings"].to_string().contains(&format!(
            "set {s3} left alone: foreign set (cassandra,elasticsearch,files)"
        )),
        "{result:#}"
    );
    assert!(
        reasons.contains("not verified (last verification failed"),
        "{reasons}"
    );
    assert!(
        reasons.contains("older than the 2 newest verified sets"),
        "{reasons}"
    );
    assert_eq!(
        result["removed"][0]["snapshot"],
        format!("{REPOSITORY}/elasticsearch_{s1}")
    );
    let removed_s1: Vec<PathBuf> = result["removed"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap()))
        .collect();
    assert_eq!(removed_s1[0], b.manifest(s1), "the manifest goes first");
    assert_eq!(
        removed_s1.last().unwrap(),
        &b.marker(s1),
        "the marker goes last"
    );

    // Exactly the right files went.
    assert_eq!(every_file(&[s1, s4]), Vec::<PathBuf>::new());
    for stamp in [s2, s3, s5] {
        for file in b.set_files(stamp) {
            assert!(
                file.exists() || file == b.manifest(s3),
                "{} was kept",
                file.display()
            );
        }
    }
    // And the removed sets' snapshots, in removal order.
    let snapshot_path = |s: &str| format!("/_snapshot/{REPOSITORY}/elasticsearch_{s}");
    assert_eq!(es.deletes(), [snapshot_path(s1), snapshot_path(s4)]);
    assert_eq!(
        es.snapshots(),
        [
            format!("elasticsearch_{s2}"),
            format!("elasticsearch_{s3}"),
            format!("elasticsearch_{s5}")
        ]
    );

    // Run again: nothing more to do; keep: 0 never removes anything.
    b.runbook(&["run", &prune])
        .args(args)
        .args(["--set", "keep=1"])
        .run()
        .success();
    assert_eq!(stamps_of(&b.last_step_result("prune")["removed"]), [s2]);
    b.runbook(&["run", &prune])
        .args(args)
        .args(["--set", "keep=0"])
        .run()
        .success();
    assert_eq!(b.last_step_result("prune")["removed"], json!([]));
    assert!(b.manifest(s5).exists());
}

#[test]
fn prune_removes_nothing_when_elasticsearch_does_not_answer() {
    let b = Backups::new();
    let [s1, s2, s3, ..] = STAMPS;
    b.make_archives(&[s1, s2, s3]);
    for stamp in [s1, s2, s3] {
        b.make_complete(stamp, "ok");
    }
    let prune = b.workflow(
        "prune.rhai",
        r#"let c = config(#{ root: "", es: "" });
           prune(#{ manifest_path: c.root, workflow: "prune", keep: 1, timeout: "3s",
                    elasticsearch: #{ url: c.es, repository: "thehive_repository" } });"#,
    );
    // Nothing listens on this port: the repository check fails before any file goes.
    b.runbook(&[
        "run",
        &prune,
        "--set",
        &format!("root={}", b.root_arg()),
        "--set",
        &format!("es=http://127.0.0.1:{}", free_port()),
    ])
    .run()
    .failure(1)
    .stderr_contains(
        "cannot check snapshot repository `thehive_repository` before pruning (nothing was removed)",
    );
    for stamp in [s1, s2, s3] {
        for file in b.set_files(stamp) {
            assert!(file.exists(), "{} was kept", file.display());
        }
    }
}

/// One sample: metric name, sorted labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses a metrics file with the reference parser (the official Python
/// client's `text_string_to_metric_families`, installed by tests/run), which
/// rejects a malformed line instead of skipping it; every family must be a
/// gauge with HELP text.
fn read_metrics(path: &Path) -> Vec<Sample> {
    const PARSE: &str = "\
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    assert family.type == 'gauge', (family.name, family.type)
    assert family.documentation, family.name
    out += [[s.name, sorted(s.labels.items()), s.value] for s in family.samples]
print(json.dumps(out))
";
    let out = Command::new(venv_bin("python"))
        .args(["-c", PARSE])
        .arg(path)
        .output()
        .expect("the test virtualenv's python runs");
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        out.status.success(),
        "not Prometheus text format: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "runbook_last_run_timestamp_seconds",
        "runbook_last_run_success",
        "runbook_last_run_duration_seconds",
        "runbook_last_success_timestamp_seconds",
        "runbook_archive_bytes",
        "runbook_step_duration_seconds",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} gauge")),
            "{name} has TYPE:\n{text}"
        );
    }
    serde_json::from_slice(&out.stdout).expect("the parser prints JSON")
}

fn metric(metrics: &[Sample], name: &str, label: Option<(&str, &str)>) -> f64 {
    metrics
        .iter()
        .find(|(n, labels, _)| {
            n == name && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .unwrap_or_else(|| panic!("no {name} {label:?} in {metrics:?}"))
        .2
}

#[test]
fn metrics_file_is_written_atomically_and_keeps_the_last_success_after_a_failure() {
    let b = Backups::new();
    let workflow = b.workflow(
        "nightly.rhai",
        r#"let c = config(#{ root: "", data: "", fail_now: false, metrics_file: "" });
           tar_dir(#{ dest: `${c.root}/cassandra/cassandra_20261126_01h15m00s.tar`, src: `${c.data}/ks`,
                      prefix: "cassandra_20261126_01h15m00s", label: "cassandra archive" });
           exec(#{ cmd: "true", label: "pause" });
           exec(#{ cmd: "true", label: `odd, "quoted" = \ label` });
           if c.fail_now { fail("the backup broke"); }"#,
    );
    let metrics_file = b.path("runbook.prom");
    let metrics_arg = metrics_file.display().to_string();
    let root = format!("root={}", b.root_arg());
    let data = format!("data={}", b.path("data").display());
    let run = |extra: &[&str]| {
        b.runbook(&["run", &workflow, "--metrics-file", &metrics_arg])
            .args(["--set", &root, "--set", &data])
            .args(extra)
            .run()
    };

    run(&[]).success();
    let first = read_metrics(&metrics_file);
    assert!(
        first
            .iter()
            .all(|(_, labels, _)| labels.contains(&("workflow".into(), "nightly".into()))),
        "{first:?}"
    );
    assert_eq!(metric(&first, "runbook_last_run_success", None), 1.0);
    let started = metric(&first, "runbook_last_run_timestamp_seconds", None);
    assert!(started > 1.7e9, "{started}");
    assert_eq!(
        metric(&first, "runbook_last_success_timestamp_seconds", None),
        started
    );
    let archive = std::fs::metadata(b.path("backup/cassandra/cassandra_20261126_01h15m00s.tar"))
        .unwrap()
        .len();
    assert_eq!(
        metric(&first, "runbook_archive_bytes", Some(("part", "cassandra"))),
        archive as f64
    );
    assert!(
        metric(
            &first,
            "runbook_step_duration_seconds",
            Some(("label", "pause"))
        ) >= 0.0
    );
    // Label values are escaped, and read back exactly.
    let odd = r#"odd, "quoted" = \ label"#;
    assert!(
        metric(
            &first,
            "runbook_step_duration_seconds",
            Some(("label", odd))
        ) >= 0.0
    );
    assert!(metric(&first, "runbook_last_run_duration_seconds", None) >= 0.0);
    let inode = std::fs::metadata(&metrics_file).unwrap().ino();

    // A plan is not a backup: the file stays as it is.
    let before = std::fs::read(&metrics_file).unwrap();
    b.runbook(&["plan", &workflow, "--metrics-file", &metrics_arg])
        .run()
        .success();
    assert_eq!(std::fs::read(&metrics_file).unwrap(), before);

    // A failed run: success 0, a new run time, the last success kept for staleness alerts.
    run(&["--set", "fail_now=true"])
        .failure(1)
        .stderr_contains("the backup broke");
    let second = read_metrics(&metrics_file);
    assert_eq!(metric(&second, "runbook_last_run_success", None), 0.0);
    assert!(metric(&second, "runbook_last_run_timestamp_seconds", None) >= started);
    assert_eq!(
        metric(&second, "runbook_last_success_timestamp_seconds", None),
        started
    );
    // Replaced by rename (a new file), never rewritten in place, nothing left over.
    assert_ne!(std::fs::metadata(&metrics_file).unwrap().ino(), inode);
    assert!(!b.path("runbook.prom.partial").exists());
    let leftovers: Vec<_> = std::fs::read_dir(b.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("runbook.prom"))
        .collect();
    assert_eq!(leftovers.len(), 1);

    // The workflow's own config key `metrics_file` does the same as the flag.
    let from_config = b.path("from-config.prom");
    b.runbook(&[
        "run",
        &workflow,
        "--set",
        &root,
        "--set",
        &data,
        "--set",
        &format!("metrics_file={}", from_config.display()),
    ])
    .run()
    .success();
    assert_eq!(
        metric(
            &read_metrics(&from_config),
            "runbook_last_run_success",
            None
        ),
        1.0
    );
}

/// Rewrites a manifest's JSON with `change`.
fn edit_manifest(b: &Backups, stamp: &str, change: impl FnOnce(&mut Value)) {
    let mut manifest = b.manifest_json(stamp);
    change(&mut manifest);
    std::fs::write(b.manifest(stamp), format!("{manifest}\n")).unwrap();
}

/// Issue 12 §1: retention removes only what a readable runbook manifest of
/// this workflow and manifest folder names. Sets made by TheHive's own
/// scripts (archives + marker, no manifest), another workflow's set, an
/// archive copied by hand under a set-like name, a manifest with one stray
/// comma, and manifests naming a snapshot `*` or a stamp `../../x` are all
/// left alone, never counted, with a warning; `*` is never sent.
#[test]
fn prune_leaves_alone_every_set_it_did_not_make_and_never_sends_a_wildcard() {
    let es = EsStandin::start(&["--repository", REPOSITORY]);
    let b = Backups::new();
    let guide = "20261101_01h15m00s";
    let other = "20261102_01h15m00s";
    let comma = "20261103_01h15m00s";
    let wildcard = "20261104_01h15m00s";
    let escape = "20261105_01h15m00s";
    let copied = "20261106_01h15m00s";
    let [_, _, mine1, mine2, mine3] = STAMPS;
    let with_manifest = [other, comma, wildcard, escape, mine1, mine2, mine3];
    b.make_archives(&[&[guide][..], &with_manifest[..]].concat());
    b.make_marker(guide);
    for stamp in with_manifest {
        b.make_complete(stamp, "ok");
    }
    edit_manifest(&b, other, |m| {
        m["origin"]["workflow"] = json!("other-site-backup")
    });
    let text = std::fs::read_to_string(b.manifest(comma)).unwrap();
    std::fs::write(b.manifest(comma), text.replacen("\"host\"", ",\"host\"", 1)).unwrap();
    edit_manifest(&b, wildcard, |m| {
        m["elasticsearch"]["snapshot"] = json!("*")
    });
    edit_manifest(&b, escape, |m| m["stamp"] = json!("../../x"));
    std::fs::copy(
        b.cassandra(mine3),
        b.path(&format!("backup/cassandra/cassandra_{copied}.tar")),
    )
    .unwrap();

    let all = [guide, other, comma, wildcard, escape, mine1, mine2, mine3];
    b.make_snapshots(&es, &all);
    es.control("DELETE", "/_standin/requests");

    let prune = b.workflow(
        "prune.rhai",
        r#"let c = config(#{ root: "", es: "", keep: 5 });
           let r = prune(#{ manifest_path: c.root, workflow: "prune", keep: c.keep,
                            archive_paths: [`${c.root}/cassandra`, `${c.root}/elasticsearch`, `${c.root}/storage`],
                            elasticsearch: #{ url: c.es, repository: "thehive_repository" } });
           for w in r.warnings { log_warn(w); }"#,
    );
    let args = [
        "--set",
        &format!("root={}", b.root_arg()),
        "--set",
        &format!("es={}", es.base),
    ];
    let every_file: Vec<PathBuf> = walk_files(&b.root());

    // keep=5 with 3 sets of its own: nothing goes (others are not counted).
    let err = b
        .runbook(&["run", &prune])
        .args(args)
        .run()
        .success()
        .stderr;
    let result = b.last_step_result("prune");
    assert_eq!(result["removed"], json!([]), "{result:#}");
    assert_eq!(walk_files(&b.root()), every_file);
    assert_eq!(
        stamps_of(&result["left_alone"]),
        [guide, other, comma, wildcard, escape, copied]
    );
    for (stamp, why) in [
        (
            guide,
            "foreign set (cassandra,elasticsearch,files): no runbook manifest",
        ),
        (other, "made by workflow `other-site-backup`"),
        (comma, "damaged set"),
        (
            wildcard,
            "names snapshot `*`, not `elasticsearch_20261104_01h15m00s`",
        ),
        (escape, "records stamp `../../x`, not 20261105_01h15m00s"),
        (copied, "foreign set (cassandra): no runbook manifest"),
    ] {
        assert!(
            err.contains(&format!("set {stamp} left alone: ")) && err.contains(why),
            "warning for {stamp} ({why}) in:\n{err}"
        );
    }

    // keep=1: only this workflow's two older sets go, with their snapshots.
    b.runbook(&["run", &prune])
        .args(args)
        .args(["--set", "keep=1"])
        .run()
        .success();
    assert_eq!(
        stamps_of(&b.last_step_result("prune")["removed"]),
        [mine1, mine2]
    );
    let left: Vec<PathBuf> = every_file
        .iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.contains(mine1) && !name.contains(mine2)
        })
        .cloned()
        .collect();
    assert_eq!(walk_files(&b.root()), left);
    assert_eq!(
        es.deletes(),
        [
            format!("/_snapshot/{REPOSITORY}/elasticsearch_{mine1}"),
            format!("/_snapshot/{REPOSITORY}/elasticsearch_{mine2}"),
        ]
    );
    assert_eq!(es.snapshots().len(), all.len() - 2);

    // `runbook list` shows each for what it is, with its parts.
    let list = b.list_json();
    assert_eq!(set(&list, guide)["origin"], "foreign");
    assert_eq!(
        parts(set(&list, guide)),
        ["cassandra", "elasticsearch", "files"]
    );
    assert_eq!(set(&list, copied)["origin"], "foreign");
    assert_eq!(set(&list, other)["origin"], "runbook");
    assert_eq!(
        set(&list, other)["written_by"]["workflow"],
        "other-site-backup"
    );
    for stamp in [comma, wildcard, escape] {
        assert_eq!(set(&list, stamp)["origin"], "damaged", "{stamp}");
        assert_eq!(set(&list, stamp)["snapshot"]["listed"], false, "{stamp}");
    }
    let text = b.list_text();
    let line_of = |stamp: &str| text.lines().find(|l| l.starts_with(stamp)).unwrap();
    assert!(line_of(guide).contains("foreign"), "{text}");
    assert!(line_of(wildcard).contains("DAMAGED"), "{text}");
    assert!(line_of(other).contains("other-site-backup"), "{text}");
    assert!(
        text.contains("5 foreign or damaged (retention never touches them)"),
        "{text}"
    );
}

/// Every file under `root`, sorted.
fn walk_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                folders.push(entry.path());
            } else {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// How long a run that must not block may take before the test kills it
/// and fails: a hang is the bug the FIFO test looks for.
const HANG: Duration = Duration::from_secs(30);

/// Issue 12 §4: a FIFO named like a manifest (or a sidecar) in the backup
/// folders, and `runbook verify` of a FIFO or /dev/zero, used to block for
/// ever. Only regular files are opened: each is refused at once, naming
/// what it is, and the set shows as damaged.
#[test]
fn fifos_and_devices_are_refused_at_once_never_waited_on() {
    let b = Backups::new();
    let [good, ..] = STAMPS;
    b.make_archives(&[good]);
    b.make_complete(good, "ok");
    let fifo_stamp = "20200101_00h00m00s";
    let fifo = b.path(&format!("backup/backup_{fifo_stamp}.json"));
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
    nix::unistd::mkfifo(&fifo, mode).unwrap();
    let sidecar_fifo = b.path(&format!("backup/storage/files_{fifo_stamp}.tar.sha256"));
    nix::unistd::mkfifo(&sidecar_fifo, mode).unwrap();
    let marker_fifo = b.path(&format!(
        "backup/elasticsearch/elasticsearch_{fifo_stamp}.info"
    ));
    nix::unistd::mkfifo(&marker_fifo, mode).unwrap();

    let list = b
        .runbook(&["list", "--manifest-path", &b.root_arg(), "--json"])
        .run_within(HANG)
        .success()
        .stdout_json();
    let s = set(&list, fifo_stamp);
    assert_eq!(s["origin"], "damaged", "{s:#}");
    assert!(
        s["problems"]
            .to_string()
            .contains("is a FIFO (named pipe), not a regular file"),
        "{s:#}"
    );
    assert_eq!(set(&list, good)["origin"], "runbook");

    let prune = b.workflow(
        "prune.rhai",
        r#"let c = config(#{ root: "" });
           let r = prune(#{ manifest_path: c.root, workflow: "prune", keep: 1,
                            archive_paths: [`${c.root}/cassandra`, `${c.root}/elasticsearch`, `${c.root}/storage`] });
           for w in r.warnings { log_warn(w); }"#,
    );
    b.runbook(&["run", &prune, "--set", &format!("root={}", b.root_arg())])
        .run_within(HANG)
        .success()
        .stderr_contains(&format!("set {fifo_stamp} left alone: damaged set"));
    for path in [&fifo, &sidecar_fifo, &marker_fifo] {
        assert!(path.exists(), "{} left alone", path.display());
    }

    b.runbook(&[
        "verify",
        "--set",
        fifo_stamp,
        "--manifest-path",
        &b.root_arg(),
    ])
    .run_within(HANG)
    .failure(1)
    .stderr_contains("is a FIFO (named pipe), not a regular file");

    for (path, what) in [
        (fifo.display().to_string(), "is a FIFO (named pipe)"),
        ("/dev/zero".to_string(), "is a device"),
    ] {
        b.runbook(&["verify", &path])
            .run_within(HANG)
            .failure(1)
            .stdout_contains(what)
            .stdout_contains(&path);
    }
}

/// Issue 12 §2 and §3: `verify --set` used to say "verified ok" for a set
/// whose Elasticsearch snapshot was deleted (only the `.info` file was
/// looked at), and rewrote the manifest as root:root 0600 so the
/// `backup_group` lost read access. The snapshot must exist with state
/// SUCCESS (at the URL the manifest records); `list` shows its state; the
/// manifest keeps its owner, group and mode.
#[test]
fn verify_set_needs_the_snapshot_and_keeps_the_manifests_owner_group_and_mode() {
    use std::os::unix::fs::MetadataExt;
    let es = EsStandin::start(&["--repository", REPOSITORY]);
    let b = Backups::new();
    let stamp = STAMPS[0];
    b.make_archives(&[stamp]);
    b.make_complete(stamp, "ok");
    b.make_snapshots(&es, &[stamp]);
    edit_manifest(&b, stamp, |m| {
        m["config"]["elasticsearch_url"] = json!(es.base);
        m["config"]["elasticsearch_user"] = json!("");
    });
    let manifest = b.manifest(stamp);
    // As the workflow leaves it with backup_group set (here: nogroup).
    std::os::unix::fs::chown(&manifest, None, Some(65534)).unwrap();
    std::fs::set_permissions(&manifest, std::fs::Permissions::from_mode(0o640)).unwrap();
    let owner = |path: &Path| {
        let m = std::fs::metadata(path).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    b.verify_set(stamp, &[]).success().stdout_contains(&format!(
        "ok Elasticsearch snapshot {REPOSITORY}/elasticsearch_{stamp}: SUCCESS"
    ));
    let me = nix::unistd::geteuid().as_raw();
    assert_eq!(
        owner(&manifest),
        (me, 65534, 0o640),
        "owner, group and mode kept"
    );
    let listed = b.list_json();
    assert_eq!(set(&listed, stamp)["snapshot_state"]["state"], "success");

    // The snapshot deleted behind runbook's back.
    es.control(
        "DELETE",
        &format!("/_snapshot/{REPOSITORY}/elasticsearch_{stamp}"),
    );
    let listed = b.list_json();
    let s = set(&listed, stamp);
    assert_eq!(s["snapshot_state"]["state"], "missing", "{s:#}");
    assert_contains(&s["problems"].to_string(), "does not exist at");
    let line = b
        .list_text()
        .lines()
        .find(|l| l.starts_with(stamp))
        .unwrap()
        .to_string();
    assert!(
        line.contains("DAMAGED") && line.contains("MISSING"),
        "{line}"
    );

    b.verify_set(stamp, &[])
        .failure(1)
        .stdout_contains("verification FAILED");
    let recorded = b.manifest_json(stamp);
    assert_eq!(recorded["verified"]["result"], "failed");
    assert_contains(
        &recorded["verified"]["errors"].to_string(),
        &format!("Elasticsearch snapshot {REPOSITORY}/elasticsearch_{stamp} does not exist"),
    );
    assert_eq!(owner(&manifest), (me, 65534, 0o640));

    // A manifest another user owns is not trusted to say where the password
    // goes: only --elasticsearch-url is asked. Its owner is kept too.
    std::os::unix::fs::chown(&manifest, Some(65534), None).unwrap();
    b.verify_set(stamp, &[])
        .failure(1)
        .stdout_contains("not checked at the URL the manifest records: ")
        .stdout_contains("is owned by uid 65534, not by this user or root");
    let es_arg = format!("--elasticsearch-url={}", es.base);
    b.verify_set(stamp, &[&es_arg])
        .failure(1)
        .stdout_contains("does not exist at");
    assert_eq!(owner(&manifest), (65534, 65534, 0o640));

    // Elasticsearch not answering: not "verified ok" either.
    drop(es);
    b.verify_set(stamp, &[&es_arg])
        .failure(1)
        .stdout_contains("could not be checked")
        .output_lacks("verified ok");
}

/// Issue 12 §1: `restore-prep` on a manifest whose `stamp` is `../../x`
/// extracted outside its staging folder. The set is now found through the
/// catalogue, which refuses a manifest whose names are not the ones runbook
/// writes, before anything is read or created; a `stamp` option that is not
/// a stamp is refused too.
#[test]
fn restore_prep_refuses_a_manifest_whose_names_would_escape() {
    let b = Backups::new();
    let stamp = STAMPS[0];
    b.make_archives(&[stamp]);
    b.make_complete(stamp, "ok");
    edit_manifest(&b, stamp, |m| m["stamp"] = json!("../../x"));
    let staging = b.path("staging/inner");
    let restore = |extra: &[&str]| {
        b.runbook(&["run", "restore-prep"])
            .args(["--set", &format!("manifest_path={}", b.root_arg())])
            .args(["--set", &format!("staging={}", staging.display())])
            .args(extra)
            .run()
    };
    let before = walk_files(b.dir.path());

    restore(&[])
        .failure(1)
        .stderr_contains("no complete backup set in");
    restore(&["--set", &format!("stamp={stamp}")])
        .failure(1)
        .stderr_contains(&format!(
            "records stamp `../../x`, not {stamp} as its file name says"
        ));
    restore(&["--set", "stamp=../../x"])
        .failure(1)
        .stderr_contains("`../../x` is not a stamp like 20261126_01h15m00s");
    let outside_journal = |files: Vec<PathBuf>| -> Vec<PathBuf> {
        files
            .into_iter()
            .filter(|p| !p.starts_with(b.path("journal")))
            .collect()
    };
    assert_eq!(
        outside_journal(walk_files(b.dir.path())),
        outside_journal(before),
        "nothing was written"
    );

    // The restore plan would `DELETE` the index and build paths from the
    // keyspace: `*` and `../..` there are refused the same way.
    edit_manifest(&b, stamp, |m| {
        m["stamp"] = json!(stamp);
        m["elasticsearch"]["indices"] = json!(["*"]);
        m["cassandra"]["keyspace"] = json!("../../etc");
    });
    let before = walk_files(b.dir.path());
    restore(&["--set", &format!("stamp={stamp}")])
        .failure(1)
        .stderr_contains("names index `*`, which is not a plain name")
        .stderr_contains("names keyspace `../../etc`, which is not a plain name");

    assert!(!b.path("staging").exists(), "no staging folder was made");
    assert_eq!(
        outside_journal(walk_files(b.dir.path())),
        outside_journal(before),
        "nothing was written"
    );
}
