//! The script function `config_source(key)`.

use std::sync::Arc;

use crate::host::config::Origin;
use crate::host::run_state::RunState;

/// Registers `config_source(key)`: where the effective value of a config
/// key came from: `"default"`, `"site"`, `"vars"`, `"env"` or `"set"`. A
/// workflow takes a value from elsewhere (a set's manifest) only for a key
/// nobody set.
pub fn register(engine: &mut rhai::Engine, state: &Arc<RunState>) {
    let state = Arc::clone(state);
    engine.register_fn("config_source", move |key: &str| -> String {
        let env = |name: &str| std::env::var(name).ok();
        match state.overrides.origin_of(key, env) {
            Origin::Default => "default",
            Origin::SiteFile(_) => "site",
            Origin::VarsFile(_) => "vars",
            Origin::Environment(_) => "env",
            Origin::Set => "set",
        }
        .to_string()
    });
}
