//! Calls of Elasticsearch's snapshot API that more than one place makes: the
//! URL of a snapshot, whether a repository is registered, whether an answer
//! says a repository or snapshot does not exist, and deleting a snapshot.
//! Used by `es_snapshot` (the repository check; cleanup after an interrupted
//! or failed snapshot), by retention (`prune`: the repository check and the
//! delete) and by the catalogue's snapshot check (`backup/snapshot_check`), so
//! each request and what counts as "missing" or "deleted" are written once.

use reqwest::Method;
use url::Url;

use crate::search::client::{HttpClient, HttpError, HttpRequest, HttpResponse, endpoint};

/// Elasticsearch's (and OpenSearch's) `error.type` for a repository that is
/// not registered.
const REPOSITORY_MISSING: &str = "repository_missing_exception";
/// Their `error.type` for a snapshot that is not in its repository.
const SNAPSHOT_MISSING: &str = "snapshot_missing_exception";

/// True when `answer` is Elasticsearch itself saying that the repository is
/// not registered: a 404 whose body is a `repository_missing_exception`. A 404
/// without it (a proxy's, a wrong base URL, not Elasticsearch at all) says
/// nothing about the repository, so it is not taken as "missing": retention
/// would otherwise drop snapshots that still exist from its care, and
/// `es_snapshot` would tell the user to register a repository that is there.
pub fn says_repository_missing(answer: &HttpResponse) -> bool {
    answer.status.as_u16() == 404 && answer.es_error_type().as_deref() == Some(REPOSITORY_MISSING)
}

/// True when `answer` (to `GET /_snapshot/<repository>/<snapshot>`) is
/// Elasticsearch saying the snapshot does not exist: a 404 with
/// `snapshot_missing_exception`, or with `repository_missing_exception` (no
/// repository, no snapshot). The same rule as [`says_repository_missing`].
pub fn says_snapshot_missing(answer: &HttpResponse) -> bool {
    answer.status.as_u16() == 404
        && matches!(
            answer.es_error_type().as_deref(),
            Some(SNAPSHOT_MISSING | REPOSITORY_MISSING)
        )
}

impl HttpClient {
    /// Whether `repository` is registered at `base`
    /// (`GET /_snapshot/<repository>`). `Ok(false)` only on Elasticsearch's own
    /// word (see [`says_repository_missing`]) or an answer that does not list
    /// it; any other failure is an error.
    pub async fn repository_registered(
        &self,
        base: &Url,
        repository: &str,
    ) -> Result<bool, HttpError> {
        let url = endpoint(base, &["_snapshot", repository]);
        let answer = self.send(&HttpRequest::new(Method::GET, url)).await?;
        if says_repository_missing(&answer) {
            return Ok(false);
        }
        let repositories: serde_json::Map<String, serde_json::Value> =
            answer.require_success()?.json()?;
        Ok(repositories.contains_key(repository))
    }
}

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

/// True for a name runbook can put in a URL or a file name as it is: ASCII
/// letters, digits, `_`, `-`, `.`; not empty, at most 255 bytes, not starting
/// with `_`, `-` or `.`, no `..`. So no wildcard, comma, `_all`, path
/// separator or percent sign: an Elasticsearch repository or snapshot name
/// read from a manifest can only ever name one thing.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with(['_', '-', '.'])
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            method: Method::GET,
            url: "http://127.0.0.1:9200/_snapshot/r".to_string(),
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: bytes::Bytes::from(body.to_string()),
            attempts: 1,
        }
    }

    #[test]
    fn only_elasticsearch_own_404_means_missing() {
        let repository = r#"{"error":{"type":"repository_missing_exception","reason":"[r] missing"},"status":404}"#;
        let snapshot = r#"{"error":{"type":"snapshot_missing_exception","reason":"[r:s] is missing"},"status":404}"#;
        assert!(says_repository_missing(&answer(404, repository)));
        assert!(!says_repository_missing(&answer(404, snapshot)));
        assert!(says_snapshot_missing(&answer(404, snapshot)));
        assert!(says_snapshot_missing(&answer(404, repository)));
        // A proxy's or a wrong URL's 404 says nothing about the repository.
        for bare in ["<html>Not Found</html>", "", r#"{"error":"no route"}"#] {
            assert!(!says_repository_missing(&answer(404, bare)), "{bare}");
            assert!(!says_snapshot_missing(&answer(404, bare)), "{bare}");
        }
        assert!(!says_repository_missing(&answer(500, repository)));
    }
}
