//! Detection commands: detect, rules test.
//! SCAFFOLD: owned by the detection work; replace the stub below.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}
#[derive(clap::Subcommand)]
pub enum RulesCommand {
    Test,
}

pub fn run(_: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("detect: not built yet")
}
pub fn rules(_: RulesCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("rules: not built yet")
}
