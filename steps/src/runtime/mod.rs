//! The step runtime: what every step is built on, and what the engine uses to
//! run one. No step-specific knowledge lives here.

pub mod atomic_file;
pub mod blocking_work;
pub mod error;
pub mod progress;
pub mod registry;
pub mod regular_file;
pub mod secret;
pub mod step;
pub mod throttle;
pub mod wording;
