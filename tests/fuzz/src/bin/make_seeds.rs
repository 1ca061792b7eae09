//! Writes the seed corpus: `cargo run --release --bin make_seeds -- corpus`.
//!
//! Archives made by GNU tar (gnu, pax, ustar and sparse formats, plain, gzip
//! and zstd) and by tar_dir (plain, gzip, zstd) from a small tree with a
//! long name, a non-UTF-8-looking name, symlinks and a hard link; crafted
//! bad archives (`..`, absolute paths, escaping symlinks and hard links,
//! writes through a symlink, devices, FIFOs, setuid); and for step options,
//! JSON for every step. Each archive input starts with the harness's flag
//! byte (see `runbook_fuzz`).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use runbook_fuzz::{FIX_CHECKSUMS, GZIP, PLANT_SYMLINKS, Sidecar, ZSTD};
use runbook_steps::archive::io::Compression;
use runbook_steps::runtime::blocking_work::WorkControl;
use runbook_steps::archive::tar_dir::{OnChanged, OnUnreadable, TarDirOptions, write_archive};
use serde_json::json;

fn main() {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: make_seeds CORPUS_DIR"),
    );
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);

    // (name, flags, tar bytes)
    let mut archives: Vec<(String, u8, Vec<u8>)> = Vec::new();
    let gnu_tar = |name: &str, args: &[&str]| -> Option<Vec<u8>> {
        let path = work.path().join(name);
        // The sparse file only in the sparse archives (it is 20 KB without -S).
        let what: &[&str] = if name.contains("sparse") {
            &["top/sparse"]
        } else {
            &["--exclude=top/sparse", "top"]
        };
        let status = Command::new("tar")
            .args(args)
            .arg("-cf")
            .arg(&path)
            .arg("-C")
            .arg(&tree)
            .args(what)
            .status()
            .unwrap();
        status.success().then(|| fs::read(&path).unwrap())
    };
    for (name, args) in [
        ("gnu.tar", &["--format=gnu", "-b1"][..]),
        ("gnu-record.tar", &["--format=gnu"][..]),
        ("pax.tar", &["--format=pax", "-b1"][..]),
        ("oldgnu-sparse.tar", &["--format=gnu", "-b1", "-S"][..]),
        ("pax-sparse.tar", &["--format=pax", "-b1", "-S"][..]),
    ] {
        let tar = gnu_tar(name, args).expect(name);
        archives.push((format!("gnutar-{name}"), 0, tar.clone()));
        if name == "gnu.tar" || name == "pax.tar" {
            archives.push((format!("gnutar-{name}-fixsum"), FIX_CHECKSUMS, tar.clone()));
            archives.push((format!("gnutar-{name}-as-gzip"), GZIP, tar.clone()));
            archives.push((format!("gnutar-{name}-as-zstd"), ZSTD, tar.clone()));
            archives.push((
                format!("gnutar-{name}-sidecar"),
                Sidecar::Right.flags(),
                tar.clone(),
            ));
        }
    }
    for (name, args) in [
        ("gnu.tar.gz", &["--format=gnu", "-b1", "-z"][..]),
        ("gnu.tar.zst", &["--format=gnu", "-b1", "--zstd"][..]),
    ] {
        let bytes = gnu_tar(name, args).expect(name);
        archives.push((format!("gnutar-{name}"), 0, bytes));
    }
    // ustar cannot hold the long name: archive a part of the tree.
    let path = work.path().join("ustar.tar");
    let ok = Command::new("tar")
        .args(["--format=ustar", "-b1", "-cf"])
        .arg(&path)
        .arg("-C")
        .arg(&tree)
        .args(["top/small.txt", "top/sub", "top/link"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "ustar");
    archives.push(("gnutar-ustar.tar".into(), 0, fs::read(&path).unwrap()));

    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let dest = work
            .path()
            .join(format!("tar_dir-{}.tar", compression.name()));
        let options = TarDirOptions {
            dest: dest.clone(),
            src: Some(tree.join("top")),
            prefix: None,
            entries: None,
            compress: compression,
            level: Some(1),
            exclude: vec!["top/sparse".into()],
            on_unreadable: OnUnreadable::Fail,
            on_changed: OnChanged::Fail,
        };
        write_archive(&options, &WorkControl::new("seeds")).unwrap();
        let name = format!("tar_dir-{}", compression.name());
        let bytes = fs::read(&dest).unwrap();
        archives.push((name.clone(), 0, bytes.clone()));
        archives.push((format!("{name}-sidecar"), Sidecar::Right.flags(), bytes));
    }

    let crafted = crafted_archives();
    for (name, tar) in &crafted {
        archives.push((format!("crafted-{name}"), 0, tar.clone()));
    }

    for target in ["verify_archive", "extract_archive"] {
        let dir = out.join(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, flags, bytes) in &archives {
            write_seed(&dir, name, *flags, bytes);
        }
    }
    // Extraction over symlinks planted in dest beforehand.
    let dir = out.join("extract_archive");
    for (name, tar) in &crafted {
        if name.starts_with("planted") {
            write_seed(
                &dir,
                &format!("crafted-{name}-planted"),
                PLANT_SYMLINKS,
                tar,
            );
        }
    }
    write_seed(
        &dir,
        "gnutar-gnu.tar-planted",
        PLANT_SYMLINKS,
        &archives
            .iter()
            .find(|(n, _, _)| n == "gnutar-gnu.tar")
            .unwrap()
            .2,
    );

    step_option_seeds(&out.join("step_options"));
}

fn write_seed(dir: &Path, name: &str, flags: u8, bytes: &[u8]) {
    let mut seed = vec![flags];
    seed.extend_from_slice(bytes);
    fs::write(dir.join(name), seed).unwrap();
}

fn make_tree(root: &Path) {
    let top = root.join("top");
    fs::create_dir_all(top.join("sub/deep")).unwrap();
    fs::write(top.join("small.txt"), "hello\n").unwrap();
    fs::write(top.join("empty"), "").unwrap();
    fs::write(
        top.join("sub/deep/file.bin"),
        (0..700u32).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(
        top.join(format!("{}.txt", "long-name-".repeat(12))),
        "long\n",
    )
    .unwrap();
    fs::write(top.join("naïve é.txt"), "utf-8\n").unwrap();
    symlink("small.txt", top.join("link")).unwrap();
    symlink("sub/deep", top.join("dirlink")).unwrap();
    fs::hard_link(top.join("small.txt"), top.join("hard")).unwrap();
    // A sparse file: data, a hole, data (for `tar -S`).
    let sparse = fs::File::create(top.join("sparse")).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(b"start", 0).unwrap();
    sparse.write_all_at(b"end", 20_000).unwrap();
}

/// One crafted entry: name, type, link target, data, mode.
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8], u32);

/// Archives of raw entries with headers set by hand (the tar crate's
/// checked setters refuse these paths).
fn crafted(entries: &[RawEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link, data, mode) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(*kind);
        header.set_mode(*mode);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn crafted_archives() -> Vec<(String, Vec<u8>)> {
    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};
    let cases: Vec<(&str, Vec<RawEntry>)> = vec![
        (
            "dotdot",
            vec![
                (b"ok.txt", Regular, b"", b"fine", 0o644),
                (b"../outside/evil", Regular, b"", b"x", 0o644),
            ],
        ),
        (
            "dotdot-deep",
            vec![(b"a/b/../../../outside/evil", Regular, b"", b"x", 0o644)],
        ),
        (
            "absolute",
            vec![(b"/tmp/runbook-fuzz-abs-evil", Regular, b"", b"x", 0o644)],
        ),
        (
            "escaping-symlink",
            vec![(b"link", Symlink, b"../outside", b"", 0o777)],
        ),
        (
            "absolute-symlink",
            vec![(b"link", Symlink, b"/etc", b"", 0o777)],
        ),
        (
            "symlink-chain",
            vec![
                (b"sub/", Directory, b"", b"", 0o755),
                (b"x", Symlink, b"sub", b"", 0o777),
                (b"y", Symlink, b"x/../..", b"", 0o777),
            ],
        ),
        (
            "write-through-symlink",
            vec![
                (b"dir/", Directory, b"", b"", 0o755),
                (b"dir/link", Symlink, b"..", b"", 0o777),
                (b"dir/link/x", Regular, b"", b"x", 0o644),
            ],
        ),
        (
            "hardlink-outside",
            vec![(b"h", Link, b"../outside/canary", b"", 0o644)],
        ),
        (
            "hardlink-inside",
            vec![
                (b"f", Regular, b"", b"data", 0o644),
                (b"h", Link, b"f", b"", 0o644),
            ],
        ),
        (
            "planted-dir",
            vec![(b"planted_dir/evil", Regular, b"", b"x", 0o644)],
        ),
        (
            "planted-file",
            vec![(b"planted_file", Regular, b"", b"overwritten", 0o644)],
        ),
        (
            "planted-hardlink",
            vec![(b"h", Link, b"planted_file", b"", 0o644)],
        ),
        ("block-device", vec![(b"sda", Block, b"", b"", 0o600)]),
        ("char-device", vec![(b"null", Char, b"", b"", 0o600)]),
        ("fifo", vec![(b"pipe", Fifo, b"", b"", 0o600)]),
        ("setuid", vec![(b"suid", Regular, b"", b"#!", 0o6755)]),
        (
            "dir-then-file-same-name",
            vec![
                (b"d/", Directory, b"", b"", 0o755),
                (b"d", Regular, b"", b"x", 0o644),
            ],
        ),
    ];
    cases
        .into_iter()
        .map(|(name, entries)| (name.to_string(), crafted(&entries)))
        .collect()
}

fn step_option_seeds(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let examples = [
        (
            "exec",
            json!({"cmd": "true", "args": ["-x"], "env": {"A": "1"}, "ok_codes": [0, 1],
                   "capture": false, "read_only": true, "shell": false, "stdin": "x", "cwd": "/"}),
        ),
        (
            "tar_dir",
            json!({"dest": "/tmp/x.tar", "src": "/tmp/src", "prefix": "", "compress": "zstd",
                   "level": 19, "exclude": ["**/*.tmp"], "on_unreadable": "skip"}),
        ),
        (
            "tar_dir",
            json!({"dest": "/tmp/x.tar", "entries": [{"src": "/tmp/a", "path": "a/b"}]}),
        ),
        (
            "verify_archive",
            json!({"path": "/tmp/x.tar", "sha256": "00", "require_checksum": true,
                   "expect": ["a/*"], "min_entries": 2}),
        ),
        (
            "extract_archive",
            json!({"path": "/tmp/x.tar", "dest": "/tmp/out", "verify": false}),
        ),
        (
            "mcli_mirror",
            json!({"source": "local/bucket/prefix", "dest": "/tmp/m", "concurrency": 4,
                   "remove": true, "endpoint": "http://127.0.0.1:9000", "access_key": "a",
                   "secret_key": "b", "region": "us-east-1", "verify_md5": false}),
        ),
        (
            "s3_upload",
            json!({"files": ["/tmp/a"], "src": "/tmp/b", "last": ["/tmp/c"],
                   "dest": "bucket/prefix", "concurrency": 2, "part_size": 5242880,
                   "checksum": true, "endpoint": "http://127.0.0.1:9000"}),
        ),
        (
            "http",
            json!({"method": "PUT", "url": "http://127.0.0.1:9200/_snapshot/r",
                   "headers": {"X": "y"}, "json": {"a": [1, 2]}, "expect": [200, 404],
                   "user": "u", "password": "p", "insecure": true}),
        ),
        (
            "es_health",
            json!({"url": "http://127.0.0.1:9200", "wait_for_status": "green",
                   "require": "yellow", "api_key": "k"}),
        ),
        (
            "es_snapshot",
            json!({"url": "http://127.0.0.1:9200", "repository": "r", "snapshot": "s1",
                   "indices": ["a", "b"], "wait": false, "poll": "1s",
                   "on_timeout": "delete", "allow_partial": true}),
        ),
        (
            "prune",
            json!({"manifest_path": "/tmp/m", "archive_paths": ["/tmp/a"], "keep": 2,
                   "elasticsearch": {"url": "http://127.0.0.1:9200", "repository": "r"},
                   "protect": ["20260101"]}),
        ),
    ];
    let steps = runbook_steps::all_steps();
    for (n, (name, options)) in examples.iter().enumerate() {
        let index = steps
            .iter()
            .position(|s| s.name == *name)
            .unwrap_or_else(|| panic!("no step {name}"));
        let mut seed = vec![index as u8];
        seed.extend_from_slice(options.to_string().as_bytes());
        fs::write(dir.join(format!("{name}-{n}.json")), seed).unwrap();
    }
    for (index, step) in steps.iter().enumerate() {
        let mut seed = vec![index as u8];
        seed.extend_from_slice(b"{}");
        fs::write(dir.join(format!("{}-empty.json", step.name)), seed).unwrap();
        // Structured mode (bit 7): bytes for `arbitrary`.
        let seed: Vec<u8> = [index as u8 | 0x80]
            .into_iter()
            .chain((0..64u8).map(|i| i.wrapping_mul(37)))
            .collect();
        fs::write(dir.join(format!("{}-structured", step.name)), seed).unwrap();
    }
}
