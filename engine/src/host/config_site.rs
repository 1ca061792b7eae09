//! The site file: one TOML file (default `/etc/runbook/site.toml`, or
//! `--site FILE`, or `RUNBOOK_SITE`) that every command reads, so an admin
//! writes the site's paths and hosts once.
//!
//! It is one flat table of `key = value`, shared by every workflow: the
//! backup and the restore share most keys (paths, hosts, the keyspace), and
//! `runbook list`/`verify` read the same `manifest_path` and archive paths.
//! A key one workflow does not declare is not an error for that workflow (it
//! is another's); a key no workflow and not the engine knows is (with a
//! did-you-mean). Besides the workflows' keys it holds the engine's own
//! settings ([`ENGINE_SETTINGS`]).
//!
//! Precedence everywhere: `--set` (and a command's own flags) > `RUNBOOK_<KEY>`
//! > `--vars FILE` > the site file > the workflow's default.
//!
//! Which keys exist is learnt by running each workflow up to its `config()`
//! call in a probe (dry-run, no journal; the call stops the script): the
//! stock workflows and the `.rhai` files next to the site file (what
//! `runbook init` wrote, maybe edited).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::host::config_error::{ConfigError, Origin};
use crate::host::file_safety::{TrustedUse, check_trusted};

/// Where the site file is when neither `--site` nor `RUNBOOK_SITE` says.
pub const DEFAULT_SITE_FILE: &str = "/etc/runbook/site.toml";

/// The environment variable naming the site file.
pub const SITE_VARIABLE: &str = "RUNBOOK_SITE";

/// The engine's own settings a site file may hold: key, environment
/// variable, what it is, an example value.
pub const ENGINE_SETTINGS: &[(&str, &str, &str, &str)] = &[
    (
        "journal_dir",
        "RUNBOOK_JOURNAL_DIR",
        "where run journals go (default /var/lib/runbook as root, else ~/.local/state/runbook)",
        "/var/lib/runbook",
    ),
    (
        "journal_group",
        "RUNBOOK_JOURNAL_GROUP",
        "a group that may read the journals (0640; default: owner only)",
        "backup-admins",
    ),
    (
        "lock_dir",
        "RUNBOOK_LOCK_DIR",
        "the folder of the run locks, shared by root and the admins (default /run/lock/runbook)",
        "/run/lock/runbook",
    ),
    (
        "lock_group",
        "RUNBOOK_LOCK_GROUP",
        "a group whose members share the run locks with root (lock files 0640; default: none, \
         lock files 0600)",
        "backup-admins",
    ),
];

/// The site file as read.
#[derive(Clone, Debug, Default)]
pub struct Site {
    /// The file read, or `None` when the default file does not exist.
    path: Option<PathBuf>,
    /// The path, for messages (also when it does not exist).
    shown: String,
    values: BTreeMap<String, serde_json::Value>,
}

impl Site {
    /// Reads the site file: `flag` (`--site`), else `$RUNBOOK_SITE`, else
    /// [`DEFAULT_SITE_FILE`]. A missing default file is an empty site; a
    /// missing file named by the flag or the variable is an error.
    pub fn load(flag: Option<&Path>) -> Result<Site, ConfigError> {
        let from_env = std::env::var_os(SITE_VARIABLE).filter(|v| !v.is_empty());
        let (path, named_by) = match (flag, from_env) {
            (Some(path), _) => (path.to_path_buf(), Some("--site")),
            (None, Some(path)) => (PathBuf::from(path), Some(SITE_VARIABLE)),
            (None, None) => (PathBuf::from(DEFAULT_SITE_FILE), None),
        };
        let shown = path.display().to_string();
        let bad = |reason: String| ConfigError::SiteFile {
            path: shown.clone(),
            reason,
        };
        if std::fs::symlink_metadata(&path).is_err() {
            return match named_by {
                Some(by) => Err(bad(format!(
                    "no such file (named by {by}; fix the path, or run `runbook init DIR` to write one)"
                ))),
                None => Ok(Site {
                    path: None,
                    shown,
                    values: BTreeMap::new(),
                }),
            };
        }
        // It sets the programs runbook runs (nodetool, cqlsh) and where it
        // writes: another user able to change it could take over a root run.
        check_trusted(&path, TrustedUse::SiteFile).map_err(|e| bad(e.to_string()))?;
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let table: toml::Table = toml::from_str(&text)
            .map_err(|e| bad(format!("not valid TOML: {}", e.message().trim_end())))?;
        let mut values = BTreeMap::new();
        for (key, value) in table {
            if value.is_table() {
                return Err(bad(format!(
                    "`{key}` is a table; the site file is one flat table of `key = value` \
                     lines shared by every workflow (no [sections])"
                )));
            }
            let value = serde_json::to_value(&value).map_err(|e| bad(e.to_string()))?;
            values.insert(key, value);
        }
        Ok(Site {
            path: Some(path),
            shown,
            values,
        })
    }

    /// The values, by key.
    pub fn values(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.values
    }

    /// The path, for messages.
    pub fn shown(&self) -> String {
        self.shown.clone()
    }

    /// The file read (`None`: no site file).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The value of `key` from `RUNBOOK_<KEY>` or else the site file, as text,
    /// with where it came from: what a command's own flag falls back to.
    pub fn setting(&self, key: &str) -> Option<(String, Origin)> {
        let env_name = env_name(key);
        if let Some(value) = std::env::var(&env_name).ok().filter(|v| !v.is_empty()) {
            return Some((value, Origin::Environment(env_name)));
        }
        let text = match self.values.get(key)? {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Some((text, Origin::SiteFile(self.shown.clone())))
    }

    /// [`Site::setting`] as a path (an empty one is none).
    pub fn path_setting(&self, key: &str) -> Option<PathBuf> {
        self.setting(key)
            .filter(|(text, _)| !text.is_empty())
            .map(|(text, _)| PathBuf::from(text))
    }

    /// Refuses a key that is in none of `known`, with the nearest known key.
    pub fn check_keys(&self, known: &BTreeSet<String>) -> Result<(), ConfigError> {
        match self.unknown_keys(known).into_iter().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Every key that is in none of `known`, each with the nearest known key
    /// (`runbook check --site` reports them all; a run stops at the first).
    pub fn unknown_keys(&self, known: &BTreeSet<String>) -> Vec<ConfigError> {
        self.values
            .keys()
            .filter(|key| !known.contains(*key))
            .map(|key| {
                let suggestion = nearest(key, known.iter().map(String::as_str))
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                ConfigError::UnknownSiteKey {
                    key: key.clone(),
                    path: self.shown.clone(),
                    suggestion,
                    engine: engine_keys().collect::<Vec<_>>().join(", "),
                }
            })
            .collect()
    }

    /// The `.rhai` files next to the site file (those `runbook init` wrote).
    pub(crate) fn neighbour_workflows(&self) -> Vec<PathBuf> {
        let Some(folder) = self.path.as_deref().and_then(Path::parent) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "rhai") && p.is_file());
        files.sort();
        files
    }
}

/// `RUNBOOK_<KEY>` for `key`.
pub fn env_name(key: &str) -> String {
    format!("RUNBOOK_{}", key.to_uppercase())
}

/// The engine settings' keys.
pub fn engine_keys() -> impl Iterator<Item = &'static str> + Clone {
    ENGINE_SETTINGS.iter().map(|(key, ..)| *key)
}

/// The candidate nearest to `name` when it is close enough to be a typo.
pub fn nearest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(distance, _)| *distance <= 3)
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, c)| c)
}

/// Keys whose value `runbook config` never prints.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_lowercase();
    ["password", "secret", "token", "private_key", "credential"]
        .iter()
        .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_key_is_offered_only_when_close() {
        let keys = ["manifest_path", "keep", "storage"];
        assert_eq!(
            nearest("manifets_path", keys.into_iter()),
            Some("manifest_path")
        );
        assert_eq!(nearest("completely_else", keys.into_iter()), None);
    }
}
