//! `kaudit`: the audit-log platform for Kubernetes clusters.
//!
//! The binary only wires the library crates together: each subcommand lives in
//! its own module under `cmd/` and owns its clap arguments.

mod cmd;

/// Parsing, batching and compressing hand buffers between threads; mimalloc
/// keeps that cheap where the system allocator spent a quarter of import's
/// CPU time in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// kaudit: ingest, verify, search and detect over Kubernetes audit logs.
#[derive(Parser)]
#[command(name = "kaudit", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate realistic, deterministic kube-apiserver audit traffic.
    Gen(cmd::gen::Args),
    /// Parse audit events and re-encode them exactly as kube-apiserver does (v1beta1/v1alpha1 -> v1).
    Convert(cmd::convert::Args),
    /// Work with audit.k8s.io/v1 policies: lint, explain, simulate, apply.
    #[command(subcommand)]
    Policy(cmd::policy::Command),
    /// Bulk-load audit events into the store.
    Import(cmd::store::ImportArgs),
    /// Verify the whole store: records, Merkle tree, checkpoints.
    Verify(cmd::store::VerifyArgs),
    /// Print inclusion or consistency proofs.
    #[command(subcommand)]
    Proof(cmd::store::ProofCommand),
    /// Print the latest signed checkpoint (or the verifier key).
    Checkpoint(cmd::store::CheckpointArgs),
    /// Generate an Ed25519 signing key pair for checkpoints.
    Keygen(cmd::store::KeygenArgs),
    /// Apply the retention policy: delete whole old segments not under legal hold.
    Prune(cmd::store::PruneArgs),
    /// Manage legal holds that block pruning.
    #[command(subcommand)]
    Hold(cmd::store::HoldCommand),
    /// Print store statistics.
    Stat(cmd::store::StatArgs),
    /// Run Falco or Sigma rules over audit events.
    Detect(cmd::detect::Args),
    /// List the alerts live detection raised (kaudit serve).
    Alerts(cmd::detect::AlertsArgs),
    /// Test rules against events.
    #[command(subcommand)]
    Rules(cmd::detect::RulesCommand),
    /// Run the server: webhook ingest, API, UI.
    Serve(cmd::serve::Args),
    /// Check a serve configuration file.
    #[command(subcommand)]
    Config(cmd::serve::ConfigCommand),
    /// List or show items the server quarantined (not valid audit events).
    #[command(subcommand)]
    Quarantine(cmd::serve::QuarantineCommand),
    /// Print the kubeconfig for kube-apiserver's --audit-webhook-config-file.
    WebhookKubeconfig(cmd::serve::KubeconfigArgs),
    /// Print a ValidatingWebhookConfiguration for admission-webhook capture.
    WebhookConfig(cmd::serve::WebhookConfigArgs),
    /// Follow an audit log file through rotations and store its events.
    Tail(cmd::serve::TailArgs),
    /// Search stored events: `kaudit query 'verb=delete resource=secrets ns=prod'`.
    Query(cmd::query::QueryArgs),
    /// Counts, top-N, time histograms and latency percentiles of stored events.
    Stats(cmd::query::StatsArgs),
    /// Every event on one object (with diffs), or a user's sessions.
    History(cmd::query::HistoryArgs),
    /// RBAC roles and bindings granting exactly what a user was seen doing.
    Rbac(cmd::query::RbacArgs),
    /// Compliance evidence (pci-dss, soc2, cis, custom.yaml): report, bundle, HTML, PDF; `report verify BUNDLE`.
    Report(cmd::report::Args),
    /// Rebuild the search index from the store.
    Reindex(cmd::query::ReindexArgs),
    /// Forwarding sinks: `kaudit sinks status`.
    #[command(subcommand)]
    Sinks(cmd::sinks::SinksCommand),
    /// Auditing Docker socket proxy: records who called the Docker daemon, delivers to kaudit serve.
    DockerProxy(cmd::docker::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Gen(a) => cmd::gen::run(a),
        Command::Convert(a) => cmd::convert::run(a),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Import(a) => cmd::store::import(a),
        Command::Verify(a) => cmd::store::verify(a),
        Command::Proof(c) => cmd::store::proof(c),
        Command::Checkpoint(a) => cmd::store::checkpoint(a),
        Command::Keygen(a) => cmd::store::keygen(a),
        Command::Prune(a) => cmd::store::prune(a),
        Command::Hold(c) => cmd::store::hold(c),
        Command::Stat(a) => cmd::store::stat(a),
        Command::Detect(a) => cmd::detect::run(a),
        Command::Rules(c) => cmd::detect::rules(c),
        Command::Alerts(a) => cmd::detect::alerts(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Config(c) => cmd::serve::config(c),
        Command::Quarantine(c) => cmd::serve::quarantine(c),
        Command::WebhookConfig(a) => cmd::serve::webhook_config(a),
        Command::WebhookKubeconfig(a) => cmd::serve::webhook_kubeconfig(a),
        Command::Tail(a) => cmd::serve::tail(a),
        Command::Query(a) => cmd::query::query(a),
        Command::Stats(a) => cmd::query::stats(a),
        Command::History(a) => cmd::query::history(a),
        Command::Rbac(a) => cmd::query::rbac(a),
        Command::Reindex(a) => cmd::query::reindex(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Sinks(c) => cmd::sinks::run(c),
        Command::DockerProxy(a) => cmd::docker::run(a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", chain_text(&err));
            std::process::ExitCode::from(1)
        }
    }
}

/// The error and its causes joined by ": ", as anyhow's `{:#}` prints them,
/// minus causes whose text the message before already shows: the library
/// errors keep their typed source and also print it, so a plain chain would
/// say it twice.
fn chain_text(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut prev = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.is_empty() {
            out.push_str(&text);
        } else if !prev.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        prev = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chain_text;

    #[test]
    fn chain_text_skips_sources_already_shown() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(kaudit_index::IndexError::Io {
            path: "/x/meta.json".into(),
            source: io,
        })
        .context("opening the index");
        assert_eq!(chain_text(&err), "opening the index: /x/meta.json: gone");
    }
}
