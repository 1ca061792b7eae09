//! `age_encrypt`: encrypts files to `NAME.age` next to each, for the
//! off-site copy; the files themselves are left as they are.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::crypto::keys::{KeyError, read_recipients};
use crate::crypto::stream::{CopyError, HashingWriter, copy_hashing};
use crate::runtime::atomic_file::{PartialFile, with_suffix};
use crate::runtime::blocking_work::{Stop, WorkControl, run_blocking};
use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::runtime::step::{DryRun, Step, StepContext};

/// The suffix of an encrypted file and of its off-site object.
pub const AGE_SUFFIX: &str = ".age";

/// The `age_encrypt` step.
pub struct AgeEncrypt;

/// Options of `age_encrypt`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptOptions {
    /// The files to encrypt, each to `<file>.age`.
    pub files: Vec<PathBuf>,
    /// A recipients file: one age (`age1...`) or SSH public key per line.
    pub recipients: PathBuf,
}

/// Result of `age_encrypt`.
#[derive(Debug, Default, Serialize)]
pub struct EncryptOutput {
    /// One entry per file, in the order given.
    pub files: Vec<EncryptedFile>,
    /// Plain bytes read, all files.
    pub bytes: u64,
    /// Encrypted bytes written, all files.
    pub encrypted_bytes: u64,
    /// Wall time.
    pub duration_ms: u64,
}

/// One file of [`EncryptOutput`].
#[derive(Clone, Debug, Serialize)]
pub struct EncryptedFile {
    /// The plain file.
    pub path: PathBuf,
    /// `<path>.age`.
    pub encrypted: PathBuf,
    /// The plain file's size.
    pub bytes: u64,
    /// The plain file's SHA-256 (hex), as read while encrypting.
    pub sha256: String,
    /// The encrypted file's size.
    pub encrypted_bytes: u64,
    /// The encrypted file's SHA-256 (hex): what the off-site object must hash to.
    pub encrypted_sha256: String,
}

/// Why `age_encrypt` failed.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    /// The recipients file is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The recipients cannot be used together (age refuses to mix, e.g.,
    /// post-quantum and X25519 keys in one file).
    #[error("the recipients in {} cannot be used together: {reason}", path.display())]
    Recipients {
        /// The recipients file.
        path: PathBuf,
        /// age's reason.
        reason: String,
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
    /// The disk filled up while writing the encrypted file.
    #[error("the disk holding {} is full; nothing was left behind (the encrypted copy needs as much space as the file)", path.display())]
    DiskFull {
        /// The encrypted file being written.
        path: PathBuf,
    },
    /// The file changed size while it was encrypted.
    #[error("{} changed while it was encrypted ({was} bytes, then {read} read); nothing was left behind", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// Its size before.
        was: u64,
        /// What was read.
        read: u64,
    },
    /// The run was interrupted or the step timed out.
    #[error("encrypting {}: {stop}", path.display())]
    Stopped {
        /// The file being encrypted.
        path: PathBuf,
        /// Why.
        stop: Stop,
    },
}

impl StepFailure for EncryptError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            EncryptError::Key(e) => e.error_kind(),
            EncryptError::Recipients { .. } => ErrorKind::Key,
            EncryptError::Io { .. } => ErrorKind::Io,
            EncryptError::DiskFull { .. } => ErrorKind::DiskFull,
            EncryptError::Changed { .. } => ErrorKind::Changed,
            EncryptError::Stopped { stop, .. } => stop.kind(),
        }
    }
}

impl Step for AgeEncrypt {
    const NAME: &'static str = "age_encrypt";
    const DOC: &'static str = "\
Encrypts files with age (the `age` crate) to the keys of a recipients file.

Each file becomes `<file>.age` next to it, in the age format (the `age` and
`rage` tools decrypt it: `age -d -i KEY FILE.age`); the file itself is left as
it is. `recipients` is a file in the format of `age -R`: one public key per
line, X25519 (`age1...`, from `age-keygen`), post-quantum (`age1pq1...`) or SSH
(`ssh-ed25519 ...`, `ssh-rsa ...`); `#` comments and empty lines are skipped.
Every recipient can decrypt; the machine that encrypts needs no secret. With no
file (and under `runbook plan`) only the recipients file is read: a pre-flight
check.

Files are streamed in 1 MiB chunks (constant memory) and written under a
`.partial` name renamed when complete, so an interruption, a full disk or a
file that changes size while read leaves no `.age` file behind. The result
gives the SHA-256 of both sides: `encrypted_sha256` checks the off-site object
without the identity, `sha256` the archive once decrypted.

Options:
  files       array   files to encrypt, each to <file>.age (required)
  recipients  string  recipients file, one age or SSH public key per line (required)

Result:
  files            array  per file: #{ path, encrypted, bytes, sha256,
                          encrypted_bytes, encrypted_sha256 }
  bytes            int    plain bytes read
  encrypted_bytes  int    encrypted bytes written
  duration_ms      int    wall time

Example:
  let sealed = age_encrypt(#{ files: [archive.path], recipients: \"/etc/runbook/offsite.recipients\" });
  s3_upload(#{ files: sealed.files.map(|f| f.encrypted), dest: \"offsite/thehive\" });
";

    type Options = EncryptOptions;
    type Output = EncryptOutput;

    fn describe(options: &EncryptOptions) -> String {
        format!(
            "encrypt {} file{} with age to the recipients in {}",
            options.files.len(),
            if options.files.len() == 1 { "" } else { "s" },
            options.recipients.display()
        )
    }

    fn dry_run(_options: &EncryptOptions) -> DryRun<EncryptOutput> {
        // A plan reads the recipients file (a bad one fails the plan) and writes nothing.
        DryRun::Run
    }

    fn changes(options: &EncryptOptions) -> bool {
        !options.files.is_empty()
    }

    async fn run(options: EncryptOptions, ctx: StepContext) -> Result<EncryptOutput, StepError> {
        let (control, _guard) = WorkControl::from_context(&ctx);
        if ctx.dry_run {
            let recipients = options.recipients.clone();
            return run_blocking("age_encrypt", move || {
                read_recipients(&recipients).map(|_| EncryptOutput::default())
            })
            .await;
        }
        run_blocking("age_encrypt", move || encrypt_files(&options, &control)).await
    }
}

/// The blocking body of the step: the recipients are read once, before any
/// file is written.
pub fn encrypt_files(
    options: &EncryptOptions,
    control: &WorkControl,
) -> Result<EncryptOutput, EncryptError> {
    let started = Instant::now();
    let recipients = read_recipients(&options.recipients)?;
    let mut output = EncryptOutput::default();
    for path in &options.files {
        let recipients = recipients.iter().map(|r| r.as_ref() as &dyn age::Recipient);
        let encryptor =
            age::Encryptor::with_recipients(recipients).map_err(|e| EncryptError::Recipients {
                path: options.recipients.clone(),
                reason: e.to_string(),
            })?;
        let file = encrypt_one(path, encryptor, control)?;
        output.bytes += file.bytes;
        output.encrypted_bytes += file.encrypted_bytes;
        output.files.push(file);
    }
    output.duration_ms = started.elapsed().as_millis() as u64;
    Ok(output)
}

/// Encrypts `path` to `<path>.age` (through `<path>.age.partial`).
fn encrypt_one(
    path: &Path,
    encryptor: age::Encryptor,
    control: &WorkControl,
) -> Result<EncryptedFile, EncryptError> {
    let io = |action, at: &Path| {
        let at = at.to_path_buf();
        move |source| EncryptError::Io {
            action,
            path: at,
            source,
        }
    };
    let mut source = crate::runtime::regular_file::open_regular(path).map_err(io("read", path))?;
    let was = source.metadata().map_err(io("read", path))?.len();
    let dest = with_suffix(path, AGE_SUFFIX);
    let write_error = |e: std::io::Error| {
        if e.raw_os_error() == Some(libc::ENOSPC) {
            EncryptError::DiskFull { path: dest.clone() }
        } else {
            io("write", &dest)(e)
        }
    };
    // 0600: the plain archive's own mode is the workflow's business; the
    // encrypted copy is a temporary file only the backup user reads.
    let (partial, file) = PartialFile::create(&dest, 0o600).map_err(write_error)?;
    let mut cipher = encryptor
        .wrap_output(HashingWriter::new(file))
        .map_err(write_error)?;
    let (bytes, sha256) = copy_hashing(&mut source, &mut cipher, control).map_err(|e| match e {
        CopyError::Read(e) => io("read", path)(e),
        CopyError::Write(e) => write_error(e),
        CopyError::Stopped(stop) => EncryptError::Stopped {
            path: path.to_path_buf(),
            stop,
        },
    })?;
    if bytes != was {
        return Err(EncryptError::Changed {
            path: path.to_path_buf(),
            was,
            read: bytes,
        });
    }
    let hashing = cipher.finish().map_err(write_error)?;
    let (file, encrypted_bytes, encrypted_sha256) = hashing.finish();
    partial.commit(file).map_err(write_error)?;
    Ok(EncryptedFile {
        path: path.to_path_buf(),
        encrypted: dest,
        bytes,
        sha256,
        encrypted_bytes,
        encrypted_sha256,
    })
}
