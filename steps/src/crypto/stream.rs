//! Streaming a file through a cipher in constant memory, with the SHA-256 of
//! what goes in and of what comes out: the off-site record keeps both, so the
//! encrypted object can be checked without the identity and the plain
//! archive after decryption.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use crate::runtime::blocking_work::{Stop, WorkControl};

/// How much is read at a time (memory use is about this, whatever the file size).
pub const CHUNK: usize = 1024 * 1024;

/// A [`Write`] that counts and hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    sha256: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            sha256: Sha256::new(),
            bytes: 0,
        }
    }

    /// The wrapped writer, the byte count and the SHA-256 (hex).
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.sha256.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha256.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Why a streamed copy stopped.
#[derive(Debug)]
pub enum CopyError {
    /// Reading the source failed (for a decryption: the data is damaged or
    /// truncated, which age reports as a read error).
    Read(io::Error),
    /// Writing the destination failed.
    Write(io::Error),
    /// The run was interrupted or the step timed out.
    Stopped(Stop),
}

/// Copies `from` into `to` in [`CHUNK`]s, checking `control` between
/// chunks: the bytes copied and their SHA-256 (hex).
pub fn copy_hashing(
    from: &mut impl Read,
    to: &mut impl Write,
    control: &WorkControl,
) -> Result<(u64, String), CopyError> {
    let mut buffer = vec![0u8; CHUNK];
    let mut sha256 = Sha256::new();
    let mut bytes = 0u64;
    loop {
        control.check().map_err(CopyError::Stopped)?;
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        sha256.update(&buffer[..n]);
        to.write_all(&buffer[..n]).map_err(CopyError::Write)?;
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(sha256.finalize())))
}
