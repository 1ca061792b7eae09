//! Secret values and their masking: every secret a workflow reads with
//! `secret(NAME)`, and every password in a URL, is replaced by `***` wherever
//! the engine prints or records (see [`mask`] for the one exception: a longer
//! config name or path that contains the secret). Undo actions journal a
//! secret's name, never its value, and recovery reads it again.

use std::sync::{LazyLock, RwLock};

/// What replaces a secret in output.
pub const MASK: &str = "***";

/// Why `secret(NAME)` failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Neither the variable nor the file variable is set.
    #[error(
        "secret {name} is not set: set the environment variable {name} or {name}_FILE (a file holding the value)"
    )]
    Missing {
        /// The secret's name.
        name: String,
    },
    /// `NAME_FILE` names a file that cannot be read.
    #[error("secret {name}: cannot read {path} (from {name}_FILE): {source}")]
    File {
        /// The secret's name.
        name: String,
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `NAME_FILE` names a file another user could change.
    #[error("secret {name} (from {name}_FILE): {reason}")]
    Untrusted {
        /// The secret's name.
        name: String,
        /// The refusal.
        reason: String,
    },
}

/// Reads secret `name` from the environment variable `name`, else from the file
/// named by `name_FILE` (trailing newline trimmed), and registers it for masking.
pub fn read_secret(name: &str) -> Result<String, SecretError> {
    let value = match std::env::var(name) {
        Ok(value) => value,
        Err(_) => match std::env::var(format!("{name}_FILE")) {
            Ok(path) => {
                crate::host::file_safety::check_trusted(
                    std::path::Path::new(&path),
                    crate::host::file_safety::TrustedUse::SecretFile,
                )
                .map_err(|e| SecretError::Untrusted {
                    name: name.to_string(),
                    reason: e.to_string(),
                })?;
                std::fs::read_to_string(&path)
                    .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|source| SecretError::File {
                        name: name.to_string(),
                        path,
                        source,
                    })?
            }
            Err(_) => {
                return Err(SecretError::Missing {
                    name: name.to_string(),
                });
            }
        },
    };
    register_named(name, &value);
    Ok(value)
}

/// Secrets read so far (name, value) and the config values known to be public.
#[derive(Default)]
struct Registry {
    /// Longest value first, so a secret containing another is masked whole.
    secrets: Vec<(String, String)>,
    /// Config values that are plain names or paths (see [`mask`]).
    public: Vec<String>,
    /// (secret name, config key) pairs already warned about.
    warned: Vec<(String, String)>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(|| RwLock::new(Registry::default()));

/// Credentials in a URL (`scheme://user:PASSWORD@host`): masked whether or not
/// the password was read with `secret()`.
static URL_PASSWORD: LazyLock<regex::Regex> = LazyLock::new(|| {
    // The password runs to the last `@` of the authority (an unencoded `@`
    // in it must not leave its end visible).
    regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/?#@:]*):([^\s/?#]*)@")
        .expect("the URL credentials pattern compiles")
});

/// Marks `value`, read as secret `name`, as secret from now on.
pub fn register_named(name: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    let mut registry = REGISTRY.write().expect("secret registry poisoned");
    if !registry
        .secrets
        .iter()
        .any(|(n, v)| n == name && v == value)
    {
        registry.secrets.push((name.to_string(), value.to_string()));
        registry
            .secrets
            .sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    }
}

/// Marks `value` as secret from now on (a secret without a name).
pub fn register(value: &str) {
    register_named("", value);
}

/// The names of the secrets read so far with their values.
fn secrets() -> Vec<(String, String)> {
    REGISTRY
        .read()
        .expect("secret registry poisoned")
        .secrets
        .clone()
}

/// A plain name or path: nothing in it can be the credential part of a
/// command line, URL or config line (no space, `=`, `:`, `@`, quote...).
fn is_plain_name(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
}

/// Records the workflow's config values: those that are plain names or paths
/// stay readable in output even where they contain a secret (see [`mask`]).
pub fn set_public_values<'a>(values: impl Iterator<Item = &'a str>) {
    let mut registry = REGISTRY.write().expect("secret registry poisoned");
    for value in values {
        if is_plain_name(value) && !registry.public.iter().any(|p| p == value) {
            registry.public.push(value.to_string());
        }
    }
}

/// Warns, once per pair, about each config value that is or contains a
/// secret: masking shows a reader where such a value is, and so the password.
pub fn warn_collisions<'a>(config: impl Iterator<Item = (&'a str, &'a str)>) {
    let mut registry = REGISTRY.write().expect("secret registry poisoned");
    let mut found = Vec::new();
    for (key, value) in config {
        for (name, secret) in &registry.secrets {
            if name.is_empty() || !value.contains(secret.as_str()) {
                continue;
            }
            let pair = (name.clone(), key.to_string());
            if !registry.warned.contains(&pair) && !found.iter().any(|(p, _)| p == &pair) {
                found.push((pair, value == secret));
            }
        }
    }
    for ((name, key), _) in &found {
        registry.warned.push((name.clone(), key.clone()));
    }
    // Logging masks through this registry: release it first.
    drop(registry);
    for ((name, key), equal) in found {
        if equal {
            tracing::warn!(
                "secret {name} is the same as config key `{key}`: wherever that value is shown it is masked, which tells a reader the password; choose a password that is no config value"
            );
        } else {
            tracing::warn!(
                "secret {name} is part of config key `{key}`'s value: a password found in a config value is easy to guess; choose another password"
            );
        }
    }
}

/// `text` with every secret replaced by [`MASK`] wherever it can occur.
///
/// Masked: a password in a URL's credentials, and every occurrence of a
/// secret read with `secret()`, except where it is part of a longer config
/// value that is a plain name or path (`/opt/thehive/files` with the password
/// `thehive`): such a value is known to the reader from the config, and
/// masking the secret inside it would show the reader the password. A config
/// value *equal* to a secret is masked (it cannot be told apart from the
/// secret); `secret()` and `config()` warn about both cases.
pub fn mask(text: &str) -> String {
    let text = URL_PASSWORD.replace_all(text, |caps: &regex::Captures| {
        if caps[2].is_empty() {
            caps[0].to_string()
        } else {
            format!("{}:{MASK}@", &caps[1])
        }
    });
    let registry = REGISTRY.read().expect("secret registry poisoned");
    if registry.secrets.is_empty() {
        return text.into_owned();
    }
    // Spans of public names that hold a secret as a part.
    let mut protected: Vec<(usize, usize)> = Vec::new();
    for public in &registry.public {
        let holds_secret = registry
            .secrets
            .iter()
            .any(|(_, s)| public.len() > s.len() && public.contains(s.as_str()));
        if holds_secret {
            protected.extend(
                text.match_indices(public.as_str())
                    .map(|(at, p)| (at, at + p.len())),
            );
        }
    }
    let mut masked: Vec<(usize, usize)> = Vec::new();
    for (_, secret) in &registry.secrets {
        for (at, found) in text.match_indices(secret.as_str()) {
            let span = (at, at + found.len());
            if !protected.iter().any(|p| p.0 <= span.0 && span.1 <= p.1) {
                masked.push(span);
            }
        }
    }
    if masked.is_empty() {
        return text.into_owned();
    }
    masked.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    for (start, end) in masked {
        if end <= done {
            continue;
        }
        if start >= done {
            out.push_str(&text[done..start]);
            out.push_str(MASK);
        }
        // An overlapping span extends the masked part.
        done = end;
    }
    out.push_str(&text[done..]);
    out
}

/// `value` with every string in it masked (for the journal and dry-run output).
pub fn mask_json(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(s) => serde_json::Value::String(mask(s)),
        serde_json::Value::Array(items) => items.iter().map(mask_json).collect(),
        serde_json::Value::Object(map) => {
            map.iter().map(|(k, v)| (k.clone(), mask_json(v))).collect()
        }
        other => other.clone(),
    }
}

/// The key of a secret reference in journaled undo options:
/// `{"$secret": "NAME"}` stands for the value of secret NAME.
pub const REFERENCE_KEY: &str = "$secret";

/// `options` with every string that is exactly a secret's value replaced by a
/// reference to the secret's name, so a journal holds names, never values (nor
/// a mask that recovery would send as the password). A secret inside a longer
/// string cannot be looked up again: that is an error naming the option.
pub fn to_references(value: &serde_json::Value, at: &str) -> Result<serde_json::Value, String> {
    let secrets = secrets();
    match value {
        serde_json::Value::String(s) => {
            if let Some((name, _)) = secrets.iter().find(|(name, v)| v == s && !name.is_empty()) {
                return Ok(serde_json::json!({ REFERENCE_KEY: name }));
            }
            if secrets.iter().any(|(_, v)| s.contains(v.as_str())) {
                return Err(format!(
                    "option `{at}` holds a secret inside a longer text; give the secret as a whole option value, so that recovery can read it again by name"
                ));
            }
            Ok(value.clone())
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| to_references(item, &format!("{at}[{i}]")))
            .collect(),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                to_references(v, &path).map(|v| (k.clone(), v))
            })
            .collect(),
        other => Ok(other.clone()),
    }
}

/// `options` with every `{"$secret": "NAME"}` replaced by the secret's value,
/// read again now (from `NAME` or `NAME_FILE`).
pub fn resolve_references(value: &serde_json::Value) -> Result<serde_json::Value, SecretError> {
    match value {
        serde_json::Value::Object(map) if map.len() == 1 => {
            if let Some(serde_json::Value::String(name)) = map.get(REFERENCE_KEY) {
                return read_secret(name).map(serde_json::Value::String);
            }
            map.iter()
                .map(|(k, v)| resolve_references(v).map(|v| (k.clone(), v)))
                .collect()
        }
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| resolve_references(v).map(|v| (k.clone(), v)))
            .collect(),
        serde_json::Value::Array(items) => items.iter().map(resolve_references).collect(),
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_and_nested_json() {
        register("hunter2-secret");
        assert_eq!(mask("-p hunter2-secret x hunter2-secret"), "-p *** x ***");
        let masked = mask_json(&serde_json::json!({"a": ["pw=hunter2-secret"], "n": 1}));
        assert_eq!(masked, serde_json::json!({"a": ["pw=***"], "n": 1}));
    }

    #[test]
    fn url_credentials_are_masked_and_names_holding_a_secret_are_not() {
        assert_eq!(
            mask("GET http://admin:S3cr%40t@127.0.0.1:9/x failed"),
            "GET http://admin:***@127.0.0.1:9/x failed"
        );
        assert_eq!(
            mask("see http://host:9200/_snapshot"),
            "see http://host:9200/_snapshot"
        );
        register_named("PW_T", "weakword");
        set_public_values(["/opt/weakword/files", "weakword"].into_iter());
        assert_eq!(
            mask("cannot read /opt/weakword/files/x; pw weakword; keyspace weakword"),
            "cannot read /opt/weakword/files/x; pw ***; keyspace ***"
        );
        assert_eq!(
            mask("x/opt/weakword/filesweakword"),
            "x/opt/weakword/files***"
        );
    }
}
