//! Whether a backup set's Elasticsearch snapshot is still there and usable:
//! `GET /_snapshot/<repository>/<snapshot>` (each name a percent-encoded path
//! segment), for `runbook verify --set` and `runbook list`. A set whose
//! archives are fine but whose snapshot was deleted cannot be restored, so
//! it must not be called verified.

use std::time::Duration;

use tokio::time::Instant;

use reqwest::Method;
use serde::Deserialize;
use url::Url;

pub use crate::backup::catalogue::SnapshotState;
use crate::backup::catalogue::{SnapshotRef, is_plain_name};
use crate::runtime::step::StepContext;
use crate::search::client::{HttpClient, HttpConnection, HttpRequest, display_url, endpoint};
use crate::search::snapshot_api::says_snapshot_missing;

/// The problem to report about `state`, `None` for SUCCESS.
fn problem(state: &SnapshotState, repository: &str, name: &str, url: &Url) -> Option<String> {
    let at = display_url(url);
    match state {
        SnapshotState::Success => None,
        SnapshotState::Other(state) => Some(format!(
            "Elasticsearch snapshot {repository}/{name} is {state}, not SUCCESS"
        )),
        SnapshotState::Missing => Some(format!(
            "Elasticsearch snapshot {repository}/{name} does not exist at {at}"
        )),
        SnapshotState::Unknown(why) => Some(format!(
            "Elasticsearch snapshot {repository}/{name} could not be checked at {at}: {why}"
        )),
    }
}

/// Asks `url` for `repository`/`name`, within `timeout` (retries of
/// transient errors included). Names that are not plain are not sent.
pub async fn snapshot_state(
    connection: &HttpConnection,
    url: &Url,
    repository: &str,
    name: &str,
    timeout: Duration,
) -> SnapshotState {
    if !is_plain_name(repository) || !is_plain_name(name) {
        return SnapshotState::Unknown(format!(
            "`{repository}/{name}` is not a plain snapshot name: not sent"
        ));
    }
    let mut ctx = StepContext::detached("snapshot check");
    ctx.deadline = Some(Instant::now() + timeout);
    let client = match HttpClient::new(connection, url, &ctx) {
        Ok(client) => client,
        Err(e) => return SnapshotState::Unknown(crate::runtime::error::one_line(&e)),
    };
    let answer = match client
        .send(&HttpRequest::new(
            Method::GET,
            endpoint(url, &["_snapshot", repository, name]),
        ))
        .await
    {
        Ok(answer) => answer,
        Err(e) => return SnapshotState::Unknown(crate::runtime::error::one_line(&e)),
    };
    if says_snapshot_missing(&answer) {
        return SnapshotState::Missing;
    }
    if answer.status.as_u16() == 404 {
        return SnapshotState::Unknown(format!(
            "404 without an Elasticsearch error (is {} Elasticsearch?)",
            display_url(url)
        ));
    }
    #[derive(Deserialize)]
    struct Answer {
        snapshots: Vec<One>,
    }
    #[derive(Deserialize)]
    struct One {
        snapshot: String,
        state: Option<String>,
    }
    let parsed = match answer.require_success().and_then(|a| a.json::<Answer>()) {
        Ok(parsed) => parsed,
        Err(e) => return SnapshotState::Unknown(crate::runtime::error::one_line(&e)),
    };
    match parsed.snapshots.into_iter().find(|s| s.snapshot == name) {
        None => SnapshotState::Missing,
        Some(One {
            state: Some(state), ..
        }) if state == "SUCCESS" => SnapshotState::Success,
        Some(One { state, .. }) => {
            SnapshotState::Other(state.unwrap_or_else(|| "without a state".to_string()))
        }
    }
}

/// Where to ask about set `stamp`'s snapshot: `url`, or else the URL its
/// manifest records. `None` (with a warning, or the stamp added to
/// `unasked`) when there is none to ask or it is not a URL.
fn url_to_ask(
    stamp: &str,
    snapshot: &SnapshotRef,
    url: Option<&str>,
    warnings: &mut Vec<String>,
    unasked: &mut Vec<String>,
) -> Option<Url> {
    match url.or(snapshot.url.as_deref()) {
        Some(text) => match Url::parse(text) {
            Ok(url) => Some(url),
            Err(e) => {
                warnings.push(format!(
                    "set {stamp}: snapshot not checked: `{text}` is not a URL ({e})"
                ));
                None
            }
        },
        None => {
            match &snapshot.untrusted {
                Some(why) => warnings.push(format!(
                    "set {stamp}: snapshot not checked at the URL its manifest records: {why} \
                     (give --elasticsearch-url)"
                )),
                None => unasked.push(stamp.to_string()),
            }
            None
        }
    }
}

/// The state of `snapshot` in `repository` at `base`, asked as the user the
/// manifest records (with `password`; unknown without one) or anonymously.
async fn ask_for_snapshot(
    snapshot: &SnapshotRef,
    base: &Url,
    repository: &str,
    password: Option<&crate::runtime::secret::Secret>,
    timeout: Duration,
) -> SnapshotState {
    let user = snapshot.user.clone().filter(|u| !u.is_empty());
    if let (Some(user), None) = (&user, password) {
        return SnapshotState::Unknown(format!(
            "the manifest records elasticsearch_user `{user}`: set ELASTICSEARCH_PASSWORD (or ELASTICSEARCH_PASSWORD_FILE)"
        ));
    }
    let connection = match user {
        Some(user) => HttpConnection {
            user: Some(user),
            password: password.cloned(),
            ..HttpConnection::default()
        },
        None => HttpConnection::default(),
    };
    snapshot_state(&connection, base, repository, &snapshot.name, timeout).await
}

/// Asks Elasticsearch about the snapshot of every set whose manifest names
/// one, at `url` or else the URL its manifest's config records when the
/// manifest is trusted (sets with neither are not asked, and say so in the
/// returned warnings). A snapshot
/// that is missing or not SUCCESS becomes one of the set's problems, so the
/// set is no longer "verified ok". `password` goes with the user a manifest
/// records. After one URL did not answer, its other sets are not asked.
pub async fn check_catalogue_snapshots(
    catalogue: &mut crate::backup::catalogue::Catalogue,
    url: Option<&str>,
    password: Option<&crate::runtime::secret::Secret>,
    timeout: Duration,
) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut unreachable: Vec<(Url, String)> = Vec::new();
    let mut unasked = Vec::new();
    for set in &mut catalogue.sets {
        let Some(snapshot) = set.snapshot.clone().filter(|s| s.listed) else {
            continue;
        };
        let Some(repository) = snapshot.repository.clone() else {
            continue;
        };
        let Some(base) = url_to_ask(&set.stamp, &snapshot, url, &mut warnings, &mut unasked) else {
            continue;
        };
        let state = if let Some((_, why)) = unreachable.iter().find(|(u, _)| *u == base) {
            SnapshotState::Unknown(why.clone())
        } else {
            let state = ask_for_snapshot(&snapshot, &base, &repository, password, timeout).await;
            if let SnapshotState::Unknown(why) = &state {
                unreachable.push((base.clone(), why.clone()));
            }
            state
        };
        match &state {
            SnapshotState::Success => {}
            SnapshotState::Unknown(_) => {
                warnings.extend(problem(&state, &repository, &snapshot.name, &base))
            }
            SnapshotState::Missing | SnapshotState::Other(_) => {
                set.problems
                    .extend(problem(&state, &repository, &snapshot.name, &base))
            }
        }
        set.snapshot_state = Some(state);
    }
    if !unasked.is_empty() {
        warnings.push(format!(
            "snapshots of {} set(s) not checked: their manifests record no elasticsearch_url (give --elasticsearch-url)",
            unasked.len()
        ));
    }
    warnings
}
