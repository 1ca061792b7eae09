//! Words the shell completions offer for positional arguments: the stock
//! workflow names (`runbook run clu<TAB>`) and the step names (`runbook steps
//! ta<TAB>`). Any other value is still accepted: a workflow is also a path,
//! which the shell completes as a file name when no word matches.

use clap::builder::{PossibleValue, TypedValueParser};

/// Accepts any UTF-8 text and tells the completion generators `names`.
#[derive(Clone)]
pub struct NameOrAny {
    names: fn() -> Vec<&'static str>,
}

impl NameOrAny {
    /// Offers the stock workflow names.
    pub fn workflows() -> Self {
        NameOrAny {
            names: crate::host::workflow::stock_workflow_names,
        }
    }

    /// Offers the step names.
    pub fn steps() -> Self {
        NameOrAny {
            names: || runbook_steps::all_steps().iter().map(|s| s.name).collect(),
        }
    }
}

impl TypedValueParser for NameOrAny {
    type Value = String;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        clap::builder::StringValueParser::new().parse_ref(command, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new((self.names)().into_iter().map(PossibleValue::new)))
    }
}
