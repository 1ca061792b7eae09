//! A tmpfs mounted for one test (a small or read-only disk), unmounted on
//! drop. Mounting needs root: a test that cannot mount fails saying so.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::stderr;

/// A tmpfs mounted at a folder for one test, unmounted (lazily) on drop.
pub struct TmpfsMount(PathBuf);

impl TmpfsMount {
    /// `mount -t tmpfs -o OPTIONS tmpfs AT` (AT created first).
    pub fn new(at: &Path, options: &str) -> TmpfsMount {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs (it needs root): mount -o {options} {}: {}",
            at.display(),
            stderr(&out)
        );
        TmpfsMount(at.to_path_buf())
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
