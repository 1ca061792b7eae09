//! The connection options every S3 step takes (`endpoint`, its keys,
//! `config_dir`, `region`, `ca_cert`), declared once and flattened into each
//! step's options with `#[serde(flatten)]`.
//!
//! serde documents `deny_unknown_fields` as unsupported together with
//! `flatten`; in fact the outer struct still refuses a key that neither it
//! nor the flattened struct takes (only the "expected one of" list is lost
//! from the message). Each step's tests check that an unknown key is refused.

use std::path::PathBuf;

use serde::Deserialize;

use crate::runtime::secret::Secret;
use crate::s3::alias::TargetOptions;

/// Where an S3 step's bucket is served and how to reach it, besides the
/// location option itself.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct S3Connection {
    /// A MinIO-client configuration folder searched first for the alias.
    #[serde(default)]
    pub config_dir: Option<PathBuf>,
    /// `http(s)://host[:port]` instead of an alias.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Access key for `endpoint`.
    #[serde(default)]
    pub access_key: Option<String>,
    /// Secret key for `endpoint`.
    #[serde(default)]
    pub secret_key: Option<Secret>,
    /// Signing region (default: from an AWS host name, else us-east-1).
    #[serde(default)]
    pub region: Option<String>,
    /// A PEM file of certificate authorities to trust (private CA on the endpoint).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

impl S3Connection {
    /// The step's bucket location `location` (its option is called `option`,
    /// for errors) with these settings, ready to resolve.
    pub fn target<'a>(&'a self, option: &'static str, location: &'a str) -> TargetOptions<'a> {
        TargetOptions {
            option,
            location,
            endpoint: self.endpoint.as_deref(),
            access_key: self.access_key.as_deref(),
            secret_key: self.secret_key.as_ref(),
            config_dir: self.config_dir.as_deref(),
            region: self.region.as_deref(),
            ca_cert: self.ca_cert.as_deref(),
        }
    }

    /// `http://host:port ` when an endpoint is given, for describe lines.
    pub fn endpoint_prefix(&self) -> String {
        self.endpoint
            .as_deref()
            .map(|e| format!("{e} "))
            .unwrap_or_default()
    }
}
