//! Read-ahead of the small files `tar_dir` is about to archive.
//!
//! `tar_dir` reads its files one after the other. From a cold page cache each
//! file then costs the device's latency twice (its inode, then its data) with
//! nothing else in flight, although the device serves many requests at once:
//! 40,000 attachments of 1-200 KiB archived at 140 MB/s, where the same files
//! read eight at a time come at several times that. So while the archive's
//! own thread copies file N, a scout walks the same tree in the same order and
//! hands the next files (at most [`FILES_AHEAD`] files and [`BYTES_AHEAD`]
//! bytes ahead: constant memory, whatever the tree) to a few threads, which
//! open each one and ask the kernel to read it into the page cache
//! (`posix_fadvise(POSIX_FADV_WILLNEED)`, which starts the reads and returns).
//!
//! The read-ahead only warms the cache: it never reads data into the archive
//! and decides nothing. The archive's thread opens, examines and reads every
//! file itself as before, so what is archived, its order, the change-while-
//! read checks and every message stay exactly as without it; a file the
//! read-ahead cannot open, or that is gone, replaced or changed by the time
//! the archive reaches it, is simply met by the archive's thread as it is then.

use std::collections::VecDeque;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::Scope;

use nix::fcntl::{AtFlags, OFlag, PosixFadviseAdvice, openat, posix_fadvise};
use nix::sys::stat::{Mode, fstatat};

/// Default number of files read ahead of the one being archived (`read_ahead`).
pub const FILES_AHEAD: usize = 64;
/// Most bytes asked for ahead of the file being archived.
pub const BYTES_AHEAD: u64 = 32 << 20;
/// Most bytes asked for of one file: a large file is read ahead by the
/// kernel's own sequential read-ahead once the archive reads it; what costs
/// is the latency of its first pages.
pub const BYTES_PER_FILE: u64 = 4 << 20;
/// Threads opening files and asking for their data. Opening a file whose
/// inode is not cached blocks until it is read: this many inode reads are in
/// flight at once (the data reads `WILLNEED` starts do not block).
pub const THREADS: usize = 8;

/// Called by a read-ahead thread with a file's path once it asked for its
/// data (tests use it to change the file between the read-ahead and the
/// archive's own read).
pub type ReadAheadHook<'a> = &'a (dyn Fn(&Path) + Sync);

/// A file the scout found: its folder (a duplicate of the walk's open
/// folder, so names are resolved as the archive's thread resolves them) and
/// its name there.
pub struct AheadFile {
    /// The open folder holding it.
    pub folder: Arc<OwnedFd>,
    /// Its name in that folder.
    pub name: CString,
    /// Its full path (for the hook only).
    pub path: PathBuf,
}

/// One file of the window: its place in archive order, the file until a
/// thread takes it, and the bytes asked for once done.
struct Slot {
    ordinal: u64,
    file: Option<AheadFile>,
    bytes: u64,
}

#[derive(Default)]
struct Window {
    /// Files offered and not yet reached by the archive, in archive order.
    slots: VecDeque<Slot>,
    /// Regular files the scout has met (its next file's ordinal).
    offered: u64,
    /// Regular files the archive's thread has reached.
    reached: u64,
    stopped: bool,
}

impl Window {
    fn bytes_ahead(&self) -> u64 {
        self.slots.iter().map(|slot| slot.bytes).sum()
    }
}

/// The read-ahead of one archive: the window the scout fills, the archive's
/// thread empties and the threads work through.
pub struct ReadAhead<'h> {
    files_ahead: usize,
    window: Mutex<Window>,
    /// The scout waits on it for room in the window.
    room: Condvar,
    /// The read-ahead threads wait on it for a file to take.
    work: Condvar,
    hook: ReadAheadHook<'h>,
}

impl<'h> ReadAhead<'h> {
    /// A read-ahead of at most `files_ahead` files (0: none).
    pub fn new(files_ahead: usize, hook: ReadAheadHook<'h>) -> ReadAhead<'h> {
        ReadAhead {
            files_ahead,
            window: Mutex::new(Window::default()),
            room: Condvar::new(),
            work: Condvar::new(),
            hook,
        }
    }

    /// Starts the scout (`scout`, given this read-ahead to offer files to)
    /// and the threads in `scope`; does nothing if the read-ahead is off. A
    /// thread that cannot be started leaves fewer (or no) read-ahead: the
    /// archive does not need it.
    ///
    /// The guard returned stops them when dropped, also on a panic of the
    /// archive's thread, so the scope's join never waits for a scout blocked
    /// on a full window.
    pub fn start<'scope, 'env>(
        &'env self,
        scope: &'scope Scope<'scope, 'env>,
        scout: impl FnOnce(&'env ReadAhead<'h>) + Send + 'scope,
    ) -> StopOnDrop<'env, 'h>
    where
        'h: 'env,
    {
        let guard = StopOnDrop(self);
        if self.files_ahead == 0 {
            return guard;
        }
        let spawned = std::thread::Builder::new()
            .name("tar-scout".into())
            .spawn_scoped(scope, move || scout(self));
        if let Err(error) = spawned {
            tracing::debug!("no read-ahead: {error}");
            return guard;
        }
        for _ in 0..THREADS {
            let spawned = std::thread::Builder::new()
                .name("tar-read-ahead".into())
                .spawn_scoped(scope, move || self.work());
            if let Err(error) = spawned {
                tracing::debug!("fewer read-ahead threads: {error}");
                break;
            }
        }
        guard
    }

    /// Stops the scout and the threads (the archive is written or failed).
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.room.notify_all();
        self.work.notify_all();
    }

    /// The scout met the next regular file in archive order (`None`: one it
    /// cannot hand over, e.g. a source given by path). Waits while the window
    /// is full; false once the read-ahead is stopped (the scout ends).
    pub fn offer(&self, file: Option<AheadFile>) -> bool {
        let mut window = self.lock();
        let ordinal = window.offered;
        window.offered += 1;
        loop {
            if window.stopped {
                return false;
            }
            let full =
                window.slots.len() >= self.files_ahead || window.bytes_ahead() >= BYTES_AHEAD;
            if !full {
                break;
            }
            window = wait(&self.room, window);
        }
        // Already reached (the trees the two walks saw differ): nothing to gain.
        if ordinal >= window.reached {
            window.slots.push_back(Slot {
                ordinal,
                file,
                bytes: 0,
            });
            drop(window);
            self.work.notify_one();
        }
        true
    }

    /// The archive's thread reached the next regular file in archive order:
    /// it and those before it leave the window.
    pub fn reach(&self) {
        if self.files_ahead == 0 {
            return;
        }
        let mut window = self.lock();
        window.reached += 1;
        let reached = window.reached;
        while window.slots.front().is_some_and(|s| s.ordinal < reached) {
            window.slots.pop_front();
        }
        drop(window);
        self.room.notify_one();
    }

    /// A read-ahead thread: takes the first file not yet taken, asks for its
    /// data, records the bytes asked for; until stopped.
    fn work(&self) {
        loop {
            let (ordinal, file) = {
                let mut window = self.lock();
                loop {
                    if window.stopped {
                        return;
                    }
                    let next = window.slots.iter_mut().find(|slot| slot.file.is_some());
                    if let Some(slot) = next {
                        break (slot.ordinal, slot.file.take());
                    }
                    window = wait(&self.work, window);
                }
            };
            let Some(file) = file else { continue };
            let bytes = ask_for_data(&file);
            if bytes.is_some() {
                (self.hook)(&file.path);
            }
            let mut window = self.lock();
            if let Some(slot) = window.slots.iter_mut().find(|s| s.ordinal == ordinal) {
                slot.bytes = bytes.unwrap_or(0);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Window> {
        // A panic elsewhere poisons the lock; the window's counters stay sound.
        lock(&self.window)
    }
}

/// Stops a [`ReadAhead`] when dropped.
pub struct StopOnDrop<'a, 'h>(&'a ReadAhead<'h>);

impl Drop for StopOnDrop<'_, '_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Opens `file` as the archive's thread does (never through a symlink, never
/// blocking on a FIFO) and, if it is a regular file, asks the kernel to read
/// its first [`BYTES_PER_FILE`] bytes into the page cache; the bytes asked
/// for, or `None` if it could not be opened or is not a regular file (the
/// archive's thread meets it as it is and says so).
fn ask_for_data(file: &AheadFile) -> Option<u64> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    let fd = openat(
        file.folder.as_fd(),
        file.name.as_c_str(),
        flags,
        Mode::empty(),
    )
    .ok()?;
    let opened = File::from(fd);
    let meta = opened.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let len = meta.len().min(BYTES_PER_FILE);
    if len > 0 {
        posix_fadvise(
            opened.as_fd(),
            0,
            len as libc::off_t,
            PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        )
        .ok()?;
    }
    Some(len)
}

/// A file whose size the pre-scan adds to the total.
pub enum ToSize {
    /// Already known (a source given by path, examined on the walk's thread).
    Known(u64),
    /// To be examined by a pre-scan thread (`fstatat`, not following a symlink).
    In(AheadFile),
}

/// The total size of the files `walk` hands over (on the caller's thread, in
/// archive order), those in folders examined [`THREADS`] at a time: from a
/// cold cache each examination waits for its inode to be read, and the
/// pre-scan (which gives the progress its total) would otherwise wait for
/// them one after the other. At most a few hundred files are queued at once.
/// A file that cannot be examined counts 0: the archive's walk reports it.
pub fn total_size(walk: impl FnOnce(&mut dyn FnMut(ToSize))) -> u64 {
    let total = AtomicU64::new(0);
    let (queue, queued) = std::sync::mpsc::sync_channel::<AheadFile>(256);
    let queued = Mutex::new(queued);
    std::thread::scope(|scope| {
        let mut threads = 0;
        for _ in 0..THREADS {
            let spawned = std::thread::Builder::new()
                .name("tar-prescan".into())
                .spawn_scoped(scope, || {
                    // One file at a time off the queue, until it is closed.
                    while let Ok(file) = lock(&queued).recv() {
                        total.fetch_add(size_of(&file), Ordering::Relaxed);
                    }
                });
            match spawned {
                Ok(_) => threads += 1,
                Err(error) => {
                    tracing::debug!("fewer pre-scan threads: {error}");
                    break;
                }
            }
        }
        walk(&mut |file| {
            let size = match file {
                ToSize::Known(size) => size,
                // Queued unless no thread could be started.
                ToSize::In(file) => match threads {
                    0 => size_of(&file),
                    _ => match queue.send(file) {
                        Ok(()) => 0,
                        Err(unsent) => size_of(&unsent.0),
                    },
                },
            };
            total.fetch_add(size, Ordering::Relaxed);
        });
        // Closing the queue ends the threads once it is empty.
        drop(queue);
    });
    total.into_inner()
}

fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The size of `file` (0 if it cannot be examined), not following a symlink.
fn size_of(file: &AheadFile) -> u64 {
    fstatat(
        file.folder.as_fd(),
        file.name.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_or(0, |stat| stat.st_size.max(0) as u64)
}
