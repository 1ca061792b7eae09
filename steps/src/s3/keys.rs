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

/// An object that becomes a file. The plan of a bucket holds one per object
/// (tens of thousands), so it is kept small: the key is stored once, the
/// file's path is a suffix of it, and nothing of the listing that no step
/// reads is kept.
#[derive(Clone, Debug)]
pub struct PlannedFile {
    /// The object key.
    pub key: Box<str>,
    /// The size in bytes, as listed.
    pub size: u64,
    /// Last-Modified as listed, whole seconds since the epoch.
    pub modified: i64,
    /// Where the file's path starts in `key` (the listed prefix's length).
    relative_start: u32,
}

impl PlannedFile {
    /// The file's path relative to the folder (or archive top folder),
    /// `/`-separated: the key without the listed prefix.
    pub fn relative(&self) -> &str {
        &self.key[self.relative_start as usize..]
    }
}

/// What a key maps to (borrowed from the key).
#[derive(Debug, PartialEq, Eq)]
pub enum KeyMapping<'k> {
    /// A file at this path relative to dest.
    File(&'k str),
    /// A folder marker (`dir/`, empty): this folder relative to dest ("" = dest).
    Folder(&'k str),
    /// Refused, with the reason.
    Refused(&'static str),
}

/// Maps `key` (under `prefix`) to a path below dest, or says why not.
pub fn map_key<'k>(key: &'k str, prefix: &str, size: u64) -> KeyMapping<'k> {
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
        return KeyMapping::Folder("");
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
        KeyMapping::Folder(path)
    } else {
        KeyMapping::File(path)
    }
}

/// The result of mapping a listing onto a folder.
#[derive(Debug, Default)]
pub struct KeyPlan {
    /// The objects that become files, in listing order.
    pub files: Vec<PlannedFile>,
    /// Every folder that must exist (relative, including parents of files),
    /// sorted (byte order), each once.
    pub folders: Vec<Box<str>>,
    /// Refused keys with the reason: those refused by [`map_key`] in listing
    /// order, then those that clash with another key's file or folder.
    pub refused: Vec<(Box<str>, &'static str)>,
}

impl KeyPlan {
    /// True when `relative` is one of the plan's folders.
    pub fn is_folder(&self, relative: &str) -> bool {
        self.folders
            .binary_search_by(|folder| folder.as_ref().cmp(relative))
            .is_ok()
    }
}

/// Builds a [`KeyPlan`] one listed object at a time, so the listing itself
/// is never held whole beside the plan.
#[derive(Debug)]
pub struct KeyPlanner<'p> {
    prefix: &'p str,
    /// The files mapped so far, before the clash checks.
    files: Vec<PlannedFile>,
    folders: BTreeSet<Box<str>>,
    refused: Vec<(Box<str>, &'static str)>,
}

impl<'p> KeyPlanner<'p> {
    /// A plan of the keys under `prefix`.
    pub fn new(prefix: &'p str) -> KeyPlanner<'p> {
        KeyPlanner {
            prefix,
            files: Vec::new(),
            folders: BTreeSet::new(),
            refused: Vec::new(),
        }
    }

    /// Maps one listed object (kept as a file, a folder, or a refused key).
    pub fn add(&mut self, object: ListedObject) {
        if !object.utf8 {
            self.refused
                .push((object.key.into_boxed_str(), "key is not valid UTF-8"));
            return;
        }
        let relative_len = match map_key(&object.key, self.prefix, object.size) {
            KeyMapping::File(relative) => relative.len(),
            KeyMapping::Folder(relative) => {
                if !relative.is_empty() && !self.folders.contains(relative) {
                    self.folders.insert(relative.into());
                }
                return;
            }
            KeyMapping::Refused(reason) => {
                self.refused.push((object.key.into_boxed_str(), reason));
                return;
            }
        };
        let relative_start = u32::try_from(object.key.len() - relative_len)
            .expect("an S3 key is far shorter than 4 GiB");
        self.files.push(PlannedFile {
            key: object.key.into_boxed_str(),
            size: object.size,
            modified: object.modified,
            relative_start,
        });
    }

    /// Adds the parents of every file to the folders, then refuses the files
    /// that are also a folder, or that would clash with the temporary file of
    /// another key.
    pub fn finish(mut self) -> KeyPlan {
        for file in &self.files {
            let mut parent = file.relative();
            while let Some((up, _)) = parent.rsplit_once('/') {
                if !self.folders.contains(up) {
                    self.folders.insert(up.into());
                }
                parent = up;
            }
        }
        let taken_stems = self.partial_stems_taken();
        let folders = &self.folders;
        let refused = &mut self.refused;
        self.files.retain_mut(|file| {
            let relative = file.relative();
            let clash = if folders.contains(relative) {
                Some("also a folder prefix of other keys")
            } else if relative
                .strip_suffix(PARTIAL_SUFFIX)
                .is_some_and(|stem| taken_stems.contains(stem))
            {
                Some("clashes with the temporary file of another key")
            } else {
                None
            };
            match clash {
                Some(reason) => {
                    refused.push((std::mem::take(&mut file.key), reason));
                    false
                }
                None => true,
            }
        });
        self.files.shrink_to_fit();
        KeyPlan {
            files: self.files,
            folders: self.folders.into_iter().collect(),
            refused: self.refused,
        }
    }

    /// The stems `x` of the files `x.partial` that are themselves files
    /// (usually none: only then is a set of paths built).
    fn partial_stems_taken(&self) -> HashSet<Box<str>> {
        let stems: HashSet<&str> = self
            .files
            .iter()
            .filter_map(|file| file.relative().strip_suffix(PARTIAL_SUFFIX))
            .collect();
        if stems.is_empty() {
            return HashSet::new();
        }
        self.files
            .iter()
            .map(PlannedFile::relative)
            .filter(|relative| stems.contains(relative))
            .map(Box::from)
            .collect()
    }
}

/// Maps a listing under `prefix` onto files and folders, refusing the keys
/// that cannot be stored safely as file names.
pub fn plan_keys(listing: Vec<ListedObject>, prefix: &str) -> KeyPlan {
    let mut planner = KeyPlanner::new(prefix);
    for object in listing {
        planner.add(object);
    }
    planner.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_safely_or_are_refused() {
        use KeyMapping::*;
        assert_eq!(map_key("a/b/c.bin", "", 3), File("a/b/c.bin"));
        assert_eq!(map_key("files/a/b", "files/", 3), File("a/b"));
        assert_eq!(map_key("a/", "", 0), Folder("a"));
        assert_eq!(map_key("files/", "files/", 0), Folder(""));
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
        assert_eq!(map_key("a/..b/c..", "", 1), File("a/..b/c.."));
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
        let files: Vec<&str> = plan.files.iter().map(PlannedFile::relative).collect();
        assert_eq!(files, ["a/b", "c"]);
        let refused: Vec<&str> = plan.refused.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(refused, ["../x", "a", "c.partial"]);
        assert!(plan.is_folder("a"));
    }

    fn listed(key: &str, size: u64) -> ListedObject {
        ListedObject {
            key: key.into(),
            utf8: true,
            size,
            modified: size as i64,
            single_part_etag: None,
        }
    }

    #[test]
    fn a_planned_file_holds_its_key_once_with_the_path_inside_it() {
        let plan = plan_keys(
            vec![listed("files/7f/a b.txt", 3), listed("files/e9/x", 4)],
            "files/",
        );
        let file = &plan.files[0];
        assert_eq!(&*file.key, "files/7f/a b.txt");
        assert_eq!(file.relative(), "7f/a b.txt");
        // The path is a slice of the key, not a copy of it.
        assert!(std::ptr::eq(
            file.relative().as_ptr(),
            file.key[6..].as_ptr()
        ));
        assert_eq!((file.size, file.modified), (3, 3));
        assert_eq!(plan.files[1].relative(), "e9/x");
        let folders: Vec<&str> = plan.folders.iter().map(|f| f.as_ref()).collect();
        assert_eq!(folders, ["7f", "e9"]);
        // 40 bytes per object beside its key: a bucket of 100,000 objects
        // keeps its plan in a few MiB.
        assert!(std::mem::size_of::<PlannedFile>() <= 40);
    }

    #[test]
    fn folders_are_sorted_once_each_with_every_parent_of_a_file() {
        let plan = plan_keys(
            vec![
                listed("b/c/d/e", 1),
                listed("b/c/x", 1),
                listed("m/", 0),
                listed("m/", 0),
                listed("k/l/", 0),
                listed("", 0),
            ],
            "",
        );
        let folders: Vec<&str> = plan.folders.iter().map(|f| f.as_ref()).collect();
        // A folder marker adds itself only (`k/l` without `k`), as before.
        assert_eq!(folders, ["b", "b/c", "b/c/d", "k/l", "m"]);
        assert!(plan.is_folder("b/c/d") && plan.is_folder("k/l"));
        assert!(!plan.is_folder("k") && !plan.is_folder("b/c/x") && !plan.is_folder(""));
        assert!(plan.refused.is_empty());
    }

    #[test]
    fn refused_keys_keep_their_reasons_and_the_listing_order() {
        let mut undecodable = listed("p/bad\u{FFFD}", 1);
        undecodable.utf8 = false;
        let plan = plan_keys(
            vec![
                listed("p/x.partial", 1),
                listed("p/d", 1),
                listed("p/a/../b", 1),
                undecodable,
                listed("p/d/e", 1),
                listed("p/x", 1),
                listed("p/y/", 5),
                listed("p/x.partial.partial", 1),
                listed("other/z", 1),
                listed("p/z.partial", 1),
            ],
            "p/",
        );
        let refused: Vec<(&str, &str)> = plan
            .refused
            .iter()
            .map(|(key, reason)| (key.as_ref(), *reason))
            .collect();
        let temporary = "clashes with the temporary file of another key";
        assert_eq!(
            refused,
            [
                // Refused by map_key, in listing order...
                ("p/a/../b", "`..` path segment"),
                ("p/bad\u{FFFD}", "key is not valid UTF-8"),
                ("p/y/", "object name ends with `/` but has content"),
                ("other/z", "outside the listed prefix"),
                // ...then the clashes, in listing order (the key moved out of
                // the plan, whole).
                ("p/x.partial", temporary),
                ("p/d", "also a folder prefix of other keys"),
                ("p/x.partial.partial", temporary),
            ]
        );
        // `z.partial` has no `z` beside it: kept.
        let files: Vec<&str> = plan.files.iter().map(PlannedFile::relative).collect();
        assert_eq!(files, ["d/e", "x", "z.partial"]);
        assert!(plan.is_folder("d"));
    }
}
