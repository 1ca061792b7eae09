//! Reaching an off-site destination `ALIAS/BUCKET[/PREFIX]` (resolved as
//! `s3_upload` does, through [`crate::s3::alias`]): listing it, reading a
//! small object, hashing a large one as it streams in (constant memory), and
//! deleting objects.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use object_store::aws::AmazonS3;
use object_store::{ObjectStoreExt, RetryConfig};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::s3::alias::{S3Endpoint, S3Location, transfer_client_options};
use crate::s3::listing::list_objects;

/// How long connecting and one listing page may take.
const LIST_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const LIST_TIMEOUT: Duration = Duration::from_secs(120);

/// Why an object could not be read or removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Downloading failed.
    #[error("reading `{key}` in bucket `{bucket}` on {endpoint} failed")]
    Download {
        /// The key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The alias and URL.
        endpoint: String,
        /// object_store's error.
        source: Box<object_store::Error>,
    },
    /// An object expected to be small is not.
    #[error(
        "`{key}` in bucket `{bucket}` on {endpoint} is larger than {limit} bytes: not a runbook manifest or record"
    )]
    TooLarge {
        /// The key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The alias and URL.
        endpoint: String,
        /// The limit.
        limit: u64,
    },
    /// Deleting failed.
    #[error("deleting `{key}` from bucket `{bucket}` on {endpoint} failed")]
    Delete {
        /// The key.
        key: String,
        /// The bucket.
        bucket: String,
        /// The alias and URL.
        endpoint: String,
        /// object_store's error.
        source: Box<object_store::Error>,
    },
    /// The key is no object path object_store can address.
    #[error("`{key}` is not a valid object path")]
    Key {
        /// The key.
        key: String,
    },
}

impl StepFailure for RemoteError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            RemoteError::Download { .. } => ErrorKind::Download,
            RemoteError::TooLarge { .. } => ErrorKind::InvalidResponse,
            RemoteError::Delete { .. } => ErrorKind::S3,
            RemoteError::Key { .. } => ErrorKind::Options,
        }
    }
}

/// A resolved destination with its clients.
pub struct Remote {
    /// The endpoint (for messages).
    pub endpoint: S3Endpoint,
    /// Bucket and prefix.
    pub location: S3Location,
    store: AmazonS3,
    http: reqwest::Client,
}

impl Remote {
    /// Builds the clients for a resolved destination (resolve it with
    /// [`crate::s3::connection::TargetOptions::resolve`] before the step's future,
    /// which must not hold the environment lookup).
    pub fn connect(endpoint: S3Endpoint, location: S3Location) -> Result<Remote, StepError> {
        let store = endpoint.object_store(
            &location.bucket,
            transfer_client_options(),
            RetryConfig::default(),
        )?;
        let http = endpoint.request_client(LIST_CONNECT_TIMEOUT, LIST_TIMEOUT)?;
        Ok(Remote {
            endpoint,
            location,
            store,
            http,
        })
    }

    /// PREFIX + `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.location.prefix)
    }

    /// `` `key` in bucket `b` on alias `a` (url) ``, for messages.
    pub fn describe(&self, key: &str) -> String {
        format!(
            "`{key}` in bucket `{}` on {}",
            self.location.bucket,
            self.endpoint.describe()
        )
    }

    /// Every object under the prefix: key → size.
    pub async fn list(&self) -> Result<HashMap<String, u64>, StepError> {
        let listing = list_objects(&self.http, &self.endpoint, &self.location).await?;
        Ok(listing
            .into_iter()
            .filter(|o| o.utf8)
            .map(|o| (o.key, o.size))
            .collect())
    }

    fn path(&self, key: &str) -> Result<object_store::path::Path, RemoteError> {
        match object_store::path::Path::parse(key) {
            Ok(path) if path.as_ref() == key => Ok(path),
            _ => Err(RemoteError::Key {
                key: key.to_string(),
            }),
        }
    }

    fn download_error(&self, key: &str) -> impl Fn(object_store::Error) -> RemoteError {
        let key = key.to_string();
        let bucket = self.location.bucket.clone();
        let endpoint = self.endpoint.describe();
        move |source| RemoteError::Download {
            key: key.clone(),
            bucket: bucket.clone(),
            endpoint: endpoint.clone(),
            source: Box::new(source),
        }
    }

    /// The download of `key` begun (its size known, its body to read), or
    /// `None` when there is no such object.
    async fn begin_download(
        &self,
        key: &str,
    ) -> Result<Option<object_store::GetResult>, StepError> {
        let path = self.path(key)?;
        match self.store.get(&path).await {
            Ok(got) => Ok(Some(got)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.download_error(key)(e).into()),
        }
    }

    /// Streams `key` through SHA-256: its size and hash (hex); `None` when
    /// there is no such object. Memory: one received chunk at a time.
    pub async fn hash(
        &self,
        key: &str,
        stop: &CancellationToken,
    ) -> Result<Option<(u64, String)>, StepError> {
        let failed = self.download_error(key);
        let Some(got) = self.begin_download(key).await? else {
            return Ok(None);
        };
        let mut stream = got.into_stream();
        let mut sha256 = Sha256::new();
        let mut bytes = 0u64;
        loop {
            let chunk = tokio::select! {
                chunk = stream.next() => chunk,
                _ = stop.cancelled() => return Err(StepError::cancelled()),
            };
            let Some(chunk) = chunk else { break };
            let chunk = chunk.map_err(&failed)?;
            bytes += chunk.len() as u64;
            sha256.update(&chunk);
        }
        Ok(Some((bytes, hex::encode(sha256.finalize()))))
    }

    /// The whole of a small object (at most `limit` bytes); `None` when absent.
    pub async fn read_small(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, StepError> {
        let failed = self.download_error(key);
        let Some(got) = self.begin_download(key).await? else {
            return Ok(None);
        };
        if got.meta.size > limit {
            return Err(RemoteError::TooLarge {
                key: key.to_string(),
                bucket: self.location.bucket.clone(),
                endpoint: self.endpoint.describe(),
                limit,
            }
            .into());
        }
        let body = got.bytes().await.map_err(failed)?;
        Ok(Some(body.to_vec()))
    }

    /// Deletes `key` (absent is fine: S3 answers a delete of nothing with success).
    pub async fn delete(&self, key: &str) -> Result<(), StepError> {
        let path = self.path(key)?;
        self.store.delete(&path).await.map_err(|source| {
            StepError::from(RemoteError::Delete {
                key: key.to_string(),
                bucket: self.location.bucket.clone(),
                endpoint: self.endpoint.describe(),
                source: Box::new(source),
            })
        })
    }
}
