//! Fuzz target `verify_archive`: see [`runbook_fuzz::check_verify`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| runbook_fuzz::check_verify(data));
