//! One run of a workflow: lock, journal, signals, the script on its own
//! thread, deferred cleanups, and the exit code.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rhai::Map;
use runbook_steps::runtime::progress::ProgressMode;
use tokio_util::sync::CancellationToken;

use crate::host::cleanup;
use crate::host::config::Overrides;
use crate::host::engine::build_engine;
use crate::host::file_safety::{TrustedUse, check_trusted};
use crate::host::journal::{Journal, JournalDoc, default_journal_dir, timestamp};
use crate::host::run_state::RunState;
use crate::host::script_error;
use crate::host::workflow::{Workflow, source_text};
use crate::report::exit_code;
use crate::run::lock::{LockError, RunLock};

/// How long cleanups may take after an interruption before runbook exits anyway.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(600);

/// What `runbook run` was asked.
pub struct RunRequest {
    /// Path or stock name.
    pub workflow: String,
    /// `--set KEY=VALUE`.
    pub sets: Vec<String>,
    /// `--vars FILE`.
    pub vars: Option<PathBuf>,
    /// `--dry-run` / `plan`.
    pub dry_run: bool,
    /// `--journal-dir`.
    pub journal_dir: Option<PathBuf>,
    /// Progress display.
    pub progress: ProgressMode,
    /// Bound on Rhai operations.
    pub max_operations: u64,
    /// `--journal-group`: journals readable by this group (mode 0640).
    pub journal_group: Option<String>,
    /// `--metrics-file`: Prometheus metrics written at the end of the run.
    pub metrics_file: Option<PathBuf>,
    /// `--summary-json`: the run summary written at the end of the run.
    pub summary_json: Option<PathBuf>,
    /// `--site FILE` (else `RUNBOOK_SITE`, else /etc/runbook/site.toml).
    pub site: Option<PathBuf>,
}

fn print_error(text: &str) {
    eprint!("{}", crate::host::secrets::mask(text));
}

/// Prints `error: {message}` and gives the exit code for bad input.
fn input_error(message: impl std::fmt::Display) -> i32 {
    print_error(&format!("error: {message}\n"));
    exit_code::INPUT
}

/// Runs a workflow and returns the process exit code.
pub fn run(request: RunRequest) -> i32 {
    match run_checked(request) {
        Ok(code) | Err(code) => code,
    }
}

/// [`run`], with every early exit (bad input, lock held) as `Err(code)` after
/// its message is printed.
fn run_checked(mut request: RunRequest) -> Result<i32, i32> {
    let site = apply_site(&mut request)?;
    let (workflow, overrides, ast) = load_and_compile(&request)?;
    let overrides = with_site(overrides, &site, &workflow)?;
    let (journal_dir, _lock, journal) = lock_and_open_journal(&request, &workflow)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(4)
        .thread_name("runbook-io")
        .build()
        .expect("the tokio runtime starts");
    let cancel = CancellationToken::new();
    let signal_received = Arc::new(AtomicI32::new(0));
    runtime.spawn(watch_signals(cancel.clone(), Arc::clone(&signal_received)));

    let state = Arc::new(RunState {
        dry_run: request.dry_run,
        cancel: cancel.clone(),
        runtime: runtime.handle().clone(),
        journal: Some(journal),
        overrides,
        config: Mutex::new(Map::new()),
        config_declared: Mutex::new(false),
        progress: request.progress,
        workflow_display: workflow.display.clone(),
        workflow_sha256: workflow.sha256(),
        workflow_name: workflow.name.clone(),
        run_compensations: Mutex::new(Vec::new()),
        changed: std::sync::atomic::AtomicBool::new(false),
        max_operations: request.max_operations,
    });
    if !request.dry_run {
        recover_earlier_runs(&runtime, &state, &journal_dir, &workflow);
    }
    let engine = build_engine(Arc::clone(&state), workflow.modules.clone());
    let started = Instant::now();
    if request.dry_run {
        tracing::info!("plan of {} (dry-run: nothing is changed)", workflow.display);
    } else {
        tracing::info!("running {}", workflow.display);
    }
    let (result, cleanup_failures) = run_script(engine, &state, ast);
    let (code, status, report) = judge(
        &result,
        &cleanup_failures,
        &state,
        &workflow,
        signal_received.load(Ordering::SeqCst),
    );
    record_end(
        &request,
        &state,
        &workflow,
        (status, &report),
        &cleanup_failures,
        started,
    );
    print_error(&report);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(code)
}

/// Loads the site file, places the lock, and fills the engine settings the
/// command line left open (`journal_dir`, `journal_group`) from it.
fn apply_site(request: &mut RunRequest) -> Result<crate::host::config_site::Site, i32> {
    let site =
        crate::host::config_site::Site::load(request.site.as_deref()).map_err(input_error)?;
    crate::run::lock::set_lock_place(
        crate::run::lock::lock_place_for(&site, request.journal_dir.as_deref())
            .map_err(input_error)?,
    );
    if request.journal_dir.is_none() {
        request.journal_dir = site.path_setting("journal_dir");
    }
    if request.journal_group.is_none() {
        request.journal_group = site
            .setting("journal_group")
            .map(|(group, _)| group)
            .filter(|group| !group.is_empty());
    }
    Ok(site)
}

/// Finishes what earlier, interrupted runs of this workflow left to undo
/// (their journals in `journal_dir`, not this run's own).
fn recover_earlier_runs(
    runtime: &tokio::runtime::Runtime,
    state: &RunState,
    journal_dir: &std::path::Path,
    workflow: &Workflow,
) {
    let current = state.journal.as_ref().map(|j| j.path().to_path_buf());
    let recovered = runtime.block_on(crate::run::recovery::recover_all(
        journal_dir,
        false,
        current.as_deref(),
        Some(&workflow.name),
    ));
    crate::run::recovery::report(&recovered, false);
}

/// Adds the site file to the overrides, with the keys the workflows of the
/// site know, when there is anything to check against them; a site file key
/// none knows stops the run here, before its lock and journal.
fn with_site(
    overrides: Overrides,
    site: &crate::host::config_site::Site,
    workflow: &Workflow,
) -> Result<Overrides, i32> {
    use crate::host::config_keys::{known_keys, needs_known_keys};
    let known = if needs_known_keys(site) {
        let known = known_keys(site, Some(workflow));
        site.check_keys(&known).map_err(input_error)?;
        known
    } else {
        Default::default()
    };
    Ok(overrides.with_site(site, known))
}

/// Loads the workflow, checks `--vars`, `--set` and `--metrics-file`, and
/// compiles the script: everything that can be wrong before a lock or a
/// journal exists.
fn load_and_compile(request: &RunRequest) -> Result<(Workflow, Overrides, rhai::AST), i32> {
    let workflow = Workflow::load(&request.workflow).map_err(input_error)?;
    if let Some(vars) = request.vars.as_deref() {
        check_trusted(vars, TrustedUse::VarsFile).map_err(input_error)?;
    }
    let overrides =
        Overrides::from_cli(request.vars.as_deref(), &request.sets).map_err(input_error)?;
    // A metrics file that cannot be written must fail now, not after the run.
    if let Some(path) = &request.metrics_file {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Err(e) = crate::host::file_functions::check_write_access(&folder) {
            return Err(input_error(format!(
                "--metrics-file {}: cannot write in {}: {e}",
                path.display(),
                folder.display()
            )));
        }
    }
    if let Some(path) = &request.summary_json {
        crate::report::summary::check_writable(path).map_err(input_error)?;
    }
    // Compile first: a syntax error stops everything before any lock or journal.
    let mut ast = match crate::host::check::compile(
        &rhai::Engine::new(),
        &workflow.display,
        &workflow.source,
    ) {
        Ok(ast) => ast,
        Err(problem) => {
            print_error(&format!(
                "error: {}\n{}",
                problem.message,
                script_error::source_excerpt(&problem.position, &source_text)
            ));
            return Err(exit_code::INPUT);
        }
    };
    ast.set_source(workflow.display.clone());
    // `cfg.typo` would only show up later as a step's confusing `null`.
    if let Some(problem) =
        crate::host::check_lints::unknown_config_keys(&ast, &workflow.display).first()
    {
        print_error(&format!(
            "error: {}\n{}",
            problem.message,
            script_error::source_excerpt(&problem.position, &source_text)
        ));
        return Err(exit_code::INPUT);
    }
    Ok((workflow, overrides, ast))
}

/// Creates and checks the journal folder, takes the workflow's lock (exit 3
/// when another run holds it) and writes the journal's header.
fn lock_and_open_journal(
    request: &RunRequest,
    workflow: &Workflow,
) -> Result<(PathBuf, RunLock, Journal), i32> {
    let journal_dir = request
        .journal_dir
        .clone()
        .unwrap_or_else(default_journal_dir);
    if let Err(e) = create_private_dir(&journal_dir) {
        return Err(input_error(format!(
            "cannot create the journal folder {}: {e}",
            journal_dir.display()
        )));
    }
    // Recovery carries out the undo actions of the journals found here.
    check_trusted(&journal_dir, TrustedUse::JournalFolder).map_err(input_error)?;
    let lock = match RunLock::acquire(&journal_dir, &workflow.name) {
        Ok(lock) => lock,
        Err(e @ LockError::Held { .. }) => {
            print_error(&format!("error: {e}\n"));
            return Err(exit_code::LOCKED);
        }
        Err(e) => return Err(input_error(e)),
    };
    let header = JournalDoc {
        workflow: workflow.display.clone(),
        workflow_sha256: workflow.sha256(),
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        host: crate::host::journal::hostname(),
        pid: std::process::id(),
        dry_run: request.dry_run,
        started: timestamp(chrono::Utc::now()),
        status: "running".to_string(),
        config: serde_json::Value::Object(Default::default()),
        ..JournalDoc::default()
    };
    let journal_group = match &request.journal_group {
        None => None,
        Some(name) => match nix::unistd::Group::from_name(name) {
            Ok(Some(group)) => Some(group.gid),
            _ => {
                return Err(input_error(format!(
                    "--journal-group {name}: no such group"
                )));
            }
        },
    };
    let journal =
        Journal::create(&journal_dir, &workflow.name, header, journal_group).map_err(|e| {
            input_error(format!(
                "cannot write the journal in {}: {e}",
                journal_dir.display()
            ))
        })?;
    Ok((journal_dir, lock, journal))
}

/// What the script thread gives back: the script's result and the failures
/// of the cleanups run after it.
type ScriptOutcome = (
    Result<(), Box<rhai::EvalAltResult>>,
    Vec<Box<rhai::EvalAltResult>>,
);

/// Runs the script on its own thread, then its deferred cleanups and the
/// run-scoped compensations (newest first), on the same thread.
fn run_script(engine: rhai::Engine, state: &Arc<RunState>, ast: rhai::AST) -> ScriptOutcome {
    let script_state = Arc::clone(state);
    let script = std::thread::Builder::new()
        .name("runbook-script".into())
        .spawn(move || {
            cleanup::push_frame();
            let result = engine.run_ast(&ast);
            crate::host::run_error::record(result.as_ref().err().map(|e| &**e));
            // After a failure, the undo actions are a rollback ("undoing").
            crate::host::run_state::set_rolling_back(result.is_err());
            let mut cleanup_failures = cleanup::run_deferred(&engine, cleanup::pop_frame());
            let run_scoped: Vec<i64> = std::mem::take(
                &mut *script_state
                    .run_compensations
                    .lock()
                    .expect("compensation list poisoned"),
            );
            for id in run_scoped.into_iter().rev() {
                if let Err(error) = script_state.run_compensation(id) {
                    cleanup_failures.push(error);
                }
            }
            (result, cleanup_failures)
        })
        .expect("the script thread starts");
    script.join().expect("the script thread panicked")
}

/// The exit code, the journal status and the error report for the user, from
/// the script's result, the cleanups' failures and the signal received (0:
/// none).
fn judge(
    result: &Result<(), Box<rhai::EvalAltResult>>,
    cleanup_failures: &[Box<rhai::EvalAltResult>],
    state: &RunState,
    workflow: &Workflow,
    signal: i32,
) -> (i32, &'static str, String) {
    let mut report = String::new();
    let mut code = match result {
        Ok(()) if cleanup_failures.is_empty() => exit_code::SUCCESS,
        Ok(()) => exit_code::FAILED,
        Err(error) => {
            report.push_str(&script_error::render(
                error,
                &workflow.display,
                &source_text,
            ));
            // Exit 2 promises "nothing ran": once something may have been
            // changed, any failure is a failed run.
            if script_error::is_input_error(error) && !state.has_changed() {
                exit_code::INPUT
            } else {
                exit_code::FAILED
            }
        }
    };
    for failure in cleanup_failures {
        report.push_str(&format!(
            "error: cleanup failed: {}\n",
            script_error::one_line(failure)
        ));
    }
    // --set/--vars given to a workflow that never calls config(): a typo
    // must not pass silently.
    if code == exit_code::SUCCESS
        && !*state.config_declared.lock().expect("config lock")
        && let Err(e) = state.overrides.check_declared(std::iter::empty())
    {
        report.push_str(&format!("error: {e}\n"));
        code = exit_code::INPUT;
    }
    let status = match signal {
        2 => {
            code = exit_code::SIGINT;
            "interrupted"
        }
        15 => {
            code = exit_code::SIGTERM;
            "interrupted"
        }
        _ if code == exit_code::SUCCESS => "success",
        _ => "failed",
    };
    (code, status, report)
}

/// Closes the journal (end time, status, the masked error report), writes
/// the metrics file and the run summary, and logs the run's last line.
fn record_end(
    request: &RunRequest,
    state: &RunState,
    workflow: &Workflow,
    (status, report): (&str, &str),
    cleanup_failures: &[Box<rhai::EvalAltResult>],
    started: Instant,
) {
    if let Some(journal) = &state.journal {
        let error_text =
            (!report.is_empty()).then(|| crate::host::secrets::mask(report.trim_end()));
        journal.update(|doc| {
            doc.ended = Some(timestamp(chrono::Utc::now()));
            doc.status = status.to_string();
            doc.error = error_text;
        });
        crate::report::metrics::write_after_run(
            request.metrics_file.as_deref(),
            &workflow.name,
            &journal.snapshot(),
        );
        let error = crate::host::run_error::current()
            .or_else(|| cleanup_failures.first().map(|e| script_error::error_map(e)));
        let doc = journal.snapshot();
        let (summary, summary_json) = crate::report::summary::after_run(
            request.summary_json.as_deref(),
            &doc,
            &workflow.name,
            Some(journal.path()),
            error,
        );
        crate::report::notify::after_run(&doc, &summary, &summary_json);
        crate::host::journal_retention::after_run(journal, &workflow.name);
    }
    let elapsed = humantime::format_duration(Duration::from_secs(started.elapsed().as_secs()));
    let journal_path = state
        .journal
        .as_ref()
        .map(|j| j.path().display().to_string())
        .unwrap_or_default();
    let seconds = started.elapsed().as_secs_f64();
    match status {
        "success" => tracing::info!(
            workflow = %workflow.name,
            result = status,
            duration_seconds = seconds,
            journal = %journal_path,
            "{} succeeded in {elapsed} (journal: {journal_path})",
            workflow.display
        ),
        "interrupted" => tracing::warn!(
            workflow = %workflow.name,
            result = status,
            duration_seconds = seconds,
            journal = %journal_path,
            "{} interrupted after {elapsed}; cleanups ran (journal: {journal_path})",
            workflow.display
        ),
        _ => tracing::error!(
            workflow = %workflow.name,
            result = status,
            duration_seconds = seconds,
            journal = %journal_path,
            "{} failed after {elapsed} (journal: {journal_path})",
            workflow.display
        ),
    }
}

/// Cancels the run on the first SIGINT/SIGTERM; later signals are ignored
/// while cleanups run, for up to [`CLEANUP_TIMEOUT`].
async fn watch_signals(cancel: CancellationToken, received: Arc<AtomicI32>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    loop {
        let number = tokio::select! {
            _ = interrupt.recv() => 2,
            _ = terminate.recv() => 15,
        };
        if received
            .compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            let name = if number == 2 { "SIGINT" } else { "SIGTERM" };
            tracing::warn!("{name} received: stopping; running steps are stopped and cleanups run");
            cancel.cancel();
            std::thread::spawn(move || {
                std::thread::sleep(CLEANUP_TIMEOUT);
                eprintln!(
                    "error: cleanups did not finish within {}s after {name}; exiting",
                    CLEANUP_TIMEOUT.as_secs()
                );
                std::process::exit(128 + number);
            });
        } else {
            tracing::warn!(
                "signal ignored: cleanups are running (they stop by themselves within {}s)",
                CLEANUP_TIMEOUT.as_secs()
            );
        }
    }
}

fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
