//! The checks each fuzz target runs on one input. Kept in a library so the
//! targets stay one line, and so the seed generator shares the input layout.
//!
//! # Archive input layout
//! The first byte of an archive input is a set of flags, the rest is the tar
//! stream. The harness, not the fuzzer, compresses and fixes checksums, so
//! that mutations of the tar structure reach the parser through every
//! decompression path, and get past the header checksum (which a random
//! mutation almost always breaks) when asked to:
//! - bits 0-1 ([`COMPRESSION_MASK`]): 0 and 3 the bytes as they are (they may
//!   start with a zstd or gzip magic of their own), 1 gzip them, 2 zstd them;
//! - bit 2 ([`FIX_CHECKSUMS`]): recompute the checksum of every 512-byte block
//!   that carries the `ustar` magic (so headers are accepted);
//! - bits 3-4 ([`SIDECAR_MASK`]): the `<archive>.sha256` file next to it (see
//!   [`Sidecar`]);
//! - bit 5 ([`PLANT_SYMLINKS`], extract only): before extracting, plant
//!   symlinks in the destination that point outside it;
//! - bit 7 ([`REQUIRE_CHECKSUM`], verify only): set `require_checksum`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use runbook_steps::StepFailure;
use runbook_steps::runtime::blocking_work::WorkControl;
use runbook_steps::archive::extract::{ExtractArchiveOptions, extract_archive};
use runbook_steps::archive::verification::{ChecksumSource, VerifyArchiveOptions, verify_archive};
use sha2::{Digest, Sha256};

/// Bits of the flag byte choosing the compression.
pub const COMPRESSION_MASK: u8 = 0b11;
/// Compression value: gzip the rest of the input.
pub const GZIP: u8 = 1;
/// Compression value: zstd the rest of the input.
pub const ZSTD: u8 = 2;
/// Recompute header checksums.
pub const FIX_CHECKSUMS: u8 = 1 << 2;
/// Set `require_checksum` (verify target).
pub const REQUIRE_CHECKSUM: u8 = 1 << 7;
/// Bits of the flag byte choosing the checksum file.
pub const SIDECAR_MASK: u8 = 0b11 << 3;
/// Plant escaping symlinks in the destination first.
pub const PLANT_SYMLINKS: u8 = 1 << 5;

/// The checksum file written next to the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sidecar {
    /// No `.sha256` file.
    None,
    /// The right SHA-256.
    Right,
    /// A wrong SHA-256: verification must fail.
    Wrong,
    /// The right SHA-256 and per-file CRC-32 lines made from the input.
    WithCrcs,
}

impl Sidecar {
    fn from_flags(flags: u8) -> Sidecar {
        match (flags & SIDECAR_MASK) >> 3 {
            0 => Sidecar::None,
            1 => Sidecar::Right,
            2 => Sidecar::Wrong,
            _ => Sidecar::WithCrcs,
        }
    }

    /// The flag bits for this sidecar.
    pub fn flags(self) -> u8 {
        (match self {
            Sidecar::None => 0,
            Sidecar::Right => 1,
            Sidecar::Wrong => 2,
            Sidecar::WithCrcs => 3,
        }) << 3
    }
}

/// Where the harness makes its temporary folders: `$RUNBOOK_FUZZ_SCRATCH`,
/// else the system temp folder. A small tmpfs keeps a runaway extraction
/// from filling a real disk.
fn scratch_root() -> PathBuf {
    std::env::var_os("RUNBOOK_FUZZ_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn temp_root() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("runbook-fuzz-")
        .tempdir_in(scratch_root())
        .expect("creating the fuzz scratch folder")
}

/// The archive bytes an input stands for, and its flags.
pub fn archive_bytes(data: &[u8]) -> Option<(u8, Vec<u8>)> {
    let (&flags, rest) = data.split_first()?;
    let mut tar = rest.to_vec();
    if flags & FIX_CHECKSUMS != 0 {
        fix_header_checksums(&mut tar);
    }
    let bytes = match flags & COMPRESSION_MASK {
        GZIP => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&tar).unwrap();
            encoder.finish().unwrap()
        }
        ZSTD => zstd::encode_all(&tar[..], 1).unwrap(),
        _ => tar,
    };
    Some((flags, bytes))
}

/// Sets a valid checksum in every 512-byte block that looks like a header.
fn fix_header_checksums(tar: &mut [u8]) {
    for block in tar.chunks_exact_mut(512) {
        if &block[257..262] == b"ustar" {
            let mut header = tar::Header::new_old();
            header.as_mut_bytes().copy_from_slice(block);
            header.set_cksum();
            block.copy_from_slice(header.as_bytes());
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `<archive>.sha256` as `sidecar` says.
fn write_sidecar(archive: &Path, bytes: &[u8], sidecar: Sidecar, data: &[u8]) {
    let sha = sha256_hex(bytes);
    let text = match sidecar {
        Sidecar::None => return,
        Sidecar::Right => format!("{sha}  archive\n"),
        Sidecar::Wrong => format!("{}  archive\n", sha256_hex(b"something else")),
        Sidecar::WithCrcs => {
            // CRCs from the input's first bytes: sometimes right (for empty
            // files), mostly wrong, so both outcomes of the per-entry check run.
            let crcs: Vec<String> = data
                .chunks(4)
                .take(4)
                .map(|c| {
                    let mut word = [0u8; 4];
                    word[..c.len()].copy_from_slice(c);
                    format!("{:08x}", u32::from_le_bytes(word))
                })
                .collect();
            format!("{sha}  archive\n# crc32 {}\n", crcs.join(" "))
        }
    };
    let mut path = archive.as_os_str().to_owned();
    path.push(".sha256");
    fs::write(path, text).unwrap();
}

/// Target `verify_archive`: any bytes give `Ok` or a `VerifyError`, never a
/// panic or a hang; `Ok` reports the file's real SHA-256 and size, never
/// passes a wrong checksum file, and means the tar reader behind
/// `extract_archive` reads every entry to the end too.
pub fn check_verify(data: &[u8]) {
    let Some((flags, bytes)) = archive_bytes(data) else {
        return;
    };
    let sidecar = Sidecar::from_flags(flags);
    let root = temp_root();
    let archive = root.path().join("archive");
    fs::write(&archive, &bytes).unwrap();
    write_sidecar(&archive, &bytes, sidecar, data);
    let options = VerifyArchiveOptions {
        path: archive.clone(),
        require_checksum: flags & REQUIRE_CHECKSUM != 0,
        ..VerifyArchiveOptions::default()
    };
    match verify_archive(&options, &WorkControl::new("fuzz")) {
        Ok(report) => {
            assert!(report.ok);
            assert_eq!(report.sha256, sha256_hex(&bytes), "reported sha256");
            assert_eq!(report.bytes, bytes.len() as u64, "reported size");
            match sidecar {
                Sidecar::None => assert_eq!(report.checksum, ChecksumSource::None),
                Sidecar::Right | Sidecar::WithCrcs => {
                    assert_eq!(report.checksum, ChecksumSource::Sidecar)
                }
                Sidecar::Wrong => panic!("verify_archive accepted a wrong checksum file"),
            }
            if let Err(e) = read_with_tar_crate(&bytes) {
                panic!("verify_archive passed an archive the extract reader fails on: {e}");
            }
        }
        Err(e) => {
            // The message and kind are what users and scripts see: build them.
            assert!(!e.to_string().is_empty());
            assert!(!e.kind().is_empty());
        }
    }
}

/// Reads every entry's data with the tar crate, as `extract_archive` does.
fn read_with_tar_crate(bytes: &[u8]) -> std::io::Result<()> {
    let stream: Box<dyn Read> = match runbook_steps::archive::io::Compression::from_magic(bytes) {
        runbook_steps::archive::io::Compression::None => Box::new(bytes),
        runbook_steps::archive::io::Compression::Zstd => Box::new(zstd::Decoder::new(bytes)?),
        runbook_steps::archive::io::Compression::Gzip => {
            Box::new(flate2::read::MultiGzDecoder::new(bytes))
        }
    };
    let mut archive = tar::Archive::new(stream);
    for entry in archive.entries()? {
        let mut entry = entry?;
        entry.path()?;
        entry.link_name()?;
        std::io::copy(&mut entry, &mut std::io::sink())?;
    }
    Ok(())
}

/// What the extract target's scratch root holds outside `dest` before the run.
const CANARY: &[u8] = b"canary: must never change\n";

/// Target `extract_archive`: any bytes give `Ok` or an `ExtractError`, never
/// a panic or a hang, and nothing appears or changes outside the destination:
/// no new path, no changed file, no hard link to a file outside, no setuid/
/// setgid file, no device or FIFO. A symlink that leads outside may be
/// extracted (symlinks are data, never followed), but a successful run must
/// report each one in `links_outside`.
pub fn check_extract(data: &[u8]) {
    let Some((flags, bytes)) = archive_bytes(data) else {
        return;
    };
    let root = temp_root();
    let root_path = root.path().canonicalize().unwrap();
    let input = root_path.join("in");
    let outside = root_path.join("outside");
    let dest = root_path.join("dest");
    fs::create_dir(&input).unwrap();
    fs::create_dir(&outside).unwrap();
    let archive = input.join("archive");
    fs::write(&archive, &bytes).unwrap();
    let sidecar = Sidecar::from_flags(flags);
    write_sidecar(&archive, &bytes, sidecar, data);
    let canary = outside.join("canary");
    fs::write(&canary, CANARY).unwrap();
    fs::set_permissions(&canary, fs::Permissions::from_mode(0o644)).unwrap();
    let mut planted = BTreeSet::new();
    if flags & PLANT_SYMLINKS != 0 {
        fs::create_dir(&dest).unwrap();
        for (name, target) in [
            ("planted_dir", "../outside"),
            ("planted_file", "../outside/canary"),
        ] {
            symlink(target, dest.join(name)).unwrap();
            planted.insert(dest.join(name));
        }
    }
    let before = snapshot_outside(&root_path, &dest);

    let options = ExtractArchiveOptions {
        path: archive.clone(),
        dest: dest.clone(),
        verify: sidecar != Sidecar::None,
        strip_prefix: None,
    };
    let result = extract_archive(&options, &WorkControl::new("fuzz"));
    if let Err(e) = &result {
        assert!(!e.to_string().is_empty());
        assert!(!e.kind().is_empty());
    }
    if result.is_ok() && sidecar == Sidecar::Wrong {
        panic!("extract_archive extracted an archive with a wrong checksum file");
    }

    let after = snapshot_outside(&root_path, &dest);
    assert_eq!(before, after, "something changed outside dest");
    assert_eq!(fs::read(&canary).unwrap(), CANARY, "canary changed");
    let reported: Option<BTreeSet<PathBuf>> = result.as_ref().ok().map(|output| {
        output
            .links_outside
            .iter()
            .filter_map(|line| line.split(" -> ").next())
            .map(|relative| dest.join(relative))
            .collect()
    });
    if dest.exists() {
        let (files, allocated) = check_dest(&dest, &planted, reported.as_ref());
        // Disk use is bounded by the tar stream's size (plus a filesystem
        // block per file): a small archive must not fill the disk.
        if let Some(tar_len) = tar_stream_len(&bytes) {
            let limit = tar_len + 4096 * (files + 1);
            assert!(
                allocated <= limit,
                "extraction allocated {allocated} bytes on disk from a {tar_len}-byte tar stream"
            );
        }
    }
}

/// Bytes in the (decompressed) tar stream, up to where decompression fails;
/// `None` past 256 MiB (a compression bomb in the input: not measured).
fn tar_stream_len(bytes: &[u8]) -> Option<u64> {
    const CAP: u64 = 256 << 20;
    let stream: Box<dyn Read> = match runbook_steps::archive::io::Compression::from_magic(bytes) {
        runbook_steps::archive::io::Compression::None => return Some(bytes.len() as u64),
        runbook_steps::archive::io::Compression::Zstd => match zstd::Decoder::new(bytes) {
            Ok(decoder) => Box::new(decoder),
            Err(_) => return Some(0),
        },
        runbook_steps::archive::io::Compression::Gzip => {
            Box::new(flate2::read::MultiGzDecoder::new(bytes))
        }
    };
    let mut stream = stream.take(CAP + 1);
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    (total <= CAP).then_some(total)
}

/// Every path under `root` outside `dest`, with its type, mode, size, link
/// count and (for symlinks) target.
fn snapshot_outside(root: &Path, dest: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path == dest {
            continue;
        }
        let meta = fs::symlink_metadata(&path).unwrap();
        let link = fs::read_link(&path).ok();
        // A folder's size and link count change with its entries (`dest`
        // appearing in the root): its listing is compared instead.
        let (len, nlink) = if meta.is_dir() {
            (0, 0)
        } else {
            (meta.len(), meta.nlink())
        };
        seen.push(format!(
            "{} {:o} {len} {nlink} {link:?}",
            path.display(),
            meta.mode(),
        ));
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    seen.sort();
    seen
}

/// What may exist under `dest` after an extraction. Returns the number of
/// files and the bytes they take on disk.
fn check_dest(
    dest: &Path,
    planted: &BTreeSet<PathBuf>,
    reported: Option<&BTreeSet<PathBuf>>,
) -> (u64, u64) {
    let mut inodes = BTreeSet::new();
    let mut allocated = 0;
    let mut stack = vec![dest.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let kind = meta.file_type();
        assert!(
            kind.is_dir() || kind.is_file() || kind.is_symlink(),
            "{} is neither file, folder nor symlink",
            path.display()
        );
        assert_eq!(
            meta.mode() & 0o6000,
            0,
            "{} has a setuid/setgid bit",
            path.display()
        );
        if kind.is_symlink()
            && !planted.contains(&path)
            && let Some(reported) = reported
        {
            let target = fs::read_link(&path).unwrap();
            assert!(
                stays_inside(dest, path.parent().unwrap(), &target) || reported.contains(&path),
                "symlink {} -> {} leads outside dest and is not in links_outside",
                path.display(),
                target.display()
            );
        }
        if kind.is_file() && inodes.insert(meta.ino()) {
            allocated += meta.blocks() * 512;
        }
        if kind.is_dir() {
            // An archive may give a folder mode 000: open it up (as the
            // unprivileged fuzzing user) to look inside and to clean up.
            if meta.mode() & 0o700 != 0o700 {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
            }
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    (inodes.len() as u64, allocated)
}

/// Whether `target`, read from a symlink in `folder`, resolves lexically
/// inside `dest`.
fn stays_inside(dest: &Path, folder: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut resolved: Vec<Component> = folder.components().collect();
    for component in target.components() {
        match component {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::CurDir => {}
            other => resolved.push(other),
        }
    }
    resolved.iter().collect::<PathBuf>().starts_with(dest)
}

/// Target `step_options`: every step's `prepare` (which parses the options
/// and builds the description, label, default timeout and dry-run result)
/// gives `Ok` or an `OptionsError` on any JSON value, never a panic.
///
/// Input: the first byte picks the step; the rest is JSON text when bit 7
/// of that byte is clear, else it drives [`arbitrary`] to build a value whose
/// keys are mostly the step's own option names (so deeper checks are reached
/// than random text gets to).
pub fn check_step_options(data: &[u8]) {
    let steps = runbook_steps::all_steps();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let step = &steps[usize::from(selector & 0x7f) % steps.len()];
    let value = if selector & 0x80 == 0 {
        match serde_json::from_slice::<serde_json::Value>(rest) {
            Ok(value) => value,
            Err(_) => return,
        }
    } else {
        let keys = option_names(step.doc);
        let mut u = libfuzzer_sys::arbitrary::Unstructured::new(rest);
        object(&mut u, &keys, 3)
    };
    match step.prepare(value) {
        Ok(prepared) => {
            assert!(!prepared.description.is_empty());
        }
        Err(e) => {
            assert!(!e.message.is_empty());
        }
    }
}

/// The option names listed in a step's DOC (the `Options:` section).
pub fn option_names(doc: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_options = false;
    for line in doc.lines() {
        if line.starts_with("Options:") {
            in_options = true;
            continue;
        }
        if in_options {
            if !line.starts_with(' ') && !line.is_empty() {
                break;
            }
            // Option lines: two spaces, then the name; continuation lines are deeper.
            // `user, password  string, secret  ...` names two options.
            if let Some(rest) = line.strip_prefix("  ")
                && !rest.starts_with(' ')
                && let Some(head) = rest.split("  ").next()
            {
                names.extend(
                    head.split(',')
                        .filter_map(|n| n.split_whitespace().next())
                        .map(str::to_string),
                );
            }
        }
    }
    names
}

type Unstructured<'a> = libfuzzer_sys::arbitrary::Unstructured<'a>;

const STRINGS: &[&str] = &[
    "",
    "/",
    ".",
    "..",
    "../x",
    "/tmp/runbook-fuzz-nonexistent/x",
    "a/b",
    "1s",
    "0s",
    "10m",
    "1h 2m",
    "-1",
    "18446744073709551616",
    "none",
    "zstd",
    "gzip",
    "skip",
    "fail",
    "GET",
    "POST",
    "http://127.0.0.1:1/",
    "s3://bucket/key",
    "*",
    "**/*.db",
    "[",
    "\u{0}",
    "é/ü",
];

fn string(u: &mut Unstructured, keys: &[String]) -> String {
    match u.int_in_range(0..=3u8).unwrap_or(0) {
        0 => u.arbitrary::<String>().unwrap_or_default(),
        1 if !keys.is_empty() => u.choose(keys).cloned().unwrap_or_default(),
        _ => u.choose(STRINGS).map(|s| s.to_string()).unwrap_or_default(),
    }
}

fn value(u: &mut Unstructured, keys: &[String], depth: u32) -> serde_json::Value {
    use serde_json::Value;
    let top = if depth == 0 { 5 } else { 7 };
    match u.int_in_range(0..=top).unwrap_or(0) {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary().unwrap_or(false)),
        2 => Value::from(u.arbitrary::<i64>().unwrap_or(0)),
        3 => Value::from(u.arbitrary::<u64>().unwrap_or(0)),
        4 => serde_json::Number::from_f64(u.arbitrary::<f64>().unwrap_or(0.5))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        5 => Value::String(string(u, keys)),
        6 => {
            let len = u.int_in_range(0..=4u8).unwrap_or(0);
            Value::Array((0..len).map(|_| value(u, keys, depth - 1)).collect())
        }
        _ => object(u, keys, depth - 1),
    }
}

fn object(u: &mut Unstructured, keys: &[String], depth: u32) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    let len = u.int_in_range(0..=6u8).unwrap_or(0);
    for _ in 0..len {
        let key = if u.ratio(7, 8u8).unwrap_or(true) && !keys.is_empty() {
            u.choose(keys).cloned().unwrap_or_default()
        } else {
            string(u, keys)
        };
        map.insert(key, value(u, keys, depth));
    }
    serde_json::Value::Object(map)
}
