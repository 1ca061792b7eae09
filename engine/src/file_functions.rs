//! The file helpers (`write_file`, `read_file`, `mkdir`, ...) exposed to scripts.

use std::sync::Arc;

use rhai::Engine;

use crate::run_state::RunState;

/// Registers the file helpers.
pub fn register(_engine: &mut Engine, _state: &Arc<RunState>) {}
