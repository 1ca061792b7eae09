//! The site file seen from the command line: loading and checking it for the
//! commands that run no workflow (`list`, `verify --set`, `status`,
//! `recover`), the paths those commands take from it, `runbook config`, and
//! the `site.toml` that `runbook init` writes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::host::config::{Origin, Overrides};
use crate::host::config_keys::{known_keys, needs_known_keys, probe};
use crate::host::config_probe::ProbeMode;
use crate::host::config_site::{ENGINE_SETTINGS, Site, is_secret_key};
use crate::host::workflow::{Workflow, stock_workflow_names};
use crate::report::exit_code;

/// The config keys of the archive folders `list` and `status` search.
pub const ARCHIVE_PATH_KEYS: [&str; 4] = [
    "cassandra_archive_path",
    "elasticsearch_archive_path",
    "storage_archive_path",
    "s3_archive_path",
];

/// Loads the site file for a command that runs no workflow and checks its
/// keys and the `RUNBOOK_*` variables against every key the site knows.
/// Err: the exit code, after the one-line message.
pub fn load_checked(flag: Option<&Path>) -> Result<Site, i32> {
    let site = Site::load(flag).map_err(input_error)?;
    if needs_known_keys(&site) {
        let known = known_keys(&site, None);
        site.check_keys(&known).map_err(input_error)?;
        crate::host::config_rules::check_environment_for(
            std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()),
            known.iter().map(String::as_str),
            "any workflow of this site",
        )
        .map_err(input_error)?;
    }
    Ok(site)
}

fn input_error(message: impl std::fmt::Display) -> i32 {
    eprintln!("error: {message}");
    exit_code::INPUT
}

/// The manifest folder: `flag`, else `RUNBOOK_MANIFEST_PATH`, else the site
/// file's `manifest_path`, else /mnt/backup.
pub fn manifest_path(site: &Site, flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| site.path_setting("manifest_path"))
        .unwrap_or_else(|| PathBuf::from(runbook_steps::backup::layout::DEFAULT_MANIFEST_FOLDER))
}

/// The archive folders to search: the flags, else the site's archive paths
/// (`cassandra_archive_path`, ...; environment or site file) followed by the
/// stock folders under the manifest folder that exist; empty when neither
/// (the catalogue's own default).
pub fn archive_paths(site: &Site, flags: Vec<PathBuf>, manifest_path: &Path) -> Vec<PathBuf> {
    if !flags.is_empty() {
        return flags;
    }
    let configured: Vec<PathBuf> = ARCHIVE_PATH_KEYS
        .iter()
        .filter_map(|key| site.path_setting(key))
        .collect();
    if configured.is_empty() {
        return configured;
    }
    let stock = runbook_steps::backup::layout::STOCK_ARCHIVE_FOLDERS
        .iter()
        .map(|name| manifest_path.join(name))
        .filter(|p| p.is_dir());
    let mut folders = configured;
    for folder in stock {
        if !folders.contains(&folder) {
            folders.push(folder);
        }
    }
    folders
}

/// The Elasticsearch to ask about snapshots: `flag`, else the site's
/// `elasticsearch_url`, else (`None`) the one each manifest records.
pub fn elasticsearch_url(site: &Site, flag: Option<String>) -> Option<String> {
    flag.or_else(|| site.setting("elasticsearch_url").map(|(url, _)| url))
}

/// The journal folder: `flag` (or `RUNBOOK_JOURNAL_DIR`), else the site
/// file's `journal_dir`, else the default for this user.
pub fn journal_dir(site: &Site, flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| site.path_setting("journal_dir"))
        .unwrap_or_else(crate::host::journal::default_journal_dir)
}

/// One line of `runbook config`.
struct Shown {
    key: String,
    value: serde_json::Value,
    source: String,
}

/// Where a value came from, as `runbook config` prints it.
fn source_label(origin: &Origin) -> String {
    match origin {
        Origin::Default => "default".to_string(),
        Origin::SiteFile(path) => format!("site file {path}"),
        Origin::Environment(name) => format!("env {name}"),
        Origin::VarsFile(path) => format!("--vars {path}"),
        Origin::Set => "--set".to_string(),
    }
}

/// A value as printed: secrets never.
fn shown_value(key: &str, value: &serde_json::Value) -> serde_json::Value {
    if is_secret_key(key) && !value.as_str().is_some_and(str::is_empty) {
        return serde_json::Value::String(crate::host::secrets::MASK.to_string());
    }
    crate::host::secrets::mask_json(value)
}

/// `runbook config [WORKFLOW] [--set K=V] [--vars FILE] [--json]`: the
/// effective values and where each came from.
pub fn config(
    site_flag: Option<&Path>,
    workflow: Option<&str>,
    sets: &[String],
    vars: Option<&Path>,
    json: bool,
) -> i32 {
    // With a workflow, its probe checks the site's keys and the environment
    // as a run does (its own keys included).
    let loaded = match workflow {
        Some(_) => Site::load(site_flag).map_err(input_error),
        None => load_checked(site_flag),
    };
    let site = match loaded {
        Ok(site) => site,
        Err(code) => return code,
    };
    let values = match workflow {
        Some(spec) => match workflow_values(&site, spec, sets, vars) {
            Ok(values) => values,
            Err(code) => return code,
        },
        None => site_values(&site),
    };
    let engine = engine_values(&site);
    let site_file = site.path().map(|p| p.display().to_string());
    if json {
        let list = |items: &[Shown]| -> Vec<serde_json::Value> {
            items
                .iter()
                .map(|s| serde_json::json!({"key": s.key, "value": s.value, "source": s.source}))
                .collect()
        };
        let doc = serde_json::json!({
            "site_file": site_file,
            "workflow": workflow,
            "values": list(&values),
            "engine": list(&engine),
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return exit_code::SUCCESS;
    }
    match &site_file {
        Some(path) => println!("site file: {path}"),
        None => println!("site file: none ({} does not exist)", site.shown()),
    }
    match workflow {
        Some(spec) => println!("\nconfig of {spec}:"),
        None => println!(
            "\nconfig keys set by the site file or RUNBOOK_<KEY> (`runbook config WORKFLOW` shows every key of a workflow):"
        ),
    }
    print_table(&values);
    println!("\nengine settings:");
    print_table(&engine);
    exit_code::SUCCESS
}

fn print_table(items: &[Shown]) {
    if items.is_empty() {
        println!("  (none)");
        return;
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    let key_width = items.iter().map(|s| s.key.len()).max().unwrap_or(0);
    let value_width = items
        .iter()
        .map(|s| text(&s.value).chars().count())
        .max()
        .unwrap_or(0);
    for item in items {
        println!(
            "  {:key_width$}  {:value_width$}  {}",
            item.key,
            text(&item.value),
            item.source
        );
    }
}

/// Every key of `spec`, resolved as a run would resolve it.
fn workflow_values(
    site: &Site,
    spec: &str,
    sets: &[String],
    vars: Option<&Path>,
) -> Result<Vec<Shown>, i32> {
    let workflow = Workflow::load(spec).map_err(input_error)?;
    if let Some(vars) = vars {
        crate::host::file_safety::check_trusted(
            vars,
            crate::host::file_safety::TrustedUse::VarsFile,
        )
        .map_err(input_error)?;
    }
    let overrides = Overrides::from_cli(vars, sets).map_err(input_error)?;
    let known = known_keys(site, Some(&workflow));
    let probed = probe(
        &workflow,
        ProbeMode::Effective,
        overrides.with_site(site, known),
    )
    .map_err(|rendered| {
        eprint!("{}", crate::host::secrets::mask(&rendered));
        exit_code::INPUT
    })?;
    Ok(probed
        .values
        .into_iter()
        .map(|v| Shown {
            value: shown_value(&v.key, &v.value),
            source: source_label(&v.origin),
            key: v.key,
        })
        .collect())
}

/// Without a workflow: the keys the site file or the environment set.
fn site_values(site: &Site) -> Vec<Shown> {
    let engine: BTreeSet<&str> = crate::host::config_site::engine_keys().collect();
    let mut keys: BTreeSet<String> = site
        .values()
        .keys()
        .filter(|k| !engine.contains(k.as_str()))
        .cloned()
        .collect();
    for (name, _) in std::env::vars() {
        if let Some(key) = name.strip_prefix("RUNBOOK_") {
            let key = key.to_lowercase();
            let is_engine = crate::host::config::ENGINE_VARIABLES.contains(&name.as_str());
            if !is_engine && !engine.contains(key.as_str()) {
                keys.insert(key);
            }
        }
    }
    keys.into_iter()
        .filter_map(|key| {
            let (value, origin) = site.setting(&key)?;
            let value = match (&origin, site.values().get(&key)) {
                (Origin::SiteFile(_), Some(raw)) => raw.clone(),
                _ => serde_json::Value::String(value),
            };
            Some(Shown {
                value: shown_value(&key, &value),
                source: source_label(&origin),
                key,
            })
        })
        .collect()
}

/// The engine settings: environment, site file or default.
fn engine_values(site: &Site) -> Vec<Shown> {
    let journal_given = std::env::var_os("RUNBOOK_JOURNAL_DIR").map(PathBuf::from);
    let lock = crate::run::lock::lock_place_for(site, journal_given.as_deref());
    ENGINE_SETTINGS
        .iter()
        .map(|(key, ..)| {
            let (value, source) = match site.setting(key) {
                Some((value, origin)) => (serde_json::Value::String(value), source_label(&origin)),
                None => {
                    let default = match *key {
                        "journal_dir" => {
                            serde_json::Value::String(journal_dir(site, None).display().to_string())
                        }
                        "lock_dir" => serde_json::Value::String(match &lock {
                            Ok(place) => place.dir.display().to_string(),
                            Err(e) => e.clone(),
                        }),
                        _ => serde_json::Value::String(String::new()),
                    };
                    (default, "default".to_string())
                }
            };
            Shown {
                key: key.to_string(),
                value,
                source,
            }
        })
        .collect()
}

/// The text of the `site.toml` that `runbook init` writes: every key of the
/// stock workflows, commented out with its default, so the file changes
/// nothing until a line is uncommented.
pub fn site_file_text() -> String {
    let mut text = String::from(
        "# runbook site file: one flat table of `key = value`, read by every runbook command\n\
         # (run, plan, list, verify --set, status, recover, config). Found at\n\
         # /etc/runbook/site.toml, or where --site FILE or RUNBOOK_SITE says.\n\
         #\n\
         # Precedence: --set (and a command's own flags) > RUNBOOK_<KEY> > --vars FILE >\n\
         # this file > the workflow's default. A key here that one workflow does not\n\
         # declare is another's (backup and restore share most keys); a key no workflow\n\
         # knows is refused. Passwords never go here: CASSANDRA_PASSWORD(_FILE),\n\
         # ELASTICSEARCH_PASSWORD(_FILE) in the environment.\n\
         #\n\
         # Every line below is commented out with its default: uncomment and edit what\n\
         # differs on this site. `runbook config cluster-hot-backup` shows the result.\n\n\
         # ---- Engine settings\n",
    );
    for (key, _, what, example) in ENGINE_SETTINGS {
        text.push_str(&format!("# {what}\n# {key} = \"{example}\"\n"));
    }
    let stock = stock_defaults();
    let differing = differing_defaults(&stock);
    let mut written: BTreeSet<String> = BTreeSet::new();
    for (name, defaults) in &stock {
        let fresh: Vec<_> = defaults
            .iter()
            .filter(|(key, _)| written.insert(key.clone()))
            .collect();
        if fresh.is_empty() {
            continue;
        }
        text.push_str(&format!(
            "\n# ---- {name}{}\n",
            if written.len() == fresh.len() {
                String::new()
            } else {
                " (keys not listed above)".to_string()
            }
        ));
        for (key, shown) in fresh {
            if let Some(note) = differing.get(key) {
                text.push_str(note);
            }
            text.push_str(&format!("# {key} = {shown}\n"));
        }
    }
    text
}

/// Each stock workflow's keys with their defaults as TOML text, in the
/// workflow's order (a workflow whose probe fails is left out).
fn stock_defaults() -> Vec<(&'static str, Vec<(String, String)>)> {
    stock_workflow_names()
        .into_iter()
        .filter_map(|name| {
            let workflow = Workflow::load(name).ok()?;
            let probed = probe(&workflow, ProbeMode::Effective, Overrides::default()).ok()?;
            let defaults = probed
                .values
                .into_iter()
                .map(|v| {
                    let shown = toml::Value::try_from(&v.value)
                        .map(|t| t.to_string())
                        .unwrap_or_else(|_| v.value.to_string());
                    (v.key, shown)
                })
                .collect();
            Some((name, defaults))
        })
        .collect()
}

/// For each key whose default is not the same in every stock workflow that
/// declares it (the backup polls Elasticsearch every 5 s, the restore every
/// second), the comment lines written above it: the file is one table shared
/// by every workflow, so a line uncommented with one workflow's default
/// changes the others'.
fn differing_defaults(stock: &[(&'static str, Vec<(String, String)>)]) -> BTreeMap<String, String> {
    let mut by_key: BTreeMap<&str, Vec<(&str, &str)>> = Default::default();
    for (name, defaults) in stock {
        for (key, shown) in defaults {
            by_key.entry(key).or_default().push((name, shown));
        }
    }
    by_key
        .into_iter()
        .filter(|(_, defaults)| defaults.iter().any(|(_, shown)| *shown != defaults[0].1))
        .map(|(key, defaults)| {
            let each: Vec<String> = defaults
                .iter()
                .map(|(name, shown)| format!("{name} {shown}"))
                .collect();
            let note = format!(
                "# {key}: the default differs by workflow: {}.\n\
                 # A value set here applies to every one of them (RUNBOOK_{} or --set for one run).\n",
                each.join(", "),
                key.to_uppercase()
            );
            (key.to_string(), note)
        })
        .collect()
}

/// Writes `DIR/site.toml` for `runbook init` (kept if it exists, unless
/// `force`). Returns the message line, or the error.
pub fn write_site_file(dir: &Path, force: bool) -> Result<String, String> {
    let target = dir.join("site.toml");
    if target.exists() && !force {
        return Ok(format!(
            "kept {} (exists; --force overwrites)",
            target.display()
        ));
    }
    runbook_steps::runtime::atomic_file::write_atomic(&target, site_file_text().as_bytes(), 0o644)
        .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    Ok(format!("wrote {}", target.display()))
}
