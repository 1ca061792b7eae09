//! The off-site record, `offsite_STAMP.json`: every object of a set's
//! off-site copy with its size and SHA-256 (of the encrypted bytes for an
//! `.age` object, with the plain archive's too), how the upload was checked,
//! and whether that check counts as verified. It is written next to the
//! manifest and uploaded just before it; off-site retention counts only sets
//! whose record says `verified.result == "ok"`, and `runbook verify --set
//! STAMP --offsite` re-checks the objects it lists.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backup::layout::{MANIFEST_PREFIX, parse_stamp};

/// The record's format version.
pub const RECORD_FORMAT: u32 = 1;

/// The prefix of a record's file name: `offsite_STAMP.json` (not
/// `backup_*`: tools and people looking for manifests by that pattern must
/// not find records).
pub const RECORD_PREFIX: &str = "offsite_";

/// The largest record read (a few KiB in practice).
pub const RECORD_MAX_BYTES: u64 = 4 * 1024 * 1024;

/// `result` of a verified record.
pub const VERIFIED: &str = "ok";

/// `offsite_STAMP.json`.
pub fn record_file_name(stamp: &str) -> String {
    format!("{RECORD_PREFIX}{stamp}.json")
}

/// The stamp of a record's file name.
pub fn record_stamp(name: &str) -> Option<&str> {
    let stamp = name.strip_prefix(RECORD_PREFIX)?.strip_suffix(".json")?;
    parse_stamp(stamp).map(|_| stamp)
}

/// The stamp of a manifest's file name, `backup_STAMP.json`.
pub fn manifest_stamp(name: &str) -> Option<&str> {
    let stamp = name.strip_prefix(MANIFEST_PREFIX)?.strip_suffix(".json")?;
    parse_stamp(stamp).map(|_| stamp)
}

/// A set's off-site record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OffsiteRecord {
    /// [`RECORD_FORMAT`].
    pub format: u32,
    /// The set's stamp.
    pub stamp: String,
    /// The workflow that made the set and its copy (retention's owner check).
    pub workflow: String,
    /// `ALIAS/BUCKET[/PREFIX]` the copy went to.
    pub dest: String,
    /// `age` or `none`.
    pub encryption: String,
    /// When the record was written (RFC 3339).
    pub created: String,
    /// Every object of the copy but this record; the manifest last.
    pub objects: Vec<OffsiteObject>,
    /// How the upload was checked.
    pub verified: OffsiteVerification,
}

/// One object of the copy.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OffsiteObject {
    /// The object key.
    pub key: String,
    /// Its size.
    pub bytes: u64,
    /// The SHA-256 (hex) of its bytes.
    pub sha256: String,
    /// What the upload's read-back matched: `sha256` (the server's checksum),
    /// `etag` (MD5 or multipart ETag), `size` (nothing better was offered).
    pub check: String,
    /// For an `.age` object: the plain archive's file name, size and SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain: Option<PlainFile>,
}

/// The plain file an encrypted object was made from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlainFile {
    /// Its file name (the manifest names its path).
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256 (hex), the manifest's.
    pub sha256: String,
}

/// Whether the copy counts as verified.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OffsiteVerification {
    /// [`VERIFIED`] or `unverified`.
    pub result: String,
    /// Why, in words.
    pub detail: String,
}

impl OffsiteRecord {
    /// Parses a record.
    pub fn parse(text: &str) -> Result<OffsiteRecord, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads a local record file.
    pub fn read(path: &Path) -> Result<OffsiteRecord, String> {
        let text = crate::runtime::regular_file::read_regular_text(path, RECORD_MAX_BYTES)
            .map_err(|e| format!("cannot read the off-site record {}: {e}", path.display()))?;
        OffsiteRecord::parse(&text)
            .map_err(|e| format!("{} is not an off-site record: {e}", path.display()))
    }

    /// True when the upload was checked well enough to count.
    pub fn is_verified(&self) -> bool {
        self.verified.result == VERIFIED
    }

    /// The record's own key: beside the manifest (the last object).
    pub fn own_key(&self) -> Option<String> {
        let manifest = self.objects.last()?;
        let prefix = manifest
            .key
            .rsplit_once('/')
            .map(|(p, _)| format!("{p}/"))
            .unwrap_or_default();
        Some(format!("{prefix}{}", record_file_name(&self.stamp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_stamp() {
        let stamp = "20261126_01h15m00s";
        assert_eq!(record_file_name(stamp), "offsite_20261126_01h15m00s.json");
        assert_eq!(record_stamp(&record_file_name(stamp)), Some(stamp));
        assert_eq!(
            manifest_stamp("backup_20261126_01h15m00s.json"),
            Some(stamp)
        );
        assert_eq!(manifest_stamp(&record_file_name(stamp)), None);
        assert_eq!(record_stamp("offsite_x.json"), None);
    }
}
