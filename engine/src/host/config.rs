//! Workflow configuration: `config(#{ key: default })` merges the script's
//! defaults with the site file (`/etc/runbook/site.toml`, see
//! [`crate::host::config_site`]), `--vars FILE`, `RUNBOOK_<KEY>` environment
//! variables and `--set KEY=VALUE`, in that order of precedence (last wins).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rhai::{Dynamic, Map};

pub use crate::host::config_error::{ConfigError, Origin};

/// `RUNBOOK_*` environment variables the engine itself reads (not config keys).
pub const ENGINE_VARIABLES: &[&str] = &[
    "RUNBOOK_LOG",
    "RUNBOOK_JOURNAL_DIR",
    "RUNBOOK_JOURNAL_GROUP",
    "RUNBOOK_METRICS_FILE",
    "RUNBOOK_SITE",
    "RUNBOOK_LOCK_DIR",
    "RUNBOOK_LOCK_GROUP",
];

/// The overrides given on the command line, before the script declares its keys.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    values: BTreeMap<String, (serde_json::Value, Origin)>,
    /// The site file: under every other source.
    site: crate::host::config_site::Site,
    /// Keys other workflows or the engine know (from the site's point of
    /// view): a site file or `RUNBOOK_<KEY>` may set them for another
    /// workflow without being an error for this one.
    known_elsewhere: BTreeSet<String>,
}

impl Overrides {
    /// Collects `--vars FILE` then `--set KEY=VALUE` (later wins).
    pub fn from_cli(vars_file: Option<&Path>, sets: &[String]) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        if let Some(path) = vars_file {
            let shown = path.display().to_string();
            let bad = |reason: String| ConfigError::VarsFile {
                path: shown.clone(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
            let parsed: serde_json::Map<String, serde_json::Value> =
                if path.extension().is_some_and(|e| e == "toml") {
                    toml::from_str(&text).map_err(|e| bad(e.to_string()))?
                } else {
                    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
                };
            for (key, value) in parsed {
                values.insert(key, (value, Origin::VarsFile(shown.clone())));
            }
        }
        for item in sets {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| ConfigError::BadSet(item.clone()))?;
            values.insert(
                key.trim().to_string(),
                (serde_json::Value::String(value.to_string()), Origin::Set),
            );
        }
        Ok(Overrides {
            values,
            ..Overrides::default()
        })
    }

    /// Adds the site file's values (the lowest source above the defaults)
    /// and the keys known to other workflows and the engine.
    pub fn with_site(
        mut self,
        site: &crate::host::config_site::Site,
        known_elsewhere: BTreeSet<String>,
    ) -> Self {
        self.site = site.clone();
        self.known_elsewhere = known_elsewhere;
        self
    }

    /// Keys other workflows or the engine know (see [`Overrides::with_site`]).
    pub fn known_elsewhere(&self) -> impl Iterator<Item = &str> + Clone {
        self.known_elsewhere.iter().map(String::as_str)
    }

    /// True when no override was given.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Keys given on the command line that `declared` does not contain.
    pub fn check_declared<'a>(
        &self,
        declared: impl Iterator<Item = &'a str> + Clone,
    ) -> Result<(), ConfigError> {
        for (key, (_, origin)) in &self.values {
            if !declared.clone().any(|d| d == key) {
                let mut names: Vec<&str> = declared.clone().collect();
                names.sort_unstable();
                return Err(ConfigError::UnknownKey {
                    key: key.clone(),
                    origin: origin.clone(),
                    declared: if names.is_empty() {
                        "(nothing: it calls no config())".to_string()
                    } else {
                        names.join(", ")
                    },
                });
            }
        }
        Ok(())
    }

    /// Refuses a site file key that none of `known` is (this workflow's
    /// keys, other workflows' and the engine's), with the nearest one.
    pub fn check_site_keys<'a>(
        &self,
        known: impl Iterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        self.site
            .check_keys(&known.map(str::to_string).collect::<BTreeSet<_>>())
    }

    /// Where the effective value of `key` comes from (the same precedence as
    /// [`Overrides::resolve`]).
    pub fn origin_of(&self, key: &str, env: impl Fn(&str) -> Option<String>) -> Origin {
        if let Some((_, origin @ Origin::Set)) = self.values.get(key) {
            return origin.clone();
        }
        let env_name = format!("RUNBOOK_{}", key.to_uppercase());
        if env(&env_name).is_some() {
            return Origin::Environment(env_name);
        }
        match self.values.get(key) {
            Some((_, origin)) => origin.clone(),
            None if self.site.values().contains_key(key) => Origin::SiteFile(self.site.shown()),
            None => Origin::Default,
        }
    }

    /// The effective values for `defaults`: defaults, then the site file,
    /// then the vars file, then `RUNBOOK_<KEY>`, then `--set`. `env` looks up
    /// environment variables.
    pub fn resolve(
        &self,
        defaults: &Map,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Map, ConfigError> {
        let mut effective = Map::new();
        for (key, default) in defaults {
            let key_str = key.as_str();
            let mut value = default.clone();
            if let Some(raw) = self.site.values().get(key_str) {
                let origin = Origin::SiteFile(self.site.shown());
                value = convert(key_str, default, raw, &origin)?;
            }
            let from_file = self
                .values
                .get(key_str)
                .filter(|(_, o)| matches!(o, Origin::VarsFile(_)));
            if let Some((raw, origin)) = from_file {
                value = convert(key_str, default, raw, origin)?;
            }
            let env_name = format!("RUNBOOK_{}", key_str.to_uppercase());
            if let Some(text) = env(&env_name) {
                value = convert(
                    key_str,
                    default,
                    &serde_json::Value::String(text),
                    &Origin::Environment(env_name),
                )?;
            }
            if let Some((raw, origin @ Origin::Set)) = self.values.get(key_str) {
                value = convert(key_str, default, raw, origin)?;
            }
            effective.insert(key.clone(), value);
        }
        Ok(effective)
    }
}

/// Converts `raw` to the type of `default`.
fn convert(
    key: &str,
    default: &Dynamic,
    raw: &serde_json::Value,
    origin: &Origin,
) -> Result<Dynamic, ConfigError> {
    let text = match raw {
        serde_json::Value::String(s) => Some(s.trim()),
        _ => None,
    };
    let converted = if default.is_string() {
        to_text(raw)
    } else if default.is_bool() {
        to_bool(raw, text)
    } else if default.is_int() {
        to_whole_number(raw, text)
    } else if default.is_float() {
        to_number(raw, text)
    } else if default.is_array() {
        to_list(raw)
    } else {
        rhai::serde::to_dynamic(raw).map_err(|e| e.to_string())
    };
    converted.map_err(|reason| ConfigError::BadValue {
        key: key.to_string(),
        origin: origin.clone(),
        reason,
    })
}

/// A string key: a number or a boolean given for it is taken as its text.
fn to_text(raw: &serde_json::Value) -> Result<Dynamic, String> {
    Ok(match raw {
        serde_json::Value::String(s) => s.clone().into(),
        serde_json::Value::Number(n) => n.to_string().into(),
        serde_json::Value::Bool(b) => b.to_string().into(),
        other => return Err(format!("expected a string, got {other}")),
    })
}

/// A boolean key: `true`, or the text true/yes/1/on (false/no/0/off).
fn to_bool(raw: &serde_json::Value, text: Option<&str>) -> Result<Dynamic, String> {
    match (raw, text) {
        (serde_json::Value::Bool(b), _) => Ok((*b).into()),
        (_, Some("true" | "yes" | "1" | "on")) => Ok(true.into()),
        (_, Some("false" | "no" | "0" | "off")) => Ok(false.into()),
        _ => Err(format!("expected true or false, got {}", show(raw))),
    }
}

/// An integer key (i64), from a number or its text.
fn to_whole_number(raw: &serde_json::Value, text: Option<&str>) -> Result<Dynamic, String> {
    match (raw, text) {
        (serde_json::Value::Number(n), _) if n.is_i64() => Ok(n.as_i64().unwrap_or(0).into()),
        (serde_json::Value::Number(n), _) if n.is_u64() => Err(format!("{n} is far too large")),
        (_, Some(t)) => t.parse::<i64>().map(Dynamic::from).map_err(|_| {
            // All digits but no i64: say so, rather than "not a number".
            let digits = t.strip_prefix('-').unwrap_or(t);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                format!("{t} is far too large")
            } else {
                format!("expected a whole number, got {}", show(raw))
            }
        }),
        _ => Err(format!("expected a whole number, got {}", show(raw))),
    }
}

/// A float key, from a number or its text.
fn to_number(raw: &serde_json::Value, text: Option<&str>) -> Result<Dynamic, String> {
    match (raw, text) {
        (serde_json::Value::Number(n), _) => Ok(n.as_f64().unwrap_or(0.0).into()),
        (_, Some(t)) => t
            .parse::<f64>()
            .map(Dynamic::from)
            .map_err(|_| format!("expected a number, got {}", show(raw))),
        _ => Err(format!("expected a number, got {}", show(raw))),
    }
}

/// A list key: a list, or its items in one comma-separated text.
fn to_list(raw: &serde_json::Value) -> Result<Dynamic, String> {
    match raw {
        serde_json::Value::Array(_) => rhai::serde::to_dynamic(raw).map_err(|e| e.to_string()),
        serde_json::Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| Dynamic::from(item.to_string()))
            .collect::<rhai::Array>()
            .into()),
        other => Err(format!("expected a comma-separated list, got {other}")),
    }
}

fn show(raw: &serde_json::Value) -> String {
    match raw {
        serde_json::Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Map {
        let mut m = Map::new();
        m.insert("name".into(), "a".into());
        m.insert("count".into(), Dynamic::from(1_i64));
        m.insert("green".into(), false.into());
        m.insert("hosts".into(), rhai::Array::new().into());
        m
    }

    #[test]
    fn precedence_and_conversion() {
        let o = Overrides::from_cli(None, &["count=7".into(), "hosts=a, b".into()]).unwrap();
        let env = |name: &str| (name == "RUNBOOK_GREEN").then(|| "yes".to_string());
        let m = o.resolve(&defaults(), env).unwrap();
        assert_eq!(m["count"].as_int().unwrap(), 7);
        assert!(m["green"].as_bool().unwrap());
        assert_eq!(m["hosts"].clone().into_array().unwrap().len(), 2);
        assert_eq!(m["name"].clone().into_string().unwrap(), "a");
    }

    #[test]
    fn bad_value_and_unknown_key_name_the_key() {
        let o = Overrides::from_cli(None, &["count=many".into()]).unwrap();
        let e = o.resolve(&defaults(), |_| None).unwrap_err().to_string();
        assert_eq!(
            e,
            "config key `count` (from --set): expected a whole number, got \"many\""
        );
        let o = Overrides::from_cli(None, &["cuont=1".into()]).unwrap();
        let e = o
            .check_declared(["count", "name"].into_iter())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "unknown config key `cuont` (from --set); this workflow declares: count, name"
        );
    }
}
