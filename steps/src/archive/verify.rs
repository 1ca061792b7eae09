//! `verify_archive`: the step around [`verification`](super::verification),
//! which holds the reading and checking shared with `extract_archive` and
//! `runbook verify`.

use crate::archive::verification::{VerifyArchiveOptions, VerifyReport, verify_archive};
use crate::runtime::blocking_work::{WorkControl, run_blocking};
use crate::runtime::error::StepError;
use crate::runtime::step::{DryRun, Step, StepContext};

/// The `verify_archive` step.
pub struct VerifyArchive;

impl Step for VerifyArchive {
    const NAME: &'static str = "verify_archive";
    const HANDLES_TIMEOUT: bool = true;
    const DOC: &'static str = "\
Checks a tar archive (plain, zstd or gzip) end to end, and its SHA-256.

One pass reads every header and every byte of every entry while hashing the
file: a bad header checksum, a truncated entry, bad padding, a missing
end-of-archive marker or corrupt compressed data fail the step with the
archive, the entry and the byte offset (in the tar stream; for zstd/gzip that
is the decompressed stream). The compression is recognized from the file's
first bytes. The SHA-256 is compared with `sha256`, else with `<path>.sha256`
when it exists (as written by tar_dir, or by `sha256sum`). The CRC-32s tar_dir
adds to that file are checked entry by entry, so damaged data is reported with
the entry it belongs to. Runs under --dry-run (skipping archives not written yet).
Also available as the command `runbook verify PATH...`.

Options:
  path              string            the archive (required)
  sha256            string            expected hex SHA-256 (default: from <path>.sha256)
  require_checksum  bool              fail when no checksum is available (default false)
  expect            array of strings  glob patterns that must each match an entry,
                                      `*` does not cross `/` (default [])
  min_entries       int               the least number of entries (default: none)
  max_rate          string            most bytes per second read, e.g. \"200MiB/s\"; steps
                                      given the same rate share it (default \"\": no limit)
  read_from         string            \"cache\" (default): read as any file is, mostly from
                                      the page cache right after the archive is written;
                                      \"disk\": flush the archive and drop its pages from the
                                      page cache first (posix_fadvise DONTNEED), so every
                                      byte is read back from the device (and drop them
                                      again after); pages the kernel keeps (tmpfs) are
                                      counted in `cached_pages`, with a warning

Result:
  ok            bool     true (a bad archive fails the step)
  entries       int      entries (files, folders, links)
  bytes         int      archive size
  sha256        string   hex SHA-256 of the archive
  read_from     string   \"cache\" or \"disk\"
  cached_pages  int      (\"disk\") pages still cached when the read began (normally 0)

Example:
  verify_archive(#{ path: archive.path, require_checksum: true,
                    expect: [`cassandra_${stamp}/create_keyspace_*.cql`], min_entries: 2 });
";

    type Options = VerifyArchiveOptions;
    type Output = VerifyReport;

    fn describe(options: &VerifyArchiveOptions) -> String {
        format!("verify archive {}", options.path.display())
    }

    fn label(options: &VerifyArchiveOptions) -> Option<String> {
        options
            .path
            .file_name()
            .map(|n| format!("verify {}", n.to_string_lossy()))
    }

    /// Verifying only reads: it runs for real under --dry-run, on archives
    /// that exist.
    fn dry_run(_options: &VerifyArchiveOptions) -> DryRun<VerifyReport> {
        DryRun::Run
    }

    fn changes(_options: &VerifyArchiveOptions) -> bool {
        false
    }

    async fn run(
        options: VerifyArchiveOptions,
        ctx: StepContext,
    ) -> Result<VerifyReport, StepError> {
        // Under --dry-run an archive the plan would have written does not
        // exist yet: there is nothing to read, so say what would be checked.
        if ctx.dry_run && !options.path.exists() {
            tracing::info!(
                "{}: [dry-run] would verify {} (not written yet)",
                ctx.label,
                options.path.display()
            );
            return Ok(VerifyReport {
                ok: true,
                ..VerifyReport::default()
            });
        }
        let (control, _cancel_when_dropped) = WorkControl::from_context(&ctx);
        run_blocking("verify_archive", move || verify_archive(&options, &control)).await
    }
}
