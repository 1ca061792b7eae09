//! The commands other than `run`: `check`, `steps`, `init`.

use std::path::Path;
use std::sync::Arc;

use crate::host::config::Overrides;
use crate::host::config_keys::{known_keys, probe};
use crate::host::config_probe::ProbeMode;
use crate::host::config_site::Site;
use crate::host::engine::build_engine;
use crate::host::workflow::{STOCK_FILES, Workflow, source_text};
use crate::report::exit_code;

/// `runbook check WORKFLOW`: the lint of the script and its imports; then,
/// with a site file (`--site`, else `RUNBOOK_SITE`, else
/// /etc/runbook/site.toml when it exists, as `plan` and `run` read it), the
/// site file's keys no workflow of the site knows, one line each, and the
/// first value of this workflow's keys its `config()` refuses.
pub fn check(spec: &str, site_flag: Option<&Path>) -> i32 {
    let workflow = match Workflow::load(spec) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::INPUT;
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("the tokio runtime starts");
    let state = Arc::new(crate::host::config_keys::dry_run_state(
        &workflow,
        runtime.handle().clone(),
        Overrides::default(),
    ));
    let engine = build_engine(state, workflow.modules.clone());
    let problems = crate::host::check::check(&engine, &workflow);
    for problem in &problems {
        eprint!(
            "error: {}\n{}",
            problem.message,
            crate::host::script_error::source_excerpt(&problem.position, &source_text)
        );
    }
    // The site is checked only against a script that compiles: its keys
    // are learnt by running it up to config().
    let site_problems = if problems.is_empty() {
        check_site(&workflow, site_flag)
    } else {
        0
    };
    if problems.is_empty() && site_problems == 0 {
        println!("{}: ok", workflow.display);
        return exit_code::SUCCESS;
    }
    exit_code::INPUT
}

/// The site file seen from `workflow`, as `plan` checks it before a run:
/// each key no workflow of the site (nor the engine) knows, one line each,
/// then (when all are known) the values of the workflow's own keys, resolved
/// and checked by its `config()` as a run would. Returns the problems found,
/// after printing them.
fn check_site(workflow: &Workflow, site_flag: Option<&Path>) -> usize {
    let site = match Site::load(site_flag) {
        Ok(site) => site,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if site.path().is_none() || site.values().is_empty() {
        return 0;
    }
    let known = known_keys(&site, Some(workflow));
    let unknown = site.unknown_keys(&known);
    for error in &unknown {
        eprintln!("error: {error}");
    }
    if !unknown.is_empty() {
        return unknown.len();
    }
    match probe(
        workflow,
        ProbeMode::Effective,
        Overrides::default().with_site(&site, known),
    ) {
        Ok(_) => 0,
        Err(rendered) => {
            eprint!("{}", crate::host::secrets::mask(&rendered));
            1
        }
    }
}

/// `runbook steps [NAME] [--markdown]`.
pub fn steps(name: Option<&str>, markdown: bool, json: bool) -> i32 {
    if markdown {
        print!("{}", crate::cli::step_docs::markdown());
        return exit_code::SUCCESS;
    }
    if json {
        let steps: Vec<serde_json::Value> = runbook_steps::all_steps()
            .iter()
            .filter(|s| name.is_none_or(|n| n == s.name))
            .map(|s| serde_json::json!({"name": s.name, "summary": s.summary(), "doc": s.doc}))
            .collect();
        if steps.is_empty() {
            eprintln!("error: no step named `{}`", name.unwrap_or_default());
            return exit_code::INPUT;
        }
        println!("{}", serde_json::Value::Array(steps));
        return exit_code::SUCCESS;
    }
    match name {
        None => {
            let width = runbook_steps::all_steps()
                .iter()
                .map(|s| s.name.len())
                .max()
                .unwrap_or(0);
            for step in runbook_steps::all_steps() {
                println!("{:width$}  {}", step.name, step.summary());
            }
            println!("\n`runbook steps NAME` prints a step's options, result and an example.");
            exit_code::SUCCESS
        }
        Some(name) => match runbook_steps::find_step(name) {
            Some(step) => {
                println!("{}\n\n{}", step.name, step.doc.trim_end());
                exit_code::SUCCESS
            }
            None => {
                let names: Vec<&str> = runbook_steps::all_steps().iter().map(|s| s.name).collect();
                eprintln!("error: no step named `{name}`; steps: {}", names.join(", "));
                exit_code::INPUT
            }
        },
    }
}

/// `runbook init DIR [--force]`: the stock workflows, and the service,
/// timer and cron file that run the backup from DIR
/// ([`crate::cli::schedule_units`]).
pub fn init(dir: &Path, force: bool) -> i32 {
    let site = match crate::cli::schedule_units::Site::current(dir) {
        Ok(site) => site,
        Err(e) => {
            eprintln!("error: runbook init {}: {e}", dir.display());
            return exit_code::INPUT;
        }
    };
    let units = match crate::cli::schedule_units::render(&site) {
        Ok(units) => units,
        Err(e) => {
            eprintln!(
                "error: runbook init {}: {e} (choose another folder)",
                dir.display()
            );
            return exit_code::INPUT;
        }
    };
    let files = STOCK_FILES
        .iter()
        .map(|(path, text)| (*path, text.to_string()))
        .chain(units);
    let (written, kept) = match write_init_files(&site.dir, files, force) {
        Ok(outcome) => outcome,
        Err(code) => return code,
    };
    if let Err(e) = crate::cli::schedule_units::prepare_journal_dir(&site) {
        eprintln!("error: {e}");
        return exit_code::FAILED;
    }
    for path in &kept {
        println!("kept {path} (exists; --force overwrites)");
    }
    match crate::cli::site_config::write_site_file(dir, force) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("error: {e}");
            return exit_code::FAILED;
        }
    }
    println!(
        "\n{} written. Next: set this site's values in {dir}/site.toml \
         (every key is there, commented out with its default; `runbook config \
         cluster-hot-backup --site {dir}/site.toml` shows the result), then\n  \
         runbook plan --site {dir}/site.toml {dir}/cluster-hot-backup.rhai\n  \
         runbook run --site {dir}/site.toml {dir}/cluster-hot-backup.rhai\n\
         (RUNBOOK_SITE={dir}/site.toml does the same as --site; /etc/runbook/site.toml is read \
         without either.)\n{}",
        runbook_steps::runtime::wording::count(written, "file"),
        crate::cli::schedule_units::instructions(&site),
        dir = site.dir.display(),
    );
    exit_code::SUCCESS
}

/// Writes each `(path, text)` under `dir`, keeping a file that exists unless
/// `force`: how many were written and the paths kept, or the exit code after
/// the error is printed.
fn write_init_files<'a>(
    dir: &Path,
    files: impl Iterator<Item = (&'a str, String)>,
    force: bool,
) -> Result<(u64, Vec<String>), i32> {
    let mut written: u64 = 0;
    let mut kept = Vec::new();
    for (path, text) in files {
        let target = dir.join(path);
        if target.exists() && !force {
            kept.push(target.display().to_string());
            continue;
        }
        if let Some(parent) = target.parent()
            && let Err(e) = std::fs::create_dir_all(parent)
        {
            eprintln!("error: cannot create {}: {e}", parent.display());
            return Err(exit_code::FAILED);
        }
        if let Err(e) = std::fs::write(&target, text) {
            eprintln!("error: cannot write {}: {e}", target.display());
            return Err(exit_code::FAILED);
        }
        println!("wrote {}", target.display());
        written += 1;
    }
    Ok((written, kept))
}

/// `runbook recover [--journal-dir DIR] [--dry-run]`.
pub fn recover(journal_dir: Option<std::path::PathBuf>, dry_run: bool) -> i32 {
    let dir = journal_dir.unwrap_or_else(crate::host::journal::default_journal_dir);
    if dir.exists()
        && let Err(e) = crate::host::file_safety::check_trusted(
            &dir,
            crate::host::file_safety::TrustedUse::JournalFolder,
        )
    {
        eprintln!("error: {e}");
        return exit_code::INPUT;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    let recovered = runtime.block_on(crate::run::recovery::recover_all(&dir, dry_run, None, None));
    if recovered.is_empty() {
        println!("nothing to recover in {}", dir.display());
        return exit_code::SUCCESS;
    }
    if crate::run::recovery::report(&recovered, dry_run) {
        exit_code::SUCCESS
    } else {
        exit_code::FAILED
    }
}

/// `runbook verify PATH... [--require-checksum] [--json]`: one line per archive.
pub fn verify(paths: &[std::path::PathBuf], require_checksum: bool, json: bool) -> i32 {
    use runbook_steps::backup::archive_check::verify_archive_at;
    use runbook_steps::runtime::blocking_work::WorkControl;
    let mut all_ok = true;
    for path in paths {
        let outcome = verify_archive_at(path, require_checksum, &WorkControl::new("verify"));
        if json {
            let line = match &outcome {
                Ok(report) => {
                    serde_json::json!({"path": path, "ok": true, "entries": report.entries, "bytes": report.bytes, "sha256": report.sha256})
                }
                Err(e) => {
                    serde_json::json!({"path": path, "ok": false, "error": runbook_steps::runtime::error::one_line(e)})
                }
            };
            println!("{line}");
        } else {
            match &outcome {
                Ok(report) => println!("{}", report.summary(path)),
                Err(e) => println!(
                    "BAD {}: {}",
                    path.display(),
                    runbook_steps::runtime::error::one_line(e)
                ),
            }
        }
        all_ok &= outcome.is_ok();
    }
    if all_ok {
        exit_code::SUCCESS
    } else {
        exit_code::FAILED
    }
}
