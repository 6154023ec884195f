//! Store commands: import, verify, proof, checkpoint, keygen, prune, hold, stat.
//! SCAFFOLD: owned by the store work; replace every stub below.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ImportArgs {}
#[derive(clap::Args)]
pub struct VerifyArgs {}
#[derive(clap::Subcommand)]
pub enum ProofCommand {
    Inclusion,
    Consistency,
}
#[derive(clap::Args)]
pub struct CheckpointArgs {}
#[derive(clap::Args)]
pub struct KeygenArgs {}
#[derive(clap::Args)]
pub struct PruneArgs {}
#[derive(clap::Subcommand)]
pub enum HoldCommand {
    Add,
    List,
    Remove,
}
#[derive(clap::Args)]
pub struct StatArgs {}

pub fn import(_: ImportArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("import: not built yet")
}
pub fn verify(_: VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("verify: not built yet")
}
pub fn proof(_: ProofCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("proof: not built yet")
}
pub fn checkpoint(_: CheckpointArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("checkpoint: not built yet")
}
pub fn keygen(_: KeygenArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("keygen: not built yet")
}
pub fn prune(_: PruneArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("prune: not built yet")
}
pub fn hold(_: HoldCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("hold: not built yet")
}
pub fn stat(_: StatArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("stat: not built yet")
}
