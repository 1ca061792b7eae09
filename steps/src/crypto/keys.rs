//! The key files of off-site encryption, in the formats the `age` tool reads:
//!
//! - a recipients file (`age -R FILE`): one public key per line, X25519
//!   (`age1...`), post-quantum (`age1pq1...`) or SSH (`ssh-ed25519 ...`,
//!   `ssh-rsa ...`); empty lines and lines starting with `#` are skipped;
//! - an identity file (`age -i FILE`): `AGE-SECRET-KEY-1...` lines as
//!   `age-keygen` writes them (comments allowed), or an unencrypted OpenSSH
//!   private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
//!
//! A bad line is reported by its number, never its text (an identity file
//! holds secrets).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::runtime::error::{ErrorKind, StepFailure};

/// The largest key file read (age's own limit for identity files).
const KEY_FILE_MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Why a recipients or identity file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read.
    #[error("cannot read the {what} file {}", path.display())]
    Read {
        /// `recipients` or `identity`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A line of a recipients file is no public key age knows.
    #[error("recipients file {} line {line}: not an age (age1...) or SSH public key", path.display())]
    BadRecipient {
        /// The file.
        path: PathBuf,
        /// The line number (1-based).
        line: usize,
    },
    /// The recipients file names no recipient.
    #[error("recipients file {} names no recipient (one age1... or SSH public key per line)", path.display())]
    NoRecipient {
        /// The file.
        path: PathBuf,
    },
    /// The identity file cannot be parsed.
    #[error("identity file {} is not usable: {reason}", path.display())]
    BadIdentity {
        /// The file.
        path: PathBuf,
        /// Why (never a key's text).
        reason: String,
    },
}

impl StepFailure for KeyError {
    fn error_kind(&self) -> ErrorKind {
        ErrorKind::Key
    }
}

/// Reads a file of at most [`KEY_FILE_MAX_BYTES`] as text, refusing anything
/// but a regular file (a FIFO must not hang the step).
fn read_key_file(what: &'static str, path: &Path) -> Result<String, KeyError> {
    crate::runtime::regular_file::read_regular_text(path, KEY_FILE_MAX_BYTES).map_err(|source| {
        KeyError::Read {
            what,
            path: path.to_path_buf(),
            source,
        }
    })
}

/// One public key: X25519, post-quantum or SSH, whichever parses.
// X25519 and SSH recipients are deprecated by the crate (not safe against a
// future quantum computer) but are what `age-keygen` and the age tools in
// distributions make today: sites choose, and `age1pq1...` keys work too.
#[allow(deprecated)]
fn parse_recipient(line: &str) -> Option<Box<dyn age::Recipient + Send>> {
    if let Ok(r) = age::x25519::Recipient::from_str(line) {
        return Some(Box::new(r));
    }
    if let Ok(r) = age::pq::Recipient::from_str(line) {
        return Some(Box::new(r));
    }
    age::ssh::Recipient::from_str(line)
        .ok()
        .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
}

/// The recipients in `path` (see the module documentation).
pub fn read_recipients(path: &Path) -> Result<Vec<Box<dyn age::Recipient + Send>>, KeyError> {
    let text = read_key_file("recipients", path)?;
    let mut recipients = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let recipient = parse_recipient(line).ok_or_else(|| KeyError::BadRecipient {
            path: path.to_path_buf(),
            line: index + 1,
        })?;
        recipients.push(recipient);
    }
    if recipients.is_empty() {
        return Err(KeyError::NoRecipient {
            path: path.to_path_buf(),
        });
    }
    Ok(recipients)
}

/// The identities in `path` (see the module documentation).
pub fn read_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, KeyError> {
    let text = read_key_file("identity", path)?;
    let bad = |reason: String| KeyError::BadIdentity {
        path: path.to_path_buf(),
        reason,
    };
    if text.trim_start().starts_with("-----BEGIN") {
        let identity = age::ssh::Identity::from_buffer(
            std::io::Cursor::new(text.as_bytes()),
            Some(path.display().to_string()),
        )
        .map_err(|e| bad(format!("not an OpenSSH private key ({e})")))?;
        return match identity {
            age::ssh::Identity::Unencrypted(_) => Ok(vec![Box::new(identity)]),
            age::ssh::Identity::Encrypted(_) => Err(bad(
                "the SSH key is protected by a passphrase, which a service cannot type: \
                 use an unencrypted copy or an age identity (age-keygen)"
                    .to_string(),
            )),
            age::ssh::Identity::Unsupported(k) => Err(bad(format!(
                "this SSH key type is not supported by age: {k:?}"
            ))),
        };
    }
    let file = age::IdentityFile::from_buffer(std::io::Cursor::new(text.as_bytes()))
        .map_err(|e| bad(e.to_string()))?;
    let identities = file.into_identities().map_err(|e| bad(e.to_string()))?;
    if identities.is_empty() {
        return Err(bad(
            "it holds no identity (an AGE-SECRET-KEY-1... line, as age-keygen writes)".to_string(),
        ));
    }
    Ok(identities)
}

#[cfg(test)]
mod tests {
    // The X25519 keys `age-keygen` makes (deprecated by the crate, still the common ones).
    #![allow(deprecated)]
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn recipients_and_identities_files_in_age_format() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let recipients = dir.path().join("offsite.recipients");
        std::fs::write(
            &recipients,
            format!("# backup key\n\n{}\n", identity.to_public()),
        )
        .unwrap();
        assert_eq!(read_recipients(&recipients).unwrap().len(), 1);

        let keys = dir.path().join("offsite.key");
        std::fs::write(
            &keys,
            format!("# created: now\n{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
        assert_eq!(read_identities(&keys).unwrap().len(), 1);

        std::fs::write(&recipients, "# none\n").unwrap();
        let e = read_recipients(&recipients).err().unwrap();
        assert!(matches!(e, KeyError::NoRecipient { .. }), "{e}");
        std::fs::write(&recipients, "age1notakey\n").unwrap();
        let e = read_recipients(&recipients).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "recipients file {} line 1: not an age (age1...) or SSH public key",
                recipients.display()
            )
        );
        assert_eq!(e.kind(), "key");

        std::fs::write(&keys, "AGE-SECRET-KEY-1SECRETSTUFF\n").unwrap();
        let e = read_identities(&keys).err().unwrap();
        assert!(!e.to_string().contains("SECRETSTUFF"), "{e}");
        let e = read_identities(&dir.path().join("absent")).err().unwrap();
        assert!(
            e.to_string().starts_with("cannot read the identity file"),
            "{e}"
        );
    }
}
