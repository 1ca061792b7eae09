//! S3 / MinIO: the steps `mcli_mirror` (the bucket downloaded into a folder),
//! `s3_archive` (the bucket streamed into a tar archive) and `s3_upload` (the
//! off-site copy), and what they share: MinIO-client alias resolution and the
//! signed S3 client ([`alias`]), the connection options every S3 step takes
//! ([`connection`]), bucket listing ([`listing`]), which keys can be file
//! names ([`keys`]) and what the two ways of copying a bucket out have in
//! common ([`bucket_copy`]).

pub mod alias;
pub mod archive;
pub mod bucket_copy;
pub mod connection;
pub mod keys;
pub mod listing;
pub mod mirror;
pub mod upload;
