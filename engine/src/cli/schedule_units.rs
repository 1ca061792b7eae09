//! The scheduling files `runbook init DIR` writes next to the workflows: a
//! systemd service and timer (`DIR/systemd/`) and a cron file
//! (`DIR/runbook.cron`), ready to install.
//!
//! The files are the ones in `docs/systemd/`, embedded in the binary so a
//! `cargo install` user gets them without a checkout. Those show what
//! `runbook init /etc/runbook` writes as root with runbook in
//! `/usr/local/bin`; for another DIR, binary or user, those exact values are
//! replaced: the workflow and site file in DIR, this binary
//! (`std::env::current_exe`), the HOME and MinIO-client config folder of the
//! user who ran `init` (so the `mcli` alias they made is found under
//! systemd, which sets no HOME for a root service), and the journal folder
//! that user's runs use (created now, so the first run can write its
//! metrics file there).

use std::path::{Path, PathBuf};

/// The service, as in docs/systemd/.
const SERVICE: &str = include_str!("../../../docs/systemd/runbook-thehive-backup.service");
/// The timer, as in docs/systemd/.
const TIMER: &str = include_str!("../../../docs/systemd/runbook-thehive-backup.timer");
/// The cron file, as in docs/systemd/.
const CRON: &str = include_str!("../../../docs/systemd/runbook.cron");

/// The unit names (`systemctl enable --now runbook-thehive-backup.timer`).
pub const SERVICE_NAME: &str = "runbook-thehive-backup.service";
/// The timer `runbook status` asks systemd about.
pub const TIMER_NAME: &str = "runbook-thehive-backup.timer";

/// The values the files in docs/systemd/ carry, replaced by [`render`].
const DOC_BINARY: &str = "/usr/local/bin/runbook";
const DOC_DIR: &str = "/etc/runbook";
const DOC_MC_CONFIG_DIR: &str = "/root/.mcli";
const DOC_HOME: &str = "/root";
const DOC_JOURNAL_DIR: &str = "/var/lib/runbook";
const DOC_LOCK_DIR: &str = crate::run::lock::DEFAULT_LOCK_DIR;

/// What the files are made for.
#[derive(Debug, Clone)]
pub struct Site {
    /// The folder `init` writes into (absolute).
    pub dir: PathBuf,
    /// The runbook binary (absolute).
    pub binary: PathBuf,
    /// HOME of the user who runs `init`.
    pub home: PathBuf,
    /// Their MinIO-client config folder (`$MC_CONFIG_DIR`, else `~/.mcli`).
    pub mc_config_dir: PathBuf,
    /// The journal folder of their runs.
    pub journal_dir: PathBuf,
    /// The run locks' folder: set explicitly in the units, because a
    /// `RUNBOOK_JOURNAL_DIR` alone would put the lock in the journal folder,
    /// apart from the lock an admin's manual run takes.
    pub lock_dir: PathBuf,
    /// `None` as root; else the user the service runs as (`User=`).
    pub user: Option<String>,
}

impl Site {
    /// The site of the user running `init DIR` now.
    pub fn current(dir: &Path) -> Result<Site, String> {
        let dir = std::path::absolute(dir)
            .map_err(|e| format!("cannot make {} absolute: {e}", dir.display()))?;
        let binary = std::env::current_exe()
            .map_err(|e| format!("cannot find the runbook binary's path: {e}"))?;
        let root = nix::unistd::geteuid().is_root();
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(if root { DOC_HOME } else { "/" }));
        let mc_config_dir = std::env::var_os("MC_CONFIG_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".mcli"));
        let user = if root {
            None
        } else {
            let uid = nix::unistd::getuid();
            Some(
                nix::unistd::User::from_uid(uid)
                    .ok()
                    .flatten()
                    .map(|u| u.name)
                    .unwrap_or_else(|| uid.to_string()),
            )
        };
        Ok(Site {
            dir,
            binary,
            home,
            mc_config_dir,
            // The folder runs use: RUNBOOK_JOURNAL_DIR, as `run` reads it, else the default.
            journal_dir: std::env::var_os("RUNBOOK_JOURNAL_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .map(|d| std::path::absolute(&d).unwrap_or(d))
                .unwrap_or_else(crate::host::journal::default_journal_dir),
            // RUNBOOK_LOCK_DIR as `run` reads it, else the folder every user shares.
            lock_dir: std::env::var_os("RUNBOOK_LOCK_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .map(|d| std::path::absolute(&d).unwrap_or(d))
                .unwrap_or_else(|| PathBuf::from(DOC_LOCK_DIR)),
            user,
        })
    }
}

/// `value` as text a `place` (a unit file, a cron line) can name: UTF-8,
/// without control characters.
fn nameable_text<'a>(value: &'a Path, place: &str) -> Result<&'a str, String> {
    let text = value
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", value.display()))?;
    if text.chars().any(char::is_control) {
        return Err(format!(
            "{text:?} holds a control character: no {place} can name it"
        ));
    }
    Ok(text)
}

/// A value as one word of a unit file line: `%` doubled (systemd specifiers),
/// quoted when it holds blanks or quotes. Control characters are refused.
fn unit_word(value: &Path, exec_line: bool) -> Result<String, String> {
    let text = nameable_text(value, "unit file")?;
    let mut word = text.replace('%', "%%");
    if exec_line {
        word = word.replace('$', "$$");
    }
    if word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
        word = format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""));
    }
    Ok(word)
}

/// A value in a cron file: `%` means a new line there, and blanks split words.
fn cron_word(value: &Path) -> Result<String, String> {
    let text = nameable_text(value, "cron line")?;
    let quoted = shlex::try_quote(text).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(quoted.replace('%', "\\%"))
}

/// Replaces the `DOC_*` paths in `template` (each with what follows it up to
/// the next blank, e.g. `/etc/runbook/site.toml`) by the site's, in one pass
/// (a filled-in path is never replaced again). `word` turns a path into what
/// the file format needs; its flag says the line is an `ExecStart=`.
fn fill(
    template: &str,
    site: &Site,
    word: impl Fn(&Path, bool) -> Result<String, String>,
) -> Result<String, String> {
    // Longest first: the MinIO folder lies under HOME.
    let replacements: [(&str, &Path); 6] = [
        (DOC_BINARY, &site.binary),
        (DOC_MC_CONFIG_DIR, &site.mc_config_dir),
        (DOC_JOURNAL_DIR, &site.journal_dir),
        (DOC_LOCK_DIR, &site.lock_dir),
        (DOC_DIR, &site.dir),
        (DOC_HOME, &site.home),
    ];
    let mut out = String::with_capacity(template.len());
    for line in template.split_inclusive('\n') {
        // Comments describe the docs' example: left as written.
        if line.starts_with('#') {
            out.push_str(line);
            continue;
        }
        let exec = line.starts_with("ExecStart=");
        let mut rest = line;
        let mut previous = None;
        'scan: while let Some(c) = rest.chars().next() {
            let starts_word = matches!(previous, None | Some('=' | ' ' | ':'));
            if c == '/' && starts_word {
                for (from, to) in replacements {
                    let Some(after) = rest.strip_prefix(from) else {
                        continue;
                    };
                    // A whole component: `/etc/runbook` is not in `/etc/runbookx`.
                    if !(after.is_empty() || after.starts_with(['/', ' ', '\n'])) {
                        continue;
                    }
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    let tail = after[..end].trim_start_matches('/');
                    let path = if tail.is_empty() {
                        to.to_path_buf()
                    } else {
                        to.join(tail)
                    };
                    out.push_str(&word(&path, exec)?);
                    rest = &after[end..];
                    previous = Some('/');
                    continue 'scan;
                }
            }
            out.push(c);
            previous = Some(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(out)
}

/// The `User=` line a non-root site's service gets, after `[Service]`.
fn with_user(service: String, user: Option<&str>) -> String {
    match user {
        None => service,
        Some(user) => service.replacen(
            "[Service]\n",
            &format!(
                "[Service]\n# Written by `runbook init` run as {user}: the run is {user}'s, with their journal folder.\nUser={user}\n"
            ),
            1,
        ),
    }
}

/// The cron line's user field: `root`, or the user who ran `init`.
fn with_cron_user(cron: String, user: Option<&str>) -> String {
    match user {
        None => cron,
        Some(user) => cron.replace(" * * * root ", &format!(" * * * {user} ")),
    }
}

/// The three files for `site`: (path relative to DIR, content).
pub fn render(site: &Site) -> Result<Vec<(&'static str, String)>, String> {
    let service = fill(SERVICE, site, unit_word)?;
    let timer = fill(TIMER, site, unit_word)?;
    let cron = fill(CRON, site, |p, _| cron_word(p))?;
    Ok(vec![
        (
            "systemd/runbook-thehive-backup.service",
            with_user(service, site.user.as_deref()),
        ),
        ("systemd/runbook-thehive-backup.timer", timer),
        ("runbook.cron", with_cron_user(cron, site.user.as_deref())),
    ])
}

/// What to do next, printed by `init`.
pub fn instructions(site: &Site) -> String {
    let dir = site.dir.display();
    format!(
        "Scheduling (nightly at 01:15; edit the timer's OnCalendar= first if needed):\n  \
         cp {dir}/systemd/runbook-thehive-backup.* /etc/systemd/system/\n  \
         systemctl daemon-reload && systemctl enable --now {TIMER_NAME}\n\
         or, without systemd: cp {dir}/runbook.cron /etc/cron.d/runbook-thehive-backup\n\
         Runs write their journals to {} (`runbook status` shows the last one and the next timer run).",
        site.journal_dir.display()
    )
}

/// Creates the journal folder the service writes to (mode 0755 when new:
/// node_exporter, another user, reads the metrics file in it; journals and
/// the lock are 0600 themselves).
pub fn prepare_journal_dir(site: &Site) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&site.journal_dir)
        .map_err(|e| {
            format!(
                "cannot create the journal folder {}: {e}",
                site.journal_dir.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(dir: &str, user: Option<&str>) -> Site {
        Site {
            dir: dir.into(),
            binary: "/opt/rb/bin/runbook".into(),
            home: "/home/ann".into(),
            mc_config_dir: "/home/ann/.mcli".into(),
            journal_dir: "/home/ann/.local/state/runbook".into(),
            lock_dir: DOC_LOCK_DIR.into(),
            user: user.map(str::to_string),
        }
    }

    #[test]
    fn root_in_etc_runbook_gives_the_documented_files() {
        let site = Site {
            dir: DOC_DIR.into(),
            binary: DOC_BINARY.into(),
            home: DOC_HOME.into(),
            mc_config_dir: DOC_MC_CONFIG_DIR.into(),
            journal_dir: DOC_JOURNAL_DIR.into(),
            lock_dir: DOC_LOCK_DIR.into(),
            user: None,
        };
        let files = render(&site).unwrap();
        assert_eq!(files[0].1, SERVICE);
        assert_eq!(files[1].1, TIMER);
        assert_eq!(files[2].1, CRON);
    }

    #[test]
    fn paths_user_and_odd_characters_are_filled_in() {
        let files = render(&site("/srv/site 1/rb%x", Some("ann"))).unwrap();
        let service = &files[0].1;
        assert!(
            service.contains(
                "ExecStart=/opt/rb/bin/runbook run \"/srv/site 1/rb%%x/cluster-hot-backup.rhai\"\n"
            ),
            "{service}"
        );
        assert!(
            service.contains("Environment=RUNBOOK_SITE=\"/srv/site 1/rb%%x/site.toml\"\n"),
            "{service}"
        );
        assert!(
            service.contains("Environment=HOME=/home/ann\n"),
            "{service}"
        );
        assert!(service.contains("Environment=MC_CONFIG_DIR=/home/ann/.mcli\n"));
        assert!(
            service.contains("Environment=RUNBOOK_JOURNAL_DIR=/home/ann/.local/state/runbook\n")
        );
        assert!(service.contains(
            "Environment=RUNBOOK_METRICS_FILE=/home/ann/.local/state/runbook/runbook.prom\n"
        ));
        assert!(service.contains("[Service]\n# Written by"), "{service}");
        assert!(service.contains("\nUser=ann\n"));
        let cron = &files[2].1;
        assert!(
            cron.contains(
                "15 1 * * * ann /opt/rb/bin/runbook run '/srv/site 1/rb\\%x/cluster-hot-backup.rhai' -q"
            ),
            "{cron}"
        );
        assert!(cron.contains("\nHOME=/home/ann\n"), "{cron}");
        assert!(render(&site("/srv/a\nb", None)).is_err());
    }
}
