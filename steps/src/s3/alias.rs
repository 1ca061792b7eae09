//! MinIO-client aliases: finds an S3 endpoint and its credentials the way
//! `mcli`/`mc` do, so what an admin set up with `mcli alias set` just works.
//!
//! Lookup order for an alias (the same as `mc`'s `expandAlias`):
//! 1. the environment variable `MC_HOST_<ALIAS>`
//!    (`https://ACCESS:SECRET[:TOKEN]@host[:port]`), then the deprecated `MC_HOSTS_<ALIAS>`;
//! 2. `config.json` in the first of these folders that holds the alias: the
//!    step's `config_dir`, `$MC_CONFIG_DIR`, `~/.mcli/`, `~/.mc/` (fields `url`,
//!    `accessKey`, `secretKey`, `sessionToken`, `api`, `path`; the version 9
//!    layout with `hosts` instead of `aliases` is read too).
//!
//! Or the caller gives the endpoint and keys directly ([`ExplicitEndpoint`]).
//!
//! The environment is read through an [`EnvLookup`] so that tests (and the
//! engine) need not mutate the process environment.
//!
//! Secrets never appear in `Debug` output or in errors.

use std::path::{Path, PathBuf};
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::{ClientOptions, RetryConfig};
use url::Url;

use crate::runtime::error::{ErrorKind, StepFailure};

/// Reads one environment variable; [`process_env`] reads the real environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`EnvLookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The region used when neither the options nor the endpoint name one
/// (what the MinIO client and MinIO itself default to).
pub const DEFAULT_REGION: &str = "us-east-1";

use crate::runtime::secret::Secret;

/// `ALIAS/BUCKET[/PREFIX]`, as `mcli` commands take it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// The alias (or, with an explicit endpoint, empty).
    pub alias: String,
    /// The bucket.
    pub bucket: String,
    /// The key prefix, without leading slash; when not empty it ends with `/`
    /// (a prefix names a folder, as with `mcli mirror alias/bucket/folder`).
    pub prefix: String,
}

impl S3Location {
    /// Parses `ALIAS/BUCKET[/PREFIX]`.
    pub fn parse(source: &str) -> Result<Self, AliasError> {
        let invalid = |reason: &str| AliasError::InvalidSource {
            option: "source",
            source_text: source.to_string(),
            expected: "ALIAS/BUCKET[/PREFIX]",
            reason: reason.to_string(),
        };
        let (alias, rest) = source
            .split_once('/')
            .ok_or_else(|| invalid("no bucket after the alias"))?;
        if !is_valid_alias(alias) {
            return Err(invalid(
                "the alias must start with a letter and hold only letters, digits, `-` and `_`",
            ));
        }
        let mut location = Self::parse_bucket_path(rest).map_err(|e| match e {
            AliasError::InvalidSource { reason, .. } => invalid(&reason),
            other => other,
        })?;
        location.alias = alias.to_string();
        Ok(location)
    }

    /// Parses `BUCKET[/PREFIX]` (used with an explicit endpoint); `alias` is empty.
    pub fn parse_bucket_path(source: &str) -> Result<Self, AliasError> {
        let invalid = |reason: &str| AliasError::InvalidSource {
            option: "source",
            source_text: source.to_string(),
            expected: "BUCKET[/PREFIX]",
            reason: reason.to_string(),
        };
        let (bucket, prefix) = match source.split_once('/') {
            Some((bucket, prefix)) => (bucket, prefix),
            None => (source, ""),
        };
        if bucket.is_empty() {
            return Err(invalid("the bucket name is empty"));
        }
        if !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(invalid(&format!("`{bucket}` is not a valid bucket name")));
        }
        let prefix = prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        Ok(S3Location {
            alias: String::new(),
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

/// `mc`'s rule for alias names.
fn is_valid_alias(alias: &str) -> bool {
    let mut chars = alias.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && alias.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// An endpoint and keys given directly instead of an alias.
#[derive(Clone, Debug)]
pub struct ExplicitEndpoint {
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    /// The access key; `None` with `secret_key` `None` means anonymous requests.
    pub access_key: Option<String>,
    /// The secret key.
    pub secret_key: Option<Secret>,
}

/// Where the credentials of an [`S3Endpoint`] came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// The named environment variable (`MC_HOST_<ALIAS>`).
    EnvVar(String),
    /// An alias in this `config.json`.
    ConfigFile(PathBuf),
    /// The step's `endpoint`/`access_key`/`secret_key` options.
    Options,
}

impl std::fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialSource::EnvVar(name) => write!(f, "${name}"),
            CredentialSource::ConfigFile(path) => write!(f, "{}", path.display()),
            CredentialSource::Options => f.write_str("the step options"),
        }
    }
}

/// How bucket names go into request URLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketLookup {
    /// `https://host/bucket/key` (MinIO, most on-premises servers).
    Path,
    /// `https://bucket.host/key` (AWS and some clouds).
    VirtualHost,
    /// Decide from the host name as the MinIO client does: virtual-host style for
    /// AWS, Google and Aliyun endpoints, path style otherwise.
    Auto,
}

impl BucketLookup {
    /// Reads `config.json`'s `path` field: `on`/`path` → path style, `off`/`dns`
    /// → virtual host, anything else (`auto`) → [`BucketLookup::Auto`].
    pub fn from_config(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "on" | "path" => BucketLookup::Path,
            "off" | "dns" => BucketLookup::VirtualHost,
            _ => BucketLookup::Auto,
        }
    }
}

#[derive(Clone)]
struct Credentials {
    access_key: String,
    secret_key: Secret,
    session_token: Option<Secret>,
}

/// A resolved S3 endpoint: URL, region, bucket lookup style and credentials.
#[derive(Clone)]
pub struct S3Endpoint {
    /// The alias name (empty with an explicit endpoint); used in messages.
    pub alias: String,
    /// `scheme://host[:port]`, without credentials or path.
    pub url: Url,
    /// The signing region.
    pub region: String,
    /// Path style or virtual-host style.
    pub bucket_lookup: BucketLookup,
    /// Where the settings came from.
    pub source: CredentialSource,
    /// PEM files of certificate authorities trusted besides the system's:
    /// `certs/CAs/*` of the MinIO-client configuration folders, where `mc`
    /// keeps them (a file holding no certificate is skipped, as `mc` does).
    pub ca_files: Vec<PathBuf>,
    /// [`ResolveOptions::ca_cert`]: also trusted; must hold a certificate.
    pub ca_cert: Option<PathBuf>,
    credentials: Option<Credentials>,
}

impl std::fmt::Debug for S3Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Endpoint")
            .field("alias", &self.alias)
            .field("url", &self.url.as_str())
            .field("region", &self.region)
            .field("bucket_lookup", &self.bucket_lookup)
            .field("source", &self.source)
            .field("ca_files", &self.ca_files)
            .field("ca_cert", &self.ca_cert)
            .field(
                "access_key",
                &self.credentials.as_ref().map(|c| c.access_key.as_str()),
            )
            .field("secret_key", &self.credentials.as_ref().map(|_| "***"))
            .finish()
    }
}

/// What the resolver needs besides the alias name.
#[derive(Clone, Debug, Default)]
pub struct ResolveOptions {
    /// A MinIO-client configuration folder searched before the default ones.
    pub config_dir: Option<PathBuf>,
    /// The signing region; default: taken from an AWS host name, else `us-east-1`.
    pub region: Option<String>,
    /// A PEM file of certificate authorities to trust besides the system's
    /// (it must hold at least one certificate).
    pub ca_cert: Option<PathBuf>,
}

impl S3Endpoint {
    /// Resolves `alias` the way `mc` does (see the module documentation).
    pub fn resolve(
        alias: &str,
        options: &ResolveOptions,
        env: EnvLookup<'_>,
    ) -> Result<Self, AliasError> {
        let mut endpoint = Self::resolve_alias(alias, options, env)?;
        endpoint.ca_files = mc_ca_files(&config_dirs(options.config_dir.as_deref(), env));
        Ok(endpoint)
    }

    fn resolve_alias(
        alias: &str,
        options: &ResolveOptions,
        env: EnvLookup<'_>,
    ) -> Result<Self, AliasError> {
        for prefix in ["MC_HOST_", "MC_HOSTS_"] {
            let name = format!("{prefix}{alias}");
            if let Some(value) = env(&name) {
                if prefix == "MC_HOSTS_" {
                    tracing::warn!("{name} is deprecated; use MC_HOST_{alias}");
                }
                let (url, credentials) =
                    parse_env_url(&value).ok_or_else(|| AliasError::InvalidEnvUrl {
                        variable: name.clone(),
                    })?;
                return Ok(Self::assemble(
                    alias,
                    url,
                    credentials,
                    BucketLookup::Auto,
                    CredentialSource::EnvVar(name),
                    options,
                ));
            }
        }
        let files = config_files(options.config_dir.as_deref(), env);
        for file in &files {
            let Some(entry) = read_alias_from_config(file, alias)? else {
                continue;
            };
            return Self::from_config_entry(alias, entry, file, options);
        }
        Err(AliasError::AliasNotFound {
            alias: alias.to_string(),
            searched: if files.is_empty() {
                "any config.json (no config_dir, $MC_CONFIG_DIR or $HOME)".to_string()
            } else {
                files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }

    /// The endpoint of `alias` as the `mc` config file `file` has it
    /// (`entry`): its URL, keys (none: anonymous, as with `mc`) and bucket
    /// lookup.
    fn from_config_entry(
        alias: &str,
        entry: ConfigEntry,
        file: &Path,
        options: &ResolveOptions,
    ) -> Result<Self, AliasError> {
        let invalid = |field: &'static str| AliasError::InvalidConfigEntry {
            alias: alias.to_string(),
            path: file.to_path_buf(),
            field,
        };
        let url = entry
            .url
            .as_deref()
            .and_then(parse_endpoint_url)
            .ok_or_else(|| invalid("url"))?;
        if let Some(api) = &entry.api
            && !api.eq_ignore_ascii_case("s3v4")
        {
            tracing::warn!(
                "alias `{alias}` in {} asks for signature {api}; runbook signs with S3v4",
                file.display()
            );
        }
        let credentials = match (entry.access_key, entry.secret_key) {
            (Some(access), Some(secret)) if !access.is_empty() => Some(Credentials {
                access_key: access,
                secret_key: Secret::new(secret),
                session_token: entry
                    .session_token
                    .filter(|t| !t.is_empty())
                    .map(Secret::new),
            }),
            // No keys (or empty ones): anonymous access, as with `mc`.
            _ => None,
        };
        let lookup = entry
            .path
            .as_deref()
            .map(BucketLookup::from_config)
            .unwrap_or(BucketLookup::Auto);
        Ok(Self::assemble(
            alias,
            url,
            credentials,
            lookup,
            CredentialSource::ConfigFile(file.to_path_buf()),
            options,
        ))
    }

    /// An endpoint given directly (the step's `endpoint`/`access_key`/`secret_key`).
    pub fn explicit(
        endpoint: &ExplicitEndpoint,
        options: &ResolveOptions,
    ) -> Result<Self, AliasError> {
        let url =
            parse_endpoint_url(&endpoint.endpoint).ok_or_else(|| AliasError::InvalidEndpoint {
                endpoint: endpoint.endpoint.clone(),
            })?;
        let credentials = match (&endpoint.access_key, &endpoint.secret_key) {
            (Some(access), Some(secret)) => Some(Credentials {
                access_key: access.clone(),
                secret_key: secret.clone(),
                session_token: None,
            }),
            (None, None) => None,
            _ => return Err(AliasError::HalfCredentials),
        };
        Ok(Self::assemble(
            "",
            url,
            credentials,
            BucketLookup::Auto,
            CredentialSource::Options,
            options,
        ))
    }

    fn assemble(
        alias: &str,
        url: Url,
        credentials: Option<Credentials>,
        bucket_lookup: BucketLookup,
        source: CredentialSource,
        options: &ResolveOptions,
    ) -> Self {
        let region = options
            .region
            .clone()
            .or_else(|| region_from_host(url.host_str().unwrap_or_default()))
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        S3Endpoint {
            alias: alias.to_string(),
            url,
            region,
            bucket_lookup,
            source,
            ca_files: Vec::new(),
            ca_cert: options.ca_cert.clone(),
            credentials,
        }
    }

    /// How to name this endpoint in messages: `alias `x` (http://host:port)`.
    pub fn describe(&self) -> String {
        let url = self.url.as_str().trim_end_matches('/');
        if self.alias.is_empty() {
            format!("endpoint {url}")
        } else {
            format!("alias `{}` ({url})", self.alias)
        }
    }

    /// True when requests for `bucket` use path style.
    pub fn uses_path_style(&self, bucket: &str) -> bool {
        match self.bucket_lookup {
            BucketLookup::Path => true,
            BucketLookup::VirtualHost => false,
            BucketLookup::Auto => {
                let host = self.url.host_str().unwrap_or_default();
                let cloud = host.ends_with(".amazonaws.com")
                    || host.ends_with(".amazonaws.com.cn")
                    || host == "storage.googleapis.com"
                    || host.ends_with(".aliyuncs.com");
                // A dotted bucket name breaks the TLS wildcard certificate.
                !cloud || (self.url.scheme() == "https" && bucket.contains('.'))
            }
        }
    }

    /// The bucket's base URL: `scheme://host[:port]/bucket` (path style) or
    /// `scheme://bucket.host[:port]` (virtual host).
    pub fn bucket_url(&self, bucket: &str) -> Url {
        let base = self.url.as_str().trim_end_matches('/');
        let text = if self.uses_path_style(bucket) {
            format!("{base}/{bucket}")
        } else {
            let mut url = self.url.clone();
            let host = format!("{bucket}.{}", url.host_str().unwrap_or_default());
            // The host came from a parsed URL, so prefixing a bucket name keeps it valid.
            let _ = url.set_host(Some(&host));
            url.as_str().trim_end_matches('/').to_string()
        };
        Url::parse(&text).expect("bucket URL built from a valid endpoint URL")
    }

    /// The PEM bundles of [`Self::ca_files`] and [`Self::ca_cert`], read now,
    /// each with its file.
    fn read_ca_files(&self) -> Result<Vec<(PathBuf, Vec<u8>)>, AliasError> {
        let mut bundles = Vec::new();
        let files = self.ca_files.iter().map(|f| (f, false));
        for (path, required) in files.chain(self.ca_cert.iter().map(|f| (f, true))) {
            let pem = std::fs::read(path).map_err(|source| AliasError::CaRead {
                path: path.clone(),
                source,
            })?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                if required {
                    return Err(AliasError::CaParse { path: path.clone() });
                }
                tracing::debug!("{} holds no PEM certificate; skipped", path.display());
                continue;
            }
            bundles.push((path.clone(), pem));
        }
        Ok(bundles)
    }

    /// A reqwest client for the requests made besides object_store's (listing,
    /// HEAD), trusting [`Self::ca_files`] too: it must connect within
    /// `connect_timeout` and get its answer within `timeout`. Redirects are not
    /// followed: S3 answers a wrong region with a redirect that has no
    /// Location; it must surface as the error it is.
    pub fn request_client(
        &self,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<reqwest::Client, AliasError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none());
        for (path, pem) in self.read_ca_files()? {
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|_| AliasError::CaParse { path: path.clone() })?;
            builder = builder.tls_certs_merge(certificates);
        }
        builder.build().map_err(|source| AliasError::HttpClient {
            endpoint: self.describe(),
            source,
        })
    }

    /// True when requests are signed (false: anonymous access).
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Adds the SigV4 headers (`authorization`, `x-amz-date`,
    /// `x-amz-content-sha256`, `x-amz-security-token`) for a request without a
    /// body to `headers`, using object_store's signer; the headers already in
    /// `headers` (e.g. `x-amz-checksum-mode`) are signed too, as S3 wants every
    /// `x-amz-*` header signed. Anonymous endpoints add nothing.
    pub fn sign_headers(
        &self,
        method: &reqwest::Method,
        url: &Url,
        headers: &mut reqwest::header::HeaderMap,
    ) -> Result<(), AliasError> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        let credential = AwsCredential {
            key_id: credentials.access_key.clone(),
            secret_key: credentials.secret_key.expose().to_string(),
            token: credentials
                .session_token
                .as_ref()
                .map(|t| t.expose().to_string()),
        };
        let mut request = HttpRequest::new(HttpRequestBody::empty());
        *request.method_mut() = method.clone();
        *request.headers_mut() = headers.clone();
        *request.uri_mut() = url.as_str().parse().map_err(|_| AliasError::Sign {
            endpoint: self.describe(),
        })?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .try_authorize(&mut request, None)
            .map_err(|_| AliasError::Sign {
                endpoint: self.describe(),
            })?;
        for (name, value) in request.headers() {
            headers.insert(name.clone(), value.clone());
        }
        Ok(())
    }

    /// An object_store client for `bucket` on this endpoint.
    ///
    /// `client` sets timeouts (see [`transfer_client_options`]); `retry` bounds
    /// object_store's own retries. Plain `http` endpoints are allowed.
    pub fn object_store(
        &self,
        bucket: &str,
        client: ClientOptions,
        retry: RetryConfig,
    ) -> Result<AmazonS3, AliasError> {
        self.object_store_builder(bucket, client, retry)?
            .build()
            .map_err(|source| AliasError::Build {
                endpoint: self.describe(),
                source,
            })
    }

    /// The builder behind [`Self::object_store`], for callers that set more
    /// (e.g. `with_checksum_algorithm`) before building.
    pub fn object_store_builder(
        &self,
        bucket: &str,
        client: ClientOptions,
        retry: RetryConfig,
    ) -> Result<AmazonS3Builder, AliasError> {
        let path_style = self.uses_path_style(bucket);
        let endpoint = if path_style {
            self.url.as_str().trim_end_matches('/').to_string()
        } else {
            self.bucket_url(bucket).to_string()
        };
        let mut client = client;
        for (path, pem) in self.read_ca_files()? {
            let certificates = object_store::Certificate::from_pem_bundle(&pem)
                .map_err(|_| AliasError::CaParse { path: path.clone() })?;
            for certificate in certificates {
                client = client.with_root_certificate(certificate);
            }
        }
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_region(&self.region)
            .with_virtual_hosted_style_request(!path_style)
            .with_client_options(client.with_allow_http(self.url.scheme() == "http"))
            .with_retry(retry);
        builder = match &self.credentials {
            Some(credentials) => {
                let mut builder = builder
                    .with_access_key_id(&credentials.access_key)
                    .with_secret_access_key(credentials.secret_key.expose());
                if let Some(token) = &credentials.session_token {
                    builder = builder.with_token(token.expose());
                }
                builder
            }
            // Without keys object_store would ask the EC2 metadata service for some.
            None => builder.with_skip_signature(true),
        };
        Ok(builder)
    }
}

/// Client options for long transfers: no overall request timeout (a large
/// object may take hours), but a connection must open within 10 s and data
/// must keep flowing (no read stalls over 60 s).
pub fn transfer_client_options() -> ClientOptions {
    ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(std::time::Duration::from_secs(10))
        .with_read_timeout(std::time::Duration::from_secs(60))
}

/// The region in an AWS host name (`s3.eu-west-3.amazonaws.com`,
/// `s3-eu-west-3.amazonaws.com`, `s3.dualstack.eu-west-3.amazonaws.com`).
fn region_from_host(host: &str) -> Option<String> {
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let label = rest.rsplit('.').next()?;
    let region = label.strip_prefix("s3-").unwrap_or(label);
    (region != "s3" && region.contains('-')).then(|| region.to_string())
}

/// `http(s)://host[:port][/]` with nothing else.
fn parse_endpoint_url(text: &str) -> Option<Url> {
    let url = Url::parse(text).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && (url.path() == "/" || url.path().is_empty())
        && url.query().is_none()
        && url.fragment().is_none();
    plain.then_some(url)
}

/// Splits `MC_HOST_<alias>` the way `mc` does: `scheme://ACCESS:SECRET:TOKEN@host`
/// is tried first, then `scheme://ACCESS:SECRET@host`; keys are taken as written
/// (no percent-decoding), the host part ends at the last `@`. A URL without keys
/// means anonymous access. `None` when the value is not such a URL.
fn parse_env_url(value: &str) -> Option<(Url, Option<Credentials>)> {
    let scheme = ["https://", "http://"]
        .into_iter()
        .find(|s| value.starts_with(s))?;
    let rest = &value[scheme.len()..];
    let colons: Vec<usize> = rest.match_indices(':').map(|(i, _)| i).collect();
    // ^(https?://)(.*?):(.*?):(.*)@(.*?)$ : the first pair of colons that has an `@` after it.
    let with_token = colons.iter().enumerate().find_map(|(n, &first)| {
        colons[n + 1..].iter().find_map(|&second| {
            let at = rest[second + 1..].rfind('@')? + second + 1;
            Some((first, second, at))
        })
    });
    let (credentials, host) = if let Some((first, second, at)) = with_token {
        let credentials = Credentials {
            access_key: rest[..first].to_string(),
            secret_key: Secret::new(rest[first + 1..second].to_string()),
            session_token: Some(Secret::new(rest[second + 1..at].to_string())),
        };
        (Some(credentials), &rest[at + 1..])
    } else if let Some((first, at)) = colons
        .iter()
        .find_map(|&first| Some((first, rest[first + 1..].rfind('@')? + first + 1)))
    {
        // ^(https?://)(.*?):(.*)@(.*?)$
        let credentials = Credentials {
            access_key: rest[..first].to_string(),
            secret_key: Secret::new(rest[first + 1..at].to_string()),
            session_token: None,
        };
        (Some(credentials), &rest[at + 1..])
    } else {
        (None, rest)
    };
    let url = parse_endpoint_url(&format!("{scheme}{host}"))?;
    Some((url, credentials))
}

/// The `config.json` files to search, in order.
fn config_files(config_dir: Option<&Path>, env: EnvLookup<'_>) -> Vec<PathBuf> {
    config_dirs(config_dir, env)
        .into_iter()
        .map(|dir| dir.join("config.json"))
        .collect()
}

/// The MinIO-client configuration folders to search, in order, without repeats.
fn config_dirs(config_dir: Option<&Path>, env: EnvLookup<'_>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = config_dir {
        dirs.push(dir.to_path_buf());
    }
    if let Some(dir) = env("MC_CONFIG_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(home) = env("HOME").filter(|h| !h.is_empty()) {
        dirs.push(Path::new(&home).join(".mcli"));
        dirs.push(Path::new(&home).join(".mc"));
    }
    let mut unique: Vec<PathBuf> = Vec::new();
    for dir in dirs {
        if !unique.contains(&dir) {
            unique.push(dir);
        }
    }
    unique
}

/// The files in `certs/CAs/` of each configuration folder, where `mc` keeps
/// the certificates of private certificate authorities.
fn mc_ca_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join("certs").join("CAs")) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    files
}

/// One alias entry of `config.json`.
#[derive(serde::Deserialize)]
struct ConfigEntry {
    url: Option<String>,
    #[serde(rename = "accessKey")]
    access_key: Option<String>,
    #[serde(rename = "secretKey")]
    secret_key: Option<String>,
    #[serde(rename = "sessionToken")]
    session_token: Option<String>,
    api: Option<String>,
    path: Option<String>,
}

/// The alias's entry in `file`; `None` when the file does not exist or does
/// not hold the alias.
fn read_alias_from_config(file: &Path, alias: &str) -> Result<Option<ConfigEntry>, AliasError> {
    let text = match std::fs::read(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AliasError::ConfigRead {
                path: file.to_path_buf(),
                source,
            });
        }
    };
    // Only the position goes into errors: serde messages can quote values.
    let parse_error = |e: serde_json::Error| AliasError::ConfigParse {
        path: file.to_path_buf(),
        line: e.line(),
        column: e.column(),
    };
    let document: serde_json::Value = serde_json::from_slice(&text).map_err(parse_error)?;
    let entry = ["aliases", "hosts"]
        .iter()
        .find_map(|section| document.get(section)?.get(alias));
    match entry {
        None => Ok(None),
        Some(entry) => serde_json::from_value::<ConfigEntry>(entry.clone())
            .map(Some)
            .map_err(|_| AliasError::InvalidConfigEntry {
                alias: alias.to_string(),
                path: file.to_path_buf(),
                field: "a field that is not a string",
            }),
    }
}

/// Why an alias could not be resolved or used.
#[derive(Debug, thiserror::Error)]
pub enum AliasError {
    /// The location option (`source`, `dest`) is not `ALIAS/BUCKET[/PREFIX]`.
    #[error("{option} `{source_text}` is not {expected}: {reason}")]
    InvalidSource {
        /// The option holding the location.
        option: &'static str,
        /// The text given.
        source_text: String,
        /// The expected form.
        expected: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `MC_HOST_<alias>` is set but malformed (its value holds secrets, so it is not shown).
    #[error("${variable} is not of the form https://ACCESS:SECRET@host[:port]")]
    InvalidEnvUrl {
        /// The variable name.
        variable: String,
    },
    /// A `config.json` could not be read.
    #[error("could not read {}: {source}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `config.json` is not valid JSON.
    #[error("{} is not valid JSON (line {line}, column {column})", path.display())]
    ConfigParse {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped.
        line: usize,
        /// Where the parser stopped.
        column: usize,
    },
    /// The alias entry lacks a field or has a wrong one.
    #[error("alias `{alias}` in {} has an invalid or missing {field}", path.display())]
    InvalidConfigEntry {
        /// The alias.
        alias: String,
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
    },
    /// The alias is nowhere.
    #[error(
        "alias `{alias}` not found: no $MC_HOST_{alias} and no such alias in {searched} (create it with `mcli alias set {alias} URL ACCESS_KEY SECRET_KEY`)"
    )]
    AliasNotFound {
        /// The alias.
        alias: String,
        /// The files searched, comma-separated.
        searched: String,
    },
    /// The `endpoint` option is not `http(s)://host[:port]`.
    #[error("endpoint `{endpoint}` is not of the form http(s)://host[:port]")]
    InvalidEndpoint {
        /// The text given.
        endpoint: String,
    },
    /// Only one of `access_key` and `secret_key` was given.
    #[error("give both access_key and secret_key, or neither for anonymous access")]
    HalfCredentials,
    /// `access_key` or `secret_key` was given with an alias instead of `endpoint`.
    #[error("access_key and secret_key go with endpoint; an alias brings its own keys")]
    KeysWithoutEndpoint,
    /// A certificate file could not be read.
    #[error("could not read the CA certificate file {}: {source}", path.display())]
    CaRead {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A certificate file holds no valid PEM certificate.
    #[error("{} holds no valid PEM certificate", path.display())]
    CaParse {
        /// The file.
        path: PathBuf,
    },
    /// The HTTP client could not be set up (TLS settings).
    #[error("could not set up an HTTP client for {endpoint}")]
    HttpClient {
        /// The endpoint.
        endpoint: String,
        /// reqwest's reason.
        source: reqwest::Error,
    },
    /// Signing a request failed.
    #[error("could not sign a request for {endpoint}")]
    Sign {
        /// The endpoint.
        endpoint: String,
    },
    /// object_store refused the settings.
    #[error("could not set up an S3 client for {endpoint}")]
    Build {
        /// The endpoint.
        endpoint: String,
        /// object_store's reason.
        source: object_store::Error,
    },
}

impl StepFailure for AliasError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            AliasError::KeysWithoutEndpoint => ErrorKind::Options,
            _ => ErrorKind::Config,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An environment holding only `pairs`, for [`EnvLookup`].
    pub(crate) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn creds(endpoint: &S3Endpoint) -> (String, String, Option<String>) {
        let c = endpoint.credentials.as_ref().expect("credentials");
        (
            c.access_key.clone(),
            c.secret_key.expose().to_string(),
            c.session_token.as_ref().map(|t| t.expose().to_string()),
        )
    }

    #[test]
    fn parses_locations() {
        let l = S3Location::parse("minio/thehive").unwrap();
        assert_eq!(
            (l.alias.as_str(), l.bucket.as_str(), l.prefix.as_str()),
            ("minio", "thehive", "")
        );
        let l = S3Location::parse("minio/thehive/files/2026").unwrap();
        assert_eq!(l.prefix, "files/2026/");
        let l = S3Location::parse("minio/thehive/").unwrap();
        assert_eq!(l.prefix, "");
        for bad in ["minio", "minio/", "1x/bucket", "mi nio/b", "minio/bu cket"] {
            let e = S3Location::parse(bad).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("source `{bad}` is not ALIAS/BUCKET")),
                "{e}"
            );
        }
    }

    #[test]
    fn env_url_forms_follow_mc() {
        let (url, c) = parse_env_url("https://AK:SK@minio.example:9000").unwrap();
        assert_eq!(url.as_str(), "https://minio.example:9000/");
        let c = c.unwrap();
        assert_eq!((c.access_key.as_str(), c.secret_key.expose()), ("AK", "SK"));
        assert!(c.session_token.is_none());

        // A secret holding `@` and `#`: the host starts after the last `@`.
        let (url, c) = parse_env_url("http://AK:s@c#r@127.0.0.1:9000").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9000/");
        assert_eq!(c.unwrap().secret_key.expose(), "s@c#r");

        let (_, c) = parse_env_url("https://AK:SK:TOKEN@host").unwrap();
        let c = c.unwrap();
        assert_eq!(c.session_token.unwrap().expose(), "TOKEN");

        let (url, c) = parse_env_url("http://127.0.0.1:9000").unwrap();
        assert!(c.is_none());
        assert_eq!(url.port(), Some(9000));

        for bad in [
            "ftp://a:b@host",
            "https://a:b@host/path",
            "https://a:b@",
            "nonsense",
        ] {
            assert!(parse_env_url(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn env_var_wins_over_config_and_errors_hide_the_value() {
        let env = env_of(&[("MC_HOST_backup", "http://AK:SECRETVALUE@127.0.0.1:9000")]);
        let e = S3Endpoint::resolve("backup", &ResolveOptions::default(), &env).unwrap();
        assert_eq!(e.source, CredentialSource::EnvVar("MC_HOST_backup".into()));
        assert_eq!(creds(&e).1, "SECRETVALUE");
        assert_eq!(e.region, DEFAULT_REGION);
        assert!(e.uses_path_style("thehive"));
        let debug = format!("{e:?}");
        assert!(!debug.contains("SECRETVALUE"), "{debug}");

        let env = env_of(&[(
            "MC_HOST_backup",
            "http://AK:SECRETVALUE@127.0.0.1:9000/path",
        )]);
        let err = S3Endpoint::resolve("backup", &ResolveOptions::default(), &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$MC_HOST_backup is not of the form https://ACCESS:SECRET@host[:port]"
        );
    }

    #[test]
    fn config_json_aliases_are_found_in_order() {
        let home = tempfile::tempdir().unwrap();
        let custom = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".mc")).unwrap();
        std::fs::write(
            home.path().join(".mc/config.json"),
            r#"{"version":"10","aliases":{
                "s3":{"url":"https://s3.eu-west-3.amazonaws.com","accessKey":"A1","secretKey":"S1","api":"s3v4","path":"auto"},
                "local":{"url":"http://127.0.0.1:9000","accessKey":"A2","secretKey":"S2","api":"S3v4","path":"off"}}}"#,
        )
        .unwrap();
        std::fs::write(
            custom.path().join("config.json"),
            r#"{"version":"9","hosts":{"local":{"url":"http://127.0.0.2:9000","accessKey":"A3","secretKey":"S3","api":"S3v4","path":"on"}}}"#,
        )
        .unwrap();
        let home_text = home.path().to_str().unwrap();
        let env = env_of(&[("HOME", home_text)]);

        let s3 = S3Endpoint::resolve("s3", &ResolveOptions::default(), &env).unwrap();
        assert_eq!(s3.region, "eu-west-3");
        assert!(!s3.uses_path_style("thehive"));
        assert!(s3.uses_path_style("the.hive"));
        assert_eq!(
            s3.bucket_url("thehive").as_str(),
            "https://thehive.s3.eu-west-3.amazonaws.com/"
        );

        let local = S3Endpoint::resolve("local", &ResolveOptions::default(), &env).unwrap();
        assert_eq!(creds(&local).0, "A2");
        assert_eq!(local.bucket_lookup, BucketLookup::VirtualHost);

        let options = ResolveOptions {
            config_dir: Some(custom.path().to_path_buf()),
            region: Some("eu-central-1".into()),
            ca_cert: None,
        };
        let local = S3Endpoint::resolve("local", &options, &env).unwrap();
        assert_eq!(creds(&local).0, "A3");
        assert_eq!(local.region, "eu-central-1");
        assert_eq!(
            local.bucket_url("thehive").as_str(),
            "http://127.0.0.2:9000/thehive"
        );
        assert_eq!(local.describe(), "alias `local` (http://127.0.0.2:9000)");

        let missing = S3Endpoint::resolve("nope", &options, &env).unwrap_err();
        let text = missing.to_string();
        assert!(
            text.starts_with("alias `nope` not found: no $MC_HOST_nope"),
            "{text}"
        );
        assert!(
            text.contains(".mcli/config.json") && text.contains(".mc/config.json"),
            "{text}"
        );
    }

    #[test]
    fn broken_config_errors_name_the_file_but_not_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"aliases":{"x":{"url":"http://h:1","accessKey":"A","secretKey":"TOPSECRET",}}}"#,
        )
        .unwrap();
        let options = ResolveOptions {
            config_dir: Some(dir.path().to_path_buf()),
            ..ResolveOptions::default()
        };
        let e = S3Endpoint::resolve("x", &options, &env_of(&[])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("config.json is not valid JSON"), "{text}");
        assert!(!text.contains("TOPSECRET"));
    }

    #[test]
    fn explicit_endpoint_needs_both_keys() {
        let endpoint = ExplicitEndpoint {
            endpoint: "http://127.0.0.1:9000".into(),
            access_key: Some("A".into()),
            secret_key: None,
        };
        let e = S3Endpoint::explicit(&endpoint, &ResolveOptions::default()).unwrap_err();
        assert!(matches!(e, AliasError::HalfCredentials));
        let endpoint = ExplicitEndpoint {
            secret_key: Some(Secret::new("S")),
            ..endpoint
        };
        let e = S3Endpoint::explicit(&endpoint, &ResolveOptions::default()).unwrap();
        assert_eq!(e.describe(), "endpoint http://127.0.0.1:9000");
        assert!(
            e.object_store("bucket", transfer_client_options(), RetryConfig::default())
                .is_ok()
        );
    }

    #[test]
    fn signing_adds_sigv4_headers() {
        let env = env_of(&[("MC_HOST_m", "http://AK:SK@127.0.0.1:9000")]);
        let e = S3Endpoint::resolve("m", &ResolveOptions::default(), &env).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        let url = Url::parse("http://127.0.0.1:9000/b?list-type=2").unwrap();
        e.sign_headers(&reqwest::Method::GET, &url, &mut headers)
            .unwrap();
        let auth = headers["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AK/"),
            "{auth}"
        );
        assert!(auth.contains("/us-east-1/s3/aws4_request"));
        assert!(headers.contains_key("x-amz-date"));
    }
}
