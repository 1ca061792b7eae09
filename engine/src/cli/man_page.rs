//! `runbook man`: the manual page (roff), by `clap_mangen` from the same
//! definitions as `--help`.
//!
//! One page on stdout names each subcommand as `runbook run` and says where
//! its options are (`runbook run --help`), since a lone page cannot refer to
//! pages that were never installed; `runbook man --dir DIR` writes a page
//! per subcommand too (`runbook-run.1`, ...), so the references of the main
//! page there (`runbook-run(1)`) exist.

use std::io::Write;
use std::path::{Path, PathBuf};

use roff::{Roff, bold, roman};

/// Writes the single page (main command, subcommands by name) to `out`.
pub fn render_single_page(command: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    let mut section = Roff::new();
    section.control("SH", ["SUBCOMMANDS"]);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        section.control("TP", []);
        section.text([bold(format!("{} {}", command.get_name(), sub.get_name()))]);
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        section.text([roman(format!(
            "{}. Options: {} {} --help.",
            about.trim_end_matches('.'),
            command.get_name(),
            sub.get_name()
        ))]);
    }
    section.to_writer(out)?;
    man.render_extra_section(out)?;
    man.render_version_section(out)
}

/// Writes `runbook.1` and one page per subcommand into `dir` (created if
/// missing); returns the files written.
pub fn write_pages(command: clap::Command, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let name = command.get_name().to_string();
    clap_mangen::generate_to(command, dir)?;
    let mut written = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if file.starts_with(&name) && file.ends_with(".1") {
            written.push(path);
        }
    }
    written.sort();
    Ok(written)
}
