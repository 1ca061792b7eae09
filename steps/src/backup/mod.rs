//! The backup set, the thing this product makes: its layout (the stamp and
//! the name of every part; [`layout`]), the catalogue of sets in a manifest
//! folder and the archive folders (manifests, parts, completeness;
//! [`catalogue`]), the set manifest ([`manifest`], written by the
//! `write_manifest` step), whether a set's Elasticsearch snapshot is
//! still there ([`snapshot_check`]), reading archives back for `runbook
//! verify` ([`archive_check`]), and retention (the `prune` step).

pub mod archive_check;
pub mod catalogue;
pub mod layout;
pub mod manifest;
pub mod prune;
pub mod snapshot_check;
pub mod write_manifest;
