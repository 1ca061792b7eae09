//! Which config keys exist and what their effective values are, learnt by
//! running workflows up to their `config()` call in a probe (dry-run, no
//! journal; the call stops the script): the stock workflows and the `.rhai`
//! files next to the site file. Above the engine: it builds one per probe.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rhai::Map;
use runbook_steps::runtime::progress::ProgressMode;
use tokio_util::sync::CancellationToken;

use crate::host::config::{ENGINE_VARIABLES, Overrides};
use crate::host::config_probe::{ProbeMode, Probed};
use crate::host::config_site::{Site, engine_keys};
use crate::host::run_state::RunState;
use crate::host::workflow::{Workflow, stock_workflow_names};

/// Every key the site knows: the engine settings, and the config keys of the
/// stock workflows, of the workflows next to the site file and of `current`.
/// A workflow that cannot be probed adds nothing (its own run reports why).
pub fn known_keys(site: &Site, current: Option<&Workflow>) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = engine_keys().map(str::to_string).collect();
    let mut workflows: Vec<Workflow> = stock_workflow_names()
        .into_iter()
        .filter_map(|name| Workflow::load(name).ok())
        .collect();
    for path in site.neighbour_workflows() {
        if let Ok(workflow) = Workflow::load(&path.display().to_string()) {
            workflows.push(workflow);
        }
    }
    for workflow in workflows.iter().chain(current) {
        // A script that declares no config is not run at all.
        if !workflow.source.contains("config(") {
            continue;
        }
        if let Ok(probed) = probe(workflow, ProbeMode::Keys, Overrides::default()) {
            known.extend(probed.keys);
        }
    }
    known
}

/// True when a `RUNBOOK_*` variable other than the engine's own is set or
/// the site file has values: only then is it worth learning every key.
pub fn needs_known_keys(site: &Site) -> bool {
    !site.values().is_empty()
        || std::env::vars_os().any(|(name, _)| {
            name.to_str()
                .is_some_and(|n| n.starts_with("RUNBOOK_") && !ENGINE_VARIABLES.contains(&n))
        })
}

/// Runs `workflow` (dry-run, no journal) up to its first `config()` call
/// and returns what that call declared (and, in [`ProbeMode::Effective`],
/// resolved with `overrides`). A workflow without `config()` declares
/// nothing. Errors: the rendered script or config error.
pub fn probe(workflow: &Workflow, mode: ProbeMode, overrides: Overrides) -> Result<Probed, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let state = Arc::new(dry_run_state(workflow, runtime.handle().clone(), overrides));
    let engine = crate::host::engine::build_engine(state, workflow.modules.clone());
    let ast = crate::host::check::compile(&engine, &workflow.display, &workflow.source)
        .map_err(|p| format!("{}: {}", p.position, p.message))?;
    let outer = crate::host::config_probe::begin(mode);
    crate::host::cleanup::push_frame();
    // What the script logs before its config() call (dry-run lines) is not
    // this command's output.
    let result =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            engine.run_ast(&ast)
        });
    // A probe stops at config(): whatever it deferred before is not run.
    drop(crate::host::cleanup::pop_frame());
    let found = crate::host::config_probe::end(outer);
    match (found, result) {
        (Some(found), _) => Ok(found),
        (None, Ok(())) => Ok(Probed::default()),
        (None, Err(error)) => Err(crate::host::script_error::render(
            &error,
            &workflow.display,
            &crate::host::workflow::source_text,
        )),
    }
}

/// The run state of a script run that changes nothing and keeps no journal
/// (a config probe, `runbook check`): dry-run, no progress, `overrides`.
pub fn dry_run_state(
    workflow: &Workflow,
    runtime: tokio::runtime::Handle,
    overrides: Overrides,
) -> RunState {
    RunState {
        dry_run: true,
        cancel: CancellationToken::new(),
        runtime,
        journal: None,
        overrides,
        config: Mutex::new(Map::new()),
        config_declared: Mutex::new(false),
        progress: ProgressMode::Off,
        workflow_display: workflow.display.clone(),
        workflow_sha256: workflow.sha256(),
        workflow_name: workflow.name.clone(),
        run_compensations: Mutex::new(Vec::new()),
        changed: std::sync::atomic::AtomicBool::new(false),
        max_operations: crate::host::engine::MAX_OPERATIONS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_workflows_declare_their_keys_to_a_probe() {
        let backup = Workflow::load("cluster-hot-backup").unwrap();
        let probed = probe(&backup, ProbeMode::Keys, Overrides::default()).unwrap();
        assert!(
            probed.keys.iter().any(|k| k == "manifest_path"),
            "{probed:?}"
        );
        assert!(probed.keys.iter().any(|k| k == "storage"), "{probed:?}");
    }
}
