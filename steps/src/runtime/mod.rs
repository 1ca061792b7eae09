//! The step runtime: what every step is built on, and what the engine uses to
//! run one. No step-specific knowledge lives here: nothing in this folder
//! imports a step or a concept module, only itself (the list of every step is
//! the crate's `registry` module, at the top of the crate, above every concept).

pub mod atomic_file;
pub mod blocking_work;
pub mod error;
pub mod progress;
pub mod regular_file;
pub mod secret;
pub mod step;
pub mod throttle;
pub mod wording;
