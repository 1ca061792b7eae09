//! After a fuzzing run: every input of a verify_archive corpus that
//! verify_archive passes must be readable by GNU tar too (`tar -xOPf`, which
//! reads every entry's data and writes nothing). Too slow to run per input
//! inside the fuzzer (a process per input), fast enough over a corpus.
//!
//! `cargo run --release --bin gnu_tar_agrees -- DIR...`; exits 1 on a
//! disagreement, naming the input.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use runbook_steps::runtime::blocking_work::WorkControl;
use runbook_steps::archive::verification::{VerifyArchiveOptions, verify_archive};

fn main() {
    let mut inputs: Vec<PathBuf> = Vec::new();
    for dir in std::env::args().skip(1) {
        for entry in std::fs::read_dir(&dir).unwrap() {
            inputs.push(entry.unwrap().path());
        }
    }
    inputs.sort();
    let scratch = tempfile::tempdir().unwrap();
    let archive = scratch.path().join("archive");
    let (mut passed, mut disagreements) = (0, 0);
    for input in &inputs {
        // A running fuzzer replaces inputs as it shrinks them.
        let Ok(data) = std::fs::read(input) else {
            continue;
        };
        let Some((_, bytes)) = runbook_fuzz::archive_bytes(&data) else {
            continue;
        };
        std::fs::write(&archive, &bytes).unwrap();
        let options = VerifyArchiveOptions {
            path: archive.clone(),
            ..VerifyArchiveOptions::default()
        };
        if verify_archive(&options, &WorkControl::new("agree")).is_err() {
            continue;
        }
        passed += 1;
        // -P: names with `..` are refused by GNU tar for safety, not for
        // being unreadable; -O writes nothing anyway.
        let output = Command::new("tar")
            .arg("-xOPf")
            .arg(&archive)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        if !output.status.success() {
            disagreements += 1;
            println!(
                "verify_archive passes, GNU tar fails: {}: {}",
                input.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    println!(
        "{} inputs, {passed} pass verify_archive, {disagreements} of those fail in GNU tar",
        inputs.len()
    );
    if disagreements > 0 {
        std::process::exit(1);
    }
}
