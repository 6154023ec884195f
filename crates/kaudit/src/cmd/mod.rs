//! One module per subcommand family; each owns its clap arguments and a `run`.

pub mod convert;
pub mod detect;
pub mod docker;
pub mod gen;
pub mod policy;
pub mod query;
pub mod report;
pub mod serve;
pub mod sinks;
pub mod store;
