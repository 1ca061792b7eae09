//! The one secret type of the steps: passwords, API keys and S3 secret keys
//! arrive in step options as plain strings and are wrapped at once, so no
//! `Debug` output, log line or error ever shows them.

use serde::Deserialize;

/// A secret option value (a password, an API key, an S3 secret key or session
/// token): a plain string in the script, shown as `"***"` by `Debug`, never
/// by `Display` (it has none).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends or signs with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_show_in_debug() {
        let secret: Secret = serde_json::from_value(serde_json::json!("hunter2")).unwrap();
        assert_eq!(format!("{secret:?}"), "\"***\"");
        assert_eq!(secret.expose(), "hunter2");
    }
}
