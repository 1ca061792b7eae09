//! Reading archives back for `runbook verify`: one archive against its
//! `.sha256` sidecar (`runbook verify PATH`), and one archive of a set
//! against what the set's manifest says of it (`runbook verify --set`). The
//! engine asks here rather than the archive reader itself, so it reaches steps
//! only through the registry and this backup-set module.

use std::path::{Path, PathBuf};

use crate::archive::sidecar::{SidecarError, read_sidecar};
use crate::archive::verification::{VerifyArchiveOptions, verify_archive};
use crate::backup::manifest::ManifestArchive;
use crate::runtime::blocking_work::WorkControl;

pub use crate::archive::verification::{VerifyError, VerifyReport};

/// Reads the archive at `path` end to end and compares its SHA-256 with its
/// `.sha256` sidecar when there is one (required with `require_checksum`).
pub fn verify_archive_at(
    path: &Path,
    require_checksum: bool,
    control: &WorkControl,
) -> Result<VerifyReport, VerifyError> {
    let options = VerifyArchiveOptions {
        path: path.to_path_buf(),
        require_checksum,
        ..VerifyArchiveOptions::default()
    };
    verify_archive(&options, control)
}

/// Why an archive of a set does not match its manifest.
#[derive(Debug, thiserror::Error)]
pub enum SetArchiveError {
    /// The archive is unreadable, damaged, or its SHA-256 is not the manifest's.
    #[error(transparent)]
    Archive(#[from] VerifyError),
    /// The archive's size is not the manifest's.
    #[error("{}: {bytes} bytes, the manifest says {expected}", path.display())]
    Size {
        /// The archive.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// The size the manifest records.
        expected: u64,
    },
    /// The archive's `.sha256` sidecar disagrees with the archive.
    #[error("{}: the .sha256 file says {sidecar}, the archive's sha256 is {actual}", path.display())]
    Sidecar {
        /// The archive.
        path: PathBuf,
        /// What the sidecar says.
        sidecar: String,
        /// The archive's SHA-256.
        actual: String,
    },
    /// The sidecar cannot be read.
    #[error(transparent)]
    SidecarUnreadable(#[from] SidecarError),
}

/// Reads one archive of a set end to end: its SHA-256 must be the
/// manifest's (a checksum is required), its size the manifest's when
/// recorded, and its `.sha256` sidecar must agree.
pub fn verify_set_archive(
    archive: &ManifestArchive,
    control: &WorkControl,
) -> Result<VerifyReport, SetArchiveError> {
    let path = &archive.path;
    let options = VerifyArchiveOptions {
        path: path.clone(),
        sha256: archive.sha256.clone(),
        require_checksum: true,
        ..VerifyArchiveOptions::default()
    };
    let report = verify_archive(&options, control)?;
    if let Some(expected) = archive.bytes
        && expected != report.bytes
    {
        return Err(SetArchiveError::Size {
            path: path.clone(),
            bytes: report.bytes,
            expected,
        });
    }
    if let Some(sidecar) = read_sidecar(path)?
        && !sidecar.sha256.eq_ignore_ascii_case(&report.sha256)
    {
        return Err(SetArchiveError::Sidecar {
            path: path.clone(),
            sidecar: sidecar.sha256,
            actual: report.sha256,
        });
    }
    Ok(report)
}
