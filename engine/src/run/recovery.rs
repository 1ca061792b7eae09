//! Crash recovery: finds journals of runs that never finished (status
//! `running`, no live process, lock free), and of runs with an undo action
//! that failed, and carries out their pending compensations. A failed undo
//! stays pending with its reason, to be tried again. Journals another user
//! could have written are refused. Runs at the start of every run and as
//! `runbook recover`.

use std::path::{Path, PathBuf};

use crate::host::compensation::carry_out;
use crate::host::file_safety::{TrustedUse, check_trusted};
use crate::host::journal::{Journal, JournalDoc, timestamp};
use crate::run::lock::RunLock;

/// What recovery did for one abandoned run.
#[derive(Debug)]
pub struct Recovered {
    /// The abandoned run's journal.
    pub journal: PathBuf,
    /// Its workflow.
    pub workflow: String,
    /// Each pending compensation: its label and the outcome.
    pub actions: Vec<(String, Result<(), String>)>,
    /// Why the journal was not used (another user could have written it).
    pub refused: Option<String>,
}

/// The workflow name in a journal file name `<UTC time>-<name>.json`.
fn workflow_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    stem.split_once('-').map(|(_, name)| name.to_string())
}

fn process_is_runbook(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmdline| String::from_utf8_lossy(&cmdline).contains("runbook"))
        .unwrap_or(false)
}

/// Recovers every abandoned run in `journal_dir`. `current` is this run's
/// journal and `held_workflow` the workflow whose lock this process holds.
pub async fn recover_all(
    journal_dir: &Path,
    dry_run: bool,
    current: Option<&Path>,
    held_workflow: Option<&str>,
) -> Vec<Recovered> {
    let paths = journals_in(journal_dir, current);
    let mut recovered = Vec::new();
    for path in paths {
        // Its undo actions are commands run as this user: a journal another
        // user could have written is never read.
        if let Err(e) = check_trusted(&path, TrustedUse::Journal) {
            recovered.push(Recovered {
                journal: path,
                workflow: String::new(),
                actions: Vec::new(),
                refused: Some(e.to_string()),
            });
            continue;
        }
        let Ok(journal) = Journal::open(&path) else {
            continue;
        };
        let doc = journal.snapshot();
        let abandoned =
            doc.status == "running" && doc.ended.is_none() && !process_is_runbook(doc.pid);
        // An undo that failed before stays pending with its error: try again.
        let retry = doc.ended.is_some()
            && doc
                .compensations
                .iter()
                .any(|c| c.state == "pending" && c.error.is_some());
        if !abandoned && !retry {
            continue;
        }
        // Hold the abandoned workflow's lock while undoing, so a new run of it
        // cannot start meanwhile (this process may already hold it).
        let name = workflow_name(&path).unwrap_or_default();
        let _lock = if held_workflow == Some(name.as_str()) {
            None
        } else {
            match RunLock::acquire(journal_dir, &name) {
                Ok(lock) => Some(lock),
                Err(_) => continue,
            }
        };
        if abandoned {
            // A program the killed run started may still be changing what
            // the undo actions clean up.
            crate::run::orphans::settle_programs_of(doc.pid, dry_run).await;
        }
        let actions = undo_pending(&journal, &doc, dry_run).await;
        if !dry_run && abandoned {
            mark_crashed(&journal, &actions);
        }
        recovered.push(Recovered {
            journal: path,
            workflow: doc.workflow.clone(),
            actions,
            refused: None,
        });
    }
    recovered
}

/// The journals in `journal_dir`, oldest first, but `current` (this run's).
fn journals_in(journal_dir: &Path, current: Option<&Path>) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(journal_dir)
        .map(|dir| dir.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "json") && Some(p.as_path()) != current);
    paths.sort();
    paths
}

/// Carries out the pending compensations of `doc`, newest first (or says
/// what it would do, with `dry_run`), and records each outcome in `journal`:
/// done, or still pending with its reason. Each action's label and outcome.
async fn undo_pending(
    journal: &Journal,
    doc: &JournalDoc,
    dry_run: bool,
) -> Vec<(String, Result<(), String>)> {
    let mut actions = Vec::new();
    for compensation in doc
        .compensations
        .iter()
        .rev()
        .filter(|c| c.state == "pending")
    {
        let outcome = carry_out(&compensation.action, &compensation.label, dry_run)
            .await
            .map_err(|e| crate::host::secrets::mask(&e.to_string()));
        if !dry_run {
            // A failed undo stays pending, with its reason: the next
            // `recover` (or run) tries it again.
            let (state, error) = match &outcome {
                Ok(()) => ("done", None),
                Err(e) => ("pending", Some(e.clone())),
            };
            journal.update(|doc| {
                if let Some(c) = doc
                    .compensations
                    .iter_mut()
                    .find(|c| c.id == compensation.id)
                {
                    c.state = state.to_string();
                    c.error = error;
                }
            });
        }
        actions.push((compensation.label.clone(), outcome));
    }
    actions
}

/// Records in `journal` that its run ended without finishing and what
/// recovery did about it.
fn mark_crashed(journal: &Journal, actions: &[(String, Result<(), String>)]) {
    let failed = actions.iter().filter(|(_, r)| r.is_err()).count();
    journal.update(|doc| {
        doc.status = "crashed".to_string();
        doc.ended = Some(timestamp(chrono::Utc::now()));
        doc.error = Some(format!(
            "the run ended without finishing (killed?); recovery by pid {} carried out {}, {failed} failed and stay pending",
            std::process::id(),
            runbook_steps::runtime::wording::count(actions.len() as u64, "undo action")
        ));
    });
}

/// Logs what recovery did; returns false when an action failed.
pub fn report(recovered: &[Recovered], dry_run: bool) -> bool {
    let mut all_ok = true;
    for run in recovered {
        if let Some(reason) = &run.refused {
            all_ok = false;
            tracing::error!("{reason}");
            continue;
        }
        tracing::warn!(
            "found an unfinished run of {} ({}): {}",
            run.workflow,
            run.journal.display(),
            runbook_steps::runtime::wording::count(run.actions.len() as u64, "pending undo action")
        );
        for (label, outcome) in &run.actions {
            match outcome {
                Ok(()) if dry_run => tracing::info!("  would undo: {label}"),
                Ok(()) => tracing::info!("  undone: {label}"),
                Err(e) => {
                    all_ok = false;
                    tracing::error!(
                        "  could not undo {label}: {e} (it stays pending: the next `runbook recover` tries it again)"
                    );
                }
            }
        }
    }
    all_ok
}
