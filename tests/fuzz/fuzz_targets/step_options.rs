//! Fuzz target `step_options`: see [`runbook_fuzz::check_step_options`] for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| runbook_fuzz::check_step_options(data));
