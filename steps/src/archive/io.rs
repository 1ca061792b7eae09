//! Archive bytes in and out at disk speed, with their SHA-256 computed on the
//! way through: compression choice and detection, a file writer that hashes
//! on a second thread, and a file reader that reads and hashes on its own
//! thread.
//!
//! Hashing runs at about 1-2 GB/s on one core; doing it on a second thread
//! overlaps it with reading and writing (or parsing the archive) instead of
//! adding to it. Data moves between the threads in [`CHUNK_SIZE`] buffers over
//! a bounded channel, and the buffers are recycled, so memory stays at a few
//! MiB whatever the archive size.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Size of the buffers passed between threads, and of each read and write
/// call. Measured on the 2-core benchmark machines (1 MiB of L2 per core):
/// 256 KiB buffers made `tar_dir` 1.5-2x faster than 512 KiB or 1 MiB ones,
/// whose kernel copies into and out of the page cache cost 2-3x more system
/// time; 128 KiB was slower again (more calls). See docs/performance.md.
pub const CHUNK_SIZE: usize = 256 << 10;
/// Buffers in flight between the two threads: deep enough that neither thread
/// waits on the other at every chunk when the machine is busy (4 MiB).
const CHANNEL_DEPTH: usize = 16;

/// How an archive is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain `.tar`.
    #[default]
    None,
    /// zstd (`.tar.zst`), with a content checksum in each frame.
    Zstd,
    /// gzip (`.tar.gz`).
    Gzip,
}

impl Compression {
    /// Recognizes the compression from the first bytes of a file (anything
    /// that is neither zstd nor gzip is read as a plain tar).
    pub fn from_magic(first_bytes: &[u8]) -> Compression {
        if first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if first_bytes.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// Reads the first bytes of `file` and rewinds it.
    pub fn detect(file: &mut File) -> io::Result<Compression> {
        use std::io::Seek;
        let mut magic = [0u8; 4];
        let mut filled = 0;
        while filled < magic.len() {
            match file.read(&mut magic[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        file.seek(io::SeekFrom::Start(0))?;
        Ok(Compression::from_magic(&magic[..filled]))
    }

    /// The default level: zstd 3, gzip 6.
    pub fn default_level(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Zstd => 3,
            Compression::Gzip => 6,
        }
    }

    /// The name scripts use.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }
}

/// What [`HashingFileWriter::finish`] hands back.
#[derive(Debug)]
pub struct WrittenFile {
    /// The file, flushed to the kernel (not yet fsynced).
    pub file: File,
    /// Lower-case hex SHA-256 of every byte written.
    pub sha256: String,
    /// Bytes written.
    pub bytes: u64,
}

struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// A [`Write`] into a file whose bytes are hashed by a background thread.
///
/// The calling thread reads sources straight into a [`CHUNK_SIZE`] buffer
/// ([`Self::fill_from`]) and writes the full buffer to the file itself while
/// it is still in this core's cache, then hands it to the hashing thread, which
/// gives it back for reuse. Reading plus writing and hashing cost about the
/// same, so the two cores share the work evenly. Call
/// [`HashingFileWriter::finish`] at the end.
pub struct HashingFileWriter {
    file: File,
    buf: Vec<u8>,
    len: usize,
    bytes: u64,
    to_hasher: Option<SyncSender<Chunk>>,
    recycled: Receiver<Vec<u8>>,
    hasher: Option<JoinHandle<String>>,
}

impl HashingFileWriter {
    /// Starts the hashing thread for writes to `file`.
    pub fn new(file: File) -> HashingFileWriter {
        let (to_hasher, chunks) = sync_channel::<Chunk>(CHANNEL_DEPTH);
        let (recycle, recycled) = sync_channel::<Vec<u8>>(CHANNEL_DEPTH + 1);
        let hasher = std::thread::Builder::new()
            .name("archive-hasher".into())
            .spawn(move || hash_chunks(chunks, recycle))
            .expect("spawning the archive hashing thread");
        HashingFileWriter {
            file,
            buf: vec![0; CHUNK_SIZE],
            len: 0,
            bytes: 0,
            to_hasher: Some(to_hasher),
            recycled,
            hasher: Some(hasher),
        }
    }

    /// Reads once from `source` straight into the write buffer, at most `max`
    /// bytes; returns the count (0 at end of file). Saves a copy on the hot path.
    pub fn fill_from(&mut self, source: &mut impl Read, max: u64) -> io::Result<usize> {
        if self.len == CHUNK_SIZE {
            self.write_chunk()?;
        }
        let room = (CHUNK_SIZE - self.len).min(usize::try_from(max).unwrap_or(usize::MAX));
        let n = source.read(&mut self.buf[self.len..self.len + room])?;
        self.len += n;
        Ok(n)
    }

    /// The last `n` bytes put in the buffer (what [`Self::fill_from`] just read).
    pub fn last_filled(&self, n: usize) -> &[u8] {
        &self.buf[self.len - n..self.len]
    }

    /// Writes the buffer to the file, then passes it to the hashing thread.
    fn write_chunk(&mut self) -> io::Result<()> {
        if self.len == 0 {
            return Ok(());
        }
        self.file.write_all(&self.buf[..self.len])?;
        self.bytes += self.len as u64;
        let next = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| vec![0; CHUNK_SIZE]);
        let buf = std::mem::replace(&mut self.buf, next);
        let chunk = Chunk { buf, len: self.len };
        self.len = 0;
        let sender = self.to_hasher.as_ref().expect("writer used after finish");
        sender
            .send(chunk)
            .map_err(|_| io::Error::other("archive hashing thread stopped unexpectedly"))
    }

    /// Writes the last buffer, waits for the hash, returns the file and its hash.
    pub fn finish(mut self) -> io::Result<WrittenFile> {
        self.write_chunk()?;
        self.to_hasher = None;
        let sha256 = self
            .hasher
            .take()
            .expect("finish called once")
            .join()
            .map_err(|_| io::Error::other("archive hashing thread panicked"))?;
        let file = self.file.try_clone()?;
        Ok(WrittenFile {
            file,
            sha256,
            bytes: self.bytes,
        })
    }
}

impl Write for HashingFileWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.len == CHUNK_SIZE {
            self.write_chunk()?;
        }
        let n = data.len().min(CHUNK_SIZE - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&data[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Chunks go out when full or at `finish`; nothing to force here.
        Ok(())
    }
}

impl Drop for HashingFileWriter {
    fn drop(&mut self) {
        // Closing the channel ends the thread.
        self.to_hasher = None;
        if let Some(hasher) = self.hasher.take() {
            let _ = hasher.join();
        }
    }
}

fn hash_chunks(chunks: Receiver<Chunk>, recycle: SyncSender<Vec<u8>>) -> String {
    let mut hasher = Sha256::new();
    for chunk in chunks {
        hasher.update(&chunk.buf[..chunk.len]);
        let _ = recycle.try_send(chunk.buf);
    }
    hex::encode(hasher.finalize())
}

/// An archive being written: the tar stream, compressed or not, into a
/// [`HashingFileWriter`].
pub enum ArchiveSink {
    /// Plain tar.
    Plain(HashingFileWriter),
    /// zstd-compressed tar.
    Zstd(zstd::stream::write::Encoder<'static, HashingFileWriter>),
    /// gzip-compressed tar.
    Gzip(flate2::write::GzEncoder<HashingFileWriter>),
}

impl ArchiveSink {
    /// Starts writing `file` with `compression` at `level` (0: the default level).
    pub fn new(file: File, compression: Compression, level: i32) -> io::Result<ArchiveSink> {
        let writer = HashingFileWriter::new(file);
        let level = if level == 0 {
            compression.default_level()
        } else {
            level
        };
        Ok(match compression {
            Compression::None => ArchiveSink::Plain(writer),
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(writer, level)?;
                encoder.include_checksum(true)?;
                ArchiveSink::Zstd(encoder)
            }
            Compression::Gzip => ArchiveSink::Gzip(flate2::write::GzEncoder::new(
                writer,
                flate2::Compression::new(level.clamp(0, 9) as u32),
            )),
        })
    }

    /// Copies up to `len` bytes of `source` into the archive; returns how many
    /// it got (less only at end of file). `on_bytes` sees each piece copied.
    /// `scratch` is a reusable buffer for the compressed paths; the plain path
    /// reads straight into the write buffer.
    pub fn copy_from(
        &mut self,
        source: &mut impl Read,
        len: u64,
        scratch: &mut Vec<u8>,
        mut on_bytes: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let mut copied = 0u64;
        while copied < len {
            let n = match self {
                ArchiveSink::Plain(writer) => {
                    let n = writer.fill_from(source, len - copied)?;
                    on_bytes(writer.last_filled(n))?;
                    n
                }
                _ => {
                    if scratch.len() < CHUNK_SIZE {
                        scratch.resize(CHUNK_SIZE, 0);
                    }
                    let want = (len - copied).min(CHUNK_SIZE as u64) as usize;
                    let n = source.read(&mut scratch[..want])?;
                    self.write_all(&scratch[..n])?;
                    on_bytes(&scratch[..n])?;
                    n
                }
            };
            if n == 0 {
                break;
            }
            copied += n as u64;
        }
        Ok(copied)
    }

    /// Ends compression and writing; returns the file and the hash of its bytes.
    pub fn finish(self) -> io::Result<WrittenFile> {
        let writer = match self {
            ArchiveSink::Plain(writer) => writer,
            ArchiveSink::Zstd(encoder) => encoder.finish()?,
            ArchiveSink::Gzip(encoder) => encoder.finish()?,
        };
        writer.finish()
    }
}

impl Write for ArchiveSink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            ArchiveSink::Plain(w) => w.write(data),
            ArchiveSink::Zstd(w) => w.write(data),
            ArchiveSink::Gzip(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ArchiveSink::Plain(w) => w.flush(),
            ArchiveSink::Zstd(w) => w.flush(),
            ArchiveSink::Gzip(w) => w.flush(),
        }
    }
}

/// A [`Read`] over a file whose bytes are read and hashed by a background
/// thread. [`HashingFileReader::finish`] gives the hash of the whole file
/// (it reads whatever the consumer left unread).
pub struct HashingFileReader {
    current: Option<Chunk>,
    pos: usize,
    chunks: Option<Receiver<io::Result<Chunk>>>,
    recycle: SyncSender<Vec<u8>>,
    thread: Option<JoinHandle<(String, u64)>>,
    /// Bytes handed to the consumer so far.
    consumed: u64,
}

impl HashingFileReader {
    /// Starts the reader thread on `file`, from its current position.
    pub fn new(file: File) -> HashingFileReader {
        let (to_reader, chunks) = sync_channel::<io::Result<Chunk>>(CHANNEL_DEPTH);
        let (recycle, recycled) = sync_channel::<Vec<u8>>(CHANNEL_DEPTH + 2);
        let thread = std::thread::Builder::new()
            .name("archive-reader".into())
            .spawn(move || read_and_hash(file, to_reader, recycled))
            .expect("spawning the archive reader thread");
        HashingFileReader {
            current: None,
            pos: 0,
            chunks: Some(chunks),
            recycle,
            thread: Some(thread),
            consumed: 0,
        }
    }

    /// Bytes of the file handed out so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Reads the rest of the file (discarding it) and returns the SHA-256 (hex)
    /// and size of the whole file.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        let mut sink = io::sink();
        io::copy(&mut self, &mut sink)?;
        self.chunks = None;
        let thread = self.thread.take().expect("finish called once");
        thread
            .join()
            .map_err(|_| io::Error::other("archive reader thread panicked"))
    }
}

impl Read for HashingFileReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(chunk) = &self.current {
                if self.pos < chunk.len {
                    let n = out.len().min(chunk.len - self.pos);
                    out[..n].copy_from_slice(&chunk.buf[self.pos..self.pos + n]);
                    self.pos += n;
                    self.consumed += n as u64;
                    return Ok(n);
                }
                let done = self.current.take().expect("checked above");
                let _ = self.recycle.try_send(done.buf);
            }
            let Some(chunks) = &self.chunks else {
                return Ok(0);
            };
            match chunks.recv() {
                Ok(Ok(chunk)) => {
                    self.current = Some(chunk);
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread ended: end of file.
                Err(_) => return Ok(0),
            }
        }
    }
}

impl Drop for HashingFileReader {
    fn drop(&mut self) {
        // Closing the channel makes the thread stop at its next send.
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_and_hash(
    mut file: File,
    to_reader: SyncSender<io::Result<Chunk>>,
    recycled: Receiver<Vec<u8>>,
) -> (String, u64) {
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0; CHUNK_SIZE]);
        // Fill the whole buffer (short reads happen on network filesystems).
        let mut len = 0;
        let mut failed = None;
        while len < CHUNK_SIZE {
            match file.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        hasher.update(&buf[..len]);
        bytes += len as u64;
        if len > 0 && to_reader.send(Ok(Chunk { buf, len })).is_err() {
            break;
        }
        if let Some(e) = failed {
            let _ = to_reader.send(Err(e));
            break;
        }
        if len < CHUNK_SIZE {
            break;
        }
    }
    (hex::encode(hasher.finalize()), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_pick_the_decoder() {
        assert_eq!(
            Compression::from_magic(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::from_magic(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::from_magic(b"ustar"), Compression::None);
        assert_eq!(Compression::from_magic(&[]), Compression::None);
    }

    #[test]
    fn writer_and_reader_hash_what_passes_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        // More than two chunks, not a multiple of the chunk size.
        let data: Vec<u8> = (0..(CHUNK_SIZE * 2 + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut writer = HashingFileWriter::new(File::create(&path).unwrap());
        writer.write_all(&data[..100]).unwrap();
        let mut rest = &data[100..];
        while !rest.is_empty() {
            let n = writer.fill_from(&mut rest, u64::MAX).unwrap();
            assert!(n > 0);
        }
        let written = writer.finish().unwrap();
        let expected = hex::encode(Sha256::digest(&data));
        assert_eq!(written.sha256, expected);
        assert_eq!(written.bytes, data.len() as u64);
        drop(written.file);
        assert_eq!(std::fs::read(&path).unwrap(), data);

        let mut reader = HashingFileReader::new(File::open(&path).unwrap());
        let mut head = vec![0; 1000];
        reader.read_exact(&mut head).unwrap();
        assert_eq!(head, data[..1000]);
        // `finish` hashes the part the consumer never read too.
        assert_eq!(reader.finish().unwrap(), (expected, data.len() as u64));
    }
}
