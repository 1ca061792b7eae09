//! Where a config value came from ([`Origin`]) and what can be wrong with
//! one ([`ConfigError`]): shared by the site file ([`crate::host::config_site`])
//! and the overrides built on it ([`crate::host::config`]), which re-exports
//! both.

/// Where an override came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The site file (its path).
    SiteFile(String),
    /// `--vars FILE`.
    VarsFile(String),
    /// `RUNBOOK_<KEY>`.
    Environment(String),
    /// `--set KEY=VALUE`.
    Set,
    /// The workflow's own default.
    Default,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::SiteFile(path) => write!(f, "site file {path}"),
            Origin::VarsFile(path) => write!(f, "--vars {path}"),
            Origin::Environment(name) => write!(f, "environment variable {name}"),
            Origin::Set => f.write_str("--set"),
            Origin::Default => f.write_str("the workflow's default"),
        }
    }
}

/// A config error; the run stops before anything happens (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--set` without `=`.
    #[error("--set {0}: expected KEY=VALUE")]
    BadSet(String),
    /// The vars file cannot be read or parsed.
    #[error("--vars {path}: {reason}")]
    VarsFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A key the workflow does not declare.
    #[error("unknown config key `{key}` (from {origin}); this workflow declares: {declared}")]
    UnknownKey {
        /// The key.
        key: String,
        /// Where it came from.
        origin: Origin,
        /// The declared keys, comma-separated.
        declared: String,
    },
    /// A `RUNBOOK_*` environment variable that is neither a declared key nor
    /// one the engine reads: most likely a typo that would be ignored.
    #[error(
        "environment variable {name} names no config key of {scope}{suggestion}; \
         unset it (RUNBOOK_<KEY> sets a declared key; the engine itself reads {engine})"
    )]
    UnknownEnvironment {
        /// The variable.
        name: String,
        /// "this workflow", or "any workflow of this site".
        scope: &'static str,
        /// " (did you mean RUNBOOK_X?)" or empty.
        suggestion: String,
        /// The engine's own variables, comma-separated.
        engine: String,
    },
    /// The site file cannot be read or parsed.
    #[error("site file {path}: {reason}")]
    SiteFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A site file key that no workflow and not the engine knows.
    #[error(
        "site file {path}: unknown key `{key}`{suggestion}; a key must be a config key of a \
         workflow (`runbook config WORKFLOW` lists them) or an engine setting ({engine})"
    )]
    UnknownSiteKey {
        /// The key.
        key: String,
        /// The site file.
        path: String,
        /// " (did you mean `x`?)" or empty.
        suggestion: String,
        /// The engine settings, comma-separated.
        engine: String,
    },
    /// A rule passed to `config()` that makes no sense (a script error).
    #[error("config() rules: {0}")]
    BadRule(String),
    /// A value that does not convert to the default's type.
    #[error("config key `{key}` (from {origin}): {reason}")]
    BadValue {
        /// The key.
        key: String,
        /// Where it came from.
        origin: Origin,
        /// What is wrong.
        reason: String,
    },
}
