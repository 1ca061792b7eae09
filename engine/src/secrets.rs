//! Secret values and their masking: every secret a workflow reads with
//! `secret(NAME)` is replaced by `***` wherever the engine prints or records.

use std::sync::{LazyLock, RwLock};

/// What replaces a secret in output.
pub const MASK: &str = "***";

static SECRETS: LazyLock<RwLock<Vec<String>>> = LazyLock::new(|| RwLock::new(Vec::new()));

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
}

/// Reads secret `name` from the environment variable `name`, else from the file
/// named by `name_FILE` (trailing newline trimmed), and registers it for masking.
pub fn read_secret(name: &str) -> Result<String, SecretError> {
    let value = match std::env::var(name) {
        Ok(value) => value,
        Err(_) => match std::env::var(format!("{name}_FILE")) {
            Ok(path) => std::fs::read_to_string(&path)
                .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|source| SecretError::File {
                    name: name.to_string(),
                    path,
                    source,
                })?,
            Err(_) => {
                return Err(SecretError::Missing {
                    name: name.to_string(),
                });
            }
        },
    };
    register(&value);
    Ok(value)
}

/// Marks `value` as secret from now on.
pub fn register(value: &str) {
    if value.is_empty() {
        return;
    }
    let mut secrets = SECRETS.write().expect("secret registry poisoned");
    if !secrets.iter().any(|s| s == value) {
        secrets.push(value.to_string());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn mask(text: &str) -> String {
    let secrets = SECRETS.read().expect("secret registry poisoned");
    let mut out = text.to_string();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
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
}
