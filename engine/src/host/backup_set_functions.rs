//! `backup_stamp()`: a new set's stamp (`runbook_steps::backup::layout`);
//! `backup_manifest(manifest_dir, stamp)`: the manifest of one backup set, for
//! scripts that restore (`restore-prep`); `claim_stamp_file(folder, stamp)`:
//! one run's exclusive hold on a stamp; `is_plain_name(text)`: whether a
//! name can go into a URL or file name as it is.
//!
//! A script used to glob `backup_*.json`, take the last name and use the
//! names inside verbatim. That picked the older of two sets across a
//! daylight-saving fall-back (local-time stamps run backwards), and a
//! manifest whose `stamp` is `../../x` made the staging folder escape. Here
//! the set is found through the backup catalogue, which checks every name a
//! manifest gives against the shape runbook writes, and "newest" means the
//! latest `created` time.

use std::path::Path;
use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, NativeCallContext};
use runbook_steps::backup::catalogue::{BackupSet, Catalogue, Origin};
use runbook_steps::backup::layout::{claim_file_name, manifest_file_name, new_stamp, parse_stamp};
use runbook_steps::backup::manifest::Manifest;

use crate::host::run_state::RunState;
use crate::host::script_error::{describe_position, runtime_error};
use runbook_steps::ErrorKind;

/// The set a restore may use: a readable manifest saying complete, every
/// name in it valid.
fn usable(set: &BackupSet) -> bool {
    set.manifest.is_some() && set.complete && set.origin != Origin::Damaged
}

/// Finds the set: `stamp`, or the newest usable set when `stamp` is empty.
/// Returns the manifest's path and its JSON text, or the one line to show.
pub fn find_manifest(manifest_dir: &Path, stamp: &str) -> Result<(String, String), String> {
    if !stamp.is_empty() && parse_stamp(stamp).is_none() {
        return Err(format!(
            "`{stamp}` is not a stamp like 20261126_01h15m00s: set `stamp` to one `runbook list` shows"
        ));
    }
    let catalogue = Catalogue::scan(manifest_dir, &[]).map_err(|e| {
        let cause = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        format!("{e}{cause}")
    })?;
    let set = if stamp.is_empty() {
        catalogue
            .sets
            .iter()
            .filter(|s| usable(s))
            .max_by_key(|s| (s.made_at(), s.stamp.clone()))
            .ok_or_else(|| {
                format!(
                    "no complete backup set in {} (no readable backup_*.json manifest; `runbook list` shows what is there)",
                    manifest_dir.display()
                )
            })?
    } else {
        let manifest = manifest_dir.join(manifest_file_name(stamp));
        catalogue
            .find(stamp)
            .filter(|s| s.manifest.is_some())
            .ok_or_else(|| {
                format!(
                    "no manifest {}: set {stamp} is incomplete or does not exist",
                    manifest.display()
                )
            })?
    };
    let manifest = set.manifest.clone().expect("usable sets have a manifest");
    if !usable(set) {
        return Err(format!(
            "set {} cannot be restored from {}: {}",
            set.stamp,
            manifest.display(),
            set.problems.join("; ")
        ));
    }
    let text = runbook_steps::runtime::regular_file::read_regular_text(
        &manifest,
        runbook_steps::backup::catalogue::MANIFEST_MAX_BYTES,
    )
    .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    Ok((manifest.display().to_string(), text))
}

/// The claim file of `stamp` in `folder`: `.runbook-claim-<STAMP>`.
pub fn claim_path(folder: &Path, stamp: &str) -> std::path::PathBuf {
    folder.join(claim_file_name(stamp))
}

/// Creates the claim file of `stamp` in `folder` exclusively (`O_EXCL`): of
/// two runs that got the same stamp at the same moment (different journal
/// folders, so different locks), exactly one gets it. Under dry-run nothing
/// is created; an existing claim is still an error.
pub fn claim_stamp(folder: &Path, stamp: &str, dry_run: bool) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    if parse_stamp(stamp).is_none() {
        return Err(format!("`{stamp}` is not a stamp like 20261126_01h15m00s"));
    }
    let path = claim_path(folder, stamp);
    if dry_run {
        if path.symlink_metadata().is_ok() {
            return Err(format!(
                "stamp {stamp} is held by another run ({} exists)",
                path.display()
            ));
        }
        tracing::info!("[dry-run] would claim stamp {stamp} ({})", path.display());
        return Ok(path.display().to_string());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            use std::io::Write;
            let _ = writeln!(file, "pid {}", std::process::id());
            Ok(path.display().to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(format!(
            "stamp {stamp} is held by another run ({} exists): two runs got the same stamp; \
             nothing was changed; run again in a second (remove the file if no run is going)",
            path.display()
        )),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

/// The error `name` raises into the script: kind `fail`, at the call's position.
fn function_error(
    c: &NativeCallContext,
    state: &RunState,
    name: &str,
    message: String,
) -> Box<EvalAltResult> {
    runtime_error(
        name,
        ErrorKind::Fail,
        message,
        describe_position(
            c.call_source().or(Some(&state.workflow_display)),
            c.call_position(),
        ),
        c.call_position(),
    )
}

/// Registers `backup_stamp`, `is_backup_stamp`, `backup_manifest`, `claim_stamp_file` and
/// `is_plain_name`.
pub fn register(engine: &mut Engine, state: &Arc<RunState>) {
    // The stamp that names every file of a new set, in the one format the
    // catalogue, retention and the restore read back.
    engine.register_fn("backup_stamp", new_stamp);
    // Whether a text is such a stamp (a real date and time, strictly in that
    // format), for workflows that take one from the config.
    engine.register_fn("is_backup_stamp", |text: &str| parse_stamp(text).is_some());
    engine.register_fn("is_plain_name", |name: &str| {
        runbook_steps::backup::catalogue::is_plain_name(name)
    });
    let s = Arc::clone(state);
    engine.register_fn(
        "claim_stamp_file",
        move |c: NativeCallContext,
              folder: &str,
              stamp: &str|
              -> Result<String, Box<EvalAltResult>> {
            claim_stamp(Path::new(folder), stamp, s.dry_run)
                .map_err(|message| function_error(&c, &s, "claim_stamp_file", message))
        },
    );
    let s = Arc::clone(state);
    engine.register_fn(
        "backup_manifest",
        move |c: NativeCallContext,
              manifest_dir: &str,
              stamp: &str|
              -> Result<rhai::Map, Box<EvalAltResult>> {
            let fail = |message: String| function_error(&c, &s, "backup_manifest", message);
            let (path, text) = find_manifest(Path::new(manifest_dir), stamp).map_err(fail)?;
            // Through the manifest's own type: the same reading as the
            // catalogue's; keys it does not name are passed on as they are.
            let json = Manifest::parse(&text)
                .and_then(|m| serde_json::to_value(&m))
                .map_err(|e| fail(format!("{path} is not a valid manifest: {e}")))?;
            let manifest = rhai::serde::to_dynamic(json).map_err(|e| fail(e.to_string()))?;
            let mut map = rhai::Map::new();
            map.insert("path".into(), Dynamic::from(path));
            map.insert("manifest".into(), manifest);
            Ok(map)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_steps::backup::catalogue::VERIFIED_OK;
    use runbook_steps::registry::find_step;
    use runbook_steps::runtime::step::StepContext;

    const STAMP: &str = "20261124_01h00m00s";

    /// Runs the `write_manifest` step as a workflow does, on two archives.
    fn write_set(root: &Path) -> String {
        let cassandra = root.join(format!("cassandra_{STAMP}.tar"));
        let files = root.join(format!("files_{STAMP}.tar"));
        let marker = root.join(format!("elasticsearch_{STAMP}.info"));
        std::fs::write(&cassandra, b"0123456789").unwrap();
        std::fs::write(&files, b"abc").unwrap();
        std::fs::write(&marker, b"{}").unwrap();
        let options = serde_json::json!({
            "manifest_path": root, "stamp": STAMP,
            "cassandra": {"part": "cassandra", "path": cassandra, "bytes": 10, "sha256": "aa",
                          "entries": 4, "snapshot_tag": format!("cassandra_{STAMP}"),
                          "keyspace": "thehive", "tables": ["t1-0"], "version": "4.1.3",
                          "snapshot_started_ms": 1_795_078_401_000i64, "undo_ids": [1],
                          "warnings": [], "links_outside": []},
            "elasticsearch": {"repository": "repo", "snapshot": format!("elasticsearch_{STAMP}"),
                              "uuid": "u", "state": "SUCCESS", "indices": ["thehive"],
                              "start_time": "2026-11-19T08:53:21.500Z", "end_time": "x",
                              "version": "8.15.0", "shards_total": 1, "marker": marker,
                              "warnings": ["holds no index"], "undo_ids": [2, 3]},
            "storage": {"part": "files", "path": files, "bytes": 3, "sha256": "bb", "entries": 2,
                        "links_outside": ["a -> /etc"], "warnings": null},
            "workflow": "cluster-hot-backup", "workflow_sha256": "cc", "host": "h",
            "config": {"elasticsearch_url": "http://127.0.0.1:9200", "elasticsearch_user": "",
                       "keep": 3},
            "group": "",
        });
        let step = find_step("write_manifest")
            .unwrap()
            .prepare(options)
            .unwrap();
        let out = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(step.run(StepContext::detached("write manifest")))
            .unwrap();
        out["path"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_manifest_the_step_writes_reads_back_through_the_catalogue_and_backup_manifest() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let path = write_set(root);
        assert_eq!(
            path,
            root.join(manifest_file_name(STAMP)).display().to_string()
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!Path::new(&format!("{path}.partial")).exists());
        let text = std::fs::read_to_string(&path).unwrap();
        let written = Manifest::parse(&text).unwrap();

        // The catalogue sees a complete, verified runbook set with both parts.
        let catalogue = Catalogue::scan(root, &[]).unwrap();
        let set = catalogue.find(STAMP).unwrap();
        assert!(set.complete && set.is_verified_ok(), "{set:?}");
        assert_eq!(set.origin, Origin::Runbook);
        assert_eq!(set.written_by, written.origin);
        assert_eq!(set.verified, written.verified);
        assert_eq!(set.verified.as_ref().unwrap().result, VERIFIED_OK);
        assert_eq!(set.created, written.created);
        assert!(set.made_at().is_some());
        assert_eq!(set.present_parts(), ["cassandra", "elasticsearch", "files"]);
        assert!(set.parts.iter().all(|p| p.listed), "{:?}", set.parts);
        assert_eq!(set.warnings, ["elasticsearch: holds no index"]);
        let snapshot = set.snapshot.as_ref().unwrap();
        assert_eq!(snapshot.repository.as_deref(), Some("repo"));
        assert_eq!(snapshot.url.as_deref(), Some("http://127.0.0.1:9200"));

        // backup_manifest() gives the same manifest, every key of the file.
        let (found, found_text) = find_manifest(root, "").unwrap();
        assert_eq!(found, path);
        assert_eq!(Manifest::parse(&found_text).unwrap(), written);
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_value(&written).unwrap(), file);
        // Written again (as verify --set does), it is the same text.
        assert_eq!(written.to_text().unwrap(), text);

        // The fields today's readers use, with the values the parts gave.
        assert_eq!(file["format"], 1);
        assert_eq!(file["stamp"], STAMP);
        assert_eq!(file["snapshot_skew_seconds"], 0.5);
        assert_eq!(
            file["archives"][1]["links_outside"],
            serde_json::json!(["a -> /etc"])
        );
        assert!(file["archives"][0].get("links_outside").is_none());
        assert_eq!(file["cassandra"]["keyspace"], "thehive");
        assert_eq!(
            file["elasticsearch"]["indices"],
            serde_json::json!(["thehive"])
        );
        assert_eq!(file["config"]["keep"], 3);
        assert_eq!(file["origin"]["tool"], "runbook");
        assert_eq!(file["created"], file["verified"]["time"]);
    }
}
