//! The backup catalogue: which backup sets exist in a manifest folder and the
//! archive folders, whether each is complete, when it was last verified and
//! with what result, which parts it has, how big and how old it is.
//!
//! A *set* is everything one run of the stock backup workflow made under one
//! stamp (`%Y%m%d_%Hh%Mm%Ss`; the names are [`layout`](super::layout)'s):
//! - `backup_<STAMP>.json`, the set manifest, written last: its presence means
//!   the set is complete; it records each archive's path, size and SHA-256, the
//!   Elasticsearch snapshot and its `.info` marker, and the last verification
//!   (`verified: {time, result, errors}`);
//! - `cassandra_<STAMP>.tar`, `files_<STAMP>.tar`, `minio_<STAMP>.tar`
//!   (`seaweedfs_<STAMP>.tar` too; `.tar.zst` / `.tar.gz` accepted), each with
//!   a `.sha256` sidecar;
//! - `elasticsearch_<STAMP>.info`, the marker naming the snapshot;
//! - `<archive>.partial` leftovers of an interrupted write.
//!
//! Archives and markers whose stamp has no manifest form *incomplete* sets:
//! a run that failed, was interrupted, or is still going, or files another
//! tool made (TheHive's own scripts write archives and `.info` markers under
//! the same names, without a manifest).
//!
//! Each set has an [`Origin`]: `runbook` when a readable manifest with an
//! `origin` (the workflow and the manifest folder it wrote for) names it,
//! `damaged` when its manifest cannot be read or names things runbook never
//! writes (a snapshot `*`, a stamp `../../x`, an archive outside the set), and
//! `foreign` otherwise. Retention only ever touches `runbook` sets whose
//! origin is the pruning workflow's ([`BackupSet::is_owned_by`]); the names a
//! manifest gives are checked against the exact shapes runbook writes
//! ([`is_plain_name`], [`check_named_path`]) before anything uses them.
//!
//! Used by `runbook list`, `runbook verify --set` and the `prune` step. Plain
//! Rust: nothing here deletes or changes a file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chrono::{Local, TimeZone};
use serde::{Deserialize, Serialize};

use crate::archive::sidecar::sidecar_path;
use crate::backup::layout::{ELASTICSEARCH_PART, SetFileKind, classify_file_name, parse_stamp};
pub use crate::backup::manifest::{
    MANIFEST_TIME_FORMAT, Manifest, ManifestArchive, ManifestCassandra, ManifestConfig,
    ManifestOrigin, ManifestSnapshot, VERIFIED_OK, Verification,
};
use crate::runtime::atomic_file::{PARTIAL_SUFFIX, with_suffix};

/// The most a manifest or marker may hold: they are a few KiB; anything
/// bigger is not runbook's and is not read into memory.
pub const MANIFEST_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Who made a set, as far as its files tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A readable runbook manifest with an `origin` names the set, and every
    /// name in it has the shape runbook writes.
    Runbook,
    /// No manifest (another tool's set, a hand copy, a run that did not
    /// finish), or a manifest without an `origin`.
    Foreign,
    /// A manifest that cannot be read, or that names things runbook never
    /// writes: nothing it names is used.
    Damaged,
}

/// The workflow and manifest folder retention acts for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The workflow's name.
    pub workflow: String,
    /// Its manifest folder.
    pub manifest_path: PathBuf,
}

/// What Elasticsearch says about a set's snapshot (asked by
/// [`crate::backup::snapshot_check`], which builds on the catalogue).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "detail")]
pub enum SnapshotState {
    /// It exists with state SUCCESS.
    Success,
    /// It exists in another state (`FAILED`, `PARTIAL`, `IN_PROGRESS`...).
    Other(String),
    /// The repository does not hold it (or the repository is not registered).
    Missing,
    /// It could not be asked (no answer, an error): the reason.
    Unknown(String),
}

impl SnapshotState {
    /// One word or short phrase for a table.
    pub fn summary(&self) -> String {
        match self {
            SnapshotState::Success => "SUCCESS".to_string(),
            SnapshotState::Other(state) => state.clone(),
            SnapshotState::Missing => "MISSING".to_string(),
            SnapshotState::Unknown(_) => "?".to_string(),
        }
    }
}

// Owned by the Elasticsearch side (a repository or snapshot name read from a
// manifest goes into a URL); the catalogue, retention and scripts ask here.
pub use crate::search::snapshot_api::is_plain_name;

/// Checks a path a manifest names for set `stamp`: absolute, without `.` or
/// `..` components, and its file name exactly the one runbook gives that kind
/// of file of that set. `Err` says what is wrong.
pub fn check_named_path(
    path: &Path,
    stamp: &str,
    wanted: fn(&SetFileKind) -> bool,
) -> Result<SetFileKind, String> {
    use std::path::Component;
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path", path.display()));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(format!("{} holds `.` or `..`", path.display()));
    }
    match belongs_to(path, stamp) {
        Some(kind) if wanted(&kind) => Ok(kind),
        _ => Err(format!(
            "{} is not a file name runbook gives set {stamp}",
            path.display()
        )),
    }
}

/// One archive, or the Elasticsearch marker, of a set.
#[derive(Clone, Debug, Serialize)]
pub struct SetPart {
    /// `cassandra`, `files`, `minio`, `seaweedfs` or `elasticsearch` (the marker).
    pub part: String,
    /// The file.
    pub path: PathBuf,
    /// The file exists.
    pub present: bool,
    /// Its size now (0 when missing).
    pub bytes: u64,
    /// The size the manifest records, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_bytes: Option<u64>,
    /// The SHA-256 the manifest records, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The set's runbook manifest names this file (only such files are ever
    /// removed by retention; others were found by name alone).
    #[serde(default)]
    pub listed: bool,
}

impl SetPart {
    /// A part as found on disk (`size` is `None` when the file is missing),
    /// with no size or checksum recorded for it.
    fn on_disk(part: String, path: &Path, size: Option<u64>, listed: bool) -> SetPart {
        SetPart {
            part,
            path: path.to_path_buf(),
            present: size.is_some(),
            bytes: size.unwrap_or(0),
            expected_bytes: None,
            sha256: None,
            listed,
        }
    }

    /// True for an archive (not the marker).
    pub fn is_archive(&self) -> bool {
        self.part != ELASTICSEARCH_PART
    }
}

/// The Elasticsearch snapshot of a set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotRef {
    /// The repository, when the manifest or the marker records it.
    pub repository: Option<String>,
    /// The snapshot's name (`elasticsearch_<STAMP>`).
    pub name: String,
    /// The set's runbook manifest names it (else it was read from a marker
    /// or guessed from the stamp: shown, never deleted).
    #[serde(default)]
    pub listed: bool,
    /// The Elasticsearch URL the manifest's config records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The Elasticsearch user the manifest's config records ("" = none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Why the URL the manifest records is not used (another user's file,
    /// or one others can write): only `--elasticsearch-url` is asked then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untrusted: Option<String>,
}

/// One backup set.
#[derive(Clone, Debug, Serialize)]
pub struct BackupSet {
    /// The stamp naming every file of the set.
    pub stamp: String,
    /// The stamp as a local time (RFC 3339), when it parses.
    pub time: Option<String>,
    /// When the manifest says the set was made (`created`), when it says.
    pub created: Option<String>,
    /// Who made the set.
    pub origin: Origin,
    /// The workflow and manifest folder a runbook manifest records.
    pub written_by: Option<ManifestOrigin>,
    /// The manifest exists, is readable and says `complete: true`.
    pub complete: bool,
    /// The manifest file, if there is one (readable or not).
    pub manifest: Option<PathBuf>,
    /// The last verification recorded in the manifest.
    pub verified: Option<Verification>,
    /// Archives and the marker: those the manifest lists, plus those found.
    pub parts: Vec<SetPart>,
    /// Sidecars and `.partial` leftovers that exist.
    pub other_files: Vec<PathBuf>,
    /// Bytes of every file of the set that exists (manifest included).
    pub bytes: u64,
    /// Seconds since the stamp's time.
    pub age_seconds: Option<u64>,
    /// The Elasticsearch snapshot, from the manifest or the marker.
    pub snapshot: Option<SnapshotRef>,
    /// What Elasticsearch said about it, when it was asked
    /// ([`crate::backup::snapshot_check`]); a missing or failed snapshot is also
    /// one of `problems`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_state: Option<SnapshotState>,
    /// What is wrong with the set, one line each (missing or resized archives,
    /// an unreadable manifest).
    pub problems: Vec<String>,
    /// What the set lacks by the site's choice (the manifest's `warnings`,
    /// written when an `allow_*` key let the backup go on): such a set is
    /// "complete with warnings".
    pub warnings: Vec<String>,
}

impl BackupSet {
    /// True when a runbook manifest names this set and records `owner`'s
    /// workflow and manifest folder: the only sets retention may remove.
    pub fn is_owned_by(&self, owner: &Owner) -> bool {
        self.origin == Origin::Runbook
            && self.written_by.as_ref().is_some_and(|w| {
                w.workflow == owner.workflow && same_file(&w.manifest_path, &owner.manifest_path)
            })
    }

    /// When the set was made: the manifest's `created` time, else the
    /// stamp read as local time. Sets are ordered by this, not by name: a
    /// stamp in local time repeats and runs backwards across a
    /// daylight-saving fall-back.
    pub fn made_at(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        self.created.as_deref().and_then(parse_created).or_else(|| {
            self.time
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        })
    }

    /// Complete, verified with result `ok`, and nothing wrong found since.
    pub fn is_verified_ok(&self) -> bool {
        self.complete
            && self.problems.is_empty()
            && self.verified.as_ref().is_some_and(Verification::is_ok)
    }

    /// The names of the parts present, e.g. `["cassandra", "elasticsearch", "files"]`.
    pub fn present_parts(&self) -> Vec<&str> {
        self.parts
            .iter()
            .filter(|p| p.present)
            .map(|p| p.part.as_str())
            .collect()
    }

    /// Every file of the set, in the order to remove them: the manifest first
    /// (so a half-removed set is never taken for complete), then the archives
    /// and leftovers, the `.sha256` sidecars, the `.info` marker. Listed
    /// whether or not they exist.
    pub fn files_in_removal_order(&self) -> Vec<PathBuf> {
        let mut ordered: Vec<PathBuf> = Vec::new();
        let mut push = |path: &Path| {
            if !ordered.iter().any(|p| p == path) {
                ordered.push(path.to_path_buf());
            }
        };
        if let Some(manifest) = &self.manifest {
            push(manifest);
        }
        for part in self.parts.iter().filter(|p| p.is_archive()) {
            push(&part.path);
        }
        let is = |path: &Path, wanted: fn(&SetFileKind) -> bool| {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(classify_file_name)
                .is_some_and(|(kind, _)| wanted(&kind))
        };
        for path in &self.other_files {
            if is(path, |k| matches!(k, SetFileKind::Partial(_))) {
                push(path);
            }
        }
        for part in self.parts.iter().filter(|p| p.is_archive()) {
            push(&sidecar_path(&part.path));
        }
        for path in &self.other_files {
            if is(path, |k| matches!(k, SetFileKind::Sidecar(_))) {
                push(path);
            }
        }
        for part in self.parts.iter().filter(|p| !p.is_archive()) {
            push(&part.path);
        }
        ordered
    }

    /// The files retention removes, in removal order: the manifest, then
    /// only what it names (archives, their `.partial` leftovers and `.sha256`
    /// sidecars, the marker). Files found by name alone (a hand copy with a
    /// set-like name in another folder) are never among them.
    pub fn listed_files_in_removal_order(&self) -> Vec<PathBuf> {
        let mut ordered: Vec<PathBuf> = Vec::new();
        if let Some(manifest) = &self.manifest {
            ordered.push(manifest.clone());
        }
        let archives: Vec<&SetPart> = self
            .parts
            .iter()
            .filter(|p| p.listed && p.is_archive())
            .collect();
        ordered.extend(archives.iter().map(|p| p.path.clone()));
        ordered.extend(
            archives
                .iter()
                .map(|p| with_suffix(&p.path, PARTIAL_SUFFIX)),
        );
        ordered.extend(archives.iter().map(|p| sidecar_path(&p.path)));
        ordered.extend(
            archives
                .iter()
                .map(|p| with_suffix(&sidecar_path(&p.path), PARTIAL_SUFFIX)),
        );
        ordered.extend(
            self.parts
                .iter()
                .filter(|p| p.listed && !p.is_archive())
                .map(|p| p.path.clone()),
        );
        ordered
    }
}

/// A manifest's `created` time (`%Y-%m-%dT%H:%M:%S%z`, or RFC 3339).
pub fn parse_created(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_str(text, MANIFEST_TIME_FORMAT)
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(text))
        .ok()
}

/// Why the catalogue could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// A folder to search cannot be listed.
    #[error("cannot list {what} {path}")]
    Folder {
        /// `manifest folder` or `archive folder`.
        what: &'static str,
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Every backup set found, oldest first.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Catalogue {
    /// The sets, by stamp, oldest first.
    pub sets: Vec<BackupSet>,
    /// The folders searched.
    pub folders: Vec<PathBuf>,
    /// Archive folders that do not exist, and folders that a manifest names
    /// but that cannot be listed (an unmounted share).
    pub warnings: Vec<String>,
}

/// The set files found so far, by stamp, and the folders listed (each once,
/// however it is spelled).
#[derive(Default)]
struct SetFiles {
    found: BTreeMap<String, Vec<(SetFileKind, PathBuf)>>,
    folders: Vec<PathBuf>,
    listed: BTreeSet<PathBuf>,
}

impl SetFiles {
    /// Adds the set files in `dir` (nothing when it was listed already).
    fn list(&mut self, dir: &Path) -> Result<(), std::io::Error> {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !self.listed.insert(key) {
            return Ok(());
        }
        self.folders.push(dir.to_path_buf());
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Some((kind, stamp)) = classify_file_name(&name) {
                self.found
                    .entry(stamp)
                    .or_default()
                    .push((kind, entry.path()));
            }
        }
        Ok(())
    }

    /// The manifests found in `manifest_dir` (not those beside the
    /// archives), read, by stamp.
    fn read_manifests(&self, manifest_dir: &Path) -> BTreeMap<String, ManifestRead> {
        let mut manifests = BTreeMap::new();
        for (stamp, files) in &self.found {
            for (kind, path) in files {
                if *kind == SetFileKind::Manifest && path.parent() == Some(manifest_dir) {
                    manifests.insert(stamp.clone(), read_manifest(path));
                }
            }
        }
        manifests
    }
}

impl Catalogue {
    /// Finds the sets: the manifests in `manifest_dir`, and the set files in
    /// `manifest_dir`, in each of `archive_dirs`, and in every folder a
    /// manifest names. A folder that cannot be listed is an error, except a
    /// missing archive folder and one only named by a manifest: warnings.
    pub fn scan(
        manifest_dir: &Path,
        archive_dirs: &[PathBuf],
    ) -> Result<Catalogue, CatalogueError> {
        let mut listing = SetFiles::default();
        listing
            .list(manifest_dir)
            .map_err(|source| CatalogueError::Folder {
                what: "manifest folder",
                path: manifest_dir.to_path_buf(),
                source,
            })?;
        // A missing archive folder is a warning: a site using one storage
        // mode has no folder for the other.
        let mut warnings = Vec::new();
        for dir in archive_dirs {
            match listing.list(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    warnings.push(format!("archive folder {} does not exist", dir.display()));
                }
                Err(source) => {
                    return Err(CatalogueError::Folder {
                        what: "archive folder",
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }

        // Read the manifests, then list the folders they name.
        let mut manifests = listing.read_manifests(manifest_dir);
        let named: BTreeSet<PathBuf> = manifests
            .values()
            .filter_map(|m| m.content.as_ref())
            .flat_map(|m| m.named_paths())
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        for dir in named {
            if let Err(error) = listing.list(&dir) {
                warnings.push(format!(
                    "cannot list archive folder {} (named by a manifest): {error}",
                    dir.display()
                ));
            }
        }

        let now = Local::now();
        let mut sets = Vec::new();
        for (stamp, files) in listing.found {
            let manifest = manifests.remove(&stamp);
            sets.push(build_set(&stamp, manifest, &files, now));
        }
        Ok(Catalogue {
            sets,
            folders: listing.folders,
            warnings,
        })
    }

    /// The set with this stamp.
    pub fn find(&self, stamp: &str) -> Option<&BackupSet> {
        self.sets.iter().find(|s| s.stamp == stamp)
    }
}

struct ManifestRead {
    path: PathBuf,
    bytes: u64,
    content: Option<Manifest>,
    problem: Option<String>,
    /// Why the Elasticsearch URL it records is not used, if it is not.
    untrusted: Option<String>,
}

/// Why a manifest is not trusted to say where to send credentials: a file
/// another user owns or others can write, or in a folder others can write
/// (without the sticky bit), could point `list` and `verify` at any host
/// with the Elasticsearch password. `None` when trusted.
fn untrusted_reason(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let file = std::fs::symlink_metadata(path).ok()?;
    if file.uid() != me && file.uid() != 0 {
        return Some(format!(
            "{} is owned by uid {}, not by this user or root",
            path.display(),
            file.uid()
        ));
    }
    if file.mode() & 0o022 != 0 {
        return Some(format!("{} is writable by group or others", path.display()));
    }
    let folder = path.parent()?;
    let dir = std::fs::metadata(folder).ok()?;
    if dir.mode() & 0o002 != 0 && dir.mode() & 0o1000 == 0 {
        return Some(format!("{} is writable by others", folder.display()));
    }
    None
}

fn read_manifest(path: &Path) -> ManifestRead {
    let bytes = std::fs::symlink_metadata(path)
        .map(|m| m.len())
        .unwrap_or(0);
    let (content, problem) =
        match crate::runtime::regular_file::read_regular_text(path, MANIFEST_MAX_BYTES) {
            Ok(text) => match Manifest::parse(&text) {
                Ok(view) => (Some(view), None),
                Err(e) => (
                    None,
                    Some(format!(
                        "manifest {} is not a valid manifest: {e}",
                        path.display()
                    )),
                ),
            },
            Err(e) => (
                None,
                Some(format!("cannot read manifest {}: {e}", path.display())),
            ),
        };
    ManifestRead {
        path: path.to_path_buf(),
        bytes,
        content,
        problem,
        untrusted: untrusted_reason(path),
    }
}

/// True when `a` and `b` name the same file (through symlinks, `..` and
/// relative paths alike), or are the same path.
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

fn file_size(path: &Path) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

/// The file name of `path`, when it names a file of the set `stamp`.
fn belongs_to(path: &Path, stamp: &str) -> Option<SetFileKind> {
    let name = path.file_name()?.to_str()?;
    let (kind, found) = classify_file_name(name)?;
    (found == stamp).then_some(kind)
}

/// What is wrong with the names a parsed manifest gives, one line each; empty
/// when every name has the exact shape runbook writes for set `stamp`.
fn manifest_damage(view: &Manifest, stamp: &str, path: &Path) -> Vec<String> {
    let mut damage = Vec::new();
    let file = path.display();
    match &view.stamp {
        Some(recorded) if recorded == stamp => {}
        Some(recorded) => damage.push(format!(
            "manifest {file} records stamp `{recorded}`, not {stamp} as its file name says"
        )),
        None => damage.push(format!("manifest {file} records no stamp")),
    }
    for archive in &view.archives {
        if let Err(e) = check_named_path(&archive.path, stamp, |k| {
            matches!(k, SetFileKind::Archive(_))
        }) {
            damage.push(format!("manifest {file} names archive {e}"));
        }
    }
    if let Some(es) = &view.elasticsearch {
        if let Some(marker) = &es.marker
            && let Err(e) = check_named_path(marker, stamp, |k| *k == SetFileKind::Marker)
        {
            damage.push(format!("manifest {file} names marker {e}"));
        }
        let expected = format!("{ELASTICSEARCH_PART}_{stamp}");
        if let Some(name) = &es.snapshot
            && *name != expected
        {
            damage.push(format!(
                "manifest {file} names snapshot `{name}`, not `{expected}`"
            ));
        }
        if let Some(repository) = &es.repository
            && !is_plain_name(repository)
        {
            damage.push(format!(
                "manifest {file} names repository `{repository}`, which is not a plain name"
            ));
        }
        // The restore plan puts them in a DELETE and a restore: `*` would
        // delete every index.
        for index in &es.indices {
            if !is_plain_name(index.strip_prefix('.').unwrap_or(index)) {
                damage.push(format!(
                    "manifest {file} names index `{index}`, which is not a plain name"
                ));
            }
        }
    }
    if let Some(keyspace) = view.cassandra.as_ref().and_then(|c| c.keyspace.as_ref())
        && !is_plain_name(keyspace)
    {
        damage.push(format!(
            "manifest {file} names keyspace `{keyspace}`, which is not a plain name"
        ));
    }
    if let Some(origin) = &view.origin
        && !origin.manifest_path.is_absolute()
    {
        damage.push(format!(
            "manifest {file} records manifest folder `{}`, which is not absolute",
            origin.manifest_path.display()
        ));
    }
    damage
}

/// Everything known of one set: what its manifest says (when there is one and
/// it is not damaged), the files found under its stamp that the manifest does
/// not list, the sidecars of its archives, and the totals.
fn build_set(
    stamp: &str,
    manifest: Option<ManifestRead>,
    files: &[(SetFileKind, PathBuf)],
    now: chrono::DateTime<Local>,
) -> BackupSet {
    let mut set = empty_set(stamp, now);
    match manifest {
        None => set.problems.push(
            "no runbook manifest: made by another tool (TheHive's own scripts, a copy by hand) \
             or by a run that did not finish"
                .to_string(),
        ),
        Some(read) => add_manifest(&mut set, read, stamp),
    }
    add_unlisted_files(&mut set, files, stamp);
    add_archive_neighbours(&mut set);
    set.bytes += set.parts.iter().map(|p| p.bytes).sum::<u64>();
    set.bytes += set
        .other_files
        .iter()
        .filter_map(|p| file_size(p))
        .sum::<u64>();
    set.parts
        .sort_by(|a, b| a.part.cmp(&b.part).then(a.path.cmp(&b.path)));
    set
}

/// A set known by its stamp alone: foreign, incomplete, nothing in it yet.
fn empty_set(stamp: &str, now: chrono::DateTime<Local>) -> BackupSet {
    let time = parse_stamp(stamp).and_then(|t| Local.from_local_datetime(&t).earliest());
    BackupSet {
        stamp: stamp.to_string(),
        time: time.map(|t| t.to_rfc3339()),
        created: None,
        origin: Origin::Foreign,
        written_by: None,
        complete: false,
        manifest: None,
        verified: None,
        parts: Vec::new(),
        other_files: Vec::new(),
        bytes: 0,
        age_seconds: time.map(|t| (now - t).num_seconds().max(0) as u64),
        snapshot: None,
        snapshot_state: None,
        problems: Vec::new(),
        warnings: Vec::new(),
    }
}

/// What the set's manifest says. Nothing a damaged (or unreadable) manifest
/// names is used: not its paths, not its snapshot; the files found under the
/// stamp are still shown.
fn add_manifest(set: &mut BackupSet, read: ManifestRead, stamp: &str) {
    set.manifest = Some(read.path.clone());
    set.bytes += read.bytes;
    if let Some(problem) = read.problem {
        set.problems.push(problem);
    }
    let Some(view) = read.content else {
        set.origin = Origin::Damaged;
        return;
    };
    let damage = manifest_damage(&view, stamp, &read.path);
    if !damage.is_empty() {
        set.origin = Origin::Damaged;
        set.problems.extend(damage);
        return;
    }
    set.created = view.created.clone();
    match &view.origin {
        Some(origin) => {
            set.origin = Origin::Runbook;
            set.written_by = Some(origin.clone());
        }
        None => set.problems.push(format!(
            "manifest {} records no `origin` (written by another tool or an older runbook)",
            read.path.display()
        )),
    }
    set.complete = view.complete.unwrap_or(false);
    if !set.complete {
        set.problems.push(format!(
            "manifest {} does not say `complete: true`",
            read.path.display()
        ));
    }
    set.verified = view.verified.clone();
    set.warnings = view.warnings.clone();
    add_listed_archives(set, &view, stamp);
    add_listed_snapshot(set, &view, read.untrusted);
}

/// The archives the manifest lists, each checked against the size it records.
fn add_listed_archives(set: &mut BackupSet, view: &Manifest, stamp: &str) {
    for archive in &view.archives {
        let size = file_size(&archive.path);
        match (size, archive.bytes) {
            (None, _) => set
                .problems
                .push(format!("archive {} is missing", archive.path.display())),
            (Some(now), Some(then)) if now != then => set.problems.push(format!(
                "archive {} is {now} bytes, the manifest says {then}",
                archive.path.display()
            )),
            _ => {}
        }
        let part = if archive.part.is_empty() {
            match belongs_to(&archive.path, stamp) {
                Some(SetFileKind::Archive(part)) => part,
                _ => "archive".to_string(),
            }
        } else {
            archive.part.clone()
        };
        set.parts.push(SetPart {
            expected_bytes: archive.bytes,
            sha256: archive.sha256.clone(),
            ..SetPart::on_disk(part, &archive.path, size, true)
        });
    }
}

/// The Elasticsearch marker and snapshot the manifest names. The URL it
/// records is used only when the manifest is trusted (`untrusted` is `None`).
fn add_listed_snapshot(set: &mut BackupSet, view: &Manifest, untrusted: Option<String>) {
    let Some(es) = &view.elasticsearch else {
        return;
    };
    if let Some(marker) = &es.marker {
        let size = file_size(marker);
        if size.is_none() {
            set.problems
                .push(format!("marker {} is missing", marker.display()));
        }
        set.parts.push(SetPart::on_disk(
            ELASTICSEARCH_PART.to_string(),
            marker,
            size,
            true,
        ));
    }
    if let Some(name) = &es.snapshot {
        let config = view.config.clone().unwrap_or_default();
        let trusted = untrusted.is_none();
        set.snapshot = Some(SnapshotRef {
            repository: es.repository.clone(),
            name: name.clone(),
            listed: true,
            url: config.elasticsearch_url.filter(|_| trusted),
            user: config.elasticsearch_user,
            untrusted,
        });
    }
}

/// Files found in the folders under the set's stamp that the manifest does
/// not list (a copy, or a folder moved): shown with the set, but the set does
/// not rely on them and retention never removes them (only what a runbook
/// manifest names goes).
fn add_unlisted_files(set: &mut BackupSet, files: &[(SetFileKind, PathBuf)], stamp: &str) {
    for (kind, path) in files {
        let known = set.parts.iter().any(|p| same_file(&p.path, path))
            || set.manifest.as_ref().is_some_and(|m| same_file(m, path))
            || set.other_files.iter().any(|o| same_file(o, path));
        if known {
            continue;
        }
        match kind {
            SetFileKind::Manifest => {}
            SetFileKind::Archive(part) => {
                set.parts
                    .push(SetPart::on_disk(part.clone(), path, file_size(path), false));
            }
            SetFileKind::Marker => {
                if set.snapshot.is_none() {
                    set.snapshot = Some(snapshot_from_marker(path, stamp));
                }
                set.parts.push(SetPart::on_disk(
                    ELASTICSEARCH_PART.to_string(),
                    path,
                    file_size(path),
                    false,
                ));
            }
            SetFileKind::Sidecar(_) | SetFileKind::Partial(_) => set.other_files.push(path.clone()),
        }
    }
}

/// The sidecars and partial files of the set's archives (they may live
/// outside the folders searched).
fn add_archive_neighbours(set: &mut BackupSet) {
    for part in set.parts.iter().filter(|p| p.is_archive()) {
        let sidecar = sidecar_path(&part.path);
        if !set.other_files.contains(&sidecar) && file_size(&sidecar).is_some() {
            set.other_files.push(sidecar);
        }
        let partial = with_suffix(&part.path, PARTIAL_SUFFIX);
        if !set.other_files.contains(&partial) && file_size(&partial).is_some() {
            set.other_files.push(partial);
        }
    }
}

/// The snapshot a marker names: the marker's JSON (what `es_snapshot`
/// returned) when readable, else the name the restore procedure uses, taken
/// from the file name.
fn snapshot_from_marker(marker: &Path, stamp: &str) -> SnapshotRef {
    #[derive(Deserialize)]
    struct Marker {
        repository: Option<String>,
        snapshot: Option<String>,
    }
    let recorded = crate::runtime::regular_file::read_regular_text(marker, MANIFEST_MAX_BYTES)
        .ok()
        .and_then(|text| serde_json::from_str::<Marker>(&text).ok());
    let name = format!("{ELASTICSEARCH_PART}_{stamp}");
    match recorded {
        Some(Marker {
            repository,
            snapshot: Some(snapshot),
        }) if snapshot == name => SnapshotRef {
            repository: repository.filter(|r| is_plain_name(r)),
            name,
            listed: false,
            url: None,
            user: None,
            untrusted: None,
        },
        _ => SnapshotRef {
            repository: None,
            name,
            listed: false,
            url: None,
            user: None,
            untrusted: None,
        },
    }
}

/// A size for people (the one wording the workspace uses, re-exported for
/// the set listings).
pub use crate::runtime::wording::human_bytes;

/// An age for people, two units at most: `45s`, `3m 20s`, `5h 2m`, `12d 3h`.
pub fn human_age(seconds: u64) -> String {
    let (days, hours, minutes, secs) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
        seconds % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, _) => format!("{minutes}m {secs}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: &str = "20261126_01h15m00s";

    #[test]
    fn removal_order_puts_the_manifest_first_and_the_marker_last() {
        let dir = Path::new("/b");
        let set = BackupSet {
            stamp: STAMP.into(),
            time: None,
            created: None,
            origin: Origin::Runbook,
            written_by: None,
            complete: true,
            manifest: Some(dir.join(format!("backup_{STAMP}.json"))),
            verified: None,
            parts: vec![
                SetPart {
                    part: "cassandra".into(),
                    path: dir.join(format!("cassandra_{STAMP}.tar")),
                    present: true,
                    bytes: 1,
                    expected_bytes: None,
                    sha256: None,
                    listed: true,
                },
                SetPart {
                    part: "elasticsearch".into(),
                    path: dir.join(format!("elasticsearch_{STAMP}.info")),
                    present: true,
                    bytes: 1,
                    expected_bytes: None,
                    sha256: None,
                    listed: true,
                },
            ],
            other_files: vec![dir.join(format!("cassandra_{STAMP}.tar.partial"))],
            bytes: 2,
            age_seconds: None,
            snapshot: None,
            snapshot_state: None,
            problems: vec![],
            warnings: vec![],
        };
        let names: Vec<String> = set
            .files_in_removal_order()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                format!("backup_{STAMP}.json"),
                format!("cassandra_{STAMP}.tar"),
                format!("cassandra_{STAMP}.tar.partial"),
                format!("cassandra_{STAMP}.tar.sha256"),
                format!("elasticsearch_{STAMP}.info"),
            ]
        );
    }

    #[test]
    fn names_from_manifests_must_have_the_shape_runbook_writes() {
        for good in [
            "thehive_repository",
            "elasticsearch_20261126_01h15m00s",
            "a-b.c",
        ] {
            assert!(is_plain_name(good), "{good}");
        }
        for bad in [
            "", "*", "a,b", "_all", "a/b", "..", "a..b", ".x", "-x", "a b", "a%2Fb",
        ] {
            assert!(!is_plain_name(bad), "{bad}");
        }
        let archive = |k: &SetFileKind| matches!(k, SetFileKind::Archive(_));
        let ok = format!("/b/cassandra/cassandra_{STAMP}.tar");
        assert!(check_named_path(Path::new(&ok), STAMP, archive).is_ok());
        for bad in [
            format!("cassandra/cassandra_{STAMP}.tar"),
            format!("/b/../etc/cassandra_{STAMP}.tar"),
            "/etc/passwd".to_string(),
            "/b/cassandra_20200101_00h00m00s.tar".to_string(),
            format!("/b/elasticsearch_{STAMP}.info"),
        ] {
            assert!(
                check_named_path(Path::new(&bad), STAMP, archive).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn sizes_and_ages_for_people() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
        assert_eq!(human_age(45), "45s");
        assert_eq!(human_age(3 * 3600 + 5 * 60 + 9), "3h 5m");
        assert_eq!(human_age(2 * 86_400 + 3600), "2d 1h");
    }

    #[test]
    fn scan_finds_complete_and_incomplete_sets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let complete = "20261124_01h00m00s";
        let archive = root.join(format!("cassandra_{complete}.tar"));
        std::fs::write(&archive, b"0123456789").unwrap();
        std::fs::write(sidecar_path(&archive), b"x").unwrap();
        let marker = root.join(format!("elasticsearch_{complete}.info"));
        std::fs::write(&marker, b"{}").unwrap();
        let manifest = serde_json::json!({
            "format": 1, "stamp": complete, "complete": true,
            "origin": {"tool": "runbook", "workflow": "w", "manifest_path": root},
            "verified": {"time": "2026-11-24T01:10:00+0000", "result": "ok"},
            "archives": [{"part": "cassandra", "path": archive, "bytes": 10, "sha256": "ab"}],
            "elasticsearch": {"repository": "r", "snapshot": format!("elasticsearch_{complete}"), "marker": marker},
        });
        std::fs::write(
            root.join(format!("backup_{complete}.json")),
            manifest.to_string(),
        )
        .unwrap();
        std::fs::write(root.join(format!("files_{STAMP}.tar")), b"abc").unwrap();

        let catalogue = Catalogue::scan(root, &[]).unwrap();
        assert_eq!(catalogue.sets.len(), 2);
        let first = &catalogue.sets[0];
        assert_eq!(first.stamp, complete);
        assert!(first.complete && first.is_verified_ok(), "{first:?}");
        assert_eq!(first.present_parts(), ["cassandra", "elasticsearch"]);
        assert_eq!(
            first.snapshot.as_ref().unwrap().repository.as_deref(),
            Some("r")
        );
        let second = &catalogue.sets[1];
        assert!(!second.complete && second.manifest.is_none());
        assert_eq!(second.present_parts(), ["files"]);
        assert_eq!(second.bytes, 3);

        // A truncated archive is a problem, and the set no longer counts as verified.
        std::fs::write(&archive, b"01234").unwrap();
        let catalogue = Catalogue::scan(root, &[]).unwrap();
        assert!(!catalogue.sets[0].is_verified_ok());
        assert!(catalogue.sets[0].problems[0].contains("is 5 bytes, the manifest says 10"));

        // A missing archive folder (another storage mode's) is only a warning;
        // a missing manifest folder is an error.
        let catalogue = Catalogue::scan(root, &[root.join("minio")]).unwrap();
        assert_eq!(catalogue.sets.len(), 2);
        assert!(
            catalogue.warnings[0].contains("minio does not exist"),
            "{:?}",
            catalogue.warnings
        );
        assert!(Catalogue::scan(&root.join("nowhere"), &[]).is_err());
    }
}
