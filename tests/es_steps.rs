//! The HTTP service steps (`es_snapshot`, `es_health`, `http`) against servers
//! on 127.0.0.1: noida-db (an Elasticsearch 8 emulator from PyPI) for the
//! success path, and the Elasticsearch stand-in `tests/standins/es_standin.py`
//! for every failure mode. Steps are driven the way the engine drives them:
//! `find_step(name).prepare(options).run(ctx)`.

use runbook_test_support::servers::{EsStandin, ServerProcess, calls_of};
use runbook_test_support::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use runbook_steps::{StepContext, StepError, find_step};
use serde_json::{Value, json};
use support::{free_port, venv_bin};

const PASSWORD: &str = "s3cret-Pa55word";

/// A server under test: the Elasticsearch stand-in or noida-db, killed with
/// its process group on drop; the requests helpers are async because a step
/// runs on the same runtime while the test reads them.
struct Server {
    _process: Running,
    base: String,
}

/// What keeps a [`Server`]'s process alive (held only to be dropped).
#[allow(dead_code)]
enum Running {
    Standin(EsStandin),
    Process(ServerProcess),
}

impl Server {
    fn spawn(command: Command, port: u16, what: &str) -> Server {
        Server {
            _process: Running::Process(ServerProcess::spawn(command, port, what)),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The Elasticsearch stand-in with extra command-line arguments.
    fn standin(args: &[&str]) -> Server {
        let standin = EsStandin::start(args);
        Server {
            base: standin.base.clone(),
            _process: Running::Standin(standin),
        }
    }

    /// The stand-in with the repository `thehive_repository` registered.
    fn standin_with_repo(faults: Value) -> Server {
        Server::standin(&[
            "--repository",
            "thehive_repository",
            "--faults",
            &faults.to_string(),
        ])
    }

    /// Requests the stand-in received, as (method, path, status).
    async fn requests(&self) -> Vec<(String, String, Value)> {
        let answer: Value = reqwest::get(format!("{}/_standin/requests", self.base))
            .await
            .expect("stand-in control endpoint")
            .json()
            .await
            .expect("stand-in answers JSON");
        calls_of(&answer)
    }

    async fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|(m, p, _)| m == method && p == path)
            .count()
    }

    async fn request_bodies(&self, method: &str) -> Vec<Value> {
        let answer: Value = reqwest::get(format!("{}/_standin/requests", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["method"] == method)
            .map(|r| r["body"].clone())
            .collect()
    }
}

/// Asserts that a step failed with `kind` and a message containing `text`.
#[track_caller]
fn assert_error(error: &StepError, kind: &str, text: &str) {
    assert_eq!(error.kind(), kind, "{error}");
    assert!(
        error.to_string().contains(text),
        "expected `{text}` in: {error}"
    );
}

fn ctx() -> StepContext {
    StepContext::detached("test")
}

fn ctx_with_deadline(after: Duration) -> StepContext {
    let mut ctx = ctx();
    ctx.deadline = Some(tokio::time::Instant::now() + after);
    ctx
}

async fn run(step: &str, options: Value, ctx: StepContext) -> Result<Value, StepError> {
    find_step(step)
        .unwrap_or_else(|| panic!("step {step} is registered"))
        .prepare(options)
        .unwrap_or_else(|e| panic!("options of {step}: {e}"))
        .run(ctx)
        .await
}

fn snapshot_options(server: &Server, snapshot: &str) -> Value {
    json!({
        "url": server.base,
        "repository": "thehive_repository",
        "snapshot": snapshot,
        "indices": "thehive_global",
        "poll": "50ms",
    })
}

/// Runs `es_snapshot` of `snapshot` on `es` with [`snapshot_options`] and
/// no deadline.
async fn snapshot(es: &Server, snapshot: &str) -> Result<Value, StepError> {
    run("es_snapshot", snapshot_options(es, snapshot), ctx()).await
}

/// Runs the `es_health` step with `options` and no deadline.
async fn es_health(options: Value) -> Result<Value, StepError> {
    run("es_health", options, ctx()).await
}

const SNAP_PATH: &str = "/_snapshot/thehive_repository/elasticsearch_1";
const REPO_PATH: &str = "/_snapshot/thehive_repository";

// ---- noida-db: the success path against an emulator nobody here wrote --------

/// noida-db's Elasticsearch emulation on a free port, with its own data folder.
fn noida(data: &std::path::Path) -> Server {
    let port = free_port();
    let mut command = Command::new(venv_bin("noida-db"));
    command.args([
        "start",
        "--only",
        "elasticsearch",
        "--elasticsearch-port",
        &port.to_string(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    Server::spawn(command, port, "noida-db (Elasticsearch)")
}

#[tokio::test]
async fn noida_snapshot_health_and_http_success_path() {
    let data = tempfile::tempdir().unwrap();
    let es = noida(data.path());
    let admin = reqwest::Client::new();
    // What an admin does once: register the fs repository, and TheHive creates its index.
    let registered = admin
        .put(format!("{}/_snapshot/thehive_repository", es.base))
        .json(&json!({"type": "fs", "settings": {"location": data.path().join("repo")}}))
        .send()
        .await
        .unwrap();
    assert!(
        registered.status().is_success(),
        "{:?}",
        registered.text().await
    );
    let index = admin
        .put(format!("{}/thehive_global", es.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(index.status().is_success());

    let version = run("http", json!({"url": format!("{}/", es.base)}), ctx())
        .await
        .unwrap();
    assert_eq!(version["status"], 200);
    assert!(
        version["json"]["version"]["number"]
            .as_str()
            .unwrap()
            .starts_with("8."),
        "{version}"
    );

    // noida-db answers GET / as Elasticsearch does: the pre-flight probe accepts it.
    let server = run("es_server", json!({"url": es.base}), ctx())
        .await
        .unwrap();
    assert_eq!(
        (server["distribution"].as_str(), server["version"].as_str()),
        (Some("elasticsearch"), Some("8.15.3")),
        "{server}"
    );

    // One index with a replica on a one-node cluster: yellow, which the default accepts.
    let health = es_health(json!({"url": es.base})).await.unwrap();
    assert_eq!(health["status"], "yellow", "{health}");
    assert_eq!(health["number_of_nodes"], 1);
    let too_low = es_health(json!({"url": es.base, "require": "green"}))
        .await
        .unwrap_err();
    assert_eq!(too_low.kind(), "health");
    assert!(
        too_low.to_string().contains("is yellow, green required"),
        "{too_low}"
    );

    let options = json!({
        "url": es.base, "repository": "thehive_repository", "snapshot": "elasticsearch_20261126_01h15m00s",
        "indices": "thehive_global", "poll": "100ms", "verify_repository": true,
    });
    let snap = run(
        "es_snapshot",
        options.clone(),
        ctx_with_deadline(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(snap["state"], "SUCCESS", "{snap}");
    assert_eq!(snap["snapshot"], "elasticsearch_20261126_01h15m00s");
    assert_eq!(snap["repository"], "thehive_repository");
    assert_eq!(snap["indices"], json!(["thehive_global"]));
    assert_eq!(snap["shards_failed"], 0);
    assert!(!snap["uuid"].as_str().unwrap().is_empty(), "{snap}");
    assert!(
        snap["version"].as_str().unwrap().starts_with("8."),
        "{snap}"
    );

    let listed: Value = admin
        .get(format!(
            "{}/_snapshot/thehive_repository/*?verbose=false",
            es.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["snapshots"][0]["uuid"], snap["uuid"], "{listed}");

    // The same name again: Elasticsearch refuses, the step says why and does not retry.
    let again = run("es_snapshot", options, ctx()).await.unwrap_err();
    assert!(
        again
            .to_string()
            .contains("snapshot_name_already_in_use_exception"),
        "{again}"
    );
}

// ---- the stand-in: success, then every fault ---------------------------------

/// TheHive's guide scripts grep the raw answers for `"accepted":true` and
/// `{"acknowledged":true}`: the real servers answer compact JSON (checked against
/// OpenSearch 2.19 in tests/real_opensearch.rs), and so must the stand-in, or a
/// script that works against it would fail on a real cluster.
#[tokio::test]
async fn standin_answers_compact_json_as_the_guide_scripts_grep_it() {
    let es = Server::standin(&[]);
    let client = reqwest::Client::new();
    let text = |request: reqwest::RequestBuilder| async move {
        let answer = request.send().await.expect("the stand-in answers");
        (
            answer.status().as_u16(),
            answer.text().await.expect("a body"),
        )
    };
    let registered = text(
        client
            .put(format!("{}/_snapshot/thehive_repository", es.base))
            .json(&json!({"type": "fs", "settings": {"location": "/mnt/backup/elasticsearch"}})),
    )
    .await;
    assert_eq!(registered, (200, r#"{"acknowledged":true}"#.to_string()));
    let accepted = text(
        client
            .put(format!("{}/_snapshot/thehive_repository/elasticsearch_1", es.base))
            .json(&json!({"indices": "thehive_global", "ignore_unavailable": true, "include_global_state": false})),
    )
    .await;
    assert_eq!(accepted, (200, r#"{"accepted":true}"#.to_string()));
    let deleted = text(client.delete(format!("{}/thehive_global", es.base))).await;
    assert_eq!(deleted, (200, r#"{"acknowledged":true}"#.to_string()));
    // Errors too: `root_cause` first, no spaces, as the real servers write them.
    let missing = text(client.get(format!("{}/_snapshot/nope", es.base))).await;
    assert_eq!(
        missing,
        (
            404,
            r#"{"error":{"root_cause":[{"type":"repository_missing_exception","reason":"[nope] missing"}],"type":"repository_missing_exception","reason":"[nope] missing"},"status":404}"#
                .to_string()
        )
    );
}

/// A snapshot of an index that does not exist: 404 `index_not_found_exception`,
/// or with `ignore_unavailable` a SUCCESS snapshot holding no index and 0 shards,
/// as OpenSearch 2.19 answers (tests/sandbox/README.md lists the differences checked).
#[tokio::test]
async fn standin_snapshots_a_missing_index_as_the_real_servers_do() {
    let es = Server::standin_with_repo(json!({}));
    let client = reqwest::Client::new();
    let url = format!("{}/_snapshot/thehive_repository", es.base);
    let refused = client
        .put(format!("{url}/s1"))
        .json(&json!({"indices": "no_such_index"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 404);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["type"], "index_not_found_exception", "{body}");
    let empty: Value = client
        .put(format!("{url}/s2?wait_for_completion=true"))
        .json(&json!({"indices": "no_such_index", "ignore_unavailable": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(empty["snapshot"]["state"], "SUCCESS", "{empty}");
    assert_eq!(empty["snapshot"]["indices"], json!([]), "{empty}");
    assert_eq!(empty["snapshot"]["shards"]["total"], 0, "{empty}");
}

#[tokio::test]
async fn snapshot_waits_for_success_and_sends_the_documented_body() {
    let es = Server::standin_with_repo(json!({"snapshot_polls": 3}));
    let snap = snapshot(&es, "elasticsearch_1").await.unwrap();
    assert_eq!(snap["state"], "SUCCESS");
    assert_eq!(snap["shards_total"], 1);
    assert!(!snap["end_time"].as_str().unwrap().is_empty());
    // It polled until the terminal state: 3 IN_PROGRESS answers, then SUCCESS.
    assert_eq!(es.count("GET", SNAP_PATH).await, 4);
    assert_eq!(
        es.request_bodies("PUT").await,
        vec![
            json!({"indices": "thehive_global", "ignore_unavailable": true, "include_global_state": false})
        ]
    );
}

#[tokio::test]
async fn without_wait_the_step_returns_the_running_snapshot() {
    let es = Server::standin_with_repo(json!({"snapshot_polls": 5}));
    let mut options = snapshot_options(&es, "elasticsearch_1");
    options["wait"] = json!(false);
    let snap = run("es_snapshot", options, ctx()).await.unwrap();
    assert_eq!(snap["state"], "IN_PROGRESS");
    assert!(!snap["uuid"].as_str().unwrap().is_empty());
    assert_eq!(es.count("GET", SNAP_PATH).await, 1);
}

#[tokio::test]
async fn a_put_whose_answer_was_lost_is_followed_not_failed() {
    // Elasticsearch starts the snapshot but the answer never arrives; the retried
    // PUT is told the name is taken: that snapshot is ours.
    let es = Server::standin_with_repo(json!({"rules": [
        {"method": "PUT", "action": "reset_after", "count": 1},
    ]}));
    let snap = snapshot(&es, "elasticsearch_1").await.unwrap();
    assert_eq!(snap["state"], "SUCCESS");
    let puts: Vec<Value> = es
        .requests()
        .await
        .into_iter()
        .filter(|(m, _, _)| m == "PUT")
        .map(|(_, _, status)| status)
        .collect();
    assert_eq!(puts, vec![json!("reset_after_200"), json!(400)]);
}

#[tokio::test]
async fn failed_partial_and_incompatible_snapshots_are_errors_listing_failed_shards() {
    for (end, kind) in [
        ("FAILED", "snapshot_failed"),
        ("PARTIAL", "snapshot_partial"),
        ("INCOMPATIBLE", "snapshot_incompatible"),
    ] {
        let es = Server::standin_with_repo(json!({"snapshot_end": end}));
        let error = snapshot(&es, "elasticsearch_1").await.unwrap_err();
        assert_eq!(error.kind(), kind, "{error}");
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "snapshot thehive_repository:elasticsearch_1 ended {end}"
            )),
            "{text}"
        );
        if end != "INCOMPATIBLE" {
            assert!(
                text.contains(
                    "[thehive_global][0] on node standin-node-1: IndexShardSnapshotFailedException"
                ),
                "{text}"
            );
        }
    }
    let es = Server::standin_with_repo(json!({"snapshot_end": "PARTIAL"}));
    let mut options = snapshot_options(&es, "elasticsearch_1");
    options["allow_partial"] = json!(true);
    let partial = run("es_snapshot", options, ctx()).await.unwrap();
    assert_eq!(
        (partial["state"].as_str(), partial["shards_failed"].as_u64()),
        (Some("PARTIAL"), Some(1))
    );
}

#[tokio::test]
async fn stuck_snapshot_ends_at_the_timeout_and_is_left_or_deleted() {
    let es = Server::standin_with_repo(json!({"snapshot_end": "IN_PROGRESS"}));
    let left = run(
        "es_snapshot",
        snapshot_options(&es, "elasticsearch_1"),
        ctx_with_deadline(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(left.kind(), "timeout");
    let text = left.to_string();
    assert!(
        text.starts_with("snapshot thehive_repository:elasticsearch_1 still IN_PROGRESS after"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "left running (on_timeout: \"leave\"); delete it with DELETE {}{SNAP_PATH}",
            es.base
        )),
        "{text}"
    );
    assert_eq!(es.count("DELETE", SNAP_PATH).await, 0);

    let mut options = snapshot_options(&es, "elasticsearch_2");
    options["on_timeout"] = json!("delete");
    let deleted = run(
        "es_snapshot",
        options,
        ctx_with_deadline(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_error(&deleted, "timeout", "deleted it (on_timeout: \"delete\")");
    let path2 = "/_snapshot/thehive_repository/elasticsearch_2";
    assert_eq!(es.count("DELETE", path2).await, 1);
    let gone = reqwest::get(format!("{}{path2}", es.base)).await.unwrap();
    assert_eq!(gone.status(), 404);
    let kept = reqwest::get(format!("{}{SNAP_PATH}", es.base))
        .await
        .unwrap();
    assert_eq!(kept.status(), 200, "the left snapshot is still there");
}

#[tokio::test]
async fn interruption_while_polling_deletes_the_snapshot_and_reports_cancelled() {
    let es = Server::standin_with_repo(json!({"snapshot_end": "IN_PROGRESS"}));
    let ctx = ctx();
    let cancel = ctx.cancel.clone();
    let step = tokio::spawn(run(
        "es_snapshot",
        snapshot_options(&es, "elasticsearch_1"),
        ctx,
    ));
    // Interrupt once the snapshot is being polled.
    while !step.is_finished() && es.count("GET", SNAP_PATH).await < 2 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let error = step.await.unwrap().unwrap_err();
    assert_eq!(error.kind(), "cancelled");
    assert_eq!(es.count("DELETE", SNAP_PATH).await, 1);
}

#[tokio::test]
async fn transient_503_and_429_are_retried() {
    let es = Server::standin_with_repo(json!({"rules": [
        {"method": "GET", "path": "^/_snapshot/thehive_repository$", "status": 503, "count": 2},
        {"method": "PUT", "status": 429, "count": 1},
        {"method": "GET", "path": "elasticsearch_1$", "status": 502, "count": 1},
    ]}));
    let snap = snapshot(&es, "elasticsearch_1").await.unwrap();
    assert_eq!(snap["state"], "SUCCESS");
    let requests = es.requests().await;
    let statuses = |method: &str, path: &str| -> Vec<Value> {
        requests
            .iter()
            .filter(|(m, p, _)| m == method && p == path)
            .map(|(_, _, s)| s.clone())
            .collect()
    };
    assert_eq!(
        statuses("GET", REPO_PATH),
        vec![json!(503), json!(503), json!(200)]
    );
    assert_eq!(statuses("PUT", SNAP_PATH), vec![json!(429), json!(200)]);
    assert_eq!(statuses("GET", SNAP_PATH)[0], json!(502));
}

#[tokio::test]
async fn a_400_is_not_retried_and_shows_elasticsearchs_reason() {
    let es = Server::standin_with_repo(json!({"rules": [
        {"method": "GET", "path": "^/_snapshot/thehive_repository$", "status": 400, "count": 5},
    ]}));
    let error = snapshot(&es, "elasticsearch_1").await.unwrap_err();
    assert_eq!(error.kind(), "http_status");
    assert_eq!(
        error.to_string(),
        format!(
            "GET {}{REPO_PATH}: HTTP 400: illegal_argument_exception: stand-in: injected bad request",
            es.base
        )
    );
    assert_eq!(es.count("GET", REPO_PATH).await, 1);

    // A name Elasticsearch refuses: one PUT, its reason in the error.
    let es = Server::standin_with_repo(json!({}));
    let error = snapshot(&es, "Elasticsearch_1").await.unwrap_err();
    assert_eq!(error.kind(), "http_status");
    let text = error.to_string();
    assert!(
        text.starts_with("could not start snapshot thehive_repository:Elasticsearch_1"),
        "{text}"
    );
    assert!(text.contains("invalid_snapshot_name_exception"), "{text}");
    assert!(text.contains("must be lowercase"), "{text}");
    assert_eq!(es.request_bodies("PUT").await.len(), 1);
}

#[tokio::test]
async fn dry_run_checks_the_repository_and_sends_no_put() {
    let es = Server::standin_with_repo(json!({}));
    let prepared = find_step("es_snapshot")
        .unwrap()
        .prepare(snapshot_options(&es, "elasticsearch_1"))
        .unwrap();
    assert!(
        prepared.dry_run_placeholder.is_none(),
        "es_snapshot runs under dry-run"
    );
    let mut ctx = ctx();
    ctx.dry_run = true;
    let placeholder = prepared.run(ctx).await.unwrap();
    assert_eq!(placeholder["snapshot"], "elasticsearch_1");
    let requests = es.requests().await;
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        (requests[0].0.as_str(), requests[0].1.as_str()),
        ("GET", REPO_PATH)
    );

    // The check is real: a missing repository fails the dry run too.
    let empty = Server::standin(&[]);
    let mut ctx = StepContext::detached("test");
    ctx.dry_run = true;
    let error = run(
        "es_snapshot",
        snapshot_options(&empty, "elasticsearch_1"),
        ctx,
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "repository_missing");
    assert!(empty.request_bodies("PUT").await.is_empty());
}

#[tokio::test]
async fn missing_repository_names_repository_url_and_how_to_register() {
    let es = Server::standin(&[]);
    let error = snapshot(&es, "elasticsearch_1").await.unwrap_err();
    assert_eq!(error.kind(), "repository_missing");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "snapshot repository `thehive_repository` is not registered at {}{REPO_PATH}: register it first, e.g. PUT {}{REPO_PATH} with {{\"type\":\"fs\"",
            es.base, es.base
        )),
        "{text}"
    );
    assert!(text.contains("path.repo"), "{text}");
}

#[tokio::test]
async fn repository_verification_failure_is_reported() {
    let es = Server::standin_with_repo(json!({"verify_fails": true}));
    let mut options = snapshot_options(&es, "elasticsearch_1");
    options["verify_repository"] = json!(true);
    let error = run("es_snapshot", options, ctx()).await.unwrap_err();
    assert_eq!(error.kind(), "repository_verify");
    let text = error.to_string();
    assert!(
        text.starts_with("snapshot repository `thehive_repository` failed verification"),
        "{text}"
    );
    assert!(
        text.contains("HTTP 500: repository_verification_exception"),
        "{text}"
    );
    assert!(
        es.request_bodies("PUT").await.is_empty(),
        "no snapshot after a failed verification"
    );
}

#[tokio::test]
async fn unauthorized_without_or_with_wrong_credentials_and_no_secret_in_messages() {
    let es = Server::standin(&[
        "--repository",
        "thehive_repository",
        "--user",
        "elastic",
        "--password",
        PASSWORD,
    ]);
    let anonymous = es_health(json!({"url": es.base})).await.unwrap_err();
    assert_eq!(anonymous.kind(), "unauthorized");
    assert_eq!(
        anonymous.to_string(),
        format!(
            "GET {}/_cluster/health: HTTP 401: security_exception: missing authentication credentials for REST request [/_cluster/health]",
            es.base
        )
    );

    let wrong = "wr0ng-Pa55word";
    let mut options = snapshot_options(&es, "elasticsearch_1");
    options["user"] = json!("elastic");
    options["password"] = json!(wrong);
    let prepared = find_step("es_snapshot")
        .unwrap()
        .prepare(options.clone())
        .unwrap();
    assert!(
        !prepared.description.contains(wrong),
        "{}",
        prepared.description
    );
    let error = prepared.run(ctx()).await.unwrap_err();
    assert_eq!(error.kind(), "unauthorized");
    let text = format!("{error} {:?} {:?}", error.causes(), error);
    assert!(
        text.contains("unable to authenticate user [elastic]"),
        "{text}"
    );
    assert!(!text.contains(wrong), "{text}");

    options["password"] = json!(PASSWORD);
    let prepared = find_step("es_snapshot").unwrap().prepare(options).unwrap();
    assert!(
        !prepared.description.contains(PASSWORD),
        "{}",
        prepared.description
    );
    let snap = prepared.run(ctx()).await.unwrap();
    assert_eq!(snap["state"], "SUCCESS");

    // A failure after authenticating: the message still holds no secret.
    let failing = Server::standin(&["--user", "elastic", "--password", PASSWORD]);
    let error = run(
        "es_snapshot",
        json!({"url": failing.base, "repository": "nope", "snapshot": "s", "user": "elastic", "password": PASSWORD}),
        ctx(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "repository_missing");
    assert!(!format!("{error} {error:?}").contains(PASSWORD));

    // Credentials in the URL are refused, without echoing them.
    let in_url = json!({"url": format!("http://elastic:{PASSWORD}@127.0.0.1:9/")});
    let prepared = find_step("http").unwrap().prepare(in_url).unwrap();
    let error = prepared.run(ctx()).await.unwrap_err();
    assert_eq!(error.kind(), "options");
    assert!(!format!("{error} {error:?}").contains(PASSWORD), "{error}");
}

#[tokio::test]
async fn malformed_json_reset_and_slow_answers() {
    // A malformed status answer is an error naming the URL, not a panic or a success.
    let es = Server::standin_with_repo(json!({"rules": [
        {"method": "GET", "path": "elasticsearch_1$", "action": "malformed"},
    ]}));
    let error = snapshot(&es, "elasticsearch_1").await.unwrap_err();
    assert_eq!(error.kind(), "invalid_response");
    assert!(
        error.to_string().contains(&format!(
            "GET {}{SNAP_PATH}: the answer is not the expected JSON",
            es.base
        )),
        "{error}"
    );

    // One HTTP 500 and one cut-off answer while polling: asked again, the
    // snapshot is followed to its end (issue 12 §4).
    let es = Server::standin_with_repo(json!({"snapshot_polls": 3, "rules": [
        {"method": "GET", "path": "elasticsearch_1$", "status": 500, "count": 1},
        {"method": "GET", "path": "elasticsearch_1$", "action": "malformed", "count": 1},
    ]}));
    let snap = snapshot(&es, "elasticsearch_1").await.unwrap();
    assert_eq!(snap["state"], "SUCCESS");

    // A poll shorter than 50 ms is refused: it would flood Elasticsearch.
    let mut options = snapshot_options(&es, "elasticsearch_2");
    options["poll"] = json!("0s");
    let error = run("es_snapshot", options, ctx()).await.unwrap_err();
    assert_error(
        &error,
        "options",
        "option `poll` 0s is too short: at least 50ms",
    );

    // A connection reset while polling is retried (GET is idempotent).
    let es = Server::standin_with_repo(json!({"rules": [
        {"method": "GET", "path": "elasticsearch_1$", "action": "reset", "count": 2},
    ]}));
    let snap = snapshot(&es, "elasticsearch_1").await.unwrap();
    assert_eq!(snap["state"], "SUCCESS");
    let resets = es
        .requests()
        .await
        .into_iter()
        .filter(|(_, _, status)| status == "reset")
        .count();
    assert_eq!(resets, 2);

    // An answer slower than the step's timeout: a timeout error naming the URL.
    let es = Server::standin_with_repo(json!({"rules": [
        {"method": "GET", "path": "^/_cluster/health$", "action": "delay", "seconds": 30},
    ]}));
    let error = run(
        "es_health",
        json!({"url": es.base}),
        ctx_with_deadline(Duration::from_secs(1)),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "timeout");
    assert_eq!(
        error.to_string(),
        format!(
            "GET {}/_cluster/health: no answer before the step's timeout",
            es.base
        )
    );
}

#[tokio::test]
async fn unreachable_server_is_retried_then_reported() {
    let port = free_port(); // nothing listens there
    let error = run(
        "es_health",
        json!({"url": format!("http://127.0.0.1:{port}")}),
        ctx_with_deadline(Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "connect");
    let text = error.to_string();
    assert!(
        text.starts_with(&format!("GET http://127.0.0.1:{port}/_cluster/health: ")),
        "{text}"
    );
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
    assert!(text.contains("(gave up after "), "{text}");
}

#[tokio::test]
async fn health_below_requirement_is_an_error() {
    let es = Server::standin(&["--faults", r#"{"health": "red"}"#]);
    let red = es_health(json!({"url": es.base})).await.unwrap_err();
    assert_eq!(red.kind(), "health");
    assert_eq!(
        red.to_string(),
        format!(
            "cluster health at {}/_cluster/health is red, yellow required: 2 unassigned, 0 initializing, 0 relocating shards (red: some primary shards are unassigned, data is unavailable)",
            es.base
        )
    );
    let accepted = es_health(json!({"url": es.base, "require": "red"}))
        .await
        .unwrap();
    assert_eq!(accepted["status"], "red");

    let es = Server::standin(&["--faults", r#"{"health": "yellow"}"#]);
    let waited = es_health(json!({"url": es.base, "wait_for_status": "green"}))
        .await
        .unwrap_err();
    assert_error(
        &waited,
        "health",
        "is yellow, green required (waited for it in vain)",
    );
    let requests = es.requests().await;
    assert_eq!(
        requests.len(),
        1,
        "408 is an answer, not a transient failure"
    );

    let es = Server::standin(&[]);
    let green = es_health(json!({"url": es.base, "wait_for_status": "green"}))
        .await
        .unwrap();
    assert_eq!(
        green,
        json!({"status": "green", "number_of_nodes": 1, "number_of_data_nodes": 1, "active_shards_percent": 100.0})
    );
}

#[tokio::test]
async fn http_step_requests_answers_and_dry_run() {
    let es = Server::standin_with_repo(json!({}));
    let answer = run(
        "http",
        json!({"url": format!("{}/_snapshot", es.base)}),
        ctx(),
    )
    .await
    .unwrap();
    assert_eq!(answer["status"], 200);
    assert_eq!(answer["json"]["thehive_repository"]["type"], "fs");
    assert_eq!(
        answer["headers"]["content-type"],
        "application/json; charset=UTF-8"
    );

    let put = json!({
        "method": "PUT", "url": format!("{}/_snapshot/other", es.base),
        "json": {"type": "fs", "settings": {"location": "/x"}}, "expect": [200],
    });
    let prepared = find_step("http").unwrap().prepare(put.clone()).unwrap();
    assert_eq!(
        prepared.dry_run_placeholder.as_ref().unwrap()["status"],
        200,
        "PUT is skipped under dry-run"
    );
    let created = prepared.run(ctx()).await.unwrap();
    assert_eq!(created["json"], json!({"acknowledged": true}));

    let head = find_step("http")
        .unwrap()
        .prepare(json!({"method": "HEAD", "url": es.base}))
        .unwrap();
    assert!(
        head.dry_run_placeholder.is_none(),
        "HEAD runs under dry-run"
    );

    let missing = run(
        "http",
        json!({"url": format!("{}/_snapshot/nope", es.base)}),
        ctx(),
    )
    .await
    .unwrap_err();
    assert_eq!(missing.kind(), "not_found");
    assert_eq!(
        missing.to_string(),
        format!(
            "GET {}/_snapshot/nope: HTTP 404, expected a 2xx status; answer: repository_missing_exception: [nope] missing",
            es.base
        )
    );
    let tolerated = run(
        "http",
        json!({"url": format!("{}/_snapshot/nope", es.base), "expect": [200, 404]}),
        ctx(),
    )
    .await
    .unwrap();
    assert_eq!(tolerated["status"], 404);
}

/// Makes a CA and a server certificate for 127.0.0.1 with openssl.
fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=runbook test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

#[tokio::test]
async fn tls_needs_the_ca_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let es = Server::standin(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);

    let untrusted = run(
        "es_health",
        json!({"url": es.base}),
        ctx_with_deadline(Duration::from_secs(10)),
    )
    .await
    .unwrap_err();
    assert_error(
        &untrusted,
        "connect",
        "give the CA that signed the server's certificate as `ca_cert`",
    );

    let ca = dir.path().join("ca.pem");
    let trusted = es_health(json!({"url": es.base, "ca_cert": ca}))
        .await
        .unwrap();
    assert_eq!(trusted["status"], "green");

    let insecure = es_health(json!({"url": es.base, "insecure": true}))
        .await
        .unwrap();
    assert_eq!(insecure["status"], "green");

    let missing = es_health(json!({"url": es.base, "ca_cert": dir.path().join("nope.pem")}))
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), "ca_cert");
}

#[tokio::test]
async fn es_server_identifies_the_server_and_fails_at_once_otherwise() {
    let es = Server::standin(&["--user", "elastic", "--password", "Right-Pass-1"]);
    let ok = run(
        "es_server",
        json!({"url": es.base, "user": "elastic", "password": "Right-Pass-1"}),
        ctx(),
    )
    .await
    .unwrap();
    assert_eq!(ok["distribution"], "elasticsearch", "{ok}");
    assert_eq!(ok["cluster_name"], "es-standin", "{ok}");

    // Wrong password: refused, permanent (never retried), password not shown.
    let error = run(
        "es_server",
        json!({"url": es.base, "user": "elastic", "password": "Wrong-Pass-2"}),
        ctx(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "unauthorized", "{error}");
    assert!(error.is_permanent());
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}/ refused the credentials: HTTP 401", es.base)),
        "{error}"
    );
    assert!(!error.to_string().contains("Wrong-Pass-2"), "{error}");

    // Nothing listening: one attempt, at once.
    let closed = free_port();
    let started = std::time::Instant::now();
    let error = run(
        "es_server",
        json!({"url": format!("http://127.0.0.1:{closed}")}),
        ctx(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "connect", "{error}");
    assert!(started.elapsed() < Duration::from_secs(1), "{error}");
}
