//! The site file (`--site FILE`, `RUNBOOK_SITE`) read by every command with
//! one precedence, `runbook config`, `runbook init`'s site.toml, and the run
//! lock shared by every user of a site — all through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use runbook_test_support::Running;
use runbook_test_support::{Ran, Test, runbook_binary};

/// A workflow printing its config keys `a` to `e` into out.txt.
const FIVE_KEYS: &str = r#"let c = config(#{ a: "default", b: "default", c: "default", d: "default", e: 1 });
exec(#{ cmd: "sh", args: ["-c", `printf '%s' "$1" > out.txt`, "sh", `${c.a} ${c.b} ${c.c} ${c.d} ${c.e}`] });"#;

/// What a run of [`FIVE_KEYS`] printed: its keys `a` to `e`, in order.
fn five_keys_printed(ran: &Ran) -> String {
    std::fs::read_to_string(ran.path("out.txt"))
        .unwrap_or_else(|e| panic!("the workflow wrote no out.txt ({e}): {}", ran.stderr))
}

#[test]
fn run_takes_each_key_from_the_highest_source_set_flag_env_vars_site_default() {
    let ran = Test::new()
        .write("wf.rhai", FIVE_KEYS)
        .write(
            "site.toml",
            "b = \"site\"\nc = \"site\"\nd = \"site\"\ne = 5\n",
        )
        .write("vars.json", r#"{"c": "vars", "d": "vars"}"#)
        .args([
            "run",
            "wf.rhai",
            "--site",
            "site.toml",
            "--vars",
            "vars.json",
        ])
        .env("RUNBOOK_D", "env")
        .args(["--set", "e=7"])
        .run()
        .success();
    // a: default, b: site file, c: --vars over the site, d: env over --vars,
    // e: --set over the site file (and converted to the default's type).
    assert_eq!(five_keys_printed(&ran), "default site vars env 7");
}

#[test]
fn runbook_site_names_the_site_file_like_the_flag_and_the_flag_wins() {
    let ran = Test::new()
        .write("wf.rhai", FIVE_KEYS)
        .write("env-site.toml", "a = \"from-env-site\"\n")
        .write("flag-site.toml", "a = \"from-flag-site\"\n")
        .args(["run", "wf.rhai"])
        .env("RUNBOOK_SITE", "env-site.toml")
        .run()
        .success();
    assert_eq!(
        five_keys_printed(&ran),
        "from-env-site default default default 1"
    );
    let ran = Test::new()
        .write("wf.rhai", FIVE_KEYS)
        .write("env-site.toml", "a = \"from-env-site\"\n")
        .write("flag-site.toml", "a = \"from-flag-site\"\n")
        .args(["run", "wf.rhai", "--site", "flag-site.toml"])
        .env("RUNBOOK_SITE", "env-site.toml")
        .run()
        .success();
    assert_eq!(
        five_keys_printed(&ran),
        "from-flag-site default default default 1"
    );
}

#[test]
fn a_missing_site_file_named_explicitly_is_exit_2_in_one_line() {
    let ran = Test::new()
        .write("wf.rhai", FIVE_KEYS)
        .args(["run", "wf.rhai", "--site", "nowhere.toml"])
        .run()
        .failure(2)
        .stderr_contains(
            "error: site file nowhere.toml: no such file (named by --site; fix the path, or run `runbook init DIR` to write one)",
        );
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(!ran.path("out.txt").exists());
    Test::new()
        .args(["list"])
        .env("RUNBOOK_SITE", "/nonexistent/site.toml")
        .run()
        .failure(2)
        .stderr_contains("site file /nonexistent/site.toml: no such file (named by RUNBOOK_SITE");
}

#[test]
fn list_takes_the_manifest_folder_from_flag_env_site_in_that_order() {
    let test = || {
        let t = Test::new();
        for name in ["from-site", "from-env", "from-flag"] {
            std::fs::create_dir_all(t.path(name)).unwrap();
        }
        t.write("site.toml", "manifest_path = \"from-site\"\n")
    };
    test()
        .args(["list", "--site", "site.toml"])
        .run()
        .success()
        .stdout_contains("no backup sets in from-site\n");
    test()
        .args(["list", "--site", "site.toml"])
        .env("RUNBOOK_MANIFEST_PATH", "from-env")
        .run()
        .success()
        .stdout_contains("no backup sets in from-env\n");
    test()
        .args([
            "list",
            "--site",
            "site.toml",
            "--manifest-path",
            "from-flag",
        ])
        .env("RUNBOOK_MANIFEST_PATH", "from-env")
        .run()
        .success()
        .stdout_contains("no backup sets in from-flag\n");
    // Nothing set: the default /mnt/backup is the folder listed (or, where
    // it does not exist, the one named as missing).
    let ran = Test::new().args(["list"]).run();
    if Path::new("/mnt/backup").is_dir() {
        ran.success().stdout_contains("/mnt/backup");
    } else {
        ran.failure(2)
            .stderr_contains("cannot list manifest folder /mnt/backup: No such file or directory");
    }
    // The site's archive folders are searched too.
    let t = test().write(
        "site2.toml",
        "manifest_path = \"from-site\"\ncassandra_archive_path = \"from-env\"\n",
    );
    t.args(["list", "--site", "site2.toml"])
        .run()
        .success()
        .stdout_contains("no backup sets in from-site, from-env\n");
}

#[test]
fn an_unknown_site_key_is_refused_with_the_nearest_key_by_every_command() {
    let site = "manifets_path = \"/srv/backup\"\n";
    let message =
        "error: site file site.toml: unknown key `manifets_path` (did you mean `manifest_path`?)";
    let ran = Test::new()
        .write("wf.rhai", FIVE_KEYS)
        .write("site.toml", site)
        .args(["run", "wf.rhai", "--site", "site.toml"])
        .run()
        .failure(2)
        .stderr_contains(message);
    assert!(!ran.path("out.txt").exists(), "nothing may run");
    assert!(
        !ran.path("journal").exists(),
        "refused before the lock and the journal"
    );
    for command in [
        &["list"][..],
        &["config"],
        &["status"],
        &["verify", "--set", "20261126_01h15m00s"],
    ] {
        Test::new()
            .write("site.toml", site)
            .args(command)
            .args(["--site", "site.toml"])
            .run()
            .failure(2)
            .stderr_contains(message);
    }
}

#[test]
fn a_key_of_another_workflow_in_the_site_file_is_no_error() {
    // keep is the backup's key; this workflow does not declare it.
    let ran = Test::new()
        .write("wf.rhai", FIVE_KEYS)
        .write("site.toml", "keep = 7\na = \"site\"\n")
        .args(["run", "wf.rhai", "--site", "site.toml"])
        .env("RUNBOOK_STORAGE", "s3")
        .run()
        .success();
    assert_eq!(five_keys_printed(&ran), "site default default default 1");
}

#[test]
fn an_unknown_runbook_variable_is_refused_with_the_nearest_one() {
    Test::new()
        .args(["list", "--manifest-path", "."])
        .env("RUNBOOK_MANIFEST_PAHT", "/srv/backup")
        .run()
        .failure(2)
        .stderr_contains(
            "error: environment variable RUNBOOK_MANIFEST_PAHT names no config key of any workflow of this site (did you mean RUNBOOK_MANIFEST_PATH?)",
        );
    // The engine's own variables stay accepted.
    Test::new()
        .write("site.toml", "")
        .args(["list", "--manifest-path", "."])
        .env("RUNBOOK_LOG", "debug")
        .env("RUNBOOK_LOCK_DIR", "/run/lock/runbook")
        .env("RUNBOOK_SITE", "site.toml")
        .run()
        .success();
}

#[test]
fn a_value_of_the_wrong_case_in_the_site_file_is_refused_naming_the_allowed_values() {
    let ran = Test::new()
        .write("site.toml", "storage = \"S3\"\n")
        .args(["run", "cluster-hot-backup", "--site", "site.toml"])
        .run()
        .failure(2)
        .stderr_contains(
            "config key `storage` (from site file site.toml): \"S3\" is not allowed (allowed: \"local\", \"s3\" or \"none\")",
        );
    // Refused before any step: no step line in the journal.
    let journal = std::fs::read_dir(ran.path("journal"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "json"))
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(journal.path()).unwrap()).unwrap();
    assert_eq!(doc["steps"], serde_json::json!([]));
    // Of the wrong type, from the environment: the same, before anything.
    Test::new()
        .args(["config", "cluster-hot-backup"])
        .env("RUNBOOK_KEEP", "ten")
        .run()
        .failure(2)
        .stderr_contains(
            "config key `keep` (from environment variable RUNBOOK_KEEP): expected a whole number, got \"ten\" (allowed: 0 to 10000)",
        );
}

#[test]
fn runbook_config_prints_each_value_with_its_source_and_masks_secrets() {
    let wf = r#"let c = config(#{ host: "localhost", port: 9200, user: "", db_password: "", mode: "a" });"#;
    let ran = Test::new()
        .write("wf.rhai", wf)
        .write(
            "site.toml",
            "port = 9300\ndb_password = \"hunter2-secret\"\nmode = \"b\"\n",
        )
        .args([
            "config",
            "wf.rhai",
            "--site",
            "site.toml",
            "--set",
            "mode=c",
        ])
        .env("RUNBOOK_USER", "admin")
        .run()
        .success()
        .stdout_contains("site file: site.toml")
        .output_lacks("hunter2");
    let line = |key: &str| -> String {
        ran.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("no line for {key}:\n{}", ran.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("host"), "host \"localhost\" default");
    assert_eq!(line("port"), "port 9300 site file site.toml");
    assert_eq!(line("user"), "user \"admin\" env RUNBOOK_USER");
    assert_eq!(line("mode"), "mode \"c\" --set");
    assert_eq!(
        line("db_password"),
        "db_password \"***\" site file site.toml"
    );
    assert_eq!(line("lock_dir"), "lock_dir \"/run/lock/runbook\" default");

    let ran = Test::new()
        .write("wf.rhai", wf)
        .write(
            "site.toml",
            "port = 9300\ndb_password = \"hunter2-secret\"\n",
        )
        .args(["config", "wf.rhai", "--site", "site.toml", "--json"])
        .run()
        .success()
        .output_lacks("hunter2");
    let doc = ran.stdout_json();
    let value = |key: &str| {
        doc["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["key"] == key)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        value("port"),
        serde_json::json!({"key": "port", "value": 9300, "source": "site file site.toml"})
    );
    assert_eq!(value("db_password")["value"], "***");
    assert_eq!(doc["site_file"], "site.toml");
}

#[test]
fn init_writes_a_site_file_that_config_reads_back() {
    let test = Test::new();
    let dir = test.path("site");
    let ran = test.args(["init"]).arg(&dir).run().success();
    let site = dir.join("site.toml");
    let text = std::fs::read_to_string(&site).unwrap();
    // Every key commented out with its default: the file changes nothing yet.
    assert!(text.contains("\n# keep = 0\n"), "{text}");
    assert!(
        text.contains("\n# manifest_path = \"/mnt/backup\"\n"),
        "{text}"
    );
    assert!(
        text.contains("\n# lock_dir = \"/run/lock/runbook\"\n"),
        "{text}"
    );
    let _ = ran;
    let config = |site: &Path| {
        Test::new()
            .args(["config", "cluster-hot-backup", "--site"])
            .arg(site)
            .run()
            .success()
    };
    let shown = config(&site);
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["keep", "0", "default"]),
        "{}",
        shown.stdout
    );
    // An admin uncomments and edits lines: read back from the site file.
    let edited = text.replace("\n# keep = 0\n", "\nkeep = 5\n").replace(
        "\n# manifest_path = \"/mnt/backup\"\n",
        "\nmanifest_path = \"/srv/backup\"\n",
    );
    std::fs::write(&site, edited).unwrap();
    let shown = config(&site);
    let source = format!("site file {}", site.display());
    for (key, value) in [("keep", "5"), ("manifest_path", "\"/srv/backup\"")] {
        let expected = format!("{key} {value} {source}");
        assert!(
            shown
                .stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == expected),
            "no `{expected}` in:\n{}",
            shown.stdout
        );
    }
}

/// Where the stock workflows' defaults differ (the backup reads the
/// snapshot state every 5 s, the restore every second), the site file that
/// `init` writes says so above the line: the file is one table shared by
/// every workflow, so uncommenting the backup's default slows the restore.
#[test]
fn init_site_file_says_which_workflow_a_differing_default_belongs_to() {
    let test = Test::new();
    let dir = test.path("site");
    // The run holds the test's folder: kept to the end.
    let _init = test.args(["init"]).arg(&dir).run().success();
    let site = dir.join("site.toml");
    let text = std::fs::read_to_string(&site).unwrap();
    let note = "# elasticsearch_poll: the default differs by workflow: cluster-hot-backup \"5s\", \
                restore-prep \"1s\", cluster-hot-restore \"1s\".\n\
                # A value set here applies to every one of them (RUNBOOK_ELASTICSEARCH_POLL or \
                --set for one run).\n\
                # elasticsearch_poll = \"5s\"\n";
    assert!(text.contains(note), "{text}");
    // Only where they differ: `keep` is the same for all.
    assert_eq!(text.matches("the default differs").count(), 1, "{text}");
    assert!(text.contains("\n# keep = 0\n"), "{text}");

    // What the note says: uncommented, the value is the restore's too.
    std::fs::write(
        &site,
        text.replace(
            "\n# elasticsearch_poll = \"5s\"\n",
            "\nelasticsearch_poll = \"5s\"\n",
        ),
    )
    .unwrap();
    let shown = Test::new()
        .args(["config", "cluster-hot-restore", "--site"])
        .arg(&site)
        .run()
        .success();
    let expected = format!("elasticsearch_poll \"5s\" site file {}", site.display());
    assert!(
        shown
            .stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == expected),
        "no `{expected}` in:\n{}",
        shown.stdout
    );
}

#[test]
fn restore_prep_takes_what_the_manifest_recorded_for_keys_nobody_set() {
    // The set's manifest says the backup used another Elasticsearch than the
    // default; restore-prep (no site file, nothing set) asks that one.
    let t = Test::new();
    let stamp = "20261126_01h15m00s";
    std::fs::create_dir_all(t.path("backup")).unwrap();
    let manifest = serde_json::json!({
        "format": 1, "stamp": stamp, "created": "2026-11-26T01:16:00+0000", "complete": true,
        "cassandra": {"keyspace": "thehive"},
        "elasticsearch": {"repository": "thehive_repository", "snapshot": format!("elasticsearch_{stamp}")},
        // Missing: the run stops there, right after taking the manifest's values.
        "archives": [{"part": "cassandra", "path": format!("/nonexistent/cassandra_{stamp}.tar"),
                      "sha256": "0".repeat(64), "size": 1}],
        "config": {"elasticsearch_url": "http://127.0.0.1:9", "cassandra_keyspace": "thehive"},
    });
    let t = t.write(
        &format!("backup/backup_{stamp}.json"),
        &serde_json::to_string(&manifest).unwrap(),
    );
    let ran = t
        .args([
            "run",
            "restore-prep",
            "--set",
            "manifest_path=backup",
            "--set",
            "staging=staging",
        ])
        .run();
    ran.stderr_contains(
        "elasticsearch_url = http://127.0.0.1:9: as the set was made (its manifest)",
    );
    // Set on the command line, the manifest's value is not taken.
    let t = Test::new();
    std::fs::create_dir_all(t.path("backup")).unwrap();
    let ran = t
        .write(
            &format!("backup/backup_{stamp}.json"),
            &serde_json::to_string(&manifest).unwrap(),
        )
        .args([
            "run",
            "restore-prep",
            "--set",
            "manifest_path=backup",
            "--set",
            "staging=staging",
        ])
        .args(["--set", "elasticsearch_url=http://127.0.0.1:10"])
        .run();
    ran.stderr_lacks("as the set was made");
}

/// A workflow that holds its lock until `signals/release` exists.
/// (`signals/`, writable by every user; the workflow's own folder must not be.)
const HOLD: &str = r#"exec(#{ cmd: "sh", args: ["-c", "touch signals/started; while [ ! -e signals/release ]; do sleep 0.05; done"] });"#;

fn wait_for(path: &Path) {
    let until = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A folder other users can reach (tempdir's are 0700).
fn shared_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// `runbook run wf.rhai` in `dir` as the user `as_user` (`None`: this one),
/// with `RUNBOOK_SITE=site` and a journal folder of that user's own. A
/// [`Command`], not a [`Test`]: another user's run goes through `setpriv`;
/// [`Ran::from_command`] and [`Running::from_command`] check it the same way.
fn run_as(dir: &Path, as_user: Option<(u32, u32)>, journal: &str) -> Command {
    let journal_dir = dir.join(journal);
    std::fs::create_dir_all(&journal_dir).unwrap();
    let mut command = match as_user {
        Some((uid, gid)) => {
            nix::unistd::chown(
                &journal_dir,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .unwrap();
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                "--clear-groups".to_string(),
            ])
            .arg(runbook_binary());
            c
        }
        None => Command::new(runbook_binary()),
    };
    for (key, _) in std::env::vars() {
        if key.starts_with("RUNBOOK_") {
            command.env_remove(key);
        }
    }
    command
        .args(["run", "wf.rhai", "--journal-dir"])
        .arg(&journal_dir)
        .env("RUNBOOK_SITE", dir.join("site.toml"))
        .current_dir(dir);
    command
}

/// Fails the test, saying why, unless it runs as root (it switches users).
fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test switches users with setpriv: run it as root (the sandbox's tests do)"
    );
}

/// The `holder`'s run of [`HOLD`] (user, journal folder) takes the site's
/// lock; the `other` run starts while it is held; then the holder is
/// released and must succeed. Returns the holder's pid (setpriv execs
/// runbook: the same pid) and the other run.
fn run_while_held(
    dir: &Path,
    holder: (Option<(u32, u32)>, &str),
    other: (Option<(u32, u32)>, &str),
) -> (u32, Ran) {
    for signal in ["signals/started", "signals/release"] {
        let _ = std::fs::remove_file(dir.join(signal));
    }
    let first = Running::from_command(run_as(dir, holder.0, holder.1));
    let pid = first.pid() as u32;
    wait_for(&dir.join("signals/started"));
    let second = Ran::from_command(run_as(dir, other.0, other.1));
    std::fs::write(dir.join("signals/release"), "").unwrap();
    first.finish().success();
    (pid, second)
}

/// The second run's refusal while `first` holds the lock: exit 3, naming
/// the holder's pid, user and start time.
#[track_caller]
fn assert_refused_naming(second: Ran, pid: u32, user: &str) {
    second.failure(3).stderr_contains(&format!(
        "another run of this workflow is in progress (pid {pid}, user {user}, started 20"
    ));
}

fn write_shared_site(dir: &Path, extra: &str) -> PathBuf {
    let locks = dir.join("locks");
    std::fs::write(
        dir.join("site.toml"),
        format!("lock_dir = \"{}\"\n{extra}", locks.display()),
    )
    .unwrap();
    std::fs::write(dir.join("wf.rhai"), HOLD).unwrap();
    for file in ["site.toml", "wf.rhai"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let signals = dir.join("signals");
    std::fs::create_dir(&signals).unwrap();
    std::fs::set_permissions(&signals, std::fs::Permissions::from_mode(0o777)).unwrap();
    locks
}

#[test]
fn the_lock_is_shared_by_root_and_another_user_and_names_its_holder() {
    // The case of the issue: the nightly run as root and a manual run as an
    // admin user must not overlap. It needs two users: the test runs as root
    // and switches to `nobody` (65534) with setpriv; lock_group nogroup is
    // the group root and that user share. Not root: it cannot switch users,
    // so it fails saying so (the same-user case is tested below).
    require_root();
    let dir = shared_folder();
    let locks = write_shared_site(dir.path(), "lock_group = \"nogroup\"\n");
    let nobody = Some((65534, 65534));

    // Root holds it; the other user's run is refused, naming root.
    let (root_pid, second) = run_while_held(
        dir.path(),
        (None, "journal-root"),
        (nobody, "journal-nobody"),
    );
    assert_refused_naming(second, root_pid, "root");
    let lock = std::fs::metadata(locks.join("wf.lock")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(lock.mode() & 0o777, 0o640, "shared with lock_group only");

    // The other user holds it (reading root's lock file); root is refused.
    let (nobody_pid, second) = run_while_held(
        dir.path(),
        (nobody, "journal-nobody"),
        (None, "journal-root"),
    );
    assert_refused_naming(second, nobody_pid, "nobody");
}

#[test]
fn a_lock_file_another_user_may_not_read_is_refused_with_the_fix() {
    require_root();
    // No lock_group: root's lock file is 0600, so the other user cannot tell
    // whether root's run holds it: refused (exit 2), never run unlocked.
    let dir = shared_folder();
    write_shared_site(dir.path(), "");
    std::fs::write(dir.path().join("signals/release"), "").unwrap();
    Ran::from_command(run_as(dir.path(), None, "journal-root")).success();
    let nobody = Some((65534, 65534));
    Ran::from_command(run_as(dir.path(), nobody, "journal-nobody"))
        .failure(2)
        .stderr_contains("this user cannot read the lock file (owned by root, mode 600")
        .stderr_contains("set lock_group = \"GROUP\" in the site file");

    // A workflow root never ran: no lock file, and the other user may not
    // make one in root's 0755 folder: refused, saying how to share it.
    std::fs::remove_file(dir.path().join("locks/wf.lock")).unwrap();
    Ran::from_command(run_as(dir.path(), nobody, "journal-nobody"))
        .failure(2)
        .stderr_contains(
            "this user cannot create the lock file in the lock folder (owned by root, group root, mode 755); make the folder the lock_group's: chgrp GROUP",
        );
}

#[test]
fn two_runs_with_the_same_site_share_the_lock_whatever_their_journal_folders() {
    // The same user, two journal folders (as root and an admin have by
    // default): one lock through the site's lock_dir.
    let dir = shared_folder();
    write_shared_site(dir.path(), "");
    let (first_pid, second) = run_while_held(dir.path(), (None, "journal-a"), (None, "journal-b"));
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name;
    assert_refused_naming(second, first_pid, &me);
}

#[test]
fn a_lock_folder_others_can_write_or_a_symlinked_lock_file_is_refused() {
    let dir = shared_folder();
    let locks = write_shared_site(dir.path(), "");
    std::fs::write(dir.path().join("signals/release"), "").unwrap();
    std::fs::create_dir(&locks).unwrap();
    std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o777)).unwrap();
    Ran::from_command(run_as(dir.path(), None, "journal"))
        .failure(2)
        .stderr_contains("the lock folder is writable by every user, who could swap the lock files under a run (fix: chmod o-w");
    assert!(
        !dir.path().join("signals/started").exists(),
        "nothing may run"
    );

    // A lock file that is a symlink (to a file root must never write).
    std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me").unwrap();
    std::os::unix::fs::symlink(&target, locks.join("wf.lock")).unwrap();
    Ran::from_command(run_as(dir.path(), None, "journal"))
        .failure(2)
        .stderr_contains("the lock file is a symbolic link");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");

    // A lock folder that is a symlink.
    std::fs::remove_file(locks.join("wf.lock")).unwrap();
    std::fs::remove_dir(&locks).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &locks).unwrap();
    std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
    Ran::from_command(run_as(dir.path(), None, "journal"))
        .failure(2)
        .stderr_contains("not a folder but a symbolic link");
}

#[test]
fn verify_set_looks_for_the_manifest_where_the_site_says() {
    let t = Test::new();
    std::fs::create_dir_all(t.path("from-site")).unwrap();
    t.write("site.toml", "manifest_path = \"from-site\"\n")
        .args([
            "verify",
            "--set",
            "20261126_01h15m00s",
            "--site",
            "site.toml",
        ])
        .run()
        .failure(2)
        .stderr_contains("no manifest from-site/backup_20261126_01h15m00s.json");
}
