//! `age_decrypt`: decrypts an `.age` file (an off-site object brought back)
//! to the archive it was made from, for a restore.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::crypto::encrypt::AGE_SUFFIX;
use crate::crypto::keys::{KeyError, read_identities};
use crate::crypto::stream::{CopyError, copy_hashing};
use crate::runtime::atomic_file::PartialFile;
use crate::runtime::blocking_work::{Stop, WorkControl, run_blocking};
use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};

/// The `age_decrypt` step.
pub struct AgeDecrypt;

/// Options of `age_decrypt`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecryptOptions {
    /// The encrypted file (`NAME.age`).
    pub path: PathBuf,
    /// An identity file: `AGE-SECRET-KEY-1...` lines, or an OpenSSH private key.
    pub identity: PathBuf,
    /// Where the plain file goes (default: `path` without `.age`).
    #[serde(default)]
    pub dest: Option<PathBuf>,
    /// The plain file's expected SHA-256 (hex), e.g. the manifest's.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl DecryptOptions {
    /// `dest`, or `path` without its `.age` suffix.
    fn dest(&self) -> Result<PathBuf, DecryptError> {
        if let Some(dest) = &self.dest {
            return Ok(dest.clone());
        }
        let text = self.path.to_string_lossy();
        match text.strip_suffix(AGE_SUFFIX) {
            Some(plain) if !plain.is_empty() && !plain.ends_with('/') => Ok(PathBuf::from(plain)),
            _ => Err(DecryptError::NoDest {
                path: self.path.clone(),
            }),
        }
    }
}

/// Result of `age_decrypt`.
#[derive(Debug, Default, Serialize)]
pub struct DecryptOutput {
    /// The plain file written.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256 (hex).
    pub sha256: String,
    /// The encrypted file's size.
    pub encrypted_bytes: u64,
    /// Wall time.
    pub duration_ms: u64,
}

/// Why `age_decrypt` failed.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// The identity file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// No identity of the file can decrypt it.
    #[error("{} was not encrypted to any key in identity file {}: give the identity matching the off-site recipients (nothing was written)", path.display(), identity.display())]
    WrongIdentity {
        /// The encrypted file.
        path: PathBuf,
        /// The identity file.
        identity: PathBuf,
    },
    /// The file is no age file, or its header or data is damaged.
    #[error("{} cannot be decrypted: {reason} (nothing was written)", path.display())]
    Damaged {
        /// The encrypted file.
        path: PathBuf,
        /// age's reason.
        reason: String,
    },
    /// No `dest` and the path does not end in `.age`.
    #[error("{} does not end in .age: give `dest`", path.display())]
    NoDest {
        /// The encrypted file.
        path: PathBuf,
    },
    /// Something is already at `dest`.
    #[error("{} already exists: the decrypted file would replace it (remove it, or give another `dest`)", dest.display())]
    Exists {
        /// The destination.
        dest: PathBuf,
    },
    /// The decrypted bytes are not the expected ones.
    #[error("{} decrypts to data whose sha256 is {got}, expected {expected} (nothing was written)", path.display())]
    Mismatch {
        /// The encrypted file.
        path: PathBuf,
        /// The expected SHA-256.
        expected: String,
        /// What it hashed to.
        got: String,
    },
    /// A local file operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The disk filled up.
    #[error("the disk holding {} is full (nothing was left behind)", path.display())]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// The run was interrupted or the step timed out.
    #[error("decrypting {}: {stop}", path.display())]
    Stopped {
        /// The encrypted file.
        path: PathBuf,
        /// Why.
        stop: Stop,
    },
}

impl StepFailure for DecryptError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            DecryptError::Key(e) => e.error_kind(),
            DecryptError::WrongIdentity { .. } => ErrorKind::WrongKey,
            DecryptError::Damaged { .. } => ErrorKind::Decrypt,
            DecryptError::NoDest { .. } => ErrorKind::Options,
            DecryptError::Exists { .. } => ErrorKind::Exists,
            DecryptError::Mismatch { .. } => ErrorKind::ChecksumMismatch,
            DecryptError::Io { .. } => ErrorKind::Io,
            DecryptError::DiskFull { .. } => ErrorKind::DiskFull,
            DecryptError::Stopped { stop, .. } => stop.kind(),
        }
    }
}

impl Step for AgeDecrypt {
    const NAME: &'static str = "age_decrypt";
    const DOC: &'static str = "\
Decrypts an age file (an encrypted off-site object) with an identity file.

`identity` is a file as `age -i` reads it: `AGE-SECRET-KEY-1...` lines (from
`age-keygen`; `#` comments allowed), or an unencrypted OpenSSH private key. The
plain file goes to `dest` (default: `path` without `.age`), written under a
`.partial` name and renamed only once the whole file decrypted, every 64 KiB
chunk authenticated and, with `sha256`, the SHA-256 of the result matched: a
wrong identity, a damaged or truncated file, a mismatch, an interruption or a
full disk leave nothing at `dest`. Something already at `dest` is never
replaced. Streamed: constant memory.

Options:
  path      string  the encrypted file, NAME.age (required)
  identity  string  identity file: age secret keys or an OpenSSH private key (required)
  dest      string  the plain file to write (default: path without .age)
  sha256    string  the plain file's expected SHA-256, e.g. the manifest's (default: none)

Result:
  path             string  the plain file written
  bytes            int     its size
  sha256           string  its SHA-256
  encrypted_bytes  int     the encrypted file's size
  duration_ms      int     wall time

Errors: `wrong_key` (no identity in the file matches), `decrypt` (damaged or
not age), `key` (identity file unusable), `checksum_mismatch`, `exists`.

Example:
  age_decrypt(#{ path: `${archive}.age`, identity: \"/root/offsite.key\", sha256: part.sha256 });
";

    type Options = DecryptOptions;
    type Output = DecryptOutput;

    fn describe(options: &DecryptOptions) -> String {
        let dest = options
            .dest()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|_| "?".to_string());
        format!(
            "decrypt {} to {dest} with the identity in {}",
            options.path.display(),
            options.identity.display()
        )
    }

    fn dry_run(_options: &DecryptOptions) -> DryRun<DecryptOutput> {
        DryRun::Skip(DecryptOutput::default())
    }

    async fn run(options: DecryptOptions, ctx: StepContext) -> Result<DecryptOutput, StepError> {
        let (control, _guard) = WorkControl::from_context(&ctx);
        run_blocking("age_decrypt", move || decrypt_file(&options, &control)).await
    }
}

/// The blocking body of the step: refuses an existing `dest`, opens the
/// decrypted stream, copies it to `dest`'s `.partial` while hashing it,
/// checks the expected SHA-256, then renames the file into place.
pub fn decrypt_file(
    options: &DecryptOptions,
    control: &WorkControl,
) -> Result<DecryptOutput, DecryptError> {
    let started = Instant::now();
    let path = &options.path;
    let dest = options.dest()?;
    let io = |action, at: &Path| {
        let at = at.to_path_buf();
        move |source| DecryptError::Io {
            action,
            path: at,
            source,
        }
    };
    if std::fs::symlink_metadata(&dest).is_ok() {
        return Err(DecryptError::Exists { dest });
    }
    let (mut plain, encrypted_bytes) = open_decrypted(options)?;
    let damaged = |reason: String| DecryptError::Damaged {
        path: path.clone(),
        reason,
    };
    let write_error = |e: std::io::Error| {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            DecryptError::DiskFull { path: dest.clone() }
        } else {
            io("write", &dest)(e)
        }
    };
    // Only after the header matched an identity: a wrong key writes nothing.
    let (partial, mut file) = PartialFile::create(&dest, 0o600).map_err(write_error)?;
    let (bytes, sha256) = copy_hashing(&mut plain, &mut file, control).map_err(|e| match e {
        CopyError::Read(e) => damaged(e.to_string()),
        CopyError::Write(e) => write_error(e),
        CopyError::Stopped(stop) => DecryptError::Stopped {
            path: path.clone(),
            stop,
        },
    })?;
    if let Some(expected) = &options.sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(DecryptError::Mismatch {
            path: path.clone(),
            expected: expected.clone(),
            got: sha256,
        });
    }
    partial.commit(file).map_err(write_error)?;
    Ok(DecryptOutput {
        path: dest,
        bytes,
        sha256,
        encrypted_bytes,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The `.age` file's plain content as a stream, once its header matched one
/// of the identities (a wrong key fails here, before anything is written),
/// and the encrypted file's size.
fn open_decrypted(
    options: &DecryptOptions,
) -> Result<(age::stream::StreamReader<BufReader<File>>, u64), DecryptError> {
    let path = &options.path;
    let read_error = |source| DecryptError::Io {
        action: "read",
        path: path.clone(),
        source,
    };
    let identities = read_identities(&options.identity)?;
    let source = crate::runtime::regular_file::open_regular(path).map_err(read_error)?;
    let encrypted_bytes = source.metadata().map_err(read_error)?.len();
    let damaged = |reason: String| DecryptError::Damaged {
        path: path.clone(),
        reason,
    };
    let decryptor =
        age::Decryptor::new_buffered(BufReader::new(source)).map_err(|e| damaged(e.to_string()))?;
    let plain = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => DecryptError::WrongIdentity {
                path: path.clone(),
                identity: options.identity.clone(),
            },
            other => damaged(other.to_string()),
        })?;
    Ok((plain, encrypted_bytes))
}

#[cfg(test)]
mod tests {
    // The X25519 keys `age-keygen` makes (deprecated by the crate, still the common ones).
    #![allow(deprecated)]
    use super::*;
    use crate::crypto::encrypt::{EncryptOptions, encrypt_files};
    use age::secrecy::ExposeSecret;

    /// `age_encrypt`'s result for the one file `archive`.
    fn encrypt_one(
        archive: &Path,
        recipients: PathBuf,
        control: &WorkControl,
    ) -> crate::crypto::encrypt::EncryptOutput {
        encrypt_files(
            &EncryptOptions {
                files: vec![archive.to_path_buf()],
                recipients,
            },
            control,
        )
        .unwrap()
    }

    fn keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let identity = age::x25519::Identity::generate();
        let recipients = dir.join(format!("{name}.recipients"));
        std::fs::write(&recipients, format!("{}\n", identity.to_public())).unwrap();
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&key, format!("{}\n", identity.to_string().expose_secret())).unwrap();
        (recipients, key)
    }

    #[test]
    fn round_trip_wrong_key_and_damage_leave_nothing_half_written() {
        let dir = tempfile::tempdir().unwrap();
        let (recipients, key) = keys(dir.path(), "right");
        let (_, other_key) = keys(dir.path(), "other");
        let archive = dir.path().join("cassandra_x.tar");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&archive, &data).unwrap();
        let control = WorkControl::new("t");
        let sealed = encrypt_one(&archive, recipients, &control);
        let file = &sealed.files[0];
        let encrypted = std::fs::read(&file.encrypted).unwrap();
        assert!(encrypted.starts_with(b"age-encryption.org/v1\n"));
        assert_eq!(file.encrypted_bytes, encrypted.len() as u64);
        assert_eq!(
            file.encrypted_sha256,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&encrypted))
        );
        std::fs::remove_file(&archive).unwrap();

        let options = |identity: &Path| DecryptOptions {
            path: file.encrypted.clone(),
            identity: identity.to_path_buf(),
            dest: None,
            sha256: Some(file.sha256.clone()),
        };
        let e = decrypt_file(&options(&other_key), &control).unwrap_err();
        assert_eq!(e.kind(), "wrong_key", "{e}");
        assert!(!archive.exists());
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")
        }));

        let out = decrypt_file(&options(&key), &control).unwrap();
        assert_eq!(std::fs::read(&archive).unwrap(), data);
        assert_eq!(out.sha256, file.sha256);
        let e = decrypt_file(&options(&key), &control).unwrap_err();
        assert_eq!(e.kind(), "exists", "{e}");
        std::fs::remove_file(&archive).unwrap();

        // One flipped byte in the payload: authenticated chunks refuse it.
        let mut damaged = encrypted.clone();
        let at = damaged.len() - 100;
        damaged[at] ^= 1;
        std::fs::write(&file.encrypted, &damaged).unwrap();
        let e = decrypt_file(&options(&key), &control).unwrap_err();
        assert_eq!(e.kind(), "decrypt", "{e}");
        assert!(!archive.exists());
        assert!(!crate::runtime::atomic_file::partial_path(&archive).exists());
    }

    /// A throwaway ed25519 key made for this test with `ssh-keygen -N ""`.
    const SSH_PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACCubhISEa9/UUn8yJbTN9ejXyLVdscSGY0rDejk5AuMgwAAAJDaAccT2gHH\nEwAAAAtzc2gtZWQyNTUxOQAAACCubhISEa9/UUn8yJbTN9ejXyLVdscSGY0rDejk5AuMgw\nAAAEAfTaCk1W3JV0sr2KQBQPavHbohMm8PAHguKgXs57fMvq5uEhIRr39RSfzIltM316Nf\nItV2xxIZjSsN6OTkC4yDAAAADHJ1bmJvb2stdGVzdAE=\n-----END OPENSSH PRIVATE KEY-----\n";
    const SSH_PUBLIC: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK5uEhIRr39RSfzIltM316NfItV2xxIZjSsN6OTkC4yD runbook-test";

    #[test]
    fn ssh_keys_work_as_recipient_and_identity() {
        let dir = tempfile::tempdir().unwrap();
        let recipients = dir.path().join("offsite.recipients");
        std::fs::write(&recipients, format!("# an admin's ssh key\n{SSH_PUBLIC}\n")).unwrap();
        let key = dir.path().join("id_ed25519");
        std::fs::write(&key, SSH_PRIVATE).unwrap();
        let archive = dir.path().join("files_x.tar");
        std::fs::write(&archive, b"attachments").unwrap();
        let control = WorkControl::new("t");
        let sealed = encrypt_one(&archive, recipients, &control);
        let back = dir.path().join("back.tar");
        decrypt_file(
            &DecryptOptions {
                path: sealed.files[0].encrypted.clone(),
                identity: key,
                dest: Some(back.clone()),
                sha256: None,
            },
            &control,
        )
        .unwrap();
        assert_eq!(std::fs::read(&back).unwrap(), b"attachments");
    }
}
