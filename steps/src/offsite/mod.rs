//! The off-site copy of a backup set, beyond uploading it (`s3_upload`):
//! the off-site record that says what was uploaded and how it was checked
//! ([`record`], written by the `offsite_record` step), re-checking a copy by
//! downloading and hashing it (`offsite_verify`), and off-site retention
//! (`offsite_prune`); shared: reaching the destination ([`remote`]).
//!
//! Layout under the destination prefix, for a set STAMP:
//!   cassandra_STAMP.tar[.age] (+ .sha256), elasticsearch_STAMP.info,
//!   files_STAMP.tar[.age] or minio_STAMP.tar[.age] (+ .sha256),
//!   offsite_STAMP.json (this record), backup_STAMP.json last.
//! `.age` objects are the archives encrypted with age (see [`crate::crypto`]);
//! the sidecars, the marker, the record and the manifest stay readable, so
//! the set's completeness and every object's SHA-256 can be checked off-site
//! without the identity.

pub mod prune;
pub mod record;
pub mod remote;
pub mod verify;
pub mod write_record;
