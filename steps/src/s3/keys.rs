//! Which S3 keys can be stored as file names, and where: shared by
//! `mcli_mirror` (files in a folder) and `s3_archive` (members of a tar
//! archive), so both modes of the attachment backup store and refuse exactly
//! the same keys, and their archives hold the same members. The listing that
//! feeds it is [`bucket_copy`](super::bucket_copy)'s.

use std::collections::{BTreeSet, HashSet};

use crate::s3::listing::ListedObject;

/// Longest file name most Linux file systems accept, in bytes.
const NAME_MAX: usize = 255;
/// Suffix of the files `mcli_mirror` downloads into. A key that would clash
/// with another key's temporary file is refused in both modes, so that they
/// give the same archive.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// An object with the file path it maps to.
#[derive(Clone, Debug)]
pub struct PlannedFile {
    /// The listed object.
    pub object: ListedObject,
    /// Relative to the folder (or archive top folder), `/`-separated.
    pub relative: String,
}

/// What a key maps to.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyMapping {
    /// A file at this path relative to dest.
    File(String),
    /// A folder marker (`dir/`, empty): this folder relative to dest ("" = dest).
    Folder(String),
    /// Refused, with the reason.
    Refused(&'static str),
}

/// Maps `key` (under `prefix`) to a path below dest, or says why not.
pub fn map_key(key: &str, prefix: &str, size: u64) -> KeyMapping {
    let Some(relative) = key.strip_prefix(prefix) else {
        return KeyMapping::Refused("outside the listed prefix");
    };
    if key.contains('\0') {
        return KeyMapping::Refused("NUL byte in key");
    }
    if relative.starts_with('/') {
        return KeyMapping::Refused("leading `/`");
    }
    if key.chars().any(|c| c.is_control()) {
        return KeyMapping::Refused("control character in key");
    }
    let (path, folder) = match relative.strip_suffix('/') {
        Some(path) => (path, true),
        None => (relative, false),
    };
    if folder && size > 0 {
        return KeyMapping::Refused("object name ends with `/` but has content");
    }
    if path.is_empty() {
        return KeyMapping::Folder(String::new());
    }
    for segment in path.split('/') {
        match segment {
            "" => return KeyMapping::Refused("empty path segment (`//`)"),
            "." => return KeyMapping::Refused("`.` path segment"),
            ".." => return KeyMapping::Refused("`..` path segment"),
            s if s.len() > NAME_MAX => return KeyMapping::Refused("name longer than 255 bytes"),
            _ => {}
        }
    }
    if !folder {
        // The download addresses the object through an object_store path; make
        // sure it names exactly this key.
        match object_store::path::Path::parse(key) {
            Ok(parsed) if parsed.as_ref() == key => {}
            _ => return KeyMapping::Refused("not addressable as an object path"),
        }
    }
    if folder {
        KeyMapping::Folder(path.to_string())
    } else {
        KeyMapping::File(path.to_string())
    }
}

/// The result of mapping a listing onto a folder.
#[derive(Debug, Default)]
pub struct KeyPlan {
    /// The objects that become files, in listing order.
    pub files: Vec<PlannedFile>,
    /// Every folder that must exist (relative, including parents of files).
    pub folders: BTreeSet<String>,
    /// Refused keys with the reason.
    pub refused: Vec<(String, &'static str)>,
}

/// Maps a listing under `prefix` onto files and folders, refusing the keys
/// that cannot be stored safely as file names.
pub fn plan_keys(listing: Vec<ListedObject>, prefix: &str) -> KeyPlan {
    let mut plan = KeyPlan::default();
    let mut candidates = Vec::new();
    for object in listing {
        if !object.utf8 {
            plan.refused.push((object.key, "key is not valid UTF-8"));
            continue;
        }
        match map_key(&object.key, prefix, object.size) {
            KeyMapping::File(relative) => candidates.push(PlannedFile { object, relative }),
            KeyMapping::Folder(relative) => {
                if !relative.is_empty() {
                    plan.folders.insert(relative);
                }
            }
            KeyMapping::Refused(reason) => plan.refused.push((object.key, reason)),
        }
    }
    for entry in &candidates {
        let mut parent = entry.relative.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            plan.folders.insert(up.to_string());
            parent = up;
        }
    }
    let files: HashSet<&str> = candidates.iter().map(|e| e.relative.as_str()).collect();
    let mut accepted = Vec::with_capacity(candidates.len());
    for entry in &candidates {
        let clash = if plan.folders.contains(&entry.relative) {
            Some("also a folder prefix of other keys")
        } else if entry
            .relative
            .strip_suffix(PARTIAL_SUFFIX)
            .is_some_and(|stem| files.contains(stem))
        {
            Some("clashes with the temporary file of another key")
        } else {
            None
        };
        match clash {
            Some(reason) => plan.refused.push((entry.object.key.clone(), reason)),
            None => accepted.push(entry.clone()),
        }
    }
    plan.files = accepted;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_safely_or_are_refused() {
        use KeyMapping::*;
        assert_eq!(map_key("a/b/c.bin", "", 3), File("a/b/c.bin".into()));
        assert_eq!(map_key("files/a/b", "files/", 3), File("a/b".into()));
        assert_eq!(map_key("a/", "", 0), Folder("a".into()));
        assert_eq!(map_key("files/", "files/", 0), Folder(String::new()));
        assert_eq!(
            map_key("a/../../etc/passwd", "", 1),
            Refused("`..` path segment")
        );
        assert_eq!(map_key("..", "", 1), Refused("`..` path segment"));
        assert_eq!(map_key("a/./b", "", 1), Refused("`.` path segment"));
        assert_eq!(map_key("/etc/passwd", "", 1), Refused("leading `/`"));
        assert_eq!(map_key("files//x", "files/", 1), Refused("leading `/`"));
        assert_eq!(map_key("a//b", "", 1), Refused("empty path segment (`//`)"));
        assert_eq!(map_key("a\0b", "", 1), Refused("NUL byte in key"));
        assert_eq!(map_key("a\nb", "", 1), Refused("control character in key"));
        assert_eq!(
            map_key("a/", "", 4),
            Refused("object name ends with `/` but has content")
        );
        let long = "x".repeat(256);
        assert_eq!(map_key(&long, "", 1), Refused("name longer than 255 bytes"));
        // Names that merely contain dots are fine.
        assert_eq!(map_key("a/..b/c..", "", 1), File("a/..b/c..".into()));
    }

    #[test]
    fn plan_refuses_files_that_are_also_folders() {
        let object = |key: &str| ListedObject {
            key: key.into(),
            utf8: true,
            size: 1,
            modified: 0,
            single_part_etag: None,
        };
        let plan = plan_keys(
            vec![
                object("a"),
                object("a/b"),
                object("c"),
                object("c.partial"),
                object("../x"),
            ],
            "",
        );
        let files: Vec<&str> = plan.files.iter().map(|e| e.relative.as_str()).collect();
        assert_eq!(files, ["a/b", "c"]);
        let refused: Vec<&str> = plan.refused.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(refused, ["../x", "a", "c.partial"]);
        assert!(plan.folders.contains("a"));
    }
}
