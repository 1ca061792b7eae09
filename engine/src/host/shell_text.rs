//! Text for shell scripts that runbook writes for people to run (the restore
//! plan): `shell_quote(value)` makes any value one shell word, and
//! `shell_comment(value)` keeps a value inside a `#` comment line.

use rhai::{Engine, EvalAltResult, NativeCallContext};

use crate::host::script_error::{describe_position, runtime_error};
use runbook_steps::ErrorKind;

/// `value` as one POSIX shell word (quoted only when needed, by `shlex`): a
/// path with a space stays one argument, and `;`, `$(...)` or a quote in it
/// are data, never a second command.
pub fn shell_quote(value: &str) -> Result<String, String> {
    shlex::try_quote(value)
        .map(|quoted| quoted.into_owned())
        .map_err(|_| {
            "a value with a NUL byte cannot be a shell word (fix the path or value)".to_string()
        })
}

/// `value` for a `#` comment line: a line break (or any control character)
/// would end the comment and start a command, so each becomes `?`.
pub fn shell_comment(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Registers `shell_quote` and `shell_comment`.
pub fn register(engine: &mut Engine, workflow_display: String) {
    engine.register_fn(
        "shell_quote",
        move |context: NativeCallContext, value: &str| -> Result<String, Box<EvalAltResult>> {
            shell_quote(value).map_err(|message| {
                runtime_error(
                    "shell_quote",
                    ErrorKind::Options,
                    format!("shell_quote: {message}"),
                    describe_position(
                        context.call_source().or(Some(&workflow_display)),
                        context.call_position(),
                    ),
                    context.call_position(),
                )
            })
        },
    );
    engine.register_fn("shell_comment", shell_comment);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_hostile_values_one_word() {
        assert_eq!(
            shell_quote("/var/tmp/plain-1.x").unwrap(),
            "/var/tmp/plain-1.x"
        );
        let hostile = "/opt/th files;touch /tmp/x '$(id)'";
        let quoted = shell_quote(hostile).unwrap();
        assert_eq!(shlex::split(&quoted).unwrap(), [hostile]);
        assert!(shell_quote("a\0b").is_err());
        assert_eq!(shell_comment("a\nrm -rf /"), "a?rm -rf /");
    }
}
