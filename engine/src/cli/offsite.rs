//! `runbook verify --set STAMP --offsite [DEST]`: re-checks a set's off-site
//! copy, every object downloaded and hashed against its off-site record
//! (the `offsite_verify` step, reached through the registry: the engine
//! knows no S3).

use std::path::Path;

use runbook_steps::runtime::step::StepContext;

use crate::report::exit_code;

/// Verifies the off-site copy of set `stamp`: from the local record in
/// `manifest_dir` when there is one (its destination, unless `dest` is
/// given), else from the record at `dest`. Exit 0 when every object
/// matches, 1 when one does not (each named on its own line), 2 when there
/// is nothing to check against.
pub fn verify_offsite(manifest_dir: &Path, stamp: &str, dest: Option<&str>, json: bool) -> i32 {
    if runbook_steps::backup::layout::parse_stamp(stamp).is_none() {
        eprintln!(
            "error: `{stamp}` is not a stamp like 20261126_01h15m00s (`runbook list` shows the sets)"
        );
        return exit_code::INPUT;
    }
    let record = manifest_dir.join(runbook_steps::offsite::record::record_file_name(stamp));
    let mut options = serde_json::json!({ "fail": false });
    if record.is_file() {
        options["record"] = serde_json::json!(record);
    } else if dest.is_some() {
        options["stamp"] = serde_json::json!(stamp);
    } else {
        eprintln!(
            "error: no off-site record {} (the set was not copied off-site from here): give the destination, `--offsite ALIAS/BUCKET/PREFIX`",
            record.display()
        );
        return exit_code::INPUT;
    }
    if let Some(dest) = dest {
        options["dest"] = serde_json::json!(dest);
    }
    let step = runbook_steps::find_step("offsite_verify")
        .expect("offsite_verify is a registered step")
        .prepare(options)
        .expect("offsite_verify takes these options");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return exit_code::FAILED;
        }
    };
    let result = runtime.block_on(step.run(StepContext::detached("verify off-site")));
    let output = match result {
        Ok(output) => output,
        Err(e) => {
            eprintln!("error: off-site copy of set {stamp}: {e}");
            return exit_code::FAILED;
        }
    };
    report(stamp, &output, json)
}

/// Prints the result (one line per object, or the JSON) and gives the exit code.
fn report(stamp: &str, output: &serde_json::Value, json: bool) -> i32 {
    let ok = output["result"] == "ok";
    if json {
        println!("{output}");
    } else {
        let dest = output["dest"].as_str().unwrap_or("?");
        for object in output["objects"].as_array().into_iter().flatten() {
            let key = object["key"].as_str().unwrap_or("?");
            match object["error"].as_str() {
                None => println!("ok {key}"),
                Some(error) => println!("BAD {error}"),
            }
        }
        let errors = output["errors"].as_array().map(Vec::len).unwrap_or(0);
        if ok {
            println!(
                "set {stamp}: off-site copy at {dest} verified ok ({} bytes downloaded and hashed)",
                output["bytes"]
            );
        } else {
            println!("set {stamp}: off-site copy at {dest} FAILED, {errors} problem(s)");
        }
    }
    if ok {
        exit_code::SUCCESS
    } else {
        exit_code::FAILED
    }
}
