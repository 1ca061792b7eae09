//! Calls of Elasticsearch's snapshot API that more than one place makes: the
//! URL of a snapshot, and deleting one. Used by `es_snapshot` (cleanup after
//! an interrupted or failed snapshot) and by retention (`prune`), so the
//! request and what counts as deleted are written once.

use reqwest::Method;
use url::Url;

use crate::search::client::{HttpClient, HttpError, HttpRequest, endpoint};

/// `<base>/_snapshot/<repository>/<snapshot>`, each name a percent-encoded
/// path segment.
pub fn snapshot_url(base: &Url, repository: &str, snapshot: &str) -> Url {
    endpoint(base, &["_snapshot", repository, snapshot])
}

/// DELETE the snapshot at `url` (which also aborts one still running); a
/// snapshot already gone counts as deleted.
pub async fn delete_snapshot(client: &HttpClient, url: &Url) -> Result<(), HttpError> {
    let answer = client
        .send(&HttpRequest::new(Method::DELETE, url.clone()))
        .await?;
    if answer.status.is_success() || answer.status.as_u16() == 404 {
        Ok(())
    } else {
        Err(answer.to_error())
    }
}
