//! Fuzz target `extract_archive`: see [`runbook_fuzz::check_extract`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| runbook_fuzz::check_extract(data));
