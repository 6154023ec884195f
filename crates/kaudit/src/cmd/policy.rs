//! Policy commands: lint, explain, simulate.
//! SCAFFOLD: owned by the policy work; replace the stub below.

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    Lint,
    Explain,
    Simulate,
}

pub fn run(_: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("policy: not built yet")
}
