//! The `runbook` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use runbook_steps::runtime::progress::ProgressMode;

use crate::cli::site_config;
use crate::host::config_site::Site;
use crate::report::exit_code;
use crate::report::logging::{self, LogFormat};
use crate::run::runner::{RunRequest, run};

/// runbook runs operations workflows written in Rhai; the workflows call fast,
/// safe native steps (processes, archives, Elasticsearch, S3).
#[derive(Debug, Parser)]
#[command(name = "runbook", version, after_long_help = exit_code::HELP, after_help = exit_code::HELP)]
pub struct Cli {
    /// The site file every command reads [default: $RUNBOOK_SITE, else
    /// /etc/runbook/site.toml; a missing default file is no error].
    #[arg(long, global = true, value_name = "FILE")]
    site: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a workflow.
    ///
    /// WORKFLOW is a path to a .rhai file, or the name of a stock workflow
    /// (e.g. cluster-hot-backup). Config keys come from the workflow's
    /// config() call, overridden by the site file, then --vars FILE, then
    /// RUNBOOK_<KEY> environment variables, then --set KEY=VALUE.
    Run(RunArgs),
    /// Show what a run would do, changing nothing (= run --dry-run).
    ///
    /// Steps that only read (health and repository checks, read-only commands)
    /// run for real, so a plan also probes the environment.
    Plan(RunArgs),
    /// Compile a workflow and its imports; report syntax errors and calls to
    /// functions that do not exist (exit 2).
    ///
    /// With a site file (--site FILE, RUNBOOK_SITE, or /etc/runbook/site.toml
    /// when it exists, as run and plan read it), also report each of its keys
    /// that no workflow of the site knows, one line each, and a value of this
    /// workflow's keys that its config() refuses (exit 2).
    Check {
        /// A .rhai file or a stock workflow name.
        #[arg(value_parser = crate::cli::completion_values::NameOrAny::workflows(), hide_possible_values = true)]
        workflow: String,
    },
    /// List the steps, or print one step's documentation.
    Steps {
        /// A step name.
        #[arg(value_parser = crate::cli::completion_values::NameOrAny::steps(), hide_possible_values = true)]
        name: Option<String>,
        /// Print the step documentation as Markdown (docs/steps.md).
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
        /// Print name, summary and documentation of each step as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: runbook completions bash > /etc/bash_completion.d/runbook
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): runbook man > /usr/local/share/man/man1/runbook.1
    ///
    /// With --dir DIR: write runbook.1 and a page per subcommand
    /// (runbook-run.1, ...) into DIR, e.g. /usr/local/share/man/man1.
    Man {
        /// Write every page into this folder instead of one page to stdout.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Undo what runs that never finished left behind (SIGKILL, power cut).
    ///
    /// Finds journals with status `running` whose process is gone and carries
    /// out their pending undo actions (clear snapshots, remove partial files
    /// and staging folders). Every `run` does this first, too.
    Recover {
        /// Where run journals are.
        #[arg(long, value_name = "DIR", env = "RUNBOOK_JOURNAL_DIR")]
        journal_dir: Option<PathBuf>,
        /// Only report what would be undone.
        #[arg(long)]
        dry_run: bool,
    },
    /// Verify archives: every header and every byte, and the SHA-256 against
    /// the `.sha256` file next to each (exit 1 if any archive is bad).
    ///
    /// With --set STAMP instead of paths: verify every archive of that backup
    /// set against the SHA-256 in its manifest, check its marker, and record
    /// the result in the manifest (`verified: {time, result, errors}`), which
    /// `runbook list` shows and the `prune` step relies on.
    Verify {
        /// Archives (.tar, .tar.zst, .tar.gz).
        #[arg(required_unless_present = "set", conflicts_with = "set")]
        paths: Vec<PathBuf>,
        /// Fail an archive that has no `.sha256` file.
        #[arg(long)]
        require_checksum: bool,
        /// One JSON object per archive on stdout (with --set: one for the set).
        #[arg(long)]
        json: bool,
        /// The stamp of a backup set to verify, e.g. 20261126_01h15m00s.
        #[arg(long, value_name = "STAMP")]
        set: Option<String>,
        /// The folder of the set manifests (with --set) [default: the site's
        /// manifest_path (RUNBOOK_MANIFEST_PATH, site file), else /mnt/backup].
        #[arg(long, value_name = "DIR")]
        manifest_path: Option<PathBuf>,
        /// Where to check the set's Elasticsearch snapshot (with --set)
        /// [default: the elasticsearch_url its manifest records]. The password
        /// for the user the manifest records: ELASTICSEARCH_PASSWORD(_FILE).
        #[arg(long, value_name = "URL")]
        elasticsearch_url: Option<String>,
        /// With --set: check the set's off-site copy instead, every object
        /// downloaded and hashed against its off-site record
        /// (offsite_STAMP.json); DEST (ALIAS/BUCKET[/PREFIX]) when
        /// the local record is gone or the copy moved.
        #[arg(long, value_name = "DEST", num_args = 0..=1, default_missing_value = "", requires = "set")]
        offsite: Option<String>,
    },
    /// List the backup sets: complete or not, last verification, parts, size, age.
    ///
    /// A set is a manifest backup_STAMP.json in the manifest folder; archives
    /// and .info markers whose stamp has no manifest are listed as INCOMPLETE
    /// (a failed, interrupted or running backup, or another tool's set); a
    /// set whose archives went missing or changed size since, or whose
    /// Elasticsearch snapshot is gone, is DAMAGED. ORIGIN says who made it:
    /// the workflow a runbook manifest records, `foreign` (no manifest, or one
    /// without an origin) or DAMAGED (a manifest that cannot be read or names
    /// what runbook never writes); retention only touches its own workflow's
    /// sets. Nothing is read but file names, sizes, manifests and the
    /// snapshots' state: `runbook verify --set STAMP` reads the archives.
    List {
        /// The folder of the set manifests [default: the site's manifest_path
        /// (RUNBOOK_MANIFEST_PATH, site file), else /mnt/backup].
        #[arg(long, value_name = "DIR")]
        manifest_path: Option<PathBuf>,
        /// A folder of archives and .info markers (repeatable) [default: the
        /// site's cassandra_archive_path, elasticsearch_archive_path,
        /// storage_archive_path, s3_archive_path, and the stock folders
        /// cassandra, elasticsearch, storage, minio, seaweedfs under the
        /// manifest folder]. Folders the manifests name are always searched.
        #[arg(long = "archive-path", value_name = "DIR")]
        archive_paths: Vec<PathBuf>,
        /// Print the sets as JSON.
        #[arg(long)]
        json: bool,
        /// Where to check each set's Elasticsearch snapshot [default: the
        /// elasticsearch_url each manifest records]. The password for the
        /// user a manifest records: ELASTICSEARCH_PASSWORD(_FILE).
        #[arg(long, value_name = "URL")]
        elasticsearch_url: Option<String>,
    },
    /// The last run, the newest complete verified set and its age, sets kept
    /// and space at each archive folder (exit 1 when the newest complete,
    /// verified set is older than --max-age, or there is none: a monitoring probe).
    ///
    /// Reads only the journals and the backup catalogue (file names, sizes,
    /// manifests); `runbook list` also checks the snapshots, `runbook verify
    /// --set` the archives.
    Status(crate::cli::status::StatusArgs),
    /// Print the effective config values and where each came from (default,
    /// site file, RUNBOOK_<KEY>, --vars, --set); secrets are never printed.
    ///
    /// With WORKFLOW: every key it declares, resolved as `runbook run` would
    /// (a value a run would refuse is refused here, exit 2). Without: the keys
    /// the site file and RUNBOOK_<KEY> variables set. Both list the engine
    /// settings (journal_dir, lock_dir, ...).
    Config {
        /// A .rhai file or a stock workflow name.
        #[arg(value_parser = crate::cli::completion_values::NameOrAny::workflows(), hide_possible_values = true)]
        workflow: Option<String>,
        /// Set a config key (repeatable), as for `run`.
        #[arg(long = "set", value_name = "KEY=VALUE", requires = "workflow")]
        sets: Vec<String>,
        /// Read config keys from a JSON or TOML file, as for `run`.
        #[arg(long, value_name = "FILE", requires = "workflow")]
        vars: Option<PathBuf>,
        /// Print the values as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the stock workflows, a commented site.toml, and the systemd
    /// service, timer and cron file that run DIR's backup, into DIR.
    Init {
        /// The folder (created if missing).
        dir: PathBuf,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// A .rhai file or a stock workflow name.
    #[arg(value_parser = crate::cli::completion_values::NameOrAny::workflows(), hide_possible_values = true)]
    workflow: String,
    /// Set a config key (repeatable): --set cassandra_keyspace=thehive.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Read config keys from a JSON or TOML file.
    #[arg(long, value_name = "FILE")]
    vars: Option<PathBuf>,
    /// Describe every action instead of doing it.
    #[arg(long)]
    dry_run: bool,
    /// Where run journals go [default: the site file's journal_dir, else
    /// /var/lib/runbook as root, else $XDG_STATE_HOME/runbook]. Given here
    /// (or by RUNBOOK_JOURNAL_DIR) and with no lock_dir set, the run lock
    /// is taken there too: a run history of its own.
    #[arg(long, value_name = "DIR", env = "RUNBOOK_JOURNAL_DIR")]
    journal_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// More detail (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long)]
    quiet: bool,
    /// Give journals to this group with mode 0640 (default: 0600, owner only).
    #[arg(long, value_name = "GROUP", env = "RUNBOOK_JOURNAL_GROUP")]
    journal_group: Option<String>,
    /// Stop script code after this many Rhai operations (an endless loop).
    #[arg(long, value_name = "N", default_value_t = crate::host::engine::MAX_OPERATIONS)]
    max_operations: u64,
    /// At the end of the run (success or failure; not under --dry-run), write
    /// Prometheus metrics to FILE (textfile-collector format, replaced
    /// atomically). A workflow may instead declare a config key `metrics_file`.
    #[arg(long, value_name = "FILE", env = "RUNBOOK_METRICS_FILE")]
    metrics_file: Option<PathBuf>,
    /// At the end of the run (success or failure), write the run summary as
    /// JSON to FILE (`-`: stdout): result, duration, each step with bytes
    /// and throughput, each archive with size and SHA-256, the error.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
}

/// Parses the command line, runs the command, returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                exit_code::INPUT
            } else {
                exit_code::SUCCESS
            };
        }
    };
    if !matches!(cli.command, Command::Run(_) | Command::Plan(_)) {
        // `runbook steps | head` must end quietly, as other tools do. Not for
        // runs: a closed log pipe must never kill a backup half-way.
        // SAFETY: setting a signal disposition before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if matches!(cli.command, Command::Run(_)) {
        // Every program the run starts inherits its pid, so that recovery
        // after a SIGKILL finds those still running (run/orphans.rs).
        // SAFETY: setting an environment variable before any thread starts.
        unsafe {
            std::env::set_var(
                crate::run::orphans::RUN_PID_VARIABLE,
                std::process::id().to_string(),
            );
        }
    }
    dispatch(cli.command, cli.site)
}

/// Runs `command`: one arm per command, each a call into `cli/`; those that
/// read the site file first go through [`with_site`].
fn dispatch(command: Command, site: Option<PathBuf>) -> i32 {
    use crate::cli::commands;
    match command {
        Command::Run(args) => run_command(args, false, site),
        Command::Plan(args) => run_command(args, true, site),
        Command::Config {
            workflow,
            sets,
            vars,
            json,
        } => crate::cli::site_config::config(
            site.as_deref(),
            workflow.as_deref(),
            &sets,
            vars.as_deref(),
            json,
        ),
        Command::Check { workflow } => commands::check(&workflow, site.as_deref()),
        Command::Steps {
            name,
            markdown,
            json,
        } => commands::steps(name.as_deref(), markdown, json),
        Command::Completions { shell } => print_completions(shell),
        Command::Man { dir } => write_man_pages(dir.as_deref()),
        Command::Status(args) => with_site(site, |site| {
            crate::cli::status::status(&args.into_request(site))
        }),
        Command::Init { dir, force } => commands::init(&dir, force),
        Command::Verify {
            paths,
            require_checksum,
            json,
            set: None,
            ..
        } => commands::verify(&paths, require_checksum, json),
        Command::Verify {
            json,
            set: Some(stamp),
            manifest_path,
            elasticsearch_url,
            offsite,
            ..
        } => with_site(site, |site| {
            verify_set(
                site,
                &stamp,
                manifest_path,
                elasticsearch_url,
                offsite,
                json,
            )
        }),
        Command::List {
            manifest_path,
            archive_paths,
            json,
            elasticsearch_url,
        } => with_site(site, |site| {
            let manifest_path = site_config::manifest_path(site, manifest_path);
            crate::cli::catalogue::list(
                &manifest_path,
                &site_config::archive_paths(site, archive_paths, &manifest_path),
                json,
                site_config::elasticsearch_url(site, elasticsearch_url).as_deref(),
            )
        }),
        Command::Recover {
            journal_dir,
            dry_run,
        } => {
            logging::init(LogFormat::Human, 0);
            with_site(site, |site| recover(site, journal_dir, dry_run))
        }
    }
}

/// Runs `command` with the site file (`--site`, else `RUNBOOK_SITE`, else
/// the default one), or gives the exit code of why it cannot be read.
fn with_site(site: Option<PathBuf>, command: impl FnOnce(&Site) -> i32) -> i32 {
    match site_config::load_checked(site.as_deref()) {
        Ok(site) => command(&site),
        Err(code) => code,
    }
}

/// `runbook completions SHELL`.
fn print_completions(shell: clap_complete::Shell) -> i32 {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "runbook", &mut std::io::stdout());
    exit_code::SUCCESS
}

/// `runbook man [--dir DIR]`: one page per command into DIR, else the
/// single page to stdout.
fn write_man_pages(dir: Option<&std::path::Path>) -> i32 {
    let command = <Cli as clap::CommandFactory>::command();
    let written = match dir {
        Some(dir) => crate::cli::man_page::write_pages(command, dir).map(|files| {
            for file in files {
                println!("wrote {}", file.display());
            }
        }),
        None => crate::cli::man_page::render_single_page(command, &mut std::io::stdout()),
    };
    match written {
        Ok(()) => exit_code::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the man page: {e}");
            exit_code::FAILED
        }
    }
}

/// `runbook verify --set STAMP [--offsite [DEST]]`: the set's archives where
/// they are kept, or its off-site copy.
fn verify_set(
    site: &Site,
    stamp: &str,
    manifest_path: Option<PathBuf>,
    elasticsearch_url: Option<String>,
    offsite: Option<String>,
    json: bool,
) -> i32 {
    let manifest_path = site_config::manifest_path(site, manifest_path);
    match offsite {
        Some(dest) => crate::cli::offsite::verify_offsite(
            &manifest_path,
            stamp,
            Some(dest.as_str()).filter(|d| !d.is_empty()),
            json,
        ),
        None => crate::cli::catalogue::verify_set(
            &manifest_path,
            stamp,
            json,
            site_config::elasticsearch_url(site, elasticsearch_url).as_deref(),
        ),
    }
}

/// `runbook recover`: the lock placed as a run places it, then the
/// interrupted runs' journals finished.
fn recover(site: &Site, journal_dir: Option<PathBuf>, dry_run: bool) -> i32 {
    crate::run::lock::set_lock_place(
        match crate::run::lock::lock_place_for(site, journal_dir.as_deref()) {
            Ok(place) => place,
            Err(e) => {
                eprintln!("error: {e}");
                return exit_code::INPUT;
            }
        },
    );
    let journal_dir = site_config::journal_dir(site, journal_dir);
    crate::cli::commands::recover(Some(journal_dir), dry_run)
}

fn run_command(args: RunArgs, plan: bool, site: Option<PathBuf>) -> i32 {
    let verbosity = if args.quiet {
        -1
    } else {
        args.verbose.min(3) as i8
    };
    logging::init(args.log_format, verbosity);
    let progress = if args.quiet {
        ProgressMode::Off
    } else if crate::report::terminal::progress_bars_enabled()
        && args.log_format == LogFormat::Human
    {
        ProgressMode::Bar
    } else {
        ProgressMode::Log
    };
    run(RunRequest {
        workflow: args.workflow,
        sets: args.sets,
        vars: args.vars,
        dry_run: args.dry_run || plan,
        journal_dir: args.journal_dir,
        progress,
        max_operations: args.max_operations,
        journal_group: args.journal_group,
        metrics_file: args.metrics_file,
        summary_json: args.summary_json,
        site,
    })
}
