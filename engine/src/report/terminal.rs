//! What the terminal can show: colours and progress bars only on a terminal,
//! colours never when `NO_COLOR` is set.

use std::io::IsTerminal;

/// True when log lines may use colours.
pub fn colours_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// True when a live progress bar may be drawn.
pub fn progress_bars_enabled() -> bool {
    std::io::stderr().is_terminal()
}
