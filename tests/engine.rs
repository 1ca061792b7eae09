//! The engine through the real `runbook` binary: config, secrets, parallel,
//! defer, signals, lock, exec, journal, check, steps, init.

use runbook_test_support::servers::EsStandin;
use runbook_test_support::{Test, Workdir, assert_contains, code, runbook, stderr, support};

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

#[test]
fn config_precedence_vars_env_set() {
    let run = Test::new()
        .write(
            "wf.rhai",
            r#"let c = config(#{ a: "default", b: 1, c: false, d: "x", hosts: [] });
           write_marker(`${c.a} ${c.b} ${c.c} ${c.d} ${c.hosts.len()}`);
           fn write_marker(text) { exec(#{ cmd: "sh", args: ["-c", `printf '%s' "$1" > out.txt`, "sh", text] }); }"#,
        )
        .write("vars.json", r#"{"a": "from-file", "b": 5, "d": "file"}"#)
        .args(["run", "wf.rhai", "--vars", "vars.json"])
        .args(["--set", "b=7", "--set", "hosts=h1,h2,h3"])
        .env("RUNBOOK_C", "true")
        .env("RUNBOOK_D", "env")
        .run()
        .success();
    assert_eq!(
        std::fs::read_to_string(run.path("out.txt")).unwrap(),
        "from-file 7 true env 3"
    );
}

#[test]
fn unknown_config_key_is_an_error_listing_declared_keys() {
    let run = Test::new()
        .write("wf.rhai", r#"let c = config(#{ keyspace: "thehive", archive_path: "/tmp" }); exec(#{ cmd: "touch", args: ["ran"] });"#)
        .args(["run", "wf.rhai", "--set", "keyspcae=x"])
        .run()
        .failure(2)
        .stderr_contains(
            "unknown config key `keyspcae` (from --set); this workflow declares: archive_path, keyspace",
        );
    assert!(
        !run.path("ran").exists(),
        "nothing may run after a config error"
    );
}

#[test]
fn config_value_of_the_wrong_type_names_the_key() {
    Test::new()
        .write("wf.rhai", r#"let c = config(#{ keep: 3 });"#)
        .args(["run", "wf.rhai", "--set", "keep=three"])
        .run()
        .failure(2)
        .stderr_contains("config key `keep` (from --set): expected a whole number, got \"three\"");
}

#[test]
fn secrets_never_reach_logs_journal_or_errors() {
    let sb = Workdir::new();
    let secret = "s3cr3t-Value-42";
    sb.write(
        "wf.rhai",
        r#"let pw = secret("DB_PASSWORD");
           log_info(`connecting with ${pw}`);
           exec(#{ cmd: "sh", args: ["-c", `echo "token ${pw}" >&2; exit 3`] });"#,
    );
    let out = sb
        .command(&["run", "wf.rhai", "-v"])
        .env("DB_PASSWORD", secret)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(!err.contains(secret), "secret leaked to stderr: {err}");
    assert_contains(&err, "token ***");
    let journal = serde_json::to_string(&sb.journals()).unwrap();
    assert!(!journal.contains(secret), "secret leaked to the journal");
    assert!(journal.contains("***"));

    // From a file, and a missing secret names both variables.
    sb.write("pw.txt", "from-file-secret\n");
    sb.write(
        "wf2.rhai",
        r#"let pw = secret("DB_PASSWORD"); log_info(`pw=${pw}`);"#,
    );
    let out = sb
        .command(&["run", "wf2.rhai"])
        .env("DB_PASSWORD_FILE", sb.path("pw.txt"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    assert!(stderr(&out).contains("pw=***") && !stderr(&out).contains("from-file-secret"));
    let out = sb.run(&["run", "wf2.rhai"]);
    assert_eq!(code(&out), 2);
    assert_contains(
        &stderr(&out),
        "secret DB_PASSWORD is not set: set the environment variable DB_PASSWORD or DB_PASSWORD_FILE",
    );
}

#[test]
fn parallel_branches_run_concurrently() {
    // Each branch creates its marker, then waits for the other's: run one after
    // the other, the first branch would wait forever (and time out).
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"fn handshake(mine, theirs) {
               exec(#{ cmd: "sh", args: ["-c", `touch ${mine}; while [ ! -e ${theirs} ]; do sleep 0.05; done`], timeout: "20s" });
           }
           let r = parallel([|| { handshake("a", "b"); "A" }, || { handshake("b", "a"); "B" }]);
           if r != ["A", "B"] { fail(`unexpected ${r}`); }"#,
    );
    let out = sb.run(&["run", "wf.rhai"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn failing_branch_lets_the_other_finish_and_runs_its_defers() {
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"defer(|| exec(#{ cmd: "touch", args: ["main-cleanup"] }));
           parallel([
               || { defer(|| exec(#{ cmd: "touch", args: ["b1-cleanup"] })); exec(#{ cmd: "false", label: "first branch" }); },
               || { defer(|| exec(#{ cmd: "touch", args: ["b2-cleanup"] })); exec(#{ cmd: "sh", args: ["-c", "sleep 0.5; touch b2-done"] }); },
           ]);
           exec(#{ cmd: "touch", args: ["after-parallel"] });"#,
    );
    let out = sb.run(&["run", "wf.rhai"]);
    assert_eq!(code(&out), 1);
    for marker in ["b1-cleanup", "b2-cleanup", "b2-done", "main-cleanup"] {
        assert!(
            sb.path(marker).exists(),
            "{marker} missing; {}",
            stderr(&out)
        );
    }
    assert!(!sb.path("after-parallel").exists());
    let err = stderr(&out);
    assert_contains(
        &err,
        "\nerror: step exec (first branch) failed: `false` exited with code 1\n",
    );
    assert_contains(
        &err,
        "(in parallel branch 1; the other branches finished and their cleanups ran)",
    );
}

#[test]
fn defer_runs_on_failure_in_reverse_order_and_a_failing_cleanup_keeps_the_original_error() {
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"defer(|| exec(#{ cmd: "sh", args: ["-c", "echo first >> order"] }));
           defer(|| exec(#{ cmd: "sh", args: ["-c", "echo second >> order; exit 4"], label: "bad cleanup" }));
           fail("the real problem");"#,
    );
    let out = sb.run(&["run", "wf.rhai"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        std::fs::read_to_string(sb.path("order")).unwrap(),
        "second\nfirst\n"
    );
    let err = stderr(&out);
    assert_contains(&err, "error: the real problem");
    assert_contains(
        &err,
        "error: cleanup failed: step exec (bad cleanup) failed",
    );
}

fn wait_for(path: &Path) {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < until,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_the_step_runs_cleanups_and_exits_143() {
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"defer(|| exec(#{ cmd: "touch", args: ["cleaned"] }));
           exec(#{ cmd: "sh", args: ["-c", "touch started; sleep 60"] });
           exec(#{ cmd: "touch", args: ["never"] });"#,
    );
    let child = sb
        .command(&["run", "wf.rhai"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&sb.path("started"));
    let out = support::interrupt(child, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(code(&out), 143, "{}", stderr(&out));
    assert!(sb.path("cleaned").exists());
    assert!(!sb.path("never").exists());
    let journal = &sb.journals()[0];
    assert_eq!(journal["status"], "interrupted");
}

#[test]
fn a_second_run_is_refused_while_the_first_holds_the_lock() {
    let sb = Workdir::new();
    sb.write("wf.rhai", r#"exec(#{ cmd: "sh", args: ["-c", "touch started; while [ ! -e release ]; do sleep 0.05; done"] });"#);
    let mut first = sb
        .command(&["run", "wf.rhai"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&sb.path("started"));
    let second = sb.run(&["run", "wf.rhai"]);
    std::fs::write(sb.path("release"), "").unwrap();
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert_eq!(code(&second), 3);
    assert!(
        stderr(&second).contains(&format!(
            "another run of this workflow is in progress (pid {}",
            first.id()
        )),
        "{}",
        stderr(&second)
    );
    // The lock is gone with its holder.
    assert_eq!(code(&sb.run(&["run", "wf.rhai"])), 0);
}

#[test]
fn syntax_error_exits_2_with_line_and_column() {
    let dir = Workdir::new();
    dir.write("wf.rhai", "let a = 1;\nlet b = (a + ;\n");
    for command in ["run", "check"] {
        dir.runbook([command, "wf.rhai"])
            .run()
            .failure(2)
            .stderr_contains("--> wf.rhai:2:14")
            .stderr_contains("2 | let b = (a + ;");
    }
}

#[test]
fn check_finds_calls_to_functions_that_do_not_exist_in_imports_too() {
    let dir = Workdir::new();
    dir.write(
        "lib/helpers.rhai",
        "fn good() { exec(#{ cmd: \"true\" }) }\nfn bad() { no_such_step(#{}) }\n",
    );
    dir.write(
        "wf.rhai",
        "import \"lib/helpers\" as h;\nh::good();\nh::missing();\n",
    );
    dir.runbook(["check", "wf.rhai"])
        .run()
        .failure(2)
        .stderr_contains("call to a function that does not exist: no_such_step()")
        .stderr_contains("lib/helpers.rhai:2:12")
        .stderr_contains("call to a function that does not exist: h::missing()")
        .stderr_contains("wf.rhai:3:");
    dir.write("missing.rhai", "import \"lib/nope\" as n;\nn::f();\n");
    dir.runbook(["check", "missing.rhai"])
        .run()
        .failure(2)
        .stderr_contains("module `lib/nope` not found")
        .stderr_contains("--> missing.rhai:1:1");
    dir.write("ok.rhai", "import \"lib/helpers\" as h;\nh::good();\n");
    dir.write(
        "lib/helpers.rhai",
        "fn good() { exec(#{ cmd: \"true\" }) }\n",
    );
    dir.runbook(["check", "ok.rhai"]).run().success();
}

#[test]
fn runtime_error_in_an_imported_module_shows_the_innermost_position() {
    Test::new()
        .write("lib/deep.rhai", "fn inner() {\n    exec(#{ cmd: \"sh\", args: [\"-c\", \"exit 2\"], label: \"inner step\" });\n}\nfn outer() { inner(); }\n")
        .write("wf.rhai", "import \"lib/deep\" as d;\nd::outer();\n")
        .args(["run", "wf.rhai"])
        .run()
        .failure(1)
        .stderr_contains("error: step exec (inner step) failed: `sh` exited with code 2")
        .stderr_contains("lib/deep.rhai:2:5");
}

#[test]
fn unknown_step_option_is_rejected_before_the_step_runs() {
    let dir = Workdir::new();
    dir.write(
        "wf.rhai",
        r#"exec(#{ cmd: "touch", args: ["ran"], cwdd: "/" });"#,
    );
    dir.runbook(["run", "wf.rhai"])
        .run()
        .failure(2)
        .stderr_contains("step exec: unknown field `cwdd`")
        .stderr_contains("--> wf.rhai:1:1");
    assert!(!dir.path("ran").exists());
    dir.write("wf2.rhai", r#"exec(#{ cmd: "touch", args: "ran" });"#);
    dir.runbook(["run", "wf2.rhai"])
        .run()
        .failure(2)
        .stderr_contains("option `args`: invalid type: string \"ran\", expected a sequence");
    dir.write("wf3.rhai", r#"exec(#{ args: ["x"] });"#);
    dir.runbook(["run", "wf3.rhai"])
        .run()
        .failure(2)
        .stderr_contains("missing field `cmd`");
    assert!(!dir.path("ran").exists());
}

#[test]
fn exec_timeout_kills_a_child_that_ignores_sigterm_and_its_children() {
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"exec(#{ cmd: "sh", args: ["-c", "trap '' TERM; (trap '' TERM; sleep 300) & echo $! > grandchild; echo $$ > child; sleep 300"], timeout: "1s" });"#,
    );
    let out = sb.run(&["run", "wf.rhai"]);
    assert_eq!(code(&out), 1);
    assert_contains(&stderr(&out), "timed out after 1s");
    for file in ["child", "grandchild"] {
        let pid: i32 = std::fs::read_to_string(sb.path(file))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(!alive, "{file} (pid {pid}) survived the timeout");
    }
}

#[test]
fn journal_records_the_run() {
    let sb = Workdir::new();
    sb.write("wf.rhai", "let c = config(#{ keyspace: \"thehive\" });\nexec(#{ cmd: \"echo\", args: [c.keyspace], label: \"say\" });\n");
    let out = sb.run(&["run", "wf.rhai", "--set", "keyspace=ks1"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let journal = &sb.journals()[0];
    assert_eq!(journal["status"], "success");
    assert_eq!(journal["workflow"], "wf.rhai");
    assert_eq!(journal["config"]["keyspace"], "ks1");
    assert_eq!(journal["workflow_sha256"].as_str().unwrap().len(), 64);
    assert!(journal["ended"].is_string());
    let step = &journal["steps"][0];
    assert_eq!(step["label"], "say");
    assert_eq!(step["step"], "exec");
    assert_eq!(step["position"], "wf.rhai:2:1");
    assert_eq!(step["result"]["stdout"], "ks1\n");
    for entry in std::fs::read_dir(sb.path("journal")).unwrap().flatten() {
        use std::os::unix::fs::PermissionsExt;
        if entry.path().extension().is_some_and(|e| e == "json") {
            assert_eq!(
                entry.metadata().unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
}

#[test]
fn dry_run_describes_and_runs_only_read_only_steps() {
    let dir = Workdir::new();
    dir.write(
        "wf.rhai",
        r#"let probe = exec(#{ cmd: "sh", args: ["-c", "touch probed; echo UN"], read_only: true });
           if !probe.stdout.contains("UN") { fail("read-only probe did not run"); }
           let r = exec(#{ cmd: "touch", args: ["changed"] });
           if !r.dry_run { fail("expected a dry-run result"); }"#,
    );
    dir.runbook(["plan", "wf.rhai"])
        .run()
        .success()
        .stderr_contains("[dry-run] would run touch changed");
    assert!(dir.path("probed").exists());
    assert!(!dir.path("changed").exists());
}

#[test]
fn steps_lists_and_documents_every_registered_step_and_docs_are_fresh() {
    let registered = runbook_steps::all_steps();
    assert!(
        registered.len() >= 12,
        "the registry lost steps: {}",
        registered.len()
    );
    // The list: one line per registered step, its name then its summary.
    let listed = Test::new().arg("steps").run().success();
    let lines: Vec<&str> = listed.stdout.lines().collect();
    for step in registered {
        assert!(
            lines.iter().any(|line| line.starts_with(step.name)
                && line[step.name.len()..].trim_start() == step.summary()),
            "`runbook steps` does not list `{}  {}`:\n{}",
            step.name,
            step.summary(),
            listed.stdout
        );
    }
    // Each step's page: its name, then its whole doc.
    for step in registered {
        Test::new()
            .args(["steps", step.name])
            .run()
            .success()
            .stdout_is(&format!("{}\n\n{}\n", step.name, step.doc.trim_end()));
    }
    let exec = Test::new().args(["steps", "exec"]).run().success();
    assert!(
        exec.stdout.contains("Options:") && exec.stdout.contains("ok_codes"),
        "{}",
        exec.stdout
    );
    let names: Vec<&str> = registered.iter().map(|s| s.name).collect();
    Test::new()
        .args(["steps", "no_such_step"])
        .run()
        .failure(2)
        .stderr_contains(&format!(
            "error: no step named `no_such_step`; steps: {}",
            names.join(", ")
        ));
    // docs/steps.md is the same text as `runbook steps --markdown`.
    let generated = Test::new().args(["steps", "--markdown"]).run().success();
    let committed =
        std::fs::read_to_string(support::repo_root().join("docs/steps.md")).unwrap_or_default();
    assert!(
        generated.stdout == committed,
        "docs/steps.md is stale: regenerate it with `cargo run -p runbook -- steps --markdown > docs/steps.md`"
    );
    for step in registered {
        assert_contains(
            &committed,
            &format!("\n## {}\n\n{}\n", step.name, step.summary()),
        );
    }
}

#[test]
fn init_writes_stock_workflows_and_never_overwrites_without_force() {
    let dir = Workdir::new();
    let etc = dir.path("etc");
    let workflow = dir.path("etc/cluster-hot-backup.rhai");
    let service = dir.path("etc/systemd/runbook-thehive-backup.service");
    // The journal folder the units name (init creates it): never the
    // system's /var/lib/runbook from a test.
    let state = dir.path("state");
    Test::new()
        .arg("init")
        .arg(&etc)
        .env("RUNBOOK_JOURNAL_DIR", &state)
        .run()
        .success()
        .stdout_contains(&format!("wrote {}", workflow.display()))
        .stdout_contains(&format!("wrote {}", service.display()));
    assert!(workflow.exists() && dir.path("etc/lib/thehive.rhai").exists());
    std::fs::write(&workflow, "// edited").unwrap();
    std::fs::write(&service, "# edited").unwrap();
    Test::new()
        .arg("init")
        .arg(&etc)
        .env("RUNBOOK_JOURNAL_DIR", &state)
        .run()
        .success()
        .stdout_contains(&format!(
            "kept {} (exists; --force overwrites)",
            workflow.display()
        ))
        .stdout_contains(&format!(
            "kept {} (exists; --force overwrites)",
            service.display()
        ))
        .stdout_contains("0 files written");
    assert_eq!(std::fs::read_to_string(&workflow).unwrap(), "// edited");
    assert_eq!(std::fs::read_to_string(&service).unwrap(), "# edited");
    Test::new()
        .args(["init", "--force"])
        .arg(&etc)
        .env("RUNBOOK_JOURNAL_DIR", &state)
        .run()
        .success()
        .stdout_contains(&format!("wrote {}", workflow.display()));
    assert_ne!(std::fs::read_to_string(&workflow).unwrap(), "// edited");
    assert_ne!(std::fs::read_to_string(&service).unwrap(), "# edited");
}

#[test]
fn usage_errors_exit_2() {
    Test::new()
        .arg("run")
        .run()
        .failure(2)
        .stderr_contains("Usage: runbook run");
    Test::new()
        .args(["run", "no-such-stock-workflow"])
        .run()
        .failure(2)
        .stderr_contains(
            "no workflow file `no-such-stock-workflow` and no stock workflow of that name",
        );
    Test::new()
        .arg("--no-such-option")
        .run()
        .failure(2)
        .stderr_contains("unexpected argument '--no-such-option'");
    Test::new()
        .arg("--help")
        .run()
        .success()
        .stdout_contains("3    another run of the same workflow holds the lock");
}

/// The subcommands of the CLI (the same clap definition the binary uses),
/// each with its long options; `help` is clap's own.
fn subcommands_and_their_options() -> Vec<(String, Vec<String>)> {
    let cli = <runbook::cli::args::Cli as clap::CommandFactory>::command();
    cli.get_subcommands()
        .filter(|sub| sub.get_name() != "help" && !sub.is_hide_set())
        .map(|sub| {
            let options = sub
                .get_arguments()
                .filter(|arg| !arg.is_hide_set())
                .filter_map(|arg| arg.get_long().map(str::to_string))
                .collect();
            (sub.get_name().to_string(), options)
        })
        .collect()
}

/// The part of a completion script between `start` and the next `end`.
#[track_caller]
fn section<'a>(script: &'a str, start: &str, end: &str, shell: &str) -> &'a str {
    let from = script
        .find(start)
        .unwrap_or_else(|| panic!("{shell} completion has no `{start}`:\n{script}"));
    let rest = &script[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

#[test]
fn completions_complete_every_subcommand_and_its_options_in_bash_zsh_and_fish() {
    let subcommands = subcommands_and_their_options();
    let names: Vec<&str> = subcommands.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "run", "plan", "check", "steps", "recover", "verify", "list", "init",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let script = |shell: &str| {
        Test::new()
            .args(["completions", shell])
            .run()
            .success()
            .stdout
    };
    let (bash, zsh, fish) = (script("bash"), script("zsh"), script("fish"));
    for (sub, options) in &subcommands {
        // bash: `runbook,SUB)` offers the subcommand; its `opts="..."` its options.
        assert_contains(&bash, &format!("runbook,{sub})"));
        let bash_opts = section(&bash, &format!("runbook__subcmd__{sub})"), "\n", "bash");
        let bash_opts = section(
            &bash[bash.find(bash_opts).unwrap()..],
            "opts=\"",
            "\"\n",
            "bash",
        );
        // zsh: `'SUB:summary'` in the command list; `(SUB)` then its `_arguments`.
        assert_contains(&zsh, &format!("'{sub}:"));
        let zsh_args = section(&zsh, &format!("({sub})\n_arguments"), ";;", "zsh");
        // fish: `-a "SUB"` when no subcommand is given yet; `-l OPTION` under it.
        assert_contains(
            &fish,
            &format!("-n \"__fish_runbook_needs_command\" -f -a \"{sub}\""),
        );
        let fish_lines: Vec<&str> = fish
            .lines()
            .filter(|l| l.contains(&format!("__fish_runbook_using_subcommand {sub}\"")))
            .collect();
        for option in options {
            let long = format!("--{option}");
            assert!(
                bash_opts.split_whitespace().any(|o| o == long),
                "bash does not complete `runbook {sub} {long}`: {bash_opts}"
            );
            assert!(
                zsh_args.contains(&format!("{long}=[")) || zsh_args.contains(&format!("{long}[")),
                "zsh does not complete `runbook {sub} {long}`:\n{zsh_args}"
            );
            assert!(
                fish_lines
                    .iter()
                    .any(|l| l.contains(&format!(" -l {option} "))
                        || l.ends_with(&format!(" -l {option}"))),
                "fish does not complete `runbook {sub} {long}`:\n{}",
                fish_lines.join("\n")
            );
        }
    }
    // The run options a user types most are among them.
    let run_options = &subcommands.iter().find(|(n, _)| n == "run").unwrap().1;
    for option in ["set", "vars", "journal-dir", "dry-run", "metrics-file"] {
        assert!(run_options.iter().any(|o| o == option), "{run_options:?}");
    }
    Test::new()
        .args(["completions", "tcsh"])
        .run()
        .failure(2)
        .stderr_contains("invalid value 'tcsh'");
}

#[test]
fn man_page_and_json_step_list_generate() {
    let man = Test::new().arg("man").run().success();
    assert!(
        man.stdout.contains(".TH runbook 1") && man.stdout.contains("plan"),
        "{}",
        man.stdout
    );
    for (sub, _) in subcommands_and_their_options() {
        assert_contains(&man.stdout, &sub);
    }
    let listed = Test::new().args(["steps", "--json"]).run().success();
    let steps: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let listed: Vec<(&str, &str)> = steps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["doc"].as_str().unwrap()))
        .collect();
    let registered: Vec<(&str, &str)> = runbook_steps::all_steps()
        .iter()
        .map(|s| (s.name, s.doc))
        .collect();
    assert_eq!(listed, registered);
}

#[test]
fn undo_runs_at_frame_end_unless_dismissed_and_is_journaled() {
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"let keep = undo(#{ label: "remove kept", remove: `${cwd()}/kept` });
           undo(#{ label: "remove scratch", remove: `${cwd()}/scratch` });
           parallel([|| {
               undo(#{ label: "remove run-scoped", remove: `${cwd()}/run-scoped`, scope: "run" });
               undo(#{ label: "remove branch-scoped", remove: `${cwd()}/branch-scoped` });
               exec(#{ cmd: "touch", args: ["run-scoped", "branch-scoped", "kept", "scratch"] });
           }]);
           if exists("branch-scoped") { fail("branch undo did not run at branch end"); }
           if !exists("run-scoped") { fail("run-scoped undo ran too early"); }
           dismiss(keep);
           fn cwd() { exec(#{ cmd: "pwd", read_only: true }).stdout.split("\n")[0] }"#,
    );
    let out = sb.run(&["run", "wf.rhai"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(sb.path("kept").exists());
    for gone in ["scratch", "run-scoped", "branch-scoped"] {
        assert!(!sb.path(gone).exists(), "{gone} should have been undone");
    }
    let journal = &sb.journals()[0];
    let states: Vec<(String, String)> = journal["compensations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["label"].as_str().unwrap().to_string(),
                c["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&("remove kept".into(), "dismissed".into())),
        "{states:?}"
    );
    assert!(
        states.contains(&("remove scratch".into(), "done".into())),
        "{states:?}"
    );
}

/// SIGKILL leaves the workflow's child (in its own process group) running:
/// end it, by the group id it wrote.
fn kill_orphaned_group(pgid_file: &Path) {
    let pgid: i32 = std::fs::read_to_string(pgid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[test]
fn sigkill_leaves_pending_undo_actions_that_the_next_run_and_recover_carry_out() {
    let sb = Workdir::new();
    let debris = sb.path("debris");
    sb.write(
        "wf.rhai",
        &format!(
            r#"undo(#{{ label: "remove debris", remove: "{}" }});
               exec(#{{ cmd: "sh", args: ["-c", "mkdir -p debris/inner; echo $$ > pgid; touch started; sleep 60"] }});"#,
            debris.display()
        ),
    );
    // Killed runs are found by `runbook recover`...
    let mut child = sb
        .command(&["run", "wf.rhai"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&sb.path("started"));
    child.kill().unwrap(); // SIGKILL: no cleanup can run
    child.wait().unwrap();
    kill_orphaned_group(&sb.path("pgid"));
    assert!(debris.exists());
    let out = sb
        .command(&["recover", "--dry-run", "--journal-dir"])
        .arg(sb.path("journal"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    assert_contains(&stderr(&out), "would undo: remove debris");
    assert!(debris.exists(), "dry-run must not undo");
    let out = sb
        .command(&["recover", "--journal-dir"])
        .arg(sb.path("journal"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!debris.exists());
    let journal = &sb.journals()[0];
    assert_eq!(journal["status"], "crashed");
    assert_eq!(journal["compensations"][0]["state"], "done");

    // ...and by the next run, before it starts its own work.
    std::fs::remove_file(sb.path("started")).unwrap();
    let mut child = sb
        .command(&["run", "wf.rhai"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&sb.path("started"));
    child.kill().unwrap();
    child.wait().unwrap();
    kill_orphaned_group(&sb.path("pgid"));
    assert!(debris.exists());
    sb.runbook(["run", "wf.rhai", "--dry-run"]).run().success();
    assert!(debris.exists(), "a dry-run must not recover");
    sb.write("wf.rhai", "log_info(\"second run\");");
    let out = sb.run(&["run", "wf.rhai"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_contains(&stderr(&out), "found an unfinished run");
    assert!(!debris.exists());
}

#[test]
fn a_workflow_writable_by_others_is_refused_when_running_as_root() {
    use std::os::unix::fs::PermissionsExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test checks the refusal runbook makes only as root: run it as root (as CI does)"
    );
    let dir = Workdir::new();
    let path = dir.write("wf.rhai", "log_info(\"hi\");");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    dir.runbook(["run", "wf.rhai"])
        .run()
        .failure(2)
        .stderr_contains("refusing wf.rhai: it is writable by group and others");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let module = dir.write("lib/m.rhai", "fn f() { 1 }");
    std::fs::set_permissions(&module, std::fs::Permissions::from_mode(0o664)).unwrap();
    dir.write("wf2.rhai", "import \"lib/m\" as m; m::f();");
    dir.runbook(["run", "wf2.rhai"])
        .run()
        .failure(1)
        .stderr_contains("it is writable by group");
}

#[test]
fn an_endless_loop_is_stopped_by_the_operation_limit() {
    // The default bound (100 million operations) takes a minute in a debug
    // build; the mechanism is the same with a small bound.
    Test::new()
        .write("wf.rhai", "let i = 0;\nloop { i += 1; }\n")
        .args(["run", "wf.rhai", "--max-operations", "100000"])
        .run()
        .failure(1)
        .stderr_contains(
            "the script ran more operations than --max-operations allows (an endless loop?)",
        )
        .stderr_contains("--> wf.rhai:2:");
}

#[test]
fn journal_group_makes_journals_readable_by_that_group() {
    use std::os::unix::fs::MetadataExt;
    let sb = Workdir::new();
    sb.write("wf.rhai", "log_info(\"hi\");");
    sb.runbook(["run", "wf.rhai", "--journal-group", "backup"])
        .run()
        .success();
    let journal = std::fs::read_dir(sb.path("journal"))
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "json"))
        .unwrap();
    let meta = journal.metadata().unwrap();
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(
        Some(meta.gid()),
        nix::unistd::Group::from_name("backup")
            .unwrap()
            .map(|g| g.gid.as_raw())
    );
    sb.runbook(["run", "wf.rhai", "--journal-group", "no-such-group-xyz"])
        .run()
        .failure(2)
        .stderr_contains("--journal-group no-such-group-xyz: no such group");
}

#[test]
fn recover_reports_an_undo_action_that_fails_and_exits_1() {
    let sb = Workdir::new();
    std::fs::create_dir_all(sb.path("journal")).unwrap();
    // The journal of a run whose process is gone, with one pending undo action.
    let journal = serde_json::json!({
        "workflow": "wf.rhai", "workflow_sha256": "", "engine_version": "0", "host": "h",
        "pid": 999_999_999u32, "dry_run": false, "started": "2026-11-26T00:00:00.000Z",
        "ended": null, "status": "running", "error": null, "config": {}, "steps": [],
        "compensations": [{
            "id": 1, "label": "clear snapshot t1", "state": "pending", "position": "wf.rhai:1:1",
            "action": {"step": "exec", "options": {"cmd": "sh", "args": ["-c", "echo cannot >&2; exit 2"]}}
        }]
    });
    let path = sb.path("journal/20261126T000000.000Z-wf.json");
    std::fs::write(&path, journal.to_string()).unwrap();
    let recover = || {
        Test::at(sb.root())
            .args(["recover", "--journal-dir"])
            .arg(sb.path("journal"))
            .run()
    };
    recover().failure(1).stderr_contains(
        "could not undo clear snapshot t1: step exec failed: `sh` exited with code 2: cannot",
    );
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(after["status"], "crashed");
    // A failed undo stays pending, with its reason, and is tried again.
    assert_eq!(after["compensations"][0]["state"], "pending");
    assert_contains(
        after["compensations"][0]["error"].as_str().unwrap(),
        "`sh` exited with code 2: cannot",
    );
    recover().failure(1).stderr_contains(
        "could not undo clear snapshot t1: step exec failed: `sh` exited with code 2: cannot (it stays pending: the next `runbook recover` tries it again)",
    );
}

// ---------------------------------------------------------------- trust

/// The uid and gid of `nobody`, who stands for "another user".
fn nobody() -> (nix::unistd::Uid, nix::unistd::Gid) {
    let user = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("this test needs the user `nobody`");
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test gives files to `nobody`: run it as root (as CI does)"
    );
    (user.uid, user.gid)
}

fn give_to_nobody(path: &Path) {
    let (uid, gid) = nobody();
    nix::unistd::chown(path, Some(uid), Some(gid)).unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The journal of a killed run whose one pending undo action creates `marker`.
fn journal_running(marker: &Path) -> String {
    serde_json::json!({
        "workflow": "wf.rhai", "workflow_sha256": "", "engine_version": "0", "host": "h",
        "pid": 999_999_999u32, "dry_run": false, "started": "2026-11-26T00:00:00.000Z",
        "ended": null, "status": "running", "error": null, "config": {}, "steps": [],
        "compensations": [{
            "id": 1, "label": "planted", "state": "pending", "position": "wf.rhai:1:1",
            "action": {"step": "exec", "options": {"cmd": "sh", "args": ["-c", format!("touch {}", marker.display())]}}
        }]
    })
    .to_string()
}

#[test]
fn recover_refuses_journals_and_journal_folders_another_user_can_write() {
    let sb = Workdir::new();
    let marker = sb.path("planted-undo-ran");
    sb.write("wf.rhai", r#"log_info("hello");"#);

    // A world-writable journal folder owned by nobody, with nobody's journal.
    let shared = sb.path("shared");
    std::fs::create_dir(&shared).unwrap();
    let planted = shared.join("20261126T000000.000Z-wf.json");
    std::fs::write(&planted, journal_running(&marker)).unwrap();
    give_to_nobody(&planted);
    give_to_nobody(&shared);
    set_mode(&shared, 0o777);
    let recover = || {
        Test::at(sb.root())
            .args(["recover", "--journal-dir"])
            .arg(&shared)
            .run()
    };
    let refused = recover().failure(2);
    let uid = nobody().0;
    assert_eq!(
        refused.stderr.trim_end(),
        format!(
            "error: refusing {} (the journal folder, whose undo actions runbook carries out): it is owned by uid {uid}, not by root, so that user could change it (fix: chown root {})",
            shared.display(),
            shared.display()
        )
    );
    assert!(!marker.exists(), "a planted undo action ran");
    // `run` refuses that folder too, before anything runs.
    Test::at(sb.root())
        .args(["run", "wf.rhai", "--journal-dir"])
        .arg(&shared)
        .run()
        .failure(2)
        .stderr_contains("it is owned by uid");
    // Owned by root but writable by others: refused all the same.
    nix::unistd::chown(&shared, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    recover().failure(2).stderr_contains(&format!(
        "it is writable by group and others (fix: chmod go-w {})",
        shared.display()
    ));
    assert!(!marker.exists(), "a planted undo action ran");

    // A private folder holding one journal of nobody's and one group-writable
    // journal: each is refused by name, the run is not recovered, exit 1.
    set_mode(&shared, 0o700);
    let writable = shared.join("20261126T000001.000Z-wf.json");
    std::fs::write(&writable, journal_running(&marker)).unwrap();
    set_mode(&writable, 0o664);
    recover()
        .failure(1)
        .stderr_contains(&format!(
            "refusing {} (a journal, whose undo actions runbook carries out): it is owned by uid {uid}",
            planted.display()
        ))
        .stderr_contains(&format!(
            "refusing {} (a journal, whose undo actions runbook carries out): it is writable by group (fix: chmod go-w {})",
            writable.display(),
            writable.display()
        ));
    assert!(!marker.exists(), "a planted undo action ran");
}

#[test]
fn vars_files_workflow_folders_and_password_files_others_can_write_are_refused() {
    let sb = Workdir::new();
    let wf = sb.write(
        "site/wf.rhai",
        r#"let c = config(#{ nodetool: "nodetool" }); let pw = secret("DB_PASSWORD"); log_info(`ran ${c.nodetool}`);"#,
    );
    let vars = sb.write("vars.json", r#"{"nodetool": "/tmp/evil"}"#);
    let pw = sb.write("pw.txt", "pw-from-file\n");
    let run = || {
        sb.runbook([
            "run",
            wf.to_str().unwrap(),
            "--vars",
            vars.to_str().unwrap(),
        ])
        .env("DB_PASSWORD_FILE", &pw)
        .run()
    };
    run().success();

    set_mode(&vars, 0o666);
    let refused = run().failure(2);
    assert_eq!(
        refused.stderr.trim_end(),
        format!(
            "error: refusing {} (the --vars file, which sets the programs runbook runs): it is writable by group and others (fix: chmod go-w {})",
            vars.display(),
            vars.display()
        )
    );
    set_mode(&vars, 0o644);
    give_to_nobody(&vars);
    run().failure(2).stderr_contains(
        "the --vars file, which sets the programs runbook runs): it is owned by uid",
    );
    nix::unistd::chown(&vars, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();

    let folder = sb.path("site");
    set_mode(&folder, 0o775);
    run().failure(2).stderr_contains(&format!(
        "refusing {} (the workflow's folder, from which its modules are imported): it is writable by group (fix: chmod go-w {})",
        folder.display(),
        folder.display()
    ));
    set_mode(&folder, 0o755);

    set_mode(&pw, 0o602);
    run()
        .failure(2)
        .stderr_contains(&format!(
            "secret DB_PASSWORD (from DB_PASSWORD_FILE): refusing {} (a password file): it is writable by others (fix: chmod go-w {})",
            pw.display(),
            pw.display()
        ))
        .output_lacks("pw-from-file");
    set_mode(&pw, 0o600);
    run().success();
}

#[test]
fn credentials_in_a_url_never_reach_the_journal_or_the_logs() {
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"let c = config(#{ url: "http://127.0.0.1:9" });
           log_info(`talking to ${c.url}`);
           http(#{ url: `${c.url}/_cluster/health` });"#,
    );
    let out = sb.run(&[
        "run",
        "wf.rhai",
        "--set",
        "url=http://admin:Url-Pw-93@127.0.0.1:9",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("Url-Pw-93"), "password in the output: {err}");
    assert_contains(&err, "talking to http://admin:***@127.0.0.1:9");
    assert_contains(&err, "not in the url");
    let journal = serde_json::to_string(&sb.journals()).unwrap();
    assert!(
        !journal.contains("Url-Pw-93"),
        "password in the journal: {journal}"
    );
    assert!(
        journal.contains("http://admin:***@127.0.0.1:9"),
        "{journal}"
    );
}

#[test]
fn recover_reads_a_secret_again_by_name_and_retries_an_undo_that_failed() {
    const PASSWORD: &str = "Es-Basic-Pw-61";
    let es = EsStandin::start(&[
        "--repository",
        "repo1",
        "--user",
        "elastic",
        "--password",
        PASSWORD,
    ]);
    let sb = Workdir::new();
    // Registers an undo that needs the password, then is SIGKILLed.
    sb.write(
        "wf.rhai",
        r#"let c = config(#{ url: "" });
           let es = #{ url: c.url, user: "elastic", password: secret("ES_PW") };
           undo(#{ label: "delete snapshot s1", step: "http", scope: "run",
                   options: es + #{ method: "DELETE", url: `${c.url}/_snapshot/repo1/s1`, expect: [200, 404] } });
           exec(#{ cmd: "sh", args: ["-c", "kill -KILL $PPID"] });"#,
    );
    let out = sb
        .command(&["run", "wf.rhai", "--set", &format!("url={}", es.base)])
        .env("ES_PW", PASSWORD)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "{}", stderr(&out));
    let journal = serde_json::to_string(&sb.journals()).unwrap();
    assert!(!journal.contains(PASSWORD), "password in the journal");
    let options = &sb.journals()[0]["compensations"][0]["action"]["options"];
    assert_eq!(options["password"], serde_json::json!({"$secret": "ES_PW"}));

    let recover = |password: Option<&str>| {
        let mut command = runbook();
        command
            .args(["recover", "--journal-dir"])
            .arg(sb.path("journal"));
        command.env_remove("ES_PW");
        if let Some(password) = password {
            command.env("ES_PW", password);
        }
        command.output().unwrap()
    };
    // Without the secret: the reason is shown, the undo stays pending.
    let out = recover(None);
    assert_eq!(code(&out), 1);
    assert_contains(
        &stderr(&out),
        "could not undo delete snapshot s1: secret ES_PW is not set: set the environment variable ES_PW or ES_PW_FILE (a file holding the value) (it stays pending: the next `runbook recover` tries it again)",
    );
    // A wrong password: 401, still pending, tried again next time.
    let out = recover(Some("wrong"));
    assert_eq!(code(&out), 1);
    assert_contains(
        &stderr(&out),
        "could not undo delete snapshot s1: step http failed",
    );
    assert_contains(&stderr(&out), "401");
    assert_eq!(
        sb.journals()[0]["compensations"][0]["state"],
        "pending",
        "{:?}",
        sb.journals()
    );
    // The right one: the stand-in accepts the credentials and the undo is done.
    let out = recover(Some(PASSWORD));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_contains(&stderr(&out), "undone: delete snapshot s1");
    assert!(!stderr(&out).contains(PASSWORD));
    let deletes: Vec<_> = es
        .calls()
        .into_iter()
        .filter(|(m, p, _)| m == "DELETE" && p == "/_snapshot/repo1/s1")
        .map(|(_, _, status)| status)
        .collect();
    assert_eq!(deletes, [serde_json::json!(401), serde_json::json!(404)]);
    assert_eq!(sb.journals()[0]["compensations"][0]["state"], "done");
    // Nothing left to do.
    let out = recover(Some(PASSWORD));
    assert_eq!(code(&out), 0);
    assert_contains(&String::from_utf8_lossy(&out.stdout), "nothing to recover");
}

#[test]
fn a_password_that_is_also_a_word_in_names_is_masked_where_it_occurs_not_inside_those_names() {
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"let c = config(#{ keyspace: "thehive", attachment_folder: "/opt/thp/thehive/files",
                            repository: "thehive_repository", url: "http://127.0.0.1:9" });
           let pw = secret("CASSANDRA_PASSWORD");
           log_info(`archiving ${c.attachment_folder} into ${c.repository}`);
           log_info(`cqlsh password = ${pw}; url http://backup:${pw}@127.0.0.1:9/x`);
           exec(#{ cmd: "sh", args: ["-c", `echo "cannot read ${c.attachment_folder}/x; login with ${pw} failed" >&2; exit 3`] });"#,
    );
    let out = sb
        .command(&["run", "wf.rhai"])
        .env("CASSANDRA_PASSWORD", "thehive")
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    // Names that merely contain the password stay readable...
    assert_contains(
        &err,
        "archiving /opt/thp/thehive/files into thehive_repository",
    );
    // ...and the password itself is masked wherever it occurs.
    assert_contains(
        &err,
        "cqlsh password = ***; url http://backup:***@127.0.0.1:9/x",
    );
    assert_contains(
        &err,
        "cannot read /opt/thp/thehive/files/x; login with *** failed",
    );
    // A config value equal to the password is masked too (it cannot be told
    // apart): a warning says so, naming the key, never the value.
    assert_contains(
        &err,
        "secret CASSANDRA_PASSWORD is the same as config key `keyspace`: wherever that value is shown it is masked, which tells a reader the password; choose a password that is no config value",
    );
    assert_contains(
        &err,
        "secret CASSANDRA_PASSWORD is part of config key `attachment_folder`'s value",
    );
    let journal = serde_json::to_string(&sb.journals()).unwrap();
    for text in [&err, &journal] {
        let rest = text
            .replace("/opt/thp/thehive/files", "")
            .replace("thehive_repository", "");
        assert!(!rest.contains("thehive"), "the password is shown: {rest}");
    }
    assert_contains(&journal, "/opt/thp/thehive/files");
}

// ---------------------------------------------------------------- issue 12: exit codes, config rules

#[test]
fn exit_2_means_nothing_was_changed_and_permanent_errors_are_not_retried() {
    let sb = Workdir::new();
    // A config error before any change: exit 2.
    sb.write(
        "early.rhai",
        r#"exec(#{ cmd: "true", read_only: true });
           fail_config("offsite: bad destination");"#,
    );
    let out = sb.run(&["run", "early.rhai"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_contains(&stderr(&out), "error: offsite: bad destination");

    // The same error after a file was written: the run changed something, exit 1.
    sb.write(
        "late.rhai",
        r#"write_file("made.txt", "x");
           fail_config("offsite: bad destination");"#,
    );
    let out = sb.run(&["run", "late.rhai"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));

    // A step's options error after a changing step: exit 1, and the
    // permanent error is reported at once, not retried.
    sb.write("a.tar", "data");
    sb.write(
        "upload.rhai",
        r#"exec(#{ cmd: "touch", args: ["changed.txt"] });
           s3_upload(#{ files: ["a.tar"], dest: "offsite/bucket/../../x", retries: 2, retry_delay: "1s" });"#,
    );
    let started = std::time::Instant::now();
    let out = sb
        .command(&["run", "upload.rhai"])
        .env("MC_HOST_offsite", "http://key:secretkey@127.0.0.1:1")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 1, "{err}");
    assert_contains(
        &err,
        "the prefix `../../x/` of `offsite/bucket/../../x` is not a valid object path",
    );
    assert!(
        !err.contains("retrying"),
        "a permanent error was retried:\n{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{err}");
}

#[test]
fn config_rules_and_runbook_variables_are_checked_before_anything_runs() {
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"let c = config(#{ keep: 0, storage: "local", poll: "5s" }, #{
               keep: #{ min: 0, max: 10000 },
               storage: #{ one_of: ["local", "s3", "none"] },
               poll: #{ min: "1s", max: "10m" },
           });
           write_file("ran.txt", `${c.keep} ${c.storage} ${c.poll}`);"#,
    );
    let refused = |args: &[&str], env: &[(&str, &str)], expected: &str| {
        let mut command = sb.command(&[&["run", "wf.rhai"], args].concat());
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        assert_eq!(code(&out), 2, "{args:?} {env:?}: {}", stderr(&out));
        assert_contains(&stderr(&out), expected);
        assert!(!sb.path("ran.txt").exists(), "the workflow ran: {args:?}");
    };
    refused(
        &["--set", "keep=-1"],
        &[],
        "config key `keep` (from --set): -1 is too small (allowed: 0 to 10000)",
    );
    refused(
        &["--set", "keep=99999999999999999999"],
        &[],
        "config key `keep` (from --set): 99999999999999999999 is far too large (allowed: 0 to 10000)",
    );
    refused(
        &["--set", "storage=S3"],
        &[],
        r#"config key `storage` (from --set): "S3" is not allowed (allowed: "local", "s3" or "none")"#,
    );
    refused(
        &[],
        &[("RUNBOOK_POLL", "0s")],
        r#"config key `poll` (from environment variable RUNBOOK_POLL): "0s" is too small (allowed: a duration from 1s to 10m, e.g. "5s")"#,
    );
    refused(
        &[],
        &[("RUNBOOK_KEPP", "3")],
        "environment variable RUNBOOK_KEPP names no config key of this workflow (did you mean RUNBOOK_KEEP?)",
    );
    // The engine's own variables stay allowed, and values inside the rules run.
    let out = sb
        .command(&["run", "wf.rhai", "--set", "keep=3", "--set", "poll=2s"])
        .env("RUNBOOK_LOG", "info")
        .env("RUNBOOK_STORAGE", "s3")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(sb.path("ran.txt")).unwrap(),
        "3 s3 2s"
    );

    // A rule that makes no sense is the script's error.
    sb.write(
        "bad-rule.rhai",
        r#"let c = config(#{ keep: 0 }, #{ keep: #{ min: 1 } });"#,
    );
    let out = sb.run(&["run", "bad-rule.rhai"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        "config key `keep` (from the workflow's default): 0 is too small (allowed: 1 or more)",
    );
}

#[test]
fn an_unwritable_metrics_file_folder_fails_before_the_run() {
    let dir = Workdir::new();
    dir.write("wf.rhai", r#"write_file("ran.txt", "x");"#);
    let missing = dir.path("no-such-folder/runbook.prom");
    dir.runbook(["run", "wf.rhai"])
        .arg(format!("--metrics-file={}", missing.display()))
        .run()
        .failure(2)
        .stderr_contains(&format!(
            "error: --metrics-file {}: cannot write in {}: No such file or directory",
            missing.display(),
            dir.path("no-such-folder").display()
        ));
    assert!(!dir.path("ran.txt").exists(), "the workflow ran");
}

/// An undo step action may take `timeout` instead of the default 5 minutes
/// (journaled with it); a timeout that is not a duration is refused.
#[test]
fn an_undo_step_action_runs_within_its_own_timeout() {
    let sb = Workdir::new();
    sb.write(
        "wf.rhai",
        r#"undo(#{ label: "slow undo", step: "exec", timeout: "1s",
                   options: #{ cmd: "sleep", args: ["30"] } });"#,
    );
    let started = std::time::Instant::now();
    let out = sb.run(&["run", "wf.rhai"]);
    let err = stderr(&out);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the undo ran past its 1s timeout: {err}"
    );
    assert_eq!(code(&out), 1, "{err}");
    assert!(err.contains("slow undo: step exec failed"), "{err}");
    let journal = &sb.journals()[0];
    let undo = &journal["compensations"][0];
    assert_eq!(undo["action"]["timeout"], "1s", "{journal}");
    assert_eq!(undo["state"], "pending", "{journal}");

    sb.write(
        "bad.rhai",
        r#"undo(#{ label: "x", step: "exec", timeout: "soon", options: #{ cmd: "true" } });"#,
    );
    let out = sb.run(&["run", "bad.rhai"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("undo: `timeout` \"soon\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_restore_refuses_a_stamp_that_is_no_backup_stamp_before_reading_anything() {
    // Month 13, a short stamp, and a path: each refused by the backup-set
    // layout's own stamp parser (`is_backup_stamp`), exit 2, nothing read.
    for stamp in ["20261399_01h15m00s", "2026112_1h5m0s", "../../x"] {
        Test::new()
            .args([
                "plan",
                "cluster-hot-restore",
                "--set",
                &format!("stamp={stamp}"),
            ])
            .args(["--set", "manifest_path=/nonexistent-runbook-test"])
            .run()
            .failure(2)
            .stderr_contains(&format!(
                "stamp \"{stamp}\" is not a stamp like 20261126_01h15m00s"
            ));
    }
    Test::new()
        .args([
            "run",
            "cluster-hot-restore",
            "--set",
            "discard_safety=20261126_25h00m00s",
        ])
        .args(["--set", "manifest_path=/nonexistent-runbook-test"])
        .run()
        .failure(2)
        .stderr_contains("discard_safety \"20261126_25h00m00s\" is not a stamp like");
}

/// A journal of `workflow` started `days_ago` days ago, as a run writes it.
fn plant_journal(
    dir: &Path,
    workflow: &str,
    days_ago: i64,
    minute: u32,
    fields: serde_json::Value,
) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let started = chrono::Utc::now() - chrono::Duration::days(days_ago);
    let started = chrono::TimeZone::with_ymd_and_hms(
        &chrono::Utc,
        chrono::Datelike::year(&started),
        chrono::Datelike::month(&started),
        chrono::Datelike::day(&started),
        0,
        minute,
        0,
    )
    .unwrap();
    let path = dir.join(format!(
        "{}-{workflow}.json",
        started.format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let mut doc = serde_json::json!({
        "workflow": format!("{workflow}.rhai"), "workflow_sha256": "", "engine_version": "0.1.0",
        "host": "elsewhere", "pid": 1, "dry_run": false,
        "started": started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "ended": started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "status": "success", "error": null, "config": {}, "steps": [], "compensations": []
    });
    for (key, value) in fields.as_object().unwrap() {
        doc[key] = value.clone();
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, doc.to_string()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn journal_retention_keeps_the_newest_runs_and_never_what_recover_needs() {
    let w = Workdir::new();
    let journal = w.path("journal");
    w.write(
        "wf.rhai",
        r#"let c = config(#{ journal_keep: 3, journal_max_age: "30d" });
exec(#{ cmd: "true" });"#,
    );
    // Newest first: yesterday's plan and three runs, then a run 40 days old
    // (past journal_max_age).
    let plan = plant_journal(&journal, "wf", 1, 5, serde_json::json!({"dry_run": true}));
    let recent = [2, 3, 4].map(|d| plant_journal(&journal, "wf", d, 0, serde_json::json!({})));
    let too_old = plant_journal(
        &journal,
        "wf",
        40,
        0,
        serde_json::json!({"status": "failed"}),
    );
    // A killed run whose undo keeps failing: `recover` still needs it.
    let pending = plant_journal(
        &journal,
        "wf",
        50,
        0,
        serde_json::json!({"status": "crashed", "compensations": [{
            "id": 1, "label": "an undo that fails", "state": "pending", "position": "wf.rhai:1:1",
            "error": "exited with code 1",
            "action": {"step": "exec", "options": {"cmd": "false"}}}]}),
    );
    // A run that is still going: its process is alive (a stand-in process
    // whose command line says runbook, as recovery checks it).
    let mut live_process = std::process::Command::new("bash")
        .args(["-c", "exec -a runbook-live-run-standin sleep 120"])
        .spawn()
        .unwrap();
    let live = plant_journal(
        &journal,
        "wf",
        60,
        0,
        serde_json::json!({"status": "running", "ended": null, "pid": live_process.id()}),
    );
    // Another workflow's journal, and a file that is not a journal.
    let other = plant_journal(&journal, "other-wf", 90, 0, serde_json::json!({}));
    let garbage = journal.join("20200101T000000.000Z-wf.json.tmp");
    std::fs::write(&garbage, "{").unwrap();
    let unreadable = journal.join("20200102T000000.000Z-wf.json");
    std::fs::write(&unreadable, "not json").unwrap();

    w.runbook(["run", "wf.rhai"])
        .run()
        .success()
        .stderr_contains("journal retention: removed 3 journals of wf in")
        .stderr_contains("(beyond the newest 3 or older than 30d)");
    // The newest 3 runs are this one, the plan and recent[0]: recent[1],
    // recent[2] and the 40-day-old run go.
    assert!(plan.exists() && recent[0].exists());
    for gone in [&recent[1], &recent[2], &too_old] {
        assert!(!gone.exists(), "{} should be removed", gone.display());
    }
    for kept in [&pending, &live, &other, &garbage, &unreadable] {
        assert!(kept.exists(), "{} must stay", kept.display());
    }
    let ran: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.split_once('-')
                .is_some_and(|(_, workflow)| workflow == "wf.json")
        })
        .collect();
    // This run, the plan, recent[0], the pending and live runs, the unreadable file.
    assert_eq!(ran.len(), 6, "{ran:?}");

    // A plan removes nothing.
    w.runbook(["plan", "wf.rhai", "--set", "journal_keep=1"])
        .run()
        .success()
        .output_lacks("journal retention");
    assert!(recent[0].exists());
    w.runbook([
        "run",
        "wf.rhai",
        "--set",
        "journal_keep=1",
        "--set",
        "journal_max_age=0s",
    ])
    .run()
    .success();
    // keep 1: only this run, plus what must stay: the live and pending runs,
    // (the newest real run is this one).
    assert!(!recent[0].exists() && !plan.exists());
    assert!(pending.exists() && live.exists() && other.exists() && unreadable.exists());
    let _ = live_process.kill();
    let _ = live_process.wait();
}

/// What a run of the same workflow prints for a step: one line when it ends,
/// the size in MiB and the throughput in MiB/s; as JSON, the same line with
/// its fields.
#[test]
fn a_step_logs_one_line_with_mib_and_mib_per_second_and_json_carries_its_fields() {
    let w = Workdir::new();
    std::fs::create_dir_all(w.path("data/sub")).unwrap();
    std::fs::write(w.path("data/sub/a.bin"), vec![7u8; 2 * 1024 * 1024]).unwrap();
    w.write(
        "wf.rhai",
        r#"let a = tar_dir(#{ entries: [#{ src: "data", path: "data" }], dest: "cassandra_20261201_01h15m00s.tar", label: "archive" });
log_info(`${human_bytes(a.bytes)}, ${plural(1, "table")}, ${plural(2, "entry")}`);"#,
    );
    let human = w.runbook(["run", "wf.rhai"]).run().success();
    let lines: Vec<&str> = human
        .stderr
        .lines()
        .filter(|l| l.contains("archive: "))
        .collect();
    assert_eq!(lines.len(), 1, "one line for the step:\n{}", human.stderr);
    let line = regex::Regex::new(
        r"INFO archive: archive 1 source into cassandra_20261201_01h15m00s.tar: 2\.0 MiB in \S+ \(\d+\.\d MiB/s\)$",
    )
    .unwrap();
    assert!(line.is_match(lines[0]), "{}", lines[0]);
    assert_contains(&human.stderr, "INFO 2.0 MiB, 1 table, 2 entries\n");
    // The human lines carry no `key=value` fields.
    assert!(
        !human.stderr.contains("step=") && !human.stderr.contains("bytes="),
        "{}",
        human.stderr
    );

    std::fs::remove_file(w.path("cassandra_20261201_01h15m00s.tar")).unwrap();
    std::fs::remove_file(w.path("cassandra_20261201_01h15m00s.tar.sha256")).unwrap();
    let json = w
        .runbook(["run", "wf.rhai", "--log-format", "json"])
        .run()
        .success();
    let events: Vec<serde_json::Value> = json
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let step = events
        .iter()
        .find(|e| e["step"] == "tar_dir")
        .unwrap_or_else(|| panic!("no tar_dir event:\n{}", json.stderr));
    let archive = std::fs::canonicalize(w.path("cassandra_20261201_01h15m00s.tar")).unwrap();
    assert_eq!(step["label"], "archive");
    assert_eq!(step["status"], "ok");
    assert_eq!(step["part"], "cassandra");
    assert_eq!(
        std::fs::canonicalize(w.root().join(step["path"].as_str().unwrap())).unwrap(),
        archive
    );
    assert_eq!(step["bytes"], std::fs::metadata(&archive).unwrap().len());
    assert!(step["duration_seconds"].as_f64().unwrap() >= 0.0, "{step}");
    assert!(step["mib_per_second"].as_f64().is_some(), "{step}");
    assert_contains(
        step["message"].as_str().unwrap(),
        "archive: archive 1 source into ",
    );
    let end = events.last().unwrap();
    assert_eq!(end["result"], "success", "{end}");
    assert_eq!(end["workflow"], "wf");
    assert!(end["duration_seconds"].as_f64().is_some(), "{end}");
}

#[test]
fn undo_actions_say_cleaning_up_after_a_success_and_undoing_only_in_a_rollback() {
    let w = Workdir::new();
    w.write(
        "wf.rhai",
        r#"let c = config(#{ fail: false });
undo(#{ label: "remove scratch", remove: `${cwd()}/scratch` });
exec(#{ cmd: "touch", args: ["scratch"] });
parallel([|| {
    undo(#{ label: "remove branch scratch", remove: `${cwd()}/branch-scratch` });
    exec(#{ cmd: "touch", args: ["branch-scratch"] });
}]);
if c.fail { fail("asked to fail"); }
fn cwd() { exec(#{ cmd: "pwd", read_only: true }).stdout.split("\n")[0] }"#,
    );
    w.runbook(["run", "wf.rhai"])
        .run()
        .success()
        .stderr_contains("remove branch scratch: cleaning up")
        .stderr_contains("remove scratch: cleaning up")
        .output_lacks("undoing");
    // The branch ended well before the failure: its undo is cleanup; the
    // workflow's own undo is the rollback of a failed run.
    w.runbook(["run", "wf.rhai", "--set", "fail=true"])
        .run()
        .failure(1)
        .stderr_contains("remove branch scratch: cleaning up")
        .stderr_contains("remove scratch: undoing");
    assert!(!w.path("scratch").exists() && !w.path("branch-scratch").exists());
}
