//! The `<archive>.sha256` file next to each archive, in `sha256sum` format
//! (`<hex>  <file name>`), so `sha256sum -c` checks it with no runbook installed.
//!
//! After that line come comment lines (`sha256sum` ignores lines starting with
//! `#`) with the CRC-32 of each regular file's data, in archive order. A
//! whole-file hash says *that* an archive is damaged; these say *which entry*
//! is, so `verify_archive` can name it.

use std::io;
use std::path::{Path, PathBuf};

use crate::runtime::atomic_file::{with_suffix, write_atomic};

/// The suffix of checksum files.
pub const SIDECAR_SUFFIX: &str = ".sha256";

/// `<archive>.sha256`.
pub fn sidecar_path(archive: &Path) -> PathBuf {
    with_suffix(archive, SIDECAR_SUFFIX)
}

/// Starts the comment lines holding per-file CRC-32s.
const CRC_PREFIX: &str = "# crc32";
/// CRC-32s per comment line.
const CRCS_PER_LINE: usize = 16;

/// What a checksum file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sidecar {
    /// Lower-case hex SHA-256 of the archive.
    pub sha256: String,
    /// CRC-32 of each regular file's data, in archive order (empty for
    /// checksum files written by other tools).
    pub file_crcs: Vec<u32>,
}

/// Writes `<archive>.sha256` atomically, mode 0600. The line names the archive
/// by its file name only, so the pair can be moved together and still check.
pub fn write_sidecar(archive: &Path, sidecar: &Sidecar) -> io::Result<PathBuf> {
    let name = archive
        .file_name()
        .ok_or_else(|| io::Error::other("archive path has no file name"))?;
    let mut text = format!("{}  ", sidecar.sha256).into_bytes();
    text.extend_from_slice(name.as_encoded_bytes());
    text.push(b'\n');
    if !sidecar.file_crcs.is_empty() {
        text.extend_from_slice(b"# runbook: CRC-32 of each file's data, in archive order\n");
        for line in sidecar.file_crcs.chunks(CRCS_PER_LINE) {
            text.extend_from_slice(CRC_PREFIX.as_bytes());
            for crc in line {
                text.extend_from_slice(format!(" {crc:08x}").as_bytes());
            }
            text.push(b'\n');
        }
    }
    let path = sidecar_path(archive);
    write_atomic(&path, &text, 0o600)?;
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

/// What `<archive>.sha256` holds, `None` when there is no such file. Lines
/// starting with `#` are comments, as for `sha256sum -c`, except ours with CRCs.
pub fn read_sidecar(archive: &Path) -> Result<Option<Sidecar>, SidecarError> {
    let path = sidecar_path(archive);
    // A FIFO or device named like a sidecar is refused, never waited on.
    let text = match crate::runtime::regular_file::open_regular(&path).and_then(|mut file| {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).map(|_| bytes)
    }) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SidecarError::Read { path, source }),
    };
    let text = String::from_utf8_lossy(&text);
    let sha256 = text
        .lines()
        .map(str::trim_start)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let hex = line.split_whitespace().next()?;
            let hex = hex.strip_prefix('\\').unwrap_or(hex);
            (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| hex.to_ascii_lowercase())
        })
        .ok_or(SidecarError::Malformed { path })?;
    // CRCs are a help for naming damage, not a requirement: unreadable ones
    // are dropped rather than failing the check.
    let file_crcs: Option<Vec<u32>> = text
        .lines()
        .filter_map(|line| line.strip_prefix(CRC_PREFIX))
        .flat_map(str::split_whitespace)
        .map(|word| u32::from_str_radix(word, 16).ok())
        .collect();
    Ok(Some(Sidecar {
        sha256,
        file_crcs: file_crcs.unwrap_or_default(),
    }))
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
        let sidecar = Sidecar {
            sha256: hex.clone(),
            file_crcs: (0..20).collect(),
        };
        let path = write_sidecar(&archive, &sidecar).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(&format!("{hex}  files_1.tar\n# ")),
            "{text}"
        );
        assert!(
            text.ends_with("\n# crc32 00000010 00000011 00000012 00000013\n"),
            "{text}"
        );
        assert_eq!(read_sidecar(&archive).unwrap(), Some(sidecar));
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
