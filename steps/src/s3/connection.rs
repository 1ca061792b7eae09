//! The connection options every S3 step takes (`endpoint`, its keys,
//! `config_dir`, `region`, `ca_cert`), declared once ([`S3Connection`]) and
//! flattened into each step's options with `#[serde(flatten)]`, and turned
//! with the step's location option into an endpoint and a bucket
//! ([`TargetOptions::resolve`]).
//!
//! serde documents `deny_unknown_fields` as unsupported together with
//! `flatten`; in fact the outer struct still refuses a key that neither it
//! nor the flattened struct takes (only the "expected one of" list is lost
//! from the message). The tests below check it for every S3 step, and each
//! step's own tests check a misspelt option of its own.

use std::path::PathBuf;

use serde::Deserialize;

use crate::runtime::secret::Secret;
use crate::s3::alias::{
    AliasError, EnvLookup, ExplicitEndpoint, ResolveOptions, S3Endpoint, S3Location,
};

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
            connection: self,
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

/// A step's bucket location option with the step's connection options: an
/// alias location `ALIAS/BUCKET[/PREFIX]`, or a location `BUCKET[/PREFIX]`
/// on an `endpoint` given with its keys.
#[derive(Clone, Copy, Debug)]
pub struct TargetOptions<'a> {
    /// The name of the option holding the location (`source`, `dest`), for errors.
    pub option: &'static str,
    /// The location.
    pub location: &'a str,
    /// The endpoint, keys, config folder, region and CA.
    pub connection: &'a S3Connection,
}

impl TargetOptions<'_> {
    /// Parses the location and resolves its endpoint: the alias the way `mc`
    /// does (see [`alias`](super::alias)), or the explicit `endpoint`.
    /// Keys without `endpoint` are refused: an alias brings its own.
    pub fn resolve(&self, env: EnvLookup<'_>) -> Result<(S3Endpoint, S3Location), AliasError> {
        let connection = self.connection;
        let resolve_options = ResolveOptions {
            config_dir: connection.config_dir.clone(),
            region: connection.region.clone(),
            ca_cert: connection.ca_cert.clone(),
        };
        // S3Location says `source`; errors name the step's own option.
        let name_option = |e: AliasError| match e {
            AliasError::InvalidSource {
                source_text,
                expected,
                reason,
                ..
            } => AliasError::InvalidSource {
                option: self.option,
                source_text,
                expected,
                reason,
            },
            other => other,
        };
        if let Some(endpoint) = &connection.endpoint {
            let location = S3Location::parse_bucket_path(self.location).map_err(name_option)?;
            let explicit = ExplicitEndpoint {
                endpoint: endpoint.clone(),
                access_key: connection.access_key.clone(),
                secret_key: connection.secret_key.clone(),
            };
            Ok((S3Endpoint::explicit(&explicit, &resolve_options)?, location))
        } else {
            if connection.access_key.is_some() || connection.secret_key.is_some() {
                return Err(AliasError::KeysWithoutEndpoint);
            }
            let location = S3Location::parse(self.location).map_err(name_option)?;
            let endpoint = S3Endpoint::resolve(&location.alias, &resolve_options, env)?;
            Ok((endpoint, location))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    use super::*;

    use crate::s3::alias::tests::env_of;
    use crate::s3::archive::S3ArchiveOptions;
    use crate::s3::mirror::MirrorOptions;
    use crate::s3::upload::UploadOptions;

    #[test]
    fn step_targets_name_their_option_and_keep_keys_with_endpoint() {
        let by_alias = S3Connection::default();
        let target = by_alias.target("dest", "offsite/thehive/sets");
        let env = env_of(&[("MC_HOST_offsite", "http://AK:SK@127.0.0.1:9000")]);
        let (endpoint, location) = target.resolve(&env).unwrap();
        assert_eq!(
            endpoint.describe(),
            "alias `offsite` (http://127.0.0.1:9000)"
        );
        assert_eq!(
            (location.bucket.as_str(), location.prefix.as_str()),
            ("thehive", "sets/")
        );

        let bad = by_alias.target("dest", "offsite");
        let error = crate::StepError::from(bad.resolve(&env).unwrap_err());
        assert_eq!(error.kind(), "config");
        assert_eq!(
            error.message(),
            "dest `offsite` is not ALIAS/BUCKET[/PREFIX]: no bucket after the alias"
        );

        let keys_with_alias = S3Connection {
            secret_key: Some(Secret::new("S")),
            ..S3Connection::default()
        };
        let error = crate::StepError::from(
            keys_with_alias
                .target("dest", "offsite/thehive/sets")
                .resolve(&env)
                .unwrap_err(),
        );
        assert_eq!(error.kind(), "options");
        assert_eq!(
            error.message(),
            "access_key and secret_key go with endpoint; an alias brings its own keys"
        );

        let explicit = S3Connection {
            endpoint: Some("http://127.0.0.1:9001".into()),
            access_key: Some("A".into()),
            secret_key: Some(Secret::new("S")),
            ..S3Connection::default()
        };
        let (endpoint, location) = explicit
            .target("dest", "thehive/sets")
            .resolve(&env_of(&[]))
            .unwrap();
        assert_eq!(endpoint.describe(), "endpoint http://127.0.0.1:9001");
        assert_eq!(
            (location.alias.as_str(), location.bucket.as_str()),
            ("", "thehive")
        );
    }

    /// Every connection key next to `own` (a step's required options) is
    /// taken, and a misspelt connection key or step key is refused by name.
    fn connection_keys_taken_and_typos_refused<T: DeserializeOwned + std::fmt::Debug>(own: Value) {
        let with = |extra: Value| {
            let mut map = own.as_object().unwrap().clone();
            map.extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<T>(Value::Object(map))
        };
        let all = json!({
            "config_dir": "/etc/mc", "endpoint": "http://127.0.0.1:9000", "access_key": "AK",
            "secret_key": "SK", "region": "eu-west-1", "ca_cert": "/etc/ca.pem"
        });
        with(all).expect("every connection key is an option");
        for typo in ["acess_key", "endpiont", "ca_certs", "sorce", "max-rate"] {
            let e = with(json!({ typo: "x" })).unwrap_err();
            assert!(
                e.to_string().contains(&format!("unknown field `{typo}`")),
                "{e}"
            );
        }
    }

    #[test]
    fn every_s3_step_takes_the_connection_keys_and_refuses_unknown_ones() {
        connection_keys_taken_and_typos_refused::<MirrorOptions>(
            json!({"source": "b", "dest": "/x"}),
        );
        connection_keys_taken_and_typos_refused::<S3ArchiveOptions>(
            json!({"source": "b", "dest": "/x.tar"}),
        );
        connection_keys_taken_and_typos_refused::<UploadOptions>(json!({"src": "/a", "dest": "b"}));
    }
}
