//! A file's pages in the kernel's page cache: dropped, so that reading the
//! file again reads the device (`verify_archive`'s `read_from: "disk"`), and
//! counted, so that a verification can say whether the drop worked.
//!
//! The kernel drops only clean pages that nothing maps: the file is flushed
//! first (`fdatasync`), and a file system that keeps its data in memory
//! (tmpfs) drops nothing. Hence the count.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

/// Pages of a file mapped at once when counting: the `mincore` vector is one
/// byte per page (256 KiB for a 1 GiB window), whatever the file's size.
const COUNT_WINDOW: u64 = 1 << 30;

/// How much of a file is in the page cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Residency {
    /// Pages in the cache.
    pub resident: u64,
    /// Pages of the file.
    pub total: u64,
}

/// Writes the file's dirty pages to the device and asks the kernel to drop
/// all its pages from the cache (`posix_fadvise(POSIX_FADV_DONTNEED)`).
pub fn drop_cached_pages(file: &File) -> io::Result<()> {
    file.sync_data()?;
    posix_fadvise(file.as_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .map_err(io::Error::from)
}

/// Counts the file's pages that are in the page cache (`mincore` on a
/// read-only mapping, which reads nothing).
pub fn resident_pages(file: &File) -> io::Result<Residency> {
    let len = file.metadata()?.len();
    let page = page_size();
    let mut residency = Residency {
        resident: 0,
        total: len.div_ceil(page),
    };
    let mut offset = 0;
    while offset < len {
        let window = (len - offset).min(COUNT_WINDOW);
        residency.resident += resident_in_window(file, offset, window as usize, page)?;
        offset += window;
    }
    Ok(residency)
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |size| size as u64)
}

/// Resident pages among the `len` bytes at `offset` (a multiple of the page size).
fn resident_in_window(file: &File, offset: u64, len: usize, page: u64) -> io::Result<u64> {
    let offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    // SAFETY: a fresh read-only shared mapping of an open file, never read
    // through (mincore only asks the kernel about it) and unmapped below.
    let address = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset,
        )
    };
    if address == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut flags = vec![0u8; (len as u64).div_ceil(page) as usize];
    // SAFETY: `address` maps `len` bytes; `flags` has one byte per page of them.
    let counted = unsafe { libc::mincore(address, len, flags.as_mut_ptr()) };
    let error = io::Error::last_os_error();
    // SAFETY: the mapping made above, not used after this.
    unsafe { libc::munmap(address, len) };
    if counted != 0 {
        return Err(error);
    }
    Ok(flags.iter().filter(|flag| **flag & 1 != 0).count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A folder on the disk the tests run from: /tmp may be a tmpfs, whose
    /// pages are its storage and are never dropped.
    fn folder_on_disk() -> tempfile::TempDir {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp");
        std::fs::create_dir_all(&base).unwrap();
        tempfile::tempdir_in(base).unwrap()
    }

    #[test]
    fn dropped_pages_are_no_longer_resident_and_reading_brings_them_back() {
        let dir = folder_on_disk();
        let path = dir.path().join("archive.tar");
        let data: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut file = File::create(&path).unwrap();
        file.write_all(&data).unwrap();
        let file = File::open(&path).unwrap();

        // Just written: in the cache (else this test proves nothing).
        let before = resident_pages(&file).unwrap();
        assert_eq!(before.total, (data.len() as u64).div_ceil(page_size()));
        assert!(
            before.resident * 2 > before.total,
            "a file just written should be mostly cached: {before:?}"
        );

        drop_cached_pages(&file).unwrap();
        let after = resident_pages(&file).unwrap();
        assert_eq!(
            after.resident,
            0,
            "pages still cached after the drop: {after:?} (is {} a tmpfs?)",
            dir.path().display()
        );

        // Reading it again reads the device and caches it again.
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == data);
        let reread = resident_pages(&file).unwrap();
        assert!(reread.resident * 2 > reread.total, "{reread:?}");
    }

    #[test]
    fn an_empty_file_has_no_pages() {
        let dir = folder_on_disk();
        let path = dir.path().join("empty");
        File::create(&path).unwrap();
        let file = File::open(&path).unwrap();
        drop_cached_pages(&file).unwrap();
        assert_eq!(resident_pages(&file).unwrap(), Residency::default());
    }
}
