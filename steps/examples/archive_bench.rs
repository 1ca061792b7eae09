//! Runs the archive steps from the command line, outside the engine: what
//! `tests/bench/archive-bench.sh` times against GNU tar and sha256sum.
//!
//! ```text
//! archive_bench tar DEST (--src DIR [--prefix NAME] | --entry SRC=PATH...) [--compress zstd|gzip] [--level N] [--read-ahead FILES]
//! archive_bench verify ARCHIVE [--sha256 HEX]
//! archive_bench extract ARCHIVE DEST [--no-verify]
//! ```
//! Prints the step's result as JSON; on failure prints the error and exits 1.

use std::path::PathBuf;
use std::process::ExitCode;

use runbook_steps::archive::{extract as extract_archive, tar_dir, verification as verify_archive};
use runbook_steps::runtime::blocking_work::WorkControl;
use serde_json::{Value, json};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("archive_bench: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<Value, String> {
    let control = WorkControl::new("archive_bench");
    let (command, rest) = args.split_first().ok_or_else(usage)?;
    match command.as_str() {
        "tar" => {
            let (dest, mut flags) = rest.split_first().ok_or_else(usage)?;
            let mut options = json!({ "dest": dest });
            let mut entries = Vec::new();
            while let Some((flag, tail)) = flags.split_first() {
                let (value, tail) = tail.split_first().ok_or_else(usage)?;
                match flag.as_str() {
                    "--src" => options["src"] = json!(value),
                    "--prefix" => options["prefix"] = json!(value),
                    "--compress" => options["compress"] = json!(value),
                    "--read-ahead" => {
                        options["read_ahead"] =
                            json!(value.parse::<usize>().map_err(|e| e.to_string())?)
                    }
                    "--level" => {
                        options["level"] = json!(value.parse::<i32>().map_err(|e| e.to_string())?)
                    }
                    "--exclude" => {
                        let list = options["exclude"].as_array().cloned().unwrap_or_default();
                        options["exclude"] = json!([list, vec![json!(value)]].concat());
                    }
                    "--entry" => {
                        let (src, path) = value.split_once('=').ok_or_else(usage)?;
                        entries.push(json!({ "src": src, "path": path }));
                    }
                    _ => return Err(usage()),
                }
                flags = tail;
            }
            if !entries.is_empty() {
                options["entries"] = json!(entries);
            }
            let options: tar_dir::TarDirOptions =
                serde_json::from_value(options).map_err(|e| e.to_string())?;
            let output = tar_dir::write_archive(&options, &control).map_err(error_chain)?;
            serde_json::to_value(output).map_err(|e| e.to_string())
        }
        "verify" => {
            let (path, flags) = rest.split_first().ok_or_else(usage)?;
            let expected = match flags {
                [flag, hex] if flag == "--sha256" => Some(hex.as_str()),
                [] => None,
                _ => return Err(usage()),
            };
            let report =
                verify_archive::verify_archive_file(&PathBuf::from(path), expected, &control)
                    .map_err(error_chain)?;
            serde_json::to_value(report).map_err(|e| e.to_string())
        }
        "extract" => {
            let [path, dest, flags @ ..] = rest else {
                return Err(usage());
            };
            let verify = match flags {
                [] => true,
                [flag] if flag == "--no-verify" => false,
                _ => return Err(usage()),
            };
            let options: extract_archive::ExtractArchiveOptions =
                serde_json::from_value(json!({ "path": path, "dest": dest, "verify": verify }))
                    .map_err(|e| e.to_string())?;
            let output =
                extract_archive::extract_archive(&options, &control).map_err(error_chain)?;
            serde_json::to_value(output).map_err(|e| e.to_string())
        }
        _ => Err(usage()),
    }
}

fn error_chain(error: impl std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn usage() -> String {
    "usage: archive_bench tar DEST (--src DIR [--prefix NAME] | --entry SRC=PATH...) \
     [--compress none|zstd|gzip] [--level N] [--exclude GLOB]... [--read-ahead FILES] | verify ARCHIVE [--sha256 HEX] | \
     extract ARCHIVE DEST [--no-verify]"
        .to_string()
}
