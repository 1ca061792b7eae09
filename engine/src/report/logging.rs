//! Logs on stderr through `tracing`: a human format (time, level, message) or
//! one JSON object per line, whose keys are the message and the event's
//! structured fields (a step's `step`, `label`, `path`, `part`, `bytes`,
//! `duration_seconds`, ...: see `host::step_log`); every line has secrets
//! masked.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::ChronoLocal;

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `HH:MM:SS LEVEL message`.
    Human,
    /// One JSON object per line.
    Json,
}

/// A writer that buffers one log event and writes it masked to stderr.
pub struct MaskedStderr {
    buffer: Vec<u8>,
}

impl Write for MaskedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let text = crate::host::secrets::mask(&String::from_utf8_lossy(&self.buffer));
            self.buffer.clear();
            std::io::stderr().lock().write_all(text.as_bytes())?;
        }
        Ok(())
    }
}

impl Drop for MaskedStderr {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

struct MakeMaskedStderr;

impl<'a> MakeWriter<'a> for MakeMaskedStderr {
    type Writer = MaskedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        MaskedStderr { buffer: Vec::new() }
    }
}

/// Installs the global subscriber. `verbosity`: -1 quiet, 0 normal, 1 debug, 2+ trace.
/// `RUST_LOG` overrides the level when set.
pub fn init(format: LogFormat, verbosity: i8) {
    let level = match verbosity {
        i8::MIN..=-1 => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("RUNBOOK_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},hyper=warn,reqwest=warn,rustls=warn,h2=warn,object_store=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(MakeMaskedStderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Human => builder
            .with_timer(ChronoLocal::new("%H:%M:%S".to_string()))
            .with_ansi(crate::report::terminal::colours_enabled())
            // The message says it for people; the structured fields
            // (step, path, bytes, ...) are for `--log-format json`.
            .fmt_fields(tracing_subscriber::fmt::format::debug_fn(
                |writer, field, value| {
                    if field.name() == "message" {
                        write!(writer, "{value:?}")
                    } else {
                        Ok(())
                    }
                },
            ))
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
