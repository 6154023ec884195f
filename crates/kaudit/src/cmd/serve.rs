//! `kaudit serve`: reserved for the server (webhook ingest, API, UI).

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("serve: not built yet")
}
