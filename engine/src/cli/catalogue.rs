//! `runbook list` (the backup sets found) and `runbook verify --set STAMP`
//! (re-verify a set against its manifest and record the result in it).

use runbook_steps::runtime::error::one_line;
use std::path::{Path, PathBuf};

use runbook_steps::backup::archive_check::verify_set_archive;
use runbook_steps::backup::catalogue::{BackupSet, Catalogue, Origin, human_age, human_bytes};
use runbook_steps::backup::layout::{STOCK_ARCHIVE_FOLDERS, manifest_file_name, parse_stamp};
use runbook_steps::backup::manifest::{Manifest, Verification, manifest_time_now};
use runbook_steps::backup::snapshot_check::{SnapshotState, check_catalogue_snapshots};
use runbook_steps::runtime::blocking_work::WorkControl;
use runbook_steps::runtime::secret::Secret;

use crate::report::exit_code;

/// How long asking one Elasticsearch about snapshots may take (retries of
/// transient errors included) before `list` and `verify` give up on it.
const SNAPSHOT_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Asks Elasticsearch about the snapshots of `catalogue`'s sets (see
/// [`check_catalogue_snapshots`]); the warnings to show.
fn check_snapshots(catalogue: &mut Catalogue, url: Option<&str>) -> Vec<String> {
    let password = crate::host::secrets::read_secret("ELASTICSEARCH_PASSWORD")
        .ok()
        .and_then(|p| serde_json::from_value::<Secret>(serde_json::Value::String(p)).ok());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return vec![format!(
                "snapshots not checked: cannot start a runtime: {e}"
            )];
        }
    };
    runtime.block_on(check_catalogue_snapshots(
        catalogue,
        url,
        password.as_ref(),
        SNAPSHOT_CHECK_TIMEOUT,
    ))
}

/// `runbook list [--manifest-path DIR] [--archive-path DIR]... [--json] [--elasticsearch-url URL]`.
pub fn list(
    manifest_path: &Path,
    archive_paths: &[PathBuf],
    json: bool,
    elasticsearch_url: Option<&str>,
) -> i32 {
    let folders: Vec<PathBuf> = if archive_paths.is_empty() {
        STOCK_ARCHIVE_FOLDERS
            .iter()
            .map(|name| manifest_path.join(name))
            .filter(|p| p.is_dir())
            .collect()
    } else {
        archive_paths.to_vec()
    };
    let mut catalogue = match Catalogue::scan(manifest_path, &folders) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            return exit_code::INPUT;
        }
    };
    let warnings = check_snapshots(&mut catalogue, elasticsearch_url);
    catalogue.warnings.extend(warnings);
    if json {
        match serde_json::to_string_pretty(&catalogue) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot write the list as JSON: {e}");
                return exit_code::FAILED;
            }
        }
        return exit_code::SUCCESS;
    }
    for warning in &catalogue.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", table(&catalogue));
    exit_code::SUCCESS
}

/// The human table: one line per set, newest first, problems under their set.
pub fn table(catalogue: &Catalogue) -> String {
    let searched = catalogue
        .folders
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if catalogue.sets.is_empty() {
        return format!("no backup sets in {searched}\n");
    }
    let header = [
        "STAMP", "STATE", "ORIGIN", "VERIFIED", "PARTS", "SNAPSHOT", "SIZE", "AGE",
    ]
    .map(str::to_string);
    let rows: Vec<[String; 8]> = catalogue.sets.iter().rev().map(row).collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 8]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i == cells.len() - 1 {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:width$}  "));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(&header);
    for (set, row) in catalogue.sets.iter().rev().zip(&rows) {
        out.push_str(&line(row));
        for problem in &set.problems {
            out.push_str(&format!("    ! {problem}\n"));
        }
        if let Some(v) = &set.verified {
            for error in &v.errors {
                out.push_str(&format!("    ! last verification: {error}\n"));
            }
        }
    }
    let complete = catalogue.sets.iter().filter(|s| s.complete).count();
    let verified = catalogue.sets.iter().filter(|s| s.is_verified_ok()).count();
    let others = catalogue
        .sets
        .iter()
        .filter(|s| s.origin != Origin::Runbook)
        .count();
    let others = if others > 0 {
        format!(", {others} foreign or damaged (retention never touches them)")
    } else {
        String::new()
    };
    out.push_str(&format!(
        "\n{}: {complete} complete, {verified} complete and verified{others}; searched {searched}\n",
        runbook_steps::runtime::wording::count(catalogue.sets.len() as u64, "set")
    ));
    out
}

fn row(set: &BackupSet) -> [String; 8] {
    let state = if set.complete && set.problems.is_empty() && set.warnings.is_empty() {
        "complete"
    } else if set.complete && set.problems.is_empty() {
        "complete with warnings"
    } else if set.complete {
        "DAMAGED"
    } else {
        "INCOMPLETE"
    };
    let verified = match &set.verified {
        Some(v) => format!("{} {}", v.result, v.time),
        None => "-".to_string(),
    };
    let parts = set.present_parts();
    let origin = match (set.origin, &set.written_by) {
        (Origin::Runbook, Some(by)) => by.workflow.clone(),
        (Origin::Runbook, None) => "runbook".to_string(),
        (Origin::Foreign, _) => "foreign".to_string(),
        (Origin::Damaged, _) => "DAMAGED".to_string(),
    };
    [
        set.stamp.clone(),
        state.to_string(),
        origin,
        verified,
        if parts.is_empty() {
            "-".to_string()
        } else {
            parts.join(",")
        },
        match (&set.snapshot_state, &set.snapshot) {
            (Some(state), _) => state.summary(),
            (None, Some(_)) => "unchecked".to_string(),
            (None, None) => "-".to_string(),
        },
        human_bytes(set.bytes),
        set.age_seconds
            .map(human_age)
            .unwrap_or_else(|| "?".to_string()),
    ]
}

/// `runbook verify --set STAMP [--manifest-path DIR] [--json]`: every archive
/// the manifest lists is read end to end and compared with the manifest's
/// SHA-256 (and its `.sha256` sidecar); the marker must exist. The result is
/// recorded in the manifest as `verified: {time, result, errors}`.
pub fn verify_set(
    manifest_dir: &Path,
    stamp: &str,
    json: bool,
    elasticsearch_url: Option<&str>,
) -> i32 {
    let manifest_path = manifest_dir.join(manifest_file_name(stamp));
    let mut view = match read_manifest_to_verify(stamp, &manifest_path) {
        Ok(view) => view,
        Err(code) => return code,
    };
    let (mut errors, archives) = check_archives_and_marker(&view, json);
    errors.extend(snapshot_errors(
        manifest_dir,
        stamp,
        elasticsearch_url,
        json,
    ));

    let verification = Verification {
        time: manifest_time_now(),
        result: if errors.is_empty() { "ok" } else { "failed" }.to_string(),
        errors: errors.clone(),
    };
    // `errors` is always written (empty when ok), so scripts can rely on it.
    view.verified = Some(verification.clone());
    let recorded = view.rewrite_keeping_owner(&manifest_path);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "stamp": stamp, "manifest": manifest_path, "result": verification.result,
                "time": verification.time, "errors": errors, "archives": archives,
                "recorded": recorded.is_ok(),
            })
        );
    }
    if let Err(e) = &recorded {
        eprintln!(
            "error: cannot record the verification in {}: {e}",
            manifest_path.display()
        );
        return exit_code::FAILED;
    }
    if errors.is_empty() {
        if !json {
            println!(
                "set {stamp}: verified ok (recorded in {})",
                manifest_path.display()
            );
        }
        exit_code::SUCCESS
    } else {
        if !json {
            println!(
                "set {stamp}: verification FAILED, {} (recorded in {}):",
                runbook_steps::runtime::wording::count(errors.len() as u64, "problem"),
                manifest_path.display()
            );
            for error in &errors {
                println!("  {error}");
            }
        }
        exit_code::FAILED
    }
}

/// The manifest of set `stamp` at `manifest_path`, or the exit code after
/// its message: 2 for a bad stamp or a set without manifest, 1 for one that
/// cannot be read or parsed.
fn read_manifest_to_verify(stamp: &str, manifest_path: &Path) -> Result<Manifest, i32> {
    if parse_stamp(stamp).is_none() {
        eprintln!(
            "error: `{stamp}` is not a stamp like 20261126_01h15m00s (`runbook list` shows the sets)"
        );
        return Err(exit_code::INPUT);
    }
    // Only a regular file: a FIFO named like a manifest must not hang `verify`.
    let text = match runbook_steps::runtime::regular_file::read_regular_text(
        manifest_path,
        runbook_steps::backup::catalogue::MANIFEST_MAX_BYTES,
    ) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "error: no manifest {} (an incomplete set has none and cannot be verified; `runbook list` shows the sets)",
                manifest_path.display()
            );
            return Err(exit_code::INPUT);
        }
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", manifest_path.display());
            return Err(exit_code::FAILED);
        }
    };
    let view = match Manifest::parse(&text) {
        Ok(view) => view,
        Err(e) => {
            eprintln!(
                "error: {} is not a valid manifest: {e}",
                manifest_path.display()
            );
            return Err(exit_code::FAILED);
        }
    };

    Ok(view)
}

/// Reads every archive the manifest lists end to end (printing a line for
/// each unless `json`) and checks the marker exists: the problems found and
/// each archive's JSON entry.
fn check_archives_and_marker(view: &Manifest, json: bool) -> (Vec<String>, Vec<serde_json::Value>) {
    let mut errors: Vec<String> = Vec::new();
    let mut archives = Vec::new();
    if view.archives.is_empty() {
        errors.push("the manifest lists no archive".to_string());
    }
    for archive in &view.archives {
        let outcome = verify_one(archive);
        match &outcome {
            Ok(line) if !json => println!("{line}"),
            // The error names the archive.
            Err(e) if !json => println!("BAD {e}"),
            _ => {}
        }
        archives.push(serde_json::json!({
            "part": archive.part, "path": archive.path, "ok": outcome.is_ok(),
            "error": outcome.as_ref().err(),
        }));
        if let Err(e) = outcome {
            errors.push(e);
        }
    }
    if let Some(marker) = view.elasticsearch.as_ref().and_then(|e| e.marker.as_ref())
        && !marker.is_file()
    {
        errors.push(format!("marker {} is missing", marker.display()));
    }
    (errors, archives)
}

/// What is wrong with the set's manifest names and its Elasticsearch
/// snapshot: the snapshot must exist in the repository the manifest names
/// with state SUCCESS (archives alone cannot restore the indices). A
/// snapshot that cannot be asked about is an error too: "verified ok" is
/// only said of what was seen.
fn snapshot_errors(
    manifest_dir: &Path,
    stamp: &str,
    elasticsearch_url: Option<&str>,
    json: bool,
) -> Vec<String> {
    let mut catalogue = match Catalogue::scan(manifest_dir, &[]) {
        Ok(catalogue) => catalogue,
        Err(e) => return vec![one_line(&e)],
    };
    catalogue.sets.retain(|s| s.stamp == stamp);
    let Some(set) = catalogue.sets.first() else {
        return vec![format!("set {stamp} is not in {}", manifest_dir.display())];
    };
    if set.origin == Origin::Damaged {
        return set.problems.clone();
    }
    let Some(snapshot) = set.snapshot.clone().filter(|s| s.listed) else {
        return vec!["the manifest names no Elasticsearch snapshot".to_string()];
    };
    let warnings = check_snapshots(&mut catalogue, elasticsearch_url);
    let set = &catalogue.sets[0];
    let name = format!(
        "{}/{}",
        snapshot.repository.as_deref().unwrap_or("?"),
        snapshot.name
    );
    match &set.snapshot_state {
        Some(SnapshotState::Success) => {
            if !json {
                println!("ok Elasticsearch snapshot {name}: SUCCESS");
            }
            Vec::new()
        }
        Some(SnapshotState::Unknown(_)) => warnings,
        Some(SnapshotState::Missing | SnapshotState::Other(_)) => set
            .problems
            .iter()
            .filter(|p| p.starts_with("Elasticsearch snapshot"))
            .cloned()
            .collect(),
        None if snapshot.repository.is_none() => {
            vec![format!(
                "the manifest names snapshot {} without its repository",
                snapshot.name
            )]
        }
        None => match &snapshot.untrusted {
            Some(why) => vec![format!(
                "Elasticsearch snapshot {name} not checked at the URL the manifest records: {why}; give --elasticsearch-url"
            )],
            None => vec![format!(
                "Elasticsearch snapshot {name} not checked: the manifest records no elasticsearch_url; give --elasticsearch-url"
            )],
        },
    }
}

/// Verifies one archive against the manifest's SHA-256 and size, and checks
/// its sidecar agrees with the manifest.
fn verify_one(
    archive: &runbook_steps::backup::catalogue::ManifestArchive,
) -> Result<String, String> {
    let path = &archive.path;
    let report =
        verify_set_archive(archive, &WorkControl::new("verify")).map_err(|e| one_line(&e))?;
    Ok(format!(
        "ok {}: {} entries, {} bytes, sha256 matches the manifest",
        path.display(),
        report.entries,
        report.bytes
    ))
}
