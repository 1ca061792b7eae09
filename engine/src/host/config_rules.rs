//! What a workflow allows for its config keys, beyond the type of the
//! default: `config(defaults, rules)`, where `rules` maps a key to
//!
//! - `#{ min: 0, max: 1000 }` for a whole number (either bound optional);
//! - `#{ min: "1s", max: "10m" }` for a string holding a duration
//!   (`"5s"`, `"2m"`; the value must parse as one);
//! - `#{ one_of: ["local", "s3", "none"] }` for a string (exact match);
//! - `#{ rate: true }` for a string holding a byte rate (`"200MiB/s"`, `""`
//!   for no limit), parsed as the steps' `max_rate` option is.
//!
//! A value outside the rule is a config error naming the key, where the value
//! came from and what is allowed, before anything runs. The same module
//! refuses `RUNBOOK_*` environment variables that set no declared key.

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::{Dynamic, Map};

use crate::host::config::{ConfigError, ENGINE_VARIABLES, Origin};

/// One bound of a range.
#[derive(Clone, Debug)]
enum Bound {
    Whole(i64),
    Duration(Duration, String),
}

/// The rule for one key.
#[derive(Clone, Debug, Default)]
struct KeyRule {
    min: Option<Bound>,
    max: Option<Bound>,
    one_of: Option<Vec<String>>,
    /// A byte rate (`max_rate`).
    rate: bool,
}

/// The rules a workflow declared, by key.
#[derive(Clone, Debug, Default)]
pub struct Rules(BTreeMap<String, KeyRule>);

fn bad_rule(text: String) -> ConfigError {
    ConfigError::BadRule(text)
}

impl Rules {
    /// Reads `rules` (see the module doc) for the keys of `defaults`.
    pub fn parse(rules: &Map, defaults: &Map) -> Result<Rules, ConfigError> {
        let mut parsed = BTreeMap::new();
        for (key, spec) in rules {
            let key = key.as_str();
            let Some(default) = defaults.get(key) else {
                return Err(bad_rule(format!(
                    "a rule for `{key}`, which the defaults do not declare"
                )));
            };
            let Some(spec) = spec.read_lock::<Map>().map(|m| m.clone()) else {
                return Err(bad_rule(format!(
                    "the rule for `{key}` must be a map like #{{ min: 0, max: 10 }}"
                )));
            };
            let mut rule = KeyRule::default();
            for (name, value) in &spec {
                match name.as_str() {
                    "min" => rule.min = Some(bound(key, default, value)?),
                    "max" => rule.max = Some(bound(key, default, value)?),
                    "one_of" => {
                        if !default.is_string() {
                            return Err(bad_rule(format!(
                                "`one_of` for `{key}` needs a string default"
                            )));
                        }
                        let list = value
                            .read_lock::<rhai::Array>()
                            .map(|a| a.iter().map(|v| v.to_string()).collect::<Vec<_>>())
                            .filter(|l| !l.is_empty())
                            .ok_or_else(|| {
                                bad_rule(format!("`one_of` for `{key}` must be a list of strings"))
                            })?;
                        rule.one_of = Some(list);
                    }
                    "rate" if default.is_string() && value.as_bool() == Ok(true) => {
                        rule.rate = true
                    }
                    "rate" => {
                        return Err(bad_rule(format!(
                            "`rate: true` for `{key}` needs a string default"
                        )));
                    }
                    other => {
                        return Err(bad_rule(format!(
                            "unknown rule `{other}` for `{key}` (rules: min, max, one_of, rate)"
                        )));
                    }
                }
            }
            parsed.insert(key.to_string(), rule);
        }
        let rules = Rules(parsed);
        // The defaults themselves must follow the rules.
        rules.check(defaults, |_| Origin::Default)?;
        Ok(rules)
    }

    /// What `key` allows, for messages ("0 to 1000"), if it has a rule.
    pub fn allowed(&self, key: &str) -> Option<String> {
        let rule = self.0.get(key)?;
        if let Some(list) = &rule.one_of {
            let quoted: Vec<String> = list.iter().map(|v| format!("\"{v}\"")).collect();
            return Some(match quoted.split_last() {
                Some((last, [])) => last.clone(),
                Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                None => String::new(),
            });
        }
        if rule.rate {
            return Some("a rate like \"200MiB/s\" or \"50MB/s\", or \"\" for no limit".into());
        }
        let show = |b: &Bound| match b {
            Bound::Whole(n) => n.to_string(),
            Bound::Duration(_, text) => text.clone(),
        };
        let duration = matches!(rule.min, Some(Bound::Duration(..)))
            || matches!(rule.max, Some(Bound::Duration(..)));
        let range = match (&rule.min, &rule.max) {
            (Some(min), Some(max)) => format!("{} to {}", show(min), show(max)),
            (Some(min), None) => format!("{} or more", show(min)),
            (None, Some(max)) => format!("at most {}", show(max)),
            (None, None) => return None,
        };
        Some(if duration {
            format!("a duration from {range}, e.g. \"5s\"")
        } else {
            range
        })
    }

    /// Adds what is allowed to a conversion error of a key with a rule.
    pub fn explain(&self, error: ConfigError) -> ConfigError {
        match error {
            ConfigError::BadValue {
                key,
                origin,
                reason,
            } => {
                let reason = match self.allowed(&key) {
                    Some(allowed) => format!("{reason} (allowed: {allowed})"),
                    None => reason,
                };
                ConfigError::BadValue {
                    key,
                    origin,
                    reason,
                }
            }
            other => other,
        }
    }

    /// Checks every effective value that has a rule; `origin` says where a
    /// key's value came from.
    pub fn check(&self, values: &Map, origin: impl Fn(&str) -> Origin) -> Result<(), ConfigError> {
        for (key, rule) in &self.0 {
            let Some(value) = values.get(key.as_str()) else {
                continue;
            };
            if let Some(reason) = violation(rule, value) {
                let allowed = self.allowed(key).unwrap_or_default();
                return Err(ConfigError::BadValue {
                    key: key.clone(),
                    origin: origin(key),
                    reason: format!("{reason} (allowed: {allowed})"),
                });
            }
        }
        Ok(())
    }
}

fn bound(key: &str, default: &Dynamic, value: &Dynamic) -> Result<Bound, ConfigError> {
    if default.is_int() {
        return value.as_int().map(Bound::Whole).map_err(|_| {
            bad_rule(format!(
                "`min`/`max` for `{key}` must be whole numbers (its default is one)"
            ))
        });
    }
    if default.is_string()
        && let Ok(text) = value.clone().into_string()
        && let Ok(duration) = humantime::parse_duration(&text)
    {
        return Ok(Bound::Duration(duration, text));
    }
    Err(bad_rule(format!(
        "`min`/`max` for `{key}` must be whole numbers (for a number) or durations like \"1s\" (for a string)"
    )))
}

/// Why `value` breaks `rule`, or `None`.
fn violation(rule: &KeyRule, value: &Dynamic) -> Option<String> {
    if rule.rate
        && let Err(e) = value
            .to_string()
            .parse::<runbook_steps::runtime::throttle::MaxRate>()
    {
        return Some(format!("\"{value}\" is not a rate: {}", e.reason));
    }
    if let Some(list) = &rule.one_of {
        let text = value.to_string();
        if !list.contains(&text) {
            return Some(format!("\"{text}\" is not allowed"));
        }
    }
    let below = |b: &Bound| match (b, value) {
        (Bound::Whole(min), v) => v.as_int().is_ok_and(|n| n < *min),
        (Bound::Duration(min, _), v) => parse(v).is_some_and(|d| d < *min),
    };
    let above = |b: &Bound| match (b, value) {
        (Bound::Whole(max), v) => v.as_int().is_ok_and(|n| n > *max),
        (Bound::Duration(max, _), v) => parse(v).is_some_and(|d| d > *max),
    };
    let is_duration = matches!(rule.min, Some(Bound::Duration(..)))
        || matches!(rule.max, Some(Bound::Duration(..)));
    if is_duration && parse(value).is_none() {
        return Some(format!("\"{value}\" is not a duration"));
    }
    let shown = if value.is_string() {
        format!("\"{value}\"")
    } else {
        value.to_string()
    };
    if rule.min.as_ref().is_some_and(below) {
        return Some(format!("{shown} is too small"));
    }
    if rule.max.as_ref().is_some_and(above) {
        return Some(format!("{shown} is too large"));
    }
    None
}

fn parse(value: &Dynamic) -> Option<Duration> {
    value
        .clone()
        .into_string()
        .ok()
        .and_then(|t| humantime::parse_duration(t.trim()).ok())
}

/// Refuses a `RUNBOOK_*` variable in `names` that sets no key of `declared`
/// and is not one of [`ENGINE_VARIABLES`]: `RUNBOOK_KEPP=3` must not be
/// silently ignored while `--set kepp=3` is an error.
pub fn check_environment<'a>(
    names: impl Iterator<Item = String>,
    declared: impl Iterator<Item = &'a str> + Clone,
) -> Result<(), ConfigError> {
    check_environment_for(names, declared, "this workflow")
}

/// [`check_environment`] for a command that runs no workflow (`list`,
/// `verify`, `config`): `declared` is every key the site knows.
pub fn check_environment_for<'a>(
    names: impl Iterator<Item = String>,
    declared: impl Iterator<Item = &'a str> + Clone,
    scope: &'static str,
) -> Result<(), ConfigError> {
    let mut names: Vec<String> = names.filter(|n| n.starts_with("RUNBOOK_")).collect();
    names.sort();
    for name in names {
        if ENGINE_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        let key = name["RUNBOOK_".len()..].to_lowercase();
        if declared.clone().any(|d| d == key) {
            continue;
        }
        let candidates = declared
            .clone()
            .map(|d| format!("RUNBOOK_{}", d.to_uppercase()))
            .chain(ENGINE_VARIABLES.iter().map(|v| v.to_string()));
        let best = candidates
            .map(|c| (strsim::damerau_levenshtein(&name, &c), c))
            .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let suggestion = match best {
            Some((distance, candidate)) if distance <= 3 => {
                format!(" (did you mean {candidate}?)")
            }
            _ => String::new(),
        };
        return Err(ConfigError::UnknownEnvironment {
            name,
            scope,
            suggestion,
            engine: ENGINE_VARIABLES.join(", "),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, Dynamic)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), v.clone()))
            .collect()
    }

    fn rule(pairs: &[(&str, Dynamic)]) -> Dynamic {
        map(pairs).into()
    }

    fn defaults() -> Map {
        map(&[
            ("keep", Dynamic::from(0_i64)),
            ("storage", "local".into()),
            ("poll", "5s".into()),
        ])
    }

    fn rules() -> Rules {
        let list: rhai::Array = vec!["local".into(), "s3".into(), "none".into()];
        Rules::parse(
            &map(&[
                (
                    "keep",
                    rule(&[
                        ("min", Dynamic::from(0_i64)),
                        ("max", Dynamic::from(10_000_i64)),
                    ]),
                ),
                ("storage", rule(&[("one_of", list.into())])),
                ("poll", rule(&[("min", "1s".into()), ("max", "10m".into())])),
            ]),
            &defaults(),
        )
        .unwrap()
    }

    #[test]
    fn values_outside_the_rules_name_the_key_and_what_is_allowed() {
        let check = |key: &str, value: Dynamic| {
            let mut values = defaults();
            values.insert(key.into(), value);
            rules()
                .check(&values, |_| Origin::Set)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            check("keep", Dynamic::from(-1_i64)).unwrap_err(),
            "config key `keep` (from --set): -1 is too small (allowed: 0 to 10000)"
        );
        assert_eq!(
            check("storage", "S3".into()).unwrap_err(),
            "config key `storage` (from --set): \"S3\" is not allowed (allowed: \"local\", \"s3\" or \"none\")"
        );
        assert_eq!(
            check("poll", "0s".into()).unwrap_err(),
            "config key `poll` (from --set): \"0s\" is too small (allowed: a duration from 1s to 10m, e.g. \"5s\")"
        );
        assert!(
            check("poll", "soon".into())
                .unwrap_err()
                .contains("is not a duration")
        );
        assert!(check("keep", Dynamic::from(10_000_i64)).is_ok());
        assert!(check("storage", "s3".into()).is_ok());
    }

    #[test]
    fn bad_rules_are_script_errors() {
        let e = Rules::parse(
            &map(&[("nope", rule(&[("min", Dynamic::from(1_i64))]))]),
            &defaults(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("do not declare"), "{e}");
        let e = Rules::parse(
            &map(&[("keep", rule(&[("min", Dynamic::from(1_i64))]))]),
            &defaults(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("the workflow's default"), "{e}");
    }

    #[test]
    fn unknown_runbook_variables_are_refused_with_a_suggestion() {
        let declared = ["keep", "storage"];
        let e = check_environment(
            ["RUNBOOK_KEPP".to_string(), "PATH".to_string()].into_iter(),
            declared.into_iter(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("RUNBOOK_KEPP names no config key"), "{e}");
        assert!(e.contains("(did you mean RUNBOOK_KEEP?)"), "{e}");
        assert!(
            check_environment(
                ["RUNBOOK_KEEP".to_string(), "RUNBOOK_LOG".to_string()].into_iter(),
                declared.into_iter()
            )
            .is_ok()
        );
    }
}
