//! Elasticsearch / OpenSearch (and plain HTTP services): the retrying HTTP
//! client with its authentication, TLS and error reporting ([`client`]), and
//! the snapshot API calls shared by the snapshot step and retention
//! ([`snapshot_api`]), and the steps built on it: `es_server` (the pre-flight probe), `es_health`,
//! `es_snapshot`, `es_restore` and the generic `http` step.

pub mod client;
pub mod health;
pub mod http;
pub mod restore;
pub mod server;
pub mod snapshot;
pub mod snapshot_api;
