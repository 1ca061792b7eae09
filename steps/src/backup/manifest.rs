//! The set manifest `backup_<STAMP>.json`: one typed struct, written by the
//! `write_manifest` step, read by the catalogue (and through it by
//! `runbook list`, retention and `backup_manifest()`), and rewritten by
//! `runbook verify --set` when it records a verification.
//!
//! Format 1 (the `format` field). Reading tolerates what it does not know:
//! every field is optional, and keys this version does not name are kept in
//! `other` and written back unchanged, so `verify --set` on a manifest from
//! an older or newer runbook loses nothing. Written as compact JSON with the
//! keys of every object in alphabetical order, as the Rhai-built manifests
//! of earlier versions were.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The manifest format this version writes.
pub const MANIFEST_FORMAT: u32 = 1;
/// The verification result that counts as verified.
pub const VERIFIED_OK: &str = "ok";
/// The format of `created` and `verified.time` (local time with its offset).
pub const MANIFEST_TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%z";

/// Now, in [`MANIFEST_TIME_FORMAT`].
pub fn manifest_time_now() -> String {
    chrono::Local::now()
        .format(MANIFEST_TIME_FORMAT)
        .to_string()
}

/// A set manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format ([`MANIFEST_FORMAT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<u32>,
    /// The stamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    /// The host that made the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// When the set was made ([`MANIFEST_TIME_FORMAT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// True once the set is complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<bool>,
    /// The last verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<Verification>,
    /// The archives.
    #[serde(default)]
    pub archives: Vec<ManifestArchive>,
    /// The Cassandra snapshot's details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassandra: Option<ManifestCassandra>,
    /// The Elasticsearch snapshot and its marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch: Option<ManifestSnapshot>,
    /// What the backup left out or found changed, by the site's choice.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Seconds between the Cassandra and Elasticsearch snapshots' starts
    /// (`null` when Elasticsearch's start time could not be read).
    #[serde(default)]
    pub snapshot_skew_seconds: Option<f64>,
    /// The SHA-256 of the workflow that made the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_sha256: Option<String>,
    /// Which workflow wrote it, for which manifest folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<ManifestOrigin>,
    /// The config the set was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ManifestConfig>,
    /// Keys this version does not name, kept as they are.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The `origin` a runbook manifest records: which workflow wrote the set, for
/// which manifest folder. Together they say "this workflow at this site":
/// two workflows sharing archive folders or a snapshot repository have
/// different names or manifest folders, and a manifest copied from another
/// site's folder names that folder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOrigin {
    /// Always `runbook`.
    #[serde(default)]
    pub tool: String,
    /// The workflow's name (`cluster-hot-backup`, or a site file's stem).
    pub workflow: String,
    /// The manifest folder the workflow was configured with.
    pub manifest_path: PathBuf,
}

/// The last verification of a set, as recorded in its manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// When ([`MANIFEST_TIME_FORMAT`], local time).
    pub time: String,
    /// `ok`, or `failed`.
    pub result: String,
    /// One line per problem found (empty when `ok`; always written, so
    /// scripts can rely on it).
    #[serde(default)]
    pub errors: Vec<String>,
}

impl Verification {
    /// True when the result is `ok`.
    pub fn is_ok(&self) -> bool {
        self.result == VERIFIED_OK
    }
}

/// The config a manifest records: the keys read here, and every other key
/// as it was.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestConfig {
    /// Elasticsearch's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch_url: Option<String>,
    /// The Elasticsearch user ("" = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elasticsearch_user: Option<String>,
    /// The other keys.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One archive in a manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestArchive {
    /// `cassandra`, `files`, `minio`, `seaweedfs`.
    #[serde(default)]
    pub part: String,
    /// The archive file.
    pub path: PathBuf,
    /// Its size when written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Its hex SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The entries `verify_archive` counted in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// Symlinks pointing outside the archived folder (their targets are not
    /// in the backup); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links_outside: Vec<String>,
    /// Keys this version does not name.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The Elasticsearch section of a manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestSnapshot {
    /// The snapshot repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The snapshot's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The snapshot's UUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Its state (`SUCCESS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// When it started (ISO 8601, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// The Elasticsearch version that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The indices in the snapshot (the restore plan deletes and restores them).
    #[serde(default)]
    pub indices: Vec<String>,
    /// The `.info` marker file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marker: Option<PathBuf>,
    /// Keys this version does not name.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The Cassandra section of a manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ManifestCassandra {
    /// The snapshot tag (`cassandra_<STAMP>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_tag: Option<String>,
    /// The keyspace (restore-prep builds paths from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyspace: Option<String>,
    /// The tables' folders in the snapshot.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Cassandra's version (`nodetool version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Keys this version does not name.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Manifest {
    /// Parses a manifest's text (a JSON object; unknown keys are kept).
    pub fn parse(text: &str) -> Result<Manifest, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The manifest as written: compact JSON, keys in alphabetical order,
    /// one trailing newline.
    pub fn to_text(&self) -> Result<String, serde_json::Error> {
        // Through `Value`, whose objects keep their keys sorted: the shape
        // the Rhai-built manifests had.
        let value = serde_json::to_value(self)?;
        Ok(format!("{}\n", serde_json::to_string(&value)?))
    }

    /// The files the manifest names: its archives and the marker.
    pub fn named_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self.archives.iter().map(|a| a.path.clone()).collect();
        if let Some(marker) = self.elasticsearch.as_ref().and_then(|e| e.marker.clone()) {
            paths.push(marker);
        }
        paths
    }

    /// Writes a new manifest at `path` atomically: `<path>.partial`, mode
    /// 0600 (or 0640 and group `group` when one is given, as the other files
    /// of a shared set), fsynced, renamed, the folder fsynced. Nothing is
    /// left at `path` or `<path>.partial` on error.
    pub fn write_new(&self, path: &Path, group: Option<&str>) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let text = self.to_text().map_err(std::io::Error::other)?;
        let gid = match group {
            Some(name) => Some(
                nix::unistd::Group::from_name(name)
                    .map_err(std::io::Error::from)?
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("no group named `{name}` (backup_group)"),
                        )
                    })?
                    .gid,
            ),
            None => None,
        };
        let (partial, mut file) = crate::runtime::atomic_file::PartialFile::create(path, 0o600)?;
        if let Some(gid) = gid {
            std::os::unix::fs::fchown(&file, None, Some(gid.as_raw()))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o640))?;
        }
        file.write_all(text.as_bytes())?;
        partial.commit(file)
    }

    /// Replaces the manifest at `path` atomically with this one, keeping its
    /// owner, group and mode: a manifest shared with `backup_group` (0640)
    /// stays readable by that group after `verify --set` records a result in
    /// it. When the owner cannot be kept (not root, another user's file),
    /// nothing is replaced.
    pub fn rewrite_keeping_owner(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let text = self.to_text().map_err(std::io::Error::other)?;
        let before = std::fs::symlink_metadata(path)?;
        let mode = before.mode() & 0o7777;
        let (partial, mut file) = crate::runtime::atomic_file::PartialFile::create(path, mode)?;
        std::os::unix::fs::fchown(&file, Some(before.uid()), Some(before.gid())).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot keep its owner {}:{} ({e}); run verify as that user or as root",
                    before.uid(),
                    before.gid()
                ),
            )
        })?;
        // chown may clear set-id bits: set the mode again, exactly.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        partial.commit(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_nulls_survive_a_rewrite_and_keys_stay_sorted() {
        // A manifest from an older or newer runbook: no `format`, a key this
        // version does not name at each level, a null skew.
        let text = concat!(
            r#"{"archives":[{"bytes":3,"future":{"a":1},"part":"files","path":"/b/files_20261124_01h00m00s.tar"}],"#,
            r#""complete":true,"newer":[1,2],"snapshot_skew_seconds":null,"stamp":"20261124_01h00m00s","#,
            r#""verified":{"errors":[],"result":"ok","time":"2026-11-24T01:10:00+0000"},"warnings":[]}"#,
            "\n"
        );
        let manifest = Manifest::parse(text).unwrap();
        assert_eq!(manifest.format, None);
        assert_eq!(manifest.other["newer"], serde_json::json!([1, 2]));
        assert_eq!(manifest.archives[0].other["future"]["a"], 1);
        assert_eq!(manifest.to_text().unwrap(), text);
    }

    #[test]
    fn a_manifest_is_not_an_array_and_types_are_checked() {
        assert!(Manifest::parse("[]").is_err());
        assert!(Manifest::parse(r#"{"archives":"x"}"#).is_err());
        assert!(Manifest::parse("{}").is_ok());
    }

    #[test]
    fn write_new_is_atomic_and_private_and_refuses_an_unknown_group() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup_20261124_01h00m00s.json");
        let manifest = Manifest {
            format: Some(MANIFEST_FORMAT),
            ..Manifest::default()
        };
        let err = manifest
            .write_new(&path, Some("no-such-group-runbook"))
            .unwrap_err();
        assert!(err.to_string().contains("backup_group"), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());

        manifest.write_new(&path, None).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // With this user's own primary group: shared, 0640.
        let group = nix::unistd::Group::from_gid(nix::unistd::getegid())
            .unwrap()
            .unwrap();
        manifest.write_new(&path, Some(&group.name)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(meta.gid(), group.gid.as_raw());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"archives\":[],\"format\":1,\"snapshot_skew_seconds\":null,\"warnings\":[]}\n"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
