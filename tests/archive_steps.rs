//! placeholder: filled in by the step work
