//! Refusing workflow files others could have changed: when runbook runs as
//! root, a workflow or module writable by group or others would let any such
//! user run code as root.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why a script file is refused.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeScript {
    /// Group- or world-writable while running as root.
    #[error(
        "refusing {path}: it is writable by {who} and runbook runs as root (fix: chmod go-w {path})"
    )]
    Writable {
        /// The file.
        path: String,
        /// "group", "others" or "group and others".
        who: &'static str,
    },
    /// The file cannot be inspected.
    #[error("cannot inspect {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Checks a workflow or module file before it is loaded.
pub fn check_script_file(path: &Path) -> Result<(), UnsafeScript> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let metadata = std::fs::metadata(path).map_err(|source| UnsafeScript::Io {
        path: path.display().to_string(),
        source,
    })?;
    let Some(who) = writable_by(metadata.mode()) else {
        return Ok(());
    };
    Err(UnsafeScript::Writable {
        path: path.display().to_string(),
        who,
    })
}

/// What a file or folder runbook trusts is used for: named in the refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustedUse {
    /// The journal folder: its journals' undo actions are carried out.
    JournalFolder,
    /// A journal: its undo actions are carried out by `recover`.
    Journal,
    /// `--vars FILE`: it sets which programs (`nodetool`, `cqlsh`) run.
    VarsFile,
    /// The folder holding the workflow: its modules are imported from there.
    WorkflowFolder,
    /// A `NAME_FILE` secret file.
    SecretFile,
    /// The folder holding the runs' private folders (`private_dir()`).
    RuntimeFolder,
    /// The site file (`/etc/runbook/site.toml`): it sets the programs
    /// runbook runs and where it writes, for every command.
    SiteFile,
}

impl TrustedUse {
    fn describe(self) -> &'static str {
        match self {
            TrustedUse::JournalFolder => {
                "the journal folder, whose undo actions runbook carries out"
            }
            TrustedUse::Journal => "a journal, whose undo actions runbook carries out",
            TrustedUse::VarsFile => "the --vars file, which sets the programs runbook runs",
            TrustedUse::WorkflowFolder => {
                "the workflow's folder, from which its modules are imported"
            }
            TrustedUse::SecretFile => "a password file",
            TrustedUse::RuntimeFolder => "the runtime folder, which holds files with passwords",
            TrustedUse::SiteFile => "the site file, which sets the programs runbook runs",
        }
    }
}

/// Why a file or folder runbook would trust is refused.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// Writable by group or others.
    #[error("refusing {path} ({}): it is writable by {who} (fix: chmod go-w {path})", .what.describe())]
    Writable {
        /// The path.
        path: String,
        /// Its use.
        what: TrustedUse,
        /// "group", "others" or "group and others".
        who: &'static str,
    },
    /// Owned by a user other than the one running runbook (or root).
    #[error(
        "refusing {path} ({}): it is owned by uid {owner}, not by {trusted}, so that user could change it (fix: chown {me} {path})",
        .what.describe()
    )]
    Owner {
        /// The path.
        path: String,
        /// Its use.
        what: TrustedUse,
        /// The owner's uid.
        owner: u32,
        /// The user runbook runs as (name, or uid).
        me: String,
        /// Who may own it: "root", or "NAME or root".
        trusted: String,
    },
    /// The path cannot be inspected.
    #[error("cannot inspect {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Checks that `path` (a file or a folder, symlinks followed) can only be
/// changed by the user runbook runs as or by root: owned by one of them and
/// not writable by group or others. Whoever can write a journal, a vars file,
/// the workflow's folder or a password file decides what runbook runs or
/// believes, so such a path is refused, whichever user runbook runs as.
pub fn check_trusted(path: &Path, what: TrustedUse) -> Result<(), Untrusted> {
    let shown = path.display().to_string();
    let metadata = std::fs::metadata(path).map_err(|source| Untrusted::Io {
        path: shown.clone(),
        source,
    })?;
    let me = nix::unistd::geteuid();
    if metadata.uid() != me.as_raw() && metadata.uid() != 0 {
        let me = nix::unistd::User::from_uid(me)
            .ok()
            .flatten()
            .map(|user| user.name)
            .unwrap_or_else(|| me.to_string());
        let trusted = if me == "root" {
            me.clone()
        } else {
            format!("{me} or root")
        };
        return Err(Untrusted::Owner {
            path: shown,
            what,
            owner: metadata.uid(),
            me,
            trusted,
        });
    }
    let Some(who) = writable_by(metadata.mode()) else {
        return Ok(());
    };
    Err(Untrusted::Writable {
        path: shown,
        what,
        who,
    })
}

/// Who besides the owner may write a file of `mode`: `None` when nobody.
fn writable_by(mode: u32) -> Option<&'static str> {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("group and others"),
        (true, false) => Some("group"),
        (false, true) => Some("others"),
        (false, false) => None,
    }
}
