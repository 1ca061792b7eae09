//! S3 / MinIO: the steps `mcli_mirror` (download a bucket) and `s3_upload`
//! (the off-site copy), and what they share: MinIO-client alias resolution
//! and the signed S3 client ([`alias`]), and bucket listing ([`listing`]).

pub mod alias;
pub mod archive;
pub mod connection;
pub mod keys;
pub mod listing;
pub mod mirror;
pub mod upload;
