//! Encryption of what goes off-site, with the `age` format and crate
//! (<https://age-encryption.org/v1>): the steps `age_encrypt` (files to
//! `NAME.age` next to them, for the off-site copy) and `age_decrypt` (an
//! `.age` file back to the archive, for a restore from the off-site copy),
//! and what they share: reading a recipients file and an identity file
//! ([`keys`]), and streaming a file through a cipher while hashing both
//! sides ([`stream`]).
//!
//! Nothing here is a scheme of its own: the key wrapping, the payload
//! encryption (ChaCha20-Poly1305 STREAM, 64 KiB authenticated chunks) and
//! the file format are the `age` crate's, so the `age`/`rage` tools decrypt
//! what runbook encrypts and the other way round.

pub mod decrypt;
pub mod encrypt;
pub mod keys;
pub mod stream;
