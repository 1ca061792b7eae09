//! Tar archives: writing (`tar_dir`), checking (`verify_archive`) and
//! unpacking (`extract_archive`), with what they share: compression and
//! hashing I/O ([`io`]), the read-ahead of the next files ([`read_ahead`]), the `.sha256` sidecar ([`sidecar`]) and the archive
//! reader-checker ([`verification`], also the body of `runbook verify`).

pub mod extract;
pub mod io;
pub mod page_cache;
pub mod read_ahead;
pub mod sidecar;
pub mod tar_dir;
pub mod verification;
pub mod verify;
