//! Operator experience through the real `runbook` binary: `runbook status`,
//! `run --summary-json`, `run_error()` in a `defer` closure, the stock
//! workflow's `notify_command`, what `runbook check` finds, the `http`
//! step's message for an unexpected status, the man page, shell
//! completions, and the Grafana dashboard / Prometheus alerts in docs/.
//!
//! The stock backup runs against the local sandbox (stand-in `nodetool` and
//! `cqlsh` on generated data, the Elasticsearch stand-in), started once for
//! the test that needs it.

use runbook_test_support::{Ran, Test, Workdir, cluster, support};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cluster::{Cluster, only_stamp, stderr};
use serde_json::Value;
use support::{assert_contains, repo_root, venv_bin};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The output of `command` (a tool other than runbook: sha256sum, bash,
/// python, systemd-analyze), which must succeed.
#[track_caller]
fn tool_output(mut command: Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} cannot run: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// A notify command that saves its stdin and its RUNBOOK_RESULT to files.
fn recorder(scratch_dir: &Path) -> PathBuf {
    write_executable(
        &scratch_dir.join("record-notification.sh"),
        "#!/bin/sh\ncat > \"$1\"\nprintf '%s %s' \"$RUNBOOK_RESULT\" \"$RUNBOOK_STAMP\" > \"$1.env\"\n",
    )
}

/// Writes the script `text` to `path` (mode 0755) and returns the path.
fn write_executable(path: &Path, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("a file has a folder")).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

fn sha256_of(path: &Path) -> String {
    let mut command = Command::new("sha256sum");
    command.arg(path);
    stdout(&tool_output(command))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn check_finds_string_options_closure_variables_and_unknown_config_keys() {
    let s = Workdir::new();
    s.write(
        "wf.rhai",
        r#"let cfg = config(#{ keep: 3, archive_path: "/tmp" });
exec("ls -l");
defer(|| { log_info(`${later}`); });
let later = 2;
log_info(`${cfg.archive_paht}`);
cfg.extra = 5;
log_info(`${cfg.extra} ${cfg.keep} ${cfg.keys()}`);
"#,
    );
    let err = s
        .runbook(["check", "wf.rhai"])
        .run()
        .failure(2)
        .stderr_contains(
            "error: step `exec` takes one map of options, not a string: exec(#{ ... })",
        )
        .stderr_contains("--> wf.rhai:2:1")
        .stderr_contains(
            "error: a defer closure uses `later`, which is not defined where the closure is made",
        )
        .stderr_contains("--> wf.rhai:3:24")
        .stderr_contains(
            "error: cfg.archive_paht: `archive_paht` is not a config key of this workflow \
             (did you mean `archive_path`?); config() declares: archive_path, keep",
        )
        .stderr_contains("--> wf.rhai:5:17")
        .stderr;
    // One problem each: `cfg.extra` (assigned) and `cfg.keep` are fine.
    assert_eq!(err.matches("error:").count(), 3, "{err}");

    // `run` refuses the unknown key before anything runs: exit 2, no journal.
    s.write(
        "typo.rhai",
        "let cfg = config(#{ keep: 3 });\nexec(#{ cmd: \"touch\", args: [\"ran\"] });\nlog_info(`${cfg.kep}`);\n",
    );
    s.runbook(["run", "typo.rhai"])
        .run()
        .failure(2)
        .stderr_contains(
            "error: cfg.kep: `kep` is not a config key of this workflow (did you mean `keep`?); config() declares: keep",
        )
        .stderr_contains("--> typo.rhai:3:17");
    assert!(!s.path("ran").exists(), "nothing may run");
    assert!(s.journals().is_empty(), "no journal: the run never started");

    // Run anyway, a step given a string fails with its usage, exit 2.
    s.write("string.rhai", "exec(\"touch ran\");\n");
    s.runbook(["run", "string.rhai"])
        .run()
        .failure(2)
        .stderr_contains(
            "error: step `exec` takes one map of options, not a string: exec(#{ ... })",
        )
        .stderr_contains("--> string.rhai:1:1");
    assert!(!s.path("ran").exists());

    // The stock workflows pass.
    for workflow in [
        "cluster-hot-backup",
        "cluster-hot-restore",
        "restore-prep",
        "restore-bucket",
    ] {
        s.runbook(["check", workflow]).run().success();
    }
}

/// `runbook check WORKFLOW` with a site file (`--site`, or `RUNBOOK_SITE`,
/// as `plan` and `run` read it) also checks the file: each key no workflow of
/// the site knows is one line (all of them, where a run stops at the first),
/// exit 2; a key of another workflow (the restore's `loader_parallel` for the
/// backup) is fine; a value this workflow's config() refuses is reported.
#[test]
fn check_with_a_site_file_reports_each_unknown_key_and_a_refused_value() {
    let s = Workdir::new();
    s.write(
        "site.toml",
        "kepe = 3\nelasticsearch_pol = \"2s\"\nloader_parallel = 2\nmanifest_path = \"/srv/backup\"\n",
    );
    let unknown = |key: &str, nearest: &str| {
        format!(
            "error: site file site.toml: unknown key `{key}` (did you mean `{nearest}`?); a key \
             must be a config key of a workflow (`runbook config WORKFLOW` lists them) or an \
             engine setting (journal_dir, journal_group, lock_dir, lock_group)"
        )
    };
    let ran = s
        .runbook(["check", "cluster-hot-backup", "--site", "site.toml"])
        .run()
        .failure(2);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(
        lines,
        [
            unknown("elasticsearch_pol", "elasticsearch_poll"),
            unknown("kepe", "keep")
        ],
        "{}",
        ran.stderr
    );
    assert!(!ran.stdout.contains("ok"), "{}", ran.stdout);

    // Named by RUNBOOK_SITE: the same.
    s.runbook(["check", "cluster-hot-restore"])
        .env("RUNBOOK_SITE", "site.toml")
        .run()
        .failure(2)
        .stderr_contains(&unknown("kepe", "keep"));

    // Keys fixed, a value of the wrong type: refused, naming the key and the file.
    s.write(
        "site.toml",
        "keep = \"three\"\nloader_parallel = 2\nmanifest_path = \"/srv/backup\"\n",
    );
    s.runbook(["check", "cluster-hot-backup", "--site", "site.toml"])
        .run()
        .failure(2)
        .stderr_contains(
            "error: config key `keep` (from site file site.toml): expected a whole number, \
             got \"three\" (allowed: 0 to 10000)",
        );

    // A clean site file, a restore key in it: ok for the backup and the restore.
    s.write("site.toml", "keep = 3\nloader_parallel = 2\n");
    for workflow in ["cluster-hot-backup", "cluster-hot-restore"] {
        s.runbook(["check", workflow, "--site", "site.toml"])
            .run()
            .success();
    }
}

#[test]
fn check_accepts_a_closure_made_inside_a_closure_and_still_finds_an_undefined_variable_in_it() {
    let s = Workdir::new();
    s.write(
        "nested.rhai",
        r#"fn run_it(f) { f.call() }
let cfg = #{ a: 1 };
let fine = || run_it(|| cfg.a + 1);
let bad = || run_it(|| missing_here + 1);
fn in_a_function(cfg) {
    let fine = || run_it(|| cfg.a);
    let bad = || run_it(|| cfg.a + missing_there);
    fine.call() + bad.call()
}
"#,
    );
    let err = s
        .runbook(["check", "nested.rhai"])
        .run()
        .failure(2)
        .stderr_contains(
            "error: a closure uses `missing_here`, which is not defined where the closure is made",
        )
        .stderr_contains("--> nested.rhai:4:24")
        .stderr_contains(
            "error: a closure uses `missing_there`, which is not defined where the closure is made",
        )
        .stderr_lacks("`cfg`")
        .stderr;
    assert_eq!(err.matches("error:").count(), 2, "{err}");
}

/// Answers one HTTP request with `status` and `body`, returns what it was sent.
fn answer_once(status: &str, body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let status = status.to_string();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_millis(500)))
            .unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buffer[..n]);
            if request.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(reply.as_bytes()).unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    (port, handle)
}

#[test]
fn http_expect_failure_says_what_was_expected_and_what_came_back_masked() {
    let s = Workdir::new();
    let (port, server) = answer_once(
        "418 I'm a teapot",
        "hook refused:\n  token Tok-Secret-77 is not valid here",
    );
    s.write(
        "hook.rhai",
        &format!(
            r#"let token = secret("HOOK_TOKEN");
http(#{{ url: "http://127.0.0.1:{port}/hook", method: "POST", body: "x", expect: [200, 204],
        headers: #{{ "X-Token": token }}, label: "webhook" }});
"#
        ),
    );
    let ran = s
        .runbook(["run", "hook.rhai"])
        .env("HOOK_TOKEN", "Tok-Secret-77")
        .run();
    let request = server.join().unwrap();
    ran.failure(1)
        .stderr_contains(&format!(
            "error: step http (webhook) failed: POST http://127.0.0.1:{port}/hook: HTTP 418, \
             expected 200 or 204; answer: hook refused: token *** is not valid here"
        ))
        .output_lacks("Tok-Secret-77");
    // The secret went where it was meant to: in the header, to the server.
    assert_contains(&request.to_lowercase(), "x-token: tok-secret-77");
}

#[test]
fn summary_json_and_run_error_in_defer_on_failure_and_success() {
    let s = Workdir::new();
    let notify = recorder(s.root());
    let workflow = r#"let cfg = config(#{ fail: false, notify_command: "", notify_on_success: false, notify_timeout: "2m" });
defer(|| {
    let e = run_error();
    let text = if e == () { "no error" } else { `${e.step}|${e.label}|${e.kind}|${e.message}|${e.position}` };
    write_file("seen-by-defer.txt", text, 384);
});
exec(#{ cmd: "sh", args: ["-c", if cfg.fail { "exit 3" } else { "true" }], label: "maybe fail" });
"#;
    s.write("wf.rhai", workflow);
    let notify_line = format!("{} {}", notify.display(), s.path("got.json").display());

    s.runbook([
        "run",
        "wf.rhai",
        "--set",
        "fail=true",
        "--summary-json",
        "failed.json",
        "--set",
        &format!("notify_command={notify_line}"),
    ])
    .run()
    .failure(1);
    assert_eq!(
        std::fs::read_to_string(s.path("seen-by-defer.txt")).unwrap(),
        "exec|maybe fail|exit_code|`sh` exited with code 3|wf.rhai:7:1"
    );
    let summary = read_json(&s.path("failed.json"));
    assert_eq!(summary["format"], "runbook-run-summary/1");
    assert_eq!(summary["workflow"], "wf");
    assert_eq!(summary["result"], "failed");
    assert_eq!(summary["error"]["step"], "exec");
    assert_eq!(summary["error"]["label"], "maybe fail");
    assert_eq!(summary["error"]["kind"], "exit_code");
    assert_eq!(summary["error"]["message"], "`sh` exited with code 3");
    assert_eq!(summary["steps"][0]["label"], "maybe fail");
    assert_eq!(summary["steps"][0]["status"], "failed");
    assert!(summary["duration_seconds"].as_f64().unwrap() > 0.0);
    let journal = PathBuf::from(summary["journal"].as_str().unwrap());
    assert!(s.root().join(&journal).exists(), "{journal:?}");
    // The notification got the same summary, and the result in its environment.
    assert_eq!(read_json(&s.path("got.json")), summary);
    assert_eq!(
        std::fs::read_to_string(s.path("got.json.env")).unwrap(),
        "failed "
    );

    // Success: no notification unless notify_on_success; the summary on stdout with `-`.
    std::fs::remove_file(s.path("got.json")).unwrap();
    let ran = s
        .runbook([
            "run",
            "wf.rhai",
            "--summary-json",
            "-",
            "--set",
            &format!("notify_command={notify_line}"),
        ])
        .run()
        .success();
    assert_eq!(
        std::fs::read_to_string(s.path("seen-by-defer.txt")).unwrap(),
        "no error"
    );
    let summary = ran.stdout_json();
    assert_eq!(summary["result"], "success");
    assert_eq!(summary["error"], Value::Null);
    assert!(
        !s.path("got.json").exists(),
        "notified after a success without notify_on_success"
    );
    s.runbook([
        "run",
        "wf.rhai",
        "--set",
        &format!("notify_command={notify_line}"),
        "--set",
        "notify_on_success=true",
    ])
    .run()
    .success();
    assert_eq!(read_json(&s.path("got.json"))["result"], "success");

    // A notify command that fails is logged; the run's result stands.
    s.runbook(["run", "wf.rhai", "--set", "notify_command=false"])
        .run()
        .success();
    s.runbook([
        "run",
        "wf.rhai",
        "--set",
        "fail=true",
        "--set",
        "notify_command=false",
    ])
    .run()
    .failure(1)
    .stderr_contains(
        "notify_command `false` failed: exited with code 1 (the run's result stands: failed)",
    );

    // A notify command that hangs is killed (with what it started) at notify_timeout.
    let started = std::time::Instant::now();
    s.runbook([
        "run",
        "wf.rhai",
        "--set",
        "fail=true",
        "--set",
        "notify_command=sh -c 'sleep 30 & sleep 30'",
        "--set",
        "notify_timeout=1s",
    ])
    .run()
    .failure(1)
    .stderr_contains("failed: killed after 1s (the run's result stands: failed)");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // An unwritable --summary-json folder fails before the run.
    s.runbook([
        "run",
        "wf.rhai",
        "--summary-json",
        "/proc/no-such-folder/s.json",
    ])
    .run()
    .failure(2)
    .stderr_contains(
        "error: --summary-json /proc/no-such-folder/s.json: cannot write in /proc/no-such-folder",
    );
}

#[test]
fn status_without_journal_or_sets_exits_1_and_says_so() {
    let s = Workdir::new();
    std::fs::create_dir(s.path("backup")).unwrap();
    let status = |extra: &[&str]| {
        s.runbook(["status"]).args(extra).args([
            "--manifest-path",
            "backup",
            "--journal-dir",
            "journal",
        ])
    };
    status(&[])
        .run()
        .failure(1)
        .stdout_contains("last run:     none recorded for cluster-hot-backup")
        .stdout_contains("newest set:   NONE complete and verified (max age 1d 2h: STALE)")
        .stderr_contains("warning: no journal folder");

    // A journal left `running` by a process that is gone: a crashed run.
    std::fs::create_dir(s.path("journal")).unwrap();
    let host = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::write(
        s.path("journal/20261201T011500.000Z-cluster-hot-backup.json"),
        serde_json::json!({
            "workflow": "stock:cluster-hot-backup.rhai", "workflow_sha256": "", "engine_version": "0.1.0",
            "host": host, "pid": 999_999_999u32, "dry_run": false,
            "started": "2026-12-01T01:15:00.000Z", "ended": null, "status": "running", "error": null,
            "config": {}, "steps": [], "compensations": []
        })
        .to_string(),
    )
    .unwrap();
    let crashed = status(&["--json"]).run().failure(1).stdout_json();
    assert_eq!(crashed["last_run"]["result"], "crashed", "{crashed}");
    assert_eq!(crashed["newest_complete_set"], Value::Null);

    Test::new()
        .args(["status", "--max-age", "soon"])
        .run()
        .failure(2)
        .stderr_contains("invalid value 'soon' for '--max-age <DURATION>'");
    Test::new()
        .args(["status", "--manifest-path"])
        .arg(s.path("missing"))
        .run()
        .failure(2)
        .stderr_contains("--manifest-path")
        .stderr_contains(&s.path("missing").display().to_string());
}

/// `runbook status` of the sandbox's backup folder and journal, with `extra`
/// arguments, run to the end.
fn status_of(cluster: &Cluster, extra: &[&str]) -> Ran {
    Test::at(cluster.dir.path())
        .args(["status", "--manifest-path"])
        .arg(cluster.path("backup"))
        .arg("--journal-dir")
        .arg(cluster.dir.path().join("journal"))
        .args(extra)
        .run()
}

#[test]
fn stock_backup_summary_notification_and_status_after_a_success_and_a_failure() {
    let cluster = Cluster::start(&[]);
    let notify = recorder(cluster.dir.path());
    let got = cluster.dir.path().join("got.json");
    let notify_set = format!("notify_command={} {}", notify.display(), got.display());
    let summary_path = cluster.dir.path().join("summary-ok.json");

    // 1. A succeeding stock backup, notify_on_success.
    cluster
        .runbook(&[
            "run",
            "cluster-hot-backup",
            "--summary-json",
            summary_path.to_str().unwrap(),
            "--set",
            &notify_set,
            "--set",
            "notify_on_success=true",
        ])
        .run()
        .success();
    let backup = cluster.path("backup");
    let stamp = only_stamp(&backup, "backup_", ".json");
    let summary = read_json(&summary_path);
    assert_eq!(summary["result"], "success");
    assert_eq!(summary["workflow"], "cluster-hot-backup");
    assert_eq!(summary["stamp"], stamp.as_str());
    assert_eq!(summary["error"], Value::Null);
    let archives = summary["archives"].as_array().unwrap();
    let mut names: Vec<String> = archives
        .iter()
        .map(|a| {
            Path::new(a["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            format!("cassandra_{stamp}.tar"),
            format!("files_{stamp}.tar")
        ]
    );
    let mut total = 0;
    for archive in archives {
        let path = PathBuf::from(archive["path"].as_str().unwrap());
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert_eq!(archive["bytes"], bytes, "{path:?}");
        assert_eq!(archive["sha256"], sha256_of(&path).as_str(), "{path:?}");
        total += bytes;
    }
    assert_eq!(summary["archive_bytes"], total);
    let steps = summary["steps"].as_array().unwrap();
    assert!(steps.len() > 5, "{steps:?}");
    let tar = steps
        .iter()
        .find(|s| s["step"] == "tar_dir")
        .expect("a tar_dir step");
    assert!(tar["bytes"].as_u64().unwrap() > 0);
    assert!(tar["duration_seconds"].as_f64().is_some());
    for step in steps
        .iter()
        .filter(|s| s["step"] == "tar_dir" || s["step"] == "verify_archive")
    {
        assert_eq!(step["status"], "ok", "{step}");
    }
    assert_eq!(read_json(&got), summary, "the notification got the summary");
    assert_eq!(
        std::fs::read_to_string(format!("{}.env", got.display())).unwrap(),
        format!("success {stamp}")
    );

    // 2. status: fresh, the set and the run.
    let status = status_of(&cluster, &["--json"]).success().stdout_json();
    assert_eq!(status["last_run"]["result"], "success");
    assert_eq!(status["last_run"]["failed_step"], Value::Null);
    assert_eq!(status["newest_complete_set"]["stamp"], stamp.as_str());
    assert!(
        status["newest_complete_set"]["verified"]
            .as_str()
            .unwrap()
            .starts_with("ok ")
    );
    assert_eq!(status["sets"]["complete"], 1);
    assert_eq!(status["sets"]["verified"], 1);
    assert_eq!(status["fresh"], true);
    let folders = status["folders"].as_array().unwrap();
    let cassandra_folder = folders
        .iter()
        .find(|f| f["path"].as_str().unwrap().ends_with("cassandra"))
        .expect("the cassandra archive folder");
    let cassandra = backup.join(format!("cassandra/cassandra_{stamp}.tar"));
    let sidecar = backup.join(format!("cassandra/cassandra_{stamp}.tar.sha256"));
    assert_eq!(
        cassandra_folder["used_bytes"],
        std::fs::metadata(&cassandra).unwrap().len() + std::fs::metadata(&sidecar).unwrap().len()
    );
    assert!(cassandra_folder["free_bytes"].as_u64().unwrap() > 0);

    // The text form, and --max-age as a probe.
    status_of(&cluster, &[])
        .success()
        .stdout_contains("last run:     SUCCESS stock:cluster-hot-backup.rhai")
        .stdout_contains(&format!("newest set:   {stamp} complete, verified ok "))
        .stdout_contains("(max age 1d 2h: ok)")
        .stdout_contains("sets kept:    1 set: 1 complete (1 verified), 0 incomplete, 0 damaged")
        .stdout_contains(&format!(
            "space:        {}: ",
            backup.join("cassandra").display()
        ));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let stale = status_of(&cluster, &["--json", "--max-age", "2s"])
        .failure(1)
        .stdout_json();
    assert_eq!(stale["fresh"], false);

    // 3. A failing stock backup: the summary and the notification carry the
    // error, status shows the failing step and still the earlier set.
    std::fs::remove_file(&got).unwrap();
    cluster.knob("snapshot-fails", "partial");
    let failed_path = cluster.dir.path().join("summary-failed.json");
    cluster
        .runbook(&[
            "run",
            "cluster-hot-backup",
            "--summary-json",
            failed_path.to_str().unwrap(),
            "--set",
            &notify_set,
        ])
        .run()
        .failure(1);
    let summary = read_json(&failed_path);
    assert_eq!(summary["result"], "failed");
    assert_eq!(summary["error"]["step"], "exec");
    assert_eq!(summary["error"]["label"], "nodetool snapshot");
    assert_eq!(summary["error"]["kind"], "exit_code");
    assert_contains(
        summary["error"]["message"].as_str().unwrap(),
        "`nodetool snapshot` exited with code 2",
    );
    assert_eq!(summary["archives"], Value::Array(vec![]));
    assert_eq!(read_json(&got), summary);

    // Exit 0: the earlier set is still fresh.
    let status = status_of(&cluster, &["--json"]).success().stdout_json();
    assert_eq!(status["last_run"]["result"], "failed");
    assert_eq!(
        status["last_run"]["failed_step"]["label"],
        "nodetool snapshot"
    );
    assert_contains(
        status["last_run"]["failed_step"]["error"].as_str().unwrap(),
        "exited with code 2",
    );
    assert_eq!(status["newest_complete_set"]["stamp"], stamp.as_str());
    status_of(&cluster, &[])
        .success()
        .stdout_contains("  failed at:  step exec (nodetool snapshot) at stock:lib/thehive.rhai:");
}

#[test]
fn man_page_names_no_page_that_is_not_installed_and_man_dir_writes_them_all() {
    let page = Test::new()
        .arg("man")
        .run()
        .success()
        .stdout_contains(".SH SUBCOMMANDS")
        .stdout_contains("runbook run")
        .stdout;
    assert!(!page.contains("runbook\\-run(1)"), "{page}");
    assert!(!page.contains("(1)"), "a reference to another page: {page}");

    let ran = Test::new().args(["man", "--dir", "pages"]).run().success();
    let dir = ran.path("pages");
    let main = std::fs::read_to_string(dir.join("runbook.1")).unwrap();
    // Every page the main page names exists.
    let referenced = regex::Regex::new(r"runbook\\-([a-z]+)\(1\)").unwrap();
    let mut count = 0;
    for name in referenced.captures_iter(&main) {
        let page = dir.join(format!("runbook-{}.1", &name[1]));
        assert!(page.exists(), "{} is named but missing", page.display());
        count += 1;
    }
    assert!(count >= 10, "{main}");
    let run_page = std::fs::read_to_string(dir.join("runbook-run.1")).unwrap();
    assert!(run_page.contains("summary\\-json"), "{run_page}");
}

/// What bash completes for `words` (the last one being completed) with the
/// script `runbook completions bash` prints.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source {}\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\n\
         _runbook runbook \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let mut bash = Command::new("bash");
    bash.arg("--norc").arg("-c").arg(program);
    stdout(&tool_output(bash))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_stock_workflow_names_and_step_names() {
    let s = Workdir::new();
    let script = s.write(
        "runbook.bash",
        &s.runbook(["completions", "bash"])
            .run()
            .success()
            .stdout_contains("complete -F _runbook")
            .stdout,
    );

    for command in ["run", "plan", "check"] {
        assert_eq!(
            bash_completes(&script, &["runbook", command, "cluster-hot-b"]),
            vec!["cluster-hot-backup"],
            "{command}"
        );
        let mut restore = bash_completes(&script, &["runbook", command, "restore-"]);
        restore.sort();
        assert_eq!(restore, vec!["restore-bucket", "restore-prep"], "{command}");
    }
    assert_eq!(
        bash_completes(&script, &["runbook", "steps", "tar"]),
        vec!["tar_dir"]
    );
    let mut es = bash_completes(&script, &["runbook", "steps", "es_s"]);
    es.sort();
    assert_eq!(es, vec!["es_server", "es_snapshot"]);
    // Paths are still taken as workflows (bash falls back to file names).
    s.write("mine.rhai", "log_info(\"mine\");\n");
    s.runbook(["run", "mine.rhai"])
        .run()
        .success()
        .stderr_contains("INFO mine\n")
        .stderr_contains("mine.rhai succeeded");
    s.runbook(["steps", "no_such"])
        .run()
        .failure(2)
        .stderr_contains("error: no step named `no_such`; steps: exec, tar_dir, ");
}

/// The metric names a PromQL/JSON text uses (`runbook_...`).
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    regex::Regex::new(r"\brunbook_[a-z_]+\b")
        .unwrap()
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect()
}

#[test]
fn metric_names_in_the_dashboard_and_alerts_are_written_by_a_run() {
    let s = Workdir::new();
    s.write("data/sub/a.txt", "some data\n");
    s.write(
        "wf.rhai",
        r#"tar_dir(#{ src: "data", dest: "cassandra_20261201_01h15m00s.tar", label: "archive" });"#,
    );
    s.runbook(["run", "wf.rhai", "--metrics-file", "runbook.prom"])
        .run()
        .success();
    let written = metric_names(&std::fs::read_to_string(s.path("runbook.prom")).unwrap());
    assert!(written.contains("runbook_archive_bytes"), "{written:?}");

    let dashboard_text =
        std::fs::read_to_string(repo_root().join("docs/grafana-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("the dashboard is JSON");
    let expressions: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(expressions.len() >= 6, "{expressions:?}");
    let alerts_text =
        std::fs::read_to_string(repo_root().join("docs/prometheus-alerts.yml")).unwrap();
    for (file, text) in [
        ("docs/grafana-dashboard.json", dashboard_text.as_str()),
        ("docs/prometheus-alerts.yml", alerts_text.as_str()),
    ] {
        let used = metric_names(text);
        assert!(!used.is_empty(), "{file}");
        let unknown: Vec<&String> = used.difference(&written).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics no run writes: {unknown:?} (written: {written:?})"
        );
    }
    // The alert file is YAML Prometheus can load: groups of named rules,
    // each with an expression; the three alerts #17 asks for are there.
    let mut python = Command::new(venv_bin("python"));
    python
        .arg("-c")
        .arg(
            "import sys, yaml, json\n\
             doc = yaml.safe_load(open(sys.argv[1]))\n\
             rules = [r for g in doc['groups'] for r in g['rules']]\n\
             assert all(r['alert'] and r['expr'] for r in rules), rules\n\
             print(json.dumps({r['alert']: r['expr'] for r in rules}))\n",
        )
        .arg(repo_root().join("docs/prometheus-alerts.yml"));
    let alerts: Value = serde_json::from_slice(&tool_output(python).stdout).unwrap();
    assert_contains(
        alerts["RunbookNoCompleteBackupSet"].as_str().unwrap(),
        "> 26 * 3600",
    );
    assert_contains(
        alerts["RunbookLastRunFailed"].as_str().unwrap(),
        "runbook_last_run_success == 0",
    );
    assert_contains(
        alerts["RunbookArchiveShrank"].as_str().unwrap(),
        "runbook_archive_bytes < 0.5 * (runbook_archive_bytes offset 1d)",
    );
}

/// The PATH systemd gives a service that sets none (systemd.exec(5),
/// "Environment variables in spawned processes").
const SYSTEMD_DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin";

/// The `Environment=` assignments and the `ExecStart=` words of a unit file
/// (quotes removed like systemd does; `%%` and `$$` as one character).
fn unit_environment_and_exec_start(unit: &str) -> (Vec<(String, String)>, Vec<String>) {
    let unescape = |word: String| word.replace("%%", "%").replace("$$", "$");
    let mut environment = Vec::new();
    let mut exec_start = Vec::new();
    for line in unit.lines().map(str::trim) {
        if let Some(value) = line.strip_prefix("Environment=") {
            for assignment in shlex::split(value).expect("an Environment= line splits") {
                let (key, value) = assignment.split_once('=').expect("KEY=VALUE");
                environment.push((key.to_string(), unescape(value.to_string())));
            }
        } else if let Some(command) = line.strip_prefix("ExecStart=") {
            assert!(exec_start.is_empty(), "one ExecStart= line: {unit}");
            assert!(!command.ends_with('\\'), "a continued ExecStart=: {unit}");
            exec_start = shlex::split(command)
                .expect("the ExecStart= line splits")
                .into_iter()
                .map(unescape)
                .collect();
        }
    }
    (environment, exec_start)
}

/// A `nodetool`/`cqlsh` that knows its cluster without any environment, as
/// the real ones do: the sandbox's stand-in, told where its generated data is.
fn wrap_standin(cluster: &Cluster, name: &str, into: &Path) -> PathBuf {
    let env = cluster.record["env"].as_object().unwrap();
    let mut exports = String::new();
    for key in ["SANDBOX_CASSANDRA_DATA", "SANDBOX_STATE"] {
        exports.push_str(&format!(
            "{key}={} ",
            shlex::try_quote(env[key].as_str().unwrap()).unwrap()
        ));
    }
    let standin = repo_root().join("tests/sandbox/bin").join(name);
    write_executable(
        &into.join(name),
        &format!(
            "#!/bin/sh\nexec env {exports}{} \"$@\"\n",
            shlex::try_quote(standin.to_str().unwrap()).unwrap()
        ),
    )
}

/// The site's settings for `site_dir`'s copy of the stock backup: in the
/// config() defaults of the workflow `init` wrote (what an admin edits today)
/// and in `site.toml` (the site file the unit names through RUNBOOK_SITE).
fn configure_site(site_dir: &Path, settings: &serde_json::Map<String, Value>) {
    let workflow_path = site_dir.join("cluster-hot-backup.rhai");
    let mut workflow = std::fs::read_to_string(&workflow_path).unwrap();
    let mut toml =
        String::from("# The sandbox's site, for the test of the units `runbook init` writes.\n");
    for (key, value) in settings {
        let text = value.as_str().expect("string settings");
        let default = regex::Regex::new(&format!(r#"(?m)^(\s+{key}: )"[^"]*""#)).unwrap();
        assert!(default.is_match(&workflow), "no string default for {key}");
        let literal = serde_json::to_string(text).unwrap();
        workflow = default
            .replace(&workflow, |c: &regex::Captures| {
                format!("{}{literal}", &c[1])
            })
            .into_owned();
        toml.push_str(&format!("{key} = {literal}\n"));
    }
    std::fs::write(&workflow_path, workflow).unwrap();
    std::fs::write(site_dir.join("site.toml"), toml).unwrap();
}

#[test]
fn init_writes_units_whose_exec_start_backs_up_the_sandbox_with_only_their_environment() {
    let cluster = Cluster::start(&["--storage", "s3"]);
    let root = cluster.dir.path();
    let (home, site, state) = (root.join("home"), root.join("site"), root.join("state"));

    // The admin's MinIO-client alias, as `mcli alias set` keeps it: the run
    // under systemd must find it through the HOME/MC_CONFIG_DIR the unit sets.
    let host = cluster.record["env"]["MC_HOST_th_minio"].as_str().unwrap();
    let url = regex::Regex::new(r"^(https?)://([^:]+):([^@]+)@(.+)$")
        .unwrap()
        .captures(host)
        .expect("MC_HOST_th_minio is http://KEY:SECRET@HOST:PORT");
    std::fs::create_dir_all(home.join(".mcli")).unwrap();
    std::fs::write(
        home.join(".mcli/config.json"),
        serde_json::json!({"version": "10", "aliases": {"th_minio": {
            "url": format!("{}://{}", &url[1], &url[4]), "accessKey": &url[2],
            "secretKey": &url[3], "api": "s3v4", "path": "auto"}}})
        .to_string(),
    )
    .unwrap();

    Test::at(root)
        .arg("init")
        .arg(&site)
        .env("HOME", &home)
        .env_remove("MC_CONFIG_DIR")
        .env("RUNBOOK_JOURNAL_DIR", &state)
        .env("RUNBOOK_LOCK_DIR", state.join("locks"))
        .run()
        .success()
        .stdout_contains("systemctl enable --now runbook-thehive-backup.timer")
        .stdout_contains(&format!("wrote {}", site.join("runbook.cron").display()));

    let service_path = site.join("systemd/runbook-thehive-backup.service");
    let timer_path = site.join("systemd/runbook-thehive-backup.timer");
    let service = std::fs::read_to_string(&service_path).unwrap();
    let (environment, exec_start) = unit_environment_and_exec_start(&service);
    let get = |key: &str| {
        environment
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no Environment={key}=...:\n{service}"))
    };
    assert_eq!(
        get("RUNBOOK_SITE"),
        site.join("site.toml").to_str().unwrap()
    );
    assert_eq!(get("HOME"), home.to_str().unwrap());
    assert_eq!(get("MC_CONFIG_DIR"), home.join(".mcli").to_str().unwrap());
    assert_eq!(get("RUNBOOK_JOURNAL_DIR"), state.to_str().unwrap());
    // The lock folder is named on its own: with RUNBOOK_JOURNAL_DIR alone the
    // lock would live in the journal folder, apart from an admin's manual run.
    assert_eq!(
        get("RUNBOOK_LOCK_DIR"),
        state.join("locks").to_str().unwrap()
    );
    assert_eq!(
        get("RUNBOOK_METRICS_FILE"),
        state.join("runbook.prom").to_str().unwrap()
    );
    assert_eq!(
        exec_start,
        vec![
            support::runbook_binary().to_str().unwrap().to_string(),
            "run".to_string(),
            site.join("cluster-hot-backup.rhai")
                .to_str()
                .unwrap()
                .to_string(),
        ]
    );
    assert!(
        state.is_dir(),
        "init creates the journal folder the unit names"
    );
    let cron = std::fs::read_to_string(site.join("runbook.cron")).unwrap();
    assert_contains(
        &cron,
        &format!(
            "{} run {} -q --log-format json",
            support::runbook_binary().display(),
            site.join("cluster-hot-backup.rhai").display()
        ),
    );
    assert_contains(
        &cron,
        &format!("\nRUNBOOK_SITE={}\n", site.join("site.toml").display()),
    );

    // systemd's own check of both units (the binary they name exists).
    let analyze = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&service_path)
        .arg(&timer_path)
        .output()
        .unwrap_or_else(|e| {
            panic!("systemd-analyze cannot run ({e}): install the Debian package `systemd` (.ci/run does)")
        });
    assert!(
        analyze.status.success() && !stderr(&analyze).contains("runbook-thehive-backup"),
        "systemd-analyze verify: {}{}",
        stdout(&analyze),
        stderr(&analyze)
    );

    // The site: the sandbox's settings, with nodetool and cqlsh that need
    // no environment of their own.
    let mut settings = read_json(&cluster.path("vars"))
        .as_object()
        .unwrap()
        .clone();
    settings.insert(
        "nodetool".into(),
        wrap_standin(&cluster, "nodetool", root)
            .to_str()
            .unwrap()
            .into(),
    );
    settings.insert(
        "cqlsh".into(),
        wrap_standin(&cluster, "cqlsh", root)
            .to_str()
            .unwrap()
            .into(),
    );
    settings.insert("elasticsearch_poll".into(), "1s".into());
    configure_site(&site, &settings);

    // The ExecStart= line, run as systemd runs it: from /, with only the
    // unit's Environment= and the PATH systemd sets. (Through `env -i`, not
    // a `Test`: a Test starts from the test's own environment and keeps its
    // journal in its folder, and what is checked here is that the unit's
    // words alone are enough; `Ran::from_command` checks it the same way.)
    let mut command = Command::new("env");
    command
        .arg("-i")
        .arg(format!("PATH={SYSTEMD_DEFAULT_PATH}"));
    for (key, value) in &environment {
        command.arg(format!("{key}={value}"));
    }
    command.args(&exec_start).current_dir("/");
    Ran::from_command(command).success();
    let backup = cluster.path("backup");
    let stamp = only_stamp(&backup, "backup_", ".json");
    assert!(backup.join(format!("minio/minio_{stamp}.tar")).is_file());
    assert!(
        backup
            .join(format!("cassandra/cassandra_{stamp}.tar"))
            .is_file()
    );
    let journals: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with("-cluster-hot-backup.json")
        })
        .collect();
    assert_eq!(
        journals.len(),
        1,
        "the run's journal is in the unit's journal folder"
    );
    let metrics = std::fs::read_to_string(state.join("runbook.prom")).unwrap();
    assert_contains(
        &metrics,
        "runbook_last_run_success{workflow=\"cluster-hot-backup\"} 1",
    );
}

/// A stand-in for systemd 252's `systemctl show UNIT --property=...` (what
/// `runbook status` asks; no systemd runs in a test). It answers as the real
/// one does: one `KEY=VALUE` line per property, the timer's own properties
/// before the unit's, a timestamp as `%a %Y-%m-%d %H:%M:%S %Z` in the caller's
/// `TZ`, an unset timestamp empty or left out; and, on a machine not booted
/// with systemd, the real error on stderr with exit 1. `STANDIN_TIMER` picks
/// the answer; every call's arguments go to `STANDIN_LOG`.
const SYSTEMCTL_STANDIN: &str = r#"#!/bin/sh
# Stand-in for `systemctl show` (systemd 252 output format), for tests only.
printf '%s\n' "$*" >> "$STANDIN_LOG"
case "$STANDIN_TIMER" in
  scheduled)
    echo "NextElapseUSecRealtime=$(date -d '+3 hours' '+%a %Y-%m-%d %H:%M:%S %Z')"
    echo "LoadState=loaded"
    echo "ActiveState=active" ;;
  inactive)
    echo "NextElapseUSecRealtime="
    echo "LoadState=loaded"
    echo "ActiveState=inactive" ;;
  not-found)
    echo "LoadState=not-found"
    echo "ActiveState=inactive" ;;
  no-systemd)
    echo "System has not been booted with systemd as init system (PID 1). Can't operate." >&2
    echo "Failed to connect to bus: Host is down" >&2
    exit 1 ;;
esac
"#;

#[test]
fn status_shows_the_next_timer_run_when_systemd_knows_it_and_unknown_otherwise() {
    let s = Workdir::new();
    std::fs::create_dir(s.path("backup")).unwrap();
    write_executable(&s.path("bin/systemctl"), SYSTEMCTL_STANDIN);
    std::fs::create_dir(s.path("empty-bin")).unwrap();
    let path_with_standin = format!("{}:/usr/bin:/bin", s.path("bin").display());
    let status = |answer: &str, path: &str, json: bool| {
        let mut test = s
            .runbook([
                "status",
                "--manifest-path",
                "backup",
                "--journal-dir",
                "journal",
            ])
            .env("PATH", path)
            .env("STANDIN_TIMER", answer)
            .env("STANDIN_LOG", s.path("systemctl.log"));
        if json {
            test = test.arg("--json");
        }
        // No set: exit 1 (stale), whatever systemd says.
        test.run().failure(1)
    };
    let next = |answer: &str, path: &str| -> Value {
        status(answer, path, true).stdout_json()["next_timer_run"].clone()
    };

    let scheduled = next("scheduled", &path_with_standin);
    assert_eq!(scheduled["state"], "scheduled", "{scheduled}");
    assert_eq!(scheduled["timer"], "runbook-thehive-backup.timer");
    let in_seconds = scheduled["in_seconds"].as_i64().unwrap();
    assert!(
        (3 * 3600 - 120..=3 * 3600).contains(&in_seconds),
        "{scheduled}"
    );
    let at = chrono::DateTime::parse_from_rfc3339(scheduled["next"].as_str().unwrap()).unwrap();
    assert!((at.to_utc() - chrono::Utc::now()).num_seconds() > 3 * 3600 - 120);
    assert_eq!(
        std::fs::read_to_string(s.path("systemctl.log")).unwrap(),
        "show runbook-thehive-backup.timer --property=LoadState --property=ActiveState --property=NextElapseUSecRealtime\n"
    );
    let text = status("scheduled", &path_with_standin, false).stdout;
    assert!(
        regex::Regex::new(r"\nnext run:     \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in (2h 59m|3h 0m)\), runbook-thehive-backup.timer\n")
            .unwrap()
            .is_match(&text),
        "{text}"
    );

    let inactive = next("inactive", &path_with_standin);
    assert_eq!(inactive["state"], "inactive");
    assert_eq!(inactive["next"], Value::Null);
    assert_contains(
        inactive["detail"].as_str().unwrap(),
        "no run scheduled: systemctl enable --now runbook-thehive-backup.timer",
    );
    assert_eq!(next("not-found", &path_with_standin)["state"], "not-loaded");

    // No systemd running, or none at all: unknown, not an error.
    status("no-systemd", &path_with_standin, false).stdout_contains(
        "next run:     unknown (systemctl show failed (exit 1): System has not been booted with systemd",
    );
    let absent = next("scheduled", s.path("empty-bin").to_str().unwrap());
    assert_eq!(absent["state"], "unknown");
    assert_contains(absent["detail"].as_str().unwrap(), "no systemctl on PATH");

    // --timer names another unit.
    std::fs::remove_file(s.path("systemctl.log")).unwrap();
    let ran = s
        .runbook([
            "status",
            "--json",
            "--manifest-path",
            "backup",
            "--timer",
            "other.timer",
        ])
        .env("PATH", &path_with_standin)
        .env("STANDIN_TIMER", "scheduled")
        .env("STANDIN_LOG", s.path("systemctl.log"))
        .run()
        .failure(1);
    assert_eq!(ran.stdout_json()["next_timer_run"]["timer"], "other.timer");
    assert_contains(
        &std::fs::read_to_string(s.path("systemctl.log")).unwrap(),
        "show other.timer ",
    );
}
