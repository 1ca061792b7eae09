//! `runbook status`: what an admin (or a monitoring probe) asks first — did
//! the last backup run succeed, how old is the newest good backup set, how
//! many sets are kept and how much room is left where they are.
//!
//! Read only: the last run comes from its journal (the file the run itself
//! rewrites after every step, [`crate::host::journal`]), the sets from the
//! backup catalogue ([`runbook_steps::backup::catalogue`]: file names,
//! sizes, manifests; no archive is read and no Elasticsearch is asked —
//! `runbook list` and `runbook verify --set` do that). With `--max-age`, the
//! exit code says whether the newest complete, verified set is recent enough.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use runbook_steps::backup::catalogue::{BackupSet, Catalogue, human_age, human_bytes};
use runbook_steps::backup::layout::STOCK_ARCHIVE_FOLDERS;
use runbook_steps::runtime::wording::count;

use crate::host::journal::JournalDoc;
use crate::report::exit_code;

/// `--max-age` when not given: a nightly backup plus two hours of slack.
pub const DEFAULT_MAX_AGE: &str = "26h";

/// What `runbook status` was asked.
pub struct StatusRequest {
    /// Where the run journals are.
    pub journal_dir: PathBuf,
    /// The workflow whose last run is shown.
    pub workflow: String,
    /// The folder of the set manifests.
    pub manifest_path: PathBuf,
    /// Archive folders (empty: the stock ones under the manifest folder).
    pub archive_paths: Vec<PathBuf>,
    /// The newest complete, verified set must be younger than this.
    pub max_age: Duration,
    /// Print JSON instead of text.
    pub json: bool,
    /// The systemd timer whose next run is shown.
    pub timer: String,
}

/// The last run, from its journal.
#[derive(Debug, Serialize)]
pub struct LastRun {
    /// The journal file.
    pub journal: PathBuf,
    /// The workflow's path (or `stock:NAME`).
    pub workflow: String,
    /// `success`, `failed`, `interrupted`, `running`, or `crashed` (a
    /// journal left `running` by a process that is gone).
    pub result: String,
    /// Start (UTC, RFC 3339).
    pub started: String,
    /// End, if it ended.
    pub ended: Option<String>,
    /// Seconds from start to end (to now while running).
    pub duration_seconds: Option<f64>,
    /// Seconds since it started.
    pub age_seconds: Option<u64>,
    /// The step call that failed, if one did.
    pub failed_step: Option<FailedStep>,
    /// The run's error (first line), if it failed.
    pub error: Option<String>,
}

/// The step call that failed a run.
#[derive(Debug, Serialize)]
pub struct FailedStep {
    /// Its label.
    pub label: String,
    /// The step.
    pub step: String,
    /// `file:line:column` of the call.
    pub position: String,
    /// What the step said.
    pub error: Option<String>,
}

/// The newest complete, verified set.
#[derive(Debug, Serialize)]
pub struct NewestSet {
    /// Its stamp.
    pub stamp: String,
    /// When it was made (the manifest's `created`, else the stamp).
    pub made_at: Option<String>,
    /// Seconds since then.
    pub age_seconds: Option<u64>,
    /// The last verification recorded in its manifest.
    pub verified: Option<String>,
    /// The size of its files.
    pub bytes: u64,
    /// Its parts, e.g. `cassandra`, `elasticsearch`, `files`.
    pub parts: Vec<String>,
}

/// Counts of the sets found.
#[derive(Debug, Default, Serialize)]
pub struct SetCounts {
    /// Every set found.
    pub total: usize,
    /// Complete (a manifest saying so, nothing missing or resized).
    pub complete: usize,
    /// Complete and verified ok.
    pub verified: usize,
    /// No (readable) manifest: failed, interrupted, running or foreign.
    pub incomplete: usize,
    /// A manifest, but archives missing or changed, or unreadable.
    pub damaged: usize,
}

/// Space at one archive folder.
#[derive(Debug, Serialize)]
pub struct FolderSpace {
    /// The folder.
    pub path: PathBuf,
    /// Bytes of the set files in it.
    pub used_bytes: u64,
    /// Bytes available to this user on its filesystem (absent if unknown).
    pub free_bytes: Option<u64>,
}

/// Everything `runbook status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// The workflow whose runs are shown.
    pub workflow: String,
    /// Its last run that was not a dry-run, if a journal records one.
    pub last_run: Option<LastRun>,
    /// The newest complete, verified set, if there is one.
    pub newest_complete_set: Option<NewestSet>,
    /// `--max-age` in seconds.
    pub max_age_seconds: u64,
    /// True when the newest complete, verified set is younger than
    /// `max_age_seconds` (the exit code is 1 otherwise).
    pub fresh: bool,
    /// The sets found.
    pub sets: SetCounts,
    /// Each folder searched: space used by sets and free.
    pub folders: Vec<FolderSpace>,
    /// The next run of the systemd timer, if systemd knows it (`state`
    /// says `unknown` on a machine without systemd).
    pub next_timer_run: crate::cli::next_timer::NextTimerRun,
    /// What could not be read.
    pub warnings: Vec<String>,
}

/// `runbook status`.
pub fn status(request: &StatusRequest) -> i32 {
    let catalogue = match Catalogue::scan(&request.manifest_path, &archive_folders(request)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: {} (give the folder of the set manifests with --manifest-path)",
                runbook_steps::runtime::error::one_line(&e)
            );
            return exit_code::INPUT;
        }
    };
    let status = gather(request, &catalogue);
    if request.json {
        match serde_json::to_string_pretty(&status) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot write the status as JSON: {e}");
                return exit_code::FAILED;
            }
        }
    } else {
        for warning in &status.warnings {
            eprintln!("warning: {warning}");
        }
        print!("{}", text(&status));
    }
    if status.fresh {
        exit_code::SUCCESS
    } else {
        exit_code::FAILED
    }
}

/// The folders searched for archives: those asked for, else the stock ones
/// that exist under the manifest folder.
fn archive_folders(request: &StatusRequest) -> Vec<PathBuf> {
    if request.archive_paths.is_empty() {
        STOCK_ARCHIVE_FOLDERS
            .iter()
            .map(|name| request.manifest_path.join(name))
            .filter(|p| p.is_dir())
            .collect()
    } else {
        request.archive_paths.clone()
    }
}

/// The status from the catalogue, the last run's journal and the timer.
fn gather(request: &StatusRequest, catalogue: &Catalogue) -> Status {
    let mut warnings = catalogue.warnings.clone();
    let last_run = match last_run(&request.journal_dir, &request.workflow) {
        Ok(run) => run,
        Err(warning) => {
            warnings.push(warning);
            None
        }
    };
    let newest = newest_verified(catalogue).map(|set| NewestSet {
        stamp: set.stamp.clone(),
        made_at: set.made_at().map(|t| t.to_rfc3339()),
        age_seconds: age_of(set),
        verified: set
            .verified
            .as_ref()
            .map(|v| format!("{} {}", v.result, v.time)),
        bytes: set.bytes,
        parts: set.present_parts().iter().map(|p| p.to_string()).collect(),
    });
    let max_age_seconds = request.max_age.as_secs();
    let fresh = newest
        .as_ref()
        .and_then(|n| n.age_seconds)
        .is_some_and(|age| age < max_age_seconds);
    Status {
        workflow: request.workflow.clone(),
        last_run,
        newest_complete_set: newest,
        max_age_seconds,
        fresh,
        sets: counts(catalogue),
        folders: folder_space(catalogue),
        next_timer_run: crate::cli::next_timer::ask(&request.timer),
        warnings,
    }
}

/// Seconds since the set was made.
fn age_of(set: &BackupSet) -> Option<u64> {
    match set.made_at() {
        Some(made) => Some(
            (chrono::Utc::now() - made.with_timezone(&chrono::Utc))
                .num_seconds()
                .max(0) as u64,
        ),
        None => set.age_seconds,
    }
}

fn newest_verified(catalogue: &Catalogue) -> Option<&BackupSet> {
    catalogue
        .sets
        .iter()
        .filter(|s| s.is_verified_ok())
        .max_by_key(|s| s.made_at())
}

fn counts(catalogue: &Catalogue) -> SetCounts {
    let mut counts = SetCounts {
        total: catalogue.sets.len(),
        ..SetCounts::default()
    };
    for set in &catalogue.sets {
        match (set.complete, set.problems.is_empty()) {
            (true, true) => counts.complete += 1,
            (true, false) => counts.damaged += 1,
            (false, _) if set.manifest.is_some() && !set.problems.is_empty() => counts.damaged += 1,
            (false, _) => counts.incomplete += 1,
        }
        if set.is_verified_ok() {
            counts.verified += 1;
        }
    }
    counts
}

/// The bytes of set files in each folder searched, and the space free there.
fn folder_space(catalogue: &Catalogue) -> Vec<FolderSpace> {
    let mut used: BTreeMap<PathBuf, u64> = BTreeMap::new();
    for set in &catalogue.sets {
        let files = set
            .manifest
            .iter()
            .chain(set.parts.iter().filter(|p| p.present).map(|p| &p.path))
            .chain(set.other_files.iter());
        for file in files {
            if let (Some(folder), Ok(meta)) = (file.parent(), std::fs::metadata(file)) {
                *used.entry(folder.to_path_buf()).or_default() += meta.len();
            }
        }
    }
    catalogue
        .folders
        .iter()
        .map(|folder| FolderSpace {
            path: folder.clone(),
            used_bytes: used.get(folder).copied().unwrap_or(0),
            free_bytes: runbook_steps::files::disk_free(folder).ok(),
        })
        .collect()
}

/// The newest journal of `workflow` in `dir` that is not a dry-run.
fn last_run(dir: &Path, workflow: &str) -> Result<Option<LastRun>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "no journal folder {} (give it with --journal-dir, or RUNBOOK_JOURNAL_DIR)",
                dir.display()
            ));
        }
        Err(e) => {
            return Err(format!(
                "cannot list the journal folder {}: {e}",
                dir.display()
            ));
        }
    };
    let suffix = format!("-{workflow}.json");
    let mut journals: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        })
        .collect();
    // The name starts with the UTC start time: newest last.
    journals.sort();
    let mut unreadable = None;
    for path in journals.iter().rev() {
        let doc: JournalDoc = match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(doc) => doc,
            Err(e) => {
                unreadable
                    .get_or_insert(format!("cannot read the journal {}: {e}", path.display()));
                continue;
            }
        };
        if doc.dry_run {
            continue;
        }
        if let Some(warning) = unreadable {
            tracing::debug!("{warning}");
        }
        return Ok(Some(describe_run(path, &doc)));
    }
    match unreadable {
        Some(warning) => Err(warning),
        None => Ok(None),
    }
}

fn describe_run(path: &Path, doc: &JournalDoc) -> LastRun {
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let started = parse(&doc.started);
    let now = chrono::Utc::now().fixed_offset();
    let ended = doc.ended.as_deref().and_then(parse);
    let mut result = doc.status.clone();
    if result == "running" && !process_alive(doc) {
        result = "crashed".to_string();
    }
    let duration_seconds = started.map(|s| {
        let end = match (&ended, result.as_str()) {
            (Some(end), _) => *end,
            (None, "running") => now,
            // A crashed run: until its last step record, as far as is known.
            (None, _) => doc
                .steps
                .iter()
                .filter_map(|r| {
                    parse(&r.started)
                        .map(|t| t + chrono::Duration::milliseconds(r.duration_ms as i64))
                })
                .max()
                .unwrap_or(s),
        };
        ((end - s).num_milliseconds().max(0) as f64) / 1000.0
    });
    // The failed call the run's error names: a failure the script caught
    // (`try { ... } catch`) did not fail the run.
    let run_error = doc.error.as_deref().unwrap_or("");
    let failed_step = doc
        .steps
        .iter()
        .rev()
        .filter(|_| result != "success")
        .find(|r| r.status == "failed" && r.error.as_deref().is_some_and(|e| run_error.contains(e)))
        .map(|r| FailedStep {
            label: r.label.clone(),
            step: r.step.clone(),
            position: r.position.clone(),
            error: r.error.clone(),
        });
    LastRun {
        journal: path.to_path_buf(),
        workflow: doc.workflow.clone(),
        result,
        started: doc.started.clone(),
        ended: doc.ended.clone(),
        duration_seconds,
        age_seconds: started.map(|s| (now - s).num_seconds().max(0) as u64),
        failed_step,
        error: doc
            .error
            .as_deref()
            .and_then(|e| e.lines().next())
            .map(|l| l.trim_start_matches("error: ").to_string()),
    }
}

/// True when the journal's process still runs on this host.
fn process_alive(doc: &JournalDoc) -> bool {
    if doc.host != crate::host::journal::hostname() {
        return true; // another host's run: not ours to call crashed
    }
    let pid = nix::unistd::Pid::from_raw(doc.pid as i32);
    !matches!(
        nix::sys::signal::kill(pid, None),
        Err(nix::errno::Errno::ESRCH)
    )
}

fn seconds_text(seconds: f64) -> String {
    human_age(seconds.round() as u64)
}

/// The human report.
pub fn text(status: &Status) -> String {
    let mut out = last_run_text(&status.workflow, status.last_run.as_ref());
    out.push_str(&newest_set_text(status));
    let c = &status.sets;
    out.push_str(&format!(
        "sets kept:    {}: {} complete ({} verified), {} incomplete, {} damaged\n",
        count(c.total as u64, "set"),
        c.complete,
        c.verified,
        c.incomplete,
        c.damaged
    ));
    for folder in &status.folders {
        let free = folder
            .free_bytes
            .map(human_bytes)
            .unwrap_or_else(|| "?".to_string());
        out.push_str(&format!(
            "space:        {}: {} used by sets, {free} free\n",
            folder.path.display(),
            human_bytes(folder.used_bytes)
        ));
    }
    out.push_str(&crate::cli::next_timer::text(&status.next_timer_run));
    out
}

/// The `last run:` lines: its result, when and how long, where it failed.
fn last_run_text(workflow: &str, last_run: Option<&LastRun>) -> String {
    let Some(run) = last_run else {
        return format!("last run:     none recorded for {workflow}\n");
    };
    let ago = run
        .age_seconds
        .map(|a| format!(" ({} ago)", human_age(a)))
        .unwrap_or_default();
    let took = run
        .duration_seconds
        .map(|d| format!(", took {}", seconds_text(d)))
        .unwrap_or_default();
    let mut out = format!(
        "last run:     {} {}, started {}{ago}{took}\n",
        run.result.to_uppercase(),
        run.workflow,
        run.started
    );
    if let Some(step) = &run.failed_step {
        let label = if step.label == step.step {
            step.step.clone()
        } else {
            format!("{} ({})", step.step, step.label)
        };
        out.push_str(&format!(
            "  failed at:  step {label} at {}: {}\n",
            step.position,
            step.error.as_deref().unwrap_or("")
        ));
    } else if let Some(error) = &run.error {
        out.push_str(&format!("  error:      {error}\n"));
    }
    out.push_str(&format!("  journal:    {}\n", run.journal.display()));
    out
}

/// The `newest set:` line: its stamp, verification, size and age against
/// `--max-age`.
fn newest_set_text(status: &Status) -> String {
    let limit = human_age(status.max_age_seconds);
    let Some(set) = &status.newest_complete_set else {
        return format!("newest set:   NONE complete and verified (max age {limit}: STALE)\n");
    };
    let age = set
        .age_seconds
        .map(human_age)
        .unwrap_or_else(|| "?".to_string());
    let verdict = if status.fresh { "ok" } else { "STALE" };
    format!(
        "newest set:   {} complete, verified {}, {}, {} old (max age {limit}: {verdict})\n",
        set.stamp,
        set.verified.as_deref().unwrap_or("-"),
        human_bytes(set.bytes),
        age
    )
}

/// `runbook status` arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Where run journals are [default: /var/lib/runbook as root, else
    /// $XDG_STATE_HOME/runbook].
    #[arg(long, value_name = "DIR", env = "RUNBOOK_JOURNAL_DIR")]
    journal_dir: Option<PathBuf>,
    /// The workflow whose last run is shown (its name: the file stem or the
    /// stock name).
    #[arg(long, value_name = "NAME", default_value = "cluster-hot-backup")]
    workflow: String,
    /// The folder of the set manifests [default: the site's manifest_path
    /// (RUNBOOK_MANIFEST_PATH, site file), else /mnt/backup].
    #[arg(long, value_name = "DIR")]
    manifest_path: Option<PathBuf>,
    /// A folder of archives and .info markers (repeatable) [default: the
    /// stock folders cassandra, elasticsearch, storage, minio under the
    /// manifest folder]. Folders the manifests name are always searched.
    #[arg(long = "archive-path", value_name = "DIR")]
    archive_paths: Vec<PathBuf>,
    /// Exit 1 when the newest complete, verified set is older than this
    /// (or there is none), e.g. 26h, 8d.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_MAX_AGE, value_parser = humantime::parse_duration)]
    max_age: Duration,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    /// The systemd timer whose next run is shown (the one `runbook init` writes).
    #[arg(long, value_name = "UNIT", default_value = crate::cli::schedule_units::TIMER_NAME)]
    timer: String,
}

impl StatusArgs {
    /// The request, with what the flags leave open from the site file (and
    /// `RUNBOOK_<KEY>`), else the defaults.
    pub fn into_request(self, site: &crate::host::config_site::Site) -> StatusRequest {
        use crate::cli::site_config as from_site;
        let manifest_path = from_site::manifest_path(site, self.manifest_path);
        StatusRequest {
            journal_dir: from_site::journal_dir(site, self.journal_dir),
            workflow: self.workflow,
            archive_paths: from_site::archive_paths(site, self.archive_paths, &manifest_path),
            manifest_path,
            max_age: self.max_age,
            json: self.json,
            timer: self.timer,
        }
    }
}
