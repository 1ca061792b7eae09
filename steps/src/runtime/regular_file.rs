//! Opening a file that must be a regular file, without blocking on one that
//! is not.
//!
//! A plain `open` of a FIFO blocks until a writer appears, and reading
//! `/dev/zero` never ends: a FIFO named like a manifest in a shared backup
//! folder would hang `runbook list`, retention and `verify` for good, out of
//! reach of SIGTERM. So the file is opened with `O_NONBLOCK` (which returns
//! at once for a FIFO or a device), checked with `fstat` on the open
//! descriptor (no race with a rename between a check and the open), and
//! refused unless it is a regular file; the flag is then cleared so reads of
//! the regular file behave as usual.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` for reading; an error of kind `InvalidInput` naming what the
/// file is when it is not a regular file (a FIFO, a device, a socket, a folder).
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    // The error names what the file is; callers name the file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_dir() {
            "a folder"
        } else {
            "not a regular file"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {what}, not a regular file: not read"),
        ));
    }
    // SAFETY: fcntl on a descriptor this function owns; no memory is passed.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    if flags >= 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    }
    Ok(file)
}

/// Reads a regular file of at most `limit` bytes as UTF-8 text; a bigger file
/// is an error (a manifest or marker is a few KiB; a huge one is not ours).
pub fn read_regular_text(path: &Path, limit: u64) -> std::io::Result<String> {
    let file = open_regular(path)?;
    let mut text = String::new();
    file.take(limit + 1).read_to_string(&mut text)?;
    if text.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is larger than {limit} bytes: not read"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_and_devices_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("backup_20200101_00h00m00s.json");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let error = read_regular_text(&fifo, 1024).unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error}");
        let error = read_regular_text(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(error.to_string().contains("a device"), "{error}");
        let file = dir.path().join("ok.json");
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(read_regular_text(&file, 1024).unwrap(), "{}");
        std::fs::write(&file, "x".repeat(2000)).unwrap();
        assert!(read_regular_text(&file, 1024).is_err());
    }
}
