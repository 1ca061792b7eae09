//! The `<archive>.sha256` file next to each archive, in `sha256sum` format
//! (`<hex>  <file name>`), so `sha256sum -c` checks it with no runbook installed.

use std::io;
use std::path::{Path, PathBuf};

use crate::atomic_file::{with_suffix, write_atomic};

/// The suffix of checksum files.
pub const SIDECAR_SUFFIX: &str = ".sha256";

/// `<archive>.sha256`.
pub fn sidecar_path(archive: &Path) -> PathBuf {
    with_suffix(archive, SIDECAR_SUFFIX)
}

/// Writes `<archive>.sha256` atomically, mode 0600. The line names the archive
/// by its file name only, so the pair can be moved together and still check.
pub fn write_sidecar(archive: &Path, sha256: &str) -> io::Result<PathBuf> {
    let name = archive
        .file_name()
        .ok_or_else(|| io::Error::other("archive path has no file name"))?;
    let mut line = format!("{sha256}  ").into_bytes();
    line.extend_from_slice(name.as_encoded_bytes());
    line.push(b'\n');
    let path = sidecar_path(archive);
    write_atomic(&path, &line, 0o600)?;
    Ok(path)
}

/// Why a sidecar could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// Reading it failed.
    #[error("cannot read checksum file {path}: {source}")]
    Read {
        /// The sidecar.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// It holds no `<64 hex>  <name>` line.
    #[error("checksum file {path} holds no sha256sum line")]
    Malformed {
        /// The sidecar.
        path: PathBuf,
    },
}

/// The expected hex SHA-256 from `<archive>.sha256`, `None` when there is no
/// such file. Lines starting with `#` are comments, as for `sha256sum -c`.
pub fn read_sidecar(archive: &Path) -> Result<Option<String>, SidecarError> {
    let path = sidecar_path(archive);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SidecarError::Read { path, source }),
    };
    let text = String::from_utf8_lossy(&text);
    text.lines()
        .map(str::trim_start)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let hex = line.split_whitespace().next()?;
            let hex = hex.strip_prefix('\\').unwrap_or(hex);
            (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| hex.to_ascii_lowercase())
        })
        .map(Some)
        .ok_or(SidecarError::Malformed { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_sha256sum_format() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("files_1.tar");
        assert!(read_sidecar(&archive).unwrap().is_none());
        let hex = "ab".repeat(32);
        let path = write_sidecar(&archive, &hex).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{hex}  files_1.tar\n")
        );
        assert_eq!(read_sidecar(&archive).unwrap(), Some(hex));
    }

    #[test]
    fn malformed_sidecar_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar");
        std::fs::write(sidecar_path(&archive), "not a checksum\n").unwrap();
        let e = read_sidecar(&archive).unwrap_err();
        assert!(e.to_string().contains("a.tar.sha256"), "{e}");
    }
}
