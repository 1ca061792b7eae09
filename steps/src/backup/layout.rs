//! The layout of a backup set: the stamp that names everything one run makes,
//! and the file names of every part. The one place these names are spelled;
//! the catalogue, retention, the engine (`runbook list`, `verify --set`,
//! metrics, `backup_manifest()`, stamp claims) and the workflows (through
//! `backup_stamp()`) all ask here.
//!
//! In the manifest folder and the archive folders, for a stamp `STAMP`:
//! `backup_STAMP.json` (the manifest, written last), `<part>_STAMP.tar[.zst|.gz]`
//! for each part of [`ARCHIVE_PARTS`] with its `.sha256`,
//! `elasticsearch_STAMP.info` (the snapshot marker), and `.runbook-claim-STAMP`
//! while a run holds the stamp.

use chrono::{Local, NaiveDateTime};

use crate::runtime::atomic_file::PARTIAL_SUFFIX;

/// The stamp format every file of a set carries (`20261126_01h15m00s`).
pub const STAMP_FORMAT: &str = "%Y%m%d_%Hh%Mm%Ss";
/// Length of a stamp in [`STAMP_FORMAT`].
const STAMP_LEN: usize = 18;
/// Archive kinds, by file name prefix.
pub const ARCHIVE_PARTS: [&str; 4] = ["cassandra", "files", "minio", "seaweedfs"];
/// The file name prefix of the Elasticsearch marker (and of the snapshot's name).
pub const ELASTICSEARCH_PART: &str = "elasticsearch";
/// Archive file name extensions, longest first.
const ARCHIVE_EXTENSIONS: [&str; 3] = [".tar.zst", ".tar.gz", ".tar"];
/// The start of a manifest's file name (`backup_<STAMP>.json`).
pub const MANIFEST_PREFIX: &str = "backup_";
/// The folder the stock workflows keep manifests in unless told otherwise
/// (`manifest_path`), and the default of `runbook list` / `verify --set`.
pub const DEFAULT_MANIFEST_FOLDER: &str = "/mnt/backup";
/// The names a bucket's archive has had in TheHive's guide: `minio_STAMP.tar`,
/// and `seaweedfs_STAMP.tar` since it moved to SeaweedFS (the backup's
/// `s3_archive_name`); both are parts of [`ARCHIVE_PARTS`].
pub const BUCKET_ARCHIVE_NAMES: [&str; 2] = ["minio", "seaweedfs"];
/// The stock workflows' archive folders, relative to the manifest folder
/// (`seaweedfs` is the guide's folder for `seaweedfs_STAMP.tar`); searched by
/// `runbook list` when no `--archive-path` is given and they exist.
pub const STOCK_ARCHIVE_FOLDERS: [&str; 5] = [
    "cassandra",
    "elasticsearch",
    "storage",
    "minio",
    "seaweedfs",
];

/// A new stamp: the local time now in [`STAMP_FORMAT`].
pub fn new_stamp() -> String {
    Local::now().format(STAMP_FORMAT).to_string()
}

/// The manifest's file name for `stamp`: `backup_<STAMP>.json`.
pub fn manifest_file_name(stamp: &str) -> String {
    format!("{MANIFEST_PREFIX}{stamp}.json")
}

/// The claim file's name for `stamp`: `.runbook-claim-<STAMP>`.
pub fn claim_file_name(stamp: &str) -> String {
    format!(".runbook-claim-{stamp}")
}

/// `text` as a local time, when it is a stamp in [`STAMP_FORMAT`] (strictly:
/// `2026112_1h5m0s` is not one).
pub fn parse_stamp(text: &str) -> Option<NaiveDateTime> {
    if text.len() != STAMP_LEN {
        return None;
    }
    let time = NaiveDateTime::parse_from_str(text, STAMP_FORMAT).ok()?;
    (time.format(STAMP_FORMAT).to_string() == text).then_some(time)
}

/// What a file of a set is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetFileKind {
    /// `backup_<STAMP>.json`.
    Manifest,
    /// `<part>_<STAMP>.tar[.zst|.gz]`; the part (`cassandra`, `files`, ...).
    Archive(String),
    /// `<archive>.sha256`.
    Sidecar(String),
    /// `elasticsearch_<STAMP>.info`.
    Marker,
    /// `<archive>.partial` or `<archive>.sha256.partial`: an interrupted write.
    Partial(String),
}

/// The kind and stamp of a set file, from its name alone; `None` for a file
/// that belongs to no set.
pub fn classify_file_name(name: &str) -> Option<(SetFileKind, String)> {
    if let Some(rest) = name.strip_prefix(MANIFEST_PREFIX)
        && let Some(stamp) = rest.strip_suffix(".json")
    {
        return parse_stamp(stamp).map(|_| (SetFileKind::Manifest, stamp.to_string()));
    }
    if let Some(rest) = name.strip_prefix("elasticsearch_")
        && let Some(stamp) = rest.strip_suffix(".info")
    {
        return parse_stamp(stamp).map(|_| (SetFileKind::Marker, stamp.to_string()));
    }
    for part in ARCHIVE_PARTS {
        let Some(rest) = name.strip_prefix(part).and_then(|r| r.strip_prefix('_')) else {
            continue;
        };
        if rest.len() < STAMP_LEN || !rest.is_char_boundary(STAMP_LEN) {
            return None;
        }
        let (stamp, suffix) = rest.split_at(STAMP_LEN);
        parse_stamp(stamp)?;
        let (base, partial) = match suffix.strip_suffix(PARTIAL_SUFFIX) {
            Some(base) => (base, true),
            None => (suffix, false),
        };
        let (extension, sidecar) = match base.strip_suffix(".sha256") {
            Some(extension) => (extension, true),
            None => (base, false),
        };
        if !ARCHIVE_EXTENSIONS.contains(&extension) {
            return None;
        }
        let kind = match (partial, sidecar) {
            (true, _) => SetFileKind::Partial(part.to_string()),
            (false, true) => SetFileKind::Sidecar(part.to_string()),
            (false, false) => SetFileKind::Archive(part.to_string()),
        };
        return Some((kind, stamp.to_string()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: &str = "20261126_01h15m00s";

    #[test]
    fn stamps_parse_strictly() {
        assert!(parse_stamp(STAMP).is_some());
        assert!(parse_stamp("20261126_1h15m00s0").is_none());
        assert!(parse_stamp("20261126_25h15m00s").is_none());
        assert!(parse_stamp("20261126-01h15m00s").is_none());
    }

    #[test]
    fn file_names_are_classified_by_kind_and_stamp() {
        let stamp = STAMP.to_string();
        assert_eq!(
            classify_file_name(&format!("backup_{STAMP}.json")),
            Some((SetFileKind::Manifest, stamp.clone()))
        );
        assert_eq!(
            classify_file_name(&format!("cassandra_{STAMP}.tar")),
            Some((SetFileKind::Archive("cassandra".into()), stamp.clone()))
        );
        assert_eq!(
            classify_file_name(&format!("files_{STAMP}.tar.zst.sha256")),
            Some((SetFileKind::Sidecar("files".into()), stamp.clone()))
        );
        assert_eq!(
            classify_file_name(&format!("minio_{STAMP}.tar.partial")),
            Some((SetFileKind::Partial("minio".into()), stamp.clone()))
        );
        assert_eq!(
            classify_file_name(&format!("elasticsearch_{STAMP}.info")),
            Some((SetFileKind::Marker, stamp.clone()))
        );
        // Both names TheHive's guide has given a bucket's archive.
        for name in BUCKET_ARCHIVE_NAMES {
            assert!(ARCHIVE_PARTS.contains(&name) && STOCK_ARCHIVE_FOLDERS.contains(&name));
            assert_eq!(
                classify_file_name(&format!("{name}_{STAMP}.tar")),
                Some((SetFileKind::Archive(name.into()), stamp.clone()))
            );
            assert_eq!(
                classify_file_name(&format!("{name}_{STAMP}.tar.sha256")),
                Some((SetFileKind::Sidecar(name.into()), stamp.clone()))
            );
        }
        for other in [
            format!("cassandra_{STAMP}.zip"),
            format!("cassandra_{STAMP}"),
            "cassandra_latest.tar".to_string(),
            format!("backup_{STAMP}.json.partial"),
            format!("notes_{STAMP}.tar"),
        ] {
            assert_eq!(classify_file_name(&other), None, "{other}");
        }
    }

    #[test]
    fn names_are_built_from_the_stamp() {
        assert_eq!(manifest_file_name(STAMP), "backup_20261126_01h15m00s.json");
        assert_eq!(
            classify_file_name(&manifest_file_name(STAMP)),
            Some((SetFileKind::Manifest, STAMP.to_string()))
        );
        assert_eq!(claim_file_name(STAMP), ".runbook-claim-20261126_01h15m00s");
        assert!(parse_stamp(&new_stamp()).is_some());
    }
}
